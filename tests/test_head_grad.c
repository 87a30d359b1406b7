/* Gradient head importance (Michel et al. 2019) against PyTorch autograd on
 * the same weights (tests/fixtures/make_fixtures.py "importance": a mask
 * variable on each head's slice of the output projection's input, d(summed
 * next-token NLL)/d xi per prompt, each prompt alone and unpadded), for
 * GPT-2 (LayerNorm, gelu_new, learned positions), Llama with GQA and with
 * MHA (RMSNorm, SiLU gate, RoPE) and GPT-NeoX (parallel attention and MLP,
 * exact GELU, RoPE on a quarter of each head); batched with right padding and one prompt
 * at a time; at xi = 1 and at a mask with pruned (0) and halved heads (the
 * gradient iterative pruning recomputes); with the forward's activations kept
 * and with each layer recomputed, which must give the same bits; plus
 * Michel's normalisation and the refusals. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_head_grad.h"
#include "headsweep/hs_safetensors.h"
#include "hs_testutil.h"

static void against_autograd(const char *model) {
    hs_model *m = NULL;
    hs_st_file *ref = NULL;
    hs_err err = {0};
    hs_test_load_fixture(model, "importance", &m, &ref);
    const hs_st_tensor *tok = hs_test_ref_tensor(ref, "tokens"), *len = hs_test_ref_tensor(ref, "lengths"),
                       *want = hs_test_ref_tensor(ref, "grad"), *mask = hs_test_ref_tensor(ref, "mask"),
                       *want_m = hs_test_ref_tensor(ref, "grad_masked");
    const hs_prompts pr = {.N = (int)tok->shape[0], .T = (int)tok->shape[1], .tokens = tok->data, .lengths = len->data};
    const hs_model_config *c = hs_model_get_config(m);
    const int64_t n = (int64_t)pr.N * c->n_layers * c->n_heads;
    cr_assert_eq(want->numel, n);
    hs_backend *be = NULL;
    hs_session *s = NULL;
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_session_init(be, m, pr.N, pr.T, &s, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(mask->numel, (int64_t)c->n_layers * c->n_heads);
    float *kept[4] = {NULL};
    for (int recompute = 0; recompute < 2; recompute++) {
    hs_session_set_backward_keep_bytes(s, recompute ? 0 : HS_BACKWARD_KEEP_BYTES);
    /* at xi = 1, then at a pruning-style mask (zeros, and some 0.5) */
    for (int masked = 0; masked < 2; masked++) {
        const float *ref_g = (masked ? want_m : want)->data;
        const double scale = hs_test_max_abs(ref_g, n);
        for (int rows = pr.N; rows >= 1; rows -= pr.N - 1) { /* all prompts padded together, then one by one */
            float *got = malloc((size_t)n * sizeof(float));
            for (int64_t i = 0; i < n; i++) got[i] = NAN;
            cr_assert_eq(hs_head_grad_per_prompt(s, &pr, masked ? mask->data : NULL, rows, got, &err), HS_OK, "%s",
                         err.msg);
            /* f32 forward and backward on both sides, summation orders differ:
             * 1e-5 of the largest gradient, plus 1e-4 relative */
            hs_test_cmp cmp = hs_test_compare(got, ref_g, n, 1e-5 * scale, 1e-4);
            cr_assert_eq(cmp.n_bad, 0, "%s masked=%d rows=%d: %lld of %lld off (first %lld: got %g want %g), max abs %.3g",
                         model, masked, rows, (long long)cmp.n_bad, (long long)cmp.n, (long long)cmp.first_bad,
                         (double)got[cmp.first_bad], (double)ref_g[cmp.first_bad], cmp.max_abs);
            cr_log_info("%s masked=%d rows=%d recompute=%d: max |diff| vs autograd %.2e (max |grad| %.3g)", model,
                        masked, rows, recompute, cmp.max_abs, scale);
            float **k = &kept[masked * 2 + (rows == 1)];
            if (!recompute) {
                *k = got;
                continue;
            }
            cr_assert(!memcmp(got, *k, (size_t)n * sizeof(float)),
                      "%s masked=%d rows=%d: recomputing the layers changed the gradients", model, masked, rows);
            free(got), free(*k);
        }
    }
    }
    hs_session_free(s);
    hs_backend_free(be);
    hs_st_close(ref);
    hs_model_free(m);
}

Test(head_grad, gpt2_matches_autograd) { against_autograd("gpt2"); }
Test(head_grad, llama_gqa_matches_autograd) { against_autograd("llama_gqa"); }
Test(head_grad, llama_mha_matches_autograd) { against_autograd("llama_mha"); }
/* the parallel block's backward, the exact GELU's and the partial RoPE's */
Test(head_grad, pythia_matches_autograd) { against_autograd("pythia"); }
Test(head_grad, qwen3_matches_autograd) { against_autograd("qwen3"); }
Test(head_grad, phi3_matches_autograd) { against_autograd("phi3"); }
Test(head_grad, phi3_longrope_matches_autograd) { against_autograd("phi3_longrope"); }
Test(head_grad, phi_matches_autograd) { against_autograd("phi"); }
Test(head_grad, gptneo_matches_autograd) { against_autograd("gptneo"); }
Test(head_grad, gptj_matches_autograd) { against_autograd("gptj"); }
Test(head_grad, opt_matches_autograd) { against_autograd("opt"); }
Test(head_grad, olmo_matches_autograd) { against_autograd("olmo"); }
Test(head_grad, olmo_clip_matches_autograd) { against_autograd("olmo_clip"); }
Test(head_grad, gemma2_matches_autograd) { against_autograd("gemma2"); }
Test(head_grad, gemma3_matches_autograd) { against_autograd("gemma3"); }
Test(head_grad, gemma3_mm_matches_autograd) { against_autograd("gemma3_mm"); }
Test(head_grad, olmo2_matches_autograd) { against_autograd("olmo2"); }
Test(head_grad, olmo3_matches_autograd) { against_autograd("olmo3"); }
Test(head_grad, smollm3_matches_autograd) { against_autograd("smollm3"); }
Test(head_grad, bigcode_matches_autograd) { against_autograd("bigcode"); }
Test(head_grad, falcon_mq_matches_autograd) { against_autograd("falcon_mq"); }
Test(head_grad, falcon_gqa_matches_autograd) { against_autograd("falcon_gqa"); }
Test(head_grad, stablelm_matches_autograd) { against_autograd("stablelm"); }
Test(head_grad, bloom_matches_autograd) { against_autograd("bloom"); }
Test(head_grad, mpt_matches_autograd) { against_autograd("mpt"); }
Test(head_grad, falcon_rw_matches_autograd) { against_autograd("falcon_rw"); }
Test(head_grad, granite_matches_autograd) { against_autograd("granite"); }
Test(head_grad, cohere_matches_autograd) { against_autograd("cohere"); }
Test(head_grad, cohere2_matches_autograd) { against_autograd("cohere2"); }
Test(head_grad, starcoder2_matches_autograd) { against_autograd("starcoder2"); }
Test(head_grad, stablelm_qk_matches_autograd) { against_autograd("stablelm_qk"); }
Test(head_grad, cohere_qk_matches_autograd) { against_autograd("cohere_qk"); }

/* The head-mask gradient of a task metric after the last token (logit
 * difference, log-prob of the answer) against autograd (make_fixtures.py part
 * importance_metric): padded batches and one prompt at a time, at xi = 1 and
 * at a pruning-style mask. Same tolerance as the loss. */
static void metric_against_autograd(const char *model) {
    hs_model *m = NULL;
    hs_st_file *ref = NULL;
    hs_err err = {0};
    hs_test_load_fixture(model, "importance_metric", &m, &ref);
    const hs_prompts pr = hs_test_ref_prompts(ref);
    const hs_model_config *c = hs_model_get_config(m);
    const int64_t n = (int64_t)pr.N * c->n_layers * c->n_heads;
    const float *mask = hs_test_ref_tensor(ref, "mask")->data;
    hs_backend *be = NULL;
    hs_session *s = NULL;
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_session_init(be, m, pr.N, pr.T, &s, &err), HS_OK, "%s", err.msg);
    const struct {
        hs_metric m;
        const char *name;
    } ms[3] = {{HS_METRIC_LOGIT_DIFF, "logit_diff"}, {HS_METRIC_LOGPROB, "logprob"}, {HS_METRIC_LOGIT, "logit"}};
    float *got = malloc((size_t)n * sizeof(float));
    for (int k = 0; k < 3; k++)
        for (int masked = 0; masked < 2; masked++)
            for (int rows = pr.N; rows >= 1; rows -= pr.N - 1) {
                char key[64];
                snprintf(key, sizeof key, "%s.%s", ms[k].name, masked ? "grad_masked" : "grad");
                const hs_st_tensor *want = hs_test_ref_tensor(ref, key);
                cr_assert_eq(want->numel, n);
                for (int64_t i = 0; i < n; i++) got[i] = NAN;
                cr_assert_eq(hs_head_grad_metric(s, &pr, ms[k].m, masked ? mask : NULL, rows, got, &err), HS_OK, "%s",
                             err.msg);
                const double scale = hs_test_max_abs(want->data, n);
                hs_test_cmp cmp = hs_test_compare(got, want->data, n, 1e-5 * scale, 1e-4);
                cr_assert_eq(cmp.n_bad, 0, "%s %s rows=%d: %lld of %lld off (first %lld: got %g want %g)", model, key,
                             rows, (long long)cmp.n_bad, (long long)cmp.n, (long long)cmp.first_bad,
                             (double)got[cmp.first_bad], (double)((const float *)want->data)[cmp.first_bad]);
                cr_log_info("%s %s rows=%d: max |diff| vs autograd %.2e (max |grad| %.3g)", model, key, rows,
                            cmp.max_abs, scale);
            }
    /* KL to the unmasked model and accuracy are refused by name */
    cr_assert_eq(hs_head_grad_metric(s, &pr, HS_METRIC_KL, NULL, 1, got, &err), HS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "kl"), "%s", err.msg);
    cr_assert_eq(hs_head_grad_metric(s, &pr, HS_METRIC_ACCURACY, NULL, 1, got, &err), HS_ERR_UNSUPPORTED);
    free(got);
    hs_session_free(s);
    hs_backend_free(be);
    hs_st_close(ref);
    hs_model_free(m);
}

Test(head_grad, gpt2_metric_matches_autograd) { metric_against_autograd("gpt2"); }
Test(head_grad, llama_gqa_metric_matches_autograd) { metric_against_autograd("llama_gqa"); }

/* raw = sum_p |g| / tokens, norm = raw / ||raw[l, :]||_2, an all-zero layer 0. */
Test(head_grad, michel_normalisation) {
    const float g[2 * 2 * 2] = {3, -4, 0, 0, /* prompt 0: layer 0, layer 1 */ -3, 4, 0, 0};
    const int32_t tokens[2] = {2, 4};
    float raw[4], norm[4];
    hs_head_importance(g, tokens, 2, 2, 2, raw, norm);
    cr_assert_float_eq(raw[0], 1.0f, 1e-7f);
    cr_assert_float_eq(raw[1], 8.0f / 6.0f, 1e-7f);
    cr_assert_float_eq(norm[0], 0.6f, 1e-7f);
    cr_assert_float_eq(norm[1], 0.8f, 1e-7f);
    cr_assert(raw[2] == 0.0f && norm[2] == 0.0f && norm[3] == 0.0f, "an all-zero layer normalises to 0");
}

Test(head_grad, needs_targets) {
    hs_model *m = NULL;
    hs_st_file *ref = NULL;
    hs_err err = {0};
    hs_test_load_fixture("llama_gqa", "importance", &m, &ref);
    hs_backend *be = NULL;
    hs_session *s = NULL;
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_session_init(be, m, 1, 4, &s, &err), HS_OK, "%s", err.msg);
    const int32_t t[4] = {1, 2, 3, 4};
    const hs_batch b = {.B = 1, .T = 4, .tokens = t};
    float out[64];
    cr_assert_eq(hs_head_grad(s, &b, NULL, out, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "targets"), "%s", err.msg);
    hs_session_free(s);
    hs_backend_free(be);
    hs_st_close(ref);
    hs_model_free(m);
}
