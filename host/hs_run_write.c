/* hs_run_write: an experiment's group of a final result file, from the
 * per-item values of every item (a whole run, or merged shards). Reductions
 * run over items in order, so they do not depend on how the run was sharded. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_eap.h"
#include "headsweep/hs_head_grad.h"
#include "headsweep/hs_head_scores.h"
#include "hs_run_internal.h"

/* Writes a per-item array whole: [n_items, dims...]. */
static hs_status put(hs_h5_group *g, const hs_run_exp *r, const hs_run_array *a, const char *name, hs_err *err) {
    int64_t dims[HS_RUN_MAX_DIMS + 1] = {r->hi - r->lo};
    for (int k = 0; k < a->ndim; k++) dims[k + 1] = a->dims[k];
    return hs_h5_write_f32(g, name ? name : a->name, a->ndim + 1, dims, a->dim_names, a->data, err);
}

/* The same for an array of token ids (held as float32, exact), written as int32. */
static hs_status put_i32(hs_h5_group *g, const hs_run_exp *r, const hs_run_array *a, const char *definition,
                         hs_err *err) {
    const int64_t n = (int64_t)(r->hi - r->lo) * a->per;
    int64_t dims[HS_RUN_MAX_DIMS + 1] = {r->hi - r->lo};
    for (int k = 0; k < a->ndim; k++) dims[k + 1] = a->dims[k];
    int32_t *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    for (int64_t k = 0; k < n; k++) v[k] = (int32_t)a->data[k];
    hs_status st = hs_h5_write_i32(g, a->name, a->ndim + 1, dims, a->dim_names, v, err);
    free(v);
    if (!st && definition) st = hs_h5_attr_str(g, a->name, "definition", definition, err);
    return st;
}

void hs_run_mean_items(const hs_run_array *a, int n, float *out) {
    for (int64_t k = 0; k < a->per; k++) {
        double s = 0;
        for (int i = 0; i < n; i++) s += a->data[i * a->per + k];
        out[k] = (float)(s / n);
    }
}

/* Writes NAME (per item) and NAME_mean (over items) with their definitions. */
static hs_status put_with_mean(hs_h5_group *g, const hs_run_exp *r, const char *name, const char *definition,
                               hs_err *err) {
    const hs_run_array *a = hs_run_find(r, name);
    char mname[HS_H5_NAME_MAX];
    hs_status st = HS_OK;
    float *m = malloc((size_t)a->per * sizeof *m);
    if (!m) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    hs_run_mean_items(a, r->hi - r->lo, m);
    snprintf(mname, sizeof mname, "%s_mean", name);
    HS_CHECK(put(g, r, a, NULL, err));
    HS_CHECK(hs_h5_write_f32(g, mname, a->ndim, a->dims, a->dim_names + 1, m, err));
    if (definition) HS_CHECK(hs_h5_attr_str(g, name, "definition", definition, err));
exit:
    free(m);
    return st;
}

void hs_run_importance(const hs_config_experiment *e, const hs_run_exp *r, float *out) {
    const hs_run_array *d = hs_run_find(r, "delta");
    hs_run_mean_items(d, r->hi - r->lo, out);
    for (int64_t k = 0; k < d->per; k++) out[k] *= hs_run_importance_sign(e->metric);
}

static hs_status write_ablation(const hs_config_experiment *e, const hs_run_exp *r, hs_h5_group *g, hs_err *err) {
    hs_status st = HS_OK;
    HS_CHECK(put(g, r, hs_run_find(r, "base"), NULL, err));
    HS_CHECK(put_with_mean(g, r, "delta", "metric(head ablated) - metric(unablated), per prompt", err));
    if (r->select) HS_CHECK(hs_h5_attr_str(g, "delta", "note", "heads outside the configured layers/heads are NaN", err));
    if (e->whole_layers) HS_CHECK(put_with_mean(g, r, "delta_layer", NULL, err));
    if (e->all_but_one)
        HS_CHECK(put_with_mean(g, r, "delta_all_but_one",
                               "metric(every head of the layer ablated but this one) - metric(unablated)", err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "metric", hs_config_metric_name(e->metric), err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "positions", hs_config_positions_name(e->positions), err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "mode", hs_config_mode_name(e->mode), err));
    if (e->mode == HS_CONFIG_MODE_SCALE) HS_CHECK(hs_h5_attr_f64(g, NULL, "scale", e->scale, err));
    if (e->mode == HS_CONFIG_MODE_MEAN)
        HS_CHECK(hs_h5_attr_str(g, NULL, "mean_over", hs_config_mean_over_name(e->mean_over), err));
    if (e->mode == HS_CONFIG_MODE_MEAN && e->mean_over == HS_CONFIG_MEAN_OVER_TEMPLATE)
        HS_CHECK(hs_h5_attr_str(g, NULL, "mean_reference",
                                "per template: the mean z over the dataset's corrupted prompts of that template "
                                "(Wang et al.'s ABC knockout), or over its prompts when it has no corrupted ones",
                                err));
    if (e->mode == HS_CONFIG_MODE_RESAMPLE)
        HS_CHECK(hs_h5_attr_str(g, NULL, "resample_source",
                                "z of another prompt of the dataset, one source per prompt drawn from the run's seed "
                                "(splitmix64 of seed and prompt index); positions past the source's length keep their own z",
                                err));
    if (e->mode == HS_CONFIG_MODE_PATCH)
        HS_CHECK(hs_h5_attr_str(g, NULL, "patch_source", "z of the same prompt's corrupted version (corrupt -> clean)", err));
    HS_CHECK(hs_h5_attr_str(g, "base", "definition", "metric of the unablated model, per prompt", err));
exit:
    return st;
}

/* The paper's filter: the retrieval score averaged over the prompts whose
 * answer recalls more than half of the needle (NaN where none does), beside
 * each answer's recall. */
static hs_status write_retrieval_filtered(hs_h5_group *g, const hs_run_exp *r, hs_err *err) {
    const hs_run_array *a = hs_run_find(r, "retrieval_per_prompt"), *rec = hs_run_find(r, "needle_recall");
    const int64_t n = r->hi - r->lo;
    hs_status st = HS_OK;
    int kept = 0;
    for (int64_t i = 0; i < n; i++) kept += rec->data[i] > 0.5f;
    float *m = malloc((size_t)a->per * sizeof *m);
    if (!m) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    for (int64_t k = 0; k < a->per; k++) {
        double s = 0; /* prompt order: the same sum however the prompts were sharded */
        for (int64_t i = 0; i < n; i++)
            if (rec->data[i] > 0.5f) s += a->data[i * a->per + k];
        m[k] = kept ? (float)(s / kept) : NAN;
    }
    HS_CHECK(put(g, r, rec, NULL, err));
    HS_CHECK(hs_h5_write_f32(g, "retrieval_filtered", 2, a->dims, a->dim_names + 1, m, err));
    HS_CHECK(hs_h5_attr_str(g, "needle_recall", "definition",
                            "ROUGE-1 recall over tokens of each prompt's greedy answer against its needle (each needle "
                            "token counted up to the times the answer holds it, / needle length)",
                            err));
    HS_CHECK(hs_h5_attr_str(g, "retrieval_filtered", "definition",
                            "the retrieval score averaged over the prompts whose answer recalls more than half of the "
                            "needle (needle_recall > 0.5, Wu et al.'s filter); NaN if none does",
                            err));
    HS_CHECK(hs_h5_attr_int(g, "retrieval_filtered", "prompts_kept", kept, err));
exit:
    free(m);
    return st;
}

static hs_status write_scores(const hs_config_experiment *e, const hs_run_exp *r, hs_h5_group *g, hs_err *err) {
    hs_status st = HS_OK;
    for (int k = 0; k < HS_SCORE_COUNT; k++) {
        if (!(e->scores & (1u << k))) continue;
        const char *name = hs_score_name((hs_score_kind)k);
        char pname[96];
        snprintf(pname, sizeof pname, "%s_per_prompt", name);
        const hs_run_array *a = hs_run_find(r, pname);
        float *m = malloc((size_t)a->per * sizeof *m);
        if (!m) return hs_err_set(err, HS_ERR_OOM, "out of memory");
        hs_run_mean_items(a, r->hi - r->lo, m);
        st = hs_h5_write_f32(g, name, 2, a->dims, a->dim_names + 1, m, err);
        free(m);
        if (st) goto exit;
        HS_CHECK(put(g, r, a, NULL, err));
        HS_CHECK(hs_h5_attr_str(g, name, "definition",
                                k == HS_SCORE_OLSSON_INDUCTION
                                    ? "mean attention from each second-copy token to the token after its first occurrence"
                                    : "TransformerLens head detector, error measure 'mul', mean over prompts",
                                err));
    }
    if (e->scores & HS_CONFIG_BIT(HS_CONFIG_SCORE_RETRIEVAL)) {
        const hs_run_array *a = hs_run_find(r, "retrieval_per_prompt");
        float *m = malloc((size_t)a->per * sizeof *m);
        if (!m) return hs_err_set(err, HS_ERR_OOM, "out of memory");
        hs_run_mean_items(a, r->hi - r->lo, m);
        st = hs_h5_write_f32(g, "retrieval", 2, a->dims, a->dim_names + 1, m, err);
        free(m);
        if (st) goto exit;
        HS_CHECK(put(g, r, a, NULL, err));
        HS_CHECK(put_i32(g, r, hs_run_find(r, "generated_tokens"), "the greedy tokens each needle prompt generated",
                         err));
        HS_CHECK(hs_h5_attr_str(g, "retrieval", "definition",
                                "Wu et al. 2024: distinct needle positions a head copy-pastes during greedy decoding "
                                "(generated token in the needle, argmax attention on that needle position) / needle "
                                "length, mean over prompts; > 0.1 = retrieval head",
                                err));
        HS_CHECK(write_retrieval_filtered(g, r, err));
    }
exit:
    return st;
}

static hs_status write_pruning(const hs_config_experiment *e, const hs_run_exp *r, hs_h5_group *g, hs_err *err) {
    const hs_run_array *masks = hs_run_find(r, "masks"), *mp = hs_run_find(r, "metric_per_prompt");
    const int steps = (int)masks->dims[0], LH = (int)(masks->dims[1] * masks->dims[2]), n = r->hi - r->lo;
    hs_status st = HS_OK;
    float *frac = malloc((size_t)steps * sizeof *frac), *metric = malloc((size_t)steps * sizeof *metric);
    int32_t *npruned = malloc((size_t)steps * sizeof *npruned);
    if (!frac || !metric || !npruned) HS_FAIL(err, HS_ERR_OOM, "out of memory");
    hs_run_mean_items(mp, n, metric);
    for (int s = 0; s < steps; s++) {
        double f = fmin(1.0, s * e->step);
        frac[s] = (float)f;
        npruned[s] = (int)floor(f * LH + 0.5);
    }
    HS_CHECK(hs_h5_write_f32(g, "step", 1, masks->dims, masks->dim_names + 1, frac, err));
    HS_CHECK(hs_h5_write_i32(g, "n_pruned", 1, masks->dims, masks->dim_names + 1, npruned, err));
    HS_CHECK(hs_h5_write_f32(g, "metric", 1, masks->dims, masks->dim_names + 1, metric, err));
    HS_CHECK(put(g, r, mp, NULL, err));
    HS_CHECK(hs_h5_write_f32(g, "masks", 3, masks->dims, masks->dim_names + 1, masks->data, err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "metric", hs_config_metric_name(e->metric), err));
    HS_CHECK(hs_h5_attr_str(g, "step", "definition", "fraction of all heads pruned (z := 0), least important first", err));
    HS_CHECK(hs_h5_attr_str(g, "masks", "definition", "1 = head kept, 0 = pruned", err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "importance",
                            e->importance.experiment ? e->importance.experiment : e->importance.dataset, err));
    HS_CHECK(hs_h5_attr_int(g, NULL, "recompute", e->recompute, err));
    if (e->recompute)
        HS_CHECK(hs_h5_attr_str(g, "masks", "recompute",
                                "step s+1 prunes the heads of step s and then the least important of the rest by the "
                                "gradient importance recomputed over every prompt with step s's heads masked", err));
exit:
    free(frac), free(metric), free(npruned);
    return st;
}

/* Normalised patching effect of the prompt-mean metrics (TransformerLens):
 * (patched - corrupt) / (clean - corrupt), NAN where a cell was not run. */
static hs_status put_normalised(hs_h5_group *g, const hs_run_exp *r, const char *name, hs_err *err) {
    const hs_run_array *a = hs_run_find(r, name), *cl = hs_run_find(r, "clean"), *co = hs_run_find(r, "corrupt");
    const int n = r->hi - r->lo;
    double mc = 0, mx = 0;
    for (int i = 0; i < n; i++) mc += cl->data[i] / n, mx += co->data[i] / n;
    const double den = mc - mx;
    float *out = malloc((size_t)a->per * sizeof *out);
    if (!out) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    for (int64_t k = 0; k < a->per; k++) {
        double s = 0;
        int m = 0;
        for (int i = 0; i < n; i++)
            if (a->data[i * a->per + k] == a->data[i * a->per + k]) s += a->data[i * a->per + k], m++;
        out[k] = m == n && den != 0 ? (float)((s / n - mx) / den) : NAN;
    }
    char nname[HS_H5_NAME_MAX];
    snprintf(nname, sizeof nname, "%s_normalised", name);
    hs_status st = put(g, r, a, NULL, err);
    if (!st) st = hs_h5_write_f32(g, nname, a->ndim, a->dims, a->dim_names + 1, out, err);
    free(out);
    return st;
}

static hs_status write_patching(const hs_config_experiment *e, const hs_run_exp *r, hs_h5_group *g, hs_err *err) {
    hs_status st = HS_OK;
    HS_CHECK(put(g, r, hs_run_find(r, "clean"), NULL, err));
    HS_CHECK(put(g, r, hs_run_find(r, "corrupt"), NULL, err));
    for (int k = 0; k < HS_CONFIG_TARGET_COUNT; k++)
        if (hs_run_find(r, hs_config_target_name(k))) HS_CHECK(put_normalised(g, r, hs_config_target_name(k), err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "metric", hs_config_metric_name(e->metric), err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "normalisation",
                            "(mean patched - mean corrupt) / (mean clean - mean corrupt), means over prompts; "
                            "NaN where a position is beyond some prompt", err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "method", hs_config_method_name(e->method), err));
    const int attr = e->method == HS_CONFIG_METHOD_ATTRIBUTION,
              fix = attr && e->qk_fix &&
                    (e->targets & (HS_CONFIG_BIT(HS_CONFIG_TARGET_Q_ALL_POS) | HS_CONFIG_BIT(HS_CONFIG_TARGET_K_ALL_POS)));
    char how[768];
    snprintf(how, sizeof how, "%s%s%s",
             attr ? "attribution patching: e = (a_clean - a_corrupt) . dM/da, the first-order estimate of the "
                    "patch's effect, the gradient taken at the corrupted run"
                  : "clean activation copied into the corrupted run",
             fix ? "; for the q and k cells AtP*'s QK fix: the head's attention recomputed with the clean q (k), "
                   "e = sum over positions of (z_patched - z_corrupt) . dM/dz"
                 : "",
             !attr ? ""
             : e->grad_drop
                 ? "; AtP*'s GradDrop: e taken once per layer D with the gradient through D's addition to the "
                   "residual stream dropped, cell = M(corrupt) + sum over D of |e| / (n_layers - 1), an unsigned "
                   "magnitude: rank by |cell - corrupt|"
                 : "; cell = M(corrupt) + e");
    HS_CHECK(hs_h5_attr_str(g, NULL, "patch", how, err));
    if (e->targets & HS_CONFIG_BIT(HS_CONFIG_TARGET_PATH_LOGITS))
        HS_CHECK(hs_h5_attr_str(g, NULL, "path_logits",
                                "path patching to the logits (Wang et al.): the head's clean z at every position, "
                                "every head of the later layers held at its corrupted z, MLPs recomputed", err));
    if (e->targets & HS_CONFIG_BIT(HS_CONFIG_TARGET_PATH_HEADS)) {
        const char *in = hs_config_receiver_input_name(e->receiver_input);
        snprintf(how, sizeof how,
                 "path patching to the receivers' %s (Wang et al.): the receivers' %s from path_logits' pass (the "
                 "head's clean z, every later head held at its corrupted z) patched into the corrupted run, "
                 "everything else recomputed; NaN for senders at or after the last receiver's layer",
                 in, in);
        HS_CHECK(hs_h5_attr_str(g, NULL, "path_heads", how, err));
        HS_CHECK(hs_h5_attr_str(g, NULL, "receiver_input", in, err));
        size_t n = 0;
        how[0] = '\0';
        for (int i = 0; i < e->receivers.n && n < sizeof how; i++)
            n += (size_t)snprintf(how + n, sizeof how - n, "%sL%dH%d", i ? ", " : "", e->receivers.v[2 * i],
                                  e->receivers.v[2 * i + 1]);
        HS_CHECK(hs_h5_attr_str(g, NULL, "receivers", how, err));
    }
exit:
    return st;
}

static hs_status write_sets(const hs_config_experiment *e, const hs_run_exp *r, hs_h5_group *g, hs_err *err) {
    const hs_run_array *sets = hs_run_find(r, "sets"), *mp = hs_run_find(r, "metric_per_prompt"),
                       *base = hs_run_find(r, "base");
    const int n_sets = (int)sets->dims[0], n = r->hi - r->lo;
    hs_status st = HS_OK;
    float *metric = malloc((size_t)n_sets * sizeof *metric), b = 0;
    if (!metric) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    hs_run_mean_items(mp, n, metric);
    hs_run_mean_items(base, n, &b);
    double rs = 0, rs2 = 0;
    for (int s = 1; s < n_sets; s++) rs += metric[s], rs2 += (double)metric[s] * metric[s];
    HS_CHECK(put(g, r, base, NULL, err));
    HS_CHECK(put(g, r, mp, NULL, err));
    HS_CHECK(hs_h5_write_f32(g, "metric", 1, sets->dims, sets->dim_names + 1, metric, err));
    HS_CHECK(hs_h5_write_f32(g, "sets", 3, sets->dims, sets->dim_names + 1, sets->data, err));
    HS_CHECK(hs_h5_attr_str(g, "sets", "definition",
                            "1 = head ablated; set 0 = the top_k heads of the ranking, sets 1.. = random top_k-head "
                            "sets of the other heads (seeded)", err));
    HS_CHECK(hs_h5_attr_str(g, "metric", "definition", "mean over prompts of the metric with the set ablated", err));
    HS_CHECK(hs_h5_attr_str(g, "base", "definition", "metric of the unablated model, per prompt", err));
    if (hs_run_find(r, "generated_tokens")) { /* needle_recall: the answers themselves */
        HS_CHECK(put_i32(g, r, hs_run_find(r, "base_generated_tokens"), "each prompt's greedy answer, unablated", err));
        HS_CHECK(put_i32(g, r, hs_run_find(r, "generated_tokens"), "each prompt's greedy answer with the set ablated",
                         err));
    }
    HS_CHECK(hs_h5_attr_f64(g, NULL, "metric_base", b, err));
    HS_CHECK(hs_h5_attr_f64(g, NULL, "metric_top_k", metric[0], err));
    if (n_sets > 1) {
        const double mean = rs / (n_sets - 1), var = rs2 / (n_sets - 1) - mean * mean;
        HS_CHECK(hs_h5_attr_f64(g, NULL, "metric_random_mean", mean, err));
        HS_CHECK(hs_h5_attr_f64(g, NULL, "metric_random_std", var > 0 ? sqrt(var) : 0.0, err));
    }
    HS_CHECK(hs_h5_attr_int(g, NULL, "top_k", e->top_k, err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "metric", hs_config_metric_name(e->metric), err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "positions", hs_config_positions_name(e->positions), err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "mode", hs_config_mode_name(e->mode), err));
    if (e->mode == HS_CONFIG_MODE_MEAN)
        HS_CHECK(hs_h5_attr_str(g, NULL, "mean_over", hs_config_mean_over_name(e->mean_over), err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "ranking",
                            e->importance.experiment ? e->importance.experiment : e->importance.dataset, err));
exit:
    free(metric);
    return st;
}

hs_status hs_run_grad_importance(const hs_run_exp *r, float *raw, float *norm, hs_err *err) {
    const hs_run_array *grad = hs_run_find(r, "grad"), *tok = hs_run_find(r, "tokens");
    const int n = r->hi - r->lo;
    int32_t *tokens = malloc((size_t)(n > 0 ? n : 1) * sizeof *tokens);
    if (!tokens) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    for (int i = 0; i < n; i++) tokens[i] = (int32_t)tok->data[i];
    hs_head_importance(grad->data, tokens, n, (int)grad->dims[0], (int)grad->dims[1], raw, norm);
    free(tokens);
    return HS_OK;
}

static hs_status write_importance(const hs_config_experiment *e, const hs_run_exp *r, hs_h5_group *g, hs_err *err) {
    const hs_run_array *grad = hs_run_find(r, "grad");
    hs_status st = HS_OK;
    float *raw = malloc((size_t)grad->per * sizeof *raw), *norm = malloc((size_t)grad->per * sizeof *norm);
    if (!raw || !norm) HS_FAIL(err, HS_ERR_OOM, "out of memory");
    HS_CHECK(hs_run_grad_importance(r, raw, norm, err));
    HS_CHECK(put(g, r, grad, NULL, err));
    HS_CHECK(put(g, r, hs_run_find(r, "tokens"), NULL, err));
    HS_CHECK(hs_h5_write_f32(g, "importance", 2, grad->dims, grad->dim_names + 1, norm, err));
    HS_CHECK(hs_h5_write_f32(g, "importance_raw", 2, grad->dims, grad->dim_names + 1, raw, err));
    const int loss = e->metric == HS_CONFIG_METRIC_LOSS;
    HS_CHECK(hs_h5_attr_str(g, NULL, "metric", hs_config_metric_name(e->metric), err));
    HS_CHECK(hs_h5_attr_str(g, "grad", "definition",
                            loss ? "dL/dxi_{layer,head} at xi = 1, per prompt: xi multiplies the head's output z before "
                                   "W_O, L = the prompt's summed next-token negative log-likelihood"
                                 : "dM/dxi_{layer,head} at xi = 1, per prompt: xi multiplies the head's output z before "
                                   "W_O, M = the metric (attribute metric) after the prompt's last token",
                            err));
    HS_CHECK(hs_h5_attr_str(g, "tokens", "definition",
                            loss ? "next-token predictions in the prompt's loss" : "predictions in the metric (1)", err));
    HS_CHECK(hs_h5_attr_str(g, "importance_raw", "definition",
                            "sum over prompts of |grad| / sum over prompts of tokens (Michel et al. 2019)", err));
    HS_CHECK(hs_h5_attr_str(g, "importance", "definition",
                            "importance_raw divided by its l2 norm over the heads of each layer (Michel et al. "
                            "2019); what a pruning_curve ranks by", err));
exit:
    free(raw), free(norm);
    return st;
}

static hs_status write_dla(const hs_config_experiment *e, const hs_run_exp *r, hs_h5_group *g, hs_err *err) {
    hs_status st = HS_OK;
    const int diff = e->metric == HS_CONFIG_METRIC_LOGIT_DIFF;
    HS_CHECK(put_with_mean(g, r, "dla",
                           diff ? "direct effect of each head on logit[answer] - logit[distractor] after the last token: "
                                  "its result z_h W_O[:, h]^T through the final norm with the scale the forward computed "
                                  "(centred under LayerNorm), dotted with w * (W_U[answer] - W_U[distractor]) "
                                  "(TransformerLens residual_stack_to_logit_diff with apply_ln_to_stack)"
                                : "direct effect of each head on logit[answer] after the last token: its result z_h "
                                  "W_O[:, h]^T through the final norm with the scale the forward computed (centred under "
                                  "LayerNorm), dotted with w * W_U[answer] (TransformerLens apply_ln_to_stack)",
                           err));
    HS_CHECK(put_with_mean(g, r, "dla_mlp", "the same for each layer's mlp_out", err));
    HS_CHECK(put_with_mean(g, r, "dla_rest",
                           "the same for the embedding (resid_pre of layer 0) and every b_O, plus the final norm's "
                           "bias and the unembedding's: dla + dla_mlp + dla_rest add up to metric",
                           err));
    HS_CHECK(put_with_mean(g, r, "metric",
                           diff ? "logit[answer] - logit[distractor] after the last token, from the forward"
                                : "logit[answer] after the last token, from the forward",
                           err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "metric", hs_config_metric_name(e->metric), err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "positions", hs_config_positions_name(e->positions), err));
    if (e->positions != HS_CONFIG_POSITIONS_LAST)
        HS_CHECK(hs_h5_attr_str(g, NULL, "note",
                                "each value is the prompt's mean over its positions of the same for logit[next token]",
                                err));
    if (hs_run_find(r, "dla_by_pos")) {
        HS_CHECK(put(g, r, hs_run_find(r, "dla_by_pos"), NULL, err));
        HS_CHECK(hs_h5_attr_str(g, "dla_by_pos", "definition",
                                "each head's direct effect on logit[next token] at each position read, before the mean "
                                "over the prompt's positions (dla); NaN at the positions not read",
                                err));
        HS_CHECK(put(g, r, hs_run_find(r, "metric_by_pos"), NULL, err));
        HS_CHECK(hs_h5_attr_str(g, "metric_by_pos", "definition",
                                "logit[next token] at each position read, from the forward; NaN elsewhere", err));
    }
exit:
    return st;
}

static hs_status write_circuit(const hs_config_experiment *e, const hs_run_exp *r, hs_h5_group *g, hs_err *err) {
    static const char *const def[HS_CONFIG_CIRCUIT_COUNT] = {
        "||W_OV(writer) W_QK(reader)||_F / (||W_OV(writer)||_F ||W_QK(reader)||_F): how much of what the reader's "
        "queries read the writer writes (Elhage et al. 2021; TransformerLens all_composition_scores('Q')); 0 where "
        "reader_layer <= layer",
        "the same with W_QK(reader)^T: what its keys read (all_composition_scores('K'))",
        "the same with W_OV(reader): what its values read (all_composition_scores('V'))",
        "sum(Re lambda) / sum(|lambda|) over the eigenvalues of the head's full OV circuit W_E W_V W_O W_U: near 1 "
        "for a head that raises the logits of the tokens it attends to (Elhage et al. 2021)"};
    hs_status st = HS_OK;
    for (int k = 0; k < r->n_arrays; k++) {
        const hs_run_array *a = &r->arrays[k];
        HS_CHECK(put(g, r, a, NULL, err));
        for (int c = 0; c < HS_CONFIG_CIRCUIT_COUNT; c++)
            if (!strcmp(a->name, hs_config_circuit_name((hs_config_circuit)c)))
                HS_CHECK(hs_h5_attr_str(g, a->name, "definition", def[c], err));
    }
    HS_CHECK(hs_h5_attr_str(g, NULL, "weights",
                            e->fold_norms ? "as TransformerLens's from_pretrained processes them: norm weights folded "
                                            "into W_Q, W_K, W_V and W_U, reading and writing weights centred under "
                                            "LayerNorm, W_U centred over the vocabulary (fold_norms: true)"
                                          : "the checkpoint's matrices as they are (fold_norms: false)",
                            err));
    /* the run's computed_on names its workers' backend; these come from the host's f32 weights */
    HS_CHECK(hs_h5_attr_str(g, NULL, "computed_by",
                            "the host CPU (OpenBLAS and its LAPACK), from the model's f32 host weights, whatever the "
                            "run's device",
                            err));
exit:
    return st;
}

void hs_run_eap_mean(const hs_run_exp *r, float *mean) {
    const hs_model_config *c = &r->shape;
    const hs_run_array *a = hs_run_find(r, "edges_sum");
    const int U = hs_eap_n_upstream(c), V = hs_eap_n_downstream(c), n = r->hi - r->lo, N = r->n_prompts;
    for (int u = 0; u < U; u++)
        for (int v = 0; v < V; v++) {
            const int64_t k = (int64_t)u * V + v;
            double s = 0;
            for (int i = 0; i < n; i++) s += a->data[i * a->per + k];
            mean[k] = hs_eap_is_edge(c, u, v) ? (float)(s / N) : NAN;
        }
}

/* The graph's node names as the coordinates "upstream" and "downstream". */
static hs_status put_nodes(hs_h5_group *g, const hs_model_config *c, hs_err *err) {
    const int U = hs_eap_n_upstream(c), V = hs_eap_n_downstream(c);
    hs_status st = HS_OK;
    char *names = malloc((size_t)(U + V) * 24), **up = malloc((size_t)(U + V) * sizeof *up), **down = up + U;
    if (!names || !up) HS_FAIL(err, HS_ERR_OOM, "out of memory for %d + %d node names", U, V);
    for (int i = 0; i < U + V; i++) {
        up[i] = names + (size_t)i * 24;
        if (i < U) hs_eap_upstream_name(c, i, up[i], 24);
        else hs_eap_downstream_name(c, i - U, up[i], 24);
    }
    HS_CHECK(hs_h5_write_str(g, "upstream", U, "upstream", (const char *const *)up, err));
    HS_CHECK(hs_h5_write_str(g, "downstream", V, "downstream", (const char *const *)down, err));
exit:
    free(names), free(up);
    return st;
}

/* The edges' mean over prompts from the batches' sums, NaN where no edge;
 * the nodes' names as the two axes' coordinates; the mean metrics. */
static hs_status write_eap(const hs_config_experiment *e, const hs_run_exp *r, hs_h5_group *g, hs_err *err) {
    const hs_model_config *c = &r->shape;
    const int U = hs_eap_n_upstream(c), V = hs_eap_n_downstream(c), n = r->hi - r->lo, N = r->n_prompts;
    hs_status st = HS_OK;
    float *mean = malloc((size_t)U * V * sizeof *mean);
    if (!mean) HS_FAIL(err, HS_ERR_OOM, "edge attribution: out of memory for %d x %d edges", U, V);
    hs_run_eap_mean(r, mean);
    HS_CHECK(put_nodes(g, c, err));
    HS_CHECK(hs_h5_write_f32(g, "edges", 2, (int64_t[]){U, V}, (const char *[]){"upstream", "downstream"}, mean, err));
    HS_CHECK(hs_h5_attr_str(g, "edges", "definition",
                            "mean over prompts of sum over positions of (a_u(corrupt) - a_u(clean)) . dM/d(input of "
                            "v): the first-order change of the metric when edge u -> v carries the corrupted "
                            "activation (Syed et al. 2023; Hanna et al. 2024). u: the input, a head's result "
                            "(z_h W_O_h) or an MLP's output; v: a head's q, k or v input or an MLP's input (the "
                            "residual stream before the layer's norm, as that one reader reads it: TransformerLens's "
                            "split q/k/v inputs, k and v per KV head), or the logits (the final resid_post). NaN "
                            "where u does not come before v",
                            err));
    const char *mname[2] = {"metric_clean", "metric_corrupt"};
    for (int k = 0; k < 2; k++) {
        const hs_run_array *m = hs_run_find(r, k ? "metric_corrupt_sum" : "metric_clean_sum");
        double s = 0;
        for (int i = 0; i < n; i++) s += m->data[i];
        const float v = (float)(s / N);
        HS_CHECK(hs_h5_write_f32(g, mname[k], 0, NULL, NULL, &v, err));
    }
    HS_CHECK(hs_h5_attr_str(g, "metric_clean", "definition", "the metric of the clean prompts, mean over prompts", err));
    HS_CHECK(hs_h5_attr_str(g, "metric_corrupt", "definition",
                            "the metric of the corrupted prompts (read against the clean prompts' answers and next "
                            "tokens), mean over prompts",
                            err));
    char method[160];
    if (e->ig_steps > 1)
        snprintf(method, sizeof method,
                 "EAP-IG: dM/d(input of v) averaged over %d runs whose input embedding is corrupt + k/%d (clean - "
                 "corrupt), k = 1..%d",
                 e->ig_steps, e->ig_steps, e->ig_steps);
    else
        snprintf(method, sizeof method, "EAP: dM/d(input of v) at the clean run");
    HS_CHECK(hs_h5_attr_str(g, NULL, "method", method, err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "metric", hs_config_metric_name(e->metric), err));
exit:
    free(mean);
    return st;
}

/* Each circuit's metric per prompt and mean, the faithfulness of the means
 * (Hanna et al.), the ranking the circuits came from. */
static hs_status write_faithfulness(const hs_config_experiment *e, const hs_run_exp *r, hs_h5_group *g,
                                    hs_err *err) {
    const hs_run_array *m = hs_run_find(r, "metric"), *rank = r->consts;
    const int K = (int)m->dims[0], n = r->hi - r->lo;
    hs_status st = HS_OK;
    float *mean = malloc((size_t)K * sizeof *mean), *faith = malloc((size_t)K * sizeof *faith), clean, corrupt;
    int32_t *sizes = malloc((size_t)K * sizeof *sizes);
    if (!mean || !faith || !sizes) HS_FAIL(err, HS_ERR_OOM, "out of memory");
    hs_run_mean_items(m, n, mean);
    hs_run_mean_items(hs_run_find(r, "metric_clean"), n, &clean);
    hs_run_mean_items(hs_run_find(r, "metric_corrupt"), n, &corrupt);
    for (int k = 0; k < K; k++) {
        faith[k] = (float)(((double)mean[k] - corrupt) / ((double)clean - corrupt));
        sizes[k] = e->n_edges.v[k];
    }
    const char *nk[1] = {"n_edges"};
    HS_CHECK(hs_h5_write_i32(g, "n_edges", 1, m->dims, nk, sizes, err));
    HS_CHECK(put_with_mean(g, r, "metric",
                           "the metric of the clean prompt with only the circuit's edges intact, every other edge "
                           "u -> v carrying a_u(corrupt) - a_u(this run) into v's input (Hanna et al.'s "
                           "evaluate_graph); the circuit: the n_edges strongest edges of edge_rank",
                           err));
    HS_CHECK(put_with_mean(g, r, "metric_clean", "the metric of the clean prompt", err));
    HS_CHECK(put_with_mean(g, r, "metric_corrupt",
                           "the metric of the corrupted prompt (read against the clean prompt's answers and next "
                           "tokens)",
                           err));
    HS_CHECK(hs_h5_write_f32(g, "faithfulness", 1, m->dims, nk, faith, err));
    HS_CHECK(hs_h5_attr_str(g, "faithfulness", "definition",
                            "(metric_mean - metric_corrupt_mean) / (metric_clean_mean - metric_corrupt_mean): 1 = the "
                            "circuit recovers the clean run, 0 = no more than the corrupted one; NaN or inf where the "
                            "clean and corrupted means are equal",
                            err));
    HS_CHECK(put_nodes(g, &r->shape, err));
    HS_CHECK(hs_h5_write_f32(g, "edge_rank", 2, rank->dims, rank->dim_names + 1, rank->data, err));
    HS_CHECK(hs_h5_attr_str(g, "edge_rank", "definition",
                            e->absolute ? "each edge's place by |score| of edges_from, 0 = the strongest (ties: the "
                                          "lower upstream, then downstream index first); NaN where no edge"
                                        : "each edge's place by score of edges_from, 0 = the largest (ties: the "
                                          "lower upstream, then downstream index first); NaN where no edge",
                            err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "edges_from",
                            e->edges_from.experiment ? e->edges_from.experiment : e->edges_from.dataset, err));
    if (!e->edges_from.experiment) HS_CHECK(hs_h5_attr_str(g, NULL, "edges_from_file", e->edges_from.file, err));
    HS_CHECK(hs_h5_attr_int(g, NULL, "absolute", e->absolute, err));
    HS_CHECK(hs_h5_attr_str(g, NULL, "metric", hs_config_metric_name(e->metric), err));
exit:
    free(mean), free(faith), free(sizes);
    return st;
}

static hs_status write_capture(const hs_run_exp *r, hs_h5_group *g, hs_err *err) {
    hs_status st = HS_OK;
    for (int k = 0; k < r->n_arrays; k++) HS_CHECK(put(g, r, &r->arrays[k], NULL, err));
    HS_CHECK(hs_h5_write_i32(g, "prompt_index", 1, (int64_t[]){r->n_items}, (const char *[]){"prompt"}, r->items, err));
exit:
    return st;
}

hs_status hs_run_write(const hs_config *cfg, int exp, const hs_run_exp *r, hs_h5_group *g, hs_err *err) {
    const hs_config_experiment *e = &cfg->experiments[exp];
    hs_status st = hs_h5_attr_str(g, NULL, "type", hs_config_exp_type_name(e->type), err);
    if (st) return st;
    switch (e->type) {
    case HS_CONFIG_EXP_HEAD_ABLATION: return write_ablation(e, r, g, err);
    case HS_CONFIG_EXP_HEAD_SCORES: return write_scores(e, r, g, err);
    case HS_CONFIG_EXP_PRUNING_CURVE: return write_pruning(e, r, g, err);
    case HS_CONFIG_EXP_CAPTURE: return write_capture(r, g, err);
    case HS_CONFIG_EXP_DLA: return write_dla(e, r, g, err);
    case HS_CONFIG_EXP_CIRCUIT_SCORES: return write_circuit(e, r, g, err);
    case HS_CONFIG_EXP_EDGE_ATTRIBUTION: return write_eap(e, r, g, err);
    case HS_CONFIG_EXP_CIRCUIT_FAITHFULNESS: return write_faithfulness(e, r, g, err);
    case HS_CONFIG_EXP_ACTIVATION_PATCHING: return write_patching(e, r, g, err);
    case HS_CONFIG_EXP_HEAD_SET_ABLATION: return write_sets(e, r, g, err);
    case HS_CONFIG_EXP_HEAD_IMPORTANCE: return write_importance(e, r, g, err);
    default: return hs_err_set(err, HS_ERR_UNSUPPORTED, "experiment type %s", hs_config_exp_type_name(e->type));
    }
}
