/* Circuit evaluation against TransformerLens 4.3 (make_fixtures.py part
 * eap_circuit: Hanna et al.'s evaluate_graph by hooks on split q/k/v inputs,
 * per-head results and hook_mlp_in, each prompt alone, unpadded): each
 * prompt's logit difference and KL to the clean run with three circuits (the
 * 25 strongest EAP edges, a random half, a random nine tenths of the edges),
 * on GPT-2, Llama with GQA and GPT-NeoX (parallel blocks), batched with
 * padding and one prompt at a time. Plus the endpoints (every edge: the
 * clean run; none: the corrupted run, bit for bit) and split inputs left as
 * they are (the plain forward) on models with and without q/k norms, and the
 * refusals. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_eap.h"
#include "headsweep/hs_safetensors.h"
#include "hs_backward.h"
#include "hs_metric.h"
#include "hs_testutil.h"

typedef struct {
    hs_model *m;
    const hs_model_config *c;
    hs_backend *be;
    hs_session *s;
    hs_st_file *prompts, *ref;
    hs_prompts pr;
    const int32_t *corrupt;
    int U, V;
    uint8_t *circuits[3];
} fx;

/* model's session for rows prompts per batch, the prompts of the eap fixture of `prompts` (the
 * tiny models share a vocabulary) and, with its references, the circuits of model's eap_circuit. */
static void fx_init_from(fx *f, const char *model, const char *prompts, int with_ref, int rows) {
    hs_err err = {0};
    char rel[256], path[1024];
    memset(f, 0, sizeof *f);
    f->m = hs_test_fixture_model(model);
    snprintf(rel, sizeof rel, "ref/%s_eap.safetensors", prompts); /* the prompts edge attribution ran on */
    hs_test_fixture_path(path, sizeof path, rel);
    cr_assert_eq(hs_st_open(path, &f->prompts, &err), HS_OK, "%s", err.msg);
    f->pr = hs_test_ref_prompts(f->prompts);
    f->corrupt = hs_test_ref_tensor(f->prompts, "corrupt")->data;
    f->c = hs_model_get_config(f->m);
    f->U = hs_eap_n_upstream(f->c), f->V = hs_eap_n_downstream(f->c);
    if (with_ref) {
        snprintf(rel, sizeof rel, "ref/%s_eap_circuit.safetensors", model);
        hs_test_fixture_path(path, sizeof path, rel);
        cr_assert_eq(hs_st_open(path, &f->ref, &err), HS_OK, "%s", err.msg);
        const hs_st_tensor *cir = hs_test_ref_tensor(f->ref, "circuits");
        const int64_t uv = (int64_t)f->U * f->V;
        cr_assert_eq(cir->numel, 3 * uv, "circuits: %lld entries for 3 x %d x %d", (long long)cir->numel, f->U, f->V);
        for (int k = 0; k < 3; k++) {
            cr_assert_not_null(f->circuits[k] = malloc((size_t)uv));
            for (int64_t i = 0; i < uv; i++) f->circuits[k][i] = ((const float *)cir->data)[k * uv + i] != 0.0f;
        }
    }
    cr_assert_eq(hs_backend_cpu_init(NULL, &f->be, &err), HS_OK);
    cr_assert_eq(hs_session_init(f->be, f->m, rows, f->pr.T, &f->s, &err), HS_OK, "%s", err.msg);
}

static void fx_init(fx *f, const char *model, int rows) { fx_init_from(f, model, model, 1, rows); }

static void fx_free(fx *f) {
    for (int k = 0; k < 3; k++) free(f->circuits[k]);
    hs_session_free(f->s);
    hs_backend_free(f->be);
    if (f->ref) hs_st_close(f->ref);
    hs_st_close(f->prompts);
    hs_model_free(f->m);
}

/* Every prompt's metric with circuits[0..K): metric [N, K], clean [N], corrupted [N]. */
static void run(fx *f, hs_metric m, int rows, const uint8_t *const *circuits, int K, float *metric, float *clean,
                float *corrupted) {
    const hs_eap_circuit_params p = {.metric = m, .batch_rows = rows, .circuits = circuits, .n_circuits = K};
    hs_err err = {0};
    for (int64_t i = 0; i < (int64_t)f->pr.N * K; i++) metric[i] = NAN; /* poisoned: each must be written */
    cr_assert_eq(hs_eap_circuit(f->s, &f->pr, f->corrupt, &p, 0, f->pr.N, metric, clean, corrupted, &err), HS_OK, "%s",
                 err.msg);
}

/* f32 here, f32 activations with double differences in the reference: the
 * metrics (|logit diff| up to ~4, KL up to ~1) agree to 2e-5 (absolute, or
 * relative past 1). */
static void check(const char *what, const float *got, const float *want, int n, int stride_got, int stride_want) {
    for (int i = 0; i < n; i++) {
        const double g = got[(int64_t)i * stride_got], w = want[(int64_t)i * stride_want];
        cr_assert_leq(fabs(g - w), 2e-5 * fmax(1.0, fabs(w)), "%s, prompt %d: %.7g vs TransformerLens %.7g", what, i, g,
                      w);
    }
}

static void against_transformer_lens(const char *model, int rows) {
    fx f;
    fx_init(&f, model, rows);
    const int N = f.pr.N;
    float *metric = malloc((size_t)N * 3 * sizeof *metric), *clean = malloc((size_t)N * sizeof *clean),
          *corrupted = malloc((size_t)N * sizeof *corrupted);
    const char *keys[2] = {"logit_diff", "kl"};
    const hs_metric metrics[2] = {HS_METRIC_LOGIT_DIFF, HS_METRIC_KL};
    for (int m = 0; m < 2; m++) {
        run(&f, metrics[m], rows, (const uint8_t *const *)f.circuits, 3, metric, clean, corrupted);
        char k[64], what[96];
        snprintf(k, sizeof k, "%s.metric", keys[m]);
        const float *want = hs_test_ref_tensor(f.ref, k)->data;
        double worst = 0;
        for (int c = 0; c < 3; c++) {
            snprintf(what, sizeof what, "%s %s circuit %d", model, keys[m], c);
            check(what, metric + c, want + (int64_t)c * N, N, 3, 1);
            for (int i = 0; i < N; i++) worst = fmax(worst, fabs(metric[i * 3 + c] - want[c * N + i]));
        }
        snprintf(k, sizeof k, "%s.clean", keys[m]);
        check("clean", clean, hs_test_ref_tensor(f.ref, k)->data, N, 1, 1);
        snprintf(k, sizeof k, "%s.corrupted", keys[m]);
        check("corrupted", corrupted, hs_test_ref_tensor(f.ref, k)->data, N, 1, 1);
        cr_log_info("%s %s (%d rows per batch): max |diff| %.2e", model, keys[m], rows, worst);
    }
    free(metric), free(clean), free(corrupted);
    fx_free(&f);
}

Test(eap_circuit, gpt2_matches_transformer_lens) { against_transformer_lens("gpt2", 3); }
Test(eap_circuit, gpt2_one_prompt_per_batch) { against_transformer_lens("gpt2", 1); }
Test(eap_circuit, llama_gqa_matches_transformer_lens) { against_transformer_lens("llama_gqa", 2); }
Test(eap_circuit, pythia_matches_transformer_lens) { against_transformer_lens("pythia", 2); } /* 2 + 1 */

/* Every edge kept is the clean run, none the corrupted one, bit for bit (no
 * node reads a sum then: each reads this run's stream or the corrupted
 * run's), for the logit difference, the loss (every position's next token)
 * and the answer's log-probability. */
static void endpoints(const char *model, int rows) {
    fx f;
    fx_init_from(&f, model, "llama_gqa", 0, rows);
    const int N = f.pr.N;
    const size_t uv = (size_t)f.U * f.V;
    uint8_t *all = malloc(uv), *none = calloc(uv, 1);
    memset(all, 1, uv);
    const uint8_t *circuits[2] = {all, none};
    float *metric = malloc((size_t)N * 2 * sizeof *metric), *clean = malloc((size_t)N * sizeof *clean),
          *corrupted = malloc((size_t)N * sizeof *corrupted);
    const hs_metric metrics[3] = {HS_METRIC_LOGIT_DIFF, HS_METRIC_LOSS, HS_METRIC_LOGPROB};
    for (int m = 0; m < 3; m++) { /* the loss reads every position's log-probability */
        run(&f, metrics[m], rows, circuits, 2, metric, clean, corrupted);
        int differ = 0;
        for (int i = 0; i < N; i++) {
            cr_assert_eq(metric[2 * i], clean[i], "%s %s, prompt %d: every edge %.9g, clean %.9g", model,
                         hs_metric_name(metrics[m]), i, metric[2 * i], clean[i]);
            cr_assert_eq(metric[2 * i + 1], corrupted[i], "%s %s, prompt %d: no edge %.9g, corrupted %.9g", model,
                         hs_metric_name(metrics[m]), i, metric[2 * i + 1], corrupted[i]);
            differ += fabs(clean[i] - corrupted[i]) > 1e-3;
        }
        cr_assert_gt(differ, 0, "%s %s: the corruption changes no prompt's metric: the test shows nothing", model,
                     hs_metric_name(metrics[m]));
    }
    free(all), free(none), free(metric), free(clean), free(corrupted);
    fx_free(&f);
}

Test(eap_circuit, endpoints) {
    endpoints("llama_gqa", 3);
    endpoints("qwen3", 2);     /* q/k norms: the kept q and k are taken before them */
    endpoints("cohere_qk", 2); /* per-head q/k norm weights, a parallel block */
}

/* Split inputs that nobody edits give the plain forward's logits. */
static hs_status leave(void *user, int l, hs_input_kind k, int h, hs_tensor *x, hs_err *err) {
    (void)l, (void)k, (void)h, (void)x, (void)err;
    ++*(int *)user;
    return HS_OK;
}

static void unedited(const char *model) {
    fx f;
    fx_init_from(&f, model, "llama_gqa", 0, 4);
    const int B = f.pr.N < 4 ? f.pr.N : 4, T = f.pr.T, Vv = f.c->n_vocab;
    int32_t *mask = malloc((size_t)B * T * sizeof *mask);
    hs_prompts one = f.pr;
    one.N = B;
    hs_prompts_mask_targets(&one, NULL, mask, NULL);
    const hs_batch b = {.B = B, .T = T, .tokens = f.pr.tokens, .mask = mask};
    float *plain = malloc((size_t)B * Vv * sizeof *plain), *split = malloc((size_t)B * Vv * sizeof *split);
    hs_err err = {0};
    hs_forward_params fp = hs_forward_default_params();
    cr_assert_eq(hs_forward(f.s, &b, &fp, plain, &err), HS_OK, "%s", err.msg);
    int calls = 0;
    const hs_input_hooks in = {.fn = leave, .user = &calls};
    fp.inputs = &in;
    for (int64_t i = 0; i < (int64_t)B * Vv; i++) split[i] = NAN; /* poisoned */
    cr_assert_eq(hs_forward(f.s, &b, &fp, split, &err), HS_OK, "%s", err.msg);
    const hs_model_config *c = f.c;
    cr_assert_eq(calls, c->n_layers * (c->n_heads + 2 * c->n_kv_heads + 1), "%s: input hook calls", model);
    const hs_test_cmp r = hs_test_compare(split, plain, (int64_t)B * Vv, 1e-5, 1e-5);
    cr_assert_eq(r.n_bad, 0, "%s: split inputs change the logits: max |diff| %g, first at %lld", model, r.max_abs,
                 (long long)r.first_bad);
    free(mask), free(plain), free(split);
    fx_free(&f);
}

Test(eap_circuit, split_inputs_unedited_are_the_plain_forward) {
    unedited("llama_gqa");
    unedited("qwen3");     /* q/k norms after each head's own projection */
    unedited("cohere_qk"); /* per-head q/k norm weights */
}

Test(eap_circuit, refusals) {
    fx f;
    fx_init(&f, "gpt2", 1);
    float m[8], c[8], x[8];
    hs_err err = {0};
    const uint8_t *one[1] = {f.circuits[0]};
    hs_eap_circuit_params p = {.metric = HS_METRIC_LOGIT_DIFF, .batch_rows = 1, .circuits = one, .n_circuits = 0};
    cr_assert_eq(hs_eap_circuit(f.s, &f.pr, f.corrupt, &p, 0, 1, m, c, x, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "no circuits"), "%s", err.msg);
    p.n_circuits = 1;
    cr_assert_eq(hs_eap_circuit(f.s, &f.pr, NULL, &p, 0, 1, m, c, x, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "corrupted prompts"), "%s", err.msg);
    cr_assert_eq(hs_eap_circuit(f.s, &f.pr, f.corrupt, &p, f.pr.N - 1, 2, m, c, x, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "outside"), "%s", err.msg);
    hs_model_config post = *f.c;
    post.post_norms = 1;
    cr_assert_eq(hs_eap_circuit_check(&post, &p, &err), HS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "circuit evaluation: post-norm"), "%s", err.msg);
    /* split inputs go with neither z_from_hook nor a KV cache, and have no backward */
    const hs_input_hooks in = {.fn = leave, .user = &(int){0}};
    hs_forward_params fp = hs_forward_default_params();
    fp.inputs = &in;
    fp.z_from_hook = 1;
    int32_t mask[64];
    hs_prompts first = f.pr;
    first.N = 1;
    hs_prompts_mask_targets(&first, NULL, mask, NULL);
    const hs_batch b = {.B = 1, .T = f.pr.T, .tokens = f.pr.tokens, .mask = mask};
    cr_assert_eq(hs_forward(f.s, &b, &fp, NULL, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "split inputs"), "%s", err.msg);
    hs_kv_cache *kv = NULL;
    cr_assert_eq(hs_kv_cache_init(f.s, 1, f.pr.T, &kv, &err), HS_OK, "%s", err.msg);
    fp.z_from_hook = 0;
    fp.kv = kv;
    err.msg[0] = 0;
    cr_assert_eq(hs_forward(f.s, &b, &fp, NULL, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "split inputs"), "%s", err.msg);
    hs_kv_cache_free(kv);
    fp.kv = NULL;
    err.msg[0] = 0;
    cr_assert_eq(hs_bwd_forward(f.s, &b, &fp, NULL, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "split inputs"), "%s", err.msg);
    fx_free(&f);
}
