/* test_cuda_model: whole-model CUDA vs CPU through hs_session / hs_forward on
 * the tiny fixture models (tests/fixtures/models/{gpt2,llama_mha,llama_gqa,pythia})
 * a SmolLM2-135M-shaped random model (30 layers, GQA 9/3, d_head 64) and the
 * real SmolLM2-135M GGUF when present, in f32 and bf16 mode. Compared: logits at every position, z and resid_post at
 * every layer, the pattern at the first and last layer; the first hook point
 * (in forward order) that diverges is named. Padded batches and head_scale
 * edits are on, so the mask and epilogue paths run end to end.
 *
 * Tolerances, as the normalised error ||got - ref|| / ||ref|| of a tensor
 * after `depth` layers (depth = layer + 1, and n_layers + 1 for logits):
 *   f32:  tol = 2e-6 * (depth + 2). Each layer performs O(10) reductions of
 *         length K <= 1536 whose order differs between cuBLAS/our kernels and
 *         OpenBLAS/the reference loops: ~sqrt(K) * 2^-24 ~ 2e-6 relative to
 *         the activation scale per layer; the residual stream carries those
 *         errors forward additively (linear growth, worst case); +2 for the
 *         embedding and the final norm/unembedding. Elementwise, |d| <=
 *         10 tol (|ref| + rms(ref)): the softmax turns a relative error e of
 *         q and k into a score error ~|s| e, and the fixtures' sharp attention
 *         has |s| up to ~10, so single z elements (where p·v terms cancel)
 *         carry ~10x the aggregate error (seen on an H100: 6e-6 abs on a z of
 *         0.03 with the tensor's normalised error at 1e-6).
 *   bf16: the CPU model's weights are first rounded to bf16 (the CUDA backend
 *         stores bf16 weights), so only activation rounding differs. Every
 *         layer rounds ~10 activation tensors (norm out, q, k, v, z, attn_out,
 *         residual twice, MLP hidden, mlp_out). One round-to-nearest to bf16
 *         (8 significand bits, unit roundoff u = 2^-8) has a relative error
 *         spread evenly in [-u, u] at worst, RMS <= u/sqrt(3); independent
 *         roundings add in quadrature and the residual stream accumulates them
 *         over layers, so after depth layers the normalised error is about
 *         sqrt(10 * depth + 4) * u / sqrt(3) (+4: embedding, final norm,
 *         logits); tol = 2x that (0.03 at 3 layers, 0.08 at 31). Only the
 *         normalised error is checked (single elements near zero carry
 *         absolute, not relative, bf16 error). NaN always fails. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_capture.h"
#include "headsweep/hs_forward.h"
#include "headsweep/hs_head_grad.h"
#include "headsweep/hs_model.h"
#include "hs_testutil.h"

static double tol_f32(int depth) { return 2e-6 * (depth + 2); }
static double tol_bf16(int depth) { return 2.0 * sqrt(10.0 * depth + 4.0) * ldexp(1.0, -8) / sqrt(3.0); }

static void ok(hs_status st, const hs_err *err, const char *what) {
    cr_assert_eq(st, HS_OK, "%s failed: %s (%s)", what, err->msg, hs_status_str(st));
}

typedef struct {
    hs_backend *be;
    hs_session *s;
    hs_capture *cap;
    float *logits;
} run_out;

static void run_backend(hs_model *m, int gpu, hs_dtype dt, const hs_batch *b, const float *head_scale,
                        run_out *o) {
    hs_err err = {0};
    const hs_model_config *c = hs_model_get_config(m);
    hs_backend_params p = hs_backend_default_params();
    p.dtype = dt;
    memset(o, 0, sizeof *o);
    if (gpu) ok(hs_backend_cuda_init(&p, &o->be, &err), &err, "cuda init");
    else ok(hs_backend_cpu_init(&p, &o->be, &err), &err, "cpu init");
    ok(hs_session_init(o->be, m, b->B, b->T, &o->s, &err), &err, gpu ? "cuda session" : "cpu session");
    ok(hs_capture_init(o->be, &o->cap, &err), &err, "capture init");
    ok(hs_capture_want(o->cap, HS_HOOK_Z, -1, &err), &err, "want z");
    ok(hs_capture_want(o->cap, HS_HOOK_RESID_POST, -1, &err), &err, "want resid_post");
    ok(hs_capture_want(o->cap, HS_HOOK_PATTERN, 0, &err), &err, "want pattern");
    ok(hs_capture_want(o->cap, HS_HOOK_PATTERN, c->n_layers - 1, &err), &err, "want pattern");
    hs_hooks hooks = hs_capture_hooks(o->cap);
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = HS_LOGITS_ALL;
    fp.hooks = &hooks;
    fp.head_scale = head_scale;
    o->logits = malloc((size_t)b->B * b->T * c->n_vocab * sizeof(float));
    cr_assert(o->logits);
    for (int64_t i = 0; i < (int64_t)b->B * b->T * c->n_vocab; i++) o->logits[i] = NAN; /* poisoned */
    ok(hs_forward(o->s, b, &fp, o->logits, &err), &err, gpu ? "cuda forward" : "cpu forward");
}

static void free_run(run_out *o) {
    hs_capture_free(o->cap);
    hs_session_free(o->s);
    hs_backend_free(o->be);
    free(o->logits);
}

/* Compares one tensor; returns 0 and fills why[] when it is out of tolerance. */
static int close_enough(const float *got, const float *ref, int64_t n, int bf16, int depth, char *why,
                        size_t nwhy) {
    const double tol = bf16 ? tol_bf16(depth) : tol_f32(depth);
    hs_test_cmp c = hs_test_compare(got, ref, n, 10 * tol * hs_test_rms(ref, n), bf16 ? INFINITY : 10 * tol);
    if (bf16) c.n_bad = c.nan ? c.n_bad : 0; /* bf16: aggregate only, NaN still fails */
    if (!c.nan && c.n_bad == 0 && c.rel_l2 <= tol) return 1;
    int64_t i = c.first_bad;
    snprintf(why, nwhy, "rel l2 %.3g (tol %.3g), %lld bad elements%s, first [%lld] got %.7g want %.7g", c.rel_l2,
             tol, (long long)c.n_bad, c.nan ? " incl. NaN" : "", (long long)i, i >= 0 ? got[i] : 0.0,
             i >= 0 ? ref[i] : 0.0);
    return 0;
}

/* Runs m on both backends and compares hook by hook in forward order. */
static void compare_model(hs_model *m, hs_dtype dt, int B, int T, uint64_t seed, const char *name) {
    const hs_model_config *c = hs_model_get_config(m);
    const int bf16 = dt == HS_DTYPE_BF16;
    fprintf(stderr, "[test_cuda_model] %s: %s, %d layers, seed %llu, B=%d T=%d\n", name, bf16 ? "bf16" : "f32",
            c->n_layers, (unsigned long long)seed, B, T);
    if (bf16) hs_test_round_model_bf16(m);
    hs_test_rng rng;
    hs_test_rng_seed(&rng, seed);
    int32_t *tok = malloc((size_t)B * T * 4), *mask = malloc((size_t)B * T * 4);
    for (int r = 0; r < B; r++)
        for (int t = 0; t < T; t++) {
            tok[r * T + t] = (int32_t)(hs_test_rng_u64(&rng) % (uint64_t)c->n_vocab);
            /* row 1 right-padded by 7, row 2 left-padded by 5 */
            mask[r * T + t] = !((r == 1 && t >= T - 7) || (r == 2 && t < 5));
        }
    float *hsc = malloc((size_t)c->n_layers * B * c->n_heads * sizeof *hsc);
    for (int i = 0; i < c->n_layers * B * c->n_heads; i++) hsc[i] = (i % 11 == 4) ? 0.0f : (i % 7 == 2) ? 0.5f : 1.0f;
    hs_batch b = {.B = B, .T = T, .tokens = tok, .mask = mask, .positions = NULL};
    run_out cpu, gpu;
    run_backend(m, 0, dt, &b, hsc, &cpu);
    run_backend(m, 1, dt, &b, hsc, &gpu);

    char why[512];
    for (int l = 0; l < c->n_layers; l++) {
        const hs_hook_point pts[] = {HS_HOOK_PATTERN, HS_HOOK_Z, HS_HOOK_RESID_POST};
        for (int k = 0; k < 3; k++) {
            hs_tensor sr, sg;
            const float *r = hs_capture_get(cpu.cap, pts[k], l, &sr), *g = hs_capture_get(gpu.cap, pts[k], l, &sg);
            if (pts[k] == HS_HOOK_PATTERN && l != 0 && l != c->n_layers - 1) continue;
            cr_assert(r && g, "%s: %s at layer %d not captured (cpu %p, cuda %p)", name, hs_hook_name(pts[k]), l,
                      (const void *)r, (const void *)g);
            int64_t n = hs_tensor_numel(&sr);
            cr_assert_eq(n, hs_tensor_numel(&sg), "%s: %s at layer %d: shapes differ", name, hs_hook_name(pts[k]), l);
            cr_assert(close_enough(g, r, n, bf16, l + 1, why, sizeof why), "%s: first divergence at %s, layer %d: %s",
                      name, hs_hook_name(pts[k]), l, why);
        }
    }
    const int64_t nl = (int64_t)B * T * c->n_vocab;
    cr_assert(close_enough(gpu.logits, cpu.logits, nl, bf16, c->n_layers + 1, why, sizeof why),
              "%s: logits diverge: %s", name, why);
    free_run(&cpu);
    free_run(&gpu);
    free(tok), free(mask), free(hsc);
}

static void fixture_case(const char *rel, hs_dtype dt, const char *name) {
    hs_model *m = hs_test_fixture_model(rel);
    const hs_model_config *c = hs_model_get_config(m);
    int T = c->n_ctx < 48 ? c->n_ctx : 48;
    compare_model(m, dt, 3, T, 2001, name);
    hs_model_free(m);
}

Test(cuda_model, gpt2_f32) { REQUIRE_GPU(); fixture_case("gpt2", HS_DTYPE_F32, "gpt2_f32"); }
Test(cuda_model, gpt2_bf16) { REQUIRE_GPU(); fixture_case("gpt2", HS_DTYPE_BF16, "gpt2_bf16"); }
Test(cuda_model, llama_mha_f32) { REQUIRE_GPU(); fixture_case("llama_mha", HS_DTYPE_F32, "llama_mha_f32"); }
Test(cuda_model, llama_mha_bf16) { REQUIRE_GPU(); fixture_case("llama_mha", HS_DTYPE_BF16, "llama_mha_bf16"); }
Test(cuda_model, llama_gqa_f32) { REQUIRE_GPU(); fixture_case("llama_gqa", HS_DTYPE_F32, "llama_gqa_f32"); }
Test(cuda_model, llama_gqa_bf16) { REQUIRE_GPU(); fixture_case("llama_gqa", HS_DTYPE_BF16, "llama_gqa_bf16"); }
/* GPT-NeoX: partial RoPE (8 of 32 dims), exact GELU, parallel attention and MLP */
Test(cuda_model, pythia_f32) { REQUIRE_GPU(); fixture_case("pythia", HS_DTYPE_F32, "pythia_f32"); }
Test(cuda_model, pythia_bf16) { REQUIRE_GPU(); fixture_case("pythia", HS_DTYPE_BF16, "pythia_bf16"); }
/* Qwen3: the q/k norms (the norm op over [rows x heads, d_head]) */
Test(cuda_model, qwen3_f32) { REQUIRE_GPU(); fixture_case("qwen3", HS_DTYPE_F32, "qwen3_f32"); }
Test(cuda_model, qwen3_bf16) { REQUIRE_GPU(); fixture_case("qwen3", HS_DTYPE_BF16, "qwen3_bf16"); }
/* Phi-3: weights aliased into the fused qkv_proj / gate_up_proj, uploaded per matrix; partial RoPE */
Test(cuda_model, phi3_f32) { REQUIRE_GPU(); fixture_case("phi3", HS_DTYPE_F32, "phi3_f32"); }
Test(cuda_model, phi3_bf16) { REQUIRE_GPU(); fixture_case("phi3", HS_DTYPE_BF16, "phi3_bf16"); }
/* Gemma 2: the capped scores (simt and tensor-core kernels, the pattern recompute), the
 * post-norms, GeGLU, the embedding's scale and the capped logits */
Test(cuda_model, gemma2_f32) { REQUIRE_GPU(); fixture_case("gemma2", HS_DTYPE_F32, "gemma2_f32"); }
Test(cuda_model, gemma2_bf16) { REQUIRE_GPU(); fixture_case("gemma2", HS_DTYPE_BF16, "gemma2_bf16"); }
Test(cuda_model, gemma3_f32) { REQUIRE_GPU(); fixture_case("gemma3", HS_DTYPE_F32, "gemma3_f32"); }
Test(cuda_model, gemma3_bf16) { REQUIRE_GPU(); fixture_case("gemma3", HS_DTYPE_BF16, "gemma3_bf16"); }
Test(cuda_model, gemma3_mm_bf16) { REQUIRE_GPU(); fixture_case("gemma3_mm", HS_DTYPE_BF16, "gemma3_mm_bf16"); }
Test(cuda_model, olmo_f32) { REQUIRE_GPU(); fixture_case("olmo", HS_DTYPE_F32, "olmo_f32"); }
Test(cuda_model, olmo_bf16) { REQUIRE_GPU(); fixture_case("olmo", HS_DTYPE_BF16, "olmo_bf16"); }
Test(cuda_model, olmo_clip_f32) { REQUIRE_GPU(); fixture_case("olmo_clip", HS_DTYPE_F32, "olmo_clip_f32"); }
Test(cuda_model, olmo_clip_bf16) { REQUIRE_GPU(); fixture_case("olmo_clip", HS_DTYPE_BF16, "olmo_clip_bf16"); }
Test(cuda_model, olmo2_f32) { REQUIRE_GPU(); fixture_case("olmo2", HS_DTYPE_F32, "olmo2_f32"); }
Test(cuda_model, olmo2_bf16) { REQUIRE_GPU(); fixture_case("olmo2", HS_DTYPE_BF16, "olmo2_bf16"); }
Test(cuda_model, olmo3_f32) { REQUIRE_GPU(); fixture_case("olmo3", HS_DTYPE_F32, "olmo3_f32"); }
Test(cuda_model, olmo3_bf16) { REQUIRE_GPU(); fixture_case("olmo3", HS_DTYPE_BF16, "olmo3_bf16"); }
/* SmolLM3: the rope op skipped in the NoPE layers */
Test(cuda_model, smollm3_f32) { REQUIRE_GPU(); fixture_case("smollm3", HS_DTYPE_F32, "smollm3_f32"); }
Test(cuda_model, smollm3_bf16) { REQUIRE_GPU(); fixture_case("smollm3", HS_DTYPE_BF16, "smollm3_bf16"); }
/* GPT-BigCode: one key/value head for four query heads, learned positions */
Test(cuda_model, bigcode_f32) { REQUIRE_GPU(); fixture_case("bigcode", HS_DTYPE_F32, "bigcode_f32"); }
Test(cuda_model, bigcode_bf16) { REQUIRE_GPU(); fixture_case("bigcode", HS_DTYPE_BF16, "bigcode_bf16"); }
Test(cuda_model, falcon_mq_f32) { REQUIRE_GPU(); fixture_case("falcon_mq", HS_DTYPE_F32, "falcon_mq_f32"); }
Test(cuda_model, falcon_mq_bf16) { REQUIRE_GPU(); fixture_case("falcon_mq", HS_DTYPE_BF16, "falcon_mq_bf16"); }
Test(cuda_model, falcon_gqa_f32) { REQUIRE_GPU(); fixture_case("falcon_gqa", HS_DTYPE_F32, "falcon_gqa_f32"); }
Test(cuda_model, falcon_gqa_bf16) { REQUIRE_GPU(); fixture_case("falcon_gqa", HS_DTYPE_BF16, "falcon_gqa_bf16"); }
Test(cuda_model, stablelm_f32) { REQUIRE_GPU(); fixture_case("stablelm", HS_DTYPE_F32, "stablelm_f32"); }
Test(cuda_model, stablelm_bf16) { REQUIRE_GPU(); fixture_case("stablelm", HS_DTYPE_BF16, "stablelm_bf16"); }
Test(cuda_model, bloom_f32) { REQUIRE_GPU(); fixture_case("bloom", HS_DTYPE_F32, "bloom_f32"); }
Test(cuda_model, bloom_bf16) { REQUIRE_GPU(); fixture_case("bloom", HS_DTYPE_BF16, "bloom_bf16"); }
Test(cuda_model, mpt_f32) { REQUIRE_GPU(); fixture_case("mpt_clip", HS_DTYPE_F32, "mpt_clip_f32"); }
Test(cuda_model, mpt_bf16) { REQUIRE_GPU(); fixture_case("mpt_clip", HS_DTYPE_BF16, "mpt_clip_bf16"); }
Test(cuda_model, falcon_rw_f32) { REQUIRE_GPU(); fixture_case("falcon_rw", HS_DTYPE_F32, "falcon_rw_f32"); }
Test(cuda_model, falcon_rw_bf16) { REQUIRE_GPU(); fixture_case("falcon_rw", HS_DTYPE_BF16, "falcon_rw_bf16"); }
/* Granite's multipliers (two folded into the weights), Cohere's parallel block on adjacent-pair
 * RoPE, Cohere2's NoPE full layer among windowed ones, StarCoder2's biases and windows */
Test(cuda_model, granite_f32) { REQUIRE_GPU(); fixture_case("granite", HS_DTYPE_F32, "granite_f32"); }
Test(cuda_model, granite_bf16) { REQUIRE_GPU(); fixture_case("granite", HS_DTYPE_BF16, "granite_bf16"); }
Test(cuda_model, cohere_f32) { REQUIRE_GPU(); fixture_case("cohere", HS_DTYPE_F32, "cohere_f32"); }
Test(cuda_model, cohere_bf16) { REQUIRE_GPU(); fixture_case("cohere", HS_DTYPE_BF16, "cohere_bf16"); }
Test(cuda_model, cohere2_f32) { REQUIRE_GPU(); fixture_case("cohere2", HS_DTYPE_F32, "cohere2_f32"); }
Test(cuda_model, cohere2_bf16) { REQUIRE_GPU(); fixture_case("cohere2", HS_DTYPE_BF16, "cohere2_bf16"); }
Test(cuda_model, starcoder2_f32) { REQUIRE_GPU(); fixture_case("starcoder2", HS_DTYPE_F32, "starcoder2_f32"); }
Test(cuda_model, starcoder2_bf16) { REQUIRE_GPU(); fixture_case("starcoder2", HS_DTYPE_BF16, "starcoder2_bf16"); }
/* per-head q/k norm weights: the norm op's w_rows */
Test(cuda_model, stablelm_qk_f32) { REQUIRE_GPU(); fixture_case("stablelm_qk", HS_DTYPE_F32, "stablelm_qk_f32"); }
Test(cuda_model, stablelm_qk_bf16) { REQUIRE_GPU(); fixture_case("stablelm_qk", HS_DTYPE_BF16, "stablelm_qk_bf16"); }
Test(cuda_model, cohere_qk_f32) { REQUIRE_GPU(); fixture_case("cohere_qk", HS_DTYPE_F32, "cohere_qk_f32"); }
Test(cuda_model, cohere_qk_bf16) { REQUIRE_GPU(); fixture_case("cohere_qk", HS_DTYPE_BF16, "cohere_qk_bf16"); }
/* Phi: the parallel block's shared LayerNorm, lm_head's bias; GPT-Neo: unscaled scores and
 * the local layers' window (3, biting at T = 48), learned positions */
Test(cuda_model, phi_f32) { REQUIRE_GPU(); fixture_case("phi", HS_DTYPE_F32, "phi_f32"); }
Test(cuda_model, phi_bf16) { REQUIRE_GPU(); fixture_case("phi", HS_DTYPE_BF16, "phi_bf16"); }
Test(cuda_model, gptneo_f32) { REQUIRE_GPU(); fixture_case("gptneo", HS_DTYPE_F32, "gptneo_f32"); }
Test(cuda_model, gptneo_bf16) { REQUIRE_GPU(); fixture_case("gptneo", HS_DTYPE_BF16, "gptneo_bf16"); }
/* GPT-J: the rope op's adjacent pairs on a partial head, in a whole model */
Test(cuda_model, gptj_f32) { REQUIRE_GPU(); fixture_case("gptj", HS_DTYPE_F32, "gptj_f32"); }
Test(cuda_model, gptj_bf16) { REQUIRE_GPU(); fixture_case("gptj", HS_DTYPE_BF16, "gptj_bf16"); }
/* OPT: the ReLU MLP, the offset position table */
Test(cuda_model, opt_f32) { REQUIRE_GPU(); fixture_case("opt", HS_DTYPE_F32, "opt_f32"); }
Test(cuda_model, opt_bf16) { REQUIRE_GPU(); fixture_case("opt", HS_DTYPE_BF16, "opt_bf16"); }
Test(cuda_model, gemma_f32) { REQUIRE_GPU(); fixture_case("gemma", HS_DTYPE_F32, "gemma_f32"); }
Test(cuda_model, gemma_bf16) { REQUIRE_GPU(); fixture_case("gemma", HS_DTYPE_BF16, "gemma_bf16"); }

/* Gradient head importance (hs_head_grad_metric: the forward, then the
 * backward ops through every layer), CUDA vs CPU, per prompt [B, L, H] of a
 * padded batch, for the loss and for the logit difference after the last
 * token, at xi = 1 and with a third of the heads pruned. The backward goes
 * back through every layer the forward went through, so the tolerance is the
 * forward's at depth 3L + 2 (forward, rerun, backward; +2: the output head),
 * in the same normalised-error form. */
/* m: the model, freed by the caller. */
static void grad_case_model(hs_model *m, hs_dtype dt, const char *name) {
    if (dt == HS_DTYPE_BF16) hs_test_round_model_bf16(m);
    const hs_model_config *c = hs_model_get_config(m);
    const int B = 3, T = c->n_ctx < 32 ? c->n_ctx : 32, L = c->n_layers;
    int32_t tok[3 * 32], len[3] = {T, T - 5, T / 2};
    hs_test_rng rng;
    hs_test_rng_seed(&rng, 2004);
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)(hs_test_rng_u64(&rng) % (uint64_t)c->n_vocab);
    int32_t answer[3], distractor[3];
    for (int i = 0; i < B; i++) answer[i] = tok[i * T + 1], distractor[i] = (tok[i * T + 2] + 1) % c->n_vocab;
    const hs_prompts pr = {.N = B, .T = T, .tokens = tok, .lengths = len, .answer = answer, .distractor = distractor};
    const int64_t n = (int64_t)B * L * c->n_heads;
    float *mask = malloc((size_t)L * c->n_heads * sizeof *mask); /* a third of the heads pruned */
    for (int k = 0; k < L * c->n_heads; k++) mask[k] = k % 3 == 1 ? 0.0f : 1.0f;
    for (int mk = 0; mk < 4; mk++) { /* the loss, then the logit difference (the last-position seed) */
        const int masked = mk % 2;
        const hs_metric metric = mk < 2 ? HS_METRIC_LOSS : HS_METRIC_LOGIT_DIFF;
        float *g[2];
        for (int gpu = 0; gpu < 2; gpu++) {
            hs_err err = {0};
            hs_backend *be = NULL;
            hs_session *s = NULL;
            hs_backend_params p = hs_backend_default_params();
            p.dtype = dt;
            if (gpu) ok(hs_backend_cuda_init(&p, &be, &err), &err, "cuda init");
            else ok(hs_backend_cpu_init(&p, &be, &err), &err, "cpu init");
            ok(hs_session_init(be, m, B, T, &s, &err), &err, "session");
            g[gpu] = malloc((size_t)n * sizeof(float));
            for (int64_t i = 0; i < n; i++) g[gpu][i] = NAN;
            ok(hs_head_grad_metric(s, &pr, metric, masked ? mask : NULL, B, g[gpu], &err), &err,
               gpu ? "cuda head grad" : "cpu head grad");
            hs_session_free(s);
            hs_backend_free(be);
        }
        char why[256];
        cr_assert(close_enough(g[1], g[0], n, dt == HS_DTYPE_BF16, 3 * L + 2, why, sizeof why),
                  "%s (masked %d, %s): head gradient: %s", name, masked, hs_metric_name(metric), why);
        free(g[0]), free(g[1]);
    }
    free(mask);
}

static void grad_case(const char *rel, hs_dtype dt, const char *name) {
    hs_model *m = hs_test_fixture_model(rel);
    grad_case_model(m, dt, name);
    hs_model_free(m);
}

Test(cuda_model, head_grad_gpt2_f32) { REQUIRE_GPU(); grad_case("gpt2", HS_DTYPE_F32, "head_grad_gpt2_f32"); }
Test(cuda_model, head_grad_gpt2_bf16) { REQUIRE_GPU(); grad_case("gpt2", HS_DTYPE_BF16, "head_grad_gpt2_bf16"); }
Test(cuda_model, head_grad_llama_gqa_f32) { REQUIRE_GPU(); grad_case("llama_gqa", HS_DTYPE_F32, "head_grad_llama_gqa_f32"); }
Test(cuda_model, head_grad_llama_gqa_bf16) {
    REQUIRE_GPU();
    grad_case("llama_gqa", HS_DTYPE_BF16, "head_grad_llama_gqa_bf16");
}

Test(cuda_model, head_grad_pythia_f32) { REQUIRE_GPU(); grad_case("pythia", HS_DTYPE_F32, "head_grad_pythia_f32"); }
Test(cuda_model, head_grad_pythia_bf16) { REQUIRE_GPU(); grad_case("pythia", HS_DTYPE_BF16, "head_grad_pythia_bf16"); }
Test(cuda_model, head_grad_qwen3_f32) { REQUIRE_GPU(); grad_case("qwen3", HS_DTYPE_F32, "head_grad_qwen3_f32"); }
Test(cuda_model, head_grad_qwen3_bf16) { REQUIRE_GPU(); grad_case("qwen3", HS_DTYPE_BF16, "head_grad_qwen3_bf16"); }
Test(cuda_model, head_grad_phi3_f32) { REQUIRE_GPU(); grad_case("phi3", HS_DTYPE_F32, "head_grad_phi3_f32"); }
Test(cuda_model, head_grad_phi3_bf16) { REQUIRE_GPU(); grad_case("phi3", HS_DTYPE_BF16, "head_grad_phi3_bf16"); }
Test(cuda_model, head_grad_gemma2_f32) { REQUIRE_GPU(); grad_case("gemma2", HS_DTYPE_F32, "head_grad_gemma2_f32"); }
Test(cuda_model, head_grad_gemma2_bf16) { REQUIRE_GPU(); grad_case("gemma2", HS_DTYPE_BF16, "head_grad_gemma2_bf16"); }
Test(cuda_model, head_grad_gemma3_f32) { REQUIRE_GPU(); grad_case("gemma3", HS_DTYPE_F32, "head_grad_gemma3_f32"); }
Test(cuda_model, head_grad_gemma3_bf16) { REQUIRE_GPU(); grad_case("gemma3", HS_DTYPE_BF16, "head_grad_gemma3_bf16"); }
Test(cuda_model, head_grad_olmo2_f32) { REQUIRE_GPU(); grad_case("olmo2", HS_DTYPE_F32, "head_grad_olmo2_f32"); }
Test(cuda_model, head_grad_olmo2_bf16) { REQUIRE_GPU(); grad_case("olmo2", HS_DTYPE_BF16, "head_grad_olmo2_bf16"); }
Test(cuda_model, head_grad_phi_f32) { REQUIRE_GPU(); grad_case("phi", HS_DTYPE_F32, "head_grad_phi_f32"); }
Test(cuda_model, head_grad_phi_bf16) { REQUIRE_GPU(); grad_case("phi", HS_DTYPE_BF16, "head_grad_phi_bf16"); }
Test(cuda_model, head_grad_gptneo_f32) { REQUIRE_GPU(); grad_case("gptneo", HS_DTYPE_F32, "head_grad_gptneo_f32"); }
Test(cuda_model, head_grad_gptneo_bf16) { REQUIRE_GPU(); grad_case("gptneo", HS_DTYPE_BF16, "head_grad_gptneo_bf16"); }
Test(cuda_model, head_grad_gptj_f32) { REQUIRE_GPU(); grad_case("gptj", HS_DTYPE_F32, "head_grad_gptj_f32"); }
Test(cuda_model, head_grad_gptj_bf16) { REQUIRE_GPU(); grad_case("gptj", HS_DTYPE_BF16, "head_grad_gptj_bf16"); }
Test(cuda_model, head_grad_opt_f32) { REQUIRE_GPU(); grad_case("opt", HS_DTYPE_F32, "head_grad_opt_f32"); }
Test(cuda_model, head_grad_opt_bf16) { REQUIRE_GPU(); grad_case("opt", HS_DTYPE_BF16, "head_grad_opt_bf16"); }
Test(cuda_model, head_grad_olmo_clip_f32) { REQUIRE_GPU(); grad_case("olmo_clip", HS_DTYPE_F32, "head_grad_olmo_clip_f32"); }
Test(cuda_model, head_grad_olmo_clip_bf16) { REQUIRE_GPU(); grad_case("olmo_clip", HS_DTYPE_BF16, "head_grad_olmo_clip_bf16"); }
Test(cuda_model, head_grad_olmo3_f32) { REQUIRE_GPU(); grad_case("olmo3", HS_DTYPE_F32, "head_grad_olmo3_f32"); }
Test(cuda_model, head_grad_olmo3_bf16) { REQUIRE_GPU(); grad_case("olmo3", HS_DTYPE_BF16, "head_grad_olmo3_bf16"); }
Test(cuda_model, head_grad_smollm3_f32) { REQUIRE_GPU(); grad_case("smollm3", HS_DTYPE_F32, "head_grad_smollm3_f32"); }
Test(cuda_model, head_grad_smollm3_bf16) { REQUIRE_GPU(); grad_case("smollm3", HS_DTYPE_BF16, "head_grad_smollm3_bf16"); }
Test(cuda_model, head_grad_bigcode_f32) { REQUIRE_GPU(); grad_case("bigcode", HS_DTYPE_F32, "head_grad_bigcode_f32"); }
Test(cuda_model, head_grad_bigcode_bf16) { REQUIRE_GPU(); grad_case("bigcode", HS_DTYPE_BF16, "head_grad_bigcode_bf16"); }
Test(cuda_model, head_grad_falcon_gqa_f32) { REQUIRE_GPU(); grad_case("falcon_gqa", HS_DTYPE_F32, "head_grad_falcon_gqa_f32"); }
Test(cuda_model, head_grad_stablelm_f32) { REQUIRE_GPU(); grad_case("stablelm", HS_DTYPE_F32, "head_grad_stablelm_f32"); }
Test(cuda_model, head_grad_bloom_f32) { REQUIRE_GPU(); grad_case("bloom", HS_DTYPE_F32, "head_grad_bloom_f32"); }
Test(cuda_model, head_grad_bloom_bf16) { REQUIRE_GPU(); grad_case("bloom", HS_DTYPE_BF16, "head_grad_bloom_bf16"); }
Test(cuda_model, head_grad_granite_f32) { REQUIRE_GPU(); grad_case("granite", HS_DTYPE_F32, "head_grad_granite_f32"); }
Test(cuda_model, head_grad_cohere2_f32) { REQUIRE_GPU(); grad_case("cohere2", HS_DTYPE_F32, "head_grad_cohere2_f32"); }
Test(cuda_model, head_grad_cohere2_bf16) { REQUIRE_GPU(); grad_case("cohere2", HS_DTYPE_BF16, "head_grad_cohere2_bf16"); }
Test(cuda_model, head_grad_starcoder2_f32) { REQUIRE_GPU(); grad_case("starcoder2", HS_DTYPE_F32, "head_grad_starcoder2_f32"); }
Test(cuda_model, head_grad_stablelm_qk_f32) { REQUIRE_GPU(); grad_case("stablelm_qk", HS_DTYPE_F32, "head_grad_stablelm_qk_f32"); }
Test(cuda_model, head_grad_cohere_qk_bf16) { REQUIRE_GPU(); grad_case("cohere_qk", HS_DTYPE_BF16, "head_grad_cohere_qk_bf16"); }

/* LongRoPE: phi3_longrope's shape with random weights, its original context
 * moved to split the batch's rows between the tables: 42 for the forward's
 * rows of 48, 41 and 43 real tokens (long, short, long: three rope calls per
 * layer), 20 for the gradient's of 32, 27 and 16 (long, long, short). */
static hs_model *longrope_model(int original_ctx) {
    hs_model *f = hs_test_fixture_model("phi3_longrope"), *m = NULL;
    hs_model_config c = *hs_model_get_config(f);
    hs_model_free(f);
    c.rope_original_ctx = original_ctx;
    hs_err err = {0};
    ok(hs_model_init_random(&c, 77, &m, &err), &err, "random phi3_longrope-shaped model");
    return m;
}

static void longrope_case(hs_dtype dt, const char *name) {
    hs_model *m = longrope_model(42);
    compare_model(m, dt, 3, 48, 2001, name);
    hs_model_free(m);
}

static void longrope_grad_case(hs_dtype dt, const char *name) {
    hs_model *m = longrope_model(20);
    grad_case_model(m, dt, name);
    hs_model_free(m);
}

Test(cuda_model, phi3_longrope_f32) { REQUIRE_GPU(); longrope_case(HS_DTYPE_F32, "phi3_longrope_f32"); }
Test(cuda_model, phi3_longrope_bf16) { REQUIRE_GPU(); longrope_case(HS_DTYPE_BF16, "phi3_longrope_bf16"); }
Test(cuda_model, head_grad_phi3_longrope_f32) {
    REQUIRE_GPU();
    longrope_grad_case(HS_DTYPE_F32, "head_grad_phi3_longrope_f32");
}
Test(cuda_model, head_grad_phi3_longrope_bf16) {
    REQUIRE_GPU();
    longrope_grad_case(HS_DTYPE_BF16, "head_grad_phi3_longrope_bf16");
}

static hs_model_config smollm2_shape(void) {
    hs_model_config c = hs_test_llama_config(30, 9, 3, 576, 64, 1536, 49152, 8192, 100000.0f);
    c.tied_embeddings = 1;
    return c;
}

static void smollm2_case(hs_dtype dt, const char *name) {
    hs_err err = {0};
    hs_model_config c = smollm2_shape();
    hs_model *m = NULL;
    ok(hs_model_init_random(&c, 135, &m, &err), &err, "random SmolLM2-shaped model");
    compare_model(m, dt, 3, 64, 2002, name);
    hs_model_free(m);
}

Test(cuda_model, smollm2_shape_f32, .timeout = 600) { REQUIRE_GPU(); smollm2_case(HS_DTYPE_F32, "smollm2_shape_f32"); }
Test(cuda_model, smollm2_shape_bf16, .timeout = 600) { REQUIRE_GPU(); smollm2_case(HS_DTYPE_BF16, "smollm2_shape_bf16"); }

/* Gemma-2-2B's attention in a 4-layer random model: d_head 256 (the CUDA-core
 * kernel's widest instantiation and the pattern recompute's large shared
 * memory), query_pre_attn_scalar 256, the real caps (50, 30), sandwich
 * norms, GeGLU, the embedding's sqrt(d_model). */
static hs_model *gemma2_shape(void) {
    hs_err err = {0};
    hs_model_config c = hs_test_llama_config(4, 8, 4, 512, 256, 1024, 4096, 4096, 10000.0f);
    c.arch = HS_ARCH_GEMMA, c.act = HS_ACT_GELU_GLU, c.norm = HS_NORM_RMSNORM_1P, c.post_norms = 1, c.tied_embeddings = 1;
    c.embed_scale = sqrtf(512.0f), c.attn_scale = 1.0f / 16.0f, c.attn_softcap = 50.0f, c.final_softcap = 30.0f;
    hs_model *m = NULL;
    ok(hs_model_init_random(&c, 226, &m, &err), &err, "random Gemma-2-shaped model");
    return m;
}

static void gemma2_shape_case(hs_dtype dt, const char *name) {
    hs_model *m = gemma2_shape();
    compare_model(m, dt, 3, 64, 2004, name);
    hs_model_free(m);
}

Test(cuda_model, gemma2_shape_f32, .timeout = 600) { REQUIRE_GPU(); gemma2_shape_case(HS_DTYPE_F32, "gemma2_shape_f32"); }
Test(cuda_model, gemma2_shape_bf16, .timeout = 600) {
    REQUIRE_GPU();
    gemma2_shape_case(HS_DTYPE_BF16, "gemma2_shape_bf16");
}
/* the backward at d_head 256 (the attention_bwd kernels' 8-values-per-lane instance) */
static void gemma2_shape_grad(hs_dtype dt, const char *name) {
    hs_model *m = gemma2_shape();
    grad_case_model(m, dt, name);
    hs_model_free(m);
}
Test(cuda_model, head_grad_gemma2_shape_f32, .timeout = 600) {
    REQUIRE_GPU();
    gemma2_shape_grad(HS_DTYPE_F32, "head_grad_gemma2_shape_f32");
}
Test(cuda_model, head_grad_gemma2_shape_bf16, .timeout = 600) {
    REQUIRE_GPU();
    gemma2_shape_grad(HS_DTYPE_BF16, "head_grad_gemma2_shape_bf16");
}

/* The real default model (its Q4_1 weights dequantised to f32 on load; in
 * bf16 mode rounded once more, on both sides). Trained weights have sharper
 * attention and larger activations than random ones; the same tolerances
 * apply. Skips without the GGUF (scripts/fetch-model.sh, or on the GPU
 * machine scripts/device-bundle.sh --model). */
static void smollm2_real_case(hs_dtype dt, const char *name) {
    char path[1024];
    if (!hs_test_smollm2_path(path, sizeof path))
        cr_skip_test("SmolLM2 GGUF not found at %s (set HS_SMOLLM2_GGUF or run scripts/fetch-model.sh)", path);
    hs_err err = {0};
    hs_model *m = NULL;
    ok(hs_model_load(path, &m, &err), &err, path);
    compare_model(m, dt, 3, 64, 2003, name);
    hs_model_free(m);
}

Test(cuda_model, smollm2_real_f32, .timeout = 600) { REQUIRE_GPU(); smollm2_real_case(HS_DTYPE_F32, "smollm2_real_f32"); }
Test(cuda_model, smollm2_real_bf16, .timeout = 600) {
    REQUIRE_GPU();
    smollm2_real_case(HS_DTYPE_BF16, "smollm2_real_bf16");
}

/* ---- CPU-only: run everywhere ---------------------------------------------------- */

Test(cuda_model_cpu, tolerances) {
    /* the f32 bound stays "tight" (well under a bf16 ulp) even for 30 layers,
     * the bf16 bound grows with depth and stays below 10% */
    cr_assert_leq(tol_f32(31), 1e-4);
    cr_assert_lt(tol_f32(1), tol_f32(2));
    cr_assert_lt(tol_bf16(1), tol_bf16(31));
    cr_assert_leq(tol_bf16(31), 0.1);
    cr_assert_geq(tol_bf16(1), 2.0 * ldexp(1.0, -8), "never below two bf16 roundings");
}

Test(cuda_model_cpu, bf16_weight_rounding) {
    /* rounding a model's weights is idempotent and moves each by <= 2^-8 relative
     * (llama_mha: f32 weights; llama_gqa's are bf16-exact by construction) */
    hs_model *m = hs_test_fixture_model("llama_mha");
    const hs_model_config *c = hs_model_get_config(m);
    const hs_model_weights *w = hs_model_get_weights(m);
    const int64_t n = (int64_t)c->n_vocab * c->d_model;
    float *before = malloc((size_t)n * sizeof *before);
    memcpy(before, w->tok_embd, (size_t)n * sizeof *before);
    hs_test_round_model_bf16(m);
    int changed = 0;
    for (int64_t i = 0; i < n; i++) {
        cr_assert_leq(fabsf(w->tok_embd[i] - before[i]), ldexpf(fabsf(before[i]), -8) + 1e-30f);
        changed |= w->tok_embd[i] != before[i];
        cr_assert_eq(hs_test_bf16_round(w->tok_embd[i]), w->tok_embd[i]);
    }
    cr_assert(changed, "random f32 weights are not all bf16-representable");
    free(before);
    hs_model_free(m);
}
