/* Ablation sources computed over a reference set: per-template means (Wang
 * et al.'s IOI knockout) against transformers + pre-hooks on the output
 * projection (tests/fixtures/make_fixtures.py, make_template_refs), and
 * resampling against hand-built SET edits. Both must give a sub-range of the
 * prompts (one unit of a sharded run) exactly what the whole call gives it. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "headsweep/hs_ablation.h"
#include "headsweep/hs_capture.h"
#include "headsweep/hs_safetensors.h"
#include "hs_testutil.h"

typedef struct {
    hs_model *m;
    hs_backend *be;
    hs_session *s;
    hs_st_file *ref;
    hs_prompts pr, corrupt; /* clean prompts (answer, distractor) and their ABC versions */
    const int32_t *tid;
    int N, T, L, H, dh;
} fx;

static void fx_init(fx *f, const char *model, int max_rows) {
    hs_err err = {0};
    memset(f, 0, sizeof *f);
    hs_test_load_fixture(model, "template_mean", &f->m, &f->ref);
    const hs_st_tensor *tok = hs_st_find(f->ref, "tokens");
    cr_assert_not_null(tok);
    f->N = (int)tok->shape[0], f->T = (int)tok->shape[1];
    f->pr = (hs_prompts){.N = f->N, .T = f->T, .tokens = tok->data,
                         .lengths = hs_test_ref_tensor(f->ref, "lengths")->data,
                         .answer = hs_test_ref_tensor(f->ref, "answer")->data,
                         .distractor = hs_test_ref_tensor(f->ref, "distractor")->data};
    f->corrupt = f->pr;
    f->corrupt.tokens = hs_test_ref_tensor(f->ref, "corrupt")->data;
    f->tid = hs_test_ref_tensor(f->ref, "template_id")->data;
    const hs_model_config *c = hs_model_get_config(f->m);
    f->L = c->n_layers, f->H = c->n_heads, f->dh = c->d_head;
    cr_assert_eq(hs_backend_cpu_init(NULL, &f->be, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_session_init(f->be, f->m, max_rows, f->T, &f->s, &err), HS_OK, "%s", err.msg);
}

static void fx_free(fx *f) {
    hs_session_free(f->s);
    hs_backend_free(f->be);
    hs_st_close(f->ref);
    hs_model_free(f->m);
}

/* The sweep over prompts [first, first + n) of f as its own call. */
static void sweep_range(fx *f, const hs_ablation_params *p0, int first, int n, float *base, float *delta) {
    hs_ablation_params p = *p0;
    hs_prompts sub = f->pr;
    sub.N = n;
    sub.tokens += (int64_t)first * f->T;
    sub.lengths += first, sub.answer += first, sub.distractor += first;
    if (p.mean_template) p.mean_template += first;
    if (p.resample_src) p.resample_src += first;
    hs_err err = {0};
    cr_assert_eq(hs_head_ablation(f->s, f->m, &sub, &p, base, delta, &err), HS_OK, "%s", err.msg);
}

/* Sub-range calls, one unit each, reproduce the whole call bit for bit. */
static void expect_units_equal_whole(fx *f, const hs_ablation_params *p, const float *base, const float *delta) {
    const int U = hs_head_ablation_unit(f->m, p), LH = f->L * f->H;
    cr_assert_lt(U, f->N, "the unit (%d) must split the %d prompts", U, f->N);
    float *b = malloc((size_t)U * sizeof *b), *d = malloc((size_t)U * LH * sizeof *d);
    for (int k0 = 0; k0 < f->N; k0 += U) {
        const int n = f->N - k0 < U ? f->N - k0 : U;
        sweep_range(f, p, k0, n, b, d);
        cr_assert(!memcmp(b, base + k0, (size_t)n * sizeof *b), "unit at %d: base differs", k0);
        cr_assert(!memcmp(d, delta + (int64_t)k0 * LH, (size_t)n * LH * sizeof *d), "unit at %d: delta differs", k0);
    }
    free(b), free(d);
}

static void template_mean_matches(const char *model) {
    fx f;
    fx_init(&f, model, 10);
    hs_err err = {0};
    const int64_t per = (int64_t)f.L * f.H * f.T * f.dh, LH = f.L * f.H;
    float *means = malloc((size_t)(2 * per) * sizeof *means);
    cr_assert_eq(hs_ablation_mean_z_template(f.s, f.m, &f.corrupt, f.tid, 2, 4, means, &err), HS_OK, "%s", err.msg);
    /* means of f32 activations of scale ~1 over 3 prompts: summation-order noise ~1e-6 */
    hs_test_cmp c = hs_test_compare(means, hs_test_ref_tensor(f.ref, "mean_z")->data, 2 * per, 1e-5, 1e-5);
    cr_assert_eq(c.n_bad, 0, "%s: template means off at %lld (max abs %.3g)", model, (long long)c.first_bad, c.max_abs);
    cr_log_info("%s: template means max |diff| %.2e", model, c.max_abs);

    hs_ablation_params p = hs_ablation_default_params();
    p.metric = HS_METRIC_LOGIT_DIFF;
    p.mode = HS_ABLATE_MEAN;
    p.mean_z = means;
    p.mean_template = f.tid;
    p.n_templates = 2;
    p.batch_rows = 10; /* unit 2 (gpt2, 5 heads) or 1 (llama_gqa, 6 heads) */
    float *base = malloc((size_t)f.N * sizeof *base), *delta = malloc((size_t)f.N * LH * sizeof *delta);
    cr_assert_eq(hs_head_ablation(f.s, f.m, &f.pr, &p, base, delta, &err), HS_OK, "%s", err.msg);
    /* logit differences of ~1-5 from f32 forwards: 1e-4 (as for the other ablation deltas) */
    c = hs_test_compare(base, hs_test_ref_tensor(f.ref, "base_logit_diff")->data, f.N, 1e-4, 0);
    cr_assert_eq(c.n_bad, 0, "%s: base logit diff max abs %.3g", model, c.max_abs);
    const float *want = hs_test_ref_tensor(f.ref, "delta_logit_diff_template_mean")->data;
    c = hs_test_compare(delta, want, f.N * LH, 1e-4, 0);
    cr_assert_eq(c.n_bad, 0, "%s: %lld deltas off (first %lld: %g vs %g), max abs %.3g", model, (long long)c.n_bad,
                 (long long)c.first_bad, (double)delta[c.first_bad], (double)want[c.first_bad], c.max_abs);
    cr_log_info("%s: template-mean deltas max |diff| vs transformers %.2e", model, c.max_abs);
    expect_units_equal_whole(&f, &p, base, delta);
    free(means), free(base), free(delta);
    fx_free(&f);
}
Test(ablation_sources, gpt2_template_mean_matches_transformers) { template_mean_matches("gpt2"); }
Test(ablation_sources, llama_gqa_template_mean_matches_transformers) { template_mean_matches("llama_gqa"); }

Test(ablation_sources, template_ids_are_checked) {
    fx f;
    fx_init(&f, "gpt2", 10);
    hs_err err = {0};
    float *means = malloc((size_t)2 * f.L * f.H * f.T * f.dh * sizeof *means), base[6], delta[6 * 15];
    cr_assert_eq(hs_ablation_mean_z_template(f.s, f.m, &f.corrupt, f.tid, 1, 4, means, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "template id 1"), "%s", err.msg);
    hs_ablation_params p = hs_ablation_default_params();
    p.mode = HS_ABLATE_MEAN;
    p.mean_template = f.tid;
    p.n_templates = 2;
    cr_assert_eq(hs_head_ablation(f.s, f.m, &f.pr, &p, base, delta, &err), HS_ERR_INVALID_ARG); /* no mean_z */
    p.mean_z = means;
    p.n_templates = 1;
    cr_assert_eq(hs_head_ablation(f.s, f.m, &f.pr, &p, base, delta, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "template id"), "%s", err.msg);
    free(means);
    fx_free(&f);
}

Test(ablation_sources, resample_sources_are_seeded_and_never_the_prompt) {
    hs_err err = {0};
    int32_t all[100], part[30], again[100], other[100];
    cr_assert_eq(hs_ablation_resample_sources(7, 100, 0, 100, all, &err), HS_OK);
    cr_assert_eq(hs_ablation_resample_sources(7, 100, 0, 100, again, &err), HS_OK);
    cr_assert_eq(hs_ablation_resample_sources(8, 100, 0, 100, other, &err), HS_OK);
    cr_assert_eq(hs_ablation_resample_sources(7, 100, 40, 30, part, &err), HS_OK);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        cr_assert(all[i] >= 0 && all[i] < 100 && all[i] != i, "source %d of prompt %d", all[i], i);
        cr_assert_eq(all[i], again[i]);
        differ += all[i] != other[i];
    }
    cr_assert_gt(differ, 50, "another seed changed only %d sources", differ);
    cr_assert(!memcmp(part, all + 40, sizeof part), "a sub-range draws other sources");
    cr_assert_eq(hs_ablation_resample_sources(7, 2, 0, 2, all, &err), HS_OK);
    cr_assert(all[0] == 1 && all[1] == 0);
    cr_assert_eq(hs_ablation_resample_sources(7, 1, 0, 1, all, &err), HS_ERR_INVALID_ARG);
}

/* The resample sweep equals, head by head, a forward of the prompt alone with
 * SET edits from its source's z captured in a forward of the source alone. */
Test(ablation_sources, resample_equals_hand_built_set_edits) {
    fx f;
    fx_init(&f, "llama_gqa", 12);
    hs_err err = {0};
    const int N = f.N, T = f.T, L = f.L, H = f.H, dh = f.dh, V = hs_model_get_config(f.m)->n_vocab;
    int32_t src[6];
    cr_assert_eq(hs_ablation_resample_sources(1234, N, 0, N, src, &err), HS_OK);
    hs_ablation_params p = hs_ablation_default_params();
    p.metric = HS_METRIC_LOGIT_DIFF;
    p.mode = HS_ABLATE_RESAMPLE;
    p.resample_ref = &f.pr; /* the clean prompts themselves: lengths 9 and 11 mix */
    p.resample_src = src;
    p.batch_rows = 12;
    float base[6], *delta = malloc((size_t)N * L * H * sizeof *delta);
    cr_assert_eq(hs_head_ablation(f.s, f.m, &f.pr, &p, base, delta, &err), HS_OK, "%s", err.msg);

    hs_capture *cap = NULL;
    cr_assert_eq(hs_capture_init(f.be, &cap, &err), HS_OK);
    cr_assert_eq(hs_capture_want(cap, HS_HOOK_Z, -1, &err), HS_OK);
    hs_hooks hooks = hs_capture_hooks(cap);
    float *zsrc = malloc((size_t)L * T * H * dh * sizeof *zsrc), *logits = malloc((size_t)V * sizeof *logits);
    hs_z_edit edits[16];
    int shorter = 0;
    double worst = 0;
    for (int i = 0; i < N; i++) {
        const int j = src[i], ni = f.pr.lengths[i], n = ni < f.pr.lengths[j] ? ni : f.pr.lengths[j];
        shorter += n < ni;
        hs_batch sb = {.B = 1, .T = f.pr.lengths[j], .tokens = f.pr.tokens + (int64_t)j * T};
        hs_forward_params fp = hs_forward_default_params();
        fp.hooks = &hooks;
        fp.logits = HS_LOGITS_NONE;
        cr_assert_eq(hs_forward(f.s, &sb, &fp, NULL, &err), HS_OK, "%s", err.msg);
        for (int l = 0; l < L; l++) /* [1, len_j, H, dh] */
            memcpy(zsrc + (int64_t)l * T * H * dh, hs_capture_get(cap, HS_HOOK_Z, l, NULL),
                   (size_t)f.pr.lengths[j] * H * dh * sizeof(float));
        hs_batch b = {.B = 1, .T = ni, .tokens = f.pr.tokens + (int64_t)i * T};
        hs_forward_params ep = hs_forward_default_params();
        cr_assert_eq(hs_forward(f.s, &b, &ep, logits, &err), HS_OK);
        const double ld0 = (double)logits[f.pr.answer[i]] - logits[f.pr.distractor[i]];
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) {
                for (int t = 0; t < n; t++)
                    edits[t] = (hs_z_edit){.row = 0, .layer = l, .head = h, .pos = t, .mode = HS_EDIT_SET,
                                           .src = zsrc + (((int64_t)l * T + t) * H + h) * dh};
                ep.edits = edits;
                ep.n_edits = n;
                cr_assert_eq(hs_forward(f.s, &b, &ep, logits, &err), HS_OK, "%s", err.msg);
                const double want = (double)logits[f.pr.answer[i]] - logits[f.pr.distractor[i]] - ld0;
                const double got = delta[((int64_t)i * L + l) * H + h];
                worst = fabs(got - want) > worst ? fabs(got - want) : worst;
                /* the same edits in other batch shapes: f32 reduction-order noise only
                 * (observed 5e-6 on logit diffs of ~1-5) */
                cr_assert_float_eq(got, want, 2e-5, "prompt %d (source %d) layer %d head %d: %g vs %g", i, j, l, h, got,
                                   want);
            }
    }
    cr_assert_gt(shorter, 0, "no prompt drew a shorter source: the length rule is untested");
    cr_log_info("resample vs hand-built SET edits: max |diff| %.2e", worst);
    /* sub-range calls: the same sources, drawn per global index */
    const int U = hs_head_ablation_unit(f.m, &p);
    int32_t part[6];
    for (int k0 = 0; k0 < N; k0 += U) {
        cr_assert_eq(hs_ablation_resample_sources(1234, N, k0, U, part, &err), HS_OK);
        cr_assert(!memcmp(part, src + k0, (size_t)U * sizeof *part));
    }
    expect_units_equal_whole(&f, &p, base, delta);
    hs_capture_free(cap);
    free(zsrc), free(logits), free(delta);
    fx_free(&f);
}

/* Over identical prompts, z of any source is the prompt's own z: no change. */
Test(ablation_sources, resample_over_identical_prompts_changes_nothing) {
    fx f;
    fx_init(&f, "gpt2", 10);
    hs_err err = {0};
    const int N = 4, T = f.T, LH = f.L * f.H;
    int32_t tok[4 * 11], len[4], ans[4], dis[4], src[4];
    for (int i = 0; i < N; i++) {
        memcpy(tok + i * T, f.pr.tokens, (size_t)T * sizeof *tok);
        len[i] = f.pr.lengths[0], ans[i] = f.pr.answer[0], dis[i] = f.pr.distractor[0];
    }
    cr_assert_leq(T, 11);
    hs_prompts same = {.N = N, .T = T, .tokens = tok, .lengths = len, .answer = ans, .distractor = dis};
    cr_assert_eq(hs_ablation_resample_sources(99, N, 0, N, src, &err), HS_OK);
    hs_ablation_params p = hs_ablation_default_params();
    p.metric = HS_METRIC_LOGIT_DIFF;
    p.mode = HS_ABLATE_RESAMPLE;
    p.resample_ref = &same;
    p.resample_src = src;
    p.batch_rows = 10;
    float base[4], *delta = malloc((size_t)N * LH * sizeof *delta);
    cr_assert_eq(hs_head_ablation(f.s, f.m, &same, &p, base, delta, &err), HS_OK, "%s", err.msg);
    double worst = 0;
    for (int i = 0; i < N * LH; i++) worst = fabs(delta[i]) > worst ? fabs(delta[i]) : worst;
    /* z is recomputed in the edited batch, whose shape differs from the source
     * forward's: equal up to f32 reduction order (~1e-6 on logit diffs ~4) */
    cr_assert_leq(worst, 1e-5, "max |delta| %.3g over identical prompts", worst);
    cr_log_info("resample over identical prompts: max |delta| %.2e", worst);
    free(delta);
    fx_free(&f);
}

Test(ablation_sources, resample_needs_a_reference) {
    fx f;
    fx_init(&f, "gpt2", 10);
    hs_err err = {0};
    float base[6], delta[6 * 15];
    int32_t src[6] = {1, 0, 3, 2, 5, 6}; /* 6 is outside the 6 reference prompts */
    hs_ablation_params p = hs_ablation_default_params();
    p.mode = HS_ABLATE_RESAMPLE;
    cr_assert_eq(hs_head_ablation(f.s, f.m, &f.pr, &p, base, delta, &err), HS_ERR_INVALID_ARG);
    p.resample_ref = &f.pr;
    p.resample_src = src;
    cr_assert_eq(hs_head_ablation(f.s, f.m, &f.pr, &p, base, delta, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "prompt 5 has resample source 6"), "%s", err.msg);
    cr_assert_str_eq(hs_ablate_mode_name(HS_ABLATE_RESAMPLE), "resample");
    fx_free(&f);
}
