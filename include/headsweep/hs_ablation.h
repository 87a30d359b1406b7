/* hs_ablation: per-prompt metrics and the single-head ablation sweep.
 * A sweep runs the unedited prompts once, caching every layer's resid_pre,
 * then evaluates every (layer, head) variant starting at that layer (prefix
 * reuse), with all heads of a layer batched along the batch dimension. */
#ifndef HS_ABLATION_H
#define HS_ABLATION_H

#include "headsweep/hs_forward.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    HS_METRIC_LOSS = 0,   /* mean next-token NLL over the prompt's positions */
    HS_METRIC_LOGPROB,    /* log p(answer) after the last prompt token */
    HS_METRIC_LOGIT_DIFF, /* logit(answer) - logit(distractor) after the last token */
    HS_METRIC_KL,         /* KL(unedited || edited) of the next-token distribution after the last token */
    HS_METRIC_ACCURACY,   /* 1 if argmax is the answer after the last token, else 0 */
    /* Greedy generation under the edits, scored against the prompt's needle:
     * ROUGE-1 recall over tokens (each needle token id counted up to the times
     * it was generated, / needle length). Head sets only (hs_head_set_metric). */
    HS_METRIC_NEEDLE_RECALL,
    HS_METRIC_LOGIT, /* logit(answer) after the last token (TransformerLens's logit of the correct token) */
    HS_METRIC_COUNT
} hs_metric;

const char *hs_metric_name(hs_metric m);

/* A tokenized prompt set, right-padded to T. */
typedef struct {
    int N, T;
    const int32_t *tokens;     /* [N, T] */
    const int32_t *lengths;    /* [N], 1..T */
    const int32_t *answer;     /* [N] or NULL (logprob, logit_diff, accuracy) */
    const int32_t *distractor; /* [N] or NULL (logit_diff) */
} hs_prompts;

typedef enum {
    HS_ABLATE_ZERO = 0, /* z_h := 0 (Michel et al.) */
    HS_ABLATE_SCALE,    /* z_h := scale * z_h */
    HS_ABLATE_MEAN,     /* z_h := mean of z_h over the prompt set, per position */
    HS_ABLATE_UNIFORM,  /* head attends uniformly over its visible keys */
    HS_ABLATE_RESAMPLE, /* z_h := z_h of another prompt (resample_ref / resample_src) */
    HS_ABLATE_COUNT
} hs_ablate_mode;

const char *hs_ablate_mode_name(hs_ablate_mode m);

/* What one variant ablates (Michel et al. 2019 Tables 1-3). */
typedef enum {
    HS_ABLATION_SINGLE_HEAD = 0, /* one head -> delta [N, L, H] */
    HS_ABLATION_WHOLE_LAYER,     /* every head of a layer -> delta [N, L] */
    HS_ABLATION_ALL_BUT_ONE,     /* every head of a layer but one -> delta [N, L, H] */
} hs_ablation_kind;

typedef struct {
    hs_metric metric;
    hs_ablate_mode mode;
    hs_ablation_kind kind;
    /* [L, H] nonzero = sweep this head (for whole layers: a layer with any
     * selected head); NULL = all. Entries not swept are NAN in out_delta. */
    const uint8_t *select;
    float scale;      /* HS_ABLATE_SCALE */
    int batch_rows;   /* rows per forward pass (variants x prompts); >= 1 */
    int prefix_reuse; /* 1: start each variant at its layer from cached resid_pre; 0: run every layer */
    int mean_per_position; /* HS_ABLATE_MEAN: 1 = mean per position over prompts; 0 = over prompts and positions */
    /* HS_ABLATE_MEAN: the mean z [L, H, T, d_head] from hs_ablation_mean_z over
     * a reference set (a sharded run passes the whole dataset's mean to each
     * chunk); NULL = the mean over the swept prompts themselves. */
    const float *mean_z;
    /* HS_ABLATE_MEAN per template (Wang et al.'s IOI knockout): with
     * mean_template set, mean_z holds n_templates means [n_templates, L, H, T,
     * d_head] (hs_ablation_mean_z_template) and swept prompt i (of this call)
     * takes the mean of template mean_template[i], 0 <= id < n_templates. A
     * call on a sub-range of the prompts passes the matching sub-range of the
     * template ids. NULL: one mean for every prompt. */
    const int32_t *mean_template;
    int n_templates;
    /* HS_ABLATE_RESAMPLE: swept prompt i (of this call) takes z_h, at every
     * position, from prompt resample_src[i] of resample_ref (the reference
     * set: the whole dataset, or its corrupted versions; resample_ref->T must
     * fit the session). The source z is computed on demand, one forward per
     * chunk of hs_head_ablation_unit prompts, so memory stays bounded by the
     * chunk and a sub-range call with the matching sub-range of resample_src
     * computes exactly what the whole call does. Positions at or past the
     * source's length keep the prompt's own z (a shorter source has no value
     * there); positions past the prompt's own length are never edited.
     * hs_ablation_resample_sources draws resample_src. */
    const hs_prompts *resample_ref;
    const int32_t *resample_src;
    /* Called after each layer of each prompt chunk with (units done, units in
     * all); a nonzero return stops the sweep with HS_ERR_INVALID_ARG "interrupted". */
    int (*progress)(void *user, int done, int total);
    void *progress_user;
} hs_ablation_params;

hs_ablation_params hs_ablation_default_params(void);

/* Sweeps the variants of p->kind: out_base [N] gets the unedited metric of
 * each prompt and out_delta ([N, L, H], or [N, L] for whole layers) the edited
 * minus unedited metric.
 * The session must allow max_B >= batch_rows and max_T >= prompts->T. */
hs_status hs_head_ablation(hs_session *s, const hs_model *m, const hs_prompts *prompts, const hs_ablation_params *p,
                           float *out_base, float *out_delta, hs_err *err);

/* Mean of z over the prompt set, per layer, head and position (valid tokens
 * only; per_position 0 = one vector per head over every valid position):
 * out [L, H, prompts->T, d_head]. Forwards batch_rows prompts at a time. */
hs_status hs_ablation_mean_z(hs_session *s, const hs_model *m, const hs_prompts *prompts, int batch_rows,
                             int per_position, float *out, hs_err *err);

/* Means of z over the reference prompts, grouped by template (IOI
 * knockout): out [n_templates, L, H, ref->T, d_head], entry k the per-position
 * mean over the prompts i with template_id[i] == k that reach the position
 * (valid tokens only; 0 where none does). The reference is usually the ABC
 * (corrupted) prompts: pass ref.tokens = dataset corrupt_tokens. Positions
 * are aligned by index: prompts of one IOI template share a length when the
 * names, places and objects are single tokens, otherwise later positions mix
 * tokens of different roles. Errors: HS_ERR_INVALID_ARG (a template id
 * outside [0, n_templates), batch_rows < 1), HS_ERR_OOM. */
hs_status hs_ablation_mean_z_template(hs_session *s, const hs_model *m, const hs_prompts *ref,
                                      const int32_t *template_id, int n_templates, int batch_rows, float *out,
                                      hs_err *err);

/* Resample sources: out[k] = the source of global prompt first + k (k < n),
 * an index into a reference set of n_ref prompts, drawn from splitmix64 of
 * (seed, first + k) alone, so any sub-range gives the same values. The
 * source is never the prompt itself (for first + k < n_ref). Errors:
 * HS_ERR_INVALID_ARG (n_ref < 2, first < 0, n < 0). */
hs_status hs_ablation_resample_sources(uint64_t seed, int n_ref, int first, int n, int32_t *out, hs_err *err);

/* Prompts per unit of hs_head_ablation's work: a sweep over the prompts
 * [k*U, (k+1)*U) as its own call computes exactly what the whole sweep
 * computes for them, which is what lets a run shard and resume by unit. */
int hs_head_ablation_unit(const hs_model *m, const hs_ablation_params *p);

/* The metric averaged over the prompts with a fixed head mask applied to
 * every prompt: head_scale [n_layers, n_heads] multiplies z (0 prunes a head),
 * or NULL for the unedited model. KL is against the unedited model. */
hs_status hs_eval_metric(hs_session *s, const hs_model *m, const hs_prompts *prompts, hs_metric metric,
                         const float *head_scale, int batch_rows, double *out, hs_err *err);

/* Same, per prompt: out [N], each prompt's metric (batch_rows at a time). */
hs_status hs_eval_metric_per_prompt(hs_session *s, const hs_model *m, const hs_prompts *prompts, hs_metric metric,
                                    const float *head_scale, int batch_rows, float *out, hs_err *err);

#ifdef __cplusplus
}
#endif
#endif
