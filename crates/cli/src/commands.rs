//! Runs each command: call the engine, render the result.

use std::path::Path;
use std::time::Duration;

use strata_engine::bundle::verify_bundle;
use strata_engine::names::validate_branch_name;
use strata_engine::{Error, Kind, Options, Rev, Scope, Strata, Transaction, Value};
use tokio::runtime::Runtime;

use crate::args::{
    BranchCmd, BundleCmd, Cli, Command, EventCmd, Global, JsonCmd, KvCmd, StateCmd, StrategyArg,
};
use crate::failure::{Failure, EXIT_MERGE_CONFLICT, EXIT_USAGE, EXIT_WRITE_CONFLICT};
use crate::render::{self, Out, Target};
use crate::sync;

/// Runs the parsed command line; sync commands run on `rt`.
pub fn run(cli: Cli, rt: &Runtime) -> Result<(), Failure> {
    let out = Out {
        json: cli.global.json,
    };
    let g = &cli.global;
    match cli.command {
        Command::Kv(c) => kv(g, out, c),
        Command::Json(c) => json(g, out, c),
        Command::Event(c) => event(g, out, c),
        Command::State(c) => state(g, out, c),
        Command::Branch(c) => branch(g, out, c),
        Command::Bundle(c) => bundle(g, out, c),
        Command::Log { limit } => {
            let db = open(g)?;
            out.emit(render::commits(&g.branch, &db.log(&g.branch, limit)?));
            Ok(())
        }
        Command::History { key, kind } => {
            let db = open(g)?;
            let kind = Kind::from(kind);
            let stored = match kind {
                // Events are stored under their sequence number padded to 20 digits.
                Kind::Event => format!(
                    "{:020}",
                    key.parse::<u64>().map_err(|_| Failure::new(
                        EXIT_USAGE,
                        format!("event key {key:?} is not a sequence number")
                    ))?
                ),
                _ => key.clone(),
            };
            let list = db.history(&g.branch, &g.space, kind, &stored)?;
            if list.is_empty() {
                return Err(missing(kind, &key, g));
            }
            out.emit(render::history(kind, &key, &list));
            Ok(())
        }
        Command::Remote(c) => sync::remote(g, out, rt, c),
        Command::Push { target, all } => sync::push(g, out, rt, target, all),
        Command::Pull {
            target,
            all,
            strategy,
            conflict_branch,
        } => sync::pull(g, out, rt, target, all, strategy, conflict_branch),
        Command::Fetch { target, all } => sync::fetch(g, out, rt, target, all),
        Command::Status { target, all } => sync::status(g, out, rt, target, all),
        Command::Clone { url, dir, options } => sync::clone(out, rt, &url, &dir, &options),
        Command::Demo { dir } => crate::demo::run(dir, out, rt),
    }
}

pub(crate) fn open(g: &Global) -> Result<Strata, Failure> {
    tracing::debug!(db = %g.db.display(), "opening database");
    let opts = Options {
        busy_timeout: Duration::from_millis(g.busy_timeout),
        ..Options::default()
    };
    Ok(Strata::open_with(&g.db, opts)?)
}

fn scope<'a>(db: &'a Strata, g: &Global) -> Result<Scope<'a>, Failure> {
    Ok(db.on(&g.branch).space(&g.space)?)
}

fn target(g: &Global) -> Target<'_> {
    Target {
        branch: &g.branch,
        space: &g.space,
    }
}

/// Runs `f` in one transaction on `--branch`/`--space`; returns its result and the new version.
fn write<T>(
    db: &Strata,
    g: &Global,
    f: impl FnOnce(&mut Transaction<'_>) -> strata_engine::Result<T>,
) -> Result<(T, Option<u64>), Failure> {
    let mut tx = db.begin(&g.branch)?;
    tx.set_space(&g.space)?;
    let out = f(&mut tx)?;
    let version = tx.commit()?;
    Ok((out, version))
}

fn what(kind: Kind) -> &'static str {
    match kind {
        Kind::Kv => "key",
        Kind::Json => "document",
        Kind::Event => "event",
        Kind::State => "state cell",
    }
}

/// The not-found failure for an entry of `--branch`/`--space`.
fn missing(kind: Kind, key: &str, g: &Global) -> Failure {
    Failure::not_found(format!(
        "{} {key:?} not found on branch {:?}, space {:?}",
        what(kind),
        g.branch,
        g.space
    ))
}

fn found(v: Option<Value>, kind: Kind, key: &str, g: &Global) -> Result<Value, Failure> {
    v.ok_or_else(|| missing(kind, key, g))
}

/// Deletes one entry with `f`, which returns whether it existed; a missing entry fails with exit 3.
fn delete(
    db: &Strata,
    g: &Global,
    out: Out,
    kind: Kind,
    key: &str,
    f: impl FnOnce(&mut Transaction<'_>) -> strata_engine::Result<bool>,
) -> Result<(), Failure> {
    let (existed, v) = write(db, g, f)?;
    if !existed {
        return Err(missing(kind, key, g));
    }
    out.emit(render::written("delete", kind, target(g), key, v));
    Ok(())
}

fn kv(g: &Global, out: Out, cmd: KvCmd) -> Result<(), Failure> {
    let db = open(g)?;
    match cmd {
        KvCmd::Put { key, value, opts } => {
            let (_, v) = write(&db, g, |tx| tx.kv_put(&key, opts.parse(&value)))?;
            out.emit(render::written("put", Kind::Kv, target(g), &key, v));
        }
        KvCmd::Get { key } => {
            let v = found(scope(&db, g)?.kv_get(&key)?, Kind::Kv, &key, g)?;
            out.emit(render::value(&v));
        }
        KvCmd::Del { key } => delete(&db, g, out, Kind::Kv, &key, |tx| tx.kv_delete(&key))?,
        KvCmd::List { prefix } => out.emit(render::entries(&scope(&db, g)?.kv_list(&prefix)?)),
    }
    Ok(())
}

fn json(g: &Global, out: Out, cmd: JsonCmd) -> Result<(), Failure> {
    let db = open(g)?;
    match cmd {
        JsonCmd::Put { id, value, opts } => {
            let (_, v) = write(&db, g, |tx| tx.json_put(&id, opts.parse(&value)))?;
            out.emit(render::written("put", Kind::Json, target(g), &id, v));
        }
        JsonCmd::Get { id, path } => {
            let sc = scope(&db, g)?;
            let v = match path {
                None => found(sc.json_get(&id)?, Kind::Json, &id, g)?,
                Some(path) => match sc.json_get_path(&id, &path)? {
                    Some(v) => v,
                    None => {
                        found(sc.json_get(&id)?, Kind::Json, &id, g)?;
                        return Err(Failure::not_found(format!(
                            "path {path:?} not found in document {id:?}"
                        )));
                    }
                },
            };
            out.emit(render::value(&v));
        }
        JsonCmd::Set {
            id,
            path,
            value,
            opts,
        } => {
            let (_, v) = write(&db, g, |tx| {
                tx.json_set_path(&id, &path, opts.parse(&value))
            })?;
            let mut res = render::written("set", Kind::Json, target(g), &id, v);
            res.doc["path"] = path.clone().into();
            res.text = format!(
                "set json {id:?} at {path:?} on {}/{}: {}",
                g.branch,
                g.space,
                render::version_text(v)
            );
            out.emit(res);
        }
        JsonCmd::Del { id } => delete(&db, g, out, Kind::Json, &id, |tx| tx.json_delete(&id))?,
        JsonCmd::List { prefix } => out.emit(render::entries(&scope(&db, g)?.json_list(&prefix)?)),
    }
    Ok(())
}

fn event(g: &Global, out: Out, cmd: EventCmd) -> Result<(), Failure> {
    let db = open(g)?;
    match cmd {
        EventCmd::Append {
            event_type,
            payload,
            opts,
        } => {
            let (seq, v) = write(&db, g, |tx| {
                tx.event_append(&event_type, opts.parse(&payload))
            })?;
            let mut res = render::written("append", Kind::Event, target(g), &seq.to_string(), v);
            res.doc["seq"] = seq.into();
            res.doc["type"] = event_type.clone().into();
            res.text = format!(
                "appended event #{seq} ({event_type}) to {}/{}: {}",
                g.branch,
                g.space,
                render::version_text(v)
            );
            out.emit(res);
        }
        EventCmd::Read {
            from,
            limit,
            event_type,
        } => {
            let sc = scope(&db, g)?;
            let limit = limit.unwrap_or(usize::MAX);
            let list = match event_type {
                None => sc.event_range(from, limit)?,
                Some(t) if from <= 1 => sc.event_by_type(&t, limit)?,
                Some(t) => sc
                    .event_range(from, usize::MAX)?
                    .into_iter()
                    .filter(|e| e.event_type == t)
                    .take(limit)
                    .collect(),
            };
            out.emit(render::events(&list));
        }
    }
    Ok(())
}

fn state(g: &Global, out: Out, cmd: StateCmd) -> Result<(), Failure> {
    let db = open(g)?;
    match cmd {
        StateCmd::Set { cell, value, opts } => {
            let (_, v) = write(&db, g, |tx| tx.state_set(&cell, opts.parse(&value)))?;
            out.emit(render::written("set", Kind::State, target(g), &cell, v));
        }
        StateCmd::Get { cell } => {
            let v = found(scope(&db, g)?.state_get(&cell)?, Kind::State, &cell, g)?;
            out.emit(render::value(&v));
        }
        StateCmd::Init { cell, value, opts } => {
            let ((set, current), v) = write(&db, g, |tx| {
                let set = tx.state_init(&cell, opts.parse(&value))?;
                Ok((set, if set { None } else { tx.state_get(&cell)? }))
            })?;
            let mut res = render::written("init", Kind::State, target(g), &cell, v);
            res.doc["initialized"] = set.into();
            if let Some(c) = &current {
                res.doc["current"] = c.to_json();
                res.text = format!(
                    "state cell {cell:?} is already set to {}; unchanged",
                    render::compact(c)
                );
            }
            out.emit(res);
        }
        StateCmd::Cas {
            cell,
            expected,
            absent: _,
            new,
            delete: _,
            opts,
        } => {
            // clap makes exactly one of --expected/--absent present, and NEW present unless --delete.
            let expected = expected.map(|e| opts.parse(&e));
            let new = new.map(|n| opts.parse(&n));
            let ((swapped, current), v) = write(&db, g, |tx| {
                let swapped = tx.state_cas(&cell, expected.as_ref(), new.clone())?;
                Ok((swapped, if swapped { None } else { tx.state_get(&cell)? }))
            })?;
            let op = if new.is_some() { "cas" } else { "cas-delete" };
            let mut res = render::written(op, Kind::State, target(g), &cell, v);
            res.doc["swapped"] = swapped.into();
            if !swapped {
                let shown = current
                    .as_ref()
                    .map_or("absent".to_string(), render::compact);
                res.doc["current"] = current
                    .as_ref()
                    .map_or(serde_json::Value::Null, Value::to_json);
                if out.json {
                    out.emit(res);
                }
                return Err(Failure::new(
                    EXIT_WRITE_CONFLICT,
                    format!("compare-and-swap failed: state cell {cell:?} is {shown}, not the expected value"),
                ));
            }
            out.emit(res);
        }
        StateCmd::Del { cell } => {
            delete(&db, g, out, Kind::State, &cell, |tx| tx.state_delete(&cell))?
        }
    }
    Ok(())
}

fn rev(s: &str) -> Result<Rev, Failure> {
    Ok(Rev::parse(s)?)
}

fn branch(g: &Global, out: Out, cmd: BranchCmd) -> Result<(), Failure> {
    let db = open(g)?;
    match cmd {
        BranchCmd::Create { name } => out.emit(render::branch_created(&db.create_branch(&name)?)),
        BranchCmd::Fork { source, name } => out.emit(render::branch_created(
            &db.fork_branch(rev(&source)?, &name)?,
        )),
        BranchCmd::List { all } => out.emit(render::branches(&db.list_branches(all)?)),
        BranchCmd::Delete { name } => {
            db.delete_branch(&name)?;
            out.emit(render::Rendered {
                doc: serde_json::json!({"deleted": name}),
                text: format!("deleted branch {name}"),
            });
        }
        BranchCmd::Diff { a, b } => {
            let d = db.diff(&rev(&a)?, &rev(&b)?)?;
            out.emit(render::diff(&a, &b, &d));
        }
        BranchCmd::Merge {
            source,
            target,
            strategy,
            conflict_branch,
        } => {
            if conflict_branch.is_some() && strategy != StrategyArg::Strict {
                return Err(Failure::new(
                    EXIT_USAGE,
                    "--conflict-branch applies only to --strategy strict",
                ));
            }
            let src = rev(&source)?;
            match db.merge(&src, &target, strategy.into()) {
                Ok(report) => out.emit(render::merged(&src, &target, &report)),
                Err(Error::MergeConflicts(list)) => {
                    let saved = match &conflict_branch {
                        Some(name) => Some(db.save_conflicts(&target, &list, name)?),
                        None => None,
                    };
                    out.emit(render::conflicts(&source, &target, &list, saved.as_ref()));
                    return Err(Failure::new(
                        EXIT_MERGE_CONFLICT,
                        format!("merge of {source} into {target} has {} conflicting key(s); nothing was written", list.len()),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        BranchCmd::Info { name } => {
            let name = name.as_deref().unwrap_or(&g.branch);
            let info = db.branch_info(name)?;
            out.emit(render::branch_info(&info, &db.list_spaces(name)?));
        }
    }
    Ok(())
}

fn bundle(g: &Global, out: Out, cmd: BundleCmd) -> Result<(), Failure> {
    match cmd {
        BundleCmd::Export {
            branch,
            file,
            from,
            to,
        } => {
            let db = open(g)?;
            let range = match (from, to) {
                (None, None) => None,
                (from, to) => {
                    let to = match to {
                        Some(t) => t,
                        None => db.branch_info(&branch)?.head,
                    };
                    Some((from.unwrap_or(0), to))
                }
            };
            let m = db.export_bundle(&branch, range, &file)?;
            out.emit(render::exported(&file, &m));
        }
        BundleCmd::Import { file, into } => {
            require_file(&file)?;
            if let Some(name) = &into {
                // The engine lets the sync library import into internal branches; users may not.
                validate_branch_name(name, false)?;
            }
            let db = open(g)?;
            let rep = db.import_bundle(&file, into.as_deref())?;
            out.emit(render::imported(&file, &rep));
        }
        BundleCmd::Verify { file } => {
            require_file(&file)?;
            let m = verify_bundle(&file)?;
            out.emit(render::verified(&file, &m));
        }
    }
    Ok(())
}

fn require_file(file: &Path) -> Result<(), Failure> {
    if file.is_file() {
        Ok(())
    } else {
        Err(Failure::not_found(format!(
            "bundle file {} not found",
            file.display()
        )))
    }
}
