//! What one sync step costs a user (benchmarks 14–16): fsyncs, time against `rsync -a`, peak memory.
//!
//! 14. `fsyncs` — the fsync-family system calls (`fsync`, `fdatasync`, `sync_file_range`, `msync`,
//!     `syncfs`, `sync`) of the real `strata` CLI, counted with `strace -f -y` (every thread, with
//!     the file each call made durable): `strata push` of one changed key to a folder remote in steady
//!     state (the remote and the sync state exist; one untraced push and pull went first), and
//!     `strata pull` of it into a second database (a clone of the remote). Median of `fsync_reps`
//!     rounds, each a new single-key commit (through the library, untraced) then the traced push and
//!     pull. Targets: ≤ 6 per push, ≤ 3 per pull. Baseline: the fsync calls of `rsync -a` of the
//!     pushing database's folder onto an earlier copy of it, under the same strace. The note breaks
//!     the calls down by file and gives, from one more untraced round, the wall time of each command
//!     (process start included) and of that `rsync -a`, plus the fsyncs of a command that only opens
//!     and closes the database (`strata branch list`). Needs `strace` allowed to trace: without it
//!     (missing, or refused `ptrace` in a container) the rows say why, unless
//!     `STRATA_BENCH_REQUIRE_STRACE=1`, which makes it an error.
//! 15. `push_pull` — the `sync_big`-key database of benchmark 7 (A, already pushed) and a clone of
//!     its remote (B). Each of `rsync_reps` rounds changes `push_changes` keys in A (one transaction,
//!     untimed), runs `rsync -a A/ copy/` onto a copy of A's folder made before the first round
//!     (timed), then times `push` of A plus `pull` into B through the library (in this process, as
//!     an embedding application does). Reported twice against the same push+pull times: with rsync
//!     run as committed (the changes in `strata.db-wal`), and again after a `wal_checkpoint(TRUNCATE)`
//!     of A has moved them into `strata.db`. Ratio rsync/(push+pull), target ≥ 20 on the
//!     checkpointed row (issue 8's measure: rsync of the database folder once the change is in the
//!     database file); the WAL row is for information, since there rsync copies only the `-wal` file
//!     and no durable push+pull (7-8 fsyncs) can be 20 times faster than that copy. A local
//!     `rsync -a` copies every changed file whole (rsync skips its delta algorithm between local
//!     folders), so its cost is the size of what changed on disk. Without `rsync` the rows say so.
//! 16. `sync_rss` — for each value size (1 KB, 10 KB, 40 KB, 1 MB by default; `--rss-values`), a
//!     delta of `rss_delta` bytes (500 MB; 20 MB with `--quick`) of pseudo-random values
//!     (incompressible) is written into database A (through the library, at most 10k keys or 64 MB per
//!     transaction) after A pushed one seed key and was cloned into B. Then three child processes of
//!     the `strata` CLI run one after the other: `strata push` (A; with the CLI's default options it
//!     also writes a compaction snapshot), `strata pull` (B) and `strata clone` (the remote, into a
//!     new folder). Each one's peak RSS comes from `wait4(2)`, so this process's memory never counts.
//!     Target: ≤ 100 MB each. Baseline: the peak RSS of `cp` of the delta blob (the same bytes) to
//!     another folder, measured the same way. The note gives the peak RSS of `strata branch list` on
//!     A (what the binary and an open database cost before any sync) and each command's wall time.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use strata_engine::Durability;
use strata_sync::{Hook, PullOptions, PushOptions, SyncExt};

use crate::child::{run_measured, strace_syncs, strace_usable, strata_exe, ChildRun, SyncCalls};
use crate::sync::{
    change_keys, check_push, checkpoint, file_stamp, noise_value, rsync_installed, rsync_with,
    tree_bytes, url, RsyncRows,
};
use crate::{
    key, median, open_strata, progress, sample_value_turn, secs, show_secs, si, Ctx, Measure, Row,
    Target,
};

/// Set to 1 to make a missing `strace` an error instead of a skipped row.
pub(crate) const REQUIRE_STRACE: &str = "STRATA_BENCH_REQUIRE_STRACE";

/// Transactions of the `sync_rss` data load hold at most this many keys and bytes.
const LOAD_TX_KEYS: usize = 10_000;
const LOAD_TX_BYTES: usize = 64_000_000;

/// `strata --db DB ARGS…` as arguments.
fn db_args(db: &Path, args: &[&str]) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec!["--db".into(), db.into()];
    v.extend(args.iter().map(OsString::from));
    v
}

/// `rsync -a src/ dst/` as arguments (the trailing slashes copy the folder's content).
fn rsync_a_args(src: &Path, dst: &Path) -> Vec<OsString> {
    let slash = |p: &Path| {
        let mut s = p.as_os_str().to_owned();
        s.push("/");
        s
    };
    vec!["-a".into(), slash(src), slash(dst)]
}

fn cli(exe: &Path, args: &[OsString], what: &str) -> Result<ChildRun> {
    run_measured(exe, args, what)
}

/// The median total of `runs`, and the breakdown of the run whose total is that median (the first
/// such), with the range when the totals differ.
fn summarize(runs: &[SyncCalls]) -> (f64, String) {
    let mut totals: Vec<f64> = runs.iter().map(|r| r.total as f64).collect();
    let med = median(&mut totals);
    let (lo, hi) = (totals[0], totals[totals.len() - 1]);
    let pick = runs
        .iter()
        .min_by(|a, b| {
            (a.total as f64 - med)
                .abs()
                .total_cmp(&(b.total as f64 - med).abs())
        })
        .expect("at least one run");
    let range = if lo == hi {
        format!("all {} rounds {lo:.0}", runs.len())
    } else {
        format!("{} rounds, {lo:.0} to {hi:.0}", runs.len())
    };
    (med, format!("{range}; one round: {}", pick.breakdown()))
}

/// Times the phases of a push or pull through the sync core's step hook: the time from each step
/// (or the start) to the next one (or the end), named by the step that ends it.
#[derive(Clone, Default)]
struct Phases(Arc<Mutex<Vec<(&'static str, Instant)>>>);

impl Phases {
    fn hook(&self) -> Hook {
        let marks = self.0.clone();
        Hook(Some(Arc::new(move |step| {
            marks
                .lock()
                .expect("phase marks")
                .push((step, Instant::now()))
        })))
    }
    /// Clears the marks and records the start.
    fn start(&self) {
        let mut m = self.0.lock().expect("phase marks");
        m.clear();
        m.push(("start", Instant::now()));
    }
    /// Adds this run's phases (seconds) to `into`, with the time after the last step as `end`.
    fn finish(&self, into: &mut BTreeMap<String, Vec<f64>>) {
        let mut m = self.0.lock().expect("phase marks");
        m.push(("end", Instant::now()));
        for w in m.windows(2) {
            let name = w[1].0.split_once(':').map_or(w[1].0, |(_, s)| s);
            into.entry(name.to_string())
                .or_default()
                .push(secs(w[1].1 - w[0].1));
        }
    }
}

/// "up to read-cursor 0.2 ms, …": the median of each phase, in the order the steps came.
fn show_phases(order: &[&str], phases: &mut BTreeMap<String, Vec<f64>>) -> String {
    let mut names: Vec<String> = order.iter().map(|s| s.to_string()).collect();
    names.extend(
        phases
            .keys()
            .filter(|k| !order.contains(&k.as_str()))
            .cloned(),
    );
    names
        .iter()
        .filter_map(|n| {
            let v = phases.get_mut(n)?;
            Some(format!("{n} {}", show_secs(median(v))))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The median time of writing 4 KiB to a file in `dir` and `fdatasync`ing it (what a WAL commit or a
/// remote publish waits for), over `n` tries.
fn fsync_latency(dir: &Path, n: usize) -> Result<f64> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = [7u8; 4096];
    let mut t = Vec::new();
    for _ in 0..n {
        let s = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        t.push(secs(s.elapsed()));
    }
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(median(&mut t))
}

fn value_label(v: usize) -> String {
    if v >= 1_000_000 && v.is_multiple_of(1_000_000) {
        format!("{} MB", v / 1_000_000)
    } else if v >= 1_000 && v.is_multiple_of(1_000) {
        format!("{} KB", v / 1_000)
    } else {
        format!("{v} B")
    }
}

impl Ctx {
    // ----- 14. fsyncs per sync step -----

    pub(crate) fn bench_fsyncs(&mut self) -> Result<()> {
        let s = self.sizes;
        let labels = ["fsyncs per push, 1 change", "fsyncs per pull, 1 change"];
        let targets = [6.0, 3.0];
        let size = format!("{}-key db, folder remote, CLI", si(s.sync_small as f64));
        let row = |i: usize, strata, baseline, note: String| Row {
            bench: "fsyncs",
            label: labels[i].to_string(),
            size: size.clone(),
            strata,
            baseline_label: "rsync -a of db folder".into(),
            baseline,
            ratio_of: "strata/baseline",
            inverse: false,
            target: Some(Target::CountAtMost(targets[i])),
            note,
        };
        if let Err(why) = strace_usable() {
            if std::env::var_os(REQUIRE_STRACE).is_some_and(|v| v == "1") {
                bail!("{why}, and {REQUIRE_STRACE}=1");
            }
            progress(format!(
                "fsyncs: skipped: {why} ({REQUIRE_STRACE}=1 makes this an error)"
            ));
            for i in 0..2 {
                self.rows
                    .push(row(i, Err(why.clone()), Measure::Missing, String::new()));
            }
            return Ok(());
        }
        let exe = strata_exe()?;
        let work = self.tempdir("strata-bench-fsync-")?;
        let root = work.path();
        let (a, b, remote, copy) = (
            root.join("a"),
            root.join("b"),
            root.join("remote"),
            root.join("rsync-copy"),
        );
        progress(format!(
            "fsyncs: a {}-key database pushed to a folder remote and cloned; {} traced rounds of \
             one change pushed and pulled by {}",
            s.sync_small,
            s.fsync_reps,
            exe.display()
        ));
        {
            let (db, _) = self.load_keys(&a, s.sync_small, 1)?;
            db.remote_add("hub", url(&remote)?)?;
            self.rt.block_on(db.push("hub", "main"))?;
            drop(self.rt.block_on(strata_sync::clone(url(&remote)?, &b))?);
        }
        // One single-key commit on A, through the library; closed again before the CLI runs, so the
        // CLI is the only process with the database open, as a user's would be.
        let mut turn = 0usize;
        let change = |turn: &mut usize| -> Result<()> {
            *turn += 1;
            let db = open_strata(&a, Durability::Full)?;
            db.main().kv_put(
                &key(*turn % s.sync_small),
                sample_value_turn(*turn as i64 % 100),
            )?;
            Ok(())
        };
        let push_args = db_args(&a, &["push", "hub"]);
        let pull_args = db_args(&b, &["pull"]);
        // Steady state: the first CLI push and pull (untraced) create whatever a first sync creates.
        change(&mut turn)?;
        cli(&exe, &push_args, "strata push")?;
        cli(&exe, &pull_args, "strata pull")?;
        let rsync = rsync_installed();
        if rsync {
            std::fs::create_dir_all(&copy)?;
            rsync_with(&["-a"], &a, &copy)?;
        }
        let rsync_exe = PathBuf::from("rsync");
        let (mut pushes, mut pulls, mut rsyncs) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..s.fsync_reps {
            change(&mut turn)?;
            if rsync {
                rsyncs.push(strace_syncs(
                    &rsync_exe,
                    &rsync_a_args(&a, &copy),
                    root,
                    "rsync -a",
                )?);
            }
            pushes.push(strace_syncs(&exe, &push_args, root, "strata push")?);
            pulls.push(strace_syncs(&exe, &pull_args, root, "strata pull")?);
        }
        let open_only = strace_syncs(&exe, &db_args(&a, &["branch", "list"]), root, "branch list")?;
        // The same steps while this process holds both databases open, as a long-lived application
        // (or a second process) would: the CLI then neither creates the WAL (whose header and folder
        // a first commit fsyncs) nor checkpoints it when it exits, so what remains is the sync step's
        // own commits and the remote's writes.
        let (mut held_push, mut held_pull) = (Vec::new(), Vec::new());
        {
            let hold_a = open_strata(&a, Durability::Full)?;
            let hold_b = open_strata(&b, Durability::Full)?;
            hold_b.main().kv_get(&key(0))?;
            // Round 0 is untraced: its first commit writes (and fsyncs) the header of the WAL that
            // the holders' opening created, as the first round after any WAL reset would.
            for i in 0..=s.fsync_reps {
                turn += 1;
                hold_a
                    .main()
                    .kv_put(&key(i % s.sync_small), sample_value_turn(turn as i64 % 100))?;
                if i == 0 {
                    cli(&exe, &push_args, "strata push")?;
                    cli(&exe, &pull_args, "strata pull")?;
                    continue;
                }
                held_push.push(strace_syncs(&exe, &push_args, root, "strata push")?);
                held_pull.push(strace_syncs(&exe, &pull_args, root, "strata pull")?);
            }
        }
        // One more round, untraced, for the wall times.
        change(&mut turn)?;
        let rsync_t = if rsync {
            Some(rsync_with(&["-a"], &a, &copy)?.secs)
        } else {
            None
        };
        let push_t = cli(&exe, &push_args, "strata push")?.secs;
        let pull = cli(&exe, &db_args(&b, &["--json", "pull"]), "strata pull")?;
        let fetched = pull.sync_result()?["fetch"]["entries"]
            .as_u64()
            .unwrap_or(0);
        ensure!(
            fetched == 1,
            "the last pull fetched {fetched} entries, expected the one changed key"
        );
        let (push_n, push_note) = summarize(&pushes);
        let (pull_n, pull_note) = summarize(&pulls);
        let (held_push_n, held_push_note) = summarize(&held_push);
        let (held_pull_n, held_pull_note) = summarize(&held_pull);
        let (baseline, rsync_note) = if rsync {
            let (n, note) = summarize(&rsyncs);
            (
                Measure::Count { n, unit: "fsyncs" },
                format!(
                    "rsync -a of A's folder: {note}; {}",
                    show_secs(rsync_t.unwrap_or(f64::NAN))
                ),
            )
        } else {
            (
                Measure::Missing,
                "rsync not installed (apt-get install rsync)".into(),
            )
        };
        progress(format!(
            "  push {push_n:.0} fsyncs ({push_note}); pull {pull_n:.0} ({pull_note}); \
             open+close alone {}; {rsync_note}",
            open_only.total
        ));
        progress(format!(
            "  with both databases held open by this process: push {held_push_n:.0} \
             ({held_push_note}); pull {held_pull_n:.0} ({held_pull_note})"
        ));
        let common = format!(
            "opening and closing the database alone (`strata branch list`): {} ({}); {rsync_note}",
            open_only.total,
            open_only.breakdown()
        );
        self.rows.push(row(
            0,
            Ok(Measure::Count {
                n: push_n,
                unit: "fsyncs",
            }),
            baseline,
            format!(
                "strata push (a = pushing db): {push_note}; untraced push {}; with the database \
                 held open by another handle (no WAL created, no checkpoint at exit): \
                 {held_push_n:.0} ({held_push_note}); {common}",
                show_secs(push_t)
            ),
        ));
        self.rows.push(row(
            1,
            Ok(Measure::Count {
                n: pull_n,
                unit: "fsyncs",
            }),
            baseline,
            format!(
                "strata pull (b = pulling db): {pull_note}; untraced pull {}; held open by \
                 another handle: {held_pull_n:.0} ({held_pull_note})",
                show_secs(pull.secs)
            ),
        ));
        Ok(())
    }

    // ----- 15. push + pull against rsync -a -----

    pub(crate) fn bench_push_pull(&mut self) -> Result<()> {
        let s = self.sizes;
        let n = s.push_changes;
        let labels = [
            format!("push+pull {n} changes vs rsync -a, WAL"),
            format!("push+pull {n} changes vs rsync -a, ckpt"),
        ];
        let size = format!(
            "{}-key db, median of {}",
            si(s.sync_big as f64),
            s.rsync_reps
        );
        // The target applies to the checkpointed row: the database file itself changed, as it does
        // once SQLite checkpoints (at the latest every 1000 pages), which is what rsync of a
        // database folder copies. The WAL row is shown for information: there rsync copies only the
        // -wal file, and 20x would need a push+pull under 1/20 of that copy (under 2 ms here), below
        // the floor of its durable commits (a push and a pull make 7-8 fsyncs between them).
        let rows = RsyncRows {
            bench: "push_pull",
            size,
            baseline_label: "rsync -a of db folder",
            ratio_of: "rsync/(push+pull)",
        };
        let row = |label: &str, strata, baseline, note| rows.row(label, strata, baseline, note);
        if rows.missing(&labels, &mut self.rows) {
            return Ok(());
        }
        self.ensure_sync()?;
        let fix = self.sync.as_mut().expect("sync fixture");
        let work = tempfile::Builder::new()
            .prefix("strata-bench-pushpull-")
            .tempdir_in(fix.dir.path())?;
        let (b_dir, copy) = (work.path().join("b"), work.path().join("copy"));
        let t = Instant::now();
        let (b, _) = self
            .rt
            .block_on(strata_sync::clone(url(&fix.big_remote)?, &b_dir))?;
        progress(format!(
            "push_pull: cloned the {}-key remote into B in {}",
            s.sync_big,
            show_secs(secs(t.elapsed()))
        ));
        let a_dir = fix.big.path().to_path_buf();
        std::fs::create_dir_all(&copy)?;
        rsync_with(&["-a"], &a_dir, &copy)?;
        let folder_mb = tree_bytes(&a_dir)? as f64 / 1e6;
        progress(format!(
            "  {} rounds of {n} changes: push (A) + pull (B) against rsync -a of A's {folder_mb:.1} MB \
             folder",
            s.rsync_reps
        ));
        let phases = Phases::default();
        let push_opts = PushOptions {
            hook: phases.hook(),
            ..PushOptions::default()
        };
        let pull_opts = PullOptions {
            hook: phases.hook(),
            ..PullOptions::default()
        };
        let (mut push_ph, mut pull_ph) = (BTreeMap::new(), BTreeMap::new());
        let (mut push_t, mut pull_t, mut both) = (Vec::new(), Vec::new(), Vec::new());
        let (mut wal, mut ckpt, mut wal_mb, mut ckpt_mb) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut db_file_changed = 0;
        for _ in 0..s.rsync_reps {
            let round = fix.round;
            fix.round += 1;
            let before = file_stamp(&a_dir.join(strata_engine::DB_FILE))?;
            change_keys(&fix.big, s.sync_big, round, n)?;
            db_file_changed +=
                usize::from(file_stamp(&a_dir.join(strata_engine::DB_FILE))? != before);
            let w = rsync_with(&["-a"], &a_dir, &copy)?;
            phases.start();
            let t = Instant::now();
            let pushed = self
                .rt
                .block_on(fix.big.push_with("hub", "main", &push_opts))?;
            let p = secs(t.elapsed());
            phases.finish(&mut push_ph);
            check_push(&pushed, n, "the big branch")?;
            phases.start();
            let t = Instant::now();
            let pulled = self
                .rt
                .block_on(b.pull_with("origin", "main", &pull_opts))?;
            let q = secs(t.elapsed());
            phases.finish(&mut pull_ph);
            ensure!(
                pulled.fetch.entries == n as u64,
                "the pull fetched {} entries, expected {n}",
                pulled.fetch.entries
            );
            checkpoint(&a_dir)?;
            let c = rsync_with(&["-a"], &a_dir, &copy)?;
            progress(format!(
                "  push {} + pull {}; rsync -a {} ({:.2} MB of files), after checkpoint {} \
                 ({:.2} MB)",
                show_secs(p),
                show_secs(q),
                show_secs(w.secs),
                w.transferred as f64 / 1e6,
                show_secs(c.secs),
                c.transferred as f64 / 1e6
            ));
            push_t.push(p);
            pull_t.push(q);
            both.push(p + q);
            wal.push(w.secs);
            wal_mb.push(w.transferred as f64 / 1e6);
            ckpt.push(c.secs);
            ckpt_mb.push(c.transferred as f64 / 1e6);
        }
        drop(b);
        let fsync_t = fsync_latency(work.path(), 20)?;
        drop(work);
        let push_phases = show_phases(
            &[
                "before-read-cursor",
                "after-read-cursor",
                "after-build",
                "after-upload",
                "before-cas",
                "after-cas",
                "end",
            ],
            &mut push_ph,
        );
        let pull_phases = show_phases(
            &[
                "before-fetch",
                "after-fetch",
                "after-own-check",
                "before-merge",
                "end",
            ],
            &mut pull_ph,
        );
        progress(format!(
            "  push phases (median, each up to the step named): {push_phases}; pull phases: \
             {pull_phases}; one 4 KiB write + fdatasync here: {}",
            show_secs(fsync_t)
        ));
        let sync = Measure::Time {
            secs: median(&mut both),
        };
        let (p, q) = (median(&mut push_t), median(&mut pull_t));
        let how = format!(
            "strata = library push of A ({}) + pull into B, a clone ({}), in this process",
            show_secs(p),
            show_secs(q)
        );
        self.rows.push(row(
            &labels[0],
            Ok(sync),
            Measure::Time {
                secs: median(&mut wal),
            },
            format!(
                "{how}; rsync -a of A's {folder_mb:.0} MB folder copied {:.2} MB of whole files \
                 (median); the commit of the {n} changes rewrote strata.db in {db_file_changed} of \
                 {} rounds (else only -wal); push phases (median, each up to the step named): \
                 {push_phases}; pull phases: {pull_phases}; one 4 KiB write + fdatasync in this \
                 folder takes {} (a push makes 5 fsyncs in a long-lived process, a pull 2-3: see \
                 fsyncs)",
                median(&mut wal_mb),
                s.rsync_reps,
                show_secs(fsync_t)
            ),
        ));
        self.rows.push(row(
            &labels[1],
            Ok(sync),
            Measure::Time {
                secs: median(&mut ckpt),
            },
            format!(
                "same rounds, rsync -a again after wal_checkpoint(TRUNCATE) of A: {:.2} MB of whole \
                 files (median)",
                median(&mut ckpt_mb)
            ),
        ));
        Ok(())
    }

    // ----- 16. peak RSS of push, pull and clone in child processes -----

    pub(crate) fn bench_sync_rss(&mut self) -> Result<()> {
        let exe = strata_exe()?;
        for v in self.rss_values.clone() {
            self.sync_rss_one(&exe, v)
                .with_context(|| format!("values of {v} bytes"))?;
        }
        Ok(())
    }

    fn sync_rss_one(&mut self, exe: &Path, v: usize) -> Result<()> {
        let s = self.sizes;
        let keys = (s.rss_delta / v).max(1);
        let raw_mb = (keys * v) as f64 / 1e6;
        let work = self.tempdir("strata-bench-syncrss-")?;
        let w = work.path();
        let (a, b, b2, c, remote, cp_dst) = (
            w.join("a"),
            w.join("b"),
            w.join("b2"),
            w.join("c"),
            w.join("remote"),
            w.join("cp"),
        );
        let vl = value_label(v);
        progress(format!(
            "sync_rss: {keys} keys x {vl} ({raw_mb:.0} MB) pushed, pulled and cloned by the CLI"
        ));
        let load_t = {
            let db = open_strata(&a, Durability::Full)?;
            db.main().kv_put("seed", sample_value_turn(1))?;
            db.remote_add("hub", url(&remote)?)?;
            self.rt.block_on(db.push("hub", "main"))?;
            drop(self.rt.block_on(strata_sync::clone(url(&remote)?, &b))?);
            // A second clone, to split the pull into its fetch and its merge afterwards.
            drop(self.rt.block_on(strata_sync::clone(url(&remote)?, &b2))?);
            let per = (LOAD_TX_BYTES / v).clamp(1, LOAD_TX_KEYS);
            let t = Instant::now();
            let mut i = 0;
            while i < keys {
                let mut tx = db.begin("main")?;
                for j in i..(i + per).min(keys) {
                    tx.kv_put(&key(j), noise_value(j, v))?;
                }
                tx.commit()?;
                i += per;
            }
            secs(t.elapsed())
        };
        let idle = cli(exe, &db_args(&a, &["branch", "list"]), "strata branch list")?;
        let push = cli(exe, &db_args(&a, &["--json", "push", "hub"]), "strata push")?;
        let pj = push.sync_result()?;
        let entries = pj["entries"].as_u64().unwrap_or(0);
        ensure!(
            entries == keys as u64,
            "strata push uploaded {entries} entries, expected {keys}"
        );
        let pushed_mb = pj["bytes"].as_f64().unwrap_or(f64::NAN) / 1e6;
        let snapshot = pj["snapshot"].is_string();
        let blob = pj["blob"]
            .as_str()
            .context("strata push --json named no blob")?;
        let blob_file = remote.join(strata_remote::layout::BLOBS_DIR).join(blob);
        let delta_mb = std::fs::metadata(&blob_file)
            .with_context(|| format!("the delta blob {}", blob_file.display()))?
            .len() as f64
            / 1e6;
        // Each database goes as soon as its step is measured: disk, not memory, is what 500 MB rows
        // run short of.
        let a_mb = tree_bytes(&a)? as f64 / 1e6;
        std::fs::remove_dir_all(&a)?;
        let pull = cli(exe, &db_args(&b, &["--json", "pull"]), "strata pull")?;
        let fetched = pull.sync_result()?["fetch"]["entries"]
            .as_u64()
            .unwrap_or(0);
        ensure!(
            fetched == keys as u64,
            "strata pull fetched {fetched} entries, expected {keys}"
        );
        let b_mb = tree_bytes(&b)? as f64 / 1e6;
        std::fs::remove_dir_all(&b)?;
        // The same pull in two processes: `fetch` (download, verify, apply to the mirror), then a
        // `pull` that has nothing to fetch and only merges the mirror into the branch.
        let fetch = cli(exe, &db_args(&b2, &["fetch"]), "strata fetch")?;
        let merge = cli(exe, &db_args(&b2, &["pull"]), "strata pull (merge only)")?;
        std::fs::remove_dir_all(&b2)?;
        let mut clone_args: Vec<OsString> = vec!["--json".into(), "clone".into()];
        clone_args.push(remote.clone().into());
        clone_args.push(c.clone().into());
        let clone = cli(exe, &clone_args, "strata clone")?;
        let c_mb = tree_bytes(&c)? as f64 / 1e6;
        std::fs::remove_dir_all(&c)?;
        std::fs::create_dir_all(&cp_dst)?;
        let cp = run_measured(
            "cp",
            &[blob_file.clone().into(), cp_dst.clone().into()],
            "cp of the delta blob",
        )?;
        let sizes_note = format!(
            "remote {:.0} MB, A {a_mb:.0} MB, B {b_mb:.0} MB, clone {c_mb:.0} MB",
            tree_bytes(&remote)? as f64 / 1e6,
        );
        drop(work);
        progress(format!(
            "  peak RSS: push {:.1} MB ({}), pull {:.1} MB ({}; split: fetch {:.1} MB, merge {:.1} \
             MB), clone {:.1} MB ({}); cp {:.1} MB; strata branch list {:.1} MB; load {}; \
             {sizes_note}",
            push.rss_mb(),
            show_secs(push.secs),
            pull.rss_mb(),
            show_secs(pull.secs),
            fetch.rss_mb(),
            merge.rss_mb(),
            clone.rss_mb(),
            show_secs(clone.secs),
            cp.rss_mb(),
            idle.rss_mb(),
            show_secs(load_t)
        ));
        let size = format!("{} keys x {vl}", si(keys as f64));
        let baseline = Measure::Mb { mb: cp.rss_mb() };
        let ops = [
            (
                "push",
                &push,
                format!(
                    "strata push: {pushed_mb:.0} MB uploaded{}",
                    if snapshot {
                        " (the delta and a compaction snapshot of the branch)"
                    } else {
                        ""
                    }
                ),
            ),
            (
                "pull",
                &pull,
                format!(
                    "strata pull of the delta into a clone taken before it; the same split on \
                     another clone: `strata fetch` {:.1} MB ({}), then the merge-only `strata pull` \
                     {:.1} MB ({}); {sizes_note}",
                    fetch.rss_mb(),
                    show_secs(fetch.secs),
                    merge.rss_mb(),
                    show_secs(merge.secs)
                ),
            ),
            (
                "clone",
                &clone,
                "strata clone of the remote into a new folder".to_string(),
            ),
        ];
        for (op, run, what) in ops {
            self.rows.push(Row {
                bench: "sync_rss",
                label: format!("{op} {delta_mb:.0} MB delta, {vl} values, RSS"),
                size: size.clone(),
                strata: Ok(Measure::Mb { mb: run.rss_mb() }),
                baseline_label: "cp of the delta blob (RSS)".into(),
                baseline,
                ratio_of: "rss/cp rss",
                inverse: false,
                target: Some(Target::MbAtMost(100.0)),
                note: format!(
                    "{what}; child process, wait4 ru_maxrss (floor {:.1} MB: the intermediate \
                     process it starts from); took {}; `strata branch list` on A peaks at {:.1} MB",
                    run.floor_mb(),
                    show_secs(run.secs),
                    idle.rss_mb()
                ),
            });
        }
        Ok(())
    }
}
