//! `push --delete`: a remote branch becomes a tombstone that listings, clones, pulls and status treat
//! as absent; gc reclaims its blobs; a push re-creates it; other branches are untouched.

use std::time::Duration;

use strata_engine::Strata;
use strata_remote::{InMemoryRemote, Remote};
use strata_sync::{
    delete_remote_branch_with, gc, list_remote_branches, pull_from, push_to, status_with,
    PullOptions, PushOptions, SyncError,
};

#[tokio::test]
async fn a_deleted_remote_branch_is_gone_until_pushed_again() {
    let remote = InMemoryRemote::new();
    let a = Strata::open_temp().unwrap();
    a.main().kv_put("k", 1i64).unwrap();
    a.fork_branch("main", "feat").unwrap();
    a.on("feat").kv_put("f", 1i64).unwrap();
    let push = PushOptions::default();
    push_to(&a, &remote, "hub", "main", &push).await.unwrap();
    push_to(&a, &remote, "hub", "feat", &push).await.unwrap();
    let blobs_before = remote.list_blobs("branches").await.unwrap().len();

    let rep = delete_remote_branch_with(&a, &remote, "hub", "feat")
        .await
        .unwrap();
    assert_eq!(rep.remote_version, 2);
    assert!(rep.blobs >= 1);
    assert!(rep.mirror_deleted);
    assert!(!a.branch_exists("_origin:hub:feat").unwrap());
    assert!(a.branch_exists("feat").unwrap(), "the local branch stays");
    let names: Vec<String> = list_remote_branches(&remote)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["main"]);
    // Pull, status and a second delete see no branch.
    let b = Strata::open_temp().unwrap();
    let pulled = pull_from(&b, &remote, "hub", "feat", &PullOptions::default()).await;
    assert!(
        matches!(&pulled, Err(SyncError::NotFound(m)) if m.contains("deleted")),
        "{pulled:?}"
    );
    assert_eq!(
        status_with(&a, &remote, "hub", "feat")
            .await
            .unwrap()
            .remote_version,
        None
    );
    assert!(matches!(
        delete_remote_branch_with(&a, &remote, "hub", "feat").await,
        Err(SyncError::NotFound(_))
    ));
    // gc reclaims the deleted branch's blobs and keeps main's.
    let g = gc(&remote, Duration::ZERO).await.unwrap();
    assert_eq!(g.deleted, rep.blobs, "{g:?}");
    assert_eq!(
        remote.list_blobs("branches").await.unwrap().len(),
        blobs_before - rep.blobs
    );
    pull_from(&b, &remote, "hub", "main", &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(b.main().kv_get("k").unwrap(), Some(1i64.into()));
    // A push brings it back, whole, over the tombstone.
    let p = push_to(&a, &remote, "hub", "feat", &push).await.unwrap();
    assert!(!p.up_to_date);
    pull_from(&b, &remote, "hub", "feat", &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(b.on("feat").kv_get("f").unwrap(), Some(1i64.into()));
    assert_eq!(list_remote_branches(&remote).await.unwrap().len(), 2);
}
