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
    admin, Progress, ProgressSink, PullOptions, PushOptions, RemoteConfig, SyncError, SyncExt,
};
use tokio::runtime::Runtime;

use crate::args::{Global, RemoteArgs, RemoteCmd, StrategyArg, SyncTarget};
use crate::commands::open;
use crate::failure::{Failure, EXIT_ERROR, EXIT_MERGE_CONFLICT, EXIT_USAGE};
use crate::render::{self, Out, Rendered};

// ----- progress -------------------------------------------------------------------------------------

/// Progress on stderr, labelled with the operation, the branch and, with --all or clone, "branch N
/// of M": on a terminal a bar per transfer and a spinner per phase; elsewhere (`--progress` into a
/// pipe or file) one plain line per phase and per transfer, as git does.
#[derive(Default)]
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    label: Mutex<String>,
    /// Plain lines instead of bars.
    plain: bool,
}

impl Bars {
    /// Sets the label that following transfers show.
    pub fn set_label(&self, label: String) {
        *self.label.lock().unwrap_or_else(|e| e.into_inner()) = label;
    }

    /// `label: what`, or `what` alone.
    fn labelled(&self, what: &str) -> String {
        let label = self.label.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if label.is_empty() {
            what.to_string()
        } else {
            format!("{label}: {what}")
        }
    }
}

impl Bars {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.bar.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ProgressSink for Bars {
    fn start(&self, what: &str, total: Option<u64>) {
        if self.plain {
            let size = total.map(|t| format!(" ({})", render::bytes(t)));
            eprintln!("{}{}", self.labelled(what), size.unwrap_or_default());
            return;
        }
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
        // The sync library names transfers by branch ("upload main", "download main (2/3)"); the
        // label adds the branch's place in --all or clone ("branch 2 of 5").
        bar.set_message(self.labelled(what));
        if let Some(old) = self.slot().replace(bar) {
            old.finish_and_clear();
        }
    }

    fn phase(&self, phase: &str) {
        if self.plain {
            eprintln!("{}", self.labelled(phase));
            return;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {wide_msg}") {
            bar.set_style(style);
        }
        bar.set_message(self.labelled(phase));
        bar.enable_steady_tick(Duration::from_millis(120));
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

/// Where progress goes: bars (kept so that labels can be set), or nowhere.
#[derive(Clone, Default)]
pub struct Reporter {
    bars: Option<Arc<Bars>>,
}

impl Reporter {
    /// The progress handle to give the sync library.
    pub fn progress(&self) -> Progress {
        match &self.bars {
            Some(b) => Progress::new(b.clone()),
            None => Progress::none(),
        }
    }

    /// Labels the transfers of one branch: `push main (branch 2 of 5)`.
    pub fn label(&self, op: &str, branch: &str, index: usize, total: usize) {
        if let Some(b) = &self.bars {
            b.set_label(if total > 1 {
                format!("{op} {branch} (branch {} of {total})", index + 1)
            } else {
                format!("{op} {branch}")
            });
        }
    }
}

/// Progress bars on stderr with --progress, or when stderr is a terminal and neither --json, -q nor
/// --no-progress is given.
pub fn reporter(g: &Global, out: Out) -> Reporter {
    let tty = std::io::stderr().is_terminal();
    let on = !g.no_progress && (g.progress || (!out.json && !out.quiet && tty));
    Reporter {
        bars: on.then(|| {
            Arc::new(Bars {
                plain: !tty,
                ..Bars::default()
            })
        }),
    }
}

// ----- helpers --------------------------------------------------------------------------------------

/// Checks a URL and turns a plain folder path into an absolute one without `.` or `..`, so that
/// the remote works from any working directory.
fn normalize_url(url: &str) -> Result<String, Failure> {
    strata_sync::check_url(url)?;
    if url.contains("://") {
        Ok(url.to_string())
    } else {
        Ok(crate::commands::absolute(Path::new(url))?
            .to_string_lossy()
            .into_owned())
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
    shown: Option<Box<Rendered>>,
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
/// `f` gets the branch and its index. With `--json` the data is always
/// `{"op","remote","branches":[{"branch","ok",…}],"failed":N}`, for one branch as for `--all`; a
/// failure's envelope carries it as `error.detail`.
fn for_branches(
    out: Out,
    op: &str,
    remote: &str,
    branches: Option<Vec<String>>,
    single: &str,
    mut f: impl FnMut(&str, usize, usize) -> Result<Rendered, Failed>,
) -> Result<(), Failure> {
    let all = branches.is_some();
    let branches = branches.unwrap_or_else(|| vec![single.to_string()]);
    let mut docs = Vec::new();
    let mut failed: Vec<(String, Failure)> = Vec::new();
    if branches.is_empty() {
        out.text(&format!("{op} --all: no branches"));
    }
    for (i, b) in branches.iter().enumerate() {
        match f(b, i, branches.len()) {
            Ok(res) => {
                out.text(&res.text);
                let mut doc = res.doc;
                doc["branch"] = json!(b);
                doc["ok"] = json!(true);
                docs.push(doc);
            }
            Err(Failed { failure, shown }) => {
                let mut err = json!({
                    "code": failure.code_name(), "exit": failure.code, "message": failure.message,
                });
                if let Some(s) = shown {
                    out.text(&s.text);
                    err["detail"] = s.doc;
                }
                if all {
                    eprintln!("error: {op} {remote}/{b}: {}", failure.message);
                }
                docs.push(json!({"branch": b, "ok": false, "error": err}));
                failed.push((b.clone(), failure));
            }
        }
    }
    let data = json!({"op": op, "remote": remote, "branches": docs, "failed": failed.len()});
    if failed.is_empty() {
        if out.json {
            out.emit(Rendered {
                doc: data,
                text: String::new(),
            });
        }
        return Ok(());
    }
    if !all {
        let (_, f) = failed.remove(0);
        return Err(f.with_detail(data));
    }
    let failed: Vec<(String, u8)> = failed.into_iter().map(|(b, f)| (b, f.code)).collect();
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
    )
    .with_detail(data))
}

// ----- the database: a folder, or a server (--db strata://) ---------------------------------------

/// The database a sync or remote command acts on: a local folder (strata-sync runs here, on `rt`),
/// or a server that runs the same strata-sync calls on its own database (`--db strata://...`).
/// Each method answers alike on both sides, so every command prints the same.
pub(crate) enum SyncDb<'a> {
    Local(Strata, &'a Runtime),
    Server(strata_client::Db),
}

impl<'a> SyncDb<'a> {
    /// Opens what `--db` names (a local database read-only when `reads_only`).
    pub(crate) fn open(g: &Global, rt: &'a Runtime, reads_only: bool) -> Result<Self, Failure> {
        if let Some(url) = crate::handle::server_url(g) {
            return Ok(SyncDb::Server(crate::handle::connect(g, url)?));
        }
        Ok(SyncDb::Local(
            if reads_only {
                crate::commands::open_read(g)?
            } else {
                open(g)?
            },
            rt,
        ))
    }

    fn remotes(&self) -> Result<Vec<RemoteConfig>, Failure> {
        match self {
            SyncDb::Local(db, _) => Ok(db.remote_list()?),
            SyncDb::Server(c) => Ok(c.remote_list()?.remotes),
        }
    }

    fn upstreams(&self) -> Result<std::collections::BTreeMap<String, String>, Failure> {
        match self {
            SyncDb::Local(db, _) => Ok(admin::upstreams(db)?),
            SyncDb::Server(c) => Ok(c.remote_list()?.upstreams),
        }
    }

    fn upstream(&self, branch: &str) -> Result<Option<String>, Failure> {
        match self {
            SyncDb::Local(db, _) => Ok(admin::get_upstream(db, branch)?),
            SyncDb::Server(c) => Ok(c.remote_list()?.upstreams.get(branch).cloned()),
        }
    }

    /// The remote's configuration (secrets redacted on a server), or the not-found failure.
    fn get_remote(&self, name: &str) -> Result<RemoteConfig, Failure> {
        match self {
            SyncDb::Local(db, _) => Ok(strata_sync::config::get_remote(db, name)?),
            SyncDb::Server(c) => {
                strata_sync::config::validate_remote_name(name)?;
                c.remote_list()?
                    .remotes
                    .into_iter()
                    .find(|r| r.name == name)
                    .ok_or_else(|| {
                        SyncError::NotFound(format!(
                            "no remote named {name:?} (see `strata remote add`)"
                        ))
                        .into()
                    })
            }
        }
    }

    /// Every local branch except internal ones.
    fn local_branches(&self) -> Result<Vec<String>, Failure> {
        let list = match self {
            SyncDb::Local(db, _) => db.list_branches(false)?,
            SyncDb::Server(c) => c.list_branches(false)?,
        };
        Ok(list.into_iter().map(|b| b.name).collect())
    }

    fn branch_exists(&self, name: &str) -> Result<bool, Failure> {
        match self {
            SyncDb::Local(db, _) => Ok(db.branch_exists(name)?),
            SyncDb::Server(c) => Ok(c.branch_exists(name)?),
        }
    }

    fn branch_info(&self, name: &str) -> Result<strata_engine::BranchInfo, Failure> {
        match self {
            SyncDb::Local(db, _) => Ok(db.branch_info(name)?),
            SyncDb::Server(c) => Ok(c.branch_info(name)?),
        }
    }

    /// The branches the remote holds, sorted by name.
    fn remote_branches(&self, remote: &str) -> Result<Vec<strata_sync::RemoteBranch>, Failure> {
        let mut list = match self {
            SyncDb::Local(db, rt) => {
                let cfg = strata_sync::config::get_remote(db, remote)?;
                let r = strata_sync::open_remote(&cfg)?;
                rt.block_on(strata_sync::list_remote_branches(&*r))?
            }
            SyncDb::Server(c) => c.remote_branches(remote)?,
        };
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    fn push(
        &self,
        remote: &str,
        branch: &str,
        set_upstream: bool,
        rep: &Reporter,
    ) -> Result<strata_sync::PushReport, Failure> {
        match self {
            SyncDb::Local(db, rt) => {
                let opts = PushOptions {
                    progress: rep.progress(),
                    ..Default::default()
                };
                let report = rt.block_on(db.push_with(remote, branch, &opts))?;
                if set_upstream {
                    admin::set_upstream(db, branch, remote)?;
                }
                Ok(report)
            }
            SyncDb::Server(c) if set_upstream => Ok(c.push_with(remote, branch, true)?),
            SyncDb::Server(c) => Ok(c.push(remote, branch)?),
        }
    }

    /// A pull: the report, or the conflicts of a strict pull that changed nothing.
    fn pull(
        &self,
        remote: &str,
        branch: &str,
        strategy: StrategyArg,
        conflict_branch: Option<&str>,
        rep: &Reporter,
    ) -> Result<Result<strata_sync::PullReport, Vec<strata_engine::MergeConflict>>, Failure> {
        match self {
            SyncDb::Local(db, rt) => {
                let opts = PullOptions {
                    strategy: strategy.into(),
                    conflict_branch: conflict_branch.map(str::to_string),
                    progress: rep.progress(),
                    ..Default::default()
                };
                match rt.block_on(db.pull_with(remote, branch, &opts)) {
                    Ok(r) => Ok(Ok(r)),
                    Err(SyncError::Conflicts(list)) => Ok(Err(list)),
                    Err(e) => Err(e.into()),
                }
            }
            SyncDb::Server(c) => {
                let r = if strategy == StrategyArg::Ours || conflict_branch.is_some() {
                    c.pull_with(remote, branch, strategy.into(), conflict_branch)
                } else {
                    c.pull(remote, branch, strategy == StrategyArg::Strict)
                };
                match r {
                    Ok(r) => Ok(Ok(r)),
                    Err(e) if e.code() == Some(strata_client::ErrorCode::MergeConflicts) => {
                        Ok(Err(e.conflicts().to_vec()))
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    fn fetch(
        &self,
        remote: &str,
        branch: &str,
        rep: &Reporter,
    ) -> Result<strata_sync::FetchReport, Failure> {
        match self {
            SyncDb::Local(db, rt) => {
                Ok(rt.block_on(strata_sync::fetch(db, remote, branch, &rep.progress()))?)
            }
            SyncDb::Server(c) => Ok(c.fetch(remote, branch)?),
        }
    }

    fn status(&self, remote: &str, branch: &str) -> Result<strata_sync::SyncStatus, Failure> {
        match self {
            SyncDb::Local(db, rt) => Ok(rt.block_on(db.sync_status(remote, branch))?),
            SyncDb::Server(c) => Ok(c.sync_status(remote, branch)?),
        }
    }
}

/// For pull and fetch: every branch the remote holds with `--all`, else `None` (one branch) after
/// checking that the remote is configured, so a typo fails before any work.
fn remote_targets(
    db: &SyncDb<'_>,
    remote: &str,
    all: bool,
) -> Result<Option<Vec<String>>, Failure> {
    if all {
        return Ok(Some(
            db.remote_branches(remote)?
                .into_iter()
                .map(|b| b.name)
                .collect(),
        ));
    }
    db.get_remote(remote)?;
    Ok(None)
}

/// The branch a sync command acts on: BRANCH, else --branch (which must not name a version).
fn branch_of(g: &Global, t: &SyncTarget) -> Result<String, Failure> {
    match &t.branch_name {
        Some(b) => Ok(b.clone()),
        None => Ok(crate::commands::write_branch(g)?.to_string()),
    }
}

/// The remote a push, pull, fetch or status uses: REMOTE, else the branch's upstream, else the only
/// configured remote, else `origin`.
fn remote_of(db: &SyncDb<'_>, t: &SyncTarget, branch: Option<&str>) -> Result<String, Failure> {
    if let Some(r) = &t.remote {
        return Ok(r.clone());
    }
    if let Some(b) = branch {
        if let Some(up) = db.upstream(b)? {
            return Ok(up);
        }
    }
    let list = db.remotes()?;
    Ok(match list.as_slice() {
        [only] => only.name.clone(),
        _ => "origin".to_string(),
    })
}

// ----- commands -------------------------------------------------------------------------------------

/// `strata remote ...`: on a folder, or (`--db strata://`) on the server's database, where changes
/// need an administrative key and secret option values never leave the server.
pub fn remote(g: &Global, out: Out, rt: &Runtime, args: RemoteArgs) -> Result<(), Failure> {
    let Some(cmd) = args.cmd else {
        // `strata remote [-v]`, as git: names, or names with URLs.
        let db = SyncDb::open(g, rt, true)?;
        let list = db.remotes()?;
        let mut res = render::remotes(&list);
        res.text = list
            .iter()
            .map(|c| {
                if args.verbose {
                    format!("{}\t{}", c.name, c.url)
                } else {
                    c.name.clone()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        out.show(res);
        return Ok(());
    };
    let reads_only = matches!(
        cmd,
        RemoteCmd::List | RemoteCmd::Show { .. } | RemoteCmd::Branches { .. }
    );
    let db = SyncDb::open(g, rt, reads_only)?;
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
            match &db {
                SyncDb::Local(db, _) => db.remote_add_with(cfg.clone())?,
                SyncDb::Server(c) => {
                    c.remote_add(cfg.clone())?;
                }
            }
            out.emit(render::remote_added(&cfg));
        }
        RemoteCmd::List => out.show(render::remotes(&db.remotes()?)),
        RemoteCmd::SetUrl { name, url } => {
            let url = normalize_url(&url)?;
            let (cfg, old) = match &db {
                SyncDb::Local(db, _) => strata_client::admin::set_url(db, &name, &url)?,
                SyncDb::Server(c) => c.remote_set_url(&name, &url)?,
            };
            let mut res = render::remote_added(&cfg);
            res.doc["previous_url"] = json!(old);
            res.text = format!("remote {name}: {old} -> {}", cfg.url);
            out.emit(res);
        }
        RemoteCmd::Rename { old, new } => {
            let cfg = match &db {
                SyncDb::Local(db, _) => admin::rename_remote(db, &old, &new)?,
                SyncDb::Server(c) => c.remote_rename(&old, &new)?,
            };
            let mut res = render::remote_added(&cfg);
            res.doc["previous_name"] = json!(old);
            res.text = format!("renamed remote {old} to {new}");
            out.emit(res);
        }
        RemoteCmd::Show { name } => {
            let cfg = db.get_remote(&name)?;
            let list = db.remote_branches(&name)?;
            let mut rows = Vec::new();
            for b in &list {
                let status = if db.branch_exists(&b.name)? {
                    Some(db.status(&name, &b.name)?)
                } else {
                    None
                };
                rows.push((b.clone(), status));
            }
            let upstreams = db
                .upstreams()?
                .into_iter()
                .filter(|(_, r)| *r == name)
                .map(|(b, _)| b)
                .collect::<Vec<_>>();
            out.show(render::remote_show(&cfg, &rows, &upstreams));
        }
        RemoteCmd::Remove { name } => {
            let (cfg, mirrors) = match &db {
                SyncDb::Local(db, _) => strata_client::admin::remove_remote(db, &name)?,
                SyncDb::Server(c) => c.remote_remove(&name)?,
            };
            out.emit(render::remote_removed(&cfg, mirrors));
        }
        RemoteCmd::Branches { name } => {
            let list = db.remote_branches(&name)?;
            out.show(render::remote_branches(&name, &list));
        }
        RemoteCmd::Gc { name, grace } => {
            let report = match &db {
                SyncDb::Local(db, rt) => {
                    let cfg = strata_sync::config::get_remote(db, &name)?;
                    rt.block_on(strata_client::admin::gc(&cfg, Duration::from_secs(grace)))?
                }
                SyncDb::Server(c) => c.remote_gc(&name, Duration::from_secs(grace))?,
            };
            out.emit(render::gc(&name, grace, &report));
        }
        RemoteCmd::Compact {
            name,
            branch_name,
            squash_before,
        } => {
            let branch = match branch_name {
                Some(b) => b,
                None => crate::commands::write_branch(g)?.to_string(),
            };
            let report = match &db {
                SyncDb::Local(db, rt) => {
                    let rep = reporter(g, out);
                    rep.label("compact", &branch, 0, 1);
                    let opts = strata_sync::CompactOptions {
                        squash_before,
                        progress: rep.progress(),
                    };
                    rt.block_on(strata_sync::compact(db, &name, &branch, &opts))?
                }
                SyncDb::Server(c) => c.remote_compact(&name, &branch, squash_before)?,
            };
            out.emit(render::compacted(&name, &report));
        }
    }
    Ok(())
}

/// `strata push`.
pub fn push(
    g: &Global,
    out: Out,
    rt: &Runtime,
    t: SyncTarget,
    all: bool,
    set_upstream: bool,
) -> Result<(), Failure> {
    let db = SyncDb::open(g, rt, false)?;
    let single = branch_of(g, &t)?;
    let remote = remote_of(&db, &t, (!all).then_some(single.as_str()))?;
    let remote = &remote;
    // Fail early, once, on an unknown remote.
    db.get_remote(remote)?;
    let rep = reporter(g, out);
    let branches = if all {
        Some(db.local_branches()?)
    } else {
        None
    };
    for_branches(out, "push", remote, branches, &single, |b, i, n| {
        rep.label("push", b, i, n);
        let report = db.push(remote, b, set_upstream, &rep)?;
        let mut res = render::pushed(remote, &report);
        if set_upstream {
            res.doc["upstream"] = json!(remote);
            res.text
                .push_str(&format!("\nbranch {b} now tracks {remote}"));
        }
        Ok(res)
    })
}

/// `strata push --delete [REMOTE] BRANCH`.
pub fn push_delete(g: &Global, out: Out, rt: &Runtime, t: SyncTarget) -> Result<(), Failure> {
    let db = SyncDb::open(g, rt, false)?;
    // Deleting is explicit: the branch must be named (as in git), never taken from -b's default.
    let Some(branch) = t.branch_name.clone() else {
        return Err(Failure::new(
            EXIT_USAGE,
            "push --delete needs the remote and the branch: strata push --delete REMOTE BRANCH",
        ));
    };
    let remote = remote_of(&db, &t, None)?;
    let rep = match &db {
        SyncDb::Local(db, rt) => {
            rt.block_on(strata_sync::delete_remote_branch(db, &remote, &branch))?
        }
        SyncDb::Server(c) => c.push_delete(&remote, &branch)?,
    };
    let mut doc = serde_json::to_value(&rep).unwrap_or_default();
    doc["remote"] = json!(remote);
    out.emit(Rendered {
        doc,
        text: format!(
            "deleted {remote}/{branch} (was at version {}; `strata remote gc {remote}` reclaims its {} blob(s)); the local branch is untouched",
            rep.remote_version, rep.blobs
        ),
    });
    Ok(())
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
    let db = SyncDb::open(g, rt, false)?;
    let single = branch_of(g, &t)?;
    let remote = remote_of(&db, &t, (!all).then_some(single.as_str()))?;
    let remote = &remote;
    let branches = remote_targets(&db, remote, all)?;
    let rep = reporter(g, out);
    for_branches(out, "pull", remote, branches, &single, |b, i, n| {
        rep.label("pull", b, i, n);
        let conflict_branch =
            conflict_branch
                .as_ref()
                .map(|n| if all { format!("{n}/{b}") } else { n.clone() });
        match db.pull(remote, b, strategy, conflict_branch.as_deref(), &rep)? {
            Ok(report) => Ok(render::pulled(remote, &report)),
            Err(list) => {
                let saved = match &conflict_branch {
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
                    shown: Some(Box::new(render::pull_conflicts(
                        remote,
                        b,
                        &list,
                        saved.as_ref(),
                    ))),
                })
            }
        }
    })
}

/// `strata fetch`.
pub fn fetch(g: &Global, out: Out, rt: &Runtime, t: SyncTarget, all: bool) -> Result<(), Failure> {
    let db = SyncDb::open(g, rt, false)?;
    let single = branch_of(g, &t)?;
    let remote = remote_of(&db, &t, (!all).then_some(single.as_str()))?;
    let remote = &remote;
    let branches = remote_targets(&db, remote, all)?;
    let rep = reporter(g, out);
    for_branches(out, "fetch", remote, branches, &single, |b, i, n| {
        rep.label("fetch", b, i, n);
        Ok(render::fetched(remote, &db.fetch(remote, b, &rep)?))
    })
}

/// `strata status`.
pub fn status(g: &Global, out: Out, rt: &Runtime, t: SyncTarget, all: bool) -> Result<(), Failure> {
    let db = SyncDb::open(g, rt, false)?;
    let single = branch_of(g, &t)?;
    let remote = remote_of(&db, &t, (!all).then_some(single.as_str()))?;
    let remote = &remote;
    db.get_remote(remote)?;
    let branches = if all {
        Some(db.local_branches()?)
    } else {
        None
    };
    for_branches(out, "status", remote, branches, &single, |b, _, _| {
        Ok(render::sync_status(remote, &db.status(remote, b)?))
    })
}

/// The folder `clone URL` creates when no DIR is given: the URL's last path segment, as git does.
pub fn default_clone_dir(url: &str) -> Result<std::path::PathBuf, Failure> {
    let path = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = path.split(['?', '#']).next().unwrap_or(path);
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(seg) if !seg.is_empty() && seg != "." && seg != ".." && !path.ends_with(':') => {
            Ok(std::path::PathBuf::from(seg))
        }
        _ => Err(Failure::new(
            EXIT_USAGE,
            format!("cannot name a folder after {url:?}; give the clone a DIR"),
        )),
    }
}

/// `strata clone URL [DIR]` (with -b BRANCH, only that branch).
pub fn clone(
    g: &Global,
    out: Out,
    rt: &Runtime,
    url: &str,
    dir: Option<&Path>,
    options: &[String],
    depth: Option<u64>,
) -> Result<(), Failure> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => default_clone_dir(url)?,
    };
    let only = match &g.branch {
        Some(b) => Some(crate::commands::write_branch(g)?.to_string()).filter(|_| !b.is_empty()),
        None => None,
    };
    let url = normalize_url(url)?;
    let options = parse_options(options)?;
    let rep = reporter(g, out);
    let what = strata_sync::CloneOptions {
        branch: only,
        depth,
    };
    let (_db, report) = rt.block_on(strata_sync::clone_labelled(
        &url,
        &options,
        &dir,
        &rep.progress(),
        &what,
        &|b: &str, i: usize, n: usize| rep.label("clone", b, i, n),
    ))?;
    out.emit(render::cloned(&url, &dir, &report));
    Ok(())
}
