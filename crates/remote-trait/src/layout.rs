//! The portable storage layout: how a remote's blobs and cursors map onto the names of a flat
//! key-value store, such as the files of a folder or the objects of a bucket.
//!
//! Every file-like backend (the folder remote, the bucket remotes) stores a remote this way, so the
//! files of a folder remote copied as they are into a bucket (`rclone copy`, `aws s3 sync`, `gsutil
//! cp -r`) form a valid bucket remote, and a bucket's objects downloaded into a folder form a valid
//! folder remote. `docs/format.md` §6.1 documents the same layout.
//!
//! ```text
//! blobs/<remote path>                  one file/object per blob, its bytes exactly as put
//! cursors/<cursor dir>/<20 digits>     cursor records: the folder remote's versions, newest highest
//! cursors/<cursor dir>/HEAD            the cursor head: "strata-cursor-head 1 <seq>\n" + value
//! tmp/…                                writes in progress; never part of the remote's contents
//! ```
//!
//! ## Cursors: records and the head
//! A cursor's current value is **the one with the highest sequence number** among its records (the
//! file name is the number) and its head (the number is in the head's first line). Each kind of
//! backend writes in its own way, and reads both:
//! - the folder remote creates record `n + 1` with create-if-absent (its compare-and-swap), then
//!   rewrites `HEAD` to match, so that a copy of the folder carries an up-to-date head;
//! - a bucket remote replaces `HEAD` with a conditional write (the store's compare-and-swap on one
//!   object) and never writes records; in a bucket, records are what a copied folder left behind.
//!   They are read only when there is no head.
//!
//! Cursor-name segments share the folder tree with record and head names, so a segment that looks
//! like one (20 digits, or `HEAD`, after any number of leading `@`) is stored with one more leading
//! `@` ([`encode_cursor_segment`]). Blob paths are stored as they are.

use bytes::Bytes;

use crate::{RemoteError, RemotePath, Result};

/// The folder that holds the blobs.
pub const BLOBS_DIR: &str = "blobs";
/// The folder that holds the cursors.
pub const CURSORS_DIR: &str = "cursors";
/// The folder of writes in progress (never part of a remote's contents).
pub const TMP_DIR: &str = "tmp";
/// The name of a cursor's head inside its folder.
pub const HEAD_NAME: &str = "HEAD";
/// Digits in a cursor record's name.
pub const RECORD_DIGITS: usize = 20;

const HEAD_MAGIC: &str = "strata-cursor-head";
const HEAD_VERSION: u32 = 1;
/// Longest head header line accepted, in bytes.
const MAX_HEAD_LINE: usize = 64;

/// Whether `s` is a record name: exactly [`RECORD_DIGITS`] ASCII digits.
pub fn is_record_name(s: &str) -> bool {
    s.len() == RECORD_DIGITS && s.bytes().all(|b| b.is_ascii_digit())
}

/// The sequence number a record name stands for.
pub fn record_seq(name: &str) -> Option<u64> {
    if is_record_name(name) {
        name.parse().ok()
    } else {
        None
    }
}

/// The name of record `seq`.
pub fn record_name(seq: u64) -> String {
    format!("{seq:0width$}", width = RECORD_DIGITS)
}

/// Whether a stored name inside a cursor folder is reserved: a record or the head.
fn is_reserved(s: &str) -> bool {
    is_record_name(s) || s == HEAD_NAME
}

/// The stored form of one cursor-name segment (see the module documentation).
pub fn encode_cursor_segment(seg: &str) -> String {
    if is_reserved(seg.trim_start_matches('@')) {
        format!("@{seg}")
    } else {
        seg.to_string()
    }
}

/// Reverses [`encode_cursor_segment`]; `None` for a record or head name, which is not a segment.
pub fn decode_cursor_segment(stored: &str) -> Option<&str> {
    if is_reserved(stored) {
        None
    } else if is_reserved(stored.trim_start_matches('@')) {
        Some(&stored[1..])
    } else {
        Some(stored)
    }
}

/// The key of a blob: `blobs/<path>`.
pub fn blob_key(path: &RemotePath) -> String {
    format!("{BLOBS_DIR}/{path}")
}

/// The key of a cursor's folder: `cursors/<encoded segments>`.
pub fn cursor_dir_key(name: &RemotePath) -> String {
    let mut out = String::from(CURSORS_DIR);
    for seg in name.segments() {
        out.push('/');
        out.push_str(&encode_cursor_segment(seg));
    }
    out
}

/// The cursor name a stored cursor folder (the part after `cursors/`, segments as stored) stands for;
/// `None` if a segment is a reserved name or the result is not a valid path.
pub fn cursor_name_of_dir(stored_rel: &str) -> Option<RemotePath> {
    let segs: Option<Vec<&str>> = stored_rel.split('/').map(decode_cursor_segment).collect();
    RemotePath::parse(&segs?.join("/")).ok()
}

/// Encodes a cursor head: the header line `strata-cursor-head 1 <seq>\n`, then the value's bytes.
pub fn encode_head(seq: u64, value: &[u8]) -> Vec<u8> {
    let mut out = format!("{HEAD_MAGIC} {HEAD_VERSION} {seq}\n").into_bytes();
    out.extend_from_slice(value);
    out
}

/// Decodes a cursor head into its sequence number and value. `what` names it in errors
/// ([`RemoteError::Corrupt`]).
pub fn decode_head(bytes: &Bytes, what: &str) -> Result<(u64, Bytes)> {
    let corrupt = |why: String| RemoteError::Corrupt(format!("cursor head {what}: {why}").into());
    let Some(nl) = bytes.iter().take(MAX_HEAD_LINE).position(|&b| b == b'\n') else {
        return Err(corrupt(format!(
            "no header line in its first {MAX_HEAD_LINE} bytes ({} bytes in all)",
            bytes.len()
        )));
    };
    let line = std::str::from_utf8(&bytes[..nl])
        .map_err(|_| corrupt("the header line is not UTF-8".into()))?;
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(HEAD_MAGIC), Some(v), Some(seq), None) => {
            if v != HEAD_VERSION.to_string() {
                return Err(corrupt(format!(
                    "format version {v:?}; this build reads version {HEAD_VERSION}"
                )));
            }
            let seq = seq
                .parse::<u64>()
                .ok()
                .filter(|s| (1..u64::MAX).contains(s))
                .ok_or_else(|| corrupt(format!("bad sequence number {seq:?}")))?;
            Ok((seq, bytes.slice(nl + 1..)))
        }
        _ => Err(corrupt(format!("bad header line {line:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_round_trip_and_never_look_reserved() {
        for seg in [
            "main",
            "HEAD",
            "@HEAD",
            "@@HEAD",
            "head",
            "00000000000000000001",
            "@00000000000000000001",
            "0000000000000000001",
            "@",
            "@x",
        ] {
            let stored = encode_cursor_segment(seg);
            assert!(
                !is_reserved(&stored),
                "{seg:?} stored as reserved {stored:?}"
            );
            assert_eq!(decode_cursor_segment(&stored), Some(seg), "{seg:?}");
        }
        assert_eq!(decode_cursor_segment("HEAD"), None);
        assert_eq!(decode_cursor_segment("00000000000000000042"), None);
        assert_eq!(encode_cursor_segment("HEAD"), "@HEAD");
        assert_eq!(encode_cursor_segment("main"), "main");
    }

    #[test]
    fn keys() {
        let name = RemotePath::parse("branches/HEAD/00000000000000000007").unwrap();
        assert_eq!(
            cursor_dir_key(&name),
            "cursors/branches/@HEAD/@00000000000000000007"
        );
        assert_eq!(
            cursor_name_of_dir("branches/@HEAD/@00000000000000000007"),
            Some(name)
        );
        assert_eq!(cursor_name_of_dir("branches/HEAD"), None);
        assert_eq!(
            blob_key(&RemotePath::parse("a/b~41").unwrap()),
            "blobs/a/b~41"
        );
        assert_eq!(record_name(7), "00000000000000000007");
        assert_eq!(record_seq("00000000000000000007"), Some(7));
        assert_eq!(record_seq("0000000000000000007"), None);
    }

    #[test]
    fn heads_round_trip_and_damage_is_named() {
        let enc = Bytes::from(encode_head(42, b"{\"a\":1}\nmore"));
        assert_eq!(
            decode_head(&enc, "x").unwrap(),
            (42, Bytes::from_static(b"{\"a\":1}\nmore"))
        );
        assert_eq!(
            decode_head(&Bytes::from(encode_head(1, b"")), "x").unwrap(),
            (1, Bytes::new())
        );
        for bad in [
            &b""[..],
            b"strata-cursor-head 1 42",
            b"strata-cursor-head 2 42\nv",
            b"strata-cursor-head 1 0\nv",
            b"strata-cursor-head 1 -3\nv",
            b"strata-cursor-head 1 4 2\nv",
            b"something else\nv",
            b"\xff\xfe\n",
        ] {
            match decode_head(&Bytes::copy_from_slice(bad), "cursors/x/HEAD") {
                Err(RemoteError::Corrupt(m)) => assert!(m.contains("cursors/x/HEAD"), "{m}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
