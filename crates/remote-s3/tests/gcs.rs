//! The GCS bucket remote against the in-test fake GCS XML-API server (tests/support/fake_gcs.rs):
//! the conformance suite, and what goes over the wire — the `x-goog-if-generation-match`
//! preconditions behind put-if-absent and cursor compare-and-swap, and the staged multipart upload
//! published by a conditional copy. A real bucket runs the suite too when one is configured
//! (`STRATA_TEST_GCS_BUCKET`).

#![cfg(feature = "gcp")]

#[path = "support/fake_gcs.rs"]
mod fake_gcs;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fake_gcs::{FakeGcs, SeenRequest};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use strata_remote::layout::encode_head;
use strata_remote::{ByteStream, Remote, RemoteError, RemoteExt, RemotePath};
use strata_remote_s3::{BucketOptions, Env, ObjectStoreRemote, RequestCounter};

const GEN: &str = "x-goog-if-generation-match";
const COPY_SOURCE: &str = "x-goog-copy-source";
const BUCKET: &str = "strata-test";

fn p(s: &str) -> RemotePath {
    RemotePath::parse(s).unwrap()
}

/// A remote at a fresh prefix of the fake's bucket, and that prefix.
struct Fixture {
    fake: FakeGcs,
    prefix: String,
}

impl Fixture {
    async fn start(label: &str) -> Fixture {
        let fake = FakeGcs::start().await;
        fake.create_bucket(BUCKET);
        let prefix = format!("{label}-{}", uuid::Uuid::new_v4().simple());
        Fixture { fake, prefix }
    }

    fn url(&self) -> String {
        format!("gs://{BUCKET}/{}", self.prefix)
    }

    fn options(&self, extra: &[(&str, &str)]) -> BucketOptions {
        let base = self.fake.base_url();
        let mut pairs = vec![
            ("endpoint", base.as_str()),
            ("max_retries", "2"),
            ("timeout", "60s"),
        ];
        pairs.extend_from_slice(extra);
        BucketOptions::from_pairs(pairs).unwrap()
    }

    /// Only the fake's key: nothing from the process environment (no metadata-server token calls).
    fn env(&self) -> Env {
        Env::from_map(BTreeMap::from([(
            "GOOGLE_SERVICE_ACCOUNT_KEY".to_string(),
            self.fake.service_account_key(),
        )]))
    }

    fn open(&self, extra: &[(&str, &str)]) -> ObjectStoreRemote {
        ObjectStoreRemote::open_with_env(&self.url(), &self.options(extra), &self.env()).unwrap()
    }

    fn open_counted(&self, extra: &[(&str, &str)], counter: &RequestCounter) -> ObjectStoreRemote {
        ObjectStoreRemote::open_counted(&self.url(), &self.options(extra), &self.env(), counter)
            .unwrap()
    }

    /// The object name of `rel` (a layout key like `blobs/a`) in the fake's bucket.
    fn key(&self, rel: &str) -> String {
        format!("{}/{rel}", self.prefix)
    }

    /// Object names under the prefix, relative to it.
    fn names(&self) -> Vec<String> {
        let root = format!("{}/", self.prefix);
        self.fake
            .object_names(BUCKET)
            .into_iter()
            .filter_map(|n| n.strip_prefix(&root).map(str::to_string))
            .collect()
    }

    /// The requests the fake answered that addressed `rel` (a layout key), in order.
    fn requests_to(&self, rel: &str) -> Vec<SeenRequest> {
        let key = self.key(rel);
        self.fake
            .requests()
            .into_iter()
            .filter(|r| r.target() == (BUCKET.to_string(), Some(key.clone())))
            .collect()
    }

    /// Waits until no staged object is left under `tmp/` (losers' and winners' staged objects are
    /// deleted in spawned tasks).
    async fn wait_for_no_tmp(&self) {
        for _ in 0..100 {
            if !self.names().iter().any(|n| n.starts_with("tmp/")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("staged objects left in tmp/: {:?}", self.names());
    }
}

fn summary(reqs: &[SeenRequest]) -> String {
    reqs.iter()
        .map(|r| {
            format!(
                "{} {} -> {} [{GEN}={:?} {COPY_SOURCE}={:?}]",
                r.method,
                r.uri,
                r.status,
                r.header(GEN),
                r.header(COPY_SOURCE)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn chunked(data: Vec<u8>) -> ByteStream {
    let chunks: Vec<Bytes> = Bytes::from(data)
        .chunks(256 * 1024)
        .map(Bytes::copy_from_slice)
        .collect();
    Box::pin(futures::stream::iter(chunks.into_iter().map(Ok)))
}

// ---------------------------------------------------------------------------------------------------
// Conformance

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gcs_on_the_fake_server_passes_the_conformance_suite() {
    let f = Fixture::start("conformance").await;
    // Small pages, so that every listing of more than a few objects paginates.
    f.fake.set_list_page_size(7);
    let remote = Arc::new(f.open(&[]));
    strata_remote::conformance::run_all(remote).await;
    let reqs = f.fake.requests();
    assert!(
        reqs.iter()
            .any(|r| r.method == "GET" && r.query().contains_key("continuation-token")),
        "no listing was paginated during the suite"
    );
    assert!(
        reqs.iter().any(|r| r.header(COPY_SOURCE).is_some()),
        "the large blob was not published by a copy"
    );
    f.wait_for_no_tmp().await;
    assert_eq!(f.fake.pending_uploads(), 0, "multipart uploads left open");
}

#[tokio::test(flavor = "multi_thread")]
async fn gcs_real_bucket_conformance_when_configured() {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(bucket) = var("STRATA_TEST_GCS_BUCKET") else {
        eprintln!(
            "SKIPPED: no GCS credentials configured: set STRATA_TEST_GCS_BUCKET (and \
             GOOGLE_APPLICATION_CREDENTIALS or GOOGLE_SERVICE_ACCOUNT) to run the conformance \
             suite against a real GCS bucket"
        );
        return;
    };
    let creds = [
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_SERVICE_ACCOUNT",
        "GOOGLE_SERVICE_ACCOUNT_PATH",
        "GOOGLE_SERVICE_ACCOUNT_KEY",
    ];
    if !creds.iter().any(|k| var(k).is_some()) {
        eprintln!(
            "note: STRATA_TEST_GCS_BUCKET is set but none of {creds:?} is: relying on application \
             default credentials"
        );
    }
    let url = format!(
        "gs://{bucket}/strata-conformance-{}",
        uuid::Uuid::new_v4().simple()
    );
    let opts = BucketOptions::from_pairs([("max_retries", "3")]).unwrap();
    let remote = Arc::new(ObjectStoreRemote::open(&url, &opts).unwrap());
    strata_remote::conformance::run_all(remote.clone()).await;
    // The suite deletes its blobs but cannot delete cursors: remove everything under the prefix.
    let root = Path::parse(remote.url().prefix.as_ref().expect("a prefix").as_str()).unwrap();
    let left: Vec<_> = remote
        .store()
        .list(Some(&root))
        .try_collect()
        .await
        .unwrap();
    for o in left {
        let _ = remote.store().delete(&o.location).await;
    }
}

// ---------------------------------------------------------------------------------------------------
// What goes over the wire

#[tokio::test(flavor = "multi_thread")]
async fn small_blob_put_is_conditional_on_generation_zero() {
    let f = Fixture::start("small-put").await;
    let r = f.open(&[]);
    let path = p("objects/ab/cdef");
    r.put_bytes_if_absent(&path, Bytes::from_static(b"first"))
        .await
        .unwrap();
    let puts: Vec<_> = f
        .requests_to("blobs/objects/ab/cdef")
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 1, "{}", summary(&puts));
    assert_eq!(puts[0].header(GEN), Some("0"), "{}", summary(&puts));
    assert_eq!(puts[0].status, 200);

    f.fake.clear_requests();
    let err = r
        .put_bytes_if_absent(&path, Bytes::from_static(b"second"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RemoteError::AlreadyExists(m) if m.contains("objects/ab/cdef")),
        "{err:?}"
    );
    let reqs = f.requests_to("blobs/objects/ab/cdef");
    assert!(
        reqs.iter()
            .any(|r| r.method == "PUT" && r.header(GEN) == Some("0") && r.status == 412),
        "the second put was not refused by a 412 on its precondition:\n{}",
        summary(&reqs)
    );
    assert_eq!(
        f.fake
            .object(BUCKET, &f.key("blobs/objects/ab/cdef"))
            .unwrap(),
        Bytes::from_static(b"first")
    );
    assert_eq!(r.get_bytes(&path).await.unwrap(), "first");
}

#[tokio::test(flavor = "multi_thread")]
async fn cursor_writes_are_conditional_on_the_generation() {
    let f = Fixture::start("cursor-cas").await;
    let counter = RequestCounter::new();
    let r = f.open_counted(&[], &counter);
    let name = p("branches/main");
    let head = "cursors/branches/main/HEAD";

    // Create: generation 0, i.e. "must not exist".
    let t1 = r
        .write_cursor(&name, Bytes::from_static(b"v1"), None)
        .await
        .unwrap();
    let puts: Vec<_> = f
        .requests_to(head)
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 1, "{}", summary(&puts));
    assert_eq!(puts[0].header(GEN), Some("0"));
    let g1 = f.fake.generation(BUCKET, &f.key(head)).expect("a head");
    assert_eq!(
        f.fake.object(BUCKET, &f.key(head)).unwrap(),
        Bytes::from(encode_head(1, b"v1"))
    );
    // The request log sees the same condition.
    let logged: Vec<_> = counter
        .log()
        .into_iter()
        .filter(|rec| rec.method == "PUT" && rec.path.ends_with("HEAD"))
        .collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].conditions.get(GEN).map(String::as_str), Some("0"));

    // Replace with the token: conditional on the generation the fake assigned.
    f.fake.clear_requests();
    counter.reset();
    let t2 = r
        .write_cursor(&name, Bytes::from_static(b"v2"), Some(&t1))
        .await
        .unwrap();
    assert_ne!(t2, t1);
    let puts: Vec<_> = f
        .requests_to(head)
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 1, "{}", summary(&puts));
    assert_eq!(puts[0].header(GEN), Some(g1.to_string().as_str()));
    assert_eq!(puts[0].status, 200);
    let logged = counter.log();
    assert_eq!(
        logged
            .iter()
            .map(|rec| (rec.method.as_str(), rec.conditions.get(GEN).cloned()))
            .collect::<Vec<_>>(),
        [("PUT", Some(g1.to_string()))],
        "CAS is one conditional PUT: {logged:?}"
    );
    let g2 = f.fake.generation(BUCKET, &f.key(head)).unwrap();
    assert!(g2 > g1);
    let read = r.read_cursor(&name).await.unwrap().unwrap();
    assert_eq!((read.value.as_ref(), &read.token), (&b"v2"[..], &t2));

    // The stale token: 412 on the old generation, Conflict, nothing changed.
    f.fake.clear_requests();
    let err = r
        .write_cursor(&name, Bytes::from_static(b"v3"), Some(&t1))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Conflict(_)), "{err:?}");
    let puts: Vec<_> = f
        .requests_to(head)
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 1, "{}", summary(&puts));
    assert_eq!(puts[0].header(GEN), Some(g1.to_string().as_str()));
    assert_eq!(puts[0].status, 412);
    assert_eq!(f.fake.generation(BUCKET, &f.key(head)), Some(g2));
    let read = r.read_cursor(&name).await.unwrap().unwrap();
    assert_eq!((read.value.as_ref(), &read.token), (&b"v2"[..], &t2));

    // Creating it again conflicts too (it exists).
    let err = r
        .write_cursor(&name, Bytes::from_static(b"again"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Conflict(_)), "{err:?}");
    assert_eq!(f.fake.generation(BUCKET, &f.key(head)), Some(g2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cursor_changed_behind_the_clients_back_conflicts() {
    let f = Fixture::start("cursor-behind").await;
    let r = f.open(&[]);
    let name = p("branches/dev");
    let head = f.key("cursors/branches/dev/HEAD");
    let t1 = r
        .write_cursor(&name, Bytes::from_static(b"mine"), None)
        .await
        .unwrap();
    let g1 = f.fake.generation(BUCKET, &head).unwrap();

    // Another writer (say, another tool) replaces the head: a new generation.
    f.fake
        .set_object(BUCKET, &head, Bytes::from(encode_head(2, b"theirs")));
    let g2 = f.fake.generation(BUCKET, &head).unwrap();
    assert!(g2 > g1);

    f.fake.clear_requests();
    let err = r
        .write_cursor(&name, Bytes::from_static(b"mine again"), Some(&t1))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Conflict(_)), "{err:?}");
    let reqs = f.requests_to("cursors/branches/dev/HEAD");
    assert!(
        reqs.iter().any(|r| r.method == "PUT"
            && r.header(GEN) == Some(g1.to_string().as_str())
            && r.status == 412),
        "{}",
        summary(&reqs)
    );
    assert_eq!(
        f.fake.object(BUCKET, &head).unwrap(),
        Bytes::from(encode_head(2, b"theirs"))
    );

    // Reading picks up their value and a token for their generation, which then wins.
    let c = r.read_cursor(&name).await.unwrap().unwrap();
    assert_eq!(c.value, "theirs");
    assert_ne!(c.token, t1);
    f.fake.clear_requests();
    r.write_cursor(&name, Bytes::from_static(b"merged"), Some(&c.token))
        .await
        .unwrap();
    let reqs = f.requests_to("cursors/branches/dev/HEAD");
    assert!(
        reqs.iter().any(|r| r.method == "PUT"
            && r.header(GEN) == Some(g2.to_string().as_str())
            && r.status == 200),
        "{}",
        summary(&reqs)
    );
    assert_eq!(
        f.fake.object(BUCKET, &head).unwrap(),
        Bytes::from(encode_head(3, b"merged"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn large_blobs_are_staged_then_published_by_a_conditional_copy() {
    let f = Fixture::start("large").await;
    let r = f.open(&[("part_size", "5MiB")]);
    let path = p("big/one");
    let data = body(11 * 1024 * 1024, 7);
    r.put_blob_if_absent(&path, chunked(data.clone()))
        .await
        .unwrap();
    assert!(f.fake.object(BUCKET, &f.key("blobs/big/one")).unwrap() == data);

    let reqs = f.fake.requests();
    let tmp_root = f.key("tmp/");
    let staged: Vec<&SeenRequest> = reqs
        .iter()
        .filter(|r| r.target().1.is_some_and(|k| k.starts_with(&tmp_root)))
        .collect();
    let staged_key = staged
        .first()
        .and_then(|r| r.target().1)
        .unwrap_or_else(|| panic!("nothing staged under tmp/:\n{}", summary(&reqs)));
    // Initiate, three parts (5 + 5 + 1 MiB), complete.
    let initiate = staged
        .iter()
        .filter(|r| r.method == "POST" && r.query().contains_key("uploads"))
        .count();
    let parts: Vec<_> = staged
        .iter()
        .filter(|r| r.method == "PUT" && r.query().contains_key("partNumber"))
        .collect();
    let complete = staged
        .iter()
        .filter(|r| r.method == "POST" && r.query().contains_key("uploadId"))
        .count();
    assert_eq!(
        (initiate, parts.len(), complete),
        (1, 3, 1),
        "{}",
        summary(&reqs)
    );
    assert!(parts.iter().all(|r| r.status == 200), "{}", summary(&reqs));
    assert!(
        staged
            .iter()
            .all(|r| r.target().1.as_deref() == Some(&staged_key)),
        "one staged object: {}",
        summary(&reqs)
    );
    // Nothing is ever written to the blob's key but the copy.
    let to_blob: Vec<SeenRequest> = f.requests_to("blobs/big/one");
    let writes: Vec<_> = to_blob.iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(writes.len(), 1, "{}", summary(&to_blob));
    let copy = writes[0];
    let source = copy.header(COPY_SOURCE).expect("a copy");
    let decoded = percent_encoding::percent_decode_str(source.trim_start_matches('/'))
        .decode_utf8_lossy()
        .into_owned();
    assert_eq!(decoded, format!("{BUCKET}/{staged_key}"));
    assert_eq!(copy.header(GEN), Some("0"), "{}", summary(&to_blob));
    assert_eq!(copy.status, 200);
    assert!(
        !to_blob
            .iter()
            .any(|r| r.method == "POST" || r.query().contains_key("uploadId")),
        "a multipart upload went straight to the blob's key: {}",
        summary(&to_blob)
    );
    // The staged object is deleted (in the background).
    f.wait_for_no_tmp().await;
    assert_eq!(f.names(), ["blobs/big/one"]);
    assert_eq!(f.fake.pending_uploads(), 0);
    assert!(r.get_bytes(&path).await.unwrap() == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_large_puts_have_exactly_one_winner_and_leave_no_staged_objects() {
    let f = Fixture::start("large-race").await;
    let r = Arc::new(f.open(&[("part_size", "5MiB")]));
    let path = p("big/raced");
    let size = 11 * 1024 * 1024;
    let mut tasks = Vec::new();
    for i in 0..4u8 {
        let r = r.clone();
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            r.put_blob_if_absent(&path, chunked(body(size, i))).await
        }));
    }
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(()) => winners.push(i as u8),
            Err(RemoteError::AlreadyExists(m)) => assert!(m.contains("big/raced"), "{m}"),
            Err(other) => panic!("racing large put {i}: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners {winners:?}");
    let stored = f.fake.object(BUCKET, &f.key("blobs/big/raced")).unwrap();
    assert!(
        stored == body(size, winners[0]),
        "the stored blob is not the winner's"
    );
    assert!(r.get_bytes(&path).await.unwrap() == stored);
    // Every publishing copy was conditional; the losers' failed with 412.
    let copies: Vec<_> = f
        .requests_to("blobs/big/raced")
        .into_iter()
        .filter(|r| r.header(COPY_SOURCE).is_some())
        .collect();
    assert!(!copies.is_empty());
    assert!(
        copies.iter().all(|r| r.header(GEN) == Some("0")),
        "{}",
        summary(&copies)
    );
    assert_eq!(
        copies.iter().filter(|r| r.status == 200).count(),
        1,
        "{}",
        summary(&copies)
    );
    assert!(
        copies.iter().all(|r| r.status == 200 || r.status == 412),
        "{}",
        summary(&copies)
    );
    f.wait_for_no_tmp().await;
    assert_eq!(f.names(), ["blobs/big/raced"]);
    assert_eq!(f.fake.pending_uploads(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_cursor_head_is_reported_as_corrupt() {
    let f = Fixture::start("corrupt").await;
    let r = f.open(&[]);
    let name = p("branches/main");
    let rel = "cursors/branches/main/HEAD";
    let t = r
        .write_cursor(&name, Bytes::from_static(b"ok"), None)
        .await
        .unwrap();
    f.fake.set_object(
        BUCKET,
        &f.key(rel),
        Bytes::from_static(b"\x00\x01 not a cursor head at all, and no newline either"),
    );
    match r.read_cursor(&name).await {
        Err(RemoteError::Corrupt(m)) => {
            assert!(m.contains(&f.key(rel)), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // The old token no longer matches what is stored, so a write over the damage conflicts
    // instead of silently replacing it.
    let err = r
        .write_cursor(&name, Bytes::from_static(b"new"), Some(&t))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Conflict(_)), "{err:?}");
}
