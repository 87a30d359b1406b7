/* hs_gguf: a defensive reader for GGUF v2/v3 files (llama.cpp's model format).
 * Every count, length, offset and size is checked against the file before it
 * is used; a malformed file gives HS_ERR_FORMAT with a message naming the file
 * and the key or tensor at fault, never a crash. Tensor data is not copied:
 * pointers returned here point into the mapping and live until hs_gguf_close.
 * All multi-byte values in a GGUF file are little-endian; so is the host. */
#ifndef HS_GGUF_H
#define HS_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "headsweep/hs_status.h"
#include "headsweep/hs_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Value types of the key-value section (numbering from the GGUF spec). */
typedef enum {
    HS_GGUF_TYPE_UINT8 = 0,
    HS_GGUF_TYPE_INT8 = 1,
    HS_GGUF_TYPE_UINT16 = 2,
    HS_GGUF_TYPE_INT16 = 3,
    HS_GGUF_TYPE_UINT32 = 4,
    HS_GGUF_TYPE_INT32 = 5,
    HS_GGUF_TYPE_FLOAT32 = 6,
    HS_GGUF_TYPE_BOOL = 7,
    HS_GGUF_TYPE_STRING = 8,
    HS_GGUF_TYPE_ARRAY = 9,
    HS_GGUF_TYPE_UINT64 = 10,
    HS_GGUF_TYPE_INT64 = 11,
    HS_GGUF_TYPE_FLOAT64 = 12,
    HS_GGUF_TYPE_COUNT
} hs_gguf_type;

/* ggml tensor type numbers that headsweep can dequantise. */
enum {
    HS_GGML_TYPE_F32 = 0,
    HS_GGML_TYPE_F16 = 1,
    HS_GGML_TYPE_Q4_0 = 2,
    HS_GGML_TYPE_Q4_1 = 3,
    HS_GGML_TYPE_Q5_0 = 6,
    HS_GGML_TYPE_Q5_1 = 7,
    HS_GGML_TYPE_Q8_0 = 8,
    HS_GGML_TYPE_Q2_K = 10,
    HS_GGML_TYPE_Q3_K = 11,
    HS_GGML_TYPE_Q4_K = 12,
    HS_GGML_TYPE_Q5_K = 13,
    HS_GGML_TYPE_Q6_K = 14,
    HS_GGML_TYPE_BF16 = 30,
};

#define HS_GGUF_DEFAULT_ALIGNMENT 32

typedef struct hs_gguf hs_gguf;

/* One tensor as described by the file. ne[] is in GGUF order, innermost
 * (contiguous) dimension first: a linear layer stored as ne = [in, out] is a
 * row-major [out, in] matrix. ne[i] = 1 for i >= n_dims. */
typedef struct {
    const char *name;    /* NUL-terminated, owned by the handle */
    uint32_t ggml_type;  /* the raw type number from the file */
    hs_dtype dtype;      /* valid only when hs_gguf_tensor_* returned HS_OK */
    int n_dims;          /* 0..4 */
    int64_t ne[4];
    int64_t n_elems;
    uint64_t offset;     /* relative to the start of the data section */
    const void *data;    /* inside the mapping, never NULL (even with nbytes 0);
                            may be unaligned for f32 reads */
    uint64_t nbytes;
} hs_gguf_tensor_info;

/* Maps path read-only and parses and validates header, metadata and tensor
 * infos. *out is set only on success; close it with hs_gguf_close.
 * Errors: HS_ERR_IO (open/stat/mmap), HS_ERR_FORMAT (malformed),
 * HS_ERR_UNSUPPORTED (version, or a tensor type unknown to ggml), HS_ERR_OOM. */
hs_status hs_gguf_open(const char *path, hs_gguf **out, hs_err *err);

/* As hs_gguf_open, over a buffer the caller keeps alive and unchanged until
 * hs_gguf_close; name is used in messages (may be NULL). */
hs_status hs_gguf_open_memory(const void *data, size_t size, const char *name, hs_gguf **out,
                              hs_err *err);

/* Releases the handle (and unmaps the file). NULL is a no-op. */
void hs_gguf_close(hs_gguf *g);

/* The path or name given at open; the file's version (2 or 3); its data
 * alignment (general.alignment, default 32); the data section's offset and size. */
const char *hs_gguf_name(const hs_gguf *g);
uint32_t hs_gguf_version(const hs_gguf *g);
uint64_t hs_gguf_alignment(const hs_gguf *g);
uint64_t hs_gguf_data_offset(const hs_gguf *g);

/* ---- key-value metadata ---------------------------------------------------
 * By index (0 <= i < hs_gguf_kv_count; out-of-range gives NULL / -1 / 0). */
int64_t hs_gguf_kv_count(const hs_gguf *g);
const char *hs_gguf_kv_key(const hs_gguf *g, int64_t i);
int hs_gguf_kv_type(const hs_gguf *g, int64_t i);      /* hs_gguf_type, -1 if out of range */
int hs_gguf_kv_arr_type(const hs_gguf *g, int64_t i);  /* element type, -1 if not an array */
uint64_t hs_gguf_kv_arr_len(const hs_gguf *g, int64_t i); /* 0 if not an array */
/* Index of key, or -1 when absent. O(log n). */
int64_t hs_gguf_find_key(const hs_gguf *g, const char *key);
const char *hs_gguf_type_name(int type);

/* Typed getters. HS_ERR_MISSING (message names file and key) when the key is
 * absent; HS_ERR_FORMAT when its type does not fit. Integer getters accept any
 * integer type whose value is in range of the requested type; get_f32 accepts
 * any numeric type (FLOAT64 is rounded); get_bool requires BOOL holding 0 or 1. */
hs_status hs_gguf_get_u32(const hs_gguf *g, const char *key, uint32_t *out, hs_err *err);
hs_status hs_gguf_get_i32(const hs_gguf *g, const char *key, int32_t *out, hs_err *err);
hs_status hs_gguf_get_u64(const hs_gguf *g, const char *key, uint64_t *out, hs_err *err);
hs_status hs_gguf_get_i64(const hs_gguf *g, const char *key, int64_t *out, hs_err *err);
hs_status hs_gguf_get_f32(const hs_gguf *g, const char *key, float *out, hs_err *err);
hs_status hs_gguf_get_bool(const hs_gguf *g, const char *key, int *out, hs_err *err);
/* *out: NUL-terminated copy owned by the handle; *len (may be NULL) its byte
 * length (the value may itself contain NUL bytes). */
hs_status hs_gguf_get_str(const hs_gguf *g, const char *key, const char **out, size_t *len,
                          hs_err *err);

/* Arrays: element type and length (HS_ERR_FORMAT if key is not an array). */
hs_status hs_gguf_get_arr_info(const hs_gguf *g, const char *key, hs_gguf_type *elem_type,
                               uint64_t *n, hs_err *err);
/* Element i of a string array: *s points into the mapping and is NOT
 * NUL-terminated; *len is its byte length. HS_ERR_INVALID_ARG if i >= n. */
hs_status hs_gguf_get_arr_str(const hs_gguf *g, const char *key, uint64_t i, const char **s,
                              size_t *len, hs_err *err);
/* Element i of an integer (or bool) array as int64 (HS_ERR_FORMAT for a
 * UINT64 element above INT64_MAX), of any numeric array as double. */
hs_status hs_gguf_get_arr_i64(const hs_gguf *g, const char *key, uint64_t i, int64_t *out,
                              hs_err *err);
hs_status hs_gguf_get_arr_f64(const hs_gguf *g, const char *key, uint64_t i, double *out,
                              hs_err *err);
/* Raw little-endian elements of a numeric or bool array, for bulk reads: the
 * pointer may be unaligned (read with memcpy). HS_ERR_FORMAT for string and
 * nested arrays. */
hs_status hs_gguf_get_arr_data(const hs_gguf *g, const char *key, hs_gguf_type *elem_type,
                               const void **data, uint64_t *n, hs_err *err);

/* ---- tensor infos ------------------------------------------------------------ */
int64_t hs_gguf_tensor_count(const hs_gguf *g);
/* Fills *out for tensor i (file order). HS_ERR_INVALID_ARG when i is out of
 * range; HS_ERR_UNSUPPORTED (naming the tensor and type number) when its type
 * is one headsweep cannot dequantise; *out is filled in either case except the
 * first, so a caller can still list the tensor. */
hs_status hs_gguf_tensor_get(const hs_gguf *g, int64_t i, hs_gguf_tensor_info *out, hs_err *err);
/* As hs_gguf_tensor_get, by name; HS_ERR_MISSING naming file and tensor when
 * absent. */
hs_status hs_gguf_tensor_find(const hs_gguf *g, const char *name, hs_gguf_tensor_info *out,
                              hs_err *err);
/* Name of a ggml type number ("Q4_K", ...), "?" if unknown. */
const char *hs_gguf_ggml_type_name(uint32_t ggml_type);

#ifdef __cplusplus
}
#endif
#endif
