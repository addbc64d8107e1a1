//! # strata-remote
//!
//! The storage abstraction that Strata's sync runs over. A remote offers two primitives:
//!
//! - **Immutable blobs**: put-if-absent, get, list by prefix, delete (for garbage collection). Bodies
//!   stream both ways, so a blob of any size never sits in memory whole.
//! - **Cursors with compare-and-swap**: a small named record read with an opaque [`CursorToken`]; a
//!   write succeeds only if the token still matches ([`RemoteError::Conflict`] otherwise), or, with no
//!   token, only if the cursor is absent.
//!
//! Backends implement the few required methods of [`Remote`]; conveniences live in [`RemoteExt`]. This
//! crate knows nothing of the Strata engine, and backends know nothing of it either: blobs are opaque
//! bytes, identical on every backend.
//!
//! ## Layout
//! - `error`: [`RemoteError`] with `is_retryable()`; each variant holds an [`ErrorDetail`] (a message
//!   and the cause, kept as the source), and [`report`] prints a whole chain once.
//! - `path`: [`RemotePath`], a validated relative path (no `..`, no absolute paths), and
//!   [`encode_segment`] for names with arbitrary characters.
//! - `memory`: [`InMemoryRemote`], the reference backend.
//! - `layout`: the portable layout of blobs and cursors as files or objects, shared by the folder
//!   and bucket backends.
//! - `faulty`: [`FaultyRemote`], a wrapper that injects failures ([`Failure`]), latency and damaged
//!   downloads ([`StreamFault`]) according to a [`FaultPlan`], and counts operations ([`OpCounts`]).
//! - `conformance` (feature `conformance`): `check_*` functions every backend's tests call, and
//!   `run_all` which runs them all.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod error;
mod faulty;
pub mod layout;
mod memory;
mod path;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::fmt::{Debug, Display};
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};

pub use error::{report, BoxError, ErrorDetail, RemoteError, Result};
pub use faulty::{FailWhen, Failure, FaultPlan, FaultyRemote, Op, OpCounts, StreamFault};
pub use memory::InMemoryRemote;
pub use path::{decode_segment, encode_segment, RemotePath, MAX_PATH_BYTES};

/// A stream of byte chunks: a blob body being uploaded or downloaded.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + 'static>>;

/// Metadata of a stored blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobMeta {
    /// Its path.
    pub path: RemotePath,
    /// Its size in bytes.
    pub size: u64,
    /// When it was written, in milliseconds since the Unix epoch (0 if the backend does not know).
    pub modified_millis: u64,
}

/// An opaque version of a cursor, returned by reads and writes and passed back to compare-and-swap.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CursorToken(pub String);

/// A cursor's current value and the token that identifies this version of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The cursor's bytes (small: a few KiB).
    pub value: Bytes,
    /// Pass this to [`Remote::write_cursor`] to replace exactly this version.
    pub token: CursorToken,
}

/// A storage backend for Strata sync. Object-safe: use it as `Arc<dyn Remote>` or `&dyn Remote`.
///
/// Paths of blobs and names of cursors live in separate namespaces: a blob and a cursor may share a
/// path, and neither shows up in the other's listing.
///
/// # Listing prefixes
/// [`list_blobs`](Remote::list_blobs) and [`list_cursors`](Remote::list_cursors) take a prefix that
/// matches **on segment boundaries**:
/// - `""` matches everything;
/// - `"a/b"` matches `a/b` itself and everything below it (`a/b/c`, `a/b/c/d`), but **not** `a/bc`,
///   `a/b.txt` or `a/b-c/d`;
/// - one trailing `/` is ignored (`"a/b/"` is `"a/b"`);
/// - any other prefix must be a valid [`RemotePath`], or the call fails with [`RemoteError::Invalid`]
///   (`"/"`, `"../x"`, `"a//b"`).
///
/// [`RemotePath::parse_prefix`] and [`RemotePath::matches_prefix`] implement exactly this rule.
/// Results come sorted by path in byte order (the order of [`RemotePath`]'s `Ord`, so `a/b-c` comes
/// before `a/b/c`), whatever order the backend finds them in.
///
/// # Portable layouts
/// A folder cannot be a file too, so a folder backend cannot hold blobs at both `a/b` and `a/b/c`.
/// Callers must not store a blob at a path that is a proper prefix (on segment boundaries) of another
/// blob's path, nor name a cursor with a proper prefix of another cursor's name; the conformance suite
/// never does, and a backend may fail such a write. (A blob and a cursor may share a path.)
///
/// # Conformance
/// Every backend runs the `conformance` module's checks (feature `conformance`) from its own tests:
/// `strata_remote::conformance::run_all(remote).await`.
#[async_trait]
pub trait Remote: Debug + Display + Send + Sync + 'static {
    /// Stores a blob at `path` only if nothing is there yet; fails with
    /// [`RemoteError::AlreadyExists`] otherwise (leaving the stored blob as it was). A blob becomes
    /// visible whole or not at all: a put whose body stream fails, or whose future is dropped, leaves
    /// nothing readable or listed at `path`, and a later put there can succeed. When several puts race
    /// at one path, exactly one succeeds. A deleted blob's path may be put again.
    async fn put_blob_if_absent(&self, path: &RemotePath, body: ByteStream) -> Result<()>;

    /// Streams a blob; [`RemoteError::NotFound`] if absent.
    async fn get_blob(&self, path: &RemotePath) -> Result<ByteStream>;

    /// Lists the blobs under `prefix` (see [Listing prefixes](Remote#listing-prefixes): segment
    /// boundaries, `""` lists everything), sorted by path. Never lists a blob whose put has not
    /// completed (no temporary files).
    async fn list_blobs(&self, prefix: &str) -> Result<Vec<BlobMeta>>;

    /// Deletes a blob. Deleting an absent blob is not an error.
    async fn delete_blob(&self, path: &RemotePath) -> Result<()>;

    /// Reads a cursor; `None` if it was never written.
    async fn read_cursor(&self, name: &RemotePath) -> Result<Option<Cursor>>;

    /// Writes a cursor. With `expected: None` it creates the cursor only if absent; with a token it
    /// replaces the cursor only if that token is still current. Otherwise it fails with
    /// [`RemoteError::Conflict`] and changes nothing (a token for an absent cursor conflicts too).
    ///
    /// Returns the new token, which equals the one [`read_cursor`](Remote::read_cursor) returns until
    /// the next write, and differs from the tokens of every earlier value that differs from this one. (A
    /// backend whose tokens are content hashes, like S3 ETags, may give back an old token when the same
    /// value is written again; that A-B-A case is indistinguishable from no change.) When several
    /// writers race with the same token, exactly one wins.
    async fn write_cursor(
        &self,
        name: &RemotePath,
        value: Bytes,
        expected: Option<&CursorToken>,
    ) -> Result<CursorToken>;

    /// Lists the names of the cursors under `prefix` (same rule as [`list_blobs`](Remote::list_blobs)),
    /// sorted.
    async fn list_cursors(&self, prefix: &str) -> Result<Vec<RemotePath>>;
}

/// Conveniences over [`Remote`], available on every backend.
#[async_trait]
pub trait RemoteExt: Remote {
    /// Puts a blob from bytes in memory (for small blobs).
    async fn put_bytes_if_absent(&self, path: &RemotePath, bytes: Bytes) -> Result<()> {
        self.put_blob_if_absent(
            path,
            Box::pin(futures::stream::once(async move { Ok(bytes) })),
        )
        .await
    }

    /// Reads a whole blob into memory (for small blobs; stream large ones with `get_blob`).
    async fn get_bytes(&self, path: &RemotePath) -> Result<Bytes> {
        let chunks: Vec<Bytes> = self.get_blob(path).await?.try_collect().await?;
        let mut out = bytes::BytesMut::with_capacity(chunks.iter().map(|c| c.len()).sum());
        for c in chunks {
            out.extend_from_slice(&c);
        }
        Ok(out.freeze())
    }

    /// Whether a blob exists.
    async fn blob_exists(&self, path: &RemotePath) -> Result<bool> {
        match self.get_blob(path).await {
            Ok(mut s) => {
                // Drop the body without reading it all.
                let _ = s.next().await;
                Ok(true)
            }
            Err(RemoteError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl<T: Remote + ?Sized> RemoteExt for T {}

/// Opens remotes from their URLs and options. `strata-remotes` implements it (one cargo feature per
/// backend), and sync takes one, so that the sync algorithm depends on no backend.
pub trait Connector: Debug + Send + Sync + 'static {
    /// Checks a URL and its options exactly as [`open`](Connector::open) would, without any I/O.
    fn check(&self, url: &str, options: &std::collections::BTreeMap<String, String>) -> Result<()>;

    /// Opens the remote a URL names. Opening changes nothing at the location: a folder remote is
    /// created by its first write, never by an open or a read.
    fn open(
        &self,
        url: &str,
        options: &std::collections::BTreeMap<String, String>,
    ) -> Result<std::sync::Arc<dyn Remote>>;
}
