// slice_rows.wgsl: `Op::SliceRows`, out = x[start..start+len, :] (a copy of contiguous rows).
// Matches backend/cpu/mod.rs `Op::SliceRows`.
//
// Shapes: x: [t, cols] f32; out: [len, cols] f32; n = len * cols, offset = start * cols.
// Bindings: 0 uniform Params, 1 x, 2 out.
// Dispatch: one invocation per output element on a 2-D grid of WG-wide workgroups (see add.wgsl).

override WG: u32 = 256u;

struct Params {
    n: u32,
    offset: u32,
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
    out[i] = x[p.offset + i];
}
