/* hs_config internals shared by the loader (hs_config.c), the schema and
 * value parsers (hs_config_schema.c), the checks (hs_config_check.c) and the
 * emitter (hs_config_emit.c). The schema is three key tables; everything
 * that walks keys (parsing, "expected one of", applicability, emission
 * order) walks these tables, so a key is added in one place. */
#ifndef HS_CONFIG_INTERNAL_H
#define HS_CONFIG_INTERNAL_H

#include <stddef.h>

#include "headsweep/hs_config.h"

struct fy_node;
struct fy_diag;

/* Where a value came from: the file (line:col of the key and of its value,
 * 1-based) or override k. Messages use line:col; hs_cfg_at_value moves it to
 * the value (for "'abl' is already used" rather than "name: ..."). */
typedef enum { HS_CFG_SRC_NONE = 0, HS_CFG_SRC_FILE, HS_CFG_SRC_OVERRIDE } hs_cfg_src;
typedef struct {
    hs_cfg_src src;
    int line, col, override;
    int vline, vcol;
} hs_cfg_loc;

static inline hs_cfg_loc hs_cfg_at_value(hs_cfg_loc l) {
    if (l.src == HS_CFG_SRC_FILE && l.vline > 0) {
        l.line = l.vline;
        l.col = l.vcol;
    }
    return l;
}

typedef struct {
    const char *path;             /* the config file (messages) */
    const char *const *overrides; /* as given (messages) */
    struct fy_diag *diag;         /* collects libfyaml errors; locates nodes */
    hs_cfg_loc cur;               /* FILE while reading the file, else the override */
} hs_cfg_ctx;

typedef enum {
    HS_CFG_V_SECTION,    /* dataset / experiments: handled by the loader */
    HS_CFG_V_STR,        /* char *, non-empty */
    HS_CFG_V_PATH,       /* char *, '~' expanded */
    HS_CFG_V_NAME,       /* char *, [A-Za-z0-9_-]+ */
    HS_CFG_V_ENUM,       /* int: index in names + base */
    HS_CFG_V_BOOL,       /* int */
    HS_CFG_V_INT,        /* int in [min, max] */
    HS_CFG_V_U64,        /* uint64_t */
    HS_CFG_V_F64,        /* double in [min, max] (min excluded if min_open) */
    HS_CFG_V_INTS,       /* hs_config_ints: "all" or a list of ints in [min, max] */
    HS_CFG_V_INT_LIST,   /* hs_config_int_list */
    HS_CFG_V_F64_LIST,   /* hs_config_f64_list */
    HS_CFG_V_ENUM_SET,   /* unsigned bit set over names */
    HS_CFG_V_DEVICE,     /* hs_config_device */
    HS_CFG_V_DTYPE,      /* hs_dtype: f32 | bf16 */
    HS_CFG_V_SHARD,      /* hs_config_shard */
    HS_CFG_V_IMPORTANCE, /* hs_config_importance */
    HS_CFG_V_HEADS,      /* hs_config_heads */
} hs_cfg_vkind;

typedef struct {
    const char *name;
    hs_cfg_vkind kind;
    size_t off;               /* of the field in its struct */
    const char *const *names; /* ENUM, ENUM_SET: value names, NULL-terminated */
    int base;                 /* ENUM: value of names[0] */
    double min, max;          /* INT, F64 and list items: range */
    int min_open;             /* F64: min itself is out of range */
    unsigned applies;         /* bits of experiment types / dataset kinds; 0 = all */
    int required;
} hs_cfg_key;

/* Key indices = table order = emission order. */
enum {
    HS_TK_MODEL,
    HS_TK_DEVICE,
    HS_TK_DTYPE,
    HS_TK_SEED,
    HS_TK_BATCH_SIZE,
    HS_TK_THREADS,
    HS_TK_BACKWARD_MEMORY_MB,
    HS_TK_OUTPUT,
    HS_TK_OVERWRITE,
    HS_TK_SHARD,
    HS_TK_DATASET,
    HS_TK_EXPERIMENTS,
    HS_TK_COUNT
};
enum {
    HS_DK_FILE,
    HS_DK_GENERATOR,
    HS_DK_N,
    HS_DK_SEQ_LEN,
    HS_DK_TOKEN_MIN,
    HS_DK_TOKEN_MAX,
    HS_DK_TEMPLATES,
    HS_DK_HAYSTACK,
    HS_DK_NEEDLE,
    HS_DK_QUESTION,
    HS_DK_ANSWER,
    HS_DK_DEPTHS,
    HS_DK_LENGTHS,
    HS_DK_CORPUS,
    HS_DK_WINDOWS,
    HS_DK_WINDOW_BOS,
    HS_DK_MAX_LEN,
    HS_DK_COUNT
};
enum {
    HS_EK_NAME,
    HS_EK_TYPE,
    HS_EK_METRIC,
    HS_EK_POSITIONS,
    HS_EK_MODE,
    HS_EK_SCALE,
    HS_EK_MEAN_OVER,
    HS_EK_LAYERS,
    HS_EK_HEADS,
    HS_EK_WHOLE_LAYERS,
    HS_EK_ALL_BUT_ONE,
    HS_EK_TARGETS,
    HS_EK_SCORES,
    HS_EK_IMPORTANCE,
    HS_EK_STEP,
    HS_EK_RECOMPUTE,
    HS_EK_HOOKS,
    HS_EK_PROMPTS,
    HS_EK_TOP_K,
    HS_EK_RANDOM_SETS,
    HS_EK_SPLIT_LAYERS,
    HS_EK_METHOD,
    HS_EK_QK_FIX,
    HS_EK_GRAD_DROP,
    HS_EK_RECEIVERS,
    HS_EK_RECEIVER_INPUT,
    HS_EK_BY_POSITION,
    HS_EK_CIRCUITS,
    HS_EK_FOLD_NORMS,
    HS_EK_IG_STEPS,
    HS_EK_EDGES_FROM,
    HS_EK_N_EDGES,
    HS_EK_ABSOLUTE,
    HS_EK_COUNT
};

extern const hs_cfg_key hs_cfg_top_keys[HS_TK_COUNT];
extern const hs_cfg_key hs_cfg_dataset_keys[HS_DK_COUNT];
extern const hs_cfg_key hs_cfg_exp_keys[HS_EK_COUNT];

/* Value-name tables (NULL-terminated), shared with the name functions. */
extern const char *const hs_cfg_exp_type_names[];
extern const char *const hs_cfg_dataset_kind_names[];
extern const char *const hs_cfg_metric_names[];
extern const char *const hs_cfg_positions_names[];
extern const char *const hs_cfg_mode_names[];
extern const char *const hs_cfg_mean_over_names[];
extern const char *const hs_cfg_target_names[];
extern const char *const hs_cfg_receiver_input_names[];
extern const char *const hs_cfg_method_names[];
extern const char *const hs_cfg_score_names[];
extern const char *const hs_cfg_hook_names[];
extern const char *const hs_cfg_circuit_names[];
extern const char *const hs_cfg_templates_names[];

/* Loader state: the config being built plus where each key was set. */
typedef struct {
    hs_config *c;
    hs_cfg_loc root; /* the top-level mapping */
    hs_cfg_loc top[HS_TK_COUNT];
    hs_cfg_loc dataset_map; /* the dataset mapping (or its key) */
    hs_cfg_loc ds[HS_DK_COUNT];
    hs_cfg_loc *exp_map;            /* [n_experiments] each experiment's mapping */
    hs_cfg_loc (*exp)[HS_EK_COUNT]; /* [n_experiments][HS_EK_COUNT] */
} hs_cfg_state;

/* Records "LOC: message" in err: "PATH:LINE:COL: " or "--set KV: ". */
hs_status hs_cfg_fail(const hs_cfg_ctx *ctx, hs_cfg_loc loc, hs_err *err, hs_status code,
                      const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* HS_FAIL with a located message: HS_CFG_FAIL(ctx, loc, err, code, fmt, ...). */
#define HS_CFG_FAIL(...)                                                                           \
    do {                                                                                           \
        st = hs_cfg_fail(__VA_ARGS__);                                                             \
        goto exit;                                                                                 \
    } while (0)

/* Location of node (1-based line:col) in the file, or the override being
 * applied; fallback when node is NULL. */
hs_cfg_loc hs_cfg_node_loc(const hs_cfg_ctx *ctx, struct fy_node *node, hs_cfg_loc fallback);

/* Parses val (NULL or YAML null: resets the field to zero/NULL) into the
 * field of base described by k. what names it in messages ("experiments[0].metric").
 * Frees what the field held before. */
hs_status hs_cfg_set_value(const hs_cfg_ctx *ctx, const hs_cfg_key *k, void *base,
                           struct fy_node *val, hs_cfg_loc at, const char *what, hs_err *err);
/* ---- scalars (hs_config_scalar.c) ---- */
/* True for a missing value or a plain null scalar (null, ~, empty). */
int hs_cfg_is_null(struct fy_node *n);
/* "a sequence", "a mapping", "null", 'text' or the string 'text' (quoted in YAML). */
const char *hs_cfg_describe(struct fy_node *n, char *buf, size_t cap);
/* The scalar's text as a heap string; NULL if not a scalar, if it holds a NUL, or OOM. */
char *hs_cfg_scalar_dup(struct fy_node *n);
/* Text of a plain (unquoted) non-empty scalar into buf; 0 otherwise. */
int hs_cfg_plain_text(struct fy_node *n, char *buf, size_t cap);
/* Whole-string decimal integer / finite decimal number; 1 on success. */
int hs_cfg_parse_i64(const char *s, long long *v);
int hs_cfg_parse_f64(const char *s, double *v);
/* [A-Za-z0-9_-]+ */
int hs_cfg_is_name(const char *s);
/* Index of s in a NULL-terminated name table, or -1; and "a, b, c" of the table. */
int hs_cfg_find_name(const char *const *names, const char *s);
void hs_cfg_join_names(const char *const *names, char *buf, size_t cap);
/* '~' or '~/...' -> $HOME...; replaces *s (heap). */
hs_status hs_cfg_expand_home(const hs_cfg_ctx *ctx, hs_cfg_loc at, const char *what, char **s,
                             hs_err *err);

/* ---- values (hs_config_value.c) ---- */
/* Frees the heap memory of one field and zeroes it. */
void hs_cfg_clear_value(const hs_cfg_key *k, void *base);
/* Copies the field of k from src to dst (plain kinds only: no heap). */
void hs_cfg_copy_plain(const hs_cfg_key *k, void *dst, const void *src);

/* Index of name in table (n keys), or -1. */
int hs_cfg_key_find(const hs_cfg_key *table, int n, const char *name);
/* "a, b, c" of the table's names that apply to mask (0 = all) into buf. */
void hs_cfg_key_list(const hs_cfg_key *table, int n, unsigned mask, char *buf, size_t cap);

/* Fills defaults for keys never set, checks required keys, applicability,
 * ranges across keys and cross-references. */
hs_status hs_cfg_resolve(const hs_cfg_ctx *ctx, hs_cfg_state *s, hs_err *err);

/* Default read positions for a metric (all for loss and kl, else last). */
hs_config_positions hs_cfg_default_positions(hs_config_metric m);

/* Whether key k of e / of d is emitted (applies to its type / kind and mode). */
int hs_cfg_exp_key_applies(const hs_config_experiment *e, int k);
int hs_cfg_dataset_key_applies(const hs_config_dataset *d, int k);

#endif
