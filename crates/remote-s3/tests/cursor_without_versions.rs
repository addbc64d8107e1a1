//! Cursor compare-and-swap on a store that names no version (no e_tag, no version) for what it
//! writes: a real `object_store` (`InMemory`) behind a wrapper that strips them, and that can let
//! another writer land between a write and the writer's next request.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use strata_remote::layout::encode_head;
use strata_remote::{Remote, RemoteError, RemotePath};
use strata_remote_s3::{BucketOptions, BucketUrl, ObjectStoreRemote};

#[derive(Debug, Default)]
struct NoVersions {
    inner: InMemory,
    /// Also strip them from reads (a store that never names a version).
    strip_reads: bool,
    /// HEAD requests seen.
    heads: AtomicUsize,
    /// Written to the same key right after the next put succeeds: another writer's value landing
    /// before this writer's next request.
    interleave: Mutex<Option<Bytes>>,
}

impl fmt::Display for NoVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoVersions({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for NoVersions {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let r = self.inner.put_opts(location, payload, opts).await?;
        let other = self.interleave.lock().unwrap().take();
        if let Some(other) = other {
            self.inner.put(location, other.into()).await?;
        }
        Ok(PutResult {
            e_tag: None,
            version: None,
            ..r
        })
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.head {
            self.heads.fetch_add(1, Ordering::SeqCst);
        }
        let mut r = self.inner.get_opts(location, options).await?;
        if self.strip_reads {
            r.meta.e_tag = None;
            r.meta.version = None;
        }
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn remote(store: &Arc<NoVersions>) -> ObjectStoreRemote {
    ObjectStoreRemote::with_store(
        store.clone(),
        BucketUrl::parse("s3://b/p").unwrap(),
        &BucketOptions::default(),
    )
}

fn name() -> RemotePath {
    RemotePath::parse("branches/main").unwrap()
}

const HEAD_KEY: &str = "p/cursors/branches/main/HEAD";

/// The race a separate `head()` after the write would lose: another writer replaces the head right
/// after this writer's write. This writer's token must not let it overwrite that value.
#[tokio::test]
async fn a_value_written_right_after_ours_is_never_overwritten_unseen() {
    let store = Arc::new(NoVersions::default());
    let a = remote(&store);
    // B's value lands as number 2 right after A creates number 1.
    *store.interleave.lock().unwrap() = Some(Bytes::from(encode_head(2, b"B")));
    let token = a
        .write_cursor(&name(), Bytes::from_static(b"A"), None)
        .await
        .unwrap();
    let res = a
        .write_cursor(&name(), Bytes::from_static(b"A2"), Some(&token))
        .await;
    assert!(
        matches!(res, Err(RemoteError::Conflict(_))),
        "A's second write must lose: {res:?}"
    );
    assert_eq!(
        store.heads.load(Ordering::SeqCst),
        0,
        "no HEAD after the write"
    );
    let now = a.read_cursor(&name()).await.unwrap().unwrap();
    assert_eq!(now.value, Bytes::from_static(b"B"), "B's value survives");
    // The raw head is still B's.
    let raw = store
        .inner
        .get(&Path::from(HEAD_KEY))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(raw, Bytes::from(encode_head(2, b"B")));
}

/// Without interference, tokens without a version still chain: each write re-reads the head, sees
/// its own number and writes conditionally on the version the read named.
#[tokio::test]
async fn tokens_without_a_version_still_chain_and_stale_ones_conflict() {
    let store = Arc::new(NoVersions::default());
    let a = remote(&store);
    let b = remote(&store);
    let t1 = a
        .write_cursor(&name(), Bytes::from_static(b"1"), None)
        .await
        .unwrap();
    let t2 = a
        .write_cursor(&name(), Bytes::from_static(b"2"), Some(&t1))
        .await
        .unwrap();
    let t3 = a
        .write_cursor(&name(), Bytes::from_static(b"3"), Some(&t2))
        .await
        .unwrap();
    assert_eq!(store.heads.load(Ordering::SeqCst), 0);
    // A stale token loses.
    let err = a
        .write_cursor(&name(), Bytes::from_static(b"x"), Some(&t1))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Conflict(_)), "{err:?}");
    // B reads (its token carries the version the read named) and writes; A's token is then stale.
    let seen = b.read_cursor(&name()).await.unwrap().unwrap();
    assert_eq!(seen.value, Bytes::from_static(b"3"));
    b.write_cursor(&name(), Bytes::from_static(b"4"), Some(&seen.token))
        .await
        .unwrap();
    let err = a
        .write_cursor(&name(), Bytes::from_static(b"x"), Some(&t3))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Conflict(_)), "{err:?}");
    assert_eq!(
        a.read_cursor(&name()).await.unwrap().unwrap().value,
        Bytes::from_static(b"4")
    );
}

/// A store that names no version even when read cannot make a write conditional: refused, not
/// written blindly.
#[tokio::test]
async fn a_store_that_never_names_a_version_refuses_the_swap() {
    let store = Arc::new(NoVersions {
        strip_reads: true,
        ..Default::default()
    });
    let a = remote(&store);
    let t1 = a
        .write_cursor(&name(), Bytes::from_static(b"1"), None)
        .await
        .unwrap();
    let err = a
        .write_cursor(&name(), Bytes::from_static(b"2"), Some(&t1))
        .await
        .unwrap_err();
    match &err {
        RemoteError::Invalid(m) => assert!(m.contains("names no version"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        a.read_cursor(&name()).await.unwrap().unwrap().value,
        Bytes::from_static(b"1")
    );
}
