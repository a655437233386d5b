// llama_logits.c: llama.cpp's teacher-forced logits, for scripts/llama_spread.py.
//
// Reads cases from stdin, each as "p n rows" then n token ids then rows*3 "watch" ids (-1 for
// none): the prompt is ids[0..p), the continuation ids[p..n). Decodes the prompt and the
// continuation with flash attention off (argv[2] = 0) or on (1), in one batch (argv[3] = 0) or
// one token at a time after the prompt (1), and prints for each of the rows continuation
// positions, starting at the prompt's last token, one line:
//   argmax  best_logit  logit_of_the_next_id  logit_of_watch_0 .. _2
// Build: cc -O2 llama_logits.c -I$LLAMA/include -I$LLAMA/ggml/include -L$LLAMA/build/bin -lllama
#include "llama.h"
#include <stdio.h>
#include <stdlib.h>

static void print_row(const float *row, int nv, int next, const int *watch) {
    int best = 0;
    for (int v = 1; v < nv; v++)
        if (row[v] > row[best]) best = v;
    printf("%d %.6f %.6f", best, row[best], row[next]);
    for (int w = 0; w < 3; w++) printf(" %.6f", watch[w] >= 0 && watch[w] < nv ? row[watch[w]] : 0.0);
    printf("\n");
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.gguf FLASH_ATTN(0|1) TOKEN_BY_TOKEN(0|1) < cases\n", argv[0]);
        return 2;
    }
    int fa = atoi(argv[2]), tokwise = atoi(argv[3]);
    llama_backend_init();
    struct llama_model *model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) return 1;
    int nv = llama_vocab_n_tokens(llama_model_get_vocab(model));
    int p, n, rows;
    while (scanf("%d %d %d", &p, &n, &rows) == 3) {
        if (p < 1 || rows < 1 || p - 1 + rows >= n) return 2; // every row needs its next id
        int *ids = malloc(sizeof(int) * n), *watch = malloc(sizeof(int) * 3 * rows);
        for (int i = 0; i < n; i++) if (scanf("%d", &ids[i]) != 1) return 2;
        for (int i = 0; i < 3 * rows; i++) if (scanf("%d", &watch[i]) != 1) return 2;
        struct llama_context_params cp = llama_context_default_params();
        cp.n_ctx = n + 64;
        cp.n_batch = cp.n_ctx;
        cp.n_threads = cp.n_threads_batch = 2;
        cp.flash_attn_type = fa ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
        struct llama_context *ctx = llama_init_from_model(model, cp);
        struct llama_batch b = llama_batch_init(n, 0, 1);
        int upto = tokwise ? p : p - 1 + rows; // tokens in the first batch
        for (int i = 0; i < upto; i++) {
            b.token[i] = ids[i];
            b.pos[i] = i;
            b.n_seq_id[i] = 1;
            b.seq_id[i][0] = 0;
            b.logits[i] = i >= p - 1;
        }
        b.n_tokens = upto;
        if (llama_decode(ctx, b)) return 1;
        for (int i = p - 1; i < upto; i++) print_row(llama_get_logits_ith(ctx, i), nv, ids[i + 1], &watch[3 * (i - p + 1)]);
        for (int i = upto; i < p - 1 + rows; i++) {
            b.token[0] = ids[i];
            b.pos[0] = i;
            b.n_seq_id[0] = 1;
            b.seq_id[0][0] = 0;
            b.logits[0] = 1;
            b.n_tokens = 1;
            if (llama_decode(ctx, b)) return 1;
            print_row(llama_get_logits_ith(ctx, 0), nv, ids[i + 1], &watch[3 * (i - p + 1)]);
        }
        fflush(stdout);
        llama_batch_free(b);
        llama_free(ctx);
        free(ids);
        free(watch);
    }
    llama_model_free(model);
    return 0;
}
