// gelu_mul.cu: `Op::GeluMul` (GeGLU gating, Shazeer 2020): out[i] = gelu_tanh(g) · u with
// gelu_tanh(g) = 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³))). Matches backend/cpu/elementwise.rs
// `gelu_mul`; tanhf is CUDA's (within 2 ulp, and exactly ±1 once saturated), so results may
// differ from the host's in the last bits.
//
// Shapes: gate, up, out: n f32. Entry point: gelu_mul(gate, up, out, n).
// Launch: grid (min(ceil(n / 256), 65535)), block 256, grid-stride loop.

#include "common.cuh"

extern "C" __global__ void gelu_mul(const float* gate, const float* up, float* out, u64 n) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        const float g = gate[i];
        const float inner = 0.7978846f * g * (1.0f + 0.044715f * g * g);
        out[i] = 0.5f * g * (1.0f + tanhf(inner)) * up[i];
    }
}
