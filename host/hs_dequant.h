/* hs_dequant: the GGUF block quantisations decoded to f32 (internal). */
#ifndef HS_DEQUANT_H
#define HS_DEQUANT_H

#include <stdint.h>

#include "headsweep/hs_tensor.h"

/* Decodes n elements (a multiple of hs_dtype_block_elems(t)) of block type t
 * from src into dst. */
void hs_dequant_blocks(hs_dtype t, const uint8_t *src, float *dst, int64_t n);

#endif
