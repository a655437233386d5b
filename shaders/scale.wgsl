// scale.wgsl: `Op::Scale`: out = x · factor (e.g. Gemma's embedding scale √n_embd). Matches
// backend/cpu/elementwise.rs `scale`.
//
// Shapes: x, out: [n] f32 (flattened).
// Bindings: 0 uniform Params, 1 x, 2 out.
// Dispatch: one invocation per element on a 2-D grid of WG-wide workgroups (see add.wgsl).

override WG: u32 = 256u;

struct Params {
    n: u32,
    factor: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    out[i] = x[i] * p.factor;
}
