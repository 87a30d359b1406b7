/* The headsweep CLI as a user runs it: exit codes, output, and one clear
 * message naming the file on bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_safetensors.h"
#include "hs_testutil.h"

/* stdout and stderr together, as a user sees them */
static int run_cli(const char *args, char *out, size_t n) { return hs_test_run_cli(args, "2>&1", out, n); }

Test(cli, info_prints_architecture) {
    char model[1024], args[1200], out[8192];
    hs_test_fixture_path(model, sizeof model, "models/llama_gqa");
    snprintf(args, sizeof args, "info '%s'", model);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "LlamaForCausalLM"), "%s", out);
    cr_assert(strstr(out, "heads:         6 (kv heads 2)"), "%s", out);
    cr_assert(strstr(out, "d_head:        12"), "%s", out);
}

Test(cli, forward_prints_top_k) {
    char model[1024], args[1200], out[8192];
    hs_test_fixture_path(model, sizeof model, "models/gpt2");
    snprintf(args, sizeof args, "forward '%s' --tokens 5,17,42 --top-k 3", model);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "top-3 next tokens"), "%s", out);
    cr_assert(strstr(out, "   3  id"), "%s", out);
}

Test(cli, bad_inputs_exit_nonzero_with_message) {
    char model[1024], args[1200], out[8192];
    cr_assert_eq(run_cli("info /nonexistent/model.gguf", out, sizeof out), 1);
    cr_assert(strstr(out, "/nonexistent/model.gguf"), "%s", out);
    hs_test_fixture_path(model, sizeof model, "models/gpt2");
    snprintf(args, sizeof args, "forward '%s' --tokens 5,300", model);
    cr_assert_eq(run_cli(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "token id 300 outside vocabulary"), "%s", out);
    snprintf(args, sizeof args, "forward '%s' --tokens 5,x", model);
    cr_assert_eq(run_cli(args, out, sizeof out), 2, "%s", out);
    cr_assert_eq(run_cli("frobnicate", out, sizeof out), 2);
    cr_assert(strstr(out, "unknown command 'frobnicate'"), "%s", out);
    /* a file that is not a model */
    hs_test_fixture_path(model, sizeof model, "README.md");
    snprintf(args, sizeof args, "info '%s'", model);
    cr_assert_eq(run_cli(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "README.md"), "%s", out);
}

/* run -> plot through the CLI, as a user would: a config on a tiny model,
 * the HDF5 result, and an SVG heatmap of it. */
Test(cli, run_then_plot) {
    char dir[] = "/tmp/hs_test_cli_XXXXXX", model[1024], args[2048], out[8192], path[256];
    cr_assert_not_null(mkdtemp(dir));
    hs_test_fixture_path(model, sizeof model, "models/gpt2");
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "model: %s\noutput: %s/r.h5\nbatch_size: 10\ndataset:\n  generator: induction\n  n: 3\n  seq_len: 4\n"
               "  token_min: 5\n  token_max: 300\nexperiments:\n  - name: abl\n    type: head_ablation\n"
               "  - name: grad\n    type: head_importance\n"
               "  - name: circ\n    type: circuit_scores\n    circuits: [k_composition, copying]\n",
            model, dir);
    fclose(f);
    snprintf(args, sizeof args, "run %s", path);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "wrote"), "%s", out);
    cr_assert_eq(run_cli(args, out, sizeof out), 1, "second run must refuse the existing output: %s", out);
    cr_assert(strstr(out, "--overwrite"), "%s", out);
    snprintf(args, sizeof args, "plot %s/r.h5 --experiment abl -o %s/h.svg", dir, dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    snprintf(path, sizeof path, "%s/h.svg", dir);
    f = fopen(path, "r");
    cr_assert_not_null(f);
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    fclose(f);
    cr_assert(strstr(out, "<svg") && strstr(out, "L2 H4:"), "not a 3x5 heatmap: %.200s", out);
    /* top ranks a head_importance by its normalised importance without --dataset */
    snprintf(args, sizeof args, "top %s/r.h5 --experiment grad", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "grad/importance"), "%s", out);
    /* circuit scores: copying by default; the strongest writers into one reader head, the masked
       pairs (reader not later) never ranked */
    snprintf(args, sizeof args, "top %s/r.h5 --experiment circ -k 2", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "circ/copying"), "%s", out);
    snprintf(args, sizeof args, "top %s/r.h5 --experiment circ --dataset k_composition --reader L2H4 -k 3", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    hs_st_file *ref = NULL;
    hs_err err = {0};
    hs_test_fixture_path(path, sizeof path, "ref/gpt2_circuit.safetensors");
    cr_assert_eq(hs_st_open(path, &ref, &err), HS_OK, "%s", err.msg);
    const float *kc = hs_test_ref_tensor(ref, "fold.k")->data; /* [3, 5, 3, 5] */
    float best = 0;
    for (int w = 0; w < 10; w++) best = fmaxf(best, kc[(w * 3 + 2) * 5 + 4]); /* writers in layers 0, 1 */
    int l1, h1;
    float v;
    const char *line = strstr(out, "  1  L");
    cr_assert(line && sscanf(line, "  1  L%dH%d -> L2H4 %f", &l1, &h1, &v) == 3, "%s", out);
    cr_assert(l1 < 2 && fabsf(v - best) < 1e-4f && fabsf(kc[((l1 * 5 + h1) * 3 + 2) * 5 + 4] - v) < 1e-4f,
              "top writer L%dH%d %g, the reference's best %g: %s", l1, h1, v, best, out);
    cr_assert(strstr(out, "  3  L") && !strstr(out, "  4  L"), "%s", out);
    hs_st_close(ref);
    snprintf(args, sizeof args, "top %s/r.h5 --experiment circ --dataset k_composition --reader L0H1", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    cr_assert(!strstr(out, "  1  L"), "layer 0 reads from no earlier head: %s", out);
    snprintf(args, sizeof args, "top %s/r.h5 --experiment circ --dataset k_composition --reader L-1H0", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 2, "%s", out);
    /* the same writers as a [layer, head] heatmap; the cell of the top writer holds its score */
    snprintf(args, sizeof args, "plot %s/r.h5 --experiment circ --dataset k_composition --reader L2H4 -o %s/k.svg", dir,
             dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    snprintf(path, sizeof path, "%s/k.svg", dir);
    f = fopen(path, "r");
    cr_assert_not_null(f);
    n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    fclose(f);
    char cell[64];
    snprintf(cell, sizeof cell, "<title>L%d H%d: ", l1, h1);
    const char *at = strstr(out, cell);
    float sv = NAN;
    cr_assert(at && sscanf(at + strlen(cell), "%f", &sv) == 1 && fabsf(sv - v) < 1e-4f, "cell %s holds %g, not %g", cell,
              sv, v);
    cr_assert(strstr(out, "into L2H4") && strstr(out, "<title>L2 H4: 0</title>"), "not the writers into L2H4: %.300s",
              out);
    snprintf(args, sizeof args, "plot %s/r.h5 --experiment nope", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 1);
    cr_assert(strstr(out, "nope"), "%s", out);
    hs_test_remove_dir(dir);
}

/* `dataset needle` with --answer on the default model: every JSONL row carries the answer; an
 * answer that is not one token after the question exits 1 and says so. */
Test(cli, dataset_needle_with_answer) {
    char model[1024], hay[1024], args[4096], out[8192], path[256];
    if (!hs_test_smollm2_path(model, sizeof model))
        cr_skip_test("SmolLM2 GGUF not found (set HS_SMOLLM2_GGUF or run scripts/fetch-model.sh)");
    hs_test_fixture_path(hay, sizeof hay, "haystack.txt");
    char dir[] = "/tmp/hs_test_cli_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/n.jsonl", dir);
    const char *common = "--needle 'The secret password is blue harbour.' --question 'The secret password is'";
    snprintf(args, sizeof args, "dataset needle --model '%s' --haystack '%s' %s --answer ' blue' --depths 0.2,0.8 "
             "--lengths 150 -o '%s'", model, hay, common, path);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[16384];
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
        cr_assert(strstr(line, "\"answer\": \" blue\""), "%s", line);
        rows++;
    }
    fclose(f);
    cr_assert_eq(rows, 2);
    snprintf(args, sizeof args, "dataset needle --model '%s' --haystack '%s' %s --answer ' blue harbour' --depths 0.5 "
             "--lengths 150 -o '%s'", model, hay, common, path);
    cr_assert_eq(run_cli(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "the answer ' blue harbour' is not one token after the question"), "%s", out);
    snprintf(args, sizeof args, "rm -rf '%s'", dir);
    cr_assert_eq(system(args), 0);
}

/* Edge attribution through the CLI: run on the fixture's clean/corrupt pairs, then `top` names
 * the edge of largest |score| that TransformerLens's reference has, with its value; `plot` draws
 * the strongest edges. A circuit_faithfulness of those scores: `top` prints its curve, whose
 * 25-edge circuit has TransformerLens's mean metric, and `plot` draws it. */
Test(cli, edge_attribution_top) {
    char dir[] = "/tmp/hs_test_cli_XXXXXX", model[1024], args[2048], out[8192], path[256];
    cr_assert_not_null(mkdtemp(dir));
    hs_test_fixture_path(model, sizeof model, "models/llama_gqa");
    hs_st_file *ref = NULL;
    hs_err err = {0};
    hs_test_fixture_path(path, sizeof path, "ref/llama_gqa_eap.safetensors");
    cr_assert_eq(hs_st_open(path, &ref, &err), HS_OK, "%s", err.msg);
    const hs_prompts pr = hs_test_ref_prompts(ref);
    const int32_t *ct = hs_test_ref_tensor(ref, "corrupt")->data;
    snprintf(path, sizeof path, "%s/p.jsonl", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < pr.N; i++) {
        fprintf(f, "{\"tokens\": [");
        for (int t = 0; t < pr.lengths[i]; t++) fprintf(f, "%s%d", t ? ", " : "", pr.tokens[i * pr.T + t]);
        fprintf(f, "], \"corrupt\": [");
        for (int t = 0; t < pr.lengths[i]; t++) fprintf(f, "%s%d", t ? ", " : "", ct[i * pr.T + t]);
        fprintf(f, "], \"answer\": %d, \"distractor\": %d}\n", pr.answer[i], pr.distractor[i]);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    f = fopen(path, "w");
    fprintf(f, "model: %s\noutput: %s/r.h5\nbatch_size: 2\ndataset:\n  file: %s/p.jsonl\nexperiments:\n"
               "  - name: eap\n    type: edge_attribution\n"
               "  - name: faith\n    type: circuit_faithfulness\n    edges_from: eap\n    n_edges: [0, 25]\n",
            model, dir, dir);
    fclose(f);
    snprintf(args, sizeof args, "run %s", path);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    snprintf(args, sizeof args, "top %s/r.h5 --experiment eap -k 2", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    const hs_st_tensor *e = hs_test_ref_tensor(ref, "logit_diff.edges");
    const float *w = e->data;
    int64_t best = -1;
    for (int64_t i = 0; i < e->numel; i++)
        if (!isnan(w[i]) && (best < 0 || fabsf(w[i]) > fabsf(w[best]))) best = i;
    char up[32], down[32];
    float v;
    const char *at = strstr(out, "  1  ");
    cr_assert(at && sscanf(at, "  1  %31s -> %31s %f", up, down, &v) == 3, "%s", out);
    cr_assert(fabsf(v - w[best]) < 1e-4f * fmaxf(1.0f, fabsf(w[best])), "top edge %s -> %s %g, the reference's %g: %s",
              up, down, v, w[best], out);
    cr_assert(strstr(out, "  2  ") && !strstr(out, "  3  "), "%s", out);
    /* --node: only the edges at one node; the reference's strongest edge into the logits first */
    const int V = (int)e->shape[1];
    int64_t best_l = -1;
    for (int64_t u = 0; u < e->shape[0]; u++) {
        const int64_t i = u * V + V - 1;
        if (!isnan(w[i]) && (best_l < 0 || fabsf(w[i]) > fabsf(w[best_l]))) best_l = i;
    }
    snprintf(args, sizeof args, "top %s/r.h5 --experiment eap --node logits -k 3", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    at = strstr(out, "  1  ");
    cr_assert(at && sscanf(at, "  1  %31s -> %31s %f", up, down, &v) == 3 && !strcmp(down, "logits") &&
                  fabsf(v - w[best_l]) < 1e-4f * fmaxf(1.0f, fabsf(w[best_l])),
              "the strongest edge into the logits is %g: %s", w[best_l], out);
    for (const char *p = strstr(out, "  1  "); p; p = strstr(p + 1, " -> "))
        if (p != at) cr_assert(!strncmp(p, " -> logits", 10), "an edge not into the logits: %s", out);
    /* plot: the k strongest edges as a graph, the strongest with its names and score */
    snprintf(args, sizeof args, "plot %s/r.h5 --experiment eap -k 6 -o %s/e.svg", dir, dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    snprintf(path, sizeof path, "%s/e.svg", dir);
    f = fopen(path, "r");
    cr_assert_not_null(f);
    char svg[16384];
    const size_t got = fread(svg, 1, sizeof svg - 1, f);
    svg[got] = 0;
    fclose(f);
    char want[96];
    snprintf(want, sizeof want, "<title>%s -&gt; %s", up, down); /* into the logits, and the strongest of all */
    cr_assert(strstr(svg, "<svg") && strstr(svg, want), "%s not in %.400s", want, svg);
    int paths = 0;
    for (const char *q = strstr(svg, "<path"); q; q = strstr(q + 1, "<path")) paths++;
    cr_assert_eq(paths, 6, "%d edges drawn, not 6", paths);
    snprintf(args, sizeof args, "top %s/r.h5 --experiment eap --node L9H9", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "no node 'L9H9'"), "%s", out);
    /* the faithfulness curve: the 25 strongest edges give the metric TransformerLens's evaluation gives them */
    hs_st_file *cref = NULL;
    hs_test_fixture_path(path, sizeof path, "ref/llama_gqa_eap_circuit.safetensors");
    cr_assert_eq(hs_st_open(path, &cref, &err), HS_OK, "%s", err.msg);
    const float *wm = hs_test_ref_tensor(cref, "logit_diff.metric")->data; /* [circuit, prompt]; 0: the top 25 */
    double mean25 = 0;
    for (int i = 0; i < pr.N; i++) mean25 += wm[i] / pr.N;
    snprintf(args, sizeof args, "top %s/r.h5 --experiment faith", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    int n0, n25;
    float m0, f0, m25, f25;
    at = strstr(out, "faithfulness\n");
    cr_assert(at && sscanf(at, "faithfulness\n %d %f %f\n %d %f %f", &n0, &m0, &f0, &n25, &m25, &f25) == 6, "%s", out);
    cr_assert(n0 == 0 && fabsf(f0) < 1e-4f && n25 == 25, "%s", out);
    cr_assert(fabs(m25 - mean25) < 1e-4 * fmax(1, fabs(mean25)), "25 edges: %g, TransformerLens %g: %s", m25, mean25,
              out);
    snprintf(args, sizeof args, "plot %s/r.h5 --experiment faith -o %s/f.svg", dir, dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    snprintf(path, sizeof path, "%s/f.svg", dir);
    f = fopen(path, "r");
    cr_assert_not_null(f);
    const size_t got_f = fread(svg, 1, sizeof svg - 1, f);
    svg[got_f] = 0;
    fclose(f);
    cr_assert(strstr(svg, "<polyline") && strstr(svg, "edges in the circuit (log scale, 0 to 25)"), "%.600s", svg);
    hs_st_close(cref);
    hs_st_close(ref);
    snprintf(args, sizeof args, "rm -rf '%s'", dir);
    cr_assert_eq(system(args), 0);
}
