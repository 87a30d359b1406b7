/* hs_run_plan: what each experiment produces, per item, from the config and
 * the model's shape alone (the merge of shard files plans without a model). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_capture.h"
#include "headsweep/hs_circuit.h"
#include "headsweep/hs_eap.h"
#include "headsweep/hs_head_scores.h"
#include "hs_run_internal.h"

float hs_run_importance_sign(hs_config_metric m) {
    return (m == HS_CONFIG_METRIC_LOSS || m == HS_CONFIG_METRIC_KL) ? 1.0f : -1.0f;
}

hs_status hs_run_head_selection(const hs_config_experiment *e, int L, int H, uint8_t **out, hs_err *err) {
    *out = NULL;
    if (e->layers.all && e->heads.all) return HS_OK;
    for (int i = 0; !e->layers.all && i < e->layers.n; i++)
        if (e->layers.v[i] >= L) return hs_err_set(err, HS_ERR_INVALID_ARG, "layers: %d beyond the model's %d", e->layers.v[i], L);
    for (int i = 0; !e->heads.all && i < e->heads.n; i++)
        if (e->heads.v[i] >= H) return hs_err_set(err, HS_ERR_INVALID_ARG, "heads: %d beyond the model's %d", e->heads.v[i], H);
    uint8_t *sel = calloc((size_t)L * H, 1);
    if (!sel) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++) {
            int in_l = e->layers.all, in_h = e->heads.all;
            for (int i = 0; !in_l && i < e->layers.n; i++) in_l = e->layers.v[i] == l;
            for (int i = 0; !in_h && i < e->heads.n; i++) in_h = e->heads.v[i] == h;
            sel[l * H + h] = (uint8_t)(in_l && in_h);
        }
    *out = sel;
    return HS_OK;
}

/* Adds an array of shape [item, d0, d1, ...] (ndim axes after the item axis). */
static hs_status add(hs_run_exp *r, int constant, const char *name, int ndim, const int64_t *dims,
                     const char *const *names, hs_err *err) {
    int *n = constant ? &r->n_consts : &r->n_arrays;
    hs_run_array **v = constant ? &r->consts : &r->arrays;
    hs_run_array *grown = realloc(*v, (size_t)(*n + 1) * sizeof **v);
    if (!grown) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    *v = grown;
    hs_run_array *a = &grown[(*n)++];
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    a->ndim = ndim;
    a->per = 1;
    a->dim_names[0] = "prompt";
    for (int k = 0; k < ndim; k++) a->dims[k] = dims[k], a->dim_names[k + 1] = names[k], a->per *= dims[k];
    return HS_OK;
}

static const char *N_LH[2] = {"layer", "head"};

/* Per-prompt shape and dimension names of a captured hook's tensor. */
int hs_run_hook_dims(hs_hook_point p, const hs_model_config *c, int T, int64_t *dims, const char **names) {
    switch (p) {
    case HS_HOOK_Q:
    case HS_HOOK_ROT_Q:
    case HS_HOOK_Z:
    case HS_HOOK_K:
    case HS_HOOK_ROT_K:
    case HS_HOOK_V: {
        int kv = p == HS_HOOK_K || p == HS_HOOK_ROT_K || p == HS_HOOK_V;
        dims[0] = T, dims[1] = kv ? c->n_kv_heads : c->n_heads, dims[2] = c->d_head;
        names[0] = "position", names[1] = kv ? "kv_head" : "head", names[2] = "d_head";
        return 3;
    }
    case HS_HOOK_PATTERN:
        dims[0] = c->n_heads, dims[1] = T, dims[2] = T;
        names[0] = "head", names[1] = "query", names[2] = "key";
        return 3;
    case HS_HOOK_MLP_PRE:
    case HS_HOOK_MLP_PRE_LINEAR:
    case HS_HOOK_MLP_POST:
        dims[0] = T, dims[1] = c->d_mlp;
        names[0] = "position", names[1] = "d_mlp";
        return 2;
    case HS_HOOK_COUNT: /* the result hook */
        dims[0] = T, dims[1] = c->n_heads, dims[2] = c->d_model;
        names[0] = "position", names[1] = "head", names[2] = "d_model";
        return 3;
    default:
        dims[0] = T, dims[1] = c->d_model;
        names[0] = "position", names[1] = "d_model";
        return 2;
    }
}

void hs_run_hook_name(char *out, size_t n, hs_hook_point p, int layer) {
    int attn = p == HS_HOOK_Q || p == HS_HOOK_K || p == HS_HOOK_V || p == HS_HOOK_ROT_Q || p == HS_HOOK_ROT_K ||
               p == HS_HOOK_PATTERN || p == HS_HOOK_Z;
    const int mlp = p == HS_HOOK_MLP_PRE || p == HS_HOOK_MLP_PRE_LINEAR || p == HS_HOOK_MLP_POST;
    snprintf(out, n, "blocks.%d.%shook_%s", layer, attn || p == HS_HOOK_COUNT ? "attn." : mlp ? "mlp." : "",
             p == HS_HOOK_COUNT ? "result" : hs_hook_name(p) + (mlp ? 4 : 0)); /* "mlp_pre" -> mlp.hook_pre */
}

static hs_status plan_capture(const hs_config_experiment *e, const hs_model_config *c, int N, int T, hs_run_exp *r,
                              hs_err *err) {
    const int L = c->n_layers;
    int nP = e->prompts.all ? N : e->prompts.n, nL = e->layers.all ? L : e->layers.n;
    if (!(r->items = malloc((size_t)(nP > 0 ? nP : 1) * sizeof *r->items))) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    for (int i = 0; i < nP; i++) {
        r->items[i] = e->prompts.all ? i : e->prompts.v[i];
        if (r->items[i] >= N)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "prompts: index %d beyond the %d prompts", r->items[i], N);
    }
    for (int i = 0; i < nL; i++)
        if (!e->layers.all && e->layers.v[i] >= L)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "layers: index %d beyond the model's %d layers", e->layers.v[i], L);
    r->n_items = nP;
    hs_status st = HS_OK;
    for (int p = 0; p <= HS_HOOK_COUNT && !st; p++) { /* HS_HOOK_COUNT stands for the result hook */
        if (!(e->hooks & HS_CONFIG_BIT(p == HS_HOOK_COUNT ? HS_CONFIG_HOOK_RESULT : p))) continue;
        for (int i = 0; i < nL && !st; i++) {
            int64_t dims[HS_RUN_MAX_DIMS] = {0};
            const char *names[HS_RUN_MAX_DIMS] = {0};
            int nd = hs_run_hook_dims((hs_hook_point)p, c, T, dims, names);
            char name[128];
            hs_run_hook_name(name, sizeof name, (hs_hook_point)p, e->layers.all ? i : e->layers.v[i]);
            st = add(r, 0, name, nd, dims, names, err);
        }
    }
    return st;
}

hs_status hs_run_plan(const hs_config *cfg, int exp, const hs_model_config *c, int N, int T, hs_run_exp *r,
                      hs_err *err) {
    const hs_config_experiment *e = &cfg->experiments[exp];
    const int L = c->n_layers, H = c->n_heads;
    const int64_t lh[2] = {L, H}, lth[3] = {L, T, H}, lt[2] = {L, T}, lk[2] = {L, c->n_kv_heads};
    const char *n_lk[2] = {"layer", "kv_head"};
    const char *n_lth[3] = {"layer", "position", "head"};
    hs_status st = HS_OK;
    memset(r, 0, sizeof *r);
    r->n_items = N;
    r->parts = 1;
    switch (e->type) {
    case HS_CONFIG_EXP_HEAD_ABLATION:
        r->parts = e->split_layers < L ? e->split_layers : L;
        HS_CHECK(add(r, 0, "base", 0, NULL, NULL, err));
        HS_CHECK(add(r, 0, "delta", 2, lh, N_LH, err));
        if (e->whole_layers) HS_CHECK(add(r, 0, "delta_layer", 1, lh, N_LH, err));
        if (e->all_but_one) HS_CHECK(add(r, 0, "delta_all_but_one", 2, lh, N_LH, err));
        for (int k = 1; k < r->n_arrays; k++) r->arrays[k].split = 1; /* every array but base is per layer */
        HS_CHECK(hs_run_head_selection(e, L, H, &r->select, err));
        break;
    case HS_CONFIG_EXP_HEAD_SCORES:
        for (int k = 0; k < HS_SCORE_COUNT; k++) {
            if (!(e->scores & (1u << k))) continue;
            char name[96];
            snprintf(name, sizeof name, "%s_per_prompt", hs_score_name((hs_score_kind)k));
            HS_CHECK(add(r, 0, name, 2, lh, N_LH, err));
        }
        if (e->scores & HS_CONFIG_BIT(HS_CONFIG_SCORE_RETRIEVAL)) {
            const int64_t g[1] = {HS_RUN_RETRIEVAL_TOKENS};
            const char *n_g[1] = {"generated"};
            HS_CHECK(add(r, 0, "retrieval_per_prompt", 2, lh, N_LH, err));
            HS_CHECK(add(r, 0, "generated_tokens", 1, g, n_g, err)); /* token ids, exact in float32 */
            HS_CHECK(add(r, 0, "needle_recall", 0, NULL, NULL, err));
        }
        break;
    case HS_CONFIG_EXP_PRUNING_CURVE: {
        const int64_t steps = (int64_t)ceil(1.0 / e->step - 1e-9) + 1, slh[3] = {steps, L, H};
        const char *n_slh[3] = {"step", "layer", "head"};
        r->phase = 1;
        HS_CHECK(add(r, 0, "metric_per_prompt", 1, slh, n_slh, err));
        HS_CHECK(add(r, 1, "masks", 3, slh, n_slh, err));
        break;
    }
    case HS_CONFIG_EXP_CAPTURE: HS_CHECK(plan_capture(e, c, N, T, r, err)); break;
    case HS_CONFIG_EXP_DLA: {
        const char *n_l[1] = {"layer"};
        HS_CHECK(add(r, 0, "dla", 2, lh, N_LH, err));
        HS_CHECK(add(r, 0, "dla_mlp", 1, lh, n_l, err));
        HS_CHECK(add(r, 0, "dla_rest", 0, NULL, NULL, err));
        HS_CHECK(add(r, 0, "metric", 0, NULL, NULL, err));
        if (e->by_position && e->positions != HS_CONFIG_POSITIONS_LAST) { /* each position's own, before the mean */
            const int64_t tlh[3] = {T, L, H};
            const char *n_tlh[3] = {"position", "layer", "head"};
            HS_CHECK(add(r, 0, "dla_by_pos", 3, tlh, n_tlh, err));
            HS_CHECK(add(r, 0, "metric_by_pos", 1, tlh, n_tlh, err));
        }
        break;
    }
    case HS_CONFIG_EXP_CIRCUIT_SCORES: { /* weight-only: the items are the (writer) layers */
        const int64_t hlh[3] = {H, L, H};
        const char *n_hlh[3] = {"head", "reader_layer", "reader_head"};
        r->n_items = L;
        for (int k = 0; k < HS_CONFIG_CIRCUIT_COUNT; k++) {
            if (!(e->circuits & HS_CONFIG_BIT(k))) continue;
            const int comp = k != HS_CONFIG_CIRCUIT_COPYING;
            HS_CHECK(add(r, 0, hs_config_circuit_name((hs_config_circuit)k), comp ? 3 : 1, hlh, n_hlh, err));
            r->arrays[r->n_arrays - 1].dim_names[0] = "layer";
        }
        break;
    }
    case HS_CONFIG_EXP_EDGE_ATTRIBUTION: { /* the items are batches of prompts: [U, V] per prompt is too much */
        const int64_t uv[2] = {hs_eap_n_upstream(c), hs_eap_n_downstream(c)};
        const char *n_uv[2] = {"upstream", "downstream"};
        r->n_items = (N + cfg->batch_size - 1) / cfg->batch_size;
        r->shape = *c;
        r->n_prompts = N;
        HS_CHECK(add(r, 0, "edges_sum", 2, uv, n_uv, err));
        HS_CHECK(add(r, 0, "metric_clean_sum", 0, NULL, NULL, err));
        HS_CHECK(add(r, 0, "metric_corrupt_sum", 0, NULL, NULL, err));
        for (int k = 0; k < r->n_arrays; k++) r->arrays[k].dim_names[0] = "batch";
        break;
    }
    case HS_CONFIG_EXP_CIRCUIT_FAITHFULNESS: { /* after the edge attribution it ranks by (phase 1) */
        const int64_t k[1] = {e->n_edges.n}, uv[2] = {hs_eap_n_upstream(c), hs_eap_n_downstream(c)};
        const char *n_k[1] = {"n_edges"}, *n_uv[2] = {"upstream", "downstream"};
        int64_t edges = 0;
        for (int v = 0; v < uv[1]; v++)
            for (int u = 0; u < uv[0]; u++) edges += hs_eap_is_edge(c, u, v);
        if (edges >= (int64_t)1 << 24) /* edge_rank holds each rank exactly in float32 */
            HS_FAIL(err, HS_ERR_UNSUPPORTED, "the model's graph has %lld edges, past the 2^24 ranks float32 holds",
                    (long long)edges);
        for (int i = 0; i < e->n_edges.n; i++)
            if (e->n_edges.v[i] > edges)
                HS_FAIL(err, HS_ERR_INVALID_ARG, "n_edges %d: the model's graph has %lld edges", e->n_edges.v[i],
                        (long long)edges);
        r->phase = 1;
        r->shape = *c;
        HS_CHECK(add(r, 0, "metric", 1, k, n_k, err));
        HS_CHECK(add(r, 0, "metric_clean", 0, NULL, NULL, err));
        HS_CHECK(add(r, 0, "metric_corrupt", 0, NULL, NULL, err));
        HS_CHECK(add(r, 1, "edge_rank", 2, uv, n_uv, err));
        break;
    }
    case HS_CONFIG_EXP_HEAD_IMPORTANCE:
        HS_CHECK(add(r, 0, "grad", 2, lh, N_LH, err));
        HS_CHECK(add(r, 0, "tokens", 0, NULL, NULL, err)); /* a count, exact in float32 */
        break;
    case HS_CONFIG_EXP_HEAD_SET_ABLATION: {
        const int64_t slh[3] = {1 + e->random_sets, L, H};
        const char *n_slh[3] = {"set", "layer", "head"};
        if (e->top_k > L * H)
            HS_FAIL(err, HS_ERR_INVALID_ARG, "top_k %d: the model has %d heads", e->top_k, L * H);
        if (e->random_sets > 0 && 2 * e->top_k > L * H)
            HS_FAIL(err, HS_ERR_INVALID_ARG, "top_k %d: random sets are drawn from the other %d heads, too few",
                    e->top_k, L * H - e->top_k);
        r->phase = 1;
        HS_CHECK(add(r, 0, "base", 0, NULL, NULL, err));
        HS_CHECK(add(r, 0, "metric_per_prompt", 1, slh, n_slh, err));
        HS_CHECK(add(r, 1, "sets", 3, slh, n_slh, err));
        if (e->metric == HS_CONFIG_METRIC_NEEDLE_RECALL) { /* the answers: token ids, exact in float32 */
            const int64_t sg[2] = {1 + e->random_sets, HS_RUN_RETRIEVAL_TOKENS};
            const char *n_sg[2] = {"set", "generated"};
            HS_CHECK(add(r, 0, "base_generated_tokens", 1, sg + 1, n_sg + 1, err));
            HS_CHECK(add(r, 0, "generated_tokens", 2, sg, n_sg, err));
        }
        break;
    }
    case HS_CONFIG_EXP_ACTIVATION_PATCHING:
        HS_CHECK(add(r, 0, "clean", 0, NULL, NULL, err));
        HS_CHECK(add(r, 0, "corrupt", 0, NULL, NULL, err));
        if (e->targets & HS_CONFIG_BIT(HS_CONFIG_TARGET_Z_ALL_POS)) HS_CHECK(add(r, 0, "z_all_pos", 2, lh, N_LH, err));
        if (e->targets & HS_CONFIG_BIT(HS_CONFIG_TARGET_Z_BY_POS)) HS_CHECK(add(r, 0, "z_by_pos", 3, lth, n_lth, err));
        for (int k = HS_CONFIG_TARGET_RESID_PRE; k <= HS_CONFIG_TARGET_MLP_OUT; k++) /* one cell per position */
            if (e->targets & HS_CONFIG_BIT(k)) HS_CHECK(add(r, 0, hs_config_target_name(k), 2, lt, n_lth, err));
        if (e->targets & HS_CONFIG_BIT(HS_CONFIG_TARGET_Q_ALL_POS)) HS_CHECK(add(r, 0, "q_all_pos", 2, lh, N_LH, err));
        for (int k = HS_CONFIG_TARGET_K_ALL_POS; k <= HS_CONFIG_TARGET_V_ALL_POS; k++) /* per KV head (GQA) */
            if (e->targets & HS_CONFIG_BIT(k)) HS_CHECK(add(r, 0, hs_config_target_name(k), 2, lk, n_lk, err));
        if (e->targets & HS_CONFIG_BIT(HS_CONFIG_TARGET_PATH_LOGITS))
            HS_CHECK(add(r, 0, "path_logits", 2, lh, N_LH, err));
        if (e->targets & HS_CONFIG_BIT(HS_CONFIG_TARGET_PATH_HEADS)) {
            const int nh = e->receiver_input == HS_CONFIG_RECEIVER_Q ? H : c->n_kv_heads;
            for (int i = 0; i < e->receivers.n; i++)
                if (e->receivers.v[2 * i] >= L || e->receivers.v[2 * i + 1] >= nh)
                    HS_FAIL(err, HS_ERR_INVALID_ARG, "receivers: L%dH%d is outside the model's %d layers x %d %s",
                            e->receivers.v[2 * i], e->receivers.v[2 * i + 1], L, nh,
                            e->receiver_input == HS_CONFIG_RECEIVER_Q ? "heads" : "KV heads (receiver_input k, v)");
            HS_CHECK(add(r, 0, "path_heads", 2, lh, N_LH, err));
        }
        break;
    default: st = hs_err_set(err, HS_ERR_UNSUPPORTED, "experiment type %s", hs_config_exp_type_name(e->type));
    }
exit:
    if (st) hs_err_prefix(err, "experiment '%s'", e->name);
    return st;
}

void hs_run_part_cols(const hs_run_exp *r, const hs_run_array *a, int g, int64_t *c0, int64_t *c1) {
    if (r->parts <= 1 || !a->split || a->ndim < 1) { /* whole rows, written by part 0 alone */
        *c0 = 0, *c1 = g == 0 || r->parts <= 1 ? a->per : 0;
        return;
    }
    const int64_t A = a->dims[0], stride = a->per / A;
    *c0 = g * A / r->parts * stride;
    *c1 = (g + 1) * A / r->parts * stride;
}

hs_status hs_run_alloc(hs_run_exp *r, hs_err *err) {
    for (int k = 0; k < r->n_arrays + r->n_consts; k++) {
        hs_run_array *a = k < r->n_arrays ? &r->arrays[k] : &r->consts[k - r->n_arrays];
        int64_t rows = k < r->n_arrays ? r->hi - r->lo : 1, n = rows * a->per;
        free(a->data);
        if (!(a->data = malloc((size_t)(n > 0 ? n : 1) * sizeof(float))))
            return hs_err_set(err, HS_ERR_OOM, "out of memory for %s (%lld floats)", a->name, (long long)n);
        for (int64_t i = 0; i < n; i++) a->data[i] = NAN;
    }
    return HS_OK;
}

void hs_run_exp_free(hs_run_exp *r) {
    if (!r) return;
    for (int k = 0; k < r->n_arrays; k++) free(r->arrays[k].data);
    for (int k = 0; k < r->n_consts; k++) free(r->consts[k].data);
    free(r->arrays), free(r->consts), free(r->items), free(r->mean_z), free(r->select), free(r->resample_src);
    hs_circuit_free(r->circuit);
    memset(r, 0, sizeof *r);
}

hs_run_array *hs_run_find(const hs_run_exp *r, const char *name) {
    for (int k = 0; k < r->n_arrays; k++)
        if (!strcmp(r->arrays[k].name, name)) return &r->arrays[k];
    for (int k = 0; k < r->n_consts; k++)
        if (!strcmp(r->consts[k].name, name)) return &r->consts[k];
    return NULL;
}
