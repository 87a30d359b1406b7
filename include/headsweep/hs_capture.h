/* hs_capture: records hook-point activations of a forward pass into host f32
 * arrays (copied off the backend as they pass). Only requested points are kept. */
#ifndef HS_CAPTURE_H
#define HS_CAPTURE_H

#include "headsweep/hs_forward.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hs_capture hs_capture;

/* The capture borrows be (used to copy activations to the host). */
hs_status hs_capture_init(hs_backend *be, hs_capture **out, hs_err *err);
void hs_capture_free(hs_capture *c);

/* Requests point p at layer (layer < 0: every layer). */
hs_status hs_capture_want(hs_capture *c, hs_hook_point p, int layer, hs_err *err);
/* Requests every point at every layer. */
void hs_capture_want_all(hs_capture *c);

/* Requests TransformerLens's hook_result at layer (layer < 0: every layer):
 * result [B, T, H, d_model], result[b, t, h] = z[b, t, h] . W_O[:, h-slice]^T
 * (each head's share of attn_out, without the output bias: attn_out = sum over
 * h of result + b_O). Computed on the host from the captured z and m's host
 * W_O, so z is recorded at those layers too; memory-heavy (d_model / d_head
 * times z). m is borrowed and must outlive c. Not part of hs_capture_want_all
 * (opt-in, as in TransformerLens). Errors: HS_ERR_INVALID_ARG (layer out of
 * range, another model than a previous request). */
hs_status hs_capture_want_result(hs_capture *c, const hs_model *m, int layer, hs_err *err);

/* The recorded result of layer (shape [B, T, H, d_model] in *shape if
 * non-NULL), or NULL; owned by c, replaced by the next forward. */
const float *hs_capture_get_result(const hs_capture *c, int layer, hs_tensor *shape);

/* Hooks to pass in hs_forward_params; valid while c lives. */
hs_hooks hs_capture_hooks(hs_capture *c);

/* The recorded activation (host f32, row-major, shape in *shape if non-NULL),
 * or NULL if it was not recorded by the last forward. Owned by c; replaced
 * by the next forward. */
const float *hs_capture_get(const hs_capture *c, hs_hook_point p, int layer, hs_tensor *shape);

#ifdef __cplusplus
}
#endif
#endif
