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
