//! Garbage collection is safe:
//!
//! - (a) it never deletes a blob whose age the store does not report (`modified_millis` 0), whether
//!   the store reports no age for anything, for the branch blobs only, or for its clock probe only;
//! - (b) it judges age by the store's clock, not the local one: with the store's clock two days
//!   behind or ahead of ours, a young orphan is kept and one that is old by the store's clock goes;
//! - (c) racing pushes: while several clients push through a slow store with a short
//!   `publish_within`, another loops gc with a grace just above it, and no cursor ever names a
//!   missing blob. A control run with a grace of zero shows the check catches the damage.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use strata_engine::{Rev, Strata, Value};
use strata_remote::{
    BlobMeta, ByteStream, Cursor, CursorToken, Failure, FaultPlan, FaultyRemote, InMemoryRemote,
    Op, Remote, RemoteError, RemotePath,
};
use strata_sync::layout::CursorDoc;
use strata_sync::{pull_from, push_to, GcReport, PullOptions, PushOptions, SyncError};

const HOUR: Duration = Duration::from_secs(3600);
const DAY_MS: i64 = 24 * 3600 * 1000;

/// Which blobs a [`StoreClock`] reports no age for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Unknown {
    /// Every blob has its (skewed) age.
    Nothing = 0,
    /// No blob has an age.
    Everything = 1,
    /// The sync blobs (under `branches/`) have none; gc's clock probe has one.
    BranchBlobs = 2,
    /// Only gc's clock probe has none.
    Probe = 3,
}

/// A store with its own clock, over an `InMemoryRemote`: each blob is stamped with the store's time
/// when written (the real time plus the offset at that moment), as a store whose clock is wrong
/// would; `advance` moves the store's clock forward without any real time passing. It can also
/// report no age at all (`modified_millis` 0) for some blobs.
#[derive(Debug)]
struct StoreClock {
    inner: InMemoryRemote,
    offset_ms: AtomicI64,
    written_at_offset: Mutex<HashMap<String, i64>>,
    unknown: AtomicU8,
}

impl StoreClock {
    fn new(skew_ms: i64) -> Arc<StoreClock> {
        Arc::new(StoreClock {
            inner: InMemoryRemote::new(),
            offset_ms: AtomicI64::new(skew_ms),
            written_at_offset: Mutex::new(HashMap::new()),
            unknown: AtomicU8::new(Unknown::Nothing as u8),
        })
    }

    fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }

    fn set_unknown(&self, u: Unknown) {
        self.unknown.store(u as u8, Ordering::SeqCst);
    }

    fn is_unknown(&self, path: &RemotePath) -> bool {
        let probe = path.as_str().starts_with("gc-clock/");
        match self.unknown.load(Ordering::SeqCst) {
            0 => false,
            1 => true,
            2 => !probe,
            _ => probe,
        }
    }
}

impl std::fmt::Display for StoreClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "clocked({})", self.inner)
    }
}

#[async_trait]
impl Remote for StoreClock {
    async fn put_blob_if_absent(
        &self,
        path: &RemotePath,
        body: ByteStream,
    ) -> strata_remote::Result<()> {
        let offset = self.offset_ms.load(Ordering::SeqCst);
        self.inner.put_blob_if_absent(path, body).await?;
        self.written_at_offset
            .lock()
            .unwrap()
            .insert(path.to_string(), offset);
        Ok(())
    }
    async fn get_blob(&self, path: &RemotePath) -> strata_remote::Result<ByteStream> {
        self.inner.get_blob(path).await
    }
    async fn list_blobs(&self, prefix: &str) -> strata_remote::Result<Vec<BlobMeta>> {
        let mut list = self.inner.list_blobs(prefix).await?;
        let stamps = self.written_at_offset.lock().unwrap();
        for m in &mut list {
            m.modified_millis = if self.is_unknown(&m.path) {
                0
            } else {
                let off = stamps.get(m.path.as_str()).copied().unwrap_or(0);
                (m.modified_millis as i64 + off) as u64
            };
        }
        Ok(list)
    }
    async fn delete_blob(&self, path: &RemotePath) -> strata_remote::Result<()> {
        self.inner.delete_blob(path).await
    }
    async fn read_cursor(&self, name: &RemotePath) -> strata_remote::Result<Option<Cursor>> {
        self.inner.read_cursor(name).await
    }
    async fn write_cursor(
        &self,
        name: &RemotePath,
        value: Bytes,
        expected: Option<&CursorToken>,
    ) -> strata_remote::Result<CursorToken> {
        self.inner.write_cursor(name, value, expected).await
    }
    async fn list_cursors(&self, prefix: &str) -> strata_remote::Result<Vec<RemotePath>> {
        self.inner.list_cursors(prefix).await
    }
}

async fn push(db: &Strata, r: &dyn Remote) -> strata_sync::Result<strata_sync::PushReport> {
    push_to(db, r, "hub", "main", &PushOptions::default()).await
}

/// Every blob path under `branches/`.
async fn blobs(r: &dyn Remote) -> BTreeSet<String> {
    r.list_blobs("branches")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path.to_string())
        .collect()
}

/// Commits `key` and pushes it through a store whose cursor writes are down: the uploaded delta is
/// left behind unreferenced. Returns its path.
async fn orphan(db: &Strata, store: &Arc<StoreClock>, key: &str) -> String {
    let before = blobs(&**store).await;
    db.main().kv_put(key, 1).unwrap();
    let faulty = FaultyRemote::new(store.clone() as Arc<dyn Remote>);
    faulty.arm(Failure::always(Op::WriteCursor));
    push(db, &faulty).await.unwrap_err();
    let new: Vec<String> = blobs(&**store).await.difference(&before).cloned().collect();
    assert_eq!(new.len(), 1, "one orphan per failed push: {new:?}");
    new.into_iter().next().unwrap()
}

/// Blobs the cursor of `main` names.
async fn referenced(r: &dyn Remote) -> BTreeSet<String> {
    cursor_doc(r, "main")
        .await
        .expect("cursor")
        .blobs()
        .map(|b| b.path.clone())
        .collect()
}

/// A fresh database pulls `main` and gets `want`.
async fn fresh_pull_equals(r: &dyn Remote, want: &Contents, what: &str) {
    let db = Strata::open_temp().unwrap();
    pull_from(&db, r, "hub", "main", &PullOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{what}: a fresh pull failed: {e}"));
    assert_eq!(&branch_contents(&db, "main"), want, "{what}");
}

/// gc leaves no clock probe behind.
async fn assert_no_probe_left(r: &dyn Remote, what: &str) {
    let left = r.list_blobs("gc-clock").await.unwrap();
    assert!(left.is_empty(), "{what}: probes left behind: {left:?}");
}

// ----- (a) unknown ages ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_never_deletes_a_blob_of_unknown_age() {
    common::init();
    for unknown in [Unknown::Everything, Unknown::BranchBlobs, Unknown::Probe] {
        let store = StoreClock::new(0);
        let a = Strata::open_temp().unwrap();
        a.main().kv_put("k", 1).unwrap();
        push(&a, &*store).await.unwrap();
        a.main().kv_put("k", 2).unwrap();
        push(&a, &*store).await.unwrap();
        let pushed = branch_contents(&a, "main");
        let o1 = orphan(&a, &store, "lost1").await;
        let o2 = orphan(&a, &store, "lost2").await;
        let all = blobs(&*store).await;
        assert_eq!(all.len(), 4, "{all:?}");

        store.set_unknown(unknown);
        let r = strata_sync::gc(&*store, Duration::ZERO).await.unwrap();
        assert_eq!(
            r,
            GcReport {
                referenced: 2,
                kept_young: 0,
                kept_unknown_age: 2,
                deleted: 0,
                bytes_freed: 0
            },
            "{unknown:?}"
        );
        assert_eq!(blobs(&*store).await, all, "{unknown:?}: nothing deleted");
        assert_no_probe_left(&*store, &format!("{unknown:?}")).await;
        fresh_pull_equals(&*store, &pushed, &format!("{unknown:?}")).await;

        // The same orphans, once their age is known, do go: the case above was not vacuous.
        store.set_unknown(Unknown::Nothing);
        let r = strata_sync::gc(&*store, Duration::ZERO).await.unwrap();
        assert_eq!(
            (r.deleted, r.kept_unknown_age, r.referenced),
            (2, 0, 2),
            "{unknown:?}: {r:?}"
        );
        let left = blobs(&*store).await;
        assert!(!left.contains(&o1) && !left.contains(&o2), "{left:?}");
        assert_eq!(left, referenced(&*store).await);
        fresh_pull_equals(&*store, &pushed, &format!("{unknown:?} after gc")).await;
    }
}

// ----- (b) the store's clock, not ours --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_judges_age_by_the_store_clock() {
    common::init();
    for skew_ms in [-2 * DAY_MS, 2 * DAY_MS] {
        let what = format!("store clock {:+} days", skew_ms / DAY_MS);
        let store = StoreClock::new(skew_ms);
        let a = Strata::open_temp().unwrap();
        a.main().kv_put("k", 1).unwrap();
        push(&a, &*store).await.unwrap();
        let pushed = branch_contents(&a, "main");
        let old = orphan(&a, &store, "lost-old").await;

        // By the store's clock the orphan is brand new (by ours it is two days old or two days in the
        // future): kept.
        let r = strata_sync::gc(&*store, HOUR).await.unwrap();
        assert_eq!(
            (r.referenced, r.kept_young, r.kept_unknown_age, r.deleted),
            (1, 1, 0, 0),
            "{what}: {r:?}"
        );

        // Two hours pass on the store (none here), then another push fails: one old orphan and one
        // young one.
        store.advance(2 * HOUR);
        let young = orphan(&a, &store, "lost-young").await;
        let r = strata_sync::gc(&*store, HOUR).await.unwrap();
        assert_eq!(
            (r.referenced, r.kept_young, r.kept_unknown_age, r.deleted),
            (1, 1, 0, 1),
            "{what}: {r:?}"
        );
        let left = blobs(&*store).await;
        assert!(
            !left.contains(&old),
            "{what}: the old orphan stays: {left:?}"
        );
        assert!(
            left.contains(&young),
            "{what}: the young orphan went: {left:?}"
        );
        assert!(
            referenced(&*store).await.is_subset(&left),
            "{what}: a referenced blob went"
        );
        assert_no_probe_left(&*store, &what).await;
        fresh_pull_equals(&*store, &pushed, &what).await;

        // And the failed change still pushes, once the store is back.
        push(&a, &*store).await.unwrap();
        fresh_pull_equals(&*store, &branch_contents(&a, "main"), &what).await;
    }
}

// ----- (c) gc racing pushes -----------------------------------------------------------------------

/// Blobs that some cursor names but the store does not hold. A cursor that moves while this looks
/// (a compaction may unreference a blob that gc then deletes) makes it look again; only a blob
/// missing while its cursor stayed the same counts.
async fn dangling(store: &InMemoryRemote) -> Vec<String> {
    for _ in 0..20 {
        let mut cursors = Vec::new();
        for name in store.list_cursors("branches").await.unwrap() {
            let c = store.read_cursor(&name).await.unwrap().expect("listed");
            cursors.push((name, c));
        }
        let present: BTreeSet<String> = blobs(store).await;
        let mut missing = Vec::new();
        for (name, c) in &cursors {
            let doc = CursorDoc::parse(name.as_str(), &c.value).unwrap();
            for b in doc.blobs() {
                if !present.contains(&b.path) {
                    missing.push(format!("{} (cursor {name} v{})", b.path, doc.version));
                }
            }
        }
        if missing.is_empty() {
            return missing;
        }
        let mut same = true;
        for (name, c) in &cursors {
            let now = store.read_cursor(name).await.unwrap().expect("listed");
            same &= now.token == c.token;
        }
        if same {
            return missing;
        }
    }
    panic!("the cursors kept moving while the check looked");
}

/// What a run of racing pushes and gc did.
#[derive(Debug, Default)]
struct RaceRun {
    acked: Vec<String>,
    rejected: u64,
    too_slow: u64,
    gc_runs: u64,
    gc_deleted: u64,
    /// Cursors that named a missing blob, seen after an acknowledged push or at the end.
    violations: Vec<String>,
}

/// `pushers` clients push keys to `main` through a store with about `put_latency` on every blob upload
/// (it wanders from half to four and a half times that) and `cas_latency` on every cursor write, each push refusing to publish after `publish_within`, while
/// gc loops with `grace`, for `run_for`.
async fn race(
    pushers: usize,
    put_latency: Duration,
    cas_latency: Duration,
    publish_within: Duration,
    grace: Duration,
    run_for: Duration,
) -> RaceRun {
    let mem = InMemoryRemote::new();
    let slow = Arc::new(FaultyRemote::with_plan(
        Arc::new(mem.clone()) as Arc<dyn Remote>,
        FaultPlan::new()
            .with_op_latency(Op::PutBlob, put_latency)
            .with_op_latency(Op::WriteCursor, cas_latency),
    ));
    let run = Arc::new(Mutex::new(RaceRun::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + run_for;

    // The store's upload speed wanders: some uploads take more than half of `publish_within` (the
    // push uploads again under a fresh name), some pushes take longer than all of it (refused).
    let jitter = {
        let (slow, stop) = (slow.clone(), stop.clone());
        tokio::spawn(async move {
            let factors = [1u32, 3, 7, 2, 5, 9, 1, 4];
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let lat = put_latency * factors[i % factors.len()] / 2;
                slow.update_plan(|p| p.set_op_latency(Op::PutBlob, lat));
                i += 1;
                tokio::time::sleep(Duration::from_millis(70)).await;
            }
        })
    };
    let gc_task = {
        let (slow, run, stop) = (slow.clone(), run.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match strata_sync::gc(&*slow, grace).await {
                    Ok(r) => {
                        let mut run = run.lock().unwrap();
                        run.gc_runs += 1;
                        run.gc_deleted += r.deleted as u64;
                    }
                    // Before the first push lands there is no remote to collect.
                    Err(SyncError::NotAStrataRemote(_)) => {}
                    Err(e) => panic!("gc: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let mut tasks = Vec::new();
    for p in 0..pushers {
        let (slow, run, mem, stop) = (slow.clone(), run.clone(), mem.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let db = Strata::open_temp().unwrap();
            let opts = PushOptions {
                publish_within,
                // Compaction often: it unreferences deltas, which gc then deletes.
                pack_fanout: 3,
                ..Default::default()
            };
            let mut i = 0;
            // Once a cursor is broken nothing can pull any more: every client stops.
            'run: while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
                let key = format!("p{p}:{i}");
                db.main().kv_put(&key, i).unwrap();
                let mut attempts = 0;
                loop {
                    if stop.load(Ordering::SeqCst) {
                        break 'run;
                    }
                    attempts += 1;
                    assert!(attempts < 500, "{key}: no push succeeded in 500 attempts");
                    match push_to(&db, &*slow, "hub", "main", &opts).await {
                        Ok(_) => {
                            let missing = dangling(&mem).await;
                            let mut run = run.lock().unwrap();
                            run.acked.push(key.clone());
                            if !missing.is_empty() {
                                stop.store(true, Ordering::SeqCst);
                            }
                            run.violations.extend(missing);
                            break;
                        }
                        Err(SyncError::Rejected(_)) => {
                            run.lock().unwrap().rejected += 1;
                            if let Err(e) = pull_retrying(&db, &*slow).await {
                                let missing = dangling(&mem).await;
                                assert!(!missing.is_empty(), "{key}: pull: {e} ({e:?})");
                                stop.store(true, Ordering::SeqCst);
                                run.lock().unwrap().violations.extend(missing);
                                break 'run;
                            }
                        }
                        Err(e) if e.is_retryable() => {
                            if e.to_string().contains("between upload and publication") {
                                run.lock().unwrap().too_slow += 1;
                            }
                        }
                        Err(e) => panic!("{key}: push: {e} ({e:?})"),
                    }
                }
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    gc_task.await.unwrap();
    jitter.await.unwrap();
    let missing = dangling(&mem).await;
    let mut run = std::mem::take(&mut *run.lock().unwrap());
    if run.violations.is_empty() {
        run.violations.extend(missing);
    }
    if run.violations.is_empty() {
        // What the remote holds: every acknowledged key, for a brand-new database.
        let db = Strata::open_temp().unwrap();
        pull_from(&db, &mem, "hub", "main", &PullOptions::default())
            .await
            .unwrap_or_else(|e| panic!("a fresh pull after the race failed: {e}"));
        let have = contents(&db, &Rev::head("main"));
        for k in &run.acked {
            assert!(
                have.contains_key(&kv(k)),
                "acknowledged {k} is not on the remote"
            );
        }
    }
    run
}

/// Pulls (last writer wins) until it succeeds: a pull may meet a blob that compaction unreferenced
/// and gc deleted while it downloaded; it retries once itself, and here it simply runs again.
async fn pull_retrying(db: &Strata, r: &dyn Remote) -> Result<(), SyncError> {
    let mut last = None;
    for _ in 0..20 {
        match pull_from(db, r, "hub", "main", &PullOptions::default()).await {
            Ok(_) => return Ok(()),
            Err(e @ SyncError::Remote(RemoteError::NotFound(_))) => last = Some(e),
            Err(e) if e.is_retryable() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("20 failures"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_racing_pushes_never_breaks_a_cursor() {
    common::init();
    let publish_within = Duration::from_millis(300);
    let t0 = Instant::now();
    let run = race(
        3,
        Duration::from_millis(60),
        Duration::from_millis(20),
        publish_within,
        publish_within + Duration::from_millis(100),
        Duration::from_secs(3),
    )
    .await;
    println!(
        "{} acknowledged pushes, {} rejections, {} refused as too slow to publish, {} gc runs \
         deleted {} blobs, in {:?}",
        run.acked.len(),
        run.rejected,
        run.too_slow,
        run.gc_runs,
        run.gc_deleted,
        t0.elapsed()
    );
    assert!(
        run.violations.is_empty(),
        "cursors named missing blobs: {:?}",
        run.violations
    );
    assert!(
        run.acked.len() >= 6,
        "too few pushes to mean anything: {run:?}"
    );
    assert!(
        run.gc_deleted > 0,
        "gc deleted nothing, so raced nothing: {run:?}"
    );
}

/// The control: with no grace at all, gc deletes a blob between its upload and the cursor write
/// that publishes it, and the check above sees the broken cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_race_check_sees_what_a_grace_of_zero_breaks() {
    common::init();
    let run = race(
        2,
        Duration::from_millis(10),
        Duration::from_millis(150),
        Duration::from_secs(600),
        Duration::ZERO,
        Duration::from_millis(1500),
    )
    .await;
    println!(
        "{} acknowledged, {} violations",
        run.acked.len(),
        run.violations.len()
    );
    assert!(
        !run.violations.is_empty(),
        "gc with no grace racing slow cursor writes should have broken a cursor: {run:?}"
    );
}

/// A store so slow that every upload takes more than half of `publish_within`: the push must end
/// (with an error saying why) rather than upload again forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_through_a_store_too_slow_to_publish_ends() {
    common::init();
    let mem = InMemoryRemote::new();
    let slow = FaultyRemote::with_plan(
        Arc::new(mem.clone()) as Arc<dyn Remote>,
        FaultPlan::new().with_op_latency(Op::PutBlob, Duration::from_millis(120)),
    );
    let db = Strata::open_temp().unwrap();
    db.main().kv_put("k", Value::from(1)).unwrap();
    let opts = PushOptions {
        publish_within: Duration::from_millis(200),
        ..Default::default()
    };
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        push_to(&db, &slow, "hub", "main", &opts),
    )
    .await;
    let uploads = slow.count(Op::PutBlob);
    match res {
        Err(_) => panic!("the push was still uploading after 10 s ({uploads} uploads)"),
        Ok(r) => println!("push ended after {uploads} uploads: {r:?}"),
    }
}

/// A cursor write that fails transiently is retried (after reading the cursor again) without looking
/// at `publish_within` again: its retry can land after gc, with a grace longer than
/// `publish_within`, has deleted the blob it publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_cursor_write_never_publishes_a_collected_blob() {
    common::init();
    let publish_within = Duration::from_millis(300);
    let grace = Duration::from_millis(400);
    let mem = InMemoryRemote::new();
    let a = Strata::open_temp().unwrap();
    a.main().kv_put("k", 1).unwrap();
    push_to(&a, &mem, "hub", "main", &PushOptions::default())
        .await
        .unwrap();
    a.main().kv_put("k", 2).unwrap();
    // Every cursor write takes 250 ms, and the first one then fails as a timeout would.
    let slow = FaultyRemote::with_plan(
        Arc::new(mem.clone()) as Arc<dyn Remote>,
        FaultPlan::new()
            .with_op_latency(Op::WriteCursor, Duration::from_millis(250))
            .with_failure(Failure::nth_of(Op::WriteCursor, 1)),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let gc_task = {
        let (mem, stop) = (mem.clone(), stop.clone());
        tokio::spawn(async move {
            let mut deleted = 0;
            while !stop.load(Ordering::SeqCst) {
                deleted += strata_sync::gc(&mem, grace).await.unwrap().deleted;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            deleted
        })
    };
    let t0 = Instant::now();
    let res = push_to(
        &a,
        &slow,
        "hub",
        "main",
        &PushOptions {
            publish_within,
            ..Default::default()
        },
    )
    .await;
    let took = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    let deleted = gc_task.await.unwrap();
    println!("push took {took:?}: {res:?}; gc deleted {deleted}");
    if res.is_ok() {
        let missing = dangling(&mem).await;
        assert!(
            missing.is_empty(),
            "an acknowledged push (after {took:?}) published blobs gc had deleted: {missing:?}"
        );
        fresh_pull_equals(&mem, &branch_contents(&a, "main"), "after the push").await;
    }
}
