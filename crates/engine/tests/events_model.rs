//! Property test for event-log merges: random appends on three branches and random merges between them.
//! Invariants: a merge never loses or duplicates an event, a log's sequence numbers are always 1..=n
//! with no gaps, and merging both ways makes the logs equal.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use strata_engine::*;

#[derive(Clone, Debug)]
enum Op {
    Append { branch: usize, n: u8 },
    Merge { src: usize, dst: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, 1..3u8).prop_map(|(branch, n)| Op::Append { branch, n }),
        2 => (0..3usize, 0..3usize).prop_map(|(src, dst)| Op::Merge { src, dst }),
    ]
}

fn log(db: &Strata, b: &str) -> Vec<(u64, i64)> {
    db.on(b)
        .event_range(1, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.payload.as_i64().unwrap()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn event_merges_lose_nothing(ops in proptest::collection::vec(op(), 1..40), full_scan in any::<bool>()) {
        force_full_scan_on_this_thread(full_scan);
        let db = Strata::open_temp().unwrap();
        db.main().event_append("e", 0).unwrap();
        db.fork_branch("main", "a").unwrap();
        db.fork_branch("main", "b").unwrap();
        let names = ["main", "a", "b"];
        // What each branch must hold: the set of event ids it has seen.
        let mut holds: BTreeMap<&str, BTreeSet<i64>> = names.iter().map(|n| (*n, BTreeSet::from([0]))).collect();
        let mut next_id = 1i64;
        for op in ops {
            match op {
                Op::Append { branch, n } => {
                    let b = names[branch];
                    let mut tx = db.begin(b).unwrap();
                    for _ in 0..n {
                        tx.event_append("e", next_id).unwrap();
                        holds.get_mut(b).unwrap().insert(next_id);
                        next_id += 1;
                    }
                    tx.commit().unwrap();
                }
                Op::Merge { src, dst } => {
                    if src == dst { continue; }
                    let (s, t) = (names[src], names[dst]);
                    db.merge(&Rev::head(s), t, MergeStrategy::Strict).unwrap();
                    let src_ids = holds[s].clone();
                    holds.get_mut(t).unwrap().extend(src_ids);
                }
            }
            for b in names {
                let l = log(&db, b);
                let seqs: Vec<u64> = l.iter().map(|(s, _)| *s).collect();
                prop_assert_eq!(seqs, (1..=l.len() as u64).collect::<Vec<_>>(), "gap in {}", b);
                let ids: Vec<i64> = l.iter().map(|(_, i)| *i).collect();
                let set: BTreeSet<i64> = ids.iter().copied().collect();
                prop_assert_eq!(set.len(), ids.len(), "duplicate event in {}: {:?}", b, l);
                prop_assert_eq!(&set, &holds[b], "events lost or invented in {}", b);
            }
        }
        // Merging a into b and back makes the two logs equal.
        db.merge(&Rev::head("a"), "b", MergeStrategy::Strict).unwrap();
        db.merge(&Rev::head("b"), "a", MergeStrategy::Strict).unwrap();
        prop_assert_eq!(log(&db, "a"), log(&db, "b"));
    }
}
