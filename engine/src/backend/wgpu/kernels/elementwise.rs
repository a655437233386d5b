//! `Op::Add`, `Op::Mul`, `Op::SiluMul`, `Op::GeluMul`, `Op::Scale`, `Op::RoundF16`, `Op::ScatterRows`, `Op::SliceRows`, `Op::Argmax`: one
//! invocation per element (256 per workgroup, 2-D grid), except argmax, one workgroup per row.
//! Shaders: add.wgsl, mul.wgsl, silu_mul.wgsl, gelu_mul.wgsl, scale.wgsl, round_f16.wgsl, scatter_rows.wgsl, slice_rows.wgsl, argmax.wgsl.

use super::{Buf, Cx, KernelKey, Step, grid};
use crate::dtype::DType;
use crate::graph::{Graph, Node, Op, rows_cols};

const WG: usize = 256;

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Steps for one of this module's ops; `ins` are the node's inputs' buffers in order.
pub(in super::super) fn build(cx: &Cx, g: &Graph, node: &Node, ins: &[Buf], out: Buf) -> Vec<Step> {
    let n = numel(&node.shape);
    let per_element = |shader: &'static str, uniforms: Vec<u32>, binds: Vec<(u32, Buf)>, n: usize| Step {
        kernel: KernelKey::new(shader, "main", &[("WG", WG as u32)]),
        uniforms,
        binds,
        groups: grid(n.div_ceil(WG), cx.max_groups),
    };
    match node.op {
        Op::Add => {
            let b_len = numel(&g.node(node.inputs[1]).shape);
            vec![per_element("add", vec![n as u32, b_len as u32], vec![(1, ins[0]), (2, ins[1]), (3, out)], n)]
        }
        Op::Mul => vec![per_element("mul", vec![n as u32], vec![(1, ins[0]), (2, ins[1]), (3, out)], n)],
        Op::SiluMul => vec![per_element("silu_mul", vec![n as u32], vec![(1, ins[0]), (2, ins[1]), (3, out)], n)],
        Op::GeluMul => vec![per_element("gelu_mul", vec![n as u32], vec![(1, ins[0]), (2, ins[1]), (3, out)], n)],
        Op::RoundF16 => vec![per_element("round_f16", vec![n as u32], vec![(1, ins[0]), (2, out)], n)],
        Op::Scale { factor } => vec![per_element("scale", vec![n as u32, factor.to_bits()], vec![(1, ins[0]), (2, out)], n)],
        Op::ScatterRows => {
            let (rows, cols) = rows_cols(&node.shape);
            let src_n = numel(&g.node(node.inputs[1]).shape);
            // One invocation per word written (see the shader); buffers.rs made f16 rows whole
            // pairs and q8_0 rows whole words.
            let (entry, n) = match node.dtype {
                DType::F16 => ("main_f16", src_n / 2),
                DType::Q8_0 => ("main_q8_0", src_n / cols.max(1) * (cols / 32 * 34 / 4)),
                _ => ("main", src_n),
            };
            // The node's buffer is the state itself (`out` == ins[0]): the write is in place.
            vec![Step {
                kernel: KernelKey::new("scatter_rows", entry, &[("WG", WG as u32)]),
                uniforms: vec![n as u32, cols as u32, rows as u32],
                binds: vec![(1, ins[1]), (2, ins[2]), (3, out)],
                groups: grid(n.div_ceil(WG), cx.max_groups),
            }]
        }
        Op::SliceRows { start, .. } => {
            let cols = node.shape[1];
            vec![per_element("slice_rows", vec![n as u32, (start * cols) as u32], vec![(1, ins[0]), (2, out)], n)]
        }
        Op::Argmax => {
            let (rows, cols) = rows_cols(&g.node(node.inputs[0]).shape);
            vec![Step {
                kernel: KernelKey::new("argmax", "main", &[("WG", WG as u32)]),
                uniforms: vec![rows as u32, cols as u32],
                binds: vec![(1, ins[0]), (2, out)],
                groups: grid(rows, cx.max_groups),
            }]
        }
        _ => unreachable!("elementwise::build called for {}", node.op.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Gpu1, rand_vec};
    use crate::backend::Backend;
    use crate::dtype::DType;
    use crate::graph::Graph;
    use crate::tensor::HostTensor;

    // Adds, products and copies are exact in f32, and exp differs between implementations by an
    // ulp or two: 1e-6 relative covers silu; argmax must agree exactly.
    #[test]
    fn wgpu_elementwise_match_cpu() {
        let Some(mut gpu) = Gpu1::new() else { return };
        for &(t, c) in &[(1usize, 1000usize), (7, 333), (3, 70001)] {
            let a = rand_vec(t * c, 1);
            let b = rand_vec(t * c, 2);
            let bias = rand_vec(c, 3);
            for which in ["add", "add_bias", "mul", "silu_mul", "gelu_mul", "scale", "round_f16", "slice", "argmax"] {
                let mut g = Graph::new();
                let x = g.input(&[t, c], DType::F32);
                let y_shape = if which == "add_bias" { vec![c] } else { vec![t, c] };
                let y = g.input(&y_shape, DType::F32);
                let o = match which {
                    "add" | "add_bias" => g.add(x, y),
                    "mul" => g.mul(x, y),
                    "silu_mul" => g.silu_mul(x, y),
                    "gelu_mul" => g.gelu_mul(x, y),
                    "scale" => g.scale(x, 25.298_221),
                    // Exact: pack2x16float rounds to nearest on lavapipe and SwiftShader.
                    "round_f16" => g.round_f16(x),
                    "slice" => g.slice_rows(x, t / 2, t - t / 2),
                    _ => g.argmax(x),
                }
                .unwrap();
                g.output(o);
                let second = if which == "add_bias" { HostTensor::from_f32(vec![c], &bias) } else { HostTensor::from_f32(vec![t, c], &b) };
                let inputs = vec![HostTensor::from_f32(vec![t, c], &a).unwrap(), second.unwrap()];
                gpu.check(&format!("{which} [{t}, {c}]"), &g, &inputs, 1e-6);
            }
        }
    }

    /// GELU's tanh saturates: gates in the thousands (Gemma's reach them) must give g·up and
    /// −0·up, not NaN from an overflowing exponential.
    #[test]
    fn wgpu_gelu_mul_saturates() {
        let Some(mut gpu) = Gpu1::new() else { return };
        let gate = [-5000.0f32, -60.0, -3.0, -0.01, 0.0, 0.01, 3.0, 60.0, 5000.0, 40000.0];
        let up = [1.5f32; 10];
        let mut g = Graph::new();
        let x = g.input(&[10], DType::F32);
        let y = g.input(&[10], DType::F32);
        let o = g.gelu_mul(x, y).unwrap();
        g.output(o);
        let inputs = [HostTensor::from_f32(vec![10], &gate).unwrap(), HostTensor::from_f32(vec![10], &up).unwrap()];
        gpu.check("gelu_mul saturation", &g, &inputs, 1e-6);
    }

    /// Into a cache of every KV type: f32 and f16 bit for bit; q8_0 too (its bytes compared
    /// whole), with ties, zero blocks and blocks whose largest value is negative among the rows.
    #[test]
    fn wgpu_scatter_rows_matches_cpu() {
        let Some(mut gpu) = Gpu1::new() else { return };
        for (dtype, c) in [(DType::F32, 70usize), (DType::F16, 70), (DType::Q8_0, 192)] {
            let (rows, t) = (37usize, 5usize);
            let state = crate::backend::ParamDesc { name: "cache".into(), shape: vec![rows, c], dtype, kind: crate::backend::ParamKind::State };
            let ids = gpu.create_param(&state, None);
            let mut g = Graph::new();
            let src = g.input(&[t, c], DType::F32);
            let pos = g.input(&[t], DType::U32);
            let dst = g.param(ids, &state);
            let o = g.scatter_rows(dst, src, pos).unwrap();
            g.output(o);
            let mut x = rand_vec(t * c, 4);
            // x · id landing on a half (127 / 254 · 127 = 63.5), a zero block, a negative maximum.
            x[..32].iter_mut().enumerate().for_each(|(i, v)| *v = if i == 0 { 254.0 } else if i == 1 { 127.0 } else { *v });
            x[c..c + 32].iter_mut().for_each(|v| *v = 0.0);
            x[2 * c] = -3.0;
            let inputs = vec![HostTensor::from_f32(vec![t, c], &x).unwrap(), HostTensor::from_u32(vec![t], &[3, 36, 0, 17, 18]).unwrap()];
            let want = gpu.cpu.execute(&g, &inputs).unwrap();
            let got = gpu.wgpu.execute(&g, &inputs).unwrap();
            assert_eq!(got[0].dtype, dtype);
            assert_eq!(got[0].as_bytes(), want[0].as_bytes(), "scatter_rows into {dtype}");
        }
    }
}
