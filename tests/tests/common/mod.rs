//! Shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

/// The `strata-torture` binary Cargo built for these tests.
pub const TORTURE: &str = env!("CARGO_BIN_EXE_strata-torture");

/// Runs `PRAGMA integrity_check` on a database folder's SQLite file and panics unless it says `ok`.
pub fn integrity_check(db_dir: &Path) {
    let file = db_dir.join(strata_engine::DB_FILE);
    let conn = rusqlite::Connection::open(&file)
        .unwrap_or_else(|e| panic!("open {}: {e}", file.display()));
    let mut st = conn
        .prepare("PRAGMA integrity_check")
        .expect("prepare integrity_check");
    let rows: Vec<String> = st
        .query_map([], |r| r.get(0))
        .expect("integrity_check")
        .collect::<Result<_, _>>()
        .expect("integrity_check");
    assert_eq!(
        rows,
        vec!["ok".to_string()],
        "integrity_check of {}",
        file.display()
    );
}

/// A fresh temporary folder and the path of a database folder inside it (not created yet).
pub fn fresh_db() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("strata-e2e-")
        .tempdir()
        .expect("tempdir");
    let db = tmp.path().join("db");
    (tmp, db)
}
