/* hs_attribution: attribution patching (hs_patching.h). Per batch of prompts:
 *   1. the clean forward keeps every layer's activation of each target (z,
 *      resid_pre, attn_out, mlp_out, q, k, v) in backend memory and gives
 *      the clean metric;
 *   2. the corrupted forward (hs_bwd_forward) gives the corrupted metric and
 *      its logits, from which the metric's gradient is seeded, and keeps
 *      attn_out, mlp_out, q, k and v where wanted (the backward keeps z and
 *      resid_pre);
 *   3. the backward's visitor reduces, per layer, position and head,
 *      a_clean . dM/da and a_corrupt . dM/da on the backend (head_dot with one
 *      position per row), and the host takes their difference in double.
 *      dM/d attn_out[l] is dM/d resid_mid[l], dM/d mlp_out[l] dM/d resid_post[l];
 *      q and k are taken before RoPE, as TransformerLens's hook_q and hook_k.
 *      With the QK fix (AtP*) the q and k cells instead recompute the layer's
 *      attention with the clean q (k) after RoPE and take (z_new - z) . dM/dz.
 * The difference of two dot products equals the dot product of the
 * difference (linearity); it saves a subtraction op and a buffer.
 *
 * GradDrop (AtP*) wants, for every layer D, each cell's estimate with the
 * gradient through layer D's addition to the residual stream dropped. Above
 * D nothing changes; at D the stream's gradient passes straight through
 * (dM/d resid_pre[D] = dM/d resid_post[D]) and every target inside the layer
 * gets 0; below D the walk goes on from there. So a cell at layer l gets its
 * plain |estimate| from each of the l drops below it, resid_pre[l] also
 * |delta . dM/d resid_post[l]| from the drop at l, and the rest from one walk
 * per drop D > l, started at layer D - 1 from the plain dM/d resid_post[D]
 * (kept from the plain walk): L(L-1)/2 layer backwards in all. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_patching.h"
#include "hs_backward.h"
#include "hs_metric.h"
#include "hs_patching_internal.h"

int hs_attribution_patching_unit(const hs_patching_params *p) { return p->batch_rows > 0 ? p->batch_rows : 1; }

/* How the visitor's estimates land in the outputs. */
typedef enum {
    EMIT_SET,  /* a cell := M(corrupt) + its estimate */
    EMIT_BASE, /* GradDrop's plain walk: a cell at layer l := l |estimate| (the l drops below it) */
    EMIT_ADD,  /* GradDrop's walk below a drop: a cell += |estimate| */
} emit_mode;

typedef struct {
    hs_session *s;
    const hs_model_config *c;
    const hs_prompts *pr;
    const hs_patching_params *p;
    hs_patching_out *out;
    int p0, B, T, L, H, Hk, dh, d, want[HS_PATCH_COUNT];
    int qk_fix; /* q and k cells by AtP*'s QK fix: their clean activations kept after RoPE */
    int rope;
    void *znew; /* backend [n, H, dh]: z with one head's q or k patched, for the QK fix */
    int64_t n;
    /* backend [L, n, width] per target: the activation it patches, from the
     * clean and from the corrupted run. z (both z targets) sits at
     * HS_PATCH_Z_ALL_POS; the backward keeps the corrupted z and resid_pre. */
    void *clean[HS_PATCH_COUNT], *corrupt[HS_PATCH_COUNT];
    float *dc, *dx;  /* host [n, H] dot products with the clean and corrupted activations */
    double *factor;  /* [B] dM/d(seeded quantity): 1, or 1/(len-1) for the mean loss */
    emit_mode mode;
    void *gpost; /* GradDrop: backend [L, n, d], the plain walk's dM/d resid_post of each layer */
} attr_ctx;

static void emit_as(const attr_ctx *x, emit_mode mode, float *cell, int prompt, int layer, double est) {
    if (mode == EMIT_SET) *cell = (float)(x->out->corrupt[prompt] + est);
    else if (mode == EMIT_BASE) *cell = (float)(layer * fabs(est));
    else *cell += (float)fabs(est);
}

static void emit(const attr_ctx *x, float *cell, int prompt, int layer, double est) {
    emit_as(x, x->mode, cell, prompt, layer, est);
}

/* The target whose activation hook point p is (HS_PATCH_COUNT: none; z is
 * kept once, at HS_PATCH_Z_ALL_POS). The QK fix recomputes attention, which
 * reads q and k after RoPE. */
static int target_of(const attr_ctx *x, hs_hook_point p) {
    const int rotated = x->qk_fix && x->rope;
    if (rotated && p == HS_HOOK_ROT_Q) return HS_PATCH_Q_ALL_POS;
    if (rotated && p == HS_HOOK_ROT_K) return HS_PATCH_K_ALL_POS;
    for (int k = 0; k < HS_PATCH_COUNT; k++)
        if (hs_patch_target_point((hs_patch_target)k) == p &&
            !(rotated && (k == HS_PATCH_Q_ALL_POS || k == HS_PATCH_K_ALL_POS)))
            return k;
    return HS_PATCH_COUNT;
}

/* Where the clean (or corrupted) run keeps hook point p: NULL = not kept. */
static void *slot(const attr_ctx *x, hs_hook_point p, int corrupt) {
    const int k = target_of(x, p);
    return k == HS_PATCH_COUNT ? NULL : corrupt ? x->corrupt[k] : x->clean[k];
}

static int clean_wants(void *user, hs_hook_point p, int layer) { return slot(user, p, 0) != NULL; }
static int corrupt_wants(void *user, hs_hook_point p, int layer) { return slot(user, p, 1) != NULL; }

static hs_status keep(attr_ctx *x, hs_hook_point p, int layer, const hs_tensor *t, int corrupt, hs_err *err) {
    const int64_t bytes = x->n * hs_patch_target_width(x->c, (hs_patch_target)target_of(x, p)) * (int64_t)x->s->es;
    return x->s->be->ops->copy(x->s->be, (char *)slot(x, p, corrupt) + layer * bytes, t->data, (size_t)bytes, err);
}

static hs_status clean_keep(void *user, hs_hook_point p, int layer, hs_tensor *t, hs_err *err) {
    return keep(user, p, layer, t, 0, err);
}

static hs_status corrupt_keep(void *user, hs_hook_point p, int layer, hs_tensor *t, hs_err *err) {
    return keep(user, p, layer, t, 1, err);
}

/* x->dc and x->dx [n, w] = per position, a_clean . g and a_corrupt . g. */
static hs_status dots(attr_ctx *x, const void *a_clean, const void *a_corrupt, const void *g, int heads, int width,
                      hs_err *err) {
    hs_session *s = x->s;
    const hs_backend_ops *o = s->be->ops;
    const size_t bytes = (size_t)x->n * heads * sizeof(float);
    hs_status st = o->head_dot(s->be, a_clean, g, (int)x->n, 1, heads, width, s->bwd->dots, err);
    if (st == HS_OK) st = o->download(s->be, x->dc, s->bwd->dots, bytes, err);
    if (st == HS_OK) st = o->head_dot(s->be, a_corrupt, g, (int)x->n, 1, heads, width, s->bwd->dots, err);
    if (st == HS_OK) st = o->download(s->be, x->dx, s->bwd->dots, bytes, err);
    return st;
}

static hs_status visit(void *user, int l, const hs_bwd_layer *gl, hs_err *err) {
    attr_ctx *x = user;
    const int T = x->T, H = x->H, L = x->L;
    hs_status st = HS_OK;
    const int64_t es = x->s->es;
    if (x->want[HS_PATCH_Z_ALL_POS] || x->want[HS_PATCH_Z_BY_POS]) {
        const int64_t zl = (int64_t)l * x->n * H * x->dh * es;
        HS_CHECK(dots(x, (const char *)x->clean[HS_PATCH_Z_ALL_POS] + zl, gl->z, gl->dz, H, x->dh, err));
        for (int r = 0; r < x->B; r++) {
            const int g = x->p0 + r, len = x->pr->lengths[g];
            for (int h = 0; h < H; h++) {
                double sum = 0;
                for (int t = 0; t < len; t++) {
                    const int64_t k = ((int64_t)r * T + t) * H + h;
                    const double e = x->factor[r] * ((double)x->dc[k] - x->dx[k]);
                    sum += e;
                    if (x->want[HS_PATCH_Z_BY_POS])
                        emit(x, &x->out->z_by_pos[(((int64_t)g * L + l) * T + t) * H + h], g, l, e);
                }
                if (x->want[HS_PATCH_Z_ALL_POS]) emit(x, &x->out->z_all_pos[((int64_t)g * L + l) * H + h], g, l, sum);
            }
        }
    }
    /* one cell per position: the activation of the clean and corrupted runs, the gradient at it */
    const int64_t rl = (int64_t)l * x->n * x->d * es;
    const struct {
        int target;
        float *out;
        const void *corrupt, *g;
    } pos[4] = {{HS_PATCH_RESID_PRE, x->out->resid_pre, x->s->bwd->res, gl->g_pre},
                {HS_PATCH_ATTN_OUT, x->out->attn_out, x->corrupt[HS_PATCH_ATTN_OUT], gl->g_mid},
                {HS_PATCH_MLP_OUT, x->out->mlp_out, x->corrupt[HS_PATCH_MLP_OUT], gl->g_post},
                /* GradDrop's drop at layer l itself: resid_pre[l]'s gradient is then dM/d resid_post[l] */
                {HS_PATCH_RESID_PRE, x->out->resid_pre, x->s->bwd->res, gl->g_post}};
    for (int k = 0; k < (x->mode == EMIT_BASE ? 4 : 3); k++) {
        if (!x->want[pos[k].target]) continue;
        HS_CHECK(dots(x, (const char *)x->clean[pos[k].target] + rl, (const char *)pos[k].corrupt + rl, pos[k].g, 1,
                      x->d, err));
        const emit_mode mode = k == 3 ? EMIT_ADD : x->mode;
        for (int r = 0; r < x->B; r++) {
            const int g = x->p0 + r;
            for (int t = 0; t < x->pr->lengths[g]; t++) {
                const int64_t c = (int64_t)r * T + t;
                emit_as(x, mode, &pos[k].out[((int64_t)g * L + l) * T + t], g, l,
                        x->factor[r] * ((double)x->dc[c] - x->dx[c]));
            }
        }
    }
    /* one cell per head of q, per KV head of k and v: summed over the prompt's positions */
    const struct {
        float *out;
        const void *g;
        int heads;
    } qkv[3] = {{x->out->q_all_pos, gl->dq, H}, {x->out->k_all_pos, gl->dk, x->Hk}, {x->out->v_all_pos, gl->dv, x->Hk}};
    for (int k = 0; k < 3; k++) {
        const int tg = HS_PATCH_Q_ALL_POS + k, nh = qkv[k].heads;
        if (!x->want[tg]) continue;
        const int64_t ql = (int64_t)l * x->n * nh * x->dh * es;
        const void *clean = (const char *)x->clean[tg] + ql;
        int dot_heads = nh; /* the dots' heads, and how many of them make one cell */
        if (x->qk_fix && tg != HS_PATCH_V_ALL_POS) {
            /* z with every head's q (every KV head's k) patched: each head's z
             * reads only its own q and its KV head's k, so per head it is that
             * one patch; the cell is (z_new - z_corrupt) . dz, summed over the
             * query heads that read the patched q or k */
            hs_attn_params a = *gl->attn;
            a.z = x->znew, a.lse = NULL, a.pattern = NULL, a.pattern_rows = NULL;
            if (tg == HS_PATCH_Q_ALL_POS) a.q = clean;
            else a.k = clean;
            HS_CHECK(x->s->be->ops->attention(x->s->be, &a, err));
            HS_CHECK(dots(x, x->znew, gl->z, gl->dz, H, x->dh, err));
            dot_heads = H;
        } else {
            HS_CHECK(dots(x, clean, (const char *)x->corrupt[tg] + ql, qkv[k].g, nh, x->dh, err));
        }
        const int per_cell = dot_heads / nh;
        for (int r = 0; r < x->B; r++) {
            const int g = x->p0 + r;
            for (int h = 0; h < nh; h++) {
                double sum = 0;
                for (int t = 0; t < x->pr->lengths[g]; t++)
                    for (int j = h * per_cell; j < (h + 1) * per_cell; j++) {
                        const int64_t c = ((int64_t)r * T + t) * dot_heads + j;
                        sum += (double)x->dc[c] - x->dx[c];
                    }
                emit(x, &qkv[k].out[((int64_t)g * L + l) * nh + h], g, l, x->factor[r] * sum);
            }
        }
    }
    if (x->mode == EMIT_BASE && l > 0) { /* where the walk below a drop at l starts */
        const size_t bytes = (size_t)(x->n * x->d * es);
        HS_CHECK(x->s->be->ops->copy(x->s->be, (char *)x->gpost + l * bytes, gl->g_post, bytes, err));
    }
exit:
    return st;
}

/* GradDrop's cells of the batch from their sums of |estimate| over the L
 * drops: M(corrupt) + sum / (L - 1) (one of the drops, the cell's own layer,
 * gives 0 to all but resid_pre). */
static void grad_drop_finish(attr_ctx *x) {
    for (int k = 0; k < HS_PATCH_COUNT; k++) {
        if (!x->want[k]) continue;
        int per_pos;
        const int inner = hs_patch_target_cells(x->c, (hs_patch_target)k, &per_pos);
        const int64_t block = per_pos ? (int64_t)x->T * inner : inner;
        for (int r = 0; r < x->B; r++) {
            const int g = x->p0 + r;
            const int64_t cells = per_pos ? (int64_t)x->pr->lengths[g] * inner : inner;
            for (int l = 0; l < x->L; l++) {
                float *c = hs_patch_out(x->out, (hs_patch_target)k) + ((int64_t)g * x->L + l) * block;
                for (int64_t i = 0; i < cells; i++) c[i] = (float)(x->out->corrupt[g] + (double)c[i] / (x->L - 1));
            }
        }
    }
}

hs_status hs_attribution_patching(hs_session *s, const hs_model *m, const hs_prompts *pr, const int32_t *corrupt,
                                  const hs_patching_params *p, hs_patching_out *out, hs_err *err) {
    const hs_model_config *c = hs_model_get_config(m);
    const int N = pr->N, T = pr->T, L = c->n_layers, H = c->n_heads, V = c->n_vocab, R = p->batch_rows;
    hs_status st = hs_metric_check(c, pr, p->metric, err);
    if (st) return hs_err_prefix(err, "attribution patching");
    if (p->metric == HS_METRIC_ACCURACY)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "attribution patching: metric accuracy has no gradient");
    attr_ctx x;
    memset(&x, 0, sizeof x);
    if ((st = hs_patching_prepare(p, out, c, N, T, x.want, "attribution patching", err))) return st;
    if (x.want[HS_PATCH_PATH_LOGITS] || x.want[HS_PATCH_PATH_HEADS])
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "attribution patching: %s has no attribution estimate here (method exact)",
                          x.want[HS_PATCH_PATH_HEADS] ? "path_heads" : "path_logits");
    if (p->grad_drop && L < 2)
        return hs_err_set(err, HS_ERR_INVALID_ARG,
                          "attribution patching: grad_drop averages over the other layers: the model has only one");
    x.s = s, x.c = c, x.pr = pr, x.p = p, x.out = out, x.T = T, x.L = L, x.H = H, x.Hk = c->n_kv_heads, x.dh = c->d_head;
    x.d = c->d_model, x.qk_fix = p->qk_fix, x.rope = c->rope != HS_ROPE_NONE;
    const int64_t rows = (int64_t)R * T, es = (int64_t)s->es;
    hs_backend *be = s->be;
    int32_t *mask = malloc((size_t)N * T * sizeof *mask), *tg_clean = malloc((size_t)N * T * sizeof *tg_clean),
            *tg_corrupt = malloc((size_t)N * T * sizeof *tg_corrupt);
    float *logits = malloc((size_t)R * V * sizeof *logits), *clean_logp = malloc((size_t)R * V * sizeof *clean_logp),
          *lp = malloc((size_t)rows * sizeof *lp), *scratch = malloc((size_t)V * sizeof *scratch);
    x.dc = malloc((size_t)rows * (H > 1 ? H : 1) * sizeof(float));
    x.dx = malloc((size_t)rows * (H > 1 ? H : 1) * sizeof(float));
    x.factor = malloc((size_t)R * sizeof *x.factor);
    if (!mask || !tg_clean || !tg_corrupt || !logits || !clean_logp || !lp || !scratch || !x.dc || !x.dx || !x.factor)
        HS_FAIL(err, HS_ERR_OOM, "attribution patching: out of memory for %d rows x %d tokens", R, T);
    for (int k = 0; k < HS_PATCH_COUNT; k++) {
        if (k == HS_PATCH_Z_BY_POS || !(x.want[k] || (k == HS_PATCH_Z_ALL_POS && x.want[HS_PATCH_Z_BY_POS]))) continue;
        const size_t bytes = (size_t)(L * rows * hs_patch_target_width(c, (hs_patch_target)k) * es);
        HS_CHECK(be->ops->alloc(be, bytes, &x.clean[k], err));
        const int fixed = x.qk_fix && (k == HS_PATCH_Q_ALL_POS || k == HS_PATCH_K_ALL_POS);
        if (k != HS_PATCH_Z_ALL_POS && k != HS_PATCH_RESID_PRE && !fixed) /* the backward keeps those */
            HS_CHECK(be->ops->alloc(be, bytes, &x.corrupt[k], err));
    }
    if (x.qk_fix && (x.want[HS_PATCH_Q_ALL_POS] || x.want[HS_PATCH_K_ALL_POS]))
        HS_CHECK(be->ops->alloc(be, (size_t)(rows * H * x.dh * es), &x.znew, err));
    if (p->grad_drop) HS_CHECK(be->ops->alloc(be, (size_t)(L * rows * x.d * es), &x.gpost, err));
    int corrupt_hooks = 0, want_attn_grads = x.want[HS_PATCH_RESID_PRE];
    for (int k = 0; k < HS_PATCH_COUNT; k++) corrupt_hooks |= x.corrupt[k] != NULL;
    for (int k = HS_PATCH_Q_ALL_POS; k < HS_PATCH_COUNT; k++) /* the QK fix reads dM/dz, not dM/dq or dM/dk */
        want_attn_grads |= x.want[k] && !(x.qk_fix && k != HS_PATCH_V_ALL_POS);
    hs_prompts_mask_targets(pr, NULL, mask, tg_clean);
    hs_prompts_mask_targets(pr, corrupt, NULL, tg_corrupt);
    const int chunks = (N + R - 1) / R;
    for (x.p0 = 0; x.p0 < N; x.p0 += R) {
        x.B = N - x.p0 < R ? N - x.p0 : R;
        x.n = (int64_t)x.B * T;
        const int64_t o0 = (int64_t)x.p0 * T;
        const hs_batch bc = {.B = x.B, .T = T, .tokens = pr->tokens + o0, .mask = mask + o0, .targets = tg_clean + o0},
                       bx = {.B = x.B, .T = T, .tokens = corrupt + o0, .mask = mask + o0, .targets = tg_corrupt + o0};
        /* 1. clean */
        const hs_hooks keep_clean = {.wants = clean_wants, .fn = clean_keep, .user = &x},
                       keep_corrupt = {.wants = corrupt_wants, .fn = corrupt_keep, .user = &x};
        hs_forward_params fp = hs_forward_default_params();
        fp.hooks = &keep_clean;
        fp.logits = hs_metric_logits(p->metric);
        fp.target_logprobs = p->metric == HS_METRIC_LOSS ? lp : NULL;
        HS_CHECK(hs_forward(s, &bc, &fp, logits, err));
        for (int r = 0; r < x.B; r++) {
            if (p->metric == HS_METRIC_KL) hs_log_softmax(logits + (int64_t)r * V, V, clean_logp + (int64_t)r * V);
            out->clean[x.p0 + r] = (float)hs_row_metric(p->metric, pr, x.p0 + r, logits + (int64_t)r * V,
                                                        lp + (int64_t)r * T, V, clean_logp + (int64_t)r * V, scratch);
        }
        /* 2. corrupted, with the backward's residual streams */
        fp.hooks = corrupt_hooks ? &keep_corrupt : NULL;
        HS_CHECK(hs_bwd_forward(s, &bx, &fp, logits, err));
        for (int r = 0; r < x.B; r++) {
            const int len = pr->lengths[x.p0 + r];
            out->corrupt[x.p0 + r] = (float)hs_row_metric(p->metric, pr, x.p0 + r, logits + (int64_t)r * V,
                                                          lp + (int64_t)r * T, V, clean_logp + (int64_t)r * V, scratch);
            x.factor[r] = p->metric != HS_METRIC_LOSS ? 1.0 : len > 1 ? 1.0 / (len - 1) : 0.0;
        }
        /* 3. backward */
        if (p->metric == HS_METRIC_LOSS) {
            HS_CHECK(hs_bwd_seed_nll(s, &bx, bx.targets, err));
        } else {
            hs_metric_dlogits(p->metric, pr, x.p0, x.B, logits, V, clean_logp, logits, scratch); /* in place */
            HS_CHECK(hs_bwd_seed_last(s, &bx, logits, err));
        }
        x.mode = p->grad_drop ? EMIT_BASE : EMIT_SET;
        HS_CHECK(hs_bwd_walk(s, &bx, NULL, want_attn_grads, visit, &x, err));
        if (p->grad_drop) {
            x.mode = EMIT_ADD;
            for (int drop = 1; drop < L; drop++)
                HS_CHECK(hs_bwd_walk_from(s, &bx, NULL, want_attn_grads, drop - 1,
                                          (const char *)x.gpost + drop * x.n * x.d * es, visit, &x, err));
            grad_drop_finish(&x);
        }
        if (p->progress && p->progress(p->progress_user, x.p0 / R + 1, chunks))
            HS_FAIL(err, HS_ERR_INVALID_ARG, "attribution patching: interrupted after prompt %d", x.p0 + x.B);
    }
exit:
    if (st) hs_err_prefix(err, "attribution patching");
    for (int k = 0; k < HS_PATCH_COUNT; k++) {
        if (x.clean[k]) be->ops->free(be, x.clean[k]);
        if (x.corrupt[k]) be->ops->free(be, x.corrupt[k]);
    }
    if (x.znew) be->ops->free(be, x.znew);
    if (x.gpost) be->ops->free(be, x.gpost);
    free(mask), free(tg_clean), free(tg_corrupt), free(logits), free(clean_logp), free(lp), free(scratch);
    free(x.dc), free(x.dx), free(x.factor);
    return st;
}
