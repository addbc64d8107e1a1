//! Opening a remote from its URL and options.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use strata_remote::{InMemoryRemote, Remote};
use strata_remote_fs::FsRemote;
use strata_remote_s3::{is_bucket_url, BucketOptions, BucketUrl, ObjectStoreRemote};

use crate::config::RemoteConfig;
use crate::error::{Result, SyncError};

const SCHEMES: &str = "a folder path, file:///path, s3://bucket/prefix, gs://bucket/prefix, \
                       az://container/prefix, or memory://name";

fn scheme(url: &str) -> Option<&str> {
    url.split_once("://").map(|(s, _)| s)
}

/// Checks that a URL names a supported remote, without touching it.
pub fn check_url(url: &str) -> Result<()> {
    if url.trim().is_empty() {
        return Err(SyncError::Config("remote URL is empty".into()));
    }
    if is_bucket_url(url) {
        BucketUrl::parse(url).map_err(|e| SyncError::Config(e.to_string()))?;
        return Ok(());
    }
    match scheme(url) {
        None | Some("file") | Some("memory") => Ok(()),
        Some(other) => Err(SyncError::Config(format!(
            "unsupported remote URL scheme {other:?} in {url:?} (supported: {SCHEMES})"
        ))),
    }
}

/// Checks a URL and the options given with it: bucket remotes take exactly [`BucketOptions`] (unknown
/// keys and credentials are refused); folder and memory remotes use none and keep any given as they are.
pub fn check_config(url: &str, options: &BTreeMap<String, String>) -> Result<()> {
    check_url(url)?;
    if is_bucket_url(url) {
        bucket_options(options)?;
    }
    Ok(())
}

fn bucket_options(options: &BTreeMap<String, String>) -> Result<BucketOptions> {
    BucketOptions::from_map(options).map_err(|e| SyncError::Config(e.to_string()))
}

/// In-process memory remotes by name, so that several databases in one process (tests, demos) can
/// share one.
fn memory_registry() -> &'static Mutex<HashMap<String, InMemoryRemote>> {
    static REG: OnceLock<Mutex<HashMap<String, InMemoryRemote>>> = OnceLock::new();
    REG.get_or_init(Default::default)
}

/// Opens the remote a URL names, with no options.
pub fn open_url(url: &str) -> Result<Arc<dyn Remote>> {
    open_url_with(url, &BTreeMap::new())
}

/// Opens the remote a URL names, with backend options (see [`check_config`]). Bucket remotes take
/// their credentials from the environment.
pub fn open_url_with(url: &str, options: &BTreeMap<String, String>) -> Result<Arc<dyn Remote>> {
    check_config(url, options)?;
    if is_bucket_url(url) {
        let opts =
            BucketOptions::from_map(options).map_err(|e| SyncError::Config(e.to_string()))?;
        return Ok(Arc::new(
            ObjectStoreRemote::open(url, &opts).map_err(|e| SyncError::Config(e.to_string()))?,
        ));
    }
    match scheme(url) {
        Some("memory") => {
            let name = &url["memory://".len()..];
            let mut reg = memory_registry().lock().unwrap_or_else(|e| e.into_inner());
            Ok(Arc::new(reg.entry(name.to_string()).or_default().clone()))
        }
        _ => Ok(Arc::new(FsRemote::from_url(url)?)),
    }
}

/// Opens a configured remote.
pub fn open_remote(cfg: &RemoteConfig) -> Result<Arc<dyn Remote>> {
    open_url_with(&cfg.url, &cfg.options)
}
