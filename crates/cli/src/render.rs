//! Rendering of results: each has a JSON document (printed with `--json`) and a human text.
//!
//! Values are shown as JSON through [`Value::to_json`]; kinds by name (`kv`, `json`, `event`, `state`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::{json, Value as J};
use strata_engine::bundle::{BundleManifest, ImportReport};
use strata_engine::{
    BranchDiff, BranchInfo, CommitInfo, DiffEntry, EntryKey, Event, HistoryEntry, Kind,
    MergeConflict, MergeReport, Rev, Value,
};
use strata_sync::{
    CloneReport, FetchReport, GcReport, PullReport, PushReport, RemoteBranch, RemoteConfig,
    SyncStatus,
};

/// A result in both forms.
#[derive(Debug)]
pub struct Rendered {
    pub doc: J,
    pub text: String,
}

fn r(doc: J, text: impl Into<String>) -> Rendered {
    Rendered {
        doc,
        text: text.into(),
    }
}

/// Where results go: JSON documents or text, on stdout.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
    /// `-q`: no text on success.
    pub quiet: bool,
}

impl Out {
    /// Prints a result in the selected form: with `--json` the envelope `{"ok":true,"data":…}`.
    /// Empty texts, and texts under `-q`, print nothing.
    pub fn emit(&self, res: Rendered) {
        if self.json {
            print_line(&json!({"ok": true, "data": res.doc}).to_string());
        } else {
            self.text(&res.text);
        }
    }

    /// Prints what a read was asked for: like [`Out::emit`], but `-q` does not silence it.
    pub fn show(&self, res: Rendered) {
        if self.json || res.text.is_empty() {
            self.emit(res);
        } else {
            print_line(res.text.trim_end_matches('\n'));
        }
    }

    /// Prints a line of text unless `--json` or `-q`.
    pub fn text(&self, text: &str) {
        if !self.json && !self.quiet && !text.is_empty() {
            print_line(text.trim_end_matches('\n'));
        }
    }
}

/// The `--json` error envelope: `{"ok":false,"error":{"code","exit","message"[,"detail"]}}`.
pub fn error_envelope(code: &str, exit: u8, message: &str, detail: Option<&J>) -> J {
    let mut e = json!({"code": code, "exit": exit, "message": message});
    if let Some(d) = detail {
        e["detail"] = d.clone();
    }
    json!({"ok": false, "error": e})
}

/// Writes one line to stdout, ignoring a closed pipe.
pub fn print_line(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
}

// ----- values ---------------------------------------------------------------------------------------

/// A value on one line.
pub fn compact(v: &Value) -> String {
    v.to_json().to_string()
}

fn opt_json(v: Option<&Value>) -> J {
    v.map(Value::to_json).unwrap_or(J::Null)
}

/// A stored value of `kind` on one line; events show as `type payload`.
pub fn show(kind: Kind, v: &Value) -> String {
    if kind == Kind::Event {
        if let (Some(t), Some(p)) = (v.get("type").and_then(Value::as_str), v.get("payload")) {
            return format!("{t} {}", compact(p));
        }
    }
    compact(v)
}

/// One value, pretty-printed as text.
pub fn value(v: &Value) -> Rendered {
    let j = v.to_json();
    let text = serde_json::to_string_pretty(&j).unwrap_or_else(|_| j.to_string());
    r(j, text)
}

/// Formats microseconds since the Unix epoch as an RFC 3339 UTC time, e.g. `2025-06-03T12:00:00Z`.
pub fn time(micros: u64) -> String {
    let secs = (micros / 1_000_000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A time as RFC 3339 UTC with microseconds, e.g. `2025-06-03T12:00:00.000001Z` (for JSON).
pub fn time_micros(micros: u64) -> String {
    let base = time(micros);
    format!("{}.{:06}Z", base.trim_end_matches('Z'), micros % 1_000_000)
}

/// Sets `{name}_micros` and `{name}` (RFC 3339) on a JSON object.
fn set_time(doc: &mut J, name: &str, micros: Option<u64>) {
    doc[format!("{name}_micros")] = json!(micros);
    doc[name] = json!(micros.map(time_micros));
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i == last {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![line(headers.to_vec())];
    out.extend(
        rows.iter()
            .map(|row| line(row.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

// ----- writes ---------------------------------------------------------------------------------------

/// Where a write went: branch and space.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub branch: &'a str,
    pub space: &'a str,
}

/// `version N`, or `unchanged` when nothing was committed.
pub fn version_text(version: Option<u64>) -> String {
    version.map_or("unchanged".to_string(), |v| format!("version {v}"))
}

/// A committed single-entry write (`op` is put, set, delete, …).
pub fn written(op: &str, kind: Kind, at: Target<'_>, key: &str, version: Option<u64>) -> Rendered {
    let doc = json!({
        "op": op, "kind": kind.name(), "branch": at.branch, "space": at.space, "key": key, "version": version,
    });
    let v = version.map_or("unchanged".to_string(), |v| format!("version {v}"));
    r(
        doc,
        format!("{op} {kind} {key:?} on {}/{}: {v}", at.branch, at.space),
    )
}

// ----- listings -------------------------------------------------------------------------------------

/// Where a read looked: a branch, at its head (`version` null) or a past version, and a space.
#[derive(Debug, Clone, Copy)]
pub struct ReadAt<'a> {
    pub rev: &'a Rev,
    pub space: &'a str,
}

impl ReadAt<'_> {
    fn doc(&self) -> J {
        json!({"branch": self.rev.branch, "version": self.rev.version, "space": self.space})
    }
}

/// Key-value pairs or documents.
pub fn entries(at: ReadAt<'_>, kind: Kind, list: &[(String, Value)]) -> Rendered {
    let mut doc = at.doc();
    doc["kind"] = json!(kind.name());
    doc["entries"] = J::Array(
        list.iter()
            .map(|(k, v)| json!({"key": k, "value": v.to_json()}))
            .collect(),
    );
    let text = list
        .iter()
        .map(|(k, v)| format!("{k} = {}", compact(v)))
        .collect::<Vec<_>>()
        .join("\n");
    r(doc, text)
}

fn event_doc(e: &Event) -> J {
    let mut doc = json!({
        "seq": e.seq, "type": e.event_type, "payload": e.payload.to_json(), "id": e.id.to_string(),
    });
    set_time(&mut doc, "timestamp", Some(e.timestamp_micros));
    doc
}

/// Events.
pub fn events(at: ReadAt<'_>, list: &[Event]) -> Rendered {
    let mut doc = at.doc();
    doc["events"] = J::Array(list.iter().map(event_doc).collect());
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            vec![
                format!("#{}", e.seq),
                time(e.timestamp_micros),
                e.event_type.clone(),
                compact(&e.payload),
            ]
        })
        .collect();
    let text = if rows.is_empty() {
        String::new()
    } else {
        table(&["SEQ", "TIME", "TYPE", "PAYLOAD"], &rows)
    };
    r(doc, text)
}

fn parent(b: &BranchInfo) -> String {
    let deleted = if b.parent_deleted { " (deleted)" } else { "" };
    match (&b.parent, b.fork_version) {
        (Some(p), Some(v)) => format!("{p}@{v}{deleted}"),
        (Some(p), None) => format!("{p}{deleted}"),
        _ => "-".into(),
    }
}

fn branch_doc(b: &BranchInfo) -> J {
    let mut doc = json!({
        "branch": b.name,
        "head": b.head,
        "parent": b.parent,
        "parent_deleted": b.parent_deleted,
        "fork_version": b.fork_version,
        "internal": b.internal,
    });
    set_time(&mut doc, "created", Some(b.created_micros));
    doc
}

/// Branches as a table.
pub fn branches(list: &[BranchInfo]) -> Rendered {
    let doc = json!({"branches": list.iter().map(branch_doc).collect::<Vec<_>>()});
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|b| {
            vec![
                b.name.clone(),
                b.head.to_string(),
                parent(b),
                time(b.created_micros),
            ]
        })
        .collect();
    r(doc, table(&["NAME", "HEAD", "PARENT", "CREATED"], &rows))
}

/// One branch's metadata and spaces.
pub fn branch_info(b: &BranchInfo, spaces: &[String]) -> Rendered {
    let mut doc = branch_doc(b);
    doc["spaces"] = json!(spaces);
    let text = format!(
        "branch:   {}\nhead:     {}\nparent:   {}\ncreated:  {}\nspaces:   {}",
        b.name,
        b.head,
        parent(b),
        time(b.created_micros),
        if spaces.is_empty() {
            "-".to_string()
        } else {
            spaces.join(", ")
        }
    );
    r(doc, text)
}

/// A branch was created or forked.
pub fn branch_created(b: &BranchInfo) -> Rendered {
    let text = match &b.parent {
        Some(_) => format!(
            "forked branch {} from {} (head {})",
            b.name,
            parent(b),
            b.head
        ),
        None => format!("created branch {}", b.name),
    };
    r(branch_doc(b), text)
}

/// A branch's versions.
pub fn commits(branch: &str, list: &[CommitInfo]) -> Rendered {
    let doc = json!({"branch": branch, "versions": list.iter().map(|c| {
        let mut d = json!({"version": c.version, "kind": c.kind, "entries": c.entries, "message": c.message, "author": c.author});
        set_time(&mut d, "timestamp", Some(c.timestamp_micros));
        d
    }).collect::<Vec<_>>()});
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            vec![
                c.version.to_string(),
                time(c.timestamp_micros),
                c.kind.clone(),
                c.entries.to_string(),
                c.author.clone().unwrap_or_else(|| "-".into()),
                c.message.clone(),
            ]
        })
        .collect();
    let text = if rows.is_empty() {
        format!("branch {branch} has no versions")
    } else {
        table(
            &["VERSION", "TIME", "KIND", "ENTRIES", "AUTHOR", "MESSAGE"],
            &rows,
        )
    };
    r(doc, text)
}

/// Every database setting.
pub fn settings(list: &[(String, String)]) -> Rendered {
    let doc = json!({"settings": list.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>()});
    let text = if list.is_empty() {
        "no settings (set the commit author with: strata config user.name NAME)".to_string()
    } else {
        list.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    r(doc, text)
}

/// One setting: shown, set (`changed`) or removed (`value` None).
pub fn setting(key: &str, value: Option<&str>, changed: bool) -> Rendered {
    let doc = json!({"key": key, "value": value, "changed": changed});
    let text = match (value, changed) {
        (Some(v), false) => v.to_string(),
        (Some(v), true) => format!("set {key} = {v}"),
        (None, _) => format!("removed {key}"),
    };
    r(doc, text)
}

/// The past values of one entry.
pub fn history(at: ReadAt<'_>, kind: Kind, key: &str, list: &[HistoryEntry]) -> Rendered {
    let mut doc = at.doc();
    doc["kind"] = json!(kind.name());
    doc["key"] = json!(key);
    doc["history"] = list
        .iter()
        .map(|h| {
            let mut d = json!({
                "version": h.version, "deleted": h.value.is_none(), "value": opt_json(h.value.as_ref()),
            });
            set_time(&mut d, "timestamp", Some(h.timestamp_micros));
            d
        })
        .collect();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|h| {
            let v = h
                .value
                .as_ref()
                .map_or("(deleted)".to_string(), |v| show(kind, v));
            vec![h.version.to_string(), time(h.timestamp_micros), v]
        })
        .collect();
    r(doc, table(&["VERSION", "TIME", "VALUE"], &rows))
}

// ----- diff and merge -------------------------------------------------------------------------------

fn diff_entry_doc(e: &DiffEntry) -> J {
    json!({"kind": e.kind.name(), "key": e.key, "a": opt_json(e.a.as_ref()), "b": opt_json(e.b.as_ref())})
}

/// A structured diff: `+ key = value`, `- key`, `~ key: old -> new`, grouped per space.
pub fn diff(a: &str, b: &str, d: &BranchDiff) -> Rendered {
    let (added, removed, modified) = d.counts();
    let doc = json!({
        "a": a,
        "b": b,
        "empty": d.is_empty(),
        "counts": {"added": added, "removed": removed, "modified": modified},
        "spaces": d.spaces.iter().map(|s| json!({
            "space": s.space,
            "added": s.added.iter().map(diff_entry_doc).collect::<Vec<_>>(),
            "removed": s.removed.iter().map(diff_entry_doc).collect::<Vec<_>>(),
            "modified": s.modified.iter().map(diff_entry_doc).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let mut lines = Vec::new();
    if d.is_empty() {
        lines.push(format!("{a}..{b}: no differences"));
    } else {
        lines.push(format!(
            "{a}..{b}: {added} added, {removed} removed, {modified} modified"
        ));
    }
    for s in &d.spaces {
        lines.push(format!("space {}", s.space));
        let mut all: Vec<(&DiffEntry, char)> = Vec::new();
        all.extend(s.added.iter().map(|e| (e, '+')));
        all.extend(s.removed.iter().map(|e| (e, '-')));
        all.extend(s.modified.iter().map(|e| (e, '~')));
        all.sort_by(|x, y| (x.0.kind, &x.0.key).cmp(&(y.0.kind, &y.0.key)));
        for (e, sign) in all {
            let show_opt = |v: &Option<Value>| {
                v.as_ref()
                    .map_or("(absent)".to_string(), |v| show(e.kind, v))
            };
            let line = match sign {
                '+' => format!("  + {:<5} {} = {}", e.kind.name(), e.key, show_opt(&e.b)),
                '-' => format!("  - {:<5} {}", e.kind.name(), e.key),
                _ => format!(
                    "  ~ {:<5} {}: {} -> {}",
                    e.kind.name(),
                    e.key,
                    show_opt(&e.a),
                    show_opt(&e.b)
                ),
            };
            lines.push(line);
        }
    }
    r(doc, lines.join("\n"))
}

fn conflict_doc(c: &MergeConflict) -> J {
    json!({
        "space": c.space, "kind": c.kind.name(), "key": c.key,
        "ancestor": opt_json(c.ancestor.as_ref()),
        "source": opt_json(c.source.as_ref()),
        "target": opt_json(c.target.as_ref()),
    })
}

/// A strict merge's conflicts, optionally saved to a branch.
pub fn conflicts(
    source: &str,
    target: &str,
    list: &[MergeConflict],
    saved: Option<&BranchInfo>,
) -> Rendered {
    let doc = json!({
        "merged": false,
        "source": source,
        "target": target,
        "conflicts": list.iter().map(conflict_doc).collect::<Vec<_>>(),
        "conflict_branch": saved.map(|b| b.name.clone()),
    });
    let mut lines = vec![format!(
        "merge {source} into {target}: {} conflict(s), nothing written",
        list.len()
    )];
    for c in list {
        let s = |v: &Option<Value>| {
            v.as_ref()
                .map_or("(absent)".to_string(), |v| show(c.kind, v))
        };
        lines.push(format!("CONFLICT {}/{} {}", c.space, c.kind, c.key));
        lines.push(format!("  ancestor: {}", s(&c.ancestor)));
        lines.push(format!("  source:   {}", s(&c.source)));
        lines.push(format!("  target:   {}", s(&c.target)));
    }
    if let Some(b) = saved {
        lines.push(format!(
            "conflicts saved to branch {} (space \"conflicts\")",
            b.name
        ));
    }
    r(doc, lines.join("\n"))
}

/// A successful merge.
pub fn merged(source: &Rev, target: &str, m: &MergeReport) -> Rendered {
    let doc = json!({
        "merged": true,
        "source": source.to_string(),
        "target": target,
        "version": m.version,
        "base": m.base,
        "applied": m.applied,
        "conflicts_resolved": m.conflicts_resolved,
        "events_renumbered": m.events_renumbered,
    });
    let base = m.base.as_deref().unwrap_or("none");
    let text = match m.version {
        None => format!("merge {source} into {target}: already up to date (base {base})"),
        Some(v) => {
            let mut s = format!(
                "merged {source} into {target}: version {v}, {} entr{} applied (base {base})",
                m.applied,
                if m.applied == 1 { "y" } else { "ies" }
            );
            if m.conflicts_resolved > 0 {
                s.push_str(&format!(
                    ", {} conflict(s) resolved in favour of {source}",
                    m.conflicts_resolved
                ));
            }
            if m.events_renumbered > 0 {
                s.push_str(&format!(
                    ", {} event(s) of {target} renumbered",
                    m.events_renumbered
                ));
            }
            s
        }
    };
    r(doc, text)
}

// ----- bundles --------------------------------------------------------------------------------------

fn manifest_doc(file: &Path, m: &BundleManifest) -> J {
    let mut doc = serde_json::to_value(m).unwrap_or(J::Null);
    doc["file"] = json!(file.display().to_string());
    set_time(&mut doc, "created", Some(m.created_micros));
    doc
}

/// A bundle was exported.
pub fn exported(file: &Path, m: &BundleManifest) -> Rendered {
    let text = format!(
        "exported {} versions {}..{} ({} versions, {} entries) to {}\nsha256 {}",
        m.branch,
        m.from_version + 1,
        m.to_version,
        m.version_count,
        m.entry_count,
        file.display(),
        m.branchlog_sha256
    );
    r(manifest_doc(file, m), text)
}

/// A bundle was verified.
pub fn verified(file: &Path, m: &BundleManifest) -> Rendered {
    let mut doc = manifest_doc(file, m);
    doc["verified"] = json!(true);
    let text = format!(
        "ok: {} holds branch {} versions {}..{} ({} versions, {} entries, {} records), format {}, sha256 {}",
        file.display(),
        m.branch,
        m.from_version + 1,
        m.to_version,
        m.version_count,
        m.entry_count,
        m.record_count,
        m.format_version,
        m.branchlog_sha256
    );
    r(doc, text)
}

/// A bundle was imported.
pub fn imported(file: &Path, rep: &ImportReport) -> Rendered {
    let mut doc = serde_json::to_value(rep).unwrap_or(J::Null);
    doc["file"] = json!(file.display().to_string());
    let text = format!(
        "imported {} into {} branch {}: {} versions, {} entries, head {}",
        file.display(),
        if rep.created { "new" } else { "existing" },
        rep.branch,
        rep.versions,
        rep.entries,
        rep.head
    );
    r(doc, text)
}

// ----- sync -----------------------------------------------------------------------------------------

/// A byte count for people: `512 B`, `1.2 KiB`, `3.4 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `1 version`, `2 versions`; `1 entry`, `2 entries`.
pub fn count(n: u64, what: &str) -> String {
    match (n, what) {
        (1, _) => format!("1 {what}"),
        (_, "entry") => format!("{n} entries"),
        (_, "branch") => format!("{n} branches"),
        _ => format!("{n} {what}s"),
    }
}

fn remote_doc(cfg: &RemoteConfig) -> J {
    json!({"remote": cfg.name, "url": cfg.url, "options": cfg.redacted_options()})
}

fn options_text(cfg: &RemoteConfig) -> String {
    let o = cfg.redacted_options();
    if o.is_empty() {
        "-".into()
    } else {
        o.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A remote was added.
pub fn remote_added(cfg: &RemoteConfig) -> Rendered {
    let mut text = format!("added remote {} -> {}", cfg.name, cfg.url);
    if !cfg.options.is_empty() {
        text.push_str(&format!(" (options: {})", options_text(cfg)));
    }
    r(remote_doc(cfg), text)
}

/// Configured remotes; secret option values are redacted.
pub fn remotes(list: &[RemoteConfig]) -> Rendered {
    let doc = json!({"remotes": list.iter().map(remote_doc).collect::<Vec<_>>()});
    let text = if list.is_empty() {
        "no remotes (add one with `strata remote add NAME URL`)".to_string()
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|c| vec![c.name.clone(), c.url.clone(), options_text(c)])
            .collect();
        table(&["NAME", "URL", "OPTIONS"], &rows)
    };
    r(doc, text)
}

/// A remote was removed.
pub fn remote_removed(cfg: &RemoteConfig, mirrors: usize) -> Rendered {
    let mut doc = remote_doc(cfg);
    doc["removed"] = json!(true);
    doc["mirrors_deleted"] = json!(mirrors);
    r(
        doc,
        format!(
            "removed remote {} ({}); deleted {mirrors} origin mirror branch(es); the remote itself is untouched",
            cfg.name, cfg.url
        ),
    )
}

fn remote_branch_doc(b: &RemoteBranch) -> J {
    let mut d = json!({"branch": b.name, "version": b.version, "blobs": b.blobs});
    set_time(&mut d, "updated", Some(b.updated_micros));
    d
}

/// The branches a remote holds.
pub fn remote_branches(remote: &str, list: &[RemoteBranch]) -> Rendered {
    let doc = json!({"remote": remote, "branches": list.iter().map(remote_branch_doc).collect::<Vec<_>>()});
    let text = if list.is_empty() {
        format!("remote {remote} has no branches")
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|b| {
                vec![
                    b.name.clone(),
                    b.version.to_string(),
                    time(b.updated_micros),
                    b.blobs.to_string(),
                ]
            })
            .collect();
        table(&["BRANCH", "VERSION", "UPDATED", "BLOBS"], &rows)
    };
    r(doc, text)
}

/// `remote show`: the remote, its branches, and where each local branch of the same name stands.
pub fn remote_show(
    cfg: &RemoteConfig,
    rows: &[(RemoteBranch, Option<SyncStatus>)],
    upstream_of: &[String],
) -> Rendered {
    let mut doc = remote_doc(cfg);
    doc["upstream_of"] = json!(upstream_of);
    doc["branches"] = rows
        .iter()
        .map(|(b, s)| {
            let mut d = remote_branch_doc(b);
            d["local"] = json!(s.is_some());
            d["ahead_versions"] = json!(s.as_ref().map(|s| s.ahead_versions));
            d["behind_versions"] = json!(s.as_ref().map(|s| s.behind_versions));
            d
        })
        .collect();
    let mut lines = vec![
        format!("remote {}", cfg.name),
        format!("  url:      {}", cfg.url),
        format!("  options:  {}", options_text(cfg)),
        format!(
            "  upstream of: {}",
            if upstream_of.is_empty() {
                "-".to_string()
            } else {
                upstream_of.join(", ")
            }
        ),
    ];
    if rows.is_empty() {
        lines.push("  no branches".into());
    } else {
        let table_rows: Vec<Vec<String>> = rows
            .iter()
            .map(|(b, s)| {
                let state = match s {
                    None => "not local".to_string(),
                    Some(s) if s.ahead_versions == 0 && s.behind_versions == 0 => {
                        "up to date".to_string()
                    }
                    Some(s) => format!("ahead {}, behind {}", s.ahead_versions, s.behind_versions),
                };
                vec![
                    b.name.clone(),
                    b.version.to_string(),
                    time(b.updated_micros),
                    state,
                ]
            })
            .collect();
        for l in table(&["BRANCH", "VERSION", "UPDATED", "LOCAL"], &table_rows).lines() {
            lines.push(format!("  {l}"));
        }
    }
    r(doc, lines.join("\n"))
}

/// Garbage collection on a remote.
pub fn gc(remote: &str, grace_secs: u64, g: &GcReport) -> Rendered {
    let mut doc = serde_json::to_value(g).unwrap_or(J::Null);
    doc["remote"] = json!(remote);
    doc["grace_secs"] = json!(grace_secs);
    r(
        doc,
        format!(
            "gc {remote}: {} blob(s) referenced, {} deleted ({} freed), {} unreferenced kept (younger than {grace_secs}s)",
            g.referenced,
            g.deleted,
            bytes(g.bytes_freed),
            g.kept_young
        ),
    )
}

fn with_remote<T: Serialize>(remote: &str, t: &T) -> J {
    let mut doc = serde_json::to_value(t).unwrap_or(J::Null);
    doc["remote"] = json!(remote);
    doc
}

/// A branch was compacted on a remote.
pub fn compacted(remote: &str, p: &strata_sync::CompactReport) -> Rendered {
    let text = if p.up_to_date {
        format!(
            "{remote}/{} is already compact (version {}, {} blob{})",
            p.branch,
            p.remote_version,
            p.blobs_after,
            if p.blobs_after == 1 { "" } else { "s" }
        )
    } else {
        let mut s = format!(
            "compacted {remote}/{}: {} delta blobs -> {}, every version kept from {} to {} ({} uploaded)",
            p.branch,
            p.blobs_before,
            p.blobs_after,
            p.history_from.max(1),
            p.remote_version,
            bytes(p.bytes)
        );
        if p.versions_dropped > 0 {
            s.push_str(&format!(
                "; as asked (--squash-before), history now starts at version {}: versions {}..{} \
                 were squashed into its snapshot",
                p.history_from,
                p.history_from + 1 - p.versions_dropped,
                p.history_from
            ));
        }
        if p.snapshot.is_some() {
            s.push_str(&format!(
                "; snapshot at {} for shallow clones",
                p.remote_version
            ));
        }
        s
    };
    r(with_remote(remote, p), text)
}

/// A push.
pub fn pushed(remote: &str, p: &PushReport) -> Rendered {
    let text = if p.up_to_date {
        format!(
            "{} is up to date with {remote} (version {})",
            p.branch, p.remote_version
        )
    } else {
        let mut s = format!(
            "pushed {} to {remote}: version {} ({}), {}, {}",
            p.branch,
            p.remote_version,
            count(p.versions, "version"),
            count(p.entries, "entry"),
            bytes(p.bytes)
        );
        if p.packed.is_some() {
            s.push_str(" (older blobs packed)");
        }
        s
    };
    r(with_remote(remote, p), text)
}

/// A fetch.
pub fn fetched(remote: &str, f: &FetchReport) -> Rendered {
    let text = if f.versions == 0 {
        format!(
            "{remote}/{} is up to date (version {})",
            f.branch, f.remote_version
        )
    } else {
        format!(
            "fetched {remote}/{}: {} ({}, {}); the mirror is at version {} (not merged; pull to merge)",
            f.branch,
            count(f.versions, "version"),
            count(f.entries, "entry"),
            bytes(f.bytes),
            f.remote_version
        )
    };
    r(with_remote(remote, f), text)
}

/// A pull.
pub fn pulled(remote: &str, p: &PullReport) -> Rendered {
    let f = &p.fetch;
    let b = &f.branch;
    let fetched = if f.versions == 0 {
        "nothing new fetched".to_string()
    } else {
        format!(
            "fetched {} ({})",
            count(f.versions, "version"),
            count(f.entries, "entry")
        )
    };
    let text = if p.created {
        format!(
            "pulled {remote}/{b}: {fetched}, created {b} at version {}",
            f.remote_version
        )
    } else if let Some(v) = p.merged_version {
        let mut s = format!(
            "pulled {remote}/{b}: {fetched}, merged into {b}@{v} ({} applied",
            p.applied
        );
        if p.conflicts_resolved > 0 {
            s.push_str(&format!(
                ", {} conflict(s) resolved in favour of {remote}/{b}",
                p.conflicts_resolved
            ));
        }
        s.push(')');
        s
    } else if p.fast_forward {
        format!(
            "pulled {remote}/{b}: {fetched}, fast-forwarded {b} to version {}",
            f.remote_version
        )
    } else if f.versions == 0 {
        format!(
            "{b} is up to date with {remote} (version {})",
            f.remote_version
        )
    } else {
        format!("pulled {remote}/{b}: {fetched}, {b} already contains it")
    };
    let mut doc = with_remote(remote, p);
    doc["branch"] = json!(b);
    doc["fetch"].as_object_mut().map(|f| f.remove("branch"));
    r(doc, text)
}

/// A strict pull's conflicts, optionally saved to a branch.
pub fn pull_conflicts(
    remote: &str,
    branch: &str,
    list: &[MergeConflict],
    saved: Option<&BranchInfo>,
) -> Rendered {
    let mut res = conflicts(&format!("{remote}/{branch}"), branch, list, saved);
    res.doc["remote"] = json!(remote);
    res.doc["branch"] = json!(branch);
    if let Some(first) = res.text.lines().next().map(str::to_string) {
        res.text = res.text.replacen(
            &first,
            &format!(
                "pull {remote}/{branch} into {branch}: {} conflict(s); {branch} was not changed (the remote's versions were fetched)",
                list.len()
            ),
            1,
        );
    }
    res
}

/// Where a branch stands against a remote.
pub fn sync_status(remote: &str, s: &SyncStatus) -> Rendered {
    let mut doc = with_remote(remote, s);
    set_time(&mut doc, "last_synced", s.last_synced_micros);
    let b = &s.branch;
    let synced = s
        .last_synced_micros
        .map_or("never synced".to_string(), |t| {
            format!("last synced {}", time(t))
        });
    let text = match s.remote_version {
        None => format!(
            "{remote} has no branch {b}; a push would upload {} ({synced})",
            count(s.ahead_entries, "entry")
        ),
        Some(rv) if s.ahead_versions == 0 && s.ahead_entries == 0 && s.behind_versions == 0 => {
            format!("{b} is up to date with {remote} (version {rv}); {synced}")
        }
        Some(rv) => format!(
            "{b} vs {remote}: ahead {} ({}), behind {} ({}); {remote} is at version {rv}; {synced}",
            count(s.ahead_versions, "version"),
            count(s.ahead_entries, "entry"),
            count(s.behind_versions, "version"),
            count(s.behind_entries, "entry"),
        ),
    };
    r(doc, text)
}

/// A clone.
pub fn cloned(url: &str, path: &Path, c: &CloneReport) -> Rendered {
    let doc = json!({
        "url": url,
        "path": path.display().to_string(),
        "remote": "origin",
        "branches": c.branches,
    });
    let mut lines = vec![format!(
        "cloned {url} into {} ({}; remote origin)",
        path.display(),
        count(c.branches.len() as u64, "branch")
    )];
    for f in &c.branches {
        lines.push(format!(
            "  {}: version {}, {}, {}",
            f.branch,
            f.remote_version,
            count(f.entries, "entry"),
            bytes(f.bytes)
        ));
    }
    r(doc, lines.join("\n"))
}

// ----- whole-branch contents ------------------------------------------------------------------------

/// One exported entry as a JSONL object: `{"space","kind","key","value"}` (events keyed by their
/// sequence number).
pub fn entry_line(k: &EntryKey, v: &Value) -> J {
    json!({"space": k.space, "kind": k.kind.name(), "key": display_key(k), "value": v.to_json()})
}

/// Every live entry of a branch, by full key (events keyed by their sequence number).
pub type Snapshot = BTreeMap<EntryKey, Value>;

/// A branch's contents, grouped per space.
pub fn snapshot(snap: &Snapshot) -> Rendered {
    let doc = json!({"entries": snap.iter().map(|(k, v)| entry_line(k, v)).collect::<Vec<_>>()});
    let mut lines = Vec::new();
    let mut space = None;
    for (k, v) in snap {
        if space != Some(&k.space) {
            lines.push(format!("space {}", k.space));
            space = Some(&k.space);
        }
        lines.push(format!(
            "  {:<5} {} = {}",
            k.kind.name(),
            display_key(k),
            show(k.kind, v)
        ));
    }
    if lines.is_empty() {
        lines.push("(empty)".into());
    }
    r(doc, lines.join("\n"))
}

/// An entry's key as users write it: events by their plain sequence number.
pub fn display_key(k: &EntryKey) -> String {
    match k.kind {
        Kind::Event => {
            let t = k.key.trim_start_matches('0');
            if t.is_empty() { "0" } else { t }.to_string()
        }
        _ => k.key.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(951_782_400_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(time(1_717_416_245_000_000), "2024-06-03T12:04:05Z");
        assert_eq!(
            time_micros(1_717_416_245_000_007),
            "2024-06-03T12:04:05.000007Z"
        );
    }

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1229), "1.2 KiB");
        assert_eq!(bytes(5 << 20), "5.0 MiB");
        assert_eq!(count(1, "entry"), "1 entry");
        assert_eq!(count(2, "entry"), "2 entries");
        assert_eq!(count(0, "version"), "0 versions");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    BB\nxyz  1");
    }
}
