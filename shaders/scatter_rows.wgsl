// scatter_rows.wgsl: `Op::ScatterRows`, dst[positions[t], :] = src[t, :] (writing keys and values
// into a KV-cache state), the cache kept in f32, f16 or q8_0. Matches backend/cpu/mod.rs
// `State::scatter`; a position outside dst's rows is skipped (the session never produces one;
// the CPU reports it as an error).
//
// The cache is bound as words (array<u32>), since an f16 or q8_0 row is not an array of f32, and
// each invocation writes whole words, so no two invocations share one:
// - main (f32): one invocation per value, its bits stored as they are.
// - main_f16: one invocation per pair of values, packed as two f16 (pack2x16float, nearest-even
//   as half::f16::from_f32; needs no shader-f16). cols is even (buffers.rs refuses others).
// - main_q8_0: one invocation per word of a quantized row; ggml's block_q8_0 (34 bytes: the f16
//   scale d, then 32 int8 q) as quantize_row_q8_0_ref makes it: d = amax / 127, id = 1/d (0 for
//   d = 0), q = round-half-away(x · id). A word straddles at most two blocks; the invocation
//   quantizes the bytes it holds. Rows are an even number of blocks (whole words; buffers.rs).
//
// Shapes: dst: [rows, cols] (a state param, written in place); src: [t, cols] f32; positions: [t] u32.
// Bindings: 0 uniform Params, 1 src, 2 positions, 3 dst.
// Dispatch: one invocation per value (f32), pair (f16) or row word × t (q8_0), on a 2-D grid of
// WG-wide workgroups (see add.wgsl).

override WG: u32 = 256u;

struct Params {
    n: u32,     // invocations: t * cols (f32), t * cols / 2 (f16), t * row words (q8_0)
    cols: u32,
    rows: u32,  // rows of dst
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<u32>;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let pos = positions[i / p.cols];
    if (pos >= p.rows) {
        return;
    }
    dst[pos * p.cols + i % p.cols] = bitcast<u32>(src[i]);
}

@compute @workgroup_size(WG)
fn main_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = flat_index(wid, nwg, lid);
    if (w >= p.n) {
        return;
    }
    let half_cols = p.cols / 2u;
    let t = w / half_cols;
    let pos = positions[t];
    if (pos >= p.rows) {
        return;
    }
    let c = (w % half_cols) * 2u;
    dst[(pos * p.cols + c) / 2u] = pack2x16float(vec2<f32>(src[t * p.cols + c], src[t * p.cols + c + 1u]));
}

// Block `b` of source row `t`: its scale d (as computed, before rounding to f16).
fn q8_scale(t: u32, b: u32) -> f32 {
    var amax = 0.0;
    for (var i = 0u; i < 32u; i++) {
        amax = max(amax, abs(src[t * p.cols + b * 32u + i]));
    }
    return amax / 127.0;
}

@compute @workgroup_size(WG)
fn main_q8_0(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = flat_index(wid, nwg, lid);
    if (w >= p.n) {
        return;
    }
    let row_words = p.cols / 32u * 34u / 4u;
    let t = w / row_words;
    let pos = positions[t];
    if (pos >= p.rows) {
        return;
    }
    let b0 = (w % row_words) * 4u;  // first byte of this word within the row
    var word = 0u;
    var blk = 0xffffffffu;
    var d = 0.0;
    var id = 0.0;
    for (var j = 0u; j < 4u; j++) {
        let b = b0 + j;
        let this_blk = b / 34u;
        if (this_blk != blk) {
            blk = this_blk;
            d = q8_scale(t, blk);
            id = select(0.0, 1.0 / d, d != 0.0);
        }
        let o = b % 34u;
        var bits: u32;
        if (o < 2u) {
            bits = (pack2x16float(vec2<f32>(d, 0.0)) >> (8u * o)) & 0xffu;
        } else {
            // round-half-away as roundf: trunc, then one step away from zero when the exact
            // remainder is at least a half.
            let v = src[t * p.cols + blk * 32u + o - 2u] * id;
            let r = trunc(v);
            let q = r + select(0.0, sign(v), abs(v - r) >= 0.5);
            bits = u32(i32(q)) & 0xffu;
        }
        word |= bits << (8u * j);
    }
    dst[pos * row_words + w % row_words] = word;
}
