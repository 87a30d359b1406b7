/* hs_patching: activation patching from clean into corrupted prompts
 * (TransformerLens patching.py semantics): one patch per index, the clean
 * run's activation copied into the corrupted run, the metric of each patched
 * run recorded. The targets are TransformerLens's
 * get_act_patch_attn_head_out_all_pos and _by_pos, the three of
 * get_act_patch_block_every (resid_pre, attn_out, mlp_out) and
 * get_act_patch_attn_head_{q,k,v}_all_pos (with GQA, k and v per KV head, the
 * shape of hook_k and hook_v), and path patching from a head to the logits
 * (Wang et al. 2022): the head's clean z with every later head frozen at its
 * corrupted z, so the patch acts only through the residual stream and the
 * MLPs (its direct effect plus what MLPs make of it), and from a head to
 * receiver heads' q, k or v: the receivers' input computed in that frozen
 * pass, patched into the corrupted run, everything else recomputed. Every patched run
 * starts at its layer from the corrupted run's cached resid_pre (prefix
 * reuse); patches are batched. */
#ifndef HS_PATCHING_H
#define HS_PATCHING_H

#include "headsweep/hs_ablation.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    HS_PATCH_Z_ALL_POS = 0, /* one head's z at every position -> [N, L, H] */
    HS_PATCH_Z_BY_POS,      /* one head's z at one position -> [N, L, T, H] */
    HS_PATCH_RESID_PRE,     /* the residual stream before layer l at one position -> [N, L, T] */
    HS_PATCH_ATTN_OUT,      /* layer l's attention output (after W_O and its bias) at one position -> [N, L, T] */
    HS_PATCH_MLP_OUT,       /* layer l's MLP output at one position -> [N, L, T] */
    HS_PATCH_Q_ALL_POS,     /* one head's query (hook_q, before RoPE) at every position -> [N, L, H] */
    HS_PATCH_K_ALL_POS,     /* one KV head's key (hook_k, before RoPE) at every position -> [N, L, H_kv] */
    HS_PATCH_V_ALL_POS,     /* one KV head's value at every position -> [N, L, H_kv] */
    HS_PATCH_PATH_LOGITS,   /* path patching (Wang et al.): one head's z at every position, every head of
                               the later layers held at its corrupted z -> [N, L, H] */
    HS_PATCH_PATH_HEADS,    /* path patching to receiver heads' q, k or v (Wang et al.): the receivers'
                               input from path_logits' pass patched into the corrupted run -> [N, L, H] */
    HS_PATCH_COUNT
} hs_patch_target;

typedef struct {
    hs_metric metric;  /* usually HS_METRIC_LOGIT_DIFF */
    int batch_rows;    /* rows per forward pass, >= 1 */
    unsigned targets;  /* (1u << hs_patch_target) bits */
    /* Attribution only: the q and k cells by AtP*'s QK fix (Kramar et al.
     * 2024): the patched head's attention recomputed exactly with the clean
     * q (or k), linearised only after the softmax: sum over positions of
     * (z_patched - z_corrupt) . dM/dz. 0 = the plain first-order estimate
     * (a_clean - a_corrupt) . dM/da, which a saturated softmax defeats. */
    int qk_fix;
    /* Attribution only: AtP*'s GradDrop (Kramar et al. 2024), against
     * cancellation between a node's paths to the metric. For each layer D
     * the gradient again with the gradient through D's addition to the
     * residual stream dropped; each cell is M(corrupt) + sum over D of
     * |estimate under drop D| / (L - 1): an unsigned magnitude (rank by
     * |cell - corrupt|), which a cancellation can no longer zero. Costs
     * L(L-1)/2 more layer backwards per batch; needs L >= 2. 0 = off. */
    int grad_drop;
    /* path_heads: the receivers, n_receivers (layer, head) pairs, and the
     * input of theirs the path ends in: HS_HOOK_Q, HS_HOOK_K or HS_HOOK_V
     * (then the head is a KV head, hook_k's head axis). */
    const int *receivers;
    int n_receivers;
    hs_hook_point receiver_input;
    /* As in hs_ablation_params: called per layer of each prompt chunk. */
    int (*progress)(void *user, int done, int total);
    void *progress_user;
} hs_patching_params;

hs_patching_params hs_patching_default_params(void);

/* Caller-allocated outputs, each needed iff its target is requested.
 * Positions at or beyond a prompt's length hold NAN. */
typedef struct {
    float *clean;     /* [N] metric of the clean prompts */
    float *corrupt;   /* [N] metric of the corrupted prompts */
    float *z_all_pos; /* [N, L, H] */
    float *z_by_pos;  /* [N, L, T, H] */
    float *resid_pre; /* [N, L, T] */
    float *attn_out;  /* [N, L, T] */
    float *mlp_out;   /* [N, L, T] */
    float *q_all_pos; /* [N, L, H] */
    float *k_all_pos; /* [N, L, H_kv] */
    float *v_all_pos; /* [N, L, H_kv] */
    float *path_logits; /* [N, L, H] */
    float *path_heads;  /* [N, L, H]; NAN for senders at or after the last receiver's layer */
} hs_patching_out;

/* clean: the prompts with answer/distractor; corrupt_tokens [N, T] holds each
 * prompt's corrupted version, of the same length. KL is measured against the
 * clean distribution. */
hs_status hs_activation_patching(hs_session *s, const hs_model *m, const hs_prompts *clean,
                                 const int32_t *corrupt_tokens, const hs_patching_params *p, hs_patching_out *out,
                                 hs_err *err);

/* Prompts per unit of work: patching the prompts [k*U, (k+1)*U) as its own
 * call computes exactly what the whole call computes for them. */
int hs_activation_patching_unit(const hs_model *m, const hs_patching_params *p);

/* Attribution patching (Nanda 2023; AtP, Kramar et al. 2024): the first-order
 * estimate of what hs_activation_patching measures, with the same parameters
 * and outputs. Each cell holds M(corrupt) + (a_clean - a_corrupt) . dM/da,
 * the gradient taken at the corrupted run, for a = the head's z at every
 * position, at one position, resid_pre, attn_out or mlp_out at one
 * position, a head's q, k or v at every position: every cell of a
 * batch from one clean forward, one corrupted forward and one backward.
 * batch_rows is prompts per batch. Needs a backend with the backward ops and
 * a differentiable metric (accuracy is refused). Like any linearisation it
 * misjudges patches that move a saturated softmax (Kramar et al.), which q
 * and k patches can: p->qk_fix (the default) corrects those two. path_logits
 * and path_heads have no estimate here and are refused. */
hs_status hs_attribution_patching(hs_session *s, const hs_model *m, const hs_prompts *clean,
                                  const int32_t *corrupt_tokens, const hs_patching_params *p, hs_patching_out *out,
                                  hs_err *err);

/* Prompts per unit of work of hs_attribution_patching (batch_rows). */
int hs_attribution_patching_unit(const hs_patching_params *p);

#ifdef __cplusplus
}
#endif
#endif
