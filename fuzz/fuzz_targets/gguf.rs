//! Fuzz target: see `forge_tests::fuzz::gguf`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| forge_tests::fuzz::gguf(data));
