//! The model graph: a DAG of [`Op`]s with shapes and dtypes checked as it is built.
//!
//! Models build a [`Graph`] with the methods below (`g.matmul(x, w)`, `g.rms_norm(x, w, eps)`…);
//! backends execute whole graphs. Nodes are stored in creation order, which is a valid execution
//! order (inputs always exist before the node that reads them).

mod op;
mod param;


pub use op::{AttnMask, KvLayout, Op, RopeLayout, RopeParams};
pub use param::{ParamDesc, ParamId, ParamKind};

use crate::dtype::DType;
use crate::error::{ForgeError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<NodeId>,
    /// Row-major shape of the result.
    pub shape: Vec<usize>,
    pub dtype: DType,
}

/// Equal graphs (same nodes, wiring and outputs) run the same kernels on the same buffers, so
/// backends cache a plan per graph (`backend::plan_cache`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Graph {
    nodes: Vec<Node>,
    outputs: Vec<NodeId>,
    n_inputs: usize,
}

/// Attention's head geometry.
#[derive(Clone, Copy)]
struct Heads {
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    scale: f32,
}

fn err(what: String) -> ForgeError {
    ForgeError::Graph { what }
}

/// Rows and columns of a tensor seen as a matrix (everything but the last dim is rows).
pub fn rows_cols(shape: &[usize]) -> (usize, usize) {
    let cols = shape.last().copied().unwrap_or(1);
    let rows = shape[..shape.len().saturating_sub(1)].iter().product();
    (rows, cols)
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    pub fn n_inputs(&self) -> usize {
        self.n_inputs
    }

    /// Marks a node as a result of the graph; results come back in the order they were marked.
    pub fn output(&mut self, id: NodeId) {
        self.outputs.push(id);
    }

    /// For each node, the index of the last node that reads it (`usize::MAX` for outputs, which
    /// live to the end; its own index when nothing reads it). Executors free or reuse a node's
    /// buffer after that point.
    pub fn last_uses(&self) -> Vec<usize> {
        let mut last: Vec<usize> = (0..self.nodes.len()).collect();
        for (i, n) in self.nodes.iter().enumerate() {
            for &inp in &n.inputs {
                last[inp.index()] = i;
            }
        }
        for &o in &self.outputs {
            last[o.index()] = usize::MAX;
        }
        last
    }

    fn push(&mut self, op: Op, inputs: Vec<NodeId>, shape: Vec<usize>, dtype: DType) -> NodeId {
        let id = NodeId(u32::try_from(self.nodes.len()).expect("graph has fewer than 2^32 nodes"));
        self.nodes.push(Node { op, inputs, shape, dtype });
        id
    }

    fn shape(&self, id: NodeId) -> &[usize] {
        &self.nodes[id.index()].shape
    }

    fn dtype(&self, id: NodeId) -> DType {
        self.nodes[id.index()].dtype
    }

    fn expect_f32(&self, op: &str, id: NodeId) -> Result<()> {
        match self.dtype(id) {
            DType::F32 => Ok(()),
            d => Err(err(format!("{op}: activation input must be f32, got {d}"))),
        }
    }

    fn expect_ids(&self, op: &str, id: NodeId, rows: usize) -> Result<()> {
        let s = self.shape(id);
        if self.dtype(id) != DType::U32 || s.len() != 1 || s[0] != rows {
            return Err(err(format!("{op}: expected u32 [{rows}], got {} {s:?}", self.dtype(id))));
        }
        Ok(())
    }

    /// A tensor supplied at execution time, at the next input slot.
    pub fn input(&mut self, shape: &[usize], dtype: DType) -> NodeId {
        let slot = self.n_inputs;
        self.n_inputs += 1;
        self.push(Op::Input { slot }, vec![], shape.to_vec(), dtype)
    }

    /// A weight or state tensor resident on the backend.
    pub fn param(&mut self, id: ParamId, desc: &ParamDesc) -> NodeId {
        self.push(Op::Param { id }, vec![], desc.shape.clone(), desc.dtype)
    }

    pub fn get_rows(&mut self, table: NodeId, ids: NodeId) -> Result<NodeId> {
        let t = self.shape(table).to_vec();
        if t.len() != 2 {
            return Err(err(format!("get_rows: table must be 2-D, got {t:?}")));
        }
        let n = self.shape(ids).first().copied().unwrap_or(0);
        self.expect_ids("get_rows", ids, n)?;
        Ok(self.push(Op::GetRows, vec![table, ids], vec![n, t[1]], DType::F32))
    }

    pub fn matmul(&mut self, x: NodeId, w: NodeId) -> Result<NodeId> {
        self.expect_f32("matmul", x)?;
        let (xs, ws) = (self.shape(x).to_vec(), self.shape(w).to_vec());
        if ws.len() != 2 || xs.last() != ws.last() {
            return Err(err(format!("matmul: x {xs:?} · wᵀ with w {ws:?}: inner dimensions differ")));
        }
        let mut out = xs.clone();
        *out.last_mut().expect("x has a last dim") = ws[0];
        Ok(self.push(Op::MatMul, vec![x, w], out, DType::F32))
    }

    pub fn add(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.expect_f32("add", a)?;
        self.expect_f32("add", b)?;
        let (sa, sb) = (self.shape(a).to_vec(), self.shape(b).to_vec());
        let bias = sb.len() == 1 && sa.last() == sb.last();
        if sa != sb && !bias {
            return Err(err(format!("add: shapes {sa:?} and {sb:?} differ")));
        }
        Ok(self.push(Op::Add, vec![a, b], sa, DType::F32))
    }

    pub fn mul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.same_shape_f32("mul", a, b)?;
        let s = self.shape(a).to_vec();
        Ok(self.push(Op::Mul, vec![a, b], s, DType::F32))
    }

    fn same_shape_f32(&self, op: &str, a: NodeId, b: NodeId) -> Result<()> {
        self.expect_f32(op, a)?;
        self.expect_f32(op, b)?;
        if self.shape(a) != self.shape(b) {
            return Err(err(format!("{op}: shapes {:?} and {:?} differ", self.shape(a), self.shape(b))));
        }
        Ok(())
    }

    /// RMSNorm over each `w`-wide group of each row: `w [C]` normalizes rows of `x [T, C]`, and
    /// `w [D]` with `D` dividing `C` normalizes each of the `C / D` heads of a row on its own
    /// (Gemma 3's QK-norm). Memory is contiguous either way, so it is one op: backends see rows
    /// of `D`.
    pub fn rms_norm(&mut self, x: NodeId, w: NodeId, eps: f32) -> Result<NodeId> {
        self.expect_f32("rms_norm", x)?;
        self.expect_f32("rms_norm", w)?;
        let s = self.shape(x).to_vec();
        let cols = *s.last().unwrap_or(&0);
        match self.shape(w) {
            &[d] if d > 0 && cols.is_multiple_of(d) => {}
            ws => return Err(err(format!("rms_norm: weight {ws:?} does not divide the rows of {s:?}"))),
        }
        Ok(self.push(Op::RmsNorm { eps }, vec![x, w], s, DType::F32))
    }

    /// RoPE (see [`Op::Rope`]); `freq_factors [n_rot/2]`, when given, divide each pair's frequency.
    pub fn rope(&mut self, x: NodeId, positions: NodeId, freq_factors: Option<NodeId>, r: RopeParams) -> Result<NodeId> {
        let RopeParams { layout, head_dim, n_rot, base, freq_scale } = r;
        self.expect_f32("rope", x)?;
        let s = self.shape(x).to_vec();
        let (rows, cols) = rows_cols(&s);
        if head_dim == 0 || !cols.is_multiple_of(head_dim) || n_rot > head_dim || !n_rot.is_multiple_of(2) {
            return Err(err(format!("rope: row of {cols} with head_dim {head_dim}, n_rot {n_rot}")));
        }
        if !(base.is_finite() && base > 0.0 && freq_scale.is_finite() && freq_scale > 0.0) {
            return Err(err(format!("rope: base {base} and frequency scale {freq_scale} must be positive")));
        }
        self.expect_ids("rope", positions, rows)?;
        let mut inputs = vec![x, positions];
        if let Some(f) = freq_factors {
            self.expect_f32("rope", f)?;
            if self.shape(f) != [n_rot / 2] {
                return Err(err(format!("rope: frequency factors {:?} must be [{}]", self.shape(f), n_rot / 2)));
            }
            inputs.push(f);
        }
        Ok(self.push(Op::Rope { layout, head_dim, n_rot, base, freq_scale, factors: freq_factors.is_some() }, inputs, s, DType::F32))
    }

    /// `x` rounded to f16 precision (see [`Op::RoundF16`]).
    pub fn round_f16(&mut self, x: NodeId) -> Result<NodeId> {
        self.expect_f32("round_f16", x)?;
        let s = self.shape(x).to_vec();
        Ok(self.push(Op::RoundF16, vec![x], s, DType::F32))
    }

    /// `x · factor`.
    pub fn scale(&mut self, x: NodeId, factor: f32) -> Result<NodeId> {
        self.expect_f32("scale", x)?;
        let s = self.shape(x).to_vec();
        Ok(self.push(Op::Scale { factor }, vec![x], s, DType::F32))
    }

    /// Attention, scores scaled by `scale` (usually `1/√head_dim`); `positions` is required for
    /// a causal mask and ignored otherwise.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(&mut self, q: NodeId, k: NodeId, v: NodeId, positions: Option<NodeId>, n_head: usize, n_kv_head: usize, head_dim: usize, scale: f32, mask: AttnMask) -> Result<NodeId> {
        let heads = Heads { n_head, n_kv_head, head_dim, scale };
        self.attention_node(q, k, v, positions, heads, mask, KvLayout::Contiguous, None)
    }

    /// Attention over a paged KV pool (see [`KvLayout::Paged`]): `k` and `v` hold whole blocks of
    /// `block_size` rows, `block_table [T, M]` names each query row's blocks in order. `mask`
    /// must be causal ([`AttnMask::Causal`] or [`AttnMask::SlidingWindow`]): a query's position is
    /// all that says how many of its sequence's keys exist, so there is no paged attention
    /// without it (the caller says so).
    #[allow(clippy::too_many_arguments)]
    pub fn paged_attention(&mut self, q: NodeId, k: NodeId, v: NodeId, positions: NodeId, block_table: NodeId, n_head: usize, n_kv_head: usize, head_dim: usize, scale: f32, block_size: usize, mask: AttnMask) -> Result<NodeId> {
        if !mask.is_causal() {
            return Err(err(format!("paged attention needs the causal mask (positions give each sequence's length), got {mask:?}")));
        }
        let t = rows_cols(self.shape(q)).0;
        let bt = self.shape(block_table).to_vec();
        if self.dtype(block_table) != DType::U32 || bt.len() != 2 || bt[0] != t || bt[1] == 0 {
            return Err(err(format!("paged attention: block table {bt:?} must be u32 [{t}, blocks per sequence]")));
        }
        if block_size == 0 || !rows_cols(self.shape(k)).0.is_multiple_of(block_size) {
            return Err(err(format!("paged attention: {} key rows are not whole blocks of {block_size}", rows_cols(self.shape(k)).0)));
        }
        let heads = Heads { n_head, n_kv_head, head_dim, scale };
        self.attention_node(q, k, v, Some(positions), heads, mask, KvLayout::Paged { block_size }, Some(block_table))
    }

    #[allow(clippy::too_many_arguments)]
    fn attention_node(&mut self, q: NodeId, k: NodeId, v: NodeId, positions: Option<NodeId>, h: Heads, mask: AttnMask, kv: KvLayout, table: Option<NodeId>) -> Result<NodeId> {
        let Heads { n_head, n_kv_head, head_dim, scale } = h;
        if !scale.is_finite() {
            return Err(err(format!("attention: scale {scale} is not finite")));
        }
        if matches!(mask, AttnMask::SlidingWindow { window: 0 }) {
            return Err(err("attention: a sliding window of 0 keys".into()));
        }
        self.expect_f32("attention", q)?;
        let kv_type = self.dtype(k);
        if !DType::KV_TYPES.contains(&kv_type) || self.dtype(v) != kv_type {
            return Err(err(format!("attention: keys ({kv_type}) and values ({}) must share one KV type of {:?}", self.dtype(v), DType::KV_TYPES)));
        }
        // A quantized cache is read a head at a time, so a head must be whole blocks.
        if !head_dim.is_multiple_of(kv_type.block_len()) {
            return Err(err(format!("attention: head_dim {head_dim} is not whole {kv_type} blocks of {}", kv_type.block_len())));
        }
        let (t, qc) = rows_cols(self.shape(q));
        let kc = rows_cols(self.shape(k)).1;
        if n_kv_head == 0 || !n_head.is_multiple_of(n_kv_head) || qc != n_head * head_dim || kc != n_kv_head * head_dim || self.shape(k) != self.shape(v) {
            return Err(err(format!(
                "attention: q {:?}, k {:?}, v {:?} do not fit {n_head} heads / {n_kv_head} kv heads of {head_dim}",
                self.shape(q),
                self.shape(k),
                self.shape(v)
            )));
        }
        let mut inputs = vec![q, k, v];
        if mask.is_causal() {
            let p = positions.ok_or_else(|| err("attention: causal mask needs positions".into()))?;
            self.expect_ids("attention", p, t)?;
            inputs.push(p);
        }
        inputs.extend(table);
        Ok(self.push(Op::Attention { n_head, n_kv_head, head_dim, scale, mask, kv }, inputs, vec![t, qc], DType::F32))
    }

    pub fn scatter_rows(&mut self, dst: NodeId, src: NodeId, positions: NodeId) -> Result<NodeId> {
        if !matches!(self.node(dst).op, Op::Param { .. } | Op::ScatterRows) {
            return Err(err("scatter_rows: destination must be a state param".into()));
        }
        self.expect_f32("scatter_rows", src)?;
        let (d, s) = (self.shape(dst).to_vec(), self.shape(src).to_vec());
        if d.len() != 2 || s.len() != 2 || d[1] != s[1] {
            return Err(err(format!("scatter_rows: rows of {s:?} do not fit {d:?}")));
        }
        self.expect_ids("scatter_rows", positions, s[0])?;
        let dt = self.dtype(dst);
        if !DType::KV_TYPES.contains(&dt) || !d[1].is_multiple_of(dt.block_len()) {
            return Err(err(format!("scatter_rows: a destination of {dt} rows of {} (f32, f16, or q8_0 in whole blocks)", d[1])));
        }
        Ok(self.push(Op::ScatterRows, vec![dst, src, positions], d, dt))
    }

    pub fn silu_mul(&mut self, gate: NodeId, up: NodeId) -> Result<NodeId> {
        self.same_shape_f32("silu_mul", gate, up)?;
        let s = self.shape(gate).to_vec();
        Ok(self.push(Op::SiluMul, vec![gate, up], s, DType::F32))
    }

    pub fn gelu_mul(&mut self, gate: NodeId, up: NodeId) -> Result<NodeId> {
        self.same_shape_f32("gelu_mul", gate, up)?;
        let s = self.shape(gate).to_vec();
        Ok(self.push(Op::GeluMul, vec![gate, up], s, DType::F32))
    }

    pub fn slice_rows(&mut self, x: NodeId, start: usize, len: usize) -> Result<NodeId> {
        self.expect_f32("slice_rows", x)?;
        let s = self.shape(x).to_vec();
        if s.len() != 2 || start.checked_add(len).is_none_or(|e| e > s[0]) {
            return Err(err(format!("slice_rows: rows {start}..{start}+{len} of {s:?}")));
        }
        Ok(self.push(Op::SliceRows { start, len }, vec![x], vec![len, s[1]], DType::F32))
    }

    pub fn argmax(&mut self, x: NodeId) -> Result<NodeId> {
        self.expect_f32("argmax", x)?;
        let (rows, _) = rows_cols(self.shape(x));
        Ok(self.push(Op::Argmax, vec![x], vec![rows], DType::U32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paged attention is causal by construction; asking for it without the mask is an error,
    /// not a mask silently replaced.
    #[test]
    fn paged_attention_states_its_causal_mask() {
        let mut g = Graph::new();
        let q = g.input(&[2, 16], DType::F32);
        let k = g.input(&[32, 16], DType::F32);
        let pos = g.input(&[2], DType::U32);
        let table = g.input(&[2, 2], DType::U32);
        let e = g.paged_attention(q, k, k, pos, table, 2, 2, 8, 0.5, 16, AttnMask::None).unwrap_err();
        assert!(e.to_string().contains("needs the causal mask"), "{e}");
        let o = g.paged_attention(q, k, k, pos, table, 2, 2, 8, 0.5, 16, AttnMask::Causal).unwrap();
        assert!(matches!(g.node(o).op, Op::Attention { mask: AttnMask::Causal, kv: KvLayout::Paged { block_size: 16 }, .. }));
    }
}
