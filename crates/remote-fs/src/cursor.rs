//! Cursors as folders of immutable, numbered records.
//!
//! Cursor `name` lives in the folder `cursors/<name>/`. Each version is a file named by its sequence
//! number in 20 zero-padded digits (`00000000000000000007`), created whole or not at all by
//! [`publish`](crate::io::publish) (temporary file, fsync, `link(2)`). The current version is the
//! record with the highest number; its token is that number in decimal.
//!
//! Compare-and-swap with token `t` creates record `t + 1`; since `link(2)` never replaces an entry, of
//! all the writers holding `t` exactly one succeeds, in this process or any other. The loser gets
//! [`RemoteError::Conflict`]. Before creating, a writer checks that `t` is the highest record, which
//! rejects stale and made-up tokens early.
//!
//! ## Pruning, and why a writer checks after creating
//! Old records are pruned, oldest first, but only beyond the newest [`KEEP_RECORDS`] and only once they
//! are [`DEFAULT_PRUNE_GRACE`] older than the newest record (by ctime, which `link(2)` sets: one clock,
//! the file system's, even over NFS). Pruning frees a name, so a writer that read version `t`, then
//! stalled while others wrote `t + 1` … and pruned `t + 1`, could create `t + 1` again: a *stray* record
//! below the newest, which no reader takes. Such a writer must report a conflict, but a writer whose
//! record was simply superseded a moment later by someone who read it must report success. After
//! creating `t + 1` a writer therefore lists the folder, and if newer records exist it counts as the
//! winner only if
//! - less than half the grace passed since it listed the folder before writing (a stray needs the
//!   original `t + 1` to be created after that listing and to age by the whole grace before being
//!   pruned), or
//! - record `t` is still there, the same file it saw before writing (records are pruned in order, so
//!   `t + 1` cannot have been pruned while `t` stayed).
//!
//! Otherwise (it stalled for minutes *and* `t` is gone) it reports [`RemoteError::Conflict`], which can
//! be wrong in one case: if it did win and more than [`KEEP_RECORDS`] later writes followed during its
//! stall. The next read shows state built on its value.
//!
//! Cursor names share the folder tree with records, so a name segment that looks like a record name
//! (20 digits, after any number of leading `@`) is stored with one more leading `@`. Every other
//! segment is stored as is.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_remote::{Cursor, CursorToken, RemoteError, RemotePath, Result};

use crate::io::{map_io, publish, Published, TmpFile};

/// Records always kept per cursor when pruning.
pub const KEEP_RECORDS: usize = 32;

/// How long a superseded record is kept at least, measured from its publication to the newest
/// record's. A cursor write that stalls for more than half of it may report a conflict although it won.
pub const DEFAULT_PRUNE_GRACE: Duration = Duration::from_secs(120);

/// How often a read retries when the record it chose was pruned before it could open it.
const READ_ATTEMPTS: usize = 16;

pub(crate) use strata_remote::layout::{
    decode_cursor_segment as decode_name_segment, encode_cursor_segment as encode_name_segment,
    record_name, record_seq, HEAD_NAME,
};
use strata_remote::layout::{decode_head, encode_head, RECORD_DIGITS};

fn token(seq: u64) -> CursorToken {
    CursorToken(seq.to_string())
}

/// The record number in a token, or `None` if it is not one of ours.
fn parse_token(t: &CursorToken) -> Option<u64> {
    let s = t.0.as_str();
    if s.is_empty() || s.len() > RECORD_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| (1..u64::MAX).contains(n))
}

/// The record numbers in a cursor folder, ascending; empty if the folder does not exist.
pub(crate) fn list_records(dir: &Path) -> io::Result<Vec<u64>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if crate::io::is_absent(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut seqs = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(seq) = entry.file_name().to_str().and_then(record_seq) else {
            continue;
        };
        // Records are regular files; a sub-cursor's folder is never record-like (see the escaping).
        match entry.file_type() {
            Ok(t) if t.is_file() => seqs.push(seq),
            _ => {}
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// A cursor's head file, decoded (see [`strata_remote::layout`]).
struct Head {
    seq: u64,
    value: Bytes,
}

/// Whether a head's bytes are what an interrupted, unsynced rewrite can leave: nothing, or a file whose
/// blocks were never written (it starts with a NUL byte).
fn is_torn(bytes: &[u8]) -> bool {
    bytes.first().is_none_or(|&b| b == 0)
}

/// Reads the head in `dir`, if there is one. `has_records` says whether the cursor has a record: the
/// head is rewritten without fsync after each record (see [`update_head`]), so a torn head next to a
/// record is ignored; a torn head alone, or any other head that does not parse, is refused as corrupt.
fn read_head(dir: &Path, name: &RemotePath, has_records: bool) -> Result<Option<Head>> {
    let path = dir.join(HEAD_NAME);
    match fs::read(&path) {
        Ok(bytes) if has_records && is_torn(&bytes) => {
            tracing::warn!(head = %path.display(), "ignoring a torn cursor head; the next write rewrites it");
            Ok(None)
        }
        Ok(bytes) => {
            let (seq, value) = decode_head(&Bytes::from(bytes), &path.display().to_string())?;
            Ok(Some(Head { seq, value }))
        }
        Err(e) if crate::io::is_absent(&e) => Ok(None),
        Err(e) => Err(map_io(format_args!("read cursor {name}"), e)),
    }
}

/// Reads the cursor in `dir`: its newest record, or its head when that is newer (a folder copied from
/// a bucket remote, whose writers only replace the head).
pub(crate) fn read(dir: &Path, name: &RemotePath) -> Result<Option<Cursor>> {
    let what = || format!("read cursor {name}");
    for _ in 0..READ_ATTEMPTS {
        let seqs = list_records(dir).map_err(|e| map_io(what(), e))?;
        let head = read_head(dir, name, !seqs.is_empty())?;
        let newest = seqs.last().copied();
        if let Some(h) = head {
            if newest.is_none_or(|r| h.seq > r) {
                return Ok(Some(Cursor {
                    value: h.value,
                    token: token(h.seq),
                }));
            }
        }
        let Some(seq) = newest else {
            return Ok(None);
        };
        match fs::read(dir.join(record_name(seq))) {
            Ok(v) => {
                return Ok(Some(Cursor {
                    value: Bytes::from(v),
                    token: token(seq),
                }))
            }
            // Superseded and pruned between listing and reading: list again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(map_io(what(), e)),
        }
    }
    Err(RemoteError::Transient(
        format!(
            "{}: the cursor kept changing faster than it could be read",
            what()
        )
        .into(),
    ))
}

/// If the head in `dir` is newer than every record (a folder copied from a bucket), publishes it as a
/// record of its own number, so that the record compare-and-swap continues from it. Returns the
/// records afterwards.
fn adopt_head(dir: &Path, tmp_dir: &Path, name: &RemotePath, what: &str) -> Result<Vec<u64>> {
    let seqs = list_records(dir).map_err(|e| map_io(what, e))?;
    let Some(head) = read_head(dir, name, !seqs.is_empty())? else {
        return Ok(seqs);
    };
    if seqs.last().is_some_and(|&r| r >= head.seq) {
        return Ok(seqs);
    }
    let tmp = write_tmp(tmp_dir, &head.value, TmpSync::Fsync).map_err(|e| map_io(what, e))?;
    // Exists: another writer adopted it first, with the same bytes.
    publish(tmp, &dir.join(record_name(head.seq)), &what)?;
    list_records(dir).map_err(|e| map_io(what, e))
}

/// Rewrites the head in `dir` to match the newest record (best effort: folder readers never need the
/// head, only copies of the folder in a bucket do). `seq`/`value` is the record just written. Racing
/// writers can rename their heads in either order, so each checks afterwards and repairs a head older
/// than the newest record; the last writer to rename always runs that check.
///
/// Nothing here is fsynced: the record is already durable, and after a power loss the head is the old
/// one (older than the records: ignored), the new one, or torn (ignored next to a record, see
/// [`read_head`]). The next write rewrites it.
fn update_head(dir: &Path, tmp_dir: &Path, mut seq: u64, mut value: Bytes) {
    for _ in 0..READ_ATTEMPTS {
        let res = (|| -> io::Result<()> {
            let tmp = write_tmp(tmp_dir, &encode_head(seq, &value), TmpSync::NoFsync)?;
            fs::rename(tmp.path(), dir.join(HEAD_NAME))?;
            Ok(())
        })();
        if let Err(e) = res {
            tracing::warn!(dir = %dir.display(), error = %e, "could not update a cursor head");
            return;
        }
        let newest = match list_records(dir) {
            Ok(seqs) => seqs.last().copied(),
            Err(_) => return,
        };
        match newest {
            Some(n) if n > seq => match fs::read(dir.join(record_name(n))) {
                Ok(v) => (seq, value) = (n, Bytes::from(v)),
                Err(_) => continue,
            },
            _ => return,
        }
    }
}

/// Compare-and-swap write of the cursor in `dir`, staging its record in `tmp_dir`. `grace` is how long
/// superseded records are kept at least (see the module documentation).
pub(crate) fn write(
    dir: &Path,
    tmp_dir: &Path,
    name: &RemotePath,
    value: &[u8],
    expected: Option<&CursorToken>,
    grace: Duration,
) -> Result<CursorToken> {
    let what = format!("write cursor {name}");
    let conflict = |why: String| {
        Err(RemoteError::Conflict(
            format!("cursor {name}: {why}").into(),
        ))
    };
    let started = Instant::now();
    let seqs = adopt_head(dir, tmp_dir, name, &what)?;
    let (next, parent) = match expected {
        None => match seqs.last() {
            None => (1, None),
            Some(&cur) => return conflict(format!("already exists (version {cur})")),
        },
        Some(t) => {
            let Some(n) = parse_token(t) else {
                return conflict(format!("token {:?} is not a version of this remote", t.0));
            };
            match seqs.last() {
                None => {
                    return conflict(format!(
                        "expected version {n} but the cursor does not exist"
                    ))
                }
                Some(&cur) if cur != n => {
                    return conflict(format!(
                        "expected version {n} but the current version is {cur}"
                    ));
                }
                Some(_) => (n + 1, identity(&dir.join(record_name(n)))),
            }
        }
    };

    let tmp = write_tmp(tmp_dir, value, TmpSync::Fsync).map_err(|e| map_io(&what, e))?;
    match publish(tmp, &dir.join(record_name(next)), &what)? {
        Published::Done => {}
        Published::Exists => {
            return conflict(format!("version {next} was written by someone else first"))
        }
    }

    let after = list_records(dir).map_err(|e| map_io(&what, e))?;
    let newest = after.last().copied().unwrap_or(next);
    if newest > next && !won_despite_newer(dir, next, parent, started.elapsed(), grace) {
        return conflict(format!(
            "version {newest} is newer than the one just written ({next}), and this write stalled for \
             {:?}, long enough that its version may have been pruned and written again",
            started.elapsed()
        ));
    }
    prune(dir, &after, grace);
    update_head(dir, tmp_dir, next, Bytes::copy_from_slice(value));
    Ok(token(next))
}

/// Whether a writer that created record `next` (and now sees newer ones) won: see the module
/// documentation. `parent` is the identity of record `next - 1` seen before writing, `elapsed` the time
/// since that listing.
fn won_despite_newer(
    dir: &Path,
    next: u64,
    parent: Option<FileId>,
    elapsed: Duration,
    grace: Duration,
) -> bool {
    if elapsed < grace / 2 {
        return true;
    }
    parent.is_some() && identity(&dir.join(record_name(next - 1))) == parent
}

/// Enough of a file's identity to tell it from a file created later under the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_nanos: i128,
}

/// What a record's metadata tells: its identity, and when it was published in nanoseconds on the file
/// system's clock (its ctime, which `link(2)` sets; the modification time where there is no ctime).
fn stat(path: &Path) -> Option<(FileId, i128)> {
    let m = fs::symlink_metadata(path).ok()?;
    let nanos = |secs: i64, nsecs: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsecs);
    #[cfg(unix)]
    let (dev, ino, mtime, ctime) = {
        use std::os::unix::fs::MetadataExt;
        (
            m.dev(),
            m.ino(),
            nanos(m.mtime(), m.mtime_nsec()),
            nanos(m.ctime(), m.ctime_nsec()),
        )
    };
    #[cfg(not(unix))]
    let (dev, ino, mtime, ctime) = {
        let t = m
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        let t = nanos(t.as_secs() as i64, i64::from(t.subsec_nanos()));
        (0, 0, t, t)
    };
    Some((
        FileId {
            dev,
            ino,
            len: m.len(),
            mtime_nanos: mtime,
        },
        ctime,
    ))
}

fn identity(path: &Path) -> Option<FileId> {
    stat(path).map(|(id, _)| id)
}

fn published_nanos(path: &Path) -> Option<i128> {
    stat(path).map(|(_, published)| published)
}

/// Whether [`write_tmp`] fsyncs what it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TmpSync {
    /// Yes: the file is about to be published as a record.
    Fsync,
    /// No: the file becomes the head, which needs no durability of its own.
    NoFsync,
}

/// Writes `value` to a new temporary file, fsyncing it if `sync` says so.
fn write_tmp(tmp_dir: &Path, value: &[u8], sync: TmpSync) -> io::Result<TmpFile> {
    use std::io::Write;
    let (tmp, mut file) = TmpFile::create(tmp_dir)?;
    file.write_all(value)?;
    if sync == TmpSync::Fsync {
        // fdatasync: the data and the size, which is all a reader of the published record needs.
        file.sync_data()?;
    }
    Ok(tmp)
}

/// Removes records beyond the newest [`KEEP_RECORDS`] that were published at least `grace` before the
/// newest, oldest first and stopping at the first one too young, so that the records present at any
/// moment stay a contiguous run. Best effort.
fn prune(dir: &Path, seqs: &[u64], grace: Duration) {
    let Some(cut) = seqs.len().checked_sub(KEEP_RECORDS) else {
        return;
    };
    let Some(newest) = seqs
        .last()
        .and_then(|&s| published_nanos(&dir.join(record_name(s))))
    else {
        return;
    };
    let grace = grace.as_nanos() as i128;
    for &seq in &seqs[..cut] {
        let path = dir.join(record_name(seq));
        let Some(published) = published_nanos(&path) else {
            continue;
        };
        if newest - published < grace {
            return;
        }
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::debug!(dir = %dir.display(), seq, error = %e, "could not prune a cursor record");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_segments_roundtrip_and_never_look_like_records() {
        let digits = "00000000000000000001";
        for seg in [
            "main",
            "@",
            "@main",
            digits,
            "@00000000000000000001",
            "@@00000000000000000001",
            "123",
        ] {
            let enc = encode_name_segment(seg);
            assert!(record_seq(&enc).is_none(), "{seg:?} -> {enc:?}");
            assert_eq!(decode_name_segment(&enc), Some(seg));
        }
        assert_eq!(encode_name_segment("main"), "main");
        assert_eq!(decode_name_segment(digits), None);
    }

    #[test]
    fn a_writer_that_sees_newer_records_wins_only_when_it_can_tell() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        for seq in 4..=40 {
            fs::write(dir.join(record_name(seq)), seq.to_string()).unwrap();
        }
        let parent = identity(&dir.join(record_name(4)));
        let grace = Duration::from_secs(100);
        let (quick, slow) = (Duration::from_secs(1), Duration::from_secs(60));
        // Just written: whatever followed was built on it.
        assert!(won_despite_newer(dir, 5, parent, quick, grace));
        assert!(won_despite_newer(dir, 1, None, quick, grace));
        // Stalled, but the record it built on is still the same file: 5 cannot have been pruned.
        assert!(won_despite_newer(dir, 5, parent, slow, grace));
        // Stalled, and its parent was pruned, or replaced by another file of the same name.
        fs::remove_file(dir.join(record_name(4))).unwrap();
        assert!(!won_despite_newer(dir, 5, parent, slow, grace));
        std::thread::sleep(Duration::from_millis(10));
        fs::write(dir.join(record_name(4)), b"a stray 4").unwrap();
        assert!(!won_despite_newer(dir, 5, parent, slow, grace));
        assert!(!won_despite_newer(dir, 1, None, slow, grace));
    }

    #[test]
    fn prune_keeps_the_newest_and_the_young() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let seqs: Vec<u64> = (1..=50).collect();
        for &seq in &seqs {
            fs::write(dir.join(record_name(seq)), b"").unwrap();
        }
        prune(dir, &seqs, Duration::from_secs(3600));
        assert_eq!(list_records(dir).unwrap(), seqs);
        prune(dir, &seqs, Duration::ZERO);
        assert_eq!(list_records(dir).unwrap(), (19..=50).collect::<Vec<_>>());
    }

    #[test]
    fn tokens() {
        assert_eq!(parse_token(&token(7)), Some(7));
        for bad in [
            "",
            "0",
            "-1",
            "+3",
            "abc",
            "1.0",
            " 1",
            "184467440737095516150",
        ] {
            assert_eq!(parse_token(&CursorToken(bad.into())), None, "{bad:?}");
        }
        assert_eq!(record_name(7), "00000000000000000007");
        assert_eq!(record_seq("00000000000000000007"), Some(7));
    }
}
