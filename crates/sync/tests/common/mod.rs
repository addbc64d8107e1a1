//! Helpers shared by the model and fault tests: reading a database's contents, a remote's cursor, and
//! what a remote holds (by pulling it into a fresh database).

#![allow(dead_code)]

use std::collections::BTreeMap;

use strata_engine::{EntryKey, Kind, Rev, Strata, Value};
use strata_remote::Remote;
use strata_sync::layout::{cursor_name, CursorDoc};
use strata_sync::{mirror_name, PullOptions};

/// Everything a revision holds outside internal (`_`) spaces.
pub type Contents = BTreeMap<EntryKey, Value>;

/// The contents of `rev`, without internal spaces.
pub fn contents(db: &Strata, rev: &Rev) -> Contents {
    let mut out = Contents::new();
    for cs in db.snapshot(rev).unwrap() {
        for (k, v) in cs.unwrap().puts {
            if !k.space.starts_with('_') {
                out.insert(k, v);
            }
        }
    }
    out
}

/// The contents of a branch's head, or empty if the branch does not exist.
pub fn branch_contents(db: &Strata, branch: &str) -> Contents {
    if db.branch_exists(branch).unwrap() {
        contents(db, &Rev::head(branch))
    } else {
        Contents::new()
    }
}

/// A branch's head, or `None` if it does not exist.
pub fn head(db: &Strata, branch: &str) -> Option<u64> {
    match db.branch_info(branch) {
        Ok(i) => Some(i.head),
        Err(strata_engine::Error::BranchNotFound(_)) => None,
        Err(e) => panic!("branch_info({branch}): {e}"),
    }
}

/// The mirror of `main` on remote `hub`.
pub fn mirror() -> String {
    mirror_name("hub", "main")
}

/// What a database holds of `main` and its mirror: heads and contents.
#[derive(Debug, PartialEq)]
pub struct LocalState {
    pub main_head: Option<u64>,
    pub mirror_head: Option<u64>,
    pub main: Contents,
    pub mirror: Contents,
}

pub fn local_state(db: &Strata) -> LocalState {
    LocalState {
        main_head: head(db, "main"),
        mirror_head: head(db, &mirror()),
        main: branch_contents(db, "main"),
        mirror: branch_contents(db, &mirror()),
    }
}

/// The raw cursor bytes of a branch (`None` if the remote has no such branch).
pub async fn cursor_bytes(remote: &dyn Remote, branch: &str) -> Option<Vec<u8>> {
    remote
        .read_cursor(&cursor_name(branch))
        .await
        .unwrap()
        .map(|c| c.value.to_vec())
}

/// The parsed cursor of a branch.
pub async fn cursor_doc(remote: &dyn Remote, branch: &str) -> Option<CursorDoc> {
    cursor_bytes(remote, branch)
        .await
        .map(|b| CursorDoc::parse(branch, &b).unwrap())
}

/// What the remote holds for `main`: pulled into a fresh database. Empty if the remote has no `main`.
pub async fn remote_contents(remote: &dyn Remote) -> Contents {
    if cursor_bytes(remote, "main").await.is_none() {
        return Contents::new();
    }
    let db = Strata::open_temp().unwrap();
    strata_sync::pull_from(&db, remote, "hub", "main", &PullOptions::default())
        .await
        .unwrap();
    let m = contents(&db, &Rev::head(mirror()));
    assert_eq!(
        m,
        contents(&db, &Rev::head("main")),
        "a fresh pull must equal its mirror"
    );
    m
}

/// A KV key in space `default`.
pub fn kv(key: &str) -> EntryKey {
    EntryKey::new("default", Kind::Kv, key)
}

/// The ids of the events of a space, in log order, with their sequence numbers.
pub fn event_ids(db: &Strata, branch: &str, space: &str) -> Vec<(u64, u64)> {
    db.on(branch)
        .space(space)
        .unwrap()
        .event_range(1, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.id))
        .collect()
}

/// Runs a future to completion on a fresh current-thread runtime (for proptest bodies).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The non-event entries of some contents, and per space the events as `(seq, id)` in sequence order.
pub fn split_events(c: &Contents) -> (Contents, BTreeMap<String, Vec<(u64, u64)>>) {
    let mut rest = Contents::new();
    let mut events: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for (k, v) in c {
        if k.kind == Kind::Event {
            let seq: u64 = k.key.parse().expect("event keys are sequence numbers");
            let id = v
                .get("id")
                .and_then(Value::as_i64)
                .expect("events carry an id") as u64;
            events.entry(k.space.clone()).or_default().push((seq, id));
        } else {
            rest.insert(k.clone(), v.clone());
        }
    }
    (rest, events)
}

/// Checks every space's log is numbered 1, 2, 3, … with no id twice; returns all event ids.
pub fn check_event_logs(c: &Contents, who: &str) -> std::collections::BTreeSet<u64> {
    let (_, events) = split_events(c);
    let mut ids = std::collections::BTreeSet::new();
    for (space, log) in &events {
        for (i, (seq, id)) in log.iter().enumerate() {
            assert_eq!(
                *seq,
                i as u64 + 1,
                "{who}: space {space} log has a gap: {log:?}"
            );
            assert!(ids.insert(*id), "{who}: event {id} appears twice");
        }
    }
    ids
}

/// Registers every backend this build has (folders, buckets, memory://), once per test process.
pub fn init() {
    strata_sync::set_connector(std::sync::Arc::new(strata_remotes::Remotes::new()));
}
