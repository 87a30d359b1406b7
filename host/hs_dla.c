/* hs_dla: direct logit attribution (hs_dla.h). One forward per batch; its hooks copy the
 * rows of each prompt's last token (z and mlp_out of every layer, the embedding, the final
 * residual) to the host, where the components are projected on the host weights: per layer
 * one GEMM of the batch's directions through W_O, so a 7B model costs what one token's
 * W_O products cost per prompt. */
#include "headsweep/hs_dla.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hs_metric.h"
#include "hs_session_internal.h"

typedef struct {
    hs_session *s;
    const int32_t *last; /* [B]: each row's last token */
    int B;
    float *z;            /* [L, B, H * d_head] */
    float *mlp;          /* [L, B, d] */
    float *emb, *fin;    /* [B, d]: resid_pre of layer 0, resid_post of the last layer */
} dla_ctx;

static int dla_wants(void *user, hs_hook_point p, int layer) {
    const dla_ctx *x = user;
    return p == HS_HOOK_Z || p == HS_HOOK_MLP_OUT || (p == HS_HOOK_RESID_PRE && layer == 0) ||
           (p == HS_HOOK_RESID_POST && layer == x->s->cfg.n_layers - 1);
}

/* The rows of each prompt's last token out of t [B, T, width] to dst [B, width]. */
static hs_status dla_hook(void *user, hs_hook_point p, int layer, hs_tensor *t, hs_err *err) {
    dla_ctx *x = user;
    hs_backend *be = x->s->be;
    const int64_t T = t->shape[1], width = hs_tensor_numel(t) / (t->shape[0] * T), es = hs_dtype_block_bytes(t->dtype);
    float *dst = p == HS_HOOK_Z                                      ? x->z + (int64_t)layer * x->B * width
                 : p == HS_HOOK_MLP_OUT                              ? x->mlp + (int64_t)layer * x->B * width
                 : p == HS_HOOK_RESID_PRE                            ? x->emb
                                                                     : x->fin;
    for (int b = 0; b < x->B; b++) {
        const char *src = (const char *)t->data + ((int64_t)b * T + x->last[b]) * width * es;
        hs_status st = t->dtype == HS_DTYPE_F32
                           ? be->ops->download(be, dst + b * width, src, (size_t)width * sizeof(float), err)
                           : be->ops->download_f32(be, dst + b * width, src, width, err);
        if (st != HS_OK) return st;
    }
    return HS_OK;
}

static double dot(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* g [d] for one prompt: w * (U[a] - U[b]) / s from its final residual fin, centred under
 * LayerNorm; *cnst = b . (U[a] - U[b]) + u[a] - u[b]. b < 0: U[a] and u[a] alone (metric logit). */
static void direction(const hs_model_config *c, const hs_model_weights *w, const float *fin, int a, int b, float *g,
                      double *cnst) {
    const int d = c->d_model;
    const int ln = c->norm == HS_NORM_LAYERNORM;
    double mean = 0, ss = 0;
    for (int i = 0; ln && i < d; i++) mean += fin[i];
    mean /= d;
    for (int i = 0; i < d; i++) ss += (fin[i] - mean) * (fin[i] - mean);
    const double s = sqrt(ss / d + c->norm_eps), w0 = c->norm == HS_NORM_RMSNORM_1P ? 1.0 : 0.0;
    const float *ua = w->unembed + (int64_t)a * d, *ub = b >= 0 ? w->unembed + (int64_t)b * d : NULL;
    double gm = 0, k = 0;
    for (int i = 0; i < d; i++) {
        const double u = (double)ua[i] - (ub ? ub[i] : 0.0f);
        g[i] = (float)((w0 + w->lnf_w[i]) * u / s);
        gm += g[i];
        if (w->lnf_b) k += w->lnf_b[i] * u;
    }
    for (int i = 0; ln && i < d; i++) g[i] -= (float)(gm / d); /* (c - mean c) . g = c . (g - mean g) */
    if (w->unembed_b) k += (double)w->unembed_b[a] - (b >= 0 ? w->unembed_b[b] : 0.0f);
    *cnst = k;
}

static hs_status dla_batch(hs_session *s, const hs_prompts *pr, int diff, int p0, int B, dla_ctx *x, float *logits,
                           float *g, float *proj, const hs_dla_out *out, hs_err *err) {
    const hs_model_config *c = &s->cfg;
    const hs_model_weights *w = hs_model_get_weights(s->model);
    const int L = c->n_layers, H = c->n_heads, dh = c->d_head, d = c->d_model, T = pr->T, V = c->n_vocab;
    const int64_t qd = (int64_t)H * dh;
    int32_t *mask = malloc((size_t)B * T * sizeof *mask), *last = malloc((size_t)B * sizeof *last);
    hs_status st = HS_OK;
    if (!mask || !last) HS_FAIL(err, HS_ERR_OOM, "direct logit attribution: out of memory");
    const hs_prompts chunk = {.N = B, .T = T, .tokens = pr->tokens + (int64_t)p0 * T, .lengths = pr->lengths + p0};
    hs_prompts_mask_targets(&chunk, NULL, mask, NULL);
    for (int b = 0; b < B; b++) last[b] = chunk.lengths[b] - 1;
    x->last = last, x->B = B;
    const hs_hooks hk = {.wants = dla_wants, .fn = dla_hook, .user = x};
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = HS_LOGITS_LAST;
    fp.hooks = &hk;
    const hs_batch batch = {.B = B, .T = T, .tokens = chunk.tokens, .mask = mask};
    HS_CHECK(hs_forward(s, &batch, &fp, logits, err));
    double *cnst = calloc((size_t)B, sizeof *cnst);
    if (!cnst) HS_FAIL(err, HS_ERR_OOM, "direct logit attribution: out of memory");
    for (int b = 0; b < B; b++)
        direction(c, w, x->fin + (int64_t)b * d, pr->answer[p0 + b], diff ? pr->distractor[p0 + b] : -1,
                  g + (int64_t)b * d, &cnst[b]);
    for (int l = 0; l < L; l++) {
        const hs_layer_weights *W = &w->layers[l];
        /* proj [B, H * dh] = g [B, d] W_O [d, H * dh]: each head's direction in z space */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, (int)qd, d, 1.0f, g, d, W->wo, (int)qd, 0.0f, proj,
                    (int)qd);
        for (int b = 0; b < B; b++) {
            const int64_t n = p0 + b;
            const float *zb = x->z + ((int64_t)l * B + b) * qd, *pb = proj + (int64_t)b * qd,
                        *gb = g + (int64_t)b * d;
            for (int h = 0; h < H; h++) out->heads[(n * L + l) * H + h] = (float)dot(zb + h * dh, pb + h * dh, dh);
            if (out->mlp) out->mlp[n * L + l] = (float)dot(x->mlp + ((int64_t)l * B + b) * d, gb, d);
            if (W->bo) cnst[b] += dot(W->bo, gb, d);
        }
    }
    for (int b = 0; b < B; b++) {
        const int64_t n = p0 + b;
        if (out->rest) out->rest[n] = (float)(cnst[b] + dot(x->emb + (int64_t)b * d, g + (int64_t)b * d, d));
        const float *lg = logits + (int64_t)b * V;
        if (out->metric) out->metric[n] = lg[pr->answer[n]] - (diff ? lg[pr->distractor[n]] : 0.0f);
    }
    free(cnst);
exit:
    free(mask), free(last);
    return st;
}

hs_status hs_dla(hs_session *s, const hs_prompts *pr, hs_metric metric, int batch_rows, const hs_dla_out *out,
                 hs_err *err) {
    const hs_model_config *c = &s->cfg;
    if (metric != HS_METRIC_LOGIT_DIFF && metric != HS_METRIC_LOGIT)
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "direct logit attribution: metric %s is not linear in the residual (logit_diff or logit)",
                          hs_metric_name(metric));
    if (c->post_norms)
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "direct logit attribution: the model normalises the attention's and MLP's outputs before "
                          "they join the stream (post-norms), so its heads' results do not add up to the residual");
    if (c->final_softcap > 0.0f)
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "direct logit attribution: the logits are soft-capped, not linear in the residual");
    hs_status st = hs_metric_check(c, pr, metric, err);
    if (st) {
        hs_err_prefix(err, "direct logit attribution");
        return st;
    }
    const int L = c->n_layers, d = c->d_model, R = batch_rows > 0 ? batch_rows : 1;
    const int64_t qd = (int64_t)c->n_heads * c->d_head;
    dla_ctx x = {.s = s};
    x.z = malloc((size_t)L * R * qd * sizeof(float));
    x.mlp = malloc((size_t)L * R * d * sizeof(float));
    x.emb = malloc((size_t)R * d * sizeof(float));
    x.fin = malloc((size_t)R * d * sizeof(float));
    float *logits = malloc((size_t)R * c->n_vocab * sizeof(float)), *g = malloc((size_t)R * d * sizeof(float)),
          *proj = malloc((size_t)R * qd * sizeof(float));
    if (!x.z || !x.mlp || !x.emb || !x.fin || !logits || !g || !proj)
        HS_FAIL(err, HS_ERR_OOM, "direct logit attribution: out of memory");
    for (int p0 = 0; p0 < pr->N; p0 += R)
        HS_CHECK(dla_batch(s, pr, metric == HS_METRIC_LOGIT_DIFF, p0, pr->N - p0 < R ? pr->N - p0 : R, &x, logits, g,
                           proj, out, err));
exit:
    free(x.z), free(x.mlp), free(x.emb), free(x.fin), free(logits), free(g), free(proj);
    return st;
}
