//! The remote error type.
//!
//! A [`RemoteError`] says what went wrong in the remote's own words (its [`ErrorDetail`]'s message)
//! and keeps the error that caused it, if any, as its [`source`](std::error::Error::source). Each
//! thing is said once: `Display` prints the variant's label and the message, never the cause's text;
//! [`report`] joins the whole chain for a person to read, without repeating what is already there.

use std::error::Error as StdError;
use std::fmt;
use std::ops::Deref;

/// An error that can cross threads: the cause kept in an [`ErrorDetail`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The payload of every [`RemoteError`] variant: a message and, optionally, the error that caused it.
///
/// The message never contains the cause's text (that is reachable through
/// [`RemoteError`]'s `source()`). It dereferences to the message, so `detail.contains("x")` reads it.
#[derive(Default)]
pub struct ErrorDetail {
    message: String,
    source: Option<BoxError>,
}

impl ErrorDetail {
    /// A detail with a message and no cause.
    pub fn new(message: impl Into<String>) -> ErrorDetail {
        ErrorDetail {
            message: message.into(),
            source: None,
        }
    }

    /// A detail with a message and the error that caused it.
    pub fn with_source(message: impl Into<String>, source: impl Into<BoxError>) -> ErrorDetail {
        ErrorDetail {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// The message, without the cause's text.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error that caused this one, if any.
    pub fn source(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl Deref for ErrorDetail {
    type Target = str;

    fn deref(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            None => fmt::Debug::fmt(&self.message, f),
            Some(s) => f
                .debug_struct("ErrorDetail")
                .field("message", &self.message)
                .field("source", s)
                .finish(),
        }
    }
}

impl From<String> for ErrorDetail {
    fn from(message: String) -> ErrorDetail {
        ErrorDetail::new(message)
    }
}

impl From<&str> for ErrorDetail {
    fn from(message: &str) -> ErrorDetail {
        ErrorDetail::new(message)
    }
}

/// What went wrong talking to a remote. Variants mean something to a caller; each carries an
/// [`ErrorDetail`] (build one from a `String` or `&str` with `.into()`, or use the constructors below to
/// keep the cause).
#[derive(Debug)]
#[non_exhaustive]
pub enum RemoteError {
    /// The blob or cursor does not exist.
    NotFound(ErrorDetail),
    /// A put-if-absent found something already there.
    AlreadyExists(ErrorDetail),
    /// A compare-and-swap lost: the cursor changed since it was read (or exists, for a create).
    Conflict(ErrorDetail),
    /// Credentials are missing, wrong or expired.
    Unauthorized(ErrorDetail),
    /// The credentials are valid but may not do this.
    PermissionDenied(ErrorDetail),
    /// Stored bytes are damaged or not what they should be.
    Corrupt(ErrorDetail),
    /// A passing failure (network, timeout, throttling); retrying may succeed.
    Transient(ErrorDetail),
    /// The request itself is wrong (a bad path or URL, an unsupported operation).
    Invalid(ErrorDetail),
    /// Anything else, with the backend's own message.
    Other(ErrorDetail),
}

impl RemoteError {
    /// Whether the same operation may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RemoteError::Transient(_))
    }

    /// A [`Transient`](RemoteError::Transient) error caused by `source`.
    pub fn transient(message: impl Into<String>, source: impl Into<BoxError>) -> RemoteError {
        RemoteError::Transient(ErrorDetail::with_source(message, source))
    }

    /// An [`Other`](RemoteError::Other) error caused by `source`.
    pub fn other(message: impl Into<String>, source: impl Into<BoxError>) -> RemoteError {
        RemoteError::Other(ErrorDetail::with_source(message, source))
    }

    /// The error for a failed I/O operation: the variant follows the error's kind, the message is
    /// `context` (what was being done), and the I/O error is kept as the source.
    pub fn io(context: impl Into<String>, e: std::io::Error) -> RemoteError {
        use std::io::ErrorKind as K;
        let variant: fn(ErrorDetail) -> RemoteError = match e.kind() {
            // A path through a file (`a/b` is a file, `a/b/c` is asked for) or a folder where a blob
            // was expected: for a remote, there is no such blob.
            K::NotFound | K::NotADirectory | K::IsADirectory => RemoteError::NotFound,
            K::AlreadyExists => RemoteError::AlreadyExists,
            K::PermissionDenied => RemoteError::PermissionDenied,
            K::Interrupted
            | K::TimedOut
            | K::WouldBlock
            | K::ConnectionReset
            | K::ConnectionAborted => RemoteError::Transient,
            K::UnexpectedEof | K::InvalidData => RemoteError::Corrupt,
            _ => RemoteError::Other,
        };
        variant(ErrorDetail::with_source(context, e))
    }

    /// Replaces the cause kept as this error's source.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> RemoteError {
        self.detail_mut().source = Some(source.into());
        self
    }

    /// The same error with its message rewritten by `f` (to add context, say); the variant and the
    /// source stay.
    pub fn map_message(mut self, f: impl FnOnce(String) -> String) -> RemoteError {
        let d = self.detail_mut();
        d.message = f(std::mem::take(&mut d.message));
        self
    }

    /// The variant's payload.
    pub fn detail(&self) -> &ErrorDetail {
        let (_, d) = self.parts();
        d
    }

    /// The message, without the variant's label and without the cause's text.
    pub fn message(&self) -> &str {
        &self.detail().message
    }

    /// The whole chain on one line, for a person: this error, then each cause, each said once.
    pub fn report(&self) -> String {
        report(self)
    }

    fn parts(&self) -> (&'static str, &ErrorDetail) {
        match self {
            RemoteError::NotFound(d) => ("not found", d),
            RemoteError::AlreadyExists(d) => ("already exists", d),
            RemoteError::Conflict(d) => ("conflict", d),
            RemoteError::Unauthorized(d) => ("unauthorized", d),
            RemoteError::PermissionDenied(d) => ("permission denied", d),
            RemoteError::Corrupt(d) => ("corrupt", d),
            RemoteError::Transient(d) => ("transient failure", d),
            RemoteError::Invalid(d) => ("invalid request", d),
            RemoteError::Other(d) => ("", d),
        }
    }

    fn detail_mut(&mut self) -> &mut ErrorDetail {
        match self {
            RemoteError::NotFound(d)
            | RemoteError::AlreadyExists(d)
            | RemoteError::Conflict(d)
            | RemoteError::Unauthorized(d)
            | RemoteError::PermissionDenied(d)
            | RemoteError::Corrupt(d)
            | RemoteError::Transient(d)
            | RemoteError::Invalid(d)
            | RemoteError::Other(d) => d,
        }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (label, d) = self.parts();
        match (label.is_empty(), d.message.is_empty()) {
            (false, false) => write!(f, "{label}: {}", d.message),
            (false, true) => f.write_str(label),
            (true, false) => f.write_str(&d.message),
            (true, true) => f.write_str("remote error"),
        }
    }
}

impl StdError for RemoteError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.detail()
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Keeps the I/O error as the source; the message says only that it was local I/O (see
/// [`RemoteError::io`] to say what was being done).
impl From<std::io::Error> for RemoteError {
    fn from(e: std::io::Error) -> Self {
        RemoteError::io("I/O error", e)
    }
}

/// The error and its causes on one line, joined by `": "`, each said once: a cause whose text ends
/// with `": "` or `" - "` and its own cause's text (a common habit) contributes only its own part,
/// and a text already present is left out. Line breaks and runs of spaces become one space.
pub fn report(error: &(dyn StdError + 'static)) -> String {
    let mut texts = Vec::new();
    let mut cur = Some(error);
    while let Some(e) = cur {
        texts.push(
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        );
        cur = e.source();
    }
    let mut out = String::new();
    for (i, text) in texts.iter().enumerate() {
        let mut own = text.as_str();
        if let Some(next) = texts.get(i + 1).filter(|n| !n.is_empty()) {
            if let Some(head) = own.strip_suffix(next.as_str()) {
                if let Some(head) = head.strip_suffix(": ").or_else(|| head.strip_suffix(" - ")) {
                    own = head;
                }
            }
        }
        let own = own.trim();
        if own.is_empty() || out.contains(own) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(own);
    }
    out
}

/// The remote result type.
pub type Result<T, E = RemoteError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind as K};

    fn all(s: &str) -> Vec<RemoteError> {
        vec![
            RemoteError::NotFound(s.into()),
            RemoteError::AlreadyExists(s.into()),
            RemoteError::Conflict(s.into()),
            RemoteError::Unauthorized(s.into()),
            RemoteError::PermissionDenied(s.into()),
            RemoteError::Corrupt(s.into()),
            RemoteError::Transient(s.into()),
            RemoteError::Invalid(s.into()),
            RemoteError::Other(s.into()),
        ]
    }

    #[test]
    fn only_transient_is_retryable() {
        for e in all("x") {
            assert_eq!(
                e.is_retryable(),
                matches!(e, RemoteError::Transient(_)),
                "{e:?}"
            );
        }
        assert!(RemoteError::transient("x", Error::from(K::TimedOut)).is_retryable());
        assert!(!RemoteError::other("x", Error::from(K::TimedOut)).is_retryable());
    }

    #[test]
    fn io_errors_map_to_meaningful_variants_and_keep_the_source() {
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
        let e = conv(K::NotFound);
        let source = StdError::source(&e).expect("the I/O error is the source");
        let io = source.downcast_ref::<Error>().expect("an io::Error");
        assert_eq!(io.kind(), K::NotFound);
        assert_eq!(e.to_string(), "not found: I/O error");
        assert_eq!(e.report(), "not found: I/O error: boom");

        let e = RemoteError::io("reading blobs/a", Error::new(K::PermissionDenied, "nope"));
        assert!(matches!(e, RemoteError::PermissionDenied(_)));
        assert_eq!(e.message(), "reading blobs/a");
        assert_eq!(e.report(), "permission denied: reading blobs/a: nope");
    }

    /// A cause that prints its own cause, as many error types do (`thiserror` with `{0}`).
    #[derive(Debug)]
    struct Wrapper(Error);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "corrupt blob X 0: {}", self.0)
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn display_says_each_thing_once() {
        let cause = Error::new(K::InvalidData, "checksum mismatch at byte 12");
        let e = RemoteError::Corrupt(ErrorDetail::with_source("blob X", Wrapper(cause)));
        // Display: the label and the message, never the cause's text.
        assert_eq!(e.to_string(), "corrupt: blob X");
        assert_eq!(e.detail().to_string(), "blob X");
        assert!(!e.to_string().contains("checksum"));
        // The cause is reachable, and the report says each part once.
        let src = StdError::source(&e).unwrap();
        assert!(src.downcast_ref::<Wrapper>().is_some());
        let r = e.report();
        assert_eq!(
            r,
            "corrupt: blob X: corrupt blob X 0: checksum mismatch at byte 12"
        );
        assert_eq!(r.matches("checksum mismatch").count(), 1, "{r}");

        // A report of a chain whose parent already contains a later part skips that part.
        let e = RemoteError::other("upload failed", "upload failed");
        assert_eq!(e.report(), "upload failed");

        // Empty message: the label alone.
        assert_eq!(
            RemoteError::Transient("".into()).to_string(),
            "transient failure"
        );
        assert_eq!(RemoteError::Other("".into()).to_string(), "remote error");
        assert_eq!(RemoteError::Other("boom".into()).to_string(), "boom");
    }

    #[test]
    fn details_read_like_their_message() {
        let e = RemoteError::NotFound("blob a/b".into());
        match &e {
            RemoteError::NotFound(m) => {
                assert!(m.contains("a/b"));
                assert_eq!(&**m, "blob a/b");
                assert_eq!(format!("{m}"), "blob a/b");
            }
            other => panic!("{other:?}"),
        }
        assert!(StdError::source(&e).is_none());
        let e = e.with_source(Error::from(K::NotFound));
        assert!(StdError::source(&e).is_some());
        assert_eq!(e.to_string(), "not found: blob a/b");
        let e = e.map_message(|m| format!("remote x: {m}"));
        assert!(matches!(e, RemoteError::NotFound(_)));
        assert_eq!(e.to_string(), "not found: remote x: blob a/b");
        assert!(StdError::source(&e).is_some(), "the source stays");
    }
}
