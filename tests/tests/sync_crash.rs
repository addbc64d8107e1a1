//! Crash safety of sync: `kill -9` a pushing or a pulling process at random moments, then check that
//! the local database passes SQLite's integrity check, the remote never references a missing or damaged
//! blob, nothing acknowledged is lost, a pull is all-or-nothing (the mirror and the branch are each at
//! the state before or after, never in between), and that running the operation again converges.
//!
//! `STRATA_SYNC_CRASH_TRIALS` sets the number of trials (default 50: three fifths push trials of two
//! kills each, two fifths pull trials); `STRATA_TORTURE_SEED` the seed of the kill timings.
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{check_remote_blobs, check_remote_blobs_at, integrity_check, runtime, url, TORTURE};
use strata_engine::{Rev, Strata, Value};
use strata_remote_s3::testing::emulator;
use strata_remote_s3::Provider;
use strata_sync::{mirror_name, PushOptions, SyncError, SyncExt};
use strata_tests::sync::{
    check_batch, contents, first_difference, parse_tagged, write_batch, REMOTE,
};
use strata_tests::{Lcg, Torture, CHILD_TIMEOUT};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

fn total_trials() -> u64 {
    env_u64("STRATA_SYNC_CRASH_TRIALS", 50).max(2)
}

fn seed() -> u64 {
    env_u64("STRATA_TORTURE_SEED", 20_241_122)
}

/// Runs `child` until `kill_at` (measured from `spawned`) and kills it with SIGKILL; returns every
/// complete stdout line it wrote. Panics if the child exited by itself (it loops forever).
fn run_until(child: &mut Torture, spawned: Instant, kill_at: Duration, what: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let now = Instant::now();
        let deadline = spawned + kill_at;
        if now >= deadline {
            break;
        }
        match child.next_line(deadline - now) {
            Ok(Some(l)) => lines.push(l),
            Ok(None) => {
                let status = child.wait(CHILD_TIMEOUT);
                let err = child.stderr();
                panic!(
                    "{what}: {} exited by itself ({status}); output {lines:?}; stderr:\n{err}",
                    child.name()
                );
            }
            Err(()) => break,
        }
    }
    let status = child.kill();
    if status.signal() != Some(9) {
        let err = child.stderr();
        panic!("{what}: child was not killed by SIGKILL: {status}; stderr:\n{err}");
    }
    lines.extend(child.drain_lines());
    lines
}

/// Whether the database folder has its SQLite file yet (a kill can land before the child created it).
fn has_db(dir: &Path) -> bool {
    dir.join(strata_engine::DB_FILE).exists()
}

fn ensure_remote(db: &Strata, remote: &str, options: &BTreeMap<String, String>) {
    if !db.remote_list().unwrap().iter().any(|r| r.name == REMOTE) {
        db.remote_add_with(strata_sync::RemoteConfig {
            name: REMOTE.into(),
            url: remote.into(),
            options: options.clone(),
        })
        .unwrap();
    }
}

/// Internal branches a killed sync left behind (`_staging:…` from a pull that rebuilt from a snapshot).
fn leftover_staging(db: &Strata) -> usize {
    db.list_branches(true)
        .unwrap()
        .iter()
        .filter(|b| b.name.starts_with("_staging"))
        .count()
}

// ----- push trials --------------------------------------------------------------------------------

/// Counts over the push trials.
#[derive(Debug, Default)]
struct PushStats {
    kills: u64,
    kills_before_first_ack: u64,
    acks: u64,
    /// Kills after which the remote was ahead of the database's mirror (the cursor moved, the mirror
    /// update did not happen).
    remote_ahead: u64,
    /// Kills after which the remote had no `main` yet.
    remote_empty: u64,
}

/// After a push-loop child on `a` was killed: the database is sound, the remote references only whole
/// blobs, and every acknowledged push is in the database and within the remote's version.
fn check_after_push_kill(
    what: &str,
    a: &Path,
    (remote, options): (&str, &BTreeMap<String, String>),
    acks: &[(u64, u64)],
    rt: &tokio::runtime::Runtime,
    stats: &mut PushStats,
) {
    if has_db(a) {
        integrity_check(a);
    } else {
        assert!(
            acks.is_empty(),
            "{what}: acknowledged pushes but no database"
        );
    }
    let doc = rt
        .block_on(check_remote_blobs_at(remote, options))
        .unwrap_or_else(|e| panic!("{what}: remote after the kill: {e}"));
    if let Some(&(i, v)) = acks.last() {
        let doc = doc.as_ref().unwrap_or_else(|| {
            panic!("{what}: push {i} acknowledged at version {v} but the remote has no main")
        });
        assert!(
            doc.version >= v,
            "{what}: push {i} acknowledged at version {v}, the remote is at {}",
            doc.version
        );
    }
    match &doc {
        None => stats.remote_empty += 1,
        Some(doc) => {
            let db = Strata::open(a).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
            let m = db
                .branch_info(&mirror_name(REMOTE, "main"))
                .map(|i| i.head)
                .unwrap_or(0);
            assert!(
                m <= doc.version,
                "{what}: mirror at {m} is ahead of the remote ({})",
                doc.version
            );
            if m < doc.version {
                stats.remote_ahead += 1;
            }
        }
    }
    if has_db(a) {
        let db = Strata::open(a).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
        for &(i, _) in acks {
            assert_eq!(
                db.main().kv_get(&format!("p{i}")).unwrap(),
                Some(Value::Int(i as i64)),
                "{what}: key of acknowledged push {i}"
            );
        }
    }
}

/// One push trial: two push-loop children on the same database and remote, each killed at a random
/// moment (the second must recover from the first's crash by itself), then a push from the test, which
/// must converge, and a fresh clone that must equal the database. The remote is a fresh folder, or a
/// fresh prefix of the emulator's bucket for `bucket`.
fn push_trial(
    t: u64,
    rng: &mut Lcg,
    rt: &tokio::runtime::Runtime,
    stats: &mut PushStats,
    bucket: Option<Provider>,
) {
    let tmp = tempfile::Builder::new()
        .prefix("strata-sync-crash-")
        .tempdir()
        .expect("tempdir");
    let a = tmp.path().join("a");
    let (remote, options) = match bucket {
        None => (url(&tmp.path().join("remote")), BTreeMap::new()),
        Some(p) => {
            let e = emulator(p, "crash").expect("the emulator is up");
            (e.url, e.options)
        }
    };
    let option_args: Vec<String> = options
        .iter()
        .flat_map(|(k, v)| ["--option".to_string(), format!("{k}={v}")])
        .collect();
    // Compaction snapshots every few pushes, so that some kills land in them too.
    let pack_fanout = (2 + t % 5).to_string();
    let mut acks: Vec<(u64, u64)> = Vec::new();
    for round in 0..2u64 {
        let what = format!("push trial {t} round {round}");
        let start = round * 1_000_000 + 1;
        // Some kills land 0-25 ms after the spawn: in round 0 (one trial in three) that is while opening,
        // committing or making the first push (a snapshot); in round 1 (every other trial) while the
        // child recovers from the first crash. The others land 0-40 ms after the first acknowledgement.
        let early = if round == 0 { t % 3 == 2 } else { t % 2 == 1 };
        let (db_arg, start_arg) = (a.to_str().expect("utf-8 path"), start.to_string());
        let mut args = vec![
            "push-loop",
            db_arg,
            &remote,
            &start_arg,
            "--pack-fanout",
            &pack_fanout,
        ];
        args.extend(option_args.iter().map(String::as_str));
        let mut child = Torture::spawn(TORTURE, &args);
        let spawned = Instant::now();
        let mut lines = Vec::new();
        let kill_at = if early {
            Duration::from_millis(rng.range(0, 25))
        } else {
            lines.push(child.expect_line(CHILD_TIMEOUT));
            spawned.elapsed() + Duration::from_millis(rng.range(0, 40))
        };
        lines.extend(run_until(&mut child, spawned, kill_at, &what));
        stats.kills += 1;
        let mut round_acks = Vec::new();
        for l in &lines {
            let v = parse_tagged(l, "pushed", 2)
                .unwrap_or_else(|| panic!("{what}: unexpected line {l:?}"));
            round_acks.push((v[0], v[1]));
        }
        if round_acks.is_empty() {
            stats.kills_before_first_ack += 1;
        }
        for (n, w) in round_acks.iter().enumerate() {
            assert_eq!(w.0, start + n as u64, "{what}: acknowledgements in order");
            if n > 0 {
                assert!(
                    w.1 > round_acks[n - 1].1,
                    "{what}: remote versions go up: {round_acks:?}"
                );
            }
        }
        if let (Some(prev), Some(first)) = (acks.last(), round_acks.first()) {
            assert!(
                first.1 > prev.1,
                "{what}: the remote version went down across the crash: {} then {}",
                prev.1,
                first.1
            );
        }
        stats.acks += round_acks.len() as u64;
        acks.extend(round_acks);
        check_after_push_kill(&what, &a, (&remote, &options), &acks, rt, stats);
    }

    // Converge: a push from here succeeds, a second one has nothing to do.
    let what = format!("push trial {t}");
    let db = Strata::open(&a).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
    ensure_remote(&db, &remote, &options);
    if db.branch_info("main").unwrap().head == 0 {
        // Killed before its first commit: give the push something to send.
        db.main().kv_put("p0", 0).unwrap();
    }
    let opts = PushOptions::default();
    let p = match rt.block_on(db.push_with(REMOTE, "main", &opts)) {
        Ok(p) => p,
        Err(e) => {
            // Say where things stood, and whether a pull would have got it unstuck.
            let mirror = db.branch_info(&mirror_name(REMOTE, "main")).map(|i| i.head);
            let head = db.branch_info("main").map(|i| i.head);
            let remote_v = rt
                .block_on(check_remote_blobs_at(&remote, &options))
                .map(|d| d.map(|d| d.version));
            let pull = rt
                .block_on(db.pull(REMOTE, "main"))
                .map(|r| r.merged_version);
            let push = rt
                .block_on(db.push(REMOTE, "main"))
                .map(|r| r.remote_version);
            panic!(
                "{what}: push after the crashes failed: {e} ({e:?}); main head {head:?}, mirror head \
                 {mirror:?}, remote version {remote_v:?}, acks {acks:?}; a pull then gives {pull:?} and a \
                 push {push:?}"
            )
        }
    };
    let again = rt
        .block_on(db.push_with(REMOTE, "main", &opts))
        .unwrap_or_else(|e| panic!("{what}: second push: {e}"));
    assert!(again.up_to_date, "{what}: second push: {again:?}");
    assert_eq!(again.remote_version, p.remote_version);
    let main = contents(&db, &Rev::head("main")).unwrap();
    let mirror = contents(&db, &Rev::head(mirror_name(REMOTE, "main"))).unwrap();
    if let Some(d) = first_difference(&main, &mirror) {
        panic!("{what}: after the push, main and its mirror differ: {d}");
    }
    // The remote is whole and a fresh clone equals the database, acknowledged pushes included.
    let doc = rt
        .block_on(check_remote_blobs_at(&remote, &options))
        .unwrap_or_else(|e| panic!("{what}: remote after converging: {e}"))
        .expect("remote has main");
    assert_eq!(doc.version, p.remote_version, "{what}");
    let clone_dir = tmp.path().join("clone");
    let (clone, _) = rt
        .block_on(strata_sync::clone_with_options(
            &remote,
            &options,
            &clone_dir,
            &Default::default(),
        ))
        .unwrap_or_else(|e| panic!("{what}: clone: {e}"));
    let cloned = contents(&clone, &Rev::head("main")).unwrap();
    if let Some(d) = first_difference(&main, &cloned) {
        panic!("{what}: a fresh clone differs from the database: {d}");
    }
    for &(i, v) in &acks {
        assert_eq!(
            clone.main().kv_get(&format!("p{i}")).unwrap(),
            Some(Value::Int(i as i64)),
            "{what}: acknowledged push {i} (version {v}) is not on the remote"
        );
    }
    drop(clone);
    drop(db);
    integrity_check(&a);
    integrity_check(&clone_dir);
}

#[test]
fn kill_9_during_push_then_push_again_converges() {
    common::init();
    let trials = (total_trials() * 3).div_ceil(5);
    let seed = seed();
    let mut rng = Lcg::new(seed);
    let rt = runtime();
    let t0 = Instant::now();
    let mut stats = PushStats::default();
    for t in 0..trials {
        push_trial(t, &mut rng, &rt, &mut stats, None);
    }
    eprintln!(
        "{trials} push trials in {:?} (seed {seed}): {stats:?}",
        t0.elapsed()
    );
    assert_eq!(stats.kills, trials * 2);
    assert!(stats.acks > 0, "no push was ever acknowledged: {stats:?}");
}

/// The same push trials against S3 (moto) and Azure (Azurite) buckets: a push killed mid-upload or
/// mid-compare-and-swap leaves no partial object that a cursor names, and pushing again converges.
/// `STRATA_SYNC_CRASH_BUCKET_TRIALS` trials per store (default 20).
#[test]
fn kill_9_during_push_to_a_bucket_then_push_again_converges() {
    common::init();
    let trials = env_u64("STRATA_SYNC_CRASH_BUCKET_TRIALS", 20);
    let rt = runtime();
    for provider in [Provider::S3, Provider::Azure] {
        if emulator(provider, "crash").is_none() {
            return;
        }
        let mut rng = Lcg::new(seed() ^ 0xb0c4);
        let t0 = Instant::now();
        let mut stats = PushStats::default();
        for t in 0..trials {
            push_trial(t, &mut rng, &rt, &mut stats, Some(provider));
        }
        eprintln!(
            "{provider:?}: {trials} push trials in {:?}: {stats:?}",
            t0.elapsed()
        );
        assert_eq!(stats.kills, trials * 2);
        assert!(stats.acks > 0, "no push was ever acknowledged: {stats:?}");
    }
}

// ----- pull trials --------------------------------------------------------------------------------

/// Counts over the pull trials.
#[derive(Debug, Default)]
struct PullStats {
    kills: u64,
    /// Kills that left the mirror at the old state (the kill came before the fetch committed).
    mirror_before: u64,
    /// …and at the new one.
    mirror_after: u64,
    /// Kills after which the mirror was new but the branch not yet merged.
    fetched_not_merged: u64,
    /// `_staging:` branches left behind by killed pulls.
    leftover_staging: usize,
}

/// The writer side of the pull trials: a database in the test that pushes batches (see
/// [`write_batch`]) and remembers which remote version holds which batch.
struct Source {
    db: Strata,
    batch: u64,
    /// Remote version -> batch at that version.
    versions: BTreeMap<u64, u64>,
}

impl Source {
    fn push_batches(&mut self, n: u64, rt: &tokio::runtime::Runtime) {
        // Compaction every few pushes, so that a pull far behind rebuilds from a snapshot.
        let opts = PushOptions {
            pack_fanout: 5,
            ..Default::default()
        };
        for _ in 0..n {
            self.batch += 1;
            write_batch(&self.db, self.batch).unwrap();
            let p = rt
                .block_on(self.db.push_with(REMOTE, "main", &opts))
                .unwrap_or_else(|e| panic!("source push of batch {}: {e}", self.batch));
            self.versions.insert(p.remote_version, self.batch);
        }
    }

    fn latest(&self) -> (u64, u64) {
        let (&v, &b) = self.versions.last_key_value().expect("pushed");
        (v, b)
    }
}

/// The state of the pulling database: (batch of main, mirror version) — `(0, 0)` when it is new.
fn pull_state(what: &str, b: &Path, src: &Source) -> (u64, u64) {
    if !has_db(b) {
        return (0, 0);
    }
    integrity_check(b);
    let db = Strata::open(b).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
    let mirror = mirror_name(REMOTE, "main");
    let mv = match db.branch_info(&mirror) {
        Ok(i) => i.head,
        Err(strata_engine::Error::BranchNotFound(_)) => 0,
        Err(e) => panic!("{what}: {e}"),
    };
    if !db.branch_exists("main").unwrap() {
        let branches: Vec<String> = db
            .list_branches(true)
            .unwrap()
            .into_iter()
            .map(|b| format!("{}@{}", b.name, b.head))
            .collect();
        panic!(
            "{what}: main is gone (mirror at {mv}; branches {branches:?}): the pull deleted main to fork \
             it again from the mirror and was killed before the fork committed"
        );
    }
    let main_batch = check_batch(&db, "main").unwrap_or_else(|e| panic!("{what}: {e}"));
    if mv > 0 {
        let want = *src
            .versions
            .get(&mv)
            .unwrap_or_else(|| panic!("{what}: mirror at {mv}, which is no remote version"));
        let got = check_batch(&db, &mirror).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            got, want,
            "{what}: mirror at remote version {mv} holds batch {got}"
        );
        assert!(
            main_batch <= got,
            "{what}: main at batch {main_batch} is ahead of its mirror ({got})"
        );
    } else {
        assert_eq!(
            main_batch, 0,
            "{what}: main has data but there is no mirror"
        );
    }
    (main_batch, mv)
}

/// One pull trial: the source pushes 1-3 batches of 2,000 changed keys, then a pull-loop child on `b`
/// is killed at a random moment, most often while its first pull is importing them.
#[allow(clippy::too_many_arguments)]
fn pull_trial(
    t: u64,
    rng: &mut Lcg,
    rt: &tokio::runtime::Runtime,
    src: &mut Source,
    b: &Path,
    remote: &str,
    remote_dir: &Path,
    est_pull: &mut Duration,
    stats: &mut PullStats,
) {
    let what = format!("pull trial {t}");
    // The first trial and one in five after it start from an empty database (the pull creates main
    // from the mirror).
    if t % 5 == 4 && b.exists() {
        std::fs::remove_dir_all(b).expect("remove the pulling database");
    }
    let before = pull_state(&what, b, src);
    src.push_batches(1 + rng.range(0, 2), rt);
    let (latest_v, latest_b) = src.latest();

    let mut child = Torture::spawn(
        TORTURE,
        &["pull-loop", b.to_str().expect("utf-8 path"), remote],
    );
    let spawned = Instant::now();
    // Mostly within the time the first pull takes (measured on earlier trials), sometimes after it.
    let span = est_pull.as_millis() as u64 * 5 / 4;
    let kill_at = Duration::from_millis(rng.range(0, span.max(1)));
    let lines = run_until(&mut child, spawned, kill_at, &what);
    stats.kills += 1;
    let mut pulled = Vec::new();
    for l in &lines {
        let v = parse_tagged(l, "pulled", 1)
            .unwrap_or_else(|| panic!("{what}: unexpected line {l:?}"))[0];
        assert_eq!(
            v, latest_v,
            "{what}: pulled a version that is not the newest"
        );
        pulled.push(v);
    }
    if !pulled.is_empty() {
        // It finished a pull before the kill: the kill came late. (Calibration for later trials.)
        *est_pull = (*est_pull + spawned.elapsed()) / 2;
    }

    // All or nothing: main and mirror each at the state before or after.
    let after = pull_state(&what, b, src);
    let (main_batch, mv) = after;
    assert!(
        mv == before.1 || mv == latest_v,
        "{what}: mirror at {mv}, neither before ({}) nor after ({latest_v})",
        before.1
    );
    assert!(
        main_batch == before.0 || main_batch == latest_b,
        "{what}: main at batch {main_batch}, neither before ({}) nor after ({latest_b})",
        before.0
    );
    if !pulled.is_empty() {
        assert_eq!(
            after,
            (latest_b, latest_v),
            "{what}: acknowledged pull lost"
        );
    }
    if mv == latest_v {
        stats.mirror_after += 1;
        if main_batch != latest_b {
            stats.fetched_not_merged += 1;
        }
    } else {
        stats.mirror_before += 1;
    }

    // Pull again: it converges to the remote.
    let db = Strata::open(b).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
    stats.leftover_staging += leftover_staging(&db);
    ensure_remote(&db, remote, &BTreeMap::new());
    let r = rt
        .block_on(db.pull(REMOTE, "main"))
        .unwrap_or_else(|e| panic!("{what}: pull after the kill: {e} ({e:?})"));
    assert_eq!(r.fetch.remote_version, latest_v, "{what}");
    assert_eq!(check_batch(&db, "main"), Ok(latest_b), "{what}: main");
    let mirror = mirror_name(REMOTE, "main");
    assert_eq!(
        db.branch_info(&mirror).unwrap().head,
        latest_v,
        "{what}: mirror"
    );
    assert_eq!(check_batch(&db, &mirror), Ok(latest_b), "{what}: mirror");
    let d = first_difference(
        &contents(&db, &Rev::head("main")).unwrap(),
        &contents(&db, &Rev::head(&mirror)).unwrap(),
    );
    assert!(d.is_none(), "{what}: main and mirror differ: {d:?}");
    match rt.block_on(db.push(REMOTE, "main")) {
        Ok(p) => assert!(
            p.up_to_date,
            "{what}: nothing to push after the pull: {p:?}"
        ),
        Err(e @ SyncError::Rejected(_)) => panic!("{what}: push after the pull: {e}"),
        Err(e) => panic!("{what}: push after the pull: {e}"),
    }
    drop(db);
    integrity_check(b);
    let doc = rt
        .block_on(check_remote_blobs(remote_dir))
        .unwrap_or_else(|e| panic!("{what}: remote: {e}"))
        .expect("remote has main");
    assert_eq!(
        doc.version, latest_v,
        "{what}: the pulling side wrote nothing"
    );
}

#[test]
fn kill_9_during_pull_is_all_or_nothing_and_pull_again_converges() {
    common::init();
    let trials = total_trials() - (total_trials() * 3).div_ceil(5);
    let seed = seed() ^ 0x5eed;
    let mut rng = Lcg::new(seed);
    let rt = runtime();
    let tmp = tempfile::Builder::new()
        .prefix("strata-sync-crash-")
        .tempdir()
        .expect("tempdir");
    let remote_dir = tmp.path().join("remote");
    let remote = url(&remote_dir);
    let b = tmp.path().join("b");
    let src_db = Strata::open(tmp.path().join("src")).unwrap();
    src_db.remote_add(REMOTE, &remote).unwrap();
    let mut src = Source {
        db: src_db,
        batch: 0,
        versions: BTreeMap::new(),
    };
    let t0 = Instant::now();
    let mut est_pull = Duration::from_millis(150);
    let mut stats = PullStats::default();
    for t in 0..trials {
        pull_trial(
            t,
            &mut rng,
            &rt,
            &mut src,
            &b,
            &remote,
            &remote_dir,
            &mut est_pull,
            &mut stats,
        );
    }
    eprintln!(
        "{trials} pull trials in {:?} (seed {seed}; {} batches of {} keys; first pull took ~{est_pull:?}): {stats:?}",
        t0.elapsed(),
        src.batch,
        strata_tests::sync::BATCH_KEYS
    );
    assert_eq!(stats.kills, trials);
}
