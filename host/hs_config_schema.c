/* hs_config schema: the three key tables (top level, dataset, experiment) and
 * the name tables of every enum. Order here is emission order; adding a key
 * means one row here, one field in hs_config.h and, if it has a default,
 * one line in hs_config.c's default_params. */
#include <float.h>
#include <stddef.h>

#include "hs_config_internal.h"

const char *const hs_cfg_exp_type_names[] = {
    "head_ablation", "activation_patching", "head_scores", "pruning_curve", "capture", "head_set_ablation",
    "head_importance", "direct_logit_attribution", "circuit_scores", "edge_attribution",
    "circuit_faithfulness", NULL};
const char *const hs_cfg_dataset_kind_names[] = {"file", "ioi", "induction", "needle", "text", NULL};
const char *const hs_cfg_metric_names[] = {"loss",     "logprob",       "logit_diff", "kl",
                                           "accuracy", "needle_recall", "logit",      NULL};
const char *const hs_cfg_positions_names[] = {"all", "last", "answer", "second_half", NULL};
const char *const hs_cfg_mode_names[] = {"zero",  "scale",   "mean", "resample",
                                         "patch", "uniform", NULL};
const char *const hs_cfg_mean_over_names[] = {"dataset", "position", "template", NULL};
const char *const hs_cfg_method_names[] = {"exact", "attribution", NULL};
const char *const hs_cfg_target_names[] = {"z_all_pos", "z_by_pos",  "resid_pre", "attn_out", "mlp_out",
                                           "q_all_pos", "k_all_pos", "v_all_pos", "path_logits", "path_heads",
                                           NULL};
const char *const hs_cfg_receiver_input_names[] = {"q", "k", "v", NULL};
const char *const hs_cfg_score_names[] = {"previous_token",   "duplicate_token", "induction",
                                          "olsson_induction", "retrieval",       NULL};
const char *const hs_cfg_circuit_names[] = {"q_composition", "k_composition", "v_composition", "copying", NULL};
const char *const hs_cfg_hook_names[] = {
    "resid_pre", "q",         "k",       "v",              "rot_q",    "rot_k",   "pattern",    "z",
    "attn_out",  "resid_mid", "mlp_pre", "mlp_pre_linear", "mlp_post", "mlp_out", "resid_post", "result",
    NULL};
const char *const hs_cfg_templates_names[] = {"all", "baba", "abba", NULL};
/* dataset.generator: names[i] is hs_config_dataset_kind base + i */
static const char *const generator_names[] = {"ioi", "induction", "needle", "text", NULL};

#define BIT HS_CONFIG_BIT
#define T_ABL BIT(HS_CONFIG_EXP_HEAD_ABLATION)
#define T_PAT BIT(HS_CONFIG_EXP_ACTIVATION_PATCHING)
#define T_SCO BIT(HS_CONFIG_EXP_HEAD_SCORES)
#define T_PRU BIT(HS_CONFIG_EXP_PRUNING_CURVE)
#define T_CAP BIT(HS_CONFIG_EXP_CAPTURE)
#define T_SET BIT(HS_CONFIG_EXP_HEAD_SET_ABLATION)
#define T_IMP BIT(HS_CONFIG_EXP_HEAD_IMPORTANCE)
#define T_DLA BIT(HS_CONFIG_EXP_DLA)
#define T_CIR BIT(HS_CONFIG_EXP_CIRCUIT_SCORES)
#define T_EAP BIT(HS_CONFIG_EXP_EDGE_ATTRIBUTION)
#define T_FAI BIT(HS_CONFIG_EXP_CIRCUIT_FAITHFULNESS)
#define D_FILE BIT(HS_CONFIG_DATASET_FILE)
#define D_IOI BIT(HS_CONFIG_DATASET_IOI)
#define D_IND BIT(HS_CONFIG_DATASET_INDUCTION)
#define D_NEE BIT(HS_CONFIG_DATASET_NEEDLE)
#define D_TXT BIT(HS_CONFIG_DATASET_TEXT)
#define D_GEN (D_IOI | D_IND | D_NEE | D_TXT)

/* Ranges are generous sanity bounds; model-dependent limits (layer and head
 * counts, context length) are checked at run time against the model. */
#define BIG 16777216.0 /* 2^24 */

#define TOP(f) offsetof(hs_config, f)
const hs_cfg_key hs_cfg_top_keys[HS_TK_COUNT] = {
    [HS_TK_MODEL] = {"model", HS_CFG_V_PATH, TOP(model), .required = 1},
    [HS_TK_DEVICE] = {"device", HS_CFG_V_DEVICE, TOP(device)},
    [HS_TK_DTYPE] = {"dtype", HS_CFG_V_DTYPE, TOP(dtype)},
    [HS_TK_SEED] = {"seed", HS_CFG_V_U64, TOP(seed)},
    [HS_TK_BATCH_SIZE] = {"batch_size", HS_CFG_V_INT, TOP(batch_size), .min = 1, .max = 65536},
    [HS_TK_THREADS] = {"threads", HS_CFG_V_INT, TOP(threads), .min = 0, .max = 4096},
    [HS_TK_BACKWARD_MEMORY_MB] = {"backward_memory_mb", HS_CFG_V_INT, TOP(backward_memory_mb), .min = 0, .max = BIG},
    [HS_TK_OUTPUT] = {"output", HS_CFG_V_PATH, TOP(output), .required = 1},
    [HS_TK_OVERWRITE] = {"overwrite", HS_CFG_V_BOOL, TOP(overwrite)},
    [HS_TK_SHARD] = {"shard", HS_CFG_V_SHARD, TOP(shard)},
    [HS_TK_DATASET] = {"dataset", HS_CFG_V_SECTION, TOP(dataset), .required = 1},
    [HS_TK_EXPERIMENTS] = {"experiments", HS_CFG_V_SECTION, TOP(experiments), .required = 1},
};

#define DS(f) offsetof(hs_config_dataset, f)
const hs_cfg_key hs_cfg_dataset_keys[HS_DK_COUNT] = {
    [HS_DK_FILE] = {"file", HS_CFG_V_PATH, DS(file), .applies = D_FILE},
    [HS_DK_GENERATOR] = {"generator", HS_CFG_V_ENUM, DS(kind), generator_names,
                         HS_CONFIG_DATASET_IOI, .applies = D_GEN},
    [HS_DK_N] = {"n", HS_CFG_V_INT, DS(n), .min = 1, .max = 1e7, .applies = D_IOI | D_IND},
    [HS_DK_SEQ_LEN] = {"seq_len", HS_CFG_V_INT, DS(seq_len), .min = 1, .max = BIG,
                       .applies = D_IND | D_TXT},
    [HS_DK_TOKEN_MIN] = {"token_min", HS_CFG_V_INT, DS(token_min), .min = 0, .max = 1 << 30,
                         .applies = D_IND},
    [HS_DK_TOKEN_MAX] = {"token_max", HS_CFG_V_INT, DS(token_max), .min = 1, .max = 1 << 30,
                         .applies = D_IND},
    [HS_DK_TEMPLATES] = {"templates", HS_CFG_V_ENUM, DS(templates), hs_cfg_templates_names,
                         .applies = D_IOI},
    [HS_DK_HAYSTACK] = {"haystack", HS_CFG_V_PATH, DS(haystack), .applies = D_NEE, .required = 1},
    [HS_DK_NEEDLE] = {"needle", HS_CFG_V_STR, DS(needle), .applies = D_NEE, .required = 1},
    [HS_DK_QUESTION] = {"question", HS_CFG_V_STR, DS(question), .applies = D_NEE, .required = 1},
    [HS_DK_ANSWER] = {"answer", HS_CFG_V_STR, DS(answer), .applies = D_NEE},
    [HS_DK_DEPTHS] = {"depths", HS_CFG_V_F64_LIST, DS(depths), .min = 0, .max = 1,
                      .applies = D_NEE},
    [HS_DK_LENGTHS] = {"lengths", HS_CFG_V_INT_LIST, DS(lengths), .min = 1, .max = BIG,
                       .applies = D_NEE},
    [HS_DK_CORPUS] = {"corpus", HS_CFG_V_PATH, DS(corpus), .applies = D_TXT, .required = 1},
    [HS_DK_WINDOWS] = {"windows", HS_CFG_V_INT, DS(windows), .min = 0, .max = 1e7, .applies = D_TXT},
    [HS_DK_WINDOW_BOS] = {"window_bos", HS_CFG_V_BOOL, DS(window_bos), .applies = D_TXT},
    [HS_DK_MAX_LEN] = {"max_len", HS_CFG_V_INT, DS(max_len), .min = 0, .max = BIG},
};

#define EX(f) offsetof(hs_config_experiment, f)
const hs_cfg_key hs_cfg_exp_keys[HS_EK_COUNT] = {
    [HS_EK_NAME] = {"name", HS_CFG_V_NAME, EX(name), .required = 1},
    [HS_EK_TYPE] = {"type", HS_CFG_V_ENUM, EX(type), hs_cfg_exp_type_names, .required = 1},
    [HS_EK_METRIC] = {"metric", HS_CFG_V_ENUM, EX(metric), hs_cfg_metric_names,
                      .applies = T_ABL | T_PAT | T_PRU | T_SET | T_IMP | T_DLA | T_EAP | T_FAI},
    [HS_EK_POSITIONS] = {"positions", HS_CFG_V_ENUM, EX(positions), hs_cfg_positions_names,
                         .applies = T_ABL | T_PAT | T_PRU | T_SET | T_DLA},
    [HS_EK_MODE] = {"mode", HS_CFG_V_ENUM, EX(mode), hs_cfg_mode_names, .applies = T_ABL | T_PRU | T_SET},
    [HS_EK_SCALE] = {"scale", HS_CFG_V_F64, EX(scale), .min = -DBL_MAX, .max = DBL_MAX,
                     .applies = T_ABL | T_PRU | T_SET},
    [HS_EK_MEAN_OVER] = {"mean_over", HS_CFG_V_ENUM, EX(mean_over), hs_cfg_mean_over_names,
                         .applies = T_ABL | T_PRU | T_SET},
    [HS_EK_LAYERS] = {"layers", HS_CFG_V_INTS, EX(layers), .min = 0, .max = BIG,
                      .applies = T_ABL | T_PAT | T_SCO | T_CAP},
    [HS_EK_HEADS] = {"heads", HS_CFG_V_INTS, EX(heads), .min = 0, .max = BIG,
                     .applies = T_ABL | T_PAT | T_SCO | T_CAP},
    [HS_EK_WHOLE_LAYERS] = {"whole_layers", HS_CFG_V_BOOL, EX(whole_layers), .applies = T_ABL},
    [HS_EK_ALL_BUT_ONE] = {"all_but_one", HS_CFG_V_BOOL, EX(all_but_one), .applies = T_ABL},
    [HS_EK_METHOD] = {"method", HS_CFG_V_ENUM, EX(method), hs_cfg_method_names, .applies = T_PAT},
    [HS_EK_QK_FIX] = {"qk_fix", HS_CFG_V_BOOL, EX(qk_fix), .applies = T_PAT},
    [HS_EK_GRAD_DROP] = {"grad_drop", HS_CFG_V_BOOL, EX(grad_drop), .applies = T_PAT},
    [HS_EK_TARGETS] = {"targets", HS_CFG_V_ENUM_SET, EX(targets), hs_cfg_target_names,
                       .applies = T_PAT},
    [HS_EK_SCORES] = {"scores", HS_CFG_V_ENUM_SET, EX(scores), hs_cfg_score_names,
                      .applies = T_SCO},
    [HS_EK_IMPORTANCE] = {"importance", HS_CFG_V_IMPORTANCE, EX(importance), .applies = T_PRU | T_SET,
                          .required = 1},
    [HS_EK_STEP] = {"step", HS_CFG_V_F64, EX(step), .min = 0, .max = 1, .min_open = 1,
                    .applies = T_PRU},
    [HS_EK_RECOMPUTE] = {"recompute", HS_CFG_V_BOOL, EX(recompute), .applies = T_PRU},
    [HS_EK_HOOKS] = {"hooks", HS_CFG_V_ENUM_SET, EX(hooks), hs_cfg_hook_names, .applies = T_CAP},
    [HS_EK_PROMPTS] = {"prompts", HS_CFG_V_INTS, EX(prompts), .min = 0, .max = 1 << 30,
                       .applies = T_CAP},
    [HS_EK_TOP_K] = {"top_k", HS_CFG_V_INT, EX(top_k), .min = 1, .max = BIG, .applies = T_SET},
    [HS_EK_RANDOM_SETS] = {"random_sets", HS_CFG_V_INT, EX(random_sets), .min = 0, .max = 100000,
                           .applies = T_SET},
    [HS_EK_SPLIT_LAYERS] = {"split_layers", HS_CFG_V_INT, EX(split_layers), .min = 1, .max = 65536,
                            .applies = T_ABL},
    [HS_EK_RECEIVERS] = {"receivers", HS_CFG_V_HEADS, EX(receivers), .min = 0, .max = BIG, .applies = T_PAT},
    [HS_EK_RECEIVER_INPUT] = {"receiver_input", HS_CFG_V_ENUM, EX(receiver_input), hs_cfg_receiver_input_names,
                              .applies = T_PAT},
    [HS_EK_BY_POSITION] = {"by_position", HS_CFG_V_BOOL, EX(by_position), .applies = T_DLA},
    [HS_EK_CIRCUITS] = {"circuits", HS_CFG_V_ENUM_SET, EX(circuits), hs_cfg_circuit_names, .applies = T_CIR},
    [HS_EK_FOLD_NORMS] = {"fold_norms", HS_CFG_V_BOOL, EX(fold_norms), .applies = T_CIR},
    [HS_EK_IG_STEPS] = {"ig_steps", HS_CFG_V_INT, EX(ig_steps), .min = 1, .max = 1000, .applies = T_EAP},
    [HS_EK_EDGES_FROM] = {"edges_from", HS_CFG_V_IMPORTANCE, EX(edges_from), .applies = T_FAI, .required = 1},
    [HS_EK_N_EDGES] = {"n_edges", HS_CFG_V_INT_LIST, EX(n_edges), .min = 0, .max = BIG, .applies = T_FAI,
                       .required = 1},
    [HS_EK_ABSOLUTE] = {"absolute", HS_CFG_V_BOOL, EX(absolute), .applies = T_FAI},
};
