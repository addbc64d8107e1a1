//! File-system primitives: error mapping, temporary files, and publishing a finished temporary file
//! under its final name with create-if-absent semantics (`link(2)`).

use std::fmt::Display;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use strata_remote::RemoteError;

/// How many times a publish retries when a concurrent prune removed the parent folder between
/// creating it and linking into it.
const PUBLISH_ATTEMPTS: usize = 8;

/// Maps an I/O error to a [`RemoteError`], naming what was being done (`what`).
pub(crate) fn map_io(what: impl Display, e: io::Error) -> RemoteError {
    use io::ErrorKind as K;
    let msg = format!("{what}: {e}");
    match e.kind() {
        K::NotFound | K::NotADirectory => RemoteError::NotFound(msg.into()),
        K::AlreadyExists => RemoteError::AlreadyExists(msg.into()),
        K::PermissionDenied | K::ReadOnlyFilesystem => RemoteError::PermissionDenied(msg.into()),
        K::Interrupted
        | K::TimedOut
        | K::WouldBlock
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::StaleNetworkFileHandle
        | K::ResourceBusy => RemoteError::Transient(msg.into()),
        K::UnexpectedEof | K::InvalidData => RemoteError::Corrupt(msg.into()),
        K::InvalidInput | K::InvalidFilename | K::Unsupported => RemoteError::Invalid(msg.into()),
        _ => RemoteError::Other(msg.into()),
    }
}

/// Whether an error says a path (or one of its parents) is absent.
pub(crate) fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Whether `link(2)` failed because the file system cannot make hard links at all (FAT, many SMB/CIFS
/// mounts, some FUSE file systems), as opposed to an ordinary failure.
fn is_links_unsupported(e: &io::Error) -> bool {
    if matches!(
        e.kind(),
        io::ErrorKind::Unsupported | io::ErrorKind::CrossesDevices | io::ErrorKind::TooManyLinks
    ) {
        return true;
    }
    // Linux answers EPERM ("the file system does not support hard links"); we created the source file
    // ourselves, so EPERM here is not an ordinary permission problem (that would be EACCES).
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::EPERM) {
        return true;
    }
    false
}

/// A temporary file that is removed when dropped, unless it was consumed.
#[derive(Debug)]
pub(crate) struct TmpFile {
    path: Option<PathBuf>,
}

impl TmpFile {
    /// Creates a new, uniquely named empty file in `dir`, creating `dir` (but not its parent) if it is
    /// missing. Nothing here is fsynced: a temporary name is never part of the remote, and the
    /// file's data is fsynced by whoever publishes it.
    pub(crate) fn create(dir: &Path) -> io::Result<(TmpFile, File)> {
        let path = dir.join(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
        let open = || File::options().write(true).create_new(true).open(&path);
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match fs::create_dir(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                open()?
            }
            other => other?,
        };
        Ok((TmpFile { path: Some(path) }, file))
    }

    pub(crate) fn path(&self) -> &Path {
        self.path
            .as_deref()
            .expect("temporary file already consumed")
    }

    /// Removes the file now.
    pub(crate) fn remove(mut self) {
        if let Some(p) = self.path.take() {
            remove_quietly(&p);
        }
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            remove_quietly(&p);
        }
    }
}

fn remove_quietly(p: &Path) {
    if let Err(e) = fs::remove_file(p) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %p.display(), error = %e, "could not remove a temporary file");
        }
    }
}

/// `create_dir_all` that tolerates racing creators. If it had to create anything, the new folders'
/// parents are synced (best effort) so that the new entries survive a power loss.
pub(crate) fn create_dirs(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    // Find the deepest existing ancestor: everything below it is new.
    let mut existing = dir;
    while let Some(parent) = existing.parent() {
        existing = parent;
        if existing.is_dir() {
            break;
        }
    }
    match fs::create_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(e),
    }
    let mut d = dir;
    while let Some(parent) = d.parent() {
        sync_dir(parent);
        if parent == existing {
            break;
        }
        d = parent;
    }
    Ok(())
}

/// Fsyncs a folder so that entries just added to or removed from it are durable. Best effort: some file
/// systems (several network ones among them) refuse to fsync a folder; the entry is then as durable as
/// that file system makes it.
pub(crate) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    {
        let res = File::open(dir).and_then(|f| f.sync_all());
        if let Err(e) = res {
            tracing::debug!(dir = %dir.display(), error = %e, "could not fsync a folder");
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// What publishing a temporary file found.
#[derive(Debug)]
pub(crate) enum Published {
    /// The file is now at its final path.
    Done,
    /// Something was already at the final path; nothing changed.
    Exists,
}

/// Publishes a finished, fsynced temporary file at `dest` only if nothing is there: `link(2)` fails with
/// EEXIST instead of replacing. Creates `dest`'s parent folders as needed, removes the temporary file
/// in every case, and fsyncs the parent folder. `what` names the operation in errors.
pub(crate) fn publish(
    tmp: TmpFile,
    dest: &Path,
    what: &dyn Display,
) -> Result<Published, RemoteError> {
    let parent = dest.parent().expect("a destination has a parent");
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        if let Err(e) = create_dirs(parent) {
            return Err(collision_or(what, e));
        }
        match fs::hard_link(tmp.path(), dest) {
            Ok(()) => break Published::Done,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A retransmitted LINK over NFS can report EEXIST for a link that in fact succeeded:
                // if the entry at `dest` is our own file, the publish did happen.
                if same_file(tmp.path(), dest) {
                    break Published::Done;
                }
                if dest.is_dir() {
                    return Err(collision(what, dest));
                }
                break Published::Exists;
            }
            // The parent vanished (a concurrent delete pruned the empty folder): create it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < PUBLISH_ATTEMPTS => continue,
            Err(e) if is_links_unsupported(&e) => {
                return Err(RemoteError::Invalid(format!(
                    "{what}: this file system cannot create hard links ({e}); a folder remote needs them \
                     for atomic create-if-absent (SMB/CIFS shares and FAT volumes often lack them): use a \
                     local or NFS folder, or a bucket remote"
                ).into()));
            }
            Err(e) => return Err(collision_or(what, e)),
        }
    };
    tmp.remove();
    if let Published::Done = outcome {
        sync_dir(parent);
    }
    Ok(outcome)
}

/// Whether two paths name the same file (same device and inode).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

fn collision(what: &dyn Display, at: &Path) -> RemoteError {
    RemoteError::Invalid(format!(
        "{what}: {} is a folder of other entries; on a folder remote a path cannot be both an entry and \
         the parent of other entries",
        at.display()
    ).into())
}

/// Maps an error from creating folders or linking; "not a directory" there means a parent path is an
/// existing blob (a file), which a folder remote cannot also use as a folder.
fn collision_or(what: &dyn Display, e: io::Error) -> RemoteError {
    match e.kind() {
        io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists => RemoteError::Invalid(format!(
            "{what}: a parent path is an existing entry ({e}); on a folder remote a path cannot be both \
             an entry and the parent of other entries"
        ).into()),
        _ => map_io(what, e),
    }
}

/// Whether `name` is one [`TmpFile::create`] makes: 32 lowercase hex digits and `.tmp`.
fn is_tmp_name(name: &str) -> bool {
    name.strip_suffix(".tmp").is_some_and(|stem| {
        stem.len() == 32
            && stem
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Removes the temporary files in `dir` (named as [`TmpFile::create`] names them; nothing else is
/// touched) whose last modification is older than `age`, left by crashed writers. Returns how many
/// were removed. Best effort.
pub(crate) fn clean_old_tmp_files(dir: &Path, age: std::time::Duration) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_str().is_some_and(is_tmp_name) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|d| d >= age);
        if old && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_temporary_names_are_swept() {
        let (tmp, _file) = TmpFile::create(&std::env::temp_dir()).unwrap();
        let name = tmp
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(is_tmp_name(&name), "{name}");
        for other in [
            "crashed.tmp",
            "0123456789abcdef0123456789abcdef",
            "0123456789ABCDEF0123456789ABCDEF.tmp",
            "0123456789abcdef0123456789abcde.tmp",
            "notes.txt",
        ] {
            assert!(!is_tmp_name(other), "{other}");
        }
    }
}
