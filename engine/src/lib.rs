//! Forge: one model graph, many machines.
//!
//! See `ARCHITECTURE.md` at the repository root for the code map.

pub mod backend;
pub mod batching;
pub mod constrain;
pub mod devices;
pub mod dtype;
pub mod error;
pub mod formats;
pub mod generate;
pub mod graph;
pub mod model;
pub mod models;
pub mod perplexity;
pub mod quant;
pub mod sampler;
pub mod session;
pub mod tensor;
pub mod tokenizer;

pub use dtype::DType;
pub use error::{ForgeError, Result};
#[cfg(not(target_arch = "wasm32"))]
pub use generate::generate;
pub use generate::{FinishReason, GenerateOptions, Generation, generate_async};
pub use model::{Model, ModelConfig};
pub use sampler::SamplerConfig;
pub use session::Session;
