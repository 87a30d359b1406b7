/* test_kv_cache: decoding from a KV cache against the whole sequence's forward
 * on the tiny fixture models (CPU reference backend, f32). Two right-padded
 * prompts of 9 and 6 tokens are prefilled, then 4 steps of one token and one
 * of two are appended; each step's logits must equal the whole sequence's at
 * the same positions, and so must every layer's attention row of the new
 * token (of a chosen one of the two: pattern_rows) and be 0 past it, with and
 * without edits (uniform attention, a
 * scaled head, a zeroed head, on every position). The fixtures cover learned
 * positions, RoPE with GQA, partial rotary and a parallel block, multi-query
 * and grouped heads cut from Falcon's fused projection, q/k norms,
 * sliding windows of 3 and 4 keys, NoPE layers, soft-capped scores and
 * post-norms, clipped q/k/v, and LongRoPE (past its original context; across
 * it, against transformers' generate and its model with the cache kept).
 * Tolerance: both sides run the same f32 ops; only the BLAS blocking of the
 * projections (one row against many) and the attention's key count differ:
 * |got - ref| <= 2e-5 (1 + |ref|) and rel l2 <= 1e-5. The same on the CUDA
 * backend in f32 mode, where its decode kernel meets its fused kernels (skipped
 * without a device), and in bf16 mode, where the cache holds bf16 keys and
 * values as the fused path's activations are: there the two sides round
 * differently ordered sums to bf16 (unit roundoff 2^-8) at ~10 tensors a layer,
 * so only rel l2 <= 2e-2 is asked (test_cuda_model's bf16 bound at 3 layers,
 * 0.03, less its embedding term), and no NaN. Then the cache's misuse: each
 * refusal names what is wrong. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_forward.h"
#include "hs_decode.h"
#include "hs_testutil.h"

enum { B = 2, NEW = 6, TF = 9 + NEW, CAP = 24 };
static const int plen[B] = {9, 6};

#define KV_ATOL 2e-5
#define KV_RTOL 2e-5
#define KV_L2 1e-5

typedef struct {
    hs_backend *be;
    int L, H, V;
    float *rows; /* [L, B, H, cols] one pattern row per batch row and layer */
    int cols;
} pat_hook;

static int pat_wants(void *u, hs_hook_point p, int l) { return (void)u, (void)l, p == HS_HOOK_PATTERN; }

static hs_status pat_fn(void *u, hs_hook_point p, int l, hs_tensor *t, hs_err *err) {
    pat_hook *h = u;
    (void)p;
    cr_assert_eq(t->shape[2], 1, "one query row per batch row");
    h->cols = (int)t->shape[3];
    float *tmp = malloc((size_t)B * h->H * h->cols * sizeof(float));
    cr_assert(tmp);
    hs_status st = h->be->ops->download(h->be, tmp, t->data, (size_t)B * h->H * h->cols * sizeof(float), err);
    for (int i = 0; i < B * h->H; i++) /* rows of cols floats, kept CAP apart */
        memcpy(h->rows + ((int64_t)l * B * h->H + i) * CAP, tmp + (int64_t)i * h->cols, (size_t)h->cols * sizeof(float));
    free(tmp);
    return st;
}

#define KV_BF16_L2 2e-2

static int g_bf16; /* the test in flight runs the CUDA backend in bf16 mode */

static void close_enough(const char *what, const float *got, const float *ref, int64_t n) {
    hs_test_cmp c = hs_test_compare(got, ref, n, KV_ATOL, KV_RTOL);
    if (g_bf16) c.n_bad = 0; /* elements near zero carry absolute bf16 error: the norm decides */
    cr_assert(c.n_bad == 0 && !c.nan && c.rel_l2 <= (g_bf16 ? KV_BF16_L2 : KV_L2),
              "%s: %lld of %lld off (first [%lld]: %.9g vs %.9g), max abs %.3g, rel l2 %.3g", what,
              (long long)c.n_bad, (long long)n, (long long)c.first_bad, c.first_bad >= 0 ? got[c.first_bad] : 0.0,
              c.first_bad >= 0 ? ref[c.first_bad] : 0.0, c.max_abs, c.rel_l2);
}

/* gpu: on the CUDA backend (its decode kernel against its fused kernels), in f32 mode, or in
 * bf16 mode with gpu == 2 */
static void decode_on(const char *model, int edited, int gpu) {
    hs_err err = {0};
    hs_model *m = hs_test_fixture_model(model);
    const hs_model_config *c = hs_model_get_config(m);
    const int L = c->n_layers, H = c->n_heads, V = c->n_vocab;
    hs_backend *be;
    hs_session *s;
    hs_kv_cache *kv;
    hs_backend_params bp = hs_backend_default_params();
    bp.dtype = gpu == 2 ? HS_DTYPE_BF16 : HS_DTYPE_F32;
    g_bf16 = gpu == 2;
    cr_assert_eq(gpu ? hs_backend_cuda_init(&bp, &be, &err) : hs_backend_cpu_init(NULL, &be, &err), HS_OK, "%s",
                 err.msg);
    cr_assert_eq(hs_session_init(be, m, B, TF, &s, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_kv_cache_init(s, B, CAP, &kv, &err), HS_OK, "%s", err.msg);
    hs_test_rng rng;
    hs_test_rng_seed(&rng, 11);
    int32_t full[B * TF], mask[B * TF];
    for (int i = 0; i < B * TF; i++) full[i] = (int32_t)(hs_test_rng_u64(&rng) % (uint64_t)V);
    for (int r = 0; r < B; r++)
        for (int t = 0; t < TF; t++) mask[r * TF + t] = t < plen[r] + NEW;
    const hs_z_edit edits[] = {
        {.row = 0, .layer = 1 % L, .head = 0, .pos = -1, .mode = HS_EDIT_UNIFORM},
        {.row = 1, .layer = 0, .head = 1 % H, .pos = -1, .mode = HS_EDIT_SCALE, .scale = 0.5f},
        {.row = 0, .layer = L - 1, .head = H - 1, .pos = -1, .mode = HS_EDIT_ZERO},
    };
    const int n_edits = edited ? 3 : 0;

    /* the whole sequences: every position's logits, and the pattern rows of the positions decoded one at a time */
    float *ref = malloc(sizeof(float) * B * TF * V), *got = malloc(sizeof(float) * B * 2 * V);
    pat_hook ph = {.be = be, .L = L, .H = H, .V = V}, dh = ph;
    ph.rows = calloc((size_t)L * B * H * CAP, sizeof(float));
    dh.rows = calloc((size_t)L * B * H * CAP, sizeof(float));
    cr_assert(ref && got && ph.rows && dh.rows);
    hs_batch fb = {.B = B, .T = TF, .tokens = full, .mask = mask};
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = HS_LOGITS_ALL;
    fp.edits = edits, fp.n_edits = n_edits;
    cr_assert_eq(hs_forward(s, &fb, &fp, ref, &err), HS_OK, "%s", err.msg);

    /* the prefill: the prompts right-padded */
    int32_t tok[B * 9], pm[B * 9];
    for (int r = 0; r < B; r++)
        for (int t = 0; t < 9; t++) tok[r * 9 + t] = full[r * TF + t], pm[r * 9 + t] = t < plen[r];
    hs_batch pb = {.B = B, .T = 9, .tokens = tok, .mask = pm};
    hs_forward_params dp = hs_forward_default_params();
    dp.kv = kv, dp.edits = edits, dp.n_edits = n_edits;
    cr_assert_eq(hs_forward(s, &pb, &dp, got, &err), HS_OK, "%s: prefill: %s", model, err.msg);
    for (int r = 0; r < B; r++) {
        cr_assert_eq(hs_kv_cache_len(kv, r), plen[r]);
        close_enough("prefill logits", got + (int64_t)r * V, ref + ((int64_t)r * TF + plen[r] - 1) * V, V);
    }
    /* 4 steps of one token, with the new token's pattern row at every layer, then one of two */
    for (int step = 0, at = 0; step < 5; step++) {
        const int T = step < 4 ? 1 : 2;
        int32_t nt[B * 2], rows[B];
        for (int r = 0; r < B; r++) {
            for (int t = 0; t < T; t++) nt[r * T + t] = full[r * TF + plen[r] + at + t];
            rows[r] = plen[r] + at;
        }
        hs_batch ab = {.B = B, .T = T, .tokens = nt};
        hs_hooks dhk = {.wants = pat_wants, .fn = pat_fn, .user = &dh};
        const int32_t prow[B] = {1, 0}; /* the 2-token step: one chosen row each */
        dp.kv_append = 1;
        dp.logits = T == 1 ? HS_LOGITS_LAST : HS_LOGITS_ALL;
        dp.hooks = &dhk;
        dp.pattern_rows = T == 1 ? NULL : prow;
        for (int r = 0; r < B && T > 1; r++) rows[r] += prow[r];
        cr_assert_eq(hs_forward(s, &ab, &dp, got, &err), HS_OK, "%s: step %d: %s", model, step, err.msg);
        for (int r = 0; r < B; r++) {
            cr_assert_eq(hs_kv_cache_len(kv, r), plen[r] + at + T);
            for (int t = 0; t < T; t++)
                close_enough("decoded logits", got + ((int64_t)r * T + t) * V,
                             ref + ((int64_t)r * TF + plen[r] + at + t) * V, V);
        }
        { /* the same rows from the whole sequences */
            hs_hooks phk = {.wants = pat_wants, .fn = pat_fn, .user = &ph};
            fp.logits = HS_LOGITS_NONE;
            fp.hooks = &phk;
            fp.pattern_rows = rows;
            cr_assert_eq(hs_forward(s, &fb, &fp, NULL, &err), HS_OK, "%s", err.msg);
            cr_assert_eq(dh.cols, CAP, "an appended token's pattern spans the cache");
            cr_assert_eq(ph.cols, TF);
            for (int64_t i = 0; i < (int64_t)L * B * H; i++) {
                close_enough("pattern row", dh.rows + i * CAP, ph.rows + i * CAP, TF);
                for (int j = TF; j < CAP; j++) cr_assert_eq(dh.rows[i * CAP + j], 0.0f, "past the query: 0");
            }
        }
        at += T;
    }
    free(ref), free(got), free(ph.rows), free(dh.rows);
    hs_kv_cache_free(kv);
    hs_session_free(s);
    hs_backend_free(be);
    hs_model_free(m);
}

static void decode_matches(const char *model, int edited) { decode_on(model, edited, 0); }

Test(kv_cache, gpt2_learned_positions) { decode_matches("gpt2", 0), decode_matches("gpt2", 1); }
Test(kv_cache, llama_gqa_rope) { decode_matches("llama_gqa", 0), decode_matches("llama_gqa", 1); }
Test(kv_cache, phi_partial_rotary_parallel) { decode_matches("phi", 1); }
Test(kv_cache, qwen3_qk_norm_window) { decode_matches("qwen3", 0), decode_matches("qwen3", 1); }
Test(kv_cache, gemma2_softcap_window_post_norms) { decode_matches("gemma2", 0), decode_matches("gemma2", 1); }
Test(kv_cache, gemma3_local_rope_window) { decode_matches("gemma3", 1); }
Test(kv_cache, smollm3_nope_window) { decode_matches("smollm3", 1); }
Test(kv_cache, olmo_clip_qkv) { decode_matches("olmo_clip", 1); }
/* prompts of 9 and 6 tokens, past LongRoPE's original context of 5: the long table throughout */
Test(kv_cache, phi3_longrope_past_the_original_context) { decode_matches("phi3_longrope", 1); }
Test(kv_cache, falcon_multi_query_parallel) { decode_matches("falcon_mq", 1); }
Test(kv_cache, falcon_grouped_two_norms) { decode_matches("falcon_gqa", 0), decode_matches("falcon_gqa", 1); }
Test(kv_cache, stablelm_partial_rotary_biases) { decode_matches("stablelm", 1), decode_matches("stablelm_par", 1); }
Test(kv_cache, bloom_alibi_from_the_cache) { decode_matches("bloom", 0), decode_matches("bloom", 1); }
Test(kv_cache, mpt_alibi_clip_qkv) { decode_matches("mpt", 1), decode_matches("mpt_clip", 1); }
Test(kv_cache, falcon_rw_scaled_alibi) { decode_matches("falcon_rw", 0), decode_matches("falcon_rw", 1); }
Test(kv_cache, granite_multipliers) { decode_matches("granite", 1); }
Test(kv_cache, cohere_parallel_adjacent_pairs) { decode_matches("cohere", 1); }
Test(kv_cache, cohere2_windows_and_nope) { decode_matches("cohere2", 0), decode_matches("cohere2", 1); }
Test(kv_cache, starcoder2_windows_biases) { decode_matches("starcoder2", 1); }
Test(kv_cache, per_head_qk_norms) { decode_matches("stablelm_qk", 1), decode_matches("cohere_qk", 1); }

/* LongRoPE across its original context (ref/phi3_longrope_generate.safetensors: 3 prompt tokens,
 * 6 generated, the context passing 5 at the fourth step), against transformers in float64:
 * the decoder (cache, and without) gives generate's logits, which rerun the context at the
 * step that crosses; appending to the cache there instead gives the model called with its
 * cache kept (the first keys still short-rotated), as hs_forward documents. */
static void longrope_steps(int cache, int keep) {
    hs_err err = {0};
    hs_model *m = NULL;
    hs_st_file *ref = NULL;
    hs_test_load_fixture("phi3_longrope", "generate", &m, &ref);
    const hs_st_tensor *tok = hs_test_ref_tensor(ref, "tokens"), *lg = hs_test_ref_tensor(ref, keep ? "logits_kept" : "logits");
    const int V = hs_model_get_config(m)->n_vocab, G = 6, P = 3;
    cr_assert(tok->numel == P + G && lg->numel == (int64_t)G * V);
    const int32_t *seq = tok->data;
    hs_backend *be;
    hs_session *s;
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_session_init(be, m, 1, P + G, &s, &err), HS_OK, "%s", err.msg);
    const int32_t len = P;
    const hs_prompts pr = {.N = 1, .T = P, .tokens = seq, .lengths = &len};
    hs_decoder d;
    cr_assert_eq(hs_decoder_init(s, m, 1, P, G, cache, &d, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(d.kv != NULL, cache, "a KV cache for LongRoPE");
    hs_decoder_start(&d, &pr, 0, 1);
    for (int k = 0; k < G; k++) {
        hs_forward_params fp = hs_forward_default_params();
        int32_t w;
        if (keep && k > 0) { /* the forward's own append, never rerun */
            hs_batch b = {.B = 1, .T = 1, .tokens = &seq[P + k - 1]};
            fp.kv = d.kv, fp.kv_append = 1, fp.logits = HS_LOGITS_LAST;
            cr_assert_eq(hs_forward(s, &b, &fp, d.logits, &err), HS_OK, "%s", err.msg);
        } else {
            cr_assert_eq(hs_decoder_step(&d, &fp, &w, &err), HS_OK, "%s", err.msg);
            cr_assert_eq(w, seq[P + k], "step %d: greedy token %d, transformers' %d", k, w, seq[P + k]);
        }
        const float *want = (const float *)lg->data + (int64_t)k * V;
        hs_test_cmp c = hs_test_compare(d.logits, want, V, HS_TEST_F32_ATOL_RMS * hs_test_rms(want, V), HS_TEST_F32_RTOL);
        cr_assert(c.n_bad == 0 && !c.nan, "cache %d keep %d, step %d (length %d): %lld of %d logits off, max abs %.3g",
                  cache, keep, k, P + k, (long long)c.n_bad, V, c.max_abs);
    }
    hs_decoder_free(&d);
    hs_session_free(s);
    hs_backend_free(be);
    hs_st_close(ref);
    hs_model_free(m);
}
Test(kv_cache, phi3_longrope_crossing_matches_generate) { longrope_steps(1, 0), longrope_steps(0, 0); }
Test(kv_cache, phi3_longrope_crossing_kept_cache_matches_the_model) { longrope_steps(1, 1); }

/* The rerun at the crossing needs room for the longest context: a session sized for the prompts
 * alone is refused before anything runs. */
Test(kv_cache, phi3_longrope_session_too_short_refused) {
    hs_err err = {0};
    hs_model *m = hs_test_fixture_model("phi3_longrope");
    hs_backend *be;
    hs_session *s;
    hs_decoder d;
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_session_init(be, m, 1, 3, &s, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_decoder_init(s, m, 1, 3, 6, 1, &d, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "LongRoPE") && strstr(err.msg, "max_T >= 8"), "%s", err.msg);
    hs_session_free(s);
    hs_backend_free(be);
    hs_model_free(m);
}

Test(kv_cache, cuda_f32_llama_gqa) { REQUIRE_GPU(); decode_on("llama_gqa", 1, 1); }
Test(kv_cache, cuda_f32_gemma2) { REQUIRE_GPU(); decode_on("gemma2", 1, 1); }
Test(kv_cache, cuda_f32_smollm3) { REQUIRE_GPU(); decode_on("smollm3", 1, 1); }
Test(kv_cache, cuda_f32_phi3_longrope) { REQUIRE_GPU(); decode_on("phi3_longrope", 1, 1); }
Test(kv_cache, cuda_bf16_llama_gqa) { REQUIRE_GPU(); decode_on("llama_gqa", 1, 2); }
Test(kv_cache, cuda_bf16_gemma2) { REQUIRE_GPU(); decode_on("gemma2", 1, 2); }
Test(kv_cache, cuda_bf16_falcon_gqa) { REQUIRE_GPU(); decode_on("falcon_gqa", 1, 2); }
Test(kv_cache, cuda_f32_bloom) { REQUIRE_GPU(); decode_on("bloom", 1, 1); }
Test(kv_cache, cuda_bf16_bloom) { REQUIRE_GPU(); decode_on("bloom", 1, 2); }
Test(kv_cache, cuda_f32_cohere2) { REQUIRE_GPU(); decode_on("cohere2", 1, 1); }
Test(kv_cache, cuda_bf16_cohere2) { REQUIRE_GPU(); decode_on("cohere2", 1, 2); }

static int fail_wants(void *u, hs_hook_point p, int l) { return (void)u, p == HS_HOOK_RESID_PRE && l == 1; }
static hs_status fail_fn(void *u, hs_hook_point p, int l, hs_tensor *t, hs_err *err) {
    (void)u, (void)p, (void)l, (void)t;
    return hs_err_set(err, HS_ERR_INTERRUPTED, "a hook fails");
}

Test(kv_cache, misuse_is_refused_by_name) {
    hs_err err = {0};
    hs_model *m = hs_test_fixture_model("llama_gqa");
    hs_backend *be;
    hs_session *s, *s2;
    hs_kv_cache *kv;
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_session_init(be, m, B, 8, &s, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_session_init(be, m, B, 8, &s2, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_kv_cache_init(s, B, 6, &kv, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_kv_cache_init(s, 0, 6, &(hs_kv_cache *){NULL}, &err), HS_ERR_INVALID_ARG);
    int32_t tok[B * 4] = {1, 2, 3, 4, 5, 6, 7, 8}, left[B * 4] = {1, 1, 1, 1, 0, 1, 1, 1};
    float logits[B * 300];
    hs_batch b = {.B = B, .T = 1, .tokens = tok};
    hs_forward_params fp = hs_forward_default_params();
    fp.kv = kv, fp.kv_append = 1;
#define REFUSED(what, needle)                                                                                    \
    do {                                                                                                         \
        cr_assert_eq(hs_forward(s, &b, &fp, logits, &err), HS_ERR_INVALID_ARG, "%s", what);                      \
        cr_assert(strstr(err.msg, needle), "%s: %s", what, err.msg);                                             \
    } while (0)
    REFUSED("appending before a prefill", "appending 2 rows to a cache of 0");
    fp.kv_append = 0;
    b.T = 4, b.mask = left;
    REFUSED("a left-padded prefill", "row 1 is not right-padded");
    b.mask = NULL;
    cr_assert_eq(hs_forward(s, &b, &fp, logits, &err), HS_OK, "%s", err.msg);
    fp.kv_append = 1;
    b.T = 3; /* 4 cached + 3 > 6 */
    REFUSED("past the cache", "exceed 6");
    b.T = 1;
    const int32_t pad1[B] = {1, 0};
    b.mask = pad1;
    REFUSED("padding appended", "mask 0 at row 1");
    b.mask = NULL;
    const float src[16] = {0};
    hs_z_edit e = {.row = 0, .layer = 0, .head = 0, .pos = -1, .mode = HS_EDIT_SET, .src = src};
    fp.edits = &e, fp.n_edits = 1;
    REFUSED("a SET appended", "no SET or one-position");
    e.mode = HS_EDIT_ZERO, e.pos = 0;
    REFUSED("a one-position edit appended", "no SET or one-position");
    fp.n_edits = 0;
    int32_t pos[B] = {4, 4};
    b.positions = pos;
    REFUSED("batch positions", "batch positions");
    b.positions = NULL;
    b.B = 1;
    REFUSED("another row count", "appending 1 rows to a cache of 2");
    b.B = B;
    cr_assert_eq(hs_forward(s2, &b, &fp, logits, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "another session"), "%s", err.msg);
    /* the refusals left the cache as it was: one more token fits twice, then none */
    cr_assert_eq(hs_kv_cache_len(kv, 0), 4);
    cr_assert_eq(hs_forward(s, &b, &fp, logits, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_forward(s, &b, &fp, logits, &err), HS_OK, "%s", err.msg);
    REFUSED("a full cache", "6 cached + 1 new positions exceed 6");
    hs_kv_cache_free(kv);
    hs_session_free(s2);
    hs_session_free(s);

    /* a prefill that fails part way (a hook at layer 1) leaves nothing to append to; a prefill of
     * fewer rows then serves those rows only */
    cr_assert_eq(hs_session_init(be, m, B, 8, &s, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_kv_cache_init(s, B, 6, &kv, &err), HS_OK, "%s", err.msg);
    fp = hs_forward_default_params();
    fp.kv = kv;
    b = (hs_batch){.B = B, .T = 3, .tokens = tok};
    cr_assert_eq(hs_forward(s, &b, &fp, logits, &err), HS_OK, "%s", err.msg);
    hs_hooks fail = {.wants = fail_wants, .fn = fail_fn};
    fp.hooks = &fail;
    cr_assert_eq(hs_forward(s, &b, &fp, logits, &err), HS_ERR_INTERRUPTED);
    cr_assert_eq(hs_kv_cache_len(kv, 0), 0, "a failed prefill empties the cache");
    fp.hooks = NULL, fp.kv_append = 1, b.T = 1;
    REFUSED("appending after a failed prefill", "appending 2 rows to a cache of 0");
    fp.kv_append = 0, b.B = 1, b.T = 2;
    cr_assert_eq(hs_forward(s, &b, &fp, logits, &err), HS_OK, "%s", err.msg);
    fp.kv_append = 1, b.T = 1;
    cr_assert_eq(hs_forward(s, &b, &fp, logits, &err), HS_OK, "%s", err.msg);
    cr_assert(hs_kv_cache_len(kv, 0) == 3 && hs_kv_cache_len(kv, 1) == 0, "one row of 3 positions");
    hs_kv_cache_free(kv);
    hs_session_free(s);
    hs_model_free(m);
    hs_backend_free(be);
}
