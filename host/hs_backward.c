/* hs_backward: the backward pass shared by the gradient experiments
 * (hs_backward.h).
 *
 * Backward of layer l, with g = dM/d resid_post[l] and the heads' output
 * xi_h z_h (xi = the head multipliers, 1 without them):
 *   MLP:  d_hid = g W_down; (d_gate, d_up) = act'; dxn2 = d_up W_up (+ d_gate W_gate);
 *         gm = g + norm2'(resid_mid)ᵀ dxn2                      = dM/d resid_mid[l]
 *   heads: dz = gm W_O (the gradient at xi z)
 *   attention: (dq, dk, dv) = attention'(dz) with head_scale xi; RoPE' = RoPE at -position;
 *         dxn1 = dq W_q + dk W_k + dv W_v; g = gm + norm1'(resid_pre)ᵀ dxn1 = dM/d resid_pre[l].
 * A parallel block (GPT-NeoX: resid_post = resid_pre + attn_out + mlp_out, the
 * MLP reading norm2(resid_pre)) takes norm2' at resid_pre and dz = g W_O: gm is
 * then g plus the MLP's share of dM/d resid_pre, and dM/d attn_out is g.
 * With post-norms (Gemma 2) what a block adds is the norm of o_proj's or
 * down_proj's output: their gradients pass back through that norm (the raw
 * output recomputed from z, or from the MLP's kept inputs) before W_O or
 * W_down. A final softcap's derivative joins the logits' gradient.
 * Biases do not enter input gradients. */
#include "hs_backward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void hs_bwd_free(hs_session *s) {
    hs_bwd *w = s->bwd;
    if (!w) return;
    void *bufs[] = {w->res, w->mid, w->g,   w->g2,   w->gm,      w->dxn, w->dhid, w->dup,  w->dgate, w->gmlp,
                    w->dz,  w->dq,  w->dk,  w->dv,   w->dq_pre,  w->dk_pre, w->zu, w->hsc, w->dots, w->neg_pos, w->tg,
                    w->kq,  w->kk,  w->kv,  w->kz,   w->kmid,    w->kpre, w->kprel, w->clip_raw, w->clip_d};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i]) s->be->ops->free(s->be, bufs[i]);
    free(w);
    s->bwd = NULL;
}

/* The buffers for n rows, with or without the kept activations. */
static hs_status bwd_alloc(hs_session *s, int64_t n, int keep, hs_err *err) {
    const hs_model_config *c = &s->cfg;
    const int64_t d = c->d_model, f = c->d_mlp, qd = (int64_t)c->n_heads * c->d_head,
                  kd = (int64_t)c->n_kv_heads * c->d_head, es = (int64_t)s->es, L = c->n_layers;
    const int gated = hs_act_gated(c->act);
    hs_bwd *w = calloc(1, sizeof *w);
    if (!w) return hs_err_set(err, HS_ERR_OOM, "backward: out of memory");
    s->bwd = w;
    w->rows = n;
    w->keep = keep;
    struct {
        void **p;
        int64_t bytes;
    } want[] = {
        {&w->res, (c->n_layers + 1) * n * d * es}, {&w->mid, n * d * es}, {&w->g, n * d * es},
        {&w->g2, n * d * es}, {&w->gm, n * d * es}, {&w->gmlp, n * d * es}, {&w->dxn, n * d * es}, {&w->dhid, n * f * es}, {&w->dup, n * f * es},
        {&w->dgate, n * f * es}, {&w->dz, n * qd * es}, {&w->dq, n * qd * es}, {&w->dk, n * kd * es},
        {&w->dv, n * kd * es}, {&w->dq_pre, c->qk_norm * n * qd * es}, {&w->dk_pre, c->qk_norm * n * kd * es},
        {&w->zu, n * qd * es}, {(void **)&w->hsc, n * c->n_heads * 4},
        {(void **)&w->dots, n * c->n_heads * 4}, {(void **)&w->neg_pos, n * 4}, {(void **)&w->tg, n * 4},
        {&w->kq, keep * L * n * qd * es}, {&w->kk, keep * L * n * kd * es}, {&w->kv, keep * L * n * kd * es},
        {&w->kz, keep * L * n * qd * es}, {&w->kmid, keep * !c->parallel_attn_mlp * L * n * d * es},
        {&w->kpre, keep * L * n * f * es}, {&w->kprel, keep * gated * L * n * f * es},
        {&w->clip_raw, (c->clip_qkv > 0.0f) * n * qd * es}, {&w->clip_d, (c->clip_qkv > 0.0f) * n * qd * es},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        if (!want[i].bytes) continue;
        hs_status st = s->be->ops->alloc(s->be, (size_t)want[i].bytes, want[i].p, err);
        if (st != HS_OK) {
            hs_bwd_free(s);
            return hs_err_prefix(err, "backward buffers for %lld rows", (long long)n), st;
        }
    }
    return HS_OK;
}

/* Buffers for n rows, kept for later batches of at most as many rows. The
 * activations are kept when they fit the session's budget and the backend
 * has the memory; otherwise each layer is rerun. */
static hs_status bwd_reserve(hs_session *s, int64_t n, hs_err *err) {
    if (s->bwd && s->bwd->rows >= n) return HS_OK; /* whichever mode they were made for */
    hs_bwd_free(s);
    const hs_model_config *c = &s->cfg;
    const int64_t qd = (int64_t)c->n_heads * c->d_head, kd = (int64_t)c->n_kv_heads * c->d_head;
    const int64_t per_row = 2 * qd + 2 * kd + (c->parallel_attn_mlp ? 0 : c->d_model) +
                            (hs_act_gated(c->act) ? 2 : 1) * (int64_t)c->d_mlp;
    if ((int64_t)c->n_layers * n * per_row * (int64_t)s->es <= s->bwd_keep_bytes) {
        hs_status st = bwd_alloc(s, n, 1, err);
        if (st != HS_ERR_OOM) return st;
    }
    return bwd_alloc(s, n, 0, err);
}

typedef struct {
    hs_session *s;
    int64_t n;
    const hs_hooks *also; /* the caller's observers, or NULL */
} keep_ctx;

/* Where a kept activation goes: its buffer (NULL = not kept) and width. */
static void *keep_slot(const hs_session *s, hs_hook_point p, int64_t *width) {
    const hs_model_config *c = &s->cfg;
    const hs_bwd *w = s->bwd;
    const int rope = c->rope != HS_ROPE_NONE;
    const int64_t qd = (int64_t)c->n_heads * c->d_head, kd = (int64_t)c->n_kv_heads * c->d_head;
    *width = c->d_model;
    if (p == HS_HOOK_RESID_PRE || p == HS_HOOK_RESID_POST) return w->res;
    if (!w->keep) return NULL;
    if (p == (rope ? HS_HOOK_ROT_Q : HS_HOOK_Q)) return *width = qd, w->kq;
    if (p == (rope ? HS_HOOK_ROT_K : HS_HOOK_K)) return *width = kd, w->kk;
    if (p == HS_HOOK_V) return *width = kd, w->kv;
    if (p == HS_HOOK_Z) return *width = qd, w->kz;
    if (p == HS_HOOK_RESID_MID) return c->parallel_attn_mlp ? NULL : w->kmid;
    if (p == HS_HOOK_MLP_PRE) return *width = c->d_mlp, w->kpre;
    if (p == HS_HOOK_MLP_PRE_LINEAR) return *width = c->d_mlp, w->kprel;
    return NULL;
}

static int keeps(const keep_ctx *k, hs_hook_point p, int layer) {
    int64_t width;
    if (p == HS_HOOK_RESID_POST) return layer == k->s->cfg.n_layers - 1;
    return keep_slot(k->s, p, &width) != NULL;
}

static int keep_wants(void *user, hs_hook_point p, int layer) {
    const keep_ctx *k = user;
    return keeps(k, p, layer) || hs_hooks_want(k->also, p, layer);
}

static hs_status keep_fn(void *user, hs_hook_point p, int layer, hs_tensor *t, hs_err *err) {
    keep_ctx *k = user;
    if (keeps(k, p, layer)) {
        int64_t width;
        char *buf = keep_slot(k->s, p, &width);
        const int64_t slot = p == HS_HOOK_RESID_POST ? k->s->cfg.n_layers : layer, bytes = k->n * width * k->s->es;
        hs_status st = k->s->be->ops->copy(k->s->be, buf + slot * bytes, t->data, (size_t)bytes, err);
        if (st) return st;
    }
    return hs_hooks_want(k->also, p, layer) ? k->also->fn(k->also->user, p, layer, t, err) : HS_OK;
}

hs_status hs_bwd_forward(hs_session *s, const hs_batch *b, const hs_forward_params *fp_in, float *logits_out,
                         hs_err *err) {
    const hs_backend_ops *o = s->be->ops;
    if (!o->supports_op(s->be, HS_OP_BACKWARD))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "the %s backend has no backward ops yet", o->name);
    if (fp_in->start_layer) return hs_err_set(err, HS_ERR_INVALID_ARG, "backward: the forward must start at layer 0");
    if (fp_in->inputs) /* the walk reruns each layer from its resid_pre, one input for every node */
        return hs_err_set(err, HS_ERR_INVALID_ARG, "backward: split inputs (edge interventions) have no backward");
    if (s->cfg.final_softcap > 0.0f && !s->tl_dlogits) { /* the capped logits' gradient needs its own chunk */
        int64_t cap;
        hs_status st = hs_session_logit_chunk(s, &cap, err);
        if (st == HS_OK) st = o->alloc(s->be, (size_t)(cap * s->cfg.n_vocab) * s->es, &s->tl_dlogits, err);
        if (st != HS_OK) return st;
        s->bytes += cap * s->cfg.n_vocab * (int64_t)s->es;
    }
    const int64_t n = (int64_t)b->B * b->T;
    hs_status st = HS_OK;
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    if (!pos) HS_FAIL(err, HS_ERR_OOM, "backward: out of memory");
    HS_CHECK(bwd_reserve(s, n, err));
    keep_ctx keep = {.s = s, .n = n, .also = fp_in->hooks};
    hs_hooks hooks = {.wants = keep_wants, .fn = keep_fn, .user = &keep};
    hs_forward_params fp = *fp_in;
    fp.hooks = &hooks;
    HS_CHECK(hs_forward(s, b, &fp, logits_out, err)); /* also leaves the positions and mask in s->d_pos, s->d_mask */
    HS_CHECK(o->download(s->be, pos, s->d_pos, (size_t)n * sizeof(int32_t), err));
    for (int64_t i = 0; i < n; i++) pos[i] = -pos[i]; /* RoPE at -p is its transpose */
    HS_CHECK(o->upload(s->be, s->bwd->neg_pos, pos, (size_t)n * sizeof(int32_t), err));
exit:
    free(pos);
    return st;
}

static const void *final_resid(hs_session *s, int64_t n) {
    return (const char *)s->bwd->res + (int64_t)s->cfg.n_layers * n * s->cfg.d_model * (int64_t)s->es;
}

hs_status hs_bwd_seed_nll(hs_session *s, const hs_batch *b, const int32_t *targets, hs_err *err) {
    const hs_backend_ops *o = s->be->ops;
    const hs_model_config *c = &s->cfg;
    hs_bwd *w = s->bwd;
    const int64_t n = (int64_t)b->B * b->T, d = c->d_model, V = c->n_vocab, es = (int64_t)s->es;
    const void *xf = final_resid(s, n);
    int64_t cap;
    hs_status st = HS_OK;
    HS_CHECK(hs_session_logit_chunk(s, &cap, err));
    HS_CHECK(o->norm(s->be, c->norm, xf, s->lnf_w, s->lnf_b, c->norm_eps, n, (int)d, 1, s->xn, err));
    HS_CHECK(o->upload(s->be, w->tg, targets, (size_t)n * sizeof(int32_t), err));
    for (int64_t r0 = 0; r0 < n; r0 += cap) {
        const int64_t R = n - r0 < cap ? n - r0 : cap;
        HS_CHECK(o->matmul(s->be, (const char *)s->xn + r0 * d * es, s->unembed, s->unembed_b, R, (int)V, (int)d, 0,
                           s->tl_logits, err));
        void *dl = s->tl_logits;
        if (c->final_softcap > 0.0f) { /* the gradient at the capped logits, then through the cap */
            dl = s->tl_dlogits;
            HS_CHECK(hs_session_cap_logits(s, s->tl_logits, R, err));
            HS_CHECK(o->logprob_grad(s->be, s->tl_logits, w->tg + r0, R, (int)V, dl, err));
            HS_CHECK(o->softcap_bwd(s->be, s->tl_logits, dl, R * V, c->final_softcap, dl, err));
        } else {
            HS_CHECK(o->logprob_grad(s->be, s->tl_logits, w->tg + r0, R, (int)V, dl, err));
        }
        HS_CHECK(o->matmul_bwd(s->be, dl, s->unembed, R, (int)V, (int)d, 0, (char *)w->dxn + r0 * d * es, err));
    }
    HS_CHECK(o->norm_bwd(s->be, c->norm, xf, s->lnf_w, c->norm_eps, n, (int)d, 1, w->dxn, 0, w->g, err));
exit:
    return st;
}

/* Row r's last real position (HS_LOGITS_LAST's row). */
static int last_row(const hs_batch *b, int r) {
    int last = b->T - 1;
    if (b->mask)
        while (last > 0 && !b->mask[(int64_t)r * b->T + last]) last--;
    return last;
}

hs_status hs_bwd_seed_last(hs_session *s, const hs_batch *b, const float *dlogits, hs_err *err) {
    const hs_backend_ops *o = s->be->ops;
    const hs_model_config *c = &s->cfg;
    hs_bwd *w = s->bwd;
    const int B = b->B, T = b->T;
    const int64_t n = (int64_t)B * T, d = c->d_model, V = c->n_vocab, es = (int64_t)s->es, row = d * es;
    const void *xf = final_resid(s, n);
    int64_t cap;
    hs_status st = HS_OK;
    HS_CHECK(hs_session_logit_chunk(s, &cap, err));
    if (c->final_softcap > 0.0f) { /* the last rows' normed stream, gathered into mid, for their capped logits */
        for (int r = 0; r < B; r++)
            HS_CHECK(o->copy(s->be, (char *)w->mid + r * row, (const char *)xf + ((int64_t)r * T + last_row(b, r)) * row,
                             (size_t)row, err));
        HS_CHECK(o->norm(s->be, c->norm, w->mid, s->lnf_w, s->lnf_b, c->norm_eps, B, (int)d, 1, w->mid, err)); /* in place */
    }
    /* dM/dxn at the last rows, staged in gm, then scattered into a zeroed dxn */
    for (int r0 = 0; r0 < B; r0 += (int)cap) {
        const int R = B - r0 < cap ? B - r0 : (int)cap;
        HS_CHECK(o->upload_f32(s->be, s->tl_logits, dlogits + (int64_t)r0 * V, (int64_t)R * V, err));
        if (c->final_softcap > 0.0f) {
            HS_CHECK(o->matmul(s->be, (char *)w->mid + r0 * row, s->unembed, s->unembed_b, R, (int)V, (int)d, 0,
                               s->tl_dlogits, err));
            HS_CHECK(hs_session_cap_logits(s, s->tl_dlogits, R, err));
            HS_CHECK(o->softcap_bwd(s->be, s->tl_dlogits, s->tl_logits, (int64_t)R * V, c->final_softcap, s->tl_logits,
                                    err));
        }
        HS_CHECK(o->matmul_bwd(s->be, s->tl_logits, s->unembed, R, (int)V, (int)d, 0, (char *)w->gm + r0 * row, err));
    }
    HS_CHECK(o->zero(s->be, w->dxn, (size_t)(n * row), err));
    for (int r = 0; r < B; r++)
        HS_CHECK(o->copy(s->be, (char *)w->dxn + ((int64_t)r * T + last_row(b, r)) * row, (char *)w->gm + r * row,
                         (size_t)row, err));
    HS_CHECK(o->norm_bwd(s->be, c->norm, xf, s->lnf_w, c->norm_eps, n, (int)d, 1, w->dxn, 0, w->g, err));
exit:
    return st;
}

hs_status hs_bwd_pre_norm(hs_session *s, int l, int mlp, const void *x, int64_t n, const void *dy, int accumulate,
                          void *dx, hs_err *err) {
    const hs_model_config *c = &s->cfg;
    const hs_session_layer *W = &s->layers[l];
    const hs_backend_ops *o = s->be->ops;
    if (c->no_pre_norms)
        return accumulate ? o->add(s->be, dx, dy, n * c->d_model, err)
                          : o->copy(s->be, dx, dy, (size_t)(n * c->d_model * (int64_t)s->es), err);
    return o->norm_bwd(s->be, c->norm, x, mlp ? W->ln2_w : W->ln1_w, c->norm_eps, n, c->d_model, 1, dy, accumulate, dx,
                       err);
}

/* q_pre, k_pre of layer l (qk_norm), as the forward made them. */
static hs_status project_qk(hs_session *s, const void *x, int l, int64_t n, hs_err *err) {
    hs_status st = hs_session_pre_norm(s, l, 0, x, n, s->xn, err);
    if (!st) st = hs_session_project(s, l, 0, n, 1, s->q_pre, err);
    if (!st) st = hs_session_project(s, l, 1, n, 1, s->k_pre, err);
    return st;
}

/* Reruns layer l from its resid_pre up to the MLP's inputs: s->q, s->k
 * (normed with qk_norm, the inputs in s->q_pre, s->k_pre; rotated), s->v,
 * s->z (the heads' output, times the multipliers), w->mid =
 * resid_mid (a sequential block), s->xn = norm2(the MLP's input), s->up,
 * s->gate; with multipliers (ap0->head_scale) also w->zu = the unscaled z. */
static hs_status rerun_layer(hs_session *s, const hs_batch *b, int l, const hs_attn_params *ap0, hs_err *err) {
    const hs_backend_ops *o = s->be->ops;
    const hs_model_config *c = &s->cfg;
    const hs_session_layer *W = &s->layers[l];
    hs_bwd *w = s->bwd;
    const int64_t n = (int64_t)b->B * b->T, d = c->d_model, es = (int64_t)s->es;
    const int H = c->n_heads, Hk = c->n_kv_heads, dh = c->d_head, f = c->d_mlp;
    const void *x = (const char *)w->res + l * n * d * es;
    hs_status st = HS_OK;
    HS_CHECK(hs_session_pre_norm(s, l, 0, x, n, s->xn, err));
    void *q = c->qk_norm ? s->q_pre : s->q, *k = c->qk_norm ? s->k_pre : s->k;
    HS_CHECK(hs_session_project(s, l, 0, n, 1, q, err));
    HS_CHECK(hs_session_project(s, l, 1, n, 1, k, err));
    HS_CHECK(hs_session_project(s, l, 2, n, 1, s->v, err));
    if (c->qk_norm) HS_CHECK(hs_session_qk_norm(s, l, n, 1, 1, err));
    if (c->rope != HS_ROPE_NONE) {
        HS_CHECK(hs_session_rope(s, l, s->q, s->d_pos, b->B, b->T, H, err));
        HS_CHECK(hs_session_rope(s, l, s->k, s->d_pos, b->B, b->T, Hk, err));
    }
    HS_CHECK(o->attention(s->be, ap0, err));
    if (ap0->head_scale) { /* visitors need z itself, also where the multiplier is 0 */
        hs_attn_params au = *ap0;
        au.head_scale = NULL;
        au.z = w->zu;
        HS_CHECK(o->attention(s->be, &au, err));
    }
    const void *mlp_in = x;
    if (!c->parallel_attn_mlp) {
        /* resid_mid as the forward makes it (not by an accumulating GEMM, whose
         * rounding differs): the same bits as a kept activation */
        HS_CHECK(o->matmul(s->be, s->z, W->wo, W->bo, n, (int)d, H * dh, 0, c->post_norms ? s->raw : s->attn_out, err));
        if (c->post_norms) HS_CHECK(hs_session_post_norm(s, l, 0, n, s->attn_out, err));
        HS_CHECK(o->copy(s->be, w->mid, x, (size_t)(n * d * es), err));
        HS_CHECK(o->add(s->be, w->mid, s->attn_out, n * d, err));
        mlp_in = w->mid;
    }
    HS_CHECK(hs_session_pre_norm(s, l, 1, mlp_in, n, s->xn, err));
    HS_CHECK(o->matmul(s->be, s->xn, W->w_up, W->b_up, n, f, (int)d, 0, s->up, err));
    if (hs_act_gated(c->act)) HS_CHECK(o->matmul(s->be, s->xn, W->w_gate, NULL, n, f, (int)d, 0, s->gate, err));
exit:
    return st;
}

hs_status hs_bwd_walk(hs_session *s, const hs_batch *b, const float *head_scale, int want_attn, hs_bwd_visit visit,
                      void *user, hs_err *err) {
    return hs_bwd_walk_from(s, b, head_scale, want_attn, s->cfg.n_layers - 1, NULL, visit, user, err);
}

hs_status hs_bwd_walk_from(hs_session *s, const hs_batch *b, const float *head_scale, int want_attn, int top,
                           const void *g_top, hs_bwd_visit visit, void *user, hs_err *err) {
    const hs_backend_ops *o = s->be->ops;
    const hs_model_config *c = &s->cfg;
    hs_bwd *w = s->bwd;
    const int64_t n = (int64_t)b->B * b->T, d = c->d_model, es = (int64_t)s->es, BH = (int64_t)b->B * c->n_heads;
    const int H = c->n_heads, Hk = c->n_kv_heads, dh = c->d_head, f = c->d_mlp;
    const int par = c->parallel_attn_mlp;
    hs_status st = HS_OK;
    const int64_t qd = (int64_t)H * dh, kd = (int64_t)Hk * dh;
    hs_attn_params ap = {.B = b->B, .T = b->T, .H = H, .H_kv = Hk, .d_head = dh, .scale = hs_model_attn_scale(c),
                         .softcap = c->attn_softcap, .alibi = s->d_alibi,
                         .q = s->q, .k = s->k, .v = s->v, .key_mask = b->mask ? s->d_mask : NULL, .z = s->z,
                         .head_scale = head_scale ? w->hsc : NULL};
    if (top < 0 || top >= c->n_layers)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "backward: no layer %d to start from (%d layers)", top, c->n_layers);
    if (g_top) HS_CHECK(o->copy(s->be, w->g, g_top, (size_t)(n * d * es), err));
    for (int l = top; l >= 0; l--) {
        const hs_session_layer *W = &s->layers[l];
        const void *x = (const char *)w->res + (int64_t)l * n * d * es;
        const void *mid = par ? x : w->mid, *gate = s->gate, *up = s->up, *z = head_scale ? w->zu : s->z;
        ap.window = hs_session_window(s, l, b->T);
        if (head_scale) HS_CHECK(o->upload(s->be, w->hsc, head_scale + l * BH, (size_t)BH * sizeof(float), err));
        if (w->keep) { /* the forward's activations of layer l */
            const int64_t gated = hs_act_gated(c->act);
            ap.q = (char *)w->kq + l * n * qd * es, ap.k = (char *)w->kk + l * n * kd * es;
            ap.v = (char *)w->kv + l * n * kd * es, mid = par ? x : (char *)w->kmid + l * n * d * es;
            gate = gated ? (char *)w->kpre + l * n * f * es : NULL;
            up = gated ? (char *)w->kprel + l * n * f * es : (char *)w->kpre + l * n * f * es;
            if (head_scale) { /* visitors need z itself, also where the multiplier is 0 */
                hs_attn_params au = ap;
                au.head_scale = NULL;
                au.z = w->zu;
                HS_CHECK(o->attention(s->be, &au, err));
            } else {
                z = (char *)w->kz + l * n * qd * es;
            }
            if (c->qk_norm) HS_CHECK(project_qk(s, x, l, n, err)); /* the norms' inputs: not kept */
        } else {
            HS_CHECK(rerun_layer(s, b, l, &ap, err));
        }
        /* MLP (g2 is free until the attention's part: it stages the gradients at the raw outputs) */
        const void *g_down = w->g;
        if (c->post_norms) {
            HS_CHECK(o->act(s->be, c->act, gate, up, n * f, s->hid, err));
            HS_CHECK(o->matmul(s->be, s->hid, W->w_down, W->b_down, n, (int)d, f, 0, s->raw, err));
            HS_CHECK(o->norm_bwd(s->be, c->norm, s->raw, W->mlp_post_w, c->norm_eps, n, (int)d, 1, w->g, 0, w->g2,
                                 err));
            g_down = w->g2;
        }
        HS_CHECK(o->matmul_bwd(s->be, g_down, W->w_down, n, (int)d, f, 0, w->dhid, err));
        HS_CHECK(o->act_bwd(s->be, c->act, gate, up, w->dhid, n * f, w->dgate, w->dup, err));
        HS_CHECK(o->matmul_bwd(s->be, w->dup, W->w_up, n, f, (int)d, 0, w->dxn, err));
        if (hs_act_gated(c->act)) HS_CHECK(o->matmul_bwd(s->be, w->dgate, W->w_gate, n, f, (int)d, 1, w->dxn, err));
        if (want_attn & HS_BWD_MLP_IN) HS_CHECK(hs_bwd_pre_norm(s, l, 1, mid, n, w->dxn, 0, w->gmlp, err));
        HS_CHECK(o->copy(s->be, w->gm, w->g, (size_t)(n * d * es), err));
        HS_CHECK(hs_bwd_pre_norm(s, l, 1, mid, n, w->dxn, 1, w->gm, err));
        /* the heads' output: attn_out reaches resid_post through resid_mid, or directly (parallel) */
        const void *g_attn = par ? w->g : w->gm, *g_wo = g_attn;
        if (c->post_norms) { /* o_proj's raw output, from the z the forward made (with its multipliers) */
            const void *zf = w->keep ? (const char *)w->kz + l * n * qd * es : s->z;
            HS_CHECK(o->matmul(s->be, zf, W->wo, W->bo, n, (int)d, H * dh, 0, s->raw, err));
            HS_CHECK(o->norm_bwd(s->be, c->norm, s->raw, W->attn_post_w, c->norm_eps, n, (int)d, 1, g_attn, 0,
                                 w->g2, err));
            g_wo = w->g2;
        }
        HS_CHECK(o->matmul_bwd(s->be, g_wo, W->wo, n, (int)d, H * dh, 0, w->dz, err));
        hs_bwd_layer gl = {.z = z, .dz = w->dz, .g_mid = g_attn, .g_post = w->g, .attn = &ap, .x = x,
                           .g_mlp_in = want_attn & HS_BWD_MLP_IN ? w->gmlp : NULL};
        if (l == 0 && !want_attn) { /* nothing below reads the attention's gradients */
            HS_CHECK(visit(user, l, &gl, err));
            break;
        }
        /* attention, back to resid_pre */
        HS_CHECK(o->attention_bwd(s->be, &ap, w->dz, w->dq, w->dk, w->dv, err));
        if (c->rope != HS_ROPE_NONE) {
            HS_CHECK(hs_session_rope(s, l, w->dq, w->neg_pos, b->B, b->T, H, err));
            HS_CHECK(hs_session_rope(s, l, w->dk, w->neg_pos, b->B, b->T, Hk, err));
        }
        const void *dq = w->dq, *dk = w->dk;
        if (c->qk_norm) {
            const int wq = hs_model_qk_norm_width(c, 0), wk = hs_model_qk_norm_width(c, 1);
            HS_CHECK(o->norm_bwd(s->be, c->norm, s->q_pre, W->q_norm_w, c->norm_eps, n * qd / wq, wq,
                                 hs_model_qk_norm_rows(c, 0), w->dq, 0, w->dq_pre, err));
            HS_CHECK(o->norm_bwd(s->be, c->norm, s->k_pre, W->k_norm_w, c->norm_eps, n * kd / wk, wk,
                                 hs_model_qk_norm_rows(c, 1), w->dk, 0, w->dk_pre, err));
            dq = w->dq_pre, dk = w->dk_pre;
        }
        if (c->clip_qkv > 0.0f) { /* through the clamps: each projection's input to its clamp, recomputed */
            HS_CHECK(hs_session_pre_norm(s, l, 0, x, n, s->xn, err));
            const void *dg[3] = {dq, dk, w->dv};
            const void *wt[3] = {W->wq, W->wk, W->wv};
            for (int p = 0; p < 3; p++) {
                const int64_t width = p ? kd : qd;
                HS_CHECK(hs_session_project(s, l, p, n, 0, w->clip_raw, err));
                HS_CHECK(o->clamp_bwd(s->be, w->clip_raw, dg[p], n * width, c->clip_qkv, w->clip_d, err));
                HS_CHECK(o->matmul_bwd(s->be, w->clip_d, wt[p], n, (int)width, (int)d, p > 0, w->dxn, err));
            }
        } else {
            HS_CHECK(o->matmul_bwd(s->be, dq, W->wq, n, H * dh, (int)d, 0, w->dxn, err));
            HS_CHECK(o->matmul_bwd(s->be, dk, W->wk, n, Hk * dh, (int)d, 1, w->dxn, err));
            HS_CHECK(o->matmul_bwd(s->be, w->dv, W->wv, n, Hk * dh, (int)d, 1, w->dxn, err));
        }
        /* into g2, so the visitor still sees dM/d resid_post in g; then the two swap */
        HS_CHECK(o->copy(s->be, w->g2, w->gm, (size_t)(n * d * es), err));
        HS_CHECK(hs_bwd_pre_norm(s, l, 0, x, n, w->dxn, 1, w->g2, err));
        if (want_attn) gl.g_pre = w->g2, gl.dq = dq, gl.dk = dk, gl.dv = w->dv;
        HS_CHECK(visit(user, l, &gl, err));
        void *t = w->g;
        w->g = w->g2, w->g2 = t;
    }
exit:
    return st;
}
