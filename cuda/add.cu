// add.cu: `Op::Add`, out[i] = a[i] + b[i mod nb]: b has a's shape (nb = n) or is one row
// broadcast over a's rows (a bias, nb = cols). Matches backend/cpu/elementwise.rs `add` exactly.
//
// Shapes: a, out: n f32; b: nb f32. Entry point: add(a, b, out, n, nb).
// Launch: grid (min(ceil(n / 256), 65535)), block 256, grid-stride loop.

#include "common.cuh"

extern "C" __global__ void add(const float* a, const float* b, float* out, u64 n, u64 nb) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        out[i] = a[i] + b[i % nb];
    }
}
