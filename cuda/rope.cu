// rope.cu: `Op::Rope`, rotary position embedding (Su et al., 2021) over each head of each row.
// For pair i of a head (i < n_rot/2), θ = freq_scale · (pos · theta_scale^i / factors[i]) (factors
// only when has_factors: Llama 3.1's per-frequency scaling) and the pair (a, b) becomes
// (a cosθ − b sinθ, a sinθ + b cosθ); elements n_rot .. head_dim of a head pass through.
// `normal` layout pairs (2i, 2i+1) (GGUF llama), NeoX pairs (i, i + n_rot/2).
// Matches backend/cpu/rope.rs: theta_scale = base^(−2/n_rot) is computed on the host by the same
// Rust expression, and θ by repeated f32 multiplication as the CPU (and ggml) do, so θ is bit-equal;
// sin/cos are CUDA's (within 2 ulp, not bit-equal to the host libm).
//
// Shapes: x, out: [rows, n_heads*head_dim] f32 (out of place); positions: [rows] u32.
// Entry point: rope(x, positions, out, rows, cols, head_dim, n_rot, theta_scale, neox, freq_scale,
// factors, has_factors).
// Launch: grid (rows), block 128; thread i takes elements i, i + 128, … of the row and computes
// its own θ (at most n_rot/2 multiplications), reading its partner element from x.

#include "common.cuh"

extern "C" __global__ void __launch_bounds__(128) rope(const float* x, const u32* positions, float* out, int rows, int cols, int head_dim, int n_rot, float theta_scale, int neox, float freq_scale, const float* factors, int has_factors) {
    const int r = blockIdx.x;
    if (r >= rows) return;
    const float* xr = x + (u64)r * cols;
    float* orow = out + (u64)r * cols;
    const float pos = (float)positions[r];
    const int half = n_rot / 2;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const int e = c % head_dim, base = c - e;
        if (e >= n_rot) {
            orow[c] = xr[c];
            continue;
        }
        int i, ia, ib;
        if (neox) {
            i = e % half;
            ia = i;
            ib = i + half;
        } else {
            i = e / 2;
            ia = 2 * i;
            ib = 2 * i + 1;
        }
        float theta_base = pos;
        for (int s = 0; s < i; s++) theta_base = __fmul_rn(theta_base, theta_scale);
        const float theta = __fmul_rn(freq_scale, has_factors ? __fdiv_rn(theta_base, factors[i]) : theta_base);
        float sn, cs;
        sincosf(theta, &sn, &cs);
        const float a = xr[base + ia], b = xr[base + ib];
        orow[c] = (e == ia) ? __fsub_rn(__fmul_rn(a, cs), __fmul_rn(b, sn)) : __fadd_rn(__fmul_rn(a, sn), __fmul_rn(b, cs));
    }
}
