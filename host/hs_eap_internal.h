/* hs_eap_internal: what edge attribution (hs_eap.c) and circuit evaluation
 * (hs_eap_circuit.c) share: the upstream nodes' activation differences
 * a(corrupt) - a(this run), kept in backend memory laid out [B, U, T, d]
 * (one prompt's nodes are the rows of a [U, T * d] matrix: EAP's GEMMs are
 * per prompt) or node-major [U, B, T, d] (a node's rows are contiguous), and
 * the graph's layout. */
#ifndef HS_EAP_INTERNAL_H
#define HS_EAP_INTERNAL_H

#include "headsweep/hs_eap.h"
#include "hs_session_internal.h"

typedef struct {
    hs_session *s;
    int B, T, H, dh, d, U;
    int64_t n, es, qd, node; /* n = B * T rows; node: one node's T * d elements */
    int node_major;          /* the differences laid out [U, B, T, d] */
    const uint8_t *need;     /* [U] the differences to take, NULL = all */
    /* the corrupted run's z [L, n, qd], MLP outputs [L, n, d] and input
     * [n, d]; the differences [B, U, T, d] (node-major [U, B, T, d]); with
     * keep_input a copy of this run's input [n, d] (EAP-IG); scratch */
    void *zc, *mc, *ec, *up, *input, *zd, *rows, *head, *woh;
} hs_eap_up;

/* Downstream nodes of one layer: q per head, k and v per KV head, the MLP. */
static inline int hs_eap_per_layer(const hs_model_config *c) { return c->n_heads + 2 * c->n_kv_heads + 1; }
/* Upstream nodes that a node of layer l reads: its attention's (mlp 0) or its MLP's, the first this many. */
static inline int hs_eap_readable(const hs_model_config *c, int l, int mlp) {
    return 1 + l * (c->n_heads + 1) + (mlp && !c->parallel_attn_mlp ? c->n_heads : 0);
}

/* The shape fields of the differences of s's model for prompts of T tokens
 * (B, n and the buffers unset). */
hs_eap_up hs_eap_up_shape(hs_session *s, int T);
/* The arguments of a pass over prompts [p0, p0 + n) of pr suit it: the
 * metric's prompts, corrupted prompts given, the range; errors prefixed by what. */
hs_status hs_eap_check_prompts(const hs_model_config *c, const hs_prompts *pr, const int32_t *corrupt, hs_metric m,
                               int p0, int n, const char *what, hs_err *err);
/* Prompts [q0, q0 + B) as a clean and a corrupted batch, sharing the padding
 * mask and the clean prompts' next tokens as targets (mask, tg [B, T]). */
void hs_eap_batches(const hs_prompts *pr, const int32_t *corrupt, int q0, int B, int32_t *mask, int32_t *tg,
                    hs_batch *clean, hs_batch *corrupted);

/* The model suits the graph: no post-norms (a block would add a normed
 * output, not a sum of head results), no clamped projections. */
hs_status hs_eap_model_check(const hs_model_config *c, const char *what, hs_err *err);

/* Buffers for R prompts of x->T tokens (x's shape fields set); keep_input:
 * also the input copy. hs_eap_up_free frees them (and not x). */
hs_status hs_eap_up_alloc(hs_eap_up *x, int L, int R, int keep_input, hs_err *err);
void hs_eap_up_free(hs_eap_up *x);

/* Node row j of every batch row in a [B, nodes, T, d] buffer (node-major:
 * [nodes, B, T, d]) := rows [n, d]. */
hs_status hs_eap_put_node(const hs_eap_up *x, void *buf, int nodes, int j, const void *rows, hs_err *err);
/* x->head [n, dh] := head h's slice of a [n, heads, dh] buffer. */
hs_status hs_eap_gather_head(hs_eap_up *x, const void *src, int heads, int h, hs_err *err);

/* Hooks (user: the hs_eap_up) of the corrupted run, which keeps its z, MLP
 * outputs and input, and of the run the differences are taken against. */
int hs_eap_up_wants(void *user, hs_hook_point p, int layer);
hs_status hs_eap_up_keep(void *user, hs_hook_point p, int layer, hs_tensor *t, hs_err *err);
hs_status hs_eap_up_diff(void *user, hs_hook_point p, int layer, hs_tensor *t, hs_err *err);

#endif
