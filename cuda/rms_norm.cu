// rms_norm.cu: `Op::RmsNorm`, out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * w.
// Matches backend/cpu/rms_norm.rs: the sum of squares is taken in double (as the CPU and ggml do;
// a row is at most a few thousand elements, so the slow fp64 units of consumer GPUs do not
// matter), then mean, scale and the two products in f32 with the CPU's order and rounding.
//
// Shapes: x, out: [rows, cols] f32; w: [cols] f32.
// Entry point: rms_norm(x, w, out, rows, cols, eps).
// Launch: grid (rows), block 256. Each thread sums the squares of elements tid, tid + 256, …
// (coalesced), warps reduce with __shfl_down_sync and the 8 warp sums meet in shared memory;
// then every thread scales its own elements.

#include "common.cuh"

__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

extern "C" __global__ void __launch_bounds__(256) rms_norm(const float* x, const float* w, float* out, int rows, int cols, float eps) {
    __shared__ double partial[8];
    __shared__ float scale_s;
    const int r = blockIdx.x;
    if (r >= rows) return;
    const float* xr = x + (u64)r * cols;
    float* orow = out + (u64)r * cols;
    double sum = 0.0;
    for (int c = threadIdx.x; c < cols; c += 256) {
        const double v = (double)xr[c];
        sum += v * v;
    }
    sum = warp_sum_d(sum);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int i = 0; i < 8; i++) total += partial[i];
        const float mean = (float)(total / (double)cols);
        scale_s = 1.0f / sqrtf(__fadd_rn(mean, eps));
    }
    __syncthreads();
    const float scale = scale_s;
    for (int c = threadIdx.x; c < cols; c += 256) orow[c] = __fmul_rn(__fmul_rn(xr[c], scale), w[c]);
}
