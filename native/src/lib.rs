//! The library side of the `forge` package: only what code outside the binary has to reach.
//!
//! `forge serve`'s OpenAI request layer lives here — parsing, validation and the response shapes,
//! pure functions with no I/O — so that the fuzz target (`fuzz/fuzz_targets/server_request.rs`)
//! and the tests can call it. The server itself (`src/serve/`) and every other command stay in
//! the binary.

pub mod serve_api;
