/* Whole-model conformance against HuggingFace transformers: the tiny random
 * fixture models (tests/fixtures/make_fixtures.py: GPT-2, Llama with MHA and
 * GQA, GPT-NeoX, Qwen3, Phi-3, Gemma 1 to 3, OLMo-2) hook point by hook point,
 * with right and left padding. The first diverging hook is named. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "headsweep/hs_capture.h"
#include "headsweep/hs_forward.h"
#include "headsweep/hs_model.h"
#include "headsweep/hs_safetensors.h"
#include "hs_testutil.h"

/* HF names: residual-stream hooks sit on the block, the rest on .attn */
static void ref_name(char *out, size_t n, hs_hook_point p, int layer) {
    int on_attn = p == HS_HOOK_Q || p == HS_HOOK_K || p == HS_HOOK_V || p == HS_HOOK_ROT_Q || p == HS_HOOK_ROT_K ||
                  p == HS_HOOK_PATTERN || p == HS_HOOK_Z;
    int on_mlp = p == HS_HOOK_MLP_PRE || p == HS_HOOK_MLP_PRE_LINEAR || p == HS_HOOK_MLP_POST;
    snprintf(out, n, "blocks.%d.%shook_%s", layer, on_attn ? "attn." : on_mlp ? "mlp." : "",
             hs_hook_name(p) + (on_mlp ? 4 : 0)); /* "mlp_pre" -> blocks.L.mlp.hook_pre */
}

static const hs_st_tensor *need(hs_st_file *f, const char *name) {
    const hs_st_tensor *t = hs_st_find(f, name);
    cr_assert_not_null(t, "fixture %s lacks tensor %s", hs_st_path(f), name);
    return t;
}

/* keep[i] for an activation whose leading dims are [B, T] (or [B, H, T, T] for patterns). */
static uint8_t *valid_mask(hs_hook_point p, const hs_tensor *shape, const int32_t *mask, int B, int T) {
    int64_t n = hs_tensor_numel(shape);
    uint8_t *keep = malloc((size_t)n);
    cr_assert_not_null(keep);
    int64_t inner = n / ((int64_t)B * T);
    for (int64_t i = 0; i < n; i++) {
        int b, t;
        if (p == HS_HOOK_PATTERN) { /* [B, H, T(query), T(key)] */
            int64_t H = shape->shape[1];
            b = (int)(i / (H * T * T));
            t = (int)((i / T) % T);
        } else {
            b = (int)(i / (T * inner));
            t = (int)((i / inner) % T);
        }
        keep[i] = mask[b * T + t] != 0;
    }
    return keep;
}

/* The left-padded fixture stores only tokens, mask, positions and logits; its
 * hook references are the right-padded ones shifted by each row's padding
 * (the generator checks that both paddings agree at valid positions). For a
 * pattern, keys that are padding on the left get probability 0. */
static float *realign_left(hs_hook_point p, const hs_tensor *shape, const float *right, const int32_t *mask, int B,
                           int T) {
    int64_t n = hs_tensor_numel(shape), inner = n / ((int64_t)B * T);
    float *out = calloc((size_t)n, sizeof(float));
    cr_assert_not_null(out);
    for (int b = 0; b < B; b++) {
        int off = 0;
        while (off < T && !mask[b * T + off]) off++;
        if (p == HS_HOOK_PATTERN) {
            int64_t H = shape->shape[1];
            for (int64_t h = 0; h < H; h++)
                for (int tq = off; tq < T; tq++)
                    for (int sk = off; sk < T; sk++)
                        out[((b * H + h) * T + tq) * T + sk] = right[((b * H + h) * T + tq - off) * T + sk - off];
        } else {
            for (int t = off; t < T; t++)
                memcpy(out + ((int64_t)b * T + t) * inner, right + ((int64_t)b * T + t - off) * inner,
                       (size_t)inner * sizeof(float));
        }
    }
    return out;
}

/* A gated MLP's hook_post is act(gate) * up, so the errors the gate and up
 * hooks are allowed (their own atol and rtol) reach it multiplied: by
 * |act(gate)| for up's, by |up| * 1.2 for the gate's (|act'| <= 1.13 for
 * GELU, 1.1 for SiLU). Seen: a Gemma 3 up of 0.1048 off by 8.5e-6 (f32 noise
 * of a 48-term dot product of O(1) terms; transformers' own f32 value is off
 * by 4e-7 there, and by up to 2.5e-5 elsewhere in the tensor) times a gate
 * activation of 3.86. Returns how many unmasked values exceed that bound on
 * top of hook_post's own. */
static int64_t gated_post_bad(const hs_model_config *c, const float *got, const float *want, const uint8_t *keep,
                              int64_t n, double atol, const float *gate, const float *up, double atol_gate,
                              double atol_up) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (keep && !keep[i]) continue;
        const double g = gate[i], a = c->act == HS_ACT_SILU_GLU ? g / (1.0 + exp(-g))
                                                                : 0.5 * g * (1.0 + tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)));
        const double tol = atol + HS_TEST_F32_RTOL * fabs(want[i]) + fabs(a) * (atol_up + HS_TEST_F32_RTOL * fabs(up[i])) +
                           1.2 * fabs(up[i]) * (atol_gate + HS_TEST_F32_RTOL * fabs(g));
        bad += !(fabs((double)got[i] - want[i]) <= tol);
    }
    return bad;
}

static void run_conformance(const char *model, const char *pad) {
    char mpath[1024], rpath[1024], rel[256];
    snprintf(rel, sizeof rel, "models/%s", model);
    hs_test_fixture_path(mpath, sizeof mpath, rel);
    snprintf(rel, sizeof rel, "ref/%s_%s.safetensors", model, pad);
    hs_test_fixture_path(rpath, sizeof rpath, rel);

    hs_err err = {0};
    hs_model *m = NULL;
    hs_st_file *ref = NULL;
    hs_backend *be = NULL;
    hs_session *s = NULL;
    hs_capture *cap = NULL;
    cr_assert_eq(hs_model_load(mpath, &m, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_st_open(rpath, &ref, &err), HS_OK, "%s", err.msg);
    int left = !strcmp(pad, "left");
    hs_st_file *hooks_ref = ref;
    if (left) {
        snprintf(rel, sizeof rel, "ref/%s_right.safetensors", model);
        hs_test_fixture_path(rpath, sizeof rpath, rel);
        cr_assert_eq(hs_st_open(rpath, &hooks_ref, &err), HS_OK, "%s", err.msg);
    }
    hs_st_file *mlp_ref = NULL; /* the MLP's hooks, right-padded, in their own file */
    snprintf(rel, sizeof rel, "ref/%s_mlp.safetensors", model);
    hs_test_fixture_path(rpath, sizeof rpath, rel);
    cr_assert_eq(hs_st_open(rpath, &mlp_ref, &err), HS_OK, "%s", err.msg);
    const hs_model_config *c = hs_model_get_config(m);
    const hs_st_tensor *tok = need(ref, "tokens"), *msk = need(ref, "mask"), *pos = need(ref, "positions");
    const hs_st_tensor *lg = need(ref, "logits");
    int B = (int)tok->shape[0], T = (int)tok->shape[1];
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_session_init(be, m, B, T, &s, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_capture_init(be, &cap, &err), HS_OK, "%s", err.msg);
    hs_capture_want_all(cap);
    hs_hooks hooks = hs_capture_hooks(cap);
    hs_batch batch = {.B = B, .T = T, .tokens = tok->data, .mask = msk->data, .positions = pos->data};
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = HS_LOGITS_ALL;
    fp.hooks = &hooks;
    float *logits = malloc((size_t)B * T * c->n_vocab * sizeof(float));
    cr_assert_eq(hs_forward(s, &batch, &fp, logits, &err), HS_OK, "%s", err.msg);

    /* Walk the hooks in forward order; the first failure names the hook. */
    double worst = 0;
    int compared = 0;
    for (int l = 0; l < c->n_layers; l++) {
        for (int p = 0; p < HS_HOOK_COUNT; p++) {
            char name[128];
            ref_name(name, sizeof name, (hs_hook_point)p, l);
            const int on_mlp = p == HS_HOOK_MLP_PRE || p == HS_HOOK_MLP_PRE_LINEAR || p == HS_HOOK_MLP_POST;
            const hs_st_tensor *r = hs_st_find(on_mlp ? mlp_ref : hooks_ref, name);
            if (on_mlp && (p != HS_HOOK_MLP_PRE_LINEAR || hs_act_gated(c->act)))
                cr_assert_not_null(r, "%s: the MLP fixture lacks %s", model, name);
            if (!r) continue; /* e.g. rot_q on GPT-2 */
            hs_tensor shp;
            const float *got = hs_capture_get(cap, (hs_hook_point)p, l, &shp);
            cr_assert_not_null(got, "%s/%s: hook %s not produced", model, pad, name);
            cr_assert_eq(hs_tensor_numel(&shp), r->numel, "%s: %lld values, reference has %lld", name,
                         (long long)hs_tensor_numel(&shp), (long long)r->numel);
            uint8_t *keep = valid_mask((hs_hook_point)p, &shp, msk->data, B, T);
            const float *want = r->data;
            float *shifted = left ? realign_left((hs_hook_point)p, &shp, r->data, msk->data, B, T) : NULL;
            if (shifted) want = shifted;
            double atol = HS_TEST_F32_ATOL_RMS * hs_test_rms(r->data, r->numel);
            hs_test_cmp cm = hs_test_compare_masked(got, want, keep, r->numel, atol, HS_TEST_F32_RTOL);
            if (cm.n_bad && p == HS_HOOK_MLP_POST && hs_act_gated(c->act)) {
                hs_tensor s2;
                char gn[128], un[128];
                ref_name(gn, sizeof gn, HS_HOOK_MLP_PRE, l), ref_name(un, sizeof un, HS_HOOK_MLP_PRE_LINEAR, l);
                const hs_st_tensor *rg = need(mlp_ref, gn), *ru = need(mlp_ref, un);
                const float *gate = hs_capture_get(cap, HS_HOOK_MLP_PRE, l, &s2),
                            *up = hs_capture_get(cap, HS_HOOK_MLP_PRE_LINEAR, l, &s2);
                cr_assert(gate && up, "%s: the gated MLP's hooks were not captured", name);
                cm.n_bad = gated_post_bad(c, got, want, keep, r->numel, atol, gate, up,
                                          HS_TEST_F32_ATOL_RMS * hs_test_rms(rg->data, rg->numel),
                                          HS_TEST_F32_ATOL_RMS * hs_test_rms(ru->data, ru->numel));
            }
            free(keep);
            cr_assert_eq(cm.n_bad, 0,
                         "%s/%s: first divergence at %s: %lld of %lld values off (first at %lld: got %g, want %g), "
                         "max abs %.3g, rel l2 %.3g",
                         model, pad, name, (long long)cm.n_bad, (long long)cm.n, (long long)cm.first_bad,
                         (double)got[cm.first_bad], (double)want[cm.first_bad], cm.max_abs, cm.rel_l2);
            free(shifted);
            if (cm.rel_l2 > worst) worst = cm.rel_l2;
            compared++;
        }
    }
    cr_assert_gt(compared, 8 * c->n_layers, "%s: only %d hook tensors compared", model, compared);
    hs_tensor lshape = {.ndim = 3, .shape = {B, T, c->n_vocab}};
    uint8_t *keep = valid_mask(HS_HOOK_RESID_POST, &lshape, msk->data, B, T);
    double atol = HS_TEST_F32_ATOL_RMS * hs_test_rms(lg->data, lg->numel);
    hs_test_cmp cm = hs_test_compare_masked(logits, lg->data, keep, lg->numel, atol, HS_TEST_F32_RTOL);
    free(keep);
    cr_assert_eq(cm.n_bad, 0, "%s/%s: logits: %lld of %lld off, max abs %.3g, rel l2 %.3g", model, pad,
                 (long long)cm.n_bad, (long long)cm.n, cm.max_abs, cm.rel_l2);
    cr_log_info("%s/%s: %d hook tensors + logits match (worst hook rel l2 %.2e, logits max abs %.2e)", model, pad,
                compared, worst, cm.max_abs);

    /* Last-position logits equal the all-position logits at each row's last real token, up to
     * the unembedding GEMM's blocking (one row per prompt against every row): a few float ulps
     * of the row's largest logit. */
    float *last = malloc((size_t)B * c->n_vocab * sizeof(float));
    fp.logits = HS_LOGITS_LAST;
    fp.hooks = NULL;
    cr_assert_eq(hs_forward(s, &batch, &fp, last, &err), HS_OK, "%s", err.msg);
    for (int b = 0; b < B; b++) {
        int t = T - 1;
        while (t > 0 && !((const int32_t *)msk->data)[b * T + t]) t--;
        const float *full = logits + ((int64_t)b * T + t) * c->n_vocab;
        hs_test_cmp cl = hs_test_compare(last + (int64_t)b * c->n_vocab, full, c->n_vocab,
                                         8 * FLT_EPSILON * hs_test_max_abs(full, c->n_vocab), 1e-6);
        cr_assert_eq(cl.n_bad, 0, "%s/%s row %d: last-position logits differ from the full pass (max abs %.3g)", model, pad, b, cl.max_abs);
    }
    free(last);
    free(logits);
    hs_capture_free(cap);
    hs_session_free(s);
    hs_backend_free(be);
    if (hooks_ref != ref) hs_st_close(hooks_ref);
    hs_st_close(mlp_ref);
    hs_st_close(ref);
    hs_model_free(m);
}

Test(conformance, gpt2_right) { run_conformance("gpt2", "right"); }
Test(conformance, gpt2_left) { run_conformance("gpt2", "left"); }
Test(conformance, llama_mha_right) { run_conformance("llama_mha", "right"); }
Test(conformance, llama_mha_left) { run_conformance("llama_mha", "left"); }
Test(conformance, llama_gqa_right) { run_conformance("llama_gqa", "right"); }
Test(conformance, llama_gqa_left) { run_conformance("llama_gqa", "left"); }
/* GPT-NeoX (Pythia): parallel attention + MLP (no resid_mid), exact GELU,
 * RoPE on 8 of 32 dims, fused per-head QKV, untied unembedding */
Test(conformance, pythia_right) { run_conformance("pythia", "right"); }
Test(conformance, pythia_left) { run_conformance("pythia", "left"); }
/* Qwen3: an RMSNorm over each head's q and k between the projection and RoPE;
 * heads wider than the stream (4 x 16 > 48) */
Test(conformance, qwen3_right) { run_conformance("qwen3", "right"); }
Test(conformance, qwen3_left) { run_conformance("qwen3", "left"); }
/* Phi-3: fused qkv_proj and gate_up_proj, RoPE on 12 of 16 dims */
Test(conformance, phi3_right) { run_conformance("phi3", "right"); }
Test(conformance, phi3_left) { run_conformance("phi3", "left"); }
/* LongRoPE on Phi-3's layout, an original context of 5: prompts of 7 and 6
 * tokens rotate with the long factors, the one of 4 with the short, in one
 * batch (the references run each prompt alone) */
Test(conformance, phi3_longrope_right) { run_conformance("phi3_longrope", "right"); }
Test(conformance, phi3_longrope_left) { run_conformance("phi3_longrope", "left"); }

/* A caller's explicit positions may number the pads too (transformers' default
 * arange): the 4-token prompt's pads at positions 4 to 6 must not make it a
 * long prompt. Only real tokens' positions pick the table. */
Test(conformance, phi3_longrope_pads_do_not_pick_the_table) {
    hs_model *m = NULL;
    hs_st_file *ref = NULL;
    hs_test_load_fixture("phi3_longrope", "right", &m, &ref);
    const hs_st_tensor *tok = hs_test_ref_tensor(ref, "tokens");
    const int B = (int)tok->shape[0], T = (int)tok->shape[1];
    int32_t *pos = malloc((size_t)B * T * sizeof *pos);
    for (int i = 0; i < B * T; i++) pos[i] = i % T; /* right padding: the pads continue the count */
    hs_test_logits_match_at(m, ref, pos, "phi3_longrope with pads at positions 4 to 6 (a pad's position picked the long table?)");
    free(pos);
    hs_st_close(ref);
    hs_model_free(m);
}
/* Phi (Phi-2's layout): a parallel block with one LayerNorm, biases everywhere (lm_head's too),
 * RoPE on 8 of 20 dims */
Test(conformance, phi_right) { run_conformance("phi", "right"); }
Test(conformance, phi_left) { run_conformance("phi", "left"); }
/* GPT-Neo (TinyStories' layout): unscaled scores, learned positions, a window of 3 on the
 * local layers 1 and 3 */
Test(conformance, gptneo_right) { run_conformance("gptneo", "right"); }
Test(conformance, gptneo_left) { run_conformance("gptneo", "left"); }
/* GPT-J: Phi's parallel block, RoPE on 8 of 16 dims in adjacent pairs, no attention biases */
Test(conformance, gptj_right) { run_conformance("gptj", "right"); }
Test(conformance, gptj_left) { run_conformance("gptj", "left"); }
/* OPT: pre-LN blocks, a ReLU MLP, learned positions two rows into their table */
Test(conformance, opt_right) { run_conformance("opt", "right"); }
Test(conformance, opt_left) { run_conformance("opt", "left"); }
/* Gemma 2: sandwich norms, soft-capped scores and logits, GeGLU, the embedding's scale */
Test(conformance, gemma2_right) { run_conformance("gemma2", "right"); }
Test(conformance, gemma2_left) { run_conformance("gemma2", "left"); }
/* Gemma 3: (1 + w) q/k norms, local and global layers rotating with their own RoPE tables */
Test(conformance, gemma3_right) { run_conformance("gemma3", "right"); }
Test(conformance, gemma3_left) { run_conformance("gemma3", "left"); }
/* Gemma 3's multimodal layout (4B to 27B): its text model, the vision tower left unread */
Test(conformance, gemma3_mm_right) { run_conformance("gemma3_mm", "right"); }
Test(conformance, gemma3_mm_left) { run_conformance("gemma3_mm", "left"); }
/* Gemma (1): GeGLU, (1 + w) norms, the embedding's scale, one key/value head */
Test(conformance, gemma_right) { run_conformance("gemma", "right"); }
Test(conformance, gemma_left) { run_conformance("gemma", "left"); }
/* OLMo (1): Llama's layout with LayerNorms that have no parameters */
Test(conformance, olmo_right) { run_conformance("olmo", "right"); }
Test(conformance, olmo_left) { run_conformance("olmo", "left"); }
/* OLMo 7B 0424 / 0724's clip_qkv: q, k and v clamped after their projections (a third of them here) */
Test(conformance, olmo_clip_right) { run_conformance("olmo_clip", "right"); }
Test(conformance, olmo_clip_left) { run_conformance("olmo_clip", "left"); }
/* OLMo-2: no norms before the attention and the MLP, norms on their outputs, q/k norms over all heads */
Test(conformance, olmo2_right) { run_conformance("olmo2", "right"); }
Test(conformance, olmo2_left) { run_conformance("olmo2", "left"); }
/* OLMo-3: OLMo-2's layout with windows in three layers of four, a RoPE table per layer type, YaRN */
Test(conformance, olmo3_right) { run_conformance("olmo3", "right"); }
Test(conformance, olmo3_left) { run_conformance("olmo3", "left"); }
/* SmolLM3: no RoPE in every second layer (rot_q, rot_k equal q, k there), windows on those layers */
Test(conformance, smollm3_right) { run_conformance("smollm3", "right"); }
Test(conformance, smollm3_left) { run_conformance("smollm3", "left"); }
/* GPT-BigCode: multi-query attention cut from c_attn (one key/value head), and without it c_attn's rows per head */
Test(conformance, bigcode_right) { run_conformance("bigcode", "right"); }
Test(conformance, bigcode_left) { run_conformance("bigcode", "left"); }
Test(conformance, bigcode_mha_right) { run_conformance("bigcode_mha", "right"); }
Test(conformance, bigcode_mha_left) { run_conformance("bigcode_mha", "left"); }
/* Falcon-7B's layout: a parallel block on one LayerNorm, multi-query attention cut from the fused
 * query_key_value, no biases; Falcon-40B's: ln_attn and ln_mlp, two grouped key/value heads (here with
 * biases and an untied lm_head); and the sequential block with per-head q, k, v */
Test(conformance, falcon_mq_right) { run_conformance("falcon_mq", "right"); }
Test(conformance, falcon_mq_left) { run_conformance("falcon_mq", "left"); }
Test(conformance, falcon_gqa_right) { run_conformance("falcon_gqa", "right"); }
Test(conformance, falcon_gqa_left) { run_conformance("falcon_gqa", "left"); }
Test(conformance, falcon_seq_right) { run_conformance("falcon_seq", "right"); }
Test(conformance, falcon_seq_left) { run_conformance("falcon_seq", "left"); }
/* StableLM: Llama's layer with LayerNorms' biases, q/k/v biases, RoPE on 4 of 16 dims; and with
 * use_parallel_residual the parallel block on one norm */
Test(conformance, stablelm_right) { run_conformance("stablelm", "right"); }
Test(conformance, stablelm_left) { run_conformance("stablelm", "left"); }
Test(conformance, stablelm_par_right) { run_conformance("stablelm_par", "right"); }
Test(conformance, stablelm_par_left) { run_conformance("stablelm_par", "left"); }
/* BLOOM: ALiBi's per-head biases (6 heads: both slope series), a LayerNorm on the embedding,
 * per-head fused q/k/v; tensors named without "transformer.", as on the Hub */
Test(conformance, bloom_right) { run_conformance("bloom", "right"); }
Test(conformance, bloom_left) { run_conformance("bloom", "left"); }
/* MPT: ALiBi with MPT's slopes, LayerNorms without biases, one fused Wqkv; and with clip_qkv
 * (q, k and v clamped to +-1) and a softmax_scale of its own */
Test(conformance, mpt_right) { run_conformance("mpt", "right"); }
Test(conformance, mpt_left) { run_conformance("mpt", "left"); }
Test(conformance, mpt_clip_right) { run_conformance("mpt_clip", "right"); }
Test(conformance, mpt_clip_left) { run_conformance("mpt_clip", "left"); }
Test(conformance, falcon_rw_right) { run_conformance("falcon_rw", "right"); }
Test(conformance, falcon_rw_left) { run_conformance("falcon_rw", "left"); }
Test(conformance, granite_right) { run_conformance("granite", "right"); }
Test(conformance, granite_left) { run_conformance("granite", "left"); }
Test(conformance, cohere_right) { run_conformance("cohere", "right"); }
Test(conformance, cohere_left) { run_conformance("cohere", "left"); }
Test(conformance, cohere2_right) { run_conformance("cohere2", "right"); }
Test(conformance, cohere2_left) { run_conformance("cohere2", "left"); }
Test(conformance, starcoder2_right) { run_conformance("starcoder2", "right"); }
Test(conformance, starcoder2_left) { run_conformance("starcoder2", "left"); }
Test(conformance, stablelm_qk_right) { run_conformance("stablelm_qk", "right"); }
Test(conformance, stablelm_qk_left) { run_conformance("stablelm_qk", "left"); }
Test(conformance, cohere_qk_right) { run_conformance("cohere_qk", "right"); }
Test(conformance, cohere_qk_left) { run_conformance("cohere_qk", "left"); }

/* bf16 weights in a sharded checkpoint: the loader widens them exactly, so
 * the logits match HF run on the same bf16 values in f32. */
Test(conformance, llama_gqa_bf16_sharded) {
    char mpath[1024], rpath[1024];
    hs_test_fixture_path(mpath, sizeof mpath, "models/llama_gqa_bf16");
    hs_test_fixture_path(rpath, sizeof rpath, "ref/llama_gqa_bf16_right.safetensors");
    hs_err err = {0};
    hs_model *m = NULL;
    hs_st_file *ref = NULL;
    cr_assert_eq(hs_model_load(mpath, &m, &err), HS_OK, "%s", err.msg);
    cr_assert_str_eq(hs_model_get_source_dtypes(m), "BF16");
    cr_assert_eq(hs_st_open(rpath, &ref, &err), HS_OK, "%s", err.msg);
    hs_test_logits_match(m, ref, "bf16 sharded logits");
    hs_st_close(ref);
    hs_model_free(m);
}
