// quantize_act.wgsl: rounds an f32 activation row to the 8-bit block format llama.cpp converts
// activations to before a quantized matmul (its `vec_dot_type`), and writes the rounded values
// back as f32, so that the matmul kernels then compute what llama.cpp's integer dot products do
// (up to the order of f32 additions). Matches quant/q8_act.rs `quantize_act` followed by
// dequantization:
// - KIND 0, Q8_0 / Q8_1 (for Q4_0, Q8_0, Q4_1 weights), 32-element blocks: d = amax / 127,
//   q = round-half-away(x / d), x' = f16(d) · q.
// - KIND 1, Q8_K (for Q4_K, Q5_K, Q6_K weights), 256-element blocks: with `max` the element of
//   largest magnitude, iscale = −127 / max, q = min(round-half-even(iscale · x), 127),
//   x' = q · (1 / iscale).
//
// Shapes: x, out: [n] f32, n a multiple of the block length (rows are whole blocks).
// Bindings: 0 uniform Params, 1 x, 2 out.
// Dispatch: one invocation per block, WG per workgroup, 2-D grid (see add.wgsl).

override KIND: u32 = 0u;
override WG: u32 = 64u;

struct Params {
    blocks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = (wid.y * nwg.x + wid.x) * WG + lid;
    if (b >= p.blocks) {
        return;
    }
    let len = select(32u, 256u, KIND == 1u);
    let base = b * len;
    var amax = 0.0;
    var mx = 0.0;
    for (var i = 0u; i < len; i++) {
        let v = x[base + i];
        if (abs(v) > amax) {
            amax = abs(v);
            mx = v;
        }
    }
    if (KIND == 0u) {
        let d = amax / 127.0;
        let id = select(0.0, 1.0 / d, d != 0.0);
        let dh = unpack2x16float(pack2x16float(vec2<f32>(d, 0.0))).x;
        for (var i = 0u; i < len; i++) {
            let v = x[base + i] * id;
            out[base + i] = dh * sign(v) * floor(abs(v) + 0.5);
        }
        return;
    }
    if (amax == 0.0) {
        for (var i = 0u; i < len; i++) {
            out[base + i] = 0.0;
        }
        return;
    }
    let iscale = -127.0 / mx;
    let d = 1.0 / iscale;
    for (var i = 0u; i < len; i++) {
        out[base + i] = min(round(iscale * x[base + i]), 127.0) * d;
    }
}
