//! `Transaction`: several writes committed atomically as one version, as a context manager.

use std::sync::{Mutex, MutexGuard};

use pyo3::prelude::*;
use pyo3::types::PyType;
use strata_engine::{Strata, Transaction, Value};

use crate::convert::{opt_to_py, to_py, to_value};
use crate::db::{event_to_py, DEFAULT_SPACE};
use crate::errors::{detached, invalid, Failure};
use crate::fork::Owned;

/// An open engine transaction and the handle it borrows from. Field order matters: `tx` is dropped
/// (rolled back if still open) before the handle it borrows.
struct Held {
    tx: Transaction<'static>,
    _db: Box<Strata>,
}

impl Held {
    fn begin(
        db: &Strata,
        branch: &str,
        message: Option<&str>,
        author: Option<&str>,
    ) -> Result<Held, Failure> {
        let db = Box::new(db.clone());
        let tx = db.begin(branch)?;
        // SAFETY: `tx` borrows the `Strata` inside the box, whose heap address never changes while
        // `Held` owns it (moving a `Box` moves the pointer, not the value), and `Held` drops `tx`
        // before `_db` (declaration order). The `'static` never escapes `Held`.
        let mut tx: Transaction<'static> = unsafe { std::mem::transmute(tx) };
        if let Some(m) = message {
            tx.set_message(m);
        }
        if let Some(a) = author {
            tx.set_author(a);
        }
        Ok(Held { tx, _db: db })
    }
}

/// A write transaction on one branch: every write inside it becomes one new version at `commit()`,
/// with read-your-writes. Used as a context manager it commits when the block succeeds and rolls
/// back when it raises. It holds the database's write lock from creation to commit or rollback.
#[pyclass(module = "stratadb._stratadb", name = "Transaction", frozen)]
pub(crate) struct PyTransaction {
    held: Mutex<Option<Owned<Held>>>,
    branch: String,
    /// The version committed, once committed.
    committed: Mutex<Option<Option<u64>>>,
}

impl std::fmt::Debug for PyTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("branch", &self.branch)
            .finish()
    }
}

fn forked() -> Failure {
    Failure::Other(
        "this transaction was opened in the parent process before fork(); open the database \
         again in the child"
            .into(),
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PyTransaction {
    pub(crate) fn begin(
        db: &Strata,
        branch: &str,
        message: Option<&str>,
        author: Option<&str>,
    ) -> Result<PyTransaction, Failure> {
        let held = Held::begin(db, branch, message, author)?;
        Ok(PyTransaction {
            held: Mutex::new(Some(Owned::new(held))),
            branch: branch.to_string(),
            committed: Mutex::new(None),
        })
    }

    /// Runs `f` on the open transaction in `space`, with the GIL released.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        space: &str,
        f: impl FnOnce(&mut Transaction<'static>) -> strata_engine::Result<T> + Send,
    ) -> PyResult<T> {
        detached(py, || {
            let mut g = lock(&self.held);
            let Some(h) = g.as_mut() else {
                return Err(invalid(format!(
                    "the transaction on {:?} is already finished (committed or rolled back)",
                    self.branch
                )));
            };
            if !h.here() {
                return Err(forked());
            }
            if h.tx.space() != space {
                h.tx.set_space(space)?;
            }
            Ok(f(&mut h.tx)?)
        })
    }
}

#[pymethods]
impl PyTransaction {
    /// The branch being written.
    #[getter]
    fn branch(&self) -> &str {
        &self.branch
    }

    /// The version this transaction commits as (after commit: the version it made, or `None` if it
    /// wrote nothing).
    #[getter]
    fn version(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        // Every lock of `held` is taken with the GIL released: another thread may hold it while it
        // waits for SQLite with the GIL released, and would need the GIL back to let go.
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

    /// Sets the commit's author (default: the database's `user.name` setting).
    fn set_author(&self, py: Python<'_>, author: &str) -> PyResult<()> {
        self.with(py, DEFAULT_SPACE, |tx| {
            tx.set_author(author);
            Ok(())
        })
    }

    /// Commits: returns the new version, or `None` if nothing was written.
    fn commit(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        detached(py, || {
            let mut g = lock(&self.held);
            match g.as_ref() {
                None => {
                    return Err(invalid(format!(
                        "the transaction on {:?} is already finished",
                        self.branch
                    )))
                }
                Some(h) if !h.here() => return Err(forked()),
                Some(_) => {}
            }
            let Held { tx, _db } = g.take().expect("checked above").into_inner();
            let out = tx.commit();
            drop(_db);
            let v = out?;
            *lock(&self.committed) = Some(v);
            Ok(v)
        })
    }

    /// Rolls back: nothing written in this transaction is kept. Does nothing if already finished.
    fn rollback(&self, py: Python<'_>) -> PyResult<()> {
        detached(py, || {
            let mut g = lock(&self.held);
            if g.as_ref().is_some_and(|h| !h.here()) {
                return Err(forked());
            }
            if let Some(Held { tx, _db }) = g.take().map(Owned::into_inner) {
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

    /// Commits when the block succeeded, rolls back when it raised (the exception propagates).
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
        Ok(format!("<Transaction on {:?} ({state})>", self.branch))
    }

    // ----- KV -----

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

    /// The `(key, value)` pairs whose keys start with `prefix`, in key order, as a list.
    #[pyo3(signature = (prefix="", *, space=DEFAULT_SPACE))]
    fn kv_list(
        &self,
        py: Python<'_>,
        prefix: &str,
        space: &str,
    ) -> PyResult<Vec<(String, PyObject)>> {
        let rows = self.with(py, space, |tx| tx.kv_list(prefix))?;
        rows.into_iter()
            .map(|(k, v)| Ok((k, to_py(py, &v)?)))
            .collect()
    }

    // ----- documents -----

    /// Puts a JSON document.
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

    /// A document, or the part of it at a JSON Pointer `path`; `None` when absent.
    #[pyo3(signature = (id, path=None, *, space=DEFAULT_SPACE))]
    fn doc_get(
        &self,
        py: Python<'_>,
        id: &str,
        path: Option<&str>,
        space: &str,
    ) -> PyResult<PyObject> {
        let v = self.with(py, space, |tx| match path {
            Some(p) => tx.json_get_path(id, p),
            None => tx.json_get(id),
        })?;
        opt_to_py(py, &v)
    }

    /// Sets the part of a document at a JSON Pointer `path` (creating the document if needed).
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
        let rows = self.with(py, space, |tx| tx.json_list(prefix))?;
        rows.into_iter()
            .map(|(k, v)| Ok((k, to_py(py, &v)?)))
            .collect()
    }

    // ----- events -----

    /// Appends an event; returns its sequence number.
    #[pyo3(signature = (event_type, payload=None, *, space=DEFAULT_SPACE))]
    fn event_append(
        &self,
        py: Python<'_>,
        event_type: &str,
        payload: Option<&Bound<'_, PyAny>>,
        space: &str,
    ) -> PyResult<u64> {
        let v = match payload {
            Some(p) => to_value(p).map_err(|e| e.into_pyerr(py))?,
            None => Value::Null,
        };
        self.with(py, space, |tx| tx.event_append(event_type, v))
    }

    /// Events from sequence `start` on (at most `limit`), as dicts.
    #[pyo3(signature = (start=1, limit=None, *, space=DEFAULT_SPACE))]
    fn event_read(
        &self,
        py: Python<'_>,
        start: u64,
        limit: Option<usize>,
        space: &str,
    ) -> PyResult<Vec<PyObject>> {
        let evs = self.with(py, space, |tx| {
            tx.event_range(start, limit.unwrap_or(usize::MAX))
        })?;
        evs.iter().map(|e| event_to_py(py, e)).collect()
    }

    // ----- state -----

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

    /// Sets a cell only if it is absent; returns whether it did.
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

    /// Compare-and-swap: sets the cell to `new` only if it holds `expected` (`None`: absent; `new`
    /// `None` deletes). Returns whether it swapped.
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

    /// Deletes a cell; returns whether it existed.
    #[pyo3(signature = (cell, *, space=DEFAULT_SPACE))]
    fn state_delete(&self, py: Python<'_>, cell: &str, space: &str) -> PyResult<bool> {
        self.with(py, space, |tx| tx.state_delete(cell))
    }
}

/// `None` means absent for both arguments of a compare-and-swap.
pub(crate) fn cas_args(
    py: Python<'_>,
    expected: &Bound<'_, PyAny>,
    new: &Bound<'_, PyAny>,
) -> PyResult<(Option<Value>, Option<Value>)> {
    let conv = |o: &Bound<'_, PyAny>| -> PyResult<Option<Value>> {
        if o.is_none() {
            Ok(None)
        } else {
            to_value(o).map(Some).map_err(|e| e.into_pyerr(py))
        }
    };
    Ok((conv(expected)?, conv(new)?))
}
