/* YAML sweep configs: the examples in configs/ load, defaults are filled,
 * every error class names FILE:LINE:COL and the key, overrides validate like
 * file values, and the resolved YAML is a fixed point of load -> emit. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "headsweep/hs_config.h"
#include "hs_testutil.h"

/* Writes text to a fresh temp file; path receives its name. */
static void write_tmp(char *path, size_t n, const char *text) {
    snprintf(path, n, "/tmp/hs_test_config_XXXXXX.yaml");
    int fd = mkstemps(path, 5);
    cr_assert(fd >= 0);
    size_t len = strlen(text);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
}

/* Loads text (as a temp file) with overrides; returns the status, fills err
 * with the message rewritten so the temp name reads "F". */
static hs_status load_text(const char *text, const char *const *sets, int n_sets, hs_config **out,
                           hs_err *err) {
    char path[64];
    write_tmp(path, sizeof path, text);
    hs_status st = hs_config_load(path, sets, n_sets, out, err);
    unlink(path);
    char *p = strstr(err->msg, path);
    if (p) { /* "/tmp/hs_test_config_abc.yaml:3:5: x" -> "F:3:5: x" */
        size_t pl = strlen(path);
        p[0] = 'F';
        memmove(p + 1, p + pl, strlen(p + pl) + 1);
    }
    return st;
}

/* Expects loading to fail with a message containing want. */
static void expect_error(const char *text, const char *const *sets, int n_sets, const char *want) {
    hs_config *c = (hs_config *)1;
    hs_err err = {0};
    hs_status st = load_text(text, sets, n_sets, &c, &err);
    cr_assert_neq(st, HS_OK, "expected an error containing \"%s\"", want);
    cr_assert_null(c);
    cr_assert(strstr(err.msg, want), "message \"%s\" lacks \"%s\"", err.msg, want);
}

static hs_config *load_ok(const char *text, const char *const *sets, int n_sets) {
    hs_config *c = NULL;
    hs_err err = {0};
    hs_status st = load_text(text, sets, n_sets, &c, &err);
    cr_assert_eq(st, HS_OK, "%s", err.msg);
    return c;
}

#define HEAD "model: m.gguf\noutput: out.h5\n"
#define IND "dataset:\n  generator: induction\n"
#define ABL "experiments:\n  - name: abl\n    type: head_ablation\n"

static const char *const example_configs[] = {"smollm2-induction.yaml", "smollm2-ioi.yaml",
                                              "smollm2-pruning.yaml", "smollm2-ioi-knockout.yaml",
                                              "smollm2-ioi-paths.yaml", "smollm2-retrieval.yaml",
                                              "smollm2-ioi-edges.yaml"};
/* Configs for checkpoints the user supplies (--set model=PATH). */
static const char *const supplied_model_configs[] = {"gpt2-ioi.yaml", "llama2-7b-pruning.yaml",
                                                     "pythia-induction.yaml", "gemma2-2b-induction.yaml",
                                                     "bloom-560m-pruning.yaml"};
#define N_OF(a) (sizeof(a) / sizeof *(a))

/* configs/<name>, loaded; a failure fails the test. */
static hs_config *load_example(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/%s", hs_test_source_dir(), name);
    hs_config *c = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_config_load(path, NULL, 0, &c, &err), HS_OK, "%s", err.msg);
    return c;
}

static int listed(const char *name, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(name, list[i])) return 1;
    return 0;
}

Test(config, examples_load) {
    for (size_t i = 0; i < N_OF(example_configs); i++) {
        hs_config *c = load_example(example_configs[i]);
        cr_assert(strstr(c->model, "SmolLM2-135M-Instruct.Q4_1.gguf"));
        cr_assert_neq(c->model[0], '~', "'~' must be expanded: %s", c->model);
        cr_assert_geq(c->n_experiments, 1);
        hs_config_free(c);
    }
}

/* The configs for supplied checkpoints load, and every *.yaml under configs/
 * is in one of the two lists. */
Test(config, supplied_model_examples_load) {
    for (size_t i = 0; i < N_OF(supplied_model_configs); i++) {
        hs_config *c = load_example(supplied_model_configs[i]);
        cr_assert(!strncmp(c->model, "/path/to/", 9), "%s: model %s is not the placeholder", supplied_model_configs[i],
                  c->model);
        cr_assert_geq(c->n_experiments, 2);
        hs_config_free(c);
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/configs", hs_test_source_dir());
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    struct dirent *e;
    size_t n = 0;
    while ((e = readdir(d))) {
        const size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".yaml")) continue;
        cr_assert(listed(e->d_name, example_configs, N_OF(example_configs)) ||
                      listed(e->d_name, supplied_model_configs, N_OF(supplied_model_configs)),
                  "configs/%s is in neither list of test_config.c", e->d_name);
        n++;
    }
    closedir(d);
    cr_assert_eq(n, N_OF(example_configs) + N_OF(supplied_model_configs));
}

Test(config, defaults_filled) {
    hs_config *c = load_ok(HEAD IND ABL "  - name: sc\n    type: head_scores\n"
                                        "  - name: pat\n    type: capture\n", NULL, 0);
    cr_assert_eq(c->device.kind, HS_CONFIG_DEVICE_CPU);
    cr_assert_eq(c->dtype, HS_DTYPE_F32);
    cr_assert_eq(c->seed, 0);
    cr_assert_eq(c->batch_size, 8);
    cr_assert_eq(c->threads, 0);
    cr_assert_eq(c->overwrite, 0);
    cr_assert_eq(c->shard.set, 0);
    cr_assert_eq(c->dataset.kind, HS_CONFIG_DATASET_INDUCTION);
    cr_assert_eq(c->dataset.n, 64);
    cr_assert_eq(c->dataset.seq_len, 50);
    cr_assert_eq(c->dataset.token_min, 100);
    cr_assert_eq(c->dataset.token_max, 20000);
    const hs_config_experiment *a = &c->experiments[0], *s = &c->experiments[1];
    const hs_config_experiment *p = &c->experiments[2];
    cr_assert_str_eq(a->name, "abl");
    cr_assert_eq(a->metric, HS_CONFIG_METRIC_LOSS);
    cr_assert_eq(a->positions, HS_CONFIG_POSITIONS_ALL);
    cr_assert_eq(a->mode, HS_CONFIG_MODE_ZERO);
    cr_assert(a->layers.all && a->heads.all);
    cr_assert_eq(a->whole_layers, 0);
    /* scores on the induction generator include the Olsson score */
    cr_assert_eq(s->scores, HS_CONFIG_BIT(HS_CONFIG_SCORE_PREVIOUS_TOKEN) |
                                HS_CONFIG_BIT(HS_CONFIG_SCORE_DUPLICATE_TOKEN) |
                                HS_CONFIG_BIT(HS_CONFIG_SCORE_INDUCTION) |
                                HS_CONFIG_BIT(HS_CONFIG_SCORE_OLSSON_INDUCTION));
    cr_assert_eq(p->hooks, HS_CONFIG_BIT(HS_CONFIG_HOOK_Z) | HS_CONFIG_BIT(HS_CONFIG_HOOK_PATTERN));
    cr_assert(p->prompts.all);
    hs_config_free(c);

    /* per-type and per-metric defaults */
    c = load_ok(HEAD "dataset:\n  generator: ioi\n"
                "experiments:\n  - {name: p, type: activation_patching}\n"
                "  - {name: a, type: head_ablation, metric: logprob}\n"
                "  - {name: q, type: pruning_curve, importance: a}\n"
                "  - {name: d, type: direct_logit_attribution}\n"
                "  - {name: w, type: circuit_scores}\n"
                "  - {name: k, type: circuit_scores, circuits: [k_composition], fold_norms: false}\n"
                "  - {name: e, type: edge_attribution}\n"
                "  - {name: g, type: edge_attribution, metric: kl, ig_steps: 5}\n"
                "  - {name: f, type: circuit_faithfulness, edges_from: g, n_edges: [100, 0, 10]}\n"
                "  - {name: h, type: circuit_faithfulness, edges_from: 'r.h5:/g/edges', n_edges: [5], metric: kl,\n"
                "     absolute: false}\n", NULL, 0);
    cr_assert_eq(c->experiments[8].type, HS_CONFIG_EXP_CIRCUIT_FAITHFULNESS);
    cr_assert_eq(c->experiments[8].metric, HS_CONFIG_METRIC_LOGIT_DIFF);
    cr_assert_str_eq(c->experiments[8].edges_from.experiment, "g");
    cr_assert(c->experiments[8].n_edges.n == 3 && c->experiments[8].n_edges.v[0] == 0 &&
              c->experiments[8].n_edges.v[2] == 100); /* sorted */
    cr_assert_eq(c->experiments[8].absolute, 1); /* by |score|, as Hanna et al. */
    cr_assert(!c->experiments[9].edges_from.experiment && !strcmp(c->experiments[9].edges_from.file, "r.h5") &&
              !strcmp(c->experiments[9].edges_from.dataset, "/g/edges"));
    cr_assert_eq(c->experiments[9].absolute, 0);
    cr_assert_eq(c->experiments[6].type, HS_CONFIG_EXP_EDGE_ATTRIBUTION);
    cr_assert_eq(c->experiments[6].metric, HS_CONFIG_METRIC_LOGIT_DIFF); /* as patching's */
    cr_assert_eq(c->experiments[6].ig_steps, 1);                         /* EAP */
    cr_assert_eq(c->experiments[7].metric, HS_CONFIG_METRIC_KL);
    cr_assert_eq(c->experiments[7].ig_steps, 5);
    cr_assert_eq(c->experiments[4].type, HS_CONFIG_EXP_CIRCUIT_SCORES);
    cr_assert_eq(c->experiments[4].circuits, 0xfu); /* q, k, v composition and copying */
    cr_assert_eq(c->experiments[4].fold_norms, 1);
    cr_assert_eq(c->experiments[5].circuits, HS_CONFIG_BIT(HS_CONFIG_CIRCUIT_K_COMPOSITION));
    cr_assert_eq(c->experiments[5].fold_norms, 0);
    cr_assert_str_eq(hs_config_circuit_name(HS_CONFIG_CIRCUIT_COPYING), "copying");
    cr_assert_eq(c->experiments[3].type, HS_CONFIG_EXP_DLA);
    cr_assert_eq(c->experiments[3].metric, HS_CONFIG_METRIC_LOGIT_DIFF); /* its only metric */
    cr_assert_eq(c->experiments[0].metric, HS_CONFIG_METRIC_LOGIT_DIFF);
    cr_assert_eq(c->experiments[0].positions, HS_CONFIG_POSITIONS_LAST);
    cr_assert_eq(c->experiments[0].targets, HS_CONFIG_BIT(HS_CONFIG_TARGET_Z_ALL_POS));
    cr_assert_eq(c->experiments[1].positions, HS_CONFIG_POSITIONS_LAST);
    cr_assert_str_eq(c->experiments[2].importance.experiment, "a");
    cr_assert_eq(c->experiments[2].step, 0.1);
    cr_assert_eq(c->dataset.templates, HS_CONFIG_IOI_ALL);
    hs_config_free(c);
}

Test(config, values_parsed) {
    setenv("HOME", "/home/tester", 1);
    hs_config *c = load_ok(
        "model: ~/models/x.gguf\noutput: \"r/o.h5\"\ndevice: [cuda:1, cuda:0]\ndtype: bf16\n"
        "seed: 18446744073709551615\nbatch_size: 65536\nthreads: 2\noverwrite: true\nshard: 2/4\n"
        "dataset:\n  generator: needle\n  haystack: ~/hay.txt\n  needle: \"x \\\"q\\\"\\n\"\n"
        "  question: q?\n  answer: \" a\"\n  depths: [0.9, 0, 0.25]\n  lengths: [2048]\n"
        "experiments:\n  - name: a-1_B\n    type: head_ablation\n    mode: scale\n    scale: 0.5\n"
        "    layers: [3, 1]\n    heads: 2\n    metric: accuracy\n    positions: answer\n"
        "  - name: p\n    type: pruning_curve\n    importance: ~/imp.h5:/abl/mean\n    step: 1\n",
        NULL, 0);
    cr_assert_str_eq(c->model, "/home/tester/models/x.gguf");
    cr_assert_eq(c->device.kind, HS_CONFIG_DEVICE_CUDA);
    cr_assert_eq(c->device.n, 2);
    cr_assert_eq(c->device.ids[0], 0);
    cr_assert_eq(c->dtype, HS_DTYPE_BF16);
    cr_assert_eq(c->seed, UINT64_MAX);
    cr_assert(c->overwrite);
    cr_assert(c->shard.set && c->shard.index == 2 && c->shard.count == 4);
    cr_assert_str_eq(c->dataset.haystack, "/home/tester/hay.txt");
    cr_assert_str_eq(c->dataset.needle, "x \"q\"\n");
    cr_assert_str_eq(c->dataset.answer, " a");
    cr_assert_eq(c->dataset.depths.n, 3);
    cr_assert_eq(c->dataset.depths.v[0], 0.0);
    cr_assert_eq(c->dataset.depths.v[2], 0.9);
    const hs_config_experiment *e = &c->experiments[0];
    cr_assert_eq(e->scale, 0.5);
    cr_assert_eq(e->layers.n, 2);
    cr_assert_eq(e->layers.v[0], 1); /* sorted */
    cr_assert_eq(e->heads.n, 1);
    cr_assert_eq(e->heads.v[0], 2);
    cr_assert_str_eq(c->experiments[1].importance.file, "/home/tester/imp.h5");
    cr_assert_str_eq(c->experiments[1].importance.dataset, "/abl/mean");
    hs_config_free(c);
}

Test(config, anchors_and_merge_keys) {
    /* resolved like any YAML tool: an anchored experiment reused with << */
    hs_config *c = load_ok(HEAD "dataset: {generator: ioi}\n"
                                "experiments:\n"
                                "  - &base {name: a, type: head_ablation, mode: mean, metric: kl}\n"
                                "  - <<: *base\n"
                                "    name: b\n"
                                "    mean_over: template\n",
                           NULL, 0);
    cr_assert_eq(c->n_experiments, 2);
    cr_assert_str_eq(c->experiments[1].name, "b");
    cr_assert_eq(c->experiments[1].mode, HS_CONFIG_MODE_MEAN);
    cr_assert_eq(c->experiments[1].metric, HS_CONFIG_METRIC_KL);
    cr_assert_eq(c->experiments[1].mean_over, HS_CONFIG_MEAN_OVER_TEMPLATE);
    cr_assert_eq(c->experiments[0].mean_over, HS_CONFIG_MEAN_OVER_DATASET);
    hs_config_free(c);
}

Test(config, device_forms) {
    static const char *const forms[] = {"cpu", "cuda", "cuda:3", "all", "[cuda:0, cuda:2]"};
    static const hs_config_device_kind kinds[] = {HS_CONFIG_DEVICE_CPU, HS_CONFIG_DEVICE_CUDA,
                                                  HS_CONFIG_DEVICE_CUDA, HS_CONFIG_DEVICE_CUDA_ALL,
                                                  HS_CONFIG_DEVICE_CUDA};
    for (int i = 0; i < 5; i++) {
        char text[512];
        snprintf(text, sizeof text, HEAD "device: %s\n" IND ABL, forms[i]);
        hs_config *c = load_ok(text, NULL, 0);
        cr_assert_eq(c->device.kind, kinds[i], "%s", forms[i]);
        if (i == 2) cr_assert(c->device.n == 1 && c->device.ids[0] == 3);
        if (i == 1) cr_assert(c->device.n == 1 && c->device.ids[0] == 0);
        hs_config_free(c);
    }
    expect_error(HEAD "device: gpu\n" IND ABL, NULL, 0, "F:3:9: device: 'gpu' is not one of cpu");
    expect_error(HEAD "device: [cuda:0, cuda:0]\n" IND ABL, NULL, 0, "device: cuda:0 appears twice");
    expect_error(HEAD "device: cuda:64\n" IND ABL, NULL, 0, "F:3:9:");
}

/* ---- errors: each names FILE:LINE:COL and the key ---------------------------- */

Test(config, unknown_keys) {
    expect_error(HEAD "colour: red\n" IND ABL, NULL, 0,
                 "F:3:1: unknown key 'colour' (expected one of: model, device, dtype, seed");
    expect_error(HEAD IND ABL "  - name: b\n    type: head_scores\n    foo: 1\n", NULL, 0,
                 "F:10:5: unknown key 'foo' in experiments[1] (expected one of: name, type, metric");
    expect_error(HEAD "dataset:\n  generator: induction\n  sed: 3\n" ABL, NULL, 0,
                 "F:5:3: unknown key 'sed' in dataset (expected one of: file, generator, n,");
}

Test(config, wrong_types) {
    expect_error(HEAD "batch_size: eight\n" IND ABL, NULL, 0,
                 "F:3:13: batch_size: expected an integer, got 'eight'");
    expect_error(HEAD "batch_size: \"8\"\n" IND ABL, NULL, 0,
                 "F:3:13: batch_size: expected an integer, got the string '8'");
    expect_error(HEAD "seed: [1]\n" IND ABL, NULL, 0, "F:3:7: seed: expected an integer");
    expect_error(HEAD "seed: -1\n" IND ABL, NULL, 0, "F:3:7: seed: expected an integer");
    expect_error(HEAD "overwrite: yes\n" IND ABL, NULL, 0,
                 "F:3:12: overwrite: expected true or false, got 'yes'");
    expect_error(HEAD "model2: x\n", NULL, 0, "F:3:1: unknown key 'model2'");
    expect_error(HEAD "dataset: [a]\n" ABL, NULL, 0, "F:3:10: dataset: expected a mapping");
    expect_error(HEAD IND "experiments:\n  name: a\n", NULL, 0,
                 "F:6:3: experiments: expected a non-empty list");
    expect_error(HEAD IND "experiments: []\n", NULL, 0, "experiments: expected a non-empty list");
    expect_error(HEAD IND ABL "    layers: [1, x]\n", NULL, 0,
                 "F:8:17: experiments[0].layers[1]: expected an integer, got 'x'");
    expect_error(HEAD IND ABL "    layers: [1, 1]\n", NULL, 0,
                 "F:8:17: experiments[0].layers: '1' appears twice");
    expect_error(HEAD IND ABL "    layers: []\n", NULL, 0,
                 "F:8:13: experiments[0].layers: expected 'all' or a non-empty list, got an empty list");
    expect_error(HEAD IND "experiments:\n  - name: a b\n    type: capture\n", NULL, 0,
                 "F:6:11: experiments[0].name: 'a b' must match [A-Za-z0-9_-]+");
    expect_error(HEAD "shard: 4/4\n" IND ABL, NULL, 0, "F:3:8: shard: expected \"i/n\"");
}

Test(config, bad_enums) {
    expect_error(HEAD IND ABL "    metric: los\n", NULL, 0,
                 "F:8:13: experiments[0].metric: 'los' is not one of loss, logprob, logit_diff, kl, accuracy");
    expect_error(HEAD IND "experiments:\n  - name: a\n    type: ablation\n", NULL, 0,
                 "F:7:11: experiments[0].type: 'ablation' is not one of head_ablation, "
                 "activation_patching, head_scores, pruning_curve, capture");
    expect_error(HEAD "dtype: f16\n" IND ABL, NULL, 0, "F:3:8: dtype: 'f16' is not one of f32, bf16");
    expect_error(HEAD "dataset:\n  generator: wiki\n" ABL, NULL, 0,
                 "F:4:14: dataset.generator: 'wiki' is not one of ioi, induction, needle");
    expect_error(HEAD IND "experiments:\n  - {name: c, type: capture, hooks: [z, hook_q]}\n", NULL, 0,
                 "F:6:41: experiments[0].hooks[1]: 'hook_q' is not one of resid_pre, q, k");
}

Test(config, out_of_range) {
    expect_error(HEAD "batch_size: 0\n" IND ABL, NULL, 0,
                 "F:3:13: batch_size: 0 is out of range 1..65536");
    expect_error(HEAD "batch_size: 65537\n" IND ABL, NULL, 0, "65537 is out of range 1..65536");
    expect_error(HEAD "dataset:\n  generator: induction\n  n: 0\n" ABL, NULL, 0,
                 "F:5:6: dataset.n: 0 is out of range 1..10000000");
    expect_error(HEAD "dataset:\n  generator: ioi\n" "experiments:\n  - name: p\n"
                 "    type: pruning_curve\n    importance: x.h5:/a\n    step: 0\n", NULL, 0,
                 "F:9:11: experiments[0].step: 0 is out of range (0, 1]");
    expect_error(HEAD "dataset:\n  generator: needle\n  haystack: h.txt\n  needle: n\n"
                 "  question: q\n  depths: [0.5, 1.5]\n" ABL, NULL, 0,
                 "F:8:17: dataset.depths[1]: 1.5 is out of range [0, 1]");
    expect_error(HEAD "dataset:\n  generator: needle\n  haystack: h.txt\n  needle: n\n  question: q\n" ABL
                 "    metric: logprob\n", NULL, 0,
                 "F:11:5: experiments[0].metric: logprob needs each prompt's answer token: a file dataset, the ioi "
                 "generator or the needle generator with 'answer' (dataset is needle without 'answer')");
    expect_error(HEAD IND ABL "    metric: accuracy\n", NULL, 0, "experiments[0].metric: accuracy needs each prompt's "
                 "answer token");
#define NEEDLE "dataset:\n  generator: needle\n  haystack: h.txt\n  needle: n\n  question: q\n"
#define SETS "experiments:\n  - name: s\n    type: head_set_ablation\n    importance: x.h5:/a\n"
    expect_error(HEAD NEEDLE ABL "    metric: needle_recall\n", NULL, 0,
                 "F:11:5: experiments[0].metric: needle_recall is greedy generation under a set of ablated heads: "
                 "type head_set_ablation only (type is head_ablation)");
    expect_error(HEAD IND SETS "    metric: needle_recall\n", NULL, 0,
                 "experiments[0].metric: needle_recall needs needle prompts: the needle generator or a file with "
                 "needle_start/needle_len (dataset is induction)");
    expect_error(HEAD NEEDLE SETS "    metric: needle_recall\n    mode: mean\n", NULL, 0,
                 "F:13:5: experiments[0].mode: needle_recall takes zero, scale or uniform (mode mean sets z per "
                 "position of the prompt, which generated tokens do not have)");
    {
        hs_config *c = load_ok(HEAD NEEDLE SETS "    metric: needle_recall\n    mode: uniform\n", NULL, 0);
        cr_assert_eq(c->experiments[0].metric, HS_CONFIG_METRIC_NEEDLE_RECALL);
        cr_assert_str_eq(hs_config_metric_name(c->experiments[0].metric), "needle_recall");
        hs_config_free(c);
    }
#undef NEEDLE
#undef SETS
    expect_error(HEAD "dataset:\n  generator: induction\n  token_min: 500\n  token_max: 500\n" ABL,
                 NULL, 0, "F:6:3: dataset: token_min (500) must be below token_max (500)");
    expect_error(HEAD IND ABL "    mode: scale\n    scale: .inf\n", NULL, 0,
                 "F:9:12: experiments[0].scale: expected a number, got '.inf'");
}

Test(config, missing_required) {
    hs_config *c = NULL;
    hs_err err = {0};
    cr_assert_eq(load_text("output: o.h5\n" IND ABL, NULL, 0, &c, &err), HS_ERR_MISSING);
    cr_assert(strstr(err.msg, "F:1:1: missing required key 'model'"), "%s", err.msg);
    expect_error("model: m\n" IND ABL, NULL, 0, "F:1:1: missing required key 'output'");
    expect_error(HEAD ABL, NULL, 0, "F:1:1: missing required key 'dataset'");
    expect_error(HEAD IND, NULL, 0, "F:1:1: missing required key 'experiments'");
    expect_error(HEAD "model: null\n" IND ABL, NULL, 0, "duplicate key"); /* YAML forbids it */
    expect_error("model:\noutput: o\n" IND ABL, NULL, 0, "F:1:1: missing required key 'model'");
    expect_error(HEAD IND "experiments:\n  - name: a\n", NULL, 0,
                 "F:6:5: experiments[0]: missing required key 'type'");
    expect_error(HEAD IND "experiments:\n  - type: capture\n", NULL, 0,
                 "F:6:5: experiments[0]: missing required key 'name'");
    expect_error(HEAD IND "experiments:\n  - {name: p, type: pruning_curve}\n", NULL, 0,
                 "F:6:5: experiments[0]: type pruning_curve needs 'importance'");
    expect_error(HEAD "dataset:\n  generator: needle\n  needle: n\n  question: q\n" ABL, NULL, 0,
                 "F:4:3: dataset: generator needle needs 'haystack'");
    expect_error(HEAD "dataset:\n  max_len: 5\n" ABL, NULL, 0,
                 "F:4:3: dataset: needs 'file' (JSONL prompts) or 'generator'");
}

Test(config, duplicate_names) {
    expect_error(HEAD IND ABL "  - name: abl\n    type: head_scores\n", NULL, 0,
                 "F:8:11: experiments[1].name: 'abl' is already used by experiments[0]");
}

Test(config, key_not_applicable) {
    expect_error(HEAD IND ABL "    targets: [z_all_pos]\n", NULL, 0,
                 "F:8:5: experiments[0].targets does not apply to type head_ablation "
                 "(it applies to: activation_patching)");
    expect_error(HEAD IND "experiments:\n  - name: s\n    mode: mean\n    type: head_scores\n", NULL, 0,
                 "F:7:5: experiments[0].mode does not apply to type head_scores (it applies to: "
                 "head_ablation, pruning_curve, head_set_ablation)");
    expect_error(HEAD IND "experiments:\n  - name: p\n    type: activation_patching\n    method: gradient\n", NULL, 0,
                 "F:8:13: experiments[0].method: 'gradient' is not one of exact, attribution");
    expect_error(HEAD IND ABL "    method: attribution\n", NULL, 0,
                 "F:8:5: experiments[0].method does not apply to type head_ablation "
                 "(it applies to: activation_patching)");
    expect_error(HEAD "dataset:\n  generator: ioi\n" "experiments:\n  - name: d\n    type: direct_logit_attribution\n"
                 "    by_position: true\n", NULL, 0,
                 "F:8:5: experiments[0].by_position only applies with positions all or second_half (positions is last)");
    expect_error(HEAD IND ABL "    fold_norms: false\n", NULL, 0,
                 "F:8:5: experiments[0].fold_norms does not apply to type head_ablation "
                 "(it applies to: circuit_scores)");
    expect_error(HEAD IND "experiments:\n  - name: w\n    type: circuit_scores\n    circuits: [induction]\n", NULL, 0,
                 "F:8:16: experiments[0].circuits[0]: 'induction' is not one of q_composition, k_composition, "
                 "v_composition, copying");
    expect_error(HEAD IND ABL "    ig_steps: 3\n", NULL, 0,
                 "F:8:5: experiments[0].ig_steps does not apply to type head_ablation "
                 "(it applies to: edge_attribution)");
    expect_error(HEAD IND "experiments:\n  - name: e\n    type: edge_attribution\n    metric: loss\n", NULL, 0,
                 "F:7:5: experiments[0]: edge_attribution needs clean/corrupt pairs: a file dataset or the ioi "
                 "generator (dataset is induction)");
    expect_error(HEAD "dataset:\n  generator: ioi\n" "experiments:\n  - {name: e, type: edge_attribution, ig_steps: 0}\n",
                 NULL, 0, "ig_steps");
    expect_error(HEAD "dataset:\n  generator: ioi\n"
                 "experiments:\n  - {name: f, type: circuit_faithfulness, n_edges: [1]}\n",
                 NULL, 0, "edges_from");
    expect_error(HEAD "dataset:\n  generator: ioi\n"
                 "experiments:\n  - {name: f, type: circuit_faithfulness, edges_from: e}\n",
                 NULL, 0, "n_edges");
    expect_error(HEAD "dataset:\n  generator: ioi\n"
                 "experiments:\n  - {name: a, type: head_ablation}\n"
                 "  - {name: f, type: circuit_faithfulness, edges_from: a, n_edges: [1]}\n",
                 NULL, 0,
                 "F:7:55: experiments[1].edges_from: 'a' is head_ablation; experiment 'f' needs an edge_attribution "
                 "experiment of this config, or FILE.h5:/group/edges");
    expect_error(HEAD "dataset:\n  generator: ioi\n"
                 "experiments:\n  - {name: f, type: circuit_faithfulness, edges_from: nope, n_edges: [1]}\n",
                 NULL, 0, "'nope' is no experiment of this config");
    expect_error(HEAD IND ABL "    n_edges: [3]\n", NULL, 0,
                 "F:8:5: experiments[0].n_edges does not apply to type head_ablation "
                 "(it applies to: circuit_faithfulness)");
    expect_error(HEAD IND ABL "    scale: 0.5\n", NULL, 0,
                 "F:8:5: experiments[0].scale only applies with mode scale (mode is zero)");
    expect_error(HEAD IND ABL "    mode: zero\n    mean_over: dataset\n", NULL, 0,
                 "F:9:5: experiments[0].mean_over only applies with mode mean (mode is zero)");
    expect_error(HEAD "dataset:\n  generator: induction\n  templates: baba\n" ABL, NULL, 0,
                 "F:5:3: dataset.templates does not apply to generator induction (it applies to: ioi)");
    expect_error(HEAD "dataset:\n  file: p.jsonl\n  n: 5\n" ABL, NULL, 0,
                 "F:5:3: dataset.n does not apply to a file dataset (it applies to: ioi, induction)");
    /* what the dataset must provide */
    expect_error(HEAD IND "experiments:\n  - name: p\n    type: activation_patching\n", NULL, 0,
                 "F:7:5: experiments[0]: activation_patching needs clean/corrupt pairs");
    expect_error(HEAD "dataset:\n  generator: ioi\n" "experiments:\n  - name: s\n    type: head_scores\n"
                 "    scores: [induction, olsson_induction]\n", NULL, 0,
                 "F:8:5: experiments[0].scores: olsson_induction needs the induction generator");
    expect_error(HEAD IND ABL "    mode: mean\n    mean_over: template\n", NULL, 0,
                 "F:9:5: experiments[0].mean_over: template needs templated prompts");
    /* direct logit attribution reads the logit difference: answers and distractors, no positions */
    expect_error(HEAD IND "experiments:\n  - name: d\n    type: direct_logit_attribution\n", NULL, 0,
                 "F:7:5: experiments[0].metric: logit_diff needs answers and distractors");
    expect_error(HEAD "dataset:\n  generator: ioi\n" "experiments:\n  - name: d\n    type: direct_logit_attribution\n"
                 "    positions: second_half\n", NULL, 0,
                 "F:8:5: experiments[0].positions: second_half is the loss of a head_set_ablation, or the next "
                 "tokens' logits of a direct_logit_attribution (metric logit)");
    /* over positions it scores each next token: no answers needed */
    hs_config *dc = load_ok(HEAD IND "experiments:\n  - name: d\n    type: direct_logit_attribution\n"
                            "    metric: logit\n    positions: second_half\n", NULL, 0);
    cr_assert_eq(dc->experiments[0].positions, HS_CONFIG_POSITIONS_SECOND_HALF);
    hs_config_free(dc);
    expect_error(HEAD IND ABL "    metric: logit\n", NULL, 0,
                 "F:8:5: experiments[0].metric: logit needs each prompt's answer token");
}

Test(config, importance_references) {
    expect_error(HEAD IND "experiments:\n  - name: p\n    type: pruning_curve\n    importance: abl\n",
                 NULL, 0, "F:8:17: experiments[0].importance: no experiment named 'abl' in this "
                          "config (experiment 'p' needs it)");
    expect_error(HEAD IND "experiments:\n  - {name: s, type: head_scores}\n"
                 "  - {name: p, type: pruning_curve, importance: s}\n", NULL, 0,
                 "F:7:48: experiments[1].importance: 's' is a head_scores experiment; experiment "
                 "'p' needs a head_ablation");
    expect_error(HEAD IND "experiments:\n  - {name: p, type: pruning_curve, importance: \"a b\"}\n",
                 NULL, 0, "experiments[0].importance: expected the name of an experiment (EXPERIMENT/SCORE for one score of a head_scores), or FILE.h5:/group/dataset");
    expect_error(HEAD IND "experiments:\n  - {name: p, type: pruning_curve, importance: f.h5:/x, "
                 "recompute: true}\n", NULL, 0,
                 "F:6:57: experiments[0].recompute needs importance from an experiment of this config");
    /* order does not matter: the reference may come first */
    hs_config *c = load_ok(HEAD IND "experiments:\n  - {name: p, type: pruning_curve, importance: a}\n"
                           "  - {name: a, type: head_ablation}\n", NULL, 0);
    hs_config_free(c);
}

Test(config, file_and_generator) {
    expect_error(HEAD "dataset:\n  file: a.jsonl\n  generator: ioi\n" ABL, NULL, 0,
                 "F:5:3: dataset: 'file' and 'generator' are mutually exclusive");
}

Test(config, malformed_yaml) {
    expect_error(HEAD "seed: 1: 2\n" IND ABL, NULL, 0, "F:3:8:");
    expect_error("model: a\nmodel: b\n", NULL, 0, "F:2:1: duplicate key");
    expect_error(HEAD "dataset: {generator: ioi\n" ABL, NULL, 0, "F:");
    expect_error("", NULL, 0, "F:1:1: expected a mapping with model, output, dataset and experiments");
    expect_error("# only a comment\n", NULL, 0, "F:1:1: expected a mapping");
    expect_error("- a\n- b\n", NULL, 0, "F:1:1: expected a mapping");
    hs_config *c = (hs_config *)1;
    hs_err err = {0};
    cr_assert_eq(hs_config_load("/nonexistent/x.yaml", NULL, 0, &c, &err), HS_ERR_IO);
    cr_assert_null(c);
    cr_assert(strstr(err.msg, "/nonexistent/x.yaml: cannot open"), "%s", err.msg);
}

/* ---- overrides ------------------------------------------------------------- */

#define OV_BASE HEAD "dataset:\n  generator: ioi\n" \
    "experiments:\n  - name: abl\n    type: head_ablation\n    mode: mean\n" \
    "  - name: pat\n    type: activation_patching\n"

static char *emit(const hs_config *c);
static void check_round_trip(hs_config *c);

Test(config, overrides_apply) {
    static const char *const sets[] = {
        "batch_size=16",          "dataset.n=100",       "experiments.0.metric=kl",
        "experiments.abl.mean_over=template", "experiments.pat.layers=[2, 0]", "device=cuda:1",
        "seed=7",                 "output=~/o.h5",       "shard=1/3", "experiments.1.name=patch2",
        "experiments.patch2.targets=[z_by_pos, resid_pre, k_all_pos]", "experiments.patch2.method=attribution",
        "experiments.patch2.qk_fix=false", "experiments.patch2.grad_drop=true",
    };
    setenv("HOME", "/home/tester", 1);
    hs_config *c = load_ok(OV_BASE, sets, (int)(sizeof sets / sizeof *sets));
    cr_assert_eq(c->batch_size, 16);
    cr_assert_eq(c->dataset.n, 100);
    cr_assert_eq(c->experiments[0].metric, HS_CONFIG_METRIC_KL);
    cr_assert_eq(c->experiments[0].positions, HS_CONFIG_POSITIONS_ALL); /* follows the metric */
    cr_assert_eq(c->experiments[0].mean_over, HS_CONFIG_MEAN_OVER_TEMPLATE);
    cr_assert_eq(c->experiments[1].layers.n, 2);
    cr_assert_eq(c->experiments[1].layers.v[0], 0);
    cr_assert_eq(c->experiments[1].method, HS_CONFIG_METHOD_ATTRIBUTION);
    cr_assert_eq(c->experiments[0].method, HS_CONFIG_METHOD_EXACT);
    cr_assert_str_eq(c->experiments[1].name, "patch2");
    cr_assert_eq(c->experiments[1].targets, HS_CONFIG_BIT(HS_CONFIG_TARGET_Z_BY_POS) |
                                                HS_CONFIG_BIT(HS_CONFIG_TARGET_RESID_PRE) |
                                                HS_CONFIG_BIT(HS_CONFIG_TARGET_K_ALL_POS));
    cr_assert_eq(c->experiments[1].qk_fix, 0);
    cr_assert_eq(hs_config_experiment_default_params(HS_CONFIG_EXP_ACTIVATION_PATCHING).qk_fix, 1);
    cr_assert_eq(c->experiments[1].grad_drop, 1);
    cr_assert_eq(hs_config_experiment_default_params(HS_CONFIG_EXP_ACTIVATION_PATCHING).grad_drop, 0);
    hs_config_free(c);
    static const char *const sets_path[] = {"experiments.pat.targets=[path_heads, z_all_pos]",
                                            "experiments.pat.receivers=[L9H6, L10H0, L9H9]",
                                            "experiments.pat.receiver_input=k"};
    c = load_ok(OV_BASE, sets_path, 3);
    const hs_config_experiment *pe = &c->experiments[1];
    cr_assert_eq(pe->receivers.n, 3);
    const int want_recv[6] = {9, 6, 10, 0, 9, 9}; /* in the order given */
    for (int i = 0; i < 6; i++) cr_assert_eq(pe->receivers.v[i], want_recv[i]);
    cr_assert_eq(pe->receiver_input, HS_CONFIG_RECEIVER_K);
    char *yaml = emit(c);
    cr_assert(strstr(yaml, "    receivers: [L9H6, L10H0, L9H9]\n    receiver_input: k\n"), "%s", yaml);
    check_round_trip(c);
    free(yaml);
    hs_config_free(c);
    c = load_ok(OV_BASE, sets, (int)(sizeof sets / sizeof *sets));
    cr_assert(c->device.kind == HS_CONFIG_DEVICE_CUDA && c->device.ids[0] == 1);
    cr_assert_eq(c->seed, 7);
    cr_assert_str_eq(c->output, "/home/tester/o.h5");
    cr_assert(c->shard.set && c->shard.index == 1 && c->shard.count == 3);
    hs_config_free(c);

    /* null restores the default; switching the dataset source */
    static const char *const sets2[] = {"batch_size=null", "dataset.generator=null",
                                        "dataset.n=", "dataset.file=p.jsonl",
                                        "experiments.abl.mode=zero"};
    c = load_ok(HEAD "batch_size: 3\n" "dataset:\n  generator: ioi\n  n: 5\n" ABL
                "    mode: mean\n", sets2, 5);
    cr_assert_eq(c->batch_size, 8);
    cr_assert_eq(c->dataset.kind, HS_CONFIG_DATASET_FILE);
    cr_assert_str_eq(c->dataset.file, "p.jsonl");
    cr_assert_eq(c->experiments[0].mode, HS_CONFIG_MODE_ZERO);
    hs_config_free(c);
}

Test(config, overrides_errors) {
    const char *s1[] = {"experiments.3.metric=kl"};
    expect_error(OV_BASE, s1, 1, "--set experiments.3.metric=kl: no experiment 3 (there are 2)");
    const char *s2[] = {"experiments.zzz.metric=kl"};
    expect_error(OV_BASE, s2, 1, "--set experiments.zzz.metric=kl: no experiment named 'zzz'");
    const char *s3[] = {"experiments.0.metric=los"};
    expect_error(OV_BASE, s3, 1, "--set experiments.0.metric=los: experiments[0].metric: 'los' is "
                                 "not one of loss, logprob, logit_diff, kl, accuracy");
    const char *s4[] = {"batch_size"};
    expect_error(OV_BASE, s4, 1, "--set batch_size: expected KEY=VALUE");
    const char *s5[] = {"foo=1"};
    expect_error(OV_BASE, s5, 1, "--set foo=1: unknown key 'foo' (expected one of: model,");
    const char *s6[] = {"dataset.bar=1"};
    expect_error(OV_BASE, s6, 1, "--set dataset.bar=1: unknown key 'bar' in dataset (expected");
    const char *s7[] = {"experiments.0.layers=[0,1"};
    expect_error(OV_BASE, s7, 1, "--set experiments.0.layers=[0,1: malformed value:");
    const char *s8b[] = {"experiments.pat.qk_fix=false"};
    expect_error(OV_BASE, s8b, 1, "--set experiments.pat.qk_fix=false: experiments[1].qk_fix only applies with "
                                  "method attribution (method is exact)");
    const char *s8d[] = {"experiments.pat.method=attribution", "experiments.pat.targets=[z_all_pos, path_logits]"};
    expect_error(OV_BASE, s8d, 2, "experiments[1].targets: path_logits needs method exact");
    const char *s8e[] = {"experiments.pat.targets=[path_heads]"};
    expect_error(OV_BASE, s8e, 1, "experiments[1].targets: path_heads needs 'receivers' (heads like L9H6)");
    const char *s8f[] = {"experiments.pat.receivers=[L1H2]"};
    expect_error(OV_BASE, s8f, 1, "--set experiments.pat.receivers=[L1H2]: experiments[1].receivers only applies "
                                  "with target path_heads");
    const char *s8g[] = {"experiments.pat.targets=[path_heads]", "experiments.pat.receivers=[L1H2, 9.6]"};
    expect_error(OV_BASE, s8g, 2, "experiments[1].receivers[1]: expected a head like L9H6 (layer 9, head 6), got "
                                  "'9.6'");
    const char *s8h[] = {"experiments.pat.targets=[path_heads]", "experiments.pat.receivers=[L1H2, L1H2]"};
    expect_error(OV_BASE, s8h, 2, "experiments[1].receivers: L1H2 appears twice");
    const char *s8i[] = {"experiments.pat.targets=[path_heads]", "experiments.pat.receivers=[L1H2]",
                         "experiments.pat.method=attribution"};
    expect_error(OV_BASE, s8i, 3, "experiments[1].targets: path_heads needs method exact");
    const char *s8j[] = {"experiments.pat.targets=[path_heads]", "experiments.pat.receivers=[L1H2]",
                         "experiments.pat.receiver_input=z"};
    expect_error(OV_BASE, s8j, 3, "experiments[1].receiver_input: 'z' is not one of q, k, v");
    const char *s8c[] = {"experiments.pat.grad_drop=true"};
    expect_error(OV_BASE, s8c, 1, "--set experiments.pat.grad_drop=true: experiments[1].grad_drop only applies with "
                                  "method attribution (method is exact)");
    const char *s8[] = {"experiments.0.targets=[z_by_pos]"};
    expect_error(OV_BASE, s8, 1, "--set experiments.0.targets=[z_by_pos]: experiments[0].targets "
                                 "does not apply to type head_ablation");
    /* an override that makes a file key inapplicable points at the file key */
    const char *s9[] = {"experiments.0.type=capture"};
    expect_error(OV_BASE, s9, 1, "F:8:5: experiments[0].mode does not apply to type capture");
    const char *s10[] = {"batch_size=0"};
    expect_error(OV_BASE, s10, 1, "--set batch_size=0: batch_size: 0 is out of range 1..65536");
    const char *s11[] = {"dataset={n: 3}"};
    expect_error(OV_BASE, s11, 1, "--set dataset={n: 3}: cannot replace the whole dataset section");
    const char *s12[] = {"a.b.c.d=1"};
    expect_error(OV_BASE, s12, 1, "--set a.b.c.d=1: unknown key path 'a.b.c.d'");
    const char *s13[] = {"dataset.file=x.jsonl"};
    expect_error(OV_BASE, s13, 1, "--set dataset.file=x.jsonl: dataset: 'file' and 'generator' are "
                                  "mutually exclusive");
    const char *s14[] = {"model=null"};
    expect_error(OV_BASE, s14, 1, "missing required key 'model'");
}

/* ---- canonical YAML ---------------------------------------------------------- */

static char *emit(const hs_config *c) {
    char *text = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_config_resolved_yaml(c, &text, &err), HS_OK, "%s", err.msg);
    return text;
}

/* load -> emit -> load -> emit must give the same text. */
static void check_round_trip(hs_config *c) {
    char *t1 = emit(c);
    hs_config *c2 = load_ok(t1, NULL, 0);
    char *t2 = emit(c2);
    cr_assert_str_eq(t1, t2);
    hs_config_free(c2);
    free(t1);
    free(t2);
}

Test(config, round_trip) {
    for (size_t i = 0; i < N_OF(example_configs); i++) {
        hs_config *c = load_example(example_configs[i]);
        check_round_trip(c);
        hs_config_free(c);
    }
    static const char *const sets[] = {"device=[cuda:2,cuda:0]", "shard=0/2", "dtype=bf16"};
    hs_config *c = load_ok(
        HEAD "seed: 12345678901234567\n" "dataset:\n  generator: needle\n  haystack: \"h a.txt\"\n"
        "  needle: \"tab\\there \\\"quoted\\\" \\\\ back é\"\n  question: 'q: why?'\n"
        "  depths: [0.3333333333333333, 1e-3]\n"
        "experiments:\n  - {name: s, type: head_scores, heads: [3, 1]}\n"
        "  - {name: a, type: head_ablation, mode: scale, scale: -2.5e-7, whole_layers: true}\n"
        "  - {name: p, type: pruning_curve, importance: \"r.h5:/a/mean\", step: 0.05}\n"
        "  - {name: c, type: capture, hooks: [result, z], prompts: [0, 7]}\n",
        sets, 3);
    check_round_trip(c);
    hs_config_free(c);
}

Test(config, canonical_text) {
    hs_config *c = load_ok("experiments: [{type: head_ablation, name: a, mode: mean}]\n"
                           "output: o.h5\nmodel: 'm.gguf'\ndataset: {generator: induction, n: 4}\n",
                           NULL, 0);
    char *t = emit(c);
    cr_assert_str_eq(t, "model: \"m.gguf\"\n"
                        "device: cpu\n"
                        "dtype: f32\n"
                        "seed: 0\n"
                        "batch_size: 8\n"
                        "threads: 0\n"
                        "backward_memory_mb: 2048\n"
                        "output: \"o.h5\"\n"
                        "overwrite: false\n"
                        "shard: null\n"
                        "dataset:\n"
                        "  generator: induction\n"
                        "  n: 4\n"
                        "  seq_len: 50\n"
                        "  token_min: 100\n"
                        "  token_max: 20000\n"
                        "  max_len: 0\n"
                        "experiments:\n"
                        "  - name: \"a\"\n"
                        "    type: head_ablation\n"
                        "    metric: loss\n"
                        "    positions: all\n"
                        "    mode: mean\n"
                        "    mean_over: dataset\n"
                        "    layers: all\n"
                        "    heads: all\n"
                        "    whole_layers: false\n"
                        "    all_but_one: false\n"
                        "    split_layers: 1\n");
    free(t);
    /* the sweep text leaves out where and how a run is placed */
    static const char *const sets[] = {"shard=1/4", "output=other.h5", "device=all", "threads=2",
                                       "backward_memory_mb=0"};
    hs_config *c2 = load_ok("experiments: [{type: head_ablation, name: a, mode: mean}]\n"
                            "output: o.h5\nmodel: 'm.gguf'\ndataset: {generator: induction, n: 4}\n",
                            sets, 5);
    cr_assert_eq(c2->backward_memory_mb, 0);
    char *s1 = NULL, *s2 = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_config_sweep_yaml(c, &s1, &err), HS_OK);
    cr_assert_eq(hs_config_sweep_yaml(c2, &s2, &err), HS_OK);
    cr_assert_str_eq(s1, s2);
    cr_assert_null(strstr(s1, "output:"));
    cr_assert_null(strstr(s1, "shard:"));
    cr_assert(strstr(s1, "batch_size: 8\n"));
    free(s1);
    free(s2);
    hs_config_free(c);
    hs_config_free(c2);
}

/* A config built from the default_params functions emits the same text as
 * the loader's defaults: the two agree. */
Test(config, default_params_match_loader) {
    hs_config *c = malloc(sizeof *c);
    cr_assert_not_null(c);
    *c = hs_config_default_params();
    c->model = strdup("m.gguf");
    c->output = strdup("o.h5");
    c->dataset = hs_config_dataset_default_params(HS_CONFIG_DATASET_IOI);
    c->n_experiments = 2;
    c->experiments = calloc(2, sizeof *c->experiments);
    c->experiments[0] = hs_config_experiment_default_params(HS_CONFIG_EXP_ACTIVATION_PATCHING);
    c->experiments[0].name = strdup("p");
    c->experiments[1] = hs_config_experiment_default_params(HS_CONFIG_EXP_HEAD_ABLATION);
    c->experiments[1].name = strdup("a");
    char *t1 = emit(c);
    hs_config *c2 = load_ok("model: m.gguf\noutput: o.h5\ndataset: {generator: ioi}\n"
                            "experiments: [{name: p, type: activation_patching},"
                            " {name: a, type: head_ablation}]\n", NULL, 0);
    char *t2 = emit(c2);
    cr_assert_str_eq(t1, t2);
    free(t1);
    free(t2);
    hs_config_free(c);
    hs_config_free(c2);
}

/* ---- the CLI ------------------------------------------------------------------ */

static int run_cli(const char *args, char *out, size_t n, const char *redirect) {
    return hs_test_run_cli(args, redirect, out, n);
}

Test(config, cli_validate) {
    char out[16384], path[64], args[256];
    cr_assert_eq(run_cli("validate configs/smollm2-ioi.yaml --set batch_size=4", out, sizeof out,
                         "2>&1"), 0, "%s", out);
    cr_assert(strstr(out, "batch_size: 4\n"), "%s", out);
    cr_assert(strstr(out, "  - name: \"patching\"\n    type: activation_patching\n"), "%s", out);
    /* errors go to stderr, one line, and nothing from libfyaml itself */
    write_tmp(path, sizeof path, HEAD "seed: [1\n" IND ABL);
    snprintf(args, sizeof args, "validate %s", path);
    cr_assert_eq(run_cli(args, out, sizeof out, "2>&1 >/dev/null"), 1, "%s", out);
    cr_assert(strstr(out, path), "%s", out);
    cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1, "more than one line: %s", out);
    unlink(path);
    cr_assert_eq(run_cli("validate configs/smollm2-ioi.yaml --set experiments.9.mode=zero", out,
                         sizeof out, "2>&1"), 1);
    cr_assert(strstr(out, "--set experiments.9.mode=zero: no experiment 9"), "%s", out);
    cr_assert_eq(run_cli("validate", out, sizeof out, "2>&1"), 2);
}

/* head_set_ablation and split_layers: defaults, the EXPERIMENT/SCORE ranking
 * and what is refused, with the location. */
Test(config, head_sets_and_split_layers) {
    hs_config *c = load_ok(HEAD IND
                           "experiments:\n  - name: sc\n    type: head_scores\n    scores: [induction, olsson_induction]\n"
                           "  - name: set\n    type: head_set_ablation\n    importance: sc/olsson_induction\n"
                           "    positions: second_half\n  - name: abl\n    type: head_ablation\n    split_layers: 4\n",
                           NULL, 0);
    cr_assert_eq(c->experiments[1].top_k, 10);
    cr_assert_eq(c->experiments[1].random_sets, 10);
    cr_assert_str_eq(c->experiments[1].importance.experiment, "sc/olsson_induction");
    cr_assert_eq(c->experiments[1].positions, HS_CONFIG_POSITIONS_SECOND_HALF);
    cr_assert_eq(c->experiments[2].split_layers, 4);
    check_round_trip(c);
    hs_config_free(c);
    expect_error(HEAD IND ABL "    split_layers: 0\n", NULL, 0, "F:8:19: experiments[0].split_layers: 0 is out of range");
    expect_error(HEAD IND "experiments:\n  - name: sc\n    type: head_scores\n    scores: [induction]\n"
                          "  - name: set\n    type: head_set_ablation\n    importance: sc/olsson_induction\n",
                 NULL, 0, "'sc/olsson_induction' must name a score that head_scores experiment 'sc' computes");
    expect_error(HEAD IND ABL "    positions: second_half\n", NULL, 0,
                 "positions: second_half is the loss of a head_set_ablation");
    expect_error(HEAD IND "experiments:\n  - name: set\n    type: head_set_ablation\n    importance: nope\n", NULL, 0,
                 "no experiment named 'nope'");
    expect_error(HEAD IND "experiments:\n  - name: set\n    type: head_set_ablation\n    importance: x.h5:/a/b\n"
                          "    top_k: 0\n",
                 NULL, 0, "experiments[0].top_k");
}

/* The text generator: its corpus required, seq_len 512 and every window by default; no answers. */
Test(config, text_generator) {
    hs_config *c = load_ok(HEAD "dataset:\n  generator: text\n  corpus: wiki.txt\n" ABL, NULL, 0);
    cr_assert_eq(c->dataset.kind, HS_CONFIG_DATASET_TEXT);
    cr_assert_str_eq(c->dataset.corpus, "wiki.txt");
    cr_assert(c->dataset.seq_len == 512 && c->dataset.windows == 0 && !c->dataset.window_bos);
    check_round_trip(c);
    hs_config_free(c);
    c = load_ok(HEAD "dataset:\n  generator: text\n  corpus: w.txt\n  seq_len: 128\n  windows: 40\n"
                     "  window_bos: true\n" ABL, NULL, 0);
    cr_assert(c->dataset.seq_len == 128 && c->dataset.windows == 40 && c->dataset.window_bos);
    check_round_trip(c);
    hs_config_free(c);
    expect_error(HEAD "dataset:\n  generator: text\n" ABL, NULL, 0, "dataset: generator text needs 'corpus'");
    expect_error(HEAD "dataset:\n  generator: text\n  corpus: w.txt\n  n: 4\n" ABL, NULL, 0,
                 "F:6:3: dataset.n does not apply to generator text");
    expect_error(HEAD "dataset:\n  generator: induction\n  corpus: w.txt\n" ABL, NULL, 0,
                 "F:5:3: dataset.corpus does not apply to generator induction (it applies to: text)");
    expect_error(HEAD "dataset:\n  generator: text\n  corpus: w.txt\n"
                      "experiments:\n  - name: abl\n    type: head_ablation\n    metric: logprob\n",
                 NULL, 0, "metric: logprob needs each prompt's answer token");
    expect_error(HEAD "dataset:\n  generator: text\n  corpus: w.txt\n  windows: -1\n" ABL, NULL, 0, "F:6:");
    expect_error(HEAD "dataset:\n  generator: text\n  corpus: w.txt\n  seq_len: 1\n" ABL, NULL, 0,
                 "F:6:3: dataset: seq_len 1: a text window needs at least 2 tokens");
}
