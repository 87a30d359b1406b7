/* Shared by the hs_dataset files: seeded random numbers, allocation of a
 * dataset with the chosen optional fields, prompt encoding the way every
 * generator and the JSONL reader do it, and a growing string. */
#ifndef HS_DATASET_INTERNAL_H
#define HS_DATASET_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "headsweep/hs_dataset.h"

/* splitmix64: small, seedable, identical on every platform. */
static inline uint64_t hs_ds_next_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n), n >= 1 (modulo bias < n / 2^64: negligible). */
static inline int hs_ds_below(uint64_t *s, int n) { return (int)(hs_ds_next_u64(s) % (uint64_t)n); }

/* The index of the first of ids[0..n) outside the model's vocabulary [0, n_vocab) (a tokenizer's
 * added tokens may lie beyond it), or -1: every generator checks its prompts with it. */
static inline int64_t hs_ds_outside_vocab(const int32_t *ids, int64_t n, int n_vocab) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= n_vocab) return i;
    return -1;
}

/* Optional fields for hs_ds_alloc. */
enum {
    HS_DS_ANSWER = 1 << 0,
    HS_DS_DISTRACTOR = 1 << 1,
    HS_DS_TEMPLATE = 1 << 2,
    HS_DS_TEXT = 1 << 3,
    HS_DS_CORRUPT = 1 << 4,
    HS_DS_NEEDLE = 1 << 5,
    HS_DS_ID = 1 << 6,
};

/* A zero-filled dataset of N rows padded to T with the chosen fields
 * (pointer arrays NULL-filled); what names the dataset in the OOM message. */
hs_status hs_ds_alloc(int N, int T, unsigned fields, const char *what, hs_dataset **out, hs_err *err);

/* 1 when prompts get a BOS prepended (the tokenizer's add-special behaviour). */
int hs_ds_n_bos(const hs_tokenizer *tok);

/* BOS (when the tokenizer adds one) + the ids of text; *ids malloc'd. */
hs_status hs_ds_encode_prompt(hs_tokenizer *tok, const char *text, size_t len, int32_t **ids, int *n, hs_err *err);

/* The one token cont becomes when appended to prompt, whose ids (without
 * BOS) are prompt_ids[0..n_prompt): *id = that token, or -1 when prompt+cont
 * does not encode as prompt_ids + one token (*n_extra then says how many
 * tokens cont added, or -1 if the prompt's own tokens changed). */
hs_status hs_ds_continuation(hs_tokenizer *tok, const char *prompt, size_t plen, const int32_t *prompt_ids,
                             int n_prompt, const char *cont, int32_t *id, int *n_extra, hs_err *err);

/* The whole of a text file, NUL-terminated (*out malloc'd); errors start with
 * what and the path ("needle: haystack PATH: cannot open: ..."). */
hs_status hs_ds_read_text(const char *path, const char *what, char **out, hs_err *err);

/* A growing NUL-terminated string. */
typedef struct {
    char *p;
    size_t n, cap;
} hs_ds_buf;

/* Appends n bytes of s (n = (size_t)-1: strlen); 0 on success, -1 out of memory. */
int hs_ds_buf_add(hs_ds_buf *b, const char *s, size_t n);

#endif
