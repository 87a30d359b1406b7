/* hs_config checks across keys, run once after the file and every override
 * are read (an override may change an experiment's type, so nothing that
 * depends on another key is decided earlier): required keys, keys that do
 * not apply to a type, per-type defaults, dataset capabilities, unique names
 * and importance references. */
#include <string.h>

#include "hs_config_internal.h"

static int is_set(hs_cfg_loc l) { return l.src != HS_CFG_SRC_NONE; }

/* The later of two locations (file before overrides, then by position). */
static hs_cfg_loc later(hs_cfg_loc a, hs_cfg_loc b) {
    if (a.src != b.src) return a.src > b.src ? a : b;
    if (a.src == HS_CFG_SRC_OVERRIDE) return a.override > b.override ? a : b;
    return a.line > b.line || (a.line == b.line && a.col > b.col) ? a : b;
}

int hs_cfg_exp_key_applies(const hs_config_experiment *e, int k) {
    unsigned a = hs_cfg_exp_keys[k].applies;
    if (a && !(a & HS_CONFIG_BIT(e->type))) return 0;
    if (k == HS_EK_SCALE) return e->mode == HS_CONFIG_MODE_SCALE;
    if (k == HS_EK_MEAN_OVER) return e->mode == HS_CONFIG_MODE_MEAN;
    if (k == HS_EK_QK_FIX || k == HS_EK_GRAD_DROP) return e->method == HS_CONFIG_METHOD_ATTRIBUTION;
    if (k == HS_EK_BY_POSITION) return e->positions != HS_CONFIG_POSITIONS_LAST;
    if (k == HS_EK_RECEIVERS || k == HS_EK_RECEIVER_INPUT)
        return (e->targets & HS_CONFIG_BIT(HS_CONFIG_TARGET_PATH_HEADS)) != 0;
    return 1;
}

int hs_cfg_dataset_key_applies(const hs_config_dataset *d, int k) {
    unsigned a = hs_cfg_dataset_keys[k].applies;
    return !a || (a & HS_CONFIG_BIT(d->kind));
}

/* "ioi, induction" for a mask over names. */
static void mask_names(unsigned mask, const char *const *names, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; names[i] && len < cap; i++)
        if (mask & HS_CONFIG_BIT(i))
            len += (size_t)snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", names[i]);
}

static int has_pairs(hs_config_dataset_kind k) { /* clean/corrupt pairs, answers, templates */
    return k == HS_CONFIG_DATASET_FILE || k == HS_CONFIG_DATASET_IOI;
}

static hs_status check_dataset(const hs_cfg_ctx *ctx, hs_cfg_state *s, hs_err *err) {
    hs_status st = HS_OK;
    hs_config_dataset *d = &s->c->dataset;
    hs_cfg_loc file = s->ds[HS_DK_FILE], gen = s->ds[HS_DK_GENERATOR];
    char names[256];
    if (is_set(file) && is_set(gen))
        HS_CFG_FAIL(ctx, later(file, gen), err, HS_ERR_FORMAT,
                    "dataset: 'file' and 'generator' are mutually exclusive (give one)");
    if (!is_set(file) && !is_set(gen))
        HS_CFG_FAIL(
            ctx, s->dataset_map, err, HS_ERR_MISSING,
            "dataset: needs 'file' (JSONL prompts) or 'generator' (ioi, induction, needle, text)");
    if (is_set(file)) d->kind = HS_CONFIG_DATASET_FILE;
    hs_config_dataset def = hs_config_dataset_default_params(d->kind);
    const char *kname = hs_config_dataset_kind_name(d->kind);
    for (int k = 0; k < HS_DK_COUNT; k++) {
        const hs_cfg_key *key = &hs_cfg_dataset_keys[k];
        if (is_set(s->ds[k]) && !hs_cfg_dataset_key_applies(d, k)) {
            mask_names(key->applies, hs_cfg_dataset_kind_names, names, sizeof names);
            HS_CFG_FAIL(ctx, s->ds[k], err, HS_ERR_FORMAT,
                        "dataset.%s does not apply to %s%s (it applies to: %s)", key->name,
                        d->kind == HS_CONFIG_DATASET_FILE ? "a file dataset" : "generator ",
                        d->kind == HS_CONFIG_DATASET_FILE ? "" : kname, names);
        }
        if (is_set(s->ds[k]) || !hs_cfg_dataset_key_applies(d, k)) continue;
        if (key->required)
            HS_CFG_FAIL(ctx, s->dataset_map, err, HS_ERR_MISSING,
                        "dataset: generator %s needs '%s'", kname, key->name);
        if (key->kind != HS_CFG_V_STR && key->kind != HS_CFG_V_PATH && k != HS_DK_GENERATOR)
            hs_cfg_copy_plain(key, d, &def);
    }
    if (d->kind == HS_CONFIG_DATASET_TEXT && d->seq_len < 2)
        HS_CFG_FAIL(ctx, s->ds[HS_DK_SEQ_LEN], err, HS_ERR_FORMAT,
                    "dataset: seq_len %d: a text window needs at least 2 tokens (one prediction)", d->seq_len);
    if (d->kind == HS_CONFIG_DATASET_INDUCTION && d->token_min >= d->token_max)
        HS_CFG_FAIL(
            ctx, is_set(s->ds[HS_DK_TOKEN_MAX]) ? s->ds[HS_DK_TOKEN_MAX] : s->ds[HS_DK_TOKEN_MIN],
            err, HS_ERR_FORMAT, "dataset: token_min (%d) must be below token_max (%d)",
            d->token_min, d->token_max);
exit:
    return st;
}

/* Defaults, applicability and dataset capabilities of experiment i. */
static hs_status check_experiment(const hs_cfg_ctx *ctx, hs_cfg_state *s, int i, hs_err *err) {
    hs_status st = HS_OK;
    hs_config_experiment *e = &s->c->experiments[i];
    hs_cfg_loc *l = s->exp[i];
    hs_config_dataset_kind dk = s->c->dataset.kind;
    char names[256];
    for (int k = 0; k <= HS_EK_TYPE; k++)
        if (!is_set(l[k]))
            HS_CFG_FAIL(ctx, s->exp_map[i], err, HS_ERR_MISSING,
                        "experiments[%d]: missing required key '%s'", i, hs_cfg_exp_keys[k].name);
    const char *tname = hs_config_exp_type_name(e->type);
    hs_config_experiment def = hs_config_experiment_default_params(e->type);
    for (int k = HS_EK_TYPE + 1; k < HS_EK_COUNT; k++) {
        const hs_cfg_key *key = &hs_cfg_exp_keys[k];
        if (is_set(l[k]) && key->applies && !(key->applies & HS_CONFIG_BIT(e->type))) {
            mask_names(key->applies, hs_cfg_exp_type_names, names, sizeof names);
            HS_CFG_FAIL(ctx, l[k], err, HS_ERR_FORMAT,
                        "experiments[%d].%s does not apply to type %s (it applies to: %s)", i,
                        key->name, tname, names);
        }
        if (is_set(l[k]) || (key->applies && !(key->applies & HS_CONFIG_BIT(e->type)))) continue;
        if (key->required)
            HS_CFG_FAIL(ctx, s->exp_map[i], err, HS_ERR_MISSING,
                        "experiments[%d]: type %s needs '%s'", i, tname, key->name);
        if (key->kind != HS_CFG_V_IMPORTANCE) hs_cfg_copy_plain(key, e, &def);
    }
    /* defaults that follow other keys */
    if (!is_set(l[HS_EK_POSITIONS])) e->positions = hs_cfg_default_positions(e->metric);
    if (!is_set(l[HS_EK_SCORES]) && dk == HS_CONFIG_DATASET_INDUCTION)
        e->scores |= HS_CONFIG_BIT(HS_CONFIG_SCORE_OLSSON_INDUCTION);
    if (!is_set(l[HS_EK_SCORES]) && dk == HS_CONFIG_DATASET_NEEDLE)
        e->scores = HS_CONFIG_BIT(HS_CONFIG_SCORE_RETRIEVAL);

    if (is_set(l[HS_EK_SCALE]) && !hs_cfg_exp_key_applies(e, HS_EK_SCALE))
        HS_CFG_FAIL(ctx, l[HS_EK_SCALE], err, HS_ERR_FORMAT,
                    "experiments[%d].scale only applies with mode scale (mode is %s)", i,
                    hs_config_mode_name(e->mode));
    if (is_set(l[HS_EK_QK_FIX]) && !hs_cfg_exp_key_applies(e, HS_EK_QK_FIX))
        HS_CFG_FAIL(ctx, l[HS_EK_QK_FIX], err, HS_ERR_FORMAT,
                    "experiments[%d].qk_fix only applies with method attribution (method is %s)", i,
                    hs_config_method_name(e->method));
    if (is_set(l[HS_EK_BY_POSITION]) && !hs_cfg_exp_key_applies(e, HS_EK_BY_POSITION))
        HS_CFG_FAIL(ctx, l[HS_EK_BY_POSITION], err, HS_ERR_FORMAT,
                    "experiments[%d].by_position only applies with positions all or second_half (positions is %s)", i,
                    hs_config_positions_name(e->positions));
    if (is_set(l[HS_EK_GRAD_DROP]) && !hs_cfg_exp_key_applies(e, HS_EK_GRAD_DROP))
        HS_CFG_FAIL(ctx, l[HS_EK_GRAD_DROP], err, HS_ERR_FORMAT,
                    "experiments[%d].grad_drop only applies with method attribution (method is %s)", i,
                    hs_config_method_name(e->method));
    for (int k = HS_CONFIG_TARGET_PATH_LOGITS; k <= HS_CONFIG_TARGET_PATH_HEADS; k++)
        if (e->method == HS_CONFIG_METHOD_ATTRIBUTION && (e->targets & HS_CONFIG_BIT(k)))
            HS_CFG_FAIL(ctx, l[HS_EK_TARGETS], err, HS_ERR_FORMAT,
                        "experiments[%d].targets: %s needs method exact (attribution has no estimate of it)", i,
                        hs_config_target_name((hs_config_target)k));
    for (int k = HS_EK_RECEIVERS; k <= HS_EK_RECEIVER_INPUT; k++)
        if (is_set(l[k]) && !hs_cfg_exp_key_applies(e, k))
            HS_CFG_FAIL(ctx, l[k], err, HS_ERR_FORMAT, "experiments[%d].%s only applies with target path_heads", i,
                        hs_cfg_exp_keys[k].name);
    if (hs_cfg_exp_key_applies(e, HS_EK_RECEIVERS) && !is_set(l[HS_EK_RECEIVERS]))
        HS_CFG_FAIL(ctx, l[HS_EK_TARGETS], err, HS_ERR_MISSING,
                    "experiments[%d].targets: path_heads needs 'receivers' (heads like L9H6)", i);
    if (is_set(l[HS_EK_MEAN_OVER]) && !hs_cfg_exp_key_applies(e, HS_EK_MEAN_OVER))
        HS_CFG_FAIL(ctx, l[HS_EK_MEAN_OVER], err, HS_ERR_FORMAT,
                    "experiments[%d].mean_over only applies with mode mean (mode is %s)", i,
                    hs_config_mode_name(e->mode));

    /* what the dataset must provide */
    const char *dname = hs_config_dataset_kind_name(dk);
    if ((e->type == HS_CONFIG_EXP_ACTIVATION_PATCHING || e->type == HS_CONFIG_EXP_EDGE_ATTRIBUTION ||
         e->type == HS_CONFIG_EXP_CIRCUIT_FAITHFULNESS) &&
        !has_pairs(dk))
        HS_CFG_FAIL(ctx, l[HS_EK_TYPE], err, HS_ERR_FORMAT,
                    "experiments[%d]: %s needs clean/corrupt pairs: a file "
                    "dataset or the ioi generator (dataset is %s)",
                    i, tname, dname);
    if (hs_cfg_exp_key_applies(e, HS_EK_MODE) && e->mode == HS_CONFIG_MODE_PATCH && !has_pairs(dk))
        HS_CFG_FAIL(ctx, l[HS_EK_MODE], err, HS_ERR_FORMAT,
                    "experiments[%d].mode: patch needs corrupt prompts: a file dataset or the ioi "
                    "generator (dataset is %s)",
                    i, dname);
    if (hs_cfg_exp_key_applies(e, HS_EK_MEAN_OVER) &&
        e->mean_over == HS_CONFIG_MEAN_OVER_TEMPLATE && !has_pairs(dk))
        HS_CFG_FAIL(ctx, l[HS_EK_MEAN_OVER], err, HS_ERR_FORMAT,
                    "experiments[%d].mean_over: template needs templated prompts: a file dataset "
                    "or the ioi generator (dataset is %s)",
                    i, dname);
    if (hs_cfg_exp_key_applies(e, HS_EK_METRIC) && e->metric == HS_CONFIG_METRIC_LOGIT_DIFF &&
        !has_pairs(dk))
        HS_CFG_FAIL(ctx, is_set(l[HS_EK_METRIC]) ? l[HS_EK_METRIC] : l[HS_EK_TYPE], err,
                    HS_ERR_FORMAT,
                    "experiments[%d].metric: logit_diff needs answers and "
                    "distractors: a file dataset or the ioi generator (dataset is %s)",
                    i, dname);
    if (hs_cfg_exp_key_applies(e, HS_EK_POSITIONS) && e->positions == HS_CONFIG_POSITIONS_ANSWER &&
        (dk == HS_CONFIG_DATASET_INDUCTION || dk == HS_CONFIG_DATASET_TEXT))
        HS_CFG_FAIL(ctx, l[HS_EK_POSITIONS], err, HS_ERR_FORMAT,
                    "experiments[%d].positions: the %s generator has no answers", i, dname);
    const int needle = dk == HS_CONFIG_DATASET_NEEDLE,
              no_answers = dk == HS_CONFIG_DATASET_INDUCTION || dk == HS_CONFIG_DATASET_TEXT ||
                           (needle && !s->c->dataset.answer);
    /* direct logit attribution over positions scores each position's next token, no answer */
    const int next_tokens = e->type == HS_CONFIG_EXP_DLA && e->positions != HS_CONFIG_POSITIONS_LAST;
    if (hs_cfg_exp_key_applies(e, HS_EK_METRIC) && no_answers && !next_tokens &&
        (e->metric == HS_CONFIG_METRIC_LOGPROB || e->metric == HS_CONFIG_METRIC_ACCURACY ||
         e->metric == HS_CONFIG_METRIC_LOGIT))
        HS_CFG_FAIL(ctx, is_set(l[HS_EK_METRIC]) ? l[HS_EK_METRIC] : l[HS_EK_TYPE], err, HS_ERR_FORMAT,
                    "experiments[%d].metric: %s needs each prompt's answer token: a file dataset, the ioi "
                    "generator or the needle generator with 'answer' (dataset is %s%s)",
                    i, hs_config_metric_name(e->metric), dname, needle ? " without 'answer'" : "");
    if (hs_cfg_exp_key_applies(e, HS_EK_METRIC) && e->metric == HS_CONFIG_METRIC_NEEDLE_RECALL) {
        const hs_cfg_loc at = is_set(l[HS_EK_METRIC]) ? l[HS_EK_METRIC] : l[HS_EK_TYPE];
        if (e->type != HS_CONFIG_EXP_HEAD_SET_ABLATION)
            HS_CFG_FAIL(ctx, at, err, HS_ERR_FORMAT,
                        "experiments[%d].metric: needle_recall is greedy generation under a set of ablated heads: "
                        "type head_set_ablation only (type is %s)", i, tname);
        if (dk != HS_CONFIG_DATASET_NEEDLE && dk != HS_CONFIG_DATASET_FILE)
            HS_CFG_FAIL(ctx, at, err, HS_ERR_FORMAT,
                        "experiments[%d].metric: needle_recall needs needle prompts: the needle generator or a file "
                        "with needle_start/needle_len (dataset is %s)", i, dname);
        if (e->mode != HS_CONFIG_MODE_ZERO && e->mode != HS_CONFIG_MODE_SCALE && e->mode != HS_CONFIG_MODE_UNIFORM)
            HS_CFG_FAIL(ctx, is_set(l[HS_EK_MODE]) ? l[HS_EK_MODE] : at, err, HS_ERR_FORMAT,
                        "experiments[%d].mode: needle_recall takes zero, scale or uniform (mode %s sets z per "
                        "position of the prompt, which generated tokens do not have)", i,
                        hs_config_mode_name(e->mode));
    }
    if (hs_cfg_exp_key_applies(e, HS_EK_POSITIONS) && e->positions == HS_CONFIG_POSITIONS_SECOND_HALF &&
        (e->metric != HS_CONFIG_METRIC_LOSS || e->type != HS_CONFIG_EXP_HEAD_SET_ABLATION) &&
        (e->metric != HS_CONFIG_METRIC_LOGIT || e->type != HS_CONFIG_EXP_DLA))
        HS_CFG_FAIL(ctx, l[HS_EK_POSITIONS], err, HS_ERR_FORMAT,
                    "experiments[%d].positions: second_half is the loss of a head_set_ablation, or the next "
                    "tokens' logits of a direct_logit_attribution (metric logit), over the repeated half of "
                    "[BOS] x x prompts", i);
    if (e->type == HS_CONFIG_EXP_HEAD_SCORES) {
        if ((e->scores & HS_CONFIG_BIT(HS_CONFIG_SCORE_OLSSON_INDUCTION)) &&
            dk != HS_CONFIG_DATASET_INDUCTION)
            HS_CFG_FAIL(ctx, l[HS_EK_SCORES], err, HS_ERR_FORMAT,
                        "experiments[%d].scores: olsson_induction needs the induction generator "
                        "(dataset is %s)",
                        i, dname);
        if ((e->scores & HS_CONFIG_BIT(HS_CONFIG_SCORE_RETRIEVAL)) &&
            dk != HS_CONFIG_DATASET_NEEDLE && dk != HS_CONFIG_DATASET_FILE)
            HS_CFG_FAIL(ctx, l[HS_EK_SCORES], err, HS_ERR_FORMAT,
                        "experiments[%d].scores: retrieval needs needle prompts: the needle generator or a "
                        "file with needle_start/needle_len (dataset is %s)",
                        i, dname);
    }
exit:
    return st;
}

/* Unique names; pruning importance names a head_ablation of this config, edges_from an
 * edge_attribution. */
static hs_status check_references(const hs_cfg_ctx *ctx, hs_cfg_state *s, hs_err *err) {
    hs_status st = HS_OK;
    hs_config *c = s->c;
    for (int i = 0; i < c->n_experiments; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(c->experiments[i].name, c->experiments[j].name))
                HS_CFG_FAIL(ctx, hs_cfg_at_value(s->exp[i][HS_EK_NAME]), err, HS_ERR_FORMAT,
                            "experiments[%d].name: '%s' is already used by experiments[%d]", i,
                            c->experiments[i].name, j);
    for (int i = 0; i < c->n_experiments; i++) { /* edges_from names an edge_attribution */
        const hs_config_experiment *e = &c->experiments[i];
        if (e->type != HS_CONFIG_EXP_CIRCUIT_FAITHFULNESS || !e->edges_from.experiment) continue;
        int j = 0;
        while (j < c->n_experiments && strcmp(c->experiments[j].name, e->edges_from.experiment)) j++;
        if (j == c->n_experiments || c->experiments[j].type != HS_CONFIG_EXP_EDGE_ATTRIBUTION)
            HS_CFG_FAIL(ctx, hs_cfg_at_value(s->exp[i][HS_EK_EDGES_FROM]), err, HS_ERR_FORMAT,
                        "experiments[%d].edges_from: '%s' is %s; experiment '%s' needs an edge_attribution "
                        "experiment of this config, or FILE.h5:/group/edges",
                        i, e->edges_from.experiment, j == c->n_experiments ? "no experiment of this config"
                        : hs_config_exp_type_name(c->experiments[j].type), e->name);
    }
    for (int i = 0; i < c->n_experiments; i++) {
        const hs_config_experiment *e = &c->experiments[i];
        if (e->type != HS_CONFIG_EXP_PRUNING_CURVE && e->type != HS_CONFIG_EXP_HEAD_SET_ABLATION) continue;
        hs_cfg_loc at = hs_cfg_at_value(s->exp[i][HS_EK_IMPORTANCE]);
        if (!e->importance.experiment) {
            if (e->recompute)
                HS_CFG_FAIL(ctx, s->exp[i][HS_EK_RECOMPUTE], err, HS_ERR_FORMAT,
                            "experiments[%d].recompute needs importance from an experiment of "
                            "this config, not a file",
                            i);
            continue;
        }
        const char *slash = strchr(e->importance.experiment, '/');
        const size_t nlen = slash ? (size_t)(slash - e->importance.experiment) : strlen(e->importance.experiment);
        int j = 0;
        while (j < c->n_experiments && (strlen(c->experiments[j].name) != nlen ||
                                        strncmp(c->experiments[j].name, e->importance.experiment, nlen)))
            j++;
        if (j == c->n_experiments)
            HS_CFG_FAIL(ctx, at, err, HS_ERR_FORMAT,
                        "experiments[%d].importance: no experiment named '%.*s' in this config "
                        "(experiment '%s' needs it)",
                        i, (int)nlen, e->importance.experiment, e->name);
        if (slash) {
            int k = 0;
            while (hs_cfg_score_names[k] && strcmp(hs_cfg_score_names[k], slash + 1)) k++;
            if (c->experiments[j].type != HS_CONFIG_EXP_HEAD_SCORES || e->type != HS_CONFIG_EXP_HEAD_SET_ABLATION ||
                !hs_cfg_score_names[k] || !(c->experiments[j].scores & HS_CONFIG_BIT(k)))
                HS_CFG_FAIL(ctx, at, err, HS_ERR_FORMAT,
                            "experiments[%d].importance: '%s' must name a score that head_scores experiment "
                            "'%.*s' computes (and only a head_set_ablation ranks by one)",
                            i, e->importance.experiment, (int)nlen, e->importance.experiment);
            continue;
        }
        const hs_config_exp_type tj = c->experiments[j].type;
        if (e->recompute && tj != HS_CONFIG_EXP_HEAD_IMPORTANCE)
            HS_CFG_FAIL(ctx, s->exp[i][HS_EK_RECOMPUTE], err, HS_ERR_FORMAT,
                        "experiments[%d].recompute recomputes the gradient importance with the pruned heads masked: "
                        "importance must name a head_importance experiment ('%s' is a %s)",
                        i, c->experiments[j].name, hs_config_exp_type_name(tj));
        if (tj != HS_CONFIG_EXP_HEAD_ABLATION && tj != HS_CONFIG_EXP_HEAD_IMPORTANCE &&
            (e->type == HS_CONFIG_EXP_PRUNING_CURVE || tj != HS_CONFIG_EXP_HEAD_SCORES))
            HS_CFG_FAIL(ctx, at, err, HS_ERR_FORMAT,
                        "experiments[%d].importance: '%s' is a %s experiment; experiment '%s' "
                        "needs a head_ablation or head_importance%s",
                        i, c->experiments[j].name, hs_config_exp_type_name(tj), e->name,
                        e->type == HS_CONFIG_EXP_PRUNING_CURVE ? "" : " or head_scores");
    }
exit:
    return st;
}

hs_status hs_cfg_resolve(const hs_cfg_ctx *ctx, hs_cfg_state *s, hs_err *err) {
    hs_status st = HS_OK;
    hs_config def = hs_config_default_params();
    for (int k = 0; k < HS_TK_COUNT; k++) {
        const hs_cfg_key *key = &hs_cfg_top_keys[k];
        if (is_set(s->top[k])) continue;
        if (key->required)
            HS_CFG_FAIL(ctx, s->root, err, HS_ERR_MISSING, "missing required key '%s'", key->name);
        hs_cfg_copy_plain(key, s->c, &def);
    }
    HS_CHECK(check_dataset(ctx, s, err));
    for (int i = 0; i < s->c->n_experiments; i++) HS_CHECK(check_experiment(ctx, s, i, err));
    HS_CHECK(check_references(ctx, s, err));
exit:
    return st;
}
