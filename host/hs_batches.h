/* hs_batches (internal): the prompt-batch loops the experiments share. Both
 * forward right-padded prompts [N, T] (pr->lengths) in batches of rows. */
#ifndef HS_BATCHES_H
#define HS_BATCHES_H

#include "headsweep/hs_ablation.h"
#include "headsweep/hs_capture.h"

/* Fills fp's edits (fp->edits, fp->n_edits) or head scales for the batch of
 * prompts [p0, p0 + B); the loop below calls it once per batch, after the
 * clean pass. */
typedef hs_status (*hs_metric_edit_fn)(void *user, int p0, int B, hs_forward_params *fp, hs_err *err);

/* The metric of every prompt under the caller's edits: the prompts in batches
 * of batch_rows, an unedited pass first for KL, one edited forward, then the
 * per-row metric (second_half: the loss over the repeated half of [BOS] x x
 * prompts instead; the metric must be LOSS). out [N]. */
hs_status hs_metric_per_prompt_edited(hs_session *s, const hs_model *m, const hs_prompts *pr, hs_metric metric,
                                      int second_half, int batch_rows, hs_metric_edit_fn edit, void *user, float *out,
                                      hs_err *err);

/* Forwards the prompts in batches of rows, no logits, with c's hooks
 * attached, and calls visit(user, p0, B, c, err) after each batch, while c
 * holds that batch's tensors. */
typedef hs_status (*hs_capture_visit_fn)(void *user, int p0, int B, const hs_capture *c, hs_err *err);
hs_status hs_capture_batches(hs_session *s, hs_capture *c, const hs_prompts *pr, int rows, hs_capture_visit_fn visit,
                             void *user, hs_err *err);

/* The sources of resample edits: a forward of P source prompts (rows
 * src[0..P) of ref) with cap's hooks attached (z at the layers wanted gives
 * [P, ref->T, H, d_head]); tok and mask are scratch of P * ref->T. */
hs_status hs_resample_forward(hs_session *s, const hs_prompts *ref, const int32_t *src, int P, hs_capture *cap,
                              int32_t *tok, int32_t *mask, hs_err *err);

/* The resample rule for one head of one batch row: SET edits giving head
 * (layer, head) of row `row` the z of row src_row of rz [P, Tr, H, d_head]
 * (from hs_resample_forward) at every position both prompts have, [0, n)
 * with n = min(target length, source length); later positions keep their own
 * z. Writes n edits to out and returns n. */
int hs_resample_edits(hs_z_edit *out, int row, int layer, int head, int target_len, int source_len, const float *rz,
                      int src_row, int Tr, int H, int d_head);

#endif
