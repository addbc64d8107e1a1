//! The `Strata` class: the data API, branches, history, bundles and sync, plus `clone()`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyType};
use strata_engine::{Durability, Event, Kind, MergeStrategy, Options, Rev, Strata, Value};
use strata_sync::{PullOptions, RemoteConfig, SyncError, SyncExt};

use crate::convert::{opt_to_py, report_to_py, to_py, to_value};
use crate::errors::{detached, invalid, Failure};
use crate::fork::Owned;
use crate::iter::{ChangeIter, Diff, DiffStream, ListIter, DEFAULT_PAGE};
use crate::runtime::block_on;
use crate::tx::{cas_args, PyTransaction};

/// The space used when none is given.
pub(crate) const DEFAULT_SPACE: &str = strata_engine::DEFAULT_SPACE;

/// An open Strata database (a folder). Thread-safe: share one handle between threads. After
/// `os.fork()`, open the database again in the child: a handle from the parent refuses to work there.
#[pyclass(module = "stratadb._stratadb", name = "Strata", frozen)]
#[derive(Debug)]
pub(crate) struct PyStrata {
    db: RwLock<Option<Owned<Strata>>>,
    pid: u32,
    path: String,
}

impl PyStrata {
    fn wrap(db: Strata) -> PyStrata {
        let path = db.path().to_string_lossy().into_owned();
        PyStrata {
            db: RwLock::new(Some(Owned::new(db))),
            pid: std::process::id(),
            path,
        }
    }

    /// The engine handle, or why it cannot be used.
    fn db(&self) -> Result<Strata, Failure> {
        if std::process::id() != self.pid {
            return Err(Failure::Other(format!(
                "this handle to {} was opened in the parent process before fork(); call \
                 Strata.open() again in the child",
                self.path
            )));
        }
        self.db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|d| Strata::clone(d))
            .ok_or_else(|| invalid(format!("the database {} is closed", self.path)))
    }

    fn handle(&self, py: Python<'_>) -> PyResult<Strata> {
        self.db().map_err(|e| e.into_pyerr(py))
    }

    /// Runs `f` in a one-write transaction on `branch`/`space` (GIL released); returns its result and
    /// the version made (`None` when nothing changed).
    fn write<T: Send>(
        &self,
        py: Python<'_>,
        branch: &str,
        space: &str,
        f: impl FnOnce(&mut strata_engine::Transaction<'_>) -> strata_engine::Result<T> + Send,
    ) -> PyResult<(T, Option<u64>)> {
        let db = self.handle(py)?;
        detached(py, move || {
            let mut tx = db.begin(branch)?;
            tx.set_space(space)?;
            let out = f(&mut tx)?;
            Ok((out, tx.commit()?))
        })
    }

    /// Reads one entry at `branch` (or `branch@version`).
    fn read(
        &self,
        py: Python<'_>,
        branch: &str,
        space: &str,
        kind: Kind,
        key: &str,
    ) -> PyResult<Option<Value>> {
        let db = self.handle(py)?;
        detached(py, move || {
            let rev = Rev::parse(branch)?;
            strata_engine::names::validate_space_name(space, false)?;
            Ok(db.get_at(&rev, space, kind, key)?)
        })
    }

    fn list(
        &self,
        py: Python<'_>,
        branch: &str,
        space: &str,
        kind: Kind,
        prefix: &str,
        page_size: usize,
    ) -> PyResult<ListIter> {
        let db = self.handle(py)?;
        let rev = Rev::parse(branch).map_err(|e| Failure::from(e).into_pyerr(py))?;
        strata_engine::names::validate_space_name(space, false)
            .map_err(|e| Failure::from(e).into_pyerr(py))?;
        Ok(ListIter::new(
            crate::iter::Source::Local(db),
            rev,
            space,
            kind,
            prefix,
            page_size,
        ))
    }
}

/// A `log()` entry as a dict.
pub(crate) fn commit_to_py(py: Python<'_>, c: &strata_engine::CommitInfo) -> PyResult<PyObject> {
    let d = PyDict::new(py);
    d.set_item("version", c.version)?;
    d.set_item("timestamp", seconds(c.timestamp_micros))?;
    d.set_item("kind", &c.kind)?;
    d.set_item("message", &c.message)?;
    d.set_item("author", &c.author)?;
    d.set_item("entries", c.entries)?;
    Ok(d.into_any().unbind())
}

/// A `history()` entry as a dict.
pub(crate) fn history_to_py(py: Python<'_>, h: &strata_engine::HistoryEntry) -> PyResult<PyObject> {
    let d = PyDict::new(py);
    d.set_item("version", h.version)?;
    d.set_item("value", opt_to_py(py, &h.value)?)?;
    d.set_item("timestamp", seconds(h.timestamp_micros))?;
    d.set_item("deleted", h.value.is_none())?;
    Ok(d.into_any().unbind())
}

/// `"theirs"` (the source wins, also `"lww"`), `"strict"` (fail on any conflict).
pub(crate) fn strategy(name: &str) -> Result<MergeStrategy, Failure> {
    match name {
        "theirs" | "lww" | "last-writer-wins" => Ok(MergeStrategy::LastWriterWins),
        "strict" => Ok(MergeStrategy::Strict),
        "ours" => Ok(MergeStrategy::Ours),
        other => Err(invalid(format!(
            "unknown merge strategy {other:?}: use \"theirs\", \"ours\" or \"strict\""
        ))),
    }
}

pub(crate) fn kind_of(name: &str) -> Result<Kind, Failure> {
    match name {
        "kv" => Ok(Kind::Kv),
        "doc" | "json" => Ok(Kind::Json),
        "event" => Ok(Kind::Event),
        "state" => Ok(Kind::State),
        other => Err(invalid(format!(
            "unknown kind {other:?}: use \"kv\", \"doc\", \"event\" or \"state\""
        ))),
    }
}

/// An event as a dict: `seq`, `type`, `payload`, `timestamp` (seconds since the epoch), `id`.
pub(crate) fn event_to_py(py: Python<'_>, e: &Event) -> PyResult<PyObject> {
    let d = PyDict::new(py);
    d.set_item("seq", e.seq)?;
    d.set_item("type", &e.event_type)?;
    d.set_item("payload", to_py(py, &e.payload)?)?;
    d.set_item("timestamp", e.timestamp_micros as f64 / 1e6)?;
    d.set_item("id", e.id)?;
    Ok(d.into_any().unbind())
}

/// Microseconds since the epoch as float seconds (what `time.time()` returns).
fn seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// A folder path becomes absolute (so the remote works from any working directory); URLs are checked.
pub(crate) fn normalize_url(url: &str) -> Result<String, Failure> {
    strata_sync::check_url(url)?;
    if url.contains("://") {
        Ok(url.to_string())
    } else {
        Ok(std::path::absolute(url)?.to_string_lossy().into_owned())
    }
}

/// Keyword options as strings (`True` → `"true"`, numbers as written).
pub(crate) fn options_of(
    token: Option<&str>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    if let Some(opts) = options {
        for (k, v) in opts.iter() {
            let k: String = k.extract()?;
            let v = if let Ok(b) = v.extract::<bool>() {
                b.to_string()
            } else {
                v.str()?.to_string()
            };
            out.insert(k, v);
        }
    }
    if let Some(t) = token {
        out.insert("token".to_string(), t.to_string());
    }
    Ok(out)
}

/// Whether an option's value must not be shown.
fn secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["token", "secret", "password", "key"]
        .iter()
        .any(|s| k.contains(s))
}

/// A pull's strategy, checked with its conflict branch (which only a strict pull takes).
pub(crate) fn pull_strategy(
    strategy: &str,
    conflict_branch: Option<&str>,
) -> Result<MergeStrategy, Failure> {
    let strategy = self::strategy(strategy)?;
    if conflict_branch.is_some() && strategy != MergeStrategy::Strict {
        return Err(invalid(
            "conflict_branch applies only to strategy=\"strict\"",
        ));
    }
    if let Some(n) = conflict_branch {
        strata_engine::names::validate_branch_name(n, false)?;
    }
    Ok(strategy)
}

/// The conflict branch of one branch's pull: `NAME`, or `NAME/BRANCH` with `all=True`.
pub(crate) fn conflict_branch_of(name: Option<&str>, all: bool, branch: &str) -> Option<String> {
    name.map(|n| {
        if all {
            format!("{n}/{branch}")
        } else {
            n.to_string()
        }
    })
}

/// A remote as a dict (`name`, `url`, `options` with secret values masked).
pub(crate) fn remote_to_py(py: Python<'_>, r: &RemoteConfig) -> PyResult<PyObject> {
    let d = PyDict::new(py);
    d.set_item("name", &r.name)?;
    d.set_item("url", &r.url)?;
    let o = PyDict::new(py);
    for (k, v) in &r.options {
        o.set_item(k, if secret(k) { "***" } else { v.as_str() })?;
    }
    d.set_item("options", o)?;
    Ok(d.into_any().unbind())
}

pub(crate) fn status_to_py(py: Python<'_>, s: &strata_sync::SyncStatus) -> PyResult<PyObject> {
    let d = PyDict::new(py);
    d.set_item("branch", &s.branch)?;
    d.set_item("ahead", s.ahead_entries)?;
    d.set_item("behind", s.behind_entries)?;
    d.set_item("ahead_versions", s.ahead_versions)?;
    d.set_item("behind_versions", s.behind_versions)?;
    d.set_item("remote_version", s.remote_version)?;
    d.set_item("mirror_version", s.mirror_version)?;
    d.set_item("last_synced", s.last_synced_micros.map(seconds))?;
    Ok(d.into_any().unbind())
}

/// A rejected push, with the remote's version read back (best effort) for `PushRejected.remote_version`.
async fn rejected(db: &Strata, remote: &str, branch: &str, e: SyncError) -> Failure {
    let v = db
        .sync_status(remote, branch)
        .await
        .ok()
        .and_then(|s| s.remote_version);
    Failure::Rejected(e, v)
}

/// Local, non-internal branch names (for `all=True` on push and status).
fn local_branches(db: &Strata) -> Result<Vec<String>, Failure> {
    Ok(db
        .list_branches(false)?
        .into_iter()
        .map(|b| b.name)
        .collect())
}

/// Every branch the remote holds (for `all=True` on pull and fetch).
async fn remote_branches(db: &Strata, remote: &str) -> Result<Vec<String>, Failure> {
    let cfg = strata_sync::config::get_remote(db, remote)?;
    let r = strata_sync::open_remote(&cfg)?;
    let mut names: Vec<String> = strata_sync::list_remote_branches(&*r)
        .await?
        .into_iter()
        .map(|b| b.name)
        .collect();
    names.sort();
    Ok(names)
}

/// One sync operation's outcome per branch.
pub(crate) type PerBranch<T> = Vec<(String, Result<T, Failure>)>;

/// With `all`, the per-branch results as a list, raising the first failure (after every branch was
/// tried) with the successful reports in its `results` attribute; else the single result.
pub(crate) fn per_branch<T>(
    py: Python<'_>,
    all: bool,
    results: PerBranch<T>,
    render: impl Fn(Python<'_>, &T) -> PyResult<PyObject>,
) -> PyResult<PyObject> {
    if !all {
        let (_, r) = results.into_iter().next().expect("one branch");
        return match r {
            Ok(v) => render(py, &v),
            Err(e) => Err(e.into_pyerr(py)),
        };
    }
    let ok = PyList::empty(py);
    let mut failed: Vec<(String, Failure)> = Vec::new();
    for (b, r) in results {
        match r {
            Ok(v) => ok.append(render(py, &v)?)?,
            Err(e) => failed.push((b, e)),
        }
    }
    if failed.is_empty() {
        return Ok(ok.into_any().unbind());
    }
    let names: Vec<String> = failed.iter().map(|(b, _)| b.clone()).collect();
    let (first_branch, first) = failed.into_iter().next().expect("a failure");
    let err = first.into_pyerr(py);
    let msg = format!(
        "{} branch(es) failed ({}); {first_branch}: {}",
        names.len(),
        names.join(", "),
        err.value(py)
    );
    let value = err.value(py);
    let _ = value.setattr("args", (msg,));
    let _ = value.setattr("results", ok);
    Err(err)
}

#[pymethods]
impl PyStrata {
    /// Opens (creating if needed) the database in folder `path`. `durability="normal"` trades the
    /// last commits on power loss for speed; `busy_timeout` is how long a writer waits for another.
    #[classmethod]
    #[pyo3(signature = (path, *, durability="full", busy_timeout=10.0))]
    fn open(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        path: PathBuf,
        durability: &str,
        busy_timeout: f64,
    ) -> PyResult<PyStrata> {
        let durability = match durability {
            "full" => Durability::Full,
            "normal" => Durability::Normal,
            other => {
                return Err(invalid(format!(
                    "unknown durability {other:?}: use \"full\" or \"normal\""
                ))
                .into_pyerr(py))
            }
        };
        if !(busy_timeout.is_finite() && busy_timeout >= 0.0) {
            return Err(
                invalid("busy_timeout must be a non-negative number of seconds").into_pyerr(py),
            );
        }
        let opts = Options {
            durability,
            busy_timeout: Duration::from_secs_f64(busy_timeout),
            ..Options::default()
        };
        let db = detached(py, move || Ok(Strata::open_with(&path, opts)?))?;
        Ok(PyStrata::wrap(db))
    }

    /// The database folder.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// Closes this handle (other handles and open iterators keep the database open until they go).
    fn close(&self) {
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        format!("<Strata {}>", self.path)
    }

    // ----- KV -----

    /// Puts a key; returns the new version.
    #[pyo3(signature = (key, value, *, branch="main", space=DEFAULT_SPACE))]
    fn kv_put(
        &self,
        py: Python<'_>,
        key: &str,
        value: &Bound<'_, PyAny>,
        branch: &str,
        space: &str,
    ) -> PyResult<Option<u64>> {
        let v = to_value(value).map_err(|e| e.into_pyerr(py))?;
        Ok(self.write(py, branch, space, |tx| tx.kv_put(key, v))?.1)
    }

    /// The value of a key at `branch` (or `"branch@version"`), or `None`.
    #[pyo3(signature = (key, *, branch="main", space=DEFAULT_SPACE))]
    fn kv_get(&self, py: Python<'_>, key: &str, branch: &str, space: &str) -> PyResult<PyObject> {
        let v = self.read(py, branch, space, Kind::Kv, key)?;
        opt_to_py(py, &v)
    }

    /// Deletes a key; returns whether it existed.
    #[pyo3(signature = (key, *, branch="main", space=DEFAULT_SPACE))]
    fn kv_delete(&self, py: Python<'_>, key: &str, branch: &str, space: &str) -> PyResult<bool> {
        Ok(self.write(py, branch, space, |tx| tx.kv_delete(key))?.0)
    }

    /// Streams the `(key, value)` pairs whose keys start with `prefix`, in key order, `page_size` at
    /// a time, all at the version the first page reads.
    #[pyo3(signature = (prefix="", *, branch="main", space=DEFAULT_SPACE, page_size=DEFAULT_PAGE))]
    fn kv_list(
        &self,
        py: Python<'_>,
        prefix: &str,
        branch: &str,
        space: &str,
        page_size: usize,
    ) -> PyResult<ListIter> {
        self.list(py, branch, space, Kind::Kv, prefix, page_size)
    }

    // ----- documents -----

    /// Puts a JSON document; returns the new version.
    #[pyo3(signature = (id, doc, *, branch="main", space=DEFAULT_SPACE))]
    fn doc_put(
        &self,
        py: Python<'_>,
        id: &str,
        doc: &Bound<'_, PyAny>,
        branch: &str,
        space: &str,
    ) -> PyResult<Option<u64>> {
        let v = to_value(doc).map_err(|e| e.into_pyerr(py))?;
        Ok(self.write(py, branch, space, |tx| tx.json_put(id, v))?.1)
    }

    /// A document, or the part at JSON Pointer `path` (e.g. `"/a/0"`), at `branch` or
    /// `"branch@version"`; `None` when absent.
    #[pyo3(signature = (id, path=None, *, branch="main", space=DEFAULT_SPACE))]
    fn doc_get(
        &self,
        py: Python<'_>,
        id: &str,
        path: Option<&str>,
        branch: &str,
        space: &str,
    ) -> PyResult<PyObject> {
        let doc = self.read(py, branch, space, Kind::Json, id)?;
        match (doc, path) {
            (Some(d), Some(p)) => {
                let part = d
                    .pointer(p)
                    .map_err(|e| Failure::from(e).into_pyerr(py))?
                    .cloned();
                opt_to_py(py, &part)
            }
            (d, _) => opt_to_py(py, &d),
        }
    }

    /// Sets the part of a document at JSON Pointer `path`, creating the document and missing objects
    /// on the way; returns the new version.
    #[pyo3(signature = (id, path, value, *, branch="main", space=DEFAULT_SPACE))]
    fn doc_set(
        &self,
        py: Python<'_>,
        id: &str,
        path: &str,
        value: &Bound<'_, PyAny>,
        branch: &str,
        space: &str,
    ) -> PyResult<Option<u64>> {
        let v = to_value(value).map_err(|e| e.into_pyerr(py))?;
        Ok(self
            .write(py, branch, space, |tx| tx.json_set_path(id, path, v))?
            .1)
    }

    /// Deletes a document; returns whether it existed.
    #[pyo3(signature = (id, *, branch="main", space=DEFAULT_SPACE))]
    fn doc_delete(&self, py: Python<'_>, id: &str, branch: &str, space: &str) -> PyResult<bool> {
        Ok(self.write(py, branch, space, |tx| tx.json_delete(id))?.0)
    }

    /// Streams the `(id, document)` pairs whose ids start with `prefix`, like `kv_list`.
    #[pyo3(signature = (prefix="", *, branch="main", space=DEFAULT_SPACE, page_size=DEFAULT_PAGE))]
    fn doc_list(
        &self,
        py: Python<'_>,
        prefix: &str,
        branch: &str,
        space: &str,
        page_size: usize,
    ) -> PyResult<ListIter> {
        self.list(py, branch, space, Kind::Json, prefix, page_size)
    }

    // ----- events -----

    /// Appends an event to the space's log; returns its sequence number (1, 2, 3, …).
    #[pyo3(signature = (event_type, payload=None, *, branch="main", space=DEFAULT_SPACE))]
    fn event_append(
        &self,
        py: Python<'_>,
        event_type: &str,
        payload: Option<&Bound<'_, PyAny>>,
        branch: &str,
        space: &str,
    ) -> PyResult<u64> {
        let v = match payload {
            Some(p) => to_value(p).map_err(|e| e.into_pyerr(py))?,
            None => Value::Null,
        };
        Ok(self
            .write(py, branch, space, |tx| tx.event_append(event_type, v))?
            .0)
    }

    /// Events from sequence `start` on (at most `limit`; only those of `event_type` if given), as
    /// dicts `{"seq", "type", "payload", "timestamp", "id"}`.
    #[pyo3(signature = (start=1, limit=None, *, event_type=None, branch="main", space=DEFAULT_SPACE))]
    fn event_read(
        &self,
        py: Python<'_>,
        start: u64,
        limit: Option<usize>,
        event_type: Option<&str>,
        branch: &str,
        space: &str,
    ) -> PyResult<Vec<PyObject>> {
        let db = self.handle(py)?;
        let evs = detached(py, move || {
            let scope = db.on(branch).space(space)?;
            let limit = limit.unwrap_or(usize::MAX);
            Ok(match event_type {
                None => scope.event_range(start, limit)?,
                Some(t) => scope
                    .event_by_type(t, usize::MAX)?
                    .into_iter()
                    .filter(|e| e.seq >= start)
                    .take(limit)
                    .collect(),
            })
        })?;
        evs.iter().map(|e| event_to_py(py, e)).collect()
    }

    /// The number of events in the space's log.
    #[pyo3(signature = (*, branch="main", space=DEFAULT_SPACE))]
    fn event_len(&self, py: Python<'_>, branch: &str, space: &str) -> PyResult<u64> {
        let db = self.handle(py)?;
        detached(py, move || Ok(db.on(branch).space(space)?.event_len()?))
    }

    // ----- state -----

    /// Sets a state cell; returns the new version.
    #[pyo3(signature = (cell, value, *, branch="main", space=DEFAULT_SPACE))]
    fn state_set(
        &self,
        py: Python<'_>,
        cell: &str,
        value: &Bound<'_, PyAny>,
        branch: &str,
        space: &str,
    ) -> PyResult<Option<u64>> {
        let v = to_value(value).map_err(|e| e.into_pyerr(py))?;
        Ok(self.write(py, branch, space, |tx| tx.state_set(cell, v))?.1)
    }

    /// A state cell's value at `branch` or `"branch@version"`, or `None`.
    #[pyo3(signature = (cell, *, branch="main", space=DEFAULT_SPACE))]
    fn state_get(
        &self,
        py: Python<'_>,
        cell: &str,
        branch: &str,
        space: &str,
    ) -> PyResult<PyObject> {
        let v = self.read(py, branch, space, Kind::State, cell)?;
        opt_to_py(py, &v)
    }

    /// Sets a cell only if it is absent; returns whether it did.
    #[pyo3(signature = (cell, value, *, branch="main", space=DEFAULT_SPACE))]
    fn state_init(
        &self,
        py: Python<'_>,
        cell: &str,
        value: &Bound<'_, PyAny>,
        branch: &str,
        space: &str,
    ) -> PyResult<bool> {
        let v = to_value(value).map_err(|e| e.into_pyerr(py))?;
        Ok(self
            .write(py, branch, space, |tx| tx.state_init(cell, v))?
            .0)
    }

    /// Compare-and-swap: sets the cell to `new` only if it holds `expected` (`None` means absent;
    /// `new=None` deletes). Returns whether it swapped.
    #[pyo3(signature = (cell, expected, new, *, branch="main", space=DEFAULT_SPACE))]
    fn state_cas(
        &self,
        py: Python<'_>,
        cell: &str,
        expected: &Bound<'_, PyAny>,
        new: &Bound<'_, PyAny>,
        branch: &str,
        space: &str,
    ) -> PyResult<bool> {
        let (e, n) = cas_args(py, expected, new)?;
        Ok(self
            .write(py, branch, space, |tx| tx.state_cas(cell, e.as_ref(), n))?
            .0)
    }

    /// Deletes a state cell; returns whether it existed.
    #[pyo3(signature = (cell, *, branch="main", space=DEFAULT_SPACE))]
    fn state_delete(
        &self,
        py: Python<'_>,
        cell: &str,
        branch: &str,
        space: &str,
    ) -> PyResult<bool> {
        Ok(self.write(py, branch, space, |tx| tx.state_delete(cell))?.0)
    }

    // ----- transactions -----

    /// Starts a write transaction on `branch` (taking the write lock now). Use it as a context
    /// manager: `with db.transaction("main", message="...") as tx: tx.kv_put(...)` commits at the end
    /// of the block, or rolls back if it raises. `message` and `author` are recorded with the
    /// version (shown by `log()`, carried by push and pull); `author` defaults to the `user.name`
    /// setting.
    #[pyo3(signature = (branch="main", *, message=None, author=None))]
    fn transaction(
        &self,
        py: Python<'_>,
        branch: &str,
        message: Option<&str>,
        author: Option<&str>,
    ) -> PyResult<PyTransaction> {
        let db = self.handle(py)?;
        detached(py, move || {
            PyTransaction::begin(&db, branch, message, author)
        })
    }

    // ----- settings -----

    /// A database setting (e.g. `"user.name"`, the default commit author), or `None`.
    fn config(&self, py: Python<'_>, key: &str) -> PyResult<Option<String>> {
        let db = self.handle(py)?;
        detached(py, move || Ok(db.config(key)?))
    }

    /// Sets a database setting; `None` removes it.
    #[pyo3(signature = (key, value))]
    fn set_config(&self, py: Python<'_>, key: &str, value: Option<&str>) -> PyResult<()> {
        let db = self.handle(py)?;
        detached(py, move || Ok(db.set_config(key, value)?))
    }

    /// Every database setting, as a dict.
    fn config_list(&self, py: Python<'_>) -> PyResult<BTreeMap<String, String>> {
        let db = self.handle(py)?;
        detached(py, move || Ok(db.config_list()?.into_iter().collect()))
    }

    // ----- branches and versions -----

    /// Branches as dicts (`name`, `head`, `parent`, `fork_version`, `created`, `internal`);
    /// `internal=True` includes the library's own (`_origin:…` mirrors).
    #[pyo3(signature = (*, internal=false))]
    fn branches(&self, py: Python<'_>, internal: bool) -> PyResult<Vec<PyObject>> {
        let db = self.handle(py)?;
        let list = detached(py, move || Ok(db.list_branches(internal)?))?;
        list.iter().map(|b| report_to_py(py, b)).collect()
    }

    /// One branch's details.
    fn branch_info(&self, py: Python<'_>, name: &str) -> PyResult<PyObject> {
        let db = self.handle(py)?;
        let b = detached(py, move || Ok(db.branch_info(name)?))?;
        report_to_py(py, &b)
    }

    /// Creates an empty branch.
    fn create_branch(&self, py: Python<'_>, name: &str) -> PyResult<PyObject> {
        let db = self.handle(py)?;
        let b = detached(py, move || Ok(db.create_branch(name)?))?;
        report_to_py(py, &b)
    }

    /// Forks `source` (`"branch"` or `"branch@version"`) as a new branch `name` (copy-on-write).
    fn fork_branch(&self, py: Python<'_>, source: &str, name: &str) -> PyResult<PyObject> {
        let db = self.handle(py)?;
        let b = detached(py, move || Ok(db.fork_branch(Rev::parse(source)?, name)?))?;
        report_to_py(py, &b)
    }

    /// Deletes a branch.
    fn delete_branch(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        let db = self.handle(py)?;
        detached(py, move || Ok(db.delete_branch(name)?))
    }

    /// The spaces that hold entries on a branch.
    #[pyo3(signature = (branch="main"))]
    fn spaces(&self, py: Python<'_>, branch: &str) -> PyResult<Vec<String>> {
        let db = self.handle(py)?;
        detached(py, move || Ok(db.list_spaces(branch)?))
    }

    /// The structured difference from `a` to `b` (each `"branch"` or `"branch@version"`).
    fn diff(&self, py: Python<'_>, a: &str, b: &str) -> PyResult<Diff> {
        let db = self.handle(py)?;
        let d = detached(py, move || Ok(db.diff(&Rev::parse(a)?, &Rev::parse(b)?)?))?;
        Ok(Diff::new(d, a.to_string(), b.to_string()))
    }

    /// Streams the difference from `a` to `b` entry by entry with bounded memory (the same dicts as
    /// iterating `diff()`, without counting or holding the whole diff first).
    fn diff_iter(&self, py: Python<'_>, a: &str, b: &str) -> PyResult<DiffStream> {
        let db = self.handle(py)?;
        detached(py, move || {
            let (a, b) = (Rev::parse(a)?, Rev::parse(b)?);
            // Resolve both now, so a bad name raises here rather than at the first next().
            db.contains(&a, &b)?;
            DiffStream::start(db, a, b)
        })
    }

    /// Three-way merges `source` (`"branch"` or `"branch@version"`) into `target` as one new version.
    /// `strategy`: `"theirs"` (the source wins on conflicting keys) or `"strict"` (raise
    /// `MergeConflict` listing them; nothing is written).
    #[pyo3(signature = (source, target="main", *, strategy="theirs"))]
    fn merge(
        &self,
        py: Python<'_>,
        source: &str,
        target: &str,
        strategy: &str,
    ) -> PyResult<PyObject> {
        let db = self.handle(py)?;
        let report = detached(py, move || {
            let s = self::strategy(strategy)?;
            Ok(db.merge(&Rev::parse(source)?, target, s)?)
        })?;
        report_to_py(py, &report)
    }

    /// The versions of a branch, newest first, as dicts (`version`, `timestamp`, `kind`, `message`,
    /// `author`, `entries`).
    #[pyo3(signature = (branch="main", *, limit=100))]
    fn log(&self, py: Python<'_>, branch: &str, limit: usize) -> PyResult<Vec<PyObject>> {
        let db = self.handle(py)?;
        let list = detached(py, move || Ok(db.log(branch, limit)?))?;
        list.iter().map(|c| commit_to_py(py, c)).collect()
    }

    /// Every value a key has had on a branch, newest first, as dicts (`version`, `value`,
    /// `timestamp`, `deleted`). `kind`: `"kv"`, `"doc"`, `"event"` or `"state"`.
    #[pyo3(signature = (key, *, kind="kv", branch="main", space=DEFAULT_SPACE))]
    fn history(
        &self,
        py: Python<'_>,
        key: &str,
        kind: &str,
        branch: &str,
        space: &str,
    ) -> PyResult<Vec<PyObject>> {
        let db = self.handle(py)?;
        let list = detached(py, move || {
            Ok(db.history(branch, space, kind_of(kind)?, key)?)
        })?;
        list.iter().map(|h| history_to_py(py, h)).collect()
    }

    /// Streams the change sets of `branch` after `version`, oldest first (see `ChangeIterator`).
    #[pyo3(signature = (branch="main", version=0))]
    fn changes_since(&self, py: Python<'_>, branch: &str, version: u64) -> PyResult<ChangeIter> {
        let db = self.handle(py)?;
        let it = detached(py, move || Ok(db.changes_since(branch, version)?))?;
        Ok(ChangeIter::new(it))
    }

    // ----- bundles -----

    /// Writes `branch`'s versions in `(from_version, to_version]` (default: all) to a
    /// `.branchbundle.tar.zst` file; returns its manifest.
    #[pyo3(signature = (branch, path, *, from_version=None, to_version=None))]
    fn export_bundle(
        &self,
        py: Python<'_>,
        branch: &str,
        path: PathBuf,
        from_version: Option<u64>,
        to_version: Option<u64>,
    ) -> PyResult<PyObject> {
        let db = self.handle(py)?;
        let m = detached(py, move || {
            let range = match (from_version, to_version) {
                (None, None) => None,
                (f, t) => {
                    let head = db.branch_info(branch)?.head;
                    Some((f.unwrap_or(0), t.unwrap_or(head)))
                }
            };
            Ok(db.export_bundle(branch, range, &path)?)
        })?;
        report_to_py(py, &m)
    }

    /// Imports a bundle file (into `target`, default the bundle's own branch name); returns what it
    /// did.
    #[pyo3(signature = (path, *, target=None))]
    fn import_bundle(
        &self,
        py: Python<'_>,
        path: PathBuf,
        target: Option<&str>,
    ) -> PyResult<PyObject> {
        let db = self.handle(py)?;
        let r = detached(py, move || Ok(db.import_bundle(&path, target)?))?;
        report_to_py(py, &r)
    }

    // ----- sync -----

    /// Adds a remote: a folder path, `file://`, `s3://bucket/prefix`, `gs://…`, `az://…`, or a
    /// StrataHub project `http(s)://host[:port]/owner/project`. Keyword `options` (e.g. `endpoint=`,
    /// `region=` for buckets; `timeout=`, `max_retries=` for a hub) are stored with it. `token` is a
    /// hub's API key, kept in this database only (never pushed; `remotes()` shows it as `***`);
    /// without it the STRATA_TOKEN environment variable is read at each use. A hub that refuses the
    /// key raises `Unauthorized` (or `PermissionDenied` for a key that may only read).
    #[pyo3(signature = (name, url, token=None, **options))]
    fn remote_add(
        &self,
        py: Python<'_>,
        name: &str,
        url: &str,
        token: Option<&str>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let db = self.handle(py)?;
        let options = options_of(token, options)?;
        detached(py, move || {
            let cfg = RemoteConfig {
                name: name.to_string(),
                url: normalize_url(url)?,
                options,
            };
            Ok(db.remote_add_with(cfg)?)
        })
    }

    /// The configured remotes as dicts (`name`, `url`, `options`; secret option values are masked).
    fn remotes(&self, py: Python<'_>) -> PyResult<Vec<PyObject>> {
        let db = self.handle(py)?;
        let list = detached(py, move || Ok(db.remote_list()?))?;
        list.iter().map(|r| remote_to_py(py, r)).collect()
    }

    /// Removes a remote, its sync state and its mirror branches.
    fn remote_remove(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        let db = self.handle(py)?;
        detached(py, move || {
            db.remote_remove(name)?;
            Ok(())
        })
    }

    /// Pushes `branch` to `remote`; returns a report dict (`remote_version`, `entries`, `bytes`,
    /// `up_to_date`, …). Raises `PushRejected` (with `remote_version`) when the remote has changes
    /// this database has not pulled. `all=True` pushes every local branch and returns a list.
    #[pyo3(signature = (remote="origin", branch="main", *, all=false))]
    fn push(&self, py: Python<'_>, remote: &str, branch: &str, all: bool) -> PyResult<PyObject> {
        let db = self.handle(py)?;
        let results = detached(py, move || {
            strata_sync::config::get_remote(&db, remote)?;
            let branches = if all {
                local_branches(&db)?
            } else {
                vec![branch.to_string()]
            };
            block_on(async {
                let mut out = Vec::new();
                for b in branches {
                    let r = match db.push(remote, &b).await {
                        Ok(r) => Ok(r),
                        Err(e @ SyncError::Rejected(_)) => Err(rejected(&db, remote, &b, e).await),
                        Err(e) => Err(e.into()),
                    };
                    out.push((b, r));
                }
                out
            })
        })?;
        per_branch(py, all, results, report_to_py)
    }

    /// Fetches `branch` from `remote` and merges it in (`strategy="theirs"`: the remote wins on
    /// conflicting keys; `"strict"`: raise `MergeConflict` and leave the branch unchanged, saving
    /// the remote's side as `conflict_branch` if given). `all=True` pulls every remote branch.
    #[pyo3(signature = (remote="origin", branch="main", *, strategy="theirs", conflict_branch=None, all=false))]
    fn pull(
        &self,
        py: Python<'_>,
        remote: &str,
        branch: &str,
        strategy: &str,
        conflict_branch: Option<&str>,
        all: bool,
    ) -> PyResult<PyObject> {
        let db = self.handle(py)?;
        let results = detached(py, move || {
            let strategy = pull_strategy(strategy, conflict_branch)?;
            strata_sync::config::get_remote(&db, remote)?;
            block_on(async {
                let branches = if all {
                    remote_branches(&db, remote).await?
                } else {
                    vec![branch.to_string()]
                };
                let mut out = Vec::new();
                for b in branches {
                    let opts = PullOptions {
                        strategy,
                        conflict_branch: conflict_branch_of(conflict_branch, all, &b),
                        ..Default::default()
                    };
                    let r = db.pull_with(remote, &b, &opts).await.map_err(Failure::from);
                    out.push((b, r));
                }
                Ok(out)
            })?
        })?;
        per_branch(py, all, results, report_to_py)
    }

    /// Downloads `branch`'s new versions from `remote` into its mirror (`_origin:remote:branch`)
    /// without merging. `all=True` fetches every remote branch.
    #[pyo3(signature = (remote="origin", branch="main", *, all=false))]
    fn fetch(&self, py: Python<'_>, remote: &str, branch: &str, all: bool) -> PyResult<PyObject> {
        let db = self.handle(py)?;
        let results = detached(py, move || {
            strata_sync::config::get_remote(&db, remote)?;
            block_on(async {
                let branches = if all {
                    remote_branches(&db, remote).await?
                } else {
                    vec![branch.to_string()]
                };
                let mut out = Vec::new();
                for b in branches {
                    let r = db.fetch(remote, &b).await.map_err(Failure::from);
                    out.push((b, r));
                }
                Ok(out)
            })?
        })?;
        per_branch(py, all, results, report_to_py)
    }

    /// Compacts `branch` on `remote`, keeping every version: the delta chain becomes one blob and a
    /// state snapshot at the head is kept for shallow clones (`clone(depth=N)`). `squash_before=V`
    /// drops the versions before V (history then starts from a snapshot there). Returns a report.
    #[pyo3(signature = (remote="origin", branch="main", *, squash_before=None))]
    fn remote_compact(
        &self,
        py: Python<'_>,
        remote: &str,
        branch: &str,
        squash_before: Option<u64>,
    ) -> PyResult<PyObject> {
        let db = self.handle(py)?;
        let report = detached(py, move || {
            let opts = strata_sync::CompactOptions {
                squash_before,
                progress: strata_sync::Progress::none(),
            };
            Ok(block_on(strata_sync::compact(&db, remote, branch, &opts))??)
        })?;
        report_to_py(py, &report)
    }

    /// Where `branch` stands against `remote`: `{"ahead", "behind"}` (entries), `ahead_versions`,
    /// `behind_versions`, `remote_version`, `mirror_version` and `last_synced` (seconds since the
    /// epoch, or `None`). `all=True` returns one dict per local branch.
    #[pyo3(signature = (remote="origin", branch="main", *, all=false))]
    fn sync_status(
        &self,
        py: Python<'_>,
        remote: &str,
        branch: &str,
        all: bool,
    ) -> PyResult<PyObject> {
        let db = self.handle(py)?;
        let results = detached(py, move || {
            strata_sync::config::get_remote(&db, remote)?;
            let branches = if all {
                local_branches(&db)?
            } else {
                vec![branch.to_string()]
            };
            block_on(async {
                let mut out = Vec::new();
                for b in branches {
                    let r = db.sync_status(remote, &b).await.map_err(Failure::from);
                    out.push((b, r));
                }
                out
            })
        })?;
        per_branch(py, all, results, status_to_py)
    }
}

/// Creates a database at `path` from the remote at `url` (saved as remote `origin`), with every
/// branch the remote holds (only `branch` if given; only about the last `depth` versions of each,
/// when the remote holds a shallow snapshot that close, else the whole history). Keyword `options`
/// are the remote's (e.g. `endpoint=`); `token` is a hub's API key (else STRATA_TOKEN), stored with
/// `origin`. Returns it open.
#[pyfunction]
#[pyo3(signature = (url, path, token=None, *, branch=None, depth=None, **options))]
pub(crate) fn clone(
    py: Python<'_>,
    url: &str,
    path: PathBuf,
    token: Option<&str>,
    branch: Option<String>,
    depth: Option<u64>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<PyStrata> {
    let options = options_of(token, options)?;
    if depth == Some(0) {
        return Err(invalid("depth must be at least 1").into_pyerr(py));
    }
    let what = strata_sync::CloneOptions { branch, depth };
    let db = detached(py, move || {
        let url = normalize_url(url)?;
        let (db, _) = block_on(strata_sync::clone_full(
            &url,
            &options,
            &path,
            &strata_sync::Progress::none(),
            &what,
        ))??;
        Ok(db)
    })?;
    Ok(PyStrata::wrap(db))
}
