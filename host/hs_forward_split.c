/* hs_forward_split: split inputs (hs_input_hooks, hs_forward.h). Each wanted
 * node that reads the residual stream gets a copy of its own for the hook to
 * edit, and its projection is computed from that copy alone: a head's q (k,
 * v) is its rows of W_Q (W_K, W_V) applied to its normed copy, written over
 * its columns of the layer's wide projection. */
#include <stdint.h>

#include "hs_session_internal.h"

int hs_session_split_wanted(const hs_forward_params *fp, int l) {
    const hs_input_hooks *in = fp->inputs;
    return in && in->fn && (!in->wants || in->wants(in->user, l));
}

int hs_session_split_node(const hs_input_hooks *in, int l, hs_input_kind kind, int head) {
    return !in->node_wants || in->node_wants(in->user, l, kind, head);
}

static const char *kind_name(hs_input_kind k) {
    return k == HS_INPUT_Q ? "q_input" : k == HS_INPUT_K ? "k_input" : k == HS_INPUT_V ? "v_input" : "mlp_in";
}

/* s->split_x := s->x as the hook leaves it for node (kind, head) of layer l. */
static hs_status node_input(hs_session *s, const hs_input_hooks *in, int l, hs_input_kind kind, int head, int B,
                            int T, hs_err *err) {
    hs_backend *be = s->be;
    const size_t rows = (size_t)s->max_B * s->max_T, bytes = (size_t)B * T * s->cfg.d_model * s->es;
    hs_status st = HS_OK;
    if (!s->split_x) { /* first use: the session's largest batch */
        HS_CHECK(be->ops->alloc(be, rows * s->cfg.d_model * s->es, &s->split_x, err));
        s->bytes += (int64_t)(rows * s->cfg.d_model * s->es);
    }
    if (!s->split_y && kind != HS_INPUT_MLP) {
        HS_CHECK(be->ops->alloc(be, rows * s->cfg.d_head * s->es, &s->split_y, err));
        s->bytes += (int64_t)(rows * s->cfg.d_head * s->es);
    }
    HS_CHECK(be->ops->copy(be, s->split_x, s->x, bytes, err));
    hs_tensor t = {.data = s->split_x, .dtype = be->ops->act_dtype(be), .ndim = 3, .shape = {B, T, s->cfg.d_model},
                   .device = be->device};
    st = in->fn(in->user, l, kind, head, &t, err);
    if (st) hs_err_prefix(err, "input hook %s of head %d at layer %d", kind_name(kind), head, l);
exit:
    return st;
}

hs_status hs_session_split_project(hs_session *s, const hs_input_hooks *in, int l, int which, int B, int T, void *out,
                                   hs_err *err) {
    const hs_model_config *c = &s->cfg;
    const hs_backend_ops *o = s->be->ops;
    const hs_session_layer *W = &s->layers[l];
    const int heads = which ? c->n_kv_heads : c->n_heads, dh = c->d_head, d = c->d_model;
    const int64_t n = (int64_t)B * T;
    const size_t hb = (size_t)dh * s->es; /* one head's row */
    const char *w = which == 0 ? W->wq : which == 1 ? W->wk : W->wv;
    const char *b = which == 0 ? W->bq : which == 1 ? W->bk : W->bv;
    hs_status st = HS_OK;
    int any = 0;
    for (int h = 0; h < heads; h++) {
        if (!hs_session_split_node(in, l, (hs_input_kind)which, h)) continue; /* the wide projection's columns stand */
        any = 1;
        HS_CHECK(node_input(s, in, l, (hs_input_kind)which, h, B, T, err));
        HS_CHECK(hs_session_pre_norm(s, l, 0, s->split_x, n, s->xn, err));
        HS_CHECK(o->matmul(s->be, s->xn, w + (int64_t)h * dh * d * s->es, b ? b + h * hb : NULL, n, dh, d, 0,
                           s->split_y, err));
        HS_CHECK(o->copy_2d(s->be, (char *)out + h * hb, heads * hb, s->split_y, hb, hb, (size_t)n, err));
    }
    if (any && c->clip_qkv > 0.0f) st = o->clamp(s->be, out, n * heads * dh, c->clip_qkv, out, err);
exit:
    return st;
}

hs_status hs_session_split_mlp_in(hs_session *s, const hs_input_hooks *in, int l, int B, int T, hs_err *err) {
    hs_status st = node_input(s, in, l, HS_INPUT_MLP, -1, B, T, err);
    return st ? st : hs_session_pre_norm(s, l, 1, s->split_x, (int64_t)B * T, s->xn, err);
}
