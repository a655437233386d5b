//! `Op::Rope` on the CPU: rotary position embedding (Su et al., 2021, "RoFormer").
//!
//! x: [T, heads*head_dim]; positions: [T]; in place. For pair i of a head (i < n_rot/2),
//! θ = freq_scale · pos · base^(-2i/n_rot) / factors[i] and the pair (a, b) becomes
//! (a cosθ − b sinθ, a sinθ + b cosθ). `Normal` pairs adjacent elements (2i, 2i+1); `NeoX` pairs
//! (i, i + n_rot/2). Matches ggml's `rope_f32` with `ext_factor = 0` (`rope_yarn`: θ_extrap =
//! θ_base / ff, θ = freq_scale · θ_extrap), including computing θ_base by repeated
//! multiplication in f32.

use crate::graph::RopeParams;

pub fn rope(x: &mut [f32], positions: &[u32], factors: Option<&[f32]>, r: RopeParams) {
    let RopeParams { layout, head_dim, n_rot, base, freq_scale } = r;
    let cols = x.len() / positions.len().max(1);
    let theta_scale = base.powf(-2.0 / n_rot as f32);
    let half = n_rot / 2;
    for (row, &pos) in x.chunks_mut(cols).zip(positions) {
        for head in row.chunks_mut(head_dim) {
            let mut theta_base = pos as f32;
            for i in 0..half {
                let ff = factors.map_or(1.0, |f| f[i]);
                let theta = freq_scale * (theta_base / ff);
                let (sin, cos) = theta.sin_cos();
                let (ia, ib) = match layout {
                    crate::graph::RopeLayout::Normal => (2 * i, 2 * i + 1),
                    crate::graph::RopeLayout::NeoX => (i, i + half),
                };
                let (a, b) = (head[ia], head[ib]);
                head[ia] = a * cos - b * sin;
                head[ib] = a * sin + b * cos;
                theta_base *= theta_scale;
            }
        }
    }
}
