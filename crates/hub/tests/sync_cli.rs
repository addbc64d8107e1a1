//! Sync end to end with the real `strata` CLI through real `stratahub` processes: the seed
//! walkthrough, tokens that never show, a no-op push that sends no blob bytes, clone, and concurrent
//! pushers spread over two hub processes sharing one storage.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;
use support::*;

struct Db {
    path: PathBuf,
    token: Option<String>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Db {
    fn run(&self, args: &[&str]) -> Output {
        if !self.path.exists() {
            // Commands never create a database: the first use of a new one initialises it.
            let out = Command::new(strata_bin())
                .env_remove("STRATA_DB")
                .arg("--db")
                .arg(&self.path)
                .arg("init")
                .output()
                .unwrap();
            assert!(out.status.success(), "init: {}", text(&out.stderr));
        }
        let mut c = Command::new(strata_bin());
        c.env_remove("STRATA_DB")
            .env_remove("STRATA_TOKEN")
            .env("RUST_LOG", "debug")
            .arg("--db")
            .arg(&self.path)
            .args(args);
        let out = c.output().unwrap();
        if let Some(t) = &self.token {
            for (what, s) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
                assert!(
                    !text(s).contains(t.as_str()),
                    "{args:?}: the token shows in {what}: {}",
                    text(s)
                );
            }
        }
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed ({:?}): {}",
            out.status.code(),
            tail(&text(&out.stderr))
        );
        text(&out.stdout)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let s = self.ok(&a);
        let v: Value =
            serde_json::from_str(&s).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {s}"));
        assert_eq!(v["ok"], true, "{args:?}: {v}");
        v["data"].clone()
    }

    fn keys(&self) -> Vec<String> {
        self.json(&["kv", "list"])["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_str().unwrap().to_string())
            .collect()
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_walkthrough_through_the_hub() {
    let h = FolderHub::start(&[]);
    let url = h.hub.url.clone();
    create_project(&url, &h.admin, "acme", "agent-memory").await;
    let (a_id, a_key) = api_key(&url, &h.admin, "agent-a").await;
    let (b_id, b_key) = api_key(&url, &h.admin, "agent-b").await;
    for id in [&a_id, &b_id] {
        set_member(
            &url,
            &h.admin,
            "acme/agent-memory",
            id,
            r#"{"role":"write"}"#,
        )
        .await;
    }
    let remote_url = format!("{url}/acme/agent-memory");
    let a = Db {
        path: h.dir.path().join("a"),
        token: Some(a_key.clone()),
    };
    let b = Db {
        path: h.dir.path().join("b"),
        token: Some(b_key.clone()),
    };
    a.ok(&["remote", "add", "hub", &remote_url, "--token", &a_key]);
    b.ok(&["remote", "add", "hub", &remote_url, "--token", &b_key]);
    // The token is stored but never listed.
    let listed = &a.json(&["remote", "list"])["remotes"];
    assert_eq!(listed[0]["url"], remote_url.as_str());
    assert_eq!(listed[0]["options"]["token"], "***");
    assert!(!a.ok(&["remote", "list"]).contains(&a_key));

    for (k, v) in [
        ("config", "{\"model\":\"x\"}"),
        ("notes/research.md", "\"notes\""),
        ("task:1", "1"),
        ("task:2", "2"),
    ] {
        a.ok(&["kv", "put", k, v]);
    }
    a.ok(&["push", "hub"]);

    // B pulls everything.
    b.ok(&["pull", "hub"]);
    assert_eq!(
        b.keys(),
        ["config", "notes/research.md", "task:1", "task:2"]
    );

    // Both work; A pushes first; B is rejected, pulls, pushes.
    a.ok(&["kv", "put", "task:3", "3"]);
    a.ok(&["kv", "put", "task:4", "4"]);
    b.ok(&["kv", "put", "task:5", "5"]);
    b.ok(&["kv", "put", "task:6", "6"]);
    a.ok(&["push", "hub"]);
    let out = b.run(&["push", "hub"]);
    assert_eq!(out.status.code(), Some(7), "{}", tail(&text(&out.stderr)));
    assert!(text(&out.stderr).contains("pull"), "{}", text(&out.stderr));
    b.ok(&["pull", "hub"]);
    b.ok(&["push", "hub"]);
    a.ok(&["pull", "hub"]);
    let all = [
        "config",
        "notes/research.md",
        "task:1",
        "task:2",
        "task:3",
        "task:4",
        "task:5",
        "task:6",
    ];
    assert_eq!(a.keys(), all);
    assert_eq!(b.keys(), all);
    let st = a.json(&["status", "hub"])["branches"][0].clone();
    for field in [
        "ahead_entries",
        "behind_entries",
        "ahead_versions",
        "behind_versions",
    ] {
        assert_eq!(st[field], 0, "{field}: {st}");
    }
    assert_eq!(st["remote_version"], st["mirror_version"], "{st}");

    // A push with nothing new sends no blob bytes.
    let before = metric(&url, "stratahub_blob_bytes_received_total").await;
    a.ok(&["push", "hub"]);
    let after = metric(&url, "stratahub_blob_bytes_received_total").await;
    assert_eq!(before, after, "a no-op push uploaded blob bytes");

    // Clone with the key from STRATA_TOKEN.
    let c_path = h.dir.path().join("c");
    let out = Command::new(strata_bin())
        .env("STRATA_TOKEN", &a_key)
        .args(["clone", &remote_url])
        .arg(&c_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "clone: {}", text(&out.stderr));
    assert!(!text(&out.stdout).contains(&a_key) && !text(&out.stderr).contains(&a_key));
    let c = Db {
        path: c_path,
        token: Some(a_key.clone()),
    };
    assert_eq!(c.keys(), all);

    // The hub page's branch listing shows the branch at the remote's version.
    let branches = client()
        .get(format!("{url}/v1/projects/acme/agent-memory/branches"))
        .bearer_auth(&a_key)
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(branches[0]["name"], "main", "{branches}");
    assert!(branches[0]["version"].as_u64().unwrap() >= 3, "{branches}");

    // A wrong token is refused with a message that says what to do, without echoing it.
    let d = Db {
        path: h.dir.path().join("d"),
        token: Some("shub_0000000000000000_00wrong".into()),
    };
    d.ok(&[
        "remote",
        "add",
        "hub",
        &remote_url,
        "--token",
        "shub_0000000000000000_00wrong",
    ]);
    let out = d.run(&["pull", "hub"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "{}",
        tail(&err)
    );
}

/// Pushes from `db` until one succeeds, pulling after each rejection.
fn push_until_accepted(db: &Db, remote: &str) -> u32 {
    for attempt in 0..60 {
        let out = db.run(&["push", remote]);
        if out.status.success() {
            return attempt;
        }
        assert_eq!(
            out.status.code(),
            Some(7),
            "push failed for another reason: {}",
            tail(&text(&out.stderr))
        );
        db.ok(&["pull", remote]);
    }
    panic!("a push was never accepted");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pushers_over_two_hub_processes_lose_nothing() {
    let h = FolderHub::start(&[]);
    // A second hub process over the same storage.
    let h2 = HubProcess::start(&h.hub.storage, &[], &[]);
    create_project(&h.hub.url, &h.admin, "acme", "shared").await;
    const AGENTS: usize = 4;
    const ROUNDS: usize = 3;
    let mut dbs = Vec::new();
    for i in 0..AGENTS {
        let hub_url = if i % 2 == 0 { &h.hub.url } else { &h2.url };
        let db = Db {
            path: h.dir.path().join(format!("agent{i}")),
            token: Some(h.admin.clone()),
        };
        db.ok(&[
            "remote",
            "add",
            "hub",
            &format!("{hub_url}/acme/shared"),
            "--token",
            &h.admin,
        ]);
        dbs.push(db);
    }
    let handles: Vec<_> = dbs
        .into_iter()
        .enumerate()
        .map(|(i, db)| {
            std::thread::spawn(move || {
                for r in 0..ROUNDS {
                    db.ok(&[
                        "kv",
                        "put",
                        &format!("agent{i}:round{r}"),
                        &format!("{}", i * 100 + r),
                    ]);
                    push_until_accepted(&db, "hub");
                }
                db
            })
        })
        .collect();
    let dbs: Vec<Db> = handles.into_iter().map(|t| t.join().unwrap()).collect();
    // Everyone pulls; every agent's every write is there exactly once, with its value.
    let mut want: Vec<String> = (0..AGENTS)
        .flat_map(|i| (0..ROUNDS).map(move |r| format!("agent{i}:round{r}")))
        .collect();
    want.sort();
    for db in &dbs {
        db.ok(&["pull", "hub"]);
        assert_eq!(db.keys(), want);
    }
    let fresh = h.dir.path().join("fresh");
    let out = Command::new(strata_bin())
        .env("STRATA_TOKEN", &h.admin)
        .args(["clone", &format!("{}/acme/shared", h2.url)])
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(out.status.success(), "clone: {}", text(&out.stderr));
    let f = Db {
        path: fresh,
        token: None,
    };
    let list = f.json(&["kv", "list"]);
    let got: Vec<(String, i64)> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_string(),
                e["value"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut expected: Vec<(String, i64)> = (0..AGENTS)
        .flat_map(|i| {
            (0..ROUNDS).map(move |r| (format!("agent{i}:round{r}"), (i * 100 + r) as i64))
        })
        .collect();
    expected.sort();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_damaged_in_the_hubs_storage_is_caught_by_the_pulling_client() {
    let h = FolderHub::start(&[]);
    let url = h.hub.url.clone();
    create_project(&url, &h.admin, "acme", "app").await;
    let remote_url = format!("{url}/acme/app");
    let a = Db {
        path: h.dir.path().join("a"),
        token: Some(h.admin.clone()),
    };
    a.ok(&["remote", "add", "hub", &remote_url, "--token", &h.admin]);
    a.ok(&["kv", "put", "fact", "\"the original value\""]);
    a.ok(&["push", "hub"]);
    // Damage every blob the push stored, keeping its size.
    let blobs = files_under(&h.dir.path().join("storage/blobs"));
    let deltas: Vec<&String> = blobs.iter().filter(|f| f.contains("/deltas/")).collect();
    assert!(!deltas.is_empty(), "{blobs:?}");
    for f in deltas {
        let p = h.dir.path().join("storage/blobs").join(f);
        let mut perms = std::fs::metadata(&p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&p, perms).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&p, bytes).unwrap();
    }
    let b = Db {
        path: h.dir.path().join("b"),
        token: Some(h.admin.clone()),
    };
    b.ok(&["remote", "add", "hub", &remote_url, "--token", &h.admin]);
    let out = b.run(&["pull", "hub"]);
    assert!(!out.status.success(), "a damaged blob was pulled");
    let err = text(&out.stderr).to_lowercase();
    assert!(
        err.contains("corrupt") || err.contains("sha") || err.contains("checksum"),
        "{}",
        tail(&err)
    );
    // Nothing was applied.
    assert!(b.keys().is_empty());
}

/// `n` characters that zstd cannot shrink much (base64 of a SHA-256 chain seeded by `seed`).
fn noise(seed: &str, n: usize) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let mut raw = Vec::with_capacity(n);
    let mut h = Sha256::digest(seed.as_bytes());
    while raw.len() * 4 / 3 < n + 4 {
        raw.extend_from_slice(&h);
        h = Sha256::digest(h);
    }
    let mut s = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&raw);
    s.truncate(n);
    s
}

/// `strata push --all hub` from `db`, in the background.
fn spawn_push(db: &Db) -> std::process::Child {
    Command::new(strata_bin())
        .env_remove("STRATA_DB")
        .env_remove("STRATA_TOKEN")
        .arg("--db")
        .arg(&db.path)
        .args(["push", "--all", "hub"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// (version, entries, kind) of every version of `branch`, newest first.
fn versions(db: &Db, branch: &str) -> Vec<(u64, u64, String)> {
    db.json(&["-b", branch, "log"])["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["entries"].as_u64().unwrap(),
                v["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_hub_during_cli_pushes_then_the_rerun_converges_exactly_once() {
    use sha2::{Digest, Sha256};
    use std::time::{Duration, Instant};
    use strata_remote::{encode_segment, Remote, RemoteExt, RemotePath};

    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage").to_string_lossy().into_owned();
    let admin = create_key(&storage, &[], true, "admin");
    let mut hub = HubProcess::start(&storage, &[], &[]);
    // Restarts listen on the same address, so the URL the databases hold keeps working.
    let listen = hub.url.trim_start_matches("http://").to_string();
    create_project(&hub.url, &admin, "acme", "crash").await;
    let remote_url = format!("{}/acme/crash", hub.url);
    let src = Db {
        path: dir.path().join("src"),
        token: Some(admin.clone()),
    };
    let other = Db {
        path: dir.path().join("other"),
        token: Some(admin.clone()),
    };
    // The source gives up quickly while the hub is down (one HTTP retry inside each sync retry).
    src.ok(&[
        "remote",
        "add",
        "hub",
        &remote_url,
        "--token",
        &admin,
        "-o",
        "max_retries=1",
    ]);
    other.ok(&["remote", "add", "hub", &remote_url, "--token", &admin]);
    let branches: Vec<String> = (0..4).map(|i| format!("agent-{i}")).collect();
    for b in &branches {
        src.ok(&["branch", "create", b]);
    }
    // Each round: three versions of ~90 KB incompressible values on each of four branches, then
    // `push --all` (one upload and one compare-and-swap per branch). Round 0 runs undisturbed to
    // time a push; later rounds kill the hub with SIGKILL at spread fractions of that time. In odd
    // rounds the hub stays down until the push gives up; in even rounds it is back at once, so the
    // push's own retries may reach it. Either way the push is then run again.
    const ROUNDS: usize = 6;
    let mut push_time = Duration::ZERO;
    let mut cut = 0;
    for round in 0..ROUNDS {
        for (i, b) in branches.iter().enumerate() {
            for j in 0..3 {
                let v = format!("\"{}\"", noise(&format!("{round}/{i}/{j}"), 90_000));
                src.ok(&["-b", b, "kv", "put", &format!("r{round}:k{j}"), &v]);
            }
        }
        let start = Instant::now();
        let mut push = spawn_push(&src);
        if round == 0 {
            let out = push.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", tail(&text(&out.stderr)));
            push_time = start.elapsed();
        } else {
            let at = push_time.mul_f64(round as f64 / ROUNDS as f64);
            std::thread::sleep(at.saturating_sub(start.elapsed()));
            let running = push.try_wait().unwrap().is_none();
            hub.kill();
            if round % 2 == 0 {
                hub = HubProcess::start_listening(&storage, &[], &listen, &[], None);
            }
            let out = push.wait_with_output().unwrap();
            for s in [&out.stdout, &out.stderr] {
                assert!(!text(s).contains(&admin), "the token shows: {}", text(s));
            }
            if running && !out.status.success() {
                cut += 1;
            }
            if round % 2 == 1 {
                hub = HubProcess::start_listening(&storage, &[], &listen, &[], None);
            }
            // The re-run converges (a push that died after moving a cursor completes).
            src.ok(&["push", "--all", "hub"]);
        }
        for b in &branches {
            other.ok(&["-b", b, "pull", "hub", b]);
        }
    }
    assert!(
        cut >= 1,
        "only {cut} pushes were cut off by a kill (a push took {push_time:?}): the test did not test"
    );

    // Every branch is in sync, at the source's own version: each version went up exactly once.
    let remote = http_remote(&hub.url, "acme/crash", Some(&admin));
    for b in &branches {
        let st = src.json(&["-b", b, "status", "hub"])["branches"][0].clone();
        for field in ["ahead_versions", "behind_versions"] {
            assert_eq!(st[field], 0, "{b} {field}: {st}");
        }
        let local = versions(&src, b)[0].0;
        assert_eq!(st["remote_version"], local, "{b}: {st}");
        // The remote chain is whole and every blob it names verifies.
        let cursor = remote
            .read_cursor(&RemotePath::parse(&format!("branches/{}", encode_segment(b))).unwrap())
            .await
            .unwrap()
            .expect("a branch cursor");
        let c: Value = serde_json::from_slice(&cursor.value).unwrap();
        assert_eq!(c["version"], local, "{b}: {c}");
        let mut refs: Vec<&Value> = Vec::new();
        let mut at = 0;
        if c["snapshot"].is_object() {
            refs.push(&c["snapshot"]);
            at = c["snapshot"]["to"].as_u64().unwrap();
        }
        for d in c["deltas"].as_array().unwrap() {
            assert_eq!(
                d["from"].as_u64().unwrap(),
                at,
                "{b}: a gap or overlap: {c}"
            );
            at = d["to"].as_u64().unwrap();
            refs.push(d);
        }
        assert_eq!(at, local, "{b}: the chain ends at {at}: {c}");
        for r in refs {
            let p = RemotePath::parse(r["path"].as_str().unwrap()).unwrap();
            let bytes = remote.get_bytes(&p).await.unwrap();
            assert_eq!(bytes.len() as u64, r["bytes"].as_u64().unwrap(), "{p}");
            assert_eq!(hex::encode(Sha256::digest(&bytes)), r["sha256"], "{p}");
        }
    }
    // The database that pulled along and a fresh clone hold exactly the source's entries; the
    // clone holds its versions one for one.
    let clone = dir.path().join("clone");
    let out = Command::new(strata_bin())
        .env("STRATA_TOKEN", &admin)
        .args(["clone", &remote_url])
        .arg(&clone)
        .output()
        .unwrap();
    assert!(out.status.success(), "clone: {}", tail(&text(&out.stderr)));
    let clone = Db {
        path: clone,
        token: Some(admin.clone()),
    };
    for b in &branches {
        other.ok(&["-b", b, "pull", "hub", b]);
        let want = src.json(&["-b", b, "kv", "list"])["entries"].clone();
        assert_eq!(want.as_array().unwrap().len(), ROUNDS * 3, "{b}");
        assert_eq!(other.json(&["-b", b, "kv", "list"])["entries"], want, "{b}");
        assert_eq!(clone.json(&["-b", b, "kv", "list"])["entries"], want, "{b}");
        assert_eq!(versions(&clone, b), versions(&src, b), "{b}");
    }
}
