// matmul.cu: `Op::MatMul` for many activation rows (prefill, T > 16) in f32 FMA units: the path for
// F32 weights, and for every weight type on devices without TF32 tensor cores (below sm_80; else
// matmul_tc.cu): y[t, r] = Σ_k x[t, k] · w[r, k],
// a tiled kernel that dequantizes each weight tile once into shared memory and reuses it for 64
// tokens. Matches backend/cpu/matmul.rs as matvec.cu does (activations already rounded to
// llama.cpp's 8-bit blocks by quantize_act.cu for quantized weights, exact dequantized weights, a
// different summation order).
//
// Shapes: w: [n, k] in its stored format (row_bytes bytes per row); x: [t, k] f32; y: [t, n] f32.
// Entry points: matmul_{f32,f16,bf16,q4_0,q4_1,q5_0,q5_1,q8_0,q4_k,q5_k,q6_k}(w, x, y, k, n, t, row_bytes).
// Launch: grid (ceil(n / 64), ceil(t / 64)), block 256. Each block computes a 64 (tokens) × 64
// (weight rows) tile of y; thread (tx, ty) = (tid % 16, tid / 16) owns the 4 × 4 outputs
// (ty + 16i, tx + 16j). K is walked 32 at a time: x's 64 × 32 slice is copied to shared memory,
// w's 64 × 32 slice dequantized there (quantized formats: threads 0..127 decode one 16-weight
// chunk each; k is a multiple of 32 for them), rows padded to 33 floats so that the column reads
// of the inner loop hit 32 different banks. Out-of-range rows, tokens and k read as zero.

#include "common.cuh"

#define BT 64
#define BN 64
#define BK 32

template <typename F, bool QUANT>
__device__ __forceinline__ void matmul_tiled(const u8* w, const float* x, float* y, int k, int n, int t, u64 row_bytes) {
    __shared__ float xs[BT][BK + 1];
    __shared__ float ws[BN][BK + 1];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int t0 = blockIdx.y * BT, n0 = blockIdx.x * BN;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < k; k0 += BK) {
        for (int i = tid; i < BT * BK; i += 256) {
            const int r = i / BK, c = i % BK, tok = t0 + r, kk = k0 + c;
            xs[r][c] = (tok < t && kk < k) ? x[(u64)tok * k + kk] : 0.0f;
        }
        if constexpr (QUANT) {
            if (tid < BN * 2) {
                const int r = tid / 2, h = tid % 2, row = n0 + r;
                float v[16];
                if (row < n) {
                    F::dq16(w + (u64)row * row_bytes, k0 + 16 * h, v);
                } else {
#pragma unroll
                    for (int j = 0; j < 16; j++) v[j] = 0.0f;
                }
#pragma unroll
                for (int j = 0; j < 16; j++) ws[r][16 * h + j] = v[j];
            }
        } else {
            for (int i = tid; i < BN * BK; i += 256) {
                const int r = i / BK, c = i % BK, row = n0 + r, kk = k0 + c;
                ws[r][c] = (row < n && kk < k) ? F::dq1(w + (u64)row * row_bytes, kk) : 0.0f;
            }
        }
        __syncthreads();
#pragma unroll 8
        for (int kk = 0; kk < BK; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = xs[ty + 16 * i][kk];
#pragma unroll
            for (int j = 0; j < 4; j++) b[j] = ws[tx + 16 * j][kk];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int tok = t0 + ty + 16 * i;
        if (tok >= t) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int col = n0 + tx + 16 * j;
            if (col < n) y[(u64)tok * n + col] = acc[i][j];
        }
    }
}

#define MATMUL(name, F, QUANT)                                                                 \
    extern "C" __global__ void __launch_bounds__(256) name(const u8* w, const float* x, float* y, \
                                                            int k, int n, int t, u64 row_bytes) { \
        matmul_tiled<F, QUANT>(w, x, y, k, n, t, row_bytes);                                    \
    }

MATMUL(matmul_f32, FmtF32, false)
MATMUL(matmul_f16, FmtF16, false)
MATMUL(matmul_bf16, FmtBF16, false)
MATMUL(matmul_q4_0, FmtQ4_0, true)
MATMUL(matmul_q4_1, FmtQ4_1, true)
MATMUL(matmul_q5_0, FmtQ5_0, true)
MATMUL(matmul_q5_1, FmtQ5_1, true)
MATMUL(matmul_q8_0, FmtQ8_0, true)
MATMUL(matmul_q4_k, FmtQ4K, true)
MATMUL(matmul_q5_k, FmtQ5K, true)
MATMUL(matmul_q6_k, FmtQ6K, true)
