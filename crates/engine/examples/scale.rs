//! Times the operations whose cost must grow linearly with the data: a full `kv_list`, a `diff` that
//! takes the full ordered scan, and a bulk `apply_raw_changes`. Run in release mode:
//! `cargo run --release -p strata-engine --example scale [-- list|apply]`. Prints figures; asserts nothing
//! (the scaling tests in `tests/scaling.rs` hold the bounds).

use std::time::Instant;

/// Times `f`: wall seconds and this thread's CPU seconds (Linux; steadier than wall time on a busy
/// machine).
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let cpu = || -> f64 {
        std::fs::read_to_string("/proc/thread-self/stat")
            .ok()
            .and_then(|s| {
                let rest = &s[s.rfind(')')? + 2..];
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some((f[11].parse::<f64>().ok()? + f[12].parse::<f64>().ok()?) / 100.0)
            })
            .unwrap_or(0.0)
    };
    let (c, t) = (cpu(), Instant::now());
    let out = f();
    (out, t.elapsed().as_secs_f64(), cpu() - c)
}

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
    let mut line = format!("{n:>8} keys:");
    let mut show = |what: &str, wall: f64, cpu: f64| {
        line += &format!("  {what} {wall:.3} s ({cpu:.2} cpu)");
    };
    let (got, w, c) = timed(|| db.main().kv_list("").unwrap().len());
    assert_eq!(got, n);
    show("kv_list", w, c);
    let (got, w, c) = timed(|| db.main().kv_list("key:").unwrap().len());
    assert_eq!(got, n);
    show("kv_list(prefix)", w, c);
    // A fork that rewrote every 4th key: the listing merges two lineage segments.
    db.fork_branch("main", "fork").unwrap();
    let mut tx = db.begin("fork").unwrap();
    for i in (0..n).step_by(4) {
        tx.kv_put(&format!("key:{i:08}"), 1).unwrap();
    }
    tx.commit().unwrap();
    let (got, w, c) = timed(|| db.on("fork").kv_list("").unwrap().len());
    assert_eq!(got, n);
    show("fork kv_list", w, c);
    strata_engine::force_full_scan_on_this_thread(true);
    let (d, w, c) = timed(|| db.diff(&Rev::head("main"), &Rev::head("fork")).unwrap());
    strata_engine::force_full_scan_on_this_thread(false);
    assert_eq!(d.counts().2, n.div_ceil(4));
    show("full-scan diff", w, c);
    let (d, w, c) = timed(|| db.diff(&Rev::head("main"), &Rev::head("fork")).unwrap());
    assert_eq!(d.counts().2, n.div_ceil(4));
    show("diff", w, c);
    let (sets, w, c) = timed(|| db.snapshot(&Rev::head("fork")).unwrap().count());
    show(&format!("snapshot ({sets} sets)"), w, c);
    println!("{line}");
}

/// Replays `n` rows as raw change sets of 2048 entries, 64 sets per version; keys in order, or
/// `scattered` over the key space (each insert lands on another index page).
fn apply(n: usize, scattered: bool) {
    let db = Strata::open_temp().unwrap();
    let per_set = 2048;
    let value = Value::from("a value of about forty bytes, like a small record").to_msgpack();
    let sets = (0..n.div_ceil(per_set)).map(|s| {
        let puts = (s * per_set..((s + 1) * per_set).min(n))
            .map(|i| {
                (
                    EntryKey::new(
                        "default",
                        Kind::Kv,
                        format!("key:{:08}", if scattered { i * 7919 % n } else { i }),
                    ),
                    value.clone(),
                )
            })
            .collect();
        Ok(RawChangeSet {
            version: 1 + (s / 64) as u64,
            timestamp_micros: 0,
            puts,
            deletes: vec![],
            meta: None,
        })
    });
    let (r, s, c) = timed(|| db.apply_raw_changes("main", sets).unwrap());
    assert_eq!(r.entries, n as u64);
    println!(
        "apply_raw_changes {n} rows{} in {} versions: {s:.2} s ({c:.2} cpu), {:.0} rows/s, {:.0} rows/cpu-s, peak RSS {} MB",
        if scattered { " (scattered keys)" } else { "" },
        r.versions,
        n as f64 / s,
        n as f64 / c,
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
        apply(1_000_000, false);
    }
    if what.is_empty() || what == "apply-scattered" {
        apply(1_000_000, true);
    }
}
