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
