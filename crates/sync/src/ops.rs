//! The sync algorithm, written once over `&dyn Remote`.
//!
//! **Beside other writers.** Another handle, thread or process may commit between any two steps.
//! Every change this module makes to the database is one call of the engine's replication API
//! ([`strata_engine::Replication`]), which checks its own precondition inside its transaction; when
//! one fails (`HeadMoved`), the step reads again and decides again.
//!
//! **Inside async hosts.** Every engine call, zstd pass and file operation runs on tokio's blocking
//! pool ([`blocking`]), so no runtime worker waits on SQLite's lock or on the disk.
//!
//! A branch `b` synced with remote `r` has an **origin mirror** `_origin:r:b`: an internal branch
//! holding exactly the remote's state, with the remote's version numbers. A push uploads
//! `diff(mirror, b)` as one new remote version (one delta blob), compare-and-swaps the cursor, then
//! applies the same delta to the mirror and records mirror and branch as equal. A pull fetches the blobs
//! after the mirror's version, verifies them, applies them to the mirror atomically, then three-way
//! merges mirror into branch. Diffs between the two follow only what changed since the last equal
//! point, so sync costs what changed, not what the branch holds.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use strata_engine::{
    ChangeSet, CommitMeta, EntryKey, FastForward, MergeStrategy, RawChangeSet, Rev, Strata, Value,
    CHANGE_PAGE,
};
use strata_remote::{ByteStream, CursorToken, Remote, RemoteError, RemoteExt, RemotePath};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::blob::{BlobBuilder, BlobReader, SpooledBlob};
use crate::config::{self, SyncState};
use crate::error::{Result, SyncError};
use crate::layout::{self, BlobRef, CursorDoc, PushSummary};
use crate::progress::Progress;

/// The mirror branch of `branch` on `remote`.
pub fn mirror_name(remote: &str, branch: &str) -> String {
    format!("_origin:{remote}:{branch}")
}

/// Called at each step boundary of a push or pull with the step's name. Tests use it to commit from
/// a second handle at every boundary and prove that no step trusts an earlier read.
pub type StepHook = Arc<dyn Fn(&'static str) + Send + Sync>;

/// An optional [`StepHook`].
#[derive(Clone, Default)]
pub struct Hook(pub Option<StepHook>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Hook(set)"
        } else {
            "Hook(none)"
        })
    }
}

impl Hook {
    fn at(&self, step: &'static str) {
        if let Some(h) = &self.0 {
            h(step);
        }
    }
}

/// How long a push may take between starting a blob's upload and publishing it in the cursor. A push
/// that takes longer uploads the blob again under a fresh name, so garbage collection with a grace
/// period longer than this can never delete a blob that a push is about to publish.
pub const PUBLISH_WITHIN: Duration = Duration::from_secs(600);

/// Uploads of one blob a push tries before it gives up on a store too slow to publish within
/// [`PUBLISH_WITHIN`].
const MAX_UPLOADS: usize = 3;

fn too_slow(within: Duration, uploads: usize) -> SyncError {
    SyncError::Remote(RemoteError::Transient(
        format!(
            "the remote is too slow: {uploads} uploads of the blob each took more than {:?}, half the \
             time a push may take to publish it safely beside garbage collection; try again later",
            within / 2
        )
        .into(),
    ))
}

/// Push options.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Compaction: when the newest this-many blobs of the cursor's chain share a level, they are packed
    /// into one blob of the next level (every version kept). At least 2; default 8.
    pub pack_fanout: usize,
    /// Progress reporting.
    pub progress: Progress,
    /// See [`PUBLISH_WITHIN`] (the default); garbage collection must use a longer grace period.
    pub publish_within: Duration,
    /// Step hook (tests).
    pub hook: Hook,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            pack_fanout: 8,
            progress: Progress::none(),
            publish_within: PUBLISH_WITHIN,
            hook: Hook::default(),
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
    /// Step hook (tests).
    pub hook: Hook,
    /// For a branch not fetched before: start from the remote's shallow snapshot when it leaves at
    /// most this many versions after it (`clone --depth`).
    pub depth: Option<u64>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            depth: None,
            strategy: MergeStrategy::LastWriterWins,
            conflict_branch: None,
            progress: Progress::none(),
            hook: Hook::default(),
        }
    }
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PushReport {
    /// The branch.
    pub branch: String,
    /// The remote version after the push.
    pub remote_version: u64,
    /// Whether there was nothing to upload.
    pub up_to_date: bool,
    /// Versions uploaded (each local version since the last sync is its own remote version).
    pub versions: u64,
    /// Entries uploaded.
    pub entries: u64,
    /// Bytes uploaded (blobs, not counting the cursor).
    pub bytes: u64,
    /// The delta blob written (for `remote compact`, the snapshot).
    pub blob: Option<String>,
    /// The newest pack that compaction wrote, if any.
    pub packed: Option<String>,
}

/// What a fetch did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct PullReport {
    /// The fetch part.
    pub fetch: FetchReport,
    /// The new branch version made by the merge, if any.
    pub merged_version: Option<u64>,
    /// Entries the merge changed in the branch.
    pub applied: u64,
    /// Conflicting keys resolved in the remote's favour (last writer wins).
    pub conflicts_resolved: u64,
    /// Whether the branch was created from the remote (it did not exist).
    pub created: bool,
    /// Whether the branch, which had nothing of its own, moved forward in place to the remote's version.
    pub fast_forward: bool,
}

/// Where a branch stands against a remote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct GcReport {
    /// Blobs referenced by some cursor.
    pub referenced: usize,
    /// Unreferenced blobs younger than the grace period (by the store's clock), kept.
    pub kept_young: usize,
    /// Unreferenced blobs whose age the store does not report, kept.
    pub kept_unknown_age: usize,
    /// Blobs deleted.
    pub deleted: usize,
    /// Bytes freed.
    pub bytes_freed: u64,
}

// ----- the async boundary, retries, spooling --------------------------------------------------------

/// Runs blocking work (SQLite, zstd, files) on tokio's blocking pool, so no runtime worker waits on
/// it. A panic inside is resumed in the caller.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(SyncError::Io(std::io::Error::other(e))),
    }
}

/// Retries of an idempotent remote step (a read, a download, a put-if-absent of a fresh blob name)
/// after a retryable error. A compare-and-swap is never retried blindly.
const RETRIES: u32 = 3;

fn backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let base = 100u64 << attempt.min(6);
    Duration::from_millis(base + h.finish() % (base / 2 + 1))
}

/// Runs `f(attempt)` until it succeeds, fails with an error that is not retryable, or has been retried
/// [`RETRIES`] times, sleeping with jittered exponential backoff in between.
async fn retrying<T, F, Fut>(what: &str, mut f: F) -> std::result::Result<T, RemoteError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = std::result::Result<T, RemoteError>>,
{
    let mut attempt = 0;
    loop {
        match f(attempt).await {
            Err(e) if e.is_retryable() && attempt < RETRIES => {
                let wait = backoff(attempt);
                tracing::warn!(what, attempt, error = %e, ?wait, "retrying after a transient remote error");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Where sync spools blobs: a `tmp` folder inside the database folder (not the system temp folder,
/// which is often memory), created on first use.
pub(crate) fn spool_dir(db: &Strata) -> Result<PathBuf> {
    let dir = db.path().join("tmp");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

// ----- helpers ------------------------------------------------------------------------------------

async fn read_cursor(
    remote: &dyn Remote,
    branch: &str,
) -> Result<Option<(CursorDoc, CursorToken)>> {
    let name = layout::cursor_name(branch);
    let c = retrying("read cursor", |_| remote.read_cursor(&name)).await?;
    match c {
        None => Ok(None),
        Some(c) => Ok(Some((CursorDoc::parse(name.as_str(), &c.value)?, c.token))),
    }
}

async fn head_of(db: &Strata, branch: &str) -> Result<Option<u64>> {
    let (db, branch) = (db.clone(), branch.to_string());
    blocking(move || Ok(db.replication().head(&branch)?)).await
}

async fn db_id(db: &Strata) -> Result<String> {
    let db = db.clone();
    blocking(move || config::db_id(&db)).await
}

fn is_internal_space(k: &EntryKey) -> bool {
    k.space.starts_with('_')
}

fn file_stream(file: tokio::fs::File, progress: Progress) -> ByteStream {
    Box::pin(futures::stream::unfold(
        (file, progress),
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

/// Uploads a spooled blob with put-if-absent, retrying transient failures. The name is fresh (a
/// random id), so "already exists" on a retry means an earlier attempt landed.
#[tracing::instrument(level = "debug", skip_all, fields(blob = %path, bytes = blob.bytes))]
async fn upload(
    remote: &dyn Remote,
    path: &RemotePath,
    blob: &SpooledBlob,
    label: &str,
    progress: &Progress,
) -> Result<()> {
    let file_path = blob.file.path().to_path_buf();
    retrying("upload", |attempt| {
        let file_path = file_path.clone();
        async move {
            let f = tokio::fs::File::open(&file_path).await?;
            progress.start(label, Some(blob.bytes));
            let r = remote
                .put_blob_if_absent(path, file_stream(f, progress.clone()))
                .await;
            progress.finish();
            match r {
                Err(RemoteError::AlreadyExists(_)) if attempt > 0 => Ok(()),
                other => other,
            }
        }
    })
    .await?;
    Ok(())
}

/// Downloads a blob into the spool folder, checking its size and SHA-256 against the cursor's record
/// while it streams. Retries transient failures from the start.
#[tracing::instrument(level = "debug", skip_all, fields(blob = %r.path, bytes = r.bytes))]
async fn download(
    remote: &dyn Remote,
    r: &BlobRef,
    dir: &Path,
    label: &str,
    progress: &Progress,
) -> Result<tempfile::NamedTempFile> {
    let path =
        RemotePath::parse(&r.path).map_err(|e| SyncError::corrupt("cursor", e.to_string()))?;
    let dir = dir.to_path_buf();
    let tmp = blocking(move || Ok(tempfile::NamedTempFile::new_in(dir)?)).await?;
    let tmp_path = tmp.path().to_path_buf();
    let mut attempt = 0;
    loop {
        match download_once(remote, &path, r, &tmp_path, label, progress).await {
            Err(SyncError::Remote(e)) if e.is_retryable() && attempt < RETRIES => {
                let wait = backoff(attempt);
                tracing::warn!(blob = %r.path, attempt, error = %e, ?wait, "retrying a download");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
            Ok(()) => return Ok(tmp),
        }
    }
}

async fn download_once(
    remote: &dyn Remote,
    path: &RemotePath,
    r: &BlobRef,
    to: &Path,
    label: &str,
    progress: &Progress,
) -> Result<()> {
    let mut stream = remote.get_blob(path).await?;
    let mut f = tokio::io::BufWriter::new(tokio::fs::File::create(to).await?);
    let mut hash = Sha256::new();
    progress.start(label, Some(r.bytes));
    let mut n = 0u64;
    let res: Result<()> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            n += chunk.len() as u64;
            if n > r.bytes {
                return Err(SyncError::corrupt(
                    format!("blob {}", r.path),
                    format!("longer than the {} bytes recorded", r.bytes),
                ));
            }
            hash.update(&chunk);
            f.write_all(&chunk).await?;
            progress.advance(chunk.len() as u64);
        }
        f.flush().await?;
        Ok(())
    }
    .await;
    progress.finish();
    res?;
    if n != r.bytes {
        return Err(SyncError::corrupt(
            format!("blob {}", r.path),
            format!("{n} bytes, but the cursor records {}", r.bytes),
        ));
    }
    let sha = hex::encode(hash.finalize());
    if sha != r.sha256 {
        return Err(SyncError::corrupt(
            format!("blob {}", r.path),
            format!("SHA-256 {sha} does not match the cursor's {}", r.sha256),
        ));
    }
    Ok(())
}

/// Verifies a downloaded blob completely and checks it is the one the cursor describes.
/// Checks a downloaded blob's header against its cursor entry (its size and SHA-256 were checked as it
/// downloaded). The records are checked as they are applied, inside the one transaction that applies
/// them, which any failure rolls back: so the blob is decompressed once, not twice.
fn verify_blob(file: &tempfile::NamedTempFile, r: &BlobRef, branch: &str) -> Result<()> {
    let h = BlobReader::open(file.as_file(), &r.path)?.header().clone();
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
        level: 0,
    }
}

/// Most value bytes one change set of a blob holds (besides [`CHANGE_PAGE`] entries), so memory
/// follows a page, not the size of the values.
pub const PAGE_BYTES: usize = 4 << 20;

/// A cheap upper estimate of a value's encoded size.
fn approx_size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 5,
        Value::Bytes(b) => b.len() + 5,
        Value::Array(a) => 5 + a.iter().map(approx_size).sum::<usize>(),
        Value::Object(o) => {
            5 + o
                .iter()
                .map(|(k, v)| k.len() + 5 + approx_size(v))
                .sum::<usize>()
        }
        _ => 9,
    }
}

/// Streams change sets into a blob builder in pages of at most `CHANGE_PAGE` entries or about
/// [`PAGE_BYTES`] bytes, one version after another ([`Chunker::start`]); a version with no entries
/// writes nothing.
struct Chunker {
    builder: BlobBuilder,
    cur: ChangeSet,
    cur_bytes: usize,
    /// Versions written (a version cut into several sets counts once).
    versions: u64,
    written: Option<u64>,
    newest: Option<CommitMeta>,
    err: Option<SyncError>,
}

impl Chunker {
    fn new(builder: BlobBuilder) -> Chunker {
        Chunker {
            builder,
            cur: ChangeSet {
                version: 0,
                timestamp_micros: now_micros(),
                puts: vec![],
                deletes: vec![],
                meta: None,
            },
            cur_bytes: 0,
            versions: 0,
            written: None,
            newest: None,
            err: None,
        }
    }

    /// Starts the next version: what is added from now on belongs to it.
    fn start(&mut self, version: u64, timestamp_micros: u64, meta: Option<CommitMeta>) {
        if self.flush().is_err() {
            return;
        }
        self.cur.version = version;
        self.cur.timestamp_micros = timestamp_micros;
        self.cur.meta = meta;
    }

    fn entries(&self) -> u64 {
        self.builder.entries() + self.cur.len() as u64
    }

    fn versions(&self) -> u64 {
        self.versions + u64::from(!self.cur.is_empty() && self.written != Some(self.cur.version))
    }

    /// The newest version with entries.
    fn last_version(&self) -> u64 {
        if self.cur.is_empty() {
            self.builder.last_version()
        } else {
            self.cur.version
        }
    }

    /// The metadata of the newest version with entries.
    fn newest_meta(&self) -> Option<CommitMeta> {
        if self.cur.is_empty() {
            self.newest.clone()
        } else {
            self.cur.meta.clone()
        }
    }

    fn add(&mut self, k: &EntryKey, v: Option<Value>) -> strata_engine::Result<()> {
        if let Some(e) = &self.err {
            return Err(strata_engine::Error::InvalidOperation(e.to_string()));
        }
        self.cur_bytes += k.key.len() + k.space.len() + 8;
        match v {
            Some(v) => {
                self.cur_bytes += approx_size(&v);
                self.cur.puts.push((k.clone(), v));
            }
            None => self.cur.deletes.push(k.clone()),
        }
        if self.cur.len() >= CHANGE_PAGE || self.cur_bytes >= PAGE_BYTES {
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
        self.cur_bytes = 0;
        if self.written != Some(cs.version) {
            self.versions += 1;
            self.written = Some(cs.version);
        }
        self.newest = cs.meta.clone();
        if let Err(e) = self.builder.push(&cs) {
            let msg = e.to_string();
            self.err = Some(e);
            return Err(strata_engine::Error::InvalidOperation(msg));
        }
        Ok(())
    }

    fn finish_at(mut self, to: u64) -> Result<SpooledBlob> {
        if let Some(e) = self.err.take() {
            return Err(e);
        }
        self.flush().map_err(SyncError::from)?;
        if let Some(e) = self.err.take() {
            return Err(e);
        }
        self.builder.finish_at(to)
    }
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A snapshot blob of `rev` (without internal spaces) at remote version `version`. Blocking.
fn build_snapshot(db: &Strata, rev: &Rev, branch: &str, version: u64) -> Result<SpooledBlob> {
    let mut ch = Chunker::new(BlobBuilder::new_in(
        &spool_dir(db)?,
        "snapshot",
        branch,
        0,
        version.max(1),
    )?);
    ch.start(
        version.max(1),
        now_micros(),
        Some(CommitMeta {
            kind: "snapshot".into(),
            message: format!("state at version {version}"),
            author: None,
        }),
    );
    for cs in db.snapshot(rev)? {
        for (k, v) in cs?.puts {
            if !is_internal_space(&k) {
                ch.add(&k, Some(v))?;
            }
        }
    }
    ch.finish_at(version.max(1))
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
    fetch_into_mirror_depth(db, remote, remote_name, branch, doc, progress, None).await
}

/// [`fetch_into_mirror`]; with `depth`, an empty mirror starts from the cursor's shallow snapshot when
/// it leaves at most `depth` versions after it (else it takes the whole history).
async fn fetch_into_mirror_depth(
    db: &Strata,
    remote: &dyn Remote,
    remote_name: &str,
    branch: &str,
    doc: &CursorDoc,
    progress: &Progress,
    depth: Option<u64>,
) -> Result<FetchReport> {
    let mirror = mirror_name(remote_name, branch);
    let found = head_of(db, &mirror).await?;
    let m = found.unwrap_or(0);
    let mut report = FetchReport {
        branch: branch.to_string(),
        remote_version: doc.version,
        versions: 0,
        entries: 0,
        bytes: 0,
    };
    if doc.version == m {
        if found.is_none() {
            // A branch pushed while empty (version 0): the mirror exists, empty.
            let (db, mirror) = (db.clone(), mirror.clone());
            blocking(move || {
                match db
                    .replication()
                    .apply(&mirror, 0, std::iter::empty(), None, &[])
                {
                    Ok(_) | Err(strata_engine::Error::HeadMoved { .. }) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            })
            .await?;
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
    } else if m >= snap_to {
        // The chain covers (snap_to, version]: the blobs ending after m (a pack may start before m;
        // its versions up to m are skipped when applying).
        (false, doc.deltas.iter().filter(|d| d.to > m).collect())
    } else if snap_to > m {
        // Compacted past what we hold: rebuild from the snapshot.
        (true, doc.deltas.iter().collect())
    } else {
        return Err(SyncError::Diverged(format!(
            "remote branch {branch:?} has no blobs continuing from version {m}, which this database holds \
             (the remote was reset or replaced)"
        )));
    };
    let mut refs: Vec<BlobRef> = Vec::new();
    // A shallow start: the state at `shallow_at`, then only the versions after it.
    let shallow = depth.filter(|_| m == 0).and_then(|n| {
        doc.shallow
            .clone()
            .filter(|s| doc.version - s.to <= n && s.to >= snap_to)
    });
    let skip_to = shallow.as_ref().map(|s| s.to).unwrap_or(0);
    let use_snapshot = use_snapshot && shallow.is_none();
    if let Some(s) = &shallow {
        refs.push(s.clone());
        refs.extend(deltas.into_iter().filter(|d| d.to > s.to).cloned());
    } else {
        if use_snapshot {
            refs.push(doc.snapshot.clone().expect("checked"));
        }
        refs.extend(deltas.into_iter().cloned());
    }
    let shallow_start = shallow.is_some();
    let dir = {
        let db = db.clone();
        blocking(move || spool_dir(&db)).await?
    };
    let mut files = Vec::new();
    progress.phase("downloading");
    for (i, r) in refs.iter().enumerate() {
        let label = if refs.len() > 1 {
            format!("download {branch} ({}/{})", i + 1, refs.len())
        } else {
            format!("download {branch}")
        };
        let f = download(remote, r, &dir, &label, progress).await?;
        report.bytes += r.bytes;
        files.push(f);
    }
    let (db2, mirror2, branch2) = (db.clone(), mirror.clone(), branch.to_string());
    let version = doc.version;
    let phases = progress.clone();
    let applied = blocking(move || {
        phases.phase("verifying");
        for (f, r) in files.iter().zip(&refs) {
            verify_blob(f, r, &branch2)?;
        }
        phases.phase("applying");
        let mut readers: Vec<BlobReader> = Vec::new();
        for (f, r) in files.iter().zip(&refs) {
            readers.push(BlobReader::open(f.as_file(), &r.path)?);
        }
        let rep = db2.replication();
        // Blobs are applied with their values left encoded: no decode-and-encode round trip.
        let res = if use_snapshot && m > 0 {
            // The mirror holds an old state the remote no longer describes by deltas: its difference
            // from the snapshot becomes one version at the snapshot's number, then the deltas follow.
            let snap = readers.remove(0);
            // The snapshot's difference is a commit at `snap_to` already; an end marker there would
            // not follow it.
            let end = (version > snap_to).then(|| Ok(end_marker(version)));
            let rest = readers.into_iter().flat_map(BlobReader::raw).chain(end);
            rep.reset_and_apply(&mirror2, m, snap.raw(), snap_to, rest, &[])
        } else if shallow_start {
            let snap = readers.remove(0).raw();
            let rest = readers
                .into_iter()
                .flat_map(BlobReader::raw)
                .filter(|cs| cs.as_ref().map_or(true, |cs| cs.version > skip_to));
            let end = (version > skip_to).then(|| Ok(end_marker(version)));
            read_ahead(snap.chain(rest).chain(end), |changes| {
                rep.apply(&mirror2, m, changes, None, &[])
            })
        } else {
            let chain = readers
                .into_iter()
                .flat_map(BlobReader::raw)
                .filter(|cs| cs.as_ref().map_or(true, |cs| cs.version > m))
                .chain(std::iter::once(Ok(end_marker(version))));
            read_ahead(chain, |changes| rep.apply(&mirror2, m, changes, None, &[]))
        };
        drop(files);
        match res {
            Ok(a) => Ok(Some(a)),
            // Another handle fetched the same versions first: fine if it got as far.
            Err(strata_engine::Error::HeadMoved { actual, .. }) if actual >= Some(version) => {
                Ok(None)
            }
            Err(strata_engine::Error::HeadMoved { .. }) => {
                Err(SyncError::Engine(strata_engine::Error::Conflict(format!(
                    "another fetch of {branch2:?} is running; try again"
                ))))
            }
            // A damaged record found while applying (the transaction rolled back): name the blob.
            Err(strata_engine::Error::Corrupt { what, detail }) if what.starts_with("blob ") => {
                Err(SyncError::Corrupt { what, detail })
            }
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    if let Some(a) = applied {
        report.versions = a.versions;
        report.entries = a.entries;
    }
    let now = head_of(db, &mirror).await?.unwrap_or(0);
    if now < doc.version {
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

/// An empty change set at the cursor's version, applied last: it folds into the last blob's version,
/// or records that version when the blobs held no entries (an empty snapshot), so the mirror always
/// ends exactly at the cursor's version.
fn end_marker(version: u64) -> RawChangeSet {
    RawChangeSet {
        version,
        timestamp_micros: now_micros(),
        puts: vec![],
        deletes: vec![],
        meta: None,
    }
}

/// Reads the cursor, with the error a user expects when the branch or the whole remote is missing.
async fn require_cursor(remote: &dyn Remote, branch: &str) -> Result<(CursorDoc, CursorToken)> {
    match read_cursor(remote, branch).await? {
        Some(c) if !c.0.deleted => Ok(c),
        Some(_) => Err(SyncError::NotFound(format!(
            "remote {remote} has no branch {branch:?} (it was deleted)"
        ))),
        None => {
            let marker = RemotePath::parse(layout::MARKER).expect("valid");
            if !retrying("read marker", |_| remote.blob_exists(&marker)).await?
                && retrying("list cursors", |_| remote.list_cursors("branches"))
                    .await?
                    .is_empty()
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
    let remote = open_named(db, remote_name).await?;
    fetch_with(db, &*remote, remote_name, branch, progress).await
}

/// Opens the remote configured under `remote_name`, with the registered connector.
pub(crate) async fn open_named(db: &Strata, remote_name: &str) -> Result<Arc<dyn Remote>> {
    let (db, name) = (db.clone(), remote_name.to_string());
    let cfg = blocking(move || config::get_remote(&db, &name)).await?;
    crate::open::open_remote(&cfg)
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
    Ok(fetch_doc(db, remote, remote_name, branch, progress, None)
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
    depth: Option<u64>,
) -> Result<(FetchReport, CursorDoc)> {
    // A blob can vanish between reading the cursor and downloading it (compaction plus gc by another
    // client), and another fetch may race this one: read the cursor again once in those cases.
    for attempt in 0..2 {
        let (doc, _) = require_cursor(remote, branch).await?;
        match fetch_into_mirror_depth(db, remote, remote_name, branch, &doc, progress, depth).await
        {
            Err(SyncError::Remote(RemoteError::NotFound(_))) if attempt == 0 => continue,
            Err(SyncError::Engine(strata_engine::Error::Conflict(_))) if attempt == 0 => continue,
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
    let remote = open_named(db, remote_name).await?;
    pull_with(db, &*remote, remote_name, branch, opts).await
}

/// How often a pull's local step is tried again when another writer moves the branch under it.
const LOCAL_ATTEMPTS: usize = 8;

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
    let before = head_of(db, &mirror).await?.unwrap_or(0);
    opts.hook.at("pull:before-fetch");
    let (fetch, doc) =
        fetch_doc(db, remote, remote_name, branch, &opts.progress, opts.depth).await?;
    opts.progress.phase("merging");
    let r = fetch.remote_version;
    opts.hook.at("pull:after-fetch");
    if r > before {
        // If this database's own push landed but its reply was lost, the newest own blob says which
        // local version the remote then equalled: record it, so the merge below treats those changes
        // as already here instead of as remote changes that would overwrite newer local writes.
        let origin = db_id(db).await?;
        let own = doc
            .deltas
            .iter()
            .chain(doc.snapshot.iter())
            .filter(|d| d.to > before && d.to <= r && d.origin == origin)
            .max_by_key(|d| d.to)
            .cloned();
        if let Some(d) = own {
            let (db, mirror, branch, name) = (
                db.clone(),
                mirror.clone(),
                branch.to_string(),
                remote_name.to_string(),
            );
            blocking(move || {
                let head = db.replication().head(&branch)?;
                if d.source_version > 0 && head.is_some_and(|h| d.source_version <= h) {
                    // That is also the newest point where branch and remote were equal.
                    let mut st = config::get_state(&db, &name, &branch)?;
                    st.equal = Some([d.to, d.source_version]);
                    db.replication().mark_equal(
                        &Rev::at(&mirror, d.to),
                        &Rev::at(&branch, d.source_version),
                        &[config::state_note(&name, &branch, &st)],
                    )?;
                }
                Ok(())
            })
            .await?;
        }
        opts.hook.at("pull:after-own-check");
    }
    let mut report = PullReport {
        fetch,
        merged_version: None,
        applied: 0,
        conflicts_resolved: 0,
        created: false,
        fast_forward: false,
    };
    let (db2, mirror2, branch2, name2) = (
        db.clone(),
        mirror.clone(),
        branch.to_string(),
        remote_name.to_string(),
    );
    let strategy = opts.strategy;
    let conflict_branch = opts.conflict_branch.clone();
    let hook = opts.hook.clone();
    let outcome = blocking(move || {
        merge_mirror(
            &db2,
            &mirror2,
            &branch2,
            &name2,
            r,
            before,
            strategy,
            conflict_branch.as_deref(),
            &hook,
        )
    })
    .await?;
    match outcome {
        Merged::FastForward(f) => {
            report.created = f == FastForward::Created;
            report.fast_forward = f == FastForward::Advanced;
        }
        Merged::Merge(m) => {
            report.merged_version = m.version;
            report.applied = m.applied;
            report.conflicts_resolved = m.conflicts_resolved;
        }
        Merged::Nothing => {}
    }
    tracing::info!(
        remote = remote_name,
        branch,
        version = r,
        applied = report.applied,
        "pulled"
    );
    Ok(report)
}

enum Merged {
    FastForward(FastForward),
    Merge(strata_engine::MergeReport),
    Nothing,
}

/// The local half of a pull: brings `branch` up to `mirror@r`, by a fast-forward when the branch has
/// nothing of its own, else by a three-way merge. Each attempt is one replication call that checks its
/// precondition; when another writer commits in between, it decides again. Blocking.
#[allow(clippy::too_many_arguments)]
fn merge_mirror(
    db: &Strata,
    mirror: &str,
    branch: &str,
    remote_name: &str,
    r: u64,
    before: u64,
    strategy: MergeStrategy,
    conflict_branch: Option<&str>,
    hook: &Hook,
) -> Result<Merged> {
    let rep = db.replication();
    let mirror_rev = Rev::at(mirror, r);
    // A merge keeps the last equal point (the next push replays the branch's own versions after
    // it); a fast-forward makes the branch equal to the remote.
    let prior = config::get_state(db, remote_name, branch)?.equal;
    let state = |head: u64| {
        config::state_note(
            remote_name,
            branch,
            &SyncState {
                merged_remote_version: r,
                branch_version: head,
                last_synced_micros: now_micros(),
                equal: prior,
            },
        )
    };
    let equal_state = |head: u64| {
        config::state_note(
            remote_name,
            branch,
            &SyncState {
                merged_remote_version: r,
                branch_version: head,
                last_synced_micros: now_micros(),
                equal: Some([r, head]),
            },
        )
    };
    let mut try_fast_forward = true;
    for _ in 0..LOCAL_ATTEMPTS {
        let local = match db.branch_info(branch) {
            Ok(i) => Some(i),
            Err(strata_engine::Error::BranchNotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        hook.at("pull:before-merge");
        let expected = local.as_ref().map(|i| i.head).unwrap_or(0);
        // A branch with nothing of its own (absent, empty, or an untouched fork of its mirror, as after
        // a clone) fast-forwards in place: nothing is copied.
        let ff = try_fast_forward
            && match &local {
                None => true,
                Some(i) => {
                    (i.head == 0 && i.parent.is_none())
                        || (i.parent.as_deref() == Some(mirror) && i.fork_version == Some(i.head))
                }
            };
        if ff {
            match rep.fast_forward(branch, expected, &mirror_rev, &[equal_state(r)]) {
                Ok(f) => return Ok(Merged::FastForward(f)),
                Err(strata_engine::Error::HeadMoved { .. }) => continue,
                // The branch has commits of its own after all, or the mirror descends from it:
                // merge instead.
                Err(strata_engine::Error::InvalidOperation(_)) => {
                    try_fast_forward = false;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if db.contains(&Rev::at(branch, expected), &mirror_rev)? {
            // Already merged: only the sync state changes (and if each holds the other, that is a
            // new equal point).
            let equal = db.contains(&mirror_rev, &Rev::at(branch, expected))?;
            rep.meta_write(&[if equal {
                equal_state(expected)
            } else {
                state(expected)
            }])?;
            return Ok(Merged::Nothing);
        }
        let base = (before > 0).then(|| Rev::at(mirror, before));
        match rep.merge(
            &mirror_rev,
            branch,
            strategy,
            base.as_ref(),
            Some(expected),
            |after| vec![state(after)],
        ) {
            Ok(m) => return Ok(Merged::Merge(m.merge)),
            Err(strata_engine::Error::HeadMoved { .. }) => continue,
            Err(strata_engine::Error::MergeConflicts(c)) => {
                if let Some(name) = conflict_branch {
                    db.save_conflicts(branch, &c, name)?;
                }
                return Err(SyncError::Conflicts(c));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(SyncError::Engine(strata_engine::Error::Conflict(format!(
        "branch {branch:?} kept moving under {LOCAL_ATTEMPTS} merge attempts; pull again"
    ))))
}

// ----- push ---------------------------------------------------------------------------------------

/// Pushes a branch.
pub async fn push(
    db: &Strata,
    remote_name: &str,
    branch: &str,
    opts: &PushOptions,
) -> Result<PushReport> {
    let remote = open_named(db, remote_name).await?;
    push_with(db, &*remote, remote_name, branch, opts).await
}

/// What the blocking half of a push decided after reading the remote cursor.
struct Plan {
    /// The branch version pushed.
    h: u64,
    /// The mirror's head when planned (`None`: no mirror).
    m_head: Option<u64>,
    /// The blob to upload (`None`: an empty first push, or nothing to push).
    blob: Option<SpooledBlob>,
    first: bool,
    up_to_date: bool,
    /// The remote version after the push.
    new_version: u64,
    /// Versions in the blob.
    versions: u64,
    /// The newest pushed version's metadata (for the cursor's push summary).
    newest: Option<CommitMeta>,
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
    let h = {
        let (db, branch) = (db.clone(), branch.to_string());
        blocking(move || Ok(db.branch_info(&branch)?.head)).await?
    };
    let origin = db_id(db).await?;
    let mirror = mirror_name(remote_name, branch);
    let mut m_head = head_of(db, &mirror).await?;
    opts.hook.at("push:before-read-cursor");
    let cur = read_cursor(remote, branch).await?;
    opts.hook.at("push:after-read-cursor");
    let r = cur.as_ref().map(|c| c.0.version).unwrap_or(0);
    let m = m_head.unwrap_or(0);
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
            m_head = head_of(db, &mirror).await?;
            opts.hook.at("push:after-own-fetch");
        }
    }
    let m = m_head.unwrap_or(0);
    if r < m {
        return Err(SyncError::Diverged(format!(
            "remote branch {branch:?} is at version {r} but this database pushed or fetched version {m} \
             (the remote was reset or replaced)"
        )));
    }
    // The newest blob this database uploaded, if it is the cursor's newest: the remote equals the
    // branch at the version it records.
    let newest_own = cur.as_ref().and_then(|(doc, _)| {
        doc.deltas
            .last()
            .or(doc.snapshot.as_ref())
            .filter(|d| d.to == m && d.origin == origin && d.source_version > 0)
            .map(|d| d.source_version)
    });
    opts.progress.phase("building the delta");
    let plan = {
        let (db, mirror, branch, name) = (
            db.clone(),
            mirror.clone(),
            branch.to_string(),
            remote_name.to_string(),
        );
        blocking(move || plan_push(&db, &mirror, &branch, &name, h, m_head, r, newest_own)).await?
    };
    opts.hook.at("push:after-build");
    if plan.up_to_date {
        return Ok(PushReport {
            branch: branch.to_string(),
            remote_version: r,
            up_to_date: true,
            versions: 0,
            entries: 0,
            bytes: 0,
            blob: None,
            packed: None,
        });
    }
    let Plan {
        h,
        m_head,
        blob,
        first,
        new_version,
        versions,
        newest,
        ..
    } = plan;

    if cur.is_none() {
        let marker = RemotePath::parse(layout::MARKER).expect("valid");
        let bytes = Bytes::from(layout::marker_bytes());
        match retrying("write marker", |_| {
            remote.put_bytes_if_absent(&marker, bytes.clone())
        })
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
        versions,
        entries: 0,
        bytes: 0,
        blob: None,
        packed: None,
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
            shallow: None,
            pushes: vec![],
            deleted: false,
        },
    };
    doc.format = layout::CURSOR_FORMAT;
    // A push re-creates a deleted branch over its tombstone.
    doc.deleted = false;
    let label = format!("upload {branch}");
    let mut published_at = Instant::now();
    if blob.is_some() {
        opts.progress.phase("uploading");
    }
    if let Some(b) = &blob {
        let mut path;
        let mut uploads = 0;
        loop {
            path = layout::delta_path(branch, r, new_version);
            published_at = Instant::now();
            upload(remote, &path, b, &label, &opts.progress).await?;
            opts.hook.at("push:after-upload");
            uploads += 1;
            if published_at.elapsed() < opts.publish_within / 2 {
                break;
            }
            if uploads >= MAX_UPLOADS {
                return Err(too_slow(opts.publish_within, uploads));
            }
            // Too slow to publish safely beside gc: a fresh name restarts the clock.
            tracing::warn!(blob = %path, "upload took too long to publish safely; uploading again");
        }
        report.entries = b.header.entry_count;
        report.bytes += b.bytes;
        report.blob = Some(path.to_string());
        let mut rf = blob_ref(&path, b, &origin, h);
        rf.level = size_level(b.bytes);
        doc.deltas.push(rf);
    }
    doc.version = new_version;
    doc.updated_micros = now_micros();
    // Compaction keeps every version: the newest run of `pack_fanout` blobs of one level becomes one
    // blob of the next level, so a push pays for what the packed deltas weigh (amortised over
    // log(pushes) levels), never for the whole branch. State snapshots are `remote compact`'s job.
    let pack_started = Instant::now();
    loop {
        match pack_tail(db, remote, branch, &mut doc, &origin, opts).await {
            Ok(Some(packed)) => report.packed = Some(packed),
            Ok(None) => break,
            // A blob to pack is gone: another client replaced it (and gc removed it) after this push
            // read the cursor, so the publish below will be rejected anyway. Skip packing.
            Err(SyncError::Remote(RemoteError::NotFound(_))) => break,
            Err(e) => return Err(e),
        }
    }
    if report.packed.is_some() {
        // Packs are fresh names too: the publish window starts at the oldest upload still unpublished.
        published_at = published_at.min(pack_started);
    }
    doc.record_push(PushSummary {
        time_micros: now_micros(),
        author: newest.as_ref().and_then(|m| m.author.clone()),
        message: newest
            .as_ref()
            .map(|m| m.message.clone())
            .filter(|m| !m.is_empty()),
        from: r,
        to: new_version,
        entries: report.entries,
    });
    opts.hook.at("push:before-cas");
    opts.progress.phase("publishing");
    let token = cur.as_ref().map(|c| c.1.clone());
    let deadline = (published_at, opts.publish_within);
    publish(remote, remote_name, branch, &doc, token.as_ref(), deadline).await?;
    opts.hook.at("push:after-cas");
    // The remote now equals the branch at `h`; make the mirror say so, in one transaction with the sync
    // state. Another handle may have fetched our version into the mirror already: that is as good.
    let state = config::state_note(
        remote_name,
        branch,
        &SyncState {
            merged_remote_version: new_version,
            branch_version: h,
            last_synced_micros: now_micros(),
            equal: Some([new_version, h]),
        },
    );
    let (db2, mirror2, branch2) = (db.clone(), mirror.clone(), branch.to_string());
    blocking(move || {
        let rep = db2.replication();
        let branch_rev = Rev::at(&branch2, h);
        let res = if first {
            // The first push keeps the branch's own version numbers: the mirror is a fork of it.
            rep.set_fork(&mirror2, m_head, &branch_rev, std::slice::from_ref(&state))
                .map(|_| ())
        } else {
            let b = blob.as_ref().expect("a delta push has a blob");
            let reader = BlobReader::open(b.file.as_file(), "pushed delta")?
                .raw()
                .chain(std::iter::once(Ok(end_marker(new_version))));
            rep.apply(&mirror2, m, reader, Some(&branch_rev), std::slice::from_ref(&state))
                .map(|_| ())
        };
        match res {
            Ok(()) => Ok(()),
            Err(strata_engine::Error::HeadMoved { .. })
                if rep.head(&mirror2)?.is_some_and(|v| v >= new_version) =>
            {
                rep.mark_equal(&Rev::at(&mirror2, new_version), &branch_rev, &[state])?;
                Ok(())
            }
            Err(e) => Err(SyncError::Engine(strata_engine::Error::Conflict(format!(
                "the push reached the remote (version {new_version}) but recording it here failed: {e}; \
                 push again to record it"
            )))),
        }
    })
    .await?;
    tracing::info!(
        remote = remote_name,
        branch,
        version = new_version,
        versions = report.versions,
        entries = report.entries,
        bytes = report.bytes,
        "pushed"
    );
    Ok(report)
}

/// When the newest `pack_fanout` blobs of the cursor's chain share one level, packs them into one blob
/// of the next level holding the same change sets (every version kept) and puts it in their place.
/// Returns the pack's path, or `None` when there was nothing to pack.
async fn pack_tail(
    db: &Strata,
    remote: &dyn Remote,
    branch: &str,
    doc: &mut CursorDoc,
    origin: &str,
    opts: &PushOptions,
) -> Result<Option<String>> {
    let fanout = opts.pack_fanout.max(2);
    let n = doc.deltas.len();
    if n < fanout {
        return Ok(None);
    }
    let tail = &doc.deltas[n - fanout..];
    let level = tail[0].level;
    if tail.iter().any(|d| d.level != level) {
        return Ok(None);
    }
    let refs: Vec<BlobRef> = tail.to_vec();
    let dir = {
        let db = db.clone();
        blocking(move || spool_dir(&db)).await?
    };
    let (from, to) = (refs[0].from, refs[refs.len() - 1].to);
    let source_version = refs[refs.len() - 1].source_version;
    let packed = repack(
        remote,
        branch,
        &refs,
        from,
        to,
        &dir,
        "pack",
        &opts.progress,
    )
    .await?
    .ok_or_else(|| {
        SyncError::corrupt(
            format!("cursor of {branch:?}"),
            format!("its blobs ({from}, {to}] hold no versions"),
        )
    })?;
    let path = layout::delta_path(branch, from, to);
    upload(
        remote,
        &path,
        &packed,
        &format!("upload {branch} (pack)"),
        &opts.progress,
    )
    .await?;
    let mut rf = blob_ref(&path, &packed, origin, source_version);
    rf.level = (level + 1).max(size_level(packed.bytes));
    // A pack keeps the origin of its newest blob only if every packed blob had it, so that the
    // "own upload" checks never take another database's versions for ours.
    if refs.iter().any(|r| r.origin != refs[refs.len() - 1].origin) {
        rf.origin = String::new();
        rf.source_version = 0;
    } else {
        rf.origin = refs[refs.len() - 1].origin.clone();
    }
    doc.deltas.truncate(n - fanout);
    doc.deltas.push(rf);
    tracing::debug!(blob = %path, level = level + 1, from, to, "packed deltas");
    Ok(Some(path.to_string()))
}

/// Downloads `refs` (verifying each) and writes their change sets after version `after` into one new
/// delta blob `(after, to]`, the same change sets, every version kept: what packing after a push and
/// `remote compact` both do. `None` when no change set lies after `after`.
#[allow(clippy::too_many_arguments)]
async fn repack(
    remote: &dyn Remote,
    branch: &str,
    refs: &[BlobRef],
    after: u64,
    to: u64,
    dir: &Path,
    what: &str,
    progress: &Progress,
) -> Result<Option<SpooledBlob>> {
    let mut files = Vec::with_capacity(refs.len());
    for (i, r) in refs.iter().enumerate() {
        let label = format!("{what} {branch} ({}/{})", i + 1, refs.len());
        files.push(download(remote, r, dir, &label, progress).await?);
    }
    let (branch, refs, dir) = (branch.to_string(), refs.to_vec(), dir.to_path_buf());
    blocking(move || {
        let mut b = BlobBuilder::new_in(&dir, "delta", &branch, after, to)?;
        for (f, r) in files.iter().zip(&refs) {
            verify_blob(f, r, &branch)?;
            for cs in BlobReader::open(f.as_file(), &r.path)? {
                let cs = cs?;
                if cs.version > after {
                    b.push(&cs)?;
                }
            }
        }
        Ok(Some(b.finish()?).filter(|b| b.header.record_count > 0))
    })
    .await
}

/// The compaction level a blob of this size starts at: 0 up to 64 KiB, then one more per factor of 8.
/// A large blob (a first push, say) is never packed together with small ones: packing costs what the
/// packed blobs weigh, and blobs of one level weigh about the same.
fn size_level(bytes: u64) -> u32 {
    let mut level = 0;
    let mut limit: u64 = 64 << 10;
    while bytes > limit && level < 16 {
        level += 1;
        limit = limit.saturating_mul(8);
    }
    level
}

/// A stable digest of a value (or of its absence), to compare a replayed value with the branch's.
fn digest(v: Option<&Value>) -> [u8; 32] {
    match v {
        None => [0; 32],
        Some(v) => Sha256::digest(v.to_msgpack()).into(),
    }
}

/// Change sets read ahead (decompressed and parsed) on their own thread while `apply` writes the
/// previous ones: at most this many wait, each cut at about 4 MiB, so memory stays bounded.
const READ_AHEAD: usize = 4;

/// Runs `apply` over `changes` while another thread produces them, so that reading blobs (zstd and
/// MessagePack) overlaps SQLite's writes. Called inside `spawn_blocking`, never on a runtime worker.
/// When `apply` stops early (an error), the producer stops at its next change set.
fn read_ahead<T: Send, R>(
    changes: impl Iterator<Item = T> + Send,
    apply: impl FnOnce(&mut dyn Iterator<Item = T>) -> R,
) -> R {
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(READ_AHEAD);
        s.spawn(move || {
            for cs in changes {
                if tx.send(cs).is_err() {
                    break;
                }
            }
        });
        let mut received = rx.into_iter();
        apply(&mut received)
    })
}

/// The blocking half of a push before any upload: checks the branch contains the mirror, records an
/// equal point a crashed push left unrecorded, and builds the blob: every version of the branch since
/// it last equalled the remote, each its own change set with its time, kind, message and author. After
/// a pull merged the remote in, the branch's own versions are replayed on top of the remote (the merges
/// of the mirror are skipped) and, if the result differs from the branch, one more version makes the
/// remote equal to it. A push with nothing to upload records the sync state and returns `up_to_date`.
#[allow(clippy::too_many_arguments)]
fn plan_push(
    db: &Strata,
    mirror: &str,
    branch: &str,
    remote_name: &str,
    h: u64,
    m_head: Option<u64>,
    r: u64,
    newest_own: Option<u64>,
) -> Result<Plan> {
    let rep = db.replication();
    let m = m_head.unwrap_or(0);
    let branch_rev = Rev::at(branch, h);
    let mirror_rev = Rev::at(mirror, m);
    let mut recovered = None;
    if m > 0 && !db.contains(&branch_rev, &mirror_rev)? {
        // A push (or its re-run) that died between moving the cursor and recording the equal point
        // leaves the mirror at this database's own newest upload: record that point and look again.
        if let Some(sv) = newest_own.filter(|&sv| sv <= h) {
            rep.mark_equal(&mirror_rev, &Rev::at(branch, sv), &[])?;
            recovered = Some([m, sv]);
        }
    }
    if m > 0 && !db.contains(&branch_rev, &mirror_rev)? {
        return Err(SyncError::Rejected(format!(
            "fetched changes from {remote_name} are not merged into {branch:?}; pull first"
        )));
    }
    let first = m == 0 && r == 0;
    let prior = config::get_state(db, remote_name, branch)?;
    let state = |v: u64, equal: Option<[u64; 2]>| {
        config::state_note(
            remote_name,
            branch,
            &SyncState {
                merged_remote_version: v,
                branch_version: h,
                last_synced_micros: now_micros(),
                equal,
            },
        )
    };
    let nothing = |eq| -> Result<Plan> {
        // Nothing differs: note the equal point (so the next diff starts here) and the sync state.
        if !first {
            rep.mark_equal(&mirror_rev, &branch_rev, &[state(r, eq)])?;
        }
        Ok(Plan {
            h,
            m_head,
            blob: None,
            first,
            up_to_date: !first,
            new_version: r,
            versions: 0,
            newest: None,
        })
    };
    if first && h == 0 {
        return nothing(None);
    }
    // Where the branch last equalled the remote: [remote version, branch version].
    let equal = if first {
        Some([0, 0])
    } else {
        recovered
            .or(prior.equal)
            .filter(|&[rv, bv]| rv <= m && bv <= h)
    };
    let author = db.config("user.name")?;
    let mut ch = Chunker::new(BlobBuilder::open_ended(
        &spool_dir(db)?,
        "delta",
        branch,
        r,
    )?);
    let new_version;
    match equal {
        Some([rv, bv]) => {
            let skip: std::collections::BTreeSet<u64> = rep
                .merge_versions(branch, mirror, bv)?
                .into_iter()
                .collect();
            let linear = rv == m && skip.is_empty();
            // Linear: version v becomes remote version r + (v - bv), so a first push keeps the
            // branch's numbers. Rebased: the own versions are numbered on from r.
            let mut overlay: std::collections::HashMap<EntryKey, ([u8; 32], bool)> =
                Default::default();
            let mut local = None;
            let mut next = r;
            // The branch's own versions after `bv`: the runs between the skipped merges, read run by
            // run so that the merged changes (however many) are never read.
            let mut runs = Vec::new();
            let mut lo = bv;
            for &v in skip.iter().filter(|&&v| v <= h) {
                if v > lo + 1 {
                    runs.push((lo, v - 1));
                }
                lo = v;
            }
            if h > lo {
                runs.push((lo, h));
            }
            let own = runs
                .into_iter()
                .map(|(lo, hi)| db.changes_between(&Rev::at(branch, hi), lo))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            for cs in own.into_iter().flatten() {
                let cs = cs?;
                if skip.contains(&cs.version) {
                    continue;
                }
                let puts: Vec<_> = cs
                    .puts
                    .into_iter()
                    .filter(|(k, _)| !is_internal_space(k))
                    .collect();
                let deletes: Vec<_> = cs
                    .deletes
                    .into_iter()
                    .filter(|k| !is_internal_space(k))
                    .collect();
                if puts.is_empty() && deletes.is_empty() {
                    continue;
                }
                if local != Some(cs.version) {
                    local = Some(cs.version);
                    next = if linear {
                        r + (cs.version - bv)
                    } else {
                        next + 1
                    };
                    ch.start(next, cs.timestamp_micros, cs.meta.clone());
                }
                for (k, v) in puts {
                    if !linear {
                        overlay.insert(k.clone(), (digest(Some(&v)), false));
                    }
                    ch.add(&k, Some(v))?;
                }
                for k in deletes {
                    if !linear {
                        overlay.insert(k.clone(), (digest(None), false));
                    }
                    ch.add(&k, None)?;
                }
            }
            if linear {
                if ch.entries() == 0 {
                    return nothing(Some([r, h]));
                }
                new_version = r + (h - bv);
            } else {
                // What replaying left different from the branch becomes one more version.
                ch.start(
                    next + 1,
                    now_micros(),
                    Some(CommitMeta {
                        kind: "merge".into(),
                        message: format!(
                            "make {remote_name} equal {branch}@{h} after merging its changes"
                        ),
                        author: author.clone(),
                    }),
                );
                db.diff_each(&mirror_rev, &branch_rev, |k, _, b| {
                    if is_internal_space(k) {
                        return Ok(());
                    }
                    match overlay.get_mut(k) {
                        Some((d, seen)) => {
                            *seen = true;
                            if *d != digest(b.as_ref()) {
                                ch.add(k, b)?;
                            }
                            Ok(())
                        }
                        None => ch.add(k, b),
                    }
                })?;
                // Keys the branch replayed but holds as the remote does (a merge took the remote's).
                let mut unseen: Vec<_> = overlay
                    .iter()
                    .filter(|(_, (_, seen))| !seen)
                    .map(|(k, (d, _))| (k.clone(), *d))
                    .collect();
                unseen.sort_by(|a, b| a.0.cmp(&b.0));
                for (k, d) in unseen {
                    let now = db.get_at(&branch_rev, &k.space, k.kind, &k.key)?;
                    if d != digest(now.as_ref()) {
                        ch.add(&k, now)?;
                    }
                }
                if ch.entries() == 0 {
                    return nothing(Some([r, h]));
                }
                new_version = ch.last_version();
            }
        }
        None => {
            // No equal point recorded (a database synced before history sync): the net difference
            // goes as one version.
            ch.start(
                r + 1,
                now_micros(),
                Some(CommitMeta {
                    kind: "commit".into(),
                    message: format!("{branch}@{h}: changes since remote version {r}"),
                    author: author.clone(),
                }),
            );
            db.diff_each(&mirror_rev, &branch_rev, |k, _, b| {
                if is_internal_space(k) {
                    Ok(())
                } else {
                    ch.add(k, b)
                }
            })?;
            if ch.entries() == 0 {
                return nothing(Some([r, h]));
            }
            new_version = r + 1;
        }
    }
    let newest = ch.newest_meta();
    let versions = ch.versions();
    Ok(Plan {
        h,
        m_head,
        blob: Some(ch.finish_at(new_version)?),
        first,
        up_to_date: false,
        new_version,
        versions,
        newest,
    })
}

/// Compare-and-swaps the cursor to `doc`. A lost race is `Rejected`. A transient failure is not retried
/// blindly: the cursor is read again, and the write counts as done if the cursor now holds `doc`, is
/// retried only if the cursor still holds the version it replaces, and is rejected otherwise.
async fn publish(
    remote: &dyn Remote,
    remote_name: &str,
    branch: &str,
    doc: &CursorDoc,
    token: Option<&CursorToken>,
    (uploaded_at, within): (Instant, Duration),
) -> Result<()> {
    let name = layout::cursor_name(branch);
    let bytes = Bytes::from(doc.to_bytes());
    let rejected = || {
        SyncError::Rejected(format!(
            "remote has changes; pull first (another client pushed to {remote_name} during this push)"
        ))
    };
    let mut attempt = 0;
    loop {
        // Checked before every attempt: past the window, gc may have removed the blob.
        if uploaded_at.elapsed() >= within {
            return Err(SyncError::Remote(RemoteError::Transient(
                format!(
                    "the push took longer than {within:?} between upload and publication, so garbage \
                     collection may remove its blob; push again"
                )
                .into(),
            )));
        }
        match remote.write_cursor(&name, bytes.clone(), token).await {
            Ok(_) => return Ok(()),
            Err(RemoteError::Conflict(_)) => return Err(rejected()),
            Err(e) if e.is_retryable() && attempt < RETRIES => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                let now = retrying("read cursor", |_| remote.read_cursor(&name)).await?;
                match now {
                    Some(c) if c.value == bytes => return Ok(()),
                    Some(c) if Some(&c.token) == token => continue,
                    None if token.is_none() => continue,
                    _ => return Err(rejected()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

// ----- status, listing, gc, compaction ------------------------------------------------------------

/// Where a branch stands against a remote (reads the remote cursor).
#[tracing::instrument(level = "debug", skip_all, fields(remote = remote_name, branch))]
pub async fn status(db: &Strata, remote_name: &str, branch: &str) -> Result<SyncStatus> {
    let remote = open_named(db, remote_name).await?;
    status_with(db, &*remote, remote_name, branch).await
}

/// [`status`] over a given remote.
pub async fn status_with(
    db: &Strata,
    remote: &dyn Remote,
    remote_name: &str,
    branch: &str,
) -> Result<SyncStatus> {
    let cur = read_cursor(remote, branch).await?.filter(|c| !c.0.deleted);
    let (db, remote_name, branch) = (db.clone(), remote_name.to_string(), branch.to_string());
    blocking(move || local_status(&db, &remote_name, &branch, cur.map(|c| c.0))).await
}

fn local_status(
    db: &Strata,
    remote_name: &str,
    branch: &str,
    cur: Option<CursorDoc>,
) -> Result<SyncStatus> {
    let info = db.branch_info(branch)?;
    let mirror = mirror_name(remote_name, branch);
    let m = db.replication().head(&mirror)?;
    let state = config::get_state(db, remote_name, branch)?;
    let head = Rev::at(branch, info.head);
    let mut ahead_entries = 0u64;
    match m {
        Some(mv) => {
            // Count local changes only: against the mirror version the branch last merged or pushed,
            // not against remote changes fetched but not merged yet.
            let base = if db.contains(&head, &Rev::at(&mirror, mv))? {
                mv
            } else {
                state.merged_remote_version.min(mv)
            };
            db.diff_each(&Rev::at(&mirror, base), &head, |k, _, _| {
                if !is_internal_space(k) {
                    ahead_entries += 1;
                }
                Ok(())
            })?
        }
        None => {
            for cs in db.snapshot(&head)? {
                ahead_entries += cs?
                    .puts
                    .iter()
                    .filter(|(k, _)| !is_internal_space(k))
                    .count() as u64;
            }
        }
    }
    let synced = state.last_synced_micros > 0;
    let remote_version = cur.as_ref().map(|c| c.version);
    let behind_entries = match &cur {
        Some(doc) => {
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
    // Versions ahead: none when nothing differs from what the remote last saw.
    let ahead_versions = if ahead_entries == 0 {
        0
    } else {
        info.head.saturating_sub(state.branch_version)
    };
    Ok(SyncStatus {
        branch: branch.to_string(),
        remote_version,
        mirror_version: m.unwrap_or(0),
        ahead_versions,
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
    for name in retrying("list cursors", |_| remote.list_cursors("branches")).await? {
        let branch = layout::branch_of_cursor(&name)?;
        if let Some(c) = retrying("read cursor", |_| remote.read_cursor(&name)).await? {
            let doc = CursorDoc::parse(name.as_str(), &c.value)?;
            if doc.deleted {
                continue;
            }
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

/// What `delete_remote_branch` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DeleteReport {
    /// The branch.
    pub branch: String,
    /// The remote version it had.
    pub remote_version: u64,
    /// Blobs it referenced (gc reclaims them once they are older than its grace period).
    pub blobs: usize,
    /// Whether this database's origin mirror of it was deleted too.
    pub mirror_deleted: bool,
}

/// Deletes branch `branch` on remote `remote_name` (git's `push --delete`): its cursor becomes a
/// tombstone by compare-and-swap (a concurrent push makes this fail with [`SyncError::Rejected`]),
/// so clones, pulls and listings no longer see it and `gc` reclaims its blobs; then the local origin
/// mirror and sync state go, in one transaction. The local branch is untouched.
#[tracing::instrument(level = "info", skip_all, fields(remote = remote_name, branch))]
pub async fn delete_remote_branch(
    db: &Strata,
    remote_name: &str,
    branch: &str,
) -> Result<DeleteReport> {
    let cfg = config::get_remote(db, remote_name)?;
    let remote = crate::open::open_remote(&cfg)?;
    delete_remote_branch_with(db, &*remote, remote_name, branch).await
}

/// [`delete_remote_branch`] over an open remote.
pub async fn delete_remote_branch_with(
    db: &Strata,
    remote: &dyn Remote,
    remote_name: &str,
    branch: &str,
) -> Result<DeleteReport> {
    strata_engine::names::validate_branch_name(branch, false)?;
    let (doc, token) = require_cursor(remote, branch).await?;
    let tomb = CursorDoc {
        format: layout::CURSOR_FORMAT,
        branch: branch.to_string(),
        version: 0,
        updated_micros: now_micros(),
        snapshot: None,
        deltas: vec![],
        shallow: None,
        pushes: vec![],
        deleted: true,
    };
    match remote
        .write_cursor(
            &layout::cursor_name(branch),
            Bytes::from(tomb.to_bytes()),
            Some(&token),
        )
        .await
    {
        Ok(_) => {}
        Err(RemoteError::Conflict(_)) => {
            return Err(SyncError::Rejected(format!(
                "remote has changes; branch {branch:?} on {remote_name} moved during the delete:                  pull, then delete again"
            )))
        }
        Err(e) => return Err(e.into()),
    }
    let (db2, mirror, state_key) = (
        db.clone(),
        mirror_name(remote_name, branch),
        format!("state/{remote_name}/{branch}"),
    );
    let mirror_deleted = blocking(move || {
        let notes = [strata_engine::Note::delete(config::SYNC_SPACE, &state_key)];
        Ok(db2.replication().delete_internal_branch(&mirror, &notes)?)
    })
    .await?;
    tracing::info!(remote = remote_name, branch, "deleted remote branch");
    Ok(DeleteReport {
        branch: branch.to_string(),
        remote_version: doc.version,
        blobs: doc.blobs().count(),
        mirror_deleted,
    })
}

/// The store's own clock, in milliseconds since the Unix epoch: the modification time the store gives
/// a probe blob written now (0 if the store reports none).
async fn store_clock(remote: &dyn Remote) -> Result<u64> {
    let dir = format!("gc-clock/{}", uuid::Uuid::new_v4().simple());
    let probe = RemotePath::parse(&format!("{dir}/probe")).expect("valid path");
    let probe_ref = &probe;
    retrying("write gc clock probe", |attempt| async move {
        match remote
            .put_bytes_if_absent(probe_ref, Bytes::from_static(b"strata gc clock probe\n"))
            .await
        {
            Err(RemoteError::AlreadyExists(_)) if attempt > 0 => Ok(()),
            other => other,
        }
    })
    .await?;
    let listed = retrying("list gc clock probe", |_| remote.list_blobs(&dir)).await;
    let _ = remote.delete_blob(&probe).await;
    Ok(listed?
        .iter()
        .find(|m| m.path == probe)
        .map(|m| m.modified_millis)
        .unwrap_or(0))
}

/// Deletes blobs that no cursor references and that are older than `grace` **by the store's clock**.
/// Safe while others push: the store's time comes from a probe blob written before the cursors are
/// read, a blob whose age the store does not report is never deleted, and a push refuses to publish a
/// blob whose upload started more than [`PUBLISH_WITHIN`] ago, so with a longer grace period a blob
/// that gc sees as unreferenced and old can no longer become referenced.
#[tracing::instrument(level = "info", skip_all, fields(remote = %remote))]
pub async fn gc(remote: &dyn Remote, grace: Duration) -> Result<GcReport> {
    // The probe below writes: never into a location that holds no Strata remote.
    let marker = RemotePath::parse(layout::MARKER).expect("valid");
    if !retrying("read marker", |_| remote.blob_exists(&marker)).await?
        && retrying("list cursors", |_| remote.list_cursors("branches"))
            .await?
            .is_empty()
    {
        return Err(SyncError::NotAStrataRemote(remote.to_string()));
    }
    let now = store_clock(remote).await?;
    let mut referenced = std::collections::HashSet::new();
    for name in retrying("list cursors", |_| remote.list_cursors("branches")).await? {
        if let Some(c) = retrying("read cursor", |_| remote.read_cursor(&name)).await? {
            for b in CursorDoc::parse(name.as_str(), &c.value)?.blobs() {
                referenced.insert(b.path.clone());
            }
        }
    }
    let mut report = GcReport {
        referenced: referenced.len(),
        ..Default::default()
    };
    for meta in retrying("list blobs", |_| remote.list_blobs("branches")).await? {
        if referenced.contains(meta.path.as_str()) {
            continue;
        }
        if meta.modified_millis == 0 || now == 0 {
            report.kept_unknown_age += 1;
            continue;
        }
        if now.saturating_sub(meta.modified_millis) < grace.as_millis() as u64 {
            report.kept_young += 1;
            continue;
        }
        retrying("delete blob", |_| remote.delete_blob(&meta.path)).await?;
        report.deleted += 1;
        report.bytes_freed += meta.size;
    }
    tracing::info!(remote = %remote, deleted = report.deleted, "gc");
    Ok(report)
}

/// What `remote compact` should do besides packing.
#[derive(Clone, Debug, Default)]
pub struct CompactOptions {
    /// Drop the versions before this one: history then starts from a state snapshot at it. Nothing
    /// else ever drops versions.
    pub squash_before: Option<u64>,
    /// Progress reporting.
    pub progress: Progress,
}

/// Compacts a branch on a remote, keeping every version: its whole delta chain becomes one blob of
/// the same change sets (so a clone needs few requests), and a state snapshot at the head is kept
/// beside the chain for shallow clones (`clone --depth`). With `squash_before`, the versions before
/// it are dropped (history starts from a snapshot there). Fetches first; the local mirror supplies
/// the states.
#[tracing::instrument(level = "info", skip_all, fields(remote = remote_name, branch))]
pub async fn compact(
    db: &Strata,
    remote_name: &str,
    branch: &str,
    opts: &CompactOptions,
) -> Result<CompactReport> {
    let remote = open_named(db, remote_name).await?;
    compact_with(db, &*remote, remote_name, branch, opts).await
}

/// What `remote compact` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CompactReport {
    /// The branch.
    pub branch: String,
    /// The remote version (unchanged by compaction).
    pub remote_version: u64,
    /// Whether there was nothing to do.
    pub up_to_date: bool,
    /// Delta blobs before and after.
    pub blobs_before: usize,
    /// Delta blobs after (1 when packed).
    pub blobs_after: usize,
    /// Where history starts now (0: at the beginning).
    pub history_from: u64,
    /// Versions dropped by `squash_before` (0 otherwise).
    pub versions_dropped: u64,
    /// The shallow-clone snapshot written, if any.
    pub snapshot: Option<String>,
    /// Bytes uploaded.
    pub bytes: u64,
}

/// [`compact`] over a given remote.
pub async fn compact_with(
    db: &Strata,
    remote: &dyn Remote,
    remote_name: &str,
    branch: &str,
    opts: &CompactOptions,
) -> Result<CompactReport> {
    let progress = &opts.progress;
    let origin = db_id(db).await?;
    let (doc, token) = require_cursor(remote, branch).await?;
    fetch_into_mirror(db, remote, remote_name, branch, &doc, progress).await?;
    let old_base = doc.snapshot.as_ref().map(|s| s.to).unwrap_or(0);
    let mut report = CompactReport {
        branch: branch.to_string(),
        remote_version: doc.version,
        up_to_date: true,
        blobs_before: doc.deltas.len(),
        blobs_after: doc.deltas.len(),
        history_from: old_base,
        versions_dropped: 0,
        snapshot: None,
        bytes: 0,
    };
    let base = match opts.squash_before {
        Some(v) if v > doc.version => {
            return Err(SyncError::Config(format!(
                "cannot squash before version {v}: remote branch {branch:?} is at version {}",
                doc.version
            )))
        }
        Some(v) if v > old_base => v,
        _ => old_base,
    };
    let squash = base > old_base;
    let has_shallow_at_head = doc.shallow.as_ref().is_some_and(|s| s.to == doc.version);
    if doc.version == 0 || (!squash && doc.deltas.len() <= 1 && has_shallow_at_head) {
        return Ok(report);
    }
    let mirror = mirror_name(remote_name, branch);
    if squash {
        // The state at `base` must be whole here: the mirror's history must reach back to it.
        let (db2, mirror2) = (db.clone(), mirror.clone());
        let oldest = blocking(move || Ok(db2.replication().oldest_version(&mirror2)?)).await?;
        if oldest.is_some_and(|o| o > base) {
            return Err(SyncError::Config(format!(
                "this database holds {remote_name}/{branch} only from version {} (a shallow clone), so it \
                 cannot build the state at version {base}; run the squash from a full clone",
                oldest.unwrap_or(0)
            )));
        }
    }
    let dir = {
        let db = db.clone();
        blocking(move || spool_dir(&db)).await?
    };
    let mut new = doc.clone();
    new.format = layout::CURSOR_FORMAT;
    // The chain after `base` as one blob of the same change sets.
    let keep: Vec<BlobRef> = doc.deltas.iter().filter(|d| d.to > base).cloned().collect();
    if squash || keep.len() > 1 {
        let packed = repack(
            remote,
            branch,
            &keep,
            base,
            doc.version,
            &dir,
            "compact",
            progress,
        )
        .await?;
        new.deltas.clear();
        if let Some(p) = packed {
            let path = layout::delta_path(branch, base, doc.version);
            upload(remote, &path, &p, &format!("upload {branch}"), progress).await?;
            report.bytes += p.bytes;
            let mut rf = blob_ref(&path, &p, "", 0);
            rf.level = keep.iter().map(|k| k.level).max().unwrap_or(0) + 1;
            new.deltas.push(rf);
        } else if base < doc.version {
            return Err(SyncError::corrupt(
                format!("cursor of {branch:?}"),
                format!("its blobs hold no versions after {base}"),
            ));
        }
    }
    if squash {
        let snap = {
            let (db, mirror, branch) = (db.clone(), mirror.clone(), branch.to_string());
            blocking(move || build_snapshot(&db, &Rev::at(&mirror, base), &branch, base)).await?
        };
        let path = layout::snapshot_path(branch, base);
        upload(remote, &path, &snap, &format!("upload {branch}"), progress).await?;
        report.bytes += snap.bytes;
        new.snapshot = Some(blob_ref(&path, &snap, &origin, 0));
        report.versions_dropped = base - old_base;
    }
    if !new
        .shallow
        .as_ref()
        .is_some_and(|s| s.to == doc.version && s.to >= base)
    {
        let snap = {
            let (db, branch, v) = (db.clone(), branch.to_string(), doc.version);
            blocking(move || build_snapshot(&db, &Rev::at(&mirror, v), &branch, v)).await?
        };
        let path = layout::snapshot_path(branch, doc.version);
        upload(remote, &path, &snap, &format!("upload {branch}"), progress).await?;
        report.bytes += snap.bytes;
        report.snapshot = Some(path.to_string());
        new.shallow = Some(blob_ref(&path, &snap, &origin, 0));
    }
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
    report.up_to_date = false;
    report.blobs_after = new.deltas.len();
    report.history_from = base;
    tracing::info!(
        remote = remote_name,
        branch,
        blobs_before = report.blobs_before,
        blobs_after = report.blobs_after,
        history_from = base,
        "compacted"
    );
    Ok(report)
}
