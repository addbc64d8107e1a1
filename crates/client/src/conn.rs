//! One connection to a server: the handshake, frames over a blocking socket, a liveness check.

use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use strata_wire::{
    check_len, encode_into, encoded_len, from_body, parse_header, preamble, to_body, Command,
    ErrorCode, Frame, FrameKind, Hello, Output, Reply, Welcome, WireError, DEFAULT_MAX_FRAME,
    HEADER_LEN, PROTOCOL_VERSION,
};

use crate::{ClientOptions, Error};

/// Why a request got no answer.
#[derive(Debug)]
pub(crate) enum ConnError {
    /// The request was not (wholly) written: the server cannot have run it.
    BeforeSend(io::Error),
    /// The request was written and the answer did not come: it may have run.
    AfterSend(io::Error),
    /// Refused before sending (too large for the server's cap); the connection is still good.
    Local(Error),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::BeforeSend(e) => write!(f, "sending failed: {e}"),
            ConnError::AfterSend(e) => write!(f, "no answer: {e}"),
            ConnError::Local(e) => write!(f, "{e}"),
        }
    }
}

pub(crate) struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    next_id: u64,
    max_frame: u32,
    out: Vec<u8>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.stream.peer_addr().ok())
            .finish()
    }
}

/// Reads one frame, checking the cap before allocating the body.
pub(crate) fn read_frame(r: &mut impl Read, max: u32) -> io::Result<Frame> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    check_len(len, max).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h)?;
    let (kind, id) = parse_header(&h).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut body = vec![0u8; len as usize - HEADER_LEN];
    r.read_exact(&mut body)?;
    Ok(Frame { kind, id, body })
}

impl Conn {
    /// Connects and shakes hands (one round trip).
    pub(crate) fn connect(addr: &str, opts: &ClientOptions) -> Result<(Conn, Welcome), Error> {
        let connect_err = |source: io::Error| Error::Connect {
            addr: addr.to_string(),
            source,
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host resolves to no address");
        let mut stream = None;
        for sa in addr.to_socket_addrs().map_err(connect_err)? {
            match TcpStream::connect_timeout(&sa, opts.connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = stream.ok_or_else(|| connect_err(last))?;
        stream.set_nodelay(true).map_err(connect_err)?;
        stream
            .set_read_timeout(Some(opts.request_timeout))
            .map_err(connect_err)?;
        let mut out = preamble(PROTOCOL_VERSION).to_vec();
        let hello = Hello {
            api_key: opts.api_key.clone(),
            client_name: opts.client_name.clone(),
        };
        encode_into(&mut out, FrameKind::Hello, 0, &to_body(&hello));
        (&stream).write_all(&out).map_err(connect_err)?;
        let mut reader = BufReader::new(stream.try_clone().map_err(connect_err)?);
        let frame = read_frame(&mut reader, DEFAULT_MAX_FRAME).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                connect_err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the server closed the connection during the handshake",
                ))
            } else {
                connect_err(e)
            }
        })?;
        let proto = |detail: String| Error::Protocol {
            addr: addr.to_string(),
            detail,
        };
        if frame.kind != FrameKind::Welcome {
            return Err(proto(format!(
                "expected a welcome frame, got {:?}",
                frame.kind
            )));
        }
        let welcome = match from_body::<Reply<Welcome>>("welcome", &frame.body)
            .map_err(|e| proto(e.message))?
        {
            Reply::Ok(w) => w,
            Reply::Err(e) => return Err(Error::Db(e)),
        };
        Ok((
            Conn {
                stream,
                reader,
                next_id: 1,
                max_frame: welcome.max_frame,
                out: Vec::new(),
            },
            welcome,
        ))
    }

    /// Writes one request; returns its id.
    pub(crate) fn send(&mut self, cmd: &Command) -> Result<u64, ConnError> {
        self.out.clear();
        self.queue(cmd)?;
        self.flush()
    }

    /// Adds a request to the output buffer; returns its id.
    pub(crate) fn queue(&mut self, cmd: &Command) -> Result<u64, ConnError> {
        let body = to_body(cmd);
        if encoded_len(body.len()) > self.max_frame as u64 {
            return Err(ConnError::Local(Error::Db(WireError::new(
                ErrorCode::TooLarge,
                format!(
                    "the {} request is {} bytes, over the server's {}-byte frame cap; split the value or raise the server's --max-frame",
                    cmd.name(),
                    encoded_len(body.len()),
                    self.max_frame
                ),
            ))));
        }
        let id = self.next_id;
        self.next_id += 1;
        encode_into(&mut self.out, FrameKind::Request, id, &body);
        Ok(id)
    }

    /// Writes the output buffer; returns the last id queued.
    pub(crate) fn flush(&mut self) -> Result<u64, ConnError> {
        let r = (&self.stream).write_all(&self.out);
        self.out.clear();
        r.map_err(ConnError::BeforeSend)?;
        Ok(self.next_id - 1)
    }

    /// Reads the answer to request `id`.
    pub(crate) fn recv(&mut self, id: u64) -> Result<Result<Output, WireError>, ConnError> {
        let frame = read_frame(&mut self.reader, u32::MAX).map_err(ConnError::AfterSend)?;
        let bad = |m: String| ConnError::AfterSend(io::Error::new(io::ErrorKind::InvalidData, m));
        if frame.kind != FrameKind::Reply {
            return Err(bad(format!("expected a reply frame, got {:?}", frame.kind)));
        }
        let reply: Reply<Output> = from_body("reply", &frame.body).map_err(|e| bad(e.message))?;
        if frame.id != id {
            // The server answers a frame it could not read (or its shutdown) with id 0 and closes.
            if let (0, Reply::Err(w)) = (frame.id, &reply) {
                return Err(ConnError::AfterSend(io::Error::other(w.message.clone())));
            }
            return Err(bad(format!(
                "reply for request {} while waiting for {id}",
                frame.id
            )));
        }
        Ok(match reply {
            Reply::Ok(o) => Ok(o),
            Reply::Err(e) => Err(e),
        })
    }

    /// One request, one answer.
    pub(crate) fn call(&mut self, cmd: &Command) -> Result<Result<Output, WireError>, ConnError> {
        let id = self.send(cmd)?;
        self.recv(id)
    }

    /// Whether the server still holds the connection (false once it closed it, for example after a
    /// restart). Never blocks.
    pub(crate) fn alive(&self) -> bool {
        if !self.reader.buffer().is_empty() {
            return false; // unread bytes between requests: out of step
        }
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut b = [0u8; 1];
        let ok =
            matches!(self.stream.peek(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        ok && self.stream.set_nonblocking(false).is_ok()
    }
}
