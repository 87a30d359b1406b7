/* Attribution patching vs activation patching on the CPU: Wang et al.'s IOI
 * prompts (the library's generator, seeded), clean -> corrupt (ABC) patching
 * of every head's z at all positions, metric logit(IO) - logit(S).
 *   exact:       hs_activation_patching, one patched forward per (prompt, head)
 *                with prefix reuse, batch_rows rows per forward;
 *   attribution: hs_attribution_patching, two forwards and one backward per
 *                batch of prompts;
 *   GradDrop:    the same with AtP*'s GradDrop (grad_drop), L(L-1)/2 more
 *                layer backwards per batch.
 * Reports both times and how well the estimate ranks the heads: Pearson and
 * Spearman correlation of the normalised [layer, head] maps, and the overlap
 * of their top-10 heads. Writes the prompts as token ids (--ids, JSONL) and the
 * attribution cells [N, L, H] then the corrupted metric [N] as raw f32 (--out,
 * and --out-gd for GradDrop's) for bench/peer_attribution.py. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "headsweep/hs_dataset.h"
#include "headsweep/hs_patching.h"
#include "hs_bench_ioi.h"
#include "hs_bench_util.h"

/* (mean over prompts - mean corrupt) / (mean clean - mean corrupt), per cell. */
static void normalise(const float *cells, const float *clean, const float *corrupt, int N, int K, double *out) {
    double mc = 0, mx = 0;
    for (int i = 0; i < N; i++) mc += clean[i] / N, mx += corrupt[i] / N;
    for (int k = 0; k < K; k++) {
        double m = 0;
        for (int i = 0; i < N; i++) m += cells[(int64_t)i * K + k] / N;
        out[k] = (m - mx) / (mc - mx);
    }
}

static double pearson(const double *a, const double *b, int n) {
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) ma += a[i] / n, mb += b[i] / n;
    for (int i = 0; i < n; i++) sab += (a[i] - ma) * (b[i] - mb), saa += (a[i] - ma) * (a[i] - ma), sbb += (b[i] - mb) * (b[i] - mb);
    return sab / sqrt(saa * sbb);
}

static const double *sort_key;
static int by_key_desc(const void *x, const void *y) {
    const double a = sort_key[*(const int *)x], b = sort_key[*(const int *)y];
    return a < b ? 1 : a > b ? -1 : *(const int *)x - *(const int *)y;
}

/* order[r] = the index of the r-th largest value. */
static void rank_desc(const double *v, int n, int *order) {
    for (int i = 0; i < n; i++) order[i] = i;
    sort_key = v;
    qsort(order, (size_t)n, sizeof *order, by_key_desc);
}

static double spearman(const double *a, const double *b, int n, int *oa, int *ob) {
    double *ra = malloc((size_t)n * sizeof *ra), *rb = malloc((size_t)n * sizeof *rb);
    rank_desc(a, n, oa), rank_desc(b, n, ob);
    for (int r = 0; r < n; r++) ra[oa[r]] = r, rb[ob[r]] = r; /* ties broken by index: continuous values */
    const double rho = pearson(ra, rb, n);
    free(ra), free(rb);
    return rho;
}

int main(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *out_gd = NULL, *ids = NULL, *only = "both";
    int N = 32, threads = 0, reps = 3, rows = 0;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--prompts") && i + 1 < argc) N = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--out-gd") && i + 1 < argc) out_gd = argv[++i];
        else if (!strcmp(argv[i], "--ids") && i + 1 < argc) ids = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else model = argv[i];
    }
    if (!model || N < 1 || reps < 1) {
        fprintf(stderr, "usage: bench_attribution MODEL [--prompts 32] [--seed 1] [--threads N] [--reps 3] "
                        "[--rows 4*heads] [--ids F.jsonl] [--out F] [--out-gd F] [--only attribution]\n");
        return 2;
    }
    hs_err err = {0};
    hs_bench_ioi b;
    hs_session *s = NULL;
    if (hs_bench_ioi_open(model, N, seed, threads, ids, &b, &err)) goto fail;
    hs_model *m = b.m;
    const hs_dataset *d = b.d;
    const hs_model_config *c = hs_model_get_config(m);
    const int L = c->n_layers, H = c->n_heads, K = L * H;
    if (rows <= 0) rows = 4 * H; /* configs/smollm2-ioi.yaml's batch_size: 4 prompts per patched forward */
    if (hs_session_init(b.be, m, rows > N ? rows : N, d->T, &s, &err)) goto fail;
    const hs_prompts pr = hs_dataset_prompts(d);
    float *cl = malloc((size_t)N * 4), *co = malloc((size_t)N * 4), *ex = malloc((size_t)N * K * 4),
          *at = malloc((size_t)N * K * 4), *acl = malloc((size_t)N * 4), *aco = malloc((size_t)N * 4),
          *gd = malloc((size_t)N * K * 4), *gcl = malloc((size_t)N * 4), *gco = malloc((size_t)N * 4);
    double *ne = malloc((size_t)K * sizeof *ne), *na = malloc((size_t)K * sizeof *na);
    int *oe = malloc((size_t)K * sizeof *oe), *oa = malloc((size_t)K * sizeof *oa);
    hs_patching_params p = hs_patching_default_params();
    p.batch_rows = rows;
    hs_patching_out oexact = {.clean = cl, .corrupt = co, .z_all_pos = ex};
    double t0 = hs_bench_now_s();
    if (strcmp(only, "attribution") && hs_activation_patching(s, m, &pr, d->corrupt_tokens, &p, &oexact, &err))
        goto fail;
    const double t_exact = hs_bench_now_s() - t0;
    p.batch_rows = N;
    hs_patching_out oatp = {.clean = acl, .corrupt = aco, .z_all_pos = at},
                    ogd = {.clean = gcl, .corrupt = gco, .z_all_pos = gd};
    double t_atp = INFINITY, t_gd = INFINITY;
    for (int gdrop = 0; gdrop < 2; gdrop++) { /* plain, then with GradDrop */
        p.grad_drop = gdrop;
        for (int r = 0; r < reps; r++) { /* the best of reps: the machine is shared */
            t0 = hs_bench_now_s();
            if (hs_attribution_patching(s, m, &pr, d->corrupt_tokens, &p, gdrop ? &ogd : &oatp, &err)) goto fail;
            double *best = gdrop ? &t_gd : &t_atp, t = hs_bench_now_s() - t0;
            *best = t < *best ? t : *best;
        }
    }
    const struct {
        const char *path;
        const float *cells, *corrupt;
    } files[2] = {{out, at, aco}, {out_gd, gd, gco}};
    for (int k = 0; k < 2; k++) {
        if (!files[k].path) continue;
        FILE *f = fopen(files[k].path, "wb");
        if (!f || fwrite(files[k].cells, 4, (size_t)N * K, f) != (size_t)N * K ||
            fwrite(files[k].corrupt, 4, (size_t)N, f) != (size_t)N || fclose(f)) {
            fprintf(stderr, "bench_attribution: cannot write %s\n", files[k].path);
            return 1;
        }
    }
    if (!strcmp(only, "attribution")) { /* for profiling: no exact map to compare with */
        printf("impl=headsweep heads=%d prompts=%d seq=%d attribution_seconds=%.3f graddrop_seconds=%.3f\n", K, N,
               d->T, t_atp, t_gd);
        return 0;
    }
    normalise(ex, cl, co, N, K, ne);
    normalise(at, acl, aco, N, K, na);
    const double rho = spearman(ne, na, K, oe, oa), r = pearson(ne, na, K);
    int overlap = 0;
    for (int i = 0; i < 10 && i < K; i++)
        for (int j = 0; j < 10 && j < K; j++) overlap += oe[i] == oa[j];
    double mc = 0, mx = 0;
    for (int i = 0; i < N; i++) mc += cl[i] / N, mx += co[i] / N;
    printf("impl=headsweep heads=%d prompts=%d seq=%d clean_ld=%.4f corrupt_ld=%.4f exact_seconds=%.3f "
           "attribution_seconds=%.3f graddrop_seconds=%.3f pearson=%.4f spearman=%.4f top10_overlap=%d "
           "top_exact=L%dH%d:%.3f top_attribution=L%dH%d:%.3f\n",
           K, N, d->T, mc, mx, t_exact, t_atp, t_gd, r, rho, overlap, oe[0] / H, oe[0] % H, ne[oe[0]], oa[0] / H,
           oa[0] % H, na[oa[0]]);
    printf("top10_exact=");
    for (int i = 0; i < 10 && i < K; i++) printf("%sL%dH%d", i ? "," : "", oe[i] / H, oe[i] % H);
    printf(" top10_attribution=");
    for (int i = 0; i < 10 && i < K; i++) printf("%sL%dH%d", i ? "," : "", oa[i] / H, oa[i] % H);
    printf("\n");
    free(cl), free(co), free(ex), free(at), free(acl), free(aco), free(gd), free(gcl), free(gco), free(ne), free(na);
    free(oe), free(oa);
    hs_session_free(s);
    hs_bench_ioi_close(&b);
    return 0;
fail:
    fprintf(stderr, "bench_attribution: %s\n", err.msg);
    return 1;
}
