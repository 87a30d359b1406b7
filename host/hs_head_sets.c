/* hs_head_sets: one forward per batch of prompts with every head of a set
 * edited in each row (the same edit list the sweeps use). */
#include "headsweep/hs_head_sets.h"

#include <stdlib.h>
#include <string.h>

#include "hs_metric.h"

hs_head_set_params hs_head_set_default_params(void) {
    hs_head_set_params p;
    memset(&p, 0, sizeof p);
    p.metric = HS_METRIC_LOSS;
    p.mode = HS_ABLATE_ZERO;
    p.batch_rows = 16;
    return p;
}

/* Mean next-token loss over the induction-predictable part of [BOS] x x. */
static double second_half_loss(const float *lp, int len) {
    const int n = (len - 1) / 2;
    double s = 0;
    for (int t = n + 1; t <= len - 2; t++) s -= lp[t];
    return s / (n - 1);
}

hs_status hs_head_set_metric(hs_session *s, const hs_model *m, const hs_prompts *pr, const hs_head_set_params *p,
                             const uint8_t *set, float *out, hs_err *err) {
    hs_status st = HS_OK;
    const hs_model_config *c = hs_model_get_config(m);
    const int L = c->n_layers, H = c->n_heads, T = pr->T, V = c->n_vocab, R = p->batch_rows;
    if (R < 1 || p->mode < 0 || p->mode >= HS_ABLATE_COUNT || p->mode == HS_ABLATE_RESAMPLE ||
        (p->mode == HS_ABLATE_MEAN && !p->mean_z) || (p->second_half && p->metric != HS_METRIC_LOSS))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "head sets: bad parameters (batch_rows, mode, mean_z or second_half)");
    for (int i = 0; p->mean_template && i < pr->N; i++)
        if (p->mean_template[i] < 0 || p->mean_template[i] >= p->n_templates)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "head sets: prompt %d has template %d outside [0, %d)", i,
                              p->mean_template[i], p->n_templates);
    if ((st = hs_metric_check(c, pr, p->metric, err))) return hs_err_prefix(err, "head sets");
    for (int i = 0; p->second_half && i < pr->N; i++)
        if (pr->lengths[i] < 5 || pr->lengths[i] % 2 == 0)
            return hs_err_set(err, HS_ERR_INVALID_ARG,
                              "head sets: second_half needs [BOS] x x prompts of odd length >= 5; prompt %d has %d", i,
                              pr->lengths[i]);
    int n_set = 0;
    for (int k = 0; set && k < L * H; k++) n_set += set[k] != 0;
    int32_t *mask = malloc((size_t)R * T * sizeof *mask), *tg = malloc((size_t)R * T * sizeof *tg);
    float *logits = malloc((size_t)R * V * sizeof(float)), *lp = malloc((size_t)R * T * sizeof(float));
    float *clean = malloc((size_t)R * V * sizeof(float)), *scratch = malloc((size_t)V * sizeof(float));
    hs_z_edit *edits = malloc((size_t)(R * n_set > 0 ? R * n_set : 1) * sizeof *edits);
    if (!mask || !tg || !logits || !lp || !clean || !scratch || !edits) HS_FAIL(err, HS_ERR_OOM, "head sets: out of memory");
    for (int p0 = 0; p0 < pr->N; p0 += R) {
        const int B = pr->N - p0 < R ? pr->N - p0 : R;
        const hs_prompts chunk = {.N = B, .T = T, .tokens = pr->tokens + (int64_t)p0 * T, .lengths = pr->lengths + p0};
        hs_prompts_mask_targets(&chunk, NULL, mask, tg);
        hs_batch b = {.B = B, .T = T, .tokens = chunk.tokens, .mask = mask, .targets = tg};
        hs_forward_params fp = hs_forward_default_params();
        fp.target_logprobs = p->metric == HS_METRIC_LOSS ? lp : NULL;
        if (p->metric == HS_METRIC_KL) { /* the unedited distribution first */
            HS_CHECK(hs_forward(s, &b, &fp, logits, err));
            for (int i = 0; i < B; i++) hs_log_softmax(logits + (int64_t)i * V, V, clean + (int64_t)i * V);
        }
        int ne = 0;
        for (int r = 0; r < B; r++)
            for (int k = 0; set && k < L * H; k++) {
                if (!set[k]) continue;
                const int l = k / H, h = k % H;
                hs_z_edit e = {.row = r, .layer = l, .head = h, .pos = -1, .scale = p->scale};
                e.mode = p->mode == HS_ABLATE_ZERO    ? HS_EDIT_ZERO
                         : p->mode == HS_ABLATE_SCALE ? HS_EDIT_SCALE
                         : p->mode == HS_ABLATE_MEAN  ? HS_EDIT_SET
                                                      : HS_EDIT_UNIFORM;
                if (p->mode == HS_ABLATE_MEAN) {
                    const int64_t tm = p->mean_template ? p->mean_template[p0 + r] : 0; /* the row's template mean */
                    e.src = p->mean_z + (tm * L * H + k) * T * c->d_head;
                }
                edits[ne++] = e;
            }
        fp.edits = edits;
        fp.n_edits = ne;
        HS_CHECK(hs_forward(s, &b, &fp, logits, err));
        for (int i = 0; i < B; i++)
            out[p0 + i] = p->second_half ? (float)second_half_loss(lp + (int64_t)i * T, pr->lengths[p0 + i])
                                         : (float)hs_row_metric(p->metric, pr, p0 + i, logits + (int64_t)i * V,
                                                                lp + (int64_t)i * T, V, clean + (int64_t)i * V, scratch);
    }
exit:
    free(mask), free(tg), free(logits), free(lp), free(clean), free(scratch), free(edits);
    return st;
}
