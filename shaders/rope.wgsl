// rope.wgsl: `Op::Rope`, rotary position embedding (Su et al., 2021) over every head of every row.
// Matches backend/cpu/rope.rs: for pair i < n_rot/2 of a head, θ_base = pos · theta_scale^i, computed
// by repeated multiplication in f32 as ggml does (theta_scale = base^(-2/n_rot), computed on the
// host exactly as the reference does), θ = freq_scale · (θ_base / factors[i]) (factors only when
// has_factors = 1: Llama 3.1's per-frequency scaling; freq_scale: linear interpolation), and the pair (a, b) becomes (a cosθ − b sinθ, a sinθ + b cosθ).
// `neox` 0 (Normal) pairs elements (2i, 2i+1); 1 (NeoX) pairs (i, i + n_rot/2). Elements at or
// past n_rot pass through. Out of place: x is not modified.
//
// Shapes: x, out: [rows, cols] f32 with cols = heads * head_dim; positions: [rows] u32;
// factors: [n_rot/2] f32.
// Bindings: 0 uniform Params, 1 x, 2 positions, 3 out, 4 factors (a dummy when has_factors = 0).
// Dispatch: one invocation per element on a 2-D grid of WG-wide workgroups (see add.wgsl); each
// reads its partner element too, so the two halves of a pair are written by two invocations.

override WG: u32 = 256u;

struct Params {
    n: u32,          // rows * cols
    cols: u32,
    head_dim: u32,
    n_rot: u32,
    neox: u32,       // 0 = Normal (adjacent pairs), 1 = NeoX (halves)
    theta_scale: f32,
    freq_scale: f32,
    has_factors: u32,
    nk: u32,         // rope_scatter: elements of k (and of v)
    k_cols: u32,     // rope_scatter: columns of k, v and the caches
    cache_rows: u32, // rope_scatter: rows of the caches
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> factors: array<f32>;

// (sin t, cos t) to ~1e-7 for the angles RoPE meets (t ≥ 0, up to a few thousand). WGSL's own
// sin/cos need only an absolute error of 2^-11 (Vulkan's precision rules), and SwiftShader (the
// browser test's WebGPU) is that coarse: ~2e-4 at every angle, enough to move logits by ~0.3.
// So: t = k·π/2 + r with π/2 in two parts (k·1.5703125 is exact; the small second part's product
// rounds by far less than 1e-7), |r| ≤ π/4, then Taylor polynomials to r⁹ and r¹⁰.
fn sin_cos(t: f32) -> vec2<f32> {
    let k = round(t * 0.63661975);
    let r = (t - k * 1.5703125) - k * 4.8382679e-4;
    let r2 = r * r;
    let s = r * (1.0 + r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0)))));
    let c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40320.0 + r2 * (-1.0 / 3628800.0)))));
    switch (u32(k) & 3u) {
        case 0u: { return vec2<f32>(s, c); }
        case 1u: { return vec2<f32>(c, -s); }
        case 2u: { return vec2<f32>(-s, -c); }
        default: { return vec2<f32>(-c, s); }
    }
}

// Element j of a head (j < n_rot) at position `pos`: (cos θ, sin θ), whether it is the first of
// its pair, and the signed distance to its partner.
struct Turn {
    c: f32,
    s: f32,
    first: bool,
    partner: i32,
}

fn turn(pos: u32, j: u32) -> Turn {
    let half = p.n_rot / 2u;
    var i: u32;
    var first: bool;
    var partner: i32;
    if (p.neox == 0u) {
        i = j / 2u;
        first = (j & 1u) == 0u;
        partner = select(-1, 1, first);
    } else {
        first = j < half;
        i = select(j - half, j, first);
        partner = select(-i32(half), i32(half), first);
    }
    var theta_base = f32(pos);
    for (var k = 0u; k < i; k++) {
        theta_base *= p.theta_scale;
    }
    var ff = 1.0;
    if (p.has_factors == 1u) {
        ff = factors[i];
    }
    let theta = p.freq_scale * (theta_base / ff);
    let sc = sin_cos(theta);
    return Turn(sc.y, sc.x, first, partner);
}

// The rotated value from an element `a` and its partner `b`.
fn rotate(t: Turn, a: f32, b: f32) -> f32 {
    if (t.first) {
        return a * t.c - b * t.s;
    }
    return b * t.s + a * t.c;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = (wid.y * nwg.x + wid.x) * WG + lid;
    if (e >= p.n) {
        return;
    }
    let row = e / p.cols;
    let j = (e % p.cols) % p.head_dim;
    if (j >= p.n_rot) {
        out[e] = x[e];
        return;
    }
    let t = turn(positions[row], j);
    out[e] = rotate(t, x[e], x[u32(i32(e) + t.partner)]);
}

// `rope_scatter`: the wgpu plan's fusion (`backend/wgpu/fuse.rs`) of RoPE on q, RoPE on k, and
// the two `Op::ScatterRows` that write k and v into the KV cache (scatter_rows.wgsl), in one
// dispatch over the n elements of q, then k, then v (whole workgroups each): q (x) → out as
// `main` does, rounded to f16 when ROUND_Q = 1 (the graph's RoundF16 of q, as round_f16.wgsl);
// k (binding 5) rotated the same way → k_cache[slots[row]] (binding 8); v (binding 6) →
// v_cache[slots[row]] (binding 9). The caches are words: f32 bits (CACHE_F16 = 0, one invocation
// per value) or pairs of f16 packed as scatter_rows.wgsl main_f16 packs them (CACHE_F16 = 1, one
// invocation per pair; k_cols is even). A slot outside the cache's rows is skipped, as
// scatter_rows does. Bindings: 0 Params, 1 q, 2 positions, 3 q out, 4 factors, 5 k, 6 v, 7 slots,
// 8 k cache, 9 v cache.
override CACHE_F16: u32 = 0u;
override ROUND_Q: u32 = 0u;

@group(0) @binding(5) var<storage, read> k_in: array<f32>;
@group(0) @binding(6) var<storage, read> v_in: array<f32>;
@group(0) @binding(7) var<storage, read> slots: array<u32>;
@group(0) @binding(8) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(9) var<storage, read_write> v_cache: array<u32>;

// Element i of k (flattened [t, k_cols]) rotated.
fn k_rotated(i: u32) -> f32 {
    let j = (i % p.k_cols) % p.head_dim;
    if (j >= p.n_rot) {
        return k_in[i];
    }
    let t = turn(positions[i / p.k_cols], j);
    return rotate(t, k_in[i], k_in[u32(i32(i) + t.partner)]);
}

@compute @workgroup_size(WG)
fn rope_scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // Workgroups take q, then k, then v (whole workgroups each), so that which tensor an element
    // belongs to is the same for a whole workgroup and its index is contiguous across it.
    let gi = wid.y * nwg.x + wid.x;
    let gq = (p.n + WG - 1u) / WG;
    let per = select(1u, 2u, CACHE_F16 == 1u);
    let nw = p.nk / per;
    let gk = (nw + WG - 1u) / WG;
    if (gi < gq) {
        let e = gi * WG + lid;
        if (e >= p.n) {
            return;
        }
        let j = (e % p.cols) % p.head_dim;
        var r = x[e];
        if (j < p.n_rot) {
            let t = turn(positions[e / p.cols], j);
            r = rotate(t, x[e], x[u32(i32(e) + t.partner)]);
        }
        if (ROUND_Q == 1u) {
            r = unpack2x16float(pack2x16float(vec2<f32>(r, 0.0))).x;
        }
        out[e] = r;
        return;
    }
    let is_k = gi < gq + gk;
    let w = (gi - select(gq + gk, gq, is_k)) * WG + lid;
    if (w >= nw) {
        return;
    }
    let i = w * per;
    let slot = slots[i / p.k_cols];
    if (slot >= p.cache_rows) {
        return;
    }
    let dst = slot * p.k_cols + i % p.k_cols;
    if (CACHE_F16 == 1u) {
        if (is_k) {
            k_cache[dst / 2u] = pack2x16float(vec2<f32>(k_rotated(i), k_rotated(i + 1u)));
        } else {
            v_cache[dst / 2u] = pack2x16float(vec2<f32>(v_in[i], v_in[i + 1u]));
        }
        return;
    }
    if (is_k) {
        k_cache[dst] = bitcast<u32>(k_rotated(i));
    } else {
        v_cache[dst] = bitcast<u32>(v_in[i]);
    }
}
