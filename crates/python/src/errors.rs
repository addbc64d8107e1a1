//! The exception hierarchy and the mapping of engine and sync errors onto it.
//!
//! Every error raised by the module is a `StrataError` subclass with a `retryable` attribute; none is a
//! bare `RuntimeError`.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyList;
use strata_engine::Error as E;
use strata_remote::RemoteError;
use strata_sync::SyncError as S;

use crate::convert::conflict_to_py;

create_exception!(
    _stratadb,
    StrataError,
    PyException,
    "Base class of every error Strata raises. `retryable` says whether the same call may succeed later."
);
create_exception!(
    _stratadb,
    NotFound,
    StrataError,
    "A branch, version, remote or remote branch does not exist."
);
create_exception!(
    _stratadb,
    MergeConflict,
    StrataError,
    "A strict merge or pull found keys changed on both sides; nothing was written. `conflicts` lists them."
);
create_exception!(
    _stratadb,
    PushRejected,
    StrataError,
    "The remote has changes this database has not pulled: pull, then push again. `remote_version` is the remote's version."
);
create_exception!(
    _stratadb,
    Corrupt,
    StrataError,
    "Stored data, a bundle or a remote blob is damaged; nothing was applied."
);
create_exception!(
    _stratadb,
    Busy,
    StrataError,
    "Another writer holds the database, or a branch moved during the operation: retry."
);
create_exception!(
    _stratadb,
    Unauthorized,
    StrataError,
    "The remote refused the credentials: missing, wrong or expired (a hub's API key comes from `token=` or STRATA_TOKEN; a bucket's from the cloud's own variables)."
);
create_exception!(
    _stratadb,
    PermissionDenied,
    StrataError,
    "The credentials are valid but may not do this (e.g. a hub key that is not a writing member of the project)."
);
create_exception!(
    _stratadb,
    InvalidArgument,
    StrataError,
    "A name, value, option or argument is not acceptable; the message says which and why."
);

/// What went wrong in a call, before it becomes a Python exception (built without the GIL).
#[derive(Debug)]
pub(crate) enum Failure {
    Engine(E),
    Sync(S),
    /// A push was rejected; the remote's version when it could be read.
    Rejected(S, Option<u64>),
    Invalid(String),
    Other(String),
    /// From a `stratadb-server` (or the client's own checks).
    Client(strata_client::Error),
}

impl From<strata_client::Error> for Failure {
    fn from(e: strata_client::Error) -> Failure {
        Failure::Client(e)
    }
}

/// The exception class of a client error, matching what the engine's error of the same code raises.
fn client_kind(e: &strata_client::Error) -> fn(String) -> PyErr {
    use strata_client::ErrorCode as C;
    match e.code() {
        Some(C::BranchNotFound | C::VersionNotFound) => NotFound::new_err,
        Some(C::InvalidName | C::BranchExists | C::InvalidOperation | C::InvalidConfig) => {
            InvalidArgument::new_err
        }
        Some(C::Conflict | C::HeadMoved) => Busy::new_err,
        Some(C::MergeConflicts) => MergeConflict::new_err,
        Some(C::Corrupt) => Corrupt::new_err,
        Some(C::PushRejected) => PushRejected::new_err,
        Some(C::NotFound | C::NotARemote) => NotFound::new_err,
        _ => StrataError::new_err,
    }
}

impl From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Engine(e)
    }
}

impl From<S> for Failure {
    fn from(e: S) -> Failure {
        Failure::Sync(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Other(format!("I/O error: {e}"))
    }
}

/// The error's message followed by each cause that it does not already say.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !msg.contains(&s) {
            msg.push_str(": ");
            msg.push_str(&s);
        }
        cur = c.source();
    }
    msg
}

fn engine_kind(e: &E) -> fn(String) -> PyErr {
    match e {
        E::BranchNotFound(_) | E::VersionNotFound { .. } => NotFound::new_err,
        E::InvalidName { .. } | E::BranchExists(_) | E::InvalidOperation(_) => {
            InvalidArgument::new_err
        }
        E::Conflict(_) | E::HeadMoved { .. } => Busy::new_err,
        E::MergeConflicts(_) => MergeConflict::new_err,
        E::Corrupt { .. } | E::Decode(_) => Corrupt::new_err,
        e if e.is_retryable() => Busy::new_err,
        _ => StrataError::new_err,
    }
}

fn sync_kind(e: &S) -> fn(String) -> PyErr {
    match e {
        S::Rejected(_) => PushRejected::new_err,
        S::Conflicts(_) => MergeConflict::new_err,
        S::NotFound(_) | S::NotAStrataRemote(_) => NotFound::new_err,
        S::Corrupt { .. } => Corrupt::new_err,
        S::Config(_) => InvalidArgument::new_err,
        S::Engine(e) => engine_kind(e),
        S::Remote(r) => match r {
            RemoteError::NotFound(_) => NotFound::new_err,
            RemoteError::Corrupt(_) => Corrupt::new_err,
            RemoteError::Invalid(_) => InvalidArgument::new_err,
            RemoteError::Unauthorized(_) => Unauthorized::new_err,
            RemoteError::PermissionDenied(_) => PermissionDenied::new_err,
            _ => StrataError::new_err,
        },
        _ => StrataError::new_err,
    }
}

/// What to do about a hub's refusal, in Python's terms (the hub's own message speaks HTTP).
const HUB_TOKEN_HINT: &str =
    "to give the hub's API key in Python: remote_add(name, url, token=...), \
     stratadb.clone(url, path, token=...) or the STRATA_TOKEN environment variable";

/// `msg`, plus how to pass a hub's API key when a hub (an `http(s)://` remote) refused the caller.
fn with_hint(e: &S, msg: String) -> String {
    let hub = msg.contains("http://") || msg.contains("https://");
    match e {
        S::Remote(RemoteError::Unauthorized(_)) if hub => format!("{msg} ({HUB_TOKEN_HINT})"),
        _ => msg,
    }
}

fn conflicts_of(f: &Failure) -> Option<&[strata_engine::MergeConflict]> {
    match f {
        Failure::Engine(E::MergeConflicts(c)) => Some(c),
        Failure::Sync(S::Conflicts(c)) => Some(c),
        Failure::Sync(S::Engine(E::MergeConflicts(c))) => Some(c),
        Failure::Client(e) if !e.conflicts().is_empty() => Some(e.conflicts()),
        _ => None,
    }
}

impl Failure {
    /// The Python exception, with `retryable` and (where they apply) `conflicts` and `remote_version`.
    pub(crate) fn into_pyerr(self, py: Python<'_>) -> PyErr {
        let (err, retryable) = match &self {
            Failure::Engine(e) => (engine_kind(e)(chain(e)), e.is_retryable()),
            Failure::Sync(e) => (sync_kind(e)(with_hint(e, chain(e))), e.is_retryable()),
            Failure::Rejected(e, _) => (PushRejected::new_err(chain(e)), false),
            Failure::Invalid(m) => (InvalidArgument::new_err(m.clone()), false),
            Failure::Other(m) => (StrataError::new_err(m.clone()), false),
            Failure::Client(e) => {
                use strata_client::ErrorCode as C;
                let retryable = matches!(e.code(), Some(C::Conflict | C::HeadMoved));
                (client_kind(e)(e.to_string()), retryable)
            }
        };
        let value = err.value(py);
        let _ = value.setattr("retryable", retryable);
        if let Some(list) = conflicts_of(&self) {
            let items: Vec<PyObject> = list
                .iter()
                .filter_map(|c| conflict_to_py(py, c).ok())
                .collect();
            if let Ok(l) = PyList::new(py, items) {
                let _ = value.setattr("conflicts", l);
            }
        }
        if let Failure::Rejected(_, v) = &self {
            let _ = value.setattr("remote_version", *v);
        }
        if let Failure::Client(e) = &self {
            if e.code() == Some(strata_client::ErrorCode::PushRejected) {
                // The server's answer does not carry the remote's version.
                let _ = value.setattr("remote_version", py.None());
            }
        }
        err
    }
}

/// Runs `f` with the GIL released and turns its failure into the Python exception.
pub(crate) fn detached<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<T, Failure> + Send,
) -> PyResult<T> {
    py.allow_threads(f).map_err(|e| e.into_pyerr(py))
}

/// Shorthand for an `InvalidArgument` failure.
pub(crate) fn invalid(msg: impl Into<String>) -> Failure {
    Failure::Invalid(msg.into())
}

/// Registers the exception classes on the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("StrataError", py.get_type::<StrataError>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("MergeConflict", py.get_type::<MergeConflict>())?;
    m.add("PushRejected", py.get_type::<PushRejected>())?;
    m.add("Corrupt", py.get_type::<Corrupt>())?;
    m.add("Busy", py.get_type::<Busy>())?;
    m.add("InvalidArgument", py.get_type::<InvalidArgument>())?;
    m.add("Unauthorized", py.get_type::<Unauthorized>())?;
    m.add("PermissionDenied", py.get_type::<PermissionDenied>())?;
    Ok(())
}
