/* hs_dataset: the dataset object, helpers shared by the readers and
 * generators (allocation, prompt encoding, answer-as-continuation), and the
 * induction generator. Generators are seeded and deterministic. */
#include "headsweep/hs_dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_dataset_internal.h"

static void free_strings(char **v, int n) {
    if (v)
        for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

void hs_dataset_free(hs_dataset *d) {
    if (!d) return;
    free_strings(d->text, d->N);
    free_strings(d->id, d->N);
    free(d->tokens);
    free(d->lengths);
    free(d->answer);
    free(d->distractor);
    free(d->template_id);
    free(d->corrupt_tokens);
    free(d->needle_start);
    free(d->needle_len);
    free(d);
}

hs_prompts hs_dataset_prompts(const hs_dataset *d) {
    hs_prompts p = {.N = d->N,
                    .T = d->T,
                    .tokens = d->tokens,
                    .lengths = d->lengths,
                    .answer = d->answer,
                    .distractor = d->distractor};
    return p;
}

hs_status hs_ds_alloc(int N, int T, unsigned fields, const char *what, hs_dataset **out, hs_err *err) {
    *out = NULL;
    hs_dataset *d = calloc(1, sizeof *d);
    if (!d) return hs_err_set(err, HS_ERR_OOM, "%s: out of memory", what);
    const size_t n = (size_t)N, nt = (size_t)N * (size_t)T;
    d->N = N;
    d->T = T;
    int ok = (d->tokens = calloc(nt ? nt : 1, sizeof *d->tokens)) && (d->lengths = calloc(n, sizeof *d->lengths));
    if (fields & HS_DS_ANSWER) ok = ok && (d->answer = calloc(n, sizeof *d->answer));
    if (fields & HS_DS_DISTRACTOR) ok = ok && (d->distractor = calloc(n, sizeof *d->distractor));
    if (fields & HS_DS_TEMPLATE) ok = ok && (d->template_id = calloc(n, sizeof *d->template_id));
    if (fields & HS_DS_TEXT) ok = ok && (d->text = calloc(n, sizeof *d->text));
    if (fields & HS_DS_CORRUPT) ok = ok && (d->corrupt_tokens = calloc(nt ? nt : 1, sizeof *d->corrupt_tokens));
    if (fields & HS_DS_NEEDLE)
        ok = ok && (d->needle_start = calloc(n, sizeof *d->needle_start)) &&
             (d->needle_len = calloc(n, sizeof *d->needle_len));
    if (fields & HS_DS_ID) ok = ok && (d->id = calloc(n, sizeof *d->id));
    if (!ok) {
        hs_dataset_free(d);
        return hs_err_set(err, HS_ERR_OOM, "%s: out of memory for %d x %d tokens", what, N, T);
    }
    *out = d;
    return HS_OK;
}

int hs_ds_n_bos(const hs_tokenizer *tok) { return tok && hs_tokenizer_add_bos(tok) ? 1 : 0; }

/* Encoded without special tokens, BOS added by hand: the post-processor may
 * also append EOS, which a prompt the model must continue cannot end with. */
hs_status hs_ds_encode_prompt(hs_tokenizer *tok, const char *text, size_t len, int32_t **ids, int *n, hs_err *err) {
    int32_t *raw = NULL;
    int nraw = 0;
    *ids = NULL;
    *n = 0;
    hs_status st = hs_tokenizer_encode(tok, text, len, 0, &raw, &nraw, err);
    if (st) return st;
    const int nb = hs_ds_n_bos(tok);
    if (!nb) {
        *ids = raw;
        *n = nraw;
        return HS_OK;
    }
    int32_t *v = malloc(((size_t)nraw + 1) * sizeof *v);
    if (!v) {
        free(raw);
        return hs_err_set(err, HS_ERR_OOM, "out of memory encoding a prompt");
    }
    v[0] = hs_tokenizer_bos_id(tok);
    memcpy(v + 1, raw, (size_t)nraw * sizeof *v);
    free(raw);
    *ids = v;
    *n = nraw + 1;
    return HS_OK;
}

hs_status hs_ds_continuation(hs_tokenizer *tok, const char *prompt, size_t plen, const int32_t *prompt_ids,
                             int n_prompt, const char *cont, int32_t *id, int *n_extra, hs_err *err) {
    hs_ds_buf b = {0};
    int32_t *ids = NULL;
    int n = 0;
    hs_status st = HS_OK;
    *id = -1;
    *n_extra = -1;
    if (hs_ds_buf_add(&b, prompt, plen) || hs_ds_buf_add(&b, cont, (size_t)-1))
        HS_FAIL(err, HS_ERR_OOM, "out of memory encoding an answer");
    HS_CHECK(hs_tokenizer_encode(tok, b.p, b.n, 0, &ids, &n, err));
    /* The prompt's own tokens must survive: a merge across the boundary would
     * change what the model reads before the answer. */
    if (n < n_prompt || memcmp(ids, prompt_ids, (size_t)n_prompt * sizeof *ids)) goto exit;
    *n_extra = n - n_prompt;
    if (n == n_prompt + 1) *id = ids[n_prompt];
exit:
    free(ids);
    free(b.p);
    return st;
}

int hs_ds_buf_add(hs_ds_buf *b, const char *s, size_t n) {
    if (n == (size_t)-1) n = strlen(s);
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

hs_status hs_dataset_induction(const hs_model_config *c, int n, int seq_len, int token_min, int token_max,
                               uint64_t seed, hs_dataset **out, hs_err *err) {
    *out = NULL;
    if (n < 1 || seq_len < 1)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "induction dataset: n %d and seq_len %d must be positive", n,
                          seq_len);
    if (token_min < 0 || token_max > c->n_vocab || token_min >= token_max)
        return hs_err_set(err, HS_ERR_INVALID_ARG,
                          "induction dataset: token range [%d, %d) must lie inside the vocabulary [0, %d)", token_min,
                          token_max, c->n_vocab);
    int T = 2 * seq_len + 1;
    if (c->learned_pos && T > c->n_ctx)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "induction dataset: %d tokens exceed the model context %d", T,
                          c->n_ctx);
    hs_dataset *d = NULL;
    hs_status st = hs_ds_alloc(n, T, 0, "induction dataset", &d, err);
    if (st) return st;
    uint64_t s = seed ^ 0x696e64756374696full; /* "induction": streams differ per generator */
    int32_t bos = c->bos_token_id >= 0 && c->bos_token_id < c->n_vocab ? c->bos_token_id : token_min;
    uint64_t span = (uint64_t)(token_max - token_min);
    for (int i = 0; i < n; i++) {
        int32_t *row = d->tokens + (int64_t)i * T;
        row[0] = bos;
        for (int t = 0; t < seq_len; t++)
            row[1 + t] = row[1 + seq_len + t] = token_min + (int32_t)(hs_ds_next_u64(&s) % span);
        d->lengths[i] = T;
    }
    *out = d;
    return HS_OK;
}

hs_status hs_ds_read_text(const char *path, const char *what, char **out, hs_err *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return hs_err_set(err, HS_ERR_IO, "%s %s: cannot open: %s", what, path, strerror(errno));
    hs_ds_buf b = {0};
    char chunk[65536];
    size_t got;
    int oom = hs_ds_buf_add(&b, "", 0);
    while (!oom && (got = fread(chunk, 1, sizeof chunk, f)) > 0) oom = hs_ds_buf_add(&b, chunk, got);
    int bad = ferror(f);
    fclose(f);
    if (oom || bad) {
        free(b.p);
        return oom ? hs_err_set(err, HS_ERR_OOM, "%s %s: out of memory reading it", what, path)
                   : hs_err_set(err, HS_ERR_IO, "%s %s: cannot read it", what, path);
    }
    if (strlen(b.p) != b.n) {
        free(b.p);
        return hs_err_set(err, HS_ERR_INVALID_ARG, "%s %s contains NUL bytes", what, path);
    }
    *out = b.p;
    return HS_OK;
}
