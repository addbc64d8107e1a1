//! Opening a remote from its URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use strata_remote::{InMemoryRemote, Remote};
use strata_remote_fs::FsRemote;

use crate::config::RemoteConfig;
use crate::error::{Result, SyncError};

const SCHEMES: &str = "a folder path, file:///path, or memory://name";

fn scheme(url: &str) -> Option<&str> {
    url.split_once("://").map(|(s, _)| s)
}

/// Checks that a URL names a supported remote, without touching it.
pub fn check_url(url: &str) -> Result<()> {
    if url.trim().is_empty() {
        return Err(SyncError::Config("remote URL is empty".into()));
    }
    match scheme(url) {
        None | Some("file") | Some("memory") => Ok(()),
        Some(other) => Err(SyncError::Config(format!(
            "unsupported remote URL scheme {other:?} in {url:?} (supported: {SCHEMES})"
        ))),
    }
}

/// In-process memory remotes by name, so that several databases in one process (tests, demos) can
/// share one.
fn memory_registry() -> &'static Mutex<HashMap<String, InMemoryRemote>> {
    static REG: OnceLock<Mutex<HashMap<String, InMemoryRemote>>> = OnceLock::new();
    REG.get_or_init(Default::default)
}

/// Opens the remote a URL names.
pub fn open_url(url: &str) -> Result<Arc<dyn Remote>> {
    check_url(url)?;
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
    open_url(&cfg.url)
}
