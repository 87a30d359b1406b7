/* hs_tokenizer: text <-> token ids, matching HuggingFace `tokenizers` exactly.
 *
 * Supported (anything else is refused at load with HS_ERR_UNSUPPORTED naming
 * the file and key, never silently mis-tokenised):
 *  - BPE models from tokenizer.json: merges as "a b" strings or ["a", "b"]
 *    pairs, ignore_merges, byte_fallback (<0xXX> tokens), unk_token, fuse_unk.
 *    Refused: dropout > 0, continuing_subword_prefix, end_of_word_suffix, and
 *    every other model type (WordPiece, Unigram, WordLevel).
 *  - normalizer: none, NFC (Qwen2, GPT-NeoX/Pythia; Unicode tables from
 *    scripts/gen-unicode-nfc.py), or Prepend / Replace(String pattern) steps
 *    (Llama-2's "legacy" SentencePiece layout), alone or in a Sequence.
 *    Refused: NFKC, NFD, Lowercase, Strip, Precompiled, Replace with a Regex
 *    pattern, ...
 *  - pre_tokenizer: ByteLevel (GPT-2 regex when use_regex, add_prefix_space),
 *    Split (Regex or String pattern; behavior Isolated or Removed; not
 *    inverted), Digits, Metaspace (prepend_scheme always/first/never, split),
 *    and Sequences of these with ByteLevel last. Regexes run through PCRE2
 *    (UTF + UCP, JIT when available).
 *  - added tokens: matched leftmost-longest, with lstrip / rstrip /
 *    single_word as in `tokenizers`: normalized = false ones on the raw text
 *    first, then normalized = true ones on the normalized text (allowed with
 *    no normalizer or NFC alone).
 *  - post_processor: TemplateProcessing (single sequence), RobertaProcessing,
 *    BertProcessing, ByteLevel (no tokens), and Sequences of these: they give
 *    the ids added around the text when add_special is set.
 *  - Not read: the decoder section (decoding inverts the encoder instead),
 *    truncation and padding (headsweep encodes whole texts).
 *  - GGUF (tokenizer.ggml.*): model "gpt2" (byte-level BPE with merges; the
 *    split is chosen by tokenizer.ggml.pre: gpt2, the Llama-3 family, the
 *    Qwen2 family, smollm/starcoder-style digit splitting, ...) and model
 *    "llama" (SentencePiece BPE: merges rebuilt from tokenizer.ggml.scores the
 *    way transformers does, byte fallback, Metaspace split with
 *    prepend_scheme "first", or none when tokenizer.ggml.add_space_prefix is
 *    false). Control tokens (type 3) and the tokens named by the unknown /
 *    bos / eos / padding ids become special added tokens, user-defined ones
 *    (type 4) plain added tokens, as transformers' GGUF loader does. BOS/EOS
 *    from tokenizer.ggml.add_bos_token / add_eos_token (llama default: BOS).
 *    Where transformers' GGUF loader loses what the model's own tokenizer
 *    does, headsweep follows the model (and llama.cpp): "smollm"/"starcoder"
 *    split digits first, the Llama-3 names set ignore_merges, add_space_prefix
 *    = false is honoured, and an unknown_token_id is used for characters with
 *    no byte token.
 *
 * Encoding cost is linear in the input: one UTF-8 validation, then PCRE2 with
 * PCRE2_NO_UTF_CHECK, and a heap-based merge loop (O(n log n) per pre-token)
 * behind a cache of recent pre-tokens.
 *
 * Threads: a handle may be used from several threads at once. It owns one
 * scratch area (cache, PCRE2 match data) taken with a try-lock; a call that
 * finds it busy builds a private one for the call (slower, same result). */
#ifndef HS_TOKENIZER_H
#define HS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "headsweep/hs_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hs_tokenizer hs_tokenizer;

/* Loads a tokenizer from path: a tokenizer.json file, a folder containing
 * tokenizer.json (its tokenizer_config.json, when present, names the BOS and
 * EOS tokens), or a .gguf file. *out is set only on success; free it with
 * hs_tokenizer_free.
 * Errors: HS_ERR_IO (cannot open/read), HS_ERR_FORMAT (malformed JSON, bad
 * merges, ids out of range, ...), HS_ERR_UNSUPPORTED (a feature listed as
 * refused above), HS_ERR_MISSING (required key absent), HS_ERR_OOM. The
 * message names the file and the key at fault. */
hs_status hs_tokenizer_load(const char *path, hs_tokenizer **out, hs_err *err);

/* Releases everything. NULL is a no-op. */
void hs_tokenizer_free(hs_tokenizer *tok);

/* Encodes len bytes of UTF-8 text (NUL bytes allowed; text may be NULL when
 * len is 0). add_special != 0 adds the post-processor's tokens (e.g. BOS).
 * *ids is a fresh malloc'd array of *n ids (free() it; non-NULL even when
 * *n == 0). Added/special tokens spelled in the text are always matched, as
 * in `tokenizers`.
 * Errors: HS_ERR_INVALID_ARG (text is not valid UTF-8: the message gives the
 * byte offset; NULL arguments), HS_ERR_FORMAT (PCRE2 failed on the input, e.g.
 * a resource limit), HS_ERR_OOM. On error *ids is NULL and *n is 0. */
hs_status hs_tokenizer_encode(hs_tokenizer *tok, const char *text, size_t len, int add_special,
                              int32_t **ids, int *n, hs_err *err);

/* Decode flags. */
enum {
    HS_TOK_DECODE_SKIP_SPECIAL = 1, /* drop special tokens (BOS, <|im_end|>, ...) */
};

/* Decodes n ids into a fresh malloc'd, NUL-terminated byte string *text of
 * *len bytes (free() it; it may contain NUL bytes and, for byte-level
 * vocabularies, invalid UTF-8 when the ids split a character).
 * Round trip: decode(encode(t, add_special = 0)) == t for every t that
 * encodes, with three exceptions inherent in the tokenizers: added tokens with
 * lstrip/rstrip swallow the whitespace next to them; SentencePiece
 * vocabularies encode U+2581 the same as a space; and with a Metaspace
 * pre-tokenizer " x" and "x" encode alike (decode gives "x"). The space a
 * SentencePiece tokenizer prepends is removed where the encoder put it.
 * Errors: HS_ERR_INVALID_ARG (an id outside [0, vocab size) or unused),
 * HS_ERR_OOM. */
hs_status hs_tokenizer_decode(const hs_tokenizer *tok, const int32_t *ids, int n, int flags,
                              char **text, size_t *len, hs_err *err);

/* The token's spelling in the vocabulary ("Ġworld", "▁the", "<0x0A>",
 * "<|im_start|>"), NUL-terminated, owned by the handle; NULL for an unused or
 * out-of-range id. */
const char *hs_tokenizer_token_piece(const hs_tokenizer *tok, int32_t id);

/* Id of a vocabulary or added token spelled exactly as piece; -1 if none. */
int32_t hs_tokenizer_piece_id(const hs_tokenizer *tok, const char *piece);

/* 1 if id is a special added token (skipped by HS_TOK_DECODE_SKIP_SPECIAL). */
int hs_tokenizer_is_special(const hs_tokenizer *tok, int32_t id);

/* One past the largest id (model vocabulary and added tokens). */
int32_t hs_tokenizer_vocab_size(const hs_tokenizer *tok);

/* BOS / EOS ids, -1 when the tokenizer has none. add_bos / add_eos report
 * whether encode with add_special = 1 puts them there. */
int32_t hs_tokenizer_bos_id(const hs_tokenizer *tok);
int32_t hs_tokenizer_eos_id(const hs_tokenizer *tok);
int hs_tokenizer_add_bos(const hs_tokenizer *tok);
int hs_tokenizer_add_eos(const hs_tokenizer *tok);

/* A one-line description ("byte-level BPE, 49152 tokens, 48900 merges, split
 * Digits+ByteLevel"), owned by the handle. */
const char *hs_tokenizer_describe(const hs_tokenizer *tok);

/* Work counters since load (for tests and benchmarks; approximate when the
 * handle is shared between threads). */
typedef struct {
    uint64_t bytes;        /* input bytes encoded */
    uint64_t pretokens;    /* pre-tokens handed to the BPE model */
    uint64_t cache_hits;   /* pre-tokens answered by the cache */
    uint64_t merges;       /* merges applied */
    uint64_t heap_pops;    /* merge candidates examined (incl. stale ones) */
    uint64_t regex_calls;  /* pcre2_match calls */
} hs_tokenizer_stats;
void hs_tokenizer_get_stats(const hs_tokenizer *tok, hs_tokenizer_stats *out);

#ifdef __cplusplus
}
#endif
#endif
