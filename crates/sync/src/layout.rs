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
/// The cursor document format this build writes and reads.
pub const CURSOR_FORMAT: u32 = 1;

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
    /// The latest snapshot, if any: the full state at its `to` version.
    pub snapshot: Option<BlobRef>,
    /// The deltas after the snapshot (or from version 0), contiguous and in order.
    pub deltas: Vec<BlobRef>,
    /// A deleted branch's tombstone (`push --delete`): version 0, no blobs. Readers treat the
    /// branch as absent; a push of the branch replaces the tombstone by compare-and-swap. Written
    /// only when true, so other cursors keep their exact bytes (a reader that predates the field
    /// sees an empty branch).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl CursorDoc {
    /// Parses and checks a cursor: format, contiguity, and that the chain ends at `version`.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<CursorDoc> {
        let doc: CursorDoc = serde_json::from_slice(bytes)
            .map_err(|e| SyncError::corrupt(format!("cursor {name}"), e.to_string()))?;
        if doc.format != CURSOR_FORMAT {
            return Err(SyncError::corrupt(
                format!("cursor {name}"),
                format!(
                    "unsupported cursor format {} (this build reads {CURSOR_FORMAT})",
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
        self.snapshot.iter().chain(self.deltas.iter())
    }

    /// Total bytes of the deltas after the snapshot.
    pub fn delta_bytes(&self) -> u64 {
        self.deltas.iter().map(|d| d.bytes).sum()
    }
}
