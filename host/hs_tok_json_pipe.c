/* hs_tok_json_pipe: tokenizer.json's normalizer, pre_tokenizer and
 * post_processor sections. Only the steps headsweep reproduces exactly are
 * accepted; any other type is refused with the key path and type name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_tok_json.h"
#include "hs_tok_punct.h"

hs_status hs_tok_json_bool(const hs_tokenizer *tok, json_t *obj, const char *key, int def, int *out,
                           const char *where, hs_err *err) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return HS_OK;
    }
    if (!json_is_boolean(v)) return hs_err_set(err, HS_ERR_FORMAT, "%s: %s.%s is not a boolean", tok->path, where, key);
    *out = json_is_true(v);
    return HS_OK;
}

hs_status hs_tok_json_str(const hs_tokenizer *tok, json_t *obj, const char *key, const char **out,
                          size_t *len, const char *where, hs_err *err) {
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (len) *len = 0;
    if (!v || json_is_null(v)) return HS_OK;
    if (!json_is_string(v)) return hs_err_set(err, HS_ERR_FORMAT, "%s: %s.%s is not a string", tok->path, where, key);
    *out = json_string_value(v);
    if (len) *len = json_string_length(v);
    return HS_OK;
}

static hs_status type_of(const hs_tokenizer *tok, json_t *j, const char *where, const char **type, hs_err *err) {
    if (!json_is_object(j)) return hs_err_set(err, HS_ERR_FORMAT, "%s: %s is not an object", tok->path, where);
    hs_status st = hs_tok_json_str(tok, j, "type", type, NULL, where, err);
    if (!st && !*type) st = hs_err_set(err, HS_ERR_FORMAT, "%s: %s has no type", tok->path, where);
    return st;
}

static hs_status set_space_mark(hs_tokenizer *tok, const char *m, size_t len, const char *where, hs_err *err) {
    if (len == 0 || len >= sizeof tok->space_mark)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: %s: replacement '%s' is not a single character", tok->path,
                          where, m);
    if (tok->space_mark_len && ((size_t)tok->space_mark_len != len || memcmp(tok->space_mark, m, len)))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: %s: two different space replacements", tok->path, where);
    memcpy(tok->space_mark, m, len);
    tok->space_mark_len = (int)len;
    return HS_OK;
}

/* ---- normalizer -------------------------------------------------------------------- */

static hs_status norm_rec(hs_tokenizer *tok, json_t *j, const char *where, const char **prepend, size_t *plen,
                          hs_err *err) {
    const char *type;
    hs_status st = type_of(tok, j, where, &type, err);
    if (st) return st;
    if (!strcmp(type, "Sequence")) {
        json_t *a = json_object_get(j, "normalizers");
        if (!json_is_array(a)) return hs_err_set(err, HS_ERR_FORMAT, "%s: %s.normalizers is not an array", tok->path, where);
        for (size_t i = 0; i < json_array_size(a); i++) {
            char w[256];
            snprintf(w, sizeof w, "%s.normalizers[%zu]", where, i);
            if ((st = norm_rec(tok, json_array_get(a, i), w, prepend, plen, err))) return st;
        }
        return HS_OK;
    }
    if (tok->n_norm == HS_TOK_MAX_NORM)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: %s: more than %d normalizer steps", tok->path, where, HS_TOK_MAX_NORM);
    hs_tok_norm *n = &tok->norm[tok->n_norm];
    const char *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    if (!strcmp(type, "Prepend")) {
        if ((st = hs_tok_json_str(tok, j, "prepend", &a, &alen, where, err))) return st;
        if (!a || !alen) return hs_err_set(err, HS_ERR_FORMAT, "%s: %s.prepend is missing or empty", tok->path, where);
        n->kind = HS_TOK_NORM_PREPEND;
        *prepend = a;
        *plen = alen;
    } else if (!strcmp(type, "Replace")) {
        json_t *pat = json_object_get(j, "pattern");
        if (json_object_get(pat, "Regex"))
            return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: %s: Replace with a Regex pattern is not supported", tok->path,
                              where);
        if ((st = hs_tok_json_str(tok, pat, "String", &a, &alen, where, err)) ||
            (st = hs_tok_json_str(tok, j, "content", &b, &blen, where, err)))
            return st;
        if (!a || !alen || !b)
            return hs_err_set(err, HS_ERR_FORMAT, "%s: %s: Replace needs pattern.String and content", tok->path, where);
        n->kind = HS_TOK_NORM_REPLACE;
        if (alen == 1 && a[0] == ' ' && (st = set_space_mark(tok, b, blen, where, err))) return st;
    } else if (!strcmp(type, "NFC")) { /* Qwen2, GPT-NeoX (Pythia) */
        n->kind = HS_TOK_NORM_NFC;
    } else {
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "%s: %s: unsupported normalizer type '%s' (supported: NFC, Prepend, Replace, Sequence)",
                          tok->path, where, type);
    }
    n->a = malloc(alen + 1);
    n->b = malloc(blen + 1);
    if (!n->a || !n->b) {
        free(n->a);
        free(n->b);
        return hs_err_set(err, HS_ERR_OOM, "%s: out of memory", tok->path);
    }
    if (alen) memcpy(n->a, a, alen); /* NFC has no strings */
    if (blen) memcpy(n->b, b, blen);
    n->alen = alen;
    n->blen = blen;
    tok->n_norm++;
    return HS_OK;
}

hs_status hs_tok_json_normalizer(hs_tokenizer *tok, json_t *j, const char *where, hs_err *err) {
    const char *prepend = NULL;
    size_t plen = 0;
    if (!j || json_is_null(j)) return HS_OK;
    hs_status st = norm_rec(tok, j, where, &prepend, &plen, err);
    if (st) return st;
    if (prepend) {
        /* Llama-2's legacy layout; decode removes the prepended mark again. */
        if (!tok->space_mark_len || plen != (size_t)tok->space_mark_len || memcmp(prepend, tok->space_mark, plen))
            return hs_err_set(err, HS_ERR_UNSUPPORTED,
                              "%s: %s: Prepend('%s') without Replace(' ', '%s') is not supported", tok->path, where,
                              prepend, prepend);
        tok->strip_mode = HS_TOK_PREPEND_ALWAYS;
    }
    return HS_OK;
}

/* ---- pre-tokenizer ------------------------------------------------------------------- */

/* A split step; after ByteLevel it matches the text in the byte alphabet, as `tokenizers`
 * hands it on (Falcon: Digits and a Split follow its ByteLevel). */
static hs_status add_split(hs_tokenizer *tok, const char *re, int literal, int behavior, const char *label,
                           const char *what, hs_err *err) {
    char l[48];
    snprintf(l, sizeof l, "%s%s", label, tok->byte_level ? " on bytes" : "");
    hs_status st = hs_tok_add_split(tok, re, literal, behavior, l, what, err);
    if (st == HS_OK) tok->steps[tok->n_steps - 1].mapped = tok->byte_level;
    return st;
}

/* `tokenizers`' Punctuation: each of its characters a match, or with Contiguous each run. */
#define PUNCT_CLASS "[" HS_TOK_PUNCT_BODY "]"

static hs_status pre_rec(hs_tokenizer *tok, json_t *j, const char *where, hs_err *err) {
    const char *type;
    hs_status st = type_of(tok, j, where, &type, err);
    if (st) return st;
    if (tok->byte_level && strcmp(type, "Sequence") && strcmp(type, "Split") && strcmp(type, "Digits") &&
        strcmp(type, "Punctuation"))
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "%s: %s: a %s pre-tokenizer after ByteLevel is not supported (Split, Digits, Punctuation)",
                          tok->path, where, type);
    if (!strcmp(type, "Sequence")) {
        json_t *a = json_object_get(j, "pretokenizers");
        if (!json_is_array(a)) return hs_err_set(err, HS_ERR_FORMAT, "%s: %s.pretokenizers is not an array", tok->path, where);
        for (size_t i = 0; i < json_array_size(a); i++) {
            char w[256];
            snprintf(w, sizeof w, "%s.pretokenizers[%zu]", where, i);
            if ((st = pre_rec(tok, json_array_get(a, i), w, err))) return st;
        }
        return HS_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        int prefix = 0, regex = 0;
        if ((st = hs_tok_json_bool(tok, j, "add_prefix_space", 1, &prefix, where, err)) ||
            (st = hs_tok_json_bool(tok, j, "use_regex", 1, &regex, where, err)))
            return st;
        if (prefix) {
            hs_tok_step s = {.kind = HS_TOK_PRE_PREFIX_SPACE, .label = "PrefixSpace"};
            if ((st = hs_tok_add_step(tok, &s, where, err))) return st;
        }
        if (regex && (st = hs_tok_add_split(tok, hs_tok_re_gpt2, 0, 0, "ByteLevel(GPT-2 regex)", where, err))) return st;
        tok->byte_level = 1;
        return HS_OK;
    }
    if (!strcmp(type, "Split")) {
        json_t *pat = json_object_get(j, "pattern");
        const char *re = NULL, *lit = NULL, *beh = NULL;
        int invert = 0;
        if ((st = hs_tok_json_str(tok, pat, "Regex", &re, NULL, where, err)) ||
            (st = hs_tok_json_str(tok, pat, "String", &lit, NULL, where, err)) ||
            (st = hs_tok_json_str(tok, j, "behavior", &beh, NULL, where, err)) ||
            (st = hs_tok_json_bool(tok, j, "invert", 0, &invert, where, err)))
            return st;
        if (!re && !lit) return hs_err_set(err, HS_ERR_FORMAT, "%s: %s.pattern has no Regex or String", tok->path, where);
        if (invert) return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: %s: inverted Split is not supported", tok->path, where);
        const int b = !beh                                ? -1
                      : !strcmp(beh, "Isolated")          ? HS_TOK_SPLIT_ISOLATED
                      : !strcmp(beh, "Removed")           ? HS_TOK_SPLIT_REMOVED
                      : !strcmp(beh, "MergedWithPrevious") ? HS_TOK_SPLIT_MERGED_PREV
                                                          : -1;
        if (b < 0)
            return hs_err_set(err, HS_ERR_UNSUPPORTED,
                              "%s: %s: Split behavior '%s' is not supported (Isolated, Removed, MergedWithPrevious)",
                              tok->path, where, beh ? beh : "(none)");
        char w[320];
        snprintf(w, sizeof w, "%s: %s", tok->path, where);
        return add_split(tok, re ? re : lit, !re, b, re ? "Split(regex)" : "Split(string)", w, err);
    }
    if (!strcmp(type, "Digits")) {
        int ind = 0;
        if ((st = hs_tok_json_bool(tok, j, "individual_digits", 0, &ind, where, err))) return st;
        return add_split(tok, ind ? "\\p{N}" : "\\p{N}+", 0, 0, ind ? "Digits(individual)" : "Digits", where, err);
    }
    if (!strcmp(type, "Punctuation")) { /* Falcon: Contiguous */
        const char *beh = NULL;
        if ((st = hs_tok_json_str(tok, j, "behavior", &beh, NULL, where, err))) return st;
        if (!beh) beh = "Isolated"; /* Punctuation's default */
        if (!strcmp(beh, "Contiguous")) return add_split(tok, PUNCT_CLASS "+", 0, HS_TOK_SPLIT_ISOLATED, "Punctuation(contiguous)", where, err);
        const int b = !strcmp(beh, "Isolated")             ? HS_TOK_SPLIT_ISOLATED
                      : !strcmp(beh, "Removed")            ? HS_TOK_SPLIT_REMOVED
                      : !strcmp(beh, "MergedWithPrevious") ? HS_TOK_SPLIT_MERGED_PREV
                                                           : -1;
        if (b < 0)
            return hs_err_set(err, HS_ERR_UNSUPPORTED,
                              "%s: %s: Punctuation behavior '%s' is not supported (Isolated, Contiguous, Removed, "
                              "MergedWithPrevious)",
                              tok->path, where, beh);
        return add_split(tok, PUNCT_CLASS, 0, b, "Punctuation", where, err);
    }
    if (!strcmp(type, "Metaspace")) {
        const char *rep, *scheme;
        size_t rlen;
        int split = 1, legacy_prefix = 1;
        if ((st = hs_tok_json_str(tok, j, "replacement", &rep, &rlen, where, err)) ||
            (st = hs_tok_json_str(tok, j, "prepend_scheme", &scheme, NULL, where, err)) ||
            (st = hs_tok_json_bool(tok, j, "split", 1, &split, where, err)) ||
            (st = hs_tok_json_bool(tok, j, "add_prefix_space", 1, &legacy_prefix, where, err)))
            return st;
        if (!rep) return hs_err_set(err, HS_ERR_FORMAT, "%s: %s.replacement is missing", tok->path, where);
        if ((st = set_space_mark(tok, rep, rlen, where, err))) return st;
        hs_tok_step s = {.kind = HS_TOK_PRE_METASPACE, .split = split};
        if (!scheme) s.prepend = legacy_prefix ? HS_TOK_PREPEND_ALWAYS : HS_TOK_PREPEND_NEVER;
        else if (!strcmp(scheme, "always")) s.prepend = HS_TOK_PREPEND_ALWAYS;
        else if (!strcmp(scheme, "first")) s.prepend = HS_TOK_PREPEND_FIRST;
        else if (!strcmp(scheme, "never")) s.prepend = HS_TOK_PREPEND_NEVER;
        else return hs_err_set(err, HS_ERR_FORMAT, "%s: %s: unknown prepend_scheme '%s'", tok->path, where, scheme);
        snprintf(s.label, sizeof s.label, "Metaspace(%s%s)", scheme ? scheme : "legacy", split ? ", split" : "");
        tok->strip_mode = s.prepend;
        return hs_tok_add_step(tok, &s, where, err);
    }
    return hs_err_set(err, HS_ERR_UNSUPPORTED,
                      "%s: %s: unsupported pre_tokenizer type '%s' (supported: ByteLevel, Split, Digits, Punctuation, "
                      "Metaspace, Sequence)",
                      tok->path, where, type);
}

hs_status hs_tok_json_pre_tokenizer(hs_tokenizer *tok, json_t *j, const char *where, hs_err *err) {
    if (!j || json_is_null(j)) return HS_OK;
    return pre_rec(tok, j, where, err);
}

/* ---- post-processor --------------------------------------------------------------------- */

typedef struct {
    int np, ns;
    int32_t p[HS_TOK_MAX_POST], s[HS_TOK_MAX_POST];
} post_ids;

static hs_status post_push(const hs_tokenizer *tok, post_ids *o, int suffix, int32_t id, const char *where,
                           hs_err *err) {
    if (id < 0 || id >= tok->n_ids || !(tok->ent[id].flags & HS_TOKF_USED))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: %s: special token id %d is not in the vocabulary", tok->path, where,
                          (int)id);
    int *n = suffix ? &o->ns : &o->np;
    if (*n == HS_TOK_MAX_POST)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: %s: more than %d special tokens", tok->path, where, HS_TOK_MAX_POST);
    (suffix ? o->s : o->p)[(*n)++] = id;
    return HS_OK;
}

static hs_status template_single(const hs_tokenizer *tok, json_t *j, post_ids *o, const char *where, hs_err *err) {
    json_t *single = json_object_get(j, "single"), *specials = json_object_get(j, "special_tokens");
    if (!json_is_array(single)) return hs_err_set(err, HS_ERR_FORMAT, "%s: %s.single is not an array", tok->path, where);
    int seen_a = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
        json_t *it = json_array_get(single, i), *sp = json_object_get(it, "SpecialToken"), *sq = json_object_get(it, "Sequence");
        const char *name = json_string_value(json_object_get(sp ? sp : sq, "id"));
        if (!name) return hs_err_set(err, HS_ERR_FORMAT, "%s: %s.single[%zu] is malformed", tok->path, where, i);
        if (sq) {
            if (strcmp(name, "A") || seen_a)
                return hs_err_set(err, HS_ERR_FORMAT, "%s: %s.single[%zu]: sequence '%s' in a single template", tok->path,
                                  where, i, name);
            seen_a = 1;
            continue;
        }
        json_t *ids = json_object_get(json_object_get(specials, name), "ids");
        if (!json_is_array(ids))
            return hs_err_set(err, HS_ERR_FORMAT, "%s: %s: special token '%s' has no ids", tok->path, where, name);
        for (size_t k = 0; k < json_array_size(ids); k++) {
            json_t *v = json_array_get(ids, k);
            if (!json_is_integer(v)) return hs_err_set(err, HS_ERR_FORMAT, "%s: %s: ids of '%s'", tok->path, where, name);
            hs_status st = post_push(tok, o, seen_a, (int32_t)json_integer_value(v), where, err);
            if (st) return st;
        }
    }
    if (!seen_a) return hs_err_set(err, HS_ERR_FORMAT, "%s: %s.single has no sequence A", tok->path, where);
    return HS_OK;
}

static hs_status post_rec(const hs_tokenizer *tok, json_t *j, post_ids *o, const char *where, hs_err *err) {
    const char *type;
    hs_status st = type_of(tok, j, where, &type, err);
    if (st) return st;
    if (!strcmp(type, "ByteLevel")) return HS_OK; /* offsets only */
    if (!strcmp(type, "TemplateProcessing")) return template_single(tok, j, o, where, err);
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        json_t *cls = json_array_get(json_object_get(j, "cls"), 1), *sep = json_array_get(json_object_get(j, "sep"), 1);
        if (!json_is_integer(cls) || !json_is_integer(sep))
            return hs_err_set(err, HS_ERR_FORMAT, "%s: %s: cls / sep are malformed", tok->path, where);
        if ((st = post_push(tok, o, 0, (int32_t)json_integer_value(cls), where, err))) return st;
        return post_push(tok, o, 1, (int32_t)json_integer_value(sep), where, err);
    }
    if (!strcmp(type, "Sequence")) {
        json_t *a = json_object_get(j, "processors");
        if (!json_is_array(a)) return hs_err_set(err, HS_ERR_FORMAT, "%s: %s.processors is not an array", tok->path, where);
        for (size_t i = 0; i < json_array_size(a); i++) {
            /* each processor wraps the result of the previous ones */
            post_ids inner = {0};
            char w[256];
            snprintf(w, sizeof w, "%s.processors[%zu]", where, i);
            if ((st = post_rec(tok, json_array_get(a, i), &inner, w, err))) return st;
            post_ids merged = inner;
            for (int k = 0; k < o->np; k++)
                if ((st = post_push(tok, &merged, 0, o->p[k], w, err))) return st;
            for (int k = 0; k < o->ns; k++) {
                if (merged.ns == HS_TOK_MAX_POST) return post_push(tok, &merged, 1, o->s[k], w, err);
                memmove(merged.s + k + 1, merged.s + k, (size_t)(merged.ns - k) * sizeof *merged.s);
                merged.s[k] = o->s[k];
                merged.ns++;
            }
            *o = merged;
        }
        return HS_OK;
    }
    return hs_err_set(err, HS_ERR_UNSUPPORTED,
                      "%s: %s: unsupported post_processor type '%s' (supported: TemplateProcessing, ByteLevel, "
                      "RobertaProcessing, BertProcessing, Sequence)",
                      tok->path, where, type);
}

hs_status hs_tok_json_post_processor(hs_tokenizer *tok, json_t *j, const char *where, hs_err *err) {
    post_ids o = {0};
    if (!j || json_is_null(j)) return HS_OK;
    hs_status st = post_rec(tok, j, &o, where, err);
    if (st) return st;
    tok->n_prefix = o.np;
    tok->n_suffix = o.ns;
    memcpy(tok->prefix, o.p, sizeof o.p);
    memcpy(tok->suffix, o.s, sizeof o.s);
    return HS_OK;
}
