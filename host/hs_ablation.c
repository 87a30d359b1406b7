/* hs_ablation: metrics and the single-head ablation sweep (prefix reuse +
 * variants batched along the batch dimension). Everything here is backend-
 * agnostic: it only drives hs_forward. */
#include "headsweep/hs_ablation.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_capture.h"
#include "hs_batches.h"
#include "hs_resid_cache.h"
#include "hs_metric.h"

const char *hs_metric_name(hs_metric m) {
    static const char *n[HS_METRIC_COUNT] = {"loss",     "logprob",       "logit_diff", "kl",
                                             "accuracy", "needle_recall", "logit"};
    return (m >= 0 && m < HS_METRIC_COUNT) ? n[m] : "?";
}

const char *hs_ablate_mode_name(hs_ablate_mode m) {
    static const char *n[HS_ABLATE_COUNT] = {"zero", "scale", "mean", "uniform", "resample"};
    return (m >= 0 && m < HS_ABLATE_COUNT) ? n[m] : "?";
}

hs_ablation_params hs_ablation_default_params(void) {
    hs_ablation_params p;
    memset(&p, 0, sizeof p);
    p.metric = HS_METRIC_LOSS;
    p.mode = HS_ABLATE_ZERO;
    p.batch_rows = 16;
    p.prefix_reuse = 1;
    p.mean_per_position = 1;
    p.kind = HS_ABLATION_SINGLE_HEAD;
    return p;
}

static hs_status check_params(const hs_model_config *c, const hs_prompts *pr, const hs_ablation_params *p,
                              hs_err *err) {
    if (p->batch_rows < 1) return hs_err_set(err, HS_ERR_INVALID_ARG, "ablation: batch_rows must be >= 1");
    if (p->mode < 0 || p->mode >= HS_ABLATE_COUNT || p->kind < 0 || p->kind > HS_ABLATION_ALL_BUT_ONE)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "ablation: unknown mode or kind");
    hs_status st = hs_metric_check(c, pr, p->metric, err);
    if (st) {
        hs_err_prefix(err, "ablation");
        return st;
    }
    if (p->mode == HS_ABLATE_MEAN && p->mean_template) {
        if (!p->mean_z || p->n_templates < 1)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "ablation: per-template means need mean_z and n_templates >= 1");
        for (int i = 0; i < pr->N; i++)
            if (p->mean_template[i] < 0 || p->mean_template[i] >= p->n_templates)
                return hs_err_set(err, HS_ERR_INVALID_ARG, "ablation: prompt %d has template id %d outside [0, %d)", i,
                                  p->mean_template[i], p->n_templates);
    }
    if (p->mode == HS_ABLATE_RESAMPLE) {
        const hs_prompts *ref = p->resample_ref;
        if (!ref || !p->resample_src || ref->N < 1)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "ablation: resample needs resample_ref prompts and resample_src");
        for (int i = 0; i < pr->N; i++)
            if (p->resample_src[i] < 0 || p->resample_src[i] >= ref->N)
                return hs_err_set(err, HS_ERR_INVALID_ARG, "ablation: prompt %d has resample source %d outside [0, %d)", i,
                                  p->resample_src[i], ref->N);
    }
    return HS_OK;
}

int hs_head_ablation_unit(const hs_model *m, const hs_ablation_params *p) {
    const int H = hs_model_get_config(m)->n_heads;
    return p->batch_rows / H > 0 ? p->batch_rows / H : 1;
}

hs_status hs_head_ablation(hs_session *s, const hs_model *m, const hs_prompts *pr, const hs_ablation_params *p,
                           float *out_base, float *out_delta, hs_err *err) {
    hs_status st = HS_OK;
    const hs_model_config *c = hs_model_get_config(m);
    const int L = c->n_layers, H = c->n_heads, T = pr->T, V = c->n_vocab, d = c->d_model;
    if ((st = check_params(c, pr, p, err))) return st;
    hs_backend *be = hs_session_backend(s);
    hs_capture *rcap = NULL;
    const int R = p->batch_rows;
    const int resample = p->mode == HS_ABLATE_RESAMPLE, dh = c->d_head;
    const int Tr = resample ? p->resample_ref->T : 0;
    /* Prompts per chunk: with all heads of a layer batched, R / H prompts fill a forward. */
    const int P_max = hs_head_ablation_unit(m, p);
    const int want_lp = p->metric == HS_METRIC_LOSS, want_kl = p->metric == HS_METRIC_KL;
    hs_resid_cache rc = {0}; /* prefix reuse: the unedited chunk's resid_pre, in backend memory */
    void *dres = NULL;       /* [R, T, d] the variant batch's resid_start */
    int32_t *mask = malloc((size_t)pr->N * T * sizeof *mask), *targets = malloc((size_t)pr->N * T * sizeof *targets);
    int32_t *rtok = malloc((size_t)R * T * sizeof *rtok), *rmask = malloc((size_t)R * T * sizeof *rmask),
            *rtg = malloc((size_t)R * T * sizeof *rtg);
    float *logits = malloc((size_t)R * V * sizeof(float)), *lp = malloc((size_t)R * T * sizeof(float));
    float *clean_logp = malloc((size_t)P_max * V * sizeof(float)), *scratch = malloc((size_t)V * sizeof(float));
    float *meanz = p->mode == HS_ABLATE_MEAN && !p->mean_z ? malloc((size_t)L * H * T * c->d_head * sizeof(float)) : NULL;
    /* resample edits are per position: a source may be shorter than its target */
    hs_z_edit *edits = malloc((size_t)R * H * (resample ? T : 1) * sizeof *edits);
    int32_t *stok = resample ? malloc((size_t)P_max * Tr * sizeof *stok) : NULL,
            *smask = resample ? malloc((size_t)P_max * Tr * sizeof *smask) : NULL;
    int *row_prompt = malloc((size_t)R * sizeof *row_prompt), *row_var = malloc((size_t)R * sizeof *row_var);
    int *vars = malloc((size_t)H * sizeof *vars); /* this layer's variants: the head index, or -1 = whole layer */
    if (!mask || !targets || !rtok || !rmask || !rtg || !logits || !lp || !clean_logp || !scratch ||
        !edits || !row_prompt || !row_var || !vars || (p->mode == HS_ABLATE_MEAN && !p->mean_z && !meanz) ||
        (resample && (!stok || !smask)))
        HS_FAIL(err, HS_ERR_OOM, "ablation: out of memory for %d rows x %d tokens", R, T);
    /* entries not swept (outside select) stay NAN */
    const int64_t n_out = (int64_t)pr->N * L * (p->kind == HS_ABLATION_WHOLE_LAYER ? 1 : H);
    for (int64_t i = 0; i < n_out; i++) out_delta[i] = NAN;
    hs_prompts_mask_targets(pr, NULL, mask, targets);
    if (meanz) HS_CHECK(hs_ablation_mean_z(s, m, pr, R, p->mean_per_position, meanz, err));
    const float *mean_src = p->mean_z ? p->mean_z : meanz;
    if (p->prefix_reuse) {
        HS_CHECK(hs_resid_cache_init(&rc, be, HS_HOOK_RESID_PRE, L, P_max, T, d, err));
        HS_CHECK(be->ops->alloc(be, (size_t)R * rc.row_bytes, &dres, err));
    }
    hs_hooks hooks = hs_resid_cache_hooks(&rc, NULL);
    if (resample) {
        HS_CHECK(hs_capture_init(be, &rcap, err));
        HS_CHECK(hs_capture_want(rcap, HS_HOOK_Z, -1, err));
    }

    for (int p0 = 0; p0 < pr->N; p0 += P_max) {
        const int P = pr->N - p0 < P_max ? pr->N - p0 : P_max;
        /* 0. resample: the chunk's source prompts, z captured at every layer */
        if (resample) HS_CHECK(hs_resample_forward(s, p->resample_ref, p->resample_src + p0, P, rcap, stok, smask, err));
        /* 1. the unedited chunk: baseline metric, clean distribution, cached residuals */
        hs_batch cb = {.B = P, .T = T, .tokens = pr->tokens + (int64_t)p0 * T, .mask = mask + (int64_t)p0 * T,
                       .targets = targets + (int64_t)p0 * T};
        hs_forward_params cf = hs_forward_default_params();
        cf.hooks = p->prefix_reuse ? &hooks : NULL;
        cf.logits = hs_metric_logits(p->metric);
        cf.target_logprobs = want_lp ? lp : NULL;
        HS_CHECK(hs_forward(s, &cb, &cf, logits, err));
        for (int i = 0; i < P; i++) {
            if (want_kl) hs_log_softmax(logits + (int64_t)i * V, V, clean_logp + (int64_t)i * V);
            out_base[p0 + i] = (float)hs_row_metric(p->metric, pr, p0 + i, logits + (int64_t)i * V, lp + (int64_t)i * T, V,
                                                 clean_logp + (int64_t)i * V, scratch);
        }
        /* 2. every variant of every layer, rows = (prompt, variant) packed R at a time */
        for (int l = 0; l < L; l++) {
            const float *rz = resample ? hs_capture_get(rcap, HS_HOOK_Z, l, NULL) : NULL; /* [P, Tr, H, dh] */
            int nv = 0;
            if (p->kind == HS_ABLATION_WHOLE_LAYER) {
                int any = !p->select;
                for (int h = 0; h < H && !any; h++) any = p->select[l * H + h];
                if (any) vars[nv++] = -1;
            } else {
                for (int h = 0; h < H; h++)
                    if (!p->select || p->select[l * H + h]) vars[nv++] = h;
            }
            for (int k0 = 0; k0 < P * nv; k0 += R) {
                const int B = P * nv - k0 < R ? P * nv - k0 : R;
                int ne = 0;
                for (int r = 0; r < B; r++) {
                    int k = k0 + r, pi = k / nv, v = vars[k % nv], g = p0 + pi;
                    row_prompt[r] = pi;
                    row_var[r] = v;
                    memcpy(rtok + (int64_t)r * T, pr->tokens + (int64_t)g * T, (size_t)T * sizeof *rtok);
                    memcpy(rmask + (int64_t)r * T, mask + (int64_t)g * T, (size_t)T * sizeof *rmask);
                    memcpy(rtg + (int64_t)r * T, targets + (int64_t)g * T, (size_t)T * sizeof *rtg);
                    if (dres) HS_CHECK(hs_resid_cache_get(&rc, l, pi, -1, dres, r, err));
                    for (int h = 0; h < H; h++) { /* the heads this variant ablates */
                        int on = p->kind == HS_ABLATION_SINGLE_HEAD ? h == v
                                 : p->kind == HS_ABLATION_ALL_BUT_ONE ? h != v
                                                                     : 1;
                        if (!on) continue;
                        hs_z_edit e = {.row = r, .layer = l, .head = h, .pos = -1, .scale = p->scale};
                        if (resample) { /* the source's z where both prompts have tokens */
                            ne += hs_resample_edits(edits + ne, r, l, h, pr->lengths[g],
                                                    p->resample_ref->lengths[p->resample_src[g]], rz, pi, Tr, H, dh);
                            continue;
                        }
                        e.mode = p->mode == HS_ABLATE_ZERO    ? HS_EDIT_ZERO
                                 : p->mode == HS_ABLATE_SCALE ? HS_EDIT_SCALE
                                 : p->mode == HS_ABLATE_MEAN  ? HS_EDIT_SET
                                                              : HS_EDIT_UNIFORM;
                        if (mean_src) {
                            const int64_t tk = p->mean_template ? p->mean_template[g] : 0; /* template mean, or the one */
                            e.src = mean_src + ((tk * L + l) * H + h) * T * dh;
                        }
                        edits[ne++] = e;
                    }
                }
                hs_batch vb = {.B = B, .T = T, .tokens = rtok, .mask = rmask, .targets = rtg};
                hs_forward_params vf = hs_forward_default_params();
                vf.edits = edits;
                vf.n_edits = ne;
                vf.logits = hs_metric_logits(p->metric);
                vf.target_logprobs = want_lp ? lp : NULL;
                if (p->prefix_reuse) {
                    vf.start_layer = l;
                    vf.resid_start_dev = dres;
                }
                HS_CHECK(hs_forward(s, &vb, &vf, logits, err));
                for (int r = 0; r < B; r++) {
                    int g = p0 + row_prompt[r];
                    double v = hs_row_metric(p->metric, pr, g, logits + (int64_t)r * V, lp + (int64_t)r * T, V,
                                          clean_logp + (int64_t)row_prompt[r] * V, scratch);
                    if (p->kind == HS_ABLATION_WHOLE_LAYER) out_delta[(int64_t)g * L + l] = (float)(v - out_base[g]);
                    else out_delta[((int64_t)g * L + l) * H + row_var[r]] = (float)(v - out_base[g]);
                }
            }
            /* progress in (prompt chunk, layer) units: fine-grained enough for logs */
            const int chunks = (pr->N + P_max - 1) / P_max, done = (p0 / P_max) * L + l + 1;
            if (p->progress && p->progress(p->progress_user, done, chunks * L))
                HS_FAIL(err, HS_ERR_INVALID_ARG, "ablation: interrupted at layer %d of prompts %d..%d", l, p0, p0 + P - 1);
        }
    }
exit:
    hs_resid_cache_free(&rc);
    if (dres) be->ops->free(be, dres);
    hs_capture_free(rcap);
    free(stok), free(smask);
    free(mask), free(targets), free(rtok), free(rmask), free(rtg), free(logits), free(lp), free(clean_logp);
    free(scratch), free(meanz), free(edits), free(row_prompt), free(row_var), free(vars);
    return st;
}

/* The same per-head scales [L, H] in every row of a batch. */
typedef struct {
    const float *head_scale;
    int L, H;
    float *rows; /* [L, batch_rows, H] */
} row_scales;

static hs_status fill_scales(void *user, int p0, int B, hs_forward_params *fp, hs_err *err) {
    const row_scales *u = user;
    (void)p0, (void)err;
    if (!u->head_scale) return HS_OK;
    for (int l = 0; l < u->L; l++)
        for (int i = 0; i < B; i++)
            memcpy(u->rows + ((int64_t)l * B + i) * u->H, u->head_scale + (int64_t)l * u->H, (size_t)u->H * sizeof(float));
    fp->head_scale = u->rows;
    return HS_OK;
}

hs_status hs_eval_metric_per_prompt(hs_session *s, const hs_model *m, const hs_prompts *pr, hs_metric metric,
                                    const float *head_scale, int batch_rows, float *out, hs_err *err) {
    hs_status st = HS_OK;
    const hs_model_config *c = hs_model_get_config(m);
    hs_ablation_params p = hs_ablation_default_params();
    p.metric = metric;
    p.batch_rows = batch_rows;
    if ((st = check_params(c, pr, &p, err))) return st;
    row_scales u = {.head_scale = head_scale, .L = c->n_layers, .H = c->n_heads};
    if (head_scale && !(u.rows = malloc((size_t)c->n_layers * batch_rows * c->n_heads * sizeof(float))))
        return hs_err_set(err, HS_ERR_OOM, "eval: out of memory");
    st = hs_metric_per_prompt_edited(s, m, pr, metric, 0, batch_rows, fill_scales, &u, out, err);
    free(u.rows);
    return st;
}

hs_status hs_eval_metric(hs_session *s, const hs_model *m, const hs_prompts *pr, hs_metric metric,
                         const float *head_scale, int batch_rows, double *out, hs_err *err) {
    float *v = malloc((size_t)(pr->N > 0 ? pr->N : 1) * sizeof *v);
    if (!v) return hs_err_set(err, HS_ERR_OOM, "eval: out of memory");
    hs_status st = hs_eval_metric_per_prompt(s, m, pr, metric, head_scale, batch_rows, v, err);
    double sum = 0;
    for (int i = 0; !st && i < pr->N; i++) sum += v[i];
    if (!st) *out = sum / pr->N;
    free(v);
    return st;
}
