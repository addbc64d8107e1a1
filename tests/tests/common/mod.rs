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

// ----- sync --------------------------------------------------------------------------------------

/// A runtime for the sync calls the tests make from plain `#[test]` functions.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A path as the URL of a folder remote.
pub fn url(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// Reads the remote's `main` cursor (through the sync library and the `Remote` trait) and checks that
/// every blob it references exists with the recorded size and SHA-256. Returns the cursor, or `None`
/// if the remote has no `main` yet.
pub async fn check_remote_blobs(
    remote_dir: &Path,
) -> Result<Option<strata_sync::layout::CursorDoc>, String> {
    check_remote_blobs_at(&url(remote_dir), &Default::default()).await
}

/// [`check_remote_blobs`] for any remote URL (a bucket, say) with its options.
pub async fn check_remote_blobs_at(
    url: &str,
    options: &std::collections::BTreeMap<String, String>,
) -> Result<Option<strata_sync::layout::CursorDoc>, String> {
    use strata_sync::layout::{cursor_name, CursorDoc};
    let remote = strata_sync::open_url_with(url, options).map_err(|e| e.to_string())?;
    let name = cursor_name("main");
    let Some(cur) = remote
        .read_cursor(&name)
        .await
        .map_err(|e| format!("read cursor: {e}"))?
    else {
        return Ok(None);
    };
    let doc = CursorDoc::parse(name.as_str(), &cur.value).map_err(|e| format!("cursor: {e}"))?;
    let sizes: std::collections::BTreeMap<String, u64> = remote
        .list_blobs("branches")
        .await
        .map_err(|e| format!("list blobs: {e}"))?
        .into_iter()
        .map(|m| (m.path.as_str().to_string(), m.size))
        .collect();
    for b in doc.blobs() {
        match sizes.get(&b.path) {
            None => {
                return Err(format!(
                    "cursor at version {} references missing blob {}",
                    doc.version, b.path
                ))
            }
            Some(&n) if n != b.bytes => {
                return Err(format!(
                    "blob {} has {n} bytes, the cursor records {}",
                    b.path, b.bytes
                ))
            }
            Some(_) => {}
        }
        // Download it and check its hash too.
        let path = strata_remote::RemotePath::parse(&b.path).map_err(|e| e.to_string())?;
        let bytes = strata_remote::RemoteExt::get_bytes(&*remote, &path)
            .await
            .map_err(|e| format!("get blob {}: {e}", b.path))?;
        let mut tmp = tempfile::tempfile().map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut tmp, &bytes).map_err(|e| e.to_string())?;
        let (sha, _) = strata_sync::blob::hash_file(&tmp).map_err(|e| e.to_string())?;
        if sha != b.sha256 {
            return Err(format!(
                "blob {} has SHA-256 {sha}, the cursor records {}",
                b.path, b.sha256
            ));
        }
    }
    Ok(Some(doc))
}

/// Every record of the `main` cursor a folder remote keeps (`cursors/branches/main/<seq>`), by sequence
/// number, parsed.
pub fn cursor_records(remote_dir: &Path) -> Vec<(u64, strata_sync::layout::CursorDoc)> {
    let dir = remote_dir.join("cursors").join("branches").join("main");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.expect("read_dir");
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(seq) = name.parse::<u64>() else {
            continue;
        };
        let bytes = std::fs::read(entry.path()).expect("read cursor record");
        let doc = strata_sync::layout::CursorDoc::parse(&name, &bytes)
            .unwrap_or_else(|e| panic!("cursor record {name}: {e}"));
        out.push((seq, doc));
    }
    out.sort_by_key(|(s, _)| *s);
    out
}

/// Registers every backend this build has (folders, buckets, memory://), once per test process.
pub fn init() {
    strata_sync::set_connector(std::sync::Arc::new(strata_remotes::Remotes::new()));
}
