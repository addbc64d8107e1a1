//! The sync error type.

use strata_engine::MergeConflict;
use strata_remote::RemoteError;

/// What went wrong in a sync operation. Each variant names its cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The push was refused: the remote moved since this database last synced. Pull, then push again.
    #[error("push rejected: {0}")]
    Rejected(String),
    /// A strict pull found conflicting keys. The mirror was updated (as `fetch` does) but the branch
    /// was not written.
    #[error("pull has {} conflicting key(s); the branch was not changed", .0.len())]
    Conflicts(Vec<MergeConflict>),
    /// The remote, or the branch on it, does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The location is reachable but does not hold a Strata remote.
    #[error("{0} is not a Strata remote (no strata-remote.json and no branches)")]
    NotAStrataRemote(String),
    /// A blob or cursor on the remote is damaged; nothing was applied.
    #[error("corrupt {what}: {detail}")]
    Corrupt {
        /// The blob path or cursor name.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The remote's history no longer contains what this database holds (it was reset or replaced).
    #[error("remote history diverged: {0}")]
    Diverged(String),
    /// A remote name, URL or option is wrong.
    #[error("{0}")]
    Config(String),
    /// The remote reported an error.
    #[error("remote error: {0}")]
    Remote(#[from] RemoteError),
    /// The local database reported an error.
    #[error(transparent)]
    Engine(#[from] strata_engine::Error),
    /// A local temporary file could not be written or read.
    #[error("local I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl SyncError {
    pub(crate) fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> SyncError {
        SyncError::Corrupt {
            what: what.into(),
            detail: detail.into(),
        }
    }

    /// Whether running the same operation again may succeed without changing anything
    /// (a transient remote failure or a busy local database).
    pub fn is_retryable(&self) -> bool {
        match self {
            SyncError::Remote(e) => e.is_retryable(),
            SyncError::Engine(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// The sync result type.
pub type Result<T, E = SyncError> = std::result::Result<T, E>;
