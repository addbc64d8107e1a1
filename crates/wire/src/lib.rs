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

pub use exec::{engine_error, execute, execute_in};
pub use frame::{
    check_len, decode, encode, encode_into, encoded_len, parse_header, preamble, Frame, FrameError,
    FrameKind, DEFAULT_MAX_FRAME, FRAME_VERSION, HEADER_LEN, MAGIC, PROTOCOL_VERSION,
};
pub use msg::{
    from_body, opt_value, to_body, Command, ErrorCode, Hello, Op, Output, Reply, Welcome, WireError,
};
