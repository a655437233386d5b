// attention_decode.cu: `Op::Attention` for few query rows (decode), split over the keys
// ("flash-decoding", Dao et al., 2023): softmax(q·kᵀ · scale + mask) · v with grouped-query heads
// (query head h reads kv head h / (n_head / n_kv_head)) and an online softmax, so no [T, S] score
// matrix exists. Under the causal mask query t sees keys 0 .. min(positions[t] + 1, s), read from
// the device, so one plan (and one captured CUDA graph) serves every decode step. Matches
// backend/cpu/attention.rs up to summation order and the order in which partial softmaxes meet.
// Also the fallback for prefill when head_dim > 128 (attention_prefill.cu's limit). With
// block_size > 0, k and v are a pool of s / block_size blocks and key j of query row t is row
// table[t * table_cols + j / block_size] * block_size + j % block_size (paged attention, Kwon et
// al., 2023), so each query row may belong to a different sequence; with route = 1 (a paged batch
// that attention_prefill.cu also runs on) this kernel and the combine skip the rows whose block
// table equals a neighbour's (common.cuh table_row_shared): attention_prefill serves those.
// Keys and values are a KV cache of f32, f16 or q8_0 (one entry point each): every value is read
// as its f32 value (common.cuh load_kv), and every product and sum is f32.
//
// Shapes: q: [t, n_head*head_dim] f32; k, v: [s, n_kv_head*head_dim] f32, f16, or q8_0 (head_dim
// % 32 == 0 then); positions: [t] u32 (ignored when causal == 0); out: [t, n_head*head_dim] f32;
// part: [t, n_head, n_split, head_dim + 2] f32 scratch holding each split's (max, sum,
// unnormalised output). head_dim ≤ 256.
// Entry points:
// - attention_decode_{f32,f16,q8_0}(q, k, v, positions, part, t, s, n_head, n_kv_head, head_dim,
//   scale, causal, keys_per_split, table, block_size, table_cols, window, route, err) (by the type
//   of k and v; table unread when block_size == 0; window > 0: a causal query sees only its last
//   `window` keys; err: the plan's error word, ERR_BLOCK_TABLE for an entry past the pool).
//   Launch: grid (n_head, t, n_split), block 128 = 4 warps. The block's split covers keys
//   [split·keys_per_split, +keys_per_split) ∩ [0, n_keys); warp w takes every 4th key.
//   Lane i holds q[i], q[i + 32], … and the same output dimensions; a key's score is a warp sum
//   (__shfl_xor_sync, so every lane has it); the 4 warps' (max, sum, output) merge in shared
//   memory and the block writes its partial to `part` (max = −inf, sum = 0 when it saw no key).
// - attention_decode_combine(part, out, t, n_head, head_dim, n_split, table, table_cols, route).
//   Launch: grid (n_head, t), block 128: rescales the splits to the common maximum and divides by
//   the total sum (0 output when no key was seen, as the CPU).

#include "common.cuh"

#define MAXD 256
#define DPL (MAXD / 32)  // output dimensions per lane
#define WARPS 4

template <typename KV>
__device__ __forceinline__ void attention_decode_body(const float* q, const u8* k, const u8* v, const u32* positions, float* part, int t, int s,
                                                      int n_head, int n_kv_head, int head_dim, float scale, int causal, int keys_per_split,
                                                      const u32* table, int block_size, int table_cols, int window, int route, u32* err) {
    __shared__ float sm[WARPS], sl[WARPS];
    __shared__ float so[WARPS][MAXD];
    const int h = blockIdx.x, ti = blockIdx.y, split = blockIdx.z, n_split = gridDim.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (ti >= t || h >= n_head) return;  // block-uniform
    if (route && table_row_shared(table, t, table_cols, ti)) return;  // attention_prefill's row
    const int kvh = h / (n_head / n_kv_head);
    const u32 n_blocks = block_size > 0 ? (u32)(s / block_size) : 0u;
    const u64 cap = block_size > 0 ? (u64)table_cols * block_size : (u64)s;
    int n_keys = (int)cap;
    if (causal) n_keys = (int)min((u64)positions[ti] + 1, cap);
    const u32* row_table = table + (u64)ti * table_cols;
    // A sliding window hides the keys before n_keys − window (splits wholly before it are empty).
    const int first = (causal && window > 0 && n_keys > window) ? n_keys - window : 0;
    const int j0 = max(split * keys_per_split, first);
    // The split's own end, not j0 + keys_per_split: a window starting mid-split would overlap the next.
    const int j1 = (int)min((u64)(split + 1) * keys_per_split, (u64)n_keys);

    const float* qh = q + ((u64)ti * n_head + h) * head_dim;
    float qr[DPL], o[DPL];
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        const int d = lane + 32 * i;
        qr[i] = d < head_dim ? qh[d] : 0.0f;
        o[i] = 0.0f;
    }
    float m = NEG_INF, l = 0.0f;
    for (int j = j0 + warp; j < j1; j += WARPS) {
        const u64 row = block_size > 0 ? paged_row(row_table, j, block_size, n_blocks, err) : (u64)j;
        const u64 off = (row * n_kv_head + kvh) * head_dim;
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            const int d = lane + 32 * i;
            if (d < head_dim) dot += qr[i] * load_kv<KV>(k, off, d);
        }
        const float sc = warp_sum_all(dot) * scale;
        // Rescale what was accumulated under the old maximum.
        const float m_new = fmaxf(m, sc);
        const float corr = expf(m - m_new);
        const float p = expf(sc - m_new);
        l = l * corr + p;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            const int d = lane + 32 * i;
            if (d < head_dim) o[i] = o[i] * corr + p * load_kv<KV>(v, off, d);
        }
        m = m_new;
    }
    if (lane == 0) {
        sm[warp] = m;
        sl[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        const int d = lane + 32 * i;
        if (d < head_dim) so[warp][d] = o[i];
    }
    __syncthreads();
    float mx = NEG_INF;
    for (int w = 0; w < WARPS; w++) mx = fmaxf(mx, sm[w]);
    float* dst = part + (((u64)ti * n_head + h) * n_split + split) * (head_dim + 2);
    if (threadIdx.x == 0) {
        float total = 0.0f;
        if (mx != NEG_INF)
            for (int w = 0; w < WARPS; w++) total += sm[w] == NEG_INF ? 0.0f : sl[w] * expf(sm[w] - mx);
        dst[0] = mx;
        dst[1] = total;
    }
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float acc = 0.0f;
        if (mx != NEG_INF)
            for (int w = 0; w < WARPS; w++) acc += sm[w] == NEG_INF ? 0.0f : so[w][d] * expf(sm[w] - mx);
        dst[2 + d] = acc;
    }
}

#define ATTENTION_DECODE(name, KV)                                                                                                         \
    extern "C" __global__ void __launch_bounds__(128)                                                                                      \
        name(const float* q, const u8* k, const u8* v, const u32* positions, float* part, int t, int s, int n_head, int n_kv_head,        \
             int head_dim, float scale, int causal, int keys_per_split, const u32* table, int block_size, int table_cols, int window,     \
             int route, u32* err) {                                                                                                        \
        attention_decode_body<KV>(q, k, v, positions, part, t, s, n_head, n_kv_head, head_dim, scale, causal, keys_per_split, table,     \
                                  block_size, table_cols, window, route, err);                                                             \
    }

ATTENTION_DECODE(attention_decode_f32, KvF32)
ATTENTION_DECODE(attention_decode_f16, KvF16)
ATTENTION_DECODE(attention_decode_q8_0, KvQ8_0)

extern "C" __global__ void __launch_bounds__(128) attention_decode_combine(const float* part, float* out, int t, int n_head, int head_dim, int n_split,
                                                                           const u32* table, int table_cols, int route) {
    const int h = blockIdx.x, ti = blockIdx.y;
    if (ti >= t || h >= n_head) return;
    if (route && table_row_shared(table, t, table_cols, ti)) return;
    const float* src = part + ((u64)ti * n_head + h) * n_split * (head_dim + 2);
    float mx = NEG_INF;
    for (int sp = 0; sp < n_split; sp++) mx = fmaxf(mx, src[sp * (head_dim + 2)]);
    float total = 0.0f;
    if (mx != NEG_INF)
        for (int sp = 0; sp < n_split; sp++) {
            const float ms = src[sp * (head_dim + 2)];
            if (ms != NEG_INF) total += src[sp * (head_dim + 2) + 1] * expf(ms - mx);
        }
    float* o = out + ((u64)ti * n_head + h) * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float acc = 0.0f;
        if (mx != NEG_INF)
            for (int sp = 0; sp < n_split; sp++) {
                const float ms = src[sp * (head_dim + 2)];
                if (ms != NEG_INF) acc += src[sp * (head_dim + 2) + 2 + d] * expf(ms - mx);
            }
        o[d] = total > 0.0f ? acc / total : 0.0f;
    }
}
