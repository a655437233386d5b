// slice_rows.cu: `Op::SliceRows`, out = x[start .. start + len, :] (a copy). Matches the CPU's
// slice copy in backend/cpu/mod.rs exactly. The host passes x already offset to row `start`.
//
// Shapes: x: [rows, cols] f32 from row start; out: [len, cols]. Entry point: slice_rows(x, out, n)
// with n = len · cols.
// Launch: grid (min(ceil(n / 256), 65535)), block 256, grid-stride loop.

#include "common.cuh"

extern "C" __global__ void slice_rows(const float* x, float* out, u64 n) {
    for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        out[i] = x[i];
    }
}
