//! Helpers for the sync end-to-end tests (`tests/tests/sync_*.rs`) and the sync subcommands of
//! `strata-torture`.
//!
//! - Output protocol of the sync subcommands: `acked {i} {remote_version}` (`sync-loop`),
//!   `pushed {i} {remote_version}` (`push-loop`), `pulled {remote_version}` (`pull-loop`); see
//!   [`parse_tagged`].
//! - [`contents`]: a branch's user-visible contents, to compare replicas across databases.
//! - The pull-trial data set: [`write_batch`] and [`check_batch`].

use std::collections::BTreeMap;

use strata_engine::{EntryKey, Rev, Strata, Value};

/// The remote name the sync subcommands configure.
pub const REMOTE: &str = "hub";

/// Parses a line `{tag} {n1} {n2} …` with exactly `count` numbers.
pub fn parse_tagged(line: &str, tag: &str, count: usize) -> Option<Vec<u64>> {
    let mut it = line.split_whitespace();
    if it.next()? != tag {
        return None;
    }
    let nums: Vec<u64> = it.map(|s| s.parse().ok()).collect::<Option<_>>()?;
    (nums.len() == count).then_some(nums)
}

/// Every entry of `rev` outside internal (`_`) spaces, in key order: what a replica must reproduce.
/// Event values include their time and random id, so two logs compare equal only if they hold the
/// very same appended events in the same positions.
pub fn contents(db: &Strata, rev: &Rev) -> Result<Vec<(EntryKey, Value)>, strata_engine::Error> {
    let mut out = Vec::new();
    for cs in db.snapshot(rev)? {
        for (k, v) in cs?.puts {
            if !k.space.starts_with('_') {
                out.push((k, v));
            }
        }
    }
    Ok(out)
}

/// Describes the first difference between two [`contents`] lists, or `None` if they are equal.
pub fn first_difference(a: &[(EntryKey, Value)], b: &[(EntryKey, Value)]) -> Option<String> {
    let ma: BTreeMap<&EntryKey, &Value> = a.iter().map(|(k, v)| (k, v)).collect();
    let mb: BTreeMap<&EntryKey, &Value> = b.iter().map(|(k, v)| (k, v)).collect();
    let mut diffs = Vec::new();
    for (k, v) in &ma {
        match mb.get(k) {
            None => diffs.push(format!("{k:?} only in the first ({v:?})")),
            Some(w) if w != v => diffs.push(format!("{k:?}: {v:?} vs {w:?}")),
            _ => {}
        }
    }
    for (k, w) in &mb {
        if !ma.contains_key(k) {
            diffs.push(format!("{k:?} only in the second ({w:?})"));
        }
    }
    if diffs.is_empty() {
        return None;
    }
    let n = diffs.len();
    diffs.truncate(5);
    Some(format!(
        "{n} difference(s) ({} vs {} entries), first: {}",
        a.len(),
        b.len(),
        diffs.join("; ")
    ))
}

/// Keys in the pull-trial data set (`s0000` … ).
pub const BATCH_KEYS: u64 = 2000;

/// Whether batch `b` deletes key `j` (one key in ten, a different tenth each batch).
fn batch_deletes(b: u64, j: u64) -> bool {
    // That is, `j + b` is a multiple of ten (written so as not to need `u64::is_multiple_of`, which is
    // newer than the workspace's minimum Rust version).
    j % 10 == (10 - b % 10) % 10
}

fn batch_key(j: u64) -> String {
    format!("s{j:04}")
}

/// Commits batch `b` (1, 2, …) on `main` in one transaction: every key `s{j}` is set to `b`, except one
/// in ten, which is deleted; cell `batch` is set to `b` and event `batch` with payload `b` is appended.
/// So the state after batch `b` is fully determined by `b`, and a partial import shows as mixed values.
pub fn write_batch(db: &Strata, b: u64) -> Result<u64, strata_engine::Error> {
    let mut tx = db.begin("main")?;
    for j in 0..BATCH_KEYS {
        if batch_deletes(b, j) {
            tx.kv_delete(&batch_key(j))?;
        } else {
            tx.kv_put(&batch_key(j), b as i64)?;
        }
    }
    tx.state_set("batch", b as i64)?;
    tx.event_append("batch", b as i64)?;
    Ok(tx.commit()?.expect("a batch writes entries"))
}

/// Which batch the data set on `branch` of `db` is at (0 for empty), checking that it is exactly the
/// state [`write_batch`] leaves after batches `1..=b`: every key, the cell, and events `1..=b` in order.
pub fn check_batch(db: &Strata, branch: &str) -> Result<u64, String> {
    let e = |what: &str, err: strata_engine::Error| format!("{branch}: {what}: {err}");
    // Reads of internal branches (mirrors) need no special scope; only writes are refused.
    let scope = db.on(branch);
    let b = match scope.state_get("batch").map_err(|x| e("state_get", x))? {
        None => 0,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| format!("{branch}: cell batch holds {v:?}"))? as u64,
    };
    let rows = scope.kv_list("").map_err(|x| e("kv_list", x))?;
    let want: Vec<(String, Value)> = if b == 0 {
        vec![]
    } else {
        (0..BATCH_KEYS)
            .filter(|&j| !batch_deletes(b, j))
            .map(|j| (batch_key(j), Value::Int(b as i64)))
            .collect()
    };
    if rows != want {
        let wrong: Vec<String> = rows
            .iter()
            .filter(|(_, v)| v.as_i64() != Some(b as i64))
            .take(5)
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        return Err(format!(
            "{branch}: cell batch = {b} but {} keys (want {}), e.g. {wrong:?}: a partial import?",
            rows.len(),
            want.len()
        ));
    }
    let events = scope
        .event_range(1, usize::MAX)
        .map_err(|x| e("event_range", x))?;
    let got: Vec<(u64, String, Value)> = events
        .into_iter()
        .map(|ev| (ev.seq, ev.event_type, ev.payload))
        .collect();
    let want: Vec<(u64, String, Value)> = (1..=b)
        .map(|i| (i, "batch".to_string(), Value::Int(i as i64)))
        .collect();
    if got != want {
        return Err(format!(
            "{branch}: events {:?}… ({} of them), expected batch events 1..={b}",
            got.iter().take(5).collect::<Vec<_>>(),
            got.len()
        ));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_lines_parse() {
        assert_eq!(parse_tagged("acked 3 7", "acked", 2), Some(vec![3, 7]));
        assert_eq!(parse_tagged("pulled 9", "pulled", 1), Some(vec![9]));
        assert_eq!(parse_tagged("pulled 9 1", "pulled", 1), None);
        assert_eq!(parse_tagged("pushed x 1", "pushed", 2), None);
        assert_eq!(parse_tagged("acked 3 7", "pushed", 2), None);
    }

    #[test]
    fn batches_check_out() {
        let db = Strata::open_temp().unwrap();
        assert_eq!(check_batch(&db, "main"), Ok(0));
        for b in 1..=3 {
            write_batch(&db, b).unwrap();
            assert_eq!(check_batch(&db, "main"), Ok(b));
        }
        db.main().kv_put("s0001", 1).unwrap();
        assert!(check_batch(&db, "main").is_err());
    }
}
