/* hs_forward: the layer loop, written once against the backend op table.
 * Hook points are offered in the order of DESIGN.md §2; an activation is
 * materialised for a hook only if some hook wants it (patterns), and edits a
 * hook makes in place flow into the rest of the pass. */
#include "headsweep/hs_forward.h"

#include "hs_backward.h"
#include "hs_session_internal.h"
#include "hs_zedit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *hook_names[HS_HOOK_COUNT] = {
    "resid_pre", "q",        "k",       "v",              "rot_q",    "rot_k",   "pattern",    "z",
    "attn_out",  "resid_mid", "mlp_pre", "mlp_pre_linear", "mlp_post", "mlp_out", "resid_post",
};

const char *hs_hook_name(hs_hook_point p) { return (p >= 0 && p < HS_HOOK_COUNT) ? hook_names[p] : "?"; }

hs_hook_point hs_hook_from_name(const char *name) {
    for (int i = 0; i < HS_HOOK_COUNT; i++)
        if (!strcmp(name, hook_names[i])) return (hs_hook_point)i;
    return HS_HOOK_COUNT;
}

hs_forward_params hs_forward_default_params(void) {
    hs_forward_params p;
    memset(&p, 0, sizeof p);
    p.logits = HS_LOGITS_LAST;
    return p;
}

static hs_status sbuf(hs_session *s, size_t nbytes, void **out, hs_err *err) {
    hs_status st = s->be->ops->alloc(s->be, nbytes, out, err);
    if (st == HS_OK) s->bytes += (int64_t)nbytes;
    return st;
}

/* *buf holds at least need bytes afterwards (contents not kept); it only grows. */
static hs_status grow(hs_session *s, size_t need, void **buf, size_t *have, hs_err *err) {
    if (need <= *have) return HS_OK;
    if (*buf) s->be->ops->free(s->be, *buf), s->bytes -= (int64_t)*have;
    *buf = NULL, *have = 0;
    const hs_status st = sbuf(s, need, buf, err);
    if (st == HS_OK) *have = need;
    return st;
}

/* Weight upload: alias on the CPU backend (no copy: RSS matters for 7B on the
 * host), convert and copy elsewhere. */
static hs_status wbuf(hs_session *s, const float *src, int64_t n, void **out, hs_err *err) {
    *out = NULL;
    if (!src) return HS_OK;
    if (!s->owns_weights) {
        *out = (void *)src;
        return HS_OK;
    }
    hs_status st = sbuf(s, (size_t)n * s->es, out, err);
    if (st != HS_OK) return st;
    return s->be->ops->upload_f32(s->be, *out, src, n, err);
}

hs_status hs_session_init(hs_backend *be, const hs_model *m, int max_B, int max_T, hs_session **out, hs_err *err) {
    *out = NULL;
    hs_status st = HS_OK;
    if (max_B <= 0 || max_T <= 0)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "session: max batch %d x %d must be positive", max_B, max_T);
    hs_session *s = calloc(1, sizeof *s);
    if (!s) return hs_err_set(err, HS_ERR_OOM, "session: out of memory");
    s->be = be;
    s->model = m;
    s->cfg = *hs_model_get_config(m);
    if (s->cfg.rope != HS_ROPE_NONE && !s->cfg.rot_dim) s->cfg.rot_dim = s->cfg.d_head; /* 0 = the whole head */
    if (s->cfg.rope != HS_ROPE_NONE) {
        const size_t tb = (size_t)(s->cfg.rot_dim / 2 + 1) * sizeof(float);
        const int local = s->cfg.rope_local_theta > 0.0f, longrope = s->cfg.rope_scaling == HS_ROPE_SCALING_LONGROPE;
        if (!(s->rope_inv = malloc(tb)) || (local && !(s->rope_inv_local = malloc(tb))) ||
            (longrope && (!(s->rope_inv_long = malloc(tb)) || !(s->rope_long_rows = calloc((size_t)max_B, 1))))) {
            free(s->rope_inv);
            free(s->rope_inv_local);
            free(s->rope_inv_long);
            free(s);
            return hs_err_set(err, HS_ERR_OOM, "session: out of memory");
        }
        hs_model_rope_inv_freq(&s->cfg, hs_model_get_weights(m), s->rope_inv);
        if (local) hs_model_rope_inv_freq_local(&s->cfg, s->rope_inv_local);
        if (longrope) hs_model_rope_inv_freq_long(&s->cfg, hs_model_get_weights(m), s->rope_inv_long);
    }
    s->max_B = max_B;
    s->max_T = max_T;
    s->bwd_keep_bytes = HS_BACKWARD_KEEP_BYTES;
    s->owns_weights = be->device != HS_DEVICE_CPU;
    s->es = hs_dtype_block_bytes(be->ops->act_dtype(be));
    const hs_model_config *c = &s->cfg;
    const hs_model_weights *w = hs_model_get_weights(m);
    int64_t d = c->d_model, qd = (int64_t)c->n_heads * c->d_head, kd = (int64_t)c->n_kv_heads * c->d_head,
            f = c->d_mlp, V = c->n_vocab;
    s->layers = calloc((size_t)c->n_layers, sizeof *s->layers);
    if (!s->layers) HS_FAIL(err, HS_ERR_OOM, "session: out of memory");
    HS_CHECK(wbuf(s, w->tok_embd, V * d, &s->tok_embd, err));
    HS_CHECK(wbuf(s, w->pos_embd, (int64_t)c->n_ctx * d, &s->pos_embd, err));
    for (int l = 0; l < c->n_layers; l++) {
        const hs_layer_weights *W = &w->layers[l];
        hs_session_layer *D = &s->layers[l];
        HS_CHECK(wbuf(s, W->ln1_w, d, &D->ln1_w, err));
        HS_CHECK(wbuf(s, W->ln1_b, d, &D->ln1_b, err));
        HS_CHECK(wbuf(s, W->wq, qd * d, &D->wq, err));
        HS_CHECK(wbuf(s, W->bq, qd, &D->bq, err));
        HS_CHECK(wbuf(s, W->wk, kd * d, &D->wk, err));
        HS_CHECK(wbuf(s, W->bk, kd, &D->bk, err));
        HS_CHECK(wbuf(s, W->wv, kd * d, &D->wv, err));
        HS_CHECK(wbuf(s, W->bv, kd, &D->bv, err));
        HS_CHECK(wbuf(s, W->q_norm_w, (int64_t)hs_model_qk_norm_width(c, 0) * hs_model_qk_norm_rows(c, 0),
                      &D->q_norm_w, err));
        HS_CHECK(wbuf(s, W->k_norm_w, (int64_t)hs_model_qk_norm_width(c, 1) * hs_model_qk_norm_rows(c, 1),
                      &D->k_norm_w, err));
        HS_CHECK(wbuf(s, W->wo, d * qd, &D->wo, err));
        HS_CHECK(wbuf(s, W->bo, d, &D->bo, err));
        HS_CHECK(wbuf(s, W->ln2_w, d, &D->ln2_w, err));
        HS_CHECK(wbuf(s, W->ln2_b, d, &D->ln2_b, err));
        HS_CHECK(wbuf(s, W->w_gate, f * d, &D->w_gate, err));
        HS_CHECK(wbuf(s, W->w_up, f * d, &D->w_up, err));
        HS_CHECK(wbuf(s, W->b_up, f, &D->b_up, err));
        HS_CHECK(wbuf(s, W->w_down, d * f, &D->w_down, err));
        HS_CHECK(wbuf(s, W->b_down, d, &D->b_down, err));
        HS_CHECK(wbuf(s, W->attn_post_w, d, &D->attn_post_w, err));
        HS_CHECK(wbuf(s, W->mlp_post_w, d, &D->mlp_post_w, err));
    }
    HS_CHECK(wbuf(s, w->lnf_w, d, &s->lnf_w, err));
    HS_CHECK(wbuf(s, w->lnf_b, d, &s->lnf_b, err));
    HS_CHECK(wbuf(s, w->embed_ln_w, d, &s->embed_ln_w, err));
    HS_CHECK(wbuf(s, w->embed_ln_b, d, &s->embed_ln_b, err));
    if (w->unembed == w->tok_embd) s->unembed = s->tok_embd;
    else HS_CHECK(wbuf(s, w->unembed, V * d, &s->unembed, err));
    HS_CHECK(wbuf(s, w->unembed_b, V, &s->unembed_b, err));

    size_t rows = (size_t)max_B * (size_t)max_T, es = s->es;
    HS_CHECK(sbuf(s, rows * d * es, &s->x, err));
    HS_CHECK(sbuf(s, rows * d * es, &s->xn, err));
    HS_CHECK(sbuf(s, rows * qd * es, &s->q, err));
    HS_CHECK(sbuf(s, rows * kd * es, &s->k, err));
    HS_CHECK(sbuf(s, rows * kd * es, &s->v, err));
    if (c->qk_norm) {
        HS_CHECK(sbuf(s, rows * qd * es, &s->q_pre, err));
        HS_CHECK(sbuf(s, rows * kd * es, &s->k_pre, err));
    }
    HS_CHECK(sbuf(s, rows * qd * es, &s->z, err));
    HS_CHECK(sbuf(s, rows * d * es, &s->attn_out, err));
    if (c->post_norms) HS_CHECK(sbuf(s, rows * d * es, &s->raw, err));
    HS_CHECK(sbuf(s, rows * f * es, &s->up, err));
    HS_CHECK(sbuf(s, rows * f * es, &s->hid, err));
    if (hs_act_gated(c->act)) HS_CHECK(sbuf(s, rows * f * es, &s->gate, err));
    HS_CHECK(sbuf(s, rows * d * es, &s->mlp_out, err));
    /* last-position logits only; all-position logits get a temporary buffer */
    HS_CHECK(sbuf(s, (size_t)max_B * (size_t)V * es, &s->logits, err));
    HS_CHECK(sbuf(s, rows * sizeof(int32_t), (void **)&s->d_tokens, err));
    HS_CHECK(sbuf(s, rows * sizeof(int32_t), (void **)&s->d_pos, err));
    HS_CHECK(sbuf(s, rows * sizeof(int32_t), (void **)&s->d_mask, err));
    HS_CHECK(sbuf(s, (size_t)max_B * sizeof(int32_t), (void **)&s->d_pattern_rows, err));
    HS_CHECK(sbuf(s, (size_t)max_B * c->n_heads * sizeof(float), (void **)&s->d_head_scale, err));
    HS_CHECK(sbuf(s, (size_t)max_B * c->n_heads, (void **)&s->d_uniform, err));
    if (c->alibi) {
        float *slopes = malloc((size_t)c->n_heads * sizeof(float));
        if (!slopes) HS_FAIL(err, HS_ERR_OOM, "session: out of memory");
        hs_model_alibi_slopes(c, slopes);
        st = sbuf(s, (size_t)c->n_heads * sizeof(float), (void **)&s->d_alibi, err);
        if (st == HS_OK) st = s->be->ops->upload(s->be, s->d_alibi, slopes, (size_t)c->n_heads * sizeof(float), err);
        free(slopes);
        if (st != HS_OK) goto exit;
    }
exit:
    if (st != HS_OK) {
        hs_session_free(s);
        return st;
    }
    *out = s;
    return HS_OK;
}

void hs_session_set_backward_keep_bytes(hs_session *s, int64_t bytes) {
    s->bwd_keep_bytes = bytes > 0 ? bytes : 0;
    hs_bwd_free(s); /* the next backward sizes its buffers for the new budget */
}

void hs_session_free(hs_session *s) {
    if (!s) return;
    hs_backend *be = s->be;
    void (*fr)(hs_backend *, void *) = be->ops->free;
    void *scratch[] = {s->x, s->xn, s->q, s->k, s->v, s->q_pre, s->k_pre, s->raw, s->z, s->attn_out, s->gate,
                       s->up, s->hid, s->mlp_out, s->logits, s->d_tokens, s->d_pos, s->d_mask, s->d_pattern_rows,
                       s->d_head_scale, s->d_uniform, s->tl_logits, s->tl_dlogits, s->tl_targets, s->tl_out,
                       s->d_set_idx, s->d_set_src, s->d_pattern, s->d_all_logits, s->d_alibi, s->split_x, s->split_y};
    for (size_t i = 0; i < sizeof scratch / sizeof *scratch; i++)
        if (scratch[i]) fr(be, scratch[i]);
    hs_bwd_free(s);
    if (s->owns_weights) {
        if (s->layers)
            for (int l = 0; l < s->cfg.n_layers; l++) {
                void **p = (void **)&s->layers[l];
                for (size_t i = 0; i < sizeof(hs_session_layer) / sizeof(void *); i++)
                    if (p[i]) fr(be, p[i]);
            }
        void *top[] = {s->tok_embd, s->pos_embd, s->lnf_w, s->lnf_b, s->embed_ln_w, s->embed_ln_b,
                       s->unembed != s->tok_embd ? s->unembed : NULL, s->unembed_b};
        for (size_t i = 0; i < sizeof top / sizeof *top; i++)
            if (top[i]) fr(be, top[i]);
    }
    free(s->layers);
    free(s->rope_inv);
    free(s->rope_inv_local);
    free(s->rope_inv_long);
    free(s->rope_long_rows);
    free(s);
}

int64_t hs_session_device_bytes(const hs_session *s) { return s->bytes; }

hs_status hs_session_project(hs_session *s, int l, int which, int64_t n, int clip, void *out, hs_err *err) {
    const hs_model_config *c = &s->cfg;
    const hs_session_layer *W = &s->layers[l];
    const int width = (which ? c->n_kv_heads : c->n_heads) * c->d_head;
    const void *w = which == 0 ? W->wq : which == 1 ? W->wk : W->wv, *b = which == 0 ? W->bq : which == 1 ? W->bk : W->bv;
    hs_status st = s->be->ops->matmul(s->be, s->xn, w, b, n, width, c->d_model, 0, out, err);
    if (!st && clip && c->clip_qkv > 0.0f) st = s->be->ops->clamp(s->be, out, n * width, c->clip_qkv, out, err);
    return st;
}

hs_status hs_session_qk_norm(hs_session *s, int l, int64_t n, int do_q, int do_k, hs_err *err) {
    const hs_model_config *c = &s->cfg;
    const hs_session_layer *W = &s->layers[l];
    const int wq = hs_model_qk_norm_width(c, 0), wk = hs_model_qk_norm_width(c, 1);
    hs_status st = HS_OK;
    if (do_q)
        st = s->be->ops->norm(s->be, c->norm, s->q_pre, W->q_norm_w, NULL, c->norm_eps,
                              n * c->n_heads * c->d_head / wq, wq, hs_model_qk_norm_rows(c, 0), s->q, err);
    if (!st && do_k)
        st = s->be->ops->norm(s->be, c->norm, s->k_pre, W->k_norm_w, NULL, c->norm_eps,
                              n * c->n_kv_heads * c->d_head / wk, wk, hs_model_qk_norm_rows(c, 1), s->k, err);
    return st;
}

hs_status hs_session_rope(hs_session *s, int l, void *x, const int32_t *pos, int B, int T, int heads, hs_err *err) {
    const hs_model_config *c = &s->cfg;
    if (!hs_model_layer_rotates(c, l)) return HS_OK; /* a NoPE layer: identity, forward and backward */
    const float *inv = hs_session_rope_inv(s, l);
    const int split = s->rope_long_rows && inv == s->rope_inv; /* LongRoPE scales the global table only */
    const int64_t row_bytes = (int64_t)T * heads * c->d_head * (int64_t)s->es;
    for (int r0 = 0, r1; r0 < B; r0 = r1) {
        const int lng = split && s->rope_long_rows[r0];
        for (r1 = r0 + 1; r1 < B && split && s->rope_long_rows[r1] == lng;) r1++;
        if (!split) r1 = B;
        hs_status st = s->be->ops->rope(s->be, c->rope, (char *)x + r0 * row_bytes, pos + (int64_t)r0 * T,
                                        (int64_t)(r1 - r0) * T, heads, c->d_head, c->rot_dim,
                                        lng ? s->rope_inv_long : inv, hs_session_rope_scale(s, l), err);
        if (st != HS_OK) return st;
    }
    return HS_OK;
}

hs_status hs_session_pre_norm(hs_session *s, int l, int mlp, const void *x, int64_t n, void *out, hs_err *err) {
    const hs_model_config *c = &s->cfg;
    const hs_session_layer *W = &s->layers[l];
    if (c->no_pre_norms) return s->be->ops->copy(s->be, out, x, (size_t)(n * c->d_model) * s->es, err);
    return s->be->ops->norm(s->be, c->norm, x, mlp ? W->ln2_w : W->ln1_w, mlp ? W->ln2_b : W->ln1_b, c->norm_eps, n,
                            c->d_model, 1, out, err);
}
hs_backend *hs_session_backend(const hs_session *s) { return s->be; }

hs_status hs_session_post_norm(hs_session *s, int l, int mlp, int64_t n, void *out, hs_err *err) {
    const hs_session_layer *W = &s->layers[l];
    return s->be->ops->norm(s->be, s->cfg.norm, s->raw, mlp ? W->mlp_post_w : W->attn_post_w, NULL,
                            s->cfg.norm_eps, n, s->cfg.d_model, 1, out, err);
}

hs_status hs_session_cap_logits(hs_session *s, void *logits, int64_t R, hs_err *err) {
    if (!(s->cfg.final_softcap > 0.0f)) return HS_OK;
    return s->be->ops->softcap(s->be, logits, R * s->cfg.n_vocab, s->cfg.final_softcap, logits, err);
}

/* Offers activation `data` at point p of `layer` to the hooks. */
static hs_status offer(hs_session *s, const hs_hooks *hk, hs_hook_point p, int layer, void *data, hs_dtype dt,
                       int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, hs_err *err) {
    if (!hs_hooks_want(hk, p, layer)) return HS_OK;
    hs_tensor t = {.data = data, .dtype = dt, .ndim = ndim, .shape = {d0, d1, d2, d3}, .device = s->be->device};
    hs_status st = hk->fn(hk->user, p, layer, &t, err);
    if (st != HS_OK) hs_err_prefix(err, "hook %s at layer %d", hs_hook_name(p), layer);
    return st;
}

static hs_status check_batch(const hs_session *s, const hs_batch *b, int32_t *pos, hs_err *err) {
    const hs_model_config *c = &s->cfg;
    if (b->B <= 0 || b->T <= 0 || b->B > s->max_B || b->T > s->max_T)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "batch %d x %d outside the session's %d x %d", b->B, b->T,
                          s->max_B, s->max_T);
    for (int r = 0; r < b->B; r++) {
        int32_t next = 0;
        for (int t = 0; t < b->T; t++) {
            int64_t i = (int64_t)r * b->T + t;
            int real = !b->mask || b->mask[i];
            if (b->tokens[i] < 0 || b->tokens[i] >= c->n_vocab)
                return hs_err_set(err, HS_ERR_INVALID_ARG, "batch row %d position %d: token id %d outside vocabulary [0, %d)",
                                  r, t, b->tokens[i], c->n_vocab);
            if (b->targets && (b->targets[i] < -1 || b->targets[i] >= c->n_vocab))
                return hs_err_set(err, HS_ERR_INVALID_ARG, "batch row %d position %d: target id %d outside vocabulary [0, %d)",
                                  r, t, b->targets[i], c->n_vocab);
            pos[i] = b->positions ? b->positions[i] : (real ? next : 0);
            if (real) next++;
            if (pos[i] < 0 || (c->learned_pos && pos[i] >= c->n_ctx))
                return hs_err_set(err, HS_ERR_INVALID_ARG, "batch row %d position %d: position %d outside [0, %d)", r,
                                  t, pos[i], c->n_ctx);
        }
    }
    return HS_OK;
}

static hs_status check_edits(const hs_session *s, const hs_batch *b, const hs_forward_params *fp, hs_err *err) {
    const hs_model_config *c = &s->cfg;
    for (int i = 0; i < fp->n_edits; i++) {
        const hs_z_edit *e = &fp->edits[i];
        if (e->row < 0 || e->row >= b->B || e->layer < 0 || e->layer >= c->n_layers || e->head < 0 ||
            e->head >= c->n_heads || e->pos < -1 || e->pos >= b->T)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "edit %d: row %d layer %d head %d pos %d outside the batch/model",
                              i, e->row, e->layer, e->head, e->pos);
        if (e->mode == HS_EDIT_SET && !e->src) return hs_err_set(err, HS_ERR_INVALID_ARG, "edit %d: SET without src", i);
        if (e->mode == HS_EDIT_UNIFORM && e->pos != -1)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "edit %d: uniform attention applies to all positions only", i);
        if (e->mode < HS_EDIT_ZERO || e->mode > HS_EDIT_UNIFORM)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "edit %d: unknown mode %d", i, (int)e->mode);
        if (e->layer < fp->start_layer)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "edit %d at layer %d precedes start_layer %d", i, e->layer,
                              fp->start_layer);
    }
    if (fp->resid_start && fp->resid_start_dev)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "forward: both resid_start and resid_start_dev given");
    if (fp->start_layer < 0 || fp->start_layer >= c->n_layers ||
        (fp->start_layer > 0 && !fp->resid_start && !fp->resid_start_dev))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "start_layer %d needs 0 <= l < %d and resid_start", fp->start_layer,
                          c->n_layers);
    if (fp->stop_layer && (fp->stop_layer <= fp->start_layer || fp->stop_layer > c->n_layers))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "stop_layer %d needs start_layer %d < stop_layer <= %d",
                          fp->stop_layer, fp->start_layer, c->n_layers);
    if (fp->stop_layer && fp->stop_layer < c->n_layers &&
        (fp->logits != HS_LOGITS_NONE || fp->target_logprobs))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "stop_layer %d < %d: a partial pass has no logits", fp->stop_layer,
                          c->n_layers);
    if (fp->target_logprobs && !b->targets)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "target_logprobs requested without batch targets");
    if (fp->inputs && (fp->kv || fp->z_from_hook))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "forward: split inputs go with neither a KV cache nor z_from_hook");
    if (fp->z_from_hook < 0 || fp->z_from_hook > c->n_layers)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "z_from_hook %d outside [0, %d]", fp->z_from_hook, c->n_layers);
    return HS_OK;
}

/* A layer whose z the Z hook gives whole: only the projections a hook reads
 * are computed, and no attention. */
static int z_given(const hs_forward_params *fp, int l) { return fp->z_from_hook > 0 && l >= fp->z_from_hook; }

/* Hands the op the layer's SET table (set_idx and the staged vectors). */
static hs_status upload_sets(hs_session *s, const hs_zedit *ze, hs_attn_params *ap, hs_err *err) {
    const hs_backend_ops *o = s->be->ops;
    const int64_t cells = (int64_t)ze->B * ze->T * ze->H;
    const size_t vbytes = (size_t)ze->n_vec * ze->dh * s->es;
    if (!s->d_set_idx) {
        hs_status st = sbuf(s, (size_t)s->max_B * s->max_T * s->cfg.n_heads * sizeof(int32_t), (void **)&s->d_set_idx, err);
        if (st != HS_OK) return st;
    }
    hs_status st = grow(s, vbytes, &s->d_set_src, &s->set_src_bytes, err);
    if (st != HS_OK) return st;
    st = o->upload(s->be, s->d_set_idx, ze->set_idx, (size_t)cells * sizeof(int32_t), err);
    if (st == HS_OK) st = o->upload_f32(s->be, s->d_set_src, ze->vec, ze->n_vec * ze->dh, err);
    ap->set_idx = s->d_set_idx, ap->set_src = s->d_set_src, ap->n_set = ze->n_vec;
    return st;
}

/* One-position SCALEs of a computed z: the only edit the op does not take. */
static hs_status apply_post_scales(hs_session *s, const hs_zedit *ze, float *tmp, hs_err *err) {
    const hs_backend_ops *o = s->be->ops;
    const int64_t cells = (int64_t)ze->B * ze->T * ze->H;
    for (int64_t c = 0; c < cells; c++) {
        if (ze->post[c] == 1.0f || (ze->use_set && ze->set_idx[c] >= 0)) continue;
        char *dst = (char *)s->z + c * ze->dh * (int64_t)s->es;
        hs_status st = o->download_f32(s->be, tmp, dst, ze->dh, err);
        for (int j = 0; j < ze->dh && st == HS_OK; j++) tmp[j] *= ze->post[c];
        if (st == HS_OK) st = o->upload_f32(s->be, dst, tmp, ze->dh, err);
        if (st != HS_OK) return st;
    }
    return HS_OK;
}

/* log p(target) per position: unembed a chunk of rows, then the backend's
 * target_logprob reduces each row to one float (the logits never leave the
 * backend). */
#define TL_CHUNK 256

hs_status hs_session_logit_chunk(hs_session *s, int64_t *rows, hs_err *err) {
    /* Rows per unembedding GEMM: enough for BLAS efficiency (a few rows
     * against a 50k-wide vocabulary run at a fraction of peak), bounded memory. */
    const int64_t max_rows = (int64_t)s->max_B * s->max_T, cap = max_rows < TL_CHUNK ? max_rows : TL_CHUNK;
    hs_status st = HS_OK;
    *rows = cap;
    if (!s->tl_logits) HS_CHECK(sbuf(s, (size_t)(cap * s->cfg.n_vocab) * s->es, &s->tl_logits, err));
    if (!s->tl_targets) HS_CHECK(sbuf(s, (size_t)cap * sizeof(int32_t), (void **)&s->tl_targets, err));
    if (!s->tl_out) HS_CHECK(sbuf(s, (size_t)cap * sizeof(float), (void **)&s->tl_out, err));
exit:
    return st;
}

static hs_status target_logprobs(hs_session *s, const hs_batch *b, float *out, hs_err *err) {
    const hs_backend_ops *o = s->be->ops;
    const int64_t n = (int64_t)b->B * b->T, V = s->cfg.n_vocab;
    const int d = s->cfg.d_model;
    const int64_t chunk = n < TL_CHUNK ? n : TL_CHUNK;
    hs_status st = HS_OK;
    int64_t cap;
    HS_CHECK(hs_session_logit_chunk(s, &cap, err));
    void *dev = s->tl_logits, *dtg = s->tl_targets, *dout = s->tl_out;
    for (int64_t r0 = 0; r0 < n; r0 += chunk) {
        int64_t R = n - r0 < chunk ? n - r0 : chunk;
        int any = 0;
        for (int64_t r = r0; r < r0 + R; r++) any |= b->targets[r] >= 0;
        if (!any) {
            for (int64_t r = r0; r < r0 + R; r++) out[r] = NAN;
            continue;
        }
        const char *x = (const char *)s->xn + r0 * d * (int64_t)s->es;
        HS_CHECK(o->matmul(s->be, x, s->unembed, s->unembed_b, R, (int)V, d, 0, dev, err));
        HS_CHECK(hs_session_cap_logits(s, dev, R, err));
        HS_CHECK(o->upload(s->be, dtg, b->targets + r0, (size_t)R * sizeof(int32_t), err)); /* range-checked */
        HS_CHECK(o->target_logprob(s->be, dev, dtg, R, (int)V, dout, err));
        HS_CHECK(o->download(s->be, out + r0, dout, (size_t)R * sizeof(float), err));
    }
exit:
    return st;
}

/* The embedding's multiplier in the activations' dtype, as Gemma's reference
 * code and transformers round it (sqrt(3584) is 60 in bf16). */
static float embed_scale(const hs_model_config *c, hs_dtype dt) {
    const float v = c->embed_scale > 0.0f ? c->embed_scale : 1.0f;
    return dt == HS_DTYPE_BF16 ? hs_bf16_to_f32(hs_f32_to_bf16(v)) : v;
}

hs_status hs_forward(hs_session *s, const hs_batch *b, const hs_forward_params *fp_in, float *logits_out, hs_err *err) {
    hs_status st = HS_OK;
    hs_backend *be = s->be;
    const hs_backend_ops *o = be->ops;
    const hs_model_config *c = &s->cfg;
    hs_forward_params defaults = hs_forward_default_params();
    const hs_forward_params *fp = fp_in ? fp_in : &defaults;
    const hs_hooks *hk = fp->hooks;
    const hs_dtype dt = o->act_dtype(be);
    const int B = b->B, T = b->T, H = c->n_heads, Hk = c->n_kv_heads, dh = c->d_head, d = c->d_model, f = c->d_mlp;
    const int64_t n = (int64_t)B * T, V = c->n_vocab;
    const size_t es = s->es;
    int32_t *pos = malloc((size_t)n * sizeof *pos);
    float *tmp = malloc((size_t)dh * sizeof(float));
    hs_zedit ze;
    memset(&ze, 0, sizeof ze);
    if (!pos || !tmp) HS_FAIL(err, HS_ERR_OOM, "forward: out of memory");
    HS_CHECK(check_batch(s, b, pos, err));
    HS_CHECK(check_edits(s, b, fp, err));
    if (fp->kv) HS_CHECK(hs_kv_begin(fp->kv, s, b, fp, pos, err)); /* appending: the positions after the cache's */
    for (int r = 0; s->rope_long_rows && r < B; r++) { /* LongRoPE: each prompt's table, from its last position */
        int32_t top = 0;
        for (int64_t i = (int64_t)r * T; i < (int64_t)(r + 1) * T; i++)
            if ((!b->mask || b->mask[i]) && pos[i] > top) top = pos[i];
        s->rope_long_rows[r] = (uint8_t)hs_model_rope_long(c, (int64_t)top + 1);
    }
    HS_CHECK(hs_zedit_init(&ze, B, T, H, dh, fp->edits, fp->n_edits, err));
    HS_CHECK(o->upload(be, s->d_tokens, b->tokens, (size_t)n * 4, err));
    HS_CHECK(o->upload(be, s->d_pos, pos, (size_t)n * 4, err));
    if (b->mask) HS_CHECK(o->upload(be, s->d_mask, b->mask, (size_t)n * 4, err));
    if (fp->pattern_rows) {
        for (int r = 0; r < B; r++)
            if (fp->pattern_rows[r] < 0 || fp->pattern_rows[r] >= T)
                HS_FAIL(err, HS_ERR_INVALID_ARG, "forward: pattern_rows[%d] = %d outside [0, %d)", r,
                        fp->pattern_rows[r], T);
        HS_CHECK(o->upload(be, s->d_pattern_rows, fp->pattern_rows, (size_t)B * 4, err));
    }
    const int pat_T = fp->pattern_rows ? 1 : T; /* query rows per pattern */
    const int key_T = fp->kv && fp->kv_append ? hs_kv_cache_max_T(fp->kv) : T; /* keys per pattern row */

    if (fp->resid_start) /* also at layer 0: a patched embedding output */
        HS_CHECK(o->upload_f32(be, s->x, fp->resid_start, n * d, err));
    else if (fp->resid_start_dev)
        HS_CHECK(o->copy(be, s->x, fp->resid_start_dev, (size_t)n * d * es, err));
    else {
        HS_CHECK(o->embed(be, s->d_tokens, s->d_pos, s->tok_embd, c->learned_pos ? s->pos_embd : NULL, n, d,
                          embed_scale(c, dt), s->x, err));
        if (c->embed_norm) /* BLOOM: layer 0's resid_pre is the normed embedding */
            HS_CHECK(o->norm(be, c->norm, s->x, s->embed_ln_w, s->embed_ln_b, c->norm_eps, n, d, 1, s->x, err));
    }
    hs_attn_params ap = {.B = B, .T = T, .H = H, .H_kv = Hk, .d_head = dh, .scale = hs_model_attn_scale(c),
                         .softcap = c->attn_softcap, .alibi = s->d_alibi,
                         .q = s->q, .k = s->k, .v = s->v, .key_mask = b->mask ? s->d_mask : NULL, .z = s->z,
                         .pattern_rows = fp->pattern_rows ? s->d_pattern_rows : NULL};
    const int stop = fp->stop_layer ? fp->stop_layer : c->n_layers;
    for (int l = fp->start_layer; l < stop; l++) {
        const hs_session_layer *W = &s->layers[l];
        ap.window = hs_session_window(s, l, T);
        HS_CHECK(offer(s, hk, HS_HOOK_RESID_PRE, l, s->x, dt, 3, B, T, d, 0, err));
        const int given = z_given(fp, l), rope = c->rope != HS_ROPE_NONE;
        if (given && !hs_hooks_want(hk, HS_HOOK_Z, l))
            HS_FAIL(err, HS_ERR_INVALID_ARG, "forward: z_from_hook %d, but no hook gives z at layer %d",
                    fp->z_from_hook, l);
        if (given && hs_hooks_want(hk, HS_HOOK_PATTERN, l))
            HS_FAIL(err, HS_ERR_INVALID_ARG, "forward: layer %d's z comes from a hook (z_from_hook %d): no pattern",
                    l, fp->z_from_hook);
        const int need_q = !given || hs_hooks_want(hk, HS_HOOK_Q, l) || (rope && hs_hooks_want(hk, HS_HOOK_ROT_Q, l));
        const int need_k = !given || hs_hooks_want(hk, HS_HOOK_K, l) || (rope && hs_hooks_want(hk, HS_HOOK_ROT_K, l));
        const int need_v = !given || hs_hooks_want(hk, HS_HOOK_V, l);
        const int split = hs_session_split_wanted(fp, l); /* nodes reading copies of their own */
        if (need_q || need_k || need_v) HS_CHECK(hs_session_pre_norm(s, l, 0, s->x, n, s->xn, err));
        /* with q/k norms, hook_q and hook_k are q_proj's and k_proj's outputs; rot_q, rot_k come after the norms */
        void *q = c->qk_norm ? s->q_pre : s->q, *k = c->qk_norm ? s->k_pre : s->k, *qkv[3] = {q, k, s->v};
        const int need[3] = {need_q, need_k, need_v};
        for (int j = 0; j < 3; j++)
            if (need[j]) HS_CHECK(hs_session_project(s, l, j, n, 1, qkv[j], err));
        for (int j = 0; j < 3 && split; j++) /* then the split nodes' own heads over theirs (s->xn is free) */
            if (need[j]) HS_CHECK(hs_session_split_project(s, fp->inputs, l, j, B, T, qkv[j], err));
        if (need_q) HS_CHECK(offer(s, hk, HS_HOOK_Q, l, q, dt, 4, B, T, H, dh, err));
        if (need_k) HS_CHECK(offer(s, hk, HS_HOOK_K, l, k, dt, 4, B, T, Hk, dh, err));
        if (need_v) HS_CHECK(offer(s, hk, HS_HOOK_V, l, s->v, dt, 4, B, T, Hk, dh, err));
        if (c->qk_norm) HS_CHECK(hs_session_qk_norm(s, l, n, need_q, need_k, err));
        if (rope && need_q) {
            HS_CHECK(hs_session_rope(s, l, s->q, s->d_pos, B, T, H, err));
            HS_CHECK(offer(s, hk, HS_HOOK_ROT_Q, l, s->q, dt, 4, B, T, H, dh, err));
        }
        if (rope && need_k) {
            HS_CHECK(hs_session_rope(s, l, s->k, s->d_pos, B, T, Hk, err));
            HS_CHECK(offer(s, hk, HS_HOOK_ROT_K, l, s->k, dt, 4, B, T, Hk, dh, err));
        }
        if (!given) { /* the attention, with the layer's edits */
            ap.pattern = NULL;
            if (hs_hooks_want(hk, HS_HOOK_PATTERN, l)) {
                HS_CHECK(grow(s, (size_t)B * H * pat_T * key_T * sizeof(float), (void **)&s->d_pattern,
                              &s->pattern_bytes, err));
                ap.pattern = s->d_pattern;
            }
            hs_zedit_build(&ze, fp->head_scale ? fp->head_scale + (int64_t)l * B * H : NULL, fp->edits, fp->n_edits, l);
            ap.head_scale = NULL;
            ap.uniform = NULL;
            ap.set_idx = NULL;
            if (ze.use_scale) {
                HS_CHECK(o->upload(be, s->d_head_scale, ze.hscale, (size_t)B * H * sizeof(float), err));
                ap.head_scale = s->d_head_scale;
            }
            if (ze.use_uni) {
                HS_CHECK(o->upload(be, s->d_uniform, ze.uni, (size_t)B * H, err));
                ap.uniform = s->d_uniform;
            }
            if (ze.use_set) HS_CHECK(upload_sets(s, &ze, &ap, err));
            if (fp->kv) HS_CHECK(hs_kv_layer(fp->kv, s, l, fp->kv_append, &ap, err));
            HS_CHECK(o->attention(be, &ap, err));
            if (ze.use_post) HS_CHECK(apply_post_scales(s, &ze, tmp, err));
            /* The pattern is offered for reading: z has already been computed from it. */
            if (ap.pattern)
                HS_CHECK(offer(s, hk, HS_HOOK_PATTERN, l, ap.pattern, HS_DTYPE_F32, 4, B, H, pat_T, key_T, err));
        }
        HS_CHECK(offer(s, hk, HS_HOOK_Z, l, s->z, dt, 4, B, T, H, dh, err));
        HS_CHECK(o->matmul(be, s->z, W->wo, W->bo, n, d, H * dh, 0, c->post_norms ? s->raw : s->attn_out, err));
        if (c->post_norms) HS_CHECK(hs_session_post_norm(s, l, 0, n, s->attn_out, err));
        HS_CHECK(offer(s, hk, HS_HOOK_ATTN_OUT, l, s->attn_out, dt, 3, B, T, d, 0, err));
        if (!c->parallel_attn_mlp) { /* a parallel block's MLP reads resid_pre: no resid_mid */
            HS_CHECK(o->add(be, s->x, s->attn_out, n * d, err));
            HS_CHECK(offer(s, hk, HS_HOOK_RESID_MID, l, s->x, dt, 3, B, T, d, 0, err));
        }
        HS_CHECK(split && hs_session_split_node(fp->inputs, l, HS_INPUT_MLP, -1)
                     ? hs_session_split_mlp_in(s, fp->inputs, l, B, T, err)
                     : hs_session_pre_norm(s, l, 1, s->x, n, s->xn, err));
        HS_CHECK(o->matmul(be, s->xn, W->w_up, W->b_up, n, f, d, 0, s->up, err));
        if (hs_act_gated(c->act)) {
            HS_CHECK(o->matmul(be, s->xn, W->w_gate, NULL, n, f, d, 0, s->gate, err));
            HS_CHECK(offer(s, hk, HS_HOOK_MLP_PRE, l, s->gate, dt, 3, B, T, f, 0, err));
            HS_CHECK(offer(s, hk, HS_HOOK_MLP_PRE_LINEAR, l, s->up, dt, 3, B, T, f, 0, err));
        } else {
            HS_CHECK(offer(s, hk, HS_HOOK_MLP_PRE, l, s->up, dt, 3, B, T, f, 0, err));
        }
        HS_CHECK(o->act(be, c->act, s->gate, s->up, n * f, s->hid, err));
        HS_CHECK(offer(s, hk, HS_HOOK_MLP_POST, l, s->hid, dt, 3, B, T, f, 0, err));
        HS_CHECK(o->matmul(be, s->hid, W->w_down, W->b_down, n, d, f, 0, c->post_norms ? s->raw : s->mlp_out, err));
        if (c->post_norms) HS_CHECK(hs_session_post_norm(s, l, 1, n, s->mlp_out, err));
        HS_CHECK(offer(s, hk, HS_HOOK_MLP_OUT, l, s->mlp_out, dt, 3, B, T, d, 0, err));
        if (c->parallel_attn_mlp) HS_CHECK(o->add(be, s->x, s->attn_out, n * d, err));
        HS_CHECK(o->add(be, s->x, s->mlp_out, n * d, err));
        HS_CHECK(offer(s, hk, HS_HOOK_RESID_POST, l, s->x, dt, 3, B, T, d, 0, err));
    }
    if (fp->kv) hs_kv_end(fp->kv, b, fp->kv_append); /* every layer's keys are stored */
    int want_logits = fp->logits != HS_LOGITS_NONE && logits_out;
    if (stop < c->n_layers || (!want_logits && !fp->target_logprobs)) goto exit;
    HS_CHECK(o->norm(be, c->norm, s->x, s->lnf_w, s->lnf_b, c->norm_eps, n, d, 1, s->xn, err));
    if (fp->target_logprobs) HS_CHECK(target_logprobs(s, b, fp->target_logprobs, err));
    if (!want_logits) goto exit;
    if (fp->logits == HS_LOGITS_ALL) {
        HS_CHECK(grow(s, (size_t)(n * V) * es, &s->d_all_logits, &s->all_logits_bytes, err));
        HS_CHECK(o->matmul(be, s->xn, s->unembed, s->unembed_b, n, (int)V, d, 0, s->d_all_logits, err));
        HS_CHECK(hs_session_cap_logits(s, s->d_all_logits, n, err));
        HS_CHECK(o->download_f32(be, logits_out, s->d_all_logits, n * V, err));
    } else {
        /* One row per prompt, its last real token, gathered (into attn_out, free
         * by now) for one GEMM: B matrix-vector products would each read the
         * whole unembedding. */
        for (int r = 0; r < B; r++) {
            int last = T - 1;
            if (b->mask)
                while (last > 0 && !b->mask[(int64_t)r * T + last]) last--;
            const char *row = (const char *)s->xn + ((int64_t)r * T + last) * d * es;
            HS_CHECK(o->copy(be, (char *)s->attn_out + (int64_t)r * d * es, row, (size_t)d * es, err));
        }
        HS_CHECK(o->matmul(be, s->attn_out, s->unembed, s->unembed_b, B, (int)V, d, 0, s->logits, err));
        HS_CHECK(hs_session_cap_logits(s, s->logits, B, err));
        HS_CHECK(o->download_f32(be, logits_out, s->logits, (int64_t)B * V, err));
    }
exit:
    free(pos);
    free(tmp);
    hs_zedit_free(&ze);
    return st;
}
