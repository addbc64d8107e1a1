//! The sync benchmarks (7–10): push, clone, rsync against push, and the peak RSS of a pull.
//!
//! 7. `push` — two databases, one of `sync_big` keys (1M, loaded in 10 transactions) and one of
//!    `sync_small` keys (1k), each pushed once to its own folder remote. Then, `push_reps` times: 100
//!    keys change in each (one transaction, untimed; different keys every round) and `db.push` is
//!    timed, alternating which database goes first. Ratio big/small of the medians. Target ≤ 1.5: a
//!    push must cost what changed, not what the branch holds.
//! 8. `clone` — `strata_sync::clone` of the 1M-key remote of benchmark 7 (every version it
//!    holds) into a new folder. Baseline: `std::fs::copy` of every file of that remote folder
//!    plus a raw rusqlite bulk load of the same 1M keys and value bytes into
//!    `CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB)` in one transaction (same pragmas as the
//!    engine). Ratio clone/baseline; target ≤ 1.5 (issue 9).
//! 9. `rsync` — the 1M-key database of benchmark 7 and a copy of its folder that is never pushed. Each
//!    round the same 100 keys change in both (one transaction); the copy's folder (`strata.db`, `-wal`,
//!    `-shm`) is then rsynced (`rsync -a --inplace --no-whole-file`, a delta transfer, onto the
//!    previous round's copy) and the original pushes. Reported twice against the same push times:
//!    with the changes still in the WAL (as committed), and again after a `wal_checkpoint(TRUNCATE)`
//!    has moved them into `strata.db`. Ratio rsync/push (higher is better); target ≥ 20 on the
//!    checkpointed row (the WAL row is information: see `push_pull`). If `rsync` is not installed
//!    the rows say so.
//! 10. `pull_rss` — a producer database pushes one delta of `rss_keys` keys with `rss_value` bytes of
//!     pseudo-random (incompressible) bytes each (about 500 MB); a separate child process (this binary,
//!     hidden subcommand `__pull-child DIR`) opens a database cloned before that delta and pulls it,
//!     then prints its own peak RSS (VmHWM). Baseline: the delta blob's size. Target: RSS ≤ 100 MB.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use rusqlite::Connection;
use strata_engine::{Durability, Strata, Value, DB_FILE};
use strata_sync::{PushOptions, PushReport, SyncExt};
use tempfile::TempDir;

use crate::{
    key, median, open_raw, open_strata, peak_rss_kib, progress, sample_value_turn, secs, show_secs,
    si, Ctx, Measure, Rng, Row, Target,
};

/// The hidden subcommand that runs the child of benchmark 10.
pub(crate) const PULL_CHILD: &str = "__pull-child";

/// The databases and remotes of benchmarks 7–9.
pub(crate) struct SyncFix {
    pub(crate) dir: TempDir,
    pub(crate) big: Strata,
    small: Strata,
    pub(crate) big_remote: PathBuf,
    /// Change rounds made so far; round `r` changes keys no earlier round changed.
    pub(crate) round: usize,
}

pub(crate) fn url(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not valid UTF-8", p.display()))
}

/// The `i`-th changed key of a branch of keys `0..n`: a stride through the keys, so that one round's
/// keys are spread over the whole branch and no two rounds share a key (while rounds × count ≤ n; the
/// stride is prime, so it is coprime to every size used here).
fn spread(n: usize, i: usize) -> usize {
    ((i as u128 * 7919) % n as u128) as usize
}

/// Changes `count` keys of the `n`-key main branch in one transaction (round `round`'s keys and value).
pub(crate) fn change_keys(db: &Strata, n: usize, round: usize, count: usize) -> Result<()> {
    // A different `turn` than the loaded 42, of the same encoded size.
    let v = sample_value_turn(100 + (round % 27) as i64);
    let mut tx = db.begin("main")?;
    for j in 0..count {
        tx.kv_put_ref(&key(spread(n, round * count + j)), &v)?;
    }
    tx.commit()?;
    Ok(())
}

/// Copies every file under `src` to the same place under `dst` with `std::fs::copy`; returns the
/// number of files and bytes.
fn copy_tree(src: &Path, dst: &Path) -> Result<(usize, u64)> {
    std::fs::create_dir_all(dst)?;
    let (mut files, mut bytes) = (0, 0);
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        let ty = e.file_type()?;
        if ty.is_dir() {
            let (f, b) = copy_tree(&e.path(), &to)?;
            files += f;
            bytes += b;
        } else if ty.is_file() {
            bytes += std::fs::copy(e.path(), &to)?;
            files += 1;
        }
    }
    Ok((files, bytes))
}

/// Total size of the files under `dir`.
pub(crate) fn tree_bytes(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        n += if m.is_dir() {
            tree_bytes(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(n)
}

/// Moves the WAL of the database in `dir` into its main file and truncates the WAL.
pub(crate) fn checkpoint(dir: &Path) -> Result<()> {
    let c = Connection::open(dir.join(DB_FILE))?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    let busy: i64 = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    ensure!(
        busy == 0,
        "wal_checkpoint(TRUNCATE) of {} was blocked",
        dir.display()
    );
    Ok(())
}

/// Size and modification time of a file, to tell whether a commit touched it.
pub(crate) fn file_stamp(p: &Path) -> Result<(u64, std::time::SystemTime)> {
    let m = std::fs::metadata(p)?;
    Ok((m.len(), m.modified()?))
}

pub(crate) fn rsync_installed() -> bool {
    Command::new("rsync")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The rows of a benchmark measured against rsync: two rows (the change still in the WAL, then
/// checkpointed into the database file), the ≥ 20× target on the checkpointed one.
pub(crate) struct RsyncRows {
    pub bench: &'static str,
    pub size: String,
    pub baseline_label: &'static str,
    pub ratio_of: &'static str,
}

impl RsyncRows {
    pub(crate) fn row(
        &self,
        label: &str,
        strata: std::result::Result<Measure, String>,
        baseline: Measure,
        note: String,
    ) -> Row {
        Row {
            bench: self.bench,
            label: label.to_string(),
            size: self.size.clone(),
            strata,
            baseline_label: self.baseline_label.into(),
            baseline,
            ratio_of: self.ratio_of,
            inverse: true,
            target: label.ends_with("ckpt").then_some(Target::AtLeast(20.0)),
            note,
        }
    }

    /// When rsync is not installed: one row per label saying so (and `true`).
    pub(crate) fn missing(&self, labels: &[String], rows: &mut Vec<Row>) -> bool {
        if rsync_installed() {
            return false;
        }
        progress(format!("{}: rsync not installed, skipped", self.bench));
        for l in labels {
            rows.push(self.row(
                l,
                Err("rsync not installed (apt-get install rsync)".into()),
                Measure::Missing,
                String::new(),
            ));
        }
        true
    }
}

/// What one rsync run moved.
pub(crate) struct RsyncRun {
    pub(crate) secs: f64,
    pub(crate) literal: u64,
    pub(crate) matched: u64,
    /// Total size of the files rsync transferred (whole files, whatever part of them was sent).
    pub(crate) transferred: u64,
}

/// `rsync -a --inplace --no-whole-file --stats src/ dst/`, timed (wall clock, process included).
fn rsync(src: &Path, dst: &Path) -> Result<RsyncRun> {
    rsync_with(&["-a", "--inplace", "--no-whole-file"], src, dst)
}

/// `rsync ARGS --stats src/ dst/`, timed (wall clock, process included).
pub(crate) fn rsync_with(args: &[&str], src: &Path, dst: &Path) -> Result<RsyncRun> {
    let mut s = src.as_os_str().to_owned();
    s.push("/");
    let mut d = dst.as_os_str().to_owned();
    d.push("/");
    let t = Instant::now();
    let out = Command::new("rsync")
        .args(args)
        .arg("--stats")
        .arg(&s)
        .arg(&d)
        .output()
        .context("running rsync")?;
    let secs = secs(t.elapsed());
    if !out.status.success() {
        bail!(
            "rsync failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let stat = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|rest| {
                rest.split_whitespace()
                    .next()
                    .map(|n| n.replace([',', '.'], ""))
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Ok(RsyncRun {
        secs,
        literal: stat("Literal data:"),
        matched: stat("Matched data:"),
        transferred: stat("Total transferred file size:"),
    })
}

/// The pseudo-random value of key `i` of benchmarks 10–13: `len` bytes that zstd cannot shrink.
pub(crate) fn noise_value(i: usize, len: usize) -> Value {
    let mut rng = Rng(0x9d5c_0de0 ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut b = Vec::with_capacity(len + 8);
    while b.len() < len {
        b.extend_from_slice(&rng.next().to_le_bytes());
    }
    b.truncate(len);
    Value::Bytes(b)
}

pub(crate) fn check_push(r: &PushReport, entries: usize, what: &str) -> Result<()> {
    ensure!(
        !r.up_to_date && r.entries == entries as u64,
        "push of {what} uploaded {} entries (up to date: {}), expected {entries}",
        r.entries,
        r.up_to_date
    );
    Ok(())
}

/// The child of benchmark 10: `__pull-child DIR` opens the database in DIR, pulls `main` from
/// `origin` and prints one JSON line with its peak RSS.
pub(crate) fn pull_child(args: &[OsString]) -> Result<()> {
    let [dir] = args else {
        bail!("usage: strata-bench {PULL_CHILD} DIR");
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let db = Strata::open(dir)?;
    let open_kib = peak_rss_kib();
    let t = Instant::now();
    let r = rt.block_on(db.pull("origin", "main"))?;
    let took = secs(t.elapsed());
    let peak_kib = peak_rss_kib();
    // SQLite's own high-water mark of allocated memory (page caches of every connection included),
    // to attribute the peak RSS.
    // SAFETY: a plain read of SQLite's global memory statistics; no pointers involved.
    let sqlite_peak = unsafe { rusqlite::ffi::sqlite3_memory_highwater(0) };
    drop(db);
    println!(
        "{}",
        serde_json::json!({
            "peak_rss_kib": peak_kib,
            "open_peak_rss_kib": open_kib,
            "sqlite_peak_bytes": sqlite_peak,
            "secs": took,
            "entries": r.fetch.entries,
            "bytes": r.fetch.bytes,
            "applied": r.applied,
            "created": r.created,
            "db_bytes": tree_bytes(Path::new(dir)).ok(),
        })
    );
    Ok(())
}

impl Ctx {
    pub(crate) fn ensure_sync(&mut self) -> Result<()> {
        if self.sync.is_some() {
            return Ok(());
        }
        let s = self.sizes;
        let dir = self.tempdir("strata-bench-sync-")?;
        progress(format!(
            "sync: loading the {}-key and {}-key databases and pushing each once",
            s.sync_big, s.sync_small
        ));
        let (big, bt) = self.load_keys(&dir.path().join("big"), s.sync_big, s.big_txs)?;
        let (small, _) = self.load_keys(&dir.path().join("small"), s.sync_small, 1)?;
        progress(format!(
            "  loaded {} keys in {}",
            s.sync_big,
            show_secs(secs(bt))
        ));
        let big_remote = dir.path().join("remote-big");
        let small_remote = dir.path().join("remote-small");
        big.remote_add("hub", url(&big_remote)?)?;
        small.remote_add("hub", url(&small_remote)?)?;
        let t = Instant::now();
        let r = self.rt.block_on(big.push("hub", "main"))?;
        check_push(&r, s.sync_big, "the big branch")?;
        progress(format!(
            "  first push of {} keys: {} ({:.1} MB snapshot)",
            s.sync_big,
            show_secs(secs(t.elapsed())),
            r.bytes as f64 / 1e6
        ));
        let r = self.rt.block_on(small.push("hub", "main"))?;
        check_push(&r, s.sync_small, "the small branch")?;
        self.sync = Some(SyncFix {
            dir,
            big,
            small,
            big_remote,
            round: 0,
        });
        Ok(())
    }

    // ----- 7. push -----

    pub(crate) fn bench_push(&mut self) -> Result<()> {
        self.ensure_sync()?;
        let s = self.sizes;
        let fix = self.sync.as_mut().expect("sync fixture");
        let n = s.push_changes;
        progress(format!(
            "push: {} rounds of {n} changed keys on each database",
            s.push_reps
        ));
        let (mut big, mut small) = (Vec::new(), Vec::new());
        let (mut commit_big, mut commit_small) = (Vec::new(), Vec::new());
        let rt = &self.rt;
        let push = |db: &Strata, what: &str| -> Result<f64> {
            let t = Instant::now();
            let r = rt.block_on(db.push("hub", "main"))?;
            let d = secs(t.elapsed());
            check_push(&r, n, what)?;
            Ok(d)
        };
        for rep in 0..s.push_reps {
            let round = fix.round;
            fix.round += 1;
            let t = Instant::now();
            change_keys(&fix.big, s.sync_big, round, n)?;
            commit_big.push(secs(t.elapsed()));
            let t = Instant::now();
            change_keys(&fix.small, s.sync_small, round, n)?;
            commit_small.push(secs(t.elapsed()));
            if rep % 2 == 0 {
                small.push(push(&fix.small, "small")?);
                big.push(push(&fix.big, "big")?);
            } else {
                big.push(push(&fix.big, "big")?);
                small.push(push(&fix.small, "small")?);
            }
        }
        // The mean, not the median: packing happens on some pushes only (every 8th at least), and
        // what a user waits for on average must include it.
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let (mb, ms) = (mean(&big), mean(&small));
        progress(format!("  big {}, small {}", show_secs(mb), show_secs(ms)));
        self.rows.push(Row {
            bench: "push",
            label: format!("push {n} changed keys, {}-key", si(s.sync_big as f64)),
            size: format!(
                "mean of {} consecutive pushes each (packing included)",
                s.push_reps
            ),
            strata: Ok(Measure::Time { secs: mb }),
            baseline_label: format!("same on {}-key branch", si(s.sync_small as f64)),
            baseline: Measure::Time { secs: ms },
            ratio_of: "big/small",
            inverse: false,
            target: Some(Target::AtMost(1.5)),
            note: format!(
                "folder remote, one delta blob per push plus packing, Durability::Full; \
                 committing the {n} changes (untimed) took {} big, {} small",
                show_secs(median(&mut commit_big)),
                show_secs(median(&mut commit_small))
            ),
        });
        Ok(())
    }

    // ----- 11. history_clone -----

    /// A branch of `history_commits` single-put commits: its first push and a clone of it (every
    /// version travels), against copying the source database folder. Also reports blob bytes per
    /// version.
    pub(crate) fn bench_history_clone(&mut self) -> Result<()> {
        let n = self.sizes.history_commits;
        progress(format!("history_clone: {n} single-put commits"));
        let dir = tempfile::tempdir()?;
        let src = open_strata(&dir.path().join("src"), Durability::Normal)?;
        for i in 0..n {
            src.main().kv_put(&format!("k{}", i % 1000), i as i64)?;
        }
        drop(src);
        let src = open_strata(&dir.path().join("src"), Durability::Full)?;
        let remote = dir.path().join("remote");
        src.remote_add("hub", url(&remote)?)?;
        let t = Instant::now();
        let r = self.rt.block_on(src.push("hub", "main"))?;
        let push_t = secs(t.elapsed());
        ensure!(
            r.versions == n as u64 && r.remote_version == n as u64,
            "the first push uploaded {} versions, expected {n}",
            r.versions
        );
        let blob_bytes = tree_bytes(&remote.join("blobs"))?;
        let t = Instant::now();
        let (clone, _) = self
            .rt
            .block_on(strata_sync::clone(url(&remote)?, dir.path().join("clone")))?;
        let clone_t = secs(t.elapsed());
        let versions = clone.log("main", usize::MAX)?.len();
        ensure!(
            versions == n,
            "the clone holds {versions} versions, expected {n}"
        );
        drop(clone);
        drop(src);
        let t = Instant::now();
        copy_tree(&dir.path().join("src"), &dir.path().join("copy"))?;
        let copy_t = secs(t.elapsed());
        progress(format!(
            "  push {}, clone {}, folder copy {}, {} blob bytes/version",
            show_secs(push_t),
            show_secs(clone_t),
            show_secs(copy_t),
            blob_bytes / n.max(1) as u64
        ));
        self.rows.push(Row {
            bench: "history_clone",
            label: format!("clone {}-commit branch", si(n as f64)),
            size: format!("{n} single-put commits, every version cloned"),
            strata: Ok(Measure::Time { secs: clone_t }),
            baseline_label: "copy of the source database folder".into(),
            baseline: Measure::Time { secs: copy_t },
            ratio_of: "clone/copy",
            inverse: false,
            target: None,
            note: format!(
                "blob bytes per version {:.1} ({} in all); the first push of those {n} versions took {}",
                blob_bytes as f64 / n.max(1) as f64,
                blob_bytes,
                show_secs(push_t)
            ),
        });
        Ok(())
    }

    // ----- 8. clone -----

    pub(crate) fn bench_clone(&mut self) -> Result<()> {
        self.ensure_sync()?;
        let s = self.sizes;
        let fix = self.sync.as_ref().expect("sync fixture");
        let work = self.tempdir("strata-bench-clone-")?;
        let remote_mb = tree_bytes(&fix.big_remote)? as f64 / 1e6;
        progress(format!(
            "clone: the {}-key remote ({remote_mb:.2} MB) against file copies + a raw bulk load",
            s.sync_big
        ));

        let t = Instant::now();
        let (files, _) = copy_tree(&fix.big_remote, &work.path().join("copy"))?;
        let copy_t = secs(t.elapsed());
        let t = Instant::now();
        {
            let mut raw = open_raw(&work.path().join("raw.db"), Durability::Full)?;
            let tx = raw.transaction()?;
            {
                let mut st = tx.prepare("INSERT INTO kv (key, value) VALUES (?1, ?2)")?;
                for i in 0..s.sync_big {
                    st.execute(rusqlite::params![key(i), self.bytes])?;
                }
            }
            tx.commit()?;
        }
        let load_t = secs(t.elapsed());
        let base = copy_t + load_t;
        progress(format!(
            "  baseline {} (copy {files} files {}, raw load {})",
            show_secs(base),
            show_secs(copy_t),
            show_secs(load_t)
        ));

        let dst = work.path().join("clone");
        let t = Instant::now();
        let (db, report) = self
            .rt
            .block_on(strata_sync::clone(url(&fix.big_remote)?, &dst))?;
        let clone_t = secs(t.elapsed());
        let entries: u64 = report.branches.iter().map(|b| b.entries).sum();
        ensure!(
            entries >= s.sync_big as u64 && db.main().kv_get(&key(s.sync_big - 1))?.is_some(),
            "the clone holds {entries} entries, expected at least {}",
            s.sync_big
        );
        drop(db);
        progress(format!("  clone {}", show_secs(clone_t)));
        let blobs: usize = report.branches.iter().map(|b| b.versions as usize).sum();
        self.rows.push(Row {
            bench: "clone",
            label: format!("clone {}-key branch", si(s.sync_big as f64)),
            size: format!("remote folder {remote_mb:.2} MB"),
            strata: Ok(Measure::Time { secs: clone_t }),
            baseline_label: "fs::copy files + raw bulk load".into(),
            baseline: Measure::Time { secs: base },
            ratio_of: "strata/baseline",
            inverse: false,
            target: Some(Target::AtMost(1.5)),
            note: format!(
                "baseline: copy of {files} files {} + raw INSERT of {} rows in 1 txn {}; \
                 clone applied {entries} entries in {blobs} versions",
                show_secs(copy_t),
                s.sync_big,
                show_secs(load_t)
            ),
        });
        Ok(())
    }

    // ----- 9. rsync against push -----

    pub(crate) fn bench_rsync(&mut self) -> Result<()> {
        let s = self.sizes;
        let n = s.push_changes;
        let labels = [
            format!("rsync vs push, {n} changes in WAL"),
            format!("rsync vs push, {n} changes ckpt"),
        ];
        let size = format!(
            "{}-key db, median of {}",
            si(s.sync_big as f64),
            s.rsync_reps
        );
        // As for push_pull: the target is on the checkpointed row, the WAL row is information.
        let rows = RsyncRows {
            bench: "rsync",
            size,
            baseline_label: "rsync --no-whole-file of folder",
            ratio_of: "rsync/push",
        };
        let row = |label: &str, strata, baseline, note| rows.row(label, strata, baseline, note);
        if rows.missing(&labels, &mut self.rows) {
            return Ok(());
        }
        self.ensure_sync()?;
        let fix = self.sync.as_mut().expect("sync fixture");
        let work = tempfile::Builder::new()
            .prefix("strata-bench-rsync-")
            .tempdir_in(fix.dir.path())?;
        // A copy of the big database that rsync alone syncs (the original pushes).
        let src = work.path().join("db");
        std::fs::create_dir_all(&src)?;
        checkpoint(fix.big.path())?;
        for e in std::fs::read_dir(fix.big.path())? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if e.file_type()?.is_file() && !name.ends_with("-wal") && !name.ends_with("-shm") {
                std::fs::copy(e.path(), src.join(&*name))?;
            }
        }
        let copy = open_strata(&src, Durability::Full)?;
        let dst = work.path().join("dest");
        std::fs::create_dir_all(&dst)?;
        rsync(&src, &dst)?;
        let db_mb = tree_bytes(&src)? as f64 / 1e6;
        progress(format!(
            "rsync: {} rounds of {n} changes; a {db_mb:.1} MB database folder against push",
            s.rsync_reps
        ));
        let (mut pushes, mut wal, mut ckpt) = (Vec::new(), Vec::new(), Vec::new());
        let (mut wal_lit, mut ckpt_lit, mut ckpt_match) = (Vec::new(), Vec::new(), Vec::new());
        let mut db_file_changed = 0;
        for _ in 0..s.rsync_reps {
            let round = fix.round;
            fix.round += 1;
            let before = file_stamp(&src.join(DB_FILE))?;
            change_keys(&copy, s.sync_big, round, n)?;
            db_file_changed += usize::from(file_stamp(&src.join(DB_FILE))? != before);
            change_keys(&fix.big, s.sync_big, round, n)?;
            let w = rsync(&src, &dst)?;
            let t = Instant::now();
            let r = self.rt.block_on(fix.big.push("hub", "main"))?;
            pushes.push(secs(t.elapsed()));
            check_push(&r, n, "the big branch")?;
            checkpoint(&src)?;
            let c = rsync(&src, &dst)?;
            progress(format!(
                "  push {}, rsync WAL {} ({:.2} MB literal), rsync after checkpoint {} ({:.2} MB literal)",
                show_secs(*pushes.last().expect("pushed")),
                show_secs(w.secs),
                w.literal as f64 / 1e6,
                show_secs(c.secs),
                c.literal as f64 / 1e6
            ));
            wal.push(w.secs);
            wal_lit.push(w.literal as f64);
            ckpt.push(c.secs);
            ckpt_lit.push(c.literal as f64);
            ckpt_match.push(c.matched as f64);
        }
        drop(copy);
        let push_t = median(&mut pushes);
        let (wal_t, ckpt_t) = (median(&mut wal), median(&mut ckpt));
        let (wal_lit, ckpt_lit) = (median(&mut wal_lit) / 1e6, median(&mut ckpt_lit) / 1e6);
        let ckpt_match = median(&mut ckpt_match) / 1e6;
        let push_m = Measure::Time { secs: push_t };
        self.rows.push(row(
            &labels[0],
            Ok(push_m),
            Measure::Time { secs: wal_t },
            format!(
                "strata = push; rsync of the {db_mb:.0} MB folder sent {wal_lit:.2} MB literal; \
                 strata.db itself changed in {db_file_changed} of {} rounds (else only -wal)",
                s.rsync_reps
            ),
        ));
        self.rows.push(row(
            &labels[1],
            Ok(push_m),
            Measure::Time { secs: ckpt_t },
            format!(
                "same rounds, rsync again after wal_checkpoint(TRUNCATE): {ckpt_lit:.2} MB literal, \
                 {ckpt_match:.1} MB matched"
            ),
        ));
        Ok(())
    }

    // ----- 10. peak RSS of a pull -----

    pub(crate) fn bench_pull_rss(&mut self) -> Result<()> {
        let s = self.sizes;
        let work = self.tempdir("strata-bench-rss-")?;
        let (prod_dir, remote, child_dir) = (
            work.path().join("producer"),
            work.path().join("remote"),
            work.path().join("child"),
        );
        let prod = open_strata(&prod_dir, Durability::Full)?;
        prod.main().kv_put("seed", sample_value_turn(1))?;
        prod.remote_add("hub", url(&remote)?)?;
        self.rt.block_on(prod.push("hub", "main"))?;
        // The child's database: a clone taken before the big delta exists.
        drop(
            self.rt
                .block_on(strata_sync::clone(url(&remote)?, &child_dir))?,
        );

        let raw_mb = (s.rss_keys * s.rss_value) as f64 / 1e6;
        progress(format!(
            "pull_rss: writing {} keys x {} pseudo-random bytes ({raw_mb:.0} MB)",
            s.rss_keys, s.rss_value
        ));
        let t = Instant::now();
        let txs = 10;
        let per = s.rss_keys.div_ceil(txs).max(1);
        let mut i = 0;
        while i < s.rss_keys {
            let mut tx = prod.begin("main")?;
            for j in i..(i + per).min(s.rss_keys) {
                tx.kv_put(&key(j), noise_value(j, s.rss_value))?;
            }
            tx.commit()?;
            i += per;
        }
        let load_t = secs(t.elapsed());
        let opts = PushOptions::default();
        let t = Instant::now();
        let r = self.rt.block_on(prod.push_with("hub", "main", &opts))?;
        let push_t = secs(t.elapsed());
        check_push(&r, s.rss_keys, "the delta")?;
        let delta_mb = r.bytes as f64 / 1e6;
        drop(prod);
        progress(format!(
            "  loaded in {}, pushed a {delta_mb:.1} MB delta in {}; pulling it in a child process",
            show_secs(load_t),
            show_secs(push_t)
        ));

        let exe = std::env::current_exe().context("locating this executable")?;
        let t = Instant::now();
        let out = Command::new(&exe)
            .arg(PULL_CHILD)
            .arg(&child_dir)
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("running {} {PULL_CHILD}", exe.display()))?;
        let child_t = secs(t.elapsed());
        if !out.status.success() {
            bail!("the pull child failed ({})", out.status);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let rep: serde_json::Value = text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .with_context(|| format!("no report from the pull child in {text:?}"))?;
        let kib = |k: &str| rep[k].as_u64();
        let peak = kib("peak_rss_kib").context("the child could not read its VmHWM")?;
        let open = kib("open_peak_rss_kib").unwrap_or(0);
        let entries = rep["entries"].as_u64().unwrap_or(0);
        ensure!(
            entries == s.rss_keys as u64,
            "the child pulled {entries} entries, expected {}",
            s.rss_keys
        );
        let mb = |k: u64| k as f64 * 1024.0 / 1e6;
        let pull_t = rep["secs"].as_f64().unwrap_or(child_t);
        let sqlite_mb = rep["sqlite_peak_bytes"].as_f64().unwrap_or(0.0) / 1e6;
        let db_mb = rep["db_bytes"].as_f64().unwrap_or(0.0) / 1e6;
        let applied = rep["applied"].as_u64().unwrap_or(0);
        progress(format!(
            "  child peak RSS {:.1} MB (after open {:.1} MB; SQLite's own peak {sqlite_mb:.1} MB); \
             pull {}, merged {applied} entries into main, database now {db_mb:.0} MB",
            mb(peak),
            mb(open),
            show_secs(pull_t)
        ));
        self.rows.push(Row {
            bench: "pull_rss",
            label: format!("pull {delta_mb:.0} MB delta, peak RSS"),
            size: format!("{} keys x {} B", si(s.rss_keys as f64), s.rss_value),
            strata: Ok(Measure::Mb { mb: mb(peak) }),
            baseline_label: "delta blob size".into(),
            baseline: Measure::Mb { mb: delta_mb },
            ratio_of: "rss/delta",
            inverse: false,
            target: Some(Target::MbAtMost(100.0)),
            note: format!(
                "separate process; VmHWM {:.1} MB after open, {:.1} MB after the pull ({}), of \
                 which SQLite's allocations peaked at {sqlite_mb:.1} MB (page cache: cache_size \
                 64 MiB per connection); pull merged {applied} entries, db {db_mb:.0} MB; \
                 producer push {}",
                mb(open),
                mb(peak),
                show_secs(pull_t),
                show_secs(push_t)
            ),
        });
        drop(work);
        Ok(())
    }
}
