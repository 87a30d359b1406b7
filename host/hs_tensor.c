/* hs_tensor: dtype sizes and the scalar conversions (f16/bf16; the GGUF
 * block quantisations are in hs_dequant.c) used when weights are dequantised
 * at load. */
#include "headsweep/hs_tensor.h"

#include "hs_dequant.h"

#include <math.h>
#include <string.h>

const char *hs_dtype_name(hs_dtype t) {
    static const char *names[HS_DTYPE_COUNT] = {"F32",  "F16",  "BF16", "Q8_0", "Q4_0", "Q4_1", "I32",
                                                "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"};
    return (t >= 0 && t < HS_DTYPE_COUNT) ? names[t] : "?";
}

int64_t hs_dtype_block_elems(hs_dtype t) {
    switch (t) {
    case HS_DTYPE_Q8_0:
    case HS_DTYPE_Q4_0:
    case HS_DTYPE_Q4_1:
    case HS_DTYPE_Q5_0:
    case HS_DTYPE_Q5_1: return 32;
    case HS_DTYPE_Q2_K:
    case HS_DTYPE_Q3_K:
    case HS_DTYPE_Q4_K:
    case HS_DTYPE_Q5_K:
    case HS_DTYPE_Q6_K: return 256;
    default: return 1;
    }
}

int64_t hs_dtype_block_bytes(hs_dtype t) {
    switch (t) {
    case HS_DTYPE_F32:
    case HS_DTYPE_I32: return 4;
    case HS_DTYPE_F16:
    case HS_DTYPE_BF16: return 2;
    case HS_DTYPE_Q8_0: return 2 + 32;
    case HS_DTYPE_Q4_0: return 2 + 16;
    case HS_DTYPE_Q4_1: return 4 + 16;
    case HS_DTYPE_Q5_0: return 2 + 4 + 16;
    case HS_DTYPE_Q5_1: return 4 + 4 + 16;
    case HS_DTYPE_Q2_K: return 16 + 64 + 4;
    case HS_DTYPE_Q3_K: return 32 + 64 + 12 + 2;
    case HS_DTYPE_Q4_K: return 4 + 12 + 128;
    case HS_DTYPE_Q5_K: return 4 + 12 + 32 + 128;
    case HS_DTYPE_Q6_K: return 128 + 64 + 16 + 2;
    default: return 0;
    }
}

int64_t hs_dtype_nbytes(hs_dtype t, int64_t n) {
    int64_t be = hs_dtype_block_elems(t), bb = hs_dtype_block_bytes(t);
    if (n < 0 || bb == 0 || n % be != 0) return -1;
    if (n / be > INT64_MAX / bb) return -1;
    return n / be * bb;
}

int64_t hs_tensor_numel(const hs_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

float hs_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: value = man * 2^-24 */
            float f = (float)man * 5.9604644775390625e-8f;
            return (h & 0x8000) ? -f : f;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t hs_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t man = x & 0x7fffff;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
    return (uint16_t)half;
}

float hs_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t hs_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

void hs_to_f32(hs_dtype t, const void *src, float *dst, int64_t n) {
    const uint8_t *s = (const uint8_t *)src;
    switch (t) {
    case HS_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case HS_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = hs_f16_to_f32(h);
        }
        break;
    case HS_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = hs_bf16_to_f32(h);
        }
        break;
    default:
        HS_ASSERT(hs_dtype_block_elems(t) > 1 && "hs_to_f32: bad dtype");
        hs_dequant_blocks(t, s, dst, n);
    }
}
