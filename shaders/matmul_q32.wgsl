// matmul_q32.wgsl: the three ops that read a weight matrix, for the 32-weight block formats
// (FORMAT 0 = Q4_0, 1 = Q4_1, 2 = Q8_0, 3 = Q5_0, 4 = Q5_1), reading GGUF blocks straight from
// `array<u32>` storage and dequantizing in registers. WGSL has no #include, so the ops that share a
// dequantizer share its file; matmul_float.wgsl and matmul_kquant.wgsl are the same three entry
// points for the other formats.
//
// Block layouts (dtype.rs, ggml-common.h): Q4_0 = f16 d, 16 B nibbles (18 B; w = d·(q − 8));
// Q4_1 = f16 d, f16 m, 16 B nibbles (20 B; w = d·q + m); Q8_0 = f16 d, 32 × i8 (34 B; w = d·q);
// Q5_0 = f16 d, u32 qh, 16 B nibbles (22 B; w = d·(q − 16)); Q5_1 = f16 d, f16 m, u32 qh, 16 B
// nibbles (24 B; w = d·q + m). In a block, element j < 16 is the low nibble of byte j and j + 16
// the high one; in Q5 formats bit j of qh (just before the nibbles) is element j's fifth bit.
// Q4_0, Q5_0 and Q8_0 blocks are only 2-byte aligned, so bytes, words and halves are extracted at
// any even byte offset (`u32_at`); Q4_1 and Q5_1 rows are whole words. f16 is read with
// unpack2x16float (no shader-f16 needed). Matches quant/{q4_0,q4_1,q8_0,q5_0,q5_1}.rs
// `dequantize` exactly: every weight is the same f32 value.
//
// Entry points (all with weight page `w`: `n` rows of `row_bytes` bytes, k elements each; a weight
// larger than one storage binding is split into pages of rows, one dispatch per page, the page's
// first row being output column `col0`):
// - `matvec`: y[t, col0 + r] = Σ_k x[t, k]·w[r, k] for a few activation rows (decode, a small
//   batch: NT per workgroup on z, RPI · NT ≤ 16, each weight dequantized once for the NT rows).
//   Bindings: 0 Params, 1 w, 2 x (vec4), 3 y (and the fused operands below). Dispatch: ceil(n / (WG / TPR · RPI)) workgroups
//   (2-D grid, index = y * num_workgroups.x + x); TPR invocations share RPI rows, each striding
//   over their 8-weight units (every activation load serving RPI rows), then a shared-memory tree
//   sums them (no subgroup operations; skipped when TPR = 1).
// - `matvec_blocks`: the same product for CPU adapters, whole blocks per step, for any number of
//   tokens, NT at a time (see below).
// - `matmul`: y[t, col0 + r] = Σ_k x[t, k]·w[r, k] for T > 1 (prefill), tiled: a workgroup of 64
//   computes a 32 (tokens) × 32 (weight rows) tile, each invocation a 4 × 4 block of it, staging
//   32-wide slices of K of both operands in shared memory (weights dequantized once per tile).
//   Bindings: 0 Params, 1 w, 2 x (vec4), 3 y. Dispatch: (row tiles folded on x and z, token tiles on y).
// - `get_rows`: y[t, :] = w[ids[t] − col0, :] for the ids that fall in this page (embedding lookup).
//   Bindings: 0 Params, 1 w, 4 ids, 3 y. Dispatch: one invocation per 8 output elements, 2-D grid.
//
// Fusions (the wgpu plan's, `backend/wgpu/fuse.rs`; both matvec entry points), each computing
// exactly what the unfused ops compute, so that a decode step takes fewer dispatches:
// - ROUND = 1: x is the raw f32 activation, rounded here block by block as quantize_act.wgsl
//   (KIND 0) rounds it, instead of by a quantize_act dispatch before.
// - RESID = 1: y = x·wᵀ + r (binding 5): the residual `Op::Add` that follows the product.
// - NM = 2 or 3: the products of one activation with up to three weights of the same format and
//   width (q, k and v): w, w2, w3 (bindings 1, 6, 7; n, n1, n2 rows) are one stack of rows, written
//   to y, y2, y3 (bindings 3, 8, 9). Single-page weights only.
// - GATED = 1 (silu) or 2 (gelu-tanh): y = act(x·wᵀ) ⊙ (x·w2ᵀ), `Op::SiluMul`/`Op::GeluMul` of the
//   gate and up products (n rows each): an invocation's RPI rows are RPI/2 gate rows and the same
//   RPI/2 up rows.

override FORMAT: u32 = 1u;
override WG: u32 = 64u;
override TPR: u32 = 16u; // invocations sharing a row's dot product (a power of two, ≤ WG)
override RPI: u32 = 1u;  // rows per invocation (≤ MAX_RPI): each activation load serves RPI rows
override ROUND: u32 = 0u;
override RESID: u32 = 0u;
override NM: u32 = 1u;
override GATED: u32 = 0u;
const MAX_RPI: u32 = 32u;
const MAX_PARTIAL: u32 = 1024u; // RPI · WG when TPR > 1

struct Params {
    k: u32,          // elements per row
    n: u32,          // rows in this page
    t: u32,          // activation rows (tokens)
    row_bytes: u32,
    out_stride: u32, // elements per output row (all pages' rows together, or cols for get_rows)
    col0: u32,       // output column (matmul) or table row (get_rows) of the page's first row
    n0: u32,         // NM > 1: rows of w (n is then n0 + n1 + n2)
    n1: u32,         // NM > 1: rows of w2
    n2: u32,         // NM = 3: rows of w3
    g0: u32,         // matvec_blocks, NM > 1: workgroups of w's rows (each workgroup reads one weight)
    g1: u32,         // matvec_blocks, NM > 1: workgroups of w2's rows
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> ids: array<u32>;
@group(0) @binding(5) var<storage, read> r: array<f32>;
@group(0) @binding(6) var<storage, read> w2: array<u32>;
@group(0) @binding(7) var<storage, read> w3: array<u32>;
@group(0) @binding(8) var<storage, read_write> y2: array<f32>;
@group(0) @binding(9) var<storage, read_write> y3: array<f32>;

// Word i of weight m (w, w2 or w3).
fn word(m: u32, i: u32) -> u32 {
    if (NM == 1u || m == 0u) {
        return w[i];
    }
    if (m == 1u) {
        return w2[i];
    }
    return w3[i];
}

// Virtual row j of the invocation whose first virtual row is r0, as (weight, row in it), clamped
// to the last row (rows past the end are computed and not stored).
fn vrow(r0: u32, j: u32) -> vec2<u32> {
    if (GATED > 0u) {
        let h = RPI / 2u;
        let o = r0 / 2u + select(j, j - h, j >= h);
        return vec2<u32>(select(0u, 1u, j >= h), min(o, p.n - 1u));
    }
    let g = min(r0 + j, p.n - 1u);
    if (NM == 1u || g < p.n0) {
        return vec2<u32>(0u, g);
    }
    if (g < p.n0 + p.n1) {
        return vec2<u32>(1u, g - p.n0);
    }
    return vec2<u32>(2u, g - p.n0 - p.n1);
}

// Stores token t's sums of the invocation's RPI virtual rows from r0 (those below `limit`):
// acc[j] for plain rows (plus the residual), act(gate) · up for gated ones.
fn store(t: u32, r0: u32, limit: u32, acc: ptr<function, array<f32, MAX_RPI>>, a0: u32) {
    if (GATED > 0u) {
        let h = RPI / 2u;
        for (var j = 0u; j < h; j++) {
            let o = r0 / 2u + j;
            if (o < p.n) {
                let g = (*acc)[a0 + j];
                var a: f32;
                if (GATED == 1u) {
                    a = g / (1.0 + exp(-g));
                } else {
                    let inner = 0.7978846 * g * (1.0 + 0.044715 * g * g);
                    let e = exp(-2.0 * abs(inner));
                    a = 0.5 * g * (1.0 + sign(inner) * (1.0 - e) / (1.0 + e));
                }
                y[t * p.out_stride + p.col0 + o] = a * (*acc)[a0 + j + h];
            }
        }
        return;
    }
    for (var j = 0u; j < RPI; j++) {
        if (r0 + j < limit) {
            let mr = vrow(r0, j);
            if (mr.x == 0u) {
                let i = t * p.out_stride + p.col0 + mr.y;
                if (RESID == 1u) {
                    y[i] = (*acc)[a0 + j] + r[i];
                } else {
                    y[i] = (*acc)[a0 + j];
                }
            } else if (mr.x == 1u) {
                y2[t * p.n1 + mr.y] = (*acc)[a0 + j];
            } else {
                y3[t * p.n2 + mr.y] = (*acc)[a0 + j];
            }
        }
    }
}

// A block's 32 activations (8 vec4 from vec4 index i0), rounded to llama.cpp's Q8_0/Q8_1 block
// when ROUND = 1 exactly as quantize_act.wgsl KIND 0 does: d = amax / 127, x' = f16(d) ·
// round-half-away(x / d).
fn act_block(i0: u32) -> array<vec4<f32>, 8> {
    var xs: array<vec4<f32>, 8>;
    var amax = vec4<f32>(0.0);
    for (var i = 0u; i < 8u; i++) {
        xs[i] = x[i0 + i];
        amax = max(amax, abs(xs[i]));
    }
    if (ROUND == 1u) {
        let d = max(max(amax.x, amax.y), max(amax.z, amax.w)) / 127.0;
        let id = select(0.0, 1.0 / d, d != 0.0);
        let dh = unpack2x16float(pack2x16float(vec2<f32>(d, 0.0))).x;
        for (var i = 0u; i < 8u; i++) {
            let v = xs[i] * id;
            xs[i] = dh * sign(v) * floor(abs(v) + 0.5);
        }
    }
    return xs;
}

// The 32-bit little-endian word at any byte offset (the buffer is padded by one word).
fn u32_at(m: u32, off: u32) -> u32 {
    let i = off >> 2u;
    let s = (off & 3u) * 8u;
    if (s == 0u) {
        return word(m, i);
    }
    return (word(m, i) >> s) | (word(m, i + 1u) << (32u - s));
}

// An f16 at an even byte offset (never straddles a word).
fn f16_at(m: u32, off: u32) -> f32 {
    return unpack2x16float(word(m, off >> 2u) >> ((off & 2u) * 8u)).x;
}

fn nibbles(u: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(u) >> vec4<u32>(shift, shift + 8u, shift + 16u, shift + 24u)) & vec4<u32>(15u));
}

fn sbytes(u: u32) -> vec4<f32> {
    let s = bitcast<i32>(u);
    return vec4<f32>(f32(extractBits(s, 0u, 8u)), f32(extractBits(s, 8u, 8u)), f32(extractBits(s, 16u, 8u)), f32(extractBits(s, 24u, 8u)));
}

// Bits s .. s + 4 of a Q5 block's qh, each as 16 (a level's fifth bit) or 0.
fn fifth(h: u32, s: u32) -> vec4<f32> {
    return vec4<f32>(((vec4<u32>(h) >> vec4<u32>(s, s + 1u, s + 2u, s + 3u)) & vec4<u32>(1u)) * 16u);
}

// Bytes per block of FORMAT.
fn block_bytes() -> u32 {
    if (FORMAT == 0u) {
        return 18u;
    }
    if (FORMAT == 1u) {
        return 20u;
    }
    if (FORMAT == 2u) {
        return 34u;
    }
    return select(24u, 22u, FORMAT == 3u);
}

// Formats with an offset m (w = d·q + m), and the level zero of the others (w = d·(q − zero)).
fn has_min() -> bool {
    return FORMAT == 1u || FORMAT == 4u;
}

fn zero_level() -> f32 {
    return select(8.0, 16.0, FORMAT == 3u);
}

struct V8 {
    a: vec4<f32>,
    b: vec4<f32>,
}

// Weights k..k+8 (k a multiple of 8) of the row starting at byte `row` of weight m.
fn dequant8(m: u32, row: u32, k: u32) -> V8 {
    let blk = k / 32u;
    let q = (k % 32u) / 8u;
    let bb = block_bytes();
    let off = row + blk * bb;
    let d = f16_at(m, off);
    if (FORMAT == 2u) {
        let qo = off + 2u + q * 8u;
        return V8(sbytes(u32_at(m, qo)) * d, sbytes(u32_at(m, qo + 4u)) * d);
    }
    let qo = off + bb - 16u + (q & 1u) * 8u;
    let sh = (q >> 1u) * 4u;
    var lo = nibbles(u32_at(m, qo), sh);
    var hi = nibbles(u32_at(m, qo + 4u), sh);
    if (FORMAT >= 3u) {
        // qh is the word just before the nibbles; these 8 weights are elements 8q .. 8q + 8.
        let h = u32_at(m, off + bb - 20u) >> (q * 8u);
        lo += fifth(h, 0u);
        hi += fifth(h, 4u);
    }
    if (has_min()) {
        let mn = f16_at(m, off + 2u);
        return V8(lo * d + mn, hi * d + mn);
    }
    return V8((lo - zero_level()) * d, (hi - zero_level()) * d);
}

var<workgroup> partial: array<f32, MAX_PARTIAL>;

@compute @workgroup_size(WG)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid % TPR;
    let r0 = ((wid.y * nwg.x + wid.x) * (WG / TPR) + lid / TPR) * RPI;
    // Tokens t0 .. t0 + nt (a small batch): each weight is dequantized once for all of them.
    let t0 = wid.z * NT;
    let nt = min(NT, p.t - t0);
    let k4 = p.k / 4u;
    // Rows past the end repeat the last row (no divergent exit before the barriers).
    var ms: array<u32, MAX_RPI>;
    var rows: array<u32, MAX_RPI>;
    var acc: array<f32, MAX_RPI>; // [token][row]
    for (var j = 0u; j < RPI; j++) {
        let mr = vrow(r0, j);
        ms[j] = mr.x;
        rows[j] = mr.y * p.row_bytes;
    }
    for (var a = 0u; a < RPI * NT; a++) {
        acc[a] = 0.0;
    }
    let units = p.k / 8u;
    for (var u = lane; u < units; u += TPR) {
        for (var j = 0u; j < RPI; j++) {
            let v = dequant8(ms[j], rows[j], u * 8u);
            for (var tk = 0u; tk < nt; tk++) {
                let xo = (t0 + tk) * k4;
                var xa: vec4<f32>;
                var xb: vec4<f32>;
                if (ROUND == 1u) {
                    // The whole block, for its scale (4 lanes share it; the reloads hit the cache).
                    let xs = act_block(xo + 8u * (u / 4u));
                    xa = xs[2u * (u % 4u)];
                    xb = xs[2u * (u % 4u) + 1u];
                } else {
                    xa = x[xo + 2u * u];
                    xb = x[xo + 2u * u + 1u];
                }
                acc[tk * RPI + j] += dot(v.a, xa) + dot(v.b, xb);
            }
        }
    }
    if (TPR > 1u) {
        for (var a = 0u; a < RPI * NT; a++) {
            partial[a * WG + lid] = acc[a];
        }
        workgroupBarrier();
        for (var s = TPR / 2u; s > 0u; s >>= 1u) {
            if (lane < s) {
                for (var a = 0u; a < RPI * NT; a++) {
                    partial[a * WG + lid] += partial[a * WG + lid + s];
                }
            }
            workgroupBarrier();
        }
        for (var a = 0u; a < RPI * NT; a++) {
            acc[a] = partial[a * WG + lid];
        }
    }
    if (lane == 0u) {
        for (var tk = 0u; tk < nt; tk++) {
            store(t0 + tk, r0, p.n, &acc, tk * RPI);
        }
    }
}

// One block's share of a row's dot product, llama.cpp's way: the block's words `wd` (from the
// word holding its byte `off`), a token's 32 activations `xs` and their sum `sxs`.
fn block_dot(wd: ptr<function, array<u32, MAX_WORDS>>, xs: ptr<function, array<vec4<f32>, 8>>, sxs: f32, off: u32) -> f32 {
    let a0 = select(0u, 1u, FORMAT == 3u);
    // `mid`: the block starts at byte 2 of word w0 (blocks start at even bytes).
    let mid = (off & 2u) != 0u;
    var s = vec4<f32>(0.0);
    var d: f32;
    if (FORMAT == 2u) {
        d = unpack2x16float(select((*wd)[0], (*wd)[0] >> 16u, mid)).x;
        for (var i = 0u; i < 8u; i++) {
            let qw = select(((*wd)[i] >> 16u) | ((*wd)[i + 1u] << 16u), (*wd)[i + 1u], mid);
            s += sbytes(qw) * (*xs)[i];
        }
        return d * (s.x + s.y + s.z + s.w);
    } else {
        var m = 0.0;
        var qh = 0u;
        if (has_min()) {
            // Q4_1 and Q5_1 rows are whole words: d and m are word 0, Q5_1's qh word 1.
            let dm = unpack2x16float((*wd)[0]);
            d = dm.x;
            m = dm.y;
            qh = (*wd)[1];
        } else {
            d = unpack2x16float(select((*wd)[0], (*wd)[0] >> 16u, mid)).x;
            qh = select(((*wd)[0] >> 16u) | ((*wd)[1] << 16u), (*wd)[1], mid);
        }
        for (var i = 0u; i < 4u; i++) {
            var qw: u32;
            if (FORMAT == 1u) {
                qw = (*wd)[i + 1u];
            } else if (FORMAT == 4u) {
                qw = (*wd)[i + 2u];
            } else {
                let a = i + a0;
                qw = select(((*wd)[a] >> 16u) | ((*wd)[a + 1u] << 16u), (*wd)[a + 1u], mid);
            }
            var lo = nibbles(qw, 0u);
            var hi = nibbles(qw, 4u);
            if (FORMAT >= 3u) {
                lo += fifth(qh, 4u * i);
                hi += fifth(qh, 16u + 4u * i);
            }
            s += lo * (*xs)[i] + hi * (*xs)[i + 4u];
        }
        let sq = s.x + s.y + s.z + s.w;
        if (has_min()) {
            return d * sq + m * sxs;
        } else {
            return d * (sq - zero_level() * sxs);
        }
    }
}

// `matvec_blocks` (CPU adapters such as lavapipe, which run each workgroup on one thread, 8
// invocations per SIMD vector, and turn every storage load into a loop over the 8 lanes): one
// invocation per RPI rows and NT tokens, walking whole blocks so that each load serves as much as
// it can: each token's 32 activations of a block (8 vec4) are loaded once for RPI rows, and each
// row's block is read as aligned words (the block's bytes, from the word holding its first byte:
// 5 words for Q4_0 and Q4_1, 6 for Q5_0 and Q5_1, 9 for Q8_0; for a block starting mid-word its
// halves are realigned with selects, not branches). Per block it forms llama.cpp's sums d·Σq·x
// (+ m·Σx for Q4_1 and Q5_1, − 8·d·Σx for Q4_0, − 16·d·Σx for Q5_0). NT > 1 serves a batch of
// decoding sequences (and prefill): the tokens are taken one after another by the same
// invocation, while its rows are still in cache. Private arrays stay small (RPI sums, one token's
// activations), since lavapipe keeps larger ones in memory (an invocation with [NT × 8]
// activations ran 3.5× slower even at NT = 1).
// Dispatch: (ceil(n / (WG · RPI)) workgroups of WG on a 2-D grid, ceil(t / NT) on z). No shared
// memory, no barrier.
const MAX_WORDS: u32 = 9u;
override NT: u32 = 1u;

@compute @workgroup_size(WG)
fn matvec_blocks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // A stack's weight is chosen per workgroup (g0, g1), so that CPU adapters, which run both
    // sides of a branch that differs between invocations, load from one weight only.
    let gi = wid.y * nwg.x + wid.x;
    var m = 0u;
    var base = 0u;
    var n_m = p.n;
    var lg = gi;
    if (NM > 1u && GATED == 0u) {
        n_m = p.n0;
        if (gi >= p.g0 + p.g1) {
            m = 2u;
            lg = gi - p.g0 - p.g1;
            base = p.n0 + p.n1;
            n_m = p.n2;
        } else if (gi >= p.g0) {
            m = 1u;
            lg = gi - p.g0;
            base = p.n0;
            n_m = p.n1;
        }
    }
    let r0 = base + (lg * WG + lid) * RPI;
    let t0 = wid.z * NT;
    let nb = p.k / 32u;
    let bb = block_bytes();
    let nw = select(select(5u, 6u, FORMAT >= 3u), 9u, FORMAT == 2u);
    // Q4_0 and Q5_0 blocks may start mid-word: their nibbles start at word `a0` of the block
    // realigned to its byte 2 (Q5_0's qh being word 0 of that view).
    let a0 = select(0u, 1u, FORMAT == 3u);
    var acc: array<f32, MAX_RPI>;
    var wd: array<u32, MAX_WORDS>;
    // Token by token: the RPI rows' blocks (a few KiB) stay in the CPU's cache after the first
    // token, so the NT tokens after it cost arithmetic, not memory traffic.
    for (var t = t0; t < min(t0 + NT, p.t); t++) {
        let xrow = t * (p.k / 4u);
        for (var j = 0u; j < RPI; j++) {
            acc[j] = 0.0;
        }
        for (var b = 0u; b < nb; b++) {
            var xs = act_block(xrow + 8u * b);
            var sx = vec4<f32>(0.0);
            for (var i = 0u; i < 8u; i++) {
                sx += xs[i];
            }
            let sxs = sx.x + sx.y + sx.z + sx.w;
            // The weight is chosen outside the loops over rows (a CPU adapter runs a loop whose
            // invocations are all inactive zero times, but both sides of any branch).
            if (GATED > 0u) {
                // Gate rows from w, then the same up rows from w2.
                let h = RPI / 2u;
                for (var j = 0u; j < h; j++) {
                    let off = min(r0 / 2u + j, p.n - 1u) * p.row_bytes + b * bb;
                    for (var i = 0u; i < nw; i++) {
                        wd[i] = w[(off >> 2u) + i];
                    }
                    acc[j] += block_dot(&wd, &xs, sxs, off);
                }
                for (var j = h; j < RPI; j++) {
                    let off = min(r0 / 2u + j - h, p.n - 1u) * p.row_bytes + b * bb;
                    for (var i = 0u; i < nw; i++) {
                        wd[i] = w2[(off >> 2u) + i];
                    }
                    acc[j] += block_dot(&wd, &xs, sxs, off);
                }
            } else if (NM == 1u || m == 0u) {
                for (var j = 0u; j < RPI; j++) {
                    let off = (min(r0 + j, base + n_m - 1u) - base) * p.row_bytes + b * bb;
                    for (var i = 0u; i < nw; i++) {
                        wd[i] = w[(off >> 2u) + i];
                    }
                    acc[j] += block_dot(&wd, &xs, sxs, off);
                }
            } else if (m == 1u) {
                for (var j = 0u; j < RPI; j++) {
                    let off = (min(r0 + j, base + n_m - 1u) - base) * p.row_bytes + b * bb;
                    for (var i = 0u; i < nw; i++) {
                        wd[i] = w2[(off >> 2u) + i];
                    }
                    acc[j] += block_dot(&wd, &xs, sxs, off);
                }
            } else {
                for (var j = 0u; j < RPI; j++) {
                    let off = (min(r0 + j, base + n_m - 1u) - base) * p.row_bytes + b * bb;
                    for (var i = 0u; i < nw; i++) {
                        wd[i] = w3[(off >> 2u) + i];
                    }
                    acc[j] += block_dot(&wd, &xs, sxs, off);
                }
            }
        }
        store(t, r0, base + n_m, &acc, 0u);
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
                v = dequant8(0u, (n0 + r) * p.row_bytes, kc + sub * 8u);
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
    let v = dequant8(0u, (id - p.col0) * p.row_bytes, u * 8u);
    let o = t * p.k + u * 8u;
    for (var j = 0u; j < 4u; j++) {
        y[o + j] = v.a[j];
        y[o + 4u + j] = v.b[j];
    }
}
