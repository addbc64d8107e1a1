//! The engine's error type.

use crate::types::MergeConflict;

/// Everything that can go wrong in the engine. Each variant names what was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name (branch, space, key, path) is not acceptable.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// What kind of name: "branch name", "space name", "key", …
        what: &'static str,
        /// The offending name.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// The branch does not exist.
    #[error("branch {0:?} not found")]
    BranchNotFound(String),
    /// A branch with this name already exists.
    #[error("branch {0:?} already exists")]
    BranchExists(String),
    /// The version does not exist on the branch.
    #[error("branch {branch:?} has no version {version} (head is {head})")]
    VersionNotFound {
        /// The branch.
        branch: String,
        /// The requested version.
        version: u64,
        /// The branch's current head version.
        head: u64,
    },
    /// Another writer holds the database, or a concurrent change invalidated this operation.
    #[error("write conflict: {0}")]
    Conflict(String),
    /// A replication step's precondition failed: the branch head is not the one the caller saw
    /// (another writer committed in between). Nothing was written; read again and decide again.
    #[error("branch {branch:?} moved: expected head {expected}, found {}", match .actual { Some(v) => v.to_string(), None => "no branch".to_string() })]
    HeadMoved {
        /// The branch.
        branch: String,
        /// The head the caller expected.
        expected: u64,
        /// The head found (`None`: the branch does not exist).
        actual: Option<u64>,
    },
    /// A strict merge found conflicting keys; nothing was written.
    #[error("merge has {} conflicting key(s); nothing was written", .0.len())]
    MergeConflicts(Vec<MergeConflict>),
    /// The operation does not apply to the stored value (e.g. a JSON path into a string).
    #[error("{0}")]
    InvalidOperation(String),
    /// A bundle or change stream is damaged, truncated or of an unsupported version.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// What was being read ("bundle", "branchlog record 17", …).
        what: String,
        /// What was found wrong.
        detail: String,
    },
    /// A stored value could not be decoded.
    #[error("cannot decode stored value: {0}")]
    Decode(String),
    /// The database on disk was written by a newer, incompatible build.
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// The schema version on disk.
        found: i64,
        /// The newest schema version this build reads.
        supported: i64,
    },
    /// The folder holds no Strata database (and the caller asked not to create one).
    #[error("not a Strata database: {0} (run strata init)")]
    NotADatabase(std::path::PathBuf),
    /// A write was aimed at a past version (`branch@version`); only a branch head takes writes.
    #[error("{0} is a past version and cannot be written; write to the branch head (drop the @VERSION) or fork a branch from it")]
    PastVersion(String),
    /// SQLite reported an error.
    #[error("storage error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file could not be read or written.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn invalid(what: &'static str, name: &str, reason: impl Into<String>) -> Error {
        Error::InvalidName {
            what,
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Error {
        Error::Corrupt {
            what: what.into(),
            detail: detail.into(),
        }
    }

    /// Whether SQLite refused a write because the database cannot be written by this process (its
    /// folder or files are read-only, or it was opened with [`crate::Strata::open_read_only`]).
    pub fn is_read_only(&self) -> bool {
        matches!(self, Error::Sqlite(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly))
    }

    /// Whether retrying the same operation later may succeed (a busy database or a lost race).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Conflict(_) | Error::HeadMoved { .. } => true,
            Error::Sqlite(e) => is_busy(e),
            _ => false,
        }
    }
}

pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Turns SQLite's busy error into a [`Error::Conflict`] that says what happened.
pub(crate) fn map_busy(e: rusqlite::Error) -> Error {
    if is_busy(&e) {
        Error::Conflict("another writer holds the database lock; retry later".into())
    } else {
        Error::Sqlite(e)
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
