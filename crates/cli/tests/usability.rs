//! What a git or Dolt user expects of the CLI (issue 10): `init` and finding the database, reads of a
//! database that cannot be written, values from stdin and files, strict JSON, JSONL import and
//! export, time travel, merge strategy names, safe branch deletion and git ref names, remote verbs
//! and upstreams, clone defaults, quiet output, completions and the man page.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

fn strata() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.env_remove("STRATA_DB").env_remove("RUST_LOG");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `strata ARGS` in folder `cwd`, optionally feeding `stdin`.
fn run_in(cwd: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut c = strata();
    c.current_dir(cwd).args(args);
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}",
        out.status.code(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// `--json` data of a successful command.
fn data(out: Output, what: &str) -> Value {
    let s = ok(out, what);
    let doc: Value = serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{what}: {e}: {s}"));
    assert_eq!(doc["ok"], true, "{what}: {doc}");
    doc["data"].clone()
}

/// Every file and folder under `root`, relative.
fn listing(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn init_then_found_from_subfolders_and_never_created() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let sub = root.join("a/b");
    std::fs::create_dir_all(&sub).unwrap();

    // Nothing anywhere: every command fails with exit 3 and creates nothing.
    for args in [
        &["kv", "get", "foo"][..],
        &["kv", "put", "foo", "1"],
        &["log"],
        &["branch", "list"],
        &["remote", "-v"],
        &["push"],
    ] {
        let out = run_in(&sub, args, None);
        assert_eq!(code(&out), 3, "{args:?}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains("not a Strata database") && err.contains("strata init"),
            "{args:?}: {err}"
        );
        assert_eq!(
            listing(root),
            [PathBuf::from("a"), PathBuf::from("a/b")],
            "{args:?}"
        );
    }
    // A typo in --db leaves nothing behind.
    let out = run_in(root, &["--db", "typo", "kv", "put", "k", "1"], None);
    assert_eq!(code(&out), 3);
    assert!(!root.join("typo").exists());

    // init here; commands in a subfolder find it (no nested .strata).
    let init = data(run_in(root, &["--json", "init"], None), "init");
    assert_eq!(init["created"], true);
    assert!(
        init["path"].as_str().unwrap().ends_with(".strata"),
        "{init}"
    );
    ok(
        run_in(&sub, &["kv", "put", "k", "1"], None),
        "put from a subfolder",
    );
    assert!(!sub.join(".strata").exists() && !root.join("a/.strata").exists());
    assert_eq!(
        data(run_in(root, &["--json", "kv", "get", "k"], None), "get"),
        json!(1)
    );
    // init again is harmless; init DIR creates DIR/.strata; STRATA_DB wins over discovery.
    let again = data(
        run_in(&sub, &["--json", "init", "../.."], None),
        "init again",
    );
    assert_eq!(again["created"], false);
    ok(run_in(root, &["init", "other"], None), "init other");
    assert!(root.join("other/.strata/strata.db").is_file());
    let out = strata()
        .current_dir(&sub)
        .env("STRATA_DB", root.join("other/.strata"))
        .args(["--json", "kv", "get", "k"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "STRATA_DB names the other, empty database");
}

/// Runs `strata` as an unprivileged user when the tests run as root (root may write any file).
fn as_reader(args: &[&str], db: &Path) -> Output {
    let root = unsafe_is_root();
    let mut c = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_strata"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_strata"))
    };
    c.env_remove("STRATA_DB")
        .env_remove("RUST_LOG")
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap()
}

fn unsafe_is_root() -> bool {
    // The owner of a file this process just created is its effective user.
    use std::os::unix::fs::MetadataExt;
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().metadata().unwrap().uid() == 0
}

#[test]
fn a_database_that_cannot_be_written_can_be_read() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    ok(
        strata().arg("--db").arg(&db).arg("init").output().unwrap(),
        "init",
    );
    for (k, v) in [("a", "1"), ("b", "2")] {
        ok(
            strata()
                .arg("--db")
                .arg(&db)
                .args(["kv", "put", k, v])
                .output()
                .unwrap(),
            "put",
        );
    }
    // Read-only for everyone but root; root's reader runs as nobody.
    let set = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    set(tmp.path(), 0o755);
    for e in std::fs::read_dir(&db).unwrap() {
        set(&e.unwrap().path(), 0o444);
    }
    set(&db, 0o555);
    let before = listing(&db);

    let out = as_reader(&["--json", "kv", "list"], &db);
    let doc: Value = serde_json::from_str(ok(out, "read-only kv list").trim()).unwrap();
    let keys: Vec<&str> = doc["data"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["a", "b"]);
    ok(as_reader(&["kv", "get", "b"], &db), "read-only get");
    ok(as_reader(&["log"], &db), "read-only log");
    ok(as_reader(&["branch", "list"], &db), "read-only branch list");
    ok(
        as_reader(&["-b", "main@1", "kv", "list"], &db),
        "read-only time travel",
    );
    // A write fails with an error (not a crash), and changes nothing.
    let out = as_reader(&["kv", "put", "c", "3"], &db);
    assert_ne!(code(&out), 0);
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("cannot be written here"),
        "{err}"
    );
    assert_eq!(listing(&db), before);
    set(&db, 0o755);
}

#[test]
fn values_from_stdin_and_files_and_strict_json() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(run_in(d, &["init"], None), "init");
    ok(
        run_in(d, &["kv", "put", "s", "-"], Some(b"{\"a\": [1, 2]}\n")),
        "stdin",
    );
    assert_eq!(
        data(run_in(d, &["--json", "kv", "get", "s"], None), "get"),
        json!({"a": [1, 2]})
    );
    ok(
        run_in(d, &["kv", "put", "w", "-"], Some(b"plain words\n")),
        "stdin words",
    );
    assert_eq!(
        data(run_in(d, &["--json", "kv", "get", "w"], None), "get"),
        json!("plain words")
    );
    ok(
        run_in(
            d,
            &["kv", "put", "--string", "raw", "-"],
            Some(b"{\"a\":1}\n"),
        ),
        "stdin --string",
    );
    assert_eq!(
        data(run_in(d, &["--json", "kv", "get", "raw"], None), "get"),
        json!("{\"a\":1}\n")
    );
    // A value over the argv limit (~128 KiB per argument) from a file.
    let big: String = "x".repeat(300_000);
    let file = d.join("big.json");
    std::fs::write(&file, format!("{{\"blob\":\"{big}\"}}")).unwrap();
    let arg = format!("@{}", file.display());
    ok(run_in(d, &["json", "put", "doc", &arg], None), "@FILE");
    let got = data(
        run_in(
            d,
            &["--json", "json", "get", "doc", "--path", "/blob"],
            None,
        ),
        "get",
    );
    assert_eq!(got.as_str().unwrap().len(), 300_000);
    let out = run_in(d, &["kv", "put", "m", "@missing.json"], None);
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("missing.json"));
    // JSON-looking typos are refused; --string keeps them as text.
    for bad in ["{\"a\":1,}", "[1, 2", "\"unterminated"] {
        let out = run_in(d, &["kv", "put", "bad", bad], None);
        assert_eq!(code(&out), 2, "{bad}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("not valid JSON"),
            "{}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains("--string"));
    }
    assert_eq!(
        code(&run_in(d, &["kv", "get", "bad"], None)),
        3,
        "nothing was stored"
    );
    ok(
        run_in(d, &["kv", "put", "--string", "bad", "{\"a\":1,}"], None),
        "--string",
    );
    assert_eq!(
        data(run_in(d, &["--json", "kv", "get", "bad"], None), "get"),
        json!("{\"a\":1,}")
    );
    // `-` alone is stdin, and a dash-leading number is still a number.
    ok(run_in(d, &["kv", "put", "neg", "-5"], None), "negative");
    assert_eq!(
        data(run_in(d, &["--json", "kv", "get", "neg"], None), "get"),
        json!(-5)
    );
}

#[test]
fn import_and_export_jsonl_in_one_transaction() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(run_in(d, &["init"], None), "init");
    let mut lines = String::new();
    for i in 0..2000 {
        lines.push_str(&format!(
            "{{\"key\":\"k{i:05}\",\"value\":{{\"i\":{i}}}}}\n"
        ));
    }
    lines.push_str("{\"space\":\"s2\",\"kind\":\"json\",\"key\":\"doc\",\"value\":{\"a\":[1]}}\n");
    lines.push_str("{\"kind\":\"state\",\"key\":\"phase\",\"value\":\"research\"}\n");
    lines.push_str("{\"kind\":\"event\",\"value\":{\"type\":\"done\",\"payload\":{\"t\":1}}}\n");
    std::fs::write(d.join("in.jsonl"), &lines).unwrap();
    let rep = data(run_in(d, &["--json", "import", "in.jsonl"], None), "import");
    assert_eq!(rep["entries"], 2003);
    assert_eq!(rep["version"], 1, "one import is one version");
    assert_eq!(
        data(run_in(d, &["--json", "kv", "get", "k01999"], None), "get"),
        json!({"i": 1999})
    );
    assert_eq!(
        data(
            run_in(d, &["--json", "-s", "s2", "json", "get", "doc"], None),
            "get"
        ),
        json!({"a": [1]})
    );
    // Export to stdout, then import into a second database: the same entries.
    let dump = ok(run_in(d, &["export"], None), "export");
    assert_eq!(dump.lines().count(), 2003);
    let first: Value = serde_json::from_str(dump.lines().next().unwrap()).unwrap();
    assert_eq!(first.as_object().unwrap().len(), 4, "{first}");
    let other = d.join("other");
    std::fs::create_dir(&other).unwrap();
    ok(run_in(&other, &["init"], None), "init other");
    ok(
        run_in(&other, &["import", "-"], Some(dump.as_bytes())),
        "import from stdin",
    );
    assert_eq!(ok(run_in(&other, &["export"], None), "export other"), dump);
    // --space limits the export.
    let s2 = ok(run_in(d, &["-s", "s2", "export"], None), "export s2");
    assert_eq!(s2.lines().count(), 1);

    // A bad line anywhere: exit 2 naming the line, nothing imported.
    let mut bad = lines.clone();
    bad.push_str("{\"key\":\"x\",\"value\":1,}\n");
    std::fs::write(d.join("bad.jsonl"), &bad).unwrap();
    let out = run_in(&other, &["import", "../bad.jsonl"], None);
    assert_eq!(code(&out), 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("line 2004") && err.contains("nothing was imported"),
        "{err}"
    );
    let log = data(run_in(&other, &["--json", "log"], None), "log");
    assert_eq!(log["versions"].as_array().unwrap().len(), 1, "{log}");
    for (line, what) in [
        ("{\"kind\":\"nope\",\"key\":\"x\",\"value\":1}", "primitive"),
        ("{\"key\":\"x\"}", "value"),
        ("{\"value\":1}", "key"),
        ("{\"key\":\"x\",\"value\":1,\"extra\":2}", "extra"),
    ] {
        std::fs::write(d.join("one.jsonl"), format!("{line}\n")).unwrap();
        let out = run_in(&other, &["import", "../one.jsonl"], None);
        assert_eq!(code(&out), 2, "{line}");
        assert!(
            text(&out.stderr).contains(what),
            "{line}: {}",
            text(&out.stderr)
        );
    }
    // Export never overwrites a file.
    std::fs::write(d.join("exists.jsonl"), "keep").unwrap();
    assert_eq!(code(&run_in(d, &["export", "exists.jsonl"], None)), 2);
    assert_eq!(
        std::fs::read_to_string(d.join("exists.jsonl")).unwrap(),
        "keep"
    );
}

#[test]
fn time_travel_reads_and_refuses_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(run_in(d, &["init"], None), "init");
    ok(run_in(d, &["kv", "put", "k", "1"], None), "v1");
    ok(run_in(d, &["json", "put", "doc", "{\"v\":1}"], None), "v2");
    ok(run_in(d, &["event", "append", "e", "1"], None), "v3");
    ok(run_in(d, &["state", "set", "c", "1"], None), "v4");
    ok(run_in(d, &["kv", "put", "k", "2"], None), "v5");
    let at = |rev: &str, args: &[&str]| {
        let mut a = vec!["--json", "-b", rev];
        a.extend_from_slice(args);
        data(run_in(d, &a, None), rev)
    };
    assert_eq!(at("main@1", &["kv", "get", "k"]), json!(1));
    assert_eq!(at("main@5", &["kv", "get", "k"]), json!(2));
    assert_eq!(at("main", &["kv", "get", "k"]), json!(2));
    assert_eq!(
        at("main@1", &["kv", "list"])["entries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(at("main@2", &["json", "get", "doc"]), json!({"v": 1}));
    assert_eq!(at("main@2", &["json", "list"])["version"], 2);
    assert_eq!(at("main@2", &["event", "read"])["events"], json!([]));
    assert_eq!(
        at("main@3", &["event", "read"])["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(at("main@4", &["state", "get", "c"]), json!(1));
    assert_eq!(
        at("main@2", &["log"])["versions"].as_array().unwrap().len(),
        2
    );
    assert_eq!(
        at("main@4", &["history", "k"])["history"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let out = run_in(d, &["-b", "main@3", "state", "get", "c"], None);
    assert_eq!(code(&out), 3, "the cell did not exist at version 3");
    let out = run_in(d, &["-b", "main@9", "kv", "get", "k"], None);
    assert_eq!(code(&out), 3);
    assert!(
        text(&out.stderr).contains("no version 9"),
        "{}",
        text(&out.stderr)
    );
    for args in [
        &["kv", "put", "k", "3"][..],
        &["kv", "del", "k"],
        &["json", "set", "doc", "/v", "2"],
        &["event", "append", "e", "2"],
        &["state", "cas", "c", "--expected", "1", "2"],
        &["import", "-"],
        &["push"],
    ] {
        let mut a = vec!["-b", "main@1"];
        a.extend_from_slice(args);
        let out = run_in(d, &a, Some(b""));
        assert_eq!(code(&out), 2, "{args:?}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains("main@1") && err.contains("past version"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(at("main", &["kv", "get", "k"]), json!(2));
}

#[test]
fn merge_strategies_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(run_in(d, &["init"], None), "init");
    let setup = |n: &str| {
        ok(run_in(d, &["branch", "fork", "main", n], None), "fork");
        ok(
            run_in(d, &["-b", n, "kv", "put", "k", "\"theirs\""], None),
            "theirs",
        );
        ok(
            run_in(d, &["-b", n, "kv", "put", &format!("only-{n}"), "1"], None),
            "only",
        );
    };
    ok(run_in(d, &["kv", "put", "k", "\"base\""], None), "base");
    for (strategy, want) in [("ours", "ours"), ("theirs", "theirs"), ("lww", "theirs")] {
        ok(run_in(d, &["kv", "put", "k", "\"base\""], None), "reset");
        let name = format!("f-{strategy}");
        setup(&name);
        ok(run_in(d, &["kv", "put", "k", "\"ours\""], None), "ours");
        let m = data(
            run_in(
                d,
                &[
                    "--json",
                    "branch",
                    "merge",
                    &name,
                    "main",
                    "--strategy",
                    strategy,
                ],
                None,
            ),
            strategy,
        );
        assert_eq!(m["conflicts_resolved"], 1, "{strategy}: {m}");
        assert_eq!(
            data(run_in(d, &["--json", "kv", "get", "k"], None), "get"),
            json!(want),
            "{strategy}"
        );
        assert_eq!(
            data(
                run_in(d, &["--json", "kv", "get", &format!("only-{name}")], None),
                "get"
            ),
            json!(1),
            "{strategy}: the other changes apply"
        );
    }
    let help = ok(run_in(d, &["branch", "merge", "--help"], None), "help");
    assert!(
        help.contains("theirs") && help.contains("ours") && help.contains("strict"),
        "{help}"
    );
}

#[test]
fn branch_delete_is_safe_and_names_follow_git() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(run_in(d, &["init"], None), "init");
    ok(run_in(d, &["kv", "put", "k", "1"], None), "put");
    // The current branch.
    let out = run_in(d, &["branch", "delete", "main"], None);
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    ok(
        run_in(d, &["branch", "info", "main"], None),
        "main is still there",
    );
    // Unmerged versions.
    ok(run_in(d, &["branch", "fork", "main", "work"], None), "fork");
    ok(
        run_in(d, &["-b", "work", "kv", "put", "w", "1"], None),
        "work",
    );
    let out = run_in(d, &["branch", "delete", "work"], None);
    assert_eq!(code(&out), 2);
    let err = text(&out.stderr);
    assert!(
        err.contains("does not contain") && err.contains("--force"),
        "{err}"
    );
    // Merged: deletes. And -b names the branch the check is against.
    ok(
        run_in(d, &["branch", "merge", "work", "main"], None),
        "merge",
    );
    ok(
        run_in(d, &["branch", "delete", "work"], None),
        "merged branch",
    );
    ok(run_in(d, &["branch", "fork", "main", "side"], None), "fork");
    ok(
        run_in(d, &["-b", "side", "kv", "put", "s", "1"], None),
        "side",
    );
    assert_eq!(
        code(&run_in(
            d,
            &["-b", "side", "branch", "delete", "side"],
            None
        )),
        2
    );
    ok(
        run_in(d, &["branch", "delete", "side", "--force"], None),
        "--force",
    );
    ok(run_in(d, &["branch", "create", "tmp"], None), "create");
    ok(
        run_in(d, &["-b", "tmp", "branch", "delete", "-f", "tmp"], None),
        "-f current",
    );
    // git's ref rules.
    for bad in [
        "bad..name",
        "x.lock",
        "a//b",
        "/a",
        "a/",
        ".hidden",
        "a b",
        "a:b",
        "a~1",
        "a^",
        "a?",
        "a*",
        "a[b",
        "a\\b",
        "a@{1}",
        "@",
        "end.",
    ] {
        let out = run_in(d, &["branch", "create", bad], None);
        assert_eq!(code(&out), 2, "{bad:?} was accepted");
        assert!(
            text(&out.stderr).contains("invalid branch name"),
            "{bad:?}: {}",
            text(&out.stderr)
        );
    }
    for good in ["feature/x-1", "v1.2", "agent_b"] {
        ok(run_in(d, &["branch", "create", good], None), good);
    }
}

#[test]
fn remote_verbs_upstream_and_clone_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let a = d.join("a");
    std::fs::create_dir(&a).unwrap();
    ok(run_in(&a, &["init"], None), "init");
    ok(run_in(&a, &["kv", "put", "k", "1"], None), "put");
    // A relative path is stored normalised (no `..`).
    std::fs::create_dir(d.join("x")).unwrap();
    ok(
        run_in(&a, &["remote", "add", "hub", "../x/../shared"], None),
        "add",
    );
    let list = data(run_in(&a, &["--json", "remote", "-v"], None), "-v");
    let url = list["remotes"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(
        Path::new(&url),
        std::fs::canonicalize(d).unwrap().join("shared"),
        "{url}"
    );
    assert!(!url.contains(".."), "{url}");
    assert_eq!(ok(run_in(&a, &["remote"], None), "remote"), "hub\n");
    assert_eq!(
        ok(run_in(&a, &["remote", "-v"], None), "remote -v"),
        format!("hub\t{url}\n")
    );
    // With one remote (not named origin), bare push, pull and status use it.
    ok(run_in(&a, &["push"], None), "push to the only remote");
    ok(run_in(&a, &["status"], None), "status");
    // A second remote: then the upstream decides.
    ok(
        run_in(&a, &["remote", "add", "backup", "../backup"], None),
        "add backup",
    );
    let p = data(
        run_in(&a, &["--json", "push", "-u", "backup"], None),
        "push -u",
    );
    assert_eq!(p["branches"][0]["upstream"], "backup");
    ok(run_in(&a, &["kv", "put", "k", "2"], None), "put");
    let p = data(
        run_in(&a, &["--json", "push"], None),
        "push to the upstream",
    );
    assert_eq!(p["remote"], "backup");
    let st = data(run_in(&a, &["--json", "status"], None), "status");
    assert_eq!(st["remote"], "backup");
    // set-url, rename (with mirrors and upstreams), show.
    std::fs::rename(d.join("backup"), d.join("moved")).unwrap();
    let su = data(
        run_in(
            &a,
            &["--json", "remote", "set-url", "backup", "../moved"],
            None,
        ),
        "set-url",
    );
    assert!(su["url"].as_str().unwrap().ends_with("moved"), "{su}");
    let p = data(run_in(&a, &["--json", "push"], None), "push after set-url");
    assert_eq!(
        p["branches"][0]["up_to_date"], true,
        "the moved remote holds it: {p}"
    );
    ok(
        run_in(&a, &["remote", "rename", "backup", "bk"], None),
        "rename",
    );
    let p = data(run_in(&a, &["--json", "push"], None), "push after rename");
    assert_eq!(p["remote"], "bk", "the upstream follows the rename");
    assert_eq!(
        p["branches"][0]["up_to_date"], true,
        "the mirror and sync state follow the rename"
    );
    let all = data(
        run_in(&a, &["--json", "branch", "list", "--all"], None),
        "branches",
    );
    let names: Vec<String> = all["branches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["branch"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"_origin:bk:main".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.contains(":backup:")), "{names:?}");
    assert_eq!(
        code(&run_in(&a, &["remote", "rename", "bk", "hub"], None)),
        2,
        "taken"
    );
    assert_eq!(
        code(&run_in(&a, &["remote", "rename", "nope", "x"], None)),
        3
    );
    let show = data(
        run_in(&a, &["--json", "remote", "show", "hub"], None),
        "show",
    );
    assert_eq!(show["branches"][0]["branch"], "main");
    assert_eq!(show["branches"][0]["ahead_versions"], 1, "{show}");
    assert_eq!(show["branches"][0]["behind_versions"], 0, "{show}");
    let shown = ok(run_in(&a, &["remote", "show", "bk"], None), "show text");
    assert!(
        shown.contains("upstream of: main") && shown.contains("up to date"),
        "{shown}"
    );

    // Progress: phases and branch names, "branch N of M" with --all; off by default in a pipe.
    ok(run_in(&a, &["kv", "put", "p", "1"], None), "put");
    let out = run_in(&a, &["push", "hub"], None);
    assert!(
        text(&out.stderr).is_empty(),
        "no progress unless asked: {}",
        text(&out.stderr)
    );
    ok(run_in(&a, &["kv", "put", "p", "2"], None), "put");
    let out = run_in(&a, &["--progress", "push", "hub"], None);
    let err = text(&out.stderr);
    for want in [
        "push main: building the delta",
        "push main: uploading",
        "push main: upload main (",
        "push main: publishing",
    ] {
        assert!(err.contains(want), "lacks {want:?}: {err}");
    }
    assert!(
        !err.contains(".blob") && !err.contains("deltas/"),
        "blob names shown: {err}"
    );
    ok(run_in(&a, &["branch", "fork", "main", "exp"], None), "fork");
    let out = run_in(&a, &["--progress", "push", "hub", "--all"], None);
    let err = text(&out.stderr);
    assert!(err.contains("push exp (branch 1 of 2): uploading"), "{err}");
    assert!(err.contains("push main (branch 2 of 2)"), "{err}");
    let out = run_in(&a, &["--progress", "--no-progress", "push", "hub"], None);
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));

    // clone: DIR defaults to the URL's last segment; -b clones one branch.
    ok(run_in(&a, &["push", "hub", "--all"], None), "push --all");
    let clones = d.join("clones");
    std::fs::create_dir(&clones).unwrap();
    ok(
        run_in(&clones, &["clone", "../shared"], None),
        "clone without DIR",
    );
    // The clone is a database folder; commands run inside it find it.
    let cloned = data(
        run_in(&clones.join("shared"), &["--json", "branch", "list"], None),
        "list",
    );
    assert_eq!(cloned["branches"].as_array().unwrap().len(), 2, "{cloned}");
    let c = data(
        run_in(d, &["--json", "clone", "-b", "exp", "shared", "one"], None),
        "clone -b",
    );
    assert_eq!(c["branches"].as_array().unwrap().len(), 1);
    assert_eq!(c["branches"][0]["branch"], "exp");
    // push --delete: gone for clones and listings, gc reclaims its blobs, a push brings it back.
    let del = data(
        run_in(&a, &["--json", "push", "--delete", "hub", "exp"], None),
        "push --delete",
    );
    assert_eq!(del["branch"], "exp");
    assert_eq!(del["mirror_deleted"], true);
    let rb = data(
        run_in(&a, &["--json", "remote", "branches", "hub"], None),
        "branches",
    );
    assert_eq!(rb["branches"].as_array().unwrap().len(), 1, "{rb}");
    let out = run_in(d, &["clone", "-b", "exp", "shared", "exp-clone"], None);
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));
    let gc = data(
        run_in(&a, &["--json", "remote", "gc", "hub", "--grace", "0"], None),
        "gc",
    );
    assert!(gc["deleted"].as_u64().unwrap() >= 1, "{gc}");
    ok(
        run_in(&a, &["-b", "exp", "kv", "put", "again", "1"], None),
        "put",
    );
    ok(
        run_in(&a, &["push", "hub", "exp"], None),
        "push after delete",
    );
    let rb = data(
        run_in(&a, &["--json", "remote", "branches", "hub"], None),
        "branches",
    );
    assert_eq!(rb["branches"].as_array().unwrap().len(), 2, "{rb}");
    ok(
        run_in(d, &["clone", "-b", "exp", "shared", "exp-clone"], None),
        "clone the re-pushed branch",
    );
    assert_eq!(
        code(&run_in(&a, &["push", "--delete", "hub", "nope"], None)),
        3
    );

    let out = run_in(d, &["clone", "-b", "ghost", "shared", "ghost"], None);
    assert_eq!(code(&out), 3);
    assert!(!d.join("ghost").exists());
    assert_eq!(
        code(&run_in(d, &["clone", "shared"], None)),
        2,
        "shared exists now"
    );
}

#[test]
fn quiet_completions_and_man_page() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(run_in(d, &["init"], None), "init");
    assert_eq!(
        ok(run_in(d, &["-q", "kv", "put", "k", "1"], None), "-q"),
        ""
    );
    // -q silences confirmations, not the data a read was asked for.
    assert_eq!(
        ok(run_in(d, &["kv", "get", "k", "--quiet"], None), "-q get"),
        "1\n"
    );
    assert_eq!(
        ok(
            run_in(d, &["-q", "branch", "create", "x"], None),
            "-q create"
        ),
        ""
    );
    assert!(!ok(
        run_in(d, &["-q", "--json", "kv", "get", "k"], None),
        "-q --json"
    )
    .is_empty());
    let out = run_in(d, &["-q", "kv", "get", "nope"], None);
    assert_eq!(code(&out), 3);
    assert!(text(&out.stderr).starts_with("error: "));
    for (shell, marker) in [
        ("bash", "complete"),
        ("zsh", "#compdef strata"),
        ("fish", "complete -c strata"),
    ] {
        let s = ok(run_in(d, &["completions", shell], None), shell);
        assert!(
            s.contains(marker) && s.contains("set-url"),
            "{shell}: {}",
            &s[..s.len().min(300)]
        );
    }
    let man = ok(run_in(d, &["man"], None), "man");
    assert!(
        man.starts_with(".ie") || man.contains(".TH strata"),
        "{}",
        &man[..man.len().min(300)]
    );
    assert!(man.contains("init") && man.contains("completions"));
}
