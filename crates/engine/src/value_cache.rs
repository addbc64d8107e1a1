//! The value cache behind [`crate::ReadSnapshot::get`]: decoded values of keys in committed views,
//! kept in memory so that hot point reads skip SQLite.
//!
//! **Why it needs no invalidation.** A view is a list of segments `(branch id, lo, hi]` (see
//! [`crate::store`]), and the value of a key in a view is the newest row inside them. Every write
//! lands at a version above its branch's head, a view's `hi` never exceeds the head of its branch,
//! branch ids are never reused, and a branch's rows are only removed when no live branch reads them
//! (so no view can be resolved to them). The answer for a given (segments, key) therefore never
//! changes once committed: a commit makes new views (a new `hi`) and so new cache keys, and the old
//! entries simply stop being asked for. The model test in `tests/value_cache.rs` holds reads through
//! the cache to reads without it across writes, forks, merges, deletes and syncs.
//!
//! **Bounded memory.** Entries live in two generations. Inserts go to the current one; when it holds
//! half the budget, the previous generation is dropped and the current one takes its place. A hit in
//! the previous generation moves the entry back to the current one, so a working set under half the
//! budget stays resident, and a scan evicts at most one generation's worth of it. Views are numbered
//! once (interned), so an entry's key is a number and the key's text, not the segment list.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use hashbrown::HashTable;

use crate::store::Segment;
use crate::types::Kind;
use crate::value::Value;

/// Bytes an entry costs beyond its texts and encoded value (the entry, the table slot, the
/// allocations' headers); an estimate that keeps tiny values from looking free.
const ENTRY_OVERHEAD: usize = 96;

/// Bytes a view costs beyond its segments (the map slot, the key's allocation).
const VIEW_OVERHEAD: usize = 64;

/// Most views interned at once; past it the cache starts over (a server reading a few branches at
/// their heads interns one view per branch per commit).
const MAX_VIEWS: usize = 4096;

/// Hits and misses since the handle was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from memory.
    pub hits: u64,
    /// Reads that went to SQLite (and were then kept).
    pub misses: u64,
    /// Bytes held now (estimated).
    pub bytes: u64,
}

struct Entry {
    hash: u64,
    view: u64,
    kind: Kind,
    /// The space's length in `text`.
    space_len: u32,
    /// The space then the key, in one allocation: a lookup follows one pointer, not two (under
    /// load, each is a likely cache miss).
    text: Box<str>,
    /// Shared, so a hit clones a pointer under the lock and the value after it.
    value: Arc<Option<Value>>,
    bytes: usize,
}

impl Entry {
    fn is(&self, hash: u64, view: u64, kind: Kind, space: &str, key: &str) -> bool {
        self.hash == hash
            && self.view == view
            && self.kind == kind
            && self.space_len as usize == space.len()
            && self.text.len() == space.len() + key.len()
            && self.text.starts_with(space)
            && self.text.ends_with(key)
    }
}

#[derive(Default)]
struct Generation {
    table: HashTable<Entry>,
    bytes: usize,
}

impl Generation {
    fn insert(&mut self, e: Entry) {
        self.bytes += e.bytes;
        self.table.insert_unique(e.hash, e, |e| e.hash);
    }
}

#[derive(Default)]
struct State {
    views: HashMap<Vec<Segment>, u64>,
    /// What `views` holds, counted in the budget (a deep lineage has many segments).
    view_bytes: usize,
    next_view: u64,
    cur: Generation,
    prev: Generation,
}

/// See the module documentation.
pub(crate) struct ValueCache {
    budget: usize,
    hasher: RandomState,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Bytes held, as of the last change (for [`ValueCache::stats`] without the lock).
    bytes: AtomicU64,
}

impl ValueCache {
    /// A cache holding about `budget` bytes.
    pub(crate) fn new(budget: usize) -> ValueCache {
        ValueCache {
            budget,
            hasher: RandomState::new(),
            state: Mutex::new(State::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The number of a view (its segments), for the entries read in it.
    pub(crate) fn view_id(&self, segs: &[Segment]) -> u64 {
        let mut st = self.state();
        if let Some(id) = st.views.get(segs) {
            return *id;
        }
        let cost = VIEW_OVERHEAD + std::mem::size_of_val(segs);
        if st.views.len() >= MAX_VIEWS || st.view_bytes + cost > self.budget / 8 {
            // Start over: entries of forgotten views could never be asked for again. Numbers
            // keep counting, so a number a snapshot holds never means other segments.
            st.views.clear();
            st.view_bytes = 0;
            st.cur = Generation::default();
            st.prev = Generation::default();
        }
        st.next_view += 1;
        let id = st.next_view;
        st.views.insert(segs.to_vec(), id);
        st.view_bytes += cost;
        self.bytes.store(
            (st.cur.bytes + st.prev.bytes + st.view_bytes) as u64,
            Relaxed,
        );
        id
    }

    fn hash(&self, view: u64, kind: Kind, space: &str, key: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        view.hash(&mut h);
        kind.code().hash(&mut h);
        space.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    }

    /// The cached answer for `key` in `view`: `Some(None)` is a key known to be absent.
    pub(crate) fn get(
        &self,
        view: u64,
        kind: Kind,
        space: &str,
        key: &str,
    ) -> Option<Option<Value>> {
        let hash = self.hash(view, kind, space, key);
        let eq = |e: &Entry| e.is(hash, view, kind, space, key);
        let mut st = self.state();
        let found = match st.cur.table.find(hash, eq) {
            Some(e) => Some(e.value.clone()),
            None => match st.prev.table.find_entry(hash, eq) {
                Ok(occupied) => {
                    let (e, _) = occupied.remove();
                    st.prev.bytes -= e.bytes;
                    let v = e.value.clone();
                    self.keep(&mut st, e);
                    Some(v)
                }
                Err(_) => None,
            },
        };
        drop(st);
        match found {
            Some(_) => self.hits.fetch_add(1, Relaxed),
            None => self.misses.fetch_add(1, Relaxed),
        };
        found.map(|v| (*v).clone())
    }

    /// Keeps the answer read for `key` in `view`.
    pub(crate) fn put(&self, view: u64, kind: Kind, space: &str, key: &str, value: &Option<Value>) {
        let bytes = ENTRY_OVERHEAD + space.len() + key.len() + value.as_ref().map_or(0, held);
        // A value that would fill a generation by itself is read from SQLite each time.
        if bytes > self.budget / 8 {
            return;
        }
        let hash = self.hash(view, kind, space, key);
        let e = Entry {
            hash,
            view,
            kind,
            space_len: space.len() as u32,
            text: [space, key].concat().into(),
            value: Arc::new(value.clone()),
            bytes,
        };
        let mut st = self.state();
        let eq = |x: &Entry| x.is(hash, view, kind, space, key);
        // Two readers may miss the same key at once: keep one entry.
        if st.cur.table.find(hash, eq).is_some() {
            return;
        }
        if let Ok(occupied) = st.prev.table.find_entry(hash, eq) {
            let (old, _) = occupied.remove();
            st.prev.bytes -= old.bytes;
        }
        self.keep(&mut st, e);
    }

    fn keep(&self, st: &mut State, e: Entry) {
        if st.cur.bytes + e.bytes > self.budget / 2 {
            st.prev = std::mem::take(&mut st.cur);
        }
        st.cur.insert(e);
        self.bytes.store(
            (st.cur.bytes + st.prev.bytes + st.view_bytes) as u64,
            Relaxed,
        );
    }

    /// Hits, misses and bytes held; reads counters only (no lock).
    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
        }
    }
}

/// About what a decoded value holds in memory (its encoded size can be 30 times smaller: a small
/// integer is one byte of MessagePack and a 32-byte `Value`).
fn held(v: &Value) -> usize {
    const NODE: usize = std::mem::size_of::<Value>();
    NODE + match v {
        Value::String(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::Array(a) => a.iter().map(held).sum(),
        // A map entry: its key (a String and its bytes) and the tree's share of a node.
        Value::Object(m) => m.iter().map(|(k, v)| 24 + k.len() + 16 + held(v)).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(branch: i64, hi: u64) -> Vec<Segment> {
        vec![Segment { branch, lo: 0, hi }]
    }

    #[test]
    fn views_are_numbered_by_their_segments() {
        let c = ValueCache::new(1 << 20);
        let a = c.view_id(&seg(1, 5));
        assert_eq!(c.view_id(&seg(1, 5)), a);
        assert_ne!(c.view_id(&seg(1, 6)), a);
        assert_ne!(c.view_id(&seg(2, 5)), a);
    }

    #[test]
    fn answers_what_was_kept_and_tells_absent_from_unknown() {
        let c = ValueCache::new(1 << 20);
        let v = c.view_id(&seg(1, 5));
        assert_eq!(c.get(v, Kind::Kv, "s", "a"), None);
        c.put(v, Kind::Kv, "s", "a", &Some(Value::Int(7)));
        c.put(v, Kind::Kv, "s", "gone", &None);
        assert_eq!(c.get(v, Kind::Kv, "s", "a"), Some(Some(Value::Int(7))));
        assert_eq!(c.get(v, Kind::Kv, "s", "gone"), Some(None));
        // Another kind, space or view is another key.
        assert_eq!(c.get(v, Kind::Json, "s", "a"), None);
        assert_eq!(c.get(v, Kind::Kv, "t", "a"), None);
        assert_eq!(c.get(v + 1, Kind::Kv, "s", "a"), None);
        // The same text split elsewhere between space and key is another key.
        c.put(v, Kind::Kv, "ab", "c", &Some(Value::Int(1)));
        assert_eq!(c.get(v, Kind::Kv, "a", "bc"), None);
        assert_eq!(c.get(v, Kind::Kv, "ab", "c"), Some(Some(Value::Int(1))));
        let s = c.stats();
        assert_eq!((s.hits, s.misses), (3, 5));
    }

    #[test]
    fn memory_stays_within_the_budget_and_hot_keys_stay() {
        let budget = 64 * 1024;
        let c = ValueCache::new(budget);
        let v = c.view_id(&seg(1, 1));
        let big = Value::String("x".repeat(100));
        for i in 0..10_000 {
            c.put(v, Kind::Kv, "s", &format!("k{i}"), &Some(big.clone()));
            // One key read all along is never evicted.
            if c.get(v, Kind::Kv, "s", "hot").is_none() {
                c.put(v, Kind::Kv, "s", "hot", &Some(Value::Int(1)));
            }
            assert!(c.stats().bytes <= budget as u64, "{:?}", c.stats());
        }
        assert!(c.stats().misses < 5, "{:?}", c.stats());
        // The newest keys are there, the oldest are gone.
        assert!(c.get(v, Kind::Kv, "s", "k9999").is_some());
        assert!(c.get(v, Kind::Kv, "s", "k0").is_none());
        // A value too large for the budget is not kept; an array is charged its decoded size
        // (32 bytes a small integer), not its few encoded bytes.
        c.put(
            v,
            Kind::Kv,
            "s",
            "huge",
            &Some(Value::String("x".repeat(budget))),
        );
        assert!(c.get(v, Kind::Kv, "s", "huge").is_none());
        let ints = Value::Array((0..budget as i64 / 64).map(Value::Int).collect());
        assert!(held(&ints) >= budget / 2);
        c.put(v, Kind::Kv, "s", "ints", &Some(ints));
        assert!(c.get(v, Kind::Kv, "s", "ints").is_none());
        assert!(c.stats().bytes <= budget as u64, "{:?}", c.stats());
    }
}
