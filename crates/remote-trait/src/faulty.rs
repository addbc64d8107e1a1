//! [`FaultyRemote`]: a wrapper that implements [`Remote`] over another remote and injects failures,
//! latency and damaged downloads according to a [`FaultPlan`], and counts the operations it sees.
//!
//! The plan can be changed while the remote is in use ([`FaultyRemote::set_plan`], [`FaultyRemote::arm`],
//! ...), so a test can run a step cleanly, arm a fault, and run the next step.
//!
//! ```
//! # use std::sync::Arc;
//! # use strata_remote::*;
//! let faulty = FaultyRemote::new(Arc::new(InMemoryRemote::new()));
//! // The 2nd put from now on fails with a transient error before reaching the store...
//! faulty.arm(Failure::nth_of(Op::PutBlob, 2));
//! // ...and the next cursor write reaches the store, but the caller is told it failed.
//! faulty.arm(Failure::nth_of(Op::WriteCursor, 1).after_write());
//! // Every operation takes 5 ms, and the next download has a flipped byte.
//! faulty.update_plan(|p| p.set_latency(std::time::Duration::from_millis(5)));
//! faulty.corrupt_next_get(StreamFault::FlipByte { offset: 0 });
//! ```

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::Stream;

use crate::{
    BlobMeta, ByteStream, Cursor, CursorToken, ErrorDetail, Remote, RemoteError, RemotePath, Result,
};

/// A kind of [`Remote`] operation: what [`FaultyRemote`] counts, and what a [`Failure`] may target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// [`Remote::put_blob_if_absent`].
    PutBlob,
    /// [`Remote::get_blob`].
    GetBlob,
    /// [`Remote::list_blobs`].
    ListBlobs,
    /// [`Remote::delete_blob`].
    DeleteBlob,
    /// [`Remote::read_cursor`].
    ReadCursor,
    /// [`Remote::write_cursor`].
    WriteCursor,
    /// [`Remote::list_cursors`].
    ListCursors,
}

impl Op {
    /// Every kind, in declaration order.
    pub const ALL: [Op; 7] = [
        Op::PutBlob,
        Op::GetBlob,
        Op::ListBlobs,
        Op::DeleteBlob,
        Op::ReadCursor,
        Op::WriteCursor,
        Op::ListCursors,
    ];

    /// The trait method's name, e.g. `"put_blob_if_absent"`.
    pub fn method(self) -> &'static str {
        match self {
            Op::PutBlob => "put_blob_if_absent",
            Op::GetBlob => "get_blob",
            Op::ListBlobs => "list_blobs",
            Op::DeleteBlob => "delete_blob",
            Op::ReadCursor => "read_cursor",
            Op::WriteCursor => "write_cursor",
            Op::ListCursors => "list_cursors",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.method())
    }
}

/// When an injected failure strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FailWhen {
    /// Before the operation reaches the inner remote: nothing happens there (a put's body is dropped
    /// unread).
    #[default]
    Before,
    /// After the inner operation succeeded: the write reached the store, but the caller gets the error
    /// (a lost response). Meant for puts and cursor writes; if the inner operation fails, its own error
    /// is returned.
    AfterWrite,
}

/// One injected failure: "the `nth` matching operation from now on fails (and the `times - 1` after
/// it) with `error`". Build one with [`Failure::nth`] or [`Failure::nth_of`] and refine it with the
/// builder methods.
///
/// Counting starts when the failure is armed ([`FaultyRemote::arm`], [`FaultyRemote::set_plan`] or
/// [`FaultyRemote::with_plan`]); every armed failure counts the operations it matches on its own, and
/// when several strike at once the first armed one decides the error.
#[derive(Clone, Debug)]
pub struct Failure {
    op: Option<Op>,
    under: Option<RemotePath>,
    nth: u64,
    times: u64,
    when: FailWhen,
    error: fn(ErrorDetail) -> RemoteError,
}

impl Failure {
    /// Fails the `nth` operation of any kind (1-based: `nth(1)` is the next operation).
    pub fn nth(nth: u64) -> Failure {
        Failure {
            op: None,
            under: None,
            nth: nth.max(1),
            times: 1,
            when: FailWhen::Before,
            error: RemoteError::Transient,
        }
    }

    /// Fails the `nth` operation of kind `op` (1-based), counting only operations of that kind.
    pub fn nth_of(op: Op, nth: u64) -> Failure {
        Failure {
            op: Some(op),
            ..Failure::nth(nth)
        }
    }

    /// Fails every operation of kind `op` from now on, until the plan is changed.
    pub fn always(op: Op) -> Failure {
        Failure::nth_of(op, 1).times(u64::MAX)
    }

    /// Fails `times` consecutive matching operations, starting at the `nth` (default 1).
    pub fn times(mut self, times: u64) -> Failure {
        self.times = times;
        self
    }

    /// Counts only operations whose path (or listing prefix) lies under `prefix`, on segment
    /// boundaries as in [`RemotePath::starts_with`]. Panics if `prefix` is not a valid path.
    pub fn under(mut self, prefix: &str) -> Failure {
        self.under =
            Some(RemotePath::parse(prefix).expect("Failure::under takes a valid RemotePath"));
        self
    }

    /// Lets the operation reach the store and fails afterwards (see [`FailWhen::AfterWrite`]).
    pub fn after_write(mut self) -> Failure {
        self.when = FailWhen::AfterWrite;
        self
    }

    /// The error to fail with, as a constructor taking a message: e.g. `RemoteError::Unauthorized`.
    /// The default is `RemoteError::Transient`.
    pub fn with_error(mut self, error: fn(ErrorDetail) -> RemoteError) -> Failure {
        self.error = error;
        self
    }

    fn matches(&self, op: Op, target: &str) -> bool {
        if self.op.is_some_and(|o| o != op) {
            return false;
        }
        match &self.under {
            None => true,
            Some(prefix) => RemotePath::parse(target).is_ok_and(|t| t.starts_with(prefix)),
        }
    }
}

/// How to damage a downloaded blob (see [`FaultyRemote::corrupt_next_get`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFault {
    /// Inverts the byte at `offset`. If the body is shorter, one junk byte is appended instead, so the
    /// body read is always wrong.
    FlipByte {
        /// Offset of the byte to flip.
        offset: u64,
    },
    /// Ends the stream cleanly after `keep` bytes, as if the body were shorter (a body of at most `keep`
    /// bytes is unchanged).
    Truncate {
        /// How many bytes get through.
        keep: u64,
    },
    /// Yields `after` bytes, then a [`RemoteError::Transient`] error: a connection that broke mid-body.
    /// A body of at most `after` bytes is followed by the error too, so the fault always strikes.
    BreakAfter {
        /// How many bytes get through before the error.
        after: u64,
    },
}

/// What a [`FaultyRemote`] does wrong: failures, latency and damaged downloads. Built with the `with_*`
/// methods (or changed in place with the `set_*`/`add_*` ones through [`FaultyRemote::update_plan`]).
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    failures: Vec<ArmedFailure>,
    latency: Duration,
    op_latency: Vec<(Op, Duration)>,
    stream_faults: Vec<(Option<RemotePath>, StreamFault)>,
}

#[derive(Clone, Debug)]
struct ArmedFailure {
    failure: Failure,
    /// Matching operations seen since it was armed.
    seen: u64,
}

impl FaultPlan {
    /// A plan that does nothing wrong.
    pub fn new() -> FaultPlan {
        FaultPlan::default()
    }

    /// Adds a failure.
    pub fn with_failure(mut self, failure: Failure) -> FaultPlan {
        self.add_failure(failure);
        self
    }

    /// Delays every operation by `latency` (before it starts).
    pub fn with_latency(mut self, latency: Duration) -> FaultPlan {
        self.set_latency(latency);
        self
    }

    /// Delays operations of kind `op` by `latency`, instead of the general latency.
    pub fn with_op_latency(mut self, op: Op, latency: Duration) -> FaultPlan {
        self.set_op_latency(op, latency);
        self
    }

    /// Damages the body of the next `get_blob` (see [`FaultyRemote::corrupt_next_get`]).
    pub fn with_corrupt_next_get(mut self, fault: StreamFault) -> FaultPlan {
        self.add_stream_fault(None, fault);
        self
    }

    /// Adds a failure, in place.
    pub fn add_failure(&mut self, failure: Failure) {
        self.failures.push(ArmedFailure { failure, seen: 0 });
    }

    /// Sets the latency of every operation, in place.
    pub fn set_latency(&mut self, latency: Duration) {
        self.latency = latency;
    }

    /// Sets the latency of one kind of operation, in place.
    pub fn set_op_latency(&mut self, op: Op, latency: Duration) {
        self.op_latency.retain(|(o, _)| *o != op);
        self.op_latency.push((op, latency));
    }

    /// Queues damage for the next `get_blob` of a path under `under` (any path if `None`); each queued
    /// fault strikes once.
    pub fn add_stream_fault(&mut self, under: Option<RemotePath>, fault: StreamFault) {
        self.stream_faults.push((under, fault));
    }

    /// Whether the plan still has anything to do (failures not yet spent, latency, queued damage).
    pub fn is_idle(&self) -> bool {
        self.failures.iter().all(|a| {
            a.seen
                >= a.failure
                    .nth
                    .saturating_add(a.failure.times)
                    .saturating_sub(1)
        }) && self.latency.is_zero()
            && self.op_latency.iter().all(|(_, d)| d.is_zero())
            && self.stream_faults.is_empty()
    }

    fn latency_of(&self, op: Op) -> Duration {
        self.op_latency
            .iter()
            .find(|(o, _)| *o == op)
            .map_or(self.latency, |(_, d)| *d)
    }
}

/// How many operations of each kind a [`FaultyRemote`] has been asked to do (including the ones it
/// failed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCounts {
    counts: [u64; 7],
    /// How many of them got an injected failure.
    pub injected: u64,
}

impl OpCounts {
    /// The count for one kind.
    pub fn get(&self, op: Op) -> u64 {
        self.counts[op.index()]
    }

    /// The count over all kinds.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The counts that grew since `earlier` (for "how many requests did this step make").
    pub fn since(&self, earlier: &OpCounts) -> OpCounts {
        let mut counts = [0; 7];
        for (i, c) in counts.iter_mut().enumerate() {
            *c = self.counts[i].saturating_sub(earlier.counts[i]);
        }
        OpCounts {
            counts,
            injected: self.injected.saturating_sub(earlier.injected),
        }
    }
}

/// A [`Remote`] that forwards to an inner remote and misbehaves according to a [`FaultPlan`].
///
/// Cloning shares the plan and the counters, so a test can keep a clone to arm faults and read counters
/// while the code under test uses another (or an `Arc<dyn Remote>` of it). Displays as
/// `faulty(<inner>)`.
pub struct FaultyRemote<R: ?Sized = dyn Remote> {
    inner: Arc<R>,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    plan: FaultPlan,
    counts: OpCounts,
}

/// What to do with one operation, decided when it starts.
struct Decision {
    latency: Duration,
    fail: Option<(FailWhen, RemoteError)>,
    stream_fault: Option<StreamFault>,
}

impl<R: Remote + ?Sized> FaultyRemote<R> {
    /// Wraps `inner` with a plan that does nothing wrong (yet).
    pub fn new(inner: Arc<R>) -> FaultyRemote<R> {
        FaultyRemote::with_plan(inner, FaultPlan::new())
    }

    /// Wraps `inner` with `plan`.
    pub fn with_plan(inner: Arc<R>, plan: FaultPlan) -> FaultyRemote<R> {
        FaultyRemote {
            inner,
            state: Arc::new(Mutex::new(State {
                plan,
                counts: OpCounts::default(),
            })),
        }
    }

    /// The wrapped remote.
    pub fn inner(&self) -> &Arc<R> {
        &self.inner
    }

    /// Replaces the plan; its failures count from now on.
    pub fn set_plan(&self, plan: FaultPlan) {
        self.state().plan = plan;
    }

    /// Changes the plan in place (failures already armed keep counting).
    pub fn update_plan(&self, f: impl FnOnce(&mut FaultPlan)) {
        f(&mut self.state().plan);
    }

    /// A copy of the current plan (with the progress of its failures).
    pub fn plan(&self) -> FaultPlan {
        self.state().plan.clone()
    }

    /// Removes every fault and latency: from now on the wrapper is transparent (it still counts).
    pub fn clear(&self) {
        self.set_plan(FaultPlan::new());
    }

    /// Arms one more failure, counting from now on.
    pub fn arm(&self, failure: Failure) {
        self.state().plan.add_failure(failure);
    }

    /// Damages the body of the next `get_blob` (whichever path it reads).
    pub fn corrupt_next_get(&self, fault: StreamFault) {
        self.state().plan.add_stream_fault(None, fault);
    }

    /// Damages the body of the next `get_blob` of a path under `prefix` (segment boundaries). Panics if
    /// `prefix` is not a valid path.
    pub fn corrupt_next_get_under(&self, prefix: &str, fault: StreamFault) {
        let prefix =
            RemotePath::parse(prefix).expect("corrupt_next_get_under takes a valid RemotePath");
        self.state().plan.add_stream_fault(Some(prefix), fault);
    }

    /// The operations counted so far.
    pub fn counts(&self) -> OpCounts {
        self.state().counts
    }

    /// The operations of one kind counted so far.
    pub fn count(&self, op: Op) -> u64 {
        self.state().counts.get(op)
    }

    /// Resets the counters to zero.
    pub fn reset_counts(&self) {
        self.state().counts = OpCounts::default();
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts the operation and decides its fate. `target` is the path, name or listing prefix.
    fn decide(&self, op: Op, target: &str) -> Decision {
        let mut state = self.state();
        let state = &mut *state;
        state.counts.counts[op.index()] += 1;
        let mut fail = None;
        for armed in &mut state.plan.failures {
            if !armed.failure.matches(op, target) {
                continue;
            }
            armed.seen += 1;
            let f = &armed.failure;
            let strikes = armed.seen >= f.nth && armed.seen - f.nth < f.times;
            if strikes && fail.is_none() {
                let msg = format!(
                    "injected fault: {op} #{} of {target:?} ({:?})",
                    armed.seen, f.when
                );
                fail = Some((f.when, (f.error)(msg.into())));
            }
        }
        if fail.is_some() {
            state.counts.injected += 1;
        }
        let mut stream_fault = None;
        // A get that fails does not use up the damage queued for the next download.
        if op == Op::GetBlob && fail.is_none() {
            let path = RemotePath::parse(target).ok();
            let hit = state
                .plan
                .stream_faults
                .iter()
                .position(|(under, _)| match (under, &path) {
                    (None, _) => true,
                    (Some(u), Some(p)) => p.starts_with(u),
                    (Some(_), None) => false,
                });
            if let Some(i) = hit {
                stream_fault = Some(state.plan.stream_faults.remove(i).1);
            }
        }
        Decision {
            latency: state.plan.latency_of(op),
            fail,
            stream_fault,
        }
    }

    /// Runs `inner` under the decision for `op`: latency first, then the failure before or after it.
    async fn run<T: Send>(
        &self,
        op: Op,
        target: &str,
        inner: impl std::future::Future<Output = Result<T>> + Send,
    ) -> Result<(T, Option<StreamFault>)> {
        let d = self.decide(op, target);
        if !d.latency.is_zero() {
            tokio::time::sleep(d.latency).await;
        }
        match d.fail {
            Some((FailWhen::Before, e)) => Err(e),
            Some((FailWhen::AfterWrite, e)) => {
                inner.await?;
                Err(e)
            }
            None => Ok((inner.await?, d.stream_fault)),
        }
    }
}

impl<R: ?Sized> Clone for FaultyRemote<R> {
    fn clone(&self) -> Self {
        FaultyRemote {
            inner: self.inner.clone(),
            state: self.state.clone(),
        }
    }
}

impl<R: Remote + ?Sized> fmt::Display for FaultyRemote<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "faulty({})", self.inner)
    }
}

impl<R: Remote + ?Sized> fmt::Debug for FaultyRemote<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("FaultyRemote")
            .field("inner", &self.inner)
            .field("plan", &state.plan)
            .field("counts", &state.counts)
            .finish()
    }
}

#[async_trait]
impl<R: Remote + ?Sized> Remote for FaultyRemote<R> {
    async fn put_blob_if_absent(&self, path: &RemotePath, body: ByteStream) -> Result<()> {
        self.run(
            Op::PutBlob,
            path.as_str(),
            self.inner.put_blob_if_absent(path, body),
        )
        .await
        .map(|_| ())
    }

    async fn get_blob(&self, path: &RemotePath) -> Result<ByteStream> {
        let (body, fault) = self
            .run(Op::GetBlob, path.as_str(), self.inner.get_blob(path))
            .await?;
        Ok(match fault {
            None => body,
            Some(fault) => Box::pin(DamagedStream::new(body, fault)),
        })
    }

    async fn list_blobs(&self, prefix: &str) -> Result<Vec<BlobMeta>> {
        self.run(Op::ListBlobs, prefix, self.inner.list_blobs(prefix))
            .await
            .map(|(v, _)| v)
    }

    async fn delete_blob(&self, path: &RemotePath) -> Result<()> {
        self.run(Op::DeleteBlob, path.as_str(), self.inner.delete_blob(path))
            .await
            .map(|_| ())
    }

    async fn read_cursor(&self, name: &RemotePath) -> Result<Option<Cursor>> {
        self.run(Op::ReadCursor, name.as_str(), self.inner.read_cursor(name))
            .await
            .map(|(v, _)| v)
    }

    async fn write_cursor(
        &self,
        name: &RemotePath,
        value: Bytes,
        expected: Option<&CursorToken>,
    ) -> Result<CursorToken> {
        self.run(
            Op::WriteCursor,
            name.as_str(),
            self.inner.write_cursor(name, value, expected),
        )
        .await
        .map(|(v, _)| v)
    }

    async fn list_cursors(&self, prefix: &str) -> Result<Vec<RemotePath>> {
        self.run(Op::ListCursors, prefix, self.inner.list_cursors(prefix))
            .await
            .map(|(v, _)| v)
    }
}

/// A body stream damaged by a [`StreamFault`].
struct DamagedStream {
    inner: ByteStream,
    /// The damage still to do (`None` once done: the rest passes through).
    fault: Option<StreamFault>,
    /// Bytes yielded so far.
    pos: u64,
    done: bool,
}

impl DamagedStream {
    fn new(inner: ByteStream, fault: StreamFault) -> DamagedStream {
        DamagedStream {
            inner,
            fault: Some(fault),
            pos: 0,
            done: false,
        }
    }

    fn broken(&mut self, after: u64) -> Poll<Option<Result<Bytes>>> {
        self.done = true;
        let msg = format!("injected fault: body broke after {after} bytes");
        Poll::Ready(Some(Err(RemoteError::Transient(msg.into()))))
    }
}

impl Stream for DamagedStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(StreamFault::BreakAfter { after }) = this.fault {
            if this.pos >= after {
                return this.broken(after);
            }
        }
        let chunk = match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => chunk,
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Ready(None) => {
                this.done = true;
                return match this.fault {
                    // The byte to flip was never reached: add a junk byte so the body is still wrong.
                    Some(StreamFault::FlipByte { .. }) => {
                        Poll::Ready(Some(Ok(Bytes::from_static(&[0xa5]))))
                    }
                    // The body ended before the break: it breaks anyway, so the fault always strikes.
                    Some(StreamFault::BreakAfter { after }) => this.broken(after),
                    _ => Poll::Ready(None),
                };
            }
        };
        let start = this.pos;
        let end = start + chunk.len() as u64;
        this.pos = end;
        match this.fault {
            Some(StreamFault::FlipByte { offset }) if (start..end).contains(&offset) => {
                let mut bytes = BytesMut::from(&chunk[..]);
                bytes[(offset - start) as usize] ^= 0xff;
                this.fault = None;
                Poll::Ready(Some(Ok(bytes.freeze())))
            }
            Some(StreamFault::Truncate { keep }) if end > keep => {
                this.done = true;
                this.pos = keep;
                let kept = chunk.slice(..(keep - start) as usize);
                Poll::Ready(if kept.is_empty() {
                    None
                } else {
                    Some(Ok(kept))
                })
            }
            Some(StreamFault::BreakAfter { after }) if end > after => {
                this.pos = after;
                let kept = chunk.slice(..(after - start) as usize);
                if kept.is_empty() {
                    this.broken(after)
                } else {
                    Poll::Ready(Some(Ok(kept)))
                }
            }
            _ => Poll::Ready(Some(Ok(chunk))),
        }
    }
}
