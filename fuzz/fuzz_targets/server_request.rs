//! Fuzz target: see `forge::serve_api::fuzz_request` (the OpenAI request parser of `forge serve`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| forge::serve_api::fuzz_request(data));
