/* hs_cuda_harness: what the CUDA op tests share (test_cuda_ops.c,
 * test_cuda_backward.c): a CPU and a CUDA backend side by side, seeded
 * inputs, outputs poisoned and fenced by guard bands, the f32 and bf16 rules
 * (described in test_cuda_ops.c). Header-only: every test binary is one file. */
#ifndef HS_CUDA_HARNESS_H
#define HS_CUDA_HARNESS_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_backend.h"
#include "hs_backend_cuda.h"
#include "hs_testutil.h"

#define F32_RTOL 1e-5
#define GUARD 512 /* bytes before and after every output; keeps outputs 256-aligned */

/* ---- harness ------------------------------------------------------------------ */

typedef struct {
    hs_backend *cpu, *gpu;
    int bf16;
    size_t es; /* bytes per GPU act element */
    hs_test_rng rng;
    const char *name;
} H;

static inline void h_init(H *h, hs_dtype dt, const char *name, uint64_t seed) {
    hs_err err = {0};
    const char *env = getenv("HS_TEST_SEED");
    if (env && *env) seed = strtoull(env, NULL, 0);
    fprintf(stderr, "[cuda test] %s: seed %llu (set HS_TEST_SEED to change)\n", name,
            (unsigned long long)seed);
    memset(h, 0, sizeof *h);
    h->name = name;
    h->bf16 = dt == HS_DTYPE_BF16;
    h->es = h->bf16 ? 2 : 4;
    hs_test_rng_seed(&h->rng, seed);
    hs_backend_params p = hs_backend_default_params();
    p.dtype = dt;
    p.n_threads = 0;
    cr_assert_eq(hs_backend_cpu_init(&p, &h->cpu, &err), HS_OK, "cpu init: %s", err.msg);
    cr_assert_eq(hs_backend_cuda_init(&p, &h->gpu, &err), HS_OK, "cuda init: %s", err.msg);
    cr_assert_eq(h->gpu->ops->act_dtype(h->gpu), dt);
}

static inline void h_free(H *h) {
    hs_backend_free(h->gpu);
    hs_backend_free(h->cpu);
}

/* n normal values (bf16-representable in bf16 mode); caller frees. */
static inline float *h_rand(H *h, int64_t n, float mean, float std) {
    float *x = malloc((size_t)(n ? n : 1) * sizeof *x);
    cr_assert(x);
    for (int64_t i = 0; i < n; i++) x[i] = mean + std * hs_test_rng_normal(&h->rng);
    if (h->bf16) hs_test_bf16_round_array(x, n);
    return x;
}

static inline float *h_zeros(int64_t n) {
    float *x = calloc((size_t)(n ? n : 1), sizeof *x);
    cr_assert(x);
    return x;
}

static inline void ok(hs_status st, const hs_err *err, const char *what) {
    cr_assert_eq(st, HS_OK, "%s failed: %s (%s)", what, err->msg, hs_status_str(st));
}

/* Backend buffer holding x (act dtype, or raw bytes when raw). */
static inline void *put(hs_backend *be, const void *x, int64_t n, int raw) {
    hs_err err = {0};
    void *p = NULL;
    size_t es = raw ? 4 : (size_t)hs_dtype_block_bytes(be->ops->act_dtype(be));
    ok(be->ops->alloc(be, (size_t)(n ? n : 1) * es, &p, &err), &err, "alloc");
    if (n == 0) return p;
    if (raw) ok(be->ops->upload(be, p, x, (size_t)n * 4, &err), &err, "upload");
    else ok(be->ops->upload_f32(be, p, (const float *)x, n, &err), &err, "upload_f32");
    return p;
}

static inline void *put_bytes(hs_backend *be, const void *x, size_t n) {
    hs_err err = {0};
    void *p = NULL;
    ok(be->ops->alloc(be, n ? n : 1, &p, &err), &err, "alloc");
    ok(be->ops->upload(be, p, x, n, &err), &err, "upload");
    return p;
}

static inline void get(hs_backend *be, float *dst, const void *src, int64_t n, int raw) {
    hs_err err = {0};
    if (raw) ok(be->ops->download(be, dst, src, (size_t)n * 4, &err), &err, "download");
    else ok(be->ops->download_f32(be, dst, src, n, &err), &err, "download_f32");
}

/* A GPU output with guard bands. Elements are act-dtype (raw = 0) or f32. The
 * whole allocation is first filled with a NaN bit pattern; init (if given)
 * then replaces the middle. */
typedef struct {
    char *base;
    int64_t n;
    size_t es;
    int raw;
} gbuf;

static inline void poison_image(unsigned char *img, size_t bytes, size_t es) {
    for (size_t i = 0; i + es <= bytes; i += es) {
        if (es == 4) {
            uint32_t v = 0x7fc5a5a5u;
            memcpy(img + i, &v, 4);
        } else {
            uint16_t v = 0x7fc5u;
            memcpy(img + i, &v, 2);
        }
    }
}

static inline gbuf galloc(H *h, int64_t n, int raw, const float *init) {
    hs_err err = {0};
    gbuf b = {.n = n, .es = raw ? 4 : h->es, .raw = raw};
    size_t bytes = 2 * GUARD + (size_t)n * b.es;
    unsigned char *img = malloc(bytes);
    cr_assert(img);
    poison_image(img, bytes, b.es);
    ok(h->gpu->ops->alloc(h->gpu, bytes, (void **)&b.base, &err), &err, "alloc");
    ok(h->gpu->ops->upload(h->gpu, b.base, img, bytes, &err), &err, "upload");
    free(img);
    if (init && n) {
        if (raw) ok(h->gpu->ops->upload(h->gpu, b.base + GUARD, init, (size_t)n * 4, &err), &err, "upload");
        else ok(h->gpu->ops->upload_f32(h->gpu, b.base + GUARD, init, n, &err), &err, "upload_f32");
    }
    return b;
}

static inline void *gptr(gbuf *b) { return b->base + GUARD; }

/* Downloads the middle as f32 and checks both guard bands are untouched. */
static inline void gread(H *h, gbuf *b, float *dst, const char *what) {
    hs_err err = {0};
    size_t bytes = 2 * GUARD + (size_t)b->n * b->es;
    unsigned char *img = malloc(bytes), *want = malloc(bytes);
    cr_assert(img && want);
    ok(h->gpu->ops->download(h->gpu, img, b->base, bytes, &err), &err, "download");
    poison_image(want, bytes, b->es);
    size_t tail = GUARD + (size_t)b->n * b->es;
    for (size_t i = 0; i < GUARD; i++) {
        cr_assert_eq(img[i], want[i], "%s: %s: guard band before the output overwritten at byte -%zu",
                     h->name, what, GUARD - i);
        cr_assert_eq(img[tail + i], want[tail + i],
                     "%s: %s: guard band after the output overwritten at byte +%zu", h->name, what, i);
    }
    free(img);
    free(want);
    if (b->n) get(h->gpu, dst, gptr(b), b->n, b->raw);
}

static inline void gfree(H *h, gbuf *b) { h->gpu->ops->free(h->gpu, b->base); }

/* The f32 rule (see the file comment); NaN anywhere fails. */
static inline void check_f32(H *h, const char *what, const float *got, const float *ref, int64_t n) {
    double atol = F32_RTOL * hs_test_rms(ref, n);
    hs_test_cmp c = hs_test_compare(got, ref, n, atol, F32_RTOL);
    int64_t i = c.first_bad;
    cr_assert(c.n_bad == 0 && !c.nan && c.rel_l2 <= F32_RTOL,
              "%s: %s: %lld of %lld values off (first [%lld]: got %.9g want %.9g), max abs %.3g, "
              "rel l2 %.3g, rtol %.1g",
              h->name, what, (long long)c.n_bad, (long long)n, (long long)i, i >= 0 ? got[i] : 0.0,
              i >= 0 ? ref[i] : 0.0, c.max_abs, c.rel_l2, F32_RTOL);
}

static inline void check_bf16(H *h, const char *what, const float *got, const float *naive,
                       const float *ref, int64_t n) {
    hs_test_bf16_result r = hs_test_bf16_check(got, naive, ref, n);
    int64_t i = r.worst;
    cr_assert(r.ok,
              "%s: %s: max error %.4g > bound %.4g (2 x naive bf16 error %.4g + floor); %lld "
              "non-finite; worst [%lld]: got %.7g want %.7g naive %.7g",
              h->name, what, r.err, r.bound, r.naive_err, (long long)r.n_nonfinite, (long long)i,
              i >= 0 ? got[i] : 0.0, i >= 0 ? ref[i] : 0.0, i >= 0 ? naive[i] : 0.0);
}

/* Dispatches on the mode: naive is only read in bf16 mode. */
static inline void check(H *h, const char *what, const float *got, const float *naive, const float *ref,
                  int64_t n) {
    if (h->bf16) check_bf16(h, what, got, naive, ref, n);
    else check_f32(h, what, got, ref, n);
}

static inline float bf(float x) { return hs_test_bf16_round(x); }

/* A second run of the same op on the same inputs must give the same bits:
 * the kernels promise no float atomics and fixed reduction orders. */
static inline void check_same_bits(H *h, const char *what, const float *first, const float *again, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        cr_assert(!memcmp(first + i, again + i, sizeof *first), "%s: %s: run 2 differs at [%lld]: %.9g, run 1 %.9g",
                  h->name, what, (long long)i, again[i], first[i]);
}

#endif
