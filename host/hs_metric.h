/* Per-row metrics (internal): one prompt's metric from its forward outputs. */
#ifndef HS_METRIC_H
#define HS_METRIC_H

#include "headsweep/hs_ablation.h"

/* log-softmax of one row of V logits into out (double accumulation). */
void hs_log_softmax(const float *x, int V, float *out);

/* The metric of prompt `prompt`: logits [V] after its last token, lp [T] its
 * target log-probs (loss), ref_logp [V] the reference distribution (KL);
 * scratch holds V floats. */
double hs_row_metric(hs_metric m, const hs_prompts *pr, int prompt, const float *logits, const float *lp, int V,
                     const float *ref_logp, float *scratch);

/* The logits a metric reads: none for the loss (its target log-probs come
 * from the forward), the last position's otherwise. */
static inline hs_logits_mode hs_metric_logits(hs_metric m) {
    return m == HS_METRIC_LOSS ? HS_LOGITS_NONE : HS_LOGITS_LAST;
}

/* dM/dlogits [B, V] of a last-position metric for prompts p0 .. p0 + B - 1
 * of pr, from their last-position logits [B, V]: logit_diff e_answer -
 * e_distractor, logprob e_answer - softmax, KL (against ref_logp [B, V], the
 * reference's log-softmax; NULL otherwise) softmax - exp(ref_logp). dl may
 * alias logits; scratch holds V floats. Other metrics have none here. */
void hs_metric_dlogits(hs_metric m, const hs_prompts *pr, int p0, int B, const float *logits, int V,
                       const float *ref_logp, float *dl, float *scratch);

/* The prompts suit the metric: lengths in range, answer/distractor present
 * and inside the vocabulary where the metric reads them. */
hs_status hs_metric_check(const hs_model_config *c, const hs_prompts *pr, hs_metric metric, hs_err *err);

/* Padding mask [N, T] (1 on each prompt's tokens) and next-token targets
 * [N, T] (tokens[t + 1], -1 past the prompt) of right-padded prompts; tokens
 * defaults to pr->tokens (pass another [N, T] array for corrupted prompts).
 * Either output may be NULL. */
void hs_prompts_mask_targets(const hs_prompts *pr, const int32_t *tokens, int32_t *mask, int32_t *targets);

#endif
