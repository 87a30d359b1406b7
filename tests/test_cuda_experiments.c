/* Experiments on the CUDA backend against the CPU backend (f32 mode, the
 * same math): single-head ablation with zero, mean and uniform modes (the
 * in-kernel head multipliers and uniform flags, SET edits uploaded into z,
 * prefix reuse from cached residuals), activation patching (z by position and
 * resid_pre, which also exercises resid_start at layer 0), head scores
 * (patterns recomputed from the log-sum-exp), resample and per-template mean
 * ablation (per-position SET edits), heads ablated together, the retrieval
 * score (greedy decoding), the result hook, attribution patching (the
 * backward), direct logit attribution (its hooks' row downloads) and edge
 * attribution (per-head input gradients, the score GEMMs, axpy). Those
 * fixtures' heads (d_head 12) take the CUDA-core attention kernel only; one
 * more test runs the experiments in bf16 on a random model
 * with d_head 64, on the tensor-core kernels (mma, or wgmma under
 * HS_CUDA_ATTN). Skips without a device. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "headsweep/hs_capture.h"
#include "headsweep/hs_dla.h"
#include "headsweep/hs_eap.h"
#include "headsweep/hs_head_scores.h"
#include "headsweep/hs_head_sets.h"
#include "headsweep/hs_retrieval.h"
#include "headsweep/hs_patching.h"
#include "headsweep/hs_safetensors.h"
#include "hs_backend_cuda.h"
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

/* Direct logit attribution: the last tokens' rows the hooks download from the device, every
 * part and the metric; on gpt2 (LayerNorm, biases) and llama_gqa (RMSNorm, grouped KV heads). */
Test(cuda_experiments, dla_matches_cpu) {
    const char *models[2] = {"gpt2", "llama_gqa"};
    for (int k = 0; k < 2; k++) {
        fx f;
        fx_init(&f, models[k]);
        const int N = f.pr.N, n = N * f.L * f.H;
        float *hc = malloc((size_t)n * sizeof(float)), *hg = malloc((size_t)n * sizeof(float));
        float mc[64], mg[64], rc[16], rg[16], lc[16], lg[16];
        cr_assert(N <= 16 && N * f.L <= 64);
        hs_err err = {0};
        const hs_dla_out oc = {.heads = hc, .mlp = mc, .rest = rc, .metric = lc},
                         og = {.heads = hg, .mlp = mg, .rest = rg, .metric = lg};
        cr_assert_eq(hs_dla(f.s_cpu, &f.pr, HS_METRIC_LOGIT_DIFF, HS_DLA_LAST, 16, &oc, &err), HS_OK, "%s", err.msg);
        for (int i = 0; i < n; i++) hg[i] = NAN; /* poisoned */
        for (int i = 0; i < N * f.L; i++) mg[i] = NAN;
        for (int i = 0; i < N; i++) rg[i] = lg[i] = NAN;
        cr_assert_eq(hs_dla(f.s_gpu, &f.pr, HS_METRIC_LOGIT_DIFF, HS_DLA_LAST, 16, &og, &err), HS_OK, "%s", err.msg);
        expect_close(hg, hc, n, "dla heads");
        expect_close(mg, mc, N * f.L, "dla mlp");
        expect_close(rg, rc, N, "dla rest");
        expect_close(lg, lc, N, "dla metric");
        free(hc), free(hg);
        fx_free(&f);
    }
}

/* Edge attribution: EAP with logit_diff and EAP-IG with KL (the interpolated inputs through
 * resid_start_dev), every edge; non-edges stay untouched (0) on both. */
Test(cuda_experiments, eap_matches_cpu) {
    const char *models[2] = {"gpt2", "llama_gqa"};
    for (int k = 0; k < 2; k++) {
        fx f;
        fx_init(&f, models[k]);
        const hs_model_config *c = hs_model_get_config(f.m);
        const int64_t n = (int64_t)hs_eap_n_upstream(c) * hs_eap_n_downstream(c);
        double *sc = calloc((size_t)n, sizeof *sc), *sg = calloc((size_t)n, sizeof *sg);
        float *fc = malloc((size_t)(n + 2) * sizeof *fc), *fg = malloc((size_t)(n + 2) * sizeof *fg);
        for (int ig = 0; ig < 2; ig++) {
            hs_eap_params p = hs_eap_default_params();
            p.metric = ig ? HS_METRIC_KL : HS_METRIC_LOGIT_DIFF, p.ig_steps = ig ? 3 : 1, p.batch_rows = 16;
            double mc[2] = {0, 0}, mg[2] = {0, 0};
            memset(sc, 0, (size_t)n * sizeof *sc), memset(sg, 0, (size_t)n * sizeof *sg);
            hs_err err = {0};
            cr_assert_eq(hs_eap_scores(f.s_cpu, &f.pr, f.corrupt, &p, 0, f.pr.N, sc, &mc[0], &mc[1], &err), HS_OK,
                         "%s", err.msg);
            cr_assert_eq(hs_eap_scores(f.s_gpu, &f.pr, f.corrupt, &p, 0, f.pr.N, sg, &mg[0], &mg[1], &err), HS_OK,
                         "%s", err.msg);
            for (int64_t i = 0; i < n; i++) fc[i] = (float)(sc[i] / f.pr.N), fg[i] = (float)(sg[i] / f.pr.N);
            for (int i = 0; i < 2; i++) fc[n + i] = (float)(mc[i] / f.pr.N), fg[n + i] = (float)(mg[i] / f.pr.N);
            for (int64_t i = 0; i < n; i++)
                if (!hs_eap_is_edge(c, (int)(i / hs_eap_n_downstream(c)), (int)(i % hs_eap_n_downstream(c))))
                    cr_assert(sg[i] == 0.0, "%s: CUDA wrote non-edge %lld", models[k], (long long)i);
            char what[64];
            snprintf(what, sizeof what, "%s %s", models[k], ig ? "EAP-IG kl" : "EAP logit_diff");
            expect_close(fg, fc, n + 2, what);
        }
        free(sc), free(sg), free(fc), free(fg);
        fx_free(&f);
    }
}

/* Circuit evaluation on CUDA (split inputs: per-head projections from node
 * copies, the cut GEMMs, node gathers): each prompt's metric with a random
 * half of the edges, every edge and none, in f32, against the CPU. */
Test(cuda_experiments, eap_circuit_matches_cpu) {
    const char *models[2] = {"gpt2", "llama_gqa"};
    for (int k = 0; k < 2; k++) {
        fx f;
        fx_init(&f, models[k]);
        const hs_model_config *c = hs_model_get_config(f.m);
        const int64_t uv = (int64_t)hs_eap_n_upstream(c) * hs_eap_n_downstream(c);
        const int N = f.pr.N, K = 3;
        uint8_t *in = malloc((size_t)(K * uv));
        hs_test_rng rng;
        hs_test_rng_seed(&rng, 17);
        for (int64_t i = 0; i < uv; i++) in[i] = hs_test_rng_uniform(&rng) < 0.5f, in[uv + i] = 1, in[2 * uv + i] = 0;
        const uint8_t *circuits[3] = {in, in + uv, in + 2 * uv};
        float *oc = malloc((size_t)N * (K + 2) * sizeof *oc), *og = malloc((size_t)N * (K + 2) * sizeof *og);
        for (int64_t i = 0; i < (int64_t)N * (K + 2); i++) og[i] = NAN; /* poisoned: every value is written */
        const hs_eap_circuit_params p = {.metric = HS_METRIC_KL, .batch_rows = 2, .circuits = circuits,
                                         .n_circuits = K}; /* several batches, the last partial */
        hs_err err = {0};
        cr_assert_eq(hs_eap_circuit(f.s_cpu, &f.pr, f.corrupt, &p, 0, N, oc, oc + N * K, oc + N * (K + 1), &err), HS_OK,
                     "%s", err.msg);
        cr_assert_eq(hs_eap_circuit(f.s_gpu, &f.pr, f.corrupt, &p, 0, N, og, og + N * K, og + N * (K + 1), &err), HS_OK,
                     "%s", err.msg);
        char what[64];
        snprintf(what, sizeof what, "%s circuits, kl", models[k]);
        expect_close(og, oc, (int64_t)N * (K + 2), what);
        free(in), free(oc), free(og);
        fx_free(&f);
    }
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
    for (int64_t i = 0; i < (int64_t)N * L * T * H; i++) zg[i] = 12345.0f; /* poisoned: every cell is written */
    for (int i = 0; i < 8; i++) cg[i] = xg[i] = NAN;
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
            cr_assert_eq(hs_attribution_patching(f.s_cpu, f.m, &f.pr, f.corrupt, &p, &oc, &err), HS_OK, "%s", err.msg);
            for (int recompute = 0; recompute < 2; recompute++) { /* activations kept, then layers rerun */
                hs_session_set_backward_keep_bytes(f.s_gpu, recompute ? 0 : HS_BACKWARD_KEEP_BYTES);
                /* poisoned before each run: the rerun must not pass on the first run's cells */
                for (int i = 0; i < N; i++) cg[i] = xg[i] = NAN;
                for (int64_t i = 0; i < na; i++) ag[i] = NAN;
                for (int64_t i = 0; i < nz; i++) zg[i] = NAN;
                for (int64_t i = 0; i < 3 * nr; i++) rg[i] = NAN;
                for (int64_t i = 0; i < na + 2 * nk; i++) qg[i] = NAN;
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

/* ---- bf16 on the tensor-core attention kernels -----------------------------------
 * The tests above run f32 on fixtures whose head size (12) only the CUDA-core
 * kernel takes. Here a random Llama-shaped model with SmolLM2's head size
 * (64), GQA 4:2, runs the experiments in bf16, the default mode, on the mma
 * kernel (or wgmma under HS_CUDA_ATTN=wgmma), against the CPU on the same
 * bf16-rounded weights; and the same for a Pythia-shaped model (partial
 * RoPE, exact GELU, parallel attention and MLP). Prompts are [BOS] x x (head scores have something to
 * find) with mixed lengths (padding), and a corruption inside x. */
enum { BF_N = 6, BF_T = 41 };

typedef struct {
    hs_model *m;
    int32_t tok[BF_N * BF_T], corrupt[BF_N * BF_T], len[BF_N], ans[BF_N], dis[BF_N];
    hs_prompts pr;
} bf_set;

/* Random weights attend almost uniformly (scores of rms ~0.1), so patching
 * a query or key barely moves the metric. Doubling W_Q and W_K gives
 * patterns with some shape (more makes the maps themselves sensitive to one
 * bf16 rounding of the weights: 6% at a gain of 6). */
#define BF_QK_GAIN 2.0f
static void bf_sharpen(hs_model *m) {
    const hs_model_config *c = hs_model_get_config(m);
    const hs_model_weights *w = hs_model_get_weights(m);
    const int64_t nq = (int64_t)c->n_heads * c->d_head * c->d_model, nk = (int64_t)c->n_kv_heads * c->d_head * c->d_model;
    for (int l = 0; l < c->n_layers; l++) {
        for (int64_t i = 0; i < nq; i++) w->layers[l].wq[i] *= BF_QK_GAIN;
        for (int64_t i = 0; i < nk; i++) w->layers[l].wk[i] *= BF_QK_GAIN;
    }
}

/* The Llama-shaped model (GQA 4:2), or with neox a Pythia-shaped one: MHA,
 * LayerNorm with biases, exact GELU, RoPE on 16 of 64 dims, attention and MLP
 * in parallel. */
static hs_model_config bf_config(int neox) {
    hs_model_config c = hs_test_llama_config(3, 4, neox ? 4 : 2, 256, 64, 512, 512, 256, 10000.0f);
    if (neox) {
        c.arch = HS_ARCH_NEOX, c.norm = HS_NORM_LAYERNORM, c.act = HS_ACT_GELU, c.norm_eps = 1e-5f;
        c.rot_dim = 16, c.parallel_attn_mlp = 1, c.qkv_bias = c.out_bias = 1, c.tied_embeddings = 0;
    }
    return c;
}

static void bf_init(bf_set *b, int neox) {
    const hs_model_config c = bf_config(neox);
    hs_err err = {0};
    cr_assert_eq(hs_model_init_random(&c, 4242, &b->m, &err), HS_OK, "%s", err.msg);
    bf_sharpen(b->m);
    hs_test_round_model_bf16(b->m);
    hs_test_rng rng;
    hs_test_rng_seed(&rng, 4243);
    static const int32_t lens[BF_N] = {41, 41, 33, 41, 27, 41};
    for (int r = 0; r < BF_N; r++) {
        int32_t *t = b->tok + r * BF_T, *x = b->corrupt + r * BF_T;
        const int half = (lens[r] - 1) / 2;
        b->len[r] = lens[r];
        for (int i = 0; i < BF_T; i++) t[i] = 0;
        t[0] = 1;
        for (int i = 0; i < half; i++) t[1 + i] = t[1 + half + i] = 3 + (int32_t)(hs_test_rng_u64(&rng) % 509);
        memcpy(x, t, BF_T * sizeof *t);
        for (int i = 3; i < 7; i++) x[i] = 3 + (int32_t)(hs_test_rng_u64(&rng) % 509);
        b->ans[r] = t[2]; /* what the induction half would predict next */
        b->dis[r] = x[3];
    }
    b->pr = (hs_prompts){.N = BF_N, .T = BF_T, .tokens = b->tok, .lengths = b->len, .answer = b->ans,
                         .distractor = b->dis};
}

/* What the bf16 test compares, from one backend. */
typedef struct {
    float clean[BF_N], corrupt[BF_N], base[BF_N];
    float *z_all, *z_pos, *qkv, *path, *heads, *delta, *scores;
} bf_maps;

static void bf_run(const bf_set *b, hs_backend *be, bf_maps *o) {
    const hs_model_config *c = hs_model_get_config(b->m);
    const int64_t nh = (int64_t)BF_N * c->n_layers * c->n_heads;
    hs_err err = {0};
    hs_session *s = NULL;
    cr_assert_eq(hs_session_init(be, b->m, 16, BF_T, &s, &err), HS_OK, "%s", err.msg);
    o->z_all = malloc(nh * 4), o->z_pos = malloc(nh * BF_T * 4), o->qkv = malloc(3 * nh * 4);
    o->path = malloc(nh * 4), o->heads = malloc(nh * 4), o->delta = malloc(nh * 4);
    o->scores = malloc((size_t)HS_SCORE_COUNT * c->n_layers * c->n_heads * 4);
    for (int64_t i = 0; i < nh; i++) o->z_all[i] = o->path[i] = o->heads[i] = o->delta[i] = NAN; /* poisoned */
    for (int64_t i = 0; i < 3 * nh; i++) o->qkv[i] = NAN;
    for (int i = 0; i < HS_SCORE_COUNT * c->n_layers * c->n_heads; i++) o->scores[i] = 0.0f; /* Olsson's: unasked */
    const int64_t nk = (int64_t)BF_N * c->n_layers * c->n_kv_heads;
    hs_patching_out po = {.clean = o->clean, .corrupt = o->corrupt, .z_all_pos = o->z_all, .z_by_pos = o->z_pos,
                          .q_all_pos = o->qkv, .k_all_pos = o->qkv + nh, .v_all_pos = o->qkv + nh + nk,
                          .path_logits = o->path, .path_heads = o->heads};
    hs_patching_params p = hs_patching_default_params();
    p.batch_rows = 16;
    p.targets = (1u << HS_PATCH_Z_ALL_POS) | (1u << HS_PATCH_Z_BY_POS) | (1u << HS_PATCH_Q_ALL_POS) |
                (1u << HS_PATCH_K_ALL_POS) | (1u << HS_PATCH_V_ALL_POS) | (1u << HS_PATCH_PATH_LOGITS) |
                (1u << HS_PATCH_PATH_HEADS);
    const int receivers[4] = {2, 0, 2, 1}; /* KV heads: values carry larger effects than queries here */
    p.receivers = receivers;
    p.n_receivers = 2;
    p.receiver_input = HS_HOOK_V;
    cr_assert_eq(hs_activation_patching(s, b->m, &b->pr, b->corrupt, &p, &po, &err), HS_OK, "%s", err.msg);
    hs_ablation_params ap = hs_ablation_default_params();
    ap.mode = HS_ABLATE_MEAN; /* mean z: SET tables */
    ap.metric = HS_METRIC_LOGIT_DIFF;
    cr_assert_eq(hs_head_ablation(s, b->m, &b->pr, &ap, o->base, o->delta, &err), HS_OK, "%s", err.msg);
    const unsigned mask = (1u << HS_SCORE_PREVIOUS_TOKEN) | (1u << HS_SCORE_DUPLICATE_TOKEN) | (1u << HS_SCORE_INDUCTION);
    cr_assert_eq(hs_head_scores(s, b->m, &b->pr, mask, 4, o->scores, &err), HS_OK, "%s", err.msg);
    hs_session_free(s);
}

static void bf_free(bf_maps *o) {
    free(o->z_all), free(o->z_pos), free(o->qkv), free(o->path), free(o->heads), free(o->delta), free(o->scores);
}

/* Effects (cell minus its prompt's corrupted metric, or the ablation's delta)
 * of `got` against `ref`: NaN in the same cells, and ||got - ref|| / ||ref||
 * at most rel_tol, or the rms difference at most floor (a map whose effects
 * are near bf16's resolution of the metric). A patch the kernel dropped leaves
 * effects of 0: a relative difference of 1. */
static void bf_expect(const float *got, const float *ref, const float *base_g, const float *base_r, int64_t n,
                      int64_t per_prompt, double rel_tol, double floor, const char *what) {
    double d2 = 0, r2 = 0;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        cr_assert_eq(isnan(got[i]) != 0, isnan(ref[i]) != 0, "%s[%lld]: CUDA %g, CPU %g", what, (long long)i, got[i],
                     ref[i]);
        if (isnan(ref[i])) continue;
        const int64_t pi = i / per_prompt;
        const double eg = got[i] - (base_g ? base_g[pi] : 0), er = ref[i] - (base_r ? base_r[pi] : 0);
        d2 += (eg - er) * (eg - er), r2 += er * er, m++;
    }
    cr_assert_gt(m, 0, "%s: no cells", what);
    cr_assert_gt(r2, 0, "%s: no effect to compare", what);
    const double rel = sqrt(d2 / r2), rms = sqrt(r2 / m), drms = sqrt(d2 / m);
    cr_log_info("%s: ||bf16 - f32|| / ||f32|| = %.3g, rms difference %.3g, over %lld effects of rms %.3g", what, rel,
                drms, (long long)m, rms);
    cr_assert(rel <= rel_tol || drms <= floor,
              "%s: ||bf16 - f32|| / ||f32|| = %.3g (bound %.2g), rms difference %.3g (floor %.3g), effects of rms %.3g",
              what, rel, rel_tol, drms, floor, rms);
}

/* got (from model weights or activations in bf16) against ref, map by map. */
static void bf_compare(const bf_set *b, const bf_maps *g, const bf_maps *r, double rel_tol, double floor_frac,
                       double score_tol) {
    const hs_model_config *c = hs_model_get_config(b->m);
    const int LH = c->n_layers * c->n_heads, nh = BF_N * LH, nk = BF_N * c->n_layers * c->n_kv_heads;
    double ms = 0; /* the metric's scale: rms of the clean and corrupted logit differences */
    for (int i = 0; i < BF_N; i++) ms += r->clean[i] * r->clean[i] + r->corrupt[i] * r->corrupt[i];
    const double floor = floor_frac * sqrt(ms / (2 * BF_N));
    bf_expect(g->clean, r->clean, g->corrupt, r->corrupt, BF_N, 1, rel_tol, floor, "clean - corrupt");
    bf_expect(g->z_all, r->z_all, g->corrupt, r->corrupt, nh, LH, rel_tol, floor, "z_all_pos");
    bf_expect(g->z_pos, r->z_pos, g->corrupt, r->corrupt, (int64_t)nh * BF_T, (int64_t)LH * BF_T, rel_tol, floor, "z_by_pos");
    bf_expect(g->qkv, r->qkv, g->corrupt, r->corrupt, nh, LH, rel_tol, floor, "q_all_pos");
    bf_expect(g->qkv + nh, r->qkv + nh, g->corrupt, r->corrupt, nk, nk / BF_N, rel_tol, floor, "k_all_pos");
    bf_expect(g->qkv + nh + nk, r->qkv + nh + nk, g->corrupt, r->corrupt, nk, nk / BF_N, rel_tol, floor, "v_all_pos");
    bf_expect(g->path, r->path, g->corrupt, r->corrupt, nh, LH, rel_tol, floor, "path_logits");
    bf_expect(g->heads, r->heads, g->corrupt, r->corrupt, nh, LH, rel_tol, floor, "path_heads");
    bf_expect(g->delta, r->delta, NULL, NULL, nh, LH, rel_tol, floor, "mean ablation delta");
    double md = 0;
    for (int i = 0; i < HS_SCORE_COUNT * LH; i++) { /* not fmax, which would drop a NaN */
        const double dd = fabs((double)g->scores[i] - r->scores[i]);
        if (!(dd <= md)) md = dd;
    }
    cr_log_info("head scores: max |diff| %.3g", md);
    cr_assert_leq(md, score_tol, "head scores: max |diff| %.3g (bound %.2g)", md, score_tol);
}

/* Bounds: effects within 15% relative L2, or an rms difference within 2% of
 * the metric's scale (bf16 resolves about 0.4% of a value per rounding, and
 * the CUDA side rounds every stored activation, about a dozen per layer);
 * head scores (means of attention probabilities, in [0, 1]) within 0.02
 * absolute, about five bf16 roundings of the largest. These are estimates
 * until a GPU run reports the differences it logs. The CPU test below
 * measures what one rounding of every weight does to the same maps and holds
 * it to a third of these bounds. */
#define BF_REL 0.15
#define BF_FLOOR 0.02
#define BF_SCORE 0.02
static void bf_tensor_core_case(int neox) {
    bf_set b;
    bf_init(&b, neox);
    hs_backend *cpu = NULL, *gpu = NULL;
    hs_err err = {0};
    hs_backend_params bp = hs_backend_default_params();
    bp.dtype = HS_DTYPE_BF16;
    cr_assert_eq(hs_backend_cpu_init(NULL, &cpu, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_backend_cuda_init(&bp, &gpu, &err), HS_OK, "%s", err.msg);
    bf_maps r, g;
    bf_run(&b, cpu, &r);
    bf_run(&b, gpu, &g);
    int64_t n[3];
    hs_backend_cuda_attn_launches(gpu, n);
    /* d_head 64: every call on the kernel the backend is set to (HS_CUDA_ATTN=wgmma in gpu-check.sh's reruns) */
    const int wg = hs_backend_cuda_attn_kernel(gpu) == HS_CUDA_ATTN_WGMMA;
    cr_assert(n[0] == 0 && n[wg ? 2 : 1] > 0 && n[wg ? 1 : 2] == 0,
              "attention calls: CUDA-core %lld, mma.sync %lld, wgmma %lld (want %s only)", (long long)n[0],
              (long long)n[1], (long long)n[2], wg ? "wgmma" : "mma.sync");
    cr_log_info("attention calls: mma.sync %lld, wgmma %lld", (long long)n[1], (long long)n[2]);
    bf_compare(&b, &g, &r, BF_REL, BF_FLOOR, BF_SCORE);
    bf_free(&r), bf_free(&g);
    hs_backend_free(cpu), hs_backend_free(gpu);
    hs_model_free(b.m);
}

Test(cuda_experiments, bf16_tensor_core_kernels_match_cpu, .timeout = 300) {
    if (hs_backend_cuda_device_count() == 0) cr_skip_test("no CUDA device");
    bf_tensor_core_case(0);
}

Test(cuda_experiments, bf16_neox_tensor_core_kernels_match_cpu, .timeout = 300) {
    if (hs_backend_cuda_device_count() == 0) cr_skip_test("no CUDA device");
    bf_tensor_core_case(1);
}

/* The bounds above, on the CPU: the same maps from the f32 weights against
 * the bf16-rounded ones (one bf16 rounding per weight, about what the CUDA
 * side's rounding of every activation adds per op) must sit well inside them,
 * and every map must carry effects the comparison can see. */
static void bf_margin_case(int neox) {
    bf_set b, f;
    bf_init(&b, neox);
    bf_init(&f, neox);
    hs_err err = {0};
    hs_model_config c = *hs_model_get_config(f.m);
    hs_model_free(f.m);
    cr_assert_eq(hs_model_init_random(&c, 4242, &f.m, &err), HS_OK, "%s", err.msg); /* the same, unrounded */
    bf_sharpen(f.m);
    hs_backend *cpu = NULL;
    cr_assert_eq(hs_backend_cpu_init(NULL, &cpu, &err), HS_OK, "%s", err.msg);
    bf_maps r, q;
    bf_run(&f, cpu, &r);
    bf_run(&b, cpu, &q);
    bf_compare(&b, &q, &r, BF_REL / 3, BF_FLOOR / 3, BF_SCORE / 3);
    bf_free(&r), bf_free(&q);
    hs_backend_free(cpu);
    hs_model_free(b.m), hs_model_free(f.m);
}

Test(cuda_experiments_cpu, bf16_bounds_have_margin, .timeout = 300) { bf_margin_case(0); }
Test(cuda_experiments_cpu, bf16_bounds_have_margin_neox, .timeout = 300) { bf_margin_case(1); }

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
