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
pub(crate) const SCHEMA_VERSION: i64 = 2;

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
    /// Bytes of decoded values [`crate::ReadSnapshot::get`] keeps in memory for hot keys (0, the
    /// default: none). Committed versions never change, so the cache needs no invalidation; see
    /// [`crate::Strata::cache_stats`].
    pub read_cache_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(10),
            read_cache_bytes: 0,
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
    author    TEXT,
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

/// A connection's SQLite page cache (`PRAGMA cache_size`; negative is KiB): 16 MiB. A handle keeps
/// several connections, and a sync streams far more than any cache holds, so a bigger cache only
/// grows the process (the OS page cache still serves re-reads).
pub(crate) const CACHE_SIZE: i64 = -16384;

/// How many prepared statements a connection keeps cached.
pub(crate) const STATEMENT_CACHE: usize = 64;

/// How a connection keeps its prepared statements, so that a cached statement runs again without
/// being compiled again.
fn statement_settings(conn: &Connection) -> Result<()> {
    // The engine has more distinct cached statements than rusqlite's default 16; past the capacity, an
    // operation that cycles through more of them than fit would prepare them again on every use.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Query-planner stability: plans never depend on the values bound. Without it, SQLite marks a
    // parameter such as `kind=?2` as one whose value might change the plan, and since rusqlite
    // clears a statement's bindings when it returns it to the cache, every such statement was
    // compiled again on every use (a point read cost 20-40 µs instead of a few). Strata never
    // runs ANALYZE and binds no LIKE patterns, so no plan gets worse.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
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
        "PRAGMA synchronous={sync}; PRAGMA foreign_keys=OFF; PRAGMA cache_size={CACHE_SIZE}; PRAGMA temp_store=FILE;"
    ))?;
    statement_settings(&conn)?;
    // No checkpoint when the last connection closes: committed transactions are durable in the WAL
    // already (fsynced at commit), and a short-lived process (one CLI command, one sync) would
    // otherwise pay a checkpoint's fsyncs plus the WAL's re-creation on every run. SQLite still
    // checkpoints automatically once the WAL passes 1000 pages.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    Ok(conn)
}

/// Opens one read-only connection to an existing SQLite file. When the folder or the `-shm` file
/// cannot be written (a database on read-only media or owned by another user), the file is opened as
/// immutable: SQLite then reads it without locks, which holds as long as nobody writes it meanwhile.
pub(crate) fn connect_read_only(file: &Path, opts: &Options) -> Result<Connection> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let probe = |conn: Connection| -> Result<Connection> {
        conn.busy_timeout(opts.busy_timeout)?;
        conn.execute_batch(&format!("PRAGMA cache_size={CACHE_SIZE};"))?;
        statement_settings(&conn)?;
        if !schema_ready(&conn)? {
            return Err(Error::corrupt(
                "database",
                format!("{} holds no Strata schema", file.display()),
            ));
        }
        Ok(conn)
    };
    match Connection::open_with_flags(file, flags)
        .map_err(Error::from)
        .and_then(probe)
    {
        Ok(c) => Ok(c),
        Err(first) => {
            let abs = std::path::absolute(file)?;
            let uri = format!("file:{}?immutable=1", percent_path(&abs.to_string_lossy()));
            tracing::debug!(error = %first, "read-only open failed; opening immutable");
            Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
                .map_err(Error::from)
                .and_then(probe)
                .map_err(|_| first)
        }
    }
}

/// Escapes the characters a SQLite `file:` URI path may not hold as written.
fn percent_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        match b {
            b'%' | b'?' | b'#' | 0x80.. => out.push_str(&format!("%{b:02X}")),
            _ => out.push(b as char),
        }
    }
    out
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
                if v < 2 {
                    // Version 2 records each commit's author.
                    let has_author: bool = conn.query_row(
                        "SELECT EXISTS(SELECT 1 FROM pragma_table_info('commits') WHERE name='author')",
                        [],
                        |r| r.get(0),
                    )?;
                    if !has_author {
                        conn.execute_batch("ALTER TABLE commits ADD COLUMN author TEXT")?;
                    }
                }
                if v < SCHEMA_VERSION {
                    conn.execute(
                        "UPDATE meta SET value=?1 WHERE key='schema_version'",
                        [SCHEMA_VERSION.to_string()],
                    )?;
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    let mut hops = 0usize;
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
        hops += 1;
        if hops > 10_000 {
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

/// The newest row of a key in one segment of a view.
const GET_ROW_SQL: &str =
    "SELECT version, value FROM entries WHERE branch=?1 AND kind=?2 AND space=?3 AND key=?4 \
     AND version>?5 AND version<=?6 ORDER BY version DESC LIMIT 1";

/// The newest row of a key in a view: `(version, value)`, with `None` for a delete.
pub(crate) fn get_row(
    conn: &Connection,
    view: &View,
    kind: Kind,
    space: &str,
    key: &str,
) -> Result<Option<(u64, Option<Value>)>> {
    let mut st = conn.prepare_cached(GET_ROW_SQL)?;
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

/// The order scans return keys in: the `entries_key` index's `(kind, space, key)`. (`EntryKey`'s own
/// order is `(space, kind, key)`; the two agree only within one space.)
pub(crate) fn scan_order(a: &EntryKey, b: &EntryKey) -> std::cmp::Ordering {
    (a.kind, &a.space, &a.key).cmp(&(b.kind, &b.space, &b.key))
}

/// A row as read, before its value is decoded.
type RawRow = (EntryKey, u64, Option<Vec<u8>>);

/// The page queries of a prefix scan, by (lower bound exclusive, upper bound present). Each seeks the
/// `entries_key` index to its lower bound, the prefix or the last key already read, so a page costs
/// the rows it returns whatever the page's position: a full listing is linear. (With two lower bounds
/// on `key` SQLite seeks on one and filters on the other, and each page re-walked the prefix.)
pub(crate) const PREFIX_PAGE_SQL: [&str; 4] = [
    "SELECT key, MAX(version), length(value), value FROM entries WHERE branch=?1 AND kind=?2 AND space=?3 \
     AND key>=?4 AND version>?5 AND version<=?6 GROUP BY key ORDER BY key LIMIT ?7",
    "SELECT key, MAX(version), length(value), value FROM entries WHERE branch=?1 AND kind=?2 AND space=?3 \
     AND key>=?4 AND key<?8 AND version>?5 AND version<=?6 GROUP BY key ORDER BY key LIMIT ?7",
    "SELECT key, MAX(version), length(value), value FROM entries WHERE branch=?1 AND kind=?2 AND space=?3 \
     AND key>?4 AND version>?5 AND version<=?6 GROUP BY key ORDER BY key LIMIT ?7",
    "SELECT key, MAX(version), length(value), value FROM entries WHERE branch=?1 AND kind=?2 AND space=?3 \
     AND key>?4 AND key<?8 AND version>?5 AND version<=?6 GROUP BY key ORDER BY key LIMIT ?7",
];

/// The page query of a full scan: seeks past the last `(kind, space, key)` already read.
pub(crate) const ALL_PAGE_SQL: &str =
    "SELECT kind, space, key, MAX(version), length(value), value FROM entries WHERE branch=?1 \
     AND (kind, space, key) > (?2, ?3, ?4) AND version>?5 AND version<=?6 \
     GROUP BY kind, space, key ORDER BY kind, space, key LIMIT ?7";

/// The least string above every string that starts with `prefix`, if there is one. UTF-8 orders
/// like code points, so it is the prefix with its last character that has a successor incremented
/// (and what follows it dropped).
pub(crate) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let next = match c as u32 {
            0xD7FF => Some('\u{E000}'),
            n => char::from_u32(n + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Reads one segment in key order, a page at a time, each page seeking past the last key read.
#[derive(Debug)]
struct SegCursor {
    seg: Segment,
    /// The last key read from this segment; the next page starts after it.
    after: Option<EntryKey>,
    /// Rows read and not yet merged, in key order.
    buf: std::collections::VecDeque<RawRow>,
    /// Nothing is left after `after`.
    done: bool,
}

/// A paged, bounded-memory scan over a view: a k-way merge of its segments in key order. Each
/// segment is read by its own cursor with keyset pagination, so every row is read once and each
/// page costs an index seek plus the rows it returns. Memory holds at most a page per segment.
#[derive(Debug)]
pub(crate) struct Scanner {
    range: ScanRange,
    /// Prefix scans: the least key above the prefix's keys, when one exists.
    upper: Option<String>,
    cursors: Vec<SegCursor>,
    page: usize,
    page_bytes: usize,
    /// Include deleted keys (value `None`) in the output.
    pub tombstones: bool,
}

impl Scanner {
    /// A scan that returns pages of at most `page` keys.
    pub fn new(view: View, range: ScanRange, page: usize) -> Scanner {
        let upper = match &range {
            ScanRange::Prefix { prefix, .. } => prefix_upper_bound(prefix),
            ScanRange::All => None,
        };
        Scanner {
            range,
            upper,
            cursors: view
                .segs
                .into_iter()
                .map(|seg| SegCursor {
                    seg,
                    after: None,
                    buf: Default::default(),
                    done: false,
                })
                .collect(),
            page: page.max(1),
            page_bytes: usize::MAX,
            tombstones: false,
        }
    }

    /// Starts after this key (exclusive).
    pub fn start_after(mut self, after: Option<EntryKey>) -> Scanner {
        for c in &mut self.cursors {
            c.after = after.clone();
        }
        self
    }

    /// Also cuts pages (and each segment's reads) before their value bytes pass `bytes`; a page always
    /// holds at least one row, however large.
    pub fn max_bytes(mut self, bytes: usize) -> Scanner {
        self.page_bytes = bytes.max(1);
        self
    }

    /// Reads the next page of one segment into its buffer.
    fn fill(
        range: &ScanRange,
        upper: Option<&str>,
        page: usize,
        page_bytes: usize,
        conn: &Connection,
        c: &mut SegCursor,
    ) -> Result<()> {
        let s = c.seg;
        let lim = page as i64;
        let mut bytes = 0usize;
        let mut cut = false;
        // Takes a row's value only if it fits the byte budget (its length is known before its bytes are
        // read); `None` when the page is cut here.
        let mut take = |r: &rusqlite::Row<'_>, len_col: usize, n: usize| -> Result<Option<_>> {
            let len = r.get::<_, Option<i64>>(len_col)?.unwrap_or(0) as usize;
            if n > 0 && bytes.saturating_add(len) > page_bytes {
                cut = true;
                return Ok(None);
            }
            bytes += len;
            Ok(Some(r.get::<_, Option<Vec<u8>>>(len_col + 1)?))
        };
        let mut n = 0usize;
        match range {
            ScanRange::Prefix {
                kind,
                space,
                prefix,
            } => {
                let (lower, exclusive) = match &c.after {
                    Some(a) if a.key.as_str() >= prefix.as_str() => (a.key.as_str(), true),
                    _ => (prefix.as_str(), false),
                };
                let sql =
                    PREFIX_PAGE_SQL[usize::from(exclusive) * 2 + usize::from(upper.is_some())];
                let mut st = conn.prepare_cached(sql)?;
                let base = params![
                    s.branch,
                    kind.code(),
                    space,
                    lower,
                    s.lo as i64,
                    s.hi as i64,
                    lim
                ];
                let mut rows = match upper {
                    Some(u) => {
                        let mut all = base.to_vec();
                        all.push(&u);
                        st.query(all.as_slice())?
                    }
                    None => st.query(base)?,
                };
                while let Some(r) = rows.next()? {
                    let key: String = r.get(0)?;
                    if !key.starts_with(prefix.as_str()) {
                        // Past the prefix (only when it has no upper bound to stop the query).
                        break;
                    }
                    let version = r.get::<_, i64>(1)? as u64;
                    let Some(value) = take(r, 2, n)? else { break };
                    c.buf
                        .push_back((EntryKey::new(space.clone(), *kind, key), version, value));
                    n += 1;
                }
            }
            ScanRange::All => {
                let (ak, asp, akey) = match &c.after {
                    Some(a) => (a.kind.code() as i64, a.space.as_str(), a.key.as_str()),
                    None => (-1, "", ""),
                };
                let mut st = conn.prepare_cached(ALL_PAGE_SQL)?;
                let mut rows = st.query(params![
                    s.branch,
                    ak,
                    asp,
                    akey,
                    s.lo as i64,
                    s.hi as i64,
                    lim
                ])?;
                while let Some(r) = rows.next()? {
                    let kind = Kind::from_code(r.get::<_, u8>(0)?)?;
                    let key = EntryKey::new(r.get::<_, String>(1)?, kind, r.get::<_, String>(2)?);
                    let version = r.get::<_, i64>(3)? as u64;
                    let Some(value) = take(r, 4, n)? else { break };
                    c.buf.push_back((key, version, value));
                    n += 1;
                }
            }
        }
        // A short page ends the segment unless the byte budget cut it (or the prefix ended it).
        c.done = !cut && n < page;
        if let Some(last) = c.buf.back() {
            c.after = Some(last.0.clone());
        } else {
            c.done = true;
        }
        Ok(())
    }

    /// The next page of rows in key order, or `None` at the end. A page may be empty of live rows only
    /// when every row in it was deleted; callers loop until `None`.
    pub fn next_page(&mut self, conn: &Connection) -> Result<Option<Vec<ScanRow>>> {
        let mut out = Vec::new();
        let mut keys = 0usize;
        let mut bytes = 0usize;
        while keys < self.page {
            // Every segment with rows left must show its next key before the smallest can be taken.
            for c in &mut self.cursors {
                if c.buf.is_empty() && !c.done {
                    Scanner::fill(
                        &self.range,
                        self.upper.as_deref(),
                        self.page,
                        self.page_bytes,
                        conn,
                        c,
                    )?;
                }
            }
            let Some(min) = self
                .cursors
                .iter()
                .filter_map(|c| c.buf.front().map(|r| &r.0))
                .min_by(|a, b| scan_order(a, b))
                .cloned()
            else {
                break;
            };
            // Versions grow along the lineage: the highest version among the segments wins.
            let winner = self
                .cursors
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.buf.front().filter(|r| r.0 == min).map(|r| (r.1, i)))
                .max()
                .map(|(_, i)| i)
                .expect("some cursor holds the smallest key");
            let len = self.cursors[winner].buf[0].2.as_ref().map_or(0, Vec::len);
            let live = self.cursors[winner].buf[0].2.is_some();
            if (live || self.tombstones)
                && !out.is_empty()
                && bytes.saturating_add(len) > self.page_bytes
            {
                break;
            }
            let mut row = None;
            for (i, c) in self.cursors.iter_mut().enumerate() {
                if c.buf.front().is_some_and(|r| r.0 == min) {
                    let r = c.buf.pop_front().expect("front");
                    if i == winner {
                        row = Some(r);
                    }
                }
            }
            let (k, v, val) = row.expect("winner row");
            keys += 1;
            if val.is_none() && !self.tombstones {
                continue;
            }
            bytes += len;
            out.push((k, v, decode_value(val)?));
        }
        if keys == 0 {
            return Ok(None);
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

/// Inserts a non-event row: only events carry a type tag and an id, so other puts bind six parameters.
pub(crate) const PUT_SQL: &str =
    "INSERT OR REPLACE INTO entries(branch, kind, space, key, version, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
/// Inserts an event row with its type tag and id.
pub(crate) const PUT_EVENT_SQL: &str =
    "INSERT OR REPLACE INTO entries(branch, kind, space, key, version, value, tag, eid) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
/// [`PUT_SQL`] that fails on a row already present (see [`RowWriter::write_rows`]).
pub(crate) const PUT_NEW_SQL: &str =
    "INSERT OR FAIL INTO entries(branch, kind, space, key, version, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
/// [`PUT_EVENT_SQL`] that fails on a row already present.
const PUT_EVENT_NEW_SQL: &str =
    "INSERT OR FAIL INTO entries(branch, kind, space, key, version, value, tag, eid) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

/// Rows one statement of [`RowWriter::write_rows`] inserts.
const BATCH_ROWS: usize = 64;

/// `INSERT OR FAIL` of [`BATCH_ROWS`] non-event rows of one branch and version: `?1` is the
/// branch, `?2` the version, then kind, space, key and value of each row. SQLite inserts them in
/// order with its cursors open from one row to the next, so a row that sorts after the previous one
/// (a replay in key order) is placed without a descent from the root of the index.
///
/// `OR FAIL`, not `OR REPLACE`: a multi-row statement that may abort needs a statement journal (every
/// page it touches copied first), which would cost more than the batch saves. `OR FAIL` never rolls
/// a statement back: on a duplicate key it stops, keeping the rows before it, and
/// [`RowWriter::write_run`] writes the rest with `OR REPLACE`, row by row, so the result is exactly
/// that of one `OR REPLACE` per row.
pub(crate) static PUT_BATCH_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let rows: Vec<String> = (0..BATCH_ROWS)
        .map(|i| {
            let p = 3 + 4 * i;
            format!("(?1, ?{}, ?{}, ?{}, ?2, ?{})", p, p + 1, p + 2, p + 3)
        })
        .collect();
    format!(
        "INSERT OR FAIL INTO entries(branch, kind, space, key, version, value) VALUES {}",
        rows.join(", ")
    )
});

/// Writes entry rows through insert statements taken from the statement cache once and held, so a
/// loop writing many rows (a bulk replay) neither looks them up nor allocates per row.
pub(crate) struct RowWriter<'c> {
    conn: &'c Connection,
    /// `OR REPLACE` and `OR FAIL` (index 1) inserts of a non-event row, and of an event row.
    put: [Option<rusqlite::CachedStatement<'c>>; 2],
    put_event: [Option<rusqlite::CachedStatement<'c>>; 2],
    put_batch: Option<rusqlite::CachedStatement<'c>>,
    replaced: u64,
}

/// Whether `e` is a UNIQUE constraint failure: a row with the same key and version is there.
fn is_duplicate(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(e, _)
        if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

impl<'c> RowWriter<'c> {
    pub fn new(conn: &'c Connection) -> RowWriter<'c> {
        RowWriter {
            conn,
            put: [None, None],
            put_event: [None, None],
            put_batch: None,
            replaced: 0,
        }
    }

    /// How many rows [`RowWriter::write_rows`] found already present (with the same key and
    /// version) and replaced. While it stays the same, every row written is a new row.
    pub fn replaced(&self) -> u64 {
        self.replaced
    }

    /// Writes rows of one branch and version in order, with the same result as calling
    /// [`RowWriter::write`] on each: values are MessagePack (`None` for a delete). Runs of non-event
    /// rows go [`BATCH_ROWS`] to a statement, which costs about half as much per row as one
    /// statement each (one execution instead of many, and appends in key order skip the index
    /// descent). A row that replaces one already present is counted in [`RowWriter::replaced`].
    pub fn write_rows<'r>(
        &mut self,
        branch: i64,
        version: u64,
        rows: impl IntoIterator<Item = (&'r EntryKey, Option<&'r [u8]>)>,
    ) -> Result<()> {
        let mut run: Vec<(&'r EntryKey, Option<&'r [u8]>)> = Vec::with_capacity(BATCH_ROWS);
        for (k, v) in rows {
            if k.kind == Kind::Event {
                self.write_run(branch, version, &mut run)?;
                self.write_counted(branch, version, k, v)?;
            } else {
                run.push((k, v));
                if run.len() == BATCH_ROWS {
                    self.write_run(branch, version, &mut run)?;
                }
            }
        }
        self.write_run(branch, version, &mut run)
    }

    /// Writes and empties a run of non-event rows: one batch statement when it is full, else row by
    /// row (and from a duplicate key on, see [`PUT_BATCH_SQL`]).
    fn write_run(
        &mut self,
        branch: i64,
        version: u64,
        run: &mut Vec<(&EntryKey, Option<&[u8]>)>,
    ) -> Result<()> {
        let mut done = 0;
        if run.len() == BATCH_ROWS {
            let st = match &mut self.put_batch {
                Some(st) => st,
                slot => slot.insert(self.conn.prepare_cached(&PUT_BATCH_SQL)?),
            };
            st.raw_bind_parameter(1, branch)?;
            st.raw_bind_parameter(2, version as i64)?;
            for (i, (k, v)) in run.iter().enumerate() {
                let p = 3 + 4 * i;
                st.raw_bind_parameter(p, k.kind.code())?;
                st.raw_bind_parameter(p + 1, k.space.as_str())?;
                st.raw_bind_parameter(p + 2, k.key.as_str())?;
                st.raw_bind_parameter(p + 3, *v)?;
            }
            done = match st.raw_execute() {
                Ok(_) => run.len(),
                // Stopped at a key already present: the rows before it stay (OR FAIL), and
                // `changes()` counts them.
                Err(e) if is_duplicate(&e) => self.conn.changes() as usize,
                Err(e) => return Err(e.into()),
            };
        }
        for (k, v) in &run[done..] {
            self.write_counted(branch, version, k, *v)?;
        }
        run.clear();
        Ok(())
    }

    /// Writes one row as [`RowWriter::write`] does, counting it in `replaced` if it replaces one.
    fn write_counted(
        &mut self,
        branch: i64,
        version: u64,
        k: &EntryKey,
        v: Option<&[u8]>,
    ) -> Result<()> {
        if !self.insert(true, branch, version, k.kind, &k.space, &k.key, v, None)? {
            self.replaced += 1;
            self.write(branch, version, k.kind, &k.space, &k.key, v, None)?;
        }
        Ok(())
    }

    /// Writes one entry row whose value is already MessagePack (`None` for a delete), replacing a
    /// row with the same key and version. `decoded` is the value itself when the caller has it;
    /// events need it for their type tag and id, and it is decoded here when absent.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &mut self,
        branch: i64,
        version: u64,
        kind: Kind,
        space: &str,
        key: &str,
        bytes: Option<&[u8]>,
        decoded: Option<&Value>,
    ) -> Result<()> {
        self.insert(false, branch, version, kind, space, key, bytes, decoded)
            .map(drop)
    }

    /// Inserts one row; with `fail`, a row already present is left alone and the answer is `false`.
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        fail: bool,
        branch: i64,
        version: u64,
        kind: Kind,
        space: &str,
        key: &str,
        bytes: Option<&[u8]>,
        decoded: Option<&Value>,
    ) -> Result<bool> {
        let done = if kind == Kind::Event {
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
            let st = match &mut self.put_event[usize::from(fail)] {
                Some(st) => st,
                slot => slot.insert(self.conn.prepare_cached(if fail {
                    PUT_EVENT_NEW_SQL
                } else {
                    PUT_EVENT_SQL
                })?),
            };
            st.execute(params![
                branch,
                kind.code(),
                space,
                key,
                version as i64,
                bytes,
                tag,
                eid
            ])
        } else {
            let st = match &mut self.put[usize::from(fail)] {
                Some(st) => st,
                slot => slot.insert(self.conn.prepare_cached(if fail {
                    PUT_NEW_SQL
                } else {
                    PUT_SQL
                })?),
            };
            st.execute(params![
                branch,
                kind.code(),
                space,
                key,
                version as i64,
                bytes
            ])
        };
        match done {
            Ok(_) => Ok(true),
            Err(e) if fail && is_duplicate(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// Writes one entry row whose value is already MessagePack (see [`RowWriter::write`]).
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
    RowWriter::new(conn).write(branch, version, kind, space, key, bytes, decoded)
}

/// The lowest position at which the view's event log of `space` holds the event with this id.
pub(crate) fn event_position(
    conn: &Connection,
    view: &View,
    space: &str,
    id: i64,
) -> Result<Option<u64>> {
    Ok(event_positions(conn, view, space, id)?.first().copied())
}

/// Every position at which the view's event log of `space` holds the event with this id, in order
/// (usually one; found through the event-id index, so the cost does not grow with the log).
pub(crate) fn event_positions(
    conn: &Connection,
    view: &View,
    space: &str,
    id: i64,
) -> Result<Vec<u64>> {
    let mut st = conn.prepare_cached(
        "SELECT key FROM entries WHERE branch=?1 AND space=?2 AND eid=?3 AND version>?4 AND version<=?5",
    )?;
    let mut found = Vec::new();
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
                    found.push(seq);
                }
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

/// Records a commit row and moves the branch head.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_commit(
    conn: &Connection,
    branch: i64,
    version: u64,
    ts: u64,
    kind: &str,
    message: &str,
    author: Option<&str>,
    first_row: i64,
) -> Result<u64> {
    // The commit's rows were inserted by one writer inside one transaction: their rowids are the
    // contiguous range after `first_row - 1` (a replaced row leaves a hole, never a foreign row).
    let last_row = max_rowid(conn)?.max(first_row - 1);
    let entries = insert_commit(
        conn, branch, version, ts, kind, message, author, first_row, last_row, None,
    )?;
    set_head(conn, branch, version)?;
    Ok(entries)
}

/// Inserts the commit row of a version whose rows are the rowids `first_row..=last_row` (see
/// [`record_commit`]), and returns their number: `entries` when the writer knows it (no row of the
/// range replaced another), else counted here, which reads them all. The branch head is the
/// caller's to move ([`set_head`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn insert_commit(
    conn: &Connection,
    branch: i64,
    version: u64,
    ts: u64,
    kind: &str,
    message: &str,
    author: Option<&str>,
    first_row: i64,
    last_row: i64,
    entries: Option<u64>,
) -> Result<u64> {
    let entries: i64 = match entries {
        Some(n) => n as i64,
        None => conn
            .prepare_cached("SELECT COUNT(*) FROM entries WHERE rowid BETWEEN ?1 AND ?2")?
            .query_row(params![first_row, last_row], |r| r.get(0))?,
    };
    conn.prepare_cached(
        "INSERT OR REPLACE INTO commits(branch, version, ts, kind, message, author, entries, first_row, last_row) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![branch, version as i64, ts as i64, kind, message, author, entries, first_row, last_row])?;
    Ok(entries as u64)
}

/// Moves the head of `branch` to `version`.
pub(crate) fn set_head(conn: &Connection, branch: i64, version: u64) -> Result<()> {
    conn.prepare_cached("UPDATE branches SET head=?2 WHERE id=?1")?
        .execute(params![branch, version as i64])?;
    Ok(())
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
/// `after`: `(version, ts, first_row, last_row)`.
pub(crate) fn commits_in(
    conn: &Connection,
    branch: i64,
    lo: u64,
    hi: u64,
    limit: usize,
) -> Result<Vec<CommitRange>> {
    let mut st = conn.prepare_cached(
        "SELECT version, ts, first_row, last_row, kind, message, author FROM commits \
         WHERE branch=?1 AND version>?2 AND version<=?3 ORDER BY version LIMIT ?4",
    )?;
    let rows = st
        .query_map(params![branch, lo as i64, hi as i64, limit as i64], |r| {
            Ok(CommitRange {
                version: r.get::<_, i64>(0)? as u64,
                ts: r.get::<_, i64>(1)? as u64,
                first_row: r.get(2)?,
                last_row: r.get(3)?,
                meta: crate::types::CommitMeta {
                    kind: r.get(4)?,
                    message: r.get(5)?,
                    author: r.get(6)?,
                },
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Where one commit's rows are, and what it records besides them.
#[derive(Clone, Debug)]
pub(crate) struct CommitRange {
    pub version: u64,
    pub ts: u64,
    pub first_row: i64,
    pub last_row: i64,
    pub meta: crate::types::CommitMeta,
}

/// A row with its rowid, before its value is decoded.
pub(crate) type RowidRow = (i64, EntryKey, Option<Vec<u8>>);

/// A page of one commit's rows after rowid `after`: `(rowid, key, value bytes)`, at most `limit`
/// rows, cut before their value bytes pass `max_bytes` (the first row is always taken, however
/// large). The flag says whether the page reaches the commit's end.
pub(crate) fn commit_rows(
    conn: &Connection,
    branch: i64,
    c: &CommitRange,
    after: i64,
    limit: usize,
    max_bytes: usize,
) -> Result<(Vec<RowidRow>, bool)> {
    // The unary `+` keeps SQLite from planning this through the (branch, …) index, which would scan
    // the whole branch: the rowid range alone must drive it. A value's length is read before its
    // bytes, so a row that would pass the byte limit is not loaded.
    // One lower bound, computed here: with two (`BETWEEN first AND last AND rowid > after`) SQLite
    // seeks to only one of them and filters the other row by row, so each page of a large commit
    // rescanned it from its first row (a 1M-row commit read in quadratic time).
    let lo = c.first_row.max(after.saturating_add(1));
    let mut st = conn.prepare_cached(COMMIT_ROWS_SQL)?;
    let mut rows = st.query(params![
        lo,
        c.last_row,
        branch,
        c.version as i64,
        limit as i64
    ])?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(r) = rows.next()? {
        let len = r.get::<_, Option<i64>>(4)?.unwrap_or(0) as usize;
        if !out.is_empty() && bytes.saturating_add(len) > max_bytes {
            return Ok((out, false));
        }
        bytes += len;
        let key = EntryKey::new(
            r.get::<_, String>(2)?,
            Kind::from_code(r.get::<_, u8>(1)?)?,
            r.get::<_, String>(3)?,
        );
        out.push((r.get::<_, i64>(0)?, key, r.get::<_, Option<Vec<u8>>>(5)?));
    }
    let complete = out.len() < limit;
    Ok((out, complete))
}

/// The page query of [`commit_rows`].
pub(crate) const COMMIT_ROWS_SQL: &str =
    "SELECT rowid, kind, space, key, length(value), value FROM entries \
     WHERE rowid BETWEEN ?1 AND ?2 AND +branch=?3 AND +version=?4 ORDER BY rowid LIMIT ?5";

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use rusqlite::StatementStatus;

    use super::*;
    use crate::Strata;

    fn head_view(db: &Strata, branch: &str) -> View {
        let conn = db.conn().unwrap();
        let row = branch_by_name(&conn, branch).unwrap();
        view_at(&conn, row.id, row.head).unwrap()
    }

    /// SQLite's plan for `sql`, one detail line per step.
    fn plan(conn: &Connection, sql: &str) -> Vec<String> {
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        // Parameters stay unbound (NULL): the plan does not depend on their values.
        let mut rows = st.raw_query();
        let mut out = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            out.push(r.get::<_, String>(3).unwrap());
        }
        out
    }

    fn populated(n: usize) -> Strata {
        let db = Strata::open_temp().unwrap();
        let mut tx = db.begin("main").unwrap();
        for i in 0..n {
            tx.kv_put(&format!("k{i:08}"), i as i64).unwrap();
        }
        tx.commit().unwrap();
        db
    }

    #[test]
    fn cached_reads_are_not_compiled_again() {
        let db = populated(100);
        let scope = db.main();
        for i in 0..50 {
            assert_eq!(
                scope.kv_get(&format!("k{i:08}")).unwrap(),
                Some(Value::Int(i))
            );
        }
        let conn = db.conn().unwrap();
        let st = conn.prepare_cached(GET_ROW_SQL).unwrap();
        // Compiled once when first used; never again (it was 50 times before the QPSG setting).
        assert_eq!(st.get_status(StatementStatus::RePrepare), 0);
    }

    #[test]
    fn page_queries_seek_the_key_index() {
        let db = populated(2000);
        let conn = db.conn().unwrap();
        conn.execute_batch("ANALYZE").unwrap();
        for (i, sql) in PREFIX_PAGE_SQL.iter().enumerate() {
            let p = plan(&conn, sql);
            let want = if i % 2 == 1 {
                "SEARCH entries USING INDEX entries_key (branch=? AND kind=? AND space=? AND key>? AND key<?)"
            } else {
                "SEARCH entries USING INDEX entries_key (branch=? AND kind=? AND space=? AND key>?)"
            };
            assert_eq!(p, vec![want.to_string()], "{sql}");
        }
        assert_eq!(
            plan(&conn, ALL_PAGE_SQL),
            vec!["SEARCH entries USING INDEX entries_key (branch=? AND (kind,space,key)>(?,?,?))"]
        );
        assert_eq!(
            plan(&conn, COMMIT_ROWS_SQL),
            vec!["SEARCH entries USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"]
        );
        // Diff and merge candidates: each commit's rows by rowid range, then pages of the table by key.
        conn.execute_batch(crate::merge::CANDIDATES_TABLE_SQL)
            .unwrap();
        assert_eq!(
            plan(&conn, crate::merge::CANDIDATES_FILL_SQL),
            vec![
                "SEARCH c USING PRIMARY KEY (branch=? AND version>? AND version<?)",
                "SEARCH e USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"
            ]
        );
        assert_eq!(
            plan(&conn, crate::merge::CANDIDATES_PAGE_SQL),
            vec!["SEARCH temp.strata_candidates USING PRIMARY KEY ((space,kind,key)>(?,?,?))"]
        );
    }

    /// The VM steps the scan page queries took on `conn` since their counters were reset.
    fn page_steps(conn: &Connection, reset: bool) -> i64 {
        let mut total = 0;
        for sql in PREFIX_PAGE_SQL.iter().chain([&ALL_PAGE_SQL]) {
            let st = conn.prepare_cached(sql).unwrap();
            total += if reset {
                st.reset_status(StatementStatus::VmStep)
            } else {
                st.get_status(StatementStatus::VmStep)
            } as i64;
        }
        total
    }

    /// VM steps of a full listing, a prefix listing and a full scan of a branch of `n` keys forked
    /// from one of `n` keys (a quarter of them rewritten), so both lineage segments are paged.
    fn listing_steps(n: usize) -> [i64; 3] {
        let db = populated(n);
        db.fork_branch("main", "f").unwrap();
        let mut tx = db.begin("f").unwrap();
        for i in (0..n).step_by(4) {
            tx.kv_put(&format!("k{i:08}"), -1).unwrap();
        }
        tx.commit().unwrap();
        let view = head_view(&db, "f");
        let conn = db.conn().unwrap();
        let mut out = [0; 3];
        for (i, prefix) in ["", "k"].into_iter().enumerate() {
            page_steps(&conn, true);
            let got = crate::db::list_prefix(&conn, &view, Kind::Kv, "default", prefix, usize::MAX)
                .unwrap();
            assert_eq!(got.len(), n);
            out[i] = page_steps(&conn, false);
        }
        page_steps(&conn, true);
        let mut sc = Scanner::new(view, ScanRange::All, 512);
        let mut rows = 0;
        while let Some(p) = sc.next_page(&conn).unwrap() {
            rows += p.len();
        }
        assert_eq!(rows, n);
        out[2] = page_steps(&conn, false);
        out
    }

    #[test]
    fn listing_work_grows_linearly() {
        let small = listing_steps(10_000);
        let large = listing_steps(40_000);
        for (what, (s, l)) in ["kv_list(\"\")", "kv_list(\"k\")", "full scan"]
            .iter()
            .zip(small.into_iter().zip(large))
        {
            let ratio = l as f64 / s as f64;
            println!("{what}: {s} VM steps for 10k keys, {l} for 40k (ratio {ratio:.2})");
            // Linear work gives 4; re-walking the index from the prefix on every page gave ~16.
            assert!(
                (3.5..4.6).contains(&ratio),
                "{what}: {s} VM steps for 10k keys, {l} for 40k (ratio {ratio:.2})"
            );
        }
    }

    #[test]
    fn prefix_upper_bounds() {
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(
            prefix_upper_bound("x\u{D7FF}").as_deref(),
            Some("x\u{E000}")
        );
    }

    proptest! {
        /// A string starts with the prefix exactly when it lies in [prefix, upper bound).
        #[test]
        fn upper_bound_brackets_the_prefix(p in "[a\u{D7FF}\u{E000}\u{10FFFF}]{0,3}", s in "[a\u{D7FF}\u{E000}\u{10FFFF}b]{0,5}") {
            let u = prefix_upper_bound(&p);
            let inside = s.as_str() >= p.as_str() && u.as_deref().is_none_or(|u| s.as_str() < u);
            prop_assert_eq!(inside, s.starts_with(&p));
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Put (`Some(len)`, a string value of that length) or delete (`None`) on a branch.
        Write {
            branch: usize,
            space: bool,
            json: bool,
            key: usize,
            len: Option<usize>,
        },
        Fork {
            src: usize,
        },
    }

    const KEYS: [&str; 8] = [
        "a",
        "ab",
        "abc",
        "b",
        "ba",
        "\u{e9}",
        "\u{10FFFF}",
        "\u{10FFFF}a",
    ];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0..3usize, any::<bool>(), any::<bool>(), 0..KEYS.len(), proptest::option::weighted(0.8, 0..40usize))
                .prop_map(|(branch, space, json, key, len)| Op::Write { branch, space, json, key, len }),
            1 => (0..3usize).prop_map(|src| Op::Fork { src }),
        ]
    }

    type Model = BTreeMap<EntryKey, Option<Value>>;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Scans of branches with several lineage segments, any page size, byte limit and starting
        /// key, return exactly the model's keys in order, each page within its limits.
        #[test]
        fn scans_match_the_model(
            ops in proptest::collection::vec(op(), 1..40),
            page in 1..5usize,
            max_bytes in prop_oneof![Just(usize::MAX), 1..80usize],
            prefix in 0..KEYS.len() + 1,
            start in proptest::option::of(0..KEYS.len()),
            tombstones in any::<bool>(),
        ) {
            let db = Strata::open_temp().unwrap();
            let mut names = vec!["main".to_string()];
            let mut models: Vec<Model> = vec![Model::new()];
            for op in ops {
                match op {
                    Op::Write { branch, space, json, key, len } => {
                        let b = branch % names.len();
                        let k = EntryKey::new(
                            if space { "s2" } else { "default" },
                            if json { Kind::Json } else { Kind::Kv },
                            KEYS[key],
                        );
                        let v = len.map(|n| Value::from("x".repeat(n)));
                        let mut tx = db.begin(&names[b]).unwrap();
                        tx.write_entry(&k, v.as_ref()).unwrap();
                        tx.commit().unwrap();
                        models[b].insert(k, v);
                    }
                    Op::Fork { src } => {
                        let s = src % names.len();
                        let name = format!("b{}", names.len());
                        db.fork_branch(names[s].as_str(), &name).unwrap();
                        names.push(name);
                        models.push(models[s].clone());
                    }
                }
            }
            let prefix = KEYS.get(prefix).copied().unwrap_or("");
            for (name, model) in names.iter().zip(&models) {
                let conn = db.conn().unwrap();
                for all in [false, true] {
                    let range = if all {
                        ScanRange::All
                    } else {
                        ScanRange::Prefix { kind: Kind::Kv, space: "default".into(), prefix: prefix.into() }
                    };
                    let after = start.map(|i| EntryKey::new("default", Kind::Kv, KEYS[i]));
                    let mut sc = Scanner::new(head_view(&db, name), range, page)
                        .max_bytes(max_bytes)
                        .start_after(after.clone());
                    sc.tombstones = tombstones;
                    let mut got = Vec::new();
                    while let Some(p) = sc.next_page(&conn).unwrap() {
                        prop_assert!(p.len() <= page);
                        let bytes: usize = p.iter().map(|(_, _, v)| v.as_ref().map_or(0, |v| v.to_msgpack().len())).sum();
                        prop_assert!(p.len() <= 1 || bytes <= max_bytes, "{} rows of {} bytes", p.len(), bytes);
                        got.extend(p.into_iter().map(|(k, _, v)| (k, v)));
                    }
                    let mut want: Vec<(EntryKey, Option<Value>)> = model
                        .iter()
                        .filter(|(k, v)| {
                            (tombstones || v.is_some())
                                && after.as_ref().is_none_or(|a| scan_order(k, a).is_gt())
                                && (all || (k.kind == Kind::Kv && k.space == "default" && k.key.starts_with(prefix)))
                        })
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    want.sort_by(|a, b| scan_order(&a.0, &b.0));
                    prop_assert_eq!(got, want, "branch {} all {}", name, all);
                }
            }
        }
    }

    /// Every row of `entries`, by rowid.
    fn all_rows(conn: &Connection) -> Vec<Vec<rusqlite::types::Value>> {
        let mut st = conn
            .prepare("SELECT rowid, branch, kind, space, key, version, value, tag, eid FROM entries ORDER BY rowid")
            .unwrap();
        let rows = st
            .query_map([], |r| (0..9).map(|i| r.get(i)).collect())
            .unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    }

    proptest! {
        /// Batched writes leave exactly the rows (rowids included) that one `INSERT OR REPLACE` per
        /// row leaves: with keys repeated inside and across batches, deletes, events between
        /// non-event rows, and rows already present from an earlier write.
        #[test]
        fn batched_rows_match_row_by_row(
            rows in proptest::collection::vec((0..60u8, 0..150usize, proptest::option::of(0..3i64)), 0..400),
            before in proptest::collection::vec(0..150usize, 0..20),
        ) {
            // Events are rare, so that runs of non-event rows fill whole batches.
            let kind = |k: u8| if k == 0 { Kind::Event } else { [Kind::Kv, Kind::Json, Kind::State][k as usize % 3] };
            let keys: Vec<EntryKey> = rows
                .iter()
                .map(|&(k, i, _)| EntryKey::new("default", kind(k), format!("{i:020}")))
                .collect();
            let values: Vec<Option<Vec<u8>>> = rows
                .iter()
                .map(|&(_, i, v)| {
                    v.map(|v| Value::object([("type", Value::from("t")), ("id", Value::from(i as i64 + v))]).to_msgpack())
                })
                .collect();
            let mut results = Vec::new();
            for batched in [false, true] {
                let db = Strata::open_temp().unwrap();
                let conn = db.conn().unwrap();
                conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                let mut w = RowWriter::new(&conn);
                // Rows already there (as from an earlier commit at the same version).
                for &i in &before {
                    w.write(7, 3, Kind::Kv, "default", &format!("{i:020}"), Some(&[0xc0]), None).unwrap();
                }
                let it = keys.iter().zip(values.iter().map(|v| v.as_deref()));
                if batched {
                    w.write_rows(7, 3, it).unwrap();
                    // Counted: each row whose key was already there.
                    let mut present: std::collections::HashSet<(Kind, &str)> =
                        keys.iter().take(0).map(|k| (k.kind, k.key.as_str())).collect();
                    let before_keys: Vec<String> = before.iter().map(|i| format!("{i:020}")).collect();
                    present.extend(before_keys.iter().map(|k| (Kind::Kv, k.as_str())));
                    let replaced = keys.iter().filter(|k| !present.insert((k.kind, k.key.as_str()))).count();
                    prop_assert_eq!(w.replaced(), replaced as u64);
                } else {
                    for (k, v) in it {
                        w.write(7, 3, k.kind, &k.space, &k.key, v, None).unwrap();
                    }
                }
                drop(w);
                results.push(all_rows(&conn));
                conn.execute_batch("COMMIT").unwrap();
            }
            prop_assert_eq!(&results[0], &results[1]);
        }
    }
}
