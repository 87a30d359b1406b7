/* hs_head_grad: the gradient of the loss with respect to every head's mask
 * variable (hs_head_grad.h): one forward and one backward (hs_backward.h),
 * whose visitor reduces dL/dxi_{l,h} = sum_t z_{t,h} . dz_{t,h} per row on
 * the backend. */
#include "headsweep/hs_head_grad.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hs_backward.h"
#include "hs_metric.h"

typedef struct {
    hs_session *s;
    const hs_batch *b;
    float *host; /* [B, H] */
    float *grad; /* [B, L, H] */
} dots_ctx;

/* grad[b, l, h] = sum over the row's positions of z . dz for head h, reduced
 * on the backend (on a GPU only [B, H] floats cross PCIe). */
static hs_status head_dots(void *user, int l, const hs_bwd_layer *g, hs_err *err) {
    dots_ctx *x = user;
    hs_session *s = x->s;
    const int H = s->cfg.n_heads, B = x->b->B;
    float *dev = s->bwd->dots;
    hs_status st = s->be->ops->head_dot(s->be, g->z, g->dz, B, x->b->T, H, s->cfg.d_head, dev, err);
    if (st == HS_OK) st = s->be->ops->download(s->be, x->host, dev, (size_t)B * H * sizeof(float), err);
    for (int r = 0; st == HS_OK && r < B; r++)
        memcpy(x->grad + ((int64_t)r * s->cfg.n_layers + l) * H, x->host + (int64_t)r * H, (size_t)H * sizeof(float));
    return st;
}

/* The gradient of the summed NLL over b->targets (pr NULL), or of a
 * last-position metric of the batch, which holds prompts p0 .. p0 + B - 1 of
 * pr (their answers and distractors). */
static hs_status head_grad(hs_session *s, const hs_batch *b, const hs_prompts *pr, int p0, hs_metric metric,
                           const float *head_mask, float *grad, hs_err *err) {
    const hs_model_config *c = &s->cfg;
    const int BH = b->B * c->n_heads, V = c->n_vocab;
    hs_status st = HS_OK;
    float *dots = malloc((size_t)BH * sizeof(float));
    float *hsc = head_mask ? malloc((size_t)c->n_layers * BH * sizeof(float)) : NULL; /* [L, B, H] */
    const int last = pr != NULL; /* a last-position metric */
    float *logits = last ? malloc((size_t)b->B * V * sizeof(float)) : NULL,
          *scratch = last ? malloc((size_t)V * sizeof(float)) : NULL;
    if (!dots || (head_mask && !hsc) || (last && (!logits || !scratch)))
        HS_FAIL(err, HS_ERR_OOM, "head gradient: out of memory");
    for (int64_t i = 0; head_mask && i < (int64_t)c->n_layers * BH; i++)
        hsc[i] = head_mask[i / BH * c->n_heads + i % c->n_heads];
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = last ? HS_LOGITS_LAST : HS_LOGITS_NONE;
    fp.head_scale = hsc;
    dots_ctx x = {.s = s, .b = b, .host = dots, .grad = grad};
    HS_CHECK(hs_bwd_forward(s, b, &fp, logits, err));
    if (last) {
        hs_metric_dlogits(metric, pr, p0, b->B, logits, V, NULL, logits, scratch); /* in place */
        HS_CHECK(hs_bwd_seed_last(s, b, logits, err));
    } else {
        HS_CHECK(hs_bwd_seed_nll(s, b, b->targets, err));
    }
    HS_CHECK(hs_bwd_walk(s, b, hsc, 0, head_dots, &x, err));
exit:
    if (st) hs_err_prefix(err, "head gradient");
    free(dots), free(hsc), free(logits), free(scratch);
    return st;
}

hs_status hs_head_grad(hs_session *s, const hs_batch *b, const float *head_mask, float *grad, hs_err *err) {
    if (!b->targets) return hs_err_set(err, HS_ERR_INVALID_ARG, "head gradient: the batch has no targets");
    return head_grad(s, b, NULL, 0, HS_METRIC_LOSS, head_mask, grad, err);
}

hs_status hs_head_grad_per_prompt(hs_session *s, const hs_prompts *pr, const float *head_mask, int batch_rows,
                                  float *out, hs_err *err) {
    return hs_head_grad_metric(s, pr, HS_METRIC_LOSS, head_mask, batch_rows, out, err);
}

hs_status hs_head_grad_metric(hs_session *s, const hs_prompts *pr, hs_metric metric, const float *head_mask,
                              int batch_rows, float *out, hs_err *err) {
    if (metric != HS_METRIC_LOSS && metric != HS_METRIC_LOGIT_DIFF && metric != HS_METRIC_LOGPROB &&
        metric != HS_METRIC_LOGIT)
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "head gradient: metric %s (KL to the unmasked model has zero gradient there, accuracy "
                          "none); use loss, logit_diff, logprob or logit", hs_metric_name(metric));
    hs_status st = hs_metric_check(&s->cfg, pr, metric, err);
    if (st) return hs_err_prefix(err, "head gradient");
    const int T = pr->T, R = batch_rows > 0 ? batch_rows : 1;
    const int64_t per = (int64_t)s->cfg.n_layers * s->cfg.n_heads;
    int32_t *mask = malloc((size_t)R * T * sizeof *mask), *tg = malloc((size_t)R * T * sizeof *tg);
    if (!mask || !tg) HS_FAIL(err, HS_ERR_OOM, "head gradient: out of memory");
    for (int p0 = 0; p0 < pr->N; p0 += R) {
        const int B = pr->N - p0 < R ? pr->N - p0 : R;
        const hs_prompts chunk = {.N = B, .T = T, .tokens = pr->tokens + (int64_t)p0 * T, .lengths = pr->lengths + p0};
        hs_prompts_mask_targets(&chunk, NULL, mask, tg);
        const hs_batch b = {.B = B, .T = T, .tokens = chunk.tokens, .mask = mask, .targets = tg};
        HS_CHECK(head_grad(s, &b, metric == HS_METRIC_LOSS ? NULL : pr, p0, metric, head_mask, out + (int64_t)p0 * per,
                           err));
    }
exit:
    free(mask), free(tg);
    return st;
}

void hs_head_importance(const float *grad, const int32_t *tokens, int N, int L, int H, float *raw, float *norm) {
    double tot = 0;
    for (int p = 0; p < N; p++) tot += tokens[p];
    for (int l = 0; l < L; l++) {
        double ss = 0;
        for (int pass = 0; pass < 2; pass++) /* the layer's norm, then the outputs */
            for (int h = 0; h < H; h++) {
                double a = 0;
                for (int p = 0; p < N; p++) a += fabs((double)grad[((int64_t)p * L + l) * H + h]);
                const double r = tot > 0 ? a / tot : 0.0;
                if (pass == 0) {
                    ss += r * r;
                    continue;
                }
                if (raw) raw[l * H + h] = (float)r;
                if (norm) norm[l * H + h] = ss > 0 ? (float)(r / sqrt(ss)) : 0.0f;
            }
    }
}
