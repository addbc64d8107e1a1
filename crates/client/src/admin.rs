//! The administrative and sync commands that need strata-sync: remotes (list, add, set-url, rename,
//! remove, branches, gc, compact), push/pull/fetch/status with their options, and `push --delete`.
//! Written once: `stratadb-server` runs them on its database, and the client's embedded mode runs
//! the same code in process, so both modes answer alike.
//!
//! Engine and file work (the remote configuration is kept in the database) goes through
//! `spawn_blocking`; strata-sync's own async functions do the same inside.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use strata_engine::{MergeStrategy, Strata, Value};
use strata_sync::{admin, config, PullOptions, PushOptions, RemoteConfig, SyncError, SyncExt};
use strata_wire::{Command, ErrorCode, Output, SyncOp, WireError};

use crate::sync_error;

/// Whether `cmd` is one of the commands [`run`] serves.
pub fn serves(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::SyncPushDelete { .. }
            | Command::SyncWith { .. }
            | Command::RemoteList
            | Command::RemoteAdd { .. }
            | Command::RemoteSetUrl { .. }
            | Command::RemoteRename { .. }
            | Command::RemoteRemove { .. }
            | Command::RemoteBranches { .. }
            | Command::RemoteGc { .. }
            | Command::RemoteCompact { .. }
    )
}

/// A report as the wire carries it: a map with the report's field names.
pub fn report<T: serde::Serialize>(r: &T) -> Result<Output, WireError> {
    let json = serde_json::to_value(r).map_err(|e| {
        WireError::new(
            ErrorCode::Internal,
            format!("cannot encode the report: {e}"),
        )
    })?;
    Ok(Output::Report(Value::from_json(&json)))
}

/// A remote's configuration with secret option values replaced by `***`: what leaves the database.
pub fn redacted(cfg: &RemoteConfig) -> RemoteConfig {
    RemoteConfig {
        name: cfg.name.clone(),
        url: cfg.url.clone(),
        options: cfg.redacted_options(),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> strata_sync::Result<T> + Send + 'static,
) -> Result<T, WireError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(sync_error),
        Err(e) => Err(WireError::new(
            ErrorCode::Internal,
            format!("request failed: {e}"),
        )),
    }
}

/// Fails with "not a Strata remote" unless the remote holds the Strata marker or some branch. Reads
/// only. (gc writes a probe blob to read the store's clock: never do that to a folder or bucket that
/// holds no Strata remote.)
pub async fn require_strata_remote(r: &dyn strata_remote::Remote) -> Result<(), SyncError> {
    use strata_remote::RemoteExt;
    let marker =
        strata_remote::RemotePath::parse(strata_sync::layout::MARKER).map_err(SyncError::Remote)?;
    if r.blob_exists(&marker).await? || !r.list_cursors("branches").await?.is_empty() {
        Ok(())
    } else {
        Err(SyncError::NotAStrataRemote(r.to_string()))
    }
}

/// Changes a remote's URL; returns the new configuration and the previous URL.
pub fn set_url(db: &Strata, name: &str, url: &str) -> strata_sync::Result<(RemoteConfig, String)> {
    let old = config::get_remote(db, name)?.url;
    let cfg = admin::set_url(db, name, url, strata_sync::check_config)?;
    Ok((cfg, old))
}

/// Removes a remote, its mirror branches and the upstreams naming it; returns it and how many
/// mirrors went with it.
pub fn remove_remote(db: &Strata, name: &str) -> strata_sync::Result<(RemoteConfig, usize)> {
    config::get_remote(db, name)?;
    let prefix = format!("_origin:{name}:");
    let mirrors = db
        .list_branches(true)?
        .iter()
        .filter(|b| b.name.starts_with(&prefix))
        .count();
    let cfg = db.remote_remove(name)?;
    admin::forget_upstreams(db, name)?;
    Ok((cfg, mirrors))
}

/// Garbage-collects a remote, after checking that it holds a Strata remote.
pub async fn gc(cfg: &RemoteConfig, grace: Duration) -> strata_sync::Result<strata_sync::GcReport> {
    let r = strata_sync::open_remote(cfg)?;
    require_strata_remote(&*r).await?;
    strata_sync::gc(&*r, grace).await
}

/// Checks a remote URL given to a server: valid, and a folder path absolute (it names the server's
/// file system; a relative one would depend on the server's working directory).
fn check_server_url(url: &str) -> Result<(), WireError> {
    strata_sync::check_url(url).map_err(sync_error)?;
    if !url.contains("://") && !Path::new(url).is_absolute() {
        return Err(WireError::new(
            ErrorCode::InvalidOperation,
            format!("remote URL {url:?} is a relative folder path; give the server an absolute path (a folder remote names the server's file system)"),
        ));
    }
    Ok(())
}

/// Runs one of the commands [`serves`] on `db`.
pub async fn run(db: &Strata, cmd: Command) -> Result<Output, WireError> {
    match cmd {
        Command::SyncPushDelete { remote, branch } => report(
            &strata_sync::delete_remote_branch(db, &remote, &branch)
                .await
                .map_err(sync_error)?,
        ),
        Command::SyncWith {
            op,
            remote,
            branch,
            strategy,
            conflict_branch,
            set_upstream,
        } => match op {
            SyncOp::Push => {
                let r = db
                    .push_with(&remote, &branch, &PushOptions::default())
                    .await
                    .map_err(sync_error)?;
                if set_upstream {
                    let d = db.clone();
                    blocking(move || admin::set_upstream(&d, &branch, &remote)).await?;
                }
                report(&r)
            }
            SyncOp::Pull => {
                let strategy = strategy.unwrap_or(MergeStrategy::LastWriterWins);
                if let Some(name) = &conflict_branch {
                    if strategy != MergeStrategy::Strict {
                        return Err(WireError::new(
                            ErrorCode::InvalidOperation,
                            "a conflict branch applies only to the strict strategy",
                        ));
                    }
                    strata_engine::names::validate_branch_name(name, false)
                        .map_err(strata_wire::engine_error)?;
                }
                let opts = PullOptions {
                    strategy,
                    conflict_branch,
                    ..Default::default()
                };
                report(
                    &db.pull_with(&remote, &branch, &opts)
                        .await
                        .map_err(sync_error)?,
                )
            }
            SyncOp::Fetch => report(
                &strata_sync::fetch(db, &remote, &branch, &strata_sync::Progress::none())
                    .await
                    .map_err(sync_error)?,
            ),
            SyncOp::Status => report(&db.sync_status(&remote, &branch).await.map_err(sync_error)?),
        },
        Command::RemoteList => {
            let d = db.clone();
            let (list, ups) =
                blocking(move || Ok((d.remote_list()?, admin::upstreams(&d)?))).await?;
            let list: Vec<RemoteConfig> = list.iter().map(redacted).collect();
            report(&json!({"remotes": list, "upstreams": ups}))
        }
        Command::RemoteAdd { name, url, options } => {
            check_server_url(&url)?;
            let cfg = RemoteConfig { name, url, options };
            let d = db.clone();
            let c = cfg.clone();
            blocking(move || d.remote_add_with(c)).await?;
            report(&redacted(&cfg))
        }
        Command::RemoteSetUrl { name, url } => {
            check_server_url(&url)?;
            let d = db.clone();
            let (cfg, old) = blocking(move || set_url(&d, &name, &url)).await?;
            report(&json!({"remote": redacted(&cfg), "previous_url": old}))
        }
        Command::RemoteRename { old, new } => {
            let d = db.clone();
            let cfg = blocking(move || admin::rename_remote(&d, &old, &new)).await?;
            report(&redacted(&cfg))
        }
        Command::RemoteRemove { name } => {
            let d = db.clone();
            let (cfg, mirrors) = blocking(move || remove_remote(&d, &name)).await?;
            report(&json!({"remote": redacted(&cfg), "mirrors": mirrors}))
        }
        Command::RemoteBranches { name } => {
            let d = db.clone();
            let cfg = blocking(move || config::get_remote(&d, &name)).await?;
            let r = strata_sync::open_remote(&cfg).map_err(sync_error)?;
            let mut list = strata_sync::list_remote_branches(&*r)
                .await
                .map_err(sync_error)?;
            list.sort_by(|a, b| a.name.cmp(&b.name));
            report(&list)
        }
        Command::RemoteGc { name, grace_secs } => {
            let d = db.clone();
            let cfg = blocking(move || config::get_remote(&d, &name)).await?;
            report(
                &gc(&cfg, Duration::from_secs(grace_secs))
                    .await
                    .map_err(sync_error)?,
            )
        }
        Command::RemoteCompact {
            name,
            branch,
            squash_before,
        } => {
            let opts = strata_sync::CompactOptions {
                squash_before,
                progress: strata_sync::Progress::none(),
            };
            report(
                &strata_sync::compact(db, &name, &branch, &opts)
                    .await
                    .map_err(sync_error)?,
            )
        }
        c => Err(WireError::new(
            ErrorCode::Internal,
            format!("{} is not an administrative command", c.name()),
        )),
    }
}
