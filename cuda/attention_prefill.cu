// attention_prefill.cu: `Op::Attention` for many query rows (prefill), head_dim ≤ 128, contiguous
// or paged KV: softmax(q·kᵀ · scale + mask) · v with grouped-query heads and an online softmax
// over tiles of 32 keys staged in shared memory (flash attention, Dao et al., 2022), so no [T, S]
// score matrix exists. Under the causal mask query t sees keys 0 .. min(positions[t] + 1, n)
// (n = s, or table_cols · block_size when paged); with a sliding window W > 0 only the last W of
// them. Matches backend/cpu/attention.rs up to summation order (the CPU folds keys in one at a
// time, here 32 at a time).
//
// Paged (block_size > 0): k and v are a pool of s / block_size blocks and key j of query row t is
// row table[t, j / block_size] · block_size + j % block_size (common.cuh paged_row). A key tile is
// shared by query rows only when they read the same keys, i.e. have equal block-table rows: the
// block splits its query rows into runs of equal table rows (one run for a CTA inside one sequence's
// prefill) and walks the key tiles once per run, each run's rows folding in the tiles loaded
// through their own table. Rows whose table equals neither neighbour's (decode rows of a mixed
// batch) are left to attention_decode.cu, which plan.rs launches alongside with its router on; so
// rows of this batch are written by exactly one of the two.
//
// Keys and values are a KV cache of f32, f16 or q8_0 (one entry point each), converted to f32 as
// a tile is staged (common.cuh load_kv); every product and sum is f32.
//
// Shapes: q, out: [t, n_head*head_dim] f32; k, v: [s, n_kv_head*head_dim] f32, f16, or q8_0
// (head_dim % 32 == 0 then); positions: [t] u32 (ignored when causal == 0); table: [t,
// table_cols] u32 (unread when block_size == 0).
// Entry points: attention_prefill_{f32,f16,q8_0}(q, k, v, positions, out, t, s, n_head,
// n_kv_head, head_dim, scale, causal, window, table, block_size, table_cols, err) (by the type of
// k and v; err: the plan's error word).
// Launch: grid (ceil(t / rows), n_kv_head · chunks), block 128 = 4 warps, with group = n_head /
// n_kv_head, hpb = min(group, 16) heads per block, rows = 16 / hpb, chunks = ceil(group / hpb)
// (plan.rs prefill_grid). The block owns 16 slots, (query row, head) pairs: `rows` rows under
// hpb heads that read the same kv head (grouped-query attention), so each K/V tile it loads serves
// all of them (4 slots per warp), and walks key tiles up to the largest n_keys among a run's
// slots. In a tile lane j scores key j against the warp's query (a full dot product from shared
// memory; K rows are padded to head_dim + 1 floats so the 32 lanes hit 32 banks), the warp takes
// the tile's max and sum with __shfl_xor_sync, and lane i updates output dimensions i, i + 32, …
// from the 32 probabilities
// (broadcast with __shfl_sync) and V's rows. Shared memory: 8 + 16.5 + 16 KiB and a little.

#include "common.cuh"

#define MAXD 128
#define DPL (MAXD / 32)
#define BQ 16
#define QPW 4  // queries per warp
#define BKV 32

template <typename KV>
__device__ __forceinline__ void attention_prefill_body(const float* q, const u8* k, const u8* v, const u32* positions, float* out, int t, int s,
                                                       int n_head, int n_kv_head, int head_dim, float scale, int causal, int window, const u32* table,
                                                       int block_size, int table_cols, u32* err) {
    __shared__ float qs[BQ][MAXD];
    __shared__ float ks[BKV][MAXD + 1];
    __shared__ float vs[BKV][MAXD];
    __shared__ u64 krow[BKV];          // pool row of each key of the tile
    __shared__ int run_start[BQ + 1];  // run_start[r]: row t0 + r starts a run (differs from t0 + r − 1)
    __shared__ int snk[BQ], slo[BQ];   // keys [slo, snk) each slot sees
    __shared__ int own[BQ];            // the slot is a (row, head) this block writes
    const int group = n_head / n_kv_head, hpb = min(group, BQ), rows = BQ / hpb, chunks = (group + hpb - 1) / hpb;
    const int kvh = blockIdx.y / chunks, h0 = kvh * group + (blockIdx.y % chunks) * hpb;  // first head of the block
    const int h_end = (kvh + 1) * group;                                                  // past the group's last head
    const int t0 = blockIdx.x * rows;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (kvh >= n_kv_head || head_dim > MAXD) return;  // block-uniform
    const bool paged = block_size > 0;
    const u32 n_blocks = paged ? (u32)(s / block_size) : 0u;
    const u64 cap = paged ? (u64)table_cols * block_size : (u64)s;

    // Slot qi is query row t0 + qi / hpb under head h0 + qi % hpb.
    for (int i = threadIdx.x; i < BQ * head_dim; i += blockDim.x) {
        const int qi = i / head_dim, d = i % head_dim, tq = t0 + qi / hpb, h = h0 + qi % hpb;
        qs[qi][d] = (qi < rows * hpb && tq < t && h < h_end) ? q[((u64)tq * n_head + h) * head_dim + d] : 0.0f;
    }
    // Runs: warp w compares rows t0 + r − 1 and t0 + r for r = w, w + 4, … ≤ rows (a row outside
    // [0, t) equals nothing). Contiguous KV: one run, every key row the same for every query.
    for (int r = warp; r <= rows; r += QPW) {
        const int a = t0 + r - 1, b = t0 + r;
        int differs = !(a >= 0 && b < t);
        if (paged && !differs)
            for (int c = lane; c < table_cols; c += 32) differs |= table[(u64)a * table_cols + c] != table[(u64)b * table_cols + c];
        differs = __any_sync(0xffffffffu, differs);
        if (lane == 0) run_start[r] = paged ? differs : (r == 0);
    }
    __syncthreads();
    if (threadIdx.x < BQ) {
        const int qi = threadIdx.x, r = qi / hpb, tq = t0 + r, h = h0 + qi % hpb;
        // A paged row alone in its run within the whole batch (rows t0 + r ± 1 both differ) is a
        // decode row: attention_decode serves it. Row t0 + rows' comparison is run_start[rows].
        const bool mine = r < rows && tq < t && h < h_end && (!paged || !run_start[r] || !run_start[r + 1]);
        const int n = !mine ? 0 : causal ? (int)min((u64)positions[tq] + 1, cap) : (int)cap;
        own[qi] = mine;
        snk[qi] = n;
        slo[qi] = (causal && window > 0 && n > window) ? n - window : 0;
    }
    __syncthreads();

    float m[QPW], l[QPW], o[QPW][DPL];
#pragma unroll
    for (int a = 0; a < QPW; a++) {
        m[a] = NEG_INF;
        l[a] = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++) o[a][i] = 0.0f;
    }

    // Every thread walks the same runs and tiles (all bounds come from shared memory), so the
    // __syncthreads below are reached by the whole block.
    for (int r0 = 0; r0 < rows;) {
        int r1 = r0 + 1;
        while (r1 < rows && !run_start[r1]) r1++;
        const int q0 = r0 * hpb, q1 = r1 * hpb;  // the run's slots
        int max_keys = 0;
        for (int qi = q0; qi < q1; qi++) max_keys = max(max_keys, snk[qi]);
        const u32* run_table = table + (u64)(t0 + r0) * table_cols;
        for (int jt = 0; jt < max_keys; jt += BKV) {
            __syncthreads();  // the previous tile is no longer being read
            if (threadIdx.x < BKV) {
                const int j = jt + threadIdx.x;
                krow[threadIdx.x] = j >= max_keys ? 0 : paged ? paged_row(run_table, j, block_size, n_blocks, err) : (u64)j;
            }
            __syncthreads();
            for (int i = threadIdx.x; i < BKV * head_dim; i += blockDim.x) {
                const int jj = i / head_dim, d = i % head_dim;
                const u64 off = (krow[jj] * n_kv_head + kvh) * head_dim;
                const bool in = jt + jj < max_keys;
                ks[jj][d] = in ? load_kv<KV>(k, off, d) : 0.0f;
                vs[jj][d] = in ? load_kv<KV>(v, off, d) : 0.0f;
            }
            __syncthreads();
#pragma unroll
            for (int a = 0; a < QPW; a++) {
                const int qi = warp * QPW + a;
                if (qi < q0 || qi >= q1) continue;  // warp-uniform: another run's slot
                const int j = jt + lane;
                const bool valid = j < snk[qi] && j >= slo[qi];
                float sc = NEG_INF;
                if (valid) {
                    float dot = 0.0f;
                    for (int d = 0; d < head_dim; d++) dot += qs[qi][d] * ks[lane][d];
                    sc = dot * scale;
                }
                const float mt = warp_max_all(sc);
                if (mt == NEG_INF) continue;  // no key of this tile is visible to this query (warp-uniform)
                const float m_new = fmaxf(m[a], mt);
                const float corr = expf(m[a] - m_new);
                const float p = valid ? expf(sc - m_new) : 0.0f;
                l[a] = l[a] * corr + warp_sum_all(p);
#pragma unroll
                for (int i = 0; i < DPL; i++) o[a][i] *= corr;
                for (int jj = 0; jj < BKV; jj++) {
                    const float pj = __shfl_sync(0xffffffffu, p, jj);
#pragma unroll
                    for (int i = 0; i < DPL; i++) {
                        const int d = lane + 32 * i;
                        if (d < head_dim) o[a][i] += pj * vs[jj][d];
                    }
                }
                m[a] = m_new;
            }
        }
        r0 = r1;
    }
#pragma unroll
    for (int a = 0; a < QPW; a++) {
        const int qi = warp * QPW + a;
        // Slots past t or the group, and decode rows (attention_decode writes them), are not this block's.
        if (!own[qi]) continue;
        float* dst = out + ((u64)(t0 + qi / hpb) * n_head + h0 + qi % hpb) * head_dim;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            const int d = lane + 32 * i;
            if (d < head_dim) dst[d] = l[a] > 0.0f ? o[a][i] / l[a] : 0.0f;
        }
    }
}

#define ATTENTION_PREFILL(name, KV)                                                                                                         \
    extern "C" __global__ void __launch_bounds__(128)                                                                                       \
        name(const float* q, const u8* k, const u8* v, const u32* positions, float* out, int t, int s, int n_head, int n_kv_head,           \
             int head_dim, float scale, int causal, int window, const u32* table, int block_size, int table_cols, u32* err) {               \
        attention_prefill_body<KV>(q, k, v, positions, out, t, s, n_head, n_kv_head, head_dim, scale, causal, window, table, block_size,  \
                                   table_cols, err);                                                                                        \
    }

ATTENTION_PREFILL(attention_prefill_f32, KvF32)
ATTENTION_PREFILL(attention_prefill_f16, KvF16)
ATTENTION_PREFILL(attention_prefill_q8_0, KvQ8_0)
