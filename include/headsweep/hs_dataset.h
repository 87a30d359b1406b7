/* hs_dataset: a tokenized prompt set with optional answers, distractors and
 * corrupted counterparts, built from a generator or a JSONL file.
 *
 * Prompts are tokenized the way the model's tokenizer does with its special
 * tokens: the BOS id is prepended when the tokenizer adds one
 * (hs_tokenizer_add_bos), and no EOS is ever appended (the model continues
 * the prompt). Answers and distractors are one token: the token the answer
 * text becomes when it is appended to the prompt (" Mary" after "... to").
 *
 * JSONL format (one object per line; blank lines are skipped):
 *   prompt       string: the prompt text                     } exactly one
 *   tokens       [int]: token ids as is (no BOS added)       } of the two
 *   answer       string (one token after the prompt) or int (a token id)
 *   distractor   same as answer
 *   corrupt      string or [int]: the corrupted prompt, same token length
 *   template     int, or string (ids 0, 1, ... in order of first appearance)
 *   id           string or int: a row label
 *   needle_start, needle_len  int: the needle's token span (retrieval)
 * answer, distractor, corrupt, template and the needle span are on every
 * line or on none. Unknown keys are errors. Every error names the file, the
 * line and the field ("data.jsonl:3: answer: ..."). */
#ifndef HS_DATASET_H
#define HS_DATASET_H

#include <stdint.h>

#include "headsweep/hs_ablation.h"
#include "headsweep/hs_model.h"
#include "headsweep/hs_tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int N, T;                /* prompts, padded length (right padding with token 0) */
    int32_t *tokens;         /* [N, T] */
    int32_t *lengths;        /* [N] */
    int32_t *answer;         /* [N] or NULL */
    int32_t *distractor;     /* [N] or NULL */
    int32_t *template_id;    /* [N] or NULL */
    char **text;             /* [N] prompt text, or NULL for token-id datasets (induction); a file
                              * row given as `tokens` has a NULL entry */
    int32_t *corrupt_tokens; /* [N, T] or NULL: row i has lengths[i] tokens, right-padded with 0 */
    int32_t *needle_start;   /* [N] or NULL: first token of the needle (BOS counted) */
    int32_t *needle_len;     /* [N] or NULL: the needle's token count */
    char **id;               /* [N] or NULL: row labels from a file (entries may be NULL) */
} hs_dataset;

/* Olsson et al.'s repeated random tokens: [BOS] x x with x drawn uniformly
 * from [token_min, token_max), seq_len tokens, seeded. Without a BOS id in the
 * model config, token_min stands in for it. */
hs_status hs_dataset_induction(const hs_model_config *c, int n, int seq_len, int token_min, int token_max,
                               uint64_t seed, hs_dataset **out, hs_err *err);

/* Reads the JSONL file at path (format above). tok may be NULL when every line
 * gives token ids (tokens, int answers, [int] corrupt). Prompts longer than
 * max_len tokens (when max_len > 0) or than the model context c->n_ctx are
 * errors, never truncated; token ids must lie in [0, c->n_vocab).
 * Errors: HS_ERR_IO (unreadable file), HS_ERR_FORMAT (malformed JSON, unknown
 * key, wrong type, empty prompt, answer not one token, corrupt of another
 * length, a field on some lines only, a prompt too long, no prompts),
 * HS_ERR_INVALID_ARG (text without a tokenizer), HS_ERR_OOM.
 * On success *out is new (hs_dataset_free); on failure it is NULL. */
hs_status hs_dataset_load_jsonl(const char *path, hs_tokenizer *tok, const hs_model_config *c, int max_len,
                                hs_dataset **out, hs_err *err);

/* Writes d as JSONL that hs_dataset_load_jsonl reads back into the same
 * tokens, answers, distractors, corrupt tokens, template ids and needle spans.
 * With a tokenizer, rows with text are written as text ("prompt", answer
 * strings, "corrupt" text) wherever re-encoding the text gives the same ids,
 * and as ids otherwise; without one (tok NULL), always as ids. Template ids
 * are written as integers (names read from a file are not kept). id is
 * written when d has one, else the row index. The file is written under a temporary
 * name and renamed when complete. Errors: HS_ERR_IO, HS_ERR_OOM. */
hs_status hs_dataset_write_jsonl(const hs_dataset *d, hs_tokenizer *tok, const char *path, hs_err *err);

typedef enum {
    HS_DATASET_IOI_ALL = 0, /* BABA and ABBA */
    HS_DATASET_IOI_BABA,
    HS_DATASET_IOI_ABBA,
} hs_dataset_ioi_templates;

#define HS_DATASET_IOI_N_BABA 15

/* Template t of the IOI generator (0..14 BABA, 15..29 ABBA) with [A] (the
 * indirect object), [B] (the subject), [PLACE] and [OBJECT] slots; NULL out
 * of range. */
const char *hs_dataset_ioi_template(int t);

/* Wang et al. 2022's indirect object identification prompts: the 15 BABA
 * templates and their ABBA versions (first two names swapped), with names
 * that are one token (after a space) for this tokenizer, random places and
 * objects. prompt = the sentence up to the final name; answer = " A" (the
 * indirect object), distractor = " B" (the subject); corrupt = the ABC
 * version: the first clause's two names replaced by two other names (all
 * names distinct), same token length. template_id = the template index,
 * text = the prompt text. Templates are dealt round-robin over a seeded
 * shuffle, so every allowed template occurs about equally often.
 * Errors: HS_ERR_INVALID_ARG (n < 1; fewer than 4 single-token names for this
 * tokenizer), HS_ERR_FORMAT (the tokenizer failed), HS_ERR_OOM. */
hs_status hs_dataset_ioi(hs_tokenizer *tok, const hs_model_config *c, int n, uint64_t seed,
                         hs_dataset_ioi_templates templates, hs_dataset **out, hs_err *err);

/* Wu et al. 2024's needle in a haystack: for each length (outer) and depth
 * (inner) one prompt of at most `length` tokens: sentences of the haystack
 * text file (from a seeded starting sentence, wrapping around), the needle
 * inserted at the sentence boundary nearest fraction `depth` of the haystack
 * tokens, then a newline and the question. needle_start / needle_len give the
 * needle's token span (it decodes to " " + needle, or to needle at depth 0).
 * With answer (non-NULL, non-empty): the one token it becomes appended to each
 * prompt (e.g. " eat" after a question that ends "... San Francisco is") is
 * every prompt's answer, for metrics that read one (logprob, the masking
 * experiments); NULL: answer is NULL. depths lie in [0, 1]; lengths must fit
 * the model context.
 * Errors: HS_ERR_IO (haystack unreadable), HS_ERR_INVALID_ARG (bad depth or
 * length, a length too short for needle and question, an empty haystack, an
 * empty needle, question or answer),
 * HS_ERR_UNSUPPORTED (the tokenizer merges tokens across the needle's
 * boundary; the answer is not one token after some prompt), HS_ERR_OOM. */
hs_status hs_dataset_needle(hs_tokenizer *tok, const hs_model_config *c, const char *haystack_file, const char *needle,
                            const char *question, const char *answer, const double *depths, int n_depths,
                            const int *lengths, int n_lengths, uint64_t seed, hs_dataset **out, hs_err *err);

/* A corpus as perplexity windows (the pruning literature's protocol: GPTQ,
 * SparseGPT and Wanda on WikiText-2): the whole file tokenized once as every
 * prompt is (a BOS opens it where the tokenizer adds one, no EOS), cut into
 * consecutive windows of seq_len tokens, the last partial one
 * dropped. window_bos: each window is BOS and the next seq_len - 1 corpus
 * tokens instead. max_windows > 0: at most that many, from the start. No
 * answers: the loss over every position is the windows' perplexity (exp of
 * the mean over windows).
 * Errors: HS_ERR_IO (the file), HS_ERR_INVALID_ARG (seq_len < 2, a corpus
 * shorter than one window, invalid UTF-8 (its byte offset), window_bos
 * without a BOS, windows beyond a learned-position context), HS_ERR_OOM. */
hs_status hs_dataset_text(hs_tokenizer *tok, const hs_model_config *c, const char *corpus, int seq_len,
                          int max_windows, int window_bos, hs_dataset **out, hs_err *err);

void hs_dataset_free(hs_dataset *d);

/* A borrowed view for the experiments. */
hs_prompts hs_dataset_prompts(const hs_dataset *d);

#ifdef __cplusplus
}
#endif
#endif
