/* Intervention invariants of DESIGN.md §4 on the tiny fixture models:
 * an empty variant is the baseline; zeroing every head of layer l removes
 * layer l's attention output; batched variants equal one-at-a-time runs;
 * prefix reuse equals full recomputation; SET with the head's own z is a no-op;
 * uniform attention averages the visible values; a partial pass and a pass
 * whose later z a hook gives equal the full pass. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "headsweep/hs_capture.h"
#include "headsweep/hs_forward.h"
#include "hs_testutil.h"

typedef struct {
    hs_model *m;
    hs_backend *be;
    hs_session *s;
    const hs_model_config *c;
    int B, T;
    int32_t tok[4 * 9], targets[4 * 9];
} fx;

static void fx_init(fx *f, const char *model) {
    char path[1024], rel[256];
    snprintf(rel, sizeof rel, "models/%s", model);
    hs_test_fixture_path(path, sizeof path, rel);
    hs_err err = {0};
    memset(f, 0, sizeof *f);
    cr_assert_eq(hs_model_load(path, &f->m, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_backend_cpu_init(NULL, &f->be, &err), HS_OK, "%s", err.msg);
    f->c = hs_model_get_config(f->m);
    f->B = 4;
    f->T = 9;
    cr_assert_eq(hs_session_init(f->be, f->m, 64, f->T, &f->s, &err), HS_OK, "%s", err.msg);
    hs_test_rng r;
    hs_test_rng_seed(&r, 77);
    for (int i = 0; i < f->B * f->T; i++) f->tok[i] = (int32_t)(hs_test_rng_u64(&r) % (uint64_t)f->c->n_vocab);
    for (int b = 0; b < f->B; b++)
        for (int t = 0; t < f->T; t++) f->targets[b * f->T + t] = t + 1 < f->T ? f->tok[b * f->T + t + 1] : -1;
}

static void fx_free(fx *f) {
    hs_session_free(f->s);
    hs_backend_free(f->be);
    hs_model_free(f->m);
}

/* Forward over rows of f->tok (row r uses prompt rows[r]) with the given params; returns [B, V] last logits. */
static float *run(fx *f, const int *rows, int B, hs_forward_params *fp) {
    int32_t *tok = malloc((size_t)B * f->T * sizeof *tok), *tg = malloc((size_t)B * f->T * sizeof *tg);
    for (int r = 0; r < B; r++) {
        memcpy(tok + r * f->T, f->tok + rows[r] * f->T, (size_t)f->T * sizeof *tok);
        memcpy(tg + r * f->T, f->targets + rows[r] * f->T, (size_t)f->T * sizeof *tg);
    }
    hs_batch b = {.B = B, .T = f->T, .tokens = tok, .targets = tg};
    float *lg = malloc((size_t)B * f->c->n_vocab * sizeof(float));
    hs_err err = {0};
    fp->logits = HS_LOGITS_LAST;
    cr_assert_eq(hs_forward(f->s, &b, fp, lg, &err), HS_OK, "%s", err.msg);
    free(tok);
    free(tg);
    return lg;
}

static void expect_close(const float *a, const float *b, int64_t n, double tol, const char *what) {
    hs_test_cmp c = hs_test_compare(a, b, n, tol, tol);
    cr_assert_eq(c.n_bad, 0, "%s: %lld of %lld differ, max abs %.3g", what, (long long)c.n_bad, (long long)c.n,
                 c.max_abs);
}

static const int ROWS[4] = {0, 1, 2, 3};

static void empty_variant_is_baseline(const char *model) {
    fx f;
    fx_init(&f, model);
    hs_forward_params a = hs_forward_default_params(), b = hs_forward_default_params();
    hs_z_edit e = {.row = 1, .layer = 1, .head = 2, .pos = -1, .mode = HS_EDIT_SCALE, .scale = 1.0f};
    b.edits = &e;
    b.n_edits = 1;
    float *x = run(&f, ROWS, 4, &a), *y = run(&f, ROWS, 4, &b);
    expect_close(x, y, 4 * f.c->n_vocab, 0, "scale 1 vs no edit");
    free(x);
    free(y);
    fx_free(&f);
}
Test(interventions, empty_variant_is_baseline_llama) { empty_variant_is_baseline("llama_gqa"); }
Test(interventions, empty_variant_is_baseline_gpt2) { empty_variant_is_baseline("gpt2"); }

/* Zero every head of layer l: attn_out = output bias only, so resid_mid = resid_pre + b_O. */
static void zero_layer_removes_attention(const char *model) {
    fx f;
    fx_init(&f, model);
    const int l = 1, H = f.c->n_heads, d = f.c->d_model;
    hs_z_edit *ed = calloc((size_t)4 * H, sizeof *ed);
    for (int r = 0; r < 4; r++)
        for (int h = 0; h < H; h++) ed[r * H + h] = (hs_z_edit){.row = r, .layer = l, .head = h, .pos = -1, .mode = HS_EDIT_ZERO};
    hs_capture *cap;
    hs_err err = {0};
    cr_assert_eq(hs_capture_init(f.be, &cap, &err), HS_OK);
    hs_capture_want(cap, HS_HOOK_RESID_PRE, l, &err);
    hs_capture_want(cap, HS_HOOK_RESID_MID, l, &err);
    hs_hooks hooks = hs_capture_hooks(cap);
    hs_forward_params fp = hs_forward_default_params();
    fp.edits = ed;
    fp.n_edits = 4 * H;
    fp.hooks = &hooks;
    free(run(&f, ROWS, 4, &fp));
    const float *pre = hs_capture_get(cap, HS_HOOK_RESID_PRE, l, NULL), *mid = hs_capture_get(cap, HS_HOOK_RESID_MID, l, NULL);
    const float *bo = hs_model_get_weights(f.m)->layers[l].bo;
    for (int64_t i = 0; i < (int64_t)4 * f.T * d; i++) {
        float want = pre[i] + (bo ? bo[i % d] : 0.0f);
        cr_assert_float_eq(mid[i], want, 1e-6f * (1.0f + fabsf(want)), "element %lld", (long long)i);
    }
    hs_capture_free(cap);
    free(ed);
    fx_free(&f);
}
Test(interventions, zero_layer_removes_attention_llama) { zero_layer_removes_attention("llama_mha"); }
Test(interventions, zero_layer_removes_attention_gpt2) { zero_layer_removes_attention("gpt2"); }

/* Rows of one batch carrying different edits equal each row run alone. */
Test(interventions, batched_variants_equal_one_at_a_time) {
    fx f;
    fx_init(&f, "llama_gqa");
    const int V = f.c->n_vocab, B = 8;
    int rows[8];
    hs_z_edit ed[8];
    float src[9 * 12];
    for (int i = 0; i < 9 * 12; i++) src[i] = 0.1f * (float)(i % 7) - 0.3f;
    for (int r = 0; r < B; r++) {
        rows[r] = r % 4;
        hs_edit_mode modes[4] = {HS_EDIT_ZERO, HS_EDIT_SCALE, HS_EDIT_SET, HS_EDIT_UNIFORM};
        ed[r] = (hs_z_edit){.row = r, .layer = r % 3, .head = r % f.c->n_heads, .pos = r == 5 ? 3 : -1,
                            .mode = modes[r % 4], .scale = 0.5f, .src = r == 5 ? src : src};
        if (r == 5) ed[r].mode = HS_EDIT_SCALE; /* a single-position edit */
    }
    hs_forward_params fp = hs_forward_default_params();
    fp.edits = ed;
    fp.n_edits = B;
    float *all = run(&f, rows, B, &fp);
    for (int r = 0; r < B; r++) {
        hs_z_edit one = ed[r];
        one.row = 0;
        hs_forward_params p1 = hs_forward_default_params();
        p1.edits = &one;
        p1.n_edits = 1;
        float *single = run(&f, &rows[r], 1, &p1);
        expect_close(all + (int64_t)r * V, single, V, 1e-5, "batched row vs alone");
        free(single);
    }
    /* ... and the edits did change something */
    hs_forward_params none = hs_forward_default_params();
    float *base = run(&f, rows, B, &none);
    hs_test_cmp c = hs_test_compare(all, base, (int64_t)B * V, 1e-4, 0);
    cr_assert_gt(c.n_bad, 0, "edits had no effect");
    free(base);
    free(all);
    fx_free(&f);
}

/* Start at layer l from the unedited run's resid_pre[l]: same logits and
 * target log-probs as running all layers with the same edit. */
Test(interventions, prefix_reuse_equals_full_recomputation) {
    fx f;
    fx_init(&f, "gpt2");
    const int V = f.c->n_vocab, T = f.T;
    hs_err err = {0};
    hs_capture *cap;
    cr_assert_eq(hs_capture_init(f.be, &cap, &err), HS_OK);
    hs_capture_want(cap, HS_HOOK_RESID_PRE, -1, &err);
    hs_hooks hooks = hs_capture_hooks(cap);
    hs_forward_params clean = hs_forward_default_params();
    clean.hooks = &hooks;
    free(run(&f, ROWS, 4, &clean));
    for (int l = 0; l < f.c->n_layers; l++) {
        hs_z_edit e = {.row = 2, .layer = l, .head = 1, .pos = -1, .mode = HS_EDIT_ZERO};
        float lp_full[4 * 9], lp_pref[4 * 9];
        hs_forward_params full = hs_forward_default_params(), pref = hs_forward_default_params();
        full.edits = pref.edits = &e;
        full.n_edits = pref.n_edits = 1;
        full.target_logprobs = lp_full;
        pref.target_logprobs = lp_pref;
        pref.start_layer = l;
        pref.resid_start = hs_capture_get(cap, HS_HOOK_RESID_PRE, l, NULL);
        float *a = run(&f, ROWS, 4, &full), *b = run(&f, ROWS, 4, &pref);
        expect_close(a, b, 4 * V, 1e-5, "prefix-reuse logits");
        /* the same residuals already in backend memory: the same bits */
        const int64_t nres = (int64_t)4 * T * f.c->d_model;
        void *dev = NULL;
        float lp_dev[4 * 9];
        cr_assert_eq(f.be->ops->alloc(f.be, (size_t)nres * sizeof(float), &dev, &err), HS_OK);
        cr_assert_eq(f.be->ops->upload_f32(f.be, dev, pref.resid_start, nres, &err), HS_OK);
        hs_forward_params pdev = pref;
        pdev.resid_start = NULL;
        pdev.resid_start_dev = dev;
        pdev.target_logprobs = lp_dev;
        float *c = run(&f, ROWS, 4, &pdev);
        cr_assert(!memcmp(b, c, (size_t)4 * V * sizeof(float)), "resid_start_dev logits differ from resid_start");
        cr_assert(!memcmp(lp_pref, lp_dev, (size_t)4 * T * sizeof(float)), "resid_start_dev log-probs differ");
        f.be->ops->free(f.be, dev);
        free(c);
        for (int i = 0; i < 4 * T; i++) {
            if (isnan(lp_full[i])) {
                cr_assert(isnan(lp_pref[i]) && (i % T) == T - 1, "NaN only where there is no target");
                continue;
            }
            cr_assert_float_eq(lp_full[i], lp_pref[i], 1e-5f, "log-prob %d", i);
            cr_assert_lt(lp_full[i], 0.0f);
        }
        free(a);
        free(b);
    }
    hs_capture_free(cap);
    fx_free(&f);
}

/* SET with the head's own clean z (patching clean into clean) changes nothing;
 * target log-probs equal log_softmax of the full logits. */
Test(interventions, patch_clean_into_clean_is_identity) {
    fx f;
    fx_init(&f, "llama_mha");
    const int T = f.T, H = f.c->n_heads, dh = f.c->d_head, V = f.c->n_vocab;
    hs_err err = {0};
    hs_capture *cap;
    cr_assert_eq(hs_capture_init(f.be, &cap, &err), HS_OK);
    hs_capture_want(cap, HS_HOOK_Z, 2, &err);
    hs_hooks hooks = hs_capture_hooks(cap);
    hs_forward_params clean = hs_forward_default_params();
    clean.hooks = &hooks;
    float *base = run(&f, ROWS, 4, &clean);
    const float *z = hs_capture_get(cap, HS_HOOK_Z, 2, NULL);
    float *src = malloc((size_t)T * dh * sizeof(float));
    for (int t = 0; t < T; t++) memcpy(src + t * dh, z + ((int64_t)(1 * T + t) * H + 3) * dh, (size_t)dh * sizeof(float));
    hs_z_edit e = {.row = 1, .layer = 2, .head = 3, .pos = -1, .mode = HS_EDIT_SET, .src = src};
    hs_forward_params fp = hs_forward_default_params();
    fp.edits = &e;
    fp.n_edits = 1;
    float *patched = run(&f, ROWS, 4, &fp);
    expect_close(base, patched, 4 * V, 0, "clean-into-clean patch");
    free(src);
    free(patched);
    free(base);
    hs_capture_free(cap);
    fx_free(&f);
}

/* Uniform attention: z at position t is the mean of v over positions <= t. */
Test(interventions, uniform_attention_averages_values) {
    fx f;
    fx_init(&f, "llama_gqa");
    const int T = f.T, H = f.c->n_heads, Hk = f.c->n_kv_heads, dh = f.c->d_head, l = 1, h = 4, hk = h / (H / Hk);
    hs_err err = {0};
    hs_capture *cap;
    cr_assert_eq(hs_capture_init(f.be, &cap, &err), HS_OK);
    hs_capture_want(cap, HS_HOOK_V, l, &err);
    hs_capture_want(cap, HS_HOOK_Z, l, &err);
    hs_hooks hooks = hs_capture_hooks(cap);
    hs_z_edit e = {.row = 0, .layer = l, .head = h, .pos = -1, .mode = HS_EDIT_UNIFORM};
    hs_forward_params fp = hs_forward_default_params();
    fp.edits = &e;
    fp.n_edits = 1;
    fp.hooks = &hooks;
    free(run(&f, ROWS, 1, &fp));
    const float *v = hs_capture_get(cap, HS_HOOK_V, l, NULL), *z = hs_capture_get(cap, HS_HOOK_Z, l, NULL);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < dh; i++) {
            double m = 0;
            for (int s2 = 0; s2 <= t; s2++) m += v[((int64_t)s2 * Hk + hk) * dh + i];
            m /= t + 1;
            cr_assert_float_eq(z[((int64_t)t * H + h) * dh + i], (float)m, 1e-5, "t %d i %d", t, i);
        }
    hs_capture_free(cap);
    fx_free(&f);
}

/* A partial pass (stop_layer) runs layers [start_layer, stop_layer) exactly
 * as the full pass does and offers no hook beyond them; it refuses logits. */
typedef struct {
    int max_layer;
    const hs_hooks *also;
} layer_seen;
static int seen_wants(void *u, hs_hook_point p, int l) {
    const layer_seen *ls = u;
    return p == HS_HOOK_RESID_PRE || ls->also->wants(ls->also->user, p, l);
}
static hs_status seen_fn(void *u, hs_hook_point p, int l, hs_tensor *t, hs_err *err) {
    layer_seen *ls = u;
    if (l > ls->max_layer) ls->max_layer = l;
    return ls->also->wants(ls->also->user, p, l) ? ls->also->fn(ls->also->user, p, l, t, err) : HS_OK;
}

Test(interventions, stop_layer_runs_a_prefix_of_the_layers) {
    fx f;
    fx_init(&f, "llama_gqa");
    const int T = f.T, L = f.c->n_layers, w = f.c->n_heads * f.c->d_head;
    cr_assert_geq(L, 2);
    hs_err err = {0};
    hs_capture *full, *part;
    cr_assert_eq(hs_capture_init(f.be, &full, &err), HS_OK);
    cr_assert_eq(hs_capture_init(f.be, &part, &err), HS_OK);
    cr_assert_eq(hs_capture_want(full, HS_HOOK_Q, -1, &err), HS_OK);
    cr_assert_eq(hs_capture_want(part, HS_HOOK_Q, -1, &err), HS_OK);
    hs_hooks hf = hs_capture_hooks(full), hp = hs_capture_hooks(part);
    hs_forward_params fp = hs_forward_default_params();
    fp.hooks = &hf;
    hs_z_edit e = {.row = 1, .layer = 0, .head = 1, .pos = -1, .mode = HS_EDIT_ZERO};
    fp.edits = &e;
    fp.n_edits = 1;
    free(run(&f, ROWS, 4, &fp));
    layer_seen ls = {-1, &hp};
    const hs_hooks seen = {.wants = seen_wants, .fn = seen_fn, .user = &ls};
    hs_batch b = {.B = 4, .T = T, .tokens = f.tok};
    hs_forward_params pp = fp;
    pp.hooks = &seen;
    pp.logits = HS_LOGITS_NONE;
    pp.stop_layer = L - 1;
    cr_assert_eq(hs_forward(f.s, &b, &pp, NULL, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(ls.max_layer, L - 2, "hooks ran up to layer %d, stop_layer %d", ls.max_layer, L - 1);
    for (int l = 0; l < L - 1; l++) {
        const float *a = hs_capture_get(full, HS_HOOK_Q, l, NULL), *q = hs_capture_get(part, HS_HOOK_Q, l, NULL);
        cr_assert(a && q);
        cr_assert(!memcmp(a, q, (size_t)4 * T * w * sizeof(float)), "layer %d q differs", l);
    }
    float lg[4 * 300];
    pp.logits = HS_LOGITS_LAST;
    cr_assert_eq(hs_forward(f.s, &b, &pp, lg, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "no logits"), "%s", err.msg);
    pp.logits = HS_LOGITS_NONE;
    pp.stop_layer = L + 1;
    cr_assert_eq(hs_forward(f.s, &b, &pp, NULL, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "stop_layer"), "%s", err.msg);
    hs_capture_free(full);
    hs_capture_free(part);
    fx_free(&f);
}

/* z_from_hook: layers whose z a hook gives whole compute no attention, yet
 * the pass is bit for bit the one that computes it and then overwrites it
 * (path patching's frozen heads); the projections a hook reads are still
 * computed there; a layer with no z hook, or wanting its pattern, is refused. */
typedef struct {
    const hs_capture *from; /* the z each layer >= first gets */
    hs_capture *keep;       /* q and v, read at every layer */
    int first;
    int64_t nz;
} z_giver;
static int giver_wants(void *u, hs_hook_point p, int l) {
    const z_giver *g = u;
    return (p == HS_HOOK_Z && l >= g->first) || p == HS_HOOK_Q || p == HS_HOOK_V;
}
static hs_status giver_fn(void *u, hs_hook_point p, int l, hs_tensor *t, hs_err *err) {
    z_giver *g = u;
    if (p != HS_HOOK_Z) {
        hs_hooks k = hs_capture_hooks(g->keep);
        return k.fn(k.user, p, l, t, err);
    }
    memcpy(t->data, hs_capture_get(g->from, HS_HOOK_Z, l, NULL), (size_t)g->nz * sizeof(float));
    return HS_OK;
}

Test(interventions, z_from_hook_skips_attention_not_results) {
    fx f;
    fx_init(&f, "llama_gqa");
    const int T = f.T, L = f.c->n_layers, H = f.c->n_heads, Hk = f.c->n_kv_heads, dh = f.c->d_head;
    hs_err err = {0};
    hs_capture *zc, *k0, *k1;
    cr_assert_eq(hs_capture_init(f.be, &zc, &err), HS_OK);
    cr_assert_eq(hs_capture_init(f.be, &k0, &err), HS_OK);
    cr_assert_eq(hs_capture_init(f.be, &k1, &err), HS_OK);
    cr_assert_eq(hs_capture_want(zc, HS_HOOK_Z, -1, &err), HS_OK);
    for (int i = 0; i < 2; i++) {
        hs_capture *k = i ? k1 : k0;
        cr_assert_eq(hs_capture_want(k, HS_HOOK_Q, -1, &err), HS_OK);
        cr_assert_eq(hs_capture_want(k, HS_HOOK_V, -1, &err), HS_OK);
    }
    /* the z to give: another prompt order's */
    const int other[4] = {2, 3, 0, 1};
    hs_hooks hz = hs_capture_hooks(zc);
    hs_forward_params cp = hs_forward_default_params();
    cp.hooks = &hz;
    free(run(&f, other, 4, &cp));
    hs_z_edit e = {.row = 1, .layer = 0, .head = 1, .pos = -1, .mode = HS_EDIT_ZERO};
    z_giver g0 = {.from = zc, .keep = k0, .first = 1, .nz = (int64_t)4 * T * H * dh}, g1 = g0;
    g1.keep = k1;
    const hs_hooks h0 = {.wants = giver_wants, .fn = giver_fn, .user = &g0},
                   h1 = {.wants = giver_wants, .fn = giver_fn, .user = &g1};
    hs_forward_params a = hs_forward_default_params(), b = hs_forward_default_params();
    a.edits = b.edits = &e;
    a.n_edits = b.n_edits = 1;
    a.hooks = &h0;
    b.hooks = &h1;
    b.z_from_hook = 1;
    float *x = run(&f, ROWS, 4, &a), *y = run(&f, ROWS, 4, &b);
    cr_assert(!memcmp(x, y, (size_t)4 * f.c->n_vocab * sizeof(float)), "logits differ with z_from_hook");
    for (int l = 0; l < L; l++) {
        const float *qa = hs_capture_get(k0, HS_HOOK_Q, l, NULL), *qb = hs_capture_get(k1, HS_HOOK_Q, l, NULL);
        const float *va = hs_capture_get(k0, HS_HOOK_V, l, NULL), *vb = hs_capture_get(k1, HS_HOOK_V, l, NULL);
        cr_assert(qa && qb && va && vb, "layer %d: q or v not offered", l);
        cr_assert(!memcmp(qa, qb, (size_t)4 * T * H * dh * sizeof(float)), "layer %d q differs", l);
        cr_assert(!memcmp(va, vb, (size_t)4 * T * Hk * dh * sizeof(float)), "layer %d v differs", l);
    }
    /* the giving changes the result: the check above compares something */
    hs_forward_params plain = hs_forward_default_params();
    plain.edits = &e;
    plain.n_edits = 1;
    float *u = run(&f, ROWS, 4, &plain);
    cr_assert(memcmp(u, y, (size_t)4 * f.c->n_vocab * sizeof(float)), "giving z changed nothing");
    hs_batch bt = {.B = 4, .T = T, .tokens = f.tok};
    float lg[4 * 300];
    cr_assert_leq(f.c->n_vocab, 300);
    plain.z_from_hook = 1; /* no hook gives z */
    cr_assert_eq(hs_forward(f.s, &bt, &plain, lg, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "no hook gives z at layer 1"), "%s", err.msg);
    plain.z_from_hook = L + 1;
    cr_assert_eq(hs_forward(f.s, &bt, &plain, lg, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "z_from_hook"), "%s", err.msg);
    hs_capture *pc;
    cr_assert_eq(hs_capture_init(f.be, &pc, &err), HS_OK);
    cr_assert_eq(hs_capture_want(pc, HS_HOOK_PATTERN, 2, &err), HS_OK);
    cr_assert_eq(hs_capture_want(pc, HS_HOOK_Z, -1, &err), HS_OK);
    hs_hooks hp = hs_capture_hooks(pc);
    plain.hooks = &hp;
    plain.z_from_hook = 2;
    cr_assert_eq(hs_forward(f.s, &bt, &plain, lg, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "no pattern"), "%s", err.msg);
    free(x);
    free(y);
    free(u);
    hs_capture_free(pc);
    hs_capture_free(zc);
    hs_capture_free(k0);
    hs_capture_free(k1);
    fx_free(&f);
}

Test(interventions, bad_edits_are_refused) {
    fx f;
    fx_init(&f, "gpt2");
    int32_t tok[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    hs_batch b = {.B = 1, .T = 9, .tokens = tok};
    hs_err err = {0};
    hs_z_edit e = {.row = 0, .layer = 7, .head = 0, .pos = -1, .mode = HS_EDIT_ZERO};
    hs_forward_params fp = hs_forward_default_params();
    fp.edits = &e;
    fp.n_edits = 1;
    float lg[300];
    cr_assert_eq(hs_forward(f.s, &b, &fp, lg, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "layer 7"), "%s", err.msg);
    e.layer = 0;
    e.mode = HS_EDIT_UNIFORM;
    e.pos = 2;
    cr_assert_eq(hs_forward(f.s, &b, &fp, lg, &err), HS_ERR_INVALID_ARG);
    fp.n_edits = 0;
    fp.start_layer = 1; /* without resid_start */
    cr_assert_eq(hs_forward(f.s, &b, &fp, lg, &err), HS_ERR_INVALID_ARG);
    float resid[1] = {0};
    fp.resid_start = resid; /* and with both forms at once */
    fp.resid_start_dev = resid;
    cr_assert_eq(hs_forward(f.s, &b, &fp, lg, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "resid_start_dev"), "%s", err.msg);
    fx_free(&f);
}

/* Edits apply in list order: a later SET of the same z vector wins, a ZERO or
 * SCALE after a SET scales the set vector, a SET after them replaces the
 * value; multipliers on the computed z commute. The forward folds the list
 * into the attention op's tables (head multipliers, the SET table, one-
 * position SCALEs after the op), so every ordering is checked against the
 * unedited z. */
static float *z_at(fx *f, int l, const hs_z_edit *edits, int n) {
    hs_err err = {0};
    hs_capture *cap;
    cr_assert_eq(hs_capture_init(f->be, &cap, &err), HS_OK);
    hs_capture_want(cap, HS_HOOK_Z, l, &err);
    hs_hooks hooks = hs_capture_hooks(cap);
    hs_forward_params fp = hs_forward_default_params();
    fp.hooks = &hooks;
    fp.edits = edits;
    fp.n_edits = n;
    free(run(f, ROWS, 2, &fp));
    const size_t bytes = (size_t)2 * f->T * f->c->n_heads * f->c->d_head * sizeof(float); /* [2, T, H, dh] */
    float *z = malloc(bytes);
    memcpy(z, hs_capture_get(cap, HS_HOOK_Z, l, NULL), bytes);
    hs_capture_free(cap);
    return z;
}

Test(interventions, edit_list_order_holds) {
    fx f;
    fx_init(&f, "llama_gqa");
    const int T = f.T, H = f.c->n_heads, dh = f.c->d_head, l = 1, P = 3;
    float *a = malloc((size_t)T * dh * sizeof(float)), *bb = malloc((size_t)T * dh * sizeof(float));
    for (int i = 0; i < T * dh; i++) a[i] = 0.25f + (float)i / 64.0f, bb[i] = -1.5f + (float)i / 128.0f;
#define E(p, m, ...) {.row = 0, .layer = l, .head = 1, .pos = (p), .mode = (m), __VA_ARGS__}
    /* want(t, j) per list: 'a'/'b' = a or bb, 'z' = the unedited z, times mult */
    const struct {
        hs_z_edit e[3];
        int n;
        char at_p, other;
        float mult_p, mult_other;
    } cases[] = {
        {{E(-1, HS_EDIT_SET, .src = a), E(P, HS_EDIT_SET, .src = bb + P * dh)}, 2, 'b', 'a', 1, 1},
        {{E(-1, HS_EDIT_SET, .src = a), E(P, HS_EDIT_ZERO)}, 2, 'a', 'a', 0, 1},
        {{E(P, HS_EDIT_ZERO), E(-1, HS_EDIT_SET, .src = a)}, 2, 'a', 'a', 1, 1},
        {{E(-1, HS_EDIT_SET, .src = a), E(-1, HS_EDIT_SCALE, .scale = 2)}, 2, 'a', 'a', 2, 2},
        {{E(-1, HS_EDIT_ZERO), E(P, HS_EDIT_SET, .src = bb + P * dh)}, 2, 'b', 'z', 1, 0},
        {{E(P, HS_EDIT_SCALE, .scale = 3)}, 1, 'z', 'z', 3, 1},
        {{E(P, HS_EDIT_SCALE, .scale = 3), E(P, HS_EDIT_SET, .src = bb + P * dh)}, 2, 'b', 'z', 1, 1},
        {{E(P, HS_EDIT_ZERO), E(-1, HS_EDIT_SCALE, .scale = 2)}, 2, 'z', 'z', 0, 2},
        {{E(P, HS_EDIT_SET, .src = bb + P * dh), E(P, HS_EDIT_ZERO), E(P, HS_EDIT_SET, .src = a + P * dh)},
         3, 'a', 'z', 1, 1},
        {{E(P, HS_EDIT_SCALE, .scale = 3), E(-1, HS_EDIT_SCALE, .scale = 0.5f)}, 2, 'z', 'z', 1.5f, 0.5f},
    };
#undef E
    float *z0 = z_at(&f, l, NULL, 0);
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        float *z = z_at(&f, l, cases[k].e, cases[k].n);
        for (int t = 0; t < T; t++)
            for (int hh = 0; hh < H; hh++)
                for (int j = 0; j < dh; j++) {
                    const int64_t i = ((int64_t)t * H + hh) * dh + j;
                    float want = z0[i];
                    if (hh == 1) {
                        const char what = t == P ? cases[k].at_p : cases[k].other;
                        want = (what == 'a' ? a[t * dh + j] : what == 'b' ? bb[t * dh + j] : z0[i]) *
                               (t == P ? cases[k].mult_p : cases[k].mult_other);
                    }
                    cr_assert_eq(z[i], want, "list %zu: z[0, %d, %d, %d] = %g, want %g", k, t, hh, j, z[i], want);
                }
        free(z);
    }
    free(z0), free(a), free(bb);
    fx_free(&f);
}
