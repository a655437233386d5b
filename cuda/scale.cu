// scale.cu: `Op::Scale`: out[i] = x[i] · factor. Matches backend/cpu/elementwise.rs `scale`
// exactly (one rounded product).
//
// Shapes: x, out: n f32. Entry point: scale(x, out, n, factor).
// Launch: grid (min(ceil(n / 256), 65535)), block 256, grid-stride loop.

#include "common.cuh"

extern "C" __global__ void scale(const float* x, float* out, u64 n, float factor) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        out[i] = __fmul_rn(x[i], factor);
    }
}
