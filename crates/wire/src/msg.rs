//! Frame bodies: MessagePack maps with named fields (`rmp_serde::to_vec_named`), so a peer that adds
//! a field does not break one that does not know it. Enums are externally tagged with snake_case
//! names: `{"kv_put": {"key": "a", "value": 1}}`; a unit variant is its name as a string.

use serde::{Deserialize, Serialize};
use strata_engine::bundle::{BundleManifest, ImportReport};
use strata_engine::{
    BranchDiff, BranchInfo, ChangeSet, CommitInfo, Event, HistoryEntry, Kind, MergeConflict,
    MergeReport, MergeStrategy, Rev, Value,
};

/// The client's half of the handshake (body of the [`crate::FrameKind::Hello`] frame).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The API key, or `None` for a server in open mode.
    #[serde(default)]
    pub api_key: Option<String>,
    /// A name for logs and metrics (`myapp/1.2`).
    #[serde(default)]
    pub client_name: String,
}

impl std::fmt::Display for Hello {
    /// Never shows the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "hello from {:?} (key {})",
            self.client_name,
            if self.api_key.is_some() {
                "given"
            } else {
                "absent"
            }
        )
    }
}

/// The server's half of the handshake.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The server's package version (`0.1.0`).
    pub server_version: String,
    /// The protocol version the connection speaks.
    pub protocol: u16,
    /// What the server offers: `kv`, `json`, `events`, `state`, `transactions`, `branches`, `diff`,
    /// `merge`, `log`, `history`, `pipelining`, and `auth` or `open`.
    pub capabilities: Vec<String>,
    /// The largest frame (its length prefix) the server reads.
    pub max_frame: u32,
    /// A transaction idle for this long is rolled back.
    pub session_idle_ms: u64,
}

/// An operation on one space of a branch: in a transaction, or on its own (one commit each).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Op {
    KvPut {
        key: String,
        value: Value,
    },
    KvGet {
        key: String,
    },
    KvDelete {
        key: String,
    },
    KvList {
        prefix: String,
    },
    JsonPut {
        id: String,
        doc: Value,
    },
    JsonGet {
        id: String,
    },
    JsonDelete {
        id: String,
    },
    JsonList {
        prefix: String,
    },
    JsonGetPath {
        id: String,
        path: String,
    },
    JsonSetPath {
        id: String,
        path: String,
        value: Value,
    },
    EventAppend {
        event_type: String,
        payload: Value,
    },
    EventRange {
        from_seq: u64,
        limit: u64,
    },
    EventByType {
        event_type: String,
        limit: u64,
    },
    EventLen,
    StateSet {
        cell: String,
        value: Value,
    },
    StateGet {
        cell: String,
    },
    StateInit {
        cell: String,
        value: Value,
    },
    /// `expected` and `new` are arrays of zero (absent) or one value, so that a stored null and an
    /// absent cell stay distinct.
    StateCas {
        cell: String,
        #[serde(with = "opt_value")]
        expected: Option<Value>,
        #[serde(with = "opt_value")]
        new: Option<Value>,
    },
    StateDelete {
        cell: String,
    },
}

impl Op {
    /// Whether the operation writes (reads may be retried on another connection; writes may not).
    pub fn writes(&self) -> bool {
        !matches!(
            self,
            Op::KvGet { .. }
                | Op::KvList { .. }
                | Op::JsonGet { .. }
                | Op::JsonList { .. }
                | Op::JsonGetPath { .. }
                | Op::EventRange { .. }
                | Op::EventByType { .. }
                | Op::EventLen
                | Op::StateGet { .. }
        )
    }
}

/// A request (body of a [`crate::FrameKind::Request`] frame).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Answers `unit`; checks the connection.
    Ping,
    /// One operation on `branch` (at `version` for reads of the past) in `space`, committed on its own.
    Scoped {
        /// The branch.
        branch: String,
        /// `None`: the head; writes need the head.
        #[serde(default)]
        version: Option<u64>,
        /// The space.
        space: String,
        /// The operation.
        op: Op,
    },
    /// Opens this connection's transaction on `branch` (takes the write lock). Answers `begun`.
    Begin {
        /// The branch.
        branch: String,
    },
    /// One operation inside the open transaction.
    InTx {
        /// The space it applies to.
        space: String,
        /// The operation.
        op: Op,
    },
    /// The open transaction's commit message.
    SetMessage {
        /// The message.
        message: String,
    },
    /// The open transaction's author.
    SetAuthor {
        /// The author.
        author: String,
    },
    /// Commits the open transaction: answers `version` (`None` when it wrote nothing).
    Commit,
    /// Rolls the open transaction back.
    Rollback,
    /// Creates an empty branch.
    CreateBranch {
        /// Its name.
        name: String,
    },
    /// Forks `name` from `source`.
    ForkBranch {
        /// A branch or `branch@version`.
        source: Rev,
        /// The new branch.
        name: String,
    },
    /// Deletes a branch.
    DeleteBranch {
        /// The branch.
        name: String,
    },
    /// Lists branches (only those the key may read).
    ListBranches {
        /// Include `_…` branches.
        include_internal: bool,
    },
    /// One branch's metadata.
    BranchInfo {
        /// The branch.
        name: String,
    },
    /// Whether a branch exists.
    BranchExists {
        /// The branch.
        name: String,
    },
    /// The newest `limit` versions of a branch.
    Log {
        /// The branch.
        branch: String,
        /// At most this many.
        limit: u64,
    },
    /// Every value a key has had.
    History {
        /// The branch.
        branch: String,
        /// The space.
        space: String,
        /// The primitive.
        kind: Kind,
        /// The key.
        key: String,
    },
    /// The value of an entry at a revision.
    GetAt {
        /// The revision.
        rev: Rev,
        /// The space.
        space: String,
        /// The primitive.
        kind: Kind,
        /// The key.
        key: String,
    },
    /// The spaces of a branch.
    ListSpaces {
        /// The branch.
        branch: String,
    },
    /// The difference between two revisions.
    Diff {
        /// Side A.
        a: Rev,
        /// Side B.
        b: Rev,
    },
    /// Three-way merge of `source` into `target`.
    Merge {
        /// The source revision.
        source: Rev,
        /// The target branch.
        target: String,
        /// How conflicts resolve.
        strategy: MergeStrategy,
        /// The merge version's message (default `merge SOURCE@VERSION`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// The merge version's author (default: the database's `user.name`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        author: Option<String>,
        /// With `Strict`: on conflicts, also save them on a new branch of this name forked from the
        /// target (the error still answers `merge_conflicts`). Needs the `admin` capability.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conflict_branch: Option<String>,
    },
    /// Whether `outer` contains every version of `inner` (by fork or merge): `strata branch
    /// delete`'s merged check. Answers `bool`.
    Contains {
        /// The revision that may contain the other.
        outer: Rev,
        /// The revision that may be contained.
        inner: Rev,
    },
    /// One page of a prefix listing at `rev`: live entries of `kind` in `space` whose keys start
    /// with `prefix` and sort after `after`, at most `limit` and about 1 MiB of values. Answers
    /// `page` with the version read (pass it in `rev` for the following pages).
    ListPage {
        /// The revision (the first page: a branch head; then the version the first page read).
        rev: Rev,
        /// The space.
        space: String,
        /// The primitive.
        kind: Kind,
        /// The key prefix.
        #[serde(default)]
        prefix: String,
        /// The last key of the previous page.
        #[serde(default)]
        after: Option<String>,
        /// At most this many entries.
        limit: u64,
    },
    /// The change sets of `rev` after version `after`, oldest first: at most `limit`, and at most
    /// about 1 MiB of values (always at least one set). Answers `changes`.
    Changes {
        /// The branch, at the version the listing is pinned to.
        rev: Rev,
        /// The version the caller has seen.
        after: u64,
        /// At most this many sets.
        limit: u64,
    },
    /// One setting of the server's database (`user.name`, ...): `value` (a string) or `missing`.
    ConfigGet {
        /// The setting.
        key: String,
    },
    /// Sets (or with nil, removes) a setting of the server's database. Administrative.
    ConfigSet {
        /// The setting.
        key: String,
        /// The value, or nil to remove it.
        #[serde(default)]
        value: Option<String>,
    },
    /// Every setting: `entries` of `[key, string]`.
    ConfigList,
    /// Exports a branch (versions in `range`, default all) to a bundle the server keeps for this
    /// connection; answers `transfer` (a handle and the size). Read it with `bundle_read`.
    BundleExport {
        /// The branch.
        branch: String,
        /// `(from, to]` versions.
        #[serde(default)]
        range: Option<(u64, u64)>,
    },
    /// Up to `len` bytes of a transfer from `offset`; answers `chunk`.
    BundleRead {
        /// The transfer handle.
        handle: String,
        /// Where to start.
        offset: u64,
        /// At most this many bytes.
        len: u64,
    },
    /// Appends bytes to an upload (a new one when `handle` is nil); answers `transfer`.
    BundleUpload {
        /// The upload, or nil to start one.
        #[serde(default)]
        handle: Option<String>,
        /// The bytes.
        data: Blob,
    },
    /// Imports an uploaded bundle (into `target`, default the bundle's branch); answers `imported`.
    BundleImport {
        /// The upload.
        handle: String,
        /// The branch to write.
        #[serde(default)]
        target: Option<String>,
    },
    /// Drops a transfer's file.
    BundleClose {
        /// The transfer.
        handle: String,
    },
    /// The server pushes `branch` to one of its database's remotes; answers `report`.
    SyncPush {
        /// A remote configured in the server's database (`strata remote add` on its data folder).
        remote: String,
        /// The branch.
        branch: String,
    },
    /// The server pulls `branch` from a remote (`strict`: conflicts fail, nothing written).
    SyncPull {
        /// The remote.
        remote: String,
        /// The branch.
        branch: String,
        /// Strict merge instead of last writer wins.
        #[serde(default)]
        strict: bool,
    },
    /// The server fetches `branch` into its mirror without merging.
    SyncFetch {
        /// The remote.
        remote: String,
        /// The branch.
        branch: String,
    },
    /// Where `branch` stands against a remote.
    SyncStatus {
        /// The remote.
        remote: String,
        /// The branch.
        branch: String,
    },
    /// The names of the remotes configured in the server's database.
    SyncRemotes,
    /// Deletes `branch` from a remote (`strata push --delete`); answers `report`
    /// (`DeleteReport`).
    SyncPushDelete {
        /// The remote.
        remote: String,
        /// The branch on the remote.
        branch: String,
    },
    /// Push, pull, fetch or status with the options the short commands above lack (`ours`,
    /// conflict branches, upstreams); answers `report`.
    SyncWith {
        /// What to run.
        op: SyncOp,
        /// The remote.
        remote: String,
        /// The branch.
        branch: String,
        /// For pull: how conflicts resolve (default last writer wins).
        #[serde(default)]
        strategy: Option<MergeStrategy>,
        /// For a strict pull: save conflicts on this new branch.
        #[serde(default)]
        conflict_branch: Option<String>,
        /// For push: make `remote` the branch's upstream once pushed (`push -u`).
        #[serde(default)]
        set_upstream: bool,
    },
    /// The server database's remotes, secret option values replaced by `***`, and upstreams:
    /// `report` `{"remotes": [RemoteConfig], "upstreams": [[branch, remote]]}`.
    RemoteList,
    /// Adds a remote to the server's database (a folder URL names the server's file system).
    /// Administrative. Answers `report` (the RemoteConfig, secrets redacted).
    RemoteAdd {
        /// Its name.
        name: String,
        /// Its URL.
        url: String,
        /// Backend options (`token`, `endpoint`...).
        #[serde(default)]
        options: std::collections::BTreeMap<String, String>,
    },
    /// Changes a remote's URL. Administrative. Answers `report` (RemoteConfig).
    RemoteSetUrl {
        /// The remote.
        name: String,
        /// The new URL.
        url: String,
    },
    /// Renames a remote (its mirrors and upstreams follow). Administrative. Answers `report`.
    RemoteRename {
        /// The current name.
        old: String,
        /// The new name.
        new: String,
    },
    /// Removes a remote, its mirror branches and the upstreams naming it (the remote's storage is
    /// untouched). Administrative. Answers `report` `{"remote": RemoteConfig, "mirrors": n}`.
    RemoteRemove {
        /// The remote.
        name: String,
    },
    /// The branches a remote holds: `report` `[RemoteBranch]`.
    RemoteBranches {
        /// The remote.
        name: String,
    },
    /// Deletes a remote's unreferenced blobs older than `grace_secs`. Administrative.
    RemoteGc {
        /// The remote.
        name: String,
        /// Keep younger unreferenced blobs.
        grace_secs: u64,
    },
    /// Rewrites a remote branch's deltas into fewer blobs. Administrative.
    RemoteCompact {
        /// The remote.
        name: String,
        /// The branch.
        branch: String,
        /// Squash versions before this one.
        #[serde(default)]
        squash_before: Option<u64>,
    },
}

/// The operation of [`Command::SyncWith`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum SyncOp {
    Push,
    Pull,
    Fetch,
    Status,
}

/// Capability (in [`Welcome::capabilities`]) of a server that serves the administrative and
/// paging commands (`config_*`, `remote_*`, `sync_with`, `sync_push_delete`, `contains`,
/// `list_page`, `changes`, merge's `conflict_branch`). A client checks it before sending them, so
/// an older server is never sent a command it would not decode.
pub const CAP_ADMIN: &str = "admin";

impl Command {
    /// The command's name in logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ping => "ping",
            Command::Scoped { op, .. } | Command::InTx { op, .. } => match op {
                Op::KvPut { .. } => "kv_put",
                Op::KvGet { .. } => "kv_get",
                Op::KvDelete { .. } => "kv_delete",
                Op::KvList { .. } => "kv_list",
                Op::JsonPut { .. } => "json_put",
                Op::JsonGet { .. } => "json_get",
                Op::JsonDelete { .. } => "json_delete",
                Op::JsonList { .. } => "json_list",
                Op::JsonGetPath { .. } => "json_get_path",
                Op::JsonSetPath { .. } => "json_set_path",
                Op::EventAppend { .. } => "event_append",
                Op::EventRange { .. } => "event_range",
                Op::EventByType { .. } => "event_by_type",
                Op::EventLen => "event_len",
                Op::StateSet { .. } => "state_set",
                Op::StateGet { .. } => "state_get",
                Op::StateInit { .. } => "state_init",
                Op::StateCas { .. } => "state_cas",
                Op::StateDelete { .. } => "state_delete",
            },
            Command::Begin { .. } => "begin",
            Command::SetMessage { .. } => "set_message",
            Command::SetAuthor { .. } => "set_author",
            Command::Commit => "commit",
            Command::Rollback => "rollback",
            Command::CreateBranch { .. } => "create_branch",
            Command::ForkBranch { .. } => "fork_branch",
            Command::DeleteBranch { .. } => "delete_branch",
            Command::ListBranches { .. } => "list_branches",
            Command::BranchInfo { .. } => "branch_info",
            Command::BranchExists { .. } => "branch_exists",
            Command::Log { .. } => "log",
            Command::History { .. } => "history",
            Command::GetAt { .. } => "get_at",
            Command::ListSpaces { .. } => "list_spaces",
            Command::Diff { .. } => "diff",
            Command::Merge { .. } => "merge",
            Command::BundleExport { .. } => "bundle_export",
            Command::BundleRead { .. } => "bundle_read",
            Command::BundleUpload { .. } => "bundle_upload",
            Command::BundleImport { .. } => "bundle_import",
            Command::BundleClose { .. } => "bundle_close",
            Command::SyncPush { .. } => "sync_push",
            Command::SyncPull { .. } => "sync_pull",
            Command::SyncFetch { .. } => "sync_fetch",
            Command::SyncStatus { .. } => "sync_status",
            Command::SyncRemotes => "sync_remotes",
            Command::Contains { .. } => "contains",
            Command::ListPage { .. } => "list_page",
            Command::Changes { .. } => "changes",
            Command::ConfigGet { .. } => "config_get",
            Command::ConfigSet { .. } => "config_set",
            Command::ConfigList => "config_list",
            Command::SyncPushDelete { .. } => "sync_push_delete",
            Command::SyncWith { .. } => "sync_with",
            Command::RemoteList => "remote_list",
            Command::RemoteAdd { .. } => "remote_add",
            Command::RemoteSetUrl { .. } => "remote_set_url",
            Command::RemoteRename { .. } => "remote_rename",
            Command::RemoteRemove { .. } => "remote_remove",
            Command::RemoteBranches { .. } => "remote_branches",
            Command::RemoteGc { .. } => "remote_gc",
            Command::RemoteCompact { .. } => "remote_compact",
        }
    }

    /// Whether the command (outside a transaction) changes the database. A read may be retried on a
    /// new connection when the old one broke; a write never is.
    pub fn writes(&self) -> bool {
        match self {
            Command::Scoped { op, .. } | Command::InTx { op, .. } => op.writes(),
            Command::Ping
            | Command::ListBranches { .. }
            | Command::BranchInfo { .. }
            | Command::BranchExists { .. }
            | Command::Log { .. }
            | Command::History { .. }
            | Command::GetAt { .. }
            | Command::ListSpaces { .. }
            | Command::Diff { .. }
            | Command::BundleRead { .. }
            | Command::SyncStatus { .. }
            | Command::SyncRemotes
            | Command::Contains { .. }
            | Command::ListPage { .. }
            | Command::Changes { .. }
            | Command::ConfigGet { .. }
            | Command::ConfigList
            | Command::RemoteList
            | Command::RemoteBranches { .. } => false,
            Command::SyncWith { op, .. } => *op != SyncOp::Status,
            _ => true,
        }
    }

    /// Whether the command belongs to an open transaction.
    pub fn in_session(&self) -> bool {
        matches!(
            self,
            Command::InTx { .. }
                | Command::SetMessage { .. }
                | Command::SetAuthor { .. }
                | Command::Commit
                | Command::Rollback
        )
    }
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Output {
    Unit,
    Bool(bool),
    /// A value that is present (an absent one is `missing`).
    Value(Value),
    Missing,
    /// A new version, or `None` when nothing was written.
    Version(Option<u64>),
    Count(u64),
    Entries(Vec<(String, Value)>),
    Events(Vec<Event>),
    Branch(BranchInfo),
    Branches(Vec<BranchInfo>),
    Commits(Vec<CommitInfo>),
    /// Entries whose value is a stored nil carry `"null": true`, so that a deletion (nil without
    /// it) stays distinct (see [`wire_history`]).
    History(#[serde(with = "wire_history")] Vec<HistoryEntry>),
    /// Read back with [`normalize_diff`]: a side's presence follows from its list.
    Diff(#[serde(deserialize_with = "wire_diff")] BranchDiff),
    Merge(MergeReport),
    Names(Vec<String>),
    /// A transaction opened: the version it will commit as.
    Begun {
        branch: String,
        version: u64,
    },
    /// A bundle held by the server for this connection.
    Transfer {
        handle: String,
        size: u64,
        #[serde(default)]
        manifest: Option<BundleManifest>,
    },
    Chunk(Blob),
    Imported(ImportReport),
    /// A sync report (push, pull, fetch, status) as a map with the report's field names.
    Report(Value),
    /// One page of a listing, read at `version`; `next` is the key to pass as `after` for the next
    /// page (nil: the listing is done).
    Page {
        version: u64,
        entries: Vec<(String, Value)>,
        #[serde(default)]
        next: Option<String>,
    },
    /// Change sets, oldest first (empty: none after the version asked).
    Changes(Vec<ChangeSet>),
}

/// Bytes written as one MessagePack `bin` (not an array of numbers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Blob, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// The body of every reply (and of the welcome frame).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply<T> {
    /// Success.
    Ok(T),
    /// Failure; nothing was written unless the error says otherwise.
    Err(WireError),
}

/// Why a request failed. `code` is stable; `message` is for people.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What went wrong and what to do.
    pub message: String,
    /// For `merge_conflicts`: the conflicting keys (each side that is a stored nil is named in
    /// the entry's `nulls`, see [`wire_conflicts`]).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "wire_conflicts"
    )]
    pub conflicts: Vec<MergeConflict>,
}

impl WireError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> WireError {
        WireError {
            code,
            message: message.into(),
            conflicts: Vec::new(),
        }
    }
}

/// Stable error codes. A client that meets a code it does not know treats it as `internal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ErrorCode {
    /// No key, or a key the server does not know (the connection is closed).
    Unauthorized,
    /// The key may not do this on this branch; nothing was written.
    Forbidden,
    /// A frame over the cap; its body was skipped.
    TooLarge,
    /// Bytes that are not a frame or body of this protocol (the connection is closed).
    Malformed,
    /// The client's protocol version is not served.
    UnsupportedProtocol,
    /// The server holds its maximum of connections.
    TooManyConnections,
    /// The server is shutting down.
    ShuttingDown,
    /// The transaction was rolled back (idle timeout, lifetime cap, or the server stopped).
    SessionExpired,
    /// A transaction command with no transaction open.
    NoTransaction,
    /// `begin` while a transaction is open on this connection.
    TransactionOpen,
    BranchNotFound,
    BranchExists,
    VersionNotFound,
    /// Another writer held the database lock past the timeout; retry.
    Conflict,
    HeadMoved,
    MergeConflicts,
    InvalidName,
    InvalidOperation,
    PastVersion,
    Corrupt,
    /// A storage (SQLite or file) error on the server.
    Storage,
    /// A push lost to a newer remote version: pull, then push.
    PushRejected,
    /// No such remote, or no such branch on it.
    NotFound,
    /// The remote's history does not continue the one this database synced with.
    Diverged,
    /// A remote failed (network, permissions, missing bucket).
    Remote,
    /// A remote's name, URL or options are not valid (fix them; retrying will not help).
    InvalidConfig,
    /// The remote's location holds no Strata remote.
    NotARemote,
    /// Anything else.
    #[serde(other)]
    Internal,
}

/// `Option<Value>` as an array of zero or one value (MessagePack's nil would not tell a stored null
/// from an absent value).
pub mod opt_value {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use strata_engine::Value;

    /// Serializes.
    pub fn serialize<S: Serializer>(v: &Option<Value>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => [v].serialize(s),
            None => <[&Value; 0]>::serialize(&[], s),
        }
    }

    /// Deserializes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        let v: Vec<Value> = Vec::deserialize(d)?;
        if v.len() > 1 {
            return Err(serde::de::Error::custom(
                "an optional value is an array of at most one value",
            ));
        }
        Ok(v.into_iter().next())
    }
}

/// `HistoryEntry` lists on the wire: the engine's fields plus `"null": true` on an entry whose value
/// is a stored nil. A reader without the field (an older peer) reads nil as a deletion, as before;
/// an older reader ignores the field.
pub mod wire_history {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use strata_engine::{HistoryEntry, Value};

    #[derive(Serialize, Deserialize)]
    struct Item {
        version: u64,
        value: Option<Value>,
        timestamp_micros: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        null: bool,
    }

    /// Serializes.
    pub fn serialize<S: Serializer>(v: &[HistoryEntry], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|h| Item {
            version: h.version,
            null: matches!(h.value, Some(Value::Null)),
            value: h.value.clone(),
            timestamp_micros: h.timestamp_micros,
        }))
    }

    /// Deserializes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HistoryEntry>, D::Error> {
        Ok(Vec::<Item>::deserialize(d)?
            .into_iter()
            .map(|i| HistoryEntry {
                version: i.version,
                value: match i.value {
                    None if i.null => Some(Value::Null),
                    v => v,
                },
                timestamp_micros: i.timestamp_micros,
            })
            .collect())
    }
}

/// Reads a `BranchDiff` and restores what nil hides: in `added` side A is absent and B present, in
/// `removed` the reverse, in `modified` both are present, so a nil on a present side is a stored
/// nil. The encoding is the engine's struct, unchanged.
pub fn wire_diff<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BranchDiff, D::Error> {
    let mut diff = BranchDiff::deserialize(d)?;
    normalize_diff(&mut diff);
    Ok(diff)
}

/// See [`wire_diff`].
pub fn normalize_diff(diff: &mut BranchDiff) {
    let present = |v: &mut Option<Value>| {
        if v.is_none() {
            *v = Some(Value::Null);
        }
    };
    for s in &mut diff.spaces {
        for e in &mut s.added {
            e.a = None;
            present(&mut e.b);
        }
        for e in &mut s.removed {
            present(&mut e.a);
            e.b = None;
        }
        for e in &mut s.modified {
            present(&mut e.a);
            present(&mut e.b);
        }
    }
}

/// `MergeConflict` lists on the wire: the engine's fields plus `"nulls"`, the sides (`ancestor`,
/// `source`, `target`) whose value is a stored nil rather than absent. Older readers ignore it;
/// from an older writer every nil reads as absent, as before.
pub mod wire_conflicts {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use strata_engine::{Kind, MergeConflict, Value};

    #[derive(Serialize, Deserialize)]
    struct Item {
        space: String,
        kind: Kind,
        key: String,
        ancestor: Option<Value>,
        source: Option<Value>,
        target: Option<Value>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        nulls: Vec<String>,
    }

    /// Serializes.
    pub fn serialize<S: Serializer>(v: &[MergeConflict], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|c| {
            let mut nulls = Vec::new();
            for (name, side) in [
                ("ancestor", &c.ancestor),
                ("source", &c.source),
                ("target", &c.target),
            ] {
                if matches!(side, Some(Value::Null)) {
                    nulls.push(name.to_string());
                }
            }
            Item {
                space: c.space.clone(),
                kind: c.kind,
                key: c.key.clone(),
                ancestor: c.ancestor.clone(),
                source: c.source.clone(),
                target: c.target.clone(),
                nulls,
            }
        }))
    }

    /// Deserializes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<MergeConflict>, D::Error> {
        Ok(Vec::<Item>::deserialize(d)?
            .into_iter()
            .map(|i| {
                let side = |v: Option<Value>, name: &str| match v {
                    None if i.nulls.iter().any(|n| n == name) => Some(Value::Null),
                    v => v,
                };
                MergeConflict {
                    ancestor: side(i.ancestor, "ancestor"),
                    source: side(i.source, "source"),
                    target: side(i.target, "target"),
                    space: i.space,
                    kind: i.kind,
                    key: i.key,
                }
            })
            .collect())
    }
}

/// Encodes a body as a MessagePack map with named fields.
pub fn to_body<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).expect("wire types always serialize")
}

/// Appends a frame holding `msg` to `out`, encoding the body in place (no body buffer of its own).
pub fn encode_msg_into<T: Serialize>(out: &mut Vec<u8>, kind: crate::FrameKind, id: u64, msg: &T) {
    let start = out.len();
    crate::frame::encode_into(out, kind, id, &[]);
    rmp_serde::encode::write_named(out, msg).expect("wire types always serialize");
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Decodes a body; a failure is a `malformed` error naming what could not be read.
pub fn from_body<T: serde::de::DeserializeOwned>(what: &str, b: &[u8]) -> Result<T, WireError> {
    rmp_serde::from_slice(b).map_err(|e| {
        WireError::new(
            ErrorCode::Malformed,
            format!("cannot decode the {what} body: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Encoding in place makes the same bytes as encoding the body first, after what `out`
        /// already held.
        #[test]
        fn in_place_encoding_matches_encode(key in ".{0,40}", n in any::<i64>(), id in any::<u64>(), held in proptest::collection::vec(any::<u8>(), 0..20)) {
            let reply: Reply<Output> = Reply::Ok(Output::Value(Value::Int(n)));
            let err: Reply<Output> = Reply::Err(WireError::new(ErrorCode::Malformed, key));
            for msg in [reply, err] {
                let mut out = held.clone();
                encode_msg_into(&mut out, crate::FrameKind::Reply, id, &msg);
                let mut want = held.clone();
                want.extend(crate::encode(crate::FrameKind::Reply, id, &to_body(&msg)));
                prop_assert_eq!(out, want);
            }
        }
    }
}
