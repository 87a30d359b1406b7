/* Experiments on the CUDA backend against the CPU backend (f32 mode, the
 * same math): single-head ablation with zero, mean and uniform modes (the
 * in-kernel head multipliers and uniform flags, SET edits uploaded into z,
 * prefix reuse from cached residuals), activation patching (z by position and
 * resid_pre, which also exercises resid_start at layer 0) and head scores
 * (patterns recomputed from the log-sum-exp). Skips without a device. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "headsweep/hs_head_scores.h"
#include "headsweep/hs_patching.h"
#include "headsweep/hs_safetensors.h"
#include "hs_testutil.h"

typedef struct {
    hs_model *m;
    hs_backend *cpu, *gpu;
    hs_session *s_cpu, *s_gpu;
    hs_st_file *ref;
    hs_prompts pr;
    const int32_t *corrupt;
    int L, H, T;
} fx;

static void fx_init(fx *f, const char *model) {
    if (hs_backend_cuda_device_count() == 0) cr_skip_test("no CUDA device");
    hs_err err = {0};
    memset(f, 0, sizeof *f);
    hs_test_load_fixture(model, "patching", &f->m, &f->ref); /* prompts with answers and corruptions */
    const hs_st_tensor *tok = hs_st_find(f->ref, "tokens");
    f->T = (int)tok->shape[1];
    f->pr = (hs_prompts){.N = (int)tok->shape[0], .T = f->T, .tokens = tok->data,
                         .lengths = hs_st_find(f->ref, "lengths")->data, .answer = hs_st_find(f->ref, "answer")->data,
                         .distractor = hs_st_find(f->ref, "distractor")->data};
    f->corrupt = hs_st_find(f->ref, "corrupt")->data;
    f->L = hs_model_get_config(f->m)->n_layers;
    f->H = hs_model_get_config(f->m)->n_heads;
    hs_backend_params bp = hs_backend_default_params();
    bp.dtype = HS_DTYPE_F32;
    cr_assert_eq(hs_backend_cpu_init(NULL, &f->cpu, &err), HS_OK);
    cr_assert_eq(hs_backend_cuda_init(&bp, &f->gpu, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_session_init(f->cpu, f->m, 16, f->T, &f->s_cpu, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_session_init(f->gpu, f->m, 16, f->T, &f->s_gpu, &err), HS_OK, "%s", err.msg);
}

static void fx_free(fx *f) {
    hs_session_free(f->s_cpu);
    hs_session_free(f->s_gpu);
    hs_backend_free(f->cpu);
    hs_backend_free(f->gpu);
    hs_st_close(f->ref);
    hs_model_free(f->m);
}

/* f32 on both backends: metric differences of ~1 computed through 3 layers;
 * 1e-4 absolute covers summation-order differences (see test_cuda_model). */
static void expect_close(const float *gpu, const float *cpu, int64_t n, const char *what) {
    double md = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(cpu[i])) {
            cr_assert(isnan(gpu[i]), "%s[%lld]: CPU NAN, CUDA %g", what, (long long)i, gpu[i]);
            continue;
        }
        cr_assert(!isnan(gpu[i]), "%s[%lld]: CUDA NAN", what, (long long)i);
        md = fmax(md, fabs((double)gpu[i] - cpu[i]));
    }
    cr_assert_leq(md, 1e-4, "%s: max |CUDA - CPU| %.3g", what, md);
    cr_log_info("%s: max |CUDA - CPU| %.2e", what, md);
}

Test(cuda_experiments, head_ablation_matches_cpu) {
    fx f;
    fx_init(&f, "llama_gqa");
    const int N = f.pr.N, n = N * f.L * f.H;
    const hs_ablate_mode modes[3] = {HS_ABLATE_ZERO, HS_ABLATE_MEAN, HS_ABLATE_UNIFORM};
    const hs_metric metrics[3] = {HS_METRIC_LOSS, HS_METRIC_LOGIT_DIFF, HS_METRIC_KL};
    for (int k = 0; k < 3; k++) {
        float bc[8], bg[8], *dc = malloc((size_t)n * sizeof(float)), *dg = malloc((size_t)n * sizeof(float));
        hs_ablation_params p = hs_ablation_default_params();
        p.mode = modes[k];
        p.metric = metrics[k];
        p.batch_rows = 16;
        hs_err err = {0};
        cr_assert_eq(hs_head_ablation(f.s_cpu, f.m, &f.pr, &p, bc, dc, &err), HS_OK, "%s", err.msg);
        for (int i = 0; i < n; i++) dg[i] = NAN; /* poisoned */
        cr_assert_eq(hs_head_ablation(f.s_gpu, f.m, &f.pr, &p, bg, dg, &err), HS_OK, "%s", err.msg);
        char what[64];
        snprintf(what, sizeof what, "ablation %s/%s", hs_ablate_mode_name(modes[k]), hs_metric_name(metrics[k]));
        expect_close(bg, bc, N, what);
        expect_close(dg, dc, n, what);
        free(dc), free(dg);
    }
    fx_free(&f);
}

Test(cuda_experiments, patching_matches_cpu) {
    fx f;
    fx_init(&f, "gpt2");
    const int N = f.pr.N, L = f.L, H = f.H, T = f.T;
    float cc[8], xc[8], cg[8], xg[8];
    float *zc = malloc((size_t)N * L * T * H * sizeof(float)), *zg = malloc((size_t)N * L * T * H * sizeof(float));
    float *rc = malloc((size_t)N * L * T * sizeof(float)), *rg = malloc((size_t)N * L * T * sizeof(float));
    hs_patching_out oc = {.clean = cc, .corrupt = xc, .z_by_pos = zc, .resid_pre = rc};
    hs_patching_out og = {.clean = cg, .corrupt = xg, .z_by_pos = zg, .resid_pre = rg};
    hs_patching_params p = hs_patching_default_params();
    p.batch_rows = 16;
    p.targets = (1u << HS_PATCH_Z_BY_POS) | (1u << HS_PATCH_RESID_PRE);
    hs_err err = {0};
    cr_assert_eq(hs_activation_patching(f.s_cpu, f.m, &f.pr, f.corrupt, &p, &oc, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_activation_patching(f.s_gpu, f.m, &f.pr, f.corrupt, &p, &og, &err), HS_OK, "%s", err.msg);
    expect_close(cg, cc, N, "patching clean");
    expect_close(xg, xc, N, "patching corrupt");
    expect_close(zg, zc, (int64_t)N * L * T * H, "patching z_by_pos");
    expect_close(rg, rc, (int64_t)N * L * T, "patching resid_pre");
    free(zc), free(zg), free(rc), free(rg);
    fx_free(&f);
}

Test(cuda_experiments, head_scores_match_cpu) {
    fx f;
    fx_init(&f, "llama_gqa");
    const int n = HS_SCORE_COUNT * f.L * f.H;
    float *sc = malloc((size_t)n * sizeof(float)), *sg = malloc((size_t)n * sizeof(float));
    unsigned mask = (1u << HS_SCORE_PREVIOUS_TOKEN) | (1u << HS_SCORE_DUPLICATE_TOKEN) | (1u << HS_SCORE_INDUCTION);
    hs_err err = {0};
    for (int i = 0; i < n; i++) sc[i] = sg[i] = 0.0f; /* the unrequested Olsson rows stay 0 on both */
    cr_assert_eq(hs_head_scores(f.s_cpu, f.m, &f.pr, mask, 3, sc, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_head_scores(f.s_gpu, f.m, &f.pr, mask, 3, sg, &err), HS_OK, "%s", err.msg);
    expect_close(sg, sc, n, "head scores");
    free(sc), free(sg);
    fx_free(&f);
}

/* A CPU-only run must still count a real test. */
Test(cuda_experiments_cpu, skip_reason_without_device) {
    hs_backend *be = NULL;
    hs_err err = {0};
    hs_backend_params bp = hs_backend_default_params();
    hs_status st = hs_backend_cuda_init(&bp, &be, &err);
    if (hs_backend_cuda_device_count() == 0) {
        cr_assert_neq(st, HS_OK);
        cr_assert(strstr(err.msg, "CUDA"), "%s", err.msg);
        cr_assert_null(be);
    } else {
        cr_assert_eq(st, HS_OK, "%s", err.msg);
        hs_backend_free(be);
    }
}
