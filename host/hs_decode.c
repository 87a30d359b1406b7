/* hs_decode: greedy decoding, one batch of prompts at a time (hs_decode.h). */
#include "hs_decode.h"

#include <stdlib.h>
#include <string.h>

#include "hs_session_internal.h"

hs_status hs_decoder_init(hs_session *s, const hs_model *m, int R, int max_len, int n_generate, int cache,
                          hs_decoder *d, hs_err *err) {
    memset(d, 0, sizeof *d);
    const hs_model_config *c = hs_model_get_config(m);
    d->s = s, d->R = R, d->V = c->n_vocab;
    d->longrope_ctx = c->rope_scaling == HS_ROPE_SCALING_LONGROPE ? c->rope_original_ctx : 0;
    d->Tc = max_len + n_generate - 1; /* the last token generated is never run */
    const size_t cells = (size_t)R * (d->Tc + 1);
    d->ctx = malloc(cells * sizeof *d->ctx);
    d->tok = malloc(cells * sizeof *d->tok);
    d->mask = malloc(cells * sizeof *d->mask);
    d->cur = malloc((size_t)R * sizeof *d->cur);
    d->last = malloc((size_t)R * sizeof *d->last);
    d->logits = malloc((size_t)R * d->V * sizeof *d->logits);
    if (!d->ctx || !d->tok || !d->mask || !d->cur || !d->last || !d->logits) {
        hs_decoder_free(d);
        return hs_err_set(err, HS_ERR_OOM, "decoding: out of memory for %d rows x %d tokens", R, d->Tc);
    }
    /* LongRoPE reruns the contexts at the step one passes the original context: room for that */
    if (cache && d->longrope_ctx && d->longrope_ctx < d->Tc && s->max_T < d->Tc) {
        hs_decoder_free(d);
        return hs_err_set(err, HS_ERR_INVALID_ARG,
                          "decoding: LongRoPE reruns the contexts when one passes the original context of %d: the "
                          "session needs max_T >= %d (the longest prompt %d + %d generated - 1), it has %d",
                          c->rope_original_ctx, max_len + n_generate - 1, max_len, n_generate, s->max_T);
    }
    if (!cache) return HS_OK;
    hs_status st = hs_kv_cache_init(s, R, d->Tc, &d->kv, err);
    if (st == HS_ERR_UNSUPPORTED || st == HS_ERR_OOM) { /* rerun the context instead: slower, the same tokens */
        st = HS_OK, d->kv = NULL;
        if (err) err->code = HS_OK, err->msg[0] = '\0';
    }
    if (st) hs_decoder_free(d);
    return st;
}

hs_status hs_needle_spans_check(const hs_prompts *pr, const int32_t *ns, const int32_t *nl, const char *what,
                                hs_err *err) {
    if (!ns || !nl) return hs_err_set(err, HS_ERR_INVALID_ARG, "%s: needs the needle spans", what);
    for (int i = 0; i < pr->N; i++)
        if (pr->lengths[i] < 1 || pr->lengths[i] > pr->T || nl[i] < 1 || ns[i] < 0 || ns[i] + nl[i] > pr->lengths[i])
            return hs_err_set(err, HS_ERR_INVALID_ARG, "%s: prompt %d: needle [%d, %d) outside its %d tokens (or an "
                                                       "empty needle)", what, i, ns[i], ns[i] + nl[i], pr->lengths[i]);
    return HS_OK;
}

void hs_decoder_free(hs_decoder *d) {
    hs_kv_cache_free(d->kv);
    free(d->ctx), free(d->tok), free(d->mask), free(d->cur), free(d->last), free(d->logits);
    memset(d, 0, sizeof *d);
}

void hs_decoder_start(hs_decoder *d, const hs_prompts *pr, int p0, int B) {
    d->B = B, d->step = 0;
    for (int b = 0; b < B; b++) {
        d->cur[b] = pr->lengths[p0 + b];
        memcpy(d->ctx + (int64_t)b * (d->Tc + 1), pr->tokens + (int64_t)(p0 + b) * pr->T, (size_t)d->cur[b] * sizeof *d->ctx);
    }
}

hs_status hs_decoder_step(hs_decoder *d, hs_forward_params *fp, int32_t *w, hs_err *err) {
    const int B = d->B, V = d->V, W = d->Tc + 1;
    fp->logits = HS_LOGITS_LAST;
    fp->kv = d->kv;
    fp->kv_append = d->kv && d->step > 0;
    /* LongRoPE: the step at which a row passes the original context reruns the contexts (refilling
     * the cache), so that every key takes the long table, as transformers' generate does (Phi-3's
     * prepare_inputs_for_generation drops its cache there) */
    for (int b = 0; fp->kv_append && d->longrope_ctx && b < B; b++)
        if (d->cur[b] == d->longrope_ctx + 1) fp->kv_append = 0;
    fp->pattern_rows = NULL;
    hs_batch batch = {.B = B, .T = 1, .tokens = d->tok};
    if (fp->kv_append) { /* the last generated token: its attention row is the only one */
        for (int b = 0; b < B; b++) d->tok[b] = d->ctx[(int64_t)b * W + d->cur[b] - 1];
    } else { /* a right-padded [B, T] view of the contexts; the patterns of each row's last position */
        int T = 0;
        for (int b = 0; b < B; b++) T = d->cur[b] > T ? d->cur[b] : T;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                d->tok[(int64_t)b * T + t] = t < d->cur[b] ? d->ctx[(int64_t)b * W + t] : 0;
                d->mask[(int64_t)b * T + t] = t < d->cur[b];
            }
        for (int b = 0; b < B; b++) d->last[b] = d->cur[b] - 1;
        batch.T = T, batch.mask = d->mask;
        fp->pattern_rows = d->last;
    }
    hs_status st = hs_forward(d->s, &batch, fp, d->logits, err);
    if (st) return st;
    for (int b = 0; b < B; b++) {
        const float *lg = d->logits + (int64_t)b * V;
        int32_t best = 0;
        for (int v = 1; v < V; v++)
            if (lg[v] > lg[best]) best = v;
        w[b] = best;
        if (d->cur[b] < W) d->ctx[(int64_t)b * W + d->cur[b]++] = best;
    }
    d->step++;
    return HS_OK;
}

float hs_needle_recall(const int32_t *needle, int n, const int32_t *gen, int G) {
    int hit = 0;
    for (int i = 0; i < n; i++) {
        int first = 1, in_needle = 0, in_gen = 0; /* each distinct id once, at its first occurrence */
        for (int j = 0; j < i && first; j++) first = needle[j] != needle[i];
        if (!first) continue;
        for (int j = i; j < n; j++) in_needle += needle[j] == needle[i];
        for (int j = 0; j < G; j++) in_gen += gen[j] == needle[i];
        hit += in_needle < in_gen ? in_needle : in_gen;
    }
    return (float)hit / (float)n;
}
