// matmul_float.wgsl: the three ops that read a weight matrix, for plain float weights
// (FORMAT 0 = F32, 1 = F16, 2 = BF16), f32 arithmetic throughout (no shader-f16: f16 is widened
// with unpack2x16float, bf16 by a 16-bit shift). Same entry points, bindings, dispatch geometry and
// tiling as matmul_q32.wgsl (see its header); here K may be any length, so `dequant8` returns 0
// past the row's end, and x is read as scalars (rows need not be 16-byte aligned).
// Matches quant/float.rs `dequantize` exactly.

override FORMAT: u32 = 0u;
override WG: u32 = 64u;
override TPR: u32 = 16u; // invocations sharing a row's dot product (a power of two, ≤ WG)
override RPI: u32 = 1u;  // rows per invocation (≤ MAX_RPI): each activation load serves RPI rows
const MAX_RPI: u32 = 32u;
const MAX_PARTIAL: u32 = 1024u; // RPI · WG when TPR > 1

struct Params {
    k: u32,          // elements per row
    n: u32,          // rows in this page
    t: u32,          // activation rows (tokens)
    row_bytes: u32,
    out_stride: u32, // elements per output row (all pages' rows together, or cols for get_rows)
    col0: u32,       // output column (matmul) or table row (get_rows) of the page's first row
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> ids: array<u32>;

// The 32-bit little-endian word at any byte offset (the buffer is padded by one word).
fn u32_at(off: u32) -> u32 {
    let i = off >> 2u;
    let s = (off & 3u) * 8u;
    if (s == 0u) {
        return w[i];
    }
    return (w[i] >> s) | (w[i + 1u] << (32u - s));
}

// An f16 at an even byte offset (never straddles a word).
fn f16_at(off: u32) -> f32 {
    return unpack2x16float(w[off >> 2u] >> ((off & 2u) * 8u)).x;
}

struct V8 {
    a: vec4<f32>,
    b: vec4<f32>,
}

fn weight(row: u32, k: u32) -> f32 {
    if (k >= p.k) {
        return 0.0;
    }
    if (FORMAT == 0u) {
        return bitcast<f32>(u32_at(row + 4u * k));
    }
    let off = row + 2u * k;
    let half = (w[off >> 2u] >> ((off & 2u) * 8u)) & 0xffffu;
    if (FORMAT == 1u) {
        return unpack2x16float(half).x;
    }
    return bitcast<f32>(half << 16u);
}

// Weights k..k+8 (k a multiple of 8) of the row starting at byte `row`; 0 past the row's end.
fn dequant8(row: u32, k: u32) -> V8 {
    return V8(
        vec4<f32>(weight(row, k), weight(row, k + 1u), weight(row, k + 2u), weight(row, k + 3u)),
        vec4<f32>(weight(row, k + 4u), weight(row, k + 5u), weight(row, k + 6u), weight(row, k + 7u)),
    );
}

// Activations x[base + k .. base + k + 4], 0 past the row's end.
fn x4(base: u32, k: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        if (k + i < p.k) {
            v[i] = x[base + k + i];
        }
    }
    return v;
}

var<workgroup> partial: array<f32, MAX_PARTIAL>;

@compute @workgroup_size(WG)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid % TPR;
    let r0 = ((wid.y * nwg.x + wid.x) * (WG / TPR) + lid / TPR) * RPI;
    // Rows past the page's end repeat its last row (no divergent exit before the barriers).
    var rows: array<u32, MAX_RPI>;
    var acc: array<f32, MAX_RPI>;
    for (var j = 0u; j < RPI; j++) {
        rows[j] = min(r0 + j, p.n - 1u) * p.row_bytes;
        acc[j] = 0.0;
    }
    let units = (p.k + 7u) / 8u;
    for (var u = lane; u < units; u += TPR) {
        let xa = x4(0u, 8u * u);
        let xb = x4(0u, 8u * u + 4u);
        for (var j = 0u; j < RPI; j++) {
            let v = dequant8(rows[j], u * 8u);
            acc[j] += dot(v.a, xa) + dot(v.b, xb);
        }
    }
    if (TPR > 1u) {
        for (var j = 0u; j < RPI; j++) {
            partial[j * WG + lid] = acc[j];
        }
        workgroupBarrier();
        for (var s = TPR / 2u; s > 0u; s >>= 1u) {
            if (lane < s) {
                for (var j = 0u; j < RPI; j++) {
                    partial[j * WG + lid] += partial[j * WG + lid + s];
                }
            }
            workgroupBarrier();
        }
        for (var j = 0u; j < RPI; j++) {
            acc[j] = partial[j * WG + lid];
        }
    }
    if (lane == 0u) {
        for (var j = 0u; j < RPI; j++) {
            if (r0 + j < p.n) {
                y[p.col0 + r0 + j] = acc[j];
            }
        }
    }
}

const TILE: u32 = 32u;
var<workgroup> ws: array<vec4<f32>, 256>; // [32 weight rows][8 vec4]
var<workgroup> xs: array<vec4<f32>, 256>; // [32 tokens][8 vec4]

@compute @workgroup_size(64)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n0 = (wid.z * nwg.x + wid.x) * TILE;
    let t0 = wid.y * TILE;
    let tx = lid % 8u; // weight rows tx, tx + 8, tx + 16, tx + 24
    let ty = lid / 8u; // tokens ty, ty + 8, ...
    var acc: array<vec4<f32>, 4>;
    for (var kc = 0u; kc < p.k; kc += TILE) {
        for (var i = 0u; i < 2u; i++) {
            let u = lid + i * 64u;
            let r = u / 4u;
            let sub = u % 4u;
            var v = V8(vec4<f32>(0.0), vec4<f32>(0.0));
            if (n0 + r < p.n) {
                v = dequant8((n0 + r) * p.row_bytes, kc + sub * 8u);
            }
            ws[r * 8u + sub * 2u] = v.a;
            ws[r * 8u + sub * 2u + 1u] = v.b;
        }
        for (var i = 0u; i < 4u; i++) {
            let u = lid + i * 64u;
            let tt = u / 8u;
            let c = u % 8u;
            var xv = vec4<f32>(0.0);
            if (t0 + tt < p.t) {
                xv = x4((t0 + tt) * p.k, kc + 4u * c);
            }
            xs[u] = xv;
        }
        workgroupBarrier();
        for (var c = 0u; c < 8u; c++) {
            let w0 = ws[tx * 8u + c];
            let w1 = ws[(tx + 8u) * 8u + c];
            let w2 = ws[(tx + 16u) * 8u + c];
            let w3 = ws[(tx + 24u) * 8u + c];
            for (var j = 0u; j < 4u; j++) {
                let xv = xs[(ty + 8u * j) * 8u + c];
                acc[j] += vec4<f32>(dot(xv, w0), dot(xv, w1), dot(xv, w2), dot(xv, w3));
            }
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let t = t0 + ty + 8u * j;
        if (t < p.t) {
            for (var i = 0u; i < 4u; i++) {
                let r = n0 + tx + 8u * i;
                if (r < p.n) {
                    y[t * p.out_stride + p.col0 + r] = acc[j][i];
                }
            }
        }
    }
}

@compute @workgroup_size(WG)
fn get_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let units = (p.k + 7u) / 8u;
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= p.t * units) {
        return;
    }
    let t = i / units;
    let u = i % units;
    let id = ids[t];
    if (id < p.col0 || id >= p.col0 + p.n) {
        return;
    }
    let v = dequant8((id - p.col0) * p.row_bytes, u * 8u);
    let o = t * p.k + u * 8u;
    for (var j = 0u; j < 4u; j++) {
        if (u * 8u + j < p.k) {
            y[o + j] = v.a[j];
        }
        if (u * 8u + 4u + j < p.k) {
            y[o + 4u + j] = v.b[j];
        }
    }
}
