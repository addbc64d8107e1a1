//! The shared conformance suite, run on a folder remote in a temporary folder.

use std::sync::Arc;

use strata_remote::{conformance, Remote};
use strata_remote_fs::FsRemote;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("remote");
    let remote = FsRemote::new(&root).unwrap();
    conformance::run_all(Arc::new(remote.clone())).await;

    // The suite's own blobs are gone and no temporary file was left behind; nothing appeared beside
    // the root.
    let top: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top, ["remote"]);
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    assert!(remote.list_blobs("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_with_a_short_pruning_grace() {
    // Cursor pruning on every write: the compare-and-swap must hold while records are removed.
    let parent = tempfile::tempdir().unwrap();
    let remote = FsRemote::new(parent.path().join("remote"))
        .unwrap()
        .with_cursor_prune_grace(std::time::Duration::ZERO);
    let remote: Arc<dyn Remote> = Arc::new(remote);
    conformance::check_cursor_create_and_cas(&*remote, &conformance::fresh_prefix("cas")).await;
    conformance::check_cursor_race(remote.clone(), &conformance::fresh_prefix("race"), 8, 40).await;
}
