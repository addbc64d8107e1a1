#![no_main]
//! Arbitrary bytes through the frame decoder and the body decoders: never a panic, and every frame
//! accepted re-encodes to the bytes it came from.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    strata_wire::fuzzing::check(data);
});
