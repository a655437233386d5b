// silu_mul.cu: `Op::SiluMul` (SwiGLU gating, Shazeer 2020): out[i] = g / (1 + e^−g) · u.
// Matches backend/cpu/elementwise.rs `silu_mul`, the same operations in the same order; expf is
// CUDA's (within 2 ulp of the host's exp), so results may differ in the last bits.
//
// Shapes: gate, up, out: n f32. Entry point: silu_mul(gate, up, out, n).
// Launch: grid (min(ceil(n / 256), 65535)), block 256, grid-stride loop.

#include "common.cuh"

extern "C" __global__ void silu_mul(const float* gate, const float* up, float* out, u64 n) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        const float g = gate[i];
        out[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), up[i]);
    }
}
