/* hs_retrieval: Wu et al. 2024's retrieval score. Each needle prompt is
 * greedily decoded for n_generate tokens; at every step a head copy-pastes
 * when the generated token w occurs in the needle and the argmax of the head's
 * attention row (the last query, over the current context) is a needle
 * position holding w. A head's score on a prompt is the number of distinct
 * needle positions it copied, divided by the needle length (the paper's
 * |g_h ∩ k| / |k|: each needle token counts once however often it is copied;
 * the authors' script instead adds 1/|k| per copying step). Decoding always
 * runs n_generate steps (no stop token), and every prompt is scored whether or
 * not the model reproduces the needle; the paper keeps only prompts whose
 * answer recalls the needle (ROUGE-1 recall > 50%), which the caller can do
 * with the generated tokens. A head with score > 0.1 is a retrieval head. */
#ifndef HS_RETRIEVAL_H
#define HS_RETRIEVAL_H

#include "headsweep/hs_ablation.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int n_generate; /* greedy tokens per prompt, >= 1 (32) */
    int batch_rows; /* prompts decoded together, >= 1 (8) */
    int no_kv_cache; /* 1: rerun the whole context at every step, as without a cache (benchmarks, tests) */
} hs_retrieval_params;

hs_retrieval_params hs_retrieval_default_params(void);

/* Scores per prompt: out_score [N, n_layers, n_heads] (copied needle
 * positions / needle_len), out_generated [N, n_generate] the greedy tokens
 * (or NULL). needle_start/needle_len [N]: the needle's token span in each
 * prompt (BOS counted, inside the prompt, needle_len >= 1). batch_rows
 * prompts at a time, decoded from a KV cache (hs_kv_cache: the prompts in one
 * forward, then one token per step; the patterns hold only the generating
 * row), which this call allocates on the session's backend; the session must
 * allow max_B >= batch_rows and max_T >= the longest prompt. Where no cache
 * can be had (no memory for it) each step reruns the whole context, as
 * LongRoPE models do at the step a prompt passes the original context: the
 * session then needs max_T >= the longest prompt + n_generate - 1 (LongRoPE
 * models always, unless every context stays within the original one; refused
 * up front otherwise).
 * Errors: HS_ERR_INVALID_ARG (parameters, a needle span outside its prompt,
 * a batch the session cannot hold), HS_ERR_OOM, backend errors. */
hs_status hs_retrieval_scores_per_prompt(hs_session *s, const hs_model *m, const hs_prompts *prompts,
                                         const int32_t *needle_start, const int32_t *needle_len,
                                         const hs_retrieval_params *p, float *out_score, int32_t *out_generated,
                                         hs_err *err);

/* The mean over prompts of the per-prompt scores: out [n_layers, n_heads]
 * (summed in prompt order). */
hs_status hs_retrieval_scores(hs_session *s, const hs_model *m, const hs_prompts *prompts, const int32_t *needle_start,
                              const int32_t *needle_len, const hs_retrieval_params *p, float *out, hs_err *err);

/* Prompts per unit of work: the prompts [k*U, (k+1)*U) scored as their own
 * call give exactly what the whole call gives them (same batches). */
int hs_retrieval_unit(const hs_retrieval_params *p);

#ifdef __cplusplus
}
#endif
#endif
