/* Edge attribution patching against TransformerLens 4.3 (make_fixtures.py
 * part eap: split q/k/v inputs, per-head results and hook_mlp_in, each prompt
 * alone, unpadded, f32 activations, scores summed in double): every edge's score averaged over the prompts,
 * EAP for logit_diff, logprob and the loss, EAP-IG (3 steps) for logit_diff
 * and KL. Models: GPT-2 (LayerNorm), Llama with GQA (k and v per KV head,
 * RoPE), GPT-NeoX (the parallel block: an MLP reads no head of its layer).
 * Run here batched with padding and one prompt at a time. Plus the graph's
 * shape and names, the invariant that a corrupted run equal to the clean one
 * scores nothing, and the refusals. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "headsweep/hs_eap.h"
#include "headsweep/hs_safetensors.h"
#include "hs_testutil.h"

typedef struct {
    hs_model *m;
    const hs_model_config *c;
    hs_backend *be;
    hs_session *s;
    hs_st_file *ref;
    hs_prompts pr;
    const int32_t *corrupt;
    int U, V;
} fx;

static void fx_init(fx *f, const char *model, int rows) {
    hs_err err = {0};
    memset(f, 0, sizeof *f);
    hs_test_load_fixture(model, "eap", &f->m, &f->ref);
    f->pr = hs_test_ref_prompts(f->ref);
    f->corrupt = hs_test_ref_tensor(f->ref, "corrupt")->data;
    f->c = hs_model_get_config(f->m);
    f->U = hs_eap_n_upstream(f->c), f->V = hs_eap_n_downstream(f->c);
    cr_assert_eq(hs_backend_cpu_init(NULL, &f->be, &err), HS_OK);
    cr_assert_eq(hs_session_init(f->be, f->m, rows, f->pr.T, &f->s, &err), HS_OK, "%s", err.msg);
}

static void fx_free(fx *f) {
    hs_session_free(f->s);
    hs_backend_free(f->be);
    hs_st_close(f->ref);
    hs_model_free(f->m);
}

/* Scores and metrics of all prompts, as means. */
static void run_all(fx *f, hs_metric metric, int steps, int rows, double *edges, double *clean, double *corrupt) {
    hs_eap_params p = hs_eap_default_params();
    p.metric = metric, p.ig_steps = steps, p.batch_rows = rows;
    hs_err err = {0};
    memset(edges, 0, (size_t)f->U * f->V * sizeof *edges);
    *clean = *corrupt = 0;
    cr_assert_eq(hs_eap_scores(f->s, &f->pr, f->corrupt, &p, 0, f->pr.N, edges, clean, corrupt, &err), HS_OK, "%s",
                 err.msg);
    for (int64_t i = 0; i < (int64_t)f->U * f->V; i++) edges[i] /= f->pr.N;
    *clean /= f->pr.N, *corrupt /= f->pr.N;
}

/* f32 forward and backward here, double in the reference; scores up to ~2:
 * 2e-5 of the largest plus 1e-5 of the value. Non-edges are NaN in the
 * reference and must stay 0 here (never added to). */
static double expect(fx *f, const char *key, const double *got, double clean, double corrupt) {
    char k[80];
    snprintf(k, sizeof k, "%s.edges", key);
    const hs_st_tensor *r = hs_test_ref_tensor(f->ref, k);
    cr_assert_eq(r->numel, (int64_t)f->U * f->V, "%s size", k);
    const float *want = r->data;
    double scale = 0, md = 0;
    for (int64_t i = 0; i < r->numel; i++)
        if (!isnan(want[i])) scale = fmax(scale, fabs(want[i]));
    cr_assert_gt(scale, 1e-3, "%s: the reference scores nothing", k);
    for (int u = 0; u < f->U; u++)
        for (int v = 0; v < f->V; v++) {
            const int64_t i = (int64_t)u * f->V + v;
            char un[32], vn[32];
            hs_eap_upstream_name(f->c, u, un, sizeof un), hs_eap_downstream_name(f->c, v, vn, sizeof vn);
            cr_assert_eq(hs_eap_is_edge(f->c, u, v), !isnan(want[i]), "%s: %s -> %s is%s an edge in the reference", k,
                         un, vn, isnan(want[i]) ? " not" : "");
            if (isnan(want[i])) {
                cr_assert_eq(got[i], 0.0, "%s: non-edge %s -> %s got %g", k, un, vn, got[i]);
                continue;
            }
            const double d = fabs(got[i] - want[i]);
            cr_assert_leq(d, 2e-5 * scale + 1e-5 * fabs(want[i]), "%s: %s -> %s %.7g vs TransformerLens %.7g", k, un,
                          vn, got[i], want[i]);
            md = fmax(md, d);
        }
    snprintf(k, sizeof k, "%s.clean", key);
    const double wc = ((const float *)hs_test_ref_tensor(f->ref, k)->data)[0];
    snprintf(k, sizeof k, "%s.corrupted", key);
    const double wx = ((const float *)hs_test_ref_tensor(f->ref, k)->data)[0];
    cr_assert_leq(fabs(clean - wc), 1e-5 * fmax(1, fabs(wc)), "%s: clean metric %.7g vs %.7g", key, clean, wc);
    cr_assert_leq(fabs(corrupt - wx), 1e-5 * fmax(1, fabs(wx)), "%s: corrupted metric %.7g vs %.7g", key, corrupt, wx);
    return md / scale;
}

static const struct {
    const char *key;
    hs_metric metric;
    int steps;
} cases[] = {{"logit_diff", HS_METRIC_LOGIT_DIFF, 1},
             {"logprob", HS_METRIC_LOGPROB, 1},
             {"loss", HS_METRIC_LOSS, 1},
             {"ig3.logit_diff", HS_METRIC_LOGIT_DIFF, 3},
             {"ig3.kl", HS_METRIC_KL, 3}};

static void against_transformer_lens(const char *model, int rows) {
    fx f;
    fx_init(&f, model, rows);
    double *edges = malloc((size_t)f.U * f.V * sizeof *edges), clean, corrupt;
    cr_assert_not_null(edges);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        run_all(&f, cases[k].metric, cases[k].steps, rows, edges, &clean, &corrupt);
        const double rel = expect(&f, cases[k].key, edges, clean, corrupt);
        cr_log_info("%s %s (%d rows per batch): max |diff| / max |score| %.2e", model, cases[k].key, rows, rel);
    }
    free(edges);
    fx_free(&f);
}

Test(eap, gpt2_matches_transformer_lens) { against_transformer_lens("gpt2", 3); }
Test(eap, gpt2_one_prompt_per_batch) { against_transformer_lens("gpt2", 1); }
Test(eap, llama_gqa_matches_transformer_lens) { against_transformer_lens("llama_gqa", 3); }
Test(eap, llama_gqa_two_rows_per_batch) { against_transformer_lens("llama_gqa", 2); }
Test(eap, pythia_matches_transformer_lens) { against_transformer_lens("pythia", 3); }

/* The graph: counts, names, and which pairs are edges. */
Test(eap, graph_shape_and_names) {
    fx f;
    fx_init(&f, "llama_gqa", 1);
    const hs_model_config *c = f.c;
    const int L = c->n_layers, H = c->n_heads, Hk = c->n_kv_heads;
    cr_assert_eq(f.U, 1 + L * (H + 1));
    cr_assert_eq(f.V, L * (H + 2 * Hk + 1) + 1);
    char b[32];
    hs_eap_upstream_name(c, 0, b, sizeof b);
    cr_assert_str_eq(b, "input");
    hs_eap_upstream_name(c, 1 + (H + 1) + 2, b, sizeof b);
    cr_assert_str_eq(b, "L1H2");
    hs_eap_upstream_name(c, 1 + H, b, sizeof b);
    cr_assert_str_eq(b, "MLP0");
    hs_eap_downstream_name(c, 0, b, sizeof b);
    cr_assert_str_eq(b, "L0H0<q>");
    hs_eap_downstream_name(c, H, b, sizeof b);
    cr_assert_str_eq(b, "L0KV0<k>"); /* GQA: a KV head */
    hs_eap_downstream_name(c, H + Hk + 1, b, sizeof b);
    cr_assert_str_eq(b, "L0KV1<v>");
    hs_eap_downstream_name(c, H + 2 * Hk, b, sizeof b);
    cr_assert_str_eq(b, "MLP0");
    hs_eap_downstream_name(c, f.V - 1, b, sizeof b);
    cr_assert_str_eq(b, "logits");
    const int P = H + 2 * Hk + 1;
    cr_assert(hs_eap_is_edge(c, 0, 0), "the input feeds layer 0's heads");
    cr_assert(!hs_eap_is_edge(c, 1, 0), "a head does not feed its own layer's heads");
    cr_assert(hs_eap_is_edge(c, 1, P - 1), "a sequential block's MLP reads its own heads");
    cr_assert(!hs_eap_is_edge(c, 1 + H, P - 1), "an MLP does not feed itself");
    cr_assert(hs_eap_is_edge(c, 1 + H, P), "an MLP feeds the next layer's heads");
    cr_assert(hs_eap_is_edge(c, f.U - 1, f.V - 1), "the last MLP feeds the logits");
    cr_assert(!hs_eap_is_edge(c, f.U, 0) && !hs_eap_is_edge(c, 0, f.V) && !hs_eap_is_edge(c, -1, 0));
    fx_free(&f);
}

/* A corrupted run equal to the clean one changes nothing: every score is
 * exactly 0. */
Test(eap, identical_corruption_scores_zero) {
    fx f;
    fx_init(&f, "gpt2", 2);
    double *edges = calloc((size_t)f.U * f.V, sizeof *edges), clean = 0, corrupt = 0;
    hs_eap_params p = hs_eap_default_params();
    p.batch_rows = 2;
    hs_err err = {0};
    cr_assert_eq(hs_eap_scores(f.s, &f.pr, f.pr.tokens, &p, 0, f.pr.N, edges, &clean, &corrupt, &err), HS_OK, "%s",
                 err.msg);
    for (int64_t i = 0; i < (int64_t)f.U * f.V; i++)
        cr_assert_eq(edges[i], 0.0, "edge %lld: %g", (long long)i, edges[i]);
    cr_assert_eq(clean, corrupt);
    free(edges);
    fx_free(&f);
}

/* A range adds exactly what its batches add when run alone (the offsets of a
 * batch inside the prompts), and batches of 3 padded prompts give what one
 * prompt at a time gives, to rounding. */
Test(eap, ranges_add_up) {
    fx f;
    fx_init(&f, "llama_gqa", 3);
    const size_t n = (size_t)f.U * f.V;
    double *all = calloc(n, sizeof *all), *parts = calloc(n, sizeof *parts), *one = calloc(n, sizeof *one);
    double c1 = 0, x1 = 0, c2 = 0, x2 = 0, c3 = 0, x3 = 0;
    hs_eap_params p = hs_eap_default_params();
    p.batch_rows = 3;
    hs_err err = {0};
    cr_assert_eq(hs_eap_scores(f.s, &f.pr, f.corrupt, &p, 0, f.pr.N, all, &c1, &x1, &err), HS_OK, "%s", err.msg);
    for (int i = 0; i < f.pr.N; i += 3) {
        const int k = f.pr.N - i < 3 ? f.pr.N - i : 3;
        cr_assert_eq(hs_eap_scores(f.s, &f.pr, f.corrupt, &p, i, k, parts, &c2, &x2, &err), HS_OK, "%s", err.msg);
    }
    for (size_t i = 0; i < n; i++) cr_assert_eq(all[i], parts[i], "edge %zu", i);
    cr_assert_eq(c1, c2);
    cr_assert_eq(x1, x2);
    p.batch_rows = 1;
    cr_assert_eq(hs_eap_scores(f.s, &f.pr, f.corrupt, &p, 0, f.pr.N, one, &c3, &x3, &err), HS_OK, "%s", err.msg);
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(one[i]));
    for (size_t i = 0; i < n; i++)
        cr_assert_leq(fabs(all[i] - one[i]), 1e-5 * scale, "edge %zu: %g vs %g", i, all[i], one[i]);
    free(all), free(parts), free(one);
    fx_free(&f);
}

Test(eap, refusals) {
    fx f;
    fx_init(&f, "gpt2", 1);
    double *edges = calloc((size_t)f.U * f.V, sizeof *edges), c = 0, x = 0;
    hs_err err = {0};
    hs_eap_params p = hs_eap_default_params();
    p.metric = HS_METRIC_KL; /* zero gradient at the clean run */
    cr_assert_eq(hs_eap_scores(f.s, &f.pr, f.corrupt, &p, 0, 1, edges, &c, &x, &err), HS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "ig_steps"), "%s", err.msg);
    p = hs_eap_default_params();
    p.metric = HS_METRIC_ACCURACY;
    cr_assert_eq(hs_eap_scores(f.s, &f.pr, f.corrupt, &p, 0, 1, edges, &c, &x, &err), HS_ERR_UNSUPPORTED);
    p = hs_eap_default_params();
    p.ig_steps = 0;
    cr_assert_eq(hs_eap_scores(f.s, &f.pr, f.corrupt, &p, 0, 1, edges, &c, &x, &err), HS_ERR_INVALID_ARG);
    p = hs_eap_default_params();
    cr_assert_eq(hs_eap_scores(f.s, &f.pr, NULL, &p, 0, 1, edges, &c, &x, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "corrupted prompts"), "%s", err.msg);
    cr_assert_eq(hs_eap_scores(f.s, &f.pr, f.corrupt, &p, f.pr.N - 1, 2, edges, &c, &x, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "outside"), "%s", err.msg);
    hs_model_config post = *f.c;
    post.post_norms = 1;
    cr_assert_eq(hs_eap_check(&post, &p, &err), HS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "post-norm"), "%s", err.msg);
    for (int64_t i = 0; i < (int64_t)f.U * f.V; i++)
        cr_assert_eq(edges[i], 0.0, "a refused call wrote edge %lld", (long long)i);
    free(edges);
    fx_free(&f);
}
