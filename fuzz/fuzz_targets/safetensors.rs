//! Fuzz target: see `forge_tests::fuzz::safetensors`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| forge_tests::fuzz::safetensors(data));
