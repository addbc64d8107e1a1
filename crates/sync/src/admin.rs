//! Changing remotes after they were added: a new URL, a new name, and each branch's upstream (the
//! remote that a bare push, pull or status uses). All of it lives in `_strata`/`_sync` beside the
//! remote configuration (see [`crate::config`]).

use std::collections::BTreeMap;

use strata_engine::{Note, Strata, Value};

use crate::config::{get_remote, validate_remote_name, RemoteConfig, SYNC_SPACE};
use crate::error::{Result, SyncError};
use crate::ops::mirror_name;

fn upstream_key(branch: &str) -> String {
    format!("upstream/{branch}")
}

fn remote_value(cfg: &RemoteConfig) -> Value {
    Value::from_json(&serde_json::to_value(cfg).expect("config serializes"))
}

/// Changes a remote's URL; its options and sync state stay. `check` validates the URL and options
/// as opening the remote would (see [`crate::config::add_remote`]).
pub fn set_url(
    db: &Strata,
    name: &str,
    url: &str,
    check: impl FnOnce(&str, &BTreeMap<String, String>) -> Result<()>,
) -> Result<RemoteConfig> {
    let mut cfg = get_remote(db, name)?;
    check(url, &cfg.options)?;
    cfg.url = url.to_string();
    db.replication().meta_write(&[Note::put(
        SYNC_SPACE,
        &format!("remote/{name}"),
        remote_value(&cfg),
    )])?;
    Ok(cfg)
}

/// Renames a remote with its sync state, the upstreams that name it and its origin mirror branches,
/// in one transaction.
pub fn rename_remote(db: &Strata, old: &str, new: &str) -> Result<RemoteConfig> {
    let mut cfg = get_remote(db, old)?;
    validate_remote_name(new)?;
    if get_remote(db, new).is_ok() {
        return Err(SyncError::Config(format!("remote {new:?} already exists")));
    }
    cfg.name = new.to_string();
    let rep = db.replication();
    let mut notes = vec![
        Note::delete(SYNC_SPACE, &format!("remote/{old}")),
        Note::put(SYNC_SPACE, &format!("remote/{new}"), remote_value(&cfg)),
    ];
    let state_prefix = format!("state/{old}/");
    for (k, v) in rep.meta_list(SYNC_SPACE, &state_prefix)? {
        let branch = &k[state_prefix.len()..];
        notes.push(Note::delete(SYNC_SPACE, &k));
        notes.push(Note::put(SYNC_SPACE, &format!("state/{new}/{branch}"), v));
    }
    for (k, v) in rep.meta_list(SYNC_SPACE, "upstream/")? {
        if v.as_str() == Some(old) {
            notes.push(Note::put(SYNC_SPACE, &k, Value::from(new)));
        }
    }
    let prefix = mirror_name(old, "");
    let renames: Vec<(String, String)> = db
        .list_branches(true)?
        .into_iter()
        .filter_map(|b| {
            b.name
                .strip_prefix(&prefix)
                .map(|branch| (b.name.clone(), mirror_name(new, branch)))
        })
        .collect();
    rep.rename_internal_branches(&renames, &notes)?;
    Ok(cfg)
}

/// The remote a branch pushes to and pulls from by default (set by `push -u`), if any.
pub fn get_upstream(db: &Strata, branch: &str) -> Result<Option<String>> {
    Ok(db
        .replication()
        .meta_get(SYNC_SPACE, &upstream_key(branch))?
        .and_then(|v| v.as_str().map(str::to_string)))
}

/// Records `remote` (which must be configured) as the branch's upstream.
pub fn set_upstream(db: &Strata, branch: &str, remote: &str) -> Result<()> {
    get_remote(db, remote)?;
    db.replication().meta_write(&[Note::put(
        SYNC_SPACE,
        &upstream_key(branch),
        Value::from(remote),
    )])?;
    Ok(())
}

/// Removes the upstreams that name `remote` (when it is removed).
pub fn forget_upstreams(db: &Strata, remote: &str) -> Result<()> {
    let notes: Vec<Note> = db
        .replication()
        .meta_list(SYNC_SPACE, "upstream/")?
        .into_iter()
        .filter(|(_, v)| v.as_str() == Some(remote))
        .map(|(k, _)| Note::delete(SYNC_SPACE, &k))
        .collect();
    db.replication().meta_write(&notes)?;
    Ok(())
}

/// Every branch's upstream, by branch.
pub fn upstreams(db: &Strata) -> Result<BTreeMap<String, String>> {
    Ok(db
        .replication()
        .meta_list(SYNC_SPACE, "upstream/")?
        .into_iter()
        .filter_map(|(k, v)| {
            let b = k.strip_prefix("upstream/")?.to_string();
            v.as_str().map(|r| (b, r.to_string()))
        })
        .collect())
}
