//! Worker pools: dedicated threads that run the requests of every connection in batches.
//!
//! - The **read pool** (a few threads) runs plain reads: a get, a list, a read at a past version.
//! - The **write pool** (one thread) runs one-shot writes: each commits its own version, and every
//!   write taken at once is made durable by one commit (`strata_wire::execute_writes`, group
//!   commit). One writer also means concurrent clients queue here in order instead of polling
//!   SQLite's write lock with its sleeping busy handler.
//!
//! A connection hands over all the requests of one kind it has buffered as one job and awaits their
//! answers. A worker takes every job waiting in the queue at once and runs them together, so under
//! load a worker never sleeps between requests and the thread hops cost once per batch, not per
//! request (a `spawn_blocking` per request spent more time waking threads than working). SQLite runs
//! on these threads, never on a runtime worker. Sessions, sync and transfers keep their own
//! blocking calls; reads never queue behind a write's fsync.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use strata_engine::Strata;
use strata_wire::{Command, ErrorCode, Output, WireError};
use tokio::sync::oneshot;

/// Most jobs a reader takes from the queue at once.
const MAX_JOBS: usize = 64;

/// What a pool runs: commands in, one answer per command out, in order.
pub(crate) type Runner = fn(&Strata, Vec<Command>) -> Vec<Result<Output, WireError>>;

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

/// Whether a request is a one-shot write, run by the write pool.
pub(crate) fn is_plain_write(cmd: &Command) -> bool {
    strata_wire::is_one_shot_write(cmd)
}

/// A pool; dropping it stops its threads once the queue is empty.
pub(crate) struct Pool {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Pool {
    /// Starts `threads` workers named `name-N` over `db`, each running its jobs with `run`.
    pub(crate) fn start(
        db: Strata,
        threads: usize,
        name: &str,
        run: Runner,
    ) -> std::io::Result<Pool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let (db, rx) = (db.clone(), rx.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || worker(db, rx, run))?,
            );
        }
        Ok(Pool {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(handles),
        })
    }

    /// Runs commands (each of the pool's kind) in order; one answer per command.
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
            .unwrap_or_else(|_| failed("the request failed inside the server (see its log)"))
    }

    /// Stops taking jobs and waits for the workers to finish what they hold.
    pub(crate) fn stop(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let handles = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

fn worker(db: Strata, rx: Arc<Mutex<mpsc::Receiver<Job>>>, run: Runner) {
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
        // Every job taken runs together (reads on one snapshot, writes in one group). A snapshot
        // begins after each of its jobs was queued, so each read sees every write acknowledged
        // before it was sent.
        let lens: Vec<usize> = jobs.iter().map(|j| j.cmds.len()).collect();
        let cmds: Vec<Command> = jobs.iter_mut().flat_map(|j| j.cmds.drain(..)).collect();
        let answers = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&db, cmds)));
        let Ok(answers) = answers else {
            tracing::error!("a request panicked; its connections get an internal error");
            continue;
        };
        let mut answers = answers.into_iter();
        for (job, n) in jobs.into_iter().zip(lens) {
            let _ = job.reply.send(answers.by_ref().take(n).collect());
        }
    }
}
