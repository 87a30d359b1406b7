/* hook_result (TransformerLens, opt-in): each head's share of attn_out,
 * z_h W_O[h-slice]^T without the bias, against the fixture script's
 * computation from transformers' z and the output projection's weight
 * (make_fixtures.py, make_result_refs; right-padded batch, valid positions). */
#include <criterion/criterion.h>
#include <string.h>

#include "headsweep/hs_capture.h"
#include "headsweep/hs_safetensors.h"
#include "hs_testutil.h"

static void result_matches(const char *model) {
    char name[64];
    hs_err err = {0};
    hs_model *m = NULL;
    hs_st_file *ref = NULL;
    hs_backend *be = NULL;
    hs_session *s = NULL;
    hs_capture *cap = NULL;
    hs_test_load_fixture(model, "result", &m, &ref);
    const hs_st_tensor *tok = hs_st_find(ref, "tokens"), *mask = hs_st_find(ref, "mask");
    cr_assert(tok && mask);
    const int B = (int)tok->shape[0], T = (int)tok->shape[1];
    const hs_model_config *c = hs_model_get_config(m);
    const int H = c->n_heads, d = c->d_model;
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK);
    cr_assert_eq(hs_session_init(be, m, B, T, &s, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_capture_init(be, &cap, &err), HS_OK);
    cr_assert_eq(hs_capture_want_result(cap, m, -1, &err), HS_OK, "%s", err.msg);
    hs_hooks hooks = hs_capture_hooks(cap);
    hs_forward_params fp = hs_forward_default_params();
    fp.hooks = &hooks;
    fp.logits = HS_LOGITS_NONE;
    hs_batch b = {.B = B, .T = T, .tokens = tok->data, .mask = mask->data};
    cr_assert_eq(hs_forward(s, &b, &fp, NULL, &err), HS_OK, "%s", err.msg);
    /* valid query positions only: pad rows are "don't care" */
    const int64_t n = (int64_t)B * T * H * d;
    uint8_t *keep = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++) keep[i] = ((const int32_t *)mask->data)[i / ((int64_t)H * d)] != 0;
    for (int l = 0; l < c->n_layers; l++) {
        hs_tensor shape;
        const float *got = hs_capture_get_result(cap, l, &shape);
        cr_assert_not_null(got, "layer %d: no result", l);
        cr_assert(shape.ndim == 4 && shape.shape[0] == B && shape.shape[1] == T && shape.shape[2] == H &&
                  shape.shape[3] == d);
        cr_assert_not_null(hs_capture_get(cap, HS_HOOK_Z, l, NULL), "z is recorded with the result");
        snprintf(name, sizeof name, "blocks.%d.attn.hook_result", l);
        const hs_st_tensor *want = hs_st_find(ref, name);
        cr_assert(want && want->numel == n);
        /* the tolerance of every whole-model comparison (hs_testutil.h) */
        const double atol = HS_TEST_F32_ATOL_RMS * hs_test_rms(want->data, n);
        hs_test_cmp cm = hs_test_compare_masked(got, want->data, keep, n, atol, HS_TEST_F32_RTOL);
        cr_assert_eq(cm.n_bad, 0, "%s layer %d: %lld of %lld off, max abs %.3g", model, l, (long long)cm.n_bad,
                     (long long)cm.n, cm.max_abs);
        cr_log_info("%s layer %d: result max |diff| %.2e (rel l2 %.2e)", model, l, cm.max_abs, cm.rel_l2);
    }
    free(keep);
    hs_capture_free(cap);
    hs_session_free(s);
    hs_backend_free(be);
    hs_st_close(ref);
    hs_model_free(m);
}
Test(capture_result, gpt2_matches_transformers) { result_matches("gpt2"); }
Test(capture_result, llama_gqa_matches_transformers) { result_matches("llama_gqa"); }

/* Opt-in: neither want_all nor a z request computes it; one layer gives one layer. */
Test(capture_result, only_on_request) {
    char path[1024];
    hs_err err = {0};
    hs_model *m = NULL, *other = NULL;
    hs_backend *be = NULL;
    hs_session *s = NULL;
    hs_capture *cap = NULL;
    hs_test_fixture_path(path, sizeof path, "models/gpt2");
    cr_assert_eq(hs_model_load(path, &m, &err), HS_OK);
    hs_test_fixture_path(path, sizeof path, "models/llama_gqa");
    cr_assert_eq(hs_model_load(path, &other, &err), HS_OK);
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK);
    cr_assert_eq(hs_session_init(be, m, 1, 4, &s, &err), HS_OK);
    int32_t tok[4] = {1, 5, 9, 7};
    hs_batch b = {.B = 1, .T = 4, .tokens = tok};
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = HS_LOGITS_NONE;
    cr_assert_eq(hs_capture_init(be, &cap, &err), HS_OK);
    hs_capture_want_all(cap);
    hs_hooks hooks = hs_capture_hooks(cap);
    fp.hooks = &hooks;
    cr_assert_eq(hs_forward(s, &b, &fp, NULL, &err), HS_OK);
    cr_assert_null(hs_capture_get_result(cap, 0, NULL));
    hs_capture_free(cap);
    cr_assert_eq(hs_capture_init(be, &cap, &err), HS_OK);
    cr_assert_eq(hs_capture_want_result(cap, m, 1, &err), HS_OK);
    cr_assert_eq(hs_capture_want_result(cap, other, 2, &err), HS_ERR_INVALID_ARG); /* one model per capture */
    cr_assert_eq(hs_capture_want_result(cap, m, 3, &err), HS_ERR_INVALID_ARG);     /* gpt2 has 3 layers */
    hooks = hs_capture_hooks(cap);
    cr_assert_eq(hs_forward(s, &b, &fp, NULL, &err), HS_OK);
    cr_assert_null(hs_capture_get_result(cap, 0, NULL));
    cr_assert_not_null(hs_capture_get_result(cap, 1, NULL));
    cr_assert_null(hs_capture_get_result(cap, 2, NULL));
    hs_capture_free(cap);
    hs_session_free(s);
    hs_backend_free(be);
    hs_model_free(other);
    hs_model_free(m);
}
