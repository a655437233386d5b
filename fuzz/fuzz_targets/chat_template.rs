//! Fuzz target: see `forge_tests::fuzz::chat_template`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| forge_tests::fuzz::chat_template(data));
