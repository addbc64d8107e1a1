//! The replication API: each operation is one transaction that checks its own precondition, so a
//! commit from another handle between a caller's read and its write is never lost or misrecorded.

use strata_engine::{
    Error, FastForward, MergeStrategy, Note, RawChangeSet, Rev, Strata, Value, META_BRANCH,
};

fn kv(db: &Strata, branch: &str, key: &str) -> Option<Value> {
    db.on(branch).kv_get(key).unwrap()
}

/// A second, independent handle on the same database (another process would behave the same).
fn second(db: &Strata) -> Strata {
    Strata::open(db.path()).unwrap()
}

fn put_set(version: u64, key: &str, value: &str) -> RawChangeSet {
    let cs = strata_engine::ChangeSet {
        version,
        timestamp_micros: 1,
        puts: vec![(
            strata_engine::EntryKey::new("default", strata_engine::Kind::Kv, key),
            Value::from(value),
        )],
        deletes: vec![],
        meta: None,
    };
    RawChangeSet::from(cs)
}

/// A mirror `_m` at version 2 and a branch `main` that is an untouched fork of it at version 1.
fn clone_like() -> Strata {
    let db = Strata::open_temp().unwrap();
    let rep = db.replication();
    rep.apply("_m", 0, vec![Ok(put_set(1, "a", "1"))], None, &[])
        .unwrap();
    db.delete_branch("main").unwrap();
    assert_eq!(
        rep.fast_forward("main", 0, &Rev::at("_m", 1), &[]).unwrap(),
        FastForward::Created
    );
    rep.apply("_m", 1, vec![Ok(put_set(2, "b", "2"))], None, &[])
        .unwrap();
    db
}

#[test]
fn fast_forward_moves_in_place_and_keeps_identity_and_forks() {
    let db = clone_like();
    let before = db.branch_info("main").unwrap();
    db.fork_branch(Rev::at("main", 1), "child").unwrap();
    let r = db
        .replication()
        .fast_forward(
            "main",
            1,
            &Rev::at("_m", 2),
            &[Note::put("_sync", "s", Value::from(2))],
        )
        .unwrap();
    assert_eq!(r, FastForward::Advanced);
    let after = db.branch_info("main").unwrap();
    assert_eq!(after.head, 2);
    assert_eq!(
        after.created_micros, before.created_micros,
        "same branch, not a new one"
    );
    assert_eq!(kv(&db, "main", "b"), Some(Value::from("2")));
    assert_eq!(
        db.get_at(&Rev::at("main", 1), "default", strata_engine::Kind::Kv, "b")
            .unwrap(),
        None,
        "old versions read as before"
    );
    let child = db.branch_info("child").unwrap();
    assert_eq!(
        child.parent.as_deref(),
        Some("main"),
        "the fork's parent is still main"
    );
    assert_eq!(kv(&db, "child", "a"), Some(Value::from("1")));
    assert_eq!(kv(&db, "child", "b"), None);
    // The note committed with it.
    assert_eq!(
        db.replication().meta_get("_sync", "s").unwrap(),
        Some(Value::from(2))
    );
}

#[test]
fn fast_forward_refuses_when_another_handle_committed() {
    let db = clone_like();
    // The caller saw head 1; another handle commits before the fast-forward.
    second(&db).on("main").kv_put("local", "mine").unwrap();
    let err = db
        .replication()
        .fast_forward(
            "main",
            1,
            &Rev::at("_m", 2),
            &[Note::put("_sync", "s", Value::from(1))],
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::HeadMoved {
                expected: 1,
                actual: Some(2),
                ..
            }
        ),
        "{err}"
    );
    // Nothing was lost or written: the local commit is there, no note.
    assert_eq!(kv(&db, "main", "local"), Some(Value::from("mine")));
    assert_eq!(db.replication().meta_get("_sync", "s").unwrap(), None);
    // With the fresh head, the branch has its own commit: a fast-forward is refused, merge instead.
    let err = db
        .replication()
        .fast_forward("main", 2, &Rev::at("_m", 2), &[])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOperation(_)), "{err}");
}

#[test]
fn merge_marks_equal_only_when_clean_inside_its_own_transaction() {
    let db = clone_like();
    let rep = db.replication();
    // Branch main (an untouched fork at 1) gets a local commit from another handle after the caller
    // decided; the merge must see it and not call the result clean.
    second(&db).on("main").kv_put("local", "unpushed").unwrap();
    let m = rep
        .merge(
            &Rev::at("_m", 2),
            "main",
            MergeStrategy::LastWriterWins,
            Some(&Rev::at("_m", 1)),
            None,
            |_| vec![],
        )
        .unwrap();
    assert!(!m.clean, "a local commit landed: not clean");
    assert_eq!(kv(&db, "main", "local"), Some(Value::from("unpushed")));
    assert_eq!(kv(&db, "main", "b"), Some(Value::from("2")));
    // The mirror must not be recorded as containing main's unpushed commit.
    assert!(!db
        .contains(&Rev::at("_m", 2), &Rev::at("main", m.after))
        .unwrap());

    // The clean case: main holds nothing beyond _m@1 (it is a fork of it with a commit that the mirror
    // also got, recorded as equal), so merging _m@2 leaves main equal to _m@2, recorded both ways.
    let db = clone_like();
    db.on("main").kv_put("b", "2").unwrap(); // main@2 == _m@2's content
    db.replication()
        .mark_equal(&Rev::at("_m", 2), &Rev::at("main", 2), &[])
        .unwrap();
    db.replication()
        .apply("_m", 2, vec![Ok(put_set(3, "c", "3"))], None, &[])
        .unwrap();
    let m = db
        .replication()
        .merge(
            &Rev::at("_m", 3),
            "main",
            MergeStrategy::LastWriterWins,
            Some(&Rev::at("_m", 2)),
            Some(2),
            |_| vec![],
        )
        .unwrap();
    assert!(m.clean);
    assert!(db
        .contains(&Rev::at("_m", 3), &Rev::at("main", m.after))
        .unwrap());
}

#[test]
fn merge_with_expected_head_refuses_a_moved_branch() {
    let db = clone_like();
    db.on("main").kv_put("own", "1").unwrap(); // head 2
    second(&db).on("main").kv_put("own2", "2").unwrap(); // head 3
    let err = db
        .replication()
        .merge(
            &Rev::at("_m", 2),
            "main",
            MergeStrategy::LastWriterWins,
            None,
            Some(2),
            |_| vec![Note::put("_sync", "s", Value::from(1))],
        )
        .unwrap_err();
    assert!(matches!(err, Error::HeadMoved { .. }), "{err}");
    assert_eq!(db.branch_info("main").unwrap().head, 3);
    assert_eq!(kv(&db, "main", "b"), None, "nothing merged");
    assert_eq!(db.replication().meta_get("_sync", "s").unwrap(), None);
}

#[test]
fn apply_checks_the_expected_head_and_records_equal_points() {
    let db = Strata::open_temp().unwrap();
    let rep = db.replication();
    rep.apply("_m", 0, vec![Ok(put_set(1, "a", "1"))], None, &[])
        .unwrap();
    // Someone else applied version 2 first.
    second(&db)
        .replication()
        .apply("_m", 1, vec![Ok(put_set(2, "b", "2"))], None, &[])
        .unwrap();
    let err = rep
        .apply("_m", 1, vec![Ok(put_set(2, "c", "3"))], None, &[])
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::HeadMoved {
                actual: Some(2),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(kv(&db, "_m", "c"), None);
    // Internal branches only.
    assert!(rep
        .apply("main", 0, vec![Ok(put_set(1, "a", "1"))], None, &[])
        .is_err());
    // Equal points need explicit versions ("the head" may have moved).
    let err = rep
        .apply(
            "_m",
            2,
            vec![Ok(put_set(3, "d", "4"))],
            Some(&Rev::head("main")),
            &[],
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOperation(_)), "{err}");
}

#[test]
fn reset_and_apply_replaces_state_as_one_new_version() {
    let db = Strata::open_temp().unwrap();
    let rep = db.replication();
    rep.apply(
        "_m",
        0,
        vec![Ok(put_set(1, "a", "1")), Ok(put_set(2, "b", "2"))],
        None,
        &[],
    )
    .unwrap();
    // The snapshot at version 5 holds b=2 and c=3; then version 6 adds d.
    let snap = vec![Ok(put_set(5, "b", "2")), Ok(put_set(5, "c", "3"))];
    let rest = vec![Ok(put_set(6, "d", "4"))];
    let r = rep.reset_and_apply("_m", 2, snap, 5, rest, &[]).unwrap();
    assert_eq!(r.head, 6);
    assert_eq!(kv(&db, "_m", "a"), None);
    assert_eq!(kv(&db, "_m", "c"), Some(Value::from("3")));
    assert_eq!(kv(&db, "_m", "d"), Some(Value::from("4")));
    assert_eq!(
        db.get_at(&Rev::at("_m", 2), "default", strata_engine::Kind::Kv, "a")
            .unwrap(),
        Some(Value::from("1")),
        "history stays"
    );
    assert!(
        !db.list_branches(true)
            .unwrap()
            .iter()
            .any(|b| b.name.starts_with("_staging")),
        "no staging branch left"
    );
    // A wrong expected head writes nothing.
    assert!(rep
        .reset_and_apply("_m", 2, vec![Ok(put_set(9, "z", "1"))], 9, vec![], &[])
        .is_err());
    assert_eq!(db.branch_info("_m").unwrap().head, 6);
}

#[test]
fn set_fork_replaces_only_the_expected_mirror() {
    let db = Strata::open_temp().unwrap();
    db.on("main").kv_put("a", "1").unwrap();
    let rep = db.replication();
    rep.set_fork("_m", None, &Rev::at("main", 1), &[]).unwrap();
    assert!(db.contains(&Rev::at("main", 1), &Rev::at("_m", 1)).unwrap());
    // Expected absent, but it exists: refused.
    assert!(matches!(
        rep.set_fork("_m", None, &Rev::at("main", 1), &[]),
        Err(Error::HeadMoved { .. })
    ));
    db.on("main").kv_put("b", "2").unwrap();
    rep.set_fork("_m", Some(1), &Rev::at("main", 2), &[])
        .unwrap();
    assert_eq!(kv(&db, "_m", "b"), Some(Value::from("2")));
}

#[test]
fn meta_init_is_first_writer_wins_and_notes_live_in_the_meta_branch() {
    let db = Strata::open_temp().unwrap();
    let rep = db.replication();
    assert_eq!(
        rep.meta_init("_sync", "id", Value::from("a")).unwrap(),
        Value::from("a")
    );
    assert_eq!(
        second(&db)
            .replication()
            .meta_init("_sync", "id", Value::from("b"))
            .unwrap(),
        Value::from("a")
    );
    assert_eq!(
        rep.meta_state("_sync", "id").unwrap(),
        Some(Value::from("a"))
    );
    rep.meta_write(&[
        Note::put("_sync", "k1", Value::from(1)),
        Note::put("_sync", "k2", Value::from(2)),
    ])
    .unwrap();
    let list = rep.meta_list("_sync", "k").unwrap();
    assert_eq!(list.len(), 2);
    rep.meta_write(&[Note::delete("_sync", "k1")]).unwrap();
    assert_eq!(rep.meta_list("_sync", "k").unwrap().len(), 1);
    assert!(db.branch_exists(META_BRANCH).unwrap());
    // Notes go to internal spaces only.
    assert!(rep
        .meta_write(&[Note::put("public", "k", Value::from(1))])
        .is_err());
}

/// A sync client that keeps pulling without managing to push: its branch merges the mirror again and
/// again while its own writes stay unpushed. Diffing the mirror against the branch (what a push does)
/// and the next merge must cost the client's own writes plus the changes since the last merge, not
/// everything merged since the last point where both were equal.
#[test]
fn diff_cost_follows_the_changes_since_the_last_merge_not_the_last_equal_point() {
    let db = Strata::open_temp().unwrap();
    let rep = db.replication();
    rep.apply("_m", 0, vec![Ok(put_set(1, "seed", "0"))], None, &[])
        .unwrap();
    db.delete_branch("main").unwrap();
    rep.fast_forward("main", 0, &Rev::at("_m", 1), &[]).unwrap();
    let mut mirror_head = 1;
    for round in 0..40u64 {
        // Another client's push: 50 keys land in the mirror.
        let cs = strata_engine::ChangeSet {
            version: mirror_head + 1,
            timestamp_micros: 1,
            puts: (0..50)
                .map(|i| {
                    (
                        strata_engine::EntryKey::new(
                            "default",
                            strata_engine::Kind::Kv,
                            format!("r{round}:{i}"),
                        ),
                        Value::Int(i),
                    )
                })
                .collect(),
            deletes: vec![],
            meta: None,
        };
        rep.apply(
            "_m",
            mirror_head,
            vec![Ok(RawChangeSet::from(cs))],
            None,
            &[],
        )
        .unwrap();
        mirror_head += 1;
        // This client's own write, never pushed, then its pull.
        db.on("main")
            .kv_put(&format!("own{round}"), round as i64)
            .unwrap();
        db.merge(
            &Rev::at("_m", mirror_head),
            "main",
            MergeStrategy::LastWriterWins,
        )
        .unwrap();
    }
    let (m, b) = (Rev::at("_m", mirror_head), Rev::head("main"));
    // The difference is exactly the 40 unpushed writes.
    let d = db.diff(&m, &b).unwrap();
    assert_eq!(d.counts(), (40, 0, 0), "{d:?}");
    let rows = db
        .diff_candidate_rows(&m, &b)
        .unwrap()
        .expect("not a full scan");
    // 40 recorded keys; 2,000 merged rows and 40 own rows lie between the two sides' fork point.
    assert!(
        rows <= 45,
        "a diff after 40 merges reads {rows} candidate rows"
    );
    // One more round: the next diff reads the new rows and the recorded keys, nothing older.
    db.on("main").kv_put("last", 1).unwrap();
    let rows = db
        .diff_candidate_rows(&m, &Rev::head("main"))
        .unwrap()
        .unwrap();
    assert!(rows <= 46, "{rows}");
}

/// `apply` inserts a new branch's row after its entries, with the id the branch would have had:
/// one past every id ever used, so a deleted branch whose rows a fork still reads is never mixed in.
#[test]
fn apply_creates_a_new_branch_with_a_fresh_id() {
    let db = Strata::open_temp().unwrap();
    db.create_branch("x").unwrap();
    db.on("x").kv_put("old", 1).unwrap();
    db.fork_branch("x", "y").unwrap();
    db.delete_branch("x").unwrap();
    let rep = db.replication();
    let sets: Vec<_> = (1..=3)
        .map(|v| Ok(put_set(v, &format!("k{v}"), "v")))
        .collect();
    let report = rep.apply("_n", 0, sets, None, &[]).unwrap();
    assert_eq!((report.head, report.versions, report.entries), (3, 3, 3));
    let info = db.branch_info("_n").unwrap();
    assert_eq!((info.head, info.parent), (3, None));
    assert_eq!(kv(&db, "_n", "k2"), Some(Value::from("v")));
    assert_eq!(kv(&db, "_n", "old"), None);
    assert_eq!(kv(&db, "y", "old"), Some(Value::from(1)));
    assert_eq!(kv(&db, "y", "k2"), None);
    // The next apply continues from the recorded head; an empty stream creates an empty branch.
    rep.apply("_n", 3, vec![Ok(put_set(4, "k4", "w"))], None, &[])
        .unwrap();
    assert_eq!(db.branch_info("_n").unwrap().head, 4);
    rep.apply("_e", 0, std::iter::empty(), None, &[]).unwrap();
    assert_eq!(db.branch_info("_e").unwrap().head, 0);
    assert_eq!(kv(&db, "_e", "k2"), None);
    assert_eq!(kv(&db, "_n", "k4"), Some(Value::from("w")));
}
