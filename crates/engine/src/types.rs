//! Public data types: keys, change sets, branch info, diffs and merge results.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::value::Value;

/// The primitive a stored entry belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Key-value pairs.
    Kv = 0,
    /// JSON documents.
    Json = 1,
    /// The append-only event log.
    Event = 2,
    /// State cells.
    State = 3,
}

impl Kind {
    /// All kinds, in storage order.
    pub const ALL: [Kind; 4] = [Kind::Kv, Kind::Json, Kind::Event, Kind::State];

    /// The kind's stable code, as stored on disk and in bundles.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind for a stored code.
    pub fn from_code(code: u8) -> Result<Kind> {
        match code {
            0 => Ok(Kind::Kv),
            1 => Ok(Kind::Json),
            2 => Ok(Kind::Event),
            3 => Ok(Kind::State),
            other => Err(Error::corrupt(
                "entry",
                format!("unknown primitive code {other}"),
            )),
        }
    }

    /// The kind's short name: kv, json, event, state.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Kv => "kv",
            Kind::Json => "json",
            Kind::Event => "event",
            Kind::State => "state",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Kind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Kind> {
        match s {
            "kv" => Ok(Kind::Kv),
            "json" => Ok(Kind::Json),
            "event" => Ok(Kind::Event),
            "state" => Ok(Kind::State),
            _ => Err(Error::invalid(
                "primitive",
                s,
                "expected kv, json, event or state",
            )),
        }
    }
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Kind, D::Error> {
        let code = u8::deserialize(d)?;
        Kind::from_code(code).map_err(serde::de::Error::custom)
    }
}

/// The full address of an entry inside a branch: space, primitive and key.
///
/// Events are keyed by their sequence number written as 20 zero-padded decimal digits, so that key order
/// is sequence order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntryKey {
    /// The space, e.g. `default`.
    pub space: String,
    /// The primitive.
    pub kind: Kind,
    /// The key within the space and primitive.
    pub key: String,
}

impl EntryKey {
    /// Builds a key.
    pub fn new(space: impl Into<String>, kind: Kind, key: impl Into<String>) -> EntryKey {
        EntryKey {
            space: space.into(),
            kind,
            key: key.into(),
        }
    }
}

impl std::fmt::Display for EntryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.space, self.kind, self.key)
    }
}

/// The changes of one committed version: the replication unit (seed 004's `BranchlogPayload`).
///
/// A very large version is split across several consecutive `ChangeSet`s with the same `version`; a
/// reader must treat consecutive sets with one version as one commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeSet {
    /// The branch version this commit produced.
    pub version: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub timestamp_micros: u64,
    /// Entries written, with their full keys and new values.
    pub puts: Vec<(EntryKey, Value)>,
    /// Entries deleted.
    pub deletes: Vec<EntryKey>,
    /// How the commit was made, its message and author (`None`: unknown, as in streams written before
    /// commit metadata travelled; a replay records such a version as kind `apply`). Encoded as a fifth
    /// array field only when present, so a set without it encodes as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<CommitMeta>,
}

/// What a commit records besides its changes: carried by change sets, so that replicas keep them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitMeta {
    /// `commit`, `merge`, `apply`, `import` or `snapshot`.
    pub kind: String,
    /// The commit message ("" when none was given).
    pub message: String,
    /// Who made it, if known (`--author`, `STRATA_AUTHOR`, or the database's `user.name`).
    pub author: Option<String>,
}

impl ChangeSet {
    /// Number of puts plus deletes.
    pub fn len(&self) -> usize {
        self.puts.len() + self.deletes.len()
    }

    /// Whether the set changes nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What `apply_changes` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Versions created on the target branch.
    pub versions: u64,
    /// Puts plus deletes applied.
    pub entries: u64,
    /// The branch head afterwards.
    pub head: u64,
}

/// A branch and its metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchInfo {
    /// The branch name.
    pub name: String,
    /// The latest committed version (0 for an empty new branch).
    pub head: u64,
    /// The branch this one was forked from, if any (its name, also when it has since been deleted).
    pub parent: Option<String>,
    /// Whether the parent branch has been deleted since the fork.
    pub parent_deleted: bool,
    /// The parent's version at the fork.
    pub fork_version: Option<u64>,
    /// Creation time, microseconds since the Unix epoch.
    pub created_micros: u64,
    /// Internal branches (names starting with `_`) are created only by the library.
    pub internal: bool,
}

/// One committed version of a branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    /// The version number.
    pub version: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub timestamp_micros: u64,
    /// How the version was made: `commit`, `merge`, `apply` or `import`.
    pub kind: String,
    /// A short description (for merges, the source).
    pub message: String,
    /// Who made it, if known.
    pub author: Option<String>,
    /// Entries changed in this version.
    pub entries: u64,
}

/// One past value of a key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The version that wrote it.
    pub version: u64,
    /// The value, or `None` when that version deleted the key.
    pub value: Option<Value>,
    /// Commit time, microseconds since the Unix epoch.
    pub timestamp_micros: u64,
}

/// A point in history: a branch at its head, or at a given version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rev {
    /// The branch.
    pub branch: String,
    /// The version, or `None` for the head.
    pub version: Option<u64>,
}

impl Rev {
    /// The head of a branch.
    pub fn head(branch: impl Into<String>) -> Rev {
        Rev {
            branch: branch.into(),
            version: None,
        }
    }

    /// A branch at a version.
    pub fn at(branch: impl Into<String>, version: u64) -> Rev {
        Rev {
            branch: branch.into(),
            version: Some(version),
        }
    }

    /// Parses `branch` or `branch@version`.
    pub fn parse(s: &str) -> Result<Rev> {
        if let Some((b, v)) = s.rsplit_once('@') {
            if !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit()) {
                let version = v
                    .parse()
                    .map_err(|_| Error::invalid("revision", s, "version number is too large"))?;
                return Ok(Rev::at(b, version));
            }
        }
        Ok(Rev::head(s))
    }
}

impl std::fmt::Display for Rev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}@{}", self.branch, v),
            None => f.write_str(&self.branch),
        }
    }
}

impl From<&str> for Rev {
    fn from(s: &str) -> Rev {
        Rev::head(s)
    }
}

/// One differing entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffEntry {
    /// The primitive.
    pub kind: Kind,
    /// The key.
    pub key: String,
    /// The value on side A (`None` if absent).
    pub a: Option<Value>,
    /// The value on side B (`None` if absent).
    pub b: Option<Value>,
}

/// The differences inside one space.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpaceDiff {
    /// The space.
    pub space: String,
    /// In B, not in A.
    pub added: Vec<DiffEntry>,
    /// In A, not in B.
    pub removed: Vec<DiffEntry>,
    /// In both, with different values.
    pub modified: Vec<DiffEntry>,
}

/// The structured difference between two revisions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BranchDiff {
    /// Per space, in space order; spaces without differences are left out.
    pub spaces: Vec<SpaceDiff>,
}

impl BranchDiff {
    /// Whether the two sides are equal.
    pub fn is_empty(&self) -> bool {
        self.spaces.is_empty()
    }

    /// Counts of (added, removed, modified) over all spaces.
    pub fn counts(&self) -> (usize, usize, usize) {
        self.spaces.iter().fold((0, 0, 0), |(a, r, m), s| {
            (a + s.added.len(), r + s.removed.len(), m + s.modified.len())
        })
    }
}

/// How `merge` resolves keys changed on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MergeStrategy {
    /// The source's value wins on conflicting keys ("theirs").
    LastWriterWins,
    /// Any conflicting key fails the merge with the full conflict list; nothing is written.
    Strict,
    /// The target's value wins on conflicting keys ("ours"); the source's other changes apply.
    Ours,
}

/// A key changed differently on both sides of a merge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergeConflict {
    /// The space.
    pub space: String,
    /// The primitive.
    pub kind: Kind,
    /// The key.
    pub key: String,
    /// The value at the common ancestor.
    pub ancestor: Option<Value>,
    /// The source's value.
    pub source: Option<Value>,
    /// The target's value.
    pub target: Option<Value>,
}

/// What a merge did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergeReport {
    /// The new target version, or `None` when nothing needed to change.
    pub version: Option<u64>,
    /// The common ancestor used, as `branch@version`, or `None` when the branches share no history.
    pub base: Option<String>,
    /// Entries written or deleted in the target.
    pub applied: u64,
    /// Conflicting keys resolved in the source's favour (LastWriterWins only).
    pub conflicts_resolved: u64,
    /// Target events moved after the source's events because both sides appended at the same sequence.
    pub events_renumbered: u64,
}
