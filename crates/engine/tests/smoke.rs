use serde_json::json;
use strata_engine::*;

#[test]
fn kv_fork_diff_merge_roundtrip() {
    let db = Strata::open_temp().unwrap();
    let m = db.main();
    m.kv_put("a", 1).unwrap();
    m.kv_put("b", 2).unwrap();
    assert_eq!(db.branch_info("main").unwrap().head, 2);
    db.fork_branch("main", "f").unwrap();
    let f = db.on("f");
    assert_eq!(f.kv_get("a").unwrap(), Some(Value::Int(1)));
    f.kv_put("c", 3).unwrap();
    f.kv_delete("a").unwrap();
    m.kv_put("d", 4).unwrap();
    assert_eq!(db.branch_info("f").unwrap().head, 4);
    let d = db.diff(&Rev::head("main"), &Rev::head("f")).unwrap();
    assert_eq!(d.counts(), (1, 2, 0), "{d:?}");
    let r = db
        .merge(&Rev::head("f"), "main", MergeStrategy::LastWriterWins)
        .unwrap();
    assert_eq!(r.base.as_deref(), Some("main@2"));
    let keys: Vec<_> = m.kv_list("").unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec!["b", "c", "d"]);
    // Second merge with no new changes does nothing.
    let r2 = db
        .merge(&Rev::head("f"), "main", MergeStrategy::Strict)
        .unwrap();
    assert_eq!(r2.version, None);
    assert_eq!(r2.applied, 0);
    // history
    let h = db.history("main", "default", Kind::Kv, "a").unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].value, None);
    assert_eq!(h[1].value, Some(Value::Int(1)));
    assert_eq!(
        db.get_at(&Rev::at("main", 1), "default", Kind::Kv, "a")
            .unwrap(),
        Some(Value::Int(1))
    );
}

#[test]
fn changes_since_and_apply_replicate() {
    let db = Strata::open_temp().unwrap();
    let m = db.main();
    m.kv_put("a", 1).unwrap();
    m.json_put("doc", json!({"x": [1, 2]})).unwrap();
    m.event_append("started", json!({"n": 1})).unwrap();
    m.state_set("cell", "on").unwrap();
    m.kv_delete("a").unwrap();
    let sets: Vec<_> = db
        .changes_since("main", 2)
        .unwrap()
        .collect::<Result<_>>()
        .unwrap();
    assert_eq!(
        sets.iter().map(|c| c.version).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    let other = Strata::open_temp().unwrap();
    let rep = other
        .apply_changes("main", db.changes_since("main", 0).unwrap())
        .unwrap();
    assert_eq!(rep.head, 5);
    assert!(other
        .diff(&Rev::head("main"), &Rev::head("main"))
        .unwrap()
        .is_empty());
    assert_eq!(
        other.main().json_get_path("doc", "/x/1").unwrap(),
        Some(Value::Int(2))
    );
    assert_eq!(other.main().kv_get("a").unwrap(), None);
    assert_eq!(
        other.main().event_range(1, 10).unwrap()[0].event_type,
        "started"
    );
    // replay again is refused: versions do not follow the head
    assert!(other
        .apply_changes("main", db.changes_since("main", 0).unwrap())
        .is_err());
}

#[test]
fn strict_conflicts_and_events() {
    let db = Strata::open_temp().unwrap();
    let m = db.main();
    m.kv_put("task:1", "base").unwrap();
    m.event_append("e", 0).unwrap();
    db.fork_branch("main", "b").unwrap();
    m.kv_put("task:1", "approach A").unwrap();
    m.event_append("e", "A").unwrap();
    db.on("b").kv_put("task:1", "approach B").unwrap();
    db.on("b").event_append("e", "B").unwrap();
    let err = db
        .merge(&Rev::head("main"), "b", MergeStrategy::Strict)
        .unwrap_err();
    match err {
        Error::MergeConflicts(c) => {
            assert_eq!(c.len(), 1);
            assert_eq!(c[0].source, Some("approach A".into()));
            assert_eq!(c[0].target, Some("approach B".into()));
            assert_eq!(c[0].ancestor, Some("base".into()));
        }
        e => panic!("{e}"),
    }
    assert_eq!(
        db.on("b").kv_get("task:1").unwrap(),
        Some("approach B".into())
    );
    let r = db
        .merge(&Rev::head("main"), "b", MergeStrategy::LastWriterWins)
        .unwrap();
    assert_eq!(r.conflicts_resolved, 1);
    assert_eq!(r.events_renumbered, 1);
    let ev: Vec<_> = db
        .on("b")
        .event_range(1, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(ev, vec![Value::Int(0), "A".into(), "B".into()]);
}

#[test]
fn an_open_transaction_does_not_block_reads_or_opens() {
    let dir = tempfile::tempdir().unwrap();
    let db = Strata::open(dir.path()).unwrap();
    db.main().kv_put("x", 1).unwrap();
    let mut tx = db.begin("main").unwrap();
    tx.kv_put("x", 2).unwrap();
    // Same handle, same thread: reads see the committed state, not the open transaction.
    assert_eq!(db.main().kv_get("x").unwrap(), Some(Value::Int(1)));
    // Opening the folder again is a read and does not wait for the writer.
    let opts = Options {
        busy_timeout: std::time::Duration::from_millis(100),
        ..Default::default()
    };
    let other = Strata::open_with(dir.path(), opts).unwrap();
    assert_eq!(other.main().kv_get("x").unwrap(), Some(Value::Int(1)));
    // A second writer waits for the busy timeout and gets a clear, retryable conflict.
    let err = other.main().kv_put("y", 1).unwrap_err();
    assert!(
        err.is_retryable() && err.to_string().contains("lock"),
        "{err}"
    );
    tx.commit().unwrap();
    assert_eq!(other.main().kv_get("x").unwrap(), Some(Value::Int(2)));
    other.main().kv_put("y", 1).unwrap();
}

#[test]
fn apply_changes_is_all_or_nothing() {
    let src = Strata::open_temp().unwrap();
    for i in 0..5 {
        src.main().kv_put(&format!("k{i}"), i).unwrap();
    }
    let dst = Strata::open_temp().unwrap();
    let mut n = 0;
    let failing = src.changes_since("main", 0).unwrap().map(move |c| {
        n += 1;
        if n == 4 {
            Err(Error::Corrupt {
                what: "test stream".into(),
                detail: "cut".into(),
            })
        } else {
            c
        }
    });
    assert!(dst.apply_changes("main", failing).is_err());
    assert_eq!(dst.branch_info("main").unwrap().head, 0);
    assert!(dst.main().kv_list("").unwrap().is_empty());
}

#[test]
fn fork_copies_no_rows_and_delete_keeps_what_forks_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = Strata::open(dir.path()).unwrap();
    let mut tx = db.begin("main").unwrap();
    for i in 0..1000 {
        tx.kv_put(&format!("k{i:04}"), i).unwrap();
    }
    tx.commit().unwrap();
    let raw = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    let rows = |c: &rusqlite::Connection| {
        c.query_row("SELECT COUNT(*) FROM entries", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    assert_eq!(rows(&raw), 1000);
    db.fork_branch("main", "a").unwrap();
    db.fork_branch("a", "b").unwrap();
    assert_eq!(rows(&raw), 1000, "fork copied rows");
    db.on("a").kv_put("only-a", 1).unwrap();
    db.on("b").kv_put("only-b", 1).unwrap();
    // Deleting main and a keeps their rows while b reads them.
    db.delete_branch("main").unwrap();
    db.delete_branch("a").unwrap();
    assert!(matches!(db.branch_info("a"), Err(Error::BranchNotFound(_))));
    assert_eq!(db.on("b").kv_list("").unwrap().len(), 1001);
    assert_eq!(db.on("b").kv_get("only-a").unwrap(), None);
    assert_eq!(rows(&raw), 1002);
    // Deleting the last fork purges the whole chain.
    db.delete_branch("b").unwrap();
    assert_eq!(rows(&raw), 0);
    // A name can be reused after delete.
    db.create_branch("a").unwrap();
    assert_eq!(db.branch_info("a").unwrap().head, 0);
}

#[test]
fn bad_names_and_unknown_branches_are_clear_errors() {
    let db = Strata::open_temp().unwrap();
    let e = db
        .create_branch("_origin:hub:main")
        .unwrap_err()
        .to_string();
    assert!(e.contains("reserved"), "{e}");
    let e = db.on("nope").kv_put("k", 1).unwrap_err().to_string();
    assert_eq!(e, "branch \"nope\" not found");
    let e = db
        .fork_branch(Rev::at("main", 9), "x")
        .unwrap_err()
        .to_string();
    assert!(e.contains("has no version 9"), "{e}");
    assert!(db.begin("_internal").is_err());
    assert!(db.main().space("_sync").is_err());
    db.create_branch("x").unwrap();
    assert!(matches!(db.create_branch("x"), Err(Error::BranchExists(_))));
}

#[test]
fn json_state_and_events() {
    let db = Strata::open_temp().unwrap();
    let m = db.main();
    m.json_set_path("doc", "/a/b", json!([1])).unwrap();
    m.json_set_path("doc", "/a/b/-", 2).unwrap();
    assert_eq!(
        m.json_get("doc").unwrap().unwrap().to_json(),
        json!({"a": {"b": [1, 2]}})
    );
    assert!(m.json_set_path("doc", "/a/b/0/x", 1).is_err());
    assert!(m.state_init("c", 1).unwrap());
    assert!(!m.state_init("c", 2).unwrap());
    assert!(!m
        .state_cas("c", Some(&Value::Int(5)), Some(Value::Int(6)))
        .unwrap());
    assert!(m
        .state_cas("c", Some(&Value::Int(1)), Some(Value::Int(6)))
        .unwrap());
    assert_eq!(m.state_get("c").unwrap(), Some(Value::Int(6)));
    assert!(m.state_cas("fresh", None, Some(Value::Int(1))).unwrap());
    let notes = m.space("notes").unwrap();
    notes.event_append("a", 1).unwrap();
    notes.event_append("b", 2).unwrap();
    notes.event_append("a", 3).unwrap();
    assert_eq!(m.event_len().unwrap(), 0, "spaces have separate logs");
    let by_type: Vec<_> = notes
        .event_by_type("a", 10)
        .unwrap()
        .into_iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(by_type, vec![1, 3]);
    assert_eq!(notes.event_range(2, 1).unwrap()[0].payload, Value::Int(2));
    // The same event twice stays twice: ids tell them apart.
    let mut tx = db.begin("main").unwrap();
    tx.event_append("tick", Value::Null).unwrap();
    tx.event_append("tick", Value::Null).unwrap();
    tx.commit().unwrap();
    db.fork_branch("main", "f").unwrap();
    db.on("f").event_append("tick", Value::Null).unwrap();
    db.merge(&Rev::head("f"), "main", MergeStrategy::Strict)
        .unwrap();
    assert_eq!(m.event_len().unwrap(), 3);
}

/// The bundled SQLite must carry the fix for CVE-2025-6965 (3.50.2). There is one libsqlite3-sys in
/// the build, so the SQLite answering here is the one the engine links.
#[test]
fn linked_sqlite_is_at_least_3_50_2() {
    let db = Strata::open_temp().unwrap();
    let raw = rusqlite::Connection::open(db.path().join(DB_FILE)).unwrap();
    let v: String = raw
        .query_row("SELECT sqlite_version()", [], |r| r.get(0))
        .unwrap();
    let parts: Vec<u32> = v.split('.').map(|p| p.parse().unwrap()).collect();
    assert!(
        parts >= vec![3, 50, 2],
        "linked SQLite {v} is older than 3.50.2"
    );
    assert!(
        rusqlite::version_number() >= 3_050_002,
        "{}",
        rusqlite::version()
    );
}
