/* Retrieval scores (Wu et al. 2024) against transformers greedy decoding with
 * output_attentions on the tiny fixture models (make_fixtures.py,
 * make_retrieval_refs): the generated tokens and the copied-needle counts
 * must agree exactly (with and without the KV cache). The fixture only keeps
 * prompts whose every greedy and attention argmax has a safe margin, so
 * exactness is not luck. The run's needle recall and filtered score are
 * recomputed from transformers' answers. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "headsweep/hs_h5.h"
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
    const hs_test_needles nd = hs_test_ref_needles(f->ref);
    f->pr = nd.pr, f->ns = nd.ns, f->nl = nd.nl, f->gen = nd.gen, f->G = nd.G;
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
    /* without the KV cache (each step reruns the whole context, as where no cache fits): the same */
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

/* The run writes each answer's needle recall and the paper's filtered score:
 * the fixture's prompts as a JSONL file, prompt 1's needle moved to one token
 * its greedy answer (transformers') repeats, so at least one prompt passes
 * the filter. The run's 32-token answers begin with transformers' tokens; the
 * recall is recomputed from them here, the filtered mean from the written
 * per-prompt scores. */
Test(retrieval, the_run_writes_needle_recall_and_the_papers_filter, .timeout = 120) {
    fx f;
    fx_init(&f, "llama_gqa");
    const int N = f.pr.N;
    cr_assert(N <= 8);
    int32_t ns[8], nl[8];
    for (int i = 0; i < N; i++) ns[i] = f.ns[i], nl[i] = f.nl[i];
    const int32_t *p1 = f.pr.tokens + f.pr.T, *g1 = f.gen + f.G;
    ns[1] = -1;
    for (int j = 0; j < f.pr.lengths[1] && ns[1] < 0; j++)
        for (int k = 0; k < f.G; k++)
            if (p1[j] == g1[k]) ns[1] = j, nl[1] = 1;
    cr_assert_geq(ns[1], 0, "prompt 1's answer repeats none of its tokens");
    char dir[] = "/tmp/hs_test_ret_XXXXXX", data[256], cfgp[256], out[256], model[1024];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(data, sizeof data, "%s/d.jsonl", dir);
    snprintf(cfgp, sizeof cfgp, "%s/c.yaml", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    hs_test_fixture_path(model, sizeof model, "models/llama_gqa");
    FILE *fd = fopen(data, "w"), *fc = fopen(cfgp, "w");
    cr_assert(fd && fc);
    for (int i = 0; i < N; i++) {
        fprintf(fd, "{\"tokens\": [");
        for (int t = 0; t < f.pr.lengths[i]; t++) fprintf(fd, "%s%d", t ? ", " : "", f.pr.tokens[(int64_t)i * f.pr.T + t]);
        fprintf(fd, "], \"needle_start\": %d, \"needle_len\": %d}\n", ns[i], nl[i]);
    }
    fprintf(fc, "model: %s\nbatch_size: 2\noutput: %s\ndataset:\n  file: %s\nexperiments:\n"
                "  - name: ret\n    type: head_scores\n    scores: [retrieval]\n", model, out, data);
    fclose(fd), fclose(fc);
    hs_err err = {0};
    cr_assert_eq(hs_test_run_config(cfgp, NULL, 0, NULL, &err), HS_OK, "%s", err.msg);
    hs_test_check_with_h5py(out);
    hs_h5 *h;
    hs_h5_group *g;
    float *rec = NULL, *per = NULL, *filt = NULL;
    int32_t *gen = NULL;
    hs_h5_shape rs, ps, fs, gs;
    cr_assert_eq(hs_h5_open_read(out, &h, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_group_open(h, "ret", &g, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_f32(g, "needle_recall", &rec, &rs, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_f32(g, "retrieval_per_prompt", &per, &ps, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_f32(g, "retrieval_filtered", &filt, &fs, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_i32(g, "generated_tokens", &gen, &gs, &err), HS_OK, "%s", err.msg);
    cr_assert(rs.ndim == 1 && rs.dims[0] == N && fs.ndim == 2 && fs.dims[0] * fs.dims[1] == f.LH && gs.ndim == 2);
    const int G = (int)gs.dims[1]; /* the run's 32 tokens; the fixture holds transformers' first f.G */
    int kept = 0;
    for (int i = 0; i < N; i++) {
        cr_assert(!memcmp(gen + (int64_t)i * G, f.gen + (int64_t)i * f.G, (size_t)f.G * sizeof *gen),
                  "prompt %d: the run's answer does not begin with transformers'", i);
        const float want = hs_test_token_recall(f.pr.tokens + (int64_t)i * f.pr.T + ns[i], nl[i], gen + (int64_t)i * G, G);
        cr_assert_eq(rec[i], want, "prompt %d: needle recall %g, recomputed %g", i, rec[i], want);
        kept += want > 0.5f;
    }
    cr_assert_eq(rec[1], 1.0f);
    for (int k = 0; k < f.LH; k++) {
        double s = 0;
        for (int i = 0; i < N; i++) s += rec[i] > 0.5f ? per[(int64_t)i * f.LH + k] : 0.0;
        cr_assert_float_eq(filt[k], (float)(s / kept), 1e-7, "head %d: filtered %g", k, filt[k]);
    }
    free(rec), free(per), free(filt), free(gen);
    hs_h5_close(h);
    hs_test_remove_dir(dir);
    fx_free(&f);
}
