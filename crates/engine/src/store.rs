//! The SQLite schema, connection set-up, lineage views and paged reads.
//!
//! A branch's rows live in `entries` under its own id. A fork stores only `(parent, fork_version)`; its
//! version numbers continue from the fork point, so along any lineage the versions only grow. A *view*
//! (a branch at a version) is therefore a list of segments `(branch, lo, hi]`, child first, and the value
//! of a key in the view is the row with the highest version inside the segments.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::types::{EntryKey, Kind};
use crate::value::Value;

/// The schema version this build writes and reads.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// How hard a commit tries to reach stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync on every commit (`synchronous=FULL`): a commit survives power loss.
    #[default]
    Full,
    /// fsync at checkpoints (`synchronous=NORMAL`): a commit survives a process crash (`kill -9`) but the
    /// last commits may be lost on power loss.
    Normal,
}

/// Options for [`crate::Strata::open_with`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Commit durability.
    pub durability: Durability,
    /// How long a writer waits for another writer (another handle or process) before failing with
    /// [`Error::Conflict`].
    pub busy_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(10),
        }
    }
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS branches (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    parent       INTEGER,
    fork_version INTEGER NOT NULL DEFAULT 0,
    head         INTEGER NOT NULL DEFAULT 0,
    created      INTEGER NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0,
    purged       INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS branches_live_name ON branches(name) WHERE deleted = 0;
CREATE TABLE IF NOT EXISTS entries (
    branch  INTEGER NOT NULL,
    kind    INTEGER NOT NULL,
    space   TEXT NOT NULL,
    key     TEXT NOT NULL,
    version INTEGER NOT NULL,
    value   BLOB,
    tag     TEXT,
    eid     INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS entries_key ON entries(branch, kind, space, key, version);
CREATE INDEX IF NOT EXISTS entries_by_event_id ON entries(branch, space, eid) WHERE eid IS NOT NULL;
CREATE TABLE IF NOT EXISTS commits (
    branch    INTEGER NOT NULL,
    version   INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    message   TEXT NOT NULL DEFAULT '',
    entries   INTEGER NOT NULL DEFAULT 0,
    first_row INTEGER NOT NULL,
    last_row  INTEGER NOT NULL,
    PRIMARY KEY (branch, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS merges (
    target         INTEGER NOT NULL,
    target_version INTEGER NOT NULL,
    source         INTEGER NOT NULL,
    source_version INTEGER NOT NULL,
    PRIMARY KEY (target, target_version, source, source_version)
) WITHOUT ROWID;
"#;

pub(crate) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Opens one connection to the SQLite file with Strata's per-connection settings.
pub(crate) fn connect(file: &Path, opts: &Options) -> Result<Connection> {
    let conn = Connection::open(file)?;
    conn.busy_timeout(opts.busy_timeout)?;
    let sync = match opts.durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync}; PRAGMA foreign_keys=OFF; PRAGMA cache_size=-65536; PRAGMA temp_store=FILE;"
    ))?;
    Ok(conn)
}

/// Opens (creating if needed) the SQLite file and brings the schema up. Only a new or older database
/// takes the write lock; opening an existing one is a read.
pub(crate) fn open_connection(file: &Path, opts: &Options) -> Result<Connection> {
    let conn = connect(file, opts)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(crate::error::map_busy)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::InvalidOperation(format!(
            "could not switch {} to WAL journal mode (got {mode})",
            file.display()
        )));
    }
    if schema_ready(&conn)? {
        return Ok(conn);
    }
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(crate::error::map_busy)?;
    let setup = (|| -> Result<()> {
        conn.execute_batch(SCHEMA)?;
        let found: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key='schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match found {
            None => {
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES('schema_version', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )?;
            }
            Some(v) => {
                let v: i64 = v
                    .parse()
                    .map_err(|_| Error::corrupt("database", "unreadable schema_version"))?;
                if v > SCHEMA_VERSION {
                    return Err(Error::SchemaTooNew {
                        found: v,
                        supported: SCHEMA_VERSION,
                    });
                }
            }
        }
        let has_main: bool =
            conn.query_row("SELECT EXISTS(SELECT 1 FROM branches)", [], |r| r.get(0))?;
        if !has_main {
            conn.execute(
                "INSERT INTO branches(name, parent, fork_version, head, created) VALUES('main', NULL, 0, 0, ?1)",
                [now_micros() as i64],
            )?;
        }
        Ok(())
    })();
    match setup {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    Ok(conn)
}

/// Whether the schema exists at a version this build reads (a read; no write lock needed).
fn schema_ready(conn: &Connection) -> Result<bool> {
    let has_meta: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta')",
        [],
        |r| r.get(0),
    )?;
    if !has_meta {
        return Ok(false);
    }
    let found: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key='schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    match found.map(|v| v.parse::<i64>()) {
        Some(Ok(v)) if v > SCHEMA_VERSION => Err(Error::SchemaTooNew {
            found: v,
            supported: SCHEMA_VERSION,
        }),
        Some(Ok(v)) if v == SCHEMA_VERSION => {
            Ok(conn.query_row("SELECT EXISTS(SELECT 1 FROM branches)", [], |r| r.get(0))?)
        }
        _ => Ok(false),
    }
}

/// A branch row.
#[derive(Clone, Debug)]
pub(crate) struct BranchRow {
    pub id: i64,
    pub name: String,
    pub parent: Option<i64>,
    pub fork_version: u64,
    pub head: u64,
    pub created: u64,
    pub deleted: bool,
    pub purged: bool,
}

const BRANCH_COLS: &str = "id, name, parent, fork_version, head, created, deleted, purged";

fn branch_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BranchRow> {
    Ok(BranchRow {
        id: r.get(0)?,
        name: r.get(1)?,
        parent: r.get(2)?,
        fork_version: r.get::<_, i64>(3)? as u64,
        head: r.get::<_, i64>(4)? as u64,
        created: r.get::<_, i64>(5)? as u64,
        deleted: r.get(6)?,
        purged: r.get(7)?,
    })
}

pub(crate) fn branch_by_name(conn: &Connection, name: &str) -> Result<BranchRow> {
    conn.prepare_cached(
        "SELECT id, name, parent, fork_version, head, created, deleted, purged FROM branches \
         WHERE name=?1 AND deleted=0",
    )?
    .query_row([name], branch_from_row)
    .optional()?
    .ok_or_else(|| Error::BranchNotFound(name.to_string()))
}

pub(crate) fn branch_by_id(conn: &Connection, id: i64) -> Result<BranchRow> {
    conn.prepare_cached(
        "SELECT id, name, parent, fork_version, head, created, deleted, purged FROM branches WHERE id=?1",
    )?
    .query_row([id], branch_from_row)
    .optional()?
    .ok_or_else(|| {
        Error::corrupt(
            "database",
            format!("branch id {id} is referenced but missing"),
        )
    })
}

pub(crate) fn live_branches(conn: &Connection) -> Result<Vec<BranchRow>> {
    let mut st = conn.prepare(&format!(
        "SELECT {BRANCH_COLS} FROM branches WHERE deleted=0 ORDER BY name"
    ))?;
    let rows = st
        .query_map([], branch_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// A run of one branch's rows: versions in `(lo, hi]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub branch: i64,
    pub lo: u64,
    pub hi: u64,
}

/// A branch at a version: its lineage segments, child first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct View {
    pub segs: Vec<Segment>,
}

impl View {
    pub fn empty() -> View {
        View { segs: Vec::new() }
    }

    /// The highest version this view covers of `branch`, if any.
    pub fn covers(&self, branch: i64) -> Option<(u64, u64)> {
        self.segs
            .iter()
            .find(|s| s.branch == branch)
            .map(|s| (s.lo, s.hi))
    }
}

/// The view of branch `id` at `version`.
pub(crate) fn view_at(conn: &Connection, id: i64, version: u64) -> Result<View> {
    let mut segs = Vec::new();
    let mut cur = Some(id);
    let mut v = version;
    while let Some(b) = cur {
        let row = branch_by_id(conn, b)?;
        let lo = if row.parent.is_some() {
            row.fork_version
        } else {
            0
        };
        if v > lo {
            segs.push(Segment {
                branch: b,
                lo,
                hi: v,
            });
        }
        if row.parent.is_some() {
            v = v.min(row.fork_version);
        }
        cur = row.parent;
        if segs.len() > 10_000 {
            return Err(Error::corrupt("database", "branch lineage has a cycle"));
        }
    }
    Ok(View { segs })
}

pub(crate) fn decode_value(bytes: Option<Vec<u8>>) -> Result<Option<Value>> {
    match bytes {
        None => Ok(None),
        Some(b) => Value::from_msgpack(&b)
            .map(Some)
            .map_err(|e| Error::Decode(e.to_string())),
    }
}

/// The newest row of a key in a view: `(version, value)`, with `None` for a delete.
pub(crate) fn get_row(
    conn: &Connection,
    view: &View,
    kind: Kind,
    space: &str,
    key: &str,
) -> Result<Option<(u64, Option<Value>)>> {
    let mut st = conn.prepare_cached(
        "SELECT version, value FROM entries WHERE branch=?1 AND kind=?2 AND space=?3 AND key=?4 \
         AND version>?5 AND version<=?6 ORDER BY version DESC LIMIT 1",
    )?;
    for s in &view.segs {
        let row: Option<(i64, Option<Vec<u8>>)> = st
            .query_row(
                params![s.branch, kind.code(), space, key, s.lo as i64, s.hi as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((v, val)) = row {
            return Ok(Some((v as u64, decode_value(val)?)));
        }
    }
    Ok(None)
}

/// The live value of a key in a view.
pub(crate) fn get_value(
    conn: &Connection,
    view: &View,
    kind: Kind,
    space: &str,
    key: &str,
) -> Result<Option<Value>> {
    Ok(get_row(conn, view, kind, space, key)?.and_then(|(_, v)| v))
}

/// Every row of a key in a view, newest first: `(version, value, segment branch)`.
pub(crate) fn key_rows(
    conn: &Connection,
    view: &View,
    kind: Kind,
    space: &str,
    key: &str,
) -> Result<Vec<(u64, Option<Value>, i64)>> {
    let mut st = conn.prepare_cached(
        "SELECT version, value FROM entries WHERE branch=?1 AND kind=?2 AND space=?3 AND key=?4 \
         AND version>?5 AND version<=?6 ORDER BY version DESC",
    )?;
    let mut out = Vec::new();
    for s in &view.segs {
        let rows = st
            .query_map(
                params![s.branch, kind.code(), space, key, s.lo as i64, s.hi as i64],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<Vec<u8>>>(1)?)),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (v, val) in rows {
            out.push((v as u64, decode_value(val)?, s.branch));
        }
    }
    Ok(out)
}

/// What a scan covers.
#[derive(Clone, Debug)]
pub(crate) enum ScanRange {
    /// Keys of one space and primitive starting with a prefix.
    Prefix {
        kind: Kind,
        space: String,
        prefix: String,
    },
    /// Every entry of the view, in (kind, space, key) order.
    All,
}

/// A scanned row: key, version and value (`None` = deleted).
pub(crate) type ScanRow = (EntryKey, u64, Option<Value>);

/// A row as read, before its value is decoded.
type RawRow = (EntryKey, u64, Option<Vec<u8>>);

/// A paged, bounded-memory scan over a view, merging its segments in key order.
pub(crate) struct Scanner {
    view: View,
    range: ScanRange,
    after: Option<EntryKey>,
    page: usize,
    done: bool,
    /// Include deleted keys (value `None`) in the output.
    pub tombstones: bool,
}

impl Scanner {
    pub fn new(view: View, range: ScanRange, page: usize) -> Scanner {
        Scanner {
            view,
            range,
            after: None,
            page: page.max(1),
            done: false,
            tombstones: false,
        }
    }

    /// Starts after this key (exclusive).
    pub fn start_after(mut self, after: Option<EntryKey>) -> Scanner {
        self.after = after;
        self
    }

    fn fetch_segment(&self, conn: &Connection, s: &Segment) -> Result<Vec<RawRow>> {
        let lim = self.page as i64;
        match &self.range {
            ScanRange::Prefix {
                kind,
                space,
                prefix,
            } => {
                let after_key = match &self.after {
                    Some(a) => a.key.clone(),
                    None => String::new(),
                };
                let mut st = conn.prepare_cached(
                    "SELECT key, MAX(version), value FROM entries WHERE branch=?1 AND kind=?2 AND space=?3 \
                     AND key>=?4 AND key>?5 AND version>?6 AND version<=?7 GROUP BY key ORDER BY key LIMIT ?8",
                )?;
                let rows = st
                    .query_map(
                        params![
                            s.branch,
                            kind.code(),
                            space,
                            prefix,
                            after_key,
                            s.lo as i64,
                            s.hi as i64,
                            lim
                        ],
                        |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, i64>(1)?,
                                r.get::<_, Option<Vec<u8>>>(2)?,
                            ))
                        },
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows
                    .into_iter()
                    .map(|(k, v, val)| (EntryKey::new(space.clone(), *kind, k), v as u64, val))
                    .collect())
            }
            ScanRange::All => {
                let (ak, asp, akey) = match &self.after {
                    Some(a) => (a.kind.code() as i64, a.space.clone(), a.key.clone()),
                    None => (-1, String::new(), String::new()),
                };
                let mut st = conn.prepare_cached(
                    "SELECT kind, space, key, MAX(version), value FROM entries WHERE branch=?1 \
                     AND (kind, space, key) > (?2, ?3, ?4) AND version>?5 AND version<=?6 \
                     GROUP BY kind, space, key ORDER BY kind, space, key LIMIT ?7",
                )?;
                let rows = st
                    .query_map(
                        params![s.branch, ak, asp, akey, s.lo as i64, s.hi as i64, lim],
                        |r| {
                            Ok((
                                r.get::<_, u8>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, i64>(3)?,
                                r.get::<_, Option<Vec<u8>>>(4)?,
                            ))
                        },
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                rows.into_iter()
                    .map(|(k, sp, key, v, val)| {
                        Ok((EntryKey::new(sp, Kind::from_code(k)?, key), v as u64, val))
                    })
                    .collect()
            }
        }
    }

    /// The next page of rows in key order, or `None` at the end. A page may be empty of live rows only
    /// when every row in it was deleted; callers loop until `None`.
    pub fn next_page(&mut self, conn: &Connection) -> Result<Option<Vec<ScanRow>>> {
        if self.done {
            return Ok(None);
        }
        let mut pages = Vec::with_capacity(self.view.segs.len());
        let mut bound: Option<EntryKey> = None;
        for s in &self.view.segs {
            let rows = self.fetch_segment(conn, s)?;
            if rows.len() == self.page {
                let last = rows.last().map(|r| r.0.clone()).expect("page is full");
                if bound.as_ref().is_none_or(|b| &last < b) {
                    bound = Some(last);
                }
            }
            pages.push(rows);
        }
        // Merge: for each key the highest version wins (versions grow along the lineage).
        let mut merged: std::collections::BTreeMap<EntryKey, (u64, Option<Vec<u8>>)> =
            Default::default();
        for rows in pages {
            for (k, v, val) in rows {
                if let Some(b) = &bound {
                    if &k > b {
                        continue;
                    }
                }
                match merged.get(&k) {
                    Some((ov, _)) if *ov >= v => {}
                    _ => {
                        merged.insert(k, (v, val));
                    }
                }
            }
        }
        let prefix_done = match &self.range {
            ScanRange::Prefix { prefix, .. } => merged
                .keys()
                .next_back()
                .is_some_and(|k| !k.key.starts_with(prefix.as_str())),
            ScanRange::All => false,
        };
        match bound {
            Some(b) if !prefix_done => self.after = Some(b),
            _ => self.done = true,
        }
        let mut out = Vec::with_capacity(merged.len());
        for (k, (v, val)) in merged {
            if let ScanRange::Prefix { prefix, .. } = &self.range {
                if !k.key.starts_with(prefix.as_str()) {
                    self.done = true;
                    break;
                }
            }
            if val.is_none() && !self.tombstones {
                continue;
            }
            out.push((k, v, decode_value(val)?));
        }
        Ok(Some(out))
    }
}

/// Writes one entry row (a put, or a delete when `value` is `None`).
pub(crate) fn write_row(
    conn: &Connection,
    branch: i64,
    version: u64,
    key: &EntryKey,
    value: Option<&Value>,
) -> Result<()> {
    write_raw(conn, branch, version, key.kind, &key.space, &key.key, value)
}

thread_local! {
    /// A reused buffer for encoding values, so a put allocates nothing for its value bytes.
    static ENCODE_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes one entry row from borrowed parts (the hot path of every put).
pub(crate) fn write_raw(
    conn: &Connection,
    branch: i64,
    version: u64,
    kind: Kind,
    space: &str,
    key: &str,
    value: Option<&Value>,
) -> Result<()> {
    ENCODE_BUF.with(|buf| -> Result<()> {
        let mut buf = buf.borrow_mut();
        buf.clear();
        let bytes = match value {
            Some(v) => {
                rmp_serde::encode::write(&mut *buf, v).map_err(|e| Error::Decode(e.to_string()))?;
                Some(&buf[..])
            }
            None => None,
        };
        write_bytes(conn, branch, version, kind, space, key, bytes, value)
    })
}

/// Writes one entry row whose value is already MessagePack (`None` for a delete). `decoded` is the
/// value itself when the caller has it; events need it for their type tag and id, and it is decoded
/// here when absent.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_bytes(
    conn: &Connection,
    branch: i64,
    version: u64,
    kind: Kind,
    space: &str,
    key: &str,
    bytes: Option<&[u8]>,
    decoded: Option<&Value>,
) -> Result<()> {
    if kind == Kind::Event {
        let owned;
        let v = match (decoded, bytes) {
            (Some(v), _) => Some(v),
            (None, Some(b)) => {
                owned = crate::raw::decode_event_value(b)?;
                Some(&owned)
            }
            (None, None) => None,
        };
        let tag = v.and_then(|v| v.get("type")).and_then(|t| t.as_str());
        let eid = v.and_then(|v| v.get("id")).and_then(Value::as_i64);
        conn.prepare_cached(
            "INSERT OR REPLACE INTO entries(branch, kind, space, key, version, value, tag, eid) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            branch,
            kind.code(),
            space,
            key,
            version as i64,
            bytes,
            tag,
            eid
        ])?;
    } else {
        // Only events carry a type tag and an id; other puts bind six parameters, not eight.
        conn.prepare_cached(
            "INSERT OR REPLACE INTO entries(branch, kind, space, key, version, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![branch, kind.code(), space, key, version as i64, bytes])?;
    }
    Ok(())
}

/// The lowest position at which the view's event log of `space` holds the event with this id.
pub(crate) fn event_position(
    conn: &Connection,
    view: &View,
    space: &str,
    id: i64,
) -> Result<Option<u64>> {
    let mut st = conn.prepare_cached(
        "SELECT key FROM entries WHERE branch=?1 AND space=?2 AND eid=?3 AND version>?4 AND version<=?5",
    )?;
    let mut best: Option<u64> = None;
    for s in &view.segs {
        let keys = st
            .query_map(
                params![s.branch, space, id, s.lo as i64, s.hi as i64],
                |r| r.get::<_, String>(0),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for k in keys {
            // The row may have been overwritten since (events move when merges renumber them).
            let live = get_value(conn, view, Kind::Event, space, &k)?;
            if live
                .as_ref()
                .and_then(|v| v.get("id"))
                .and_then(Value::as_i64)
                == Some(id)
            {
                if let Ok(seq) = k.parse::<u64>() {
                    best = Some(best.map_or(seq, |b: u64| b.min(seq)));
                }
            }
        }
    }
    Ok(best)
}

/// Records a commit row and moves the branch head.
pub(crate) fn record_commit(
    conn: &Connection,
    branch: i64,
    version: u64,
    ts: u64,
    kind: &str,
    message: &str,
    first_row: i64,
) -> Result<u64> {
    // The commit's rows were inserted by one writer inside one transaction: their rowids are the
    // contiguous range after `first_row - 1` (a replaced row leaves a hole, never a foreign row).
    let last_row = max_rowid(conn)?.max(first_row - 1);
    let entries: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM entries WHERE rowid BETWEEN ?1 AND ?2")?
        .query_row(params![first_row, last_row], |r| r.get(0))?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO commits(branch, version, ts, kind, message, entries, first_row, last_row) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![branch, version as i64, ts as i64, kind, message, entries, first_row, last_row])?;
    conn.prepare_cached("UPDATE branches SET head=?2 WHERE id=?1")?
        .execute(params![branch, version as i64])?;
    Ok(entries as u64)
}

/// The highest rowid in `entries` (0 when empty). Rows written next get higher ones.
pub(crate) fn max_rowid(conn: &Connection) -> Result<i64> {
    // The bare `MAX(rowid)` form is what SQLite answers from the end of the b-tree in O(log n);
    // wrapping it (COALESCE, arithmetic) turns it into a full scan.
    let max: Option<i64> = conn
        .prepare_cached("SELECT MAX(rowid) FROM entries")?
        .query_row([], |r| r.get(0))?;
    Ok(max.unwrap_or(0))
}

/// The commits of `branch` with versions in `(lo, hi]`, in version order, starting after version
/// `after`: `(version, ts, first_row, last_row, entries)`.
pub(crate) fn commits_in(
    conn: &Connection,
    branch: i64,
    lo: u64,
    hi: u64,
    limit: usize,
) -> Result<Vec<CommitRange>> {
    let mut st = conn.prepare_cached(
        "SELECT version, ts, first_row, last_row, entries FROM commits \
         WHERE branch=?1 AND version>?2 AND version<=?3 ORDER BY version LIMIT ?4",
    )?;
    let rows = st
        .query_map(params![branch, lo as i64, hi as i64, limit as i64], |r| {
            Ok(CommitRange {
                version: r.get::<_, i64>(0)? as u64,
                ts: r.get::<_, i64>(1)? as u64,
                first_row: r.get(2)?,
                last_row: r.get(3)?,
                entries: r.get::<_, i64>(4)? as u64,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Where one commit's rows are.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CommitRange {
    pub version: u64,
    pub ts: u64,
    pub first_row: i64,
    pub last_row: i64,
    pub entries: u64,
}

/// A row with its rowid, before its value is decoded.
pub(crate) type RowidRow = (i64, EntryKey, Option<Vec<u8>>);

/// A page of one commit's rows after rowid `after`: `(rowid, key, value bytes)`.
pub(crate) fn commit_rows(
    conn: &Connection,
    branch: i64,
    c: &CommitRange,
    after: i64,
    limit: usize,
) -> Result<Vec<RowidRow>> {
    // The unary `+` keeps SQLite from planning this through the (branch, …) index, which would scan
    // the whole branch: the rowid range alone must drive it.
    let mut st = conn.prepare_cached(
        "SELECT rowid, kind, space, key, value FROM entries \
         WHERE rowid BETWEEN ?1 AND ?2 AND rowid > ?3 AND +branch=?4 AND +version=?5 ORDER BY rowid LIMIT ?6",
    )?;
    let rows = st
        .query_map(
            params![
                c.first_row,
                c.last_row,
                after,
                branch,
                c.version as i64,
                limit as i64
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, u8>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<Vec<u8>>>(4)?,
                ))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(id, k, sp, key, v)| Ok((id, EntryKey::new(sp, Kind::from_code(k)?, key), v)))
        .collect()
}
