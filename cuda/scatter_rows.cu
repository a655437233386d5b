// scatter_rows.cu: `Op::ScatterRows`, dst[positions[i], :] = src[i, :] (writing new keys and
// values into a KV cache). Matches the CPU's loop in backend/cpu/mod.rs; a position outside dst
// sets ERR_SCATTER_POS in `err` (the host turns it into the CPU's InvalidArgument error) and
// that row is skipped.
//
// Shapes: dst: [dst_rows, cols] f32 (a state param, written in place); src: [t, cols] f32;
// positions: [t] u32. Entry point: scatter_rows(dst, src, positions, t, cols, dst_rows, err).
// Launch: grid (ceil(cols / 256), t), block 256: one row per grid row, coalesced copies.

#include "common.cuh"

extern "C" __global__ void scatter_rows(float* dst, const float* src, const u32* positions, int t, int cols, int dst_rows, u32* err) {
    const int i = blockIdx.y;
    if (i >= t) return;
    const u32 p = positions[i];
    if (p >= (u32)dst_rows) {
        if (blockIdx.x == 0 && threadIdx.x == 0) atomicOr(err, ERR_SCATTER_POS);
        return;
    }
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < cols) dst[(u64)p * cols + c] = src[(u64)i * cols + c];
}
