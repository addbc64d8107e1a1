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

async fn metric(url: &str, name: &str) -> f64 {
    let body = client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .parse()
        .unwrap()
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
