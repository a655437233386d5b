// scatter_rows.cu: `Op::ScatterRows`, dst[positions[i], :] = src[i, :] (writing new keys and
// values into a KV cache), converting to the cache's type. Matches the CPU's State::scatter in
// backend/cpu/mod.rs bit for bit for every input but NaN (whose f16 payload differs, and which
// makes the CPU's q8_0 amax depend on its order): f32 copied; f16 rounded to nearest even
// (half::f16::from_f32); q8_0 quantized per block of 32 as quant/q8_0.rs `quantize` (ggml
// quantize_row_q8_0_ref): amax = max |x|, d = amax / 127, id = d != 0 ? 1 / d : 0 (correctly
// rounded divisions), q = roundf(x · id) (ties away from zero, saturated to i8), d stored as f16
// (nearest even). A position outside dst sets ERR_SCATTER_POS in `err` (the host turns it into
// the CPU's InvalidArgument error) and that row is skipped.
//
// Shapes: dst: [dst_rows, cols] f32, f16, or q8_0 (rows of cols / 32 blocks of 34 bytes; a state
// param, written in place); src: [t, cols] f32; positions: [t] u32.
// Entry points, all (dst, src, positions, t, cols, dst_rows, err):
// - scatter_rows_f32, scatter_rows_f16. Launch: grid (ceil(cols / 256), t), block 256: one row
//   per grid row, coalesced copies.
// - scatter_rows_q8_0 (cols % 32 == 0). Launch: grid (ceil(cols / 128), t), block 128 = 4 warps:
//   warp w of block x quantizes block 4x + w of the row, lane j its element j (amax by a warp
//   max, lane 0 writes d).

#include "common.cuh"

// The destination row of source row blockIdx.y, or -1 when there is none (past t, or a position
// outside dst, which is flagged once per row). Block-uniform.
__device__ __forceinline__ long long scatter_dst_row(const u32* positions, int t, int dst_rows, u32* err) {
    const int i = blockIdx.y;
    if (i >= t) return -1;
    const u32 p = positions[i];
    if (p >= (u32)dst_rows) {
        if (blockIdx.x == 0 && threadIdx.x == 0) atomicOr(err, ERR_SCATTER_POS);
        return -1;
    }
    return (long long)p;
}

extern "C" __global__ void scatter_rows_f32(float* dst, const float* src, const u32* positions, int t, int cols, int dst_rows, u32* err) {
    const long long p = scatter_dst_row(positions, t, dst_rows, err);
    if (p < 0) return;
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < cols) dst[(u64)p * cols + c] = src[(u64)blockIdx.y * cols + c];
}

extern "C" __global__ void scatter_rows_f16(u16* dst, const float* src, const u32* positions, int t, int cols, int dst_rows, u32* err) {
    const long long p = scatter_dst_row(positions, t, dst_rows, err);
    if (p < 0) return;
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < cols) dst[(u64)p * cols + c] = f32_to_f16(src[(u64)blockIdx.y * cols + c]);
}

extern "C" __global__ void __launch_bounds__(128) scatter_rows_q8_0(u8* dst, const float* src, const u32* positions, int t, int cols, int dst_rows, u32* err) {
    const long long p = scatter_dst_row(positions, t, dst_rows, err);
    if (p < 0) return;
    const int n_blocks = cols / 32, b = blockIdx.x * 4 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (b >= n_blocks) return;  // warp-uniform: the warp max below has every lane
    const float x = src[(u64)blockIdx.y * cols + 32 * b + lane];
    const float amax = warp_max_all(fabsf(x));
    const float d = __fdiv_rn(amax, 127.0f);
    const float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
    u8* blk = dst + ((u64)p * n_blocks + b) * 34;
    // Rust's `as i8` saturates (and takes NaN to 0), as __float2int_rz and the clamp do: only an
    // infinite id (amax a subnormal) reaches past ±127.
    blk[2 + lane] = (u8)(i8)min(127, max(-128, __float2int_rz(roundf(__fmul_rn(x, id)))));
    if (lane == 0) *reinterpret_cast<u16*>(blk) = f32_to_f16(d);
}
