//! `stratahub`: serve a hub, or make its first key. Thin: parse, call the library, print.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use strata_hub::{Hub, HubConfig, Store};
use strata_remote::{Connector, Remote};

/// StrataHub: stores Strata remotes' blobs and cursors for projects, behind API keys, on any remote
/// storage (a folder, s3://, gs://, az://). It never opens a database.
#[derive(Parser, Debug)]
#[command(name = "stratahub", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the API and the web page
    Serve {
        /// Where everything is stored: a folder path, s3://bucket/prefix, gs://…, az://…
        #[arg(long, env = "STRATAHUB_STORAGE")]
        storage: String,
        /// Storage options KEY=VALUE (bucket endpoint, region…), as for `strata remote add -o`
        #[arg(short = 'o', long = "storage-option", value_name = "KEY=VALUE")]
        storage_options: Vec<String>,
        /// Address to listen on (port 0 picks a free port; the address is printed on stdout)
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// No authentication at all: anyone may do anything (development only)
        #[arg(long)]
        open: bool,
        /// The largest blob accepted, in bytes (larger uploads get 413)
        #[arg(long, default_value_t = 8 << 30)]
        max_blob_bytes: u64,
        /// Seconds the hub may spend answering a request, not counting the time spent receiving its
        /// body, whose pauses --body-timeout bounds (beyond: 503 with code "timeout")
        #[arg(long, default_value_t = 60.0, value_name = "SECS", value_parser = seconds)]
        request_timeout: f64,
        /// Seconds a client has to send a request's headers, counted from the connection opening or
        /// the previous response, so also the keep-alive idle timeout (beyond: the connection is closed)
        #[arg(long, default_value_t = 30.0, value_name = "SECS", value_parser = seconds)]
        header_timeout: f64,
        /// The longest pause, in seconds, inside a request body (beyond: 408 with code "timeout",
        /// nothing stored) or while a client reads a response (beyond: the connection is closed)
        #[arg(long, default_value_t = 30.0, value_name = "SECS", value_parser = seconds)]
        body_timeout: f64,
        /// Connections served at once; one more is answered 503 with code "overloaded" and
        /// `Retry-After: 1`, then closed
        #[arg(long, default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_connections: u32,
    },
    /// Manage API keys directly in the storage (bootstrap the first admin key)
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCmd {
    /// Create a key and print it once (only its hash is stored)
    Create {
        /// Where the hub stores everything (as for `serve --storage`)
        #[arg(long, env = "STRATAHUB_STORAGE")]
        storage: String,
        /// Storage options KEY=VALUE
        #[arg(short = 'o', long = "storage-option", value_name = "KEY=VALUE")]
        storage_options: Vec<String>,
        /// An admin key may create keys and projects and see every project
        #[arg(long)]
        admin: bool,
        /// A label for the key
        #[arg(long, default_value = "admin")]
        name: String,
        /// Print JSON ({"id", "key", ...})
        #[arg(long)]
        json: bool,
    },
}

/// A positive, finite number of seconds.
fn seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 * 365.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds above 0")),
    }
}

fn options(list: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for o in list {
        let Some((k, v)) = o.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!("storage option {o:?} is not KEY=VALUE");
        };
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn storage(url: &str, opts: &[String]) -> anyhow::Result<Arc<dyn Remote>> {
    let remotes = strata_remotes::Remotes::persistent();
    remotes
        .open(url, &options(opts)?)
        .map_err(|e| anyhow::anyhow!(e.report()))
        .with_context(|| format!("cannot open the storage {url:?}"))
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Serve {
            storage: url,
            storage_options,
            listen,
            open,
            max_blob_bytes,
            request_timeout,
            header_timeout,
            body_timeout,
            max_connections,
        } => {
            let remote = storage(&url, &storage_options)?;
            if open {
                tracing::warn!(
                    "--open: NO AUTHENTICATION. Anyone who can reach {listen} may read, write and \
                     delete every project. Use this for development only."
                );
                eprintln!("WARNING: stratahub is running with --open: no authentication at all");
            }
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let addr = listener.local_addr()?;
            let hub = Hub::new(
                remote,
                HubConfig {
                    open,
                    max_blob_bytes,
                    request_timeout: Duration::from_secs_f64(request_timeout),
                    header_timeout: Duration::from_secs_f64(header_timeout),
                    body_timeout: Duration::from_secs_f64(body_timeout),
                    max_connections: max_connections as usize,
                    ..HubConfig::default()
                },
            );
            tracing::info!(%addr, storage = %url, "stratahub serving");
            println!("stratahub listening on http://{addr}");
            std::io::stdout().flush()?;
            hub.serve(listener, strata_hub::shutdown_signal()).await?;
            tracing::info!("stopped");
            Ok(())
        }
        Cmd::Keys {
            cmd:
                KeysCmd::Create {
                    storage: url,
                    storage_options,
                    admin,
                    name,
                    json,
                },
        } => {
            let store = Store::new(storage(&url, &storage_options)?);
            let k = store
                .create_key(&name, admin)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"id": k.doc.id, "name": k.doc.name, "admin": k.doc.admin, "key": k.key})
                );
            } else {
                println!("{}", k.key);
                eprintln!(
                    "created {}key {} ({}); it is shown only this once",
                    if admin { "admin " } else { "" },
                    k.doc.id,
                    k.doc.name
                );
            }
            Ok(())
        }
    }
}
