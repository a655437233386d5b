//! `Op::Rope` on the CPU: rotary position embedding (Su et al., 2021, "RoFormer").
//!
//! x: [T, heads*head_dim]; positions: [T]; in place. For pair i of a head (i < n_rot/2),
//! θ = pos · base^(-2i/n_rot) and the pair (a, b) becomes (a cosθ − b sinθ, a sinθ + b cosθ).
//! `Normal` pairs adjacent elements (2i, 2i+1); `NeoX` pairs (i, i + n_rot/2). Matches ggml's
//! `rope_f32`, including computing θ by repeated multiplication in f32.

use crate::graph::RopeLayout;

pub fn rope(x: &mut [f32], positions: &[u32], layout: RopeLayout, head_dim: usize, n_rot: usize, base: f32) {
    let cols = x.len() / positions.len().max(1);
    let theta_scale = base.powf(-2.0 / n_rot as f32);
    let half = n_rot / 2;
    for (row, &pos) in x.chunks_mut(cols).zip(positions) {
        for head in row.chunks_mut(head_dim) {
            let mut theta = pos as f32;
            for i in 0..half {
                let (sin, cos) = theta.sin_cos();
                let (ia, ib) = match layout {
                    RopeLayout::Normal => (2 * i, 2 * i + 1),
                    RopeLayout::NeoX => (i, i + half),
                };
                let (a, b) = (head[ia], head[ib]);
                head[ia] = a * cos - b * sin;
                head[ib] = a * sin + b * cos;
                theta *= theta_scale;
            }
        }
    }
}
