//! Deterministic reproductions of sync bugs found by the multi-process sync tests
//! (`sync_concurrency.rs`, `sync_crash.rs`), small enough to debug in one process.

use std::path::Path;

use strata_engine::Strata;
use strata_sync::{PushOptions, SyncError, SyncExt};

fn open(dir: &Path, name: &str, url: &str) -> Strata {
    let db = Strata::open(dir.join(name)).unwrap();
    db.remote_add("hub", url).unwrap();
    db
}

/// A push must be rejected when the remote holds another database's work, also when that work was
/// compacted into a snapshot (the cursor then lists no deltas after this database's mirror version).
/// Found by `sync_concurrency`: two pushes acknowledged with the same remote version, and acknowledged
/// writes missing from every replica.
#[tokio::test(flavor = "multi_thread")]
async fn a_compacted_cursor_from_another_database_is_not_taken_for_an_own_upload() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("remote").to_str().unwrap().to_string();
    let a = open(dir.path(), "a", &url);
    let b = open(dir.path(), "b", &url);
    a.main().kv_put("k0", 0).unwrap();
    a.push("hub", "main").await.unwrap();
    b.pull("hub", "main").await.unwrap();
    // A pushes one more change and compacts: the cursor is now one snapshot of A's, no deltas.
    a.main().kv_put("a1", 1).unwrap();
    let compacting = PushOptions {
        pack_fanout: 1,
        ..Default::default()
    };
    let p = a.push_with("hub", "main", &compacting).await.unwrap();
    assert!(p.packed.is_some(), "{p:?}");
    // B has its own unpushed write and has not pulled A's change.
    b.main().kv_put("b1", 1).unwrap();
    let r = b.push("hub", "main").await;
    let (c, _) = strata_sync::clone(&url, dir.path().join("c"))
        .await
        .unwrap();
    let on_remote: Vec<String> = c
        .main()
        .kv_list("")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(
        matches!(r, Err(SyncError::Rejected(_))),
        "B's push must be rejected (pull first), got {r:?}; the remote holds {on_remote:?}"
    );
}

/// Copies a closed database folder.
fn copy_db(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            continue; // the sync spool (`tmp/`): temporary files only
        }
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A push that dies after moving the cursor and updating the mirror, but before recording that mirror
/// and branch are equal, must not leave the branch unpushable: running push again must succeed (the
/// remote holds nothing but this database's own work). The same state arises when the re-run push's
/// own recovery (fetch into the mirror, then record the equal point) is killed in between. Found by
/// `sync_crash`: "push rejected: fetched changes from hub are not merged into "main"; pull first".
#[tokio::test(flavor = "multi_thread")]
async fn push_converges_after_a_crash_between_the_mirror_update_and_the_equal_point() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("remote").to_str().unwrap().to_string();
    let a_dir = dir.path().join("a");
    {
        let a = open(dir.path(), "a", &url);
        a.main().kv_put("k0", 0).unwrap();
        a.push("hub", "main").await.unwrap();
        a.main().kv_put("k1", 1).unwrap();
    }
    // The database just before its second push…
    let saved = dir.path().join("a-before-push");
    copy_db(&a_dir, &saved);
    {
        let a = Strata::open(&a_dir).unwrap();
        a.push("hub", "main").await.unwrap();
    }
    // …whose push then moved the cursor and the mirror and died: the same database with its mirror
    // brought up to the remote, and no equal point recorded.
    let a = Strata::open(&saved).unwrap();
    let f = a.fetch("hub", "main").await.unwrap();
    assert_eq!(f.remote_version, 2);
    let r = a.push("hub", "main").await;
    assert!(
        r.is_ok(),
        "a re-run push must converge when the remote holds only this database's work: {r:?}"
    );
}

/// Registers every backend this build has, once per test process.
fn init() {
    strata_sync::set_connector(std::sync::Arc::new(strata_remotes::Remotes::new()));
}
