// gelu_mul.wgsl: `Op::GeluMul` (GeGLU gating, Shazeer 2020): out = gelu_tanh(gate) * up with
// gelu_tanh(g) = 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³))). Matches backend/cpu/elementwise.rs
// `gelu_mul`. tanh is computed here as sign(u)·(1 − e^(−2|u|)) / (1 + e^(−2|u|)): WGSL's tanh may
// be written as a ratio of exponentials that overflows to inf/inf (NaN) for |u| past ~44, and
// Gemma's gate activations reach the thousands.
//
// Shapes: gate, up, out: [n] f32 (flattened).
// Bindings: 0 uniform Params, 1 gate, 2 up, 3 out.
// Dispatch: one invocation per element on a 2-D grid of WG-wide workgroups (see add.wgsl).

override WG: u32 = 256u;

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn tanh_stable(u: f32) -> f32 {
    let e = exp(-2.0 * abs(u));
    return sign(u) * (1.0 - e) / (1.0 + e);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let g = gate[i];
    let inner = 0.7978846 * g * (1.0 + 0.044715 * g * g);
    out[i] = 0.5 * g * (1.0 + tanh_stable(inner)) * up[i];
}
