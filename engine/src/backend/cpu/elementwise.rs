//! Elementwise ops on the CPU: `Op::Add` (with row broadcast for biases), `Op::Mul`,
//! `Op::SiluMul` (SwiGLU gating, Shazeer 2020: silu(g) · u with silu(g) = g / (1 + e^-g)),
//! `Op::GeluMul` (GeGLU gating with the tanh approximation of GELU, Hendrycks & Gimpel 2016),
//! `Op::Scale`.

pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    for (orow, arow) in out.chunks_mut(b.len()).zip(a.chunks(b.len())) {
        for ((o, &x), &y) in orow.iter_mut().zip(arow).zip(b) {
            *o = x + y;
        }
    }
}

pub fn mul(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = x * y;
    }
}

pub fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + (-g).exp()) * u;
    }
}

/// `gelu_tanh(g) · u`, gelu_tanh(g) = 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³))), in f32 as
/// ggml's `ggml_gelu_f32` (which llama.cpp may replace by an f16 table; that differs by < 1e-3).
pub fn gelu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = gelu_tanh(g) * u;
    }
}

pub fn gelu_tanh(g: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * g * (1.0 + (SQRT_2_OVER_PI * g * (1.0 + 0.044715 * g * g)).tanh())
}

/// Elements per task when [`gated_par`] splits a gating op across the pool.
const GATE_CHUNK: usize = 4096;

/// `gate(g, u, out)` (`silu_mul` or `gelu_mul`) in chunks across the pool's threads when there
/// are at least two chunks: each element's value is the same, only the thread differs. perf had
/// shown GELU's `tanhf` at ~9% of a Gemma 3 prefill, all of it on one thread.
pub fn gated_par(pool: &super::pool::Pool, gate: fn(&[f32], &[f32], &mut [f32]), g: &[f32], u: &[f32], out: &mut [f32]) {
    let n = out.len();
    assert!(g.len() == n && u.len() == n, "gating of {} and {} elements into {n}", g.len(), u.len());
    if n < 2 * GATE_CHUNK || pool.threads() < 2 {
        return gate(g, u, out);
    }
    let o = super::pool::SharedSlice::new(out);
    pool.run(n.div_ceil(GATE_CHUNK), &|c| {
        let r = c * GATE_CHUNK..((c + 1) * GATE_CHUNK).min(n);
        // SAFETY: task c alone writes chunk c.
        let dst = unsafe { o.slice(r.start, r.len()) };
        gate(&g[r.clone()], &u[r], dst);
    });
}

/// Rounds to the nearest f16 (ties to even), as ggml's `GGML_FP32_TO_FP16`.
pub fn round_f16(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = half::f16::from_f32(v).to_f32();
    }
}

pub fn scale(x: &[f32], factor: f32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v * factor;
    }
}

/// Index of the largest value of each row; the lowest index wins a tie.
pub fn argmax(x: &[f32], cols: usize, out: &mut [u32]) {
    for (row, o) in x.chunks(cols).zip(out.iter_mut()) {
        let mut best = 0;
        for (i, &v) in row.iter().enumerate() {
            if v > row[best] {
                best = i;
            }
        }
        *o = best as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Split across threads or not, every element is the serial op's, bit for bit, at sizes
    /// below, at and past the split with a ragged last chunk.
    #[test]
    fn gating_across_the_pool_equals_serial() {
        let pool = super::super::pool::Pool::new(2);
        for n in [5, 2 * GATE_CHUNK - 1, 2 * GATE_CHUNK, 5 * GATE_CHUNK + 123] {
            let g: Vec<f32> = (0..n).map(|i| ((i * 37 % 1001) as f32 - 500.0) / 61.0).collect();
            let u: Vec<f32> = (0..n).map(|i| ((i * 91 % 997) as f32 - 498.0) / 97.0).collect();
            for gate in [silu_mul as fn(&[f32], &[f32], &mut [f32]), gelu_mul] {
                let (mut serial, mut par) = (vec![0.0; n], vec![f32::NAN; n]);
                gate(&g, &u, &mut serial);
                gated_par(&pool, gate, &g, &u, &mut par);
                assert!(serial.iter().zip(&par).all(|(a, b)| a.to_bits() == b.to_bits()), "n = {n}");
            }
        }
    }
}
