//! Property tests: random operation sequences on several branches, checked against a simple model that
//! keeps a full `BTreeMap` snapshot of every version of every branch.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use strata_engine::*;

type Snap = BTreeMap<EntryKey, Value>;

#[derive(Clone, Debug)]
enum Op {
    Put {
        branch: usize,
        kind: Kind,
        key: u8,
        val: i64,
    },
    Delete {
        branch: usize,
        kind: Kind,
        key: u8,
    },
    Batch {
        branch: usize,
        puts: Vec<(u8, i64)>,
        dels: Vec<u8>,
    },
    /// Make `dst` equal to `src` by plain writes, then record the two heads as equal (as sync does).
    Equalize {
        src: usize,
        dst: usize,
    },
    Fork {
        src: usize,
    },
    Merge {
        src: usize,
        dst: usize,
        strict: bool,
        /// Merge the source this many versions before its head.
        back: u8,
    },
    /// Diff two points of two branches (recorded merge differences and equal points anchor it).
    DiffAt {
        a: usize,
        a_back: u8,
        b: usize,
        b_back: u8,
    },
    CheckAt {
        branch: usize,
        back: u8,
    },
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Kv), Just(Kind::Json), Just(Kind::State)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, kind(), 0..6u8, 0..4i64).prop_map(|(branch, kind, key, val)| Op::Put { branch, kind, key, val }),
        2 => (0..4usize, kind(), 0..6u8).prop_map(|(branch, kind, key)| Op::Delete { branch, kind, key }),
        1 => (0..4usize, proptest::collection::vec((0..6u8, 0..4i64), 0..4), proptest::collection::vec(0..6u8, 0..3))
            .prop_map(|(branch, puts, dels)| Op::Batch { branch, puts, dels }),
        1 => (0..4usize).prop_map(|src| Op::Fork { src }),
        3 => (0..4usize, 0..4usize, any::<bool>(), prop_oneof![4 => Just(0u8), 1 => 0..4u8])
            .prop_map(|(src, dst, strict, back)| Op::Merge { src, dst, strict, back }),
        1 => (0..4usize, 0..4u8, 0..4usize, 0..4u8)
            .prop_map(|(a, a_back, b, b_back)| Op::DiffAt { a, a_back, b, b_back }),
        1 => (0..4usize, 0..6u8).prop_map(|(branch, back)| Op::CheckAt { branch, back }),
        1 => (0..4usize, 0..4usize).prop_map(|(src, dst)| Op::Equalize { src, dst }),
    ]
}

fn ek(kind: Kind, key: u8) -> EntryKey {
    EntryKey::new("default", kind, format!("k{key}"))
}

fn write_key(tx: &mut Transaction<'_>, k: &EntryKey, v: Option<&Value>) {
    match (k.kind, v) {
        (Kind::Kv, Some(v)) => tx.kv_put(&k.key, v.clone()).unwrap(),
        (Kind::Json, Some(v)) => tx.json_put(&k.key, v.clone()).unwrap(),
        (Kind::State, Some(v)) => tx.state_set(&k.key, v.clone()).unwrap(),
        (Kind::Kv, None) => drop(tx.kv_delete(&k.key).unwrap()),
        (Kind::Json, None) => drop(tx.json_delete(&k.key).unwrap()),
        (Kind::State, None) => drop(tx.state_delete(&k.key).unwrap()),
        (Kind::Event, _) => unreachable!(),
    }
}

/// The whole live contents of a branch at a revision, read through the public API.
fn contents(db: &Strata, rev: &Rev) -> Snap {
    // A diff against an empty branch lists every entry as added.
    let d = db.diff(&Rev::head("empty"), rev).unwrap();
    let mut out = Snap::new();
    for s in d.spaces {
        assert!(s.removed.is_empty() && s.modified.is_empty());
        for e in s.added {
            out.insert(EntryKey::new(s.space.clone(), e.kind, e.key), e.b.unwrap());
        }
    }
    out
}

fn model_diff(a: &Snap, b: &Snap) -> BTreeMap<EntryKey, (Option<Value>, Option<Value>)> {
    let keys: BTreeSet<&EntryKey> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| (k.clone(), (a.get(k).cloned(), b.get(k).cloned())))
        .collect()
}

fn flat_diff(d: &BranchDiff) -> BTreeMap<EntryKey, (Option<Value>, Option<Value>)> {
    let mut out = BTreeMap::new();
    for s in &d.spaces {
        for (list, class) in [(&s.added, 0), (&s.removed, 1), (&s.modified, 2)] {
            for e in list {
                let cls = match (&e.a, &e.b) {
                    (None, Some(_)) => 0,
                    (Some(_), None) => 1,
                    _ => 2,
                };
                assert_eq!(cls, class, "entry filed under the wrong heading: {e:?}");
                out.insert(
                    EntryKey::new(s.space.clone(), e.kind, e.key.clone()),
                    (e.a.clone(), e.b.clone()),
                );
            }
        }
    }
    out
}

struct Model {
    /// Per branch name, the snapshot of every version 0..=head.
    hist: BTreeMap<String, Vec<Snap>>,
}

impl Model {
    fn head(&self, b: &str) -> &Snap {
        self.hist[b].last().unwrap()
    }
    fn at(&self, b: &str, v: u64) -> &Snap {
        &self.hist[b][v as usize]
    }
    fn commit(&mut self, b: &str, snap: Snap) {
        self.hist.get_mut(b).unwrap().push(snap);
    }
}

fn run(ops: Vec<Op>, full_scan: bool) {
    force_full_scan_on_this_thread(full_scan);
    let db = Strata::open_temp().unwrap();
    db.create_branch("empty").unwrap();
    let mut names = vec!["main".to_string()];
    let mut model = Model {
        hist: BTreeMap::from([("main".to_string(), vec![Snap::new()])]),
    };
    for op in ops {
        match op {
            Op::Put {
                branch,
                kind,
                key,
                val,
            } => {
                let b = names[branch % names.len()].clone();
                let k = ek(kind, key);
                let v = Value::Int(val);
                let mut tx = db.begin(&b).unwrap();
                write_key(&mut tx, &k, Some(&v));
                let ver = tx.commit().unwrap();
                let mut s = model.head(&b).clone();
                s.insert(k, v);
                assert_eq!(ver, Some(model.hist[&b].len() as u64));
                model.commit(&b, s);
            }
            Op::Delete { branch, kind, key } => {
                let b = names[branch % names.len()].clone();
                let k = ek(kind, key);
                let mut tx = db.begin(&b).unwrap();
                write_key(&mut tx, &k, None);
                let ver = tx.commit().unwrap();
                let mut s = model.head(&b).clone();
                let existed = s.remove(&k).is_some();
                assert_eq!(
                    ver.is_some(),
                    existed,
                    "a delete of a missing key must not make a version"
                );
                if existed {
                    model.commit(&b, s);
                }
            }
            Op::Batch { branch, puts, dels } => {
                let b = names[branch % names.len()].clone();
                let mut s = model.head(&b).clone();
                let mut tx = db.begin(&b).unwrap();
                let mut wrote = false;
                for (key, val) in puts {
                    tx.kv_put(&format!("k{key}"), val).unwrap();
                    // read-your-writes inside the transaction
                    assert_eq!(
                        tx.kv_get(&format!("k{key}")).unwrap(),
                        Some(Value::Int(val))
                    );
                    s.insert(ek(Kind::Kv, key), Value::Int(val));
                    wrote = true;
                }
                for key in dels {
                    let existed = tx.kv_delete(&format!("k{key}")).unwrap();
                    assert_eq!(existed, s.remove(&ek(Kind::Kv, key)).is_some());
                    wrote |= existed;
                    assert_eq!(tx.kv_get(&format!("k{key}")).unwrap(), None);
                }
                let ver = tx.commit().unwrap();
                assert_eq!(ver.is_some(), wrote);
                if wrote {
                    model.commit(&b, s);
                }
            }
            Op::Fork { src } => {
                if names.len() >= 4 {
                    continue;
                }
                let s = names[src % names.len()].clone();
                let n = format!("b{}", names.len());
                let info = db.fork_branch(s.as_str(), &n).unwrap();
                assert_eq!(info.head as usize + 1, model.hist[&s].len());
                let h = model.hist[&s].clone();
                model.hist.insert(n.clone(), h);
                names.push(n);
            }
            Op::Merge {
                src,
                dst,
                strict,
                back,
            } => {
                let s = names[src % names.len()].clone();
                let t = names[dst % names.len()].clone();
                if s == t {
                    assert!(db
                        .merge(&Rev::head(&s), &t, MergeStrategy::LastWriterWins)
                        .is_err());
                    continue;
                }
                let sv = (model.hist[&s].len() as u64 - 1).saturating_sub(back as u64);
                let src_rev = Rev::at(&s, sv);
                let base = db.merge_base(&src_rev, &Rev::head(&t)).unwrap();
                let base_snap = match &base {
                    Some(r) => model.at(&r.branch, r.version.unwrap()).clone(),
                    None => Snap::new(),
                };
                let src_snap = model.at(&s, sv).clone();
                let tgt_snap = model.head(&t).clone();
                // The model's three-way merge over every key.
                let mut expect = tgt_snap.clone();
                let mut conflicts = BTreeSet::new();
                for (k, (b, sv)) in model_diff(&base_snap, &src_snap) {
                    let tv = tgt_snap.get(&k).cloned();
                    if tv == b || tv == sv {
                    } else {
                        conflicts.insert(k.clone());
                    }
                    match sv {
                        Some(v) => expect.insert(k, v),
                        None => expect.remove(&k),
                    };
                }
                let strategy = if strict {
                    MergeStrategy::Strict
                } else {
                    MergeStrategy::LastWriterWins
                };
                let before_head = db.branch_info(&t).unwrap().head;
                match db.merge(&src_rev, &t, strategy) {
                    Ok(rep) => {
                        assert!(
                            !strict || conflicts.is_empty(),
                            "strict merge ignored conflicts {conflicts:?}"
                        );
                        assert_eq!(
                            rep.conflicts_resolved as usize,
                            if strict { 0 } else { conflicts.len() }
                        );
                        if expect != tgt_snap {
                            assert_eq!(rep.version, Some(before_head + 1));
                            model.commit(&t, expect);
                        } else {
                            assert_eq!(
                                rep.version, None,
                                "a merge that changes nothing makes no version"
                            );
                        }
                    }
                    Err(Error::MergeConflicts(list)) => {
                        assert!(strict);
                        let got: BTreeSet<EntryKey> = list
                            .iter()
                            .map(|c| EntryKey::new(c.space.clone(), c.kind, c.key.clone()))
                            .collect();
                        assert_eq!(got, conflicts);
                        for c in &list {
                            let k = EntryKey::new(c.space.clone(), c.kind, c.key.clone());
                            assert_eq!(c.ancestor.as_ref(), base_snap.get(&k));
                            assert_eq!(c.source.as_ref(), src_snap.get(&k));
                            assert_eq!(c.target.as_ref(), tgt_snap.get(&k));
                        }
                        assert_eq!(
                            db.branch_info(&t).unwrap().head,
                            before_head,
                            "strict failure wrote"
                        );
                    }
                    Err(e) => panic!("merge failed: {e}"),
                }
            }
            Op::Equalize { src, dst } => {
                let s = names[src % names.len()].clone();
                let t = names[dst % names.len()].clone();
                if s == t {
                    continue;
                }
                let want = model.head(&s).clone();
                let have = model.head(&t).clone();
                let mut tx = db.begin(&t).unwrap();
                for (k, (_, v)) in model_diff(&have, &want) {
                    write_key(&mut tx, &k, v.as_ref());
                }
                if tx.commit().unwrap().is_some() {
                    model.commit(&t, want);
                }
                let (sh, th) = (
                    db.branch_info(&s).unwrap().head,
                    db.branch_info(&t).unwrap().head,
                );
                db.replication()
                    .mark_equal(&Rev::at(&s, sh), &Rev::at(&t, th), &[])
                    .unwrap();
                assert!(db.diff(&Rev::head(&s), &Rev::head(&t)).unwrap().is_empty());
                assert!(db.contains(&Rev::head(&s), &Rev::head(&t)).unwrap());
            }
            Op::DiffAt {
                a,
                a_back,
                b,
                b_back,
            } => {
                let (a, b) = (
                    names[a % names.len()].clone(),
                    names[b % names.len()].clone(),
                );
                let va = (model.hist[&a].len() as u64 - 1).saturating_sub(a_back as u64);
                let vb = (model.hist[&b].len() as u64 - 1).saturating_sub(b_back as u64);
                let d = db.diff(&Rev::at(&a, va), &Rev::at(&b, vb)).unwrap();
                assert_eq!(
                    flat_diff(&d),
                    model_diff(model.at(&a, va), model.at(&b, vb)),
                    "diff {a}@{va} {b}@{vb}"
                );
            }
            Op::CheckAt { branch, back } => {
                let b = names[branch % names.len()].clone();
                let head = model.hist[&b].len() as u64 - 1;
                let v = head.saturating_sub(back as u64);
                assert_eq!(&contents(&db, &Rev::at(&b, v)), model.at(&b, v), "{b}@{v}");
                // diff between an older version and the head matches the model
                let d = db.diff(&Rev::at(&b, v), &Rev::head(&b)).unwrap();
                assert_eq!(flat_diff(&d), model_diff(model.at(&b, v), model.head(&b)));
                // replaying the change log from v onto the snapshot at v gives the head
                let mut s = model.at(&b, v).clone();
                let mut last = v;
                for cs in db.changes_since(&b, v).unwrap() {
                    let cs = cs.unwrap();
                    assert!(cs.version > last || cs.version == last && last > v);
                    last = cs.version;
                    for (k, val) in cs.puts {
                        s.insert(k, val);
                    }
                    for k in cs.deletes {
                        s.remove(&k);
                    }
                }
                assert_eq!(&s, model.head(&b));
            }
        }
    }
    // Final: every branch's head equals the model, and every pairwise diff matches.
    for a in &names {
        assert_eq!(&contents(&db, &Rev::head(a)), model.head(a), "branch {a}");
        for b in &names {
            let d = db.diff(&Rev::head(a), &Rev::head(b)).unwrap();
            assert_eq!(
                flat_diff(&d),
                model_diff(model.head(a), model.head(b)),
                "diff {a} {b}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn diff_and_merge_match_the_model(ops in proptest::collection::vec(op(), 1..60), full_scan in any::<bool>()) {
        run(ops, full_scan);
    }
}

/// Merging back and forth between two branches keeps using the latest merge as the ancestor, so a
/// key deleted on one side after an earlier merge is deleted, not resurrected.
#[test]
fn merge_base_follows_the_last_merge_both_ways() {
    let db = Strata::open_temp().unwrap();
    db.main().kv_put("x", 1).unwrap();
    db.fork_branch("main", "f").unwrap();
    db.on("f").kv_put("y", 2).unwrap();
    db.merge(&Rev::head("f"), "main", MergeStrategy::Strict)
        .unwrap();
    db.main().kv_delete("y").unwrap();
    db.main().kv_put("z", 3).unwrap();
    let r = db
        .merge(&Rev::head("main"), "f", MergeStrategy::Strict)
        .unwrap();
    assert_eq!(r.base.as_deref(), Some("f@2"));
    assert_eq!(db.on("f").kv_get("y").unwrap(), None);
    assert_eq!(db.on("f").kv_get("z").unwrap(), Some(Value::Int(3)));
    db.on("f").kv_put("w", 4).unwrap();
    let r = db
        .merge(&Rev::head("f"), "main", MergeStrategy::Strict)
        .unwrap();
    assert_eq!(r.base.as_deref(), Some("main@4"));
    assert_eq!(r.applied, 1);
    assert!(db
        .diff(&Rev::head("main"), &Rev::head("f"))
        .unwrap()
        .is_empty());
}

/// Unrelated branches merge against an empty ancestor: keys added on both sides differently conflict.
#[test]
fn unrelated_branches_merge_against_empty_base() {
    let db = Strata::open_temp().unwrap();
    db.create_branch("other").unwrap();
    db.main().kv_put("a", 1).unwrap();
    db.main().kv_put("same", 5).unwrap();
    db.on("other").kv_put("a", 2).unwrap();
    db.on("other").kv_put("same", 5).unwrap();
    db.on("other").kv_put("b", 3).unwrap();
    assert_eq!(
        db.merge_base(&Rev::head("other"), &Rev::head("main"))
            .unwrap(),
        None
    );
    match db.merge(&Rev::head("other"), "main", MergeStrategy::Strict) {
        Err(Error::MergeConflicts(c)) => {
            assert_eq!(c.len(), 1);
            assert_eq!(c[0].key, "a");
            assert_eq!(c[0].ancestor, None);
        }
        other => panic!("{other:?}"),
    }
    db.merge(&Rev::head("other"), "main", MergeStrategy::LastWriterWins)
        .unwrap();
    assert_eq!(db.main().kv_get("a").unwrap(), Some(Value::Int(2)));
    assert_eq!(db.main().kv_get("b").unwrap(), Some(Value::Int(3)));
}
