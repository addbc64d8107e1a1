//! Seed 004's end-to-end walkthrough, step by step, with two databases syncing through a remote: a
//! folder, and S3 (moto) and Azure (Azurite) buckets when the emulators are up (scripts/emulators.sh).

use serde_json::json;
use std::collections::BTreeMap;
use strata_engine::{Kind, MergeStrategy, Rev, Strata, Value};
use strata_remote::{RemoteExt, RemotePath};
use strata_sync::layout::CursorDoc;

use strata_remote_s3::testing::emulator;
use strata_remote_s3::Provider;
use strata_sync::{PullOptions, RemoteConfig, SyncError, SyncExt};

struct World {
    _dir: tempfile::TempDir,
    remote_dir: std::path::PathBuf,
    url: String,
    options: BTreeMap<String, String>,
    a: Strata,
    b: Strata,
}

/// Two agents on a folder remote.
fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("remote").to_str().unwrap().to_string();
    world_on(dir, url, BTreeMap::new())
}

fn world_on(dir: tempfile::TempDir, url: String, options: BTreeMap<String, String>) -> World {
    let a = Strata::open(dir.path().join("agent-a")).unwrap();
    let b = Strata::open(dir.path().join("agent-b")).unwrap();
    for db in [&a, &b] {
        db.remote_add_with(RemoteConfig {
            name: "hub".into(),
            url: url.clone(),
            options: options.clone(),
        })
        .unwrap();
    }
    World {
        remote_dir: dir.path().join("remote"),
        _dir: dir,
        url,
        options,
        a,
        b,
    }
}

/// The worlds to run a scenario in: a folder, then each bucket emulator that is up.
fn worlds(label: &str) -> Vec<World> {
    let mut out = vec![world()];
    for provider in [Provider::S3, Provider::Azure] {
        if let Some(e) = emulator(provider, label) {
            out.push(world_on(tempfile::tempdir().unwrap(), e.url, e.options));
        }
    }
    out
}

/// The keys inside the blob the last push uploaded, read back from the remote.
async fn keys_in_blob(w: &World, blob: &str) -> Vec<String> {
    let remote = strata_sync::open_url_with(&w.url, &w.options).unwrap();
    let bytes = remote
        .get_bytes(&RemotePath::parse(blob).unwrap())
        .await
        .unwrap();
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), &bytes).unwrap();
    let mut keys = vec![];
    for cs in strata_sync::blob::BlobReader::open(tmp.as_file(), blob).unwrap() {
        let cs = cs.unwrap();
        keys.extend(cs.puts.iter().map(|(k, _)| k.key.clone()));
        keys.extend(cs.deletes.iter().map(|k| format!("-{}", k.key)));
    }
    keys.sort();
    keys
}

fn kv_keys(db: &Strata) -> Vec<String> {
    db.main()
        .kv_list("")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_walkthrough() {
    init();
    for w in worlds("walkthrough") {
        seed_walkthrough_on(&w).await;
    }
}

async fn seed_walkthrough_on(w: &World) {
    let (a, b) = (&w.a, &w.b);
    // Setup: agent A works locally.
    a.main()
        .kv_put("config", json!({"model": "gpt-4", "temperature": 0.7}))
        .unwrap();
    a.main()
        .json_put("notes/research.md", json!("# Research\n\n## Findings\n..."))
        .unwrap();
    a.main()
        .kv_put("task:1", json!({"status": "done", "result": "..."}))
        .unwrap();
    a.main()
        .kv_put("task:2", json!({"status": "done", "result": "..."}))
        .unwrap();

    // First push: everything.
    let p = a.push("hub", "main").await.unwrap();
    assert_eq!(p.remote_version, 4);
    assert_eq!(p.entries, 4);
    assert_eq!(
        keys_in_blob(w, p.blob.as_ref().unwrap()).await,
        vec!["config", "notes/research.md", "task:1", "task:2"]
    );
    assert!(a.push("hub", "main").await.unwrap().up_to_date);
    let st = a.sync_status("hub", "main").await.unwrap();
    assert_eq!((st.ahead_entries, st.behind_versions), (0, 0));

    // Agent B pulls into its empty main: a copy of all four entries.
    let r = b.pull("hub", "main").await.unwrap();
    assert!(r.fast_forward && !r.created, "{r:?}");
    assert_eq!(kv_keys(b), vec!["config", "task:1", "task:2"]);
    assert_eq!(
        b.main().json_get("notes/research.md").unwrap(),
        Some(Value::from("# Research\n\n## Findings\n..."))
    );

    // Both work independently.
    a.main()
        .kv_put("task:3", json!({"status": "done"}))
        .unwrap();
    a.main()
        .kv_put("task:4", json!({"status": "done"}))
        .unwrap();
    b.main()
        .kv_put("task:5", json!({"status": "done"}))
        .unwrap();
    b.main()
        .kv_put("task:6", json!({"status": "done"}))
        .unwrap();
    let st = b.sync_status("hub", "main").await.unwrap();
    assert_eq!((st.ahead_versions, st.ahead_entries), (2, 2));

    // A pushes only its two new entries.
    let p = a.push("hub", "main").await.unwrap();
    // Seed 004's numbers: each of A's two commits is its own remote version, 5..6.
    assert_eq!((p.remote_version, p.versions), (6, 2));
    assert_eq!(
        keys_in_blob(w, p.blob.as_ref().unwrap()).await,
        vec!["task:3", "task:4"]
    );

    // B's push is rejected: the remote moved.
    let e = b.push("hub", "main").await.unwrap_err();
    assert!(matches!(e, SyncError::Rejected(_)), "{e}");
    assert!(e.to_string().contains("pull first"), "{e}");
    let st = b.sync_status("hub", "main").await.unwrap();
    assert_eq!((st.behind_versions, st.behind_entries), (2, 2));

    // B pulls (clean merge), then pushes only its own work.
    let r = b.pull("hub", "main").await.unwrap();
    assert_eq!(r.fetch.entries, 2);
    assert_eq!(
        kv_keys(b),
        vec!["config", "task:1", "task:2", "task:3", "task:4", "task:5", "task:6"]
    );
    let p = b.push("hub", "main").await.unwrap();
    assert_eq!(
        keys_in_blob(w, p.blob.as_ref().unwrap()).await,
        vec!["task:5", "task:6"],
        "B must upload only its own work"
    );
    // 7..8: B's own two commits, not its merge of A's work.
    assert_eq!((p.remote_version, p.versions), (8, 2));

    // A pulls and both are equal.
    a.pull("hub", "main").await.unwrap();
    assert_eq!(kv_keys(a), kv_keys(b));
    assert!(a.push("hub", "main").await.unwrap().up_to_date);
    assert!(b.push("hub", "main").await.unwrap().up_to_date);
}

#[tokio::test(flavor = "multi_thread")]
async fn conflict_under_lww_and_strict() {
    init();
    for w in worlds("conflict") {
        conflict_under_lww_and_strict_on(&w).await;
    }
}

async fn conflict_under_lww_and_strict_on(w: &World) {
    let (a, b) = (&w.a, &w.b);
    a.main()
        .kv_put("task:1", json!({"status": "todo"}))
        .unwrap();
    a.push("hub", "main").await.unwrap();
    b.pull("hub", "main").await.unwrap();
    a.main()
        .kv_put("task:1", json!({"status": "done", "result": "approach A"}))
        .unwrap();
    b.main()
        .kv_put("task:1", json!({"status": "done", "result": "approach B"}))
        .unwrap();
    a.push("hub", "main").await.unwrap();

    // Strict: the structured conflict list, nothing written, and an optional conflict branch.
    let opts = PullOptions {
        strategy: MergeStrategy::Strict,
        conflict_branch: Some("conflicts/pull-1".into()),
        ..Default::default()
    };
    match b.pull_with("hub", "main", &opts).await {
        Err(SyncError::Conflicts(c)) => {
            assert_eq!(c.len(), 1);
            assert_eq!(c[0].key, "task:1");
            assert_eq!(
                c[0].source.as_ref().unwrap().get("result"),
                Some(&Value::from("approach A"))
            );
            assert_eq!(
                c[0].target.as_ref().unwrap().get("result"),
                Some(&Value::from("approach B"))
            );
            assert_eq!(
                c[0].ancestor.as_ref().unwrap().get("status"),
                Some(&Value::from("todo"))
            );
        }
        other => panic!("expected conflicts, got {other:?}"),
    }
    assert_eq!(
        b.main().kv_get("task:1").unwrap().unwrap().get("result"),
        Some(&Value::from("approach B"))
    );
    assert_eq!(
        b.on("conflicts/pull-1")
            .space("conflicts")
            .unwrap()
            .kv_list("")
            .unwrap()
            .len(),
        1
    );
    // B cannot push before resolving: the fetched change is not merged.
    assert!(matches!(
        b.push("hub", "main").await,
        Err(SyncError::Rejected(_))
    ));

    // LWW: the remote (A's) value wins; then B can push and both agree.
    let r = b.pull("hub", "main").await.unwrap();
    assert_eq!(r.conflicts_resolved, 1);
    assert_eq!(
        b.main().kv_get("task:1").unwrap().unwrap().get("result"),
        Some(&Value::from("approach A"))
    );
    // B's own version still travels (history keeps it); one more version restores A's value, which
    // the merge kept.
    let p = b.push("hub", "main").await.unwrap();
    assert_eq!(p.versions, 2);
    assert!(b.push("hub", "main").await.unwrap().up_to_date);
    a.pull("hub", "main").await.unwrap();
    assert_eq!(
        a.main().kv_get("task:1").unwrap().unwrap().get("result"),
        Some(&Value::from("approach A"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn branch_per_agent_coordinator() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("remote").to_str().unwrap().to_string();
    let open = |n: &str| {
        let db = Strata::open(dir.path().join(n)).unwrap();
        db.remote_add("hub", &url).unwrap();
        db
    };
    let (a, b, coord) = (open("a"), open("b"), open("coord"));
    coord.main().kv_put("goal", "ship it").unwrap();
    coord.push("hub", "main").await.unwrap();
    for (db, name) in [(&a, "agent-a"), (&b, "agent-b")] {
        db.pull("hub", "main").await.unwrap();
        db.fork_branch("main", name).unwrap();
        db.on(name)
            .kv_put(&format!("result:{name}"), "done")
            .unwrap();
        db.on(name).event_append("finished", name).unwrap();
        db.push("hub", name).await.unwrap();
    }
    // The coordinator pulls both agent branches and merges them into main: no conflicts.
    for name in ["agent-a", "agent-b"] {
        coord.pull("hub", name).await.unwrap();
        coord
            .merge(&Rev::head(name), "main", MergeStrategy::Strict)
            .unwrap();
    }
    coord.push("hub", "main").await.unwrap();
    let mut names: Vec<_> =
        strata_sync::list_remote_branches(&*strata_sync::open_url(&url).unwrap())
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
    names.sort();
    assert_eq!(names, vec!["agent-a", "agent-b", "main"]);
    a.pull("hub", "main").await.unwrap();
    let keys: Vec<_> = a
        .main()
        .kv_list("")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec!["goal", "result:agent-a", "result:agent-b"]);
    // Both agents' events arrived, none lost.
    assert_eq!(a.main().event_len().unwrap(), 2);
    assert_eq!(
        a.history("main", "default", Kind::Kv, "goal")
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn clone_uses_snapshot_and_tail_and_refuses_non_remotes() {
    init();
    let w = world();
    let a = &w.a;
    for i in 0..10 {
        a.main().kv_put(&format!("k{i}"), i).unwrap();
    }
    a.push("hub", "main").await.unwrap();
    for i in 10..13 {
        a.main().kv_put(&format!("k{i}"), i).unwrap();
        a.push("hub", "main").await.unwrap();
    }
    a.main().kv_delete("k0").unwrap();
    a.push("hub", "main").await.unwrap();
    // History squashed before version 10: clones start from a snapshot there, then the deltas.
    strata_sync::compact(
        a,
        "hub",
        "main",
        &strata_sync::CompactOptions {
            squash_before: Some(10),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    a.main().kv_put("after-squash", 1).unwrap();
    a.push("hub", "main").await.unwrap();
    let dest = w.remote_dir.parent().unwrap().join("clone");
    let (c, report) = strata_sync::clone(w.remote_dir.to_str().unwrap(), &dest)
        .await
        .unwrap();
    assert_eq!(report.branches.len(), 1);
    assert_eq!(c.main().kv_list("").unwrap().len(), 13);
    assert_eq!(
        c.log("main", usize::MAX).unwrap().len(),
        6,
        "versions 10..15"
    );
    assert_eq!(c.main().kv_get("k0").unwrap(), None);
    assert!(c
        .diff(
            &Rev::head("main"),
            &Rev::head(strata_sync::mirror_name("origin", "main"))
        )
        .unwrap()
        .is_empty());
    // The cursor lists a snapshot and the deltas after it; nothing needs listing.
    let remote = strata_sync::open_url(w.remote_dir.to_str().unwrap()).unwrap();
    let cur = remote
        .read_cursor(&strata_sync::layout::cursor_name("main"))
        .await
        .unwrap()
        .unwrap();
    let doc = CursorDoc::parse("main", &cur.value).unwrap();
    assert_eq!(doc.snapshot.as_ref().map(|s| s.to), Some(10));
    assert_eq!(
        doc.deltas.len(),
        2,
        "the pack of 10..14, then the last push"
    );
    // Not a remote: an empty folder, and a folder with other files.
    let empty = tempfile::tempdir().unwrap();
    let e = strata_sync::clone(
        empty.path().to_str().unwrap(),
        w.remote_dir.parent().unwrap().join("x"),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, SyncError::NotAStrataRemote(_)), "{e}");
    assert!(
        !w.remote_dir.parent().unwrap().join("x").exists(),
        "a failed clone must leave nothing"
    );
    let e = strata_sync::clone("ftp://host/x", w.remote_dir.parent().unwrap().join("y"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unsupported scheme"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_counts_only_local_changes_after_a_fetch() {
    init();
    let w = world();
    let (a, b) = (&w.a, &w.b);
    a.main().kv_put("shared", 1).unwrap();
    a.push("hub", "main").await.unwrap();
    b.pull("hub", "main").await.unwrap();
    a.main().kv_put("from-a-1", 1).unwrap();
    a.main().kv_put("from-a-2", 2).unwrap();
    a.push("hub", "main").await.unwrap();
    b.main().kv_put("from-b", 1).unwrap();
    b.fetch("hub", "main").await.unwrap();
    let st = b.sync_status("hub", "main").await.unwrap();
    assert_eq!(st.ahead_entries, 1, "{st:?}");
    assert_eq!((st.behind_versions, st.behind_entries), (2, 2), "{st:?}");
}

/// Registers every backend this build has, once per test process.
fn init() {
    strata_sync::set_connector(std::sync::Arc::new(strata_remotes::Remotes::new()));
}
