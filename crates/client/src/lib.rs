//! # strata-client
//!
//! One handle, [`Db`], over either an embedded database (a folder path) or a `stratadb-server`
//! (`strata://host:port`). Application code switches between the two by changing the string it
//! opens:
//!
//! ```no_run
//! # fn main() -> Result<(), strata_client::Error> {
//! let db = strata_client::Db::open("./agent.strata")?; // embedded
//! // let db = strata_client::Db::open("strata://127.0.0.1:9876")?; // the same code, over TCP
//! db.main().kv_put("config", "fast")?;
//! let mut tx = db.begin("main")?;
//! tx.kv_put("a", 1)?;
//! tx.commit()?;
//! # Ok(()) }
//! ```
//!
//! Both modes run the same executor (`strata_wire::execute`), so they answer alike, errors included
//! ([`Error::code`]).
//!
//! ## Remote mode
//! - A pool of connections (blocking sockets). A pooled connection found closed (the server
//!   restarted) is replaced transparently; a read that fails mid-way is retried on a new connection.
//!   A write whose answer was lost is never retried: [`Error::Disconnected`] says the outcome is
//!   unknown.
//! - A transaction ([`Db::begin`]) holds one connection (its server-side session) until it commits
//!   or rolls back. If that connection breaks, the server rolls the transaction back and the caller
//!   gets [`Error::SessionLost`]: never a silent retry of half a transaction.
//! - The API key comes from [`ClientOptions::api_key`], or `STRATA_API_KEY` for [`Db::open`].
//!
//! ## Layout
//! - `conn`: one connection: handshake, frames, liveness check.
//! - `pool`: the pool and its retry rules.
//! - this file: [`Db`], [`Scope`], [`Tx`].

#![warn(missing_docs, missing_debug_implementations)]

#[doc(hidden)]
pub mod admin;
mod conn;
mod pool;

use std::sync::Arc;
use std::time::Duration;

pub use strata_engine::bundle::{BundleManifest, ImportReport};
pub use strata_engine::ChangeSet;
pub use strata_engine::{
    BranchDiff, BranchInfo, CommitInfo, Event, HistoryEntry, Kind, MergeConflict, MergeReport,
    MergeStrategy, Rev, Value,
};
pub use strata_sync::{
    CompactReport, DeleteReport, FetchReport, GcReport, PullReport, PushReport, RemoteBranch,
    RemoteConfig, SyncStatus,
};
pub use strata_wire::{Command, ErrorCode, Op, Output, SyncOp, Welcome, WireError};

use pool::Pool;

/// The URL scheme of a server.
pub const SCHEME: &str = "strata://";

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database (embedded) or the server answered with an error; [`Error::code`] says which.
    #[error("{0}")]
    Db(WireError),
    /// The connection holding a transaction broke. The server rolls the transaction back; nothing
    /// of it is committed. Begin it again.
    #[error("the server connection of this transaction was lost ({0}); the server rolls the transaction back, so none of it is committed: begin it again")]
    SessionLost(String),
    /// The connection broke after a write (or a commit) was sent and before its answer came: it
    /// may or may not have been applied. Read to find out before writing again.
    #[error("the connection to {addr} broke after a {command} was sent ({detail}); it may or may not have been applied: read the data to find out before retrying")]
    Disconnected {
        /// The server.
        addr: String,
        /// The command sent.
        command: &'static str,
        /// What broke.
        detail: String,
    },
    /// The server cannot be reached.
    #[error("cannot connect to strata://{addr}: {source}; is stratadb-server running there?")]
    Connect {
        /// The server.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server spoke something this client does not understand.
    #[error("protocol error from {addr}: {detail}")]
    Protocol {
        /// The server.
        addr: String,
        /// What was wrong.
        detail: String,
    },
    /// A `strata://` URL that cannot be used.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// The error's code when the database or server answered; `None` for transport failures.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Db(w) => Some(w.code),
            _ => None,
        }
    }

    /// For a strict merge that failed: the conflicting keys.
    pub fn conflicts(&self) -> &[MergeConflict] {
        match self {
            Error::Db(w) => &w.conflicts,
            _ => &[],
        }
    }
}

impl From<WireError> for Error {
    fn from(w: WireError) -> Error {
        Error::Db(w)
    }
}

impl From<strata_engine::Error> for Error {
    fn from(e: strata_engine::Error) -> Error {
        Error::Db(strata_wire::engine_error(e))
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to talk to a server.
#[derive(Clone)]
pub struct ClientOptions {
    /// The API key (`None` for a server in `--open` mode).
    pub api_key: Option<String>,
    /// A name the server logs (`myapp/1.0`).
    pub client_name: String,
    /// Idle connections kept for reuse.
    pub pool_size: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// How long to wait for any one answer (a write may wait for the database lock).
    pub request_timeout: Duration,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("client_name", &self.client_name)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            api_key: None,
            client_name: format!("strata-client/{}", env!("CARGO_PKG_VERSION")),
            pool_size: 16,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
        }
    }
}

impl ClientOptions {
    /// Defaults, with the key from `STRATA_API_KEY` when set.
    pub fn from_env() -> ClientOptions {
        ClientOptions {
            api_key: std::env::var("STRATA_API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
            ..ClientOptions::default()
        }
    }
}

/// A database handle: embedded, or a connection pool to a server. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Embedded(strata_engine::Strata),
    Remote(Arc<Pool>),
}

/// Parses `strata://host:port` into `host:port`.
pub fn parse_url(url: &str) -> Result<String> {
    let bad = |reason: &str| Error::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix(SCHEME)
        .ok_or_else(|| bad("a server URL starts with strata://"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err(bad(
            "expected strata://host:port (no path, query or user; the key goes in STRATA_API_KEY)",
        ));
    }
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| bad("the port is missing (strata://host:port)"))?;
    if host.is_empty() {
        return Err(bad("the host is missing"));
    }
    port.parse::<u16>()
        .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
    Ok(rest.to_string())
}

impl Db {
    /// Opens `target`: a `strata://host:port` URL connects to a server (key from `STRATA_API_KEY`);
    /// anything else is a folder opened as an embedded database (created if missing).
    pub fn open(target: &str) -> Result<Db> {
        if target.starts_with(SCHEME) {
            Db::connect(target, ClientOptions::from_env())
        } else {
            Ok(Db::embedded(strata_engine::Strata::open(target)?))
        }
    }

    /// Connects to a server with explicit options. One connection is made (and the handshake
    /// checked) at once, so a wrong address or key fails here.
    pub fn connect(url: &str, opts: ClientOptions) -> Result<Db> {
        let addr = parse_url(url)?;
        Ok(Db {
            backend: Backend::Remote(Arc::new(Pool::connect(addr, opts)?)),
        })
    }

    /// Wraps an embedded handle.
    pub fn embedded(db: strata_engine::Strata) -> Db {
        Db {
            backend: Backend::Embedded(db),
        }
    }

    /// Whether this handle talks to a server.
    pub fn is_remote(&self) -> bool {
        matches!(self.backend, Backend::Remote(_))
    }

    /// The server's handshake answer (remote mode).
    pub fn welcome(&self) -> Option<&Welcome> {
        match &self.backend {
            Backend::Remote(p) => Some(p.welcome()),
            Backend::Embedded(_) => None,
        }
    }

    /// Runs one command (the wire form of every method here). Embedded mode runs the
    /// administrative and sync commands (`remote_*`, `sync_with`, `sync_push_delete`) on a private
    /// runtime, as the server does on its own. Remote mode sends a command that only servers with
    /// the `admin` capability know only to such a server (an older one answers `invalid_operation`
    /// here, without a round trip).
    pub fn execute(&self, cmd: Command) -> Result<Output> {
        match &self.backend {
            Backend::Embedded(db) if admin::serves(&cmd) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Db(strata_wire::engine_error(e.into())))?;
                Ok(rt.block_on(admin::run(db, cmd))?)
            }
            Backend::Embedded(db) => Ok(strata_wire::execute(db, cmd)?),
            Backend::Remote(p) => {
                if needs_admin_capability(&cmd)
                    && !p
                        .welcome()
                        .capabilities
                        .iter()
                        .any(|c| c == strata_wire::CAP_ADMIN)
                {
                    return Err(Error::Db(WireError::new(
                        ErrorCode::InvalidOperation,
                        format!(
                            "the server (stratadb-server {}) does not serve {}: upgrade it to a version with the \"admin\" capability",
                            p.welcome().server_version,
                            cmd.name()
                        ),
                    )));
                }
                p.call(&cmd)
            }
        }
    }

    /// Runs commands back to back: remote mode sends them all on one connection before reading
    /// the answers (pipelining). Each command gets its own result; the outer error is a transport
    /// failure.
    pub fn pipeline(&self, cmds: &[Command]) -> Result<Vec<Result<Output>>> {
        match &self.backend {
            Backend::Embedded(db) => Ok(cmds
                .iter()
                .map(|c| strata_wire::execute(db, c.clone()).map_err(Error::Db))
                .collect()),
            Backend::Remote(p) => p.pipeline(cmds),
        }
    }

    // ----- scopes and transactions --------------------------------------------------------------

    /// Operations on `branch` in the default space, each committed on its own.
    pub fn on(&self, branch: &str) -> Scope<'_> {
        Scope {
            db: self,
            branch: branch.to_string(),
            version: None,
            space: strata_engine::DEFAULT_SPACE.to_string(),
        }
    }

    /// `on("main")`.
    pub fn main(&self) -> Scope<'_> {
        self.on("main")
    }

    /// Reads of a revision in the default space; writes through it fail with `past_version`.
    pub fn at(&self, rev: &Rev) -> Scope<'_> {
        Scope {
            version: rev.version,
            ..self.on(&rev.branch)
        }
    }

    /// Starts a write transaction on `branch` (it takes the write lock, as in the engine). Dropping
    /// it without `commit` rolls back.
    pub fn begin(&self, branch: &str) -> Result<Tx<'_>> {
        let (inner, version) = match &self.backend {
            Backend::Embedded(db) => {
                let tx = db.begin(branch)?;
                let v = tx.version();
                (TxInner::Embedded(Box::new(tx)), v)
            }
            Backend::Remote(p) => {
                let (conn, version) = p.begin(branch)?;
                (
                    TxInner::Remote {
                        pool: p,
                        conn: Some(conn),
                    },
                    version,
                )
            }
        };
        Ok(Tx {
            inner,
            branch: branch.to_string(),
            space: strata_engine::DEFAULT_SPACE.to_string(),
            version,
            message: None,
            author: None,
        })
    }

    /// Runs `f` in a transaction on `branch` and commits it; returns `f`'s result and the new
    /// version (`None` when `f` wrote nothing).
    pub fn transaction<T>(
        &self,
        branch: &str,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T>,
    ) -> Result<(T, Option<u64>)> {
        let mut tx = self.begin(branch)?;
        let out = f(&mut tx)?;
        let v = tx.commit()?;
        Ok((out, v))
    }

    // ----- branches and history ------------------------------------------------------------------

    /// Creates an empty branch.
    pub fn create_branch(&self, name: &str) -> Result<BranchInfo> {
        branch(self.execute(Command::CreateBranch { name: name.into() })?)
    }

    /// Forks `name` from `source` (a branch, or `branch@version`).
    pub fn fork_branch(&self, source: impl Into<Rev>, name: &str) -> Result<BranchInfo> {
        branch(self.execute(Command::ForkBranch {
            source: source.into(),
            name: name.into(),
        })?)
    }

    /// Deletes a branch.
    pub fn delete_branch(&self, name: &str) -> Result<()> {
        unit(self.execute(Command::DeleteBranch { name: name.into() })?)
    }

    /// Lists branches (remote: those the key may read).
    pub fn list_branches(&self, include_internal: bool) -> Result<Vec<BranchInfo>> {
        match self.execute(Command::ListBranches { include_internal })? {
            Output::Branches(b) => Ok(b),
            o => Err(unexpected("branches", o)),
        }
    }

    /// One branch's metadata.
    pub fn branch_info(&self, name: &str) -> Result<BranchInfo> {
        branch(self.execute(Command::BranchInfo { name: name.into() })?)
    }

    /// Whether a branch exists.
    pub fn branch_exists(&self, name: &str) -> Result<bool> {
        boolean(self.execute(Command::BranchExists { name: name.into() })?)
    }

    /// The versions of a branch, newest first, at most `limit`.
    pub fn log(&self, branch: &str, limit: usize) -> Result<Vec<CommitInfo>> {
        match self.execute(Command::Log {
            branch: branch.into(),
            limit: limit as u64,
        })? {
            Output::Commits(c) => Ok(c),
            o => Err(unexpected("commits", o)),
        }
    }

    /// Every value a key has had on a branch, newest first.
    pub fn history(
        &self,
        branch: &str,
        space: &str,
        kind: Kind,
        key: &str,
    ) -> Result<Vec<HistoryEntry>> {
        match self.execute(Command::History {
            branch: branch.into(),
            space: space.into(),
            kind,
            key: key.into(),
        })? {
            Output::History(h) => Ok(h),
            o => Err(unexpected("history", o)),
        }
    }

    /// The value of an entry at a revision.
    pub fn get_at(&self, rev: &Rev, space: &str, kind: Kind, key: &str) -> Result<Option<Value>> {
        maybe(self.execute(Command::GetAt {
            rev: rev.clone(),
            space: space.into(),
            kind,
            key: key.into(),
        })?)
    }

    /// The spaces that have held an entry on a branch.
    pub fn list_spaces(&self, branch: &str) -> Result<Vec<String>> {
        match self.execute(Command::ListSpaces {
            branch: branch.into(),
        })? {
            Output::Names(n) => Ok(n),
            o => Err(unexpected("names", o)),
        }
    }

    /// The structured difference between two revisions.
    pub fn diff(&self, a: &Rev, b: &Rev) -> Result<BranchDiff> {
        match self.execute(Command::Diff {
            a: a.clone(),
            b: b.clone(),
        })? {
            Output::Diff(d) => Ok(d),
            o => Err(unexpected("diff", o)),
        }
    }

    /// Three-way merge of `source` into the branch `target`.
    pub fn merge(
        &self,
        source: &Rev,
        target: &str,
        strategy: MergeStrategy,
    ) -> Result<MergeReport> {
        self.merge_with_message(source, target, strategy, None, None)
    }

    /// [`Db::merge`] with the merge version's message and author (as `git merge -m`, `--author`).
    pub fn merge_with_message(
        &self,
        source: &Rev,
        target: &str,
        strategy: MergeStrategy,
        message: Option<&str>,
        author: Option<&str>,
    ) -> Result<MergeReport> {
        self.merge_with_options(source, target, strategy, message, author, None)
    }
}

impl Db {
    /// Exports `branch`'s versions in `(from, to]` (default: all) to a bundle file at `path` (on
    /// this machine). Remote mode streams it from the server in chunks under the frame cap; the
    /// file appears at `path` only once whole.
    pub fn export_bundle(
        &self,
        branch: &str,
        range: Option<(u64, u64)>,
        path: &std::path::Path,
    ) -> Result<BundleManifest> {
        match &self.backend {
            Backend::Embedded(db) => Ok(db.export_bundle(branch, range, path)?),
            Backend::Remote(p) => p.export_bundle(branch, range, path),
        }
    }

    /// Imports a bundle file (from this machine) into `target` (default: the bundle's branch).
    /// Remote mode uploads it in chunks; the server verifies every checksum before writing.
    pub fn import_bundle(
        &self,
        path: &std::path::Path,
        target: Option<&str>,
    ) -> Result<ImportReport> {
        match &self.backend {
            Backend::Embedded(db) => Ok(db.import_bundle(path, target)?),
            Backend::Remote(p) => p.import_bundle(path, target),
        }
    }
}

/// The wire form of a sync error: a stable code and the message (which names the way out).
#[doc(hidden)]
pub fn sync_error(e: strata_sync::SyncError) -> WireError {
    use strata_remote::RemoteError as R;
    use strata_sync::SyncError as S;
    // The whole cause chain, each text once (as the CLI prints a local sync error).
    let message = strata_remote::report(&e);
    let code = match e {
        S::Engine(inner) => return strata_wire::engine_error(inner),
        S::Conflicts(c) => {
            let mut w = WireError::new(ErrorCode::MergeConflicts, message);
            w.conflicts = c;
            return w;
        }
        S::Rejected(_) => ErrorCode::PushRejected,
        S::NotFound(_) | S::Remote(R::NotFound(_)) => ErrorCode::NotFound,
        S::NotAStrataRemote(_) => ErrorCode::NotARemote,
        S::Corrupt { .. } | S::Remote(R::Corrupt(_)) => ErrorCode::Corrupt,
        S::Diverged(_) => ErrorCode::Diverged,
        S::Config(_) | S::Remote(R::Invalid(_)) => ErrorCode::InvalidConfig,
        S::Remote(_) => ErrorCode::Remote,
        S::Io(_) => ErrorCode::Storage,
        _ => ErrorCode::Internal,
    };
    WireError::new(code, message)
}

/// Runs a sync future to completion on a private runtime (embedded mode; sync's own engine and
/// file work goes to its blocking pool).
fn block_on<T>(f: impl std::future::Future<Output = strata_sync::Result<T>>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Db(strata_wire::engine_error(e.into())))?;
    rt.block_on(f).map_err(|e| Error::Db(sync_error(e)))
}

fn report<T: serde::de::DeserializeOwned>(o: Output) -> Result<T> {
    match o {
        Output::Report(v) => serde_json::from_value(v.to_json()).map_err(|e| Error::Protocol {
            addr: String::new(),
            detail: format!("cannot read the sync report: {e}"),
        }),
        o => Err(unexpected("report", o)),
    }
}

impl Db {
    /// Pushes `branch` to `remote`. Remote mode: the **server** pushes its database to a remote
    /// configured in it (`strata remote add` on its data folder); the client names it.
    pub fn push(&self, remote: &str, branch: &str) -> Result<PushReport> {
        use strata_sync::SyncExt;
        match &self.backend {
            Backend::Embedded(db) => block_on(db.push(remote, branch)),
            Backend::Remote(p) => report(p.call(&Command::SyncPush {
                remote: remote.into(),
                branch: branch.into(),
            })?),
        }
    }

    /// Pulls `branch` from `remote` (last writer wins; `strict`: any conflict fails and writes
    /// nothing).
    pub fn pull(&self, remote: &str, branch: &str, strict: bool) -> Result<PullReport> {
        use strata_sync::SyncExt;
        match &self.backend {
            Backend::Embedded(db) => {
                let opts = strata_sync::PullOptions {
                    strategy: if strict {
                        MergeStrategy::Strict
                    } else {
                        MergeStrategy::LastWriterWins
                    },
                    ..Default::default()
                };
                block_on(db.pull_with(remote, branch, &opts))
            }
            Backend::Remote(p) => report(p.call(&Command::SyncPull {
                remote: remote.into(),
                branch: branch.into(),
                strict,
            })?),
        }
    }

    /// Fetches `branch` from `remote` into its mirror without merging.
    pub fn fetch(&self, remote: &str, branch: &str) -> Result<FetchReport> {
        use strata_sync::SyncExt;
        match &self.backend {
            Backend::Embedded(db) => block_on(db.fetch(remote, branch)),
            Backend::Remote(p) => report(p.call(&Command::SyncFetch {
                remote: remote.into(),
                branch: branch.into(),
            })?),
        }
    }

    /// Where `branch` stands against `remote` (ahead, behind).
    pub fn sync_status(&self, remote: &str, branch: &str) -> Result<SyncStatus> {
        use strata_sync::SyncExt;
        match &self.backend {
            Backend::Embedded(db) => block_on(db.sync_status(remote, branch)),
            Backend::Remote(p) => report(p.call(&Command::SyncStatus {
                remote: remote.into(),
                branch: branch.into(),
            })?),
        }
    }

    /// The names of the configured remotes.
    pub fn remotes(&self) -> Result<Vec<String>> {
        use strata_sync::SyncExt;
        match &self.backend {
            Backend::Embedded(db) => Ok(db
                .remote_list()
                .map_err(|e| Error::Db(sync_error(e)))?
                .into_iter()
                .map(|r| r.name)
                .collect()),
            Backend::Remote(p) => match p.call(&Command::SyncRemotes)? {
                Output::Names(n) => Ok(n),
                o => Err(unexpected("names", o)),
            },
        }
    }
}

/// Commands (or options) that servers without the `admin` capability do not know.
fn needs_admin_capability(cmd: &Command) -> bool {
    match cmd {
        Command::Merge {
            conflict_branch, ..
        } => conflict_branch.is_some(),
        Command::Contains { .. }
        | Command::ListPage { .. }
        | Command::Changes { .. }
        | Command::ConfigGet { .. }
        | Command::ConfigSet { .. }
        | Command::ConfigList => true,
        c => admin::serves(c),
    }
}

/// The remotes of a database and the upstreams of its branches (branch → remote).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
pub struct RemoteListing {
    /// The remotes, secret option values shown as `***` in remote mode.
    pub remotes: Vec<RemoteConfig>,
    /// Branch → the remote it tracks.
    pub upstreams: std::collections::BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct SetUrlReport {
    remote: RemoteConfig,
    previous_url: String,
}

#[derive(serde::Deserialize)]
struct RemoveReport {
    remote: RemoteConfig,
    mirrors: usize,
}

/// One page of a listing: the version it read, the entries, and the key to continue after.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The version read (pin the following pages to it).
    pub version: u64,
    /// Key and value, in key order.
    pub entries: Vec<(String, Value)>,
    /// `Some(last key)` when more may follow.
    pub next: Option<String>,
}

impl Db {
    // ----- settings, remotes, paging, options ----------------------------------------------------

    /// A database setting (`user.name`, ...).
    pub fn config(&self, key: &str) -> Result<Option<String>> {
        match self.execute(Command::ConfigGet { key: key.into() })? {
            Output::Value(Value::String(s)) => Ok(Some(s)),
            Output::Missing => Ok(None),
            o => Err(unexpected("setting", o)),
        }
    }

    /// Sets a database setting, or removes it (`None`). Remote mode needs an administrative key.
    pub fn set_config(&self, key: &str, value: Option<&str>) -> Result<()> {
        unit(self.execute(Command::ConfigSet {
            key: key.into(),
            value: value.map(str::to_string),
        })?)
    }

    /// Every setting, sorted by key.
    pub fn config_list(&self) -> Result<Vec<(String, String)>> {
        Ok(entries(self.execute(Command::ConfigList)?)?
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k, s),
                v => (k, v.to_json().to_string()),
            })
            .collect())
    }

    /// The configured remotes (remote mode: secret option values as `***`) and the upstreams.
    pub fn remote_list(&self) -> Result<RemoteListing> {
        report(self.execute(Command::RemoteList)?)
    }

    /// Adds a remote (remote mode: to the server's database; a folder URL must be absolute and
    /// names the server's file system). Answers the configuration, secrets redacted.
    pub fn remote_add(&self, cfg: RemoteConfig) -> Result<RemoteConfig> {
        report(self.execute(Command::RemoteAdd {
            name: cfg.name,
            url: cfg.url,
            options: cfg.options,
        })?)
    }

    /// Changes a remote's URL; answers the new configuration and the previous URL.
    pub fn remote_set_url(&self, name: &str, url: &str) -> Result<(RemoteConfig, String)> {
        let r: SetUrlReport = report(self.execute(Command::RemoteSetUrl {
            name: name.into(),
            url: url.into(),
        })?)?;
        Ok((r.remote, r.previous_url))
    }

    /// Renames a remote.
    pub fn remote_rename(&self, old: &str, new: &str) -> Result<RemoteConfig> {
        report(self.execute(Command::RemoteRename {
            old: old.into(),
            new: new.into(),
        })?)
    }

    /// Removes a remote (its mirrors and upstreams); answers it and the number of mirrors deleted.
    pub fn remote_remove(&self, name: &str) -> Result<(RemoteConfig, usize)> {
        let r: RemoveReport = report(self.execute(Command::RemoteRemove { name: name.into() })?)?;
        Ok((r.remote, r.mirrors))
    }

    /// The branches a remote holds, by name.
    pub fn remote_branches(&self, name: &str) -> Result<Vec<RemoteBranch>> {
        report(self.execute(Command::RemoteBranches { name: name.into() })?)
    }

    /// Garbage-collects a remote (unreferenced blobs older than `grace`).
    pub fn remote_gc(&self, name: &str, grace: Duration) -> Result<GcReport> {
        report(self.execute(Command::RemoteGc {
            name: name.into(),
            grace_secs: grace.as_secs(),
        })?)
    }

    /// Compacts a branch's deltas on a remote.
    pub fn remote_compact(
        &self,
        name: &str,
        branch: &str,
        squash_before: Option<u64>,
    ) -> Result<CompactReport> {
        report(self.execute(Command::RemoteCompact {
            name: name.into(),
            branch: branch.into(),
            squash_before,
        })?)
    }

    /// Deletes `branch` on `remote` (`push --delete`); the local branch is untouched.
    pub fn push_delete(&self, remote: &str, branch: &str) -> Result<DeleteReport> {
        report(self.execute(Command::SyncPushDelete {
            remote: remote.into(),
            branch: branch.into(),
        })?)
    }

    /// [`Db::push`], then with `set_upstream` records `remote` as the branch's upstream.
    pub fn push_with(&self, remote: &str, branch: &str, set_upstream: bool) -> Result<PushReport> {
        report(self.execute(Command::SyncWith {
            op: SyncOp::Push,
            remote: remote.into(),
            branch: branch.into(),
            strategy: None,
            conflict_branch: None,
            set_upstream,
        })?)
    }

    /// [`Db::pull`] with any strategy (`Ours` too) and, for a strict pull, a branch that receives
    /// the conflicts.
    pub fn pull_with(
        &self,
        remote: &str,
        branch: &str,
        strategy: MergeStrategy,
        conflict_branch: Option<&str>,
    ) -> Result<PullReport> {
        report(self.execute(Command::SyncWith {
            op: SyncOp::Pull,
            remote: remote.into(),
            branch: branch.into(),
            strategy: Some(strategy),
            conflict_branch: conflict_branch.map(str::to_string),
            set_upstream: false,
        })?)
    }

    /// Whether `outer` contains every version of `inner` (a branch is merged when its head is
    /// contained in another's).
    pub fn contains(&self, outer: &Rev, inner: &Rev) -> Result<bool> {
        boolean(self.execute(Command::Contains {
            outer: outer.clone(),
            inner: inner.clone(),
        })?)
    }

    /// One page of a listing (see [`Command::ListPage`]); pass `Rev::at(branch, page.version)` and
    /// `after = page.next` for the next page.
    pub fn list_page(
        &self,
        rev: &Rev,
        space: &str,
        kind: Kind,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page> {
        match self.execute(Command::ListPage {
            rev: rev.clone(),
            space: space.into(),
            kind,
            prefix: prefix.into(),
            after: after.map(str::to_string),
            limit: limit as u64,
        })? {
            Output::Page {
                version,
                entries,
                next,
            } => Ok(Page {
                version,
                entries,
                next,
            }),
            o => Err(unexpected("page", o)),
        }
    }

    /// Change sets of `rev` after version `after`, oldest first, at most `limit` (and about 1 MiB);
    /// empty when there are none.
    pub fn changes(&self, rev: &Rev, after: u64, limit: usize) -> Result<Vec<ChangeSet>> {
        match self.execute(Command::Changes {
            rev: rev.clone(),
            after,
            limit: limit as u64,
        })? {
            Output::Changes(c) => Ok(c),
            o => Err(unexpected("changes", o)),
        }
    }

    /// [`Db::merge_with_message`]; a strict merge that meets conflicts also saves them on the new
    /// branch `conflict_branch` (forked from the target) before failing with `merge_conflicts`.
    pub fn merge_with_options(
        &self,
        source: &Rev,
        target: &str,
        strategy: MergeStrategy,
        message: Option<&str>,
        author: Option<&str>,
        conflict_branch: Option<&str>,
    ) -> Result<MergeReport> {
        match self.execute(Command::Merge {
            source: source.clone(),
            target: target.into(),
            strategy,
            message: message.map(str::to_string),
            author: author.map(str::to_string),
            conflict_branch: conflict_branch.map(str::to_string),
        })? {
            Output::Merge(m) => Ok(m),
            o => Err(unexpected("merge", o)),
        }
    }
}

fn unexpected(wanted: &str, got: Output) -> Error {
    Error::Protocol {
        addr: String::new(),
        detail: format!("expected a {wanted} answer, got {got:?}"),
    }
}

fn unit(o: Output) -> Result<()> {
    match o {
        Output::Unit => Ok(()),
        o => Err(unexpected("unit", o)),
    }
}

fn boolean(o: Output) -> Result<bool> {
    match o {
        Output::Bool(b) => Ok(b),
        o => Err(unexpected("bool", o)),
    }
}

fn count(o: Output) -> Result<u64> {
    match o {
        Output::Count(n) => Ok(n),
        o => Err(unexpected("count", o)),
    }
}

fn maybe(o: Output) -> Result<Option<Value>> {
    match o {
        Output::Value(v) => Ok(Some(v)),
        Output::Missing => Ok(None),
        o => Err(unexpected("value", o)),
    }
}

fn entries(o: Output) -> Result<Vec<(String, Value)>> {
    match o {
        Output::Entries(e) => Ok(e),
        o => Err(unexpected("entries", o)),
    }
}

fn events(o: Output) -> Result<Vec<Event>> {
    match o {
        Output::Events(e) => Ok(e),
        o => Err(unexpected("events", o)),
    }
}

fn branch(o: Output) -> Result<BranchInfo> {
    match o {
        Output::Branch(b) => Ok(b),
        o => Err(unexpected("branch", o)),
    }
}

/// The primitives' methods, shared by [`Scope`] and [`Tx`] through their `op`.
macro_rules! primitives {
    ($($recv:tt)*) => {
        /// Puts a key.
        pub fn kv_put(&$($recv)* self, key: &str, value: impl Into<Value>) -> Result<()> {
            unit(self.op(Op::KvPut { key: key.into(), value: value.into() })?)
        }
        /// Gets a key.
        pub fn kv_get(&$($recv)* self, key: &str) -> Result<Option<Value>> {
            maybe(self.op(Op::KvGet { key: key.into() })?)
        }
        /// Deletes a key; returns whether it existed.
        pub fn kv_delete(&$($recv)* self, key: &str) -> Result<bool> {
            boolean(self.op(Op::KvDelete { key: key.into() })?)
        }
        /// Lists keys starting with `prefix`, in key order.
        pub fn kv_list(&$($recv)* self, prefix: &str) -> Result<Vec<(String, Value)>> {
            entries(self.op(Op::KvList { prefix: prefix.into() })?)
        }
        /// Stores a whole document.
        pub fn json_put(&$($recv)* self, id: &str, doc: impl Into<Value>) -> Result<()> {
            unit(self.op(Op::JsonPut { id: id.into(), doc: doc.into() })?)
        }
        /// Reads a whole document.
        pub fn json_get(&$($recv)* self, id: &str) -> Result<Option<Value>> {
            maybe(self.op(Op::JsonGet { id: id.into() })?)
        }
        /// Deletes a document; returns whether it existed.
        pub fn json_delete(&$($recv)* self, id: &str) -> Result<bool> {
            boolean(self.op(Op::JsonDelete { id: id.into() })?)
        }
        /// Lists documents whose ids start with `prefix`.
        pub fn json_list(&$($recv)* self, prefix: &str) -> Result<Vec<(String, Value)>> {
            entries(self.op(Op::JsonList { prefix: prefix.into() })?)
        }
        /// Reads a JSON Pointer path inside a document.
        pub fn json_get_path(&$($recv)* self, id: &str, path: &str) -> Result<Option<Value>> {
            maybe(self.op(Op::JsonGetPath { id: id.into(), path: path.into() })?)
        }
        /// Sets a JSON Pointer path inside a document.
        pub fn json_set_path(&$($recv)* self, id: &str, path: &str, value: impl Into<Value>) -> Result<()> {
            unit(self.op(Op::JsonSetPath { id: id.into(), path: path.into(), value: value.into() })?)
        }
        /// Appends an event; returns its sequence number.
        pub fn event_append(&$($recv)* self, event_type: &str, payload: impl Into<Value>) -> Result<u64> {
            count(self.op(Op::EventAppend { event_type: event_type.into(), payload: payload.into() })?)
        }
        /// Events from `from_seq`, at most `limit`.
        pub fn event_range(&$($recv)* self, from_seq: u64, limit: usize) -> Result<Vec<Event>> {
            events(self.op(Op::EventRange { from_seq, limit: limit as u64 })?)
        }
        /// Events of one type, at most `limit`.
        pub fn event_by_type(&$($recv)* self, event_type: &str, limit: usize) -> Result<Vec<Event>> {
            events(self.op(Op::EventByType { event_type: event_type.into(), limit: limit as u64 })?)
        }
        /// The last sequence number (0 for an empty log).
        pub fn event_len(&$($recv)* self) -> Result<u64> {
            count(self.op(Op::EventLen)?)
        }
        /// Sets a state cell.
        pub fn state_set(&$($recv)* self, cell: &str, value: impl Into<Value>) -> Result<()> {
            unit(self.op(Op::StateSet { cell: cell.into(), value: value.into() })?)
        }
        /// Reads a state cell.
        pub fn state_get(&$($recv)* self, cell: &str) -> Result<Option<Value>> {
            maybe(self.op(Op::StateGet { cell: cell.into() })?)
        }
        /// Sets a cell only if it is absent; returns whether it did.
        pub fn state_init(&$($recv)* self, cell: &str, value: impl Into<Value>) -> Result<bool> {
            boolean(self.op(Op::StateInit { cell: cell.into(), value: value.into() })?)
        }
        /// Compare-and-swap: writes `new` (or deletes, `None`) only if the cell holds `expected`.
        pub fn state_cas(&$($recv)* self, cell: &str, expected: Option<&Value>, new: Option<Value>) -> Result<bool> {
            boolean(self.op(Op::StateCas { cell: cell.into(), expected: expected.cloned(), new })?)
        }
        /// Deletes a cell; returns whether it existed.
        pub fn state_delete(&$($recv)* self, cell: &str) -> Result<bool> {
            boolean(self.op(Op::StateDelete { cell: cell.into() })?)
        }
    };
}

/// Operations on one branch and space, each committed as its own version.
#[derive(Clone, Debug)]
pub struct Scope<'a> {
    db: &'a Db,
    branch: String,
    version: Option<u64>,
    space: String,
}

impl<'a> Scope<'a> {
    /// The same branch in another space.
    pub fn space(&self, space: &str) -> Result<Scope<'a>> {
        strata_engine::names::validate_space_name(space, false)?;
        Ok(Scope {
            space: space.to_string(),
            ..self.clone()
        })
    }

    fn op(&self, op: Op) -> Result<Output> {
        self.db.execute(Command::Scoped {
            branch: self.branch.clone(),
            version: self.version,
            space: self.space.clone(),
            op,
        })
    }

    primitives!();
}

/// A write transaction on one branch: all its writes become one new version at `commit`.
pub struct Tx<'a> {
    inner: TxInner<'a>,
    branch: String,
    space: String,
    version: u64,
    message: Option<String>,
    author: Option<String>,
}

enum TxInner<'a> {
    Embedded(Box<strata_engine::Transaction<'a>>),
    Remote {
        pool: &'a Pool,
        /// `None` once the connection broke (the session is lost).
        conn: Option<conn::Conn>,
    },
    /// Committed or rolled back.
    Done,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("branch", &self.branch)
            .field("version", &self.version)
            .field("space", &self.space)
            .finish()
    }
}

impl Tx<'_> {
    /// The version this transaction will commit as.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The branch being written.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The current space.
    pub fn space(&self) -> &str {
        &self.space
    }

    /// Switches the space that following operations use.
    pub fn set_space(&mut self, space: &str) -> Result<&mut Self> {
        strata_engine::names::validate_space_name(space, false)?;
        self.space = space.to_string();
        Ok(self)
    }

    /// Sets the message recorded with the commit.
    pub fn set_message(&mut self, message: impl Into<String>) {
        self.message = Some(message.into());
    }

    /// Sets who the commit is by.
    pub fn set_author(&mut self, author: impl Into<String>) {
        self.author = Some(author.into());
    }

    fn op(&mut self, op: Op) -> Result<Output> {
        match &mut self.inner {
            TxInner::Embedded(tx) => Ok(strata_wire::execute_in(tx, &self.space, op)?),
            TxInner::Done => Err(Error::SessionLost("the transaction already ended".into())),
            TxInner::Remote { pool, conn } => {
                let cmd = Command::InTx {
                    space: self.space.clone(),
                    op,
                };
                session_call(pool, conn, &cmd)
            }
        }
    }

    primitives!(mut);

    /// Commits: returns the new version, or `None` when nothing was written.
    pub fn commit(mut self) -> Result<Option<u64>> {
        let inner = std::mem::replace(&mut self.inner, TxInner::Done);
        match inner {
            TxInner::Embedded(mut tx) => {
                if let Some(m) = self.message.take() {
                    tx.set_message(m);
                }
                if let Some(a) = self.author.take() {
                    tx.set_author(a);
                }
                Ok(tx.commit()?)
            }
            TxInner::Remote { pool, mut conn } => {
                if let Some(message) = self.message.take() {
                    session_call(pool, &mut conn, &Command::SetMessage { message })?;
                }
                if let Some(author) = self.author.take() {
                    session_call(pool, &mut conn, &Command::SetAuthor { author })?;
                }
                let Some(mut c) = conn else {
                    return Err(Error::SessionLost("the connection broke earlier".into()));
                };
                match c.call(&Command::Commit) {
                    Ok(reply) => {
                        pool.put(c);
                        match reply? {
                            Output::Version(v) => Ok(v),
                            o => Err(unexpected("version", o)),
                        }
                    }
                    // The commit never reached the server whole: the session is rolled back.
                    Err(conn::ConnError::BeforeSend(e)) => Err(Error::SessionLost(e.to_string())),
                    Err(conn::ConnError::AfterSend(e)) => Err(Error::Disconnected {
                        addr: pool.addr().to_string(),
                        command: "commit",
                        detail: e.to_string(),
                    }),
                    Err(conn::ConnError::Local(e)) => Err(e),
                }
            }
            TxInner::Done => Err(Error::SessionLost("the transaction already ended".into())),
        }
    }

    /// Discards every write.
    pub fn rollback(mut self) -> Result<()> {
        self.finish_rollback()
    }

    fn finish_rollback(&mut self) -> Result<()> {
        match &mut self.inner {
            TxInner::Done => Ok(()),
            TxInner::Embedded(_) => {
                let inner = std::mem::replace(&mut self.inner, TxInner::Done);
                if let TxInner::Embedded(tx) = inner {
                    tx.rollback()?;
                }
                Ok(())
            }
            TxInner::Remote { pool, conn } => {
                let Some(mut c) = conn.take() else {
                    return Ok(());
                };
                match c.call(&Command::Rollback) {
                    Ok(r) => {
                        pool.put(c);
                        match r {
                            Ok(_) => Ok(()),
                            // Already rolled back by the server (timeout): nothing to undo.
                            Err(w) if w.code == ErrorCode::SessionExpired => Ok(()),
                            Err(w) => Err(Error::Db(w)),
                        }
                    }
                    // The server rolls back a session whose connection closes.
                    Err(_) => Ok(()),
                }
            }
        }
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        let _ = self.finish_rollback();
    }
}

/// One request in a session: a broken connection is [`Error::SessionLost`].
fn session_call(pool: &Pool, conn: &mut Option<conn::Conn>, cmd: &Command) -> Result<Output> {
    let Some(c) = conn.as_mut() else {
        return Err(Error::SessionLost("the connection broke earlier".into()));
    };
    match c.call(cmd) {
        Ok(r) => Ok(r?),
        Err(conn::ConnError::Local(e)) => Err(e),
        Err(e) => {
            *conn = None;
            tracing::debug!(server = pool.addr(), error = %e, "transaction connection lost");
            Err(Error::SessionLost(e.to_string()))
        }
    }
}
