//! Remote configuration and per-branch sync state, kept in the internal branch `_strata`, space
//! `_sync`. Internal branches and `_`-spaces are never pushed, so neither are tokens.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_engine::{Note, Strata, Value};

use crate::error::{Result, SyncError};

/// The internal branch holding sync metadata.
pub const META_BRANCH: &str = strata_engine::META_BRANCH;
/// The space inside it.
pub const SYNC_SPACE: &str = "_sync";

/// A configured remote. Its `Debug` output redacts secret option values.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteConfig {
    /// The remote's name, e.g. `origin`.
    pub name: String,
    /// Where it is: a folder path, `file:///path`, `s3://`, `gs://` or `az://` bucket URL, or
    /// `memory://name`.
    pub url: String,
    /// Backend options (bucket remotes: `endpoint`, `region`…; see `strata_remote_s3::BucketOptions`).
    /// Bucket remotes refuse credentials here: they come from the cloud's environment variables.
    /// Values of keys that look secret (token, secret, password, key) are never printed.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("options", &self.redacted_options())
            .finish()
    }
}

impl RemoteConfig {
    /// The options with secret-looking values replaced by `***`, for display.
    pub fn redacted_options(&self) -> BTreeMap<String, String> {
        self.options
            .iter()
            .map(|(k, v)| {
                let lk = k.to_ascii_lowercase();
                let secret = ["token", "secret", "password", "key"]
                    .iter()
                    .any(|s| lk.contains(s))
                    && !lk.ends_with("_env");
                (
                    k.clone(),
                    if secret { "***".to_string() } else { v.clone() },
                )
            })
            .collect()
    }
}

/// What this database last did with one branch of one remote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// The remote version last merged into (or pushed from) the branch.
    pub merged_remote_version: u64,
    /// The branch version at that moment.
    pub branch_version: u64,
    /// When, microseconds since the Unix epoch.
    pub last_synced_micros: u64,
    /// The last point where the branch and the remote held equal contents, as `[remote version,
    /// branch version]`: set by a push and by a fast-forward pull, kept by a merging pull. A push
    /// replays the branch's own versions after it. `None` in states written before history sync.
    #[serde(default)]
    pub equal: Option<[u64; 2]>,
}

fn meta_get(db: &Strata, key: &str) -> Result<Option<Value>> {
    Ok(db.replication().meta_get(SYNC_SPACE, key)?)
}

/// Checks a remote name: 1–64 of `A-Z a-z 0-9 . _ -`, not starting with `-` or `.`.
pub fn validate_remote_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(SyncError::Config(format!(
            "invalid remote name {name:?}: use 1-64 letters, digits, '.', '_' or '-', not starting with '-' or '.'"
        )))
    }
}

/// Adds a remote; fails if the name is taken. `check` validates the URL and options exactly as
/// opening the remote would (a `strata_remote::Connector`'s `check`).
pub fn add_remote(
    db: &Strata,
    cfg: &RemoteConfig,
    check: impl FnOnce(&str, &BTreeMap<String, String>) -> Result<()>,
) -> Result<()> {
    validate_remote_name(&cfg.name)?;
    check(&cfg.url, &cfg.options)?;
    let key = format!("remote/{}", cfg.name);
    if meta_get(db, &key)?.is_some() {
        return Err(SyncError::Config(format!(
            "remote {:?} already exists",
            cfg.name
        )));
    }
    db.replication()
        .meta_write(&[Note::put(SYNC_SPACE, &key, to_value(cfg))])?;
    Ok(())
}

/// Removes a remote and its sync state, in one transaction (its mirrors are deleted by the caller).
pub fn remove_remote(db: &Strata, name: &str) -> Result<RemoteConfig> {
    let cfg = get_remote(db, name)?;
    let mut notes = vec![Note::delete(SYNC_SPACE, &format!("remote/{name}"))];
    for (k, _) in db
        .replication()
        .meta_list(SYNC_SPACE, &format!("state/{name}/"))?
    {
        notes.push(Note::delete(SYNC_SPACE, &k));
    }
    db.replication().meta_write(&notes)?;
    Ok(cfg)
}

/// One remote's configuration.
pub fn get_remote(db: &Strata, name: &str) -> Result<RemoteConfig> {
    validate_remote_name(name)?;
    match meta_get(db, &format!("remote/{name}"))? {
        Some(v) => from_value(&v),
        None => Err(SyncError::NotFound(format!(
            "no remote named {name:?} (see `strata remote add`)"
        ))),
    }
}

/// Every configured remote, by name.
pub fn list_remotes(db: &Strata) -> Result<Vec<RemoteConfig>> {
    db.replication()
        .meta_list(SYNC_SPACE, "remote/")?
        .iter()
        .map(|(_, v)| from_value(v))
        .collect()
}

/// The sync state of one branch of one remote (default if never synced).
pub fn get_state(db: &Strata, remote: &str, branch: &str) -> Result<SyncState> {
    match meta_get(db, &format!("state/{remote}/{branch}"))? {
        Some(v) => from_value(&v),
        None => Ok(SyncState::default()),
    }
}

/// The note that records the sync state of one branch of one remote, for the replication step that
/// brings the branch to that state (so both commit in one transaction).
pub fn state_note(remote: &str, branch: &str, state: &SyncState) -> Note {
    Note::put(
        SYNC_SPACE,
        &format!("state/{remote}/{branch}"),
        to_value(state),
    )
}

/// This database's random identity, created on first use; written into the blobs it uploads.
pub fn db_id(db: &Strata) -> Result<String> {
    // Two processes may race here; the atomic init-if-absent decides the winner.
    let v = match db.replication().meta_state(SYNC_SPACE, "db_id")? {
        Some(v) => v,
        None => db.replication().meta_init(
            SYNC_SPACE,
            "db_id",
            Value::from(uuid::Uuid::new_v4().simple().to_string().as_str()),
        )?,
    };
    match v {
        Value::String(s) => Ok(s),
        other => Err(SyncError::Config(format!(
            "stored database id is unreadable: {other:?}"
        ))),
    }
}

fn to_value<T: Serialize>(t: &T) -> Value {
    Value::from_json(&serde_json::to_value(t).expect("config serializes"))
}

fn from_value<T: for<'de> Deserialize<'de>>(v: &Value) -> Result<T> {
    serde_json::from_value(v.to_json())
        .map_err(|e| SyncError::Config(format!("stored sync config is unreadable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_or_listing() {
        let cfg = RemoteConfig {
            name: "hub".into(),
            url: "/x".into(),
            options: [
                ("token".to_string(), "sk-secret".to_string()),
                ("token_env".to_string(), "HUB_TOKEN".to_string()),
            ]
            .into_iter()
            .collect(),
        };
        let dbg = format!("{cfg:?}");
        assert!(
            !dbg.contains("sk-secret") && dbg.contains("***") && dbg.contains("HUB_TOKEN"),
            "{dbg}"
        );
        assert_eq!(cfg.redacted_options()["token"], "***");
    }
}
