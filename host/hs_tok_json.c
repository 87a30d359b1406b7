/* hs_tok_json: loading a HuggingFace tokenizer.json (BPE model: vocab and
 * merges in either spelling, added tokens) plus the BOS / EOS names from a
 * tokenizer_config.json next to it. The pipeline sections are parsed in
 * hs_tok_json_pipe.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_tok_json.h"

static hs_status load_vocab(hs_tokenizer *tok, json_t *vocab, hs_err *err) {
    hs_status st = HS_OK;
    char *raw = NULL;
    size_t raw_cap = 0;
    if (!json_is_object(vocab)) return hs_err_set(err, HS_ERR_MISSING, "%s: model.vocab is missing or not an object", tok->path);
    for (void *it = json_object_iter(vocab); it; it = json_object_iter_next(vocab, it)) {
        const char *piece = json_object_iter_key(it);
        size_t plen = json_object_iter_key_len(it);
        json_t *v = json_object_iter_value(it);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= INT32_MAX)
            HS_FAIL(err, HS_ERR_FORMAT, "%s: model.vocab['%s']: id is not a non-negative integer", tok->path, piece);
        long rl = (long)plen;
        if (tok->byte_level) {
            if (hs_tok_grow(&raw, &raw_cap, plen + 1, 1)) HS_FAIL(err, HS_ERR_OOM, "%s: out of memory", tok->path);
            rl = hs_tok_unbyte(piece, plen, raw); /* -1: not spelled in the byte alphabet */
        }
        HS_CHECK(hs_tok_add_model_token(tok, (int32_t)json_integer_value(v), piece, plen,
                                        tok->byte_level ? (rl >= 0 ? raw : NULL) : piece, rl >= 0 ? (size_t)rl : 0, err));
    }
exit:
    free(raw);
    return st;
}

/* One merge: "a b" (older files) or ["a", "b"]. */
static hs_status merge_parts(const hs_tokenizer *tok, json_t *m, size_t i, const char **a, size_t *al, const char **b,
                             size_t *bl, hs_err *err) {
    if (json_is_string(m)) {
        const char *s = json_string_value(m), *sp = memchr(s, ' ', json_string_length(m));
        size_t len = json_string_length(m);
        if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp - s) - 1))
            return hs_err_set(err, HS_ERR_FORMAT, "%s: model.merges[%zu] '%s' is not two tokens separated by one space",
                              tok->path, i, s);
        *a = s, *al = (size_t)(sp - s), *b = sp + 1, *bl = len - *al - 1;
        return HS_OK;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0)), *al = json_string_length(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1)), *bl = json_string_length(json_array_get(m, 1));
        return HS_OK;
    }
    return hs_err_set(err, HS_ERR_FORMAT, "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", tok->path, i);
}

static hs_status load_merges(hs_tokenizer *tok, json_t *merges, hs_err *err) {
    hs_status st = HS_OK;
    char *cat = NULL;
    size_t cat_cap = 0;
    if (!json_is_array(merges)) return hs_err_set(err, HS_ERR_MISSING, "%s: model.merges is missing or not an array", tok->path);
    size_t n = json_array_size(merges);
    if (n >= INT32_MAX) return hs_err_set(err, HS_ERR_FORMAT, "%s: too many merges", tok->path);
    for (size_t i = 0; i < n; i++) {
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        HS_CHECK(merge_parts(tok, json_array_get(merges, i), i, &a, &al, &b, &bl, err));
        int32_t ia = hs_tok_strmap_get(&tok->by_piece, a, al), ib = hs_tok_strmap_get(&tok->by_piece, b, bl);
        if (ia < 0 || ib < 0)
            HS_FAIL(err, HS_ERR_FORMAT, "%s: model.merges[%zu]: token '%.*s' is not in the vocabulary", tok->path, i,
                    (int)(ia < 0 ? al : bl), ia < 0 ? a : b);
        if (hs_tok_grow(&cat, &cat_cap, al + bl + 1, 1)) HS_FAIL(err, HS_ERR_OOM, "%s: out of memory", tok->path);
        memcpy(cat, a, al);
        memcpy(cat + al, b, bl);
        int32_t im = hs_tok_strmap_get(&tok->by_piece, cat, al + bl);
        if (im < 0)
            HS_FAIL(err, HS_ERR_FORMAT, "%s: model.merges[%zu]: merged token '%.*s' is not in the vocabulary", tok->path,
                    i, (int)(al + bl), cat);
        if (hs_tok_pairmap_put(&tok->merges, (uint32_t)ia, (uint32_t)ib, (uint32_t)i, im))
            HS_FAIL(err, HS_ERR_OOM, "%s: out of memory", tok->path);
    }
    tok->n_merges = (int32_t)n;
exit:
    free(cat);
    return st;
}

static hs_status load_model(hs_tokenizer *tok, json_t *model, hs_err *err) {
    hs_status st;
    const char *type, *unk, *s;
    if (!json_is_object(model)) return hs_err_set(err, HS_ERR_MISSING, "%s: no 'model' object", tok->path);
    if ((st = hs_tok_json_str(tok, model, "type", &type, NULL, "model", err))) return st;
    if (type && strcmp(type, "BPE"))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: model.type '%s' is not supported (only BPE)", tok->path, type);
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0.0))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: model.dropout is set (BPE dropout is random)", tok->path);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        if ((st = hs_tok_json_str(tok, model, affixes[i], &s, NULL, "model", err))) return st;
        if (s && *s) return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: model.%s '%s' is not supported", tok->path, affixes[i], s);
    }
    if ((st = hs_tok_json_bool(tok, model, "byte_fallback", 0, &tok->byte_fallback, "model", err)) ||
        (st = hs_tok_json_bool(tok, model, "fuse_unk", 0, &tok->fuse_unk, "model", err)) ||
        (st = hs_tok_json_bool(tok, model, "ignore_merges", 0, &tok->ignore_merges, "model", err)) ||
        (st = hs_tok_json_str(tok, model, "unk_token", &unk, NULL, "model", err)) ||
        (st = load_vocab(tok, json_object_get(model, "vocab"), err)) ||
        (st = load_merges(tok, json_object_get(model, "merges"), err)))
        return st;
    if (unk) {
        tok->unk_id = hs_tok_strmap_get(&tok->by_piece, unk, strlen(unk));
        if (tok->unk_id < 0) return hs_err_set(err, HS_ERR_FORMAT, "%s: model.unk_token '%s' is not in the vocabulary", tok->path, unk);
    }
    return HS_OK;
}

static hs_status load_added(hs_tokenizer *tok, json_t *arr, hs_err *err) {
    hs_status st;
    if (!arr || json_is_null(arr)) return HS_OK;
    if (!json_is_array(arr)) return hs_err_set(err, HS_ERR_FORMAT, "%s: added_tokens is not an array", tok->path);
    int nfc_only = 1; /* NFC is idempotent: the one normalizer added tokens may be matched after */
    for (int k = 0; k < tok->n_norm; k++) nfc_only &= tok->norm[k].kind == HS_TOK_NORM_NFC;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *t = json_array_get(arr, i), *id = json_object_get(t, "id");
        char w[64];
        snprintf(w, sizeof w, "added_tokens[%zu]", i);
        const char *content;
        size_t len;
        int f[5] = {0};
        if ((st = hs_tok_json_str(tok, t, "content", &content, &len, w, err))) return st;
        if (!content || !json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= INT32_MAX)
            return hs_err_set(err, HS_ERR_FORMAT, "%s: %s needs a content string and a non-negative id", tok->path, w);
        if ((st = hs_tok_json_bool(tok, t, "special", 0, &f[0], w, err)) ||
            (st = hs_tok_json_bool(tok, t, "normalized", !f[0], &f[1], w, err)) ||
            (st = hs_tok_json_bool(tok, t, "lstrip", 0, &f[2], w, err)) ||
            (st = hs_tok_json_bool(tok, t, "rstrip", 0, &f[3], w, err)) ||
            (st = hs_tok_json_bool(tok, t, "single_word", 0, &f[4], w, err)))
            return st;
        if (f[1] && !nfc_only)
            return hs_err_set(err, HS_ERR_UNSUPPORTED,
                              "%s: %s ('%s'): normalized added tokens with a normalizer other than NFC are not "
                              "supported",
                              tok->path, w, content);
        hs_tok_added a = {.id = (int32_t)json_integer_value(id), .len = (uint32_t)len, .special = (uint8_t)f[0],
                          .normalized = (uint8_t)f[1], .lstrip = (uint8_t)f[2], .rstrip = (uint8_t)f[3],
                          .single_word = (uint8_t)f[4]};
        if ((st = hs_tok_add_added_token(tok, &a, content, err))) return st;
    }
    return HS_OK;
}

/* bos_token / eos_token of tokenizer_config.json: a string or {"content": s}. */
static int32_t config_token(const hs_tokenizer *tok, json_t *cfg, const char *key) {
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? hs_tok_strmap_get(&tok->by_piece, json_string_value(v), json_string_length(v)) : -1;
}

hs_status hs_tok_load_json(hs_tokenizer *tok, const char *json_path, const char *config_path, hs_err *err) {
    hs_status st = HS_OK;
    json_error_t je;
    json_t *root = json_load_file(json_path, JSON_ALLOW_NUL, &je), *cfg = NULL;
    if (!root) {
        FILE *f = fopen(json_path, "rb");
        if (!f) return hs_err_set(err, HS_ERR_IO, "%s: cannot open", json_path);
        fclose(f);
        return hs_err_set(err, HS_ERR_FORMAT, "%s: line %d: %s", json_path, je.line, je.text);
    }
    if (!json_is_object(root)) HS_FAIL(err, HS_ERR_FORMAT, "%s: not a JSON object", json_path);
    /* The pipeline first: it decides how the vocabulary is spelled. */
    HS_CHECK(hs_tok_json_normalizer(tok, json_object_get(root, "normalizer"), "normalizer", err));
    HS_CHECK(hs_tok_json_pre_tokenizer(tok, json_object_get(root, "pre_tokenizer"), "pre_tokenizer", err));
    HS_CHECK(load_model(tok, json_object_get(root, "model"), err));
    HS_CHECK(load_added(tok, json_object_get(root, "added_tokens"), err));
    HS_CHECK(hs_tok_json_post_processor(tok, json_object_get(root, "post_processor"), "post_processor", err));
    tok->bos_id = tok->n_prefix ? tok->prefix[0] : -1;
    tok->eos_id = tok->n_suffix ? tok->suffix[tok->n_suffix - 1] : -1;
    if (config_path && (cfg = json_load_file(config_path, 0, &je)) != NULL) {
        int32_t b = config_token(tok, cfg, "bos_token"), e = config_token(tok, cfg, "eos_token");
        if (b >= 0) tok->bos_id = b;
        if (e >= 0) tok->eos_id = e;
    }
exit:
    json_decref(cfg);
    json_decref(root);
    return st;
}
