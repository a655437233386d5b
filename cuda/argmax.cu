// argmax.cu: `Op::Argmax`, the index of the largest element of each row, the lowest index winning
// a tie. Matches backend/cpu/elementwise.rs `argmax`, NaN included: the CPU's scan never moves
// to a NaN and never moves off one at index 0, so NaNs are skipped here, and a row that starts
// with NaN (or is all NaN) gives 0.
//
// Shapes: x: [rows, cols] f32; out: [rows] u32. Entry point: argmax(x, out, rows, cols).
// Launch: grid (rows), block 256. Each thread keeps the best (value, index) of elements tid,
// tid + 256, …; warps reduce pairs with __shfl_down_sync, the 8 warp winners meet in shared memory.

#include "common.cuh"

__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
    return v > bv || (v == bv && i < bi);
}

extern "C" __global__ void __launch_bounds__(256) argmax(const float* x, u32* out, int rows, int cols) {
    __shared__ float sv[8];
    __shared__ int si[8];
    const int r = blockIdx.x;
    if (r >= rows) return;
    const float* xr = x + (u64)r * cols;
    float bv = NEG_INF;
    int bi = 0x7fffffff;
    for (int c = threadIdx.x; c < cols; c += 256) {
        const float v = xr[c];
        if (better(v, c, bv, bi)) {
            bv = v;
            bi = c;
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float v = __shfl_down_sync(0xffffffffu, bv, o);
        const int i = __shfl_down_sync(0xffffffffu, bi, o);
        if (better(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    if (threadIdx.x % 32 == 0) {
        sv[threadIdx.x / 32] = bv;
        si[threadIdx.x / 32] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < 8; w++) {
            if (better(sv[w], si[w], bv, bi)) {
                bv = sv[w];
                bi = si[w];
            }
        }
        const bool nan0 = cols > 0 && xr[0] != xr[0];
        out[r] = (nan0 || bi == 0x7fffffff) ? 0u : (u32)bi;
    }
}
