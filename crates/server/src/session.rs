//! Sessions: a transaction that spans many frames.
//!
//! A session is a blocking task (`spawn_blocking`) that owns the engine transaction and serves the
//! connection's transaction commands from a channel. It ends at commit or rollback, and rolls back
//! when its connection goes away (the channel closes), when it waits longer than the idle timeout
//! for the next command, or when it reaches its lifetime cap. So an abandoned transaction holds the
//! database's write lock for at most the idle timeout, and any transaction for at most the cap.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_engine::Strata;
use strata_wire::{engine_error, execute_in, Command, ErrorCode, Output, WireError};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

type Answer = Result<Output, WireError>;
type Job = (Command, oneshot::Sender<Answer>);

/// Session time limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Rolled back after this long without a command.
    pub idle: Duration,
    /// Rolled back when open this long.
    pub max: Duration,
}

/// The connection's handle on its open transaction.
#[derive(Debug)]
pub struct Session {
    jobs: mpsc::Sender<Job>,
    worker: tokio::task::JoinHandle<()>,
    limits: Limits,
}

fn expired(limits: &Limits) -> WireError {
    WireError::new(
        ErrorCode::SessionExpired,
        format!(
            "the transaction was rolled back by the server (idle over {} ms, open over {} ms, or the server is stopping); none of it was committed: begin it again",
            limits.idle.as_millis(),
            limits.max.as_millis()
        ),
    )
}

impl Session {
    /// Begins a transaction on `branch`; answers `begun`.
    pub async fn begin(
        db: Strata,
        branch: String,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Result<(Session, Output), WireError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (began_tx, began) = oneshot::channel();
        let worker = tokio::task::spawn_blocking(move || {
            worker(db, branch, rx, began_tx, limits, metrics);
        });
        match began.await {
            Ok(Ok(out)) => Ok((
                Session {
                    jobs,
                    worker,
                    limits,
                },
                out,
            )),
            Ok(Err(e)) => {
                let _ = worker.await;
                Err(e)
            }
            Err(_) => Err(WireError::new(
                ErrorCode::Internal,
                "the transaction worker stopped before it began",
            )),
        }
    }

    /// Runs a transaction command. `Ok(true)` in the second place: the session is over (commit,
    /// rollback, or expired).
    pub async fn call(&self, cmd: Command) -> (Answer, bool) {
        let ends = matches!(cmd, Command::Commit | Command::Rollback);
        let (tx, rx) = oneshot::channel();
        if self.jobs.send((cmd, tx)).is_err() {
            return (Err(expired(&self.limits)), true);
        }
        match rx.await {
            Ok(a) => (a, ends),
            // The worker dropped the job unanswered: it had expired; nothing ran.
            Err(_) => (Err(expired(&self.limits)), true),
        }
    }

    /// Ends the session (rolls back if still open) and waits until its worker has finished.
    pub async fn close(self) {
        drop(self.jobs);
        let _ = self.worker.await;
    }
}

fn worker(
    db: Strata,
    branch: String,
    rx: mpsc::Receiver<Job>,
    began: oneshot::Sender<Answer>,
    limits: Limits,
    metrics: Arc<Metrics>,
) {
    let mut tx = match db.begin(&branch) {
        Ok(t) => t,
        Err(e) => {
            let _ = began.send(Err(engine_error(e)));
            return;
        }
    };
    metrics.sessions_open.fetch_add(1, Relaxed);
    let _open = scopeguard(&metrics);
    let version = tx.version();
    if began
        .send(Ok(Output::Begun {
            branch: branch.clone(),
            version,
        }))
        .is_err()
    {
        return; // the connection went away: dropping `tx` rolls back
    }
    let deadline = Instant::now() + limits.max;
    loop {
        let now = Instant::now();
        let wait = limits.idle.min(deadline.saturating_duration_since(now));
        let job = if now >= deadline {
            // At the lifetime cap even if commands keep coming: queued ones go unanswered, and
            // their callers are told the session expired.
            Err(RecvTimeoutError::Timeout)
        } else {
            rx.recv_timeout(wait)
        };
        let (cmd, reply) = match job {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                drop(tx);
                metrics.sessions_expired.fetch_add(1, Relaxed);
                tracing::warn!(%branch, version, "transaction rolled back: timeout");
                return;
            }
            Err(RecvTimeoutError::Disconnected) => {
                drop(tx);
                metrics.sessions_abandoned.fetch_add(1, Relaxed);
                tracing::info!(%branch, version, "transaction rolled back: its connection closed");
                return;
            }
        };
        match cmd {
            Command::InTx { space, op } => {
                let _ = reply.send(execute_in(&mut tx, &space, op));
            }
            Command::SetMessage { message } => {
                tx.set_message(message);
                let _ = reply.send(Ok(Output::Unit));
            }
            Command::SetAuthor { author } => {
                tx.set_author(author);
                let _ = reply.send(Ok(Output::Unit));
            }
            Command::Commit => {
                let r = tx.commit().map(Output::Version).map_err(engine_error);
                let _ = reply.send(r);
                return;
            }
            Command::Rollback => {
                let r = tx.rollback().map(|_| Output::Unit).map_err(engine_error);
                let _ = reply.send(r);
                return;
            }
            other => {
                let _ = reply.send(Err(WireError::new(
                    ErrorCode::InvalidOperation,
                    format!("{} is not a transaction command", other.name()),
                )));
            }
        }
    }
}

/// Decrements the open-sessions gauge when the worker returns.
fn scopeguard(m: &Arc<Metrics>) -> impl Drop + '_ {
    struct G<'a>(&'a Metrics);
    impl Drop for G<'_> {
        fn drop(&mut self) {
            self.0.sessions_open.fetch_sub(1, Relaxed);
        }
    }
    G(m)
}
