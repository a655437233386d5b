// round_f16.wgsl: `Op::RoundF16`: each element rounded to the nearest f16 and widened back to f32
// (a KV cache of f16 precision; queries rounded as llama.cpp's f16 K·Q product rounds them).
// Matches backend/cpu/elementwise.rs `round_f16` (ties to even); pack2x16float needs no
// shader-f16, so this runs in browsers without it.
//
// Shapes: x, out: [n] f32 (flattened).
// Bindings: 0 uniform Params, 1 x, 2 out.
// Dispatch: one invocation per element on a 2-D grid of WG-wide workgroups (see add.wgsl).

override WG: u32 = 256u;

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    out[i] = unpack2x16float(pack2x16float(vec2<f32>(x[i], 0.0))).x;
}
