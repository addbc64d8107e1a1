//! Streaming results: key listings read a page at a time ([`ListIter`]), change sets one at a time
//! ([`ChangeIter`]), and a [`Diff`] whose entries become Python objects only as they are iterated.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use strata_engine::{BranchDiff, Kind, Rev, Strata, Value};

use crate::convert::{diff_entry_to_py, to_py};
use crate::errors::{detached, Failure};
use crate::fork::Owned;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn forked() -> Failure {
    Failure::Other(
        "this iterator was made in the parent process before fork(); list again in the child"
            .into(),
    )
}

/// Default entries fetched per page by list iterators.
pub(crate) const DEFAULT_PAGE: usize = 1000;

#[derive(Debug, Default)]
struct ListState {
    /// The version the first page read; later pages read the same one.
    version: Option<u64>,
    after: Option<String>,
    buf: VecDeque<(String, Value)>,
    done: bool,
    pages: u64,
}

/// A page read: the version, the entries, and whether the listing is done.
type PageRead = (u64, Vec<(String, Value)>, bool);

/// Where an iterator reads: the embedded engine, or a server (pages over the wire, each answer
/// bounded far under the frame cap).
#[derive(Debug)]
pub(crate) enum Source {
    Local(Strata),
    Remote(strata_client::Db),
}

impl Source {
    fn list_page(
        &self,
        rev: &Rev,
        space: &str,
        kind: Kind,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<PageRead, Failure> {
        Ok(match self {
            Source::Local(db) => {
                let (v, page) = db.list_page(rev, space, kind, prefix, after, limit)?;
                let done = page.len() < limit;
                (v, page, done)
            }
            // A server may cut a page short (by size): `next` says whether more follow.
            Source::Remote(db) => {
                let p = db.list_page(rev, space, kind, prefix, after, limit)?;
                (p.version, p.entries, p.next.is_none())
            }
        })
    }
}

/// An iterator over `(key, value)` pairs in key order that reads `page_size` entries at a time, all
/// at the version the first page saw: memory stays bounded by a page however long the list is.
#[pyclass(module = "stratadb._stratadb", name = "ListIterator", frozen)]
#[derive(Debug)]
pub(crate) struct ListIter {
    db: Owned<Source>,
    rev: Rev,
    space: String,
    kind: Kind,
    prefix: String,
    page: usize,
    state: Mutex<ListState>,
}

impl ListIter {
    pub(crate) fn new(
        db: Source,
        rev: Rev,
        space: &str,
        kind: Kind,
        prefix: &str,
        page: usize,
    ) -> ListIter {
        ListIter {
            db: Owned::new(db),
            rev,
            space: space.to_string(),
            kind,
            prefix: prefix.to_string(),
            page: page.max(1),
            state: Mutex::new(ListState::default()),
        }
    }

    /// Reads the next page into the buffer when it is empty.
    fn fill(&self, st: &mut ListState) -> Result<(), Failure> {
        if !st.buf.is_empty() || st.done {
            return Ok(());
        }
        if !self.db.here() {
            return Err(forked());
        }
        let rev = match st.version {
            Some(v) => Rev::at(self.rev.branch.clone(), v),
            None => self.rev.clone(),
        };
        let (v, page, done) = self.db.list_page(
            &rev,
            &self.space,
            self.kind,
            &self.prefix,
            st.after.as_deref(),
            self.page,
        )?;
        st.version = Some(v);
        st.pages += 1;
        st.done = done;
        st.after = page.last().map(|(k, _)| k.clone());
        st.buf.extend(page);
        Ok(())
    }
}

#[pymethods]
impl ListIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<(String, PyObject)>> {
        // Fast path with the GIL held: the buffer has an entry (never blocks: try_lock).
        let fast = match self.state.try_lock() {
            Ok(mut st) => match st.buf.pop_front() {
                Some(item) => Some(Some(item)),
                None if st.done => Some(None),
                None => None,
            },
            Err(_) => None,
        };
        let item = match fast {
            Some(item) => item,
            None => detached(py, || {
                let mut st = lock(&self.state);
                self.fill(&mut st)?;
                Ok(st.buf.pop_front())
            })?,
        };
        match item {
            Some((k, v)) => Ok(Some((k, to_py(py, &v)?))),
            None => Ok(None),
        }
    }

    /// Pages read so far.
    #[getter]
    fn pages_fetched(&self, py: Python<'_>) -> PyResult<u64> {
        // With the GIL released: `__next__` may hold the lock while it reads a page without the GIL.
        detached(py, || Ok(lock(&self.state).pages))
    }

    /// The version being listed (`None` before the first page is read).
    #[getter]
    fn version(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        detached(py, || Ok(lock(&self.state).version))
    }

    fn __repr__(&self) -> String {
        format!(
            "<ListIterator {} {}/{} prefix={:?}>",
            self.rev,
            self.space,
            self.kind.name(),
            self.prefix
        )
    }
}

/// An iterator over a branch's change sets (one per version, or several per large version), read
/// lazily: each item is a dict `{"version", "timestamp", "puts": [(space, kind, key, value)],
/// "deletes": [(space, kind, key)]}`.
#[pyclass(module = "stratadb._stratadb", name = "ChangeIterator", frozen)]
#[derive(Debug)]
pub(crate) struct ChangeIter {
    inner: Mutex<Owned<Changes>>,
}

/// The change sets' source: the engine's iterator, or pages from a server pinned to the head the
/// iterator started at.
#[derive(Debug)]
enum Changes {
    Local(strata_engine::ChangeIter),
    Remote {
        db: strata_client::Db,
        rev: Rev,
        after: u64,
        buf: VecDeque<strata_engine::ChangeSet>,
        done: bool,
    },
}

impl Changes {
    fn next(&mut self) -> Result<Option<strata_engine::ChangeSet>, Failure> {
        match self {
            Changes::Local(it) => it.next().transpose().map_err(Failure::from),
            Changes::Remote {
                db,
                rev,
                after,
                buf,
                done,
            } => {
                if buf.is_empty() && !*done {
                    let page = db.changes(rev, *after, 256)?;
                    *done = page.is_empty();
                    if let Some(last) = page.last() {
                        *after = last.version;
                    }
                    buf.extend(page);
                }
                Ok(buf.pop_front())
            }
        }
    }
}

impl ChangeIter {
    pub(crate) fn new(inner: strata_engine::ChangeIter) -> ChangeIter {
        ChangeIter {
            inner: Mutex::new(Owned::new(Changes::Local(inner))),
        }
    }

    /// The change sets of `branch` on a server after `version`, up to its head now.
    pub(crate) fn remote(
        db: strata_client::Db,
        branch: &str,
        version: u64,
    ) -> Result<ChangeIter, Failure> {
        let head = db.branch_info(branch)?.head;
        Ok(ChangeIter {
            inner: Mutex::new(Owned::new(Changes::Remote {
                db,
                rev: Rev::at(branch, head),
                after: version,
                buf: VecDeque::new(),
                done: version >= head,
            })),
        })
    }
}

#[pymethods]
impl ChangeIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyObject>> {
        let next = detached(py, || {
            let mut it = lock(&self.inner);
            if !it.here() {
                return Err(forked());
            }
            it.next()
        })?;
        let Some(cs) = next else { return Ok(None) };
        let d = PyDict::new(py);
        d.set_item("version", cs.version)?;
        d.set_item("timestamp", cs.timestamp_micros as f64 / 1e6)?;
        let puts = PyList::empty(py);
        for (k, v) in &cs.puts {
            puts.append(PyTuple::new(
                py,
                [
                    k.space.clone().into_pyobject(py)?.into_any(),
                    k.kind.name().into_pyobject(py)?.into_any(),
                    k.key.clone().into_pyobject(py)?.into_any(),
                    to_py(py, v)?.into_bound(py),
                ],
            )?)?;
        }
        d.set_item("puts", puts)?;
        let dels = PyList::empty(py);
        for k in &cs.deletes {
            dels.append((k.space.as_str(), k.kind.name(), k.key.as_str()))?;
        }
        d.set_item("deletes", dels)?;
        Ok(Some(d.into_any().unbind()))
    }
}

/// The structured difference between two revisions. Iterating yields one dict per entry,
/// `{"space", "change": "added"|"removed"|"modified", "kind", "key", "a", "b"}`, converted to Python
/// objects only as they are reached; `added`, `removed` and `modified` count them.
#[pyclass(module = "stratadb._stratadb", name = "Diff", frozen)]
#[derive(Debug)]
pub(crate) struct Diff {
    diff: Arc<BranchDiff>,
    a: String,
    b: String,
}

impl Diff {
    pub(crate) fn new(diff: BranchDiff, a: String, b: String) -> Diff {
        Diff {
            diff: Arc::new(diff),
            a,
            b,
        }
    }
}

#[pymethods]
impl Diff {
    /// Entries in `b` and not in `a`.
    #[getter]
    fn added(&self) -> usize {
        self.diff.counts().0
    }
    /// Entries in `a` and not in `b`.
    #[getter]
    fn removed(&self) -> usize {
        self.diff.counts().1
    }
    /// Entries in both with different values.
    #[getter]
    fn modified(&self) -> usize {
        self.diff.counts().2
    }
    /// The spaces that differ.
    #[getter]
    fn spaces(&self) -> Vec<String> {
        self.diff.spaces.iter().map(|s| s.space.clone()).collect()
    }
    fn __len__(&self) -> usize {
        let (a, r, m) = self.diff.counts();
        a + r + m
    }
    fn __bool__(&self) -> bool {
        !self.diff.is_empty()
    }
    fn __iter__(&self) -> DiffIter {
        DiffIter {
            diff: self.diff.clone(),
            pos: Mutex::new((0, 0, 0)),
        }
    }
    fn __repr__(&self) -> String {
        let (a, r, m) = self.diff.counts();
        format!(
            "<Diff {} -> {}: {a} added, {r} removed, {m} modified>",
            self.a, self.b
        )
    }
}

/// The iterator of a [`Diff`].
#[pyclass(module = "stratadb._stratadb", name = "DiffIterator", frozen)]
#[derive(Debug)]
pub(crate) struct DiffIter {
    diff: Arc<BranchDiff>,
    /// (space index, list: 0 added 1 removed 2 modified, entry index)
    pos: Mutex<(usize, usize, usize)>,
}

#[pymethods]
impl DiffIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyObject>> {
        let mut pos = lock(&self.pos);
        loop {
            let (s, l, i) = *pos;
            let Some(sd) = self.diff.spaces.get(s) else {
                return Ok(None);
            };
            let (name, list) = match l {
                0 => ("added", &sd.added),
                1 => ("removed", &sd.removed),
                2 => ("modified", &sd.modified),
                _ => {
                    *pos = (s + 1, 0, 0);
                    continue;
                }
            };
            match list.get(i) {
                Some(e) => {
                    *pos = (s, l, i + 1);
                    return diff_entry_to_py(py, &sd.space, name, e).map(Some);
                }
                None => *pos = (s, l + 1, 0),
            }
        }
    }
}

/// Entries a [`DiffStream`]'s producer may run ahead of the consumer.
const DIFF_AHEAD: usize = 256;

type DiffItem = Result<(strata_engine::EntryKey, Option<Value>, Option<Value>), Failure>;

/// A diff that streams: a producer thread walks the difference with bounded memory
/// (`Strata::diff_each`) and hands entries over a bounded channel, so neither side holds the whole
/// diff. Items are the same dicts as a [`Diff`]'s. Dropping the iterator stops the producer.
#[pyclass(module = "stratadb._stratadb", name = "DiffStream", frozen)]
#[derive(Debug)]
pub(crate) struct DiffStream {
    rx: Mutex<std::sync::mpsc::Receiver<DiffItem>>,
}

impl DiffStream {
    pub(crate) fn start(db: Strata, a: Rev, b: Rev) -> Result<DiffStream, Failure> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<DiffItem>(DIFF_AHEAD);
        std::thread::Builder::new()
            .name("stratadb-diff".into())
            .spawn(move || {
                let out = db.diff_each(&a, &b, |k, x, y| {
                    tx.send(Ok((k.clone(), x, y))).map_err(|_| {
                        strata_engine::Error::InvalidOperation(
                            "the diff iterator was dropped".into(),
                        )
                    })
                });
                if let Err(e) = out {
                    let _ = tx.send(Err(e.into()));
                }
            })
            .map_err(Failure::from)?;
        Ok(DiffStream { rx: Mutex::new(rx) })
    }

    /// Through a server: the server computes the diff and sends it in one answer (so it is bounded
    /// by the frame cap rather than streamed); its entries are converted as they are iterated.
    pub(crate) fn remote(diff: BranchDiff) -> DiffStream {
        let (tx, rx) = std::sync::mpsc::sync_channel::<DiffItem>(DIFF_AHEAD);
        let _ = std::thread::Builder::new()
            .name("stratadb-diff".into())
            .spawn(move || {
                for s in diff.spaces {
                    for e in s.added.into_iter().chain(s.removed).chain(s.modified) {
                        let k = strata_engine::EntryKey::new(s.space.as_str(), e.kind, e.key);
                        if tx.send(Ok((k, e.a, e.b))).is_err() {
                            return;
                        }
                    }
                }
            });
        DiffStream { rx: Mutex::new(rx) }
    }
}

#[pymethods]
impl DiffStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<PyObject>> {
        use std::sync::mpsc::TryRecvError;
        // With the GIL held, only what is ready (never blocks); else wait with the GIL released.
        let ready = match self.rx.try_lock() {
            Ok(rx) => match rx.try_recv() {
                Ok(item) => Some(Some(item)),
                Err(TryRecvError::Disconnected) => Some(None),
                Err(TryRecvError::Empty) => None,
            },
            Err(_) => None,
        };
        let item = match ready {
            Some(item) => item,
            None => detached(py, || Ok(lock(&self.rx).recv().ok()))?,
        };
        let Some(item) = item else { return Ok(None) };
        let (k, a, b) = item.map_err(|e| e.into_pyerr(py))?;
        let change = match (&a, &b) {
            (None, _) => "added",
            (_, None) => "removed",
            _ => "modified",
        };
        let e = strata_engine::DiffEntry {
            kind: k.kind,
            key: k.key,
            a,
            b,
        };
        diff_entry_to_py(py, &k.space, change, &e).map(Some)
    }
}
