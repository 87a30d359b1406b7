/* hs_tok_pretok: normalizer and pre-tokenizer. Regexes written for
 * Oniguruma (what `tokenizers` uses) are compiled with PCRE2 (UTF + UCP, JIT
 * when available); a segment of text runs through the normalizer, then the
 * pre-tokenizer steps depth-first, and each resulting pre-token goes to BPE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_tok_internal.h"
#include "hs_unicode_nfc.h"

/* `tokenizers`' ByteLevel split (GPT-2's regex plus a final \s+). */
const char hs_tok_re_gpt2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char hs_tok_re_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char hs_tok_re_qwen2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Unicode White_Space, the set Oniguruma's \s matches. PCRE2's UCP \s also
 * matches U+180E (it is in \h), so \s and \S are spelled out. */
#define WS_BODY "\\t-\\r\\x20\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

/* Rewrites pattern into out (capacity: 100 * len + 16). Returns the length,
 * or -1 with *why set for constructs that read differently in PCRE2. */
static long rewrite_pattern(const char *p, size_t len, char *out, const char **why) {
    size_t o = 0;
    int in_class = 0;
#define EMIT(s) (memcpy(out + o, (s), strlen(s)), o += strlen(s))
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < len) {
            char d = p[++i];
            if (d == 's') {
                EMIT(in_class ? WS_BODY : "[" WS_BODY "]");
            } else if (d == 'S') {
                if (in_class) return *why = "\\S inside a character class", -1;
                EMIT("[^" WS_BODY "]");
            } else if (d == 'h' || d == 'H' || d == 'Q') {
                /* Oniguruma's \h is a hex digit, PCRE2's horizontal space */
                return *why = "\\h, \\H or \\Q", -1;
            } else {
                out[o++] = c;
                out[o++] = d;
            }
            continue;
        }
        if (!in_class && c == '(' && i + 2 < len && p[i + 1] == '?') {
            /* (?m) is dot-all in Oniguruma's Ruby syntax, multi-line in PCRE2 */
            for (size_t j = i + 2; j < len && p[j] != ':' && p[j] != ')'; j++)
                if (p[j] == 'm') return *why = "the (?m) flag", -1;
        }
        if (!in_class && c == '[') {
            in_class = 1;
            out[o++] = c;
            if (i + 1 < len && p[i + 1] == '^') out[o++] = p[++i];
            if (i + 1 < len && p[i + 1] == ']') out[o++] = p[++i];
            continue;
        }
        if (in_class && c == '[') {
            if (i + 1 < len && p[i + 1] == ':') { /* POSIX [:alpha:] */
                while (i < len && !(p[i] == ']' && p[i - 1] == ':')) out[o++] = p[i++];
                if (i < len) out[o++] = p[i];
                continue;
            }
            return *why = "a nested character class", -1;
        }
        if (in_class && c == '&' && i + 1 < len && p[i + 1] == '&')
            return *why = "character class intersection (&&)", -1;
        if (in_class && c == ']') in_class = 0;
        out[o++] = c;
    }
#undef EMIT
    return (long)o;
}

hs_status hs_tok_regex_compile(const char *pattern, size_t len, int literal, pcre2_code **out,
                               const char *what, hs_err *err) {
    char *buf = NULL;
    const char *pat = pattern;
    size_t plen = len;
    if (!literal) {
        const char *why = NULL;
        buf = malloc(len * 100 + 16);
        if (!buf) return hs_err_set(err, HS_ERR_OOM, "%s: out of memory", what);
        long n = rewrite_pattern(pattern, len, buf, &why);
        if (n < 0) {
            free(buf);
            return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: regex uses %s, which PCRE2 reads differently",
                              what, why);
        }
        pat = buf;
        plen = (size_t)n;
    }
    int code;
    PCRE2_SIZE off;
    /* ^ and $ match at line breaks in Oniguruma's (Ruby) syntax. PCRE2_LITERAL refuses PCRE2_UCP
     * (a Split on a String pattern failed to compile with it). */
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP | PCRE2_MULTILINE);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, plen, opts, &code, &off, NULL);
    free(buf);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: regex does not compile in PCRE2 (at offset %zu): %s",
                          what, (size_t)off, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter remains when JIT is unavailable */
    *out = re;
    return HS_OK;
}

hs_status hs_tok_add_step(hs_tokenizer *tok, const hs_tok_step *st, const char *what, hs_err *err) {
    if (tok->n_steps == HS_TOK_MAX_STEPS) {
        pcre2_code_free(st->re);
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizer steps", what, HS_TOK_MAX_STEPS);
    }
    tok->steps[tok->n_steps++] = *st;
    return HS_OK;
}

hs_status hs_tok_add_split(hs_tokenizer *tok, const char *pattern, int literal, int behavior,
                           const char *label, const char *what, hs_err *err) {
    hs_tok_step st = {.kind = HS_TOK_PRE_SPLIT, .removed = behavior == HS_TOK_SPLIT_REMOVED,
                      .merge_prev = behavior == HS_TOK_SPLIT_MERGED_PREV};
    snprintf(st.label, sizeof st.label, "%s", label);
    hs_status s = hs_tok_regex_compile(pattern, strlen(pattern), literal, &st.re, what, err);
    if (s) return s;
    return hs_tok_add_step(tok, &st, what, err);
}

void hs_tok_steps_free(hs_tokenizer *tok) {
    for (int i = 0; i < tok->n_steps; i++) pcre2_code_free(tok->steps[i].re);
    tok->n_steps = 0;
    for (int i = 0; i < tok->n_norm; i++) {
        free(tok->norm[i].a);
        free(tok->norm[i].b);
    }
    tok->n_norm = 0;
}

/* ---- running the pipeline ----------------------------------------------------------- */

typedef struct {
    const hs_tokenizer *tok;
    hs_tok_scratch *s;
    hs_tok_ids *out;
    hs_err *err;
} run_ctx;

static hs_status run_steps(run_ctx *c, int k, const char *p, size_t len, int first);

static hs_status oom(run_ctx *c) { return hs_err_set(c->err, HS_ERR_OOM, "tokenizer: out of memory"); }

/* The pieces a split cuts from the text it matched (p, len) go on as raw bytes:
 * raw == p, or with a mapped split the raw text whose bytes p spells one code
 * point each. The split's cuts only move forward, so a cursor translates them. */
typedef struct {
    const char *raw;
    size_t m, r; /* offset in p and the raw offset it stands for */
} cut_cursor;

static size_t raw_off(cut_cursor *cc, const char *p, size_t m) {
    if (!cc->raw) return m;
    while (cc->m < m) cc->m += (size_t)hs_tok_utf8_len((unsigned char)p[cc->m]), cc->r++;
    return cc->r;
}

static hs_status emit(run_ctx *c, int k, cut_cursor *cc, const char *p, size_t m0, size_t m1, int first) {
    const size_t r0 = raw_off(cc, p, m0), r1 = raw_off(cc, p, m1);
    return run_steps(c, k + 1, (cc->raw ? cc->raw : p) + r0, r1 - r0, first && r0 == 0);
}

/* Isolated / Removed / MergedWithPrevious split on a regex, with Oniguruma's
 * find_iter rule for empty matches (one right after the previous match is
 * skipped). Merged: the text since the last piece and the match are one piece
 * (a match right after another stands alone, as in HF tokenizers). A split after
 * ByteLevel (st->mapped) matches the text spelled in GPT-2's byte alphabet, as
 * `tokenizers` hands it on, so it may cut a character's bytes apart (Digits after
 * ByteLevel isolates the second byte of "²", which spells U+00B2). */
static hs_status run_split(run_ctx *c, int k, const hs_tok_step *st, const char *p, size_t len, int first) {
    pcre2_match_data *md = hs_tok_scratch_md(c->s);
    pcre2_match_context *mctx = hs_tok_scratch_mctx(c->s);
    size_t prev = 0, at = 0, last_end = (size_t)-1;
    hs_status r;
    cut_cursor cc = {NULL, 0, 0};
    if (st->mapped) { /* every byte's code point is below U+0800: two UTF-8 bytes at most */
        char *b = hs_tok_scratch_buf(c->s, k, 2 * len);
        if (!b) return oom(c);
        size_t o = 0;
        for (size_t i = 0; i < len; i++) o += (size_t)hs_tok_utf8_encode(hs_tok_byte_to_cp((unsigned char)p[i]), b + o);
        cc.raw = p;
        p = b;
        len = o;
    }
    while (at <= len) {
        hs_tok_scratch_stats(c->s)->regex_calls++;
        int rc = pcre2_match(st->re, (PCRE2_SPTR)p, len, at, PCRE2_NO_UTF_CHECK, md, mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return hs_err_set(c->err, HS_ERR_FORMAT, "tokenizer: pre-tokenizer regex (%s) failed: %s", st->label,
                              (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (ms == me && me == last_end) {
            if (at == len) break;
            at += (size_t)hs_tok_utf8_len((unsigned char)p[at]);
            continue;
        }
        if (st->merge_prev) {
            if (me > prev && (r = emit(c, k, &cc, p, prev, me, first))) return r;
        } else {
            if (ms > prev && (r = emit(c, k, &cc, p, prev, ms, first))) return r;
            if (me > ms && !st->removed && (r = emit(c, k, &cc, p, ms, me, first))) return r;
        }
        prev = last_end = at = me;
    }
    if (len > prev) return emit(c, k, &cc, p, prev, len, first);
    return HS_OK;
}

/* Metaspace: spaces become the mark, the mark is prepended per the scheme,
 * and with split each mark starts a new piece. */
static hs_status run_metaspace(run_ctx *c, int k, const hs_tok_step *st, const char *p, size_t len, int first) {
    const char *m = c->tok->space_mark;
    size_t ml = (size_t)c->tok->space_mark_len;
    size_t n_sp = 0;
    for (size_t i = 0; i < len; i++) n_sp += p[i] == ' ';
    char *b = hs_tok_scratch_buf(c->s, k, len + (n_sp + 1) * ml);
    if (!b) return oom(c);
    size_t o = 0;
    int starts = len >= ml ? !memcmp(p, m, ml) : 0;
    if (len && p[0] == ' ') starts = 1;
    if ((st->prepend == HS_TOK_PREPEND_ALWAYS || (st->prepend == HS_TOK_PREPEND_FIRST && first)) && !starts) {
        memcpy(b, m, ml);
        o = ml;
    }
    for (size_t i = 0; i < len; i++) {
        if (p[i] == ' ') {
            memcpy(b + o, m, ml);
            o += ml;
        } else {
            b[o++] = p[i];
        }
    }
    if (!st->split) return run_steps(c, k + 1, b, o, first);
    size_t start = 0;
    for (size_t i = 1; i + ml <= o; i++) {
        if (memcmp(b + i, m, ml)) continue;
        hs_status r = run_steps(c, k + 1, b + start, i - start, first && start == 0);
        if (r) return r;
        start = i;
        i += ml - 1;
    }
    return run_steps(c, k + 1, b + start, o - start, first && start == 0);
}

static hs_status run_steps(run_ctx *c, int k, const char *p, size_t len, int first) {
    if (len == 0) return HS_OK; /* `tokenizers` drops empty pieces */
    if (k == c->tok->n_steps) return hs_tok_bpe_word(c->tok, c->s, p, len, c->out, c->err);
    const hs_tok_step *st = &c->tok->steps[k];
    switch (st->kind) {
    case HS_TOK_PRE_SPLIT:
        return run_split(c, k, st, p, len, first);
    case HS_TOK_PRE_PREFIX_SPACE: {
        if (p[0] == ' ') return run_steps(c, k + 1, p, len, first);
        char *b = hs_tok_scratch_buf(c->s, k, len + 1);
        if (!b) return oom(c);
        b[0] = ' ';
        memcpy(b + 1, p, len);
        return run_steps(c, k + 1, b, len + 1, first);
    }
    default:
        return run_metaspace(c, k, st, p, len, first);
    }
}

/* Prepend (only to non-empty text), Replace (every occurrence, left to
 * right) and NFC, in the normalizer's order; ping-pongs between two scratch
 * buffers. */
int hs_tok_normalize(const hs_tokenizer *tok, hs_tok_scratch *s, const char **p, size_t *len) {
    for (int i = 0; i < tok->n_norm; i++) {
        const hs_tok_norm *n = &tok->norm[i];
        int lvl = HS_TOK_MAX_STEPS + (i & 1);
        if (n->kind == HS_TOK_NORM_NFC) {
            char *nfc;
            size_t nlen;
            if (hs_unicode_nfc(*p, *len, &nfc, &nlen)) return -1;
            if (!nfc) continue; /* already NFC */
            char *b = hs_tok_scratch_buf(s, lvl, nlen);
            if (b) memcpy(b, nfc, nlen);
            free(nfc);
            if (!b) return -1;
            *p = b;
            *len = nlen;
            continue;
        }
        if (n->kind == HS_TOK_NORM_PREPEND) {
            if (*len == 0) continue;
            char *b = hs_tok_scratch_buf(s, lvl, *len + n->alen);
            if (!b) return -1;
            memcpy(b, n->a, n->alen);
            memcpy(b + n->alen, *p, *len);
            *p = b;
            *len += n->alen;
            continue;
        }
        size_t hits = 0;
        for (size_t j = 0; j + n->alen <= *len; j++)
            if (!memcmp(*p + j, n->a, n->alen)) hits++, j += n->alen - 1;
        if (!hits) continue;
        char *b = hs_tok_scratch_buf(s, lvl, *len + hits * n->blen);
        if (!b) return -1;
        size_t o = 0;
        for (size_t j = 0; j < *len;) {
            if (j + n->alen <= *len && !memcmp(*p + j, n->a, n->alen)) {
                memcpy(b + o, n->b, n->blen);
                o += n->blen;
                j += n->alen;
            } else {
                b[o++] = (*p)[j++];
            }
        }
        *p = b;
        *len = o;
    }
    return 0;
}

hs_status hs_tok_encode_segment(const hs_tokenizer *tok, hs_tok_scratch *s, const char *text,
                                size_t len, int first, hs_tok_ids *out, hs_err *err) {
    run_ctx c = {tok, s, out, err};
    if (hs_tok_normalize(tok, s, &text, &len)) return oom(&c);
    return run_steps(&c, 0, text, len, first);
}
