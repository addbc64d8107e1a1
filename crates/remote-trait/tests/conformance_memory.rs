//! The conformance suite run against the reference backend, and against the fault-injecting wrapper
//! with an idle plan (it must then be transparent). Also shows the suite has teeth: backends that break
//! a rule fail it.

#![cfg(feature = "conformance")]

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use strata_remote::conformance::{self, fresh_prefix};
use strata_remote::{
    BlobMeta, ByteStream, Cursor, CursorToken, FaultyRemote, InMemoryRemote, Remote, RemoteExt,
    RemotePath, Result,
};

#[tokio::test(flavor = "multi_thread")]
async fn memory_remote_passes_the_suite() {
    let remote = InMemoryRemote::new();
    conformance::run_all(Arc::new(remote.clone())).await;
    assert_eq!(remote.blob_count(), 0, "the checks clean up their blobs");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_faulty_wrapper_passes_the_suite() {
    let faulty = FaultyRemote::new(Arc::new(InMemoryRemote::new()) as Arc<dyn Remote>);
    conformance::run_all(Arc::new(faulty.clone())).await;
    assert_eq!(faulty.counts().injected, 0);
    assert!(faulty.counts().total() > 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn checks_can_share_one_remote_concurrently() {
    let remote: Arc<dyn Remote> = Arc::new(InMemoryRemote::new());
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let r = remote.clone();
        tasks.push(tokio::spawn(async move {
            conformance::check_list_by_prefix(&*r, &fresh_prefix("list")).await;
            conformance::check_cursor_race(r.clone(), &fresh_prefix("race"), 4, 5).await;
            conformance::check_path_traversal_refused(&*r, &fresh_prefix("traversal")).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// A backend with one deliberate bug, to show the suite catches it.
#[derive(Debug)]
enum Bug {
    /// Lists by raw string prefix: "a/b" also lists "a/bc".
    StringPrefixListing,
    /// Stores whatever arrived of a body that then failed.
    KeepsPartialPuts,
    /// Lets a CAS with any token win.
    IgnoresCasToken,
}

#[derive(Debug)]
struct Buggy {
    inner: InMemoryRemote,
    bug: Bug,
}

impl std::fmt::Display for Buggy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "buggy({:?})", self.bug)
    }
}

#[async_trait]
impl Remote for Buggy {
    async fn put_blob_if_absent(&self, path: &RemotePath, body: ByteStream) -> Result<()> {
        if let Bug::KeepsPartialPuts = self.bug {
            let mut got = Vec::new();
            let mut body = body;
            let res = loop {
                match body.try_next().await {
                    Ok(Some(c)) => got.extend_from_slice(&c),
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            self.inner
                .put_bytes_if_absent(path, Bytes::from(got))
                .await?;
            return res;
        }
        self.inner.put_blob_if_absent(path, body).await
    }
    async fn get_blob(&self, path: &RemotePath) -> Result<ByteStream> {
        self.inner.get_blob(path).await
    }
    async fn list_blobs(&self, prefix: &str) -> Result<Vec<BlobMeta>> {
        if let Bug::StringPrefixListing = self.bug {
            let all = self.inner.list_blobs("").await?;
            return Ok(all
                .into_iter()
                .filter(|m| m.path.as_str().starts_with(prefix.trim_end_matches('/')))
                .collect());
        }
        self.inner.list_blobs(prefix).await
    }
    async fn delete_blob(&self, path: &RemotePath) -> Result<()> {
        self.inner.delete_blob(path).await
    }
    async fn read_cursor(&self, name: &RemotePath) -> Result<Option<Cursor>> {
        self.inner.read_cursor(name).await
    }
    async fn write_cursor(
        &self,
        name: &RemotePath,
        value: Bytes,
        expected: Option<&CursorToken>,
    ) -> Result<CursorToken> {
        if let (Bug::IgnoresCasToken, Some(_)) = (&self.bug, expected) {
            let current = self.inner.read_cursor(name).await?.map(|c| c.token);
            return self.inner.write_cursor(name, value, current.as_ref()).await;
        }
        self.inner.write_cursor(name, value, expected).await
    }
    async fn list_cursors(&self, prefix: &str) -> Result<Vec<RemotePath>> {
        self.inner.list_cursors(prefix).await
    }
}

fn buggy(bug: Bug) -> Buggy {
    Buggy {
        inner: InMemoryRemote::new(),
        bug,
    }
}

#[tokio::test]
#[should_panic(expected = "list_blobs")]
async fn suite_catches_string_prefix_listing() {
    conformance::check_list_by_prefix(&buggy(Bug::StringPrefixListing), &fresh_prefix("list"))
        .await;
}

#[tokio::test]
#[should_panic(expected = "after a failed put")]
async fn suite_catches_partial_puts() {
    conformance::check_aborted_put_leaves_nothing(
        &buggy(Bug::KeepsPartialPuts),
        &fresh_prefix("aborted"),
    )
    .await;
}

#[tokio::test]
#[should_panic(expected = "stale token")]
async fn suite_catches_cas_without_compare() {
    conformance::check_cursor_create_and_cas(&buggy(Bug::IgnoresCasToken), &fresh_prefix("cas"))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
#[should_panic(expected = "want exactly one")]
async fn race_check_catches_cas_without_compare() {
    conformance::check_cursor_race(
        Arc::new(buggy(Bug::IgnoresCasToken)),
        &fresh_prefix("race"),
        4,
        3,
    )
    .await;
}
