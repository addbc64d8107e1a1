//! Every command's `--json` output against the shapes in docs/cli-json.md: the envelope, each
//! command's `data`, error envelopes and their exit codes. The command list is read from `--help`,
//! so a new command without a shape here fails the test.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

fn strata() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.env_remove("STRATA_DB").env_remove("RUST_LOG");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Checks `v` against `shape`: a leaf is a type name (`string`, `number`, `bool`, `null`, `any`,
/// `object`, `array`, alternatives joined by `|`); an object lists every key (a key ending in `?`
/// may be absent) and no other key may appear; an array of one shape applies it to every element.
fn check(v: &Value, shape: &Value, at: &str) {
    match shape {
        Value::String(t) => {
            let ok = t.split('|').any(|t| match t {
                "any" => true,
                "string" => v.is_string(),
                "number" => v.is_u64() || v.is_i64() || v.is_f64(),
                "bool" => v.is_boolean(),
                "null" => v.is_null(),
                "object" => v.is_object(),
                "array" => v.is_array(),
                other => panic!("bad shape type {other:?} at {at}"),
            });
            assert!(ok, "{at}: expected {t}, got {v}");
        }
        Value::Object(fields) => {
            let obj = v
                .as_object()
                .unwrap_or_else(|| panic!("{at}: expected an object, got {v}"));
            let mut known = BTreeSet::new();
            for (k, s) in fields {
                let (name, optional) = match k.strip_suffix('?') {
                    Some(n) => (n, true),
                    None => (k.as_str(), false),
                };
                known.insert(name.to_string());
                match obj.get(name) {
                    Some(x) => check(x, s, &format!("{at}.{name}")),
                    None if optional => {}
                    None => panic!("{at}: missing field {name:?} in {v}"),
                }
            }
            for k in obj.keys() {
                assert!(known.contains(k), "{at}: undocumented field {k:?} in {v}");
            }
        }
        Value::Array(s) => {
            let arr = v
                .as_array()
                .unwrap_or_else(|| panic!("{at}: expected an array, got {v}"));
            for (i, x) in arr.iter().enumerate() {
                check(x, &s[0], &format!("{at}[{i}]"));
            }
        }
        other => panic!("bad shape {other} at {at}"),
    }
}

struct World {
    dir: tempfile::TempDir,
    covered: BTreeSet<String>,
}

impl World {
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn s(&self, p: &str) -> String {
        self.path(p).to_str().unwrap().to_string()
    }

    fn raw(&self, db: &str, args: &[&str]) -> (i32, Value, String) {
        let out = strata()
            .current_dir(self.dir.path())
            .arg("--db")
            .arg(self.path(db))
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        let stdout = text(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: not one line of JSON: {stdout:?}");
        let doc: Value = serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}"));
        (out.status.code().unwrap(), doc, text(&out.stderr))
    }

    /// Records the command path (the leading words that are not values).
    fn cover(&mut self, args: &[&str]) {
        let words: Vec<&str> = args
            .iter()
            .take_while(|a| !a.starts_with('-'))
            .copied()
            .collect();
        for n in 1..=words.len().min(2) {
            self.covered.insert(words[..n].join(" "));
        }
    }

    /// Runs with `--json` on database `db`; expects exit 0 and `data` of `shape`.
    fn ok(&mut self, db: &str, args: &[&str], shape: Value) -> Value {
        self.cover(args);
        let (code, doc, err) = self.raw(db, args);
        assert_eq!(code, 0, "{args:?} failed: {doc} {err}");
        check(&doc, &json!({"ok": "bool", "data": "any"}), "envelope");
        assert_eq!(doc["ok"], true);
        check(&doc["data"], &shape, &format!("{args:?}"));
        doc["data"].clone()
    }

    /// Runs with `--json`; expects exit `exit`, error `code`, and `detail` of `detail` (or none).
    fn err(
        &mut self,
        db: &str,
        args: &[&str],
        exit: i32,
        code: &str,
        detail: Option<Value>,
    ) -> Value {
        self.cover(args);
        let (got, doc, stderr) = self.raw(db, args);
        assert_eq!(got, exit, "{args:?}: {doc}");
        let mut shape = json!({"ok": "bool", "error": {
            "code": "string", "exit": "number", "message": "string", "detail?": "any",
        }});
        if detail.is_some() {
            shape["error"]["detail"] = detail.clone().unwrap();
            shape["error"].as_object_mut().unwrap().remove("detail?");
        }
        check(&doc, &shape, &format!("{args:?} error"));
        assert_eq!(doc["ok"], false);
        assert_eq!(doc["error"]["exit"], exit);
        assert_eq!(doc["error"]["code"], code, "{args:?}: {doc}");
        if detail.is_none() {
            assert!(doc["error"].get("detail").is_none(), "{doc}");
        }
        let msg = doc["error"]["message"].as_str().unwrap();
        assert!(
            stderr.contains(msg.lines().next().unwrap()),
            "{args:?}: stderr {stderr:?} lacks {msg:?}"
        );
        doc["error"].clone()
    }
}

fn time_fields(d: &mut Value, name: &str, nullable: bool) {
    let (n, s) = if nullable {
        ("number|null", "string|null")
    } else {
        ("number", "string")
    };
    d[format!("{name}_micros")] = json!(n);
    d[name] = json!(s);
}

fn written() -> Value {
    json!({"op": "string", "kind": "string", "branch": "string", "space": "string", "key": "string", "version": "number|null"})
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn branch_obj() -> Value {
    let mut b = json!({"branch": "string", "head": "number", "parent": "string|null",
        "parent_deleted": "bool", "fork_version": "number|null", "internal": "bool"});
    time_fields(&mut b, "created", false);
    b
}

fn remote_obj() -> Value {
    json!({"remote": "string", "url": "string", "options": "object"})
}

fn manifest() -> Value {
    let mut m = json!({"format_version": "number", "branch": "string", "from_version": "number",
        "to_version": "number", "version_count": "number", "entry_count": "number",
        "record_count": "number", "branchlog_bytes": "number", "branchlog_sha256": "string",
        "file": "string"});
    time_fields(&mut m, "created", false);
    m
}

fn conflicts_doc() -> Value {
    json!({"merged": "bool", "source": "string", "target": "string", "conflict_branch": "string|null",
        "conflicts": [{"space": "string", "kind": "string", "key": "string", "ancestor": "any",
            "source": "any", "target": "any"}]})
}

fn sync_doc(result: Value) -> Value {
    json!({"op": "string", "remote": "string", "failed": "number", "branches": [result]})
}

fn push_res() -> Value {
    json!({"ok": "bool", "remote": "string", "branch": "string", "remote_version": "number",
        "up_to_date": "bool", "versions": "number", "entries": "number", "bytes": "number",
        "blob": "string|null", "packed": "string|null", "upstream?": "string"})
}

fn fetch_res() -> Value {
    json!({"ok": "bool", "remote": "string", "branch": "string", "remote_version": "number",
        "versions": "number", "entries": "number", "bytes": "number"})
}

fn pull_res() -> Value {
    json!({"ok": "bool", "remote": "string", "branch": "string",
        "fetch": {"remote_version": "number", "versions": "number", "entries": "number", "bytes": "number"},
        "merged_version": "number|null", "applied": "number", "conflicts_resolved": "number",
        "created": "bool", "fast_forward": "bool"})
}

fn status_res() -> Value {
    let mut s = json!({"ok": "bool", "remote": "string", "branch": "string",
        "remote_version": "number|null", "mirror_version": "number", "ahead_versions": "number",
        "ahead_entries": "number", "behind_versions": "number", "behind_entries": "number"});
    time_fields(&mut s, "last_synced", true);
    s
}

fn failed_res() -> Value {
    json!({"branch": "string", "ok": "bool", "error": {"code": "string", "exit": "number",
        "message": "string", "detail?": "any"}})
}

/// Every command path `strata --help` lists, recursively (leaves and groups).
fn command_paths(prefix: &[String], out: &mut BTreeSet<String>) {
    let o = strata().args(prefix).arg("--help").output().unwrap();
    let help = text(&o.stdout);
    let mut in_cmds = false;
    for line in help.lines() {
        if line.starts_with("Commands:") {
            in_cmds = true;
            continue;
        }
        if in_cmds {
            if !line.starts_with("  ") {
                break;
            }
            let name = line
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches(',');
            if name == "help" {
                continue;
            }
            let mut p = prefix.to_vec();
            p.push(name.to_string());
            out.insert(p.join(" "));
            if p.len() < 2 {
                command_paths(&p, out);
            }
        }
    }
}

#[test]
fn every_command_prints_the_documented_json() {
    let mut w = World {
        dir: tempfile::tempdir().unwrap(),
        covered: BTreeSet::new(),
    };
    let remote = w.s("remote");

    // A missing database, before init.
    w.err("a", &["kv", "get", "k"], 3, "not_a_database", None);
    assert!(!w.path("a").exists(), "a read created the database");
    w.err("a", &["kv", "put", "k", "1"], 3, "not_a_database", None);
    assert!(!w.path("a").exists(), "a write created the database");

    w.ok("a", &["init"], json!({"path": "string", "created": "bool"}));
    let again = w.ok("a", &["init"], json!({"path": "string", "created": "bool"}));
    assert_eq!(again["created"], false);

    // Writes.
    let put = w.ok("a", &["kv", "put", "k", "{\"a\":1}"], written());
    assert_eq!(put["version"], 1);
    w.ok("a", &["kv", "put", "gone", "1"], written());
    w.ok("a", &["kv", "del", "gone"], written());
    w.ok("a", &["json", "put", "d", "{\"x\":[1]}"], written());
    w.ok(
        "a",
        &["json", "set", "d", "/y", "2"],
        with(written(), json!({"path": "string"})),
    );
    w.ok("a", &["json", "put", "gone", "1"], written());
    w.ok("a", &["json", "del", "gone"], written());
    let ev = w.ok(
        "a",
        &["event", "append", "t", "{\"p\":1}"],
        with(written(), json!({"seq": "number", "type": "string"})),
    );
    assert_eq!(ev["seq"], 1);
    w.ok("a", &["state", "set", "s", "1"], written());
    w.ok(
        "a",
        &["state", "init", "s", "2"],
        with(written(), json!({"initialized": "bool", "current?": "any"})),
    );
    w.ok(
        "a",
        &["state", "cas", "s", "--expected", "1", "3"],
        with(written(), json!({"swapped": "bool"})),
    );
    w.err(
        "a",
        &["state", "cas", "s", "--expected", "1", "4"],
        5,
        "cas_failed",
        Some(with(
            written(),
            json!({"swapped": "bool", "current": "any"}),
        )),
    );
    w.ok("a", &["state", "set", "gone", "1"], written());
    w.ok("a", &["state", "del", "gone"], written());

    // Reads.
    let v = w.ok("a", &["kv", "get", "k"], json!("any"));
    assert_eq!(v, json!({"a": 1}));
    w.ok("a", &["json", "get", "d"], json!("any"));
    w.ok("a", &["state", "get", "s"], json!("any"));
    let list_shape = json!({"branch": "string", "version": "number|null", "space": "string", "kind": "string",
        "entries": [{"key": "string", "value": "any"}]});
    w.ok("a", &["kv", "list"], list_shape.clone());
    w.ok("a", &["json", "list"], list_shape.clone());
    let mut ev = json!({"seq": "number", "type": "string", "payload": "any", "id": "string"});
    time_fields(&mut ev, "timestamp", false);
    let events = w.ok(
        "a",
        &["event", "read"],
        json!({"branch": "string", "version": "number|null", "space": "string", "events": [ev]}),
    );
    assert_eq!(events["events"].as_array().unwrap().len(), 1);
    let setting = json!({"key": "string", "value": "string|null", "changed": "bool"});
    w.ok("a", &["config", "user.name", "Ada"], setting.clone());
    let shown = w.ok("a", &["config", "user.name"], setting);
    assert_eq!(shown["value"], "Ada");
    w.ok(
        "a",
        &["config"],
        json!({"settings": [{"key": "string", "value": "string"}]}),
    );
    w.ok(
        "a",
        &[
            "-m",
            "with a message",
            "--author",
            "Grace",
            "kv",
            "put",
            "k",
            "9",
        ],
        written(),
    );
    let mut commit = json!({"version": "number", "kind": "string", "entries": "number", "message": "string", "author": "string|null"});
    time_fields(&mut commit, "timestamp", false);
    w.ok(
        "a",
        &["log"],
        json!({"branch": "string", "versions": [commit]}),
    );
    let mut h = json!({"version": "number", "deleted": "bool", "value": "any", "message?": "string|null", "author?": "string|null"});
    time_fields(&mut h, "timestamp", false);
    w.ok(
        "a",
        &["history", "k"],
        json!({"branch": "string", "version": "number|null", "space": "string",
        "kind": "string", "key": "string", "history": [h]}),
    );
    // Time travel: the past version reads, a write to it is refused.
    let past = w.ok("a", &["-b", "main@1", "kv", "list"], list_shape.clone());
    assert_eq!(past["version"], 1);
    assert_eq!(past["entries"].as_array().unwrap().len(), 1);
    w.err(
        "a",
        &["-b", "main@1", "kv", "put", "k", "2"],
        2,
        "past_version",
        None,
    );
    w.err(
        "a",
        &["-b", "main@99", "kv", "get", "k"],
        3,
        "version_not_found",
        None,
    );
    w.err("a", &["kv", "get", "nope"], 3, "not_found", None);
    w.err(
        "a",
        &["kv", "put", "x", "{\"a\":1,}"],
        2,
        "invalid_value",
        None,
    );
    w.err("a", &["kv", "frobnicate"], 2, "usage", None);

    // Branches.
    w.ok("a", &["branch", "create", "empty"], branch_obj());
    w.ok("a", &["branch", "fork", "main", "f"], branch_obj());
    w.ok("a", &["-b", "f", "kv", "put", "k", "\"f\""], written());
    w.ok("a", &["kv", "put", "k", "\"main\""], written());
    w.ok(
        "a",
        &["branch", "list"],
        json!({"branches": [branch_obj()]}),
    );
    w.ok(
        "a",
        &["branch", "info", "f"],
        with(branch_obj(), json!({"spaces": ["string"]})),
    );
    let e = json!({"kind": "string", "key": "string", "a": "any", "b": "any"});
    w.ok("a", &["branch", "diff", "main", "f"], json!({"a": "string", "b": "string", "empty": "bool",
        "counts": {"added": "number", "removed": "number", "modified": "number"},
        "spaces": [{"space": "string", "added": [e.clone()], "removed": [e.clone()], "modified": [e]}]}));
    w.err(
        "a",
        &["branch", "merge", "f", "main", "--strategy", "strict"],
        4,
        "merge_conflict",
        Some(conflicts_doc()),
    );
    w.err("a", &["branch", "delete", "f"], 2, "unmerged_branch", None);
    w.err(
        "a",
        &["branch", "delete", "main"],
        2,
        "current_branch",
        None,
    );
    w.err(
        "a",
        &["branch", "create", "bad..name"],
        2,
        "invalid_name",
        None,
    );
    w.ok(
        "a",
        &["branch", "merge", "f", "main", "--strategy", "ours"],
        json!({"merged": "bool", "source": "string",
        "target": "string", "version": "number|null", "base": "string|null", "applied": "number",
        "conflicts_resolved": "number", "events_renumbered": "number"}),
    );
    w.ok(
        "a",
        &["branch", "delete", "f"],
        json!({"branch": "string", "deleted": "bool", "head": "number"}),
    );

    // Bundles.
    let bundle = w.s("main.branchbundle.tar.zst");
    w.ok("a", &["bundle", "export", "main", &bundle], manifest());
    w.ok(
        "a",
        &["bundle", "verify", &bundle],
        with(manifest(), json!({"verified": "bool"})),
    );
    w.ok(
        "a",
        &["bundle", "import", &bundle, "--into", "copy"],
        json!({"branch": "string", "created": "bool",
        "versions": "number", "entries": "number", "head": "number", "file": "string"}),
    );

    // Import and export.
    let jsonl = w.s("dump.jsonl");
    let ex = w.ok(
        "a",
        &["export", &jsonl],
        json!({"file": "string", "branch": "string", "version": "number", "entries": "number"}),
    );
    assert!(ex["entries"].as_u64().unwrap() >= 4, "{ex}");
    w.err("a", &["export"], 2, "usage", None);
    w.ok("b", &["init"], json!({"path": "string", "created": "bool"}));
    let im = w.ok("b", &["import", &jsonl], json!({"file": "string", "branch": "string", "entries": "number", "version": "number|null"}));
    assert_eq!(im["entries"], ex["entries"]);

    // Remotes.
    w.ok("a", &["remote", "add", "hub", &remote], remote_obj());
    w.ok("a", &["remote", "list"], json!({"remotes": [remote_obj()]}));
    w.ok("a", &["remote", "-v"], json!({"remotes": [remote_obj()]}));
    w.ok("a", &["remote"], json!({"remotes": [remote_obj()]}));
    w.ok(
        "a",
        &["remote", "set-url", "hub", &remote],
        with(remote_obj(), json!({"previous_url": "string"})),
    );
    w.ok(
        "a",
        &["remote", "rename", "hub", "origin"],
        with(remote_obj(), json!({"previous_name": "string"})),
    );
    w.err("a", &["remote", "show", "nope"], 3, "not_found", None);

    // Sync, one branch and --all.
    w.ok("a", &["push", "-u"], sync_doc(push_res()));
    w.ok("a", &["push", "--all"], sync_doc(push_res()));
    w.ok("a", &["status"], sync_doc(status_res()));
    w.ok("a", &["status", "--all"], sync_doc(status_res()));
    w.ok("a", &["fetch"], sync_doc(fetch_res()));
    w.ok("a", &["fetch", "--all"], sync_doc(fetch_res()));
    w.ok("a", &["pull"], sync_doc(pull_res()));
    w.ok("a", &["pull", "--all"], sync_doc(pull_res()));
    let mut rb = json!({"branch": "string", "version": "number", "blobs": "number"});
    time_fields(&mut rb, "updated", false);
    w.ok(
        "a",
        &["remote", "branches", "origin"],
        json!({"remote": "string", "branches": [rb.clone()]}),
    );
    let show = w.ok("a", &["remote", "show", "origin"], with(remote_obj(), json!({"upstream_of": ["string"],
        "branches": [with(rb, json!({"local": "bool", "ahead_versions": "number|null", "behind_versions": "number|null"}))]})));
    assert_eq!(show["upstream_of"], json!(["main"]));
    w.ok("a", &["remote", "compact", "origin"], compact_res());
    w.ok("a", &["remote", "gc", "origin"], json!({"remote": "string", "grace_secs": "number", "referenced": "number",
        "kept_young": "number", "kept_unknown_age": "number", "deleted": "number", "bytes_freed": "number"}));
    let out = strata()
        .current_dir(w.dir.path())
        .args(["--json", "clone", &remote, "c"])
        .output()
        .unwrap();
    w.cover(&["clone"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    let mut fr = fetch_res();
    fr.as_object_mut().unwrap().remove("ok");
    fr.as_object_mut().unwrap().remove("remote");
    check(
        &doc,
        &json!({"ok": "bool", "data": {"url": "string", "path": "string", "remote": "string", "branches": [fr]}}),
        "clone",
    );

    // A rejected push and a strict pull conflict: the per-branch results are the error's detail.
    w.ok("c", &["kv", "put", "k", "\"c\""], written());
    w.ok("c", &["push"], sync_doc(push_res()));
    w.ok("a", &["kv", "put", "k", "\"a\""], written());
    w.err("a", &["push"], 7, "rejected", Some(sync_doc(failed_res())));
    w.err(
        "a",
        &["push", "--all"],
        7,
        "rejected",
        Some(sync_doc(json!("object"))),
    );
    let e = w.err(
        "a",
        &["pull", "--strategy", "strict"],
        4,
        "merge_conflict",
        Some(sync_doc(failed_res())),
    );
    check(
        &e["detail"]["branches"][0]["error"]["detail"],
        &with(
            conflicts_doc(),
            json!({"remote": "string", "branch": "string"}),
        ),
        "pull conflicts",
    );

    w.ok("c", &["branch", "fork", "main", "gone"], branch_obj());
    w.ok("c", &["push", "origin", "gone"], sync_doc(push_res()));
    w.ok(
        "c",
        &["push", "--delete", "origin", "gone"],
        json!({"remote": "string", "branch": "string",
        "remote_version": "number", "blobs": "number", "mirror_deleted": "bool"}),
    );
    w.err(
        "c",
        &["push", "--delete", "origin", "gone"],
        3,
        "not_found",
        None,
    );
    w.err("c", &["push", "--delete"], 2, "usage", None);

    w.ok(
        "a",
        &["remote", "remove", "origin"],
        with(
            remote_obj(),
            json!({"removed": "bool", "mirrors_deleted": "number"}),
        ),
    );

    // The demo.
    let demo_dir = w.s("demo");
    w.ok("a", &["demo", "--dir", &demo_dir], json!({"dir": "string", "kept": "bool", "steps": [{"step": "number", "title": "string", "result": "any"}]}));

    // Every command that --help lists was checked (completions and man print a script or a page).
    let mut all = BTreeSet::new();
    command_paths(&[], &mut all);
    for p in &all {
        if p == "completions" || p == "man" {
            continue;
        }
        assert!(
            w.covered.contains(p),
            "strata {p} has no --json shape check; covered: {:?}",
            w.covered
        );
    }
    assert!(
        all.contains("remote set-url") && all.contains("import"),
        "{all:?}"
    );
}

fn compact_res() -> Value {
    json!({"remote": "string", "branch": "string", "remote_version": "number", "up_to_date": "bool",
        "blobs_before": "number", "blobs_after": "number", "history_from": "number",
        "versions_dropped": "number", "snapshot": "string|null", "bytes": "number"})
}

#[test]
fn shapes_reject_what_they_should() {
    // The checker itself: a missing field, an extra field and a wrong type all fail.
    let shape = json!({"a": "number", "b?": "string"});
    for bad in [json!({}), json!({"a": 1, "c": 2}), json!({"a": "x"})] {
        let r = std::panic::catch_unwind(|| check(&bad, &shape, "t"));
        assert!(r.is_err(), "{bad} passed");
    }
    check(&json!({"a": 1}), &shape, "t");
    check(&json!({"a": 1, "b": "x"}), &shape, "t");
}
