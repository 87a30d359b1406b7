/* Shared test helpers (see hs_testutil.h). */
#include "hs_testutil.h"

#include "headsweep/hs_backend.h"
#include "headsweep/hs_forward.h"

#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void hs_test_fixture_path(char *out, size_t n, const char *rel) {
    snprintf(out, n, "%s/tests/fixtures/%s", HS_SOURCE_DIR, rel);
}

int hs_test_smollm2_path(char *out, size_t n) {
    const char *env = getenv("HS_SMOLLM2_GGUF");
    if (env && *env) {
        snprintf(out, n, "%s", env);
    } else {
        const char *xdg = getenv("XDG_CACHE_HOME");
        const char *home = getenv("HOME");
        if (xdg && *xdg)
            snprintf(out, n, "%s/headsweep/models/SmolLM2-135M-Instruct.Q4_1.gguf", xdg);
        else
            snprintf(out, n, "%s/.cache/headsweep/models/SmolLM2-135M-Instruct.Q4_1.gguf",
                     home ? home : ".");
    }
    return access(out, R_OK) == 0;
}

void hs_test_rng_seed(hs_test_rng *r, uint64_t seed) { r->s = seed ? seed : 0x9e3779b97f4a7c15ull; }

uint64_t hs_test_rng_u64(hs_test_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545f4914f6cdd1dull;
}

float hs_test_rng_uniform(hs_test_rng *r) { return (float)(hs_test_rng_u64(r) >> 40) / 16777216.0f; }

float hs_test_rng_normal(hs_test_rng *r) {
    float u1 = hs_test_rng_uniform(r), u2 = hs_test_rng_uniform(r);
    if (u1 < 1e-12f) u1 = 1e-12f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

void hs_test_fill_normal(hs_test_rng *r, float *x, int64_t n, float std) {
    for (int64_t i = 0; i < n; i++) x[i] = std * hs_test_rng_normal(r);
}

double hs_test_rms(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return n ? sqrt(s / (double)n) : 0.0;
}

hs_test_cmp hs_test_compare_masked(const float *got, const float *ref, const uint8_t *keep,
                                   int64_t n, double atol, double rtol) {
    hs_test_cmp c = {0};
    c.first_bad = -1;
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (keep && !keep[i]) continue;
        c.n++;
        double g = got[i], r = ref[i];
        if (!isfinite(g) && isfinite(r)) {
            c.nan = 1;
            c.n_bad++;
            if (c.first_bad < 0) c.first_bad = i;
            continue;
        }
        double d = fabs(g - r);
        num += d * d;
        den += r * r;
        if (d > c.max_abs) c.max_abs = d;
        if (fabs(r) > 0 && d / fabs(r) > c.max_rel) c.max_rel = d / fabs(r);
        if (d > atol + rtol * fabs(r)) {
            c.n_bad++;
            if (c.first_bad < 0) c.first_bad = i;
        }
    }
    c.rel_l2 = den > 0 ? sqrt(num / den) : sqrt(num);
    return c;
}

hs_test_cmp hs_test_compare(const float *got, const float *ref, int64_t n, double atol,
                            double rtol) {
    return hs_test_compare_masked(got, ref, NULL, n, atol, rtol);
}

/* ==== CUDA-backend comparisons (see hs_testutil.h) ============================ */

float hs_test_bf16_round(float x) { return hs_bf16_to_f32(hs_f32_to_bf16(x)); }

void hs_test_bf16_round_array(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = hs_test_bf16_round(x[i]);
}

hs_model_config hs_test_llama_config(int n_layers, int n_heads, int n_kv_heads, int d_model, int d_head, int d_mlp,
                                     int n_vocab, int n_ctx, float rope_theta) {
    hs_model_config c;
    memset(&c, 0, sizeof c);
    c.arch = HS_ARCH_LLAMA;
    snprintf(c.arch_name, sizeof c.arch_name, "LlamaForCausalLM");
    c.n_layers = n_layers, c.n_heads = n_heads, c.n_kv_heads = n_kv_heads, c.d_model = d_model, c.d_head = d_head;
    c.d_mlp = d_mlp, c.n_vocab = n_vocab, c.n_ctx = n_ctx, c.norm_eps = 1e-5f, c.rope_theta = rope_theta;
    c.norm = HS_NORM_RMSNORM, c.act = HS_ACT_SILU_GLU, c.rope = HS_ROPE_NEOX;
    c.bos_token_id = 1, c.eos_token_id = 2;
    return c;
}

void hs_test_round_model_bf16(hs_model *m) {
    const hs_model_config *c = hs_model_get_config(m);
    const hs_model_weights *w = hs_model_get_weights(m);
    const int64_t d = c->d_model, qd = (int64_t)c->n_heads * c->d_head, kd = (int64_t)c->n_kv_heads * c->d_head,
                  f = c->d_mlp, V = c->n_vocab;
#define R(p, n) ((p) ? hs_test_bf16_round_array((p), (n)) : (void)0)
    R(w->tok_embd, V * d);
    R(w->pos_embd, (int64_t)c->n_ctx * d);
    for (int l = 0; l < c->n_layers; l++) {
        const hs_layer_weights *L = &w->layers[l];
        R(L->ln1_w, d), R(L->ln1_b, d), R(L->ln2_w, d), R(L->ln2_b, d);
        R(L->wq, qd * d), R(L->bq, qd), R(L->wk, kd * d), R(L->bk, kd), R(L->wv, kd * d), R(L->bv, kd);
        R(L->wo, d * qd), R(L->bo, d), R(L->w_gate, f * d), R(L->w_up, f * d), R(L->b_up, f);
        R(L->w_down, d * f), R(L->b_down, d);
        R(L->q_norm_w, (int64_t)hs_model_qk_norm_width(c, 0) * hs_model_qk_norm_rows(c, 0));
        R(L->k_norm_w, (int64_t)hs_model_qk_norm_width(c, 1) * hs_model_qk_norm_rows(c, 1));
        R(L->attn_post_w, d), R(L->mlp_post_w, d);
    }
    R(w->lnf_w, d), R(w->lnf_b, d), R(w->unembed, V * d), R(w->unembed_b, V);
#undef R
}

double hs_test_max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(x[i]) && fabs((double)x[i]) > m) m = fabs((double)x[i]);
    return m;
}

hs_test_bf16_result hs_test_bf16_check(const float *got, const float *naive, const float *ref,
                                       int64_t n) {
    hs_test_bf16_result r = {0};
    r.worst = -1;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(ref[i])) { /* only the same infinity matches; a NaN reference fails too */
            if (isnan(ref[i]) || got[i] != ref[i]) r.n_nonfinite++;
            continue;
        }
        if (!isfinite(got[i])) {
            r.n_nonfinite++;
            continue;
        }
        double e = fabs((double)got[i] - ref[i]), en = fabs((double)naive[i] - ref[i]);
        if (r.worst < 0 || e > r.err) {
            r.err = e;
            r.worst = i;
        }
        if (isfinite(en) && en > r.naive_err) r.naive_err = en;
    }
    r.bound = 2.0 * r.naive_err + 64.0 * ldexp(hs_test_max_abs(ref, n), -24);
    r.ok = r.n_nonfinite == 0 && r.err <= r.bound;
    return r;
}

const char *hs_test_source_dir(void) {
    const char *e = getenv("HS_SOURCE_DIR");
    return (e && *e) ? e : HS_SOURCE_DIR;
}
/* ==== end of CUDA-backend comparisons ========================================= */

int hs_test_run_cli(const char *args, const char *redirect, char *out, size_t n) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s/headsweep' %s %s", HS_SOURCE_DIR, HS_BINARY_DIR, args, redirect);
    out[0] = '\0';
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t len = fread(out, 1, n - 1, p);
    out[len] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

hs_model *hs_test_fixture_model(const char *model) {
    char rel[256], path[1024];
    hs_err err = {0};
    hs_model *m = NULL;
    snprintf(rel, sizeof rel, "models/%s", model);
    hs_test_fixture_path(path, sizeof path, rel);
    cr_assert_eq(hs_model_load(path, &m, &err), HS_OK, "%s: %s", path, err.msg);
    return m;
}

void hs_test_load_fixture(const char *model, const char *part, hs_model **m, hs_st_file **ref) {
    char rel[256], path[1024];
    hs_err err = {0};
    *m = hs_test_fixture_model(model);
    snprintf(rel, sizeof rel, "ref/%s_%s.safetensors", model, part);
    hs_test_fixture_path(path, sizeof path, rel);
    cr_assert_eq(hs_st_open(path, ref, &err), HS_OK, "%s", err.msg);
}

hs_status hs_test_run_config(const char *path, const char *const *sets, int n_sets, const hs_run_params *rp, hs_err *err) {
    hs_config *c = NULL;
    char *text = NULL;
    cr_assert_eq(hs_config_load(path, sets, n_sets, &c, err), HS_OK, "%s", err->msg);
    cr_assert_eq(hs_config_resolved_yaml(c, &text, err), HS_OK, "%s", err->msg);
    hs_status st = hs_run(c, text, rp, err);
    free(text);
    hs_config_free(c);
    return st;
}

void hs_test_check_with_h5py(const char *path) {
    const char *py = getenv("HS_PYTHON");
    if (!py || !*py) {
        cr_log_info("HS_PYTHON not set: h5py/xarray check of %s skipped", path);
        return;
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' '%s/tests/h5_check_run.py' '%s'", py, HS_SOURCE_DIR, path);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
}

const hs_st_tensor *hs_test_ref_tensor(hs_st_file *ref, const char *name) {
    const hs_st_tensor *t = hs_st_find(ref, name);
    cr_assert_not_null(t, "fixture lacks %s", name);
    return t;
}

void hs_test_remove_dir(const char *dir) {
    char cmd[1100];
    cr_assert_lt((size_t)snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir), sizeof cmd, "directory name too long: %s",
                 dir);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
}

hs_prompts hs_test_ref_prompts(hs_st_file *ref) {
    const hs_st_tensor *tok = hs_test_ref_tensor(ref, "tokens");
    return (hs_prompts){.N = (int)tok->shape[0], .T = (int)tok->shape[1], .tokens = tok->data,
                        .lengths = hs_test_ref_tensor(ref, "lengths")->data,
                        .answer = hs_test_ref_tensor(ref, "answer")->data,
                        .distractor = hs_test_ref_tensor(ref, "distractor")->data};
}

hs_test_needles hs_test_ref_needles(hs_st_file *ref) {
    const hs_st_tensor *tok = hs_test_ref_tensor(ref, "tokens"), *gen = hs_test_ref_tensor(ref, "generated");
    return (hs_test_needles){.pr = {.N = (int)tok->shape[0], .T = (int)tok->shape[1], .tokens = tok->data,
                                    .lengths = hs_test_ref_tensor(ref, "lengths")->data},
                             .ns = hs_test_ref_tensor(ref, "needle_start")->data,
                             .nl = hs_test_ref_tensor(ref, "needle_len")->data,
                             .gen = gen->data,
                             .G = (int)gen->shape[1]};
}

float hs_test_token_recall(const int32_t *needle, int n, const int32_t *gen, int G) {
    uint8_t *used = calloc((size_t)(G > 0 ? G : 1), 1);
    cr_assert_not_null(used);
    int hit = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < G; j++)
            if (!used[j] && gen[j] == needle[i]) {
                used[j] = 1, hit++;
                break;
            }
    free(used);
    return (float)hit / (float)n;
}

void hs_test_logits_match(const hs_model *m, hs_st_file *ref, const char *what) {
    hs_test_logits_match_at(m, ref, NULL, what);
}

void hs_test_logits_match_at(const hs_model *m, hs_st_file *ref, const int32_t *positions, const char *what) {
    const hs_st_tensor *tok = hs_test_ref_tensor(ref, "tokens"), *msk = hs_test_ref_tensor(ref, "mask"),
                       *pos = hs_test_ref_tensor(ref, "positions"), *lg = hs_test_ref_tensor(ref, "logits");
    const int B = (int)tok->shape[0], T = (int)tok->shape[1], V = hs_model_get_config(m)->n_vocab;
    hs_err e = {0};
    hs_backend *be = NULL;
    hs_session *s = NULL;
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(hs_session_init(be, m, B, T, &s, &e), HS_OK, "%s", e.msg);
    hs_batch batch = {.B = B, .T = T, .tokens = tok->data, .mask = msk->data, .positions = positions ? positions : pos->data};
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = HS_LOGITS_ALL;
    const int64_t n = (int64_t)B * T * V;
    cr_assert_eq(lg->numel, n, "%s: %lld reference logits for %lld", what, (long long)lg->numel, (long long)n);
    float *logits = malloc((size_t)n * sizeof(float));
    uint8_t *keep = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++) logits[i] = NAN, keep[i] = ((const int32_t *)msk->data)[i / V] != 0;
    cr_assert_eq(hs_forward(s, &batch, &fp, logits, &e), HS_OK, "%s: %s", what, e.msg);
    const double atol = HS_TEST_F32_ATOL_RMS * hs_test_rms(lg->data, n);
    hs_test_cmp cm = hs_test_compare_masked(logits, lg->data, keep, n, atol, HS_TEST_F32_RTOL);
    cr_assert_eq(cm.n_bad, 0, "%s: %lld of %lld logits off, max abs %.3g", what, (long long)cm.n_bad, (long long)cm.n,
                 cm.max_abs);
    free(logits), free(keep);
    hs_session_free(s);
    hs_backend_free(be);
}
