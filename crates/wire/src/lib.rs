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
    check_len, decode, decode_ref, encode, encode_into, encoded_len, parse_header, preamble, Frame,
    FrameError, FrameKind, DEFAULT_MAX_FRAME, FRAME_VERSION, HEADER_LEN, MAGIC, PROTOCOL_VERSION,
};
pub use msg::{
    encode_msg_into, from_body, normalize_diff, opt_value, to_body, Blob, Command, ErrorCode,
    Hello, Op, Output, Reply, SyncOp, Welcome, WireError, CAP_ADMIN,
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
                conflict_branch: Some("conflicts".into()),
            },
            Command::ListPage {
                rev: strata_engine::Rev::at("main", 4),
                space: "default".into(),
                kind: strata_engine::Kind::Json,
                prefix: "p".into(),
                after: Some("p1".into()),
                limit: 100,
            },
            Command::SyncWith {
                op: crate::SyncOp::Pull,
                remote: "origin".into(),
                branch: "main".into(),
                strategy: Some(strata_engine::MergeStrategy::Ours),
                conflict_branch: None,
                set_upstream: false,
            },
            Command::RemoteAdd {
                name: "origin".into(),
                url: "/tmp/r".into(),
                options: [("token".to_string(), "t".to_string())].into(),
            },
            Command::ConfigSet {
                key: "user.name".into(),
                value: None,
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

    /// A stored null and an absent value stay distinct in history, diff and merge conflicts; an
    /// answer from an older server (no `null`/`nulls` fields) still reads, nil meaning absent.
    #[test]
    fn null_and_absent_stay_distinct() {
        use crate::{from_body, to_body, Output, Reply, WireError};
        use strata_engine::{
            BranchDiff, DiffEntry, HistoryEntry, Kind, MergeConflict, SpaceDiff, Value,
        };
        let history = vec![
            HistoryEntry {
                version: 3,
                value: None,
                timestamp_micros: 30,
            },
            HistoryEntry {
                version: 2,
                value: Some(Value::Null),
                timestamp_micros: 20,
            },
            HistoryEntry {
                version: 1,
                value: Some(Value::Int(1)),
                timestamp_micros: 10,
            },
        ];
        let out = Output::History(history.clone());
        assert_eq!(from_body::<Output>("h", &to_body(&out)).unwrap(), out);
        // What an older server sent: the engine's struct, nil for both.
        #[derive(serde::Serialize)]
        enum Old {
            #[serde(rename = "history")]
            History(Vec<HistoryEntry>),
        }
        match from_body::<Output>("h", &to_body(&Old::History(history.clone()))).unwrap() {
            Output::History(h) => {
                assert_eq!(h[0].value, None);
                assert_eq!(h[1].value, None, "an old server's null reads as before");
            }
            o => panic!("{o:?}"),
        }
        let e = |a: Option<Value>, b: Option<Value>| DiffEntry {
            kind: Kind::Kv,
            key: "k".into(),
            a,
            b,
        };
        let diff = BranchDiff {
            spaces: vec![SpaceDiff {
                space: "default".into(),
                added: vec![e(None, Some(Value::Null))],
                removed: vec![e(Some(Value::Null), None)],
                modified: vec![e(Some(Value::Null), Some(Value::Int(2)))],
            }],
        };
        let out = Output::Diff(diff);
        assert_eq!(from_body::<Output>("d", &to_body(&out)).unwrap(), out);
        let c = MergeConflict {
            space: "default".into(),
            kind: Kind::State,
            key: "c".into(),
            ancestor: None,
            source: Some(Value::Null),
            target: Some(Value::Int(1)),
        };
        let mut err = WireError::new(crate::ErrorCode::MergeConflicts, "m");
        err.conflicts = vec![c.clone()];
        let r: Reply<Output> = Reply::Err(err);
        assert_eq!(from_body::<Reply<Output>>("r", &to_body(&r)).unwrap(), r);
    }
}
