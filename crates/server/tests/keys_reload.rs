//! `stratadb-server` re-reads its key file on SIGHUP: a key added since is accepted, a removed one
//! is refused for new connections (a connection made with it keeps working until it closes), and a
//! damaged key file changes nothing. Real processes on 127.0.0.1 port 0. And compatibility: a client
//! never sends the commands added with the `admin` capability to a server that lacks it.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use strata_client::{Db, ErrorCode, Value};
use support::{add_key, opts, ServerProc, SERVER};

fn hup(srv: &ServerProc) {
    // SAFETY: signalling a child process this test started, by its PID.
    let r = unsafe { libc::kill(srv.pid(), libc::SIGHUP) };
    assert_eq!(r, 0, "kill -HUP failed");
}

fn connect(srv: &ServerProc, key: &str) -> Result<Db, strata_client::Error> {
    Db::connect(&srv.url(), opts(Some(key)))
}

/// Waits (up to 10 s) until connecting with `key` gives `accepted`.
fn until(srv: &ServerProc, key: &str, accepted: bool) {
    let t0 = Instant::now();
    loop {
        match connect(srv, key) {
            Ok(_) if accepted => return,
            Err(e) if !accepted => {
                assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
                return;
            }
            _ => {}
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the key was not {} after SIGHUP",
            if accepted { "accepted" } else { "refused" }
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reloads_the_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    let old = add_key(&data, "old", &[], &["*"]);
    let srv = ServerProc::start(&data, &[]);
    let held = connect(&srv, &old).unwrap();
    held.main().kv_put("a", 1).unwrap();

    // A key added while the server runs is unknown until SIGHUP.
    let new = add_key(&data, "new", &["*"], &[]);
    let e = connect(&srv, &new).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
    hup(&srv);
    until(&srv, &new, true);
    let reader = connect(&srv, &new).unwrap();
    assert_eq!(reader.main().kv_get("a").unwrap(), Some(Value::Int(1)));
    // Its permissions are the file's: read only.
    let e = reader.main().kv_put("b", 2).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");

    // A removed key is refused for new connections once the server reloads.
    let out = Command::new(SERVER)
        .args(["keys", "remove", "--data-dir"])
        .arg(&data)
        .arg("old")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    connect(&srv, &old).expect("still accepted before SIGHUP");
    hup(&srv);
    until(&srv, &old, false);
    // The connection made with it before keeps its session until it closes.
    held.main().kv_put("c", 3).unwrap();

    // A damaged key file is not loaded: the previous keys stay in force.
    std::fs::write(data.join("server-keys.json"), b"{not json").unwrap();
    hup(&srv);
    std::thread::sleep(Duration::from_millis(300));
    connect(&srv, &new).expect("the previous keys still apply");
    let e = connect(&srv, &old).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
}

/// A server from before the `admin` capability (a stand-in that answers the handshake with the
/// older capability list, then records what it receives): the client refuses the new commands
/// itself, naming the way out, and sends nothing the older server could not decode.
#[test]
fn older_server_is_never_sent_the_new_commands() {
    use std::io::{Read, Write};
    use strata_wire::{encode, to_body, FrameKind, Reply, Welcome};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stand_in = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // The preamble (8), then the hello frame (length prefix, then that many bytes).
        let mut pre = [0u8; 12];
        s.read_exact(&mut pre).unwrap();
        let len = u32::from_be_bytes([pre[8], pre[9], pre[10], pre[11]]) as usize;
        let mut hello = vec![0u8; len];
        s.read_exact(&mut hello).unwrap();
        let welcome = Welcome {
            server_version: "0.0.9".into(),
            protocol: strata_wire::PROTOCOL_VERSION,
            capabilities: ["kv", "json", "branches", "history", "open"]
                .map(String::from)
                .to_vec(),
            max_frame: strata_wire::DEFAULT_MAX_FRAME,
            session_idle_ms: 10_000,
        };
        s.write_all(&encode(
            FrameKind::Welcome,
            0,
            &to_body(&Reply::Ok(welcome)),
        ))
        .unwrap();
        // Everything the client sends after the handshake, until it closes.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        rest
    });
    let db = Db::connect(&format!("strata://{addr}"), opts(None)).unwrap();
    for e in [
        db.config("user.name").unwrap_err(),
        db.remote_list().unwrap_err(),
        db.contains(
            &strata_client::Rev::head("main"),
            &strata_client::Rev::head("b"),
        )
        .unwrap_err(),
    ] {
        assert_eq!(e.code(), Some(ErrorCode::InvalidOperation), "{e}");
        assert!(e.to_string().contains("admin"), "{e}");
        assert!(e.to_string().contains("0.0.9"), "{e}");
    }
    drop(db);
    let sent = stand_in.join().unwrap();
    assert!(sent.is_empty(), "the client sent {} bytes", sent.len());
}
