//! Runs the built `strata` binary's sync commands: databases in temporary folders syncing through a
//! folder remote.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{json, Value};

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

/// A temporary folder holding databases and a folder remote.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        World {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn remote(&self) -> String {
        self.path("remote").to_str().unwrap().to_string()
    }

    /// A database `name` with remote `origin` pointing at the shared folder remote.
    fn db(&self, name: &str) -> Db {
        let db = self.empty_db(name);
        db.ok(&["remote", "add", "origin", &self.remote()]);
        db
    }

    /// A new database `name` with no remotes.
    fn empty_db(&self, name: &str) -> Db {
        let db = Db {
            path: self.path(name),
        };
        db.ok(&["init"]);
        db
    }

    /// Runs a command that needs no database.
    fn run(&self, args: &[&str]) -> Output {
        strata()
            .current_dir(self.dir.path())
            .args(args)
            .output()
            .unwrap()
    }
}

struct Db {
    path: PathBuf,
}

impl Db {
    fn run(&self, args: &[&str]) -> Output {
        strata()
            .arg("--db")
            .arg(&self.path)
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(self.run(args), args)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        data(parse(&self.ok(&a)))
    }

    /// A one-branch push, pull, fetch or status with `--json`: its only branch result.
    fn one(&self, args: &[&str]) -> Value {
        let doc = self.json(args);
        let list = doc["branches"]
            .as_array()
            .unwrap_or_else(|| panic!("{doc}"));
        assert_eq!(list.len(), 1, "{doc}");
        assert_eq!(list[0]["ok"], true, "{doc}");
        list[0].clone()
    }

    fn fail(&self, args: &[&str], code: i32) -> Output {
        fail(self.run(args), args, code)
    }

    fn fail_json(&self, args: &[&str], code: i32) -> (Value, String) {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.fail(&a, code);
        let doc = parse(&text(&out.stdout));
        assert_eq!(doc["ok"], false, "{doc}");
        assert_eq!(doc["error"]["exit"], code, "{doc}");
        (doc["error"].clone(), text(&out.stderr))
    }

    fn keys(&self, branch: &str) -> Vec<String> {
        self.json(&["-b", branch, "kv", "list"])["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_str().unwrap().to_string())
            .collect()
    }
}

fn ok(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "{args:?} failed ({:?}): {}",
        out.status.code(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn fail(out: Output, args: &[&str], code: i32) -> Output {
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

#[test]
fn remote_add_list_remove() {
    let w = World::new();
    let db = w.empty_db("a");
    assert_eq!(db.json(&["remote", "list"]), json!({"remotes": []}));
    // Folder remotes take no options: a misplaced one is refused, and nothing is stored.
    let out = db.fail(
        &["remote", "add", "origin", &w.remote(), "-o", "region=eu"],
        2,
    );
    let err = text(&out.stderr);
    assert!(err.contains("folder remotes take no options"), "{err}");
    assert_eq!(db.json(&["remote", "list"]), json!({"remotes": []}));
    let added = db.json(&["remote", "add", "origin", &w.remote()]);
    assert_eq!(added["remote"], "origin");
    // Bucket remotes take their options, stored and listed; a credential-like one is refused
    // without echoing its value.
    let bucket = db.json(&[
        "remote",
        "add",
        "bucket",
        "s3://some-bucket/prefix",
        "-o",
        "region=eu",
        "--option",
        "endpoint=http://127.0.0.1:9",
    ]);
    assert_eq!(bucket["remote"], "bucket");
    let out = db.fail(
        &[
            "remote",
            "add",
            "leaky",
            "s3://some-bucket/p",
            "-o",
            "token=sk-secret-123",
        ],
        2,
    );
    let err = text(&out.stderr);
    assert!(err.contains("never stores credentials"), "{err}");
    assert!(!err.contains("sk-secret-123"), "{err}");
    // A relative folder path is stored as an absolute one.
    strata()
        .current_dir(w.dir.path())
        .arg("--db")
        .arg(&db.path)
        .args(["remote", "add", "backup", "backup-folder"])
        .output()
        .map(|o| ok(o, &["remote", "add", "backup"]))
        .unwrap();

    let list = db.json(&["remote", "list"]);
    assert_eq!(
        list["remotes"],
        json!([
            {"remote": "backup", "url": w.path("backup-folder").to_str().unwrap(), "options": {}},
            {"remote": "bucket", "url": "s3://some-bucket/prefix", "options": {"endpoint": "http://127.0.0.1:9", "region": "eu"}},
            {"remote": "origin", "url": w.remote(), "options": {}},
        ])
    );
    let shown = db.ok(&["remote", "list"]);
    assert!(shown.contains("region=eu"), "{shown}");
    assert!(
        shown.contains("origin") && shown.contains(&w.remote()),
        "{shown}"
    );

    // Errors: taken name, bad name, bad option, unsupported scheme.
    let out = db.fail(&["remote", "add", "origin", &w.remote()], 2);
    assert!(text(&out.stderr).contains("already exists"));
    let out = db.fail(&["remote", "add", "bad name", &w.remote()], 2);
    assert!(text(&out.stderr).contains("invalid remote name"));
    db.fail(&["remote", "add", "y", &w.remote(), "-o", "novalue"], 2);
    let out = db.fail(&["remote", "add", "x", "ftp://b/p"], 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("\"ftp\"") && err.contains("unsupported scheme"),
        "{err}"
    );

    db.ok(&["remote", "remove", "bucket"]);
    let removed = db.json(&["remote", "remove", "backup"]);
    assert_eq!(removed["removed"], true);
    assert!(db
        .ok(&["remote", "rm", "origin"])
        .contains("removed remote origin"));
    assert_eq!(db.json(&["remote", "list"]), json!({"remotes": []}));
    let out = db.fail(&["remote", "remove", "origin"], 3);
    assert!(text(&out.stderr).contains("\"origin\""));
}

#[test]
fn push_pull_fetch_status_clone() {
    let w = World::new();
    let a = w.db("a");
    a.ok(&["kv", "put", "config", r#"{"model":"gpt-4"}"#]);
    a.ok(&["json", "put", "notes/research.md", r##""# Research""##]);
    a.ok(&["kv", "put", "task:1", "1"]);

    let st = a.one(&["status"]);
    assert_eq!(st["remote_version"], Value::Null);
    assert_eq!(st["ahead_entries"], 3);
    assert_eq!(st["last_synced"], Value::Null);
    assert!(a.ok(&["status"]).contains("never synced"));

    let p = a.one(&["push"]);
    assert_eq!(p["remote"], "origin");
    assert_eq!(p["branch"], "main");
    assert_eq!(p["remote_version"], 3);
    assert_eq!(p["entries"], 3);
    assert_eq!(p["up_to_date"], false);
    assert!(p["bytes"].as_u64().unwrap() > 0);
    let again = a.one(&["push", "origin", "main"]);
    assert_eq!(again["up_to_date"], true);
    assert_eq!(
        a.ok(&["push"]).trim(),
        "main is up to date with origin (version 3)"
    );
    let st = a.one(&["status"]);
    assert_eq!(
        (
            &st["remote_version"],
            &st["ahead_entries"],
            &st["behind_versions"]
        ),
        (&json!(3), &json!(0), &json!(0))
    );
    assert!(st["last_synced"].as_str().unwrap().ends_with('Z'));

    // B pulls into an empty database: its empty main fast-forwards (it is not re-created).
    let b = w.db("b");
    let r = b.one(&["pull"]);
    assert_eq!(
        (&r["created"], &r["fast_forward"]),
        (&json!(false), &json!(true)),
        "{r}"
    );
    assert_eq!(r["fetch"]["remote_version"], 3);
    assert_eq!(b.keys("main"), ["config", "task:1"]);
    assert_eq!(
        b.json(&["json", "get", "notes/research.md"]),
        json!("# Research")
    );

    // A writes; B fetches (the mirror only), sees itself behind, then pulls.
    a.ok(&["kv", "put", "task:2", "2"]);
    a.ok(&["kv", "put", "task:3", "3"]);
    a.ok(&["push"]);
    b.ok(&["kv", "put", "task:9", "9"]);
    let st = b.one(&["status", "origin"]);
    assert_eq!(
        (
            &st["behind_versions"],
            &st["behind_entries"],
            &st["ahead_versions"],
            &st["ahead_entries"]
        ),
        (&json!(2), &json!(2), &json!(1), &json!(1))
    );
    let text_status = b.ok(&["status"]);
    assert!(
        text_status.contains("ahead 1 version (1 entry), behind 2 versions (2 entries)"),
        "{text_status}"
    );
    // Each of A's commits arrives as its own version.
    let f = b.one(&["fetch"]);
    assert_eq!((&f["versions"], &f["entries"]), (&json!(2), &json!(2)));
    assert_eq!(b.keys("main"), ["config", "task:1", "task:9"]);
    assert!(b.ok(&["fetch"]).contains("up to date"));
    assert_eq!(b.one(&["status"])["behind_versions"], 2);
    let pulled = b.ok(&["pull"]);
    assert!(
        pulled.starts_with("pulled origin/main: ") && pulled.contains("merged into main@"),
        "{pulled}"
    );
    assert_eq!(
        b.keys("main"),
        ["config", "task:1", "task:2", "task:3", "task:9"]
    );
    let p = b.one(&["push"]);
    assert_eq!(p["entries"], 1, "B uploads only its own work: {p}");
    let pushed = a.ok(&["pull"]);
    assert!(pushed.contains("fetched 1 version (1 entry)"), "{pushed}");
    assert!(b.ok(&["pull"]).contains("up to date"));

    // Clone a third database.
    let out = w.run(&["--json", "clone", &w.remote(), "c"]);
    let c = data(parse(&ok(out, &["clone"])));
    assert_eq!(c["remote"], "origin");
    assert_eq!(c["branches"][0]["branch"], "main");
    assert_eq!(c["path"], "c");
    let cdb = Db { path: w.path("c") };
    assert_eq!(cdb.keys("main"), b.keys("main"));
    assert_eq!(
        cdb.json(&["remote", "list"])["remotes"][0]["url"],
        w.remote()
    );
    assert!(cdb.one(&["push"])["up_to_date"].as_bool().unwrap());
    // Cloning into a folder that is not empty is a usage error, and the folder is left alone.
    let out = fail(w.run(&["clone", &w.remote(), "c"]), &["clone again"], 2);
    assert!(text(&out.stderr).contains("not empty"));
    let human = ok(w.run(&["clone", &w.remote(), "d"]), &["clone d"]);
    assert!(
        human.starts_with(&format!("cloned {} into d", w.remote())),
        "{human}"
    );
}

#[test]
fn push_rejected_until_pulled() {
    let w = World::new();
    let (a, b) = (w.db("a"), w.db("b"));
    a.ok(&["kv", "put", "task:1", "1"]);
    a.ok(&["push"]);
    b.ok(&["pull"]);
    a.ok(&["kv", "put", "task:3", "3"]);
    b.ok(&["kv", "put", "task:5", "5"]);
    a.ok(&["push"]);
    let out = b.fail(&["push"], 7);
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert!(err.contains("remote has changes; pull first"), "{err}");
    let (e, err) = b.fail_json(&["push"], 7);
    assert_eq!(e["code"], "rejected");
    assert!(e["message"].as_str().unwrap().contains("pull first"), "{e}");
    assert_eq!(e["detail"]["branches"][0]["ok"], false, "{e}");
    assert!(err.contains("pull first"));
    b.ok(&["pull"]);
    let p = b.one(&["push"]);
    assert_eq!(p["entries"], 1);
    let top = text(&strata().arg("--help").output().unwrap().stdout);
    assert!(top.contains("7  rejected"), "{top}");
}

#[test]
fn strict_pull_conflict_exits_4_with_the_list() {
    let w = World::new();
    let (a, b) = (w.db("a"), w.db("b"));
    a.ok(&["kv", "put", "task:1", r#"{"status":"todo"}"#]);
    a.ok(&["push"]);
    b.ok(&["pull"]);
    a.ok(&[
        "kv",
        "put",
        "task:1",
        r#"{"status":"done","result":"approach A"}"#,
    ]);
    b.ok(&[
        "kv",
        "put",
        "task:1",
        r#"{"status":"done","result":"approach B"}"#,
    ]);
    a.ok(&["push"]);

    b.fail(&["pull", "--conflict-branch", "c"], 2);
    let (doc, err) = b.fail_json(
        &[
            "pull",
            "--strategy",
            "strict",
            "--conflict-branch",
            "conflicts/pull-1",
        ],
        4,
    );
    assert!(err.contains("conflicting key"), "{err}");
    assert_eq!(doc["code"], "merge_conflict");
    let doc = &doc["detail"]["branches"][0]["error"]["detail"];
    assert_eq!(doc["merged"], false);
    assert_eq!(doc["remote"], "origin");
    assert_eq!(doc["conflict_branch"], "conflicts/pull-1");
    let list = doc["conflicts"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["key"], "task:1");
    assert_eq!(list[0]["space"], "default");
    assert_eq!(list[0]["source"]["result"], "approach A");
    assert_eq!(list[0]["target"]["result"], "approach B");
    assert_eq!(list[0]["ancestor"]["status"], "todo");
    assert_eq!(
        b.json(&["-b", "conflicts/pull-1", "-s", "conflicts", "kv", "list"])["entries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Text form: the structured list on stdout; main is unchanged.
    let out = b.fail(&["pull", "--strategy", "strict"], 4);
    let s = text(&out.stdout);
    assert!(s.contains("CONFLICT default/kv task:1"), "{s}");
    assert!(s.contains("approach A") && s.contains("approach B"), "{s}");
    assert_eq!(
        b.json(&["kv", "get", "task:1"])["result"],
        json!("approach B")
    );
    // Not merged yet: a push is rejected.
    b.fail(&["push"], 7);
    // Last writer wins: the remote's value wins.
    let r = b.one(&["pull", "--strategy", "lww"]);
    assert_eq!(r["conflicts_resolved"], 1);
    assert_eq!(
        b.json(&["kv", "get", "task:1"])["result"],
        json!("approach A")
    );
    // B's own version still travels (history keeps it), then one version restores A's value.
    let p = b.one(&["push"]);
    assert_eq!(
        (&p["up_to_date"], &p["versions"]),
        (&json!(false), &json!(2))
    );
    assert_eq!(
        b.json(&["kv", "get", "task:1"])["result"],
        json!("approach A")
    );
    assert_eq!(b.one(&["push"])["up_to_date"], true);
}

#[test]
fn unknown_remote_and_missing_things_exit_3() {
    let w = World::new();
    let a = w.db("a");
    a.ok(&["kv", "put", "k", "1"]);
    for args in [
        &["push", "nope"][..],
        &["pull", "nope"],
        &["fetch", "nope"],
        &["status", "nope"],
        &["push", "nope", "--all"],
        &["pull", "nope", "--all"],
        &["remote", "branches", "nope"],
        &["remote", "gc", "nope"],
        &["remote", "compact", "nope"],
    ] {
        let out = a.fail(args, 3);
        assert!(text(&out.stderr).contains("\"nope\""), "{args:?}");
    }
    // No `origin`: the default remote is named.
    let lonely = w.empty_db("lonely");
    let out = lonely.fail(&["push"], 3);
    assert!(text(&out.stderr).contains("\"origin\""));
    // A missing remote branch, and a missing local branch.
    a.ok(&["push"]);
    let out = a.fail(&["pull", "origin", "ghost"], 3);
    assert!(text(&out.stderr).contains("ghost"));
    a.fail(&["push", "origin", "ghost"], 3);
    // A remote folder that holds no Strata remote.
    std::fs::create_dir(w.path("empty")).unwrap();
    let e = w.db("e");
    e.ok(&["remote", "add", "empty", w.path("empty").to_str().unwrap()]);
    let out = e.fail(&["pull", "empty"], 3);
    assert!(text(&out.stderr).contains("not a Strata remote"));
}

#[test]
fn clone_of_an_empty_folder_is_not_a_remote() {
    let w = World::new();
    std::fs::create_dir(w.path("empty")).unwrap();
    let out = fail(
        w.run(&["clone", w.path("empty").to_str().unwrap(), "dest"]),
        &["clone"],
        3,
    );
    assert!(text(&out.stderr).contains("not a Strata remote"));
    assert!(!w.path("dest").exists(), "a failed clone leaves nothing");
    let out = fail(
        w.run(&["clone", "ftp://bucket/x", "dest"]),
        &["clone ftp"],
        2,
    );
    assert!(text(&out.stderr).contains("\"ftp\""));
}

#[test]
fn push_all_pull_all_fetch_all_status_all() {
    let w = World::new();
    let a = w.db("a");
    a.ok(&["kv", "put", "task:1", "1"]);
    a.ok(&["branch", "fork", "main", "feature"]);
    a.ok(&["-b", "feature", "kv", "put", "f", "1"]);
    let r = a.json(&["push", "--all"]);
    assert_eq!(r["failed"], 0);
    let names: Vec<&str> = r["branches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            assert_eq!(b["ok"], true);
            b["branch"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, ["feature", "main"]);

    let rb = a.json(&["remote", "branches", "origin"]);
    let list = rb["branches"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["branch"], "feature");
    assert_eq!(list[0]["version"], 2);
    assert!(list[0]["blobs"].as_u64().unwrap() >= 1);
    assert!(list[0]["updated_micros"].as_u64().unwrap() > 0);
    let t = a.ok(&["remote", "branches", "origin"]);
    assert!(t.starts_with("BRANCH") && t.contains("feature"), "{t}");

    let b = w.db("b");
    let r = b.json(&["pull", "--all"]);
    assert_eq!(r["failed"], 0);
    assert_eq!(r["branches"].as_array().unwrap().len(), 2);
    assert_eq!(b.keys("feature"), ["f", "task:1"]);
    assert_eq!(b.keys("main"), ["task:1"]);
    let st = b.json(&["status", "--all"]);
    assert_eq!(st["branches"].as_array().unwrap().len(), 2);

    // Both change feature; A also changes main. A's push --all pushes main, is rejected on feature,
    // reports both and exits 7.
    b.ok(&["-b", "feature", "kv", "put", "g", "1"]);
    b.ok(&["push", "origin", "feature"]);
    a.ok(&["-b", "feature", "kv", "put", "h", "1"]);
    a.ok(&["kv", "put", "task:2", "2"]);
    let (doc, err) = a.fail_json(&["push", "--all"], 7);
    let doc = &doc["detail"];
    assert_eq!(doc["failed"], 1);
    let res = doc["branches"].as_array().unwrap();
    assert_eq!(res[0]["branch"], "feature");
    assert_eq!(res[0]["ok"], false);
    assert_eq!(res[0]["error"]["exit"], 7);
    assert_eq!(res[0]["error"]["code"], "rejected");
    assert_eq!(res[1]["branch"], "main");
    assert_eq!(res[1]["ok"], true);
    assert!(
        err.contains("feature") && err.contains("pull first"),
        "{err}"
    );

    let f = a.json(&["fetch", "--all"]);
    assert_eq!(f["failed"], 0);
    a.ok(&["pull", "--all"]);
    assert_eq!(a.keys("feature"), ["f", "g", "h", "task:1"]);
    let r = a.json(&["push", "--all"]);
    assert_eq!(r["failed"], 0);
    b.ok(&["pull", "--all"]);
    assert_eq!(b.keys("feature"), ["f", "g", "h", "task:1"]);
    assert_eq!(b.keys("main"), ["task:1", "task:2"]);
    let s = b.ok(&["status", "--all"]);
    assert!(
        s.contains("feature is up to date with origin") && s.contains("main is up to date"),
        "{s}"
    );
}

#[test]
fn remote_gc_and_compact() {
    let w = World::new();
    let a = w.db("a");
    for i in 0..4 {
        a.ok(&["kv", "put", &format!("k{i}"), "1"]);
        a.ok(&["push"]);
    }
    let c = a.json(&["remote", "compact", "origin"]);
    assert_eq!(c["branch"], "main");
    assert_eq!(c["remote_version"], 4);
    assert_eq!(
        (&c["blobs_before"], &c["blobs_after"]),
        (&json!(4), &json!(1))
    );
    assert_eq!(c["versions_dropped"], 0);
    assert!(c["snapshot"].as_str().unwrap().contains("snap"), "{c}");
    let again = a.ok(&["remote", "compact", "origin", "main"]);
    assert!(
        again.starts_with("origin/main is already compact"),
        "{again}"
    );
    // The replaced blobs are unreferenced now: a gc with a long grace keeps them, one without
    // deletes them.
    let g = a.json(&["remote", "gc", "origin"]);
    assert_eq!(g["deleted"], 0);
    assert!(g["kept_young"].as_u64().unwrap() >= 4, "{g}");
    assert_eq!(g["grace_secs"], 3600);
    let g = a.json(&["remote", "gc", "origin", "--grace", "0"]);
    assert!(g["deleted"].as_u64().unwrap() >= 4, "{g}");
    assert!(g["bytes_freed"].as_u64().unwrap() > 0);
    assert_eq!(g["referenced"], 2, "the pack and the shallow snapshot: {g}");
    assert!(a
        .ok(&["remote", "gc", "origin", "--grace", "0"])
        .starts_with("gc origin: 2 blob(s) referenced, 0 deleted"));
    // The remote still clones and pulls.
    let out = w.run(&["clone", &w.remote(), "c"]);
    ok(out, &["clone"]);
    assert_eq!(
        Db { path: w.path("c") }.keys("main"),
        ["k0", "k1", "k2", "k3"]
    );
}

#[test]
fn help_for_every_sync_command() {
    let paths: &[&[&str]] = &[
        &["remote"],
        &["remote", "add"],
        &["remote", "list"],
        &["remote", "remove"],
        &["remote", "branches"],
        &["remote", "gc"],
        &["remote", "compact"],
        &["push"],
        &["pull"],
        &["fetch"],
        &["status"],
        &["clone"],
    ];
    for p in paths {
        let out = strata().args(*p).arg("--help").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{p:?} --help");
        let s = text(&out.stdout);
        assert!(s.contains("Usage: strata"), "{p:?} --help: {s}");
        assert!(s.contains("--json"), "{p:?} --help lacks --json: {s}");
        assert!(
            s.lines().next().is_some_and(|l| !l.trim().is_empty()),
            "{p:?} --help has no description"
        );
    }
    let top = text(&strata().arg("--help").output().unwrap().stdout);
    for cmd in ["remote", "push", "pull", "fetch", "status", "clone"] {
        assert!(
            top.lines().any(|l| l.trim_start().starts_with(cmd)),
            "top-level help lacks {cmd}"
        );
    }
    assert!(top.contains("7  rejected: remote has changes; pull first"));
}

#[test]
fn demo_runs_the_sync_walkthrough() {
    let out = strata().arg("demo").output().unwrap();
    assert!(out.status.success(), "demo failed: {}", text(&out.stderr));
    let s = text(&out.stdout);
    for want in [
        "uploaded: config, notes/research.md, task:1, task:2",
        "uploaded: task:3, task:4",
        "remote has changes; pull first",
        "uploaded: task:5, task:6",
        "CONFLICT default/kv task:1",
        "1 conflict(s) resolved in favour of hub/main",
        "A:main..clone:main: no differences",
    ] {
        assert!(s.contains(want), "demo output lacks {want:?}:\n{s}");
    }
}

/// The CLI with bucket URLs, on moto (S3) and Azurite (Azure) when scripts/emulators.sh started them:
/// remote add and clone take the URL and -o options, credentials come from the environment, and bad
/// input fails with a clear message and the right exit code.
#[test]
fn bucket_remotes_from_the_cli() {
    use strata_remote_s3::testing::emulator;
    use strata_remote_s3::Provider;
    for provider in [Provider::S3, Provider::Azure] {
        let Some(e) = emulator(provider, "cli") else {
            return;
        };
        let w = World::new();
        let opts: Vec<String> = e
            .options
            .iter()
            .flat_map(|(k, v)| ["-o".to_string(), format!("{k}={v}")])
            .collect();
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        let a = w.empty_db("a");
        a.ok(&["kv", "put", "task:1", r#"{"status":"done"}"#]);
        let mut add = vec!["remote", "add", "origin", &e.url];
        add.extend(&opts);
        a.ok(&add);
        let listed = a.json(&["remote", "list"]);
        assert_eq!(listed["remotes"][0]["url"], e.url.as_str(), "{listed}");
        let pushed = a.one(&["push"]);
        assert_eq!(pushed["remote_version"], 1, "{pushed}");

        let mut clone = vec!["clone", &e.url, "b"];
        clone.extend(&opts);
        ok(w.run(&clone), &clone);
        let b = Db { path: w.path("b") };
        assert_eq!(b.keys("main"), ["task:1"]);
        b.ok(&["kv", "put", "task:2", "1"]);
        b.ok(&["push"]);
        a.ok(&["pull"]);
        assert_eq!(a.keys("main"), ["task:1", "task:2"]);

        // A credential as an option is refused, and not echoed.
        let mut bad = vec![
            "remote",
            "add",
            "x",
            &e.url,
            "-o",
            "secret_access_key=hunter2hunter2",
        ];
        bad.extend(&opts);
        let out = a.fail(&bad, 2);
        let err = text(&out.stderr);
        assert!(err.contains("never stores credentials"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        // An unsupported scheme, a bad bucket URL.
        let out = a.fail(&["remote", "add", "y", "ftp://host/x"], 2);
        assert!(text(&out.stderr).contains("unsupported scheme"));
        let out = a.fail(&["remote", "add", "y", "s3://"], 2);
        assert!(
            text(&out.stderr).contains("names no bucket"),
            "{}",
            text(&out.stderr)
        );
        // A missing bucket, and a prefix that is not a Strata remote.
        let missing = e.url.replacen("strata-test", "no-such-bucket-cli", 1);
        let mut c = vec!["clone", &missing, "c"];
        c.extend(&opts);
        let out = fail(w.run(&c), &c, 3);
        assert!(
            text(&out.stderr).contains("\"no-such-bucket-cli\" does not exist"),
            "{}",
            text(&out.stderr)
        );
        let empty = format!("{}-empty", e.url);
        let mut c = vec!["clone", &empty, "d"];
        c.extend(&opts);
        let out = fail(w.run(&c), &c, 3);
        assert!(
            text(&out.stderr).contains("is not a Strata remote"),
            "{}",
            text(&out.stderr)
        );
        assert!(!w.path("c").exists() && !w.path("d").exists());
    }
}

// ----- refusals that must leave everything as it was ----------------------------------------------

/// Every path under `root`, relative, sorted, with a trailing `/` on folders (SQLite's `-wal` and `-shm`
/// side files left out: they come and go with connections).
fn listing(root: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel.ends_with("-wal") || rel.ends_with("-shm") {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Asserts a listing holds no folder a remote or a spool would create.
fn assert_no_remote_folders(list: &[String], what: &str) {
    for p in list {
        for seg in ["blobs", "cursors", "tmp"] {
            assert!(
                !p.split('/').any(|s| s == seg),
                "{what}: {p} appeared in {list:?}"
            );
        }
    }
}

#[test]
fn bad_remote_urls_fail_and_store_nothing() {
    let w = World::new();
    let db = w.empty_db("a");
    for url in ["file://", "file://host/x"] {
        let out = db.fail(&["remote", "add", "r", url], 2);
        let err = text(&out.stderr);
        assert!(err.contains(&format!("{url:?}")), "{url}: {err}");
        assert_eq!(
            db.json(&["remote", "list"]),
            json!({"remotes": []}),
            "{url}"
        );
    }
    let out = db.fail(&["remote", "add", "r", "memory://x"], 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("memory://") && err.contains("vanish when it exits"),
        "the refusal says why: {err}"
    );
    assert_eq!(db.json(&["remote", "list"]), json!({"remotes": []}));
    // Clone refuses them the same way, creating nothing.
    for url in ["file://", "file://host/x", "memory://x"] {
        fail(w.run(&["clone", url, "dest"]), &["clone", url], 2);
        assert!(!w.path("dest").exists(), "{url}");
    }
    assert_no_remote_folders(&listing(w.dir.path()), "bad URLs");
}

#[test]
fn commands_against_a_missing_or_foreign_folder_touch_nothing() {
    let w = World::new();
    let db = w.empty_db("a");
    db.ok(&["kv", "put", "k", "1"]);
    db.ok(&["remote", "add", "m", w.path("missing").to_str().unwrap()]);
    std::fs::create_dir(w.path("unrelated")).unwrap();
    std::fs::write(w.path("unrelated").join("notes.txt"), "mine").unwrap();
    db.ok(&["remote", "add", "u", w.path("unrelated").to_str().unwrap()]);
    let before = listing(w.dir.path());
    assert_no_remote_folders(&before, "set-up");

    for remote in ["m", "u"] {
        for (args, code) in [
            (vec!["pull", remote], Some(3)),
            (vec!["pull", remote, "--all"], None),
            (vec!["fetch", remote], Some(3)),
            (vec!["fetch", remote, "--all"], None),
            (vec!["status", remote], None),
            (vec!["remote", "branches", remote], None),
            (vec!["remote", "gc", remote], Some(3)),
        ] {
            let out = db.run(&args);
            assert_eq!(
                listing(w.dir.path()),
                before,
                "{args:?} changed the filesystem"
            );
            if let Some(code) = code {
                fail(out, &args, code);
            }
        }
    }
    for (url, dest) in [("./missing", "dest1"), ("./unrelated", "dest2")] {
        let out = fail(w.run(&["clone", url, dest]), &["clone", url], 3);
        assert!(
            text(&out.stderr).contains("not a Strata remote"),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(
            listing(w.dir.path()),
            before,
            "clone {url} changed the filesystem"
        );
    }
    assert_eq!(
        std::fs::read_to_string(w.path("unrelated").join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn clone_into_an_existing_file_names_it() {
    let w = World::new();
    let a = w.db("a");
    a.ok(&["kv", "put", "k", "1"]);
    a.ok(&["push"]);
    std::fs::write(w.path("afile"), "keep me").unwrap();
    let before = listing(w.dir.path());
    let out = fail(w.run(&["clone", &w.remote(), "afile"]), &["clone"], 2);
    let err = text(&out.stderr);
    assert!(err.contains("afile") && err.contains("file"), "{err}");
    assert_eq!(std::fs::read_to_string(w.path("afile")).unwrap(), "keep me");
    assert_eq!(listing(w.dir.path()), before);
}

// ----- reports -------------------------------------------------------------------------------------

#[test]
fn every_all_json_entry_names_its_branch() {
    let w = World::new();
    let a = w.db("a");
    a.ok(&["kv", "put", "k", "1"]);
    for b in ["feat", "zeta"] {
        a.ok(&["branch", "fork", "main", b]);
        a.ok(&["-b", b, "kv", "put", b, "1"]);
    }
    let names = |doc: &Value| -> Vec<String> {
        doc["branches"]
            .as_array()
            .unwrap_or_else(|| panic!("{doc}"))
            .iter()
            .map(|e| {
                e["branch"]
                    .as_str()
                    .unwrap_or_else(|| panic!("entry without a branch: {e}"))
                    .to_string()
            })
            .collect()
    };
    let all = ["feat", "main", "zeta"];
    assert_eq!(names(&a.json(&["push", "--all"])), all);
    let b = w.db("b");
    assert_eq!(names(&b.json(&["fetch", "--all"])), all);
    assert_eq!(names(&b.json(&["pull", "--all"])), all);
    assert_eq!(names(&b.json(&["pull", "--all"])), all, "up to date");
    assert_eq!(names(&b.json(&["status", "--all"])), all);
    // A failing entry names its branch too.
    b.ok(&["-b", "feat", "kv", "put", "feat", "2"]);
    a.ok(&["-b", "feat", "kv", "put", "feat", "3"]);
    a.ok(&["push", "--all"]);
    let (doc, _) = b.fail_json(&["pull", "--all", "--strategy", "strict"], 4);
    let doc = &doc["detail"];
    assert_eq!(names(doc), all);
    assert_eq!(doc["branches"][0]["ok"], false, "{doc}");
}

#[test]
fn a_fast_forward_pull_does_not_recreate_the_branch() {
    let w = World::new();
    let a = w.db("a");
    let b = w.db("b");
    let created = b.json(&["branch", "info", "main"])["created_micros"].clone();
    assert!(created.as_u64().is_some(), "{created}");
    for i in 0..3 {
        a.ok(&["kv", "put", "k", &i.to_string()]);
        a.ok(&["push"]);
        let out = b.ok(&["pull"]);
        assert!(!out.contains("created"), "round {i}: {out}");
        assert!(out.contains("fast-forwarded main"), "round {i}: {out}");
        let info = b.json(&["branch", "info", "main"]);
        assert_eq!(info["created_micros"], created, "round {i}: {info}");
        assert_eq!(b.json(&["kv", "get", "k"]), json!(i));
    }
    // A branch the database lacks is created, and says so.
    a.ok(&["branch", "fork", "main", "feat"]);
    a.ok(&["push", "origin", "feat"]);
    let out = b.ok(&["pull", "origin", "feat"]);
    assert!(out.contains("created feat"), "{out}");
}

/// The one delta blob of the remote's `main` from version `from`.
fn delta_file(w: &World, from: u64) -> PathBuf {
    let dir = w.path("remote").join("blobs/branches/main/deltas");
    let prefix = format!("{from:020}-");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&prefix)
        })
        .unwrap_or_else(|| panic!("no delta from {from} in {}", dir.display()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(bytes).unwrap();
    strata_sync::blob::hash_file(&f).unwrap().0
}

#[test]
fn a_corrupt_blob_is_named_once() {
    let w = World::new();
    let a = w.db("a");
    a.ok(&["kv", "put", "k", "1"]);
    a.ok(&["push"]);
    a.ok(&["kv", "put", "k", "2"]);
    a.ok(&["push"]);
    let file = delta_file(&w, 1);
    let blob = format!(
        "branches/main/deltas/{}",
        file.file_name().unwrap().to_str().unwrap()
    );
    let good = std::fs::read(&file).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let check = |what: &str| {
        for (i, args) in [&["pull"][..], &["fetch"]].iter().enumerate() {
            let db = w.db(&format!("{what}-{i}"));
            let out = db.fail(args, 6);
            let err = text(&out.stderr);
            assert_eq!(err.matches(&blob).count(), 1, "{what} {args:?}: {err}");
            // ("corrupt blob" once; a decoder's own words, e.g. zstd's "Data corruption
            // detected", may follow as the cause.)
            assert_eq!(
                err.matches("corrupt blob").count(),
                1,
                "{what} {args:?}: {err}"
            );
        }
        let out = fail(w.run(&["clone", &w.remote(), what]), &["clone"], 6);
        let err = text(&out.stderr);
        assert_eq!(err.matches(&blob).count(), 1, "{what} clone: {err}");
        assert!(!w.path(what).exists(), "a failed clone leaves nothing");
    };
    // Damaged on disk: the hash does not match the cursor's.
    std::fs::write(&file, &bad).unwrap();
    check("flipped");
    // Forged: the cursor agrees with the damaged bytes, so the frames themselves are checked.
    let (old, new) = (sha256_hex(&good), sha256_hex(&bad));
    let cursors = w.path("remote").join("cursors/branches/main");
    for e in std::fs::read_dir(&cursors).unwrap() {
        let p = e.unwrap().path();
        let s = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, s.replace(&old, &new)).unwrap();
    }
    check("forged");
}

#[test]
fn status_after_a_rerun_push_shows_nothing_ahead_or_behind() {
    let w = World::new();
    let a = w.db("a");
    let clean = |db: &Db, what: &str| {
        let st = db.one(&["status"]);
        for k in [
            "ahead_versions",
            "ahead_entries",
            "behind_versions",
            "behind_entries",
        ] {
            assert_eq!(st[k], 0, "{what}: {k} in {st}");
        }
        let t = db.ok(&["status"]);
        assert!(t.contains("main is up to date with origin"), "{what}: {t}");
    };
    // A push re-run after it succeeded.
    a.ok(&["kv", "put", "k", "1"]);
    a.ok(&["push"]);
    assert_eq!(a.one(&["push"])["up_to_date"], true);
    clean(&a, "re-run");
    // A push whose reply was lost: the database is copied before the push, and the copy (same
    // identity, nothing recorded) pushes again.
    for first in [true, false] {
        let name = if first { "fresh" } else { "later" };
        let src = w.db(&format!("{name}-src"));
        src.ok(&["remote", "remove", "origin"]);
        let remote = w.path(&format!("remote-{name}"));
        src.ok(&["remote", "add", "origin", remote.to_str().unwrap()]);
        src.ok(&["kv", "put", "k", "1"]);
        // The database's identity (written into what it uploads) is made by its first push
        // anywhere; the copy must share it, as the database whose reply was lost does.
        let scratch = w.path(&format!("scratch-{name}"));
        src.ok(&["remote", "add", "scratch", scratch.to_str().unwrap()]);
        src.ok(&["push", "scratch"]);
        if !first {
            src.ok(&["push"]);
            src.ok(&["kv", "put", "k2", "2"]);
        }
        let copy = w.path(&format!("{name}-copy"));
        let status = Command::new("cp")
            .arg("-r")
            .arg(&src.path)
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(src.one(&["push"])["up_to_date"], false);
        let copy = Db { path: copy };
        let p = copy.one(&["push"]);
        assert_eq!(p["up_to_date"], true, "{name}: {p}");
        clean(&copy, name);
        clean(&src, name);
    }
    // A commit that writes the same value again is still a version: it travels like any other.
    a.ok(&["kv", "put", "k", "1"]);
    assert_eq!(a.one(&["push"])["versions"], 1);
    assert_eq!(a.one(&["push"])["up_to_date"], true);
    clean(&a, "same value");
}

/// Issue 9 from the command line: `-m`, `--author`, `STRATA_AUTHOR` and `config user.name` are
/// recorded, every version travels through push and clone with them, `history` shows every pushed
/// value, and `clone --depth` starts from the snapshot `remote compact` wrote.
#[test]
fn messages_authors_and_history_travel_and_shallow_clones() {
    let w = World::new();
    let a = w.db("a");
    a.ok(&["config", "user.name", "Ada"]);
    a.ok(&["-m", "one", "kv", "put", "k", "1"]);
    a.ok(&["-m", "two", "--author", "Grace", "kv", "put", "k", "2"]);
    let out = strata()
        .env("STRATA_AUTHOR", "Env")
        .arg("--db")
        .arg(&a.path)
        .args(["-m", "three", "kv", "put", "k", "3"])
        .output()
        .unwrap();
    ok(out, &["kv put with STRATA_AUTHOR"]);
    let p = a.json(&["push"]);
    assert_eq!(p["branches"][0]["versions"], 3, "{p}");
    let out = w.run(&["clone", &w.remote(), "c"]);
    ok(out, &["clone"]);
    let c = Db { path: w.path("c") };
    let log = c.json(&["log"]);
    let v = log["versions"].as_array().unwrap();
    let got: Vec<(u64, &str, &str)> = v
        .iter()
        .map(|c| {
            (
                c["version"].as_u64().unwrap(),
                c["message"].as_str().unwrap(),
                c["author"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(3, "three", "Env"), (2, "two", "Grace"), (1, "one", "Ada")]
    );
    assert_eq!(
        c.json(&["history", "k"])["history"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(c.json(&["-b", "main@1", "kv", "get", "k"]), json!(1));
    // Shallow: compact writes a snapshot at 3; after one more push, --depth 1 starts there.
    a.ok(&["remote", "compact", "origin"]);
    a.ok(&["-m", "four", "kv", "put", "k", "4"]);
    a.ok(&["push"]);
    ok(
        w.run(&["clone", "--depth", "1", &w.remote(), "s"]),
        &["clone --depth"],
    );
    let s = Db { path: w.path("s") };
    let versions: Vec<u64> = s.json(&["log"])["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![4, 3]);
    assert_eq!(s.json(&["kv", "get", "k"]), json!(4));
    // Squashing drops versions only when asked, and says so.
    let sq = a.ok(&["remote", "compact", "origin", "--squash-before", "2"]);
    assert!(
        sq.contains("history now starts at version 2: versions 1..2 were squashed"),
        "{sq}"
    );
    let out = w.run(&["clone", &w.remote(), "q"]);
    ok(out, &["clone after squash"]);
    let q = Db { path: w.path("q") };
    assert_eq!(q.json(&["log"])["versions"].as_array().unwrap().len(), 3);
}
