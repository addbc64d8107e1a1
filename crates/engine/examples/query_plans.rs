//! Prints SQLite's plan for the engine's hot queries on a populated database, so a plan that scans a
//! whole branch shows up in review: `cargo run -p strata-engine --example query_plans`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = strata_engine::Strata::open_temp()?;
    let mut tx = db.begin("main")?;
    for i in 0..20_000 {
        tx.kv_put(&format!("k{i:06}"), i)?;
    }
    tx.commit()?;
    let conn = rusqlite::Connection::open(db.path().join(strata_engine::DB_FILE))?;
    conn.execute_batch("ANALYZE")?;
    for sql in [
        // The change log: one commit's rows, driven by the rowid range.
        "SELECT rowid, kind, space, key, length(value), value FROM entries WHERE rowid BETWEEN 1 AND 10 AND rowid > 0 AND +branch=1 AND +version=1 ORDER BY rowid LIMIT 10",
        "SELECT COUNT(*) FROM entries WHERE rowid BETWEEN 1 AND 10",
        "SELECT version, value FROM entries WHERE branch=1 AND kind=0 AND space='default' AND key='k1' AND version>0 AND version<=5 ORDER BY version DESC LIMIT 1",
        // Listing pages seek on the last key read (keyset pagination), bounded above by the prefix.
        "SELECT key, MAX(version), length(value), value FROM entries WHERE branch=1 AND kind=0 AND space='default' AND key>='k' AND key<'l' AND version>0 AND version<=5 GROUP BY key ORDER BY key LIMIT 10",
        "SELECT key, MAX(version), length(value), value FROM entries WHERE branch=1 AND kind=0 AND space='default' AND key>'k000100' AND key<'l' AND version>0 AND version<=5 GROUP BY key ORDER BY key LIMIT 10",
        "SELECT kind, space, key, MAX(version), length(value), value FROM entries WHERE branch=1 AND (kind, space, key) > (0, 'default', 'k1') AND version>0 AND version<=5 GROUP BY kind, space, key ORDER BY kind, space, key LIMIT 10",
        "SELECT version, ts, first_row, last_row FROM commits WHERE branch=1 AND version>0 AND version<=5 ORDER BY version LIMIT 10",
        "SELECT MAX(rowid) FROM entries",
        // Diff and merge candidates: commits outer, each commit's rows by rowid range.
        "CREATE TEMP TABLE IF NOT EXISTS strata_candidates(space TEXT NOT NULL, kind INTEGER NOT NULL, key TEXT NOT NULL, PRIMARY KEY (space, kind, key)) WITHOUT ROWID",
        "INSERT OR IGNORE INTO temp.strata_candidates(space, kind, key) SELECT e.space, e.kind, e.key FROM commits c CROSS JOIN entries e ON e.rowid BETWEEN c.first_row AND c.last_row AND +e.branch=c.branch AND +e.version=c.version WHERE c.branch=1 AND c.version>0 AND c.version<=5",
        "SELECT space, kind, key FROM temp.strata_candidates WHERE (space, kind, key) > ('', -1, '') ORDER BY space, kind, key LIMIT 10",
    ] {
        println!("{sql}");
        if sql.starts_with("CREATE") {
            conn.execute_batch(sql)?;
            continue;
        }
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
        let rows = st.query_map([], |r| r.get::<_, String>(3))?;
        for r in rows {
            println!("    {}", r?);
        }
    }
    Ok(())
}
