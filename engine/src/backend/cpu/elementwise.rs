//! Elementwise ops on the CPU: `Op::Add` (with row broadcast for biases), `Op::Mul`,
//! `Op::SiluMul` (SwiGLU gating, Shazeer 2020: silu(g) · u with silu(g) = g / (1 + e^-g)).

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
