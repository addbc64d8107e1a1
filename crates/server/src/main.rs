//! `stratadb-server`: thin. Parses arguments, calls `strata_server`, prints.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

// A request allocates a few small buffers and frees them on another thread (a reader answers it);
// glibc's malloc spent about a sixth of a pipelined GET's CPU consolidating and relinking chunks
// for that. Redis ships with jemalloc for the same reason.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use strata_server::auth::{keys_path, KeyStore};
use strata_server::{Config, Server};

/// Serve a Strata database over TCP (the protocol of strata-client, docs/format.md §8).
///
/// Prints `listening on ADDR` (and `metrics on ADDR`) on stdout once it accepts connections. Stops
/// gracefully on SIGTERM or SIGINT: no new connections, requests in flight finish, open
/// transactions roll back, the database is checkpointed and closed. Logs go to stderr (RUST_LOG).
#[derive(Parser, Debug)]
#[command(name = "stratadb-server", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// The database folder (created if missing). Its API keys are in server-keys.json inside it.
    #[arg(long, env = "STRATA_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// The port (0: any free port; the address is printed).
    #[arg(long, default_value_t = 9876)]
    port: u16,
    /// The address to listen on. Default 127.0.0.1 (this machine only); 0.0.0.0 exposes the server.
    #[arg(long, default_value = "127.0.0.1")]
    listen: IpAddr,
    /// Development only: serve WITHOUT API keys. Anyone who reaches the port may read and write
    /// everything.
    #[arg(long)]
    open: bool,
    /// Serve Prometheus metrics on this address (for example 127.0.0.1:9877; port 0 allowed).
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Connections served at once; more are refused with a `too_many_connections` error.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// The largest frame read, in bytes.
    #[arg(long, default_value_t = strata_wire::DEFAULT_MAX_FRAME)]
    max_frame: u32,
    /// A transaction waiting this long for its next command is rolled back (milliseconds).
    #[arg(long, default_value_t = 10_000)]
    session_idle_ms: u64,
    /// A transaction open this long is rolled back (milliseconds). Other writers wait at most this.
    #[arg(long, default_value_t = 60_000)]
    session_max_ms: u64,
    /// Threads that run plain reads (gets, lists, reads at a version) for every connection, in
    /// batches. Default: the number of CPUs, from 2 to 8.
    #[arg(long)]
    read_threads: Option<usize>,
    /// MiB of decoded values kept in memory for hot point reads (0: none). Committed versions never
    /// change, so a cached answer is never stale; a commit makes new entries. Hits and misses are in
    /// the metrics.
    #[arg(long, default_value_t = strata_server::DEFAULT_READ_CACHE_MB)]
    read_cache_mb: usize,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Manage API keys (the server re-reads them when it starts).
    #[command(subcommand)]
    Keys(KeysCmd),
}

#[derive(Subcommand, Debug)]
enum KeysCmd {
    /// Create a key and print it once (only its SHA-256 is stored).
    Add {
        /// A name for the key (shown in logs).
        #[arg(long)]
        name: String,
        /// Branches it may read: a name, a prefix ending in `*`, or `*` (repeatable).
        #[arg(long)]
        read: Vec<String>,
        /// Branches it may write, and so read (repeatable).
        #[arg(long)]
        write: Vec<String>,
        /// Print {"key":…,"id":…} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List keys (ids, names and permissions; never secrets).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove keys by id or name.
    Remove {
        /// The key's id or name.
        id_or_name: String,
    },
}

fn raise_fd_limit() {
    // Each connection is a file descriptor: raise the soft limit to the hard one.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Some(data_dir) = cli.data_dir.clone() else {
        anyhow::bail!("--data-dir is required (the database folder)");
    };
    match cli.command {
        Some(Cmd::Keys(k)) => keys(&data_dir, k),
        None => serve(cli, data_dir),
    }
}

fn keys(data_dir: &std::path::Path, cmd: KeysCmd) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let path = keys_path(data_dir);
    let mut store = KeyStore::load(&path)?;
    match cmd {
        KeysCmd::Add {
            name,
            read,
            write,
            json,
        } => {
            if read.is_empty() && write.is_empty() {
                anyhow::bail!(
                    "give the key some access: --read BRANCH and/or --write BRANCH (`*` for all)"
                );
            }
            let (key, rec) = store.add(&name, read, write);
            store.save(&path)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"key": key, "id": rec.id, "name": rec.name, "read": rec.read, "write": rec.write})
                );
            } else {
                println!("{key}");
                eprintln!(
                    "key {} ({}) created; it is shown only once: store it now (STRATA_API_KEY)",
                    rec.id, rec.name
                );
            }
        }
        KeysCmd::List { json } => {
            if json {
                let list: Vec<_> = store
                    .keys()
                    .iter()
                    .map(|k| serde_json::json!({"id": k.id, "name": k.name, "read": k.read, "write": k.write}))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for k in store.keys() {
                    println!(
                        "{}  {}  read={:?} write={:?}",
                        k.id, k.name, k.read, k.write
                    );
                }
            }
        }
        KeysCmd::Remove { id_or_name } => {
            let n = store.remove(&id_or_name);
            if n == 0 {
                anyhow::bail!(
                    "no key has the id or name {id_or_name:?} (see `stratadb-server keys list`)"
                );
            }
            store.save(&path)?;
            println!("removed {n} key(s); a running server drops it for new connections on SIGHUP (kill -HUP PID)");
        }
    }
    Ok(())
}

fn serve(cli: Cli, data_dir: PathBuf) -> anyhow::Result<()> {
    raise_fd_limit();
    // Sync run by the server opens the remotes configured in its database by URL.
    strata_sync::set_connector(std::sync::Arc::new(strata_remotes::Remotes::persistent()));
    let mut config = Config::new(data_dir);
    config.listen = SocketAddr::new(cli.listen, cli.port);
    config.open = cli.open;
    config.metrics = cli.metrics;
    config.max_connections = cli.max_connections;
    config.max_frame = cli.max_frame;
    config.session.idle = Duration::from_millis(cli.session_idle_ms);
    config.session.max = Duration::from_millis(cli.session_max_ms);
    config.read_cache_bytes = cli.read_cache_mb.saturating_mul(1 << 20);
    if let Some(n) = cli.read_threads {
        config.read_threads = n.max(1);
    }
    if cli.open {
        eprintln!("WARNING: --open: this server accepts every connection WITHOUT an API key.");
        eprintln!(
            "WARNING: anyone who can reach {} may read and write every branch. Development only.",
            config.listen
        );
        tracing::warn!("open mode: no authentication");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = Server::bind(config).await?;
        if cli.open {
            let addr = server.local_addr()?;
            eprintln!("WARNING: --open: this server accepts every connection WITHOUT an API key.");
            eprintln!("WARNING: anyone who can reach {addr} may read and write every branch. Development only.");
            tracing::warn!(%addr, "open mode: no authentication");
        }
        // The first stdout line is what scripts and tests wait for.
        println!("listening on {}", server.local_addr()?);
        if let Some(m) = server.metrics_addr() {
            println!("metrics on {m}");
        }
        std::io::Write::flush(&mut std::io::stdout())?;
        tracing::info!(addr = %server.local_addr()?, "serving");
        reload_keys_on_sighup(server.key_reloader());
        server.run(shutdown_signal()).await
    })
}

/// On each SIGHUP, re-reads the key file (new connections see the change).
fn reload_keys_on_sighup(reloader: strata_server::KeyReloader) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGHUP; keys reload only on restart");
            return;
        }
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match reloader.reload().await {
                Ok(n) => tracing::info!(keys = n, "SIGHUP: key file reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: key file not reloaded; the previous keys stay in force")
                }
            }
        }
    });
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
}
