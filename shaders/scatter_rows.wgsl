// scatter_rows.wgsl: `Op::ScatterRows`, dst[positions[t], :] = src[t, :] (writing keys and values
// into a KV-cache state). Matches backend/cpu/mod.rs `Op::ScatterRows`; a position outside dst's
// rows is skipped (the session never produces one; the CPU reports it as an error).
//
// Shapes: dst: [rows, cols] f32 (a state param, written in place); src: [t, cols] f32; positions: [t] u32.
// Bindings: 0 uniform Params, 1 src, 2 positions, 3 dst.
// Dispatch: one invocation per element of src on a 2-D grid of WG-wide workgroups (see add.wgsl).

override WG: u32 = 256u;

struct Params {
    n: u32,     // t * cols
    cols: u32,
    rows: u32,  // rows of dst
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let t = i / p.cols;
    let pos = positions[t];
    if (pos >= p.rows) {
        return;
    }
    dst[pos * p.cols + i % p.cols] = src[i];
}
