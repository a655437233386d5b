//! Fusion: which neighbouring nodes of a graph one dispatch computes, so that a decode step takes
//! a few dispatches per layer instead of one per op (on a GPU, decode of a small model is bound
//! by dispatch overhead, not by memory bandwidth).
//!
//! The graph stays the reference: fusion is this backend's way of running it, found by pattern
//! on ops (never on names), and every fused kernel computes the same f32 operations in the same
//! order as the ops it replaces, so that results are bit-identical with fusion off
//! (`FORGE_WGPU_FUSE=0`; tested in `fuse_tests.rs`). The patterns:
//! - **Stack**: up to three consecutive MatMuls of one activation with weights of one format and
//!   width (a layer's q, k and v): one matvec over their stacked rows, writing each output.
//! - **Gated**: MatMul (gate), MatMul (up) of one activation, then SiluMul/GeluMul of exactly
//!   these two, read by nothing else: one matvec writing act(gate) ⊙ up.
//! - **Residual**: a MatMul read only by an `Add` of a same-shaped value computed before it: the
//!   matvec adds it while storing.
//! - **RopeScatter**: RoPE on q, RoPE on k, ScatterRows of that k into a cache, ScatterRows of v
//!   into a cache (consecutive, one positions and one slots input), and a RoundF16 of that q
//!   right after them if there is one (an f16 cache rounds queries as llama.cpp does): one
//!   dispatch, for up to 16 token rows, with f32 or f16 caches.
//!
//! The matmul fusions apply only where the product runs as a matvec of a 32-block format (decode
//! and small batches), which also rounds its activations itself (no `quantize_act` dispatch).

use crate::dtype::DType;
use crate::graph::{Graph, NodeId, Op};

/// Token rows up to which RoPE and the cache writes are fused.
const ROPE_SCATTER_MAX_T: usize = 16;

fn id(i: usize) -> NodeId {
    NodeId(i as u32)
}

/// What the plan does with a node.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Role {
    /// Its own steps, as unfused.
    Own,
    /// Computed by an earlier node's step; its buffer (if it has one) was assigned there.
    Done,
    /// A MatMul whose step also computes these MatMuls of the same activation.
    Stack(Vec<NodeId>),
    /// A MatMul whose product goes straight into `add` (with `other`, its other operand).
    Resid { add: NodeId, other: NodeId },
    /// The gate MatMul of `act(gate) ⊙ up` (`act` 1 = silu, 2 = gelu-tanh), `mul` that product.
    Gated { up: NodeId, mul: NodeId, act: u32 },
    /// RoPE on q, also rotating k into its cache and copying v into its cache; with `round_q`,
    /// q is stored rounded to f16 as that node's value (and not unrounded at all).
    RopeScatter { k_rope: NodeId, k_scatter: NodeId, v_scatter: NodeId, round_q: Option<NodeId> },
}

/// The role of every node. `matvec(node)` says whether a MatMul node runs as a fusable matvec
/// (its weight's format and page count, the token count, the adapter: `matmul::fusable`).
pub(super) fn plan(graph: &Graph, matvec: &dyn Fn(NodeId) -> bool) -> Vec<Role> {
    let nodes = graph.nodes();
    let n = nodes.len();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, node) in nodes.iter().enumerate() {
        for &inp in &node.inputs {
            users[inp.index()].push(i);
        }
    }
    let is_output = |i: usize| graph.outputs().iter().any(|o| o.index() == i);
    let only_user = |i: usize, j: usize| !is_output(i) && users[i] == [j];
    let is_matvec = |i: usize| nodes[i].op == Op::MatMul && matvec(id(i));
    // Two MatMuls of one activation whose weights have one format and width.
    let same_weights = |a: usize, b: usize| {
        let (wa, wb) = (graph.node(nodes[a].inputs[1]), graph.node(nodes[b].inputs[1]));
        nodes[a].inputs[0] == nodes[b].inputs[0] && wa.dtype == wb.dtype && wa.shape[1..] == wb.shape[1..]
    };
    let mut role = vec![Role::Own; n];
    // The nodes that compute (params and inputs take no step, and sit between the ones fused).
    let seq: Vec<usize> = (0..n).filter(|&i| !matches!(nodes[i].op, Op::Param { .. } | Op::Input { .. })).collect();
    let at = |s: usize| seq.get(s).copied();
    let mut s = 0;
    while let Some(i) = at(s) {
        if is_matvec(i) {
            // Gated: gate, up, act(gate) ⊙ up.
            if let (Some(u), Some(m)) = (at(s + 1), at(s + 2)) {
                let act = match nodes[m].op {
                    Op::SiluMul => 1,
                    Op::GeluMul => 2,
                    _ => 0,
                };
                if act > 0 && is_matvec(u) && same_weights(i, u) && nodes[i].shape == nodes[u].shape && nodes[m].inputs == [id(i), id(u)] && only_user(i, m) && only_user(u, m) {
                    role[i] = Role::Gated { up: id(u), mul: id(m), act };
                    role[u] = Role::Done;
                    role[m] = Role::Done;
                    s += 3;
                    continue;
                }
            }
            // Stack: up to three products of one activation.
            let mut members = Vec::new();
            while let Some(j) = at(s + 1 + members.len()).filter(|_| members.len() < 2) {
                if !(is_matvec(j) && same_weights(i, j)) {
                    break;
                }
                members.push(id(j));
            }
            if !members.is_empty() {
                for m in &members {
                    role[m.index()] = Role::Done;
                }
                s += 1 + members.len();
                role[i] = Role::Stack(members);
                continue;
            }
            // Residual: read only by an Add of a same-shaped value computed before it.
            if let [j] = users[i][..] {
                let add = &nodes[j];
                if !is_output(i) && add.op == Op::Add && add.shape == nodes[i].shape && add.inputs[0] != add.inputs[1] {
                    let other = if add.inputs[0].index() == i { add.inputs[1] } else { add.inputs[0] };
                    let o = graph.node(other);
                    if other.index() < i && o.shape == add.shape && !matches!(o.op, Op::Param { .. } | Op::Input { .. }) {
                        role[i] = Role::Resid { add: id(j), other };
                        role[j] = Role::Done;
                    }
                }
            }
        } else if let Some((k_rope, k_scatter, v_scatter)) = rope_scatter(graph, &users, [Some(i), at(s + 1), at(s + 2), at(s + 3)]) {
            for k in 1..4 {
                role[seq[s + k]] = Role::Done;
            }
            s += 4;
            let round_q = at(s).filter(|&r| nodes[r].op == Op::RoundF16 && nodes[r].inputs == [id(i)] && only_user(i, r));
            if let Some(r) = round_q {
                role[r] = Role::Done;
                s += 1;
            }
            role[i] = Role::RopeScatter { k_rope, k_scatter, v_scatter, round_q: round_q.map(id) };
            continue;
        }
        s += 1;
    }
    role
}

/// RoPE on q, then RoPE on k with the same parameters and positions, then the k scatter (reading
/// only that k) and the v scatter with the same slots, v computed before: four computing nodes in
/// a row (`seq`), none of them a graph output but the first.
fn rope_scatter(graph: &Graph, users: &[Vec<usize>], seq: [Option<usize>; 4]) -> Option<(NodeId, NodeId, NodeId)> {
    let [Some(i), Some(kr), Some(ksi), Some(vsi)] = seq else { return None };
    let nodes = graph.nodes();
    let (q, k, ks, vs) = (&nodes[i], &nodes[kr], &nodes[ksi], &nodes[vsi]);
    // Decode and small batches only: for a long prefill one dispatch over everything measured
    // slower on lavapipe than four (pp64: 1.5-1.8 ms against 1.2 ms), and dispatches are few there.
    if q.shape[0] > ROPE_SCATTER_MAX_T || !matches!(q.op, Op::Rope { .. }) || [kr, ksi, vsi].iter().any(|&j| graph.outputs().iter().any(|o| o.index() == j)) {
        return None;
    }
    let same_rope = k.op == q.op && k.inputs[1..] == q.inputs[1..] && k.shape[0] == q.shape[0];
    // rope.wgsl writes f32 and f16 caches (a q8_0 row's blocks take scatter_rows.wgsl).
    let scatters = ks.op == Op::ScatterRows && vs.op == Op::ScatterRows && ks.dtype == vs.dtype && matches!(ks.dtype, DType::F32 | DType::F16);
    if !(same_rope && scatters) {
        return None;
    }
    let k_only_scattered = ks.inputs[1].index() == kr && users[kr] == [ksi];
    let v = vs.inputs[1];
    let same_slots = ks.inputs[2] == vs.inputs[2];
    let same_width = graph.node(v).shape == k.shape && ks.shape[1..] == vs.shape[1..];
    if k_only_scattered && same_slots && same_width && v.index() < i && ks.inputs[0] != vs.inputs[0] {
        Some((id(kr), id(ksi), id(vsi)))
    } else {
        None
    }
}

#[cfg(test)]
#[path = "fuse_tests.rs"]
mod tests;
