//! The [`Strata`] handle, [`Transaction`]s and the four primitives.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{map_busy, Error, Result};
use crate::names::{validate_branch_name, validate_key, validate_space_name};
use crate::store::{self, BranchRow, Options, ScanRange, Scanner, View};
use crate::types::{BranchInfo, CommitInfo, EntryKey, HistoryEntry, Kind, Rev};
use crate::value::Value;

/// Whether folder `dir` holds a Strata database (its SQLite file).
pub fn is_database(dir: &Path) -> bool {
    dir.join(DB_FILE).is_file()
}

/// Finds the database a command run in `start` means, as git finds `.git`: in `start` and then each
/// parent folder, a `.strata` database inside it, or the folder itself when it is a database (a
/// folder made by `clone URL DIR`, or the inside of a `.strata`). `None` when no folder up to the
/// root holds one.
pub fn discover(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|d| {
        let inner = d.join(DEFAULT_DIR);
        if is_database(&inner) {
            Some(inner)
        } else if is_database(d) {
            Some(d.to_path_buf())
        } else {
            None
        }
    })
}

/// The folder name `strata init` creates and [`discover`] looks for.
pub const DEFAULT_DIR: &str = ".strata";

/// The name of the space used when none is given.
pub const DEFAULT_SPACE: &str = "default";
/// The file inside a database folder that holds the data.
pub const DB_FILE: &str = "strata.db";

pub(crate) struct Inner {
    pub dir: PathBuf,
    file: PathBuf,
    opts: Options,
    /// Idle connections. Each operation or transaction takes its own, so a transaction in progress
    /// never blocks reads on the same handle, and waiting writers are governed by SQLite's busy timeout.
    pool: Mutex<Vec<Connection>>,
    /// Opened with [`Strata::open_read_only`]: connections are read-only.
    read_only: bool,
    /// Values kept for [`ReadSnapshot::get`] (`Options::read_cache_bytes` > 0).
    cache: Option<crate::value_cache::ValueCache>,
    _temp: Option<tempfile::TempDir>,
}

/// Most idle connections a handle keeps.
const POOL_MAX_IDLE: usize = 8;

/// A connection borrowed from a handle's pool; returned on drop.
pub(crate) struct PooledConn<'a> {
    conn: Option<Connection>,
    inner: &'a Inner,
}

impl std::ops::Deref for PooledConn<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl std::ops::DerefMut for PooledConn<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("connection present until drop")
    }
}

impl Drop for PooledConn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            if !c.is_autocommit() {
                // A transaction was left open (e.g. a panic mid-write): never hand it out again.
                let _ = c.execute_batch("ROLLBACK");
            }
            let mut pool = self.inner.pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < POOL_MAX_IDLE && c.is_autocommit() {
                pool.push(c);
            }
        }
    }
}

/// An open database. Cheap to clone; clones share one connection. Open the same folder again (in this
/// process or another) for an independent writer: SQLite serialises writers across handles and processes.
#[derive(Clone)]
pub struct Strata {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Strata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Strata")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

/// One event of the event log.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// The event's sequence number in its space's log (1, 2, 3, …).
    pub seq: u64,
    /// The event type given at append.
    pub event_type: String,
    /// The payload.
    pub payload: Value,
    /// Append time, microseconds since the Unix epoch.
    pub timestamp_micros: u64,
    /// A random identifier, unique per appended event.
    pub id: u64,
}

/// A 63-bit identifier that tells apart events with equal type, payload and time (merges use it to
/// recognise an event that two logs hold at different positions).
fn unique_event_id() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    (h.finish() >> 1) as i64
}

pub(crate) fn event_key(seq: u64) -> String {
    format!("{seq:020}")
}

fn event_from_value(key: &str, v: &Value) -> Result<Event> {
    let seq = key
        .parse()
        .map_err(|_| Error::Decode(format!("event key {key:?} is not a sequence number")))?;
    Ok(Event {
        seq,
        event_type: v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        payload: v.get("payload").cloned().unwrap_or(Value::Null),
        timestamp_micros: v.get("ts").and_then(Value::as_i64).unwrap_or(0) as u64,
        id: v.get("id").and_then(Value::as_i64).unwrap_or(0) as u64,
    })
}

impl Strata {
    /// Opens the database in folder `path`, creating the folder and an empty `main` branch if needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Strata> {
        Strata::open_with(path, Options::default())
    }

    /// Opens with explicit options.
    pub fn open_with(path: impl AsRef<Path>, opts: Options) -> Result<Strata> {
        let dir = path.as_ref().to_path_buf();
        if dir.exists() && !dir.is_dir() {
            return Err(Error::InvalidOperation(format!(
                "{} is a file; a Strata database is a folder",
                dir.display()
            )));
        }
        std::fs::create_dir_all(&dir)?;
        Strata::from_dir(dir, opts, None)
    }

    /// Opens the database in folder `path` only if one is there: unlike [`Strata::open_with`] it never
    /// creates a folder or a database, and fails with [`Error::NotADatabase`] instead.
    pub fn open_existing(path: impl AsRef<Path>, opts: Options) -> Result<Strata> {
        let dir = path.as_ref().to_path_buf();
        if !is_database(&dir) {
            return Err(Error::NotADatabase(dir));
        }
        Strata::from_dir(dir, opts, None)
    }

    /// Opens an existing database for reading only: nothing is created, migrated or written, so a
    /// database in a folder (or files) this process may not write can still be read. Writes through
    /// the handle fail. Fails with [`Error::NotADatabase`] when the folder holds no database.
    pub fn open_read_only(path: impl AsRef<Path>, opts: Options) -> Result<Strata> {
        let dir = path.as_ref().to_path_buf();
        if !is_database(&dir) {
            return Err(Error::NotADatabase(dir));
        }
        let file = dir.join(DB_FILE);
        let conn = store::connect_read_only(&file, &opts)?;
        Ok(Strata {
            inner: Arc::new(Inner {
                dir,
                file,
                cache: value_cache(&opts),
                opts,
                pool: Mutex::new(vec![conn]),
                read_only: true,
                _temp: None,
            }),
        })
    }

    /// Opens a new database in a temporary folder that is removed when the last clone is dropped.
    pub fn open_temp() -> Result<Strata> {
        let tmp = tempfile::Builder::new().prefix("strata-").tempdir()?;
        Strata::from_dir(tmp.path().to_path_buf(), Options::default(), Some(tmp))
    }

    fn from_dir(dir: PathBuf, opts: Options, temp: Option<tempfile::TempDir>) -> Result<Strata> {
        let file = dir.join(DB_FILE);
        let conn = store::open_connection(&file, &opts)?;
        tracing::debug!(dir = %dir.display(), "opened database");
        let pool = Mutex::new(vec![conn]);
        Ok(Strata {
            inner: Arc::new(Inner {
                dir,
                file,
                cache: value_cache(&opts),
                opts,
                pool,
                read_only: false,
                _temp: temp,
            }),
        })
    }

    /// The database folder.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Copies the committed pages of the WAL into the database file and truncates the WAL
    /// (`PRAGMA wal_checkpoint(TRUNCATE)`). Returns `false` when a reader or writer on another
    /// connection kept it from completing (nothing is lost; run it again later). Handles never
    /// checkpoint on close; a long-running server calls this when it stops.
    pub fn checkpoint(&self) -> Result<bool> {
        let conn = self.conn()?;
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(busy == 0)
    }

    /// Borrows a connection from the pool, opening a new one when none is idle.
    pub(crate) fn conn(&self) -> Result<PooledConn<'_>> {
        let idle = self
            .inner
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let conn = match idle {
            Some(c) => c,
            None if self.inner.read_only => {
                store::connect_read_only(&self.inner.file, &self.inner.opts)?
            }
            None => store::connect(&self.inner.file, &self.inner.opts)?,
        };
        Ok(PooledConn {
            conn: Some(conn),
            inner: &self.inner,
        })
    }

    /// Runs `f` inside a SQLite write transaction (`BEGIN IMMEDIATE`), committing on success.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn()?;
        conn.execute_batch("BEGIN IMMEDIATE").map_err(map_busy)?;
        match f(&conn) {
            Ok(v) => {
                conn.execute_batch("COMMIT").map_err(map_busy)?;
                Ok(v)
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    // ----- branches -------------------------------------------------------------------------------

    /// Creates an empty branch.
    pub fn create_branch(&self, name: &str) -> Result<BranchInfo> {
        validate_branch_name(name, false)?;
        self.create_branch_inner(name, None)
    }

    /// Forks `name` from `source` (a branch, or `branch@version`). Copy-on-write: no entry is copied,
    /// so the cost does not depend on the size of the source.
    pub fn fork_branch(&self, source: impl Into<Rev>, name: &str) -> Result<BranchInfo> {
        validate_branch_name(name, false)?;
        self.create_branch_inner(name, Some(source.into()))
    }

    /// Creates or forks an internal branch (its name must start with `_`).
    #[allow(dead_code)]
    pub(crate) fn create_internal_branch(
        &self,
        name: &str,
        source: Option<Rev>,
    ) -> Result<BranchInfo> {
        validate_branch_name(name, true)?;
        if !name.starts_with('_') {
            return Err(Error::invalid(
                "branch name",
                name,
                "internal branch names start with '_'",
            ));
        }
        self.create_branch_inner(name, source)
    }

    fn create_branch_inner(&self, name: &str, source: Option<Rev>) -> Result<BranchInfo> {
        self.write(|conn| {
            if store::branch_by_name(conn, name).is_ok() {
                return Err(Error::BranchExists(name.to_string()));
            }
            let now = store::now_micros();
            match source {
                None => {
                    conn.execute(
                        "INSERT INTO branches(name, parent, fork_version, head, created) VALUES (?1, NULL, 0, 0, ?2)",
                        params![name, now as i64],
                    )?;
                }
                Some(rev) => {
                    let src = store::branch_by_name(conn, &rev.branch)?;
                    let v = check_version(&src, rev.version)?;
                    conn.execute(
                        "INSERT INTO branches(name, parent, fork_version, head, created) VALUES (?1, ?2, ?3, ?3, ?4)",
                        params![name, src.id, v as i64, now as i64],
                    )?;
                }
            }
            let row = store::branch_by_name(conn, name)?;
            branch_info(conn, &row)
        })
    }

    /// Deletes a branch. Its rows are kept while forks of it still read them, and purged after.
    pub fn delete_branch(&self, name: &str) -> Result<()> {
        self.write(|conn| {
            let row = store::branch_by_name(conn, name)?;
            conn.execute("UPDATE branches SET deleted=1 WHERE id=?1", [row.id])?;
            purge_unreferenced(conn, row.id)
        })
    }

    /// Lists branches by name; internal ones (`_…`) only when `include_internal` is set.
    pub fn list_branches(&self, include_internal: bool) -> Result<Vec<BranchInfo>> {
        let conn = self.conn()?;
        store::live_branches(&conn)?
            .iter()
            .filter(|b| include_internal || !b.name.starts_with('_'))
            .map(|b| branch_info(&conn, b))
            .collect()
    }

    /// One branch's metadata.
    pub fn branch_info(&self, name: &str) -> Result<BranchInfo> {
        let conn = self.conn()?;
        let row = store::branch_by_name(&conn, name)?;
        branch_info(&conn, &row)
    }

    /// Whether a live branch has this name.
    pub fn branch_exists(&self, name: &str) -> Result<bool> {
        match store::branch_by_name(&*self.conn()?, name) {
            Ok(_) => Ok(true),
            Err(Error::BranchNotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    // ----- transactions and scopes --------------------------------------------------------------

    /// Starts a write transaction on `branch`. It takes the database's write lock at once (waiting up to
    /// the busy timeout for other writers), so reads inside it are current and commits never lose an
    /// update. Dropping it without `commit` rolls back.
    pub fn begin(&self, branch: &str) -> Result<Transaction<'_>> {
        Transaction::begin(self, branch, false)
    }

    /// Like [`Strata::begin`], but may write internal branches and `_`-spaces.
    pub(crate) fn begin_internal(&self, branch: &str) -> Result<Transaction<'_>> {
        Transaction::begin(self, branch, true)
    }

    /// Runs `f` in a transaction on `branch` and commits it. Returns `f`'s result and the new version
    /// (`None` if `f` wrote nothing).
    pub fn transaction<T>(
        &self,
        branch: &str,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<(T, Option<u64>)> {
        let mut tx = self.begin(branch)?;
        let out = f(&mut tx)?;
        let v = tx.commit()?;
        Ok((out, v))
    }

    /// Operations on `branch` in the default space, each committed on its own.
    pub fn on(&self, branch: &str) -> Scope<'_> {
        Scope {
            db: self,
            branch: branch.to_string(),
            version: None,
            space: DEFAULT_SPACE.to_string(),
            internal: false,
        }
    }

    /// Reads of a revision (`branch` or `branch@version`) in the default space. Reads see the
    /// revision (a missing version fails with [`Error::VersionNotFound`]); a write through a scope
    /// at a past version fails with [`Error::PastVersion`].
    pub fn at(&self, rev: &Rev) -> Scope<'_> {
        Scope {
            version: rev.version,
            ..self.on(&rev.branch)
        }
    }

    // ----- settings -------------------------------------------------------------------------------

    /// A database setting, such as `user.name` (the author that commits record by default). Settings
    /// stay in this database: sync never carries them.
    pub fn config(&self, key: &str) -> Result<Option<String>> {
        validate_config_key(key)?;
        let conn = self.conn()?;
        config_get(&conn, key)
    }

    /// Sets a database setting, or removes it (`None`).
    pub fn set_config(&self, key: &str, value: Option<&str>) -> Result<()> {
        validate_config_key(key)?;
        self.write(|conn| {
            let k = format!("{CONFIG_PREFIX}{key}");
            match value {
                Some(v) => conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
                    params![k, v],
                )?,
                None => conn.execute("DELETE FROM meta WHERE key=?1", params![k])?,
            };
            Ok(())
        })
    }

    /// Every database setting, sorted by key.
    pub fn config_list(&self) -> Result<Vec<(String, String)>> {
        let conn = self.conn()?;
        let mut st = conn.prepare_cached(
            "SELECT substr(key, ?2), value FROM meta WHERE key > ?1 AND key < 'config/' ORDER BY key",
        )?;
        let rows = st
            .query_map(
                params![CONFIG_PREFIX, CONFIG_PREFIX.len() as i64 + 1],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// `on("main")`.
    pub fn main(&self) -> Scope<'_> {
        self.on("main")
    }

    // ----- versions -----------------------------------------------------------------------------

    /// The versions of a branch, newest first, including those inherited from the branch it was forked
    /// from. At most `limit` entries.
    pub fn log(&self, branch: &str, limit: usize) -> Result<Vec<CommitInfo>> {
        let conn = self.conn()?;
        let row = store::branch_by_name(&conn, branch)?;
        let view = store::view_at(&conn, row.id, row.head)?;
        let mut out = Vec::new();
        let mut st = conn.prepare_cached(
            "SELECT version, ts, kind, message, entries, author FROM commits WHERE branch=?1 AND version>?2 AND version<=?3 \
             ORDER BY version DESC LIMIT ?4",
        )?;
        for s in &view.segs {
            if out.len() >= limit {
                break;
            }
            let rows = st
                .query_map(
                    params![
                        s.branch,
                        s.lo as i64,
                        s.hi as i64,
                        (limit - out.len()) as i64
                    ],
                    |r| {
                        Ok(CommitInfo {
                            version: r.get::<_, i64>(0)? as u64,
                            timestamp_micros: r.get::<_, i64>(1)? as u64,
                            kind: r.get(2)?,
                            message: r.get(3)?,
                            entries: r.get::<_, i64>(4)? as u64,
                            author: r.get(5)?,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// Every value a key has had on a branch, newest first (deletes included as `None`).
    pub fn history(
        &self,
        branch: &str,
        space: &str,
        kind: Kind,
        key: &str,
    ) -> Result<Vec<HistoryEntry>> {
        let conn = self.conn()?;
        let row = store::branch_by_name(&conn, branch)?;
        let view = store::view_at(&conn, row.id, row.head)?;
        let rows = store::key_rows(&conn, &view, kind, space, key)?;
        let mut ts =
            conn.prepare_cached("SELECT ts FROM commits WHERE branch=?1 AND version=?2")?;
        rows.into_iter()
            .map(|(version, value, seg)| {
                let t: i64 = ts
                    .query_row(params![seg, version as i64], |r| r.get(0))
                    .unwrap_or(0);
                Ok(HistoryEntry {
                    version,
                    value,
                    timestamp_micros: t as u64,
                })
            })
            .collect()
    }

    /// The value of an entry at a revision (`branch` or `branch@version`).
    pub fn get_at(&self, rev: &Rev, space: &str, kind: Kind, key: &str) -> Result<Option<Value>> {
        let conn = self.conn()?;
        let view = rev_view(&conn, rev)?.2;
        let key = match kind {
            Kind::Event => event_key(
                key.parse()
                    .map_err(|_| Error::invalid("event sequence", key, "not a number"))?,
            ),
            _ => key.to_string(),
        };
        store::get_value(&conn, &view, kind, space, &key)
    }

    /// One page of a prefix listing, for callers that stream a long list: at most `limit` live
    /// entries of `kind` in `space` whose keys start with `prefix` and sort after `after`, in key
    /// order, read at `rev`. Returns the version read too: pass `Rev::at(branch, version)` for the
    /// following pages so that every page sees the same version.
    pub fn list_page(
        &self,
        rev: &Rev,
        space: &str,
        kind: Kind,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(u64, Vec<(String, Value)>)> {
        validate_space_name(space, true)?;
        let conn = self.conn()?;
        let (_, version, view) = rev_view(&conn, rev)?;
        let range = ScanRange::Prefix {
            kind,
            space: space.to_string(),
            prefix: prefix.to_string(),
        };
        let limit = limit.max(1);
        let mut sc = Scanner::new(view, range, limit.min(512))
            .start_after(after.map(|k| EntryKey::new(space, kind, k)));
        let mut out = Vec::new();
        while let Some(page) = sc.next_page(&conn)? {
            for (k, _, v) in page {
                if let Some(v) = v {
                    out.push((k.key, v));
                    if out.len() >= limit {
                        return Ok((version, out));
                    }
                }
            }
        }
        Ok((version, out))
    }

    /// The spaces that have ever held an entry on a branch.
    pub fn list_spaces(&self, branch: &str) -> Result<Vec<String>> {
        let conn = self.conn()?;
        let row = store::branch_by_name(&conn, branch)?;
        let view = store::view_at(&conn, row.id, row.head)?;
        let mut set = std::collections::BTreeSet::new();
        let mut st = conn.prepare_cached(
            "SELECT DISTINCT space FROM entries WHERE branch=?1 AND version>?2 AND version<=?3",
        )?;
        for s in &view.segs {
            for sp in st.query_map(params![s.branch, s.lo as i64, s.hi as i64], |r| {
                r.get::<_, String>(0)
            })? {
                set.insert(sp?);
            }
        }
        Ok(set.into_iter().collect())
    }
}

impl Strata {
    /// Hits, misses and size of the value cache of [`Strata::read_snapshot`] reads (`None` when
    /// [`Options::read_cache_bytes`] is 0).
    pub fn cache_stats(&self) -> Option<crate::value_cache::CacheStats> {
        self.inner.cache.as_ref().map(|c| c.stats())
    }

    /// A read-only snapshot: every read through it sees the same committed state, whatever
    /// commits meanwhile, and reads of the same revision resolve it once. For a caller answering
    /// many point reads at once (a server's batch of gets): one read transaction, one lookup of each
    /// branch, then one indexed probe per key. Hold it briefly: a snapshot keeps the WAL from being
    /// checkpointed past it.
    pub fn read_snapshot(&self) -> Result<ReadSnapshot<'_>> {
        let conn = self.conn()?;
        conn.prepare_cached("BEGIN")?.execute([])?;
        // A deferred transaction takes its snapshot at its first read: take it now.
        conn.prepare_cached("SELECT count(*) FROM meta WHERE key = ''")?
            .query_row([], |_| Ok(()))?;
        Ok(ReadSnapshot {
            conn,
            views: std::cell::RefCell::new(Vec::new()),
            cache: self.inner.cache.as_ref(),
        })
    }
}

/// A revision a snapshot resolved: branch and version asked, its view, and the view's number in
/// the value cache.
type Resolved = (String, Option<u64>, View, Option<u64>);

/// See [`Strata::read_snapshot`]. Ends its read transaction when dropped.
pub struct ReadSnapshot<'a> {
    conn: PooledConn<'a>,
    /// Revisions resolved so far (a batch reads a few branches: a list is quickest).
    views: std::cell::RefCell<Vec<Resolved>>,
    cache: Option<&'a crate::value_cache::ValueCache>,
}

impl std::fmt::Debug for ReadSnapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSnapshot")
            .field("revisions", &self.views.borrow().len())
            .finish()
    }
}

impl ReadSnapshot<'_> {
    /// The value of a key (`kind` other than events) in `space` at `rev`, as [`Scope`]'s gets
    /// answer it, errors included.
    pub fn get(&self, rev: &Rev, space: &str, kind: Kind, key: &str) -> Result<Option<Value>> {
        validate_space_name(space, false)?;
        validate_key(key)?;
        if kind == Kind::Event {
            return Err(Error::InvalidOperation(
                "events are read by sequence: use event_range".into(),
            ));
        }
        let found = |views: &[Resolved]| {
            views
                .iter()
                .position(|(b, v, ..)| *b == rev.branch && *v == rev.version)
        };
        // (Its own statement: the borrow ends before the insert below.)
        let known = found(&self.views.borrow());
        let at = match known {
            Some(i) => i,
            None => {
                let view = rev_view(&self.conn, rev)?.2;
                let id = self.cache.map(|c| c.view_id(&view.segs));
                let mut views = self.views.borrow_mut();
                views.push((rev.branch.clone(), rev.version, view, id));
                views.len() - 1
            }
        };
        let views = self.views.borrow();
        let (_, _, view, id) = &views[at];
        let (Some(cache), Some(id)) = (self.cache, *id) else {
            return store::get_value(&self.conn, view, kind, space, key);
        };
        if let Some(v) = cache.get(id, kind, space, key) {
            return Ok(v);
        }
        let value = store::get_value(&self.conn, view, kind, space, key)?;
        cache.put(id, kind, space, key, &value);
        Ok(value)
    }
}

fn value_cache(opts: &Options) -> Option<crate::value_cache::ValueCache> {
    (opts.read_cache_bytes > 0).then(|| crate::value_cache::ValueCache::new(opts.read_cache_bytes))
}

impl Drop for ReadSnapshot<'_> {
    fn drop(&mut self) {
        // Ends the read transaction; the pool rolls back whatever a failure left open.
        let _ = self.conn.execute_batch("COMMIT");
    }
}

/// Resolves a revision to its branch row, version and view.
pub(crate) fn rev_view(conn: &Connection, rev: &Rev) -> Result<(BranchRow, u64, View)> {
    let row = store::branch_by_name(conn, &rev.branch)?;
    let v = check_version(&row, rev.version)?;
    let view = store::view_at(conn, row.id, v)?;
    Ok((row, v, view))
}

pub(crate) fn check_version(row: &BranchRow, version: Option<u64>) -> Result<u64> {
    match version {
        None => Ok(row.head),
        Some(v) if v <= row.head => Ok(v),
        Some(v) => Err(Error::VersionNotFound {
            branch: row.name.clone(),
            version: v,
            head: row.head,
        }),
    }
}

pub(crate) fn branch_info(conn: &Connection, row: &BranchRow) -> Result<BranchInfo> {
    let parent = match row.parent {
        Some(p) => Some(store::branch_by_id(conn, p)?),
        None => None,
    };
    Ok(BranchInfo {
        name: row.name.clone(),
        head: row.head,
        parent_deleted: parent.as_ref().is_some_and(|p| p.deleted),
        parent: parent.map(|p| p.name),
        fork_version: row.parent.map(|_| row.fork_version),
        created_micros: row.created,
        internal: row.name.starts_with('_'),
    })
}

/// Purges the rows of deleted branches that no live branch reads any more, walking up the lineage.
pub(crate) fn purge_unreferenced(conn: &Connection, id: i64) -> Result<()> {
    let mut cur = Some(id);
    while let Some(b) = cur {
        let row = store::branch_by_id(conn, b)?;
        if !row.deleted || row.purged {
            return Ok(());
        }
        let children: i64 = conn.query_row(
            "SELECT COUNT(*) FROM branches WHERE parent=?1 AND purged=0",
            [b],
            |r| r.get(0),
        )?;
        if children > 0 {
            return Ok(());
        }
        conn.execute("DELETE FROM entries WHERE branch=?1", [b])?;
        conn.execute("DELETE FROM commits WHERE branch=?1", [b])?;
        conn.execute("UPDATE branches SET purged=1 WHERE id=?1", [b])?;
        tracing::debug!(branch = %row.name, "purged deleted branch");
        cur = row.parent;
    }
    Ok(())
}

/// The connection a transaction writes through: its own (a SQLite transaction of its own), or a
/// [`WriteGroup`]'s (a savepoint inside the group's transaction). The group's is borrowed mutably:
/// a `Connection` is `Send` but not `Sync`, and a transaction must stay `Send`.
enum TxConn<'a> {
    Own(PooledConn<'a>),
    Group(&'a mut Connection),
}

impl std::ops::Deref for TxConn<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            TxConn::Own(c) => c,
            TxConn::Group(c) => c,
        }
    }
}

impl TxConn<'_> {
    fn begin_sql(&self) -> &'static str {
        match self {
            TxConn::Own(_) => "BEGIN IMMEDIATE",
            TxConn::Group(_) => "SAVEPOINT strata_tx",
        }
    }
    fn commit_sql(&self) -> &'static str {
        match self {
            TxConn::Own(_) => "COMMIT",
            TxConn::Group(_) => "RELEASE strata_tx",
        }
    }
    fn rollback_sql(&self) -> &'static str {
        match self {
            TxConn::Own(_) => "ROLLBACK",
            TxConn::Group(_) => "ROLLBACK TO strata_tx; RELEASE strata_tx",
        }
    }
}

/// Refuses a write to an internal (`_`) branch unless the library itself writes it.
fn check_writable(branch: &str, internal: bool) -> Result<()> {
    if branch.starts_with('_') && !internal {
        return Err(Error::InvalidOperation(format!(
            "branch {branch:?} is internal; only the library writes it"
        )));
    }
    Ok(())
}

/// A write transaction on one branch. All its writes form one new version at `commit`.
pub struct Transaction<'a> {
    conn: TxConn<'a>,
    branch: BranchRow,
    version: u64,
    view: View,
    space: String,
    dirty: bool,
    finished: bool,
    internal: bool,
    label: (&'static str, String),
    author: Option<String>,
    next_seq: std::collections::HashMap<String, u64>,
    /// Rows this transaction writes get rowids from here on.
    first_row: i64,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("branch", &self.branch.name)
            .field("version", &self.version)
            .field("space", &self.space)
            .finish()
    }
}

impl<'a> Transaction<'a> {
    fn begin(db: &'a Strata, branch: &str, internal: bool) -> Result<Transaction<'a>> {
        Transaction::begin_on(TxConn::Own(db.conn()?), branch, internal)
    }

    fn begin_on(conn: TxConn<'a>, branch: &str, internal: bool) -> Result<Transaction<'a>> {
        check_writable(branch, internal)?;
        conn.execute_batch(conn.begin_sql()).map_err(map_busy)?;
        let row = match store::branch_by_name(&conn, branch) {
            Ok(r) => r,
            Err(e) => {
                let _ = conn.execute_batch(conn.rollback_sql());
                return Err(e);
            }
        };
        let version = row.head + 1;
        let (view, first_row) = match store::view_at(&conn, row.id, version)
            .and_then(|v| Ok((v, store::max_rowid(&conn)? + 1)))
        {
            Ok(v) => v,
            Err(e) => {
                let _ = conn.execute_batch(conn.rollback_sql());
                return Err(e);
            }
        };
        Ok(Transaction {
            conn,
            branch: row,
            version,
            view,
            space: DEFAULT_SPACE.to_string(),
            dirty: false,
            finished: false,
            internal,
            label: ("commit", String::new()),
            author: None,
            next_seq: Default::default(),
            first_row,
        })
    }

    /// The version this transaction will commit as.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The branch being written.
    pub fn branch(&self) -> &str {
        &self.branch.name
    }

    /// Switches the space that following operations use.
    pub fn set_space(&mut self, space: &str) -> Result<&mut Self> {
        validate_space_name(space, self.internal)?;
        self.space = space.to_string();
        Ok(self)
    }

    /// The current space.
    pub fn space(&self) -> &str {
        &self.space
    }

    /// Sets the message recorded with the commit.
    pub fn set_message(&mut self, message: impl Into<String>) {
        self.label.1 = message.into();
    }

    /// Sets who the commit is by. Without it, the commit records the database's `user.name`
    /// setting ([`Strata::set_config`]), if any.
    pub fn set_author(&mut self, author: impl Into<String>) {
        self.author = Some(author.into());
    }

    pub(crate) fn set_label(&mut self, kind: &'static str) {
        self.label.0 = kind;
    }

    fn ek(&self, kind: Kind, key: &str) -> Result<EntryKey> {
        validate_key(key)?;
        Ok(EntryKey::new(self.space.clone(), kind, key))
    }

    pub(crate) fn read(&self, key: &EntryKey) -> Result<Option<Value>> {
        store::get_value(&self.conn, &self.view, key.kind, &key.space, &key.key)
    }

    pub(crate) fn write_entry(&mut self, key: &EntryKey, value: Option<&Value>) -> Result<()> {
        store::write_row(&self.conn, self.branch.id, self.version, key, value)?;
        self.dirty = true;
        Ok(())
    }

    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Commits the SQLite transaction without creating a version (for metadata such as merge records).
    pub(crate) fn commit_metadata_only(mut self) -> Result<()> {
        self.finished = true;
        self.conn
            .execute_batch(self.conn.commit_sql())
            .map_err(map_busy)
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The first `entries` rowid this transaction writes (its rows are those at or above it).
    pub(crate) fn first_row(&self) -> i64 {
        self.first_row
    }

    pub(crate) fn branch_row(&self) -> &BranchRow {
        &self.branch
    }

    // ----- KV -----

    /// Puts a key.
    pub fn kv_put(&mut self, key: &str, value: impl Into<Value>) -> Result<()> {
        self.put_fast(Kind::Kv, key, &value.into())
    }

    /// Puts a key from a borrowed value: the same as `kv_put` without taking ownership, for loops that
    /// write one value many times.
    pub fn kv_put_ref(&mut self, key: &str, value: &Value) -> Result<()> {
        self.put_fast(Kind::Kv, key, value)
    }

    /// The put hot path: validates and writes from borrowed parts, with no key allocation.
    fn put_fast(&mut self, kind: Kind, key: &str, value: &Value) -> Result<()> {
        validate_key(key)?;
        store::write_raw(
            &self.conn,
            self.branch.id,
            self.version,
            kind,
            &self.space,
            key,
            Some(value),
        )?;
        self.dirty = true;
        Ok(())
    }

    /// Gets a key.
    pub fn kv_get(&self, key: &str) -> Result<Option<Value>> {
        self.read(&self.ek(Kind::Kv, key)?)
    }

    /// Deletes a key; returns whether it existed.
    pub fn kv_delete(&mut self, key: &str) -> Result<bool> {
        let k = self.ek(Kind::Kv, key)?;
        let existed = self.read(&k)?.is_some();
        if existed {
            self.write_entry(&k, None)?;
        }
        Ok(existed)
    }

    /// Lists keys starting with `prefix`, in key order.
    pub fn kv_list(&self, prefix: &str) -> Result<Vec<(String, Value)>> {
        list_prefix(
            &self.conn,
            &self.view,
            Kind::Kv,
            &self.space,
            prefix,
            usize::MAX,
        )
    }

    // ----- JSON -----

    /// Stores a whole document.
    pub fn json_put(&mut self, id: &str, doc: impl Into<Value>) -> Result<()> {
        self.put_fast(Kind::Json, id, &doc.into())
    }

    /// Reads a whole document.
    pub fn json_get(&self, id: &str) -> Result<Option<Value>> {
        self.read(&self.ek(Kind::Json, id)?)
    }

    /// Deletes a document; returns whether it existed.
    pub fn json_delete(&mut self, id: &str) -> Result<bool> {
        let k = self.ek(Kind::Json, id)?;
        let existed = self.read(&k)?.is_some();
        if existed {
            self.write_entry(&k, None)?;
        }
        Ok(existed)
    }

    /// Lists documents whose id starts with `prefix`.
    pub fn json_list(&self, prefix: &str) -> Result<Vec<(String, Value)>> {
        list_prefix(
            &self.conn,
            &self.view,
            Kind::Json,
            &self.space,
            prefix,
            usize::MAX,
        )
    }

    /// Reads the part of a document at a JSON Pointer path such as `/a/b/0` (`""` is the whole document).
    pub fn json_get_path(&self, id: &str, path: &str) -> Result<Option<Value>> {
        match self.json_get(id)? {
            None => Ok(None),
            Some(doc) => Ok(crate::jsonpath::get(&doc, path)?.cloned()),
        }
    }

    /// Sets the part of a document at a JSON Pointer path, creating missing objects on the way and the
    /// document itself if absent. An array index may be the array's length or `-` to append.
    pub fn json_set_path(&mut self, id: &str, path: &str, value: impl Into<Value>) -> Result<()> {
        let k = self.ek(Kind::Json, id)?;
        let mut doc = self
            .read(&k)?
            .unwrap_or_else(|| Value::Object(Default::default()));
        crate::jsonpath::set(&mut doc, path, value.into())?;
        self.write_entry(&k, Some(&doc))
    }

    // ----- events -----

    fn next_event_seq(&mut self) -> Result<u64> {
        if let Some(s) = self.next_seq.get(&self.space) {
            return Ok(*s);
        }
        let last = last_event_seq(&self.conn, &self.view, &self.space)?;
        self.next_seq.insert(self.space.clone(), last + 1);
        Ok(last + 1)
    }

    /// Appends an event to the current space's log; returns its sequence number.
    pub fn event_append(&mut self, event_type: &str, payload: impl Into<Value>) -> Result<u64> {
        if event_type.is_empty() {
            return Err(Error::invalid(
                "event type",
                event_type,
                "must not be empty",
            ));
        }
        let seq = self.next_event_seq()?;
        let v = Value::object([
            ("type", Value::from(event_type)),
            ("payload", payload.into()),
            ("ts", Value::Int(store::now_micros() as i64)),
            ("id", Value::Int(unique_event_id())),
        ]);
        let k = EntryKey::new(self.space.clone(), Kind::Event, event_key(seq));
        self.write_entry(&k, Some(&v))?;
        self.next_seq.insert(self.space.clone(), seq + 1);
        Ok(seq)
    }

    /// Reads up to `limit` events with sequence numbers from `from_seq` on.
    pub fn event_range(&self, from_seq: u64, limit: usize) -> Result<Vec<Event>> {
        event_range(&self.conn, &self.view, &self.space, from_seq, limit, None)
    }

    /// Reads up to `limit` events of one type, in sequence order.
    pub fn event_by_type(&self, event_type: &str, limit: usize) -> Result<Vec<Event>> {
        event_range(
            &self.conn,
            &self.view,
            &self.space,
            1,
            limit,
            Some(event_type),
        )
    }

    /// The number of events in the current space's log (its last sequence number).
    pub fn event_len(&self) -> Result<u64> {
        last_event_seq(&self.conn, &self.view, &self.space)
    }

    // ----- state cells -----

    /// Sets a cell.
    pub fn state_set(&mut self, cell: &str, value: impl Into<Value>) -> Result<()> {
        self.put_fast(Kind::State, cell, &value.into())
    }

    /// Reads a cell.
    pub fn state_get(&self, cell: &str) -> Result<Option<Value>> {
        self.read(&self.ek(Kind::State, cell)?)
    }

    /// Sets a cell only if it is absent; returns whether it was set.
    pub fn state_init(&mut self, cell: &str, value: impl Into<Value>) -> Result<bool> {
        let k = self.ek(Kind::State, cell)?;
        if self.read(&k)?.is_some() {
            return Ok(false);
        }
        self.write_entry(&k, Some(&value.into()))?;
        Ok(true)
    }

    /// Compare-and-swap: sets the cell to `new` only if its current value equals `expected` (`None`
    /// meaning absent). Returns whether it swapped. Deletes the cell when `new` is `None`.
    pub fn state_cas(
        &mut self,
        cell: &str,
        expected: Option<&Value>,
        new: Option<Value>,
    ) -> Result<bool> {
        let k = self.ek(Kind::State, cell)?;
        if self.read(&k)?.as_ref() != expected {
            return Ok(false);
        }
        self.write_entry(&k, new.as_ref())?;
        Ok(true)
    }

    /// Deletes a cell; returns whether it existed.
    pub fn state_delete(&mut self, cell: &str) -> Result<bool> {
        let k = self.ek(Kind::State, cell)?;
        let existed = self.read(&k)?.is_some();
        if existed {
            self.write_entry(&k, None)?;
        }
        Ok(existed)
    }

    // ----- end -----

    /// Commits. Returns the new version, or `None` if nothing was written (no version is used).
    pub fn commit(mut self) -> Result<Option<u64>> {
        self.finished = true;
        if !self.dirty {
            self.conn.execute_batch(self.conn.rollback_sql())?;
            return Ok(None);
        }
        let r = (|| {
            let author = match self.author.take() {
                Some(a) => Some(a),
                None => config_get(&self.conn, "user.name")?,
            };
            store::record_commit(
                &self.conn,
                self.branch.id,
                self.version,
                store::now_micros(),
                self.label.0,
                &self.label.1,
                author.as_deref(),
                self.first_row,
            )
        })()
        .and_then(|_| {
            self.conn
                .execute_batch(self.conn.commit_sql())
                .map_err(map_busy)
        });
        match r {
            Ok(()) => {
                tracing::trace!(branch = %self.branch.name, version = self.version, "committed");
                Ok(Some(self.version))
            }
            Err(e) => {
                let _ = self.conn.execute_batch(self.conn.rollback_sql());
                Err(e)
            }
        }
    }

    /// Discards every write.
    pub fn rollback(mut self) -> Result<()> {
        self.finished = true;
        self.conn.execute_batch(self.conn.rollback_sql())?;
        Ok(())
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.conn.execute_batch(self.conn.rollback_sql());
        }
    }
}

/// Many transactions, each committing its own version, made durable together by one SQLite commit
/// (group commit, as a database with a write-ahead log does for concurrent clients). Begin them one
/// after another with [`WriteGroup::begin`]; each commits or rolls back on its own (a failed one
/// leaves the others), and nothing is durable, or visible to other connections, until
/// [`WriteGroup::commit`]. Dropping the group without committing discards every version in it.
///
/// For a caller that answers many independent writers at once (a server): one fsync for the
/// group instead of one per version. Hold the group briefly: it holds the database's write lock.
pub struct WriteGroup<'a> {
    conn: PooledConn<'a>,
    finished: bool,
}

impl std::fmt::Debug for WriteGroup<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGroup").finish_non_exhaustive()
    }
}

impl Strata {
    /// Starts a [`WriteGroup`]: takes the write lock (waiting up to the busy timeout).
    pub fn write_group(&self) -> Result<WriteGroup<'_>> {
        let conn = self.conn()?;
        conn.execute_batch("BEGIN IMMEDIATE").map_err(map_busy)?;
        Ok(WriteGroup {
            conn,
            finished: false,
        })
    }
}

impl WriteGroup<'_> {
    /// A transaction on `branch` inside the group, seeing every version committed before it in the
    /// group. Its `commit` gives its version; the version is durable once the group commits.
    pub fn begin(&mut self, branch: &str) -> Result<Transaction<'_>> {
        Transaction::begin_on(TxConn::Group(&mut self.conn), branch, false)
    }

    /// Makes every version committed in the group durable at once.
    pub fn commit(mut self) -> Result<()> {
        self.finished = true;
        if let Err(e) = self.conn.execute_batch("COMMIT").map_err(map_busy) {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        Ok(())
    }
}

impl Drop for WriteGroup<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

pub(crate) fn list_prefix(
    conn: &Connection,
    view: &View,
    kind: Kind,
    space: &str,
    prefix: &str,
    limit: usize,
) -> Result<Vec<(String, Value)>> {
    let range = ScanRange::Prefix {
        kind,
        space: space.to_string(),
        prefix: prefix.to_string(),
    };
    let mut sc = Scanner::new(view.clone(), range, 512);
    let mut out = Vec::new();
    while let Some(page) = sc.next_page(conn)? {
        for (k, _, v) in page {
            if out.len() >= limit {
                return Ok(out);
            }
            if let Some(v) = v {
                out.push((k.key, v));
            }
        }
    }
    Ok(out)
}

pub(crate) fn last_event_seq(conn: &Connection, view: &View, space: &str) -> Result<u64> {
    let mut st = conn.prepare_cached(
        "SELECT key FROM entries WHERE branch=?1 AND kind=2 AND space=?2 AND version>?3 AND version<=?4 \
         ORDER BY key DESC LIMIT 1",
    )?;
    let mut max = 0u64;
    for s in &view.segs {
        let k: Option<String> = rusqlite::OptionalExtension::optional(
            st.query_row(params![s.branch, space, s.lo as i64, s.hi as i64], |r| {
                r.get(0)
            }),
        )?;
        if let Some(k) = k {
            max = max.max(k.parse().unwrap_or(0));
        }
    }
    Ok(max)
}

fn event_range(
    conn: &Connection,
    view: &View,
    space: &str,
    from_seq: u64,
    limit: usize,
    event_type: Option<&str>,
) -> Result<Vec<Event>> {
    let range = ScanRange::Prefix {
        kind: Kind::Event,
        space: space.to_string(),
        prefix: String::new(),
    };
    let after = from_seq
        .checked_sub(1)
        .filter(|s| *s > 0)
        .map(|s| EntryKey::new(space, Kind::Event, event_key(s)));
    let mut sc = Scanner::new(view.clone(), range, 512).start_after(after);
    let mut out = Vec::new();
    while let Some(page) = sc.next_page(conn)? {
        for (k, _, v) in page {
            let Some(v) = v else { continue };
            let ev = event_from_value(&k.key, &v)?;
            if event_type.is_none_or(|t| t == ev.event_type) {
                out.push(ev);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// Operations on one branch and space, each committed as its own version. Reads see the branch head.
#[derive(Clone, Debug)]
pub struct Scope<'a> {
    db: &'a Strata,
    branch: String,
    /// `Some` for a scope at a past version (read-only).
    version: Option<u64>,
    space: String,
    internal: bool,
}

impl<'a> Scope<'a> {
    /// The same branch in another space.
    pub fn space(&self, space: &str) -> Result<Scope<'a>> {
        validate_space_name(space, self.internal)?;
        Ok(Scope {
            space: space.to_string(),
            ..self.clone()
        })
    }

    /// Allows internal (`_`) branches and spaces.
    #[allow(dead_code)]
    pub(crate) fn internal(mut self) -> Scope<'a> {
        self.internal = true;
        self
    }

    fn tx<T>(&self, f: impl FnOnce(&mut Transaction<'_>) -> Result<T>) -> Result<T> {
        if let Some(v) = self.version {
            return Err(Error::PastVersion(format!("{}@{v}", self.branch)));
        }
        let mut tx = Transaction::begin(self.db, &self.branch, self.internal)?;
        tx.set_space(&self.space)?;
        let out = f(&mut tx)?;
        tx.commit()?;
        Ok(out)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection, &View) -> Result<T>) -> Result<T> {
        let conn = self.db.conn()?;
        // One read transaction: one snapshot and one shared-lock acquisition for all statements.
        conn.prepare_cached("BEGIN")?.execute([])?;
        let out = store::branch_by_name(&conn, &self.branch)
            .and_then(|row| {
                let v = check_version(&row, self.version)?;
                store::view_at(&conn, row.id, v)
            })
            .and_then(|view| f(&conn, &view));
        conn.prepare_cached("COMMIT")?.execute([])?;
        out
    }

    fn get(&self, kind: Kind, key: &str) -> Result<Option<Value>> {
        validate_key(key)?;
        self.read(|c, v| store::get_value(c, v, kind, &self.space, key))
    }

    /// See [`Transaction::kv_put`].
    pub fn kv_put(&self, key: &str, value: impl Into<Value>) -> Result<()> {
        self.tx(|t| t.kv_put(key, value))
    }
    /// See [`Transaction::kv_get`].
    pub fn kv_get(&self, key: &str) -> Result<Option<Value>> {
        self.get(Kind::Kv, key)
    }
    /// See [`Transaction::kv_delete`].
    pub fn kv_delete(&self, key: &str) -> Result<bool> {
        self.tx(|t| t.kv_delete(key))
    }
    /// See [`Transaction::kv_list`].
    pub fn kv_list(&self, prefix: &str) -> Result<Vec<(String, Value)>> {
        self.read(|c, v| list_prefix(c, v, Kind::Kv, &self.space, prefix, usize::MAX))
    }
    /// See [`Transaction::json_put`].
    pub fn json_put(&self, id: &str, doc: impl Into<Value>) -> Result<()> {
        self.tx(|t| t.json_put(id, doc))
    }
    /// See [`Transaction::json_get`].
    pub fn json_get(&self, id: &str) -> Result<Option<Value>> {
        self.get(Kind::Json, id)
    }
    /// See [`Transaction::json_delete`].
    pub fn json_delete(&self, id: &str) -> Result<bool> {
        self.tx(|t| t.json_delete(id))
    }
    /// See [`Transaction::json_list`].
    pub fn json_list(&self, prefix: &str) -> Result<Vec<(String, Value)>> {
        self.read(|c, v| list_prefix(c, v, Kind::Json, &self.space, prefix, usize::MAX))
    }
    /// See [`Transaction::json_get_path`].
    pub fn json_get_path(&self, id: &str, path: &str) -> Result<Option<Value>> {
        match self.json_get(id)? {
            None => Ok(None),
            Some(doc) => Ok(crate::jsonpath::get(&doc, path)?.cloned()),
        }
    }
    /// See [`Transaction::json_set_path`].
    pub fn json_set_path(&self, id: &str, path: &str, value: impl Into<Value>) -> Result<()> {
        self.tx(|t| t.json_set_path(id, path, value))
    }
    /// See [`Transaction::event_append`].
    pub fn event_append(&self, event_type: &str, payload: impl Into<Value>) -> Result<u64> {
        self.tx(|t| t.event_append(event_type, payload))
    }
    /// See [`Transaction::event_range`].
    pub fn event_range(&self, from_seq: u64, limit: usize) -> Result<Vec<Event>> {
        self.read(|c, v| event_range(c, v, &self.space, from_seq, limit, None))
    }
    /// See [`Transaction::event_by_type`].
    pub fn event_by_type(&self, event_type: &str, limit: usize) -> Result<Vec<Event>> {
        self.read(|c, v| event_range(c, v, &self.space, 1, limit, Some(event_type)))
    }
    /// See [`Transaction::event_len`].
    pub fn event_len(&self) -> Result<u64> {
        self.read(|c, v| last_event_seq(c, v, &self.space))
    }
    /// See [`Transaction::state_set`].
    pub fn state_set(&self, cell: &str, value: impl Into<Value>) -> Result<()> {
        self.tx(|t| t.state_set(cell, value))
    }
    /// See [`Transaction::state_get`].
    pub fn state_get(&self, cell: &str) -> Result<Option<Value>> {
        self.get(Kind::State, cell)
    }
    /// See [`Transaction::state_init`].
    pub fn state_init(&self, cell: &str, value: impl Into<Value>) -> Result<bool> {
        self.tx(|t| t.state_init(cell, value))
    }
    /// See [`Transaction::state_cas`].
    pub fn state_cas(
        &self,
        cell: &str,
        expected: Option<&Value>,
        new: Option<Value>,
    ) -> Result<bool> {
        self.tx(|t| t.state_cas(cell, expected, new))
    }
    /// See [`Transaction::state_delete`].
    pub fn state_delete(&self, cell: &str) -> Result<bool> {
        self.tx(|t| t.state_delete(cell))
    }
}

/// Where settings live in the `meta` table.
const CONFIG_PREFIX: &str = "config.";

/// A setting name: dotted words of `a-z 0-9 _ -` (like git's `user.name`), at most 128 bytes.
fn validate_config_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key.split('.').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "setting name",
            key,
            "must be dotted words of a-z, 0-9, _ and - (for example user.name)",
        ))
    }
}

pub(crate) fn config_get(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key=?1")?
        .query_row(params![format!("{CONFIG_PREFIX}{key}")], |r| r.get(0))
        .optional()?)
}
