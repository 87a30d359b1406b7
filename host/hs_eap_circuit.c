/* hs_eap_circuit: circuit evaluation on the edge graph (hs_eap.h).
 *
 * Node v of the intervened run reads base_v + sum over u of c_uv D_u, where
 * D_u = a_u(corrupt) - a_u(this run). Two bases give the same input: this
 * run's stream with c = 1 on the edges the circuit cuts, or the corrupted
 * run's stream (the sum of every upstream node's corrupted output) with
 * c = -1 on the edges it keeps. Each node takes the one with fewer terms, so
 *   - a node none of whose edges is cut reads the stream as usual (CLEAN);
 *   - a node whose every edge is cut reads the corrupted run's stream: its
 *     q, k or v is the corrupted run's, kept, its MLP reads the corrupted
 *     stream, the logits are the corrupted run's (CORRUPT);
 *   - only the others (MIXED) read a copy of their own (split inputs) plus
 *     a GEMM of their coefficients with the differences they name.
 * A circuit of every edge is the clean run and an empty one the corrupted
 * run, bit for bit, and small or large circuits cost little more than a
 * forward. Per batch of prompts:
 *   1. the corrupted forward keeps every upstream activation (hs_eap_graph.c)
 *      and its streams and q, k, v; a plain clean forward gives the clean
 *      metric (and KL's reference);
 *   2. per circuit, a clean forward whose hooks take the differences the
 *      circuit's MIXED nodes name, laid out node-major [U, B, T, d], as each
 *      is computed; a block of nodes (a layer's attention, its MLP, the
 *      logits) adds them by one GEMM per run of consecutive upstream nodes,
 *      [MIXED nodes, run] x [run, B T d]. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hs_eap_internal.h"
#include "hs_metric.h"

enum { CLEAN = 0, CORRUPT, MIX_RUN, MIX_CORRUPT }; /* a node's input; MIX_*: the base of its sum */

/* Columns of a block with a coefficient in some MIXED row, in runs of
 * consecutive upstream nodes (gaps of up to GAP merged: fewer, larger GEMMs). */
#define GAP 4

typedef struct {
    int R;               /* MIXED nodes: Y's rows, in block order */
    int n_runs, *u0, *len;
    int64_t *off;        /* each run's coefficients [R, len] in the circuit's buffer (elements) */
} blk;

typedef struct {
    uint8_t *mode;  /* [V] */
    int *slot;      /* [V] a MIXED node's row in its block's Y */
    uint8_t *need;  /* [U] the differences some run reads */
    uint8_t *layer; /* [L] bit 0: a MIXED attention node or a non-CLEAN MLP (split inputs); bit 1: a CORRUPT q/k/v */
    blk *b;         /* [2 L + 1]: layer l's attention (2 l), its MLP (2 l + 1), the logits (2 L) */
    void *coef;     /* backend */
} circ;

typedef struct {
    hs_eap_up a; /* node-major differences, the corrupted run against the intervened one */
    const hs_model_config *c;
    int L, Hk, P, V, K;
    int64_t kd;
    circ *cs;
    const circ *cur;
    /* backend: the corrupted run's resid_pre [L, n, d], resid_mid [L, n, d]
     * (sequential blocks), final resid_post [n, d], q [L, n, qd], k and v
     * [L, n, kd]; a block's additions Y [P - 1, n, d] */
    void *xpre, *xmid, *xpost, *qc, *kc, *vc, *y;
    int y_layer; /* the layer y holds, -1 none */
} circ_ctx;

hs_status hs_eap_circuit_check(const hs_model_config *c, const hs_eap_circuit_params *p, hs_err *err) {
    hs_status st = c ? hs_eap_model_check(c, "circuit evaluation", err) : HS_OK;
    if (st || !p) return st;
    if (p->batch_rows < 1) return hs_err_set(err, HS_ERR_INVALID_ARG, "circuit evaluation: batch_rows must be >= 1");
    if (p->n_circuits < 1 || !p->circuits)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "circuit evaluation: no circuits given");
    for (int k = 0; k < p->n_circuits; k++)
        if (!p->circuits[k]) return hs_err_set(err, HS_ERR_INVALID_ARG, "circuit evaluation: circuit %d is NULL", k);
    return HS_OK;
}

/* ---- the circuits' plans ------------------------------------------------- */

/* Block b's first downstream node, node count and readable upstream nodes. */
static void block_shape(const circ_ctx *x, int b, int *v0, int *nv, int *ur) {
    const int l = b / 2;
    if (b == 2 * x->L) *v0 = x->V - 1, *nv = 1, *ur = x->a.U;
    else if (b % 2 == 0) *v0 = l * x->P, *nv = x->P - 1, *ur = hs_eap_readable(x->c, l, 0);
    else *v0 = l * x->P + x->P - 1, *nv = 1, *ur = hs_eap_readable(x->c, l, 1);
}

/* Modes, runs and coefficients of circuit `in` [U, V]; coefficients appended to *h (host, grown). */
static hs_status plan_circuit(circ_ctx *x, const uint8_t *in, circ *c, float **h, int64_t *nh, int64_t *cap,
                              hs_err *err) {
    const int U = x->a.U, V = x->V, NB = 2 * x->L + 1;
    uint8_t *col = malloc((size_t)U);
    int *ru0 = malloc((size_t)U * sizeof *ru0), *rlen = malloc((size_t)U * sizeof *rlen); /* a block's runs */
    c->mode = calloc((size_t)V, 1), c->slot = malloc((size_t)V * sizeof *c->slot), c->need = calloc((size_t)U, 1);
    c->layer = calloc((size_t)x->L, 1), c->b = calloc((size_t)NB, sizeof *c->b);
    if (!col || !ru0 || !rlen || !c->mode || !c->slot || !c->need || !c->layer || !c->b) goto oom;
    for (int b = 0; b < NB; b++) {
        int v0, nv, ur;
        block_shape(x, b, &v0, &nv, &ur);
        blk *B = &c->b[b];
        memset(col, 0, (size_t)ur);
        for (int v = v0; v < v0 + nv; v++) {
            int cut = 0;
            for (int u = 0; u < ur; u++) cut += !in[(int64_t)u * V + v];
            const int mode = cut == 0 ? CLEAN : cut == ur ? CORRUPT : 2 * cut <= ur ? MIX_RUN : MIX_CORRUPT;
            c->mode[v] = (uint8_t)mode, c->slot[v] = mode >= MIX_RUN ? B->R++ : -1;
            for (int u = 0; mode >= MIX_RUN && u < ur; u++) col[u] |= !in[(int64_t)u * V + v] == (mode == MIX_RUN);
            if (b < 2 * x->L && (mode >= MIX_RUN || (b % 2 && mode == CORRUPT))) c->layer[b / 2] |= 1;
            if (b < 2 * x->L && b % 2 == 0 && mode == CORRUPT) c->layer[b / 2] |= 2;
        }
        int n_runs = 0;
        for (int u = 0; u < ur;) { /* runs of the marked columns, short gaps merged */
            while (u < ur && !col[u]) u++;
            if (u == ur) break;
            int e = u + 1;
            for (int g = e; g < ur && g <= e + GAP; g++)
                if (col[g]) e = g + 1;
            ru0[n_runs] = u, rlen[n_runs++] = e - u;
            u = e;
        }
        if (!n_runs) continue;
        B->n_runs = n_runs;
        B->u0 = malloc((size_t)n_runs * sizeof *B->u0), B->len = malloc((size_t)n_runs * sizeof *B->len);
        B->off = malloc((size_t)n_runs * sizeof *B->off);
        if (!B->u0 || !B->len || !B->off) goto oom;
        for (int k = 0; k < n_runs; k++) {
            const int u = B->u0[k] = ru0[k], len = B->len[k] = rlen[k];
            B->off[k] = *nh;
            if (*nh + (int64_t)B->R * len > *cap) {
                const int64_t c2 = 2 * (*cap + (int64_t)B->R * len);
                float *g = realloc(*h, (size_t)c2 * sizeof *g);
                if (!g) goto oom;
                *h = g, *cap = c2;
            }
            for (int v = v0; v < v0 + nv; v++) { /* the run's coefficients [R, len] */
                if (c->slot[v] < 0) continue;
                float *row = *h + *nh + (int64_t)c->slot[v] * len;
                for (int w = u; w < u + len; w++) {
                    const int is_cut = !in[(int64_t)w * V + v];
                    row[w - u] = c->mode[v] == MIX_RUN ? (float)is_cut : -(float)!is_cut;
                }
            }
            *nh += (int64_t)B->R * len;
            memset(c->need + u, 1, (size_t)len);
        }
    }
    free(col), free(ru0), free(rlen);
    return HS_OK;
oom:
    free(col), free(ru0), free(rlen);
    return hs_err_set(err, HS_ERR_OOM, "out of memory for the circuits' plans");
}

static void free_circuit(hs_backend *be, circ *c, int NB) {
    for (int b = 0; c->b && b < NB; b++) free(c->b[b].u0), free(c->b[b].len), free(c->b[b].off);
    free(c->mode), free(c->slot), free(c->need), free(c->layer), free(c->b);
    if (c->coef) be->ops->free(be, c->coef);
}

static hs_status plan_all(circ_ctx *x, const hs_eap_circuit_params *p, hs_err *err) {
    hs_backend *be = x->a.s->be;
    if (!(x->cs = calloc((size_t)p->n_circuits, sizeof *x->cs))) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    hs_status st = HS_OK;
    float *h = NULL;
    for (int k = 0; k < p->n_circuits && !st; k++) {
        int64_t nh = 0, cap = 0;
        st = plan_circuit(x, p->circuits[k], &x->cs[k], &h, &nh, &cap, err);
        if (!st && nh) st = be->ops->alloc(be, (size_t)(nh * x->a.es), &x->cs[k].coef, err);
        if (!st && nh) st = be->ops->upload_f32(be, x->cs[k].coef, h, nh, err);
    }
    free(h);
    return st;
}

/* ---- the intervened run --------------------------------------------------- */

/* Y [R, n, d] := block b's MIXED rows' sums over its runs. */
static hs_status block_sums(circ_ctx *x, int b, hs_err *err) {
    hs_backend *be = x->a.s->be;
    const blk *B = &x->cur->b[b];
    const int64_t nd = x->a.n * x->a.d, es = x->a.es;
    for (int k = 0; k < B->n_runs; k++) {
        hs_status st = be->ops->matmul_bwd(be, (const char *)x->cur->coef + B->off[k] * es,
                                           (const char *)x->a.up + B->u0[k] * nd * es, B->R, B->len[k], (int)nd, k > 0,
                                           x->y, err);
        if (st) return st;
    }
    return HS_OK;
}

/* dst [n, d] := the node's input: base (this run's stream as given, or the corrupted one) plus its row of Y. */
static hs_status node_sum(circ_ctx *x, int v, void *dst, const void *corrupt_base, hs_err *err) {
    hs_backend *be = x->a.s->be;
    const size_t bytes = (size_t)(x->a.n * x->a.d * x->a.es);
    const int mode = x->cur->mode[v];
    hs_status st = mode == CORRUPT || mode == MIX_CORRUPT ? be->ops->copy(be, dst, corrupt_base, bytes, err) : HS_OK;
    if (!st && mode >= MIX_RUN)
        st = be->ops->axpy(be, dst, 1.0f, (const char *)x->y + x->cur->slot[v] * x->a.n * x->a.d * x->a.es,
                           x->a.n * x->a.d, err);
    return st;
}

static int layer_wants(void *user, int l) { return ((circ_ctx *)user)->cur->layer[l] & 1; }

static int node_wants(void *user, int l, hs_input_kind kind, int head) {
    const circ_ctx *x = user;
    if (kind == HS_INPUT_MLP) return x->cur->mode[l * x->P + x->P - 1] != CLEAN;
    const int j = kind == HS_INPUT_Q ? head : kind == HS_INPUT_K ? x->a.H + head : x->a.H + x->Hk + head;
    return x->cur->mode[l * x->P + j] >= MIX_RUN;
}

static hs_status node_input(void *user, int l, hs_input_kind kind, int head, hs_tensor *t, hs_err *err) {
    circ_ctx *x = user;
    const int64_t nd = x->a.n * x->a.d, es = x->a.es;
    hs_status st = HS_OK;
    if (kind == HS_INPUT_MLP) {
        const int v = l * x->P + x->P - 1;
        if (x->cur->mode[v] >= MIX_RUN) HS_CHECK(block_sums(x, 2 * l + 1, err));
        const void *base = (const char *)(x->c->parallel_attn_mlp ? x->xpre : x->xmid) + l * nd * es;
        return node_sum(x, v, t->data, base, err);
    }
    if (x->y_layer != l) { /* the layer's first MIXED head: every MIXED attention node's sum at once */
        HS_CHECK(block_sums(x, 2 * l, err));
        x->y_layer = l;
    }
    const int j = kind == HS_INPUT_Q ? head : kind == HS_INPUT_K ? x->a.H + head : x->a.H + x->Hk + head;
    st = node_sum(x, l * x->P + j, t->data, (const char *)x->xpre + l * nd * es, err);
exit:
    return st;
}

static int run_wants(void *user, hs_hook_point p, int l) {
    circ_ctx *x = user;
    if (p == HS_HOOK_Q || p == HS_HOOK_K || p == HS_HOOK_V) return x->cur->layer[l] & 2;
    return hs_eap_up_wants(&x->a, p, l) || (p == HS_HOOK_RESID_POST && l == x->L - 1);
}

/* CORRUPT heads' q, k or v: the corrupted run's columns. */
static hs_status corrupt_heads(circ_ctx *x, int l, int which, hs_tensor *t, hs_err *err) {
    hs_backend *be = x->a.s->be;
    const int heads = which ? x->Hk : x->a.H, j0 = which == 0 ? 0 : which == 1 ? x->a.H : x->a.H + x->Hk;
    const size_t w = (size_t)(x->a.dh * x->a.es), pitch = heads * w;
    const char *src = which == 0 ? x->qc : which == 1 ? x->kc : x->vc;
    src += (size_t)l * x->a.n * pitch;
    for (int h = 0; h < heads; h++) {
        if (x->cur->mode[l * x->P + j0 + h] != CORRUPT) continue;
        hs_status st = be->ops->copy_2d(be, (char *)t->data + h * w, pitch, src + h * w, pitch, w, (size_t)x->a.n, err);
        if (st) return st;
    }
    return HS_OK;
}

static hs_status run_hook(void *user, hs_hook_point p, int l, hs_tensor *t, hs_err *err) {
    circ_ctx *x = user;
    if (p == HS_HOOK_Q || p == HS_HOOK_K || p == HS_HOOK_V) return corrupt_heads(x, l, p - HS_HOOK_Q, t, err);
    if (p != HS_HOOK_RESID_POST) return hs_eap_up_diff(&x->a, p, l, t, err);
    hs_status st = x->cur->mode[x->V - 1] >= MIX_RUN ? block_sums(x, 2 * x->L, err) : HS_OK;
    return st ? st : node_sum(x, x->V - 1, t->data, x->xpost, err);
}

/* The corrupted run: the upstream activations, and the streams and q, k, v each node may read instead. */
static int keep_wants(void *user, hs_hook_point p, int l) {
    circ_ctx *x = user;
    return hs_eap_up_wants(&x->a, p, l) || p == HS_HOOK_RESID_PRE || p == HS_HOOK_Q || p == HS_HOOK_K ||
           p == HS_HOOK_V || (p == HS_HOOK_RESID_MID && !x->c->parallel_attn_mlp) ||
           (p == HS_HOOK_RESID_POST && l == x->L - 1);
}

static hs_status keep_hook(void *user, hs_hook_point p, int l, hs_tensor *t, hs_err *err) {
    circ_ctx *x = user;
    hs_backend *be = x->a.s->be;
    const int64_t n = x->a.n, es = x->a.es, d = x->a.d;
    if (p == HS_HOOK_Z || p == HS_HOOK_MLP_OUT) return hs_eap_up_keep(&x->a, p, l, t, err);
    if (p == HS_HOOK_RESID_PRE && l == 0) {
        hs_status st = hs_eap_up_keep(&x->a, p, l, t, err);
        if (st) return st;
    }
    const int64_t w = p == HS_HOOK_Q ? x->a.qd : p == HS_HOOK_K || p == HS_HOOK_V ? x->kd : d;
    char *dst = p == HS_HOOK_RESID_PRE ? x->xpre : p == HS_HOOK_RESID_MID ? x->xmid : p == HS_HOOK_Q ? x->qc
              : p == HS_HOOK_K ? x->kc : p == HS_HOOK_V ? x->vc : x->xpost;
    if (p != HS_HOOK_RESID_POST) dst += l * n * w * es;
    return be->ops->copy(be, dst, t->data, (size_t)(n * w * es), err);
}

static hs_status ctx_alloc(circ_ctx *x, int R, hs_err *err) {
    hs_backend *be = x->a.s->be;
    const int64_t n = (int64_t)R * x->a.T, es = x->a.es, d = x->a.d, L = x->L;
    hs_status st = hs_eap_up_alloc(&x->a, x->L, R, 0, err); /* prefixes its own errors */
    if (st) return st;
    struct {
        void **p;
        int64_t bytes;
    } want[] = {{&x->xpre, L * n * d * es},
                {&x->xmid, !x->c->parallel_attn_mlp * L * n * d * es},
                {&x->xpost, n * d * es},
                {&x->qc, L * n * x->a.qd * es},
                {&x->kc, L * n * x->kd * es},
                {&x->vc, L * n * x->kd * es},
                {&x->y, (x->P - 1) * n * d * es}};
    for (size_t i = 0; !st && i < sizeof want / sizeof *want; i++) /* st is HS_OK here */
        if (want[i].bytes) st = be->ops->alloc(be, (size_t)want[i].bytes, want[i].p, err);
    return st ? hs_err_prefix(err, "buffers for %d prompts of %d tokens", R, x->a.T), st : HS_OK;
}

static void ctx_free(circ_ctx *x) {
    hs_backend *be = x->a.s->be;
    void *bufs[] = {x->xpre, x->xmid, x->xpost, x->qc, x->kc, x->vc, x->y};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i]) be->ops->free(be, bufs[i]);
    for (int k = 0; x->cs && k < x->K; k++) free_circuit(be, &x->cs[k], 2 * x->L + 1);
    free(x->cs);
    hs_eap_up_free(&x->a);
}

hs_status hs_eap_circuit(hs_session *s, const hs_prompts *pr, const int32_t *corrupt, const hs_eap_circuit_params *p,
                         int p0, int n, float *metric, float *clean, float *corrupted, hs_err *err) {
    const hs_model_config *c = &s->cfg;
    hs_status st = hs_eap_circuit_check(c, p, err);
    if (st) return st;
    if ((st = hs_eap_check_prompts(c, pr, corrupt, p->metric, p0, n, "circuit evaluation", err))) return st;
    if (!s->be->ops->supports_op(s->be, HS_OP_BACKWARD)) /* the sums' GEMMs are matmul_bwd */
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "circuit evaluation: the %s backend has no backward ops",
                          s->be->ops->name);
    const int R = p->batch_rows < n ? p->batch_rows : n, T = pr->T, Vv = c->n_vocab, K = p->n_circuits;
    if ((int64_t)R * T * c->d_model > INT32_MAX) /* a GEMM's inner size */
        return hs_err_set(err, HS_ERR_INVALID_ARG,
                          "circuit evaluation: %d prompts x %d tokens x d_model %d is past 2^31 elements per batch: "
                          "use a smaller batch",
                          R, T, c->d_model);
    circ_ctx x = {.a = hs_eap_up_shape(s, T),
                  .c = c,
                  .L = c->n_layers,
                  .Hk = c->n_kv_heads,
                  .P = hs_eap_per_layer(c),
                  .V = hs_eap_n_downstream(c),
                  .K = K,
                  .kd = (int64_t)c->n_kv_heads * c->d_head};
    x.a.node_major = 1;
    const int64_t rows = (int64_t)R * T;
    int32_t *mask = malloc((size_t)rows * sizeof *mask), *tg = malloc((size_t)rows * sizeof *tg);
    float *xlogits = malloc((size_t)R * Vv * sizeof(float)), *logits = malloc((size_t)R * Vv * sizeof(float)),
          *ref = malloc((size_t)R * Vv * sizeof(float)), *xlp = malloc((size_t)rows * sizeof(float)),
          *lp = malloc((size_t)rows * sizeof(float)), *scratch = malloc((size_t)Vv * sizeof(float));
    if (!mask || !tg || !xlogits || !logits || !ref || !xlp || !lp || !scratch)
        HS_FAIL(err, HS_ERR_OOM, "circuit evaluation: out of memory for %d prompts of %d tokens", R, T);
    HS_CHECK(ctx_alloc(&x, R, err));
    HS_CHECK(plan_all(&x, p, err));
    const hs_hooks keep = {.wants = keep_wants, .fn = keep_hook, .user = &x},
                   run = {.wants = run_wants, .fn = run_hook, .user = &x};
    const hs_input_hooks inputs = {.wants = layer_wants, .node_wants = node_wants, .fn = node_input, .user = &x};
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = hs_metric_logits(p->metric);
    const int loss = p->metric == HS_METRIC_LOSS;
    for (int q0 = p0; q0 < p0 + n; q0 += R) {
        x.a.B = p0 + n - q0 < R ? p0 + n - q0 : R;
        x.a.n = (int64_t)x.a.B * T;
        hs_batch bc, bx;
        hs_eap_batches(pr, corrupt, q0, x.a.B, mask, tg, &bc, &bx);
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
            const float *lpr = lp + (int64_t)r * T, *xlpr = xlp + (int64_t)r * T;
            if (clean) clean[i] = (float)hs_row_metric(p->metric, pr, g, logits + o, lpr, Vv, ref + o, scratch);
            if (corrupted)
                corrupted[i] = (float)hs_row_metric(p->metric, pr, g, xlogits + o, xlpr, Vv, ref + o, scratch);
        }
        fp.hooks = &run; /* 2. each circuit */
        fp.inputs = &inputs;
        for (int k = 0; k < K; k++) {
            x.cur = &x.cs[k];
            x.a.need = x.cur->need;
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
    ctx_free(&x);
    free(mask), free(tg), free(xlogits), free(logits), free(ref), free(xlp), free(lp), free(scratch);
    return st;
}
