//! Crash safety: `kill -9` a writer at random moments and check that the database lost nothing that was
//! acknowledged, shows no partial transaction, has no version gaps, passes SQLite's integrity check and
//! is still writable.
#![cfg(unix)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::{fresh_db, integrity_check, TORTURE};
use strata_engine::Strata;
use strata_tests::{check_writable, parse_ack, verify_write_loop, Lcg, Torture, CHILD_TIMEOUT};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

fn ack(trial: u64, line: &str) -> (u64, u64) {
    parse_ack(line).unwrap_or_else(|| panic!("trial {trial}: unexpected output line {line:?}"))
}

/// One trial: returns (acknowledged transactions, head after reopen).
fn trial(trial: u64, rng: &mut Lcg) -> (usize, u64) {
    let (_tmp, dir) = fresh_db();
    let start = 1 + rng.range(0, 1_000_000);
    let durability = if trial & 1 == 0 { "full" } else { "normal" };
    // Every fifth trial kills 0–40 ms after the spawn, so the kill may land while the child is still
    // creating the database; the others wait 20–300 ms after the first acknowledgement.
    let from_spawn = trial % 5 == 4;
    let delay = Duration::from_millis(if from_spawn {
        rng.range(0, 40)
    } else {
        rng.range(20, 300)
    });
    let args = [
        "write-loop",
        dir.to_str().expect("utf-8 path"),
        &start.to_string(),
        "--durability",
        durability,
    ];
    let mut child = Torture::spawn(TORTURE, &args);

    let mut acks = Vec::new();
    if !from_spawn {
        let first = child.expect_line(CHILD_TIMEOUT);
        acks.push(ack(trial, &first));
    }
    let deadline = Instant::now() + delay;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match child.next_line(deadline - now) {
            Ok(Some(l)) => acks.push(ack(trial, &l)),
            Ok(None) => {
                let status = child.wait(CHILD_TIMEOUT);
                panic!(
                    "trial {trial}: writer exited by itself ({status}); stderr:\n{}",
                    child.stderr()
                );
            }
            Err(()) => break,
        }
    }
    let status = child.kill();
    assert_eq!(
        status.signal(),
        Some(9),
        "trial {trial}: writer was not killed by SIGKILL: {status}; stderr:\n{}",
        child.stderr()
    );
    // Lines written before the kill are acknowledgements too, even if we had not read them yet.
    for l in child.drain_lines() {
        acks.push(ack(trial, &l));
    }
    for (n, (i, _)) in acks.iter().enumerate() {
        assert_eq!(
            *i,
            start + n as u64,
            "trial {trial}: acknowledgements out of order"
        );
    }

    let db = Strata::open(&dir).unwrap_or_else(|e| panic!("trial {trial}: reopen after kill: {e}"));
    let state = verify_write_loop(&db, start, &acks).unwrap_or_else(|e| {
        panic!(
            "trial {trial} (start {start}, {durability}, {} acks): {e}",
            acks.len()
        )
    });
    assert!(state.head >= acks.len() as u64);
    // (d) still writable, and the new transaction is the next version.
    let v =
        check_writable(&db, start + state.head).unwrap_or_else(|e| panic!("trial {trial}: {e}"));
    assert_eq!(v, state.head + 1, "trial {trial}: version after reopen");
    drop(db);

    integrity_check(&dir);
    let db = Strata::open(&dir).expect("second reopen");
    let after = verify_write_loop(&db, start, &acks)
        .unwrap_or_else(|e| panic!("trial {trial}, after the extra write: {e}"));
    assert_eq!(after.head, state.head + 1);
    (acks.len(), state.head)
}

#[test]
fn kill_9_during_commits_loses_nothing_acknowledged() {
    let seed = env_u64("STRATA_TORTURE_SEED", 20_240_601);
    let trials = env_u64("STRATA_CRASH_TRIALS", 40);
    let mut rng = Lcg::new(seed);
    let t0 = Instant::now();
    let mut with_acks = 0;
    let mut unacked_commits = 0;
    for t in 0..trials {
        let (acks, head) = trial(t, &mut rng);
        eprintln!("trial {t}: {acks} acknowledged, head {head}");
        if acks > 0 {
            with_acks += 1;
        }
        if head > acks as u64 {
            unacked_commits += 1;
        }
    }
    eprintln!(
        "{trials} trials in {:?} (seed {seed}); {with_acks} with acknowledged commits, {unacked_commits} killed \
         between a commit and its ack",
        t0.elapsed()
    );
    // Four trials in five wait for the first ack, so they must have killed a writer mid-stream.
    assert!(
        with_acks >= trials * 4 / 5,
        "only {with_acks} of {trials} trials saw a commit"
    );
}
