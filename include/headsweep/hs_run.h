/* hs_run: executes a sweep config end to end: model, backend, dataset, every
 * experiment, one HDF5 result file (written under a temporary name and
 * renamed when complete; see docs/hdf5-schema.md).
 *
 * Sharding: shard i of n runs a contiguous range of every experiment's units
 * of work and writes a shard file; hs_run_merge combines the n shard files
 * into the file an unsharded run writes, bit for bit. Resume: each completed
 * unit is appended to a journal beside the output ("OUTPUT.journal"); a rerun
 * of the same config and shard skips what the journal holds. */
#ifndef HS_RUN_H
#define HS_RUN_H

#include <stddef.h>

#include "headsweep/hs_config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    /* Called as work completes (units are experiment-specific: prompts, steps).
     * A nonzero return stops the run: nothing is written, the temporary file
     * is removed, and hs_run returns HS_ERR_INVALID_ARG "interrupted". */
    int (*progress)(void *user, const char *experiment, int done, int total);
    void *progress_user;
    /* Workers (threads, each with its own backend) per device: the CPU, or
     * each listed GPU; 0 = 1. Exercises the one-worker-per-GPU path on one
     * device: the CPU without a GPU, or a machine with a single GPU. */
    int workers_per_device;
} hs_run_params;

hs_run_params hs_run_default_params(void);

/* Runs cfg. config_text is the resolved YAML stored in the output.
 * Returns HS_ERR_INTERRUPTED when progress asked to stop: the units completed
 * so far are in the journal and no result file was written. */
hs_status hs_run(const hs_config *cfg, const char *config_text, const hs_run_params *p, hs_err *err);

/* This process's shard: cfg->shard when set, else SLURM_ARRAY_TASK_ID minus
 * SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT, else SLURM_PROCID of
 * SLURM_NTASKS, else 0 of 1. HS_ERR_INVALID_ARG for inconsistent variables. */
hs_status hs_run_shard(const hs_config *cfg, int *index, int *count, hs_err *err);

/* The file shard index of count writes: cfg->output when count is 1, else
 * "<output without .h5>.shard-00002-of-00003.h5". */
void hs_run_shard_path(const hs_config *cfg, int index, int count, char *out, size_t n);

/* Merges shard files (any order) into out, which an unsharded run of the same
 * sweep would have written. Refuses, writing nothing, when a shard is missing,
 * repeated, unreadable or from another sweep; the message lists what is wrong. */
hs_status hs_run_merge(const char *out, const char *const *shards, int n, int overwrite, hs_err *err);

#ifdef __cplusplus
}
#endif
#endif
