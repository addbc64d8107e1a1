//! Runs the built `strata` binary against databases in temporary folders.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

/// A database folder inside a temporary directory.
struct Db {
    dir: tempfile::TempDir,
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
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        strata()
            .arg("--db")
            .arg(self.path())
            .args(args)
            .output()
            .unwrap()
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
    c.env_remove("STRATA_DB").env_remove("RUST_LOG");
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

#[test]
fn kv_put_get_list_del() {
    let db = Db::new();
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

#[test]
fn json_documents_and_paths() {
    let db = Db::new();
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

#[test]
fn events_append_and_read() {
    let db = Db::new();
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

#[test]
fn state_init_and_cas() {
    let db = Db::new();
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

#[test]
fn branch_create_fork_list_diff_info_delete() {
    let db = Db::new();
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

    // `old` holds no versions of its own: main contains it, so it deletes without --force.
    db.ok(&["branch", "delete", "old"]);
    db.fail(&["branch", "info", "old"], 3);
    db.fail(&["branch", "create", "main"], 1);
}

#[test]
fn merge_lww_and_strict() {
    let db = Db::new();
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

    // --conflict-branch saves the conflicts to a new branch.
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
    let saved = db.json(&["-b", "conflicts/b", "-s", "conflicts", "kv", "list"])["entries"].clone();
    assert_eq!(saved[0]["key"], "default/kv/task:1");
    assert_eq!(saved[0]["value"]["source"], "approach B");
    assert_eq!(saved[0]["value"]["target"], "approach A");
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

#[test]
fn log_and_history() {
    let db = Db::new();
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

#[test]
fn bundle_export_verify_import_round_trip() {
    let db = Db::new();
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
    let other = Db::bare();
    other.ok(&["init"]);
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
