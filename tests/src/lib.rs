//! Harness for Strata's end-to-end tests.
//!
//! The tests drive the `strata-torture` binary (see `src/bin/strata-torture.rs`) as child processes,
//! kill them at awkward moments and check the database afterwards. This library holds what the tests
//! and the binary share:
//!
//! - [`Torture`]: a child process with its stdout read line by line on a thread, so the test can wait
//!   for lines with a timeout. Dropping it kills the child (no orphans when an assertion fails).
//! - [`parse_ack`]: the `ack {i} {version}` protocol of `write-loop`.
//! - [`Lcg`]: a tiny seeded random generator.
//! - [`verify_write_loop`]: every invariant a `write-loop` database must hold after a crash.
//! - [`sync`]: helpers for the sync tests (output protocol, replica contents, the pull-trial data set).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use strata_engine::{Strata, Value};

pub mod sync;

/// Keys written by each `write-loop` transaction.
pub const KEYS_PER_TXN: u64 = 5;

/// A generous bound for anything a child must do, so that a loaded machine does not make tests flaky.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// The name of key `j` of `write-loop` transaction `i`.
pub fn txn_key(i: u64, j: u64) -> String {
    format!("t{i}:k{j}")
}

/// Parses an `ack {i} {version}` line.
pub fn parse_ack(line: &str) -> Option<(u64, u64)> {
    let mut it = line.split_whitespace();
    if it.next()? != "ack" {
        return None;
    }
    let i = it.next()?.parse().ok()?;
    let v = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((i, v))
}

/// A linear congruential generator (Knuth's MMIX constants). Good enough to pick kill delays.
#[derive(Clone, Debug)]
pub struct Lcg(u64);

impl Lcg {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The seed from environment variable `var` (decimal), or `default`.
    pub fn seed_from_env(var: &str, default: u64) -> u64 {
        std::env::var(var)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(default)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 32) as u32
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi);
        lo + u64::from(self.next_u32()) % (hi - lo + 1)
    }
}

/// A running `strata-torture` child. Its stdout is read on a thread, one complete line at a time (a
/// line cut short by a kill is dropped); its stderr is collected for failure messages. Dropping the
/// value kills the child if it still runs.
#[derive(Debug)]
pub struct Torture {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout_thread: Option<JoinHandle<()>>,
    stderr_thread: Option<JoinHandle<String>>,
    status: Option<ExitStatus>,
}

impl Torture {
    /// Spawns `exe` with `args`, with piped stdin, stdout and stderr.
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(exe: impl AsRef<Path>, args: &[S]) -> Torture {
        let exe = exe.as_ref();
        let name = format!(
            "{} {}",
            exe.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        let stdout_thread = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        // A line without its newline was cut short by a kill: it was never fully written.
                        if !line.ends_with('\n') {
                            return;
                        }
                        if tx.send(line.trim_end().to_string()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let stderr_thread = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut s);
            s
        });
        Torture {
            name,
            stdin: child.stdin.take(),
            child,
            lines: rx,
            stdout_thread: Some(stdout_thread),
            stderr_thread: Some(stderr_thread),
            status: None,
        }
    }

    /// The command line, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line, waiting at most `timeout`. `Ok(None)` at end of output (the child closed
    /// stdout, usually by exiting); `Err(())` on timeout.
    #[allow(clippy::result_unit_err)]
    pub fn next_line(&mut self, timeout: Duration) -> Result<Option<String>, ()> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(Some(l)),
            Err(RecvTimeoutError::Disconnected) => Ok(None),
            Err(RecvTimeoutError::Timeout) => Err(()),
        }
    }

    /// The next stdout line; panics with the child's stderr on timeout or end of output.
    pub fn expect_line(&mut self, timeout: Duration) -> String {
        match self.next_line(timeout) {
            Ok(Some(l)) => l,
            Ok(None) => {
                let status = self.wait(CHILD_TIMEOUT);
                let err = self.stderr();
                panic!("{}: output ended ({status}); stderr:\n{err}", self.name)
            }
            Err(()) => {
                self.kill();
                let err = self.stderr();
                panic!(
                    "{}: no output line within {timeout:?}; stderr:\n{err}",
                    self.name
                )
            }
        }
    }

    /// Writes one line to the child's stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: stdin: {e}", self.name));
    }

    /// Closes the child's stdin.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Kills the child with SIGKILL (`Child::kill` on Unix) and reaps it. Harmless if it has exited.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let _ = self.child.kill();
        let s = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("{}: wait: {e}", self.name));
        self.status = Some(s);
        s
    }

    /// Waits for the child to exit, at most `timeout`; kills it and panics past that.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    self.status = Some(s);
                    return s;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    self.kill();
                    let err = self.stderr();
                    panic!(
                        "{}: still running after {timeout:?}; killed. stderr:\n{err}",
                        self.name
                    )
                }
                Err(e) => panic!("{}: try_wait: {e}", self.name),
            }
        }
    }

    /// Every stdout line not read yet, up to the end of output. Call after the child exited or was
    /// killed; otherwise this blocks until it closes stdout.
    pub fn drain_lines(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(l) = self.lines.recv() {
            out.push(l);
        }
        if let Some(t) = self.stdout_thread.take() {
            let _ = t.join();
        }
        out
    }

    /// The child's stderr. Call after it exited or was killed.
    pub fn stderr(&mut self) -> String {
        if self.status.is_none() {
            return String::from("(child still running)");
        }
        match self.stderr_thread.take() {
            Some(t) => t.join().unwrap_or_default(),
            None => String::from("(stderr already taken)"),
        }
    }
}

impl Drop for Torture {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What [`verify_write_loop`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteLoopState {
    /// The head version of `main`.
    pub head: u64,
    /// The transaction numbers found, in order.
    pub txns: Vec<u64>,
}

/// Checks a database written by `write-loop DB START` (and possibly killed at any moment) against the
/// acknowledgements `(i, version)` the test read from it:
///
/// - (a) every acknowledged transaction is present in full and its version is in the log;
/// - (b) all-or-nothing: each transaction found has all its keys, all equal to its number;
/// - (c) `main`'s log holds exactly the versions `1..=head`;
/// - the transactions found are `START..START+head` (one version each, in order), the event log
///   has one event per transaction with its number, and the cell `last` holds the newest number.
pub fn verify_write_loop(
    db: &Strata,
    start: u64,
    acks: &[(u64, u64)],
) -> Result<WriteLoopState, String> {
    let e = |what: &str, err: strata_engine::Error| format!("{what}: {err}");
    let main = db.main();
    let head = db
        .branch_info("main")
        .map_err(|x| e("branch_info", x))?
        .head;

    // (c) versions 1..=head with no gaps.
    let log = db.log("main", usize::MAX).map_err(|x| e("log", x))?;
    let versions: Vec<u64> = log.iter().rev().map(|c| c.version).collect();
    let want: Vec<u64> = (1..=head).collect();
    if versions != want {
        return Err(format!(
            "log of main has versions {versions:?}, expected 1..={head}"
        ));
    }
    for c in &log {
        // Five keys, one event and one state cell.
        if c.entries != KEYS_PER_TXN + 2 {
            return Err(format!(
                "version {} records {} entries, expected {}",
                c.version,
                c.entries,
                KEYS_PER_TXN + 2
            ));
        }
    }

    // (b) all-or-nothing, grouped by the transaction number in the key.
    let rows = main.kv_list("t").map_err(|x| e("kv_list", x))?;
    let mut by_txn: BTreeMap<u64, Vec<(u64, Value)>> = BTreeMap::new();
    for (k, v) in rows {
        let (i, j) = k
            .strip_prefix('t')
            .and_then(|r| r.split_once(":k"))
            .and_then(|(i, j)| Some((i.parse::<u64>().ok()?, j.parse::<u64>().ok()?)))
            .ok_or_else(|| format!("unexpected key {k:?}"))?;
        by_txn.entry(i).or_default().push((j, v));
    }
    for (i, keys) in &by_txn {
        let js: BTreeSet<u64> = keys.iter().map(|(j, _)| *j).collect();
        if js != (0..KEYS_PER_TXN).collect() || keys.len() as u64 != KEYS_PER_TXN {
            return Err(format!("transaction {i} is partially visible: keys {js:?}"));
        }
        for (j, v) in keys {
            if v.as_i64() != Some(*i as i64) {
                return Err(format!("key {} holds {v:?}, expected {i}", txn_key(*i, *j)));
            }
        }
    }
    let txns: Vec<u64> = by_txn.keys().copied().collect();
    let want: Vec<u64> = (start..start + head).collect();
    if txns != want {
        return Err(format!(
            "transactions found {:?}, expected {start}..{} (head {head})",
            summary(&txns),
            start + head
        ));
    }

    // (a) every acknowledged transaction is present with the version it was acknowledged at.
    let version_set: BTreeSet<u64> = versions.iter().copied().collect();
    for &(i, v) in acks {
        if !by_txn.contains_key(&i) {
            return Err(format!(
                "acknowledged transaction {i} (version {v}) is missing; head is {head}"
            ));
        }
        if !version_set.contains(&v) {
            return Err(format!(
                "acknowledged version {v} of transaction {i} is not in the log (head {head})"
            ));
        }
        if v != i - start + 1 {
            return Err(format!(
                "transaction {i} was acknowledged as version {v}, expected {}",
                i - start + 1
            ));
        }
        // Read the keys one by one too, through the point-lookup path.
        for j in 0..KEYS_PER_TXN {
            let got = main.kv_get(&txn_key(i, j)).map_err(|x| e("kv_get", x))?;
            if got != Some(Value::Int(i as i64)) {
                return Err(format!("acknowledged key {} holds {got:?}", txn_key(i, j)));
            }
        }
    }

    // The event log and the `last` cell move with the keys.
    let events = main
        .event_range(1, usize::MAX)
        .map_err(|x| e("event_range", x))?;
    let seqs: Vec<u64> = events.iter().map(|ev| ev.seq).collect();
    if seqs != (1..=head).collect::<Vec<_>>() {
        return Err(format!(
            "event sequence numbers {:?}, expected 1..={head}",
            summary(&seqs)
        ));
    }
    for (ev, i) in events.iter().zip(start..) {
        if ev.payload != Value::Int(i as i64) || ev.event_type != "tick" {
            return Err(format!(
                "event {} is {:?} {:?}, expected tick {i}",
                ev.seq, ev.event_type, ev.payload
            ));
        }
    }
    let last = main.state_get("last").map_err(|x| e("state_get", x))?;
    let want_last = txns.last().map(|i| Value::Int(*i as i64));
    if last != want_last {
        return Err(format!("cell last is {last:?}, expected {want_last:?}"));
    }
    Ok(WriteLoopState { head, txns })
}

/// Commits one more `write-loop`-style transaction and reads it back: the database is still writable.
pub fn check_writable(db: &Strata, i: u64) -> Result<u64, String> {
    let e = |err: strata_engine::Error| format!("writing after reopen: {err}");
    let mut tx = db.begin("main").map_err(e)?;
    for j in 0..KEYS_PER_TXN {
        tx.kv_put(&txn_key(i, j), i as i64).map_err(e)?;
    }
    tx.event_append("tick", i as i64).map_err(e)?;
    tx.state_set("last", i as i64).map_err(e)?;
    let v = tx.commit().map_err(e)?.ok_or("commit wrote no version")?;
    for j in 0..KEYS_PER_TXN {
        let got = db.main().kv_get(&txn_key(i, j)).map_err(e)?;
        if got != Some(Value::Int(i as i64)) {
            return Err(format!("key {} read back as {got:?}", txn_key(i, j)));
        }
    }
    Ok(v)
}

/// One increment of cell `counter` on `branch`: in one transaction, read it (absent = 0) and write it
/// plus one, with `tag` as the commit message (so the log shows which writer made each version).
/// Returns the new value.
pub fn increment_counter(
    db: &Strata,
    branch: &str,
    tag: &str,
) -> Result<i64, strata_engine::Error> {
    let mut tx = db.begin(branch)?;
    tx.set_message(tag);
    let n = match tx.state_get("counter")? {
        None => 0,
        Some(v) => v.as_i64().ok_or_else(|| {
            strata_engine::Error::InvalidOperation(format!("counter holds {v:?}"))
        })?,
    };
    tx.state_set("counter", n + 1)?;
    tx.commit()?;
    Ok(n + 1)
}

/// `n` increments of cell `counter` (see [`increment_counter`]), each retried as a whole on a
/// retryable error. Returns the number of retries.
pub fn increment_n(
    db: &Strata,
    branch: &str,
    n: u64,
    tag: &str,
) -> Result<u64, strata_engine::Error> {
    let mut retries = 0u64;
    for _ in 0..n {
        loop {
            match increment_counter(db, branch, tag) {
                Ok(_) => break,
                Err(e) if e.is_retryable() => retries += 1,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(retries)
}

fn summary(v: &[u64]) -> String {
    if v.len() <= 12 {
        format!("{v:?}")
    } else {
        format!(
            "[{:?} … {:?}] ({} items)",
            &v[..5],
            &v[v.len() - 5..],
            v.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_lines_parse() {
        assert_eq!(parse_ack("ack 7 3"), Some((7, 3)));
        assert_eq!(parse_ack("ack 7"), None);
        assert_eq!(parse_ack("ack 7 3 x"), None);
        assert_eq!(parse_ack("done"), None);
    }

    #[test]
    fn lcg_stays_in_range() {
        let mut r = Lcg::new(1);
        for _ in 0..1000 {
            let x = r.range(20, 300);
            assert!((20..=300).contains(&x));
        }
    }
}
