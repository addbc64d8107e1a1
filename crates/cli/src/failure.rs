//! Failures and the exit codes they map to (the table is in the top-level `--help`).

use strata_engine::Error;
use strata_sync::SyncError;

/// Anything not listed below.
pub const EXIT_ERROR: u8 = 1;
/// Bad arguments, or an invalid name, key or path (clap also uses 2).
pub const EXIT_USAGE: u8 = 2;
/// A branch, version, file or entry that the command needs does not exist.
pub const EXIT_NOT_FOUND: u8 = 3;
/// A strict merge found conflicting keys.
pub const EXIT_MERGE_CONFLICT: u8 = 4;
/// The database is busy, or a compare-and-swap did not match.
pub const EXIT_WRITE_CONFLICT: u8 = 5;
/// A damaged bundle or undecodable stored value, or a damaged blob or cursor on a remote.
pub const EXIT_CORRUPT: u8 = 6;
/// A push was rejected: the remote has changes this database has not pulled.
pub const EXIT_REJECTED: u8 = 7;

/// A failed command: the message printed as `error: <message>`, the process exit code, and for
/// `--json` a stable error code name and optional structured detail (a conflict list, per-branch
/// results).
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    /// The `error.code` name; `None` means the exit code's general name ([`code_name`]).
    pub name: Option<&'static str>,
    /// `error.detail` in the JSON envelope.
    pub detail: Option<serde_json::Value>,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            name: None,
            detail: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::new(EXIT_NOT_FOUND, message)
    }

    /// Sets the `error.code` name.
    pub fn named(mut self, name: &'static str) -> Failure {
        self.name = Some(name);
        self
    }

    /// Attaches structured detail for `--json`.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Failure {
        self.detail = Some(detail);
        self
    }

    /// The `error.code` name.
    pub fn code_name(&self) -> &'static str {
        self.name.unwrap_or_else(|| code_name(self.code))
    }
}

/// The general `error.code` name of an exit code.
pub fn code_name(exit: u8) -> &'static str {
    match exit {
        EXIT_USAGE => "usage",
        EXIT_NOT_FOUND => "not_found",
        EXIT_MERGE_CONFLICT => "merge_conflict",
        EXIT_WRITE_CONFLICT => "write_conflict",
        EXIT_CORRUPT => "corrupt",
        EXIT_REJECTED => "rejected",
        _ => "error",
    }
}

/// A more specific `error.code` name for some engine errors.
fn engine_name(e: &Error) -> Option<&'static str> {
    match e {
        Error::NotADatabase(_) => Some("not_a_database"),
        Error::PastVersion(_) => Some("past_version"),
        Error::BranchNotFound(_) => Some("branch_not_found"),
        Error::VersionNotFound { .. } => Some("version_not_found"),
        Error::BranchExists(_) => Some("branch_exists"),
        Error::InvalidName { .. } => Some("invalid_name"),
        _ => None,
    }
}

/// The exit code for an engine error.
pub fn exit_code(e: &Error) -> u8 {
    match e {
        Error::InvalidName { .. } | Error::PastVersion(_) => EXIT_USAGE,
        Error::BranchNotFound(_) | Error::VersionNotFound { .. } | Error::NotADatabase(_) => {
            EXIT_NOT_FOUND
        }
        Error::MergeConflicts(_) => EXIT_MERGE_CONFLICT,
        Error::Corrupt { .. } | Error::Decode(_) => EXIT_CORRUPT,
        Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
        e if e.is_retryable() => EXIT_WRITE_CONFLICT,
        _ => EXIT_ERROR,
    }
}

/// The exit code for a sync error.
pub fn sync_exit_code(e: &SyncError) -> u8 {
    use strata_sync::SyncError as S;
    match e {
        S::Rejected(_) => EXIT_REJECTED,
        S::Conflicts(_) => EXIT_MERGE_CONFLICT,
        S::NotFound(_) | S::NotAStrataRemote(_) => EXIT_NOT_FOUND,
        S::Corrupt { .. } => EXIT_CORRUPT,
        S::Config(_) => EXIT_USAGE,
        S::Engine(e) => exit_code(e),
        S::Remote(r) => {
            use strata_remote::RemoteError as R;
            match r {
                R::NotFound(_) => EXIT_NOT_FOUND,
                R::Corrupt(_) => EXIT_CORRUPT,
                R::Invalid(_) => EXIT_USAGE,
                _ => EXIT_ERROR,
            }
        }
        _ => EXIT_ERROR,
    }
}

impl From<SyncError> for Failure {
    fn from(e: SyncError) -> Failure {
        // The whole cause chain (e.g. the OS error under a remote I/O failure), each text once.
        let mut f = Failure::new(sync_exit_code(&e), strata_remote::report(&e));
        f.name = match &e {
            SyncError::Engine(inner) => engine_name(inner),
            SyncError::NotAStrataRemote(_) => Some("not_a_remote"),
            _ => None,
        };
        f
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let message = if e.is_read_only() {
            format!("{e}: this database cannot be written here (no write permission on its folder or files); reads still work")
        } else {
            e.to_string()
        };
        let mut f = Failure::new(exit_code(&e), message);
        f.name = if e.is_read_only() {
            Some("read_only")
        } else {
            engine_name(&e)
        };
        f
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::from(Error::Io(e))
    }
}
