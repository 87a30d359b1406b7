/* Circuit faithfulness on the CPU: Wang et al.'s IOI prompts (the library's
 * generator, seeded), clean -> corrupt (ABC), metric logit(IO) - logit(S).
 * Ranks every edge of the graph (hs_eap.h) by |EAP score|, then evaluates
 * the circuits of the --sizes strongest edges (hs_eap_circuit: a corrupted
 * and a clean forward, then one forward per circuit with each node reading
 * its own copy of the stream). Reports the best time of --reps, a plain
 * forward's time for scale, and each circuit's mean metric and faithfulness.
 * Writes the prompts' token ids (--ids, JSONL), the ranking (--rank, raw f32
 * [U, V], NaN where no edge) and each prompt's metric per circuit (--out, raw
 * f32 [N, K]) for bench/peer_eap_circuit.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_eap.h"
#include "hs_bench_ioi.h"
#include "hs_bench_util.h"

typedef struct {
    double key;
    int64_t idx;
} ranked;

static int by_key(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int write_raw(const char *path, const float *v, int64_t n) {
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(v, sizeof *v, (size_t)n, f) == (size_t)n;
    if (f && fclose(f)) ok = 0;
    if (!ok) fprintf(stderr, "bench_eap_circuit: cannot write %s\n", path);
    return ok;
}

int main(int argc, char **argv) {
    const char *model = NULL, *ids = NULL, *rank_out = NULL, *out = NULL, *sizes_arg = "100,1000,10000";
    int N = 32, threads = 0, reps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--prompts") && i + 1 < argc) N = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) sizes_arg = argv[++i];
        else if (!strcmp(argv[i], "--ids") && i + 1 < argc) ids = argv[++i];
        else if (!strcmp(argv[i], "--rank") && i + 1 < argc) rank_out = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else model = argv[i];
    }
    int sizes[16], K = 0;
    for (const char *p = sizes_arg; *p && K < 16;) {
        sizes[K++] = atoi(p);
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
    if (!model || N < 1 || reps < 1 || K < 1) {
        fprintf(stderr, "usage: bench_eap_circuit MODEL [--prompts 32] [--threads N] [--reps 3] "
                        "[--sizes 100,1000,10000] [--ids F.jsonl] [--rank F] [--out F]\n");
        return 2;
    }
    hs_err err = {0};
    hs_bench_ioi b;
    hs_session *s = NULL;
    if (hs_bench_ioi_open(model, N, 1, threads, ids, &b, &err)) goto fail;
    const hs_dataset *d = b.d;
    if (hs_session_init(b.be, b.m, N, d->T, &s, &err)) goto fail;
    const hs_model_config *c = hs_model_get_config(b.m);
    const int U = hs_eap_n_upstream(c), V = hs_eap_n_downstream(c);
    const int64_t uv = (int64_t)U * V;
    const hs_prompts pr = hs_dataset_prompts(d);
    double *scores = calloc((size_t)uv, sizeof *scores), mc = 0, mx = 0;
    float *rank = malloc((size_t)uv * sizeof *rank), *metric = malloc((size_t)N * K * sizeof *metric);
    float *clean = malloc((size_t)N * sizeof *clean), *corrupted = malloc((size_t)N * sizeof *corrupted);
    ranked *order = malloc((size_t)uv * sizeof *order);
    uint8_t *in = malloc((size_t)K * uv);
    if (!scores || !rank || !metric || !clean || !corrupted || !order || !in) {
        fprintf(stderr, "bench_eap_circuit: out of memory\n");
        return 1;
    }
    hs_eap_params ep = hs_eap_default_params();
    ep.batch_rows = N;
    if (hs_eap_scores(s, &pr, d->corrupt_tokens, &ep, 0, N, scores, &mc, &mx, &err)) goto fail;
    int64_t n = 0;
    for (int64_t i = 0; i < uv; i++) {
        rank[i] = NAN;
        if (hs_eap_is_edge(c, (int)(i / V), (int)(i % V))) order[n++] = (ranked){fabs(scores[i]), i};
    }
    qsort(order, (size_t)n, sizeof *order, by_key);
    for (int64_t k = 0; k < n; k++) rank[order[k].idx] = (float)k;
    const uint8_t *circuits[16];
    for (int k = 0; k < K; k++) {
        for (int64_t i = 0; i < uv; i++) in[k * uv + i] = rank[i] < (float)sizes[k];
        circuits[k] = in + k * uv;
    }
    const hs_eap_circuit_params p = {.metric = HS_METRIC_LOGIT_DIFF, .batch_rows = N, .circuits = circuits,
                                     .n_circuits = K};
    double best = INFINITY, plain = INFINITY;
    for (int r = 0; r < reps; r++) { /* the best of reps: the machine is shared */
        const double t0 = hs_bench_now_s();
        if (hs_eap_circuit(s, &pr, d->corrupt_tokens, &p, 0, N, metric, clean, corrupted, &err)) goto fail;
        best = fmin(best, hs_bench_now_s() - t0);
    }
    int32_t *mask = malloc((size_t)N * d->T * sizeof *mask);
    float *logits = malloc((size_t)N * c->n_vocab * sizeof *logits);
    for (int64_t i = 0; mask && i < (int64_t)N * d->T; i++) mask[i] = i % d->T < pr.lengths[i / d->T];
    const hs_batch batch = {.B = N, .T = d->T, .tokens = pr.tokens, .mask = mask};
    for (int r = 0; mask && logits && r < reps; r++) { /* a plain forward of the batch, for scale */
        const double t0 = hs_bench_now_s();
        if (hs_forward(s, &batch, NULL, logits, &err)) goto fail;
        plain = fmin(plain, hs_bench_now_s() - t0);
    }
    if ((rank_out && !write_raw(rank_out, rank, uv)) || (out && !write_raw(out, metric, (int64_t)N * K))) return 1;
    double cl = 0, co = 0;
    for (int i = 0; i < N; i++) cl += clean[i] / N, co += corrupted[i] / N;
    printf("impl=headsweep prompts=%d seq=%d edges=%lld circuits=%d seconds=%.3f forward_seconds=%.3f "
           "clean_ld=%.4f corrupt_ld=%.4f",
           N, d->T, (long long)n, K, best, plain, cl, co);
    for (int k = 0; k < K; k++) {
        double m = 0;
        for (int i = 0; i < N; i++) m += metric[i * K + k] / N;
        printf(" n%d_ld=%.4f n%d_faith=%.4f", sizes[k], m, sizes[k], (m - co) / (cl - co));
    }
    printf("\n");
    free(scores), free(rank), free(metric), free(clean), free(corrupted), free(order), free(in), free(mask);
    free(logits);
    hs_session_free(s);
    hs_bench_ioi_close(&b);
    return 0;
fail:
    fprintf(stderr, "bench_eap_circuit: %s\n", err.msg);
    return 1;
}
