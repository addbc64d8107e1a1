//! Opening a folder remote and reading from it create nothing: a missing folder reads as an empty
//! remote, and a folder that is not a remote is left byte for byte as it was. Only the first write
//! creates the folder.

#![cfg(unix)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use strata_remote::{Remote, RemoteError, RemoteExt, RemotePath};
use strata_remote_fs::FsRemote;

fn p(s: &str) -> RemotePath {
    RemotePath::parse(s).unwrap()
}

/// Everything under `dir` (itself included): for each entry its kind, size, permissions,
/// modification time, inode and, for files, content. Access times are left out: reading changes them.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, path: &Path, out: &mut BTreeMap<String, String>) {
        let m = std::fs::symlink_metadata(path).unwrap();
        let rel = path
            .strip_prefix(base)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let content = if m.is_file() {
            format!("{:?}", std::fs::read(path).unwrap())
        } else {
            String::new()
        };
        out.insert(
            rel,
            format!(
                "{:?} len={} mode={:o} mtime={}.{} ino={} {content}",
                m.file_type(),
                m.len(),
                m.mode(),
                m.mtime(),
                m.mtime_nsec(),
                m.ino()
            ),
        );
        if m.is_dir() {
            for e in std::fs::read_dir(path).unwrap() {
                walk(base, &e.unwrap().path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Every read method, on paths that do not exist in `r`, expecting an empty remote.
async fn read_everything(r: &FsRemote) {
    assert!(r.list_blobs("").await.unwrap().is_empty());
    assert!(r.list_blobs("branches/main").await.unwrap().is_empty());
    assert!(r.list_cursors("").await.unwrap().is_empty());
    assert!(r.list_cursors("branches").await.unwrap().is_empty());
    assert!(r.read_cursor(&p("branches/main")).await.unwrap().is_none());
    assert!(r.read_cursor(&p("x")).await.unwrap().is_none());
    for path in ["strata-remote.json", "branches/main/deltas/1", "a"] {
        assert!(
            matches!(r.get_blob(&p(path)).await, Err(RemoteError::NotFound(_))),
            "{path}"
        );
        assert!(!r.blob_exists(&p(path)).await.unwrap(), "{path}");
    }
    // Deleting what is not there is not a read, but it must create nothing either.
    r.delete_blob(&p("branches/main/deltas/1")).await.unwrap();
}

#[tokio::test]
async fn a_missing_folder_reads_as_an_empty_remote_and_stays_missing() {
    let d = tempfile::tempdir().unwrap();
    let before = snapshot(d.path());
    for root in [
        d.path().join("remote"),
        d.path().join("deeper/still/remote"),
    ] {
        let r = FsRemote::new(&root).unwrap();
        read_everything(&r).await;
        let url = FsRemote::from_url(&r.url()).unwrap();
        read_everything(&url).await;
    }
    assert_eq!(snapshot(d.path()), before);

    // The first write creates it.
    let root = d.path().join("deeper/still/remote");
    let r = FsRemote::new(&root).unwrap();
    r.put_bytes_if_absent(&p("a"), Bytes::from_static(b"1"))
        .await
        .unwrap();
    assert_eq!(r.get_bytes(&p("a")).await.unwrap().as_ref(), b"1");
    let r = FsRemote::new(d.path().join("other")).unwrap();
    r.write_cursor(&p("c"), Bytes::from_static(b"1"), None)
        .await
        .unwrap();
    assert!(r.read_cursor(&p("c")).await.unwrap().is_some());
}

#[tokio::test]
async fn an_unrelated_folder_is_left_byte_for_byte_as_it_was() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("project");
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::write(root.join("notes.txt"), b"my notes").unwrap();
    std::fs::write(root.join("src/main.rs"), b"fn main() {}").unwrap();
    // Temporary files, one named as the remote names its own, both older than the stale age: reading
    // must not sweep them.
    for name in ["0123456789abcdef0123456789abcdef.tmp", "editor.tmp"] {
        let f = root.join("tmp").join(name);
        std::fs::write(&f, b"someone's work").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(3 * 24 * 3600))
            .unwrap();
    }
    let before = snapshot(d.path());

    let r = FsRemote::new(&root).unwrap();
    read_everything(&r).await;
    read_everything(&FsRemote::from_url(&r.url()).unwrap()).await;
    assert_eq!(snapshot(d.path()), before);
}

#[tokio::test]
async fn a_root_that_is_a_file_is_refused_and_left_alone() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("file");
    std::fs::write(&file, b"data").unwrap();
    let before = snapshot(d.path());
    assert!(matches!(
        FsRemote::new(&file),
        Err(RemoteError::Invalid(m)) if m.contains(&*file.to_string_lossy())
    ));
    // A root below a file reads as an empty remote (nothing can be there) and creates nothing.
    let r = FsRemote::new(file.join("below")).unwrap();
    read_everything(&r).await;
    let err = r
        .put_bytes_if_absent(&p("a"), Bytes::from_static(b"1"))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Invalid(_)), "{err:?}");
    assert_eq!(snapshot(d.path()), before);
}
