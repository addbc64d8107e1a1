//! Sync through bucket remotes on real emulators (moto for S3, Azurite for Azure; started by
//! scripts/emulators.sh): clone, damaged objects refused, a folder remote copied into a bucket and
//! back, errors that name the cause, and the requests one push costs.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::json;
use strata_engine::Strata;
use strata_remote::{Remote, RemoteError, RemoteExt, RemotePath};
use strata_remote_s3::testing::{emulator, EmulatorRemote};
use strata_remote_s3::{BucketOptions, Env, ObjectStoreRemote, Provider, RequestCounter};
use strata_sync::{PullOptions, PushOptions, RemoteConfig, SyncError, SyncExt};

const PROVIDERS: [Provider; 2] = [Provider::S3, Provider::Azure];

fn bucket(e: &EmulatorRemote) -> ObjectStoreRemote {
    ObjectStoreRemote::open(&e.url, &BucketOptions::from_map(&e.options).unwrap()).unwrap()
}

fn db_with(dir: &std::path::Path, name: &str, e: &EmulatorRemote) -> Strata {
    let db = Strata::open(dir.join(name)).unwrap();
    db.remote_add_with(RemoteConfig {
        name: "hub".into(),
        url: e.url.clone(),
        options: e.options.clone(),
    })
    .unwrap();
    db
}

fn kv(db: &Strata) -> Vec<(String, strata_engine::Value)> {
    db.main().kv_list("").unwrap()
}

/// The object key of a remote path, under the remote's prefix.
fn key(r: &ObjectStoreRemote, rel: &str) -> Path {
    Path::parse(format!("{}/{rel}", r.url().prefix.as_ref().unwrap())).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn clone_from_a_bucket_and_refuse_what_is_not_a_remote() {
    common::init();
    for provider in PROVIDERS {
        let Some(e) = emulator(provider, "clone") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let a = db_with(dir.path(), "a", &e);
        for i in 0..50 {
            a.main().kv_put(&format!("k{i:02}"), i).unwrap();
        }
        a.push("hub", "main").await.unwrap();
        strata_sync::compact(&a, "hub", "main", &Default::default())
            .await
            .unwrap();
        a.main().kv_put("after", "snapshot").unwrap();
        a.push("hub", "main").await.unwrap();

        let (c, report) = strata_sync::clone_with_options(
            &e.url,
            &e.options,
            dir.path().join("c"),
            &Default::default(),
        )
        .await
        .unwrap();
        assert_eq!(report.branches.len(), 1);
        assert_eq!(kv(&c), kv(&a), "{provider:?}");
        // The clone's origin keeps the options, so it can push back.
        c.main().kv_put("from-clone", true).unwrap();
        c.push("origin", "main").await.unwrap();
        a.pull("hub", "main").await.unwrap();
        assert_eq!(kv(&c), kv(&a), "{provider:?}");

        // A bucket prefix holding other things is not a Strata remote.
        let other = emulator(provider, "not-a-remote").unwrap();
        let r = bucket(&other);
        r.store()
            .put(&key(&r, "photos/cat.jpg"), PutPayload::from_static(b"meow"))
            .await
            .unwrap();
        let err = strata_sync::clone_with_options(
            &other.url,
            &other.options,
            dir.path().join("x"),
            &Default::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, SyncError::NotAStrataRemote(_)),
            "{provider:?}: {err}"
        );
        assert!(err.to_string().contains(&other.url), "{err}");
        assert!(
            !dir.path().join("x").exists(),
            "a failed clone leaves nothing"
        );
        // A missing bucket is named as such.
        let missing = e.url.replacen("strata-test", "no-such-bucket-strata", 1);
        let err = strata_sync::clone_with_options(
            &missing,
            &e.options,
            dir.path().join("y"),
            &Default::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, SyncError::Remote(RemoteError::NotFound(ref m)) if m.contains("\"no-such-bucket-strata\" does not exist")),
            "{provider:?}: {err}"
        );
    }
}

/// Damaged objects in the bucket (flipped bytes, a cut-off blob, a garbage cursor head) are refused
/// with errors naming them, and nothing is applied.
#[tokio::test(flavor = "multi_thread")]
async fn damaged_objects_are_refused_by_name() {
    common::init();
    for provider in PROVIDERS {
        let Some(e) = emulator(provider, "damaged") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (db_with(dir.path(), "a", &e), db_with(dir.path(), "b", &e));
        a.main().kv_put("base", 1).unwrap();
        a.push("hub", "main").await.unwrap();
        b.pull("hub", "main").await.unwrap();
        a.main()
            .kv_put("next", json!({"big": "x".repeat(5000)}))
            .unwrap();
        let pushed = a.push("hub", "main").await.unwrap();
        let blob = pushed.blob.unwrap();
        let r = bucket(&e);
        let good = r
            .get_bytes(&RemotePath::parse(&blob).unwrap())
            .await
            .unwrap();
        let before = kv(&b);

        let mut flipped = good.to_vec();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x40;
        for (label, bytes) in [
            ("flipped", Bytes::from(flipped)),
            ("truncated", good.slice(..good.len() - 7)),
        ] {
            r.store()
                .put(&key(&r, &format!("blobs/{blob}")), PutPayload::from(bytes))
                .await
                .unwrap();
            let err = b.pull("hub", "main").await.unwrap_err();
            match &err {
                SyncError::Corrupt { what, .. } => assert!(what.contains(&blob), "{label}: {err}"),
                other => {
                    panic!("{provider:?} {label}: expected Corrupt naming {blob}, got {other:?}")
                }
            }
            assert_eq!(
                kv(&b),
                before,
                "{provider:?} {label}: something was applied"
            );
        }
        r.store()
            .put(&key(&r, &format!("blobs/{blob}")), PutPayload::from(good))
            .await
            .unwrap();
        b.pull("hub", "main").await.unwrap();
        assert_eq!(kv(&b), kv(&a));

        // A garbage cursor head.
        let head = key(&r, "cursors/branches/main/HEAD");
        let saved = r.store().get(&head).await.unwrap().bytes().await.unwrap();
        r.store()
            .put(&head, PutPayload::from_static(b"not a cursor"))
            .await
            .unwrap();
        let err = b.pull("hub", "main").await.unwrap_err();
        assert!(
            err.to_string().contains("cursors/branches/main/HEAD"),
            "{provider:?}: {err}"
        );
        assert!(
            matches!(err, SyncError::Remote(RemoteError::Corrupt(_))),
            "{err:?}"
        );
        // A head that decodes but holds a broken cursor document.
        r.store()
            .put(
                &head,
                PutPayload::from(strata_remote::layout::encode_head(99, b"{\"oops\":")),
            )
            .await
            .unwrap();
        let err = b.pull("hub", "main").await.unwrap_err();
        assert!(
            matches!(err, SyncError::Corrupt { .. }),
            "{provider:?}: {err:?}"
        );
        r.store().put(&head, PutPayload::from(saved)).await.unwrap();
        assert!(b.pull("hub", "main").await.is_ok());
        assert_eq!(kv(&b), kv(&a));
    }
}

/// A folder remote's files copied into a bucket as they are (what `rclone copy` does) form a valid
/// bucket remote, and a bucket's objects downloaded into a folder form a valid folder remote.
#[tokio::test(flavor = "multi_thread")]
async fn folder_and_bucket_remotes_copy_both_ways() {
    common::init();
    for provider in PROVIDERS {
        let Some(e) = emulator(provider, "copy") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("folder-remote");
        let a = Strata::open(dir.path().join("a")).unwrap();
        a.remote_add("hub", folder.to_str().unwrap()).unwrap();
        for i in 0..20 {
            a.main().kv_put(&format!("k{i}"), i).unwrap();
            if i % 5 == 4 {
                a.push("hub", "main").await.unwrap();
            }
        }
        a.fork_branch("main", "side").unwrap();
        a.on("side").event_append("made", "on side").unwrap();
        a.push("hub", "side").await.unwrap();

        // Folder -> bucket, file for file.
        let r = bucket(&e);
        for file in walk(&folder) {
            let rel = file
                .strip_prefix(&folder)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            r.store()
                .put(
                    &key(&r, &rel),
                    PutPayload::from(std::fs::read(&file).unwrap()),
                )
                .await
                .unwrap();
        }
        let (c, _) = strata_sync::clone_with_options(
            &e.url,
            &e.options,
            dir.path().join("c"),
            &Default::default(),
        )
        .await
        .unwrap();
        assert_eq!(kv(&c), kv(&a), "{provider:?}");
        assert_eq!(c.on("side").event_len().unwrap(), 1);
        // Work continues in the bucket.
        c.main().kv_put("via-bucket", 1).unwrap();
        c.push("origin", "main").await.unwrap();

        // Bucket -> a new folder, object for object.
        let back = dir.path().join("back");
        let prefix = r.url().prefix.as_ref().unwrap().to_string();
        let objects: Vec<_> = r
            .store()
            .list(Some(&Path::parse(&prefix).unwrap()))
            .try_collect()
            .await
            .unwrap();
        for o in objects {
            let rel = &o.location.as_ref()[prefix.len() + 1..];
            let dest = back.join(rel);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::write(
                &dest,
                r.store()
                    .get(&o.location)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap(),
            )
            .unwrap();
        }
        let (d, _) = strata_sync::clone(back.to_str().unwrap(), dir.path().join("d"))
            .await
            .unwrap();
        assert_eq!(kv(&d), kv(&c), "{provider:?}");
        assert_eq!(d.main().kv_get("via-bucket").unwrap(), Some(1.into()));
        // And the folder copy takes pushes too.
        d.main().kv_put("via-folder", 2).unwrap();
        d.push("origin", "main").await.unwrap();
        a.remote_add("back", back.to_str().unwrap()).unwrap();
        a.pull("back", "main").await.unwrap();
        assert_eq!(kv(&a), kv(&d));
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

/// What one push of one small change costs in HTTP requests (what the bucket bills), and a pull of it.
#[tokio::test(flavor = "multi_thread")]
async fn a_small_push_is_a_handful_of_requests() {
    common::init();
    for provider in PROVIDERS {
        let Some(e) = emulator(provider, "requests") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let counter = RequestCounter::new();
        let remote: Arc<dyn Remote> = Arc::new(
            ObjectStoreRemote::open_counted(
                &e.url,
                &BucketOptions::from_map(&e.options).unwrap(),
                &Env::process(),
                &counter,
            )
            .unwrap(),
        );
        let (a, b) = (db_with(dir.path(), "a", &e), db_with(dir.path(), "b", &e));
        for i in 0..1000 {
            a.main().kv_put(&format!("k{i}"), i).unwrap();
        }
        strata_sync::push_to(&a, &*remote, "hub", "main", &PushOptions::default())
            .await
            .unwrap();
        strata_sync::pull_from(&b, &*remote, "hub", "main", &PullOptions::default())
            .await
            .unwrap();

        a.main().kv_put("k7", "changed").unwrap();
        counter.reset();
        strata_sync::push_to(&a, &*remote, "hub", "main", &PushOptions::default())
            .await
            .unwrap();
        let push = counter.by_method();
        counter.reset();
        strata_sync::pull_from(&b, &*remote, "hub", "main", &PullOptions::default())
            .await
            .unwrap();
        let pull = counter.by_method();
        counter.reset();
        strata_sync::pull_from(&b, &*remote, "hub", "main", &PullOptions::default())
            .await
            .unwrap();
        let noop = counter.by_method();
        eprintln!("{provider:?}: push {push:?}, pull {pull:?}, no-op pull {noop:?}");
        // Read the cursor, put the blob, compare-and-swap the cursor.
        assert_eq!(
            push,
            BTreeMap::from([("GET".into(), 1), ("PUT".into(), 2)]),
            "{provider:?}"
        );
        // Read the cursor, get the blob.
        assert_eq!(pull, BTreeMap::from([("GET".into(), 2)]), "{provider:?}");
        assert_eq!(noop, BTreeMap::from([("GET".into(), 1)]), "{provider:?}");
        assert_eq!(b.main().kv_get("k7").unwrap(), Some("changed".into()));
    }
}
