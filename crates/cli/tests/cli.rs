//! Runs the built `strata` binary against databases in temporary folders, and runs the data,
//! branch, history and bundle scenarios a second time with `--db strata://HOST:PORT` against a real
//! `stratadb-server` on 127.0.0.1 port 0 (the `server_*` tests, plus auth and local-only refusals).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::{json, Value};

/// A database folder inside a temporary directory, or a server whose data dir is that folder.
struct Db {
    dir: tempfile::TempDir,
    server: Option<Server>,
}

/// A `stratadb-server` process, killed by its PID on drop.
struct Server {
    child: Child,
    url: String,
    /// The key every command passes (`--api-key`); `None` for an `--open` server.
    key: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server binary, built beside `strata` by `cargo test --workspace` (scripts/test.sh). Missing
/// is a failure, never a skip.
fn server_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_strata")).with_file_name("stratadb-server");
    assert!(
        p.is_file(),
        "{} is missing: build it first (cargo build -p strata-server) or run cargo test --workspace",
        p.display()
    );
    p
}

/// Starts a server on `data` (port 0) with extra arguments; returns it once it listens.
fn start_server(data: &Path, args: &[&str], key: Option<String>) -> Server {
    let mut child = Command::new(server_bin())
        .arg("--data-dir")
        .arg(data)
        .args(["--port", "0"])
        .args(args)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start stratadb-server");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first server line {line:?}"))
        .to_string();
    std::thread::spawn(move || for _ in out.lines() {});
    Server {
        child,
        url: format!("strata://{addr}"),
        key,
    }
}

/// Adds an API key to a server's data dir with `stratadb-server keys add`.
fn add_key(data: &Path, name: &str, read: &[&str], write: &[&str]) -> String {
    let mut cmd = Command::new(server_bin());
    cmd.args(["keys", "add", "--data-dir"])
        .arg(data)
        .args(["--name", name]);
    for r in read {
        cmd.args(["--read", r]);
    }
    for w in write {
        cmd.args(["--write", w]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

impl Db {
    /// A new database (`strata --db DIR init`).
    fn new() -> Db {
        let db = Db::bare();
        db.ok(&["init"]);
        db
    }

    /// A temporary folder with no database yet.
    fn bare() -> Db {
        Db {
            dir: tempfile::tempdir().unwrap(),
            server: None,
        }
    }

    /// A new database served by `stratadb-server` with a read-write key for every branch; commands
    /// reach it with `--db strata://...` and `--api-key`.
    fn server() -> Db {
        let mut db = Db::bare();
        let data = db.path();
        let key = add_key(&data, "cli", &["*"], &["*"]);
        db.server = Some(start_server(&data, &[], Some(key)));
        db
    }

    /// Another new database of the same kind (folder or server).
    fn another(&self) -> Db {
        if self.is_server() {
            Db::server()
        } else {
            Db::new()
        }
    }

    fn is_server(&self) -> bool {
        self.server.is_some()
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = strata();
        match &self.server {
            None => c.arg("--db").arg(self.path()),
            Some(s) => {
                c.args(["--db", &s.url]);
                if let Some(k) = &s.key {
                    c.args(["--api-key", k]);
                }
                &mut c
            }
        };
        c.args(args).output().unwrap()
    }

    /// Runs, asserts success, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Runs with `--json`, asserts success and the envelope, returns its `data`.
    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        data(parse(&self.ok(&a)))
    }

    /// Runs with `--json`, asserts the exit code and the error envelope, returns its `error`.
    fn fail_json(&self, args: &[&str], code: i32) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        error(parse(&text(&self.fail(&a, code).stdout)), code)
    }

    /// Runs, asserts the exit code, returns the output.
    fn fail(&self, args: &[&str], code: i32) -> Output {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: stdout {} stderr {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(err.starts_with("error: "), "{args:?}: stderr {err:?}");
        out
    }
}

fn strata() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.env_remove("STRATA_DB")
        .env_remove("RUST_LOG")
        .env_remove("STRATA_API_KEY");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not one JSON document ({e}): {s:?}"))
}

/// The `data` of a success envelope.
fn data(doc: Value) -> Value {
    assert_eq!(doc["ok"], true, "not a success envelope: {doc}");
    doc["data"].clone()
}

/// The `error` of a failure envelope, checked against the exit code.
fn error(doc: Value, code: i32) -> Value {
    assert_eq!(doc["ok"], false, "not an error envelope: {doc}");
    assert_eq!(doc["error"]["exit"], code, "{doc}");
    assert!(doc["error"]["code"].is_string(), "{doc}");
    assert!(doc["error"]["message"].is_string(), "{doc}");
    doc["error"].clone()
}

/// Each scenario runs twice: on a folder, and through a server (`server_*`).
macro_rules! folder_and_server {
    ($($name:ident, $server:ident => $scenario:ident;)*) => {$(
        #[test]
        fn $name() {
            $scenario(Db::new());
        }

        #[test]
        fn $server() {
            $scenario(Db::server());
        }
    )*};
}

folder_and_server! {
    kv_put_get_list_del, server_kv_put_get_list_del => kv_put_get_list_del_on;
    json_documents_and_paths, server_json_documents_and_paths => json_documents_and_paths_on;
    events_append_and_read, server_events_append_and_read => events_append_and_read_on;
    state_init_and_cas, server_state_init_and_cas => state_init_and_cas_on;
    branch_create_fork_list_diff_info_delete, server_branch_create_fork_list_diff_info_delete => branch_create_fork_list_diff_info_delete_on;
    merge_lww_and_strict, server_merge_lww_and_strict => merge_lww_and_strict_on;
    log_and_history, server_log_and_history => log_and_history_on;
    bundle_export_verify_import_round_trip, server_bundle_export_verify_import_round_trip => bundle_export_verify_import_round_trip_on;
}

fn kv_put_get_list_del_on(db: Db) {
    db.ok(&[
        "kv",
        "put",
        "config",
        r#"{"model":"gpt-4","temperature":0.7}"#,
    ]);
    db.ok(&["kv", "put", "name", "plain words"]);
    db.ok(&["kv", "put", "--string", "n", "42"]);
    db.ok(&["kv", "put", "neg", "-5"]);
    let put = db.json(&["kv", "put", "task:1", "true"]);
    assert_eq!(put["version"], 5);
    assert_eq!(put["key"], "task:1");

    assert_eq!(
        db.json(&["kv", "get", "config"]),
        json!({"model": "gpt-4", "temperature": 0.7})
    );
    assert_eq!(db.json(&["kv", "get", "name"]), json!("plain words"));
    assert_eq!(db.json(&["kv", "get", "n"]), json!("42"));
    assert_eq!(db.json(&["kv", "get", "neg"]), json!(-5));
    assert_eq!(
        parse(&db.ok(&["kv", "get", "config"])),
        json!({"model": "gpt-4", "temperature": 0.7})
    );

    let list = db.json(&["kv", "list"]);
    let keys: Vec<&str> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["config", "n", "name", "neg", "task:1"]);
    assert_eq!(
        db.json(&["kv", "list", "ta"])["entries"],
        json!([{"key": "task:1", "value": true}])
    );
    assert!(db.ok(&["kv", "list"]).contains("name = \"plain words\""));

    db.ok(&["kv", "del", "name"]);
    let out = db.fail(&["kv", "get", "name"], 3);
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("\"name\""));
    db.fail(&["kv", "del", "name"], 3);
    let e = db.fail_json(&["kv", "get", "name"], 3);
    assert_eq!(e["code"], "not_found");

    // Other spaces are separate.
    db.ok(&["-s", "other", "kv", "put", "config", "1"]);
    assert_eq!(
        db.json(&["--space", "other", "kv", "list"])["entries"],
        json!([{"key": "config", "value": 1}])
    );
    db.fail(&["-s", "_sync", "kv", "put", "x", "1"], 2);
}

#[test]
fn db_from_environment() {
    let db = Db::new();
    let out = strata()
        .env("STRATA_DB", db.path())
        .args(["kv", "put", "k", "1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(db.json(&["kv", "get", "k"]), json!(1));
}

fn json_documents_and_paths_on(db: Db) {
    db.ok(&[
        "json",
        "put",
        "notes/research.md",
        r#"{"title":"Research","tags":["a","b"]}"#,
    ]);
    assert_eq!(
        db.json(&["json", "get", "notes/research.md", "--path", "/tags/1"]),
        json!("b")
    );
    db.ok(&[
        "json",
        "set",
        "notes/research.md",
        "/meta/author",
        "agent-a",
    ]);
    db.ok(&["json", "set", "notes/research.md", "/tags/-", r#""c""#]);
    assert_eq!(
        db.json(&["json", "get", "notes/research.md"]),
        json!({"title": "Research", "tags": ["a", "b", "c"], "meta": {"author": "agent-a"}})
    );
    assert_eq!(
        db.json(&["json", "get", "notes/research.md", "--path", "/meta"]),
        json!({"author": "agent-a"})
    );
    db.ok(&["json", "set", "new-doc", "/a/b", "1"]);
    assert_eq!(db.json(&["json", "get", "new-doc"]), json!({"a": {"b": 1}}));
    assert_eq!(
        db.json(&["json", "list", "new"])["entries"],
        json!([{"key": "new-doc", "value": {"a": {"b": 1}}}])
    );

    db.fail(
        &["json", "get", "notes/research.md", "--path", "/missing"],
        3,
    );
    db.fail(&["json", "get", "nope"], 3);
    db.fail(&["json", "get", "nope", "--path", "/a"], 3);
    db.ok(&["json", "del", "new-doc"]);
    db.fail(&["json", "del", "new-doc"], 3);
}

fn events_append_and_read_on(db: Db) {
    let first = db.json(&["event", "append", "task_completed", r#"{"task":1}"#]);
    assert_eq!(first["seq"], 1);
    db.ok(&["event", "append", "note", "hello"]);
    let third = db.json(&["event", "append", "task_completed", r#"{"task":2}"#]);
    assert_eq!(third["seq"], 3);

    let all = db.json(&["event", "read"])["events"].clone();
    assert!(all[0]["id"].is_string(), "{all}");
    assert!(
        all[0]["timestamp"].as_str().unwrap().ends_with('Z'),
        "{all}"
    );
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(all[1]["type"], "note");
    assert_eq!(all[1]["payload"], "hello");
    assert_eq!(all[0]["seq"], 1);

    let typed = db.json(&["event", "read", "--type", "task_completed"])["events"].clone();
    let seqs: Vec<u64> = typed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 3]);
    let from =
        db.json(&["event", "read", "--from", "2", "--type", "task_completed"])["events"].clone();
    assert_eq!(from.as_array().unwrap().len(), 1);
    assert_eq!(from[0]["payload"], json!({"task": 2}));
    let limited = db.json(&["event", "read", "--from", "2", "--limit", "1"])["events"].clone();
    assert_eq!(limited.as_array().unwrap().len(), 1);
    assert_eq!(limited[0]["seq"], 2);
    assert!(db.ok(&["event", "read"]).contains("task_completed"));
}

fn state_init_and_cas_on(db: Db) {
    let init = db.json(&["state", "init", "phase", "research"]);
    assert_eq!(init["initialized"], true);
    let again = db.json(&["state", "init", "phase", "other"]);
    assert_eq!(again["initialized"], false);
    assert_eq!(again["current"], "research");
    assert_eq!(db.json(&["state", "get", "phase"]), json!("research"));

    let cas = db.json(&[
        "state",
        "cas",
        "phase",
        "--expected",
        "research",
        "experiment",
    ]);
    assert_eq!(cas["swapped"], true);
    assert_eq!(db.json(&["state", "get", "phase"]), json!("experiment"));

    // A failed swap: exit 5, the current value reported, nothing changed.
    let doc = db.fail_json(&["state", "cas", "phase", "--expected", "research", "x"], 5);
    assert_eq!(doc["code"], "cas_failed");
    assert_eq!(doc["detail"]["swapped"], false);
    assert_eq!(doc["detail"]["current"], "experiment");
    let out = db.fail(&["state", "cas", "phase", "--absent", "x"], 5);
    assert!(out.stdout.is_empty());
    assert_eq!(db.json(&["state", "get", "phase"]), json!("experiment"));

    db.ok(&["state", "cas", "counter", "--absent", "0"]);
    db.ok(&["state", "cas", "counter", "--expected", "0", "1"]);
    assert_eq!(db.json(&["state", "get", "counter"]), json!(1));
    db.ok(&["state", "cas", "counter", "--expected", "1", "--delete"]);
    db.fail(&["state", "get", "counter"], 3);
    // --expected or --absent is required.
    assert_eq!(
        db.run(&["state", "cas", "counter", "1"]).status.code(),
        Some(2)
    );
    db.ok(&["state", "set", "counter", "5"]);
    db.ok(&["state", "del", "counter"]);
    db.fail(&["state", "del", "counter"], 3);
}

fn branch_create_fork_list_diff_info_delete_on(db: Db) {
    db.ok(&["kv", "put", "config", r#"{"t":0.7}"#]);
    db.ok(&["kv", "put", "task:1", "done"]);
    db.ok(&["kv", "put", "task:2", "done"]);
    db.json(&["branch", "create", "empty"]);
    let fork = db.json(&["branch", "fork", "main", "experiment"]);
    assert_eq!(fork["parent"], "main");
    assert_eq!(fork["fork_version"], 3);
    let old = db.json(&["branch", "fork", "main@1", "old"]);
    assert_eq!(old["head"], 1);
    assert_eq!(
        db.json(&["-b", "old", "kv", "list"])["entries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    db.ok(&["-b", "experiment", "kv", "put", "task:3", "new"]);
    db.ok(&["-b", "experiment", "kv", "del", "task:2"]);
    db.ok(&[
        "--branch",
        "experiment",
        "kv",
        "put",
        "config",
        r#"{"t":0.9}"#,
    ]);

    let list = db.json(&["branch", "list"]);
    let names: Vec<&str> = list["branches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["branch"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["empty", "experiment", "main", "old"]);
    let human = db.ok(&["branch", "list"]);
    assert!(human.starts_with("NAME"), "{human}");
    assert!(human.contains("main@3"), "{human}");

    let d = db.json(&["branch", "diff", "main", "experiment"]);
    assert_eq!(
        d["counts"],
        json!({"added": 1, "removed": 1, "modified": 1})
    );
    assert_eq!(d["spaces"][0]["space"], "default");
    assert_eq!(d["spaces"][0]["added"][0]["key"], "task:3");
    assert_eq!(d["spaces"][0]["added"][0]["b"], "new");
    assert_eq!(d["spaces"][0]["modified"][0]["a"], json!({"t": 0.7}));
    let human = db.ok(&["branch", "diff", "main", "experiment"]);
    assert!(human.contains("+ kv    task:3 = \"new\""), "{human}");
    assert!(human.contains("- kv    task:2"), "{human}");
    assert!(
        human.contains("~ kv    config: {\"t\":0.7} -> {\"t\":0.9}"),
        "{human}"
    );
    assert_eq!(db.json(&["branch", "diff", "main", "main"])["empty"], true);
    assert_eq!(
        db.json(&["branch", "diff", "experiment@3", "main"])["empty"],
        true
    );

    let info = db.json(&["branch", "info", "experiment"]);
    assert_eq!(info["head"], 6);
    assert_eq!(info["spaces"], json!(["default"]));
    assert_eq!(
        db.json(&["-b", "experiment", "branch", "info"])["branch"],
        "experiment"
    );

    // `experiment` has versions main lacks: refused without --force, deleting nothing (the server
    // answers the merged check with `contains`). `old` holds no versions of its own: main contains
    // it, so it deletes without --force.
    let e = db.fail_json(&["branch", "delete", "experiment"], 2);
    assert_eq!(e["code"], "unmerged_branch", "{e}");
    assert_eq!(db.json(&["branch", "info", "experiment"])["head"], 6);
    db.ok(&["branch", "delete", "old"]);
    db.fail(&["branch", "info", "old"], 3);
    db.fail(&["branch", "create", "main"], 1);
}

fn merge_lww_and_strict_on(db: Db) {
    db.ok(&["kv", "put", "task:1", "start"]);
    db.ok(&["branch", "fork", "main", "a"]);
    db.ok(&["branch", "fork", "main", "b"]);
    db.ok(&["-b", "a", "kv", "put", "task:1", "approach A"]);
    db.ok(&["-b", "b", "kv", "put", "task:1", "approach B"]);
    db.ok(&["-b", "b", "kv", "put", "task:5", "only b"]);

    let m = db.json(&["branch", "merge", "a", "main", "--strategy", "strict"]);
    assert_eq!(m["merged"], true);
    assert_eq!(m["applied"], 1);
    // Without -m the merge version says what it merged.
    let newest = db.json(&["log", "--limit", "1"])["versions"][0].clone();
    assert_eq!(newest["message"], "merge a@2");
    assert_eq!(db.json(&["kv", "get", "task:1"]), json!("approach A"));

    // Strict: exit 4, the conflict list on stdout, nothing written.
    let doc = db.fail_json(&["branch", "merge", "b", "main", "--strategy", "strict"], 4);
    assert_eq!(doc["code"], "merge_conflict");
    let doc = &doc["detail"];
    assert_eq!(doc["merged"], false);
    assert_eq!(
        doc["conflicts"],
        json!([{"space": "default", "kind": "kv", "key": "task:1",
                "ancestor": "start", "source": "approach B", "target": "approach A"}])
    );
    assert_eq!(doc["conflict_branch"], Value::Null);
    db.fail(&["kv", "get", "task:5"], 3);
    let out = db.fail(&["branch", "merge", "b", "main", "--strategy", "strict"], 4);
    assert!(text(&out.stdout).contains("CONFLICT default/kv task:1"));

    // --conflict-branch saves the conflicts to a new branch (through a server: by the server).
    {
        let doc = db.fail_json(
            &[
                "branch",
                "merge",
                "b",
                "main",
                "--strategy",
                "strict",
                "--conflict-branch",
                "conflicts/b",
            ],
            4,
        );
        assert_eq!(doc["detail"]["conflict_branch"], "conflicts/b");
        let saved =
            db.json(&["-b", "conflicts/b", "-s", "conflicts", "kv", "list"])["entries"].clone();
        assert_eq!(saved[0]["key"], "default/kv/task:1");
        assert_eq!(saved[0]["value"]["source"], "approach B");
        assert_eq!(saved[0]["value"]["target"], "approach A");
    }
    db.fail(
        &["branch", "merge", "b", "main", "--conflict-branch", "x"],
        2,
    );

    // Last writer wins: the source's value wins. `-m` and `--author` name the merge version.
    let m = db.json(&[
        "branch",
        "merge",
        "b",
        "main",
        "--strategy",
        "lww",
        "-m",
        "take approach B",
        "--author",
        "reviewer",
    ]);
    assert_eq!(m["conflicts_resolved"], 1);
    let newest = db.json(&["log", "--limit", "1"])["versions"][0].clone();
    assert_eq!(newest["kind"], "merge");
    assert_eq!(newest["message"], "take approach B");
    assert_eq!(newest["author"], "reviewer");
    assert_eq!(db.json(&["kv", "get", "task:1"]), json!("approach B"));
    assert_eq!(db.json(&["kv", "get", "task:5"]), json!("only b"));
    assert!(db
        .ok(&["branch", "merge", "b", "main"])
        .contains("already up to date"));
    db.fail(&["branch", "merge", "nope", "main"], 3);
}

fn log_and_history_on(db: Db) {
    db.ok(&["kv", "put", "k", "1"]);
    db.ok(&["kv", "put", "k", "2"]);
    db.ok(&["kv", "del", "k"]);
    db.ok(&["kv", "put", "k", "3"]);
    db.ok(&["event", "append", "e", "payload"]);

    let log = db.json(&["log"]);
    let versions: Vec<u64> = log["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [5, 4, 3, 2, 1]);
    assert_eq!(log["versions"][0]["kind"], "commit");
    assert_eq!(
        db.json(&["log", "--limit", "2"])["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(db.ok(&["log"]).starts_with("VERSION"));

    let h = db.json(&["history", "k"]);
    let values: Vec<Value> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].clone())
        .collect();
    assert_eq!(values, [json!(3), Value::Null, json!(2), json!(1)]);
    assert!(db.ok(&["history", "k"]).contains("(deleted)"));
    let eh = db.json(&["history", "1", "--kind", "event"]);
    assert_eq!(eh["history"][0]["value"]["payload"], "payload");
    db.fail(&["history", "never"], 3);

    db.ok(&["branch", "fork", "main", "f"]);
    db.ok(&["-b", "f", "kv", "put", "k", "4"]);
    assert_eq!(
        db.json(&["-b", "f", "log"])["versions"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        db.json(&["-b", "f", "history", "k"])["history"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn errors_name_what_is_wrong() {
    let db = Db::new();
    let out = db.fail(&["-b", "nope", "kv", "get", "x"], 3);
    assert!(text(&out.stderr).contains("nope"));
    let out = db.fail(&["-b", "nope", "kv", "put", "x", "1"], 3);
    assert!(text(&out.stderr).contains("nope"));
    db.fail(&["branch", "fork", "nope", "x"], 3);
    db.fail(&["branch", "fork", "main@9", "x"], 3);
    db.fail(&["branch", "diff", "main", "nope"], 3);
    db.fail(&["log", "-b", "nope"], 3);

    let out = db.fail(&["branch", "create", "_x"], 2);
    assert!(text(&out.stderr).contains("_x"));
    db.fail(&["branch", "fork", "main", "_x"], 2);
    db.fail(&["branch", "create", "x@12"], 2);
    assert!(!db
        .json(&["branch", "list", "--all"])
        .to_string()
        .contains("_x"));

    // Usage errors from clap.
    assert_eq!(db.run(&["kv", "put", "only-key"]).status.code(), Some(2));
    assert_eq!(db.run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        db.run(&["branch", "merge", "a", "main", "--strategy", "maybe"])
            .status
            .code(),
        Some(2)
    );
    db.fail(&["history", "x", "--kind", "event"], 2);

    // A file where the database folder should be.
    let file = db.file("plain-file");
    std::fs::write(&file, "x").unwrap();
    let out = strata()
        .arg("--db")
        .arg(&file)
        .args(["kv", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("not a Strata database"));
}

#[test]
fn busy_database_is_a_write_conflict() {
    let db = Db::new();
    db.ok(&["kv", "put", "k", "1"]);
    // Another writer holds SQLite's write lock.
    let conn = rusqlite::Connection::open(db.path().join("strata.db")).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let out = db.fail(&["--busy-timeout", "100", "kv", "put", "k", "2"], 5);
    assert!(
        text(&out.stderr).contains("write conflict"),
        "{}",
        text(&out.stderr)
    );
    conn.execute_batch("ROLLBACK").unwrap();
    db.ok(&["--busy-timeout", "100", "kv", "put", "k", "2"]);
}

#[test]
fn help_for_every_command() {
    let paths: &[&[&str]] = &[
        &[],
        &["kv"],
        &["kv", "put"],
        &["kv", "get"],
        &["kv", "del"],
        &["kv", "list"],
        &["json"],
        &["json", "put"],
        &["json", "get"],
        &["json", "set"],
        &["json", "del"],
        &["json", "list"],
        &["event"],
        &["event", "append"],
        &["event", "read"],
        &["state"],
        &["state", "set"],
        &["state", "get"],
        &["state", "init"],
        &["state", "cas"],
        &["state", "del"],
        &["branch"],
        &["branch", "create"],
        &["branch", "fork"],
        &["branch", "list"],
        &["branch", "delete"],
        &["branch", "diff"],
        &["branch", "merge"],
        &["branch", "info"],
        &["bundle"],
        &["bundle", "export"],
        &["bundle", "import"],
        &["bundle", "verify"],
        &["log"],
        &["history"],
        &["demo"],
    ];
    for p in paths {
        let out = strata().args(*p).arg("--help").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{p:?} --help");
        let s = text(&out.stdout);
        assert!(s.contains("Usage: strata"), "{p:?} --help: {s}");
        assert!(
            s.lines().next().is_some_and(|l| !l.trim().is_empty()),
            "{p:?} --help has no description"
        );
    }
    let top = text(&strata().arg("--help").output().unwrap().stdout);
    assert!(top.contains("Exit codes:"));
    for code in [
        "0  success",
        "2  usage",
        "3  not found",
        "4  strict merge conflicts",
        "5  write conflict",
        "6  corrupt",
    ] {
        assert!(top.contains(code), "top-level help lacks {code:?}");
    }
    assert!(strata().arg("--version").output().unwrap().status.success());
}

fn bundle_file(db: &Db) -> PathBuf {
    db.file("main.branchbundle.tar.zst")
}

fn bundle_export_verify_import_round_trip_on(db: Db) {
    db.ok(&["kv", "put", "config", r#"{"model":"gpt-4"}"#]);
    db.ok(&[
        "json",
        "put",
        "notes/research.md",
        r#"{"title":"Research"}"#,
    ]);
    db.ok(&["event", "append", "task_completed", r#"{"task":1}"#]);
    db.ok(&["state", "set", "phase", "research"]);
    db.ok(&["kv", "put", "task:1", "done"]);
    db.ok(&["kv", "del", "task:1"]);
    let file = bundle_file(&db);
    let f = file.to_str().unwrap();

    let m = db.json(&["bundle", "export", "main", f]);
    assert_eq!(m["branch"], "main");
    assert_eq!(m["to_version"], 6);
    assert!(file.is_file());
    let v = db.json(&["bundle", "verify", f]);
    assert_eq!(v["verified"], true);
    assert_eq!(v["to_version"], 6);
    assert_eq!(v["branchlog_sha256"], m["branchlog_sha256"]);
    assert!(db.ok(&["bundle", "verify", f]).starts_with("ok"));

    // Import into a fresh database: the same contents.
    let other = db.another();
    let rep = other.json(&["bundle", "import", f]);
    assert_eq!(rep["branch"], "main");
    assert_eq!(rep["head"], 6);
    for args in [
        &["kv", "list"][..],
        &["json", "list"],
        &["event", "read"],
        &["state", "get", "phase"],
        &["log"],
    ] {
        let mut a = db.json(args);
        let mut b = other.json(args);
        if args[0] == "log" {
            // Commit kinds differ ("import"); compare the versions and their entry counts.
            let strip = |v: &mut Value| {
                for c in v["versions"].as_array_mut().unwrap() {
                    *c = json!({"version": c["version"], "entries": c["entries"]});
                }
            };
            strip(&mut a);
            strip(&mut b);
        }
        assert_eq!(a, b, "{args:?}");
    }
    // Into another branch name, and a partial range.
    let into = other.json(&["bundle", "import", f, "--into", "copy"]);
    assert_eq!(into["branch"], "copy");
    assert_eq!(
        other.json(&["-b", "copy", "kv", "get", "config"]),
        json!({"model": "gpt-4"})
    );
    let part = db.file("part.branchbundle.tar.zst");
    let pm = db.json(&[
        "bundle",
        "export",
        "main",
        part.to_str().unwrap(),
        "--from",
        "2",
        "--to",
        "4",
    ]);
    assert_eq!(
        (pm["from_version"].clone(), pm["to_version"].clone()),
        (json!(2), json!(4))
    );

    // Missing and damaged bundles.
    db.fail(
        &[
            "bundle",
            "verify",
            db.file("missing.tar.zst").to_str().unwrap(),
        ],
        3,
    );
    db.fail(
        &[
            "bundle",
            "import",
            db.file("missing.tar.zst").to_str().unwrap(),
        ],
        3,
    );
    let bad = db.file("bad.branchbundle.tar.zst");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&bad, &bytes).unwrap();
    db.fail(&["bundle", "verify", bad.to_str().unwrap()], 6);
    db.fail(
        &["bundle", "import", bad.to_str().unwrap(), "--into", "bad"],
        6,
    );
    std::fs::write(&bad, b"not a bundle at all").unwrap();
    db.fail(&["bundle", "verify", bad.to_str().unwrap()], 6);
    db.fail(&["branch", "info", "bad"], 3);
    db.fail(&["bundle", "import", f, "--into", "_mirror"], 2);
}

#[test]
fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let out = strata()
        .args(["demo", "--json", "--dir"])
        .arg(&keep)
        .output()
        .unwrap();
    assert!(out.status.success(), "demo failed: {}", text(&out.stderr));
    let doc = data(parse(&text(&out.stdout)));
    let steps = doc["steps"].as_array().unwrap();
    assert!(steps.len() >= 10, "{doc}");
    let last = steps.last().unwrap();
    assert_eq!(last["result"]["empty"], true, "{last}");
    assert!(Path::new(&keep).join("main.branchbundle.tar.zst").is_file());
    // The kept database is usable from the command line.
    let db_path = keep.join("original");
    let out = strata()
        .arg("--db")
        .arg(&db_path)
        .args(["--json", "kv", "get", "task:3"])
        .output()
        .unwrap();
    assert!(out.status.success());
    // A second run into the same folder is refused.
    assert_eq!(
        strata()
            .args(["demo", "--dir"])
            .arg(&keep)
            .output()
            .unwrap()
            .status
            .code(),
        Some(1)
    );

    let out = strata().arg("demo").output().unwrap();
    assert!(out.status.success(), "demo failed: {}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("== 1. "), "{s}");
    assert!(s.contains("CONFLICT default/kv task:1"), "{s}");
    assert!(s.contains("no differences"), "{s}");
}

/// A server whose own commands use a key for every branch, with two more keys: read-write for
/// `main` only, and read-only; returns the server and those two keys.
fn keyed_server() -> (Db, String, String) {
    let mut db = Db::bare();
    let data = db.path();
    let admin = add_key(&data, "admin", &["*"], &["*"]);
    let rw = add_key(&data, "rw", &["main"], &["main"]);
    let ro = add_key(&data, "ro", &["*"], &[]);
    db.server = Some(start_server(&data, &[], Some(admin)));
    (db, rw, ro)
}

/// Runs `strata --json --db URL ARGS` with `key` as --api-key (or none), from `cwd`.
fn server_cmd(db: &Db, key: Option<&str>, cwd: &Path, args: &[&str]) -> Output {
    let mut c = strata();
    c.current_dir(cwd)
        .args(["--json", "--db", &db.server.as_ref().unwrap().url]);
    if let Some(k) = key {
        c.args(["--api-key", k]);
    }
    c.args(args).output().unwrap()
}

#[test]
fn server_auth_refuses_and_writes_nothing() {
    let (db, rw, ro) = keyed_server();
    db.ok(&["kv", "put", "a", "1"]);
    db.ok(&["branch", "create", "other"]);
    let cwd = tempfile::tempdir().unwrap();
    let refused = |key: Option<&str>, args: &[&str], code: &str| {
        let out = server_cmd(&db, key, cwd.path(), args);
        let e = error(parse(&text(&out.stdout)), 1);
        assert_eq!(e["code"], code, "{args:?} with {key:?}: {e}");
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(err.starts_with("error: "), "{err}");
        for k in [&rw, &ro] {
            assert!(!err.contains(k.as_str()) && !text(&out.stdout).contains(k.as_str()));
        }
        e
    };
    // No key, a bad key (flag or STRATA_API_KEY): refused at the handshake, with what to do.
    let e = refused(None, &["kv", "put", "x", "1"], "unauthorized");
    assert!(e["message"].as_str().unwrap().contains("--api-key"), "{e}");
    refused(Some("not-a-key"), &["kv", "put", "x", "1"], "unauthorized");
    refused(Some("not-a-key"), &["kv", "get", "a"], "unauthorized");
    let out = strata()
        .current_dir(cwd.path())
        .env("STRATA_API_KEY", "still-not-a-key")
        .args(["--json", "--db", &db.server.as_ref().unwrap().url])
        .args(["kv", "put", "x", "1"])
        .output()
        .unwrap();
    assert_eq!(error(parse(&text(&out.stdout)), 1)["code"], "unauthorized");
    // A read-only key writing, and a key outside its branches: forbidden.
    refused(Some(&ro), &["kv", "put", "x", "1"], "forbidden");
    refused(Some(&ro), &["branch", "create", "ro-made"], "forbidden");
    refused(
        Some(&rw),
        &["-b", "other", "kv", "put", "x", "1"],
        "forbidden",
    );
    // The read-only key reads; a good key in STRATA_API_KEY works like --api-key.
    let out = server_cmd(&db, Some(&ro), cwd.path(), &["kv", "get", "a"]);
    assert_eq!(data(parse(&text(&out.stdout))), json!(1));
    let out = strata()
        .current_dir(cwd.path())
        .env("STRATA_API_KEY", &rw)
        .args(["--json", "--db", &db.server.as_ref().unwrap().url])
        .args(["log"])
        .output()
        .unwrap();
    let log = data(parse(&text(&out.stdout)));
    // Nothing written by any refused command: still one version on main, `other` empty, no branch.
    assert_eq!(log["versions"].as_array().unwrap().len(), 1, "{log}");
    db.fail(&["kv", "get", "x"], 3);
    assert_eq!(db.json(&["-b", "other", "log"])["versions"], json!([]));
    db.fail(&["branch", "info", "ro-made"], 3);
    // Nothing appeared in the working folder either.
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
}

#[test]
fn server_url_refused_by_local_only_commands() {
    let db = Db::server();
    let cwd = tempfile::tempdir().unwrap();
    let key = db.server.as_ref().unwrap().key.clone();
    // Only the commands that create a database refuse a server, each saying what to do instead.
    for (args, hint) in [
        (&["init"][..], "stratadb-server --data-dir"),
        (&["clone", "/tmp/x", "here"], "pull REMOTE BRANCH"),
        (&["demo"], "without --db strata://"),
    ] {
        let out = server_cmd(&db, key.as_deref(), cwd.path(), args);
        let e = error(parse(&text(&out.stdout)), 2);
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(e["code"], "local_only", "{args:?}: {e}");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains("strata://"), "{m}");
        assert!(m.contains(hint), "{args:?}: {m}");
    }
    // Nothing was created here, and the server's database is untouched.
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
    assert_eq!(db.json(&["log"])["versions"], json!([]));
    // A server that is not there: a clear error naming the address.
    let out = strata()
        .args(["--json", "--db", "strata://127.0.0.1:1", "kv", "get", "a"])
        .output()
        .unwrap();
    let e = error(parse(&text(&out.stdout)), 1);
    assert!(
        e["message"].as_str().unwrap().contains("127.0.0.1:1"),
        "{e}"
    );
    // A malformed URL is a usage error, not a folder named "strata:".
    let out = strata()
        .current_dir(cwd.path())
        .args(["--json", "--db", "strata://nohost", "kv", "get", "a"])
        .output()
        .unwrap();
    let e = error(parse(&text(&out.stdout)), 2);
    assert!(e["message"].as_str().unwrap().contains("port"), "{e}");
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
}

#[test]
fn server_runs_push_pull_fetch_status_on_its_database() {
    // The server's folder has a remote configured on its machine; clients only name it.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let remote = dir.path().join("remote");
    let local = |args: &[&str]| {
        let out = strata().arg("--db").arg(&data).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    };
    local(&["init"]);
    local(&["remote", "add", "origin", remote.to_str().unwrap()]);
    let key = add_key(&data, "admin", &["*"], &["*"]);
    let db = Db {
        dir: tempfile::tempdir().unwrap(),
        server: Some(start_server(&data, &[], Some(key))),
    };
    db.ok(&["kv", "put", "a", "1"]);
    // One branch's result, as the folder CLI prints it.
    let one = |d: Value| d["branches"][0].clone();
    let pushed = db.json(&["push"]);
    assert_eq!(pushed["remote"], "origin", "{pushed}");
    assert_eq!(one(pushed)["remote_version"], 1);
    assert_eq!(
        one(db.json(&["status", "origin", "main"]))["ahead_versions"],
        0
    );

    // Another database (a folder) clones the remote, writes and pushes; the server pulls it.
    let other = Db::bare();
    let out = strata()
        .args(["clone", remote.to_str().unwrap()])
        .arg(other.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    other.ok(&["kv", "put", "b", "2"]);
    other.ok(&["push"]);
    assert_eq!(one(db.json(&["fetch"]))["remote_version"], 2);
    assert_eq!(one(db.json(&["status"]))["behind_versions"], 1);
    db.json(&["pull"]);
    assert_eq!(db.json(&["kv", "get", "b"]), json!(2));

    // A strict pull with a conflict: exit 4 with the conflict list, nothing written.
    other.ok(&["kv", "put", "a", "other side"]);
    other.ok(&["push"]);
    db.ok(&["kv", "put", "a", "server side"]);
    let e = db.fail_json(&["pull", "--strategy", "strict"], 4);
    assert!(e["detail"].to_string().contains(r#""key":"a""#), "{e}");
    assert_eq!(db.json(&["kv", "get", "a"]), json!("server side"));
    // A remote the server does not have: not found, naming it.
    let e = db.fail_json(&["push", "nowhere", "main"], 3);
    assert!(e["message"].as_str().unwrap().contains("nowhere"), "{e}");
}

folder_and_server! {
    remotes_config_and_sync_options, server_remotes_config_and_sync_options => remotes_config_and_sync_options_on;
    export_streams_a_snapshot, server_export_streams_a_snapshot => export_streams_a_snapshot_on;
}

/// `config`, every `remote` subcommand and the sync options (`--all`, `-u`, `--delete`,
/// `--strategy ours`, `--conflict-branch`): on a folder, and through a server, which runs them on
/// its own database. Secret option values never appear in any output.
fn remotes_config_and_sync_options_on(db: Db) {
    let rdir = tempfile::tempdir().unwrap();
    let remote = rdir.path().join("remote");
    let r = remote.to_str().unwrap();

    // Settings.
    assert_eq!(
        db.json(&["config", "user.name", "agent-7"]),
        json!({"key": "user.name", "value": "agent-7", "changed": true})
    );
    assert_eq!(db.ok(&["config", "user.name"]).trim(), "agent-7");
    assert_eq!(
        db.json(&["config"])["settings"],
        json!([{"key": "user.name", "value": "agent-7"}])
    );
    db.fail(&["config", "no.such"], 3);
    db.ok(&["kv", "put", "a", "1"]);
    assert_eq!(
        db.json(&["log", "--limit", "1"])["versions"][0]["author"],
        "agent-7"
    );

    // Remotes: a token is kept but never shown.
    let secret = "hubkey-SECRET-4711";
    let added = db.json(&[
        "remote",
        "add",
        "hub",
        "http://127.0.0.1:9/v1/projects/p",
        "--token",
        secret,
    ]);
    assert_eq!(added["options"]["token"], "***", "{added}");
    let added = db.json(&["remote", "add", "origin", r]);
    assert_eq!(added["url"], r);
    for args in [
        &["remote", "list"][..],
        &["--json", "remote", "list"],
        &["remote", "-v"],
        &["remote", "show", "origin"],
    ] {
        let out = db.ok(args);
        assert!(!out.contains(secret), "{args:?} printed the token: {out}");
    }
    let list = db.json(&["remote", "list"])["remotes"].clone();
    assert_eq!(list[0]["remote"], "hub");
    assert_eq!(list[0]["options"]["token"], "***");
    assert_eq!(list[1]["remote"], "origin");
    assert_eq!(db.ok(&["remote"]).trim(), "hub\norigin");
    let e = db.fail_json(&["remote", "add", "origin", r], 2);
    assert!(e["message"].as_str().unwrap().contains("origin"), "{e}");
    db.json(&["remote", "remove", "hub"]);

    // push --all, push -u, status --all, remote branches / show.
    db.ok(&["branch", "create", "side"]);
    db.ok(&["-b", "side", "kv", "put", "s", "1"]);
    let pushed = db.json(&["push", "--all", "origin"]);
    assert_eq!(pushed["failed"], 0, "{pushed}");
    let names: Vec<&str> = pushed["branches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["branch"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["main", "side"]);
    let st = db.json(&["status", "--all", "origin"]);
    assert_eq!(st["branches"].as_array().unwrap().len(), 2, "{st}");
    assert_eq!(st["branches"][1]["ahead_versions"], 0);
    let up = db.json(&["push", "-u", "origin", "main"]);
    assert_eq!(up["branches"][0]["upstream"], "origin", "{up}");
    let shown = db.json(&["remote", "show", "origin"]);
    assert_eq!(shown["upstream_of"], json!(["main"]), "{shown}");
    assert_eq!(shown["branches"].as_array().unwrap().len(), 2);
    let rb = db.json(&["remote", "branches", "origin"]);
    assert_eq!(rb["branches"][0]["branch"], "main", "{rb}");
    assert_eq!(rb["branches"][1]["version"], 1);

    // Another database (a folder) writes to the remote; pull --strategy ours keeps ours.
    let other = Db::bare();
    let out = strata()
        .args(["clone", r])
        .arg(other.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    other.ok(&["kv", "put", "a", "theirs"]);
    other.ok(&["kv", "put", "t", "new"]);
    other.ok(&["push"]);
    db.ok(&["kv", "put", "a", "ours"]);
    db.json(&["pull", "--strategy", "ours"]);
    assert_eq!(db.json(&["kv", "get", "a"]), json!("ours"));
    assert_eq!(db.json(&["kv", "get", "t"]), json!("new"));
    db.ok(&["push"]);

    // A strict pull with --conflict-branch: exit 4, nothing written, conflicts saved.
    other.ok(&["pull"]);
    other.ok(&["kv", "put", "a", "theirs again"]);
    other.ok(&["push"]);
    db.ok(&["kv", "put", "a", "ours again"]);
    let e = db.fail_json(
        &[
            "pull",
            "--strategy",
            "strict",
            "--conflict-branch",
            "conflicts/a",
        ],
        4,
    );
    assert!(e["detail"].to_string().contains("conflicts/a"), "{e}");
    assert_eq!(db.json(&["kv", "get", "a"]), json!("ours again"));
    db.json(&["branch", "info", "conflicts/a"]);

    // fetch --all and pull --all take every branch the remote holds.
    other.ok(&["-b", "side", "kv", "put", "s", "2"]);
    other.ok(&["push", "origin", "side"]);
    let f = db.json(&["fetch", "--all", "origin"]);
    assert_eq!(f["branches"].as_array().unwrap().len(), 2, "{f}");
    let p = db.json(&["pull", "--all", "origin"]);
    assert_eq!(p["failed"], 0, "{p}");
    assert_eq!(db.json(&["-b", "side", "kv", "get", "s"]), json!(2));

    // push --delete, compact, gc.
    let d = db.json(&["push", "--delete", "origin", "side"]);
    assert_eq!(d["branch"], "side", "{d}");
    let rb = db.json(&["remote", "branches", "origin"]);
    assert_eq!(rb["branches"].as_array().unwrap().len(), 1, "{rb}");
    db.json(&["-b", "side", "branch", "info"]);
    let c = db.json(&["remote", "compact", "origin", "main"]);
    assert_eq!(c["branch"], "main", "{c}");
    let g = db.json(&["remote", "gc", "origin", "--grace", "0"]);
    assert!(g["referenced"].as_u64().unwrap() >= 1, "{g}");

    // set-url, rename (the upstream follows), remove; unset the setting.
    let moved = rdir.path().join("moved");
    let s = db.json(&["remote", "set-url", "origin", moved.to_str().unwrap()]);
    assert_eq!(s["previous_url"], r, "{s}");
    db.json(&["remote", "rename", "origin", "up"]);
    assert_eq!(
        db.json(&["remote", "show", "up"])["upstream_of"],
        json!(["main"])
    );
    let rm = db.json(&["remote", "remove", "up"]);
    assert_eq!(rm["removed"], true, "{rm}");
    assert_eq!(db.json(&["remote", "list"])["remotes"], json!([]));
    db.fail(&["remote", "show", "up"], 3);
    db.json(&["config", "user.name", "--unset"]);
    db.fail(&["config", "user.name"], 3);
}

/// `strata export` writes the same JSONL from a folder and through a server (pages of a listing
/// pinned to one version).
fn export_streams_a_snapshot_on(db: Db) {
    db.ok(&["kv", "put", "k2", "2"]);
    db.ok(&["kv", "put", "k1", "{\"n\": null}"]);
    db.ok(&["json", "put", "doc", "{\"title\": \"t\"}"]);
    db.ok(&["event", "append", "note", "{\"x\": 1}"]);
    db.ok(&["-s", "other", "state", "set", "cell", "7"]);
    db.ok(&["-s", "other", "kv", "put", "z", "null"]);
    let file = db.file("out.jsonl");
    let d = db.json(&["export", file.to_str().unwrap()]);
    assert_eq!(d["entries"], 6, "{d}");
    assert_eq!(d["version"], 6);
    let got = std::fs::read_to_string(&file).unwrap();
    let want = [
        r#"{"key":"k1","kind":"kv","space":"default","value":{"n":null}}"#,
        r#"{"key":"k2","kind":"kv","space":"default","value":2}"#,
        r#"{"key":"z","kind":"kv","space":"other","value":null}"#,
        r#"{"key":"doc","kind":"json","space":"default","value":{"title":"t"}}"#,
        r#"{"key":"1","kind":"event","space":"default","value":{"payload":{"x":1},"type":"note"}}"#,
        r#"{"key":"cell","kind":"state","space":"other","value":7}"#,
    ];
    assert_eq!(got.lines().collect::<Vec<_>>(), want);
    // Pinned to a past version, one space, to stdout.
    let out = db.ok(&["-b", "main@2", "export", "-"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), &want[..2]);
    let out = db.ok(&["-s", "other", "export", "-"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    // Never overwrites.
    db.fail(&["export", file.to_str().unwrap()], 2);
}

/// Settings and remotes are administrative: a read-only key and a key limited to some branches are
/// refused (exit 1, `forbidden`, nothing changed); reading them needs read access to every branch.
#[test]
fn server_admin_commands_need_an_admin_key() {
    let mut db = Db::bare();
    let dir = db.path();
    let admin = add_key(&dir, "admin", &[], &["*"]);
    let ro = add_key(&dir, "ro", &["*"], &[]);
    let agents = add_key(&dir, "agents", &[], &["agent/*"]);
    db.server = Some(start_server(&dir, &[], Some(admin)));
    let rdir = tempfile::tempdir().unwrap();
    let r = rdir.path().join("remote");
    db.ok(&["remote", "add", "origin", r.to_str().unwrap()]);
    db.ok(&[
        "remote",
        "add",
        "hub",
        "http://127.0.0.1:9/v1/projects/p",
        "--token",
        "SECRET-9",
    ]);
    db.ok(&["config", "user.name", "admin"]);
    let cwd = tempfile::tempdir().unwrap();
    let forbidden = |key: &str, args: &[&str]| {
        let out = server_cmd(&db, Some(key), cwd.path(), args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let e = error(parse(&text(&out.stdout)), 1);
        assert_eq!(e["code"], "forbidden", "{args:?}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains("every branch"),
            "{e}"
        );
    };
    for key in [&ro, &agents] {
        forbidden(key, &["config", "user.name", "intruder"]);
        forbidden(key, &["config", "user.name", "--unset"]);
        forbidden(key, &["remote", "add", "evil", "/tmp/evil"]);
        forbidden(key, &["remote", "remove", "origin"]);
        forbidden(key, &["remote", "rename", "origin", "o2"]);
        forbidden(key, &["remote", "set-url", "origin", "/tmp/elsewhere"]);
        forbidden(key, &["remote", "gc", "origin"]);
    }
    // The read-only key reads settings and remotes, secrets masked; the branch-limited one may not.
    let out = server_cmd(&db, Some(&ro), cwd.path(), &["remote", "list"]);
    let list = data(parse(&text(&out.stdout)));
    assert_eq!(list["remotes"][0]["remote"], "hub", "{list}");
    assert_eq!(list["remotes"][0]["options"]["token"], "***", "{list}");
    assert!(!text(&out.stdout).contains("SECRET-9"));
    let out = server_cmd(&db, Some(&ro), cwd.path(), &["config", "user.name"]);
    assert_eq!(data(parse(&text(&out.stdout)))["value"], "admin");
    forbidden(&agents, &["remote", "list"]);
    forbidden(&agents, &["config"]);
    // Nothing changed.
    assert_eq!(db.json(&["config", "user.name"])["value"], "admin");
    let list = db.json(&["remote", "list"])["remotes"].clone();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list[1]["url"], r.to_str().unwrap());
    // A relative folder URL is made absolute by the CLI; the server refuses one that is not.
    let url = db.server.as_ref().unwrap().url.clone();
    let e = strata_client::Db::connect(
        &url,
        strata_client::ClientOptions {
            api_key: db.server.as_ref().unwrap().key.clone(),
            ..Default::default()
        },
    )
    .unwrap()
    .remote_add(strata_sync::RemoteConfig {
        name: "rel".into(),
        url: "relative/path".into(),
        options: Default::default(),
    })
    .unwrap_err();
    assert!(e.to_string().contains("absolute"), "{e}");
}
