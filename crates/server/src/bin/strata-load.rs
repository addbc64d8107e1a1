//! `strata-load`: a load generator for `stratadb-server`, through `strata-client`.
//!
//! `--acks` prints one line per acknowledged write, `ack KEY VERSION`, flushed at once, so a test
//! that kills the server knows exactly which writes were acknowledged. Without it, prints the
//! throughput and latency percentiles as JSON.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use strata_client::{ClientOptions, Command, Db, Op, Value};

/// Drive a Strata server (or an embedded folder) with writes or reads.
#[derive(Parser, Debug)]
#[command(name = "strata-load")]
struct Cli {
    /// strata://host:port (key in STRATA_API_KEY), or a folder for the embedded database.
    #[arg(long)]
    url: String,
    /// Client threads.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Operations per thread (0: until killed).
    #[arg(long, default_value_t = 100)]
    ops: u64,
    /// Key prefix (keys are PREFIX-THREAD-N).
    #[arg(long, default_value = "k")]
    prefix: String,
    /// The branch.
    #[arg(long, default_value = "main")]
    branch: String,
    /// `commit`: each write is a transaction (prints its version); `set`: one-shot kv_put;
    /// `get`: reads of keys written first.
    #[arg(long, default_value = "commit")]
    mode: String,
    /// Requests per round trip (pipelining) for `set` and `get`.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Print `ack KEY VERSION` per acknowledged write.
    #[arg(long)]
    acks: bool,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    let cli = Arc::new(Cli::parse());
    let db = if cli.url.starts_with(strata_client::SCHEME) {
        let opts = ClientOptions {
            pool_size: cli.threads.max(1),
            client_name: "strata-load".into(),
            ..ClientOptions::from_env()
        };
        Db::connect(&cli.url, opts)?
    } else {
        Db::open(&cli.url)?
    };
    if cli.mode == "get" {
        // The keys read, written first: one transaction per thread.
        for t in 0..cli.threads {
            let mut tx = db.begin(&cli.branch)?;
            for n in 0..cli.ops.clamp(1, 1000) {
                tx.kv_put(&format!("{}-{t}-{n}", cli.prefix), n as i64)?;
            }
            tx.commit()?;
        }
    }
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let lat = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let start = Instant::now();
    let deadline = cli.seconds.map(|s| start + Duration::from_secs_f64(s));
    let mut handles = Vec::new();
    for t in 0..cli.threads {
        let (db, cli, out, lat) = (db.clone(), cli.clone(), out.clone(), lat.clone());
        handles.push(std::thread::spawn(move || -> anyhow::Result<u64> {
            let mut mine = Vec::new();
            let mut n = 0u64;
            while cli.ops == 0 || n < cli.ops {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let t0 = Instant::now();
                match cli.mode.as_str() {
                    "commit" => {
                        let key = format!("{}-{t}-{n}", cli.prefix);
                        let mut tx = db.begin(&cli.branch)?;
                        tx.kv_put(&key, n as i64)?;
                        let v = tx.commit()?;
                        if cli.acks {
                            let mut o = out.lock().unwrap();
                            writeln!(o, "ack {key} {}", v.unwrap_or(0))?;
                            o.flush()?;
                        }
                        n += 1;
                    }
                    "set" | "get" => {
                        let batch: Vec<Command> = (0..cli.pipeline as u64)
                            .map(|i| {
                                let k = (n + i) % cli.ops.clamp(1, 1000);
                                if cli.mode == "set" {
                                    set(&cli, t, n + i)
                                } else {
                                    get(&cli, t, k)
                                }
                            })
                            .collect();
                        if batch.len() == 1 {
                            db.execute(batch.into_iter().next().unwrap())?;
                        } else {
                            for r in db.pipeline(&batch)? {
                                r?;
                            }
                        }
                        n += cli.pipeline as u64;
                    }
                    m => anyhow::bail!("unknown --mode {m} (commit, set or get)"),
                }
                mine.push(t0.elapsed());
            }
            lat.lock().unwrap().extend(mine);
            Ok(n)
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    let secs = start.elapsed().as_secs_f64();
    if !cli.acks {
        let mut l = lat.lock().unwrap().clone();
        l.sort();
        let p = |q: f64| {
            l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
                .map(|d| d.as_secs_f64() * 1e3)
                .unwrap_or(0.0)
        };
        println!(
            "{}",
            serde_json::json!({"mode": cli.mode, "threads": cli.threads, "pipeline": cli.pipeline,
                "ops": total, "seconds": secs, "ops_per_sec": total as f64 / secs,
                "p50_ms": p(0.5), "p99_ms": p(0.99)})
        );
    }
    Ok(())
}

fn set(cli: &Cli, t: usize, n: u64) -> Command {
    Command::Scoped {
        branch: cli.branch.clone(),
        version: None,
        space: "default".into(),
        op: Op::KvPut {
            key: format!("{}-{t}-{n}", cli.prefix),
            value: Value::Int(n as i64),
        },
    }
}

fn get(cli: &Cli, t: usize, n: u64) -> Command {
    Command::Scoped {
        branch: cli.branch.clone(),
        version: None,
        space: "default".into(),
        op: Op::KvGet {
            key: format!("{}-{t}-{n}", cli.prefix),
        },
    }
}
