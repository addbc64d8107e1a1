//! Frames: `[u32 length][u8 version][u8 kind][u64 request id][body]`, all integers big-endian
//! (docs/format.md §8). The length counts every byte after itself, so it is at least
//! [`HEADER_LEN`]. A reader checks the length against its cap *before* allocating anything for the
//! body.

/// The bytes a client sends first, before its hello frame.
pub const MAGIC: [u8; 6] = *b"STRATA";
/// The protocol version this build speaks (sent after [`MAGIC`] as a big-endian u16).
pub const PROTOCOL_VERSION: u16 = 1;
/// The frame header version this build reads and writes.
pub const FRAME_VERSION: u8 = 1;
/// Bytes of a frame after the length prefix and before the body: version, kind, request id.
pub const HEADER_LEN: usize = 10;
/// The default cap on a frame's length (the `u32` prefix): 8 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 8 * 1024 * 1024;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Client → server: a [`crate::Command`].
    Request = 1,
    /// Server → client: a [`crate::Reply`] to the request with the same id.
    Reply = 2,
    /// Client → server, once, right after the magic: a [`crate::Hello`].
    Hello = 3,
    /// Server → client, once: a [`crate::Reply`] holding a [`crate::Welcome`] or the refusal.
    Welcome = 4,
}

impl FrameKind {
    /// The kind for a header byte.
    pub fn from_byte(b: u8) -> Option<FrameKind> {
        Some(match b {
            1 => FrameKind::Request,
            2 => FrameKind::Reply,
            3 => FrameKind::Hello,
            4 => FrameKind::Welcome,
            _ => return None,
        })
    }
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What it carries.
    pub kind: FrameKind,
    /// The request id (a reply repeats its request's id; the handshake uses 0).
    pub id: u64,
    /// The MessagePack body.
    pub body: Vec<u8>,
}

/// Why bytes are not a frame this build accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is over the cap. The body was not read into memory.
    #[error("frame of {len} bytes is over the {max}-byte cap")]
    TooLarge {
        /// The announced length.
        len: u32,
        /// The cap.
        max: u32,
    },
    /// The length prefix is smaller than the header.
    #[error("frame length {0} is shorter than the {HEADER_LEN}-byte header")]
    Short(u32),
    /// The header's version byte is not one this build reads.
    #[error("unsupported frame version {0} (this build reads version {FRAME_VERSION})")]
    Version(u8),
    /// The header's kind byte is unknown.
    #[error("unknown frame kind {0}")]
    Kind(u8),
}

/// Checks a length prefix against the cap; the first check on every frame, before any allocation.
pub fn check_len(len: u32, max: u32) -> Result<(), FrameError> {
    if (len as usize) < HEADER_LEN {
        Err(FrameError::Short(len))
    } else if len > max {
        Err(FrameError::TooLarge { len, max })
    } else {
        Ok(())
    }
}

/// Parses the 10-byte header after the length prefix.
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Result<(FrameKind, u64), FrameError> {
    if h[0] != FRAME_VERSION {
        return Err(FrameError::Version(h[0]));
    }
    let kind = FrameKind::from_byte(h[1]).ok_or(FrameError::Kind(h[1]))?;
    let id = u64::from_be_bytes(h[2..10].try_into().expect("8 bytes"));
    Ok((kind, id))
}

/// Decodes one frame from the start of `buf`. `Ok(None)`: more bytes are needed. The checks run in
/// the order a streaming reader meets the bytes (length and cap, then version, then kind), so an
/// oversized or foreign frame is refused before its body arrives.
pub fn decode(buf: &[u8], max: u32) -> Result<Option<(Frame, usize)>, FrameError> {
    Ok(decode_ref(buf, max)?.map(|(f, total)| {
        (
            Frame {
                kind: f.kind,
                id: f.id,
                body: f.body.to_vec(),
            },
            total,
        )
    }))
}

/// A frame decoded in place: its body is inside the buffer it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// What the frame carries.
    pub kind: FrameKind,
    /// The request id (0 for the handshake).
    pub id: u64,
    /// The MessagePack body.
    pub body: &'a [u8],
}

/// [`decode`] without copying the body: the frame and its length in `buf`.
pub fn decode_ref(buf: &[u8], max: u32) -> Result<Option<(FrameRef<'_>, usize)>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
    check_len(len, max)?;
    if let Some(&v) = buf.get(4) {
        if v != FRAME_VERSION {
            return Err(FrameError::Version(v));
        }
    }
    if let Some(&k) = buf.get(5) {
        FrameKind::from_byte(k).ok_or(FrameError::Kind(k))?;
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let (kind, id) = parse_header(buf[4..4 + HEADER_LEN].try_into().expect("10 bytes"))?;
    let body = &buf[4 + HEADER_LEN..total];
    Ok(Some((FrameRef { kind, id, body }, total)))
}

/// Encodes a frame (no cap check: callers check [`encoded_len`] against the peer's cap).
pub fn encode(kind: FrameKind, id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + HEADER_LEN + body.len());
    encode_into(&mut out, kind, id, body);
    out
}

/// Appends an encoded frame to `out`.
pub fn encode_into(out: &mut Vec<u8>, kind: FrameKind, id: u64, body: &[u8]) {
    let len = (HEADER_LEN + body.len()) as u32;
    out.extend_from_slice(&len.to_be_bytes());
    out.push(FRAME_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
}

/// The value of the length prefix for a body of `body_len` bytes (what the cap is compared with).
pub fn encoded_len(body_len: usize) -> u64 {
    (HEADER_LEN + body_len) as u64
}

/// The handshake preamble: [`MAGIC`] then the protocol version.
pub fn preamble(protocol: u16) -> [u8; 8] {
    let mut p = [0u8; 8];
    p[..6].copy_from_slice(&MAGIC);
    p[6..].copy_from_slice(&protocol.to_be_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let f = encode(FrameKind::Request, 7, b"abc");
        assert_eq!(f.len(), 4 + HEADER_LEN + 3);
        let (got, used) = decode(&f, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!(used, f.len());
        assert_eq!(
            got,
            Frame {
                kind: FrameKind::Request,
                id: 7,
                body: b"abc".to_vec()
            }
        );
    }

    #[test]
    fn cap_is_checked_from_the_prefix_alone() {
        let big = (DEFAULT_MAX_FRAME + 1).to_be_bytes();
        assert_eq!(
            decode(&big, DEFAULT_MAX_FRAME),
            Err(FrameError::TooLarge {
                len: DEFAULT_MAX_FRAME + 1,
                max: DEFAULT_MAX_FRAME
            })
        );
        assert_eq!(decode(&[0, 0, 0, 9], 100), Err(FrameError::Short(9)));
        assert_eq!(decode(&[0, 0, 0, 10, 2], 100), Err(FrameError::Version(2)));
        assert_eq!(decode(&[0, 0, 0, 10, 1, 9], 100), Err(FrameError::Kind(9)));
    }

    fn frame_strategy() -> impl Strategy<Value = (u8, u64, Vec<u8>)> {
        (
            1u8..=4,
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
    }

    proptest! {
        /// Every prefix of a valid frame asks for more bytes; the whole frame decodes to itself.
        #[test]
        fn truncated_frames_ask_for_more((k, id, body) in frame_strategy()) {
            let kind = FrameKind::from_byte(k).unwrap();
            let f = encode(kind, id, &body);
            for cut in 0..f.len() {
                prop_assert_eq!(decode(&f[..cut], DEFAULT_MAX_FRAME), Ok(None));
            }
            let (got, used) = decode(&f, DEFAULT_MAX_FRAME).unwrap().unwrap();
            prop_assert_eq!(used, f.len());
            prop_assert_eq!(got, Frame { kind, id, body });
        }

        /// A frame over the cap is refused from its four length bytes, whatever follows.
        #[test]
        fn oversized_frames_are_refused((k, id, body) in frame_strategy(), max in 10u32..200) {
            let f = encode(FrameKind::from_byte(k).unwrap(), id, &body);
            let len = (HEADER_LEN + body.len()) as u32;
            let r = decode(&f[..4], max);
            if len > max {
                prop_assert_eq!(r, Err(FrameError::TooLarge { len, max }));
                prop_assert_eq!(decode(&f, max), Err(FrameError::TooLarge { len, max }));
            } else {
                prop_assert_eq!(r, Ok(None));
            }
        }

        /// Any other version byte is refused as soon as it arrives.
        #[test]
        fn wrong_version_is_refused((k, id, body) in frame_strategy(), v in any::<u8>()) {
            prop_assume!(v != FRAME_VERSION);
            let mut f = encode(FrameKind::from_byte(k).unwrap(), id, &body);
            f[4] = v;
            prop_assert_eq!(decode(&f[..5], DEFAULT_MAX_FRAME), Err(FrameError::Version(v)));
            prop_assert_eq!(decode(&f, DEFAULT_MAX_FRAME), Err(FrameError::Version(v)));
        }

        /// Garbage never panics, and anything accepted is a frame whose encoding is those bytes.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), max in 0u32..300) {
            match decode(&bytes, max) {
                Ok(Some((f, used))) => {
                    prop_assert!(used <= bytes.len());
                    prop_assert_eq!(encode(f.kind, f.id, &f.body), bytes[..used].to_vec());
                }
                Ok(None) => {
                    if bytes.len() >= 4 {
                        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
                        prop_assert!(bytes.len() < 4 + len);
                    }
                }
                Err(_) => {}
            }
        }
    }
}
