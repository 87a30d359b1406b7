/* hs_kv_cache: every layer's keys and values kept in backend memory for
 * decoding. The forward (hs_forward.c) calls in three places: hs_kv_begin
 * checks the batch against the cache and gives appended tokens their
 * positions, hs_kv_layer stores a layer's keys and values before its
 * attention (and, appending, points the attention at the cache), hs_kv_end
 * counts the stored positions once every layer has run. An append that fails
 * part way leaves the counts, and so what later forwards see, as they were
 * (its partial entries lie past them); a prefill empties the cache before it
 * writes, so one that fails leaves nothing to append to. */
#include "hs_session_internal.h"

#include <stdlib.h>

struct hs_kv_cache {
    hs_session *s; /* borrowed */
    int max_B, max_T;
    int B;          /* rows of the last prefill */
    int32_t *len;   /* host [max_B]: positions cached per row */
    int32_t *d_qpos; /* backend [max_B]: the appended tokens' first position per row (the attention's q_pos) */
    void *buf;      /* backend [n_layers][2][max_B][max_T][H_kv][d_head]: k then v per layer */
    size_t layer_bytes; /* one of k or v of one layer */
};

hs_status hs_kv_cache_init(hs_session *s, int max_B, int max_T, hs_kv_cache **out, hs_err *err) {
    *out = NULL;
    const hs_model_config *c = &s->cfg;
    if (max_B <= 0 || max_T <= 0)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "kv cache: %d rows x %d positions must be positive", max_B, max_T);
    hs_kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return hs_err_set(err, HS_ERR_OOM, "kv cache: out of memory");
    kv->s = s, kv->max_B = max_B, kv->max_T = max_T;
    kv->layer_bytes = (size_t)max_B * max_T * c->n_kv_heads * c->d_head * s->es;
    hs_backend *be = s->be;
    hs_status st = HS_OK;
    if (!(kv->len = calloc((size_t)max_B, sizeof *kv->len))) HS_FAIL(err, HS_ERR_OOM, "kv cache: out of memory");
    HS_CHECK(be->ops->alloc(be, (size_t)max_B * sizeof(int32_t), (void **)&kv->d_qpos, err));
    st = be->ops->alloc(be, 2 * (size_t)c->n_layers * kv->layer_bytes, &kv->buf, err);
    if (st) hs_err_prefix(err, "kv cache of %d layers x %d rows x %d positions", c->n_layers, max_B, max_T);
exit:
    if (st) {
        hs_kv_cache_free(kv);
        return st;
    }
    *out = kv;
    return HS_OK;
}

void hs_kv_cache_free(hs_kv_cache *kv) {
    if (!kv) return;
    hs_backend *be = kv->s->be;
    if (kv->d_qpos) be->ops->free(be, kv->d_qpos);
    if (kv->buf) be->ops->free(be, kv->buf);
    free(kv->len);
    free(kv);
}

int hs_kv_cache_len(const hs_kv_cache *kv, int r) { return r >= 0 && r < kv->B ? kv->len[r] : 0; }

int hs_kv_cache_max_T(const hs_kv_cache *kv) { return kv->max_T; }

hs_status hs_kv_begin(hs_kv_cache *kv, const hs_session *s, const hs_batch *b, const hs_forward_params *fp,
                      int32_t *pos, hs_err *err) {
    const hs_model_config *c = &s->cfg;
    if (kv->s != s) return hs_err_set(err, HS_ERR_INVALID_ARG, "kv cache: made for another session");
    if (fp->start_layer || fp->resid_start || fp->resid_start_dev || fp->stop_layer || fp->z_from_hook || b->positions)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "kv cache: not with start_layer, resid_start, stop_layer, "
                                                   "z_from_hook or batch positions (every layer's keys are kept)");
    if (b->B > kv->max_B) return hs_err_set(err, HS_ERR_INVALID_ARG, "kv cache: %d rows, the cache holds %d", b->B, kv->max_B);
    if (!fp->kv_append) {
        if (b->T > kv->max_T)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "kv cache: %d positions, the cache holds %d", b->T, kv->max_T);
        for (int r = 0; b->mask && r < b->B; r++)
            for (int t = 1; t < b->T; t++)
                if (b->mask[(int64_t)r * b->T + t] && !b->mask[(int64_t)r * b->T + t - 1])
                    return hs_err_set(err, HS_ERR_INVALID_ARG, "kv cache: batch row %d is not right-padded (a real "
                                                               "token at %d after padding)", r, t);
        kv->B = 0; /* overwritten from here on: no appends until the prefill completes */
        return HS_OK;
    }
    if (b->B != kv->B)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "kv cache: appending %d rows to a cache of %d", b->B, kv->B);
    for (int64_t i = 0; b->mask && i < (int64_t)b->B * b->T; i++)
        if (!b->mask[i])
            return hs_err_set(err, HS_ERR_INVALID_ARG, "kv cache: appended tokens must all be real (mask 0 at row %d)",
                              (int)(i / b->T));
    for (int i = 0; i < fp->n_edits; i++)
        if (fp->edits[i].pos >= 0 || fp->edits[i].mode == HS_EDIT_SET)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "kv cache: edit %d: appended tokens take no SET or one-position "
                                                       "edits", i);
    for (int r = 0; r < b->B; r++) {
        const int64_t end = (int64_t)kv->len[r] + b->T;
        if (end > kv->max_T || (c->learned_pos && end > c->n_ctx))
            return hs_err_set(err, HS_ERR_INVALID_ARG, "kv cache: row %d: %d cached + %d new positions exceed %d", r,
                              kv->len[r], b->T, end > kv->max_T ? kv->max_T : c->n_ctx);
        for (int t = 0; t < b->T; t++) pos[(int64_t)r * b->T + t] = kv->len[r] + t;
    }
    return s->be->ops->upload(s->be, kv->d_qpos, kv->len, (size_t)b->B * sizeof(int32_t), err);
}

hs_status hs_kv_layer(hs_kv_cache *kv, const hs_session *s, int l, int append, hs_attn_params *ap, hs_err *err) {
    const hs_backend_ops *o = s->be->ops;
    const size_t cell = (size_t)s->cfg.n_kv_heads * s->cfg.d_head * s->es, pitch = (size_t)kv->max_T * cell;
    char *K = (char *)kv->buf + 2 * (size_t)l * kv->layer_bytes, *V = K + kv->layer_bytes;
    const int B = ap->B, T = ap->T;
    hs_status st = HS_OK;
    if (!append) { /* the prompt: row r's positions [0, T) */
        st = o->copy_2d(s->be, K, pitch, s->k, (size_t)T * cell, (size_t)T * cell, (size_t)B, err);
        if (!st) st = o->copy_2d(s->be, V, pitch, s->v, (size_t)T * cell, (size_t)T * cell, (size_t)B, err);
        return st;
    }
    for (int r = 0; r < B && !st; r++) { /* row r's new tokens after its cached ones */
        const size_t at = (size_t)r * pitch + (size_t)kv->len[r] * cell, from = (size_t)r * T * cell;
        st = o->copy(s->be, K + at, (const char *)s->k + from, (size_t)T * cell, err);
        if (!st) st = o->copy(s->be, V + at, (const char *)s->v + from, (size_t)T * cell, err);
    }
    ap->k = K, ap->v = V;
    ap->T_kv = kv->max_T;
    ap->q_pos = kv->d_qpos;
    ap->key_mask = NULL; /* the cached positions are all real: the prompts were right-padded */
    ap->window = hs_session_window(s, l, kv->max_T);
    return st;
}

void hs_kv_end(hs_kv_cache *kv, const hs_batch *b, int append) {
    if (!append) kv->B = b->B;
    for (int r = 0; r < b->B; r++) {
        int n = b->T;
        if (!append && b->mask)
            for (n = 0; n < b->T && b->mask[(int64_t)r * b->T + n];) n++;
        kv->len[r] = append ? kv->len[r] + n : n;
    }
}
