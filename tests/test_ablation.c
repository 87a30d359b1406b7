/* Single-head ablation sweeps against transformers + forward pre-hooks on the
 * output projection (tests/fixtures/make_fixtures.py, every prompt run alone),
 * and the sweep's own invariants: prefix reuse and batching do not change it. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "headsweep/hs_ablation.h"
#include "headsweep/hs_safetensors.h"
#include "hs_testutil.h"

typedef struct {
    hs_model *m;
    hs_backend *be;
    hs_session *s;
    hs_st_file *ref;
    hs_prompts pr;
    int L, H;
} fx;

static void fx_init(fx *f, const char *model, int max_rows) {
    hs_err err = {0};
    memset(f, 0, sizeof *f);
    hs_test_load_fixture(model, "ablation", &f->m, &f->ref);
    const hs_st_tensor *tok = hs_st_find(f->ref, "tokens"), *len = hs_st_find(f->ref, "lengths");
    cr_assert(tok && len);
    f->pr = (hs_prompts){.N = (int)tok->shape[0], .T = (int)tok->shape[1], .tokens = tok->data, .lengths = len->data};
    f->L = hs_model_get_config(f->m)->n_layers;
    f->H = hs_model_get_config(f->m)->n_heads;
    cr_assert_eq(hs_backend_cpu_init(NULL, &f->be, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_session_init(f->be, f->m, max_rows, f->pr.T, &f->s, &err), HS_OK, "%s", err.msg);
}

static void fx_free(fx *f) {
    hs_session_free(f->s);
    hs_backend_free(f->be);
    hs_st_close(f->ref);
    hs_model_free(f->m);
}

static float *sweep(fx *f, hs_metric metric, hs_ablate_mode mode, int rows, int reuse, float *base) {
    float *delta = malloc((size_t)f->pr.N * f->L * f->H * sizeof(float));
    hs_ablation_params p = hs_ablation_default_params();
    p.metric = metric;
    p.mode = mode;
    p.batch_rows = rows;
    p.prefix_reuse = reuse;
    hs_err err = {0};
    cr_assert_eq(hs_head_ablation(f->s, f->m, &f->pr, &p, base, delta, &err), HS_OK, "%s", err.msg);
    return delta;
}

/* f32 on both sides; deltas are differences of losses ~7, so 1e-4 absolute
 * (the bound) leaves room for summation-order noise in each term. */
static void expect_ref(fx *f, const float *got, const char *name, double tol) {
    const hs_st_tensor *r = hs_st_find(f->ref, name);
    cr_assert_not_null(r, "fixture lacks %s", name);
    cr_assert_eq(r->numel, (int64_t)f->pr.N * f->L * f->H);
    hs_test_cmp c = hs_test_compare(got, r->data, r->numel, tol, 0);
    cr_assert_eq(c.n_bad, 0, "%s: %lld of %lld off (first %lld: got %g want %g), max abs %.3g", name,
                 (long long)c.n_bad, (long long)c.n, (long long)c.first_bad, (double)got[c.first_bad],
                 (double)((const float *)r->data)[c.first_bad], c.max_abs);
    cr_log_info("%s: max |diff| vs transformers %.2e", name, c.max_abs);
}

static void against_transformers(const char *model) {
    fx f;
    fx_init(&f, model, 32);
    float base[8];
    float *d = sweep(&f, HS_METRIC_LOSS, HS_ABLATE_ZERO, 32, 1, base);
    hs_test_cmp cb = hs_test_compare(base, hs_st_find(f.ref, "base_loss")->data, f.pr.N, 1e-5, 1e-5);
    cr_assert_eq(cb.n_bad, 0, "baseline loss off by %.3g", cb.max_abs);
    expect_ref(&f, d, "delta_loss_zero", 1e-4);
    free(d);
    d = sweep(&f, HS_METRIC_LOSS, HS_ABLATE_MEAN, 32, 1, base);
    expect_ref(&f, d, "delta_loss_mean", 1e-4);
    free(d);
    d = sweep(&f, HS_METRIC_KL, HS_ABLATE_ZERO, 32, 1, base);
    expect_ref(&f, d, "delta_kl_zero", 1e-5);
    free(d);
    fx_free(&f);
}
Test(ablation, gpt2_matches_transformers) { against_transformers("gpt2"); }
Test(ablation, llama_gqa_matches_transformers) { against_transformers("llama_gqa"); }

/* Prefix reuse + batched variants vs one forward per head from layer 0. */
Test(ablation, prefix_reuse_and_batching_do_not_change_results) {
    fx f;
    fx_init(&f, "llama_gqa", 32);
    float b1[8], b2[8], b3[8];
    float *naive = sweep(&f, HS_METRIC_LOSS, HS_ABLATE_ZERO, 1, 0, b1);
    float *fast = sweep(&f, HS_METRIC_LOSS, HS_ABLATE_ZERO, 32, 1, b2);
    float *odd = sweep(&f, HS_METRIC_LOSS, HS_ABLATE_ZERO, 5, 1, b3); /* rows not a multiple of heads */
    int64_t n = (int64_t)f.pr.N * f.L * f.H;
    hs_test_cmp c = hs_test_compare(fast, naive, n, 1e-5, 0);
    cr_assert_eq(c.n_bad, 0, "batched+prefix vs naive: max abs %.3g", c.max_abs);
    c = hs_test_compare(odd, naive, n, 1e-5, 0);
    cr_assert_eq(c.n_bad, 0, "5-row batches vs naive: max abs %.3g", c.max_abs);
    for (int i = 0; i < f.pr.N; i++) cr_assert_float_eq(b1[i], b2[i], 1e-5);
    free(naive);
    free(fast);
    free(odd);
    fx_free(&f);
}

Test(ablation, metric_needs_answers) {
    fx f;
    fx_init(&f, "gpt2", 8);
    float base[8], delta[3 * 3 * 5];
    hs_ablation_params p = hs_ablation_default_params();
    p.metric = HS_METRIC_LOGIT_DIFF;
    hs_err err = {0};
    cr_assert_eq(hs_head_ablation(f.s, f.m, &f.pr, &p, base, delta, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "logit_diff"), "%s", err.msg);
    fx_free(&f);
}

/* Whole-layer and all-but-one variants (Michel et al. Tables 2-3) against the
 * same masks applied as head multipliers by hs_eval_metric, and a selection of
 * heads against the full sweep. */
Test(ablation, layer_and_all_but_one_variants) {
    fx f;
    fx_init(&f, "llama_gqa", 32);
    const int N = f.pr.N, L = f.L, H = f.H;
    float base[8], *layer_d = malloc((size_t)N * L * sizeof(float)), *abo = malloc((size_t)N * L * H * sizeof(float));
    hs_err err = {0};
    hs_ablation_params p = hs_ablation_default_params();
    p.batch_rows = 32;
    p.kind = HS_ABLATION_WHOLE_LAYER;
    cr_assert_eq(hs_head_ablation(f.s, f.m, &f.pr, &p, base, layer_d, &err), HS_OK, "%s", err.msg);
    p.kind = HS_ABLATION_ALL_BUT_ONE;
    cr_assert_eq(hs_head_ablation(f.s, f.m, &f.pr, &p, base, abo, &err), HS_OK, "%s", err.msg);
    double base_mean = 0;
    for (int i = 0; i < N; i++) base_mean += base[i] / N;
    float *mask = malloc((size_t)L * H * sizeof(float));
    for (int l = 0; l < L; l++)
        for (int keep = -1; keep < H; keep++) { /* keep -1: the whole layer */
            for (int k = 0; k < L * H; k++) mask[k] = (k / H == l && k % H != keep) ? 0.0f : 1.0f;
            double v;
            cr_assert_eq(hs_eval_metric(f.s, f.m, &f.pr, HS_METRIC_LOSS, mask, 32, &v, &err), HS_OK, "%s", err.msg);
            double mean_delta = 0;
            for (int i = 0; i < N; i++)
                mean_delta += (keep < 0 ? layer_d[i * L + l] : abo[((int64_t)i * L + l) * H + keep]) / N;
            cr_assert_float_eq(mean_delta, v - base_mean, 1e-5, "layer %d keep %d", l, keep);
        }
    /* a selection: the selected heads equal the full sweep, the rest are NAN */
    float *full = malloc((size_t)N * L * H * sizeof(float)), *part = malloc((size_t)N * L * H * sizeof(float));
    uint8_t sel[3 * 6] = {0};
    sel[0 * H + 2] = sel[2 * H + 5] = 1;
    p.kind = HS_ABLATION_SINGLE_HEAD;
    cr_assert_eq(hs_head_ablation(f.s, f.m, &f.pr, &p, base, full, &err), HS_OK);
    p.select = sel;
    cr_assert_eq(hs_head_ablation(f.s, f.m, &f.pr, &p, base, part, &err), HS_OK);
    for (int i = 0; i < N * L * H; i++) {
        if (sel[i % (L * H)]) cr_assert_float_eq(part[i], full[i], 1e-5, "selected %d", i); /* other batch shapes */
        else cr_assert(isnan(part[i]), "unselected entry %d not NAN", i);
    }
    free(full), free(part), free(mask), free(layer_d), free(abo);
    fx_free(&f);
}

/* The logit metric: the answer's logit after the last token. Its ablation deltas for the answer,
 * minus those for the distractor taken as the answer, are the logit difference's deltas. */
Test(ablation, logit_metric_differences_give_logit_diff) {
    fx f;
    fx_init(&f, "gpt2", 32);
    const int N = f.pr.N;
    int32_t *ans = malloc((size_t)N * sizeof *ans), *dis = malloc((size_t)N * sizeof *dis);
    for (int i = 0; i < N; i++) ans[i] = 3 + 7 * i, dis[i] = 11 + 5 * i;
    f.pr.answer = ans, f.pr.distractor = dis;
    float ba[8], bb[8], bd[8];
    float *da = sweep(&f, HS_METRIC_LOGIT, HS_ABLATE_ZERO, 32, 1, ba);
    f.pr.answer = dis;
    float *db = sweep(&f, HS_METRIC_LOGIT, HS_ABLATE_ZERO, 32, 1, bb);
    f.pr.answer = ans;
    float *dd = sweep(&f, HS_METRIC_LOGIT_DIFF, HS_ABLATE_ZERO, 32, 1, bd);
    for (int i = 0; i < N; i++) cr_assert_float_eq(bd[i], ba[i] - bb[i], 1e-5, "base %d", i);
    for (int64_t k = 0; k < (int64_t)N * f.L * f.H; k++) cr_assert_float_eq(dd[k], da[k] - db[k], 1e-5, "delta %lld", (long long)k);
    f.pr.answer = NULL;
    float base[8], delta[3 * 3 * 5 * 8];
    hs_ablation_params p = hs_ablation_default_params();
    p.metric = HS_METRIC_LOGIT;
    hs_err err = {0};
    cr_assert_eq(hs_head_ablation(f.s, f.m, &f.pr, &p, base, delta, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "logit needs answer"), "%s", err.msg);
    free(da), free(db), free(dd), free(ans), free(dis);
    fx_free(&f);
}
