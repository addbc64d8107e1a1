//! A remote written in blob format 1 and cursor format 1 (before history sync) stays readable: the
//! fixture `tests/fixtures/remote-v1` was written by the `strata` binary of commit c0dfe74 (see
//! tests/fixtures/README.md for the commands). Clone it, pull from it, and push to it (which upgrades
//! its cursor to the current format) without losing anything.

mod common;

use common::*;
use serde_json::json;
use strata_engine::{Kind, MergeStrategy, Rev, Strata, Value};
use strata_sync::{layout::CursorDoc, PullOptions, SyncExt};

/// A copy of the fixture (tests never write to the committed one).
fn fixture_copy(dir: &std::path::Path) -> String {
    let src =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/remote-v1");
    assert!(src.is_dir(), "fixture missing at {}", src.display());
    let dst = dir.join("remote-v1");
    copy_dir(&src, &dst);
    dst.to_str().unwrap().to_string()
}

fn copy_dir(src: &std::path::Path, dst: &std::path::Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

fn kv(db: &Strata, branch: &str, space: &str, key: &str) -> Option<Value> {
    db.on(branch).space(space).unwrap().kv_get(key).unwrap()
}

/// What the fixture's `main` holds (see tests/fixtures/README.md).
fn check_main(db: &Strata, branch: &str) {
    assert_eq!(kv(db, branch, "default", "k"), None, "k was deleted");
    assert_eq!(
        kv(db, branch, "default", "big"),
        Some(Value::from("x".repeat(5000)))
    );
    assert_eq!(
        kv(db, branch, "default", "after_compact"),
        Some(json!(1).into())
    );
    assert_eq!(kv(db, branch, "default", "tail"), Some(json!(7).into()));
    assert_eq!(kv(db, branch, "other", "n"), Some(json!(42).into()));
    let s = db.on(branch);
    assert_eq!(
        s.json_get("doc").unwrap(),
        Some(json!({"title": "notes", "tags": ["a", "b"]}).into())
    );
    assert_eq!(
        s.state_get("phase").unwrap(),
        Some(json!("research").into())
    );
    let events = s.event_range(1, 10).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].payload, json!({"task": 2}).into());
}

#[tokio::test]
async fn clone_pull_and_push_a_format_1_remote() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let url = fixture_copy(dir.path());
    let remote = strata_sync::open_url(&url).unwrap();
    let before = cursor_doc(&*remote, "main").await.unwrap();
    assert_eq!(before.format, 1, "the fixture is format 1");

    let (b, report) = strata_sync::clone(&url, dir.path().join("b"))
        .await
        .unwrap();
    assert_eq!(report.branches.len(), 2);
    check_main(&b, "main");
    assert_eq!(b.branch_info("main").unwrap().head, 9);
    assert_eq!(kv(&b, "exp", "default", "e"), Some(json!(1).into()));
    assert_eq!(b.branch_info("exp").unwrap().head, 11);
    // Versions from format-1 blobs carry no metadata: they replay as `apply` (or `snapshot`).
    let l = b.log("main", usize::MAX).unwrap();
    assert_eq!(l[0].version, 9);
    assert_eq!(l[0].kind, "apply");

    // A database that pulls into an existing branch.
    let c = Strata::open(dir.path().join("c")).unwrap();
    c.remote_add("hub", &url).unwrap();
    c.pull_with(
        "hub",
        "main",
        &PullOptions {
            strategy: MergeStrategy::Strict,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    check_main(&c, "main");

    // Pushing upgrades the cursor to the current format; the old history stays readable.
    b.main().kv_put("new", json!("v2")).unwrap();
    let p = b.push("origin", "main").await.unwrap();
    assert_eq!((p.remote_version, p.versions), (10, 1));
    let after = cursor_doc(&*remote, "main").await.unwrap();
    assert_eq!(after.format, strata_sync::layout::CURSOR_FORMAT);
    assert_eq!(
        after.snapshot, before.snapshot,
        "the format-1 snapshot stays the base"
    );
    c.pull_with(
        "hub",
        "main",
        &PullOptions {
            strategy: MergeStrategy::Strict,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    check_main(&c, "main");
    assert_eq!(kv(&c, "main", "default", "new"), Some(json!("v2").into()));
    let d = strata_sync::clone(&url, dir.path().join("d"))
        .await
        .unwrap()
        .0;
    assert_eq!(
        contents(&d, &Rev::head("main")),
        contents(&b, &Rev::head("main"))
    );
    assert_eq!(d.log("main", 1).unwrap()[0].kind, "commit");
    let _ = CursorDoc::parse("main", &cursor_bytes(&*remote, "main").await.unwrap()).unwrap();
    assert_eq!(
        d.get_at(&Rev::at("main", 9), "default", Kind::Kv, "new")
            .unwrap(),
        None
    );
}
