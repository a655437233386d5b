//! Model file formats: GGUF (read and write) and Hugging Face safetensors directories.
//!
//! **Architecture Invariant:** every shape that leaves this module is row-major (outermost
//! first, last dimension contiguous). Parsers never panic on a bad file; they return a typed
//! `ForgeError` naming the format and what was wrong.

mod bytes;
pub mod gguf;
pub mod gguf_write;
pub mod safetensors;

pub use bytes::FileBytes;
