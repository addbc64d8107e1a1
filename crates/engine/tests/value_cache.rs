//! The value cache of `ReadSnapshot::get` (`Options::read_cache_bytes`): reads through it answer
//! exactly as reads without it, whatever happened between them, and it is used.
//!
//! The model is the uncached engine itself: a second handle on the same folder with no cache. The
//! history interleaves writes (through the cached handle and through another handle, as another
//! process would), forks, merges, branch deletes and re-creations under the same name, with
//! snapshot reads at every step, so entries cached for old views are around when new views are read.

use proptest::prelude::*;
use strata_engine::*;

#[derive(Clone, Debug)]
enum Step {
    Put(u8, i64),
    Delete(u8),
    /// A write through the other handle.
    OtherPut(u8, i64),
    Fork,
    Switch,
    /// Merges the current branch into main.
    MergeIntoMain,
    /// Deletes the current branch (not main) and creates it again, empty, under the same name.
    Recreate,
    Read,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..6, any::<i64>()).prop_map(|(k, v)| Step::Put(k, v)),
        2 => (0u8..6).prop_map(Step::Delete),
        2 => (0u8..6, any::<i64>()).prop_map(|(k, v)| Step::OtherPut(k, v)),
        1 => Just(Step::Fork),
        2 => Just(Step::Switch),
        1 => Just(Step::MergeIntoMain),
        1 => Just(Step::Recreate),
        4 => Just(Step::Read),
    ]
}

fn cached(dir: &std::path::Path, bytes: usize) -> Strata {
    let opts = Options {
        read_cache_bytes: bytes,
        ..Options::default()
    };
    Strata::open_with(dir, opts).unwrap()
}

/// Every key of every branch, at the head and at each version, read through a snapshot of `db`
/// and through `model`; they must agree.
fn check(db: &Strata, model: &Strata, branches: &[String]) -> Result<(), TestCaseError> {
    let snap = db.read_snapshot().unwrap();
    for b in branches {
        let head = model.branch_info(b).unwrap().head;
        for v in (head.saturating_sub(2)..=head).map(Some).chain([None]) {
            let rev = Rev {
                branch: b.clone(),
                version: v,
            };
            for k in 0..7u8 {
                let key = format!("k{k}");
                let want = model.at(&rev).kv_get(&key).map_err(|e| e.to_string());
                let got = snap
                    .get(&rev, DEFAULT_SPACE, Kind::Kv, &key)
                    .map_err(|e| e.to_string());
                prop_assert_eq!(got, want, "{}@{:?} {}", b, v, key);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn cached_reads_match_uncached_reads(
        steps in prop::collection::vec(step(), 1..40),
        // 1 KiB makes the generations turn over every few reads; 1 MiB keeps everything.
        budget in prop_oneof![Just(1024usize), Just(1 << 20)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = cached(dir.path(), budget);
        let model = Strata::open(dir.path()).unwrap();
        let mut branches = vec!["main".to_string()];
        let mut cur = 0usize;
        for s in steps {
            let b = branches[cur].clone();
            match s {
                Step::Put(k, v) => db.on(&b).kv_put(&format!("k{k}"), v).unwrap(),
                Step::Delete(k) => { db.on(&b).kv_delete(&format!("k{k}")).unwrap(); }
                Step::OtherPut(k, v) => model.on(&b).kv_put(&format!("k{k}"), v).unwrap(),
                Step::Fork => {
                    let name = format!("f{}", branches.len());
                    db.fork_branch(b.as_str(), &name).unwrap();
                    branches.push(name);
                }
                Step::Switch => cur = (cur + 1) % branches.len(),
                Step::MergeIntoMain => {
                    if b != "main" {
                        db.merge(&Rev::head(&b), "main", MergeStrategy::LastWriterWins).unwrap();
                    }
                }
                Step::Recreate => {
                    if b != "main" {
                        db.delete_branch(&b).unwrap();
                        db.create_branch(&b).unwrap();
                    }
                }
                Step::Read => check(&db, &model, &branches)?,
            }
        }
        check(&db, &model, &branches)?;
        let stats = db.cache_stats().unwrap();
        prop_assert!(stats.bytes <= budget as u64, "{:?}", stats);
    }
}

#[test]
fn hot_reads_are_answered_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let db = cached(dir.path(), 1 << 20);
    for i in 0..10 {
        db.main().kv_put(&format!("k{i}"), i).unwrap();
    }
    let head = Rev::head("main");
    for _ in 0..5 {
        let snap = db.read_snapshot().unwrap();
        for i in 0..12 {
            let want = (i < 10).then_some(Value::Int(i));
            assert_eq!(
                snap.get(&head, DEFAULT_SPACE, Kind::Kv, &format!("k{i}"))
                    .unwrap(),
                want
            );
        }
    }
    let s = db.cache_stats().unwrap();
    // The first round read SQLite; the four after it did not (absent keys included).
    assert_eq!((s.misses, s.hits), (12, 48), "{s:?}");
    // A commit is a new view: the next read sees it.
    db.main().kv_put("k0", 100).unwrap();
    let snap = db.read_snapshot().unwrap();
    assert_eq!(
        snap.get(&head, DEFAULT_SPACE, Kind::Kv, "k0").unwrap(),
        Some(Value::Int(100))
    );
    // Without a budget there is no cache.
    assert!(Strata::open(dir.path()).unwrap().cache_stats().is_none());
}

fn changes(version: u64, puts: &[(&str, i64)], deletes: &[&str]) -> Result<RawChangeSet> {
    let key = |k: &str| EntryKey::new(DEFAULT_SPACE, Kind::Kv, k);
    Ok(RawChangeSet {
        version,
        timestamp_micros: 1,
        puts: puts
            .iter()
            .map(|(k, v)| (key(k), Value::Int(*v).to_msgpack()))
            .collect(),
        deletes: deletes.iter().map(|k| key(k)).collect(),
        meta: None,
    })
}

/// Every branch (internal ones included) at every version, for kv, JSON and state keys, through a
/// snapshot of `db` and through `model`.
fn check_all(db: &Strata, model: &Strata, step: &str) {
    let snap = db.read_snapshot().unwrap();
    for b in model.list_branches(true).unwrap() {
        for v in (0..=b.head).map(Some).chain([None]) {
            let rev = Rev {
                branch: b.name.clone(),
                version: v,
            };
            for kind in [Kind::Kv, Kind::Json, Kind::State] {
                for k in ["a", "b", "c"] {
                    let want = model
                        .get_at(&rev, DEFAULT_SPACE, kind, k)
                        .map_err(|e| e.to_string());
                    let got = snap
                        .get(&rev, DEFAULT_SPACE, kind, k)
                        .map_err(|e| e.to_string());
                    assert_eq!(got, want, "after {step}: {}@{v:?} {kind:?} {k}", b.name);
                }
            }
        }
    }
}

/// The replication API (what sync runs) moves heads, re-parents, replaces and renames branches:
/// reads through the cache follow each step.
#[test]
fn cached_reads_follow_replication_and_rolled_back_groups() {
    let dir = tempfile::tempdir().unwrap();
    let db = cached(dir.path(), 1 << 20);
    let model = Strata::open(dir.path()).unwrap();
    let r = db.replication();
    db.create_branch("u").unwrap();
    db.main()
        .json_put("a", serde_json::json!({"x": 1}))
        .unwrap();
    db.main().state_set("b", 1).unwrap();
    check_all(&db, &model, "json and state");
    r.apply(
        "_m",
        0,
        vec![changes(1, &[("a", 1)], &[]), changes(2, &[("b", 2)], &[])],
        None,
        &[],
    )
    .unwrap();
    check_all(&db, &model, "apply");
    r.reset_and_apply(
        "_m",
        2,
        vec![changes(5, &[("a", 5), ("c", 5)], &[])],
        5,
        vec![changes(6, &[], &["a"])],
        &[],
    )
    .unwrap();
    check_all(&db, &model, "reset_and_apply");
    r.fast_forward("u", 0, &Rev::at("_m", 5), &[]).unwrap();
    check_all(&db, &model, "fast-forward of an empty branch");
    r.apply("_m", 6, vec![changes(7, &[("b", 7)], &[])], None, &[])
        .unwrap();
    r.fast_forward("u", 5, &Rev::at("_m", 7), &[]).unwrap();
    check_all(&db, &model, "fast-forward of an untouched fork");
    r.set_fork("_m", Some(7), &Rev::at("u", 7), &[]).unwrap();
    check_all(&db, &model, "set_fork replacing a branch");
    r.rename_internal_branches(&[("_m".into(), "_n".into())], &[])
        .unwrap();
    check_all(&db, &model, "rename");
    r.apply("_m", 0, vec![changes(1, &[("a", 100)], &[])], None, &[])
        .unwrap();
    check_all(&db, &model, "a new branch under the old name");
    r.delete_internal_branch("_m", &[]).unwrap();
    r.apply("_m", 0, vec![changes(3, &[("a", 300)], &[])], None, &[])
        .unwrap();
    check_all(&db, &model, "delete, then apply again");
    db.on("u").kv_put("a", 9).unwrap();
    r.merge(
        &Rev::at("_n", 7),
        "u",
        MergeStrategy::LastWriterWins,
        None,
        None,
        |_| vec![],
    )
    .unwrap();
    check_all(&db, &model, "merge");
    // A group rolled back, then a commit at the version number it had used.
    {
        let mut g = db.write_group().unwrap();
        let mut t = g.begin("main").unwrap();
        t.kv_put("a", 111).unwrap();
        t.commit().unwrap();
    }
    check_all(&db, &model, "a rolled-back group");
    db.main().kv_put("a", 222).unwrap();
    check_all(&db, &model, "a commit at the rolled-back version");
    // A snapshot held across commits keeps its state.
    let old = db.read_snapshot().unwrap();
    db.main().kv_put("a", 333).unwrap();
    check_all(&db, &model, "a commit after an open snapshot");
    assert_eq!(
        old.get(&Rev::head("main"), DEFAULT_SPACE, Kind::Kv, "a")
            .unwrap(),
        Some(Value::Int(222))
    );
}

/// Past its view table's cap the cache starts over; a snapshot opened before keeps its answers.
#[test]
fn many_views_start_the_cache_over() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        read_cache_bytes: 1 << 20,
        durability: Durability::Normal,
        ..Options::default()
    };
    let db = Strata::open_with(dir.path(), opts).unwrap();
    let model = Strata::open(dir.path()).unwrap();
    db.main().kv_put("b", 1).unwrap();
    let before = db.read_snapshot().unwrap();
    let head = Rev::head("main");
    assert_eq!(
        before.get(&head, DEFAULT_SPACE, Kind::Kv, "a").unwrap(),
        None
    );
    for i in 0..4200 {
        db.main().kv_put("a", i).unwrap();
        let s = db.read_snapshot().unwrap();
        assert_eq!(
            s.get(&head, DEFAULT_SPACE, Kind::Kv, "a").unwrap(),
            Some(Value::Int(i))
        );
    }
    assert_eq!(
        before.get(&head, DEFAULT_SPACE, Kind::Kv, "a").unwrap(),
        None
    );
    assert_eq!(
        before.get(&head, DEFAULT_SPACE, Kind::Kv, "b").unwrap(),
        Some(Value::Int(1))
    );
    check_all(&db, &model, "4,200 views");
}
