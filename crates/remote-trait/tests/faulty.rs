//! FaultyRemote: each kind of fault, the counters, and changing the plan at runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use strata_remote::{
    ByteStream, FailWhen, Failure, FaultPlan, FaultyRemote, InMemoryRemote, Op, Remote,
    RemoteError, RemoteExt, RemotePath, StreamFault,
};

fn p(s: &str) -> RemotePath {
    RemotePath::parse(s).unwrap()
}

fn setup() -> (InMemoryRemote, FaultyRemote<InMemoryRemote>) {
    let mem = InMemoryRemote::new();
    (mem.clone(), FaultyRemote::new(Arc::new(mem)))
}

/// Reads a body to the end: the bytes that arrived, and the error that ended it if any.
async fn drain(mut body: ByteStream) -> (Vec<u8>, Option<RemoteError>) {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => out.extend_from_slice(&c),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

fn pattern(n: usize) -> Bytes {
    (0..n).map(|i| (i % 253) as u8).collect::<Vec<u8>>().into()
}

#[tokio::test]
async fn fails_the_nth_operation_of_any_kind() {
    let (mem, f) = setup();
    f.arm(Failure::nth(3));
    f.put_bytes_if_absent(&p("a"), Bytes::from("a"))
        .await
        .unwrap(); // 1
    f.list_blobs("").await.unwrap(); // 2
    let err = f
        .put_bytes_if_absent(&p("b"), Bytes::from("b"))
        .await
        .unwrap_err(); // 3
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("injected"), "{err}");
    assert_eq!(
        mem.blob_count(),
        1,
        "a failure before the op stores nothing"
    );
    f.put_bytes_if_absent(&p("b"), Bytes::from("b"))
        .await
        .unwrap(); // 4: spent
    assert_eq!(mem.blob_count(), 2);
    let c = f.counts();
    assert_eq!(
        (
            c.get(Op::PutBlob),
            c.get(Op::ListBlobs),
            c.total(),
            c.injected
        ),
        (3, 1, 4, 1)
    );
}

#[tokio::test]
async fn fails_the_nth_operation_of_one_kind_with_a_chosen_error() {
    let (mem, f) = setup();
    f.arm(Failure::nth_of(Op::WriteCursor, 2).with_error(RemoteError::Unauthorized));
    let t = f
        .write_cursor(&p("c"), Bytes::from("1"), None)
        .await
        .unwrap();
    // Other kinds don't count.
    for _ in 0..3 {
        f.read_cursor(&p("c")).await.unwrap();
    }
    let err = f
        .write_cursor(&p("c"), Bytes::from("2"), Some(&t))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::Unauthorized(_)), "{err:?}");
    assert_eq!(mem.read_cursor(&p("c")).await.unwrap().unwrap().value, "1");
    f.write_cursor(&p("c"), Bytes::from("2"), Some(&t))
        .await
        .unwrap();
    assert_eq!(f.count(Op::WriteCursor), 3);
    assert_eq!(f.count(Op::ReadCursor), 3);
}

#[tokio::test]
async fn each_op_kind_can_be_failed() {
    let (_mem, f) = setup();
    let name = p("x");
    f.put_bytes_if_absent(&name, Bytes::from("x"))
        .await
        .unwrap();
    let t = f.write_cursor(&name, Bytes::from("x"), None).await.unwrap();
    for op in Op::ALL {
        f.arm(Failure::nth_of(op, 1).with_error(RemoteError::Other));
        let err = match op {
            Op::PutBlob => f.put_bytes_if_absent(&p("y"), Bytes::new()).await.err(),
            Op::GetBlob => f.get_blob(&name).await.err(),
            Op::ListBlobs => f.list_blobs("").await.err(),
            Op::DeleteBlob => f.delete_blob(&name).await.err(),
            Op::ReadCursor => f.read_cursor(&name).await.err(),
            Op::WriteCursor => f.write_cursor(&name, Bytes::new(), Some(&t)).await.err(),
            Op::ListCursors => f.list_cursors("").await.err(),
        };
        assert!(
            matches!(err, Some(RemoteError::Other(ref m)) if m.contains(op.method())),
            "{op}: {err:?}"
        );
    }
    assert_eq!(f.counts().injected, 7);
    // Nothing changed underneath.
    assert_eq!(f.get_bytes(&name).await.unwrap(), "x");
    assert!(!f.blob_exists(&p("y")).await.unwrap());
    assert_eq!(f.read_cursor(&name).await.unwrap().unwrap().token, t);
}

#[tokio::test]
async fn times_and_always() {
    let (_mem, f) = setup();
    f.arm(Failure::nth_of(Op::GetBlob, 2).times(2));
    f.put_bytes_if_absent(&p("a"), Bytes::from("a"))
        .await
        .unwrap();
    let mut results = Vec::new();
    for _ in 0..5 {
        results.push(f.get_bytes(&p("a")).await.is_ok());
    }
    assert_eq!(results, [true, false, false, true, true]);

    f.arm(Failure::always(Op::ListCursors));
    for _ in 0..10 {
        assert!(f.list_cursors("").await.is_err());
    }
    assert!(f.list_blobs("").await.is_ok());
    f.clear();
    assert!(f.list_cursors("").await.is_ok());
}

#[tokio::test]
async fn failures_can_target_a_prefix() {
    let (_mem, f) = setup();
    f.arm(Failure::nth_of(Op::PutBlob, 1).under("packs"));
    f.put_bytes_if_absent(&p("packsx/1"), Bytes::new())
        .await
        .unwrap(); // not under "packs"
    f.put_bytes_if_absent(&p("index/1"), Bytes::new())
        .await
        .unwrap();
    assert!(f
        .put_bytes_if_absent(&p("packs/1"), Bytes::new())
        .await
        .is_err());
    f.put_bytes_if_absent(&p("packs/1"), Bytes::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn put_fails_after_reaching_the_store() {
    let (mem, f) = setup();
    f.arm(Failure::nth_of(Op::PutBlob, 1).after_write());
    let err = f
        .put_bytes_if_absent(&p("a"), Bytes::from("body"))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    // The blob is there; a retry finds it.
    assert_eq!(mem.get_bytes(&p("a")).await.unwrap(), "body");
    let retry = f.put_bytes_if_absent(&p("a"), Bytes::from("body")).await;
    assert!(
        matches!(retry, Err(RemoteError::AlreadyExists(_))),
        "{retry:?}"
    );
    // If the inner op fails, its error wins.
    f.arm(
        Failure::nth_of(Op::PutBlob, 1)
            .after_write()
            .with_error(RemoteError::Corrupt),
    );
    let err = f
        .put_bytes_if_absent(&p("a"), Bytes::from("other"))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::AlreadyExists(_)), "{err:?}");
}

#[tokio::test]
async fn cursor_write_fails_after_reaching_the_store() {
    let (mem, f) = setup();
    let t1 = f
        .write_cursor(&p("head"), Bytes::from("1"), None)
        .await
        .unwrap();
    f.arm(Failure::nth_of(Op::WriteCursor, 1).after_write());
    assert!(f
        .write_cursor(&p("head"), Bytes::from("2"), Some(&t1))
        .await
        .is_err());
    let now = mem.read_cursor(&p("head")).await.unwrap().unwrap();
    assert_eq!(now.value, "2", "the write reached the store");
    // The caller retrying with its old token now conflicts: it must re-read to learn it had won.
    let retry = f
        .write_cursor(&p("head"), Bytes::from("2"), Some(&t1))
        .await;
    assert!(matches!(retry, Err(RemoteError::Conflict(_))), "{retry:?}");
    assert!(f.plan().is_idle());
}

#[tokio::test]
async fn plan_fields_and_runtime_changes() {
    let (_mem, f) = setup();
    assert!(f.plan().is_idle());
    // Armed failures count from when they are armed, not from the start.
    for _ in 0..5 {
        f.list_blobs("").await.unwrap();
    }
    f.set_plan(FaultPlan::new().with_failure(Failure::nth_of(Op::ListBlobs, 2)));
    assert!(!f.plan().is_idle());
    assert!(f.list_blobs("").await.is_ok());
    assert!(f.list_blobs("").await.is_err());
    assert!(f.plan().is_idle(), "a spent failure leaves the plan idle");
    // set_plan replaces; update_plan edits in place.
    f.arm(Failure::nth(1));
    f.set_plan(FaultPlan::new());
    assert!(f.list_blobs("").await.is_ok());
    f.update_plan(|plan| plan.add_failure(Failure::nth(1).with_error(RemoteError::Invalid)));
    assert!(matches!(
        f.list_blobs("").await,
        Err(RemoteError::Invalid(_))
    ));
    // Several failures striking together: the first armed decides.
    f.arm(Failure::nth(1).with_error(RemoteError::Conflict));
    f.arm(Failure::nth(1).with_error(RemoteError::Corrupt));
    assert!(matches!(
        f.list_blobs("").await,
        Err(RemoteError::Conflict(_))
    ));
    assert!(f.list_blobs("").await.is_ok());
    assert_eq!(FailWhen::default(), FailWhen::Before);
}

#[tokio::test]
async fn counters_since_and_reset() {
    let (_mem, f) = setup();
    f.put_bytes_if_absent(&p("a"), Bytes::new()).await.unwrap();
    let before = f.counts();
    f.get_bytes(&p("a")).await.unwrap();
    f.get_bytes(&p("a")).await.unwrap();
    f.blob_exists(&p("b")).await.unwrap();
    let step = f.counts().since(&before);
    assert_eq!(
        (step.get(Op::GetBlob), step.get(Op::PutBlob), step.total()),
        (3, 0, 3)
    );
    f.reset_counts();
    assert_eq!(f.counts().total(), 0);
}

#[tokio::test]
async fn clones_share_the_plan_and_counters() {
    let (_mem, f) = setup();
    let as_dyn: Arc<dyn Remote> = Arc::new(f.clone());
    f.arm(Failure::nth(1));
    assert!(as_dyn.list_blobs("").await.is_err());
    assert_eq!(f.count(Op::ListBlobs), 1);
    assert!(f.to_string().starts_with("faulty(memory://"), "{f}");
    assert!(format!("{f:?}").contains("FaultyRemote"));
    // Wrapping an Arc<dyn Remote> works too.
    let over_dyn: FaultyRemote = FaultyRemote::new(as_dyn);
    assert!(
        over_dyn.to_string().starts_with("faulty(faulty(memory://"),
        "{over_dyn}"
    );
}

#[tokio::test]
async fn latency_per_op() {
    let (_mem, f) = setup();
    f.put_bytes_if_absent(&p("a"), Bytes::new()).await.unwrap();
    f.set_plan(
        FaultPlan::new()
            .with_latency(Duration::from_millis(30))
            .with_op_latency(Op::GetBlob, Duration::from_millis(120)),
    );
    let t = Instant::now();
    f.list_blobs("").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(30));
    let t = Instant::now();
    f.get_bytes(&p("a")).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(120));
    // Latency delays a failure too (a slow timeout).
    f.arm(Failure::nth(1));
    let t = Instant::now();
    assert!(f.list_blobs("").await.is_err());
    assert!(t.elapsed() >= Duration::from_millis(30));
    f.clear();
    let t = Instant::now();
    f.list_blobs("").await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(30));
}

#[tokio::test]
async fn flip_a_byte_of_the_next_get() {
    let (_mem, f) = setup();
    let body = pattern(200_000); // several chunks
    f.put_bytes_if_absent(&p("blob"), body.clone())
        .await
        .unwrap();
    f.corrupt_next_get(StreamFault::FlipByte { offset: 150_000 });
    let (got, err) = drain(f.get_blob(&p("blob")).await.unwrap()).await;
    assert!(err.is_none());
    assert_eq!(got.len(), body.len());
    let diffs: Vec<usize> = (0..got.len()).filter(|&i| got[i] != body[i]).collect();
    assert_eq!(diffs, [150_000]);
    assert_eq!(got[150_000], body[150_000] ^ 0xff);
    // One-shot.
    assert_eq!(f.get_bytes(&p("blob")).await.unwrap(), body);
    // Past the end: a junk byte is added.
    f.corrupt_next_get(StreamFault::FlipByte { offset: 1 << 40 });
    let (got, _) = drain(f.get_blob(&p("blob")).await.unwrap()).await;
    assert_eq!(got.len(), body.len() + 1);
    assert_eq!(&got[..body.len()], &body[..]);
}

#[tokio::test]
async fn truncate_the_next_get() {
    let (_mem, f) = setup();
    let body = pattern(200_000);
    f.put_bytes_if_absent(&p("blob"), body.clone())
        .await
        .unwrap();
    for keep in [0u64, 1, 65_536, 100_000, 199_999] {
        f.corrupt_next_get(StreamFault::Truncate { keep });
        let (got, err) = drain(f.get_blob(&p("blob")).await.unwrap()).await;
        assert!(err.is_none(), "{keep}: a truncated stream ends cleanly");
        assert_eq!(&got[..], &body[..keep as usize], "{keep}");
    }
    f.corrupt_next_get(StreamFault::Truncate { keep: 500_000 });
    assert_eq!(
        drain(f.get_blob(&p("blob")).await.unwrap()).await.0,
        body,
        "a longer keep changes nothing"
    );
}

#[tokio::test]
async fn break_the_next_get_midway() {
    let (_mem, f) = setup();
    let body = pattern(200_000);
    f.put_bytes_if_absent(&p("blob"), body.clone())
        .await
        .unwrap();
    for after in [0u64, 70_000, 200_000, 300_000] {
        f.corrupt_next_get(StreamFault::BreakAfter { after });
        let (got, err) = drain(f.get_blob(&p("blob")).await.unwrap()).await;
        let kept = (after as usize).min(body.len());
        assert_eq!(&got[..], &body[..kept], "{after}");
        assert!(
            err.as_ref().is_some_and(|e| e.is_retryable()),
            "{after}: {err:?}"
        );
    }
    // Through the convenience reader, the error surfaces.
    f.corrupt_next_get(StreamFault::BreakAfter { after: 10 });
    assert!(f.get_bytes(&p("blob")).await.unwrap_err().is_retryable());
}

#[tokio::test]
async fn stream_faults_can_target_a_prefix_and_queue() {
    let (_mem, f) = setup();
    for name in ["manifest", "packs/1"] {
        f.put_bytes_if_absent(&p(name), pattern(1000))
            .await
            .unwrap();
    }
    f.corrupt_next_get_under("packs", StreamFault::Truncate { keep: 10 });
    f.corrupt_next_get_under("packs", StreamFault::FlipByte { offset: 0 });
    assert_eq!(f.get_bytes(&p("manifest")).await.unwrap(), pattern(1000));
    assert_eq!(f.get_bytes(&p("packs/1")).await.unwrap().len(), 10);
    let second = f.get_bytes(&p("packs/1")).await.unwrap();
    assert_eq!((second.len(), second[0]), (1000, pattern(1)[0] ^ 0xff));
    assert_eq!(f.get_bytes(&p("packs/1")).await.unwrap(), pattern(1000));
    // A plan can carry one from the start.
    f.set_plan(FaultPlan::new().with_corrupt_next_get(StreamFault::Truncate { keep: 3 }));
    assert_eq!(f.get_bytes(&p("manifest")).await.unwrap().len(), 3);
    // A failed get does not consume the stream fault.
    f.set_plan(
        FaultPlan::new()
            .with_corrupt_next_get(StreamFault::Truncate { keep: 3 })
            .with_failure(Failure::nth(1)),
    );
    assert!(f.get_bytes(&p("manifest")).await.is_err());
    assert_eq!(f.get_bytes(&p("manifest")).await.unwrap().len(), 3);
}
