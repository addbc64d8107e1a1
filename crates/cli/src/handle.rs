//! The database a data, branch or bundle command acts on: a local folder (the engine, exactly as
//! before) or a `stratadb-server` named by `--db strata://host:port` (through `strata_client`).
//!
//! Both sides answer with the same types; each side's errors become a [`Failure`] with the same exit
//! codes and `error.code` names. Push, pull, fetch and status run on the server's database
//! (`sync::SyncDb`), as do `remote` and `config`. Commands that create a database (`init`, `clone`,
//! `demo`) refuse a server URL with [`local_only`] instead of acting on a folder.

use std::path::Path;

use strata_client::ErrorCode;
use strata_engine::bundle::{BundleManifest, ImportReport};
use strata_engine::{
    BranchDiff, BranchInfo, CommitInfo, Event, HistoryEntry, Kind, MergeConflict, MergeReport,
    MergeStrategy, Rev, Strata, Value,
};

use crate::args::Global;
use crate::failure::{
    Failure, EXIT_CORRUPT, EXIT_ERROR, EXIT_MERGE_CONFLICT, EXIT_NOT_FOUND, EXIT_REJECTED,
    EXIT_USAGE, EXIT_WRITE_CONFLICT,
};

/// The `strata://host:port` URL that `--db` (or `STRATA_DB`) names, if it names a server.
pub(crate) fn server_url(g: &Global) -> Option<&str> {
    g.db.as_deref()
        .and_then(Path::to_str)
        .filter(|s| s.starts_with(strata_client::SCHEME))
}

/// The failure of a command that cannot run through a server (`what` says why and what to do).
pub(crate) fn local_only(what: &str, url: &str) -> Failure {
    Failure::new(
        EXIT_USAGE,
        format!("--db names a server ({url}), and {what}"),
    )
    .named("local_only")
}

/// Connects to the server `url` with the key from `--api-key` or `STRATA_API_KEY`.
pub(crate) fn connect(g: &Global, url: &str) -> Result<strata_client::Db, Failure> {
    let mut opts = strata_client::ClientOptions::from_env();
    if let Some(k) = g.api_key.as_ref().filter(|k| !k.0.is_empty()) {
        opts.api_key = Some(k.0.clone());
    }
    opts.client_name = format!("strata-cli/{}", env!("CARGO_PKG_VERSION"));
    opts.pool_size = 1;
    opts.request_timeout = std::time::Duration::from_millis(g.busy_timeout.max(1000) + 60_000);
    tracing::debug!(server = url, "connecting");
    Ok(strata_client::Db::connect(url, opts)?)
}

/// Opens what `--db` names: a server, or the local database read-only or for writing.
pub(crate) fn open(g: &Global, reads_only: bool) -> Result<Handle, Failure> {
    if let Some(url) = server_url(g) {
        return Ok(Handle::Server(connect(g, url)?));
    }
    Ok(Handle::Local(if reads_only {
        crate::commands::open_read(g)?
    } else {
        crate::commands::open(g)?
    }))
}

impl From<strata_client::Error> for Failure {
    fn from(e: strata_client::Error) -> Failure {
        if matches!(e, strata_client::Error::InvalidUrl { .. }) {
            return Failure::new(EXIT_USAGE, e.to_string());
        }
        let Some(code) = e.code() else {
            // Transport: cannot connect, protocol, lost session.
            return Failure::new(EXIT_ERROR, e.to_string()).named("server_unreachable");
        };
        let (exit, name) = match code {
            ErrorCode::InvalidName => (EXIT_USAGE, Some("invalid_name")),
            ErrorCode::PastVersion => (EXIT_USAGE, Some("past_version")),
            ErrorCode::BranchNotFound => (EXIT_NOT_FOUND, Some("branch_not_found")),
            ErrorCode::VersionNotFound => (EXIT_NOT_FOUND, Some("version_not_found")),
            ErrorCode::BranchExists => (EXIT_ERROR, Some("branch_exists")),
            ErrorCode::MergeConflicts => (EXIT_MERGE_CONFLICT, None),
            ErrorCode::Corrupt => (EXIT_CORRUPT, None),
            ErrorCode::Conflict | ErrorCode::HeadMoved => (EXIT_WRITE_CONFLICT, None),
            ErrorCode::Unauthorized => (EXIT_ERROR, Some("unauthorized")),
            ErrorCode::Forbidden => (EXIT_ERROR, Some("forbidden")),
            ErrorCode::PushRejected => (EXIT_REJECTED, None),
            ErrorCode::NotFound => (EXIT_NOT_FOUND, None),
            ErrorCode::Diverged => (EXIT_REJECTED, Some("diverged")),
            ErrorCode::InvalidConfig => (EXIT_USAGE, None),
            ErrorCode::NotARemote => (EXIT_NOT_FOUND, Some("not_a_remote")),
            _ => (EXIT_ERROR, None),
        };
        let mut message = e.to_string();
        if code == ErrorCode::Unauthorized {
            message.push_str(" (pass the key with --api-key or STRATA_API_KEY)");
        }
        let mut f = Failure::new(exit, message);
        f.name = name;
        f
    }
}

/// Runs the same expression on either side, converting its error.
macro_rules! both {
    ($self:expr, $x:ident => $e:expr) => {
        match $self {
            Self::Local($x) => Ok($e?),
            Self::Server($x) => Ok($e?),
        }
    };
}

/// What a merge gave: the report, or the conflicts and the branch they were saved on.
pub(crate) type MergeOutcome = Result<MergeReport, (Vec<MergeConflict>, Option<BranchInfo>)>;

/// A database: local (engine) or a server (client).
pub(crate) enum Handle {
    Local(Strata),
    Server(strata_client::Db),
}

/// Reads of one revision and space.
pub(crate) enum Reader<'a> {
    Local(strata_engine::Scope<'a>),
    Server(strata_client::Scope<'a>),
}

/// A write transaction.
pub(crate) enum Tx<'a> {
    Local(strata_engine::Transaction<'a>),
    Server(strata_client::Tx<'a>),
}

impl Handle {
    pub(crate) fn at(&self, rev: &Rev, space: &str) -> Result<Reader<'_>, Failure> {
        Ok(match self {
            Handle::Local(db) => Reader::Local(db.at(rev).space(space)?),
            Handle::Server(db) => Reader::Server(db.at(rev).space(space)?),
        })
    }

    pub(crate) fn begin(&self, branch: &str) -> Result<Tx<'_>, Failure> {
        Ok(match self {
            Handle::Local(db) => Tx::Local(db.begin(branch)?),
            Handle::Server(db) => Tx::Server(db.begin(branch)?),
        })
    }

    pub(crate) fn create_branch(&self, name: &str) -> Result<BranchInfo, Failure> {
        both!(self, db => db.create_branch(name))
    }

    pub(crate) fn fork_branch(&self, source: Rev, name: &str) -> Result<BranchInfo, Failure> {
        both!(self, db => db.fork_branch(source, name))
    }

    pub(crate) fn delete_branch(&self, name: &str) -> Result<(), Failure> {
        both!(self, db => db.delete_branch(name))
    }

    pub(crate) fn list_branches(&self, all: bool) -> Result<Vec<BranchInfo>, Failure> {
        both!(self, db => db.list_branches(all))
    }

    pub(crate) fn branch_info(&self, name: &str) -> Result<BranchInfo, Failure> {
        both!(self, db => db.branch_info(name))
    }

    pub(crate) fn list_spaces(&self, branch: &str) -> Result<Vec<String>, Failure> {
        both!(self, db => db.list_spaces(branch))
    }

    pub(crate) fn log(&self, branch: &str, limit: usize) -> Result<Vec<CommitInfo>, Failure> {
        both!(self, db => db.log(branch, limit))
    }

    pub(crate) fn history(
        &self,
        branch: &str,
        space: &str,
        kind: Kind,
        key: &str,
    ) -> Result<Vec<HistoryEntry>, Failure> {
        both!(self, db => db.history(branch, space, kind, key))
    }

    pub(crate) fn diff(&self, a: &Rev, b: &Rev) -> Result<BranchDiff, Failure> {
        both!(self, db => db.diff(a, b))
    }

    /// A merge: the report, or the conflicts of a strict merge that wrote nothing to the target
    /// (with the branch they were saved on, given `conflict_branch`).
    pub(crate) fn merge(
        &self,
        source: &Rev,
        target: &str,
        strategy: MergeStrategy,
        message: Option<&str>,
        author: Option<&str>,
        conflict_branch: Option<&str>,
    ) -> Result<MergeOutcome, Failure> {
        let list = match self {
            Handle::Local(db) => {
                match db.merge_with_message(source, target, strategy, message, author) {
                    Ok(r) => return Ok(Ok(r)),
                    Err(strata_engine::Error::MergeConflicts(list)) => {
                        let saved = match conflict_branch {
                            Some(name) => Some(db.save_conflicts(target, &list, name)?),
                            None => None,
                        };
                        return Ok(Err((list, saved)));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            // The server saves the conflicts itself, in the same request.
            Handle::Server(db) => match db.merge_with_options(
                source,
                target,
                strategy,
                message,
                author,
                conflict_branch,
            ) {
                Ok(r) => return Ok(Ok(r)),
                Err(e) if e.code() == Some(ErrorCode::MergeConflicts) => e.conflicts().to_vec(),
                Err(e) => return Err(e.into()),
            },
        };
        let saved = match conflict_branch {
            Some(name) => Some(self.branch_info(name)?),
            None => None,
        };
        Ok(Err((list, saved)))
    }

    /// Whether `outer` contains every version of `inner`.
    pub(crate) fn contains(&self, outer: &Rev, inner: &Rev) -> Result<bool, Failure> {
        both!(self, db => db.contains(outer, inner))
    }

    pub(crate) fn config(&self, key: &str) -> Result<Option<String>, Failure> {
        both!(self, db => db.config(key))
    }

    pub(crate) fn set_config(&self, key: &str, value: Option<&str>) -> Result<(), Failure> {
        both!(self, db => db.set_config(key, value))
    }

    pub(crate) fn config_list(&self) -> Result<Vec<(String, String)>, Failure> {
        both!(self, db => db.config_list())
    }

    pub(crate) fn export_bundle(
        &self,
        branch: &str,
        range: Option<(u64, u64)>,
        path: &Path,
    ) -> Result<BundleManifest, Failure> {
        both!(self, db => db.export_bundle(branch, range, path))
    }

    pub(crate) fn import_bundle(
        &self,
        path: &Path,
        target: Option<&str>,
    ) -> Result<ImportReport, Failure> {
        both!(self, db => db.import_bundle(path, target))
    }
}

impl Reader<'_> {
    pub(crate) fn kv_get(&self, key: &str) -> Result<Option<Value>, Failure> {
        both!(self, s => s.kv_get(key))
    }
    pub(crate) fn kv_list(&self, prefix: &str) -> Result<Vec<(String, Value)>, Failure> {
        both!(self, s => s.kv_list(prefix))
    }
    pub(crate) fn json_get(&self, id: &str) -> Result<Option<Value>, Failure> {
        both!(self, s => s.json_get(id))
    }
    pub(crate) fn json_get_path(&self, id: &str, path: &str) -> Result<Option<Value>, Failure> {
        both!(self, s => s.json_get_path(id, path))
    }
    pub(crate) fn json_list(&self, prefix: &str) -> Result<Vec<(String, Value)>, Failure> {
        both!(self, s => s.json_list(prefix))
    }
    pub(crate) fn event_range(&self, from: u64, limit: usize) -> Result<Vec<Event>, Failure> {
        both!(self, s => s.event_range(from, limit))
    }
    pub(crate) fn event_by_type(&self, t: &str, limit: usize) -> Result<Vec<Event>, Failure> {
        both!(self, s => s.event_by_type(t, limit))
    }
    pub(crate) fn state_get(&self, cell: &str) -> Result<Option<Value>, Failure> {
        both!(self, s => s.state_get(cell))
    }
}

impl Tx<'_> {
    pub(crate) fn set_space(&mut self, space: &str) -> Result<(), Failure> {
        match self {
            Tx::Local(t) => t.set_space(space).map(|_| ())?,
            Tx::Server(t) => t.set_space(space).map(|_| ())?,
        }
        Ok(())
    }
    pub(crate) fn set_message(&mut self, m: String) {
        match self {
            Tx::Local(t) => t.set_message(m),
            Tx::Server(t) => t.set_message(m),
        }
    }
    pub(crate) fn set_author(&mut self, a: &str) {
        match self {
            Tx::Local(t) => t.set_author(a),
            Tx::Server(t) => t.set_author(a),
        }
    }
    pub(crate) fn commit(self) -> Result<Option<u64>, Failure> {
        match self {
            Tx::Local(t) => Ok(t.commit()?),
            Tx::Server(t) => Ok(t.commit()?),
        }
    }
    pub(crate) fn kv_put(&mut self, key: &str, v: Value) -> Result<(), Failure> {
        both!(self, t => t.kv_put(key, v))
    }
    pub(crate) fn kv_delete(&mut self, key: &str) -> Result<bool, Failure> {
        both!(self, t => t.kv_delete(key))
    }
    pub(crate) fn json_put(&mut self, id: &str, v: Value) -> Result<(), Failure> {
        both!(self, t => t.json_put(id, v))
    }
    pub(crate) fn json_set_path(&mut self, id: &str, path: &str, v: Value) -> Result<(), Failure> {
        both!(self, t => t.json_set_path(id, path, v))
    }
    pub(crate) fn json_delete(&mut self, id: &str) -> Result<bool, Failure> {
        both!(self, t => t.json_delete(id))
    }
    pub(crate) fn event_append(&mut self, t: &str, payload: Value) -> Result<u64, Failure> {
        both!(self, x => x.event_append(t, payload))
    }
    pub(crate) fn state_set(&mut self, cell: &str, v: Value) -> Result<(), Failure> {
        both!(self, t => t.state_set(cell, v))
    }
    pub(crate) fn state_get(&mut self, cell: &str) -> Result<Option<Value>, Failure> {
        both!(self, t => t.state_get(cell))
    }
    pub(crate) fn state_init(&mut self, cell: &str, v: Value) -> Result<bool, Failure> {
        both!(self, t => t.state_init(cell, v))
    }
    pub(crate) fn state_cas(
        &mut self,
        cell: &str,
        expected: Option<&Value>,
        new: Option<Value>,
    ) -> Result<bool, Failure> {
        both!(self, t => t.state_cas(cell, expected, new))
    }
    pub(crate) fn state_delete(&mut self, cell: &str) -> Result<bool, Failure> {
        both!(self, t => t.state_delete(cell))
    }
}
