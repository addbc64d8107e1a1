//! FsRemote's behaviour through the `Remote` trait, plus what only a folder can show: the files on disk.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use strata_remote::{ByteStream, CursorToken, Remote, RemoteError, RemoteExt, RemotePath, Result};
use strata_remote_fs::{FsRemote, CHUNK_SIZE};

fn p(s: &str) -> RemotePath {
    RemotePath::parse(s).unwrap()
}

fn fresh() -> (tempfile::TempDir, FsRemote) {
    let dir = tempfile::tempdir().unwrap();
    let remote = FsRemote::new(dir.path().join("remote")).unwrap();
    (dir, remote)
}

fn chunks(parts: Vec<Result<Bytes>>) -> ByteStream {
    Box::pin(futures::stream::iter(parts))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Every file under `dir`, as sorted relative paths.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(base, &e.path(), out);
            } else {
                out.push(
                    e.path()
                        .strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn tmp_files(remote: &FsRemote) -> Vec<String> {
    files_under(&remote.root().join("tmp"))
}

#[tokio::test]
async fn put_then_get_streams_in_bounded_chunks() {
    let (_d, r) = fresh();
    let data = pattern(CHUNK_SIZE * 4 + 3, 7);
    let body: Vec<Result<Bytes>> = data
        .chunks(7 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    r.put_blob_if_absent(&p("chunks/ab/big"), chunks(body))
        .await
        .unwrap();

    let mut stream = r.get_blob(&p("chunks/ab/big")).await.unwrap();
    let mut got = Vec::new();
    let mut n = 0;
    while let Some(c) = stream.next().await {
        let c = c.unwrap();
        assert!(!c.is_empty() && c.len() <= CHUNK_SIZE);
        got.extend_from_slice(&c);
        n += 1;
    }
    assert_eq!(got, data);
    assert_eq!(n, 5);
    assert!(r.root().join("blobs/chunks/ab/big").is_file());
    assert!(tmp_files(&r).is_empty());

    // An empty blob is a blob too.
    r.put_bytes_if_absent(&p("empty"), Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.get_bytes(&p("empty")).await.unwrap(), Bytes::new());
    assert!(r.blob_exists(&p("empty")).await.unwrap());
}

#[tokio::test]
async fn put_if_absent_never_replaces() {
    let (_d, r) = fresh();
    r.put_bytes_if_absent(&p("x/y"), Bytes::from_static(b"first"))
        .await
        .unwrap();
    let err = r
        .put_bytes_if_absent(&p("x/y"), Bytes::from_static(b"second"))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::AlreadyExists(_)), "{err}");
    assert_eq!(
        r.get_bytes(&p("x/y")).await.unwrap(),
        Bytes::from_static(b"first")
    );
    assert!(tmp_files(&r).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_puts_have_exactly_one_winner() {
    let (_d, r) = fresh();
    let r: Arc<dyn Remote> = Arc::new(r);
    for round in 0..10 {
        let path = p(&format!("race/{round}"));
        let tasks: Vec<_> = (0..16u8)
            .map(|i| {
                let (r, path) = (r.clone(), path.clone());
                tokio::spawn(async move {
                    // Several chunks, so the writers overlap.
                    let body = (0..8)
                        .map(move |_| Ok(Bytes::from(pattern(4096, i))))
                        .collect();
                    (i, r.put_blob_if_absent(&path, chunks(body)).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (i, Ok(())) => winners.push(i),
                (_, Err(RemoteError::AlreadyExists(_))) => {}
                (_, Err(e)) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let want: Vec<u8> = (0..8).flat_map(|_| pattern(4096, winners[0])).collect();
        assert_eq!(r.get_bytes(&path).await.unwrap(), want);
    }
}

#[tokio::test]
async fn a_failing_body_leaves_nothing() {
    let (_d, r) = fresh();
    let body = chunks(vec![
        Ok(Bytes::from(pattern(100_000, 1))),
        Err(RemoteError::Transient("network went away".into())),
    ]);
    let err = r.put_blob_if_absent(&p("a/b"), body).await.unwrap_err();
    assert!(
        matches!(&err, RemoteError::Transient(m) if m.contains("network went away")),
        "{err}"
    );
    assert!(matches!(
        r.get_blob(&p("a/b")).await.err(),
        Some(RemoteError::NotFound(_))
    ));
    assert!(r.list_blobs("").await.unwrap().is_empty());
    assert!(tmp_files(&r).is_empty());
    assert!(!r.root().join("blobs/a/b").exists());

    r.put_bytes_if_absent(&p("a/b"), Bytes::from_static(b"ok"))
        .await
        .unwrap();
    assert_eq!(
        r.get_bytes(&p("a/b")).await.unwrap(),
        Bytes::from_static(b"ok")
    );
}

#[tokio::test]
async fn a_cancelled_put_leaves_nothing() {
    let (_d, r) = fresh();
    let first = futures::stream::iter([Ok(Bytes::from(pattern(50_000, 2)))]);
    let body: ByteStream = Box::pin(first.chain(futures::stream::pending()));
    let res = tokio::time::timeout(
        Duration::from_millis(200),
        r.put_blob_if_absent(&p("slow"), body),
    )
    .await;
    assert!(res.is_err(), "the put should still be waiting for its body");
    assert!(tmp_files(&r).is_empty());
    assert!(r.list_blobs("").await.unwrap().is_empty());
    r.put_bytes_if_absent(&p("slow"), Bytes::from_static(b"done"))
        .await
        .unwrap();
}

#[tokio::test]
async fn get_of_a_missing_blob_or_a_folder_is_not_found() {
    let (_d, r) = fresh();
    r.put_bytes_if_absent(&p("dir/blob"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    for path in ["nothing", "dir", "dir/blob/below", "dir/other"] {
        let err = r.get_blob(&p(path)).await.err().unwrap();
        assert!(matches!(err, RemoteError::NotFound(_)), "{path}: {err}");
        assert!(!r.blob_exists(&p(path)).await.unwrap());
    }
}

#[tokio::test]
async fn list_uses_segment_prefixes_and_path_order() {
    let (_d, r) = fresh();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for (path, len) in [
        ("a/b/c", 1),
        ("a/b/d/e", 2),
        ("a/bc", 3),
        ("a-c", 4),
        ("b", 5),
    ] {
        r.put_bytes_if_absent(&p(path), Bytes::from(vec![0u8; len]))
            .await
            .unwrap();
    }
    let names = |v: Vec<strata_remote::BlobMeta>| {
        v.into_iter()
            .map(|m| m.path.to_string())
            .collect::<Vec<_>>()
    };

    let all = r.list_blobs("").await.unwrap();
    for m in &all {
        assert_eq!(
            m.size as usize,
            [
                ("a/b/c", 1),
                ("a/b/d/e", 2),
                ("a/bc", 3),
                ("a-c", 4),
                ("b", 5)
            ]
            .iter()
            .find(|(n, _)| *n == m.path.as_str())
            .unwrap()
            .1
        );
        assert!(
            m.modified_millis + 5_000 >= before,
            "mtime {} vs {before}",
            m.modified_millis
        );
    }
    assert_eq!(names(all), ["a-c", "a/b/c", "a/b/d/e", "a/bc", "b"]);
    assert_eq!(
        names(r.list_blobs("a/b").await.unwrap()),
        ["a/b/c", "a/b/d/e"]
    );
    assert_eq!(
        names(r.list_blobs("a/b/").await.unwrap()),
        ["a/b/c", "a/b/d/e"]
    );
    assert_eq!(
        names(r.list_blobs("a").await.unwrap()),
        ["a/b/c", "a/b/d/e", "a/bc"]
    );
    assert_eq!(names(r.list_blobs("a/b/c").await.unwrap()), ["a/b/c"]);
    assert_eq!(names(r.list_blobs("a/b/c/").await.unwrap()), ["a/b/c"]);
    assert!(r.list_blobs("a/b/c/deeper").await.unwrap().is_empty());
    assert!(r.list_blobs("zzz").await.unwrap().is_empty());
    for bad in ["../x", "/etc", "a//b", "/", "a//"] {
        assert!(
            matches!(r.list_blobs(bad).await, Err(RemoteError::Invalid(_))),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn delete_removes_the_file_and_empty_folders() {
    let (_d, r) = fresh();
    r.delete_blob(&p("never/there")).await.unwrap();
    r.put_bytes_if_absent(&p("x/y/z"), Bytes::from_static(b"1"))
        .await
        .unwrap();
    r.put_bytes_if_absent(&p("x/w"), Bytes::from_static(b"2"))
        .await
        .unwrap();

    r.delete_blob(&p("x/y/z")).await.unwrap();
    assert!(!r.blob_exists(&p("x/y/z")).await.unwrap());
    assert!(
        !r.root().join("blobs/x/y").exists(),
        "the emptied folder is pruned"
    );
    assert!(
        r.root().join("blobs/x").is_dir(),
        "a folder still in use stays"
    );
    r.delete_blob(&p("x/y/z")).await.unwrap();

    // A folder of blobs is not a blob: deleting it is deleting nothing.
    r.delete_blob(&p("x")).await.unwrap();
    assert!(r.blob_exists(&p("x/w")).await.unwrap());

    r.delete_blob(&p("x/w")).await.unwrap();
    assert_eq!(files_under(&r.root().join("blobs")), Vec::<String>::new());
    assert!(r.root().join("blobs").is_dir());
    r.put_bytes_if_absent(&p("x/y/z"), Bytes::from_static(b"again"))
        .await
        .unwrap();
    assert_eq!(
        r.get_bytes(&p("x/y/z")).await.unwrap(),
        Bytes::from_static(b"again")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_racing_puts_in_the_same_folder_lose_nothing() {
    let (_d, r) = fresh();
    let r = Arc::new(r);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..40 {
                let path = p(&format!("shared/dir/{i}-{j}"));
                r.put_bytes_if_absent(&path, Bytes::from(format!("{i}-{j}")))
                    .await
                    .unwrap();
                if j % 2 == 0 {
                    r.delete_blob(&path).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(r.list_blobs("shared").await.unwrap().len(), 8 * 20);
}

#[tokio::test]
async fn a_path_cannot_be_both_a_blob_and_a_folder() {
    let (_d, r) = fresh();
    r.put_bytes_if_absent(&p("a/b"), Bytes::from_static(b"1"))
        .await
        .unwrap();
    let err = r
        .put_bytes_if_absent(&p("a"), Bytes::from_static(b"2"))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Invalid(_)), "{err}");
    let err = r
        .put_bytes_if_absent(&p("a/b/c"), Bytes::from_static(b"3"))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Invalid(_)), "{err}");
    assert!(tmp_files(&r).is_empty());
    assert_eq!(
        r.get_bytes(&p("a/b")).await.unwrap(),
        Bytes::from_static(b"1")
    );
}

#[tokio::test]
async fn cursor_compare_and_swap() {
    let (_d, r) = fresh();
    let name = p("branches/main");
    assert_eq!(r.read_cursor(&name).await.unwrap(), None);

    let t1 = r
        .write_cursor(&name, Bytes::from_static(b"v1"), None)
        .await
        .unwrap();
    let c = r.read_cursor(&name).await.unwrap().unwrap();
    assert_eq!((c.value.as_ref(), &c.token), (&b"v1"[..], &t1));

    let err = r
        .write_cursor(&name, Bytes::from_static(b"again"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Conflict(_)), "{err}");

    let t2 = r
        .write_cursor(&name, Bytes::from_static(b"v2"), Some(&t1))
        .await
        .unwrap();
    assert_ne!(t1, t2);
    let err = r
        .write_cursor(&name, Bytes::from_static(b"stale"), Some(&t1))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Conflict(_)), "{err}");
    for bogus in ["", "abc", "0", "999", "-1", "00000000000000000002x"] {
        let err = r
            .write_cursor(
                &name,
                Bytes::from_static(b"bogus"),
                Some(&CursorToken(bogus.into())),
            )
            .await;
        assert!(
            matches!(err, Err(RemoteError::Conflict(_))),
            "{bogus:?}: {err:?}"
        );
    }
    let c = r.read_cursor(&name).await.unwrap().unwrap();
    assert_eq!((c.value.as_ref(), &c.token), (&b"v2"[..], &t2));

    // A token for a cursor that does not exist matches nothing.
    let err = r
        .write_cursor(&p("branches/other"), Bytes::from_static(b"x"), Some(&t2))
        .await;
    assert!(matches!(err, Err(RemoteError::Conflict(_))), "{err:?}");
    assert_eq!(r.read_cursor(&p("branches/other")).await.unwrap(), None);

    // Blobs and cursors are separate namespaces.
    r.put_bytes_if_absent(&name, Bytes::from_static(b"a blob"))
        .await
        .unwrap();
    assert_eq!(
        r.read_cursor(&name).await.unwrap().unwrap().value,
        Bytes::from_static(b"v2")
    );
    assert!(tmp_files(&r).is_empty());
}

#[tokio::test]
async fn cursor_records_are_pruned_to_the_newest_32() {
    let (_d, r) = fresh();
    // Young records are kept too (for a grace period); with none, only the newest 32 stay.
    let r = r.with_cursor_prune_grace(Duration::ZERO);
    let name = p("c");
    let mut token = r
        .write_cursor(&name, Bytes::from_static(b"0"), None)
        .await
        .unwrap();
    for i in 1..100 {
        token = r
            .write_cursor(&name, Bytes::from(i.to_string()), Some(&token))
            .await
            .unwrap();
    }
    let c = r.read_cursor(&name).await.unwrap().unwrap();
    assert_eq!((c.value.as_ref(), c.token), (&b"99"[..], token));
    let mut records = files_under(&r.root().join("cursors/c"));
    assert_eq!(records.pop().as_deref(), Some("HEAD"));
    assert_eq!(records.len(), strata_remote_fs::KEEP_RECORDS);
    assert_eq!(records.last().unwrap(), "00000000000000000100");
}

#[tokio::test]
async fn young_cursor_records_are_kept() {
    let (_d, r) = fresh();
    let name = p("c");
    let mut token = r
        .write_cursor(&name, Bytes::from_static(b"0"), None)
        .await
        .unwrap();
    for i in 1..40 {
        token = r
            .write_cursor(&name, Bytes::from(i.to_string()), Some(&token))
            .await
            .unwrap();
    }
    // 40 records and the head.
    assert_eq!(files_under(&r.root().join("cursors/c")).len(), 41);
}

#[tokio::test]
async fn cursor_names_that_look_like_records_stay_separate() {
    let (_d, r) = fresh();
    let names = [
        "a",
        "a/00000000000000000001",
        "a/@00000000000000000001",
        "a/b",
        "ab",
        "z/@",
    ];
    for (i, n) in names.iter().enumerate() {
        r.write_cursor(&p(n), Bytes::from(vec![i as u8]), None)
            .await
            .unwrap();
    }
    for (i, n) in names.iter().enumerate() {
        let c = r.read_cursor(&p(n)).await.unwrap().unwrap();
        assert_eq!(c.value.as_ref(), [i as u8], "{n}");
    }
    let list = |v: Vec<RemotePath>| v.into_iter().map(|p| p.to_string()).collect::<Vec<_>>();
    assert_eq!(list(r.list_cursors("").await.unwrap()), names);
    assert_eq!(
        list(r.list_cursors("a").await.unwrap()),
        [
            "a",
            "a/00000000000000000001",
            "a/@00000000000000000001",
            "a/b"
        ]
    );
    assert_eq!(
        list(r.list_cursors("a/").await.unwrap()),
        [
            "a",
            "a/00000000000000000001",
            "a/@00000000000000000001",
            "a/b"
        ]
    );
    assert_eq!(
        list(r.list_cursors("a/00000000000000000001").await.unwrap()),
        ["a/00000000000000000001"]
    );
    assert!(r.list_cursors("nothing").await.unwrap().is_empty());
    assert!(matches!(
        r.list_cursors("a/../b").await,
        Err(RemoteError::Invalid(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cursor_increments_race_within_a_process() {
    let (_d, r) = fresh();
    let r = Arc::new(r);
    let name = p("counter");
    r.write_cursor(&name, Bytes::from_static(b"0"), None)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (r, name) = (r.clone(), name.clone());
            tokio::spawn(async move {
                let mut conflicts = 0;
                for _ in 0..25 {
                    loop {
                        let c = r.read_cursor(&name).await.unwrap().unwrap();
                        let n: u64 = std::str::from_utf8(&c.value).unwrap().parse().unwrap();
                        match r
                            .write_cursor(&name, Bytes::from((n + 1).to_string()), Some(&c.token))
                            .await
                        {
                            Ok(_) => break,
                            Err(RemoteError::Conflict(_)) => conflicts += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let c = r.read_cursor(&name).await.unwrap().unwrap();
    assert_eq!(c.value.as_ref(), b"200");
    assert!(tmp_files(&r).is_empty());
}

#[tokio::test]
async fn nothing_is_written_outside_the_root() {
    let parent = tempfile::tempdir().unwrap();
    let r = FsRemote::new(parent.path().join("root")).unwrap();
    r.put_bytes_if_absent(&p("a/b/c"), Bytes::from_static(b"1"))
        .await
        .unwrap();
    r.put_bytes_if_absent(&p("a/b/c"), Bytes::from_static(b"1"))
        .await
        .unwrap_err();
    let body = chunks(vec![
        Ok(Bytes::from_static(b"x")),
        Err(RemoteError::Other("boom".into())),
    ]);
    r.put_blob_if_absent(&p("failed"), body).await.unwrap_err();
    r.put_bytes_if_absent(&p("d"), Bytes::from_static(b"2"))
        .await
        .unwrap();
    r.delete_blob(&p("d")).await.unwrap();
    let t = r
        .write_cursor(&p("cur/x"), Bytes::from_static(b"1"), None)
        .await
        .unwrap();
    r.write_cursor(&p("cur/x"), Bytes::from_static(b"2"), Some(&t))
        .await
        .unwrap();
    r.write_cursor(&p("cur/x"), Bytes::from_static(b"3"), Some(&t))
        .await
        .unwrap_err();
    r.list_blobs("").await.unwrap();
    r.list_cursors("").await.unwrap();

    let top: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(top, ["root"]);
    let mut inside: Vec<_> = std::fs::read_dir(r.root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    inside.sort();
    assert_eq!(inside, ["blobs", "cursors", "tmp"]);
    assert_eq!(
        files_under(r.root()),
        [
            "blobs/a/b/c",
            "cursors/cur/x/00000000000000000001",
            "cursors/cur/x/00000000000000000002",
            "cursors/cur/x/HEAD"
        ]
    );
}

#[tokio::test]
async fn stale_temporary_files_are_removed_before_the_first_write() {
    let (_d, r) = fresh();
    let tmp = r.root().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // Named as the remote names its temporary files: 32 hex digits.
    let old = tmp.join("0123456789abcdef0123456789abcdef.tmp");
    let recent = tmp.join("fedcba9876543210fedcba9876543210.tmp");
    // Not the remote's: never removed, however old.
    let foreign = tmp.join("notes.tmp");
    for f in [&old, &recent, &foreign] {
        std::fs::write(f, b"half a blob").unwrap();
    }
    for f in [&old, &foreign] {
        let f = std::fs::File::options().write(true).open(f).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(25 * 3600))
            .unwrap();
    }

    // Opening the remote again and reading remove nothing; the first write removes only the
    // remote's own files older than a day.
    let r2 = FsRemote::new(r.root()).unwrap();
    r2.list_blobs("").await.unwrap();
    assert_eq!(tmp_files(&r2).len(), 3);
    r2.put_bytes_if_absent(&p("x"), Bytes::from_static(b"1"))
        .await
        .unwrap();
    assert_eq!(
        tmp_files(&r2),
        ["fedcba9876543210fedcba9876543210.tmp", "notes.tmp"]
    );
    assert_eq!(r2.remove_stale_tmp(Duration::ZERO), 1);
    assert_eq!(tmp_files(&r2), ["notes.tmp"]);
}

#[test]
fn error_names_a_root_that_is_a_file() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let err = FsRemote::new(&file).unwrap_err();
    assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
}

/// The head mirrors the newest record, so a copy of the folder in a bucket reads the current value;
/// a head newer than every record (a folder downloaded from a bucket) is the current value, and
/// compare-and-swap continues from it.
#[tokio::test]
async fn cursor_heads_mirror_records_and_newer_heads_win() {
    use strata_remote::layout::{decode_head, encode_head};
    let (_d, r) = fresh();
    let name = p("branches/main");
    let t1 = r
        .write_cursor(&name, Bytes::from_static(b"one"), None)
        .await
        .unwrap();
    let t2 = r
        .write_cursor(&name, Bytes::from_static(b"two"), Some(&t1))
        .await
        .unwrap();
    let head_path = r.root().join("cursors/branches/main/HEAD");
    let head = Bytes::from(std::fs::read(&head_path).unwrap());
    assert_eq!(
        decode_head(&head, "h").unwrap(),
        (2, Bytes::from_static(b"two"))
    );

    // A bucket writer moved the head on to 7 (records stay at 2): the head is current.
    std::fs::write(&head_path, encode_head(7, b"seven")).unwrap();
    let c = r.read_cursor(&name).await.unwrap().unwrap();
    assert_eq!(c.value.as_ref(), b"seven");
    assert_ne!(c.token, t2);
    // A stale token conflicts; the head's token writes record 8.
    r.write_cursor(&name, Bytes::from_static(b"x"), Some(&t2))
        .await
        .unwrap_err();
    let t8 = r
        .write_cursor(&name, Bytes::from_static(b"eight"), Some(&c.token))
        .await
        .unwrap();
    let mut files = files_under(&r.root().join("cursors/branches/main"));
    files.sort();
    assert_eq!(
        files,
        [
            "00000000000000000001",
            "00000000000000000002",
            "00000000000000000007",
            "00000000000000000008",
            "HEAD"
        ]
    );
    let head = Bytes::from(std::fs::read(&head_path).unwrap());
    assert_eq!(
        decode_head(&head, "h").unwrap(),
        (8, Bytes::from_static(b"eight"))
    );
    assert_eq!(r.read_cursor(&name).await.unwrap().unwrap().token, t8);

    // A stale head (older than the records) is ignored.
    std::fs::write(&head_path, encode_head(3, b"old")).unwrap();
    assert_eq!(
        r.read_cursor(&name).await.unwrap().unwrap().value.as_ref(),
        b"eight"
    );
    // A damaged head is refused by name.
    std::fs::write(&head_path, b"garbage").unwrap();
    let err = r.read_cursor(&name).await.unwrap_err();
    assert!(
        matches!(err, strata_remote::RemoteError::Corrupt(ref m) if m.contains("HEAD")),
        "{err:?}"
    );
    // A torn head (what a power loss can leave of the unsynced head rewrite: empty, or blocks never
    // written) is ignored next to the records, and the next write repairs it.
    for torn in [&b""[..], &[0u8; 40][..]] {
        std::fs::write(&head_path, torn).unwrap();
        let c = r.read_cursor(&name).await.unwrap().unwrap();
        assert_eq!((c.value.as_ref(), &c.token), (&b"eight"[..], &t8));
    }
    let t9 = r
        .write_cursor(&name, Bytes::from_static(b"nine"), Some(&t8))
        .await
        .unwrap();
    let head = Bytes::from(std::fs::read(&head_path).unwrap());
    assert_eq!(
        decode_head(&head, "h").unwrap(),
        (9, Bytes::from_static(b"nine"))
    );
    // A torn head with no record beside it is refused.
    let lone = r.root().join("cursors/lone/HEAD");
    std::fs::create_dir_all(lone.parent().unwrap()).unwrap();
    std::fs::write(&lone, b"").unwrap();
    let err = r.read_cursor(&p("lone")).await.unwrap_err();
    assert!(
        matches!(err, strata_remote::RemoteError::Corrupt(ref m) if m.contains("HEAD")),
        "{err:?}"
    );
    std::fs::remove_dir_all(lone.parent().unwrap()).unwrap();
    assert_eq!(r.read_cursor(&name).await.unwrap().unwrap().token, t9);
    // A cursor that has only a head is listed, and a name segment called HEAD stays separate.
    let only = r.root().join("cursors/only/HEAD");
    std::fs::create_dir_all(only.parent().unwrap()).unwrap();
    std::fs::write(&only, encode_head(3, b"3")).unwrap();
    r.write_cursor(&p("only/HEAD"), Bytes::from_static(b"sub"), None)
        .await
        .unwrap();
    assert_eq!(
        r.read_cursor(&p("only"))
            .await
            .unwrap()
            .unwrap()
            .value
            .as_ref(),
        b"3"
    );
    assert_eq!(
        r.read_cursor(&p("only/HEAD"))
            .await
            .unwrap()
            .unwrap()
            .value
            .as_ref(),
        b"sub"
    );
    let names: Vec<String> = r
        .list_cursors("only")
        .await
        .unwrap()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(names, ["only", "only/HEAD"]);
}
