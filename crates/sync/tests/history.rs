//! Sync keeps history (issue 9): every local version travels as its own remote version with its
//! time, kind, message and author; clones and pulls get the whole log; a push after a pull replays the
//! branch's own versions on top of the remote; compaction packs blobs without dropping versions, drops
//! them only when asked (`squash_before`), and keeps a snapshot for shallow clones.

mod common;

use common::*;
use proptest::prelude::*;
use serde_json::json;
use strata_engine::{CommitInfo, Kind, MergeStrategy, Rev, Strata, Value};
use strata_remote::{InMemoryRemote, Remote};
use strata_sync::{
    pull_from, push_to, CloneOptions, CompactOptions, PullOptions, PushOptions, RemoteConfig,
    SyncError, SyncExt,
};

fn add_hub(db: &Strata, url: &str) {
    db.remote_add_with(RemoteConfig {
        name: "hub".into(),
        url: url.into(),
        options: Default::default(),
    })
    .unwrap();
}

/// A database with a folder remote `hub`, plus the folder's URL.
fn agent(dir: &std::path::Path, name: &str) -> (Strata, String) {
    let url = dir.join("remote").to_str().unwrap().to_string();
    let db = Strata::open(dir.join(name)).unwrap();
    add_hub(&db, &url);
    (db, url)
}

/// The log without what differs between a source and its replica by design: nothing (the kind,
/// message, author, time and entry count all travel).
fn log(db: &Strata, branch: &str) -> Vec<CommitInfo> {
    db.log(branch, usize::MAX).unwrap()
}

fn versions(db: &Strata, branch: &str) -> Vec<u64> {
    let mut v: Vec<u64> = log(db, branch).iter().map(|c| c.version).collect();
    v.reverse();
    v
}

fn history(db: &Strata, branch: &str, key: &str) -> Vec<(u64, Option<Value>)> {
    db.history(branch, "default", Kind::Kv, key)
        .unwrap()
        .into_iter()
        .map(|h| (h.version, h.value))
        .collect()
}

fn put(db: &Strata, key: &str, v: serde_json::Value, msg: &str) -> u64 {
    let mut tx = db.begin("main").unwrap();
    tx.kv_put(key, v).unwrap();
    tx.set_message(msg);
    tx.commit().unwrap().unwrap()
}

async fn clone_to(url: &str, dir: &std::path::Path, what: &CloneOptions) -> Strata {
    strata_sync::clone_full(
        url,
        &Default::default(),
        dir,
        &strata_sync::Progress::none(),
        what,
    )
    .await
    .unwrap()
    .0
}

#[tokio::test]
async fn seed_walkthrough_numbers_versions_as_the_seed_does() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (a, url) = agent(dir.path(), "a");
    a.main()
        .kv_put("config", json!({"model": "gpt-4", "temperature": 0.7}))
        .unwrap();
    a.main()
        .json_put("notes/research.md", json!("# Research"))
        .unwrap();
    a.main()
        .kv_put("task:1", json!({"status": "done"}))
        .unwrap();
    a.main()
        .kv_put("task:2", json!({"status": "done"}))
        .unwrap();
    let p = a.push("hub", "main").await.unwrap();
    assert_eq!((p.remote_version, p.versions), (4, 4), "first push: 1..4");

    let b = Strata::open(dir.path().join("b")).unwrap();
    add_hub(&b, &url);
    b.pull_with(
        "hub",
        "main",
        &PullOptions {
            strategy: MergeStrategy::LastWriterWins,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(versions(&b, "main"), vec![1, 2, 3, 4]);

    a.main()
        .kv_put("task:3", json!({"status": "done"}))
        .unwrap();
    a.main()
        .kv_put("task:4", json!({"status": "done"}))
        .unwrap();
    let p = a.push("hub", "main").await.unwrap();
    assert_eq!(
        (p.remote_version, p.versions),
        (6, 2),
        "A's second push: 5..6"
    );

    b.main()
        .kv_put("task:5", json!({"status": "done"}))
        .unwrap();
    b.main()
        .kv_put("task:6", json!({"status": "done"}))
        .unwrap();
    assert!(matches!(
        b.push("hub", "main").await,
        Err(SyncError::Rejected(_))
    ));
    b.pull_with(
        "hub",
        "main",
        &PullOptions {
            strategy: MergeStrategy::LastWriterWins,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let p = b.push("hub", "main").await.unwrap();
    assert_eq!(
        (p.remote_version, p.versions),
        (8, 2),
        "B's push of its own two tasks: 7..8 (the merge of A's work is not pushed again)"
    );

    let c = clone_to(&url, &dir.path().join("c"), &Default::default()).await;
    assert_eq!(versions(&c, "main"), (1..=8).collect::<Vec<_>>());
    assert_eq!(
        contents(&c, &Rev::head("main")),
        contents(&b, &Rev::head("main"))
    );
    // Each remote version is one task, readable as of that version.
    assert_eq!(
        c.get_at(&Rev::at("main", 7), "default", Kind::Kv, "task:5")
            .unwrap(),
        Some(json!({"status": "done"}).into())
    );
    assert_eq!(
        c.get_at(&Rev::at("main", 7), "default", Kind::Kv, "task:6")
            .unwrap(),
        None
    );
    assert_eq!(
        c.get_at(&Rev::at("main", 5), "default", Kind::Kv, "task:4")
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_clone_has_the_sources_log_history_messages_and_authors() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (a, url) = agent(dir.path(), "a");
    a.set_config("user.name", Some("Ada")).unwrap();
    put(&a, "k", json!(1), "first");
    put(&a, "k", json!(2), "second");
    {
        let mut tx = a.begin("main").unwrap();
        tx.kv_put("k", json!(3)).unwrap();
        tx.event_append("done", json!({"n": 3})).unwrap();
        tx.set_message("third");
        tx.set_author("Grace");
        tx.commit().unwrap();
    }
    a.push("hub", "main").await.unwrap();
    put(&a, "k", json!(4), "fourth");
    a.main().kv_delete("k").unwrap();
    a.push("hub", "main").await.unwrap();

    let b = clone_to(&url, &dir.path().join("b"), &Default::default()).await;
    assert_eq!(
        log(&b, "main"),
        log(&a, "main"),
        "the clone's log is the source's"
    );
    let l = log(&b, "main");
    assert_eq!(l[2].message, "third");
    assert_eq!(l[2].author.as_deref(), Some("Grace"));
    assert_eq!(
        l[3].author.as_deref(),
        Some("Ada"),
        "the config's user.name"
    );
    assert_eq!(l[4].message, "first");
    assert_eq!(
        history(&b, "main", "k"),
        vec![
            (5, None),
            (4, Some(json!(4).into())),
            (3, Some(json!(3).into())),
            (2, Some(json!(2).into())),
            (1, Some(json!(1).into())),
        ]
    );
    // Time travel on the clone.
    assert_eq!(
        b.get_at(&Rev::parse("main@2").unwrap(), "default", Kind::Kv, "k")
            .unwrap(),
        Some(json!(2).into())
    );
    // The cursor summarises each push for the hub's page.
    let remote = strata_sync::open_url(&url).unwrap();
    let doc = cursor_doc(&*remote, "main").await.unwrap();
    assert_eq!(doc.format, strata_sync::layout::CURSOR_FORMAT);
    assert_eq!(doc.pushes.len(), 2);
    assert_eq!((doc.pushes[0].from, doc.pushes[0].to), (0, 3));
    assert_eq!(doc.pushes[0].message.as_deref(), Some("third"));
    assert_eq!(doc.pushes[0].author.as_deref(), Some("Grace"));
    assert_eq!((doc.pushes[1].from, doc.pushes[1].to), (3, 5));

    // A pull brings every version too.
    put(&a, "p", json!("x"), "after clone 1");
    put(&a, "p", json!("y"), "after clone 2");
    a.push("hub", "main").await.unwrap();
    b.pull_with(
        "origin",
        "main",
        &PullOptions {
            strategy: MergeStrategy::LastWriterWins,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(log(&b, "main"), log(&a, "main"));
    assert_eq!(history(&b, "main", "p").len(), 2);
}

#[tokio::test]
async fn push_after_a_conflicting_pull_makes_the_remote_equal_the_branch() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (a, url) = agent(dir.path(), "a");
    put(&a, "shared", json!("base"), "base");
    a.push("hub", "main").await.unwrap();
    let b = clone_to(&url, &dir.path().join("b"), &Default::default()).await;

    put(&a, "shared", json!("from A"), "A");
    a.push("hub", "main").await.unwrap();
    put(&b, "shared", json!("from B"), "B");
    put(&b, "only-b", json!(1), "B2");
    b.pull_with(
        "origin",
        "main",
        &PullOptions {
            strategy: MergeStrategy::LastWriterWins,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Last writer wins: the remote's value is kept here.
    assert_eq!(
        b.main().kv_get("shared").unwrap(),
        Some(json!("from A").into())
    );
    let p = b.push("origin", "main").await.unwrap();
    // B's two versions replayed (3, 4), then one version puts back what the merge decided (5).
    assert_eq!((p.remote_version, p.versions), (5, 3));
    let c = clone_to(&url, &dir.path().join("c"), &Default::default()).await;
    assert_eq!(
        contents(&c, &Rev::head("main")),
        contents(&b, &Rev::head("main")),
        "the remote equals the pushing branch"
    );
    let l = log(&c, "main");
    assert_eq!(l[0].kind, "merge");
    assert_eq!(l[1].message, "B2");
    assert_eq!(l[2].message, "B");
    assert_eq!(
        history(&c, "main", "shared")
            .into_iter()
            .map(|(v, _)| v)
            .collect::<Vec<_>>(),
        vec![5, 3, 2, 1]
    );
    // And A pulls it cleanly.
    a.pull_with(
        "hub",
        "main",
        &PullOptions {
            strategy: MergeStrategy::Strict,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        contents(&a, &Rev::head("main")),
        contents(&b, &Rev::head("main"))
    );
}

#[tokio::test]
async fn packing_keeps_every_version_and_few_blobs() {
    init();
    let remote = InMemoryRemote::new();
    let a = Strata::open_temp().unwrap();
    let opts = PushOptions {
        pack_fanout: 4,
        ..Default::default()
    };
    for i in 0..40u64 {
        put(&a, &format!("k{}", i % 7), json!(i), &format!("m{i}"));
        push_to(&a, &remote, "hub", "main", &opts).await.unwrap();
    }
    let doc = cursor_doc(&remote, "main").await.unwrap();
    assert_eq!(doc.version, 40);
    // 40 pushes with fanout 4: two level-2 packs (16 versions each), two level-1 packs (4 each).
    let levels: Vec<u32> = doc.deltas.iter().map(|d| d.level).collect();
    assert_eq!(levels, vec![2, 2, 1, 1], "blobs: {:?}", doc.deltas);
    let spans: Vec<(u64, u64)> = doc.deltas.iter().map(|d| (d.from, d.to)).collect();
    assert_eq!(spans, vec![(0, 16), (16, 32), (32, 36), (36, 40)]);
    assert!(doc.snapshot.is_none() && doc.shallow.is_none());
    let b = Strata::open_temp().unwrap();
    pull_from(&b, &remote, "hub", "main", &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(versions(&b, "main"), (1..=40).collect::<Vec<_>>());
    assert_eq!(log(&b, "main"), log(&a, "main"));
    assert_eq!(history(&b, "main", "k0").len(), 6);
}

#[tokio::test]
async fn compact_packs_and_writes_a_shallow_snapshot_squash_drops_only_when_asked() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (a, url) = agent(dir.path(), "a");
    for i in 1..=10u64 {
        put(&a, &format!("k{}", i % 3), json!(i), &format!("v{i}"));
        a.push("hub", "main").await.unwrap();
    }
    let r = strata_sync::compact(&a, "hub", "main", &CompactOptions::default())
        .await
        .unwrap();
    // Ten pushes with the default fanout of 8: one pack of eight, then two deltas.
    assert_eq!((r.blobs_before, r.blobs_after), (3, 1));
    assert_eq!((r.history_from, r.versions_dropped), (0, 0));
    assert!(r.snapshot.is_some());
    for i in 11..=13u64 {
        put(&a, "tail", json!(i), &format!("v{i}"));
        a.push("hub", "main").await.unwrap();
    }
    // Full clone: every version.
    let full = clone_to(&url, &dir.path().join("full"), &Default::default()).await;
    assert_eq!(versions(&full, "main"), (1..=13).collect::<Vec<_>>());
    // Shallow clone: from the snapshot at 10, then 11..13.
    let shallow = clone_to(
        &url,
        &dir.path().join("shallow"),
        &CloneOptions {
            depth: Some(3),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(versions(&shallow, "main"), vec![10, 11, 12, 13]);
    assert_eq!(log(&shallow, "main")[3].kind, "snapshot");
    assert_eq!(
        contents(&shallow, &Rev::head("main")),
        contents(&a, &Rev::head("main"))
    );
    // Too shallow for the snapshot: the whole history rather than a wrong one.
    let deep = clone_to(
        &url,
        &dir.path().join("deep"),
        &CloneOptions {
            depth: Some(2),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(versions(&deep, "main").len(), 13);
    // A shallow clone cannot squash (it lacks the old states), and says why.
    let err = strata_sync::compact(
        &shallow,
        "origin",
        "main",
        &CompactOptions {
            squash_before: Some(5),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("shallow clone"), "{err}");
    // Squash before 8: history starts there, and the state is intact.
    let r = strata_sync::compact(
        &a,
        "hub",
        "main",
        &CompactOptions {
            squash_before: Some(8),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((r.history_from, r.versions_dropped), (8, 8));
    let squashed = clone_to(&url, &dir.path().join("squashed"), &Default::default()).await;
    assert_eq!(versions(&squashed, "main"), (8..=13).collect::<Vec<_>>());
    assert_eq!(
        contents(&squashed, &Rev::head("main")),
        contents(&a, &Rev::head("main"))
    );
    // The database that was already synced keeps pushing and pulling across the squash.
    put(&a, "after", json!(1), "after squash");
    a.push("hub", "main").await.unwrap();
    full.pull_with(
        "origin",
        "main",
        &PullOptions {
            strategy: MergeStrategy::Strict,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        contents(&full, &Rev::head("main")),
        contents(&a, &Rev::head("main"))
    );
}

// ----- property test: after every push, the remote equals the pushing branch -------------------------

#[derive(Clone, Debug)]
enum Op {
    Put(usize, u8, u8),
    Delete(usize, u8),
    Event(usize, u8),
    Push(usize),
    Pull(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..6u8, any::<u8>()).prop_map(|(c, k, v)| Op::Put(c, k, v)),
        1 => (0..2usize, 0..6u8).prop_map(|(c, k)| Op::Delete(c, k)),
        2 => (0..2usize, any::<u8>()).prop_map(|(c, v)| Op::Event(c, v)),
        2 => (0..2usize).prop_map(Op::Push),
        2 => (0..2usize, any::<bool>()).prop_map(|(c, s)| Op::Pull(c, s)),
    ]
}

async fn run_history_model(ops: Vec<Op>) {
    init();
    let remote = InMemoryRemote::new();
    let clients = [Strata::open_temp().unwrap(), Strata::open_temp().unwrap()];
    let mut pushed_versions = 0u64;
    for op in ops {
        match op {
            Op::Put(c, k, v) => {
                put(&clients[c], &format!("k{k}"), json!(v), "put");
            }
            Op::Delete(c, k) => {
                clients[c].main().kv_delete(&format!("k{k}")).unwrap();
            }
            Op::Event(c, v) => {
                clients[c].main().event_append("e", json!(v)).unwrap();
            }
            Op::Push(c) => {
                let db = &clients[c];
                match push_to(db, &remote, "hub", "main", &PushOptions::default()).await {
                    Ok(p) => {
                        let doc = cursor_doc(&remote, "main").await;
                        if let Some(doc) = doc {
                            assert_eq!(doc.version, p.remote_version);
                            assert!(doc.version >= pushed_versions, "the remote never goes back");
                            pushed_versions = doc.version;
                        }
                        // The remote equals the branch, events included.
                        assert_eq!(
                            remote_contents(&remote).await,
                            branch_contents(db, "main"),
                            "after a push the remote must equal the pushing branch"
                        );
                    }
                    Err(SyncError::Rejected(_)) => {}
                    Err(e) => panic!("push: {e}"),
                }
            }
            Op::Pull(c, strict) => {
                let opts = PullOptions {
                    strategy: if strict {
                        MergeStrategy::Strict
                    } else {
                        MergeStrategy::LastWriterWins
                    },
                    ..Default::default()
                };
                match pull_from(&clients[c], &remote, "hub", "main", &opts).await {
                    Ok(_)
                    | Err(SyncError::Conflicts(_))
                    | Err(SyncError::NotFound(_))
                    | Err(SyncError::NotAStrataRemote(_)) => {}
                    Err(e) => panic!("pull: {e}"),
                }
            }
        }
    }
    // A fresh replica of the remote has one version per remote version that carried entries, and its
    // log matches the remote's versions in order.
    if pushed_versions > 0 {
        let fresh = Strata::open_temp().unwrap();
        pull_from(&fresh, &remote, "hub", "main", &PullOptions::default())
            .await
            .unwrap();
        let v = versions(&fresh, "main");
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(v.last().copied(), Some(pushed_versions));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn the_remote_equals_the_pushing_branch_after_every_push(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        block_on(run_history_model(ops));
    }
}

/// Keeps the imports of helpers used only in some configurations honest.
#[allow(dead_code)]
fn _uses(_: &dyn Remote) {}
