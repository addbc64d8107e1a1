//! Concurrent writers: read-modify-write increments from several processes and from several handles in
//! one process lose no update, and a writer that waits past its busy timeout gets a clear conflict and
//! writes nothing.
#![cfg(unix)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{fresh_db, integrity_check, TORTURE};
use strata_engine::{Error, Kind, Options, Strata, Value, DEFAULT_SPACE};
use strata_tests::{increment_n, Torture, CHILD_TIMEOUT};

const PER_WRITER: u64 = 200;

/// Checks that `counter` on `branch` went 1, 2, …, `total` at versions 1, 2, …, `total`, and returns how
/// many times consecutive versions came from different writers (commit messages).
fn check_counter(db: &Strata, branch: &str, total: u64) -> usize {
    assert_eq!(
        db.on(branch).state_get("counter").unwrap(),
        Some(Value::Int(total as i64)),
        "final count"
    );
    assert_eq!(
        db.branch_info(branch).unwrap().head,
        total,
        "one version per increment"
    );
    let hist = db
        .history(branch, DEFAULT_SPACE, Kind::State, "counter")
        .unwrap();
    let got: Vec<(u64, Option<Value>)> = hist
        .into_iter()
        .rev()
        .map(|h| (h.version, h.value))
        .collect();
    let want: Vec<(u64, Option<Value>)> = (1..=total)
        .map(|v| (v, Some(Value::Int(v as i64))))
        .collect();
    assert!(
        got == want,
        "counter history is not 1..={total} at versions 1..={total}"
    );
    let log = db.log(branch, usize::MAX).unwrap();
    assert_eq!(
        log.iter().rev().map(|c| c.version).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    log.windows(2)
        .filter(|w| w[0].message != w[1].message)
        .count()
}

#[test]
fn increments_from_three_processes_lose_no_update() {
    let (_tmp, dir) = fresh_db();
    {
        let db = Strata::open(&dir).unwrap();
        db.create_branch("work").unwrap();
    }
    let d = dir.to_str().expect("utf-8 path");
    let n = PER_WRITER.to_string();
    let t0 = Instant::now();
    let mut children: Vec<Torture> = (0..3)
        .map(|_| Torture::spawn(TORTURE, &["increment", d, &n, "work", "--barrier", "stdin"]))
        .collect();
    // Start them together once all have opened the database.
    for c in &mut children {
        assert_eq!(c.expect_line(CHILD_TIMEOUT), "ready", "{}", c.name());
    }
    for c in &mut children {
        c.send_line("go");
    }
    let mut retries = 0;
    for c in &mut children {
        let status = c.wait(CHILD_TIMEOUT);
        let lines = c.drain_lines();
        if !status.success() {
            let err = c.stderr();
            panic!(
                "{} failed ({status}); stdout {lines:?}; stderr:\n{err}",
                c.name()
            );
        }
        assert_eq!(
            lines.last().map(String::as_str),
            Some("done"),
            "{}: stdout {lines:?}",
            c.name()
        );
        retries += lines
            .iter()
            .find_map(|l| l.strip_prefix("retries "))
            .and_then(|r| r.parse::<u64>().ok())
            .expect("a retries line");
    }
    let db = Strata::open(&dir).unwrap();
    let switches = check_counter(&db, "work", 3 * PER_WRITER);
    assert_eq!(db.branch_info("main").unwrap().head, 0, "main untouched");
    eprintln!(
        "3 processes x {PER_WRITER} increments in {:?}: {retries} retries, {switches} writer switches",
        t0.elapsed()
    );
    drop(db);
    integrity_check(&dir);
}

#[test]
fn processes_creating_one_fresh_database_together_agree() {
    // Nobody creates the database first: the three writers race to create the schema and `main`.
    let (_tmp, dir) = fresh_db();
    let d = dir.to_str().expect("utf-8 path");
    let mut children: Vec<Torture> = (0..3)
        .map(|_| Torture::spawn(TORTURE, &["increment", d, "50", "main"]))
        .collect();
    for c in &mut children {
        let status = c.wait(CHILD_TIMEOUT);
        let lines = c.drain_lines();
        let err = c.stderr();
        assert!(
            status.success(),
            "{} failed ({status}); stdout {lines:?}; stderr:\n{err}",
            c.name()
        );
        assert_eq!(
            lines.last().map(String::as_str),
            Some("done"),
            "{}: stdout {lines:?}",
            c.name()
        );
    }
    let db = Strata::open(&dir).unwrap();
    let names: Vec<String> = db
        .list_branches(true)
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, vec!["main".to_string()], "exactly one main branch");
    check_counter(&db, "main", 150);
    drop(db);
    integrity_check(&dir);
}

#[test]
fn increments_from_two_handles_in_one_process_lose_no_update() {
    let (_tmp, dir) = fresh_db();
    let a = Strata::open(&dir).unwrap();
    let b = Strata::open(&dir).unwrap();
    // A clone shares `a`'s connection: its transactions queue on the handle, not on SQLite's lock.
    let a2 = a.clone();
    let t0 = Instant::now();
    let retries: u64 = std::thread::scope(|s| {
        let hs = [(&a, "a"), (&b, "b"), (&a2, "a2")]
            .map(|(db, tag)| s.spawn(move || increment_n(db, "main", PER_WRITER, tag)));
        hs.into_iter()
            .map(|h| {
                h.join()
                    .expect("writer thread panicked")
                    .expect("increments")
            })
            .sum()
    });
    let switches = check_counter(&b, "main", 3 * PER_WRITER);
    eprintln!(
        "3 threads (2 handles) x {PER_WRITER} increments in {:?}: {retries} retries, {switches} writer switches",
        t0.elapsed()
    );
    drop((a, a2, b));
    integrity_check(&dir);
}

fn short_timeout() -> Options {
    Options {
        busy_timeout: Duration::from_millis(200),
        ..Default::default()
    }
}

/// `b` tries to write while another writer holds the lock: every way of writing fails with a conflict
/// that names the lock, after waiting about the busy timeout, and leaves nothing behind.
fn assert_locked_out(b: &Strata, head_before: u64) {
    let t = Instant::now();
    let err = b
        .begin("main")
        .expect_err("begin must fail while another writer holds the lock");
    let waited = t.elapsed();
    assert!(
        matches!(err, Error::Conflict(_)),
        "expected Error::Conflict, got {err:?}"
    );
    assert!(
        err.to_string().contains("lock"),
        "message should mention the lock: {err}"
    );
    assert!(err.is_retryable(), "a busy conflict is retryable");
    // SQLite's busy handler sleeps until the timeout is used up before giving up.
    assert!(
        waited >= Duration::from_millis(150),
        "gave up after {waited:?}, before the 200 ms busy timeout"
    );

    let err = b
        .main()
        .kv_put("second", "b")
        .expect_err("kv_put must fail too");
    assert!(
        matches!(err, Error::Conflict(_)),
        "expected Error::Conflict, got {err:?}"
    );
    let mut ran = false;
    let err = b
        .transaction("main", |tx| {
            ran = true;
            tx.kv_put("second", "b")
        })
        .expect_err("transaction must fail too");
    assert!(
        matches!(err, Error::Conflict(_)),
        "expected Error::Conflict, got {err:?}"
    );
    assert!(!ran, "the transaction body must not run without the lock");

    // Nothing was written by the failed attempts, and the holder's uncommitted write is invisible.
    assert_eq!(b.main().kv_get("second").unwrap(), None);
    assert_eq!(b.main().kv_get("held").unwrap(), None);
    assert_eq!(b.main().kv_get("first").unwrap(), None);
    assert_eq!(b.branch_info("main").unwrap().head, head_before);
    assert_eq!(b.log("main", usize::MAX).unwrap().len() as u64, head_before);
}

#[test]
fn writer_past_busy_timeout_gets_a_clear_conflict_and_writes_nothing() {
    let (_tmp, dir) = fresh_db();
    let a = Strata::open(&dir).unwrap();
    let b = Strata::open_with(&dir, short_timeout()).unwrap();
    std::thread::scope(|s| {
        // Channels live inside the scope: if an assertion below panics, `go` is dropped and the holder
        // thread stops waiting, so the scope can end.
        let (held_tx, held_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let a = &a;
        let holder = s.spawn(move || {
            let mut tx = a.begin("main")?;
            tx.kv_put("first", "a")?;
            held_tx.send(()).expect("test thread alive");
            match go_rx.recv_timeout(CHILD_TIMEOUT) {
                Ok(()) => tx.commit(),
                Err(_) => Ok(None), // the test failed or timed out: roll back
            }
        });
        held_rx
            .recv_timeout(CHILD_TIMEOUT)
            .expect("holder began its transaction");
        assert_locked_out(&b, 0);
        go_tx.send(()).expect("holder waiting");
        assert_eq!(
            holder
                .join()
                .expect("holder panicked")
                .expect("holder commits"),
            Some(1)
        );
    });
    // Once the first writer committed, the second can write.
    b.main()
        .kv_put("second", "b")
        .expect("write after the lock is released");
    assert_eq!(b.main().kv_get("first").unwrap(), Some(Value::from("a")));
    assert_eq!(b.main().kv_get("second").unwrap(), Some(Value::from("b")));
    let versions: Vec<u64> = b
        .log("main", usize::MAX)
        .unwrap()
        .iter()
        .map(|c| c.version)
        .collect();
    assert_eq!(versions, vec![2, 1]);
}

#[test]
fn lock_held_by_another_process_conflicts_then_is_released_by_kill_or_commit() {
    let (_tmp, dir) = fresh_db();
    // Open before the other process takes the lock (opening writes the schema under the lock).
    let b = Strata::open_with(&dir, short_timeout()).unwrap();
    let d = dir.to_str().expect("utf-8 path");

    // 1. The holder dies with SIGKILL inside its transaction: the lock goes with it, its write is lost.
    let mut holder = Torture::spawn(TORTURE, &["hold", d, "main"]);
    assert_eq!(holder.expect_line(CHILD_TIMEOUT), "holding 1");
    assert_locked_out(&b, 0);
    assert_eq!(holder.kill().signal(), Some(9));
    b.main()
        .kv_put("after-kill", 1)
        .expect("write after the holder died");
    assert_eq!(
        b.main().kv_get("held").unwrap(),
        None,
        "the killed transaction must not appear"
    );
    assert_eq!(b.branch_info("main").unwrap().head, 1);

    // 2. The holder commits: the second writer waits it out, then sees its write and writes after it.
    let mut holder = Torture::spawn(TORTURE, &["hold", d, "main"]);
    assert_eq!(holder.expect_line(CHILD_TIMEOUT), "holding 2");
    assert_locked_out(&b, 1);
    holder.send_line("commit");
    assert_eq!(holder.expect_line(CHILD_TIMEOUT), "committed 2");
    assert!(holder.wait(CHILD_TIMEOUT).success());
    assert_eq!(b.main().kv_get("held").unwrap(), Some(Value::from("yes")));
    b.main()
        .kv_put("second", "b")
        .expect("write after the holder committed");
    let versions: Vec<u64> = b
        .log("main", usize::MAX)
        .unwrap()
        .iter()
        .map(|c| c.version)
        .collect();
    assert_eq!(versions, vec![3, 2, 1]);
    drop(b);
    integrity_check(&dir);
}
