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
        "SELECT rowid, kind, space, key, value FROM entries WHERE rowid BETWEEN 1 AND 10 AND rowid > 0 AND +branch=1 AND +version=1 ORDER BY rowid LIMIT 10",
        "SELECT COUNT(*) FROM entries WHERE rowid BETWEEN 1 AND 10",
        "SELECT version, value FROM entries WHERE branch=1 AND kind=0 AND space='default' AND key='k1' AND version>0 AND version<=5 ORDER BY version DESC LIMIT 1",
        "SELECT key, MAX(version), value FROM entries WHERE branch=1 AND kind=0 AND space='default' AND key>='' AND key>'k1' AND version>0 AND version<=5 GROUP BY key ORDER BY key LIMIT 10",
        "SELECT kind, space, key, MAX(version), value FROM entries WHERE branch=1 AND (kind, space, key) > (0, 'default', 'k1') AND version>0 AND version<=5 GROUP BY kind, space, key ORDER BY kind, space, key LIMIT 10",
        "SELECT version, ts, first_row, last_row, entries FROM commits WHERE branch=1 AND version>0 AND version<=5 ORDER BY version LIMIT 10",
        "SELECT MAX(rowid) FROM entries",
    ] {
        println!("{sql}");
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
        let rows = st.query_map([], |r| r.get::<_, String>(3))?;
        for r in rows {
            println!("    {}", r?);
        }
    }
    Ok(())
}
