/* hs_dataset JSONL reader: one prompt object per line (format in
 * hs_dataset.h), validated line by line; every error names the file, the
 * line and the field. Rows are collected, then packed into a padded dataset. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_dataset_internal.h"

/* Optional per-row fields that are on every line or on none. */
enum { F_ANSWER, F_DISTRACTOR, F_CORRUPT, F_TEMPLATE, F_NEEDLE, F_COUNT };
static const char *const field_names[F_COUNT] = {"answer", "distractor", "corrupt", "template", "needle_start"};

static const char *const known_keys[] = {"prompt",   "tokens", "answer",       "distractor", "corrupt",
                                         "template", "id",     "needle_start", "needle_len", NULL};

typedef struct {
    int32_t *ids, *corrupt; /* [n] each; corrupt NULL when absent */
    int n, line;
    char *text, *id; /* NULL when absent */
    int32_t answer, distractor, tmpl, needle_start, needle_len;
    unsigned has; /* bits 1 << F_* */
} row;

typedef struct {
    const char *path;
    hs_tokenizer *tok;
    const hs_model_config *c;
    int limit;              /* longest prompt allowed */
    const char *limit_what; /* "max_len" or "the model context" */
    row *rows;
    int n, cap;
    int tmpl_kind, tmpl_line; /* 0 none yet, 1 integers, 2 strings; the line that set it */
    char **tmpl_names;        /* string templates, id = index */
    int n_tmpl_names;
} loader;

static hs_status fail(const loader *L, int line, const char *field, hs_err *err, hs_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

static hs_status fail(const loader *L, int line, const char *field, hs_err *err, hs_status code, const char *fmt, ...) {
    char msg[HS_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return hs_err_set(err, code, "%s:%d: %s: %s", L->path, line, field, msg);
}

static char *memdup0(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* ids must be model tokens (the tokenizer's added tokens may lie beyond them). */
static hs_status check_ids(const loader *L, int line, const char *field, const int32_t *ids, int n, hs_err *err) {
    const int64_t i = hs_ds_outside_vocab(ids, n, L->c->n_vocab);
    if (i >= 0)
        return fail(L, line, field, err, HS_ERR_FORMAT, "token id %d at position %d is outside the model vocabulary [0, %d)",
                    (int)ids[i], (int)i, L->c->n_vocab);
    return HS_OK;
}

/* An array of token ids (malloc'd). */
static hs_status int_array(const loader *L, int line, const char *field, json_t *v, int32_t **ids, int *n,
                           hs_err *err) {
    size_t k = json_array_size(v);
    *ids = NULL;
    if (!json_is_array(v) || k == 0)
        return fail(L, line, field, err, HS_ERR_FORMAT, "must be a non-empty array of token ids");
    if (k > (size_t)L->limit)
        return fail(L, line, field, err, HS_ERR_FORMAT, "%zu tokens exceed %s %d", k, L->limit_what, L->limit);
    int32_t *v32 = malloc(k * sizeof *v32);
    if (!v32) return hs_err_set(err, HS_ERR_OOM, "%s:%d: out of memory", L->path, line);
    for (size_t i = 0; i < k; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) >= L->c->n_vocab) {
            free(v32);
            return fail(L, line, field, err, HS_ERR_FORMAT, "element %zu must be a token id in [0, %d)", i,
                        L->c->n_vocab);
        }
        v32[i] = (int32_t)json_integer_value(e);
    }
    *ids = v32;
    *n = (int)k;
    return HS_OK;
}

/* A text to encode as a prompt (prompt, corrupt). */
static hs_status text_ids(const loader *L, int line, const char *field, json_t *v, int32_t **ids, int *n, hs_err *err) {
    *ids = NULL;
    if (!L->tok)
        return fail(L, line, field, err, HS_ERR_INVALID_ARG,
                    "text needs a tokenizer and none was given (give token ids)");
    if (json_string_length(v) == 0) return fail(L, line, field, err, HS_ERR_FORMAT, "empty");
    hs_status st = hs_ds_encode_prompt(L->tok, json_string_value(v), json_string_length(v), ids, n, err);
    if (st) {
        hs_err_prefix(err, "%s:%d: %s", L->path, line, field);
        return st;
    }
    if (*n > L->limit) {
        free(*ids);
        *ids = NULL;
        return fail(L, line, field, err, HS_ERR_FORMAT, "%d tokens exceed %s %d (prompts are never truncated)", *n,
                    L->limit_what, L->limit);
    }
    if ((st = check_ids(L, line, field, *ids, *n, err))) {
        free(*ids);
        *ids = NULL;
    }
    return st;
}

/* answer / distractor: a token id, or text that is one token after the prompt. */
static hs_status one_token(const loader *L, row *r, const char *field, json_t *v, int32_t *out, hs_err *err) {
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < 0 || x >= L->c->n_vocab)
            return fail(L, r->line, field, err, HS_ERR_FORMAT, "token id %lld is outside [0, %d)", (long long)x,
                        L->c->n_vocab);
        *out = (int32_t)x;
        return HS_OK;
    }
    if (!json_is_string(v)) return fail(L, r->line, field, err, HS_ERR_FORMAT, "must be a string or a token id");
    if (!r->text)
        return fail(L, r->line, field, err, HS_ERR_FORMAT,
                    "text needs a 'prompt' text to follow (with 'tokens', give a token id)");
    const int nb = hs_ds_n_bos(L->tok);
    int extra;
    hs_status st = hs_ds_continuation(L->tok, r->text, strlen(r->text), r->ids + nb, r->n - nb, json_string_value(v),
                                      out, &extra, err);
    if (st) {
        hs_err_prefix(err, "%s:%d: %s", L->path, r->line, field);
        return st;
    }
    if (*out < 0 && extra < 0)
        return fail(L, r->line, field, err, HS_ERR_FORMAT,
                    "\"%s\" merges with the end of the prompt (the prompt's tokens change)", json_string_value(v));
    if (*out < 0)
        return fail(L, r->line, field, err, HS_ERR_FORMAT,
                    "\"%s\" is %d tokens after the prompt, not one (mind the leading space)", json_string_value(v),
                    extra);
    return check_ids(L, r->line, field, out, 1, err);
}

static hs_status template_id(loader *L, row *r, json_t *v, hs_err *err) {
    int kind = json_is_integer(v) ? 1 : json_is_string(v) ? 2 : 0;
    if (!kind) return fail(L, r->line, "template", err, HS_ERR_FORMAT, "must be an integer or a string");
    if (L->tmpl_kind && kind != L->tmpl_kind)
        return fail(L, r->line, "template", err, HS_ERR_FORMAT, "%s here but %s on line %d (use one kind throughout)",
                    kind == 1 ? "an integer" : "a string", kind == 1 ? "a string" : "an integer", L->tmpl_line);
    if (!L->tmpl_kind) L->tmpl_kind = kind, L->tmpl_line = r->line;
    if (kind == 1) {
        json_int_t x = json_integer_value(v);
        if (x < 0 || x > INT32_MAX)
            return fail(L, r->line, "template", err, HS_ERR_FORMAT, "%lld must be >= 0", (long long)x);
        r->tmpl = (int32_t)x;
        return HS_OK;
    }
    const char *s = json_string_value(v);
    for (int i = 0; i < L->n_tmpl_names; i++)
        if (!strcmp(L->tmpl_names[i], s)) return r->tmpl = i, HS_OK;
    char **p = realloc(L->tmpl_names, (size_t)(L->n_tmpl_names + 1) * sizeof *p);
    if (!p) return hs_err_set(err, HS_ERR_OOM, "%s:%d: out of memory", L->path, r->line);
    L->tmpl_names = p;
    if (!(p[L->n_tmpl_names] = strdup(s))) return hs_err_set(err, HS_ERR_OOM, "%s:%d: out of memory", L->path, r->line);
    r->tmpl = L->n_tmpl_names++;
    return HS_OK;
}

static hs_status needle_span(const loader *L, row *r, json_t *s, json_t *n, hs_err *err) {
    if (!s || !n)
        return fail(L, r->line, s ? "needle_len" : "needle_start", err, HS_ERR_FORMAT,
                    "missing (needle_start and needle_len come together)");
    if (!json_is_integer(s) || json_integer_value(s) < 0 || json_integer_value(s) >= r->n)
        return fail(L, r->line, "needle_start", err, HS_ERR_FORMAT, "must be a token position in [0, %d)", r->n);
    if (!json_is_integer(n) || json_integer_value(n) < 1 || json_integer_value(s) + json_integer_value(n) > r->n)
        return fail(L, r->line, "needle_len", err, HS_ERR_FORMAT, "must be >= 1 and end within the prompt's %d tokens",
                    r->n);
    r->needle_start = (int32_t)json_integer_value(s);
    r->needle_len = (int32_t)json_integer_value(n);
    return HS_OK;
}

/* One JSON object -> r (r->line set by the caller). */
static hs_status parse_row(loader *L, json_t *o, row *r, hs_err *err) {
    const char *key;
    json_t *v;
    hs_status st;
    json_object_foreach(o, key, v) {
        int k = 0;
        while (known_keys[k] && strcmp(known_keys[k], key)) k++;
        if (!known_keys[k])
            return hs_err_set(err, HS_ERR_FORMAT,
                              "%s:%d: unknown key '%s' (known: prompt, tokens, answer, distractor, "
                              "corrupt, template, id, needle_start, needle_len)",
                              L->path, r->line, key);
    }
    json_t *prompt = json_object_get(o, "prompt"), *tokens = json_object_get(o, "tokens");
    if (!prompt == !tokens)
        return fail(L, r->line, "prompt", err, HS_ERR_FORMAT, "%s",
                    prompt ? "give 'prompt' or 'tokens', not both"
                           : "missing (each line needs 'prompt' text or 'tokens')");
    if (prompt) {
        if (!json_is_string(prompt)) return fail(L, r->line, "prompt", err, HS_ERR_FORMAT, "must be a string");
        if ((st = text_ids(L, r->line, "prompt", prompt, &r->ids, &r->n, err))) return st;
        if (!(r->text = memdup0(json_string_value(prompt), json_string_length(prompt))))
            return hs_err_set(err, HS_ERR_OOM, "%s:%d: out of memory", L->path, r->line);
    } else if ((st = int_array(L, r->line, "tokens", tokens, &r->ids, &r->n, err))) {
        return st;
    }
    if ((v = json_object_get(o, "answer"))) {
        if ((st = one_token(L, r, "answer", v, &r->answer, err))) return st;
        r->has |= 1u << F_ANSWER;
    }
    if ((v = json_object_get(o, "distractor"))) {
        if ((st = one_token(L, r, "distractor", v, &r->distractor, err))) return st;
        r->has |= 1u << F_DISTRACTOR;
    }
    if ((v = json_object_get(o, "corrupt"))) {
        int n = 0;
        if (json_is_string(v)) st = text_ids(L, r->line, "corrupt", v, &r->corrupt, &n, err);
        else if (json_is_array(v)) st = int_array(L, r->line, "corrupt", v, &r->corrupt, &n, err);
        else st = fail(L, r->line, "corrupt", err, HS_ERR_FORMAT, "must be a string or an array of token ids");
        if (st) return st;
        if (n != r->n)
            return fail(L, r->line, "corrupt", err, HS_ERR_FORMAT,
                        "%d tokens but the prompt has %d (patching needs equal lengths)", n, r->n);
        r->has |= 1u << F_CORRUPT;
    }
    if ((v = json_object_get(o, "template"))) {
        if ((st = template_id(L, r, v, err))) return st;
        r->has |= 1u << F_TEMPLATE;
    }
    if ((v = json_object_get(o, "id"))) {
        char num[32];
        if (json_is_integer(v)) snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        else if (!json_is_string(v))
            return fail(L, r->line, "id", err, HS_ERR_FORMAT, "must be a string or an integer");
        if (!(r->id = strdup(json_is_string(v) ? json_string_value(v) : num)))
            return hs_err_set(err, HS_ERR_OOM, "%s:%d: out of memory", L->path, r->line);
    }
    json_t *ns = json_object_get(o, "needle_start"), *nl = json_object_get(o, "needle_len");
    if (ns || nl) {
        if ((st = needle_span(L, r, ns, nl, err))) return st;
        r->has |= 1u << F_NEEDLE;
    }
    /* all or none, against the first line */
    if (L->n > 0 && r->has != L->rows[0].has) {
        int f = 0;
        while (((r->has ^ L->rows[0].has) >> f & 1u) == 0) f++;
        return fail(L, r->line, field_names[f], err, HS_ERR_FORMAT,
                    "%s here but %s on line %d (give it on every line or none)", r->has >> f & 1u ? "given" : "missing",
                    r->has >> f & 1u ? "not" : "given", L->rows[0].line);
    }
    return HS_OK;
}

static void free_row(row *r) {
    free(r->ids);
    free(r->corrupt);
    free(r->text);
    free(r->id);
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

/* Packs the rows into a padded dataset; moves the strings. */
static hs_status pack(loader *L, hs_dataset **out, hs_err *err) {
    int T = 0, any_text = 0, any_id = 0;
    for (int i = 0; i < L->n; i++) {
        if (L->rows[i].n > T) T = L->rows[i].n;
        any_text |= L->rows[i].text != NULL;
        any_id |= L->rows[i].id != NULL;
    }
    const unsigned has = L->rows[0].has;
    unsigned fields = (any_text ? HS_DS_TEXT : 0) | (any_id ? HS_DS_ID : 0) |
                      (has >> F_ANSWER & 1u ? HS_DS_ANSWER : 0) | (has >> F_DISTRACTOR & 1u ? HS_DS_DISTRACTOR : 0) |
                      (has >> F_CORRUPT & 1u ? HS_DS_CORRUPT : 0) | (has >> F_TEMPLATE & 1u ? HS_DS_TEMPLATE : 0) |
                      (has >> F_NEEDLE & 1u ? HS_DS_NEEDLE : 0);
    hs_dataset *d = NULL;
    hs_status st = hs_ds_alloc(L->n, T, fields, L->path, &d, err);
    if (st) return st;
    for (int i = 0; i < L->n; i++) {
        row *r = &L->rows[i];
        memcpy(d->tokens + (size_t)i * T, r->ids, (size_t)r->n * sizeof *r->ids);
        d->lengths[i] = r->n;
        if (d->corrupt_tokens) memcpy(d->corrupt_tokens + (size_t)i * T, r->corrupt, (size_t)r->n * sizeof *r->corrupt);
        if (d->answer) d->answer[i] = r->answer;
        if (d->distractor) d->distractor[i] = r->distractor;
        if (d->template_id) d->template_id[i] = r->tmpl;
        if (d->needle_start) d->needle_start[i] = r->needle_start, d->needle_len[i] = r->needle_len;
        if (d->text) d->text[i] = r->text, r->text = NULL;
        if (d->id) d->id[i] = r->id, r->id = NULL;
    }
    *out = d;
    return HS_OK;
}

hs_status hs_dataset_load_jsonl(const char *path, hs_tokenizer *tok, const hs_model_config *c, int max_len,
                                hs_dataset **out, hs_err *err) {
    hs_status st = HS_OK;
    loader L = {.path = path, .tok = tok, .c = c, .limit = c->n_ctx, .limit_what = "the model context"};
    if (max_len > 0 && (max_len < L.limit || L.limit <= 0)) L.limit = max_len, L.limit_what = "max_len";
    char *line = NULL;
    size_t cap = 0;
    json_t *o = NULL;
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f) HS_FAIL(err, HS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    ssize_t got;
    for (int lineno = 1; (got = getline(&line, &cap, f)) > 0; lineno++) {
        if (blank(line, (size_t)got)) continue;
        json_error_t je;
        if (!(o = json_loadb(line, (size_t)got, 0, &je)))
            HS_FAIL(err, HS_ERR_FORMAT, "%s:%d:%d: malformed JSON: %s", path, lineno, je.column, je.text);
        if (!json_is_object(o)) HS_FAIL(err, HS_ERR_FORMAT, "%s:%d: not a JSON object", path, lineno);
        if (L.n == L.cap) {
            row *p = realloc(L.rows, (size_t)(L.cap = L.cap ? 2 * L.cap : 64) * sizeof *p);
            if (!p) HS_FAIL(err, HS_ERR_OOM, "%s:%d: out of memory", path, lineno);
            L.rows = p;
        }
        row *r = &L.rows[L.n++];
        memset(r, 0, sizeof *r);
        r->line = lineno;
        HS_CHECK(parse_row(&L, o, r, err));
        json_decref(o);
        o = NULL;
    }
    if (ferror(f)) HS_FAIL(err, HS_ERR_IO, "%s: read error: %s", path, strerror(errno));
    if (L.n == 0) HS_FAIL(err, HS_ERR_FORMAT, "%s: no prompts (the file is empty)", path);
    HS_CHECK(pack(&L, out, err));
exit:
    json_decref(o);
    if (f) fclose(f);
    free(line);
    for (int i = 0; i < L.n; i++) free_row(&L.rows[i]);
    free(L.rows);
    for (int i = 0; i < L.n_tmpl_names; i++) free(L.tmpl_names[i]);
    free(L.tmpl_names);
    return st;
}
