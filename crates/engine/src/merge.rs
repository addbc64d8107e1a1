//! Diff and three-way merge.
//!
//! Both start from the set of keys that can differ between two views. When the views share lineage
//! segments, only rows outside their common coverage can differ, and the `(branch, version)` index finds
//! those rows, so the cost follows the size of the change. When that set is large (or the views share
//! nothing) both views are scanned in key order instead, page by page.
//!
//! Memory stays bounded by a page either way: candidate keys are collected by SQLite in a temporary
//! table (on disk, `temp_store=FILE`) and read back in key order a page at a time, and event logs are
//! merged by streaming both tails.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::{params, Connection};

use crate::changes::CHANGE_PAGE_BYTES;
use crate::db::{event_key, rev_view, Strata};
use crate::error::{Error, Result};
use crate::store::{self, BranchRow, ScanRange, Scanner, View};
use crate::types::{
    BranchDiff, DiffEntry, EntryKey, Kind, MergeConflict, MergeReport, MergeStrategy, Rev,
    SpaceDiff,
};
use crate::value::Value;

/// Above this many candidate rows, diff and merge switch from point look-ups to a full ordered scan.
const MAX_CANDIDATE_ROWS: u64 = 200_000;

/// Keys that may differ between two views.
enum Candidates {
    /// In the connection's candidate table (`temp.strata_candidates`).
    Table,
    FullScan,
}

/// Candidate keys read back per page.
const CANDIDATE_PAGE: usize = 1024;

/// Events read per page when merging event logs.
const EVENT_PAGE: usize = 512;

/// The per-connection table that holds a diff's candidate keys, deduplicated and in key order. A
/// connection serves one operation at a time, so one table per connection suffices; it is emptied
/// before and after each use.
pub(crate) const CANDIDATES_TABLE_SQL: &str = "CREATE TEMP TABLE IF NOT EXISTS strata_candidates(\
     space TEXT NOT NULL, kind INTEGER NOT NULL, key TEXT NOT NULL, PRIMARY KEY (space, kind, key)) WITHOUT ROWID";

/// Adds the keys of the rows of `branch` with versions in `(lo, hi]` to the candidate table, reading
/// them by their commits' rowid ranges (`CROSS JOIN` keeps `commits` as the outer loop, and the unary
/// `+` keeps the `(branch, …)` index out of it), so the cost is the rows in the range.
pub(crate) const CANDIDATES_FILL_SQL: &str =
    "INSERT OR IGNORE INTO temp.strata_candidates(space, kind, key) \
     SELECT e.space, e.kind, e.key FROM commits c CROSS JOIN entries e \
     ON e.rowid BETWEEN c.first_row AND c.last_row AND +e.branch=c.branch AND +e.version=c.version \
     WHERE c.branch=?1 AND c.version>?2 AND c.version<=?3";

/// A page of candidate keys after the last one read, in `EntryKey` order (space, kind, key).
pub(crate) const CANDIDATES_PAGE_SQL: &str = "SELECT space, kind, key FROM temp.strata_candidates \
     WHERE (space, kind, key) > (?1, ?2, ?3) ORDER BY space, kind, key LIMIT ?4";

/// The row ranges one view covers and the other does not.
fn uncovered(a: &View, b: &View) -> Vec<(i64, u64, u64)> {
    let mut out = Vec::new();
    for s in &a.segs {
        match b.covers(s.branch) {
            None => out.push((s.branch, s.lo, s.hi)),
            Some((_, hi2)) if hi2 < s.hi => out.push((s.branch, hi2.max(s.lo), s.hi)),
            Some(_) => {}
        }
    }
    out
}

thread_local! {
    static FORCE_FULL_SCAN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Test hook: make diff and merge on this thread always take the full ordered-scan path, so tests can
/// check that both paths agree.
#[doc(hidden)]
pub fn force_full_scan_on_this_thread(on: bool) {
    FORCE_FULL_SCAN.with(|f| f.set(on));
}

/// The cheapest candidate set for a diff of `a` and `b`: its row ranges, the recorded difference
/// whose keys it adds, and its size (rows; keys of a recorded difference count one each).
#[allow(clippy::type_complexity)]
fn plan_candidates(
    conn: &Connection,
    a: &View,
    b: &View,
) -> Result<(Vec<(i64, u64, u64)>, Option<(i64, i64)>, u64)> {
    let mut parts = uncovered(a, b);
    parts.extend(uncovered(b, a));
    let mut total = rows_in(conn, &parts)?;
    // Two points recorded as equal (merges both ways) anchor a cheaper candidate set when the
    // lineages alone share little.
    if let Some(anchored) = anchor_parts(conn, a, b)? {
        let t = rows_in(conn, &anchored)?;
        if t < total {
            parts = anchored;
            total = t;
        }
    }
    // A recorded difference (the keys where a merge's result differs from its source) anchors the
    // same way, plus its keys.
    let mut recorded = None;
    if let Some((anchored, pair, keys)) = diff_anchor_parts(conn, a, b)? {
        let t = rows_in(conn, &anchored)?.saturating_add(keys);
        if t < total {
            parts = anchored;
            total = t;
            recorded = Some(pair);
        }
    }
    Ok((parts, recorded, total))
}

fn candidates(conn: &Connection, a: &View, b: &View) -> Result<Candidates> {
    if FORCE_FULL_SCAN.with(|f| f.get()) {
        return Ok(Candidates::FullScan);
    }
    let (parts, recorded, total) = plan_candidates(conn, a, b)?;
    if total > MAX_CANDIDATE_ROWS {
        return Ok(Candidates::FullScan);
    }
    conn.execute_batch(CANDIDATES_TABLE_SQL)?;
    conn.prepare_cached("DELETE FROM temp.strata_candidates")?
        .execute([])?;
    let mut st = conn.prepare_cached(CANDIDATES_FILL_SQL)?;
    for (br, lo, hi) in &parts {
        st.execute(params![br, *lo as i64, *hi as i64])?;
    }
    if let Some((target, source)) = recorded {
        conn.prepare_cached(DIFF_KEYS_FILL_SQL)?
            .execute(params![target, source])?;
    }
    Ok(Candidates::Table)
}

/// The tables that hold, per (target, source) pair of branches, the latest merge's difference: the
/// keys where the target right after the merge differs from the source version it merged. Created
/// on first use, so databases written before them open unchanged (and older builds ignore them).
const DIFF_TABLES_SQL: &str = "CREATE TABLE IF NOT EXISTS merge_diffs(\
     target INTEGER NOT NULL, source INTEGER NOT NULL, target_version INTEGER NOT NULL, \
     source_version INTEGER NOT NULL, keys INTEGER NOT NULL, PRIMARY KEY (target, source)) WITHOUT ROWID;\
     CREATE TABLE IF NOT EXISTS merge_diff_keys(\
     target INTEGER NOT NULL, source INTEGER NOT NULL, space TEXT NOT NULL, kind INTEGER NOT NULL, \
     key TEXT NOT NULL, PRIMARY KEY (target, source, space, kind, key)) WITHOUT ROWID;";

/// Adds a recorded difference's keys to the candidate table.
const DIFF_KEYS_FILL_SQL: &str = "INSERT OR IGNORE INTO temp.strata_candidates(space, kind, key) \
     SELECT space, kind, key FROM merge_diff_keys WHERE target=?1 AND source=?2";

fn diff_tables_exist(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type='table' AND name='merge_diffs')",
        )?
        .query_row([], |r| r.get(0))?)
}

/// A recorded merge difference between a branch of `a`'s lineage and one of `b`'s: the row ranges
/// that can differ from its two points, the (target, source) pair, and its key count. Any recorded
/// difference is a true statement about two immutable points, so the choice only affects the cost.
#[allow(clippy::type_complexity)]
fn diff_anchor_parts(
    conn: &Connection,
    a: &View,
    b: &View,
) -> Result<Option<(Vec<(i64, u64, u64)>, (i64, i64), u64)>> {
    if !diff_tables_exist(conn)? {
        return Ok(None);
    }
    let mut st = conn.prepare_cached(
        "SELECT target_version, source_version, keys FROM merge_diffs WHERE target=?1 AND source=?2",
    )?;
    // (cost guess, target point, source point, keys)
    type Found = (u64, (i64, u64), (i64, u64), u64);
    let mut best: Option<Found> = None;
    for (x, y) in [(a, b), (b, a)] {
        for sx in &x.segs {
            for sy in &y.segs {
                if sx.branch == sy.branch {
                    continue;
                }
                let hit: Option<(i64, i64, i64)> = rusqlite::OptionalExtension::optional(
                    st.query_row(params![sx.branch, sy.branch], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    }),
                )?;
                let Some((tv, sv, keys)) = hit else { continue };
                let (tv, sv, keys) = (tv as u64, sv as u64, keys as u64);
                // Closer points leave fewer rows between them and the views.
                let guess = sx.hi.abs_diff(tv) + sy.hi.abs_diff(sv) + keys;
                if best.is_none_or(|(g, _, _, _)| guess < g) {
                    best = Some((guess, (sx.branch, tv), (sy.branch, sv), keys));
                }
            }
        }
    }
    let Some((_, (tb, tv), (sb, sv), keys)) = best else {
        return Ok(None);
    };
    let et = store::view_at(conn, tb, tv)?;
    let es = store::view_at(conn, sb, sv)?;
    // Each view is compared with the recorded point on its own side.
    let (ea, eb) = if a.covers(tb).is_some() && b.covers(sb).is_some() {
        (et, es)
    } else {
        (es, et)
    };
    let mut parts = uncovered(a, &ea);
    parts.extend(uncovered(&ea, a));
    parts.extend(uncovered(b, &eb));
    parts.extend(uncovered(&eb, b));
    Ok(Some((parts, (tb, sb), keys)))
}

/// Records the difference between the merge's target right after it (`tgt@after`, rows at
/// `first_row` and above not yet committed) and the source point it merged (`src@sv`), so that later
/// diffs and merges between these branches start from it instead of the last point where both were
/// equal: their cost then follows the changes since the last merge, not since the last equal point.
///
/// The difference is computed from the previous anchor of the pair (the previous record, an equal
/// point, or the fork): only its keys and the rows changed since can differ. Without an anchor, or
/// when that set is large, nothing is recorded (older records stay true).
fn record_merge_diff(
    conn: &Connection,
    tgt: &BranchRow,
    after: u64,
    first_row: i64,
    src: i64,
    sv: u64,
) -> Result<()> {
    conn.execute_batch(DIFF_TABLES_SQL)?;
    // The previous anchor: (target version, source version, whether it carries keys).
    let mut prior: Option<(u64, u64, bool)> = rusqlite::OptionalExtension::optional(
        conn.prepare_cached(
            "SELECT target_version, source_version FROM merge_diffs WHERE target=?1 AND source=?2",
        )?
        .query_row(params![tgt.id, src], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, true))
        }),
    )?;
    let equal: Option<(i64, i64)> = rusqlite::OptionalExtension::optional(
        conn.prepare_cached(
            "SELECT m1.target_version, m1.source_version FROM merges m1 JOIN merges m2 \
             ON m2.target=m1.source AND m2.target_version=m1.source_version \
             AND m2.source=m1.target AND m2.source_version=m1.target_version \
             WHERE m1.target=?1 AND m1.source=?2 AND m1.target_version<=?3 \
             ORDER BY m1.target_version DESC, m1.source_version DESC LIMIT 1",
        )?
        .query_row(params![tgt.id, src, tgt.head as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        }),
    )?;
    let mut consider = |p: (u64, u64, bool)| {
        if prior.is_none_or(|(t, _, _)| p.0 > t) {
            prior = Some(p);
        }
    };
    if let Some((t, s)) = equal {
        consider((t as u64, s as u64, false));
    }
    if tgt.parent == Some(src) {
        consider((tgt.fork_version, tgt.fork_version, false));
    }
    let Some((pt, ps, with_keys)) = prior else {
        return Ok(());
    };
    let t_now = store::view_at(conn, tgt.id, after)?;
    let t_then = store::view_at(conn, tgt.id, pt)?;
    let s_now = store::view_at(conn, src, sv)?;
    let s_then = store::view_at(conn, src, ps)?;
    // The rows of this merge's own version have no commit record yet: they are read by rowid.
    let mut parts = uncovered(&t_now, &t_then);
    for p in &mut parts {
        if p.0 == tgt.id {
            p.2 = p.2.min(tgt.head);
        }
    }
    parts.extend(uncovered(&t_then, &t_now));
    parts.extend(uncovered(&s_now, &s_then));
    parts.extend(uncovered(&s_then, &s_now));
    let mut total = rows_in(conn, &parts)?;
    if after > tgt.head {
        total += conn
            .prepare_cached("SELECT COUNT(*) FROM entries WHERE rowid>=?1")?
            .query_row([first_row], |r| r.get::<_, i64>(0))? as u64;
    }
    if total > MAX_CANDIDATE_ROWS {
        return Ok(());
    }
    conn.execute_batch(CANDIDATES_TABLE_SQL)?;
    conn.prepare_cached("DELETE FROM temp.strata_candidates")?
        .execute([])?;
    {
        let mut st = conn.prepare_cached(CANDIDATES_FILL_SQL)?;
        for (br, lo, hi) in &parts {
            if hi > lo {
                st.execute(params![br, *lo as i64, *hi as i64])?;
            }
        }
    }
    if after > tgt.head {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO temp.strata_candidates(space, kind, key) \
             SELECT space, kind, key FROM entries WHERE rowid>=?1 AND branch=?2 AND version=?3",
        )?
        .execute(params![first_row, tgt.id, after as i64])?;
    }
    // From the previous record, only the keys written since can change membership: the others keep
    // their values on both sides, so they stay in (or out of) the difference without being read.
    // The cost is the rows written since the previous merge, not the size of the difference.
    // The key count moves by what is added and removed: counting the whole difference again at
    // every merge would cost its size.
    let mut keys: i64 = if with_keys {
        conn.prepare_cached("SELECT keys FROM merge_diffs WHERE target=?1 AND source=?2")?
            .query_row(params![tgt.id, src], |r| r.get(0))?
    } else {
        conn.prepare_cached("DELETE FROM merge_diff_keys WHERE target=?1 AND source=?2")?
            .execute(params![tgt.id, src])?;
        0
    };
    let out = {
        let mut ins = conn.prepare_cached(
            "INSERT OR IGNORE INTO merge_diff_keys(target, source, space, kind, key) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut del = conn.prepare_cached(
            "DELETE FROM merge_diff_keys WHERE target=?1 AND source=?2 AND space=?3 AND kind=?4 AND key=?5",
        )?;
        for_each_candidate_pair(conn, &s_now, &t_now, &mut |k, differ| {
            let p = params![tgt.id, src, k.space, k.kind.code(), k.key];
            if differ {
                keys += ins.execute(p)? as i64;
            } else {
                keys -= del.execute(p)? as i64;
            }
            Ok(())
        })
    };
    let cleared = conn
        .prepare_cached("DELETE FROM temp.strata_candidates")
        .and_then(|mut st| st.execute([]));
    out?;
    cleared?;
    debug_assert_eq!(
        keys,
        conn.query_row(
            "SELECT COUNT(*) FROM merge_diff_keys WHERE target=?1 AND source=?2",
            params![tgt.id, src],
            |r| r.get::<_, i64>(0)
        )?,
        "the recorded difference's key count"
    );
    conn.prepare_cached(
        "INSERT OR REPLACE INTO merge_diffs(target, source, target_version, source_version, keys) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![tgt.id, src, after as i64, sv as i64, keys])?;
    Ok(())
}

/// Calls `f(key, differs)` for every key of the candidate table, in key order, a page at a time.
fn for_each_candidate_pair(
    conn: &Connection,
    a: &View,
    b: &View,
    f: &mut impl FnMut(&EntryKey, bool) -> Result<()>,
) -> Result<()> {
    let mut after: (String, i64, String) = (String::new(), -1, String::new());
    loop {
        let page = conn
            .prepare_cached(CANDIDATES_PAGE_SQL)?
            .query_map(
                params![after.0, after.1, after.2, CANDIDATE_PAGE as i64],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, u8>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let n = page.len();
        for (space, kind, key) in page {
            let k = EntryKey::new(space, Kind::from_code(kind)?, key);
            let va = store::get_value(conn, a, k.kind, &k.space, &k.key)?;
            let vb = store::get_value(conn, b, k.kind, &k.space, &k.key)?;
            f(&k, va != vb)?;
            after = (k.space, kind as i64, k.key);
        }
        if n < CANDIDATE_PAGE {
            return Ok(());
        }
    }
}

/// Calls `f` for every key of the candidate table whose value differs between the views, in key
/// order, reading the table a page at a time.
fn for_each_candidate(
    conn: &Connection,
    a: &View,
    b: &View,
    f: &mut impl FnMut(&EntryKey, Option<Value>, Option<Value>) -> Result<()>,
) -> Result<()> {
    let mut after: (String, i64, String) = (String::new(), -1, String::new());
    loop {
        let page = {
            let mut st = conn.prepare_cached(CANDIDATES_PAGE_SQL)?;
            let rows = st
                .query_map(
                    params![after.0, after.1, after.2, CANDIDATE_PAGE as i64],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, u8>(1)?,
                            r.get::<_, String>(2)?,
                        ))
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows
        };
        let n = page.len();
        for (space, kind, key) in page {
            let k = EntryKey::new(space, Kind::from_code(kind)?, key);
            let va = store::get_value(conn, a, k.kind, &k.space, &k.key)?;
            let vb = store::get_value(conn, b, k.kind, &k.space, &k.key)?;
            if va != vb {
                f(&k, va, vb)?;
            }
            after = (k.space, kind as i64, k.key);
        }
        if n < CANDIDATE_PAGE {
            return Ok(());
        }
    }
}

/// The number of rows in the given `(branch, lo, hi]` ranges, from the commit records, stopping early
/// past the candidate limit.
fn rows_in(conn: &Connection, parts: &[(i64, u64, u64)]) -> Result<u64> {
    let mut st = conn.prepare_cached(
        "SELECT COALESCE(SUM(entries), 0) FROM commits WHERE branch=?1 AND version>?2 AND version<=?3",
    )?;
    let mut total = 0u64;
    for (br, lo, hi) in parts {
        total += st.query_row(params![br, *lo as i64, *hi as i64], |r| r.get::<_, i64>(0))? as u64;
        if total > MAX_CANDIDATE_ROWS {
            break;
        }
    }
    Ok(total)
}

/// If some point `X@x` of `a`'s lineage and `Y@y` of `b`'s were recorded as equal (merge records both
/// ways), the keys that can differ between `a` and `b` are those changed between `a` and `X@x` plus
/// those changed between `b` and `Y@y`. Returns those row ranges for the most recent such pair.
fn anchor_parts(conn: &Connection, a: &View, b: &View) -> Result<Option<Vec<(i64, u64, u64)>>> {
    let mut st = conn.prepare_cached(
        "SELECT m1.target_version, m1.source_version FROM merges m1 JOIN merges m2 \
         ON m2.target=m1.source AND m2.target_version=m1.source_version \
         AND m2.source=m1.target AND m2.source_version=m1.target_version \
         WHERE m1.target=?1 AND m1.source=?2 AND m1.target_version<=?3 AND m1.source_version<=?4 \
         ORDER BY m1.target_version DESC, m1.source_version DESC LIMIT 1",
    )?;
    // (score, point on a's side, point on b's side)
    type Pair = (u64, (i64, u64), (i64, u64));
    let mut best: Option<Pair> = None;
    for sa in &a.segs {
        for sb in &b.segs {
            if sa.branch == sb.branch {
                continue;
            }
            let hit: Option<(i64, i64)> = rusqlite::OptionalExtension::optional(st.query_row(
                params![sa.branch, sb.branch, sa.hi as i64, sb.hi as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ))?;
            if let Some((x, y)) = hit {
                let score = x as u64 + y as u64;
                if best.is_none_or(|(s, _, _)| score > s) {
                    best = Some((score, (sa.branch, x as u64), (sb.branch, y as u64)));
                }
            }
        }
    }
    let Some((_, (xb, xv), (yb, yv))) = best else {
        return Ok(None);
    };
    let ex = store::view_at(conn, xb, xv)?;
    let ey = store::view_at(conn, yb, yv)?;
    let mut parts = uncovered(a, &ex);
    parts.extend(uncovered(&ex, a));
    parts.extend(uncovered(b, &ey));
    parts.extend(uncovered(&ey, b));
    Ok(Some(parts))
}

/// Calls `f(key, a_value, b_value)` for every key whose live value differs between the views, in key
/// order, with bounded memory.
pub(crate) fn for_each_difference(
    conn: &Connection,
    a: &View,
    b: &View,
    mut f: impl FnMut(&EntryKey, Option<Value>, Option<Value>) -> Result<()>,
) -> Result<()> {
    match candidates(conn, a, b)? {
        Candidates::Table => {
            let out = for_each_candidate(conn, a, b, &mut f);
            let cleared = conn
                .prepare_cached("DELETE FROM temp.strata_candidates")
                .and_then(|mut st| st.execute([]));
            out?;
            cleared?;
        }
        Candidates::FullScan => {
            let mut sa = Scanner::new(a.clone(), ScanRange::All, 1024).max_bytes(CHANGE_PAGE_BYTES);
            let mut sb = Scanner::new(b.clone(), ScanRange::All, 1024).max_bytes(CHANGE_PAGE_BYTES);
            let mut pa: std::collections::VecDeque<_> = Default::default();
            let mut pb: std::collections::VecDeque<_> = Default::default();
            let (mut ea, mut eb) = (false, false);
            loop {
                while pa.is_empty() && !ea {
                    match sa.next_page(conn)? {
                        Some(p) => pa.extend(p),
                        None => ea = true,
                    }
                }
                while pb.is_empty() && !eb {
                    match sb.next_page(conn)? {
                        Some(p) => pb.extend(p),
                        None => eb = true,
                    }
                }
                match (pa.front(), pb.front()) {
                    (None, None) => break,
                    (Some(_), None) => {
                        let (k, _, v) = pa.pop_front().expect("front");
                        f(&k, v, None)?;
                    }
                    (None, Some(_)) => {
                        let (k, _, v) = pb.pop_front().expect("front");
                        f(&k, None, v)?;
                    }
                    // Scans return keys in index order, which is not `EntryKey`'s own across spaces.
                    (Some(x), Some(y)) => match store::scan_order(&x.0, &y.0) {
                        std::cmp::Ordering::Less => {
                            let (k, _, v) = pa.pop_front().expect("front");
                            f(&k, v, None)?;
                        }
                        std::cmp::Ordering::Greater => {
                            let (k, _, v) = pb.pop_front().expect("front");
                            f(&k, None, v)?;
                        }
                        std::cmp::Ordering::Equal => {
                            let (k, _, va) = pa.pop_front().expect("front");
                            let (_, _, vb) = pb.pop_front().expect("front");
                            if va != vb {
                                f(&k, va, vb)?;
                            }
                        }
                    },
                }
            }
        }
    }
    Ok(())
}

impl Strata {
    /// The structured difference from `a` to `b` (each a branch or `branch@version`): per space, what `b`
    /// added, removed and modified relative to `a`, with decoded values.
    pub fn diff(&self, a: &Rev, b: &Rev) -> Result<BranchDiff> {
        let conn = self.conn()?;
        let (_, _, va) = rev_view(&conn, a)?;
        let (_, _, vb) = rev_view(&conn, b)?;
        let mut spaces: BTreeMap<String, SpaceDiff> = BTreeMap::new();
        for_each_difference(&conn, &va, &vb, |k, x, y| {
            let sd = spaces.entry(k.space.clone()).or_insert_with(|| SpaceDiff {
                space: k.space.clone(),
                ..Default::default()
            });
            let key = match k.kind {
                Kind::Event => k.key.trim_start_matches('0').to_string(),
                _ => k.key.clone(),
            };
            let e = DiffEntry {
                kind: k.kind,
                key,
                a: x.clone(),
                b: y.clone(),
            };
            match (x, y) {
                (None, Some(_)) => sd.added.push(e),
                (Some(_), None) => sd.removed.push(e),
                _ => sd.modified.push(e),
            }
            Ok(())
        })?;
        Ok(BranchDiff {
            spaces: spaces.into_values().collect(),
        })
    }

    /// Calls `f(key, a_value, b_value)` for every entry whose value differs between `a` and `b`, in key
    /// order, streaming with bounded memory. The cost follows what changed between the two when they
    /// share lineage or a recorded equal point.
    pub fn diff_each(
        &self,
        a: &Rev,
        b: &Rev,
        f: impl FnMut(&EntryKey, Option<Value>, Option<Value>) -> Result<()>,
    ) -> Result<()> {
        let conn = self.conn()?;
        let (_, _, va) = rev_view(&conn, a)?;
        let (_, _, vb) = rev_view(&conn, b)?;
        for_each_difference(&conn, &va, &vb, f)
    }

    /// How many candidate rows a diff of `a` and `b` reads (`None`: it scans both views whole). The
    /// measure behind "cost follows the change", for tests and benchmarks.
    #[doc(hidden)]
    pub fn diff_candidate_rows(&self, a: &Rev, b: &Rev) -> Result<Option<u64>> {
        let conn = self.conn()?;
        let (_, _, va) = rev_view(&conn, a)?;
        let (_, _, vb) = rev_view(&conn, b)?;
        let (_, _, total) = plan_candidates(&conn, &va, &vb)?;
        Ok((total <= MAX_CANDIDATE_ROWS).then_some(total))
    }

    /// Whether `outer` contains `inner`: every change up to `inner` is part of `outer`'s history
    /// (through forks and recorded merges), as `git merge-base --is-ancestor` asks.
    pub fn contains(&self, outer: &Rev, inner: &Rev) -> Result<bool> {
        let conn = self.conn()?;
        let (o, ov, _) = rev_view(&conn, outer)?;
        let (i, iv, _) = rev_view(&conn, inner)?;
        contains_in(&conn, (o.id, ov), (i.id, iv))
    }

    /// The common ancestor a merge of `source` into `target` would use, as `branch@version`.
    pub fn merge_base(&self, source: &Rev, target: &Rev) -> Result<Option<Rev>> {
        let conn = self.conn()?;
        let (s, sv, _) = rev_view(&conn, source)?;
        let (t, tv, _) = rev_view(&conn, target)?;
        match merge_base(&conn, (s.id, sv), (t.id, tv))? {
            None => Ok(None),
            Some((b, v)) => Ok(Some(Rev::at(store::branch_by_id(&conn, b)?.name, v))),
        }
    }

    /// Three-way merges `source` (a branch or `branch@version`) into branch `target` against their
    /// common ancestor (the fork point or the last merge), committing one new target version.
    ///
    /// Only keys the source changed since the ancestor are considered, so a key that only the target
    /// changed keeps the target's value, and a key the source deleted is deleted in the target. A key
    /// changed on both sides to different values is a conflict: `LastWriterWins` takes the source's
    /// value, `Ours` keeps the target's; `Strict` fails with [`Error::MergeConflicts`] and writes
    /// nothing.
    ///
    /// Events never conflict: when both sides appended at the same sequence numbers, the source's events
    /// keep theirs and the target's are re-appended after them, in order.
    pub fn merge(
        &self,
        source: &Rev,
        target: &str,
        strategy: MergeStrategy,
    ) -> Result<MergeReport> {
        self.merge_with_message(source, target, strategy, None, None)
    }

    /// [`Strata::merge`] with the merge version's message (default `merge SOURCE@VERSION`) and author
    /// (default: the database's `user.name` setting), as `git merge -m` and `--author` give them.
    pub fn merge_with_message(
        &self,
        source: &Rev,
        target: &str,
        strategy: MergeStrategy,
        message: Option<&str>,
        author: Option<&str>,
    ) -> Result<MergeReport> {
        if target.starts_with('_') {
            return Err(Error::InvalidOperation(format!(
                "branch {target:?} is internal; only the library writes it"
            )));
        }
        self.merge_inner(source, target, strategy, message, author, |_, _, _| Ok(()))
    }

    /// The merge. `before_commit(conn, target_row, head_after)` runs inside the merge's transaction
    /// after everything is written and before it commits (target_row holds the head before the merge);
    /// an error from it rolls the merge back.
    pub(crate) fn merge_inner(
        &self,
        source: &Rev,
        target: &str,
        strategy: MergeStrategy,
        message: Option<&str>,
        author: Option<&str>,
        before_commit: impl FnOnce(&Connection, &store::BranchRow, u64) -> Result<()>,
    ) -> Result<MergeReport> {
        let mut tx = self.begin_internal(target)?;
        let (src, sv, src_view) = rev_view(tx.connection(), source)?;
        let tgt = tx.branch_row().clone();
        if src.id == tgt.id {
            return Err(Error::InvalidOperation(format!(
                "cannot merge branch {target:?} into itself"
            )));
        }
        let base = merge_base(tx.connection(), (src.id, sv), (tgt.id, tgt.head))?;
        let base_view = match base {
            Some((b, v)) => store::view_at(tx.connection(), b, v)?,
            None => View::empty(),
        };
        let base_name = match base {
            Some((b, v)) => Some(format!(
                "{}@{v}",
                store::branch_by_id(tx.connection(), b)?.name
            )),
            None => None,
        };
        let mut report = MergeReport {
            version: None,
            base: base_name,
            applied: 0,
            conflicts_resolved: 0,
            events_renumbered: 0,
        };
        let mut conflicts = Vec::new();
        // Per space, the lowest event position the source changed since the base; events are merged
        // after the other keys.
        let mut event_spaces: BTreeMap<String, u64> = BTreeMap::new();
        let conn = tx.connection();
        let target_view = store::view_at(conn, tgt.id, tgt.head)?;
        for_each_difference(conn, &base_view, &src_view, |k, b, s| {
            if k.kind == Kind::Event {
                let seq: u64 = k
                    .key
                    .parse()
                    .map_err(|_| Error::Decode(format!("event key {:?}", k.key)))?;
                let low = event_spaces.entry(k.space.clone()).or_insert(seq);
                *low = (*low).min(seq);
                return Ok(());
            }
            let t = store::get_value(conn, &target_view, k.kind, &k.space, &k.key)?;
            if t == b {
                // Written at once: the views read here never include the new target version, and a
                // Strict merge with conflicts rolls the whole transaction back.
                store::write_row(conn, tgt.id, tgt.head + 1, k, s.as_ref())?;
                report.applied += 1;
            } else if t == s {
            } else {
                match strategy {
                    MergeStrategy::LastWriterWins => {
                        report.conflicts_resolved += 1;
                        store::write_row(conn, tgt.id, tgt.head + 1, k, s.as_ref())?;
                        report.applied += 1;
                    }
                    // The target keeps its value: nothing is written for this key.
                    MergeStrategy::Ours => report.conflicts_resolved += 1,
                    MergeStrategy::Strict => conflicts.push(MergeConflict {
                        space: k.space.clone(),
                        kind: k.kind,
                        key: k.key.clone(),
                        ancestor: b,
                        source: s,
                        target: t,
                    }),
                }
            }
            Ok(())
        })?;
        if !conflicts.is_empty() {
            tx.rollback()?;
            return Err(Error::MergeConflicts(conflicts));
        }
        if report.applied > 0 {
            tx.mark_dirty();
        }
        for (space, from) in event_spaces {
            merge_events(&mut tx, &target_view, &src_view, &space, from, &mut report)?;
        }
        if report.applied > 0 {
            tx.set_label("merge");
            match message {
                Some(m) => tx.set_message(m),
                None => tx.set_message(format!("merge {}@{sv}", src.name)),
            }
            if let Some(a) = author {
                tx.set_author(a);
            }
        }
        let conn = tx.connection();
        let head_after = if report.applied > 0 {
            tgt.head + 1
        } else {
            tgt.head
        };
        conn.execute(
            "INSERT OR IGNORE INTO merges(target, target_version, source, source_version) VALUES (?1, ?2, ?3, ?4)",
            params![tgt.id, head_after as i64, src.id, sv as i64],
        )?;
        record_merge_diff(conn, &tgt, head_after, tx.first_row(), src.id, sv)?;
        before_commit(conn, &tgt, head_after)?;
        if report.applied > 0 {
            // The transaction is dirty, so commit creates the version.
            report.version = tx.commit()?;
        } else {
            // Nothing changed, but the merge record must persist: commit the SQLite transaction directly.
            tx.commit_metadata_only()?;
        }
        Ok(report)
    }

    /// Writes a strict merge's conflicts to a new branch forked from `target`: one KV entry per conflict
    /// in space `conflicts`, keyed `{space}/{kind}/{key}`, holding `{space, kind, key, ancestor, source,
    /// target}` (absent sides are left out).
    pub fn save_conflicts(
        &self,
        target: &str,
        conflicts: &[MergeConflict],
        branch: &str,
    ) -> Result<crate::BranchInfo> {
        let info = self.fork_branch(Rev::head(target), branch)?;
        let mut tx = self.begin(branch)?;
        tx.set_space("conflicts")?;
        for c in conflicts {
            let mut fields = vec![
                ("space", Value::from(c.space.as_str())),
                ("kind", Value::from(c.kind.name())),
                ("key", Value::from(c.key.as_str())),
            ];
            for (name, v) in [
                ("ancestor", &c.ancestor),
                ("source", &c.source),
                ("target", &c.target),
            ] {
                if let Some(v) = v {
                    fields.push((name, v.clone()));
                }
            }
            tx.kv_put(
                &format!("{}/{}/{}", c.space, c.kind, c.key),
                Value::object(fields),
            )?;
        }
        tx.set_message(format!("conflicts of a merge into {target}"));
        tx.commit()?;
        let _ = info;
        self.branch_info(branch)
    }
}

/// Merges one space's event log. `from` is the lowest position the source changed since the base.
/// From there on, the result is the source's events in order (less any the target already holds below
/// `from`, found by event id), followed by the target's own events that the source does not hold,
/// renumbered to follow them. No event is lost or duplicated, and in the usual star-shaped histories
/// (a mirror and its branch, a fork and its parent) the source's events keep their positions, so
/// pulling and then pushing converges.
///
/// Both tails are streamed in sequence order a page at a time, and whether the source holds a target
/// event is asked of the event-id index, so memory stays bounded whatever the tails' length (only
/// events written without an id, which no engine API writes, are remembered whole).
fn merge_events(
    tx: &mut crate::Transaction<'_>,
    target_view: &View,
    src_view: &View,
    space: &str,
    from: u64,
    report: &mut MergeReport,
) -> Result<()> {
    let (target, version) = (tx.branch_row().id, tx.version());
    let conn = tx.connection();
    // The live events of a view from position `from` on, in order.
    let tail = |view: &View, from: u64| {
        let range = ScanRange::Prefix {
            kind: Kind::Event,
            space: space.to_string(),
            prefix: String::new(),
        };
        let after = from
            .checked_sub(1)
            .filter(|s| *s > 0)
            .map(|s| EntryKey::new(space, Kind::Event, event_key(s)));
        Scanner::new(view.clone(), range, EVENT_PAGE)
            .max_bytes(CHANGE_PAGE_BYTES)
            .start_after(after)
    };
    let event_id = |v: &Value| v.get("id").and_then(Value::as_i64);
    let mut writes = 0u64;
    // Lays `v` out at `seq`: written unless the target already holds it there. The target view never
    // includes the version being written, so it always reads the target as it was before the merge.
    let mut place = |seq: u64, v: &Value| -> Result<()> {
        let key = event_key(seq);
        if store::get_value(conn, target_view, Kind::Event, space, &key)?.as_ref() != Some(v) {
            store::write_row(
                conn,
                target,
                version,
                &EntryKey::new(space, Kind::Event, key),
                Some(v),
            )?;
            writes += 1;
        }
        Ok(())
    };
    let mut next = from;
    // The source's events that carry no id, by their whole encoded value (their only identity).
    let mut idless_in_source: HashSet<Vec<u8>> = HashSet::new();
    let mut src = tail(src_view, from);
    while let Some(page) = src.next_page(conn)? {
        for (k, _, v) in page {
            let (Some(v), Ok(_)) = (v, k.key.parse::<u64>()) else {
                continue;
            };
            match event_id(&v) {
                Some(id) => {
                    if store::event_position(conn, target_view, space, id)?
                        .is_some_and(|p| p < from)
                    {
                        continue;
                    }
                }
                None => {
                    idless_in_source.insert(v.to_msgpack());
                }
            }
            place(next, &v)?;
            next += 1;
        }
    }
    let mut tgt = tail(target_view, from);
    while let Some(page) = tgt.next_page(conn)? {
        for (k, _, v) in page {
            let (Some(v), Ok(seq)) = (v, k.key.parse::<u64>()) else {
                continue;
            };
            let in_source = match event_id(&v) {
                Some(id) => store::event_positions(conn, src_view, space, id)?
                    .last()
                    .is_some_and(|p| *p >= from),
                None => idless_in_source.contains(&v.to_msgpack()),
            };
            if !in_source {
                if next != seq {
                    report.events_renumbered += 1;
                }
                place(next, &v)?;
                next += 1;
            }
        }
    }
    // The target's events past the new end are gone.
    let end = next;
    let mut stale = tail(target_view, end);
    while let Some(page) = stale.next_page(conn)? {
        for (k, _, v) in page {
            if v.is_some() && k.key.parse::<u64>().is_ok_and(|s| s >= end) {
                store::write_row(conn, target, version, &k, None)?;
                writes += 1;
            }
        }
    }
    report.applied += writes;
    if writes > 0 {
        tx.mark_dirty();
    }
    Ok(())
}

/// Every (branch, highest version) that the view of `(branch, version)` contains, through forks and
/// recorded merges.
/// Whether branch point `outer` contains `inner` (see [`Strata::contains`]), on an open connection.
pub(crate) fn contains_in(conn: &Connection, outer: (i64, u64), inner: (i64, u64)) -> Result<bool> {
    let anc = ancestry(conn, outer)?;
    if anc.get(&inner.0).is_some_and(|&v| v >= inner.1) {
        return Ok(true);
    }
    // `inner` may read only its parent's rows (a fork with no commits of its own yet).
    let iview = store::view_at(conn, inner.0, inner.1)?;
    Ok(match iview.segs.first() {
        None => true,
        Some(top) => top.branch != inner.0 && anc.get(&top.branch).is_some_and(|&v| v >= top.hi),
    })
}

fn ancestry(conn: &Connection, start: (i64, u64)) -> Result<HashMap<i64, u64>> {
    let mut seen: HashMap<i64, u64> = HashMap::new();
    let mut stack = vec![start];
    let mut merges = conn.prepare_cached(
        "SELECT source, MAX(source_version) FROM merges WHERE target=?1 AND target_version<=?2 GROUP BY source",
    )?;
    while let Some((b, v)) = stack.pop() {
        if seen.get(&b).is_some_and(|&have| have >= v) {
            continue;
        }
        seen.insert(b, v);
        let row: BranchRow = store::branch_by_id(conn, b)?;
        if let Some(p) = row.parent {
            stack.push((p, v.min(row.fork_version)));
        }
        let rows = merges
            .query_map(params![b, v as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        stack.extend(rows);
    }
    Ok(seen)
}

/// The best common ancestor of two points, or `None` when they share no history.
fn merge_base(
    conn: &Connection,
    source: (i64, u64),
    target: (i64, u64),
) -> Result<Option<(i64, u64)>> {
    let a = ancestry(conn, source)?;
    let t = ancestry(conn, target)?;
    let mut cands: Vec<(i64, u64)> = Vec::new();
    for (b, va) in &a {
        if let Some(vt) = t.get(b) {
            if store::branch_by_id(conn, *b)?.purged {
                continue;
            }
            cands.push((*b, (*va).min(*vt)));
        }
    }
    if cands.is_empty() {
        return Ok(None);
    }
    if cands.len() == 1 {
        return Ok(Some(cands[0]));
    }
    let ancs: Vec<HashMap<i64, u64>> = cands
        .iter()
        .map(|c| ancestry(conn, *c))
        .collect::<Result<_>>()?;
    let contains = |i: usize, j: usize| ancs[i].get(&cands[j].0).is_some_and(|&v| v >= cands[j].1);
    // Keep the candidates that no other candidate strictly contains.
    let maximal: Vec<usize> = (0..cands.len())
        .filter(|&i| !(0..cands.len()).any(|j| j != i && contains(j, i) && !contains(i, j)))
        .collect();
    // Prefer a point on the source's branch (its diff to the source is cheapest), then the highest version.
    let best = maximal
        .iter()
        .copied()
        .max_by_key(|&i| {
            (
                cands[i].0 == source.0,
                cands[i].1,
                std::cmp::Reverse(cands[i].0),
            )
        })
        .expect("at least one maximal candidate");
    Ok(Some(cands[best]))
}
