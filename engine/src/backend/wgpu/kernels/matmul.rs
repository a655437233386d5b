//! `Op::MatMul` and `Op::GetRows`, the ops that read weights in their stored GGUF format.
//!
//! MatMul with one activation row (decode) runs a matvec whose geometry is `Matvec` (chosen per
//! adapter). On GPUs that is `matvec`: 16 invocations per row striding over 8-weight units and a
//! shared-memory tree, which for the 32-block formats also serves small batches (up to 16 rows,
//! each weight dequantized once for the up to 16 tokens of a workgroup). On CPU adapters
//! (lavapipe) the 32-weight blocks take `matvec_blocks` up to 16 tokens (`MAX_MATVEC_T`): one
//! invocation per 8 rows walking whole blocks, so each activation load serves 8 rows and each
//! block is read as aligned words, 8 tokens one after another while the rows are in cache.
//! Their other formats take `matvec` with one invocation per 8 rows. With more rows
//! (prefill) the other formats, and GPUs, run `matmul`: 32 × 32 output tiles with both operands
//! staged in shared memory, so each weight is dequantized once per 32 tokens.
//!
//! GetRows runs `get_rows`, one invocation per 8 output elements. A weight split into pages
//! (larger than one storage binding) takes one dispatch per page, each writing its own range of
//! output columns (MatMul) or the rows whose ids fall in its range (GetRows).
//! Shaders: matmul_float.wgsl (F32/F16/BF16), matmul_q32.wgsl (Q4_0/Q4_1/Q8_0/Q5_0/Q5_1),
//! matmul_kquant.wgsl (Q4_K/Q5_K/Q6_K), the format picked by the `FORMAT` override.

use super::{Buf, Cx, KernelKey, Matrix, Step, grid};
use crate::dtype::DType;

const TILE: usize = 32;
/// Tokens one `matvec_blocks` invocation serves, one after another.
const MAX_NT: usize = 8;
/// Up to this many tokens (a batch of decoding sequences) a product with a 32-block weight runs,
/// and fuses, as a matvec (`matvec_blocks` on CPU adapters); beyond it (prefill) the tiled
/// `matmul`. On CPU adapters `matvec_blocks` is faster at every size (on an AVX2 host: 0.6
/// GMAC/s against 0.35; pp64 of SmolLM2 4.0 tok/s against 3.1, of Gemma 3 270M 3.9 against
/// 3.1), but its summation order moves Gemma 3's wgpu logits at `dev-long-window` position 3 to
/// 0.412 from llama.cpp's pick, past the 0.4 near-tie rule; it waits until the wgpu summation
/// order is brought closer to the CPU's (issue 13).
const MAX_MATVEC_T: usize = 16;
/// Tokens one `matvec` workgroup (GPUs) serves at once, times its rows per invocation.
const MAX_GPU_NT: usize = 16;
/// Workgroups `matvec_blocks` aims for at least (a few per CPU thread).
const MIN_GROUPS: usize = 8;

/// The shader file and `FORMAT` value for a weight type.
fn shader(dtype: DType) -> (&'static str, u32) {
    match dtype {
        DType::F32 => ("matmul_float", 0),
        DType::F16 => ("matmul_float", 1),
        DType::BF16 => ("matmul_float", 2),
        DType::Q4_0 => ("matmul_q32", 0),
        DType::Q4_1 => ("matmul_q32", 1),
        DType::Q8_0 => ("matmul_q32", 2),
        DType::Q5_0 => ("matmul_q32", 3),
        DType::Q5_1 => ("matmul_q32", 4),
        DType::Q4K => ("matmul_kquant", 0),
        DType::Q5K => ("matmul_kquant", 1),
        DType::Q6K => ("matmul_kquant", 2),
        DType::U32 => unreachable!("u32 is not a weight type"),
    }
}

/// What a fused matvec computes besides `x · wᵀ` (`backend/wgpu/fuse.rs`; all off = the plain
/// product of a pre-rounded activation).
#[derive(Clone, Debug, Default)]
pub(in super::super) struct Fused {
    /// Round the raw f32 activation to Q8 blocks in the kernel (no `quantize_act` step).
    pub round: bool,
    /// Add this same-shaped value to the product.
    pub resid: Option<Buf>,
    /// Further weights of the same format and width, and where their products go (q, k, v).
    pub more: Vec<(Matrix, Buf)>,
    /// `act(x · wᵀ) ⊙ (x · w2ᵀ)` with `more[0]` the up weight: 1 silu, 2 gelu-tanh.
    pub gated: u32,
}

/// Whether a product with `w` over `t` tokens runs as a matvec that can fuse (`Fused`): the
/// 32-block formats, a single page, up to `MAX_MATVEC_T` tokens (`matvec_blocks` on CPU
/// adapters, `matvec` with NT tokens per workgroup on GPUs).
pub(in super::super) fn fusable(w: &Matrix, t: usize) -> bool {
    shader(w.dtype).0 == "matmul_q32" && w.pages.len() == 1 && t <= MAX_MATVEC_T
}

/// `out [t, n] = x [t, k] · wᵀ`.
pub(in super::super) fn matmul(cx: &Cx, w: &Matrix, t: usize, x: Buf, out: Buf) -> Vec<Step> {
    matmul_fused(cx, w, t, x, out, &Fused::default())
}

/// `matmul` with `f`'s fusions (which need `fusable`).
pub(in super::super) fn matmul_fused(cx: &Cx, w: &Matrix, t: usize, x: Buf, out: Buf, f: &Fused) -> Vec<Step> {
    let (file, format) = shader(w.dtype);
    let n_total: usize = w.pages.iter().map(|p| p.2).sum();
    let q32 = file == "matmul_q32";
    let plain = !f.round && f.resid.is_none() && f.more.is_empty() && f.gated == 0;
    debug_assert!(plain || fusable(w, t), "fused matmul off the matvec path");
    // Rows of the stack (q, k, v) and the virtual rows the invocations cover (gate and up rows).
    let n_rows = |i: usize| f.more.get(i).map_or(0, |m| m.0.pages[0].2);
    let virtual_rows = |rows: usize| if f.gated > 0 { 2 * rows } else { rows + n_rows(0) + n_rows(1) };
    w.pages
        .iter()
        .map(|&(buf, row0, rows)| {
            let stacked = if f.gated > 0 { rows } else { virtual_rows(rows) };
            let mut uniforms = vec![w.cols as u32, stacked as u32, t as u32, w.row_bytes as u32, n_total as u32, row0 as u32];
            let mut binds = vec![(1, buf), (2, x), (3, out)];
            let mut fusion = vec![];
            if q32 {
                uniforms.extend([rows as u32, n_rows(0) as u32, n_rows(1) as u32]);
                let more = |i: usize| f.more.get(i).map_or((Buf::Dummy, Buf::Scratch(i as u8)), |m| (m.0.pages[0].0, m.1));
                binds.extend([(5, f.resid.unwrap_or(Buf::Dummy)), (6, more(0).0), (7, more(1).0), (8, if f.gated > 0 { Buf::Scratch(0) } else { more(0).1 }), (9, more(1).1)]);
                let nm = if f.gated > 0 { 2 } else { 1 + f.more.len() as u32 };
                fusion = vec![("ROUND", f.round as u32), ("RESID", f.resid.is_some() as u32), ("NM", nm), ("GATED", f.gated)];
            }
            let vrows = virtual_rows(rows);
            if cx.matvec.blocks && q32 && t <= MAX_MATVEC_T {
                let m = cx.matvec;
                let nt = t.min(MAX_NT);
                // Smaller workgroups for short matrices, so that every CPU thread gets some.
                let mut wg = m.wg;
                while wg > 8 && vrows.div_ceil((wg * m.rpi) as usize) * t.div_ceil(nt) < MIN_GROUPS {
                    wg /= 2;
                }
                let mut c = vec![("FORMAT", format), ("WG", wg), ("RPI", m.rpi), ("NT", nt as u32)];
                c.extend(fusion);
                let kernel = KernelKey::new(file, "matvec_blocks", &c);
                let per_group = (wg * m.rpi) as usize;
                let mut groups = vrows.div_ceil(per_group);
                if !f.more.is_empty() && f.gated == 0 {
                    // A stack: whole workgroups per weight.
                    let g = [rows, n_rows(0), n_rows(1)].map(|n| n.div_ceil(per_group));
                    uniforms.extend([g[0] as u32, g[1] as u32]);
                    groups = g.iter().sum();
                }
                let [gx, gy, _] = grid(groups, cx.max_groups);
                Step { kernel, uniforms, binds, groups: [gx, gy, t.div_ceil(nt) as u32] }
            } else if t == 1 || (q32 && t <= MAX_MATVEC_T) {
                let m = cx.matvec;
                // Gated rows come in pairs (gate, up) per invocation.
                let rpi = if f.gated > 0 { m.rpi.max(2) } else { m.rpi };
                let mut c = vec![("FORMAT", format), ("WG", m.wg), ("TPR", m.tpr), ("RPI", rpi)];
                if q32 {
                    // A small batch: the shader's partial sums hold RPI · NT ≤ 16 per invocation.
                    let nt = t.min(MAX_GPU_NT / rpi as usize).max(1);
                    c.push(("NT", nt as u32));
                    c.extend(fusion);
                    let kernel = KernelKey::new(file, "matvec", &c);
                    let per_group = (m.wg / m.tpr * rpi) as usize;
                    let [gx, gy, _] = grid(vrows.div_ceil(per_group), cx.max_groups);
                    return Step { kernel, uniforms, binds, groups: [gx, gy, t.div_ceil(nt) as u32] };
                }
                let kernel = KernelKey::new(file, "matvec", &c);
                binds.truncate(3);
                let per_group = (m.wg / m.tpr * rpi) as usize;
                Step { kernel, uniforms, binds, groups: grid(vrows.div_ceil(per_group), cx.max_groups) }
            } else {
                let kernel = KernelKey::new(file, "matmul", &[("FORMAT", format)]);
                binds.truncate(3);
                if q32 {
                    // The dequantizer reads w2 and w3 too (for stacks), so they are bound.
                    binds.extend([(6, Buf::Dummy), (7, Buf::Dummy)]);
                }
                let [x, z, _] = grid(rows.div_ceil(TILE), cx.max_groups);
                Step { kernel, uniforms, binds, groups: [x, t.div_ceil(TILE) as u32, z] }
            }
        })
        .collect()
}

/// The activation rounding llama.cpp applies before a matmul with `dtype` weights, as the
/// `quantize_act.wgsl` KIND and block length; `None` for float weights (activations stay f32).
pub(in super::super) fn act_kind(dtype: DType) -> Option<(u32, usize)> {
    match dtype {
        DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 => Some((0, 32)),
        DType::Q4K | DType::Q5K | DType::Q6K => Some((1, 256)),
        _ => None,
    }
}

/// `out [t, k] = x` rounded to llama.cpp's 8-bit activation blocks (`act_kind`).
pub(in super::super) fn quantize_act(cx: &Cx, kind: (u32, usize), n: usize, x: Buf, out: Buf) -> Step {
    let blocks = n / kind.1;
    Step {
        kernel: KernelKey::new("quantize_act", "main", &[("KIND", kind.0), ("WG", 64)]),
        uniforms: vec![blocks as u32],
        binds: vec![(1, x), (2, out)],
        groups: grid(blocks.div_ceil(64), cx.max_groups),
    }
}

/// `out [t, cols] = table[ids]`.
pub(in super::super) fn get_rows(cx: &Cx, w: &Matrix, t: usize, ids: Buf, out: Buf) -> Vec<Step> {
    let (file, format) = shader(w.dtype);
    let units = t * w.cols.div_ceil(8);
    w.pages
        .iter()
        .map(|&(buf, row0, rows)| Step {
            kernel: KernelKey::new(file, "get_rows", &[("FORMAT", format), ("WG", 64)]),
            uniforms: vec![w.cols as u32, rows as u32, t as u32, w.row_bytes as u32, w.cols as u32, row0 as u32],
            binds: if file == "matmul_q32" { vec![(1, buf), (4, ids), (3, out), (6, Buf::Dummy), (7, Buf::Dummy)] } else { vec![(1, buf), (4, ids), (3, out)] },
            groups: grid(units.div_ceil(64), cx.max_groups),
        })
        .collect()
}

/// Whether the shaders can read rows of `cols` elements of `dtype` (quantized rows are whole
/// blocks already; vec4 activation loads need K % 8 for the block formats, which blocks ensure).
pub(in super::super) fn supported(dtype: DType) -> bool {
    DType::WEIGHT_TYPES.contains(&dtype)
}

#[cfg(test)]
#[path = "matmul_tests.rs"]
mod tests;
