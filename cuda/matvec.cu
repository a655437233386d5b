// matvec.cu: `Op::MatMul` for few activation rows (decode, T ≤ 8): y[t, r] = Σ_k x[t, k] · w[r, k].
// Matches backend/cpu/matmul.rs up to summation order and one difference the CPU has on purpose:
// it rounds activations to 8 bits (llama.cpp's Q8 dot formats) before quantized dots; here the
// activations stay f32, and every weight is the exact f32 value quant/*.rs `dequantize` gives.
//
// Shapes: w: [n, k] in its stored format (row_bytes bytes per row); x: [t, k] f32; y: [t, n] f32.
// Entry points: matvec_{f32,f16,bf16,q4_0,q4_1,q5_0,q5_1,q8_0,q4_k,q5_k,q6_k}(w, x, y, k, n, t, row_bytes).
// Launch: grid (ceil(n / 4), t), block 128 = 4 warps, one weight row per warp. Lane i takes the
// row's 16-weight chunks i, i + 32, … (adjacent lanes read adjacent bytes, so a warp's loads
// coalesce), dequantizes each in registers (128-bit loads for the K-quant nibbles and float rows,
// see common.cuh), dots it with x (float4 loads), and the warp sums its 32 partial sums with
// __shfl_down_sync; lane 0 writes. Float rows whose length is not a multiple of 8 take one element
// per lane per step instead.

#include "common.cuh"

#define ROWS_PER_BLOCK 4

template <typename F>
__device__ __forceinline__ void matvec_quant(const u8* w, const float* x, float* y, int k, int n, int t, u64 row_bytes) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int r = blockIdx.x * ROWS_PER_BLOCK + warp;
    const int tok = blockIdx.y;
    if (r >= n || tok >= t) return;  // the whole warp leaves together
    const u8* row = w + (u64)r * row_bytes;
    const float* xr = x + (u64)tok * k;
    float acc = 0.0f;
    for (int c = lane; c < k / 16; c += 32) {
        float wv[16];
        F::dq16(row, 16 * c, wv);
        const float4* xv = reinterpret_cast<const float4*>(xr + 16 * c);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float4 a = xv[i];
            acc += wv[4 * i] * a.x + wv[4 * i + 1] * a.y + wv[4 * i + 2] * a.z + wv[4 * i + 3] * a.w;
        }
    }
    acc = warp_sum(acc);
    if (lane == 0) y[(u64)tok * n + r] = acc;
}

template <typename F>
__device__ __forceinline__ void matvec_float(const u8* w, const float* x, float* y, int k, int n, int t, u64 row_bytes) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int r = blockIdx.x * ROWS_PER_BLOCK + warp;
    const int tok = blockIdx.y;
    if (r >= n || tok >= t) return;
    const u8* row = w + (u64)r * row_bytes;
    const float* xr = x + (u64)tok * k;
    float acc = 0.0f;
    if (k % 8 == 0) {
        // Rows are whole multiples of 16 bytes: 128-bit loads of weights and activations.
        for (int c = lane; c < k / 8; c += 32) {
            float wv[8];
            F::dq8(row, 8 * c, wv);
            const float4* xv = reinterpret_cast<const float4*>(xr + 8 * c);
            float4 a = xv[0], b = xv[1];
            acc += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w;
            acc += wv[4] * b.x + wv[5] * b.y + wv[6] * b.z + wv[7] * b.w;
        }
    } else {
        for (int i = lane; i < k; i += 32) acc += F::dq1(row, i) * xr[i];
    }
    acc = warp_sum(acc);
    if (lane == 0) y[(u64)tok * n + r] = acc;
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
