/* hs_tensor: element types, non-owning tensor views, scalar conversions.
 * A view never owns its data; whoever allocated it frees it. */
#ifndef HS_TENSOR_H
#define HS_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "headsweep/hs_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    HS_DTYPE_F32 = 0,
    HS_DTYPE_F16,
    HS_DTYPE_BF16,
    HS_DTYPE_Q8_0, /* GGUF blocks of 32: f16 scale + 32 x int8 */
    HS_DTYPE_Q4_0, /* GGUF blocks of 32: f16 scale + 16 bytes of nibbles */
    HS_DTYPE_Q4_1, /* GGUF blocks of 32: f16 scale, f16 min + 16 bytes */
    HS_DTYPE_I32,  /* token ids and masks in fixture files */
    HS_DTYPE_Q5_0, /* GGUF blocks of 32: f16 scale, 32 high bits, 16 bytes of nibbles */
    HS_DTYPE_Q5_1, /* GGUF blocks of 32: f16 scale, f16 min, 32 high bits, 16 bytes */
    /* llama.cpp's k-quants: super-blocks of 256 in sub-blocks of 16 or 32,
     * each with its own quantised scale (and minimum) */
    HS_DTYPE_Q2_K,
    HS_DTYPE_Q3_K,
    HS_DTYPE_Q4_K,
    HS_DTYPE_Q5_K,
    HS_DTYPE_Q6_K,
    HS_DTYPE_COUNT
} hs_dtype;

typedef enum { HS_DEVICE_CPU = 0, HS_DEVICE_CUDA } hs_device_kind;

#define HS_MAX_DIMS 4

/* A dense, row-major view: shape[0] is the outermost dimension. */
typedef struct {
    void *data;
    hs_dtype dtype;
    int ndim;
    int64_t shape[HS_MAX_DIMS];
    hs_device_kind device;
} hs_tensor;

const char *hs_dtype_name(hs_dtype t);
/* Elements per block (1 for plain types, 32 or 256 for GGUF quants) and bytes per block. */
int64_t hs_dtype_block_elems(hs_dtype t);
int64_t hs_dtype_block_bytes(hs_dtype t);
/* Bytes for n elements; returns -1 when n is not a multiple of the block size
 * or the size would overflow. */
int64_t hs_dtype_nbytes(hs_dtype t, int64_t n);

int64_t hs_tensor_numel(const hs_tensor *t);

/* Converts n elements of src (any dtype, host memory) to f32. */
void hs_to_f32(hs_dtype t, const void *src, float *dst, int64_t n);

float hs_f16_to_f32(uint16_t h);
uint16_t hs_f32_to_f16(float f);
float hs_bf16_to_f32(uint16_t h);
uint16_t hs_f32_to_bf16(float f); /* round to nearest even */

#ifdef __cplusplus
}
#endif
#endif
