//! Opening remotes: sync depends on no backend. A front end registers a
//! [`strata_remote::Connector`] once (the CLI and the Python SDK register `strata-remotes`, with the
//! backends their build enables), and every sync operation that names a remote opens it through it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use strata_remote::{Connector, Remote};

use crate::config::RemoteConfig;
use crate::error::{Result, SyncError};

fn slot() -> &'static RwLock<Option<Arc<dyn Connector>>> {
    static SLOT: RwLock<Option<Arc<dyn Connector>>> = RwLock::new(None);
    &SLOT
}

/// Registers the connector that opens remotes by URL for this process (e.g.
/// `strata_remotes::Remotes::new()`). Replaces any earlier one.
pub fn set_connector(connector: Arc<dyn Connector>) {
    *slot().write().unwrap_or_else(|e| e.into_inner()) = Some(connector);
}

/// The registered connector.
pub fn connector() -> Result<Arc<dyn Connector>> {
    slot()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or_else(|| {
            SyncError::Config(
                "no remote backends are registered in this process: call \
                 strata_sync::set_connector(Arc::new(strata_remotes::Remotes::new())) at start-up"
                    .into(),
            )
        })
}

/// Checks a URL and its options exactly as opening it would, without touching the remote.
pub fn check_config(url: &str, options: &BTreeMap<String, String>) -> Result<()> {
    Ok(connector()?.check(url, options)?)
}

/// Checks a URL with no options.
pub fn check_url(url: &str) -> Result<()> {
    check_config(url, &BTreeMap::new())
}

/// Opens the remote a URL names, with no options.
pub fn open_url(url: &str) -> Result<Arc<dyn Remote>> {
    open_url_with(url, &BTreeMap::new())
}

/// Opens the remote a URL names, with backend options. Opening changes nothing at the location.
pub fn open_url_with(url: &str, options: &BTreeMap<String, String>) -> Result<Arc<dyn Remote>> {
    Ok(connector()?.open(url, options)?)
}

/// Opens a configured remote.
pub fn open_remote(cfg: &RemoteConfig) -> Result<Arc<dyn Remote>> {
    open_url_with(&cfg.url, &cfg.options)
}
