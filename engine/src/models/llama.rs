//! The Llama family as a graph: Llama 2/3 (Touvron et al., 2023), SmolLM2, Mistral, Qwen2.
//!
//! Pre-norm decoder (matches llama.cpp's `llm_build_llama` / `llm_build_qwen2`):
//!
//! ```text
//! x = embed(tokens)
//! for each layer:  x = x + attn(rms_norm(x))      attn: RoPE on q, k; grouped-query; causal
//!                  x = x + mlp(rms_norm(x))       mlp:  down(silu(gate(x)) * up(x))
//! logits = output(rms_norm(x))
//! ```
//!
//! Prefill and decode are the same graph with a different token count, and a batch of sequences
//! at different positions is the same graph again: every token carries its position, the cache
//! row its key and value go to, and its sequence's block table (paged attention). The KV cache is
//! not the model's: the caller passes the state params to write keys and values into (`KvParams`).

use crate::backend::ParamTable;
use crate::dtype::DType;
use crate::error::Result;
use crate::graph::{AttnMask, Graph, NodeId};
use crate::model::ModelConfig;
pub use crate::model::weight_shapes;

/// The per-layer state params keys and values are written into: pools of blocks of
/// `block_size` rows.
#[derive(Clone, Debug)]
pub struct KvParams {
    pub k: Vec<String>,
    pub v: Vec<String>,
    pub block_size: usize,
}

/// The shape of one forward pass (the graph is built once per shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchShape {
    /// Tokens in the pass, over all sequences.
    pub n_tokens: usize,
    /// Columns of the block table: blocks one sequence may hold.
    pub table_cols: usize,
    /// Read out only these rows (input slot 4 names them), or every row.
    pub out_rows: Option<usize>,
    /// Return each read-out row's argmax instead of its logits.
    pub argmax: bool,
}

/// The KV-cache params a session must create: one `[n_blocks * block_size, kv_dim]` f32 state
/// per layer for K and V.
pub fn kv_shapes(c: &ModelConfig, n_blocks: usize, block_size: usize) -> (KvParams, Vec<(String, Vec<usize>, DType)>) {
    let names = KvParams { k: (0..c.n_layer).map(|l| format!("cache.{l}.k")).collect(), v: (0..c.n_layer).map(|l| format!("cache.{l}.v")).collect(), block_size };
    let shapes = names.k.iter().chain(&names.v).map(|n| (n.clone(), vec![n_blocks * block_size, c.kv_dim()], DType::F32)).collect();
    (names, shapes)
}

struct Builder<'a> {
    g: Graph,
    c: &'a ModelConfig,
    p: &'a ParamTable,
    positions: NodeId,
    slots: NodeId,
    block_table: NodeId,
}

impl Builder<'_> {
    fn w(&mut self, name: &str) -> Result<NodeId> {
        self.p.node(&mut self.g, name)
    }

    fn norm(&mut self, x: NodeId, weight: &str) -> Result<NodeId> {
        let w = self.w(weight)?;
        self.g.rms_norm(x, w, self.c.rms_eps)
    }

    /// `x · Wᵀ (+ b)`.
    fn linear(&mut self, x: NodeId, weight: &str, bias: Option<&str>) -> Result<NodeId> {
        let w = self.w(weight)?;
        let y = self.g.matmul(x, w)?;
        match bias {
            Some(b) => {
                let b = self.w(b)?;
                self.g.add(y, b)
            }
            None => Ok(y),
        }
    }

    fn attn(&mut self, l: usize, x: NodeId, kv: &KvParams) -> Result<NodeId> {
        let c = self.c;
        let bias = |n: &str| c.qkv_bias.then(|| format!("blk.{l}.attn_{n}.bias"));
        let q = self.linear(x, &format!("blk.{l}.attn_q.weight"), bias("q").as_deref())?;
        let k = self.linear(x, &format!("blk.{l}.attn_k.weight"), bias("k").as_deref())?;
        let v = self.linear(x, &format!("blk.{l}.attn_v.weight"), bias("v").as_deref())?;
        let r = crate::graph::RopeParams { layout: c.rope_layout, head_dim: c.head_dim, n_rot: c.rope_dim, base: c.rope_base, freq_scale: 1.0 };
        let q = self.g.rope(q, self.positions, None, r)?;
        let k = self.g.rope(k, self.positions, None, r)?;
        let k_cache = self.w(&kv.k[l])?;
        let v_cache = self.w(&kv.v[l])?;
        let k_all = self.g.scatter_rows(k_cache, k, self.slots)?;
        let v_all = self.g.scatter_rows(v_cache, v, self.slots)?;
        let o = self.g.paged_attention(q, k_all, v_all, self.positions, self.block_table, c.n_head, c.n_kv_head, c.head_dim, 1.0 / (c.head_dim as f32).sqrt(), kv.block_size, AttnMask::Causal)?;
        self.linear(o, &format!("blk.{l}.attn_output.weight"), None)
    }

    fn mlp(&mut self, l: usize, x: NodeId) -> Result<NodeId> {
        let gate = self.linear(x, &format!("blk.{l}.ffn_gate.weight"), None)?;
        let up = self.linear(x, &format!("blk.{l}.ffn_up.weight"), None)?;
        let h = self.g.silu_mul(gate, up)?;
        self.linear(h, &format!("blk.{l}.ffn_down.weight"), None)
    }
}

/// The forward pass. Inputs: slot 0 token ids `[T]`; slot 1 positions `[T]` (each token's
/// position in its own sequence); slot 2 slots `[T]` (the cache row its key and value are written
/// to); slot 3 block tables `[T, table_cols]` (its sequence's blocks); slot 4, with `out_rows`,
/// the rows to read out `[R]`.
pub fn forward(c: &ModelConfig, params: &ParamTable, kv: &KvParams, shape: BatchShape) -> Result<Graph> {
    let n_tokens = shape.n_tokens;
    let mut g = Graph::new();
    let tokens = g.input(&[n_tokens], DType::U32);
    let positions = g.input(&[n_tokens], DType::U32);
    let slots = g.input(&[n_tokens], DType::U32);
    let block_table = g.input(&[n_tokens, shape.table_cols], DType::U32);
    let out_rows = shape.out_rows.map(|r| g.input(&[r], DType::U32));
    let mut b = Builder { g, c, p: params, positions, slots, block_table };

    let embd = b.w("token_embd.weight")?;
    let mut x = b.g.get_rows(embd, tokens)?;
    for l in 0..c.n_layer {
        let h = b.norm(x, &format!("blk.{l}.attn_norm.weight"))?;
        let h = b.attn(l, h, kv)?;
        x = b.g.add(x, h)?;
        let h = b.norm(x, &format!("blk.{l}.ffn_norm.weight"))?;
        let h = b.mlp(l, h)?;
        x = b.g.add(x, h)?;
    }
    if let Some(rows) = out_rows {
        x = b.g.get_rows(x, rows)?;
    }
    let x = b.norm(x, "output_norm.weight")?;
    let output = if c.tied_embeddings { "token_embd.weight" } else { "output.weight" };
    let logits = b.linear(x, output, None)?;
    let out = if shape.argmax { b.g.argmax(logits)? } else { logits };
    b.g.output(out);
    Ok(b.g)
}
