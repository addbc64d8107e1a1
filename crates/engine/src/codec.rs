//! Record framing (see docs/format.md).
