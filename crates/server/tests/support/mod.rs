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
        ServerProc::start_on(dir, 0, args)
    }

    /// Starts a server on a given port (0: any).
    pub fn start_on(dir: &Path, port: u16, args: &[&str]) -> ServerProc {
        let mut child = Command::new(SERVER)
            .arg("--data-dir")
            .arg(dir)
            .args(["--port", &port.to_string()])
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

/// A raw protocol connection, for tests that send what a well-behaved client never would.
pub struct Raw {
    pub s: std::net::TcpStream,
}

impl Raw {
    /// Connects and shakes hands; returns the welcome (or refusal).
    pub fn connect(
        addr: &str,
        key: Option<&str>,
    ) -> (Raw, strata_wire::Reply<strata_wire::Welcome>) {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut out = strata_wire::preamble(strata_wire::PROTOCOL_VERSION).to_vec();
        let hello = strata_wire::Hello {
            api_key: key.map(str::to_string),
            client_name: "raw-test".into(),
        };
        strata_wire::encode_into(
            &mut out,
            strata_wire::FrameKind::Hello,
            0,
            &strata_wire::to_body(&hello),
        );
        s.write_all(&out).unwrap();
        let mut raw = Raw { s };
        let f = raw.frame().expect("welcome frame");
        assert_eq!(f.kind, strata_wire::FrameKind::Welcome);
        let w = strata_wire::from_body("welcome", &f.body).unwrap();
        (raw, w)
    }

    pub fn send_bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.s.write_all(b)
    }

    pub fn send(&mut self, id: u64, cmd: &strata_wire::Command) {
        let f = strata_wire::encode(
            strata_wire::FrameKind::Request,
            id,
            &strata_wire::to_body(cmd),
        );
        self.send_bytes(&f).unwrap();
    }

    pub fn frame(&mut self) -> std::io::Result<strata_wire::Frame> {
        use std::io::Read;
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        let mut rest = vec![0u8; len];
        self.s.read_exact(&mut rest)?;
        let mut all = (len as u32).to_be_bytes().to_vec();
        all.extend(rest);
        let (f, _) = strata_wire::decode(&all, u32::MAX).unwrap().unwrap();
        Ok(f)
    }

    /// Reads one reply: its id and body.
    pub fn recv(&mut self) -> std::io::Result<(u64, strata_wire::Reply<strata_wire::Output>)> {
        let f = self.frame()?;
        assert_eq!(f.kind, strata_wire::FrameKind::Reply);
        Ok((f.id, strata_wire::from_body("reply", &f.body).unwrap()))
    }

    pub fn call(
        &mut self,
        id: u64,
        cmd: &strata_wire::Command,
    ) -> strata_wire::Reply<strata_wire::Output> {
        self.send(id, cmd);
        let (got, r) = self.recv().unwrap();
        assert_eq!(got, id);
        r
    }

    /// Whether the server closed the connection (EOF or reset) within a few seconds.
    pub fn closed(&mut self) -> bool {
        use std::io::Read;
        self.s
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 64];
        loop {
            match self.s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }
}

/// Fetches the metrics text.
pub fn metrics(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of one metric line (`name value`).
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

pub fn scoped(branch: &str, op: strata_wire::Op) -> strata_wire::Command {
    strata_wire::Command::Scoped {
        branch: branch.into(),
        version: None,
        space: "default".into(),
        op,
    }
}
