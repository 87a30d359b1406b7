/* hs_resid_cache (internal): one hook point of [B, T, width] of an unedited
 * run (resid_pre, attn_out, mlp_out, q, k, v) at every layer, kept in backend
 * memory ([L, P_max, T, width], act dtype). Sweeps gather a variant batch's
 * starting residuals (prefix reuse) or patched rows from it with backend
 * copies, so on a GPU nothing crosses the host. */
#ifndef HS_RESID_CACHE_H
#define HS_RESID_CACHE_H

#include "headsweep/hs_forward.h"

typedef struct {
    hs_backend *be;
    hs_hook_point point;
    char *cache;
    size_t row_bytes; /* T * width * element size */
    size_t pos_bytes; /* width * element size */
    size_t es;        /* element size */
    int P_max;
    const hs_hooks *also; /* hooks the cache's hooks pass on to, or NULL */
} hs_resid_cache;

hs_status hs_resid_cache_init(hs_resid_cache *c, hs_backend *be, hs_hook_point point, int n_layers, int P_max,
                              int T, int width, hs_err *err);
void hs_resid_cache_free(hs_resid_cache *c);
/* Hooks for the unedited pass over at most P_max prompts: the point at every
 * layer is copied into the cache; everything `also` wants goes to it too. */
hs_hooks hs_resid_cache_hooks(hs_resid_cache *c, const hs_hooks *also);
/* Row r of dst ([rows, T, width] backend memory) = prompt pi's cached
 * point at layer l; with pos >= 0 only that position is copied. */
hs_status hs_resid_cache_get(const hs_resid_cache *c, int l, int pi, int pos, void *dst, int r, hs_err *err);
/* The same for columns [col0, col0 + ncols) (one head's slice) at positions
 * 0 .. len-1. */
hs_status hs_resid_cache_get_cols(const hs_resid_cache *c, int l, int pi, int col0, int ncols, int len, void *dst,
                                  int r, hs_err *err);

#endif
