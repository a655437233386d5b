// matvec.cu: `Op::MatMul` for few activation rows (decode, t ≤ 16): y[t, r] = Σ_k x[t, k] · w[r, k].
// Each weight is read from memory once for all t rows: a warp dequantizes a 16-weight chunk into
// registers and dots it with every row's activations before it moves on, so a batch of t decodes
// costs one pass over the weights, not t. Matches backend/cpu/matmul.rs up to summation order:
// the activations arrive already rounded to llama.cpp's 8-bit blocks for quantized weights
// (quantize_act.cu, launched before by plan.rs), and every weight is the exact f32 value
// quant/*.rs `dequantize` gives.
//
// Shapes: w: [n, k] in its stored format (row_bytes bytes per row); x: [t, k] f32; y: [t, n] f32.
// Entry points: matvec_{f32,f16,bf16,q4_0,q4_1,q5_0,q5_1,q8_0,q4_k,q5_k,q6_k}(w, x, y, k, n, t, row_bytes).
// Launch: grid (ceil(n / 4)), block 128 = 4 warps, one weight row per warp, t ≤ MAX_T. Lane i
// takes the row's 16-weight chunks i, i + 32, … (adjacent lanes read adjacent bytes, so a warp's
// loads coalesce), dequantizes each in registers (128-bit loads for the K-quant nibbles and float
// rows, see common.cuh), dots it with each row of x (float4 loads; x rows are 16-byte aligned,
// which plan.rs checks), and the warp sums each row's 32 partial sums with __shfl_down_sync; lane
// 0 writes. Float rows whose length is not a multiple of 8 take one element per lane per step.

#include "common.cuh"

#define ROWS_PER_BLOCK 4
#define MAX_T 16  // plan.rs MATVEC_MAX_ROWS

__device__ __forceinline__ float dot4(const float* w, float4 a) {
    return w[0] * a.x + w[1] * a.y + w[2] * a.z + w[3] * a.w;
}

// Sums each row's partials over the warp and writes them (lane 0).
__device__ __forceinline__ void store_rows(const float* acc, float* y, int n, int t, int r, int lane) {
#pragma unroll
    for (int tok = 0; tok < MAX_T; tok++) {
        if (tok >= t) break;  // warp-uniform
        const float sum = warp_sum(acc[tok]);
        if (lane == 0) y[(u64)tok * n + r] = sum;
    }
}

template <typename F>
__device__ __forceinline__ void matvec_quant(const u8* w, const float* x, float* y, int k, int n, int t, u64 row_bytes) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int r = blockIdx.x * ROWS_PER_BLOCK + warp;
    if (r >= n) return;  // the whole warp leaves together
    const u8* row = w + (u64)r * row_bytes;
    float acc[MAX_T];
#pragma unroll
    for (int tok = 0; tok < MAX_T; tok++) acc[tok] = 0.0f;
    for (int c = lane; c < k / 16; c += 32) {
        float wv[16];
        F::dq16(row, 16 * c, wv);
#pragma unroll
        for (int tok = 0; tok < MAX_T; tok++) {
            if (tok >= t) break;
            const float4* xv = reinterpret_cast<const float4*>(x + (u64)tok * k + 16 * c);
#pragma unroll
            for (int i = 0; i < 4; i++) acc[tok] += dot4(wv + 4 * i, xv[i]);
        }
    }
    store_rows(acc, y, n, t, r, lane);
}

template <typename F>
__device__ __forceinline__ void matvec_float(const u8* w, const float* x, float* y, int k, int n, int t, u64 row_bytes) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int r = blockIdx.x * ROWS_PER_BLOCK + warp;
    if (r >= n) return;
    const u8* row = w + (u64)r * row_bytes;
    float acc[MAX_T];
#pragma unroll
    for (int tok = 0; tok < MAX_T; tok++) acc[tok] = 0.0f;
    if (k % 8 == 0) {
        // Rows are whole multiples of 16 bytes: 128-bit loads of weights and activations.
        for (int c = lane; c < k / 8; c += 32) {
            float wv[8];
            F::dq8(row, 8 * c, wv);
#pragma unroll
            for (int tok = 0; tok < MAX_T; tok++) {
                if (tok >= t) break;
                const float4* xv = reinterpret_cast<const float4*>(x + (u64)tok * k + 8 * c);
                acc[tok] += dot4(wv, xv[0]) + dot4(wv + 4, xv[1]);
            }
        }
    } else {
        for (int i = lane; i < k; i += 32) {
            const float wi = F::dq1(row, i);
#pragma unroll
            for (int tok = 0; tok < MAX_T; tok++) {
                if (tok >= t) break;
                acc[tok] += wi * x[(u64)tok * k + i];
            }
        }
    }
    store_rows(acc, y, n, t, r, lane);
}

#define MATVEC(name, body, F)                                                                  \
    extern "C" __global__ void __launch_bounds__(128) name(const u8* w, const float* x, float* y, \
                                                            int k, int n, int t, u64 row_bytes) { \
        body<F>(w, x, y, k, n, t, row_bytes);                                                   \
    }

MATVEC(matvec_f32, matvec_float, FmtF32)
MATVEC(matvec_f16, matvec_float, FmtF16)
MATVEC(matvec_bf16, matvec_float, FmtBF16)
MATVEC(matvec_q4_0, matvec_quant, FmtQ4_0)
MATVEC(matvec_q4_1, matvec_quant, FmtQ4_1)
MATVEC(matvec_q5_0, matvec_quant, FmtQ5_0)
MATVEC(matvec_q5_1, matvec_quant, FmtQ5_1)
MATVEC(matvec_q8_0, matvec_quant, FmtQ8_0)
MATVEC(matvec_q4_k, matvec_quant, FmtQ4K)
MATVEC(matvec_q5_k, matvec_quant, FmtQ5K)
MATVEC(matvec_q6_k, matvec_quant, FmtQ6K)
