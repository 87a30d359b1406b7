/* hs_head_set_metric: a set of heads ablated together equals the same set
 * applied as a head mask (zero) or as hand-built SET edits (mean); the
 * second-half loss equals the loss recomputed from the target log-probs;
 * needle recall is that of transformers' greedy answers unablated, and that of
 * whole-forward greedy decoding under the same edits when ablated. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_dataset.h"
#include "headsweep/hs_h5.h"
#include "headsweep/hs_head_sets.h"
#include "headsweep/hs_run.h"
#include "hs_testutil.h"

typedef struct {
    hs_model *m;
    hs_backend *be;
    hs_session *s;
    hs_dataset *d;
    hs_prompts pr;
} fixture;

static void setup(fixture *f, int N) {
    char path[1024];
    hs_err err = {0};
    hs_test_fixture_path(path, sizeof path, "models/llama_gqa");
    cr_assert_eq(hs_model_load(path, &f->m, &err), HS_OK, "%s", err.msg);
    hs_backend_params bp = hs_backend_default_params();
    cr_assert_eq(hs_backend_cpu_init(&bp, &f->be, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_dataset_induction(hs_model_get_config(f->m), N, 6, 3, 300, 5, &f->d, &err), HS_OK, "%s", err.msg);
    f->pr = hs_dataset_prompts(f->d);
    cr_assert_eq(hs_session_init(f->be, f->m, 8, f->pr.T, &f->s, &err), HS_OK, "%s", err.msg);
}

static void teardown(fixture *f) {
    hs_session_free(f->s);
    hs_dataset_free(f->d);
    hs_backend_free(f->be);
    hs_model_free(f->m);
}

Test(head_sets, zero_sets_equal_the_head_mask) {
    fixture f;
    setup(&f, 10);
    const hs_model_config *c = hs_model_get_config(f.m);
    const int LH = c->n_layers * c->n_heads, N = f.pr.N;
    hs_test_rng r;
    hs_test_rng_seed(&r, 3);
    float got[16], ref[16];
    for (int trial = 0; trial < 6; trial++) {
        uint8_t set[256] = {0};
        float scale[256];
        for (int k = 0; k < LH; k++) set[k] = hs_test_rng_u64(&r) % 4 == 0, scale[k] = set[k] ? 0.0f : 1.0f;
        hs_head_set_params p = hs_head_set_default_params();
        p.batch_rows = 8;
        hs_err err = {0};
        for (int k = 0; k < N; k++) got[k] = NAN;
        cr_assert_eq(hs_head_set_metric(f.s, f.m, &f.pr, &p, set, got, &err), HS_OK, "%s", err.msg);
        cr_assert_eq(hs_eval_metric_per_prompt(f.s, f.m, &f.pr, HS_METRIC_LOSS, scale, 8, ref, &err), HS_OK, "%s", err.msg);
        hs_test_cmp cmp = hs_test_compare(got, ref, N, 1e-5, 1e-5);
        cr_assert(cmp.n_bad == 0 && !cmp.nan, "trial %d: max diff %g at %lld", trial, cmp.max_abs, (long long)cmp.first_bad);
    }
    teardown(&f);
}

/* The second-half loss is the mean NLL of tokens x2..xn of the second copy,
 * recomputed here from the forward's target log-probs. */
Test(head_sets, second_half_loss_reads_the_repeated_tokens) {
    fixture f;
    setup(&f, 5);
    const int N = f.pr.N, T = f.pr.T;
    hs_head_set_params p = hs_head_set_default_params();
    p.batch_rows = 8;
    p.second_half = 1;
    hs_err err = {0};
    float got[8], lp[8 * 64];
    cr_assert_eq(hs_head_set_metric(f.s, f.m, &f.pr, &p, NULL, got, &err), HS_OK, "%s", err.msg);
    int32_t mask[8 * 64], tg[8 * 64];
    for (int i = 0; i < N; i++)
        for (int t = 0; t < T; t++) {
            mask[i * T + t] = t < f.pr.lengths[i];
            tg[i * T + t] = t + 1 < f.pr.lengths[i] ? f.pr.tokens[i * T + t + 1] : -1;
        }
    hs_batch b = {.B = N, .T = T, .tokens = f.pr.tokens, .mask = mask, .targets = tg};
    hs_forward_params fp = hs_forward_default_params();
    fp.target_logprobs = lp;
    float *logits = malloc((size_t)N * hs_model_get_config(f.m)->n_vocab * sizeof(float));
    cr_assert_eq(hs_forward(f.s, &b, &fp, logits, &err), HS_OK, "%s", err.msg);
    for (int i = 0; i < N; i++) {
        const int n = (f.pr.lengths[i] - 1) / 2; /* [BOS] x1..xn x1..xn */
        double s = 0;
        for (int t = n + 1; t < 2 * n; t++) s -= lp[i * T + t];
        cr_assert_float_eq(got[i], (float)(s / (n - 1)), 1e-5, "prompt %d", i);
    }
    free(logits);
    /* prompts not of the [BOS] x x shape are refused */
    hs_prompts bad = f.pr;
    int32_t len2[8];
    memcpy(len2, f.pr.lengths, sizeof(int32_t) * N);
    len2[1] -= 1;
    bad.lengths = len2;
    cr_assert_eq(hs_head_set_metric(f.s, f.m, &bad, &p, NULL, got, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "prompt 1"), "%s", err.msg);
    teardown(&f);
}

/* The head_set_ablation experiment: its sets are the top_k of the ranking and
 * distinct random sets of other heads, and each set's per-prompt metric is
 * what hs_head_set_metric gives for that set (the driver's bookkeeping). */
Test(head_sets, the_experiment_writes_each_sets_metric, .timeout = 120) {
    char dir[] = "/tmp/hs_test_sets_XXXXXX", cfgp[256], out[256], model[1024];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cfgp, sizeof cfgp, "%s/c.yaml", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    hs_test_fixture_path(model, sizeof model, "models/llama_gqa");
    FILE *fc = fopen(cfgp, "w");
    cr_assert_not_null(fc);
    fprintf(fc,
            "model: %s\nseed: 7\nbatch_size: 8\noutput: %s\n"
            "dataset:\n  generator: induction\n  n: 10\n  seq_len: 6\n  token_min: 3\n  token_max: 300\n"
            "experiments:\n  - name: scores\n    type: head_scores\n    scores: [previous_token, olsson_induction]\n"
            "  - name: sets\n    type: head_set_ablation\n    importance: scores/olsson_induction\n    top_k: 3\n    random_sets: 4\n"
            "    mode: zero\n"
            "  - name: sets_rs\n    type: head_set_ablation\n    importance: scores/olsson_induction\n    top_k: 3\n"
            "    random_sets: 0\n    mode: resample\n",
            model, out);
    fclose(fc);
    hs_err err = {0};
    cr_assert_eq(hs_test_run_config(cfgp, NULL, 0, NULL, &err), HS_OK, "%s", err.msg);
    hs_test_check_with_h5py(out);
    hs_h5 *h;
    hs_h5_group *g;
    float *sets = NULL, *mp = NULL, *score = NULL;
    hs_h5_shape ss, ms, cs;
    cr_assert_eq(hs_h5_open_read(out, &h, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_group_open(h, "sets", &g, &err), HS_OK);
    cr_assert_eq(hs_h5_read_f32(g, "sets", &sets, &ss, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_f32(g, "metric_per_prompt", &mp, &ms, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_group_open(h, "scores", &g, &err), HS_OK);
    cr_assert_eq(hs_h5_read_f32(g, "olsson_induction", &score, &cs, &err), HS_OK, "%s", err.msg);
    cr_assert(ss.ndim == 3 && ss.dims[0] == 5 && ms.dims[0] == 10 && ms.dims[1] == 5);
    const int LH = (int)(ss.dims[1] * ss.dims[2]);
    /* set 0: the 3 highest scores; sets 1..4: 3 heads each, none of set 0's, not all alike */
    int n_top = 0;
    for (int k = 0; k < LH; k++) n_top += sets[k] != 0;
    cr_assert_eq(n_top, 3);
    for (int k = 0; k < LH; k++)
        for (int j = 0; j < LH; j++)
            if (sets[k] != 0 && sets[j] == 0) cr_assert_geq(score[k], score[j], "head %d outranks top head %d", j, k);
    int distinct = 0;
    for (int s = 1; s < 5; s++) {
        int n = 0, diff = 0;
        for (int k = 0; k < LH; k++) {
            n += sets[s * LH + k] != 0;
            cr_assert(!(sets[s * LH + k] != 0 && sets[k] != 0), "random set %d holds top head %d", s, k);
            diff |= sets[s * LH + k] != sets[LH + k];
        }
        cr_assert_eq(n, 3, "set %d has %d heads", s, n);
        distinct += diff;
    }
    cr_assert_geq(distinct, 2, "the random sets are all the same");
    fixture f;
    setup(&f, 10);
    hs_dataset_free(f.d); /* the run's prompts: the same generator, seed 7 */
    cr_assert_eq(hs_dataset_induction(hs_model_get_config(f.m), 10, 6, 3, 300, 7, &f.d, &err), HS_OK);
    f.pr = hs_dataset_prompts(f.d);
    for (int s = 0; s < 5; s++) {
        uint8_t set[256];
        float ref[10];
        for (int k = 0; k < LH; k++) set[k] = sets[s * LH + k] != 0;
        hs_head_set_params p = hs_head_set_default_params();
        p.batch_rows = 8;
        cr_assert_eq(hs_head_set_metric(f.s, f.m, &f.pr, &p, set, ref, &err), HS_OK, "%s", err.msg);
        for (int i = 0; i < 10; i++) cr_assert_float_eq(mp[i * 5 + s], ref[i], 1e-5, "set %d prompt %d", s, i);
    }
    /* the resample experiment: the top set with z from the run's seeded sources */
    float *mrs = NULL;
    hs_h5_shape rs;
    cr_assert_eq(hs_h5_group_open(h, "sets_rs", &g, &err), HS_OK);
    cr_assert_eq(hs_h5_read_f32(g, "metric_per_prompt", &mrs, &rs, &err), HS_OK, "%s", err.msg);
    cr_assert(rs.ndim == 2 && rs.dims[0] == 10 && rs.dims[1] == 1);
    int32_t src[10];
    uint8_t top[256];
    float ref[10];
    for (int k = 0; k < LH; k++) top[k] = sets[k] != 0;
    cr_assert_eq(hs_ablation_resample_sources(7, 10, 0, 10, src, &err), HS_OK, "%s", err.msg);
    hs_head_set_params p = hs_head_set_default_params();
    p.batch_rows = 8;
    p.mode = HS_ABLATE_RESAMPLE;
    p.resample_ref = &f.pr;
    p.resample_src = src;
    cr_assert_eq(hs_head_set_metric(f.s, f.m, &f.pr, &p, top, ref, &err), HS_OK, "%s", err.msg);
    for (int i = 0; i < 10; i++) cr_assert_float_eq(mrs[i], ref[i], 1e-5, "resample top set, prompt %d", i);
    free(mrs);
    teardown(&f);
    free(sets), free(mp), free(score);
    hs_h5_close(h);
    hs_test_remove_dir(dir);
}

/* A one-head set mean-ablated with per-template means is the single-head
 * ablation sweep's entry for that head (two ways of building the edits). */
Test(head_sets, template_means_match_the_single_head_sweep) {
    fixture f;
    setup(&f, 6);
    const hs_model_config *c = hs_model_get_config(f.m);
    const int L = c->n_layers, H = c->n_heads, N = f.pr.N, T = f.pr.T;
    int32_t tid[8];
    for (int i = 0; i < N; i++) tid[i] = i % 2;
    hs_err err = {0};
    float *means = malloc((size_t)2 * L * H * T * c->d_head * sizeof(float));
    cr_assert_eq(hs_ablation_mean_z_template(f.s, f.m, &f.pr, tid, 2, 8, means, &err), HS_OK, "%s", err.msg);
    hs_ablation_params ap = hs_ablation_default_params();
    ap.mode = HS_ABLATE_MEAN;
    ap.mean_z = means;
    ap.mean_template = tid;
    ap.n_templates = 2;
    ap.batch_rows = 8;
    float base[8], *delta = malloc((size_t)N * L * H * sizeof(float));
    cr_assert_eq(hs_head_ablation(f.s, f.m, &f.pr, &ap, base, delta, &err), HS_OK, "%s", err.msg);
    hs_head_set_params p = hs_head_set_default_params();
    p.mode = HS_ABLATE_MEAN;
    p.mean_z = means;
    p.mean_template = tid;
    p.n_templates = 2;
    p.batch_rows = 8;
    for (int k = 0; k < L * H; k += 5) {
        uint8_t set[256] = {0};
        float got[8];
        set[k] = 1;
        cr_assert_eq(hs_head_set_metric(f.s, f.m, &f.pr, &p, set, got, &err), HS_OK, "%s", err.msg);
        for (int i = 0; i < N; i++)
            cr_assert_float_eq(got[i], base[i] + delta[(int64_t)i * L * H + k], 1e-5, "head %d prompt %d", k, i);
    }
    tid[1] = 2; /* a template without a mean */
    float got[8];
    cr_assert_eq(hs_head_set_metric(f.s, f.m, &f.pr, &p, NULL, got, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "prompt 1 has template 2"), "%s", err.msg);
    free(means), free(delta);
    teardown(&f);
}

/* Resample (and patch, a resample with fixed sources): a one-head set equals
 * the single-head resample sweep's ablated metric, prompt by prompt, with
 * sources shorter and longer than their targets (the induction prompts are
 * cut to different lengths); a bad source is refused. */
Test(head_sets, resample_matches_the_single_head_sweep) {
    fixture f;
    setup(&f, 7);
    const hs_model_config *c = hs_model_get_config(f.m);
    const int L = c->n_layers, H = c->n_heads, N = f.pr.N;
    int32_t len[8], src[8];
    for (int i = 0; i < N; i++) len[i] = f.pr.T - (i * 3) % 6; /* uneven lengths */
    hs_prompts pr = f.pr;
    pr.lengths = len;
    hs_err err = {0};
    cr_assert_eq(hs_ablation_resample_sources(11, N, 0, N, src, &err), HS_OK, "%s", err.msg);
    hs_ablation_params ap = hs_ablation_default_params();
    ap.mode = HS_ABLATE_RESAMPLE;
    ap.resample_ref = &pr;
    ap.resample_src = src;
    ap.batch_rows = 8;
    float base[8], *delta = malloc((size_t)N * L * H * sizeof(float));
    cr_assert_eq(hs_head_ablation(f.s, f.m, &pr, &ap, base, delta, &err), HS_OK, "%s", err.msg);
    hs_head_set_params p = hs_head_set_default_params();
    p.mode = HS_ABLATE_RESAMPLE;
    p.resample_ref = &pr;
    p.resample_src = src;
    p.batch_rows = 3; /* batches that do not line up with the sweep's chunks */
    for (int k = 1; k < L * H; k += 4) {
        uint8_t set[256] = {0};
        float got[8];
        set[k] = 1;
        cr_assert_eq(hs_head_set_metric(f.s, f.m, &pr, &p, set, got, &err), HS_OK, "%s", err.msg);
        for (int i = 0; i < N; i++)
            cr_assert_float_eq(got[i], base[i] + delta[(int64_t)i * L * H + k], 1e-5, "head %d prompt %d", k, i);
    }
    /* a two-head set differs from the unedited model (the edits land) */
    uint8_t two[256] = {0};
    two[0] = two[L * H - 1] = 1;
    float got2[8];
    cr_assert_eq(hs_head_set_metric(f.s, f.m, &pr, &p, two, got2, &err), HS_OK, "%s", err.msg);
    int moved = 0;
    for (int i = 0; i < N; i++) moved |= fabsf(got2[i] - base[i]) > 1e-6f;
    cr_assert(moved, "resampling two heads changed no prompt's loss");
    uint8_t none[256] = {0}; /* an empty set is the unedited model */
    cr_assert_eq(hs_head_set_metric(f.s, f.m, &pr, &p, none, got2, &err), HS_OK, "%s", err.msg);
    for (int i = 0; i < N; i++) cr_assert_float_eq(got2[i], base[i], 1e-6, "empty set, prompt %d", i);
    src[2] = N;
    cr_assert_eq(hs_head_set_metric(f.s, f.m, &pr, &p, two, got2, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "prompt 2 has resample source"), "%s", err.msg);
    free(delta);
    teardown(&f);
}

/* ---- needle_recall: greedy generation under the ablation -------------------------- */

/* The retrieval fixture's needle prompts (transformers' greedy tokens in it). */
typedef struct {
    hs_model *m;
    hs_backend *be;
    hs_session *s;
    hs_st_file *ref;
    hs_prompts pr;
    const int32_t *ns, *nl, *gen;
    int G;
} needles;

static void needles_init(needles *n, int session_T_extra) {
    hs_err err = {0};
    memset(n, 0, sizeof *n);
    hs_test_load_fixture("llama_gqa", "retrieval", &n->m, &n->ref);
    const hs_test_needles nd = hs_test_ref_needles(n->ref);
    n->pr = nd.pr, n->ns = nd.ns, n->nl = nd.nl, n->gen = nd.gen, n->G = nd.G;
    cr_assert(n->pr.N <= 8 && n->pr.T + n->G <= 256 && n->G <= 64, "the tests' fixed arrays hold the fixture");
    cr_assert_eq(hs_backend_cpu_init(NULL, &n->be, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_session_init(n->be, n->m, 2, n->pr.T + session_T_extra, &n->s, &err), HS_OK, "%s", err.msg);
}

static void needles_free(needles *n) {
    hs_session_free(n->s);
    hs_backend_free(n->be);
    hs_st_close(n->ref);
    hs_model_free(n->m);
}

static hs_head_set_params recall_params(const needles *n, hs_ablate_mode mode) {
    hs_head_set_params p = hs_head_set_default_params();
    p.metric = HS_METRIC_NEEDLE_RECALL;
    p.mode = mode;
    p.scale = 0.25f;
    p.needle_start = n->ns, p.needle_len = n->nl, p.n_generate = n->G;
    p.batch_rows = 2; /* both prompts in one batch: the shorter right-padded */
    return p;
}

/* Unablated: the recall of transformers' own greedy answer (the fixture's). */
Test(head_sets, needle_recall_unablated_is_transformers_answers) {
    needles n;
    needles_init(&n, 0);
    hs_err err = {0};
    hs_head_set_params p = recall_params(&n, HS_ABLATE_ZERO);
    float got[8];
    cr_assert_eq(hs_head_set_metric(n.s, n.m, &n.pr, &p, NULL, got, &err), HS_OK, "%s", err.msg);
    int any = 0;
    for (int i = 0; i < n.pr.N; i++) {
        const float want = hs_test_token_recall(n.pr.tokens + (int64_t)i * n.pr.T + n.ns[i], n.nl[i], n.gen + (int64_t)i * n.G, n.G);
        cr_assert_eq(got[i], want, "prompt %d: recall %g, of transformers' answer %g", i, got[i], want);
        any |= want > 0;
    }
    cr_assert(any, "no answer recalls the needle: the fixture tests nothing");
    needles_free(&n);
}

/* Ablated: the same as greedy decoding each prompt alone with whole forwards
 * (no cache, no padding) under the same edits, for zero, scale and uniform
 * sets; and the ablation changes some answer. */
Test(head_sets, needle_recall_ablated_is_whole_forward_decoding) {
    needles n;
    needles_init(&n, 0);
    hs_err err = {0};
    const hs_model_config *c = hs_model_get_config(n.m);
    const int L = c->n_layers, H = c->n_heads, V = c->n_vocab;
    cr_assert(L * H <= 256);
    hs_session *big;
    cr_assert_eq(hs_session_init(n.be, n.m, 1, n.pr.T + n.G, &big, &err), HS_OK, "%s", err.msg);
    uint8_t set[256] = {0};
    for (int h = 0; h < H; h++) set[(L - 1) * H + h] = 1; /* the last layer's heads, and one more */
    set[0] = 1;
    const hs_ablate_mode modes[3] = {HS_ABLATE_ZERO, HS_ABLATE_SCALE, HS_ABLATE_UNIFORM};
    int changed = 0;
    float *logits = malloc(sizeof(float) * V);
    cr_assert(logits);
    for (int mi = 0; mi < 3; mi++) {
        hs_head_set_params p = recall_params(&n, modes[mi]);
        float got[8];
        cr_assert_eq(hs_head_set_metric(n.s, n.m, &n.pr, &p, set, got, &err), HS_OK, "%s", err.msg);
        for (int i = 0; i < n.pr.N; i++) {
            int32_t ctx[256], gen[64];
            int len = n.pr.lengths[i];
            memcpy(ctx, n.pr.tokens + (int64_t)i * n.pr.T, (size_t)len * sizeof *ctx);
            hs_z_edit e[256];
            int ne = 0;
            for (int k = 0; k < L * H; k++)
                if (set[k])
                    e[ne++] = (hs_z_edit){.row = 0, .layer = k / H, .head = k % H, .pos = -1, .scale = 0.25f,
                                          .mode = mi == 0 ? HS_EDIT_ZERO : mi == 1 ? HS_EDIT_SCALE : HS_EDIT_UNIFORM};
            for (int g = 0; g < n.G; g++) {
                hs_batch b = {.B = 1, .T = len, .tokens = ctx};
                hs_forward_params fp = hs_forward_default_params();
                fp.edits = e, fp.n_edits = ne;
                cr_assert_eq(hs_forward(big, &b, &fp, logits, &err), HS_OK, "%s", err.msg);
                int best = 0;
                for (int v = 1; v < V; v++)
                    if (logits[v] > logits[best]) best = v;
                gen[g] = best, ctx[len++] = best;
            }
            const float want = hs_test_token_recall(n.pr.tokens + (int64_t)i * n.pr.T + n.ns[i], n.nl[i], gen, n.G);
            cr_assert_eq(got[i], want, "mode %d prompt %d: recall %g, whole-forward decoding %g", mi, i, got[i], want);
            changed |= memcmp(gen, n.gen + (int64_t)i * n.G, (size_t)n.G * sizeof *gen) != 0;
        }
    }
    cr_assert(changed, "no ablation changed an answer: the comparison tests little");
    free(logits);
    hs_session_free(big);
    needles_free(&n);
}

Test(head_sets, needle_recall_refusals_name_the_problem) {
    needles n;
    needles_init(&n, 0);
    hs_err err = {0};
    float got[8];
    hs_head_set_params p = recall_params(&n, HS_ABLATE_MEAN); /* no means needed: the mode itself is refused */
    cr_assert_eq(hs_head_set_metric(n.s, n.m, &n.pr, &p, NULL, got, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "modes zero, scale and uniform"), "%s", err.msg);
    p = recall_params(&n, HS_ABLATE_UNIFORM);
    int32_t bad[8];
    memcpy(bad, n.ns, (size_t)n.pr.N * sizeof *bad);
    bad[1] = n.pr.lengths[1];
    p.needle_start = bad;
    cr_assert_eq(hs_head_set_metric(n.s, n.m, &n.pr, &p, NULL, got, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "prompt 1: needle"), "%s", err.msg);
    p = recall_params(&n, HS_ABLATE_UNIFORM);
    p.n_generate = 0;
    cr_assert_eq(hs_head_set_metric(n.s, n.m, &n.pr, &p, NULL, got, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "n_generate >= 1 (0)"), "%s", err.msg);
    /* the one-forward experiments refuse it */
    hs_ablation_params ap = hs_ablation_default_params();
    ap.metric = HS_METRIC_NEEDLE_RECALL;
    float base[8], delta[8 * 64];
    cr_assert_eq(hs_head_ablation(n.s, n.m, &n.pr, &ap, base, delta, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "head sets only"), "%s", err.msg);
    needles_free(&n);
}

/* A run scores needle recall on prompts with needle spans and no answers (the
 * metric reads none), and refuses, before any work, a dataset without spans. */
Test(head_sets, needle_recall_runs_without_answers, .timeout = 120) {
    char dir[] = "/tmp/hs_test_recall_XXXXXX", cfgp[256], out[256], data[256], bare[256], model[1024];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cfgp, sizeof cfgp, "%s/c.yaml", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    snprintf(data, sizeof data, "%s/d.jsonl", dir);
    snprintf(bare, sizeof bare, "%s/bare.jsonl", dir);
    hs_test_fixture_path(model, sizeof model, "models/llama_gqa");
    FILE *fd = fopen(data, "w"), *fb = fopen(bare, "w");
    cr_assert(fd && fb);
    hs_test_rng r;
    hs_test_rng_seed(&r, 9);
    for (int i = 0; i < 4; i++) { /* 12 tokens, the needle [2, 5) begun again at the end */
        int t[12];
        for (int k = 0; k < 12; k++) t[k] = 3 + (int)(hs_test_rng_u64(&r) % 290);
        t[10] = t[2], t[11] = t[3];
        for (int f = 0; f < 2; f++) {
            FILE *o = f ? fb : fd;
            fprintf(o, "{\"tokens\": [");
            for (int k = 0; k < 12; k++) fprintf(o, "%s%d", k ? ", " : "", t[k]);
            fprintf(o, f ? "]}\n" : "], \"needle_start\": 2, \"needle_len\": 3}\n");
        }
    }
    fclose(fd), fclose(fb);
    for (int f = 0; f < 2; f++) {
        FILE *fc = fopen(cfgp, "w");
        cr_assert_not_null(fc);
        fprintf(fc,
                "model: %s\nseed: 3\nbatch_size: 4\noutput: %s\ndataset:\n  file: %s\nexperiments:\n"
                "  - name: scores\n    type: head_scores\n    scores: [previous_token]\n"
                "  - name: rec\n    type: head_set_ablation\n    importance: scores/previous_token\n    top_k: 2\n"
                "    random_sets: 1\n    metric: needle_recall\n    mode: uniform\n",
                model, f ? "/dev/null/never.h5" : out, f ? bare : data); /* refused before it writes */
        fclose(fc);
        hs_err err = {0};
        if (f) {
            cr_assert_eq(hs_test_run_config(cfgp, NULL, 0, NULL, &err), HS_ERR_INVALID_ARG);
            cr_assert(strstr(err.msg, "experiment 'rec' needs needle spans"), "%s", err.msg);
            continue;
        }
        cr_assert_eq(hs_test_run_config(cfgp, NULL, 0, NULL, &err), HS_OK, "%s", err.msg);
        hs_test_check_with_h5py(out); /* the answers' layout too */
        hs_h5 *h;
        hs_h5_group *g;
        float *mp = NULL;
        hs_h5_shape ms;
        cr_assert_eq(hs_h5_open_read(out, &h, &err), HS_OK, "%s", err.msg);
        cr_assert_eq(hs_h5_group_open(h, "rec", &g, &err), HS_OK, "%s", err.msg);
        cr_assert_eq(hs_h5_read_f32(g, "metric_per_prompt", &mp, &ms, &err), HS_OK, "%s", err.msg);
        cr_assert(ms.ndim == 2 && ms.dims[0] == 4 && ms.dims[1] == 2);
        for (int i = 0; i < 8; i++) cr_assert(mp[i] >= 0.0f && mp[i] <= 1.0f, "recall %g outside [0, 1]", mp[i]);
        free(mp);
        hs_h5_close(h);
    }
    hs_test_remove_dir(dir);
}
