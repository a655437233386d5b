// common.cuh: what every kernel shares: fixed-width types (NVRTC has no <stdint.h>), warp
// reductions, and the GGUF block decoders. Passed to NVRTC as an in-memory header named
// "common.cuh" (engine/src/backend/cuda/nvrtc.rs), so every `.cu` file includes it by name.
//
// Block decoders: `Fmt::dq16(row, k0, out)` writes elements k0 .. k0 + 16 of a weight row
// (k0 % 16 == 0) as f32, bit-exact with engine/src/quant/*.rs `dequantize` (products and sums
// use __fmul_rn / __fsub_rn / __fadd_rn so the compiler cannot fuse them into an FMA, which
// would round differently from the CPU). Layouts (dtype.rs, ggml-common.h), little-endian:
//   Q4_0  18 B / 32:  f16 d, 16 B nibbles;            w = d·(q − 8)
//   Q4_1  20 B / 32:  f16 d, f16 m, 16 B nibbles;     w = d·q + m
//   Q8_0  34 B / 32:  f16 d, 32 × i8;                 w = d·q
//   Q5_0  22 B / 32:  f16 d, u32 qh, 16 B nibbles;    w = d·(q − 16)
//   Q5_1  24 B / 32:  f16 d, f16 m, u32 qh, 16 B nibbles; w = d·q + m
//   Q4_K 144 B / 256: f16 d, f16 dmin, 12 B scales, 128 B nibbles; w = d·sc·q − dmin·m
//   Q5_K 176 B / 256: as Q4_K plus 32 B of fifth bits (qh) before the nibbles
//   Q6_K 210 B / 256: 128 B ql, 64 B qh, 16 × i8 scales, f16 d;    w = d·sc·(q − 32)
// In the 32-weight formats element j < 16 is the low nibble of byte j, j + 16 the high one; in
// Q5_0/Q5_1 bit j of qh (little-endian) is element j's fifth bit.
// Alignment: device allocations are 256-byte aligned and rows are whole blocks, so Q4_K/Q5_K
// nibbles and fifth bits (at offsets 16 + 32c, 48 + 32c, 16 in 144/176-byte blocks) are 16-byte
// aligned and read as uint4; Q4_1 and Q5_1 are 4-byte aligned; Q4_0, Q5_0, Q8_0 and Q6_K only
// 2-byte aligned (Q5_0's qh is read as two u16).
//
// Float weights (F32, F16, BF16) have `dq1(row, k)` for one element and `dq8(row, k0, out)` for
// 8 (a 16-byte load when `row` is 16-byte aligned, which the callers check).
//
// KV caches (F32, F16, Q8_0: what Op::Attention reads as keys and values) are read one element
// at a time through `load_kv<KvF32 | KvF16 | KvQ8_0>(base, head_offset, i)`; the attention
// kernels are templates over that type, one entry point per type (`attention_decode_f16`).

#pragma once

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef int i32;
typedef signed char i8;
typedef unsigned long long u64;

#define NEG_INF __int_as_float(0xff800000)

// Error bits a kernel sets in the plan's error word (read back after every execute).
#define ERR_GET_ROWS_ID 1u
#define ERR_SCATTER_POS 2u
#define ERR_BLOCK_TABLE 4u

// IEEE half → f32 (exact; the hardware conversion, same values as quant/float.rs f16_to_f32).
__device__ __forceinline__ float f16_to_f32(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

// f32 → IEEE half, round to nearest even (the hardware conversion, as half::f16::from_f32).
__device__ __forceinline__ u16 f32_to_f16(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float bf16_to_f32(u16 h) {
    return __uint_as_float(((u32)h) << 16);
}

// Little-endian u16 at an even byte offset.
__device__ __forceinline__ u16 ld_u16(const u8* p) {
    return *reinterpret_cast<const u16*>(p);
}

__device__ __forceinline__ float ld_f16(const u8* p) {
    return f16_to_f32(ld_u16(p));
}

// 16 bytes from a 2-byte-aligned address, as eight u16 loads.
__device__ __forceinline__ void ld16_a2(const u8* p, u8* out) {
    const u16* q = reinterpret_cast<const u16*>(p);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        u16 v = q[i];
        out[2 * i] = (u8)(v & 0xFF);
        out[2 * i + 1] = (u8)(v >> 8);
    }
}

// 16 bytes from a 4-byte-aligned address, as four u32 loads.
__device__ __forceinline__ void ld16_a4(const u8* p, u8* out) {
    const u32* q = reinterpret_cast<const u32*>(p);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        u32 v = q[i];
        out[4 * i] = (u8)(v & 0xFF);
        out[4 * i + 1] = (u8)((v >> 8) & 0xFF);
        out[4 * i + 2] = (u8)((v >> 16) & 0xFF);
        out[4 * i + 3] = (u8)(v >> 24);
    }
}

// 16 bytes from a 16-byte-aligned address, as one 128-bit load.
__device__ __forceinline__ void ld16_a16(const u8* p, u8* out) {
    uint4 v = *reinterpret_cast<const uint4*>(p);
    u32 w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        out[4 * i] = (u8)(w[i] & 0xFF);
        out[4 * i + 1] = (u8)((w[i] >> 8) & 0xFF);
        out[4 * i + 2] = (u8)((w[i] >> 16) & 0xFF);
        out[4 * i + 3] = (u8)(w[i] >> 24);
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;  // complete in lane 0
}

__device__ __forceinline__ float warp_sum_all(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;  // complete in every lane
}

__device__ __forceinline__ float warp_max_all(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// ---- paged attention ----

// Row of the KV pool that holds key j of a query whose block table is `row_table`. The host
// refuses a block table given as a graph input with an entry past the pool before anything runs
// (backend::check_inputs); one computed inside a graph is only seen here, so an entry past the
// `n_blocks` blocks of the pool is clamped (no read outside k and v) and flags ERR_BLOCK_TABLE,
// which fails the run. n_blocks ≥ 1 (plan.rs refuses an empty pool).
__device__ __forceinline__ u64 paged_row(const u32* row_table, int j, int block_size, u32 n_blocks, u32* err) {
    u32 b = row_table[j / block_size];
    if (b >= n_blocks) {
        atomicOr(err, ERR_BLOCK_TABLE);
        b = n_blocks - 1;
    }
    return (u64)b * block_size + j % block_size;
}

// Whether row `ti` of a [t, cols] block table equals row ti − 1 (which = 0) or row ti + 1
// (which = 1); rows outside [0, t) equal nothing. Rows with equal tables read the same key rows,
// so a tile of keys loaded once serves all of them: consecutive equal rows (a prefill) go to
// attention_prefill.cu, rows equal to neither neighbour (a decode step) to attention_decode.cu.
// Call from every thread of the block (it synchronises); every thread gets the answer.
__device__ __forceinline__ bool table_row_equals(const u32* table, int t, int cols, int ti, int which) {
    const int other = which ? ti + 1 : ti - 1;
    int differs = 0;
    if (other >= 0 && other < t) {
        const u32* a = table + (u64)ti * cols;
        const u32* b = table + (u64)other * cols;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) differs |= a[c] != b[c];
    }
    const int any = __syncthreads_or(differs);  // every thread calls it, in range or not
    return other >= 0 && other < t && !any;
}

// A query row of a paged batch that shares its block table with a neighbour (attention_prefill
// serves it when the router is on); the others are decode rows (attention_decode serves them).
__device__ __forceinline__ bool table_row_shared(const u32* table, int t, int cols, int ti) {
    const bool prev = table_row_equals(table, t, cols, ti, 0);
    const bool next = table_row_equals(table, t, cols, ti, 1);
    return prev || next;
}

// ---- KV cache types ----

// Keys and values as a KV cache keeps them (dtype.rs KV_TYPES): a row-major [s, cols] matrix of
// f32, IEEE half, or Q8_0 blocks (rows of cols / 32 blocks of 34 bytes, cols % 32 == 0), addressed
// by element. `KV::at(base, e)` is element e as f32, exact (Q8_0: d · q in one rounding, as
// quant/q8_0.rs `dequantize`). Plain loads: f32 4-byte, f16 and Q8_0's d 2-byte aligned.
struct KvF32 {
    __device__ static __forceinline__ float at(const u8* base, u64 e) { return reinterpret_cast<const float*>(base)[e]; }
};

struct KvF16 {
    __device__ static __forceinline__ float at(const u8* base, u64 e) { return f16_to_f32(reinterpret_cast<const u16*>(base)[e]); }
};

struct KvQ8_0 {
    __device__ static __forceinline__ float at(const u8* base, u64 e) {
        const u8* b = base + (e / 32) * 34;
        return __fmul_rn((float)(i8)b[2 + e % 32], ld_f16(b));
    }
};

// Element i of the head that starts at element `off` of a KV matrix (off = row · cols + kvh ·
// head_dim; a Q8_0 head is whole blocks, since the graph keeps head_dim % 32 == 0 for it).
template <typename KV>
__device__ __forceinline__ float load_kv(const u8* kv, u64 off, int i) {
    return KV::at(kv, off + (u64)i);
}

// ---- 32-weight block formats ----

struct FmtQ4_0 {
    static constexpr int QK = 32, BYTES = 18;
    __device__ static __forceinline__ void dq16(const u8* row, int k0, float* out) {
        const u8* b = row + (k0 / QK) * BYTES;
        const int half = (k0 % QK) / 16;  // 0: low nibbles, 1: high nibbles
        const float d = ld_f16(b);
        u8 q[16];
        ld16_a2(b + 2, q);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            int v = half ? (q[j] >> 4) : (q[j] & 0x0F);
            out[j] = __fmul_rn((float)(v - 8), d);
        }
    }
};

struct FmtQ4_1 {
    static constexpr int QK = 32, BYTES = 20;
    __device__ static __forceinline__ void dq16(const u8* row, int k0, float* out) {
        const u8* b = row + (k0 / QK) * BYTES;
        const int half = (k0 % QK) / 16;
        const float d = ld_f16(b), m = ld_f16(b + 2);
        u8 q[16];
        ld16_a4(b + 4, q);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            int v = half ? (q[j] >> 4) : (q[j] & 0x0F);
            out[j] = __fadd_rn(__fmul_rn((float)v, d), m);
        }
    }
};

struct FmtQ8_0 {
    static constexpr int QK = 32, BYTES = 34;
    __device__ static __forceinline__ void dq16(const u8* row, int k0, float* out) {
        const u8* b = row + (k0 / QK) * BYTES;
        const float d = ld_f16(b);
        u8 q[16];
        ld16_a2(b + 2 + (k0 % QK), q);
#pragma unroll
        for (int j = 0; j < 16; j++) out[j] = __fmul_rn((float)(i8)q[j], d);
    }
};

struct FmtQ5_0 {
    static constexpr int QK = 32, BYTES = 22;
    __device__ static __forceinline__ void dq16(const u8* row, int k0, float* out) {
        const u8* b = row + (k0 / QK) * BYTES;
        const int half = (k0 % QK) / 16;  // 0: low nibbles, 1: high nibbles
        const float d = ld_f16(b);
        const u32 qh = ((u32)ld_u16(b + 2) | ((u32)ld_u16(b + 4) << 16)) >> (16 * half);
        u8 q[16];
        ld16_a2(b + 6, q);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            int v = (half ? (q[j] >> 4) : (q[j] & 0x0F)) | (int)(((qh >> j) & 1u) << 4);
            out[j] = __fmul_rn((float)(v - 16), d);
        }
    }
};

struct FmtQ5_1 {
    static constexpr int QK = 32, BYTES = 24;
    __device__ static __forceinline__ void dq16(const u8* row, int k0, float* out) {
        const u8* b = row + (k0 / QK) * BYTES;
        const int half = (k0 % QK) / 16;
        const float d = ld_f16(b), m = ld_f16(b + 2);
        const u32 qh = *reinterpret_cast<const u32*>(b + 4) >> (16 * half);
        u8 q[16];
        ld16_a4(b + 8, q);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            int v = (half ? (q[j] >> 4) : (q[j] & 0x0F)) | (int)(((qh >> j) & 1u) << 4);
            out[j] = __fadd_rn(__fmul_rn((float)v, d), m);
        }
    }
};

// ---- 256-weight K-quant formats ----

// quant/kquant.rs get_scale_min_k4: 6-bit scale and min of sub-block j (0..8).
__device__ __forceinline__ void scale_min_k4(int j, const u8* s, int* sc, int* m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

struct FmtQ4K {
    static constexpr int QK = 256, BYTES = 144;
    __device__ static __forceinline__ void dq16(const u8* row, int k0, float* out) {
        const u8* b = row + (k0 / QK) * BYTES;
        const int e = k0 % QK, c = e / 64, r = e % 64;
        const int sub = 2 * c + r / 32;  // r < 32: low nibbles of chunk c, else high
        int sc, mn;
        scale_min_k4(sub, b + 4, &sc, &mn);
        const float d1 = __fmul_rn(ld_f16(b), (float)sc), m1 = __fmul_rn(ld_f16(b + 2), (float)mn);
        u8 q[16];
        ld16_a16(b + 16 + 32 * c + (r % 32), q);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            int v = (r < 32) ? (q[j] & 0xF) : (q[j] >> 4);
            out[j] = __fsub_rn(__fmul_rn(d1, (float)v), m1);
        }
    }
};

struct FmtQ5K {
    static constexpr int QK = 256, BYTES = 176;
    __device__ static __forceinline__ void dq16(const u8* row, int k0, float* out) {
        const u8* b = row + (k0 / QK) * BYTES;
        const int e = k0 % QK, c = e / 64, r = e % 64, l0 = r % 32;
        const int sub = 2 * c + r / 32;
        int sc, mn;
        scale_min_k4(sub, b + 4, &sc, &mn);
        const float d1 = __fmul_rn(ld_f16(b), (float)sc), m1 = __fmul_rn(ld_f16(b + 2), (float)mn);
        u8 q[16], h[16];
        ld16_a16(b + 48 + 32 * c + l0, q);
        ld16_a16(b + 16 + l0, h);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            int v = ((r < 32) ? (q[j] & 0xF) : (q[j] >> 4)) + (((h[j] >> sub) & 1) ? 16 : 0);
            out[j] = __fsub_rn(__fmul_rn(d1, (float)v), m1);
        }
    }
};

struct FmtQ6K {
    static constexpr int QK = 256, BYTES = 210;
    __device__ static __forceinline__ void dq16(const u8* row, int k0, float* out) {
        const u8* b = row + (k0 / QK) * BYTES;
        const int e = k0 % QK, hh = e / 128, r = e % 128, g = r / 32, l0 = r % 32;
        const float d = ld_f16(b + 208);
        const float dsc = __fmul_rn(d, (float)(i8)b[192 + e / 16]);
        u8 ql[16], qh[16];
        ld16_a2(b + 64 * hh + 32 * (g & 1) + l0, ql);
        ld16_a2(b + 128 + 32 * hh + l0, qh);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            int lo = (g >= 2) ? (ql[j] >> 4) : (ql[j] & 0xF);
            int v = lo | (((qh[j] >> (2 * g)) & 3) << 4);
            out[j] = __fmul_rn(dsc, (float)(v - 32));
        }
    }
};

// ---- float formats ----

struct FmtF32 {
    static constexpr int ELEM = 4;
    __device__ static __forceinline__ float dq1(const u8* row, int k) {
        return reinterpret_cast<const float*>(row)[k];
    }
    // 8 elements from k0; `row + 4·k0` must be 16-byte aligned.
    __device__ static __forceinline__ void dq8(const u8* row, int k0, float* out) {
        const float4* p = reinterpret_cast<const float4*>(row + 4 * k0);
        float4 a = p[0], c = p[1];
        out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
        out[4] = c.x; out[5] = c.y; out[6] = c.z; out[7] = c.w;
    }
};

template <bool BF>
struct FmtHalf {
    static constexpr int ELEM = 2;
    __device__ static __forceinline__ float cvt(u16 h) { return BF ? bf16_to_f32(h) : f16_to_f32(h); }
    __device__ static __forceinline__ float dq1(const u8* row, int k) {
        return cvt(reinterpret_cast<const u16*>(row)[k]);
    }
    // 8 elements from k0; `row + 2·k0` must be 16-byte aligned.
    __device__ static __forceinline__ void dq8(const u8* row, int k0, float* out) {
        uint4 v = *reinterpret_cast<const uint4*>(row + 2 * k0);
        u32 w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            out[2 * i] = cvt((u16)(w[i] & 0xFFFF));
            out[2 * i + 1] = cvt((u16)(w[i] >> 16));
        }
    }
};
typedef FmtHalf<false> FmtF16;
typedef FmtHalf<true> FmtBF16;

// Row byte length of k elements in a float format.
template <typename F>
__device__ __forceinline__ u64 float_row_bytes(int k) { return (u64)k * F::ELEM; }
