//! # strata-engine
//!
//! An embedded database for agent memory with git-style branches, on SQLite.
//!
//! - **Primitives**, organised in spaces within a branch: KV, JSON documents (with JSON Pointer paths),
//!   an append-only event log, and state cells with compare-and-swap. Values are [`Value`]s.
//! - **Transactions** ([`Strata::begin`]) commit several operations atomically as one new branch
//!   version (1, 2, 3, … with no gaps), with read-your-writes. Writers are serialised across handles and
//!   processes by SQLite's write lock.
//! - **Branches**: create, copy-on-write fork (O(1), no rows copied), delete, list.
//! - **Diff** and **three-way merge** ([`MergeStrategy::LastWriterWins`] or [`MergeStrategy::Strict`]).
//! - **Change log**: [`Strata::changes_since`] streams per-version [`ChangeSet`]s through a version
//!   index; [`Strata::apply_changes`] replays them atomically.
//! - **Bundles**: `.branchbundle.tar.zst` export, verify and import (see `docs/format.md`).
//!
//! The engine does no network I/O and knows nothing of remotes.
//!
//! ## Layout
//! - `value`: the [`Value`] type and its MessagePack / JSON forms.
//! - `types`: keys, change sets, branch info, diff and merge types.
//! - `store`: the SQLite schema, lineage views and paged scans.
//! - `db`: [`Strata`], [`Transaction`], [`Scope`] and the primitives.
//! - `changes`: the change log and replay.
//! - `merge`: diff, merge base and three-way merge.
//! - `replication`: the atomic, self-checking operations sync uses ([`Strata::replication`]).
//! - `codec` and `bundle`: the record framing and the bundle format.
//!
//! ```
//! use strata_engine::{Strata, Rev, MergeStrategy};
//! let db = Strata::open_temp()?;
//! db.main().kv_put("config", serde_json::json!({"model": "gpt-4"}))?;
//! db.fork_branch("main", "experiment")?;
//! db.on("experiment").kv_put("task:1", "done")?;
//! let diff = db.diff(&Rev::head("main"), &Rev::head("experiment"))?;
//! assert_eq!(diff.counts(), (1, 0, 0));
//! db.merge(&Rev::head("experiment"), "main", MergeStrategy::LastWriterWins)?;
//! assert_eq!(db.main().kv_get("task:1")?, Some("done".into()));
//! # Ok::<(), strata_engine::Error>(())
//! ```

#![warn(missing_docs, missing_debug_implementations)]

pub mod bundle;
mod changes;
pub mod codec;
mod db;
mod error;
mod jsonpath;
mod merge;
pub mod names;
pub mod raw;
mod replication;
mod store;
mod types;
mod value;
mod value_cache;

pub use changes::{ChangeIter, SnapshotIter, CHANGE_PAGE, CHANGE_PAGE_BYTES};
pub use db::{
    discover, is_database, Event, ReadSnapshot, Scope, Strata, Transaction, WriteGroup, DB_FILE,
    DEFAULT_DIR, DEFAULT_SPACE,
};
pub use error::{Error, Result};
pub use raw::RawChangeSet;
pub use replication::{FastForward, Note, ReplicaMerge, Replication, META_BRANCH};
pub use store::{Durability, Options};
pub use types::{
    ApplyReport, BranchDiff, BranchInfo, ChangeSet, CommitInfo, CommitMeta, DiffEntry, EntryKey,
    HistoryEntry, Kind, MergeConflict, MergeReport, MergeStrategy, Rev, SpaceDiff,
};
pub use value::Value;
pub use value_cache::CacheStats;

#[doc(hidden)]
pub use merge::force_full_scan_on_this_thread;
