// add.wgsl: `Op::Add`, out = a + b, where b has a's shape or is one row broadcast over a's rows
// (a bias). Matches backend/cpu/elementwise.rs `add`.
//
// Shapes: a, out: [n] f32 (any row-major shape, flattened); b: [b_len] f32 with n % b_len == 0.
// Bindings: 0 uniform Params, 1 a, 2 b, 3 out.
// Dispatch: one invocation per element, WG per workgroup, workgroups laid out on a 2-D grid
// (x at most 65535) because n / WG can exceed one dimension's limit; the linear index is
// y * num_workgroups.x + x, and invocations past n return (the grid is rounded up).

override WG: u32 = 256u;

struct Params {
    n: u32,
    b_len: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    out[i] = a[i] + b[i % p.b_len];
}
