//! `Strata::write_group`: many transactions, each its own version, made durable by one commit.
//! Checked against committing the same transactions one by one.

use proptest::prelude::*;
use strata_engine::*;

/// A branch's head, live keys and log (version, message).
type BranchState = (u64, Vec<(String, Value)>, Vec<(u64, String)>);

fn state(db: &Strata, branch: &str) -> BranchState {
    let info = db.branch_info(branch).unwrap();
    let log = db
        .log(branch, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|c| (c.version, c.message))
        .collect();
    (info.head, db.on(branch).kv_list("").unwrap(), log)
}

#[derive(Clone, Debug)]
enum Tx {
    /// Puts (key, value), with a message.
    Put(Vec<(u8, i64)>),
    /// Writes, then rolls back.
    Abandoned(u8),
    /// Deletes a key (a no-op version-less commit when absent).
    Delete(u8),
}

fn tx() -> impl Strategy<Value = Tx> {
    prop_oneof![
        4 => prop::collection::vec((0u8..6, any::<i64>()), 1..4).prop_map(Tx::Put),
        1 => (0u8..6).prop_map(Tx::Abandoned),
        1 => (0u8..6).prop_map(Tx::Delete),
    ]
}

fn run(t: &mut Transaction<'_>, x: &Tx, i: usize) -> bool {
    t.set_message(format!("t{i}"));
    match x {
        Tx::Put(kvs) => {
            for (k, v) in kvs {
                t.kv_put(&format!("k{k}"), *v).unwrap();
            }
            true
        }
        Tx::Abandoned(k) => {
            t.kv_put(&format!("k{k}"), -1).unwrap();
            false
        }
        Tx::Delete(k) => {
            t.kv_delete(&format!("k{k}")).unwrap();
            true
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any split of a sequence of transactions into groups gives the same versions, values and log
    /// as committing them one by one.
    #[test]
    fn groups_equal_one_by_one(txs in prop::collection::vec(tx(), 1..24), cuts in prop::collection::vec(any::<bool>(), 24)) {
        let one = Strata::open_temp().unwrap();
        let mut one_versions = Vec::new();
        for (i, x) in txs.iter().enumerate() {
            let mut t = one.begin("main").unwrap();
            if run(&mut t, x, i) {
                one_versions.push(t.commit().unwrap());
            } else {
                t.rollback().unwrap();
                one_versions.push(None);
            }
        }
        let grouped = Strata::open_temp().unwrap();
        let mut versions = Vec::new();
        let mut group = grouped.write_group().unwrap();
        for (i, x) in txs.iter().enumerate() {
            {
                let mut t = group.begin("main").unwrap();
                if run(&mut t, x, i) {
                    versions.push(t.commit().unwrap());
                } else {
                    t.rollback().unwrap();
                    versions.push(None);
                }
            }
            if cuts[i] {
                group.commit().unwrap();
                group = grouped.write_group().unwrap();
            }
        }
        group.commit().unwrap();
        prop_assert_eq!(versions, one_versions);
        prop_assert_eq!(state(&grouped, "main"), state(&one, "main"));
    }
}

#[test]
fn nothing_is_visible_or_kept_before_the_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = Strata::open(dir.path()).unwrap();
    db.main().kv_put("a", 0).unwrap();
    let other = Strata::open(dir.path()).unwrap();
    let mut g = db.write_group().unwrap();
    for i in 1..=3 {
        let mut t = g.begin("main").unwrap();
        t.kv_put("a", i).unwrap();
        assert_eq!(t.commit().unwrap(), Some(i as u64 + 1));
    }
    // An unknown branch fails alone; the group goes on.
    assert!(matches!(g.begin("nope"), Err(Error::BranchNotFound(_))));
    assert!(g.begin("_internal").is_err());
    let mut t = g.begin("main").unwrap();
    t.kv_put("b", 1).unwrap();
    assert_eq!(t.commit().unwrap(), Some(5));
    // Another handle sees none of it yet.
    assert_eq!(other.main().kv_get("a").unwrap(), Some(Value::Int(0)));
    assert_eq!(other.branch_info("main").unwrap().head, 1);
    g.commit().unwrap();
    assert_eq!(other.main().kv_get("a").unwrap(), Some(Value::Int(3)));
    assert_eq!(other.branch_info("main").unwrap().head, 5);
    assert_eq!(other.log("main", 10).unwrap().len(), 5);
    assert_eq!(other.main().kv_get("b").unwrap(), Some(Value::Int(1)));

    // Dropped without commit: every version in it is gone.
    let mut g = db.write_group().unwrap();
    let mut t = g.begin("main").unwrap();
    t.kv_put("c", 1).unwrap();
    assert_eq!(t.commit().unwrap(), Some(6));
    drop(g);
    assert_eq!(other.branch_info("main").unwrap().head, 5);
    assert_eq!(other.main().kv_get("c").unwrap(), None);
    // The handle is usable afterwards.
    db.main().kv_put("c", 2).unwrap();
    assert_eq!(other.branch_info("main").unwrap().head, 6);
}

/// Transactions move between threads (the Python bindings hold them behind a mutex), whether on a
/// connection of their own or in a group.
#[test]
fn transactions_and_groups_are_send() {
    fn send<T: Send>() {}
    send::<Transaction<'static>>();
    send::<WriteGroup<'static>>();
    send::<ReadSnapshot<'static>>();
}
