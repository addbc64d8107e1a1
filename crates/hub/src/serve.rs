//! Serving connections with limits: the accept loop, the connection cap, and the timeouts that keep a
//! slow or silent client from holding a connection (or a request) forever.
//!
//! | limit | flag | what happens |
//! |---|---|---|
//! | headers | `--header-timeout` | a request's headers must arrive within it, counted from the connection opening or the previous response (so it is also the keep-alive idle timeout); else the connection is closed |
//! | body pause | `--body-timeout` | the longest pause inside a request body (then `408 timeout`, nothing stored, connection closed) or while the client reads a response (then the connection is closed) |
//! | request | `--request-timeout` | the hub's own time to answer, not counting the time spent receiving the request's body (a large upload takes what it takes; its pauses are bounded by `--body-timeout`); beyond it `503 timeout` |
//! | connections | `--max-connections` | one more connection is answered `503 overloaded` with `Retry-After: 1` and closed at once, as Redis answers past `maxclients` |

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::Stream;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;
use crate::Hub;

/// How many refused connections may be answered at once; beyond that they are closed unanswered.
const REFUSING_AT_ONCE: usize = 64;

/// The body of the answer to a connection past the cap.
const OVERLOADED: &str = r#"{"error":{"code":"overloaded","message":"this hub is serving its maximum number of connections (stratahub serve --max-connections); try again shortly"}}"#;

impl Hub {
    /// Serves on `listener` until `shutdown` completes, then finishes the requests in flight.
    /// Applies this hub's connection cap and timeouts (see [`HubConfig`](crate::HubConfig)).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router();
        let permits = Arc::new(Semaphore::new(self.config.max_connections.max(1)));
        let refusing = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
        // Connections watch `stop` to shut down gracefully, and each holds a `done` receiver: when
        // every receiver is gone, every connection has ended.
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(());
        let mut shutdown = std::pin::pin!(shutdown);
        let mut accept_errors = 0u32;
        loop {
            let (tcp, addr) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => {
                        accept_errors = 0;
                        a
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off, never spin or exit.
                        accept_errors = (accept_errors + 1).min(7);
                        tracing::warn!(error = %e, "accept failed; backing off");
                        tokio::time::sleep(Duration::from_millis(10 << accept_errors)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                self.metrics
                    .connections_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%addr, max = self.config.max_connections, "connection refused: at --max-connections");
                if let Ok(p) = refusing.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        refuse(tcp).await;
                        drop(p);
                    });
                }
                continue;
            };
            let service = TowerToHyperService::new(router.clone());
            let mut stop = stop_rx.clone();
            let done = done_rx.clone();
            let metrics = self.metrics.clone();
            let config = self.config.clone();
            tokio::spawn(async move {
                metrics.connections_open.fetch_add(1, Ordering::Relaxed);
                let io = TokioIo::new(WriteTimeout::new(tcp, config.body_timeout));
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(config.header_timeout)
                    .keep_alive(true);
                let conn = builder.serve_connection(io, service);
                let mut conn = std::pin::pin!(conn);
                let mut stopping = false;
                loop {
                    tokio::select! {
                        res = conn.as_mut() => {
                            if let Err(e) = res {
                                tracing::debug!(%addr, error = %e, "connection ended with an error");
                            }
                            break;
                        }
                        _ = stop.wait_for(|s| *s), if !stopping => {
                            stopping = true;
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
                metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
                drop(done);
            });
        }
        drop(listener);
        let _ = stop_tx.send(true);
        drop(done_rx);
        done_tx.closed().await;
        Ok(())
    }
}

/// Answers a connection past the cap: reads (briefly) what the client sent, so closing does not
/// reset the connection under the answer, then `503 overloaded` and close.
async fn refuse(mut tcp: TcpStream) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{OVERLOADED}",
        OVERLOADED.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut buf = vec![0u8; 16 << 10];
        let mut seen = 0;
        // Up to the end of the request's headers (or a second of silence, or 16 KiB).
        while seen < buf.len() {
            match tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut buf[seen..])).await {
                Ok(Ok(n)) if n > 0 => {
                    seen += n;
                    if buf[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                _ => break,
            }
        }
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await?;
        // Drain what else arrives until the client closes (bounded by the outer timeout).
        while tcp.read(&mut buf).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// A connection whose writes fail after a pause of `limit` with no progress: a client that stops
/// reading a response is cut off instead of holding the connection forever.
struct WriteTimeout {
    inner: TcpStream,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl WriteTimeout {
    fn new(inner: TcpStream, limit: Duration) -> WriteTimeout {
        WriteTimeout {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            armed: false,
        }
    }

    fn track<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Pending => {
                if !self.armed {
                    self.armed = true;
                    let at = Instant::now() + self.limit;
                    self.timer.as_mut().reset(at);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading the response (--body-timeout)",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.armed = false;
                ready
            }
        }
    }
}

impl AsyncRead for WriteTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// ----- per-request limits -------------------------------------------------------------------------

/// When a request's body was being received: from the handler's first read of it to its end.
#[derive(Debug, Default)]
struct BodyClock {
    started: Option<Instant>,
    ended: Option<Instant>,
}

impl BodyClock {
    /// Time spent receiving the body so far: it does not count against `--request-timeout` (a
    /// large upload takes as long as the client and the storage need; `--body-timeout` bounds
    /// its pauses).
    fn receiving(&self, now: Instant) -> Duration {
        match self.started {
            None => Duration::ZERO,
            Some(s) => self.ended.unwrap_or(now).saturating_duration_since(s),
        }
    }
}

#[derive(Debug, Default)]
struct BodyState {
    clock: Mutex<BodyClock>,
    /// The client paused longer than `--body-timeout` inside its body.
    stalled: AtomicBool,
}

/// A request body that fails after a pause of `limit`, and notes when it was being received.
struct TimedBody {
    inner: axum::body::BodyDataStream,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
    state: Arc<BodyState>,
    done: bool,
}

impl TimedBody {
    fn clock(&self) -> std::sync::MutexGuard<'_, BodyClock> {
        self.state.clock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Stream for TimedBody {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        this.clock().started.get_or_insert_with(Instant::now);
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => {
                if !this.armed {
                    this.armed = true;
                    this.timer.as_mut().reset(Instant::now() + this.limit);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        this.done = true;
                        this.clock().ended = Some(Instant::now());
                        this.state.stalled.store(true, Ordering::Relaxed);
                        Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "the client sent nothing for {} s inside its body (--body-timeout)",
                                this.limit.as_secs_f64()
                            ),
                        )))))
                    }
                }
            }
            Poll::Ready(item) => {
                this.armed = false;
                if !matches!(item, Some(Ok(_))) {
                    this.done = true;
                    this.clock().ended = Some(Instant::now());
                }
                Poll::Ready(item)
            }
        }
    }
}

fn timeout_response(status: StatusCode, message: String) -> Response {
    let mut resp = ApiError::new(status, "timeout", message).into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The request timeout and the body pause timeout, for every request.
pub(crate) async fn limits(State(hub): State<Hub>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let state = Arc::new(BodyState::default());
    let limit = hub.config.body_timeout;
    let body = Body::from_stream(TimedBody {
        inner: body.into_data_stream(),
        limit,
        timer: Box::pin(tokio::time::sleep(limit)),
        armed: false,
        state: state.clone(),
        done: false,
    });
    let start = Instant::now();
    let budget = hub.config.request_timeout;
    let mut run = std::pin::pin!(next.run(Request::from_parts(parts, body)));
    let mut timer = std::pin::pin!(tokio::time::sleep_until(start + budget));
    let resp = loop {
        tokio::select! {
            resp = run.as_mut() => break resp,
            _ = timer.as_mut() => {
                // Time spent receiving the client's body does not count against the hub.
                let now = Instant::now();
                let receiving = state.clock.lock().unwrap_or_else(|e| e.into_inner()).receiving(now);
                let deadline = start + budget + receiving;
                if deadline > now {
                    timer.as_mut().reset(deadline);
                    continue;
                }
                hub.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(secs = budget.as_secs_f64(), "request timed out");
                return timeout_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the hub could not answer within {} s (stratahub serve --request-timeout); try again",
                        budget.as_secs_f64()
                    ),
                );
            }
        }
    };
    if state.stalled.load(Ordering::Relaxed) {
        hub.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
        return timeout_response(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body paused for more than {} s (stratahub serve --body-timeout); nothing was stored",
                limit.as_secs_f64()
            ),
        );
    }
    resp
}
