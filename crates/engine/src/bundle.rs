//! Bundles: `.branchbundle.tar.zst` export, verify and import (see docs/format.md).
//!
//! A bundle file is
//!
//! 1. one zstd frame (with the frame content checksum) holding a tar archive of exactly two regular
//!    files, in this order: `manifest.json` (a [`BundleManifest`]) and `branchlog.bin` (the change sets
//!    as [`crate::codec`] records);
//! 2. followed by a 48-byte zstd *skippable* frame, the trailer, holding the SHA-256 of every byte
//!    before it. `zstd -d` ignores it, so `zstd -dc x.branchbundle.tar.zst | tar t` still works.
//!
//! Everything is streamed: export and import hold one page of change sets at a time, and verification
//! holds one record.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufRead, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::rc::Rc;

use rusqlite::params;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::{RecordReader, RecordWriter};
use crate::db::Strata;
use crate::error::{Error, Result};
use crate::store;
use crate::types::{ChangeSet, Rev};

/// The newest bundle format version this build writes and reads.
pub const BUNDLE_FORMAT_VERSION: u32 = 1;

/// The name of the first tar entry.
pub const MANIFEST_ENTRY: &str = "manifest.json";
/// The name of the second tar entry.
pub const BRANCHLOG_ENTRY: &str = "branchlog.bin";
/// The file-name suffix bundles are written with by convention.
pub const BUNDLE_SUFFIX: &str = ".branchbundle.tar.zst";

/// Length of the trailer that ends every bundle file.
pub const TRAILER_LEN: u64 = 48;
/// The trailer's zstd skippable-frame magic number (stored little-endian).
pub const TRAILER_MAGIC: u32 = 0x184D_2A5B;
/// The 8 bytes after the trailer's frame header.
pub const TRAILER_TAG: &[u8; 8] = b"STRATAB1";

/// The largest `manifest.json` accepted.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// The zstd compression level used by export.
const ZSTD_LEVEL: i32 = 3;

/// The manifest stored first in every bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleManifest {
    /// Bundle format version.
    pub format_version: u32,
    /// The exported branch.
    pub branch: String,
    /// Versions after this one are included (0 for a whole branch).
    pub from_version: u64,
    /// The last included version.
    pub to_version: u64,
    /// Number of commits (distinct versions) in the branchlog.
    pub version_count: u64,
    /// Number of puts plus deletes.
    pub entry_count: u64,
    /// Number of branchlog records.
    pub record_count: u64,
    /// Byte length of the branchlog.
    pub branchlog_bytes: u64,
    /// SHA-256 of the branchlog, lowercase hex.
    pub branchlog_sha256: String,
    /// Export time, microseconds since the Unix epoch.
    pub created_micros: u64,
}

/// What an import did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// The branch written.
    pub branch: String,
    /// Whether the branch was created by the import.
    pub created: bool,
    /// Versions created.
    pub versions: u64,
    /// Entries applied.
    pub entries: u64,
    /// The branch head afterwards.
    pub head: u64,
}

/// The 48-byte trailer for a file whose preceding bytes hash to `sha256`.
pub fn trailer_bytes(sha256: &[u8; 32]) -> [u8; TRAILER_LEN as usize] {
    let mut t = [0u8; TRAILER_LEN as usize];
    t[0..4].copy_from_slice(&TRAILER_MAGIC.to_le_bytes());
    t[4..8].copy_from_slice(&((TRAILER_LEN - 8) as u32).to_le_bytes());
    t[8..16].copy_from_slice(TRAILER_TAG);
    t[16..48].copy_from_slice(sha256);
    t
}

impl Strata {
    /// Exports `branch`'s versions in `(from_version, to_version]` (default: the whole branch up to its
    /// head) to a bundle file at `path`, streaming.
    ///
    /// The change sets are first written to a temporary file next to `path` (the manifest needs their
    /// counts and checksum), then the bundle is written to another temporary file in the same folder,
    /// fsynced and renamed over `path`: a partial bundle is never visible at `path`. An existing file
    /// at `path` is replaced.
    pub fn export_bundle(
        &self,
        branch: &str,
        range: Option<(u64, u64)>,
        path: &Path,
    ) -> Result<BundleManifest> {
        let info = self.branch_info(branch)?;
        let (from, to) = range.unwrap_or((0, info.head));
        if to > info.head {
            return Err(Error::VersionNotFound {
                branch: branch.to_string(),
                version: to,
                head: info.head,
            });
        }
        if from > to {
            return Err(Error::InvalidOperation(format!(
                "invalid bundle range ({from}, {to}]: the start version {from} is after the end version {to}"
            )));
        }
        let file_name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            Error::InvalidOperation(format!("bundle path {} has no file name", path.display()))
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(Error::InvalidOperation(format!(
                "cannot write bundle {}: folder {} does not exist",
                path.display(),
                dir.display()
            )));
        }

        // Pass 1: the branchlog, to a temporary file.
        let log_tmp = tempfile::Builder::new()
            .prefix(&format!(".{file_name}."))
            .suffix(".branchlog.tmp")
            .tempfile_in(dir)?;
        let mut w = RecordWriter::new(BufWriter::new(log_tmp.as_file())).with_sha256();
        let (mut versions, mut entries, mut last) = (0u64, 0u64, None);
        for cs in self.changes_between(&Rev::at(branch, to), from)? {
            // Bundle format 1 has no commit metadata: imported versions are recorded as `import`.
            let cs = without_meta(cs?);
            if last != Some(cs.version) {
                versions += 1;
                last = Some(cs.version);
            }
            entries += cs.len() as u64;
            w.write(&cs)?;
        }
        w.flush()?;
        let manifest = BundleManifest {
            format_version: BUNDLE_FORMAT_VERSION,
            branch: branch.to_string(),
            from_version: from,
            to_version: to,
            version_count: versions,
            entry_count: entries,
            record_count: w.records(),
            branchlog_bytes: w.bytes(),
            branchlog_sha256: w.sha256_hex().expect("hashing enabled"),
            created_micros: store::now_micros(),
        };
        drop(w);

        // Pass 2: manifest + branchlog into tar, zstd, trailer; to a temporary file, then rename.
        let mut log = log_tmp.as_file();
        log.seek(SeekFrom::Start(0))?;
        let out_tmp = tempfile::Builder::new()
            .prefix(&format!(".{file_name}."))
            .suffix(".tmp")
            .tempfile_in(dir)?;
        {
            let hw = HashWriter {
                inner: BufWriter::new(out_tmp.as_file()),
                hasher: Sha256::new(),
            };
            let mut enc = zstd::Encoder::new(hw, ZSTD_LEVEL)?;
            enc.include_checksum(true)?;
            let mut tar = tar::Builder::new(enc);
            let mut json = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| Error::InvalidOperation(e.to_string()))?;
            json.push(b'\n');
            let mtime = manifest.created_micros / 1_000_000;
            append_entry(
                &mut tar,
                MANIFEST_ENTRY,
                json.len() as u64,
                mtime,
                &json[..],
            )?;
            append_entry(
                &mut tar,
                BRANCHLOG_ENTRY,
                manifest.branchlog_bytes,
                mtime,
                log.take(manifest.branchlog_bytes),
            )?;
            let enc = tar.into_inner()?;
            let mut hw = enc.finish()?;
            let digest: [u8; 32] = hw.hasher.finalize().into();
            hw.inner.write_all(&trailer_bytes(&digest))?;
            hw.inner.flush()?;
        }
        out_tmp.as_file().sync_all()?;
        out_tmp.persist(path).map_err(|e| e.error)?;
        sync_dir(dir)?;
        drop(log_tmp);
        tracing::debug!(branch, from, to, path = %path.display(), records = manifest.record_count, "exported bundle");
        Ok(manifest)
    }

    /// Imports a bundle into `target` (default: the bundle's branch name). The branch is created if it
    /// does not exist; otherwise its head must equal the bundle's `from_version`. Every checksum is
    /// verified before anything is written; on any error the database is unchanged.
    ///
    /// The file is read twice: a full [`verify_bundle`] pass, then a second streaming pass that applies
    /// the change sets in one SQLite transaction while checking everything again (so a file changed
    /// between the passes is caught, and rolled back).
    pub fn import_bundle(&self, path: &Path, target: Option<&str>) -> Result<ImportReport> {
        let manifest = verify_bundle(path)?;
        let report = self.import_verified(path, &manifest, target)?;
        tracing::debug!(branch = %report.branch, versions = report.versions, path = %path.display(), "imported bundle");
        Ok(report)
    }

    /// The second pass of an import: applies the bundle, whose first pass gave `manifest`, in one write
    /// transaction, checking everything again as it streams; any failure rolls the transaction back.
    fn import_verified(
        &self,
        path: &Path,
        manifest: &BundleManifest,
        target: Option<&str>,
    ) -> Result<ImportReport> {
        let name = target.unwrap_or(&manifest.branch).to_string();
        crate::names::validate_branch_name(&name, true)?;
        self.write(|conn| {
            let (row, created) = match store::branch_by_name(conn, &name) {
                Ok(row) => {
                    if row.head != manifest.from_version {
                        return Err(Error::InvalidOperation(format!(
                            "cannot import bundle {} into branch {name:?}: the bundle holds versions ({}, {}] \
                             so the branch head must be {}, but it is {}",
                            path.display(),
                            manifest.from_version,
                            manifest.to_version,
                            manifest.from_version,
                            row.head
                        )));
                    }
                    (row, false)
                }
                Err(Error::BranchNotFound(_)) => {
                    conn.execute(
                        "INSERT INTO branches(name, parent, fork_version, head, created) VALUES (?1, NULL, 0, 0, ?2)",
                        params![name, store::now_micros() as i64],
                    )?;
                    (store::branch_by_name(conn, &name)?, true)
                }
                Err(e) => return Err(e),
            };
            let (_, applied) = read_bundle(
                path,
                |m| {
                    if m != manifest {
                        return Err(Error::corrupt(
                            format!("bundle {}", path.display()),
                            "the file changed between verification and import",
                        ));
                    }
                    Ok(())
                },
                |changes| crate::changes::apply_in_txn(conn, &row, changes.map(|c| c.map(crate::raw::RawChangeSet::from)), "import"),
            )?;
            Ok(ImportReport {
                branch: name.clone(),
                created,
                versions: applied.versions,
                entries: applied.entries,
                head: applied.head,
            })
        })
    }
}

/// Reads a whole bundle and checks every checksum without touching any database.
///
/// In order: the trailer is present; the zstd frame decodes and its content checksum matches; the tar
/// holds `manifest.json` then `branchlog.bin` and nothing else; the manifest parses and its
/// `format_version` is [`BUNDLE_FORMAT_VERSION`]; every record's length, CRC-32 and MessagePack
/// decode; versions lie in `(from_version, to_version]` and never go down; the record, byte, version
/// and entry counts and the branchlog SHA-256 match the manifest; only zero padding follows the tar
/// archive; nothing lies between the zstd frame and the trailer; and the trailer's SHA-256 matches the
/// file. Any failure is an [`Error::Corrupt`] naming the file and the problem.
pub fn verify_bundle(path: &Path) -> Result<BundleManifest> {
    let (manifest, ()) = read_bundle(
        path,
        |_| Ok(()),
        |changes| {
            for cs in changes {
                cs?;
            }
            Ok(())
        },
    )?;
    Ok(manifest)
}

fn append_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    mtime: u64,
    data: impl Read,
) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.append(&h, data)?;
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}

struct HashWriter<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

// ----- reading ------------------------------------------------------------------------------------

/// Which layer an I/O error came from, so that it can be reported as what it is.
#[derive(Default)]
struct Faults {
    /// The file itself could not be read: a real I/O error.
    file: Option<io::Error>,
    /// zstd refused the data: (ended early, message).
    zstd: Option<(bool, String)>,
}

/// Context shared by the reading layers.
struct Ctx {
    what: String,
    faults: RefCell<Faults>,
}

impl Ctx {
    fn corrupt(&self, detail: impl Into<String>) -> Error {
        Error::corrupt(self.what.clone(), detail)
    }

    /// Turns an I/O error seen while reading `stage` into the error it stands for.
    fn io(&self, stage: &str, e: io::Error) -> Error {
        let mut f = self.faults.borrow_mut();
        if let Some(fe) = f.file.take() {
            return Error::Io(fe);
        }
        match &f.zstd {
            Some((true, _)) => self.corrupt(format!(
                "truncated (zstd stream ended early while reading {stage})"
            )),
            Some((false, msg)) => self.corrupt(format!(
                "zstd frame is damaged while reading {stage}: {msg}"
            )),
            None if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.corrupt(format!("truncated tar archive while reading {stage}: {e}"))
            }
            None => self.corrupt(format!("tar archive is damaged while reading {stage}: {e}")),
        }
    }

    fn map(&self, stage: &str, e: Error) -> Error {
        match e {
            Error::Io(io) => self.io(stage, io),
            other => other,
        }
    }
}

/// The file's bytes before the trailer, hashed as they are read.
struct Source {
    file: File,
    remaining: u64,
    hasher: Sha256,
    ctx: Rc<Ctx>,
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let n = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        match self.file.read(&mut buf[..n]) {
            Ok(k) => {
                self.hasher.update(&buf[..k]);
                self.remaining -= k as u64;
                Ok(k)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let out = io::Error::new(e.kind(), e.to_string());
                self.ctx.faults.borrow_mut().file = Some(e);
                Err(out)
            }
        }
    }
}

/// The zstd decoder, recording its own failures.
struct Unzstd<R: BufRead> {
    dec: zstd::stream::read::Decoder<'static, R>,
    ctx: Rc<Ctx>,
}

impl<R: BufRead> Read for Unzstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.dec.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let mut f = self.ctx.faults.borrow_mut();
                if f.file.is_none() && f.zstd.is_none() {
                    let eof = e.kind() == io::ErrorKind::UnexpectedEof
                        || e.to_string().contains("incomplete frame");
                    f.zstd = Some((eof, e.to_string()));
                }
                Err(e)
            }
        }
    }
}

/// The branchlog's change sets, checked against the manifest's range as they are read.
struct Branchlog<R: Read> {
    rr: RecordReader<R>,
    ctx: Rc<Ctx>,
    from: u64,
    to: u64,
    last: Option<u64>,
    versions: u64,
    entries: u64,
    failed: bool,
}

impl<R: Read> Branchlog<R> {
    fn check(&mut self, cs: &ChangeSet) -> Result<()> {
        let idx = self.rr.records() - 1;
        let what = || format!("{}: branchlog record {idx}", self.ctx.what);
        if cs.version <= self.from || cs.version > self.to {
            return Err(Error::corrupt(
                what(),
                format!(
                    "version {} is outside the manifest's range ({}, {}]",
                    cs.version, self.from, self.to
                ),
            ));
        }
        if let Some(l) = self.last {
            if cs.version < l {
                return Err(Error::corrupt(
                    what(),
                    format!("version {} comes after version {l}", cs.version),
                ));
            }
        }
        let keys = cs.puts.iter().map(|(k, _)| k).chain(&cs.deletes);
        for k in keys {
            if let Err(e) = check_entry_key(k) {
                return Err(Error::corrupt(what(), format!("entry {k}: {e}")));
            }
        }
        if self.last != Some(cs.version) {
            self.versions += 1;
            self.last = Some(cs.version);
        }
        self.entries += cs.len() as u64;
        Ok(())
    }

    fn check_totals(&self, m: &BundleManifest) -> Result<()> {
        let sha = self.rr.sha256_hex().expect("hashing enabled");
        let counts = [
            ("records", m.record_count, self.rr.records()),
            ("bytes", m.branchlog_bytes, self.rr.bytes()),
        ];
        for (name, said, found) in counts {
            if said != found {
                return Err(self.ctx.corrupt(format!(
                    "manifest says {said} {name} but branchlog holds {found}"
                )));
            }
        }
        if sha != m.branchlog_sha256 {
            return Err(self.ctx.corrupt(format!(
                "branchlog checksum mismatch: manifest says sha256 {}, computed {sha}",
                m.branchlog_sha256
            )));
        }
        let counts = [
            ("versions", m.version_count, self.versions),
            ("entries", m.entry_count, self.entries),
        ];
        for (name, said, found) in counts {
            if said != found {
                return Err(self.ctx.corrupt(format!(
                    "manifest says {said} {name} but branchlog holds {found}"
                )));
            }
        }
        Ok(())
    }
}

impl<R: Read> Iterator for Branchlog<R> {
    type Item = Result<ChangeSet>;
    fn next(&mut self) -> Option<Result<ChangeSet>> {
        if self.failed {
            return None;
        }
        let r = match self.rr.next()? {
            Ok(cs) => self.check(&cs).map(|()| cs),
            Err(e) => Err(self.ctx.map(BRANCHLOG_ENTRY, e)),
        };
        self.failed = r.is_err();
        Some(r)
    }
}

/// The same rules `apply_changes` enforces, so that a verified bundle also imports.
use crate::changes::check_entry_key;

fn check_entry<R: Read>(
    ctx: &Ctx,
    e: &tar::Entry<'_, R>,
    index: usize,
    expected: &str,
) -> Result<()> {
    let name = e.path_bytes();
    if &*name != expected.as_bytes() {
        return Err(ctx.corrupt(format!(
            "tar entry {index} is {:?}; expected {expected}",
            String::from_utf8_lossy(&name)
        )));
    }
    if e.header().entry_type() != tar::EntryType::Regular {
        return Err(ctx.corrupt(format!("tar entry {expected} is not a regular file")));
    }
    Ok(())
}

fn check_manifest(ctx: &Ctx, m: &BundleManifest) -> Result<()> {
    if m.format_version != BUNDLE_FORMAT_VERSION {
        return Err(ctx.corrupt(format!(
            "unsupported bundle format version {} (this build reads {BUNDLE_FORMAT_VERSION})",
            m.format_version
        )));
    }
    if m.from_version > m.to_version {
        return Err(ctx.corrupt(format!(
            "manifest range ({}, {}] is empty or reversed",
            m.from_version, m.to_version
        )));
    }
    if let Err(e) = crate::names::validate_branch_name(&m.branch, true) {
        return Err(ctx.corrupt(format!("manifest names an unusable branch: {e}")));
    }
    let sha = &m.branchlog_sha256;
    if sha.len() != 64
        || !sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ctx.corrupt(format!(
            "manifest branchlog_sha256 {sha:?} is not 64 lowercase hex digits"
        )));
    }
    Ok(())
}

/// Streams through a bundle, checking everything (see [`verify_bundle`]). `on_manifest` runs once the
/// manifest is read and checked; `consume` gets the branchlog's change sets (whatever it leaves unread
/// is read and checked afterwards). Returns the manifest and `consume`'s result, or the first error.
fn read_bundle<T>(
    path: &Path,
    on_manifest: impl FnOnce(&BundleManifest) -> Result<()>,
    consume: impl FnOnce(&mut dyn Iterator<Item = Result<ChangeSet>>) -> Result<T>,
) -> Result<(BundleManifest, T)> {
    let ctx = Rc::new(Ctx {
        what: format!("bundle {}", path.display()),
        faults: Default::default(),
    });
    let open_err = |e: io::Error| {
        Error::Io(io::Error::new(
            e.kind(),
            format!("cannot read bundle {}: {e}", path.display()),
        ))
    };
    let mut file = File::open(path).map_err(open_err)?;
    let len = file.metadata().map_err(open_err)?.len();
    if len < TRAILER_LEN {
        return Err(ctx.corrupt(format!(
            "truncated: the file is only {len} bytes, too short for a bundle"
        )));
    }

    // The trailer: magic, frame size, tag, SHA-256 of everything before it.
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.seek(SeekFrom::Start(len - TRAILER_LEN))
        .map_err(open_err)?;
    file.read_exact(&mut trailer).map_err(open_err)?;
    if trailer[..16] != trailer_bytes(&[0; 32])[..16] {
        return Err(ctx.corrupt(
            "truncated or not a Strata bundle: the file does not end with the 48-byte bundle trailer",
        ));
    }
    let want_sha = hex::encode(&trailer[16..]);
    file.seek(SeekFrom::Start(0)).map_err(open_err)?;

    let src = Source {
        file,
        remaining: len - TRAILER_LEN,
        hasher: Sha256::new(),
        ctx: ctx.clone(),
    };
    let dec = zstd::stream::read::Decoder::new(src)
        .map_err(|e| ctx.corrupt(format!("zstd: {e}")))?
        .single_frame();
    let mut ar = tar::Archive::new(Unzstd {
        dec,
        ctx: ctx.clone(),
    });

    let (manifest, out) = {
        let mut entries = ar
            .entries()
            .map_err(|e| ctx.io("the tar archive", e))?
            .raw(true);

        let mut e0 = match entries.next() {
            None => {
                return Err(ctx.corrupt(format!(
                    "the tar archive is empty; expected {MANIFEST_ENTRY}"
                )))
            }
            Some(r) => r.map_err(|e| ctx.io("the first tar header", e))?,
        };
        check_entry(&ctx, &e0, 0, MANIFEST_ENTRY)?;
        let size = e0.size();
        if size > MAX_MANIFEST_BYTES {
            return Err(ctx.corrupt(format!(
                "{MANIFEST_ENTRY} is {size} bytes; the limit is {MAX_MANIFEST_BYTES}"
            )));
        }
        let mut json = Vec::with_capacity(size as usize);
        e0.read_to_end(&mut json)
            .map_err(|e| ctx.io(MANIFEST_ENTRY, e))?;
        drop(e0);
        let manifest: BundleManifest = serde_json::from_slice(&json).map_err(|e| {
            ctx.corrupt(format!(
                "{MANIFEST_ENTRY} is not a valid bundle manifest: {e}"
            ))
        })?;
        check_manifest(&ctx, &manifest)?;
        on_manifest(&manifest)?;

        let mut e1 = match entries.next() {
            None => {
                return Err(ctx.corrupt(format!(
                    "the tar archive ends after {MANIFEST_ENTRY}; {BRANCHLOG_ENTRY} is missing"
                )))
            }
            Some(r) => r.map_err(|e| ctx.io("the second tar header", e))?,
        };
        check_entry(&ctx, &e1, 1, BRANCHLOG_ENTRY)?;
        if e1.size() != manifest.branchlog_bytes {
            return Err(ctx.corrupt(format!(
                "manifest says {} bytes but the {BRANCHLOG_ENTRY} tar entry holds {}",
                manifest.branchlog_bytes,
                e1.size()
            )));
        }
        let rr = RecordReader::new(&mut e1)
            .with_sha256()
            .with_label(format!("{}: branchlog record", ctx.what));
        let mut log = Branchlog {
            rr,
            ctx: ctx.clone(),
            from: manifest.from_version,
            to: manifest.to_version,
            last: None,
            versions: 0,
            entries: 0,
            failed: false,
        };
        let out = consume(&mut log)?;
        for cs in &mut log {
            cs?;
        }
        if log.failed {
            // `consume` saw an error and swallowed it: refuse anyway.
            return Err(ctx.corrupt(format!("{BRANCHLOG_ENTRY} could not be read")));
        }
        log.check_totals(&manifest)?;
        drop(log);
        drop(e1);

        match entries.next() {
            None => {}
            Some(Ok(e)) => {
                return Err(ctx.corrupt(format!(
                    "unexpected extra tar entry {:?} after {BRANCHLOG_ENTRY}",
                    String::from_utf8_lossy(&e.path_bytes())
                )))
            }
            Some(Err(e)) => return Err(ctx.io("the end of the tar archive", e)),
        }
        (manifest, out)
    };

    // Only zero padding may follow the tar archive; reading to the end also checks the zstd frame's
    // content checksum.
    let mut unz = ar.into_inner();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = unz
            .read(&mut buf)
            .map_err(|e| ctx.io("the end of the tar archive", e))?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return Err(ctx.corrupt("unexpected data after the end of the tar archive"));
        }
    }
    let mut rest = unz.dec.finish();
    let extra =
        io::copy(&mut rest, &mut io::sink()).map_err(|e| ctx.io("the end of the file", e))?;
    if extra > 0 {
        return Err(ctx.corrupt(format!(
            "{extra} unexpected bytes between the zstd frame and the trailer"
        )));
    }
    let src = rest.into_inner();
    if src.remaining != 0 {
        return Err(ctx.corrupt("truncated: the file shrank while it was being read"));
    }
    let got_sha = hex::encode(src.hasher.finalize());
    if got_sha != want_sha {
        return Err(ctx.corrupt(format!(
            "file checksum mismatch: the trailer says sha256 {want_sha}, the file hashes to {got_sha}"
        )));
    }
    Ok((manifest, out))
}

/// A change set as bundle format 1 writes it: without commit metadata.
fn without_meta(mut cs: crate::types::ChangeSet) -> crate::types::ChangeSet {
    cs.meta = None;
    cs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(db: &Strata) -> Vec<(String, u64)> {
        db.list_branches(true)
            .unwrap()
            .into_iter()
            .map(|b| (b.name, b.head))
            .collect()
    }

    fn source() -> (
        Strata,
        tempfile::TempDir,
        std::path::PathBuf,
        BundleManifest,
    ) {
        let db = Strata::open_temp().unwrap();
        for i in 0..20 {
            db.main().kv_put(&format!("k{i}"), i).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("good.branchbundle.tar.zst");
        let m = db.export_bundle("main", None, &p).unwrap();
        (db, dir, p, m)
    }

    /// The second pass alone, on a file that fails only after every change set has been applied: the
    /// transaction is rolled back and the new branch is not kept.
    #[test]
    fn second_pass_failure_after_apply_rolls_back() {
        let (_src, dir, good, m) = source();
        let mut bytes = std::fs::read(&good).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1; // the trailer's SHA-256: noticed only at the very end
        let bad = dir.path().join("bad.branchbundle.tar.zst");
        std::fs::write(&bad, &bytes).unwrap();
        let dst = Strata::open_temp().unwrap();
        dst.create_branch("other").unwrap();
        dst.on("other").kv_put("mine", 1).unwrap();
        let before = snapshot(&dst);
        for target in [Some("new"), Some("main"), None] {
            let e = dst.import_verified(&bad, &m, target).unwrap_err();
            assert!(e.to_string().contains("file checksum mismatch"), "{e}");
            assert_eq!(snapshot(&dst), before);
        }
        let e = dst.import_verified(&bad, &m, Some("new")).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }));
        assert!(!dst.branch_exists("new").unwrap());
        let fresh = Strata::open_temp().unwrap();
        assert!(fresh.import_verified(&bad, &m, None).is_err());
        assert_eq!(fresh.branch_info("main").unwrap().head, 0);
        assert!(fresh.changes_since("main", 0).unwrap().next().is_none());
        // The good file goes through the same path.
        let r = fresh.import_verified(&good, &m, None).unwrap();
        assert_eq!(r.head, 20);
    }

    /// A record fails its CRC after earlier ones were applied: rolled back.
    #[test]
    fn second_pass_bad_record_rolls_back() {
        let (src, dir, _good, m) = source();
        let mut log = Vec::new();
        let mut w = RecordWriter::new(&mut log);
        for cs in src.changes_since("main", 0).unwrap() {
            w.write(&without_meta(cs.unwrap())).unwrap();
        }
        let k = log.len() - 5;
        log[k] ^= 0x20; // inside the last record's payload
        let json = serde_json::to_vec(&m).unwrap();
        let mut enc = zstd::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_checksum(true).unwrap();
        let mut tar = tar::Builder::new(enc);
        append_entry(&mut tar, MANIFEST_ENTRY, json.len() as u64, 0, &json[..]).unwrap();
        append_entry(&mut tar, BRANCHLOG_ENTRY, log.len() as u64, 0, &log[..]).unwrap();
        let mut out = tar.into_inner().unwrap().finish().unwrap();
        let digest: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&trailer_bytes(&digest));
        let bad = dir.path().join("bad.branchbundle.tar.zst");
        std::fs::write(&bad, &out).unwrap();

        let dst = Strata::open_temp().unwrap();
        let before = snapshot(&dst);
        let e = dst
            .import_verified(&bad, &m, Some("new"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("branchlog record 19: crc32 mismatch"), "{e}");
        assert_eq!(snapshot(&dst), before);
        let e = dst.import_verified(&bad, &m, None).unwrap_err().to_string();
        assert!(e.contains("branchlog record 19: crc32 mismatch"), "{e}");
        assert_eq!(snapshot(&dst), before);
        assert!(dst.changes_since("main", 0).unwrap().next().is_none());
        // The public entry point refuses it in the verify pass.
        assert_eq!(dst.import_bundle(&bad, None).unwrap_err().to_string(), e);
    }

    /// A different (valid) bundle swapped in between the passes is refused by the manifest check.
    #[test]
    fn second_pass_refuses_a_different_manifest() {
        let (src, dir, _good, m) = source();
        let other = dir.path().join("other.branchbundle.tar.zst");
        src.export_bundle("main", Some((0, 3)), &other).unwrap();
        let dst = Strata::open_temp().unwrap();
        let e = dst
            .import_verified(&other, &m, Some("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("changed between verification and import"), "{e}");
        assert!(!dst.branch_exists("x").unwrap());
    }
}
