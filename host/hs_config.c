/* hs_config: defaults, enum names and freeing of the plain config structs.
 * Loading lives in hs_config_load.c, checks in hs_config_check.c, canonical
 * YAML in hs_config_emit.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_forward.h"
#include "hs_config_internal.h"

/* Capture hooks reuse the forward pass's numbering (hs_config.h promises it). */
_Static_assert((int)HS_CONFIG_HOOK_RESID_PRE == (int)HS_HOOK_RESID_PRE, "hook order");
_Static_assert((int)HS_CONFIG_HOOK_PATTERN == (int)HS_HOOK_PATTERN, "hook order");
_Static_assert((int)HS_CONFIG_HOOK_Z == (int)HS_HOOK_Z, "hook order");
_Static_assert((int)HS_CONFIG_HOOK_MLP_PRE_LINEAR == (int)HS_HOOK_MLP_PRE_LINEAR, "hook order");
_Static_assert((int)HS_CONFIG_HOOK_RESID_POST == (int)HS_HOOK_RESID_POST, "hook order");
_Static_assert((int)HS_CONFIG_HOOK_RESULT == (int)HS_HOOK_COUNT, "hook order");

static const char *name_of(const char *const *names, int n, int v) {
    return v >= 0 && v < n ? names[v] : "?";
}
const char *hs_config_exp_type_name(hs_config_exp_type t) {
    return name_of(hs_cfg_exp_type_names, HS_CONFIG_EXP_COUNT, (int)t);
}
const char *hs_config_dataset_kind_name(hs_config_dataset_kind k) {
    return name_of(hs_cfg_dataset_kind_names, HS_CONFIG_DATASET_COUNT, (int)k);
}
const char *hs_config_metric_name(hs_config_metric m) {
    return name_of(hs_cfg_metric_names, HS_CONFIG_METRIC_COUNT, (int)m);
}
const char *hs_config_positions_name(hs_config_positions p) {
    return name_of(hs_cfg_positions_names, 4, (int)p);
}
const char *hs_config_mode_name(hs_config_mode m) { return name_of(hs_cfg_mode_names, 6, (int)m); }
const char *hs_config_mean_over_name(hs_config_mean_over m) {
    return name_of(hs_cfg_mean_over_names, 3, (int)m);
}
const char *hs_config_method_name(hs_config_method m) { return name_of(hs_cfg_method_names, 2, (int)m); }
const char *hs_config_target_name(hs_config_target t) {
    return name_of(hs_cfg_target_names, HS_CONFIG_TARGET_COUNT, (int)t);
}
const char *hs_config_receiver_input_name(hs_config_receiver_input r) {
    return name_of(hs_cfg_receiver_input_names, 3, (int)r);
}
const char *hs_config_score_name(hs_config_score s) {
    return name_of(hs_cfg_score_names, HS_CONFIG_SCORE_COUNT, (int)s);
}
const char *hs_config_circuit_name(hs_config_circuit c) {
    return name_of(hs_cfg_circuit_names, HS_CONFIG_CIRCUIT_COUNT, (int)c);
}
const char *hs_config_hook_name(hs_config_hook h) {
    return name_of(hs_cfg_hook_names, HS_CONFIG_HOOK_COUNT, (int)h);
}

hs_config hs_config_default_params(void) {
    hs_config c;
    memset(&c, 0, sizeof c);
    c.device.kind = HS_CONFIG_DEVICE_CPU;
    c.dtype = HS_DTYPE_F32;
    c.seed = 0;
    c.batch_size = 8;
    c.threads = 0; /* all cores */
    c.backward_memory_mb = (int)(HS_BACKWARD_KEEP_BYTES >> 20);
    c.dataset = hs_config_dataset_default_params(HS_CONFIG_DATASET_FILE);
    return c;
}

hs_config_dataset hs_config_dataset_default_params(hs_config_dataset_kind kind) {
    hs_config_dataset d;
    memset(&d, 0, sizeof d);
    d.kind = kind;
    d.n = 64;
    d.seq_len = kind == HS_CONFIG_DATASET_TEXT ? 512 : 50; /* Olsson et al.: a few dozen random tokens per half */
    d.token_min = 100; /* skip the lowest ids: byte and special tokens in BPE vocabularies */
    d.token_max = 20000;
    d.templates = HS_CONFIG_IOI_ALL;
    d.depths.n = 3;
    d.depths.v[0] = 0.1;
    d.depths.v[1] = 0.5;
    d.depths.v[2] = 0.9;
    d.lengths.n = 2;
    d.lengths.v[0] = 512;
    d.lengths.v[1] = 1024;
    d.max_len = 0; /* the model's context */
    return d;
}

/* The metric's natural read positions: loss and KL average over the sequence,
 * answer-based metrics read the final position. */
static hs_config_positions default_positions(hs_config_metric m) {
    return m == HS_CONFIG_METRIC_LOSS || m == HS_CONFIG_METRIC_KL ? HS_CONFIG_POSITIONS_ALL
                                                                  : HS_CONFIG_POSITIONS_LAST;
}

hs_config_experiment hs_config_experiment_default_params(hs_config_exp_type type) {
    hs_config_experiment e;
    memset(&e, 0, sizeof e);
    e.type = type;
    e.metric = type == HS_CONFIG_EXP_ACTIVATION_PATCHING || type == HS_CONFIG_EXP_DLA ||
                       type == HS_CONFIG_EXP_EDGE_ATTRIBUTION || type == HS_CONFIG_EXP_CIRCUIT_FAITHFULNESS
                   ? HS_CONFIG_METRIC_LOGIT_DIFF
                   : HS_CONFIG_METRIC_LOSS;
    e.positions = default_positions(e.metric);
    e.mode = HS_CONFIG_MODE_ZERO;
    e.scale = 0.0;
    e.mean_over = HS_CONFIG_MEAN_OVER_DATASET;
    e.layers.all = 1;
    e.heads.all = 1;
    e.prompts.all = 1;
    e.targets = HS_CONFIG_BIT(HS_CONFIG_TARGET_Z_ALL_POS);
    e.qk_fix = 1;
    e.scores = HS_CONFIG_BIT(HS_CONFIG_SCORE_PREVIOUS_TOKEN) |
               HS_CONFIG_BIT(HS_CONFIG_SCORE_DUPLICATE_TOKEN) |
               HS_CONFIG_BIT(HS_CONFIG_SCORE_INDUCTION);
    e.step = 0.1; /* Michel et al. prune 10% of heads per step */
    e.top_k = 10;
    e.random_sets = 10;
    e.split_layers = 1;
    e.hooks = HS_CONFIG_BIT(HS_CONFIG_HOOK_Z) | HS_CONFIG_BIT(HS_CONFIG_HOOK_PATTERN);
    e.circuits = HS_CONFIG_BIT(HS_CONFIG_CIRCUIT_COUNT) - 1u;
    e.fold_norms = 1;
    e.ig_steps = 1;
    e.absolute = 1; /* Hanna et al. rank edges by |score| */
    return e;
}

hs_config_positions hs_cfg_default_positions(hs_config_metric m) { return default_positions(m); }

static void free_fields(const hs_cfg_key *table, int n, void *base) {
    for (int i = 0; i < n; i++)
        if (table[i].kind != HS_CFG_V_SECTION) hs_cfg_clear_value(&table[i], base);
}

void hs_config_free(hs_config *c) {
    if (!c) return;
    for (int i = 0; i < c->n_experiments; i++)
        free_fields(hs_cfg_exp_keys, HS_EK_COUNT, &c->experiments[i]);
    free(c->experiments);
    free_fields(hs_cfg_dataset_keys, HS_DK_COUNT, &c->dataset);
    free_fields(hs_cfg_top_keys, HS_TK_COUNT, c);
    free(c);
}

int hs_cfg_key_find(const hs_cfg_key *table, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(table[i].name, name)) return i;
    return -1;
}

void hs_cfg_key_list(const hs_cfg_key *table, int n, unsigned mask, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && len < cap; i++) {
        if (mask && table[i].applies && !(table[i].applies & mask)) continue;
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", table[i].name);
    }
}
