//! Real `stratadb-server` processes on 127.0.0.1 port 0, stopped by PID.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const SERVER: &str = env!("CARGO_BIN_EXE_stratadb-server");
pub const LOAD: &str = env!("CARGO_BIN_EXE_strata-load");

pub struct ServerProc {
    pub child: Child,
    pub addr: String,
    pub metrics: Option<String>,
    pub dir: PathBuf,
}

impl ServerProc {
    /// Starts a server on `dir` with extra arguments and waits for its `listening on` line.
    pub fn start(dir: &Path, args: &[&str]) -> ServerProc {
        let mut child = Command::new(SERVER)
            .arg("--data-dir")
            .arg(dir)
            .args(["--port", "0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start stratadb-server");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line)
            .expect("read the server's first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let mut metrics = None;
        if args.contains(&"--metrics") {
            line.clear();
            out.read_line(&mut line).unwrap();
            metrics = Some(line.trim().strip_prefix("metrics on ").unwrap().to_string());
        }
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || for _ in out.lines() {});
        ServerProc {
            child,
            addr,
            metrics,
            dir: dir.to_path_buf(),
        }
    }

    pub fn url(&self) -> String {
        format!("strata://{}", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (at most `limit`) for the exit.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                t0.elapsed() < limit,
                "the server did not exit within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Creates a key with `stratadb-server keys add` and returns it.
pub fn add_key(dir: &Path, name: &str, read: &[&str], write: &[&str]) -> String {
    let mut cmd = Command::new(SERVER);
    cmd.args(["keys", "add", "--data-dir"])
        .arg(dir)
        .args(["--name", name]);
    for r in read {
        cmd.args(["--read", r]);
    }
    for w in write {
        cmd.args(["--write", w]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Client options with a key.
pub fn opts(key: Option<&str>) -> strata_client::ClientOptions {
    strata_client::ClientOptions {
        api_key: key.map(str::to_string),
        ..Default::default()
    }
}

/// Raises this process's open-file limit to the hard limit; returns the soft limit now.
pub fn raise_nofile() -> u64 {
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        if r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur
    }
}
