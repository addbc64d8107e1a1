//! Benchmark 17, `import`: `strata import FILE.jsonl` (the CLI, one process, one transaction) of N small
//! entries, in entries per second, from the start of the process to its exit. Baseline: raw
//! rusqlite reading the same file line by line, parsing each line with serde_json and inserting
//! the key and the value's JSON text into `kv (key TEXT PRIMARY KEY, value BLOB)` in one
//! transaction (`synchronous=FULL`, like the engine), timed the same way around the work.
//! Median of several runs, each into a fresh database. Target: ≥ 100k entries/s (issue 10).

use std::io::{BufRead, Write};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};
use strata_engine::Durability;

use crate::{child, median, open_raw, progress, secs, si, Ctx, Measure, Row, Target};

impl Ctx {
    pub(crate) fn bench_import(&mut self) -> Result<()> {
        let n = self.sizes.batch_n;
        let runs = self.sizes.batch_runs;
        let strata = child::strata_exe()?;
        let dir = self.tempdir("strata-bench-import-")?;
        let file = dir.path().join("entries.jsonl");
        {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&file)?);
            let value = self.value.to_json();
            for i in 0..n {
                let line = serde_json::json!({"key": crate::key(i), "value": value});
                writeln!(w, "{line}")?;
            }
            w.flush()?;
        }
        let file_mb = std::fs::metadata(&file)?.len() as f64 / 1e6;
        progress(format!(
            "import: {runs} runs of `strata import` of {n} entries ({file_mb:.1} MB of JSONL)"
        ));
        let (mut ours, mut raw) = (Vec::new(), Vec::new());
        for run in 0..runs {
            let db = dir.path().join(format!("db-{run}"));
            let init = Command::new(&strata)
                .arg("--db")
                .arg(&db)
                .arg("init")
                .output()?;
            if !init.status.success() {
                bail!(
                    "strata init failed: {}",
                    String::from_utf8_lossy(&init.stderr)
                );
            }
            let t = Instant::now();
            let out = Command::new(&strata)
                .arg("--db")
                .arg(&db)
                .arg("import")
                .arg(&file)
                .output()?;
            let s = secs(t.elapsed());
            if !out.status.success() {
                bail!(
                    "strata import failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let raw_file = dir.path().join(format!("raw-{run}.db"));
            let t = Instant::now();
            let mut conn = open_raw(&raw_file, Durability::Full)?;
            let tx = conn.transaction()?;
            {
                let mut st = tx.prepare("INSERT INTO kv (key, value) VALUES (?1, ?2)")?;
                let r = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&file)?);
                for line in r.lines() {
                    let v: serde_json::Value = serde_json::from_str(&line?)?;
                    let key = v["key"].as_str().unwrap_or_default();
                    st.execute(rusqlite::params![key, v["value"].to_string().as_bytes()])?;
                }
            }
            tx.commit()?;
            drop(conn);
            let b = secs(t.elapsed());
            progress(format!(
                "  run {}: strata import {} entries/s, raw {} rows/s",
                run + 1,
                si(n as f64 / s),
                si(n as f64 / b)
            ));
            ours.push(n as f64 / s);
            raw.push(n as f64 / b);
        }
        self.rows.push(Row {
            bench: "import",
            label: "strata import (CLI), JSONL".into(),
            size: format!("{n} entries, median of {runs}"),
            strata: Ok(Measure::Rate {
                per_sec: median(&mut ours),
                unit: "entries",
            }),
            baseline_label: "rusqlite parse+INSERT".into(),
            baseline: Measure::Rate {
                per_sec: median(&mut raw),
                unit: "entries",
            },
            ratio_of: "strata/baseline",
            inverse: false,
            target: Some(Target::RateAtLeast(100_000.0)),
            note: "whole CLI process (start, open, parse, one transaction, commit) vs the same \
                   file read, parsed and inserted in one rusqlite transaction; synchronous=FULL both"
                .into(),
        });
        Ok(())
    }
}
