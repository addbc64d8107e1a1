//! [`InMemoryRemote`]: the reference backend. Everything lives in memory behind one mutex, and every
//! rule of the [`Remote`] contract is implemented in the plainest possible way, so other backends can be
//! compared with it.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;

use crate::{BlobMeta, ByteStream, Cursor, CursorToken, Remote, RemoteError, RemotePath, Result};

/// Chunk size of the streams `get_blob` returns (so readers see a real multi-chunk stream).
const GET_CHUNK: usize = 64 * 1024;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A remote held in memory: the reference implementation of [`Remote`].
///
/// Cloning shares the state (it is an `Arc` inside), so a test can hand clones to tasks and still
/// look at the same blobs. Displays as `memory://<id>`, with an id unique in the process.
#[derive(Clone)]
pub struct InMemoryRemote {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    blobs: BTreeMap<String, StoredBlob>,
    cursors: BTreeMap<String, StoredCursor>,
    /// Source of cursor tokens: never reused, so a stale token can never match again.
    next_token: u64,
}

struct StoredBlob {
    bytes: Bytes,
    modified_millis: u64,
}

struct StoredCursor {
    value: Bytes,
    token: u64,
}

impl InMemoryRemote {
    /// An empty remote.
    pub fn new() -> InMemoryRemote {
        InMemoryRemote {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                state: Mutex::default(),
            }),
        }
    }

    /// How many blobs it holds.
    pub fn blob_count(&self) -> usize {
        self.state().blobs.len()
    }

    /// The total size of the blobs it holds, in bytes.
    pub fn blob_bytes(&self) -> u64 {
        self.state()
            .blobs
            .values()
            .map(|b| b.bytes.len() as u64)
            .sum()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated (every update is a single
        // insert), so a poisoned lock is still consistent.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for InMemoryRemote {
    fn default() -> Self {
        InMemoryRemote::new()
    }
}

impl fmt::Display for InMemoryRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "memory://{}", self.inner.id)
    }
}

impl fmt::Debug for InMemoryRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state();
        f.debug_struct("InMemoryRemote")
            .field("id", &self.inner.id)
            .field("blobs", &s.blobs.len())
            .field("cursors", &s.cursors.len())
            .finish()
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The entries of `map` listed under `prefix` (segment-boundary rule of [`RemotePath::starts_with`]), in
/// key order.
fn under<'a, V>(map: &'a BTreeMap<String, V>, prefix: &str) -> Result<Vec<(RemotePath, &'a V)>> {
    let prefix = RemotePath::parse_prefix(prefix)?;
    let start = prefix.as_ref().map_or("", |p| p.as_str());
    let mut out = Vec::new();
    // Every key under the prefix starts with its string, and those keys are contiguous in the map.
    for (k, v) in map
        .range::<str, _>((Bound::Included(start), Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(start))
    {
        let path = RemotePath::parse(k).expect("stored keys are valid paths");
        if path.matches_prefix(prefix.as_ref()) {
            out.push((path, v));
        }
    }
    Ok(out)
}

#[async_trait]
impl Remote for InMemoryRemote {
    async fn put_blob_if_absent(&self, path: &RemotePath, body: ByteStream) -> Result<()> {
        let exists = || RemoteError::AlreadyExists(format!("{self}/{path}").into());
        // Fail early without reading the body; the check is repeated below, where it counts.
        if self.state().blobs.contains_key(path.as_str()) {
            return Err(exists());
        }
        // Collect the whole body first: a stream that fails or is dropped stores nothing.
        let bytes = body
            .try_fold(BytesMut::new(), |mut acc, chunk| async move {
                acc.extend_from_slice(&chunk);
                Ok(acc)
            })
            .await?
            .freeze();
        let mut state = self.state();
        if state.blobs.contains_key(path.as_str()) {
            return Err(exists());
        }
        state.blobs.insert(
            path.as_str().to_string(),
            StoredBlob {
                bytes,
                modified_millis: now_millis(),
            },
        );
        Ok(())
    }

    async fn get_blob(&self, path: &RemotePath) -> Result<ByteStream> {
        let bytes = match self.state().blobs.get(path.as_str()) {
            Some(b) => b.bytes.clone(),
            None => return Err(RemoteError::NotFound(format!("{self}/{path}").into())),
        };
        // Slices of `Bytes` share the buffer: no copy.
        let chunks: Vec<Result<Bytes>> = (0..bytes.len())
            .step_by(GET_CHUNK)
            .map(|i| Ok(bytes.slice(i..bytes.len().min(i + GET_CHUNK))))
            .collect();
        Ok(Box::pin(futures::stream::iter(chunks)))
    }

    async fn list_blobs(&self, prefix: &str) -> Result<Vec<BlobMeta>> {
        let state = self.state();
        Ok(under(&state.blobs, prefix)?
            .into_iter()
            .map(|(path, b)| BlobMeta {
                path,
                size: b.bytes.len() as u64,
                modified_millis: b.modified_millis,
            })
            .collect())
    }

    async fn delete_blob(&self, path: &RemotePath) -> Result<()> {
        self.state().blobs.remove(path.as_str());
        Ok(())
    }

    async fn read_cursor(&self, name: &RemotePath) -> Result<Option<Cursor>> {
        Ok(self.state().cursors.get(name.as_str()).map(|c| Cursor {
            value: c.value.clone(),
            token: CursorToken(c.token.to_string()),
        }))
    }

    async fn write_cursor(
        &self,
        name: &RemotePath,
        value: Bytes,
        expected: Option<&CursorToken>,
    ) -> Result<CursorToken> {
        let mut state = self.state();
        let current = state
            .cursors
            .get(name.as_str())
            .map(|c| c.token.to_string());
        match (current.as_deref(), expected) {
            (None, None) => {}
            (Some(cur), Some(exp)) if cur == exp.0 => {}
            (Some(_), None) => {
                return Err(RemoteError::Conflict(
                    format!("{self} cursor {name}: already exists").into(),
                ))
            }
            (None, Some(_)) => {
                return Err(RemoteError::Conflict(
                    format!("{self} cursor {name}: does not exist").into(),
                ))
            }
            (Some(_), Some(_)) => {
                return Err(RemoteError::Conflict(
                    format!("{self} cursor {name}: changed").into(),
                ))
            }
        }
        state.next_token += 1;
        let token = state.next_token;
        state
            .cursors
            .insert(name.as_str().to_string(), StoredCursor { value, token });
        Ok(CursorToken(token.to_string()))
    }

    async fn list_cursors(&self, prefix: &str) -> Result<Vec<RemotePath>> {
        let state = self.state();
        Ok(under(&state.cursors, prefix)?
            .into_iter()
            .map(|(path, _)| path)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RemoteExt;

    fn p(s: &str) -> RemotePath {
        RemotePath::parse(s).unwrap()
    }

    #[tokio::test]
    async fn clones_share_state_and_ids_differ() {
        let a = InMemoryRemote::new();
        let b = a.clone();
        a.put_bytes_if_absent(&p("x"), Bytes::from_static(b"1"))
            .await
            .unwrap();
        assert_eq!(
            b.get_bytes(&p("x")).await.unwrap(),
            Bytes::from_static(b"1")
        );
        assert_eq!(a.to_string(), b.to_string());
        assert!(a.to_string().starts_with("memory://"));
        assert_ne!(a.to_string(), InMemoryRemote::new().to_string());
        assert_eq!((b.blob_count(), b.blob_bytes()), (1, 1));
    }

    #[tokio::test]
    async fn get_streams_in_chunks() {
        let r = InMemoryRemote::new();
        let body = Bytes::from(vec![7u8; GET_CHUNK * 2 + 5]);
        r.put_bytes_if_absent(&p("big"), body.clone())
            .await
            .unwrap();
        let chunks: Vec<Bytes> = r
            .get_blob(&p("big"))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
            [GET_CHUNK, GET_CHUNK, 5]
        );
        assert_eq!(r.get_bytes(&p("big")).await.unwrap(), body);
    }

    #[tokio::test]
    async fn cursor_against_missing_token_conflicts() {
        let r = InMemoryRemote::new();
        let err = r
            .write_cursor(&p("c"), Bytes::new(), Some(&CursorToken("1".into())))
            .await
            .unwrap_err();
        assert!(matches!(err, RemoteError::Conflict(_)), "{err:?}");
        assert!(r.read_cursor(&p("c")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn invalid_prefixes_are_refused() {
        let r = InMemoryRemote::new();
        for bad in ["/", "../x", "a//b"] {
            assert!(
                matches!(r.list_blobs(bad).await, Err(RemoteError::Invalid(_))),
                "{bad:?}"
            );
            assert!(
                matches!(r.list_cursors(bad).await, Err(RemoteError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
