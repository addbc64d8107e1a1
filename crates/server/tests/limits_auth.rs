//! Limits, auth and bad input against real `stratadb-server` processes: 1,000 connections held and
//! those past the cap refused, the auth matrix, frames over the cap, malformed frames, metrics.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use strata_client::{Db, Error, ErrorCode, MergeStrategy, Rev, Value};
use strata_wire::{Op, Output, Reply};
use support::{metric, metrics, opts, Raw, ServerProc};

#[test]
fn a_thousand_connections_are_held_and_those_past_the_cap_refused() {
    let limit = support::raise_nofile();
    assert!(
        limit >= 1100,
        "this test holds 1,000 sockets; the open-file limit is {limit} (raise it: ulimit -n 4096)"
    );
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerProc::start(
        &dir.path().join("db"),
        &[
            "--open",
            "--max-connections",
            "1000",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let mut held = Vec::with_capacity(1000);
    for i in 0..1000 {
        let db = Db::open(&srv.url()).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        held.push(db);
    }
    // Past the cap: a clear, typed refusal, not a hang or a reset.
    for _ in 0..3 {
        let err = Db::open(&srv.url()).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::TooManyConnections), "{err}");
        assert!(err.to_string().contains("--max-connections"), "{err}");
    }
    // Every held connection still works.
    for (i, db) in held.iter().enumerate().step_by(97) {
        db.main().kv_put(&format!("k{i}"), i as i64).unwrap();
    }
    assert_eq!(held[999].main().kv_list("k").unwrap().len(), 11);
    let m = metrics(srv.metrics.as_ref().unwrap());
    assert_eq!(metric(&m, "strata_server_connections_open"), 1000);
    assert_eq!(metric(&m, "strata_server_connections_refused_total"), 3);
    // A freed slot is usable again.
    held.truncate(999);
    let t0 = Instant::now();
    loop {
        match Db::open(&srv.url()) {
            Ok(db) => {
                assert_eq!(db.main().kv_get("k0").unwrap(), Some(Value::Int(0)));
                break;
            }
            Err(e) if e.code() == Some(ErrorCode::TooManyConnections) => {
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "the slot was never freed"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn auth_matrix_refuses_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    // With no key and no --open the server refuses to start, saying how to fix it.
    let out = Command::new(support::SERVER)
        .arg("--data-dir")
        .arg(&data)
        .args(["--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("keys add") && err.contains("--open"), "{err}");

    let admin = support::add_key(&data, "admin", &[], &["*"]);
    let reader = support::add_key(&data, "reader", &["*"], &[]);
    let agent = support::add_key(&data, "agent", &[], &["agent/*"]);
    assert!(admin.starts_with("ssk_"));
    let stored = std::fs::read_to_string(data.join("server-keys.json")).unwrap();
    for k in [&admin, &reader, &agent] {
        let secret = k.rsplit('_').next().unwrap();
        assert!(!stored.contains(secret), "a secret is stored in clear");
    }
    let srv = ServerProc::start(&data, &["--metrics", "127.0.0.1:0"]);
    let url = srv.url();
    let adm = Db::connect(&url, opts(Some(&admin))).unwrap();
    adm.main().kv_put("x", 1).unwrap();
    adm.create_branch("agent/1").unwrap();
    let head = |b: &str| adm.branch_info(b).unwrap().head;
    let (main0, agent0) = (head("main"), head("agent/1"));

    // No key, a bad key, a key with one wrong character: refused at the handshake.
    let e = Db::connect(&url, opts(None)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
    let e = Db::connect(&url, opts(Some("ssk_0011223344556677_00"))).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
    let mut bad = admin.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == 'a' { 'b' } else { 'a' });
    let e = Db::connect(&url, opts(Some(&bad))).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
    assert!(
        !e.to_string().contains(&bad[20..]),
        "the key is echoed: {e}"
    );

    // A read-only key reads, and every kind of write is refused.
    let ro = Db::connect(&url, opts(Some(&reader))).unwrap();
    assert_eq!(ro.main().kv_get("x").unwrap(), Some(Value::Int(1)));
    let forbidden = |r: Result<(), Error>| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
    };
    forbidden(ro.main().kv_put("x", 2));
    forbidden(ro.main().event_append("t", 1).map(|_| ()));
    forbidden(ro.main().state_set("c", 1));
    forbidden(ro.begin("main").map(|_| ()));
    forbidden(ro.create_branch("new").map(|_| ()));
    forbidden(ro.fork_branch("main", "fork").map(|_| ()));
    forbidden(ro.delete_branch("agent/1"));
    forbidden(
        ro.merge(&Rev::head("agent/1"), "main", MergeStrategy::LastWriterWins)
            .map(|_| ()),
    );

    let bundle = dir.path().join("main.branchbundle.tar.zst");
    ro.export_bundle("main", None, &bundle).unwrap();
    forbidden(ro.import_bundle(&bundle, Some("copy")).map(|_| ()));
    forbidden(ro.import_bundle(&bundle, None).map(|_| ()));
    forbidden(ro.push("origin", "main").map(|_| ()));
    forbidden(ro.pull("origin", "main", false).map(|_| ()));

    // A key limited to agent/*: its own branches only, for reads too.
    let ag = Db::connect(&url, opts(Some(&agent))).unwrap();
    let mut tx = ag.begin("agent/1").unwrap();
    tx.kv_put("mine", 1).unwrap();
    tx.commit().unwrap();
    forbidden(ag.main().kv_put("x", 3));
    forbidden(ag.main().kv_get("x").map(|_| ()));
    forbidden(ag.begin("main").map(|_| ()));
    forbidden(ag.fork_branch("main", "agent/2").map(|_| ()));
    forbidden(
        ag.merge(&Rev::head("agent/1"), "main", MergeStrategy::LastWriterWins)
            .map(|_| ()),
    );
    forbidden(
        ag.diff(&Rev::head("main"), &Rev::head("agent/1"))
            .map(|_| ()),
    );
    let visible: Vec<String> = ag
        .list_branches(false)
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(visible, vec!["agent/1"]);

    // Nothing refused was written.
    assert_eq!(head("main"), main0);
    assert_eq!(head("agent/1"), agent0 + 1);
    assert_eq!(adm.main().kv_get("x").unwrap(), Some(Value::Int(1)));
    assert!(!adm.branch_exists("new").unwrap() && !adm.branch_exists("fork").unwrap());
    assert!(!adm.branch_exists("copy").unwrap());
    let m = metrics(srv.metrics.as_ref().unwrap());
    assert_eq!(metric(&m, "strata_server_handshakes_refused_total"), 3);
}

#[test]
fn frames_over_the_cap_are_answered_and_malformed_ones_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerProc::start(
        &dir.path().join("db"),
        &["--open", "--max-frame", "4096", "--metrics", "127.0.0.1:0"],
    );
    let db = Db::open(&srv.url()).unwrap();
    assert_eq!(db.welcome().unwrap().max_frame, 4096);

    // The client refuses a request over the server's cap before sending it.
    let e = db.main().kv_put("big", vec![0u8; 5000]).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::TooLarge), "{e}");
    db.main().kv_put("small", 1).unwrap();

    // A raw oversized frame is answered with too_large (its id), and the connection goes on.
    let (mut raw, _) = Raw::connect(&srv.addr, None);
    let big = strata_wire::encode(
        strata_wire::FrameKind::Request,
        41,
        &strata_wire::to_body(&support::scoped(
            "main",
            Op::KvPut {
                key: "big".into(),
                value: Value::Bytes(vec![7; 100_000]),
            },
        )),
    );
    raw.send_bytes(&big).unwrap();
    let (id, r) = raw.recv().unwrap();
    assert_eq!(id, 41);
    match r {
        Reply::Err(e) => assert_eq!(e.code, ErrorCode::TooLarge),
        r => panic!("{r:?}"),
    }
    assert!(matches!(
        raw.call(42, &strata_wire::Command::Ping),
        Reply::Ok(Output::Unit)
    ));
    assert_eq!(db.main().kv_get("big").unwrap(), None);

    // Garbage where a frame belongs: an error, then the connection closes.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("short length", vec![0, 0, 0, 3, 1, 1, 0]),
        ("wrong version", {
            let mut f = strata_wire::encode(strata_wire::FrameKind::Request, 5, b"\xc0");
            f[4] = 9;
            f
        }),
        ("unknown kind", {
            let mut f = strata_wire::encode(strata_wire::FrameKind::Request, 5, b"\xc0");
            f[5] = 77;
            f
        }),
        (
            "a body that is not a command",
            strata_wire::encode(strata_wire::FrameKind::Request, 6, b"\x93\x01\x02\x03"),
        ),
        (
            "a reply frame from the client",
            strata_wire::encode(strata_wire::FrameKind::Reply, 7, b"\xc0"),
        ),
    ];
    let n_cases = cases.len() as u64;
    for (what, bytes) in cases {
        let (mut raw, _) = Raw::connect(&srv.addr, None);
        raw.send_bytes(&bytes).unwrap();
        let (_, r) = raw
            .recv()
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        match r {
            Reply::Err(e) => assert_eq!(e.code, ErrorCode::Malformed, "{what}: {e:?}"),
            r => panic!("{what}: {r:?}"),
        }
        assert!(raw.closed(), "{what}: the connection stayed open");
        // Other connections are untouched.
        assert_eq!(
            db.main().kv_get("small").unwrap(),
            Some(Value::Int(1)),
            "{what}"
        );
    }
    // Not our protocol at all: closed without an answer.
    let mut s = std::net::TcpStream::connect(&srv.addr).unwrap();
    std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut raw = Raw { s };
    assert!(raw.closed());
    // An old client's protocol version: a typed refusal.
    let mut s = std::net::TcpStream::connect(&srv.addr).unwrap();
    let mut hello = strata_wire::preamble(99).to_vec();
    strata_wire::encode_into(
        &mut hello,
        strata_wire::FrameKind::Hello,
        0,
        &strata_wire::to_body(&strata_wire::Hello {
            api_key: None,
            client_name: "old".into(),
        }),
    );
    std::io::Write::write_all(&mut s, &hello).unwrap();
    let mut raw = Raw { s };
    let f = raw.frame().unwrap();
    match strata_wire::from_body::<Reply<strata_wire::Welcome>>("welcome", &f.body).unwrap() {
        Reply::Err(e) => assert_eq!(e.code, ErrorCode::UnsupportedProtocol),
        r => panic!("{r:?}"),
    }

    let m = metrics(srv.metrics.as_ref().unwrap());
    assert_eq!(metric(&m, "strata_server_frames_too_large_total"), 1);
    assert_eq!(metric(&m, "strata_server_frames_malformed_total"), n_cases);
    assert!(m.contains("strata_server_requests_total{command=\"kv_put\",outcome=\"ok\"}"));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerProc::start(&dir.path().join("db"), &["--open"]);
    let (mut raw, _) = Raw::connect(&srv.addr, None);
    let mut batch = Vec::new();
    for i in 0..100u64 {
        let cmd = support::scoped(
            "main",
            Op::KvPut {
                key: format!("p{i}"),
                value: Value::Int(i as i64),
            },
        );
        strata_wire::encode_into(
            &mut batch,
            strata_wire::FrameKind::Request,
            1000 + i,
            &strata_wire::to_body(&cmd),
        );
    }
    raw.send_bytes(&batch).unwrap();
    for i in 0..100u64 {
        let (id, r) = raw.recv().unwrap();
        assert_eq!(id, 1000 + i);
        assert!(matches!(r, Reply::Ok(Output::Unit)), "{r:?}");
    }
    let db = Db::open(&srv.url()).unwrap();
    let cmds: Vec<_> = (0..100)
        .map(|i| {
            support::scoped(
                "main",
                Op::KvGet {
                    key: format!("p{i}"),
                },
            )
        })
        .collect();
    for (i, r) in db.pipeline(&cmds).unwrap().into_iter().enumerate() {
        assert_eq!(r.unwrap(), Output::Value(Value::Int(i as i64)));
    }
    assert_eq!(db.branch_info("main").unwrap().head, 100);
}

/// Pipelined reads go to the read pool in batches, writes do not: interleaved on one connection,
/// every answer still comes in order and every read sees exactly the writes sent before it.
#[test]
fn pipelined_reads_see_the_writes_sent_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerProc::start(&dir.path().join("db"), &["--open"]);
    let (mut raw, _) = Raw::connect(&srv.addr, None);
    let get = |key: &str| {
        support::scoped(
            "main",
            Op::KvGet {
                key: key.to_string(),
            },
        )
    };
    let mut cmds = Vec::new();
    let mut want = Vec::new();
    for i in 0..40i64 {
        // A write, then a run of reads of what it wrote, of an older version and of nothing.
        cmds.push(support::scoped(
            "main",
            Op::KvPut {
                key: "k".into(),
                value: Value::Int(i),
            },
        ));
        want.push(Ok(Output::Unit));
        cmds.push(get("k"));
        want.push(Ok(Output::Value(Value::Int(i))));
        cmds.push(strata_wire::Command::GetAt {
            rev: Rev::at("main", 1),
            space: "default".into(),
            kind: strata_client::Kind::Kv,
            key: "k".into(),
        });
        want.push(Ok(Output::Value(Value::Int(0))));
        cmds.push(get("never"));
        want.push(Ok(Output::Missing));
        cmds.push(support::scoped("nope", Op::KvGet { key: "k".into() }));
        want.push(Err(ErrorCode::BranchNotFound));
    }
    let mut bytes = Vec::new();
    for (i, c) in cmds.iter().enumerate() {
        strata_wire::encode_into(
            &mut bytes,
            strata_wire::FrameKind::Request,
            i as u64 + 1,
            &strata_wire::to_body(c),
        );
    }
    raw.send_bytes(&bytes).unwrap();
    for (i, w) in want.into_iter().enumerate() {
        let (id, r) = raw.recv().unwrap();
        assert_eq!(id, i as u64 + 1);
        match (r, w) {
            (Reply::Ok(o), Ok(w)) => assert_eq!(o, w, "request {id}"),
            (Reply::Err(e), Err(code)) => assert_eq!(e.code, code, "request {id}: {}", e.message),
            (r, w) => panic!("request {id}: got {r:?}, want {w:?}"),
        }
    }
}

/// One-shot writes from many connections at once are committed in groups (one durable commit per
/// group) but each is still its own version: every acknowledged write is there, versions are
/// gap-free, and a failing write in a group fails alone.
#[test]
fn concurrent_one_shot_writes_each_get_their_own_version() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerProc::start(&dir.path().join("db"), &["--open"]);
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let addr = srv.addr.clone();
            std::thread::spawn(move || {
                let (mut raw, _) = Raw::connect(&addr, None);
                let mut bytes = Vec::new();
                for i in 0..40u64 {
                    let cmd = if i == 20 {
                        // Fails alone: the branch does not exist.
                        support::scoped(
                            "nope",
                            Op::KvPut {
                                key: "x".into(),
                                value: Value::Int(0),
                            },
                        )
                    } else {
                        support::scoped(
                            "main",
                            Op::KvPut {
                                key: format!("t{t}-{i}"),
                                value: Value::Int((t * 100 + i) as i64),
                            },
                        )
                    };
                    strata_wire::encode_into(
                        &mut bytes,
                        strata_wire::FrameKind::Request,
                        i + 1,
                        &strata_wire::to_body(&cmd),
                    );
                }
                raw.send_bytes(&bytes).unwrap();
                for i in 0..40u64 {
                    let (id, r) = raw.recv().unwrap();
                    assert_eq!(id, i + 1);
                    match (i, r) {
                        (20, Reply::Err(e)) => assert_eq!(e.code, ErrorCode::BranchNotFound),
                        (_, Reply::Ok(Output::Unit)) => {}
                        (_, r) => panic!("write {i} of connection {t}: {r:?}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let db = Db::open(&srv.url()).unwrap();
    assert_eq!(db.branch_info("main").unwrap().head, 8 * 39);
    let log = db.log("main", 1000).unwrap();
    let mut versions: Vec<u64> = log.iter().map(|c| c.version).collect();
    versions.sort();
    assert_eq!(versions, (1..=8 * 39).collect::<Vec<u64>>());
    for t in 0..8u64 {
        for i in (0..40u64).filter(|i| *i != 20) {
            assert_eq!(
                db.on("main").kv_get(&format!("t{t}-{i}")).unwrap(),
                Some(Value::Int((t * 100 + i) as i64))
            );
        }
    }
    assert!(!db.branch_exists("nope").unwrap());
}

#[test]
fn hot_gets_come_from_the_cache_and_see_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    let srv = ServerProc::start(&data, &["--open", "--metrics", "127.0.0.1:0"]);
    let m = srv.metrics.as_ref().unwrap();
    let db = Db::open(&srv.url()).unwrap();
    db.main().kv_put("k", 1).unwrap();
    for _ in 0..20 {
        assert_eq!(db.main().kv_get("k").unwrap(), Some(Value::Int(1)));
        assert_eq!(db.main().kv_get("absent").unwrap(), None);
    }
    let text = metrics(m);
    let hits = metric(&text, "strata_server_read_cache_hits_total");
    assert!(hits >= 30, "{text}");
    assert!(
        metric(&text, "strata_server_read_cache_bytes") > 0,
        "{text}"
    );
    // A write through the server, then one by another process on the same folder (the
    // embedded engine): each read after it sees it.
    db.main().kv_put("k", 2).unwrap();
    assert_eq!(db.main().kv_get("k").unwrap(), Some(Value::Int(2)));
    let other = strata_engine::Strata::open(&data).unwrap();
    other.main().kv_put("k", 3).unwrap();
    other.main().kv_delete("absent").unwrap();
    other.main().kv_put("absent", 4).unwrap();
    assert_eq!(db.main().kv_get("k").unwrap(), Some(Value::Int(3)));
    assert_eq!(db.main().kv_get("absent").unwrap(), Some(Value::Int(4)));
    // --read-cache-mb 0: no cache, no cache metrics.
    let srv0 = ServerProc::start(
        &dir.path().join("db0"),
        &["--open", "--read-cache-mb", "0", "--metrics", "127.0.0.1:0"],
    );
    let db0 = Db::open(&srv0.url()).unwrap();
    db0.main().kv_put("k", 1).unwrap();
    assert_eq!(db0.main().kv_get("k").unwrap(), Some(Value::Int(1)));
    assert!(!metrics(srv0.metrics.as_ref().unwrap()).contains("read_cache"));
}

#[test]
fn requests_sent_before_the_client_closes_its_side_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let srv = ServerProc::start(&dir.path().join("db"), &["--open"]);
    let (mut raw, _) = Raw::connect(&srv.addr, None);
    let mut bytes = Vec::new();
    for i in 0..5u64 {
        let cmd = support::scoped(
            "main",
            Op::KvPut {
                key: format!("k{i}"),
                value: Value::Int(i as i64),
            },
        );
        strata_wire::encode_msg_into(&mut bytes, strata_wire::FrameKind::Request, i + 1, &cmd);
        let get = support::scoped(
            "main",
            Op::KvGet {
                key: format!("k{i}"),
            },
        );
        strata_wire::encode_msg_into(&mut bytes, strata_wire::FrameKind::Request, i + 101, &get);
    }
    raw.send_bytes(&bytes).unwrap();
    raw.s.shutdown(std::net::Shutdown::Write).unwrap();
    for i in 0..5u64 {
        let (id, r) = raw.recv().unwrap();
        assert_eq!(id, i + 1);
        assert!(matches!(r, Reply::Ok(Output::Unit)), "{r:?}");
        let (id, r) = raw.recv().unwrap();
        assert_eq!(id, i + 101);
        match r {
            Reply::Ok(Output::Value(v)) => assert_eq!(v, Value::Int(i as i64)),
            r => panic!("{r:?}"),
        }
    }
    assert!(raw.closed());
}
