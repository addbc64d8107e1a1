//! Counters and gauges, served as Prometheus text on `--metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The server's numbers.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused: the cap was reached.
    pub connections_refused: AtomicU64,
    /// Handshakes refused (bad key, bad protocol).
    pub handshakes_refused: AtomicU64,
    /// Frames refused as over the cap.
    pub frames_too_large: AtomicU64,
    /// Connections closed for malformed frames.
    pub frames_malformed: AtomicU64,
    /// Transactions open now.
    pub sessions_open: AtomicU64,
    /// Transactions rolled back by the idle timeout or lifetime cap.
    pub sessions_expired: AtomicU64,
    /// Transactions rolled back because their connection closed.
    pub sessions_abandoned: AtomicU64,
    requests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    /// Counts one request by command name and outcome (`ok` or an error code).
    pub fn request(&self, command: &'static str, outcome: &'static str) {
        self.requests([(command, outcome)]);
    }

    /// Counts a batch of requests under one lock.
    pub fn requests(&self, each: impl IntoIterator<Item = (&'static str, &'static str)>) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for key in each {
            *m.entry(key).or_default() += 1;
        }
    }

    /// The Prometheus text exposition, with the value cache's figures when there is one.
    pub fn render(&self, cache: Option<strata_engine::CacheStats>) -> String {
        let mut s = String::new();
        let mut g = |name: &str, help: &str, kind: &str, v: &AtomicU64| {
            let _ = writeln!(
                s,
                "# HELP strata_server_{name} {help}\n# TYPE strata_server_{name} {kind}\nstrata_server_{name} {}",
                v.load(Relaxed)
            );
        };
        g(
            "connections_open",
            "Connections open now.",
            "gauge",
            &self.connections_open,
        );
        g(
            "connections_total",
            "Connections accepted.",
            "counter",
            &self.connections_total,
        );
        g(
            "connections_refused_total",
            "Connections refused at the cap.",
            "counter",
            &self.connections_refused,
        );
        g(
            "handshakes_refused_total",
            "Handshakes refused (key, protocol).",
            "counter",
            &self.handshakes_refused,
        );
        g(
            "frames_too_large_total",
            "Frames over the cap.",
            "counter",
            &self.frames_too_large,
        );
        g(
            "frames_malformed_total",
            "Connections closed for malformed frames.",
            "counter",
            &self.frames_malformed,
        );
        g(
            "sessions_open",
            "Transactions open now.",
            "gauge",
            &self.sessions_open,
        );
        g(
            "sessions_expired_total",
            "Transactions rolled back by a timeout.",
            "counter",
            &self.sessions_expired,
        );
        g(
            "sessions_abandoned_total",
            "Transactions rolled back because their connection closed.",
            "counter",
            &self.sessions_abandoned,
        );
        if let Some(c) = cache {
            let _ = writeln!(
                s,
                "# HELP strata_server_read_cache_hits_total Point reads answered from the value cache.\n# TYPE strata_server_read_cache_hits_total counter\nstrata_server_read_cache_hits_total {}\n\
                 # HELP strata_server_read_cache_misses_total Point reads that went to SQLite.\n# TYPE strata_server_read_cache_misses_total counter\nstrata_server_read_cache_misses_total {}\n\
                 # HELP strata_server_read_cache_bytes Bytes the value cache holds (estimated).\n# TYPE strata_server_read_cache_bytes gauge\nstrata_server_read_cache_bytes {}",
                c.hits, c.misses, c.bytes
            );
        }
        s.push_str("# HELP strata_server_requests_total Requests by command and outcome.\n# TYPE strata_server_requests_total counter\n");
        for ((cmd, outcome), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                s,
                "strata_server_requests_total{{command=\"{cmd}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        s
    }
}

/// Serves `GET /metrics` (any path) until `stop`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    db: strata_engine::Strata,
    stop: CancellationToken,
) {
    loop {
        let (mut sock, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (metrics, db) = (metrics.clone(), db.clone());
        tokio::spawn(async move {
            // Read the request head (bounded), then answer and close.
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => {
                            n += k;
                            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let body = metrics.render(db.cache_stats());
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
