//! The read pool: a few dedicated threads that run plain reads (a `get`, a list, a read at a past
//! version) for every connection.
//!
//! A connection hands over all the reads it has buffered as one job and awaits their answers. A
//! reader takes every job waiting in the queue at once and runs them back to back, so under load a
//! reader never sleeps between requests and the thread hops cost once per batch, not per request
//! (a `spawn_blocking` per read spent more time waking threads than reading). SQLite runs on these
//! threads only, never on a runtime worker. Writes, sessions, sync and transfers keep their own
//! blocking calls: a write waits for its fsync, and reads must not queue behind it.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use strata_engine::Strata;
use strata_wire::{Command, ErrorCode, Output, WireError};
use tokio::sync::oneshot;

/// Most jobs a reader takes from the queue at once.
const MAX_JOBS: usize = 64;

/// Whether a request is a plain read: no session, no transfer, no remote, answered from the
/// committed state alone. These are the requests the read pool runs.
pub(crate) fn is_plain_read(cmd: &Command) -> bool {
    match cmd {
        Command::Ping | Command::GetAt { .. } => true,
        Command::Scoped { op, .. } => !op.writes(),
        _ => false,
    }
}

type Answers = Vec<Result<Output, WireError>>;

struct Job {
    cmds: Vec<Command>,
    reply: oneshot::Sender<Answers>,
}

/// The pool; dropping it stops its threads once the queue is empty.
pub(crate) struct ReadPool {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl ReadPool {
    /// Starts `threads` readers over `db`.
    pub(crate) fn start(db: Strata, threads: usize) -> std::io::Result<ReadPool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let (db, rx) = (db.clone(), rx.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("strata-reader-{i}"))
                    .spawn(move || reader(db, rx))?,
            );
        }
        Ok(ReadPool {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(handles),
        })
    }

    /// Runs reads (each one [`is_plain_read`]) in order; one answer per read.
    pub(crate) async fn run(&self, cmds: Vec<Command>) -> Answers {
        let n = cmds.len();
        let (reply, answer) = oneshot::channel();
        let sent = match &*self.tx.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(tx) => tx.send(Job { cmds, reply }).is_ok(),
            None => false,
        };
        let failed = |m: &str| {
            (0..n)
                .map(|_| Err(WireError::new(ErrorCode::Internal, m)))
                .collect()
        };
        if !sent {
            return failed("the server is shutting down");
        }
        answer
            .await
            .unwrap_or_else(|_| failed("the read failed inside the server (see its log)"))
    }

    /// Stops taking reads and waits for the readers to finish what they hold.
    pub(crate) fn stop(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let handles = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Drop for ReadPool {
    fn drop(&mut self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

fn reader(db: Strata, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let mut jobs = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            let Ok(first) = rx.recv() else { return };
            let mut jobs = vec![first];
            while jobs.len() < MAX_JOBS {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            jobs
        };
        // Every job taken runs on one snapshot: it began after each of them was queued, so each
        // read sees every write acknowledged before it was sent.
        let lens: Vec<usize> = jobs.iter().map(|j| j.cmds.len()).collect();
        let cmds: Vec<Command> = jobs.iter_mut().flat_map(|j| j.cmds.drain(..)).collect();
        let answers = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            strata_wire::execute_reads(&db, cmds)
        }));
        let Ok(answers) = answers else {
            tracing::error!("a read panicked; its connections get an internal error");
            continue;
        };
        let mut answers = answers.into_iter();
        for (job, n) in jobs.into_iter().zip(lens) {
            let _ = job.reply.send(answers.by_ref().take(n).collect());
        }
    }
}
