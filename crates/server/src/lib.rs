//! # strata-server
//!
//! `stratadb-server`: one process hosts a Strata database and serves it over TCP with the protocol
//! of `strata-wire` (docs/format.md §8). The engine stays synchronous: every engine call runs on a
//! blocking thread (the read pool's threads, or `spawn_blocking`), never on a runtime worker.
//!
//! ## Layout
//! - this file: [`Config`], [`Server`] (bind, accept loop, connection cap, graceful shutdown) and
//!   the per-connection loop (handshake, frames, dispatch).
//! - `pool`: the read pool and the write pool, which run plain reads and one-shot writes in
//!   batches on dedicated threads (writes with one durable commit per batch).
//! - `session`: transactions spanning many frames, with idle and lifetime limits.
//! - `auth`: API keys (stored hashed) and per-branch permissions.
//! - `metrics`: counters and the Prometheus endpoint.

#![warn(missing_docs, missing_debug_implementations)]

pub mod auth;
pub mod metrics;
mod pool;
pub mod session;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use strata_engine::{Options, Strata};
use strata_wire::{
    check_len, from_body, parse_header, to_body, Command, ErrorCode, FrameError, FrameKind, Hello,
    Output, Reply, Welcome, WireError, HEADER_LEN, MAGIC, PROTOCOL_VERSION,
};
use tokio::io::{
    AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use auth::{KeyStore, Principal};
use metrics::Metrics;
use session::{Limits, Session};

/// How the server runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The database folder (created if missing).
    pub data_dir: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Serve without keys (development only).
    pub open: bool,
    /// The largest frame read.
    pub max_frame: u32,
    /// Connections served at once; more are refused.
    pub max_connections: usize,
    /// Transaction limits.
    pub session: Limits,
    /// How long a new connection has to complete the handshake.
    pub handshake_timeout: Duration,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Threads of the read pool (plain reads of every connection run there).
    pub read_threads: usize,
    /// Bytes of decoded values kept in memory for point reads (0: none); see
    /// `strata_engine::Options::read_cache_bytes`.
    pub read_cache_bytes: usize,
}

/// The value cache's default size, in MiB.
pub const DEFAULT_READ_CACHE_MB: usize = 64;

impl Config {
    /// Defaults for `data_dir`: 127.0.0.1:9876, keys required, 8 MiB frames, 1024 connections,
    /// transactions rolled back after 10 s idle or 60 s open.
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 9876)),
            open: false,
            max_frame: strata_wire::DEFAULT_MAX_FRAME,
            max_connections: 1024,
            session: Limits {
                idle: Duration::from_secs(10),
                max: Duration::from_secs(60),
            },
            handshake_timeout: Duration::from_secs(10),
            metrics: None,
            read_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .clamp(2, 8),
            read_cache_bytes: DEFAULT_READ_CACHE_MB << 20,
        }
    }
}

struct Shared {
    db: Strata,
    /// Where bundles in transfer live (`server-tmp` in the data folder, emptied at start).
    tmp: PathBuf,
    /// Replaced whole by [`KeyReloader::reload`] (SIGHUP); a connection keeps the key it
    /// authenticated with.
    keys: Arc<std::sync::RwLock<KeyStore>>,
    config: Config,
    metrics: Arc<Metrics>,
    reads: pool::Pool,
    writes: pool::Pool,
}

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .finish()
    }
}

impl Server {
    /// Opens the database and binds the listeners. Fails when no key exists and `open` is off.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        let keys = KeyStore::load(&auth::keys_path(&config.data_dir))?;
        if !config.open && keys.is_empty() {
            anyhow::bail!(
                "no API keys in {}: create one with `stratadb-server keys add --data-dir {} --name NAME --write '*'`, or start with --open for development",
                auth::keys_path(&config.data_dir).display(),
                config.data_dir.display()
            );
        }
        // A writer waits for another's transaction at most as long as a transaction may stay open.
        let opts = Options {
            busy_timeout: config.session.max + Duration::from_secs(5),
            read_cache_bytes: config.read_cache_bytes,
            ..Options::default()
        };
        let dir = config.data_dir.clone();
        let tmp = config.data_dir.join("server-tmp");
        let tmp2 = tmp.clone();
        let db = tokio::task::spawn_blocking(move || -> anyhow::Result<Strata> {
            let db = Strata::open_with(dir, opts)?;
            // Transfers left by a previous run (a crash) are dropped.
            let _ = std::fs::remove_dir_all(&tmp2);
            std::fs::create_dir_all(&tmp2)?;
            Ok(db)
        })
        .await??;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let metrics_listener = match config.metrics {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot serve metrics on {a}: {e}"))?,
            ),
            None => None,
        };
        let reads = pool::Pool::start(
            db.clone(),
            config.read_threads,
            "strata-reader",
            strata_wire::execute_reads,
        )?;
        let writes =
            pool::Pool::start(db.clone(), 1, "strata-writer", strata_wire::execute_writes)?;
        Ok(Server {
            listener,
            metrics_listener,
            shared: Arc::new(Shared {
                reads,
                writes,
                db,
                tmp,
                keys: Arc::new(std::sync::RwLock::new(keys)),
                config,
                metrics: Arc::new(Metrics::default()),
            }),
        })
    }

    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that re-reads the key file (what `stratadb-server` does on SIGHUP).
    pub fn key_reloader(&self) -> KeyReloader {
        KeyReloader {
            keys: self.shared.keys.clone(),
            path: auth::keys_path(&self.shared.config.data_dir),
        }
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets each connection finish the
    /// request it is running, rolls back open transactions, checkpoints the WAL into the database
    /// file, closes the database and returns.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        let Server {
            listener,
            metrics_listener,
            shared,
        } = self;
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        if let Some(l) = metrics_listener {
            tracker.spawn(metrics::serve(
                l,
                shared.metrics.clone(),
                shared.db.clone(),
                stop.clone(),
            ));
        }
        let permits = Arc::new(Semaphore::new(shared.config.max_connections));
        // Refusals read the hello before answering (so the client reads the answer rather than a
        // reset); at most this many at once, past that a connection is just closed.
        let refusals = Arc::new(Semaphore::new(256));
        let mut backoff = Duration::from_millis(10);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                r = listener.accept() => match r {
                    Ok(x) => { backoff = Duration::from_millis(10); x }
                    Err(e) => {
                        // Out of file descriptors, for example: wait and try again.
                        tracing::warn!(error = %e, "accept failed; retrying in {backoff:?}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let shared = shared.clone();
                    let stop = stop.clone();
                    tracker.spawn(async move {
                        shared.metrics.connections_total.fetch_add(1, Relaxed);
                        shared.metrics.connections_open.fetch_add(1, Relaxed);
                        serve_connection(stream, peer, &shared, stop).await;
                        shared.metrics.connections_open.fetch_sub(1, Relaxed);
                        drop(permit);
                    });
                }
                Err(_) => {
                    shared.metrics.connections_refused.fetch_add(1, Relaxed);
                    tracing::warn!(%peer, max = shared.config.max_connections, "connection refused: at the cap");
                    if let Ok(p) = refusals.clone().try_acquire_owned() {
                        let max = shared.config.max_connections;
                        tracker.spawn(async move {
                            refuse(stream, max).await;
                            drop(p);
                        });
                    }
                }
            }
        }
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        drop(listener);
        stop.cancel();
        tracker.close();
        tracker.wait().await;
        // Every connection task has ended (and with it every blocking call it awaited).
        let db = shared.db.clone();
        let readers = shared.clone();
        tokio::task::spawn_blocking(move || {
            readers.reads.stop();
            readers.writes.stop();
        })
        .await?;
        drop(shared);
        let checkpointed = tokio::task::spawn_blocking(move || {
            let r = db.checkpoint();
            drop(db);
            r
        })
        .await??;
        tracing::info!(
            checkpointed,
            "database checkpointed and closed; shutdown complete"
        );
        Ok(())
    }
}

/// Re-reads `server-keys.json` into a running server (SIGHUP, like Redis's `ACL LOAD` or nginx's
/// reload): keys added since are accepted and removed ones refused, for new connections; a
/// connection keeps the key it authenticated with until it closes. A key file that cannot be read
/// or parsed changes nothing.
#[derive(Clone, Debug)]
pub struct KeyReloader {
    keys: Arc<std::sync::RwLock<KeyStore>>,
    path: PathBuf,
}

impl KeyReloader {
    /// Reloads the key file (on a blocking thread); returns how many keys it holds now.
    pub async fn reload(&self) -> anyhow::Result<usize> {
        let path = self.path.clone();
        let fresh = tokio::task::spawn_blocking(move || KeyStore::load(&path)).await??;
        let n = fresh.keys().len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(n)
    }
}

/// Answers a connection past the cap with `too_many_connections` and closes it.
async fn refuse(mut stream: TcpStream, max: usize) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut pre = [0u8; 8];
        stream.read_exact(&mut pre).await?;
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len);
        if len as usize <= 64 * 1024 {
            let mut rest = vec![0u8; len as usize];
            stream.read_exact(&mut rest).await?;
        }
        std::io::Result::Ok(())
    })
    .await;
    let err = WireError::new(
        ErrorCode::TooManyConnections,
        format!("the server holds its maximum of {max} connections; retry later, use fewer connections, or raise --max-connections"),
    );
    let frame = strata_wire::encode(FrameKind::Welcome, 0, &to_body(&Reply::<Welcome>::Err(err)));
    let _ = stream.write_all(&frame).await;
    let _ = stream.shutdown().await;
}

const CAPABILITIES: &[&str] = &[
    "kv",
    "json",
    "events",
    "state",
    "transactions",
    "branches",
    "diff",
    "merge",
    "log",
    "history",
    "pipelining",
    strata_wire::CAP_ADMIN,
];

/// What reading a frame gave.
enum Incoming {
    Request(u64, Command),
    /// Too large: its body was skipped; answer and go on.
    TooLarge(u64, WireError),
    /// Not a frame of this protocol: answer and close.
    Malformed(u64, WireError),
    /// The peer closed the connection between frames.
    Closed,
}

fn malformed(e: impl std::fmt::Display) -> WireError {
    WireError::new(
        ErrorCode::Malformed,
        format!("{e}; the server closes this connection"),
    )
}

async fn read_request<R: AsyncRead + Unpin>(rd: &mut R, max: u32) -> std::io::Result<Incoming> {
    let mut len = [0u8; 4];
    // A clean close is EOF before the first byte of a frame.
    let n = rd.read(&mut len).await?;
    if n == 0 {
        return Ok(Incoming::Closed);
    }
    rd.read_exact(&mut len[n..]).await?;
    let len = u32::from_be_bytes(len);
    match check_len(len, max) {
        Ok(()) => {}
        Err(FrameError::TooLarge { len, max }) => {
            let mut h = [0u8; HEADER_LEN];
            rd.read_exact(&mut h).await?;
            let id = match parse_header(&h) {
                Ok((_, id)) => id,
                Err(e) => return Ok(Incoming::Malformed(0, malformed(e))),
            };
            // Skip the body without holding it: the connection stays usable.
            let skip = (len as u64) - HEADER_LEN as u64;
            let copied = tokio::io::copy(&mut rd.take(skip), &mut tokio::io::sink()).await?;
            if copied < skip {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            return Ok(Incoming::TooLarge(
                id,
                WireError::new(
                    ErrorCode::TooLarge,
                    format!("frame of {len} bytes is over this server's {max}-byte cap; nothing was done. Split the value or raise --max-frame"),
                ),
            ));
        }
        Err(e) => return Ok(Incoming::Malformed(0, malformed(e))),
    }
    let mut h = [0u8; HEADER_LEN];
    rd.read_exact(&mut h).await?;
    let (kind, id) = match parse_header(&h) {
        Ok(x) => x,
        Err(e) => return Ok(Incoming::Malformed(0, malformed(e))),
    };
    if kind != FrameKind::Request {
        return Ok(Incoming::Malformed(
            id,
            malformed(format!("expected a request frame, got {kind:?}")),
        ));
    }
    let mut body = vec![0u8; len as usize - HEADER_LEN];
    rd.read_exact(&mut body).await?;
    match from_body::<Command>("request", &body) {
        Ok(cmd) => Ok(Incoming::Request(id, cmd)),
        Err(e) => Ok(Incoming::Malformed(id, malformed(e.message))),
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(
    wr: &mut W,
    kind: FrameKind,
    id: u64,
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(4 + HEADER_LEN);
    strata_wire::encode_into(&mut head, kind, id, &[]);
    let len = (HEADER_LEN + body.len()) as u32;
    head[..4].copy_from_slice(&len.to_be_bytes());
    wr.write_all(&head).await?;
    wr.write_all(body).await
}

/// Reads the preamble and hello; returns who is calling, or the refusal.
async fn handshake<R: AsyncRead + Unpin>(
    rd: &mut R,
    shared: &Shared,
) -> std::io::Result<Result<(Principal, String), WireError>> {
    let mut pre = [0u8; 8];
    rd.read_exact(&mut pre).await?;
    if pre[..6] != MAGIC {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a Strata client (bad magic)",
        ));
    }
    let proto = u16::from_be_bytes([pre[6], pre[7]]);
    let mut len = [0u8; 4];
    rd.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len);
    // A hello is small: cap it well below the frame cap.
    if let Err(e) = check_len(len, 64 * 1024) {
        return Ok(Err(malformed(e)));
    }
    let mut h = [0u8; HEADER_LEN];
    rd.read_exact(&mut h).await?;
    match parse_header(&h) {
        Ok((FrameKind::Hello, _)) => {}
        Ok((k, _)) => return Ok(Err(malformed(format!("expected a hello frame, got {k:?}")))),
        Err(e) => return Ok(Err(malformed(e))),
    }
    let mut body = vec![0u8; len as usize - HEADER_LEN];
    rd.read_exact(&mut body).await?;
    if proto != PROTOCOL_VERSION {
        return Ok(Err(WireError::new(
            ErrorCode::UnsupportedProtocol,
            format!("this server speaks protocol {PROTOCOL_VERSION}, the client {proto}; use a matching strata-client"),
        )));
    }
    let hello: Hello = match from_body("hello", &body) {
        Ok(h) => h,
        Err(e) => return Ok(Err(malformed(e.message))),
    };
    let principal = if shared.config.open {
        Principal::Open
    } else {
        match hello.api_key.as_deref() {
            None => {
                return Ok(Err(WireError::new(
                    ErrorCode::Unauthorized,
                    "this server needs an API key: set STRATA_API_KEY (or ClientOptions::api_key)",
                )))
            }
            Some(k) => match shared
                .keys
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .verify(k)
                .cloned()
            {
                Some(rec) => Principal::Key(rec),
                None => {
                    return Ok(Err(WireError::new(
                        ErrorCode::Unauthorized,
                        "the API key is not valid for this server; check STRATA_API_KEY, or create a key with `stratadb-server keys add`",
                    )))
                }
            },
        }
    };
    Ok(Ok((principal, hello.client_name)))
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    stop: CancellationToken,
) {
    let (rd, wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut wr = BufWriter::new(wr);
    let hs = tokio::select! {
        _ = stop.cancelled() => return,
        r = tokio::time::timeout(shared.config.handshake_timeout, handshake(&mut rd, shared)) => r,
    };
    let (principal, client) = match hs {
        Ok(Ok(Ok(p))) => p,
        Ok(Ok(Err(refusal))) => {
            shared.metrics.handshakes_refused.fetch_add(1, Relaxed);
            tracing::info!(%peer, code = ?refusal.code, "handshake refused");
            let body = to_body(&Reply::<Welcome>::Err(refusal));
            let _ = write_frame(&mut wr, FrameKind::Welcome, 0, &body).await;
            let _ = wr.flush().await;
            let _ = wr.shutdown().await;
            return;
        }
        Ok(Err(e)) => {
            shared.metrics.handshakes_refused.fetch_add(1, Relaxed);
            tracing::info!(%peer, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "handshake timed out");
            return;
        }
    };
    let welcome = Welcome {
        server_version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: PROTOCOL_VERSION,
        capabilities: CAPABILITIES
            .iter()
            .map(|s| s.to_string())
            .chain([if shared.config.open { "open" } else { "auth" }.to_string()])
            .collect(),
        max_frame: shared.config.max_frame,
        session_idle_ms: shared.config.session.idle.as_millis() as u64,
    };
    if write_frame(
        &mut wr,
        FrameKind::Welcome,
        0,
        &to_body(&Reply::Ok(welcome)),
    )
    .await
    .is_err()
        || wr.flush().await.is_err()
    {
        return;
    }
    tracing::debug!(%peer, %client, key = principal.name(), "connected");
    let mut session: Option<Session> = None;
    let mut transfers = Transfers::default();
    let max_frame = shared.config.max_frame;
    let mut out = Vec::new();
    'conn: loop {
        let first = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = read_request(&mut rd, max_frame) => r,
        };
        // Every request already buffered joins this round: pipelined requests are read, run and
        // answered together, with one flush.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH
            && matches!(
                batch.last(),
                Some(Ok(Incoming::Request(..) | Incoming::TooLarge(..)))
            )
            && frame_buffered(rd.buffer(), max_frame)
        {
            let next = match take_buffered(&mut rd, max_frame) {
                Some(incoming) => Ok(incoming),
                None => read_request(&mut rd, max_frame).await,
            };
            batch.push(next);
        }
        let mut items = batch.into_iter().peekable();
        let mut close = false;
        while let Some(incoming) = items.next() {
            let answers = match incoming {
                Ok(Incoming::Request(id, cmd))
                    if pool::is_plain_read(&cmd) || pool::is_plain_write(&cmd) =>
                {
                    // This request and those of its kind right after it go to their pool as
                    // one job.
                    let reads = pool::is_plain_read(&cmd);
                    let kind = if reads {
                        pool::is_plain_read
                    } else {
                        pool::is_plain_write
                    };
                    let mut run = vec![(id, cmd)];
                    while let Some(Ok(Incoming::Request(_, c))) = items.peek() {
                        if !kind(c) {
                            break;
                        }
                        let Some(Ok(Incoming::Request(id, c))) = items.next() else {
                            unreachable!("peeked a request")
                        };
                        run.push((id, c));
                    }
                    let pool = if reads { &shared.reads } else { &shared.writes };
                    pool_run(pool, run, &principal, shared).await
                }
                Ok(Incoming::Request(id, cmd)) => {
                    let name = cmd.name();
                    let answer = match cmd {
                        c @ (Command::SyncPush { .. }
                        | Command::SyncPull { .. }
                        | Command::SyncFetch { .. }
                        | Command::SyncStatus { .. }
                        | Command::SyncRemotes) => sync(c, &principal, shared).await,
                        c @ (Command::BundleExport { .. }
                        | Command::BundleRead { .. }
                        | Command::BundleUpload { .. }
                        | Command::BundleImport { .. }
                        | Command::BundleClose { .. }) => {
                            transfer(c, &principal, &mut transfers, shared).await
                        }
                        c => dispatch(c, &principal, &mut session, shared).await,
                    };
                    shared.metrics.request(name, outcome(&answer));
                    vec![(id, answer)]
                }
                Ok(Incoming::TooLarge(id, e)) => {
                    shared.metrics.frames_too_large.fetch_add(1, Relaxed);
                    vec![(id, Err(e))]
                }
                Ok(Incoming::Malformed(id, e)) => {
                    shared.metrics.frames_malformed.fetch_add(1, Relaxed);
                    tracing::info!(%peer, error = %e.message, "malformed frame; closing the connection");
                    close = true;
                    vec![(id, Err(e))]
                }
                Ok(Incoming::Closed) => break 'conn,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "connection broke");
                    break 'conn;
                }
            };
            for (id, answer) in answers {
                let reply = match answer {
                    Ok(o) => Reply::Ok(o),
                    Err(e) => Reply::Err(e),
                };
                strata_wire::encode_msg_into(&mut out, FrameKind::Reply, id, &reply);
                // Large answers (bundle chunks) go out as they come, not held for the round.
                if out.len() > MAX_KEPT_OUT {
                    let failed = wr.write_all(&out).await.is_err();
                    out.clear();
                    if failed {
                        break 'conn;
                    }
                }
            }
            if close {
                break;
            }
        }
        // The round's replies, encoded one after another, leave in one write.
        let failed = wr.write_all(&out).await.is_err() || wr.flush().await.is_err();
        out.clear();
        if failed {
            break;
        }
        if out.capacity() > MAX_KEPT_OUT {
            out = Vec::new();
        }
        if close {
            let _ = wr.shutdown().await;
            break;
        }
    }
    // Replies of a round cut short by the peer closing still go out.
    if !out.is_empty() {
        let _ = wr.write_all(&out).await;
    }
    if let Some(s) = session.take() {
        s.close().await;
    }
    let files: Vec<PathBuf> = transfers.files.into_values().collect();
    if !files.is_empty() {
        let _ = tokio::task::spawn_blocking(move || {
            for f in files {
                let _ = std::fs::remove_file(f);
            }
        })
        .await;
    }
    let _ = wr.flush().await;
    tracing::debug!(%peer, "disconnected");
}

/// Most requests read from a connection's buffer and answered in one round.
const MAX_BATCH: usize = 64;

/// Largest reply buffer a connection keeps between rounds (a large answer's is dropped).
const MAX_KEPT_OUT: usize = 64 * 1024;

/// Takes a whole, well-formed request frame from the reader's buffer, decoding it in place.
/// `None` when the buffer does not start with one: [`read_request`] then reads it (and names
/// whatever is wrong with it).
fn take_buffered<R: AsyncRead + Unpin>(rd: &mut BufReader<R>, max: u32) -> Option<Incoming> {
    let (frame, used) = strata_wire::decode_ref(rd.buffer(), max).ok()??;
    if frame.kind != FrameKind::Request {
        return None;
    }
    let cmd = from_body::<Command>("request", frame.body).ok()?;
    let id = frame.id;
    std::pin::Pin::new(rd).consume(used);
    Some(Incoming::Request(id, cmd))
}

/// Whether `buf` starts with a whole frame that a read would take without waiting on the socket.
fn frame_buffered(buf: &[u8], max: u32) -> bool {
    let Some(len) = buf.get(..4) else {
        return false;
    };
    let len = u32::from_be_bytes(len.try_into().expect("4 bytes"));
    // A frame over the cap is skipped, not buffered: leave it to the next round.
    len <= max && buf.len() >= 4 + len as usize
}

/// The metrics label of an answer.
fn outcome(answer: &Result<Output, WireError>) -> &'static str {
    match answer {
        Ok(_) => "ok",
        Err(e) => code_name(e.code),
    }
}

/// Authorizes a run of requests and runs those allowed as one job of `pool`; answers in request
/// order.
async fn pool_run(
    pool: &pool::Pool,
    run: Vec<(u64, Command)>,
    principal: &Principal,
    shared: &Shared,
) -> Vec<(u64, Result<Output, WireError>)> {
    let mut names = Vec::with_capacity(run.len());
    let mut refused = Vec::with_capacity(run.len());
    let mut allowed = Vec::with_capacity(run.len());
    for (id, cmd) in run {
        names.push((id, cmd.name()));
        match principal.authorize(&cmd) {
            Ok(()) => {
                refused.push(None);
                allowed.push(cmd);
            }
            Err(e) => refused.push(Some(e)),
        }
    }
    let mut answers = if allowed.is_empty() {
        Vec::new()
    } else {
        pool.run(allowed).await
    }
    .into_iter();
    let out: Vec<(u64, Result<Output, WireError>)> = names
        .iter()
        .zip(refused)
        .map(|(&(id, _), refused)| {
            let answer = match refused {
                Some(e) => Err(e),
                None => answers.next().unwrap_or_else(|| {
                    Err(WireError::new(
                        ErrorCode::Internal,
                        "the request got no answer",
                    ))
                }),
            };
            (id, answer)
        })
        .collect();
    shared.metrics.requests(
        names
            .iter()
            .zip(&out)
            .map(|(&(_, name), (_, answer))| (name, outcome(answer))),
    );
    out
}

fn code_name(c: ErrorCode) -> &'static str {
    match c {
        ErrorCode::Unauthorized => "unauthorized",
        ErrorCode::Forbidden => "forbidden",
        ErrorCode::TooLarge => "too_large",
        ErrorCode::Malformed => "malformed",
        ErrorCode::SessionExpired => "session_expired",
        ErrorCode::NoTransaction => "no_transaction",
        ErrorCode::TransactionOpen => "transaction_open",
        ErrorCode::BranchNotFound => "branch_not_found",
        ErrorCode::Conflict => "conflict",
        ErrorCode::MergeConflicts => "merge_conflicts",
        _ => "error",
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WireError> + Send + 'static,
) -> Result<T, WireError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(WireError::new(
            ErrorCode::Internal,
            format!("request failed: {e}"),
        ))
    })
}

async fn dispatch(
    cmd: Command,
    principal: &Principal,
    session: &mut Option<Session>,
    shared: &Shared,
) -> Result<Output, WireError> {
    principal.authorize(&cmd)?;
    match cmd {
        Command::Begin { branch } => {
            if session.is_some() {
                return Err(WireError::new(
                    ErrorCode::TransactionOpen,
                    "this connection already has a transaction open: commit or roll it back first",
                ));
            }
            let (s, out) = Session::begin(
                shared.db.clone(),
                branch,
                shared.config.session,
                shared.metrics.clone(),
            )
            .await?;
            *session = Some(s);
            Ok(out)
        }
        c if c.in_session() => {
            let Some(s) = session.as_ref() else {
                return Err(WireError::new(
                    ErrorCode::NoTransaction,
                    format!("{} needs an open transaction: begin one first", c.name()),
                ));
            };
            let (answer, over) = s.call(c).await;
            if over {
                if let Some(s) = session.take() {
                    s.close().await;
                }
            }
            answer
        }
        // Remotes, and sync with options: strata-sync's async functions on this runtime (their
        // engine and file work goes to blocking threads).
        c if strata_client::admin::serves(&c) => strata_client::admin::run(&shared.db, c).await,
        Command::ListBranches { include_internal } => {
            let db = shared.db.clone();
            let out = blocking(move || {
                strata_wire::execute(&db, Command::ListBranches { include_internal })
            })
            .await?;
            match out {
                Output::Branches(b) => Ok(Output::Branches(
                    b.into_iter()
                        .filter(|b| principal.can_read(&b.name))
                        .collect(),
                )),
                o => Ok(o),
            }
        }
        c => {
            let db = shared.db.clone();
            blocking(move || strata_wire::execute(&db, c)).await
        }
    }
}

/// The bundles a connection is moving: handle → file in `server-tmp`.
#[derive(Default)]
struct Transfers {
    files: std::collections::HashMap<String, PathBuf>,
}

fn unknown_transfer(handle: &str) -> WireError {
    WireError::new(
        ErrorCode::InvalidOperation,
        format!("no transfer {handle:?} on this connection (transfers end with their connection)"),
    )
}

fn io_error(e: std::io::Error) -> WireError {
    WireError::new(ErrorCode::Storage, format!("server file error: {e}"))
}

/// Bundle export (then chunked reads) and upload (chunked writes, then import).
async fn transfer(
    cmd: Command,
    principal: &Principal,
    transfers: &mut Transfers,
    shared: &Shared,
) -> Result<Output, WireError> {
    principal.authorize(&cmd)?;
    match cmd {
        Command::BundleExport { branch, range } => {
            // Internal branches hold sync state and remote configurations (tokens): never exported.
            strata_engine::names::validate_branch_name(&branch, false)
                .map_err(strata_wire::engine_error)?;
            let handle = uuid::Uuid::new_v4().simple().to_string();
            let path = shared.tmp.join(format!("{handle}.branchbundle.tar.zst"));
            let db = shared.db.clone();
            let p = path.clone();
            let (manifest, size) = blocking(move || {
                let m = db
                    .export_bundle(&branch, range, &p)
                    .map_err(strata_wire::engine_error)?;
                let size = std::fs::metadata(&p).map_err(io_error)?.len();
                Ok((m, size))
            })
            .await?;
            transfers.files.insert(handle.clone(), path);
            Ok(Output::Transfer {
                handle,
                size,
                manifest: Some(manifest),
            })
        }
        Command::BundleRead {
            handle,
            offset,
            len,
        } => {
            let path = transfers
                .files
                .get(&handle)
                .ok_or_else(|| unknown_transfer(&handle))?
                .clone();
            // Leave room for the reply's header and envelope under the frame cap.
            let len = len.min(shared.config.max_frame.saturating_sub(1024) as u64);
            blocking(move || {
                use std::io::{Read, Seek};
                let mut f = std::fs::File::open(&path).map_err(io_error)?;
                f.seek(std::io::SeekFrom::Start(offset)).map_err(io_error)?;
                let mut buf = Vec::with_capacity(len as usize);
                f.take(len).read_to_end(&mut buf).map_err(io_error)?;
                Ok(Output::Chunk(strata_wire::Blob(buf)))
            })
            .await
        }
        Command::BundleUpload { handle, data } => {
            let handle = handle.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
            let path = match transfers.files.get(&handle) {
                Some(p) => p.clone(),
                None => {
                    let p = shared.tmp.join(format!("{handle}.upload"));
                    if handle.len() != 32 || !handle.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(unknown_transfer(&handle));
                    }
                    transfers.files.insert(handle.clone(), p.clone());
                    p
                }
            };
            let size = blocking(move || {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io_error)?;
                f.write_all(&data.0).map_err(io_error)?;
                Ok(f.metadata().map_err(io_error)?.len())
            })
            .await?;
            Ok(Output::Transfer {
                handle,
                size,
                manifest: None,
            })
        }
        Command::BundleImport { handle, target } => {
            let path = transfers
                .files
                .remove(&handle)
                .ok_or_else(|| unknown_transfer(&handle))?;
            let db = shared.db.clone();
            let principal = principal.clone();
            blocking(move || {
                let r = (|| {
                    let m = strata_engine::bundle::verify_bundle(&path)
                        .map_err(strata_wire::engine_error)?;
                    let branch = target.clone().unwrap_or(m.branch);
                    principal.check_write(&branch)?;
                    db.import_bundle(&path, Some(&branch))
                        .map_err(strata_wire::engine_error)
                })();
                let _ = std::fs::remove_file(&path);
                r.map(Output::Imported)
            })
            .await
        }
        Command::BundleClose { handle } => {
            if let Some(p) = transfers.files.remove(&handle) {
                blocking(move || std::fs::remove_file(&p).map_err(io_error)).await?;
            }
            Ok(Output::Unit)
        }
        c => Err(WireError::new(
            ErrorCode::Internal,
            format!("{} is not a transfer command", c.name()),
        )),
    }
}

fn sync_report<T: serde::Serialize>(r: strata_sync::Result<T>) -> Result<Output, WireError> {
    let r = r.map_err(strata_client::sync_error)?;
    let json = serde_json::to_value(&r).map_err(|e| {
        WireError::new(
            ErrorCode::Internal,
            format!("cannot encode the report: {e}"),
        )
    })?;
    Ok(Output::Report(strata_engine::Value::from_json(&json)))
}

/// Push, pull, fetch and status, run by the server on its database against the remotes configured
/// in it (clients name a remote; they cannot add one, so a client never makes the server write
/// somewhere new). strata-sync's async functions do their engine and file work on blocking threads.
async fn sync(cmd: Command, principal: &Principal, shared: &Shared) -> Result<Output, WireError> {
    use strata_sync::SyncExt;
    principal.authorize(&cmd)?;
    let db = &shared.db;
    match cmd {
        Command::SyncPush { remote, branch } => sync_report(db.push(&remote, &branch).await),
        Command::SyncPull {
            remote,
            branch,
            strict,
        } => {
            let opts = strata_sync::PullOptions {
                strategy: if strict {
                    strata_engine::MergeStrategy::Strict
                } else {
                    strata_engine::MergeStrategy::LastWriterWins
                },
                ..Default::default()
            };
            sync_report(db.pull_with(&remote, &branch, &opts).await)
        }
        Command::SyncFetch { remote, branch } => sync_report(db.fetch(&remote, &branch).await),
        Command::SyncStatus { remote, branch } => {
            sync_report(db.sync_status(&remote, &branch).await)
        }
        Command::SyncRemotes => {
            let db = db.clone();
            blocking(move || {
                db.remote_list()
                    .map(|l| Output::Names(l.into_iter().map(|r| r.name).collect()))
                    .map_err(strata_client::sync_error)
            })
            .await
        }
        c => Err(WireError::new(
            ErrorCode::Internal,
            format!("{} is not a sync command", c.name()),
        )),
    }
}
