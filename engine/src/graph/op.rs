//! The closed set of operations a model graph is made of.
//!
//! Each op has one name everywhere: `Op::RmsNorm` here, `backend/cpu/rms_norm.rs`,
//! `shaders/rms_norm.wgsl`, `cuda/rms_norm.cu`. Shapes are row-major (last dimension contiguous);
//! "rows" are everything but the last dimension. Activations are `F32`; ids and positions `U32`;
//! weights may have any [`DType`](crate::DType), and ops that read them dequantize on the fly.
//!
//! Nothing here assumes a token sequence or a KV cache: attention takes whatever keys and values
//! it is given (a cache is just a `Param` of kind `State` written with `ScatterRows`), and its mask
//! is a property of the op, so an image transformer's non-causal attention is the same op.

/// How RoPE pairs the elements of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RopeLayout {
    /// Adjacent pairs `(x[2i], x[2i+1])`: GGUF's llama layout (q/k rows permuted by the converter).
    Normal,
    /// Halves `(x[i], x[i + d/2])`: GPT-NeoX, Qwen2, and Hugging Face's unpermuted llama weights.
    NeoX,
}

/// What [`Op::Rope`] computes, as the graph builder's `rope` takes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeParams {
    pub layout: RopeLayout,
    pub head_dim: usize,
    /// Leading elements of each head that rotate.
    pub n_rot: usize,
    pub base: f32,
    /// Linear position interpolation: 1 for none, `1 / factor` for `rope_scaling.type = linear`.
    pub freq_scale: f32,
}

/// Which keys a query may attend to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttnMask {
    /// Every query sees every key (encoders, diffusion transformers).
    None,
    /// Query `i` sees keys `0..=positions[i]` (decoders; keys are stored by position).
    Causal,
    /// Causal, and query `i` sees only the last `window` of those keys:
    /// `positions[i] + 1 - window ..= positions[i]` (sliding-window attention, Beltagy et al.,
    /// 2020; Gemma 3's local layers, llama.cpp's `LLAMA_SWA_TYPE_STANDARD`).
    SlidingWindow { window: usize },
}

impl AttnMask {
    /// Whether the mask needs each query's position.
    pub fn is_causal(self) -> bool {
        self != AttnMask::None
    }

    /// The first key query position `pos` may see.
    pub fn first_key(self, pos: usize) -> usize {
        match self {
            AttnMask::SlidingWindow { window } => (pos + 1).saturating_sub(window),
            _ => 0,
        }
    }
}

/// Where the keys of a query's sequence sit in attention's `k` and `v`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvLayout {
    /// Key `j` is row `j`.
    Contiguous,
    /// Paged attention (Kwon et al., 2023): `k` and `v` are a pool of blocks of `block_size` rows
    /// and each query row carries its sequence's block table, so key `j` of query `t` is row
    /// `block_table[t, j / block_size] * block_size + j % block_size`. Sequences at different
    /// positions share one batch and one pool; a sequence's blocks need not be adjacent.
    Paged { block_size: usize },
}

/// One operation. Inputs are listed in the order the node's `inputs` holds them.
///
/// Equality is structural, and is what backends key their plans by (`backend::plan_cache`). Its
/// `f32` parameters compare by value; the graph builders refuse none of them as NaN, but a NaN
/// would only make a graph unequal to itself (a plan rebuilt, never a wrong one shared).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A tensor supplied with each execution: `inputs[slot]` of a backend's `execute`.
    Input { slot: usize },
    /// A tensor resident on the backend for the life of a session: a weight or a state buffer.
    Param { id: super::ParamId },
    /// `out[i, :] = table[ids[i], :]`. Inputs: `table [R, C]` (any dtype), `ids [T]` (u32) → `[T, C]` f32.
    GetRows,
    /// `out = x · wᵀ`. Inputs: `x [T, K]` f32, `w [N, K]` (any dtype) → `[T, N]`.
    MatMul,
    /// `a + b`; `b` has `a`'s shape or is one row broadcast over `a`'s rows (a bias).
    Add,
    /// `a * b`, elementwise, same shapes.
    Mul,
    /// `out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * w`. Inputs: `x [T, C]`, `w [C]`.
    RmsNorm { eps: f32 },
    /// Rotary position embedding over each head of each row. Inputs: `x [T, heads*head_dim]`,
    /// `positions [T]` (u32), and with `factors` a third, `freq_factors [n_rot/2]` f32. Pair `i`
    /// of the first `n_rot` elements of each head rotates by
    /// `θ = freq_scale · pos · base^(-2i/n_rot) / freq_factors[i]` (ggml's `rope_ext` without
    /// YaRN: `freq_scale` is linear position interpolation, Chen et al., 2023; the factors are
    /// Llama 3.1's per-frequency scaling); the rest pass through.
    Rope { layout: RopeLayout, head_dim: usize, n_rot: usize, base: f32, freq_scale: f32, factors: bool },
    /// Scaled dot-product attention with grouped-query heads and an online softmax.
    /// Inputs: `q [T, n_head*head_dim]`, `k [S, n_kv_head*head_dim]`, `v [S, n_kv_head*head_dim]`,
    /// for `Causal` `positions [T]` (u32), and for `Paged` `block_table [T, M]` (u32)
    /// → `[T, n_head*head_dim]`. `Paged` takes `Causal` only (positions say how many keys
    /// there are); the graph refuses any other mask rather than imply it. `k` and `v` share one
    /// of [`DType::KV_TYPES`](crate::dtype::DType::KV_TYPES) (a KV cache kept in f16 or q8_0 is
    /// read as its f32 values; every product and sum is f32).
    Attention { n_head: usize, n_kv_head: usize, head_dim: usize, scale: f32, mask: AttnMask, kv: KvLayout },
    /// Writes `src` rows into a state param: `dst[positions[i], :] = src[i, :]`. Inputs: `dst` (a
    /// `State` param), `src [T, C]`, `positions [T]`. The node stands for `dst` after the write, so
    /// ops that read it afterwards take this node as input. A destination of f16 stores each
    /// value rounded to nearest-even; of q8_0, each row of whole blocks quantized as ggml's
    /// `quantize_row_q8_0_ref` (`quant::quantize_row`), as llama.cpp writes its q8_0 cache.
    ScatterRows,
    /// `silu(gate) * up` (SwiGLU's gating). Inputs: `gate`, `up`, same shapes.
    SiluMul,
    /// `gelu_tanh(gate) * up` (GeGLU's gating, Shazeer 2020, with the tanh approximation of GELU:
    /// `0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³)))`). Inputs: `gate`, `up`, same shapes.
    GeluMul,
    /// `x · factor` (e.g. Gemma's embedding scale √n_embd).
    Scale { factor: f32 },
    /// Each element rounded to the nearest f16 (ties to even), kept as f32: a KV cache of f16
    /// precision, and queries rounded as llama.cpp rounds them for its f16 `K·Q` product (values
    /// past f16's range become ±inf, as there).
    RoundF16,
    /// Keeps rows `start..start+len` of `x [T, C]` → `[len, C]`.
    SliceRows { start: usize, len: usize },
    /// Index of the largest element of each row (ties → lowest index). `x [T, C]` → `[T]` u32.
    Argmax,
}

impl Eq for Op {}

/// Consistent with `==`: an `f32` hashes by its bits, with -0.0 as 0.0 (they are equal).
impl std::hash::Hash for Op {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let f = |x: f32, h: &mut H| (if x == 0.0 { 0 } else { x.to_bits() }).hash(h);
        std::mem::discriminant(self).hash(h);
        match *self {
            Op::Input { slot } => slot.hash(h),
            Op::Param { id } => id.hash(h),
            Op::RmsNorm { eps } => f(eps, h),
            Op::Scale { factor } => f(factor, h),
            Op::Rope { layout, head_dim, n_rot, base, freq_scale, factors } => {
                (layout, head_dim, n_rot, factors).hash(h);
                f(base, h);
                f(freq_scale, h);
            }
            Op::Attention { n_head, n_kv_head, head_dim, scale, mask, kv } => {
                (n_head, n_kv_head, head_dim, mask, kv).hash(h);
                f(scale, h);
            }
            Op::SliceRows { start, len } => (start, len).hash(h),
            Op::GetRows | Op::MatMul | Op::Add | Op::Mul | Op::ScatterRows | Op::SiluMul | Op::GeluMul | Op::RoundF16 | Op::Argmax => {}
        }
    }
}

impl Op {
    /// The op's name, as used for kernel files and in errors.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Param { .. } => "param",
            Op::GetRows => "get_rows",
            Op::MatMul => "matmul",
            Op::Add => "add",
            Op::Mul => "mul",
            Op::RmsNorm { .. } => "rms_norm",
            Op::Rope { .. } => "rope",
            Op::Attention { .. } => "attention",
            Op::ScatterRows => "scatter_rows",
            Op::SiluMul => "silu_mul",
            Op::GeluMul => "gelu_mul",
            Op::Scale { .. } => "scale",
            Op::RoundF16 => "round_f16",
            Op::SliceRows { .. } => "slice_rows",
            Op::Argmax => "argmax",
        }
    }
}
