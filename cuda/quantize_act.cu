// quantize_act.cu: rounds f32 activation rows to the 8-bit block format llama.cpp converts
// activations to before a quantized matmul (its `vec_dot_type`) and writes the rounded values
// back as f32, so that matvec.cu / matmul.cu then compute what the CPU's integer dot products do
// (backend/cpu/matmul.rs, quant/q8_act.rs `quantize_act`), up to the order of f32 additions. The
// same rounding as shaders/quantize_act.wgsl:
// - kind 0, Q8_0 / Q8_1 (for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 weights), 32-element blocks:
//   d = amax / 127, q = round-half-away(x · (1 / d)), x' = f16(d) · q (exact in f32). Q8_1's
//   second field s = f16(d · Σq), which the CPU's Q4_1 / Q5_1 dots use for the weights' offset
//   term, is not formed: here that term is m · Σ x', which differs by s's f16 rounding (2^-11
//   relative of that term).
// - kind 1, Q8_K (for Q4_K, Q5_K, Q6_K weights), 256-element blocks: with `max` the first element
//   of largest magnitude, iscale = −127 / max, q = min(round-half-even(iscale · x), 127),
//   x' = q · (1 / iscale); an all-zero block stays zero.
// Divisions are IEEE (NVRTC without fast-math), and products are not fused, so q is bit-exact
// with the CPU's.
//
// Shapes: x, out: [n] f32, n = blocks · block length (rows are whole blocks).
// Entry point: quantize_act(x, out, blocks, kind).
// Launch: grid (ceil(blocks / 4)), block 128 = 4 warps, one activation block per warp: lane i
// takes elements i, i + 32, …; the block's largest magnitude (and, for kind 1, its first element
// of that magnitude) is a warp reduction.

#include "common.cuh"

__device__ __forceinline__ float round_to_f16(float v) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return f16_to_f32(h);
}

extern "C" __global__ void __launch_bounds__(128) quantize_act(const float* x, float* out, u64 blocks, int kind) {
    const u64 b = (u64)blockIdx.x * 4 + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (b >= blocks) return;  // the whole warp leaves together
    const int len = kind ? 256 : 32;
    const float* xb = x + b * len;
    float* ob = out + b * len;

    // The CPU keeps the first element whose magnitude beats every earlier one: per lane that is
    // a strict `>` in index order; across lanes the larger magnitude, then the lower index.
    float amax = 0.0f, mx = 0.0f;
    int idx = len;
    for (int i = lane; i < len; i += 32) {
        const float v = xb[i];
        if (fabsf(v) > amax) {
            amax = fabsf(v);
            mx = v;
            idx = i;
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float a2 = __shfl_xor_sync(0xffffffffu, amax, o);
        const float m2 = __shfl_xor_sync(0xffffffffu, mx, o);
        const int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
        if (a2 > amax || (a2 == amax && i2 < idx)) {
            amax = a2;
            mx = m2;
            idx = i2;
        }
    }

    if (kind == 0) {
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const float dh = round_to_f16(d);
        for (int i = lane; i < len; i += 32) ob[i] = __fmul_rn(dh, roundf(__fmul_rn(xb[i], id)));
        return;
    }
    if (amax == 0.0f) {
        for (int i = lane; i < len; i += 32) ob[i] = 0.0f;
        return;
    }
    const float iscale = -127.0f / mx;
    const float d = 1.0f / iscale;
    for (int i = lane; i < len; i += 32) ob[i] = __fmul_rn(fminf(rintf(__fmul_rn(iscale, xb[i])), 127.0f), d);
}
