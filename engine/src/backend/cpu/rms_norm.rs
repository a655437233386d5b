//! `Op::RmsNorm` on the CPU: `out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * w`.
//!
//! x: [T, C]; w: [C]; out: [T, C]. Matches ggml's `rms_norm` followed by `mul` (sum in f64 as ggml
//! does, scale in f32).

pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let c = w.len();
    for (xr, or) in x.chunks(c).zip(out.chunks_mut(c)) {
        let sum: f64 = xr.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let mean = (sum / c as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * scale * g;
        }
    }
}
