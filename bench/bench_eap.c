/* Edge attribution patching on the CPU: Wang et al.'s IOI prompts (the
 * library's generator, seeded), clean -> corrupt (ABC), metric logit(IO) -
 * logit(S), every edge of the graph (hs_eap.h): EAP (one backward per batch)
 * and EAP-IG with --ig-steps m (m backwards). Reports the best time of --reps
 * for each, the mean metrics and the edges of largest |score|. Writes the
 * prompts as token ids (--ids, JSONL) and the mean edge scores [U, V] as raw
 * f32 (--out for EAP, --out-ig for EAP-IG) for bench/peer_eap.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_eap.h"
#include "hs_bench_ioi.h"
#include "hs_bench_util.h"

/* The mean scores of N prompts in batches of rows, the best time of reps. */
static hs_status time_eap(hs_session *s, const hs_model_config *c, const hs_prompts *pr, const int32_t *corrupt,
                          int rows, int steps, int reps, double *edges, double *clean, double *corrupted, double *best,
                          hs_err *err) {
    const int64_t uv = (int64_t)hs_eap_n_upstream(c) * hs_eap_n_downstream(c);
    hs_eap_params p = hs_eap_default_params();
    p.batch_rows = rows, p.ig_steps = steps;
    *best = INFINITY;
    for (int r = 0; r < reps; r++) { /* the best of reps: the machine is shared */
        memset(edges, 0, (size_t)uv * sizeof *edges);
        *clean = *corrupted = 0;
        const double t0 = hs_bench_now_s();
        hs_status st = hs_eap_scores(s, pr, corrupt, &p, 0, pr->N, edges, clean, corrupted, err);
        if (st) return st;
        const double t = hs_bench_now_s() - t0;
        *best = t < *best ? t : *best;
    }
    for (int64_t i = 0; i < uv; i++) edges[i] /= pr->N;
    *clean /= pr->N, *corrupted /= pr->N;
    return HS_OK;
}

static int write_raw(const char *path, const double *edges, int64_t n) {
    FILE *f = fopen(path, "wb");
    int ok = f != NULL;
    for (int64_t i = 0; ok && i < n; i++) {
        const float v = (float)edges[i];
        ok = fwrite(&v, 4, 1, f) == 1;
    }
    if (f && fclose(f)) ok = 0;
    if (!ok) fprintf(stderr, "bench_eap: cannot write %s\n", path);
    return ok;
}

/* "MLP1->logits:1.86,..." for the k edges of largest |score|. */
static void top_edges(const hs_model_config *c, const double *edges, int k, char *buf, size_t n) {
    const int U = hs_eap_n_upstream(c), V = hs_eap_n_downstream(c);
    uint8_t *used = calloc((size_t)U * V, 1);
    size_t len = 0;
    buf[0] = 0;
    for (int r = 0; r < k && used; r++) {
        int64_t best = -1;
        for (int64_t i = 0; i < (int64_t)U * V; i++)
            if (!used[i] && hs_eap_is_edge(c, (int)(i / V), (int)(i % V)) &&
                (best < 0 || fabs(edges[i]) > fabs(edges[best])))
                best = i;
        if (best < 0) break;
        used[best] = 1;
        char u[24], v[24];
        hs_eap_upstream_name(c, (int)(best / V), u, sizeof u);
        hs_eap_downstream_name(c, (int)(best % V), v, sizeof v);
        len += (size_t)snprintf(buf + len, len < n ? n - len : 0, "%s%s->%s:%.4f", r ? "," : "", u, v, edges[best]);
    }
    free(used);
}

int main(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *out_ig = NULL, *ids = NULL;
    int N = 32, threads = 0, reps = 3, rows = 0, steps = 5;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--prompts") && i + 1 < argc) N = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ig-steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--out-ig") && i + 1 < argc) out_ig = argv[++i];
        else if (!strcmp(argv[i], "--ids") && i + 1 < argc) ids = argv[++i];
        else model = argv[i];
    }
    if (!model || N < 1 || reps < 1 || steps < 2) {
        fprintf(stderr, "usage: bench_eap MODEL [--prompts 32] [--seed 1] [--threads N] [--reps 3] [--rows N] "
                        "[--ig-steps 5] [--ids F.jsonl] [--out F] [--out-ig F]\n");
        return 2;
    }
    if (rows <= 0) rows = N;
    hs_err err = {0};
    hs_bench_ioi b;
    hs_session *s = NULL;
    if (hs_bench_ioi_open(model, N, seed, threads, ids, &b, &err)) goto fail;
    const hs_dataset *d = b.d;
    if (hs_session_init(b.be, b.m, rows, d->T, &s, &err)) goto fail;
    const hs_model_config *c = hs_model_get_config(b.m);
    const int64_t uv = (int64_t)hs_eap_n_upstream(c) * hs_eap_n_downstream(c);
    const hs_prompts pr = hs_dataset_prompts(d);
    double *eap = malloc((size_t)uv * sizeof *eap), *ig = malloc((size_t)uv * sizeof *ig), t_eap, t_ig, mc, mx;
    if (!eap || !ig) {
        fprintf(stderr, "bench_eap: out of memory\n");
        return 1;
    }
    if (time_eap(s, c, &pr, d->corrupt_tokens, rows, 1, reps, eap, &mc, &mx, &t_eap, &err) ||
        time_eap(s, c, &pr, d->corrupt_tokens, rows, steps, reps, ig, &mc, &mx, &t_ig, &err))
        goto fail;
    if ((out && !write_raw(out, eap, uv)) || (out_ig && !write_raw(out_ig, ig, uv))) return 1;
    const int V = hs_eap_n_downstream(c);
    int edges = 0;
    for (int64_t i = 0; i < uv; i++) edges += hs_eap_is_edge(c, (int)(i / V), (int)(i % V));
    char top[1024], top_ig[1024];
    top_edges(c, eap, 5, top, sizeof top);
    top_edges(c, ig, 5, top_ig, sizeof top_ig);
    printf("impl=headsweep prompts=%d seq=%d rows=%d edges=%d ig_steps=%d eap_seconds=%.3f ig_seconds=%.3f "
           "clean_ld=%.4f corrupt_ld=%.4f top_eap=%s top_ig=%s\n",
           N, d->T, rows, edges, steps, t_eap, t_ig, mc, mx, top, top_ig);
    free(eap), free(ig);
    hs_session_free(s);
    hs_bench_ioi_close(&b);
    return 0;
fail:
    fprintf(stderr, "bench_eap: %s\n", err.msg);
    return 1;
}
