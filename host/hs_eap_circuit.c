/* hs_eap_circuit: circuit evaluation on the edge graph (hs_eap.h). Per batch
 * of prompts:
 *   1. the corrupted forward keeps every upstream node's activation
 *      (hs_eap_graph.c) and gives the corrupted metric; a plain clean
 *      forward gives the clean one (and KL's reference);
 *   2. per circuit, a clean forward whose hooks take each upstream node's
 *      difference a(corrupt) - a(this run) as soon as it is computed, and
 *      whose split inputs add, for each downstream node v, the differences
 *      of the edges into v that the circuit cuts: per prompt one GEMM
 *      [nodes of the layer, U_l] x [U_l, T * d] with the circuit's cut
 *      matrix (1 = cut), in backend memory for every circuit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hs_eap_internal.h"
#include "hs_metric.h"

typedef struct {
    hs_eap_up a; /* the corrupted run against the intervened one */
    const hs_model_config *c;
    int L, Hk, P, V;
    /* backend: every circuit's cut matrices, `per` elements each: per layer
     * its attention's nodes [P - 1, readable(l, 0)] then its MLP
     * [1, readable(l, 1)], then the logits [1, U] */
    void *cut;
    int64_t per, *off; /* off [2 L + 1]: each block's offset in a circuit's */
    const char *cur;   /* the running circuit's matrices */
    void *y;           /* [B, P - 1, T, d]: the layer's attention nodes' additions */
    int y_layer;       /* the layer y holds, -1 none */
} circ_ctx;

hs_status hs_eap_circuit_check(const hs_model_config *c, const hs_eap_circuit_params *p, hs_err *err) {
    hs_status st = c ? hs_eap_model_check(c, "circuit evaluation", err) : HS_OK;
    if (st) return st;
    if (p->batch_rows < 1) return hs_err_set(err, HS_ERR_INVALID_ARG, "circuit evaluation: batch_rows must be >= 1");
    if (p->n_circuits < 1 || !p->circuits)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "circuit evaluation: no circuits given");
    for (int k = 0; k < p->n_circuits; k++)
        if (!p->circuits[k]) return hs_err_set(err, HS_ERR_INVALID_ARG, "circuit evaluation: circuit %d is NULL", k);
    return HS_OK;
}

/* Block offsets, and the cut matrices of every circuit uploaded. */
static hs_status upload_cuts(circ_ctx *x, const hs_eap_circuit_params *p, hs_err *err) {
    hs_backend *be = x->a.s->be;
    const hs_model_config *c = x->c;
    const int P = x->P, U = x->a.U, V = x->V;
    if (!(x->off = malloc((size_t)(2 * x->L + 2) * sizeof *x->off)))
        return hs_err_set(err, HS_ERR_OOM, "out of memory");
    int64_t o = 0;
    for (int l = 0; l < x->L; l++) {
        x->off[2 * l] = o, o += (int64_t)(P - 1) * hs_eap_readable(c, l, 0);
        x->off[2 * l + 1] = o, o += hs_eap_readable(c, l, 1);
    }
    x->off[2 * x->L] = o, x->per = o + U;
    float *h = malloc((size_t)x->per * sizeof *h);
    if (!h) return hs_err_set(err, HS_ERR_OOM, "out of memory for the cut matrices");
    hs_status st = be->ops->alloc(be, (size_t)(x->per * p->n_circuits * x->a.es), &x->cut, err);
    for (int k = 0; !st && k < p->n_circuits; k++) {
        const uint8_t *in = p->circuits[k];
        for (int l = 0; l < x->L; l++) {
            const int ua = hs_eap_readable(c, l, 0), um = hs_eap_readable(c, l, 1);
            for (int j = 0; j < P - 1; j++)
                for (int u = 0; u < ua; u++) h[x->off[2 * l] + (int64_t)j * ua + u] = !in[(int64_t)u * V + l * P + j];
            for (int u = 0; u < um; u++) h[x->off[2 * l + 1] + u] = !in[(int64_t)u * V + l * P + P - 1];
        }
        for (int u = 0; u < U; u++) h[x->off[2 * x->L] + u] = !in[(int64_t)u * V + V - 1];
        st = be->ops->upload_f32(be, (char *)x->cut + k * x->per * x->a.es, h, x->per, err);
    }
    free(h);
    return st;
}

/* out [B, rows, T, d] := per prompt the cut block [rows, cols] times its
 * first cols upstream differences [cols, T, d]. */
static hs_status cut_sum(circ_ctx *x, int64_t block, int rows, int cols, void *out, hs_err *err) {
    hs_backend *be = x->a.s->be;
    const int64_t K = x->a.node, es = x->a.es;
    for (int b = 0; b < x->a.B; b++) {
        hs_status st = be->ops->matmul_bwd(be, x->cur + x->off[block] * es, (const char *)x->a.up + b * x->a.U * K * es,
                                           rows, cols, (int)K, 0, (char *)out + b * rows * K * es, err);
        if (st) return st;
    }
    return HS_OK;
}

static hs_status node_input(void *user, int l, hs_input_kind kind, int head, hs_tensor *t, hs_err *err) {
    circ_ctx *x = user;
    hs_backend *be = x->a.s->be;
    const int H = x->a.H;
    hs_status st = HS_OK;
    if (kind == HS_INPUT_MLP) {
        HS_CHECK(cut_sum(x, 2 * l + 1, 1, hs_eap_readable(x->c, l, 1), x->a.rows, err));
    } else {
        if (x->y_layer != l) { /* the layer's first head: every attention node's addition at once */
            HS_CHECK(cut_sum(x, 2 * l, x->P - 1, hs_eap_readable(x->c, l, 0), x->y, err));
            x->y_layer = l;
        }
        const int j = kind == HS_INPUT_Q ? head : kind == HS_INPUT_K ? H + head : H + x->Hk + head;
        HS_CHECK(hs_eap_get_node(&x->a, x->y, x->P - 1, j, x->a.rows, err));
    }
    st = be->ops->axpy(be, t->data, 1.0f, x->a.rows, x->a.n * x->a.d, err);
exit:
    return st;
}

static int run_wants(void *user, hs_hook_point p, int l) {
    circ_ctx *x = user;
    return hs_eap_up_wants(&x->a, p, l) || (p == HS_HOOK_RESID_POST && l == x->L - 1);
}

/* The differences as the run computes them; the logits' cut edges at the end. */
static hs_status run_hook(void *user, hs_hook_point p, int l, hs_tensor *t, hs_err *err) {
    circ_ctx *x = user;
    hs_backend *be = x->a.s->be;
    if (p != HS_HOOK_RESID_POST) return hs_eap_up_diff(&x->a, p, l, t, err);
    hs_status st = cut_sum(x, 2 * x->L, 1, x->a.U, x->a.rows, err);
    return st ? st : be->ops->axpy(be, t->data, 1.0f, x->a.rows, x->a.n * x->a.d, err);
}

static void circ_free(circ_ctx *x) {
    hs_backend *be = x->a.s->be;
    if (x->cut) be->ops->free(be, x->cut);
    if (x->y) be->ops->free(be, x->y);
    hs_eap_up_free(&x->a);
    free(x->off);
}

hs_status hs_eap_circuit(hs_session *s, const hs_prompts *pr, const int32_t *corrupt, const hs_eap_circuit_params *p,
                         int p0, int n, float *metric, float *clean, float *corrupted, hs_err *err) {
    const hs_model_config *c = &s->cfg;
    hs_status st = hs_eap_circuit_check(c, p, err);
    if (st) return st;
    if ((st = hs_metric_check(c, pr, p->metric, err))) return hs_err_prefix(err, "circuit evaluation"), st;
    if (!corrupt) return hs_err_set(err, HS_ERR_INVALID_ARG, "circuit evaluation: no corrupted prompts given");
    if (p0 < 0 || n < 1 || p0 + n > pr->N)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "circuit evaluation: prompts [%d, %d) outside the %d prompts", p0,
                          p0 + n, pr->N);
    circ_ctx x = {.a = {.s = s,
                        .T = pr->T,
                        .H = c->n_heads,
                        .dh = c->d_head,
                        .d = c->d_model,
                        .U = hs_eap_n_upstream(c),
                        .es = (int64_t)s->es},
                  .c = c,
                  .L = c->n_layers,
                  .Hk = c->n_kv_heads,
                  .P = hs_eap_per_layer(c),
                  .V = hs_eap_n_downstream(c)};
    x.a.qd = (int64_t)x.a.H * x.a.dh, x.a.node = (int64_t)x.a.T * x.a.d;
    const int R = p->batch_rows < n ? p->batch_rows : n, T = pr->T, Vv = c->n_vocab, K = p->n_circuits;
    const int64_t rows = (int64_t)R * T;
    int32_t *mask = malloc((size_t)rows * sizeof *mask), *tg = malloc((size_t)rows * sizeof *tg);
    float *xlogits = malloc((size_t)R * Vv * sizeof(float)), *logits = malloc((size_t)R * Vv * sizeof(float)),
          *ref = malloc((size_t)R * Vv * sizeof(float)), *xlp = malloc((size_t)rows * sizeof(float)),
          *lp = malloc((size_t)rows * sizeof(float)), *scratch = malloc((size_t)Vv * sizeof(float));
    if (!mask || !tg || !xlogits || !logits || !ref || !xlp || !lp || !scratch)
        HS_FAIL(err, HS_ERR_OOM, "circuit evaluation: out of memory for %d prompts of %d tokens", R, T);
    HS_CHECK(hs_eap_up_alloc(&x.a, x.L, R, 0, err));
    HS_CHECK(s->be->ops->alloc(s->be, (size_t)((x.P - 1) * rows * x.a.d * x.a.es), &x.y, err));
    HS_CHECK(upload_cuts(&x, p, err));
    const hs_hooks keep = {.wants = hs_eap_up_wants, .fn = hs_eap_up_keep, .user = &x.a},
                   run = {.wants = run_wants, .fn = run_hook, .user = &x};
    const hs_input_hooks inputs = {.fn = node_input, .user = &x};
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = hs_metric_logits(p->metric);
    const int loss = p->metric == HS_METRIC_LOSS;
    for (int q0 = p0; q0 < p0 + n; q0 += R) {
        x.a.B = p0 + n - q0 < R ? p0 + n - q0 : R;
        x.a.n = (int64_t)x.a.B * T;
        hs_prompts one = *pr; /* this batch's prompts, for the masks and targets */
        one.N = x.a.B, one.tokens = pr->tokens + (int64_t)q0 * T, one.lengths = pr->lengths + q0;
        hs_prompts_mask_targets(&one, NULL, mask, tg);
        const hs_batch bc = {.B = x.a.B, .T = T, .tokens = one.tokens, .mask = mask, .targets = tg},
                       bx = {.B = x.a.B, .T = T, .tokens = corrupt + (int64_t)q0 * T, .mask = mask, .targets = tg};
        fp.hooks = &keep; /* 1. corrupted (its loss read against the clean prompt's next tokens), then clean */
        fp.inputs = NULL;
        fp.target_logprobs = loss ? xlp : NULL;
        HS_CHECK(hs_forward(s, &bx, &fp, xlogits, err));
        fp.hooks = NULL;
        fp.target_logprobs = loss ? lp : NULL;
        HS_CHECK(hs_forward(s, &bc, &fp, logits, err));
        for (int r = 0; r < x.a.B; r++) {
            const int g = q0 + r, i = q0 - p0 + r;
            const int64_t o = (int64_t)r * Vv;
            if (!loss) hs_log_softmax(logits + o, Vv, ref + o); /* KL's reference */
            if (clean)
                clean[i] = (float)hs_row_metric(p->metric, pr, g, logits + o, lp + (int64_t)r * T, Vv, ref + o, scratch);
            if (corrupted)
                corrupted[i] = (float)hs_row_metric(p->metric, pr, g, xlogits + o, xlp + (int64_t)r * T, Vv, ref + o,
                                                    scratch);
        }
        fp.hooks = &run; /* 2. each circuit */
        fp.inputs = &inputs;
        for (int k = 0; k < K; k++) {
            x.cur = (const char *)x.cut + k * x.per * x.a.es;
            x.y_layer = -1;
            HS_CHECK(hs_forward(s, &bc, &fp, logits, err));
            for (int r = 0; r < x.a.B; r++) {
                const int64_t o = (int64_t)r * Vv;
                metric[(int64_t)(q0 - p0 + r) * K + k] = (float)hs_row_metric(
                    p->metric, pr, q0 + r, logits + o, lp + (int64_t)r * T, Vv, ref + o, scratch);
            }
        }
    }
exit:
    if (st) hs_err_prefix(err, "circuit evaluation");
    circ_free(&x);
    free(mask), free(tg), free(xlogits), free(logits), free(ref), free(xlp), free(lp), free(scratch);
    return st;
}
