/* hs_batches: the prompt-batch loops the experiments share (hs_batches.h). */
#include "hs_batches.h"

#include <stdlib.h>
#include <string.h>

#include "hs_metric.h"

/* Mean next-token loss over the induction-predictable part of [BOS] x x. */
static double second_half_loss(const float *lp, int len) {
    const int n = (len - 1) / 2;
    double s = 0;
    for (int t = n + 1; t <= len - 2; t++) s -= lp[t];
    return s / (n - 1);
}

hs_status hs_metric_per_prompt_edited(hs_session *s, const hs_model *m, const hs_prompts *pr, hs_metric metric,
                                      int second_half, int batch_rows, hs_metric_edit_fn edit, void *user, float *out,
                                      hs_err *err) {
    hs_status st = HS_OK;
    const int T = pr->T, V = hs_model_get_config(m)->n_vocab, R = batch_rows;
    int32_t *mask = malloc((size_t)R * T * sizeof *mask), *tg = malloc((size_t)R * T * sizeof *tg);
    float *logits = malloc((size_t)R * V * sizeof(float)), *lp = malloc((size_t)R * T * sizeof(float));
    float *clean = malloc((size_t)R * V * sizeof(float)), *scratch = malloc((size_t)V * sizeof(float));
    if (!mask || !tg || !logits || !lp || !clean || !scratch) HS_FAIL(err, HS_ERR_OOM, "metric: out of memory");
    for (int p0 = 0; p0 < pr->N; p0 += R) {
        const int B = pr->N - p0 < R ? pr->N - p0 : R;
        const hs_prompts chunk = {.N = B, .T = T, .tokens = pr->tokens + (int64_t)p0 * T, .lengths = pr->lengths + p0};
        hs_prompts_mask_targets(&chunk, NULL, mask, tg);
        hs_batch b = {.B = B, .T = T, .tokens = chunk.tokens, .mask = mask, .targets = tg};
        hs_forward_params fp = hs_forward_default_params();
        fp.logits = hs_metric_logits(metric);
        fp.target_logprobs = metric == HS_METRIC_LOSS ? lp : NULL;
        if (metric == HS_METRIC_KL) { /* the unedited distribution first */
            HS_CHECK(hs_forward(s, &b, &fp, logits, err));
            for (int i = 0; i < B; i++) hs_log_softmax(logits + (int64_t)i * V, V, clean + (int64_t)i * V);
        }
        HS_CHECK(edit(user, p0, B, &fp, err));
        HS_CHECK(hs_forward(s, &b, &fp, logits, err));
        for (int i = 0; i < B; i++)
            out[p0 + i] = second_half ? (float)second_half_loss(lp + (int64_t)i * T, pr->lengths[p0 + i])
                                      : (float)hs_row_metric(metric, pr, p0 + i, logits + (int64_t)i * V,
                                                             lp + (int64_t)i * T, V, clean + (int64_t)i * V, scratch);
    }
exit:
    free(mask), free(tg), free(logits), free(lp), free(clean), free(scratch);
    return st;
}

hs_status hs_capture_batches(hs_session *s, hs_capture *c, const hs_prompts *pr, int rows, hs_capture_visit_fn visit,
                             void *user, hs_err *err) {
    hs_status st = HS_OK;
    const int T = pr->T;
    int32_t *mask = malloc((size_t)(rows > 0 ? rows : 1) * T * sizeof *mask);
    if (!mask) return hs_err_set(err, HS_ERR_OOM, "capture: out of memory");
    hs_hooks hooks = hs_capture_hooks(c);
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = HS_LOGITS_NONE;
    fp.hooks = &hooks;
    for (int p0 = 0; p0 < pr->N; p0 += rows) {
        const int B = pr->N - p0 < rows ? pr->N - p0 : rows;
        const hs_prompts chunk = {.N = B, .T = T, .tokens = pr->tokens + (int64_t)p0 * T, .lengths = pr->lengths + p0};
        hs_prompts_mask_targets(&chunk, NULL, mask, NULL);
        hs_batch b = {.B = B, .T = T, .tokens = chunk.tokens, .mask = mask};
        HS_CHECK(hs_forward(s, &b, &fp, NULL, err));
        HS_CHECK(visit(user, p0, B, c, err));
    }
exit:
    free(mask);
    return st;
}

hs_status hs_resample_forward(hs_session *s, const hs_prompts *ref, const int32_t *src, int P, hs_capture *cap,
                              int32_t *tok, int32_t *mask, hs_err *err) {
    const int T = ref->T;
    for (int i = 0; i < P; i++) {
        memcpy(tok + (int64_t)i * T, ref->tokens + (int64_t)src[i] * T, (size_t)T * sizeof *tok);
        for (int t = 0; t < T; t++) mask[(int64_t)i * T + t] = t < ref->lengths[src[i]];
    }
    hs_hooks hooks = hs_capture_hooks(cap);
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = HS_LOGITS_NONE;
    fp.hooks = &hooks;
    hs_batch b = {.B = P, .T = T, .tokens = tok, .mask = mask};
    return hs_forward(s, &b, &fp, NULL, err);
}

int hs_resample_edits(hs_z_edit *out, int row, int layer, int head, int target_len, int source_len, const float *rz,
                      int src_row, int Tr, int H, int d_head) {
    const int n = target_len < source_len ? target_len : source_len;
    for (int t = 0; t < n; t++)
        out[t] = (hs_z_edit){.row = row, .layer = layer, .head = head, .pos = t, .mode = HS_EDIT_SET,
                             .src = rz + (((int64_t)src_row * Tr + t) * H + head) * d_head};
    return n;
}
