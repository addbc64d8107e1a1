//! Listing blobs and cursors by walking folders.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use strata_remote::{BlobMeta, RemoteError, RemotePath, Result};

use crate::cursor;
use crate::io::{is_absent, map_io};

/// Parses a listing prefix (the rule of [`RemotePath::parse_prefix`]), naming it in the error.
fn parse_prefix(prefix: &str) -> Result<Option<RemotePath>> {
    RemotePath::parse_prefix(prefix)
        .map_err(|e| RemoteError::Invalid(format!("listing prefix {prefix:?}: {e}").into()))
}

/// Joins the segments of a path (already validated: no `.`, `..`, separators or empty segments) under
/// `base`, each encoded by `enc`.
pub(crate) fn join_segments<'a>(
    base: &Path,
    segments: impl Iterator<Item = &'a str>,
    enc: impl Fn(&str) -> String,
) -> PathBuf {
    let mut p = base.to_path_buf();
    for seg in segments {
        let seg = enc(seg);
        debug_assert!(!seg.is_empty() && seg != "." && seg != ".." && !seg.contains(['/', '\\']));
        p.push(seg);
    }
    p
}

/// A folder found during a walk and the remote path it stands for (`""` for the base).
struct Pending {
    dir: PathBuf,
    rel: String,
}

fn child_rel(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

fn millis(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Lists the blobs under `blobs_dir` that match `prefix`, sorted by path. Symbolic links and entries
/// whose names are not valid remote paths are skipped: the remote never wrote them.
pub(crate) fn list_blobs(blobs_dir: &Path, prefix: &str) -> Result<Vec<BlobMeta>> {
    let what = || format!("list blobs under {prefix:?}");
    let prefix = parse_prefix(prefix)?;
    let mut out = Vec::new();
    let mut stack = Vec::new();
    match &prefix {
        None => stack.push(Pending {
            dir: blobs_dir.to_path_buf(),
            rel: String::new(),
        }),
        Some(p) => {
            let start = join_segments(blobs_dir, p.segments(), str::to_string);
            match fs::symlink_metadata(&start) {
                Ok(m) if m.is_dir() => stack.push(Pending {
                    dir: start,
                    rel: p.as_str().to_string(),
                }),
                Ok(m) if m.is_file() => {
                    out.push(BlobMeta {
                        path: p.clone(),
                        size: m.len(),
                        modified_millis: millis(&m),
                    });
                }
                Ok(_) => {}
                Err(e) if is_absent(&e) => {}
                Err(e) => return Err(map_io(what(), e)),
            }
        }
    }
    while let Some(Pending { dir, rel }) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            // Pruned by a concurrent delete.
            Err(e) if is_absent(&e) => continue,
            Err(e) => return Err(map_io(what(), e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| map_io(what(), e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let rel = child_rel(&rel, &name);
            let Ok(path) = RemotePath::parse(&rel) else {
                continue;
            };
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(map_io(what(), e)),
            };
            if meta.is_dir() {
                stack.push(Pending {
                    dir: entry.path(),
                    rel,
                });
            } else if meta.is_file() {
                out.push(BlobMeta {
                    path,
                    size: meta.len(),
                    modified_millis: millis(&meta),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Lists the cursors under `cursors_dir` that match `prefix`, sorted by name. A folder is a cursor
/// if it holds at least one record or a head.
pub(crate) fn list_cursors(cursors_dir: &Path, prefix: &str) -> Result<Vec<RemotePath>> {
    let what = || format!("list cursors under {prefix:?}");
    let prefix = parse_prefix(prefix)?;
    let mut out = Vec::new();
    let start = match &prefix {
        None => Pending {
            dir: cursors_dir.to_path_buf(),
            rel: String::new(),
        },
        Some(p) => Pending {
            dir: join_segments(cursors_dir, p.segments(), cursor::encode_name_segment),
            rel: p.as_str().to_string(),
        },
    };
    let mut stack = vec![start];
    while let Some(Pending { dir, rel }) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if is_absent(&e) => continue,
            Err(e) => return Err(map_io(what(), e)),
        };
        let mut is_cursor = false;
        for entry in entries {
            let entry = entry.map_err(|e| map_io(what(), e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_file()
                && (cursor::record_seq(&name).is_some() || name == cursor::HEAD_NAME)
            {
                is_cursor = true;
            } else if file_type.is_dir() {
                if let Some(seg) = cursor::decode_name_segment(&name) {
                    stack.push(Pending {
                        dir: entry.path(),
                        rel: child_rel(&rel, seg),
                    });
                }
            }
        }
        if is_cursor && !rel.is_empty() {
            if let Ok(p) = RemotePath::parse(&rel) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}
