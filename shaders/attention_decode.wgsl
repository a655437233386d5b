// attention_decode.wgsl: `Op::Attention`, softmax(q·kᵀ · scale + mask) · v for one query row of
// one head per workgroup, with grouped-query heads (query head h reads kv head h / (n_head /
// n_kv_head)) and an online softmax (running maximum), so no [T, S] score matrix exists anywhere.
// Matches backend/cpu/attention.rs; under the causal mask query t sees keys 0..=positions[t],
// read here from the positions buffer on the device, so one plan serves every decode step; with a
// sliding window W > 0 only keys positions[t] + 1 - W ..= positions[t].
//
// With a paged layout (block_size > 0) k and v are a pool of blocks and key j of query row t is
// row block_table[t * table_cols + j / block_size] * block_size + j % block_size (paged attention,
// Kwon et al., 2023), so sequences at different positions share one batch.
//
// Keys and values are the cache as it is kept (override KV: 0 f32, 1 f16, 2 q8_0 as ggml's
// blocks of 32, a head being whole blocks), bound as words and read as f32 values (k_at, v_at);
// every product and sum is f32, as on the CPU.
//
// Shapes: q, out: [t, n_head*head_dim]; k, v: [s, n_kv_head*head_dim]; positions: [t] u32;
// block_table: [t, table_cols] u32.
// Bindings: 0 uniform Params, 1 q, 2 k, 3 v, 4 positions (a dummy for no mask), 5 out,
// 6 block_table (a dummy when contiguous).
// Dispatch: one workgroup of WG invocations per (query row, head): index = y * num_workgroups.x + x
// = row * n_head + head. Keys are taken WG at a time: invocation j scores key c0 + j into shared
// memory, every invocation then reads the chunk's maximum and probabilities from there, and
// invocation d accumulates output dimensions d, d + WG, ... (head_dim ≤ 4 * WG).

override WG: u32 = 64u;
override KV: u32 = 0u;
const MAX_WG: u32 = 256u;
const NEG_BIG: f32 = -3.0e38;

struct Params {
    t: u32,
    s: u32,
    n_head: u32,
    n_kv_head: u32,
    head_dim: u32,
    causal: u32,
    scale: f32,
    // 0: contiguous keys.
    block_size: u32,
    table_cols: u32,
    // 0: no sliding window.
    window: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<u32>;
@group(0) @binding(3) var<storage, read> v: array<u32>;
@group(0) @binding(4) var<storage, read> positions: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read> block_table: array<u32>;

var<workgroup> probs: array<f32, MAX_WG>;
var<workgroup> n_keys_shared: u32;
var<workgroup> first_key_shared: u32;

// q8_0 value i: byte 2 + i % 32 of block i / 32 (34 bytes from the buffer's start) times the
// block's f16 scale (at an even byte, so never split across words). `word` holds the byte,
// `scale_word` the scale.
fn q8_word(i: u32) -> u32 {
    return ((i / 32u) * 34u + 2u + i % 32u) / 4u;
}

fn q8_scale_word(i: u32) -> u32 {
    return (i / 32u) * 34u / 4u;
}

fn q8_value(word: u32, scale_word: u32, i: u32) -> f32 {
    let b = (i / 32u) * 34u + 2u + i % 32u;
    let q = f32((i32(word >> ((b & 3u) * 8u)) << 24u) >> 24u);
    let d = unpack2x16float(scale_word >> ((((i / 32u) * 34u) & 2u) * 8u)).x;
    return d * q;
}

// Value i of the keys and of the values (separate bindings, so each has its reader).
fn k_at(i: u32) -> f32 {
    if (KV == 1u) {
        return unpack2x16float(k[i / 2u])[i & 1u];
    } else if (KV == 2u) {
        return q8_value(k[q8_word(i)], k[q8_scale_word(i)], i);
    }
    return bitcast<f32>(k[i]);
}

fn v_at(i: u32) -> f32 {
    if (KV == 1u) {
        return unpack2x16float(v[i / 2u])[i & 1u];
    } else if (KV == 2u) {
        return q8_value(v[q8_word(i)], v[q8_scale_word(i)], i);
    }
    return bitcast<f32>(v[i]);
}

// The row of k and v that holds key j of query row `row`.
fn key_row(row: u32, j: u32) -> u32 {
    if (p.block_size == 0u) {
        return j;
    }
    return block_table[row * p.table_cols + j / p.block_size] * p.block_size + j % p.block_size;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let idx = wid.y * nwg.x + wid.x;
    let live = idx < p.t * p.n_head;
    let row = min(idx / p.n_head, p.t - 1u);
    let h = idx % p.n_head;
    let d = p.head_dim;
    let kvh = h / (p.n_head / p.n_kv_head);
    let q_base = (row * p.n_head + h) * d;
    let kv_stride = p.n_kv_head * d;
    if (lid == 0u) {
        var cap = p.s;
        if (p.block_size > 0u) {
            cap = p.table_cols * p.block_size;
        }
        var n = cap;
        if (p.causal == 1u) {
            n = min(positions[row] + 1u, cap);
        }
        n_keys_shared = select(0u, n, live);
        var first = 0u;
        if (p.causal == 1u && p.window > 0u && n > p.window) {
            first = n - p.window;
        }
        first_key_shared = first;
    }
    // The key count comes from device memory; loading it through workgroupUniformLoad makes the
    // loop bound (and so the barriers inside it) uniform across the workgroup.
    let n_keys = workgroupUniformLoad(&n_keys_shared);
    let first_key = workgroupUniformLoad(&first_key_shared);

    var m = NEG_BIG;
    var l = 0.0;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var c0 = first_key; c0 < n_keys; c0 += WG) {
        let j = c0 + lid;
        var sc = NEG_BIG;
        if (j < n_keys) {
            let k_base = key_row(row, j) * kv_stride + kvh * d;
            var dot = 0.0;
            for (var i = 0u; i < d; i++) {
                dot += q[q_base + i] * k_at(k_base + i);
            }
            sc = dot * p.scale;
        }
        probs[lid] = sc;
        workgroupBarrier();
        var cmax = NEG_BIG;
        for (var jj = 0u; jj < WG; jj++) {
            cmax = max(cmax, probs[jj]);
        }
        let m_new = max(m, cmax);
        let correction = exp(m - m_new);
        workgroupBarrier();
        probs[lid] = select(0.0, exp(sc - m_new), j < n_keys);
        workgroupBarrier();
        let n_here = min(WG, n_keys - c0);
        var psum = 0.0;
        for (var jj = 0u; jj < n_here; jj++) {
            psum += probs[jj];
        }
        // Value rows of this chunk: contiguous keys are in one run; paged keys change block at
        // most every block_size keys, so look the row up per key (a table read is cheap next to
        // head_dim multiply-adds).
        l = l * correction + psum;
        for (var r = 0u; r < 4u; r++) {
            let dd = lid + r * WG;
            if (dd < d) {
                var a = acc[r] * correction;
                for (var jj = 0u; jj < n_here; jj++) {
                    a += probs[jj] * v_at(key_row(row, c0 + jj) * kv_stride + kvh * d + dd);
                }
                acc[r] = a;
            }
        }
        m = m_new;
        workgroupBarrier();
    }
    if (!live) {
        return;
    }
    let inv = select(0.0, 1.0 / l, l > 0.0);
    for (var r = 0u; r < 4u; r++) {
        let dd = lid + r * WG;
        if (dd < d) {
            out[q_base + dd] = acc[r] * inv;
        }
    }
}
