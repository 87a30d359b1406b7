/* hs_h5: result files (HDF5; layout in docs/hdf5-schema.md).
 *
 * Writing is atomic: hs_h5_create writes into a temporary sibling
 * "FINAL.tmp-<pid>", hs_h5_commit flushes, fsyncs and renames it to FINAL, and
 * hs_h5_abort deletes it. A crash leaves at most a *.tmp-* file, never a
 * half-written FINAL. Files are written whole at the end of a run (per-batch
 * progress goes to hs_journal), so the HDF5 file itself need not survive a
 * crash mid-write.
 *
 * Layout: provenance as root attributes; one group per experiment; inside a
 * group, datasets whose named dimensions are HDF5 dimension scales: a
 * coordinate dataset per dimension name (0..n-1, int64) created on first use
 * and shared by every dataset of the group, so netCDF tools and xarray
 * (engine="h5netcdf") see named dimensions.
 *
 * Errors: every function returns an hs_status and fills err with a message
 * naming the file, group and dataset (plus HDF5's most specific reason).
 * HDF5's automatic error printing is switched off for the duration of each
 * call and restored before returning. The serial HDF5 build keeps that switch,
 * and all of its state, per process: use hs_h5 from one thread at a time.
 *
 * Signals: none of these functions is async-signal-safe. A SIGINT/SIGTERM
 * handler sets a flag and the main loop calls hs_h5_abort; a handler that must
 * exit at once may unlink(hs_h5_temp_path(f)) (unlink is signal-safe) and
 * _exit. */
#ifndef HS_H5_H
#define HS_H5_H

#include <stdint.h>

#include "headsweep/hs_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HS_H5_MAX_DIMS 8
#define HS_H5_NAME_MAX 256 /* group, dataset, attribute and dimension names, NUL included */
#define HS_H5_SCHEMA_VERSION 1 /* root attribute "schema_version" */
/* Datasets larger than this are chunked and compressed (shuffle + deflate 4). */
#define HS_H5_COMPRESS_MIN_BYTES (64 * 1024)

typedef struct hs_h5 hs_h5;             /* an open result file */
typedef struct hs_h5_group hs_h5_group; /* a group in it; owned by the file */

/* ---- files ------------------------------------------------------------------- */

/* Starts a result file that will appear at final_path on commit.
 * HS_ERR_INVALID_ARG if final_path exists and overwrite is 0 (the message says
 * to pass --overwrite), or if it is a directory. The temporary file is created
 * next to final_path (same directory, so the rename is atomic); HS_ERR_IO if it
 * cannot be. Writes the root attribute "schema_version". */
hs_status hs_h5_create(const char *final_path, int overwrite, hs_h5 **out, hs_err *err);

/* Closes every group, flushes and closes the file, fsyncs it, renames it to
 * final_path and fsyncs the directory. Without overwrite the final step is
 * link()+unlink() (no-replace), so a file that appeared at final_path during
 * the run is not clobbered. Always consumes f: on failure the temporary file
 * is deleted and nothing appears at final_path. */
hs_status hs_h5_commit(hs_h5 *f, hs_err *err);

/* Closes f and deletes its temporary file; for a read-only handle, closes it.
 * NULL is a no-op. */
void hs_h5_abort(hs_h5 *f);

/* The temporary file's path while writing (NULL for read-only handles). */
const char *hs_h5_temp_path(const hs_h5 *f);
/* The path given to create or open_read. */
const char *hs_h5_path(const hs_h5 *f);

/* Opens an existing HDF5 file read-only (result files, shards to merge).
 * HS_ERR_IO if it does not exist or cannot be read, HS_ERR_FORMAT if it is not
 * HDF5. */
hs_status hs_h5_open_read(const char *path, hs_h5 **out, hs_err *err);

/* Closes a read-only handle; on a write handle, same as hs_h5_abort (nothing is
 * committed). NULL is a no-op. */
void hs_h5_close(hs_h5 *f);

/* ---- provenance (root attributes) ----------------------------------------------- */

/* Plain data describing how a result was produced. Strings are borrowed for
 * the call; NULL strings are written as "" unless a default is given. */
typedef struct {
    const char *version;      /* headsweep version; NULL: this build's HS_VERSION */
    const char *git_revision; /* NULL: this build's HS_GIT_REV */
    const char *created_utc;  /* ISO-8601 UTC, "2026-05-09T07:35:25Z"; NULL: now */
    const char *config_text;  /* the resolved config; its SHA-256 is stored as config_sha256 */
    const char *model_path;   /* as the user gave it */
    const char *model_id;     /* e.g. "HuggingFaceTB/SmolLM2-135M" */
    int n_weight_files;
    const char *const *weight_files;  /* [n_weight_files] paths */
    /* [n_weight_files] 64-hex SHA-256 each; NULL (the array or an entry): computed
     * here with hs_sha256_file, which reads the whole file (seconds per GB). */
    const char *const *weight_sha256;
    int64_t n_layers, n_heads, n_kv_heads, d_model, d_head, d_mlp, n_vocab;
    int64_t parallel_attn_mlp; /* 1: attention and MLP read the same resid_pre (GPT-NeoX, GPT-J) */
    const char *device;       /* "cpu", "cuda:0 (NVIDIA H100 80GB HBM3)" */
    const char *blas_version; /* e.g. OpenBLAS config string */
    const char *cuda_version; /* runtime/driver/cuBLAS versions; NULL on CPU runs */
    /* The identities of the backends that computed the results
     * (hs_backend_identity), one per line; NULL: not written. */
    const char *computed_on;
    uint64_t seed;
} hs_h5_provenance;

/* All strings NULL, numbers 0, no weight files. */
hs_h5_provenance hs_h5_provenance_default(void);

/* Writes the root attributes listed in docs/hdf5-schema.md: headsweep_version,
 * git_revision, created_utc, config, config_sha256, model_path, model_id,
 * weights_sha256 (sha256sum format: "<hex>  <path>\n" per file), n_layers,
 * n_heads, n_kv_heads, d_model, d_head, d_mlp, n_vocab, parallel_attn_mlp, device, hdf5_version
 * (from the library), blas_version, cuda_version, seed, and computed_on when
 * given. Existing attributes of
 * the same names are replaced. HS_ERR_IO naming the weight file if hashing it
 * fails. */
hs_status hs_h5_write_provenance(hs_h5 *f, const hs_h5_provenance *p, hs_err *err);

/* ---- groups ----------------------------------------------------------------------- */

/* Opens group `name` (one path component: no '/'), creating it if the file is
 * writable and it does not exist; "/" is the root group. The handle belongs to
 * f: it stays valid until f is committed, aborted or closed, and asking again
 * for the same name returns the same handle. HS_ERR_MISSING for a missing group
 * in a read-only file. */
hs_status hs_h5_group_open(hs_h5 *f, const char *name, hs_h5_group **out, hs_err *err);

/* Lists the groups under the root, in creation order where the file tracks it
 * (files written here do), else by name. *names is a malloc'd array of *n
 * malloc'd strings: free with hs_h5_names_free. */
hs_status hs_h5_list_groups(hs_h5 *f, char ***names, int64_t *n, hs_err *err);
/* Lists the datasets of g the same way, dimension coordinates included (a
 * dataset whose name equals its only dimension's name is a coordinate). */
hs_status hs_h5_list_datasets(hs_h5_group *g, char ***names, int64_t *n, hs_err *err);
void hs_h5_names_free(char **names, int64_t n);

/* ---- attributes --------------------------------------------------------------------- */
/* On the group itself when obj is NULL or "", else on dataset obj in g. An
 * existing attribute of the same name is replaced. Strings are stored as
 * variable-length UTF-8 scalars (no size limit; h5py reads them as str),
 * integers as int64, floats as float64. */
hs_status hs_h5_attr_str(hs_h5_group *g, const char *obj, const char *key, const char *value,
                         hs_err *err);
hs_status hs_h5_attr_int(hs_h5_group *g, const char *obj, const char *key, int64_t value,
                         hs_err *err);
hs_status hs_h5_attr_f64(hs_h5_group *g, const char *obj, const char *key, double value,
                         hs_err *err);

/* Reads a scalar string attribute (variable- or fixed-length) into a malloc'd
 * string (free() it). HS_ERR_MISSING if absent, HS_ERR_FORMAT if not a string. */
/* Copies every attribute of src (group or dataset sobj) onto dst (group or
 * dataset dobj), except those whose name starts with skip_prefix (NULL: none)
 * and those dst already has. Types and shapes are kept. */
hs_status hs_h5_copy_attrs(hs_h5_group *src, const char *sobj, hs_h5_group *dst, const char *dobj,
                           const char *skip_prefix, hs_err *err);

hs_status hs_h5_read_attr_str(hs_h5_group *g, const char *obj, const char *key, char **value,
                              hs_err *err);
/* Reads a scalar integer (any width) or float attribute, converting (integers
 * out of int64 range, e.g. a uint64 seed above 2^63, clip). */
hs_status hs_h5_read_attr_int(hs_h5_group *g, const char *obj, const char *key, int64_t *value,
                              hs_err *err);
hs_status hs_h5_read_attr_f64(hs_h5_group *g, const char *obj, const char *key, double *value,
                              hs_err *err);

/* ---- datasets --------------------------------------------------------------------- */

/* Writes a new dense row-major dataset `name` in g: dims[0] outermost,
 * 0 <= ndim <= HS_H5_MAX_DIMS (0: a scalar), every dims[i] >= 0.
 * dim_names: NULL, or ndim entries, each a dimension name ("prompt", "layer",
 * "head", "position", "step", ...) or NULL for an unnamed dimension. A named
 * dimension is attached to the group's coordinate dataset of that name, created
 * on first use as int64 0..n-1. Within a group a name has one length:
 * HS_ERR_SHAPE if it was already created with another (use a distinct name,
 * e.g. "position_rrt"). A 1-D dataset named after its own dimension becomes
 * that dimension's coordinate (custom coordinate values, e.g. fractions for
 * "step"): write it before the datasets that use the dimension.
 * Datasets over HS_H5_COMPRESS_MIN_BYTES are chunked (about 512 KiB per chunk,
 * innermost dimensions kept whole) with shuffle + deflate level 4.
 * HS_ERR_INVALID_ARG if the name exists already or a name is malformed; data
 * may be NULL only when the dataset has no elements. */
hs_status hs_h5_write_f32(hs_h5_group *g, const char *name, int ndim, const int64_t *dims,
                          const char *const *dim_names, const float *data, hs_err *err);
/* Same for int32 (token ids [prompt, position] with padding, lengths [prompt]). */
hs_status hs_h5_write_i32(hs_h5_group *g, const char *name, int ndim, const int64_t *dims,
                          const char *const *dim_names, const int32_t *data, hs_err *err);
/* A 1-D variable-length UTF-8 string dataset of n strings (prompt texts [prompt]).
 * dim_name may be NULL. No entry may be NULL. */
hs_status hs_h5_write_str(hs_h5_group *g, const char *name, int64_t n, const char *dim_name,
                          const char *const *strs, hs_err *err);

/* Shape and dimension names of a dataset read back. dim_names[i] is the name
 * of the coordinate attached to dimension i ("" if none); a coordinate dataset
 * reports its own name. */
typedef struct {
    int ndim;
    int64_t dims[HS_H5_MAX_DIMS];
    char dim_names[HS_H5_MAX_DIMS][HS_H5_NAME_MAX];
} hs_h5_shape;

/* Reads a whole float dataset (any float type, converted) into a malloc'd
 * buffer (free() it; non-NULL even when empty). shape may be NULL.
 * HS_ERR_MISSING if absent, HS_ERR_FORMAT if not a float dataset,
 * HS_ERR_UNSUPPORTED beyond HS_H5_MAX_DIMS dimensions. */
hs_status hs_h5_read_f32(hs_h5_group *g, const char *name, float **data, hs_h5_shape *shape,
                         hs_err *err);
/* Same for integer datasets (any width, converted; out-of-range values clip). */
hs_status hs_h5_read_i32(hs_h5_group *g, const char *name, int32_t **data, hs_h5_shape *shape,
                         hs_err *err);
/* Reads a 1-D string dataset: *strs is a malloc'd array of *n malloc'd
 * strings, free with hs_h5_names_free. */
hs_status hs_h5_read_str(hs_h5_group *g, const char *name, char ***strs, int64_t *n, hs_err *err);
/* Shape and dimension names only. */
hs_status hs_h5_read_shape(hs_h5_group *g, const char *name, hs_h5_shape *shape, hs_err *err);

#ifdef __cplusplus
}
#endif
#endif
