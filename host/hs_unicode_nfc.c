/* hs_unicode_nfc: NFC as UAX #15 defines it: full canonical decomposition,
 * canonical ordering of combining marks, then canonical composition (a
 * starter composes with a later mark unless a mark of the same or higher
 * class stands between them). Hangul syllables by arithmetic; the rest from
 * tables generated from Python's unicodedata (scripts/gen-unicode-nfc.py). */
#include "hs_unicode_nfc.h"

#include <stdint.h>
#include <stdlib.h>

#include "hs_tok_internal.h"
#include "hs_unicode_nfc_tables.h"

#define N_OF(a) (sizeof(a) / sizeof *(a))

enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7, L_COUNT = 19, V_COUNT = 21,
       T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT, S_COUNT = L_COUNT * N_COUNT };

const char *hs_unicode_nfc_version(void) { return HS_NFC_UNICODE_VERSION; }

static int ccc_of(uint32_t cp) {
    size_t lo = 0, hi = N_OF(hs_nfc_ccc);
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        const uint32_t c = hs_nfc_ccc[mid] >> 8;
        if (c == cp) return (int)(hs_nfc_ccc[mid] & 0xff);
        if (c < cp) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static const uint32_t *decomp_of(uint32_t cp) {
    size_t lo = 0, hi = N_OF(hs_nfc_decomp);
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (hs_nfc_decomp[mid][0] == cp) return hs_nfc_decomp[mid];
        if (hs_nfc_decomp[mid][0] < cp) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* The primary composite of (a, b), or 0. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE && b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    size_t lo = 0, hi = N_OF(hs_nfc_comp);
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        const uint32_t *e = hs_nfc_comp[mid];
        if (e[0] == a && e[1] == b) return e[2];
        if (e[0] < a || (e[0] == a && e[1] < b)) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

typedef struct {
    uint32_t *cp;
    size_t n, cap;
} cps;

static int push(cps *v, uint32_t cp) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 64;
        uint32_t *p = realloc(v->cp, cap * sizeof *p);
        if (!p) return -1;
        v->cp = p, v->cap = cap;
    }
    v->cp[v->n++] = cp;
    return 0;
}

/* Appends the full canonical decomposition of cp (recursion depth is tiny:
 * the tables nest at most four levels). */
static int decompose(cps *v, uint32_t cp) {
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        const uint32_t s = cp - S_BASE, t = s % T_COUNT;
        if (push(v, L_BASE + s / N_COUNT) || push(v, V_BASE + (s % N_COUNT) / T_COUNT)) return -1;
        return t ? push(v, T_BASE + t) : 0;
    }
    const uint32_t *d = cp >= 0xC0 ? decomp_of(cp) : NULL;
    if (!d) return push(v, cp);
    if (decompose(v, d[1])) return -1;
    return d[2] ? decompose(v, d[2]) : 0;
}

int hs_unicode_nfc(const char *text, size_t len, char **out, size_t *out_len) {
    *out = NULL, *out_len = 0;
    size_t i = 0;
    while (i < len && (unsigned char)text[i] < 0xCC) i++; /* lead bytes below 0xCC: code points below U+0300 */
    if (i == len) return 0;
    cps v = {0};
    int rc = -1;
    for (i = 0; i < len;) {
        uint32_t cp;
        i += (size_t)hs_tok_utf8_decode(text + i, &cp);
        if (decompose(&v, cp)) goto exit;
    }
    /* canonical ordering: a stable insertion sort of each run of marks by class */
    for (size_t k = 1; k < v.n; k++) {
        const uint32_t c = v.cp[k];
        const int cc = ccc_of(c);
        if (!cc) continue;
        size_t j = k;
        while (j > 0 && ccc_of(v.cp[j - 1]) > cc) v.cp[j] = v.cp[j - 1], j--;
        v.cp[j] = c;
    }
    /* composition, in place (UAX #15's sample algorithm): w is the write end,
     * st the position of the last starter. A mark composes onto it unless a
     * mark of the same or a higher class, or a starter, stands between them;
     * last is the class of the last character written (0: the starter itself). */
    size_t w = 1, st = 0;
    uint32_t starter = v.cp[0];
    int last = ccc_of(starter) ? 256 : 0; /* text opening with a mark: nothing composes onto it */
    for (size_t k = 1; k < v.n; k++) {
        const uint32_t c = v.cp[k];
        const int cc = ccc_of(c);
        const uint32_t p = compose(starter, c);
        if (p && (last < cc || last == 0)) {
            v.cp[st] = starter = p;
            continue;
        }
        if (cc == 0) st = w, starter = c;
        last = cc;
        v.cp[w++] = c;
    }
    char *o = malloc(4 * w + 1);
    if (!o) goto exit;
    size_t n = 0;
    for (size_t k = 0; k < w; k++) n += (size_t)hs_tok_utf8_encode(v.cp[k], o + n);
    *out = o, *out_len = n;
    rc = 0;
exit:
    free(v.cp);
    return rc;
}
