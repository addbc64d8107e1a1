//! Where things live on a remote, and the cursor document.
//!
//! ```text
//! strata-remote.json                                   marker: {"format":"strata-remote","version":1}
//! branches/<enc(branch)>/deltas/<from>-<to>-<id>.delta immutable delta blobs
//! branches/<enc(branch)>/snapshots/<version>-<id>.snap immutable snapshot blobs
//! cursor branches/<enc(branch)>                        the branch cursor (JSON, compare-and-swap)
//! ```
//! `enc` is [`strata_remote::encode_segment`]; versions are 20 zero-padded digits; `id` is random.

use serde::{Deserialize, Serialize};
use strata_remote::{decode_segment, encode_segment, RemotePath};

use crate::error::{Result, SyncError};

/// The marker blob written at a remote's root by the first push.
pub const MARKER: &str = "strata-remote.json";
/// The cursor document format this build writes. Format 1 (written before history sync) is read too:
/// it has the same fields, without `pushes`, `shallow` and `level`.
pub const CURSOR_FORMAT: u32 = 2;

/// The most push summaries a cursor keeps (newest last).
pub const MAX_PUSH_SUMMARIES: usize = 20;

/// The marker's contents.
pub fn marker_bytes() -> Vec<u8> {
    br#"{"format":"strata-remote","version":1}"#.to_vec()
}

/// The cursor name of a branch.
pub fn cursor_name(branch: &str) -> RemotePath {
    RemotePath::parse(&format!("branches/{}", encode_segment(branch)))
        .expect("encoded names are valid paths")
}

/// The branch a cursor name belongs to.
pub fn branch_of_cursor(name: &RemotePath) -> Result<String> {
    let mut segs = name.segments();
    match (segs.next(), segs.next(), segs.next()) {
        (Some("branches"), Some(enc), None) => Ok(decode_segment(enc)?),
        _ => Err(SyncError::corrupt(
            name.as_str(),
            "not a branch cursor name",
        )),
    }
}

/// A fresh delta blob path.
pub fn delta_path(branch: &str, from: u64, to: u64) -> RemotePath {
    RemotePath::parse(&format!(
        "branches/{}/deltas/{from:020}-{to:020}-{}.delta",
        encode_segment(branch),
        uuid::Uuid::new_v4().simple()
    ))
    .expect("valid path")
}

/// A fresh snapshot blob path.
pub fn snapshot_path(branch: &str, version: u64) -> RemotePath {
    RemotePath::parse(&format!(
        "branches/{}/snapshots/{version:020}-{}.snap",
        encode_segment(branch),
        uuid::Uuid::new_v4().simple()
    ))
    .expect("valid path")
}

/// A blob the cursor references, with what is needed to verify it before use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// Its path on the remote.
    pub path: String,
    /// Versions after this one are in the blob (0 for a snapshot).
    pub from: u64,
    /// The last version in the blob.
    pub to: u64,
    /// Puts plus deletes inside.
    pub entries: u64,
    /// The blob's size in bytes (compressed, as stored).
    pub bytes: u64,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: String,
    /// The database that wrote it (lets a re-run push recognise its own upload).
    pub origin: String,
    /// The version of the pushing database's branch that this blob brings the remote to (a re-run
    /// push uses it to record which local version the remote now equals).
    #[serde(default)]
    pub source_version: u64,
    /// Compaction level: 0 for a blob one push wrote, `n + 1` for a pack of level-`n` blobs (format 2).
    #[serde(default)]
    pub level: u32,
}

/// What one push did, kept in the cursor so that a hub can show recent pushes without opening a blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSummary {
    /// When the push published, microseconds since the Unix epoch.
    pub time_micros: u64,
    /// The author of the newest version pushed, if known.
    pub author: Option<String>,
    /// The message of the newest version pushed ("" when none).
    pub message: Option<String>,
    /// The remote version before the push.
    pub from: u64,
    /// The remote version after it.
    pub to: u64,
    /// Puts plus deletes uploaded.
    pub entries: u64,
}

/// A branch's cursor: the remote version and the exact blobs that make it up, so a pull never lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorDoc {
    /// Always [`CURSOR_FORMAT`].
    pub format: u32,
    /// The branch name.
    pub branch: String,
    /// The remote version of the branch.
    pub version: u64,
    /// When the cursor was last written, microseconds since the Unix epoch.
    pub updated_micros: u64,
    /// Where history starts, if not at version 0: the full state at its `to` version. Only an explicit
    /// `remote compact --squash-before` writes one now (format 1 wrote one every 32 pushes).
    pub snapshot: Option<BlobRef>,
    /// The deltas after the snapshot (or from version 0), contiguous and in order: every version.
    pub deltas: Vec<BlobRef>,
    /// A state snapshot at some version inside the chain, for shallow clones (`clone --depth`); not
    /// part of the chain. Written by `remote compact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shallow: Option<BlobRef>,
    /// The latest pushes, newest last (at most [`MAX_PUSH_SUMMARIES`]).
    #[serde(default)]
    pub pushes: Vec<PushSummary>,
}

impl CursorDoc {
    /// Parses and checks a cursor: format, contiguity, and that the chain ends at `version`.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<CursorDoc> {
        let doc: CursorDoc = serde_json::from_slice(bytes)
            .map_err(|e| SyncError::corrupt(format!("cursor {name}"), e.to_string()))?;
        if doc.format != 1 && doc.format != CURSOR_FORMAT {
            return Err(SyncError::corrupt(
                format!("cursor {name}"),
                format!(
                    "unsupported cursor format {} (this build reads 1 to {CURSOR_FORMAT}; upgrade strata)",
                    doc.format
                ),
            ));
        }
        let mut at = doc.snapshot.as_ref().map(|s| s.to).unwrap_or(0);
        for d in &doc.deltas {
            if d.from != at || d.to <= d.from {
                return Err(SyncError::corrupt(
                    format!("cursor {name}"),
                    format!(
                        "delta chain broken at {} (expected to start at version {at})",
                        d.path
                    ),
                ));
            }
            at = d.to;
        }
        if let Some(s) = &doc.shallow {
            let base = doc.snapshot.as_ref().map(|s| s.to).unwrap_or(0);
            if s.to < base || s.to > doc.version {
                return Err(SyncError::corrupt(
                    format!("cursor {name}"),
                    format!(
                        "shallow snapshot {} at version {} is outside the history ({base}, {}]",
                        s.path, s.to, doc.version
                    ),
                ));
            }
        }
        if at != doc.version {
            return Err(SyncError::corrupt(
                format!("cursor {name}"),
                format!(
                    "blobs end at version {at} but the cursor says {}",
                    doc.version
                ),
            ));
        }
        Ok(doc)
    }

    /// Encodes to JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("cursor serializes")
    }

    /// Every blob this cursor references.
    pub fn blobs(&self) -> impl Iterator<Item = &BlobRef> {
        self.snapshot
            .iter()
            .chain(self.deltas.iter())
            .chain(self.shallow.iter())
    }

    /// Records a push's summary, keeping the newest [`MAX_PUSH_SUMMARIES`].
    pub fn record_push(&mut self, summary: PushSummary) {
        self.pushes.push(summary);
        let extra = self.pushes.len().saturating_sub(MAX_PUSH_SUMMARIES);
        self.pushes.drain(..extra);
    }

    /// Total bytes of the deltas after the snapshot.
    pub fn delta_bytes(&self) -> u64 {
        self.deltas.iter().map(|d| d.bytes).sum()
    }
}
