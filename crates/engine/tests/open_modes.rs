//! Opening without creating, read-only opening, discovery, reads at a past version, and the `Ours`
//! merge strategy.

use strata_engine::{discover, Error, MergeStrategy, Options, Rev, Strata, Value, DEFAULT_DIR};

#[test]
fn open_existing_never_creates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nope");
    match Strata::open_existing(&dir, Options::default()) {
        Err(Error::NotADatabase(p)) => assert_eq!(p, dir),
        other => panic!("expected NotADatabase, got {other:?}"),
    }
    assert!(!dir.exists(), "open_existing created {}", dir.display());
    // An empty folder is not a database either, and stays empty.
    std::fs::create_dir(&dir).unwrap();
    assert!(matches!(
        Strata::open_read_only(&dir, Options::default()),
        Err(Error::NotADatabase(_))
    ));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    Strata::open(&dir).unwrap();
    Strata::open_existing(&dir, Options::default()).unwrap();
}

#[test]
fn discover_walks_up_to_the_nearest_database() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let deep = root.join("a/b/c");
    std::fs::create_dir_all(&deep).unwrap();
    assert_eq!(discover(&deep), None);
    Strata::open(root.join(DEFAULT_DIR)).unwrap();
    assert_eq!(discover(&deep), Some(root.join(DEFAULT_DIR)));
    Strata::open(root.join("a").join(DEFAULT_DIR)).unwrap();
    assert_eq!(discover(&deep), Some(root.join("a").join(DEFAULT_DIR)));
    // A `.strata` folder without a database in it is skipped.
    std::fs::create_dir_all(deep.join(DEFAULT_DIR)).unwrap();
    assert_eq!(discover(&deep), Some(root.join("a").join(DEFAULT_DIR)));
    // A folder that is itself a database (a clone's DIR) is found from inside it.
    Strata::open(root.join("a/b")).unwrap();
    assert_eq!(discover(&deep), Some(root.join("a/b")));
    assert_eq!(discover(&root.join("a/b")), Some(root.join("a/b")));
}

#[cfg(unix)]
#[test]
fn a_database_without_write_permission_can_be_read() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    {
        let db = Strata::open(&dir).unwrap();
        db.main().kv_put("k", 7).unwrap();
    }
    let set_mode = |mode: u32| {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o666)).unwrap();
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set_mode(0o555);
    let db = Strata::open_read_only(&dir, Options::default()).unwrap();
    assert_eq!(db.main().kv_get("k").unwrap(), Some(Value::Int(7)));
    assert_eq!(db.log("main", 10).unwrap().len(), 1);
    // The connections are read-only whoever runs the test (root may write any file).
    let err = db.main().kv_put("k", 8).unwrap_err();
    assert!(err.to_string().contains("readonly"), "{err}");
    let _ = std::fs::remove_file(dir.join("probe"));
    assert_eq!(db.main().kv_get("k").unwrap(), Some(Value::Int(7)));
    drop(db);
    set_mode(0o755);
}

#[test]
fn a_scope_at_a_past_version_reads_it_and_refuses_writes() {
    let db = Strata::open_temp().unwrap();
    db.main().kv_put("k", 1).unwrap();
    db.main().kv_put("k", 2).unwrap();
    db.main().event_append("e", 1).unwrap();
    let past = db.at(&Rev::at("main", 1));
    assert_eq!(past.kv_get("k").unwrap(), Some(Value::Int(1)));
    assert_eq!(past.kv_list("").unwrap().len(), 1);
    assert!(past.event_range(1, 10).unwrap().is_empty());
    assert_eq!(
        db.at(&Rev::head("main")).kv_get("k").unwrap(),
        Some(Value::Int(2))
    );
    assert!(matches!(past.kv_put("k", 3), Err(Error::PastVersion(r)) if r == "main@1"));
    assert_eq!(db.main().kv_get("k").unwrap(), Some(Value::Int(2)));
    assert!(matches!(
        db.at(&Rev::at("main", 9)).kv_get("k"),
        Err(Error::VersionNotFound { .. })
    ));
}

#[test]
fn ours_keeps_the_target_value_and_applies_the_rest() {
    let db = Strata::open_temp().unwrap();
    db.main().kv_put("both", "base").unwrap();
    db.fork_branch("main", "f").unwrap();
    db.on("f").kv_put("both", "theirs").unwrap();
    db.on("f").kv_put("only_f", 1).unwrap();
    db.main().kv_put("both", "ours").unwrap();
    let r = db
        .merge(&Rev::head("f"), "main", MergeStrategy::Ours)
        .unwrap();
    assert_eq!(r.conflicts_resolved, 1);
    assert_eq!(r.applied, 1);
    assert_eq!(db.main().kv_get("both").unwrap(), Some(Value::from("ours")));
    assert_eq!(db.main().kv_get("only_f").unwrap(), Some(Value::Int(1)));
    // The merge is recorded: a strict merge now finds nothing to conflict on.
    db.merge(&Rev::head("f"), "main", MergeStrategy::Strict)
        .unwrap();
}

#[test]
fn internal_branches_rename_and_delete_with_notes_all_or_nothing() {
    use strata_engine::Note;
    let db = Strata::open_temp().unwrap();
    let rep = db.replication();
    // Internal branches are made by the library; a fork through replication stands in for mirrors.
    rep.meta_write(&[Note::put("_sync", "x", Value::from("1"))])
        .unwrap();
    for name in ["_origin:a:main", "_origin:a:f", "_origin:b:main"] {
        rep.set_fork(name, None, &Rev::at("main", 0), &[]).unwrap();
    }
    let rn = |o: &str, n: &str| (o.to_string(), n.to_string());
    // A clash anywhere renames nothing and writes no note.
    let err = rep
        .rename_internal_branches(
            &[
                rn("_origin:a:main", "_origin:c:main"),
                rn("_origin:a:f", "_origin:b:main"),
            ],
            &[Note::put("_sync", "y", Value::from("2"))],
        )
        .unwrap_err();
    assert!(matches!(err, Error::BranchExists(_)), "{err}");
    assert!(db.branch_exists("_origin:a:main").unwrap());
    assert!(!db.branch_exists("_origin:c:main").unwrap());
    assert_eq!(rep.meta_get("_sync", "y").unwrap(), None);
    // User branches are refused.
    assert!(rep
        .rename_internal_branches(&[rn("main", "_x")], &[])
        .is_err());
    rep.rename_internal_branches(
        &[
            rn("_origin:a:main", "_origin:c:main"),
            rn("_origin:a:f", "_origin:c:f"),
        ],
        &[Note::put("_sync", "y", Value::from("2"))],
    )
    .unwrap();
    assert!(db.branch_exists("_origin:c:f").unwrap() && !db.branch_exists("_origin:a:f").unwrap());
    assert_eq!(rep.meta_get("_sync", "y").unwrap(), Some(Value::from("2")));
    // Delete with a note, once; a missing branch deletes nothing but still writes the note.
    assert!(rep
        .delete_internal_branch("_origin:c:f", &[Note::delete("_sync", "y")])
        .unwrap());
    assert!(!db.branch_exists("_origin:c:f").unwrap());
    assert_eq!(rep.meta_get("_sync", "y").unwrap(), None);
    assert!(!rep.delete_internal_branch("_origin:c:f", &[]).unwrap());
    assert!(rep.delete_internal_branch("main", &[]).is_err());
    assert!(db.branch_exists("main").unwrap());
}
