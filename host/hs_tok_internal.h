/* hs_tokenizer internals shared by the loader (hs_tok_json.c, hs_tok_gguf.c),
 * the vocabulary builder (hs_tok_vocab.c), the pre-tokenizer
 * (hs_tok_pretok.c), the BPE model (hs_tok_bpe.c) and the public API
 * (hs_tokenizer.c). Not a public header. */
#ifndef HS_TOK_INTERNAL_H
#define HS_TOK_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "headsweep/hs_tokenizer.h"

/* ---- small containers (hs_tok_util.c) --------------------------------------- */

/* Bytes -> int32 hash map; keys are copied into the map's arena. */
typedef struct {
    uint32_t off, len, hash;
    int32_t val;
} hs_tok_ent;

typedef struct {
    char *arena;
    size_t arena_len, arena_cap;
    hs_tok_ent *ent;
    uint32_t n_ent, cap_ent;
    uint32_t *slot; /* entry index + 1; 0 = empty */
    uint32_t mask;  /* number of slots - 1 */
} hs_tok_strmap;

int hs_tok_strmap_init(hs_tok_strmap *m, uint32_t expect);
void hs_tok_strmap_free(hs_tok_strmap *m);
void hs_tok_strmap_clear(hs_tok_strmap *m);
int32_t hs_tok_strmap_get(const hs_tok_strmap *m, const char *k, size_t len); /* -1 if absent */
/* Inserts or overwrites; 0 on success, -1 when out of memory. */
int hs_tok_strmap_put(hs_tok_strmap *m, const char *k, size_t len, int32_t val);

/* (u32, u32) -> (rank, value) hash map for merges and the added-token trie. */
typedef struct {
    uint64_t *key; /* UINT64_MAX = empty */
    uint32_t *rank;
    int32_t *val;
    uint32_t mask, n;
} hs_tok_pairmap;

int hs_tok_pairmap_init(hs_tok_pairmap *m, uint32_t expect);
void hs_tok_pairmap_free(hs_tok_pairmap *m);
/* Inserts or overwrites (the later merge of a duplicate pair wins, as in
 * `tokenizers`). 0 on success, -1 when out of memory. */
int hs_tok_pairmap_put(hs_tok_pairmap *m, uint32_t a, uint32_t b, uint32_t rank, int32_t val);
/* Grows *buf (element size es) to hold at least need elements; 0, or -1 when out of memory. */
int hs_tok_pairmap_get(const hs_tok_pairmap *m, uint32_t a, uint32_t b, uint32_t *rank, int32_t *val);

/* Grows *buf (element size es) to hold at least need elements; 0 or -1 (OOM). */
int hs_tok_grow(void *buf, size_t *cap, size_t need, size_t es);

/* Length of the valid UTF-8 prefix of s (== len when all valid). */
size_t hs_tok_utf8_valid(const char *s, size_t len);
/* Byte length of the UTF-8 character starting with byte c (1 for invalid). */
int hs_tok_utf8_len(unsigned char c);
/* Decodes one (valid) character at s; returns its length. */
int hs_tok_utf8_decode(const char *s, uint32_t *cp);
int hs_tok_utf8_encode(uint32_t cp, char *out); /* out has 4 bytes; returns length */
/* Number of code points in len bytes of valid UTF-8. */
size_t hs_tok_utf8_count(const char *s, size_t len);
/* Unicode White_Space (the set `tokenizers` and Oniguruma use for \s). */
int hs_tok_is_white_space(uint32_t cp);

/* GPT-2's byte <-> printable code point table (bytes_to_unicode). */
uint32_t hs_tok_byte_to_cp(unsigned char b);
int hs_tok_cp_to_byte(uint32_t cp); /* -1 if cp is not in the table */

/* ---- the tokenizer ---------------------------------------------------------- */

enum {
    HS_TOKF_USED = 1,    /* the id exists */
    HS_TOKF_MODEL = 2,   /* in the BPE model's vocabulary */
    HS_TOKF_ADDED = 4,   /* an added token (matched in the text, decodes as its content) */
    HS_TOKF_SPECIAL = 8, /* special added token */
    HS_TOKF_BYTE = 16,   /* a byte-fallback token <0xXX>: decodes to one byte */
};

typedef struct {
    uint32_t piece_off, piece_len; /* spelling, NUL-terminated in tok->text */
    uint32_t dec_off, dec_len;     /* bytes this token decodes to */
    uint8_t flags;
} hs_tok_entry;

typedef struct {
    int32_t id;
    uint32_t off, len; /* content in tok->text */
    uint8_t lstrip, rstrip, single_word, normalized, special;
} hs_tok_added;

/* A trie over added-token contents: node 0 is the root; edges in a pairmap
 * (node, byte) -> child; term[node] = index into tok->added or -1. */
typedef struct {
    hs_tok_pairmap edges;
    int32_t *term;
    int32_t n_nodes, cap_nodes;
    int32_t root[256]; /* the root's children without hashing (0 = none): most bytes stop here */
} hs_tok_trie;

enum { HS_TOK_PRE_SPLIT, HS_TOK_PRE_PREFIX_SPACE, HS_TOK_PRE_METASPACE };
/* A Split's behavior (tokenizer.json's): a match is its own piece, dropped, or the end of
 * the piece before it. */
enum { HS_TOK_SPLIT_ISOLATED = 0, HS_TOK_SPLIT_REMOVED, HS_TOK_SPLIT_MERGED_PREV };
enum { HS_TOK_PREPEND_NEVER, HS_TOK_PREPEND_ALWAYS, HS_TOK_PREPEND_FIRST };

typedef struct {
    int kind;
    pcre2_code *re; /* SPLIT */
    int removed;    /* SPLIT: matches are dropped instead of isolated */
    int merge_prev; /* SPLIT: each match ends the piece before it (MergedWithPrevious: Gemma) */
    int prepend;    /* METASPACE: HS_TOK_PREPEND_* */
    int split;      /* METASPACE: split before each replacement char */
    int mapped;     /* SPLIT after ByteLevel: matched against the text in GPT-2's byte alphabet */
    char label[48]; /* for hs_tokenizer_describe */
} hs_tok_step;

enum { HS_TOK_NORM_PREPEND, HS_TOK_NORM_REPLACE, HS_TOK_NORM_NFC };
typedef struct {
    int kind;
    char *a, *b; /* PREPEND: a = text; REPLACE: a -> b; NFC: unused */
    size_t alen, blen;
} hs_tok_norm;

#define HS_TOK_MAX_STEPS 8
#define HS_TOK_MAX_NORM 8
#define HS_TOK_MAX_POST 8

typedef struct hs_tok_scratch hs_tok_scratch;

struct hs_tokenizer {
    char *path;
    char desc[256];

    /* vocabulary: every id, its spelling and what it decodes to */
    int32_t n_ids;
    hs_tok_entry *ent;
    char *text; /* arena for spellings, decoded bytes and added contents */
    size_t text_len, text_cap;
    hs_tok_strmap by_piece; /* spelling -> id (model vocabulary, then added tokens) */

    /* BPE model */
    int byte_level;        /* pieces spelled in GPT-2's byte alphabet */
    hs_tok_strmap vocab;   /* model-space bytes (raw bytes when byte_level) -> id */
    hs_tok_pairmap merges; /* (left id, right id) -> (rank, merged id) */
    int32_t n_merges;
    int32_t byte_id[256];     /* byte_level: id of each byte's symbol, -1 if absent */
    int32_t fallback_id[256]; /* <0xXX> ids when byte_fallback, else -1 */
    int32_t ascii_id[128];    /* not byte_level: single-character ids, -1 if absent */
    int byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;

    /* normalizer and pre-tokenizer */
    int n_norm;
    hs_tok_norm norm[HS_TOK_MAX_NORM];
    int n_steps;
    hs_tok_step steps[HS_TOK_MAX_STEPS];
    char space_mark[8]; /* SentencePiece's "▁" (decodes to a space), "" if none */
    int space_mark_len;
    int strip_mode; /* decode: drop the prepended space: HS_TOK_PREPEND_* */

    /* added tokens */
    int32_t n_added;
    hs_tok_added *added;
    hs_tok_trie trie_raw, trie_norm; /* normalized = false / true tokens */
    pcre2_code *word_re;            /* single_word: "is a word character" */

    /* post-processor */
    int n_prefix, n_suffix;
    int32_t prefix[HS_TOK_MAX_POST], suffix[HS_TOK_MAX_POST];
    int32_t bos_id, eos_id;

    /* scratch shared by encode calls (try-locked) and counters */
    pthread_mutex_t lock;
    hs_tok_scratch *scratch;
    hs_tokenizer_stats stats;
};

/* ---- vocabulary building (hs_tok_vocab.c) ------------------------------------ */

hs_status hs_tok_new(const char *path, hs_tokenizer **out, hs_err *err);
/* Copies len bytes (plus a NUL) into tok->text; *off receives the offset. */
int hs_tok_text_add(hs_tokenizer *tok, const char *s, size_t len, uint32_t *off);
/* Makes ids [0, n) addressable (new entries unused). */
hs_status hs_tok_reserve_ids(hs_tokenizer *tok, int32_t n, hs_err *err);
/* Registers a model-vocabulary token: spelling and model-space bytes (raw may
 * be NULL: the token is then unreachable by merging from bytes). */
hs_status hs_tok_add_model_token(hs_tokenizer *tok, int32_t id, const char *piece, size_t plen,
                                 const char *raw, size_t rlen, hs_err *err);
hs_status hs_tok_add_added_token(hs_tokenizer *tok, const hs_tok_added *a, const char *content,
                                 hs_err *err);
/* After all tokens: byte tables, decode strings, tries, description. */
hs_status hs_tok_finish(hs_tokenizer *tok, hs_err *err);
/* Raw bytes of a byte-level spelling; -1 if a character is outside the
 * alphabet. out must hold plen bytes. */
long hs_tok_unbyte(const char *piece, size_t plen, char *out);
/* Byte-level spelling of raw bytes; out must hold 2*len bytes; returns length. */
size_t hs_tok_tobyte(const char *raw, size_t len, char *out);

/* ---- pre-tokenizer (hs_tok_pretok.c) ------------------------------------------ */

extern const char hs_tok_re_gpt2[];
extern const char hs_tok_re_llama3[];
extern const char hs_tok_re_qwen2[];

/* Compiles an Oniguruma-style pattern (as in tokenizer.json) with PCRE2;
 * \s and \S are rewritten to Unicode White_Space as Oniguruma reads them. */
hs_status hs_tok_regex_compile(const char *pattern, size_t len, int literal, pcre2_code **out,
                               const char *what, hs_err *err);
hs_status hs_tok_add_split(hs_tokenizer *tok, const char *pattern, int literal, int behavior,
                           const char *label, const char *what, hs_err *err);
hs_status hs_tok_add_step(hs_tokenizer *tok, const hs_tok_step *st, const char *what, hs_err *err);
void hs_tok_steps_free(hs_tokenizer *tok);

/* ---- encoding (hs_tok_bpe.c, hs_tok_pretok.c) ---------------------------------- */

/* Growable id output. */
typedef struct {
    int32_t *v;
    size_t n, cap;
} hs_tok_ids;
int hs_tok_ids_push(hs_tok_ids *o, int32_t id);

hs_tok_scratch *hs_tok_scratch_new(const hs_tokenizer *tok);
void hs_tok_scratch_free(hs_tok_scratch *s);
hs_tokenizer_stats *hs_tok_scratch_stats(hs_tok_scratch *s);

/* The normalizer in place of *p, *len (the result may live in s's
 * buffers); -1 when out of memory. */
int hs_tok_normalize(const hs_tokenizer *tok, hs_tok_scratch *s, const char **p, size_t *len);
/* Normalises and pre-tokenises one segment of text (between added tokens)
 * and appends the BPE ids. first: the segment starts the input. */
hs_status hs_tok_encode_segment(const hs_tokenizer *tok, hs_tok_scratch *s, const char *text,
                                size_t len, int first, hs_tok_ids *out, hs_err *err);
/* BPE of one pre-token (model-space bytes). */
hs_status hs_tok_bpe_word(const hs_tokenizer *tok, hs_tok_scratch *s, const char *w, size_t len,
                          hs_tok_ids *out, hs_err *err);
/* Per-level text buffers of the scratch (level < HS_TOK_MAX_STEPS + 2). */
char *hs_tok_scratch_buf(hs_tok_scratch *s, int level, size_t need);
pcre2_match_data *hs_tok_scratch_md(hs_tok_scratch *s);
pcre2_match_context *hs_tok_scratch_mctx(hs_tok_scratch *s);

/* ---- loaders --------------------------------------------------------------------- */

hs_status hs_tok_load_json(hs_tokenizer *tok, const char *json_path, const char *config_path,
                           hs_err *err);
hs_status hs_tok_load_gguf(hs_tokenizer *tok, const char *path, hs_err *err);

#endif
