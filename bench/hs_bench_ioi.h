/* hs_bench_ioi: what the IOI benchmarks (bench_attribution, bench_eap) share: the model, its
 * tokenizer, n prompts of Wang et al.'s task from the library's generator (seeded), their token
 * ids written as JSONL for the PyTorch peer when ids is given, and a CPU backend with threads
 * (0 = all cores). The session is each benchmark's own: its row count differs. */
#ifndef HS_BENCH_IOI_H
#define HS_BENCH_IOI_H

#include "headsweep/hs_backend.h"
#include "headsweep/hs_dataset.h"
#include "headsweep/hs_tokenizer.h"

typedef struct {
    hs_model *m;
    hs_tokenizer *tok;
    hs_dataset *d;
    hs_backend *be;
} hs_bench_ioi;

static inline void hs_bench_ioi_close(hs_bench_ioi *b) {
    hs_backend_free(b->be);
    hs_dataset_free(b->d);
    hs_tokenizer_free(b->tok);
    hs_model_free(b->m);
}

/* On failure what was opened is closed again and err says why. */
static inline hs_status hs_bench_ioi_open(const char *model, int n, unsigned long long seed, int threads,
                                          const char *ids, hs_bench_ioi *b, hs_err *err) {
    hs_backend_params bp = hs_backend_default_params();
    bp.n_threads = threads;
    *b = (hs_bench_ioi){0};
    hs_status st = hs_model_load(model, &b->m, err);
    if (!st) st = hs_tokenizer_load(model, &b->tok, err);
    if (!st) st = hs_dataset_ioi(b->tok, hs_model_get_config(b->m), n, seed, HS_DATASET_IOI_ALL, &b->d, err);
    if (!st && ids) st = hs_dataset_write_jsonl(b->d, NULL, ids, err);
    if (!st) st = hs_backend_cpu_init(&bp, &b->be, err);
    if (st) hs_bench_ioi_close(b);
    return st;
}

#endif
