//! Bundles: `.branchbundle.tar.zst` export, verify and import (see docs/format.md).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::db::Strata;
use crate::error::Result;

/// The newest bundle format version this build writes and reads.
pub const BUNDLE_FORMAT_VERSION: u32 = 1;

/// The manifest stored first in every bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleManifest {
    /// Bundle format version.
    pub format_version: u32,
    /// The exported branch.
    pub branch: String,
    /// Versions after this one are included (0 for a whole branch).
    pub from_version: u64,
    /// The last included version.
    pub to_version: u64,
    /// Number of commits (distinct versions) in the branchlog.
    pub version_count: u64,
    /// Number of puts plus deletes.
    pub entry_count: u64,
    /// Number of branchlog records.
    pub record_count: u64,
    /// Byte length of the branchlog.
    pub branchlog_bytes: u64,
    /// SHA-256 of the branchlog, lowercase hex.
    pub branchlog_sha256: String,
    /// Export time, microseconds since the Unix epoch.
    pub created_micros: u64,
}

/// What an import did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// The branch written.
    pub branch: String,
    /// Whether the branch was created by the import.
    pub created: bool,
    /// Versions created.
    pub versions: u64,
    /// Entries applied.
    pub entries: u64,
    /// The branch head afterwards.
    pub head: u64,
}

impl Strata {
    /// Exports `branch`'s versions in `(from_version, to_version]` (default: the whole branch up to its
    /// head) to a bundle file at `path`, streaming.
    pub fn export_bundle(&self, branch: &str, range: Option<(u64, u64)>, path: &Path) -> Result<BundleManifest> {
        let _ = (branch, range, path);
        todo!("bundle export")
    }

    /// Imports a bundle into `target` (default: the bundle's branch name). The branch is created if it
    /// does not exist; otherwise the bundle's first version must follow its head. Every checksum is
    /// verified before anything is written; on any error the database is unchanged.
    pub fn import_bundle(&self, path: &Path, target: Option<&str>) -> Result<ImportReport> {
        let _ = (path, target);
        todo!("bundle import")
    }
}

/// Reads a whole bundle and checks every checksum without touching any database.
pub fn verify_bundle(path: &Path) -> Result<BundleManifest> {
    let _ = path;
    todo!("bundle verify")
}
