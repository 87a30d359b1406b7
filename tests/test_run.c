/* `headsweep run` end to end on a tiny fixture model: the result file holds
 * what the experiments compute directly, with provenance and the resolved
 * config; existing outputs are refused; an interrupted run leaves no result
 * file, only the journal it resumes from (resume itself: test_shard.c). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "headsweep/hs_ablation.h"
#include "headsweep/hs_backend.h"
#include "headsweep/hs_config.h"
#include "headsweep/hs_dataset.h"
#include "headsweep/hs_eap.h"
#include "headsweep/hs_h5.h"
#include "headsweep/hs_head_grad.h"
#include "headsweep/hs_head_scores.h"
#include "headsweep/hs_run.h"
#include "headsweep/hs_safetensors.h"
#include "hs_testutil.h"

static char dir[64];

static void make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/hs_test_run_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void write_config(const char *path, const char *out, const char *extra) {
    char model[1024];
    hs_test_fixture_path(model, sizeof model, "models/llama_gqa");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "model: %s\n"
            "seed: 7\n"
            "batch_size: 12\n"
            "output: %s\n"
            "dataset:\n  generator: induction\n  n: 5\n  seq_len: 4\n  token_min: 3\n  token_max: 300\n"
            "experiments:\n"
            "  - name: abl\n    type: head_ablation\n    metric: loss\n    whole_layers: true\n    all_but_one: true\n"
            "  - name: prune\n    type: pruning_curve\n    importance: abl\n    step: 0.25\n"
            "  - name: scores\n    type: head_scores\n"
            "  - name: cap\n    type: capture\n    hooks: [z, pattern, mlp_pre, mlp_pre_linear, mlp_post]\n"
            "    layers: [1]\n    prompts: [0, 3]\n%s",
            model, out, extra ? extra : "");
    fclose(f);
}

/* A JSONL dataset of a fixture's clean/corrupt pairs (tokens, corrupt, lengths, answer, distractor). */
static void write_pairs(const char *path, hs_st_file *st) {
    const hs_st_tensor *tok = hs_st_find(st, "tokens");
    const int N = (int)tok->shape[0], T = (int)tok->shape[1];
    const int32_t *tk = tok->data, *ct = hs_st_find(st, "corrupt")->data, *len = hs_st_find(st, "lengths")->data,
                  *ans = hs_st_find(st, "answer")->data, *dis = hs_st_find(st, "distractor")->data;
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    for (int i = 0; i < N; i++) {
        fprintf(f, "{\"tokens\": [");
        for (int t = 0; t < len[i]; t++) fprintf(f, "%s%d", t ? ", " : "", tk[i * T + t]);
        fprintf(f, "], \"corrupt\": [");
        for (int t = 0; t < len[i]; t++) fprintf(f, "%s%d", t ? ", " : "", ct[i * T + t]);
        fprintf(f, "], \"answer\": %d, \"distractor\": %d}\n", ans[i], dis[i]);
    }
    fclose(f);
}

static hs_config *load(const char *path) {
    hs_config *c = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_config_load(path, NULL, 0, &c, &err), HS_OK, "%s", err.msg);
    return c;
}

static float *read_f32(hs_h5 *f, const char *group, const char *name, hs_h5_shape *shape) {
    hs_h5_group *g;
    hs_err err = {0};
    float *d = NULL;
    cr_assert_eq(hs_h5_group_open(f, group, &g, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_f32(g, name, &d, shape, &err), HS_OK, "%s/%s: %s", group, name, err.msg);
    return d;
}

Test(run, results_match_direct_computation, .timeout = 300) {
    make_dir();
    char cfgp[256], out[256];
    snprintf(cfgp, sizeof cfgp, "%s/c.yaml", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    write_config(cfgp, out, NULL);
    hs_config *cfg = load(cfgp);
    char *text = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_config_resolved_yaml(cfg, &text, &err), HS_OK);
    cr_assert_eq(hs_run(cfg, text, NULL, &err), HS_OK, "%s", err.msg);

    /* the same computation, directly */
    hs_model *m = NULL;
    hs_backend *be = NULL;
    hs_session *s = NULL;
    hs_dataset *d = NULL;
    cr_assert_eq(hs_model_load(cfg->model, &m, &err), HS_OK);
    const hs_model_config *c = hs_model_get_config(m);
    const int L = c->n_layers, H = c->n_heads;
    cr_assert_eq(hs_dataset_induction(c, 5, 4, 3, 300, 7, &d, &err), HS_OK);
    hs_prompts pr = hs_dataset_prompts(d);
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK);
    cr_assert_eq(hs_session_init(be, m, 12, pr.T, &s, &err), HS_OK);
    float base[5], delta[5 * 3 * 6], scores[HS_SCORE_COUNT * 3 * 6];
    hs_ablation_params ap = hs_ablation_default_params();
    ap.batch_rows = 12;
    cr_assert_eq(hs_head_ablation(s, m, &pr, &ap, base, delta, &err), HS_OK);
    cr_assert_eq(hs_head_scores(s, m, &pr, 0xf, 12, scores, &err), HS_OK);

    hs_h5 *f = NULL;
    cr_assert_eq(hs_h5_open_read(out, &f, &err), HS_OK, "%s", err.msg);
    hs_h5_shape sh;
    float *fd = read_f32(f, "abl", "delta", &sh);
    cr_assert_eq(sh.ndim, 3);
    cr_assert_eq(sh.dims[0] * sh.dims[1] * sh.dims[2], 5 * L * H);
    cr_assert_str_eq(sh.dim_names[1], "layer");
    for (int i = 0; i < 5 * L * H; i++) cr_assert_eq(fd[i], delta[i], "delta %d", i);
    free(fd);
    float *dl = read_f32(f, "abl", "delta_layer", &sh); /* values: test_ablation */
    cr_assert(sh.ndim == 2 && sh.dims[0] == 5 && sh.dims[1] == L);
    free(dl);
    dl = read_f32(f, "abl", "delta_all_but_one_mean", &sh);
    cr_assert(sh.ndim == 2 && sh.dims[0] == L && sh.dims[1] == H);
    free(dl);
    float *fs = read_f32(f, "scores", "olsson_induction", &sh);
    for (int i = 0; i < L * H; i++) cr_assert_eq(fs[i], scores[3 * L * H + i]);
    free(fs);
    /* pruning: step 0 is the unpruned mean loss; 25% steps; every mask prunes n heads */
    float *metric = read_f32(f, "prune", "metric", &sh), *masks = read_f32(f, "prune", "masks", NULL),
          *frac = read_f32(f, "prune", "step", NULL);
    cr_assert_eq(sh.dims[0], 5);
    double mb = 0;
    for (int i = 0; i < 5; i++) mb += base[i] / 5.0;
    cr_assert_float_eq(metric[0], mb, 1e-5);
    for (int st = 0; st < 5; st++) {
        int pruned = 0;
        for (int k = 0; k < L * H; k++) pruned += masks[st * L * H + k] == 0.0f;
        cr_assert_eq(pruned, (int)floor(frac[st] * L * H + 0.5), "step %d", st);
    }
    cr_assert_float_eq(frac[4], 1.0f, 0);
    free(metric), free(masks), free(frac);
    float *cz = read_f32(f, "cap", "blocks.1.attn.hook_z", &sh);
    cr_assert_eq(sh.dims[0], 2);
    cr_assert_eq(sh.dims[1], pr.T);
    free(cz);
    /* the MLP's hooks under TransformerLens names, [prompt, position, d_mlp], post = silu(pre) * pre_linear
     * (test_conformance checks each against transformers) */
    hs_h5_shape sp;
    float *pre = read_f32(f, "cap", "blocks.1.mlp.hook_pre", &sp),
          *lin = read_f32(f, "cap", "blocks.1.mlp.hook_pre_linear", NULL),
          *post = read_f32(f, "cap", "blocks.1.mlp.hook_post", NULL);
    cr_assert(sp.ndim == 3 && sp.dims[0] == 2 && sp.dims[1] == pr.T && sp.dims[2] == hs_model_get_config(m)->d_mlp);
    for (int64_t i = 0; i < sp.dims[0] * sp.dims[1] * sp.dims[2]; i++)
        cr_assert_float_eq(post[i], pre[i] / (1.0f + expf(-pre[i])) * lin[i], 1e-5 * (1.0 + fabsf(post[i])), "%lld",
                           (long long)i);
    free(pre), free(lin), free(post);
    hs_h5_group *root;
    char *stored = NULL;
    cr_assert_eq(hs_h5_group_open(f, "/", &root, &err), HS_OK);
    cr_assert_eq(hs_h5_read_attr_str(root, NULL, "config", &stored, &err), HS_OK, "%s", err.msg);
    cr_assert_str_eq(stored, text);
    free(stored);
    hs_h5_close(f);

    hs_test_check_with_h5py(out);

    /* the output exists now: a second run is refused and leaves it intact */
    hs_err e2 = {0};
    cr_assert_neq(hs_run(cfg, text, NULL, &e2), HS_OK);
    cr_assert(strstr(e2.msg, "--overwrite"), "%s", e2.msg);
    cr_assert_eq(access(out, R_OK), 0);

    free(text);
    hs_config_free(cfg);
    hs_session_free(s);
    hs_backend_free(be);
    hs_dataset_free(d);
    hs_model_free(m);
    hs_test_remove_dir(dir);
}

/* head_importance through `headsweep run`: the file holds the library's
 * per-prompt gradients (hs_head_grad, checked against autograd in
 * test_head_grad), Michel's normalised importance, and a pruning curve
 * ranked by it prunes the least important heads first. The run's backward
 * reruns the layers (backward_memory_mb: 0) and the library's keeps the
 * activations: the same bits. */
Test(run, gradient_importance_ranks_a_pruning_curve, .timeout = 300) {
    make_dir();
    char cfgp[256], out[256];
    snprintf(cfgp, sizeof cfgp, "%s/c.yaml", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    write_config(cfgp, out,
                 "  - name: michel\n    type: head_importance\n"
                 "  - name: prune_grad\n    type: pruning_curve\n    importance: michel\n    step: 0.25\n"
                 "  - name: prune_rc\n    type: pruning_curve\n    importance: michel\n    step: 0.25\n"
                 "    recompute: true\n");
    hs_config *cfg = load(cfgp);
    cfg->backward_memory_mb = 0; /* the run reruns every layer; the library below keeps the activations */
    hs_err err = {0};
    char *text = NULL;
    cr_assert_eq(hs_config_resolved_yaml(cfg, &text, &err), HS_OK);
    cr_assert_eq(hs_run(cfg, text, NULL, &err), HS_OK, "%s", err.msg);
    free(text);

    hs_model *m = NULL;
    hs_backend *be = NULL;
    hs_session *s = NULL;
    hs_dataset *d = NULL;
    cr_assert_eq(hs_model_load(cfg->model, &m, &err), HS_OK);
    const hs_model_config *c = hs_model_get_config(m);
    const int L = c->n_layers, H = c->n_heads, LH = L * H;
    cr_assert_eq(hs_dataset_induction(c, 5, 4, 3, 300, 7, &d, &err), HS_OK);
    hs_prompts pr = hs_dataset_prompts(d);
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK);
    cr_assert_eq(hs_session_init(be, m, 12, pr.T, &s, &err), HS_OK);
    float *grad = malloc((size_t)5 * LH * sizeof(float)), *want = malloc((size_t)LH * sizeof(float));
    int32_t tokens[5];
    cr_assert_eq(hs_head_grad_per_prompt(s, &pr, NULL, 12, grad, &err), HS_OK, "%s", err.msg);
    for (int i = 0; i < 5; i++) tokens[i] = pr.lengths[i] - 1;
    hs_head_importance(grad, tokens, 5, L, H, NULL, want);

    hs_h5 *f = NULL;
    hs_h5_shape sh;
    cr_assert_eq(hs_h5_open_read(out, &f, &err), HS_OK, "%s", err.msg);
    float *fg = read_f32(f, "michel", "grad", &sh), *imp = read_f32(f, "michel", "importance", NULL);
    cr_assert(sh.ndim == 3 && sh.dims[0] == 5 && sh.dims[1] == L && sh.dims[2] == H);
    for (int i = 0; i < 5 * LH; i++) cr_assert_eq(fg[i], grad[i], "grad %d", i);
    for (int l = 0; l < L; l++) {
        double ss = 0;
        for (int h = 0; h < H; h++) {
            ss += (double)imp[l * H + h] * imp[l * H + h];
            cr_assert_eq(imp[l * H + h], want[l * H + h], "importance [%d, %d]", l, h);
        }
        cr_assert(fabs(ss - 1.0) < 1e-5, "layer %d: |importance| = %g, want 1", l, sqrt(ss));
    }
    /* step 1 (25% of the heads) masks exactly the least important ones */
    float *masks = read_f32(f, "prune_grad", "masks", NULL);
    const int n1 = (int)floor(0.25 * LH + 0.5);
    float cut = -1;
    for (int k = 0; k < LH; k++)
        if (masks[LH + k] == 0.0f && imp[k] > cut) cut = imp[k];
    for (int k = 0; k < LH; k++)
        cr_assert(masks[LH + k] == 0.0f || imp[k] >= cut, "head %d (importance %g) kept, a more important one pruned", k,
                  imp[k]);
    int pruned = 0;
    for (int k = 0; k < LH; k++) pruned += masks[LH + k] == 0.0f;
    cr_assert_eq(pruned, n1);
    /* recompute: step 1 as without; then each step keeps the last step's
     * pruned heads and adds the least important of the rest by the gradient
     * importance recomputed with those masked */
    float *rc = read_f32(f, "prune_rc", "masks", NULL), *imp_s = malloc((size_t)LH * sizeof(float));
    cr_assert(!memcmp(rc, masks, 2 * (size_t)LH * sizeof(float)), "steps 0 and 1 differ from the curve without recompute");
    for (int st = 2; st < 5; st++) {
        const float *prev = rc + (int64_t)(st - 1) * LH, *cur = rc + (int64_t)st * LH;
        cr_assert_eq(hs_head_grad_per_prompt(s, &pr, prev, 12, grad, &err), HS_OK, "%s", err.msg);
        hs_head_importance(grad, tokens, 5, L, H, NULL, imp_s);
        float cut_s = -INFINITY;
        int n_s = 0;
        for (int k = 0; k < LH; k++) {
            cr_assert(prev[k] != 0.0f || cur[k] == 0.0f, "step %d: head %d put back", st, k);
            if (cur[k] == 0.0f && prev[k] != 0.0f && imp_s[k] > cut_s) cut_s = imp_s[k];
            n_s += cur[k] == 0.0f;
        }
        for (int k = 0; k < LH; k++)
            cr_assert(cur[k] == 0.0f || imp_s[k] >= cut_s, "step %d: head %d (recomputed importance %g) kept over one of %g",
                      st, k, imp_s[k], cut_s);
        cr_assert_eq(n_s, (int)floor(fmin(1.0, 0.25 * st) * LH + 0.5), "step %d", st);
    }
    hs_h5_group *gr;
    int64_t rcv = 0;
    cr_assert_eq(hs_h5_group_open(f, "prune_rc", &gr, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_attr_int(gr, NULL, "recompute", &rcv, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(rcv, 1);
    free(rc), free(imp_s);
    free(masks), free(fg), free(imp), free(grad), free(want);
    hs_h5_close(f);
    hs_test_check_with_h5py(out);
    hs_config_free(cfg);
    hs_session_free(s);
    hs_backend_free(be);
    hs_dataset_free(d);
    hs_model_free(m);
    hs_test_remove_dir(dir);
}

static int stop_at_second(void *user, const char *exp, int done, int total) {
    int *calls = user;
    return ++*calls >= 2;
}

/* A fresh directory holding c.yaml (write_config's experiments, out.h5), loaded. */
static hs_config *default_config(void) {
    make_dir();
    char cfgp[256], out[256];
    snprintf(cfgp, sizeof cfgp, "%s/c.yaml", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    write_config(cfgp, out, NULL);
    return load(cfgp);
}

Test(run, interrupted_run_leaves_only_its_journal) {
    hs_config *cfg = default_config();
    int calls = 0;
    hs_run_params rp = hs_run_default_params();
    rp.progress = stop_at_second;
    rp.progress_user = &calls;
    hs_err err = {0};
    cr_assert_eq(hs_run(cfg, "x", &rp, &err), HS_ERR_INTERRUPTED, "%s", err.msg);
    cr_assert(strstr(err.msg, "interrupted"), "%s", err.msg);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "test \"$(ls -A %s | tr '\\n' ' ')\" = \"c.yaml out.h5.journal \"", dir);
    cr_assert_eq(system(cmd), 0, "files left behind in %s", dir);
    hs_config_free(cfg);
    hs_test_remove_dir(dir);
}

typedef struct {
    char exp[8][32];
    int first_done[8], last_done[8], last_total[8], n_exp;
    int scores[8], n_scores; /* the scores experiment's reports, in order */
} progress_log;

static int log_progress(void *user, const char *exp, int done, int total) {
    progress_log *g = user;
    int k = 0;
    while (k < g->n_exp && strcmp(g->exp[k], exp)) k++;
    if (k == g->n_exp && k < 8) snprintf(g->exp[g->n_exp++], sizeof g->exp[0], "%s", exp), g->first_done[k] = done;
    if (k < 8) g->last_done[k] = done, g->last_total[k] = total;
    if (!strcmp(exp, "scores") && g->n_scores < 8) g->scores[g->n_scores++] = done;
    return 0;
}

/* Each experiment's progress starts with a report of 0 units done, before
 * its first unit runs: a caller times the experiment from there (the CLI's
 * elapsed time and ETA). It ends with all units done. head_scores has one
 * unit here, which checks for a stop once, at its end: so its reports are
 * the start (0), that check (0) and the completion (1); without the start
 * report a one-unit experiment read "0s elapsed" however long it ran. */
Test(run, progress_reports_each_experiment_from_its_start) {
    hs_config *cfg = default_config();
    progress_log g = {0};
    hs_run_params rp = hs_run_default_params();
    rp.progress = log_progress;
    rp.progress_user = &g;
    hs_err err = {0};
    cr_assert_eq(hs_run(cfg, "x", &rp, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(g.n_exp, cfg->n_experiments);
    for (int k = 0; k < g.n_exp; k++) {
        cr_assert_eq(g.first_done[k], 0, "%s: first report at %d units done", g.exp[k], g.first_done[k]);
        cr_assert(g.last_total[k] > 0 && g.last_done[k] == g.last_total[k], "%s: last report %d/%d", g.exp[k],
                  g.last_done[k], g.last_total[k]);
    }
    cr_assert(g.n_scores == 3 && g.scores[0] == 0 && g.scores[1] == 0 && g.scores[2] == 1,
              "scores: %d reports (%d, %d, %d), expected 0 (start), 0 (the unit's check), 1 (done)", g.n_scores,
              g.scores[0], g.scores[1], g.scores[2]);
    hs_config_free(cfg);
    hs_test_remove_dir(dir);
}

Test(run, unimplemented_options_are_refused_up_front) {
    make_dir();
    char cfgp[256], out[256];
    snprintf(cfgp, sizeof cfgp, "%s/c.yaml", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    write_config(cfgp, out, "  - name: few\n    type: head_scores\n    layers: [1]\n");
    hs_config *cfg = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_config_load(cfgp, NULL, 0, &cfg, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_run(cfg, "x", NULL, &err), HS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "'few'") && strstr(err.msg, "subset of layers"), "%s", err.msg);
    cr_assert_neq(access(out, F_OK), 0);
    hs_config_free(cfg);
    /* direct logit attribution of a metric that is not linear in the residual */
    write_config(cfgp, out, "  - name: dla\n    type: direct_logit_attribution\n    metric: loss\n");
    cr_assert_eq(hs_config_load(cfgp, NULL, 0, &cfg, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_run(cfg, "x", NULL, &err), HS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "'dla'") && strstr(err.msg, "metric logit_diff"), "%s", err.msg);
    cr_assert_neq(access(out, F_OK), 0);
    hs_config_free(cfg);
    /* recompute needs a gradient importance to recompute: refused at load, naming the key */
    const char *sets[] = {"experiments.prune.recompute=true"};
    cr_assert_neq(hs_config_load(cfgp, sets, 1, &cfg, &err), HS_OK);
    cr_assert(strstr(err.msg, "recompute") && strstr(err.msg, "head_importance"), "%s", err.msg);
    hs_test_remove_dir(dir);
}

/* Without a GPU, device: all and device: cuda:0 fail before any work, saying why (no device, a
 * driver the runtime cannot use, or a build without CUDA), and write nothing. */
Test(run, gpu_devices_without_a_gpu_say_why) {
    if (hs_backend_cuda_device_count() > 0) cr_skip_test("a CUDA device is present: this checks a machine without one");
    make_dir();
    char cfgp[256], out[256];
    snprintf(cfgp, sizeof cfgp, "%s/c.yaml", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    write_config(cfgp, out, NULL);
    const char *sets[2][1] = {{"device=all"}, {"device=cuda:0"}};
    const char *want[2] = {"device: all: no CUDA device (cuda:0: ", "cuda:0: "};
    for (int i = 0; i < 2; i++) {
        hs_config *cfg = NULL;
        hs_err err = {0};
        cr_assert_eq(hs_config_load(cfgp, sets[i], 1, &cfg, &err), HS_OK, "%s", err.msg);
        cr_assert_eq(hs_run(cfg, "x", NULL, &err), HS_ERR_DEVICE, "%s: %s", sets[i][0], err.msg);
        cr_log_info("%s: %s", sets[i][0], err.msg);
        const char *why = strstr(err.msg, want[i]);
        cr_assert(why == err.msg && strlen(why) > strlen(want[i]) + 3, "%s: '%s' does not start with '%s' and a reason",
                  sets[i][0], err.msg, want[i]);
        cr_assert_neq(access(out, F_OK), 0);
        hs_config_free(cfg);
    }
    hs_test_remove_dir(dir);
}

/* The CUDA library versions a GPU run records (cuda_version); reading them
 * needs no GPU. */
Test(run, cuda_versions_name_the_libraries) {
    char v[160], drv[32];
    hs_backend_cuda_versions(v, sizeof v);
#ifdef HS_HAVE_CUDA
    int rt[2], blas[3];
    cr_assert_eq(sscanf(v, "CUDA runtime %d.%d, driver %31[^,], cuBLAS %d.%d.%d", &rt[0], &rt[1], drv, &blas[0], &blas[1],
                        &blas[2]),
                 6, "'%s'", v);
    cr_assert(rt[0] >= 11 && blas[0] >= 11, "'%s'", v);
    if (hs_backend_cuda_device_count() > 0) cr_assert_str_neq(drv, "none", "'%s' with a GPU present", v);
#else
    (void)drv;
    cr_assert_str_eq(v, "", "a build without CUDA reports '%s'", v);
#endif
}

/* activation_patching through `headsweep run` on a JSONL file of token ids
 * (the patching fixture's prompts): the result file holds transformers'
 * numbers, and the normalised map is (mean patched - mean corrupt) /
 * (mean clean - mean corrupt). The same experiment with method attribution,
 * in the same run, holds autograd's first-order estimates (the attribution
 * fixture, built on the same prompts). */
Test(run, activation_patching_matches_transformers) {
    make_dir();
    char ref[1024], model[1024], jsonl[256], cfgp[256], out[256];
    hs_test_fixture_path(ref, sizeof ref, "ref/gpt2_patching.safetensors");
    hs_test_fixture_path(model, sizeof model, "models/gpt2");
    snprintf(jsonl, sizeof jsonl, "%s/p.jsonl", dir);
    snprintf(cfgp, sizeof cfgp, "%s/c.yaml", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    hs_st_file *st = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_st_open(ref, &st, &err), HS_OK, "%s", err.msg);
    const hs_st_tensor *tok = hs_st_find(st, "tokens");
    const int N = (int)tok->shape[0], T = (int)tok->shape[1];
    write_pairs(jsonl, st);
    FILE *f;
    f = fopen(cfgp, "w");
    fprintf(f, "model: %s\noutput: %s\nbatch_size: 16\ndataset:\n  file: %s\nexperiments:\n"
               "  - name: patch\n    type: activation_patching\n    metric: logit_diff\n"
               "    targets: [z_all_pos, resid_pre, attn_out, mlp_out, q_all_pos, k_all_pos, v_all_pos, path_logits]\n"
               "  - name: atp\n    type: activation_patching\n    method: attribution\n    metric: logit_diff\n"
               "    targets: [z_all_pos, resid_pre, attn_out, mlp_out, q_all_pos, k_all_pos, v_all_pos]\n"
               "  - name: atpgd\n    type: activation_patching\n    method: attribution\n    grad_drop: true\n"
               "    metric: logit_diff\n"
               "    targets: [z_all_pos, resid_pre, attn_out, mlp_out, q_all_pos, k_all_pos, v_all_pos]\n"
               "  - name: mg\n    type: head_importance\n    metric: logit_diff\n"
               "  - name: pathk\n    type: activation_patching\n    metric: logit_diff\n    targets: [path_heads]\n"
               "    receivers: [L2H0]\n    receiver_input: k\n" /* the fixture's path_heads_k */
               "  - name: dla\n    type: direct_logit_attribution\n"
               "  - name: dlapos\n    type: direct_logit_attribution\n    metric: logit\n    positions: all\n"
               "    by_position: true\n"
               "  - name: circ\n    type: circuit_scores\n"
               "  - name: eap\n    type: edge_attribution\n"
               "  - name: eapig\n    type: edge_attribution\n    metric: kl\n    ig_steps: 3\n",
            model, out, jsonl);
    fclose(f);
    hs_config *cfg = load(cfgp);
    cr_assert_eq(hs_run(cfg, "x", NULL, &err), HS_OK, "%s", err.msg);
    hs_h5 *h = NULL;
    cr_assert_eq(hs_h5_open_read(out, &h, &err), HS_OK, "%s", err.msg);
    hs_h5_shape sh;
    float *za = read_f32(h, "patch", "z_all_pos", &sh), *zn = read_f32(h, "patch", "z_all_pos_normalised", NULL);
    float *cl = read_f32(h, "patch", "clean", NULL), *co = read_f32(h, "patch", "corrupt", NULL);
    const int L = (int)sh.dims[1], H = (int)sh.dims[2];
    const float *want = hs_st_find(st, "z_all_pos")->data;
    double mc = 0, mx = 0;
    for (int i = 0; i < N; i++) mc += cl[i] / N, mx += co[i] / N;
    for (int k = 0; k < L * H; k++) {
        double m = 0;
        for (int i = 0; i < N; i++) {
            cr_assert_float_eq(za[i * L * H + k], want[i * L * H + k], 1e-4, "z_all_pos prompt %d head %d", i, k);
            m += za[i * L * H + k] / N;
        }
        cr_assert_float_eq(zn[k], (m - mx) / (mc - mx), 1e-4, "normalised %d", k);
    }
    const char *names[] = {"z_all_pos", "resid_pre", "attn_out", "mlp_out",    "q_all_pos",
                           "k_all_pos", "v_all_pos", "path_logits"}; /* attribution: all but path_logits */
    for (int k = 1; k < 8; k++) { /* [prompt, layer, position], then [prompt, layer, head] */
        float *rp = read_f32(h, "patch", names[k], &sh);
        const hs_st_tensor *wt = hs_st_find(st, names[k]);
        const float *wr = wt->data;
        cr_assert_eq(sh.dims[2], k < 4 ? T : H);
        cr_assert_eq(sh.dims[0] * sh.dims[1] * sh.dims[2], wt->numel, "%s", names[k]);
        for (int i = 0; i < wt->numel; i++) {
            if (isnan(wr[i])) cr_assert(isnan(rp[i]), "%s %d: beyond the prompt must be NaN", names[k], i);
            else cr_assert_float_eq(rp[i], wr[i], 1e-4, "%s %d", names[k], i);
        }
        free(rp);
    }
    free(za), free(zn), free(cl), free(co);
    { /* path patching to a receiver's k: the fixture's cells, and the receivers named in the file */
        float *ph = read_f32(h, "pathk", "path_heads", &sh);
        const hs_st_tensor *wt = hs_st_find(st, "path_heads_k");
        const int32_t *wr = hs_st_find(st, "path_heads_k_receivers")->data;
        cr_assert(wr[0] == 2 && wr[1] == 0, "the fixture's k receiver moved: update the config above");
        cr_assert_eq(sh.dims[0] * sh.dims[1] * sh.dims[2], wt->numel);
        for (int64_t i = 0; i < wt->numel; i++) {
            const float w = ((const float *)wt->data)[i];
            if (isnan(w)) cr_assert(isnan(ph[i]), "path_heads %lld: no receiver after the sender: NaN", (long long)i);
            else cr_assert_float_eq(ph[i], w, 1e-4, "path_heads %lld", (long long)i);
        }
        hs_h5_group *gr;
        char *recv = NULL, *input = NULL;
        cr_assert_eq(hs_h5_group_open(h, "pathk", &gr, &err), HS_OK, "%s", err.msg);
        cr_assert_eq(hs_h5_read_attr_str(gr, NULL, "receivers", &recv, &err), HS_OK, "%s", err.msg);
        cr_assert_eq(hs_h5_read_attr_str(gr, NULL, "receiver_input", &input, &err), HS_OK, "%s", err.msg);
        cr_assert_str_eq(recv, "L2H0");
        cr_assert_str_eq(input, "k");
        free(recv), free(input), free(ph);
        char *held = NULL; /* path_logits says which heads it holds */
        cr_assert_eq(hs_h5_group_open(h, "patch", &gr, &err), HS_OK, "%s", err.msg);
        cr_assert_eq(hs_h5_read_attr_str(gr, NULL, "path_logits", &held, &err), HS_OK, "%s", err.msg);
        cr_assert(strstr(held, "every head of the later layers held at its corrupted z"), "%s", held);
        free(held);
    }
    /* attribution, plain and with GradDrop: autograd's estimates, and the method named in the file */
    hs_st_file *atp = NULL;
    hs_test_fixture_path(ref, sizeof ref, "ref/gpt2_attribution.safetensors");
    cr_assert_eq(hs_st_open(ref, &atp, &err), HS_OK, "%s", err.msg);
    static const char *const groups[2] = {"atp", "atpgd"};
    for (int gd = 0; gd < 2; gd++) {
        for (int k = 0; k < 7; k++) {
            char key[64];
            snprintf(key, sizeof key, "logit_diff.%s%s%s", gd ? "gd." : "", names[k],
                     k == 4 || k == 5 ? "_qkfix" : ""); /* q, k: QK fix */
            const hs_st_tensor *w = hs_st_find(atp, key);
            cr_assert_not_null(w, "%s", key);
            float *got = read_f32(h, groups[gd], names[k], NULL);
            const float *wv = w->data;
            for (int64_t i = 0; i < w->numel; i++) {
                if (isnan(wv[i])) cr_assert(isnan(got[i]), "%s %lld: beyond the prompt must be NaN", key, (long long)i);
                else cr_assert_float_eq(got[i], wv[i], 1e-4, "%s %lld", key, (long long)i);
            }
            free(got);
        }
        hs_h5_group *gr;
        char *method = NULL, *how = NULL;
        cr_assert_eq(hs_h5_group_open(h, groups[gd], &gr, &err), HS_OK, "%s", err.msg);
        cr_assert_eq(hs_h5_read_attr_str(gr, NULL, "method", &method, &err), HS_OK, "%s", err.msg);
        cr_assert_str_eq(method, "attribution");
        cr_assert_eq(hs_h5_read_attr_str(gr, NULL, "patch", &how, &err), HS_OK, "%s", err.msg);
        cr_assert(strstr(how, "QK fix") && !strstr(how, "GradDrop") == !gd, "%s: %s", groups[gd], how);
        free(method), free(how);
    }
    hs_st_close(atp);
    /* head_importance of the logit difference: autograd's head-mask gradients, one prediction per prompt */
    hs_st_file *img = NULL;
    hs_test_fixture_path(ref, sizeof ref, "ref/gpt2_importance_metric.safetensors");
    cr_assert_eq(hs_st_open(ref, &img, &err), HS_OK, "%s", err.msg);
    const hs_st_tensor *wg = hs_st_find(img, "logit_diff.grad");
    cr_assert_not_null(wg);
    float *mg = read_f32(h, "mg", "grad", NULL), *mt = read_f32(h, "mg", "tokens", NULL);
    for (int64_t i = 0; i < wg->numel; i++)
        cr_assert_float_eq(mg[i], ((const float *)wg->data)[i], 1e-4, "mg grad %lld", (long long)i);
    for (int i = 0; i < N; i++) cr_assert_eq(mt[i], 1.0f);
    hs_h5_group *gr;
    char *method = NULL;
    cr_assert_eq(hs_h5_group_open(h, "mg", &gr, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_attr_str(gr, NULL, "metric", &method, &err), HS_OK, "%s", err.msg);
    cr_assert_str_eq(method, "logit_diff");
    free(method), free(mg), free(mt);
    hs_st_close(img);
    { /* direct logit attribution: transformers' per-head direct effects, their mean, and the parts' sum */
        hs_st_file *dr = NULL;
        hs_test_fixture_path(ref, sizeof ref, "ref/gpt2_dla.safetensors");
        cr_assert_eq(hs_st_open(ref, &dr, &err), HS_OK, "%s", err.msg);
        const hs_st_tensor *wh = hs_st_find(dr, "heads");
        float *dh = read_f32(h, "dla", "dla", &sh), *dm = read_f32(h, "dla", "dla_mean", NULL),
              *dp = read_f32(h, "dla", "dla_mlp", NULL), *dr_ = read_f32(h, "dla", "dla_rest", NULL),
              *ld = read_f32(h, "dla", "metric", NULL);
        cr_assert(sh.ndim == 3 && sh.dims[0] == N && sh.dims[1] == L && sh.dims[2] == H);
        for (int64_t i = 0; i < wh->numel; i++)
            cr_assert_float_eq(dh[i], ((const float *)wh->data)[i], 1e-4, "dla %lld", (long long)i);
        for (int k = 0; k < L * H; k++) {
            double m = 0;
            for (int i = 0; i < N; i++) m += dh[i * L * H + k] / N;
            cr_assert_float_eq(dm[k], m, 1e-5, "dla_mean %d", k);
        }
        for (int i = 0; i < N; i++) {
            double sum = dr_[i];
            for (int k = 0; k < L * H; k++) sum += dh[i * L * H + k];
            for (int l = 0; l < L; l++) sum += dp[i * L + l];
            cr_assert_float_eq(sum, ld[i], 1e-4, "prompt %d: the parts add up to the logit difference", i);
        }
        free(dh), free(dm), free(dp), free(dr_), free(ld);
        hs_st_close(dr);
    }
    { /* over positions: each position's direct effects before the mean (the patching set's prompts) */
        hs_st_file *dr = NULL;
        hs_test_fixture_path(ref, sizeof ref, "ref/gpt2_dla_pos.safetensors");
        cr_assert_eq(hs_st_open(ref, &dr, &err), HS_OK, "%s", err.msg);
        const hs_st_tensor *pt = hs_st_find(dr, "tokens"), *ph = hs_st_find(dr, "pos.heads"),
                           *pm = hs_st_find(dr, "pos.metric");
        cr_assert(pt && ph && pm && pt->numel == (int64_t)N * T &&
                      !memcmp(pt->data, tok->data, (size_t)N * T * sizeof(int32_t)),
                  "the dla_pos fixture has the patching set's prompts");
        float *bp = read_f32(h, "dlapos", "dla_by_pos", &sh), *bm = read_f32(h, "dlapos", "metric_by_pos", NULL);
        cr_assert(sh.ndim == 4 && sh.dims[0] == N && sh.dims[1] == T && !strcmp(sh.dim_names[1], "position"));
        for (int64_t i = 0; i < ph->numel + pm->numel; i++) {
            const float g = i < ph->numel ? bp[i] : bm[i - ph->numel];
            const float w = i < ph->numel ? ((const float *)ph->data)[i] : ((const float *)pm->data)[i - ph->numel];
            if (isnan(w)) cr_assert(isnan(g), "dla_by_pos %lld: %g where no position is read", (long long)i, g);
            else cr_assert_float_eq(g, w, 1e-4, "dla_by_pos %lld", (long long)i);
        }
        free(bp), free(bm);
        hs_st_close(dr);
    }
    { /* circuit scores: TransformerLens's definitions on the processed weights, one unit per layer */
        hs_st_file *cr = NULL;
        hs_test_fixture_path(ref, sizeof ref, "ref/gpt2_circuit.safetensors");
        cr_assert_eq(hs_st_open(ref, &cr, &err), HS_OK, "%s", err.msg);
        const char *keys[4][2] = {{"q_composition", "fold.q"}, {"k_composition", "fold.k"},
                                  {"v_composition", "fold.v"}, {"copying", "fold.copying"}};
        for (int k = 0; k < 4; k++) {
            const hs_st_tensor *wc = hs_st_find(cr, keys[k][1]);
            cr_assert_not_null(wc);
            float *got = read_f32(h, "circ", keys[k][0], &sh);
            cr_assert(sh.ndim == (k < 3 ? 4 : 2) && sh.dims[0] == L && sh.dims[1] == H &&
                      !strcmp(sh.dim_names[0], "layer") && (k == 3 || !strcmp(sh.dim_names[2], "reader_layer")));
            for (int64_t i = 0; i < wc->numel; i++)
                cr_assert_float_eq(got[i], ((const float *)wc->data)[i], 1e-6, "%s %lld", keys[k][0], (long long)i);
            free(got);
        }
        hs_st_close(cr);
    }
    { /* edge attribution: TransformerLens's, on the same prompts; node names as the axes' coordinates */
        hs_st_file *er = NULL;
        hs_test_fixture_path(ref, sizeof ref, "ref/gpt2_eap.safetensors");
        cr_assert_eq(hs_st_open(ref, &er, &err), HS_OK, "%s", err.msg);
        const char *keys[2][2] = {{"eap", "logit_diff"}, {"eapig", "ig3.kl"}};
        for (int k = 0; k < 2; k++) {
            char key[64];
            snprintf(key, sizeof key, "%s.edges", keys[k][1]);
            const hs_st_tensor *we = hs_st_find(er, key);
            cr_assert_not_null(we);
            float *got = read_f32(h, keys[k][0], "edges", &sh);
            cr_assert(sh.ndim == 2 && sh.dims[0] == we->shape[0] && sh.dims[1] == we->shape[1] &&
                      !strcmp(sh.dim_names[0], "upstream") && !strcmp(sh.dim_names[1], "downstream"));
            double scale = 0;
            for (int64_t i = 0; i < we->numel; i++) scale = fmax(scale, fabs(((const float *)we->data)[i]));
            for (int64_t i = 0; i < we->numel; i++) {
                const float w = ((const float *)we->data)[i];
                if (isnan(w))
                    cr_assert(isnan(got[i]), "%s edges %lld: %g where there is no edge", keys[k][0], (long long)i,
                              got[i]);
                else cr_assert_float_eq(got[i], w, 2e-5 * scale, "%s edges %lld", keys[k][0], (long long)i);
            }
            free(got);
            hs_h5_group *g;
            char **nodes;
            int64_t nn;
            cr_assert_eq(hs_h5_group_open(h, keys[k][0], &g, &err), HS_OK, "%s", err.msg);
            cr_assert_eq(hs_h5_read_str(g, "downstream", &nodes, &nn, &err), HS_OK, "%s", err.msg);
            cr_assert(nn == sh.dims[1] && !strcmp(nodes[0], "L0H0<q>") && !strcmp(nodes[nn - 1], "logits"));
            hs_h5_names_free(nodes, nn);
            cr_assert_eq(hs_h5_read_str(g, "upstream", &nodes, &nn, &err), HS_OK, "%s", err.msg);
            cr_assert(nn == sh.dims[0] && !strcmp(nodes[0], "input") && !strcmp(nodes[1], "L0H0"));
            hs_h5_names_free(nodes, nn);
        }
        hs_st_close(er);
    }
    hs_h5_close(h);
    hs_st_close(st);
    hs_config_free(cfg);
    /* accuracy has no gradient: refused before any work, naming the experiment */
    const char *acc[] = {"experiments.atp.metric=accuracy", "overwrite=true"};
    cr_assert_eq(hs_config_load(cfgp, acc, 2, &cfg, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_run(cfg, "x", NULL, &err), HS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "'atp'") && strstr(err.msg, "method attribution needs a gradient"), "%s", err.msg);
    snprintf(ref, sizeof ref, "%s.journal", out);
    cr_assert_neq(access(ref, F_OK), 0, "a refused run left %s", ref);
    hs_config_free(cfg);
    const char *kl[] = {"experiments.mg.metric=kl", "overwrite=true"};
    cr_assert_eq(hs_config_load(cfgp, kl, 2, &cfg, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_run(cfg, "x", NULL, &err), HS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "'mg'") && strstr(err.msg, "kl"), "%s", err.msg);
    hs_config_free(cfg);
    /* a receiver beyond the model: refused before anything is written, naming it */
    const char *far[] = {"experiments.pathk.receivers=[L1H0, L2H5]", "overwrite=true"};
    cr_assert_eq(hs_config_load(cfgp, far, 2, &cfg, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_run(cfg, "x", NULL, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "'pathk'") && strstr(err.msg, "L2H5 is outside the model's 3 layers x 5 KV heads"), "%s",
              err.msg);
    cr_assert_neq(access(ref, F_OK), 0, "a refused run left %s", ref);
    hs_config_free(cfg);
    /* GPT-2's MLP is not gated: hook mlp_pre_linear is refused by name */
    f = fopen(cfgp, "w");
    fprintf(f, "model: %s\noutput: %s\noverwrite: true\ndataset:\n  file: %s\nexperiments:\n"
               "  - name: cap\n    type: capture\n    hooks: [mlp_pre, mlp_pre_linear]\n",
            model, out, jsonl);
    fclose(f);
    cfg = load(cfgp);
    cr_assert_neq(hs_run(cfg, "x", NULL, &err), HS_OK);
    cr_assert(strstr(err.msg, "'cap'") && strstr(err.msg, "mlp_pre_linear") && strstr(err.msg, "not gated"), "%s",
              err.msg);
    cr_assert_neq(access(ref, F_OK), 0, "a refused run left %s", ref);
    hs_config_free(cfg);
    hs_test_remove_dir(dir);
}

/* A GPT-NeoX (Pythia-shaped) model through `headsweep run`: attribution,
 * gradient importance, mean ablation and capture. Checked: the attn_out
 * cells (whose gradient, in a parallel block, is dM/d resid_post) sum over
 * positions to the heads' z cells (dz = that gradient times W_O, checked
 * against autograd in test_head_grad); rot_q leaves the dims past the 8
 * rotary ones as q has them; and a capture of resid_mid, which a parallel
 * block does not have, is refused before any work. */
Test(run, gpt_neox_parallel_block_runs_end_to_end, .timeout = 300) {
    make_dir();
    char cfgp[256], out[256], data[256], model[1024];
    snprintf(cfgp, sizeof cfgp, "%s/c.yaml", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    snprintf(data, sizeof data, "%s/d.jsonl", dir);
    hs_test_fixture_path(model, sizeof model, "models/pythia");
    FILE *f = fopen(data, "w");
    cr_assert_not_null(f);
    fprintf(f, "{\"tokens\": [5, 77, 31, 140, 9, 200], \"corrupt\": [5, 77, 31, 141, 9, 200]}\n"
               "{\"tokens\": [12, 250, 3, 66, 18], \"corrupt\": [12, 251, 4, 66, 18]}\n");
    fclose(f);
    for (int bad = 1; bad >= 0; bad--) { /* the refused run first: it must leave no file */
        f = fopen(cfgp, "w");
        cr_assert_not_null(f);
        fprintf(f,
                "model: %s\nseed: 1\nbatch_size: 4\noutput: %s\ndataset:\n  file: %s\n"
                "experiments:\n"
                "  - name: atp\n    type: activation_patching\n    method: attribution\n    metric: kl\n"
                "    positions: last\n"
                "    targets: [z_all_pos, attn_out]\n"
                "  - name: michel\n    type: head_importance\n"
                "  - name: abl\n    type: head_ablation\n    mode: mean\n    metric: loss\n"
                "  - name: cap\n    type: capture\n    hooks: [%s]\n    layers: [1]\n    prompts: [0]\n",
                model, out, data, bad ? "resid_mid" : "q, rot_q");
        fclose(f);
        hs_config *cfg = load(cfgp);
        hs_err err = {0};
        hs_status st = hs_run(cfg, "x", NULL, &err);
        hs_config_free(cfg);
        if (bad) {
            cr_assert_eq(st, HS_ERR_INVALID_ARG, "resid_mid on a parallel block: %s", err.msg);
            cr_assert(strstr(err.msg, "resid_mid") && strstr(err.msg, "parallel"), "%s", err.msg);
            cr_assert_neq(access(out, F_OK), 0, "a refused run wrote %s", out);
            continue;
        }
        cr_assert_eq(st, HS_OK, "%s", err.msg);
    }
    hs_h5 *h;
    hs_err err = {0};
    hs_h5_shape sz, sa, sc, sq, sr, sd, si;
    cr_assert_eq(hs_h5_open_read(out, &h, &err), HS_OK, "%s", err.msg);
    float *z = read_f32(h, "atp", "z_all_pos", &sz), *ao = read_f32(h, "atp", "attn_out", &sa);
    float *corrupt = read_f32(h, "atp", "corrupt", &sc);
    const int N = 2, L = 3, H = 2, T = (int)sa.dims[2], len[2] = {6, 5};
    cr_assert_eq(sz.dims[0] * sz.dims[1] * sz.dims[2], N * L * H);
    for (int p = 0; p < N; p++)
        for (int l = 0; l < L; l++) {
            double by_heads = 0, by_pos = 0, scale = 0;
            for (int h2 = 0; h2 < H; h2++) {
                const double e = z[(p * L + l) * H + h2] - corrupt[p];
                by_heads += e, scale += fabs(e);
            }
            for (int t = 0; t < len[p]; t++) by_pos += ao[(p * L + l) * T + t] - corrupt[p];
            /* f32 sums of a few terms of size <= scale: a few ulps of it */
            cr_assert(fabs(by_heads - by_pos) <= 1e-5 * scale + 1e-7,
                      "prompt %d layer %d: attn_out cells sum to %.8g, z cells to %.8g", p, l, by_pos, by_heads);
        }
    float *q = read_f32(h, "cap", "blocks.1.attn.hook_q", &sq);
    float *rq = read_f32(h, "cap", "blocks.1.attn.hook_rot_q", &sr);
    int moved = 0;
    for (int64_t i = 0; i < (int64_t)sq.dims[1] * sq.dims[2] * sq.dims[3]; i++) { /* [prompt, T, H, 32] */
        const int dim = (int)(i % 32);
        if (dim >= 8) cr_assert_eq(rq[i], q[i], "rot_q changed dim %d, past the 8 rotary dims", dim);
        else moved += rq[i] != q[i];
    }
    cr_assert_gt(moved, 0, "rot_q equals q in the rotary dims too");
    float *dm = read_f32(h, "abl", "delta_mean", &sd), *imp = read_f32(h, "michel", "importance", &si);
    for (int i = 0; i < L * H; i++) cr_assert(isfinite(dm[i]) && isfinite(imp[i]), "head %d: %g %g", i, dm[i], imp[i]);
    free(z), free(ao), free(corrupt), free(q), free(rq), free(dm), free(imp);
    hs_h5_close(h);
    hs_test_remove_dir(dir);
}

/* A JSONL dataset without corrupted prompts: edge attribution reads them, so the run is refused
 * before any work, naming the experiment and what is missing, and writes nothing. */
Test(run, edge_attribution_without_corrupt_prompts_is_refused) {
    make_dir();
    char model[1024], jsonl[256], cfgp[256], out[256];
    hs_test_fixture_path(model, sizeof model, "models/gpt2");
    snprintf(jsonl, sizeof jsonl, "%s/p.jsonl", dir);
    snprintf(cfgp, sizeof cfgp, "%s/c.yaml", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    FILE *f = fopen(jsonl, "w");
    fprintf(f, "{\"tokens\": [5, 6, 7, 8], \"answer\": 9, \"distractor\": 10}\n");
    fclose(f);
    f = fopen(cfgp, "w");
    fprintf(f, "model: %s\noutput: %s\ndataset:\n  file: %s\nexperiments:\n  - name: edges\n    type: edge_attribution\n",
            model, out, jsonl);
    fclose(f);
    hs_config *cfg = load(cfgp);
    hs_err err = {0};
    cr_assert_eq(hs_run(cfg, "x", NULL, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "'edges'") && strstr(err.msg, "corrupt prompts"), "%s", err.msg);
    cr_assert_neq(access(out, F_OK), 0, "a refused run wrote %s", out);
    hs_config_free(cfg);
    hs_test_remove_dir(dir);
}

/* Circuit faithfulness through `headsweep run` on GPT-2: the edges ranked by
 * an edge attribution of the same run. The 25 strongest are the circuit the
 * eap_circuit fixture took from TransformerLens's scores, and each prompt's
 * metric with them is TransformerLens's (evaluate_graph by hooks); no edge is
 * the corrupted run and every edge the clean one; faithfulness is the
 * normalised mean. The same experiment ranking from the result file gives
 * the same bits; every edge is ranked once, by |score| or (absolute: false)
 * by score. Sharded, ranking from this run's experiment is refused, and so
 * is a circuit larger than the graph. */
Test(run, circuit_faithfulness_matches_transformer_lens) {
    make_dir();
    char ref[1024], model[1024], jsonl[256], cfgp[256], out[256], out2[256];
    hs_test_fixture_path(model, sizeof model, "models/gpt2");
    hs_test_fixture_path(ref, sizeof ref, "ref/gpt2_eap.safetensors");
    snprintf(jsonl, sizeof jsonl, "%s/p.jsonl", dir);
    snprintf(cfgp, sizeof cfgp, "%s/c.yaml", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    snprintf(out2, sizeof out2, "%s/out2.h5", dir);
    hs_st_file *st = NULL, *cr = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_st_open(ref, &st, &err), HS_OK, "%s", err.msg);
    hs_test_fixture_path(ref, sizeof ref, "ref/gpt2_eap_circuit.safetensors");
    cr_assert_eq(hs_st_open(ref, &cr, &err), HS_OK, "%s", err.msg);
    const hs_st_tensor *tok = hs_st_find(st, "tokens");
    const int N = (int)tok->shape[0];
    write_pairs(jsonl, st);
    FILE *f;
    hs_model *m = hs_test_fixture_model("gpt2");
    const hs_model_config *mc = hs_model_get_config(m);
    const int U = hs_eap_n_upstream(mc), V = hs_eap_n_downstream(mc);
    int edges = 0;
    for (int u = 0; u < U; u++)
        for (int v = 0; v < V; v++) edges += hs_eap_is_edge(mc, u, v);
    f = fopen(cfgp, "w");
    fprintf(f, "model: %s\noutput: %s\nbatch_size: 3\ndataset:\n  file: %s\nexperiments:\n"
               "  - name: eap\n    type: edge_attribution\n"
               "  - name: faith\n    type: circuit_faithfulness\n    edges_from: eap\n    n_edges: [0, 25, %d]\n",
            model, out, jsonl, edges);
    fclose(f);
    hs_config *cfg = load(cfgp);
    cr_assert_eq(hs_run(cfg, "x", NULL, &err), HS_OK, "%s", err.msg);
    hs_config_free(cfg);
    hs_h5 *h = NULL;
    hs_h5_shape sh;
    cr_assert_eq(hs_h5_open_read(out, &h, &err), HS_OK, "%s", err.msg);
    float *met = read_f32(h, "faith", "metric", &sh), *cl = read_f32(h, "faith", "metric_clean", NULL),
          *co = read_f32(h, "faith", "metric_corrupt", NULL), *fa = read_f32(h, "faith", "faithfulness", NULL),
          *rank = read_f32(h, "faith", "edge_rank", NULL);
    cr_assert(sh.ndim == 2 && sh.dims[0] == N && sh.dims[1] == 3 && !strcmp(sh.dim_names[1], "n_edges"));
    const float *circ = hs_st_find(cr, "circuits")->data, *want = hs_st_find(cr, "logit_diff.metric")->data,
                *wc = hs_st_find(cr, "logit_diff.clean")->data, *wx = hs_st_find(cr, "logit_diff.corrupted")->data;
    for (int64_t i = 0; i < (int64_t)U * V; i++)
        cr_assert_eq(rank[i] < 25.0f, circ[i] != 0.0f, "edge %lld: rank %g, in the fixture's 25: %d", (long long)i,
                     rank[i], circ[i] != 0.0f);
    double mm[3] = {0}, mcl = 0, mco = 0;
    for (int i = 0; i < N; i++) {
        cr_assert_float_eq(cl[i], wc[i], 2e-5 * fmax(1, fabs(wc[i])), "prompt %d clean", i);
        cr_assert_float_eq(co[i], wx[i], 2e-5 * fmax(1, fabs(wx[i])), "prompt %d corrupted", i);
        cr_assert_eq(met[i * 3], co[i], "prompt %d: no edge is the corrupted run", i);
        cr_assert_float_eq(met[i * 3 + 1], want[i], 2e-5 * fmax(1, fabs(want[i])), "prompt %d: 25 edges", i);
        cr_assert_eq(met[i * 3 + 2], cl[i], "prompt %d: every edge is the clean run", i);
        for (int k = 0; k < 3; k++) mm[k] += met[i * 3 + k];
        mcl += cl[i], mco += co[i];
    }
    for (int k = 0; k < 3; k++)
        cr_assert_float_eq(fa[k], (mm[k] - mco) / (mcl - mco), 1e-5, "faithfulness %d", k);
    cr_assert(fabs(fa[0]) < 1e-4 && fabs(fa[2] - 1) < 1e-4, "faithfulness %g .. %g", fa[0], fa[2]);
    hs_h5_group *g;
    int32_t *sizes = NULL;
    char *from = NULL;
    cr_assert_eq(hs_h5_group_open(h, "faith", &g, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_i32(g, "n_edges", &sizes, &sh, &err), HS_OK, "%s", err.msg);
    cr_assert(sh.dims[0] == 3 && sizes[0] == 0 && sizes[1] == 25 && sizes[2] == edges);
    cr_assert_eq(hs_h5_read_attr_str(g, NULL, "edges_from", &from, &err), HS_OK, "%s", err.msg);
    cr_assert_str_eq(from, "eap");
    free(sizes), free(from);
    hs_h5_close(h);
    /* from the file: the same bits */
    const char *file_sets[2] = {"output=", "experiments.faith.edges_from="};
    char s0[300], s1[300];
    snprintf(s0, sizeof s0, "%s%s", file_sets[0], out2);
    snprintf(s1, sizeof s1, "%s%s:/eap/edges", file_sets[1], out);
    const char *sets[2] = {s0, s1};
    cr_assert_eq(hs_config_load(cfgp, sets, 2, &cfg, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_run(cfg, "x", NULL, &err), HS_OK, "%s", err.msg);
    hs_config_free(cfg);
    cr_assert_eq(hs_h5_open_read(out2, &h, &err), HS_OK, "%s", err.msg);
    float *met2 = read_f32(h, "faith", "metric", NULL);
    cr_assert_eq(memcmp(met, met2, (size_t)N * 3 * sizeof *met), 0, "ranking from the file changes the metric");
    hs_h5_close(h);
    /* the ranking: by |score| (absolute, the default), or by score, largest first */
    for (int absolute = 1; absolute >= 0; absolute--) {
        char s_abs[64], s_out[300];
        snprintf(s_abs, sizeof s_abs, "experiments.faith.absolute=%s", absolute ? "true" : "false");
        snprintf(s_out, sizeof s_out, "output=%s", out2);
        const char *rs[3] = {s_abs, s_out, "overwrite=true"};
        cr_assert_eq(hs_config_load(cfgp, rs, 3, &cfg, &err), HS_OK, "%s", err.msg);
        cr_assert_eq(hs_run(cfg, "x", NULL, &err), HS_OK, "%s", err.msg);
        hs_config_free(cfg);
        cr_assert_eq(hs_h5_open_read(out2, &h, &err), HS_OK, "%s", err.msg);
        float *rk = read_f32(h, "faith", "edge_rank", NULL), *sc = read_f32(h, "eap", "edges", NULL);
        float *by_rank = malloc((size_t)edges * sizeof *by_rank);
        for (int i = 0; i < edges; i++) by_rank[i] = NAN;
        for (int64_t i = 0; i < (int64_t)U * V; i++) {
            cr_assert_eq(isnan(rk[i]), isnan(sc[i]), "edge %lld: ranked iff an edge", (long long)i);
            if (!isnan(rk[i])) by_rank[(int)rk[i]] = absolute ? fabsf(sc[i]) : sc[i];
        }
        for (int r = 1; r < edges; r++)
            cr_assert(by_rank[r] <= by_rank[r - 1], "absolute %d: rank %d scores %g after %g", absolute, r, by_rank[r],
                      by_rank[r - 1]);
        free(rk), free(sc), free(by_rank);
        hs_h5_close(h);
    }
    free(met), free(met2), free(cl), free(co), free(fa), free(rank);
    /* refusals, before any work */
    const char *shard[2] = {"shard=0/2", "overwrite=true"};
    cr_assert_eq(hs_config_load(cfgp, shard, 2, &cfg, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_run(cfg, "x", NULL, &err), HS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "'faith'") && strstr(err.msg, "edges_from: FILE:/eap/edges"), "%s", err.msg);
    hs_config_free(cfg);
    char big[64], want_msg[64];
    snprintf(big, sizeof big, "experiments.faith.n_edges=[%d]", edges + 1);
    snprintf(want_msg, sizeof want_msg, "graph has %d edges", edges);
    const char *over[2] = {big, "overwrite=true"};
    cr_assert_eq(hs_config_load(cfgp, over, 2, &cfg, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_run(cfg, "x", NULL, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "'faith'") && strstr(err.msg, want_msg), "%s", err.msg);
    hs_config_free(cfg);
    hs_model_free(m);
    hs_st_close(st), hs_st_close(cr);
    hs_test_remove_dir(dir);
}

/* A post-norm model (Gemma 2) has no edge graph: edge attribution and circuit faithfulness are
 * refused before any work, naming the experiment, even behind a phase-0 experiment and with
 * edges_from naming a file that is never read; nothing is written. */
Test(run, edge_experiments_on_post_norm_models_are_refused_up_front) {
    make_dir();
    char ref[1024], model[1024], jsonl[256], cfgp[256], out[256];
    hs_test_fixture_path(ref, sizeof ref, "ref/gpt2_eap.safetensors");
    hs_test_fixture_path(model, sizeof model, "models/gemma2");
    snprintf(jsonl, sizeof jsonl, "%s/p.jsonl", dir);
    snprintf(cfgp, sizeof cfgp, "%s/c.yaml", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    hs_st_file *st = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_st_open(ref, &st, &err), HS_OK, "%s", err.msg);
    write_pairs(jsonl, st);
    hs_st_close(st);
    const char *exps[2] = {"  - name: faith\n    type: circuit_faithfulness\n    edges_from: none.h5:/eap/edges\n"
                           "    n_edges: [1]\n",
                           "  - name: edges\n    type: edge_attribution\n"};
    const char *want[2] = {"circuit evaluation: post-norm", "edge attribution: post-norm"};
    for (int k = 0; k < 2; k++) {
        FILE *f = fopen(cfgp, "w");
        fprintf(f, "model: %s\noutput: %s\ndataset:\n  file: %s\nexperiments:\n"
                   "  - name: abl\n    type: head_ablation\n%s",
                model, out, jsonl, exps[k]);
        fclose(f);
        hs_config *cfg = load(cfgp);
        cr_assert_eq(hs_run(cfg, "x", NULL, &err), HS_ERR_UNSUPPORTED, "%s", err.msg);
        cr_assert(strstr(err.msg, k ? "'edges'" : "'faith'") && strstr(err.msg, want[k]), "%s", err.msg);
        cr_assert_neq(access(out, F_OK), 0, "a refused run wrote %s", out);
        hs_config_free(cfg);
    }
    hs_test_remove_dir(dir);
}
