/* Retrieval scores (Wu et al. 2024) against transformers greedy decoding with
 * output_attentions on the tiny fixture models (make_fixtures.py,
 * make_retrieval_refs): the generated tokens and the copied-needle counts
 * must agree exactly. The fixture only keeps prompts whose every greedy and
 * attention argmax has a safe margin, so exactness is not luck. */
#include <criterion/criterion.h>
#include <string.h>

#include "headsweep/hs_retrieval.h"
#include "headsweep/hs_safetensors.h"
#include "hs_testutil.h"

typedef struct {
    hs_model *m;
    hs_backend *be;
    hs_session *s;
    hs_st_file *ref;
    hs_prompts pr;
    const int32_t *ns, *nl, *gen;
    const float *scores;
    int G, LH;
} fx;

static void fx_init(fx *f, const char *model) {
    hs_err err = {0};
    memset(f, 0, sizeof *f);
    hs_test_load_fixture(model, "retrieval", &f->m, &f->ref);
    const hs_st_tensor *tok = hs_test_ref_tensor(f->ref, "tokens"), *gen = hs_test_ref_tensor(f->ref, "generated");
    f->pr = (hs_prompts){.N = (int)tok->shape[0], .T = (int)tok->shape[1], .tokens = tok->data,
                         .lengths = hs_test_ref_tensor(f->ref, "lengths")->data};
    f->ns = hs_test_ref_tensor(f->ref, "needle_start")->data;
    f->nl = hs_test_ref_tensor(f->ref, "needle_len")->data;
    f->gen = gen->data;
    f->G = (int)gen->shape[1];
    f->scores = hs_test_ref_tensor(f->ref, "scores")->data;
    const hs_model_config *c = hs_model_get_config(f->m);
    f->LH = c->n_layers * c->n_heads;
    cr_assert_eq(hs_backend_cpu_init(NULL, &f->be, &err), HS_OK, "%s", err.msg);
    /* the longest context: the longest prompt plus all but the last generated token */
    cr_assert_eq(hs_session_init(f->be, f->m, 2, f->pr.T + f->G - 1, &f->s, &err), HS_OK, "%s", err.msg);
}

static void fx_free(fx *f) {
    hs_session_free(f->s);
    hs_backend_free(f->be);
    hs_st_close(f->ref);
    hs_model_free(f->m);
}

static void matches(const char *model) {
    fx f;
    fx_init(&f, model);
    hs_err err = {0};
    const int N = f.pr.N;
    float *score = malloc((size_t)N * f.LH * sizeof *score), *score1 = malloc((size_t)N * f.LH * sizeof *score1);
    int32_t *gen = malloc((size_t)N * f.G * sizeof *gen);
    hs_retrieval_params p = hs_retrieval_default_params();
    p.n_generate = f.G;
    p.batch_rows = 2; /* both prompts in one batch: the shorter one right-padded */
    cr_assert_eq(hs_retrieval_scores_per_prompt(f.s, f.m, &f.pr, f.ns, f.nl, &p, score, gen, &err), HS_OK, "%s",
                 err.msg);
    cr_assert(!memcmp(gen, f.gen, (size_t)N * f.G * sizeof *gen), "%s: greedy tokens differ from transformers", model);
    int copying = 0;
    for (int i = 0; i < N * f.LH; i++) {
        /* count / needle_len in f32 on both sides: exact */
        cr_assert_eq(score[i], f.scores[i], "%s: prompt %d head %d: score %g, transformers %g", model, i / f.LH,
                     i % f.LH, (double)score[i], (double)f.scores[i]);
        copying += score[i] > 0;
    }
    cr_assert_gt(copying, 0, "%s: no head copies: the fixture tests nothing", model);
    cr_log_info("%s: %d (prompt, head) pairs copy, all counts exact", model, copying);
    /* without the KV cache (each step reruns the whole context, as LongRoPE models decode): the same */
    p.no_kv_cache = 1;
    cr_assert_eq(hs_retrieval_scores_per_prompt(f.s, f.m, &f.pr, f.ns, f.nl, &p, score1, gen, &err), HS_OK, "%s",
                 err.msg);
    cr_assert(!memcmp(gen, f.gen, (size_t)N * f.G * sizeof *gen), "%s: greedy tokens without the cache differ", model);
    cr_assert(!memcmp(score1, score, (size_t)N * f.LH * sizeof *score), "%s: scores without the cache differ", model);
    p.no_kv_cache = 0;
    /* one prompt per batch (another unit size) gives the same */
    p.batch_rows = 1;
    cr_assert_eq(hs_retrieval_scores_per_prompt(f.s, f.m, &f.pr, f.ns, f.nl, &p, score1, NULL, &err), HS_OK);
    cr_assert(!memcmp(score1, score, (size_t)N * f.LH * sizeof *score));
    /* the mean over prompts */
    float *mean = malloc((size_t)f.LH * sizeof *mean);
    cr_assert_eq(hs_retrieval_scores(f.s, f.m, &f.pr, f.ns, f.nl, &p, mean, &err), HS_OK);
    for (int j = 0; j < f.LH; j++) {
        double want = 0;
        for (int i = 0; i < N; i++) want += f.scores[(int64_t)i * f.LH + j];
        cr_assert_float_eq(mean[j], want / N, 1e-7);
    }
    free(score), free(score1), free(gen), free(mean);
    fx_free(&f);
}
Test(retrieval, gpt2_matches_transformers) { matches("gpt2"); }
Test(retrieval, llama_gqa_matches_transformers) { matches("llama_gqa"); }

Test(retrieval, checks_needle_spans_and_session_size) {
    fx f;
    fx_init(&f, "gpt2");
    hs_err err = {0};
    float score[2 * 15];
    int32_t bad_start[2] = {f.ns[0], f.pr.lengths[1] - 1};
    hs_retrieval_params p = hs_retrieval_default_params();
    p.n_generate = f.G;
    cr_assert_eq(hs_retrieval_scores_per_prompt(f.s, f.m, &f.pr, bad_start, f.nl, &p, score, NULL, &err),
                 HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "prompt 1: needle"), "%s", err.msg);
    /* a session shorter than the longest prompt (the KV cache holds the generated tokens; the prompt is one batch) */
    hs_session *small;
    cr_assert_eq(hs_session_init(f.be, f.m, 2, f.pr.T - 1, &small, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_retrieval_scores_per_prompt(small, f.m, &f.pr, f.ns, f.nl, &p, score, NULL, &err),
                 HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "outside the session"), "%s", err.msg);
    hs_session_free(small);
    p.n_generate = 0;
    cr_assert_eq(hs_retrieval_scores_per_prompt(f.s, f.m, &f.pr, f.ns, f.nl, &p, score, NULL, &err),
                 HS_ERR_INVALID_ARG);
    fx_free(&f);
}
