//! The executor: runs a [`Command`] on an embedded [`Strata`], or an [`Op`] in an open
//! [`Transaction`]. The server runs every request through it (on a blocking thread), and the client's
//! embedded mode runs the same code in process, so both modes answer alike, errors included.

use strata_engine::{Error, Kind, Rev, Scope, Strata, Transaction};

use crate::msg::{Command, ErrorCode, Op, Output, WireError};

/// Runs a command that needs no transaction. Transaction commands (`begin`, `in_tx`, `commit`, …)
/// are the caller's (the server's sessions, the client's `Tx`): they answer `invalid_operation`.
pub fn execute(db: &Strata, cmd: Command) -> Result<Output, WireError> {
    run(db, cmd).map_err(engine_error)
}

/// Runs reads one after another, the point reads among them (`kv_get`, `json_get`, `state_get`) on
/// one [`strata_engine::ReadSnapshot`], so that they share one read transaction and each branch is
/// resolved once. Answers match [`execute`]'s, one per command, in order; any other command runs
/// through [`execute`].
pub fn execute_reads(db: &Strata, cmds: Vec<Command>) -> Vec<Result<Output, WireError>> {
    // A snapshot costs a read transaction of its own: worth it for several point reads, or for
    // one when the value cache may answer it without SQLite.
    let points = cmds.iter().filter(|c| is_point_read(c)).count();
    let snap = match points {
        0 => None,
        1 if db.cache_stats().is_none() => None,
        _ => db.read_snapshot().ok(),
    };
    cmds.into_iter()
        .map(|cmd| match (&snap, point_read(&cmd)) {
            (Some(snap), Some((rev, space, kind, key))) => snap
                .get(&rev, space, kind, key)
                .map(maybe)
                .map_err(engine_error),
            _ => execute(db, cmd),
        })
        .collect()
}

fn is_point_read(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Scoped {
            op: Op::KvGet { .. } | Op::JsonGet { .. } | Op::StateGet { .. },
            ..
        }
    )
}

/// A point read that [`execute_reads`] answers from its snapshot: revision, space, kind and key.
fn point_read(cmd: &Command) -> Option<(Rev, &str, Kind, &str)> {
    let Command::Scoped {
        branch,
        version,
        space,
        op,
    } = cmd
    else {
        return None;
    };
    let (kind, key) = match op {
        Op::KvGet { key } => (Kind::Kv, key),
        Op::JsonGet { id } => (Kind::Json, id),
        Op::StateGet { cell } => (Kind::State, cell),
        _ => return None,
    };
    let rev = Rev {
        branch: branch.clone(),
        version: *version,
    };
    Some((rev, space, kind, key))
}

/// Whether a command is a one-shot write that [`execute_writes`] groups: an op that writes, at the
/// head of its branch, outside any session.
pub fn is_one_shot_write(cmd: &Command) -> bool {
    matches!(cmd, Command::Scoped { version: None, op, .. } if op.writes())
}

/// Runs one-shot writes (see [`is_one_shot_write`]) as [`execute`] would, each committing its own
/// version, but in one engine [`strata_engine::WriteGroup`]: one durable commit for them all (group
/// commit). Answers match [`execute`]'s, one per command, in order. If the group's commit fails,
/// every write in it fails with that error and none is kept. Any other command is refused.
pub fn execute_writes(db: &Strata, cmds: Vec<Command>) -> Vec<Result<Output, WireError>> {
    if cmds.len() < 2 {
        return cmds.into_iter().map(|c| execute(db, c)).collect();
    }
    let mut group = match db.write_group() {
        Ok(g) => g,
        Err(e) => {
            let e = engine_error(e);
            return cmds.iter().map(|_| Err(e.clone())).collect();
        }
    };
    let answers: Vec<Result<Output, WireError>> = cmds
        .into_iter()
        .map(|cmd| match cmd {
            Command::Scoped {
                branch,
                version: None,
                space,
                op,
            } if op.writes() => {
                strata_engine::names::validate_space_name(&space, false).map_err(engine_error)?;
                let mut tx = group.begin(&branch).map_err(engine_error)?;
                let out = execute_in(&mut tx, &space, op)?;
                tx.commit().map_err(engine_error)?;
                Ok(out)
            }
            other => Err(WireError::new(
                ErrorCode::InvalidOperation,
                format!("{} is not a one-shot write", other.name()),
            )),
        })
        .collect();
    match group.commit() {
        Ok(()) => answers,
        Err(e) => {
            let e = engine_error(e);
            answers.iter().map(|_| Err(e.clone())).collect()
        }
    }
}

fn run(db: &Strata, cmd: Command) -> Result<Output, Error> {
    Ok(match cmd {
        Command::Ping => Output::Unit,
        Command::Scoped {
            branch,
            version,
            space,
            op,
        } => {
            let scope = match version {
                Some(v) => db.at(&strata_engine::Rev::at(branch, v)),
                None => db.on(&branch),
            };
            scoped(&scope.space(&space)?, op)?
        }
        Command::CreateBranch { name } => Output::Branch(db.create_branch(&name)?),
        Command::ForkBranch { source, name } => Output::Branch(db.fork_branch(source, &name)?),
        Command::DeleteBranch { name } => {
            db.delete_branch(&name)?;
            Output::Unit
        }
        Command::ListBranches { include_internal } => {
            Output::Branches(db.list_branches(include_internal)?)
        }
        Command::BranchInfo { name } => Output::Branch(db.branch_info(&name)?),
        Command::BranchExists { name } => Output::Bool(db.branch_exists(&name)?),
        Command::Log { branch, limit } => Output::Commits(db.log(&branch, to_usize(limit))?),
        Command::History {
            branch,
            space,
            kind,
            key,
        } => {
            user_space(&space)?;
            Output::History(db.history(&branch, &space, kind, &key)?)
        }
        Command::GetAt {
            rev,
            space,
            kind,
            key,
        } => {
            user_space(&space)?;
            maybe(db.get_at(&rev, &space, kind, &key)?)
        }
        Command::ListSpaces { branch } => Output::Names(db.list_spaces(&branch)?),
        Command::Diff { a, b } => {
            let mut d = db.diff(&a, &b)?;
            d.spaces.retain(|s| !s.space.starts_with('_'));
            Output::Diff(d)
        }
        Command::Merge {
            source,
            target,
            strategy,
            message,
            author,
            conflict_branch,
        } => {
            if let Some(name) = &conflict_branch {
                if strategy != strata_engine::MergeStrategy::Strict {
                    return Err(Error::InvalidOperation(
                        "a conflict branch applies only to the strict strategy".into(),
                    ));
                }
                strata_engine::names::validate_branch_name(name, false)?;
            }
            match db.merge_with_message(
                &source,
                &target,
                strategy,
                message.as_deref(),
                author.as_deref(),
            ) {
                Err(Error::MergeConflicts(list)) => {
                    if let Some(name) = &conflict_branch {
                        db.save_conflicts(&target, &list, name)?;
                    }
                    return Err(Error::MergeConflicts(list));
                }
                r => Output::Merge(r?),
            }
        }
        Command::Contains { outer, inner } => Output::Bool(db.contains(&outer, &inner)?),
        Command::ListPage {
            rev,
            space,
            kind,
            prefix,
            after,
            limit,
        } => {
            user_space(&space)?;
            let (version, mut entries) = db.list_page(
                &rev,
                &space,
                kind,
                &prefix,
                after.as_deref(),
                to_usize(limit.clamp(1, 10_000)),
            )?;
            let full = entries.len() as u64 >= limit.clamp(1, 10_000);
            // Bound the answer's size well under the frame cap (a page keeps at least one entry).
            let mut bytes = 0usize;
            let mut keep = entries.len();
            for (i, (k, v)) in entries.iter().enumerate() {
                bytes += k.len() + value_size(v);
                if bytes > PAGE_BYTES && i > 0 {
                    keep = i;
                    break;
                }
            }
            let cut = keep < entries.len();
            entries.truncate(keep);
            let next = if full || cut {
                entries.last().map(|(k, _)| k.clone())
            } else {
                None
            };
            Output::Page {
                version,
                entries,
                next,
            }
        }
        Command::Changes { rev, after, limit } => {
            let mut sets = Vec::new();
            let mut bytes = 0usize;
            for cs in db.changes_between(&rev, after)? {
                let mut cs = cs?;
                cs.puts.retain(|(k, _)| !k.space.starts_with('_'));
                cs.deletes.retain(|k| !k.space.starts_with('_'));
                bytes += cs
                    .puts
                    .iter()
                    .map(|(k, v)| k.key.len() + value_size(v))
                    .sum::<usize>()
                    + cs.deletes.iter().map(|k| k.key.len() + 8).sum::<usize>();
                if bytes > PAGE_BYTES && !sets.is_empty() {
                    break;
                }
                sets.push(cs);
                if sets.len() as u64 >= limit.max(1) {
                    break;
                }
            }
            Output::Changes(sets)
        }
        Command::ConfigGet { key } => match db.config(&key)? {
            Some(v) => Output::Value(strata_engine::Value::String(v)),
            None => Output::Missing,
        },
        Command::ConfigSet { key, value } => {
            db.set_config(&key, value.as_deref())?;
            Output::Unit
        }
        Command::ConfigList => Output::Entries(
            db.config_list()?
                .into_iter()
                .map(|(k, v)| (k, strata_engine::Value::String(v)))
                .collect(),
        ),
        Command::Begin { .. }
        | Command::InTx { .. }
        | Command::SetMessage { .. }
        | Command::SetAuthor { .. }
        | Command::Commit
        | Command::Rollback => {
            return Err(Error::InvalidOperation(format!(
                "{} belongs to a transaction session",
                cmd.name()
            )))
        }
        Command::BundleExport { .. }
        | Command::BundleRead { .. }
        | Command::BundleUpload { .. }
        | Command::BundleImport { .. }
        | Command::BundleClose { .. }
        | Command::SyncPush { .. }
        | Command::SyncPull { .. }
        | Command::SyncFetch { .. }
        | Command::SyncStatus { .. }
        | Command::SyncRemotes
        | Command::SyncPushDelete { .. }
        | Command::SyncWith { .. }
        | Command::RemoteList
        | Command::RemoteAdd { .. }
        | Command::RemoteSetUrl { .. }
        | Command::RemoteRename { .. }
        | Command::RemoteRemove { .. }
        | Command::RemoteBranches { .. }
        | Command::RemoteGc { .. }
        | Command::RemoteCompact { .. } => {
            return Err(Error::InvalidOperation(format!(
                "{} moves files or talks to a remote: the server and the client run it",
                cmd.name()
            )))
        }
    })
}

/// Internal spaces (`_…`: sync's state, remote configurations with their tokens) never travel: a
/// command naming one is refused, and listings leave them out.
fn user_space(space: &str) -> Result<(), Error> {
    strata_engine::names::validate_space_name(space, false)
}

/// About how many value bytes one `list_page` or `changes` answer carries (far under the 8 MiB
/// frame cap; one larger entry still travels alone).
const PAGE_BYTES: usize = 1 << 20;

/// The encoded size of a value, roughly (strings and bytes exactly).
fn value_size(v: &strata_engine::Value) -> usize {
    use strata_engine::Value as V;
    match v {
        V::String(s) => s.len() + 5,
        V::Bytes(b) => b.len() + 5,
        V::Array(a) => 5 + a.iter().map(value_size).sum::<usize>(),
        V::Object(o) => {
            5 + o
                .iter()
                .map(|(k, v)| k.len() + 5 + value_size(v))
                .sum::<usize>()
        }
        _ => 9,
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn maybe(v: Option<strata_engine::Value>) -> Output {
    match v {
        Some(v) => Output::Value(v),
        None => Output::Missing,
    }
}

fn scoped(s: &Scope<'_>, op: Op) -> Result<Output, Error> {
    Ok(match op {
        Op::KvPut { key, value } => {
            s.kv_put(&key, value)?;
            Output::Unit
        }
        Op::KvGet { key } => maybe(s.kv_get(&key)?),
        Op::KvDelete { key } => Output::Bool(s.kv_delete(&key)?),
        Op::KvList { prefix } => Output::Entries(s.kv_list(&prefix)?),
        Op::JsonPut { id, doc } => {
            s.json_put(&id, doc)?;
            Output::Unit
        }
        Op::JsonGet { id } => maybe(s.json_get(&id)?),
        Op::JsonDelete { id } => Output::Bool(s.json_delete(&id)?),
        Op::JsonList { prefix } => Output::Entries(s.json_list(&prefix)?),
        Op::JsonGetPath { id, path } => maybe(s.json_get_path(&id, &path)?),
        Op::JsonSetPath { id, path, value } => {
            s.json_set_path(&id, &path, value)?;
            Output::Unit
        }
        Op::EventAppend {
            event_type,
            payload,
        } => Output::Count(s.event_append(&event_type, payload)?),
        Op::EventRange { from_seq, limit } => {
            Output::Events(s.event_range(from_seq, to_usize(limit))?)
        }
        Op::EventByType { event_type, limit } => {
            Output::Events(s.event_by_type(&event_type, to_usize(limit))?)
        }
        Op::EventLen => Output::Count(s.event_len()?),
        Op::StateSet { cell, value } => {
            s.state_set(&cell, value)?;
            Output::Unit
        }
        Op::StateGet { cell } => maybe(s.state_get(&cell)?),
        Op::StateInit { cell, value } => Output::Bool(s.state_init(&cell, value)?),
        Op::StateCas {
            cell,
            expected,
            new,
        } => Output::Bool(s.state_cas(&cell, expected.as_ref(), new)?),
        Op::StateDelete { cell } => Output::Bool(s.state_delete(&cell)?),
    })
}

/// Runs one operation in an open transaction, in `space`.
pub fn execute_in(tx: &mut Transaction<'_>, space: &str, op: Op) -> Result<Output, WireError> {
    in_tx(tx, space, op).map_err(engine_error)
}

fn in_tx(t: &mut Transaction<'_>, space: &str, op: Op) -> Result<Output, Error> {
    if t.space() != space {
        t.set_space(space)?;
    }
    Ok(match op {
        Op::KvPut { key, value } => {
            t.kv_put_ref(&key, &value)?;
            Output::Unit
        }
        Op::KvGet { key } => maybe(t.kv_get(&key)?),
        Op::KvDelete { key } => Output::Bool(t.kv_delete(&key)?),
        Op::KvList { prefix } => Output::Entries(t.kv_list(&prefix)?),
        Op::JsonPut { id, doc } => {
            t.json_put(&id, doc)?;
            Output::Unit
        }
        Op::JsonGet { id } => maybe(t.json_get(&id)?),
        Op::JsonDelete { id } => Output::Bool(t.json_delete(&id)?),
        Op::JsonList { prefix } => Output::Entries(t.json_list(&prefix)?),
        Op::JsonGetPath { id, path } => maybe(t.json_get_path(&id, &path)?),
        Op::JsonSetPath { id, path, value } => {
            t.json_set_path(&id, &path, value)?;
            Output::Unit
        }
        Op::EventAppend {
            event_type,
            payload,
        } => Output::Count(t.event_append(&event_type, payload)?),
        Op::EventRange { from_seq, limit } => {
            Output::Events(t.event_range(from_seq, to_usize(limit))?)
        }
        Op::EventByType { event_type, limit } => {
            Output::Events(t.event_by_type(&event_type, to_usize(limit))?)
        }
        Op::EventLen => Output::Count(t.event_len()?),
        Op::StateSet { cell, value } => {
            t.state_set(&cell, value)?;
            Output::Unit
        }
        Op::StateGet { cell } => maybe(t.state_get(&cell)?),
        Op::StateInit { cell, value } => Output::Bool(t.state_init(&cell, value)?),
        Op::StateCas {
            cell,
            expected,
            new,
        } => Output::Bool(t.state_cas(&cell, expected.as_ref(), new)?),
        Op::StateDelete { cell } => Output::Bool(t.state_delete(&cell)?),
    })
}

/// The wire form of an engine error: a stable code and the engine's message.
pub fn engine_error(e: Error) -> WireError {
    let code = match &e {
        Error::InvalidName { .. } => ErrorCode::InvalidName,
        Error::BranchNotFound(_) => ErrorCode::BranchNotFound,
        Error::BranchExists(_) => ErrorCode::BranchExists,
        Error::VersionNotFound { .. } => ErrorCode::VersionNotFound,
        Error::Conflict(_) => ErrorCode::Conflict,
        Error::HeadMoved { .. } => ErrorCode::HeadMoved,
        Error::MergeConflicts(_) => ErrorCode::MergeConflicts,
        Error::InvalidOperation(_) => ErrorCode::InvalidOperation,
        Error::PastVersion(_) => ErrorCode::PastVersion,
        Error::Corrupt { .. } | Error::Decode(_) => ErrorCode::Corrupt,
        Error::Sqlite(_) | Error::Io(_) | Error::SchemaTooNew { .. } | Error::NotADatabase(_) => {
            if e.is_retryable() {
                ErrorCode::Conflict
            } else {
                ErrorCode::Storage
            }
        }
        _ => ErrorCode::Internal,
    };
    let mut w = WireError::new(code, e.to_string());
    if let Error::MergeConflicts(c) = e {
        w.conflicts = c;
    }
    w
}
