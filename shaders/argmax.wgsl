// argmax.wgsl: `Op::Argmax`, the index of the largest element of each row, the lowest index
// winning a tie (NaN never wins). Matches backend/cpu/elementwise.rs `argmax`.
//
// Shapes: x: [rows, cols] f32; out: [rows] u32.
// Bindings: 0 uniform Params, 1 x, 2 out.
// Dispatch: one workgroup of WG invocations per row (2-D grid, see add.wgsl). Each invocation
// scans a strided subset of the row (index lid, lid + WG, ...) keeping the first maximum it sees,
// then a shared-memory tree keeps the larger value, or the lower index on equal values, so the
// result is the row's first maximum whatever the order of the partial scans.

override WG: u32 = 256u;
const MAX_WG: u32 = 1024u;

struct Params {
    rows: u32,
    cols: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> best_v: array<f32, MAX_WG>;
var<workgroup> best_i: array<u32, MAX_WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    var bv = -0x1.fffffep+127f; // -FLT_MAX, exactly: Tint rejects -3.4028235e38 as out of f32 range
    var bi = 0xffffffffu;
    if (row < p.rows) {
        let base = row * p.cols;
        for (var c = lid; c < p.cols; c += WG) {
            let v = x[base + c];
            if (v > bv || (bi == 0xffffffffu && v == bv)) {
                bv = v;
                bi = c;
            }
        }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            let ov = best_v[lid + s];
            let oi = best_i[lid + s];
            if (ov > best_v[lid] || (ov == best_v[lid] && oi < best_i[lid])) {
                best_v[lid] = ov;
                best_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u && row < p.rows) {
        // A row of only NaN (or -max floats) has no strict maximum: the reference answers 0.
        out[row] = select(best_i[0], 0u, best_i[0] == 0xffffffffu);
    }
}
