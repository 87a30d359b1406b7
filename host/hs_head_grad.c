/* hs_head_grad: the gradient of the loss with respect to every head's mask
 * variable (hs_head_grad.h), by one forward that keeps each layer's resid_pre
 * on the backend and one backward that reruns each layer from it (gradient
 * checkpointing: L + 1 residual streams kept instead of every activation).
 *
 * Backward of layer l, with g = dL/d resid_post[l] and the heads' output
 * xi_h z_h (xi = the mask, 1 without one):
 *   MLP:  d_hid = g W_down; (d_gate, d_up) = act'; dxn2 = d_up W_up (+ d_gate W_gate);
 *         gm = g + norm2'(resid_mid)ᵀ dxn2                      = dL/d resid_mid[l]
 *   heads: dz = gm W_O (the gradient at xi z); dL/dxi_{l,h} = sum_t z_{t,h} . dz_{t,h}
 *   attention: (dq, dk, dv) = attention'(dz) with head_scale xi; RoPE' = RoPE at -position;
 *         dxn1 = dq W_q + dk W_k + dv W_v; g = gm + norm1'(resid_pre)ᵀ dxn1.
 * Biases do not enter input gradients. */
#include "headsweep/hs_head_grad.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hs_metric.h"
#include "hs_session_internal.h"

#define HG_CHUNK 256 /* unembedding rows per GEMM, as in the forward */

typedef struct {
    hs_session *s;
    void *res; /* [L + 1, n, d]: resid_pre of every layer, then the final resid_post */
    int64_t n;
} keep_ctx;

static int keep_wants(void *user, hs_hook_point p, int layer) {
    const keep_ctx *k = user;
    return p == HS_HOOK_RESID_PRE || (p == HS_HOOK_RESID_POST && layer == k->s->cfg.n_layers - 1);
}

static hs_status keep_fn(void *user, hs_hook_point p, int layer, hs_tensor *t, hs_err *err) {
    keep_ctx *k = user;
    const int64_t slot = p == HS_HOOK_RESID_PRE ? layer : k->s->cfg.n_layers, bytes = k->n * k->s->cfg.d_model * k->s->es;
    return k->s->be->ops->copy(k->s->be, (char *)k->res + slot * bytes, t->data, (size_t)bytes, err);
}

/* Buffers of one backward, in backend memory. */
typedef struct {
    void *res, *mid, *g, *gm, *dxn, *dhid, *dup, *dgate, *dz, *dq, *dk, *dv, *dlog;
    void *zu;     /* with a mask: the unscaled z of the layer */
    float *hsc;   /* with a mask: the layer's [B, H] multipliers */
    float *dots;  /* [B, H] the layer's head gradients */
    int32_t *neg_pos, *tg;
} grad_bufs;

static hs_status bufs_alloc(hs_session *s, int B, int64_t n, int masked, grad_bufs *gb, hs_err *err) {
    const hs_model_config *c = &s->cfg;
    const int64_t d = c->d_model, f = c->d_mlp, qd = (int64_t)c->n_heads * c->d_head,
                  kd = (int64_t)c->n_kv_heads * c->d_head, es = (int64_t)s->es;
    const int64_t chunk = n < HG_CHUNK ? n : HG_CHUNK;
    struct {
        void **p;
        int64_t bytes;
    } want[] = {
        {&gb->res, (c->n_layers + 1) * n * d * es}, {&gb->mid, n * d * es}, {&gb->g, n * d * es},
        {&gb->gm, n * d * es}, {&gb->dxn, n * d * es}, {&gb->dhid, n * f * es}, {&gb->dup, n * f * es},
        {&gb->dgate, n * f * es}, {&gb->dz, n * qd * es}, {&gb->dq, n * qd * es}, {&gb->dk, n * kd * es},
        {&gb->dv, n * kd * es}, {&gb->dlog, chunk * c->n_vocab * es}, {(void **)&gb->neg_pos, n * 4},
        {(void **)&gb->tg, n * 4}, {&gb->zu, masked ? n * qd * es : 0},
        {(void **)&gb->hsc, masked ? (int64_t)B * c->n_heads * 4 : 0}, {(void **)&gb->dots, (int64_t)B * c->n_heads * 4},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        if (!want[i].bytes) continue;
        hs_status st = s->be->ops->alloc(s->be, (size_t)want[i].bytes, want[i].p, err);
        if (st != HS_OK) return hs_err_prefix(err, "head gradient"), st;
    }
    return HS_OK;
}

static void bufs_free(hs_session *s, grad_bufs *gb) {
    void **p = (void **)gb;
    for (size_t i = 0; i < sizeof *gb / sizeof(void *); i++)
        if (p[i]) s->be->ops->free(s->be, p[i]);
}

/* g = dL/d(final resid_post): final norm, unembedding and -log p in chunks. */
static hs_status grad_of_output(hs_session *s, const hs_batch *b, grad_bufs *gb, hs_err *err) {
    const hs_backend_ops *o = s->be->ops;
    const hs_model_config *c = &s->cfg;
    const int64_t n = (int64_t)b->B * b->T, d = c->d_model, V = c->n_vocab, es = (int64_t)s->es;
    const char *xf = (const char *)gb->res + (int64_t)c->n_layers * n * d * es;
    hs_status st = HS_OK;
    HS_CHECK(o->norm(s->be, c->norm, xf, s->lnf_w, s->lnf_b, c->norm_eps, n, (int)d, s->xn, err));
    HS_CHECK(o->upload(s->be, gb->tg, b->targets, (size_t)n * sizeof(int32_t), err));
    for (int64_t r0 = 0; r0 < n; r0 += HG_CHUNK) {
        const int64_t R = n - r0 < HG_CHUNK ? n - r0 : HG_CHUNK;
        HS_CHECK(o->matmul(s->be, (const char *)s->xn + r0 * d * es, s->unembed, s->unembed_b, R, (int)V, (int)d, 0,
                           gb->dlog, err));
        HS_CHECK(o->logprob_grad(s->be, gb->dlog, gb->tg + r0, R, (int)V, gb->dlog, err));
        HS_CHECK(o->matmul_bwd(s->be, gb->dlog, s->unembed, R, (int)V, (int)d, 0, (char *)gb->dxn + r0 * d * es, err));
    }
    HS_CHECK(o->norm_bwd(s->be, c->norm, xf, s->lnf_w, c->norm_eps, n, (int)d, gb->dxn, 0, gb->g, err));
exit:
    return st;
}

/* Reruns layer l from gb->res[l] up to the MLP's inputs: s->q, s->k (rotated),
 * s->v, s->z (the heads' output, times the mask), gb->mid = resid_mid,
 * s->xn = norm2(resid_mid), s->up, s->gate; with a mask (ap0->head_scale) also
 * gb->zu = the unscaled z. */
static hs_status rerun_layer(hs_session *s, const hs_batch *b, int l, const hs_attn_params *ap0, grad_bufs *gb,
                             hs_err *err) {
    const hs_backend_ops *o = s->be->ops;
    const hs_model_config *c = &s->cfg;
    const hs_session_layer *W = &s->layers[l];
    const int64_t n = (int64_t)b->B * b->T, d = c->d_model, es = (int64_t)s->es;
    const int H = c->n_heads, Hk = c->n_kv_heads, dh = c->d_head, f = c->d_mlp;
    const void *x = (const char *)gb->res + l * n * d * es;
    hs_status st = HS_OK;
    HS_CHECK(o->norm(s->be, c->norm, x, W->ln1_w, W->ln1_b, c->norm_eps, n, (int)d, s->xn, err));
    HS_CHECK(o->matmul(s->be, s->xn, W->wq, W->bq, n, H * dh, (int)d, 0, s->q, err));
    HS_CHECK(o->matmul(s->be, s->xn, W->wk, W->bk, n, Hk * dh, (int)d, 0, s->k, err));
    HS_CHECK(o->matmul(s->be, s->xn, W->wv, W->bv, n, Hk * dh, (int)d, 0, s->v, err));
    if (c->rope != HS_ROPE_NONE) {
        HS_CHECK(o->rope(s->be, c->rope, s->q, s->d_pos, n, H, dh, c->rope_theta, err));
        HS_CHECK(o->rope(s->be, c->rope, s->k, s->d_pos, n, Hk, dh, c->rope_theta, err));
    }
    HS_CHECK(o->attention(s->be, ap0, err));
    if (ap0->head_scale) { /* the dot products need z itself, also where the mask is 0 */
        hs_attn_params au = *ap0;
        au.head_scale = NULL;
        au.z = gb->zu;
        HS_CHECK(o->attention(s->be, &au, err));
    }
    HS_CHECK(o->copy(s->be, gb->mid, x, (size_t)(n * d * es), err));
    HS_CHECK(o->matmul(s->be, s->z, W->wo, W->bo, n, (int)d, H * dh, 1, gb->mid, err));
    HS_CHECK(o->norm(s->be, c->norm, gb->mid, W->ln2_w, W->ln2_b, c->norm_eps, n, (int)d, s->xn, err));
    HS_CHECK(o->matmul(s->be, s->xn, W->w_up, W->b_up, n, f, (int)d, 0, s->up, err));
    if (c->act == HS_ACT_SILU_GLU) HS_CHECK(o->matmul(s->be, s->xn, W->w_gate, NULL, n, f, (int)d, 0, s->gate, err));
exit:
    return st;
}

/* grad[b, l, h] = sum over the row's positions of z . dz for head h, reduced
 * on the backend (on a GPU only [B, H] floats cross PCIe). */
static hs_status head_dots(hs_session *s, const hs_batch *b, int l, const void *z, const void *dz, float *dev,
                           float *host, float *grad, hs_err *err) {
    const hs_model_config *c = &s->cfg;
    const int H = c->n_heads;
    hs_status st = s->be->ops->head_dot(s->be, z, dz, b->B, b->T, H, c->d_head, dev, err);
    if (st == HS_OK) st = s->be->ops->download(s->be, host, dev, (size_t)b->B * H * sizeof(float), err);
    for (int r = 0; st == HS_OK && r < b->B; r++)
        memcpy(grad + ((int64_t)r * c->n_layers + l) * H, host + (int64_t)r * H, (size_t)H * sizeof(float));
    return st;
}

hs_status hs_head_grad(hs_session *s, const hs_batch *b, const float *head_mask, float *grad, hs_err *err) {
    const hs_backend_ops *o = s->be->ops;
    const hs_model_config *c = &s->cfg;
    if (!o->supports_op(s->be, HS_OP_BACKWARD))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "head gradient: the %s backend has no backward ops yet", o->name);
    if (!b->targets) return hs_err_set(err, HS_ERR_INVALID_ARG, "head gradient: the batch has no targets");
    const int64_t n = (int64_t)b->B * b->T, d = c->d_model, es = (int64_t)s->es;
    const int H = c->n_heads, Hk = c->n_kv_heads, dh = c->d_head, f = c->d_mlp;
    hs_status st = HS_OK;
    grad_bufs gb;
    memset(&gb, 0, sizeof gb);
    const int BH = b->B * H;
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    float *dots = malloc((size_t)BH * sizeof(float));
    float *hsc = head_mask ? malloc((size_t)c->n_layers * BH * sizeof(float)) : NULL; /* [L, B, H] */
    if (!pos || !dots || (head_mask && !hsc)) HS_FAIL(err, HS_ERR_OOM, "head gradient: out of memory");
    for (int64_t i = 0; head_mask && i < (int64_t)c->n_layers * BH; i++)
        hsc[i] = head_mask[i / BH * H + i % H];
    HS_CHECK(bufs_alloc(s, b->B, n, head_mask != NULL, &gb, err));

    keep_ctx keep = {.s = s, .res = gb.res, .n = n};
    hs_hooks hooks = {.wants = keep_wants, .fn = keep_fn, .user = &keep};
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = HS_LOGITS_NONE;
    fp.hooks = &hooks;
    fp.head_scale = hsc;
    HS_CHECK(hs_forward(s, b, &fp, NULL, err)); /* also leaves the positions and mask in s->d_pos, s->d_mask */
    HS_CHECK(o->download(s->be, pos, s->d_pos, (size_t)n * sizeof(int32_t), err));
    for (int64_t i = 0; i < n; i++) pos[i] = -pos[i]; /* RoPE at -p is its transpose */
    HS_CHECK(o->upload(s->be, gb.neg_pos, pos, (size_t)n * sizeof(int32_t), err));

    HS_CHECK(grad_of_output(s, b, &gb, err));
    const hs_attn_params ap = {.B = b->B, .T = b->T, .H = H, .H_kv = Hk, .d_head = dh,
                               .scale = 1.0f / sqrtf((float)dh), .q = s->q, .k = s->k, .v = s->v,
                               .key_mask = b->mask ? s->d_mask : NULL, .z = s->z, .head_scale = gb.hsc};
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const hs_session_layer *W = &s->layers[l];
        if (hsc) HS_CHECK(o->upload(s->be, gb.hsc, hsc + (int64_t)l * BH, (size_t)BH * sizeof(float), err));
        HS_CHECK(rerun_layer(s, b, l, &ap, &gb, err));
        /* MLP */
        HS_CHECK(o->matmul_bwd(s->be, gb.g, W->w_down, n, (int)d, f, 0, gb.dhid, err));
        HS_CHECK(o->act_bwd(s->be, c->act, s->gate, s->up, gb.dhid, n * f, gb.dgate, gb.dup, err));
        HS_CHECK(o->matmul_bwd(s->be, gb.dup, W->w_up, n, f, (int)d, 0, gb.dxn, err));
        if (c->act == HS_ACT_SILU_GLU) HS_CHECK(o->matmul_bwd(s->be, gb.dgate, W->w_gate, n, f, (int)d, 1, gb.dxn, err));
        HS_CHECK(o->copy(s->be, gb.gm, gb.g, (size_t)(n * d * es), err));
        HS_CHECK(o->norm_bwd(s->be, c->norm, gb.mid, W->ln2_w, c->norm_eps, n, (int)d, gb.dxn, 1, gb.gm, err));
        /* the heads' mask gradients */
        HS_CHECK(o->matmul_bwd(s->be, gb.gm, W->wo, n, (int)d, H * dh, 0, gb.dz, err));
        HS_CHECK(head_dots(s, b, l, hsc ? gb.zu : s->z, gb.dz, gb.dots, dots, grad, err));
        if (l == 0) break;
        /* attention, back to resid_pre */
        HS_CHECK(o->attention_bwd(s->be, &ap, gb.dz, gb.dq, gb.dk, gb.dv, err));
        if (c->rope != HS_ROPE_NONE) {
            HS_CHECK(o->rope(s->be, c->rope, gb.dq, gb.neg_pos, n, H, dh, c->rope_theta, err));
            HS_CHECK(o->rope(s->be, c->rope, gb.dk, gb.neg_pos, n, Hk, dh, c->rope_theta, err));
        }
        HS_CHECK(o->matmul_bwd(s->be, gb.dq, W->wq, n, H * dh, (int)d, 0, gb.dxn, err));
        HS_CHECK(o->matmul_bwd(s->be, gb.dk, W->wk, n, Hk * dh, (int)d, 1, gb.dxn, err));
        HS_CHECK(o->matmul_bwd(s->be, gb.dv, W->wv, n, Hk * dh, (int)d, 1, gb.dxn, err));
        HS_CHECK(o->copy(s->be, gb.g, gb.gm, (size_t)(n * d * es), err));
        const void *x = (const char *)gb.res + (int64_t)l * n * d * es;
        HS_CHECK(o->norm_bwd(s->be, c->norm, x, W->ln1_w, c->norm_eps, n, (int)d, gb.dxn, 1, gb.g, err));
    }
exit:
    bufs_free(s, &gb);
    free(pos), free(dots), free(hsc);
    return st;
}

hs_status hs_head_grad_per_prompt(hs_session *s, const hs_prompts *pr, const float *head_mask, int batch_rows,
                                  float *out, hs_err *err) {
    hs_status st = HS_OK;
    const int T = pr->T, R = batch_rows > 0 ? batch_rows : 1;
    const int64_t per = (int64_t)s->cfg.n_layers * s->cfg.n_heads;
    int32_t *mask = malloc((size_t)R * T * sizeof *mask), *tg = malloc((size_t)R * T * sizeof *tg);
    if (!mask || !tg) HS_FAIL(err, HS_ERR_OOM, "head gradient: out of memory");
    for (int p0 = 0; p0 < pr->N; p0 += R) {
        const int B = pr->N - p0 < R ? pr->N - p0 : R;
        const hs_prompts chunk = {.N = B, .T = T, .tokens = pr->tokens + (int64_t)p0 * T, .lengths = pr->lengths + p0};
        hs_prompts_mask_targets(&chunk, NULL, mask, tg);
        const hs_batch b = {.B = B, .T = T, .tokens = chunk.tokens, .mask = mask, .targets = tg};
        HS_CHECK(hs_head_grad(s, &b, head_mask, out + (int64_t)p0 * per, err));
    }
exit:
    free(mask), free(tg);
    return st;
}

void hs_head_importance(const float *grad, const int32_t *tokens, int N, int L, int H, float *raw, float *norm) {
    double tot = 0;
    for (int p = 0; p < N; p++) tot += tokens[p];
    for (int l = 0; l < L; l++) {
        double ss = 0;
        for (int pass = 0; pass < 2; pass++) /* the layer's norm, then the outputs */
            for (int h = 0; h < H; h++) {
                double a = 0;
                for (int p = 0; p < N; p++) a += fabs((double)grad[((int64_t)p * L + l) * H + h]);
                const double r = tot > 0 ? a / tot : 0.0;
                if (pass == 0) {
                    ss += r * r;
                    continue;
                }
                if (raw) raw[l * H + h] = (float)r;
                if (norm) norm[l * H + h] = ss > 0 ? (float)(r / sqrt(ss)) : 0.0f;
            }
    }
}
