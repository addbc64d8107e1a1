//! The sync algorithm, written once over `&dyn Remote`.
//!
//! A branch `b` synced with remote `r` has an **origin mirror** `_origin:r:b`: an internal branch
//! holding exactly the remote's state, with the remote's version numbers. A push uploads
//! `diff(mirror, b)` as one new remote version (one delta blob), compare-and-swaps the cursor, then
//! applies the same delta to the mirror and records mirror and branch as equal. A pull fetches the blobs
//! after the mirror's version, verifies them, applies them to the mirror atomically, then three-way
//! merges mirror into branch. Diffs between the two follow only what changed since the last equal
//! point, so sync costs what changed, not what the branch holds.

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use strata_engine::{
    ChangeSet, EntryKey, MergeStrategy, RawChangeSet, Rev, Strata, Value, CHANGE_PAGE,
};
use strata_remote::{ByteStream, CursorToken, Remote, RemoteError, RemoteExt, RemotePath};
use tokio::io::AsyncReadExt;

use crate::blob::{BlobBuilder, BlobReader, HashingWriter, SpooledBlob};
use crate::config::{self, SyncState};
use crate::error::{Result, SyncError};
use crate::layout::{self, BlobRef, CursorDoc};
use crate::progress::Progress;

/// The mirror branch of `branch` on `remote`.
pub fn mirror_name(remote: &str, branch: &str) -> String {
    format!("_origin:{remote}:{branch}")
}

/// Push options.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Write a snapshot when the deltas after the last one reach this many.
    pub snapshot_every: usize,
    /// …or when their bytes pass this much and exceed the last snapshot's size.
    pub snapshot_bytes: u64,
    /// Progress reporting.
    pub progress: Progress,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            snapshot_every: 32,
            snapshot_bytes: 8 << 20,
            progress: Progress::none(),
        }
    }
}

/// Pull options.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// How to merge the remote's changes into the branch.
    pub strategy: MergeStrategy,
    /// With `Strict`, save conflicts to this new branch.
    pub conflict_branch: Option<String>,
    /// Progress reporting.
    pub progress: Progress,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            strategy: MergeStrategy::LastWriterWins,
            conflict_branch: None,
            progress: Progress::none(),
        }
    }
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PushReport {
    /// The branch.
    pub branch: String,
    /// The remote version after the push.
    pub remote_version: u64,
    /// Whether there was nothing to upload.
    pub up_to_date: bool,
    /// Entries uploaded.
    pub entries: u64,
    /// Bytes uploaded (blobs, not counting the cursor).
    pub bytes: u64,
    /// The delta or snapshot blob written.
    pub blob: Option<String>,
    /// A compaction snapshot written after the delta, if any.
    pub snapshot: Option<String>,
}

/// What a fetch did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FetchReport {
    /// The branch.
    pub branch: String,
    /// The remote version now held by the mirror.
    pub remote_version: u64,
    /// Remote versions newly fetched.
    pub versions: u64,
    /// Entries applied to the mirror.
    pub entries: u64,
    /// Blob bytes downloaded.
    pub bytes: u64,
}

/// What a pull did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PullReport {
    /// The fetch part.
    pub fetch: FetchReport,
    /// The new branch version made by the merge, if any.
    pub merged_version: Option<u64>,
    /// Entries the merge changed in the branch.
    pub applied: u64,
    /// Conflicting keys resolved in the remote's favour (last writer wins).
    pub conflicts_resolved: u64,
    /// Whether the branch was created from the remote (nothing local to merge).
    pub created: bool,
}

/// Where a branch stands against a remote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SyncStatus {
    /// The branch.
    pub branch: String,
    /// The remote's version, or `None` if the remote has no such branch.
    pub remote_version: Option<u64>,
    /// The remote version this database's mirror holds.
    pub mirror_version: u64,
    /// Local versions committed since the last sync.
    pub ahead_versions: u64,
    /// Entries a push would upload.
    pub ahead_entries: u64,
    /// Remote versions not yet merged into the branch.
    pub behind_versions: u64,
    /// Entries in those versions.
    pub behind_entries: u64,
    /// When this branch last synced with the remote (microseconds since the epoch), if ever.
    pub last_synced_micros: Option<u64>,
}

/// A branch on a remote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemoteBranch {
    /// Its name.
    pub name: String,
    /// Its remote version.
    pub version: u64,
    /// When its cursor was last written.
    pub updated_micros: u64,
    /// Blobs referenced (snapshot and deltas).
    pub blobs: usize,
}

/// What garbage collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Blobs referenced by some cursor.
    pub referenced: usize,
    /// Unreferenced blobs younger than the grace period, kept.
    pub kept_young: usize,
    /// Blobs deleted.
    pub deleted: usize,
    /// Bytes freed.
    pub bytes_freed: u64,
}

// ----- helpers ------------------------------------------------------------------------------------

async fn read_cursor(
    remote: &dyn Remote,
    branch: &str,
) -> Result<Option<(CursorDoc, CursorToken)>> {
    let name = layout::cursor_name(branch);
    match remote.read_cursor(&name).await? {
        None => Ok(None),
        Some(c) => Ok(Some((CursorDoc::parse(name.as_str(), &c.value)?, c.token))),
    }
}

fn mirror_head(db: &Strata, mirror: &str) -> Result<Option<u64>> {
    match db.branch_info(mirror) {
        Ok(i) => Ok(Some(i.head)),
        Err(strata_engine::Error::BranchNotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is_internal_space(k: &EntryKey) -> bool {
    k.space.starts_with('_')
}

fn file_stream(file: std::fs::File, progress: Progress) -> ByteStream {
    let f = tokio::fs::File::from_std(file);
    Box::pin(futures::stream::unfold(
        (f, progress),
        |(mut f, p)| async move {
            let mut buf = vec![0u8; 1 << 20];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    p.advance(n as u64);
                    Some((Ok(Bytes::from(buf)), (f, p)))
                }
                Err(e) => Some((Err(RemoteError::from(e)), (f, p))),
            }
        },
    ))
}

#[tracing::instrument(level = "debug", skip_all, fields(blob = %path, bytes = blob.bytes))]
async fn upload(
    remote: &dyn Remote,
    path: &RemotePath,
    blob: &SpooledBlob,
    progress: &Progress,
) -> Result<()> {
    let file = blob.file.reopen()?;
    progress.start(&format!("upload {}", path.file_name()), Some(blob.bytes));
    let r = remote
        .put_blob_if_absent(path, file_stream(file, progress.clone()))
        .await;
    progress.finish();
    Ok(r?)
}

/// Downloads a blob to a temporary file, checking its size and SHA-256 against the cursor's record.
#[tracing::instrument(level = "debug", skip_all, fields(blob = %r.path, bytes = r.bytes))]
async fn download(
    remote: &dyn Remote,
    r: &BlobRef,
    progress: &Progress,
) -> Result<tempfile::NamedTempFile> {
    use std::io::Write;
    let path =
        RemotePath::parse(&r.path).map_err(|e| SyncError::corrupt("cursor", e.to_string()))?;
    let mut stream = remote.get_blob(&path).await?;
    let tmp = tempfile::NamedTempFile::new()?;
    let mut w = HashingWriter::new(std::io::BufWriter::new(tmp.reopen()?));
    progress.start(&format!("download {}", path.file_name()), Some(r.bytes));
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        n += chunk.len() as u64;
        if n > r.bytes {
            progress.finish();
            return Err(SyncError::corrupt(
                format!("blob {}", r.path),
                format!("longer than the {} bytes recorded", r.bytes),
            ));
        }
        w.write_all(&chunk)?;
        progress.advance(chunk.len() as u64);
    }
    progress.finish();
    w.flush()?;
    let (sha, len) = w.digest();
    drop(w);
    if len != r.bytes {
        return Err(SyncError::corrupt(
            format!("blob {}", r.path),
            format!("{len} bytes, but the cursor records {}", r.bytes),
        ));
    }
    if sha != r.sha256 {
        return Err(SyncError::corrupt(
            format!("blob {}", r.path),
            format!("SHA-256 {sha} does not match the cursor's {}", r.sha256),
        ));
    }
    Ok(tmp)
}

/// Verifies a downloaded blob completely and checks it is the one the cursor describes.
fn verify_blob(file: &tempfile::NamedTempFile, r: &BlobRef, branch: &str) -> Result<()> {
    let h = BlobReader::verify_frames(file.as_file(), &r.path)?;
    let bad = |d: String| SyncError::corrupt(format!("blob {}", r.path), d);
    if h.branch != branch {
        return Err(bad(format!(
            "belongs to branch {:?}, not {branch:?}",
            h.branch
        )));
    }
    if h.from_version != r.from || h.to_version != r.to || h.entry_count != r.entries {
        return Err(bad(format!(
            "header says versions ({}, {}] with {} entries; the cursor says ({}, {}] with {}",
            h.from_version, h.to_version, h.entry_count, r.from, r.to, r.entries
        )));
    }
    Ok(())
}

fn blob_ref(path: &RemotePath, blob: &SpooledBlob, origin: &str, source_version: u64) -> BlobRef {
    BlobRef {
        path: path.to_string(),
        from: blob.header.from_version,
        to: blob.header.to_version,
        entries: blob.header.entry_count,
        bytes: blob.bytes,
        sha256: blob.sha256.clone(),
        origin: origin.to_string(),
        source_version,
    }
}

/// Streams change sets into a blob builder in chunks of at most `CHANGE_PAGE` entries.
struct Chunker {
    builder: BlobBuilder,
    cur: ChangeSet,
    err: Option<SyncError>,
}

impl Chunker {
    fn new(builder: BlobBuilder, version: u64) -> Chunker {
        Chunker {
            builder,
            cur: ChangeSet {
                version,
                timestamp_micros: now_micros(),
                puts: vec![],
                deletes: vec![],
            },
            err: None,
        }
    }

    fn add(&mut self, k: &EntryKey, v: Option<Value>) -> strata_engine::Result<()> {
        match v {
            Some(v) => self.cur.puts.push((k.clone(), v)),
            None => self.cur.deletes.push(k.clone()),
        }
        if self.cur.len() >= CHANGE_PAGE {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> strata_engine::Result<()> {
        if self.cur.is_empty() {
            return Ok(());
        }
        let cs = ChangeSet {
            puts: std::mem::take(&mut self.cur.puts),
            deletes: std::mem::take(&mut self.cur.deletes),
            ..self.cur.clone()
        };
        if let Err(e) = self.builder.push(&cs) {
            let msg = e.to_string();
            self.err = Some(e);
            return Err(strata_engine::Error::InvalidOperation(msg));
        }
        Ok(())
    }

    fn finish(mut self) -> Result<SpooledBlob> {
        if let Some(e) = self.err.take() {
            return Err(e);
        }
        self.flush().map_err(SyncError::from)?;
        self.builder.finish()
    }
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A snapshot blob of `rev` (without internal spaces) at remote version `version`.
fn build_snapshot(db: &Strata, rev: &Rev, branch: &str, version: u64) -> Result<SpooledBlob> {
    let mut ch = Chunker::new(
        BlobBuilder::new("snapshot", branch, 0, version.max(1))?,
        version.max(1),
    );
    for cs in db.snapshot(rev)? {
        for (k, v) in cs?.puts {
            if !is_internal_space(&k) {
                ch.add(&k, Some(v))?;
            }
        }
    }
    ch.finish()
}

// ----- fetch --------------------------------------------------------------------------------------

/// Brings the mirror of `branch` up to the remote cursor `doc`. Returns what was fetched.
#[tracing::instrument(level = "info", skip_all, fields(remote = remote_name, branch, version = doc.version))]
async fn fetch_into_mirror(
    db: &Strata,
    remote: &dyn Remote,
    remote_name: &str,
    branch: &str,
    doc: &CursorDoc,
    progress: &Progress,
) -> Result<FetchReport> {
    let mirror = mirror_name(remote_name, branch);
    sweep_stale_staging(db)?;
    let m = mirror_head(db, &mirror)?.unwrap_or(0);
    let mut report = FetchReport {
        branch: branch.to_string(),
        remote_version: doc.version,
        versions: 0,
        entries: 0,
        bytes: 0,
    };
    if doc.version == m {
        if m == 0 && mirror_head(db, &mirror)?.is_none() {
            // A branch pushed while empty (version 0): the mirror exists, empty.
            match db.create_internal_branch(&mirror, None) {
                Ok(_) | Err(strata_engine::Error::BranchExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(report);
    }
    if doc.version < m {
        return Err(SyncError::Diverged(format!(
            "remote branch {branch:?} is at version {} but this database already holds version {m} of it \
             (the remote was reset or replaced; remove and re-add the remote to start over)",
            doc.version
        )));
    }
    // Which blobs: everything for an empty mirror; otherwise the deltas from the mirror's version on.
    let snap_to = doc.snapshot.as_ref().map(|s| s.to).unwrap_or(0);
    let (use_snapshot, deltas): (bool, Vec<&BlobRef>) = if m == 0 {
        (doc.snapshot.is_some(), doc.deltas.iter().collect())
    } else if m >= snap_to && doc.deltas.iter().any(|d| d.from == m) || m == snap_to {
        (false, doc.deltas.iter().filter(|d| d.from >= m).collect())
    } else if snap_to > m {
        // Compacted past what we hold: rebuild from the snapshot.
        (true, doc.deltas.iter().collect())
    } else {
        return Err(SyncError::Diverged(format!(
            "remote branch {branch:?} has no blobs continuing from version {m}, which this database holds \
             (the remote was reset or replaced)"
        )));
    };
    let mut files = Vec::new();
    let mut refs: Vec<&BlobRef> = Vec::new();
    if use_snapshot {
        refs.push(doc.snapshot.as_ref().expect("checked"));
    }
    refs.extend(deltas);
    for r in &refs {
        let f = download(remote, r, progress).await?;
        verify_blob(&f, r, branch)?;
        report.bytes += r.bytes;
        files.push(f);
    }
    if mirror_head(db, &mirror)?.is_none() {
        match db.create_internal_branch(&mirror, None) {
            Ok(_) | Err(strata_engine::Error::BranchExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut readers: Vec<BlobReader> = Vec::new();
    for (f, r) in files.iter().zip(&refs) {
        readers.push(BlobReader::open(f.as_file(), &r.path)?);
    }
    // Blobs are applied with their values left encoded: no decode-and-encode round trip per entry.
    if use_snapshot && m > 0 {
        // The mirror holds an old state the remote no longer describes by deltas: load the snapshot
        // into a staging branch and turn the difference into one version at the snapshot's number.
        let staging = format!("_staging:{}", uuid::Uuid::new_v4().simple());
        db.create_internal_branch(&staging, None)?;
        let snap = readers.remove(0);
        let res = (|| -> Result<SpooledBlob> {
            db.apply_raw_changes(&staging, snap.raw())?;
            let mut ch = Chunker::new(BlobBuilder::new("delta", branch, m, snap_to)?, snap_to);
            db.diff_each(
                &Rev::at(&mirror, m),
                &Rev::at(&staging, snap_to),
                |k, _, b| ch.add(k, b),
            )?;
            ch.finish()
        })();
        let _ = db.delete_branch(&staging);
        let reset = res?;
        let reset_reader = BlobReader::open(reset.file.as_file(), "snapshot reset")?;
        let chain = std::iter::once(reset_reader)
            .chain(readers)
            .flat_map(BlobReader::raw)
            .chain(std::iter::once(Ok(end_marker(doc.version))));
        let applied = db.apply_raw_changes(&mirror, chain)?;
        report.versions = applied.versions;
        report.entries = applied.entries;
    } else {
        // Values stay encoded from blob to row: no decode-and-encode round trip per entry.
        let chain = readers
            .into_iter()
            .flat_map(BlobReader::raw)
            .chain(std::iter::once(Ok(end_marker(doc.version))));
        let applied = db.apply_raw_changes(&mirror, chain)?;
        report.versions = applied.versions;
        report.entries = applied.entries;
    }
    let now = mirror_head(db, &mirror)?.unwrap_or(0);
    if now != doc.version {
        return Err(SyncError::corrupt(
            format!("cursor of {branch:?}"),
            format!(
                "after applying its blobs the mirror is at version {now}, not {}",
                doc.version
            ),
        ));
    }
    tracing::info!(
        remote = remote_name,
        branch,
        version = doc.version,
        entries = report.entries,
        "fetched"
    );
    Ok(report)
}

/// Deletes staging branches left by fetches that were killed (older than ten minutes, so a fetch running
/// in another process keeps its own).
fn sweep_stale_staging(db: &Strata) -> Result<()> {
    let cutoff = now_micros().saturating_sub(600_000_000);
    for b in db.list_branches(true)? {
        if b.name.starts_with("_staging:") && b.created_micros < cutoff {
            tracing::info!(branch = %b.name, "removing a staging branch left by an interrupted fetch");
            match db.delete_branch(&b.name) {
                Ok(()) | Err(strata_engine::Error::BranchNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// An empty change set at the cursor's version, applied last: it folds into the last blob's version,
/// or records that version when the blobs held no entries (an empty snapshot), so the mirror always
/// ends exactly at the cursor's version.
fn end_marker(version: u64) -> RawChangeSet {
    RawChangeSet {
        version,
        timestamp_micros: now_micros(),
        puts: vec![],
        deletes: vec![],
    }
}

/// Reads the cursor, with the error a user expects when the branch or the whole remote is missing.
async fn require_cursor(remote: &dyn Remote, branch: &str) -> Result<(CursorDoc, CursorToken)> {
    match read_cursor(remote, branch).await? {
        Some(c) => Ok(c),
        None => {
            let marker = RemotePath::parse(layout::MARKER).expect("valid");
            if !remote.blob_exists(&marker).await?
                && remote.list_cursors("branches").await?.is_empty()
            {
                Err(SyncError::NotAStrataRemote(remote.to_string()))
            } else {
                Err(SyncError::NotFound(format!(
                    "remote {remote} has no branch {branch:?}"
                )))
            }
        }
    }
}

/// Fetches a branch: updates its mirror only.
pub async fn fetch(
    db: &Strata,
    remote_name: &str,
    branch: &str,
    progress: &Progress,
) -> Result<FetchReport> {
    let cfg = config::get_remote(db, remote_name)?;
    let remote = crate::open::open_remote(&cfg)?;
    fetch_with(db, &*remote, remote_name, branch, progress).await
}

/// [`fetch`] over a given remote rather than the configured one (`remote_name` still names the mirror).
/// Re-exported as `fetch_from`; lets tests run a fetch over a `FaultyRemote`.
pub async fn fetch_with(
    db: &Strata,
    remote: &dyn Remote,
    remote_name: &str,
    branch: &str,
    progress: &Progress,
) -> Result<FetchReport> {
    Ok(fetch_doc(db, remote, remote_name, branch, progress)
        .await?
        .0)
}

/// Fetches and also returns the cursor the mirror now matches.
async fn fetch_doc(
    db: &Strata,
    remote: &dyn Remote,
    remote_name: &str,
    branch: &str,
    progress: &Progress,
) -> Result<(FetchReport, CursorDoc)> {
    // A blob can vanish between reading the cursor and downloading it (compaction plus gc by another
    // client); read the cursor again once in that case.
    for attempt in 0..2 {
        let (doc, _) = require_cursor(remote, branch).await?;
        match fetch_into_mirror(db, remote, remote_name, branch, &doc, progress).await {
            Err(SyncError::Remote(RemoteError::NotFound(_))) if attempt == 0 => continue,
            other => return other.map(|r| (r, doc)),
        }
    }
    unreachable!("the loop returns on its second attempt")
}

// ----- pull ---------------------------------------------------------------------------------------

/// Pulls a branch: fetch, then merge the mirror into the branch.
pub async fn pull(
    db: &Strata,
    remote_name: &str,
    branch: &str,
    opts: &PullOptions,
) -> Result<PullReport> {
    let cfg = config::get_remote(db, remote_name)?;
    let remote = crate::open::open_remote(&cfg)?;
    pull_with(db, &*remote, remote_name, branch, opts).await
}

/// [`pull`] over a given remote rather than the configured one (`remote_name` still names the mirror
/// and the sync state). Re-exported as `pull_from`; lets tests run a pull over a `FaultyRemote`.
#[tracing::instrument(level = "info", skip_all, fields(remote = remote_name, branch))]
pub async fn pull_with(
    db: &Strata,
    remote: &dyn Remote,
    remote_name: &str,
    branch: &str,
    opts: &PullOptions,
) -> Result<PullReport> {
    strata_engine::names::validate_branch_name(branch, false)?;
    let mirror = mirror_name(remote_name, branch);
    let before = mirror_head(db, &mirror)?.unwrap_or(0);
    let (fetch, doc) = fetch_doc(db, remote, remote_name, branch, &opts.progress).await?;
    let r = fetch.remote_version;
    if r > before {
        // If this database's own push landed but its reply was lost, the newest own blob says which
        // local version the remote then equalled: record it, so the merge below treats those changes
        // as already here instead of as remote changes that would overwrite newer local writes.
        if let Ok(info) = db.branch_info(branch) {
            let origin = config::db_id(db)?;
            let own = doc
                .deltas
                .iter()
                .chain(doc.snapshot.iter())
                .filter(|d| d.to > before && d.to <= r && d.origin == origin);
            if let Some(d) = own.max_by_key(|d| d.to) {
                if d.source_version > 0 && d.source_version <= info.head {
                    db.record_merge(&Rev::at(&mirror, d.to), &Rev::at(branch, d.source_version))?;
                    db.record_merge(&Rev::at(branch, d.source_version), &Rev::at(&mirror, d.to))?;
                }
            }
        }
    }
    let mirror_rev = Rev::at(&mirror, r);
    let mut report = PullReport {
        fetch,
        merged_version: None,
        applied: 0,
        conflicts_resolved: 0,
        created: false,
    };
    let local = match db.branch_info(branch) {
        Ok(i) => Some(i),
        Err(strata_engine::Error::BranchNotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let fresh = match &local {
        None => true,
        Some(i) => i.head == 0 && i.parent.is_none(),
    };
    // A branch that is still an untouched fork of its mirror (a clone) fast-forwards by forking again
    // at the new mirror version: nothing is copied.
    let fast_forward = match &local {
        Some(i) => i.parent.as_deref() == Some(mirror.as_str()) && i.fork_version == Some(i.head),
        None => false,
    };
    let fresh = fresh || fast_forward;
    if fresh {
        // Nothing local: the branch becomes a copy-on-write fork of the mirror (no rows copied).
        db.refork_branch(branch, mirror_rev.clone())?;
        report.created = true;
    } else if !db.contains(&Rev::head(branch), &mirror_rev)? {
        let pre = local.as_ref().map(|i| i.head).unwrap_or(0);
        let clean = before > 0 && db.contains(&Rev::at(&mirror, before), &Rev::at(branch, pre))?;
        match db.merge(&mirror_rev, branch, opts.strategy) {
            Ok(m) => {
                report.merged_version = m.version;
                report.applied = m.applied;
                report.conflicts_resolved = m.conflicts_resolved;
            }
            Err(strata_engine::Error::MergeConflicts(c)) => {
                if let Some(name) = &opts.conflict_branch {
                    db.save_conflicts(branch, &c, name)?;
                }
                return Err(SyncError::Conflicts(c));
            }
            Err(e) => return Err(e.into()),
        }
        if clean {
            // The branch had nothing unpushed, so it now equals the mirror: record that both ways so
            // the next push diffs only what changes from here.
            db.record_merge(&Rev::head(branch), &mirror_rev)?;
        }
    }
    let head = db.branch_info(branch)?.head;
    config::set_state(
        db,
        remote_name,
        branch,
        &SyncState {
            merged_remote_version: r,
            branch_version: head,
            last_synced_micros: now_micros(),
        },
    )?;
    tracing::info!(
        remote = remote_name,
        branch,
        version = r,
        applied = report.applied,
        "pulled"
    );
    Ok(report)
}

// ----- push ---------------------------------------------------------------------------------------

/// Pushes a branch.
pub async fn push(
    db: &Strata,
    remote_name: &str,
    branch: &str,
    opts: &PushOptions,
) -> Result<PushReport> {
    let cfg = config::get_remote(db, remote_name)?;
    let remote = crate::open::open_remote(&cfg)?;
    push_with(db, &*remote, remote_name, branch, opts).await
}

/// [`push`] over a given remote rather than the configured one (`remote_name` still names the mirror
/// and the sync state). Re-exported as `push_to`; lets tests run a push over a `FaultyRemote`.
#[tracing::instrument(level = "info", skip_all, fields(remote = remote_name, branch))]
pub async fn push_with(
    db: &Strata,
    remote: &dyn Remote,
    remote_name: &str,
    branch: &str,
    opts: &PushOptions,
) -> Result<PushReport> {
    strata_engine::names::validate_branch_name(branch, false)?;
    let info = db.branch_info(branch)?;
    let origin = config::db_id(db)?;
    let mirror = mirror_name(remote_name, branch);
    let mut m_head = mirror_head(db, &mirror)?;
    let cur = read_cursor(remote, branch).await?;
    let r = cur.as_ref().map(|c| c.0.version).unwrap_or(0);
    let mut m = m_head.unwrap_or(0);
    if let Some((doc, _)) = &cur {
        if r > m {
            // Accept only if every newer blob is this database's own upload (a push that died after
            // moving the cursor); anything else is someone else's work.
            let own = doc
                .snapshot
                .as_ref()
                .is_none_or(|s| s.to <= m || s.origin == origin)
                && doc
                    .deltas
                    .iter()
                    .filter(|d| d.to > m)
                    .all(|d| d.origin == origin)
                && (m > 0 || doc.snapshot.as_ref().is_none_or(|s| s.origin == origin));
            if !own {
                return Err(SyncError::Rejected(format!(
                    "remote has changes; pull first (remote {remote_name} is at version {r}, this database has {m})"
                )));
            }
            fetch_into_mirror(db, remote, remote_name, branch, doc, &opts.progress).await?;
            m_head = mirror_head(db, &mirror)?;
            m = r;
            // The newest blob brought the remote to this branch's state at the version it records:
            // the mirror now equals that point.
            let newest = doc
                .deltas
                .last()
                .or(doc.snapshot.as_ref())
                .map(|b| b.source_version)
                .unwrap_or(0);
            if newest > 0 && newest <= info.head {
                db.record_merge(&Rev::at(&mirror, r), &Rev::at(branch, newest))?;
                db.record_merge(&Rev::at(branch, newest), &Rev::at(&mirror, r))?;
            }
        }
    }
    if r < m {
        return Err(SyncError::Diverged(format!(
            "remote branch {branch:?} is at version {r} but this database pushed or fetched version {m} \
             (the remote was reset or replaced)"
        )));
    }
    if m > 0 && !db.contains(&Rev::head(branch), &Rev::at(&mirror, m))? {
        // A push (or its re-run) that died between updating the mirror and recording the equal point
        // leaves the mirror at this database's own newest upload: record that point and look again.
        if let Some((doc, _)) = &cur {
            let newest = doc.deltas.last().or(doc.snapshot.as_ref());
            if let Some(d) = newest.filter(|d| d.to == m && d.origin == origin) {
                if d.source_version > 0 && d.source_version <= info.head {
                    db.record_merge(&Rev::at(&mirror, m), &Rev::at(branch, d.source_version))?;
                    db.record_merge(&Rev::at(branch, d.source_version), &Rev::at(&mirror, m))?;
                }
            }
        }
    }
    if m > 0 && !db.contains(&Rev::head(branch), &Rev::at(&mirror, m))? {
        return Err(SyncError::Rejected(format!(
            "fetched changes from {remote_name} are not merged into {branch:?}; pull first"
        )));
    }
    let h = info.head;
    let main_rev = Rev::at(branch, h);
    let first = m_head.is_none_or(|v| v == 0) && r == 0;
    let new_version = if first { h } else { r + 1 };

    // Build the blob: the whole state for a first push, else the difference mirror -> branch.
    let (blob, kind) = if first {
        if h == 0 {
            (None, "snapshot")
        } else {
            (Some(build_snapshot(db, &main_rev, branch, h)?), "snapshot")
        }
    } else {
        let mut ch = Chunker::new(
            BlobBuilder::new("delta", branch, r, new_version)?,
            new_version,
        );
        db.diff_each(&Rev::at(&mirror, m), &main_rev, |k, _, b| {
            if is_internal_space(k) {
                Ok(())
            } else {
                ch.add(k, b)
            }
        })?;
        let entries = ch.builder.entries() + ch.cur.len() as u64;
        if entries == 0 {
            // Nothing differs: note the equal point so the next diff starts here.
            db.record_merge(&Rev::at(&mirror, m), &main_rev)?;
            db.record_merge(&main_rev, &Rev::at(&mirror, m))?;
            return Ok(PushReport {
                branch: branch.to_string(),
                remote_version: r,
                up_to_date: true,
                entries: 0,
                bytes: 0,
                blob: None,
                snapshot: None,
            });
        }
        (Some(ch.finish()?), "delta")
    };

    if cur.is_none() {
        let marker = RemotePath::parse(layout::MARKER).expect("valid");
        match remote
            .put_bytes_if_absent(&marker, Bytes::from(layout::marker_bytes()))
            .await
        {
            Ok(()) | Err(RemoteError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut report = PushReport {
        branch: branch.to_string(),
        remote_version: new_version,
        up_to_date: false,
        entries: 0,
        bytes: 0,
        blob: None,
        snapshot: None,
    };
    let mut doc = match &cur {
        Some((d, _)) => d.clone(),
        None => CursorDoc {
            format: layout::CURSOR_FORMAT,
            branch: branch.to_string(),
            version: 0,
            updated_micros: 0,
            snapshot: None,
            deltas: vec![],
        },
    };
    if let Some(b) = &blob {
        let path = if kind == "snapshot" {
            layout::snapshot_path(branch, new_version)
        } else {
            layout::delta_path(branch, r, new_version)
        };
        upload(remote, &path, b, &opts.progress).await?;
        report.entries = b.header.entry_count;
        report.bytes += b.bytes;
        report.blob = Some(path.to_string());
        let rf = blob_ref(&path, b, &origin, h);
        if kind == "snapshot" {
            doc.snapshot = Some(rf);
            doc.deltas.clear();
        } else {
            doc.deltas.push(rf);
        }
    }
    doc.version = new_version;
    doc.updated_micros = now_micros();
    // Compaction: a snapshot of the new state when the delta chain grows long or heavy.
    let snap_bytes = doc.snapshot.as_ref().map(|s| s.bytes).unwrap_or(0);
    if kind == "delta"
        && (doc.deltas.len() >= opts.snapshot_every
            || (doc.delta_bytes() > opts.snapshot_bytes && doc.delta_bytes() > snap_bytes))
    {
        let snap = build_snapshot(db, &main_rev, branch, new_version)?;
        let path = layout::snapshot_path(branch, new_version);
        upload(remote, &path, &snap, &opts.progress).await?;
        report.bytes += snap.bytes;
        report.snapshot = Some(path.to_string());
        doc.snapshot = Some(blob_ref(&path, &snap, &origin, h));
        doc.deltas.clear();
    }
    let token = cur.as_ref().map(|c| &c.1);
    match remote.write_cursor(&layout::cursor_name(branch), Bytes::from(doc.to_bytes()), token).await {
        Ok(_) => {}
        Err(RemoteError::Conflict(_)) => {
            return Err(SyncError::Rejected(format!(
                "remote has changes; pull first (another client pushed to {remote_name} during this push)"
            )))
        }
        Err(e) => return Err(e.into()),
    }
    // The remote now equals the branch at `h`; make the mirror say so.
    if first {
        if m_head.is_some() {
            db.delete_branch(&mirror)?;
        }
        db.create_internal_branch(&mirror, Some(main_rev.clone()))?;
    } else if let Some(b) = &blob {
        let reader = BlobReader::open(b.file.as_file(), "pushed delta")?.raw();
        db.apply_raw_changes_equal_to(&mirror, reader, &main_rev)?;
    }
    config::set_state(
        db,
        remote_name,
        branch,
        &SyncState {
            merged_remote_version: new_version,
            branch_version: h,
            last_synced_micros: now_micros(),
        },
    )?;
    tracing::info!(
        remote = remote_name,
        branch,
        version = new_version,
        entries = report.entries,
        bytes = report.bytes,
        "pushed"
    );
    Ok(report)
}

// ----- status, listing, gc, compaction ------------------------------------------------------------

/// Where a branch stands against a remote (reads the remote cursor).
#[tracing::instrument(level = "debug", skip_all, fields(remote = remote_name, branch))]
pub async fn status(db: &Strata, remote_name: &str, branch: &str) -> Result<SyncStatus> {
    let cfg = config::get_remote(db, remote_name)?;
    let remote = crate::open::open_remote(&cfg)?;
    let info = db.branch_info(branch)?;
    let mirror = mirror_name(remote_name, branch);
    let m = mirror_head(db, &mirror)?;
    let state = config::get_state(db, remote_name, branch)?;
    let cur = read_cursor(&*remote, branch).await?;
    let mut ahead_entries = 0u64;
    match m {
        Some(mv) => {
            // Count local changes only: against the mirror version the branch last merged or pushed,
            // not against remote changes fetched but not merged yet.
            let base = if db.contains(&Rev::head(branch), &Rev::at(&mirror, mv))? {
                mv
            } else {
                state.merged_remote_version.min(mv)
            };
            db.diff_each(&Rev::at(&mirror, base), &Rev::head(branch), |k, _, _| {
                if !is_internal_space(k) {
                    ahead_entries += 1;
                }
                Ok(())
            })?
        }
        None => {
            for cs in db.snapshot(&Rev::head(branch))? {
                ahead_entries += cs?
                    .puts
                    .iter()
                    .filter(|(k, _)| !is_internal_space(k))
                    .count() as u64;
            }
        }
    }
    let synced = state.last_synced_micros > 0;
    let remote_version = cur.as_ref().map(|c| c.0.version);
    let behind_entries = match &cur {
        Some((doc, _)) => {
            doc.deltas
                .iter()
                .filter(|d| d.from >= state.merged_remote_version)
                .map(|d| d.entries)
                .sum::<u64>()
                + match (&doc.snapshot, synced) {
                    (Some(s), false) => s.entries,
                    _ => 0,
                }
        }
        None => 0,
    };
    Ok(SyncStatus {
        branch: branch.to_string(),
        remote_version,
        mirror_version: m.unwrap_or(0),
        ahead_versions: info.head.saturating_sub(state.branch_version),
        ahead_entries,
        behind_versions: remote_version
            .unwrap_or(0)
            .saturating_sub(state.merged_remote_version),
        behind_entries,
        last_synced_micros: synced.then_some(state.last_synced_micros),
    })
}

/// The branches a remote holds.
pub async fn list_remote_branches(remote: &dyn Remote) -> Result<Vec<RemoteBranch>> {
    let mut out = Vec::new();
    for name in remote.list_cursors("branches").await? {
        let branch = layout::branch_of_cursor(&name)?;
        if let Some(c) = remote.read_cursor(&name).await? {
            let doc = CursorDoc::parse(name.as_str(), &c.value)?;
            out.push(RemoteBranch {
                name: branch,
                version: doc.version,
                updated_micros: doc.updated_micros,
                blobs: doc.blobs().count(),
            });
        }
    }
    Ok(out)
}

/// Deletes blobs that no cursor references and that are older than `grace`. Safe while others push:
/// a push uploads its blob before it moves the cursor, and a young blob is never deleted.
#[tracing::instrument(level = "info", skip_all, fields(remote = %remote))]
pub async fn gc(remote: &dyn Remote, grace: std::time::Duration) -> Result<GcReport> {
    let mut referenced = std::collections::HashSet::new();
    for name in remote.list_cursors("branches").await? {
        if let Some(c) = remote.read_cursor(&name).await? {
            for b in CursorDoc::parse(name.as_str(), &c.value)?.blobs() {
                referenced.insert(b.path.clone());
            }
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut report = GcReport {
        referenced: referenced.len(),
        ..Default::default()
    };
    for meta in remote.list_blobs("branches").await? {
        if referenced.contains(meta.path.as_str()) {
            continue;
        }
        if now.saturating_sub(meta.modified_millis) < grace.as_millis() as u64 {
            report.kept_young += 1;
            continue;
        }
        remote.delete_blob(&meta.path).await?;
        report.deleted += 1;
        report.bytes_freed += meta.size;
    }
    tracing::info!(remote = %remote, deleted = report.deleted, "gc");
    Ok(report)
}

/// Writes a snapshot of a branch's current remote state and points the cursor at it alone, so
/// clones and far-behind pulls replay nothing. Fetches first.
#[tracing::instrument(level = "info", skip_all, fields(remote = remote_name, branch))]
pub async fn compact(
    db: &Strata,
    remote_name: &str,
    branch: &str,
    progress: &Progress,
) -> Result<PushReport> {
    let cfg = config::get_remote(db, remote_name)?;
    let remote = crate::open::open_remote(&cfg)?;
    let origin = config::db_id(db)?;
    let (doc, token) = require_cursor(&*remote, branch).await?;
    fetch_into_mirror(db, &*remote, remote_name, branch, &doc, progress).await?;
    if doc.version == 0 || (doc.deltas.is_empty() && doc.snapshot.is_some()) {
        // Nothing to compact: an empty branch, or one that is a snapshot alone already.
        return Ok(PushReport {
            branch: branch.to_string(),
            remote_version: doc.version,
            up_to_date: true,
            entries: 0,
            bytes: 0,
            blob: None,
            snapshot: None,
        });
    }
    let mirror = mirror_name(remote_name, branch);
    let snap = build_snapshot(db, &Rev::at(&mirror, doc.version), branch, doc.version)?;
    let path = layout::snapshot_path(branch, doc.version.max(1));
    upload(&*remote, &path, &snap, progress).await?;
    let mut new = doc.clone();
    new.snapshot = Some(blob_ref(&path, &snap, &origin, 0));
    new.deltas.clear();
    new.version = snap.header.to_version.max(doc.version);
    new.updated_micros = now_micros();
    match remote
        .write_cursor(
            &layout::cursor_name(branch),
            Bytes::from(new.to_bytes()),
            Some(&token),
        )
        .await
    {
        Ok(_) => {}
        Err(RemoteError::Conflict(_)) => {
            return Err(SyncError::Rejected(
                "remote changed during compaction; run it again".into(),
            ))
        }
        Err(e) => return Err(e.into()),
    }
    Ok(PushReport {
        branch: branch.to_string(),
        remote_version: new.version,
        up_to_date: false,
        entries: snap.header.entry_count,
        bytes: snap.bytes,
        blob: None,
        snapshot: Some(path.to_string()),
    })
}
