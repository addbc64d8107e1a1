//! One API test suite, run twice: against the embedded handle (`Db::open(path)`) and against
//! `strata-client` talking to a real `stratadb-server` (`Db::open("strata://…")`). The only line
//! that differs between the two runs is the string opened.

mod support;

use strata_client::{Db, Error, ErrorCode, Kind, MergeStrategy, Rev, Value};
use support::ServerProc;

fn code<T: std::fmt::Debug>(r: Result<T, Error>) -> ErrorCode {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e
            .code()
            .unwrap_or_else(|| panic!("expected a database error, got {e}")),
    }
}

fn suite(db: &Db) {
    // KV in spaces.
    let main = db.main();
    main.kv_put("a", 1).unwrap();
    main.kv_put("b", "two").unwrap();
    main.kv_put("null", Value::Null).unwrap();
    assert_eq!(main.kv_get("a").unwrap(), Some(Value::Int(1)));
    assert_eq!(main.kv_get("null").unwrap(), Some(Value::Null));
    assert_eq!(main.kv_get("zzz").unwrap(), None);
    assert_eq!(main.kv_list("").unwrap().len(), 3);
    let other = main.space("notes").unwrap();
    other.kv_put("a", vec![1u8, 2, 3]).unwrap();
    assert_eq!(
        other.kv_get("a").unwrap(),
        Some(Value::Bytes(vec![1, 2, 3]))
    );
    assert_eq!(main.kv_get("a").unwrap(), Some(Value::Int(1)));
    assert!(main.kv_delete("b").unwrap());
    assert!(!main.kv_delete("b").unwrap());
    assert_eq!(db.list_spaces("main").unwrap(), vec!["default", "notes"]);
    assert_eq!(code(main.space("_internal")), ErrorCode::InvalidName);
    assert_eq!(code(main.kv_put("", 1)), ErrorCode::InvalidName);

    // JSON documents and paths.
    let doc = serde_json_like();
    main.json_put("doc1", doc.clone()).unwrap();
    assert_eq!(main.json_get("doc1").unwrap(), Some(doc));
    main.json_set_path("doc1", "/model/name", "gpt").unwrap();
    assert_eq!(
        main.json_get_path("doc1", "/model/name").unwrap(),
        Some(Value::from("gpt"))
    );
    assert_eq!(main.json_list("doc").unwrap().len(), 1);
    assert!(main.json_delete("doc1").unwrap());
    assert_eq!(main.json_get("doc1").unwrap(), None);

    // Events.
    assert_eq!(main.event_append("tool", "x").unwrap(), 1);
    assert_eq!(main.event_append("msg", 2).unwrap(), 2);
    assert_eq!(main.event_append("tool", "y").unwrap(), 3);
    assert_eq!(main.event_len().unwrap(), 3);
    let tools = main.event_by_type("tool", 10).unwrap();
    assert_eq!(tools.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 3]);
    let r = main.event_range(2, 10).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].payload, Value::Int(2));

    // State cells, compare-and-swap with null and absence kept apart.
    assert!(main.state_init("cell", 0).unwrap());
    assert!(!main.state_init("cell", 5).unwrap());
    assert!(main
        .state_cas("cell", Some(&Value::Int(0)), Some(Value::Null))
        .unwrap());
    assert!(!main.state_cas("cell", None, Some(Value::Int(9))).unwrap());
    assert!(main
        .state_cas("cell", Some(&Value::Null), Some(Value::Int(7)))
        .unwrap());
    assert_eq!(main.state_get("cell").unwrap(), Some(Value::Int(7)));
    main.state_set("cell2", true).unwrap();
    assert!(main.state_delete("cell2").unwrap());
    assert!(main.state_cas("cell2", None, Some(Value::Int(1))).unwrap());

    // Transactions: read-your-writes, one version, rollback, drop = rollback.
    let head = db.branch_info("main").unwrap().head;
    let mut tx = db.begin("main").unwrap();
    assert_eq!(tx.version(), head + 1);
    tx.kv_put("t1", 1).unwrap();
    tx.set_space("notes").unwrap();
    tx.kv_put("t2", 2).unwrap();
    assert_eq!(tx.kv_get("t2").unwrap(), Some(Value::Int(2)));
    assert_eq!(tx.event_append("e", 1).unwrap(), 1);
    tx.set_message("two keys");
    tx.set_author("suite");
    assert_eq!(tx.commit().unwrap(), Some(head + 1));
    let log = db.log("main", 1).unwrap();
    assert_eq!(log[0].version, head + 1);
    assert_eq!(log[0].message, "two keys");
    assert_eq!(log[0].author.as_deref(), Some("suite"));
    assert_eq!(log[0].entries, 3);

    let mut tx = db.begin("main").unwrap();
    tx.kv_put("gone", 1).unwrap();
    tx.rollback().unwrap();
    {
        let mut tx = db.begin("main").unwrap();
        tx.kv_put("gone", 2).unwrap();
    }
    assert_eq!(main.kv_get("gone").unwrap(), None);
    assert_eq!(db.branch_info("main").unwrap().head, head + 1);
    let (n, v) = db
        .transaction("main", |tx| {
            tx.kv_put("closure", 1)?;
            tx.kv_get("closure")
        })
        .unwrap();
    assert_eq!((n, v), (Some(Value::Int(1)), Some(head + 2)));
    let empty = db.begin("main").unwrap();
    assert_eq!(empty.commit().unwrap(), None);
    assert_eq!(code(db.begin("nope")), ErrorCode::BranchNotFound);

    // Branches.
    let head = db.branch_info("main").unwrap().head;
    let f = db.fork_branch("main", "feature").unwrap();
    assert_eq!((f.head, f.parent.as_deref()), (head, Some("main")));
    assert_eq!(
        code(db.fork_branch("main", "feature")),
        ErrorCode::BranchExists
    );
    db.create_branch("empty").unwrap();
    assert!(db.branch_exists("empty").unwrap());
    let names: Vec<String> = db
        .list_branches(false)
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, vec!["empty", "feature", "main"]);
    db.delete_branch("empty").unwrap();
    assert!(!db.branch_exists("empty").unwrap());
    assert_eq!(code(db.branch_info("empty")), ErrorCode::BranchNotFound);

    // Diff and merge.
    db.on("feature").kv_put("a", 100).unwrap();
    db.on("feature").kv_put("new", 1).unwrap();
    let d = db.diff(&Rev::head("main"), &Rev::head("feature")).unwrap();
    assert_eq!(d.counts(), (1, 0, 1));
    let m = db
        .merge(&Rev::head("feature"), "main", MergeStrategy::LastWriterWins)
        .unwrap();
    assert!(m.version.is_some());
    assert_eq!(main.kv_get("a").unwrap(), Some(Value::Int(100)));
    db.on("feature").kv_put("a", 1).unwrap();
    main.kv_put("a", 2).unwrap();
    let err = db
        .merge(&Rev::head("feature"), "main", MergeStrategy::Strict)
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::MergeConflicts));
    assert_eq!(err.conflicts().len(), 1);
    assert_eq!(err.conflicts()[0].key, "a");

    // History, past versions, reads at a revision.
    let h = db.history("main", "default", Kind::Kv, "a").unwrap();
    assert_eq!(
        h.iter().map(|e| e.value.clone()).collect::<Vec<_>>(),
        vec![
            Some(Value::Int(2)),
            Some(Value::Int(100)),
            Some(Value::Int(1))
        ]
    );
    let v1 = Rev::at("main", h[2].version);
    assert_eq!(
        db.get_at(&v1, "default", Kind::Kv, "a").unwrap(),
        Some(Value::Int(1))
    );
    assert_eq!(db.at(&v1).kv_get("a").unwrap(), Some(Value::Int(1)));
    assert_eq!(code(db.at(&v1).kv_put("a", 3)), ErrorCode::PastVersion);
    assert_eq!(
        code(db.at(&Rev::at("main", 10_000)).kv_get("a")),
        ErrorCode::VersionNotFound
    );
    assert!(db.log("main", 1000).unwrap().len() as u64 >= h[0].version);

    // Bundles: export to a file on this machine, import into a new branch.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("main.branchbundle.tar.zst");
    let m = db.export_bundle("main", None, &file).unwrap();
    assert_eq!(m.to_version, db.branch_info("main").unwrap().head);
    let r = db.import_bundle(&file, Some("restored")).unwrap();
    assert!(r.created);
    assert_eq!(r.head, m.to_version);
    assert_eq!(
        db.on("restored").kv_list("").unwrap(),
        main.kv_list("").unwrap()
    );
    // A damaged bundle is refused and writes nothing.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let bad = dir.path().join("bad.branchbundle.tar.zst");
    std::fs::write(&bad, bytes).unwrap();
    assert_eq!(
        code(db.import_bundle(&bad, Some("bad"))),
        ErrorCode::Corrupt
    );
    assert!(!db.branch_exists("bad").unwrap());

    nulls_paging_and_settings(db);
}

/// A stored null and an absent value stay distinct in history, diff and merge conflicts; listings
/// and change sets page; settings and the merged check answer (both modes alike).
fn nulls_paging_and_settings(db: &Db) {
    db.create_branch("nulls").unwrap();
    let s = db.on("nulls");
    s.kv_put("n", 1).unwrap();
    db.fork_branch("nulls", "nulls-f").unwrap();
    s.kv_put("n", Value::Null).unwrap();
    s.kv_put("gone", 1).unwrap();
    s.kv_delete("gone").unwrap();
    db.on("nulls-f").kv_put("fresh", Value::Null).unwrap();
    let h = db.history("nulls", "default", Kind::Kv, "n").unwrap();
    assert_eq!(
        h[0].value,
        Some(Value::Null),
        "a stored null is not a deletion"
    );
    let h = db.history("nulls", "default", Kind::Kv, "gone").unwrap();
    assert_eq!(h[0].value, None, "a deletion");
    let d = db.diff(&Rev::head("nulls-f"), &Rev::head("nulls")).unwrap();
    let sp = &d.spaces[0];
    assert_eq!(sp.modified.len(), 1);
    assert_eq!(
        (&sp.modified[0].a, &sp.modified[0].b),
        (&Some(Value::Int(1)), &Some(Value::Null))
    );
    assert_eq!(
        (&sp.removed[0].key, &sp.removed[0].a, &sp.removed[0].b),
        (&"fresh".to_string(), &Some(Value::Null), &None)
    );
    db.on("nulls-f").kv_put("n", 5).unwrap();
    let e = db
        .merge(&Rev::head("nulls-f"), "nulls", MergeStrategy::Strict)
        .unwrap_err();
    let c = &e.conflicts()[0];
    assert_eq!(
        (&c.ancestor, &c.source, &c.target),
        (
            &Some(Value::Int(1)),
            &Some(Value::Int(5)),
            &Some(Value::Null)
        )
    );
    // The merged check: `nulls` does not contain `nulls-f`, which contains its fork point.
    assert!(!db
        .contains(&Rev::head("nulls"), &Rev::head("nulls-f"))
        .unwrap());
    assert!(db
        .contains(&Rev::head("nulls-f"), &Rev::at("nulls", 1))
        .unwrap());

    // Pages: 30 keys by 7, pinned to the first page's version.
    db.transaction("nulls", |tx| {
        for i in 0..30 {
            tx.kv_put(&format!("p{i:02}"), i)?;
        }
        Ok(())
    })
    .unwrap();
    let mut keys = Vec::new();
    let first = db
        .list_page(&Rev::head("nulls"), "default", Kind::Kv, "p", None, 7)
        .unwrap();
    let pinned = Rev::at("nulls", first.version);
    db.on("nulls").kv_put("p99", 1).unwrap();
    let mut page = first;
    loop {
        keys.extend(page.entries.iter().map(|(k, _)| k.clone()));
        assert!(page.entries.len() <= 7);
        let Some(after) = page.next.clone() else {
            break;
        };
        page = db
            .list_page(&pinned, "default", Kind::Kv, "p", Some(&after), 7)
            .unwrap();
    }
    assert_eq!(
        keys,
        (0..30).map(|i| format!("p{i:02}")).collect::<Vec<_>>()
    );
    let sets = db.changes(&pinned, 0, 2).unwrap();
    assert_eq!(
        sets.iter().map(|c| c.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(sets[1].puts[0].1, Value::Null);
    let all = db.changes(&pinned, 0, 1000).unwrap();
    assert_eq!(all.last().unwrap().version, pinned.version.unwrap());

    // Settings.
    db.set_config("user.name", Some("suite")).unwrap();
    assert_eq!(db.config("user.name").unwrap().as_deref(), Some("suite"));
    assert_eq!(
        db.config_list().unwrap(),
        vec![("user.name".to_string(), "suite".to_string())]
    );
    db.set_config("user.name", None).unwrap();
    assert_eq!(db.config("user.name").unwrap(), None);
}

fn serde_json_like() -> Value {
    Value::object([
        ("model", Value::object([("name", Value::from("x"))])),
        ("n", Value::Int(3)),
    ])
}

#[test]
fn embedded() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db").to_str().unwrap()).unwrap();
    assert!(!db.is_remote());
    suite(&db);
}

#[test]
fn client_to_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerProc::start(&dir.path().join("db"), &["--open"]);
    let db = Db::open(&srv.url()).unwrap();
    assert!(db.is_remote());
    let w = db.welcome().unwrap();
    assert!(w.capabilities.iter().any(|c| c == "transactions"));
    suite(&db);
}

#[test]
fn client_with_a_key_to_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    let key = support::add_key(&data, "suite", &[], &["*"]);
    let srv = ServerProc::start(&data, &[]);
    let db = Db::connect(&srv.url(), support::opts(Some(&key))).unwrap();
    suite(&db);
}

#[test]
fn bundles_move_in_chunks_under_a_small_frame_cap() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerProc::start(&dir.path().join("db"), &["--open", "--max-frame", "2048"]);
    let db = Db::open(&srv.url()).unwrap();
    // Incompressible values, so the bundle is many chunks long.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut tx = db.begin("main").unwrap();
    for i in 0..300 {
        let v: Vec<u8> = (0..100)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        tx.kv_put(&format!("k{i}"), v).unwrap();
    }
    tx.commit().unwrap();
    let file = dir.path().join("b.branchbundle.tar.zst");
    db.export_bundle("main", None, &file).unwrap();
    assert!(std::fs::metadata(&file).unwrap().len() > 10 * 2048);
    let r = db.import_bundle(&file, Some("copy")).unwrap();
    assert_eq!(r.entries, 300);
    assert_eq!(
        db.on("copy").kv_list("").unwrap(),
        db.main().kv_list("").unwrap()
    );
    // Transfers live in server-tmp only while in use.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("db/server-tmp"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Sync, run by the server on its database in remote mode: `db` and an embedded `other` share the
/// folder remote `origin`.
fn sync_suite(db: &Db, other: &Db) {
    assert_eq!(db.remotes().unwrap(), vec!["origin"]);
    db.main().kv_put("synced", 1).unwrap();
    let head = db.branch_info("main").unwrap().head;
    let p = db.push("origin", "main").unwrap();
    assert!(!p.up_to_date);
    assert_eq!(p.remote_version, head);
    let st = db.sync_status("origin", "main").unwrap();
    assert_eq!((st.remote_version, st.ahead_versions), (Some(head), 0));
    assert!(db.push("origin", "main").unwrap().up_to_date);

    other.pull("origin", "main", false).unwrap();
    assert_eq!(other.main().kv_get("synced").unwrap(), Some(Value::Int(1)));
    other.main().kv_put("from-other", 2).unwrap();
    other.push("origin", "main").unwrap();

    let f = db.fetch("origin", "main").unwrap();
    assert_eq!(f.versions, 1);
    assert_eq!(db.sync_status("origin", "main").unwrap().behind_versions, 1);
    assert_eq!(
        db.main().kv_get("from-other").unwrap(),
        None,
        "fetch merged"
    );
    db.pull("origin", "main", false).unwrap();
    assert_eq!(db.main().kv_get("from-other").unwrap(), Some(Value::Int(2)));

    // Both write; the second push loses and says so; pull then push succeeds.
    other.main().kv_put("race", "other").unwrap();
    other.push("origin", "main").unwrap();
    db.main().kv_put("race2", "db").unwrap();
    assert_eq!(code(db.push("origin", "main")), ErrorCode::PushRejected);
    db.pull("origin", "main", false).unwrap();
    db.push("origin", "main").unwrap();
    assert_eq!(
        db.main().kv_get("race").unwrap(),
        Some(Value::from("other"))
    );
    // A remote the database does not have.
    let e = db.push("nope", "main").unwrap_err();
    assert!(e.code().is_some(), "{e}");
    assert!(e.to_string().contains("nope"), "{e}");
}

fn sync_setup(root: &std::path::Path) -> (std::path::PathBuf, Db) {
    strata_sync::set_connector(std::sync::Arc::new(strata_remotes::Remotes::new()));
    let remote = root.join("remote");
    let data = root.join("db");
    for d in [&data, &root.join("other")] {
        let s = strata_engine::Strata::open(d).unwrap();
        strata_sync::SyncExt::remote_add(&s, "origin", remote.to_str().unwrap()).unwrap();
    }
    let other = Db::open(root.join("other").to_str().unwrap()).unwrap();
    (data, other)
}

#[test]
fn sync_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let (data, other) = sync_setup(dir.path());
    let db = Db::open(data.to_str().unwrap()).unwrap();
    sync_suite(&db, &other);
}

#[test]
fn sync_run_by_a_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let (data, other) = sync_setup(dir.path());
    let srv = ServerProc::start(&data, &["--open"]);
    let db = Db::open(&srv.url()).unwrap();
    sync_suite(&db, &other);
}
