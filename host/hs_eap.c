/* hs_eap: edge attribution patching (hs_eap.h). Per batch of prompts:
 *   1. the corrupted forward keeps every layer's z and MLP output and the
 *      input (resid_pre of layer 0) in backend memory;
 *   2. the clean forward's hooks turn each into the upstream differences
 *      a(corrupt) - a(clean), laid out [B, U, T, d] (hs_eap_graph.c), so
 *      that one prompt's nodes are the rows of a [U, T * d] matrix;
 *   3. the backward (hs_backward.h) at the clean input (EAP-IG: at each
 *      interpolated input) hands every layer's dM/dq, dk, dv, the MLP's input
 *      gradient and dM/d resid_post; a downstream head's input gradient is
 *      its slice of dq (dk, dv) times its rows of W_Q (W_K, W_V), back through
 *      the layer's norm, laid out [B, V_l, T, d] like the upstream ones;
 *   4. per prompt and layer one GEMM [U, T * d] x [T * d, V_l] gives every
 *      edge into the layer's nodes, summed in double on the host.
 * Biases cancel in the differences and do not enter input gradients. */
#include "headsweep/hs_eap.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_backward.h"
#include "hs_eap_internal.h"
#include "hs_metric.h"

hs_eap_params hs_eap_default_params(void) {
    return (hs_eap_params){.metric = HS_METRIC_LOGIT_DIFF, .batch_rows = 8, .ig_steps = 1};
}

int hs_eap_n_upstream(const hs_model_config *c) { return 1 + c->n_layers * (c->n_heads + 1); }

int hs_eap_n_downstream(const hs_model_config *c) { return c->n_layers * hs_eap_per_layer(c) + 1; }

void hs_eap_upstream_name(const hs_model_config *c, int u, char *buf, size_t n) {
    if (u <= 0) {
        snprintf(buf, n, "input");
        return;
    }
    const int l = (u - 1) / (c->n_heads + 1), h = (u - 1) % (c->n_heads + 1);
    if (h == c->n_heads) snprintf(buf, n, "MLP%d", l);
    else snprintf(buf, n, "L%dH%d", l, h);
}

void hs_eap_downstream_name(const hs_model_config *c, int v, char *buf, size_t n) {
    const int P = hs_eap_per_layer(c), H = c->n_heads, Hk = c->n_kv_heads;
    if (v >= c->n_layers * P) {
        snprintf(buf, n, "logits");
        return;
    }
    const int l = v / P, j = v % P;
    const char *kv = Hk == H ? "H" : "KV";
    if (j < H) snprintf(buf, n, "L%dH%d<q>", l, j);
    else if (j < H + Hk) snprintf(buf, n, "L%d%s%d<k>", l, kv, j - H);
    else if (j < H + 2 * Hk) snprintf(buf, n, "L%d%s%d<v>", l, kv, j - H - Hk);
    else snprintf(buf, n, "MLP%d", l);
}

int hs_eap_is_edge(const hs_model_config *c, int u, int v) {
    const int P = hs_eap_per_layer(c);
    if (u < 0 || u >= hs_eap_n_upstream(c) || v < 0 || v >= hs_eap_n_downstream(c)) return 0;
    if (v >= c->n_layers * P) return 1; /* the logits read everything */
    return u < hs_eap_readable(c, v / P, v % P == P - 1);
}

hs_status hs_eap_model_check(const hs_model_config *c, const char *what, hs_err *err) {
    if (c->post_norms)
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "%s: post-norm blocks add a normed output to the residual stream, not a sum of their "
                          "heads' results: not supported",
                          what);
    if (c->clip_qkv > 0.0f)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: clamped q/k/v projections (clip_qkv) are not supported", what);
    return HS_OK;
}

hs_status hs_eap_check(const hs_model_config *c, const hs_eap_params *p, hs_err *err) {
    hs_status st = c ? hs_eap_model_check(c, "edge attribution", err) : HS_OK;
    if (st) return st;
    if (p->batch_rows < 1) return hs_err_set(err, HS_ERR_INVALID_ARG, "edge attribution: batch_rows must be >= 1");
    if (p->ig_steps < 1 || p->ig_steps > 1000)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "edge attribution: ig_steps %d is not in 1..1000", p->ig_steps);
    if (p->metric == HS_METRIC_ACCURACY)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "edge attribution: metric accuracy has no gradient");
    if (p->metric == HS_METRIC_KL && p->ig_steps == 1)
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "edge attribution: metric kl has zero gradient at the clean run: use ig_steps > 1 (EAP-IG)");
    if (p->metric != HS_METRIC_LOGIT_DIFF && p->metric != HS_METRIC_LOGPROB && p->metric != HS_METRIC_LOSS &&
        p->metric != HS_METRIC_KL)
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "edge attribution: metric %s has no gradient to attribute; use logit_diff, logprob, loss, "
                          "or kl with ig_steps > 1",
                          hs_metric_name(p->metric));
    return HS_OK;
}

typedef struct {
    hs_eap_up a; /* the upstream differences: the corrupted run against the clean one */
    const hs_model_config *c;
    int L, Hk, V, P, steps;
    /* backend: EAP-IG's interpolated input [n, d]; one layer's downstream
     * gradients [B, P + 1, T, d] (+1: the logits); scratch */
    void *mix, *down, *rows2, *score;
    float *sh;      /* host [U, P + 1]: one prompt's GEMM */
    double *acc;    /* host [B, U, V]: the batch's scores, summed over the steps */
    double *factor; /* [B] dM/d(seeded quantity) / steps */
} eap_ctx;

/* ---- 3 and 4: the downstream gradients and the scores -------------------- */

/* Node j of the layer's downstream buffer := the gradient at the residual
 * stream that heads of a projection read: g [n, heads, dh] at the
 * projection's output, head h, through its rows of w and the layer's norm. */
static hs_status head_input(eap_ctx *x, const hs_bwd_layer *gl, int l, int j, const void *g, int heads, int h,
                            const void *w, hs_err *err) {
    hs_session *s = x->a.s;
    hs_status st = hs_eap_gather_head(&x->a, g, heads, h, err);
    if (!st)
        st = s->be->ops->matmul_bwd(s->be, x->a.head, (const char *)w + (int64_t)h * x->a.dh * x->a.d * x->a.es,
                                    x->a.n, x->a.dh, x->a.d, 0, x->rows2, err);
    if (!st) st = hs_bwd_pre_norm(s, l, 0, gl->x, x->a.n, x->rows2, 0, x->a.rows, err);
    if (!st) st = hs_eap_put_node(&x->a, x->down, x->P + 1, j, x->a.rows, err);
    return st;
}

static hs_status visit(void *user, int l, const hs_bwd_layer *gl, hs_err *err) {
    eap_ctx *x = user;
    hs_session *s = x->a.s;
    const hs_backend_ops *o = s->be->ops;
    const hs_session_layer *W = &s->layers[l];
    const int H = x->a.H, Hk = x->Hk, P = x->P, top = l == x->L - 1;
    hs_status st = HS_OK;
    for (int h = 0; h < H; h++) HS_CHECK(head_input(x, gl, l, h, gl->dq, H, h, W->wq, err));
    for (int h = 0; h < Hk; h++) HS_CHECK(head_input(x, gl, l, H + h, gl->dk, Hk, h, W->wk, err));
    for (int h = 0; h < Hk; h++) HS_CHECK(head_input(x, gl, l, H + Hk + h, gl->dv, Hk, h, W->wv, err));
    HS_CHECK(hs_eap_put_node(&x->a, x->down, P + 1, P - 1, gl->g_mlp_in, err));
    if (top) HS_CHECK(hs_eap_put_node(&x->a, x->down, P + 1, P, gl->g_post, err));
    /* per prompt: every upstream node the layer's nodes can read (the logits: all) */
    const int M = top ? x->a.U : hs_eap_readable(x->c, l, 1), N = P + top;
    const int64_t K = x->a.node;
    for (int b = 0; b < x->a.B; b++) {
        HS_CHECK(o->matmul(s->be, (const char *)x->a.up + b * x->a.U * K * x->a.es,
                           (const char *)x->down + b * (P + 1) * K * x->a.es, NULL, M, N, (int)K, 0, x->score, err));
        HS_CHECK(o->download_f32(s->be, x->sh, x->score, (int64_t)M * N, err));
        double *acc = x->acc + (int64_t)b * x->a.U * x->V;
        for (int j = 0; j < N; j++) { /* the column's edges: the first `reads` upstream nodes */
            const int v = j == P ? x->V - 1 : l * P + j, reads = j == P ? x->a.U : hs_eap_readable(x->c, l, j == P - 1);
            for (int u = 0; u < reads; u++) acc[(int64_t)u * x->V + v] += x->factor[b] * x->sh[u * N + j];
        }
    }
exit:
    return st;
}

static void eap_free(eap_ctx *x) {
    hs_backend *be = x->a.s->be;
    void *bufs[] = {x->mix, x->down, x->rows2, x->score};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i]) be->ops->free(be, bufs[i]);
    hs_eap_up_free(&x->a);
    free(x->sh), free(x->acc), free(x->factor);
}

static hs_status eap_alloc(eap_ctx *x, int R, hs_err *err) {
    hs_backend *be = x->a.s->be;
    const int64_t n = (int64_t)R * x->a.T, es = x->a.es, d = x->a.d;
    hs_status st = hs_eap_up_alloc(&x->a, x->L, R, x->steps > 1, err); /* EAP-IG: and the clean input */
    if (st) return st; /* prefixed */
    if (x->steps > 1) st = be->ops->alloc(be, (size_t)(n * d * es), &x->mix, err);
    if (!st) st = be->ops->alloc(be, (size_t)((x->P + 1) * n * d * es), &x->down, err);
    if (!st) st = be->ops->alloc(be, (size_t)(n * d * es), &x->rows2, err);
    if (!st) st = be->ops->alloc(be, (size_t)((int64_t)x->a.U * (x->P + 1) * es), &x->score, err);
    if (st) return hs_err_prefix(err, "buffers for %d prompts of %d tokens", R, x->a.T), st;
    x->sh = malloc((size_t)x->a.U * (x->P + 1) * sizeof *x->sh);
    x->acc = malloc((size_t)R * x->a.U * x->V * sizeof *x->acc);
    x->factor = malloc((size_t)R * sizeof *x->factor);
    if (!x->sh || !x->acc || !x->factor)
        return hs_err_set(err, HS_ERR_OOM, "out of memory for %d prompts' scores", R);
    return HS_OK;
}

/* The metric's gradient seeded for the pass just run (logits [B, V] of it). */
static hs_status seed(eap_ctx *x, const hs_prompts *pr, const hs_eap_params *p, int p0, const hs_batch *b,
                      float *logits, const float *clean_logp, float *scratch, hs_err *err) {
    if (p->metric == HS_METRIC_LOSS) return hs_bwd_seed_nll(x->a.s, b, b->targets, err);
    hs_metric_dlogits(p->metric, pr, p0, b->B, logits, x->c->n_vocab, clean_logp, logits, scratch); /* in place */
    return hs_bwd_seed_last(x->a.s, b, logits, err);
}

/* Host buffers of one batch: logits and target log-probs of the corrupted
 * and the clean pass, the clean distribution (KL's reference), the metrics. */
typedef struct {
    float *xlogits, *logits, *clean_logp, *xlp, *lp, *scratch;
    double *m_clean, *m_corrupt;
} eap_host;

hs_status hs_eap_scores(hs_session *s, const hs_prompts *pr, const int32_t *corrupt, const hs_eap_params *p, int p0,
                        int n, double *sum, double *clean_sum, double *corrupt_sum, hs_err *err) {
    const hs_model_config *c = &s->cfg;
    hs_status st = hs_eap_check(c, p, err);
    if (st) return st;
    if ((st = hs_eap_check_prompts(c, pr, corrupt, p->metric, p0, n, "edge attribution", err))) return st;
    eap_ctx x = {.a = hs_eap_up_shape(s, pr->T),
                 .c = c,
                 .L = c->n_layers,
                 .Hk = c->n_kv_heads,
                 .V = hs_eap_n_downstream(c),
                 .P = hs_eap_per_layer(c),
                 .steps = p->ig_steps};
    const int R = p->batch_rows < n ? p->batch_rows : n, T = pr->T, Vv = c->n_vocab;
    const int64_t rows = (int64_t)R * T;
    int32_t *mask = malloc((size_t)rows * sizeof *mask), *tg = malloc((size_t)rows * sizeof *tg);
    eap_host h = {.xlogits = malloc((size_t)R * Vv * sizeof(float)),
                  .logits = malloc((size_t)R * Vv * sizeof(float)),
                  .clean_logp = malloc((size_t)R * Vv * sizeof(float)),
                  .xlp = malloc((size_t)rows * sizeof(float)),
                  .lp = malloc((size_t)rows * sizeof(float)),
                  .scratch = malloc((size_t)Vv * sizeof(float)),
                  .m_clean = malloc((size_t)R * sizeof(double)),
                  .m_corrupt = malloc((size_t)R * sizeof(double))};
    if (!mask || !tg || !h.xlogits || !h.logits || !h.clean_logp || !h.xlp || !h.lp || !h.scratch || !h.m_clean ||
        !h.m_corrupt)
        HS_FAIL(err, HS_ERR_OOM, "edge attribution: out of memory for %d prompts of %d tokens", R, T);
    HS_CHECK(eap_alloc(&x, R, err));
    const hs_hooks keep_corrupt = {.wants = hs_eap_up_wants, .fn = hs_eap_up_keep, .user = &x.a},
                   diffs = {.wants = hs_eap_up_wants, .fn = hs_eap_up_diff, .user = &x.a};
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = hs_metric_logits(p->metric);
    for (int q0 = p0; q0 < p0 + n; q0 += R) {
        x.a.B = p0 + n - q0 < R ? p0 + n - q0 : R;
        x.a.n = (int64_t)x.a.B * T;
        hs_batch bc, bx;
        hs_eap_batches(pr, corrupt, q0, x.a.B, mask, tg, &bc, &bx);
        /* 1. corrupted (its loss is read against the clean prompt's next tokens) */
        fp.hooks = &keep_corrupt;
        fp.target_logprobs = p->metric == HS_METRIC_LOSS ? h.xlp : NULL;
        HS_CHECK(hs_forward(s, &bx, &fp, h.xlogits, err));
        /* 2. clean, with the differences; for EAP the pass the backward starts from */
        fp.hooks = &diffs;
        fp.target_logprobs = p->metric == HS_METRIC_LOSS ? h.lp : NULL;
        HS_CHECK(x.steps == 1 ? hs_bwd_forward(s, &bc, &fp, h.logits, err) : hs_forward(s, &bc, &fp, h.logits, err));
        for (int r = 0; r < x.a.B; r++) {
            const int g = q0 + r, len = pr->lengths[g];
            const int64_t o = (int64_t)r * Vv;
            if (p->metric != HS_METRIC_LOSS) hs_log_softmax(h.logits + o, Vv, h.clean_logp + o); /* KL's reference */
            h.m_clean[r] =
                hs_row_metric(p->metric, pr, g, h.logits + o, h.lp + (int64_t)r * T, Vv, h.clean_logp + o, h.scratch);
            h.m_corrupt[r] =
                hs_row_metric(p->metric, pr, g, h.xlogits + o, h.xlp + (int64_t)r * T, Vv, h.clean_logp + o, h.scratch);
            x.factor[r] = (p->metric != HS_METRIC_LOSS ? 1.0 : len > 1 ? 1.0 / (len - 1) : 0.0) / x.steps;
        }
        memset(x.acc, 0, (size_t)x.a.B * x.a.U * x.V * sizeof *x.acc);
        /* 3 and 4, at the clean input (EAP) or at each of EAP-IG's inputs */
        if (x.steps > 1) /* clean - corrupt */
            HS_CHECK(s->be->ops->axpy(s->be, x.a.input, -1.0f, x.a.ec, x.a.n * x.a.d, err));
        for (int k = 1; k <= x.steps; k++) {
            if (x.steps > 1) {
                hs_forward_params fk = fp;
                fk.hooks = NULL;
                if (k < x.steps) { /* corrupt + k/m (clean - corrupt); at k = m the clean input */
                    HS_CHECK(s->be->ops->copy(s->be, x.mix, x.a.ec, (size_t)(x.a.n * x.a.d * x.a.es), err));
                    HS_CHECK(s->be->ops->axpy(s->be, x.mix, (float)k / x.steps, x.a.input, x.a.n * x.a.d, err));
                    fk.resid_start_dev = x.mix;
                }
                HS_CHECK(hs_bwd_forward(s, &bc, &fk, h.logits, err));
            }
            HS_CHECK(seed(&x, pr, p, q0, &bc, h.logits, h.clean_logp, h.scratch, err));
            HS_CHECK(hs_bwd_walk(s, &bc, NULL, HS_BWD_ATTN | HS_BWD_MLP_IN, visit, &x, err));
        }
        for (int r = 0; r < x.a.B; r++) { /* in prompt order */
            const double *acc = x.acc + (int64_t)r * x.a.U * x.V;
            for (int64_t i = 0; i < (int64_t)x.a.U * x.V; i++) sum[i] += acc[i];
            *clean_sum += h.m_clean[r];
            *corrupt_sum += h.m_corrupt[r];
        }
    }
exit:
    if (st) hs_err_prefix(err, "edge attribution");
    eap_free(&x);
    free(mask), free(tg), free(h.xlogits), free(h.logits), free(h.clean_logp), free(h.xlp), free(h.lp);
    free(h.scratch), free(h.m_clean), free(h.m_corrupt);
    return st;
}
