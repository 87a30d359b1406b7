/* hs_metric: per-row metrics shared by the ablation, evaluation and patching
 * experiments. */
#include "hs_metric.h"

#include <math.h>

/* log-softmax of one row of logits into out (double accumulation). */
void hs_log_softmax(const float *x, int V, float *out) {
    double mx = x[0], sum = 0;
    for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
    for (int v = 0; v < V; v++) sum += exp((double)x[v] - mx);
    double lz = mx + log(sum);
    for (int v = 0; v < V; v++) out[v] = (float)((double)x[v] - lz);
}

/* The metric of one row. logits: [V] after the last token; lp: [T] target
 * log-probs; clean_logp: [V] log-softmax of the unedited run (KL), or NULL. */
double hs_row_metric(hs_metric m, const hs_prompts *pr, int prompt, const float *logits, const float *lp, int V,
                     const float *clean_logp, float *scratch) {
    int len = pr->lengths[prompt];
    switch (m) {
    case HS_METRIC_LOSS: {
        double s = 0;
        for (int t = 0; t < len - 1; t++) s -= lp[t];
        return len > 1 ? s / (len - 1) : 0.0;
    }
    case HS_METRIC_LOGPROB:
        hs_log_softmax(logits, V, scratch);
        return scratch[pr->answer[prompt]];
    case HS_METRIC_LOGIT_DIFF: return (double)logits[pr->answer[prompt]] - logits[pr->distractor[prompt]];
    case HS_METRIC_LOGIT: return logits[pr->answer[prompt]];
    case HS_METRIC_KL: {
        hs_log_softmax(logits, V, scratch);
        double kl = 0;
        for (int v = 0; v < V; v++) kl += exp((double)clean_logp[v]) * ((double)clean_logp[v] - scratch[v]);
        return kl;
    }
    case HS_METRIC_ACCURACY: {
        int best = 0;
        for (int v = 1; v < V; v++)
            if (logits[v] > logits[best]) best = v;
        return best == pr->answer[prompt];
    }
    default: return NAN;
    }
}

void hs_metric_dlogits(hs_metric m, const hs_prompts *pr, int p0, int B, const float *logits, int V,
                       const float *ref_logp, float *dl, float *scratch) {
    for (int r = 0; r < B; r++) {
        const float *x = logits + (int64_t)r * V, *ref = ref_logp ? ref_logp + (int64_t)r * V : NULL;
        float *g = dl + (int64_t)r * V;
        if (m == HS_METRIC_LOGIT_DIFF || m == HS_METRIC_LOGIT) {
            for (int v = 0; v < V; v++) g[v] = 0.0f;
            g[pr->answer[p0 + r]] += 1.0f;
            if (m == HS_METRIC_LOGIT_DIFF) g[pr->distractor[p0 + r]] -= 1.0f;
            continue;
        }
        hs_log_softmax(x, V, scratch); /* before g, which may alias x, is written */
        for (int v = 0; v < V; v++)
            g[v] = m == HS_METRIC_KL ? (float)(exp((double)scratch[v]) - exp((double)ref[v]))
                                     : (float)-exp((double)scratch[v]);
        if (m == HS_METRIC_LOGPROB) g[pr->answer[p0 + r]] += 1.0f;
    }
}

hs_status hs_metric_check(const hs_model_config *c, const hs_prompts *pr, hs_metric metric, hs_err *err) {
    if (metric < 0 || metric >= HS_METRIC_COUNT) return hs_err_set(err, HS_ERR_INVALID_ARG, "unknown metric %d", (int)metric);
    if (metric == HS_METRIC_NEEDLE_RECALL) /* generated, not read from one forward */
        return hs_err_set(err, HS_ERR_INVALID_ARG, "metric needle_recall is for head sets only (hs_head_set_metric)");
    if ((metric == HS_METRIC_LOGPROB || metric == HS_METRIC_ACCURACY || metric == HS_METRIC_LOGIT_DIFF ||
         metric == HS_METRIC_LOGIT) &&
        !pr->answer)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "metric %s needs answer tokens", hs_metric_name(metric));
    if (metric == HS_METRIC_LOGIT_DIFF && !pr->distractor)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "metric logit_diff needs distractor tokens");
    for (int i = 0; i < pr->N; i++) {
        if (pr->lengths[i] < 1 || pr->lengths[i] > pr->T)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "prompt %d has length %d outside 1..%d", i, pr->lengths[i], pr->T);
        if ((pr->answer && (pr->answer[i] < 0 || pr->answer[i] >= c->n_vocab)) ||
            (pr->distractor && (pr->distractor[i] < 0 || pr->distractor[i] >= c->n_vocab)))
            return hs_err_set(err, HS_ERR_INVALID_ARG, "prompt %d: answer/distractor outside the vocabulary", i);
    }
    return HS_OK;
}

void hs_prompts_mask_targets(const hs_prompts *pr, const int32_t *tokens, int32_t *mask, int32_t *targets) {
    const int T = pr->T;
    if (!tokens) tokens = pr->tokens;
    for (int i = 0; i < pr->N; i++)
        for (int t = 0; t < T; t++) {
            const int64_t k = (int64_t)i * T + t;
            if (mask) mask[k] = t < pr->lengths[i];
            if (targets) targets[k] = t + 1 < pr->lengths[i] ? tokens[k + 1] : -1;
        }
}
