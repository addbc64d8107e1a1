//! The connection pool and its retry rules.

use std::sync::Mutex;

use strata_engine::bundle::{BundleManifest, ImportReport};
use strata_wire::{Blob, Command, Output, Welcome};

use crate::conn::{Conn, ConnError};
use crate::{ClientOptions, Error, Result};

/// Idle connections to one server.
pub(crate) struct Pool {
    addr: String,
    opts: ClientOptions,
    idle: Mutex<Vec<Conn>>,
    welcome: Welcome,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("addr", &self.addr)
            .field("opts", &self.opts)
            .finish()
    }
}

/// How many connections one call tries before giving up (a stale pooled one, then fresh ones).
const ATTEMPTS: usize = 3;

impl Pool {
    pub(crate) fn connect(addr: String, opts: ClientOptions) -> Result<Pool> {
        let (conn, welcome) = Conn::connect(&addr, &opts)?;
        tracing::debug!(server = %addr, version = %welcome.server_version, "connected");
        Ok(Pool {
            addr,
            opts,
            idle: Mutex::new(vec![conn]),
            welcome,
        })
    }

    pub(crate) fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// A live connection: an idle one that the server has not closed, or a new one.
    fn take(&self) -> Result<Conn> {
        loop {
            let c = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match c {
                Some(c) if c.alive() => return Ok(c),
                Some(_) => {
                    tracing::debug!(server = %self.addr, "dropping a closed pooled connection")
                }
                None => break,
            }
        }
        Ok(Conn::connect(&self.addr, &self.opts)?.0)
    }

    pub(crate) fn put(&self, c: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.opts.pool_size {
            idle.push(c);
        }
    }

    /// One command outside a transaction. A failure before the request was wholly sent is retried
    /// on another connection; after it, only a read is.
    pub(crate) fn call(&self, cmd: &Command) -> Result<Output> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let mut c = self.take()?;
            match c.call(cmd) {
                Ok(r) => {
                    self.put(c);
                    return Ok(r?);
                }
                Err(ConnError::Local(e)) => {
                    self.put(c);
                    return Err(e);
                }
                Err(ConnError::AfterSend(e)) if cmd.writes() => {
                    return Err(Error::Disconnected {
                        addr: self.addr.clone(),
                        command: cmd.name(),
                        detail: e.to_string(),
                    })
                }
                Err(ConnError::BeforeSend(e) | ConnError::AfterSend(e)) => {
                    tracing::debug!(server = %self.addr, error = %e, "retrying on a new connection");
                    last = Some(e);
                }
            }
        }
        Err(Error::Connect {
            addr: self.addr.clone(),
            source: last.unwrap_or_else(|| std::io::Error::other("no attempt made")),
        })
    }

    /// Opens a transaction on a connection of its own; returns it with the version to commit.
    pub(crate) fn begin(&self, branch: &str) -> Result<(Conn, u64)> {
        let cmd = Command::Begin {
            branch: branch.to_string(),
        };
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let mut c = self.take()?;
            match c.call(&cmd) {
                Ok(Ok(Output::Begun { version, .. })) => return Ok((c, version)),
                Ok(Ok(o)) => {
                    return Err(Error::Protocol {
                        addr: self.addr.clone(),
                        detail: format!("expected begun, got {o:?}"),
                    })
                }
                Ok(Err(w)) => {
                    self.put(c);
                    return Err(Error::Db(w));
                }
                Err(ConnError::Local(e)) => return Err(e),
                // A session on a broken connection is rolled back by the server: try again.
                Err(ConnError::BeforeSend(e) | ConnError::AfterSend(e)) => last = Some(e),
            }
        }
        Err(Error::Connect {
            addr: self.addr.clone(),
            source: last.unwrap_or_else(|| std::io::Error::other("no attempt made")),
        })
    }

    /// Sends every command on one connection, then reads every answer.
    pub(crate) fn pipeline(&self, cmds: &[Command]) -> Result<Vec<Result<Output>>> {
        let mut c = self.take()?;
        let lost = |e: ConnError| match e {
            ConnError::Local(e) => e,
            e => Error::Disconnected {
                addr: self.addr.clone(),
                command: "pipeline",
                detail: e.to_string(),
            },
        };
        let mut ids = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            ids.push(c.queue(cmd).map_err(lost)?);
        }
        c.flush().map_err(lost)?;
        let mut out = Vec::with_capacity(cmds.len());
        for id in ids {
            out.push(c.recv(id).map_err(lost)?.map_err(Error::Db));
        }
        self.put(c);
        Ok(out)
    }

    /// Runs several requests on one connection (a transfer's handle lives on its connection). Any
    /// broken connection ends it: the server drops the connection's transfers.
    fn on_one<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut dyn FnMut(Command) -> Result<Output>) -> Result<T>,
    ) -> Result<T> {
        let mut c = self.take()?;
        let mut broken = false;
        let out = {
            let mut call = |cmd: Command| -> Result<Output> {
                match c.call(&cmd) {
                    Ok(r) => Ok(r?),
                    Err(ConnError::Local(e)) => Err(e),
                    Err(e) => {
                        broken = true;
                        Err(Error::Disconnected {
                            addr: self.addr.clone(),
                            command: what,
                            detail: e.to_string(),
                        })
                    }
                }
            };
            f(&mut call)
        };
        if !broken {
            self.put(c);
        }
        out
    }

    fn chunk_len(&self) -> u64 {
        (self.welcome.max_frame.saturating_sub(1024) as u64).min(4 << 20)
    }

    pub(crate) fn export_bundle(
        &self,
        branch: &str,
        range: Option<(u64, u64)>,
        path: &std::path::Path,
    ) -> Result<BundleManifest> {
        use std::io::Write;
        let chunk = self.chunk_len();
        self.on_one("bundle export", |call| {
            let (handle, size, manifest) = match call(Command::BundleExport {
                branch: branch.to_string(),
                range,
            })? {
                Output::Transfer {
                    handle,
                    size,
                    manifest: Some(m),
                } => (handle, size, m),
                o => return Err(self.unexpected("transfer", o)),
            };
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let io = |e: std::io::Error| Error::Db(strata_wire::engine_error(e.into()));
            let mut tmp = tempfile_in(dir).map_err(io)?;
            let mut offset = 0;
            while offset < size {
                match call(Command::BundleRead {
                    handle: handle.clone(),
                    offset,
                    len: chunk,
                })? {
                    Output::Chunk(Blob(b)) if !b.is_empty() => {
                        tmp.1.write_all(&b).map_err(io)?;
                        offset += b.len() as u64;
                    }
                    o => return Err(self.unexpected("a chunk", o)),
                }
            }
            tmp.1.sync_all().map_err(io)?;
            std::fs::rename(&tmp.0 .0, path).map_err(io)?;
            call(Command::BundleClose { handle })?;
            Ok(manifest)
        })
    }

    pub(crate) fn import_bundle(
        &self,
        path: &std::path::Path,
        target: Option<&str>,
    ) -> Result<ImportReport> {
        use std::io::Read;
        let chunk = self.chunk_len() as usize;
        let io = |e: std::io::Error| Error::Db(strata_wire::engine_error(e.into()));
        let mut f = std::fs::File::open(path).map_err(io)?;
        self.on_one("bundle import", |call| {
            let mut handle = None;
            let mut buf = vec![0u8; chunk];
            loop {
                let n = f.read(&mut buf).map_err(io)?;
                if n == 0 && handle.is_some() {
                    break;
                }
                match call(Command::BundleUpload {
                    handle: handle.clone(),
                    data: Blob(buf[..n].to_vec()),
                })? {
                    Output::Transfer { handle: h, .. } => handle = Some(h),
                    o => return Err(self.unexpected("transfer", o)),
                }
                if n == 0 {
                    break;
                }
            }
            match call(Command::BundleImport {
                handle: handle.expect("at least one upload"),
                target: target.map(str::to_string),
            })? {
                Output::Imported(r) => Ok(r),
                o => Err(self.unexpected("imported", o)),
            }
        })
    }

    fn unexpected(&self, wanted: &str, got: Output) -> Error {
        Error::Protocol {
            addr: self.addr.clone(),
            detail: format!("expected {wanted}, got {got:?}"),
        }
    }
}

/// A new file in `dir` for a download, removed unless renamed.
fn tempfile_in(dir: &std::path::Path) -> std::io::Result<(TempPath, std::fs::File)> {
    let name = format!(
        ".strata-download-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let p = dir.join(name);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)?;
    Ok((TempPath(p), f))
}

/// Removes its file when dropped, unless it was renamed away.
struct TempPath(std::path::PathBuf);

impl AsRef<std::path::Path> for TempPath {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
