//! # strata-sync
//!
//! Git-style sync of Strata branches through any [`strata_remote::Remote`]: push, pull, fetch, clone,
//! status, garbage collection and compaction, written once over `&dyn Remote`.
//!
//! ```ignore
//! # async fn demo() -> strata_sync::Result<()> {
//! use strata_engine::Strata;
//! use strata_sync::SyncExt;
//! // Once per process: which backends can be opened by URL (folders, buckets…).
//! strata_sync::set_connector(std::sync::Arc::new(strata_remotes::Remotes::new()));
//! let db = Strata::open("/agent-a/data")?;
//! db.remote_add("origin", "/shared/strata-remote")?;
//! db.main().kv_put("task:1", "done")?;
//! db.push("origin", "main").await?;
//! let (b, _) = strata_sync::clone("/shared/strata-remote", "/agent-b/data").await?;
//! b.pull("origin", "main").await?;
//! # Ok(()) }
//! ```
//!
//! ## Layout
//! - `ops`: the algorithm (push, pull, fetch, status, gc, compact).
//! - `blob`: the delta/snapshot blob format; `layout`: remote paths and the cursor document.
//! - `config`: remotes and sync state in the internal `_strata` branch (space `_sync`).
//! - `open`: the registered [`strata_remote::Connector`] that opens remotes by URL (this crate
//!   depends on no backend). `progress`: transfer progress hooks.
//!
//! ## The async boundary
//! Every public async function here runs its engine calls, zstd passes and file work on tokio's
//! blocking pool, so it never parks a runtime worker on SQLite's lock or the disk.

#![warn(missing_docs, missing_debug_implementations)]

pub mod admin;
pub mod blob;
pub mod config;
mod error;
pub mod layout;
mod open;
mod ops;
mod progress;

use std::path::Path;

use async_trait::async_trait;
use serde::Serialize;
use strata_engine::Strata;

pub use config::{RemoteConfig, SyncState};
pub use error::{Result, SyncError};
pub use open::{
    check_config, check_url, connector, open_remote, open_url, open_url_with, set_connector,
};
pub use ops::{
    compact, compact_with, delete_remote_branch, delete_remote_branch_with, fetch, gc,
    list_remote_branches, mirror_name, pull, push, status, status_with, CompactOptions,
    CompactReport, DeleteReport, FetchReport, GcReport, Hook, PullOptions, PullReport, PushOptions,
    PushReport, RemoteBranch, StepHook, SyncStatus, PAGE_BYTES, PUBLISH_WITHIN,
};
pub use ops::{fetch_with as fetch_from, pull_with as pull_from, push_with as push_to};
pub use progress::{Progress, ProgressSink};

/// Sync methods on a database handle.
#[async_trait]
pub trait SyncExt {
    /// Adds a remote by name and URL (a folder path, `file:///path`, or `memory://name`).
    fn remote_add(&self, name: &str, url: &str) -> Result<()>;
    /// Adds a remote with backend options.
    fn remote_add_with(&self, cfg: RemoteConfig) -> Result<()>;
    /// Configured remotes.
    fn remote_list(&self) -> Result<Vec<RemoteConfig>>;
    /// Removes a remote, its sync state and its mirror branches.
    fn remote_remove(&self, name: &str) -> Result<RemoteConfig>;
    /// Pushes a branch.
    async fn push(&self, remote: &str, branch: &str) -> Result<PushReport>;
    /// Pushes with options.
    async fn push_with(&self, remote: &str, branch: &str, opts: &PushOptions)
        -> Result<PushReport>;
    /// Pulls a branch (last writer wins).
    async fn pull(&self, remote: &str, branch: &str) -> Result<PullReport>;
    /// Pulls with options (e.g. `Strict`).
    async fn pull_with(&self, remote: &str, branch: &str, opts: &PullOptions)
        -> Result<PullReport>;
    /// Fetches a branch into its mirror without merging.
    async fn fetch(&self, remote: &str, branch: &str) -> Result<FetchReport>;
    /// Ahead/behind against a remote.
    async fn sync_status(&self, remote: &str, branch: &str) -> Result<SyncStatus>;
}

#[async_trait]
impl SyncExt for Strata {
    fn remote_add(&self, name: &str, url: &str) -> Result<()> {
        self.remote_add_with(RemoteConfig {
            name: name.into(),
            url: url.into(),
            options: Default::default(),
        })
    }
    fn remote_add_with(&self, cfg: RemoteConfig) -> Result<()> {
        config::add_remote(self, &cfg, open::check_config)
    }
    fn remote_list(&self) -> Result<Vec<RemoteConfig>> {
        config::list_remotes(self)
    }
    fn remote_remove(&self, name: &str) -> Result<RemoteConfig> {
        let cfg = config::remove_remote(self, name)?;
        let prefix = format!("_origin:{name}:");
        for b in self.list_branches(true)? {
            if b.name.starts_with(&prefix) {
                match self.delete_branch(&b.name) {
                    Ok(()) | Err(strata_engine::Error::BranchNotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(cfg)
    }
    async fn push(&self, remote: &str, branch: &str) -> Result<PushReport> {
        ops::push(self, remote, branch, &PushOptions::default()).await
    }
    async fn push_with(
        &self,
        remote: &str,
        branch: &str,
        opts: &PushOptions,
    ) -> Result<PushReport> {
        ops::push(self, remote, branch, opts).await
    }
    async fn pull(&self, remote: &str, branch: &str) -> Result<PullReport> {
        ops::pull(self, remote, branch, &PullOptions::default()).await
    }
    async fn pull_with(
        &self,
        remote: &str,
        branch: &str,
        opts: &PullOptions,
    ) -> Result<PullReport> {
        ops::pull(self, remote, branch, opts).await
    }
    async fn fetch(&self, remote: &str, branch: &str) -> Result<FetchReport> {
        ops::fetch(self, remote, branch, &Progress::none()).await
    }
    async fn sync_status(&self, remote: &str, branch: &str) -> Result<SyncStatus> {
        ops::status(self, remote, branch).await
    }
}

/// What a clone did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CloneReport {
    /// The branches cloned, with what was fetched for each.
    pub branches: Vec<FetchReport>,
}

/// Creates a new database at `path` from the remote at `url` (named `origin`), with every branch the
/// remote holds. Each branch loads its whole history (every remote version, from the start or from the
/// snapshot a `squash_before` compaction left), and the local branch is a copy-on-write fork of its
/// mirror, so nothing is stored twice. On failure the new folder is removed. See [`clone_full`] for
/// one branch or a shallow clone.
pub async fn clone(url: &str, path: impl AsRef<Path>) -> Result<(Strata, CloneReport)> {
    clone_with(url, path, &Progress::none()).await
}

/// [`clone`] with progress reporting.
pub async fn clone_with(
    url: &str,
    path: impl AsRef<Path>,
    progress: &Progress,
) -> Result<(Strata, CloneReport)> {
    clone_with_options(url, &Default::default(), path, progress).await
}

/// What to clone besides the defaults (every branch, whole history).
#[derive(Clone, Debug, Default)]
pub struct CloneOptions {
    /// Only this branch (`clone -b`).
    pub branch: Option<String>,
    /// Only about the last N versions of each branch, from the remote's shallow snapshot (written by
    /// `remote compact`) when it leaves at most N versions after it; otherwise the whole history.
    pub depth: Option<u64>,
}

/// [`clone_with`] for a remote that needs options (a bucket's `endpoint`, say); they are saved with
/// the new database's `origin`.
pub async fn clone_with_options(
    url: &str,
    options: &std::collections::BTreeMap<String, String>,
    path: impl AsRef<Path>,
    progress: &Progress,
) -> Result<(Strata, CloneReport)> {
    clone_full(url, options, path, progress, &CloneOptions::default()).await
}

/// The general clone: remote options, progress, and which branches and how much history.
pub async fn clone_full(
    url: &str,
    options: &std::collections::BTreeMap<String, String>,
    path: impl AsRef<Path>,
    progress: &Progress,
    what: &CloneOptions,
) -> Result<(Strata, CloneReport)> {
    clone_labelled(url, options, path, progress, what, &|_, _, _| {}).await
}

/// [`clone_full`], calling `on_branch(name, index, count)` before each branch is pulled (for
/// progress labels such as "branch 2 of 5").
pub async fn clone_labelled(
    url: &str,
    options: &std::collections::BTreeMap<String, String>,
    path: impl AsRef<Path>,
    progress: &Progress,
    what: &CloneOptions,
    on_branch: &(dyn Fn(&str, usize, usize) + Sync),
) -> Result<(Strata, CloneReport)> {
    let path = path.as_ref().to_path_buf();
    // The checks touch the filesystem: off the runtime, like every other file operation here.
    let p = path.clone();
    ops::blocking(move || {
        if p.exists() {
            if !p.is_dir() {
                return Err(SyncError::Config(format!(
                    "cannot clone into {}: it is a file, not a folder",
                    p.display()
                )));
            }
            let not_empty = std::fs::read_dir(&p)
                .map_err(|e| SyncError::Config(format!("cannot read {}: {e}", p.display())))?
                .next()
                .is_some();
            if not_empty {
                return Err(SyncError::Config(format!(
                    "cannot clone into {}: it exists and is not empty",
                    p.display()
                )));
            }
        }
        Ok(())
    })
    .await?;
    let remote = open::open_url_with(url, options)?;
    let mut branches = list_remote_branches(&*remote).await?;
    if let Some(only) = &what.branch {
        let all: Vec<String> = branches.iter().map(|b| b.name.clone()).collect();
        branches.retain(|b| &b.name == only);
        if branches.is_empty() && !all.is_empty() {
            return Err(SyncError::NotFound(format!(
                "remote {remote} has no branch {only:?} (it has: {})",
                all.join(", ")
            )));
        }
    }
    if branches.is_empty() {
        let marker = strata_remote::RemotePath::parse(layout::MARKER).expect("valid");
        use strata_remote::RemoteExt;
        return Err(if remote.blob_exists(&marker).await? {
            SyncError::NotFound(format!("remote {remote} has no branches to clone"))
        } else {
            SyncError::NotAStrataRemote(remote.to_string())
        });
    }
    let created = {
        let p = path.clone();
        ops::blocking(move || Ok(!p.exists())).await?
    };
    let result = async {
        let (url, options, p) = (url.to_string(), options.clone(), path.clone());
        let db = ops::blocking(move || {
            let db = Strata::open(&p)?;
            db.remote_add_with(RemoteConfig {
                name: "origin".into(),
                url,
                options,
            })?;
            Ok(db)
        })
        .await?;
        let mut report = CloneReport { branches: vec![] };
        let opts = PullOptions {
            progress: progress.clone(),
            depth: what.depth,
            ..Default::default()
        };
        for (i, b) in branches.iter().enumerate() {
            on_branch(&b.name, i, branches.len());
            let r = ops::pull_with(&db, &*remote, "origin", &b.name, &opts).await?;
            report.branches.push(r.fetch);
        }
        Ok((db, report))
    }
    .await;
    if result.is_err() {
        let p = path.clone();
        let _ = ops::blocking(move || {
            if created {
                let _ = std::fs::remove_dir_all(&p);
            } else if let Ok(entries) = std::fs::read_dir(&p) {
                // The folder existed (empty): empty it again.
                for e in entries.flatten() {
                    let _ = std::fs::remove_dir_all(e.path())
                        .or_else(|_| std::fs::remove_file(e.path()));
                }
            }
            Ok(())
        })
        .await;
    }
    result
}
