// round_f16.cu: `Op::RoundF16`: out[i] = f32(f16(x[i])), round to nearest even (a KV cache of f16
// precision). Matches backend/cpu/elementwise.rs `round_f16` exactly.
//
// Shapes: x, out: n f32. Entry point: round_f16(x, out, n).
// Launch: grid (min(ceil(n / 256), 65535)), block 256, grid-stride loop.

#include "common.cuh"

extern "C" __global__ void round_f16(const float* x, float* out, u64 n) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        out[i] = f16_to_f32(f32_to_f16(x[i]));
    }
}
