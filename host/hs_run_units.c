/* The experiment steps of hs_run: the work done once per experiment
 * (prepare) and the work of one unit of items, written into the unit's rows
 * of the experiment's per-item arrays. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_circuit.h"
#include "headsweep/hs_dla.h"
#include "headsweep/hs_eap.h"
#include "headsweep/hs_head_grad.h"
#include "headsweep/hs_head_scores.h"
#include "headsweep/hs_head_sets.h"
#include "headsweep/hs_patching.h"
#include "headsweep/hs_retrieval.h"
#include "hs_decode.h"
#include "hs_run_internal.h"

/* experiments pass their config metric on as an hs_metric */
_Static_assert((int)HS_CONFIG_METRIC_LOGIT_DIFF == (int)HS_METRIC_LOGIT_DIFF, "metric order");
_Static_assert((int)HS_CONFIG_METRIC_NEEDLE_RECALL == (int)HS_METRIC_NEEDLE_RECALL, "metric order");
_Static_assert((int)HS_CONFIG_METRIC_LOGIT == (int)HS_METRIC_LOGIT, "metric order");

/* Prompts [i0, i0 + n) as a prompt set of their own. */
static hs_prompts view(const hs_prompts *p, int i0, int n) {
    hs_prompts v = *p;
    v.N = n;
    v.tokens = p->tokens + (int64_t)i0 * p->T;
    v.lengths = p->lengths + i0;
    v.answer = p->answer ? p->answer + i0 : NULL;
    v.distractor = p->distractor ? p->distractor + i0 : NULL;
    return v;
}

/* Row of array `name` for item i. */
static float *row(const hs_run_exp *r, const char *name, int i) {
    hs_run_array *a = hs_run_find(r, name);
    return a ? a->data + (int64_t)(i - r->lo) * a->per : NULL;
}

typedef struct {
    hs_run_ctx *x;
    int exp;
} stop_check;

static int inner_progress(void *user, int done, int total) {
    (void)done, (void)total;
    stop_check *s = user;
    return hs_run_should_stop(s->x, s->exp);
}

static hs_ablation_params ablation_params(const hs_run_ctx *x, const hs_config_experiment *e) {
    hs_ablation_params p = hs_ablation_default_params();
    p.metric = (hs_metric)e->metric;
    p.mode = e->mode == HS_CONFIG_MODE_ZERO    ? HS_ABLATE_ZERO
             : e->mode == HS_CONFIG_MODE_SCALE ? HS_ABLATE_SCALE
             : e->mode == HS_CONFIG_MODE_MEAN  ? HS_ABLATE_MEAN
                                               : HS_ABLATE_UNIFORM;
    p.scale = (float)e->scale;
    p.batch_rows = x->cfg->batch_size;
    p.mean_per_position = e->mean_over == HS_CONFIG_MEAN_OVER_POSITION;
    /* patch: z from the corrupted version of the same prompt, a resample with fixed sources */
    if (e->mode == HS_CONFIG_MODE_RESAMPLE || e->mode == HS_CONFIG_MODE_PATCH) p.mode = HS_ABLATE_RESAMPLE;
    return p;
}

/* The reference prompts of template means: the corrupted (ABC) prompts when
 * the dataset has them (Wang et al.'s knockout), else the prompts themselves. */
static hs_prompts template_reference(const hs_run_ctx *x) {
    hs_prompts ref = x->prompts;
    if (x->data->corrupt_tokens) ref.tokens = x->data->corrupt_tokens;
    return ref;
}

_Static_assert((int)HS_CONFIG_TARGET_COUNT == (int)HS_PATCH_COUNT &&
                   (int)HS_CONFIG_TARGET_RESID_PRE == (int)HS_PATCH_RESID_PRE &&
                   (int)HS_CONFIG_TARGET_MLP_OUT == (int)HS_PATCH_MLP_OUT &&
                   (int)HS_CONFIG_TARGET_V_ALL_POS == (int)HS_PATCH_V_ALL_POS &&
                   (int)HS_CONFIG_TARGET_PATH_LOGITS == (int)HS_PATCH_PATH_LOGITS &&
                   (int)HS_CONFIG_TARGET_PATH_HEADS == (int)HS_PATCH_PATH_HEADS,
               "config targets and patch targets share one order");

static hs_patching_params patching_params(const hs_run_ctx *x, const hs_config_experiment *e) {
    hs_patching_params p = hs_patching_default_params();
    p.metric = (hs_metric)e->metric;
    p.batch_rows = x->cfg->batch_size;
    p.targets = e->targets & ((1u << HS_PATCH_COUNT) - 1); /* config bits share the target order */
    p.qk_fix = e->qk_fix;
    p.grad_drop = e->grad_drop;
    static const hs_hook_point inputs[] = {[HS_CONFIG_RECEIVER_Q] = HS_HOOK_Q, [HS_CONFIG_RECEIVER_K] = HS_HOOK_K,
                                           [HS_CONFIG_RECEIVER_V] = HS_HOOK_V};
    p.receivers = e->receivers.v;
    p.n_receivers = e->receivers.n;
    p.receiver_input = inputs[e->receiver_input];
    return p;
}

hs_eap_params hs_run_eap_params(const hs_config *cfg, const hs_config_experiment *e) {
    hs_eap_params p = hs_eap_default_params();
    p.metric = (hs_metric)e->metric;
    p.batch_rows = cfg->batch_size;
    p.ig_steps = e->ig_steps;
    return p;
}

int hs_run_unit_size(const hs_run_ctx *x, int exp) {
    const hs_config_experiment *e = &x->cfg->experiments[exp];
    if (e->type == HS_CONFIG_EXP_HEAD_ABLATION) {
        hs_ablation_params p = ablation_params(x, e);
        return hs_head_ablation_unit(x->model, &p);
    }
    if (e->type == HS_CONFIG_EXP_ACTIVATION_PATCHING) {
        hs_patching_params p = patching_params(x, e);
        return e->method == HS_CONFIG_METHOD_ATTRIBUTION ? hs_attribution_patching_unit(&p)
                                                         : hs_activation_patching_unit(x->model, &p);
    }
    if (e->type == HS_CONFIG_EXP_CIRCUIT_SCORES) return 1; /* one writer layer */
    if (e->type == HS_CONFIG_EXP_EDGE_ATTRIBUTION) return 1; /* one batch of prompts */
    return x->cfg->batch_size;
}

/* *data := dataset "/group/name" of result file `file` (heap), *shape its shape. */
static hs_status read_result(const char *file, const char *dataset, float **data, hs_h5_shape *shape, hs_err *err) {
    hs_h5 *f = NULL;
    hs_h5_group *grp;
    char group[512];
    const char *ds = strrchr(dataset, '/'), *g0 = dataset + (dataset[0] == '/'); /* "/abl/delta_mean" */
    snprintf(group, sizeof group, "%.*s", ds && ds > g0 ? (int)(ds - g0) : 0, g0);
    hs_status st = hs_h5_open_read(file, &f, err);
    if (!st) st = hs_h5_group_open(f, group[0] ? group : "/", &grp, err);
    if (!st) st = hs_h5_read_f32(grp, ds ? ds + 1 : dataset, data, shape, err);
    if (f) hs_h5_close(f);
    return st;
}

/* Importance [L, H] from this run (a head_ablation, or the first score of a
 * head_scores) or from a result file "FILE:/group/dataset". */
static hs_status load_importance(hs_run_ctx *x, const hs_config_experiment *e, float *imp, int LH, hs_err *err) {
    if (e->importance.experiment) {
        const char *slash = strchr(e->importance.experiment, '/'); /* "EXPERIMENT/SCORE" */
        const size_t nlen = slash ? (size_t)(slash - e->importance.experiment) : strlen(e->importance.experiment);
        for (int j = 0; j < x->cfg->n_experiments; j++) {
            const hs_config_experiment *ej = &x->cfg->experiments[j];
            if (strlen(ej->name) != nlen || strncmp(ej->name, e->importance.experiment, nlen)) continue;
            if (ej->type == HS_CONFIG_EXP_HEAD_ABLATION) {
                hs_run_importance(ej, &x->exps[j], imp);
                return HS_OK;
            }
            if (ej->type == HS_CONFIG_EXP_HEAD_IMPORTANCE) return hs_run_grad_importance(&x->exps[j], NULL, imp, err);
            /* head_scores: the named score, else the first computed, the retrieval score last */
            const hs_run_array *a = NULL;
            for (int k = 0; ej->type == HS_CONFIG_EXP_HEAD_SCORES && k < HS_SCORE_COUNT && !a; k++) {
                char name[96];
                snprintf(name, sizeof name, "%s_per_prompt", hs_score_name((hs_score_kind)k));
                if (!slash || !strcmp(slash + 1, hs_score_name((hs_score_kind)k))) a = hs_run_find(&x->exps[j], name);
            }
            if (!a && ej->type == HS_CONFIG_EXP_HEAD_SCORES) a = hs_run_find(&x->exps[j], "retrieval_per_prompt");
            if (a && a->per == LH) {
                hs_run_mean_items(a, x->exps[j].hi - x->exps[j].lo, imp);
                return HS_OK;
            }
        }
        return hs_err_set(err, HS_ERR_INVALID_ARG,
                          "importance: experiment '%s' is not a head_ablation, head_importance or head_scores of this run",
                          e->importance.experiment);
    }
    float *data = NULL;
    hs_h5_shape shape;
    hs_status st = HS_OK;
    HS_CHECK(read_result(e->importance.file, e->importance.dataset, &data, &shape, err));
    if (shape.ndim != 2 || shape.dims[0] * shape.dims[1] != LH)
        HS_FAIL(err, HS_ERR_SHAPE, "%s:%s: importance must be [layer, head] with %d entries", e->importance.file,
                e->importance.dataset, LH);
    memcpy(imp, data, (size_t)LH * sizeof(float));
exit:
    free(data);
    return st;
}

typedef struct {
    const float *imp;
    int idx;
} ranked;

static int by_importance(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->imp[x->idx] != y->imp[y->idx]) return x->imp[x->idx] < y->imp[y->idx] ? -1 : 1;
    return x->idx - y->idx; /* ties: lower index first, deterministic */
}

/* Predictions the metric of a head_importance sums: every next token for the
 * loss, the one after the last token otherwise. */
static float importance_tokens(hs_config_metric m, int length) { return m == HS_CONFIG_METRIC_LOSS ? length - 1 : 1; }

/* Michel's normalised gradient importance of every prompt at xi = mask, for
 * the metric of the head_importance experiment `name`. */
static hs_status grad_importance_at(hs_run_ctx *x, hs_run_worker *w, const char *name, const float *mask, float *imp,
                                    hs_err *err) {
    const hs_model_config *c = hs_model_get_config(x->model);
    const int N = x->prompts.N, LH = c->n_layers * c->n_heads;
    hs_config_metric metric = HS_CONFIG_METRIC_LOSS;
    for (int j = 0; j < x->cfg->n_experiments; j++)
        if (!strcmp(x->cfg->experiments[j].name, name)) metric = x->cfg->experiments[j].metric;
    hs_status st = HS_OK;
    float *g = malloc((size_t)N * LH * sizeof *g);
    int32_t *tokens = malloc((size_t)N * sizeof *tokens);
    if (!g || !tokens) HS_FAIL(err, HS_ERR_OOM, "out of memory");
    HS_CHECK(hs_head_grad_metric(w->session, &x->prompts, (hs_metric)metric, mask, x->cfg->batch_size, g, err));
    for (int i = 0; i < N; i++) tokens[i] = (int32_t)importance_tokens(metric, x->prompts.lengths[i]);
    hs_head_importance(g, tokens, N, c->n_layers, c->n_heads, NULL, imp);
exit:
    free(g), free(tokens);
    return st;
}

/* Pruning masks [steps, L, H]: the least important heads first (Michel et
 * al.). With recompute, each step keeps the previous step's pruned heads and
 * ranks the rest by the gradient importance recomputed over every prompt
 * with those heads masked. */
static hs_status pruning_masks(hs_run_ctx *x, int exp, hs_run_worker *w, hs_err *err) {
    const hs_config_experiment *e = &x->cfg->experiments[exp];
    const hs_model_config *c = hs_model_get_config(x->model);
    const int LH = c->n_layers * c->n_heads;
    hs_run_array *masks = hs_run_find(&x->exps[exp], "masks");
    const int steps = (int)masks->dims[0];
    hs_status st = HS_OK;
    float *imp = malloc((size_t)LH * sizeof *imp);
    ranked *order = malloc((size_t)LH * sizeof *order);
    if (!imp || !order) HS_FAIL(err, HS_ERR_OOM, "out of memory");
    HS_CHECK(load_importance(x, e, imp, LH, err));
    for (int s = 0; s < steps; s++) {
        const int n = (int)floor(fmin(1.0, s * e->step) * LH + 0.5);
        float *mk = masks->data + (int64_t)s * LH;
        const int rerank = e->recompute && s > 1; /* step 1 ranks by the given importance too */
        if (rerank) { /* the last step's pruned heads first (they stay pruned), then the recomputed ranking */
            HS_CHECK(grad_importance_at(x, w, e->importance.experiment, mk - LH, imp, err));
            for (int k = 0; k < LH; k++)
                if (mk[k - LH] == 0.0f) imp[k] = -INFINITY;
        }
        if (s == 0 || rerank) {
            for (int k = 0; k < LH; k++) order[k] = (ranked){imp, k};
            qsort(order, (size_t)LH, sizeof *order, by_importance);
        }
        for (int k = 0; k < LH; k++) mk[k] = 1.0f;
        for (int k = 0; k < n; k++) mk[order[k].idx] = 0.0f;
        if (e->recompute && hs_run_should_stop(x, exp)) HS_FAIL(err, HS_ERR_INTERRUPTED, "interrupted");
    }
exit:
    free(imp), free(order);
    return st;
}

/* The head sets [1 + random_sets, L, H]: the top_k of the ranking, then
 * random top_k-sets of the other heads (seeded, the same in every shard). */
static hs_status head_sets(hs_run_ctx *x, int exp, hs_err *err) {
    const hs_config_experiment *e = &x->cfg->experiments[exp];
    const hs_model_config *c = hs_model_get_config(x->model);
    const int LH = c->n_layers * c->n_heads, K = e->top_k;
    hs_run_array *sets = hs_run_find(&x->exps[exp], "sets");
    hs_status st = HS_OK;
    float *imp = malloc((size_t)LH * sizeof *imp);
    ranked *order = malloc((size_t)LH * sizeof *order);
    int *rest = malloc((size_t)LH * sizeof *rest);
    if (!imp || !order || !rest) HS_FAIL(err, HS_ERR_OOM, "out of memory");
    HS_CHECK(load_importance(x, e, imp, LH, err));
    for (int k = 0; k < LH; k++) order[k] = (ranked){imp, k};
    qsort(order, (size_t)LH, sizeof *order, by_importance);
    for (int64_t k = 0; k < sets->per; k++) sets->data[k] = 0.0f;
    for (int k = 0; k < K; k++) sets->data[order[LH - 1 - k].idx] = 1.0f; /* the most important */
    uint64_t state = x->cfg->seed ^ 0x5e75e75e75e75e75ull;
    for (int s = 1; s <= e->random_sets; s++) {
        int n = 0;
        for (int k = 0; k < LH; k++)
            if (sets->data[k] == 0.0f) rest[n++] = k;
        for (int k = 0; k < K; k++) { /* partial Fisher-Yates with splitmix64 */
            uint64_t z = (state += 0x9e3779b97f4a7c15ull);
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            z ^= z >> 31;
            const int j = k + (int)(z % (uint64_t)(n - k)), t = rest[k];
            rest[k] = rest[j], rest[j] = t;
            sets->data[(int64_t)s * LH + rest[k]] = 1.0f;
        }
    }
exit:
    free(imp), free(order), free(rest);
    return st;
}

typedef struct {
    float key;
    int64_t idx;
} ranked_edge;

static int by_key_desc(const void *a, const void *b) {
    const ranked_edge *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx; /* ties: the lower index (upstream, then downstream) first */
}

/* The edge scores edges_from names: a finished edge_attribution of this run,
 * or a [U, V] dataset of a result file. */
static hs_status edge_scores(hs_run_ctx *x, const hs_config_experiment *e, float *scores, int U, int V, hs_err *err) {
    if (e->edges_from.experiment) {
        for (int j = 0; j < x->cfg->n_experiments; j++)
            if (!strcmp(x->cfg->experiments[j].name, e->edges_from.experiment)) {
                hs_run_eap_mean(&x->exps[j], scores);
                return HS_OK;
            }
        return hs_err_set(err, HS_ERR_INVALID_ARG, "edges_from: no experiment '%s'", e->edges_from.experiment);
    }
    float *data = NULL;
    hs_h5_shape shape;
    hs_status st = HS_OK;
    HS_CHECK(read_result(e->edges_from.file, e->edges_from.dataset, &data, &shape, err));
    if (shape.ndim != 2 || shape.dims[0] != U || shape.dims[1] != V)
        HS_FAIL(err, HS_ERR_SHAPE, "%s:%s: edge scores must be [upstream, downstream] = [%d, %d] for this model",
                e->edges_from.file, e->edges_from.dataset, U, V);
    memcpy(scores, data, (size_t)U * V * sizeof *scores);
exit:
    free(data);
    return st;
}

/* edge_rank [U, V]: each edge's place by (|)score(|), 0 = the strongest, NaN where no edge. */
static hs_status rank_edges(hs_run_ctx *x, int exp, hs_err *err) {
    const hs_config_experiment *e = &x->cfg->experiments[exp];
    const hs_model_config *c = hs_model_get_config(x->model);
    const int U = hs_eap_n_upstream(c), V = hs_eap_n_downstream(c);
    float *rank = hs_run_find(&x->exps[exp], "edge_rank")->data, *scores = malloc((size_t)U * V * sizeof *scores);
    ranked_edge *order = malloc((size_t)U * V * sizeof *order);
    hs_status st = HS_OK;
    int64_t n = 0;
    if (!scores || !order) HS_FAIL(err, HS_ERR_OOM, "out of memory for %d x %d edges", U, V);
    HS_CHECK(edge_scores(x, e, scores, U, V, err));
    for (int u = 0; u < U; u++)
        for (int v = 0; v < V; v++) {
            const int64_t i = (int64_t)u * V + v;
            rank[i] = NAN;
            if (!hs_eap_is_edge(c, u, v)) continue;
            if (!isfinite(scores[i])) {
                char un[32], vn[32];
                hs_eap_upstream_name(c, u, un, sizeof un), hs_eap_downstream_name(c, v, vn, sizeof vn);
                HS_FAIL(err, HS_ERR_FORMAT, "edges_from: edge %s -> %s has score %g", un, vn, scores[i]);
            }
            order[n++] = (ranked_edge){e->absolute ? fabsf(scores[i]) : scores[i], i};
        }
    qsort(order, (size_t)n, sizeof *order, by_key_desc);
    for (int64_t k = 0; k < n; k++) rank[order[k].idx] = (float)k; /* exact: fewer than 2^24 edges */
exit:
    free(scores), free(order);
    return st;
}

hs_status hs_run_prepare(hs_run_ctx *x, int exp, hs_run_worker *w, int pending, hs_err *err) {
    const hs_config_experiment *e = &x->cfg->experiments[exp];
    hs_run_exp *r = &x->exps[exp];
    const hs_model_config *c = hs_model_get_config(x->model);
    if (e->type == HS_CONFIG_EXP_PRUNING_CURVE) return pruning_masks(x, exp, w, err);
    if (e->type == HS_CONFIG_EXP_CIRCUIT_FAITHFULNESS) return rank_edges(x, exp, err);
    if (e->type == HS_CONFIG_EXP_CIRCUIT_SCORES && pending && !r->circuit) {
        const unsigned copying = HS_CONFIG_BIT(HS_CONFIG_CIRCUIT_COPYING);
        const hs_circuit_params p = {.fold_norms = e->fold_norms, .compositions = (e->circuits & ~copying) != 0,
                                     .copying = (e->circuits & copying) != 0};
        return hs_circuit_init(x->model, &p, &r->circuit, err);
    }
    if (e->type == HS_CONFIG_EXP_HEAD_SET_ABLATION) {
        hs_status st = head_sets(x, exp, err);
        if (st) return st;
    }
    if (!pending || (e->type != HS_CONFIG_EXP_HEAD_ABLATION && e->type != HS_CONFIG_EXP_HEAD_SET_ABLATION))
        return HS_OK;
    if ((e->mode == HS_CONFIG_MODE_RESAMPLE || e->mode == HS_CONFIG_MODE_PATCH) && !r->resample_src) {
        if (!(r->resample_src = malloc((size_t)x->prompts.N * sizeof *r->resample_src)))
            return hs_err_set(err, HS_ERR_OOM, "out of memory");
        r->source = x->prompts;
        if (e->mode == HS_CONFIG_MODE_RESAMPLE) /* a source per prompt, by global index */
            return hs_ablation_resample_sources(x->cfg->seed, x->prompts.N, 0, x->prompts.N, r->resample_src, err);
        r->source.tokens = x->data->corrupt_tokens;
        for (int i = 0; i < x->prompts.N; i++) r->resample_src[i] = i;
        return HS_OK;
    }
    if (e->mode != HS_CONFIG_MODE_MEAN || r->mean_z) return HS_OK;
    if (e->mean_over == HS_CONFIG_MEAN_OVER_TEMPLATE) {
        int n_t = 0;
        for (int i = 0; i < x->prompts.N; i++) n_t = x->data->template_id[i] + 1 > n_t ? x->data->template_id[i] + 1 : n_t;
        const hs_prompts ref = template_reference(x);
        r->n_templates = n_t;
        r->mean_z = malloc((size_t)n_t * c->n_layers * c->n_heads * x->prompts.T * c->d_head * sizeof(float));
        if (!r->mean_z) return hs_err_set(err, HS_ERR_OOM, "out of memory for %d template means", n_t);
        return hs_ablation_mean_z_template(w->session, x->model, &ref, x->data->template_id, n_t, x->cfg->batch_size,
                                           r->mean_z, err);
    }
    /* the whole dataset's mean, the same in every shard and every unit */
    r->mean_z = malloc((size_t)c->n_layers * c->n_heads * x->prompts.T * c->d_head * sizeof(float));
    if (!r->mean_z) return hs_err_set(err, HS_ERR_OOM, "out of memory for the mean z");
    return hs_ablation_mean_z(w->session, x->model, &x->prompts, x->cfg->batch_size,
                              e->mean_over == HS_CONFIG_MEAN_OVER_POSITION, r->mean_z, err);
}

/* The ablation sweep of items [i0, i0 + n) over the heads in select, into
 * rows of n items (delta_layer / delta_abo NULL when not configured). */
static hs_status ablate(hs_run_ctx *x, int exp, hs_run_worker *w, int i0, int n, const uint8_t *select, float *base,
                        float *delta, float *delta_layer, float *delta_abo, hs_err *err) {
    const hs_config_experiment *e = &x->cfg->experiments[exp];
    const hs_run_exp *r = &x->exps[exp];
    const hs_prompts v = view(&x->prompts, i0, n);
    stop_check sc = {x, exp};
    hs_ablation_params p = ablation_params(x, e);
    p.select = select;
    p.mean_z = r->mean_z;
    if (r->n_templates) p.mean_template = x->data->template_id + i0, p.n_templates = r->n_templates;
    if (r->resample_src) p.resample_ref = &r->source, p.resample_src = r->resample_src + i0;
    p.progress = inner_progress;
    p.progress_user = &sc;
    hs_status st = hs_head_ablation(w->session, x->model, &v, &p, base, delta, err);
    if (!st && delta_layer) { /* Michel et al. Table 2: every head of a layer at once */
        p.kind = HS_ABLATION_WHOLE_LAYER;
        st = hs_head_ablation(w->session, x->model, &v, &p, base, delta_layer, err);
    }
    if (!st && delta_abo) { /* Michel et al. Table 3: keep one head of a layer */
        p.kind = HS_ABLATION_ALL_BUT_ONE;
        st = hs_head_ablation(w->session, x->model, &v, &p, base, delta_abo, err);
    }
    return st;
}

/* Part g of r->parts sweeps only the heads of its layer group. A layer's
 * variants are batched on their own, so these are the same forwards as in the
 * whole sweep; the part's columns are copied out of scratch rows. */
static hs_status unit_ablation(hs_run_ctx *x, int exp, hs_run_worker *w, int i0, int n, int g, hs_err *err) {
    const hs_run_exp *r = &x->exps[exp];
    const char *names[4] = {"base", "delta", "delta_layer", "delta_all_but_one"};
    hs_run_array *a[4];
    for (int k = 0; k < 4; k++) a[k] = hs_run_find(r, names[k]);
    if (r->parts == 1)
        return ablate(x, exp, w, i0, n, r->select, row(r, names[0], i0), row(r, names[1], i0), row(r, names[2], i0),
                      row(r, names[3], i0), err);
    const hs_model_config *c = hs_model_get_config(x->model);
    const int L = c->n_layers, H = c->n_heads, l0 = g * L / r->parts, l1 = (g + 1) * L / r->parts;
    hs_status st = HS_OK;
    float *scratch[4] = {NULL, NULL, NULL, NULL};
    uint8_t *select = malloc((size_t)L * H);
    if (!select) HS_FAIL(err, HS_ERR_OOM, "out of memory");
    for (int k = 0; k < L * H; k++) select[k] = (uint8_t)(k / H >= l0 && k / H < l1 && (!r->select || r->select[k]));
    for (int k = 0; k < 4; k++)
        if (a[k] && !(scratch[k] = malloc((size_t)(n * a[k]->per) * sizeof(float)))) HS_FAIL(err, HS_ERR_OOM, "out of memory");
    HS_CHECK(ablate(x, exp, w, i0, n, select, scratch[0], scratch[1], scratch[2], scratch[3], err));
    for (int k = 0; k < 4; k++) {
        int64_t c0, c1;
        if (!a[k]) continue;
        hs_run_part_cols(r, a[k], g, &c0, &c1);
        for (int i = 0; i < n; i++)
            memcpy(a[k]->data + (int64_t)(i0 + i - r->lo) * a[k]->per + c0, scratch[k] + (int64_t)i * a[k]->per + c0,
                   (size_t)(c1 - c0) * sizeof(float));
    }
exit:
    for (int k = 0; k < 4; k++) free(scratch[k]);
    free(select);
    return st;
}

static hs_status unit_scores(hs_run_ctx *x, int exp, hs_run_worker *w, int i0, int n, hs_err *err) {
    const hs_config_experiment *e = &x->cfg->experiments[exp];
    const hs_run_exp *r = &x->exps[exp];
    const hs_model_config *c = hs_model_get_config(x->model);
    const int64_t LH = (int64_t)c->n_layers * c->n_heads, K = HS_SCORE_COUNT * LH;
    const unsigned mask = e->scores & ((1u << HS_SCORE_COUNT) - 1); /* config bits share the kind order */
    const hs_prompts v = view(&x->prompts, i0, n);
    float *per = malloc((size_t)n * K * sizeof *per);
    if (!per) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    hs_status st = mask ? hs_head_scores_per_prompt(w->session, x->model, &v, mask, x->cfg->batch_size, per, err) : HS_OK;
    if (!st && (e->scores & HS_CONFIG_BIT(HS_CONFIG_SCORE_RETRIEVAL))) {
        hs_retrieval_params rp = hs_retrieval_default_params();
        rp.n_generate = HS_RUN_RETRIEVAL_TOKENS;
        rp.batch_rows = x->cfg->batch_size;
        int32_t *gen = malloc((size_t)n * rp.n_generate * sizeof *gen);
        float *g = row(r, "generated_tokens", i0);
        st = gen ? hs_retrieval_scores_per_prompt(w->session, x->model, &v, x->data->needle_start + i0,
                                                  x->data->needle_len + i0, &rp, row(r, "retrieval_per_prompt", i0),
                                                  gen, err)
                 : hs_err_set(err, HS_ERR_OOM, "out of memory");
        for (int64_t k = 0; !st && k < (int64_t)n * rp.n_generate; k++) g[k] = (float)gen[k];
        float *rec = row(r, "needle_recall", i0); /* each answer's recall of its needle: the paper's filter reads it */
        for (int i = 0; !st && i < n; i++)
            rec[i] = hs_needle_recall(v.tokens + (int64_t)i * v.T + x->data->needle_start[i0 + i],
                                      x->data->needle_len[i0 + i], gen + (int64_t)i * rp.n_generate, rp.n_generate);
        free(gen);
    }
    for (int k = 0; !st && k < HS_SCORE_COUNT; k++) {
        if (!(mask & (1u << k))) continue;
        char name[96];
        snprintf(name, sizeof name, "%s_per_prompt", hs_score_name((hs_score_kind)k));
        for (int i = 0; i < n; i++) memcpy(row(r, name, i0 + i), per + i * K + k * LH, (size_t)LH * sizeof(float));
    }
    free(per);
    if (!st && hs_run_should_stop(x, exp)) st = hs_err_set(err, HS_ERR_INTERRUPTED, "interrupted");
    return st;
}

static hs_status unit_pruning(hs_run_ctx *x, int exp, hs_run_worker *w, int i0, int n, hs_err *err) {
    const hs_config_experiment *e = &x->cfg->experiments[exp];
    const hs_run_exp *r = &x->exps[exp];
    const hs_run_array *masks = hs_run_find(r, "masks"), *m = hs_run_find(r, "metric_per_prompt");
    const int steps = (int)masks->dims[0];
    const int64_t LH = masks->dims[1] * masks->dims[2];
    const hs_prompts v = view(&x->prompts, i0, n);
    hs_status st = HS_OK;
    float *val = malloc((size_t)n * sizeof *val);
    if (!val) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    for (int s = 0; s < steps && !st; s++) {
        st = hs_eval_metric_per_prompt(w->session, x->model, &v, (hs_metric)e->metric, s ? masks->data + s * LH : NULL,
                                       x->cfg->batch_size, val, err);
        for (int i = 0; !st && i < n; i++) m->data[(int64_t)(i0 + i - r->lo) * steps + s] = val[i];
        if (!st && hs_run_should_stop(x, exp)) st = hs_err_set(err, HS_ERR_INTERRUPTED, "interrupted");
    }
    free(val);
    return st;
}

static hs_status unit_patching(hs_run_ctx *x, int exp, hs_run_worker *w, int i0, int n, hs_err *err) {
    const hs_config_experiment *e = &x->cfg->experiments[exp];
    const hs_run_exp *r = &x->exps[exp];
    const hs_prompts v = view(&x->prompts, i0, n);
    stop_check sc = {x, exp};
    hs_patching_params p = patching_params(x, e);
    p.progress = inner_progress;
    p.progress_user = &sc;
    hs_patching_out out = {.clean = row(r, "clean", i0),
                           .corrupt = row(r, "corrupt", i0),
                           .z_all_pos = row(r, "z_all_pos", i0),
                           .z_by_pos = row(r, "z_by_pos", i0),
                           .resid_pre = row(r, "resid_pre", i0),
                           .attn_out = row(r, "attn_out", i0),
                           .mlp_out = row(r, "mlp_out", i0),
                           .q_all_pos = row(r, "q_all_pos", i0),
                           .k_all_pos = row(r, "k_all_pos", i0),
                           .v_all_pos = row(r, "v_all_pos", i0),
                           .path_logits = row(r, "path_logits", i0),
                           .path_heads = row(r, "path_heads", i0)};
    const int32_t *corrupt = x->data->corrupt_tokens + (int64_t)i0 * x->prompts.T;
    if (e->method == HS_CONFIG_METHOD_ATTRIBUTION)
        return hs_attribution_patching(w->session, x->model, &v, corrupt, &p, &out, err);
    return hs_activation_patching(w->session, x->model, &v, corrupt, &p, &out, err);
}

static hs_status unit_sets(hs_run_ctx *x, int exp, hs_run_worker *w, int i0, int n, hs_err *err) {
    const hs_config_experiment *e = &x->cfg->experiments[exp];
    const hs_run_exp *r = &x->exps[exp];
    const hs_run_array *sets = hs_run_find(r, "sets"), *m = hs_run_find(r, "metric_per_prompt");
    const int n_sets = (int)sets->dims[0];
    const int64_t LH = sets->dims[1] * sets->dims[2];
    const hs_prompts v = view(&x->prompts, i0, n);
    const hs_ablation_params ap = ablation_params(x, e);
    hs_head_set_params p = hs_head_set_default_params();
    p.metric = (hs_metric)e->metric;
    p.mode = ap.mode;
    p.scale = ap.scale;
    p.mean_z = r->mean_z;
    if (r->n_templates) p.mean_template = x->data->template_id + i0, p.n_templates = r->n_templates;
    p.second_half = e->positions == HS_CONFIG_POSITIONS_SECOND_HALF;
    p.batch_rows = x->cfg->batch_size;
    if (r->resample_src) p.resample_ref = &r->source, p.resample_src = r->resample_src + i0; /* resample, patch */
    hs_status st = HS_OK;
    const int G = HS_RUN_RETRIEVAL_TOKENS, recall = p.metric == HS_METRIC_NEEDLE_RECALL;
    if (recall) { /* the greedy answer under the ablation (spans: check_dataset_fits) */
        p.needle_start = x->data->needle_start + i0, p.needle_len = x->data->needle_len + i0;
        p.n_generate = G;
        p.generated = malloc((size_t)n * G * sizeof *p.generated);
    }
    float *val = malloc((size_t)n * sizeof *val);
    uint8_t *set = malloc((size_t)LH);
    if (!val || !set || (recall && !p.generated)) HS_FAIL(err, HS_ERR_OOM, "out of memory");
    HS_CHECK(hs_head_set_metric(w->session, x->model, &v, &p, NULL, row(r, "base", i0), err));
    if (recall) {
        float *bg = row(r, "base_generated_tokens", i0);
        for (int64_t k = 0; k < (int64_t)n * G; k++) bg[k] = (float)p.generated[k];
    }
    for (int s = 0; s < n_sets; s++) {
        for (int64_t k = 0; k < LH; k++) set[k] = sets->data[s * LH + k] != 0.0f;
        HS_CHECK(hs_head_set_metric(w->session, x->model, &v, &p, set, val, err));
        for (int i = 0; i < n; i++) m->data[(int64_t)(i0 + i - r->lo) * n_sets + s] = val[i];
        for (int i = 0; recall && i < n; i++) { /* [prompt, set, generated] */
            float *gt = row(r, "generated_tokens", i0 + i) + (int64_t)s * G;
            for (int k = 0; k < G; k++) gt[k] = (float)p.generated[(int64_t)i * G + k];
        }
        if (hs_run_should_stop(x, exp)) HS_FAIL(err, HS_ERR_INTERRUPTED, "interrupted");
    }
exit:
    free(val), free(set), free(p.generated);
    return st;
}

static hs_status unit_importance(hs_run_ctx *x, int exp, hs_run_worker *w, int i0, int n, hs_err *err) {
    const hs_config_experiment *e = &x->cfg->experiments[exp];
    const hs_run_exp *r = &x->exps[exp];
    const hs_prompts v = view(&x->prompts, i0, n);
    hs_status st = hs_head_grad_metric(w->session, &v, (hs_metric)e->metric, NULL, x->cfg->batch_size,
                                       row(r, "grad", i0), err);
    for (int i = 0; !st && i < n; i++) *row(r, "tokens", i0 + i) = importance_tokens(e->metric, v.lengths[i]);
    if (!st && hs_run_should_stop(x, exp)) st = hs_err_set(err, HS_ERR_INTERRUPTED, "interrupted");
    return st;
}

static hs_status unit_dla(hs_run_ctx *x, int exp, hs_run_worker *w, int i0, int n, hs_err *err) {
    const hs_run_exp *r = &x->exps[exp];
    const hs_prompts v = view(&x->prompts, i0, n);
    const hs_dla_out out = {.heads = row(r, "dla", i0), .mlp = row(r, "dla_mlp", i0), .rest = row(r, "dla_rest", i0),
                            .metric = row(r, "metric", i0), .heads_by_pos = row(r, "dla_by_pos", i0),
                            .metric_by_pos = row(r, "metric_by_pos", i0)};
    const hs_config_experiment *e = &x->cfg->experiments[exp];
    const hs_dla_positions where = e->positions == HS_CONFIG_POSITIONS_ALL           ? HS_DLA_ALL
                                   : e->positions == HS_CONFIG_POSITIONS_SECOND_HALF ? HS_DLA_SECOND_HALF
                                                                                     : HS_DLA_LAST;
    hs_status st = hs_dla(w->session, &v, (hs_metric)e->metric, where, x->cfg->batch_size, &out, err);
    if (!st && hs_run_should_stop(x, exp)) st = hs_err_set(err, HS_ERR_INTERRUPTED, "interrupted");
    return st;
}

/* Batches [i0, i0 + n) of batch_size prompts: each batch's summed edge scores and metrics. */
static hs_status unit_eap(hs_run_ctx *x, int exp, hs_run_worker *w, int i0, int n, hs_err *err) {
    const hs_run_exp *r = &x->exps[exp];
    const hs_eap_params p = hs_run_eap_params(x->cfg, &x->cfg->experiments[exp]);
    const hs_model_config *c = hs_model_get_config(x->model);
    const int64_t uv = (int64_t)hs_eap_n_upstream(c) * hs_eap_n_downstream(c);
    double *sum = malloc((size_t)uv * sizeof *sum);
    if (!sum) return hs_err_set(err, HS_ERR_OOM, "edge attribution: out of memory for %lld scores", (long long)uv);
    hs_status st = HS_OK;
    for (int b = i0; !st && b < i0 + n; b++) {
        const int p0 = b * p.batch_rows, np = x->prompts.N - p0 < p.batch_rows ? x->prompts.N - p0 : p.batch_rows;
        double clean = 0, corrupt = 0;
        memset(sum, 0, (size_t)uv * sizeof *sum);
        st = hs_eap_scores(w->session, &x->prompts, x->data->corrupt_tokens, &p, p0, np, sum, &clean, &corrupt, err);
        if (st) break;
        float *edges = row(r, "edges_sum", b);
        for (int64_t k = 0; k < uv; k++) edges[k] = (float)sum[k];
        *row(r, "metric_clean_sum", b) = (float)clean;
        *row(r, "metric_corrupt_sum", b) = (float)corrupt;
        if (hs_run_should_stop(x, exp)) st = hs_err_set(err, HS_ERR_INTERRUPTED, "interrupted");
    }
    free(sum);
    return st;
}

/* Prompts [i0, i0 + n): their metric with each circuit, the n_edges[k] edges of rank < n_edges[k]. */
static hs_status unit_faithfulness(hs_run_ctx *x, int exp, hs_run_worker *w, int i0, int n, hs_err *err) {
    const hs_run_exp *r = &x->exps[exp];
    const hs_config_experiment *e = &x->cfg->experiments[exp];
    const hs_run_array *rank = hs_run_find(r, "edge_rank");
    const int K = e->n_edges.n;
    uint8_t *in = malloc((size_t)K * rank->per), *circuits[HS_CONFIG_MAX_LIST];
    if (!in) return hs_err_set(err, HS_ERR_OOM, "out of memory for %d circuits", K);
    for (int k = 0; k < K; k++) {
        circuits[k] = in + k * rank->per;
        for (int64_t i = 0; i < rank->per; i++) circuits[k][i] = rank->data[i] < (float)e->n_edges.v[k]; /* NaN: 0 */
    }
    const hs_eap_circuit_params p = {.metric = (hs_metric)e->metric, .batch_rows = x->cfg->batch_size,
                                     .circuits = (const uint8_t *const *)circuits, .n_circuits = K};
    hs_status st = hs_eap_circuit(w->session, &x->prompts, x->data->corrupt_tokens, &p, i0, n, row(r, "metric", i0),
                                  row(r, "metric_clean", i0), row(r, "metric_corrupt", i0), err);
    free(in);
    if (!st && hs_run_should_stop(x, exp)) st = hs_err_set(err, HS_ERR_INTERRUPTED, "interrupted");
    return st;
}

/* Writer layers [i0, i0 + n): their composition scores with every later head, their copying scores. */
static hs_status unit_circuit(hs_run_ctx *x, int exp, int i0, int n, hs_err *err) {
    const hs_run_exp *r = &x->exps[exp];
    _Static_assert(HS_CONFIG_CIRCUIT_Q_COMPOSITION == (int)HS_CIRCUIT_Q &&
                       HS_CONFIG_CIRCUIT_K_COMPOSITION == (int)HS_CIRCUIT_K &&
                       HS_CONFIG_CIRCUIT_V_COMPOSITION == (int)HS_CIRCUIT_V &&
                       HS_CONFIG_CIRCUIT_COPYING == (int)HS_CIRCUIT_COMPOSITIONS,
                   "circuit_scores names follow hs_circuit_comp");
    hs_status st = HS_OK;
    for (int l = i0; !st && l < i0 + n; l++) {
        float *out[HS_CIRCUIT_COMPOSITIONS];
        for (int k = 0; k < HS_CIRCUIT_COMPOSITIONS; k++) out[k] = row(r, hs_config_circuit_name((hs_config_circuit)k), l);
        float *copying = row(r, "copying", l);
        st = hs_circuit_composition(r->circuit, l, out, err);
        if (!st && copying) st = hs_circuit_copying(r->circuit, l, copying, err);
        if (!st && hs_run_should_stop(x, exp)) st = hs_err_set(err, HS_ERR_INTERRUPTED, "interrupted");
    }
    return st;
}

hs_status hs_run_unit(hs_run_ctx *x, int exp, hs_run_worker *w, int i0, int n, int g, hs_err *err) {
    switch (x->cfg->experiments[exp].type) {
    case HS_CONFIG_EXP_HEAD_ABLATION: return unit_ablation(x, exp, w, i0, n, g, err);
    case HS_CONFIG_EXP_HEAD_SCORES: return unit_scores(x, exp, w, i0, n, err);
    case HS_CONFIG_EXP_PRUNING_CURVE: return unit_pruning(x, exp, w, i0, n, err);
    case HS_CONFIG_EXP_CAPTURE: return hs_run_capture_unit(x, exp, w, i0, n, err);
    case HS_CONFIG_EXP_ACTIVATION_PATCHING: return unit_patching(x, exp, w, i0, n, err);
    case HS_CONFIG_EXP_HEAD_SET_ABLATION: return unit_sets(x, exp, w, i0, n, err);
    case HS_CONFIG_EXP_HEAD_IMPORTANCE: return unit_importance(x, exp, w, i0, n, err);
    case HS_CONFIG_EXP_DLA: return unit_dla(x, exp, w, i0, n, err);
    case HS_CONFIG_EXP_CIRCUIT_SCORES: return unit_circuit(x, exp, i0, n, err);
    case HS_CONFIG_EXP_EDGE_ATTRIBUTION: return unit_eap(x, exp, w, i0, n, err);
    case HS_CONFIG_EXP_CIRCUIT_FAITHFULNESS: return unit_faithfulness(x, exp, w, i0, n, err);
    default: return hs_err_set(err, HS_ERR_UNSUPPORTED, "experiment type %s", hs_config_exp_type_name(x->cfg->experiments[exp].type));
    }
}
