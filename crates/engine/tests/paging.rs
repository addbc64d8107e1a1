//! Change sets and snapshots are cut by value bytes as well as by count, and replaying them rebuilds the
//! branch; full-scan diffs agree with the cost-following path across spaces and kinds.

use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_engine::*;

fn value_bytes(cs: &ChangeSet) -> usize {
    cs.puts.iter().map(|(_, v)| v.to_msgpack().len()).sum()
}

/// Every entry of a branch through the public API: a diff against an empty branch.
fn contents(db: &Strata, branch: &str) -> BTreeMap<EntryKey, Value> {
    if !db.branch_exists("empty").unwrap() {
        db.create_branch("empty").unwrap();
    }
    let d = db.diff(&Rev::head("empty"), &Rev::head(branch)).unwrap();
    let mut out = BTreeMap::new();
    for s in d.spaces {
        assert!(s.removed.is_empty() && s.modified.is_empty());
        for e in s.added {
            out.insert(EntryKey::new(s.space.clone(), e.kind, e.key), e.b.unwrap());
        }
    }
    out
}

fn blob(seed: usize, len: usize) -> Value {
    Value::Bytes((0..len).map(|i| (i * 31 + seed) as u8).collect())
}

const MB: usize = 1_000_000;

/// A branch of 1 MB values: v1 holds 12 of them and small entries, v2 one 5 MB value (over the limit on
/// its own), more 1 MB values and a delete, v3 a small change.
fn big_branch() -> Strata {
    let db = Strata::open_temp().unwrap();
    let mut tx = db.begin("main").unwrap();
    for i in 0..12 {
        tx.kv_put(&format!("big{i:02}"), blob(i, MB)).unwrap();
        tx.json_put(&format!("doc{i:02}"), serde_json::json!({ "i": i }))
            .unwrap();
    }
    tx.commit().unwrap();
    let mut tx = db.begin("main").unwrap();
    tx.kv_put("huge", blob(99, 5 * MB)).unwrap();
    for i in 12..15 {
        tx.kv_put(&format!("big{i:02}"), blob(i, MB)).unwrap();
    }
    tx.kv_delete("big00").unwrap();
    tx.commit().unwrap();
    db.main().state_set("cell", 1).unwrap();
    db
}

#[test]
fn change_sets_of_large_values_are_cut_by_bytes_and_replay_whole() {
    let db = big_branch();
    let sets: Vec<ChangeSet> = db
        .changes_since("main", 0)
        .unwrap()
        .collect::<Result<_>>()
        .unwrap();
    for cs in &sets {
        let bytes = value_bytes(cs);
        assert!(
            bytes <= CHANGE_PAGE_BYTES || cs.puts.len() == 1,
            "a set of version {} holds {} puts and {bytes} value bytes",
            cs.version,
            cs.puts.len()
        );
        assert!(cs.len() <= CHANGE_PAGE);
    }
    // v1 (12 MB) needs at least three sets, v2 (8 MB, one value of 5 MB) at least two, v3 one.
    let per_version = |v: u64| sets.iter().filter(|c| c.version == v).count();
    assert!(per_version(1) >= 3, "{}", per_version(1));
    assert!(per_version(2) >= 2, "{}", per_version(2));
    assert_eq!(per_version(3), 1);
    assert!(sets
        .iter()
        .any(|c| value_bytes(c) > 5 * MB && c.puts.len() == 1));
    assert!(sets.windows(2).all(|w| w[0].version <= w[1].version));
    assert_eq!(sets.iter().map(|c| c.len()).sum::<usize>(), 24 + 5 + 1);

    // Replay: consecutive sets of one version form one commit again.
    let replica = Strata::open_temp().unwrap();
    let report = replica
        .apply_changes("main", sets.into_iter().map(Ok))
        .unwrap();
    assert_eq!((report.versions, report.head, report.entries), (3, 3, 30));
    assert_eq!(contents(&replica, "main"), contents(&db, "main"));
    let entries = |db: &Strata| {
        db.log("main", 10)
            .unwrap()
            .iter()
            .map(|c| (c.version, c.entries))
            .collect::<Vec<_>>()
    };
    assert_eq!(entries(&replica), entries(&db));
}

#[test]
fn snapshots_of_large_values_are_cut_by_bytes_and_replay_whole() {
    let db = big_branch();
    let snap = db.snapshot(&Rev::head("main")).unwrap();
    assert_eq!(snap.version(), 3);
    let sets: Vec<ChangeSet> = snap.collect::<Result<_>>().unwrap();
    for cs in &sets {
        let bytes = value_bytes(cs);
        assert!(
            bytes <= CHANGE_PAGE_BYTES || cs.puts.len() == 1,
            "a snapshot set holds {} puts and {bytes} value bytes",
            cs.puts.len()
        );
    }
    // 14 live 1 MB values and a 5 MB one: at least five sets.
    assert!(sets.len() >= 5, "{}", sets.len());
    let replica = Strata::open_temp().unwrap();
    let report = replica
        .apply_changes("main", sets.into_iter().map(Ok))
        .unwrap();
    assert_eq!((report.versions, report.head), (1, 3));
    assert_eq!(contents(&replica, "main"), contents(&db, "main"));
}

/// A diff entry: space, kind, key and the two sides.
type Flat = (String, Kind, String, Option<Value>, Option<Value>);

fn flat(d: &BranchDiff) -> Vec<Flat> {
    let mut out = Vec::new();
    for s in &d.spaces {
        for e in s.added.iter().chain(&s.removed).chain(&s.modified) {
            out.push((
                s.space.clone(),
                e.kind,
                e.key.clone(),
                e.a.clone(),
                e.b.clone(),
            ));
        }
    }
    out.sort_by(|a, b| (&a.0, a.1, &a.2).cmp(&(&b.0, b.1, &b.2)));
    out
}

#[derive(Clone, Debug)]
struct Write {
    fork_side: bool,
    space: u8,
    kind: u8,
    key: u8,
    val: Option<i64>,
}

fn write() -> impl Strategy<Value = Write> {
    (
        any::<bool>(),
        0..3u8,
        0..3u8,
        0..4u8,
        proptest::option::weighted(0.8, 0..3i64),
    )
        .prop_map(|(fork_side, space, kind, key, val)| Write {
            fork_side,
            space,
            kind,
            key,
            val,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// With entries in several spaces and primitives, the full ordered scan (whose order is the index's,
    /// kind before space) and the cost-following path give the same diff, each key once, and a diff
    /// against an empty branch lists exactly the model's entries.
    #[test]
    fn full_scan_diff_agrees_across_spaces_and_kinds(base in proptest::collection::vec(write(), 0..20), after in proptest::collection::vec(write(), 0..20)) {
        let db = Strata::open_temp().unwrap();
        db.create_branch("empty").unwrap();
        let mut model: [BTreeMap<EntryKey, Value>; 2] = Default::default();
        let apply = |db: &Strata, branch: &str, w: &Write, model: &mut BTreeMap<EntryKey, Value>| {
            let space = ["a", "b", "default"][w.space as usize];
            let kind = [Kind::Kv, Kind::Json, Kind::State][w.kind as usize];
            let key = format!("k{}", w.key);
            let mut tx = db.begin(branch).unwrap();
            tx.set_space(space).unwrap();
            match (kind, w.val) {
                (Kind::Kv, Some(v)) => tx.kv_put(&key, v).unwrap(),
                (Kind::Json, Some(v)) => tx.json_put(&key, v).unwrap(),
                (_, Some(v)) => tx.state_set(&key, v).unwrap(),
                (Kind::Kv, None) => drop(tx.kv_delete(&key).unwrap()),
                (Kind::Json, None) => drop(tx.json_delete(&key).unwrap()),
                (_, None) => drop(tx.state_delete(&key).unwrap()),
            }
            tx.commit().unwrap();
            let k = EntryKey::new(space, kind, key);
            match w.val {
                Some(v) => model.insert(k, Value::Int(v)),
                None => model.remove(&k),
            };
        };
        for w in &base {
            apply(&db, "main", w, &mut model[0]);
        }
        db.fork_branch("main", "f").unwrap();
        model[1] = model[0].clone();
        for w in &after {
            let (b, m) = if w.fork_side { ("f", 1) } else { ("main", 0) };
            apply(&db, b, w, &mut model[m]);
        }
        for (x, y) in [("main", "f"), ("f", "main"), ("empty", "f"), ("main", "empty")] {
            let cheap = db.diff(&Rev::head(x), &Rev::head(y)).unwrap();
            force_full_scan_on_this_thread(true);
            let full = db.diff(&Rev::head(x), &Rev::head(y));
            force_full_scan_on_this_thread(false);
            let (cheap, full) = (flat(&cheap), flat(&full.unwrap()));
            let model_of = |b: &str| match b { "main" => model[0].clone(), "f" => model[1].clone(), _ => BTreeMap::new() };
            let (ma, mb) = (model_of(x), model_of(y));
            let mut want: Vec<_> = ma.keys().chain(mb.keys())
                .filter(|k| ma.get(*k) != mb.get(*k))
                .map(|k| (k.space.clone(), k.kind, k.key.clone(), ma.get(k).cloned(), mb.get(k).cloned()))
                .collect();
            want.sort_by(|a, b| (&a.0, a.1, &a.2).cmp(&(&b.0, b.1, &b.2)));
            want.dedup();
            prop_assert_eq!(&cheap, &want, "{} -> {}", x, y);
            prop_assert_eq!(&full, &want, "{} -> {} (full scan)", x, y);
        }
    }
}

/// `list_page` pages through a prefix in key order, pinned to one version, and matches `kv_list`.
#[test]
fn list_page_walks_a_prefix_at_one_version() {
    let db = Strata::open_temp().unwrap();
    db.transaction("main", |tx| {
        for i in 0..1000 {
            tx.kv_put(&format!("k:{i:04}"), i as i64)?;
        }
        tx.kv_put("other", 1)?;
        tx.kv_delete("k:0500")?;
        Ok(())
    })
    .unwrap();
    let (version, first) = db
        .list_page(&Rev::head("main"), DEFAULT_SPACE, Kind::Kv, "k:", None, 300)
        .unwrap();
    assert_eq!(first.len(), 300);
    // A write after the first page is not seen by the pinned pages.
    db.main().kv_put("k:9999", 1).unwrap();
    let mut all = first;
    loop {
        let after = all.last().map(|(k, _)| k.clone());
        let (v, page) = db
            .list_page(
                &Rev::at("main", version),
                DEFAULT_SPACE,
                Kind::Kv,
                "k:",
                after.as_deref(),
                300,
            )
            .unwrap();
        assert_eq!(v, version);
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    assert_eq!(all.len(), 999);
    let expected: Vec<_> = db
        .main()
        .kv_list("k:")
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k != "k:9999")
        .collect();
    assert_eq!(all, expected);
}
