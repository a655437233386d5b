// mul.cu: `Op::Mul`, out[i] = a[i] * b[i], same shapes. Matches backend/cpu/elementwise.rs `mul`
// exactly.
//
// Shapes: a, b, out: n f32. Entry point: mul(a, b, out, n).
// Launch: grid (min(ceil(n / 256), 65535)), block 256, grid-stride loop.

#include "common.cuh"

extern "C" __global__ void mul(const float* a, const float* b, float* out, u64 n) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        out[i] = a[i] * b[i];
    }
}
