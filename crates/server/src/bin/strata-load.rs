//! `strata-load`: a load generator for `stratadb-server`, through `strata-client`.
//!
//! `--acks` prints one line per acknowledged write, `ack KEY VERSION`, flushed at once, so a test
//! that kills the server knows exactly which writes were acknowledged. Without it, prints the
//! throughput and latency percentiles as JSON.
//!
//! `set` and `get` against a server are driven the way `redis-benchmark` drives Redis: one thread,
//! one event loop, `--threads` connections each keeping `--pipeline` requests in flight, so the
//! figure measures the server and not the load generator's thread switches. `--blocking` drives them
//! through `strata-client` instead, one blocking connection per thread.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use strata_client::{ClientOptions, Command, Db, Op, Value};

/// Drive a Strata server (or an embedded folder) with writes or reads.
#[derive(Parser, Debug, Clone)]
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
    /// Print `ack KEY VERSION` per acknowledged write (`set`: version 0, a one-shot write's answer
    /// has none). Drives through `strata-client`.
    #[arg(long)]
    acks: bool,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<f64>,
    /// `set`/`get` through `strata-client`, one blocking thread per connection, instead of one
    /// event loop over raw connections.
    #[arg(long)]
    blocking: bool,
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
        // The keys read, written first (one transaction per thread) unless a run before wrote
        // them, so that a second run reads the same versions.
        let keys = cli.ops.clamp(1, 1000);
        for t in 0..cli.threads {
            let last = format!("{}-{t}-{}", cli.prefix, keys - 1);
            if db.on(&cli.branch).kv_get(&last)? == Some(Value::Int(keys as i64 - 1)) {
                continue;
            }
            let mut tx = db.begin(&cli.branch)?;
            for n in 0..keys {
                tx.kv_put(&format!("{}-{t}-{n}", cli.prefix), n as i64)?;
            }
            tx.commit()?;
        }
    }
    if !cli.blocking
        && !cli.acks
        && cli.url.starts_with(strata_client::SCHEME)
        && cli.mode != "commit"
    {
        drop(db);
        return event_loop::run(&cli);
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
                            db.execute(batch[0].clone())?;
                        } else {
                            for r in db.pipeline(&batch)? {
                                r?;
                            }
                        }
                        if cli.acks && cli.mode == "set" {
                            // A one-shot write's answer carries no version: `ack KEY 0`.
                            let mut o = out.lock().unwrap();
                            for i in 0..cli.pipeline as u64 {
                                writeln!(o, "ack {}-{t}-{} 0", cli.prefix, n + i)?;
                            }
                            o.flush()?;
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
        let l = lat.lock().unwrap().clone();
        let driver = if cli.url.starts_with(strata_client::SCHEME) {
            "blocking threads"
        } else {
            "embedded"
        };
        report(&cli, driver, total, secs, l);
    }
    Ok(())
}

/// Prints throughput and round-trip latency percentiles as one JSON line.
fn report(cli: &Cli, driver: &str, total: u64, secs: f64, mut l: Vec<Duration>) {
    l.sort();
    let p = |q: f64| {
        l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(0.0)
    };
    println!(
        "{}",
        serde_json::json!({"mode": cli.mode, "threads": cli.threads, "pipeline": cli.pipeline,
            "driver": driver,
            "ops": total, "seconds": secs, "ops_per_sec": total as f64 / secs,
            "p50_ms": p(0.5), "p99_ms": p(0.99)})
    );
}

/// The `redis-benchmark`-style driver: raw frames over non-blocking sockets on one thread.
mod event_loop {
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    use strata_client::Output;
    use strata_wire::{
        check_len, decode_ref, encode_into, encode_msg_into, from_body, parse_header, preamble,
        to_body, FrameKind, Hello, Reply, Welcome, HEADER_LEN, PROTOCOL_VERSION,
    };

    use super::{get, report, set, Cli};

    pub(super) fn run(cli: &Cli) -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let addr = cli
                .url
                .strip_prefix(strata_client::SCHEME)
                .unwrap_or(&cli.url)
                .trim_end_matches('/')
                .to_string();
            let key = std::env::var("STRATA_API_KEY").ok();
            let mut conns = Vec::new();
            for _ in 0..cli.threads {
                conns.push(connect(&addr, key.clone()).await?);
            }
            let start = Instant::now();
            let deadline = cli.seconds.map(|s| start + Duration::from_secs_f64(s));
            let tasks = tokio::task::LocalSet::new();
            let mut handles = Vec::new();
            for (t, conn) in conns.into_iter().enumerate() {
                let cli = cli.clone();
                handles.push(tasks.spawn_local(drive(conn, cli, t, deadline)));
            }
            let results = tasks
                .run_until(async {
                    let mut out = Vec::new();
                    for h in handles {
                        out.push(h.await);
                    }
                    out
                })
                .await;
            let secs = start.elapsed().as_secs_f64();
            let mut total = 0;
            let mut lat = Vec::new();
            for r in results {
                let (n, l) = r.context("a connection task panicked")??;
                total += n;
                lat.extend(l);
            }
            report(cli, "event loop", total, secs, lat);
            Ok(())
        })
    }

    async fn connect(addr: &str, api_key: Option<String>) -> anyhow::Result<BufReader<TcpStream>> {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        s.set_nodelay(true)?;
        let mut s = BufReader::new(s);
        let mut out = preamble(PROTOCOL_VERSION).to_vec();
        let hello = Hello {
            api_key,
            client_name: "strata-load".into(),
        };
        encode_into(&mut out, FrameKind::Hello, 0, &to_body(&hello));
        s.get_mut().write_all(&out).await?;
        let (kind, body) = read_frame(&mut s).await?;
        if kind != FrameKind::Welcome {
            bail!("expected a welcome frame, got {kind:?}");
        }
        if let Reply::Err(e) = from_body::<Reply<Welcome>>("welcome", &body)? {
            bail!("the server refused the connection: {}", e.message);
        }
        Ok(s)
    }

    async fn read_frame(s: &mut BufReader<TcpStream>) -> anyhow::Result<(FrameKind, Vec<u8>)> {
        let len = s.read_u32().await?;
        check_len(len, u32::MAX)?;
        let mut h = [0u8; HEADER_LEN];
        s.read_exact(&mut h).await?;
        let (kind, _) = parse_header(&h)?;
        let mut body = vec![0u8; len as usize - HEADER_LEN];
        s.read_exact(&mut body).await?;
        Ok((kind, body))
    }

    /// Fails unless a reply frame answers the mode's request.
    fn check(cli: &Cli, kind: FrameKind, body: &[u8]) -> anyhow::Result<()> {
        if kind != FrameKind::Reply {
            bail!("expected a reply frame, got {kind:?}");
        }
        match from_body::<Reply<Output>>("reply", body)? {
            Reply::Ok(Output::Unit) if cli.mode == "set" => {}
            Reply::Ok(Output::Value(_)) if cli.mode == "get" => {}
            Reply::Ok(o) => bail!("unexpected answer to {}: {o:?}", cli.mode),
            Reply::Err(e) => bail!("{} failed: {}", cli.mode, e.message),
        }
        Ok(())
    }

    /// One connection: `--pipeline` requests per round trip until its share of `--ops` is done.
    async fn drive(
        mut s: BufReader<TcpStream>,
        cli: Cli,
        t: usize,
        deadline: Option<Instant>,
    ) -> anyhow::Result<(u64, Vec<Duration>)> {
        let mut lat = Vec::new();
        let mut n = 0u64;
        let mut id = 0u64;
        let mut out = Vec::new();
        let keys = cli.ops.clamp(1, 1000);
        // A get's body depends on its key only: encoded once, so the generator spends its time
        // on the sockets, as redis-benchmark does.
        let gets: Vec<Vec<u8>> = match cli.mode.as_str() {
            "get" => (0..keys).map(|k| to_body(&get(&cli, t, k))).collect(),
            _ => Vec::new(),
        };
        while cli.ops == 0 || n < cli.ops {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            out.clear();
            for i in 0..cli.pipeline as u64 {
                id += 1;
                if cli.mode == "set" {
                    encode_msg_into(&mut out, FrameKind::Request, id, &set(&cli, t, n + i));
                } else {
                    encode_into(
                        &mut out,
                        FrameKind::Request,
                        id,
                        &gets[((n + i) % keys) as usize],
                    );
                }
            }
            let t0 = Instant::now();
            s.get_mut().write_all(&out).await?;
            let mut answered = 0;
            while answered < cli.pipeline {
                // Replies already buffered are decoded in place; a partial one is read whole.
                let (kind, body) = match decode_ref(s.buffer(), u32::MAX)? {
                    Some((f, used)) => {
                        check(&cli, f.kind, f.body)?;
                        s.consume(used);
                        answered += 1;
                        continue;
                    }
                    None => read_frame(&mut s).await?,
                };
                check(&cli, kind, &body)?;
                answered += 1;
            }
            lat.push(t0.elapsed());
            n += cli.pipeline as u64;
        }
        Ok((n, lat))
    }
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
