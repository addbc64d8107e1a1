//! # strata-bench
//!
//! Benchmarks of the Strata engine. Every figure is printed next to a baseline measured in the same
//! run, on the same machine, in temporary folders on disk (never in memory), together with the ratio
//! and, where one is set, the target. Speed is measured here and never asserted in tests.
//!
//! Usage: `cargo run --release -p strata-bench -- [--quick] [--json] [--only NAME[,NAME…]] [--dir DIR]`
//!
//! The engine and every raw-SQLite baseline use WAL mode, the same `synchronous` setting and the same
//! page cache size (64 MiB). The stored value is one small object (about 100 bytes of MessagePack); the
//! raw baselines store exactly those bytes under exactly the same key strings.
//!
//! 1. `kv_put_batch` — N puts (`key:{i:08}`) in one transaction (`db.begin("main")`, `tx.kv_put` ×N,
//!    `tx.commit()`), in puts per second. Baseline: raw rusqlite inserting the same rows into
//!    `CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB)` in one transaction with a prepared
//!    statement (`synchronous=FULL`, as the engine default). Median of several runs, each on a fresh
//!    database. Target: ratio ≥ 0.5.
//! 2. `kv_put_single` — N `db.main().kv_put(..)` calls, each its own commit, in commits per second.
//!    Baseline: raw rusqlite autocommit single inserts. Reported twice: engine default
//!    (`Durability::Full`) against `synchronous=FULL`, and `Durability::Normal` against
//!    `synchronous=NORMAL`. The two sides alternate in chunks of N/20 commits so that both see the same
//!    disk conditions (fsync latency drifts with other I/O on the machine). No target (reported only).
//! 3. `kv_get` — random `db.main().kv_get(key)` of existing keys on the N-key branch built by
//!    benchmark 1, in gets per second. Baseline: raw `SELECT value FROM kv WHERE key=?` (prepared) on
//!    the raw table of benchmark 1; the baseline returns the stored bytes while the engine also decodes
//!    them into a `Value`. The same random key sequence is used for both, after a short warm-up of
//!    both caches. No target.
//! 4. `fork` — time of `db.fork_branch("main", name)` on a branch of BIG keys (loaded in 10 batched
//!    transactions) against the same on a branch of 1k keys; median of many forks, interleaved between
//!    the two databases. The ratio is big/small. Target: ratio ≤ 2 (a fork must not depend on size).
//! 5. `changes_since` — on the same two databases, after committing 100 more single puts, the time of
//!    `db.changes_since("main", head - 100)?.collect()`; median of repetitions (stopping after 20 s
//!    of them, 2 s with `--quick`, but not before 5). Ratio big/small.
//!    Target: ratio ≤ 2 (the cost must follow the changes read, not the branch size).
//! 6. `bundle` — `export_bundle` of the whole N-key branch of benchmark 1 and `import_bundle` of that
//!    bundle into a fresh database, in MB/s, where MB is the size of the (checkpointed) SQLite database
//!    file of the exported branch, the same numerator for all rates. Baseline: `std::fs::copy` of
//!    that file (median of 3 copies), so the ratio is copy time / bundle time. No target. If the
//!    bundle functions are not implemented yet (they panic), the rows say "not available".
//!
//! 7–10. The sync benchmarks (`push`, `clone`, `rsync`, `pull_rss`), over folder remotes: see the
//!    `sync` module for what each measures. `pull_rss` runs its pull in a child process (this binary
//!    with the hidden subcommand `__pull-child DIR`) so that the peak RSS is the pull's alone.
//! 11. `s3_push` — the first push of a 100k-key branch (100 B pseudo-random values, so zstd cannot
//!     shrink it) to a fresh prefix of the S3 emulator (moto), in MB/s of the snapshot blob's bytes;
//!     median of 3 pushes, each to a new prefix. Baseline: `rclone copy` of that same blob file from
//!     a local folder to another fresh prefix. Ratio Strata MB/s ÷ rclone MB/s. No target.
//! 12. `s3_clone` — `strata_sync::clone_with_options` of that prefix into a new database, in MB/s of
//!     the same blob bytes; median of 3. Baseline: `rclone copy` of the prefix's `blobs/branches/`
//!     (exactly the blob) to a local folder. Ratio Strata MB/s ÷ rclone MB/s. No target.
//! 13. `s3_requests` — HTTP requests (by method) of a push of one changed key on that branch, of a
//!     pull of it and of a no-op pull. Baseline (computed): one object per key synced by rclone,
//!     which lists ⌈keys / 1000⌉ pages first. Target: ≤ 5 requests each.
//!
//!    11–13 need the emulator: `STRATA_TEST_S3_ENDPOINT` and `STRATA_TEST_S3_BUCKET` (and dummy AWS
//!    keys), as `bash scripts/emulators.sh run -- cargo run --release -p strata-bench` exports. Without
//!    them their rows say "not available" and the run goes on; without `rclone` on PATH only their
//!    baselines are missing. See the `bucket` module for exactly what each measures.
//!
//! 14–16. What one sync step costs a user of the `strata` CLI (found next to this executable, and
//!    built first with cargo when it is missing or older): `fsyncs` (fsync-family calls of a push
//!    and a pull of one change, counted with `strace -f`, against `rsync -a`; targets ≤ 6 and ≤ 3;
//!    needs strace, and `STRATA_BENCH_REQUIRE_STRACE=1` makes its absence an error), `push_pull`
//!    (push + pull of 100 changes on the 1M-key database against `rsync -a` of its folder; target
//!    ≥ 20×) and `sync_rss` (peak RSS of `strata push`, `pull` and `clone` child processes, read with
//!    `wait4`, for a 500 MB delta of 1 KB, 10 KB, 40 KB and 1 MB values; target ≤ 100 MB). See the
//!    `sync_cost` module for exactly what each measures.
//!
//! At the end the peak resident set size of the process (VmHWM) and the load average at start and end
//! are printed: other work on the machine skews every figure, so compare ratios, not absolute rates.
//!
//! Default sizes: N = 200,000 (5 runs), 2,000 single commits per variant, 200,000 gets, BIG = 1,000,000
//! keys, 50 forks per database, 200 `changes_since` repetitions; sync: 1M- and 1k-key branches, 10
//! pushes of 100 changed keys each, 5 rsync rounds, a 500k × 1 KB delta for `pull_rss`; buckets: 100k
//! keys × 100 B, 3 rounds; 3 traced rounds for `fsyncs`; 500 MB deltas for `sync_rss`. `--quick`
//! shrinks them by about 10× (the sync ones more; buckets: 5k keys, 2 rounds; 20 MB deltas) for smoke
//! runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use rusqlite::Connection;
use strata_engine::{Durability, Options, Strata, Value, DB_FILE};
use tempfile::TempDir;

mod bucket;
mod child;
mod sync;
mod sync_cost;

const BENCHES: [&str; 17] = [
    "kv_put_batch",
    "kv_put_single",
    "kv_get",
    "fork",
    "changes_since",
    "bundle",
    "push",
    "clone",
    "rsync",
    "pull_rss",
    "s3_push",
    "s3_clone",
    "s3_requests",
    "fsyncs",
    "push_pull",
    "sync_rss",
    "history_clone",
];

/// The value sizes of `sync_rss`: 1 KB, 10 KB, 40 KB and 1 MB.
const RSS_VALUES: [usize; 4] = [1_000, 10_000, 40_000, 1_000_000];

/// `changes_since` stops repeating after `Sizes::changes_budget` (but not before this many reads), so
/// that a slow engine cannot make the run take far longer than planned.
const CHANGES_MIN_REPS: usize = 5;

#[derive(Parser, Debug)]
#[command(
    name = "strata-bench",
    about = "Benchmarks of the Strata engine against baselines measured in the same run"
)]
struct Cli {
    /// Smaller sizes, for smoke runs.
    #[arg(long)]
    quick: bool,
    /// Print the rows as JSON instead of a table (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Run only these benchmarks (repeatable or comma-separated): kv_put_batch, kv_put_single, kv_get,
    /// fork, changes_since, bundle, push, clone, rsync, pull_rss, s3_push, s3_clone, s3_requests,
    /// fsyncs, push_pull, sync_rss, history_clone.
    #[arg(
        long,
        value_name = "NAME",
        value_delimiter = ',',
        value_parser = clap::builder::PossibleValuesParser::new(BENCHES)
    )]
    only: Vec<String>,
    /// Folder under which the temporary databases are created (default: the system temp folder). Must
    /// be on disk, not tmpfs, for the durability figures to mean anything.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Value sizes in bytes of the `sync_rss` rows (comma-separated; default 1000,10000,40000,1000000).
    #[arg(long, value_name = "BYTES", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..))]
    rss_values: Vec<u64>,
}

/// Benchmark sizes.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    batch_n: usize,
    batch_runs: usize,
    single_n: usize,
    gets: usize,
    big: usize,
    big_txs: usize,
    small: usize,
    forks: usize,
    changes_reps: usize,
    changes_tail: u64,
    /// Time budget of the `changes_since` repetitions.
    changes_budget: Duration,
    copies: usize,
    /// Keys of the big and small branches the sync benchmarks push (7 and 16: keys 0..n).
    sync_big: usize,
    sync_small: usize,
    /// Keys changed per push, and pushes timed per database (7).
    push_changes: usize,
    push_reps: usize,
    /// Single-put commits of the branch that `history_clone` pushes and clones (11).
    history_commits: usize,
    /// Rounds of 100 changes synced by rsync and by push (9).
    rsync_reps: usize,
    /// Keys and value bytes of the delta pulled by the child process (10).
    rss_keys: usize,
    rss_value: usize,
    /// Keys and value bytes of the branch pushed to the S3 emulator, and rounds timed (11–13).
    s3_keys: usize,
    s3_value: usize,
    s3_reps: usize,
    /// Traced rounds of `fsyncs` (14).
    fsync_reps: usize,
    /// Bytes of values in each `sync_rss` delta (16).
    rss_delta: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                batch_n: 20_000,
                batch_runs: 1,
                single_n: 200,
                gets: 20_000,
                big: 100_000,
                big_txs: 10,
                small: 1_000,
                forks: 10,
                changes_reps: 20,
                changes_tail: 100,
                changes_budget: Duration::from_secs(2),
                copies: 3,
                sync_big: 10_000,
                sync_small: 1_000,
                push_changes: 100,
                push_reps: 9,
                history_commits: 2_000,
                rsync_reps: 2,
                rss_keys: 2_000,
                rss_value: 1_000,
                s3_keys: 5_000,
                s3_value: 100,
                s3_reps: 2,
                fsync_reps: 2,
                rss_delta: 20_000_000,
            }
        } else {
            Sizes {
                batch_n: 200_000,
                batch_runs: 5,
                single_n: 2_000,
                gets: 200_000,
                big: 1_000_000,
                big_txs: 10,
                small: 1_000,
                forks: 50,
                changes_reps: 200,
                changes_tail: 100,
                changes_budget: Duration::from_secs(20),
                copies: 3,
                sync_big: 1_000_000,
                sync_small: 1_000,
                push_changes: 100,
                push_reps: 64,
                history_commits: 100_000,
                rsync_reps: 5,
                rss_keys: 500_000,
                rss_value: 1_000,
                s3_keys: 100_000,
                s3_value: 100,
                s3_reps: 3,
                fsync_reps: 3,
                rss_delta: 500_000_000,
            }
        }
    }
}

// ----- result rows ------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Target {
    /// The ratio is at least this.
    AtLeast(f64),
    /// The ratio is at most this.
    AtMost(f64),
    /// The strata figure itself (not the ratio) is at most this many MB.
    MbAtMost(f64),
    /// The strata figure itself (a count, such as requests) is at most this.
    CountAtMost(f64),
}

impl Target {
    fn met(self, ratio: f64, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => ratio >= t,
            Target::AtMost(t) => ratio <= t,
            Target::MbAtMost(t) | Target::CountAtMost(t) => value <= t,
        }
    }
    fn label(self) -> String {
        match self {
            Target::AtLeast(t) => format!(">= {t:.2}x"),
            Target::AtMost(t) => format!("<= {t:.2}x"),
            Target::MbAtMost(t) => format!("<= {t:.0} MB"),
            Target::CountAtMost(t) => format!("<= {t:.0}"),
        }
    }
}

/// A measured quantity: a rate (higher is better), a duration in seconds (lower is better), an amount
/// of memory or data in MB (10^6 bytes), a count (such as HTTP requests; lower is better), or nothing
/// (the baseline could not be measured).
#[derive(Clone, Copy, Debug)]
enum Measure {
    Rate { per_sec: f64, unit: &'static str },
    Time { secs: f64 },
    Mb { mb: f64 },
    Count { n: f64, unit: &'static str },
    Missing,
}

impl Measure {
    fn value(self) -> f64 {
        match self {
            Measure::Rate { per_sec, .. } => per_sec,
            Measure::Time { secs } => secs,
            Measure::Mb { mb } => mb,
            Measure::Count { n, .. } => n,
            Measure::Missing => f64::NAN,
        }
    }
    fn unit(self) -> String {
        match self {
            Measure::Rate { unit, .. } => format!("{unit}/s"),
            Measure::Time { .. } => "s".to_string(),
            Measure::Mb { .. } => "MB".to_string(),
            Measure::Count { unit, .. } => unit.to_string(),
            Measure::Missing => String::new(),
        }
    }
    fn show(self) -> String {
        match self {
            Measure::Rate {
                per_sec,
                unit: "MB",
            } => format!("{per_sec:.1} MB/s"),
            Measure::Rate { per_sec, unit } => format!("{} {unit}/s", si(per_sec)),
            Measure::Time { secs } => show_secs(secs),
            Measure::Mb { mb } => format!("{mb:.1} MB"),
            Measure::Count { n: 1.0, unit } => format!("1 {}", unit.trim_end_matches('s')),
            Measure::Count { n, unit } => format!("{n:.0} {unit}"),
            Measure::Missing => "-".to_string(),
        }
    }
}

#[derive(Clone, Debug)]
struct Row {
    bench: &'static str,
    label: String,
    size: String,
    strata: std::result::Result<Measure, String>,
    baseline_label: String,
    baseline: Measure,
    /// How the ratio is formed, e.g. "strata/baseline".
    ratio_of: &'static str,
    /// The ratio is baseline/strata instead of strata/baseline.
    inverse: bool,
    target: Option<Target>,
    note: String,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        let (s, b) = (self.strata.as_ref().ok()?.value(), self.baseline.value());
        let r = if self.inverse { b / s } else { s / b };
        r.is_finite().then_some(r)
    }
    fn met(&self) -> Option<bool> {
        let (t, m) = (self.target?, self.strata.as_ref().ok()?);
        match t {
            // Targets on the figure itself need no ratio (the baseline may be 0 or missing).
            Target::MbAtMost(_) | Target::CountAtMost(_) => Some(t.met(f64::NAN, m.value())),
            Target::AtLeast(_) | Target::AtMost(_) => Some(t.met(self.ratio()?, m.value())),
        }
    }
    fn status(&self) -> &'static str {
        match (self.strata.is_ok(), self.met()) {
            (false, _) => "n/a",
            (true, Some(true)) => "PASS",
            (true, Some(false)) => "MISS",
            (true, None) => "info",
        }
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "bench": self.bench,
            "label": self.label,
            "size": self.size,
            "available": self.strata.is_ok(),
            "strata": self.strata.as_ref().ok().map(|m| m.value()),
            "strata_error": self.strata.as_ref().err(),
            "unit": self.strata.as_ref().map_or(self.baseline.unit(), |m| m.unit()),
            "baseline_label": self.baseline_label,
            "baseline": Some(self.baseline.value()).filter(|v| v.is_finite()),
            "ratio": self.ratio(),
            "ratio_of": self.ratio_of,
            "target": self.target.map(Target::label),
            "target_met": self.met(),
            "note": self.note,
        })
    }
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

fn show_ratio(r: f64) -> String {
    if r >= 0.1 {
        format!("{r:.2}x")
    } else {
        format!("{r:.4}x")
    }
}

/// The 1-, 5- and 15-minute load averages: other work on the machine skews every figure.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unavailable".into())
}

fn show_secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

fn median(v: &mut [f64]) -> f64 {
    assert!(!v.is_empty(), "median of nothing");
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn progress(msg: impl AsRef<str>) {
    eprintln!("[strata-bench] {}", msg.as_ref());
}

// ----- helpers ----------------------------------------------------------------------------------------

/// SplitMix64: a tiny deterministic generator, so both sides read the same random keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn key(i: usize) -> String {
    format!("key:{i:08}")
}

/// The value every put stores: a small object, about 100 bytes of MessagePack.
fn sample_value() -> Value {
    sample_value_turn(42)
}

/// The sample value with another `turn` (0..=127 keeps the encoded size the same).
fn sample_value_turn(turn: i64) -> Value {
    Value::object([
        ("kind", Value::from("note")),
        ("author", Value::from("agent-7")),
        ("score", Value::from(0.875)),
        ("ok", Value::from(true)),
        ("turn", Value::from(turn)),
        (
            "tags",
            Value::Array(vec![Value::from("memory"), Value::from("bench")]),
        ),
        ("text", Value::from("the quick brown fox jumps")),
    ])
}

fn sync_pragma(d: Durability) -> &'static str {
    match d {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    }
}

/// Opens a raw SQLite database with the same pragmas as the engine and the baseline table.
fn open_raw(file: &Path, durability: Durability) -> Result<Connection> {
    let conn = Connection::open(file)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("raw baseline could not switch to WAL (got {mode})");
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous={}; PRAGMA cache_size=-65536; PRAGMA temp_store=FILE;
         CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB);",
        sync_pragma(durability)
    ))?;
    Ok(conn)
}

fn open_strata(dir: &Path, durability: Durability) -> Result<Strata> {
    Ok(Strata::open_with(
        dir,
        Options {
            durability,
            ..Options::default()
        },
    )?)
}

fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ----- fixtures ---------------------------------------------------------------------------------------

/// The N-key engine database and the raw table with the same rows (benchmarks 1, 3, 6).
struct Batch {
    _engine_dir: TempDir,
    db: Strata,
    _raw_dir: TempDir,
    raw: Connection,
}

/// The BIG-key and 1k-key engine databases (benchmarks 4, 5).
struct Lineage {
    _big_dir: TempDir,
    big: Strata,
    _small_dir: TempDir,
    small: Strata,
}

struct Ctx {
    sizes: Sizes,
    root: PathBuf,
    value: Value,
    bytes: Vec<u8>,
    batch: Option<Batch>,
    lineage: Option<Lineage>,
    sync: Option<sync::SyncFix>,
    bucket: Option<bucket::BucketFix>,
    rt: tokio::runtime::Runtime,
    rows: Vec<Row>,
    /// Value sizes of `sync_rss` (16).
    rss_values: Vec<usize>,
}

impl Ctx {
    fn tempdir(&self, prefix: &str) -> Result<TempDir> {
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&self.root)
            .with_context(|| format!("creating a temporary folder under {}", self.root.display()))
    }

    /// Loads `n` keys into a fresh engine database in one transaction; returns the time taken.
    fn engine_batch(&self, n: usize) -> Result<(TempDir, Strata, Duration)> {
        let dir = self.tempdir("strata-bench-engine-")?;
        let db = open_strata(dir.path(), Durability::Full)?;
        let t = Instant::now();
        let mut tx = db.begin("main")?;
        for i in 0..n {
            tx.kv_put_ref(&key(i), &self.value)?;
        }
        tx.commit()?;
        let d = t.elapsed();
        Ok((dir, db, d))
    }

    /// Inserts the same `n` rows into a fresh raw table in one transaction; returns the time taken.
    fn raw_batch(&self, n: usize) -> Result<(TempDir, Connection, Duration)> {
        let dir = self.tempdir("strata-bench-raw-")?;
        let mut conn = open_raw(&dir.path().join("raw.db"), Durability::Full)?;
        let t = Instant::now();
        let tx = conn.transaction()?;
        {
            let mut st = tx.prepare("INSERT INTO kv (key, value) VALUES (?1, ?2)")?;
            for i in 0..n {
                st.execute(rusqlite::params![key(i), self.bytes])?;
            }
        }
        tx.commit()?;
        let d = t.elapsed();
        Ok((dir, conn, d))
    }

    fn ensure_batch(&mut self) -> Result<()> {
        if self.batch.is_none() {
            let n = self.sizes.batch_n;
            progress(format!("building the {n}-key databases (engine and raw)"));
            let (rd, raw, _) = self.raw_batch(n)?;
            let (ed, db, _) = self.engine_batch(n)?;
            self.batch = Some(Batch {
                _engine_dir: ed,
                db,
                _raw_dir: rd,
                raw,
            });
        }
        Ok(())
    }

    /// Opens a new engine database in `dir` and puts keys `0..n` (the sample value) into its main
    /// branch in `txs` transactions; returns it with the time taken.
    fn load_keys(&self, dir: &Path, n: usize, txs: usize) -> Result<(Strata, Duration)> {
        let db = open_strata(dir, Durability::Full)?;
        let per = n.div_ceil(txs.max(1)).max(1);
        let t = Instant::now();
        let mut i = 0;
        while i < n {
            let mut tx = db.begin("main")?;
            for j in i..(i + per).min(n) {
                tx.kv_put_ref(&key(j), &self.value)?;
            }
            tx.commit()?;
            i += per;
        }
        Ok((db, t.elapsed()))
    }

    fn ensure_lineage(&mut self) -> Result<()> {
        if self.lineage.is_some() {
            return Ok(());
        }
        let s = self.sizes;
        let load = |dir: &Path, n: usize, txs: usize| self.load_keys(dir, n, txs);
        let big_dir = self.tempdir("strata-bench-big-")?;
        progress(format!(
            "loading the {}-key branch ({} transactions)",
            s.big, s.big_txs
        ));
        let (big, bt) = load(big_dir.path(), s.big, s.big_txs)?;
        progress(format!(
            "  loaded in {} ({} puts/s)",
            show_secs(secs(bt)),
            si(s.big as f64 / secs(bt))
        ));
        let small_dir = self.tempdir("strata-bench-small-")?;
        let (small, _) = load(small_dir.path(), s.small, 1)?;
        self.lineage = Some(Lineage {
            _big_dir: big_dir,
            big,
            _small_dir: small_dir,
            small,
        });
        Ok(())
    }

    // ----- 1. batched kv_put -----

    fn bench_kv_put_batch(&mut self) -> Result<()> {
        let s = self.sizes;
        let n = s.batch_n;
        progress(format!(
            "kv_put_batch: {} runs of {n} puts in one transaction",
            s.batch_runs
        ));
        let mut raw_rates = Vec::new();
        let mut eng_rates = Vec::new();
        self.batch = None;
        for run in 0..s.batch_runs {
            let (rd, raw, rt) = self.raw_batch(n)?;
            let (ed, db, et) = self.engine_batch(n)?;
            let (r, e) = (n as f64 / secs(rt), n as f64 / secs(et));
            progress(format!(
                "  run {}: raw {} rows/s, strata {} puts/s",
                run + 1,
                si(r),
                si(e)
            ));
            raw_rates.push(r);
            eng_rates.push(e);
            self.batch = Some(Batch {
                _engine_dir: ed,
                db,
                _raw_dir: rd,
                raw,
            });
        }
        self.rows.push(Row {
            bench: "kv_put_batch",
            label: "kv_put, 1 transaction".into(),
            size: format!("{n} puts, median of {}", s.batch_runs),
            strata: Ok(Measure::Rate {
                per_sec: median(&mut eng_rates),
                unit: "puts",
            }),
            baseline_label: "raw INSERT, 1 txn".into(),
            baseline: Measure::Rate {
                per_sec: median(&mut raw_rates),
                unit: "puts",
            },
            ratio_of: "strata/baseline",
            inverse: false,
            target: Some(Target::AtLeast(0.5)),
            note: format!(
                "synchronous=FULL both; value {} bytes msgpack",
                self.bytes.len()
            ),
        });
        Ok(())
    }

    // ----- 2. single-put commits -----

    fn bench_kv_put_single(&mut self) -> Result<()> {
        let n = self.sizes.single_n;
        for durability in [Durability::Full, Durability::Normal] {
            let sync = sync_pragma(durability);
            progress(format!(
                "kv_put_single: {n} single-put commits, synchronous={sync}"
            ));
            let rd = self.tempdir("strata-bench-raw1-")?;
            let raw = open_raw(&rd.path().join("raw.db"), durability)?;
            let mut st = raw.prepare("INSERT INTO kv (key, value) VALUES (?1, ?2)")?;
            let ed = self.tempdir("strata-bench-engine1-")?;
            let db = open_strata(ed.path(), durability)?;
            let main = db.main();
            // Alternate chunks of commits between the two, so that both see the same disk conditions.
            let chunk = (n / 20).max(1);
            let (mut raw_t, mut eng_t) = (Duration::ZERO, Duration::ZERO);
            let mut i = 0;
            while i < n {
                let end = (i + chunk).min(n);
                let t = Instant::now();
                for j in i..end {
                    st.execute(rusqlite::params![key(j), self.bytes])?;
                }
                raw_t += t.elapsed();
                let t = Instant::now();
                for j in i..end {
                    main.kv_put(&key(j), self.value.clone())?;
                }
                eng_t += t.elapsed();
                i = end;
            }
            let raw_rate = n as f64 / secs(raw_t);
            let eng_rate = n as f64 / secs(eng_t);
            progress(format!(
                "  raw {} commits/s, strata {} commits/s",
                si(raw_rate),
                si(eng_rate)
            ));
            self.rows.push(Row {
                bench: "kv_put_single",
                label: format!("kv_put commit, {durability:?}"),
                size: format!("{n} commits"),
                strata: Ok(Measure::Rate {
                    per_sec: eng_rate,
                    unit: "commits",
                }),
                baseline_label: format!("raw autocommit, sync={sync}"),
                baseline: Measure::Rate {
                    per_sec: raw_rate,
                    unit: "commits",
                },
                ratio_of: "strata/baseline",
                inverse: false,
                target: None,
                note: format!(
                    "Durability::{durability:?} vs synchronous={sync}, WAL both; \
                     interleaved in chunks of {chunk}"
                ),
            });
        }
        Ok(())
    }

    // ----- 3. kv_get -----

    fn bench_kv_get(&mut self) -> Result<()> {
        self.ensure_batch()?;
        let s = self.sizes;
        let b = self.batch.as_ref().expect("batch fixture");
        let mut rng = Rng(0x5eed);
        let keys: Vec<String> = (0..s.gets).map(|_| key(rng.below(s.batch_n))).collect();
        progress(format!(
            "kv_get: {} random gets on the {}-key branch",
            s.gets, s.batch_n
        ));
        // Warm both page caches with one pass over a slice of the keys.
        let warm = s.gets.min(10_000);
        let mut st = b.raw.prepare_cached("SELECT value FROM kv WHERE key=?1")?;
        let main = b.db.main();
        for k in &keys[..warm] {
            let _: Vec<u8> = st.query_row([k], |r| r.get(0))?;
            main.kv_get(k)?;
        }
        let t = Instant::now();
        let mut raw_bytes = 0usize;
        for k in &keys {
            let v: Vec<u8> = st.query_row([k], |r| r.get(0))?;
            raw_bytes += v.len();
        }
        let raw_rate = s.gets as f64 / secs(t.elapsed());
        let t = Instant::now();
        let mut found = 0usize;
        for k in &keys {
            found += usize::from(main.kv_get(k)?.is_some());
        }
        let eng_rate = s.gets as f64 / secs(t.elapsed());
        if found != s.gets || raw_bytes != s.gets * self.bytes.len() {
            bail!(
                "kv_get: expected every key to exist (found {found} of {})",
                s.gets
            );
        }
        progress(format!(
            "  raw {} gets/s, strata {} gets/s",
            si(raw_rate),
            si(eng_rate)
        ));
        self.rows.push(Row {
            bench: "kv_get",
            label: "kv_get, random existing".into(),
            size: format!("{} gets on {} keys", s.gets, s.batch_n),
            strata: Ok(Measure::Rate {
                per_sec: eng_rate,
                unit: "gets",
            }),
            baseline_label: "raw SELECT by key".into(),
            baseline: Measure::Rate {
                per_sec: raw_rate,
                unit: "gets",
            },
            ratio_of: "strata/baseline",
            inverse: false,
            target: None,
            note: "engine decodes to Value; raw returns bytes".into(),
        });
        Ok(())
    }

    // ----- 4. fork -----

    fn bench_fork(&mut self) -> Result<()> {
        self.ensure_lineage()?;
        let s = self.sizes;
        let l = self.lineage.as_ref().expect("lineage fixture");
        progress(format!(
            "fork: {} forks of each branch, interleaved",
            s.forks
        ));
        let (mut big, mut small) = (Vec::new(), Vec::new());
        let fork = |db: &Strata, name: &str| -> Result<f64> {
            let t = Instant::now();
            db.fork_branch("main", name)?;
            Ok(secs(t.elapsed()))
        };
        for i in 0..s.forks {
            let name = format!("fork-{i}");
            // Alternate which database goes first, so neither always follows the other's fsync.
            if i % 2 == 0 {
                small.push(fork(&l.small, &name)?);
                big.push(fork(&l.big, &name)?);
            } else {
                big.push(fork(&l.big, &name)?);
                small.push(fork(&l.small, &name)?);
            }
        }
        let (mb, ms) = (median(&mut big), median(&mut small));
        progress(format!("  big {}, small {}", show_secs(mb), show_secs(ms)));
        self.rows.push(Row {
            bench: "fork",
            label: format!("fork_branch, {}-key branch", si(s.big as f64)),
            size: format!("median of {} forks each", s.forks),
            strata: Ok(Measure::Time { secs: mb }),
            baseline_label: format!("fork of {}-key branch", si(s.small as f64)),
            baseline: Measure::Time { secs: ms },
            ratio_of: "big/small",
            inverse: false,
            target: Some(Target::AtMost(2.0)),
            note: "Durability::Full: each fork is a commit with fsync".into(),
        });
        Ok(())
    }

    // ----- 5. changes_since -----

    fn bench_changes_since(&mut self) -> Result<()> {
        self.ensure_lineage()?;
        let s = self.sizes;
        let l = self.lineage.as_ref().expect("lineage fixture");
        let tail = s.changes_tail;
        progress(format!(
            "changes_since: {tail} more single puts, then {} reads of the last {tail}",
            s.changes_reps
        ));
        let mut rng = Rng(0x0c4a_96e5);
        for (db, n) in [(&l.big, s.big), (&l.small, s.small)] {
            let main = db.main();
            for _ in 0..tail {
                main.kv_put(&key(rng.below(n)), self.value.clone())?;
            }
        }
        let heads = (
            l.big.branch_info("main")?.head,
            l.small.branch_info("main")?.head,
        );
        let run = |db: &Strata, head: u64| -> Result<f64> {
            let t = Instant::now();
            let sets = db
                .changes_since("main", head - tail)?
                .collect::<strata_engine::Result<Vec<_>>>()?;
            let d = secs(t.elapsed());
            if sets.len() as u64 != tail || sets.iter().any(|c| c.len() != 1) {
                bail!(
                    "changes_since returned {} change sets, expected {tail} of one put each",
                    sets.len()
                );
            }
            Ok(d)
        };
        // One untimed pass each to warm the caches.
        run(&l.big, heads.0)?;
        run(&l.small, heads.1)?;
        let (mut big, mut small) = (Vec::new(), Vec::new());
        let started = Instant::now();
        for _ in 0..s.changes_reps {
            small.push(run(&l.small, heads.1)?);
            big.push(run(&l.big, heads.0)?);
            // A slow read must not hold the whole run up: stop at the time budget.
            if big.len() >= CHANGES_MIN_REPS && started.elapsed() > s.changes_budget {
                break;
            }
        }
        let reps = big.len();
        let (mb, ms) = (median(&mut big), median(&mut small));
        progress(format!("  big {}, small {}", show_secs(mb), show_secs(ms)));
        self.rows.push(Row {
            bench: "changes_since",
            label: format!("changes_since last {tail}, {}-key", si(s.big as f64)),
            size: format!("median of {reps} reads"),
            strata: Ok(Measure::Time { secs: mb }),
            baseline_label: format!("same on {}-key branch", si(s.small as f64)),
            baseline: Measure::Time { secs: ms },
            ratio_of: "big/small",
            inverse: false,
            target: Some(Target::AtMost(2.0)),
            note: if reps < s.changes_reps {
                format!(
                    "{tail} versions of 1 put each; stopped after {reps} of {} reads at the {} \
                     time budget",
                    s.changes_reps,
                    show_secs(s.changes_budget.as_secs_f64())
                )
            } else {
                format!("{tail} versions of 1 put each")
            },
        });
        Ok(())
    }

    // ----- 6. bundle -----

    fn bench_bundle(&mut self) -> Result<()> {
        self.ensure_batch()?;
        let s = self.sizes;
        let work = self.tempdir("strata-bench-bundle-")?;
        let b = self.batch.as_ref().expect("batch fixture");
        let file = b.db.path().join(DB_FILE);
        // Move everything into the main database file so that a copy of it is the whole database.
        {
            let c = Connection::open(&file)?;
            c.busy_timeout(Duration::from_secs(10))?;
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        let bytes = std::fs::metadata(&file)?.len();
        let mb = bytes as f64 / 1e6;
        progress(format!(
            "bundle: database file {mb:.1} MB; {} file copies as the baseline",
            s.copies
        ));
        let mut copy_times = Vec::new();
        for i in 0..s.copies {
            let dst = work.path().join(format!("copy-{i}.db"));
            let t = Instant::now();
            std::fs::copy(&file, &dst)?;
            copy_times.push(secs(t.elapsed()));
            std::fs::remove_file(&dst)?;
        }
        let copy = Measure::Rate {
            per_sec: mb / median(&mut copy_times),
            unit: "MB",
        };
        let size = format!("{} keys, {mb:.1} MB db file", s.batch_n);

        let bundle_path = work.path().join("main.branchbundle.tar.zst");
        let t = Instant::now();
        let export = match b.db.export_bundle("main", None, &bundle_path) {
            Ok(m) => Ok((m, secs(t.elapsed()))),
            Err(e) => Err(format!("error: {e}")),
        };
        let mut export_note = String::new();
        if let Ok((m, _)) = &export {
            let bsize = std::fs::metadata(&bundle_path)
                .map(|m| m.len())
                .unwrap_or(0);
            export_note = format!(
                "bundle {:.1} MB, {} entries",
                bsize as f64 / 1e6,
                m.entry_count
            );
        }
        progress(format!(
            "  export: {}",
            match &export {
                Ok((_, d)) => show_secs(*d),
                Err(e) => e.clone(),
            }
        ));
        self.rows.push(Row {
            bench: "bundle",
            label: "export_bundle".into(),
            size: size.clone(),
            strata: export
                .as_ref()
                .map(|(_, d)| Measure::Rate {
                    per_sec: mb / d,
                    unit: "MB",
                })
                .map_err(Clone::clone),
            baseline_label: "fs::copy of db file".into(),
            baseline: copy,
            ratio_of: "strata/baseline",
            inverse: false,
            target: None,
            note: export_note,
        });

        let import = match &export {
            Err(_) => Err("not available (no bundle: export unavailable)".to_string()),
            Ok(_) => {
                let dst = self.tempdir("strata-bench-import-")?;
                let fresh = open_strata(dst.path(), Durability::Full)?;
                let t = Instant::now();
                let r = match fresh.import_bundle(&bundle_path, Some("imported")) {
                    Ok(rep) => Ok((rep, secs(t.elapsed()))),
                    Err(e) => Err(format!("error: {e}")),
                };
                drop(fresh);
                drop(dst);
                r
            }
        };
        progress(format!(
            "  import: {}",
            match &import {
                Ok((_, d)) => show_secs(*d),
                Err(e) => e.clone(),
            }
        ));
        self.rows.push(Row {
            bench: "bundle",
            label: "import_bundle (fresh db)".into(),
            size,
            strata: import
                .as_ref()
                .map(|(_, d)| Measure::Rate {
                    per_sec: mb / d,
                    unit: "MB",
                })
                .map_err(Clone::clone),
            baseline_label: "fs::copy of db file".into(),
            baseline: copy,
            ratio_of: "strata/baseline",
            inverse: false,
            target: None,
            note: import
                .as_ref()
                .map(|(r, _)| format!("{} versions, {} entries", r.versions, r.entries))
                .unwrap_or_default(),
        });
        Ok(())
    }
}

// ----- output -----------------------------------------------------------------------------------------

fn print_table(rows: &[Row]) {
    let header = [
        "benchmark",
        "size",
        "strata",
        "baseline",
        "baseline is",
        "ratio",
        "target",
        "result",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.label.clone(),
                r.size.clone(),
                match &r.strata {
                    Ok(m) => m.show(),
                    // Short reasons (such as a missing tool) fit in the cell; long ones go below.
                    Err(e) if e.chars().count() <= 48 => e.clone(),
                    Err(_) => "not available".to_string(),
                },
                r.baseline.show(),
                r.baseline_label.clone(),
                r.ratio().map(show_ratio).unwrap_or_else(|| "-".into()),
                r.target.map(Target::label).unwrap_or_else(|| "-".into()),
                r.status().to_string(),
            ]
        })
        .collect();
    let mut w = header.map(str::len);
    for c in &cells {
        for (i, s) in c.iter().enumerate() {
            w[i] = w[i].max(s.chars().count());
        }
    }
    let line = |c: &[String]| {
        let parts: Vec<String> = c
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s}{}", " ".repeat(w[i] - s.chars().count())))
            .collect();
        println!("| {} |", parts.join(" | "));
    };
    line(&header.map(String::from));
    println!(
        "|{}|",
        w.iter()
            .map(|n| "-".repeat(n + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for c in &cells {
        line(c);
    }
    println!();
    println!(
        "ratios: rates are strata/baseline (higher is better); fork, changes_since and push are \
         big/small, clone is strata/baseline (lower is better); rsync is rsync/push (higher is \
         better); pull_rss is the child's peak RSS against the delta size, the target is on the RSS; \
         s3_push and s3_clone are strata MB/s / rclone MB/s (higher is better); s3_requests is the \
         computed per-key baseline / strata requests, the target is on strata's count; fsyncs are \
         counts (the target is on strata's count; rsync makes none, so no ratio); push_pull is \
         rsync/(push+pull) (higher is better); sync_rss is the child's peak RSS against cp's, the \
         target is on the RSS"
    );
    for r in rows {
        if let Err(e) = &r.strata {
            println!("- {}: {e}", r.label);
        } else if !r.note.is_empty() {
            println!("- {}: {}", r.label, r.note);
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The intermediate process of benchmarks 14–16, which runs a command and reports its peak RSS;
    // first, so that it stays as small as it can.
    if args.get(1).is_some_and(|a| a == child::RSS_CHILD) {
        return child::rss_child(&args[2..]);
    }
    strata_sync::set_connector(std::sync::Arc::new(strata_remotes::Remotes::new()));
    // The child process of benchmark 10, which pulls a delta and reports its own peak RSS.
    if args.get(1).is_some_and(|a| a == sync::PULL_CHILD) {
        return sync::pull_child(&args[2..]);
    }
    let cli = Cli::parse();
    let selected = |name: &str| cli.only.is_empty() || cli.only.iter().any(|n| n == name);
    let sizes = Sizes::new(cli.quick);
    let root = cli.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&root)?;
    // Absolute, because folder remotes are configured by path.
    let root = std::fs::canonicalize(&root)?;
    let value = sample_value();
    let bytes = value.to_msgpack();
    let mut ctx = Ctx {
        sizes,
        root,
        value,
        bytes,
        batch: None,
        lineage: None,
        sync: None,
        bucket: None,
        rt: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        rows: Vec::new(),
        rss_values: if cli.rss_values.is_empty() {
            RSS_VALUES.to_vec()
        } else {
            cli.rss_values.iter().map(|&v| v as usize).collect()
        },
    };
    let started = Instant::now();
    let load_start = loadavg();
    progress(format!("sizes: {sizes:?}"));

    type Bench = fn(&mut Ctx) -> Result<()>;
    let benches: [(&str, Bench); 17] = [
        ("kv_put_batch", Ctx::bench_kv_put_batch),
        ("kv_put_single", Ctx::bench_kv_put_single),
        ("kv_get", Ctx::bench_kv_get),
        ("fork", Ctx::bench_fork),
        ("changes_since", Ctx::bench_changes_since),
        ("bundle", Ctx::bench_bundle),
        ("push", Ctx::bench_push),
        ("clone", Ctx::bench_clone),
        ("rsync", Ctx::bench_rsync),
        ("pull_rss", Ctx::bench_pull_rss),
        ("s3_push", Ctx::bench_s3_push),
        ("s3_clone", Ctx::bench_s3_clone),
        ("s3_requests", Ctx::bench_s3_requests),
        ("fsyncs", Ctx::bench_fsyncs),
        ("push_pull", Ctx::bench_push_pull),
        ("sync_rss", Ctx::bench_sync_rss),
        ("history_clone", Ctx::bench_history_clone),
    ];
    for (name, f) in benches {
        if selected(name) {
            let t = Instant::now();
            f(&mut ctx).with_context(|| format!("benchmark {name}"))?;
            progress(format!("{name} done in {}", show_secs(secs(t.elapsed()))));
        }
    }
    let total = secs(started.elapsed());
    let load_end = loadavg();
    let rss = peak_rss_kib();
    let Ctx {
        rows,
        root,
        bytes,
        rss_values,
        ..
    } = ctx;

    if cli.json {
        let out = serde_json::json!({
            "quick": cli.quick,
            "sizes": {
                "batch_puts": sizes.batch_n,
                "batch_runs": sizes.batch_runs,
                "single_commits": sizes.single_n,
                "gets": sizes.gets,
                "big_keys": sizes.big,
                "big_load_transactions": sizes.big_txs,
                "small_keys": sizes.small,
                "forks": sizes.forks,
                "changes_reps": sizes.changes_reps,
                "changes_tail": sizes.changes_tail,
                "file_copies": sizes.copies,
                "sync_big_keys": sizes.sync_big,
                "sync_small_keys": sizes.sync_small,
                "push_changes": sizes.push_changes,
                "push_reps": sizes.push_reps,
                "rsync_reps": sizes.rsync_reps,
                "pull_rss_keys": sizes.rss_keys,
                "pull_rss_value_bytes": sizes.rss_value,
                "s3_keys": sizes.s3_keys,
                "s3_value_bytes": sizes.s3_value,
                "s3_reps": sizes.s3_reps,
                "fsync_reps": sizes.fsync_reps,
                "sync_rss_delta_bytes": sizes.rss_delta,
                "sync_rss_value_bytes": rss_values,
            },
            "value_bytes": bytes.len(),
            "temp_root": root.display().to_string(),
            "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
            "total_secs": total,
            "loadavg_start": load_start,
            "loadavg_end": load_end,
            "peak_rss_kib": rss,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "strata-bench{} — temp folders under {} — release build: {}",
            if cli.quick { " --quick" } else { "" },
            root.display(),
            !cfg!(debug_assertions)
        );
        println!(
            "sizes: kv_put_batch {} puts x {} runs; kv_put_single {} commits per variant; kv_get {} gets; \
             big branch {} keys ({} txns), small {} keys; {} forks each; changes_since last {} x {} reps",
            sizes.batch_n,
            sizes.batch_runs,
            sizes.single_n,
            sizes.gets,
            sizes.big,
            sizes.big_txs,
            sizes.small,
            sizes.forks,
            sizes.changes_tail,
            sizes.changes_reps
        );
        println!(
            "sync: push {} changed keys x {} on {} and {} keys; rsync vs push {} rounds; \
             pull_rss delta {} keys x {} bytes",
            sizes.push_changes,
            sizes.push_reps,
            sizes.sync_big,
            sizes.sync_small,
            sizes.rsync_reps,
            sizes.rss_keys,
            sizes.rss_value
        );
        println!(
            "buckets (S3 emulator): {} keys x {} pseudo-random bytes; {} rounds of push and clone",
            sizes.s3_keys, sizes.s3_value, sizes.s3_reps
        );
        println!(
            "sync cost: fsyncs {} traced rounds; push_pull {} rounds of {} changes on {} keys; \
             sync_rss {} MB deltas of {:?}-byte values",
            sizes.fsync_reps,
            sizes.rsync_reps,
            sizes.push_changes,
            sizes.sync_big,
            sizes.rss_delta / 1_000_000,
            rss_values
        );
        println!();
        print_table(&rows);
        println!();
        println!("total time: {}", show_secs(total));
        println!(
            "load average (1/5/15 min) at start: {load_start}; at end: {load_end} (on {} CPUs)",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        match rss {
            Some(k) => println!("peak RSS (VmHWM): {:.1} MiB", k as f64 / 1024.0),
            None => println!("peak RSS (VmHWM): unavailable"),
        }
    }
    Ok(())
}
