//! Child processes of benchmarks 14–16: finding (and if needed building) the `strata` CLI, running a
//! command and reading its own peak RSS with `wait4(2)`, and counting a command's sync system calls
//! (fsync and friends) with `strace -f -y`, broken down by the file each one made durable.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};

use crate::{progress, secs};

/// The system calls that make data durable, as strace names them (x86-64 and aarch64).
pub(crate) const SYNC_CALLS: &str = "fsync,fdatasync,sync_file_range,msync,syncfs,sync";

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The `strata` CLI of the same build as this benchmark: `strata` next to this executable (cargo puts
/// both in `target/<profile>/`). When it is missing, it is built first with
/// `cargo build --locked --profile <same> -p strata-cli --bin strata`. When it is older than this
/// executable it is used, with a warning: rebuilding it here could pick other features than the
/// build that made it (`cargo test --workspace` unifies features differently) and so rebuild many
/// crates, and a `cargo build --release -p strata-cli` before the benchmark is what keeps it fresh.
pub(crate) fn strata_exe() -> Result<PathBuf> {
    static FOUND: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(p) = FOUND.get() {
        return Ok(p.clone());
    }
    let exe = find_strata()?;
    Ok(FOUND.get_or_init(|| exe).clone())
}

fn find_strata() -> Result<PathBuf> {
    let me = std::env::current_exe().context("locating the benchmark executable")?;
    let exe = me.with_file_name(format!("strata{}", std::env::consts::EXE_SUFFIX));
    let dir = exe
        .parent()
        .context("the benchmark executable has no folder")?;
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(p) => p.to_string(),
        None => bail!("cannot tell the cargo profile of {}", me.display()),
    };
    let build = format!("cargo build --locked --profile {profile} -p strata-cli --bin strata");
    if exe.is_file() {
        if let (Some(cli), Some(bench)) = (mtime(&exe), mtime(&me)) {
            if cli < bench {
                progress(format!(
                    "note: {} is older than this benchmark; if the sources changed since it was \
                     built, rebuild it ({build})",
                    exe.display()
                ));
            }
        }
        return Ok(exe);
    }
    let target_dir = dir.parent().context("no cargo target folder")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    progress(format!(
        "the strata CLI is missing at {}: building it ({build})",
        exe.display()
    ));
    let status = Command::new(&cargo)
        .args(["build", "--locked", "--profile", &profile])
        .args(["-p", "strata-cli", "--bin", "strata"])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(&workspace)
        .status();
    match status {
        Ok(s) if s.success() && exe.is_file() => Ok(exe),
        Ok(s) => bail!(
            "the strata CLI is missing at {} and `{build}` failed ({s}); build it first",
            exe.display()
        ),
        Err(e) => bail!(
            "the strata CLI is missing at {} and cargo could not be run ({e}); build it first \
             ({build})",
            exe.display()
        ),
    }
}

/// The hidden subcommand of this executable that runs a command for [`run_measured`] and reports
/// its peak RSS: `__rss-child REPORT PROGRAM [ARGS…]`.
pub(crate) const RSS_CHILD: &str = "__rss-child";

/// A finished child process.
pub(crate) struct ChildRun {
    /// Wall-clock time from spawn to exit of the command itself.
    pub secs: f64,
    /// The command's peak resident set size (`ru_maxrss` from `wait4`), in KiB.
    pub peak_rss_kib: u64,
    /// The peak RSS of the small intermediate process when it started the command, in KiB: a
    /// command's figure can never read lower than this.
    pub floor_kib: u64,
    pub stdout: String,
}

impl ChildRun {
    /// Peak RSS in MB (10^6 bytes).
    pub fn rss_mb(&self) -> f64 {
        self.peak_rss_kib as f64 * 1024.0 / 1e6
    }
    /// The measurement floor in MB.
    pub fn floor_mb(&self) -> f64 {
        self.floor_kib as f64 * 1024.0 / 1e6
    }
    /// The stdout parsed as one JSON document (the CLI's `--json` output).
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(self.stdout.trim())
            .with_context(|| format!("the command printed no JSON document: {:?}", self.stdout))
    }

    /// The one branch result of a `strata --json push`, `pull`, `fetch` or `status` (the CLI's
    /// envelope: `{"ok":true,"data":{"branches":[result]}}`, see docs/cli-json.md).
    pub fn sync_result(&self) -> Result<serde_json::Value> {
        let doc = self.json()?;
        let r = &doc["data"]["branches"][0];
        if doc["ok"] != true || !r.is_object() {
            anyhow::bail!("not a one-branch sync result: {doc}");
        }
        Ok(r.clone())
    }
}

fn read_all(mut f: std::fs::File) -> Result<String> {
    f.rewind()?;
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    Ok(s)
}

/// Waits for `child` with `wait4(2)`: its wait status and resource usage.
fn wait4(child: std::process::Child, what: &str) -> Result<(libc::c_int, libc::rusage)> {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: a zeroed `rusage` is a valid value (plain integers and timevals).
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `ru` are valid for writes; `pid` is our own unreaped child, which the
        // `Child` handle never waits for (dropping it neither waits nor kills).
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).with_context(|| format!("waiting for {what}"));
        }
    }
    drop(child);
    Ok((status, ru))
}

/// `__rss-child REPORT PROGRAM [ARGS…]`: runs PROGRAM with this process's stdio, waits for it with
/// `wait4`, writes `{"peak_rss_kib", "floor_kib", "secs"}` to REPORT and exits with its status.
///
/// Why a separate process: Linux carries the peak RSS of the memory image a process `exec`s from into
/// its `ru_maxrss`, and a child spawned by the benchmark starts as a (vfork) copy of the benchmark,
/// which holds databases and caches. This process is freshly `exec`ed and small, so the command
/// it starts inherits only its few MB (the floor, reported too).
pub(crate) fn rss_child(args: &[OsString]) -> Result<()> {
    let [report, program, rest @ ..] = args else {
        bail!("usage: strata-bench {RSS_CHILD} REPORT PROGRAM [ARGS...]");
    };
    let floor_kib = crate::peak_rss_kib().unwrap_or(0);
    let t = Instant::now();
    let child = Command::new(program)
        .args(rest)
        .spawn()
        .with_context(|| format!("starting {}", Path::new(program).display()))?;
    let (status, ru) = wait4(child, "the command")?;
    let took = secs(t.elapsed());
    std::fs::write(
        report,
        serde_json::json!({
            "peak_rss_kib": ru.ru_maxrss,
            "floor_kib": floor_kib,
            "secs": took,
        })
        .to_string(),
    )?;
    if libc::WIFEXITED(status) {
        std::process::exit(libc::WEXITSTATUS(status));
    }
    bail!("the command ended with wait status {status:#x}");
}

/// Runs `program args` to completion (through [`rss_child`], this executable's hidden subcommand)
/// and returns its wall time, stdout and its own peak RSS, so that this process's memory never
/// counts. Fails, with the command's stderr, unless it exits with status 0.
pub(crate) fn run_measured(
    program: impl AsRef<std::ffi::OsStr>,
    args: &[OsString],
    what: &str,
) -> Result<ChildRun> {
    let me = std::env::current_exe().context("locating this executable")?;
    let report = tempfile::NamedTempFile::new()?;
    let (out, err) = (tempfile::tempfile()?, tempfile::tempfile()?);
    let status = Command::new(&me)
        .arg(RSS_CHILD)
        .arg(report.path())
        .arg(program.as_ref())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?)
        .status()
        .with_context(|| format!("starting {what}"))?;
    if !status.success() {
        let stderr = read_all(err).unwrap_or_default();
        bail!("{what} failed ({status}): {}", stderr.trim());
    }
    let rep: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report.path())?)
        .with_context(|| format!("no RSS report for {what}"))?;
    Ok(ChildRun {
        secs: rep["secs"].as_f64().unwrap_or(f64::NAN),
        peak_rss_kib: rep["peak_rss_kib"].as_u64().unwrap_or(0),
        floor_kib: rep["floor_kib"].as_u64().unwrap_or(0),
        stdout: read_all(out)?,
    })
}

/// Whether strace can trace here: it may be missing, or present but refused `ptrace` (a container
/// without `CAP_SYS_PTRACE`, or `kernel.yama.ptrace_scope` = 3). `Err` says which.
pub(crate) fn strace_usable() -> std::result::Result<(), String> {
    match Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=fsync", "-o", "/dev/null", "true"])
        .stdin(Stdio::null())
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("strace not installed (apt-get install strace)".into())
        }
        Err(e) => Err(format!("strace cannot run: {e}")),
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "strace cannot trace here ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
    }
}

/// The sync system calls of one traced command.
#[derive(Default, Debug, Clone)]
pub(crate) struct SyncCalls {
    pub total: usize,
    /// Count by (call, file); files are shown relative to the benchmark's folder, with generated
    /// names (hashes, uuids, sequence numbers) replaced by `*`.
    pub by_file: BTreeMap<(String, String), usize>,
}

impl SyncCalls {
    /// "3 fdatasync a/strata.db-wal, 1 fsync remote/blobs/…", most frequent first.
    pub fn breakdown(&self) -> String {
        let mut v: Vec<_> = self.by_file.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let parts: Vec<String> = v
            .into_iter()
            .map(|((call, file), n)| format!("{n} {call} {file}"))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A path component made of a long run of digits, hex or uuid characters is generated.
fn generic(component: &str) -> String {
    let (stem, ext) = match component.split_once('.') {
        Some((s, e)) => (s, Some(e)),
        None => (component, None),
    };
    let gen = stem.len() >= 8
        && stem
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '-' || c == '_')
        && stem.chars().filter(char::is_ascii_digit).count() >= 2;
    match (gen, ext) {
        (true, Some(e)) => format!("*.{e}"),
        (true, None) => "*".into(),
        (false, _) => component.to_string(),
    }
}

/// Shows `path` relative to `root`, with generated names replaced by `*`.
fn show_path(path: &str, root: &Path) -> String {
    let root = root.to_string_lossy();
    let rel = path
        .strip_prefix(root.as_ref())
        .map(|r| r.trim_start_matches('/'))
        .unwrap_or(path);
    if rel.is_empty() {
        return ".".into();
    }
    rel.split('/').map(generic).collect::<Vec<_>>().join("/")
}

/// Parses an `strace -f -y -o FILE` log of the calls in [`SYNC_CALLS`].
fn parse_strace(log: &str, root: &Path) -> SyncCalls {
    let mut calls = SyncCalls::default();
    for line in log.lines() {
        // `-f` prefixes a pid (and `[pid N]` on a terminal); the call follows.
        let mut rest = line.trim_start();
        if let Some((pid, after)) = rest.split_once(' ') {
            if pid.chars().all(|c| c.is_ascii_digit()) {
                rest = after.trim_start();
            }
        }
        // Skip "<... fsync resumed>" halves, signals and exit notes.
        let Some((name, args)) = rest.split_once('(') else {
            continue;
        };
        if !SYNC_CALLS.split(',').any(|c| c == name) {
            continue;
        }
        // `fsync(7</path/to/file>)`: the fd's path between the first '<' and its '>'.
        let file = match (args.find('<'), args.find(['>'])) {
            (Some(a), Some(b)) if a < b && args[..a].chars().all(|c| c.is_ascii_digit()) => {
                show_path(&args[a + 1..b], root)
            }
            _ if name == "msync" => "(a memory mapping)".into(),
            _ => "(no file)".into(),
        };
        calls.total += 1;
        *calls.by_file.entry((name.to_string(), file)).or_default() += 1;
    }
    calls
}

/// Runs `program args` under `strace -f -y -e trace=SYNC_CALLS` and returns the sync calls it (and
/// every thread and child) made. Fails unless the command exits with status 0.
pub(crate) fn strace_syncs(
    program: &Path,
    args: &[OsString],
    root: &Path,
    what: &str,
) -> Result<SyncCalls> {
    let log = tempfile::NamedTempFile::new()?;
    let mut targs: Vec<OsString> = ["-f", "-y", "-qq", "-e"].map(OsString::from).to_vec();
    targs.push(format!("trace={SYNC_CALLS}").into());
    targs.push("-o".into());
    targs.push(log.path().into());
    targs.push(program.into());
    targs.extend(args.iter().cloned());
    run_measured("strace", &targs, what)?;
    let text = std::fs::read_to_string(log.path())?;
    Ok(parse_strace(&text, root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strace_lines() {
        let log = "\
123 fdatasync(5</w/a/strata.db-wal>) = 0
124 fsync(9</w/remote/tmp/0f3a9c1e-4b2d-4e7a-9c1d-2b3c4d5e6f70.tmp> <unfinished ...>
123 <... fsync resumed>) = 0
125 fsync(10</w/remote/cursors/main>) = 0
125 msync(0x7f00, 4096, MS_SYNC) = 0
+++ exited with 0 +++
";
        let c = parse_strace(log, Path::new("/w"));
        assert_eq!(c.total, 4);
        assert_eq!(
            c.by_file[&("fsync".to_string(), "remote/tmp/*.tmp".to_string())],
            1
        );
        assert_eq!(
            c.by_file[&("fdatasync".to_string(), "a/strata.db-wal".to_string())],
            1
        );
        assert!(c.breakdown().contains("1 fsync remote/cursors/main"));
        assert_eq!(generic("00000000000000000012"), "*");
        assert_eq!(generic("strata.db-wal"), "strata.db-wal");
    }
}
