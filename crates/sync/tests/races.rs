//! Deterministic race tests: at every step boundary of push and pull, a second handle on the same
//! database commits. Afterwards every acknowledged write is on the branch, and after one more push it
//! is on the remote (checked with a fresh database that pulls it).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use strata_engine::{Strata, Value};
use strata_remote::{Failure, FaultyRemote, InMemoryRemote, Op, Remote, RemoteError};
use strata_sync::{Hook, PullOptions, PushOptions, SyncError};

const PUSH_STEPS: &[&str] = &[
    "push:before-read-cursor",
    "push:after-read-cursor",
    "push:after-own-fetch",
    "push:after-build",
    "push:after-upload",
    "push:before-cas",
    "push:after-cas",
];

const PULL_STEPS: &[&str] = &[
    "pull:before-fetch",
    "pull:after-fetch",
    "pull:after-own-check",
    "pull:before-merge",
];

/// A hook that commits `race:<step>` on `branch` through a second handle the first time `step` is
/// reached, and records every step it saw.
fn racing_hook(
    db: &Strata,
    branch: &str,
    step: &'static str,
) -> (Hook, Arc<AtomicBool>, Arc<Mutex<Vec<&'static str>>>) {
    let other = Strata::open(db.path()).unwrap();
    let branch = branch.to_string();
    let fired = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (f, s) = (fired.clone(), seen.clone());
    let hook = Hook(Some(Arc::new(move |at: &'static str| {
        s.lock().unwrap().push(at);
        if at == step && !f.swap(true, Ordering::SeqCst) {
            other
                .on(&branch)
                .kv_put(&format!("race:{step}"), "acknowledged")
                .unwrap();
        }
    })));
    (hook, fired, seen)
}

fn get(db: &Strata, key: &str) -> Option<Value> {
    db.main().kv_get(key).unwrap()
}

async fn push(
    db: &Strata,
    remote: &dyn Remote,
    hook: Hook,
) -> Result<strata_sync::PushReport, SyncError> {
    strata_sync::push_to(
        db,
        remote,
        "hub",
        "main",
        &PushOptions {
            hook,
            ..Default::default()
        },
    )
    .await
}

async fn pull(
    db: &Strata,
    remote: &dyn Remote,
    hook: Hook,
) -> Result<strata_sync::PullReport, SyncError> {
    strata_sync::pull_from(
        db,
        remote,
        "hub",
        "main",
        &PullOptions {
            hook,
            ..Default::default()
        },
    )
    .await
}

/// Pulls `main` from the remote into a brand-new database: what a fresh clone sees.
async fn fresh_copy(remote: &dyn Remote) -> Strata {
    let db = Strata::open_temp().unwrap();
    db.delete_branch("main").unwrap();
    pull(&db, remote, Hook::default()).await.unwrap();
    db
}

/// Pushes until the remote holds the branch (at most a few rounds: a push racing a commit may say
/// `up_to_date` for the version it read and leave the new commit for the next one).
async fn push_until_equal(db: &Strata, remote: &dyn Remote) {
    for _ in 0..3 {
        push(db, remote, Hook::default()).await.unwrap();
        let st = strata_sync::status_with(db, remote, "hub", "main")
            .await
            .unwrap();
        if st.ahead_entries == 0 {
            return;
        }
    }
    panic!("three pushes did not bring the remote up to the branch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_at_any_push_step_is_kept_and_pushed_next_time() {
    common::init();
    let mut covered = std::collections::BTreeSet::new();
    for &step in PUSH_STEPS {
        for own_unacked in [false, true] {
            let remote = InMemoryRemote::new();
            let db = Strata::open_temp().unwrap();
            db.main().kv_put("base", 1).unwrap();
            push(&db, &remote, Hook::default()).await.unwrap();
            db.main().kv_put("local", 2).unwrap();
            if own_unacked {
                // A push whose cursor write landed but whose reply was lost: the next push must take
                // the "own blob" path (fetch its own version into the mirror first).
                let faulty = FaultyRemote::new(Arc::new(remote.clone()) as Arc<dyn Remote>);
                faulty.arm(
                    Failure::nth_of(Op::WriteCursor, 1)
                        .after_write()
                        .with_error(RemoteError::Other),
                );
                assert!(push(&db, &faulty, Hook::default()).await.is_err());
                db.main().kv_put("local2", 3).unwrap();
            }
            let (hook, fired, seen) = racing_hook(&db, "main", step);
            let res = push(&db, &remote, hook).await;
            let seen = seen.lock().unwrap().clone();
            if !fired.load(Ordering::SeqCst) {
                assert!(!seen.contains(&step), "{step} seen but not fired");
                continue; // this path does not pass through that step
            }
            covered.insert(step);
            if let Err(e) = &res {
                // A race may make the push fail cleanly, never silently.
                assert!(
                    e.is_retryable() || matches!(e, SyncError::Rejected(_)),
                    "{step}: {e}"
                );
            }
            let key = format!("race:{step}");
            assert_eq!(
                get(&db, &key),
                Some(Value::from("acknowledged")),
                "{step}: lost locally"
            );
            assert_eq!(get(&db, "local"), Some(Value::from(2)), "{step}");
            push_until_equal(&db, &remote).await;
            let copy = fresh_copy(&remote).await;
            assert_eq!(
                get(&copy, &key),
                Some(Value::from("acknowledged")),
                "{step}: never pushed"
            );
            assert_eq!(get(&copy, "local"), Some(Value::from(2)), "{step}");
            if own_unacked {
                assert_eq!(get(&copy, "local2"), Some(Value::from(3)), "{step}");
            }
        }
    }
    for step in PUSH_STEPS {
        assert!(covered.contains(step), "no scenario reached {step}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_at_any_pull_step_is_kept_and_pushed_next_time() {
    common::init();
    let mut covered = std::collections::BTreeSet::new();
    for &step in PULL_STEPS {
        // fast_forward: B is an untouched clone (the fast-forward path); otherwise B has a commit of its
        // own (the merge path). own_landed: B's own earlier push landed but was never recorded.
        for (fast_forward, own_landed) in [(true, false), (false, false), (false, true)] {
            let remote = InMemoryRemote::new();
            let a = Strata::open_temp().unwrap();
            a.main().kv_put("a1", 1).unwrap();
            push(&a, &remote, Hook::default()).await.unwrap();
            let b = fresh_copy(&remote).await;
            if !fast_forward {
                b.main().kv_put("b1", 1).unwrap();
                push(&b, &remote, Hook::default()).await.unwrap();
                pull(&a, &remote, Hook::default()).await.unwrap();
                b.main().kv_put("b2", 2).unwrap();
            }
            if own_landed {
                // B pushes, and the reply is lost: the cursor moved, B's mirror did not.
                let faulty = FaultyRemote::new(Arc::new(remote.clone()) as Arc<dyn Remote>);
                faulty.arm(
                    Failure::nth_of(Op::WriteCursor, 1)
                        .after_write()
                        .with_error(RemoteError::Other),
                );
                assert!(push(&b, &faulty, Hook::default()).await.is_err());
                b.main().kv_put("b3", 3).unwrap();
                pull(&a, &remote, Hook::default()).await.unwrap();
            }
            a.main().kv_put("a2", 2).unwrap();
            push(&a, &remote, Hook::default()).await.unwrap();
            let (hook, fired, seen) = racing_hook(&b, "main", step);
            let res = pull(&b, &remote, hook).await;
            let seen = seen.lock().unwrap().clone();
            if !fired.load(Ordering::SeqCst) {
                assert!(!seen.contains(&step), "{step} seen but not fired");
                continue;
            }
            covered.insert(step);
            res.unwrap_or_else(|e| panic!("{step} (ff={fast_forward}): {e}"));
            let key = format!("race:{step}");
            assert_eq!(
                get(&b, &key),
                Some(Value::from("acknowledged")),
                "{step}: lost locally"
            );
            assert_eq!(
                get(&b, "a2"),
                Some(Value::from(2)),
                "{step}: pull incomplete"
            );
            // One more pull may be needed if the race commit landed after the merge decided.
            let _ = pull(&b, &remote, Hook::default()).await;
            push_until_equal(&b, &remote).await;
            let copy = fresh_copy(&remote).await;
            assert_eq!(
                get(&copy, &key),
                Some(Value::from("acknowledged")),
                "{step} (ff={fast_forward}): never pushed"
            );
            if !fast_forward {
                assert_eq!(get(&copy, "b2"), Some(Value::from(2)), "{step}");
            }
            if own_landed {
                assert_eq!(get(&copy, "b3"), Some(Value::from(3)), "{step}");
            }
        }
    }
    for step in PULL_STEPS {
        assert!(covered.contains(step), "no scenario reached {step}");
    }
}

#[tokio::test]
async fn fast_forward_keeps_the_branch_identity_and_its_forks() {
    common::init();
    let remote = InMemoryRemote::new();
    let a = Strata::open_temp().unwrap();
    a.main().kv_put("k", 1).unwrap();
    push(&a, &remote, Hook::default()).await.unwrap();
    let b = fresh_copy(&remote).await;
    let created = b.branch_info("main").unwrap().created_micros;
    b.fork_branch("main", "experiment").unwrap();
    for i in 2..5 {
        a.main().kv_put("k", i).unwrap();
        push(&a, &remote, Hook::default()).await.unwrap();
        let r = pull(&b, &remote, Hook::default()).await.unwrap();
        assert!(r.fast_forward && !r.created, "{r:?}");
    }
    let info = b.branch_info("main").unwrap();
    assert_eq!(
        info.created_micros, created,
        "a pull must not re-create the branch"
    );
    assert_eq!(get(&b, "k"), Some(Value::from(4)));
    let fork = b.branch_info("experiment").unwrap();
    assert_eq!(fork.parent.as_deref(), Some("main"), "{fork:?}");
    assert_eq!(
        b.on("experiment").kv_get("k").unwrap(),
        Some(Value::from(1))
    );
}
