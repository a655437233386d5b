// matmul_kquant.wgsl: the three ops that read a weight matrix, for the 256-weight K-quant formats
// (FORMAT 0 = Q4_K, 1 = Q5_K, 2 = Q6_K), reading GGUF super-blocks straight from `array<u32>`
// storage and dequantizing in registers. Same entry points, bindings, dispatch geometry and
// tiling as matmul_q32.wgsl (see its header); only `dequant8` differs.
//
// Layouts (dtype.rs, ggml-common.h):
// - Q4_K (144 B): f16 d, f16 dmin, 12 B of 6-bit scales/mins (`scale_min`, ggml get_scale_min_k4),
//   128 B nibbles; sub-block j (32 weights) of chunk c = j/2 is the low (j even) or high nibble of
//   bytes 16 + 32c ..; w = d·sc_j·q − dmin·m_j.
// - Q5_K (176 B): as Q4_K plus 32 B of high bits at byte 16 (bit j of byte l is the fifth bit of
//   weight l of sub-block j); nibbles at byte 48.
// - Q6_K (210 B, not 4-byte aligned): 128 B low nibbles, 64 B high 2-bit pairs, 16 × i8 scales,
//   f16 d at byte 208; w = d·sc·(q − 32); see quant/q6_k.rs for which nibble and bit pair.
// Matches quant/{q4_k,q5_k,q6_k}.rs `dequantize` exactly: every weight is the same f32 value.
// K must be a multiple of 256.

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
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
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

fn byte_at(off: u32) -> u32 {
    return (w[off >> 2u] >> ((off & 3u) * 8u)) & 0xffu;
}

fn nibbles(u: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(u) >> vec4<u32>(shift, shift + 8u, shift + 16u, shift + 24u)) & vec4<u32>(15u));
}

// Bit `bit` of each byte of u, as 0 or 1.
fn bits(u: u32, bit: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(u) >> vec4<u32>(bit, bit + 8u, bit + 16u, bit + 24u)) & vec4<u32>(1u));
}

// Two bits at `shift` of each byte of u.
fn pairs(u: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(u) >> vec4<u32>(shift, shift + 8u, shift + 16u, shift + 24u)) & vec4<u32>(3u));
}

// ggml get_scale_min_k4: the 6-bit scale and min of sub-block j from the 12 bytes at `s`.
fn scale_min(s: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(byte_at(s + j) & 63u), f32(byte_at(s + j + 4u) & 63u));
    }
    let sc = (byte_at(s + j + 4u) & 15u) | ((byte_at(s + j - 4u) >> 6u) << 4u);
    let m = (byte_at(s + j + 4u) >> 4u) | ((byte_at(s + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

struct V8 {
    a: vec4<f32>,
    b: vec4<f32>,
}

// Weights k..k+8 (k a multiple of 8) of the row starting at byte `row`.
fn dequant8(row: u32, k: u32) -> V8 {
    let blk = k / 256u;
    let e = k % 256u;
    if (FORMAT == 2u) {
        let off = row + blk * 210u;
        let h = e / 128u;
        let r = e % 128u;
        let qq = r / 32u;
        let l0 = r % 32u;
        let lo_off = off + 64u * h + l0 + (qq & 1u) * 32u;
        let hi_off = off + 128u + 32u * h + l0;
        let nsh = (qq >> 1u) * 4u;
        let qa = nibbles(u32_at(lo_off), nsh) + pairs(u32_at(hi_off), 2u * qq) * 16.0 - 32.0;
        let qb = nibbles(u32_at(lo_off + 4u), nsh) + pairs(u32_at(hi_off + 4u), 2u * qq) * 16.0 - 32.0;
        let sc = f32(extractBits(bitcast<i32>(byte_at(off + 192u + e / 16u)), 0u, 8u));
        let ds = f16_at(off + 208u) * sc;
        return V8(ds * qa, ds * qb);
    }
    let bb = select(144u, 176u, FORMAT == 1u);
    let off = row + blk * bb;
    let j = e / 32u;
    let l0 = e % 32u;
    let sm = scale_min(off + 4u, j);
    let d = f16_at(off) * sm.x;
    let m = f16_at(off + 2u) * sm.y;
    let q_off = off + bb - 128u + 32u * (j / 2u) + l0;
    let sh = (j & 1u) * 4u;
    var qa = nibbles(u32_at(q_off), sh);
    var qb = nibbles(u32_at(q_off + 4u), sh);
    if (FORMAT == 1u) {
        qa += bits(u32_at(off + 16u + l0), j) * 16.0;
        qb += bits(u32_at(off + 20u + l0), j) * 16.0;
    }
    return V8(d * qa - m, d * qb - m);
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
    let units = p.k / 8u;
    for (var u = lane; u < units; u += TPR) {
        let xa = x[2u * u];
        let xb = x[2u * u + 1u];
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
    let k4 = p.k / 4u;
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
                xv = x[(t0 + tt) * k4 + kc / 4u + c];
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
    let units = p.k / 8u;
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
        y[o + j] = v.a[j];
        y[o + 4u + j] = v.b[j];
    }
}
