//! Branchlog blobs: the bytes of deltas and snapshots, identical on every backend.
//!
//! A blob is one zstd frame (with its content checksum) holding:
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `STRATABL` |
//! | 4 | header length `H`, u32 little-endian |
//! | H | header JSON: `{"format":1,"kind":"delta"\|"snapshot","branch","from_version","to_version","entry_count","record_count"}` |
//! | … | records `[u32 len][msgpack ChangeSet][u32 crc32]` (the engine's codec) |
//!
//! Its SHA-256 and size are recorded in the cursor, so a download is checked before it is decoded, and
//! every record is checked again (CRC, versions within the header's range, counts) before anything is
//! applied. Writers spool to temporary files; nothing is held in memory whole.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strata_engine::codec::{RecordReader, RecordWriter};
use strata_engine::{ChangeSet, RawChangeSet};

use crate::error::{Result, SyncError};

/// The magic bytes at the start of every decompressed blob.
pub const MAGIC: &[u8; 8] = b"STRATABL";
/// The blob format version this build writes and reads.
/// The blob format this build writes: 2 adds each version's commit metadata (kind, message, author)
/// to its records. Format 1 blobs are read too (their versions replay as kind `apply`).
pub const BLOB_FORMAT: u32 = 2;
const MAX_HEADER: u32 = 64 * 1024;

/// The blob header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobHeader {
    /// Always [`BLOB_FORMAT`].
    pub format: u32,
    /// `delta` or `snapshot`.
    pub kind: String,
    /// The branch it belongs to.
    pub branch: String,
    /// Versions after this one are included.
    pub from_version: u64,
    /// The last version included.
    pub to_version: u64,
    /// Puts plus deletes.
    pub entry_count: u64,
    /// Records.
    pub record_count: u64,
}

/// A blob written to a local temporary file, ready to upload.
#[derive(Debug)]
pub struct SpooledBlob {
    /// The compressed blob bytes.
    pub file: tempfile::NamedTempFile,
    /// Its header.
    pub header: BlobHeader,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// Builds a blob from change sets: records go to a spool file first (the header needs the counts), then
/// the compressed blob is written.
#[derive(Debug)]
pub struct BlobBuilder {
    records: RecordWriter<BufWriter<tempfile::NamedTempFile>>,
    header: BlobHeader,
    /// The highest version pushed so far (versions may not go down).
    last: u64,
}

impl BlobBuilder {
    /// Starts a blob of `kind` for `branch` covering versions `(from, to]`, spooled in the system's
    /// temporary folder.
    pub fn new(kind: &str, branch: &str, from: u64, to: u64) -> Result<BlobBuilder> {
        BlobBuilder::new_in(&std::env::temp_dir(), kind, branch, from, to)
    }

    /// [`BlobBuilder::new`], spooling in `dir` (sync uses a folder inside the database's, because the
    /// system's temporary folder is often memory).
    pub fn new_in(
        dir: &std::path::Path,
        kind: &str,
        branch: &str,
        from: u64,
        to: u64,
    ) -> Result<BlobBuilder> {
        let spool = tempfile::NamedTempFile::new_in(dir)?;
        Ok(BlobBuilder {
            records: RecordWriter::new(BufWriter::new(spool)),
            header: BlobHeader {
                format: BLOB_FORMAT,
                kind: kind.to_string(),
                branch: branch.to_string(),
                from_version: from,
                to_version: to,
                entry_count: 0,
                record_count: 0,
            },
            last: from,
        })
    }

    /// Starts a blob whose last version is not known yet: versions must only be above `from` and not
    /// go down; [`BlobBuilder::finish_at`] sets the range's end.
    pub fn open_ended(
        dir: &std::path::Path,
        kind: &str,
        branch: &str,
        from: u64,
    ) -> Result<BlobBuilder> {
        BlobBuilder::new_in(dir, kind, branch, from, u64::MAX)
    }

    /// Adds a change set.
    pub fn push(&mut self, cs: &ChangeSet) -> Result<()> {
        if cs.version <= self.header.from_version
            || cs.version > self.header.to_version
            || cs.version < self.last
        {
            return Err(SyncError::Config(format!(
                "change set version {} is outside the blob's range ({}, {}] or out of order",
                cs.version, self.header.from_version, self.header.to_version
            )));
        }
        self.last = cs.version;
        self.header.entry_count += cs.len() as u64;
        self.records.write(cs)?;
        Ok(())
    }

    /// Entries so far.
    pub fn entries(&self) -> u64 {
        self.header.entry_count
    }

    /// The highest version pushed (the range's start when none was).
    pub fn last_version(&self) -> u64 {
        self.last
    }

    /// [`BlobBuilder::finish`] with the range ending at `to` (at least every version pushed).
    pub fn finish_at(mut self, to: u64) -> Result<SpooledBlob> {
        if to < self.last || to <= self.header.from_version {
            return Err(SyncError::Config(format!(
                "blob range end {to} is below its versions ({}..{})",
                self.header.from_version, self.last
            )));
        }
        self.header.to_version = to;
        self.finish()
    }

    /// Compresses into the final blob file.
    pub fn finish(mut self) -> Result<SpooledBlob> {
        self.records.flush()?;
        self.header.record_count = self.records.records();
        let spool = self
            .records
            .into_inner()
            .into_inner()
            .map_err(|e| e.into_error())?;
        let mut spool_file = spool.reopen()?;
        spool_file.seek(SeekFrom::Start(0))?;
        let dir = spool.path().parent().map(|p| p.to_path_buf());
        let out = match &dir {
            Some(d) => tempfile::NamedTempFile::new_in(d)?,
            None => tempfile::NamedTempFile::new()?,
        };
        let hashing = HashingWriter::new(BufWriter::new(out.reopen()?));
        let mut enc = zstd::Encoder::new(hashing, 3)?;
        enc.include_checksum(true)?;
        let header = serde_json::to_vec(&self.header).expect("header serializes");
        enc.write_all(MAGIC)?;
        enc.write_all(&(header.len() as u32).to_le_bytes())?;
        enc.write_all(&header)?;
        std::io::copy(&mut BufReader::new(spool_file), &mut enc)?;
        let mut hashing = enc.finish()?;
        // No fsync: the spooled blob is a temporary file that a crash makes worthless anyway; the
        // remote makes its own copy durable.
        hashing.inner.flush()?;
        Ok(SpooledBlob {
            file: out,
            header: self.header,
            bytes: hashing.bytes,
            sha256: hashing.digest().0,
        })
    }
}

/// Writes through to `inner` while hashing and counting the bytes (used for blobs built here and for
/// downloads, so no file is read back just to hash it).
pub(crate) struct HashingWriter<W: Write> {
    pub(crate) inner: W,
    hash: Sha256,
    pub(crate) bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }

    /// The SHA-256 (hex) and length of everything written.
    pub(crate) fn digest(&self) -> (String, u64) {
        (hex::encode(self.hash.clone().finalize()), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// SHA-256 (hex) and length of a local file, e.g. a blob in a folder remote.
pub fn hash_file(file: &File) -> Result<(String, u64)> {
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::Start(0))?;
    let mut w = HashingWriter::new(std::io::sink());
    std::io::copy(&mut f, &mut w)?;
    Ok(w.digest())
}

/// Reads a blob from a local file: checks the magic and header, then yields its change sets, checking
/// each record's CRC and version, and at the end the counts.
pub struct BlobReader {
    name: String,
    records: RecordReader<zstd::Decoder<'static, BufReader<File>>>,
    header: BlobHeader,
    entries: u64,
    last_version: u64,
    done: bool,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("name", &self.name)
            .field("header", &self.header)
            .finish()
    }
}

impl BlobReader {
    /// Opens a blob file; `name` is used in error messages (the remote path).
    pub fn open(file: &File, name: &str) -> Result<BlobReader> {
        let mut f = file.try_clone()?;
        f.seek(SeekFrom::Start(0))?;
        let bad = |d: String| SyncError::corrupt(format!("blob {name}"), d);
        let mut dec = zstd::Decoder::new(f).map_err(|e| bad(format!("not a zstd stream: {e}")))?;
        let mut magic = [0u8; 8];
        dec.read_exact(&mut magic)
            .map_err(|e| bad(format!("truncated before the header: {e}")))?;
        if &magic != MAGIC {
            return Err(bad("wrong magic bytes: not a Strata blob".into()));
        }
        let mut len = [0u8; 4];
        dec.read_exact(&mut len)
            .map_err(|e| bad(format!("truncated header: {e}")))?;
        let len = u32::from_le_bytes(len);
        if len > MAX_HEADER {
            return Err(bad(format!("header length {len} is too large")));
        }
        let mut hb = vec![0u8; len as usize];
        dec.read_exact(&mut hb)
            .map_err(|e| bad(format!("truncated header: {e}")))?;
        let header: BlobHeader =
            serde_json::from_slice(&hb).map_err(|e| bad(format!("unreadable header: {e}")))?;
        if header.format != 1 && header.format != BLOB_FORMAT {
            return Err(bad(format!(
                "unsupported blob format {} (this build reads 1 to {BLOB_FORMAT}; upgrade strata)",
                header.format
            )));
        }
        Ok(BlobReader {
            name: name.to_string(),
            records: RecordReader::new(dec),
            last_version: header.from_version,
            header,
            entries: 0,
            done: false,
        })
    }

    /// The header.
    pub fn header(&self) -> &BlobHeader {
        &self.header
    }

    fn corrupt(&self, detail: String) -> SyncError {
        SyncError::corrupt(format!("blob {}", self.name), detail)
    }

    /// A record-level error, naming the blob and the record once each.
    fn record_error(&self, e: strata_engine::Error) -> SyncError {
        match e {
            strata_engine::Error::Corrupt { what, detail } => {
                SyncError::corrupt(format!("blob {} {what}", self.name), detail)
            }
            other => self.corrupt(other.to_string()),
        }
    }

    /// Walks every record frame to the end checking lengths and CRC-32s, without decoding values (the
    /// apply pass decodes, inside one transaction that any later error rolls back). Returns the header.
    pub fn verify_frames(file: &File, name: &str) -> Result<BlobHeader> {
        let mut r = BlobReader::open(file, name)?;
        while r.records.next_frame().map_err(|e| r.record_error(e))? {}
        if r.records.records() != r.header.record_count {
            return Err(r.corrupt(format!(
                "header says {} records, the blob holds {}",
                r.header.record_count,
                r.records.records()
            )));
        }
        Ok(r.header)
    }

    /// The next change set with its values left encoded, checking its version against the header and,
    /// at the end, the record and entry counts. The one place those checks live.
    fn next_checked(&mut self) -> Result<Option<RawChangeSet>> {
        let Some(cs) = self.records.next_raw().map_err(|e| self.record_error(e))? else {
            if self.records.records() != self.header.record_count
                || self.entries != self.header.entry_count
            {
                return Err(self.corrupt(format!(
                    "header says {} records and {} entries, but the blob holds {} and {}",
                    self.header.record_count,
                    self.header.entry_count,
                    self.records.records(),
                    self.entries
                )));
            }
            return Ok(None);
        };
        if cs.version < self.last_version
            || cs.version <= self.header.from_version
            || cs.version > self.header.to_version
        {
            return Err(self.corrupt(format!(
                "record version {} is outside ({}, {}] or out of order",
                cs.version, self.header.from_version, self.header.to_version
            )));
        }
        self.last_version = cs.version;
        self.entries += cs.len() as u64;
        Ok(Some(cs))
    }

    fn step<T>(
        &mut self,
        f: impl FnOnce(RawChangeSet) -> strata_engine::Result<T>,
    ) -> Option<strata_engine::Result<T>> {
        if self.done {
            return None;
        }
        let out = match self.next_checked() {
            Ok(None) => None,
            Ok(Some(cs)) => Some(f(cs)),
            Err(SyncError::Corrupt { what, detail }) => {
                Some(Err(strata_engine::Error::Corrupt { what, detail }))
            }
            Err(SyncError::Engine(e)) => Some(Err(e)),
            Err(e) => Some(Err(strata_engine::Error::InvalidOperation(e.to_string()))),
        };
        self.done = !matches!(out, Some(Ok(_)));
        out
    }

    /// Reads every record to the end, checking everything; returns the header.
    pub fn verify(mut self) -> Result<BlobHeader> {
        for cs in self.by_ref() {
            cs?;
        }
        Ok(self.header)
    }

    /// The same blob read as [`RawChangeSet`]s (values left encoded): the fast path for applying.
    pub fn raw(self) -> RawBlobReader {
        RawBlobReader(self)
    }
}

/// Change sets with their values decoded.
impl Iterator for BlobReader {
    type Item = Result<ChangeSet, strata_engine::Error>;
    fn next(&mut self) -> Option<Self::Item> {
        self.step(RawChangeSet::decode)
    }
}

/// A blob's change sets with their values left encoded. See [`BlobReader::raw`].
#[derive(Debug)]
pub struct RawBlobReader(BlobReader);

impl Iterator for RawBlobReader {
    type Item = Result<RawChangeSet, strata_engine::Error>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.step(Ok)
    }
}
