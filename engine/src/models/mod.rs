//! Model families: each is a config reader, its weights' names and shapes, and a graph builder,
//! looked up by GGUF `general.architecture` or Hugging Face `model_type` ([`FAMILIES`]).
//!
//! Adding a family touches its own module and the list below, nothing else: loading
//! (`Model::load`, `load.rs`), sessions, the CLI, the server and the browser crate go through a
//! [`Family`] and never name one, and backends know only ops.

pub mod gemma3;
pub mod llama;
mod load;

pub use load::{config_from_gguf, config_from_hf};

use crate::backend::ParamTable;
use crate::dtype::DType;
use crate::error::{ForgeError, Result};
use crate::formats::gguf::Metadata;
use crate::graph::Graph;
use crate::model::ModelConfig;

/// Every family, in the order their names are listed to users.
pub const FAMILIES: &[&Family] = &[&llama::FAMILY, &gemma3::FAMILY];

/// The architectures [`FAMILIES`] read, for error messages.
pub const SUPPORTED_ARCHS: &str = "llama, mistral, qwen2, gemma3";

/// One weight a model of some config is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightSpec {
    /// The canonical (GGUF) name, which graphs read it by.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Where a Hugging Face checkpoint keeps it.
    pub hf: HfWeight,
}

/// Where a weight comes from in a Hugging Face checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub enum HfWeight {
    /// A tensor of this name, with `shift` added to every value (Gemma's RMSNorm computes
    /// `x̂ · (1 + w)`, which GGUF stores as `1 + w`; elsewhere 0).
    Tensor { name: String, shift: f32 },
    /// Not in the checkpoint: computed from `config.json` (Llama 3.1's RoPE factors).
    Computed(Vec<f32>),
}

impl WeightSpec {
    pub fn hf(name: String, shape: Vec<usize>, hf_name: String) -> WeightSpec {
        WeightSpec { name, shape, hf: HfWeight::Tensor { name: hf_name, shift: 0.0 } }
    }
}

/// A family of models: how to read its configs, what weights it has, how to build its graph.
pub struct Family {
    pub name: &'static str,
    /// GGUF `general.architecture` values it reads.
    pub gguf_archs: &'static [&'static str],
    /// Hugging Face `model_type` values it reads.
    pub hf_model_types: &'static [&'static str],
    /// `(metadata, architecture, has_tensor)`: the config from GGUF metadata; `has_tensor` says
    /// whether the file has a tensor of that name (a separate `output.weight`, `rope_freqs.weight`).
    pub from_gguf: fn(&Metadata, &str, &dyn Fn(&str) -> bool) -> Result<ModelConfig>,
    /// `(config.json, model_type, has_tensor)`: the config from Hugging Face's `config.json`
    /// (has_tensor takes Hugging Face names, e.g. `lm_head.weight`).
    pub from_hf: fn(&serde_json::Value, &str, &dyn Fn(&str) -> bool) -> Result<ModelConfig>,
    /// Every weight the graph reads.
    pub weights: fn(&ModelConfig) -> Vec<WeightSpec>,
    /// The forward pass (see [`BatchShape`] for its inputs).
    pub forward: fn(&ModelConfig, &ParamTable, &KvParams, BatchShape) -> Result<Graph>,
}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

fn unknown(arch: &str) -> ForgeError {
    ForgeError::UnknownArchitecture { arch: arch.to_string(), supported: SUPPORTED_ARCHS }
}

/// The family that reads GGUF architecture `arch`.
pub fn by_gguf_arch(arch: &str) -> Result<&'static Family> {
    FAMILIES.iter().copied().find(|f| f.gguf_archs.contains(&arch)).ok_or_else(|| unknown(arch))
}

/// The family that reads Hugging Face `model_type`.
pub fn by_hf_model_type(model_type: &str) -> Result<&'static Family> {
    FAMILIES.iter().copied().find(|f| f.hf_model_types.contains(&model_type)).ok_or_else(|| unknown(model_type))
}

/// The family a config was read by.
pub fn of(c: &ModelConfig) -> Result<&'static Family> {
    FAMILIES.iter().copied().find(|f| f.name == c.family).ok_or_else(|| unknown(c.family))
}

/// The per-layer state params keys and values are written into: pools of blocks of
/// `block_size` rows.
#[derive(Clone, Debug)]
pub struct KvParams {
    pub k: Vec<String>,
    pub v: Vec<String>,
    pub block_size: usize,
    /// What the cache keeps keys and values in: one of [`DType::KV_TYPES`].
    pub dtype: DType,
}

/// The shape of one forward pass (the graph is built once per shape). Every family's graph takes
/// the same inputs: slot 0 token ids `[T]`; slot 1 positions `[T]` (each token's position in its
/// own sequence); slot 2 slots `[T]` (the cache row its key and value are written to); slot 3
/// block tables `[T, table_cols]` (its sequence's blocks); slot 4, with `out_rows`, the rows to
/// read out `[R]`.
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
pub fn kv_shapes(c: &ModelConfig, n_blocks: usize, block_size: usize, dtype: DType) -> (KvParams, Vec<(String, Vec<usize>, DType)>) {
    let names = KvParams { k: (0..c.n_layer).map(|l| format!("cache.{l}.k")).collect(), v: (0..c.n_layer).map(|l| format!("cache.{l}.v")).collect(), block_size, dtype };
    let shapes = names.k.iter().chain(&names.v).map(|n| (n.clone(), vec![n_blocks * block_size, c.kv_dim()], dtype)).collect();
    (names, shapes)
}

/// The weights of config `c` as `(name, shape)`, by its family.
pub fn weight_shapes(c: &ModelConfig) -> Result<Vec<(String, Vec<usize>)>> {
    Ok((of(c)?.weights)(c).into_iter().map(|w| (w.name, w.shape)).collect())
}

/// The forward graph of config `c`, by its family.
pub fn forward(c: &ModelConfig, params: &ParamTable, kv: &KvParams, shape: BatchShape) -> Result<Graph> {
    (of(c)?.forward)(c, params, kv, shape)
}

/// The graph-building steps every decoder family shares: inputs, weights by name, norms,
/// projections, the KV-cache write and paged attention, the read-out.
pub(crate) mod common {
    use super::{BatchShape, KvParams};
    use crate::backend::ParamTable;
    use crate::dtype::DType;
    use crate::error::Result;
    use crate::graph::{AttnMask, Graph, NodeId, RopeParams};
    use crate::model::{ModelConfig, RopeFactors};

    /// The activation of a gated feed-forward block.
    #[derive(Clone, Copy, Debug)]
    pub enum Gating {
        /// SwiGLU (Llama).
        Silu,
        /// GeGLU with the tanh approximation (Gemma).
        GeluTanh,
    }

    pub struct Builder<'a> {
        pub g: Graph,
        pub c: &'a ModelConfig,
        pub p: &'a ParamTable,
        pub tokens: NodeId,
        pub positions: NodeId,
        pub slots: NodeId,
        pub block_table: NodeId,
        pub out_rows: Option<NodeId>,
    }

    impl<'a> Builder<'a> {
        /// A graph with the inputs [`BatchShape`] describes.
        pub fn new(c: &'a ModelConfig, p: &'a ParamTable, shape: BatchShape) -> Builder<'a> {
            let t = shape.n_tokens;
            let mut g = Graph::new();
            let tokens = g.input(&[t], DType::U32);
            let positions = g.input(&[t], DType::U32);
            let slots = g.input(&[t], DType::U32);
            let block_table = g.input(&[t, shape.table_cols], DType::U32);
            let out_rows = shape.out_rows.map(|r| g.input(&[r], DType::U32));
            Builder { g, c, p, tokens, positions, slots, block_table, out_rows }
        }

        pub fn w(&mut self, name: &str) -> Result<NodeId> {
            self.p.node(&mut self.g, name)
        }

        pub fn norm(&mut self, x: NodeId, weight: &str) -> Result<NodeId> {
            let w = self.w(weight)?;
            self.g.rms_norm(x, w, self.c.rms_eps)
        }

        /// `x · Wᵀ (+ b)`.
        pub fn linear(&mut self, x: NodeId, weight: &str, bias: Option<&str>) -> Result<NodeId> {
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

        /// Layer `l`'s q, k and v projections (with their biases when the config has them).
        pub fn qkv(&mut self, l: usize, x: NodeId) -> Result<(NodeId, NodeId, NodeId)> {
            let mut proj = |n: &str| {
                let bias = self.c.qkv_bias.then(|| format!("blk.{l}.attn_{n}.bias"));
                self.linear(x, &format!("blk.{l}.attn_{n}.weight"), bias.as_deref())
            };
            Ok((proj("q")?, proj("k")?, proj("v")?))
        }

        /// RoPE on q and k, attention over layer `l`'s cache, the output projection.
        pub fn rope_attend_project(&mut self, l: usize, q: NodeId, k: NodeId, v: NodeId, kv: &KvParams) -> Result<NodeId> {
            let q = self.rope(l, q)?;
            let k = self.rope(l, k)?;
            let o = self.cached_attention(l, q, k, v, kv)?;
            self.linear(o, &format!("blk.{l}.attn_output.weight"), None)
        }

        /// Layer `l`'s gated feed-forward block: `down(act(gate(x)) · up(x))`.
        pub fn gated_mlp(&mut self, l: usize, x: NodeId, act: Gating) -> Result<NodeId> {
            let gate = self.linear(x, &format!("blk.{l}.ffn_gate.weight"), None)?;
            let up = self.linear(x, &format!("blk.{l}.ffn_up.weight"), None)?;
            let h = match act {
                Gating::Silu => self.g.silu_mul(gate, up)?,
                Gating::GeluTanh => self.g.gelu_mul(gate, up)?,
            };
            self.linear(h, &format!("blk.{l}.ffn_down.weight"), None)
        }

        /// RoPE on `x` with layer `l`'s base and scale (and the model's frequency factors).
        pub fn rope(&mut self, l: usize, x: NodeId) -> Result<NodeId> {
            let c = self.c;
            let lc = &c.layers[l];
            let factors = match c.rope_factors {
                RopeFactors::None => None,
                _ => Some(self.w("rope_freqs.weight")?),
            };
            let r = RopeParams { layout: c.rope_layout, head_dim: c.head_dim, n_rot: c.rope_dim, base: lc.rope_base, freq_scale: lc.rope_freq_scale };
            self.g.rope(x, self.positions, factors, r)
        }

        /// Writes this pass's keys and values into layer `l`'s cache and attends over the
        /// cache (causal; layer `l`'s sliding window, if it has one).
        ///
        /// With an f16 cache (the default) queries are rounded to f16 too, as llama.cpp's f16
        /// `K·Q` product does: Gemma 3's logits move by up to ~0.7 with that rounding alone, so
        /// matching llama.cpp's picks needs it. (The rounding comes after the cache writes, so
        /// RoPE and the writes stay neighbours for backends that fuse them.)
        pub fn cached_attention(&mut self, l: usize, q: NodeId, k: NodeId, v: NodeId, kv: &KvParams) -> Result<NodeId> {
            let c = self.c;
            let k_cache = self.w(&kv.k[l])?;
            let v_cache = self.w(&kv.v[l])?;
            let k_all = self.g.scatter_rows(k_cache, k, self.slots)?;
            let v_all = self.g.scatter_rows(v_cache, v, self.slots)?;
            let q = if kv.dtype == DType::F16 { self.g.round_f16(q)? } else { q };
            let mask = match c.layers[l].window {
                Some(window) => AttnMask::SlidingWindow { window },
                None => AttnMask::Causal,
            };
            self.g.paged_attention(q, k_all, v_all, self.positions, self.block_table, c.n_head, c.n_kv_head, c.head_dim, c.attn_scale, kv.block_size, mask)
        }

        /// The read-out: the rows asked for, the final norm, the output projection (or the tied
        /// embedding), and argmax if asked. Marks the graph's output.
        pub fn finish(mut self, x: NodeId, shape: BatchShape) -> Result<Graph> {
            let x = match self.out_rows {
                Some(rows) => self.g.get_rows(x, rows)?,
                None => x,
            };
            let x = self.norm(x, "output_norm.weight")?;
            let output = if self.c.tied_embeddings { "token_embd.weight" } else { "output.weight" };
            let logits = self.linear(x, output, None)?;
            let out = if shape.argmax { self.g.argmax(logits)? } else { logits };
            self.g.output(out);
            Ok(self.g)
        }
    }

    /// The weights every decoder has outside its layers, and the RoPE factors if any.
    pub fn global_weights(c: &ModelConfig) -> Vec<super::WeightSpec> {
        use super::{HfWeight, WeightSpec};
        let e = c.n_embd;
        let mut w = vec![WeightSpec::hf("token_embd.weight".into(), vec![c.n_vocab, e], "model.embed_tokens.weight".into())];
        if !c.tied_embeddings {
            w.push(WeightSpec::hf("output.weight".into(), vec![c.n_vocab, e], "lm_head.weight".into()));
        }
        match &c.rope_factors {
            RopeFactors::None => {}
            RopeFactors::Tensor => w.push(WeightSpec::hf("rope_freqs.weight".into(), vec![c.rope_dim / 2], "rope_freqs.weight".into())),
            f => {
                let values = crate::model::llama3_rope_factors(c.layers.first().map_or(10_000.0, |l| l.rope_base), c.rope_dim, f).unwrap_or_default();
                w.push(WeightSpec { name: "rope_freqs.weight".into(), shape: vec![c.rope_dim / 2], hf: HfWeight::Computed(values) });
            }
        }
        w
    }
}
