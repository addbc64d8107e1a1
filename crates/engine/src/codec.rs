//! Record framing (see docs/format.md): the byte layout shared by bundles (`branchlog.bin`) and sync
//! delta blobs.
//!
//! A stream is a sequence of records and nothing else; it ends cleanly only at a record boundary.
//! Each record carries one [`ChangeSet`]:
//!
//! | offset    | size | field                                                  |
//! |-----------|------|--------------------------------------------------------|
//! | 0         | 4    | `len`: payload length, `u32` little-endian             |
//! | 4         | len  | payload: `rmp_serde::to_vec(&ChangeSet)` (MessagePack) |
//! | 4 + len   | 4    | CRC-32 (IEEE, as `crc32fast`) of the payload, `u32` LE |
//!
//! The payload is the default `rmp_serde` encoding, structs as arrays:
//! `ChangeSet = [version, timestamp_micros, [[EntryKey, Value], …], [EntryKey, …]]` and
//! `EntryKey = [space, kind, key]` with `kind` a positive fixint (kv=0, json=1, event=2, state=3).
//!
//! [`RecordWriter`] and [`RecordReader`] keep running counts and, optionally, a SHA-256 of every byte
//! written or read, so a caller can check a whole-stream checksum. Neither holds more than one record
//! in memory.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::raw::{decode_payload_raw, RawChangeSet};
use crate::types::{ChangeSet, EntryKey};
use crate::value::Value;

/// The largest payload a record may carry (64 MiB). Readers refuse longer records as corrupt;
/// [`RecordWriter`] splits a change set that would encode to more.
pub const MAX_RECORD_LEN: u32 = 64 << 20;

/// Bytes of framing around each payload: the length prefix and the CRC.
pub const RECORD_OVERHEAD: u64 = 8;

/// Encodes a change set to its MessagePack record payload.
pub fn encode_payload(cs: &ChangeSet) -> Result<Vec<u8>> {
    rmp_serde::to_vec(cs).map_err(|e| {
        Error::InvalidOperation(format!(
            "cannot encode change set for version {}: {e}",
            cs.version
        ))
    })
}

/// Decodes a record payload. The payload must hold exactly one change set and nothing after it.
pub fn decode_payload(payload: &[u8]) -> std::result::Result<ChangeSet, String> {
    let mut rest = payload;
    let cs: ChangeSet = rmp_serde::from_read(&mut rest).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!(
            "{} unexpected bytes after the change set",
            rest.len()
        ));
    }
    Ok(cs)
}

fn write_framed<W: Write>(w: &mut W, payload: &[u8]) -> io::Result<u64> {
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    w.write_all(&len.to_le_bytes())?;
    w.write_all(payload)?;
    w.write_all(&crc.to_le_bytes())?;
    Ok(payload.len() as u64 + RECORD_OVERHEAD)
}

fn too_long(cs: &ChangeSet, len: usize) -> Error {
    Error::InvalidOperation(format!(
        "change set for version {} encodes to {len} bytes, more than the {MAX_RECORD_LEN}-byte record limit",
        cs.version
    ))
}

/// Writes one record holding `cs`. Returns the bytes written (payload length + 8). Fails if the
/// payload would exceed [`MAX_RECORD_LEN`]; use [`RecordWriter`] to split such change sets.
pub fn write_record<W: Write>(w: &mut W, cs: &ChangeSet) -> Result<u64> {
    let payload = encode_payload(cs)?;
    if payload.len() > MAX_RECORD_LEN as usize {
        return Err(too_long(cs, payload.len()));
    }
    Ok(write_framed(w, &payload)?)
}

/// Writes records to a stream, counting records and bytes and optionally hashing every byte.
pub struct RecordWriter<W: Write> {
    inner: W,
    records: u64,
    bytes: u64,
    hasher: Option<Sha256>,
    max_len: u32,
}

impl<W: Write> std::fmt::Debug for RecordWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWriter")
            .field("records", &self.records)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl<W: Write> RecordWriter<W> {
    /// A writer with the default record limit and no hashing.
    pub fn new(inner: W) -> RecordWriter<W> {
        RecordWriter {
            inner,
            records: 0,
            bytes: 0,
            hasher: None,
            max_len: MAX_RECORD_LEN,
        }
    }

    /// Also computes the SHA-256 of every byte written (see [`RecordWriter::sha256_hex`]).
    pub fn with_sha256(mut self) -> Self {
        self.hasher = Some(Sha256::new());
        self
    }

    /// Lowers the largest payload written (for tests); values above [`MAX_RECORD_LEN`] are capped.
    pub fn with_max_len(mut self, max_len: u32) -> Self {
        self.max_len = max_len.clamp(1, MAX_RECORD_LEN);
        self
    }

    /// Writes `cs` as one record, or, if its payload would exceed the record limit, as several
    /// consecutive records with the same version and timestamp (readers treat them as one commit).
    /// Returns the number of records written.
    pub fn write(&mut self, cs: &ChangeSet) -> Result<u64> {
        let payload = encode_payload(cs)?;
        if payload.len() <= self.max_len as usize {
            self.emit(&payload)?;
            return Ok(1);
        }
        if cs.len() <= 1 {
            return Err(too_long(cs, payload.len()));
        }
        drop(payload);
        let (a, b) = split(cs);
        Ok(self.write(&a)? + self.write(&b)?)
    }

    fn emit(&mut self, payload: &[u8]) -> Result<()> {
        let n = match &mut self.hasher {
            Some(h) => write_framed(
                &mut HashTee {
                    inner: &mut self.inner,
                    hasher: h,
                },
                payload,
            )?,
            None => write_framed(&mut self.inner, payload)?,
        };
        self.records += 1;
        self.bytes += n;
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The SHA-256 of the bytes written so far, lowercase hex, if hashing was enabled.
    pub fn sha256_hex(&self) -> Option<String> {
        self.hasher.clone().map(|h| hex::encode(h.finalize()))
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> Result<()> {
        Ok(self.inner.flush()?)
    }

    /// The underlying writer (not flushed).
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Splits a change set with at least two entries into two halves of the same version.
fn split(cs: &ChangeSet) -> (ChangeSet, ChangeSet) {
    let half = cs.len() / 2;
    let mk = |puts: Vec<(EntryKey, Value)>, deletes: Vec<EntryKey>| ChangeSet {
        version: cs.version,
        timestamp_micros: cs.timestamp_micros,
        puts,
        deletes,
        meta: cs.meta.clone(),
    };
    if half <= cs.puts.len() {
        let (p1, p2) = cs.puts.split_at(half);
        (mk(p1.to_vec(), vec![]), mk(p2.to_vec(), cs.deletes.clone()))
    } else {
        let (d1, d2) = cs.deletes.split_at(half - cs.puts.len());
        (mk(cs.puts.clone(), d1.to_vec()), mk(vec![], d2.to_vec()))
    }
}

struct HashTee<'a, W: Write> {
    inner: &'a mut W,
    hasher: &'a mut Sha256,
}

impl<W: Write> Write for HashTee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads records one at a time: an `Iterator<Item = Result<ChangeSet>>`.
///
/// The iteration ends (`None`) at a clean end of stream exactly at a record boundary. Every other
/// problem is an [`Error::Corrupt`] whose `what` names the record by its index (counting from 0) and
/// whose detail names the problem: a truncated length prefix, payload or CRC, a length above the
/// limit, a CRC mismatch (stored and computed values), or an undecodable payload. An I/O error of the
/// underlying reader is returned as [`Error::Io`]. After the first error the iterator yields `None`.
pub struct RecordReader<R: Read> {
    inner: R,
    label: String,
    index: u64,
    bytes: u64,
    hasher: Option<Sha256>,
    max_len: u32,
    done: bool,
    failed: bool,
}

impl<R: Read> std::fmt::Debug for RecordReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordReader")
            .field("label", &self.label)
            .field("records", &self.index)
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<R: Read> RecordReader<R> {
    /// A reader with the default limit ([`MAX_RECORD_LEN`]), no hashing, and errors labelled
    /// `record N`.
    pub fn new(inner: R) -> RecordReader<R> {
        RecordReader {
            inner,
            label: "record".into(),
            index: 0,
            bytes: 0,
            hasher: None,
            max_len: MAX_RECORD_LEN,
            done: false,
            failed: false,
        }
    }

    /// Names records in errors `"{label} {index}"`, e.g. `branchlog record 17`.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Also computes the SHA-256 of every byte read (see [`RecordReader::sha256_hex`]).
    pub fn with_sha256(mut self) -> Self {
        self.hasher = Some(Sha256::new());
        self
    }

    /// Sets the largest payload accepted; values above [`MAX_RECORD_LEN`] are capped.
    pub fn with_max_len(mut self, max_len: u32) -> Self {
        self.max_len = max_len.min(MAX_RECORD_LEN);
        self
    }

    /// Records read successfully so far.
    pub fn records(&self) -> u64 {
        self.index
    }

    /// Bytes consumed so far (including those of a record that then failed its checks).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the stream ended cleanly at a record boundary.
    pub fn finished(&self) -> bool {
        self.done && !self.failed
    }

    /// The SHA-256 of the bytes read so far, lowercase hex, if hashing was enabled.
    pub fn sha256_hex(&self) -> Option<String> {
        self.hasher.clone().map(|h| hex::encode(h.finalize()))
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn what(&self) -> String {
        format!("{} {}", self.label, self.index)
    }

    fn consume(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        if let Some(h) = &mut self.hasher {
            h.update(bytes);
        }
    }

    fn read_one(&mut self) -> Result<Option<ChangeSet>> {
        let Some(payload) = self.read_frame()? else {
            return Ok(None);
        };
        let cs = decode_payload(&payload).map_err(|e| {
            Error::corrupt(self.what(), format!("undecodable MessagePack payload: {e}"))
        })?;
        self.index += 1;
        Ok(Some(cs))
    }

    /// Reads the next record's frame, checking its length and CRC without decoding the payload.
    /// Returns whether there was one (`false` at a clean end of stream).
    pub fn next_frame(&mut self) -> Result<bool> {
        let found = self.read_frame()?.is_some();
        if found {
            self.index += 1;
        }
        Ok(found)
    }

    /// Reads the next record keeping its values encoded (see [`crate::raw`]).
    pub fn next_raw(&mut self) -> Result<Option<RawChangeSet>> {
        let Some(payload) = self.read_frame()? else {
            return Ok(None);
        };
        let cs = decode_payload_raw(&payload).map_err(|e| {
            Error::corrupt(self.what(), format!("undecodable MessagePack payload: {e}"))
        })?;
        self.index += 1;
        Ok(Some(cs))
    }

    /// Reads one frame: length, payload and CRC, all checked. `None` at a clean end of stream.
    fn read_frame(&mut self) -> Result<Option<Vec<u8>>> {
        let start = self.bytes;
        let mut len_buf = [0u8; 4];
        let n = read_full(&mut self.inner, &mut len_buf)?;
        self.consume(&len_buf[..n]);
        if n == 0 {
            return Ok(None);
        }
        if n < 4 {
            return Err(Error::corrupt(
                self.what(),
                format!("truncated length prefix at byte offset {start}: stream ends after {n} of 4 bytes"),
            ));
        }
        let len = u32::from_le_bytes(len_buf);
        if len > self.max_len {
            return Err(Error::corrupt(
                self.what(),
                format!(
                    "record length {len} at byte offset {start} exceeds the {}-byte limit",
                    self.max_len
                ),
            ));
        }
        // Grow the buffer as bytes arrive, so a damaged length cannot make us allocate up front.
        let mut payload = Vec::with_capacity((len as usize).min(1 << 20));
        let got = (&mut self.inner)
            .take(len as u64)
            .read_to_end(&mut payload)?;
        self.consume(&payload);
        if got < len as usize {
            return Err(Error::corrupt(
                self.what(),
                format!("truncated payload at byte offset {}: expected {len} bytes, stream ends after {got}", start + 4),
            ));
        }
        let mut crc_buf = [0u8; 4];
        let n = read_full(&mut self.inner, &mut crc_buf)?;
        self.consume(&crc_buf[..n]);
        if n < 4 {
            return Err(Error::corrupt(
                self.what(),
                format!(
                    "truncated crc32 at byte offset {}: stream ends after {n} of 4 bytes",
                    start + 4 + len as u64
                ),
            ));
        }
        let stored = u32::from_le_bytes(crc_buf);
        let actual = crc32fast::hash(&payload);
        if stored != actual {
            return Err(Error::corrupt(
                self.what(),
                format!(
                    "crc32 mismatch at byte offset {start}: stored {stored:#010x}, computed {actual:#010x} over {len} payload bytes"
                ),
            ));
        }
        Ok(Some(payload))
    }
}

impl<R: Read> Iterator for RecordReader<R> {
    type Item = Result<ChangeSet>;
    fn next(&mut self) -> Option<Result<ChangeSet>> {
        if self.done {
            return None;
        }
        match self.read_one() {
            Ok(Some(cs)) => Some(Ok(cs)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Kind;

    fn cs(version: u64, n: usize) -> ChangeSet {
        ChangeSet {
            version,
            timestamp_micros: 1_700_000_000_000_000 + version,
            puts: (0..n)
                .map(|i| {
                    (
                        EntryKey::new("default", Kind::Kv, format!("k{i}")),
                        Value::from(format!("value {i}")),
                    )
                })
                .collect(),
            deletes: vec![EntryKey::new("s", Kind::State, "gone")],
            meta: None,
        }
    }

    fn stream(sets: &[ChangeSet]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in sets {
            write_record(&mut out, c).unwrap();
        }
        out
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<ChangeSet>> {
        RecordReader::new(bytes).collect()
    }

    fn corrupt_msg(r: Result<Vec<ChangeSet>>) -> (String, String) {
        match r {
            Err(Error::Corrupt { what, detail }) => (what, detail),
            other => panic!("expected a corrupt error, got {other:?}"),
        }
    }

    #[test]
    fn exact_bytes_of_a_small_record() {
        let c = ChangeSet {
            version: 1,
            timestamp_micros: 2,
            puts: vec![(EntryKey::new("d", Kind::Json, "k"), Value::Int(5))],
            deletes: vec![EntryKey::new("d", Kind::Kv, "x")],
            meta: None,
        };
        let mut out = Vec::new();
        let n = write_record(&mut out, &c).unwrap();
        let payload: &[u8] = &[
            0x94, // array(4): ChangeSet
            0x01, // version 1
            0x02, // timestamp 2
            0x91, 0x92, 0x93, 0xa1, b'd', 0x01, 0xa1, b'k', 0x05, // [[["d", 1, "k"], 5]]
            0x91, 0x93, 0xa1, b'd', 0x00, 0xa1, b'x', // [["d", 0, "x"]]
        ];
        assert_eq!(n, payload.len() as u64 + 8);
        assert_eq!(&out[..4], &(payload.len() as u32).to_le_bytes());
        assert_eq!(&out[4..4 + payload.len()], payload);
        assert_eq!(
            &out[4 + payload.len()..],
            &crc32fast::hash(payload).to_le_bytes()
        );
        assert_eq!(read_all(&out).unwrap(), vec![c]);
    }

    #[test]
    fn roundtrip_counts_and_hash() {
        let sets = vec![cs(1, 3), cs(2, 0), cs(2, 5), cs(7, 1)];
        let mut w = RecordWriter::new(Vec::new()).with_sha256();
        for c in &sets {
            assert_eq!(w.write(c).unwrap(), 1);
        }
        let (records, bytes, sha) = (w.records(), w.bytes(), w.sha256_hex().unwrap());
        let buf = w.into_inner();
        assert_eq!(records, 4);
        assert_eq!(bytes, buf.len() as u64);
        assert_eq!(sha, hex::encode(Sha256::digest(&buf)));
        let mut r = RecordReader::new(&buf[..]).with_sha256();
        let back: Vec<_> = (&mut r).collect::<Result<_>>().unwrap();
        assert_eq!(back, sets);
        assert!(r.finished());
        assert_eq!((r.records(), r.bytes()), (4, buf.len() as u64));
        assert_eq!(r.sha256_hex().unwrap(), sha);
    }

    #[test]
    fn empty_stream_is_empty() {
        assert!(read_all(&[]).unwrap().is_empty());
    }

    #[test]
    fn truncation_at_every_offset_is_detected() {
        let buf = stream(&[cs(1, 2), cs(2, 2)]);
        let first = 4 + u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize + 4;
        for cut in 1..buf.len() {
            if cut == first {
                assert_eq!(read_all(&buf[..cut]).unwrap().len(), 1);
                continue;
            }
            let (what, detail) = corrupt_msg(read_all(&buf[..cut]));
            let idx = if cut < first { 0 } else { 1 };
            assert_eq!(what, format!("record {idx}"), "cut {cut}");
            assert!(detail.contains("truncated"), "cut {cut}: {detail}");
            let rel = if cut < first { cut } else { cut - first };
            let part = if rel < 4 {
                "length prefix"
            } else if rel < first - 4 {
                "payload"
            } else {
                "crc32"
            };
            assert!(detail.contains(part), "cut {cut}: {detail}");
        }
    }

    #[test]
    fn bit_flips_are_detected() {
        let buf = stream(&[cs(1, 2), cs(2, 2)]);
        for off in 0..buf.len() {
            for bit in [0u8, 3, 7] {
                let mut b = buf.clone();
                b[off] ^= 1 << bit;
                assert!(
                    read_all(&b).is_err(),
                    "flip at {off} bit {bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn crc_mismatch_names_both_values() {
        let mut buf = stream(&[cs(1, 1), cs(2, 1)]);
        let first = 4 + u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize + 4;
        buf[first + 6] ^= 0x40;
        let mut r = RecordReader::new(&buf[..]).with_label("branchlog record");
        assert!(r.next().unwrap().is_ok());
        let e = r.next().unwrap().unwrap_err().to_string();
        assert!(
            e.starts_with("corrupt branchlog record 1: crc32 mismatch"),
            "{e}"
        );
        assert!(e.contains("stored 0x") && e.contains("computed 0x"), "{e}");
        assert!(r.next().is_none());
        assert!(!r.finished());
    }

    #[test]
    fn oversized_length_is_refused_without_allocating() {
        let mut buf = (MAX_RECORD_LEN + 1).to_le_bytes().to_vec();
        buf.extend_from_slice(&[0; 16]);
        let (what, detail) = corrupt_msg(read_all(&buf));
        assert_eq!(what, "record 0");
        assert!(
            detail.contains(&format!("record length {}", MAX_RECORD_LEN + 1)),
            "{detail}"
        );
        // A length under the limit but beyond the data: truncated, with bounded allocation.
        let mut buf = (MAX_RECORD_LEN - 1).to_le_bytes().to_vec();
        buf.extend_from_slice(&[0; 16]);
        let (_, detail) = corrupt_msg(read_all(&buf));
        assert!(detail.contains("truncated payload"), "{detail}");
    }

    #[test]
    fn undecodable_payload_with_valid_crc() {
        for payload in [
            &b"\xc1"[..],
            b"\x93\x01\x02\x90",
            b"\x94\x01\x02\x90\x90\x00",
        ] {
            let mut buf = Vec::new();
            write_framed(&mut buf, payload).unwrap();
            let (what, detail) = corrupt_msg(read_all(&buf));
            assert_eq!(what, "record 0");
            assert!(
                detail.contains("undecodable MessagePack payload"),
                "{detail}"
            );
        }
    }

    #[test]
    fn writer_splits_large_change_sets() {
        let big = cs(9, 40);
        let mut w = RecordWriter::new(Vec::new()).with_max_len(200);
        let n = w.write(&big).unwrap();
        assert!(n > 2, "{n}");
        assert_eq!(w.records(), n);
        let buf = w.into_inner();
        let parts = read_all(&buf).unwrap();
        assert_eq!(parts.len() as u64, n);
        assert!(parts
            .iter()
            .all(|p| p.version == 9 && p.timestamp_micros == big.timestamp_micros));
        let puts: Vec<_> = parts.iter().flat_map(|p| p.puts.clone()).collect();
        let dels: Vec<_> = parts.iter().flat_map(|p| p.deletes.clone()).collect();
        assert_eq!((puts, dels), (big.puts.clone(), big.deletes.clone()));
        // A single entry above the limit cannot be split.
        let one = ChangeSet {
            puts: vec![],
            ..cs(3, 0)
        };
        let mut w = RecordWriter::new(Vec::new()).with_max_len(4);
        assert!(w.write(&one).is_err());
    }
}
