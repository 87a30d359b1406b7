/* hs_zedit (internal to hs_forward): one layer's z edits in the form the
 * attention op applies them itself. The edit list is folded, in list order, into
 *   - hscale [B, H]: the multiplier on the computed z (all-position ZERO/SCALE);
 *   - uni [B, H]: uniform-attention flags (they change how z is computed, so
 *     they sit upstream of every other edit);
 *   - set_idx [B, T, H] and vec [n_vec, d_head]: the vectors the op writes in
 *     place of its output (SET, and a one-position ZERO as a SET of zeros);
 *   - post [B, T, H]: a one-position SCALE of a computed z, the one edit the op
 *     cannot take (applied after it; no experiment makes one).
 * Multipliers commute, so list order only matters around a SET: a SET replaces
 * whatever came before it at its (row, position, head), and a ZERO/SCALE after
 * it scales the staged vector. */
#ifndef HS_ZEDIT_H
#define HS_ZEDIT_H

#include <stdint.h>

#include "headsweep/hs_forward.h"

typedef struct {
    int B, T, H, dh;
    float *hscale;    /* [B, H] */
    uint8_t *uni;     /* [B, H] */
    int32_t *set_idx; /* [B, T, H], -1 = computed */
    float *vec;       /* [cap_vec, dh] */
    float *post;      /* [B, T, H] or NULL until a one-position SCALE needs it */
    int64_t n_vec, cap_vec;
    int32_t zero_vec; /* index of the shared zero vector, -1 = none yet */
    /* what the last hs_zedit_build found in use */
    int use_scale, use_uni, use_set, use_post;
} hs_zedit;

/* Sizes the tables for batches of B x T and the vectors any one layer of
 * `edits` can stage. */
hs_status hs_zedit_init(hs_zedit *z, int B, int T, int H, int dh, const hs_z_edit *edits, int n_edits, hs_err *err);
void hs_zedit_free(hs_zedit *z);

/* Folds the edits of `layer` (head_scale_l: host f32 [B, H] or NULL). */
void hs_zedit_build(hs_zedit *z, const float *head_scale_l, const hs_z_edit *edits, int n_edits, int layer);

#endif
