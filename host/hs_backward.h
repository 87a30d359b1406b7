/* hs_backward (internal): one backward pass through the model, input
 * gradients only, with layer recompute (gradient checkpointing: the forward
 * keeps each layer's resid_pre, L + 1 residual streams, and the backward
 * reruns a layer from it). Shared by the gradient head importance
 * (hs_head_grad.c) and attribution patching (hs_attribution.c).
 *
 * When the session's budget allows (hs_session_set_backward_keep_bytes), the
 * forward also keeps what the backward reads of every layer (q and k after
 * RoPE, v, z, resid_mid, the MLP's inputs to its activation) and no layer is
 * rerun; the backward computes the same bits either way.
 *
 * A pass is: hs_bwd_forward (keeps the residual streams), one seed (the
 * metric's gradient at the final resid_post), then hs_bwd_walk, which hands
 * every layer's z and dM/dz (and, if asked, dM/d resid_pre) to a visitor.
 * The buffers belong to the session, grow-only: no backend allocation per
 * batch once the largest batch has run. */
#ifndef HS_BACKWARD_H
#define HS_BACKWARD_H

#include "hs_session_internal.h"

typedef struct hs_bwd {
    int64_t rows; /* capacity in rows (B * T) */
    int keep;     /* the layers' activations are kept: no rerun */
    /* keep mode, [L, rows, width] each: q, k (after RoPE), v, z (as the
     * forward made it), resid_mid, the MLP's pre and pre_linear */
    void *kq, *kk, *kv, *kz, *kmid, *kpre, *kprel;
    void *res;    /* [L + 1, rows, d]: resid_pre of every layer, then the final resid_post */
    void *mid, *g, *g2, *gm, *dxn, *dhid, *dup, *dgate, *dz, *dq, *dk, *dv;
    void *gmlp;   /* [rows, d]: the MLP's input gradient, for walks that want it */
    void *dq_pre, *dk_pre; /* qk_norm: the gradients at q and k before their norms */
    void *clip_raw, *clip_d; /* clip_qkv: a projection before its clamp; the gradient through the clamp */
    void *zu;     /* the unscaled z of the layer (with head multipliers) */
    float *hsc;   /* [rows, H]: one layer's head multipliers, [B, H] used */
    float *dots;  /* [rows, H]: visitors' head_dot outputs */
    int32_t *neg_pos, *tg;
} hs_bwd;

/* Frees the session's backward buffers (hs_session_free calls it). */
void hs_bwd_free(hs_session *s);

/* The forward of a backward pass: fp as for hs_forward (logits, target
 * log-probs; fp->head_scale host [L, B, H] or NULL; fp->hooks, or NULL, may
 * read what they want but must not change it: the backward's own hooks keep
 * the activations as computed; fp->resid_start(_dev) may replace the
 * embedding). Allocates the buffers for b. */
hs_status hs_bwd_forward(hs_session *s, const hs_batch *b, const hs_forward_params *fp, float *logits_out,
                         hs_err *err);

/* Seeds for M = sum over rows r with targets[r] >= 0 of -log p(targets[r])
 * (targets [B * T] host, each row's own positions). */
hs_status hs_bwd_seed_nll(hs_session *s, const hs_batch *b, const int32_t *targets, hs_err *err);

/* Seeds for a metric of each batch row's last-position logits (the row's last
 * unmasked token, as HS_LOGITS_LAST): dlogits [B, V] host f32 = dM/dlogits. */
hs_status hs_bwd_seed_last(hs_session *s, const hs_batch *b, const float *dlogits, hs_err *err);

/* What a visitor gets of layer l, all in backend memory, valid during the
 * call. The residual gradients are also the gradients at what the layer adds
 * to the stream: g_mid = dM/d attn_out[l], g_post = dM/d mlp_out[l]. */
typedef struct {
    const void *z;      /* [B*T, H, d_head] the heads' unscaled output */
    const void *dz;     /* dM/d(xi z), the gradient at the scaled output */
    const void *g_mid;  /* [B*T, d] dM/d resid_mid[l]; a parallel block's dM/d resid_post[l] */
    const void *g_post; /* [B*T, d] dM/d resid_post[l] */
    /* When the walk was asked for the attention's input gradients, else NULL:
     * dM/d resid_pre[l] [B*T, d] and dM/dq [B*T, H, d_head], dM/dk and dM/dv
     * [B*T, H_kv, d_head], q and k taken before RoPE (and before the q/k
     * norms: at hook_q and hook_k). */
    const void *g_pre, *dq, *dk, *dv;
    /* With HS_BWD_MLP_IN, else NULL: the gradient at the MLP's input (its
     * share of dM/d resid_mid, or of dM/d resid_pre in a parallel block,
     * through its pre-norm) [B*T, d]. */
    const void *g_mlp_in;
    const void *x; /* [B*T, d] resid_pre[l] as the forward made it */
    /* The layer's attention as the forward ran it: q and k after RoPE, v,
     * the key mask (its z output is the walk's: copy before changing it). */
    const hs_attn_params *attn;
} hs_bwd_layer;

/* dx (+)= the gradient through layer l's pre-norm at x of dy [n, d] (mlp: the
 * MLP's norm, else the attention's); without pre-norms, dy itself. */
hs_status hs_bwd_pre_norm(hs_session *s, int l, int mlp, const void *x, int64_t n, const void *dy, int accumulate,
                          void *dx, hs_err *err);

/* Called for layers L-1 down to 0. */
typedef hs_status (*hs_bwd_visit)(void *user, int layer, const hs_bwd_layer *g, hs_err *err);

/* The backward after a seed. head_scale: the forward's fp->head_scale.
 * want_attn: the visitors want g_pre, dq, dk, dv (layer 0 then also runs
 * the attention's backward, which nothing else reads); HS_BWD_MLP_IN added
 * to it: also g_mlp_in. */
#define HS_BWD_ATTN 1
#define HS_BWD_MLP_IN 2
hs_status hs_bwd_walk(hs_session *s, const hs_batch *b, const float *head_scale, int want_attn, hs_bwd_visit visit,
                      void *user, hs_err *err);

/* The same walk from layer top down, started from g_top = dM/d resid_post[top]
 * ([B*T, d] in backend memory, copied) in place of the seed: the walk below a
 * layer whose gradient was changed (GradDrop). */
hs_status hs_bwd_walk_from(hs_session *s, const hs_batch *b, const float *head_scale, int want_attn, int top,
                           const void *g_top, hs_bwd_visit visit, void *user, hs_err *err);

#endif
