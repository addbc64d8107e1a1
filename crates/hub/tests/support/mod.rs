//! Real `stratahub` processes on 127.0.0.1 port 0 for the tests, and helpers to talk to them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use strata_remote_http::HttpRemote;

/// The hub binary under test.
pub const HUB: &str = env!("CARGO_BIN_EXE_stratahub");

/// The `strata` CLI, built beside `stratahub` (`cargo test --workspace` builds it; a focused run
/// builds it here when it is missing).
pub fn strata_bin() -> std::path::PathBuf {
    let p = Path::new(HUB).with_file_name("strata");
    if !p.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-p", "strata-cli", "--bin", "strata"])
            .status()
            .expect("cargo build strata");
        assert!(st.success(), "building the strata CLI failed");
    }
    p
}

/// A running hub, stopped (by its own PID) when dropped.
pub struct HubProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub storage: String,
    pub storage_options: Vec<String>,
}

impl HubProcess {
    /// Starts `stratahub serve` over `storage` on a free port and waits until it listens.
    pub fn start(storage: &str, storage_options: &[String], extra: &[&str]) -> HubProcess {
        HubProcess::start_logging(storage, storage_options, extra, None)
    }

    /// Like [`start`](Self::start), with debug logs written to `log` (for "no secret in the logs").
    pub fn start_logging(
        storage: &str,
        storage_options: &[String],
        extra: &[&str],
        log: Option<&Path>,
    ) -> HubProcess {
        HubProcess::start_listening(storage, storage_options, "127.0.0.1:0", extra, log)
    }

    /// Starts `stratahub serve` over `storage` on `listen` (a restart on the port a killed hub
    /// used, so that remotes naming its URL reach the new one).
    pub fn start_listening(
        storage: &str,
        storage_options: &[String],
        listen: &str,
        extra: &[&str],
        log: Option<&Path>,
    ) -> HubProcess {
        let mut cmd = Command::new(HUB);
        cmd.args(["serve", "--storage", storage, "--listen", listen]);
        for o in storage_options {
            cmd.args(["-o", o]);
        }
        cmd.args(extra).stdout(Stdio::piped());
        match log {
            Some(path) => {
                cmd.env("RUST_LOG", "debug")
                    .stderr(std::fs::File::create(path).expect("create the hub's log"));
            }
            None => {
                cmd.env(
                    "RUST_LOG",
                    std::env::var("HUB_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stderr(Stdio::inherit());
            }
        }
        let mut child = cmd.spawn().expect("start stratahub");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the hub's first line");
        let url = line
            .trim()
            .strip_prefix("stratahub listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from stratahub: {line:?}"))
            .to_string();
        HubProcess {
            child,
            url,
            storage: storage.to_string(),
            storage_options: storage_options.to_vec(),
        }
    }

    /// Kills the process at once (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (graceful shutdown) and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let st = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(st.success());
        self.child.wait().unwrap()
    }

    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `stratahub keys create` on a storage: the key printed.
pub fn create_key(storage: &str, storage_options: &[String], admin: bool, name: &str) -> String {
    let mut cmd = Command::new(HUB);
    cmd.args(["keys", "create", "--storage", storage, "--name", name]);
    for o in storage_options {
        cmd.args(["-o", o]);
    }
    if admin {
        cmd.arg("--admin");
    }
    let out = cmd.output().expect("stratahub keys create");
    assert!(
        out.status.success(),
        "keys create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("shub_"), "{key}");
    key
}

/// A hub over a fresh folder, its admin key and the folder.
pub struct FolderHub {
    pub dir: tempfile::TempDir,
    pub hub: HubProcess,
    pub admin: String,
}

impl FolderHub {
    /// The hub's debug log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hub.log")).unwrap_or_default()
    }

    pub fn start(extra: &[&str]) -> FolderHub {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage").to_string_lossy().into_owned();
        let admin = create_key(&storage, &[], true, "admin");
        let log = dir.path().join("hub.log");
        let hub = HubProcess::start_logging(&storage, &[], extra, Some(&log));
        FolderHub { dir, hub, admin }
    }
}

/// A reqwest client.
pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// POST /v1/projects as `key`; panics unless created.
pub async fn create_project(url: &str, key: &str, owner: &str, name: &str) {
    let resp = client()
        .post(format!("{url}/v1/projects"))
        .bearer_auth(key)
        .body(format!(r#"{{"owner":"{owner}","name":"{name}"}}"#))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 201, "create project: {body}");
}

/// POST /v1/keys as `admin`: (id, key).
pub async fn api_key(url: &str, admin: &str, name: &str) -> (String, String) {
    let resp = client()
        .post(format!("{url}/v1/keys"))
        .bearer_auth(admin)
        .body(format!(r#"{{"name":"{name}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v: serde_json::Value = resp.json_value().await;
    (
        v["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}

/// PUT a member.
pub async fn set_member(url: &str, owner_key: &str, project: &str, key_id: &str, body: &str) {
    let resp = client()
        .put(format!("{url}/v1/projects/{project}/members/{key_id}"))
        .bearer_auth(owner_key)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(status, 200, "set member: {}", resp.text().await.unwrap());
}

/// An HttpRemote for `url/project` with `key`.
pub fn http_remote(url: &str, project: &str, key: Option<&str>) -> Arc<HttpRemote> {
    let mut opts = BTreeMap::new();
    if let Some(k) = key {
        opts.insert("token".to_string(), k.to_string());
    }
    opts.insert("max_retries".to_string(), "2".to_string());
    Arc::new(HttpRemote::open(&format!("{url}/{project}"), &opts).unwrap())
}

/// Reads JSON from a response.
pub trait JsonValue {
    async fn json_value(self) -> serde_json::Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        let b = self.bytes().await.unwrap();
        serde_json::from_slice(&b)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&b)))
    }
}

/// Files under a folder (relative paths), for "nothing written" checks.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The value of the metric line `name` in the hub's `/metrics`.
pub async fn metric(url: &str, name: &str) -> f64 {
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
