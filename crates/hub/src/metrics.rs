//! Request counters, served as Prometheus text at `GET /metrics`. They describe this process only;
//! nothing authoritative lives here.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters of one hub process.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Requests answered, by (method, status).
    by_status: Mutex<BTreeMap<(String, u16), u64>>,
    /// Sum of request durations, in microseconds.
    duration_micros: AtomicU64,
    /// Requests answered.
    requests: AtomicU64,
    /// Requests being served.
    pub(crate) in_flight: AtomicU64,
    /// Blob bytes received from clients (stored or not).
    pub(crate) blob_bytes_in: AtomicU64,
    /// Blob bytes sent to clients.
    pub(crate) blob_bytes_out: AtomicU64,
    /// Connections open.
    pub(crate) connections_open: AtomicU64,
    /// Connections refused at `--max-connections`.
    pub(crate) connections_refused: AtomicU64,
    /// Requests cut off by `--request-timeout` or `--body-timeout`.
    pub(crate) timeouts: AtomicU64,
}

impl Metrics {
    pub(crate) fn record(&self, method: &str, status: u16, micros: u64) {
        let mut m = self.by_status.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((method.to_string(), status)).or_default() += 1;
        self.duration_micros.fetch_add(micros, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP stratahub_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE stratahub_requests_total counter\n");
        for ((method, status), n) in self
            .by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "stratahub_requests_total{{method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "stratahub_request_duration_seconds_sum",
            "Total time spent answering requests.",
            "counter",
            self.duration_micros.load(Ordering::Relaxed) as f64 / 1e6,
        );
        gauge(
            &mut out,
            "stratahub_request_duration_seconds_count",
            "Requests timed.",
            "counter",
            self.requests.load(Ordering::Relaxed) as f64,
        );
        gauge(
            &mut out,
            "stratahub_requests_in_flight",
            "Requests being served.",
            "gauge",
            self.in_flight.load(Ordering::Relaxed) as f64,
        );
        gauge(
            &mut out,
            "stratahub_blob_bytes_received_total",
            "Blob bytes received from clients.",
            "counter",
            self.blob_bytes_in.load(Ordering::Relaxed) as f64,
        );
        gauge(
            &mut out,
            "stratahub_blob_bytes_sent_total",
            "Blob bytes sent to clients.",
            "counter",
            self.blob_bytes_out.load(Ordering::Relaxed) as f64,
        );
        gauge(
            &mut out,
            "stratahub_connections_open",
            "Client connections open.",
            "gauge",
            self.connections_open.load(Ordering::Relaxed) as f64,
        );
        gauge(
            &mut out,
            "stratahub_connections_refused_total",
            "Connections refused at --max-connections.",
            "counter",
            self.connections_refused.load(Ordering::Relaxed) as f64,
        );
        gauge(
            &mut out,
            "stratahub_request_timeouts_total",
            "Requests cut off by --request-timeout or --body-timeout.",
            "counter",
            self.timeouts.load(Ordering::Relaxed) as f64,
        );
        out
    }
}
