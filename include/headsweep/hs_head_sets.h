/* hs_head_sets: the metric per prompt with a set of heads ablated together,
 * for comparisons such as Olsson et al.'s: the top-k induction heads
 * mean-ablated at once versus random k-head sets, loss on the repeated half
 * of [BOS] x x prompts. */
#ifndef HS_HEAD_SETS_H
#define HS_HEAD_SETS_H

#include "headsweep/hs_ablation.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    hs_metric metric;
    hs_ablate_mode mode; /* HS_ABLATE_ZERO, _SCALE, _MEAN, _UNIFORM or _RESAMPLE */
    float scale;         /* HS_ABLATE_SCALE */
    const float *mean_z; /* HS_ABLATE_MEAN: [L, H, T, d_head] from hs_ablation_mean_z (required), or
                            with mean_template [n_templates, L, H, T, d_head] from
                            hs_ablation_mean_z_template */
    const int32_t *mean_template; /* the template of each prompt of this call, or NULL */
    int n_templates;
    /* HS_ABLATE_RESAMPLE (resample or patch): every head of the set takes, at
     * each position both prompts have, the z of prompt resample_src[i] of
     * resample_ref (hs_ablation_params has the same pair); later positions
     * keep their own z. */
    const hs_prompts *resample_ref;
    const int32_t *resample_src;
    /* HS_METRIC_LOSS only: average the next-token loss over the second copy
     * of [BOS] x1..xn x1..xn prompts, the tokens x2..xn an induction head can
     * predict (positions n+1 .. 2n-1 predicting n+2 .. 2n), instead of every position. */
    int second_half;
    /* HS_METRIC_NEEDLE_RECALL: each prompt's needle span [N] (inside the
     * prompt, length >= 1) and the greedy tokens generated under the ablation
     * (>= 1); modes ZERO, SCALE and UNIFORM only (the edits apply to every
     * generated token too). */
    const int32_t *needle_start, *needle_len;
    int n_generate;
    int32_t *generated; /* NEEDLE_RECALL: out [N, n_generate], each prompt's answer, or NULL */
    int batch_rows;
} hs_head_set_params;

hs_head_set_params hs_head_set_default_params(void);

/* out [N]: the metric of every prompt with the heads set[l * H + h] != 0
 * ablated together (set NULL: the unedited model). KL is against the unedited
 * model. needle_recall decodes batch_rows prompts at a time from a KV cache
 * (hs_kv_cache) this call allocates; where none can be had (no memory for
 * it) each step reruns the whole context, as LongRoPE models do at the step a
 * prompt passes the original context: the session then needs max_T >= the
 * longest prompt + n_generate - 1 (LongRoPE models: checked up front). */
hs_status hs_head_set_metric(hs_session *s, const hs_model *m, const hs_prompts *prompts, const hs_head_set_params *p,
                             const uint8_t *set, float *out, hs_err *err);

#ifdef __cplusplus
}
#endif
#endif
