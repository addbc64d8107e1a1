//! Sync under injected faults, over a `FaultyRemote` wrapping an `InMemoryRemote` (and a folder remote
//! for damage done to files on disk):
//!
//! - (a) a push failing at every remote operation, before or after the write reaches the store;
//! - (b) a pull failing at every remote operation;
//! - (c) damaged blobs and cursors: flipped bytes, truncation, broken streams, forged cursors;
//! - (d) garbage collection of the blobs a failed push leaves behind;
//! - (e) compaction, and a client far behind a snapshot;
//! - (f) how many requests a small push or pull makes.

mod common;

/// Consecutive failed operations that make an outage: more than sync's retries of one step, so the
/// failure reaches the caller (a single transient failure is retried away; see races.rs).
const OUTAGE: u64 = 4;

/// A cursor write that lands, answered by an error sync cannot see through (not a transient one,
/// which it resolves by reading the cursor again): a lost reply.
fn lost_reply() -> Failure {
    Failure::nth_of(Op::WriteCursor, 1)
        .after_write()
        .with_error(RemoteError::Other)
}

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use serde_json::json;
use strata_engine::{Kind, Rev, Strata, Value};
use strata_remote::{
    Failure, FaultyRemote, InMemoryRemote, Op, OpCounts, Remote, RemoteError, RemoteExt,
    RemotePath, StreamFault,
};
use strata_sync::layout::{cursor_name, BlobRef, CursorDoc};
use strata_sync::{
    fetch_from, pull_from, push_to, Progress, PullOptions, PullReport, PushOptions, PushReport,
    SyncError, SyncExt,
};

type Faulty = FaultyRemote<InMemoryRemote>;

fn env() -> (InMemoryRemote, Faulty) {
    let mem = InMemoryRemote::new();
    let faulty = FaultyRemote::new(Arc::new(mem.clone()));
    (mem, faulty)
}

async fn push(db: &Strata, r: &dyn Remote, opts: &PushOptions) -> strata_sync::Result<PushReport> {
    push_to(db, r, "hub", "main", opts).await
}

async fn pull(db: &Strata, r: &dyn Remote) -> strata_sync::Result<PullReport> {
    pull_from(db, r, "hub", "main", &PullOptions::default()).await
}

/// The operation an injected fault hit, from its message (`injected fault: write_cursor #1 ...`).
fn injected_op(e: &SyncError) -> Op {
    let msg = match e {
        SyncError::Remote(RemoteError::Transient(m) | RemoteError::Other(m)) => m,
        other => panic!("expected an injected failure, got {other:?}"),
    };
    Op::ALL
        .into_iter()
        .find(|op| msg.starts_with(&format!("injected fault: {} #", op.method())))
        .unwrap_or_else(|| panic!("not an injected fault: {msg}"))
}

fn counts_str(c: &OpCounts) -> String {
    Op::ALL
        .iter()
        .filter(|op| c.get(**op) > 0)
        .map(|op| format!("{} {}", c.get(*op), op.method()))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Checks a database is in sync with the remote: branch == mirror == what the remote holds, and the
/// mirror's head is the cursor's version.
async fn assert_converged(db: &Strata, mem: &InMemoryRemote, what: &str) {
    let s = local_state(db);
    let doc = cursor_doc(mem, "main").await.expect("cursor");
    assert_eq!(s.mirror_head, Some(doc.version), "{what}: mirror head");
    assert_eq!(s.main, s.mirror, "{what}: branch vs mirror");
    assert_eq!(
        remote_contents(mem).await,
        s.main,
        "{what}: remote vs branch"
    );
}

// ----- (a) push faults ----------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum PushCase {
    /// The first push to an empty remote (marker, snapshot, cursor create).
    First,
    /// A delta to an established branch.
    Delta,
    /// A delta whose push also writes a compaction snapshot.
    DeltaWithCompaction,
}

const PUSH_CASES: [PushCase; 3] = [
    PushCase::First,
    PushCase::Delta,
    PushCase::DeltaWithCompaction,
];

/// Builds the state right before the push under test; returns the pushing database and the options.
async fn push_case(case: PushCase, r: &dyn Remote) -> (Strata, PushOptions) {
    let a = Strata::open_temp().unwrap();
    let opts = PushOptions {
        pack_fanout: match case {
            PushCase::DeltaWithCompaction => 2,
            _ => 32,
        },
        ..Default::default()
    };
    a.main().kv_put("config", json!({"model": "m1"})).unwrap();
    a.main().kv_put("gone", 1).unwrap();
    a.main()
        .space("notes")
        .unwrap()
        .json_put("doc", json!({"title": "t"}))
        .unwrap();
    a.main().event_append("start", 1).unwrap();
    if matches!(case, PushCase::Delta | PushCase::DeltaWithCompaction) {
        push(&a, r, &opts).await.unwrap();
    }
    if matches!(case, PushCase::DeltaWithCompaction) {
        a.main().kv_put("step", 1).unwrap();
        push(&a, r, &opts).await.unwrap();
    }
    a.main().kv_put("config", json!({"model": "m2"})).unwrap();
    a.main().kv_delete("gone").unwrap();
    a.main().state_set("phase", "two").unwrap();
    a.main().event_append("step", 2).unwrap();
    (a, opts)
}

/// Pushes `a` and checks what a failed push may and may not have done. Returns whether the cursor
/// moved (the write landed although the push reported a failure).
async fn faulted_push(
    a: &Strata,
    mem: &InMemoryRemote,
    faulty: &Faulty,
    opts: &PushOptions,
    failure: Failure,
    label: &str,
) -> Option<bool> {
    let before = local_state(a);
    let cursor_before = cursor_bytes(mem, "main").await;
    faulty.reset_counts();
    faulty.arm(failure);
    let res = push(a, faulty, opts).await;
    let injected = faulty.counts().injected;
    faulty.clear();
    let e = match res {
        // The outage struck ops of several steps, and each step's retries absorbed its part: the
        // push went through whole (the caller checks it matches a clean push).
        Ok(_) if injected > 0 => return Some(true),
        Ok(_) => return None,
        Err(e) => e,
    };
    assert!(injected >= 1, "{label}: {e}");
    assert!(
        e.is_retryable() || matches!(e, SyncError::Remote(RemoteError::Other(_))),
        "{label}: {e}"
    );
    let op = injected_op(&e);
    let landed = cursor_bytes(mem, "main").await != cursor_before;
    if landed {
        assert_eq!(
            op,
            Op::WriteCursor,
            "{label}: only a cursor write moves the cursor"
        );
        assert!(
            label.contains("after"),
            "{label}: the cursor moved on a failed write"
        );
    }
    // Whatever happened remotely, the database is as it was.
    assert_eq!(
        local_state(a),
        before,
        "{label}: a failed push changed the database"
    );
    Some(landed)
}

#[tokio::test(flavor = "multi_thread")]
async fn push_fails_at_every_operation_then_converges() {
    common::init();
    for case in PUSH_CASES {
        // A clean run, to learn the operations and the outcome.
        let (mem, faulty) = env();
        let (a, opts) = push_case(case, &faulty).await;
        faulty.reset_counts();
        let clean = push(&a, &faulty, &opts).await.unwrap();
        let ops = faulty.counts();
        let clean_doc = cursor_doc(&mem, "main").await.unwrap();
        let shape = |d: &CursorDoc| {
            (
                d.version,
                d.snapshot.as_ref().map(|s| (s.from, s.to, s.entries)),
                d.deltas
                    .iter()
                    .map(|d| (d.from, d.to, d.entries))
                    .collect::<Vec<_>>(),
            )
        };
        println!(
            "{case:?}: clean push makes {} requests: {}",
            ops.total(),
            counts_str(&ops)
        );

        for n in 1..=ops.total() {
            for after in [false, true] {
                let label = format!(
                    "{case:?}, op #{n} fails {}",
                    if after { "after" } else { "before" }
                );
                let (mem, faulty) = env();
                let (a, opts) = push_case(case, &faulty).await;
                let failure = if after {
                    Failure::nth(n).times(OUTAGE).after_write()
                } else {
                    Failure::nth(n).times(OUTAGE)
                };
                let landed = faulted_push(&a, &mem, &faulty, &opts, failure, &label)
                    .await
                    .unwrap_or_else(|| panic!("{label}: the fault did not strike"));
                if landed {
                    // The cursor is exactly what the clean push wrote (same version, same shape).
                    let doc = cursor_doc(&mem, "main").await.unwrap();
                    assert_eq!(shape(&doc), shape(&clean_doc), "{label}");
                }
                // Running the push again completes it.
                let rep = push(&a, &faulty, &opts)
                    .await
                    .unwrap_or_else(|e| panic!("{label}: re-run push failed: {e}"));
                assert_eq!(rep.remote_version, clean.remote_version, "{label}: {rep:?}");
                assert_eq!(rep.up_to_date, landed, "{label}: {rep:?}");
                assert_converged(&a, &mem, &label).await;
                // And nothing was lost: a second database gets all of it.
                let b = Strata::open_temp().unwrap();
                pull(&b, &mem).await.unwrap();
                assert_eq!(
                    branch_contents(&b, "main"),
                    branch_contents(&a, "main"),
                    "{label}"
                );
                // The next push starts from the right place: one change, one entry.
                a.main().kv_put("after", n as i64).unwrap();
                let rep = push(&a, &faulty, &opts).await.unwrap();
                assert_eq!(rep.entries, 1, "{label}: {rep:?}");
                assert_eq!(rep.remote_version, clean.remote_version + 1);
                assert_converged(&a, &mem, &label).await;
            }
        }
    }
}

/// A push whose cursor write landed but was reported failed, then a re-run that itself fails at every
/// operation: the database never changes on failure, and a final clean run converges.
#[tokio::test(flavor = "multi_thread")]
async fn rerun_push_after_lost_response_fails_at_every_operation() {
    common::init();
    for case in PUSH_CASES {
        let recovery_ops = {
            let (mem, faulty) = env();
            let (a, opts) = push_case(case, &faulty).await;
            let landed = faulted_push(&a, &mem, &faulty, &opts, lost_reply(), "landed after").await;
            assert_eq!(landed, Some(true));
            faulty.reset_counts();
            let rep = push(&a, &faulty, &opts).await.unwrap();
            assert!(rep.up_to_date, "{rep:?}");
            let ops = faulty.counts();
            println!(
                "{case:?}: re-run of a push whose response was lost makes {} requests: {}",
                ops.total(),
                counts_str(&ops)
            );
            ops.total()
        };
        for n in 1..=recovery_ops {
            for after in [false, true] {
                let label = format!(
                    "{case:?}, recovery op #{n} fails {}",
                    if after { "after" } else { "before" }
                );
                let (mem, faulty) = env();
                let (a, opts) = push_case(case, &faulty).await;
                faulted_push(&a, &mem, &faulty, &opts, lost_reply(), "landed after").await;
                let cursor = cursor_bytes(&mem, "main").await;
                let failure = if after {
                    Failure::nth(n).times(OUTAGE).after_write()
                } else {
                    Failure::nth(n).times(OUTAGE)
                };
                let before = local_state(&a);
                faulty.arm(failure);
                let e = push(&a, &faulty, &opts).await.unwrap_err();
                faulty.clear();
                injected_op(&e);
                assert_eq!(local_state(&a), before, "{label}");
                assert_eq!(cursor_bytes(&mem, "main").await, cursor, "{label}");
                let rep = push(&a, &faulty, &opts).await.unwrap();
                assert!(rep.up_to_date, "{label}: {rep:?}");
                assert_converged(&a, &mem, &label).await;
            }
        }
    }
}

/// A push whose response was lost, then more local work: the re-run pushes exactly the new work.
#[tokio::test(flavor = "multi_thread")]
async fn rerun_push_after_lost_response_with_new_work() {
    common::init();
    let (mem, faulty) = env();
    let (a, opts) = push_case(PushCase::Delta, &faulty).await;
    faulted_push(&a, &mem, &faulty, &opts, lost_reply(), "landed after").await;
    a.main().kv_put("config", json!({"model": "m3"})).unwrap();
    a.main().kv_put("new", 1).unwrap();
    let rep = push(&a, &faulty, &opts).await.unwrap();
    assert_eq!(rep.entries, 2, "{rep:?}");
    assert_converged(&a, &mem, "re-run with new work").await;
    assert_eq!(
        remote_contents(&mem).await.get(&kv("config")),
        Some(&Value::from(json!({"model": "m3"})))
    );
}

/// Someone else pushes between a lost-response push and its re-run: the re-run is rejected, and a
/// pull then push converges without losing either side.
#[tokio::test(flavor = "multi_thread")]
async fn lost_response_then_someone_else_pushes() {
    common::init();
    let (mem, faulty) = env();
    let (a, opts) = push_case(PushCase::Delta, &faulty).await;
    let b = Strata::open_temp().unwrap();
    pull(&b, &mem).await.unwrap();
    faulted_push(&a, &mem, &faulty, &opts, lost_reply(), "landed after").await;
    pull(&b, &mem).await.unwrap();
    b.main().kv_put("from-b", 1).unwrap();
    push(&b, &mem, &opts).await.unwrap();
    let e = push(&a, &faulty, &opts).await.unwrap_err();
    assert!(matches!(e, SyncError::Rejected(_)), "{e}");
    pull(&a, &faulty).await.unwrap();
    push(&a, &faulty, &opts).await.unwrap();
    pull(&b, &mem).await.unwrap();
    assert_converged(&a, &mem, "a").await;
    assert_converged(&b, &mem, "b").await;
    let remote = remote_contents(&mem).await;
    assert_eq!(remote.get(&kv("from-b")), Some(&Value::Int(1)));
    assert_eq!(remote.get(&kv("gone")), None);
    assert_eq!(
        remote.get(&kv("config")),
        Some(&Value::from(json!({"model": "m2"})))
    );
    assert_eq!(a.main().event_len().unwrap(), 2);
}

// ----- (b) pull faults ----------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum PullCase {
    /// An empty database pulls a snapshot and deltas.
    Fresh,
    /// A database with local work pulls two deltas.
    Incremental,
    /// A database with local work whose mirror is older than the remote's snapshot.
    FarBehind,
}

const PULL_CASES: [PullCase; 3] = [PullCase::Fresh, PullCase::Incremental, PullCase::FarBehind];

/// Builds the state before the pull under test: `a` pushed, `b` is about to pull. Returns them and
/// what `b`'s branch must hold after the pull.
async fn pull_case(case: PullCase, r: &dyn Remote) -> (Strata, Strata, Contents) {
    let a = Strata::open_temp().unwrap();
    let b = Strata::open_temp().unwrap();
    let opts = PushOptions {
        pack_fanout: if matches!(case, PullCase::FarBehind) {
            2
        } else {
            32
        },
        ..Default::default()
    };
    for i in 0..5 {
        a.main().kv_put(&format!("k{i}"), i).unwrap();
    }
    a.main().json_put("doc", json!({"v": 0})).unwrap();
    a.main().event_append("e", 0).unwrap();
    push(&a, r, &opts).await.unwrap();
    let mut local = Contents::new();
    if !matches!(case, PullCase::Fresh) {
        pull(&b, r).await.unwrap();
        b.main().kv_put("b-local", "mine").unwrap();
        local.insert(kv("b-local"), Value::from("mine"));
    }
    // Remote changes: modify, delete, add, an event; FarBehind goes past a compaction.
    let rounds = if matches!(case, PullCase::FarBehind) {
        4
    } else {
        1
    };
    for round in 0..rounds {
        a.main().kv_put("k0", 100 + round).unwrap();
        a.main().kv_delete(&format!("k{}", round + 1)).unwrap();
        push(&a, r, &opts).await.unwrap();
        a.main().json_put("doc", json!({"v": round + 1})).unwrap();
        a.main().event_append("e", round + 1).unwrap();
        push(&a, r, &opts).await.unwrap();
    }
    if matches!(case, PullCase::FarBehind) {
        // The remote drops the history before its head (the only way a remote loses versions now).
        let v = cursor_doc(r, "main").await.unwrap().version;
        strata_sync::compact_with(
            &a,
            r,
            "hub",
            "main",
            &strata_sync::CompactOptions {
                squash_before: Some(v),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let doc = cursor_doc(r, "main").await.unwrap();
    if matches!(case, PullCase::FarBehind) {
        let m = head(&b, &mirror()).unwrap();
        assert!(
            doc.snapshot.as_ref().unwrap().to > m,
            "b must be behind the snapshot"
        );
    }
    let mut expected = branch_contents(&a, "main");
    expected.extend(local);
    (a, b, expected)
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_fails_at_every_operation_then_converges() {
    common::init();
    for case in PULL_CASES {
        let (mem, faulty) = env();
        let (_a, b, expected) = pull_case(case, &faulty).await;
        faulty.reset_counts();
        pull(&b, &faulty).await.unwrap();
        let ops = faulty.counts();
        assert_eq!(
            branch_contents(&b, "main"),
            expected,
            "{case:?}: clean pull"
        );
        assert_converged_mirror(&b, &mem, &format!("{case:?}")).await;
        println!(
            "{case:?}: clean pull makes {} requests: {}",
            ops.total(),
            counts_str(&ops)
        );

        for n in 1..=ops.total() {
            for after in [false, true] {
                let label = format!(
                    "{case:?}, op #{n} fails {}",
                    if after { "after" } else { "before" }
                );
                let (mem, faulty) = env();
                let (_a, b, expected) = pull_case(case, &faulty).await;
                let before = local_state(&b);
                faulty.arm(if after {
                    Failure::nth(n).times(OUTAGE).after_write()
                } else {
                    Failure::nth(n).times(OUTAGE)
                });
                let res = pull(&b, &faulty).await;
                let injected = faulty.counts().injected;
                faulty.clear();
                match res {
                    Err(e) => {
                        injected_op(&e);
                        assert!(e.is_retryable(), "{label}: {e}");
                        assert_eq!(
                            local_state(&b),
                            before,
                            "{label}: a failed pull changed the database"
                        );
                    }
                    // Retries absorbed an outage spread over several steps: the pull is whole.
                    Ok(_) => {
                        assert!(injected > 0 || n > 0, "{label}");
                        assert_eq!(branch_contents(&b, "main"), expected, "{label}");
                    }
                }
                pull(&b, &faulty)
                    .await
                    .unwrap_or_else(|e| panic!("{label}: re-run pull: {e}"));
                assert_eq!(branch_contents(&b, "main"), expected, "{label}");
                assert_converged_mirror(&b, &mem, &label).await;
                // And b can push its own work now.
                push(&b, &faulty, &PushOptions::default()).await.unwrap();
                assert_converged(&b, &mem, &label).await;
            }
        }
    }
}

/// The mirror equals the remote and sits at the cursor's version.
async fn assert_converged_mirror(db: &Strata, mem: &InMemoryRemote, what: &str) {
    let doc = cursor_doc(mem, "main").await.unwrap();
    assert_eq!(
        head(db, &mirror()),
        Some(doc.version),
        "{what}: mirror head"
    );
    assert_eq!(
        branch_contents(db, &mirror()),
        remote_contents(mem).await,
        "{what}: mirror vs remote"
    );
}

/// A fetch failing at every operation leaves the mirror as it was, too; the branch is never touched.
#[tokio::test(flavor = "multi_thread")]
async fn fetch_fails_at_every_operation() {
    common::init();
    let (mem, faulty) = env();
    let (_a, b, _) = pull_case(PullCase::Incremental, &faulty).await;
    // The cursor, then two deltas.
    for n in 1..=3 {
        for after in [false, true] {
            let before = local_state(&b);
            faulty.arm(if after {
                Failure::nth(n).times(OUTAGE).after_write()
            } else {
                Failure::nth(n).times(OUTAGE)
            });
            let e = fetch_from(&b, &faulty, "hub", "main", &Progress::none())
                .await
                .unwrap_err();
            faulty.clear();
            injected_op(&e);
            assert_eq!(local_state(&b), before, "fetch op #{n}");
        }
    }
    let before = local_state(&b);
    let rep = fetch_from(&b, &faulty, "hub", "main", &Progress::none())
        .await
        .unwrap();
    // Two pushes of two versions each.
    assert_eq!(rep.versions, 4);
    assert_eq!(local_state(&b).main, before.main);
    assert_eq!(head(&b, "main"), before.main_head);
    assert_converged_mirror(&b, &mem, "fetch").await;
}

/// A blob that is missing once (deleted between reading the cursor and downloading) is retried with a
/// fresh cursor; missing twice, the pull fails cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn pull_retries_a_vanished_blob_once() {
    common::init();
    let (mem, faulty) = env();
    let (_a, b, expected) = pull_case(PullCase::Incremental, &faulty).await;
    faulty.arm(Failure::nth_of(Op::GetBlob, 1).with_error(RemoteError::NotFound));
    pull(&b, &faulty).await.unwrap();
    faulty.clear();
    assert_eq!(branch_contents(&b, "main"), expected);
    assert_converged_mirror(&b, &mem, "after retry").await;

    let (_mem, faulty) = env();
    let (_a, b, _) = pull_case(PullCase::Incremental, &faulty).await;
    let before = local_state(&b);
    faulty.arm(
        Failure::nth_of(Op::GetBlob, 1)
            .times(2)
            .with_error(RemoteError::NotFound),
    );
    let e = pull(&b, &faulty).await.unwrap_err();
    faulty.clear();
    assert!(
        matches!(e, SyncError::Remote(RemoteError::NotFound(_))),
        "{e}"
    );
    assert_eq!(local_state(&b), before);
}

// ----- (c) corruption -----------------------------------------------------------------------------

fn assert_corrupt(e: &SyncError, names: &str, label: &str) {
    match e {
        SyncError::Corrupt { what, .. } => {
            assert!(what.contains(names), "{label}: {e} should name {names}");
            assert!(e.to_string().contains(names), "{label}: {e}");
        }
        other => panic!("{label}: expected Corrupt naming {names}, got {other:?}"),
    }
}

/// The first blob a pull from version `m` downloads.
fn first_blob_after(doc: &CursorDoc, m: u64) -> BlobRef {
    doc.deltas
        .iter()
        .find(|d| d.from == m)
        .or(doc.snapshot.as_ref())
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_downloads_are_refused_and_nothing_is_applied() {
    common::init();
    for case in PULL_CASES {
        let (mem, faulty) = env();
        let (_a, b, expected) = pull_case(case, &faulty).await;
        let doc = cursor_doc(&mem, "main").await.unwrap();
        let m = head(&b, &mirror()).unwrap_or(0);
        let blob = match &doc.snapshot {
            Some(s) if m == 0 || s.to > m => s.clone(),
            _ => first_blob_after(&doc, m),
        };
        let len = blob.bytes;
        let faults = [
            StreamFault::FlipByte { offset: 0 },
            StreamFault::FlipByte { offset: 4 },
            StreamFault::FlipByte { offset: len / 2 },
            StreamFault::FlipByte { offset: len - 1 },
            StreamFault::FlipByte { offset: len + 7 },
            StreamFault::Truncate { keep: 0 },
            StreamFault::Truncate { keep: len / 2 },
            StreamFault::Truncate { keep: len - 1 },
        ];
        for fault in faults {
            let label = format!("{case:?}, {fault:?} of {len} bytes");
            let before = local_state(&b);
            faulty.corrupt_next_get(fault);
            let e = pull(&b, &faulty).await.unwrap_err();
            assert!(faulty.plan().is_idle(), "{label}: the damage was not used");
            assert_corrupt(&e, &blob.path, &label);
            assert!(!e.is_retryable(), "{label}");
            assert_eq!(
                local_state(&b),
                before,
                "{label}: a refused pull changed the database"
            );
        }
        // A stream that breaks once is a transient failure: the download starts again and the
        // pull goes through.
        faulty.corrupt_next_get(StreamFault::BreakAfter { after: len / 2 });
        pull(&b, &faulty).await.unwrap();
        assert!(faulty.plan().is_idle(), "{case:?}: the break was not used");
        assert_eq!(branch_contents(&b, "main"), expected, "{case:?}");
        assert_converged_mirror(&b, &mem, &format!("{case:?}")).await;
    }
}

/// Replaces the newest blob the cursor references with `bytes` at a new path, and points the cursor at
/// it with the right size and hash, as a buggy or hostile writer could: the download checks pass, so
/// the blob's own checks must catch it. Returns the new path.
async fn forge_newest_blob(
    mem: &InMemoryRemote,
    bytes: Vec<u8>,
    tweak: impl FnOnce(&mut BlobRef),
) -> String {
    use sha2::Digest;
    let cur = mem
        .read_cursor(&cursor_name("main"))
        .await
        .unwrap()
        .unwrap();
    let mut doc = CursorDoc::parse("main", &cur.value).unwrap();
    let r = match doc.deltas.last_mut() {
        Some(d) => d,
        None => doc.snapshot.as_mut().unwrap(),
    };
    let path = format!(
        "branches/main/deltas/{:020}-{:020}-forged{}.delta",
        r.from,
        r.to,
        uuid::Uuid::new_v4().simple()
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
    tweak(r);
    mem.write_cursor(
        &cursor_name("main"),
        Bytes::from(doc.to_bytes()),
        Some(&cur.token),
    )
    .await
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_blobs_with_matching_hashes_are_refused() {
    common::init();
    // Valid blobs to build forgeries from: a's newest delta, a's snapshot, and a delta of another branch.
    let (mem, _faulty) = env();
    let (a, _b, _) = pull_case(PullCase::Incremental, &mem).await;
    let doc = cursor_doc(&mem, "main").await.unwrap();
    let delta = mem
        .get_bytes(&RemotePath::parse(&doc.deltas.last().unwrap().path).unwrap())
        .await
        .unwrap()
        .to_vec();
    // The first push's blob holds the whole state (it was a snapshot before history sync).
    let snapshot = mem
        .get_bytes(&RemotePath::parse(&doc.deltas.first().unwrap().path).unwrap())
        .await
        .unwrap()
        .to_vec();
    a.fork_branch("main", "other").unwrap();
    a.on("other").kv_put("x", 1).unwrap();
    push_to(&a, &mem, "hub", "other", &PushOptions::default())
        .await
        .unwrap();
    a.on("other").kv_put("k0", 7).unwrap();
    push_to(&a, &mem, "hub", "other", &PushOptions::default())
        .await
        .unwrap();
    let other_doc = cursor_doc(&mem, "other").await.unwrap();
    let other_delta = mem
        .get_bytes(&RemotePath::parse(&other_doc.deltas.last().unwrap().path).unwrap())
        .await
        .unwrap()
        .to_vec();

    let mut flipped_inside = delta.clone();
    let mid = flipped_inside.len() / 2;
    flipped_inside[mid] ^= 0x55;
    let wrong_magic = zstd::encode_all(&b"NOTSTRAT\x02\x00\x00\x00{}"[..], 3).unwrap();
    let forgeries: Vec<(&str, Vec<u8>)> = vec![
        ("not zstd", b"definitely not a zstd frame".to_vec()),
        ("empty", vec![]),
        ("wrong magic", wrong_magic),
        ("truncated frame", delta[..delta.len() / 2].to_vec()),
        ("flipped inside the frame", flipped_inside),
        // A damaged frame checksum or record CRC: see regressions.rs (bug 4).
        ("a snapshot in place of a delta", snapshot),
        ("another branch's delta", other_delta),
    ];
    for (label, bytes) in forgeries {
        let (mem, _faulty) = env();
        let (_a, b, expected) = pull_case(PullCase::Incremental, &mem).await;
        let path = forge_newest_blob(&mem, bytes, |_| {}).await;
        let before = local_state(&b);
        let e = pull(&b, &mem).await.unwrap_err();
        println!("forged blob ({label}): {e}");
        assert!(
            e.to_string().contains(&path),
            "{label}: the error must name the blob: {e}"
        );
        assert_corrupt(&e, &path, label);
        assert_eq!(local_state(&b), before, "{label}");
        let _ = expected;
    }
    // A real blob whose recorded entry count is wrong.
    let (mem, _faulty) = env();
    let (_a, b, _) = pull_case(PullCase::Incremental, &mem).await;
    let path = forge_newest_blob(&mem, delta, |r| r.entries += 1).await;
    let before = local_state(&b);
    let e = pull(&b, &mem).await.unwrap_err();
    assert_corrupt(&e, &path, "entry count");
    assert_eq!(local_state(&b), before);
}

/// A folder remote with `a` pushed and `b` one delta behind. Returns (tempdir, remote folder, a, b).
async fn folder_world() -> (tempfile::TempDir, PathBuf, Strata, Strata) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("remote");
    let url = root.to_str().unwrap().to_string();
    let a = Strata::open(dir.path().join("a")).unwrap();
    let b = Strata::open(dir.path().join("b")).unwrap();
    a.remote_add("hub", &url).unwrap();
    b.remote_add("hub", &url).unwrap();
    for i in 0..4 {
        a.main().kv_put(&format!("k{i}"), i).unwrap();
    }
    a.push("hub", "main").await.unwrap();
    b.pull("hub", "main").await.unwrap();
    b.main().kv_put("b-local", 1).unwrap();
    a.main().kv_put("k0", 10).unwrap();
    a.main().kv_delete("k1").unwrap();
    a.push("hub", "main").await.unwrap();
    (dir, root, a, b)
}

async fn folder_cursor(root: &Path) -> CursorDoc {
    let r = strata_sync::open_url(root.to_str().unwrap()).unwrap();
    cursor_doc(&*r, "main").await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_blob_files_on_a_folder_remote() {
    common::init();
    let (_dir, root, a, b) = folder_world().await;
    let doc = folder_cursor(&root).await;
    let delta = doc.deltas.last().unwrap().clone();
    let file = root.join("blobs").join(&delta.path);
    let original = std::fs::read(&file).unwrap();
    assert_eq!(original.len() as u64, delta.bytes);
    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 0x01;
    let mut longer = original.clone();
    longer.push(0);
    for (label, bytes) in [
        ("one byte flipped", flipped),
        ("truncated", original[..original.len() - 3].to_vec()),
        ("empty", vec![]),
        ("one byte longer", longer),
    ] {
        std::fs::write(&file, &bytes).unwrap();
        let before = local_state(&b);
        let e = b.pull("hub", "main").await.unwrap_err();
        assert_corrupt(&e, &delta.path, label);
        println!("folder blob {label}: {e}");
        assert_eq!(local_state(&b), before, "{label}");
    }
    // A blob file that is gone altogether.
    std::fs::remove_file(&file).unwrap();
    let before = local_state(&b);
    let e = b.pull("hub", "main").await.unwrap_err();
    assert!(
        matches!(e, SyncError::Remote(RemoteError::NotFound(_))),
        "{e:?}"
    );
    assert_eq!(local_state(&b), before);
    // Restored, the pull goes through.
    std::fs::write(&file, &original).unwrap();
    b.pull("hub", "main").await.unwrap();
    let mut expected = branch_contents(&a, "main");
    expected.insert(kv("b-local"), Value::Int(1));
    assert_eq!(branch_contents(&b, "main"), expected);
}

/// The newest record file of the `main` cursor in a folder remote.
fn newest_cursor_record(root: &Path) -> PathBuf {
    let dir = root.join("cursors").join("branches").join("main");
    let mut records: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    records.sort();
    records.pop().expect("a cursor record")
}

#[tokio::test(flavor = "multi_thread")]
async fn damaged_cursor_on_a_folder_remote() {
    common::init();
    let (_dir, root, a, b) = folder_world().await;
    let record = newest_cursor_record(&root);
    let original = std::fs::read(&record).unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&original).unwrap();
    let mut future = doc.clone();
    future["format"] = json!(99);
    let mut gap = doc.clone();
    gap["deltas"][0]["from"] = json!(doc["deltas"][0]["from"].as_u64().unwrap() + 1);
    let mut wrong_version = doc.clone();
    wrong_version["version"] = json!(doc["version"].as_u64().unwrap() + 5);
    // The newest delta, which b has not fetched yet.
    let last = doc["deltas"].as_array().unwrap().len() - 1;
    doc["deltas"][last]["sha256"] = json!("00");
    let damaged: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not JSON",
            b"{\"format\": 1, \"branch\": \"main\", \"vers".to_vec(),
            "",
        ),
        ("empty", vec![], ""),
        (
            "future format",
            serde_json::to_vec(&future).unwrap(),
            "unsupported cursor format",
        ),
        (
            "broken chain",
            serde_json::to_vec(&gap).unwrap(),
            "delta chain broken",
        ),
        (
            "wrong version",
            serde_json::to_vec(&wrong_version).unwrap(),
            "blobs end at version",
        ),
    ];
    for (label, bytes, detail) in damaged {
        std::fs::write(&record, &bytes).unwrap();
        for who in ["b pulls", "a pushes", "b fetches", "status"] {
            let before_b = local_state(&b);
            let before_a = local_state(&a);
            let e = match who {
                "b pulls" => b.pull("hub", "main").await.map(|_| ()),
                "a pushes" => {
                    a.main().kv_put("more", 1).unwrap();
                    let r = a.push("hub", "main").await.map(|_| ());
                    a.main().kv_delete("more").unwrap();
                    r
                }
                "b fetches" => b.fetch("hub", "main").await.map(|_| ()),
                _ => b.sync_status("hub", "main").await.map(|_| ()),
            }
            .unwrap_err();
            assert_corrupt(&e, "cursor branches/main", &format!("{label}, {who}"));
            assert!(e.to_string().contains(detail), "{label}: {e}");
            if who != "a pushes" {
                assert_eq!(local_state(&a), before_a);
            }
            assert_eq!(local_state(&b), before_b, "{label}, {who}");
        }
        println!(
            "cursor {label}: {}",
            b.pull("hub", "main").await.unwrap_err()
        );
    }
    // A cursor pointing at a blob whose hash it records wrongly: the blob is named, not the cursor.
    std::fs::write(&record, serde_json::to_vec(&doc).unwrap()).unwrap();
    let e = b.pull("hub", "main").await.unwrap_err();
    assert!(matches!(e, SyncError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("SHA-256"), "{e}");
    // Restored, everything works again.
    std::fs::write(&record, &original).unwrap();
    b.pull("hub", "main").await.unwrap();
    b.push("hub", "main").await.unwrap();
    a.pull("hub", "main").await.unwrap();
    assert_eq!(branch_contents(&a, "main"), branch_contents(&b, "main"));
    assert_eq!(a.main().kv_get("b-local").unwrap(), Some(Value::Int(1)));
}

// ----- (d) garbage collection ---------------------------------------------------------------------

async fn blob_paths(r: &dyn Remote) -> Vec<String> {
    r.list_blobs("branches")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path.to_string())
        .collect()
}

async fn referenced(r: &dyn Remote) -> Vec<String> {
    let mut v: Vec<String> = cursor_doc(r, "main")
        .await
        .unwrap()
        .blobs()
        .map(|b| b.path.clone())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_deletes_what_failed_pushes_left_and_keeps_the_rest() {
    common::init();
    let url = format!("memory://gc-{}", uuid::Uuid::new_v4().simple());
    let inner = strata_sync::open_url(&url).unwrap();
    let faulty = FaultyRemote::new(inner.clone());
    let a = Strata::open_temp().unwrap();
    a.remote_add("hub", &url).unwrap();
    for i in 0..3 {
        a.main().kv_put(&format!("k{i}"), i).unwrap();
    }
    push(&a, &faulty, &PushOptions::default()).await.unwrap();
    a.main().kv_put("k0", 10).unwrap();
    push(&a, &faulty, &PushOptions::default()).await.unwrap();
    let pushed = branch_contents(&a, "main");
    let kept = referenced(&*inner).await;
    assert_eq!(kept.len(), 2);

    // Two pushes that die after uploading: one before the cursor write, one whose put "failed" after
    // storing the blob. Each leaves an orphan.
    a.main().kv_put("k1", 11).unwrap();
    faulty.arm(Failure::nth_of(Op::WriteCursor, 1).times(OUTAGE));
    push(&a, &faulty, &PushOptions::default())
        .await
        .unwrap_err();
    faulty.arm(
        Failure::nth_of(Op::PutBlob, 1)
            .after_write()
            .with_error(RemoteError::Other),
    );
    push(&a, &faulty, &PushOptions::default())
        .await
        .unwrap_err();
    faulty.clear();
    let all = blob_paths(&*inner).await;
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(referenced(&*inner).await, kept);

    // Young orphans survive a long grace period.
    let r = strata_sync::gc(&*inner, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!((r.referenced, r.kept_young, r.deleted), (2, 2, 0), "{r:?}");
    assert_eq!(blob_paths(&*inner).await, all);

    // With no grace, exactly the orphans go.
    let r = strata_sync::gc(&*inner, Duration::ZERO).await.unwrap();
    assert_eq!((r.referenced, r.kept_young, r.deleted), (2, 0, 2), "{r:?}");
    assert!(r.bytes_freed > 0);
    let mut left = blob_paths(&*inner).await;
    left.sort();
    assert_eq!(left, kept);
    // A second run finds nothing.
    let r = strata_sync::gc(&*inner, Duration::ZERO).await.unwrap();
    assert_eq!(r.deleted, 0);

    // A clone still works and holds what was pushed (not the failed change).
    let dir = tempfile::tempdir().unwrap();
    let (c, _) = strata_sync::clone(&url, dir.path().join("c"))
        .await
        .unwrap();
    assert_eq!(branch_contents(&c, "main"), pushed);
    assert_eq!(c.main().kv_get("k1").unwrap(), Some(Value::Int(1)));
    // The failed change pushes fine now, and reaches the clone.
    push(&a, &faulty, &PushOptions::default()).await.unwrap();
    c.pull("origin", "main").await.unwrap();
    assert_eq!(c.main().kv_get("k1").unwrap(), Some(Value::Int(11)));
    assert_eq!(branch_contents(&c, "main"), branch_contents(&a, "main"));
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_after_compaction_keeps_far_behind_clients_working() {
    common::init();
    let (mem, _faulty) = env();
    let (a, b, expected) = pull_case(PullCase::FarBehind, &mem).await;
    let before = blob_paths(&mem).await.len();
    let r = strata_sync::gc(&mem, Duration::ZERO).await.unwrap();
    let kept = referenced(&mem).await;
    assert_eq!(r.deleted, before - kept.len(), "{r:?}");
    assert_eq!(blob_paths(&mem).await.len(), kept.len());
    // b's old deltas are gone; it rebuilds from the snapshot.
    pull(&b, &mem).await.unwrap();
    assert_eq!(branch_contents(&b, "main"), expected);
    assert_converged_mirror(&b, &mem, "far behind after gc").await;
    let c = Strata::open_temp().unwrap();
    pull(&c, &mem).await.unwrap();
    assert_eq!(branch_contents(&c, "main"), branch_contents(&a, "main"));
}

// ----- (e) compaction -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn compaction_bounds_the_delta_chain_and_far_behind_pulls_are_right() {
    common::init();
    let (mem, faulty) = env();
    let opts = PushOptions {
        pack_fanout: 3,
        ..Default::default()
    };
    let a = Strata::open_temp().unwrap();
    for i in 0..10 {
        a.main().kv_put(&format!("k{i}"), i).unwrap();
    }
    a.main().json_put("doc", json!({"rev": 0})).unwrap();
    a.main().state_set("cell", 0).unwrap();
    a.main().event_append("e", 0).unwrap();
    push(&a, &faulty, &opts).await.unwrap();

    // b syncs early and has local work of its own.
    let b = Strata::open_temp().unwrap();
    pull(&b, &mem).await.unwrap();
    let b_version = head(&b, &mirror()).unwrap();
    b.main().kv_put("b-only", "x").unwrap();
    b.main().event_append("b-event", 1).unwrap();

    let mut packs = 0;
    for round in 0..12i64 {
        a.main().kv_put("k0", 100 + round).unwrap();
        if round < 8 {
            a.main().kv_delete(&format!("k{}", round + 1)).unwrap();
        }
        a.main().json_put("doc", json!({"rev": round + 1})).unwrap();
        a.main().event_append("e", round + 1).unwrap();
        if round % 4 == 3 {
            a.main().state_delete("cell").unwrap();
        } else {
            a.main().state_set("cell", round).unwrap();
        }
        faulty.reset_counts();
        let rep = push(&a, &faulty, &opts).await.unwrap();
        let doc = cursor_doc(&mem, "main").await.unwrap();
        // Packing with fanout 3 keeps at most 2 blobs per level.
        assert!(
            doc.deltas.len() <= 6,
            "round {round}: {} deltas",
            doc.deltas.len()
        );
        if rep.packed.is_some() {
            packs += 1;
            assert!(faulty.count(Op::PutBlob) >= 2, "the delta and a pack");
        }
        assert!(doc.snapshot.is_none(), "push never drops history");
    }
    assert!(packs >= 3, "{packs} packs");
    // The remote squashes the history before its head: b's mirror is now older than where it starts.
    let head_version = cursor_doc(&mem, "main").await.unwrap().version;
    strata_sync::compact_with(
        &a,
        &mem,
        "hub",
        "main",
        &strata_sync::CompactOptions {
            squash_before: Some(head_version),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let doc = cursor_doc(&mem, "main").await.unwrap();
    let snap = doc.snapshot.as_ref().unwrap();
    assert!(snap.to > b_version && snap.from == 0);
    assert!(doc.deltas.is_empty());

    // A fresh clone equals the source.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("memory://compaction-{}", uuid::Uuid::new_v4().simple());
    let shared = strata_sync::open_url(&url).unwrap();
    a.remote_add("shared", &url).unwrap();
    push_to(&a, &*shared, "shared", "main", &opts)
        .await
        .unwrap();
    let (c, _) = strata_sync::clone(&url, dir.path().join("c"))
        .await
        .unwrap();
    assert_eq!(branch_contents(&c, "main"), branch_contents(&a, "main"));
    let c2 = Strata::open_temp().unwrap();
    pull(&c2, &mem).await.unwrap();
    assert_eq!(branch_contents(&c2, "main"), branch_contents(&a, "main"));

    // b, whose mirror is older than the snapshot, pulls: keys deleted in between are deleted, its own
    // work stays, every event is there once.
    let deleted: Vec<String> = (1..=8).map(|i| format!("k{i}")).collect();
    for k in &deleted {
        assert!(b.main().kv_get(k).unwrap().is_some(), "b holds {k} before");
    }
    let rep = pull(&b, &mem).await.unwrap();
    println!("far-behind pull: {rep:?}");
    for k in &deleted {
        assert_eq!(b.main().kv_get(k).unwrap(), None, "{k} must be deleted");
    }
    assert_eq!(b.main().kv_get("k0").unwrap(), Some(Value::Int(111)));
    assert_eq!(b.main().kv_get("k9").unwrap(), Some(Value::Int(9)));
    assert_eq!(b.main().kv_get("b-only").unwrap(), Some(Value::from("x")));
    assert_eq!(
        b.main().json_get("doc").unwrap(),
        Some(Value::from(json!({"rev": 12})))
    );
    assert_eq!(
        b.main().state_get("cell").unwrap(),
        a.main().state_get("cell").unwrap()
    );
    let mut expected = branch_contents(&a, "main");
    let (b_plain, _) = split_events(&branch_contents(&b, "main"));
    let (a_plain, _) = split_events(&expected);
    let mut a_plain_plus = a_plain.clone();
    a_plain_plus.insert(kv("b-only"), Value::from("x"));
    assert_eq!(b_plain, a_plain_plus);
    assert_eq!(
        b.main().event_len().unwrap(),
        a.main().event_len().unwrap() + 1
    );
    check_event_logs(&branch_contents(&b, "main"), "b");
    assert_converged_mirror(&b, &mem, "far behind").await;
    // The mirror's history matches the remote's versions (b's fetch turned the snapshot into one version).
    let m = head(&b, &mirror()).unwrap();
    assert_eq!(m, doc.version);
    assert_eq!(
        contents(&b, &Rev::at(mirror(), m)),
        remote_contents(&mem).await
    );

    // b pushes its work; a pulls it; all equal.
    push(&b, &mem, &opts).await.unwrap();
    pull(&a, &mem).await.unwrap();
    expected = branch_contents(&b, "main");
    assert_eq!(branch_contents(&a, "main"), expected);
    assert_eq!(remote_contents(&mem).await, expected);
}

/// `compact` points the cursor at one snapshot; clients at every earlier version still pull right.
#[tokio::test(flavor = "multi_thread")]
async fn explicit_compaction_and_clients_at_every_version() {
    common::init();
    let url = format!("memory://compact-{}", uuid::Uuid::new_v4().simple());
    let remote = strata_sync::open_url(&url).unwrap();
    let a = Strata::open_temp().unwrap();
    a.remote_add("hub", &url).unwrap();
    let mut clients = vec![];
    for round in 0..6i64 {
        a.main().kv_put(&format!("r{round}"), round).unwrap();
        if round > 0 {
            a.main().kv_delete(&format!("r{}", round - 1)).unwrap();
        }
        a.main().kv_put("counter", round).unwrap();
        a.push("hub", "main").await.unwrap();
        let c = Strata::open_temp().unwrap();
        c.remote_add("hub", &url).unwrap();
        c.pull("hub", "main").await.unwrap();
        c.main().kv_put(&format!("local-{round}"), round).unwrap();
        clients.push(c);
    }
    let rep = strata_sync::compact(&a, "hub", "main", &Default::default())
        .await
        .unwrap();
    let doc = cursor_doc(&*remote, "main").await.unwrap();
    assert_eq!(doc.deltas.len(), 1, "every version in one pack");
    assert!(doc.shallow.is_some());
    assert_eq!(doc.version, rep.remote_version);
    strata_sync::gc(&*remote, Duration::ZERO).await.unwrap();
    assert_eq!(
        remote.list_blobs("").await.unwrap().len(),
        3,
        "marker, pack and shallow snapshot"
    );
    for (i, c) in clients.iter().enumerate() {
        c.pull("hub", "main")
            .await
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        let mut expected = branch_contents(&a, "main");
        expected.insert(kv(&format!("local-{i}")), Value::Int(i as i64));
        assert_eq!(branch_contents(c, "main"), expected, "client {i}");
    }
}

// ----- (f) request counts -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn small_push_and_pull_make_few_requests() {
    common::init();
    let (_mem, faulty) = env();
    let a = Strata::open_temp().unwrap();
    let b = Strata::open_temp().unwrap();
    for i in 0..200 {
        a.main().kv_put(&format!("k{i}"), i).unwrap();
    }
    faulty.reset_counts();
    push(&a, &faulty, &PushOptions::default()).await.unwrap();
    let first = faulty.counts();
    pull(&b, &faulty).await.unwrap();
    for i in 0..5 {
        a.main().kv_put(&format!("warm{i}"), i).unwrap();
        push(&a, &faulty, &PushOptions::default()).await.unwrap();
        pull(&b, &faulty).await.unwrap();
    }

    a.main().kv_put("k7", "changed").unwrap();
    faulty.reset_counts();
    let rep = push(&a, &faulty, &PushOptions::default()).await.unwrap();
    let small_push = faulty.counts();
    assert_eq!(rep.entries, 1);

    faulty.reset_counts();
    pull(&b, &faulty).await.unwrap();
    let small_pull = faulty.counts();

    faulty.reset_counts();
    assert!(
        push(&a, &faulty, &PushOptions::default())
            .await
            .unwrap()
            .up_to_date
    );
    let noop_push = faulty.counts();
    faulty.reset_counts();
    pull(&b, &faulty).await.unwrap();
    let noop_pull = faulty.counts();

    println!(
        "first push of 200 keys: {} requests ({})",
        first.total(),
        counts_str(&first)
    );
    println!(
        "push of one change to an established branch: {} requests ({})",
        small_push.total(),
        counts_str(&small_push)
    );
    println!(
        "pull of that change: {} requests ({})",
        small_pull.total(),
        counts_str(&small_pull)
    );
    println!(
        "up-to-date push: {} requests ({})",
        noop_push.total(),
        counts_str(&noop_push)
    );
    println!(
        "up-to-date pull: {} requests ({})",
        noop_pull.total(),
        counts_str(&noop_pull)
    );

    assert_eq!(
        (
            first.get(Op::ReadCursor),
            first.get(Op::PutBlob),
            first.get(Op::WriteCursor),
            first.total()
        ),
        (1, 2, 1, 4),
        "first push: cursor read, marker, snapshot, cursor create"
    );
    assert_eq!(
        (
            small_push.get(Op::ReadCursor),
            small_push.get(Op::PutBlob),
            small_push.get(Op::WriteCursor),
            small_push.total()
        ),
        (1, 1, 1, 3)
    );
    assert_eq!(
        (
            small_pull.get(Op::ReadCursor),
            small_pull.get(Op::GetBlob),
            small_pull.total()
        ),
        (1, 1, 2)
    );
    assert_eq!((noop_push.get(Op::ReadCursor), noop_push.total()), (1, 1));
    assert_eq!((noop_pull.get(Op::ReadCursor), noop_pull.total()), (1, 1));
    // Nothing lists: a pull follows the cursor.
    for c in [small_push, small_pull, noop_push, noop_pull] {
        assert_eq!(c.get(Op::ListBlobs) + c.get(Op::ListCursors), 0);
    }
    assert_eq!(b.main().kv_get("k7").unwrap(), Some(Value::from("changed")));
    let _ = Kind::Kv;
}

// ----- racing pushes ------------------------------------------------------------------------------

/// Three clients push at once through a slow remote: the cursor's compare-and-swap lets exactly one
/// win each round; the others are rejected without changing anything, pull, and win later. Nothing is
/// lost, and gc removes the losers' uploads.
#[tokio::test(flavor = "multi_thread")]
async fn racing_pushes_one_wins_the_rest_retry() {
    common::init();
    let (mem, faulty) = env();
    let clients: Vec<Strata> = (0..3).map(|_| Strata::open_temp().unwrap()).collect();
    clients[0].main().kv_put("shared", 0).unwrap();
    push(&clients[0], &faulty, &PushOptions::default())
        .await
        .unwrap();
    for c in &clients[1..] {
        pull(c, &faulty).await.unwrap();
    }
    for (i, c) in clients.iter().enumerate() {
        c.main().kv_put(&format!("from-{i}"), i as i64).unwrap();
        c.main().kv_put("shared", i as i64).unwrap();
        c.main().event_append("hello", i as i64).unwrap();
    }
    faulty.update_plan(|p| p.set_latency(Duration::from_millis(15)));
    let opts = PushOptions::default();
    let mut pending: Vec<usize> = vec![0, 1, 2];
    let mut rounds = 0;
    let mut losers = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds <= 3, "every round has a winner");
        let version = cursor_doc(&mem, "main").await.unwrap().version;
        let befores: Vec<LocalState> = pending.iter().map(|i| local_state(&clients[*i])).collect();
        let results =
            futures::future::join_all(pending.iter().map(|i| push(&clients[*i], &faulty, &opts)))
                .await;
        let winners: Vec<usize> = pending
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "round {rounds}: {results:?}");
        // The winner's own versions (and, after a pull, one that restores what its merge decided).
        let won = results
            .iter()
            .find_map(|r| r.as_ref().ok())
            .unwrap()
            .versions;
        assert!(won >= 1);
        assert_eq!(
            cursor_doc(&mem, "main").await.unwrap().version,
            version + won
        );
        let mut next = vec![];
        for ((i, r), before) in pending.iter().zip(results).zip(befores) {
            match r {
                Ok(_) => {}
                Err(SyncError::Rejected(_)) => {
                    let after = local_state(&clients[*i]);
                    assert_eq!(
                        (after.main_head, &after.main),
                        (before.main_head, &before.main)
                    );
                    next.push(*i);
                }
                Err(e) => panic!("client {i}: {e}"),
            }
        }
        for i in &next {
            pull(&clients[*i], &faulty).await.unwrap();
        }
        losers += next.len();
        pending = next;
    }
    faulty.clear();
    for c in &clients {
        pull(c, &faulty).await.unwrap();
        assert_converged(c, &mem, "after the race").await;
    }
    let remote = remote_contents(&mem).await;
    for i in 0..3 {
        assert_eq!(
            remote.get(&kv(&format!("from-{i}"))),
            Some(&Value::Int(i as i64))
        );
    }
    assert_eq!(clients[0].main().event_len().unwrap(), 3);
    check_event_logs(&remote, "after the race");
    // The losers' blobs are orphans; gc removes exactly them.
    let orphans = blob_paths(&mem).await.len() - referenced(&mem).await.len();
    assert_eq!(orphans, losers, "one orphan per rejected push");
    let r = strata_sync::gc(&mem, Duration::ZERO).await.unwrap();
    assert_eq!(r.deleted, orphans);
    let c = Strata::open_temp().unwrap();
    pull(&c, &mem).await.unwrap();
    assert_eq!(branch_contents(&c, "main"), remote);
}
