/* hs_config: YAML sweep configs -> plain typed structs. A config names the
 * model, the prompt dataset (a JSONL file or a built-in generator), the
 * experiments with their parameters, and where results go. Unknown keys and
 * bad values are errors naming FILE:LINE:COL and the key; `--set key=value`
 * overrides are validated exactly like file values. The resolved config
 * (defaults filled in, overrides applied) is emitted as canonical YAML, which
 * the engine stores in its output. Schema and examples: configs/. */
#ifndef HS_CONFIG_H
#define HS_CONFIG_H

#include <stdint.h>

#include "headsweep/hs_status.h"
#include "headsweep/hs_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HS_CONFIG_BIT(x) (1u << (unsigned)(x))
#define HS_CONFIG_MAX_DEVICES 64 /* CUDA device ids 0..63 */
#define HS_CONFIG_MAX_LIST 64    /* depths, lengths */

typedef enum {
    HS_CONFIG_DEVICE_CPU = 0,
    HS_CONFIG_DEVICE_CUDA,     /* the ids listed in hs_config_device.ids ("cuda" = cuda:0) */
    HS_CONFIG_DEVICE_CUDA_ALL, /* "all": every visible GPU, decided at run time */
} hs_config_device_kind;

typedef struct {
    hs_config_device_kind kind;
    int n;                          /* HS_CONFIG_DEVICE_CUDA: number of ids (>= 1) */
    int ids[HS_CONFIG_MAX_DEVICES]; /* distinct, sorted ascending */
} hs_config_device;

/* "i/n": this process runs shard i of n (0 <= i < n). set = 0 (YAML null):
 * the driver takes it from the Slurm environment at run time. */
typedef struct {
    int set, index, count;
} hs_config_shard;

/* An index set: all = 1 means every index (n = 0, v = NULL); otherwise n >= 1
 * distinct indices >= 0 in v (heap, sorted ascending). Upper bounds (layers,
 * heads, prompts of the model and dataset) are checked at run time. */
typedef struct {
    int all, n;
    int *v;
} hs_config_ints;

typedef struct {
    int n;
    int v[HS_CONFIG_MAX_LIST]; /* sorted ascending, distinct */
} hs_config_int_list;

typedef struct {
    int n;
    double v[HS_CONFIG_MAX_LIST]; /* sorted ascending, distinct */
} hs_config_f64_list;

/* Heads named "L<layer>H<head>" in YAML: n distinct (layer, head) pairs,
 * interleaved in v in the order given. */
typedef struct {
    int n;
    int v[2 * HS_CONFIG_MAX_LIST];
} hs_config_heads;

typedef enum {
    HS_CONFIG_DATASET_FILE = 0, /* JSONL prompts (issue 3 format) */
    HS_CONFIG_DATASET_IOI,
    HS_CONFIG_DATASET_INDUCTION,
    HS_CONFIG_DATASET_NEEDLE,
    HS_CONFIG_DATASET_TEXT, /* a corpus cut into perplexity windows */
    HS_CONFIG_DATASET_COUNT
} hs_config_dataset_kind;

typedef enum {
    HS_CONFIG_IOI_ALL = 0, /* BABA and ABBA */
    HS_CONFIG_IOI_BABA,
    HS_CONFIG_IOI_ABBA,
} hs_config_ioi_templates;

/* Which fields are meaningful depends on kind (see configs/ and the
 * resolved YAML, which lists exactly those). Paths have '~' expanded; a
 * relative path is relative to the working directory of the run. */
typedef struct {
    hs_config_dataset_kind kind;
    char *file;                 /* FILE: JSONL path (heap) */
    int n;                      /* IOI, INDUCTION: prompts to generate, 1..10^7 (64) */
    int seq_len;                /* INDUCTION: random tokens per half (50); TEXT: tokens per window (512) */
    int token_min, token_max;   /* INDUCTION: ids drawn from [token_min, token_max) (100, 20000) */
    hs_config_ioi_templates templates; /* IOI (all) */
    char *haystack;             /* NEEDLE: haystack text file (heap, required) */
    char *needle, *question;    /* NEEDLE: needle sentence and question (heap, required) */
    char *answer;               /* NEEDLE: each prompt's one-token answer, e.g. " eat" (heap; NULL = none) */
    hs_config_f64_list depths;  /* NEEDLE: insertion depths in [0, 1] ({0.1, 0.5, 0.9}) */
    hs_config_int_list lengths; /* NEEDLE: context lengths in tokens ({512, 1024}) */
    char *corpus;               /* TEXT: the text file (heap, required) */
    int windows;                /* TEXT: at most this many windows, from the start; 0 = all (0) */
    int window_bos;             /* TEXT: each window opens with BOS (0: one BOS opens the corpus) */
    int max_len;                /* longer prompts are refused; 0 = the model's context (0) */
} hs_config_dataset;

typedef enum {
    HS_CONFIG_EXP_HEAD_ABLATION = 0,
    HS_CONFIG_EXP_ACTIVATION_PATCHING,
    HS_CONFIG_EXP_HEAD_SCORES,
    HS_CONFIG_EXP_PRUNING_CURVE,
    HS_CONFIG_EXP_CAPTURE,
    HS_CONFIG_EXP_HEAD_SET_ABLATION, /* the top-k heads of a ranking together vs random k-head sets */
    HS_CONFIG_EXP_HEAD_IMPORTANCE,   /* Michel et al.'s gradient importance (hs_head_grad.h) */
    HS_CONFIG_EXP_DLA,               /* direct logit attribution (hs_dla.h) */
    HS_CONFIG_EXP_CIRCUIT_SCORES,    /* weight-only composition and copying scores (hs_circuit.h) */
    HS_CONFIG_EXP_EDGE_ATTRIBUTION,  /* edge attribution patching, EAP and EAP-IG (hs_eap.h) */
    HS_CONFIG_EXP_CIRCUIT_FAITHFULNESS, /* the metric with only the strongest edges intact (hs_eap_circuit) */
    HS_CONFIG_EXP_COUNT
} hs_config_exp_type;

typedef enum {
    HS_CONFIG_METRIC_LOSS = 0,
    HS_CONFIG_METRIC_LOGPROB,
    HS_CONFIG_METRIC_LOGIT_DIFF,
    HS_CONFIG_METRIC_KL,
    HS_CONFIG_METRIC_ACCURACY,
    HS_CONFIG_METRIC_NEEDLE_RECALL, /* head_set_ablation on needle prompts: greedy generation under the ablation */
    HS_CONFIG_METRIC_LOGIT,         /* logit(answer) after the last token */
    HS_CONFIG_METRIC_COUNT
} hs_config_metric;

typedef enum {
    HS_CONFIG_POSITIONS_ALL = 0,
    HS_CONFIG_POSITIONS_LAST,
    HS_CONFIG_POSITIONS_ANSWER,
    HS_CONFIG_POSITIONS_SECOND_HALF, /* loss over the second copy of [BOS] x x prompts (Olsson et al.) */
} hs_config_positions;

typedef enum { /* DESIGN.md §2 */
    HS_CONFIG_MODE_ZERO = 0,
    HS_CONFIG_MODE_SCALE,
    HS_CONFIG_MODE_MEAN,
    HS_CONFIG_MODE_RESAMPLE,
    HS_CONFIG_MODE_PATCH,
    HS_CONFIG_MODE_UNIFORM,
} hs_config_mode;

typedef enum {
    HS_CONFIG_MEAN_OVER_DATASET = 0,
    HS_CONFIG_MEAN_OVER_POSITION,
    HS_CONFIG_MEAN_OVER_TEMPLATE,
} hs_config_mean_over;

typedef enum { /* activation_patching: how each cell is computed */
    HS_CONFIG_METHOD_EXACT = 0,   /* one patched forward per cell (prefix reuse, batched) */
    HS_CONFIG_METHOD_ATTRIBUTION, /* attribution patching: the first-order estimate, one backward per batch */
} hs_config_method;

typedef enum { /* activation_patching path_heads: the receivers' input the paths end in */
    HS_CONFIG_RECEIVER_Q = 0,
    HS_CONFIG_RECEIVER_K, /* receivers name KV heads */
    HS_CONFIG_RECEIVER_V, /* receivers name KV heads */
} hs_config_receiver_input;

typedef enum { /* activation_patching targets; bits in hs_config_experiment.targets */
    HS_CONFIG_TARGET_Z_ALL_POS = 0, /* -> [L, H] */
    HS_CONFIG_TARGET_Z_BY_POS,      /* -> [L, T, H] */
    HS_CONFIG_TARGET_RESID_PRE,     /* -> [L, T] */
    HS_CONFIG_TARGET_ATTN_OUT,      /* -> [L, T] */
    HS_CONFIG_TARGET_MLP_OUT,       /* -> [L, T] */
    HS_CONFIG_TARGET_Q_ALL_POS,     /* -> [L, H] */
    HS_CONFIG_TARGET_K_ALL_POS,     /* -> [L, H_kv] */
    HS_CONFIG_TARGET_V_ALL_POS,     /* -> [L, H_kv] */
    HS_CONFIG_TARGET_PATH_LOGITS,   /* -> [L, H]: path patching to the logits, method exact */
    HS_CONFIG_TARGET_PATH_HEADS,    /* -> [L, H]: path patching to the receivers' input, method exact */
    HS_CONFIG_TARGET_COUNT
} hs_config_target;

typedef enum { /* head_scores; bits in hs_config_experiment.scores */
    HS_CONFIG_SCORE_PREVIOUS_TOKEN = 0,
    HS_CONFIG_SCORE_DUPLICATE_TOKEN,
    HS_CONFIG_SCORE_INDUCTION,
    HS_CONFIG_SCORE_OLSSON_INDUCTION, /* needs the induction generator */
    HS_CONFIG_SCORE_RETRIEVAL,        /* needs the needle generator */
    HS_CONFIG_SCORE_COUNT
} hs_config_score;

typedef enum { /* circuit_scores; bits in hs_config_experiment.circuits */
    HS_CONFIG_CIRCUIT_Q_COMPOSITION = 0, /* the values of hs_circuit_comp, checked at compile time */
    HS_CONFIG_CIRCUIT_K_COMPOSITION,
    HS_CONFIG_CIRCUIT_V_COMPOSITION,
    HS_CONFIG_CIRCUIT_COPYING,
    HS_CONFIG_CIRCUIT_COUNT
} hs_config_circuit;

/* capture hooks; bits in hs_config_experiment.hooks. All but the last have
 * the values of hs_hook_point (hs_forward.h), checked at compile time. */
typedef enum {
    HS_CONFIG_HOOK_RESID_PRE = 0,
    HS_CONFIG_HOOK_Q,
    HS_CONFIG_HOOK_K,
    HS_CONFIG_HOOK_V,
    HS_CONFIG_HOOK_ROT_Q,
    HS_CONFIG_HOOK_ROT_K,
    HS_CONFIG_HOOK_PATTERN,
    HS_CONFIG_HOOK_Z,
    HS_CONFIG_HOOK_ATTN_OUT,
    HS_CONFIG_HOOK_RESID_MID,
    HS_CONFIG_HOOK_MLP_PRE,
    HS_CONFIG_HOOK_MLP_PRE_LINEAR, /* gated MLPs only */
    HS_CONFIG_HOOK_MLP_POST,
    HS_CONFIG_HOOK_MLP_OUT,
    HS_CONFIG_HOOK_RESID_POST,
    HS_CONFIG_HOOK_RESULT, /* [B, T, H, d_model]: memory-heavy */
    HS_CONFIG_HOOK_COUNT
} hs_config_hook;

/* pruning_curve importance and head_set_ablation ranking: exactly one of
 * experiment (a head_ablation or head_importance of this config; for
 * head_set_ablation also a head_scores experiment, whose first listed score
 * ranks) or file + dataset ("FILE.h5:/group/dataset", [layer, head]).
 * Larger = more important. */
typedef struct {
    char *experiment;
    char *file, *dataset;
} hs_config_importance; /* also circuit_faithfulness's edges_from: an edge_attribution, or [upstream, downstream] */

/* One experiment. Fields that do not apply to its type (or, for scale and
 * mean_over, to its mode) hold their defaults and are ignored. */
typedef struct {
    char *name;                 /* [A-Za-z0-9_-]+, unique; the HDF5 group name (heap) */
    hs_config_exp_type type;
    hs_config_metric metric;    /* ablation, patching, pruning, head_importance (loss: Michel et al.),
                                   edge_attribution (logit_diff, logprob, loss; kl with ig_steps > 1),
                                   direct_logit_attribution (logit_diff, its only one) */
    hs_config_positions positions; /* where the metric reads; default all for loss/kl, else last */
    hs_config_mode mode;        /* ablation, pruning (zero) */
    double scale;               /* mode scale (0.0) */
    hs_config_mean_over mean_over; /* mode mean (dataset) */
    hs_config_ints layers, heads;  /* ablation, patching, scores, capture (all) */
    int whole_layers;           /* ablation: also ablate whole layers */
    int all_but_one;            /* ablation: Michel all-but-one-head per layer */
    hs_config_method method;    /* patching (exact) */
    int qk_fix;                 /* patching with method attribution: q and k cells by AtP*'s QK fix (true) */
    int grad_drop;              /* patching with method attribution: AtP*'s GradDrop, unsigned cells (false) */
    unsigned targets;           /* patching: HS_CONFIG_BIT(hs_config_target) set (z_all_pos) */
    hs_config_heads receivers;  /* patching with target path_heads (required) */
    hs_config_receiver_input receiver_input; /* patching with target path_heads (q) */
    unsigned scores;            /* head_scores: HS_CONFIG_BIT(hs_config_score) set */
    hs_config_importance importance; /* pruning (required) */
    double step;                /* pruning: fraction of heads per step, (0, 1] (0.1) */
    int recompute;              /* pruning: recompute the importance (a head_importance) after each
                                   step with the pruned heads masked */
    unsigned hooks;             /* capture: HS_CONFIG_BIT(hs_config_hook) set ({z, pattern}) */
    hs_config_ints prompts;     /* capture (all) */
    int top_k;                  /* head_set_ablation: heads in each set (10) */
    int random_sets;            /* head_set_ablation: random sets of top_k heads to compare with (10) */
    int split_layers;           /* head_ablation: units per prompt chunk, each sweeping a group of
                                   layers, so a sweep shards over more tasks than it has prompt
                                   chunks (1; at most n_layers is used) */
    int by_position;            /* direct_logit_attribution with positions all / second_half: also each
                                   position's values before the mean, [prompt, position, layer, head] (false) */
    unsigned circuits;          /* circuit_scores: HS_CONFIG_BIT(hs_config_circuit) set (all four) */
    int fold_norms;             /* circuit_scores: TransformerLens's processed weights (true) */
    int ig_steps;               /* edge_attribution: 1 = EAP, m > 1 = EAP-IG with m steps (1) */
    hs_config_importance edges_from; /* circuit_faithfulness (required): the edge scores that rank the
                                   edges, an edge_attribution experiment of this config or
                                   "FILE.h5:/group/edges" ([upstream, downstream]) */
    hs_config_int_list n_edges; /* circuit_faithfulness (required): each circuit's size, the strongest edges */
    int absolute;               /* circuit_faithfulness: rank by |score| (true), else by score, largest first */
} hs_config_experiment;

typedef struct {
    char *model;             /* path, HF id or GGUF (heap, required) */
    hs_config_device device; /* cpu */
    hs_dtype dtype;          /* HS_DTYPE_F32 or HS_DTYPE_BF16 */
    uint64_t seed;           /* 0 */
    int batch_size;          /* rows per forward, 1..65536 (8) */
    int threads;             /* CPU threads, 0 = all (0) */
    int backward_memory_mb;  /* backend memory a backward pass may keep activations in, MiB; 0 = rerun
                                each layer instead (2048; hs_session_set_backward_keep_bytes) */
    char *output;            /* result file (heap, required) */
    int overwrite;           /* replace an existing output */
    hs_config_shard shard;
    hs_config_dataset dataset;
    int n_experiments;       /* >= 1 */
    hs_config_experiment *experiments; /* heap */
} hs_config;

/* Defaults of the plain fields (no heap memory is allocated: strings are
 * NULL, index sets are "all"). An experiment's metric, mode and positions
 * depend on its type; scores default to the TransformerLens detectors. */
hs_config hs_config_default_params(void);
hs_config_dataset hs_config_dataset_default_params(hs_config_dataset_kind kind);
hs_config_experiment hs_config_experiment_default_params(hs_config_exp_type type);

/* Loads and validates the YAML file at path, then applies overrides[0..n)
 * in order ("key=value": batch_size=16, dataset.n=100, experiments.0.metric=kl,
 * experiments.NAME.mode=mean; the value is a YAML scalar or flow sequence,
 * "null" restores the default). Every problem is reported as
 * "PATH:LINE:COL: what" or "--set KEY=VALUE: what".
 * Returns HS_ERR_IO (unreadable file), HS_ERR_FORMAT (YAML syntax, unknown key,
 * wrong type or value), HS_ERR_MISSING (required key absent),
 * HS_ERR_INVALID_ARG (malformed override), HS_ERR_OOM. On success *out is a
 * new config the caller frees with hs_config_free; on failure *out is NULL. */
hs_status hs_config_load(const char *path, const char *const *overrides, int n_overrides,
                         hs_config **out, hs_err *err);

/* Same for YAML text held in memory (the resolved config stored in a result
 * file); name stands for the file in messages. */
hs_status hs_config_load_text(const char *text, const char *name, hs_config **out, hs_err *err);

/* Frees every heap member and c itself. NULL is a no-op. */
void hs_config_free(hs_config *c);

/* The resolved config as canonical YAML: every key that applies (defaults
 * included), in schema order, one fixed spelling per value, so equal configs
 * give byte-identical text and loading the text gives the same config.
 * *text is heap (caller frees). */
hs_status hs_config_resolved_yaml(const hs_config *c, char **text, hs_err *err);

/* Same without the keys that place a run rather than define it (device,
 * threads, backward_memory_mb, output, overwrite, shard): shards of one sweep give the same text,
 * so its hash identifies the sweep. */
hs_status hs_config_sweep_yaml(const hs_config *c, char **text, hs_err *err);

/* Static names of enum values as spelled in YAML ("head_ablation", "loss", ...);
 * "?" for out-of-range values. */
const char *hs_config_exp_type_name(hs_config_exp_type t);
const char *hs_config_dataset_kind_name(hs_config_dataset_kind k); /* "file", "ioi", ... */
const char *hs_config_metric_name(hs_config_metric m);
const char *hs_config_positions_name(hs_config_positions p);
const char *hs_config_mode_name(hs_config_mode m);
const char *hs_config_mean_over_name(hs_config_mean_over m);
const char *hs_config_method_name(hs_config_method m);
const char *hs_config_target_name(hs_config_target t);
const char *hs_config_receiver_input_name(hs_config_receiver_input r);
const char *hs_config_score_name(hs_config_score s);
const char *hs_config_hook_name(hs_config_hook h);
const char *hs_config_circuit_name(hs_config_circuit c);

#ifdef __cplusplus
}
#endif
#endif
