//! Runs each command: call the engine, render the result.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_engine::bundle::verify_bundle;
use strata_engine::names::validate_branch_name;
use strata_engine::{Error, Kind, Options, Rev, Strata, Value, DEFAULT_DIR};
use tokio::runtime::Runtime;

use crate::args::{
    BranchCmd, BundleCmd, Cli, Command, EventCmd, Global, JsonCmd, KvCmd, StateCmd, StrategyArg,
    ValueOpts,
};
use crate::failure::{
    Failure, EXIT_ERROR, EXIT_MERGE_CONFLICT, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_WRITE_CONFLICT,
};
use crate::handle::{self, Handle, Reader, Tx};
use crate::render::{self, Out, ReadAt, Target};
use crate::sync;

/// Runs the parsed command line; sync commands run on `rt`.
pub fn run(cli: Cli, rt: &Runtime) -> Result<(), Failure> {
    let out = Out {
        json: cli.global.json,
        quiet: cli.global.quiet,
    };
    let g = &cli.global;
    if let Some(url) = handle::server_url(g) {
        refuse_local_only(&cli.command, url)?;
    }
    match cli.command {
        Command::Init { dir } => init(g, out, dir),
        Command::Import { file } => import(g, out, &file),
        Command::Export { file } => export(g, out, &file),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "strata", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            Ok(())
        }
        Command::Kv(c) => kv(g, out, c),
        Command::Json(c) => json(g, out, c),
        Command::Event(c) => event(g, out, c),
        Command::State(c) => state(g, out, c),
        Command::Branch(c) => branch(g, out, c),
        Command::Bundle(c) => bundle(g, out, c),
        Command::Log { limit } => {
            let db = handle::open(g, true)?;
            let rev = read_rev(g)?;
            let list = match rev.version {
                None => db.log(&rev.branch, limit)?,
                Some(v) => {
                    let head = checked_head(&db, &rev.branch, v)?;
                    let skip = usize::try_from(head - v).unwrap_or(usize::MAX);
                    db.log(&rev.branch, limit.saturating_add(skip))?
                        .into_iter()
                        .filter(|c| c.version <= v)
                        .take(limit)
                        .collect()
                }
            };
            out.show(render::commits(&rev.branch, &list));
            Ok(())
        }
        Command::History { key, kind } => {
            let db = handle::open(g, true)?;
            let rev = read_rev(g)?;
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
            let mut list = db.history(&rev.branch, g.space(), kind, &stored)?;
            if let Some(v) = rev.version {
                checked_head(&db, &rev.branch, v)?;
                list.retain(|h| h.version <= v);
            }
            if list.is_empty() {
                return Err(missing(kind, &key, g));
            }
            let at = ReadAt {
                rev: &rev,
                space: g.space(),
            };
            out.show(render::history(at, kind, &key, &list));
            Ok(())
        }
        Command::Remote(c) => sync::remote(g, out, rt, c),
        Command::Push {
            target,
            delete: true,
            ..
        } => sync::push_delete(g, out, rt, target),
        Command::Push {
            target,
            all,
            set_upstream,
            delete: false,
        } => sync::push(g, out, rt, target, all, set_upstream),
        Command::Pull {
            target,
            all,
            strategy,
            conflict_branch,
        } => sync::pull(g, out, rt, target, all, strategy, conflict_branch),
        Command::Fetch { target, all } => sync::fetch(g, out, rt, target, all),
        Command::Status { target, all } => sync::status(g, out, rt, target, all),
        Command::Clone {
            url,
            dir,
            options,
            depth,
        } => sync::clone(g, out, rt, &url, dir.as_deref(), &options, depth),
        Command::Config { key, value, unset } => config(g, out, key, value, unset),
        Command::Demo { dir } => crate::demo::run(dir, out, rt),
    }
}

/// Refuses, before anything runs, a command that cannot act on a server when --db names one: those
/// that create a database (a server's database is the folder it was started on).
fn refuse_local_only(cmd: &Command, url: &str) -> Result<(), Failure> {
    let what = match cmd {
        Command::Init { .. } => {
            "strata init creates a database: a server's database is created by `stratadb-server --data-dir DIR`; to make a local one, run strata init without --db strata://"
        }
        Command::Clone { .. } => {
            "strata clone creates a database: clone into a folder (strata clone URL DIR) and serve it with `stratadb-server --data-dir DIR`, or bring a remote's branch into the server's database with `strata --db strata://... pull REMOTE BRANCH`"
        }
        Command::Demo { .. } => {
            "strata demo creates its own database in a folder: run it without --db strata://"
        }
        _ => return Ok(()),
    };
    Err(handle::local_only(what, url))
}

/// The database folder a command means: --db (or STRATA_DB), else `.strata` here or in the nearest
/// parent folder that holds one. Never creates anything.
pub(crate) fn db_path(g: &Global) -> Result<PathBuf, Failure> {
    if let Some(url) = handle::server_url(g) {
        return Err(handle::local_only(
            "this command needs a local database folder (pass --db DIR)",
            url,
        ));
    }
    if let Some(p) = &g.db {
        return Ok(p.clone());
    }
    let cwd = std::env::current_dir()?;
    strata_engine::discover(&cwd).ok_or_else(|| {
        Failure::not_found(format!(
            "not a Strata database: no {DEFAULT_DIR} in {} or any parent folder (run strata init, or pass --db)",
            cwd.display()
        ))
        .named("not_a_database")
    })
}

fn options(g: &Global) -> Options {
    Options {
        busy_timeout: Duration::from_millis(g.busy_timeout),
        ..Options::default()
    }
}

/// Opens the database for a command that may write. A missing database is exit 3.
pub(crate) fn open(g: &Global) -> Result<Strata, Failure> {
    let path = db_path(g)?;
    tracing::debug!(db = %path.display(), "opening database");
    Ok(Strata::open_existing(&path, options(g))?)
}

/// Opens the database for a command that only reads: read-only, so a database this process may
/// not write can still be read.
pub(crate) fn open_read(g: &Global) -> Result<Strata, Failure> {
    let path = db_path(g)?;
    tracing::debug!(db = %path.display(), "opening database read-only");
    Ok(Strata::open_read_only(&path, options(g))?)
}

/// `path` made absolute against the working directory, with `.` and `..` resolved lexically (the
/// path need not exist; symbolic links are kept as written).
pub(crate) fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    use std::path::Component;
    let abs = std::path::absolute(path)?;
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                }
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// `strata init [DIR]`: creates DIR/.strata (or --db). Re-running it on a database is harmless.
fn init(g: &Global, out: Out, dir: Option<PathBuf>) -> Result<(), Failure> {
    let path = match (dir, &g.db) {
        (Some(d), _) => d.join(DEFAULT_DIR),
        (None, Some(db)) => db.clone(),
        (None, None) => std::env::current_dir()?.join(DEFAULT_DIR),
    };
    let existed = strata_engine::is_database(&path);
    let db = Strata::open_with(&path, options(g))?;
    let path = absolute(db.path())?;
    out.emit(render::Rendered {
        doc: serde_json::json!({"path": path.display().to_string(), "created": !existed}),
        text: if existed {
            format!(
                "reinitialized nothing: {} is already a Strata database",
                path.display()
            )
        } else {
            format!("initialized an empty Strata database in {}", path.display())
        },
    });
    Ok(())
}

/// The head of `branch`, after checking that it has version `v` (exit 3 if not).
fn checked_head(db: &Handle, branch: &str, v: u64) -> Result<u64, Failure> {
    let head = db.branch_info(branch)?.head;
    if v > head {
        return Err(Error::VersionNotFound {
            branch: branch.to_string(),
            version: v,
            head,
        }
        .into());
    }
    Ok(head)
}

/// The revision read commands use: --branch as `branch` or `branch@version`.
pub(crate) fn read_rev(g: &Global) -> Result<Rev, Failure> {
    Ok(Rev::parse(g.branch())?)
}

/// The branch write commands use: --branch, which must not name a past version.
pub(crate) fn write_branch(g: &Global) -> Result<&str, Failure> {
    let rev = read_rev(g)?;
    if rev.version.is_some() {
        return Err(Error::PastVersion(g.branch().to_string()).into());
    }
    Ok(g.branch())
}

fn scope<'a>(db: &'a Handle, g: &Global) -> Result<Reader<'a>, Failure> {
    db.at(&read_rev(g)?, g.space())
}

fn read_at<'a>(rev: &'a Rev, g: &'a Global) -> ReadAt<'a> {
    ReadAt {
        rev,
        space: g.space(),
    }
}

fn target(g: &Global) -> Target<'_> {
    Target {
        branch: g.branch(),
        space: g.space(),
    }
}

/// The text of a VALUE argument: `-` reads stdin, `@FILE` reads a file, anything else is itself.
fn value_text(arg: &str) -> Result<String, Failure> {
    let (what, bytes) = if arg == "-" {
        let mut b = Vec::new();
        std::io::stdin().read_to_end(&mut b)?;
        ("stdin".to_string(), b)
    } else if let Some(file) = arg.strip_prefix('@') {
        let b = std::fs::read(file).map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                EXIT_NOT_FOUND
            } else {
                EXIT_ERROR
            };
            Failure::new(code, format!("cannot read value file {file:?}: {e}"))
        })?;
        (format!("file {file:?}"), b)
    } else {
        return Ok(arg.to_string());
    };
    String::from_utf8(bytes).map_err(|_| {
        Failure::new(
            EXIT_USAGE,
            format!("the value from {what} is not UTF-8 text; store binary data as {{\"$bytes\": \"<base64>\"}}"),
        )
    })
}

/// Reads and parses a VALUE argument (see `strata --help`, Values).
fn value(opts: ValueOpts, arg: &str) -> Result<Value, Failure> {
    let text = value_text(arg)?;
    let from_input = arg == "-" || arg.starts_with('@');
    let v = opts
        .parse(&text)
        .map_err(|m| Failure::new(EXIT_USAGE, m).named("invalid_value"))?;
    // Text read from stdin or a file usually ends in a newline that is not part of a plain string.
    Ok(match v {
        Value::String(s) if from_input && !opts.string => {
            let t = s.strip_suffix('\n').unwrap_or(&s);
            Value::String(t.strip_suffix('\r').unwrap_or(t).to_string())
        }
        v => v,
    })
}

/// Gives a write's transaction the `-m` message and the `--author` (or `STRATA_AUTHOR`); without an
/// author the engine records the database's `user.name` setting.
fn label(tx: &mut Tx<'_>, g: &Global) {
    if let Some(m) = &g.message {
        tx.set_message(m.clone());
    }
    if let Some(a) = g.author.as_deref().filter(|a| !a.is_empty()) {
        tx.set_author(a);
    }
}

/// `strata config [KEY [VALUE]] [--unset]`.
fn config(
    g: &Global,
    out: Out,
    key: Option<String>,
    value: Option<String>,
    unset: bool,
) -> Result<(), Failure> {
    match (key, value) {
        (None, _) => {
            if unset {
                return Err(Failure::new(EXIT_USAGE, "--unset needs the setting's name"));
            }
            let db = handle::open(g, true)?;
            out.emit(render::settings(&db.config_list()?));
        }
        (Some(k), None) if !unset => {
            let db = handle::open(g, true)?;
            match db.config(&k)? {
                Some(v) => out.emit(render::setting(&k, Some(&v), false)),
                None => {
                    return Err(Failure::not_found(format!(
                        "setting {k:?} is not set (set it with: strata config {k} VALUE)"
                    )))
                }
            }
        }
        (Some(k), value) => {
            let db = handle::open(g, false)?;
            db.set_config(&k, value.as_deref())?;
            out.emit(render::setting(&k, value.as_deref(), true));
        }
    }
    Ok(())
}

/// Runs `f` in one transaction on `--branch`/`--space`; returns its result and the new version.
fn write<T>(
    db: &Handle,
    g: &Global,
    f: impl FnOnce(&mut Tx<'_>) -> Result<T, Failure>,
) -> Result<(T, Option<u64>), Failure> {
    let mut tx = db.begin(write_branch(g)?)?;
    tx.set_space(g.space())?;
    label(&mut tx, g);
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
        g.branch(),
        g.space()
    ))
}

fn found(v: Option<Value>, kind: Kind, key: &str, g: &Global) -> Result<Value, Failure> {
    v.ok_or_else(|| missing(kind, key, g))
}

/// Deletes one entry with `f`, which returns whether it existed; a missing entry fails with exit 3.
fn delete(
    db: &Handle,
    g: &Global,
    out: Out,
    kind: Kind,
    key: &str,
    f: impl FnOnce(&mut Tx<'_>) -> Result<bool, Failure>,
) -> Result<(), Failure> {
    let (existed, v) = write(db, g, f)?;
    if !existed {
        return Err(missing(kind, key, g));
    }
    out.emit(render::written("delete", kind, target(g), key, v));
    Ok(())
}

/// Opens for reading or writing as the command needs.
fn open_for(g: &Global, reads_only: bool) -> Result<Handle, Failure> {
    handle::open(g, reads_only)
}

fn kv(g: &Global, out: Out, cmd: KvCmd) -> Result<(), Failure> {
    let db = open_for(g, matches!(cmd, KvCmd::Get { .. } | KvCmd::List { .. }))?;
    match cmd {
        KvCmd::Put {
            key,
            value: arg,
            opts,
        } => {
            write_branch(g)?;
            let val = value(opts, &arg)?;
            let (_, v) = write(&db, g, |tx| tx.kv_put(&key, val))?;
            out.emit(render::written("put", Kind::Kv, target(g), &key, v));
        }
        KvCmd::Get { key } => {
            let v = found(scope(&db, g)?.kv_get(&key)?, Kind::Kv, &key, g)?;
            out.show(render::value(&v));
        }
        KvCmd::Del { key } => delete(&db, g, out, Kind::Kv, &key, |tx| tx.kv_delete(&key))?,
        KvCmd::List { prefix } => {
            let rev = read_rev(g)?;
            let list = scope(&db, g)?.kv_list(&prefix)?;
            out.show(render::entries(read_at(&rev, g), Kind::Kv, &list))
        }
    }
    Ok(())
}

fn json(g: &Global, out: Out, cmd: JsonCmd) -> Result<(), Failure> {
    let db = open_for(g, matches!(cmd, JsonCmd::Get { .. } | JsonCmd::List { .. }))?;
    match cmd {
        JsonCmd::Put {
            id,
            value: arg,
            opts,
        } => {
            write_branch(g)?;
            let val = value(opts, &arg)?;
            let (_, v) = write(&db, g, |tx| tx.json_put(&id, val))?;
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
            out.show(render::value(&v));
        }
        JsonCmd::Set {
            id,
            path,
            value: arg,
            opts,
        } => {
            write_branch(g)?;
            let val = value(opts, &arg)?;
            let (_, v) = write(&db, g, |tx| tx.json_set_path(&id, &path, val))?;
            let mut res = render::written("set", Kind::Json, target(g), &id, v);
            res.doc["path"] = path.clone().into();
            res.text = format!(
                "set json {id:?} at {path:?} on {}/{}: {}",
                g.branch(),
                g.space(),
                render::version_text(v)
            );
            out.emit(res);
        }
        JsonCmd::Del { id } => delete(&db, g, out, Kind::Json, &id, |tx| tx.json_delete(&id))?,
        JsonCmd::List { prefix } => {
            let rev = read_rev(g)?;
            let list = scope(&db, g)?.json_list(&prefix)?;
            out.show(render::entries(read_at(&rev, g), Kind::Json, &list))
        }
    }
    Ok(())
}

fn event(g: &Global, out: Out, cmd: EventCmd) -> Result<(), Failure> {
    let db = open_for(g, matches!(cmd, EventCmd::Read { .. }))?;
    match cmd {
        EventCmd::Append {
            event_type,
            payload,
            opts,
        } => {
            write_branch(g)?;
            let val = value(opts, &payload)?;
            let (seq, v) = write(&db, g, |tx| tx.event_append(&event_type, val))?;
            let mut res = render::written("append", Kind::Event, target(g), &seq.to_string(), v);
            res.doc["seq"] = seq.into();
            res.doc["type"] = event_type.clone().into();
            res.text = format!(
                "appended event #{seq} ({event_type}) to {}/{}: {}",
                g.branch(),
                g.space(),
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
            let rev = read_rev(g)?;
            out.show(render::events(read_at(&rev, g), &list));
        }
    }
    Ok(())
}

fn state(g: &Global, out: Out, cmd: StateCmd) -> Result<(), Failure> {
    let db = open_for(g, matches!(cmd, StateCmd::Get { .. }))?;
    match cmd {
        StateCmd::Set {
            cell,
            value: arg,
            opts,
        } => {
            write_branch(g)?;
            let val = value(opts, &arg)?;
            let (_, v) = write(&db, g, |tx| tx.state_set(&cell, val))?;
            out.emit(render::written("set", Kind::State, target(g), &cell, v));
        }
        StateCmd::Get { cell } => {
            let v = found(scope(&db, g)?.state_get(&cell)?, Kind::State, &cell, g)?;
            out.show(render::value(&v));
        }
        StateCmd::Init {
            cell,
            value: arg,
            opts,
        } => {
            write_branch(g)?;
            let val = value(opts, &arg)?;
            let ((set, current), v) = write(&db, g, |tx| {
                let set = tx.state_init(&cell, val)?;
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
            write_branch(g)?;
            let expected = expected.map(|e| value(opts, &e)).transpose()?;
            let new = new.map(|n| value(opts, &n)).transpose()?;
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
                return Err(Failure::new(
                    EXIT_WRITE_CONFLICT,
                    format!("compare-and-swap failed: state cell {cell:?} is {shown}, not the expected value"),
                )
                .named("cas_failed")
                .with_detail(res.doc));
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
    let reads_only = matches!(
        cmd,
        BranchCmd::List { .. } | BranchCmd::Diff { .. } | BranchCmd::Info { .. }
    );
    let db = open_for(g, reads_only)?;
    match cmd {
        BranchCmd::Create { name } => out.emit(render::branch_created(&db.create_branch(&name)?)),
        BranchCmd::Fork { source, name } => out.emit(render::branch_created(
            &db.fork_branch(rev(&source)?, &name)?,
        )),
        BranchCmd::List { all } => out.show(render::branches(&db.list_branches(all)?)),
        BranchCmd::Delete { name, force } => {
            let info = db.branch_info(&name)?;
            let current = read_rev(g)?.branch;
            if !force {
                if name == current {
                    return Err(Failure::new(
                        EXIT_USAGE,
                        format!("branch {name:?} is the current branch (--branch); delete it with --force, or pass -b OTHER"),
                    )
                    .named("current_branch"));
                }
                // Unmerged: versions of its own that the current branch does not contain.
                if !db.contains(&Rev::head(&current), &Rev::head(&name))? {
                    return Err(Failure::new(
                        EXIT_USAGE,
                        format!("branch {name:?} has versions that {current:?} does not contain (merge it first: strata branch merge {name} {current}); delete it anyway with --force"),
                    )
                    .named("unmerged_branch"));
                }
            }
            db.delete_branch(&name)?;
            out.emit(render::Rendered {
                doc: serde_json::json!({"branch": name, "deleted": true, "head": info.head}),
                text: format!("deleted branch {name} (was at version {})", info.head),
            });
        }
        BranchCmd::Diff { a, b } => {
            let d = db.diff(&rev(&a)?, &rev(&b)?)?;
            out.show(render::diff(&a, &b, &d));
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
            let author = g.author.as_deref().filter(|a| !a.is_empty());
            match db.merge(
                &src,
                &target,
                strategy.into(),
                g.message.as_deref(),
                author,
                conflict_branch.as_deref(),
            )? {
                Ok(report) => out.emit(render::merged(&src, &target, &report)),
                Err((list, saved)) => {
                    let shown = render::conflicts(&source, &target, &list, saved.as_ref());
                    out.text(&shown.text);
                    return Err(Failure::new(
                        EXIT_MERGE_CONFLICT,
                        format!("merge of {source} into {target} has {} conflicting key(s); nothing was written", list.len()),
                    )
                    .with_detail(shown.doc));
                }
            }
        }
        BranchCmd::Info { name } => {
            let name = match &name {
                Some(n) => n.clone(),
                None => read_rev(g)?.branch,
            };
            let name = name.as_str();
            let info = db.branch_info(name)?;
            out.show(render::branch_info(&info, &db.list_spaces(name)?));
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
            let db = handle::open(g, true)?;
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
            let db = handle::open(g, false)?;
            let rep = db.import_bundle(&file, into.as_deref())?;
            out.emit(render::imported(&file, &rep));
        }
        BundleCmd::Verify { file } => {
            require_file(&file)?;
            let m = verify_bundle(&file)?;
            out.show(render::verified(&file, &m));
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

// ----- import and export ----------------------------------------------------------------------------

/// One JSONL line of `strata import` / `strata export`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    /// Default: --space.
    space: Option<String>,
    /// kv (default), json, state or event.
    kind: Option<String>,
    /// Ignored for events (they are appended in file order).
    key: Option<String>,
    value: serde_json::Value,
}

/// `strata import FILE`: every line in one transaction, so one new version or nothing.
fn import(g: &Global, out: Out, file: &Path) -> Result<(), Failure> {
    use std::io::BufRead;
    let stdin = file.as_os_str() == "-";
    let input: Box<dyn BufRead> = if stdin {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(file).map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                EXIT_NOT_FOUND
            } else {
                EXIT_ERROR
            };
            Failure::new(code, format!("cannot read {}: {e}", file.display()))
        })?;
        Box::new(std::io::BufReader::with_capacity(1 << 20, f))
    };
    let db = handle::open(g, false)?;
    let branch = write_branch(g)?;
    let mut tx = db.begin(branch)?;
    tx.set_message(format!("import {}", file.display()));
    label(&mut tx, g);
    let default_space = g.space().to_string();
    tx.set_space(&default_space)?;
    let mut current = default_space.clone();
    let mut entries = 0u64;
    let bad = |n: usize, m: String| {
        Failure::new(
            EXIT_USAGE,
            format!("{} line {n}: {m}; nothing was imported", file.display()),
        )
        .named("invalid_input")
    };
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| bad(n, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(&line).map_err(|e| bad(n, e.to_string()))?;
        let space = l.space.as_deref().unwrap_or(&default_space);
        if space != current {
            tx.set_space(space).map_err(|e| bad(n, e.message))?;
            current = space.to_string();
        }
        let kind: Kind = match l.kind.as_deref() {
            None => Kind::Kv,
            Some(k) => k.parse().map_err(|e: Error| bad(n, e.to_string()))?,
        };
        let key = || {
            l.key
                .as_deref()
                .ok_or_else(|| bad(n, format!("a {kind} entry needs a \"key\"")))
        };
        let value = Value::from_json(&l.value);
        let done = match kind {
            Kind::Kv => tx.kv_put(key()?, value),
            Kind::Json => tx.json_put(key()?, value),
            Kind::State => tx.state_set(key()?, value),
            Kind::Event => {
                let t = value.get("type").and_then(Value::as_str).ok_or_else(|| {
                    bad(
                        n,
                        "an event's value needs a \"type\" string and a \"payload\"".into(),
                    )
                })?;
                let payload = value.get("payload").cloned().unwrap_or(Value::Null);
                tx.event_append(t, payload).map(|_| ())
            }
        };
        done.map_err(|e| bad(n, e.message))?;
        entries += 1;
    }
    let version = tx.commit()?;
    out.emit(render::Rendered {
        doc: serde_json::json!({
            "file": file.display().to_string(), "branch": branch, "entries": entries, "version": version,
        }),
        text: format!(
            "imported {} into {branch}: {}",
            render::count(entries, "entry"),
            render::version_text(version)
        ),
    });
    Ok(())
}

/// `strata export [FILE]`: a snapshot of --branch (or BRANCH@VERSION), streamed as JSONL.
fn export(g: &Global, out: Out, file: &Path) -> Result<(), Failure> {
    use std::io::Write;
    let to_stdout = file.as_os_str() == "-";
    if to_stdout && out.json {
        return Err(Failure::new(
            EXIT_USAGE,
            "export writes JSONL to stdout; give it a FILE to get the --json summary",
        ));
    }
    let db = handle::open(g, true)?;
    let rev = read_rev(g)?;
    let sink = |file: &Path| -> Result<Box<dyn Write>, Failure> {
        if to_stdout {
            return Ok(Box::new(std::io::stdout().lock()));
        }
        if file.exists() {
            return Err(Failure::new(
                EXIT_USAGE,
                format!("{} exists; export never overwrites a file", file.display()),
            ));
        }
        Ok(Box::new(std::fs::File::create(file)?))
    };
    let only = g.space.as_deref();
    let mut entries = 0u64;
    let broken = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
    // Writes one entry; false when the reader went away (a closed pipe ends the export quietly).
    let mut line = |w: &mut dyn Write,
                    k: &strata_engine::EntryKey,
                    v: &Value|
     -> Result<bool, Failure> {
        let value = match k.kind {
            Kind::Event => serde_json::json!({
                "type": v.get("type").map(Value::to_json),
                "payload": v.get("payload").map_or(serde_json::Value::Null, Value::to_json),
            }),
            _ => v.to_json(),
        };
        let line = serde_json::json!({
            "space": k.space, "kind": k.kind.name(), "key": render::display_key(k), "value": value,
        });
        match writeln!(w, "{line}") {
            Ok(()) => {
                entries += 1;
                Ok(true)
            }
            Err(e) if broken(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    };
    let (version, mut w) = match &db {
        Handle::Local(db) => {
            let snap = db.snapshot(&rev)?;
            let version = snap.version();
            let mut w = std::io::BufWriter::with_capacity(1 << 20, sink(file)?);
            'sets: for cs in snap {
                for (k, v) in cs?.puts {
                    if only.is_some_and(|s| s != k.space) {
                        continue;
                    }
                    if !line(&mut w, &k, &v)? {
                        break 'sets;
                    }
                }
            }
            (version, w)
        }
        // The same entries in the same order (kind, space, key), one page at a time, every page
        // read at the version the export started at.
        Handle::Server(c) => {
            let version = match rev.version {
                Some(v) => {
                    checked_head(&db, &rev.branch, v)?;
                    v
                }
                None => c.branch_info(&rev.branch)?.head,
            };
            let at = Rev::at(rev.branch.clone(), version);
            let spaces: Vec<String> = c
                .list_spaces(&rev.branch)?
                .into_iter()
                // Internal spaces never leave a server.
                .filter(|s| only.is_none_or(|o| o == s) && !s.starts_with('_'))
                .collect();
            let mut w = std::io::BufWriter::with_capacity(1 << 20, sink(file)?);
            'all: for kind in Kind::ALL {
                for space in &spaces {
                    let mut after: Option<String> = None;
                    loop {
                        let page = c.list_page(&at, space, kind, "", after.as_deref(), 1000)?;
                        for (key, v) in &page.entries {
                            let k =
                                strata_engine::EntryKey::new(space.as_str(), kind, key.as_str());
                            if !line(&mut w, &k, v)? {
                                break 'all;
                            }
                        }
                        match page.next {
                            Some(n) => after = Some(n),
                            None => break,
                        }
                    }
                }
            }
            (version, w)
        }
    };
    match w.flush() {
        Err(e) if !broken(&e) => return Err(e.into()),
        _ => {}
    }
    if !to_stdout {
        out.emit(render::Rendered {
            doc: serde_json::json!({
                "file": file.display().to_string(), "branch": rev.branch, "version": version, "entries": entries,
            }),
            text: format!(
                "exported {} of {}@{version} to {}",
                render::count(entries, "entry"),
                rev.branch,
                file.display()
            ),
        });
    }
    Ok(())
}
