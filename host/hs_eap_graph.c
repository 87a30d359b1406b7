/* hs_eap_graph: the upstream differences (hs_eap_internal.h). The corrupted
 * run keeps every layer's z and MLP output and the input; the run they are
 * compared with turns them into a(corrupt) - a(run) per upstream node, a
 * head's from its z difference times its slice of W_O. Biases cancel. */
#include "hs_eap_internal.h"

#include <stdint.h>

#include "hs_metric.h"

hs_eap_up hs_eap_up_shape(hs_session *s, int T) {
    const hs_model_config *c = &s->cfg;
    return (hs_eap_up){.s = s,
                       .T = T,
                       .H = c->n_heads,
                       .dh = c->d_head,
                       .d = c->d_model,
                       .U = hs_eap_n_upstream(c),
                       .es = (int64_t)s->es,
                       .qd = (int64_t)c->n_heads * c->d_head,
                       .node = (int64_t)T * c->d_model};
}

hs_status hs_eap_check_prompts(const hs_model_config *c, const hs_prompts *pr, const int32_t *corrupt, hs_metric m,
                               int p0, int n, const char *what, hs_err *err) {
    hs_status st = hs_metric_check(c, pr, m, err);
    if (st) return hs_err_prefix(err, "%s", what), st;
    if (!corrupt) return hs_err_set(err, HS_ERR_INVALID_ARG, "%s: no corrupted prompts given", what);
    if (p0 < 0 || n < 1 || p0 + n > pr->N)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "%s: prompts [%d, %d) outside the %d prompts", what, p0, p0 + n,
                          pr->N);
    return HS_OK;
}

void hs_eap_batches(const hs_prompts *pr, const int32_t *corrupt, int q0, int B, int32_t *mask, int32_t *tg,
                    hs_batch *clean, hs_batch *corrupted) {
    hs_prompts one = *pr; /* these prompts, for the masks and targets */
    one.N = B, one.tokens = pr->tokens + (int64_t)q0 * pr->T, one.lengths = pr->lengths + q0;
    hs_prompts_mask_targets(&one, NULL, mask, tg);
    *clean = (hs_batch){.B = B, .T = pr->T, .tokens = one.tokens, .mask = mask, .targets = tg};
    *corrupted = *clean;
    corrupted->tokens = corrupt + (int64_t)q0 * pr->T;
}

/* CUDA's 2-D copy refuses pitches beyond the device's maximum (2^31 - 1
 * bytes on current GPUs: 7B models' upstream buffer at 248 tokens), so past
 * that one copy per batch row. */
hs_status hs_eap_put_node(const hs_eap_up *x, void *buf, int nodes, int j, const void *rows, hs_err *err) {
    const hs_backend_ops *o = x->s->be->ops;
    const size_t nb = (size_t)(x->node * x->es), pitch = (size_t)nodes * nb;
    if (x->node_major) return o->copy(x->s->be, (char *)buf + (size_t)j * x->B * nb, rows, x->B * nb, err);
    char *at = (char *)buf + j * nb;
    if (pitch <= INT32_MAX) return o->copy_2d(x->s->be, at, pitch, rows, nb, nb, (size_t)x->B, err);
    for (int b = 0; b < x->B; b++) {
        hs_status st = o->copy(x->s->be, at + b * pitch, (const char *)rows + b * nb, nb, err);
        if (st) return st;
    }
    return HS_OK;
}

hs_status hs_eap_gather_head(hs_eap_up *x, const void *src, int heads, int h, hs_err *err) {
    const size_t w = (size_t)(x->dh * x->es);
    return x->s->be->ops->copy_2d(x->s->be, x->head, w, (const char *)src + h * w, heads * w, w, (size_t)x->n, err);
}

hs_status hs_eap_up_alloc(hs_eap_up *x, int L, int R, int keep_input, hs_err *err) {
    hs_backend *be = x->s->be;
    const int64_t n = (int64_t)R * x->T, es = x->es, d = x->d;
    struct {
        void **p;
        int64_t bytes;
    } want[] = {{&x->zc, L * n * x->qd * es},
                {&x->mc, L * n * d * es},
                {&x->ec, n * d * es},
                {&x->up, (int64_t)x->U * n * d * es},
                {&x->input, keep_input * n * d * es},
                {&x->zd, n * x->qd * es},
                {&x->rows, n * d * es},
                {&x->head, n * x->dh * es},
                {&x->woh, d * x->dh * es}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        if (!want[i].bytes) continue;
        hs_status st = be->ops->alloc(be, (size_t)want[i].bytes, want[i].p, err);
        if (st) return hs_err_prefix(err, "buffers for %d prompts of %d tokens", R, x->T), st;
    }
    return HS_OK;
}

void hs_eap_up_free(hs_eap_up *x) {
    hs_backend *be = x->s->be;
    void *bufs[] = {x->zc, x->mc, x->ec, x->up, x->input, x->zd, x->rows, x->head, x->woh};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i]) be->ops->free(be, bufs[i]);
}

int hs_eap_up_wants(void *user, hs_hook_point p, int layer) {
    (void)user;
    return p == HS_HOOK_Z || p == HS_HOOK_MLP_OUT || (p == HS_HOOK_RESID_PRE && layer == 0);
}

hs_status hs_eap_up_keep(void *user, hs_hook_point p, int layer, hs_tensor *t, hs_err *err) {
    hs_eap_up *x = user;
    const hs_backend_ops *o = x->s->be->ops;
    if (p == HS_HOOK_Z)
        return o->copy(x->s->be, (char *)x->zc + layer * x->n * x->qd * x->es, t->data, (size_t)(x->n * x->qd * x->es),
                       err);
    void *dst = p == HS_HOOK_MLP_OUT ? (char *)x->mc + layer * x->n * x->d * x->es : x->ec;
    return o->copy(x->s->be, dst, t->data, (size_t)(x->n * x->d * x->es), err);
}

/* Upstream node u := a(corrupt) - a(run) for an activation of width d. */
static hs_status diff_node(hs_eap_up *x, int u, const void *corrupt, const void *run, hs_err *err) {
    const hs_backend_ops *o = x->s->be->ops;
    if (x->need && !x->need[u]) return HS_OK;
    hs_status st = o->copy(x->s->be, x->rows, corrupt, (size_t)(x->n * x->d * x->es), err);
    if (!st) st = o->axpy(x->s->be, x->rows, -1.0f, run, x->n * x->d, err);
    if (!st) st = hs_eap_put_node(x, x->up, x->U, u, x->rows, err);
    return st;
}

hs_status hs_eap_up_diff(void *user, hs_hook_point p, int l, hs_tensor *t, hs_err *err) {
    hs_eap_up *x = user;
    hs_session *s = x->s;
    const hs_backend_ops *o = s->be->ops;
    hs_status st = HS_OK;
    if (p == HS_HOOK_RESID_PRE) {
        if (x->input) HS_CHECK(o->copy(s->be, x->input, t->data, (size_t)(x->n * x->d * x->es), err));
        return diff_node(x, 0, x->ec, t->data, err);
    }
    if (p == HS_HOOK_MLP_OUT)
        return diff_node(x, 1 + l * (x->H + 1) + x->H, (char *)x->mc + l * x->n * x->d * x->es, t->data, err);
    /* z: each head's result difference (z_c - z) W_O[:, h], W_O's columns of h gathered */
    const void *wo = s->layers[l].wo;
    const uint8_t *need = x->need ? x->need + 1 + l * (x->H + 1) : NULL;
    int any = !need;
    for (int h = 0; h < x->H && !any; h++) any = need[h];
    if (!any) return HS_OK;
    HS_CHECK(o->copy(s->be, x->zd, (char *)x->zc + l * x->n * x->qd * x->es, (size_t)(x->n * x->qd * x->es), err));
    HS_CHECK(o->axpy(s->be, x->zd, -1.0f, t->data, x->n * x->qd, err));
    for (int h = 0; h < x->H; h++) {
        const size_t w = (size_t)(x->dh * x->es);
        if (need && !need[h]) continue;
        HS_CHECK(hs_eap_gather_head(x, x->zd, x->H, h, err));
        HS_CHECK(o->copy_2d(s->be, x->woh, w, (const char *)wo + h * w, (size_t)(x->qd * x->es), w, (size_t)x->d, err));
        HS_CHECK(o->matmul(s->be, x->head, x->woh, NULL, x->n, x->d, x->dh, 0, x->rows, err));
        HS_CHECK(hs_eap_put_node(x, x->up, x->U, 1 + l * (x->H + 1) + h, x->rows, err));
    }
exit:
    return st;
}
