/* hs_dequant: the GGUF block quantisations, decoded to f32 at load. The
 * layouts are ggml's (one struct per block, little-endian, f16 scales);
 * tests/fixtures/make_fixtures.py (part quants) checks every type here against
 * gguf-py's decoder. A k-quant super-block holds 256 values in sub-blocks
 * whose scales (and minimums) are themselves quantised against the
 * super-block's f16 scale. */
#include "hs_dequant.h"

#include <string.h>

static float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return hs_f16_to_f32(h);
}

/* Q8_0: [d f16][32 x int8]. */
static void q8_0(const uint8_t *b, float *y) {
    const float d = f16_at(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

/* Q4_0 [d][16 B] and Q4_1 [d][m][16 B]: element j is the low nibble of byte
 * j, element j+16 the high one; Q4_0 centres at 8, Q4_1 adds m. */
static void q4(const uint8_t *b, float *y, int has_min) {
    const float d = f16_at(b), m = has_min ? f16_at(b + 2) : 0.0f;
    const uint8_t *qs = b + (has_min ? 4 : 2);
    for (int j = 0; j < 16; j++) {
        const int lo = qs[j] & 15, hi = qs[j] >> 4;
        if (has_min) {
            y[j] = (float)lo * d + m;
            y[j + 16] = (float)hi * d + m;
        } else {
            y[j] = (float)(lo - 8) * d;
            y[j + 16] = (float)(hi - 8) * d;
        }
    }
}

/* Q5_0 [d][qh u32][16 B] and Q5_1 [d][m][qh][16 B]: Q4's nibbles plus a
 * fifth bit, bit j of qh for element j; Q5_0 centres at 16. */
static void q5(const uint8_t *b, float *y, int has_min) {
    const float d = f16_at(b), m = has_min ? f16_at(b + 2) : 0.0f;
    const uint8_t *p = b + (has_min ? 4 : 2), *qs = p + 4;
    const uint32_t qh = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    for (int j = 0; j < 16; j++) {
        const int lo = (qs[j] & 15) | (int)((qh >> j) & 1) << 4, hi = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        if (has_min) {
            y[j] = (float)lo * d + m;
            y[j + 16] = (float)hi * d + m;
        } else {
            y[j] = (float)(lo - 16) * d;
            y[j + 16] = (float)(hi - 16) * d;
        }
    }
}

/* Q2_K: [scales 16 B: low nibble scale, high nibble min, per 16 values]
 * [qs 64 B: 2-bit values][d][dmin]. Each 32-byte run of qs holds 128 values:
 * bits 2s..2s+1 of byte l is value 32s + l. */
static void q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *qs = b + 16;
    const float d = f16_at(b + 80), dmin = f16_at(b + 82);
    for (int half = 0; half < 2; half++, qs += 32)
        for (int s = 0; s < 4; s++)
            for (int g = 0; g < 2; g++) {
                const int k = half * 8 + s * 2 + g;
                const float dl = d * (float)(sc[k] & 15), ml = dmin * (float)(sc[k] >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * (float)((qs[16 * g + l] >> (2 * s)) & 3) - ml;
            }
}

/* Q3_K: [hmask 32 B][qs 64 B][scales 12 B: sixteen 6-bit scales][d]. Q2_K's
 * 2-bit layout plus a third bit from hmask (bit j of byte l for the j-th
 * 32-value run), stored inverted: a clear bit subtracts 4. */
static void q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *qs = b + 32, *ps = b + 96;
    const float d = f16_at(b + 108);
    int8_t sc[16];
    for (int k = 0; k < 16; k++) { /* low 4 bits: byte k % 8, nibble k / 8; high 2: byte 8 + k % 4, pair k / 4 */
        const int lo = (ps[k % 8] >> (4 * (k / 8))) & 15, hi = (ps[8 + k % 4] >> (2 * (k / 4))) & 3;
        sc[k] = (int8_t)((lo | hi << 4) - 32);
    }
    int run = 0;
    for (int half = 0; half < 2; half++, qs += 32)
        for (int s = 0; s < 4; s++, run++)
            for (int g = 0; g < 2; g++) {
                const float dl = d * (float)sc[half * 8 + s * 2 + g];
                for (int l = 0; l < 16; l++) {
                    const int i = 16 * g + l;
                    const int q = ((qs[i] >> (2 * s)) & 3) - ((hm[i] >> run) & 1 ? 0 : 4);
                    *y++ = dl * (float)q;
                }
            }
}

/* The eight 6-bit (scale, min) pairs of a Q4_K / Q5_K super-block, packed in
 * 12 bytes: pairs 0-3 in the low 6 bits of bytes 0-3 and 4-7; pairs 4-7 in the
 * nibbles of bytes 8-11 with their top 2 bits in the spare bits of 0-7. */
static void scale_min_k4(const uint8_t *q, int j, float *sc, float *mn) {
    if (j < 4) {
        *sc = (float)(q[j] & 63);
        *mn = (float)(q[j + 4] & 63);
    } else {
        *sc = (float)((q[j + 4] & 15) | (q[j - 4] >> 6) << 4);
        *mn = (float)((q[j + 4] >> 4) | (q[j] >> 6) << 4);
    }
}

/* Q4_K: [d][dmin][scales 12 B][qs 128 B]: four runs of 64 values, each 32
 * bytes, low nibbles then high nibbles, each 32 with its own (scale, min).
 * Q5_K: the same with [qh 32 B] before qs, bit 2r (low) / 2r+1 (high) of byte
 * l giving the fifth bit in run r. */
static void q45_k(const uint8_t *b, float *y, int five) {
    const float d = f16_at(b), dmin = f16_at(b + 2);
    const uint8_t *ps = b + 4, *qh = b + 16, *qs = b + (five ? 48 : 16);
    for (int r = 0; r < 4; r++, qs += 32)
        for (int nib = 0; nib < 2; nib++) {
            float sc, mn;
            scale_min_k4(ps, 2 * r + nib, &sc, &mn);
            const float dl = d * sc, ml = dmin * mn;
            for (int l = 0; l < 32; l++) {
                int q = nib ? qs[l] >> 4 : qs[l] & 15;
                if (five) q |= ((qh[l] >> (2 * r + nib)) & 1) << 4;
                *y++ = dl * (float)q - ml;
            }
        }
}

/* Q6_K: [ql 128 B: low nibbles][qh 64 B: high 2 bits][scales 16 x int8][d].
 * Each half of 128 values takes 64 bytes of ql and 32 of qh: value 32c + l
 * (c = 0..3) is nibble c / 2 of ql[l + 32 (c % 2)] with bits 2c, 2c+1 of
 * qh[l], centred at 32; one scale per 16 values. */
static void q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = f16_at(b + 208);
    for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, y += 128)
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                const int lo = (ql[l + 32 * (c % 2)] >> (4 * (c / 2))) & 15, hi = (qh[l] >> (2 * c)) & 3;
                y[32 * c + l] = d * (float)sc[2 * c + l / 16] * (float)((lo | hi << 4) - 32);
            }
}

void hs_dequant_blocks(hs_dtype t, const uint8_t *src, float *dst, int64_t n) {
    const int64_t be = hs_dtype_block_elems(t), bb = hs_dtype_block_bytes(t);
    for (int64_t k = 0; k < n / be; k++, src += bb, dst += be) {
        switch (t) {
        case HS_DTYPE_Q8_0: q8_0(src, dst); break;
        case HS_DTYPE_Q4_0: q4(src, dst, 0); break;
        case HS_DTYPE_Q4_1: q4(src, dst, 1); break;
        case HS_DTYPE_Q5_0: q5(src, dst, 0); break;
        case HS_DTYPE_Q5_1: q5(src, dst, 1); break;
        case HS_DTYPE_Q2_K: q2_k(src, dst); break;
        case HS_DTYPE_Q3_K: q3_k(src, dst); break;
        case HS_DTYPE_Q4_K: q45_k(src, dst, 0); break;
        case HS_DTYPE_Q5_K: q45_k(src, dst, 1); break;
        case HS_DTYPE_Q6_K: q6_k(src, dst); break;
        default: HS_ASSERT(!"hs_dequant_blocks: not a block type");
        }
    }
}
