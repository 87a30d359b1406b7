/* hs_tokenizer: the public API. Loading dispatches on the path (folder,
 * tokenizer.json, .gguf); encoding validates UTF-8 once, splits the text on
 * added tokens (leftmost-longest, as `tokenizers`' AddedVocabulary), encodes
 * each remaining segment and adds the post-processor's ids; decoding inverts
 * the encoder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hs_tok_internal.h"

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int looks_like_gguf(const char *path) {
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".gguf")) return 1;
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    if (!f) return 0;
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    return got == 4 && !memcmp(magic, "GGUF", 4);
}

hs_status hs_tokenizer_load(const char *path, hs_tokenizer **out, hs_err *err) {
    hs_status st = HS_OK;
    hs_tokenizer *tok = NULL;
    char *json = NULL, *config = NULL;
    struct stat sb;
    if (!path || !out) return hs_err_set(err, HS_ERR_INVALID_ARG, "hs_tokenizer_load: NULL argument");
    *out = NULL;
    if (stat(path, &sb) != 0) HS_FAIL(err, HS_ERR_IO, "%s: no such file or folder", path);
    size_t n = strlen(path);
    json = malloc(n + 32);
    config = malloc(n + 32);
    if (!json || !config) HS_FAIL(err, HS_ERR_OOM, "%s: out of memory", path);
    if (S_ISDIR(sb.st_mode)) {
        snprintf(json, n + 32, "%s/tokenizer.json", path);
        snprintf(config, n + 32, "%s/tokenizer_config.json", path);
        if (!is_file(json)) HS_FAIL(err, HS_ERR_MISSING, "%s: folder has no tokenizer.json", path);
    } else {
        snprintf(json, n + 32, "%s", path);
        const char *slash = strrchr(path, '/');
        int dir = slash ? (int)(slash - path) : 1;
        snprintf(config, n + 32, "%.*s/tokenizer_config.json", dir, slash ? path : ".");
    }
    HS_CHECK(hs_tok_new(json, &tok, err));
    if (!S_ISDIR(sb.st_mode) && looks_like_gguf(path)) {
        HS_CHECK(hs_tok_load_gguf(tok, path, err));
    } else {
        HS_CHECK(hs_tok_load_json(tok, json, is_file(config) ? config : NULL, err));
    }
    HS_CHECK(hs_tok_finish(tok, err));
    *out = tok;
    tok = NULL;
exit:
    hs_tokenizer_free(tok);
    free(json);
    free(config);
    return st;
}

static void trie_free(hs_tok_trie *t) {
    hs_tok_pairmap_free(&t->edges);
    free(t->term);
}

void hs_tokenizer_free(hs_tokenizer *tok) {
    if (!tok) return;
    hs_tok_scratch_free(tok->scratch);
    pthread_mutex_destroy(&tok->lock);
    hs_tok_steps_free(tok);
    trie_free(&tok->trie_raw);
    trie_free(&tok->trie_norm);
    pcre2_code_free(tok->word_re);
    hs_tok_strmap_free(&tok->by_piece);
    hs_tok_strmap_free(&tok->vocab);
    hs_tok_pairmap_free(&tok->merges);
    free(tok->ent);
    free(tok->text);
    free(tok->added);
    free(tok->path);
    free(tok);
}

/* ---- added tokens ------------------------------------------------------------- */

typedef struct {
    const hs_tokenizer *tok;
    hs_tok_scratch *s;
    hs_tok_ids *out;
    hs_err *err;
} enc_ctx;

/* Longest added token starting at p[0..len): its index, or -1. */
static int32_t trie_longest(const hs_tok_trie *t, const char *p, size_t len, size_t *mlen) {
    int32_t node = t->root[(unsigned char)p[0]], best = -1;
    if (!node) return -1;
    for (size_t j = 1;; j++) {
        if (t->term[node] >= 0) best = t->term[node], *mlen = j;
        if (j == len || !hs_tok_pairmap_get(&t->edges, (uint32_t)node, (unsigned char)p[j], NULL, &node)) break;
    }
    return best;
}

static int is_word_char(const enc_ctx *c, const char *p) {
    int n = hs_tok_utf8_len((unsigned char)*p);
    return pcre2_match(c->tok->word_re, (PCRE2_SPTR)p, (size_t)n, 0, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK,
                       hs_tok_scratch_md(c->s), NULL) >= 0;
}

static size_t char_start_before(const char *p, size_t at) {
    size_t i = at - 1;
    while (i > 0 && ((unsigned char)p[i] & 0xC0) == 0x80) i--;
    return i;
}

static size_t ws_left(const char *p, size_t at, size_t floor) {
    while (at > floor) {
        size_t i = char_start_before(p, at);
        uint32_t cp;
        hs_tok_utf8_decode(p + i, &cp);
        if (!hs_tok_is_white_space(cp)) break;
        at = i;
    }
    return at;
}

static size_t ws_right(const char *p, size_t at, size_t len) {
    while (at < len) {
        uint32_t cp;
        int n = hs_tok_utf8_decode(p + at, &cp);
        if (!hs_tok_is_white_space(cp)) break;
        at += (size_t)n;
    }
    return at;
}

static hs_status encode_gap(enc_ctx *c, const char *p, size_t len, size_t base, int pass);

/* Splits p[0..len) (starting at byte base of the input) on the tokens of
 * trie; gaps go to the next pass (normalized tokens) or to the model. */
static hs_status split_added(enc_ctx *c, const hs_tok_trie *trie, const char *p, size_t len, size_t base,
                             int pass) {
    hs_status st;
    size_t done = 0; /* end of the last split */
    for (size_t i = 0; i < len;) {
        size_t mlen = 0;
        int32_t k = trie->term ? trie_longest(trie, p + i, len - i, &mlen) : -1;
        if (k < 0) {
            i++;
            continue;
        }
        const hs_tok_added *a = &c->tok->added[k];
        size_t s = i, e = i + mlen;
        i = e; /* the search goes on after the match, even a discarded one */
        if (a->single_word && ((s > 0 && is_word_char(c, p + char_start_before(p, s))) ||
                               (e < len && is_word_char(c, p + e))))
            continue;
        if (a->lstrip) s = ws_left(p, s, done);
        if (a->rstrip) e = ws_right(p, e, len);
        if (s > done && (st = encode_gap(c, p + done, s - done, base + done, pass + 1))) return st;
        if (hs_tok_ids_push(c->out, a->id)) return hs_err_set(c->err, HS_ERR_OOM, "tokenizer: out of memory");
        if (e > done) done = e;
    }
    if (len > done) return encode_gap(c, p + done, len - done, base + done, pass + 1);
    return HS_OK;
}

/* Normalized added tokens match the normalized text, as in HF tokenizers: the
 * gap is normalized whole, then split (the loader allows this only for
 * normalizers that leave normalized text as it is, so the pieces may go
 * through the normalizer again). */
static hs_status encode_gap(enc_ctx *c, const char *p, size_t len, size_t base, int pass) {
    if (pass == 1 && c->tok->trie_norm.term) {
        if (!c->tok->n_norm) return split_added(c, &c->tok->trie_norm, p, len, base, pass);
        const char *q = p;
        size_t qlen = len;
        if (hs_tok_normalize(c->tok, c->s, &q, &qlen)) return hs_err_set(c->err, HS_ERR_OOM, "tokenizer: out of memory");
        if (q == p) return split_added(c, &c->tok->trie_norm, p, len, base, pass); /* already normalized */
        char *own = malloc(qlen + 1); /* the scratch buffers are reused below */
        if (!own) return hs_err_set(c->err, HS_ERR_OOM, "tokenizer: out of memory");
        memcpy(own, q, qlen);
        hs_status st = split_added(c, &c->tok->trie_norm, own, qlen, base, pass);
        free(own);
        return st;
    }
    return hs_tok_encode_segment(c->tok, c->s, p, len, base == 0, c->out, c->err);
}

static void add_stats(hs_tokenizer *tok, hs_tok_scratch *s) {
    hs_tokenizer_stats *d = hs_tok_scratch_stats(s);
    uint64_t *src = (uint64_t *)d, *dst = (uint64_t *)&tok->stats;
    for (size_t i = 0; i < sizeof *d / sizeof(uint64_t); i++) __atomic_fetch_add(&dst[i], src[i], __ATOMIC_RELAXED);
    memset(d, 0, sizeof *d);
}

hs_status hs_tokenizer_encode(hs_tokenizer *tok, const char *text, size_t len, int add_special,
                              int32_t **ids, int *n, hs_err *err) {
    hs_status st = HS_OK;
    hs_tok_ids out = {0};
    hs_tok_scratch *s = NULL;
    int locked = 0;
    if (!tok || !ids || !n || (!text && len)) return hs_err_set(err, HS_ERR_INVALID_ARG, "hs_tokenizer_encode: NULL argument");
    *ids = NULL;
    *n = 0;
    size_t valid = text ? hs_tok_utf8_valid(text, len) : 0;
    if (valid != len) HS_FAIL(err, HS_ERR_INVALID_ARG, "tokenizer: text is not valid UTF-8 at byte %zu", valid);
    if (len > (size_t)INT32_MAX) HS_FAIL(err, HS_ERR_INVALID_ARG, "tokenizer: text of %zu bytes is too long", len);
    /* The shared scratch keeps the pre-token cache warm; a concurrent caller
     * gets a private one instead of waiting. */
    if (pthread_mutex_trylock(&tok->lock) == 0) {
        locked = 1;
        if (!tok->scratch) tok->scratch = hs_tok_scratch_new(tok);
        s = tok->scratch;
    } else {
        s = hs_tok_scratch_new(tok);
    }
    if (!s || hs_tok_grow(&out.v, &out.cap, len / 3 + 16, sizeof *out.v))
        HS_FAIL(err, HS_ERR_OOM, "tokenizer: out of memory");
    hs_tok_scratch_stats(s)->bytes += len;
    if (add_special)
        for (int i = 0; i < tok->n_prefix; i++)
            if (hs_tok_ids_push(&out, tok->prefix[i])) HS_FAIL(err, HS_ERR_OOM, "tokenizer: out of memory");
    enc_ctx c = {tok, s, &out, err};
    HS_CHECK(split_added(&c, &tok->trie_raw, text, len, 0, 0));
    if (add_special)
        for (int i = 0; i < tok->n_suffix; i++)
            if (hs_tok_ids_push(&out, tok->suffix[i])) HS_FAIL(err, HS_ERR_OOM, "tokenizer: out of memory");
    if (out.n > (size_t)INT32_MAX) HS_FAIL(err, HS_ERR_INVALID_ARG, "tokenizer: too many tokens");
    *ids = out.v;
    *n = (int)out.n;
    out.v = NULL;
exit:
    if (s) add_stats(tok, s);
    if (locked) pthread_mutex_unlock(&tok->lock);
    else hs_tok_scratch_free(s);
    free(out.v);
    return st;
}

/* ---- decoding -------------------------------------------------------------------- */

hs_status hs_tokenizer_decode(const hs_tokenizer *tok, const int32_t *ids, int n, int flags,
                              char **text, size_t *len, hs_err *err) {
    hs_status st = HS_OK;
    char *buf = NULL;
    size_t cap = 0, o = 0;
    if (!tok || !text || !len || (!ids && n) || n < 0)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "hs_tokenizer_decode: bad argument");
    *text = NULL;
    *len = 0;
    /* The post-processor's leading ids (BOS) do not end the first segment. */
    int lead = tok->n_prefix > 0 && n >= tok->n_prefix &&
               !memcmp(ids, tok->prefix, (size_t)tok->n_prefix * sizeof *ids) ? tok->n_prefix : 0;
    int seg_start = 1, first_seg = 1;
    if (hs_tok_grow(&buf, &cap, 64, 1)) HS_FAIL(err, HS_ERR_OOM, "tokenizer: out of memory");
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->n_ids || !(tok->ent[id].flags & HS_TOKF_USED))
            HS_FAIL(err, HS_ERR_INVALID_ARG, "tokenizer: id %d (position %d) is not in the vocabulary of %d",
                    (int)id, i, (int)tok->n_ids);
        const hs_tok_entry *e = &tok->ent[id];
        const char *d = tok->text + e->dec_off;
        size_t dl = e->dec_len;
        if (e->flags & HS_TOKF_ADDED) {
            if (i >= lead) seg_start = 1, first_seg = 0;
            if ((flags & HS_TOK_DECODE_SKIP_SPECIAL) && (e->flags & HS_TOKF_SPECIAL)) continue;
        } else if (seg_start) {
            int strip = tok->strip_mode == HS_TOK_PREPEND_ALWAYS ||
                        (tok->strip_mode == HS_TOK_PREPEND_FIRST && first_seg);
            if (strip && dl && d[0] == ' ') d++, dl--;
            seg_start = 0;
        }
        if (hs_tok_grow(&buf, &cap, o + dl + 1, 1)) HS_FAIL(err, HS_ERR_OOM, "tokenizer: out of memory");
        memcpy(buf + o, d, dl);
        o += dl;
    }
    buf[o] = 0;
    *text = buf;
    *len = o;
    buf = NULL;
exit:
    free(buf);
    return st;
}

/* ---- accessors ----------------------------------------------------------------------- */

const char *hs_tokenizer_token_piece(const hs_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->n_ids || !(tok->ent[id].flags & HS_TOKF_USED)) return NULL;
    return tok->text + tok->ent[id].piece_off;
}

int32_t hs_tokenizer_piece_id(const hs_tokenizer *tok, const char *piece) {
    return tok && piece ? hs_tok_strmap_get(&tok->by_piece, piece, strlen(piece)) : -1;
}

int hs_tokenizer_is_special(const hs_tokenizer *tok, int32_t id) {
    return tok && id >= 0 && id < tok->n_ids && (tok->ent[id].flags & HS_TOKF_SPECIAL);
}

int32_t hs_tokenizer_vocab_size(const hs_tokenizer *tok) { return tok ? tok->n_ids : 0; }
int32_t hs_tokenizer_bos_id(const hs_tokenizer *tok) { return tok ? tok->bos_id : -1; }
int32_t hs_tokenizer_eos_id(const hs_tokenizer *tok) { return tok ? tok->eos_id : -1; }

int hs_tokenizer_add_bos(const hs_tokenizer *tok) {
    return tok && tok->bos_id >= 0 && tok->n_prefix > 0 && tok->prefix[0] == tok->bos_id;
}

int hs_tokenizer_add_eos(const hs_tokenizer *tok) {
    return tok && tok->eos_id >= 0 && tok->n_suffix > 0 && tok->suffix[tok->n_suffix - 1] == tok->eos_id;
}

const char *hs_tokenizer_describe(const hs_tokenizer *tok) { return tok ? tok->desc : ""; }

void hs_tokenizer_get_stats(const hs_tokenizer *tok, hs_tokenizer_stats *out) {
    if (!tok || !out) return;
    const uint64_t *src = (const uint64_t *)&tok->stats;
    uint64_t *dst = (uint64_t *)out;
    for (size_t i = 0; i < sizeof *out / sizeof(uint64_t); i++) dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}
