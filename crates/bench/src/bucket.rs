//! The bucket benchmarks (11–13): push, clone and request counts against the S3 emulator (moto) that
//! `scripts/emulators.sh` starts on 127.0.0.1.
//!
//! The emulator comes from the environment: `STRATA_TEST_S3_ENDPOINT` and `STRATA_TEST_S3_BUCKET`
//! (plus the dummy `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` the script exports). When they are
//! unset the rows say "not available" and the run goes on. Every remote is a fresh, unique prefix of
//! that bucket (`strata_remote_s3::testing::emulator`), reached with the same options the bucket tests
//! use (`endpoint`, `allow_http`, `region=us-east-1`, `max_retries=2`, `timeout=60s`).
//!
//! The branch: `s3_keys` keys (100k; 5k with `--quick`), `key:{i:08}` → `s3_value` (100) bytes of
//! pseudo-random, incompressible bytes each (`Value::Bytes`), loaded in 10 transactions into a fresh
//! database; so its snapshot blob is about keys × (value + key) bytes, not shrunk by zstd.
//!
//! The baseline is `rclone copy` (when `rclone` is on PATH; otherwise the baseline cells say so and
//! only the Strata figures are measured), run as a separate process per copy against the same
//! emulator, configured only by `RCLONE_S3_*` variables (`provider=Other`, the endpoint, the dummy
//! keys, `region=us-east-1`, path-style, `no_check_bucket`; `AWS_CA_BUNDLE` removed, which rclone
//! cannot use) and an empty config file, with rclone's defaults otherwise (4 transfers; one PUT for
//! files below its 200 MiB multipart cutoff).
//!
//! 11. `s3_push` — the first push of the whole branch (`strata_sync::push_to` over a bucket remote
//!     opened with a request counter; the open is inside the timing) to a fresh prefix, `s3_reps`
//!     times (3; 2 with `--quick`), each to its own new prefix; in MB/s where MB = that push's
//!     `PushReport::bytes`, the bytes of the snapshot blob uploaded (the 38-byte marker and the
//!     cursor are not counted; the blobs of the pushes differ by a few bytes, their headers record
//!     versions); median of the rates. The time includes building the blob from the database (the
//!     note gives, for scale, the time of the same first push to a folder remote, and the request
//!     counts of the first push: a blob over 8 MiB goes up as a multipart upload to `tmp/`
//!     published by a conditional copy). Baseline: `rclone copy` of a
//!     local folder holding exactly the first push's blob file (downloaded once beforehand by rclone
//!     from its `blobs/branches/`) to another fresh prefix, as many times, interleaved with the
//!     pushes; rclone's MB is that file's size. Ratio = Strata MB/s ÷ rclone MB/s (medians). No
//!     target.
//! 12. `s3_clone` — `strata_sync::clone_with_options(url, options, dir, progress)` of the first push's
//!     prefix into a new database folder, `s3_reps` times (each a new folder); MB/s over the same
//!     blob bytes (the `FetchReport::bytes` of the clone, checked equal). Baseline: `rclone copy` of
//!     that prefix's `blobs/branches/` to a new local folder (checked to hold exactly those bytes), interleaved
//!     with the clones. Strata also lists the branches and reads the cursor, and applies the snapshot
//!     into SQLite; rclone only writes the file. Ratio = Strata MB/s ÷ rclone MB/s. No target.
//! 13. `s3_requests` — the HTTP requests (counted with `strata_remote_s3::RequestCounter`, by method,
//!     retries included) of: a push of one changed key to the branch already pushed (to its own
//!     fresh prefix), a pull of that change into a second database that had pulled the branch, and a
//!     pull that finds nothing new; one row each. Baseline (computed, not measured): the requests of
//!     the same sync if the branch were stored as one object per key and synced with
//!     `rclone copy --checksum`, which must list the destination (⌈keys / 1000⌉ ListObjectsV2 pages)
//!     before it PUTs or GETs the one changed object; ratio baseline/Strata. Target: ≤ 5 requests.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use strata_engine::{Durability, Strata};
use strata_remote_s3::testing::{emulator, EmulatorRemote};
use strata_remote_s3::{BucketOptions, Env, ObjectStoreRemote, Provider, RequestCounter};
use strata_sync::{PullOptions, PullReport, PushOptions, PushReport, RemoteConfig, SyncExt};
use tempfile::TempDir;

use crate::sync::{noise_value, tree_bytes};
use crate::{key, median, open_strata, progress, secs, show_secs, si, Ctx, Measure, Row, Target};

/// What the rows say when the emulator is not configured.
const NOT_AVAILABLE: &str = "not available: start the emulators (bash scripts/emulators.sh run -- \
                             cargo run --release -p strata-bench)";

/// What the baseline column says when rclone is missing.
const NO_RCLONE: &str = "rclone: not on PATH";

/// The baseline cells of a row from rclone's timings (seconds) over `mb` MB: label, rate (the median)
/// and a note; "missing" when rclone did not run.
fn rclone_baseline(
    times: &mut [f64],
    mb: f64,
    label: &str,
    what: &str,
) -> (String, Measure, String) {
    if times.is_empty() {
        return (
            NO_RCLONE.to_string(),
            Measure::Missing,
            "no baseline: rclone is not on PATH (apt-get install rclone)".to_string(),
        );
    }
    let t = median(times);
    (
        label.to_string(),
        Measure::Rate {
            per_sec: mb / t,
            unit: "MB",
        },
        format!("{what}: {}", show_secs(t)),
    )
}

/// Where a remote keeps its branches' blobs: `blobs/` less the 38-byte marker `blobs/strata-remote.json`,
/// so exactly the bytes `PushReport::bytes` counts.
const BRANCH_BLOBS: &str = "blobs/branches";

/// S3's ListObjectsV2 returns at most this many keys per request.
const LIST_PAGE: usize = 1000;

/// Requests that a sync may cost (benchmark 13's target).
const MAX_REQUESTS: f64 = 5.0;

/// The loaded database and the prefix it was first pushed to (benchmarks 11–13).
pub(crate) struct BucketFix {
    db: Strata,
    /// The first push's location (remote `hub` of `db`): what `s3_clone` clones.
    hub: EmulatorRemote,
    /// Bytes of the snapshot blob of the first push to `hub` (`PushReport::bytes`).
    bytes: u64,
    /// Blob bytes and seconds of each first push of the branch (each to a fresh prefix).
    pushes: Vec<(u64, f64)>,
    /// Requests of the first first push, by method.
    push_requests: BTreeMap<String, u64>,
    /// Remotes added to `db` so far (for unique names).
    remotes: usize,
    rclone: Option<Rclone>,
    /// A local folder holding exactly the first push's blob files (rclone's upload source).
    local_blobs: Option<PathBuf>,
    dir: TempDir,
}

/// Why the emulator cannot be used, if it cannot.
fn emulator_missing() -> Option<&'static str> {
    let set = |v: &str| std::env::var_os(v).is_some_and(|s| !s.is_empty());
    if !set("STRATA_TEST_S3_ENDPOINT") || !set("STRATA_TEST_S3_BUCKET") {
        return Some(NOT_AVAILABLE);
    }
    if !set("AWS_ACCESS_KEY_ID") {
        return Some(
            "not available: STRATA_TEST_S3_ENDPOINT is set but AWS_ACCESS_KEY_ID is not (export \
             dummy keys, as scripts/emulators.sh does)",
        );
    }
    None
}

/// A fresh, unique prefix on the emulator.
fn location(label: &str) -> Result<EmulatorRemote> {
    emulator(Provider::S3, label).context("the S3 emulator is not configured")
}

/// `s3://bucket/prefix` → rclone's on-the-fly remote `:s3:bucket/prefix/sub`.
fn rclone_path(url: &str, sub: &str) -> Result<String> {
    let path = url
        .strip_prefix("s3://")
        .with_context(|| format!("{url} is not an s3:// URL"))?;
    Ok(format!(":s3:{path}/{sub}"))
}

/// "1 GET + 2 PUT = 3".
fn show_requests(by: &BTreeMap<String, u64>) -> String {
    let total: u64 = by.values().sum();
    if by.is_empty() {
        return "0".into();
    }
    let parts: Vec<String> = by.iter().map(|(m, n)| format!("{n} {m}")).collect();
    format!("{} = {total}", parts.join(" + "))
}

fn utf8(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not valid UTF-8", p.display()))
}

/// `rclone` against the emulator, configured by environment variables only.
struct Rclone {
    config: PathBuf,
    env: Vec<(&'static str, OsString)>,
}

impl Rclone {
    /// `None` when `rclone` is not on PATH.
    fn find(dir: &Path, endpoint: &str) -> Result<Option<Rclone>> {
        let found = Command::new("rclone")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Ok(None);
        }
        // An empty config file: nothing from the user's rclone.conf.
        let config = dir.join("rclone.conf");
        std::fs::write(&config, "")?;
        let var = |name: &str| std::env::var_os(name).unwrap_or_else(|| "strata-test".into());
        let env = vec![
            ("RCLONE_S3_PROVIDER", "Other".into()),
            ("RCLONE_S3_ENDPOINT", endpoint.into()),
            ("RCLONE_S3_ACCESS_KEY_ID", var("AWS_ACCESS_KEY_ID")),
            ("RCLONE_S3_SECRET_ACCESS_KEY", var("AWS_SECRET_ACCESS_KEY")),
            ("RCLONE_S3_REGION", "us-east-1".into()),
            ("RCLONE_S3_FORCE_PATH_STYLE", "true".into()),
            // The bucket exists (Strata does not check it either).
            ("RCLONE_S3_NO_CHECK_BUCKET", "true".into()),
        ];
        Ok(Some(Rclone { config, env }))
    }

    /// `rclone copy SRC DST`, timed (wall clock, process start included).
    fn copy(&self, src: &str, dst: &str) -> Result<f64> {
        let t = Instant::now();
        let out = Command::new("rclone")
            .arg("copy")
            .arg(src)
            .arg(dst)
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // rclone's AWS SDK refuses any custom CA bundle with its own HTTP transport ("unsupported
            // transport"), and the emulator is plain HTTP anyway.
            .env_remove("AWS_CA_BUNDLE")
            .output()
            .context("running rclone")?;
        let d = secs(t.elapsed());
        if !out.status.success() {
            bail!(
                "rclone copy {src} {dst} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(d)
    }
}

/// Adds `loc` to `db` as remote `name` and opens it with `counter`.
fn open_remote(
    db: &Strata,
    name: &str,
    loc: &EmulatorRemote,
    counter: &RequestCounter,
) -> Result<ObjectStoreRemote> {
    db.remote_add_with(RemoteConfig {
        name: name.into(),
        url: loc.url.clone(),
        options: loc.options.clone(),
    })?;
    counted(loc, counter)
}

fn counted(loc: &EmulatorRemote, counter: &RequestCounter) -> Result<ObjectStoreRemote> {
    let opts = BucketOptions::from_map(&loc.options)?;
    Ok(ObjectStoreRemote::open_counted(
        &loc.url,
        &opts,
        &Env::process(),
        counter,
    )?)
}

impl Ctx {
    /// The first push of the loaded branch to a fresh prefix as remote `name` of the fixture's
    /// database, timed from opening the remote to the end of the push.
    fn s3_first_push(
        &self,
        db: &Strata,
        name: &str,
        loc: &EmulatorRemote,
        counter: &RequestCounter,
    ) -> Result<(PushReport, f64)> {
        db.remote_add_with(RemoteConfig {
            name: name.into(),
            url: loc.url.clone(),
            options: loc.options.clone(),
        })?;
        let t = Instant::now();
        let remote = counted(loc, counter)?;
        let r = self.rt.block_on(strata_sync::push_to(
            db,
            &remote,
            name,
            "main",
            &PushOptions::default(),
        ))?;
        let d = secs(t.elapsed());
        ensure!(
            !r.up_to_date && r.entries == self.sizes.s3_keys as u64 && r.packed.is_none(),
            "the first push to {} uploaded {} entries, expected {}",
            loc.url,
            r.entries,
            self.sizes.s3_keys
        );
        Ok((r, d))
    }

    fn ensure_bucket(&mut self) -> Result<()> {
        if self.bucket.is_some() {
            return Ok(());
        }
        let s = self.sizes;
        let dir = self.tempdir("strata-bench-s3-")?;
        progress(format!(
            "s3: loading {} keys x {} pseudo-random bytes and pushing them once",
            s.s3_keys, s.s3_value
        ));
        let db = open_strata(&dir.path().join("db"), Durability::Full)?;
        let txs = 10;
        let per = s.s3_keys.div_ceil(txs).max(1);
        let mut i = 0;
        while i < s.s3_keys {
            let mut tx = db.begin("main")?;
            for j in i..(i + per).min(s.s3_keys) {
                tx.kv_put(&key(j), noise_value(j, s.s3_value))?;
            }
            tx.commit()?;
            i += per;
        }
        let hub = location("bench-push")?;
        let counter = RequestCounter::new();
        let (r, d) = self.s3_first_push(&db, "hub", &hub, &counter)?;
        progress(format!(
            "  first push to {}: {:.2} MB in {} ({})",
            hub.url,
            r.bytes as f64 / 1e6,
            show_secs(d),
            show_requests(&counter.by_method())
        ));
        let endpoint = hub
            .options
            .get("endpoint")
            .context("the emulator location has no endpoint")?
            .clone();
        let rclone = Rclone::find(dir.path(), &endpoint)?;
        if rclone.is_none() {
            progress("  rclone is not on PATH: no rclone baselines (apt-get install rclone)");
        }
        self.bucket = Some(BucketFix {
            db,
            hub,
            bytes: r.bytes,
            pushes: vec![(r.bytes, d)],
            push_requests: counter.by_method(),
            remotes: 1,
            rclone,
            local_blobs: None,
            dir,
        });
        Ok(())
    }

    /// A row that says why the emulator cannot be used.
    fn s3_unavailable(&mut self, bench: &'static str, label: String, why: &str) {
        progress(format!("{bench}: {why}"));
        self.rows.push(Row {
            bench,
            label,
            size: format!("{}-key branch", si(self.sizes.s3_keys as f64)),
            strata: Err(why.to_string()),
            baseline_label: "-".into(),
            baseline: Measure::Missing,
            ratio_of: "-",
            inverse: false,
            target: None,
            note: String::new(),
        });
    }

    // ----- 11. push to a bucket -----

    pub(crate) fn bench_s3_push(&mut self) -> Result<()> {
        let n = self.sizes.s3_keys;
        let label = format!("S3 first push, {}-key branch", si(n as f64));
        if let Some(why) = emulator_missing() {
            self.s3_unavailable("s3_push", label, why);
            return Ok(());
        }
        self.ensure_bucket()?;
        let reps = self.sizes.s3_reps;
        let fix = self.bucket.as_ref().expect("bucket fixture");
        let mb = fix.bytes as f64 / 1e6;
        progress(format!(
            "s3_push: {reps} first pushes of {mb:.2} MB, each to a fresh prefix, against rclone \
             copies of the blob"
        ));
        // rclone's upload source: the first push's blob files, downloaded by rclone itself.
        let mut local = fix.local_blobs.clone();
        if let (Some(rc), None) = (&fix.rclone, &local) {
            let to = fix.dir.path().join("local-blobs");
            rc.copy(&rclone_path(&fix.hub.url, BRANCH_BLOBS)?, utf8(&to)?)?;
            let got = tree_bytes(&to)?;
            ensure!(
                got == fix.bytes,
                "rclone downloaded {got} bytes of blobs, the push reported {}",
                fix.bytes
            );
            local = Some(to);
        }
        let mut pushes = fix.pushes.clone();
        let mut remotes = fix.remotes;
        let mut rclone_t = Vec::new();
        for rep in 0..reps {
            if rep > 0 {
                let name = format!("hub{remotes}");
                remotes += 1;
                let (r, d) = self.s3_first_push(
                    &fix.db,
                    &name,
                    &location("bench-push")?,
                    &RequestCounter::new(),
                )?;
                // Each snapshot blob is a few bytes off the others (its header records versions).
                ensure!(
                    r.bytes.abs_diff(fix.bytes) * 100 <= fix.bytes,
                    "a first push uploaded {} bytes, the first one {}",
                    r.bytes,
                    fix.bytes
                );
                pushes.push((r.bytes, d));
            }
            if let (Some(rc), Some(src)) = (&fix.rclone, &local) {
                let dst = location("bench-rclone-up")?;
                rclone_t.push(rc.copy(utf8(src)?, &rclone_path(&dst.url, BRANCH_BLOBS)?)?);
            }
            progress(format!(
                "  round {}: push {}{}",
                rep + 1,
                show_secs(pushes.last().expect("pushed").1),
                rclone_t
                    .last()
                    .map(|t| format!(", rclone up {}", show_secs(*t)))
                    .unwrap_or_default()
            ));
        }
        // For scale: the same first push to a folder remote (the blob built and written to a local
        // file, no network), once.
        let name = format!("folder{remotes}");
        remotes += 1;
        let folder = fix.dir.path().join(&name);
        fix.db.remote_add(&name, utf8(&folder)?)?;
        let t = Instant::now();
        let r = self.rt.block_on(fix.db.push(&name, "main"))?;
        let folder_t = secs(t.elapsed());
        ensure!(
            r.entries == n as u64,
            "the push to a folder uploaded {}",
            r.entries
        );
        progress(format!(
            "  the same first push to a folder remote: {}",
            show_secs(folder_t)
        ));
        let mut rates: Vec<f64> = pushes.iter().map(|&(b, t)| b as f64 / 1e6 / t).collect();
        let mut times: Vec<f64> = pushes.iter().map(|&(_, t)| t).collect();
        let st = median(&mut times);
        let (baseline_label, baseline, rclone_note) = rclone_baseline(
            &mut rclone_t,
            mb,
            "rclone copy of the blob up",
            "rclone copy of the same blob file to a fresh prefix (one process each, one PUT below \
             its 200 MiB cutoff)",
        );
        let fix = self.bucket.as_mut().expect("bucket fixture");
        fix.remotes = remotes;
        fix.local_blobs = local;
        let requests = show_requests(&fix.push_requests);
        self.rows.push(Row {
            bench: "s3_push",
            label,
            size: format!("{mb:.2} MB blob, median of {reps}"),
            strata: Ok(Measure::Rate {
                per_sec: median(&mut rates),
                unit: "MB",
            }),
            baseline_label,
            baseline,
            ratio_of: "strata/rclone MB/s",
            inverse: false,
            target: None,
            note: format!(
                "moto on 127.0.0.1; MB = each push's snapshot blob bytes ({n} keys x {} B \
                 pseudo-random values); median push {} from opening the remote, building the blob \
                 included (the same first push to a folder remote: {}); its requests: {requests} \
                 (blobs over 8 MiB go up as a multipart upload published by a conditional copy); \
                 {rclone_note}",
                self.sizes.s3_value,
                show_secs(st),
                show_secs(folder_t),
            ),
        });
        Ok(())
    }

    // ----- 12. clone from a bucket -----

    pub(crate) fn bench_s3_clone(&mut self) -> Result<()> {
        let n = self.sizes.s3_keys;
        let label = format!("S3 clone, {}-key branch", si(n as f64));
        if let Some(why) = emulator_missing() {
            self.s3_unavailable("s3_clone", label, why);
            return Ok(());
        }
        self.ensure_bucket()?;
        let reps = self.sizes.s3_reps;
        let fix = self.bucket.as_ref().expect("bucket fixture");
        let mb = fix.bytes as f64 / 1e6;
        let work = tempfile::Builder::new()
            .prefix("clone-")
            .tempdir_in(fix.dir.path())?;
        progress(format!(
            "s3_clone: {reps} clones of {} ({mb:.2} MB of blobs) against rclone downloads",
            fix.hub.url
        ));
        let (mut strata_t, mut rclone_t) = (Vec::new(), Vec::new());
        for rep in 0..reps {
            if let Some(rc) = &fix.rclone {
                let to = work.path().join(format!("rclone-{rep}"));
                rclone_t.push(rc.copy(&rclone_path(&fix.hub.url, BRANCH_BLOBS)?, utf8(&to)?)?);
                let got = tree_bytes(&to)?;
                ensure!(
                    got == fix.bytes,
                    "rclone downloaded {got} bytes, the push reported {}",
                    fix.bytes
                );
                std::fs::remove_dir_all(&to)?;
            }
            let to = work.path().join(format!("clone-{rep}"));
            let t = Instant::now();
            let (db, report) = self.rt.block_on(strata_sync::clone_with_options(
                &fix.hub.url,
                &fix.hub.options,
                &to,
                &strata_sync::Progress::none(),
            ))?;
            let d = secs(t.elapsed());
            let entries: u64 = report.branches.iter().map(|b| b.entries).sum();
            let bytes: u64 = report.branches.iter().map(|b| b.bytes).sum();
            ensure!(
                entries == n as u64 && bytes == fix.bytes,
                "the clone fetched {entries} entries and {bytes} bytes, expected {n} and {}",
                fix.bytes
            );
            ensure!(
                db.main().kv_get(&key(n - 1))?.is_some(),
                "the clone lacks the last key"
            );
            drop(db);
            std::fs::remove_dir_all(&to)?;
            strata_t.push(d);
            progress(format!(
                "  round {}: clone {}{}",
                rep + 1,
                show_secs(d),
                rclone_t
                    .last()
                    .map(|t| format!(", rclone down {}", show_secs(*t)))
                    .unwrap_or_default()
            ));
        }
        let st = median(&mut strata_t);
        let (baseline_label, baseline, rclone_note) = rclone_baseline(
            &mut rclone_t,
            mb,
            "rclone copy of the blob down",
            &format!(
                "rclone copy of the prefix's {BRANCH_BLOBS}/ to a new local folder (one process each)"
            ),
        );
        self.rows.push(Row {
            bench: "s3_clone",
            label,
            size: format!("{mb:.2} MB blob, median of {reps}"),
            strata: Ok(Measure::Rate {
                per_sec: mb / st,
                unit: "MB",
            }),
            baseline_label,
            baseline,
            ratio_of: "strata/rclone MB/s",
            inverse: false,
            target: None,
            note: format!(
                "clone_with_options into a new database folder: {} (list branches, read the \
                 cursor, download and check the snapshot, apply {n} entries into SQLite); \
                 {rclone_note}",
                show_secs(st)
            ),
        });
        drop(work);
        Ok(())
    }

    // ----- 13. requests per small sync -----

    pub(crate) fn bench_s3_requests(&mut self) -> Result<()> {
        let n = self.sizes.s3_keys;
        let labels = [
            "S3 requests: push of 1 changed key",
            "S3 requests: pull of 1 changed key",
            "S3 requests: no-op pull",
        ];
        if let Some(why) = emulator_missing() {
            for l in labels {
                self.s3_unavailable("s3_requests", l.to_string(), why);
            }
            return Ok(());
        }
        self.ensure_bucket()?;
        let s = self.sizes;
        let fix = self.bucket.as_ref().expect("bucket fixture");
        let loc = location("bench-requests")?;
        progress(format!(
            "s3_requests: {n}-key branch pushed to {}, pulled by a second database; then one \
             changed key",
            loc.url
        ));
        let counter = RequestCounter::new();
        let name = format!("hub{}", fix.remotes);
        let remote = open_remote(&fix.db, &name, &loc, &counter)?;
        let push = |db: &Strata| -> Result<PushReport> {
            Ok(self.rt.block_on(strata_sync::push_to(
                db,
                &remote,
                &name,
                "main",
                &PushOptions::default(),
            ))?)
        };
        let pull = |db: &Strata| -> Result<PullReport> {
            Ok(self.rt.block_on(strata_sync::pull_from(
                db,
                &remote,
                &name,
                "main",
                &PullOptions::default(),
            ))?)
        };
        let r = push(&fix.db)?;
        ensure!(
            r.entries == n as u64,
            "the first push uploaded {}",
            r.entries
        );
        let other = open_strata(&fix.dir.path().join("puller"), Durability::Full)?;
        other.remote_add_with(RemoteConfig {
            name: name.clone(),
            url: loc.url.clone(),
            options: loc.options.clone(),
        })?;
        let r = pull(&other)?;
        ensure!(
            r.fetch.entries == n as u64,
            "the first pull fetched {}",
            r.fetch.entries
        );

        // One changed key: same length, other bytes.
        let changed = key(n / 2);
        fix.db
            .main()
            .kv_put(&changed, noise_value(n + 1, s.s3_value))?;
        counter.reset();
        let r = push(&fix.db)?;
        let push_req = counter.by_method();
        ensure!(
            r.entries == 1 && r.packed.is_none(),
            "the push of one change uploaded {} entries",
            r.entries
        );
        let delta_bytes = r.bytes;
        counter.reset();
        let r = pull(&other)?;
        let pull_req = counter.by_method();
        // (A fast-forward: the puller's main re-forks at the new mirror version, applying nothing.)
        ensure!(
            r.fetch.entries == 1,
            "the pull of one change fetched {} entries",
            r.fetch.entries
        );
        ensure!(
            other.main().kv_get(&changed)? == Some(noise_value(n + 1, s.s3_value)),
            "the pull did not bring the changed value"
        );
        counter.reset();
        let r = pull(&other)?;
        let noop_req = counter.by_method();
        ensure!(
            r.fetch.versions == 0 && r.applied == 0,
            "the no-op pull fetched {} versions",
            r.fetch.versions
        );
        drop(other);
        let fix = self.bucket.as_mut().expect("bucket fixture");
        fix.remotes += 1;

        let pages = n.div_ceil(LIST_PAGE);
        let cases = [
            (
                labels[0],
                &push_req,
                pages + 1,
                format!("{pages} LIST + 1 PUT"),
                format!(
                    "a {delta_bytes}-byte delta blob: read the cursor, put the blob \
                     (If-None-Match), compare-and-swap the cursor"
                ),
            ),
            (
                labels[1],
                &pull_req,
                pages + 1,
                format!("{pages} LIST + 1 GET"),
                "read the cursor, get the delta blob".to_string(),
            ),
            (
                labels[2],
                &noop_req,
                pages,
                format!("{pages} LIST"),
                "read the cursor, which is unchanged".to_string(),
            ),
        ];
        for (label, by, base, base_how, what) in cases {
            let total = by.values().sum::<u64>() as f64;
            progress(format!("  {label}: {}", show_requests(by)));
            self.rows.push(Row {
                bench: "s3_requests",
                label: format!("{label}: {}", show_requests(by)),
                size: format!("{}-key branch", si(n as f64)),
                strata: Ok(Measure::Count {
                    n: total,
                    unit: "requests",
                }),
                baseline_label: "object per key, rclone (computed)".into(),
                baseline: Measure::Count {
                    n: base as f64,
                    unit: "requests",
                },
                ratio_of: "baseline/strata",
                inverse: true,
                target: Some(Target::CountAtMost(MAX_REQUESTS)),
                note: format!(
                    "{what}; counted by RequestCounter, retries included. Baseline, computed and \
                     not measured: the {n} keys as one object each synced by `rclone copy \
                     --checksum` = {base_how} (ListObjectsV2 pages of {LIST_PAGE} keys); uploading \
                     the whole branch that way would take {n} PUTs"
                ),
            });
        }
        Ok(())
    }
}
