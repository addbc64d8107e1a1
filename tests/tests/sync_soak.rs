//! Soak across processes: four processes, two databases, one folder remote.
//!
//! - `write-loop` commits to database A continuously, acknowledging each transaction on stdout;
//! - `soak-sync` (a second process on A) loops pull and push of A's `main`;
//! - `soak-sync --write b` on database B commits its own acknowledged keys and loops pull and push.
//!
//! After a bounded run (`STRATA_SOAK_SECS`, default 12 s) the writer is killed, the syncers are told
//! to stop, and final pull/push rounds run until A and B agree. Then every acknowledged write of
//! both sides is in A, in B and in a fresh clone, exactly once: its keys with their values, its event
//! once in a log numbered 1, 2, 3, … with no gap; and nothing else is there.
#![cfg(unix)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{check_remote_blobs, integrity_check, runtime, url, TORTURE};
use strata_engine::{Kind, Rev, Strata, Value};
use strata_sync::{SyncError, SyncExt};
use strata_tests::sync::{contents, first_difference, parse_tagged, REMOTE};
use strata_tests::{parse_ack, Torture, CHILD_TIMEOUT, KEYS_PER_TXN};

fn soak_for() -> Duration {
    let secs = std::env::var("STRATA_SOAK_SECS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(12);
    Duration::from_secs(secs)
}

/// What a `soak-sync` child reported.
#[derive(Debug, Default)]
struct SyncerRun {
    acks: Vec<u64>,
    rounds_with_push: u64,
    /// `stopped` line: rounds, pulls, pushes, rejections, retries.
    totals: Vec<u64>,
}

fn stop_syncer(child: &mut Torture) -> SyncerRun {
    child.send_line("stop");
    let status = child.wait(CHILD_TIMEOUT);
    let lines = child.drain_lines();
    if !status.success() {
        let err = child.stderr();
        panic!(
            "{} failed ({status}); last output {:?}; stderr:\n{err}",
            child.name(),
            &lines[lines.len().saturating_sub(5)..]
        );
    }
    let mut run = SyncerRun::default();
    for l in &lines {
        if let Some(v) = parse_tagged(l, "ack", 1) {
            run.acks.push(v[0]);
        } else if let Some(v) = parse_tagged(l, "stopped", 5) {
            run.totals = v;
        } else if parse_tagged(l, "round", 1).is_some() {
            run.rounds_with_push += 1;
        } else if l != "round -" {
            panic!("{}: unexpected line {l:?}", child.name());
        }
    }
    assert_eq!(run.totals.len(), 5, "{}: no stopped line", child.name());
    assert_eq!(
        run.acks,
        (0..run.acks.len() as u64).collect::<Vec<_>>(),
        "{}: acknowledgements in order",
        child.name()
    );
    run
}

/// Pull then push `main` of the database at `dir`; a rejection is fine (another round follows).
async fn round(db: &Strata) {
    db.pull(REMOTE, "main")
        .await
        .unwrap_or_else(|e| panic!("final pull into {}: {e}", db.path().display()));
    match db.push(REMOTE, "main").await {
        Ok(_) | Err(SyncError::Rejected(_)) => {}
        Err(e) => panic!("final push from {}: {e}", db.path().display()),
    }
}

/// Whether `db` is in sync with the remote: nothing ahead, nothing behind.
async fn in_sync(db: &Strata) -> bool {
    let s = db.sync_status(REMOTE, "main").await.unwrap();
    s.ahead_entries == 0 && s.behind_versions == 0 && s.remote_version == Some(s.mirror_version)
}

/// Checks one replica holds exactly the acknowledged writes (plus, for the killed writer, at most
/// the one transaction it committed but had not acknowledged yet).
fn check_replica(db: &Strata, who: &str, writer_acks: &BTreeSet<u64>, b_acks: &BTreeSet<u64>) {
    let all = contents(db, &Rev::head("main")).unwrap();
    let mut txns: BTreeMap<u64, Vec<(u64, Value)>> = BTreeMap::new();
    let mut b_keys = BTreeSet::new();
    for (k, v) in &all {
        if k.kind != Kind::Kv {
            continue;
        }
        if let Some((i, j)) = k
            .key
            .strip_prefix('t')
            .and_then(|r| r.split_once(":k"))
            .and_then(|(i, j)| Some((i.parse::<u64>().ok()?, j.parse::<u64>().ok()?)))
        {
            txns.entry(i).or_default().push((j, v.clone()));
        } else if let Some(i) = k.key.strip_prefix("b:").and_then(|i| i.parse::<u64>().ok()) {
            assert_eq!(v, &Value::Int(i as i64), "{who}: key {}", k.key);
            b_keys.insert(i);
        } else {
            panic!("{who}: unexpected key {k:?}");
        }
    }
    // The writer's transactions: whole, with their values; every acknowledged one; at most one more.
    for (i, keys) in &txns {
        let want: Vec<(u64, Value)> = (0..KEYS_PER_TXN)
            .map(|j| (j, Value::Int(*i as i64)))
            .collect();
        let mut got = keys.clone();
        got.sort_by_key(|(j, _)| *j);
        assert_eq!(got, want, "{who}: transaction {i} is not whole");
    }
    let found: BTreeSet<u64> = txns.keys().copied().collect();
    let missing: Vec<u64> = writer_acks.difference(&found).copied().collect();
    assert!(
        missing.is_empty(),
        "{who}: acknowledged writer transactions missing: {missing:?} (of {})",
        writer_acks.len()
    );
    let extra: Vec<u64> = found.difference(writer_acks).copied().collect();
    let next = writer_acks.last().map_or(0, |l| l + 1);
    assert!(
        extra.is_empty() || extra == [next],
        "{who}: writer transactions never acknowledged: {extra:?}"
    );
    assert_eq!(
        &b_keys, b_acks,
        "{who}: B's keys are exactly B's acknowledged writes"
    );

    // Events: one per write, each once, numbered 1, 2, 3, …
    let events = db.main().event_range(1, usize::MAX).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "{who}: the event log has gaps"
    );
    let mut ticks = BTreeSet::new();
    let mut soaks = BTreeSet::new();
    for e in &events {
        let fresh = match e.event_type.as_str() {
            "tick" => ticks.insert(e.payload.as_i64().expect("tick payload") as u64),
            "soak" => {
                let p = e.payload.as_str().expect("soak payload");
                let i = p
                    .strip_prefix("b:")
                    .and_then(|i| i.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("{who}: soak event {p:?}"));
                soaks.insert(i)
            }
            other => panic!("{who}: unexpected event type {other:?}"),
        };
        assert!(
            fresh,
            "{who}: event {} {:?} appears twice",
            e.event_type, e.payload
        );
    }
    assert_eq!(ticks, found, "{who}: one tick event per writer transaction");
    assert_eq!(&soaks, b_acks, "{who}: one soak event per B write");
}

#[test]
fn a_writer_and_two_syncing_databases_in_separate_processes_converge() {
    common::init();
    let tmp = tempfile::Builder::new()
        .prefix("strata-sync-soak-")
        .tempdir()
        .expect("tempdir");
    let remote_dir = tmp.path().join("remote");
    let remote = url(&remote_dir);
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    for dir in [&a_dir, &b_dir] {
        let db = Strata::open(dir).unwrap();
        db.remote_add(REMOTE, &remote).unwrap();
    }
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (a, b) = (s(&a_dir), s(&b_dir));

    let t0 = Instant::now();
    let mut writer = Torture::spawn(TORTURE, &["write-loop", &a, "0", "--pause-ms", "3"]);
    let mut sync_a = Torture::spawn(
        TORTURE,
        &[
            "soak-sync",
            &a,
            &remote,
            "--pause-ms",
            "20",
            "--pack-fanout",
            "16",
        ],
    );
    let mut sync_b = Torture::spawn(
        TORTURE,
        &[
            "soak-sync",
            &b,
            &remote,
            "--write",
            "b",
            "--pause-ms",
            "60",
            "--pack-fanout",
            "16",
        ],
    );
    std::thread::sleep(soak_for());

    // Stop the writer (as a crash would), then the syncers (each finishes its round).
    writer.kill();
    let writer_acks: BTreeSet<u64> = writer
        .drain_lines()
        .iter()
        .map(|l| {
            parse_ack(l)
                .unwrap_or_else(|| panic!("writer: unexpected line {l:?}"))
                .0
        })
        .collect();
    let run_a = stop_syncer(&mut sync_a);
    let run_b = stop_syncer(&mut sync_b);
    let soak = t0.elapsed();
    let b_acks: BTreeSet<u64> = run_b.acks.iter().copied().collect();
    println!(
        "soak of {soak:?}: writer acknowledged {} transactions; A's syncer (rounds, pulls, pushes, \
         rejections, retries) {:?}; B {:?} with {} writes",
        writer_acks.len(),
        run_a.totals,
        run_b.totals,
        b_acks.len()
    );
    assert!(writer_acks.len() >= 20, "the writer hardly wrote");
    assert!(b_acks.len() >= 10, "B hardly wrote");
    assert!(
        run_a.rounds_with_push >= 3 && run_b.rounds_with_push >= 3,
        "the syncers hardly pushed: A {run_a:?}, B {:?}",
        run_b.totals
    );

    // Final rounds until both agree with the remote and with each other.
    let rt = runtime();
    let (db_a, db_b) = (Strata::open(&a_dir).unwrap(), Strata::open(&b_dir).unwrap());
    let mut rounds = 0;
    rt.block_on(async {
        loop {
            rounds += 1;
            assert!(rounds <= 10, "A and B did not converge in 10 rounds");
            round(&db_a).await;
            round(&db_b).await;
            round(&db_a).await;
            if in_sync(&db_a).await && in_sync(&db_b).await {
                break;
            }
        }
    });
    let ca = contents(&db_a, &Rev::head("main")).unwrap();
    let cb = contents(&db_b, &Rev::head("main")).unwrap();
    if let Some(d) = first_difference(&ca, &cb) {
        panic!("A and B differ after {rounds} final rounds: {d}");
    }
    rt.block_on(check_remote_blobs(&remote_dir))
        .unwrap_or_else(|e| panic!("remote: {e}"))
        .expect("the remote has main");

    let (c, _) = rt
        .block_on(strata_sync::clone(&remote, tmp.path().join("c")))
        .unwrap();
    let cc = contents(&c, &Rev::head("main")).unwrap();
    if let Some(d) = first_difference(&ca, &cc) {
        panic!("a fresh clone differs from A: {d}");
    }
    for (db, who) in [(&db_a, "A"), (&db_b, "B"), (&c, "clone")] {
        check_replica(db, who, &writer_acks, &b_acks);
    }
    drop((db_a, db_b, c));
    for dir in [&a_dir, &b_dir] {
        integrity_check(dir);
    }
}
