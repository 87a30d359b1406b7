/* hs_attribution: attribution patching (hs_patching.h). Per batch of prompts:
 *   1. the clean forward keeps every layer's z (and resid_pre, for that
 *      target) in backend memory and gives the clean metric;
 *   2. the corrupted forward (hs_bwd_forward) gives the corrupted metric and
 *      its logits, from which the metric's gradient is seeded;
 *   3. the backward's visitor reduces, per layer, position and head,
 *      a_clean . dM/da and a_corrupt . dM/da on the backend (head_dot with one
 *      position per row), and the host takes their difference in double.
 * The difference of two dot products equals the dot product of the
 * difference (linearity); it saves a subtraction op and a buffer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_patching.h"
#include "hs_backward.h"
#include "hs_metric.h"

int hs_attribution_patching_unit(const hs_patching_params *p) { return p->batch_rows > 0 ? p->batch_rows : 1; }

typedef struct {
    hs_session *s;
    const hs_prompts *pr;
    const hs_patching_params *p;
    hs_patching_out *out;
    int p0, B, T, L, H, dh, d, want[HS_PATCH_COUNT];
    int64_t n;
    void *zc, *rc;   /* backend [L, n, H*dh] clean z, [L, n, d] clean resid_pre */
    float *dc, *dx;  /* host [n, H] dot products with the clean and corrupted activations */
    double *factor;  /* [B] dM/d(seeded quantity): 1, or 1/(len-1) for the mean loss */
} attr_ctx;

static int clean_wants(void *user, hs_hook_point p, int layer) {
    const attr_ctx *x = user;
    return (p == HS_HOOK_Z && (x->want[HS_PATCH_Z_ALL_POS] || x->want[HS_PATCH_Z_BY_POS])) ||
           (p == HS_HOOK_RESID_PRE && x->want[HS_PATCH_RESID_PRE]);
}

static hs_status clean_keep(void *user, hs_hook_point p, int layer, hs_tensor *t, hs_err *err) {
    attr_ctx *x = user;
    const int64_t w = p == HS_HOOK_Z ? (int64_t)x->H * x->dh : x->d, bytes = x->n * w * (int64_t)x->s->es;
    char *dst = (char *)(p == HS_HOOK_Z ? x->zc : x->rc) + layer * bytes;
    return x->s->be->ops->copy(x->s->be, dst, t->data, (size_t)bytes, err);
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

static hs_status visit(void *user, int l, const void *z, const void *dz, const void *g_pre, hs_err *err) {
    attr_ctx *x = user;
    const int T = x->T, H = x->H, L = x->L;
    hs_status st = HS_OK;
    if (x->want[HS_PATCH_Z_ALL_POS] || x->want[HS_PATCH_Z_BY_POS]) {
        const int64_t zl = (int64_t)l * x->n * H * x->dh * (int64_t)x->s->es;
        HS_CHECK(dots(x, (const char *)x->zc + zl, z, dz, H, x->dh, err));
        for (int r = 0; r < x->B; r++) {
            const int g = x->p0 + r, len = x->pr->lengths[g];
            const float base = x->out->corrupt[g];
            for (int h = 0; h < H; h++) {
                double sum = 0;
                for (int t = 0; t < len; t++) {
                    const int64_t k = ((int64_t)r * T + t) * H + h;
                    const double e = x->factor[r] * ((double)x->dc[k] - x->dx[k]);
                    sum += e;
                    if (x->want[HS_PATCH_Z_BY_POS])
                        x->out->z_by_pos[(((int64_t)g * L + l) * T + t) * H + h] = (float)(base + e);
                }
                if (x->want[HS_PATCH_Z_ALL_POS]) x->out->z_all_pos[((int64_t)g * L + l) * H + h] = (float)(base + sum);
            }
        }
    }
    if (x->want[HS_PATCH_RESID_PRE]) {
        const int64_t rl = (int64_t)l * x->n * x->d * (int64_t)x->s->es;
        HS_CHECK(dots(x, (const char *)x->rc + rl, (const char *)x->s->bwd->res + rl, g_pre, 1, x->d, err));
        for (int r = 0; r < x->B; r++) {
            const int g = x->p0 + r;
            for (int t = 0; t < x->pr->lengths[g]; t++) {
                const int64_t k = (int64_t)r * T + t;
                x->out->resid_pre[((int64_t)g * L + l) * T + t] =
                    (float)(x->out->corrupt[g] + x->factor[r] * ((double)x->dc[k] - x->dx[k]));
            }
        }
    }
exit:
    return st;
}

hs_status hs_attribution_patching(hs_session *s, const hs_model *m, const hs_prompts *pr, const int32_t *corrupt,
                                  const hs_patching_params *p, hs_patching_out *out, hs_err *err) {
    const hs_model_config *c = hs_model_get_config(m);
    const int N = pr->N, T = pr->T, L = c->n_layers, H = c->n_heads, V = c->n_vocab, R = p->batch_rows;
    hs_status st = hs_metric_check(c, pr, p->metric, err);
    if (st) return hs_err_prefix(err, "attribution patching");
    if (p->metric == HS_METRIC_ACCURACY)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "attribution patching: metric accuracy has no gradient");
    if (R < 1 || !p->targets || p->targets >= (1u << HS_PATCH_COUNT))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "attribution patching: batch_rows >= 1 and a known target needed");
    attr_ctx x;
    memset(&x, 0, sizeof x);
    for (int k = 0; k < HS_PATCH_COUNT; k++) x.want[k] = !!(p->targets & (1u << k));
    if ((x.want[0] && !out->z_all_pos) || (x.want[1] && !out->z_by_pos) || (x.want[2] && !out->resid_pre))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "attribution patching: an output buffer for a requested target is NULL");
    x.s = s, x.pr = pr, x.p = p, x.out = out, x.T = T, x.L = L, x.H = H, x.dh = c->d_head, x.d = c->d_model;
    const int64_t rows = (int64_t)R * T, es = (int64_t)s->es;
    hs_backend *be = s->be;
    const int zwant = x.want[HS_PATCH_Z_ALL_POS] || x.want[HS_PATCH_Z_BY_POS];
    int32_t *mask = malloc((size_t)N * T * sizeof *mask), *tg_clean = malloc((size_t)N * T * sizeof *tg_clean),
            *tg_corrupt = malloc((size_t)N * T * sizeof *tg_corrupt);
    float *logits = malloc((size_t)R * V * sizeof *logits), *clean_logp = malloc((size_t)R * V * sizeof *clean_logp),
          *lp = malloc((size_t)rows * sizeof *lp), *scratch = malloc((size_t)V * sizeof *scratch);
    x.dc = malloc((size_t)rows * (H > 1 ? H : 1) * sizeof(float));
    x.dx = malloc((size_t)rows * (H > 1 ? H : 1) * sizeof(float));
    x.factor = malloc((size_t)R * sizeof *x.factor);
    if (!mask || !tg_clean || !tg_corrupt || !logits || !clean_logp || !lp || !scratch || !x.dc || !x.dx || !x.factor)
        HS_FAIL(err, HS_ERR_OOM, "attribution patching: out of memory for %d rows x %d tokens", R, T);
    if (zwant) HS_CHECK(be->ops->alloc(be, (size_t)(L * rows * H * x.dh * es), &x.zc, err));
    if (x.want[HS_PATCH_RESID_PRE]) HS_CHECK(be->ops->alloc(be, (size_t)(L * rows * x.d * es), &x.rc, err));
    hs_prompts_mask_targets(pr, NULL, mask, tg_clean);
    hs_prompts_mask_targets(pr, corrupt, NULL, tg_corrupt);
    if (out->z_by_pos)
        for (int64_t i = 0; i < (int64_t)N * L * T * H; i++) out->z_by_pos[i] = NAN;
    if (out->resid_pre)
        for (int64_t i = 0; i < (int64_t)N * L * T; i++) out->resid_pre[i] = NAN;
    const int chunks = (N + R - 1) / R;
    for (x.p0 = 0; x.p0 < N; x.p0 += R) {
        x.B = N - x.p0 < R ? N - x.p0 : R;
        x.n = (int64_t)x.B * T;
        const int64_t o0 = (int64_t)x.p0 * T;
        const hs_batch bc = {.B = x.B, .T = T, .tokens = pr->tokens + o0, .mask = mask + o0, .targets = tg_clean + o0},
                       bx = {.B = x.B, .T = T, .tokens = corrupt + o0, .mask = mask + o0, .targets = tg_corrupt + o0};
        /* 1. clean */
        hs_hooks keep = {.wants = clean_wants, .fn = clean_keep, .user = &x};
        hs_forward_params fp = hs_forward_default_params();
        fp.hooks = &keep;
        fp.logits = hs_metric_logits(p->metric);
        fp.target_logprobs = p->metric == HS_METRIC_LOSS ? lp : NULL;
        HS_CHECK(hs_forward(s, &bc, &fp, logits, err));
        for (int r = 0; r < x.B; r++) {
            if (p->metric == HS_METRIC_KL) hs_log_softmax(logits + (int64_t)r * V, V, clean_logp + (int64_t)r * V);
            out->clean[x.p0 + r] = (float)hs_row_metric(p->metric, pr, x.p0 + r, logits + (int64_t)r * V,
                                                        lp + (int64_t)r * T, V, clean_logp + (int64_t)r * V, scratch);
        }
        /* 2. corrupted, with the backward's residual streams */
        fp.hooks = NULL;
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
        HS_CHECK(hs_bwd_walk(s, &bx, NULL, x.want[HS_PATCH_RESID_PRE], visit, &x, err));
        if (p->progress && p->progress(p->progress_user, x.p0 / R + 1, chunks))
            HS_FAIL(err, HS_ERR_INVALID_ARG, "attribution patching: interrupted after prompt %d", x.p0 + x.B);
    }
exit:
    if (st) hs_err_prefix(err, "attribution patching");
    if (x.zc) be->ops->free(be, x.zc);
    if (x.rc) be->ops->free(be, x.rc);
    free(mask), free(tg_clean), free(tg_corrupt), free(logits), free(clean_logp), free(lp), free(scratch);
    free(x.dc), free(x.dx), free(x.factor);
    return st;
}
