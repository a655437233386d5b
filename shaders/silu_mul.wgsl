// silu_mul.wgsl: `Op::SiluMul` (SwiGLU gating, Shazeer 2020): out = silu(gate) * up with
// silu(g) = g / (1 + e^-g). Matches backend/cpu/elementwise.rs `silu_mul`.
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

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let g = gate[i];
    out[i] = g / (1.0 + exp(-g)) * up[i];
}
