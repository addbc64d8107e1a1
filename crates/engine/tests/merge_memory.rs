//! Large merges: 200k changed keys and 100k events merge correctly, and the merge's own heap use stays
//! bounded by its pages rather than growing with the change (a counting global allocator measures the
//! peak of the thread running the merge; SQLite's page cache is its own, bounded by `cache_size`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use strata_engine::*;

struct Counting;

thread_local! {
    static TRACKED: Cell<bool> = const { Cell::new(false) };
}
static ON: AtomicBool = AtomicBool::new(false);
static CURRENT: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

fn tracked() -> bool {
    ON.load(Ordering::Relaxed) && TRACKED.try_with(Cell::get).unwrap_or(false)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if tracked() {
            let now =
                CURRENT.fetch_add(layout.size() as i64, Ordering::Relaxed) + layout.size() as i64;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if tracked() {
            CURRENT.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        }
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if tracked() {
            let d = new_size as i64 - layout.size() as i64;
            let now = CURRENT.fetch_add(d, Ordering::Relaxed) + d;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` and returns its result with the peak of heap bytes this thread held above what it held
/// when `f` started.
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, i64) {
    CURRENT.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    TRACKED.with(|t| t.set(true));
    ON.store(true, Ordering::Relaxed);
    let out = f();
    ON.store(false, Ordering::Relaxed);
    TRACKED.with(|t| t.set(false));
    (out, PEAK.load(Ordering::Relaxed))
}

/// The heap a merge may use whatever its size: a few pages of rows and keys. Holding the 200k
/// candidate keys, or both 100k-event tails, takes several times this.
const MAX_MERGE_HEAP: i64 = 8 << 20;

const KEYS: usize = 200_000;
const EVENTS: u64 = 100_000;

#[test]
fn merges_of_200k_keys_and_100k_events_stream() {
    let db = Strata::open_temp().unwrap();
    let mut tx = db.begin("main").unwrap();
    for i in 0..1000 {
        tx.kv_put(&format!("key:{i:07}"), -1).unwrap();
    }
    tx.event_append("base", 0).unwrap();
    tx.commit().unwrap();

    // 200k keys changed on the source (all of the base's keys among them); the target changes a few
    // keys too, one of them also changed by the source (a conflict).
    db.fork_branch("main", "src").unwrap();
    for chunk in 0..4 {
        let mut tx = db.begin("src").unwrap();
        for i in (chunk * KEYS / 4)..((chunk + 1) * KEYS / 4) {
            tx.kv_put(&format!("key:{i:07}"), i as i64).unwrap();
        }
        tx.commit().unwrap();
    }
    let mut tx = db.begin("main").unwrap();
    tx.kv_put("key:0000007", "target").unwrap();
    tx.kv_put("mine", "target").unwrap();
    tx.commit().unwrap();

    let (report, peak) = peak_heap(|| {
        db.merge(&Rev::head("src"), "main", MergeStrategy::LastWriterWins)
            .unwrap()
    });
    println!("merge of {KEYS} keys: peak heap {} KiB", peak / 1024);
    assert_eq!(report.applied, KEYS as u64);
    assert_eq!(report.conflicts_resolved, 1);
    let listed = db.main().kv_list("key:").unwrap();
    assert_eq!(listed.len(), KEYS);
    for (i, (k, v)) in listed.iter().enumerate() {
        assert_eq!(k, &format!("key:{i:07}"));
        assert_eq!(v, &Value::Int(i as i64));
    }
    assert_eq!(db.main().kv_get("mine").unwrap(), Some("target".into()));
    assert!(
        peak < MAX_MERGE_HEAP,
        "the merge of {KEYS} keys held {peak} heap bytes at its peak"
    );

    // 100k events appended on a new source while the target appends 500 of its own: the source's keep
    // their positions and the target's follow, renumbered. The candidate set is taken by the full
    // ordered scan here, so that path is measured too.
    db.fork_branch("main", "events").unwrap();
    let mut tx = db.begin("events").unwrap();
    for i in 0..EVENTS {
        tx.event_append("src", i as i64).unwrap();
    }
    tx.commit().unwrap();
    let mut tx = db.begin("main").unwrap();
    for i in 0..500 {
        tx.event_append("tgt", i).unwrap();
    }
    tx.commit().unwrap();
    force_full_scan_on_this_thread(true);
    let (report, peak) = peak_heap(|| {
        db.merge(&Rev::head("events"), "main", MergeStrategy::LastWriterWins)
            .unwrap()
    });
    force_full_scan_on_this_thread(false);
    println!("merge of {EVENTS} events: peak heap {} KiB", peak / 1024);
    assert_eq!(report.events_renumbered, 500);
    assert_eq!(report.applied, EVENTS + 500);
    let main = db.main();
    assert_eq!(main.event_len().unwrap(), 1 + EVENTS + 500);
    let log = main.event_range(1, usize::MAX).unwrap();
    assert_eq!(log.len() as u64, 1 + EVENTS + 500);
    for (i, e) in log.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_eq!(e.seq, seq);
        let want = match seq {
            1 => ("base", 0),
            s if s <= 1 + EVENTS => ("src", s as i64 - 2),
            s => ("tgt", (s - 2 - EVENTS) as i64),
        };
        assert_eq!(
            (e.event_type.as_str(), e.payload.clone()),
            (want.0, Value::Int(want.1))
        );
    }
    assert!(
        peak < MAX_MERGE_HEAP,
        "the merge of {EVENTS} events held {peak} heap bytes at its peak"
    );

    // Merging back is a no-op for the source's events: it already holds them where they are, and
    // gets the target's after them.
    let report = db
        .merge(&Rev::head("main"), "events", MergeStrategy::LastWriterWins)
        .unwrap();
    assert_eq!(report.events_renumbered, 0);
    assert_eq!(
        db.on("events").event_range(1, usize::MAX).unwrap(),
        main.event_range(1, usize::MAX).unwrap()
    );
}
