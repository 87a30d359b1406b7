/* hs_dataset needle-in-a-haystack generator (Wu et al. 2024): haystack
 * sentences up to a token budget, the needle at a sentence boundary chosen by
 * depth, the question last, and the needle's exact token span. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_dataset_internal.h"

typedef struct {
    char **s; /* [n] sentences, whitespace collapsed */
    int *cnt; /* [n] tokens of " " + sentence */
    int n;
} sentences;

static void sentences_free(sentences *h) {
    for (int i = 0; i < h->n; i++) free(h->s[i]);
    free(h->s);
    free(h->cnt);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Splits after . ! ? (and closing quotes or brackets) followed by white space,
 * and at blank lines; runs of white space become one space. */
static hs_status split_sentences(const char *path, const char *text, sentences *h, hs_err *err) {
    hs_ds_buf cur = {0};
    int cap = 0;
    for (const char *p = text;; p++) {
        int end = !*p;
        if (!end && is_space(*p)) {
            int newlines = 0;
            const char *q = p;
            for (; is_space(*q); q++) newlines += *q == '\n';
            char last = cur.n ? cur.p[cur.n - 1] : 0;
            size_t k = cur.n;
            while (k > 0 && strchr("\"')]", cur.p[k - 1])) k--;
            end = newlines >= 2 || (k > 0 && strchr(".!?", cur.p[k - 1]));
            if (!end && last && hs_ds_buf_add(&cur, " ", 1)) goto oom;
            p = q - 1;
        } else if (!end && hs_ds_buf_add(&cur, p, 1)) {
            goto oom;
        }
        if (end && cur.n) {
            if (h->n == cap) {
                char **v = realloc(h->s, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *v);
                if (!v) goto oom;
                h->s = v;
            }
            h->s[h->n++] = cur.p;
            cur = (hs_ds_buf){0};
        }
        if (!*p) break;
    }
    free(cur.p);
    if (h->n == 0) return hs_err_set(err, HS_ERR_INVALID_ARG, "needle: haystack %s has no text", path);
    return HS_OK;
oom:
    free(cur.p);
    return hs_err_set(err, HS_ERR_OOM, "needle: out of memory splitting %s", path);
}

static hs_status count_tokens(hs_tokenizer *tok, const char *sep, const char *s, int *n, hs_err *err) {
    hs_ds_buf b = {0};
    int32_t *ids = NULL;
    if (hs_ds_buf_add(&b, sep, (size_t)-1) || hs_ds_buf_add(&b, s, (size_t)-1)) {
        free(b.p);
        return hs_err_set(err, HS_ERR_OOM, "needle: out of memory");
    }
    hs_status st = hs_tokenizer_encode(tok, b.p, b.n, 0, &ids, n, err);
    free(ids);
    free(b.p);
    return st;
}

/* 1 if a[0..n) is a prefix of b[0..nb). */
static int is_prefix(const int32_t *a, int n, const int32_t *b, int nb) {
    return n <= nb && !memcmp(a, b, (size_t)n * sizeof *a);
}

typedef struct {
    int32_t *ids;
    int n, start, len;
    int32_t answer; /* with an answer: its token after this prompt */
    char *text;
} needle_row;

/* One prompt from k sentences starting at sentence `first`, the needle at the
 * boundary nearest `depth`. Sets r->ids NULL when it came out longer than L. */
static hs_status build(hs_tokenizer *tok, const sentences *h, int first, int k, double depth, const char *needle,
                       const char *question, int L, needle_row *r, hs_err *err) {
    hs_status st = HS_OK;
    hs_ds_buf b = {0};
    int32_t *pre = NULL, *mid = NULL;
    int npre = 0, nmid = 0, total = 0, cum = 0, bnd = 0;
    for (int j = 0; j < k; j++) total += h->cnt[(first + j) % h->n];
    double best = 1e300;
    for (int j = 0; j <= k; j++) { /* boundary j: after j sentences */
        double dist = cum - depth * total;
        if (dist < 0) dist = -dist;
        if (dist < best) best = dist, bnd = j;
        if (j < k) cum += h->cnt[(first + j) % h->n];
    }
    int oom = hs_ds_buf_add(&b, "", 0);
    for (int j = 0; j < bnd && !oom; j++)
        oom = hs_ds_buf_add(&b, j ? " " : "", (size_t)-1) || hs_ds_buf_add(&b, h->s[(first + j) % h->n], (size_t)-1);
    if (oom) HS_FAIL(err, HS_ERR_OOM, "needle: out of memory");
    HS_CHECK(hs_ds_encode_prompt(tok, b.p, b.n, &pre, &npre, err));
    if (hs_ds_buf_add(&b, bnd ? " " : "", (size_t)-1) || hs_ds_buf_add(&b, needle, (size_t)-1))
        HS_FAIL(err, HS_ERR_OOM, "needle: out of memory");
    HS_CHECK(hs_ds_encode_prompt(tok, b.p, b.n, &mid, &nmid, err));
    for (int j = bnd; j < k && !oom; j++)
        oom = hs_ds_buf_add(&b, " ", 1) || hs_ds_buf_add(&b, h->s[(first + j) % h->n], (size_t)-1);
    if (oom || hs_ds_buf_add(&b, "\n", 1) || hs_ds_buf_add(&b, question, (size_t)-1))
        HS_FAIL(err, HS_ERR_OOM, "needle: out of memory");
    HS_CHECK(hs_ds_encode_prompt(tok, b.p, b.n, &r->ids, &r->n, err));
    if (r->n > L) {
        free(r->ids);
        r->ids = NULL;
        goto exit;
    }
    /* The span is exact only if the text around the needle tokenizes the same
     * with and without what follows it. */
    if (!is_prefix(pre, npre, mid, nmid) || !is_prefix(mid, nmid, r->ids, r->n) || nmid == npre)
        HS_FAIL(err, HS_ERR_UNSUPPORTED, "needle: the tokenizer merges the needle with the text around it (%s)",
                hs_tokenizer_describe(tok));
    r->start = npre;
    r->len = nmid - npre;
    r->text = b.p;
    b.p = NULL;
exit:
    if (st) free(r->ids), r->ids = NULL;
    free(pre);
    free(mid);
    free(b.p);
    return st;
}

/* r->answer: the one token `answer` becomes after r's prompt (nb: its BOS tokens; L, depth: the
 * prompt's, for the messages). */
static hs_status answer_of(hs_tokenizer *tok, needle_row *r, int nb, const char *answer, int L, double depth,
                           const hs_model_config *c, hs_err *err) {
    int extra = 0;
    hs_status st = hs_ds_continuation(tok, r->text, strlen(r->text), r->ids + nb, r->n - nb, answer, &r->answer, &extra,
                                      err);
    if (st) return st;
    if (r->answer < 0)
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "needle: the answer '%s' is not one token after the question (%d tokens%s; the prompt of "
                          "length %d at depth %g)",
                          answer, extra, extra < 0 ? ": it merges with the question's end" : "", L, depth);
    if (r->answer >= c->n_vocab)
        return hs_err_set(err, HS_ERR_INVALID_ARG,
                          "needle: the answer's token %d is outside the model vocabulary [0, %d)", (int)r->answer,
                          c->n_vocab);
    return HS_OK;
}

static hs_status check_args(const hs_tokenizer *tok, const hs_model_config *c, const char *needle, const char *question,
                            const char *answer, const double *depths, int n_depths, const int *lengths, int n_lengths,
                            hs_err *err) {
    if (!tok) return hs_err_set(err, HS_ERR_INVALID_ARG, "needle: needs a tokenizer");
    if (!needle || !*needle || !question || !*question || (answer && !*answer))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "needle: the needle, the question and the answer (if given) must be "
                                                   "non-empty");
    if (n_depths < 1 || n_lengths < 1)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "needle: %d depths and %d lengths: need at least one of each",
                          n_depths, n_lengths);
    for (int i = 0; i < n_depths; i++)
        if (!(depths[i] >= 0 && depths[i] <= 1))
            return hs_err_set(err, HS_ERR_INVALID_ARG, "needle: depth %g is outside [0, 1]", depths[i]);
    for (int i = 0; i < n_lengths; i++)
        if (lengths[i] < 1 || (c->n_ctx > 0 && lengths[i] > c->n_ctx))
            return hs_err_set(err, HS_ERR_INVALID_ARG, "needle: length %d is outside [1, %d] (the model context)",
                              lengths[i], c->n_ctx);
    return HS_OK;
}

hs_status hs_dataset_needle(hs_tokenizer *tok, const hs_model_config *c, const char *haystack_file, const char *needle,
                            const char *question, const char *answer, const double *depths, int n_depths,
                            const int *lengths, int n_lengths, uint64_t seed, hs_dataset **out, hs_err *err) {
    hs_status st = HS_OK;
    char *text = NULL;
    sentences h = {0};
    needle_row *rows = NULL;
    const int N = n_depths * n_lengths, nb = hs_ds_n_bos(tok);
    int n_needle = 0, n_q = 0, T = 0;
    *out = NULL;
    HS_CHECK(check_args(tok, c, needle, question, answer, depths, n_depths, lengths, n_lengths, err));
    HS_CHECK(hs_ds_read_text(haystack_file, "needle: haystack", &text, err));
    HS_CHECK(split_sentences(haystack_file, text, &h, err));
    if (!(h.cnt = malloc((size_t)h.n * sizeof *h.cnt)) || !(rows = calloc((size_t)N, sizeof *rows)))
        HS_FAIL(err, HS_ERR_OOM, "needle: out of memory");
    for (int i = 0; i < h.n; i++) HS_CHECK(count_tokens(tok, " ", h.s[i], &h.cnt[i], err));
    HS_CHECK(count_tokens(tok, " ", needle, &n_needle, err));
    HS_CHECK(count_tokens(tok, "\n", question, &n_q, err));
    uint64_t s = seed ^ 0x6e6565646c65ull; /* "needle" */
    for (int li = 0; li < n_lengths; li++) {
        const int L = lengths[li], first = hs_ds_below(&s, h.n), budget = L - nb - n_needle - n_q;
        if (budget < 0)
            HS_FAIL(err, HS_ERR_INVALID_ARG,
                    "needle: length %d is too short: the needle and the question alone take %d tokens", L, L - budget);
        int k = 0;
        for (int used = 0; used + h.cnt[(first + k) % h.n] <= budget; k++) used += h.cnt[(first + k) % h.n];
        for (int di = 0; di < n_depths; di++) {
            needle_row *r = &rows[li * n_depths + di];
            /* sentence token counts are estimates (a sentence tokenizes a little
             * differently in context): drop sentences until it fits, then add
             * them while they still fit */
            int kk = k + 1;
            while (!r->ids) {
                if (--kk < 0)
                    HS_FAIL(err, HS_ERR_INVALID_ARG, "needle: length %d cannot hold the needle and the question", L);
                HS_CHECK(build(tok, &h, first, kk, depths[di], needle, question, L, r, err));
            }
            for (needle_row more = {0};; kk++, more = (needle_row){0}) {
                HS_CHECK(build(tok, &h, first, kk + 1, depths[di], needle, question, L, &more, err));
                if (!more.ids) break;
                free(r->ids), free(r->text);
                *r = more;
            }
            const int64_t bad = hs_ds_outside_vocab(r->ids, r->n, c->n_vocab);
            if (bad >= 0)
                HS_FAIL(err, HS_ERR_INVALID_ARG, "needle: token id %d is outside the model vocabulary [0, %d)",
                        (int)r->ids[bad], c->n_vocab);
            if (r->n > T) T = r->n;
            if (answer) HS_CHECK(answer_of(tok, r, nb, answer, L, depths[di], c, err));
        }
    }
    hs_dataset *d = NULL;
    HS_CHECK(hs_ds_alloc(N, T, HS_DS_TEXT | HS_DS_NEEDLE | (answer ? HS_DS_ANSWER : 0), "needle", &d, err));
    for (int i = 0; i < N; i++) {
        memcpy(d->tokens + (size_t)i * T, rows[i].ids, (size_t)rows[i].n * sizeof(int32_t));
        d->lengths[i] = rows[i].n;
        d->needle_start[i] = rows[i].start;
        d->needle_len[i] = rows[i].len;
        if (d->answer) d->answer[i] = rows[i].answer;
        d->text[i] = rows[i].text;
        rows[i].text = NULL;
    }
    *out = d;
exit:
    for (int i = 0; rows && i < N; i++) free(rows[i].ids), free(rows[i].text);
    free(rows);
    sentences_free(&h);
    free(text);
    return st;
}
