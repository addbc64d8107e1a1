//! `strata-torture`: a child process for Strata's end-to-end tests.
//!
//! ```text
//! strata-torture write-loop DB START [--durability full|normal] [--count N]
//!     Commits transactions on `main`: transaction i (from START) writes keys t{i}:k0..k4 = i, appends
//!     event `tick` with payload i and sets cell `last` = i, all in one transaction. After each commit
//!     returns it prints `ack {i} {version}` and flushes. Runs until killed; with --count N it stops
//!     after N transactions, prints `finished` and then waits (still running) to be killed.
//! strata-torture increment DB N BRANCH [--busy-ms MS] [--barrier stdin]
//!     N times: in one transaction read cell `counter` (absent = 0) and write counter+1 (commit message
//!     `pid {pid}`); a retryable error retries the whole transaction. Prints `retries {r}` then `done`.
//!     With `--barrier stdin` it first opens the database, prints `ready` and waits for a stdin line.
//! strata-torture hold DB BRANCH
//!     Begins a transaction on BRANCH, puts key `held` = "yes", prints `holding {version}`, then reads one
//!     stdin line: `commit` commits and prints `committed {version}`; `rollback` rolls back and prints
//!     `rolled-back`; end of input exits without committing.
//! ```
//!
//! Exit codes: 0 success, 1 engine error, 2 usage error, 3 stdout closed.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use strata_engine::{Durability, Error, Options, Strata};
use strata_tests::{increment_n, txn_key, KEYS_PER_TXN};

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  strata-torture write-loop DB START [--durability full|normal] [--count N]\n  \
         strata-torture increment DB N BRANCH [--busy-ms MS] [--barrier stdin]\n  strata-torture hold DB BRANCH"
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
}

fn config(flags: &[(String, String)]) -> Result<Config, String> {
    let mut c = Config {
        opts: Options::default(),
        count: None,
        barrier: false,
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
        _ => return usage(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-torture {cmd}: {e}");
            ExitCode::from(1)
        }
    }
}
