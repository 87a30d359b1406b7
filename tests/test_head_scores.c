/* Head scores against TransformerLens's detector definitions computed by the
 * fixture script on transformers' eager attention probabilities. */
#include <criterion/criterion.h>
#include <string.h>

#include "headsweep/hs_head_scores.h"
#include "headsweep/hs_safetensors.h"
#include "hs_testutil.h"

static void scores_match(const char *model, int pad_to) {
    hs_err err = {0};
    hs_model *m = NULL;
    hs_st_file *ref = NULL;
    hs_backend *be = NULL;
    hs_session *s = NULL;
    hs_test_load_fixture(model, "scores", &m, &ref);
    const hs_st_tensor *tok = hs_st_find(ref, "tokens"), *sc = hs_st_find(ref, "scores");
    cr_assert(tok && sc);
    int N = (int)tok->shape[0], n = (int)tok->shape[1], T = pad_to > n ? pad_to : n;
    /* right-pad to T: padding must not change any score */
    int32_t *toks = calloc((size_t)N * T, sizeof *toks), *lens = malloc((size_t)N * sizeof *lens);
    for (int i = 0; i < N; i++) {
        memcpy(toks + (int64_t)i * T, (const int32_t *)tok->data + (int64_t)i * n, (size_t)n * sizeof *toks);
        lens[i] = n;
    }
    hs_prompts pr = {.N = N, .T = T, .tokens = toks, .lengths = lens};
    const hs_model_config *c = hs_model_get_config(m);
    cr_assert_eq(sc->numel, (int64_t)HS_SCORE_COUNT * c->n_layers * c->n_heads);
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK);
    cr_assert_eq(hs_session_init(be, m, 2, T, &s, &err), HS_OK, "%s", err.msg);
    float *out = malloc((size_t)sc->numel * sizeof(float));
    for (int64_t i = 0; i < sc->numel; i++) out[i] = -1.0f;
    cr_assert_eq(hs_head_scores(s, m, &pr, (1u << HS_SCORE_COUNT) - 1, 2, out, &err), HS_OK, "%s", err.msg);
    /* Probabilities agree to ~1e-6 (see test_conformance); scores are ratios of sums of them. */
    hs_test_cmp cm = hs_test_compare(out, sc->data, sc->numel, 1e-5, 0);
    cr_assert_eq(cm.n_bad, 0, "%s: %lld of %lld scores off (first at %lld: %g vs %g)", model, (long long)cm.n_bad,
                 (long long)cm.n, (long long)cm.first_bad, (double)out[cm.first_bad],
                 (double)((const float *)sc->data)[cm.first_bad]);
    cr_log_info("%s (T=%d): %lld scores, max |diff| %.2e", model, T, (long long)cm.n, cm.max_abs);
    free(out);
    free(toks);
    free(lens);
    hs_session_free(s);
    hs_backend_free(be);
    hs_st_close(ref);
    hs_model_free(m);
}

Test(head_scores, gpt2_matches_transformerlens_definitions) { scores_match("gpt2", 0); }
Test(head_scores, llama_gqa_matches_transformerlens_definitions) { scores_match("llama_gqa", 0); }
Test(head_scores, padding_does_not_change_scores) { scores_match("llama_gqa", 15); }

Test(head_scores, olsson_needs_repeated_prompts) {
    char path[1024];
    hs_err err = {0};
    hs_model *m = NULL;
    hs_backend *be = NULL;
    hs_session *s = NULL;
    hs_test_fixture_path(path, sizeof path, "models/gpt2");
    cr_assert_eq(hs_model_load(path, &m, &err), HS_OK);
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK);
    cr_assert_eq(hs_session_init(be, m, 1, 8, &s, &err), HS_OK);
    int32_t tok[8] = {1, 2, 3, 4, 2, 3, 4, 5}, len = 8;
    hs_prompts pr = {.N = 1, .T = 8, .tokens = tok, .lengths = &len};
    float out[4 * 3 * 5];
    cr_assert_eq(hs_head_scores(s, m, &pr, 1u << HS_SCORE_OLSSON_INDUCTION, 1, out, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "odd length"), "%s", err.msg);
    hs_session_free(s);
    hs_backend_free(be);
    hs_model_free(m);
}
