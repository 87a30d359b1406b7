/* hs_decode (internal): greedy decoding of right-padded prompts, a batch of
 * rows at a time, shared by the retrieval score and the needle recall of head
 * sets. From a KV cache where one can be had (the prompts in one forward,
 * then one token per step; with LongRoPE, the contexts again at the step a
 * row passes the original context, as transformers' generate does), else
 * rerunning the whole context at each step (no memory for a cache): the same
 * tokens up to rounding. At every step the forward's patterns hold only the generating
 * row ([B, H, 1, keys]), and the caller's edits apply (every position only:
 * no SET and no one-position edits). */
#ifndef HS_DECODE_H
#define HS_DECODE_H

#include "headsweep/hs_ablation.h"

typedef struct {
    hs_session *s;
    hs_kv_cache *kv; /* NULL: each step reruns the whole context */
    int R, V;
    int Tc;          /* the longest context run: the longest prompt + n_generate - 1 */
    int longrope_ctx; /* LongRoPE's original context (0: none): passing it reruns the contexts */
    int B, step;     /* the current batch's rows, steps taken */
    int32_t *ctx;    /* [R, Tc + 1] each row's context: its prompt, then the tokens generated */
    int32_t *cur;    /* [R] context lengths, the last generated token included */
    int32_t *tok, *mask, *last; /* the forward's batch */
    float *logits;   /* [R, V] */
} hs_decoder;

/* Up to R rows at a time, prompts up to max_len tokens, n_generate tokens
 * each; cache 0: no KV cache, each step reruns the whole context. */
hs_status hs_decoder_init(hs_session *s, const hs_model *m, int R, int max_len, int n_generate, int cache,
                          hs_decoder *d, hs_err *err);
void hs_decoder_free(hs_decoder *d);
/* Loads prompts [p0, p0 + B) of pr (B <= R, each no longer than max_len). */
void hs_decoder_start(hs_decoder *d, const hs_prompts *pr, int p0, int B);
/* One greedy step: the forward with fp's hooks and edits (its batch, logits,
 * pattern rows and cache fields are set here), then w [B] = each row's
 * argmax (the first maximum, as torch.argmax), appended to the contexts. */
hs_status hs_decoder_step(hs_decoder *d, hs_forward_params *fp, int32_t *w, hs_err *err);

/* ROUGE-1 recall over tokens of an answer gen [G] against a needle [n]: each
 * needle token id counts up to the times the answer holds it; / n. */
float hs_needle_recall(const int32_t *needle, int n, const int32_t *gen, int G);

/* Every prompt's needle span [ns[i], ns[i] + nl[i]) is non-empty and inside
 * its prompt (lengths in 1..T too); errors start with what. */
hs_status hs_needle_spans_check(const hs_prompts *pr, const int32_t *ns, const int32_t *nl, const char *what,
                                hs_err *err);

#endif
