//! Durability: 100 acknowledged commits survive a `kill -9` sent right after the last acknowledgement,
//! with `Durability::Full` and with `Durability::Normal` (which loses nothing on a process crash; only a
//! power loss may cost it the last commits).
#![cfg(unix)]

mod common;

use std::os::unix::process::ExitStatusExt;

use common::{fresh_db, integrity_check, TORTURE};
use strata_engine::{Durability, Options, Strata};
use strata_tests::{check_writable, parse_ack, verify_write_loop, Torture, CHILD_TIMEOUT};

const COMMITS: u64 = 100;

fn hundred_acked_commits_survive_kill_9(durability: &str) {
    let (_tmp, dir) = fresh_db();
    let start = 1;
    let args = [
        "write-loop",
        dir.to_str().expect("utf-8 path"),
        "1",
        "--durability",
        durability,
        "--count",
        &COMMITS.to_string(),
    ];
    let mut child = Torture::spawn(TORTURE, &args);
    let mut acks = Vec::new();
    while (acks.len() as u64) < COMMITS {
        let line = child.expect_line(CHILD_TIMEOUT);
        acks.push(parse_ack(&line).unwrap_or_else(|| panic!("unexpected output line {line:?}")));
    }
    // Kill at once: no clean shutdown, no checkpoint, no close.
    let status = child.kill();
    assert_eq!(
        status.signal(),
        Some(9),
        "writer was not killed by SIGKILL: {status}"
    );
    let expected: Vec<(u64, u64)> = (1..=COMMITS).map(|i| (i, i)).collect();
    assert_eq!(acks, expected, "acknowledgements");

    // Reopen with the same durability the writer used.
    let opts = Options {
        durability: if durability == "full" {
            Durability::Full
        } else {
            Durability::Normal
        },
        ..Default::default()
    };
    let db = Strata::open_with(&dir, opts).expect("reopen after kill");
    let state =
        verify_write_loop(&db, start, &acks).unwrap_or_else(|e| panic!("{durability}: {e}"));
    // The writer stopped after its 100th commit, so nothing more can be there.
    assert_eq!(state.head, COMMITS, "{durability}: head after reopen");
    assert_eq!(state.txns, (1..=COMMITS).collect::<Vec<_>>());
    assert_eq!(check_writable(&db, COMMITS + 1), Ok(COMMITS + 1));
    drop(db);
    integrity_check(&dir);
}

#[test]
fn hundred_acked_commits_survive_kill_9_with_full_durability() {
    hundred_acked_commits_survive_kill_9("full");
}

#[test]
fn hundred_acked_commits_survive_kill_9_with_normal_durability() {
    hundred_acked_commits_survive_kill_9("normal");
}
