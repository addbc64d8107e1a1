//! Times the operations whose cost must grow linearly with the data: a full `kv_list`, a `diff` that
//! takes the full ordered scan, and a bulk `apply_raw_changes`. Run in release mode:
//! `cargo run --release -p strata-engine --example scale [-- list|apply]`. Prints figures; asserts nothing
//! (the scaling tests in `tests/scaling.rs` hold the bounds).

use std::time::Instant;

use strata_engine::{EntryKey, Kind, RawChangeSet, Rev, Strata, Value};

fn populate(db: &Strata, branch: &str, n: usize) {
    let mut tx = db.begin(branch).unwrap();
    let v = Value::from("a value of about forty bytes, like a small record");
    for i in 0..n {
        tx.kv_put_ref(&format!("key:{i:08}"), &v).unwrap();
    }
    tx.commit().unwrap();
}

fn list(n: usize) {
    let db = Strata::open_temp().unwrap();
    populate(&db, "main", n);
    let t = Instant::now();
    let got = db.main().kv_list("").unwrap().len();
    let list_s = t.elapsed().as_secs_f64();
    assert_eq!(got, n);
    let t = Instant::now();
    let got = db.main().kv_list("key:").unwrap().len();
    let prefix_s = t.elapsed().as_secs_f64();
    assert_eq!(got, n);
    // A fork that rewrote every 4th key: the listing merges two lineage segments.
    db.fork_branch("main", "fork").unwrap();
    let mut tx = db.begin("fork").unwrap();
    for i in (0..n).step_by(4) {
        tx.kv_put(&format!("key:{i:08}"), 1).unwrap();
    }
    tx.commit().unwrap();
    let t = Instant::now();
    let got = db.on("fork").kv_list("").unwrap().len();
    let fork_s = t.elapsed().as_secs_f64();
    assert_eq!(got, n);
    strata_engine::force_full_scan_on_this_thread(true);
    let t = Instant::now();
    let d = db.diff(&Rev::head("main"), &Rev::head("fork")).unwrap();
    let diff_s = t.elapsed().as_secs_f64();
    strata_engine::force_full_scan_on_this_thread(false);
    assert_eq!(d.counts().2, n.div_ceil(4));
    let t = Instant::now();
    let sets = db.snapshot(&Rev::head("fork")).unwrap().count();
    let snap_s = t.elapsed().as_secs_f64();
    println!(
        "{n:>8} keys: kv_list {list_s:>7.3} s  kv_list(prefix) {prefix_s:>7.3} s  fork kv_list {fork_s:>7.3} s  \
         full-scan diff {diff_s:>7.3} s  snapshot {snap_s:>7.3} s ({sets} sets)"
    );
}

fn apply(n: usize) {
    let db = Strata::open_temp().unwrap();
    let per_set = 2048;
    let value = Value::from("a value of about forty bytes, like a small record").to_msgpack();
    let sets = (0..n.div_ceil(per_set)).map(|s| {
        let puts = (s * per_set..((s + 1) * per_set).min(n))
            .map(|i| {
                (
                    EntryKey::new("default", Kind::Kv, format!("key:{i:08}")),
                    value.clone(),
                )
            })
            .collect();
        Ok(RawChangeSet {
            version: 1 + (s / 64) as u64,
            timestamp_micros: 0,
            puts,
            deletes: vec![],
        })
    });
    let t = Instant::now();
    let r = db.apply_raw_changes("main", sets).unwrap();
    let s = t.elapsed().as_secs_f64();
    assert_eq!(r.entries, n as u64);
    println!(
        "apply_raw_changes {n} rows in {} versions: {s:.2} s, {:.0} rows/s, peak RSS {} MB",
        r.versions,
        n as f64 / s,
        peak_rss_kb() / 1024
    );
}

/// The process's peak resident set (Linux; 0 elsewhere).
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    if what.is_empty() || what == "list" {
        for n in [40_000, 320_000] {
            list(n);
        }
    }
    if what.is_empty() || what == "apply" {
        apply(1_000_000);
    }
}
