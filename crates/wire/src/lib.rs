//! # strata-wire
//!
//! The wire protocol of `stratadb-server` and `strata-client` (docs/format.md §8), and the
//! executor that runs a command on an embedded database. Only this crate defines wire types; it does
//! no I/O of its own (the server reads frames with tokio, the client with blocking sockets).
//!
//! ## Layout
//! - `frame`: the frame header, the cap check before allocation, the pure decoder.
//! - `msg`: the MessagePack bodies: handshake, [`Command`], [`Op`], [`Output`], [`Reply`], errors.
//! - `exec`: [`execute`] and [`execute_in`], the engine calls behind each command.

#![warn(missing_docs, missing_debug_implementations)]

pub mod exec;
pub mod frame;
pub mod msg;

pub use exec::{
    engine_error, execute, execute_in, execute_reads, execute_writes, is_one_shot_write,
};
pub use frame::{
    check_len, decode, encode, encode_into, encoded_len, parse_header, preamble, Frame, FrameError,
    FrameKind, DEFAULT_MAX_FRAME, FRAME_VERSION, HEADER_LEN, MAGIC, PROTOCOL_VERSION,
};
pub use msg::{
    from_body, opt_value, to_body, Blob, Command, ErrorCode, Hello, Op, Output, Reply, Welcome,
    WireError,
};

/// The check the cargo-fuzz target (`fuzz/fuzz_targets/frame_decoder.rs`) runs on every input, and
/// that the corpus test runs on every corpus file: decoding arbitrary bytes never panics, and what
/// decodes re-encodes to the same bytes.
#[doc(hidden)]
pub mod fuzzing {
    use crate::{decode, encode, from_body, Command, Hello, Output, Reply, Welcome};

    /// Decodes `data` as a stream of frames (with a small and the default cap) and their bodies.
    pub fn check(data: &[u8]) {
        for max in [64, crate::DEFAULT_MAX_FRAME] {
            let mut rest = data;
            while let Ok(Some((f, used))) = decode(rest, max) {
                assert!(used <= rest.len() && used >= 4 + crate::HEADER_LEN);
                assert_eq!(encode(f.kind, f.id, &f.body), rest[..used]);
                let _ = from_body::<Command>("request", &f.body);
                let _ = from_body::<Reply<Output>>("reply", &f.body);
                let _ = from_body::<Hello>("hello", &f.body);
                let _ = from_body::<Reply<Welcome>>("welcome", &f.body);
                rest = &rest[used..];
            }
        }
    }
}

#[cfg(test)]
mod corpus_tests {
    /// Every file of the fuzz corpus passes the fuzz check (the fuzzer itself needs nightly).
    #[test]
    fn fuzz_corpus_passes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus/frame_decoder");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            crate::fuzzing::check(&bytes);
            n += 1;
        }
        assert!(n >= 5, "the corpus has {n} files");
    }

    /// Commands survive the wire unchanged (named fields, both directions).
    #[test]
    fn commands_round_trip() {
        use crate::*;
        use strata_engine::Value;
        let cmds = vec![
            Command::Ping,
            Command::Scoped {
                branch: "main".into(),
                version: Some(3),
                space: "default".into(),
                op: Op::StateCas {
                    cell: "c".into(),
                    expected: Some(Value::Null),
                    new: None,
                },
            },
            Command::Merge {
                source: strata_engine::Rev::at("f", 2),
                target: "main".into(),
                strategy: strata_engine::MergeStrategy::Strict,
                message: Some("take f".into()),
                author: None,
            },
        ];
        for c in cmds {
            let b = to_body(&c);
            assert_eq!(from_body::<Command>("c", &b).unwrap(), c);
        }
        // Named fields: the body carries the field names.
        let b = to_body(&Command::Begin {
            branch: "main".into(),
        });
        assert!(b.windows(6).any(|w| w == b"branch"));
    }
}
