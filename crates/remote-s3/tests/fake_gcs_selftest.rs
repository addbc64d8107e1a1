//! Drives the in-test fake GCS server with object_store's own GCS client (no
//! Strata code), to show the fake is faithful enough and strict about
//! conditional writes.

#![cfg(feature = "gcp")]

#[path = "support/fake_gcs.rs"]
mod fake_gcs;

use bytes::Bytes;
use fake_gcs::{FakeGcs, SeenRequest};
use futures::TryStreamExt;
use object_store::gcp::GoogleCloudStorage;
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, Error, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, UpdateVersion, WriteMultipart,
};
use std::sync::Arc;

const GEN: &str = "x-goog-if-generation-match";

fn client(fake: &FakeGcs) -> GoogleCloudStorage {
    fake.client("b")
}

fn put_mode(mode: PutMode) -> PutOptions {
    PutOptions {
        mode,
        ..Default::default()
    }
}

fn update(version: Option<String>) -> PutOptions {
    put_mode(PutMode::Update(UpdateVersion {
        e_tag: None,
        version,
    }))
}

fn writes(fake: &FakeGcs, method: &str) -> Vec<SeenRequest> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == method)
        .collect()
}

#[tokio::test]
async fn client_never_fetches_a_token() {
    // `with_skip_signature(true)` alone is not enough: object_store 0.14.2 skips credentials
    // for GET/HEAD/list/copy/complete/abort, but PUT, DELETE and multipart initiate
    // (`Request::send` in src/gcp/client.rs) always call the credential provider, which
    // without a key falls back to the GCE metadata server (169.254.169.254). `FakeGcs::client`
    // therefore also passes a service-account key with `"disable_oauth": true`, which makes
    // the provider a static empty token.
    let fake = FakeGcs::start().await;
    let store = client(&fake);
    store.put(&Path::from("x"), "1".into()).await.unwrap();
    store.get(&Path::from("x")).await.unwrap();
    store.delete(&Path::from("x")).await.unwrap();
    // No bearer token was ever obtained: writes carry an empty "Bearer " header, reads none.
    for r in fake.requests() {
        let auth = r.header("authorization").unwrap_or("Bearer ").trim();
        assert_eq!(auth, "Bearer", "{r:?}");
    }
}

#[tokio::test]
async fn put_get_head_delete_list_round_trip() {
    let fake = FakeGcs::start().await;
    let store = client(&fake);
    let path = Path::from("dir/sub dir/obj+1.bin");
    let data = Bytes::from_static(b"hello, fake gcs");

    let put = store.put(&path, data.clone().into()).await.unwrap();
    assert!(put.e_tag.as_deref().unwrap().starts_with('"'));
    let version = put.version.clone().expect("x-goog-generation on PUT");
    assert_eq!(fake.object("b", "dir/sub dir/obj+1.bin").unwrap(), data);
    assert_eq!(
        fake.generation("b", "dir/sub dir/obj+1.bin")
            .unwrap()
            .to_string(),
        version
    );

    let got = store.get(&path).await.unwrap();
    assert_eq!(got.meta.version.as_deref(), Some(version.as_str()));
    assert_eq!(got.meta.e_tag, put.e_tag);
    assert_eq!(got.bytes().await.unwrap(), data);

    let meta = store.head(&path).await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
    assert_eq!(meta.e_tag, put.e_tag);
    assert_eq!(meta.version.as_deref(), Some(version.as_str()));

    let range = store.get_range(&path, 7..10).await.unwrap();
    assert_eq!(range, data.slice(7..10));
    let opts = GetOptions {
        range: Some(GetRange::Suffix(3)),
        ..Default::default()
    };
    let tail = store.get_opts(&path, opts).await.unwrap();
    assert_eq!(tail.range, 12..15);
    assert_eq!(tail.bytes().await.unwrap(), data.slice(12..));
    let opts = GetOptions {
        range: Some(GetRange::Offset(100)),
        ..Default::default()
    };
    assert!(store.get_opts(&path, opts).await.is_err());

    // Reads of a specific generation (`?generation=N`), and a stale one.
    let opts = GetOptions {
        version: Some(version.clone()),
        ..Default::default()
    };
    store.get_opts(&path, opts).await.unwrap();
    let opts = GetOptions {
        version: Some("1".into()),
        ..Default::default()
    };
    assert!(matches!(
        store.get_opts(&path, opts).await,
        Err(Error::NotFound { .. })
    ));
    let opts = GetOptions {
        if_none_match: put.e_tag.clone(),
        ..Default::default()
    };
    assert!(matches!(
        store.get_opts(&path, opts).await,
        Err(Error::NotModified { .. })
    ));
    let opts = GetOptions {
        if_match: Some("\"nope\"".into()),
        ..Default::default()
    };
    assert!(matches!(
        store.get_opts(&path, opts).await,
        Err(Error::Precondition { .. })
    ));

    store.put(&Path::from("dir/top"), "t".into()).await.unwrap();
    let all: Vec<_> = store
        .list(Some(&Path::from("dir")))
        .try_collect()
        .await
        .unwrap();
    let mut names: Vec<_> = all.iter().map(|m| m.location.to_string()).collect();
    names.sort();
    assert_eq!(names, ["dir/sub dir/obj+1.bin", "dir/top"]);
    assert!(all.iter().all(|m| m.e_tag.is_some()));
    let listed = store
        .list_with_delimiter(Some(&Path::from("dir")))
        .await
        .unwrap();
    assert_eq!(listed.common_prefixes, [Path::from("dir/sub dir")]);
    assert_eq!(listed.objects.len(), 1);
    assert_eq!(listed.objects[0].location, Path::from("dir/top"));
    assert_eq!(listed.objects[0].size, 1);

    store.delete(&path).await.unwrap();
    assert!(fake.object("b", "dir/sub dir/obj+1.bin").is_none());
    assert!(matches!(
        store.get(&path).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.head(&path).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.delete(&path).await,
        Err(Error::NotFound { .. })
    ));
    let last = fake.requests().pop().unwrap();
    assert_eq!((last.method.as_str(), last.status), ("DELETE", 404));
    // object_store percent-encodes the whole object name, '/' included.
    assert_eq!(last.uri, "/b/dir%2Fsub%20dir%2Fobj%2B1%2Ebin");
}

#[tokio::test]
async fn listing_paginates() {
    let fake = FakeGcs::start().await;
    let store = client(&fake);
    let names = [
        "a/1", "a/2", "a/x/1", "a/x/2", "a/y/1", "a0", "b/1", "b/2", "c",
    ];
    for n in names {
        fake.set_object("b", n, Bytes::from(n));
    }
    fake.set_list_page_size(2);
    fake.clear_requests();

    let all: Vec<_> = store.list(None).try_collect().await.unwrap();
    let got: Vec<_> = all.iter().map(|m| m.location.to_string()).collect();
    assert_eq!(got, names);
    let lists = writes(&fake, "GET");
    assert_eq!(lists.len(), 5, "9 objects at 2 a page");
    assert!(lists[0].query().get("list-type").is_some_and(|v| v == "2"));
    assert!(lists[1..]
        .iter()
        .all(|r| r.query().contains_key("continuation-token")));

    let under_a: Vec<_> = store
        .list(Some(&Path::from("a")))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(under_a.len(), 5);

    fake.set_list_page_size(1);
    let root = store.list_with_delimiter(None).await.unwrap();
    let prefixes: Vec<_> = root.common_prefixes.iter().map(|p| p.to_string()).collect();
    assert_eq!(prefixes, ["a", "b"]);
    let objects: Vec<_> = root
        .objects
        .iter()
        .map(|m| m.location.to_string())
        .collect();
    assert_eq!(objects, ["a0", "c"]);
    let a = store
        .list_with_delimiter(Some(&Path::from("a")))
        .await
        .unwrap();
    assert_eq!(a.common_prefixes, [Path::from("a/x"), Path::from("a/y")]);
    assert_eq!(a.objects.len(), 2);

    let after: Vec<_> = store
        .list_with_offset(None, &Path::from("a0"))
        .try_collect()
        .await
        .unwrap();
    let after: Vec<_> = after.iter().map(|m| m.location.to_string()).collect();
    assert_eq!(after, ["b/1", "b/2", "c"]);
}

#[tokio::test]
async fn create_twice_is_already_exists() {
    let fake = FakeGcs::start().await;
    let store = client(&fake);
    let path = Path::from("once");
    store
        .put_opts(&path, "first".into(), put_mode(PutMode::Create))
        .await
        .unwrap();
    let err = store
        .put_opts(&path, "second".into(), put_mode(PutMode::Create))
        .await;
    assert!(matches!(err, Err(Error::AlreadyExists { .. })), "{err:?}");
    assert_eq!(fake.object("b", "once").unwrap(), "first");

    let puts = writes(&fake, "PUT");
    assert_eq!(puts.len(), 2, "a failed Create must not be retried");
    assert!(puts.iter().all(|r| r.header(GEN) == Some("0")));
    assert_eq!((puts[0].status, puts[1].status), (200, 412));
    assert!(puts.iter().all(|r| r.header("content-length").is_some()));
}

#[tokio::test]
async fn update_needs_the_current_generation() {
    let fake = FakeGcs::start().await;
    let store = client(&fake);
    let path = Path::from("cas");
    let v1 = store
        .put_opts(&path, "v1".into(), put_mode(PutMode::Create))
        .await
        .unwrap();
    let v2 = store
        .put_opts(&path, "v2".into(), update(v1.version.clone()))
        .await
        .unwrap();
    assert_ne!(v1.version, v2.version);
    let stale = store
        .put_opts(&path, "v3".into(), update(v1.version.clone()))
        .await;
    assert!(
        matches!(stale, Err(Error::Precondition { .. })),
        "{stale:?}"
    );
    assert_eq!(fake.object("b", "cas").unwrap(), "v2");

    let puts = writes(&fake, "PUT");
    assert_eq!(puts[1].header(GEN), v1.version.as_deref());
    assert_eq!(puts[2].header(GEN), v1.version.as_deref());
    assert_eq!((puts[1].status, puts[2].status), (200, 412));

    // Update of an absent object fails; Update without a version is refused locally.
    let absent = store
        .put_opts(&Path::from("nope"), "x".into(), update(v2.version.clone()))
        .await;
    assert!(
        matches!(absent, Err(Error::Precondition { .. })),
        "{absent:?}"
    );
    fake.clear_requests();
    assert!(store
        .put_opts(&path, "x".into(), update(None))
        .await
        .is_err());
    assert!(fake.requests().is_empty());

    // An out-of-band write bumps the generation, so the client's version goes stale.
    fake.set_object("b", "cas", Bytes::from_static(b"tampered"));
    let stale = store
        .put_opts(&path, "v4".into(), update(v2.version.clone()))
        .await;
    assert!(
        matches!(stale, Err(Error::Precondition { .. })),
        "{stale:?}"
    );
    let fresh = fake.generation("b", "cas").map(|g| g.to_string());
    store
        .put_opts(&path, "v4".into(), update(fresh))
        .await
        .unwrap();
    assert_eq!(fake.object("b", "cas").unwrap(), "v4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_have_one_winner() {
    let fake = FakeGcs::start().await;
    let store = Arc::new(client(&fake));
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let payload = PutPayload::from(format!("writer {i}"));
                store
                    .put_opts(&Path::from("race"), payload, put_mode(PutMode::Create))
                    .await
            })
        })
        .collect();
    let (mut won, mut lost) = (Vec::new(), 0);
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(_) => won.push(i),
            Err(Error::AlreadyExists { .. }) => lost += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((won.len(), lost), (1, 31));
    assert_eq!(
        fake.object("b", "race").unwrap(),
        format!("writer {}", won[0])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_have_one_winner() {
    let fake = FakeGcs::start().await;
    let store = Arc::new(client(&fake));
    let base = store.put(&Path::from("race"), "base".into()).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (store, version) = (store.clone(), base.version.clone());
            tokio::spawn(async move {
                let payload = PutPayload::from(format!("writer {i}"));
                store
                    .put_opts(&Path::from("race"), payload, update(version))
                    .await
            })
        })
        .collect();
    let (mut won, mut lost) = (Vec::new(), 0);
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(_) => won.push(i),
            Err(Error::Precondition { .. }) => lost += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((won.len(), lost), (1, 31));
    assert_eq!(
        fake.object("b", "race").unwrap(),
        format!("writer {}", won[0])
    );
}

#[tokio::test]
async fn multipart_is_invisible_until_complete() {
    let fake = FakeGcs::start().await;
    let store = client(&fake);
    let path = Path::from("big/blob");
    let data: Vec<u8> = (0..12 * 1024 * 1024 + 12345)
        .map(|i| (i * 31 % 251) as u8)
        .collect();

    let mut w = WriteMultipart::new(store.put_multipart(&path).await.unwrap());
    w.write(&data);
    w.wait_for_capacity(0).await.unwrap(); // the two full 5 MiB parts are uploaded
    assert_eq!(fake.pending_uploads(), 1);
    assert!(matches!(
        store.head(&path).await,
        Err(Error::NotFound { .. })
    ));
    assert!(fake.object("b", "big/blob").is_none());
    let done = w.finish().await.unwrap();
    assert_eq!(fake.pending_uploads(), 0);
    assert!(done.e_tag.as_deref().unwrap().ends_with("-3\""), "{done:?}");

    let got = store.get(&path).await.unwrap();
    assert_eq!(got.meta.version, done.version);
    assert_eq!(got.meta.e_tag, done.e_tag);
    assert!(got.bytes().await.unwrap() == data);

    let reqs = fake.requests();
    let q = |r: &SeenRequest, k: &str| r.query().contains_key(k);
    assert!(reqs.iter().any(|r| r.method == "POST" && q(r, "uploads")));
    let parts = reqs
        .iter()
        .filter(|r| r.method == "PUT" && q(r, "partNumber"))
        .count();
    assert_eq!(parts, 3);
    assert!(reqs
        .iter()
        .any(|r| r.method == "POST" && q(r, "uploadId") && r.status == 200));

    // Abort discards the parts and leaves nothing behind.
    let mut w = WriteMultipart::new(store.put_multipart(&Path::from("gone")).await.unwrap());
    w.write(&data[..6 * 1024 * 1024]);
    w.wait_for_capacity(0).await.unwrap();
    w.abort().await.unwrap();
    assert_eq!(fake.pending_uploads(), 0);
    assert!(fake.object("b", "gone").is_none());
}

#[tokio::test]
async fn copy_create_onto_existing_is_already_exists() {
    let fake = FakeGcs::start().await;
    let store = client(&fake);
    let (a, b) = (Path::from("src/a"), Path::from("dst/b"));
    store.put(&a, "A".into()).await.unwrap();
    store.put(&b, "B".into()).await.unwrap();
    fake.clear_requests();

    let err = store.copy_if_not_exists(&a, &b).await;
    assert!(matches!(err, Err(Error::AlreadyExists { .. })), "{err:?}");
    assert_eq!(fake.object("b", "dst/b").unwrap(), "B");
    let r = &fake.requests()[0];
    assert_eq!((r.method.as_str(), r.status), ("PUT", 412));
    assert_eq!(r.header("x-goog-copy-source"), Some("b/src%2Fa"));
    assert_eq!(r.header(GEN), Some("0"));

    store
        .copy_if_not_exists(&a, &Path::from("dst/c"))
        .await
        .unwrap();
    assert_eq!(fake.object("b", "dst/c").unwrap(), "A");
    store.copy(&a, &b).await.unwrap();
    assert_eq!(fake.object("b", "dst/b").unwrap(), "A");
    let opts = CopyOptions {
        mode: CopyMode::Create,
        ..Default::default()
    };
    let missing = store
        .copy_opts(&Path::from("missing"), &Path::from("dst/d"), opts)
        .await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
}
