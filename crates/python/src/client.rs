//! `stratadb.connect("strata://host:port")`: the `Client` class, the data, branch and history API of
//! `Strata` over a `stratadb-server` (through `strata_client`), and its `ClientTransaction`.
//!
//! The methods, arguments and results are those of `Strata` and `Transaction`: listings are paged
//! iterators (`list_page` over the wire), `changes_since` pages change sets. Settings, remotes,
//! `push`, `pull`, `fetch` and `sync_status` (with `all=`, strategies and conflict branches) act on
//! the server's database, run by the server; changing settings or remotes needs a key that writes
//! every branch. Errors raise the same exception classes as the engine's errors of the same kind;
//! a refused key raises `StrataError` naming the problem.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, RwLock};

use std::collections::BTreeMap;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};
use strata_client::{ClientOptions, Db, RemoteConfig, Tx};
use strata_engine::{Kind, Rev, Value};

use crate::convert::{opt_to_py, report_to_py, to_py, to_value};
use crate::db::{commit_to_py, event_to_py, history_to_py, kind_of, DEFAULT_SPACE};
use crate::db::{per_branch, PerBranch};
use crate::errors::{detached, invalid, Failure};
use crate::iter::{ChangeIter, Diff, DiffStream, ListIter, Source, DEFAULT_PAGE};
use crate::tx::cas_args;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn forked(what: &str) -> Failure {
    Failure::Other(format!(
        "this {what} was opened in the parent process before fork(); call stratadb.connect() again \
         in the child"
    ))
}

/// Connects to a `stratadb-server` at `url` (`strata://host:port`). The API key is `api_key`, else
/// `STRATA_API_KEY`; a server started with `--open` needs none. Fails at once when the server cannot
/// be reached or refuses the key.
#[pyfunction]
#[pyo3(signature = (url, api_key=None, *, timeout=120.0))]
pub(crate) fn connect(
    py: Python<'_>,
    url: &str,
    api_key: Option<String>,
    timeout: f64,
) -> PyResult<PyClient> {
    if !(timeout.is_finite() && timeout > 0.0) {
        return Err(invalid("timeout must be a positive number of seconds").into_pyerr(py));
    }
    let mut opts = ClientOptions::from_env();
    if let Some(k) = api_key.filter(|k| !k.is_empty()) {
        opts.api_key = Some(k);
    }
    opts.client_name = format!("stratadb-python/{}", env!("CARGO_PKG_VERSION"));
    opts.request_timeout = std::time::Duration::from_secs_f64(timeout);
    let db = detached(py, move || Ok(Db::connect(url, opts)?))?;
    Ok(PyClient {
        db: RwLock::new(Some(db)),
        pid: std::process::id(),
        url: url.to_string(),
    })
}

/// A connection pool to a `stratadb-server`, with the data API of `Strata`. Thread-safe.
#[pyclass(module = "stratadb._stratadb", name = "Client", frozen)]
#[derive(Debug)]
pub(crate) struct PyClient {
    db: RwLock<Option<Db>>,
    pid: u32,
    url: String,
}

impl PyClient {
    fn handle(&self, py: Python<'_>) -> PyResult<Db> {
        if std::process::id() != self.pid {
            return Err(forked("client").into_pyerr(py));
        }
        self.db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| invalid(format!("the client of {} is closed", self.url)).into_pyerr(py))
    }

    /// One write committed as its own version on `branch`/`space`; returns its result and the
    /// version (`None` when nothing changed).
    fn write<T: Send>(
        &self,
        py: Python<'_>,
        branch: &str,
        space: &str,
        f: impl FnOnce(&mut Tx<'_>) -> strata_client::Result<T> + Send,
    ) -> PyResult<(T, Option<u64>)> {
        let db = self.handle(py)?;
        detached(py, move || {
            let mut tx = db.begin(branch)?;
            tx.set_space(space)?;
            let out = f(&mut tx)?;
            Ok((out, tx.commit()?))
        })
    }

    /// A read at `branch` (or `branch@version`) in `space`.
    fn read<T: Send>(
        &self,
        py: Python<'_>,
        branch: &str,
        space: &str,
        f: impl FnOnce(&strata_client::Scope<'_>) -> strata_client::Result<T> + Send,
    ) -> PyResult<T> {
        let db = self.handle(py)?;
        detached(py, move || {
            let rev = Rev::parse(branch)?;
            let scope = db.at(&rev).space(space)?;
            Ok(f(&scope)?)
        })
    }
}

impl PyClient {
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
            Source::Remote(db),
            rev,
            space,
            kind,
            prefix,
            page_size,
        ))
    }
}

/// The remote's configured name is checked before any work (as `Strata` does).
fn require_remote(db: &Db, remote: &str) -> Result<(), Failure> {
    strata_sync::config::validate_remote_name(remote)?;
    if db.remote_list()?.remotes.iter().any(|r| r.name == remote) {
        Ok(())
    } else {
        Err(Failure::Sync(strata_sync::SyncError::NotFound(format!(
            "no remote named {remote:?} (see `strata remote add`)"
        ))))
    }
}

/// Branches for `all=True`: the server's own (push, status) or the remote's (pull, fetch).
fn branches_for(
    db: &Db,
    remote: &str,
    branch: &str,
    all: bool,
    of_remote: bool,
) -> Result<Vec<String>, Failure> {
    if !all {
        return Ok(vec![branch.to_string()]);
    }
    Ok(if of_remote {
        db.remote_branches(remote)?
            .into_iter()
            .map(|b| b.name)
            .collect()
    } else {
        db.list_branches(false)?
            .into_iter()
            .map(|b| b.name)
            .collect()
    })
}

fn value_of(o: Option<&Bound<'_, PyAny>>) -> Result<Value, Failure> {
    match o {
        Some(p) => to_value(p),
        None => Ok(Value::Null),
    }
}

fn entries_to_py(py: Python<'_>, list: &[(String, Value)]) -> PyResult<Vec<(String, PyObject)>> {
    list.iter()
        .map(|(k, v)| Ok((k.clone(), to_py(py, v)?)))
        .collect()
}

fn part(py: Python<'_>, doc: Option<Value>, path: Option<&str>) -> PyResult<PyObject> {
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

fn events_filtered(
    scope_range: impl FnOnce(u64, usize) -> strata_client::Result<Vec<strata_engine::Event>>,
    scope_by_type: impl FnOnce(&str, usize) -> strata_client::Result<Vec<strata_engine::Event>>,
    start: u64,
    limit: Option<usize>,
    event_type: Option<&str>,
) -> strata_client::Result<Vec<strata_engine::Event>> {
    let limit = limit.unwrap_or(usize::MAX);
    Ok(match event_type {
        None => scope_range(start, limit)?,
        Some(t) => scope_by_type(t, usize::MAX)?
            .into_iter()
            .filter(|e| e.seq >= start)
            .take(limit)
            .collect(),
    })
}

#[pymethods]
impl PyClient {
    /// The server's URL.
    #[getter]
    fn url(&self) -> &str {
        &self.url
    }

    /// The server's version and capabilities from the handshake, as a dict.
    fn server_info(&self, py: Python<'_>) -> PyResult<PyObject> {
        let db = self.handle(py)?;
        match db.welcome() {
            Some(w) => report_to_py(py, w),
            None => Ok(py.None()),
        }
    }

    /// Closes this client's connections (open transactions keep theirs until they finish).
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
        format!("<Client {}>", self.url)
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
        let v = self.read(py, branch, space, |s| s.kv_get(key))?;
        opt_to_py(py, &v)
    }

    /// Deletes a key; returns whether it existed.
    #[pyo3(signature = (key, *, branch="main", space=DEFAULT_SPACE))]
    fn kv_delete(&self, py: Python<'_>, key: &str, branch: &str, space: &str) -> PyResult<bool> {
        Ok(self.write(py, branch, space, |tx| tx.kv_delete(key))?.0)
    }

    /// Streams the `(key, value)` pairs whose keys start with `prefix`, in key order, `page_size`
    /// per request to the server (each answer also bounded in bytes), every page at the version the
    /// first one read.
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

    /// A document, or the part at JSON Pointer `path`; `None` when absent.
    #[pyo3(signature = (id, path=None, *, branch="main", space=DEFAULT_SPACE))]
    fn doc_get(
        &self,
        py: Python<'_>,
        id: &str,
        path: Option<&str>,
        branch: &str,
        space: &str,
    ) -> PyResult<PyObject> {
        let doc = self.read(py, branch, space, |s| s.json_get(id))?;
        part(py, doc, path)
    }

    /// Sets the part of a document at JSON Pointer `path`; returns the new version.
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

    /// Appends an event; returns its sequence number.
    #[pyo3(signature = (event_type, payload=None, *, branch="main", space=DEFAULT_SPACE))]
    fn event_append(
        &self,
        py: Python<'_>,
        event_type: &str,
        payload: Option<&Bound<'_, PyAny>>,
        branch: &str,
        space: &str,
    ) -> PyResult<u64> {
        let v = value_of(payload).map_err(|e| e.into_pyerr(py))?;
        Ok(self
            .write(py, branch, space, |tx| tx.event_append(event_type, v))?
            .0)
    }

    /// Events from sequence `start` on, as dicts.
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
        let evs = self.read(py, branch, space, |s| {
            events_filtered(
                |f, l| s.event_range(f, l),
                |t, l| s.event_by_type(t, l),
                start,
                limit,
                event_type,
            )
        })?;
        evs.iter().map(|e| event_to_py(py, e)).collect()
    }

    /// The number of events in the space's log.
    #[pyo3(signature = (*, branch="main", space=DEFAULT_SPACE))]
    fn event_len(&self, py: Python<'_>, branch: &str, space: &str) -> PyResult<u64> {
        self.read(py, branch, space, |s| s.event_len())
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

    /// A state cell's value, or `None`.
    #[pyo3(signature = (cell, *, branch="main", space=DEFAULT_SPACE))]
    fn state_get(
        &self,
        py: Python<'_>,
        cell: &str,
        branch: &str,
        space: &str,
    ) -> PyResult<PyObject> {
        let v = self.read(py, branch, space, |s| s.state_get(cell))?;
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

    /// Compare-and-swap (`None` means absent; `new=None` deletes). Returns whether it swapped.
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

    /// Starts a write transaction on `branch` (a server-side session holding the write lock). As a
    /// context manager it commits at the end of the block, or rolls back if it raises. If the
    /// connection breaks, the server rolls it back and the call raises: nothing is half-written.
    #[pyo3(signature = (branch="main", *, message=None, author=None))]
    fn transaction(
        &self,
        py: Python<'_>,
        branch: &str,
        message: Option<String>,
        author: Option<String>,
    ) -> PyResult<PyClientTransaction> {
        let db = self.handle(py)?;
        detached(py, move || {
            let held = Held::begin(db, branch, message, author)?;
            Ok(PyClientTransaction {
                held: Mutex::new(Some(held)),
                branch: branch.to_string(),
                committed: Mutex::new(None),
                pid: std::process::id(),
            })
        })
    }

    // ----- branches and versions -----

    /// Branches as dicts (those the key may read).
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

    /// Forks `source` (`"branch"` or `"branch@version"`) as a new branch `name`.
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

    /// The structured difference from `a` to `b`.
    fn diff(&self, py: Python<'_>, a: &str, b: &str) -> PyResult<Diff> {
        let db = self.handle(py)?;
        let d = detached(py, move || Ok(db.diff(&Rev::parse(a)?, &Rev::parse(b)?)?))?;
        Ok(Diff::new(d, a.to_string(), b.to_string()))
    }

    /// The difference from `a` to `b` entry by entry (the same dicts as iterating `diff()`); the
    /// server sends the whole difference in one answer, converted as it is iterated.
    fn diff_iter(&self, py: Python<'_>, a: &str, b: &str) -> PyResult<DiffStream> {
        let db = self.handle(py)?;
        let d = detached(py, move || Ok(db.diff(&Rev::parse(a)?, &Rev::parse(b)?)?))?;
        Ok(DiffStream::remote(d))
    }

    /// Streams the change sets of `branch` after `version`, oldest first, up to the head when the
    /// call was made (pages of change sets over the wire).
    #[pyo3(signature = (branch="main", version=0))]
    fn changes_since(&self, py: Python<'_>, branch: &str, version: u64) -> PyResult<ChangeIter> {
        let db = self.handle(py)?;
        detached(py, move || ChangeIter::remote(db, branch, version))
    }

    // ----- settings (the server's database; changing them needs a key that writes every branch) --

    /// A setting of the server's database (e.g. `"user.name"`), or `None`.
    fn config(&self, py: Python<'_>, key: &str) -> PyResult<Option<String>> {
        let db = self.handle(py)?;
        detached(py, move || Ok(db.config(key)?))
    }

    /// Sets a setting of the server's database; `None` removes it.
    #[pyo3(signature = (key, value))]
    fn set_config(&self, py: Python<'_>, key: &str, value: Option<&str>) -> PyResult<()> {
        let db = self.handle(py)?;
        detached(py, move || Ok(db.set_config(key, value)?))
    }

    /// Every setting of the server's database, as a dict.
    fn config_list(&self, py: Python<'_>) -> PyResult<BTreeMap<String, String>> {
        let db = self.handle(py)?;
        detached(py, move || Ok(db.config_list()?.into_iter().collect()))
    }

    /// Three-way merges `source` into `target` as one new version (see `Strata.merge`).
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
            let s = crate::db::strategy(strategy)?;
            Ok(db.merge(&Rev::parse(source)?, target, s)?)
        })?;
        report_to_py(py, &report)
    }

    /// The versions of a branch, newest first, as dicts.
    #[pyo3(signature = (branch="main", *, limit=100))]
    fn log(&self, py: Python<'_>, branch: &str, limit: usize) -> PyResult<Vec<PyObject>> {
        let db = self.handle(py)?;
        let list = detached(py, move || Ok(db.log(branch, limit)?))?;
        list.iter().map(|c| commit_to_py(py, c)).collect()
    }

    /// Every value a key has had on a branch, newest first, as dicts.
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
            let kind: Kind = kind_of(kind)?;
            Ok(db.history(branch, space, kind, key)?)
        })?;
        list.iter().map(|h| history_to_py(py, h)).collect()
    }

    // ----- bundles -----

    /// Writes `branch`'s versions in `(from_version, to_version]` (default: all) to a bundle file on
    /// this machine (streamed from the server); returns its manifest.
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

    /// Uploads and imports a bundle file from this machine; returns what it did.
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

    // ----- sync, run by the server on its database -----

    /// Adds a remote to the server's database (see `Strata.remote_add`; a folder path is made
    /// absolute here and names the server's file system). Needs a key that writes every branch.
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
        let options = crate::db::options_of(token, options)?;
        detached(py, move || {
            db.remote_add(RemoteConfig {
                name: name.to_string(),
                url: crate::db::normalize_url(url)?,
                options,
            })?;
            Ok(())
        })
    }

    /// The server database's remotes as dicts (`name`, `url`, `options`; secret option values are
    /// masked by the server and never leave it).
    fn remotes(&self, py: Python<'_>) -> PyResult<Vec<PyObject>> {
        let db = self.handle(py)?;
        let list = detached(py, move || Ok(db.remote_list()?.remotes))?;
        list.iter()
            .map(|r| crate::db::remote_to_py(py, r))
            .collect()
    }

    /// Removes a remote, its sync state and its mirror branches from the server's database.
    fn remote_remove(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        let db = self.handle(py)?;
        detached(py, move || {
            db.remote_remove(name)?;
            Ok(())
        })
    }

    /// Compacts `branch` on `remote` (see `Strata.remote_compact`), run by the server.
    #[pyo3(signature = (remote="origin", branch="main", *, squash_before=None))]
    fn remote_compact(
        &self,
        py: Python<'_>,
        remote: &str,
        branch: &str,
        squash_before: Option<u64>,
    ) -> PyResult<PyObject> {
        let db = self.handle(py)?;
        let r = detached(py, move || {
            Ok(db.remote_compact(remote, branch, squash_before)?)
        })?;
        report_to_py(py, &r)
    }

    /// Pushes `branch` (or with `all=True` every branch, returning a list) to `remote`, a remote
    /// configured in the server's database; the server runs it.
    #[pyo3(signature = (remote="origin", branch="main", *, all=false))]
    fn push(&self, py: Python<'_>, remote: &str, branch: &str, all: bool) -> PyResult<PyObject> {
        let db = self.handle(py)?;
        let results = detached(py, move || {
            require_remote(&db, remote)?;
            Ok(branches_for(&db, remote, branch, all, false)?
                .into_iter()
                .map(|b| {
                    let r = db.push(remote, &b).map_err(Failure::from);
                    (b, r)
                })
                .collect::<PerBranch<_>>())
        })?;
        per_branch(py, all, results, report_to_py)
    }

    /// Pulls `branch` from `remote` on the server (see `Strata.pull`: `strategy` `"theirs"`,
    /// `"ours"` or `"strict"`, `conflict_branch`, `all`).
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
            let strategy = crate::db::pull_strategy(strategy, conflict_branch)?;
            require_remote(&db, remote)?;
            Ok(branches_for(&db, remote, branch, all, true)?
                .into_iter()
                .map(|b| {
                    let cb = crate::db::conflict_branch_of(conflict_branch, all, &b);
                    let r = db
                        .pull_with(remote, &b, strategy, cb.as_deref())
                        .map_err(Failure::from);
                    (b, r)
                })
                .collect::<PerBranch<_>>())
        })?;
        per_branch(py, all, results, report_to_py)
    }

    /// Fetches `branch` (or every remote branch with `all=True`) into the server's mirrors.
    #[pyo3(signature = (remote="origin", branch="main", *, all=false))]
    fn fetch(&self, py: Python<'_>, remote: &str, branch: &str, all: bool) -> PyResult<PyObject> {
        let db = self.handle(py)?;
        let results = detached(py, move || {
            require_remote(&db, remote)?;
            Ok(branches_for(&db, remote, branch, all, true)?
                .into_iter()
                .map(|b| {
                    let r = db.fetch(remote, &b).map_err(Failure::from);
                    (b, r)
                })
                .collect::<PerBranch<_>>())
        })?;
        per_branch(py, all, results, report_to_py)
    }

    /// Where the server's `branch` (or every branch, `all=True`) stands against `remote`.
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
            require_remote(&db, remote)?;
            Ok(branches_for(&db, remote, branch, all, false)?
                .into_iter()
                .map(|b| {
                    let r = db.sync_status(remote, &b).map_err(Failure::from);
                    (b, r)
                })
                .collect::<PerBranch<_>>())
        })?;
        per_branch(py, all, results, crate::db::status_to_py)
    }
}

/// An open client transaction and the handle it borrows from. Field order matters: `tx` is dropped
/// (rolled back if still open) before the handle it borrows.
struct Held {
    tx: Tx<'static>,
    _db: Box<Db>,
}

impl Held {
    fn begin(
        db: Db,
        branch: &str,
        message: Option<String>,
        author: Option<String>,
    ) -> Result<Held, Failure> {
        let db = Box::new(db);
        let tx = db.begin(branch)?;
        // SAFETY: `tx` borrows the `Db` inside the box (and, for a server, the pool behind its
        // `Arc`), whose address never changes while `Held` owns it; `Held` drops `tx` before `_db`
        // (declaration order) and the `'static` never escapes `Held`.
        let mut tx: Tx<'static> = unsafe { std::mem::transmute(tx) };
        if let Some(m) = message {
            tx.set_message(m);
        }
        if let Some(a) = author {
            tx.set_author(a);
        }
        Ok(Held { tx, _db: db })
    }
}

/// A write transaction on a server: the methods of `Transaction`.
#[pyclass(module = "stratadb._stratadb", name = "ClientTransaction", frozen)]
pub(crate) struct PyClientTransaction {
    held: Mutex<Option<Held>>,
    branch: String,
    committed: Mutex<Option<Option<u64>>>,
    pid: u32,
}

impl std::fmt::Debug for PyClientTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTransaction")
            .field("branch", &self.branch)
            .finish()
    }
}

impl PyClientTransaction {
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        space: &str,
        f: impl FnOnce(&mut Tx<'static>) -> strata_client::Result<T> + Send,
    ) -> PyResult<T> {
        detached(py, || {
            if std::process::id() != self.pid {
                return Err(forked("transaction"));
            }
            let mut g = lock(&self.held);
            let Some(h) = g.as_mut() else {
                return Err(invalid(format!(
                    "the transaction on {:?} is already finished (committed or rolled back)",
                    self.branch
                )));
            };
            if h.tx.space() != space {
                h.tx.set_space(space)?;
            }
            Ok(f(&mut h.tx)?)
        })
    }
}

#[pymethods]
impl PyClientTransaction {
    /// The branch being written.
    #[getter]
    fn branch(&self) -> &str {
        &self.branch
    }

    /// The version this transaction commits as (after commit: the version it made, or `None`).
    #[getter]
    fn version(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        detached(py, || {
            if let Some(v) = *lock(&self.committed) {
                return Ok(v);
            }
            Ok(lock(&self.held).as_ref().map(|h| h.tx.version()))
        })
    }

    /// Whether the transaction is still open.
    #[getter]
    fn open(&self, py: Python<'_>) -> PyResult<bool> {
        detached(py, || Ok(lock(&self.held).is_some()))
    }

    /// Sets the commit message.
    fn set_message(&self, py: Python<'_>, message: &str) -> PyResult<()> {
        self.with(py, DEFAULT_SPACE, |tx| {
            tx.set_message(message);
            Ok(())
        })
    }

    /// Sets the commit's author.
    fn set_author(&self, py: Python<'_>, author: &str) -> PyResult<()> {
        self.with(py, DEFAULT_SPACE, |tx| {
            tx.set_author(author);
            Ok(())
        })
    }

    /// Commits: returns the new version, or `None` if nothing was written.
    fn commit(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        detached(py, || {
            if std::process::id() != self.pid {
                return Err(forked("transaction"));
            }
            let Some(Held { tx, _db }) = lock(&self.held).take() else {
                return Err(invalid(format!(
                    "the transaction on {:?} is already finished",
                    self.branch
                )));
            };
            let out = tx.commit();
            drop(_db);
            let v = out?;
            *lock(&self.committed) = Some(v);
            Ok(v)
        })
    }

    /// Rolls back. Does nothing if already finished.
    fn rollback(&self, py: Python<'_>) -> PyResult<()> {
        detached(py, || {
            if std::process::id() != self.pid {
                return Err(forked("transaction"));
            }
            if let Some(Held { tx, _db }) = lock(&self.held).take() {
                let out = tx.rollback();
                drop(_db);
                out?;
            }
            Ok(())
        })
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Commits when the block succeeded, rolls back when it raised.
    #[pyo3(signature = (exc_type=None, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<Bound<'_, PyType>>,
        _exc: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if exc_type.is_some() {
            self.rollback(py)?;
        } else if self.open(py)? {
            self.commit(py)?;
        }
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let state = if self.open(py)? { "open" } else { "finished" };
        Ok(format!(
            "<ClientTransaction on {:?} ({state})>",
            self.branch
        ))
    }

    /// Puts a key.
    #[pyo3(signature = (key, value, *, space=DEFAULT_SPACE))]
    fn kv_put(
        &self,
        py: Python<'_>,
        key: &str,
        value: &Bound<'_, PyAny>,
        space: &str,
    ) -> PyResult<()> {
        let v = to_value(value).map_err(|e| e.into_pyerr(py))?;
        self.with(py, space, |tx| tx.kv_put(key, v))
    }

    /// The value of a key (this transaction's writes included), or `None`.
    #[pyo3(signature = (key, *, space=DEFAULT_SPACE))]
    fn kv_get(&self, py: Python<'_>, key: &str, space: &str) -> PyResult<PyObject> {
        let v = self.with(py, space, |tx| tx.kv_get(key))?;
        opt_to_py(py, &v)
    }

    /// Deletes a key; returns whether it existed.
    #[pyo3(signature = (key, *, space=DEFAULT_SPACE))]
    fn kv_delete(&self, py: Python<'_>, key: &str, space: &str) -> PyResult<bool> {
        self.with(py, space, |tx| tx.kv_delete(key))
    }

    /// The `(key, value)` pairs whose keys start with `prefix`, as a list.
    #[pyo3(signature = (prefix="", *, space=DEFAULT_SPACE))]
    fn kv_list(
        &self,
        py: Python<'_>,
        prefix: &str,
        space: &str,
    ) -> PyResult<Vec<(String, PyObject)>> {
        let list = self.with(py, space, |tx| tx.kv_list(prefix))?;
        entries_to_py(py, &list)
    }

    /// Puts a document.
    #[pyo3(signature = (id, doc, *, space=DEFAULT_SPACE))]
    fn doc_put(
        &self,
        py: Python<'_>,
        id: &str,
        doc: &Bound<'_, PyAny>,
        space: &str,
    ) -> PyResult<()> {
        let v = to_value(doc).map_err(|e| e.into_pyerr(py))?;
        self.with(py, space, |tx| tx.json_put(id, v))
    }

    /// A document or the part at `path`, or `None`.
    #[pyo3(signature = (id, path=None, *, space=DEFAULT_SPACE))]
    fn doc_get(
        &self,
        py: Python<'_>,
        id: &str,
        path: Option<&str>,
        space: &str,
    ) -> PyResult<PyObject> {
        let doc = self.with(py, space, |tx| tx.json_get(id))?;
        part(py, doc, path)
    }

    /// Sets the part of a document at `path`.
    #[pyo3(signature = (id, path, value, *, space=DEFAULT_SPACE))]
    fn doc_set(
        &self,
        py: Python<'_>,
        id: &str,
        path: &str,
        value: &Bound<'_, PyAny>,
        space: &str,
    ) -> PyResult<()> {
        let v = to_value(value).map_err(|e| e.into_pyerr(py))?;
        self.with(py, space, |tx| tx.json_set_path(id, path, v))
    }

    /// Deletes a document; returns whether it existed.
    #[pyo3(signature = (id, *, space=DEFAULT_SPACE))]
    fn doc_delete(&self, py: Python<'_>, id: &str, space: &str) -> PyResult<bool> {
        self.with(py, space, |tx| tx.json_delete(id))
    }

    /// The `(id, document)` pairs whose ids start with `prefix`, as a list.
    #[pyo3(signature = (prefix="", *, space=DEFAULT_SPACE))]
    fn doc_list(
        &self,
        py: Python<'_>,
        prefix: &str,
        space: &str,
    ) -> PyResult<Vec<(String, PyObject)>> {
        let list = self.with(py, space, |tx| tx.json_list(prefix))?;
        entries_to_py(py, &list)
    }

    /// Appends an event; returns its sequence number.
    #[pyo3(signature = (event_type, payload=None, *, space=DEFAULT_SPACE))]
    fn event_append(
        &self,
        py: Python<'_>,
        event_type: &str,
        payload: Option<&Bound<'_, PyAny>>,
        space: &str,
    ) -> PyResult<u64> {
        let v = value_of(payload).map_err(|e| e.into_pyerr(py))?;
        self.with(py, space, |tx| tx.event_append(event_type, v))
    }

    /// Events from `start` on, as dicts.
    #[pyo3(signature = (start=1, limit=None, *, event_type=None, space=DEFAULT_SPACE))]
    fn event_read(
        &self,
        py: Python<'_>,
        start: u64,
        limit: Option<usize>,
        event_type: Option<&str>,
        space: &str,
    ) -> PyResult<Vec<PyObject>> {
        let evs = self.with(py, space, |tx| {
            let range = tx.event_range(start, limit.unwrap_or(usize::MAX));
            match event_type {
                None => range,
                Some(t) => Ok(tx
                    .event_by_type(t, usize::MAX)?
                    .into_iter()
                    .filter(|e| e.seq >= start)
                    .take(limit.unwrap_or(usize::MAX))
                    .collect()),
            }
        })?;
        evs.iter().map(|e| event_to_py(py, e)).collect()
    }

    /// Sets a state cell.
    #[pyo3(signature = (cell, value, *, space=DEFAULT_SPACE))]
    fn state_set(
        &self,
        py: Python<'_>,
        cell: &str,
        value: &Bound<'_, PyAny>,
        space: &str,
    ) -> PyResult<()> {
        let v = to_value(value).map_err(|e| e.into_pyerr(py))?;
        self.with(py, space, |tx| tx.state_set(cell, v))
    }

    /// A state cell's value, or `None`.
    #[pyo3(signature = (cell, *, space=DEFAULT_SPACE))]
    fn state_get(&self, py: Python<'_>, cell: &str, space: &str) -> PyResult<PyObject> {
        let v = self.with(py, space, |tx| tx.state_get(cell))?;
        opt_to_py(py, &v)
    }

    /// Sets a cell only if absent; returns whether it did.
    #[pyo3(signature = (cell, value, *, space=DEFAULT_SPACE))]
    fn state_init(
        &self,
        py: Python<'_>,
        cell: &str,
        value: &Bound<'_, PyAny>,
        space: &str,
    ) -> PyResult<bool> {
        let v = to_value(value).map_err(|e| e.into_pyerr(py))?;
        self.with(py, space, |tx| tx.state_init(cell, v))
    }

    /// Compare-and-swap; returns whether it swapped.
    #[pyo3(signature = (cell, expected, new, *, space=DEFAULT_SPACE))]
    fn state_cas(
        &self,
        py: Python<'_>,
        cell: &str,
        expected: &Bound<'_, PyAny>,
        new: &Bound<'_, PyAny>,
        space: &str,
    ) -> PyResult<bool> {
        let (e, n) = cas_args(py, expected, new)?;
        self.with(py, space, |tx| tx.state_cas(cell, e.as_ref(), n))
    }

    /// Deletes a state cell; returns whether it existed.
    #[pyo3(signature = (cell, *, space=DEFAULT_SPACE))]
    fn state_delete(&self, py: Python<'_>, cell: &str, space: &str) -> PyResult<bool> {
        self.with(py, space, |tx| tx.state_delete(cell))
    }
}
