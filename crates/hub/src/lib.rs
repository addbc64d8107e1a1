//! # strata-hub
//!
//! StrataHub: a dumb hub for Strata remotes. It stores opaque blobs and compare-and-swap cursors
//! for projects, checks API keys, and serves a read-only web page. It never opens a database,
//! never decodes a blob and knows nothing of sync: clients (`strata-remote-http`'s `HttpRemote`)
//! run the sync algorithm and see the hub as one more [`Remote`].
//!
//! Nothing authoritative lives in a hub's memory: keys (as hashes), projects, members, cursors and
//! blobs all live in one storage [`Remote`] (a folder, or an S3/GCS/Azure bucket), updated by
//! compare-and-swap, so any number of hub processes can serve one storage.
//!
//! ## Layout
//! - `store`: the hub's documents in its storage (keys, projects, members) and the storage layout.
//! - `api`: the HTTP API (`/v1/...`), auth, and the blob and cursor endpoints.
//! - `web`: the page at `/`.
//! - `error`: [`ApiError`], the JSON error body with a stable code.
//! - `metrics`: request counters for `GET /metrics`.
//! - `serve`: the accept loop, the connection cap and the timeouts.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod api;
mod error;
mod metrics;
mod serve;
pub mod store;
mod web;

use std::sync::Arc;
use std::time::Duration;

use strata_remote::Remote;

pub use error::ApiError;
pub use store::{KeyDoc, Member, NewKey, ProjectDoc, Role, Store};

/// How a hub runs.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Without authentication: every request may do anything (development only).
    pub open: bool,
    /// The largest blob accepted, in bytes (413 beyond).
    pub max_blob_bytes: u64,
    /// The largest cursor or JSON body accepted, in bytes.
    pub max_doc_bytes: usize,
    /// The hub's own time to answer a request, not counting the time spent receiving its body
    /// (503 `timeout` beyond).
    pub request_timeout: Duration,
    /// The time a client has to send a request's headers, from the connection opening or the
    /// previous response (so also the keep-alive idle timeout); the connection is closed beyond.
    pub header_timeout: Duration,
    /// The longest pause inside a request body (408 `timeout`, nothing stored) or while the client
    /// reads a response (the connection is closed).
    pub body_timeout: Duration,
    /// Connections served at once; one more is answered 503 `overloaded` and closed.
    pub max_connections: usize,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            open: false,
            max_blob_bytes: 8 << 30,
            max_doc_bytes: 4 << 20,
            request_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// A hub over one storage remote.
#[derive(Clone, Debug)]
pub struct Hub {
    store: Store,
    config: HubConfig,
    metrics: Arc<metrics::Metrics>,
}

impl Hub {
    /// A hub over `storage`.
    pub fn new(storage: Arc<dyn Remote>, config: HubConfig) -> Hub {
        Hub {
            store: Store::new(storage),
            config,
            metrics: Arc::default(),
        }
    }

    /// Its documents.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The axum router serving the whole API and the page.
    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }
}

/// Resolves when the process gets SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
