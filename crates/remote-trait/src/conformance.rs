//! The conformance suite: what it means to be a [`Remote`]. Every backend runs it from its own tests,
//! usually with [`run_all`]:
//!
//! ```text
//! #[tokio::test(flavor = "multi_thread")]
//! async fn conformance() {
//!     strata_remote::conformance::run_all(Arc::new(MyRemote::new(...))).await;
//! }
//! ```
//!
//! Each `check_*` function takes the remote and a prefix that no one else uses (make one with
//! [`fresh_prefix`]); it touches only paths under that prefix, removes the blobs it wrote when it
//! passes (cursors cannot be deleted, so they stay), and panics with a message naming the remote and
//! the rule broken when it fails. The one exception to "only under the prefix" is reading:
//! [`check_list_by_prefix`] and [`check_path_traversal_refused`] also list the whole remote
//! (`list_blobs("")`), so point the suite at a test bucket, not a huge production one.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;

use crate::{
    decode_segment, encode_segment, ByteStream, Remote, RemoteError, RemoteExt, RemotePath, Result,
};

/// The environment variable that sets the size of [`check_large_blob`]'s blob in [`run_all`], in MiB.
pub const LARGE_MB_ENV: &str = "STRATA_CONFORMANCE_LARGE_MB";

/// The default size of [`check_large_blob`]'s blob in [`run_all`], in MiB.
pub const DEFAULT_LARGE_MB: u64 = 64;

/// A prefix no one else uses: `strata-conformance/<label>-<uuid>`.
pub fn fresh_prefix(label: &str) -> RemotePath {
    let seg = encode_segment(&format!("{label}-{}", uuid::Uuid::new_v4().simple()));
    RemotePath::parse(&format!("strata-conformance/{seg}")).expect("a valid prefix")
}

/// Runs every check, each under its own [`fresh_prefix`]: [`check_put_if_absent`],
/// [`check_put_if_absent_race`] (8 tasks), [`check_not_found`], [`check_list_by_prefix`],
/// [`check_delete`], [`check_cursor_create_and_cas`], [`check_cursor_race`] (8 tasks, 10 rounds),
/// [`check_large_blob`] ([`LARGE_MB_ENV`] MiB, default [`DEFAULT_LARGE_MB`]), [`check_odd_names`],
/// [`check_path_traversal_refused`] and [`check_aborted_put_leaves_nothing`].
pub async fn run_all(remote: Arc<dyn Remote>) {
    let large_mb = match std::env::var(LARGE_MB_ENV) {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{LARGE_MB_ENV}={v:?} is not a number of MiB")),
        Err(_) => DEFAULT_LARGE_MB,
    };
    let r = &*remote;
    tracing::info!(remote = %r, "running the remote conformance suite");
    check_put_if_absent(r, &fresh_prefix("put-if-absent")).await;
    check_put_if_absent_race(remote.clone(), &fresh_prefix("put-race"), 8).await;
    check_not_found(r, &fresh_prefix("not-found")).await;
    check_list_by_prefix(r, &fresh_prefix("list")).await;
    check_delete(r, &fresh_prefix("delete")).await;
    check_cursor_create_and_cas(r, &fresh_prefix("cursor-cas")).await;
    check_cursor_race(remote.clone(), &fresh_prefix("cursor-race"), 8, 10).await;
    check_large_blob(r, &fresh_prefix("large"), large_mb * 1024 * 1024).await;
    check_odd_names(r, &fresh_prefix("odd-names")).await;
    check_path_traversal_refused(r, &fresh_prefix("traversal")).await;
    check_aborted_put_leaves_nothing(r, &fresh_prefix("aborted-put")).await;
}

// ---------------------------------------------------------------------------------------------------
// Helpers

/// Panics unless `$res` is `Err($pat)`.
macro_rules! assert_err {
    ($res:expr, $pat:pat, $($ctx:tt)+) => {
        match $res {
            Err($pat) => {}
            Err(e) => panic!("{}: expected {}, got error {e:?}", format!($($ctx)+), stringify!($pat)),
            Ok(_) => panic!("{}: expected {}, got Ok", format!($($ctx)+), stringify!($pat)),
        }
    };
}

fn join(prefix: &RemotePath, rest: &str) -> RemotePath {
    prefix
        .join(rest)
        .unwrap_or_else(|e| panic!("conformance suite bug: {e}"))
}

/// A body made of these chunks.
fn body_of(chunks: Vec<Bytes>) -> ByteStream {
    Box::pin(futures::stream::iter(chunks.into_iter().map(Ok)))
}

fn ok<T>(res: Result<T>, remote: &dyn Remote, what: std::fmt::Arguments<'_>) -> T {
    res.unwrap_or_else(|e| panic!("{remote}: {what} failed: {e:?}"))
}

async fn put(remote: &dyn Remote, path: &RemotePath, bytes: impl Into<Bytes>) {
    ok(
        remote.put_bytes_if_absent(path, bytes.into()).await,
        remote,
        format_args!("put {path}"),
    );
}

async fn get(remote: &dyn Remote, path: &RemotePath) -> Bytes {
    ok(
        remote.get_bytes(path).await,
        remote,
        format_args!("get {path}"),
    )
}

async fn delete(remote: &dyn Remote, path: &RemotePath) {
    ok(
        remote.delete_blob(path).await,
        remote,
        format_args!("delete {path}"),
    );
}

async fn list(remote: &dyn Remote, prefix: &str) -> Vec<(String, u64)> {
    let metas = ok(
        remote.list_blobs(prefix).await,
        remote,
        format_args!("list_blobs({prefix:?})"),
    );
    metas
        .into_iter()
        .map(|m| (m.path.as_str().to_string(), m.size))
        .collect()
}

async fn list_paths(remote: &dyn Remote, prefix: &str) -> Vec<String> {
    list(remote, prefix)
        .await
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

async fn list_cursors(remote: &dyn Remote, prefix: &str) -> Vec<String> {
    let names = ok(
        remote.list_cursors(prefix).await,
        remote,
        format_args!("list_cursors({prefix:?})"),
    );
    names.into_iter().map(|n| n.as_str().to_string()).collect()
}

/// Deletes every blob under `prefix` (the cleanup at the end of a check).
async fn cleanup(remote: &dyn Remote, prefix: &RemotePath) {
    for path in list_paths(remote, prefix.as_str()).await {
        delete(
            remote,
            &RemotePath::parse(&path).expect("a listed path is valid"),
        )
        .await;
    }
    assert_eq!(
        list_paths(remote, prefix.as_str()).await,
        Vec::<String>::new(),
        "{remote}: blobs left after cleanup"
    );
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------------
// Blobs

/// Put-if-absent: the first put stores the blob; a second put at the same path fails with
/// [`RemoteError::AlreadyExists`] and leaves the content as it was. Bodies of several chunks, empty
/// chunks and empty blobs round-trip.
pub async fn check_put_if_absent(remote: &dyn Remote, prefix: &RemotePath) {
    let path = join(prefix, "blob");
    let put_res = remote
        .put_blob_if_absent(&path, body_of(vec![Bytes::from("fi"), Bytes::from("rst")]))
        .await;
    ok(put_res, remote, format_args!("first put of {path}"));
    assert_eq!(
        get(remote, &path).await,
        "first",
        "{remote}: content after the first put"
    );

    let second = remote
        .put_blob_if_absent(&path, body_of(vec![Bytes::from("second")]))
        .await;
    assert_err!(
        second,
        RemoteError::AlreadyExists(_),
        "{remote}: second put at {path}"
    );
    assert_eq!(
        get(remote, &path).await,
        "first",
        "{remote}: a refused put changed the content"
    );
    assert!(ok(
        remote.blob_exists(&path).await,
        remote,
        format_args!("exists {path}")
    ));

    let empty = join(prefix, "empty");
    ok(
        remote.put_blob_if_absent(&empty, body_of(vec![])).await,
        remote,
        format_args!("put of an empty body"),
    );
    assert_eq!(get(remote, &empty).await, "", "{remote}: an empty blob");
    assert_err!(
        remote.put_bytes_if_absent(&empty, Bytes::from("x")).await,
        RemoteError::AlreadyExists(_),
        "{remote}: put over an empty blob"
    );

    let chunky = join(prefix, "chunky");
    let chunks = ["", "a", "", "bc", ""].map(Bytes::from).to_vec();
    ok(
        remote.put_blob_if_absent(&chunky, body_of(chunks)).await,
        remote,
        format_args!("put with empty chunks"),
    );
    assert_eq!(
        get(remote, &chunky).await,
        "abc",
        "{remote}: a body with empty chunks"
    );

    let want = [("blob", 5), ("chunky", 3), ("empty", 0)]
        .map(|(n, s)| (join(prefix, n).as_str().to_string(), s));
    assert_eq!(
        list(remote, prefix.as_str()).await,
        want.to_vec(),
        "{remote}: listing after the puts"
    );
    cleanup(remote, prefix).await;
}

/// Racing put-if-absent: `n_tasks` tasks put different bodies at one path at the same moment; exactly
/// one succeeds, the others fail with [`RemoteError::AlreadyExists`], and the stored blob is the
/// winner's body, whole (never a mix).
pub async fn check_put_if_absent_race(
    remote: Arc<dyn Remote>,
    prefix: &RemotePath,
    n_tasks: usize,
) {
    assert!(n_tasks >= 2, "a race needs at least 2 tasks");
    let path = join(prefix, "contended");
    let barrier = Arc::new(tokio::sync::Barrier::new(n_tasks));
    let body = |i: usize| -> Vec<Bytes> {
        (0..16)
            .map(|c| Bytes::from(format!("task {i} chunk {c}; ").repeat(64)))
            .collect()
    };
    let mut tasks = Vec::new();
    for i in 0..n_tasks {
        let (remote, path, barrier) = (remote.clone(), path.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            // Yield between chunks so the uploads interleave.
            let stream = futures::stream::iter(body(i)).then(|c| async move {
                tokio::task::yield_now().await;
                Ok(c)
            });
            remote.put_blob_if_absent(&path, Box::pin(stream)).await
        }));
    }
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.expect("put task panicked") {
            Ok(()) => winners.push(i),
            Err(RemoteError::AlreadyExists(_)) => {}
            Err(e) => panic!("{remote}: racing put {i} failed with {e:?}, not AlreadyExists"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "{remote}: racing puts at one path: winners {winners:?}, want exactly one"
    );
    let want: Vec<u8> = body(winners[0]).concat();
    assert!(
        get(&*remote, &path).await == want,
        "{remote}: the stored blob is not the winner's body"
    );
    cleanup(&*remote, prefix).await;
}

/// Absence: getting a missing blob fails with [`RemoteError::NotFound`] (also below a blob, and at a
/// path that is only a "folder" of other blobs); reading a missing cursor gives `Ok(None)`; deleting a
/// missing blob succeeds; listing an empty prefix gives an empty list.
pub async fn check_not_found(remote: &dyn Remote, prefix: &RemotePath) {
    let missing = join(prefix, "missing");
    assert_err!(
        remote.get_blob(&missing).await,
        RemoteError::NotFound(_),
        "{remote}: get of a missing blob"
    );
    assert!(!ok(
        remote.blob_exists(&missing).await,
        remote,
        format_args!("exists {missing}")
    ));
    let cursor = ok(
        remote.read_cursor(&missing).await,
        remote,
        format_args!("read_cursor {missing}"),
    );
    assert!(
        cursor.is_none(),
        "{remote}: read of a missing cursor gave {cursor:?}"
    );
    ok(
        remote.delete_blob(&missing).await,
        remote,
        format_args!("delete of a missing blob"),
    );
    assert!(
        list(remote, prefix.as_str()).await.is_empty(),
        "{remote}: listing of an unused prefix"
    );
    assert!(
        list_cursors(remote, prefix.as_str()).await.is_empty(),
        "{remote}: cursors of an unused prefix"
    );

    // Below a blob: `file` is a blob, so `file/below` cannot exist.
    let file = join(prefix, "file");
    put(remote, &file, "x").await;
    let below = join(prefix, "file/below");
    assert_err!(
        remote.get_blob(&below).await,
        RemoteError::NotFound(_),
        "{remote}: get of a path below a blob"
    );
    ok(
        remote.delete_blob(&below).await,
        remote,
        format_args!("delete of a path below a blob"),
    );
    let cursor = ok(
        remote.read_cursor(&below).await,
        remote,
        format_args!("read_cursor below a blob"),
    );
    assert!(cursor.is_none(), "{remote}: a cursor below a blob path");
    assert!(
        list(remote, below.as_str()).await.is_empty(),
        "{remote}: listing below a blob"
    );
    // A blob's path is not a cursor's name.
    let cursor = ok(
        remote.read_cursor(&file).await,
        remote,
        format_args!("read_cursor at a blob's path"),
    );
    assert!(cursor.is_none(), "{remote}: a blob showed up as a cursor");

    // A "folder": `dir/x` is a blob, `dir` is not.
    let dir = join(prefix, "dir");
    put(remote, &join(prefix, "dir/x"), "y").await;
    assert_err!(
        remote.get_blob(&dir).await,
        RemoteError::NotFound(_),
        "{remote}: get of a folder of blobs"
    );
    cleanup(remote, prefix).await;
}

/// Listing: the segment-boundary prefix rule (see [`Remote`]'s docs), sorting by path in byte order,
/// trailing `/`, sizes and modification times in [`BlobMeta`](crate::BlobMeta), and the empty prefix.
pub async fn check_list_by_prefix(remote: &dyn Remote, prefix: &RemotePath) {
    // No blob path is a proper prefix of another (a folder backend could not hold both).
    let names = [
        "x/b", "x/bc", "x/b.txt", "x/b-c/d", "y/b/c", "y/b/d/e", "y/bc", "y/b-c", "z",
    ];
    let before = now_millis();
    for (i, n) in names.iter().enumerate() {
        // Sizes differ, so a listing that swaps sizes is caught.
        put(remote, &join(prefix, n), "s".repeat(i * 3 + 1)).await;
    }
    let after = now_millis();
    let full = |n: &str| join(prefix, n).as_str().to_string();
    let under = |p: &str| format!("{}/{p}", prefix.as_str());

    let all = list(remote, prefix.as_str()).await;
    let want: Vec<(String, u64)> = {
        let mut v: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (full(n), (i * 3 + 1) as u64))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        all, want,
        "{remote}: list of the whole prefix (sorted by path in byte order, with sizes)"
    );

    let cases: [(&str, &[&str]); 7] = [
        ("x/b", &["x/b"]),
        ("x/b/", &["x/b"]),
        ("x", &["x/b", "x/b-c/d", "x/b.txt", "x/bc"]),
        ("y/b", &["y/b/c", "y/b/d/e"]),
        ("y", &["y/b-c", "y/b/c", "y/b/d/e", "y/bc"]),
        ("y/b/d", &["y/b/d/e"]),
        ("nothing", &[]),
    ];
    for (p, want) in cases {
        let want: Vec<String> = want.iter().map(|n| full(n)).collect();
        assert_eq!(
            list_paths(remote, &under(p)).await,
            want,
            "{remote}: list_blobs({:?})",
            under(p)
        );
    }
    assert!(
        list(remote, &under("x/b/c")).await.is_empty(),
        "{remote}: listing below a blob"
    );
    assert_eq!(
        list_paths(remote, &format!("{}/", prefix.as_str()))
            .await
            .len(),
        names.len(),
        "{remote}: a trailing '/' on the prefix"
    );

    // The empty prefix lists everything, sorted.
    let everything = list_paths(remote, "").await;
    assert!(
        everything.windows(2).all(|w| w[0] < w[1]),
        "{remote}: list_blobs(\"\") is not sorted"
    );
    let ours: Vec<String> = everything
        .into_iter()
        .filter(|p| p.starts_with(&under("")))
        .collect();
    assert_eq!(
        ours,
        want.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        "{remote}: list_blobs(\"\")"
    );

    let metas = ok(
        remote.list_blobs(prefix.as_str()).await,
        remote,
        format_args!("list_blobs"),
    );
    let slack = 24 * 3600 * 1000; // clocks of remote servers may be off; a day is plenty
    for m in metas {
        let t = m.modified_millis;
        assert!(
            t == 0 || (t + slack >= before && t <= after + slack),
            "{remote}: {} has modified_millis {t}, not 0 and not near now ({before})",
            m.path
        );
    }
    cleanup(remote, prefix).await;
}

/// Deleting: a deleted blob is gone from gets and listings, deleting it again succeeds, its path can be
/// put again, and deleting a "folder" path (a prefix of other blobs) deletes nothing.
pub async fn check_delete(remote: &dyn Remote, prefix: &RemotePath) {
    let (a, b, deep) = (
        join(prefix, "a"),
        join(prefix, "b"),
        join(prefix, "dir/deep"),
    );
    put(remote, &a, "first a").await;
    put(remote, &b, "b").await;
    put(remote, &deep, "deep").await;
    delete(remote, &a).await;
    assert_err!(
        remote.get_blob(&a).await,
        RemoteError::NotFound(_),
        "{remote}: get after delete"
    );
    let listed = list_paths(remote, prefix.as_str()).await;
    assert_eq!(
        listed,
        [b.as_str(), deep.as_str()],
        "{remote}: listing after a delete"
    );
    delete(remote, &a).await;
    put(remote, &a, "second a").await;
    assert_eq!(
        get(remote, &a).await,
        "second a",
        "{remote}: put after delete"
    );

    // Deleting a prefix is not a recursive delete.
    delete(remote, &join(prefix, "dir")).await;
    assert_eq!(
        get(remote, &deep).await,
        "deep",
        "{remote}: deleting a folder path removed a blob below it"
    );
    delete(remote, &a).await;
    delete(remote, &b).await;
    delete(remote, &deep).await;
    assert!(
        list(remote, prefix.as_str()).await.is_empty(),
        "{remote}: blobs left after deleting all"
    );
}

// ---------------------------------------------------------------------------------------------------
// Cursors

/// Cursors: create only if absent (a second create conflicts), compare-and-swap with the current token
/// (a stale token conflicts and changes nothing, and so does a token for an absent cursor), read returns
/// the token the write returned, binary and empty values, listing with the prefix rule, and the
/// separation of the cursor and blob namespaces.
pub async fn check_cursor_create_and_cas(remote: &dyn Remote, prefix: &RemotePath) {
    let main = join(prefix, "cursors/main");
    let read = |name: RemotePath| async move {
        ok(
            remote.read_cursor(&name).await,
            remote,
            format_args!("read_cursor {name}"),
        )
    };
    assert_eq!(
        read(main.clone()).await,
        None,
        "{remote}: a cursor never written"
    );

    let t1 = ok(
        remote.write_cursor(&main, Bytes::from("v1"), None).await,
        remote,
        format_args!("create {main}"),
    );
    let c = read(main.clone())
        .await
        .unwrap_or_else(|| panic!("{remote}: created cursor {main} reads as absent"));
    assert_eq!(
        (&c.value[..], &c.token),
        (&b"v1"[..], &t1),
        "{remote}: read after create"
    );

    let again = remote.write_cursor(&main, Bytes::from("v1b"), None).await;
    assert_err!(
        again,
        RemoteError::Conflict(_),
        "{remote}: creating an existing cursor"
    );
    let c = read(main.clone()).await.unwrap();
    assert_eq!(
        (&c.value[..], &c.token),
        (&b"v1"[..], &t1),
        "{remote}: a failed create changed the cursor"
    );

    let t2 = ok(
        remote
            .write_cursor(&main, Bytes::from("v2"), Some(&t1))
            .await,
        remote,
        format_args!("CAS {main}"),
    );
    assert_ne!(t2, t1, "{remote}: a new value got the old token");
    let c = read(main.clone()).await.unwrap();
    assert_eq!(
        (&c.value[..], &c.token),
        (&b"v2"[..], &t2),
        "{remote}: read after CAS"
    );

    let stale = remote
        .write_cursor(&main, Bytes::from("v3"), Some(&t1))
        .await;
    assert_err!(
        stale,
        RemoteError::Conflict(_),
        "{remote}: CAS with a stale token"
    );
    let c = read(main.clone()).await.unwrap();
    assert_eq!(
        (&c.value[..], &c.token),
        (&b"v2"[..], &t2),
        "{remote}: a failed CAS changed the cursor"
    );

    let absent = join(prefix, "cursors/absent");
    let res = remote
        .write_cursor(&absent, Bytes::from("x"), Some(&t2))
        .await;
    assert_err!(
        res,
        RemoteError::Conflict(_),
        "{remote}: CAS of an absent cursor"
    );
    assert_eq!(
        read(absent.clone()).await,
        None,
        "{remote}: a failed CAS created the cursor"
    );

    // Binary values up to a few KiB, and empty values.
    let binary: Bytes = (0..4096u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let t3 = ok(
        remote.write_cursor(&main, binary.clone(), Some(&t2)).await,
        remote,
        format_args!("CAS binary"),
    );
    assert_eq!(
        read(main.clone()).await.unwrap().value,
        binary,
        "{remote}: a 4 KiB binary cursor value"
    );
    ok(
        remote.write_cursor(&main, Bytes::new(), Some(&t3)).await,
        remote,
        format_args!("CAS to empty"),
    );
    assert_eq!(
        read(main.clone()).await.unwrap().value,
        "",
        "{remote}: an empty cursor value"
    );

    // Listing, with the same prefix rule as blobs (and, as for blobs, no name is a proper prefix of
    // another, which a folder backend could not hold).
    for n in [
        "cursors/main-2",
        "cursors/mainx",
        "nested/main/sub",
        "nested/mainx",
        "other",
    ] {
        let name = join(prefix, n);
        ok(
            remote
                .write_cursor(&name, Bytes::from(n.to_string()), None)
                .await,
            remote,
            format_args!("create {name}"),
        );
    }
    let full = |ns: &[&str]| {
        ns.iter()
            .map(|n| join(prefix, n).as_str().to_string())
            .collect::<Vec<_>>()
    };
    let all = full(&[
        "cursors/main",
        "cursors/main-2",
        "cursors/mainx",
        "nested/main/sub",
        "nested/mainx",
        "other",
    ]);
    assert_eq!(
        list_cursors(remote, prefix.as_str()).await,
        all,
        "{remote}: list_cursors (sorted)"
    );
    let cases: [(&str, &[&str]); 5] = [
        ("cursors/main", &["cursors/main"]),
        ("cursors/main/", &["cursors/main"]),
        ("nested/main", &["nested/main/sub"]),
        ("nested/main/", &["nested/main/sub"]),
        ("nested/ma", &[]),
    ];
    for (p, want) in cases {
        let p = format!("{}/{p}", prefix.as_str());
        assert_eq!(
            list_cursors(remote, &p).await,
            full(want),
            "{remote}: list_cursors({p:?})"
        );
    }
    assert!(
        list_cursors(remote, "")
            .await
            .windows(2)
            .all(|w| w[0] < w[1]),
        "{remote}: list_cursors(\"\") unsorted"
    );

    // Separate namespaces: cursors are not blobs, and a blob may share a cursor's name.
    assert!(
        list(remote, prefix.as_str()).await.is_empty(),
        "{remote}: cursors showed up as blobs"
    );
    put(remote, &main, "a blob named like the cursor").await;
    assert_eq!(
        read(main.clone()).await.unwrap().value,
        "",
        "{remote}: a blob put changed a cursor"
    );
    assert_eq!(
        get(remote, &main).await,
        "a blob named like the cursor",
        "{remote}: a blob at a cursor's name"
    );
    assert_eq!(
        list_cursors(remote, prefix.as_str()).await,
        all,
        "{remote}: a blob showed up as a cursor"
    );
    cleanup(remote, prefix).await;
    assert!(
        read(main.clone()).await.is_some(),
        "{remote}: deleting a blob removed the cursor of that name"
    );
}

/// Racing compare-and-swap: `n_tasks` tasks, for `rounds` rounds, all read the cursor (the same token,
/// since a barrier keeps writes back until everyone has read) and then all try to swap in a value naming
/// themselves. Each round exactly one wins and the others get [`RemoteError::Conflict`]; the next round
/// reads the winner's value.
pub async fn check_cursor_race(
    remote: Arc<dyn Remote>,
    prefix: &RemotePath,
    n_tasks: usize,
    rounds: usize,
) {
    assert!(n_tasks >= 2, "a race needs at least 2 tasks");
    let name = join(prefix, "race");
    ok(
        remote.write_cursor(&name, Bytes::from("start"), None).await,
        &*remote,
        format_args!("create {name}"),
    );
    let barrier = Arc::new(tokio::sync::Barrier::new(n_tasks));
    let value = |round: usize, task: usize| format!("round {round} won by task {task}");

    /// What one task saw in one round. Tasks never panic (a panicking task would leave the others
    /// waiting at the barrier forever); errors are recorded and checked afterwards.
    #[derive(Debug)]
    struct Seen {
        read: std::result::Result<(Bytes, crate::CursorToken), String>,
        /// Ok(true) if the CAS won, Ok(false) on Conflict.
        won: std::result::Result<bool, String>,
    }

    let mut tasks = Vec::new();
    for task in 0..n_tasks {
        let (remote, name, barrier) = (remote.clone(), name.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::with_capacity(rounds);
            for round in 0..rounds {
                barrier.wait().await; // the previous round's writes are all done
                let read = match remote.read_cursor(&name).await {
                    Ok(Some(c)) => Ok((c.value, c.token)),
                    Ok(None) => Err("the cursor reads as absent".to_string()),
                    Err(e) => Err(format!("read failed: {e:?}")),
                };
                barrier.wait().await; // everyone has read: no write can come before a read
                let won = match &read {
                    Err(_) => Err("no read".to_string()),
                    Ok((_, token)) => match remote
                        .write_cursor(&name, value(round, task).into(), Some(token))
                        .await
                    {
                        Ok(_) => Ok(true),
                        Err(RemoteError::Conflict(_)) => Ok(false),
                        Err(e) => Err(format!("CAS failed with {e:?}, not Conflict")),
                    },
                };
                seen.push(Seen { read, won });
            }
            seen
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.expect("race task panicked"));
    }

    let mut previous: Option<(Bytes, crate::CursorToken)> = None;
    for round in 0..rounds {
        let mut reads = Vec::new();
        let mut winners = Vec::new();
        for (task, s) in seen.iter().enumerate() {
            let s = &s[round];
            let read = s
                .read
                .clone()
                .unwrap_or_else(|e| panic!("{remote}: round {round}, task {task}: {e}"));
            match &s.won {
                Ok(true) => winners.push(task),
                Ok(false) => {}
                Err(e) => panic!("{remote}: round {round}, task {task}: {e}"),
            }
            reads.push(read);
        }
        assert!(
            reads.windows(2).all(|w| w[0] == w[1]),
            "{remote}: round {round}: tasks read different versions"
        );
        assert_eq!(
            winners.len(),
            1,
            "{remote}: round {round}: CAS winners {winners:?}, want exactly one"
        );
        let (value_read, token_read) = &reads[0];
        match &previous {
            None => assert_eq!(value_read, "start", "{remote}: round 0 read"),
            Some((prev_value, prev_token)) => {
                assert_eq!(
                    value_read, prev_value,
                    "{remote}: round {round} did not read the last winner's value"
                );
                assert_ne!(
                    token_read, prev_token,
                    "{remote}: round {round}: the token did not change"
                );
            }
        }
        previous = Some((Bytes::from(value(round, winners[0])), token_read.clone()));
    }
    let last = ok(
        remote.read_cursor(&name).await,
        &*remote,
        format_args!("final read"),
    )
    .expect("the cursor exists");
    assert_eq!(
        Some(&last.value),
        previous.as_ref().map(|(v, _)| v),
        "{remote}: final value is not the last winner's"
    );
}

// ---------------------------------------------------------------------------------------------------
// Large blobs

const LARGE_CHUNK: usize = 1024 * 1024 + 123; // odd, so chunk boundaries don't line up with anything

/// A deterministic pseudo-random body of `size` bytes, made one chunk at a time.
fn generated_body(size: u64) -> impl futures::Stream<Item = Bytes> + Send + 'static {
    futures::stream::unfold(
        (0u64, 0x9e37_79b9_7f4a_7c15u64),
        move |(done, mut state)| async move {
            if done >= size {
                return None;
            }
            let n = (size - done).min(LARGE_CHUNK as u64) as usize;
            let mut chunk = Vec::with_capacity(n + 8);
            while chunk.len() < n {
                // xorshift64*
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                chunk.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
            }
            chunk.truncate(n);
            Some((Bytes::from(chunk), (done + n as u64, state)))
        },
    )
}

/// A large blob (`size` bytes; [`run_all`] uses 64 MiB) streams in and out: the body is generated
/// chunk by chunk as it is uploaded and hashed chunk by chunk as it is downloaded, so the check never
/// holds it whole; length, CRC-32 and the listed size must match.
pub async fn check_large_blob(remote: &dyn Remote, prefix: &RemotePath, size: u64) {
    let path = join(prefix, "large");
    let mut want = crc32fast::Hasher::new();
    let mut stream = Box::pin(generated_body(size));
    while let Some(chunk) = stream.next().await {
        want.update(&chunk);
    }
    let want = want.finalize();

    let started = std::time::Instant::now();
    let body: ByteStream = Box::pin(generated_body(size).map(Ok));
    ok(
        remote.put_blob_if_absent(&path, body).await,
        remote,
        format_args!("put of a {size}-byte blob"),
    );
    let put_time = started.elapsed();
    assert_eq!(
        list(remote, prefix.as_str()).await,
        [(path.as_str().to_string(), size)],
        "{remote}: listed size"
    );

    let started = std::time::Instant::now();
    let mut body = ok(
        remote.get_blob(&path).await,
        remote,
        format_args!("get of the large blob"),
    );
    let (mut got, mut len, mut chunks) = (crc32fast::Hasher::new(), 0u64, 0u64);
    while let Some(chunk) = body.next().await {
        let chunk = ok(
            chunk,
            remote,
            format_args!("reading the large blob at byte {len}"),
        );
        got.update(&chunk);
        len += chunk.len() as u64;
        chunks += 1;
    }
    assert_eq!(len, size, "{remote}: length of the large blob read back");
    assert_eq!(
        got.finalize(),
        want,
        "{remote}: CRC-32 of the large blob read back"
    );
    tracing::info!(%remote, size, ?put_time, get_time = ?started.elapsed(), chunks, "large blob");
    cleanup(remote, prefix).await;
}

// ---------------------------------------------------------------------------------------------------
// Names

/// Names with awkward characters that every backend must store faithfully once encoded.
fn odd_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "with space",
        "ünïcödé",
        "日本語",
        "emoji 🦀",
        "100%",
        "100%25",
        "tilde~x",
        "~",
        "hash#frag",
        "query?x=1&y=2",
        "plus+sign",
        "UPPER",
        "MiXeD",
        "mixed",
        "a.b",
        ".hidden",
        ".",
        "..",
        "...",
        "semi;colon,comma",
        "quote'\"",
        "<angle>|pipe*star:colon",
        "back\\slash",
        "new\nline\ttab",
        "slash/inside",
        "",
    ]
    .map(String::from)
    .to_vec();
    // ~200 bytes, all kept as is by encode_segment (so the segment stays under 255 bytes).
    names.push(format!(
        "long-{}",
        "abcdefghij0123456789"
            .repeat(10)
            .chars()
            .take(195)
            .collect::<String>()
    ));
    names
}

/// Raw (unencoded) segments that [`RemotePath`] allows and every common store and file system accepts:
/// spaces, non-ASCII letters, `%`, `+`, `#`, `~`, `=`, `&`, `,`, mixed case, and a long one.
fn raw_segments() -> Vec<String> {
    let mut segs: Vec<String> = [
        "with space",
        " lead and trail ",
        "ünïcödé",
        "日本語 and ascii",
        "pct%20not-decoded",
        "plus+not space",
        "hash#",
        "~tilde",
        "a=b&c,d",
        "MixedCase",
    ]
    .map(String::from)
    .to_vec();
    segs.push(format!("Long Raw {}", "ä".repeat(95))); // 199 bytes
    segs
}

/// Odd names: names encoded with [`encode_segment`] (spaces, unicode, `%`, `~`, `#`, `?`, `+`,
/// uppercase, `.`/`..`, slashes, ~200-byte names) and raw segments with spaces and unicode round-trip
/// as blob paths and cursor names: put, list (exact paths), get, decode, delete.
pub async fn check_odd_names(remote: &dyn Remote, prefix: &RemotePath) {
    let names = odd_names();
    let enc_dir = join(prefix, "enc");
    let mut want = Vec::new();
    for name in &names {
        let seg = encode_segment(name);
        let path = join(&enc_dir, &seg);
        put(remote, &path, format!("content of {name:?}")).await;
        want.push(path.as_str().to_string());
    }
    assert_eq!(
        list_paths(remote, enc_dir.as_str()).await,
        sorted(want.clone()),
        "{remote}: encoded names listed"
    );
    for name in &names {
        let path = join(&enc_dir, &encode_segment(name));
        assert_eq!(
            get(remote, &path).await,
            format!("content of {name:?}"),
            "{remote}: blob of {name:?}"
        );
    }
    let mut decoded: Vec<String> = list_paths(remote, enc_dir.as_str())
        .await
        .iter()
        .map(|p| {
            decode_segment(RemotePath::parse(p).unwrap().file_name()).expect("listed names decode")
        })
        .collect();
    decoded.sort();
    assert_eq!(
        decoded,
        sorted(names.clone()),
        "{remote}: encoded names decoded from the listing"
    );

    let raw = raw_segments();
    let raw_dir = join(prefix, "raw");
    let mut want_raw = Vec::new();
    for seg in &raw {
        // Each raw segment as a file name, and as a folder name inside a deeper path.
        for path in [
            join(&raw_dir, &format!("flat/{seg}")),
            join(&raw_dir, &format!("deep/{seg}/leaf {seg}")),
        ] {
            put(remote, &path, format!("raw {path}")).await;
            want_raw.push(path.as_str().to_string());
        }
    }
    assert_eq!(
        list_paths(remote, raw_dir.as_str()).await,
        sorted(want_raw.clone()),
        "{remote}: raw names listed"
    );
    for p in &want_raw {
        let path = RemotePath::parse(p).unwrap();
        assert_eq!(
            get(remote, &path).await,
            format!("raw {p}"),
            "{remote}: blob at raw path {p:?}"
        );
    }

    // The same names as cursors.
    let cur_dir = join(prefix, "cursors");
    let mut want_cursors = Vec::new();
    for seg in names
        .iter()
        .map(|n| encode_segment(n))
        .chain(raw.iter().cloned())
    {
        let name = join(&cur_dir, &seg);
        ok(
            remote
                .write_cursor(&name, Bytes::from(seg.clone()), None)
                .await,
            remote,
            format_args!("create {name}"),
        );
        want_cursors.push(name.as_str().to_string());
    }
    assert_eq!(
        list_cursors(remote, cur_dir.as_str()).await,
        sorted(want_cursors.clone()),
        "{remote}: odd cursor names"
    );
    for n in &want_cursors {
        let name = RemotePath::parse(n).unwrap();
        let c = ok(
            remote.read_cursor(&name).await,
            remote,
            format_args!("read {n}"),
        );
        assert_eq!(
            c.map(|c| c.value),
            Some(Bytes::from(name.file_name().to_string())),
            "{remote}: cursor {n:?}"
        );
    }
    cleanup(remote, prefix).await;
}

/// Path traversal: [`RemotePath`] refuses `../x`, `/abs`, `a/../../b`, `a\b` and friends; the remote
/// refuses such listing prefixes with [`RemoteError::Invalid`]; and valid names that a careless backend
/// might still resolve outside its root (`...`, `%2e%2e`, `..%2f..`, `~`, `$HOME`, `c:`, encoded
/// `../x`) are either stored exactly where asked or refused with [`RemoteError::Invalid`], never
/// elsewhere: after trying them, no path anywhere in `list_blobs("")` that names this check's prefix lies
/// outside it. (A write outside the remote's root altogether cannot be seen through the trait: a
/// backend's own tests should also check that its root's surroundings stay untouched.)
pub async fn check_path_traversal_refused(remote: &dyn Remote, prefix: &RemotePath) {
    let bad = [
        "../x",
        "/abs",
        "a/../../b",
        "a\\b",
        "..",
        ".",
        "./a",
        "a/./b",
        "",
        "a//b",
        "a/",
        "a\0b",
        "a\nb",
    ];
    for b in bad {
        assert_err!(
            RemotePath::parse(b),
            RemoteError::Invalid(_),
            "RemotePath::parse({b:?})"
        );
        assert_err!(prefix.join(b), RemoteError::Invalid(_), "join({b:?})");
    }
    for b in ["/", "/abs", "../x", "a/../../b", "a\\b", "..", "a//b"] {
        assert_err!(
            remote.list_blobs(b).await,
            RemoteError::Invalid(_),
            "{remote}: list_blobs({b:?})"
        );
        assert_err!(
            remote.list_cursors(b).await,
            RemoteError::Invalid(_),
            "{remote}: list_cursors({b:?})"
        );
    }

    // The marker: the prefix's last segment, unique to this run. Every bait path carries it.
    let marker = prefix.file_name().to_string();
    let baits = [
        "...".to_string(),
        "..~".to_string(),
        "%2e%2e".to_string(),
        "%2E%2E%2F..%2F".to_string(),
        "..%2f..%2f".to_string(),
        "~2e~2e".to_string(),
        "~".to_string(),
        "$HOME".to_string(),
        "c:".to_string(),
        " .. ".to_string(),
        encode_segment("../x"),
        encode_segment(".."),
        encode_segment("/etc/passwd"),
    ];
    let mut stored = Vec::new();
    for bait in &baits {
        for path in [
            join(prefix, &format!("{bait}/{marker}")),
            join(prefix, &format!("deep/{bait}-{marker}")),
        ] {
            match remote
                .put_bytes_if_absent(&path, Bytes::from(format!("bait {path}")))
                .await
            {
                Ok(()) => {
                    assert_eq!(
                        get(remote, &path).await,
                        format!("bait {path}"),
                        "{remote}: bait {path:?}"
                    );
                    stored.push(path.as_str().to_string());
                }
                Err(RemoteError::Invalid(_)) => {}
                Err(e) => panic!(
                    "{remote}: put of {path:?} failed with {e:?}: store it or refuse it as Invalid"
                ),
            }
        }
    }
    assert_eq!(
        list_paths(remote, prefix.as_str()).await,
        sorted(stored.clone()),
        "{remote}: bait paths listed"
    );
    let escaped: Vec<String> = list_paths(remote, "")
        .await
        .into_iter()
        .filter(|p| {
            p.contains(&marker) && !RemotePath::parse(p).is_ok_and(|p| p.starts_with(prefix))
        })
        .collect();
    assert!(
        escaped.is_empty(),
        "{remote}: blobs escaped the prefix {prefix}: {escaped:?}"
    );
    cleanup(remote, prefix).await;
}

// ---------------------------------------------------------------------------------------------------
// Aborted puts

/// Aborted puts leave nothing: a put whose body yields some chunks and then an error fails, and the
/// path then reads as [`RemoteError::NotFound`] and lists nothing (no temporary files either); so does
/// a put whose future is dropped mid-body. A later put-if-absent at the same path succeeds.
pub async fn check_aborted_put_leaves_nothing(remote: &dyn Remote, prefix: &RemotePath) {
    let path = join(prefix, "aborted");
    let chunk = Bytes::from(vec![b'a'; 64 * 1024]);
    let failing: ByteStream = Box::pin(
        futures::stream::iter(vec![
            Ok(chunk.clone()),
            Ok(chunk.clone()),
            Ok(chunk.clone()),
        ])
        .chain(futures::stream::once(async {
            Err(RemoteError::Transient("the body failed".into()))
        })),
    );
    let res = remote.put_blob_if_absent(&path, failing).await;
    assert!(res.is_err(), "{remote}: a put whose body failed succeeded");
    assert!(
        !matches!(res, Err(RemoteError::AlreadyExists(_))),
        "{remote}: {res:?}"
    );
    assert_err!(
        remote.get_blob(&path).await,
        RemoteError::NotFound(_),
        "{remote}: get after a failed put"
    );
    assert!(
        list(remote, prefix.as_str()).await.is_empty(),
        "{remote}: a failed put left something listed"
    );

    // A put whose future is dropped while the body is still coming.
    let dropped = join(prefix, "dropped");
    let stalled: ByteStream = Box::pin(
        futures::stream::iter(vec![Ok(chunk.clone()), Ok(chunk.clone())])
            .chain(futures::stream::pending()),
    );
    let res = tokio::time::timeout(
        Duration::from_millis(300),
        remote.put_blob_if_absent(&dropped, stalled),
    )
    .await;
    assert!(
        res.is_err() || res.as_ref().is_ok_and(|r| r.is_err()),
        "{remote}: a put of an endless body succeeded"
    );
    assert_err!(
        remote.get_blob(&dropped).await,
        RemoteError::NotFound(_),
        "{remote}: get after a dropped put"
    );
    assert!(
        list(remote, prefix.as_str()).await.is_empty(),
        "{remote}: a dropped put left something listed"
    );

    for p in [&path, &dropped] {
        put(remote, p, "whole").await;
        assert_eq!(
            get(remote, p).await,
            "whole",
            "{remote}: put after an aborted put"
        );
    }
    cleanup(remote, prefix).await;
}
