//! Sync commands: remotes, push, pull, fetch, status and clone. Each is a thin call into `strata_sync`
//! on the runtime `main` created; [`Bars`] draws transfer progress with indicatif.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use strata_engine::names::validate_branch_name;
use strata_engine::Strata;
use strata_sync::{
    Progress, ProgressSink, PullOptions, PushOptions, RemoteConfig, SyncError, SyncExt,
};
use tokio::runtime::Runtime;

use crate::args::{Global, RemoteCmd, StrategyArg, SyncTarget};
use crate::commands::open;
use crate::failure::{Failure, EXIT_ERROR, EXIT_MERGE_CONFLICT, EXIT_USAGE};
use crate::render::{self, Out, Rendered};

// ----- progress -------------------------------------------------------------------------------------

/// Progress bars on stderr, one per transfer (upload or download of a blob).
#[derive(Default)]
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.bar.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ProgressSink for Bars {
    fn start(&self, what: &str, total: Option<u64>) {
        let bar = match total {
            Some(t) => {
                let b = ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr());
                if let Ok(style) = ProgressStyle::with_template(
                    "[{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} {eta} {wide_msg}",
                ) {
                    b.set_style(style.progress_chars("=> "));
                }
                b
            }
            None => {
                let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                if let Ok(style) =
                    ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec} {wide_msg}")
                {
                    b.set_style(style);
                }
                b
            }
        };
        bar.set_message(what.to_string());
        if let Some(old) = self.slot().replace(bar) {
            old.finish_and_clear();
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(b) = self.slot().as_ref() {
            b.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Some(b) = self.slot().take() {
            b.finish_and_clear();
        }
    }
}

/// Progress bars when stderr is a terminal and the output is text; otherwise none.
pub fn progress(out: Out) -> Progress {
    if !out.json && std::io::stderr().is_terminal() {
        Progress::new(Arc::new(Bars::default()))
    } else {
        Progress::none()
    }
}

// ----- helpers --------------------------------------------------------------------------------------

/// Checks a URL and turns a plain folder path into an absolute one, so that the remote works from
/// any working directory.
fn normalize_url(url: &str) -> Result<String, Failure> {
    strata_sync::check_url(url)?;
    if url.contains("://") {
        Ok(url.to_string())
    } else {
        Ok(std::path::absolute(url)?.to_string_lossy().into_owned())
    }
}

/// Parses repeated `-o KEY=VALUE` options.
fn parse_options(
    options: &[String],
) -> Result<std::collections::BTreeMap<String, String>, Failure> {
    let mut out = std::collections::BTreeMap::new();
    for o in options {
        let Some((k, v)) = o.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Failure::new(
                EXIT_USAGE,
                format!("option {o:?} is not KEY=VALUE"),
            ));
        };
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// A failed per-branch operation: the failure, and what to show on stdout for it (a conflict list).
struct Failed {
    failure: Failure,
    shown: Option<Rendered>,
}

impl<E: Into<Failure>> From<E> for Failed {
    fn from(e: E) -> Failed {
        Failed {
            failure: e.into(),
            shown: None,
        }
    }
}

/// Runs `f` for one branch, or for each of `branches` (with `--all`), continuing past failures.
fn for_branches(
    out: Out,
    op: &str,
    remote: &str,
    branches: Option<Vec<String>>,
    single: &str,
    mut f: impl FnMut(&str) -> Result<Rendered, Failed>,
) -> Result<(), Failure> {
    let Some(branches) = branches else {
        return match f(single) {
            Ok(res) => {
                out.emit(res);
                Ok(())
            }
            Err(Failed { failure, shown }) => {
                if let Some(s) = shown {
                    out.emit(s);
                }
                Err(failure)
            }
        };
    };
    let mut docs = Vec::new();
    let mut failed: Vec<(String, u8)> = Vec::new();
    if branches.is_empty() && !out.json {
        render::print_line(&format!("{op} --all: no branches"));
    }
    for b in &branches {
        match f(b) {
            Ok(res) => {
                if !out.json {
                    render::print_line(&res.text);
                }
                let mut doc = res.doc;
                doc["ok"] = json!(true);
                docs.push(doc);
            }
            Err(Failed { failure, shown }) => {
                let mut doc = json!({
                    "branch": b, "ok": false, "error": failure.message, "exit_code": failure.code,
                });
                if let Some(s) = shown {
                    if !out.json {
                        render::print_line(&s.text);
                    }
                    doc["detail"] = s.doc;
                }
                eprintln!("error: {op} {remote}/{b}: {}", failure.message);
                docs.push(doc);
                failed.push((b.clone(), failure.code));
            }
        }
    }
    if out.json {
        out.emit(Rendered {
            doc: json!({"op": op, "remote": remote, "branches": docs, "failed": failed.len()}),
            text: String::new(),
        });
    }
    if failed.is_empty() {
        return Ok(());
    }
    let code = if failed.iter().all(|(_, c)| *c == failed[0].1) {
        failed[0].1
    } else {
        EXIT_ERROR
    };
    let names: Vec<&str> = failed.iter().map(|(b, _)| b.as_str()).collect();
    Err(Failure::new(
        code,
        format!(
            "{op} --all: {} of {} branch(es) failed: {}",
            failed.len(),
            branches.len(),
            names.join(", ")
        ),
    ))
}

/// Every local branch except internal ones.
fn local_branches(db: &Strata) -> Result<Vec<String>, Failure> {
    Ok(db
        .list_branches(false)?
        .into_iter()
        .map(|b| b.name)
        .collect())
}

/// Every branch the remote holds, by name.
fn remote_branch_names(db: &Strata, rt: &Runtime, remote: &str) -> Result<Vec<String>, Failure> {
    let cfg = strata_sync::config::get_remote(db, remote)?;
    let r = strata_sync::open_remote(&cfg)?;
    let mut names: Vec<String> = rt
        .block_on(strata_sync::list_remote_branches(&*r))?
        .into_iter()
        .map(|b| b.name)
        .collect();
    names.sort();
    Ok(names)
}

/// For pull and fetch: every branch the remote holds with `--all`, else `None` (one branch) after
/// checking that the remote is configured, so a typo fails before any work.
fn remote_targets(
    db: &Strata,
    rt: &Runtime,
    remote: &str,
    all: bool,
) -> Result<Option<Vec<String>>, Failure> {
    if all {
        return Ok(Some(remote_branch_names(db, rt, remote)?));
    }
    strata_sync::config::get_remote(db, remote)?;
    Ok(None)
}

/// Fails with "not a Strata remote" unless the remote holds the Strata marker or some branch. Reads
/// only.
async fn require_strata_remote(r: &dyn strata_remote::Remote) -> Result<(), SyncError> {
    use strata_remote::RemoteExt;
    let marker =
        strata_remote::RemotePath::parse(strata_sync::layout::MARKER).map_err(SyncError::Remote)?;
    if r.blob_exists(&marker).await? || !r.list_cursors("branches").await?.is_empty() {
        Ok(())
    } else {
        Err(SyncError::NotAStrataRemote(r.to_string()))
    }
}

fn branch_of<'a>(g: &'a Global, t: &'a SyncTarget) -> &'a str {
    t.branch_name.as_deref().unwrap_or(&g.branch)
}

// ----- commands -------------------------------------------------------------------------------------

/// `strata remote ...`.
pub fn remote(g: &Global, out: Out, rt: &Runtime, cmd: RemoteCmd) -> Result<(), Failure> {
    let db = open(g)?;
    match cmd {
        RemoteCmd::Add {
            name,
            url,
            options,
            token,
        } => {
            let mut options = parse_options(&options)?;
            if let Some(t) = token {
                options.insert("token".to_string(), t);
            }
            let cfg = RemoteConfig {
                name,
                url: normalize_url(&url)?,
                options,
            };
            db.remote_add_with(cfg.clone())?;
            out.emit(render::remote_added(&cfg));
        }
        RemoteCmd::List => out.emit(render::remotes(&db.remote_list()?)),
        RemoteCmd::Remove { name } => {
            strata_sync::config::get_remote(&db, &name)?;
            let prefix = format!("_origin:{name}:");
            let mirrors = db
                .list_branches(true)?
                .iter()
                .filter(|b| b.name.starts_with(&prefix))
                .count();
            let cfg = db.remote_remove(&name)?;
            out.emit(render::remote_removed(&cfg, mirrors));
        }
        RemoteCmd::Branches { name } => {
            let cfg = strata_sync::config::get_remote(&db, &name)?;
            let r = strata_sync::open_remote(&cfg)?;
            let mut list = rt.block_on(strata_sync::list_remote_branches(&*r))?;
            list.sort_by(|a, b| a.name.cmp(&b.name));
            out.emit(render::remote_branches(&name, &list));
        }
        RemoteCmd::Gc { name, grace } => {
            let cfg = strata_sync::config::get_remote(&db, &name)?;
            let r = strata_sync::open_remote(&cfg)?;
            // gc writes a probe blob to read the store's clock: never do that to a folder or
            // bucket that holds no Strata remote (it would create one there).
            rt.block_on(require_strata_remote(&*r))?;
            let report = rt.block_on(strata_sync::gc(&*r, Duration::from_secs(grace)))?;
            out.emit(render::gc(&name, grace, &report));
        }
        RemoteCmd::Compact {
            name,
            branch_name,
            squash_before,
        } => {
            let branch = branch_name.as_deref().unwrap_or(&g.branch);
            let opts = strata_sync::CompactOptions {
                squash_before,
                progress: progress(out),
            };
            let report = rt.block_on(strata_sync::compact(&db, &name, branch, &opts))?;
            out.emit(render::compacted(&name, &report));
        }
    }
    Ok(())
}

/// `strata push`.
pub fn push(g: &Global, out: Out, rt: &Runtime, t: SyncTarget, all: bool) -> Result<(), Failure> {
    let db = open(g)?;
    let remote = &t.remote;
    // Fail early, once, on an unknown remote.
    strata_sync::config::get_remote(&db, remote)?;
    let opts = PushOptions {
        progress: progress(out),
        ..Default::default()
    };
    let branches = if all {
        Some(local_branches(&db)?)
    } else {
        None
    };
    for_branches(out, "push", remote, branches, branch_of(g, &t), |b| {
        let report = rt.block_on(db.push_with(remote, b, &opts))?;
        Ok(render::pushed(remote, &report))
    })
}

/// `strata pull`.
pub fn pull(
    g: &Global,
    out: Out,
    rt: &Runtime,
    t: SyncTarget,
    all: bool,
    strategy: StrategyArg,
    conflict_branch: Option<String>,
) -> Result<(), Failure> {
    if let Some(name) = &conflict_branch {
        if strategy != StrategyArg::Strict {
            return Err(Failure::new(
                EXIT_USAGE,
                "--conflict-branch applies only to --strategy strict",
            ));
        }
        validate_branch_name(name, false)?;
    }
    let db = open(g)?;
    let remote = &t.remote;
    let branches = remote_targets(&db, rt, remote, all)?;
    let progress = progress(out);
    for_branches(out, "pull", remote, branches, branch_of(g, &t), |b| {
        let opts = PullOptions {
            strategy: strategy.into(),
            conflict_branch: conflict_branch.as_ref().map(|n| {
                if all {
                    format!("{n}/{b}")
                } else {
                    n.clone()
                }
            }),
            progress: progress.clone(),
            ..Default::default()
        };
        match rt.block_on(db.pull_with(remote, b, &opts)) {
            Ok(report) => Ok(render::pulled(remote, &report)),
            Err(SyncError::Conflicts(list)) => {
                let saved = match &opts.conflict_branch {
                    Some(n) => Some(db.branch_info(n)?),
                    None => None,
                };
                Err(Failed {
                    failure: Failure::new(
                        EXIT_MERGE_CONFLICT,
                        format!(
                            "pull of {remote}/{b} has {} conflicting key(s); {b} was not changed",
                            list.len()
                        ),
                    ),
                    shown: Some(render::pull_conflicts(remote, b, &list, saved.as_ref())),
                })
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// `strata fetch`.
pub fn fetch(g: &Global, out: Out, rt: &Runtime, t: SyncTarget, all: bool) -> Result<(), Failure> {
    let db = open(g)?;
    let remote = &t.remote;
    let branches = remote_targets(&db, rt, remote, all)?;
    let progress = progress(out);
    for_branches(out, "fetch", remote, branches, branch_of(g, &t), |b| {
        let report = rt.block_on(strata_sync::fetch(&db, remote, b, &progress))?;
        Ok(render::fetched(remote, &report))
    })
}

/// `strata status`.
pub fn status(g: &Global, out: Out, rt: &Runtime, t: SyncTarget, all: bool) -> Result<(), Failure> {
    let db = open(g)?;
    let remote = &t.remote;
    strata_sync::config::get_remote(&db, remote)?;
    let branches = if all {
        Some(local_branches(&db)?)
    } else {
        None
    };
    for_branches(out, "status", remote, branches, branch_of(g, &t), |b| {
        let s = rt.block_on(db.sync_status(remote, b))?;
        Ok(render::sync_status(remote, &s))
    })
}

/// `strata clone URL DIR`.
pub fn clone(
    out: Out,
    rt: &Runtime,
    url: &str,
    dir: &Path,
    options: &[String],
) -> Result<(), Failure> {
    let url = normalize_url(url)?;
    let options = parse_options(options)?;
    let (_db, report) = rt.block_on(strata_sync::clone_with_options(
        &url,
        &options,
        dir,
        &progress(out),
    ))?;
    out.emit(render::cloned(&url, dir, &report));
    Ok(())
}
