/* hs_head_grad: Michel et al. (2019) head importance. Each head's output
 * (z_h, before W_O) is multiplied by a mask variable xi_h; the importance is
 * the gradient of the language-modelling loss with respect to xi at xi = 1,
 *   dL/dxi_{l,h} = sum_t z_{l,t,h} . dL/dz_{l,t,h},
 * computed by one backward pass through the model (input gradients only). */
#ifndef HS_HEAD_GRAD_H
#define HS_HEAD_GRAD_H

#include "headsweep/hs_ablation.h"

#ifdef __cplusplus
extern "C" {
#endif

/* grad [B, n_layers, n_heads] host f32: d L_b / d xi_{l,h} for every batch
 * row b, where L_b = -sum_t log p(targets[b,t]) over the row's positions with
 * targets >= 0 (a sum, not a mean), at xi = head_mask (host f32 [n_layers,
 * n_heads], the same for every row; NULL = all ones). A head with mask 0 is
 * pruned, and its own gradient still says what putting it back would do.
 * Needs batch->targets and a backend with the backward ops (HS_OP_BACKWARD). */
hs_status hs_head_grad(hs_session *s, const hs_batch *b, const float *head_mask, float *grad, hs_err *err);

/* The same for right-padded prompts [N, T] (next-token targets over each
 * prompt's length) in batches of batch_rows: out [N, n_layers, n_heads]. */
hs_status hs_head_grad_per_prompt(hs_session *s, const hs_prompts *prompts, const float *head_mask, int batch_rows,
                                  float *out, hs_err *err);

/* The same for a task metric instead of the loss: out [N, n_layers, n_heads]
 * = dM_p/dxi at xi = head_mask for each prompt p, where M is
 * HS_METRIC_LOSS: the summed next-token NLL (exactly hs_head_grad_per_prompt);
 * HS_METRIC_LOGIT_DIFF, HS_METRIC_LOGPROB: the metric after the prompt's last
 * token (needs answer, and distractor for logit_diff). KL to the unmasked
 * model has zero gradient at xi = 1 and accuracy none: both are refused. */
hs_status hs_head_grad_metric(hs_session *s, const hs_prompts *prompts, hs_metric metric, const float *head_mask,
                              int batch_rows, float *out, hs_err *err);

/* Michel's normalisation of per-prompt gradients grad [N, L, H] with
 * tokens[p] predicted tokens per prompt: raw[l,h] = sum_p |grad[p,l,h]| /
 * sum_p tokens[p], and norm[l,h] = raw[l,h] / ||raw[l,:]||_2 (0 for an
 * all-zero layer). Either output may be NULL. */
void hs_head_importance(const float *grad, const int32_t *tokens, int N, int L, int H, float *raw, float *norm);

#ifdef __cplusplus
}
#endif
#endif
