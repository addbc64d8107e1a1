//! Bucket-remote behaviour beyond the conformance suite, against moto (S3) and Azurite (Azure):
//! large-blob races and aborts, request counts, error messages, secrets, and the portable layout
//! (a folder remote's files copied into a bucket, and back).

#![cfg(all(feature = "aws", feature = "azure"))]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use strata_remote::{ByteStream, Remote, RemoteError, RemoteExt, RemotePath};
use strata_remote_fs::FsRemote;
use strata_remote_s3::testing::{emulator, EmulatorRemote};
use strata_remote_s3::{BucketOptions, Env, ObjectStoreRemote, Provider, RequestCounter};

const PROVIDERS: [Provider; 2] = [Provider::S3, Provider::Azure];

fn p(s: &str) -> RemotePath {
    RemotePath::parse(s).unwrap()
}

fn open(e: &EmulatorRemote, extra: &[(&str, &str)]) -> ObjectStoreRemote {
    let mut options = e.options.clone();
    for (k, v) in extra {
        options.insert(k.to_string(), v.to_string());
    }
    ObjectStoreRemote::open(&e.url, &BucketOptions::from_map(&options).unwrap()).unwrap()
}

/// Every object key under the remote's prefix, relative to it.
async fn raw_keys(r: &ObjectStoreRemote) -> Vec<String> {
    let root = r.url().prefix.as_ref().unwrap().as_str().to_string();
    let mut keys: Vec<String> = r
        .store()
        .list(Some(&Path::parse(&root).unwrap()))
        .map_ok(|o| o.location.as_ref()[root.len() + 1..].to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
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

/// moto checks `If-None-Match` on CompleteMultipartUpload but not atomically: racing completions can
/// both pass its check (seen: 2 winners of 4). AWS S3 evaluates the condition atomically. So on S3 this
/// checks what we send (a conditional completion, in `large_puts_are_published_conditionally`), and
/// the race itself runs on Azurite and the fake GCS server.
#[tokio::test(flavor = "multi_thread")]
async fn racing_large_puts_have_exactly_one_winner_and_leave_no_staged_objects() {
    for provider in [Provider::Azure] {
        let Some(e) = emulator(provider, "large-race") else {
            return;
        };
        // Parts of 5 MiB (the S3 minimum): a 6 MiB blob takes the multipart path.
        let r = Arc::new(open(&e, &[("part_size", "5MiB")]));
        let path = p("big/blob");
        let mut tasks = Vec::new();
        for i in 0..4u8 {
            let r = r.clone();
            let path = path.clone();
            tasks.push(tokio::spawn(async move {
                r.put_blob_if_absent(&path, chunked(body(6 * 1024 * 1024, i)))
                    .await
            }));
        }
        let mut winners = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(()) => winners.push(i as u8),
                Err(RemoteError::AlreadyExists(m)) => assert!(m.contains("big/blob"), "{m}"),
                Err(other) => panic!("{provider:?}: racing large put {i}: {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "{provider:?}: winners {winners:?}");
        assert!(
            r.get_bytes(&path).await.unwrap() == body(6 * 1024 * 1024, winners[0]),
            "{provider:?}: the stored blob is not the winner's"
        );
        // A sequential second put is refused before uploading anything.
        let counter = RequestCounter::new();
        let counted = ObjectStoreRemote::open_counted(
            &e.url,
            &BucketOptions::from_map(&e.options).unwrap(),
            &Env::process(),
            &counter,
        )
        .unwrap();
        let err = counted
            .put_blob_if_absent(&path, chunked(body(9 * 1024 * 1024, 9)))
            .await
            .unwrap_err();
        assert!(matches!(err, RemoteError::AlreadyExists(_)), "{err:?}");
        assert_eq!(
            counter.by_method().get("PUT"),
            None,
            "{provider:?}: uploaded anyway"
        );
        // The staged uploads are gone once the losers' clean-ups ran.
        wait_for_no_tmp(&r).await;
        assert_eq!(raw_keys(&r).await, ["blobs/big/blob"], "{provider:?}");
    }
}

async fn wait_for_no_tmp(r: &ObjectStoreRemote) {
    for _ in 0..100 {
        if !raw_keys(r).await.iter().any(|k| k.starts_with("tmp/")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{r}: staged objects left in tmp/: {:?}", raw_keys(r).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_and_dropped_large_puts_leave_nothing_visible() {
    for provider in PROVIDERS {
        let Some(e) = emulator(provider, "large-abort") else {
            return;
        };
        let r = open(&e, &[("part_size", "5MiB")]);
        // The body fails after 12 MiB: two parts are up, the upload is aborted.
        let failing: ByteStream = Box::pin(chunked(body(12 * 1024 * 1024, 1)).chain(
            futures::stream::once(async {
                Err(RemoteError::Transient("the source failed".into()))
            }),
        ));
        let err = r
            .put_blob_if_absent(&p("x/failed"), failing)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RemoteError::Transient(ref m) if m.contains("source failed")),
            "{err:?}"
        );
        // The future is dropped mid-upload (a push killed by the user).
        let stalled: ByteStream =
            Box::pin(chunked(body(11 * 1024 * 1024, 2)).chain(futures::stream::pending()));
        let res = tokio::time::timeout(
            Duration::from_millis(1500),
            r.put_blob_if_absent(&p("x/dropped"), stalled),
        )
        .await;
        assert!(
            res.is_err(),
            "{provider:?}: an endless put finished: {res:?}"
        );
        for path in ["x/failed", "x/dropped"] {
            assert!(
                !r.blob_exists(&p(path)).await.unwrap(),
                "{provider:?}: {path}"
            );
        }
        assert!(r.list_blobs("").await.unwrap().is_empty(), "{provider:?}");
        assert!(
            !raw_keys(&r).await.iter().any(|k| k.starts_with("blobs/")),
            "{provider:?}"
        );
        // Both can be put afterwards.
        for path in ["x/failed", "x/dropped"] {
            r.put_blob_if_absent(&p(path), chunked(body(6 * 1024 * 1024, 3)))
                .await
                .unwrap();
        }
        wait_for_no_tmp(&r).await;
    }
}

/// What a push of one small change costs in requests is the sync crate's business; at this level, each
/// operation costs exactly one request, except reading a cursor that a folder wrote without a head.
#[tokio::test(flavor = "multi_thread")]
async fn each_operation_is_one_request() {
    for provider in PROVIDERS {
        let Some(e) = emulator(provider, "requests") else {
            return;
        };
        let counter = RequestCounter::new();
        let r = ObjectStoreRemote::open_counted(
            &e.url,
            &BucketOptions::from_map(&e.options).unwrap(),
            &Env::process(),
            &counter,
        )
        .unwrap();
        let mut steps = BTreeMap::new();
        let name = p("branches/main");
        macro_rules! step {
            ($label:expr, $e:expr) => {{
                counter.reset();
                let out = $e;
                steps.insert($label, counter.by_method());
                out
            }};
        }
        step!(
            "put small blob",
            r.put_bytes_if_absent(&p("b/1"), Bytes::from_static(b"x"))
                .await
                .unwrap()
        );
        let t = step!(
            "create cursor",
            r.write_cursor(&name, Bytes::from_static(b"1"), None)
                .await
                .unwrap()
        );
        let c = step!("read cursor", r.read_cursor(&name).await.unwrap().unwrap());
        assert_eq!(
            c.token, t,
            "{provider:?}: the read token differs from the write's"
        );
        let t2 = step!(
            "cas cursor",
            r.write_cursor(&name, Bytes::from_static(b"2"), Some(&t))
                .await
                .unwrap()
        );
        assert_ne!(t2, t);
        step!("get blob", r.get_bytes(&p("b/1")).await.unwrap());
        let lost = step!(
            "lost cas",
            r.write_cursor(&name, Bytes::from_static(b"3"), Some(&t))
                .await
                .unwrap_err()
        );
        assert!(matches!(lost, RemoteError::Conflict(_)), "{lost:?}");
        let one = |m: &str| BTreeMap::from([(m.to_string(), 1u64)]);
        assert_eq!(steps["put small blob"], one("PUT"), "{provider:?}");
        // Creating checks for a copied folder's records (a listing), then creates the head.
        assert_eq!(
            steps["create cursor"],
            BTreeMap::from([("GET".to_string(), 1), ("PUT".to_string(), 1)]),
            "{provider:?}"
        );
        assert_eq!(steps["read cursor"], one("GET"), "{provider:?}");
        assert_eq!(steps["cas cursor"], one("PUT"), "{provider:?}");
        assert_eq!(steps["get blob"], one("GET"), "{provider:?}");
        assert_eq!(steps["lost cas"], one("PUT"), "{provider:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_is_named() {
    for provider in PROVIDERS {
        let Some(e) = emulator(provider, "missing") else {
            return;
        };
        let url = format!(
            "{}://no-such-bucket-{}/x",
            provider.scheme(),
            uuid::Uuid::new_v4().simple()
        );
        let r =
            ObjectStoreRemote::open(&url, &BucketOptions::from_map(&e.options).unwrap()).unwrap();
        let word = if provider == Provider::Azure {
            "container"
        } else {
            "bucket"
        };
        let errs = [
            r.list_blobs("").await.map(|_| ()).unwrap_err(),
            r.read_cursor(&p("branches/main"))
                .await
                .map(|_| ())
                .unwrap_err(),
            r.get_blob(&p("strata-remote.json"))
                .await
                .map(|_| ())
                .unwrap_err(),
            r.put_bytes_if_absent(&p("a"), Bytes::from_static(b"a"))
                .await
                .unwrap_err(),
        ];
        for err in errs {
            match &err {
                RemoteError::NotFound(m) => assert!(
                    m.contains(&format!("the {word}"))
                        && m.contains("does not exist")
                        && m.contains("no-such-bucket-"),
                    "{provider:?}: {m}"
                ),
                other => panic!("{provider:?}: {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_are_refused_without_printing_them() {
    let Some(e) = emulator(Provider::Azure, "creds") else {
        return;
    };
    let secret = "c3VwZXJzZWNyZXRrZXlzdXBlcnNlY3JldGtleXN1cGVyc2VjcmV0a2V5MTIzNDU2Nzg5MA==";
    let env = Env::from_map(BTreeMap::from([(
        "AZURE_STORAGE_ACCOUNT_KEY".to_string(),
        secret.to_string(),
    )]));
    let r = ObjectStoreRemote::open_with_env(
        &e.url,
        &BucketOptions::from_map(&e.options).unwrap(),
        &env,
    )
    .unwrap();
    // Azurite answers a wrong shared key with 403 AuthorizationFailure, which Azure itself sends to
    // valid credentials that a firewall rule or a role keeps out: so this is PermissionDenied here.
    // (Azure answers a wrong key with AuthenticationFailed: Unauthorized, in tests/classification.rs.)
    let err = r.list_blobs("").await.unwrap_err();
    let text = format!("{err} {err:?} {} {r} {r:?}", err.report());
    assert!(matches!(err, RemoteError::PermissionDenied(_)), "{err:?}");
    assert!(text.contains("AZURE_STORAGE_ACCOUNT_KEY"), "{text}");
    assert!(text.contains("AuthorizationFailure"), "{text}");
    assert!(
        !text.contains(secret) && !text.contains(&secret[..20]),
        "a secret was printed: {text}"
    );
    let err = r.read_cursor(&p("branches/main")).await.unwrap_err();
    assert!(matches!(err, RemoteError::PermissionDenied(_)), "{err:?}");
}

/// Copies every file under `root` into the bucket under the remote's prefix, byte for byte (what
/// `rclone copy` does).
async fn upload_folder(root: &std::path::Path, r: &ObjectStoreRemote) {
    let prefix = r.url().prefix.as_ref().unwrap().as_str().to_string();
    for entry in walk(root) {
        let rel = entry
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let data = std::fs::read(&entry).unwrap();
        r.store()
            .put(
                &Path::parse(format!("{prefix}/{rel}")).unwrap(),
                PutPayload::from(data),
            )
            .await
            .unwrap();
    }
}

/// Downloads every object under the remote's prefix into `root`.
async fn download_bucket(r: &ObjectStoreRemote, root: &std::path::Path) {
    for key in raw_keys(r).await {
        let prefix = r.url().prefix.as_ref().unwrap().as_str();
        let data = r
            .store()
            .get(&Path::parse(format!("{prefix}/{key}")).unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let dest = root.join(&key);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(dest, data).unwrap();
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The same contents through two remotes: blob listing and bytes, cursor names and values.
async fn assert_same(a: &dyn Remote, b: &dyn Remote, cursors: &[&str]) {
    let la: Vec<_> = a
        .list_blobs("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.path, m.size))
        .collect();
    let lb: Vec<_> = b
        .list_blobs("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.path, m.size))
        .collect();
    assert_eq!(la, lb, "{a} vs {b}: blob listings");
    for (path, _) in &la {
        assert_eq!(
            a.get_bytes(path).await.unwrap(),
            b.get_bytes(path).await.unwrap(),
            "{path}"
        );
    }
    assert_eq!(
        a.list_cursors("").await.unwrap(),
        b.list_cursors("").await.unwrap()
    );
    for c in cursors {
        let va = a.read_cursor(&p(c)).await.unwrap().map(|c| c.value);
        let vb = b.read_cursor(&p(c)).await.unwrap().map(|c| c.value);
        assert_eq!(va, vb, "{a} vs {b}: cursor {c}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_folder_copied_into_a_bucket_and_back_stays_a_valid_remote() {
    for provider in PROVIDERS {
        let Some(e) = emulator(provider, "portable") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let fs = FsRemote::new(dir.path().join("remote")).unwrap();
        fs.put_bytes_if_absent(&p("strata-remote.json"), Bytes::from_static(b"{}"))
            .await
            .unwrap();
        fs.put_bytes_if_absent(
            &p("branches/main/deltas/1~41"),
            Bytes::from(body(70_000, 1)),
        )
        .await
        .unwrap();
        let mut t = fs
            .write_cursor(&p("branches/main"), Bytes::from_static(b"v1"), None)
            .await
            .unwrap();
        t = fs
            .write_cursor(&p("branches/main"), Bytes::from_static(b"v2"), Some(&t))
            .await
            .unwrap();
        let _ = t;
        fs.write_cursor(&p("branches/HEAD"), Bytes::from_static(b"odd"), None)
            .await
            .unwrap();
        // A cursor as an older folder remote wrote it: records only, no head.
        fs.write_cursor(&p("branches/old"), Bytes::from_static(b"o1"), None)
            .await
            .unwrap();
        std::fs::remove_file(dir.path().join("remote/cursors/branches/old/HEAD")).unwrap();
        // Leftovers of a crashed writer are not part of the remote.
        std::fs::write(dir.path().join("remote/tmp/crashed.tmp"), b"junk").unwrap();

        // Folder -> bucket.
        let bucket = open(&e, &[]);
        upload_folder(&dir.path().join("remote"), &bucket).await;
        let cursors = ["branches/main", "branches/HEAD", "branches/old"];
        assert_same(&fs, &bucket, &cursors).await;
        // Compare-and-swap continues in the bucket, from heads and from bare records.
        let c = bucket
            .read_cursor(&p("branches/main"))
            .await
            .unwrap()
            .unwrap();
        bucket
            .write_cursor(
                &p("branches/main"),
                Bytes::from_static(b"v3"),
                Some(&c.token),
            )
            .await
            .unwrap();
        let old = bucket
            .read_cursor(&p("branches/old"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(old.value.as_ref(), b"o1");
        bucket
            .write_cursor(
                &p("branches/old"),
                Bytes::from_static(b"o2"),
                Some(&old.token),
            )
            .await
            .unwrap();
        bucket
            .write_cursor(
                &p("branches/old"),
                Bytes::from_static(b"o2'"),
                Some(&old.token),
            )
            .await
            .unwrap_err();
        bucket
            .write_cursor(&p("branches/old"), Bytes::from_static(b"x"), None)
            .await
            .unwrap_err();
        bucket
            .put_bytes_if_absent(&p("branches/main/deltas/2"), Bytes::from_static(b"d2"))
            .await
            .unwrap();

        // Bucket -> a new folder.
        let back = tempfile::tempdir().unwrap();
        download_bucket(&bucket, back.path()).await;
        let fs2 = FsRemote::new(back.path()).unwrap();
        assert_same(&bucket, &fs2, &cursors).await;
        assert_eq!(
            fs2.read_cursor(&p("branches/main"))
                .await
                .unwrap()
                .unwrap()
                .value
                .as_ref(),
            b"v3"
        );
        // The folder writes on from the bucket's heads...
        let c = fs2.read_cursor(&p("branches/main")).await.unwrap().unwrap();
        fs2.write_cursor(
            &p("branches/main"),
            Bytes::from_static(b"v4"),
            Some(&c.token),
        )
        .await
        .unwrap();
        let o = fs2.read_cursor(&p("branches/old")).await.unwrap().unwrap();
        assert_eq!(o.value.as_ref(), b"o2");
        fs2.write_cursor(
            &p("branches/old"),
            Bytes::from_static(b"o3"),
            Some(&o.token),
        )
        .await
        .unwrap();
        // ...and copying it over the same bucket again (rclone copy: nothing deleted) is still right.
        upload_folder(back.path(), &bucket).await;
        assert_same(&fs2, &bucket, &cursors).await;
        assert_eq!(
            bucket
                .read_cursor(&p("branches/main"))
                .await
                .unwrap()
                .unwrap()
                .value
                .as_ref(),
            b"v4"
        );
        assert_eq!(
            bucket
                .read_cursor(&p("branches/old"))
                .await
                .unwrap()
                .unwrap()
                .value
                .as_ref(),
            b"o3"
        );
    }
}

/// A large blob goes up as a multipart upload to tmp/, then is published by a copy that the store
/// completes only if the destination is absent: on S3 a one-part multipart copy whose completion
/// carries `If-None-Match: *`. A small one is a single PUT with `If-None-Match: *`.
#[tokio::test(flavor = "multi_thread")]
async fn large_puts_are_published_conditionally() {
    let Some(e) = emulator(Provider::S3, "conditional") else {
        return;
    };
    let counter = RequestCounter::new();
    let mut options = e.options.clone();
    options.insert("part_size".into(), "5MiB".into());
    let r = ObjectStoreRemote::open_counted(
        &e.url,
        &BucketOptions::from_map(&options).unwrap(),
        &Env::process(),
        &counter,
    )
    .unwrap();
    r.put_bytes_if_absent(&p("small"), Bytes::from_static(b"s"))
        .await
        .unwrap();
    let log = counter.log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].method, "PUT");
    assert_eq!(
        log[0].conditions.get("if-none-match").map(String::as_str),
        Some("*"),
        "{log:?}"
    );

    counter.reset();
    r.put_blob_if_absent(&p("big"), chunked(body(11 * 1024 * 1024, 5)))
        .await
        .unwrap();
    let log = counter.log();
    let summary: Vec<String> = log
        .iter()
        .map(|r| {
            format!(
                "{} {} {:?} {:?}",
                r.method, r.path, r.query_keys, r.conditions
            )
        })
        .collect();
    // The parts went to tmp/, never to the destination.
    let dest_suffix = "/blobs/big";
    let parts: Vec<_> = log
        .iter()
        .filter(|r| r.method == "PUT" && r.query_keys.contains(&"partNumber".to_string()))
        .collect();
    assert!(parts.len() >= 4, "{summary:#?}");
    assert!(
        parts.iter().filter(|r| r.path.contains("/tmp/")).count() == 3,
        "3 parts of 5+5+1 MiB into tmp/: {summary:#?}"
    );
    // The publishing copy into the destination completes on condition.
    let complete = log
        .iter()
        .find(|r| {
            r.method == "POST"
                && r.path.ends_with(dest_suffix)
                && r.query_keys.contains(&"uploadId".to_string())
        })
        .unwrap_or_else(|| panic!("no completion of the publishing copy: {summary:#?}"));
    assert_eq!(
        complete.conditions.get("if-none-match").map(String::as_str),
        Some("*"),
        "{summary:#?}"
    );
    assert!(
        log.iter().any(
            |r| r.path.ends_with(dest_suffix) && r.conditions.contains_key("x-amz-copy-source")
        ),
        "{summary:#?}"
    );
    // And the staged object was removed.
    wait_for_no_tmp(&r).await;
    assert_eq!(
        r.get_bytes(&p("big")).await.unwrap(),
        body(11 * 1024 * 1024, 5)
    );
}

/// Retries apply to retryable failures only, within the configured budget: a dead endpoint fails as
/// `Transient` after `max_retries` attempts, quickly when the budget is small.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_endpoint_fails_as_transient_within_the_retry_budget() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let counter = RequestCounter::new();
    let opts = BucketOptions::from_pairs([
        ("endpoint", format!("http://127.0.0.1:{port}").as_str()),
        ("max_retries", "2"),
        ("timeout", "2s"),
        ("connect_timeout", "1s"),
        ("retry_timeout", "10s"),
    ])
    .unwrap();
    let env = Env::from_map(BTreeMap::from([
        ("AWS_ACCESS_KEY_ID".to_string(), "x".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "y".to_string()),
    ]));
    let r = ObjectStoreRemote::open_counted("s3://b/p", &opts, &env, &counter).unwrap();
    let t0 = std::time::Instant::now();
    let err = r.read_cursor(&p("branches/main")).await.unwrap_err();
    assert!(matches!(err, RemoteError::Transient(_)), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(
        counter.total(),
        3,
        "one try and two retries: {:?}",
        counter.log()
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}
