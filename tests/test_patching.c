/* Activation patching against transformers + hooks (make_fixtures.py, each
 * prompt alone): z of one head at all positions or one position,
 * resid_pre, attn_out and mlp_out at one position, and q, k, v of one (KV)
 * head at every position, copied from the clean run into the corrupted one;
 * and path patching to the logits (one head's z with every later head held
 * at its corrupted z) and to receiver heads' q, k or v. Plus the invariant:
 * patching clean into clean changes nothing. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "headsweep/hs_patching.h"
#include "headsweep/hs_safetensors.h"
#include "hs_testutil.h"

typedef struct {
    hs_model *m;
    hs_backend *be;
    hs_session *s;
    hs_st_file *ref;
    hs_prompts pr;
    const int32_t *corrupt;
    int L, H, Hk, T;
} fx;

static void fx_init(fx *f, const char *model, int rows) {
    hs_err err = {0};
    memset(f, 0, sizeof *f);
    hs_test_load_fixture(model, "patching", &f->m, &f->ref);
    f->pr = hs_test_ref_prompts(f->ref);
    f->T = f->pr.T;
    f->corrupt = hs_test_ref_tensor(f->ref, "corrupt")->data;
    f->L = hs_model_get_config(f->m)->n_layers;
    f->H = hs_model_get_config(f->m)->n_heads;
    f->Hk = hs_model_get_config(f->m)->n_kv_heads;
    cr_assert_eq(hs_backend_cpu_init(NULL, &f->be, &err), HS_OK);
    cr_assert_eq(hs_session_init(f->be, f->m, rows, f->T, &f->s, &err), HS_OK, "%s", err.msg);
}

static void fx_free(fx *f) {
    hs_session_free(f->s);
    hs_backend_free(f->be);
    hs_st_close(f->ref);
    hs_model_free(f->m);
}

/* Logit differences of magnitude ~1-7 in f32 on both sides: 1e-4 absolute. */
static void expect(fx *f, const float *got, const char *name, int64_t n) {
    const hs_st_tensor *r = hs_st_find(f->ref, name);
    cr_assert_not_null(r);
    cr_assert_eq(r->numel, n, "%s size", name);
    const float *want = r->data;
    double md = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(want[i])) {
            cr_assert(isnan(got[i]), "%s[%lld]: expected NAN (beyond the prompt), got %g", name, (long long)i, got[i]);
            continue;
        }
        double d = fabs((double)got[i] - want[i]);
        cr_assert_leq(d, 1e-4, "%s[%lld]: %g vs transformers %g", name, (long long)i, got[i], want[i]);
        md = fmax(md, d);
    }
    cr_log_info("%s: max |diff| vs transformers %.2e", name, md);
}

static void against_transformers(const char *model, int rows) {
    fx f;
    fx_init(&f, model, rows);
    const int N = f.pr.N, L = f.L, H = f.H, T = f.T;
    float clean[8], corrupt[8];
    float *za = malloc((size_t)N * L * H * sizeof(float)), *zp = malloc((size_t)N * L * T * H * sizeof(float)),
          *rp = malloc((size_t)N * L * T * sizeof(float)), *ao = malloc((size_t)N * L * T * sizeof(float)),
          *mo = malloc((size_t)N * L * T * sizeof(float)), *qa = malloc((size_t)N * L * H * sizeof(float)),
          *ka = malloc((size_t)N * L * f.Hk * sizeof(float)), *va = malloc((size_t)N * L * f.Hk * sizeof(float)),
          *pl = malloc((size_t)N * L * H * sizeof(float));
    hs_patching_out out = {.clean = clean, .corrupt = corrupt, .z_all_pos = za, .z_by_pos = zp, .resid_pre = rp,
                           .attn_out = ao, .mlp_out = mo, .q_all_pos = qa, .k_all_pos = ka, .v_all_pos = va,
                           .path_logits = pl};
    hs_patching_params p = hs_patching_default_params();
    p.batch_rows = rows;
    p.targets = (1u << HS_PATCH_PATH_HEADS) - 1; /* path_heads: below, per receiver input */
    hs_err err = {0};
    cr_assert_eq(hs_activation_patching(f.s, f.m, &f.pr, f.corrupt, &p, &out, &err), HS_OK, "%s", err.msg);
    expect(&f, clean, "clean", N);
    expect(&f, corrupt, "corrupted", N);
    expect(&f, za, "z_all_pos", (int64_t)N * L * H);
    expect(&f, zp, "z_by_pos", (int64_t)N * L * T * H);
    expect(&f, rp, "resid_pre", (int64_t)N * L * T);
    expect(&f, ao, "attn_out", (int64_t)N * L * T);
    expect(&f, mo, "mlp_out", (int64_t)N * L * T);
    expect(&f, qa, "q_all_pos", (int64_t)N * L * H);
    expect(&f, ka, "k_all_pos", (int64_t)N * L * f.Hk);
    expect(&f, va, "v_all_pos", (int64_t)N * L * f.Hk);
    expect(&f, pl, "path_logits", (int64_t)N * L * H);
    /* the last layer has no later heads to hold: its path patch is its z patch, the same pass */
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++)
            cr_assert_eq(pl[((int64_t)i * L + L - 1) * H + h], za[((int64_t)i * L + L - 1) * H + h], "prompt %d head %d",
                         i, h);
    free(za), free(zp), free(rp), free(ao), free(mo), free(qa), free(ka), free(va), free(pl);
    fx_free(&f);
}

Test(patching, gpt2_matches_transformers) { against_transformers("gpt2", 16); }
Test(patching, llama_gqa_matches_transformers) { against_transformers("llama_gqa", 7); }

/* Path patching to the fixture's receivers' q, k and v (k and v: KV heads).
 * Senders at or after the last receiver's layer have no path: NaN. */
static void path_heads_against_transformers(const char *model, int rows) {
    fx f;
    fx_init(&f, model, rows);
    const int N = f.pr.N, L = f.L, H = f.H;
    float clean[8], corrupt[8];
    float *ph = malloc((size_t)N * L * H * sizeof(float));
    const hs_hook_point inputs[3] = {HS_HOOK_Q, HS_HOOK_K, HS_HOOK_V};
    for (int k = 0; k < 3; k++) {
        char name[32], rname[64];
        snprintf(name, sizeof name, "path_heads_%c", "qkv"[k]);
        snprintf(rname, sizeof rname, "%s_receivers", name);
        const hs_st_tensor *rt = hs_st_find(f.ref, rname);
        cr_assert_not_null(rt, "%s", rname);
        for (int64_t i = 0; i < (int64_t)N * L * H; i++) ph[i] = 12345.0f; /* poison */
        hs_patching_out out = {.clean = clean, .corrupt = corrupt, .path_heads = ph};
        hs_patching_params p = hs_patching_default_params();
        p.batch_rows = rows;
        p.targets = 1u << HS_PATCH_PATH_HEADS;
        p.receivers = rt->data;
        p.n_receivers = (int)(rt->numel / 2);
        p.receiver_input = inputs[k];
        hs_err err = {0};
        cr_assert_eq(hs_activation_patching(f.s, f.m, &f.pr, f.corrupt, &p, &out, &err), HS_OK, "%s", err.msg);
        expect(&f, ph, name, (int64_t)N * L * H);
        int moved = 0; /* the paths do carry something */
        for (int64_t i = 0; i < (int64_t)N * L * H; i++)
            moved += !isnan(ph[i]) && fabsf(ph[i] - corrupt[i / (L * H)]) > 1e-3f;
        cr_assert_gt(moved, 0, "%s: every cell equals the corrupted metric", name);
    }
    free(ph);
    fx_free(&f);
}

Test(patching, path_heads_gpt2_matches_transformers) { path_heads_against_transformers("gpt2", 16); }
Test(patching, path_heads_llama_gqa_matches_transformers) { path_heads_against_transformers("llama_gqa", 5); }

Test(patching, path_heads_refuses_bad_receivers) {
    fx f;
    fx_init(&f, "llama_gqa", 4);
    float clean[8], corrupt[8];
    float *ph = malloc((size_t)f.pr.N * f.L * f.H * sizeof(float));
    hs_patching_out out = {.clean = clean, .corrupt = corrupt, .path_heads = ph};
    hs_patching_params p = hs_patching_default_params();
    p.batch_rows = 4;
    p.targets = 1u << HS_PATCH_PATH_HEADS;
    hs_err err = {0};
    cr_assert_eq(hs_activation_patching(f.s, f.m, &f.pr, f.corrupt, &p, &out, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "at least one receiver"), "%s", err.msg);
    const int kv_too_far[2] = {2, f.Hk}; /* a query head, but no KV head */
    p.receivers = kv_too_far;
    p.n_receivers = 1;
    p.receiver_input = HS_HOOK_K;
    cr_assert_eq(hs_activation_patching(f.s, f.m, &f.pr, f.corrupt, &p, &out, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "receiver 0 (layer 2, head"), "%s", err.msg);
    p.receiver_input = HS_HOOK_Q;
    cr_assert_eq(hs_activation_patching(f.s, f.m, &f.pr, f.corrupt, &p, &out, &err), HS_OK, "%s", err.msg);
    p.receiver_input = HS_HOOK_Z;
    cr_assert_eq(hs_activation_patching(f.s, f.m, &f.pr, f.corrupt, &p, &out, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "q, k or v"), "%s", err.msg);
    free(ph);
    fx_free(&f);
}

Test(patching, clean_into_clean_is_identity) {
    fx f;
    fx_init(&f, "llama_gqa", 12);
    const int N = f.pr.N, L = f.L, H = f.H, T = f.T;
    float clean[8], corrupt[8];
    float *za = malloc((size_t)N * L * H * sizeof(float)), *pp = malloc((size_t)3 * N * L * T * sizeof(float));
    float *qkv = malloc((size_t)3 * N * L * H * sizeof(float)); /* q [N, L, H], then k, v [N, L, H_kv] */
    float *pl = malloc((size_t)N * L * H * sizeof(float)), *ph = malloc((size_t)N * L * H * sizeof(float));
    const int64_t np = (int64_t)N * L * T, nq = (int64_t)N * L * H, nk = (int64_t)N * L * f.Hk;
    hs_patching_out out = {.clean = clean, .corrupt = corrupt, .z_all_pos = za, .resid_pre = pp, .attn_out = pp + np,
                           .mlp_out = pp + 2 * np, .q_all_pos = qkv, .k_all_pos = qkv + nq, .v_all_pos = qkv + nq + nk,
                           .path_logits = pl, .path_heads = ph};
    hs_patching_params p = hs_patching_default_params();
    const int receivers[4] = {1, 2, L - 1, 0};
    p.receivers = receivers;
    p.n_receivers = 2;
    p.batch_rows = 12;
    p.targets = (1u << HS_PATCH_COUNT) - 1 - (1u << HS_PATCH_Z_BY_POS);
    hs_err err = {0};
    cr_assert_eq(hs_activation_patching(f.s, f.m, &f.pr, f.pr.tokens, &p, &out, &err), HS_OK, "%s", err.msg);
    for (int i = 0; i < N; i++) {
        cr_assert_float_eq(corrupt[i], clean[i], 0);
        for (int k = 0; k < L * H; k++) cr_assert_float_eq(za[i * L * H + k], clean[i], 1e-5);
        for (int k = 0; k < L * H; k++) cr_assert_float_eq(pl[i * L * H + k], clean[i], 1e-5, "path cell %d", k);
        for (int k = 0; k < L * H; k++) /* senders before the last receiver's layer, NaN after */
            if (k / H < L - 1)
                cr_assert_float_eq(ph[i * L * H + k], clean[i], 1e-5, "path_heads cell %d", k);
            else
                cr_assert(isnan(ph[i * L * H + k]), "path_heads cell %d: no receiver after it", k);
        for (int k = 0; k < 3 * L * f.pr.lengths[i]; k++) { /* resid_pre, attn_out, mlp_out */
            const int len = f.pr.lengths[i], tg = k / (L * len), l = k / len % L, t = k % len;
            cr_assert_float_eq(pp[tg * np + ((int64_t)i * L + l) * T + t], clean[i], 1e-5, "target %d layer %d pos %d",
                               tg, l, t);
        }
        for (int k = 0; k < L * H; k++) cr_assert_float_eq(qkv[i * L * H + k], clean[i], 1e-5, "q cell %d", k);
        for (int k = 0; k < 2 * L * f.Hk; k++) { /* k, then v */
            const int64_t j = nq + (k / (L * f.Hk)) * nk + (int64_t)i * L * f.Hk + k % (L * f.Hk);
            cr_assert_float_eq(qkv[j], clean[i], 1e-5, "k/v cell %d", k);
        }
    }
    free(za), free(pp), free(qkv), free(pl), free(ph);
    fx_free(&f);
}

Test(patching, missing_output_buffer_names_the_target) {
    fx f;
    fx_init(&f, "gpt2", 4);
    float clean[8], corrupt[8];
    float *rp = malloc((size_t)f.pr.N * f.L * f.T * sizeof(float));
    hs_patching_out out = {.clean = clean, .corrupt = corrupt, .resid_pre = rp};
    hs_patching_params p = hs_patching_default_params();
    p.batch_rows = 4;
    p.targets = (1u << HS_PATCH_RESID_PRE) | (1u << HS_PATCH_MLP_OUT);
    hs_err err = {0};
    cr_assert_eq(hs_activation_patching(f.s, f.m, &f.pr, f.corrupt, &p, &out, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "mlp_out"), "%s", err.msg);
    p.targets = 1u << HS_PATCH_COUNT;
    cr_assert_eq(hs_activation_patching(f.s, f.m, &f.pr, f.corrupt, &p, &out, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "known target"), "%s", err.msg);
    free(rp);
    fx_free(&f);
}
