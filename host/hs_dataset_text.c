/* hs_dataset text generator: a corpus cut into windows of equal length, the
 * perplexity protocol of the pruning literature (GPTQ, SparseGPT, Wanda on
 * WikiText-2): the whole file tokenized once, then consecutive windows. */
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_dataset.h"
#include "hs_dataset_internal.h"

hs_status hs_dataset_text(hs_tokenizer *tok, const hs_model_config *c, const char *corpus, int seq_len,
                          int max_windows, int window_bos, hs_dataset **out, hs_err *err) {
    *out = NULL;
    if (!tok) return hs_err_set(err, HS_ERR_INVALID_ARG, "text dataset: needs the model's tokenizer");
    if (seq_len < 2 || max_windows < 0)
        return hs_err_set(err, HS_ERR_INVALID_ARG,
                          "text dataset: seq_len %d must be at least 2 (one prediction) and windows %d not negative",
                          seq_len, max_windows);
    if (c->learned_pos && seq_len > c->n_ctx)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "text dataset: windows of %d tokens exceed the model context %d",
                          seq_len, c->n_ctx);
    const int32_t bos = hs_tokenizer_bos_id(tok);
    if (window_bos && (bos < 0 || bos >= c->n_vocab))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "text dataset: window_bos, but the tokenizer has no BOS token");
    char *text = NULL;
    int32_t *ids = NULL;
    int n = 0;
    hs_status st = hs_ds_read_text(corpus, "text dataset: corpus", &text, err);
    if (st) return st;
    /* as every prompt is encoded: a BOS opens the text where the tokenizer adds one, never an EOS;
     * with a BOS per window, none: each window adds its own */
    st = window_bos ? hs_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n, err)
                    : hs_ds_encode_prompt(tok, text, strlen(text), &ids, &n, err);
    free(text);
    if (st) {
        hs_err_prefix(err, "text dataset: corpus %s", corpus);
        return st;
    }
    const int step = window_bos ? seq_len - 1 : seq_len; /* corpus tokens per window */
    int N = n / step;
    if (max_windows > 0 && N > max_windows) N = max_windows;
    if (N < 1) {
        free(ids);
        return hs_err_set(err, HS_ERR_INVALID_ARG, "text dataset: corpus %s holds %d tokens, fewer than one window of %d",
                          corpus, n, step);
    }
    const int64_t i = hs_ds_outside_vocab(ids, (int64_t)N * step, c->n_vocab);
    if (i >= 0) {
        const int32_t bad = ids[i];
        free(ids);
        return hs_err_set(err, HS_ERR_INVALID_ARG, "text dataset: corpus %s: token %d (at %lld) is outside the "
                          "model's vocabulary of %d", corpus, bad, (long long)i, c->n_vocab);
    }
    hs_dataset *d = NULL;
    if ((st = hs_ds_alloc(N, seq_len, 0, "text dataset", &d, err))) {
        free(ids);
        return st;
    }
    for (int w = 0; w < N; w++) {
        int32_t *row = d->tokens + (int64_t)w * seq_len;
        if (window_bos) *row++ = bos;
        memcpy(row, ids + (int64_t)w * step, (size_t)step * sizeof *row);
        d->lengths[w] = seq_len;
    }
    free(ids);
    *out = d;
    return HS_OK;
}
