// rms_norm.wgsl: `Op::RmsNorm`, out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * w.
// Matches backend/cpu/rms_norm.rs (which sums in f64; here the sum is f32 over WG partial sums,
// a tree that keeps the error near log2(cols) ulps instead of cols ulps).
//
// Shapes: x, out: [rows, cols] f32; w: [cols] f32.
// Bindings: 0 uniform Params, 1 x, 2 w, 3 out.
// Dispatch: one workgroup of WG invocations per row (2-D grid: row = y * num_workgroups.x + x).
// Each invocation sums the squares of elements lid, lid + WG, ... (coalesced), a shared-memory
// tree adds the WG partial sums, then every invocation scales its own elements.

override WG: u32 = 64u;
const MAX_WG: u32 = 1024u;

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, MAX_WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    let base = row * p.cols;
    var sum = 0.0;
    if (row < p.rows) {
        for (var c = lid; c < p.cols; c += WG) {
            let v = x[base + c];
            sum += v * v;
        }
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if (row >= p.rows) {
        return;
    }
    let scale = 1.0 / sqrt(partial[0] / f32(p.cols) + p.eps);
    for (var c = lid; c < p.cols; c += WG) {
        out[base + c] = x[base + c] * scale * w[c];
    }
}
