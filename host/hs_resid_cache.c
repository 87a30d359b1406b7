/* hs_resid_cache: one hook point of every layer in backend memory (hs_resid_cache.h). */
#include "hs_resid_cache.h"

#include <string.h>

hs_status hs_resid_cache_init(hs_resid_cache *c, hs_backend *be, hs_hook_point point, int n_layers, int P_max,
                              int T, int width, hs_err *err) {
    memset(c, 0, sizeof *c);
    c->be = be;
    c->point = point;
    c->es = hs_dtype_block_bytes(be->ops->act_dtype(be));
    c->pos_bytes = (size_t)width * c->es;
    c->row_bytes = (size_t)T * c->pos_bytes;
    c->P_max = P_max;
    return be->ops->alloc(be, (size_t)n_layers * P_max * c->row_bytes, (void **)&c->cache, err);
}

void hs_resid_cache_free(hs_resid_cache *c) {
    if (c->cache) c->be->ops->free(c->be, c->cache);
    c->cache = NULL;
}

static int cache_wants(void *user, hs_hook_point p, int layer) {
    const hs_resid_cache *c = user;
    return p == c->point || hs_hooks_want(c->also, p, layer);
}

static hs_status cache_fn(void *user, hs_hook_point p, int l, hs_tensor *t, hs_err *err) {
    const hs_resid_cache *c = user;
    if (p == c->point) {
        hs_status st = c->be->ops->copy(c->be, c->cache + (size_t)l * c->P_max * c->row_bytes, t->data,
                                        (size_t)t->shape[0] * c->row_bytes, err);
        if (st) return st;
    }
    return hs_hooks_want(c->also, p, l) ? c->also->fn(c->also->user, p, l, t, err) : HS_OK;
}

hs_hooks hs_resid_cache_hooks(hs_resid_cache *c, const hs_hooks *also) {
    c->also = also;
    hs_hooks h = {.wants = cache_wants, .fn = cache_fn, .user = c};
    return h;
}

hs_status hs_resid_cache_get(const hs_resid_cache *c, int l, int pi, int pos, void *dst, int r, hs_err *err) {
    const char *src = c->cache + ((size_t)l * c->P_max + pi) * c->row_bytes;
    char *d = (char *)dst + (size_t)r * c->row_bytes;
    if (pos < 0) return c->be->ops->copy(c->be, d, src, c->row_bytes, err);
    return c->be->ops->copy(c->be, d + (size_t)pos * c->pos_bytes, src + (size_t)pos * c->pos_bytes, c->pos_bytes,
                            err);
}

hs_status hs_resid_cache_get_cols(const hs_resid_cache *c, int l, int pi, int col0, int ncols, int len, void *dst,
                                  int r, hs_err *err) {
    const char *src = c->cache + ((size_t)l * c->P_max + pi) * c->row_bytes + (size_t)col0 * c->es;
    char *d = (char *)dst + (size_t)r * c->row_bytes + (size_t)col0 * c->es;
    return c->be->ops->copy_2d(c->be, d, c->pos_bytes, src, c->pos_bytes, (size_t)ncols * c->es, (size_t)len, err);
}
