//! `Strata::read_snapshot`: one consistent state for many point reads, answering exactly as the
//! scope reads do (values, absences and errors), checked against them over random histories.

use proptest::prelude::*;
use strata_engine::*;

#[derive(Clone, Debug)]
enum Step {
    Put(u8, i64),
    Delete(u8),
    Fork,
    Switch,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..8, any::<i64>()).prop_map(|(k, v)| Step::Put(k, v)),
        2 => (0u8..8).prop_map(Step::Delete),
        1 => Just(Step::Fork),
        1 => Just(Step::Switch),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every get through a snapshot equals the same get through `Strata::at`, at every version of
    /// every branch, for present, deleted and never-written keys and for unknown versions.
    #[test]
    fn snapshot_gets_match_scope_gets(steps in prop::collection::vec(step(), 1..30)) {
        let db = Strata::open_temp().unwrap();
        let mut branches = vec!["main".to_string()];
        let mut cur = 0usize;
        for s in steps {
            let b = branches[cur].clone();
            match s {
                Step::Put(k, v) => db.on(&b).kv_put(&format!("k{k}"), v).unwrap(),
                Step::Delete(k) => { db.on(&b).kv_delete(&format!("k{k}")).unwrap(); }
                Step::Fork => {
                    let name = format!("f{}", branches.len());
                    db.fork_branch(b.as_str(), &name).unwrap();
                    branches.push(name);
                }
                Step::Switch => cur = (cur + 1) % branches.len(),
            }
        }
        let snap = db.read_snapshot().unwrap();
        for b in &branches {
            let head = db.branch_info(b).unwrap().head;
            for v in (0..=head + 1).map(Some).chain([None]) {
                let rev = Rev { branch: b.clone(), version: v };
                for k in 0..9u8 {
                    let key = format!("k{k}");
                    let want = db.at(&rev).kv_get(&key).map_err(|e| e.to_string());
                    let got = snap.get(&rev, DEFAULT_SPACE, Kind::Kv, &key).map_err(|e| e.to_string());
                    prop_assert_eq!(got, want, "{}@{:?} {}", b, v, key);
                }
            }
        }
    }
}

#[test]
fn a_snapshot_does_not_see_later_commits() {
    let db = Strata::open_temp().unwrap();
    db.main().kv_put("a", 1).unwrap();
    let snap = db.read_snapshot().unwrap();
    db.main().kv_put("a", 2).unwrap();
    db.main()
        .json_put("doc", serde_json::json!({"x": 1}))
        .unwrap();
    let head = Rev::head("main");
    assert_eq!(
        snap.get(&head, DEFAULT_SPACE, Kind::Kv, "a").unwrap(),
        Some(Value::Int(1))
    );
    assert_eq!(
        snap.get(&head, DEFAULT_SPACE, Kind::Json, "doc").unwrap(),
        None
    );
    drop(snap);
    let snap = db.read_snapshot().unwrap();
    assert_eq!(
        snap.get(&head, DEFAULT_SPACE, Kind::Kv, "a").unwrap(),
        Some(Value::Int(2))
    );
}

#[test]
fn snapshot_errors_name_what_is_wrong() {
    let db = Strata::open_temp().unwrap();
    db.main().kv_put("a", 1).unwrap();
    let snap = db.read_snapshot().unwrap();
    let e = snap
        .get(&Rev::head("nope"), DEFAULT_SPACE, Kind::Kv, "a")
        .unwrap_err();
    assert!(
        matches!(e, Error::BranchNotFound(ref b) if b == "nope"),
        "{e}"
    );
    let e = snap
        .get(&Rev::at("main", 9), DEFAULT_SPACE, Kind::Kv, "a")
        .unwrap_err();
    assert!(
        matches!(e, Error::VersionNotFound { version: 9, .. }),
        "{e}"
    );
    assert!(snap
        .get(&Rev::head("main"), DEFAULT_SPACE, Kind::Kv, "")
        .is_err());
    assert!(snap.get(&Rev::head("main"), "", Kind::Kv, "a").is_err());
    assert!(snap
        .get(&Rev::head("main"), DEFAULT_SPACE, Kind::Event, "1")
        .is_err());
    // A failed read leaves the snapshot usable.
    assert_eq!(
        snap.get(&Rev::head("main"), DEFAULT_SPACE, Kind::Kv, "a")
            .unwrap(),
        Some(Value::Int(1))
    );
}
