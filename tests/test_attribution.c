/* Attribution patching against PyTorch autograd (make_fixtures.py part
 * attribution, each prompt alone, unpadded): for each metric, every cell
 * M(corrupt) + (a_clean - a_corrupt) . dM/da with a = one head's z at all
 * positions or one, or resid_pre at one position (GPT-2, Llama with GQA,
 * GPT-NeoX). Run here batched with
 * padding (uneven lengths) and one prompt at a time. Plus the invariant that
 * a corrupted run equal to the clean one moves nothing, and the refusals. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "headsweep/hs_patching.h"
#include "headsweep/hs_safetensors.h"
#include "hs_testutil.h"

typedef struct {
    hs_model *m;
    hs_backend *be;
    hs_session *s;
    hs_st_file *ref;
    hs_prompts pr;
    const int32_t *corrupt;
    int L, H, Hk, T;
} fx;

static void fx_init(fx *f, const char *model, int rows) {
    hs_err err = {0};
    memset(f, 0, sizeof *f);
    hs_test_load_fixture(model, "attribution", &f->m, &f->ref);
    f->pr = hs_test_ref_prompts(f->ref);
    f->T = f->pr.T;
    f->corrupt = hs_test_ref_tensor(f->ref, "corrupt")->data;
    f->L = hs_model_get_config(f->m)->n_layers;
    f->H = hs_model_get_config(f->m)->n_heads;
    f->Hk = hs_model_get_config(f->m)->n_kv_heads;
    cr_assert_eq(hs_backend_cpu_init(NULL, &f->be, &err), HS_OK);
    cr_assert_eq(hs_session_init(f->be, f->m, rows, f->T, &f->s, &err), HS_OK, "%s", err.msg);
}

static void fx_free(fx *f) {
    hs_session_free(f->s);
    hs_backend_free(f->be);
    hs_st_close(f->ref);
    hs_model_free(f->m);
}

/* f32 forward and backward on both sides, metrics of magnitude 0.1-8 and
 * estimated effects up to ~2.5: 2e-5 of the metric's scale plus 1e-5 of the
 * value. A wrong sign, a missing factor or a position off by one moves cells
 * by 1e-2 or more. */
static double expect(fx *f, const char *metric, const char *name, const float *got, int64_t n) {
    char key[64];
    snprintf(key, sizeof key, "%s.%s", metric, name);
    const hs_st_tensor *r = hs_test_ref_tensor(f->ref, key);
    cr_assert_eq(r->numel, n, "%s size", key);
    const float *want = r->data;
    double scale = 0, md = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(want[i])) scale = fmax(scale, fabs(want[i]));
    for (int64_t i = 0; i < n; i++) {
        if (isnan(want[i])) {
            cr_assert(isnan(got[i]), "%s[%lld]: expected NAN (beyond the prompt), got %g", key, (long long)i, got[i]);
            continue;
        }
        const double d = fabs((double)got[i] - want[i]);
        cr_assert_leq(d, 2e-5 * fmax(scale, 1.0) + 1e-5 * fabs(want[i]), "%s[%lld]: %.7g vs autograd %.7g", key,
                      (long long)i, got[i], want[i]);
        md = fmax(md, d);
    }
    return md;
}

static const struct {
    const char *name;
    hs_metric metric;
} metrics[] = {{"logit_diff", HS_METRIC_LOGIT_DIFF}, {"logprob", HS_METRIC_LOGPROB}, {"kl", HS_METRIC_KL},
               {"loss", HS_METRIC_LOSS}};

/* grad_drop: AtP*'s GradDrop, keys "gd.*" (for each layer the gradient
 * again with that layer's addition to the stream detached; the cells' sums of
 * |estimate| over the layers / (L - 1)). */
static void against_autograd(const char *model, int rows, int grad_drop) {
    fx f;
    fx_init(&f, model, rows);
    const int N = f.pr.N, L = f.L, H = f.H, T = f.T;
    float *clean = malloc((size_t)N * sizeof(float)), *corrupt = malloc((size_t)N * sizeof(float));
    float *za = malloc((size_t)N * L * H * sizeof(float)), *zp = malloc((size_t)N * L * T * H * sizeof(float)),
          *rp = malloc((size_t)N * L * T * sizeof(float)), *ao = malloc((size_t)N * L * T * sizeof(float)),
          *mo = malloc((size_t)N * L * T * sizeof(float)), *qa = malloc((size_t)N * L * H * sizeof(float)),
          *ka = malloc((size_t)N * L * f.Hk * sizeof(float)), *va = malloc((size_t)N * L * f.Hk * sizeof(float));
    for (size_t k = 0; k < sizeof metrics / sizeof *metrics; k++) {
        hs_patching_out out = {.clean = clean, .corrupt = corrupt, .z_all_pos = za, .z_by_pos = zp, .resid_pre = rp,
                               .attn_out = ao, .mlp_out = mo, .q_all_pos = qa, .k_all_pos = ka, .v_all_pos = va};
        hs_patching_params p = hs_patching_default_params();
        p.metric = metrics[k].metric;
        p.batch_rows = rows;
        p.targets = (1u << HS_PATCH_PATH_LOGITS) - 1; /* every target attribution estimates */
        p.grad_drop = grad_drop;
        hs_err err = {0};
        memset(za, 0xff, (size_t)N * L * H * sizeof(float)); /* NaN: every cell must be written */
        memset(qa, 0xff, (size_t)N * L * H * sizeof(float));
        cr_assert_eq(hs_attribution_patching(f.s, f.m, &f.pr, f.corrupt, &p, &out, &err), HS_OK, "%s", err.msg);
        const char *mn = metrics[k].name, *pre = grad_drop ? "gd." : "";
        char key[64];
#define KEY(name) (snprintf(key, sizeof key, "%s%s", pre, name), key)
        double md = expect(&f, mn, "clean", clean, N);
        md = fmax(md, expect(&f, mn, "corrupted", corrupt, N));
        md = fmax(md, expect(&f, mn, KEY("z_all_pos"), za, (int64_t)N * L * H));
        md = fmax(md, expect(&f, mn, KEY("z_by_pos"), zp, (int64_t)N * L * T * H));
        md = fmax(md, expect(&f, mn, KEY("resid_pre"), rp, (int64_t)N * L * T));
        md = fmax(md, expect(&f, mn, KEY("attn_out"), ao, (int64_t)N * L * T));
        md = fmax(md, expect(&f, mn, KEY("mlp_out"), mo, (int64_t)N * L * T));
        md = fmax(md, expect(&f, mn, KEY("q_all_pos_qkfix"), qa, (int64_t)N * L * H)); /* the default: the QK fix */
        md = fmax(md, expect(&f, mn, KEY("k_all_pos_qkfix"), ka, (int64_t)N * L * f.Hk));
        md = fmax(md, expect(&f, mn, KEY("v_all_pos"), va, (int64_t)N * L * f.Hk));
        /* the plain first-order estimate of q and k */
        p.qk_fix = 0;
        p.targets = (1u << HS_PATCH_Q_ALL_POS) | (1u << HS_PATCH_K_ALL_POS);
        cr_assert_eq(hs_attribution_patching(f.s, f.m, &f.pr, f.corrupt, &p, &out, &err), HS_OK, "%s", err.msg);
        md = fmax(md, expect(&f, mn, KEY("q_all_pos"), qa, (int64_t)N * L * H));
        md = fmax(md, expect(&f, mn, KEY("k_all_pos"), ka, (int64_t)N * L * f.Hk));
#undef KEY
        cr_log_info("%s %s (%d rows per batch%s): max |diff| vs autograd %.2e", model, mn, rows,
                    grad_drop ? ", GradDrop" : "", md);
    }
    free(clean), free(corrupt), free(za), free(zp), free(rp), free(ao), free(mo), free(qa), free(ka), free(va);
    fx_free(&f);
}

Test(attribution, gpt2_matches_autograd) { against_autograd("gpt2", 3, 0); }
Test(attribution, gpt2_one_prompt_per_batch) { against_autograd("gpt2", 1, 0); }
Test(attribution, llama_gqa_matches_autograd) { against_autograd("llama_gqa", 3, 0); }
Test(attribution, llama_gqa_two_rows_per_batch) { against_autograd("llama_gqa", 2, 0); }
Test(attribution, gpt2_grad_drop_matches_autograd) { against_autograd("gpt2", 3, 1); }
Test(attribution, gpt2_grad_drop_one_prompt_per_batch) { against_autograd("gpt2", 1, 1); }
Test(attribution, llama_gqa_grad_drop_matches_autograd) { against_autograd("llama_gqa", 2, 1); }
/* GPT-NeoX: the parallel block (attn_out's gradient is resid_post's), partial RoPE in the QK fix */
Test(attribution, pythia_matches_autograd) { against_autograd("pythia", 3, 0); }
Test(attribution, pythia_grad_drop_matches_autograd) { against_autograd("pythia", 2, 1); }
/* the backward through Qwen3's q/k norms: the q and k cells read the gradient at q_proj's output */
Test(attribution, qwen3_matches_autograd) { against_autograd("qwen3", 3, 0); }
Test(attribution, qwen3_grad_drop_matches_autograd) { against_autograd("qwen3", 2, 1); }
Test(attribution, phi3_matches_autograd) { against_autograd("phi3", 3, 0); }
Test(attribution, phi3_longrope_matches_autograd) { against_autograd("phi3_longrope", 3, 0); }
Test(attribution, phi_matches_autograd) { against_autograd("phi", 3, 0); }
Test(attribution, phi_grad_drop_matches_autograd) { against_autograd("phi", 2, 1); }
Test(attribution, gptneo_matches_autograd) { against_autograd("gptneo", 3, 0); }
Test(attribution, gptneo_grad_drop_matches_autograd) { against_autograd("gptneo", 2, 1); }
Test(attribution, gptj_matches_autograd) { against_autograd("gptj", 3, 0); }
Test(attribution, opt_matches_autograd) { against_autograd("opt", 3, 0); }
Test(attribution, opt_grad_drop_matches_autograd) { against_autograd("opt", 2, 1); }
Test(attribution, olmo_matches_autograd) { against_autograd("olmo", 3, 0); }
/* clip_qkv: q, k, v's gradients are at the clamped values (hook_q etc.), zero through the clamps below them */
Test(attribution, olmo_clip_matches_autograd) { against_autograd("olmo_clip", 3, 0); }
Test(attribution, olmo_clip_grad_drop_matches_autograd) { against_autograd("olmo_clip", 2, 1); }
/* Gemma 2: the gradients back through the post-norms, the capped scores and the capped logits */
Test(attribution, gemma2_matches_autograd) { against_autograd("gemma2", 3, 0); }
Test(attribution, gemma2_grad_drop_matches_autograd) { against_autograd("gemma2", 2, 1); }
/* Gemma 3: back through the (1 + w) q/k norms and each layer's own RoPE table */
Test(attribution, gemma3_matches_autograd) { against_autograd("gemma3", 3, 0); }
Test(attribution, gemma3_mm_matches_autograd) { against_autograd("gemma3_mm", 3, 0); }
/* OLMo-2: back through the post-norms alone and the q/k norms over all heads */
Test(attribution, olmo2_matches_autograd) { against_autograd("olmo2", 3, 0); }
Test(attribution, olmo2_grad_drop_matches_autograd) { against_autograd("olmo2", 2, 1); }
/* OLMo-3: back through the windows and YaRN's scaled rotation */
Test(attribution, olmo3_matches_autograd) { against_autograd("olmo3", 3, 0); }
Test(attribution, olmo3_grad_drop_matches_autograd) { against_autograd("olmo3", 2, 1); }
/* SmolLM3: back through layers with RoPE and without (the QK fix reads q and k unrotated there) */
Test(attribution, smollm3_matches_autograd) { against_autograd("smollm3", 3, 0); }
Test(attribution, smollm3_grad_drop_matches_autograd) { against_autograd("smollm3", 2, 1); }
/* GPT-BigCode: k and v of the one key/value head that all four query heads read */
Test(attribution, bigcode_matches_autograd) { against_autograd("bigcode", 3, 0); }
Test(attribution, bigcode_grad_drop_matches_autograd) { against_autograd("bigcode", 2, 1); }
/* Falcon: q, k and v cut from the fused projection per KV head (one for 7B, two for 40B), the
 * parallel block on one norm and on two */
Test(attribution, falcon_mq_matches_autograd) { against_autograd("falcon_mq", 3, 0); }
Test(attribution, falcon_mq_grad_drop_matches_autograd) { against_autograd("falcon_mq", 2, 1); }
Test(attribution, falcon_gqa_matches_autograd) { against_autograd("falcon_gqa", 3, 0); }
/* StableLM: back through LayerNorms with biases and a partial RoPE */
Test(attribution, stablelm_matches_autograd) { against_autograd("stablelm", 3, 0); }
Test(attribution, stablelm_grad_drop_matches_autograd) { against_autograd("stablelm", 2, 1); }
/* BLOOM: back through ALiBi's biased scores to layer 0's resid_pre, after the embedding's norm */
Test(attribution, bloom_matches_autograd) { against_autograd("bloom", 3, 0); }
Test(attribution, bloom_grad_drop_matches_autograd) { against_autograd("bloom", 2, 1); }
Test(attribution, mpt_matches_autograd) { against_autograd("mpt", 3, 0); }
Test(attribution, falcon_rw_matches_autograd) { against_autograd("falcon_rw", 3, 0); }
Test(attribution, granite_matches_autograd) { against_autograd("granite", 3, 0); }
Test(attribution, granite_grad_drop_matches_autograd) { against_autograd("granite", 2, 1); }
Test(attribution, cohere_matches_autograd) { against_autograd("cohere", 3, 0); }
Test(attribution, cohere2_matches_autograd) { against_autograd("cohere2", 3, 0); }
Test(attribution, cohere2_grad_drop_matches_autograd) { against_autograd("cohere2", 2, 1); }
Test(attribution, starcoder2_matches_autograd) { against_autograd("starcoder2", 3, 0); }
Test(attribution, stablelm_qk_matches_autograd) { against_autograd("stablelm_qk", 3, 0); }
Test(attribution, cohere_qk_grad_drop_matches_autograd) { against_autograd("cohere_qk", 2, 1); }

/* The backward with the forward's activations kept and with each layer
 * recomputed gives the same bits (both architectures, a last-position metric
 * and the loss, every target). */
static void keep_equals_recompute(const char *model) {
    fx f;
    fx_init(&f, model, 2);
    const int N = f.pr.N;
    const int64_t na = (int64_t)N * f.L * f.H, nz = na * f.T, nr = (int64_t)N * f.L * f.T,
                  nk = (int64_t)N * f.L * f.Hk, tot = 2 * N + 2 * na + nz + 3 * nr + 2 * nk;
    const hs_metric ms[2] = {HS_METRIC_LOGIT_DIFF, HS_METRIC_LOSS};
    for (int k = 0; k < 2; k++) {
        float *res[2];
        for (int recompute = 0; recompute < 2; recompute++) {
            float *b = res[recompute] = malloc((size_t)tot * sizeof(float));
            hs_patching_out out = {.clean = b, .corrupt = b + N, .z_all_pos = b + 2 * N, .z_by_pos = b + 2 * N + na,
                                   .resid_pre = b + 2 * N + na + nz, .attn_out = b + 2 * N + na + nz + nr,
                                   .mlp_out = b + 2 * N + na + nz + 2 * nr, .q_all_pos = b + 2 * N + na + nz + 3 * nr,
                                   .k_all_pos = b + 2 * N + 2 * na + nz + 3 * nr,
                                   .v_all_pos = b + 2 * N + 2 * na + nz + 3 * nr + nk};
            hs_patching_params p = hs_patching_default_params();
            p.metric = ms[k];
            p.batch_rows = 2;
            p.targets = (1u << HS_PATCH_PATH_LOGITS) - 1; /* every target attribution estimates */
            hs_session_set_backward_keep_bytes(f.s, recompute ? 0 : HS_BACKWARD_KEEP_BYTES);
            hs_err err = {0};
            cr_assert_eq(hs_attribution_patching(f.s, f.m, &f.pr, f.corrupt, &p, &out, &err), HS_OK, "%s", err.msg);
        }
        cr_assert(!memcmp(res[0], res[1], (size_t)tot * sizeof(float)), "%s %s: recomputing the layers changed the cells",
                  model, hs_metric_name(ms[k]));
        free(res[0]), free(res[1]);
    }
    fx_free(&f);
}

Test(attribution, gpt2_keep_equals_recompute) { keep_equals_recompute("gpt2"); }
Test(attribution, llama_gqa_keep_equals_recompute) { keep_equals_recompute("llama_gqa"); }
Test(attribution, pythia_keep_equals_recompute) { keep_equals_recompute("pythia"); }
Test(attribution, qwen3_keep_equals_recompute) { keep_equals_recompute("qwen3"); }

/* Clean and corrupted runs of the same tokens give the same activations bit
 * for bit, so every estimate is exactly the unpatched metric. */
Test(attribution, clean_into_clean_moves_nothing) {
    fx f;
    fx_init(&f, "llama_gqa", 3);
    const int N = f.pr.N, L = f.L, H = f.H, T = f.T;
    float clean[8], corrupt[8];
    const int64_t np = (int64_t)N * L * T;
    float *za = malloc((size_t)N * L * H * sizeof(float)), *pp = malloc((size_t)3 * np * sizeof(float));
    hs_patching_out out = {.clean = clean, .corrupt = corrupt, .z_all_pos = za, .resid_pre = pp, .attn_out = pp + np,
                           .mlp_out = pp + 2 * np};
    hs_patching_params p = hs_patching_default_params();
    p.batch_rows = 3;
    p.targets = (1u << HS_PATCH_Z_ALL_POS) | (1u << HS_PATCH_RESID_PRE) | (1u << HS_PATCH_ATTN_OUT) |
                (1u << HS_PATCH_MLP_OUT);
    hs_err err = {0};
    cr_assert_eq(hs_attribution_patching(f.s, f.m, &f.pr, f.pr.tokens, &p, &out, &err), HS_OK, "%s", err.msg);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(corrupt[i], clean[i]);
        for (int k = 0; k < L * H; k++) cr_assert_eq(za[i * L * H + k], clean[i], "prompt %d cell %d", i, k);
        for (int64_t k = 0; k < 3 * np; k++) { /* resid_pre, attn_out, mlp_out */
            const int l = (int)(k % np / T % L), t = (int)(k % T), g = (int)(k % np / T / L);
            if (g != i) continue;
            const float v = pp[k];
            if (t < f.pr.lengths[i]) cr_assert_eq(v, clean[i], "target %d prompt %d layer %d pos %d", (int)(k / np), i, l, t);
            else cr_assert(isnan(v), "prompt %d layer %d pos %d beyond the prompt: %g", i, l, t, v);
        }
    }
    free(za), free(pp);
    fx_free(&f);
}

Test(attribution, refuses_what_it_cannot_do) {
    fx f;
    fx_init(&f, "gpt2", 3);
    const int N = f.pr.N;
    float clean[8], corrupt[8], *za = malloc((size_t)N * f.L * f.H * sizeof(float));
    hs_patching_out out = {.clean = clean, .corrupt = corrupt, .z_all_pos = za};
    hs_patching_params p = hs_patching_default_params();
    hs_err err = {0};
    p.metric = HS_METRIC_ACCURACY;
    cr_assert_eq(hs_attribution_patching(f.s, f.m, &f.pr, f.corrupt, &p, &out, &err), HS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "accuracy"), "%s", err.msg);
    p.metric = HS_METRIC_LOGIT_DIFF;
    p.targets = 1u << HS_PATCH_ATTN_OUT; /* no attn_out buffer */
    cr_assert_eq(hs_attribution_patching(f.s, f.m, &f.pr, f.corrupt, &p, &out, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "output buffer") && strstr(err.msg, "attn_out"), "%s", err.msg);
    hs_prompts no_answers = f.pr;
    no_answers.answer = NULL;
    p.targets = 1u << HS_PATCH_Z_ALL_POS;
    cr_assert_eq(hs_attribution_patching(f.s, f.m, &no_answers, f.corrupt, &p, &out, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "answer"), "%s", err.msg);
    /* path patching has no estimate: refused by name, with or without the other */
    float *pl = malloc((size_t)N * f.L * f.H * sizeof(float)), *ph = malloc((size_t)N * f.L * f.H * sizeof(float));
    out.path_logits = pl, out.path_heads = ph;
    const int receivers[2] = {2, 0};
    p.receivers = receivers;
    p.n_receivers = 1;
    p.targets = 1u << HS_PATCH_PATH_LOGITS;
    cr_assert_eq(hs_attribution_patching(f.s, f.m, &f.pr, f.corrupt, &p, &out, &err), HS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "path_logits has no attribution estimate"), "%s", err.msg);
    p.targets = (1u << HS_PATCH_Z_ALL_POS) | (1u << HS_PATCH_PATH_HEADS);
    cr_assert_eq(hs_attribution_patching(f.s, f.m, &f.pr, f.corrupt, &p, &out, &err), HS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "path_heads has no attribution estimate"), "%s", err.msg);
    free(za), free(pl), free(ph);
    fx_free(&f);
}
