/* State shared by the run driver (hs_run.c), its experiment steps
 * (hs_run_units.c, hs_run_capture.c), the result writers (hs_run_write.c) and
 * shard files and merging (hs_run_shard.c).
 *
 * A run is planned as units of work: each experiment runs over items (its
 * prompts, or for capture its selected prompts), cut into units of a fixed
 * number of items that depends only on the config and the model. A unit run on
 * its own computes exactly what the whole run computes for its items, so a
 * shard (a contiguous range of units) and a resumed run give the same bits as
 * an uninterrupted single process. Every result is kept per item; reductions
 * are computed from the per-item values, in item order, when the final file is
 * written (by the run itself, or by merge). */
#ifndef HS_RUN_INTERNAL_H
#define HS_RUN_INTERNAL_H

#include <pthread.h>

#include "headsweep/hs_ablation.h"
#include "headsweep/hs_dataset.h"
#include "headsweep/hs_eap.h"
#include "headsweep/hs_h5.h"
#include "headsweep/hs_journal.h"
#include "headsweep/hs_run.h"

#define HS_RUN_MAX_DIMS 4
#define HS_RUN_RETRIEVAL_TOKENS 32 /* greedy tokens per needle prompt: the retrieval score, needle_recall */
#define HS_RUN_COMPUTED_ON_MAX 4096

/* One float32 result array: rows of `per` floats, one row per item this
 * process holds (items [lo, hi) of its experiment), or one row for a constant. */
typedef struct {
    char name[HS_H5_NAME_MAX];
    int ndim;                                   /* axes after the item axis */
    int64_t dims[HS_RUN_MAX_DIMS];
    const char *dim_names[HS_RUN_MAX_DIMS + 1]; /* [0] = "prompt"; static strings */
    int64_t per;                                /* floats per row */
    int split;  /* 1: a unit of part g of G writes only the columns of the layer group
                   [g*dims[0]/G, (g+1)*dims[0]/G) along the first axis; 0: part 0 writes
                   whole rows (the others compute the same values and drop them) */
    float *data;
} hs_run_array;

typedef struct {
    int phase;           /* 0, or 1 = after every phase-0 experiment (pruning curves) */
    int n_items;         /* items of the whole sweep */
    int unit;            /* items per chunk of items (run only; 0 in merge) */
    int parts;           /* units per chunk (>= 1): a unit is (chunk u / parts, part u % parts) */
    int64_t n_units;
    int64_t u_lo, u_hi;  /* this shard's units */
    int lo, hi;          /* this shard's items */
    int64_t batch0;      /* journal batch id of unit u_lo */
    int n_arrays, n_consts;
    hs_run_array *arrays; /* per-item results, [hi - lo] rows each */
    hs_run_array *consts; /* one row each, the same in every shard (pruning masks) */
    int32_t *items;      /* capture: the prompt index of each item; else NULL (item = prompt) */
    float *mean_z;       /* mean ablation: the whole dataset's mean z [L, H, T, d_head] (per template:
                            [n_templates, L, H, T, d_head]) */
    int n_templates;     /* mean_over template */
    int32_t *resample_src; /* resample, patch: each prompt's source prompt [N] in source */
    hs_prompts source;   /* resample: the dataset; patch: its corrupted prompts */
    uint8_t *select;     /* [L, H] heads swept, NULL = all */
    struct hs_circuit *circuit; /* circuit_scores: the heads' factors (hs_circuit.h), made once */
    hs_model_config shape; /* edge_attribution, circuit_faithfulness: the model's shape, which their graph
                              follows (hs_eap.h) */
    int n_prompts;         /* edge_attribution: the prompts its items (batches) hold */
    int64_t units_done;  /* progress */
    int started;         /* a worker has taken one of its units in this run */
} hs_run_exp;

typedef struct {
    hs_backend *be;
    hs_session *session;
} hs_run_worker;

typedef struct {
    const hs_config *cfg;
    const hs_run_params *rp;
    hs_model *model;
    hs_dataset *data;
    hs_prompts prompts;
    hs_run_exp *exps; /* [cfg->n_experiments] */
    int shard_index, shard_count;
    char ident[320];          /* hs_backend_identity of this run's workers */
    char computed_on[HS_RUN_COMPUTED_ON_MAX]; /* identities that computed the results (hs_run_computed_on_add) */
    /* shared by the workers, under lock */
    pthread_mutex_t lock;
    hs_journal *journal;
    int stop;             /* progress asked to stop */
    hs_status failed;     /* the first worker error */
    hs_err failed_err;
} hs_run_ctx;

/* ---- planning (hs_run_plan.c): what an experiment produces ---------------- */

/* Declares experiment exp's result arrays (rows not allocated) and n_items,
 * from the config and model shape alone, so merge can plan without a model. */
hs_status hs_run_plan(const hs_config *cfg, int exp, const hs_model_config *c, int N, int T, hs_run_exp *r,
                      hs_err *err);
/* Columns [*c0, *c1) of a row of a that part g of r->parts writes. */
void hs_run_part_cols(const hs_run_exp *r, const hs_run_array *a, int g, int64_t *c0, int64_t *c1);
/* Allocates rows [lo, hi) of every array (NaN-filled) and one row per constant. */
hs_status hs_run_alloc(hs_run_exp *r, hs_err *err);
void hs_run_exp_free(hs_run_exp *r);
/* The array named name, or NULL. */
hs_run_array *hs_run_find(const hs_run_exp *r, const char *name);
/* [L, H] selection from an experiment's layers/heads lists; NULL = all. */
hs_status hs_run_head_selection(const hs_config_experiment *e, int L, int H, uint8_t **out, hs_err *err);
/* Per-item shape of a captured hook (axes after the item axis) and its
 * TransformerLens name ("blocks.3.attn.hook_z"). */
int hs_run_hook_dims(hs_hook_point p, const hs_model_config *c, int T, int64_t *dims, const char **names);
void hs_run_hook_name(char *out, size_t n, hs_hook_point p, int layer);
/* A higher importance means a more important head: +1 for loss and KL, else -1. */
float hs_run_importance_sign(hs_config_metric m);

/* ---- experiment steps (hs_run_units.c, hs_run_capture.c) ------------------ */

/* An edge_attribution experiment's parameters (hs_eap.h). */
hs_eap_params hs_run_eap_params(const hs_config *cfg, const hs_config_experiment *e);
/* Items per unit of experiment exp (depends on config and model only). */
int hs_run_unit_size(const hs_run_ctx *x, int exp);
/* Work done once before the units of exp run: the constants every shard
 * writes (pruning masks), and, when this process has units of exp left to
 * run (pending), their inputs (the mean z). */
hs_status hs_run_prepare(hs_run_ctx *x, int exp, hs_run_worker *w, int pending, hs_err *err);
/* Computes part g of items [i0, i0 + n) of exp into its arrays (the part's
 * columns, hs_run_part_cols). */
hs_status hs_run_unit(hs_run_ctx *x, int exp, hs_run_worker *w, int i0, int n, int g, hs_err *err);
hs_status hs_run_capture_unit(hs_run_ctx *x, int exp, hs_run_worker *w, int i0, int n, hs_err *err);
/* Called from inside a unit: nonzero when the run must stop. */
int hs_run_should_stop(hs_run_ctx *x, int exp);

/* ---- units of work (hs_run_work.c) ---------------------------------------- */

/* Plans every experiment (hs_run_plan), its units and this shard's range of
 * them, and allocates its rows; *n_batches: the shard's units, which the
 * journal numbers in experiment order. */
hs_status hs_run_plan_units(hs_run_ctx *x, int64_t *n_batches, hs_err *err);
/* hs_journal_visit_fn: puts a journaled unit back into the arrays, and adds
 * the identity of the backend that computed it to x->computed_on. */
hs_status hs_run_replay(void *user, int64_t batch, const void *payload, size_t len, hs_err *err);
/* Runs every unit of the phase's experiments that the journal lacks, on
 * workers w[0..nw), after their hs_run_prepare. */
hs_status hs_run_phase(hs_run_ctx *x, int phase, hs_run_worker *w, int nw, hs_err *err);

/* ---- result groups (hs_run_write.c): reductions from per-item values ------ */

/* Writes exp's group of a final result file from all of its items. */
hs_status hs_run_write(const hs_config *cfg, int exp, const hs_run_exp *r, hs_h5_group *g, hs_err *err);
/* Mean over the first n rows of a, in row order (the same sum however the
 * rows were sharded): out [a->per]. */
void hs_run_mean_items(const hs_run_array *a, int n, float *out);
/* The mean edge scores [U, V] of a finished edge_attribution, NaN where no
 * edge: the values its result file holds. */
void hs_run_eap_mean(const hs_run_exp *r, float *mean);
/* importance [L, H] (larger = more important) from a finished head_ablation. */
void hs_run_importance(const hs_config_experiment *e, const hs_run_exp *r, float *out);
/* Michel's importance of a finished head_importance: raw (may be NULL) and
 * per-layer normalised [L, H] (the ranking), from every item's gradient. */
hs_status hs_run_grad_importance(const hs_run_exp *r, float *raw, float *norm, hs_err *err);

/* ---- files (hs_run_shard.c) ------------------------------------------------ */

/* Adds ident to list (one identity per line, in order of first use) unless
 * it is there already; an identity that does not fit is not dropped
 * silently: the list then ends with a line "(more; the list is full)". */
void hs_run_computed_on_add(char *list, size_t n, const char *ident);
/* Provenance and dataset group of a result or shard file. */
hs_status hs_run_write_header(hs_run_ctx *x, hs_h5 *f, const char *config_text, const char *device, hs_err *err);
/* Writes this shard's items of every experiment (and the shard attributes). */
hs_status hs_run_write_shard(hs_run_ctx *x, hs_h5 *f, const char *sweep_sha, hs_err *err);

#endif
