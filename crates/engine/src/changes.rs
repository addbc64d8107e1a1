//! The change log: `changes_since` streams per-version change sets through the `(branch, version)`
//! index, so its cost grows with the number of changes read, not with the size of the branch;
//! `apply_changes` replays a stream atomically.

use std::collections::VecDeque;

use rusqlite::{params, Connection};

use crate::db::Strata;
use crate::error::{Error, Result};
use crate::names::{validate_key, validate_space_name};
use crate::raw::RawChangeSet;
use crate::store::{self, BranchRow, Segment};
use crate::types::{ApplyReport, ChangeSet, EntryKey, Kind, Rev};

/// Rows read per query; also the most entries one yielded `ChangeSet` holds.
pub const CHANGE_PAGE: usize = 2048;

/// The most value bytes (MessagePack) one yielded `ChangeSet` holds: a page is cut before a value
/// that would take it past this, so memory does not grow with value size. A single larger value
/// still forms a set of its own. Sets cut from one commit keep its version, and replay joins
/// consecutive sets with the same version into one commit again.
pub const CHANGE_PAGE_BYTES: usize = 4 << 20;

/// The page cache (`PRAGMA cache_size`, negative is KiB) a bulk replay runs with: 8 MiB instead of
/// the connection's 16 MiB, so a large clone or pull does not hold a big cache of dirty pages.
const APPLY_CACHE_SIZE: i64 = -8192;

/// A streaming iterator over a branch's change sets, oldest first. It captures the branch head when it
/// is created and reads in pages, holding the database lock only while a page is read.
pub struct ChangeIter {
    db: Strata,
    segs: VecDeque<Segment>,
    /// Commits of the current segment still to read, in version order.
    commits: VecDeque<store::CommitRange>,
    /// The last commit version listed from the current segment.
    listed_to: u64,
    /// The last rowid read inside the current commit.
    after_row: i64,
    ready: VecDeque<ChangeSet>,
    /// The head version the iterator stops at.
    pub until: u64,
}

impl std::fmt::Debug for ChangeIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeIter")
            .field("until", &self.until)
            .finish()
    }
}

impl Strata {
    /// The change sets of `branch` after `version`, oldest first, up to the head at the time of the
    /// call. Inherited versions (from the branch this one was forked from) are included.
    pub fn changes_since(&self, branch: &str, version: u64) -> Result<ChangeIter> {
        self.changes_between(&Rev::head(branch), version)
    }

    /// The change sets of `rev` (a branch or `branch@version`) after `version`.
    pub fn changes_between(&self, rev: &Rev, version: u64) -> Result<ChangeIter> {
        let conn = self.conn()?;
        let (_, until, view) = crate::db::rev_view(&conn, rev)?;
        let mut segs: VecDeque<Segment> = VecDeque::new();
        for s in view.segs.iter().rev() {
            if s.hi <= version {
                continue;
            }
            segs.push_back(Segment {
                branch: s.branch,
                lo: s.lo.max(version),
                hi: s.hi,
            });
        }
        drop(conn);
        Ok(ChangeIter {
            db: self.clone(),
            listed_to: segs.front().map(|s| s.lo).unwrap_or(0),
            segs,
            commits: VecDeque::new(),
            after_row: i64::MIN,
            ready: VecDeque::new(),
            until,
        })
    }

    /// Replays change sets onto `branch` in one transaction: all or nothing. Incoming versions are kept:
    /// the first must be above the branch head and they must not go down (consecutive sets with the same
    /// version form one commit). A replica therefore has the same version numbers as its source.
    pub fn apply_changes(
        &self,
        branch: &str,
        changes: impl IntoIterator<Item = Result<ChangeSet>>,
    ) -> Result<ApplyReport> {
        self.apply_raw_changes(
            branch,
            changes.into_iter().map(|c| c.map(RawChangeSet::from)),
        )
    }

    /// [`Strata::apply_changes`] for change sets whose values are still MessagePack (see
    /// [`crate::raw`]): the fast path for large replays, with no decode-and-encode round trip.
    pub fn apply_raw_changes(
        &self,
        branch: &str,
        changes: impl IntoIterator<Item = Result<RawChangeSet>>,
    ) -> Result<ApplyReport> {
        self.write(|conn| {
            let row = store::branch_by_name(conn, branch)?;
            apply_in_txn(conn, &row, changes, "apply")
        })
    }

    /// Records that `target` (a branch, or `branch@version`) already contains `source` (at its
    /// version), as if merged. Later merges use this as their common ancestor; recorded both ways, it
    /// says the two points hold equal contents, which lets diffs between the two branches read only
    /// what changed since. For the sync library, after it has made a mirror and a branch equal.
    #[allow(dead_code)]
    pub(crate) fn record_merge(&self, source: &Rev, target: &Rev) -> Result<()> {
        self.write(|conn| {
            let (src, sv, _) = crate::db::rev_view(conn, source)?;
            let (tgt, tv, _) = crate::db::rev_view(conn, target)?;
            conn.execute(
                "INSERT OR IGNORE INTO merges(target, target_version, source, source_version) VALUES (?1, ?2, ?3, ?4)",
                params![tgt.id, tv as i64, src.id, sv as i64],
            )?;
            Ok(())
        })
    }

    /// The whole contents of `rev` as change sets at its version (puts only, at most
    /// [`CHANGE_PAGE`] entries and [`CHANGE_PAGE_BYTES`] value bytes each, or one larger value), in key
    /// order, streamed: a snapshot of the state rather than its history.
    pub fn snapshot(&self, rev: &Rev) -> Result<SnapshotIter> {
        let conn = self.conn()?;
        let (_, version, view) = crate::db::rev_view(&conn, rev)?;
        let ts = match view.segs.first() {
            Some(s) => rusqlite::OptionalExtension::optional(
                conn.prepare_cached("SELECT ts FROM commits WHERE branch=?1 AND version=?2")?
                    .query_row(params![s.branch, version as i64], |r| r.get::<_, i64>(0)),
            )?
            .unwrap_or(0) as u64,
            None => 0,
        };
        drop(conn);
        Ok(SnapshotIter {
            db: self.clone(),
            scanner: store::Scanner::new(view, store::ScanRange::All, CHANGE_PAGE)
                .max_bytes(CHANGE_PAGE_BYTES),
            version,
            ts,
            done: false,
        })
    }
}

/// A streaming iterator over a revision's contents, as puts at one version. See [`Strata::snapshot`].
pub struct SnapshotIter {
    db: Strata,
    scanner: store::Scanner,
    version: u64,
    ts: u64,
    done: bool,
}

impl std::fmt::Debug for SnapshotIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotIter")
            .field("version", &self.version)
            .finish()
    }
}

impl SnapshotIter {
    /// The version the snapshot is taken at.
    pub fn version(&self) -> u64 {
        self.version
    }
}

impl Iterator for SnapshotIter {
    type Item = Result<ChangeSet>;
    fn next(&mut self) -> Option<Result<ChangeSet>> {
        while !self.done {
            let page = match self.db.conn().and_then(|c| self.scanner.next_page(&c)) {
                Ok(Some(p)) => p,
                Ok(None) => {
                    self.done = true;
                    break;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let puts: Vec<_> = page
                .into_iter()
                .filter_map(|(k, _, v)| v.map(|v| (k, v)))
                .collect();
            if !puts.is_empty() {
                return Some(Ok(ChangeSet {
                    version: self.version,
                    timestamp_micros: self.ts,
                    puts,
                    deletes: vec![],
                    meta: Some(crate::types::CommitMeta {
                        kind: "snapshot".into(),
                        message: format!("state at version {}", self.version),
                        author: None,
                    }),
                }));
            }
        }
        None
    }
}

/// Applies a stream of change sets to `row` inside an open write transaction, with a small page cache
/// for the duration (the connection's own is restored after, whatever the outcome).
pub(crate) fn apply_in_txn(
    conn: &Connection,
    row: &BranchRow,
    changes: impl IntoIterator<Item = Result<RawChangeSet>>,
    label: &str,
) -> Result<ApplyReport> {
    let cache: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
    conn.execute_batch(&format!("PRAGMA cache_size={APPLY_CACHE_SIZE}"))?;
    let out = apply_rows(conn, row, changes, label);
    let restored = conn.execute_batch(&format!("PRAGMA cache_size={cache}"));
    let report = out?;
    restored?;
    Ok(report)
}

/// How many replayed versions wait, at most, before their commit rows are written (see
/// [`Replayed`]).
const PENDING_COMMITS: usize = 1024;

fn apply_rows(
    conn: &Connection,
    row: &BranchRow,
    changes: impl IntoIterator<Item = Result<RawChangeSet>>,
    label: &str,
) -> Result<ApplyReport> {
    let start_head = row.head;
    // Holds the insert statements for the whole replay.
    let mut writer = store::RowWriter::new(conn);
    let mut cur: Option<Replayed> = None;
    let mut done: Vec<Replayed> = Vec::new();
    let mut report = ApplyReport {
        versions: 0,
        entries: 0,
        head: start_head,
    };
    for cs in changes {
        let cs = cs?;
        match &cur {
            Some(c) if c.version == cs.version => {}
            Some(c) if cs.version < c.version => {
                return Err(Error::corrupt(
                    "change stream",
                    format!("version {} comes after version {}", cs.version, c.version),
                ))
            }
            _ => {
                if cs.version <= start_head {
                    return Err(Error::InvalidOperation(format!(
                        "change set version {} does not follow branch {:?} head {start_head}",
                        cs.version, row.name
                    )));
                }
                let first_row = store::max_rowid(conn)? + 1;
                if let Some(c) = cur.take() {
                    done.push(c.close(first_row - 1, &writer));
                    if done.len() >= PENDING_COMMITS {
                        record_replayed(conn, row.id, label, &mut done)?;
                    }
                }
                cur = Some(Replayed {
                    version: cs.version,
                    ts: cs.timestamp_micros,
                    first_row,
                    last_row: 0,
                    meta: cs.meta.clone(),
                    written: 0,
                    replaced: writer.replaced(),
                });
                report.versions += 1;
            }
        }
        for k in cs.puts.iter().map(|(k, _)| k).chain(&cs.deletes) {
            check_entry_key(k)?;
        }
        // Puts, then deletes (a key both put and deleted in one set ends deleted).
        let rows = cs.puts.iter().map(|(k, v)| (k, Some(v.as_slice())));
        writer.write_rows(
            row.id,
            cs.version,
            rows.chain(cs.deletes.iter().map(|k| (k, None))),
        )?;
        if let Some(c) = &mut cur {
            c.written += cs.len() as u64;
        }
        report.entries += cs.len() as u64;
    }
    if let Some(c) = cur {
        report.head = c.version;
        done.push(c.close(store::max_rowid(conn)?, &writer));
    }
    record_replayed(conn, row.id, label, &mut done)?;
    Ok(report)
}

/// A version being replayed. Its commit row is written after its rows, and after those of up to
/// [`PENDING_COMMITS`] versions, never between them: a page of `commits` or `branches` written
/// between two large versions would have left SQLite's cache (spilled to the WAL) in between, and
/// writing it again makes SQLite re-checksum every WAL frame after its first copy at commit.
struct Replayed {
    version: u64,
    ts: u64,
    /// The rowids of its rows (`last_row` set when it is closed).
    first_row: i64,
    last_row: i64,
    /// Its kind, message and author, if the stream carries them.
    meta: Option<crate::types::CommitMeta>,
    /// The rows written for it; once closed, `u64::MAX` if some replaced another.
    written: u64,
    /// The writer's count of replaced rows when it started.
    replaced: u64,
}

impl Replayed {
    /// Ends the version: its rows end at `last_row`.
    fn close(mut self, last_row: i64, writer: &store::RowWriter<'_>) -> Replayed {
        self.last_row = last_row.max(self.first_row - 1);
        if writer.replaced() != self.replaced {
            self.written = u64::MAX;
        }
        self
    }
}

/// Writes the commit rows of closed versions (with the metadata their stream carried, else as
/// `label`, e.g. `apply`) and moves the branch head to the last. When no row replaced another, a
/// version's rows are the ones written: no need to count them again, which would read them all back
/// (from disk once a large replay has left the page cache).
fn record_replayed(
    conn: &Connection,
    branch: i64,
    label: &str,
    done: &mut Vec<Replayed>,
) -> Result<()> {
    let Some(last) = done.last().map(|c| c.version) else {
        return Ok(());
    };
    for c in done.drain(..) {
        let (kind, message, author) = match &c.meta {
            Some(m) => (m.kind.as_str(), m.message.as_str(), m.author.as_deref()),
            None => (label, "", None),
        };
        store::insert_commit(
            conn,
            branch,
            c.version,
            c.ts,
            kind,
            message,
            author,
            c.first_row,
            c.last_row,
            (c.written != u64::MAX).then_some(c.written),
        )?;
    }
    store::set_head(conn, branch, last)
}

/// The rules every replayed entry key must meet (shared with bundle verification).
pub(crate) fn check_entry_key(k: &EntryKey) -> Result<()> {
    validate_space_name(&k.space, true)?;
    validate_key(&k.key)?;
    if k.kind == Kind::Event && (k.key.len() != 20 || !k.key.bytes().all(|b| b.is_ascii_digit())) {
        return Err(Error::invalid(
            "event key",
            &k.key,
            "must be 20 decimal digits",
        ));
    }
    Ok(())
}

impl ChangeIter {
    /// Reads the next page: one commit's rows after the last one read. Each page costs an index
    /// seek plus the rows read, so iterating costs what the changes cost, whatever the branch size.
    fn fill(&mut self) -> Result<()> {
        while self.ready.is_empty() {
            let Some(seg) = self.segs.front().copied() else {
                return Ok(());
            };
            let db = self.db.clone();
            let conn = db.conn()?;
            if self.commits.is_empty() {
                let page = store::commits_in(&conn, seg.branch, self.listed_to, seg.hi, 256)?;
                match page.last() {
                    None => {
                        self.segs.pop_front();
                        self.listed_to = self.segs.front().map(|s| s.lo).unwrap_or(0);
                        continue;
                    }
                    Some(last) => self.listed_to = last.version,
                }
                self.commits.extend(page);
                self.after_row = i64::MIN;
            }
            let c = self.commits.front().expect("not empty").clone();
            let (rows, complete) = store::commit_rows(
                &conn,
                seg.branch,
                &c,
                self.after_row,
                CHANGE_PAGE,
                CHANGE_PAGE_BYTES,
            )?;
            if complete {
                self.commits.pop_front();
                self.after_row = i64::MIN;
            } else {
                self.after_row = rows.last().expect("full page").0;
            }
            if rows.is_empty() {
                continue;
            }
            let mut cs = ChangeSet {
                version: c.version,
                timestamp_micros: c.ts,
                puts: vec![],
                deletes: vec![],
                meta: Some(c.meta.clone()),
            };
            for (_, k, value) in rows {
                match store::decode_value(value)? {
                    Some(v) => cs.puts.push((k, v)),
                    None => cs.deletes.push(k),
                }
            }
            self.ready.push_back(cs);
        }
        Ok(())
    }
}

impl Iterator for ChangeIter {
    type Item = Result<ChangeSet>;
    fn next(&mut self) -> Option<Result<ChangeSet>> {
        if let Err(e) = self.fill() {
            self.segs.clear();
            self.ready.clear();
            return Some(Err(e));
        }
        self.ready.pop_front().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;
    use crate::types::EntryKey;
    use crate::Value;

    /// A bulk replay runs with the small page cache and restores the connection's after, on success
    /// and on failure; it writes its rows through two prepared statements (batches of rows, and
    /// single rows), never re-prepared, and records each version's row count.
    #[test]
    fn bulk_apply_keeps_a_small_cache_and_holds_its_statements() {
        let db = Strata::open_temp().unwrap();
        let conn = db.conn().unwrap();
        let cache =
            |c: &Connection| -> i64 { c.query_row("PRAGMA cache_size", [], |r| r.get(0)).unwrap() };
        assert_eq!(cache(&conn), store::CACHE_SIZE);
        let value = Value::from("v").to_msgpack();
        let mut seen = Vec::new();
        let rows = 3000usize;
        let sets = (0..3u64).map(|s| {
            seen.push(cache(&conn));
            Ok(RawChangeSet {
                version: 1 + s / 2,
                timestamp_micros: 0,
                puts: (0..rows / 3)
                    .map(|i| {
                        (
                            EntryKey::new("default", Kind::Kv, format!("k{s}:{i}")),
                            value.clone(),
                        )
                    })
                    .collect(),
                deletes: vec![],
                meta: None,
            })
        });
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let row = store::branch_by_name(&conn, "main").unwrap();
        let report = apply_in_txn(&conn, &row, sets, "apply").unwrap();
        conn.execute_batch("COMMIT").unwrap();
        assert_eq!((report.versions, report.entries), (2, rows as u64));
        assert_eq!(seen, vec![APPLY_CACHE_SIZE; 3]);
        assert_eq!(cache(&conn), store::CACHE_SIZE);
        // Each set of 1000 rows: 15 batches of 64, then 40 rows one by one.
        let batch = conn.prepare_cached(&store::PUT_BATCH_SQL).unwrap();
        let single = conn.prepare_cached(store::PUT_NEW_SQL).unwrap();
        for (st, runs) in [(&batch, 3 * 15), (&single, 3 * 40)] {
            assert_eq!(
                st.get_status(StatementStatus::Run),
                runs,
                "{}",
                st.expanded_sql().unwrap_or_default()
            );
            assert_eq!(st.get_status(StatementStatus::RePrepare), 0);
        }
        drop((batch, single));

        // Each version's recorded entry count is its rows, counted while writing.
        let counts = |c: &Connection| -> Vec<(i64, i64)> {
            let mut st = c
                .prepare(
                    "SELECT c.entries, (SELECT COUNT(*) FROM entries e WHERE e.rowid BETWEEN c.first_row AND c.last_row) \
                     FROM commits c WHERE c.branch = ?1 ORDER BY c.version",
                )
                .unwrap();
            st.query_map([row.id], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        assert_eq!(counts(&conn), vec![(2000, 2000), (1000, 1000)]);

        // Keys repeated inside a version (across its sets, and put then deleted in one set) leave
        // one row each, and the count says so.
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let row = store::branch_by_name(&conn, "main").unwrap();
        let key = |i: usize| EntryKey::new("default", Kind::Kv, format!("d{i}"));
        let set = |range: std::ops::Range<usize>, deletes: Vec<EntryKey>| {
            Ok(RawChangeSet {
                version: 3,
                timestamp_micros: 0,
                puts: range.map(|i| (key(i), value.clone())).collect(),
                deletes,
                meta: None,
            })
        };
        let sets = [set(0..100, vec![]), set(50..150, vec![key(149), key(200)])];
        let report = apply_in_txn(&conn, &row, sets, "apply").unwrap();
        conn.execute_batch("COMMIT").unwrap();
        assert_eq!(report.entries, 202);
        assert_eq!(counts(&conn)[2], (151, 151));

        // A failing replay restores the cache too.
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let row = store::branch_by_name(&conn, "main").unwrap();
        let bad = [Ok(RawChangeSet {
            version: 1,
            timestamp_micros: 0,
            puts: vec![],
            deletes: vec![],
            meta: None,
        })];
        assert!(apply_in_txn(&conn, &row, bad, "apply").is_err());
        conn.execute_batch("ROLLBACK").unwrap();
        assert_eq!(cache(&conn), store::CACHE_SIZE);
    }
}
