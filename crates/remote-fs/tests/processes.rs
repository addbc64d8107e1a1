//! Several processes on one folder: a writer killed with SIGKILL mid-put, crashes at random moments,
//! and a compare-and-swap race between processes.
//!
//! The children are this test binary run again with `STRATA_FS_CHILD` set: the `child_entry` test then
//! does the child's work (and does nothing in an ordinary run).
#![cfg(unix)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_remote::{ByteStream, Remote, RemoteError, RemoteExt, RemotePath};
use strata_remote_fs::FsRemote;

const CHILD_ENV: &str = "STRATA_FS_CHILD";
const ROOT_ENV: &str = "STRATA_FS_ROOT";
const WORKER_ENV: &str = "STRATA_FS_WORKER";

const WORKERS: usize = 4;
const INCREMENTS: usize = 50;

fn p(s: &str) -> RemotePath {
    RemotePath::parse(s).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn spawn_child(role: &str, root: &Path, worker: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_entry",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, role)
        .env(ROOT_ENV, root)
        .env(WORKER_ENV, worker.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The content of crash-test blob `i`: its length and bytes both depend on `i`, so a torn or short
/// file is detected.
fn blob_content(i: u64) -> Vec<u8> {
    let len = 50_000 + (i as usize * 7919) % 150_000;
    (0..len)
        .map(|j| (j as u64).wrapping_mul(2654435761).wrapping_add(i) as u8)
        .collect()
}

/// Not a test of its own: the work of a child process, chosen by `STRATA_FS_CHILD`.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let root = std::env::var(ROOT_ENV).unwrap();
    let worker: usize = std::env::var(WORKER_ENV).unwrap().parse().unwrap();
    let remote = FsRemote::new(root).unwrap();
    runtime().block_on(async move {
        match role.as_str() {
            // Streams an endless body, slowly, until killed.
            "endless-put" => {
                let body: ByteStream = Box::pin(futures::stream::unfold(0u64, |i| async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Some((Ok(Bytes::from(vec![(i % 251) as u8; 64 * 1024])), i + 1))
                }));
                remote
                    .put_blob_if_absent(&p("big/blob"), body)
                    .await
                    .unwrap();
                unreachable!("the body never ends");
            }
            // Puts blobs and advances a cursor in a loop, until killed.
            "put-loop" => {
                let mut token = None;
                for i in 0.. {
                    let data = blob_content(i);
                    let body: ByteStream = Box::pin(futures::stream::iter(
                        data.chunks(8 * 1024)
                            .map(Bytes::copy_from_slice)
                            .map(Ok)
                            .collect::<Vec<_>>(),
                    ));
                    remote
                        .put_blob_if_absent(&p(&format!("crash/{i}")), body)
                        .await
                        .unwrap();
                    token = Some(
                        remote
                            .write_cursor(&p("crash"), Bytes::from(i.to_string()), token.as_ref())
                            .await
                            .unwrap(),
                    );
                }
            }
            // Increments the shared counter INCREMENTS times, retrying on conflict.
            "counter" => {
                let name = p("counter");
                for i in 0..INCREMENTS {
                    loop {
                        let c = remote
                            .read_cursor(&name)
                            .await
                            .unwrap()
                            .expect("the parent creates the counter");
                        let mut value = String::from_utf8(c.value.to_vec()).unwrap();
                        let (count, _) = value.split_once('\n').unwrap();
                        let count: u64 = count.parse().unwrap();
                        value.replace_range(..value.find('\n').unwrap(), &(count + 1).to_string());
                        value.push_str(&format!("{worker}:{i}\n"));
                        match remote
                            .write_cursor(&name, Bytes::from(value), Some(&c.token))
                            .await
                        {
                            Ok(t) => {
                                println!("WON {}", t.0);
                                break;
                            }
                            Err(RemoteError::Conflict(_)) => continue,
                            Err(e) => panic!("worker {worker}: {e}"),
                        }
                    }
                }
            }
            other => panic!("unknown child role {other}"),
        }
    });
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("child {} took longer than {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill_and_reap(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
}

/// The largest temporary file in `tmp/` (0 before the first write creates `tmp/`).
fn largest_tmp(root: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(root.join("tmp")) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

#[test]
fn a_writer_killed_mid_put_leaves_nothing_at_the_final_path() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("remote");
    let remote = FsRemote::new(&root).unwrap();
    let mut child = spawn_child("endless-put", &root, 0);

    // Wait until the child has streamed a good part of the body.
    let deadline = Instant::now() + Duration::from_secs(60);
    while largest_tmp(&root) < 4 << 20 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child exited early"
        );
        assert!(Instant::now() < deadline, "the child never started writing");
        std::thread::sleep(Duration::from_millis(5));
    }
    kill_and_reap(&mut child);

    let path = p("big/blob");
    assert!(!root.join("blobs/big/blob").exists());
    runtime().block_on(async {
        assert!(matches!(
            remote.get_blob(&path).await.err(),
            Some(RemoteError::NotFound(_))
        ));
        assert!(remote.list_blobs("").await.unwrap().is_empty());
        // The crashed writer's temporary file is the only trace, and only in tmp/.
        assert!(largest_tmp(&root) >= 4 << 20);
        assert_eq!(remote.remove_stale_tmp(Duration::ZERO), 1);

        remote
            .put_bytes_if_absent(&path, Bytes::from_static(b"after the crash"))
            .await
            .unwrap();
        assert_eq!(
            remote.get_bytes(&path).await.unwrap(),
            Bytes::from_static(b"after the crash")
        );
    });
}

#[test]
fn writers_killed_at_random_moments_leave_only_whole_blobs_and_cursors() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("remote");
    let remote = FsRemote::new(&root).unwrap();
    let rt = runtime();
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    for trial in 0..4 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // The blobs of earlier trials would make this one's puts fail: start from a clean slate.
        rt.block_on(async {
            for m in remote.list_blobs("crash").await.unwrap() {
                remote.delete_blob(&m.path).await.unwrap();
            }
        });
        let _ = std::fs::remove_dir_all(root.join("cursors/crash"));

        let mut child = spawn_child("put-loop", &root, trial);
        std::thread::sleep(Duration::from_millis(150 + seed % 400));
        kill_and_reap(&mut child);

        rt.block_on(async {
            let blobs = remote.list_blobs("crash").await.unwrap();
            assert!(
                !blobs.is_empty(),
                "trial {trial}: the child wrote nothing in time"
            );
            for m in &blobs {
                let i: u64 = m.path.file_name().parse().unwrap();
                let want = blob_content(i);
                assert_eq!(
                    m.size as usize,
                    want.len(),
                    "trial {trial}: {} is torn",
                    m.path
                );
                assert_eq!(
                    remote.get_bytes(&m.path).await.unwrap(),
                    want,
                    "trial {trial}: {}",
                    m.path
                );
            }
            // The cursor names a blob that was fully written before it.
            if let Some(c) = remote.read_cursor(&p("crash")).await.unwrap() {
                let i: u64 = std::str::from_utf8(&c.value).unwrap().parse().unwrap();
                assert!(
                    blobs.iter().any(|m| m.path.file_name() == i.to_string()),
                    "trial {trial}: cursor {i}"
                );
            }
        });
    }
}

#[test]
fn processes_racing_on_a_cursor_lose_no_increment() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("remote");
    let remote = Arc::new(FsRemote::new(&root).unwrap());
    let rt = runtime();
    let first = rt
        .block_on(remote.write_cursor(&p("counter"), Bytes::from_static(b"0\n"), None))
        .unwrap();

    let mut children: Vec<Child> = (0..WORKERS)
        .map(|w| spawn_child("counter", &root, w))
        .collect();
    let mut won: BTreeMap<u64, usize> = BTreeMap::new();
    for (w, child) in children.iter_mut().enumerate() {
        let status = wait_with_timeout(child, Duration::from_secs(300));
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(status.success(), "worker {w} failed: {status:?}\n{out}");
        // The test harness may print its own "test child_entry ... " in front of the first line.
        let tokens: Vec<u64> = out
            .lines()
            .filter_map(|l| Some(&l[l.find("WON ")? + 4..]))
            .map(|t| t.parse().unwrap())
            .collect();
        assert_eq!(tokens.len(), INCREMENTS, "worker {w}");
        for t in tokens {
            if let Some(other) = won.insert(t, w) {
                panic!("version {t} was won by both worker {other} and worker {w}");
            }
        }
    }

    // Every version after the first was won by exactly one increment.
    let first: u64 = first.0.parse().unwrap();
    let total = (WORKERS * INCREMENTS) as u64;
    assert_eq!(
        won.keys().copied().collect::<Vec<_>>(),
        (first + 1..=first + total).collect::<Vec<_>>()
    );

    let c = rt
        .block_on(remote.read_cursor(&p("counter")))
        .unwrap()
        .unwrap();
    assert_eq!(c.token.0, (first + total).to_string());
    let value = String::from_utf8(c.value.to_vec()).unwrap();
    let mut lines = value.lines();
    assert_eq!(lines.next(), Some(total.to_string().as_str()));
    let mut seen: Vec<&str> = lines.collect();
    seen.sort();
    let mut want: Vec<String> = (0..WORKERS)
        .flat_map(|w| (0..INCREMENTS).map(move |i| format!("{w}:{i}")))
        .collect();
    want.sort();
    assert_eq!(seen, want);

    // Every record is younger than the pruning grace, so all are still there, beside the head;
    // nothing is left in tmp/.
    assert_eq!(
        std::fs::read_dir(root.join("cursors/counter"))
            .unwrap()
            .count() as u64,
        first + total + 1
    );
    // However the racing writers renamed their heads, the head ends up matching the newest record.
    let head = bytes::Bytes::from(std::fs::read(root.join("cursors/counter/HEAD")).unwrap());
    assert_eq!(
        strata_remote::layout::decode_head(&head, "HEAD").unwrap(),
        (first + total, c.value.clone())
    );
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    drop(children);
}

#[test]
fn the_body_of_a_killed_child_is_never_visible_while_streaming() {
    // While a child streams, readers in this process never see the blob.
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("remote");
    let remote = FsRemote::new(&root).unwrap();
    let mut child = spawn_child("endless-put", &root, 0);
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        let listed = rt.block_on(remote.list_blobs("")).unwrap();
        assert!(listed.is_empty(), "{listed:?}");
        let got = rt.block_on(remote.get_blob(&p("big/blob"))).err();
        assert!(matches!(got, Some(RemoteError::NotFound(_))));
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_and_reap(&mut child);
}
