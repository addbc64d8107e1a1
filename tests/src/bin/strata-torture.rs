//! `strata-torture`: a child process for Strata's end-to-end tests.
//!
//! ```text
//! strata-torture write-loop DB START [--durability full|normal] [--count N] [--pause-ms MS]
//!     Commits transactions on `main`: transaction i (from START) writes keys t{i}:k0..k4 = i, appends
//!     event `tick` with payload i and sets cell `last` = i, all in one transaction. After each commit
//!     returns it prints `ack {i} {version}` and flushes. Runs until killed; with --count N it stops
//!     after N transactions, prints `finished` and then waits (still running) to be killed. With
//!     --pause-ms it sleeps that long after each commit.
//! strata-torture increment DB N BRANCH [--busy-ms MS] [--barrier stdin]
//!     N times: in one transaction read cell `counter` (absent = 0) and write counter+1 (commit message
//!     `pid {pid}`); a retryable error retries the whole transaction. Prints `retries {r}` then `done`.
//!     With `--barrier stdin` it first opens the database, prints `ready` and waits for a stdin line.
//! strata-torture hold DB BRANCH
//!     Begins a transaction on BRANCH, puts key `held` = "yes", prints `holding {version}`, then reads one
//!     stdin line: `commit` commits and prints `committed {version}`; `rollback` rolls back and prints
//!     `rolled-back`; end of input exits without committing.
//! strata-torture sync-loop DB REMOTE CLIENT N [--barrier stdin] [--pack-fanout N] [--option K=V]...
//!     Opens DB (adding remote `hub` -> REMOTE_DIR unless configured), then N times: pull `main` (last
//!     writer wins; an empty remote is skipped), commit key `c{CLIENT}:{i}` = i with event `sync`
//!     (payload "c{CLIENT}:{i}") in one transaction, and push, retrying "pull first" rejections (pull,
//!     random 1-25 ms backoff, push again) until the push succeeds; then prints
//!     `acked {i} {remote_version}`. Ends with `done {rejections} {other_retries}` and exit 0. With
//!     `--barrier stdin` it first prints `ready` and waits for a stdin line.
//! strata-torture push-loop DB REMOTE_DIR START [--pack-fanout N]
//!     Forever, from i = START: commit key `p{i}` = i, key `pad:{i % 16}` (1 KiB string) and event
//!     `push` (payload i) in one transaction, push `main` to `hub` (retrying retryable errors), print
//!     `pushed {i} {remote_version}`. Any other push error (a rejection included) exits 1.
//! strata-torture pull-loop DB REMOTE_DIR
//!     Forever: pull `main` from `hub` (LWW) and print `pulled {remote_version}` (an empty remote is
//!     skipped).
//! strata-torture soak-sync DB REMOTE [--write TAG] [--pause-ms MS] [--pack-fanout N]
//!     Rounds until a line `stop` or the end of stdin: with --write, commit key `{TAG}:{i}` = i and
//!     event `soak` (payload "{TAG}:{i}") in one transaction and print `ack {i}`; then pull `main`
//!     (LWW; an empty remote is skipped) and push it, pulling and pushing again up to 4 times while
//!     the push is rejected; print `round {remote_version}` (`round -` if every push was rejected);
//!     sleep about --pause-ms (0.5 to 1.5 times). Other processes may write to DB meanwhile. Ends with
//!     `stopped {rounds} {pulls} {pushes} {rejections} {retries}` and exit 0.
//! ```
//!
//! Exit codes: 0 success, 1 engine or sync error, 2 usage error, 3 stdout closed.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use strata_engine::{Durability, Error, Options, Strata};
use strata_sync::{PushOptions, SyncError, SyncExt};
use strata_tests::sync::REMOTE;
use strata_tests::{increment_n, txn_key, Lcg, KEYS_PER_TXN};

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  strata-torture write-loop DB START [--durability full|normal] [--count N]\n  \
         strata-torture increment DB N BRANCH [--busy-ms MS] [--barrier stdin]\n  strata-torture hold DB BRANCH\n  \
         strata-torture sync-loop DB REMOTE CLIENT N [--barrier stdin] [--pack-fanout N] [--option K=V]...\n  \
         strata-torture push-loop DB REMOTE_DIR START [--pack-fanout N]\n  \
         strata-torture pull-loop DB REMOTE_DIR\n  \
         strata-torture soak-sync DB REMOTE [--write TAG] [--pause-ms MS] [--pack-fanout N]"
    );
    ExitCode::from(2)
}

/// `--name value` pairs.
type Flags = Vec<(String, String)>;

/// Splits `--flag value` pairs from positional arguments.
fn split_flags(args: &[String]) -> Result<(Vec<String>, Flags), String> {
    let mut pos = Vec::new();
    let mut flags = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--") {
            let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            flags.push((name.to_string(), v.clone()));
        } else {
            pos.push(a.clone());
        }
    }
    Ok((pos, flags))
}

struct Config {
    opts: Options,
    count: Option<u64>,
    barrier: bool,
    pack_fanout: Option<usize>,
    /// Remote options (`--option KEY=VALUE`, repeatable), e.g. a bucket's endpoint.
    remote_options: std::collections::BTreeMap<String, String>,
    /// A pause after each commit or round.
    pause: Duration,
    /// `soak-sync`: the tag of the keys it writes, if it writes.
    write_tag: Option<String>,
}

fn config(flags: &[(String, String)]) -> Result<Config, String> {
    let mut c = Config {
        opts: Options::default(),
        count: None,
        barrier: false,
        pack_fanout: None,
        remote_options: Default::default(),
        pause: Duration::ZERO,
        write_tag: None,
    };
    for (k, v) in flags {
        match k.as_str() {
            "durability" => {
                c.opts.durability = match v.as_str() {
                    "full" => Durability::Full,
                    "normal" => Durability::Normal,
                    _ => return Err(format!("unknown durability {v:?}")),
                }
            }
            "count" => c.count = Some(v.parse().map_err(|_| format!("bad --count {v:?}"))?),
            "busy-ms" => {
                c.opts.busy_timeout =
                    Duration::from_millis(v.parse().map_err(|_| format!("bad --busy-ms {v:?}"))?)
            }
            "barrier" => c.barrier = v == "stdin",
            "pause-ms" => {
                c.pause =
                    Duration::from_millis(v.parse().map_err(|_| format!("bad --pause-ms {v:?}"))?)
            }
            "write" => c.write_tag = Some(v.clone()),
            "pack-fanout" => {
                c.pack_fanout = Some(v.parse().map_err(|_| format!("bad --pack-fanout {v:?}"))?)
            }
            "option" => {
                let (key, value) = v
                    .split_once('=')
                    .ok_or_else(|| format!("bad --option {v:?}: want KEY=VALUE"))?;
                c.remote_options.insert(key.to_string(), value.to_string());
            }
            _ => return Err(format!("unknown flag --{k}")),
        }
    }
    Ok(c)
}

/// Prints a line and flushes; exits with code 3 if the parent closed our stdout.
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
        std::process::exit(3);
    }
}

/// Opens the database, retrying while another process holds the lock during its own open.
fn open(dir: &str, opts: &Options) -> Result<Strata, Error> {
    let mut tries = 0u32;
    loop {
        match Strata::open_with(dir, opts.clone()) {
            Err(e) if e.is_retryable() && tries < 100 => {
                eprintln!("strata-torture: open: {e}; retrying");
                tries += 1
            }
            r => return r,
        }
    }
}

fn write_loop(dir: &str, start: u64, cfg: &Config) -> Result<(), Error> {
    let db = open(dir, &cfg.opts)?;
    let mut i = start;
    loop {
        if cfg.count.is_some_and(|n| i - start >= n) {
            say(format_args!("finished"));
            // Stay alive until killed: the test kills us right after the last ack, before any clean
            // shutdown could checkpoint or close the database.
            loop {
                std::thread::park();
            }
        }
        let mut tx = db.begin("main")?;
        for j in 0..KEYS_PER_TXN {
            tx.kv_put(&txn_key(i, j), i as i64)?;
        }
        tx.event_append("tick", i as i64)?;
        tx.state_set("last", i as i64)?;
        let v = tx.commit()?.expect("the transaction wrote entries");
        say(format_args!("ack {i} {v}"));
        i += 1;
        if !cfg.pause.is_zero() {
            std::thread::sleep(cfg.pause);
        }
    }
}

fn increment(dir: &str, n: u64, branch: &str, cfg: &Config) -> Result<(), Error> {
    let db = open(dir, &cfg.opts)?;
    if cfg.barrier {
        // Let the test start every writer at the same moment.
        say(format_args!("ready"));
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
    }
    let retries = increment_n(&db, branch, n, &format!("pid {}", std::process::id()))?;
    say(format_args!("retries {retries}"));
    say(format_args!("done"));
    Ok(())
}

fn hold(dir: &str, branch: &str, cfg: &Config) -> Result<(), Error> {
    let db = open(dir, &cfg.opts)?;
    let mut tx = db.begin(branch)?;
    tx.kv_put("held", "yes")?;
    say(format_args!("holding {}", tx.version()));
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    match line.trim() {
        "commit" => {
            let v = tx.commit()?.expect("the transaction wrote an entry");
            say(format_args!("committed {v}"));
        }
        "rollback" => {
            tx.rollback()?;
            say(format_args!("rolled-back"));
        }
        "" => {}
        other => {
            return Err(Error::InvalidOperation(format!(
                "unknown command {other:?}"
            )))
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    strata_sync::set_connector(std::sync::Arc::new(strata_remotes::Remotes::new()));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        return usage();
    };
    let (pos, flags) = match split_flags(rest) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("strata-torture: {e}");
            return usage();
        }
    };
    let cfg = match config(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("strata-torture: {e}");
            return usage();
        }
    };
    let r = match (cmd.as_str(), pos.as_slice()) {
        ("write-loop", [dir, start]) => match start.parse() {
            Ok(start) => write_loop(dir, start, &cfg),
            Err(_) => return usage(),
        },
        ("increment", [dir, n, branch]) => match n.parse() {
            Ok(n) => increment(dir, n, branch, &cfg),
            Err(_) => return usage(),
        },
        ("hold", [dir, branch]) => hold(dir, branch, &cfg),
        ("sync-loop", [dir, remote, client, n]) => match (client.parse(), n.parse()) {
            (Ok(client), Ok(n)) => return finish(cmd, sync_loop(dir, remote, client, n, &cfg)),
            _ => return usage(),
        },
        ("push-loop", [dir, remote, start]) => match start.parse() {
            Ok(start) => return finish(cmd, push_loop(dir, remote, start, &cfg)),
            Err(_) => return usage(),
        },
        ("pull-loop", [dir, remote]) => return finish(cmd, pull_loop(dir, remote, &cfg)),
        ("soak-sync", [dir, remote]) => return finish(cmd, soak_sync(dir, remote, &cfg)),
        _ => return usage(),
    };
    finish(cmd, r)
}

fn finish<E: std::fmt::Display>(cmd: &str, r: Result<(), E>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-torture {cmd}: {e}");
            ExitCode::from(1)
        }
    }
}

// ----- sync subcommands ---------------------------------------------------------------------------

/// Errors of the sync subcommands.
#[derive(Debug)]
enum SyncFail {
    Sync(SyncError),
    Other(String),
}

impl std::fmt::Display for SyncFail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncFail::Sync(e) => write!(f, "{e} ({e:?})"),
            SyncFail::Other(s) => f.write_str(s),
        }
    }
}

impl From<SyncError> for SyncFail {
    fn from(e: SyncError) -> Self {
        SyncFail::Sync(e)
    }
}

impl From<Error> for SyncFail {
    fn from(e: Error) -> Self {
        SyncFail::Sync(SyncError::Engine(e))
    }
}

impl From<std::io::Error> for SyncFail {
    fn from(e: std::io::Error) -> Self {
        SyncFail::Other(format!("I/O: {e}"))
    }
}

/// Gives up on an operation after this many retryable failures in a row.
const MAX_RETRIES: u32 = 2000;

fn runtime() -> Result<tokio::runtime::Runtime, SyncFail> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Opens the database and configures remote `hub` unless it already is (a killed run may have done it).
fn open_synced(dir: &str, remote_dir: &str, cfg: &Config) -> Result<Strata, SyncFail> {
    let db = open(dir, &cfg.opts)?;
    if !db.remote_list()?.iter().any(|r| r.name == REMOTE) {
        db.remote_add_with(strata_sync::RemoteConfig {
            name: REMOTE.into(),
            url: remote_dir.into(),
            options: cfg.remote_options.clone(),
        })?;
    }
    Ok(db)
}

fn push_options(cfg: &Config) -> PushOptions {
    let mut opts = PushOptions::default();
    if let Some(n) = cfg.pack_fanout {
        opts.pack_fanout = n;
    }
    opts
}

async fn backoff(rng: &mut Lcg, lo: u64, hi: u64) {
    tokio::time::sleep(Duration::from_millis(rng.range(lo, hi))).await;
}

/// Pulls `main` (last writer wins), retrying retryable errors. `None` when the remote holds no `main`
/// yet.
async fn pull_main(db: &Strata, rng: &mut Lcg) -> Result<Option<u64>, SyncFail> {
    let mut tries = 0;
    loop {
        match db.pull(REMOTE, "main").await {
            Ok(r) => return Ok(Some(r.fetch.remote_version)),
            Err(SyncError::NotFound(_)) | Err(SyncError::NotAStrataRemote(_)) => return Ok(None),
            Err(e) if e.is_retryable() && tries < MAX_RETRIES => {
                eprintln!("strata-torture: pull: {e}; retrying");
                tries += 1;
                backoff(rng, 1, 10).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn sync_loop(
    dir: &str,
    remote_dir: &str,
    client: u64,
    n: u64,
    cfg: &Config,
) -> Result<(), SyncFail> {
    let db = open_synced(dir, remote_dir, cfg)?;
    let mut rng = Lcg::new(client.wrapping_mul(1_000_003) ^ u64::from(std::process::id()));
    if cfg.barrier {
        say(format_args!("ready"));
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
    }
    let (mut rejections, mut others) = (0u64, 0u64);
    let opts = push_options(cfg);
    runtime()?.block_on(async {
        for i in 0..n {
            pull_main(&db, &mut rng).await?;
            let mut tx = db.begin("main")?;
            tx.kv_put(&format!("c{client}:{i}"), i as i64)?;
            tx.event_append("sync", format!("c{client}:{i}").as_str())?;
            tx.commit()?;
            let mut tries = 0;
            loop {
                match db.push_with(REMOTE, "main", &opts).await {
                    Ok(r) => {
                        say(format_args!("acked {i} {}", r.remote_version));
                        break;
                    }
                    Err(e) if tries >= MAX_RETRIES => return Err(e.into()),
                    Err(SyncError::Rejected(msg)) => {
                        if !msg.contains("pull first") {
                            return Err(SyncError::Rejected(msg).into());
                        }
                        rejections += 1;
                        backoff(&mut rng, 1, 25).await;
                        pull_main(&db, &mut rng).await?;
                    }
                    Err(e) if e.is_retryable() => {
                        eprintln!("strata-torture: push: {e}; retrying");
                        others += 1;
                        backoff(&mut rng, 1, 10).await;
                    }
                    Err(e) => return Err(e.into()),
                }
                tries += 1;
            }
        }
        Ok::<_, SyncFail>(())
    })?;
    say(format_args!("done {rejections} {others}"));
    Ok(())
}

/// A kilobyte of text that depends on `i` and does not compress to nothing.
fn pad(i: u64) -> String {
    let mut r = Lcg::new(i);
    (0..128).map(|_| format!("{:08x}", r.next_u32())).collect()
}

fn push_loop(dir: &str, remote_dir: &str, start: u64, cfg: &Config) -> Result<(), SyncFail> {
    let db = open_synced(dir, remote_dir, cfg)?;
    let opts = push_options(cfg);
    let mut rng = Lcg::new(start);
    runtime()?.block_on(async {
        for i in start.. {
            let mut tx = db.begin("main")?;
            tx.kv_put(&format!("p{i}"), i as i64)?;
            tx.kv_put(&format!("pad:{}", i % 16), pad(i).as_str())?;
            tx.event_append("push", i as i64)?;
            tx.commit()?;
            let mut tries = 0;
            loop {
                match db.push_with(REMOTE, "main", &opts).await {
                    Ok(r) => {
                        say(format_args!("pushed {i} {}", r.remote_version));
                        break;
                    }
                    Err(e) if e.is_retryable() && tries < MAX_RETRIES => {
                        eprintln!("strata-torture: push: {e}; retrying");
                        tries += 1;
                        backoff(&mut rng, 1, 10).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    })
}

fn pull_loop(dir: &str, remote_dir: &str, cfg: &Config) -> Result<(), SyncFail> {
    let db = open_synced(dir, remote_dir, cfg)?;
    let mut rng = Lcg::new(u64::from(std::process::id()));
    runtime()?.block_on(async {
        loop {
            match pull_main(&db, &mut rng).await? {
                Some(v) => say(format_args!("pulled {v}")),
                None => backoff(&mut rng, 1, 5).await,
            }
        }
    })
}

/// A flag set when stdin says `stop` or ends (read on its own thread).
fn stop_on_stdin() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line {
                Ok(l) if l.trim() != "stop" => continue,
                _ => break,
            }
        }
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    stop
}

/// Pull-and-push attempts per `soak-sync` round while pushes are rejected.
const REJECTED_RETRIES: u32 = 4;

fn soak_sync(dir: &str, remote_dir: &str, cfg: &Config) -> Result<(), SyncFail> {
    let db = open_synced(dir, remote_dir, cfg)?;
    let stop = stop_on_stdin();
    let opts = push_options(cfg);
    let mut rng = Lcg::new(u64::from(std::process::id()));
    let (mut rounds, mut pulls, mut pushes, mut rejections, mut retries) = (0u64, 0, 0, 0, 0);
    runtime()?.block_on(async {
        let mut i = 0u64;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            if let Some(tag) = &cfg.write_tag {
                let key = format!("{tag}:{i}");
                let mut tx = db.begin("main")?;
                tx.kv_put(&key, i as i64)?;
                tx.event_append("soak", key.as_str())?;
                tx.commit()?;
                say(format_args!("ack {i}"));
                i += 1;
            }
            // Pull, then push; a rejection (someone pushed in between) pulls and pushes again, a few
            // times, as a syncing client would.
            let mut version = None;
            let mut tries = 0;
            'round: for _ in 0..REJECTED_RETRIES {
                if pull_main(&db, &mut rng).await?.is_some() {
                    pulls += 1;
                }
                loop {
                    match db.push_with(REMOTE, "main", &opts).await {
                        Ok(r) => {
                            pushes += 1;
                            version = Some(r.remote_version);
                            break 'round;
                        }
                        Err(SyncError::Rejected(msg)) => {
                            eprintln!("strata-torture: push rejected: {msg}");
                            rejections += 1;
                            break;
                        }
                        Err(e) if e.is_retryable() && tries < MAX_RETRIES => {
                            eprintln!("strata-torture: push: {e}; retrying");
                            tries += 1;
                            retries += 1;
                            backoff(&mut rng, 1, 10).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            rounds += 1;
            match version {
                Some(v) => say(format_args!("round {v}")),
                None => say(format_args!("round -")),
            }
            // A pause of half to one and a half times --pause-ms, so that rounds do not fall into step.
            let ms = cfg.pause.as_millis() as u64;
            if ms > 0 {
                backoff(&mut rng, ms / 2, ms + ms / 2).await;
            }
        }
        Ok::<_, SyncFail>(())
    })?;
    say(format_args!(
        "stopped {rounds} {pulls} {pushes} {rejections} {retries}"
    ));
    Ok(())
}
