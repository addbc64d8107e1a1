//! Sync never blocks the async runtime it runs on. On a single-threaded runtime, a heartbeat task
//! ticks every 5 ms while a large push, a large delta push, a large pull and a clone run on the same
//! thread; the longest gap between ticks must stay far below the operation's duration. If any engine
//! call, zstd pass or file operation ran on the runtime thread, the heartbeat would stall for the
//! whole of it (the SQLite apply of a large pull alone takes seconds).
//!
//! `STRATA_LIVENESS_KEYS` sets the data size (default 400 000 keys: enough that each operation takes
//! well over `MIN_OPERATION` now that a first push streams its commit in linear time).

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use strata_engine::{Rev, Strata};
use strata_sync::{PullOptions, PushOptions, SyncExt};

/// The longest heartbeat gap allowed.
const MAX_GAP: Duration = Duration::from_millis(250);
/// Each operation must take at least this long, or the data set is too small to show anything: a
/// blocked runtime could then hide under the gap allowed. (In a debug build the default data set
/// takes 1.2 to 4 s per operation.)
const MIN_OPERATION: Duration = Duration::from_millis(2 * MAX_GAP.as_millis() as u64);
const TICK: Duration = Duration::from_millis(5);

fn keys() -> u64 {
    std::env::var("STRATA_LIVENESS_KEYS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(400_000)
}

/// Runs `op` while a heartbeat task on the same (current-thread) runtime ticks every [`TICK`];
/// returns the output, the operation's duration and the longest gap between ticks.
async fn with_heartbeat<F: Future>(what: &str, op: F) -> F::Output {
    let stop = Arc::new(AtomicBool::new(false));
    let beat = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut last = Instant::now();
            let (mut longest, mut ticks) = (Duration::ZERO, 0u64);
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(TICK).await;
                let now = Instant::now();
                longest = longest.max(now - last);
                last = now;
                ticks += 1;
            }
            (longest, ticks)
        })
    };
    // Let the heartbeat start before the operation takes the thread.
    tokio::task::yield_now().await;
    let t0 = Instant::now();
    let out = op.await;
    let took = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (longest, ticks) = beat.await.unwrap();
    println!("{what}: took {took:?}; longest heartbeat gap {longest:?} ({ticks} ticks)");
    assert!(
        took >= MIN_OPERATION,
        "{what} took only {took:?}: too little data to show the runtime stays free \
         (raise STRATA_LIVENESS_KEYS)"
    );
    assert!(
        longest < MAX_GAP,
        "{what} blocked the runtime thread: a heartbeat gap of {longest:?} during {took:?}"
    );
    out
}

/// Commits `n` keys in one transaction, each with value `round`.
fn write_all(db: &Strata, n: u64, round: i64) {
    let mut tx = db.begin("main").unwrap();
    for i in 0..n {
        tx.kv_put(&format!("key:{i:07}"), round * 1_000_000 + i as i64)
            .unwrap();
    }
    tx.commit().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn large_push_pull_and_clone_leave_the_runtime_free() {
    common::init();
    let n = keys();
    let tmp = tempfile::tempdir().unwrap();
    let url = tmp.path().join("remote").to_str().unwrap().to_string();
    let a = Strata::open(tmp.path().join("a")).unwrap();
    a.remote_add("hub", &url).unwrap();
    write_all(&a, n, 1);

    with_heartbeat(&format!("first push of {n} keys"), a.push("hub", "main"))
        .await
        .unwrap();
    // Half the keys: a delta push applies its blob to the mirror with the bulk writer, fast
    // enough that a quarter of them took under `MIN_OPERATION` on a quiet machine.
    write_all(&a, n / 2, 2);
    let p = with_heartbeat(
        &format!("delta push of {} changed keys", n / 2),
        a.push_with("hub", "main", &PushOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(p.entries, n / 2);

    let b = Strata::open(tmp.path().join("b")).unwrap();
    b.remote_add("hub", &url).unwrap();
    let r = with_heartbeat(
        &format!("pull of {n} keys (snapshot and delta)"),
        b.pull_with("hub", "main", &PullOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(r.fetch.remote_version, 2);
    drop(b);

    let (c, _) = with_heartbeat(
        &format!("clone of {n} keys"),
        strata_sync::clone(&url, tmp.path().join("c")),
    )
    .await
    .unwrap();
    // Everything arrived: same contents as the source (checked off the runtime thread's clock).
    let want = contents(&a, &Rev::head("main"));
    assert_eq!(want.len() as u64, n);
    assert_eq!(contents(&c, &Rev::head("main")), want);
}
