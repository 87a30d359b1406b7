/* Experiments on the CUDA backend against the CPU backend (f32 mode, the
 * same math): single-head ablation with zero, mean and uniform modes (the
 * in-kernel head multipliers and uniform flags, SET edits uploaded into z,
 * prefix reuse from cached residuals), activation patching (z by position and
 * resid_pre, which also exercises resid_start at layer 0), head scores
 * (patterns recomputed from the log-sum-exp), resample and per-template mean
 * ablation (per-position SET edits), heads ablated together, the retrieval
 * score (greedy decoding), the result hook and attribution patching (the
 * backward). Skips without a device. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "headsweep/hs_capture.h"
#include "headsweep/hs_head_scores.h"
#include "headsweep/hs_head_sets.h"
#include "headsweep/hs_retrieval.h"
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
    f->pr = hs_test_ref_prompts(f->ref);
    f->T = f->pr.T;
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

/* Exact patching on CUDA: every target but z_all_pos (z_by_pos covers the
 * SET edits; path_logits covers z_all_pos's edit and the freeze hook's
 * whole-row copies; path_heads the partial pass and the receivers' copies),
 * q/k/v slices by copy_2d. */
Test(cuda_experiments, patching_matches_cpu) {
    fx f;
    fx_init(&f, "gpt2");
    const int N = f.pr.N, L = f.L, H = f.H, T = f.T;
    float cc[8], xc[8], cg[8], xg[8];
    float *zc = malloc((size_t)N * L * T * H * sizeof(float)), *zg = malloc((size_t)N * L * T * H * sizeof(float));
    const int64_t nr = (int64_t)N * L * T; /* resid_pre, attn_out, mlp_out: 3 x nr */
    float *rc = malloc((size_t)3 * nr * sizeof(float)), *rg = malloc((size_t)3 * nr * sizeof(float));
    for (int64_t i = 0; i < 3 * nr; i++) rg[i] = NAN; /* poisoned: cells beyond a prompt are NaN on both */
    const int64_t nq = (int64_t)N * L * H; /* q, k, v: 3 x nq (k and v use the first N L H_kv of theirs) */
    float *qc = malloc((size_t)3 * nq * sizeof(float)), *qg = malloc((size_t)3 * nq * sizeof(float));
    for (int64_t i = 0; i < 3 * nq; i++) qg[i] = NAN;
    float *pc = malloc((size_t)nq * sizeof(float)), *pg = malloc((size_t)nq * sizeof(float)); /* path_logits */
    for (int64_t i = 0; i < nq; i++) pg[i] = NAN;
    float *hc = malloc((size_t)nq * sizeof(float)), *hg = malloc((size_t)nq * sizeof(float)); /* path_heads */
    for (int64_t i = 0; i < nq; i++) hg[i] = 12345.0f; /* poisoned: NaN cells must be written */
    hs_patching_out oc = {.clean = cc, .corrupt = xc, .z_by_pos = zc, .resid_pre = rc, .attn_out = rc + nr,
                          .mlp_out = rc + 2 * nr, .q_all_pos = qc, .k_all_pos = qc + nq, .v_all_pos = qc + 2 * nq,
                          .path_logits = pc, .path_heads = hc};
    hs_patching_out og = {.clean = cg, .corrupt = xg, .z_by_pos = zg, .resid_pre = rg, .attn_out = rg + nr,
                          .mlp_out = rg + 2 * nr, .q_all_pos = qg, .k_all_pos = qg + nq, .v_all_pos = qg + 2 * nq,
                          .path_logits = pg, .path_heads = hg};
    hs_patching_params p = hs_patching_default_params();
    p.batch_rows = 16;
    p.targets = (1u << HS_PATCH_COUNT) - 1 - (1u << HS_PATCH_Z_ALL_POS);
    const int receivers[4] = {1, 0, 2, 1};
    p.receivers = receivers;
    p.n_receivers = 2;
    hs_err err = {0};
    cr_assert_eq(hs_activation_patching(f.s_cpu, f.m, &f.pr, f.corrupt, &p, &oc, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_activation_patching(f.s_gpu, f.m, &f.pr, f.corrupt, &p, &og, &err), HS_OK, "%s", err.msg);
    expect_close(cg, cc, N, "patching clean");
    expect_close(xg, xc, N, "patching corrupt");
    expect_close(zg, zc, (int64_t)N * L * T * H, "patching z_by_pos");
    expect_close(rg, rc, nr, "patching resid_pre");
    expect_close(rg + nr, rc + nr, nr, "patching attn_out");
    expect_close(rg + 2 * nr, rc + 2 * nr, nr, "patching mlp_out");
    const int64_t nk = (int64_t)N * L * hs_model_get_config(f.m)->n_kv_heads;
    expect_close(qg, qc, nq, "patching q_all_pos");
    expect_close(qg + nq, qc + nq, nk, "patching k_all_pos");
    expect_close(qg + 2 * nq, qc + 2 * nq, nk, "patching v_all_pos");
    expect_close(pg, pc, nq, "patching path_logits");
    expect_close(hg, hc, nq, "patching path_heads");
    free(zc), free(zg), free(rc), free(rg), free(qc), free(qg), free(pc), free(pg), free(hc), free(hg);
    fx_free(&f);
}

/* Attribution patching: the backward ops, zero, the last-position seed and
 * head_dot with one position per row, on CUDA. All four metrics, every
 * target (q and k with and without the QK fix, with and without GradDrop),
 * both architectures. */
Test(cuda_experiments, attribution_matches_cpu) {
    const char *models[2] = {"gpt2", "llama_gqa"};
    const hs_metric metrics[4] = {HS_METRIC_LOGIT_DIFF, HS_METRIC_LOGPROB, HS_METRIC_KL, HS_METRIC_LOSS};
    for (int mi = 0; mi < 2; mi++) {
        fx f;
        fx_init(&f, models[mi]);
        const int N = f.pr.N, L = f.L, H = f.H, T = f.T;
        const int64_t na = (int64_t)N * L * H, nz = (int64_t)N * L * T * H, nr = (int64_t)N * L * T;
        float cc[8], xc[8], cg[8], xg[8];
        float *ac = malloc((size_t)na * 4), *ag = malloc((size_t)na * 4), *zc = malloc((size_t)nz * 4),
              *zg = malloc((size_t)nz * 4), *rc = malloc((size_t)3 * nr * 4), *rg = malloc((size_t)3 * nr * 4);
        const int64_t nk = (int64_t)N * L * hs_model_get_config(f.m)->n_kv_heads; /* q: na, k and v: nk each */
        float *qc = malloc((size_t)(na + 2 * nk) * 4), *qg = malloc((size_t)(na + 2 * nk) * 4);
        for (int k = 0; k < 4; k++) { /* rc, rg: resid_pre, attn_out, mlp_out */
            hs_patching_out oc = {.clean = cc, .corrupt = xc, .z_all_pos = ac, .z_by_pos = zc, .resid_pre = rc,
                                  .attn_out = rc + nr, .mlp_out = rc + 2 * nr, .q_all_pos = qc, .k_all_pos = qc + na,
                                  .v_all_pos = qc + na + nk};
            hs_patching_out og = {.clean = cg, .corrupt = xg, .z_all_pos = ag, .z_by_pos = zg, .resid_pre = rg,
                                  .attn_out = rg + nr, .mlp_out = rg + 2 * nr, .q_all_pos = qg, .k_all_pos = qg + na,
                                  .v_all_pos = qg + na + nk};
            hs_patching_params p = hs_patching_default_params();
            p.metric = metrics[k];
            p.batch_rows = 2; /* two batches, the second one short */
            p.qk_fix = k % 2; /* q and k by AtP*'s QK fix (an extra attention) and by the plain estimate */
            p.grad_drop = k >= 2; /* GradDrop: the walks below each layer from the kept dM/d resid_post */
            p.targets = (1u << HS_PATCH_PATH_LOGITS) - 1; /* every target attribution estimates */
            hs_err err = {0};
            for (int64_t i = 0; i < na; i++) ag[i] = NAN; /* poisoned */
            for (int64_t i = 0; i < na + 2 * nk; i++) qg[i] = NAN;
            cr_assert_eq(hs_attribution_patching(f.s_cpu, f.m, &f.pr, f.corrupt, &p, &oc, &err), HS_OK, "%s", err.msg);
            for (int recompute = 0; recompute < 2; recompute++) { /* activations kept, then layers rerun */
                hs_session_set_backward_keep_bytes(f.s_gpu, recompute ? 0 : HS_BACKWARD_KEEP_BYTES);
                cr_assert_eq(hs_attribution_patching(f.s_gpu, f.m, &f.pr, f.corrupt, &p, &og, &err), HS_OK, "%s",
                             err.msg);
                char what[96];
                snprintf(what, sizeof what, "attribution %s %s recompute=%d", models[mi], hs_metric_name(metrics[k]),
                         recompute);
                expect_close(cg, cc, N, what);
                expect_close(xg, xc, N, what);
                expect_close(ag, ac, na, what);
                expect_close(zg, zc, nz, what);
                expect_close(rg, rc, 3 * nr, what);
                expect_close(qg, qc, na + 2 * nk, what);
            }
        }
        free(ac), free(ag), free(zc), free(zg), free(rc), free(rg), free(qc), free(qg);
        fx_free(&f);
    }
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

Test(cuda_experiments, resample_and_template_means_match_cpu) {
    fx f;
    fx_init(&f, "llama_gqa");
    const int N = f.pr.N, n = N * f.L * f.H, T = f.T, dh = hs_model_get_config(f.m)->d_head;
    int32_t src[16], tid[16];
    hs_err err = {0};
    cr_assert_eq(hs_ablation_resample_sources(3, N, 0, N, src, &err), HS_OK, "%s", err.msg);
    for (int i = 0; i < N; i++) tid[i] = i % 2;
    float *mc = malloc((size_t)2 * f.L * f.H * T * dh * sizeof(float)), *mg = malloc((size_t)2 * f.L * f.H * T * dh * sizeof(float));
    hs_prompts ref = f.pr;
    ref.tokens = f.corrupt;
    cr_assert_eq(hs_ablation_mean_z_template(f.s_cpu, f.m, &ref, tid, 2, 16, mc, &err), HS_OK, "%s", err.msg);
    for (int64_t i = 0; i < (int64_t)2 * f.L * f.H * T * dh; i++) mg[i] = NAN;
    cr_assert_eq(hs_ablation_mean_z_template(f.s_gpu, f.m, &ref, tid, 2, 16, mg, &err), HS_OK, "%s", err.msg);
    expect_close(mg, mc, (int64_t)2 * f.L * f.H * T * dh, "template means");
    for (int k = 0; k < 2; k++) {
        float bc[16], bg[16], *dc = malloc((size_t)n * sizeof(float)), *dg = malloc((size_t)n * sizeof(float));
        hs_ablation_params p = hs_ablation_default_params();
        p.batch_rows = 16;
        p.metric = HS_METRIC_LOGIT_DIFF;
        if (k == 0) p.mode = HS_ABLATE_RESAMPLE, p.resample_ref = &f.pr, p.resample_src = src;
        else p.mode = HS_ABLATE_MEAN, p.mean_z = mc, p.mean_template = tid, p.n_templates = 2;
        cr_assert_eq(hs_head_ablation(f.s_cpu, f.m, &f.pr, &p, bc, dc, &err), HS_OK, "%s", err.msg);
        for (int i = 0; i < n; i++) dg[i] = NAN;
        cr_assert_eq(hs_head_ablation(f.s_gpu, f.m, &f.pr, &p, bg, dg, &err), HS_OK, "%s", err.msg);
        expect_close(dg, dc, n, k == 0 ? "resample ablation" : "template-mean ablation");
        free(dc), free(dg);
    }
    free(mc), free(mg);
    fx_free(&f);
}

Test(cuda_experiments, head_sets_match_cpu) {
    fx f;
    fx_init(&f, "gpt2");
    const int N = f.pr.N, LH = f.L * f.H;
    uint8_t *set = calloc((size_t)LH, 1);
    for (int k = 0; k < LH; k += 3) set[k] = 1; /* heads in every layer */
    const hs_ablate_mode modes[3] = {HS_ABLATE_ZERO, HS_ABLATE_SCALE, HS_ABLATE_UNIFORM};
    for (int k = 0; k < 3; k++) {
        hs_head_set_params p = hs_head_set_default_params();
        p.mode = modes[k];
        p.scale = 0.5f;
        p.metric = k == 2 ? HS_METRIC_KL : HS_METRIC_LOSS;
        p.batch_rows = 16;
        float c[16], g[16];
        hs_err err = {0};
        cr_assert_eq(hs_head_set_metric(f.s_cpu, f.m, &f.pr, &p, set, c, &err), HS_OK, "%s", err.msg);
        for (int i = 0; i < N; i++) g[i] = NAN;
        cr_assert_eq(hs_head_set_metric(f.s_gpu, f.m, &f.pr, &p, set, g, &err), HS_OK, "%s", err.msg);
        expect_close(g, c, N, hs_ablate_mode_name(modes[k]));
    }
    free(set);
    fx_free(&f);
}

/* Greedy tokens must agree exactly; near-ties in the logits could flip them,
 * which the retrieval fixture's prompts avoid (gaps > 1e-3). */
Test(cuda_experiments, retrieval_and_result_hook_match_cpu) {
    if (hs_backend_cuda_device_count() == 0) cr_skip_test("no CUDA device");
    hs_model *m;
    hs_st_file *ref;
    hs_backend *cpu, *gpu;
    hs_session *sc, *sg;
    hs_err err = {0};
    hs_test_load_fixture("llama_gqa", "retrieval", &m, &ref);
    const hs_st_tensor *tok = hs_st_find(ref, "tokens");
    const hs_prompts pr = {.N = (int)tok->shape[0], .T = (int)tok->shape[1], .tokens = tok->data,
                           .lengths = hs_st_find(ref, "lengths")->data};
    const int32_t *ns = hs_st_find(ref, "needle_start")->data, *nl = hs_st_find(ref, "needle_len")->data;
    const hs_model_config *c = hs_model_get_config(m);
    hs_backend_params bp = hs_backend_default_params();
    bp.dtype = HS_DTYPE_F32;
    hs_retrieval_params rp = hs_retrieval_default_params();
    rp.n_generate = 8;
    cr_assert_eq(hs_backend_cpu_init(NULL, &cpu, &err), HS_OK);
    cr_assert_eq(hs_backend_cuda_init(&bp, &gpu, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_session_init(cpu, m, 8, pr.T + rp.n_generate, &sc, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_session_init(gpu, m, 8, pr.T + rp.n_generate, &sg, &err), HS_OK, "%s", err.msg);
    const int64_t ns_ = (int64_t)pr.N * c->n_layers * c->n_heads;
    float *scc = malloc((size_t)ns_ * sizeof(float)), *scg = malloc((size_t)ns_ * sizeof(float));
    int32_t *gc = malloc((size_t)pr.N * rp.n_generate * sizeof(int32_t)), *gg = malloc((size_t)pr.N * rp.n_generate * sizeof(int32_t));
    cr_assert_eq(hs_retrieval_scores_per_prompt(sc, m, &pr, ns, nl, &rp, scc, gc, &err), HS_OK, "%s", err.msg);
    for (int64_t i = 0; i < ns_; i++) scg[i] = NAN;
    cr_assert_eq(hs_retrieval_scores_per_prompt(sg, m, &pr, ns, nl, &rp, scg, gg, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(memcmp(gc, gg, (size_t)pr.N * rp.n_generate * sizeof(int32_t)), 0, "greedy tokens differ");
    expect_close(scg, scc, ns_, "retrieval scores");
    /* the result hook: z from the device, W_O on the host */
    hs_capture *cc, *cg;
    cr_assert_eq(hs_capture_init(cpu, &cc, &err), HS_OK);
    cr_assert_eq(hs_capture_init(gpu, &cg, &err), HS_OK);
    cr_assert_eq(hs_capture_want_result(cc, m, -1, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_capture_want_result(cg, m, -1, &err), HS_OK, "%s", err.msg);
    int32_t *mask = malloc((size_t)pr.N * pr.T * sizeof(int32_t));
    for (int i = 0; i < pr.N; i++)
        for (int t = 0; t < pr.T; t++) mask[i * pr.T + t] = t < pr.lengths[i];
    const int B = pr.N < 8 ? pr.N : 8;
    hs_batch b = {.B = B, .T = pr.T, .tokens = pr.tokens, .mask = mask};
    hs_hooks hc = hs_capture_hooks(cc), hg = hs_capture_hooks(cg);
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = HS_LOGITS_NONE;
    fp.hooks = &hc;
    cr_assert_eq(hs_forward(sc, &b, &fp, NULL, &err), HS_OK, "%s", err.msg);
    fp.hooks = &hg;
    cr_assert_eq(hs_forward(sg, &b, &fp, NULL, &err), HS_OK, "%s", err.msg);
    for (int l = 0; l < c->n_layers; l++) {
        hs_tensor shape;
        const float *rc = hs_capture_get_result(cc, l, &shape), *rg = hs_capture_get_result(cg, l, NULL);
        cr_assert(rc && rg);
        float *keep_c = malloc((size_t)hs_tensor_numel(&shape) * sizeof(float));
        float *keep_g = malloc((size_t)hs_tensor_numel(&shape) * sizeof(float));
        const int64_t per_t = (int64_t)c->n_heads * c->d_model; /* padded positions are not compared */
        for (int64_t i = 0; i < hs_tensor_numel(&shape); i++) {
            const int row = (int)(i / (pr.T * per_t)), t = (int)(i / per_t % pr.T);
            keep_c[i] = t < pr.lengths[row] ? rc[i] : NAN;
            keep_g[i] = t < pr.lengths[row] ? rg[i] : NAN;
        }
        expect_close(keep_g, keep_c, hs_tensor_numel(&shape), "result hook");
        free(keep_c), free(keep_g);
    }
    hs_capture_free(cc), hs_capture_free(cg);
    free(scc), free(scg), free(gc), free(gg), free(mask);
    hs_session_free(sc), hs_session_free(sg);
    hs_backend_free(cpu), hs_backend_free(gpu);
    hs_st_close(ref);
    hs_model_free(m);
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
