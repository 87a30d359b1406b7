/* The run driver's wiring of resample and patch ablation, template means, the
 * retrieval score, needle recall under head sets and the result hook:
 * `headsweep run` (which cuts every experiment into units) writes exactly
 * what the library computes in one call over the whole dataset. The library functions themselves are checked
 * against transformers in test_ablation_sources.c, test_retrieval.c and
 * test_capture_result.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "headsweep/hs_capture.h"
#include "headsweep/hs_config.h"
#include "headsweep/hs_dataset.h"
#include "headsweep/hs_h5.h"
#include "headsweep/hs_head_sets.h"
#include "headsweep/hs_retrieval.h"
#include "headsweep/hs_run.h"
#include "hs_testutil.h"

enum { N = 9, LEN = 8 };

/* Prompts of token ids in two templates (lengths 8 and 7), with corrupted
 * copies, answers and a needle span of 3 tokens repeated later in the prompt. */
static void write_jsonl(const char *path) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    hs_test_rng r;
    hs_test_rng_seed(&r, 21);
    for (int i = 0; i < N; i++) {
        const int len = i % 2 ? LEN - 1 : LEN;
        int t[LEN];
        for (int k = 0; k < len; k++) t[k] = 3 + (int)(hs_test_rng_u64(&r) % 200);
        t[len - 2] = t[1]; /* the needle's first token again: something to copy */
        fprintf(f, "{\"tokens\": [");
        for (int k = 0; k < len; k++) fprintf(f, "%s%d", k ? ", " : "", t[k]);
        fprintf(f, "], \"corrupt\": [");
        for (int k = 0; k < len; k++) fprintf(f, "%s%d", k ? ", " : "", k == 2 ? (t[k] + 11) % 200 + 3 : t[k]);
        fprintf(f, "], \"answer\": %d, \"distractor\": %d, \"template\": %d, \"needle_start\": 1, \"needle_len\": 3}\n",
                t[2], t[3], i % 2);
    }
    fclose(f);
}

static float *read_f32(hs_h5 *f, const char *group, const char *name, int64_t *n) {
    hs_h5_group *g;
    hs_err err = {0};
    float *d = NULL;
    hs_h5_shape s;
    cr_assert_eq(hs_h5_group_open(f, group, &g, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_f32(g, name, &d, &s, &err), HS_OK, "%s/%s: %s", group, name, err.msg);
    *n = 1;
    for (int k = 0; k < s.ndim; k++) *n *= s.dims[k];
    return d;
}

static void same(const float *got, const float *ref, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++)
        cr_assert(got[i] == ref[i] || (isnan(got[i]) && isnan(ref[i])) || fabsf(got[i] - ref[i]) <= 1e-6f,
                  "%s[%lld]: run %g, library %g", what, (long long)i, got[i], ref[i]);
}

Test(run_modes, run_equals_the_library_on_the_whole_dataset, .timeout = 300) {
    char dir[] = "/tmp/hs_test_modes_XXXXXX", cfgp[256], out[256], data[256], model[1024];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cfgp, sizeof cfgp, "%s/c.yaml", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    snprintf(data, sizeof data, "%s/d.jsonl", dir);
    write_jsonl(data);
    hs_test_fixture_path(model, sizeof model, "models/llama_gqa");
    FILE *fc = fopen(cfgp, "w");
    cr_assert_not_null(fc);
    fprintf(fc,
            "model: %s\nseed: 5\nbatch_size: 12\noutput: %s\ndataset:\n  file: %s\nexperiments:\n"
            "  - name: res\n    type: head_ablation\n    mode: resample\n    metric: loss\n"
            "  - name: tmpl\n    type: head_ablation\n    mode: mean\n    mean_over: template\n"
            "    metric: logit_diff\n    positions: last\n"
            "  - name: pat\n    type: head_ablation\n    mode: patch\n    metric: logit_diff\n    positions: last\n"
            "  - name: ret\n    type: head_scores\n    scores: [retrieval]\n"
            "  - name: rec\n    type: head_set_ablation\n    importance: ret/retrieval\n    top_k: 2\n"
            "    random_sets: 1\n    metric: needle_recall\n    mode: uniform\n"
            "  - name: cap\n    type: capture\n    hooks: [result]\n    layers: [1]\n    prompts: [0, 3, 8]\n",
            model, out, data);
    fclose(fc);
    hs_err err = {0};
    cr_assert_eq(hs_test_run_config(cfgp, NULL, 0, NULL, &err), HS_OK, "%s", err.msg);

    /* the library, one call each over all prompts */
    hs_model *m;
    hs_backend *be;
    hs_session *s;
    hs_dataset *d;
    cr_assert_eq(hs_model_load(model, &m, &err), HS_OK, "%s", err.msg);
    const hs_model_config *c = hs_model_get_config(m);
    const int L = c->n_layers, H = c->n_heads;
    hs_backend_params bp = hs_backend_default_params();
    cr_assert_eq(hs_backend_cpu_init(&bp, &be, &err), HS_OK);
    cr_assert_eq(hs_dataset_load_jsonl(data, NULL, c, 0, &d, &err), HS_OK, "%s", err.msg);
    hs_prompts pr = hs_dataset_prompts(d);
    cr_assert_eq(hs_session_init(be, m, 12, pr.T + 31, &s, &err), HS_OK, "%s", err.msg);
    float base[N], delta[N * 64], *got;
    int64_t n;
    hs_h5 *f;
    hs_test_check_with_h5py(out);
    cr_assert_eq(hs_h5_open_read(out, &f, &err), HS_OK, "%s", err.msg);

    int32_t src[N];
    cr_assert_eq(hs_ablation_resample_sources(5, N, 0, N, src, &err), HS_OK, "%s", err.msg);
    hs_ablation_params p = hs_ablation_default_params();
    p.batch_rows = 12;
    p.mode = HS_ABLATE_RESAMPLE;
    p.resample_ref = &pr;
    p.resample_src = src;
    cr_assert_eq(hs_head_ablation(s, m, &pr, &p, base, delta, &err), HS_OK, "%s", err.msg);
    got = read_f32(f, "res", "delta", &n);
    cr_assert_eq(n, N * L * H);
    same(got, delta, n, "res/delta");
    free(got);

    /* patch: each prompt's z from its own corrupted version */
    int32_t self[N];
    for (int i = 0; i < N; i++) self[i] = i;
    hs_prompts corrupt = pr;
    corrupt.tokens = d->corrupt_tokens;
    p = hs_ablation_default_params();
    p.batch_rows = 12;
    p.metric = HS_METRIC_LOGIT_DIFF;
    p.mode = HS_ABLATE_RESAMPLE;
    p.resample_ref = &corrupt;
    p.resample_src = self;
    cr_assert_eq(hs_head_ablation(s, m, &pr, &p, base, delta, &err), HS_OK, "%s", err.msg);
    got = read_f32(f, "pat", "delta", &n);
    same(got, delta, n, "pat/delta");
    free(got);

    float *means = malloc((size_t)2 * L * H * pr.T * c->d_head * sizeof(float));
    hs_prompts ref = pr;
    ref.tokens = d->corrupt_tokens; /* Wang et al.: the ABC prompts of each template */
    cr_assert_eq(hs_ablation_mean_z_template(s, m, &ref, d->template_id, 2, 12, means, &err), HS_OK, "%s", err.msg);
    p = hs_ablation_default_params();
    p.batch_rows = 12;
    p.metric = HS_METRIC_LOGIT_DIFF;
    p.mode = HS_ABLATE_MEAN;
    p.mean_z = means;
    p.mean_template = d->template_id;
    p.n_templates = 2;
    cr_assert_eq(hs_head_ablation(s, m, &pr, &p, base, delta, &err), HS_OK, "%s", err.msg);
    got = read_f32(f, "tmpl", "delta", &n);
    same(got, delta, n, "tmpl/delta");
    free(got), free(means);

    hs_retrieval_params rp = hs_retrieval_default_params();
    rp.n_generate = 32;
    rp.batch_rows = 12;
    float score[N * 64];
    int32_t gen[N * 32];
    cr_assert_eq(hs_retrieval_scores_per_prompt(s, m, &pr, d->needle_start, d->needle_len, &rp, score, gen, &err), HS_OK,
                 "%s", err.msg);
    got = read_f32(f, "ret", "retrieval_per_prompt", &n);
    same(got, score, n, "ret/retrieval_per_prompt");
    free(got);
    hs_h5_group *g;
    int32_t *gi = NULL;
    hs_h5_shape gs;
    cr_assert_eq(hs_h5_group_open(f, "ret", &g, &err), HS_OK);
    cr_assert_eq(hs_h5_read_i32(g, "generated_tokens", &gi, &gs, &err), HS_OK, "%s", err.msg);
    cr_assert(gs.ndim == 2 && gs.dims[0] == N && gs.dims[1] == 32);
    cr_assert_eq(memcmp(gi, gen, sizeof gen), 0, "generated tokens differ");
    free(gi);

    /* needle recall: each written set's recall per prompt, as the library gives it over all prompts */
    float *sets = read_f32(f, "rec", "sets", &n), *mp = read_f32(f, "rec", "metric_per_prompt", &n);
    cr_assert_eq(n, N * 2);
    cr_assert(L * H <= 64);
    hs_head_set_params hp = hs_head_set_default_params();
    hp.metric = HS_METRIC_NEEDLE_RECALL;
    hp.mode = HS_ABLATE_UNIFORM;
    hp.needle_start = d->needle_start, hp.needle_len = d->needle_len, hp.n_generate = 32;
    hp.batch_rows = 12;
    int32_t answers[N * 32], *wa = NULL, *wb = NULL; /* the written answers [N, set, 32] and unablated [N, 32] */
    hs_h5_shape as, bs;
    cr_assert_eq(hs_h5_group_open(f, "rec", &g, &err), HS_OK);
    cr_assert_eq(hs_h5_read_i32(g, "generated_tokens", &wa, &as, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_i32(g, "base_generated_tokens", &wb, &bs, &err), HS_OK, "%s", err.msg);
    cr_assert(as.ndim == 3 && as.dims[0] == N && as.dims[1] == 2 && as.dims[2] == 32 && bs.ndim == 2);
    hp.generated = answers;
    for (int k = -1; k < 2; k++) {
        uint8_t set[64];
        float want[N];
        for (int j = 0; k >= 0 && j < L * H; j++) set[j] = sets[k * L * H + j] != 0.0f;
        cr_assert_eq(hs_head_set_metric(s, m, &pr, &hp, k >= 0 ? set : NULL, want, &err), HS_OK, "%s", err.msg);
        for (int i = 0; i < N; i++) {
            if (k >= 0) cr_assert_eq(mp[i * 2 + k], want[i], "rec: set %d prompt %d", k, i);
            const int32_t *w = k >= 0 ? wa + ((int64_t)i * 2 + k) * 32 : wb + (int64_t)i * 32;
            cr_assert(!memcmp(w, answers + (int64_t)i * 32, 32 * sizeof *w), "rec: set %d prompt %d: answers differ", k, i);
        }
    }
    free(sets), free(mp), free(wa), free(wb);

    hs_capture *cap;
    cr_assert_eq(hs_capture_init(be, &cap, &err), HS_OK);
    cr_assert_eq(hs_capture_want_result(cap, m, 1, &err), HS_OK, "%s", err.msg);
    hs_hooks hooks = hs_capture_hooks(cap);
    const int pick[3] = {0, 3, 8};
    int32_t tok[3 * 64], msk[3 * 64];
    for (int i = 0; i < 3; i++)
        for (int t = 0; t < pr.T; t++)
            tok[i * pr.T + t] = pr.tokens[pick[i] * pr.T + t], msk[i * pr.T + t] = t < pr.lengths[pick[i]];
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = HS_LOGITS_NONE;
    fp.hooks = &hooks;
    hs_batch b = {.B = 3, .T = pr.T, .tokens = tok, .mask = msk};
    cr_assert_eq(hs_forward(s, &b, &fp, NULL, &err), HS_OK, "%s", err.msg);
    hs_tensor shp;
    const float *res = hs_capture_get_result(cap, 1, &shp);
    cr_assert_not_null(res);
    got = read_f32(f, "cap", "blocks.1.attn.hook_result", &n);
    cr_assert_eq(n, hs_tensor_numel(&shp));
    same(got, res, n, "cap/blocks.1.attn.hook_result");
    free(got);
    hs_capture_free(cap);

    hs_h5_close(f);
    hs_session_free(s);
    hs_dataset_free(d);
    hs_backend_free(be);
    hs_model_free(m);
    hs_test_remove_dir(dir);
}
