// attention_prefill.cu: `Op::Attention` for many query rows (prefill), head_dim ≤ 128:
// softmax(q·kᵀ · scale + mask) · v with grouped-query heads and an online softmax over tiles of
// 32 keys staged in shared memory, so no [T, S] score matrix exists. Under the causal mask query
// t sees keys 0 .. min(positions[t] + 1, s); with a sliding window W > 0 only the last W of them.
// Matches backend/cpu/attention.rs up to summation
// order (the CPU folds keys in one at a time, here 32 at a time).
//
// Shapes: q, out: [t, n_head*head_dim]; k, v: [s, n_kv_head*head_dim]; positions: [t] u32
// (ignored when causal == 0).
// Entry point: attention_prefill(q, k, v, positions, out, t, s, n_head, n_kv_head, head_dim,
// scale, causal, window).
// Launch: grid (ceil(t / 16), n_head), block 128 = 4 warps; the block owns 16 query rows of head h
// (4 per warp) and walks key tiles up to the largest n_keys among them. In a tile lane j scores
// key j against the warp's query (a full dot product from shared memory; K rows are padded to
// head_dim + 1 floats so the 32 lanes hit 32 banks), the warp takes the tile's max and sum with
// __shfl_xor_sync, and lane i updates output dimensions i, i + 32, … from the 32 probabilities
// (broadcast with __shfl_sync) and V's rows. Shared memory: 8 + 16.5 + 16 KiB.

#include "common.cuh"

#define MAXD 128
#define DPL (MAXD / 32)
#define BQ 16
#define QPW 4  // queries per warp
#define BKV 32

extern "C" __global__ void __launch_bounds__(128) attention_prefill(const float* q, const float* k, const float* v, const u32* positions, float* out,
                                                                    int t, int s, int n_head, int n_kv_head, int head_dim, float scale, int causal, int window) {
    __shared__ float qs[BQ][MAXD];
    __shared__ float ks[BKV][MAXD + 1];
    __shared__ float vs[BKV][MAXD];
    const int h = blockIdx.y, t0 = blockIdx.x * BQ;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (h >= n_head || head_dim > MAXD) return;
    const int kvh = h / (n_head / n_kv_head);

    for (int i = threadIdx.x; i < BQ * head_dim; i += blockDim.x) {
        const int qi = i / head_dim, d = i % head_dim, tq = t0 + qi;
        qs[qi][d] = tq < t ? q[((u64)tq * n_head + h) * head_dim + d] : 0.0f;
    }
    // Keys each query sees (0 for rows past t), and the most any of the block's queries sees.
    // With a window, each query's first visible key too.
    int nk[QPW], lo[QPW];
    int max_keys = 0;
    for (int qi = 0; qi < BQ; qi++) {
        const int tq = t0 + qi;
        const int n = tq >= t ? 0 : causal ? (int)min((u64)positions[tq] + 1, (u64)s) : s;
        max_keys = max(max_keys, n);
        if (qi / QPW == warp) {
            nk[qi % QPW] = n;
            lo[qi % QPW] = (causal && window > 0 && n > window) ? n - window : 0;
        }
    }

    float m[QPW], l[QPW], o[QPW][DPL];
#pragma unroll
    for (int a = 0; a < QPW; a++) {
        m[a] = NEG_INF;
        l[a] = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++) o[a][i] = 0.0f;
    }

    for (int jt = 0; jt < max_keys; jt += BKV) {
        __syncthreads();  // the previous tile (and qs, the first time) is no longer being read / is written
        for (int i = threadIdx.x; i < BKV * head_dim; i += blockDim.x) {
            const int jj = i / head_dim, d = i % head_dim, j = jt + jj;
            const u64 off = ((u64)j * n_kv_head + kvh) * head_dim + d;
            const bool in = j < max_keys;
            ks[jj][d] = in ? k[off] : 0.0f;
            vs[jj][d] = in ? v[off] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int a = 0; a < QPW; a++) {
            const int qi = warp * QPW + a;
            const int j = jt + lane;
            const bool valid = j < nk[a] && j >= lo[a];
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
#pragma unroll
    for (int a = 0; a < QPW; a++) {
        const int tq = t0 + warp * QPW + a;
        if (tq >= t) continue;
        float* dst = out + ((u64)tq * n_head + h) * head_dim;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            const int d = lane + 32 * i;
            if (d < head_dim) dst[d] = l[a] > 0.0f ? o[a][i] / l[a] : 0.0f;
        }
    }
}
