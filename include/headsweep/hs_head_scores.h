/* hs_head_scores: attention-pattern head scores over a prompt set, as
 * TransformerLens's head detector defines them ("mul": sum(A * D) / sum(A) per
 * head and prompt, averaged over prompts), plus the Olsson et al. induction
 * score on repeated random tokens. */
#ifndef HS_HEAD_SCORES_H
#define HS_HEAD_SCORES_H

#include "headsweep/hs_ablation.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    HS_SCORE_PREVIOUS_TOKEN = 0, /* D[i, i-1] = 1 */
    HS_SCORE_DUPLICATE_TOKEN,    /* D[i, j] = 1 iff tok_i == tok_j, j < i */
    HS_SCORE_INDUCTION,          /* D[i, j+1] = 1 iff tok_i == tok_j, j < i */
    HS_SCORE_OLSSON_INDUCTION,   /* prompts = [BOS] x x: mean attention from each
                                    second-copy token to the token after its first occurrence */
    HS_SCORE_COUNT
} hs_score_kind;

const char *hs_score_name(hs_score_kind k);

/* Fills out[k, layer, head] for every k whose bit (1u << k) is in mask
 * (others left untouched); out has HS_SCORE_COUNT * n_layers * n_heads floats.
 * HS_SCORE_OLSSON_INDUCTION needs prompts of odd length 2n+1 ([BOS] x x).
 * A head whose attention mass on a prompt is 0 contributes 0 for it. */
hs_status hs_head_scores(hs_session *s, const hs_model *m, const hs_prompts *prompts, unsigned mask, int batch_rows,
                         float *out, hs_err *err);

/* The same scores per prompt: out [N, HS_SCORE_COUNT, n_layers, n_heads]
 * (kinds not in mask left untouched); hs_head_scores is their mean. */
hs_status hs_head_scores_per_prompt(hs_session *s, const hs_model *m, const hs_prompts *prompts, unsigned mask,
                                    int batch_rows, float *out, hs_err *err);

#ifdef __cplusplus
}
#endif
#endif
