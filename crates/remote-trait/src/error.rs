//! The remote error type.

/// What went wrong talking to a remote. Variants mean something to a caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The blob or cursor does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A put-if-absent found something already there.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A compare-and-swap lost: the cursor changed since it was read (or exists, for a create).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Credentials are missing, wrong or expired.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The credentials are valid but may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Stored bytes are damaged or not what they should be.
    #[error("corrupt: {0}")]
    Corrupt(String),
    /// A passing failure (network, timeout, throttling); retrying may succeed.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The request itself is wrong (a bad path or URL, an unsupported operation).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Anything else, with the backend's own message.
    #[error("{0}")]
    Other(String),
}

impl RemoteError {
    /// Whether the same operation may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RemoteError::Transient(_))
    }
}

impl From<std::io::Error> for RemoteError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match e.kind() {
            // A path through a file (`a/b` is a file, `a/b/c` is asked for) or a folder where a blob
            // was expected: for a remote, there is no such blob.
            K::NotFound | K::NotADirectory | K::IsADirectory => {
                RemoteError::NotFound(e.to_string())
            }
            K::AlreadyExists => RemoteError::AlreadyExists(e.to_string()),
            K::PermissionDenied => RemoteError::PermissionDenied(e.to_string()),
            K::Interrupted
            | K::TimedOut
            | K::WouldBlock
            | K::ConnectionReset
            | K::ConnectionAborted => RemoteError::Transient(e.to_string()),
            K::UnexpectedEof | K::InvalidData => RemoteError::Corrupt(e.to_string()),
            _ => RemoteError::Other(e.to_string()),
        }
    }
}

/// The remote result type.
pub type Result<T, E = RemoteError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_is_retryable() {
        let s = || "x".to_string();
        assert!(RemoteError::Transient(s()).is_retryable());
        for e in [
            RemoteError::NotFound(s()),
            RemoteError::AlreadyExists(s()),
            RemoteError::Conflict(s()),
            RemoteError::Unauthorized(s()),
            RemoteError::PermissionDenied(s()),
            RemoteError::Corrupt(s()),
            RemoteError::Invalid(s()),
            RemoteError::Other(s()),
        ] {
            assert!(!e.is_retryable(), "{e:?}");
        }
    }

    #[test]
    fn io_errors_map_to_meaningful_variants() {
        use std::io::{Error, ErrorKind as K};
        let conv = |k: K| RemoteError::from(Error::new(k, "boom"));
        assert!(matches!(conv(K::NotFound), RemoteError::NotFound(_)));
        assert!(matches!(conv(K::NotADirectory), RemoteError::NotFound(_)));
        assert!(matches!(conv(K::IsADirectory), RemoteError::NotFound(_)));
        assert!(matches!(
            conv(K::AlreadyExists),
            RemoteError::AlreadyExists(_)
        ));
        assert!(matches!(
            conv(K::PermissionDenied),
            RemoteError::PermissionDenied(_)
        ));
        assert!(matches!(conv(K::UnexpectedEof), RemoteError::Corrupt(_)));
        assert!(matches!(conv(K::Other), RemoteError::Other(_)));
        for k in [
            K::Interrupted,
            K::TimedOut,
            K::WouldBlock,
            K::ConnectionReset,
            K::ConnectionAborted,
        ] {
            assert!(conv(k).is_retryable(), "{k:?}");
        }
        assert_eq!(conv(K::NotFound).to_string(), "not found: boom");
    }
}
