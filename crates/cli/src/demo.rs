//! `strata demo`: a guided tour of the engine on the agent-memory example of seed 004, then seed 004's
//! end-to-end sync walkthrough: two agents' databases syncing through a folder remote.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{json, Value as J};
use strata_engine::bundle::verify_bundle;
use strata_engine::{
    BranchDiff, DiffEntry, EntryKey, Error, Kind, MergeStrategy, Rev, SpaceDiff, Strata, Value,
};

use strata_sync::{PullOptions, SyncError, SyncExt};
use tokio::runtime::Runtime;

use crate::failure::{Failure, EXIT_ERROR};
use crate::render::{self, display_key, print_line, Out, Rendered, Snapshot};

/// Prints each step as it completes (text), or collects them into one document (`--json`).
struct Tour {
    out: Out,
    steps: Vec<J>,
}

impl Tour {
    fn step(&mut self, title: &str, res: Rendered) {
        let n = self.steps.len() + 1;
        if !self.out.json {
            print_line(&format!("\n== {n}. {title} ==\n{}", res.text.trim_end()));
        }
        self.steps
            .push(json!({"step": n, "title": title, "result": res.doc}));
    }
}

fn join(parts: Vec<Rendered>, keys: &[&str]) -> Rendered {
    let mut doc = serde_json::Map::new();
    let mut text = Vec::new();
    for (k, p) in keys.iter().zip(parts) {
        doc.insert(k.to_string(), p.doc);
        if !p.text.is_empty() {
            text.push(p.text);
        }
    }
    Rendered {
        doc: J::Object(doc),
        text: text.join("\n\n"),
    }
}

fn note(text: impl Into<String>) -> Rendered {
    let text = text.into();
    Rendered {
        doc: J::String(text.clone()),
        text,
    }
}

/// Every live entry of a branch, read through the listing calls (kv, json, events per space) and, since
/// state cells have no listing call, the cell names found in the change log.
pub fn snapshot(db: &Strata, branch: &str) -> Result<Snapshot, Failure> {
    let mut snap = Snapshot::new();
    let mut cells = BTreeSet::new();
    for cs in db.changes_since(branch, 0)? {
        let cs = cs?;
        for k in cs.puts.iter().map(|(k, _)| k).chain(&cs.deletes) {
            if k.kind == Kind::State {
                cells.insert((k.space.clone(), k.key.clone()));
            }
        }
    }
    for space in db.list_spaces(branch)? {
        if space.starts_with('_') {
            continue;
        }
        let sc = db.on(branch).space(&space)?;
        for (k, v) in sc.kv_list("")? {
            snap.insert(EntryKey::new(&space, Kind::Kv, k), v);
        }
        for (k, v) in sc.json_list("")? {
            snap.insert(EntryKey::new(&space, Kind::Json, k), v);
        }
        for e in sc.event_range(1, usize::MAX)? {
            let v = Value::object([
                ("type", Value::from(e.event_type)),
                ("payload", e.payload),
                ("ts", Value::Int(e.timestamp_micros as i64)),
                ("id", Value::Int(e.id as i64)),
            ]);
            snap.insert(
                EntryKey::new(&space, Kind::Event, format!("{:020}", e.seq)),
                v,
            );
        }
    }
    for (space, cell) in cells {
        if let Some(v) = db.on(branch).space(&space)?.state_get(&cell)? {
            snap.insert(EntryKey::new(space, Kind::State, cell), v);
        }
    }
    Ok(snap)
}

/// The differences between two snapshots, in the engine's diff shape.
fn compare(a: &Snapshot, b: &Snapshot) -> BranchDiff {
    let mut spaces: BTreeMap<String, SpaceDiff> = BTreeMap::new();
    let keys: BTreeSet<&EntryKey> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        if x == y {
            continue;
        }
        let sd = spaces.entry(k.space.clone()).or_insert_with(|| SpaceDiff {
            space: k.space.clone(),
            ..Default::default()
        });
        let e = DiffEntry {
            kind: k.kind,
            key: display_key(k),
            a: x.cloned(),
            b: y.cloned(),
        };
        match (x, y) {
            (None, _) => sd.added.push(e),
            (_, None) => sd.removed.push(e),
            _ => sd.modified.push(e),
        }
    }
    BranchDiff {
        spaces: spaces.into_values().collect(),
    }
}

fn task(result: &str) -> Value {
    json!({"status": "done", "result": result}).into()
}

/// The folders a demo creates; a folder holding any of them already holds a demo.
const DEMO_FOLDERS: [&str; 6] = [
    "original", "replica", "agent-a", "agent-b", "agent-c", "remote",
];

/// Runs the tour in `dir` (or a temporary folder).
pub fn run(dir: Option<PathBuf>, out: Out, rt: &Runtime) -> Result<(), Failure> {
    let mut temp = None;
    let root = match dir {
        Some(d) => {
            if DEMO_FOLDERS.iter().any(|f| d.join(f).exists()) {
                return Err(Failure::new(
                    EXIT_ERROR,
                    format!(
                        "{} already holds a demo; choose a new or empty folder",
                        d.display()
                    ),
                ));
            }
            std::fs::create_dir_all(&d)?;
            d
        }
        None => {
            let t = tempfile::Builder::new().prefix("strata-demo-").tempdir()?;
            let p = t.path().to_path_buf();
            temp = Some(t);
            p
        }
    };
    let kept = temp.is_none();
    let mut tour = Tour {
        out,
        steps: Vec::new(),
    };
    if !out.json {
        let how = if kept {
            "kept"
        } else {
            "temporary; pass --dir DIR to keep it"
        };
        print_line(&format!("Strata demo in {} ({how})", root.display()));
    }

    // 1. Open.
    let db_path = root.join("original");
    let db = Strata::open(&db_path)?;
    tour.step(
        "Open a database",
        Rendered {
            doc: json!({"path": db_path.display().to_string()}),
            text: format!(
                "strata --db {} init: a folder, with an empty branch main",
                db_path.display()
            ),
        },
    );

    // 2. Agent memory on main, one version per write.
    let main = db.main();
    main.kv_put("config", json!({"model": "gpt-4", "temperature": 0.7}))?;
    main.json_put(
        "notes/research.md",
        json!({"title": "Research", "body": "# Research\n\n## Findings\n...", "tags": ["agents"]}),
    )?;
    main.kv_put("task:1", task("..."))?;
    main.kv_put("task:2", task("..."))?;
    main.event_append("task_completed", json!({"task": 1}))?;
    main.event_append("task_completed", json!({"task": 2}))?;
    main.state_set("phase", "research")?;
    tour.step(
        "Write agent memory to main: kv, a JSON document, events, a state cell",
        join(
            vec![
                render::snapshot(&snapshot(&db, "main")?),
                render::commits("main", &db.log("main", 20)?),
            ],
            &["contents", "log"],
        ),
    );

    // 3. Fork.
    let info = db.fork_branch("main", "experiment")?;
    tour.step(
        "Fork main into experiment (copy-on-write: no entry is copied)",
        join(
            vec![
                render::branch_created(&info),
                render::branches(&db.list_branches(false)?),
            ],
            &["fork", "branches"],
        ),
    );

    // 4. Work on the fork in one transaction, and on main meanwhile.
    let ((), v) = db.transaction("experiment", |tx| {
        tx.kv_put("task:3", task("new approach"))?;
        tx.kv_put("config", json!({"model": "gpt-4", "temperature": 0.9}))?;
        tx.kv_delete("task:2")?;
        tx.json_set_path("notes/research.md", "/tags/-", "experiment")?;
        tx.event_append("task_completed", json!({"task": 3}))?;
        tx.state_cas(
            "phase",
            Some(&Value::from("research")),
            Some(Value::from("experiment")),
        )?;
        Ok(())
    })?;
    main.kv_put("task:4", task("done on main meanwhile"))?;
    let ops = [
        "experiment: kv put task:3, kv put config (temperature 0.9), kv del task:2,",
        "            json set notes/research.md /tags/- \"experiment\", event append task_completed,",
        "            state cas phase \"research\" -> \"experiment\"",
    ];
    tour.step(
        "Write to experiment in one transaction (and to main meanwhile)",
        Rendered {
            doc: json!({"experiment_version": v, "main_version": db.branch_info("main")?.head}),
            text: format!(
                "{}\n  => one version: experiment@{}\nmain: kv put task:4 => main@{}",
                ops.join("\n"),
                v.unwrap_or(0),
                db.branch_info("main")?.head
            ),
        },
    );

    // 5. Diff.
    let d = db.diff(&Rev::head("main"), &Rev::head("experiment"))?;
    tour.step(
        "Diff main..experiment",
        render::diff("main", "experiment", &d),
    );

    // 6. LWW merge.
    let src = Rev::head("experiment");
    let report = db.merge(&src, "main", MergeStrategy::LastWriterWins)?;
    tour.step(
        "Merge experiment into main (--strategy theirs: on a conflict the source wins)",
        join(
            vec![
                render::merged(&src, "main", &report),
                render::snapshot(&snapshot(&db, "main")?),
                render::commits("main", &db.log("main", 20)?),
            ],
            &["merge", "contents", "log"],
        ),
    );

    // 6b. Time travel: read main as it was before the merge.
    let before = report.version.unwrap_or(1).saturating_sub(1).max(1);
    let past = Rev::at("main", before);
    let then = db.at(&past).kv_list("")?;
    tour.step(
        "Time travel: read main as it was before the merge",
        join(
            vec![
                note(format!(
                    "strata -b main@{before} kv list (writes to main@{before} are refused)"
                )),
                render::entries(
                    render::ReadAt {
                        rev: &past,
                        space: "default",
                    },
                    Kind::Kv,
                    &then,
                ),
            ],
            &["command", "entries"],
        ),
    );

    // 7. Strict merge with a conflict, saved to a branch.
    db.fork_branch("main", "agent-a")?;
    db.fork_branch("main", "agent-b")?;
    db.on("agent-a").kv_put("task:1", task("approach A"))?;
    db.on("agent-b").kv_put("task:1", task("approach B"))?;
    let a = Rev::head("agent-a");
    let first = db.merge(&a, "main", MergeStrategy::Strict)?;
    let conflicts = match db.merge(&Rev::head("agent-b"), "main", MergeStrategy::Strict) {
        Err(Error::MergeConflicts(list)) => list,
        Err(e) => return Err(e.into()),
        Ok(_) => {
            return Err(Failure::new(
                EXIT_ERROR,
                "the demo's strict merge unexpectedly had no conflict",
            ))
        }
    };
    let saved = db.save_conflicts("main", &conflicts, "conflicts/agent-b")?;
    let saved_list = db.on(&saved.name).space("conflicts")?.kv_list("")?;
    tour.step(
        "Strict merge: agent-a and agent-b both changed task:1",
        join(
            vec![
                note("agent-a: kv put task:1 {\"result\":\"approach A\"}; agent-b: kv put task:1 {\"result\":\"approach B\"}"),
                render::merged(&a, "main", &first),
                render::conflicts("agent-b", "main", &conflicts, Some(&saved)),
                render::entries(
                    render::ReadAt {
                        rev: &Rev::head(&saved.name),
                        space: "conflicts",
                    },
                    Kind::Kv,
                    &saved_list,
                ),
            ],
            &["setup", "merge_agent_a", "merge_agent_b", "conflict_branch_entries"],
        ),
    );

    // 8-9. Bundle export and verify.
    let file = root.join("main.branchbundle.tar.zst");
    let m = db.export_bundle("main", None, &file)?;
    tour.step("Export main to a bundle", render::exported(&file, &m));
    let m = verify_bundle(&file)?;
    tour.step("Verify the bundle", render::verified(&file, &m));

    // 10. Import into a second database.
    let replica_path = root.join("replica");
    let replica = Strata::open(&replica_path)?;
    let rep = replica.import_bundle(&file, None)?;
    tour.step(
        "Import the bundle into a second, fresh database",
        join(
            vec![
                note(format!("strata --db {} init", replica_path.display())),
                render::imported(&file, &rep),
                render::commits(&rep.branch, &replica.log(&rep.branch, 20)?),
            ],
            &["database", "import", "log"],
        ),
    );

    // 11. Compare.
    let (orig, copy) = (snapshot(&db, "main")?, snapshot(&replica, &rep.branch)?);
    let d = compare(&orig, &copy);
    let mut res = render::diff("original:main", &format!("replica:{}", rep.branch), &d);
    res.doc["entries_compared"] = orig.len().into();
    res.text.push_str(&format!(
        " ({} entries compared: kv, json, events and state in every space)",
        orig.len()
    ));
    tour.step("Compare the original and imported main", res);
    if !d.is_empty() {
        return Err(Failure::new(
            EXIT_ERROR,
            "the imported branch differs from the original",
        ));
    }

    sync_tour(&root, &mut tour, rt)?;

    if out.json {
        out.emit(Rendered {
            doc: json!({"dir": root.display().to_string(), "kept": kept, "steps": tour.steps}),
            text: String::new(),
        });
    } else {
        print_line("\ndone.");
    }
    Ok(())
}

/// The keys a push of `branch` to `remote` will upload: the difference between the branch and its
/// origin mirror (everything, before the first push). Deletions show as `-key`.
fn unpushed_keys(db: &Strata, remote: &str, branch: &str) -> Result<Vec<String>, Failure> {
    let mirror = strata_sync::mirror_name(remote, branch);
    let mut keys = Vec::new();
    if db.branch_exists(&mirror)? {
        let d = db.diff(&Rev::head(&mirror), &Rev::head(branch))?;
        for s in d.spaces.iter().filter(|s| !s.space.starts_with('_')) {
            keys.extend(s.added.iter().chain(&s.modified).map(|e| e.key.clone()));
            keys.extend(s.removed.iter().map(|e| format!("-{}", e.key)));
        }
    } else {
        keys.extend(snapshot(db, branch)?.keys().map(display_key));
    }
    keys.sort();
    Ok(keys)
}

/// Pushes and shows which keys went up.
fn push_showing_keys(
    rt: &Runtime,
    db: &Strata,
    who: &str,
    remote: &str,
) -> Result<Rendered, Failure> {
    let keys = unpushed_keys(db, remote, "main")?;
    let report = rt.block_on(db.push(remote, "main"))?;
    if report.entries != keys.len() as u64 {
        return Err(Failure::new(
            EXIT_ERROR,
            format!(
                "the push uploaded {} entries, but main differed from its mirror in {}",
                report.entries,
                keys.len()
            ),
        ));
    }
    let mut res = render::pushed(remote, &report);
    res.doc["uploaded_keys"] = json!(keys);
    res.text = format!(
        "{who}: {}\n  uploaded: {}",
        res.text,
        if keys.is_empty() {
            "nothing".to_string()
        } else {
            keys.join(", ")
        }
    );
    Ok(res)
}

fn status_of(rt: &Runtime, db: &Strata, who: &str, remote: &str) -> Result<Rendered, Failure> {
    let s = rt.block_on(db.sync_status(remote, "main"))?;
    let mut res = render::sync_status(remote, &s);
    res.text = format!("{who}: {}", res.text);
    Ok(res)
}

fn said(who: &str, mut res: Rendered) -> Rendered {
    res.text = format!("{who}: {}", res.text);
    res
}

fn pending(who: &str, what: &str) -> Failure {
    Failure::new(
        EXIT_ERROR,
        format!("the demo expected {who}'s {what}, but it did not happen"),
    )
}

/// Seed 004's end-to-end walkthrough: agents A and B, each with its own database, sync `main` through
/// a folder remote named `hub`; then a conflict under both strategies, and a clone.
fn sync_tour(root: &std::path::Path, tour: &mut Tour, rt: &Runtime) -> Result<(), Failure> {
    let remote_dir = root.join("remote");
    let url = std::path::absolute(&remote_dir)?
        .to_string_lossy()
        .into_owned();
    let hub = "hub";

    // Agent A works locally, then registers the remote.
    let a_path = root.join("agent-a");
    let a = Strata::open(&a_path)?;
    let main = a.main();
    main.kv_put("config", json!({"model": "gpt-4", "temperature": 0.7}))?;
    main.json_put("notes/research.md", json!("# Research\n\n## Findings\n..."))?;
    main.kv_put("task:1", task("..."))?;
    main.kv_put("task:2", task("..."))?;
    a.remote_add(hub, &url)?;
    tour.step(
        "Sync: agent A writes four entries and adds a folder remote",
        join(
            vec![
                note(format!(
                    "strata --db {} init; strata remote add {hub} {url}",
                    a_path.display()
                )),
                render::snapshot(&snapshot(&a, "main")?),
                status_of(rt, &a, "A", hub)?,
            ],
            &["setup", "contents", "status"],
        ),
    );

    // First push: everything.
    tour.step(
        "Agent A pushes: all four entries",
        push_showing_keys(rt, &a, "A", hub)?,
    );

    // Agent B pulls into an empty database.
    let b_path = root.join("agent-b");
    let b = Strata::open(&b_path)?;
    b.remote_add(hub, &url)?;
    let pulled = rt.block_on(b.pull(hub, "main"))?;
    tour.step(
        "Agent B pulls into its empty database",
        join(
            vec![
                note(format!(
                    "strata --db {} init; strata remote add {hub} {url}; strata pull",
                    b_path.display()
                )),
                said("B", render::pulled(hub, &pulled)),
                render::snapshot(&snapshot(&b, "main")?),
            ],
            &["setup", "pull", "contents"],
        ),
    );

    // Both work independently.
    a.main().kv_put("task:3", task("..."))?;
    a.main().kv_put("task:4", task("..."))?;
    b.main().kv_put("task:5", task("..."))?;
    b.main().kv_put("task:6", task("..."))?;
    tour.step(
        "Both agents work independently",
        join(
            vec![
                note("A: kv put task:3, task:4; B: kv put task:5, task:6"),
                status_of(rt, &a, "A", hub)?,
                status_of(rt, &b, "B", hub)?,
            ],
            &["writes", "status_a", "status_b"],
        ),
    );

    tour.step(
        "Agent A pushes only its two new entries",
        push_showing_keys(rt, &a, "A", hub)?,
    );

    // B's push is rejected.
    let rejected = match rt.block_on(b.push(hub, "main")) {
        Err(e @ SyncError::Rejected(_)) => e.to_string(),
        Err(e) => return Err(e.into()),
        Ok(_) => return Err(pending("B", "push to be rejected")),
    };
    tour.step(
        "Agent B pushes: rejected, the remote has A's changes",
        join(
            vec![
                Rendered {
                    doc: json!({"rejected": true, "error": rejected, "exit_code": crate::failure::EXIT_REJECTED}),
                    text: format!(
                        "B: error: {rejected}\n   (the CLI exits with code {})",
                        crate::failure::EXIT_REJECTED
                    ),
                },
                status_of(rt, &b, "B", hub)?,
            ],
            &["push", "status"],
        ),
    );

    // B pulls (a clean merge), then pushes only its own work.
    let pulled = rt.block_on(b.pull(hub, "main"))?;
    let pulled = said("B", render::pulled(hub, &pulled));
    let pushed = push_showing_keys(rt, &b, "B", hub)?;
    tour.step(
        "Agent B pulls (a clean merge), then pushes only its own work",
        join(vec![pulled, pushed], &["pull", "push"]),
    );

    // A pulls: both hold the same data.
    let pulled = rt.block_on(a.pull(hub, "main"))?;
    let (sa, sb) = (snapshot(&a, "main")?, snapshot(&b, "main")?);
    let d = compare(&sa, &sb);
    let mut same = render::diff("A:main", "B:main", &d);
    same.doc["entries_compared"] = sa.len().into();
    same.text
        .push_str(&format!(" ({} entries compared)", sa.len()));
    tour.step(
        "Agent A pulls: both agents hold the same six tasks",
        join(
            vec![said("A", render::pulled(hub, &pulled)), same],
            &["pull", "compare"],
        ),
    );
    if !d.is_empty() {
        return Err(Failure::new(
            EXIT_ERROR,
            "agents A and B differ after syncing",
        ));
    }

    // Conflict: both change task:1; A pushes first; B pulls with strict.
    a.main().kv_put("task:1", task("approach A"))?;
    b.main().kv_put("task:1", task("approach B"))?;
    let a_push = push_showing_keys(rt, &a, "A", hub)?;
    let opts = PullOptions {
        strategy: MergeStrategy::Strict,
        conflict_branch: Some("conflicts/pull-1".into()),
        ..Default::default()
    };
    let conflicts = match rt.block_on(b.pull_with(hub, "main", &opts)) {
        Err(SyncError::Conflicts(list)) => list,
        Err(e) => return Err(e.into()),
        Ok(_) => return Err(pending("B", "strict pull to conflict")),
    };
    let saved = b.branch_info("conflicts/pull-1")?;
    let b_value = b.main().kv_get("task:1")?.unwrap_or(Value::Null);
    tour.step(
        "Conflict: both change task:1, A pushes, B pulls with --strategy strict",
        join(
            vec![
                note("A: kv put task:1 {\"result\":\"approach A\"}; B: kv put task:1 {\"result\":\"approach B\"}"),
                a_push,
                said(
                    "B",
                    render::pull_conflicts(hub, "main", &conflicts, Some(&saved)),
                ),
                note(format!(
                    "B's main still holds task:1 = {} (the CLI exits with code 4)",
                    render::compact(&b_value)
                )),
            ],
            &["writes", "push_a", "pull_b_strict", "b_main"],
        ),
    );

    // B pulls with --strategy theirs (the default): the remote's value wins; then B has nothing of its
    // own to push.
    let pulled = rt.block_on(b.pull(hub, "main"))?;
    let b_value = b.main().kv_get("task:1")?.unwrap_or(Value::Null);
    let b_push = rt.block_on(b.push(hub, "main"))?;
    tour.step(
        "B pulls again with --strategy theirs (the default): A's value (from the remote) wins",
        join(
            vec![
                said("B", render::pulled(hub, &pulled)),
                note(format!("B's main: task:1 = {}", render::compact(&b_value))),
                said("B", render::pushed(hub, &b_push)),
            ],
            &["pull_b_lww", "b_main", "push_b"],
        ),
    );

    // Clone a third database and compare it with A.
    let c_path = root.join("agent-c");
    let (c, cloned) = rt.block_on(strata_sync::clone(&url, &c_path))?;
    let remote = strata_sync::open_url(&url)?;
    let mut branches = rt.block_on(strata_sync::list_remote_branches(&*remote))?;
    branches.sort_by(|x, y| x.name.cmp(&y.name));
    let (sa, sc) = (snapshot(&a, "main")?, snapshot(&c, "main")?);
    let d = compare(&sa, &sc);
    let mut res = render::diff("A:main", "clone:main", &d);
    res.doc["entries_compared"] = sa.len().into();
    res.doc["clone"] = render::cloned(&url, &c_path, &cloned).doc;
    res.doc["remote_branches"] = render::remote_branches(hub, &branches).doc["branches"].clone();
    res.text = format!(
        "{}\n\n{}\n\n{} ({} entries compared)",
        render::cloned(&url, &c_path, &cloned).text,
        render::remote_branches(hub, &branches).text,
        res.text,
        sa.len()
    );
    tour.step("Clone a third database from the remote", res);
    if !d.is_empty() {
        return Err(Failure::new(EXIT_ERROR, "the clone differs from agent A"));
    }
    Ok(())
}
