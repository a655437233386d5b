//! Will the model fit? Estimated before anything is loaded, from the model's shape alone:
//!
//! ```text
//! weights      = bytes as stored (quantized)
//! kv cache     = n_layer × 2 (K and V) × ctx × bytes of a kv_dim row (f32: 4 per value,
//!                f16: 2, q8_0: 34 per 32)
//! activations  = 4 bytes × T × (4·n_embd + q_dim + 2·kv_dim + 2·n_ff) + 4 bytes × n_vocab,
//!                T = min(ctx, 512) tokens in flight, one row of logits
//! budget       = device memory × memory_fraction
//! ```
//!
//! Devices whose memory is unknown (most wgpu adapters: WebGPU does not report it) are allowed,
//! unless one buffer would be larger than the device can bind. Weights are uploaded in pages of
//! whole rows (`backend/wgpu/buffers.rs`), so the largest buffer that must be bound whole is a
//! weight's row or one layer's K or V cache, not a whole tensor: Gemma 3's 168 MiB embedding
//! table runs on lavapipe, whose bindings stop at 128 MiB.

use super::rank::{Candidate, DeviceClass};
use crate::Model;
use crate::graph::rows_cols;
use crate::model::ModelConfig;
use crate::session::KvType;

/// Tokens a forward pass is assumed to carry at most when sizing activations.
pub const MAX_TOKENS_IN_FLIGHT: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub weights: u64,
    pub kv_cache: u64,
    pub activations: u64,
    /// The largest buffer the device must bind whole: a weight's row or one layer's K or V cache.
    pub largest_buffer: u64,
}

impl Estimate {
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.activations
    }
}

/// The bytes of the longest row of any weight of `model` (a 1-D tensor is one row).
pub fn largest_row(model: &Model) -> u64 {
    model.weights.values().map(|t| (t.as_bytes().len() / rows_cols(&t.shape).0.max(1)) as u64).max().unwrap_or(0)
}

/// `largest_row` as [`largest_row`] measures it.
pub fn estimate(c: &ModelConfig, weight_bytes: u64, largest_row: u64, ctx: usize, kv_type: KvType) -> Estimate {
    let f32b = 4u64;
    let cache_state = ctx as u64 * kv_type.row_bytes(c.kv_dim());
    let kv_cache = c.n_layer as u64 * 2 * cache_state;
    let t = ctx.min(MAX_TOKENS_IN_FLIGHT) as u64;
    let per_token = 4 * c.n_embd + c.q_dim() + 2 * c.kv_dim() + 2 * c.n_ff;
    let activations = f32b * t * per_token as u64 + f32b * c.n_vocab as u64;
    Estimate { weights: weight_bytes, kv_cache, activations, largest_buffer: largest_row.max(cache_state) }
}

pub fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// MiB below 1 GiB, GiB above: for listings.
pub fn human(bytes: u64) -> String {
    if bytes < 1 << 30 { format!("{} MiB", bytes >> 20) } else { gib(bytes) }
}

/// `Ok(())` when `est` fits `candidate` at `memory_fraction`, else why not, with the numbers.
/// `host_memory` is the machine's RAM, which integrated GPUs and software rasterisers share.
pub fn check(est: &Estimate, candidate: &Candidate, memory_fraction: f64, host_memory: Option<u64>) -> Result<(), String> {
    if let Some(max) = candidate.max_buffer
        && est.largest_buffer > max
    {
        return Err(format!("its largest buffer (a weight row or one layer's KV cache) is {} but the device binds at most {} per buffer; a smaller --ctx shrinks the cache", human(est.largest_buffer), human(max)));
    }
    let shared = matches!(candidate.class, DeviceClass::Integrated | DeviceClass::Software);
    let Some(memory) = candidate.memory.or(if shared { host_memory } else { None }) else {
        return Ok(());
    };
    let budget = (memory as f64 * memory_fraction) as u64;
    if est.total() > budget {
        return Err(format!(
            "needs {} (weights {} + KV cache {} + activations {}) but the budget is {} ({memory_fraction} × {})",
            gib(est.total()),
            gib(est.weights),
            gib(est.kv_cache),
            gib(est.activations),
            gib(budget),
            gib(memory)
        ));
    }
    Ok(())
}
