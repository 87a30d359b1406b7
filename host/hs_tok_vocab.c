/* hs_tok_vocab: building a tokenizer's vocabulary, shared by the
 * tokenizer.json and GGUF loaders: ids and spellings, what each id decodes
 * to, the byte tables the BPE model starts from, and the added-token tries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_tok_internal.h"

hs_status hs_tok_new(const char *path, hs_tokenizer **out, hs_err *err) {
    hs_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return hs_err_set(err, HS_ERR_OOM, "%s: out of memory", path);
    t->path = strdup(path);
    t->unk_id = t->bos_id = t->eos_id = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = t->fallback_id[i] = -1;
    for (int i = 0; i < 128; i++) t->ascii_id[i] = -1;
    pthread_mutex_init(&t->lock, NULL);
    if (!t->path || hs_tok_strmap_init(&t->by_piece, 1024) || hs_tok_strmap_init(&t->vocab, 1024) ||
        hs_tok_pairmap_init(&t->merges, 1024)) {
        hs_tokenizer_free(t);
        return hs_err_set(err, HS_ERR_OOM, "%s: out of memory", path);
    }
    *out = t;
    return HS_OK;
}

int hs_tok_text_add(hs_tokenizer *tok, const char *s, size_t len, uint32_t *off) {
    if (tok->text_len + len + 1 > UINT32_MAX) return -1;
    /* s may point into the arena itself (re-adding a spelling as an added
     * token): keep its offset across the realloc. */
    int inside = tok->text && s >= tok->text && s < tok->text + tok->text_cap;
    size_t at = inside ? (size_t)(s - tok->text) : 0;
    if (hs_tok_grow(&tok->text, &tok->text_cap, tok->text_len + len + 1, 1)) return -1;
    if (inside) s = tok->text + at;
    if (len) memcpy(tok->text + tok->text_len, s, len);
    tok->text[tok->text_len + len] = 0;
    *off = (uint32_t)tok->text_len;
    tok->text_len += len + 1;
    return 0;
}

/* Ids above this are refused: a vocabulary of 16M tokens is not a real one. */
#define HS_TOK_MAX_IDS (1 << 24)

hs_status hs_tok_reserve_ids(hs_tokenizer *tok, int32_t n, hs_err *err) {
    if (n <= tok->n_ids) return HS_OK;
    if (n > HS_TOK_MAX_IDS)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: token id %d is out of range (max %d)", tok->path,
                          (int)n - 1, HS_TOK_MAX_IDS - 1);
    hs_tok_entry *e = realloc(tok->ent, (size_t)n * sizeof *e);
    if (!e) return hs_err_set(err, HS_ERR_OOM, "%s: out of memory", tok->path);
    memset(e + tok->n_ids, 0, (size_t)(n - tok->n_ids) * sizeof *e);
    tok->ent = e;
    tok->n_ids = n;
    return HS_OK;
}

hs_status hs_tok_add_model_token(hs_tokenizer *tok, int32_t id, const char *piece, size_t plen,
                                 const char *raw, size_t rlen, hs_err *err) {
    hs_status st = hs_tok_reserve_ids(tok, id + 1, err);
    if (st) return st;
    hs_tok_entry *e = &tok->ent[id];
    if (e->flags & HS_TOKF_MODEL)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: token id %d is given to two tokens ('%s' and '%.*s')",
                          tok->path, (int)id, tok->text + e->piece_off, (int)plen, piece);
    if (hs_tok_text_add(tok, piece, plen, &e->piece_off) || hs_tok_strmap_put(&tok->by_piece, piece, plen, id) ||
        (raw && hs_tok_strmap_put(&tok->vocab, raw, rlen, id)))
        return hs_err_set(err, HS_ERR_OOM, "%s: out of memory", tok->path);
    e->piece_len = (uint32_t)plen;
    e->flags |= HS_TOKF_USED | HS_TOKF_MODEL;
    return HS_OK;
}

hs_status hs_tok_add_added_token(hs_tokenizer *tok, const hs_tok_added *a, const char *content,
                                 hs_err *err) {
    if (a->len == 0) return HS_OK; /* `tokenizers` ignores empty added tokens */
    hs_status st = hs_tok_reserve_ids(tok, a->id + 1, err);
    if (st) return st;
    size_t cap = (size_t)tok->n_added;
    if (hs_tok_grow(&tok->added, &cap, (size_t)tok->n_added + 1, sizeof *tok->added))
        return hs_err_set(err, HS_ERR_OOM, "%s: out of memory", tok->path);
    hs_tok_added *d = &tok->added[tok->n_added];
    *d = *a;
    hs_tok_entry *e = &tok->ent[a->id];
    /* content may point into tok->text, which text_add can move: read it back from its copy */
    if (hs_tok_text_add(tok, content, a->len, &d->off) ||
        hs_tok_strmap_put(&tok->by_piece, tok->text + d->off, a->len, a->id))
        return hs_err_set(err, HS_ERR_OOM, "%s: out of memory", tok->path);
    if (!(e->flags & HS_TOKF_USED)) {
        e->piece_off = d->off;
        e->piece_len = a->len;
    }
    e->flags |= HS_TOKF_USED | HS_TOKF_ADDED | (a->special ? HS_TOKF_SPECIAL : 0);
    e->dec_off = d->off;
    e->dec_len = a->len;
    tok->n_added++;
    return HS_OK;
}

long hs_tok_unbyte(const char *piece, size_t plen, char *out) {
    size_t i = 0, n = 0;
    while (i < plen) {
        uint32_t cp;
        i += (size_t)hs_tok_utf8_decode(piece + i, &cp);
        int b = hs_tok_cp_to_byte(cp);
        if (b < 0) return -1;
        out[n++] = (char)b;
    }
    return (long)n;
}

size_t hs_tok_tobyte(const char *raw, size_t len, char *out) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += (size_t)hs_tok_utf8_encode(hs_tok_byte_to_cp((unsigned char)raw[i]), out + n);
    return n;
}

/* "<0xAB>" -> 0xAB, else -1 (the spelling `tokenizers` gives byte tokens). */
static int byte_token_value(const char *p, size_t len) {
    if (len != 6 || memcmp(p, "<0x", 3) || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Decoded bytes of a model token (added tokens were set when added). */
static int set_decoding(hs_tokenizer *tok, int32_t id, char **tmp, size_t *tmp_cap) {
    hs_tok_entry *e = &tok->ent[id];
    const char *p = tok->text + e->piece_off;
    size_t len = e->piece_len;
    if (hs_tok_grow(tmp, tmp_cap, len * 3 + 1, 1)) return -1;
    long n = -1;
    if (tok->byte_level) {
        n = hs_tok_unbyte(p, len, *tmp);
    } else if (tok->byte_fallback && byte_token_value(p, len) >= 0) {
        (*tmp)[0] = (char)byte_token_value(p, len);
        n = 1;
        e->flags |= HS_TOKF_BYTE;
    } else if (tok->space_mark_len) {
        size_t m = 0;
        for (size_t i = 0; i < len;) {
            if (i + (size_t)tok->space_mark_len <= len && !memcmp(p + i, tok->space_mark, (size_t)tok->space_mark_len)) {
                (*tmp)[m++] = ' ';
                i += (size_t)tok->space_mark_len;
            } else {
                (*tmp)[m++] = p[i++];
            }
        }
        n = (long)m;
    }
    if (n < 0) { /* as `tokenizers` decodes it: the spelling itself */
        e->dec_off = e->piece_off;
        e->dec_len = e->piece_len;
        return 0;
    }
    e->dec_len = (uint32_t)n;
    return hs_tok_text_add(tok, *tmp, (size_t)n, &e->dec_off);
}

static int trie_insert(hs_tok_trie *t, const char *s, size_t len, int32_t idx) {
    if (!t->term) {
        if (hs_tok_pairmap_init(&t->edges, 64)) return -1;
        size_t cap = 0;
        if (hs_tok_grow(&t->term, &cap, 64, sizeof *t->term)) return -1;
        t->cap_nodes = (int32_t)cap;
        t->term[0] = -1;
        t->n_nodes = 1;
    }
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t child;
        if (!hs_tok_pairmap_get(&t->edges, (uint32_t)node, (unsigned char)s[i], NULL, &child)) {
            size_t cap = (size_t)t->cap_nodes;
            if (hs_tok_grow(&t->term, &cap, (size_t)t->n_nodes + 1, sizeof *t->term)) return -1;
            t->cap_nodes = (int32_t)cap;
            child = t->n_nodes++;
            t->term[child] = -1;
            if (hs_tok_pairmap_put(&t->edges, (uint32_t)node, (unsigned char)s[i], 0, child)) return -1;
            if (node == 0) t->root[(unsigned char)s[i]] = child;
        }
        node = child;
    }
    t->term[node] = idx; /* a later duplicate wins, as in `tokenizers` */
    return 0;
}

static void describe(hs_tokenizer *tok) {
    static const char *const norm_names[] = {[HS_TOK_NORM_PREPEND] = "Prepend", [HS_TOK_NORM_REPLACE] = "Replace",
                                             [HS_TOK_NORM_NFC] = "NFC"};
    char pre[160] = "", norm[64] = "";
    size_t n = 0, m = 0;
    for (int i = 0; i < tok->n_steps && n + 1 < sizeof pre; i++)
        n += (size_t)snprintf(pre + n, sizeof pre - n, "%s%s", i ? "+" : "", tok->steps[i].label);
    if (n >= sizeof pre) pre[sizeof pre - 1] = 0;
    for (int i = 0; i < tok->n_norm && m + 1 < sizeof norm; i++)
        m += (size_t)snprintf(norm + m, sizeof norm - m, "%s%s", i ? "+" : ", normalizer ", norm_names[tok->norm[i].kind]);
    if (m >= sizeof norm) norm[sizeof norm - 1] = 0;
    const int len = snprintf(tok->desc, sizeof tok->desc, "%s BPE, %d ids, %d merges, %d added, pre-tokenizer %s%s%s",
                             tok->byte_level ? "byte-level" : "SentencePiece-style", (int)tok->n_ids,
                             (int)tok->n_merges, (int)tok->n_added, n ? pre : "none", norm,
                             tok->byte_fallback ? ", byte fallback" : "");
    (void)len; /* a description: cut short if it must be */
}

hs_status hs_tok_finish(hs_tokenizer *tok, hs_err *err) {
    hs_status st = HS_OK;
    char *tmp = NULL;
    size_t tmp_cap = 0;
    int single_word = 0;
    for (int b = 0; b < 256; b++) {
        char c = (char)b, fb[8];
        if (tok->byte_level) tok->byte_id[b] = hs_tok_strmap_get(&tok->vocab, &c, 1);
        else if (b < 128) tok->ascii_id[b] = hs_tok_strmap_get(&tok->vocab, &c, 1);
        snprintf(fb, sizeof fb, "<0x%02X>", b);
        if (tok->byte_fallback) tok->fallback_id[b] = hs_tok_strmap_get(&tok->vocab, fb, 6);
    }
    for (int32_t id = 0; id < tok->n_ids; id++) {
        hs_tok_entry *e = &tok->ent[id];
        if ((e->flags & HS_TOKF_MODEL) && !(e->flags & HS_TOKF_ADDED) && set_decoding(tok, id, &tmp, &tmp_cap))
            HS_FAIL(err, HS_ERR_OOM, "%s: out of memory", tok->path);
    }
    for (int32_t i = 0; i < tok->n_added; i++) {
        const hs_tok_added *a = &tok->added[i];
        hs_tok_trie *t = a->normalized ? &tok->trie_norm : &tok->trie_raw;
        if (trie_insert(t, tok->text + a->off, a->len, i)) HS_FAIL(err, HS_ERR_OOM, "%s: out of memory", tok->path);
        single_word |= a->single_word;
    }
    if (single_word) {
        /* Rust regex's \w, which `tokenizers` uses for single_word boundaries. */
        static const char word[] = "[\\p{L}\\p{M}\\p{Nd}\\p{Nl}\\p{Pc}\\x{200C}\\x{200D}]";
        HS_CHECK(hs_tok_regex_compile(word, sizeof word - 1, 0, &tok->word_re, "single_word", err));
    }
    describe(tok);
exit:
    free(tmp);
    return st;
}
