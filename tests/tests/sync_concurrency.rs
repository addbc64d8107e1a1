//! Concurrent sync: three processes, each with its own database, push to and pull from one remote at
//! the same time: a folder, and S3 (moto) and Azure (Azurite) buckets when the emulators are up. Every
//! acknowledged write ends up everywhere, exactly once; no two pushes are acknowledged with the same
//! remote version; a folder remote's cursor history has one version per successful push.
#![cfg(unix)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use common::{check_remote_blobs_at, cursor_records, integrity_check, runtime, url, TORTURE};
use strata_engine::{Rev, Strata, Value};
use strata_remote_s3::testing::emulator;
use strata_remote_s3::Provider;
use strata_sync::SyncExt;
use strata_tests::sync::{contents, first_difference, parse_tagged, REMOTE};
use strata_tests::{Torture, CHILD_TIMEOUT};

const CLIENTS: u64 = 3;

/// Pushes write a compaction snapshot every this many deltas (`STRATA_SYNC_SNAPSHOT_EVERY`, default 8),
/// so that pulls and pushes meet compacted cursors several times during the run (the library's
/// default, 32, would compact about once).
fn pack_fanout() -> String {
    std::env::var("STRATA_SYNC_SNAPSHOT_EVERY").unwrap_or_else(|_| "8".into())
}

fn per_client() -> u64 {
    std::env::var("STRATA_SYNC_N")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(15)
}

/// What one `sync-loop` child reported.
struct ClientRun {
    /// `(i, remote_version)` per acknowledged push, in order.
    acks: Vec<(u64, u64)>,
    rejections: u64,
    other_retries: u64,
}

#[test]
fn three_processes_sync_through_one_folder_remote() {
    common::init();
    let tmp = tempfile::Builder::new()
        .prefix("strata-sync-e2e-")
        .tempdir()
        .expect("tempdir");
    let remote_dir = tmp.path().join("remote");
    three_processes(&tmp, &url(&remote_dir), &BTreeMap::new(), Some(&remote_dir));
}

#[test]
fn three_processes_sync_through_one_bucket() {
    common::init();
    for provider in [Provider::S3, Provider::Azure] {
        let Some(e) = emulator(provider, "three-processes") else {
            return;
        };
        let tmp = tempfile::Builder::new()
            .prefix("strata-sync-bucket-")
            .tempdir()
            .expect("tempdir");
        three_processes(&tmp, &e.url, &e.options, None);
    }
}

/// Runs the three clients against `remote` (with `options`); `folder` is the remote's folder when it
/// is one, for the checks of its cursor records.
fn three_processes(
    tmp: &tempfile::TempDir,
    remote: &str,
    options: &BTreeMap<String, String>,
    folder: Option<&std::path::Path>,
) {
    let n = per_client();
    let total = CLIENTS * n;
    let remote = remote.to_string();
    let option_args: Vec<String> = options
        .iter()
        .flat_map(|(k, v)| ["--option".to_string(), format!("{k}={v}")])
        .collect();
    let dbs: Vec<_> = (0..CLIENTS)
        .map(|c| tmp.path().join(format!("client{c}")))
        .collect();

    let pack_fanout = pack_fanout();
    let t0 = Instant::now();
    let mut children: Vec<Torture> = (0..CLIENTS)
        .map(|c| {
            let (db, client, n) = (
                dbs[c as usize].to_str().expect("utf-8 path").to_string(),
                c.to_string(),
                n.to_string(),
            );
            let mut args: Vec<&str> = vec![
                "sync-loop",
                &db,
                &remote,
                &client,
                &n,
                "--barrier",
                "stdin",
                "--pack-fanout",
                &pack_fanout,
            ];
            args.extend(option_args.iter().map(String::as_str));
            Torture::spawn(TORTURE, &args)
        })
        .collect();
    // Start them together once each has opened its database, so that the first pushes race too.
    for c in &mut children {
        assert_eq!(c.expect_line(CHILD_TIMEOUT), "ready", "{}", c.name());
    }
    for c in &mut children {
        c.send_line("go");
    }
    let mut runs = Vec::new();
    for c in &mut children {
        let status = c.wait(CHILD_TIMEOUT * 2);
        let lines = c.drain_lines();
        if !status.success() {
            let err = c.stderr();
            panic!(
                "{} failed ({status}); output {lines:?}; stderr:\n{err}",
                c.name()
            );
        }
        let mut run = ClientRun {
            acks: vec![],
            rejections: 0,
            other_retries: 0,
        };
        for l in &lines {
            if let Some(v) = parse_tagged(l, "acked", 2) {
                run.acks.push((v[0], v[1]));
            } else if let Some(v) = parse_tagged(l, "done", 2) {
                run.rejections = v[0];
                run.other_retries = v[1];
            } else {
                panic!("{}: unexpected line {l:?}", c.name());
            }
        }
        assert_eq!(
            run.acks.iter().map(|a| a.0).collect::<Vec<_>>(),
            (0..n).collect::<Vec<_>>(),
            "{}: every write acknowledged once, in order",
            c.name()
        );
        runs.push(run);
    }
    let loops = t0.elapsed();

    // The remote: its blobs all present; in a folder, one cursor record per successful push, versions
    // consecutive.
    let rt = runtime();
    let doc = rt
        .block_on(check_remote_blobs_at(&remote, options))
        .unwrap_or_else(|e| panic!("remote: {e}"))
        .expect("the remote has main");
    let acked_versions: Vec<u64> = runs
        .iter()
        .flat_map(|r| r.acks.iter().map(|a| a.1))
        .collect();
    let distinct: BTreeSet<u64> = acked_versions.iter().copied().collect();
    if distinct.len() != acked_versions.len() {
        let mut seen = BTreeSet::new();
        let dups: Vec<u64> = acked_versions
            .iter()
            .copied()
            .filter(|v| !seen.insert(*v))
            .collect();
        panic!(
            "pushes were acknowledged with the same remote version (one of them cannot have uploaded \
             anything): versions {dups:?}; per client {:?}",
            runs.iter().map(|r| &r.acks).collect::<Vec<_>>()
        );
    }
    let others: u64 = runs.iter().map(|r| r.other_retries).sum();
    assert!(
        doc.version >= total,
        "remote version {} for {total} successful pushes",
        doc.version
    );
    if others == 0 {
        // Each push adds its own versions (one commit per loop step, plus one that restores what a
        // merge decided when the step pulled first): the newest acknowledged push is the cursor.
        assert_eq!(
            distinct.last().copied(),
            Some(doc.version),
            "the newest acknowledged push is the remote's version"
        );
    }
    let cursor_writes = match folder {
        Some(dir) => check_cursor_records(dir, &doc, &distinct, total, others),
        None => doc.version,
    };
    // After all exit, each client pulls once more: every key, every event exactly once, equal replicas.
    let mut replicas = Vec::new();
    for (c, dir) in dbs.iter().enumerate() {
        let db = Strata::open(dir).expect("reopen client");
        let r = rt
            .block_on(db.pull(REMOTE, "main"))
            .unwrap_or_else(|e| panic!("client {c}: final pull: {e}"));
        assert_eq!(r.fetch.remote_version, doc.version, "client {c}");
        let kv: BTreeMap<String, Value> = db.main().kv_list("").unwrap().into_iter().collect();
        let want: BTreeMap<String, Value> = (0..CLIENTS)
            .flat_map(|k| (0..n).map(move |i| (format!("c{k}:{i}"), Value::Int(i as i64))))
            .collect();
        if kv != want {
            let missing: Vec<&String> = want.keys().filter(|k| !kv.contains_key(*k)).collect();
            let wrong: Vec<(&String, &Value)> = kv
                .iter()
                .filter(|(k, v)| want.get(*k) != Some(*v))
                .collect();
            panic!(
                "client {c}: {} keys, want {}; acknowledged but missing: {missing:?}; unexpected: {wrong:?}",
                kv.len(),
                want.len()
            );
        }
        let events = db.main().event_range(1, usize::MAX).unwrap();
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=total).collect::<Vec<_>>(),
            "client {c}: event sequence numbers"
        );
        let mut payloads: Vec<String> = events
            .iter()
            .map(|e| {
                assert_eq!(e.event_type, "sync");
                e.payload.as_str().expect("string payload").to_string()
            })
            .collect();
        payloads.sort();
        let mut want_p: Vec<String> = want.keys().cloned().collect();
        want_p.sort();
        assert_eq!(payloads, want_p, "client {c}: every event exactly once");
        // Each client's own events keep their order.
        for k in 0..CLIENTS {
            let mine: Vec<&str> = events
                .iter()
                .filter_map(|e| e.payload.as_str())
                .filter(|p| p.starts_with(&format!("c{k}:")))
                .collect();
            let want_mine: Vec<String> = (0..n).map(|i| format!("c{k}:{i}")).collect();
            assert_eq!(mine, want_mine, "client {c}: events of client {k} in order");
        }
        let main = contents(&db, &Rev::head("main")).unwrap();
        let mirror = contents(&db, &Rev::head(strata_sync::mirror_name(REMOTE, "main"))).unwrap();
        if let Some(d) = first_difference(&main, &mirror) {
            panic!("client {c}: main differs from its mirror: {d}");
        }
        let p = rt.block_on(db.push(REMOTE, "main")).unwrap();
        assert!(p.up_to_date, "client {c}: nothing left to push: {p:?}");
        drop(db);
        integrity_check(dir);
        replicas.push(main);
    }
    for c in 1..replicas.len() {
        if let Some(d) = first_difference(&replicas[0], &replicas[c]) {
            panic!("client 0 and client {c} differ: {d}");
        }
    }
    // A fresh clone agrees too.
    let clone_dir = tmp.path().join("clone");
    let (clone, _) = rt
        .block_on(strata_sync::clone_with_options(
            &remote,
            options,
            &clone_dir,
            &Default::default(),
        ))
        .expect("clone");
    if let Some(d) = first_difference(&replicas[0], &contents(&clone, &Rev::head("main")).unwrap())
    {
        panic!("a fresh clone differs from the replicas: {d}");
    }
    drop(clone);
    integrity_check(&clone_dir);

    eprintln!(
        "{CLIENTS} clients x {n} writes: loops took {loops:?}, whole test {:?}; remote version {}, {} cursor \
         writes; rejections per client {:?}, other retries {others}",
        t0.elapsed(),
        doc.version,
        cursor_writes,
        runs.iter().map(|r| r.rejections).collect::<Vec<_>>()
    );
}

/// A folder remote's cursor records: contiguous, one new version each, the newest equal to the cursor,
/// and (while nothing was pruned) one per acknowledged push. Returns the number of cursor writes.
fn check_cursor_records(
    remote_dir: &std::path::Path,
    doc: &strata_sync::layout::CursorDoc,
    distinct: &BTreeSet<u64>,
    total: u64,
    others: u64,
) -> u64 {
    let records = cursor_records(remote_dir);
    let seqs: Vec<u64> = records.iter().map(|(s, _)| *s).collect();
    let first_seq = seqs[0];
    assert_eq!(
        seqs,
        (first_seq..first_seq + seqs.len() as u64).collect::<Vec<_>>(),
        "cursor records are contiguous"
    );
    for w in records.windows(2) {
        assert!(
            w[1].1.version > w[0].1.version,
            "cursor record {} follows {} with new versions",
            w[1].0,
            w[0].0
        );
    }
    let (last_seq, last) = records.last().expect("at least one record");
    assert_eq!(last.version, doc.version, "the newest record is the cursor");
    assert!(
        doc.version >= total && *last_seq >= total,
        "remote version {} / {last_seq} cursor writes for {total} successful pushes",
        doc.version
    );
    if first_seq == 1 {
        // Nothing pruned (the test is far shorter than the prune grace): every record is here. The first
        // push uploaded its database's one commit as version 1.
        assert_eq!(records[0].1.version, 1);
        let record_versions: BTreeSet<u64> = records.iter().map(|(_, d)| d.version).collect();
        assert!(
            distinct.is_subset(&record_versions),
            "acknowledged versions {distinct:?} not all in the cursor history"
        );
        if others == 0 {
            assert_eq!(
                *last_seq, total,
                "one cursor write per acknowledged push, and no other"
            );
            let acked: BTreeSet<u64> = records.iter().map(|(_, d)| d.version).collect();
            assert_eq!(
                *distinct, acked,
                "every cursor write is an acknowledged push"
            );
        }
    }

    *last_seq
}
