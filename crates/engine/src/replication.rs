//! The replication API: every change a sync library makes to a database, each as **one SQLite
//! transaction that checks its own precondition inside itself**.
//!
//! Sync runs beside other writers: another handle, thread or process may commit between any two calls
//! a sync makes. So no operation here trusts what the caller read earlier. A fast-forward happens only
//! if the branch head is still the one the caller saw; a merge decides inside its own transaction
//! whether the branch had anything unpushed; an equal point is recorded only between explicit versions,
//! never "the head", which may have moved. When a precondition no longer holds the operation writes
//! nothing and fails with [`Error::HeadMoved`], and the caller decides again from fresh reads.
//!
//! Each operation can also write [`Note`]s (entries of the internal metadata branch `_strata`) in the
//! same transaction, so a sync step and the sync state that describes it commit together.
//!
//! Use it through [`Strata::replication`]. Internal branches (names starting with `_`) are written only
//! here; user branches are written by a fast-forward or a merge.

use rusqlite::{params, Connection, OptionalExtension};

use crate::changes::apply_in_txn;
use crate::db::{branch_info, purge_unreferenced, rev_view, Strata};
use crate::error::{Error, Result};
use crate::merge::{contains_in, for_each_difference};
use crate::names::{validate_branch_name, validate_key, validate_space_name};
use crate::raw::RawChangeSet;
use crate::store::{self, BranchRow};
use crate::types::{ApplyReport, BranchInfo, EntryKey, Kind, MergeReport, MergeStrategy, Rev};
use crate::value::Value;

/// The internal branch that holds library metadata (remotes, sync state).
pub const META_BRANCH: &str = "_strata";

/// One metadata entry written by a replication step, in the same transaction: a KV entry of the
/// internal branch [`META_BRANCH`], in an internal space (its name starts with `_`).
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    /// The space, e.g. `_sync`.
    pub space: String,
    /// The key.
    pub key: String,
    /// The new value; `None` deletes the entry.
    pub value: Option<Value>,
}

impl Note {
    /// A note that puts `value` at `key` in `space`.
    pub fn put(space: &str, key: &str, value: Value) -> Note {
        Note {
            space: space.to_string(),
            key: key.to_string(),
            value: Some(value),
        }
    }

    /// A note that deletes `key` in `space`.
    pub fn delete(space: &str, key: &str) -> Note {
        Note {
            space: space.to_string(),
            key: key.to_string(),
            value: None,
        }
    }
}

/// What [`Replication::fast_forward`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastForward {
    /// The branch did not exist; it was created as a copy-on-write fork of the target.
    Created,
    /// The branch moved forward in place (same identity, creation time and forks).
    Advanced,
    /// The branch already read the target: nothing changed.
    AlreadyThere,
}

/// What [`Replication::merge`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaMerge {
    /// The merge itself.
    pub merge: MergeReport,
    /// The target head before the merge.
    pub before: u64,
    /// The target head after it.
    pub after: u64,
    /// Whether the target had nothing of its own beyond the given base, so that it now equals the
    /// source (recorded as an equal point).
    pub clean: bool,
}

/// The replication API of a database; see the [module docs](self).
#[derive(Clone, Copy, Debug)]
pub struct Replication<'a> {
    db: &'a Strata,
}

impl Strata {
    /// The replication API: the atomic, self-checking operations a sync library uses.
    pub fn replication(&self) -> Replication<'_> {
        Replication { db: self }
    }
}

fn internal_name(name: &str) -> Result<()> {
    validate_branch_name(name, true)?;
    if !name.starts_with('_') {
        return Err(Error::invalid(
            "branch name",
            name,
            "the replication API writes only internal branches (names starting with '_') here",
        ));
    }
    Ok(())
}

fn moved(branch: &str, expected: u64, actual: Option<u64>) -> Error {
    Error::HeadMoved {
        branch: branch.to_string(),
        expected,
        actual,
    }
}

/// The row of `branch` if its head is `expected` (an absent branch counts as head 0 and is created
/// empty when `create` is set); otherwise `HeadMoved`.
fn at_head(conn: &Connection, branch: &str, expected: u64, create: bool) -> Result<BranchRow> {
    match find(conn, branch)? {
        Some(r) if r.head == expected => Ok(r),
        Some(r) => Err(moved(branch, expected, Some(r.head))),
        None if expected == 0 && create => insert_branch(conn, branch, None),
        None => Err(moved(branch, expected, None)),
    }
}

/// An explicit `branch@version`: equal points and merge bases must never be "the head".
fn explicit(rev: &Rev) -> Result<u64> {
    rev.version.ok_or_else(|| {
        Error::InvalidOperation(format!(
            "{rev} names a branch head; the replication API needs an explicit version"
        ))
    })
}

/// The live row of `name`, if any.
fn find(conn: &Connection, name: &str) -> Result<Option<BranchRow>> {
    match store::branch_by_name(conn, name) {
        Ok(r) => Ok(Some(r)),
        Err(Error::BranchNotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn insert_branch(conn: &Connection, name: &str, parent: Option<(i64, u64)>) -> Result<BranchRow> {
    let now = store::now_micros() as i64;
    match parent {
        None => conn.execute(
            "INSERT INTO branches(name, parent, fork_version, head, created) VALUES (?1, NULL, 0, 0, ?2)",
            params![name, now],
        )?,
        Some((p, v)) => conn.execute(
            "INSERT INTO branches(name, parent, fork_version, head, created) VALUES (?1, ?2, ?3, ?3, ?4)",
            params![name, p, v as i64, now],
        )?,
    };
    store::branch_by_name(conn, name)
}

/// The row a new branch `name` (no parent, head 0) would get from [`insert_branch`] now, without
/// inserting it: see [`insert_branch_as`].
fn next_branch(conn: &Connection, name: &str) -> Result<BranchRow> {
    // The id SQLite would choose for the row: one more than the largest (the bare MAX is answered
    // from the end of the b-tree).
    let max: Option<i64> = conn.query_row("SELECT MAX(id) FROM branches", [], |r| r.get(0))?;
    Ok(BranchRow {
        id: max.unwrap_or(0) + 1,
        name: name.to_string(),
        parent: None,
        fork_version: 0,
        head: 0,
        created: store::now_micros(),
        deleted: false,
        purged: false,
    })
}

/// Inserts the row of [`next_branch`], with head `head`.
fn insert_branch_as(conn: &Connection, row: &BranchRow, head: u64) -> Result<()> {
    conn.execute(
        "INSERT INTO branches(id, name, parent, fork_version, head, created) VALUES (?1, ?2, NULL, 0, ?3, ?4)",
        params![row.id, row.name, head as i64, row.created as i64],
    )?;
    Ok(())
}

fn delete_row(conn: &Connection, row: &BranchRow) -> Result<()> {
    conn.execute("UPDATE branches SET deleted=1 WHERE id=?1", [row.id])?;
    purge_unreferenced(conn, row.id)
}

/// Records that `a` and `b` hold equal contents: merge records both ways.
fn equal_in(conn: &Connection, a: (i64, u64), b: (i64, u64)) -> Result<()> {
    let mut st = conn.prepare_cached(
        "INSERT OR IGNORE INTO merges(target, target_version, source, source_version) VALUES (?1, ?2, ?3, ?4)",
    )?;
    st.execute(params![a.0, a.1 as i64, b.0, b.1 as i64])?;
    st.execute(params![b.0, b.1 as i64, a.0, a.1 as i64])?;
    Ok(())
}

/// Writes notes as one new version of the metadata branch, inside the caller's transaction.
pub(crate) fn write_notes(conn: &Connection, notes: &[Note]) -> Result<()> {
    if notes.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::with_capacity(notes.len());
    for n in notes {
        validate_space_name(&n.space, true)?;
        if !n.space.starts_with('_') {
            return Err(Error::invalid(
                "space name",
                &n.space,
                "notes live in internal spaces (starting with '_')",
            ));
        }
        validate_key(&n.key)?;
        rows.push((
            EntryKey::new(n.space.clone(), Kind::Kv, n.key.clone()),
            n.value.as_ref(),
        ));
    }
    commit_meta(conn, &meta_row(conn)?, &rows)
}

/// The metadata branch's row, created when absent.
fn meta_row(conn: &Connection) -> Result<BranchRow> {
    match find(conn, META_BRANCH)? {
        Some(r) => Ok(r),
        None => insert_branch(conn, META_BRANCH, None),
    }
}

/// Commits `rows` as the next version of the metadata branch `row`.
fn commit_meta(
    conn: &Connection,
    row: &BranchRow,
    rows: &[(EntryKey, Option<&Value>)],
) -> Result<()> {
    let version = row.head + 1;
    let first_row = store::max_rowid(conn)? + 1;
    for (k, v) in rows {
        store::write_row(conn, row.id, version, k, *v)?;
    }
    store::record_commit(
        conn,
        row.id,
        version,
        store::now_micros(),
        "commit",
        "",
        crate::db::config_get(conn, "user.name")?.as_deref(),
        first_row,
    )?;
    Ok(())
}

impl Replication<'_> {
    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, then writes `notes` in it and commits.
    fn txn<T>(&self, notes: &[Note], f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.db.write(|conn| {
            let out = f(conn)?;
            write_notes(conn, notes)?;
            Ok(out)
        })
    }

    // ----- metadata ----------------------------------------------------------------------------

    /// Reads one metadata entry (see [`Note`]).
    pub fn meta_get(&self, space: &str, key: &str) -> Result<Option<Value>> {
        let conn = self.db.conn()?;
        let Some(row) = find(&conn, META_BRANCH)? else {
            return Ok(None);
        };
        let view = store::view_at(&conn, row.id, row.head)?;
        store::get_value(&conn, &view, Kind::Kv, space, key)
    }

    /// Lists the metadata entries of `space` whose keys start with `prefix`, in key order.
    pub fn meta_list(&self, space: &str, prefix: &str) -> Result<Vec<(String, Value)>> {
        let conn = self.db.conn()?;
        let Some(row) = find(&conn, META_BRANCH)? else {
            return Ok(vec![]);
        };
        let view = store::view_at(&conn, row.id, row.head)?;
        crate::db::list_prefix(&conn, &view, Kind::Kv, space, prefix, usize::MAX)
    }

    /// Renames internal branches (`old` → `new`, e.g. origin mirrors when a remote is renamed) and
    /// writes `notes`, in one transaction: all or nothing. Every name must be internal (`_`), every
    /// `old` must exist and no `new` may.
    pub fn rename_internal_branches(
        &self,
        renames: &[(String, String)],
        notes: &[Note],
    ) -> Result<()> {
        for (old, new) in renames {
            for n in [old, new] {
                crate::names::validate_branch_name(n, true)?;
                if !n.starts_with('_') {
                    return Err(Error::InvalidOperation(format!(
                        "branch {n:?} is not internal; only internal branches are renamed here"
                    )));
                }
            }
        }
        self.txn(notes, |conn| {
            for (old, new) in renames {
                let row = store::branch_by_name(conn, old)?;
                if find(conn, new)?.is_some() {
                    return Err(Error::BranchExists(new.clone()));
                }
                conn.execute(
                    "UPDATE branches SET name=?2 WHERE id=?1",
                    params![row.id, new],
                )?;
            }
            Ok(())
        })
    }

    /// Deletes an internal branch (if it exists) and writes `notes`, in one transaction (e.g. an
    /// origin mirror with its sync state when the remote branch is deleted).
    pub fn delete_internal_branch(&self, name: &str, notes: &[Note]) -> Result<bool> {
        if !name.starts_with('_') {
            return Err(Error::InvalidOperation(format!(
                "branch {name:?} is not internal; delete it with Strata::delete_branch"
            )));
        }
        self.txn(notes, |conn| match find(conn, name)? {
            Some(row) => {
                conn.execute("UPDATE branches SET deleted=1 WHERE id=?1", [row.id])?;
                purge_unreferenced(conn, row.id)?;
                Ok(true)
            }
            None => Ok(false),
        })
    }

    /// Writes notes on their own, in one transaction.
    pub fn meta_write(&self, notes: &[Note]) -> Result<()> {
        self.txn(notes, |_| Ok(()))
    }

    /// Reads a metadata **state cell** (set once by [`Replication::meta_init`]).
    pub fn meta_state(&self, space: &str, key: &str) -> Result<Option<Value>> {
        let conn = self.db.conn()?;
        let Some(row) = find(&conn, META_BRANCH)? else {
            return Ok(None);
        };
        let view = store::view_at(&conn, row.id, row.head)?;
        store::get_value(&conn, &view, Kind::State, space, key)
    }

    /// Initialises the metadata state cell `key` in `space` to `value` only if it is absent,
    /// atomically. Returns the value now stored (the given one, or the one another writer stored
    /// first).
    pub fn meta_init(&self, space: &str, key: &str, value: Value) -> Result<Value> {
        validate_space_name(space, true)?;
        validate_key(key)?;
        self.db.write(|conn| {
            let row = meta_row(conn)?;
            let view = store::view_at(conn, row.id, row.head)?;
            if let Some(v) = store::get_value(conn, &view, Kind::State, space, key)? {
                return Ok(v);
            }
            let k = EntryKey::new(space.to_string(), Kind::State, key.to_string());
            commit_meta(conn, &row, &[(k, Some(&value))])?;
            Ok(value)
        })
    }

    // ----- internal branches (mirrors) ---------------------------------------------------------

    /// Replays change sets onto the internal branch `branch` (created empty when absent), only if its
    /// head is `expected_head` (an absent branch counts as head 0). Incoming versions are kept, as in
    /// [`Strata::apply_raw_changes`]. With `equal`, the new head and that explicit version are recorded as
    /// holding equal contents, in the same transaction.
    pub fn apply(
        &self,
        branch: &str,
        expected_head: u64,
        changes: impl IntoIterator<Item = Result<RawChangeSet>>,
        equal: Option<&Rev>,
        notes: &[Note],
    ) -> Result<ApplyReport> {
        internal_name(branch)?;
        if let Some(e) = equal {
            explicit(e)?;
        }
        self.txn(notes, |conn| {
            // A new branch's row is inserted after its entries (with the id it would have had
            // first): written before them, its page would leave SQLite's cache during a large
            // replay and be written again at the end, which makes SQLite re-checksum the whole
            // WAL at commit (a clone paid about a tenth of its time for it).
            let (row, new) = match at_head(conn, branch, expected_head, false) {
                Err(Error::HeadMoved { actual: None, .. }) if expected_head == 0 => {
                    (next_branch(conn, branch)?, true)
                }
                found => (found?, false),
            };
            let report = apply_in_txn(conn, &row, changes, "apply")?;
            if new {
                insert_branch_as(conn, &row, report.head)?;
            }
            if let Some(e) = equal {
                let (other, ov, _) = rev_view(conn, e)?;
                equal_in(conn, (row.id, report.head), (other.id, ov))?;
            }
            Ok(report)
        })
    }

    /// Replaces the contents of the internal branch `branch` (head `expected_head`) by a full state
    /// given as change sets (a snapshot at `snapshot_version`), then replays `rest` after it: one new
    /// version holds the difference between the old state and the snapshot, so history stays intact.
    /// All in one transaction.
    pub fn reset_and_apply(
        &self,
        branch: &str,
        expected_head: u64,
        snapshot: impl IntoIterator<Item = Result<RawChangeSet>>,
        snapshot_version: u64,
        rest: impl IntoIterator<Item = Result<RawChangeSet>>,
        notes: &[Note],
    ) -> Result<ApplyReport> {
        internal_name(branch)?;
        self.txn(notes, |conn| {
            let row = at_head(conn, branch, expected_head, false)?;
            if snapshot_version <= row.head {
                return Err(Error::InvalidOperation(format!(
                    "snapshot version {snapshot_version} does not follow branch {branch:?} head {}",
                    row.head
                )));
            }
            // Load the snapshot into a staging branch, write the difference as one version, drop the
            // staging branch: inside this transaction, so nothing of it is ever visible.
            let staging = insert_branch(conn, &format!("_staging:{}", uuid_like(conn)?), None)?;
            let loaded = apply_in_txn(conn, &staging, snapshot, "apply")?;
            let staged = store::view_at(conn, staging.id, loaded.head)?;
            let old = store::view_at(conn, row.id, row.head)?;
            let first_row = store::max_rowid(conn)? + 1;
            let mut n = 0u64;
            // Written as the difference streams (as a merge does): the views read here end at the
            // old head, below the version written, so nothing is held in memory.
            for_each_difference(conn, &old, &staged, |k, _, b| {
                store::write_row(conn, row.id, snapshot_version, k, b.as_ref())?;
                n += 1;
                Ok(())
            })?;
            store::record_commit(
                conn,
                row.id,
                snapshot_version,
                store::now_micros(),
                "snapshot",
                &format!("state at version {snapshot_version}"),
                None,
                first_row,
            )?;
            delete_row(conn, &staging)?;
            let row = store::branch_by_id(conn, row.id)?;
            let mut report = apply_in_txn(conn, &row, rest, "apply")?;
            report.versions += 1;
            report.entries += n;
            Ok(report)
        })
    }

    /// Makes the internal branch `branch` a copy-on-write fork of `source` (an explicit version), only
    /// if its head is `expected_head` (`None`: only if it does not exist). An existing branch of that
    /// name is replaced. With `equal_to_source`, the new branch and the source are recorded as equal.
    pub fn set_fork(
        &self,
        branch: &str,
        expected_head: Option<u64>,
        source: &Rev,
        notes: &[Note],
    ) -> Result<BranchInfo> {
        internal_name(branch)?;
        explicit(source)?;
        self.txn(notes, |conn| {
            let (src, sv, _) = rev_view(conn, source)?;
            match (find(conn, branch)?, expected_head) {
                (None, None) => {}
                (Some(r), Some(e)) if r.head == e => {
                    if r.id == src.id {
                        return Err(Error::InvalidOperation(format!(
                            "cannot fork {branch:?} from itself"
                        )));
                    }
                    delete_row(conn, &r)?;
                }
                (found, e) => {
                    return Err(moved(branch, e.unwrap_or(0), found.map(|r| r.head)));
                }
            }
            let row = insert_branch(conn, branch, Some((src.id, sv)))?;
            equal_in(conn, (row.id, sv), (src.id, sv))?;
            branch_info(conn, &row)
        })
    }

    /// Records that two explicit versions hold equal contents (merge records both ways), so later diffs
    /// between the two branches read only what changed since, and merges use it as their base.
    pub fn mark_equal(&self, a: &Rev, b: &Rev, notes: &[Note]) -> Result<()> {
        explicit(a)?;
        explicit(b)?;
        self.txn(notes, |conn| {
            let (x, xv, _) = rev_view(conn, a)?;
            let (y, yv, _) = rev_view(conn, b)?;
            equal_in(conn, (x.id, xv), (y.id, yv))
        })
    }

    // ----- user branches -----------------------------------------------------------------------

    /// Fast-forwards `branch` to `to` (an explicit version of an internal branch, e.g. a mirror).
    ///
    /// - An absent branch (with `expected_head` 0) is created as a copy-on-write fork of `to`.
    /// - An existing branch moves forward **in place** (keeping its identity, creation time and the
    ///   parents of its forks) only if its head is still `expected_head` and it holds nothing of its
    ///   own: it is an empty root branch, or a fork of `to`'s branch with no commits since the fork.
    ///
    /// Otherwise nothing is written and the result is [`Error::HeadMoved`] (a commit landed since the
    /// caller looked) or [`Error::InvalidOperation`] (the branch has its own history: merge instead).
    pub fn fast_forward(
        &self,
        branch: &str,
        expected_head: u64,
        to: &Rev,
        notes: &[Note],
    ) -> Result<FastForward> {
        validate_branch_name(branch, false)?;
        explicit(to)?;
        self.txn(notes, |conn| {
            let (src, sv, _) = rev_view(conn, to)?;
            let Some(row) = find(conn, branch)? else {
                if expected_head != 0 {
                    return Err(moved(branch, expected_head, None));
                }
                insert_branch(conn, branch, Some((src.id, sv)))?;
                return Ok(FastForward::Created);
            };
            if row.head != expected_head {
                return Err(moved(branch, expected_head, Some(row.head)));
            }
            // `to` may itself descend from this branch (a mirror forked from it by a first push):
            // the branch cannot become a fork of its own descendant.
            let mut anc = Some(src.id);
            while let Some(a) = anc {
                if a == row.id {
                    return Err(Error::InvalidOperation(format!(
                        "{to} descends from branch {branch:?}; it cannot fast-forward to it"
                    )));
                }
                anc = store::branch_by_id(conn, a)?.parent;
            }
            let empty_root = row.parent.is_none() && row.head == 0;
            let untouched_fork = row.parent == Some(src.id) && row.fork_version == row.head;
            if !(empty_root || untouched_fork) {
                return Err(Error::InvalidOperation(format!(
                    "branch {branch:?} has commits of its own; it cannot fast-forward to {to}"
                )));
            }
            if untouched_fork && row.head == sv {
                return Ok(FastForward::AlreadyThere);
            }
            if untouched_fork && sv < row.head {
                return Err(Error::InvalidOperation(format!(
                    "{to} is behind branch {branch:?} (version {}); a fast-forward only moves forward",
                    row.head
                )));
            }
            // The branch has no rows of its own, so every version it has read equals `to`'s branch at
            // that version: moving its fork point up keeps all of them (and its forks' views) true.
            conn.prepare_cached(
                "UPDATE branches SET parent=?2, fork_version=?3, head=?3 WHERE id=?1 AND head=?4",
            )?
            .execute(params![row.id, src.id, sv as i64, row.head as i64])?;
            Ok(FastForward::Advanced)
        })
    }

    /// Three-way merges `source` (an explicit version) into the user branch `target`, in one
    /// transaction that also decides whether the merge is **clean**: the target held nothing beyond
    /// `base` (an explicit version of the source's branch, e.g. the mirror version last synced), judged
    /// against the target head inside this same transaction. A clean merge leaves the target equal to
    /// the source, and the two are recorded as equal points. With `expected_head`, the merge happens
    /// only if the target head is still that version. `notes(head_after)` gives the notes to write
    /// with it.
    pub fn merge(
        &self,
        source: &Rev,
        target: &str,
        strategy: MergeStrategy,
        base: Option<&Rev>,
        expected_head: Option<u64>,
        notes: impl FnOnce(u64) -> Vec<Note>,
    ) -> Result<ReplicaMerge> {
        explicit(source)?;
        if let Some(b) = base {
            explicit(b)?;
        }
        if target.starts_with('_') {
            return Err(Error::InvalidOperation(format!(
                "branch {target:?} is internal; merge into a user branch"
            )));
        }
        let mut out = None;
        let merge =
            self.db
                .merge_inner(source, target, strategy, None, None, |conn, tgt, after| {
                    if let Some(e) = expected_head {
                        if tgt.head != e {
                            return Err(moved(target, e, Some(tgt.head)));
                        }
                    }
                    let clean = match base {
                        Some(b) => {
                            let (bb, bv, _) = rev_view(conn, b)?;
                            bv > 0 && contains_in(conn, (bb.id, bv), (tgt.id, tgt.head))?
                        }
                        None => false,
                    };
                    if clean {
                        let (s, sv, _) = rev_view(conn, source)?;
                        equal_in(conn, (tgt.id, after), (s.id, sv))?;
                    }
                    write_notes(conn, &notes(after))?;
                    out = Some((tgt.head, after, clean));
                    Ok(())
                })?;
        let (before, after, clean) = out.expect("the hook runs before a successful merge commits");
        Ok(ReplicaMerge {
            merge,
            before,
            after,
            clean,
        })
    }

    /// The head of a branch, or `None` if it does not exist. A convenience for callers that pass it
    /// back as an `expected_head`.
    pub fn head(&self, branch: &str) -> Result<Option<u64>> {
        let conn = self.db.conn()?;
        Ok(find(&conn, branch)?.map(|r| r.head))
    }

    /// The versions of `branch` after `after` that merges of `source` made (its `merge` commits whose
    /// recorded source is `source`), in order. Sync skips them when it replays a branch's own versions
    /// onto its remote: they brought the remote's changes, which the remote has already.
    pub fn merge_versions(&self, branch: &str, source: &str, after: u64) -> Result<Vec<u64>> {
        let conn = self.db.conn()?;
        let (Some(b), Some(src)) = (find(&conn, branch)?, find(&conn, source)?) else {
            return Ok(vec![]);
        };
        let mut st = conn.prepare_cached(
            "SELECT DISTINCT m.target_version FROM merges m JOIN commits c \
             ON c.branch = m.target AND c.version = m.target_version \
             WHERE m.target=?1 AND m.source=?2 AND m.target_version>?3 AND c.kind='merge' \
             ORDER BY m.target_version",
        )?;
        let rows = st
            .query_map(rusqlite::params![b.id, src.id, after as i64], |r| {
                r.get::<_, i64>(0)
            })?
            .map(|v| v.map(|v| v as u64))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The oldest version `branch` holds (through the branches it was forked from), or `None` when it
    /// has none or does not exist. A replica that began from a state snapshot holds nothing older.
    pub fn oldest_version(&self, branch: &str) -> Result<Option<u64>> {
        let conn = self.db.conn()?;
        let Some(b) = find(&conn, branch)? else {
            return Ok(None);
        };
        let view = store::view_at(&conn, b.id, b.head)?;
        let mut oldest = None;
        let mut st = conn.prepare_cached(
            "SELECT MIN(version) FROM commits WHERE branch=?1 AND version>?2 AND version<=?3",
        )?;
        for s in &view.segs {
            let v: Option<i64> =
                st.query_row(params![s.branch, s.lo as i64, s.hi as i64], |r| r.get(0))?;
            if let Some(v) = v {
                oldest = Some(oldest.map_or(v as u64, |o: u64| o.min(v as u64)));
            }
        }
        Ok(oldest)
    }

    /// Whether `outer` contains `inner` (both explicit versions), as [`Strata::contains`].
    pub fn contains(&self, outer: &Rev, inner: &Rev) -> Result<bool> {
        explicit(outer)?;
        explicit(inner)?;
        self.db.contains(outer, inner)
    }
}

/// A random name for a staging branch, from SQLite's generator (the engine has no RNG dependency).
fn uuid_like(conn: &Connection) -> Result<String> {
    Ok(conn
        .query_row("SELECT lower(hex(randomblob(12)))", [], |r| r.get(0))
        .optional()?
        .unwrap_or_default())
}
