// get_rows.cu: `Op::GetRows`, out[i, :] = table[ids[i], :], dequantizing each row (the embedding
// lookup). Matches backend/cpu/get_rows.rs bit for bit (the decoders in common.cuh give the
// values quant/*.rs `dequantize` gives). An id outside the table sets ERR_GET_ROWS_ID in `err`
// (the host turns it into the CPU's InvalidArgument error) and leaves that output row unwritten.
//
// Shapes: table: [n_rows, cols] in its stored format (row_bytes per row); ids: [t] u32;
// out: [t, cols] f32.
// Entry points: get_rows_{f32,f16,bf16,q4_0,q4_1,q5_0,q5_1,q8_0,q4_k,q5_k,q6_k}
//   (table, ids, out, n_rows, cols, row_bytes, err).
// Launch: grid (t), block 128; thread i takes 16-weight chunks (quantized) or elements (float)
// i, i + 128, … of the row, so consecutive threads write consecutive outputs.

#include "common.cuh"

template <typename F>
__device__ __forceinline__ void get_rows_quant(const u8* table, const u32* ids, float* out, int n_rows, int cols, u64 row_bytes, u32* err) {
    const u32 id = ids[blockIdx.x];
    if (id >= (u32)n_rows) {
        if (threadIdx.x == 0) atomicOr(err, ERR_GET_ROWS_ID);
        return;
    }
    const u8* row = table + (u64)id * row_bytes;
    float* o = out + (u64)blockIdx.x * cols;
    for (int c = threadIdx.x; c < cols / 16; c += blockDim.x) {
        float v[16];
        F::dq16(row, 16 * c, v);
#pragma unroll
        for (int j = 0; j < 16; j++) o[16 * c + j] = v[j];
    }
}

template <typename F>
__device__ __forceinline__ void get_rows_float(const u8* table, const u32* ids, float* out, int n_rows, int cols, u64 row_bytes, u32* err) {
    const u32 id = ids[blockIdx.x];
    if (id >= (u32)n_rows) {
        if (threadIdx.x == 0) atomicOr(err, ERR_GET_ROWS_ID);
        return;
    }
    const u8* row = table + (u64)id * row_bytes;
    float* o = out + (u64)blockIdx.x * cols;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) o[i] = F::dq1(row, i);
}

#define GET_ROWS(name, body, F)                                                                 \
    extern "C" __global__ void name(const u8* table, const u32* ids, float* out, int n_rows, int cols, \
                                    u64 row_bytes, u32* err) {                                   \
        body<F>(table, ids, out, n_rows, cols, row_bytes, err);                                  \
    }

GET_ROWS(get_rows_f32, get_rows_float, FmtF32)
GET_ROWS(get_rows_f16, get_rows_float, FmtF16)
GET_ROWS(get_rows_bf16, get_rows_float, FmtBF16)
GET_ROWS(get_rows_q4_0, get_rows_quant, FmtQ4_0)
GET_ROWS(get_rows_q4_1, get_rows_quant, FmtQ4_1)
GET_ROWS(get_rows_q5_0, get_rows_quant, FmtQ5_0)
GET_ROWS(get_rows_q5_1, get_rows_quant, FmtQ5_1)
GET_ROWS(get_rows_q8_0, get_rows_quant, FmtQ8_0)
GET_ROWS(get_rows_q4_k, get_rows_quant, FmtQ4K)
GET_ROWS(get_rows_q5_k, get_rows_quant, FmtQ5K)
GET_ROWS(get_rows_q6_k, get_rows_quant, FmtQ6K)
