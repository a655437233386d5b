//! Forge: one model graph, many machines.
//!
//! See `ARCHITECTURE.md` at the repository root for the code map.

pub mod dtype;
pub mod error;
pub mod formats;
pub mod quant;
pub mod tokenizer;

pub use dtype::DType;
pub use error::{ForgeError, Result};
