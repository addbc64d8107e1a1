//! Reproductions of sync bugs found by the model and fault tests, kept as regression tests. Each test
//! states the correct behaviour; all five causes below are fixed.
//!
//! Root causes (and fixes):
//! 1. **A blob with no records creates no mirror version.** `apply_changes` makes a version only for
//!    the change sets it sees, and the `Chunker` writes no change set when there is nothing to put. So a
//!    snapshot of an empty state (a first push or a compaction of a branch with no live entries), or a
//!    far-behind fetch whose snapshot equals what the mirror already holds (an empty "reset"), leaves the
//!    mirror below the cursor's version and the fetch fails with `Corrupt("after applying its blobs the
//!    mirror is at version X, not Y")` — for every client, forever. Fix: end the chain applied to the
//!    mirror with an empty `ChangeSet { version: doc.version, .. }` (`apply_in_txn` folds it into the
//!    last commit when that is already at `doc.version`, and otherwise records an empty version), or
//!    make `Chunker::finish` write one empty change set when it wrote none.
//! 2. **A remote branch at version 0** (a push of an empty branch) cannot be pulled: `fetch_into_mirror`
//!    returns early when `doc.version == m` without creating the mirror, and the pull then reads
//!    `_origin:…@0` → `BranchNotFound`. And `compact` of such a branch writes a snapshot at version 1
//!    (`version.max(1)`) without a version 1 to hold it, so every later push and pull fails (root cause 1).
//! 3. **A push after someone else's compaction is accepted as "own".** In `push_with`, when `r > m` the
//!    "own" test is `deltas.filter(to > m).all(own) && (m > 0 || snapshot is own)`. After another
//!    client's push wrote a compaction snapshot (deltas cleared), the filter is empty, so the test is
//!    vacuously true for any `m > 0`; the push then fetches the other client's work into the mirror and
//!    records `mirror@r ≡ branch@snapshot.source_version` — a version number of the *other* database.
//!    If this database's head is at least that number, the push goes ahead with a false equal point:
//!    it uploads a wrong diff (some local keys are never uploaded) and marks both sides equal, so this
//!    database and the remote silently and permanently differ. Fix: also require
//!    `doc.snapshot.as_ref().is_none_or(|s| s.to <= m || s.origin == origin)`.
//! 4. **A damaged blob body whose hash matches** (written by a buggy client, or a cursor edited by
//!    hand) is reported as `SyncError::Engine(Io("Restored data doesn't match checksum"))` ("I/O
//!    error", without the blob's path) or `Engine(Corrupt)` instead of `SyncError::Corrupt` naming the
//!    blob: `verify_blob`/`BlobReader::verify` pass record errors through `?`.
//! 5. **A pull after a push whose response was lost** treats the push's own (older) values as the
//!    remote's changes: with last-writer-wins a newer local write to the same key is overwritten by this
//!    database's own earlier value (reported as a resolved conflict). A successful push followed by the
//!    same pull keeps the newer local value. `push_with` already uses `source_version` to recognise its
//!    own landed upload; the fetch in `pull_with` should record the same equal point before merging.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use strata_engine::{Strata, Value};
use strata_remote::{
    Failure, FaultyRemote, InMemoryRemote, Op, Remote, RemoteError, RemoteExt, RemotePath,
};
use strata_sync::layout::{cursor_name, CursorDoc};
use strata_sync::{pull_from, push_to, PullOptions, PushOptions, SyncError, SyncExt};

async fn push(db: &Strata, r: &dyn Remote) -> strata_sync::Result<strata_sync::PushReport> {
    push_to(db, r, "hub", "main", &PushOptions::default()).await
}

async fn push_every(
    db: &Strata,
    r: &dyn Remote,
    pack_fanout: usize,
) -> strata_sync::Result<strata_sync::PushReport> {
    let opts = PushOptions {
        pack_fanout,
        ..Default::default()
    };
    push_to(db, r, "hub", "main", &opts).await
}

async fn pull(db: &Strata, r: &dyn Remote) -> strata_sync::Result<strata_sync::PullReport> {
    pull_from(db, r, "hub", "main", &PullOptions::default()).await
}

// ----- 1. blobs with no records -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]

async fn first_push_of_a_branch_with_no_live_entries_can_be_pulled() {
    common::init();
    let r = InMemoryRemote::new();
    let a = Strata::open_temp().unwrap();
    a.main().kv_put("k", 1).unwrap();
    a.main().kv_delete("k").unwrap();
    let rep = push(&a, &r).await.unwrap();
    assert_eq!(rep.remote_version, 2);
    let b = Strata::open_temp().unwrap();
    // Today: Corrupt { what: "cursor of \"main\"", detail: "after applying its blobs the mirror is at
    // version 0, not 2" }.
    pull(&b, &r).await.unwrap();
    assert!(branch_contents(&b, "main").is_empty());
}

#[tokio::test(flavor = "multi_thread")]

async fn compaction_snapshot_of_an_emptied_branch_can_be_pulled() {
    common::init();
    let r = InMemoryRemote::new();
    let a = Strata::open_temp().unwrap();
    a.main().kv_put("k", 1).unwrap();
    push(&a, &r).await.unwrap();
    a.main().kv_delete("k").unwrap();
    let rep = push_every(&a, &r, 1).await.unwrap();
    assert!(rep.packed.is_some());
    let c = Strata::open_temp().unwrap();
    // Today: Corrupt "after applying its blobs the mirror is at version 0, not 2".
    pull(&c, &r).await.unwrap();
    assert!(branch_contents(&c, "main").is_empty());
}

#[tokio::test(flavor = "multi_thread")]

async fn far_behind_pull_when_the_snapshot_equals_the_mirror() {
    common::init();
    let r = InMemoryRemote::new();
    let a = Strata::open_temp().unwrap();
    let b = Strata::open_temp().unwrap();
    a.main().kv_put("x", 0).unwrap();
    a.main().kv_put("k", 1).unwrap();
    push(&a, &r).await.unwrap();
    pull(&b, &r).await.unwrap();
    // The remote changes k and changes it back; the second push writes a compaction snapshot, which
    // equals what b's mirror holds.
    a.main().kv_put("k", 2).unwrap();
    push_every(&a, &r, 2).await.unwrap();
    a.main().kv_put("k", 1).unwrap();
    let rep = push_every(&a, &r, 2).await.unwrap();
    assert!(rep.packed.is_some());
    // Today: Corrupt "after applying its blobs the mirror is at version 2, not 4".
    pull(&b, &r).await.unwrap();
    assert_eq!(head(&b, &mirror()), Some(4));
    assert_eq!(branch_contents(&b, "main"), branch_contents(&a, "main"));
}

// ----- 2. a remote branch at version 0 ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]

async fn pull_of_a_branch_pushed_empty() {
    common::init();
    let r = InMemoryRemote::new();
    let a = Strata::open_temp().unwrap();
    let rep = push(&a, &r).await.unwrap();
    assert_eq!(rep.remote_version, 0);
    let b = Strata::open_temp().unwrap();
    b.main().kv_put("mine", 1).unwrap();
    // Today: Engine(BranchNotFound("_origin:hub:main")).
    pull(&b, &r).await.unwrap();
    assert_eq!(b.main().kv_get("mine").unwrap(), Some(Value::Int(1)));
    // b can push on top of it, and a can pull that.
    push(&b, &r).await.unwrap();
    pull(&a, &r).await.unwrap();
    assert_eq!(a.main().kv_get("mine").unwrap(), Some(Value::Int(1)));
}

#[tokio::test(flavor = "multi_thread")]

async fn compact_of_a_branch_at_version_0() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("remote").to_str().unwrap().to_string();
    let a = Strata::open_temp().unwrap();
    a.remote_add("hub", &url).unwrap();
    a.push("hub", "main").await.unwrap();
    strata_sync::compact(&a, "hub", "main", &Default::default())
        .await
        .unwrap();
    // Today both fail: Corrupt "after applying its blobs the mirror is at version 0, not 1".
    a.main().kv_put("k", 1).unwrap();
    a.push("hub", "main").await.unwrap();
    let b = Strata::open_temp().unwrap();
    b.remote_add("hub", &url).unwrap();
    b.pull("hub", "main").await.unwrap();
    assert_eq!(b.main().kv_get("k").unwrap(), Some(Value::Int(1)));
}

// ----- 3. a push after someone else's compaction --------------------------------------------------

#[tokio::test(flavor = "multi_thread")]

async fn push_after_someone_elses_compaction_is_rejected() {
    common::init();
    let r = InMemoryRemote::new();
    let a = Strata::open_temp().unwrap();
    let b = Strata::open_temp().unwrap();
    a.main().kv_put("base", 0).unwrap();
    push(&a, &r).await.unwrap();
    pull(&b, &r).await.unwrap();
    // b's work, pushed with a compaction snapshot: the cursor now holds only a snapshot.
    b.main().kv_put("b-work", "precious").unwrap();
    let rep = push_every(&b, &r, 1).await.unwrap();
    assert!(rep.packed.is_some());
    // a has more local versions than b's head.
    for i in 0..5 {
        a.main().kv_put(&format!("a{i}"), i).unwrap();
    }
    // Today: Ok — it uploads a1..a4 but not a0, and records the remote as equal to a's branch.
    let res = push(&a, &r).await;
    assert!(
        matches!(res, Err(SyncError::Rejected(_))),
        "a has not merged b's work, so its push must be rejected: {res:?}"
    );
    // And the usual pull-then-push converges with everything.
    pull(&a, &r).await.unwrap();
    push(&a, &r).await.unwrap();
    let remote = remote_contents(&r).await;
    assert_eq!(remote, branch_contents(&a, "main"));
    assert_eq!(remote.get(&kv("a0")), Some(&Value::Int(0)));
    assert_eq!(remote.get(&kv("b-work")), Some(&Value::from("precious")));
}

/// The silent divergence bug 3 leads to, spelled out: after the accepted push, a's branch and the remote
/// differ, and no further sync reconciles them.
#[tokio::test(flavor = "multi_thread")]

async fn push_after_someone_elses_compaction_converges() {
    common::init();
    let r = InMemoryRemote::new();
    let a = Strata::open_temp().unwrap();
    let b = Strata::open_temp().unwrap();
    a.main().kv_put("base", 0).unwrap();
    push(&a, &r).await.unwrap();
    pull(&b, &r).await.unwrap();
    b.main().kv_put("b-work", "precious").unwrap();
    push_every(&b, &r, 1).await.unwrap();
    for i in 0..5 {
        a.main().kv_put(&format!("a{i}"), i).unwrap();
    }
    for _ in 0..3 {
        match push(&a, &r).await {
            Ok(_) => {}
            Err(SyncError::Rejected(_)) => {
                pull(&a, &r).await.unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    pull(&a, &r).await.unwrap();
    let remote = remote_contents(&r).await;
    assert_eq!(
        branch_contents(&a, "main"),
        remote,
        "a vs remote after sync"
    );
}

// ----- 4. damaged blob bodies with matching hashes ------------------------------------------------

/// Replaces the newest delta with `bytes` (at a new path) and points the cursor at it with the right
/// size and hash. Returns the new path.
async fn forge_newest_delta(mem: &InMemoryRemote, bytes: Vec<u8>) -> String {
    use sha2::Digest;
    let cur = mem
        .read_cursor(&cursor_name("main"))
        .await
        .unwrap()
        .unwrap();
    let mut doc = CursorDoc::parse("main", &cur.value).unwrap();
    let r = doc.deltas.last_mut().unwrap();
    let path = format!(
        "branches/main/deltas/{:020}-{:020}-forged.delta",
        r.from, r.to
    );
    mem.put_bytes_if_absent(
        &RemotePath::parse(&path).unwrap(),
        Bytes::from(bytes.clone()),
    )
    .await
    .unwrap();
    r.path = path.clone();
    r.bytes = bytes.len() as u64;
    r.sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    mem.write_cursor(
        &cursor_name("main"),
        Bytes::from(doc.to_bytes()),
        Some(&cur.token),
    )
    .await
    .unwrap();
    path
}

/// a pushed a base and one delta; b pulled the base only. Returns the delta's bytes.
async fn one_delta_behind(mem: &InMemoryRemote) -> (Strata, Vec<u8>) {
    let a = Strata::open_temp().unwrap();
    let b = Strata::open_temp().unwrap();
    for i in 0..20 {
        a.main().kv_put(&format!("k{i}"), i).unwrap();
    }
    push(&a, mem).await.unwrap();
    pull(&b, mem).await.unwrap();
    for i in 0..20 {
        a.main()
            .kv_put(&format!("k{i}"), format!("value number {i}"))
            .unwrap();
    }
    push(&a, mem).await.unwrap();
    let doc = cursor_doc(mem, "main").await.unwrap();
    let bytes = mem
        .get_bytes(&RemotePath::parse(&doc.deltas.last().unwrap().path).unwrap())
        .await
        .unwrap()
        .to_vec();
    (b, bytes)
}

#[tokio::test(flavor = "multi_thread")]

async fn bad_frame_checksum_with_matching_hash_is_corrupt() {
    common::init();
    let mem = InMemoryRemote::new();
    let (b, mut bytes) = one_delta_behind(&mem).await;
    *bytes.last_mut().unwrap() ^= 0x55;
    let path = forge_newest_delta(&mem, bytes).await;
    let before = local_state(&b);
    let e = pull(&b, &mem).await.unwrap_err();
    assert_eq!(local_state(&b), before);
    // Today: Engine(Io("Restored data doesn't match checksum")), shown as "I/O error: …".
    assert!(
        matches!(&e, SyncError::Corrupt { what, .. } if what.contains(&path)),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]

async fn bad_record_crc_with_matching_hash_is_corrupt() {
    common::init();
    let mem = InMemoryRemote::new();
    let (b, bytes) = one_delta_behind(&mem).await;
    // Re-compress the blob with one byte of its last record (inside the CRC) changed.
    let mut raw = zstd::decode_all(&bytes[..]).unwrap();
    let n = raw.len();
    raw[n - 1] ^= 0x55;
    let mut enc = zstd::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_checksum(true).unwrap();
    std::io::Write::write_all(&mut enc, &raw).unwrap();
    let forged = enc.finish().unwrap();
    let path = forge_newest_delta(&mem, forged).await;
    let before = local_state(&b);
    let e = pull(&b, &mem).await.unwrap_err();
    assert_eq!(local_state(&b), before);
    assert!(
        matches!(&e, SyncError::Corrupt { what, .. } if what.contains(&path)),
        "{e:?}"
    );
}

// ----- 5. a pull after a lost push response -------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]

async fn pull_after_lost_push_response_keeps_newer_local_write() {
    common::init();
    let mem = InMemoryRemote::new();
    let faulty = FaultyRemote::new(Arc::new(mem.clone()));
    let a = Strata::open_temp().unwrap();
    a.main().kv_put("k", 1).unwrap();
    push(&a, &faulty).await.unwrap();
    a.main().kv_put("k", 2).unwrap();
    // The write lands and the reply is an error sync cannot see through (a transient one it would
    // resolve by reading the cursor again).
    faulty.arm(
        Failure::nth_of(Op::WriteCursor, 1)
            .after_write()
            .with_error(RemoteError::Other),
    );
    push(&a, &faulty).await.unwrap_err();
    faulty.clear();
    a.main().kv_put("k", 3).unwrap();
    // Had the push's response arrived, this pull would keep k = 3 (nothing changed remotely since).
    let rep = pull(&a, &faulty).await.unwrap();
    // Today: k = 2, conflicts_resolved = 1.
    assert_eq!(
        a.main().kv_get("k").unwrap(),
        Some(Value::Int(3)),
        "{rep:?}"
    );
    assert_eq!(rep.conflicts_resolved, 0);
    push(&a, &faulty).await.unwrap();
    assert_eq!(
        remote_contents(&mem).await.get(&kv("k")),
        Some(&Value::Int(3))
    );
}
