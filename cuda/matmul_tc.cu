// matmul_tc.cu: `Op::MatMul` for many activation rows (prefill, T > 16) on tensor cores (sm_80+):
// y[t, r] = Σ_k x[t, k] · w[r, k] with `mma.sync.m16n8k8` on TF32 operands and f32 accumulation.
// TF32, not f16: it keeps f32's exponent range, so activations with large outliers (thousands in
// some models) cannot overflow, at the same 10-bit mantissa as f16. Both operands are rounded to
// TF32 (cvt.rna: nearest, ties away; ≤ 2^-11 relative each); F16 and BF16 weights are exact in
// TF32, so only the activations round for them. Quantized weights are dequantized exactly (common.cuh)
// and then rounded; their activations arrive already rounded to llama.cpp's 8-bit blocks
// (quantize_act.cu). Matches backend/cpu/matmul.rs up to those roundings and summation order.
// plan.rs routes F32 weights to matmul.cu instead (full f32 products), and everything to matmul.cu
// on devices older than sm_80.
//
// Shapes: w: [n, k] in its stored format (row_bytes bytes per row); x: [t, k] f32; y: [t, n] f32.
// Entry points: matmul_tc_{f16,bf16,q4_0,q4_1,q5_0,q5_1,q8_0,q4_k,q5_k,q6_k}(w, x, y, k, n, t, row_bytes).
// Launch: grid (ceil(n / 64), ceil(t / 64)), block 128 = 4 warps. A block computes a 64 (tokens) ×
// 64 (weight rows) tile of y; warp w the 32 × 32 quarter at tokens 32·(w / 2), rows 32·(w % 2),
// as 2 × 4 mma tiles of 16 × 8. K is walked 32 at a time: x's 64 × 32 slice and w's 64 × 32 slice
// (dequantized: thread i decodes 16-weight chunk i) are staged in shared memory as TF32, rows
// padded to 36 words so that a fragment load's 32 lanes (row g = lane / 4, column c = lane % 4)
// hit 32 different banks. Out-of-range rows, tokens and k read as zero.
// Fragment layouts (PTX ISA, mma.m16n8k8 .tf32), g = lane / 4, c = lane % 4:
//   A (16 × 8, row-major): a0 = A[g][c], a1 = A[g + 8][c], a2 = A[g][c + 4], a3 = A[g + 8][c + 4]
//   B (8 × 8, column-major): b0 = B[c][g], b1 = B[c + 4][g]   (B[k][n] = w[n][k])
//   C (16 × 8): c0 = C[g][2c], c1 = C[g][2c + 1], c2 = C[g + 8][2c], c3 = C[g + 8][2c + 1]

#include "common.cuh"

#define BT 64
#define BN 64
#define BK 32
#define LD (BK + 4)  // padded row length in words

// Both guarded: Kernels::load compiles every file for the device, and below sm_80 this one must
// still compile (plan.rs never launches it there).
__device__ __forceinline__ float to_tf32(float v) {
#if __CUDA_ARCH__ >= 800
    u32 r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(v));
    return __uint_as_float(r);
#else
    return v;
#endif
}

// acc (16 × 8 tile of C) += A (16 × 8) · B (8 × 8).
__device__ __forceinline__ void mma_tf32(float* acc, const u32* a, const u32* b) {
#if __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap();
#endif
}

template <typename F, bool QUANT>
__device__ __forceinline__ void matmul_tc(const u8* w, const float* x, float* y, int k, int n, int t, u64 row_bytes) {
    __shared__ float xs[BT][LD];
    __shared__ float ws[BN][LD];
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, c = lane % 4;
    const int t0 = blockIdx.y * BT, n0 = blockIdx.x * BN;
    const int wm = 32 * (warp / 2), wn = 32 * (warp % 2);  // the warp's quarter of the tile
    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;

    for (int k0 = 0; k0 < k; k0 += BK) {
        for (int i = tid; i < BT * BK; i += 128) {
            const int r = i / BK, cc = i % BK, tok = t0 + r, kk = k0 + cc;
            xs[r][cc] = (tok < t && kk < k) ? to_tf32(x[(u64)tok * k + kk]) : 0.0f;
        }
        if constexpr (QUANT) {
            // 64 rows × 2 chunks of 16: one chunk per thread (k is a multiple of 32).
            const int r = tid / 2, h = tid % 2, row = n0 + r;
            float v[16];
            if (row < n) {
                F::dq16(w + (u64)row * row_bytes, k0 + 16 * h, v);
            } else {
#pragma unroll
                for (int j = 0; j < 16; j++) v[j] = 0.0f;
            }
#pragma unroll
            for (int j = 0; j < 16; j++) ws[r][16 * h + j] = to_tf32(v[j]);
        } else {
            for (int i = tid; i < BN * BK; i += 128) {
                const int r = i / BK, cc = i % BK, row = n0 + r, kk = k0 + cc;
                ws[r][cc] = (row < n && kk < k) ? to_tf32(F::dq1(w + (u64)row * row_bytes, kk)) : 0.0f;
            }
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; kk += 8) {
            u32 a[2][4], b[4][2];
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int r = wm + 16 * i + g;
                a[i][0] = __float_as_uint(xs[r][kk + c]);
                a[i][1] = __float_as_uint(xs[r + 8][kk + c]);
                a[i][2] = __float_as_uint(xs[r][kk + c + 4]);
                a[i][3] = __float_as_uint(xs[r + 8][kk + c + 4]);
            }
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int r = wn + 8 * j + g;
                b[j][0] = __float_as_uint(ws[r][kk + c]);
                b[j][1] = __float_as_uint(ws[r][kk + c + 4]);
            }
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) mma_tf32(acc[i][j], a[i], b[j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int tok = t0 + wm + 16 * i + g + 8 * (e / 2);
                const int col = n0 + wn + 8 * j + 2 * c + (e % 2);
                if (tok < t && col < n) y[(u64)tok * n + col] = acc[i][j][e];
            }
}

#define MATMUL_TC(name, F, QUANT)                                                                \
    extern "C" __global__ void __launch_bounds__(128) name(const u8* w, const float* x, float* y, \
                                                            int k, int n, int t, u64 row_bytes) { \
        matmul_tc<F, QUANT>(w, x, y, k, n, t, row_bytes);                                        \
    }

MATMUL_TC(matmul_tc_f16, FmtF16, false)
MATMUL_TC(matmul_tc_bf16, FmtBF16, false)
MATMUL_TC(matmul_tc_q4_0, FmtQ4_0, true)
MATMUL_TC(matmul_tc_q4_1, FmtQ4_1, true)
MATMUL_TC(matmul_tc_q5_0, FmtQ5_0, true)
MATMUL_TC(matmul_tc_q5_1, FmtQ5_1, true)
MATMUL_TC(matmul_tc_q8_0, FmtQ8_0, true)
MATMUL_TC(matmul_tc_q4_k, FmtQ4K, true)
MATMUL_TC(matmul_tc_q5_k, FmtQ5K, true)
MATMUL_TC(matmul_tc_q6_k, FmtQ6K, true)
