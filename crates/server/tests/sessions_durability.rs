//! Sessions and durability against real `stratadb-server` processes: abandoned and dropped
//! transactions, several client processes writing at once, `kill -9` and SIGTERM under load.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_client::{Db, Error, ErrorCode, Value};
use strata_wire::{Op, Output, Reply};
use support::{metric, metrics, Raw, ServerProc, LOAD};

/// A `strata-load --acks` process; its acknowledgements are collected as they arrive.
struct Load {
    child: Child,
    acks: Arc<Mutex<Vec<(String, u64)>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(url: &str, prefix: &str, threads: usize, ops: u64) -> Load {
        Load::start_mode("commit", url, prefix, threads, ops)
    }

    /// `commit`: each write a transaction (acknowledged with its version); `set`: each a one-shot
    /// put, run in the server's write groups (acknowledged without a version).
    fn start_mode(mode: &str, url: &str, prefix: &str, threads: usize, ops: u64) -> Load {
        let mut child = Command::new(LOAD)
            .args(["--url", url, "--prefix", prefix, "--acks", "--mode", mode])
            .args(["--threads", &threads.to_string(), "--ops", &ops.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let acks = Arc::new(Mutex::new(Vec::new()));
        let a = acks.clone();
        let reader = std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                let mut it = line.split_whitespace();
                if it.next() == Some("ack") {
                    let key = it.next().unwrap().to_string();
                    let v: u64 = it.next().unwrap().parse().unwrap();
                    a.lock().unwrap().push((key, v));
                }
            }
        });
        Load {
            child,
            acks,
            reader: Some(reader),
        }
    }

    fn count(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    /// Waits for the process to end and returns every acknowledgement.
    fn finish(mut self) -> (bool, Vec<(String, u64)>) {
        let ok = self.child.wait().unwrap().success();
        self.reader.take().unwrap().join().unwrap();
        let acks = self.acks.lock().unwrap().clone();
        (ok, acks)
    }
}

/// Every acknowledged write is there with its value, at the version acknowledged (when the
/// acknowledgement names one: one-shot writes are acknowledged with version 0).
fn check_acks(db: &Db, acks: &[(String, u64)]) {
    assert!(!acks.is_empty(), "no write was acknowledged");
    for (key, version) in acks {
        let n: i64 = key.rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(
            db.main().kv_get(key).unwrap(),
            Some(Value::Int(n)),
            "acknowledged key {key} is missing"
        );
        if *version == 0 {
            continue;
        }
        let at = db
            .get_at(
                &strata_client::Rev::at("main", *version),
                "default",
                strata_client::Kind::Kv,
                key,
            )
            .unwrap();
        assert_eq!(at, Some(Value::Int(n)), "{key} is not in version {version}");
    }
}

/// Versions 1..=head all exist, each once.
fn check_gap_free(db: &Db) -> u64 {
    let head = db.branch_info("main").unwrap().head;
    let log = db.log("main", usize::MAX).unwrap();
    let mut versions: Vec<u64> = log.iter().map(|c| c.version).collect();
    versions.sort();
    assert_eq!(
        versions,
        (1..=head).collect::<Vec<_>>(),
        "versions have gaps"
    );
    head
}

#[test]
fn several_client_processes_write_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerProc::start(&dir.path().join("db"), &["--open"]);
    let loads: Vec<Load> = (0..4)
        .map(|i| Load::start(&srv.url(), &format!("p{i}"), 3, 40))
        .collect();
    let mut all = Vec::new();
    for l in loads {
        let (ok, acks) = l.finish();
        assert!(ok, "a load process failed");
        assert_eq!(acks.len(), 3 * 40);
        all.extend(acks);
    }
    let db = Db::open(&srv.url()).unwrap();
    check_acks(&db, &all);
    let head = check_gap_free(&db);
    assert_eq!(
        head as usize,
        all.len(),
        "one version per acknowledged commit"
    );
    let mut versions: Vec<u64> = all.iter().map(|a| a.1).collect();
    versions.sort();
    versions.dedup();
    assert_eq!(
        versions.len(),
        all.len(),
        "two commits acknowledged one version"
    );
}

#[test]
fn an_abandoned_transaction_is_rolled_back_after_its_timeout_and_others_proceed() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerProc::start(
        &dir.path().join("db"),
        &[
            "--open",
            "--session-idle-ms",
            "700",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let a = Db::open(&srv.url()).unwrap();
    let b = Db::open(&srv.url()).unwrap();
    let mut tx = a.begin("main").unwrap();
    tx.kv_put("half", 1).unwrap();
    // A goes silent holding the write lock; B's write waits for A's timeout, then succeeds.
    let t0 = Instant::now();
    b.main().kv_put("other", 2).unwrap();
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "B did not wait for A's lock ({waited:?}): the transaction was not holding it"
    );
    assert!(waited < Duration::from_secs(10), "B waited {waited:?}");
    // A's transaction is gone: its next command says so, and nothing of it was committed.
    let err = tx.kv_put("more", 2).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::SessionExpired), "{err}");
    let err = tx.commit().unwrap_err();
    assert!(
        matches!(
            err.code(),
            Some(ErrorCode::SessionExpired | ErrorCode::NoTransaction)
        ),
        "{err}"
    );
    assert_eq!(b.main().kv_get("half").unwrap(), None);
    assert_eq!(b.main().kv_get("other").unwrap(), Some(Value::Int(2)));
    assert_eq!(check_gap_free(&b), 1);
    let m = metrics(srv.metrics.as_ref().unwrap());
    assert_eq!(metric(&m, "strata_server_sessions_expired_total"), 1);
    assert_eq!(metric(&m, "strata_server_sessions_open"), 0);
    // The handle is still usable for new work.
    let mut tx = a.begin("main").unwrap();
    tx.kv_put("again", 3).unwrap();
    assert_eq!(tx.commit().unwrap(), Some(2));
}

#[test]
fn a_dropped_connection_mid_transaction_leaves_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    // A long idle timeout: only the closed connection can explain a prompt rollback.
    let srv = ServerProc::start(
        &dir.path().join("db"),
        &[
            "--open",
            "--session-idle-ms",
            "60000",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let db = Db::open(&srv.url()).unwrap();
    db.main().kv_put("before", 0).unwrap();
    let (mut raw, w) = Raw::connect(&srv.addr, None);
    assert!(matches!(w, Reply::Ok(_)));
    let r = raw.call(
        1,
        &strata_wire::Command::Begin {
            branch: "main".into(),
        },
    );
    assert!(
        matches!(r, Reply::Ok(Output::Begun { version: 2, .. })),
        "{r:?}"
    );
    for i in 0..50 {
        let r = raw.call(
            2 + i,
            &strata_wire::Command::InTx {
                space: "default".into(),
                op: Op::KvPut {
                    key: format!("half-{i}"),
                    value: Value::Int(i as i64),
                },
            },
        );
        assert!(matches!(r, Reply::Ok(Output::Unit)));
    }
    // The commit is sent only in part, then the connection drops.
    let commit = strata_wire::encode(
        strata_wire::FrameKind::Request,
        99,
        &strata_wire::to_body(&strata_wire::Command::Commit),
    );
    raw.send_bytes(&commit[..commit.len() - 1]).unwrap();
    drop(raw);
    let t0 = Instant::now();
    db.main().kv_put("after", 1).unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the dropped session blocked a writer"
    );
    assert_eq!(db.main().kv_list("half").unwrap(), vec![]);
    assert_eq!(
        db.log("main", 10).unwrap().len(),
        2,
        "only before and after"
    );
    let m = metrics(srv.metrics.as_ref().unwrap());
    assert_eq!(metric(&m, "strata_server_sessions_abandoned_total"), 1);
}

#[test]
fn a_reconnect_is_transparent_outside_a_transaction_and_session_lost_inside() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    let mut srv = ServerProc::start(&data, &["--open"]);
    let port: u16 = srv.addr.rsplit(':').next().unwrap().parse().unwrap();
    let db = Db::open(&srv.url()).unwrap();
    db.main().kv_put("a", 1).unwrap();
    let mut tx = db.begin("main").unwrap();
    tx.kv_put("in-tx", 1).unwrap();
    srv.kill9();
    let srv2 = ServerProc::start_on(&data, port, &["--open"]);
    assert_eq!(srv2.addr, srv.addr);
    // The transaction's connection died with the old process: a distinct error, no retry.
    let err = tx.kv_put("in-tx-2", 2).unwrap_err();
    assert!(matches!(err, Error::SessionLost(_)), "{err}");
    let err = tx.commit().unwrap_err();
    assert!(matches!(err, Error::SessionLost(_)), "{err}");
    // Outside a transaction the pool reconnects by itself.
    assert_eq!(db.main().kv_get("a").unwrap(), Some(Value::Int(1)));
    db.main().kv_put("b", 2).unwrap();
    assert_eq!(db.main().kv_get("in-tx").unwrap(), None);
}

fn under_load_then_stop(stop: impl FnOnce(&mut ServerProc)) -> (ServerProc, Vec<(String, u64)>) {
    under_load_of_then_stop("commit", stop)
}

fn under_load_of_then_stop(
    mode: &str,
    stop: impl FnOnce(&mut ServerProc),
) -> (ServerProc, Vec<(String, u64)>) {
    let dir = tempfile::tempdir().unwrap().keep();
    let data = dir.join("db");
    let mut srv = ServerProc::start(&data, &["--open"]);
    let loads: Vec<Load> = (0..3)
        .map(|i| Load::start_mode(mode, &srv.url(), &format!("w{i}"), 2, 0))
        .collect();
    let t0 = Instant::now();
    while loads.iter().map(Load::count).sum::<usize>() < 60 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the load made no progress"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    stop(&mut srv);
    let mut acks = Vec::new();
    for l in loads {
        // The load fails once the server is gone; what it acknowledged before must survive.
        let (_, a) = l.finish();
        acks.extend(a);
    }
    let srv2 = ServerProc::start(&data, &["--open"]);
    (srv2, acks)
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_commit() {
    let (srv, acks) = under_load_then_stop(|s| s.kill9());
    let db = Db::open(&srv.url()).unwrap();
    check_acks(&db, &acks);
    let head = check_gap_free(&db);
    assert!(head as usize >= acks.len());
    let _ = std::fs::remove_dir_all(srv.dir.parent().unwrap());
}

/// The same with one-shot writes, which the server commits in groups (one fsync for many versions):
/// a group is acknowledged only after its commit, so nothing acknowledged is lost.
#[test]
fn kill_9_under_one_shot_writes_loses_no_acknowledged_write() {
    let (srv, acks) = under_load_of_then_stop("set", |s| s.kill9());
    let db = Db::open(&srv.url()).unwrap();
    check_acks(&db, &acks);
    let head = check_gap_free(&db);
    assert!(head as usize >= acks.len());
    let _ = std::fs::remove_dir_all(srv.dir.parent().unwrap());
}

#[test]
fn sigterm_under_load_exits_cleanly_and_loses_nothing() {
    let mut wal_len = None;
    let (srv, acks) = under_load_then_stop(|s| {
        let status = s.terminate(Duration::from_secs(60));
        assert!(status.success(), "the server exited with {status}");
        wal_len = Some(
            std::fs::metadata(s.dir.join("strata.db-wal"))
                .map(|m| m.len())
                .unwrap_or(0),
        );
    });
    assert_eq!(wal_len, Some(0), "the WAL was not checkpointed at shutdown");
    let db = Db::open(&srv.url()).unwrap();
    check_acks(&db, &acks);
    // A graceful stop finishes requests in flight: nothing is committed without its answer being
    // sent, unless the client was gone. Every version is one acknowledged commit here.
    let head = check_gap_free(&db);
    let by_version: BTreeMap<u64, &String> = acks.iter().map(|(k, v)| (*v, k)).collect();
    assert_eq!(by_version.len(), acks.len());
    assert!(head as usize >= acks.len());
    let _ = std::fs::remove_dir_all(srv.dir.parent().unwrap());
}

#[test]
fn a_busy_transaction_is_rolled_back_at_its_lifetime_cap() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerProc::start(
        &dir.path().join("db"),
        &[
            "--open",
            "--session-idle-ms",
            "5000",
            "--session-max-ms",
            "800",
        ],
    );
    let db = Db::open(&srv.url()).unwrap();
    let mut tx = db.begin("main").unwrap();
    let t0 = Instant::now();
    let mut i = 0;
    let err = loop {
        match tx.kv_put(&format!("busy-{i}"), i) {
            Ok(()) => i += 1,
            Err(e) => break e,
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "never expired");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(err.code(), Some(ErrorCode::SessionExpired), "{err}");
    assert!(
        t0.elapsed() >= Duration::from_millis(700),
        "{:?}",
        t0.elapsed()
    );
    assert!(i > 5, "the session was not kept busy");
    drop(tx);
    assert_eq!(db.main().kv_list("busy").unwrap(), vec![]);
    assert_eq!(db.branch_info("main").unwrap().head, 0);
}
