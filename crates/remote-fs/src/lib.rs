//! # strata-remote-fs
//!
//! [`FsRemote`]: a Strata [`Remote`] in a folder, local or shared, safe for several processes (and
//! several machines, within the limits of the file system; see below) using it at once. It needs no
//! lock file and no daemon: every guarantee rests on one primitive, **create-if-absent**, which
//! `link(2)` provides (it fails with `EEXIST` rather than replacing an entry).
//!
//! ## Layout inside the root folder
//! - `blobs/<remote path>`: one file per blob, at its path (`blobs/chunks/ab/abcd…`).
//! - `cursors/<name>/<seq>`: one folder per cursor, holding its versions as immutable files named by a
//!   20-digit sequence number; the highest is current. Name segments that themselves look like record
//!   names (20 digits) are stored with a leading `@` (see the `cursor` module).
//! - `tmp/`: writes in progress. A crashed writer can leave files here, never anywhere else; such
//!   files untouched for [`STALE_TMP_AGE`] are removed before a handle's first write
//!   ([`FsRemote::remove_stale_tmp`] does it on demand).
//!
//! Nothing is ever written outside the root.
//!
//! ## Opening and reading create nothing
//! [`FsRemote::new`] and [`FsRemote::from_url`] only work out the absolute path (and refuse a root
//! that exists and is not a folder); every read (`get_blob`, `list_blobs`, `read_cursor`,
//! `list_cursors`) only reads. A missing root, or a folder that is not a remote, reads as an empty
//! remote: no blob, no cursor ([`RemoteError::NotFound`] from `get_blob`, as the trait says). The root
//! and its `blobs/`, `cursors/` and `tmp/` are created by the first write (`put_blob_if_absent`,
//! `write_cursor`), so pointing a read-only command at the wrong folder leaves no trace in it.
//!
//! ## Guarantees on a local file system
//! - **A blob is whole or absent.** A put streams the body into `tmp/<uuid>.tmp`, fsyncs it, then
//!   publishes it with `link(tmp, blobs/<path>)`, removes the temporary name and fsyncs the blob's
//!   folder. A put that fails, is cancelled or is killed leaves nothing at the final path. Two racing
//!   puts of one path: exactly one succeeds, the other gets [`RemoteError::AlreadyExists`].
//! - **Cursor compare-and-swap is atomic across processes.** Writing with token `t` creates record
//!   `t + 1` with the same publish step, so of all writers holding `t` exactly one wins; the others get
//!   [`RemoteError::Conflict`]. Superseded records are pruned, keeping the newest [`KEEP_RECORDS`] and
//!   any published less than [`DEFAULT_PRUNE_GRACE`] before the newest; a writer that stalls for more
//!   than half that grace while others write may be told `Conflict` although it won (see the `cursor`
//!   module for why).
//! - Bodies stream in chunks of [`CHUNK_SIZE`] both ways; a blob never sits in memory whole.
//!
//! ## What each fsync protects
//! A write returns only once what it published survives a power loss; nothing else is fsynced.
//!
//! | Operation | fsyncs | What they protect |
//! |---|---|---|
//! | `put_blob_if_absent` | 2 | the temporary file's data (so the name never points at a torn file), then the blob's folder after the link (so the name survives) |
//! | `write_cursor` | 2 | the same two, for the new record |
//! | the first write into a new folder | + 1 per folder created | the parent of each new folder (the root, `blobs/…`, `cursors/…`), so the path to the new entry survives |
//! | reads, `delete_blob`, open | 0 | |
//!
//! Deliberately not fsynced:
//! - the cursor's `HEAD` rewrite after a record (neither its data nor its rename): it only mirrors
//!   the newest record for copies of the folder in a bucket, and folder readers take the durable
//!   record. A power loss can leave the old `HEAD` (older than the records, so ignored) or a torn one
//!   (empty or starting with a NUL byte), which folder readers ignore while the cursor has a record;
//!   the next write rewrites it. Copy a folder to a bucket only after a clean write.
//! - `tmp/` itself and the removal of temporary names: a temporary file is never part of the remote,
//!   so losing one (or finding one again after a crash) changes nothing.
//! - `delete_blob` and cursor-record pruning: a removal undone by a power loss leaves an old record
//!   (older than the newest, so ignored) or an orphaned blob (which garbage collection removes again).
//!
//! Racing creators share folders: a writer that finds a folder already there does not fsync its
//! parent, which the creator does.
//!
//! ## Network and synced folders
//! - **NFS** (v3 and v4): creating a hard link is atomic on the server, so create-if-absent and cursor
//!   compare-and-swap hold between clients on different machines. One caveat: if the client retransmits
//!   a `LINK` whose reply was lost, the retry can report `EEXIST` for a link that in fact succeeded.
//!   This remote detects that case when it can (the entry at the final path is then the same inode as
//!   its own temporary file, and it reports success), but a put may still, rarely, report
//!   `AlreadyExists` for its own write. Callers that put uniquely named blobs (as Strata's sync does)
//!   should treat `AlreadyExists` on such a blob as success only after verifying its content; a cursor
//!   write hit by an undetected retransmit reports `Conflict`, and the next read shows the caller's own
//!   value. Cursor pruning compares ctimes, which the server sets, so client clocks do not matter.
//!   Folder fsyncs are best effort on NFS (close-to-open consistency applies).
//! - **SMB/CIFS** shares and FAT/exFAT volumes often cannot create hard links at all. Puts and cursor
//!   writes then fail with [`RemoteError::Invalid`] saying so; there is no fallback, because
//!   rename-based publishing cannot refuse to replace. Use a bucket remote instead.
//! - **Cloud-synced folders** (Dropbox, OneDrive, Google Drive, iCloud, Syncthing…): each machine sees
//!   its own copy, reconciled later, so nothing is atomic across machines: two machines can both "win"
//!   a cursor compare-and-swap and the sync tool will keep one version or make a conflicted copy. Use
//!   such a folder from one writer at a time, or use a bucket remote.
//!
//! ## Limits
//! A path cannot be both a blob and the parent of other blobs (`a` and `a/b`; the trait's "portable
//! layouts" rule forbids it): a put that would need it fails with [`RemoteError::Invalid`]. Cursor
//! names have no such limit. Cursors are never deleted (the trait has no such operation). Listings
//! skip symbolic links and files whose names are not valid remote paths (the remote never writes
//! those), and reads refuse a symbolic link at a blob's path, so nothing outside the root is read
//! through one.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod cursor;
mod io;
mod url;
mod walk;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use strata_remote::{
    BlobMeta, ByteStream, Cursor, CursorToken, Remote, RemoteError, RemotePath, Result,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::io::{map_io, Published, TmpFile};

pub use crate::cursor::{DEFAULT_PRUNE_GRACE, KEEP_RECORDS};
pub use crate::url::parse_url;

/// Size of the chunks a blob is read in.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// Temporary files untouched for this long are taken to be left by a crashed writer and removed before
/// a handle's first write. A live write touches its file with every chunk.
pub const STALE_TMP_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// A remote in a folder (see the crate documentation). Cheap to clone.
#[derive(Clone, Debug)]
pub struct FsRemote {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    blobs: PathBuf,
    cursors: PathBuf,
    tmp: PathBuf,
    prune_grace: Duration,
    /// Whether this handle made sure the root exists (durably) and swept `tmp/`, which its first write
    /// does.
    ready_to_write: AtomicBool,
}

impl Inner {
    fn new(root: PathBuf, prune_grace: Duration) -> Inner {
        Inner {
            blobs: root.join("blobs"),
            cursors: root.join("cursors"),
            tmp: root.join("tmp"),
            root,
            prune_grace,
            ready_to_write: AtomicBool::new(false),
        }
    }
}

impl FsRemote {
    /// Opens the remote in folder `root`, which need not exist: opening creates nothing, and the
    /// folder is created by the first write. Fails only if `root` is empty or exists and is not a
    /// folder. A relative `root` is taken relative to the current folder.
    pub fn new(root: impl Into<PathBuf>) -> Result<FsRemote> {
        let root = root.into();
        if root.as_os_str().is_empty() {
            return Err(RemoteError::Invalid(
                "folder remote: the root path is empty".into(),
            ));
        }
        let root = std::path::absolute(&root).map_err(|e| {
            RemoteError::Invalid(format!("folder remote {}: {e}", root.display()).into())
        })?;
        match fs::metadata(&root) {
            Ok(m) if !m.is_dir() => {
                return Err(RemoteError::Invalid(
                    format!(
                        "folder remote {}: exists and is not a folder",
                        root.display()
                    )
                    .into(),
                ))
            }
            _ => {}
        }
        Ok(FsRemote {
            inner: Arc::new(Inner::new(root, DEFAULT_PRUNE_GRACE)),
        })
    }

    /// Opens the remote at `url`: `file:///abs/path` (or `file://localhost/abs/path`) or a plain path,
    /// relative or absolute (see [`parse_url`]). Any other scheme, a host, or a malformed URL is
    /// [`RemoteError::Invalid`]. Creates nothing, like [`FsRemote::new`].
    pub fn from_url(url: &str) -> Result<FsRemote> {
        FsRemote::new(parse_url(url)?)
    }

    /// Sets how long superseded cursor records are kept at least (default [`DEFAULT_PRUNE_GRACE`]),
    /// beyond the newest [`KEEP_RECORDS`]. A cursor write that stalls for more than half of it, in a
    /// folder where others write meanwhile, may report a conflict although it won; shorten it only for
    /// tests of pruning.
    pub fn with_cursor_prune_grace(self, grace: Duration) -> FsRemote {
        FsRemote {
            inner: Arc::new(Inner::new(self.inner.root.clone(), grace)),
        }
    }

    /// The root folder (absolute).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The remote's URL, `file://<absolute root>`; [`FsRemote::from_url`] opens it again.
    pub fn url(&self) -> String {
        url::to_url(&self.inner.root)
    }

    /// Removes temporary files untouched for `older_than` (left by crashed writers). Only files named
    /// as this remote names them (`<32 hex digits>.tmp`) are candidates. Returns how many were
    /// removed. Never call it with a short age while other processes may be writing.
    pub fn remove_stale_tmp(&self, older_than: Duration) -> usize {
        io::clean_old_tmp_files(&self.inner.tmp, older_than)
    }

    /// Before this handle's first write: creates the root if it is missing (durably, see the crate
    /// documentation) and removes stale temporary files. Blocking.
    fn prepare_write(&self) -> Result<()> {
        if self.inner.ready_to_write.load(Ordering::Acquire) {
            return Ok(());
        }
        let root = &self.inner.root;
        io::create_dirs(root).map_err(|e| match e.kind() {
            // Not a blob that exists: the root (or a parent) is a file.
            std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory => {
                RemoteError::Invalid(
                    format!(
                        "folder remote {}: cannot create the folder: {e}",
                        root.display()
                    )
                    .into(),
                )
            }
            _ => map_io(format_args!("create folder remote {}", root.display()), e),
        })?;
        let removed = self.remove_stale_tmp(STALE_TMP_AGE);
        if removed > 0 {
            tracing::info!(root = %root.display(), removed, "removed stale temporary files");
        }
        self.inner.ready_to_write.store(true, Ordering::Release);
        Ok(())
    }

    fn blob_path(&self, path: &RemotePath) -> PathBuf {
        walk::join_segments(&self.inner.blobs, path.segments(), str::to_string)
    }

    fn cursor_dir(&self, name: &RemotePath) -> PathBuf {
        walk::join_segments(
            &self.inner.cursors,
            name.segments(),
            cursor::encode_name_segment,
        )
    }
}

impl fmt::Display for FsRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

/// Runs blocking file-system work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RemoteError::Other(format!("folder remote task failed: {e}").into()))?
}

/// Opens a blob file for reading, refusing anything but a regular file (a folder, or a symbolic link
/// that someone else put there).
fn open_blob(file: &Path, path: &RemotePath) -> Result<fs::File> {
    let what = || format!("blob {path}");
    let mut opts = fs::File::options();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW);
    }
    let f = match opts.open(file) {
        Ok(f) => f,
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(RemoteError::NotFound(
                format!("{}: not a regular file", what()).into(),
            ));
        }
        Err(e) => return Err(map_io(what(), e)),
    };
    let meta = f.metadata().map_err(|e| map_io(what(), e))?;
    if !meta.is_file() {
        return Err(RemoteError::NotFound(
            format!("{}: not a regular file", what()).into(),
        ));
    }
    Ok(f)
}

/// Removes the empty folders from `dir` up to (not including) `stop`. Best effort: stops at the first
/// folder that is not empty or cannot be removed.
fn prune_empty_dirs(mut dir: &Path, stop: &Path) {
    while dir != stop && dir.starts_with(stop) {
        if fs::remove_dir(dir).is_err() {
            return;
        }
        match dir.parent() {
            Some(p) => dir = p,
            None => return,
        }
    }
}

#[async_trait]
impl Remote for FsRemote {
    async fn put_blob_if_absent(&self, path: &RemotePath, mut body: ByteStream) -> Result<()> {
        let what = format!("put blob {path}");
        let dest = self.blob_path(path);

        // Refuse early, before reading the body, if the blob is already there.
        match tokio::fs::symlink_metadata(&dest).await {
            Ok(m) if m.is_file() => {
                return Err(RemoteError::AlreadyExists(format!("blob {path}").into()))
            }
            _ => {}
        }

        let (tmp, file) = blocking({
            let what = what.clone();
            let this = self.clone();
            move || {
                this.prepare_write()?;
                TmpFile::create(&this.inner.tmp).map_err(|e| map_io(what, e))
            }
        })
        .await?;
        // From here on, dropping `tmp` (on an error, or if this future is cancelled) removes the file.
        let mut file = tokio::fs::File::from_std(file);
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            file.write_all(&chunk).await.map_err(|e| map_io(&what, e))?;
        }
        file.flush().await.map_err(|e| map_io(&what, e))?;
        // fdatasync: the data and the size, which is all a reader of the published blob needs.
        file.sync_data().await.map_err(|e| map_io(&what, e))?;
        drop(file);

        let outcome = blocking({
            let what = what.clone();
            move || io::publish(tmp, &dest, &what)
        })
        .await?;
        match outcome {
            Published::Done => Ok(()),
            Published::Exists => Err(RemoteError::AlreadyExists(format!("blob {path}").into())),
        }
    }

    async fn get_blob(&self, path: &RemotePath) -> Result<ByteStream> {
        let file = self.blob_path(path);
        let p = path.clone();
        let file = blocking(move || open_blob(&file, &p)).await?;
        let file = tokio::fs::File::from_std(file);
        let what = format!("read blob {path}");
        let stream = futures::stream::try_unfold((file, what), |(mut file, what)| async move {
            let mut buf = BytesMut::with_capacity(CHUNK_SIZE);
            while buf.len() < CHUNK_SIZE {
                let n = file
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| map_io(&what, e))?;
                if n == 0 {
                    break;
                }
            }
            if buf.is_empty() {
                Ok(None)
            } else {
                Ok(Some((buf.freeze(), (file, what))))
            }
        });
        Ok(Box::pin(stream))
    }

    async fn list_blobs(&self, prefix: &str) -> Result<Vec<BlobMeta>> {
        let blobs = self.inner.blobs.clone();
        let prefix = prefix.to_string();
        blocking(move || walk::list_blobs(&blobs, &prefix)).await
    }

    async fn delete_blob(&self, path: &RemotePath) -> Result<()> {
        let file = self.blob_path(path);
        let blobs = self.inner.blobs.clone();
        let what = format!("delete blob {path}");
        blocking(move || {
            match fs::symlink_metadata(&file) {
                // A folder of other blobs is not a blob: nothing to delete.
                Ok(m) if m.is_dir() => return Ok(()),
                Ok(_) => {}
                Err(e) if io::is_absent(&e) => return Ok(()),
                Err(e) => return Err(map_io(what, e)),
            }
            match fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if io::is_absent(&e) => return Ok(()),
                Err(e) => return Err(map_io(what, e)),
            }
            // No fsync: a deletion undone by a power loss leaves an orphan that gc removes again.
            let parent = file.parent().expect("a blob has a parent");
            prune_empty_dirs(parent, &blobs);
            Ok(())
        })
        .await
    }

    async fn read_cursor(&self, name: &RemotePath) -> Result<Option<Cursor>> {
        let dir = self.cursor_dir(name);
        let name = name.clone();
        blocking(move || cursor::read(&dir, &name)).await
    }

    async fn write_cursor(
        &self,
        name: &RemotePath,
        value: Bytes,
        expected: Option<&CursorToken>,
    ) -> Result<CursorToken> {
        let dir = self.cursor_dir(name);
        let name = name.clone();
        let expected = expected.cloned();
        let this = self.clone();
        blocking(move || {
            this.prepare_write()?;
            let inner = &this.inner;
            cursor::write(
                &dir,
                &inner.tmp,
                &name,
                &value,
                expected.as_ref(),
                inner.prune_grace,
            )
        })
        .await
    }

    async fn list_cursors(&self, prefix: &str) -> Result<Vec<RemotePath>> {
        let cursors = self.inner.cursors.clone();
        let prefix = prefix.to_string();
        blocking(move || walk::list_cursors(&cursors, &prefix)).await
    }
}
