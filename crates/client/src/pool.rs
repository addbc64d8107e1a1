//! The connection pool and its retry rules.

use std::sync::Mutex;

use strata_wire::{Command, Output, Welcome};

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
}
