/* test_cuda_ops: every op of the CUDA backend against the CPU reference op
 * (llama.cpp test-backend-ops style). Seeded random inputs (the seed is
 * printed; HS_TEST_SEED overrides it), outputs poisoned with NaN, guard bands
 * around every output checked byte for byte, NaN always fails.
 *   f32 mode: elementwise |got - ref| <= rtol (|ref| + rms(ref)) and
 *     ||got - ref|| / ||ref|| <= rtol with rtol = 1e-5: both sides evaluate
 *     the same formulas in f32; only accumulation order (cuBLAS vs OpenBLAS
 *     blocking, block vs sequential reductions, FMA contraction) and the last
 *     ulps of expf/tanhf/sincosf (CUDA <= 2 ulp, glibc <= 1) differ, i.e.
 *     O(eps sqrt(K)) relative to the operand scale: < 3e-6 for K <= 4096.
 *   bf16 mode: inputs rounded to bf16 once, so both backends see the same
 *     values; the f32 CPU op on them is the reference and the rule of
 *     hs_test_bf16_check (error <= 2x a naive bf16 computation's) applies.
 * Every GPU test skips with "no CUDA device" when none is visible; the
 * cuda_ops_cpu tests run everywhere. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_backend.h"
#include "hs_backend_cuda.h"
#include "hs_testutil.h"

#include "hs_cuda_harness.h"

/* ---- embed ------------------------------------------------------------------ */

static void run_embed(hs_dtype dt, const char *name) {
    H h;
    h_init(&h, dt, name, 1001);
    /* scale: Gemma's sqrt(d_model) on the token embedding */
    const struct { int64_t n; int d, V, P; float scale; } cs[] = {
        {7, 33, 50, 9, 1.0f}, {300, 576, 1000, 0, 1.0f}, {64, 768, 257, 512, 1.0f}, {40, 48, 300, 0, 6.9282032f}};
    for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++) {
        hs_err err = {0};
        const int64_t n = cs[ci].n;
        const int d = cs[ci].d, V = cs[ci].V, P = cs[ci].P;
        const float scale = cs[ci].scale;
        float *tok = h_rand(&h, (int64_t)V * d, 0, 1), *pe = P ? h_rand(&h, (int64_t)P * d, 0, 1) : NULL;
        int32_t *ids = malloc((size_t)n * 4), *pos = malloc((size_t)n * 4);
        for (int64_t i = 0; i < n; i++) {
            ids[i] = (int32_t)(hs_test_rng_u64(&h.rng) % (uint64_t)V);
            pos[i] = P ? (int32_t)(hs_test_rng_u64(&h.rng) % (uint64_t)P) : 0;
        }
        float *ref = h_zeros(n * d), *got = h_zeros(n * d), *naive = h_zeros(n * d);
        void *c_tok = put(h.cpu, tok, (int64_t)V * d, 0), *c_pe = P ? put(h.cpu, pe, (int64_t)P * d, 0) : NULL;
        void *c_ids = put(h.cpu, ids, n, 1), *c_pos = put(h.cpu, pos, n, 1), *c_out = put(h.cpu, ref, n * d, 0);
        ok(h.cpu->ops->embed(h.cpu, c_ids, c_pos, c_tok, c_pe, n, d, scale, c_out, &err), &err, "cpu embed");
        get(h.cpu, ref, c_out, n * d, 0);
        void *g_tok = put(h.gpu, tok, (int64_t)V * d, 0), *g_pe = P ? put(h.gpu, pe, (int64_t)P * d, 0) : NULL;
        void *g_ids = put(h.gpu, ids, n, 1), *g_pos = put(h.gpu, pos, n, 1);
        gbuf out = galloc(&h, n * d, 0, NULL);
        ok(h.gpu->ops->embed(h.gpu, g_ids, g_pos, g_tok, g_pe, n, d, scale, gptr(&out), &err), &err, "cuda embed");
        gread(&h, &out, got, "embed");
        for (int64_t i = 0; i < n; i++)
            for (int j = 0; j < d; j++)
                naive[i * d + j] = bf(tok[(int64_t)ids[i] * d + j] * scale + (P ? pe[(int64_t)pos[i] * d + j] : 0.0f));
        check(&h, "embed", got, naive, ref, n * d);
        gfree(&h, &out);
        void *cb[] = {c_tok, c_pe, c_ids, c_pos, c_out}, *gb[] = {g_tok, g_pe, g_ids, g_pos};
        for (int i = 0; i < 5; i++) h.cpu->ops->free(h.cpu, cb[i]);
        for (int i = 0; i < 4; i++) h.gpu->ops->free(h.gpu, gb[i]);
        free(tok), free(pe), free(ids), free(pos), free(ref), free(got), free(naive);
    }
    h_free(&h);
}

Test(cuda_ops, embed_f32) { REQUIRE_GPU(); run_embed(HS_DTYPE_F32, "embed_f32"); }
Test(cuda_ops, embed_bf16) { REQUIRE_GPU(); run_embed(HS_DTYPE_BF16, "embed_bf16"); }

/* ---- norm ------------------------------------------------------------------- */

/* bf16 framework LayerNorm/RMSNorm: f32 reductions, every tensor op rounded. */
static void naive_norm(hs_norm_kind kind, const float *x, const float *wt, const float *bt, float eps,
                       int64_t rows, int d, int w_rows, float *y) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d, *w = wt + (r % w_rows) * d, *b = bt ? bt + (r % w_rows) * d : NULL;
        float *yr = y + r * d;
        if (kind == HS_NORM_LAYERNORM) {
            double s = 0;
            for (int i = 0; i < d; i++) s += xr[i];
            float mean = bf((float)(s / d)), v = 0;
            for (int i = 0; i < d; i++) {
                float c = bf(xr[i] - mean);
                v += c * c;
            }
            float rstd = bf(1.0f / sqrtf(bf(v / (float)d) + eps));
            for (int i = 0; i < d; i++) {
                float t = bf(bf(bf(xr[i] - mean) * rstd) * w[i]);
                yr[i] = b ? bf(t + b[i]) : t;
            }
        } else {
            float s = 0;
            for (int i = 0; i < d; i++) s += xr[i] * xr[i];
            float rstd = bf(1.0f / sqrtf(bf(s / (float)d) + eps));
            /* Gemma's (1 + w) in f32, as transformers forms it from the bf16 weight */
            const float w0 = kind == HS_NORM_RMSNORM_1P ? 1.0f : 0.0f;
            for (int i = 0; i < d; i++) yr[i] = bf((w0 + w[i]) * bf(xr[i] * rstd));
        }
    }
}

static void run_norm(hs_dtype dt, hs_norm_kind kind, const char *name) {
    H h;
    h_init(&h, dt, name, 1002 + kind);
    /* {640, 16}, {96, 128}: Qwen3's q/k norms, one row per (token, head); with w_rows the heads' count:
     * StableLM-2 12B's per-head weights, row r reading weight row r % w_rows */
    const struct { int64_t rows; int d, bias, w_rows; } cs[] = {
        {1, 12, 1, 1}, {37, 576, 0, 1}, {5, 4096, 1, 1}, {130, 768, 1, 1}, {3, 33, 0, 1},
        {640, 16, 0, 1}, {96, 128, 0, 1}, {640, 16, 1, 8}, {96, 128, 0, 3}, {7, 33, 1, 5}};
    for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++) {
        hs_err err = {0};
        const int64_t rows = cs[ci].rows, n = rows * cs[ci].d, nw = (int64_t)cs[ci].w_rows * cs[ci].d;
        const int d = cs[ci].d, wr = cs[ci].w_rows, has_b = kind == HS_NORM_LAYERNORM && cs[ci].bias;
        const float eps = 1e-5f;
        /* RMSNORM_1P's weights are offsets from 1, spread so that 1 + w is not bf16-exact */
        float *x = h_rand(&h, n, 0.5f, 2.0f), *w = h_rand(&h, nw, kind == HS_NORM_RMSNORM_1P ? 0.5f : 1.0f, 0.1f),
              *b = has_b ? h_rand(&h, nw, 0, 0.1f) : NULL;
        float *ref = h_zeros(n), *got = h_zeros(n), *naive = h_zeros(n);
        void *cx = put(h.cpu, x, n, 0), *cw = put(h.cpu, w, nw, 0), *cbb = has_b ? put(h.cpu, b, nw, 0) : NULL;
        void *cy = put(h.cpu, ref, n, 0);
        ok(h.cpu->ops->norm(h.cpu, kind, cx, cw, cbb, eps, rows, d, wr, cy, &err), &err, "cpu norm");
        get(h.cpu, ref, cy, n, 0);
        void *gx = put(h.gpu, x, n, 0), *gw = put(h.gpu, w, nw, 0), *gb = has_b ? put(h.gpu, b, nw, 0) : NULL;
        gbuf y = galloc(&h, n, 0, NULL);
        ok(h.gpu->ops->norm(h.gpu, kind, gx, gw, gb, eps, rows, d, wr, gptr(&y), &err), &err, "cuda norm");
        gread(&h, &y, got, "norm");
        naive_norm(kind, x, w, b, eps, rows, d, wr, naive);
        check(&h, "norm", got, naive, ref, n);
        /* in place (y == x), as a caller may do */
        ok(h.gpu->ops->norm(h.gpu, kind, gx, gw, gb, eps, rows, d, wr, gx, &err), &err, "cuda norm in place");
        get(h.gpu, got, gx, n, 0);
        check(&h, "norm in place", got, naive, ref, n);
        gfree(&h, &y);
        h.cpu->ops->free(h.cpu, cx), h.cpu->ops->free(h.cpu, cw), h.cpu->ops->free(h.cpu, cbb), h.cpu->ops->free(h.cpu, cy);
        h.gpu->ops->free(h.gpu, gx), h.gpu->ops->free(h.gpu, gw), h.gpu->ops->free(h.gpu, gb);
        free(x), free(w), free(b), free(ref), free(got), free(naive);
    }
    h_free(&h);
}

Test(cuda_ops, norm_layernorm_f32) { REQUIRE_GPU(); run_norm(HS_DTYPE_F32, HS_NORM_LAYERNORM, "norm_layernorm_f32"); }
Test(cuda_ops, norm_layernorm_bf16) { REQUIRE_GPU(); run_norm(HS_DTYPE_BF16, HS_NORM_LAYERNORM, "norm_layernorm_bf16"); }
Test(cuda_ops, norm_rmsnorm_f32) { REQUIRE_GPU(); run_norm(HS_DTYPE_F32, HS_NORM_RMSNORM, "norm_rmsnorm_f32"); }
Test(cuda_ops, norm_rmsnorm_bf16) { REQUIRE_GPU(); run_norm(HS_DTYPE_BF16, HS_NORM_RMSNORM, "norm_rmsnorm_bf16"); }
Test(cuda_ops, norm_rmsnorm_1p_f32) { REQUIRE_GPU(); run_norm(HS_DTYPE_F32, HS_NORM_RMSNORM_1P, "norm_rmsnorm_1p_f32"); }
Test(cuda_ops, norm_rmsnorm_1p_bf16) { REQUIRE_GPU(); run_norm(HS_DTYPE_BF16, HS_NORM_RMSNORM_1P, "norm_rmsnorm_1p_bf16"); }

/* ---- matmul ------------------------------------------------------------------ */

static void run_matmul(hs_dtype dt, const char *name) {
    H h;
    h_init(&h, dt, name, 1003);
    /* x_off: x starts x_off elements into its buffer (unaligned row views, as
     * the forward's last-token logits use). */
    const struct { int64_t M; int N, K, bias, acc, x_off; } cs[] = {
        {1, 1, 1, 0, 0, 0},     {3, 5, 7, 1, 0, 0},       {17, 33, 12, 1, 1, 0},   {64, 576, 576, 0, 0, 0},
        {130, 1536, 576, 1, 0, 0}, {257, 96, 40, 1, 1, 1}, {1, 1000, 768, 1, 0, 3}, {200, 4096, 4096, 0, 1, 0},
        {5, 7, 3, 0, 1, 1},
    };
    for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++) {
        hs_err err = {0};
        const int64_t M = cs[ci].M, xo = cs[ci].x_off;
        const int N = cs[ci].N, K = cs[ci].K, acc = cs[ci].acc;
        char what[96];
        snprintf(what, sizeof what, "matmul M=%lld N=%d K=%d bias=%d acc=%d x_off=%lld", (long long)M, N, K,
                 cs[ci].bias, acc, (long long)xo);
        float *xb = h_rand(&h, M * K + xo, 0, 1), *w = h_rand(&h, (int64_t)N * K, 0, 1.0f / sqrtf((float)K));
        float *b = cs[ci].bias ? h_rand(&h, N, 0, 0.5f) : NULL, *y0 = h_rand(&h, M * N, 0, 1);
        float *ref = h_zeros(M * N), *got = h_zeros(M * N), *naive = h_zeros(M * N);
        void *cx = put(h.cpu, xb, M * K + xo, 0), *cw = put(h.cpu, w, (int64_t)N * K, 0);
        void *cbb = b ? put(h.cpu, b, N, 0) : NULL, *cy = put(h.cpu, y0, M * N, 0);
        ok(h.cpu->ops->matmul(h.cpu, (float *)cx + xo, cw, cbb, M, N, K, acc, cy, &err), &err, "cpu matmul");
        get(h.cpu, ref, cy, M * N, 0);
        void *gx = put(h.gpu, xb, M * K + xo, 0), *gw = put(h.gpu, w, (int64_t)N * K, 0);
        void *gb = b ? put(h.gpu, b, N, 0) : NULL;
        /* not accumulating: y starts as NaN (beta = 0 must not read it) */
        gbuf y = galloc(&h, M * N, 0, acc ? y0 : NULL);
        ok(h.gpu->ops->matmul(h.gpu, (char *)gx + xo * h.es, gw, gb, M, N, K, acc, gptr(&y), &err), &err, what);
        gread(&h, &y, got, what);
        const float *x = xb + xo;
        for (int64_t i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float s = 0;
                for (int k = 0; k < K; k++) s += x[i * K + k] * w[(int64_t)j * K + k];
                float v = bf(s);
                if (b) v = bf(v + b[j]);
                if (acc) v = bf(v + y0[i * N + j]);
                naive[i * N + j] = v;
            }
        check(&h, what, got, naive, ref, M * N);
        gfree(&h, &y);
        h.cpu->ops->free(h.cpu, cx), h.cpu->ops->free(h.cpu, cw), h.cpu->ops->free(h.cpu, cbb), h.cpu->ops->free(h.cpu, cy);
        h.gpu->ops->free(h.gpu, gx), h.gpu->ops->free(h.gpu, gw), h.gpu->ops->free(h.gpu, gb);
        free(xb), free(w), free(b), free(y0), free(ref), free(got), free(naive);
    }
    h_free(&h);
}

Test(cuda_ops, matmul_f32) { REQUIRE_GPU(); run_matmul(HS_DTYPE_F32, "matmul_f32"); }
Test(cuda_ops, matmul_bf16) { REQUIRE_GPU(); run_matmul(HS_DTYPE_BF16, "matmul_bf16"); }

/* ---- rope ------------------------------------------------------------------------ */

static void run_rope(hs_dtype dt, hs_rope_kind kind, const char *name) {
    H h;
    h_init(&h, dt, name, 1004 + kind);
    /* rot < dh: partial rotary (Pythia's 25% of 80 and 128), the rest must pass through. scaled:
     * Llama 3.1's frequency rescaling (factor 8 over an original 8192 positions), right after
     * the same shape unscaled: the backend must not keep rotating by the previous table. The last
     * six: Gemma 3's local and global bases alternating (the backend caches two tables), with a
     * third base between, so each slot is hit, missed and replaced. Every fourth case scales cos
     * and sin (YaRN's attention factor). */
    const struct { int64_t n; int H, dh, rot; float theta; int maxpos, scaled; } cs[] = {
        {9, 3, 12, 12, 10000.0f, 9, 0},     {300, 9, 64, 64, 100000.0f, 2048, 0}, {40, 4, 128, 128, 500000.0f, 8192, 0},
        {40, 4, 128, 128, 500000.0f, 30000, 1},
        {33, 2, 80, 80, 10000.0f, 300, 0},  {50, 3, 80, 20, 10000.0f, 2048, 0},   {20, 2, 128, 32, 10000.0f, 4096, 0},
        {7, 5, 12, 6, 10000.0f, 64, 0},
        {30, 2, 64, 64, 10000.0f, 1000, 0}, {30, 2, 64, 64, 1e6f, 1000, 0},    {30, 2, 64, 64, 10000.0f, 1000, 0},
        {30, 2, 64, 64, 50000.0f, 1000, 0}, {30, 2, 64, 64, 1e6f, 1000, 0},    {30, 2, 64, 64, 10000.0f, 1000, 0}};
    for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++) {
        hs_err err = {0};
        const int64_t n = cs[ci].n, tot = n * cs[ci].H * cs[ci].dh;
        const int Hh = cs[ci].H, dh = cs[ci].dh, rot = cs[ci].rot, half = rot / 2;
        const float scale = ci % 4 == 3 ? 1.2079441f : 1.0f;
        hs_model_config mc = {.d_head = dh, .rot_dim = rot, .rope_theta = cs[ci].theta};
        if (cs[ci].scaled)
            mc.rope_scaling = HS_ROPE_SCALING_LLAMA3, mc.rope_factor = 8, mc.rope_low_freq_factor = 1,
            mc.rope_high_freq_factor = 4, mc.rope_original_ctx = 8192;
        float inv_freq[64];
        hs_model_rope_inv_freq(&mc, NULL, inv_freq);
        float *x = h_rand(&h, tot, 0, 1), *ref = h_zeros(tot), *got = h_zeros(tot), *naive = h_zeros(tot);
        int32_t *pos = malloc((size_t)n * 4);
        for (int64_t i = 0; i < n; i++) pos[i] = (int32_t)(hs_test_rng_u64(&h.rng) % (uint64_t)cs[ci].maxpos);
        void *cx = put(h.cpu, x, tot, 0), *cp = put(h.cpu, pos, n, 1);
        ok(h.cpu->ops->rope(h.cpu, kind, cx, cp, n, Hh, dh, rot, inv_freq, scale, &err), &err, "cpu rope");
        get(h.cpu, ref, cx, tot, 0);
        void *gp = put(h.gpu, pos, n, 1);
        gbuf gx = galloc(&h, tot, 0, x); /* in place: guards only */
        ok(h.gpu->ops->rope(h.gpu, kind, gptr(&gx), gp, n, Hh, dh, rot, inv_freq, scale, &err), &err, "cuda rope");
        gread(&h, &gx, got, "rope");
        /* HF in bf16: cos/sin cached in bf16, every product and sum rounded */
        for (int64_t i = 0; i < tot; i++) naive[i] = bf(x[i]); /* the dims past rot */
        for (int64_t r = 0; r < n; r++)
            for (int i = 0; i < half; i++) {
                float ang = (float)pos[r] * inv_freq[i];
                float c = bf(cosf(ang) * scale), s = bf(sinf(ang) * scale);
                int a = kind == HS_ROPE_NORMAL ? 2 * i : i, bb = kind == HS_ROPE_NORMAL ? 2 * i + 1 : i + half;
                for (int hh = 0; hh < Hh; hh++) {
                    const float *v = x + (r * Hh + hh) * dh;
                    float *o = naive + (r * Hh + hh) * dh;
                    o[a] = bf(bf(v[a] * c) - bf(v[bb] * s));
                    o[bb] = bf(bf(v[bb] * c) + bf(v[a] * s));
                }
            }
        for (int64_t r = 0; r < n * Hh; r++) /* partial rotary: the CPU op leaves the rest untouched */
            for (int i = rot; i < dh; i++)
                cr_assert_eq(ref[r * dh + i], x[r * dh + i], "cpu rope moved dim %d >= rot", i);
        check(&h, "rope", got, naive, ref, tot);
        gfree(&h, &gx);
        h.cpu->ops->free(h.cpu, cx), h.cpu->ops->free(h.cpu, cp), h.gpu->ops->free(h.gpu, gp);
        free(x), free(ref), free(got), free(naive), free(pos);
    }
    h_free(&h);
}

Test(cuda_ops, rope_neox_f32) { REQUIRE_GPU(); run_rope(HS_DTYPE_F32, HS_ROPE_NEOX, "rope_neox_f32"); }
Test(cuda_ops, rope_neox_bf16) { REQUIRE_GPU(); run_rope(HS_DTYPE_BF16, HS_ROPE_NEOX, "rope_neox_bf16"); }
Test(cuda_ops, rope_normal_f32) { REQUIRE_GPU(); run_rope(HS_DTYPE_F32, HS_ROPE_NORMAL, "rope_normal_f32"); }
Test(cuda_ops, rope_normal_bf16) { REQUIRE_GPU(); run_rope(HS_DTYPE_BF16, HS_ROPE_NORMAL, "rope_normal_bf16"); }

/* ---- act and add (elementwise; off = 1 exercises the unaligned scalar path) ---- */

static float naive_gelu_new(float x) { /* torch gelu_new, one rounding per tensor op */
    float p3 = bf(x * x * x), t = bf(x + bf(0.044715f * p3));
    float th = bf(tanhf(bf(0.7978845608028654f * t)));
    return bf(bf(0.5f * x) * bf(1.0f + th));
}

static float naive_gelu_erf(float x) { /* torch gelu (exact) in bf16: one rounding */
    return bf(0.5f * x * (1.0f + erff(x * 0.7071067811865476f)));
}

/* 0 gelu_new, 1 silu, 2 add, 3 gelu, 4 GeGLU, 5 softcap (cap 1.5 on b), 6 ReLU, 7 clamp (+-1.5 on b,
 * in place: the forward clamps the projections where they are), 8 axpy (b += -0.75 a) */
static void run_elementwise(hs_dtype dt, int which, const char *name) {
    H h;
    h_init(&h, dt, name, 1010 + which);
    const struct { int64_t n; int off; } cs[] = {{1, 0}, {7, 1}, {1000, 0}, {4099, 1}, {1000003, 0}, {65536, 1}};
    for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++) {
        hs_err err = {0};
        const int64_t n = cs[ci].n, off = cs[ci].off;
        char what[64];
        snprintf(what, sizeof what, "%s n=%lld off=%lld", name, (long long)n, (long long)off);
        float *a = h_rand(&h, n + off, 0, 2.0f), *b = h_rand(&h, n + off, 0, 2.0f);
        float *ref = h_zeros(n), *got = h_zeros(n), *naive = h_zeros(n);
        void *ca = put(h.cpu, a, n + off, 0), *cb = put(h.cpu, b, n + off, 0), *co = put(h.cpu, ref, n, 0);
        void *ga = put(h.gpu, a, n + off, 0), *gb = put(h.gpu, b, n + off, 0);
        float *ca_o = (float *)ca + off, *cb_o = (float *)cb + off;
        char *ga_o = (char *)ga + off * h.es, *gb_o = (char *)gb + off * h.es;
        gbuf out;
        if (which == 2 || which == 8) { /* y (+)= x in place on b (offset by one element: unaligned view) */
            const float alpha = -0.75f;
            if (which == 2) ok(h.cpu->ops->add(h.cpu, cb_o, ca_o, n, &err), &err, "cpu add");
            else ok(h.cpu->ops->axpy(h.cpu, cb_o, alpha, ca_o, n, &err), &err, "cpu axpy");
            get(h.cpu, ref, cb_o, n, 0);
            out = galloc(&h, n + off, 0, b);
            char *go = (char *)gptr(&out) + off * h.es;
            if (which == 2) ok(h.gpu->ops->add(h.gpu, go, ga_o, n, &err), &err, what);
            else ok(h.gpu->ops->axpy(h.gpu, go, alpha, ga_o, n, &err), &err, what);
            float *all = h_zeros(n + off);
            gread(&h, &out, all, what);
            memcpy(got, all + off, (size_t)n * sizeof *got);
            cr_assert(off == 0 || all[0] == b[0], "%s: wrote before its start", what);
            free(all);
            for (int64_t i = 0; i < n; i++)
                naive[i] = which == 2 ? bf(b[off + i] + a[off + i]) : bf(fmaf(alpha, a[off + i], b[off + i]));
        } else if (which == 7) {
            ok(h.cpu->ops->clamp(h.cpu, cb_o, n, 1.5f, co, &err), &err, "cpu clamp");
            get(h.cpu, ref, co, n, 0);
            out = galloc(&h, n + off, 0, b);
            char *go = (char *)gptr(&out) + off * h.es;
            ok(h.gpu->ops->clamp(h.gpu, go, n, 1.5f, go, &err), &err, what);
            float *all = h_zeros(n + off);
            gread(&h, &out, all, what);
            memcpy(got, all + off, (size_t)n * sizeof *got);
            cr_assert(off == 0 || all[0] == b[0], "%s: clamp wrote before its start", what);
            free(all);
            for (int64_t i = 0; i < n; i++) naive[i] = fminf(fmaxf(b[off + i], -1.5f), 1.5f);
        } else if (which == 5) {
            ok(h.cpu->ops->softcap(h.cpu, cb_o, n, 1.5f, co, &err), &err, "cpu softcap");
            get(h.cpu, ref, co, n, 0);
            out = galloc(&h, n, 0, NULL);
            ok(h.gpu->ops->softcap(h.gpu, gb_o, n, 1.5f, gptr(&out), &err), &err, what);
            gread(&h, &out, got, what);
            for (int64_t i = 0; i < n; i++) naive[i] = bf(1.5f * bf(tanhf(bf(b[off + i] / 1.5f)))); /* torch: 3 ops */
        } else {
            const hs_act_kind k = which == 0   ? HS_ACT_GELU_NEW
                                  : which == 3 ? HS_ACT_GELU
                                  : which == 4 ? HS_ACT_GELU_GLU
                                  : which == 6 ? HS_ACT_RELU
                                               : HS_ACT_SILU_GLU;
            const int gated = hs_act_gated(k);
            ok(h.cpu->ops->act(h.cpu, k, gated ? ca_o : NULL, cb_o, n, co, &err), &err, "cpu act");
            get(h.cpu, ref, co, n, 0);
            out = galloc(&h, n, 0, NULL);
            ok(h.gpu->ops->act(h.gpu, k, gated ? ga_o : NULL, gb_o, n, gptr(&out), &err), &err, what);
            gread(&h, &out, got, what);
            for (int64_t i = 0; i < n; i++) {
                float g = a[off + i], u = b[off + i];
                naive[i] = which == 0   ? naive_gelu_new(u)
                           : which == 3 ? naive_gelu_erf(u)
                           : which == 6 ? (u < 0.0f ? 0.0f : u)
                           : which == 4 ? bf(naive_gelu_new(g) * u)
                                        : bf(bf(g / (1.0f + expf(-g))) * u);
            }
        }
        check(&h, what, got, naive, ref, n);
        gfree(&h, &out);
        h.cpu->ops->free(h.cpu, ca), h.cpu->ops->free(h.cpu, cb), h.cpu->ops->free(h.cpu, co);
        h.gpu->ops->free(h.gpu, ga), h.gpu->ops->free(h.gpu, gb);
        free(a), free(b), free(ref), free(got), free(naive);
    }
    h_free(&h);
}

Test(cuda_ops, act_gelu_f32) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_F32, 0, "act_gelu_f32"); }
Test(cuda_ops, act_gelu_bf16) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_BF16, 0, "act_gelu_bf16"); }
Test(cuda_ops, act_gelu_erf_f32) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_F32, 3, "act_gelu_erf_f32"); }
Test(cuda_ops, act_gelu_erf_bf16) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_BF16, 3, "act_gelu_erf_bf16"); }
Test(cuda_ops, act_silu_f32) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_F32, 1, "act_silu_f32"); }
Test(cuda_ops, act_silu_bf16) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_BF16, 1, "act_silu_bf16"); }
Test(cuda_ops, act_gelu_glu_f32) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_F32, 4, "act_gelu_glu_f32"); }
Test(cuda_ops, act_gelu_glu_bf16) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_BF16, 4, "act_gelu_glu_bf16"); }
Test(cuda_ops, act_relu_f32) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_F32, 6, "act_relu_f32"); }
Test(cuda_ops, act_relu_bf16) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_BF16, 6, "act_relu_bf16"); }
Test(cuda_ops, softcap_f32) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_F32, 5, "softcap_f32"); }
Test(cuda_ops, softcap_bf16) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_BF16, 5, "softcap_bf16"); }
Test(cuda_ops, clamp_f32) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_F32, 7, "clamp_f32"); }
Test(cuda_ops, clamp_bf16) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_BF16, 7, "clamp_bf16"); }
Test(cuda_ops, add_f32) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_F32, 2, "add_f32"); }
Test(cuda_ops, add_bf16) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_BF16, 2, "add_bf16"); }
Test(cuda_ops, axpy_f32) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_F32, 8, "axpy_f32"); }
Test(cuda_ops, axpy_bf16) { REQUIRE_GPU(); run_elementwise(HS_DTYPE_BF16, 8, "axpy_bf16"); }

/* ---- target_logprob (a metric reduction) -------------------------------------------
 * Both backends reduce the same (bf16-rounded in bf16 mode) logits in f32 and
 * return f32, so the f32 rule applies in both modes; rows without a target
 * must come back NaN on both. */

static void run_target_logprob(hs_dtype dt, const char *name) {
    H h;
    h_init(&h, dt, name, 1050);
    const struct { int64_t R; int V; } cs[] = {{1, 1}, {7, 1000}, {300, 50257}, {33, 49152}};
    for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++) {
        hs_err err = {0};
        const int64_t R = cs[ci].R;
        const int V = cs[ci].V;
        char what[64];
        snprintf(what, sizeof what, "%s R=%lld V=%d", name, (long long)R, V);
        float *x = h_rand(&h, R * V, 0, 4.0f), *ref = h_zeros(R), *got = h_zeros(R);
        int32_t *tg = malloc((size_t)R * sizeof *tg);
        for (int64_t r = 0; r < R; r++) tg[r] = r % 5 == 3 ? -1 : (int32_t)(hs_test_rng_u64(&h.rng) % (uint64_t)V);
        void *cx = put(h.cpu, x, R * V, 0), *ct = put(h.cpu, tg, R, 1), *co = put(h.cpu, ref, R, 1);
        ok(h.cpu->ops->target_logprob(h.cpu, cx, ct, R, V, co, &err), &err, "cpu target_logprob");
        get(h.cpu, ref, co, R, 1);
        void *gx = put(h.gpu, x, R * V, 0), *gt = put(h.gpu, tg, R, 1);
        gbuf out = galloc(&h, R, 1, NULL);
        ok(h.gpu->ops->target_logprob(h.gpu, gx, gt, R, V, gptr(&out), &err), &err, what);
        gread(&h, &out, got, what);
        for (int64_t r = 0; r < R; r++) {
            cr_assert_eq(isnan(got[r]) != 0, tg[r] < 0, "%s: row %lld: %g with target %d", what, (long long)r,
                         got[r], tg[r]);
            cr_assert_eq(isnan(ref[r]) != 0, tg[r] < 0, "%s: cpu row %lld: %g with target %d", what, (long long)r,
                         ref[r], tg[r]);
            if (tg[r] < 0) got[r] = ref[r] = 0.0f; /* equal: compare the rest */
        }
        check_f32(&h, what, got, ref, R);
        gfree(&h, &out);
        h.cpu->ops->free(h.cpu, cx), h.cpu->ops->free(h.cpu, ct), h.cpu->ops->free(h.cpu, co);
        h.gpu->ops->free(h.gpu, gx), h.gpu->ops->free(h.gpu, gt);
        free(x), free(ref), free(got), free(tg);
    }
    h_free(&h);
}

Test(cuda_ops, target_logprob_f32) { REQUIRE_GPU(); run_target_logprob(HS_DTYPE_F32, "target_logprob_f32"); }
Test(cuda_ops, target_logprob_bf16) { REQUIRE_GPU(); run_target_logprob(HS_DTYPE_BF16, "target_logprob_bf16"); }

/* ---- attention ---------------------------------------------------------------- */

enum { MASK_NONE, MASK_LEFT, MASK_RIGHT, MASK_HOLES };
static const char *mask_names[] = {"none", "left-pad", "right-pad", "holes"};

typedef struct {
    int B, T, H, Hk, d, mask;
    float cap; /* > 0: soft-capped scores (Gemma 2) */
    int window; /* > 0: a sliding window (Mistral, Gemma 2's local layers) */
    int alibi;  /* ALiBi (BLOOM): the slopes of H heads (hs_model_alibi_slopes) */
} attn_case;

/* ALiBi's slopes for c's H heads (malloc'd), or NULL without ALiBi. */
static float *case_slopes(const attn_case *c) {
    if (!c->alibi) return NULL;
    hs_model_config mc;
    memset(&mc, 0, sizeof mc);
    mc.n_heads = c->H;
    float *s = malloc((size_t)c->H * sizeof *s);
    cr_assert(s);
    hs_model_alibi_slopes(&mc, s);
    return s;
}

/* d_head 12/20/100 take the generic kernel in bf16 too; 32/64/80/96/128 the
 * tensor-core one, and 256 where the device gives a block 101,632 B of shared
 * memory (A100, H100). T up to 300 spans several 64-key tiles; T >= 1024 picks
 * the 128-row-block variant for d_head <= 64. */
static const attn_case attn_cases[] = {
    {1, 1, 1, 1, 12, MASK_NONE, 0, 0, 0},    {2, 37, 4, 2, 12, MASK_LEFT, 0, 0, 0},   {2, 300, 4, 4, 64, MASK_RIGHT, 0, 0, 0},
    {1, 300, 8, 2, 128, MASK_NONE, 0, 0, 0}, {3, 129, 2, 1, 80, MASK_HOLES, 0, 0, 0}, {2, 200, 3, 3, 96, MASK_LEFT, 0, 0, 0},
    {1, 65, 2, 2, 32, MASK_NONE, 0, 0, 0},   {1, 64, 1, 1, 64, MASK_NONE, 0, 0, 0},   {2, 50, 2, 2, 20, MASK_HOLES, 0, 0, 0},
    {1, 100, 2, 1, 100, MASK_RIGHT, 0, 0, 0}, {2, 257, 6, 3, 128, MASK_LEFT, 0, 0, 0},
    /* T >= 1024 with d_head <= 64: the two-m-tiles-per-warp kernel variant */
    {1, 1100, 2, 1, 64, MASK_LEFT, 0, 0, 0},  {1, 1030, 2, 2, 32, MASK_HOLES, 0, 0, 0},
    /* the wgmma kernel's edges: one row, a partial second warpgroup, a 128-row
     * block plus one, several 128-key tiles with holes */
    {1, 1, 2, 1, 128, MASK_NONE, 0, 0, 0},    {2, 70, 2, 2, 64, MASK_LEFT, 0, 0, 0},   {2, 129, 4, 2, 64, MASK_HOLES, 0, 0, 0},
    {1, 520, 2, 2, 128, MASK_HOLES, 0, 0, 0},
    /* soft-capped scores, caps low enough to bend them: the generic kernel (d_head 16) and
     * the tensor-core one (64, 128; the wgmma kernel leaves capped scores to it) */
    {2, 37, 4, 2, 16, MASK_LEFT, 1.5f, 0, 0}, {2, 130, 4, 2, 64, MASK_HOLES, 2.0f, 0, 0}, {1, 200, 4, 1, 128, MASK_RIGHT, 3.0f, 0, 0},
    /* Gemma 2's d_head 256 (tensor cores on A100 / H100, the CUDA-core kernel in f32 and on parts
     * with less shared memory per block), capped or not */
    {1, 70, 2, 1, 256, MASK_LEFT, 0, 0, 0}, {2, 45, 4, 2, 256, MASK_HOLES, 2.0f, 0, 0},
    /* sliding windows: under a row tile (1, 9), under a key tile (5, 17, 33), a key tile's
     * multiple (128) and over one (70, 100, 150, 300), so that whole tiles are skipped, cut at the
     * window's edge or left whole on every windowed tensor-core instance (d_head 32 to 128; a
     * window always takes the 64-row shape, also at T >= 1024); capped */
    {2, 37, 4, 2, 16, MASK_LEFT, 0, 5, 0},  {2, 300, 4, 2, 64, MASK_HOLES, 0, 70, 0}, {1, 200, 4, 2, 128, MASK_RIGHT, 0, 17, 0},
    {1, 260, 2, 2, 96, MASK_NONE, 2.0f, 100, 0}, {1, 90, 2, 1, 256, MASK_LEFT, 2.0f, 33, 0},
    {1, 1100, 2, 1, 64, MASK_LEFT, 0, 300, 0}, {1, 400, 2, 1, 128, MASK_HOLES, 0, 150, 0}, {2, 150, 4, 2, 32, MASK_LEFT, 0, 9, 0},
    {1, 200, 2, 2, 80, MASK_NONE, 0, 1, 0},   {1, 330, 2, 2, 96, MASK_RIGHT, 0, 128, 0},
    /* d_head 256 on tensor cores (Q read from shared memory at each k step): several row
     * blocks and key tiles, GQA; windowed across tiles with holes */
    {2, 200, 2, 1, 256, MASK_RIGHT, 0, 0, 0}, {1, 300, 2, 2, 256, MASK_HOLES, 0, 100, 0},
    /* ALiBi (BLOOM's d_head 64 and 128, and others): the CUDA-core kernels in bf16 too, padding of
     * every kind, 6 heads (both slope series), GQA, a window */
    {2, 37, 4, 2, 16, MASK_LEFT, 0, 0, 1},  {2, 130, 6, 6, 64, MASK_HOLES, 0, 0, 1}, {1, 200, 4, 4, 128, MASK_RIGHT, 0, 0, 1},
    {2, 150, 6, 3, 64, MASK_LEFT, 0, 33, 1}, {1, 70, 2, 1, 80, MASK_NONE, 0, 0, 1},
};

static void make_mask(H *h, int kind, int B, int T, int32_t *m) {
    for (int b = 0; b < B; b++) {
        int pad = (b * 7 + 3) % (T / 2 + 1); /* row 0 gets 3 pads (when T allows) */
        for (int t = 0; t < T; t++) {
            int real = 1;
            if (kind == MASK_LEFT) real = t >= pad;
            else if (kind == MASK_RIGHT) real = t < T - pad;
            else if (kind == MASK_HOLES) real = hs_test_rng_uniform(&h->rng) >= 0.2f;
            m[(int64_t)b * T + t] = real;
        }
    }
}

static float head_scale_value(int i) {
    static const float v[] = {1.0f, 0.0f, 0.5f, 2.0f, -0.75f, 1.25f};
    return v[i % 6];
}

/* A naive bf16 attention (PyTorch's math path in bf16): scores = q·k rounded,
 * times scale rounded, softmax in f32 rounded to bf16, P·V accumulated in f32
 * and rounded, the head multiplier applied to the rounded z. lse is the f32
 * logsumexp of the rounded scores. Uniform heads score 0 on every visible key.
 * Keys from a cache when Tk > 0: k, v, mask hold Tk positions per row, query t
 * sits at key position qpos[b] + t, and pat is [B, H, T, Tk]. slopes: ALiBi's,
 * the rounded bias slope (s - t) added to the rounded score and the sum
 * rounded (PyTorch's baddbmm in bf16), or NULL. */
static void naive_attention_kv(const attn_case *c, int Tk, const int32_t *qpos, const float *q, const float *k,
                               const float *v, const int32_t *mask, const float *hsc, const uint8_t *uni, float scale,
                               const float *slopes, float *z, float *lse, float *pat) {
    const float cap = c->cap;
    const int B = c->B, T = c->T, Hq = c->H, Hk = c->Hk, d = c->d, grp = Hq / Hk, K = Tk > 0 ? Tk : T;
    float *S = malloc((size_t)K * sizeof *S), *acc = malloc((size_t)d * sizeof *acc);
    cr_assert(S && acc);
    for (int b = 0; b < B; b++)
        for (int hh = 0; hh < Hq; hh++)
            for (int t = 0; t < T; t++) {
                const float *qv = q + (((int64_t)b * T + t) * Hq + hh) * d;
                const int ta = (Tk > 0 && qpos ? qpos[b] : 0) + t, ns = ta < K ? ta + 1 : K;
                float mx = -INFINITY, sum = 0;
                for (int s = 0; s < ns; s++) {
                    if ((mask && !mask[(int64_t)b * K + s]) || (c->window > 0 && ta - s >= c->window)) {
                        S[s] = -INFINITY;
                        continue;
                    }
                    const float *kv = k + (((int64_t)b * K + s) * Hk + hh / grp) * d;
                    float dot = 0;
                    for (int i = 0; i < d; i++) dot += qv[i] * kv[i];
                    S[s] = (uni && uni[b * Hq + hh]) ? 0.0f : bf(bf(dot) * scale);
                    if (slopes && !(uni && uni[b * Hq + hh])) S[s] = bf(S[s] + bf(slopes[hh] * (float)(s - ta)));
                    if (cap > 0.0f && !(uni && uni[b * Hq + hh])) S[s] = bf(cap * bf(tanhf(bf(S[s] / cap))));
                    if (S[s] > mx) mx = S[s];
                }
                float *zr = z + (((int64_t)b * T + t) * Hq + hh) * d;
                float *pr = pat + (((int64_t)b * Hq + hh) * T + t) * K;
                memset(zr, 0, (size_t)d * sizeof *zr);
                memset(pr, 0, (size_t)K * sizeof *pr);
                float *lr = lse + ((int64_t)b * Hq + hh) * T + t;
                if (mx == -INFINITY) {
                    *lr = -INFINITY;
                    continue;
                }
                for (int s = 0; s < ns; s++) sum += S[s] == -INFINITY ? 0.0f : expf(S[s] - mx);
                *lr = mx + logf(sum);
                memset(acc, 0, (size_t)d * sizeof *acc);
                for (int s = 0; s < ns; s++) {
                    if (S[s] == -INFINITY) continue;
                    float p = bf(expf(S[s] - mx) / sum);
                    pr[s] = p;
                    const float *vv = v + (((int64_t)b * K + s) * Hk + hh / grp) * d;
                    for (int i = 0; i < d; i++) acc[i] += p * vv[i];
                }
                float m = hsc ? hsc[b * Hq + hh] : 1.0f;
                for (int i = 0; i < d; i++) zr[i] = hsc ? bf(bf(acc[i]) * m) : bf(acc[i]);
            }
    free(S);
    free(acc);
}

static void naive_attention(const attn_case *c, const float *q, const float *k, const float *v,
                            const int32_t *mask, const float *hsc, const uint8_t *uni, float scale,
                            const float *slopes, float *z, float *lse, float *pat) {
    naive_attention_kv(c, 0, NULL, q, k, v, mask, hsc, uni, scale, slopes, z, lse, pat);
}

/* variant 0: z only; 1: z + lse + pattern + head_scale; 2: pattern without
 * lse (the backend's LSE scratch path) + head_scale; 3: as 1 with every third
 * (row, head) attending uniformly; 4: as 3 with one pattern row per batch
 * row (pattern_rows); 5: as 3 with a SET table (every position of every
 * fourth (row, head), about one other cell in eight, vectors shared); 6: as
 * 4 without lse, the way the forward asks for single rows (the backend's LSE
 * scratch again). */
static void run_attn_case(H *h, const attn_case *c, int variant) {
    hs_err err = {0};
    const int B = c->B, T = c->T, Hq = c->H, Hk = c->Hk, d = c->d;
    const int64_t nq = (int64_t)B * T * Hq * d, nkv = (int64_t)B * T * Hk * d, nl = (int64_t)B * Hq * T;
    int64_t np = nl * T;
    char what[176];
    snprintf(what, sizeof what, "attention B=%d T=%d H=%d H_kv=%d d_head=%d mask=%s variant=%d cap=%g window=%d alibi=%d",
             B, T, Hq, Hk, d, mask_names[c->mask], variant, (double)c->cap, c->window, c->alibi);
    float *slopes = case_slopes(c);
    float *q = h_rand(h, nq, 0, 1), *k = h_rand(h, nkv, 0, 1), *v = h_rand(h, nkv, 0, 1);
    int32_t *mask = NULL;
    if (c->mask != MASK_NONE) {
        mask = malloc((size_t)B * T * sizeof *mask);
        make_mask(h, c->mask, B, T, mask);
    }
    float *hsc = NULL;
    if (variant) {
        hsc = h_zeros((int64_t)B * Hq);
        for (int i = 0; i < B * Hq; i++) hsc[i] = head_scale_value(i);
    }
    uint8_t *uni = NULL;
    if (variant >= 3) {
        uni = calloc((size_t)B * Hq, 1);
        for (int i = 0; i < B * Hq; i++) uni[i] = i % 3 == 1;
    }
    int32_t *sidx = NULL;
    float *ssrc = NULL;
    int64_t nset = 0;
    if (variant == 5) {
        nset = (int64_t)B * T * Hq < 37 ? (int64_t)B * T * Hq : 37;
        ssrc = h_rand(h, nset * d, 0, 2); /* bf16-exact in bf16 mode */
        sidx = malloc((size_t)B * T * Hq * sizeof *sidx);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                for (int hh = 0; hh < Hq; hh++) {
                    int32_t *cl = sidx + ((int64_t)b * T + t) * Hq + hh;
                    *cl = (b * Hq + hh) % 4 == 2                    ? (int32_t)(t % nset)
                         : hs_test_rng_uniform(&h->rng) < 0.125f ? (int32_t)(hs_test_rng_u64(&h->rng) % (uint64_t)nset)
                                                                   : -1;
                }
    }
    const float scale = 1.0f / sqrtf((float)d);
    /* CPU reference: always with lse and pattern */
    float *z_ref = h_zeros(nq), *lse_ref = h_zeros(nl), *pat_ref = h_zeros(np);
    void *cq = put(h->cpu, q, nq, 0), *ck = put(h->cpu, k, nkv, 0), *cv = put(h->cpu, v, nkv, 0);
    void *cm = mask ? put(h->cpu, mask, (int64_t)B * T, 1) : NULL, *chs = hsc ? put(h->cpu, hsc, (int64_t)B * Hq, 1) : NULL;
    void *cz = put(h->cpu, z_ref, nq, 0), *cl = put(h->cpu, lse_ref, nl, 1), *cp = put(h->cpu, pat_ref, np, 1);
    void *cu = uni ? put_bytes(h->cpu, uni, (size_t)B * Hq) : NULL;
    void *csi = sidx ? put(h->cpu, sidx, (int64_t)B * T * Hq, 1) : NULL, *css = ssrc ? put(h->cpu, ssrc, nset * d, 0) : NULL;
    void *cal = slopes ? put(h->cpu, slopes, Hq, 1) : NULL;
    hs_attn_params p = {.B = B, .T = T, .H = Hq, .H_kv = Hk, .d_head = d, .scale = scale, .softcap = c->cap,
                        .window = c->window, .alibi = cal, .q = cq, .k = ck, .v = cv, .key_mask = cm, .head_scale = chs, .z = cz, .lse = cl, .pattern = cp,
                        .uniform = cu, .set_idx = csi, .set_src = css, .n_set = nset};
    ok(h->cpu->ops->attention(h->cpu, &p, &err), &err, "cpu attention");
    get(h->cpu, z_ref, cz, nq, 0);
    get(h->cpu, lse_ref, cl, nl, 1);
    get(h->cpu, pat_ref, cp, np, 1);

    void *gq = put(h->gpu, q, nq, 0), *gk = put(h->gpu, k, nkv, 0), *gv = put(h->gpu, v, nkv, 0);
    void *gm = mask ? put(h->gpu, mask, (int64_t)B * T, 1) : NULL, *ghs = hsc ? put(h->gpu, hsc, (int64_t)B * Hq, 1) : NULL;
    void *gu = uni ? put_bytes(h->gpu, uni, (size_t)B * Hq) : NULL;
    void *gsi = sidx ? put(h->gpu, sidx, (int64_t)B * T * Hq, 1) : NULL, *gss = ssrc ? put(h->gpu, ssrc, nset * d, 0) : NULL;
    void *gal = slopes ? put(h->gpu, slopes, Hq, 1) : NULL;
    const int want_lse = variant == 1 || (variant >= 3 && variant <= 5);
    int32_t *prow = NULL; /* variants 4 and 6: the query row kept per batch row */
    void *gr = NULL;
    if (variant == 4 || variant == 6) {
        prow = malloc((size_t)B * sizeof *prow);
        for (int b = 0; b < B; b++) prow[b] = b == 0 ? T - 1 : (int)(hs_test_rng_u64(&h->rng) % (uint64_t)T);
        gr = put(h->gpu, prow, B, 1);
    }
    gbuf gz = galloc(h, nq, 0, NULL), gl = galloc(h, want_lse ? nl : 0, 1, NULL),
         gp = galloc(h, variant ? (prow ? nl : np) : 0, 1, NULL);
    hs_attn_params g = {.B = B, .T = T, .H = Hq, .H_kv = Hk, .d_head = d, .scale = scale, .softcap = c->cap,
                        .window = c->window, .alibi = gal, .q = gq, .k = gk, .v = gv, .key_mask = gm, .head_scale = ghs, .z = gptr(&gz),
                        .lse = want_lse ? gptr(&gl) : NULL, .pattern = variant ? gptr(&gp) : NULL,
                        .pattern_rows = gr, .uniform = gu, .set_idx = gsi, .set_src = gss, .n_set = nset};
    ok(h->gpu->ops->attention(h->gpu, &g, &err), &err, what);

    float *z = h_zeros(nq), *zn = h_zeros(nq), *ln = h_zeros(nl), *pn = h_zeros(np);
    naive_attention(c, q, k, v, mask, hsc, uni, scale, slopes, zn, ln, pn);
    gread(h, &gz, z, what);
    if (sidx) /* a SET cell holds its vector exactly, on every side */
        for (int64_t cell = 0; cell < (int64_t)B * T * Hq; cell++) {
            if (sidx[cell] < 0) continue;
            const float *src = ssrc + (int64_t)sidx[cell] * d;
            memcpy(zn + cell * d, src, (size_t)d * sizeof(float));
            for (int i = 0; i < d; i++)
                cr_assert(z[cell * d + i] == src[i] && z_ref[cell * d + i] == src[i],
                          "%s: SET cell %lld: z[%d] = %g (cpu %g), want %g", what, (long long)cell, i,
                          z[cell * d + i], z_ref[cell * d + i], src[i]);
        }
    check(h, "z", z, zn, z_ref, nq);
    if (want_lse) {
        float *l = h_zeros(nl);
        gread(h, &gl, l, what);
        for (int64_t i = 0; i < nl; i++)
            cr_assert(isinf(lse_ref[i]) == isinf(l[i]) && !isnan(l[i]),
                      "%s: lse[%lld] = %g, want %g (a query with no visible key has lse -inf)", what,
                      (long long)i, l[i], lse_ref[i]);
        for (int64_t i = 0; i < nl; i++)
            if (isinf(lse_ref[i])) l[i] = lse_ref[i] = ln[i] = 0; /* equal: compare the rest */
        check(h, "lse", l, ln, lse_ref, nl);
        free(l);
    }
    if (prow) { /* keep only the chosen rows of the references: [B, H, T] */
        for (int b = 0; b < B; b++)
            for (int hh = 0; hh < Hq; hh++) {
                const int64_t dst = ((int64_t)b * Hq + hh) * T, src = (dst + prow[b]) * T;
                memmove(pat_ref + dst, pat_ref + src, (size_t)T * sizeof(float));
                memmove(pn + dst, pn + src, (size_t)T * sizeof(float));
            }
        np = nl;
    }
    if (variant) {
        float *pt = h_zeros(np);
        gread(h, &gp, pt, what);
        for (int64_t i = 0; i < np; i++)
            cr_assert(pat_ref[i] != 0.0f || pt[i] == 0.0f, "%s: pattern[%lld] = %g where the key is masked",
                      what, (long long)i, pt[i]);
        check(h, "pattern", pt, pn, pat_ref, np);
        free(pt);
    }
    gfree(h, &gz), gfree(h, &gl), gfree(h, &gp);
    void *cb[] = {cq, ck, cv, cm, chs, cz, cl, cp, cu, csi, css, cal}, *gb[] = {gq, gk, gv, gm, ghs, gu, gsi, gss, gal};
    for (size_t i = 0; i < sizeof cb / sizeof *cb; i++) h->cpu->ops->free(h->cpu, cb[i]);
    for (size_t i = 0; i < sizeof gb / sizeof *gb; i++) h->gpu->ops->free(h->gpu, gb[i]);
    free(slopes);
    if (gr) h->gpu->ops->free(h->gpu, gr);
    free(prow);
    free(q), free(k), free(v), free(mask), free(hsc), free(uni), free(z_ref), free(lse_ref), free(pat_ref);
    free(sidx), free(ssrc);
    free(z), free(zn), free(ln), free(pn);
}

/* kernel, variant: the bf16 attention kernel to force (HS_CUDA_ATTN_AUTO =
 * the default). */
static void run_attention(hs_dtype dt, const char *name, hs_cuda_attn_kernel kernel, int variant) {
    H h;
    h_init(&h, dt, name, 1020);
    if (kernel != HS_CUDA_ATTN_AUTO) {
        hs_err err = {0};
        const hs_status st = hs_backend_cuda_set_attn_kernel(h.gpu, kernel, variant, &err);
        if (st == HS_ERR_UNSUPPORTED) {
            h_free(&h);
            cr_skip_test("%s", err.msg);
        }
        ok(st, &err, "set_attn_kernel");
        fprintf(stderr, "[test_cuda_ops] %s: kernel %d variant %d\n", name, (int)kernel, variant);
    }
    int cc = 0;
    const int tc256 = hs_backend_cuda_attn_tensor_cores(h.gpu, 256, &cc);
    if (dt == HS_DTYPE_BF16 && (cc == 80 || cc == 90) && hs_backend_cuda_attn_kernel(h.gpu) != HS_CUDA_ATTN_SIMT)
        cr_assert(tc256, "%s: d_head 256 should run on tensor cores on compute capability %d.%d", name, cc / 10, cc % 10);
    for (size_t ci = 0; ci < sizeof attn_cases / sizeof *attn_cases; ci++) {
        int64_t before[3], after[3];
        hs_backend_cuda_attn_launches(h.gpu, before);
        int calls = 2;
        run_attn_case(&h, &attn_cases[ci], 0);
        run_attn_case(&h, &attn_cases[ci], 1);
        if (ci == 2 || ci == 4 || ci == 32) run_attn_case(&h, &attn_cases[ci], 2), calls++;
        if (ci == 1 || ci == 2 || ci == 3 || ci == 4 || ci == 9 || ci == 11 || ci == 32)
            run_attn_case(&h, &attn_cases[ci], 3), calls++;
        if (ci == 1 || ci == 3 || ci == 8 || ci == 12) run_attn_case(&h, &attn_cases[ci], 4), calls++;
        if (ci == 3 || ci == 8) run_attn_case(&h, &attn_cases[ci], 6), calls++;
        if (ci == 1 || ci == 2 || ci == 3 || ci == 5 || ci == 10 || ci == 14 || ci == 15) run_attn_case(&h, &attn_cases[ci], 5), calls++;
        if (attn_cases[ci].cap > 0.0f) /* the capped pattern recompute, uniform heads beside capped ones, one row */
            run_attn_case(&h, &attn_cases[ci], 3), run_attn_case(&h, &attn_cases[ci], 6), calls += 2;
        if (attn_cases[ci].window > 0) /* windowed: uniform heads, single pattern rows, a SET table */
            run_attn_case(&h, &attn_cases[ci], 4), run_attn_case(&h, &attn_cases[ci], 5), calls += 2;
        if (attn_cases[ci].alibi) /* uniform heads beside biased ones, one row without lse, the LSE scratch */
            run_attn_case(&h, &attn_cases[ci], 2), run_attn_case(&h, &attn_cases[ci], 3),
                run_attn_case(&h, &attn_cases[ci], 6), calls += 3;
        /* Which kernel each call took: a forced kernel must really have run
         * the shapes it covers, whether the test or the environment
         * (HS_CUDA_ATTN, gpu-check.sh's reruns) forced it. AUTO is mma.sync. */
        hs_backend_cuda_attn_launches(h.gpu, after);
        const hs_cuda_attn_kernel set = hs_backend_cuda_attn_kernel(h.gpu);
        const int d = attn_cases[ci].d,
                  tc = dt == HS_DTYPE_BF16 && !attn_cases[ci].alibi && /* ALiBi: the CUDA-core kernel */
                       (d == 32 || d == 64 || d == 80 || d == 96 || d == 128 || (d == 256 && tc256)),
                  hopper = tc && (d == 64 || d == 128) && !(attn_cases[ci].cap > 0.0f) && !attn_cases[ci].window;
        const int simt = set == HS_CUDA_ATTN_SIMT;
        const int ok_k[3] = {!tc || simt, tc && !simt && (set != HS_CUDA_ATTN_WGMMA || !hopper),
                             hopper && set == HS_CUDA_ATTN_WGMMA};
        int64_t on = 0;
        for (int k = 0; k < 3; k++) on += ok_k[k] ? after[k] - before[k] : 0;
        cr_assert_eq(on, calls, "%s: case %zu (d_head %d): %lld of %d calls on the expected kernel (CUDA-core %lld, "
                     "mma.sync %lld, wgmma %lld)", name, ci, d, (long long)on, calls, (long long)(after[0] - before[0]),
                     (long long)(after[1] - before[1]), (long long)(after[2] - before[2]));
    }
    h_free(&h);
}

Test(cuda_ops, attention_f32) { REQUIRE_GPU(); run_attention(HS_DTYPE_F32, "attention_f32", HS_CUDA_ATTN_AUTO, 0); }
Test(cuda_ops, attention_bf16) { REQUIRE_GPU(); run_attention(HS_DTYPE_BF16, "attention_bf16", HS_CUDA_ATTN_AUTO, 0); }
/* The same cases on each forced kernel: mma.sync everywhere, and every variant
 * of the Hopper wgmma kernel for d_head 64 and 128 (skipped, with the reason,
 * on a device other than compute capability 9.0). */
Test(cuda_ops, attention_bf16_mma) {
    REQUIRE_GPU();
    run_attention(HS_DTYPE_BF16, "attention_bf16_mma", HS_CUDA_ATTN_MMA, 0);
}
/* The CUDA-core kernel in bf16 on every case: on an A100 or H100 nothing else sends d_head 32 to
 * 256 there, yet sm_86/89 parts run d_head 256 on it. */
Test(cuda_ops, attention_bf16_simt) {
    REQUIRE_GPU();
    run_attention(HS_DTYPE_BF16, "attention_bf16_simt", HS_CUDA_ATTN_SIMT, 0);
}
Test(cuda_ops, attention_bf16_wgmma) {
    REQUIRE_GPU();
    for (int v = 1; v <= HS_CUDA_WGMMA_VARIANTS; v++) run_attention(HS_DTYPE_BF16, "attention_bf16_wgmma", HS_CUDA_ATTN_WGMMA, v);
}

/* ---- attention over cached keys (decoding: T_kv > 0) ------------------------------ */

/* T new queries per row against Tk cached positions (the attn_case's T is the
 * queries'). Row 0's queries are the cache's last positions, the others' sit
 * at random positions; the key mask covers the cache. */
typedef struct {
    attn_case c;
    int Tk;
} decode_case;

static const decode_case decode_cases[] = {
    {{2, 1, 4, 2, 12, MASK_RIGHT, 0, 0, 0}, 37},   {{3, 1, 4, 4, 64, MASK_HOLES, 0, 0, 0}, 300},
    {{2, 3, 8, 2, 128, MASK_NONE, 0, 0, 0}, 129},  {{1, 1, 2, 1, 256, MASK_RIGHT, 2.0f, 33, 0}, 70},
    {{2, 5, 4, 2, 80, MASK_LEFT, 0, 17, 0}, 200},  {{2, 1, 2, 1, 64, MASK_NONE, 0, 0, 0}, 1},
    {{1, 2, 2, 2, 96, MASK_HOLES, 1.5f, 100, 0}, 520}, {{2, 1, 6, 3, 32, MASK_LEFT, 0, 0, 0}, 1100},
    /* ALiBi from the cache: the bias counts from each query's own position */
    {{2, 1, 6, 6, 64, MASK_LEFT, 0, 0, 1}, 90}, {{3, 2, 4, 2, 128, MASK_HOLES, 0, 0, 1}, 300},
};

/* variant 0: z and lse; 1: + head_scale, every third (row, head) uniform, the
 * whole pattern; 2: as 1 with one pattern row per batch row and a SET table. */
static void run_decode_case(H *h, const decode_case *dc, int variant) {
    hs_err err = {0};
    const attn_case *c = &dc->c;
    const int B = c->B, T = c->T, Tk = dc->Tk, Hq = c->H, Hk = c->Hk, d = c->d;
    const int64_t nq = (int64_t)B * T * Hq * d, nkv = (int64_t)B * Tk * Hk * d, nl = (int64_t)B * Hq * T;
    const int64_t np = nl * Tk;
    char what[208];
    snprintf(what, sizeof what, "cached-key attention B=%d T=%d T_kv=%d H=%d H_kv=%d d_head=%d mask=%s variant=%d "
             "cap=%g window=%d alibi=%d", B, T, Tk, Hq, Hk, d, mask_names[c->mask], variant, (double)c->cap, c->window,
             c->alibi);
    float *slopes = case_slopes(c);
    float *q = h_rand(h, nq, 0, 1), *k = h_rand(h, nkv, 0, 1), *v = h_rand(h, nkv, 0, 1);
    int32_t *mask = NULL, *qpos = malloc((size_t)B * sizeof *qpos);
    cr_assert(qpos);
    for (int b = 0; b < B; b++) qpos[b] = b == 0 ? Tk - T : (int)(hs_test_rng_u64(&h->rng) % (uint64_t)(Tk - T + 1));
    if (c->mask != MASK_NONE) {
        mask = malloc((size_t)B * Tk * sizeof *mask);
        make_mask(h, c->mask, B, Tk, mask);
    }
    float *hsc = NULL;
    uint8_t *uni = NULL;
    if (variant) {
        hsc = h_zeros((int64_t)B * Hq);
        uni = calloc((size_t)B * Hq, 1);
        for (int i = 0; i < B * Hq; i++) hsc[i] = head_scale_value(i), uni[i] = i % 3 == 1;
    }
    int32_t *sidx = NULL, *prow = NULL;
    float *ssrc = NULL;
    const int64_t nset = 5;
    if (variant == 2) {
        ssrc = h_rand(h, nset * d, 0, 2);
        sidx = malloc((size_t)B * T * Hq * sizeof *sidx);
        prow = malloc((size_t)B * sizeof *prow);
        for (int64_t i = 0; i < (int64_t)B * T * Hq; i++) sidx[i] = i % 3 == 0 ? (int32_t)(i % nset) : -1;
        for (int b = 0; b < B; b++) prow[b] = T - 1 - b % T;
    }
    const float scale = 1.0f / sqrtf((float)d);
    float *z_ref = h_zeros(nq), *lse_ref = h_zeros(nl), *pat_ref = h_zeros(np);
    hs_attn_params p = {.B = B, .T = T, .H = Hq, .H_kv = Hk, .d_head = d, .scale = scale, .softcap = c->cap,
                        .window = c->window, .alibi = slopes, .q = q, .k = k, .v = v, .key_mask = mask, .head_scale = hsc, .z = z_ref,
                        .lse = lse_ref, .pattern = pat_ref, .uniform = uni, .set_idx = sidx, .set_src = ssrc,
                        .n_set = nset, .T_kv = Tk, .q_pos = qpos};
    /* the CPU backend's memory is the host's: the f32 op reads the inputs (bf16-rounded in bf16 mode) in place */
    ok(h->cpu->ops->attention(h->cpu, &p, &err), &err, "cpu attention over cached keys");

    void *gq = put(h->gpu, q, nq, 0), *gk = put(h->gpu, k, nkv, 0), *gv = put(h->gpu, v, nkv, 0);
    void *gm = mask ? put(h->gpu, mask, (int64_t)B * Tk, 1) : NULL, *gqp = put(h->gpu, qpos, B, 1);
    void *ghs = hsc ? put(h->gpu, hsc, (int64_t)B * Hq, 1) : NULL, *gu = uni ? put_bytes(h->gpu, uni, (size_t)B * Hq) : NULL;
    void *gsi = sidx ? put(h->gpu, sidx, (int64_t)B * T * Hq, 1) : NULL, *gss = ssrc ? put(h->gpu, ssrc, nset * d, 0) : NULL;
    void *gr = prow ? put(h->gpu, prow, B, 1) : NULL, *gal = slopes ? put(h->gpu, slopes, Hq, 1) : NULL;
    gbuf gz = galloc(h, nq, 0, NULL), gl = galloc(h, nl, 1, NULL), gp = galloc(h, variant ? (prow ? (int64_t)B * Hq * Tk : np) : 0, 1, NULL);
    hs_attn_params g = p;
    g.q = gq, g.k = gk, g.v = gv, g.key_mask = gm, g.head_scale = ghs, g.uniform = gu, g.set_idx = gsi, g.set_src = gss;
    g.z = gptr(&gz), g.lse = gptr(&gl), g.pattern = variant ? gptr(&gp) : NULL, g.pattern_rows = gr, g.q_pos = gqp;
    g.alibi = gal;
    ok(h->gpu->ops->attention(h->gpu, &g, &err), &err, what);

    float *z = h_zeros(nq), *zn = h_zeros(nq), *ln = h_zeros(nl), *pn = h_zeros(np), *l = h_zeros(nl);
    naive_attention_kv(c, Tk, qpos, q, k, v, mask, hsc, uni, scale, slopes, zn, ln, pn);
    gread(h, &gz, z, what);
    for (int64_t cell = 0; sidx && cell < (int64_t)B * T * Hq; cell++)
        if (sidx[cell] >= 0) { /* a SET cell holds its vector exactly */
            const float *src = ssrc + (int64_t)sidx[cell] * d;
            memcpy(zn + cell * d, src, (size_t)d * sizeof(float));
            for (int i = 0; i < d; i++)
                cr_assert(z[cell * d + i] == src[i] && z_ref[cell * d + i] == src[i], "%s: SET cell %lld: z[%d] = %g "
                          "(cpu %g), want %g", what, (long long)cell, i, z[cell * d + i], z_ref[cell * d + i], src[i]);
        }
    check(h, "z", z, zn, z_ref, nq);
    gread(h, &gl, l, what);
    for (int64_t i = 0; i < nl; i++) {
        cr_assert(isinf(lse_ref[i]) == isinf(l[i]) && !isnan(l[i]), "%s: lse[%lld] = %g, want %g", what, (long long)i,
                  l[i], lse_ref[i]);
        if (isinf(lse_ref[i])) l[i] = lse_ref[i] = ln[i] = 0;
    }
    check(h, "lse", l, ln, lse_ref, nl);
    if (variant) {
        int64_t n = np;
        if (prow) { /* the chosen rows of the references: [B, H, Tk] */
            for (int b = 0; b < B; b++)
                for (int hh = 0; hh < Hq; hh++) {
                    const int64_t dst = ((int64_t)b * Hq + hh) * Tk, src = (((int64_t)b * Hq + hh) * T + prow[b]) * Tk;
                    memmove(pat_ref + dst, pat_ref + src, (size_t)Tk * sizeof(float));
                    memmove(pn + dst, pn + src, (size_t)Tk * sizeof(float));
                }
            n = (int64_t)B * Hq * Tk;
        }
        float *pt = h_zeros(n);
        gread(h, &gp, pt, what);
        for (int64_t i = 0; i < n; i++)
            cr_assert(pat_ref[i] != 0.0f || pt[i] == 0.0f, "%s: pattern[%lld] = %g where the key is hidden", what,
                      (long long)i, pt[i]);
        check(h, "pattern", pt, pn, pat_ref, n);
        free(pt);
    }
    gfree(h, &gz), gfree(h, &gl), gfree(h, &gp);
    void *gb[] = {gq, gk, gv, gm, gqp, ghs, gu, gsi, gss, gr, gal};
    for (size_t i = 0; i < sizeof gb / sizeof *gb; i++)
        if (gb[i]) h->gpu->ops->free(h->gpu, gb[i]);
    free(q), free(k), free(v), free(mask), free(qpos), free(hsc), free(uni), free(sidx), free(prow), free(ssrc), free(slopes);
    free(z_ref), free(lse_ref), free(pat_ref), free(z), free(zn), free(ln), free(pn), free(l);
}

static void run_decode(hs_dtype dt, const char *name) {
    H h;
    h_init(&h, dt, name, 1050);
    for (size_t ci = 0; ci < sizeof decode_cases / sizeof *decode_cases; ci++)
        for (int variant = 0; variant < 3; variant++) run_decode_case(&h, &decode_cases[ci], variant);
    h_free(&h);
}

Test(cuda_ops, attention_cached_keys_f32) { REQUIRE_GPU(); run_decode(HS_DTYPE_F32, "attention_cached_keys_f32"); }
Test(cuda_ops, attention_cached_keys_bf16) { REQUIRE_GPU(); run_decode(HS_DTYPE_BF16, "attention_cached_keys_bf16"); }

/* Same inputs twice -> the same bits (no atomics, fixed reduction orders). */
static void run_deterministic(hs_dtype dt, const char *name) {
    H h;
    h_init(&h, dt, name, 1030);
    hs_err err = {0};
    const int B = 2, T = 300, Hq = 8, Hk = 2, d = 128;
    const int64_t nq = (int64_t)B * T * Hq * d, nkv = (int64_t)B * T * Hk * d, np = (int64_t)B * Hq * T * T;
    float *q = h_rand(&h, nq, 0, 1), *k = h_rand(&h, nkv, 0, 1), *v = h_rand(&h, nkv, 0, 1);
    int32_t *mask = malloc((size_t)B * T * sizeof *mask);
    make_mask(&h, MASK_LEFT, B, T, mask);
    float *w = h_rand(&h, (int64_t)4096 * 1024, 0, 0.03f);
    void *gq = put(h.gpu, q, nq, 0), *gk = put(h.gpu, k, nkv, 0), *gv = put(h.gpu, v, nkv, 0),
         *gm = put(h.gpu, mask, (int64_t)B * T, 1), *gw = put(h.gpu, w, (int64_t)4096 * 1024, 0);
    size_t zb = (size_t)nq * h.es, pb = (size_t)np * 4;
    unsigned char *out[2];
    for (int rep = 0; rep < 2; rep++) {
        void *gz = NULL, *gp = NULL, *gy = NULL;
        ok(h.gpu->ops->alloc(h.gpu, zb, &gz, &err), &err, "alloc");
        ok(h.gpu->ops->alloc(h.gpu, pb, &gp, &err), &err, "alloc");
        ok(h.gpu->ops->alloc(h.gpu, (size_t)B * T * 4096 * h.es, &gy, &err), &err, "alloc");
        /* a different fill each run, so a cell neither run writes cannot compare equal */
        const size_t yb = (size_t)B * T * 4096 * h.es, big = zb > pb ? (zb > yb ? zb : yb) : (pb > yb ? pb : yb);
        unsigned char *fill = malloc(big);
        cr_assert(fill);
        memset(fill, rep ? 0xa5 : 0x5a, big);
        ok(h.gpu->ops->upload(h.gpu, gz, fill, zb, &err), &err, "upload");
        ok(h.gpu->ops->upload(h.gpu, gp, fill, pb, &err), &err, "upload");
        ok(h.gpu->ops->upload(h.gpu, gy, fill, yb, &err), &err, "upload");
        free(fill);
        hs_attn_params g = {.B = B, .T = T, .H = Hq, .H_kv = Hk, .d_head = d, .scale = 0.088f, .q = gq,
                            .k = gk, .v = gv, .key_mask = gm, .z = gz, .pattern = gp};
        ok(h.gpu->ops->attention(h.gpu, &g, &err), &err, "attention");
        /* a large-K projection: split-K reductions must be deterministic too */
        ok(h.gpu->ops->matmul(h.gpu, gq, gw, NULL, (int64_t)B * T, 4096, 1024, 0, gy, &err), &err, "matmul");
        out[rep] = malloc(zb + pb + (size_t)B * T * 4096 * h.es);
        ok(h.gpu->ops->download(h.gpu, out[rep], gz, zb, &err), &err, "download");
        ok(h.gpu->ops->download(h.gpu, out[rep] + zb, gp, pb, &err), &err, "download");
        ok(h.gpu->ops->download(h.gpu, out[rep] + zb + pb, gy, (size_t)B * T * 4096 * h.es, &err), &err,
           "download");
        h.gpu->ops->free(h.gpu, gz), h.gpu->ops->free(h.gpu, gp), h.gpu->ops->free(h.gpu, gy);
    }
    cr_assert(!memcmp(out[0], out[1], zb), "%s: z differs between identical runs", name);
    cr_assert(!memcmp(out[0] + zb, out[1] + zb, pb), "%s: pattern differs between identical runs", name);
    cr_assert(!memcmp(out[0] + zb + pb, out[1] + zb + pb, (size_t)B * T * 4096 * h.es),
              "%s: matmul differs between identical runs", name);
    free(out[0]), free(out[1]), free(q), free(k), free(v), free(mask), free(w);
    h.gpu->ops->free(h.gpu, gw), h.gpu->ops->free(h.gpu, gq), h.gpu->ops->free(h.gpu, gk), h.gpu->ops->free(h.gpu, gv), h.gpu->ops->free(h.gpu, gm);
    h_free(&h);
}

Test(cuda_ops, deterministic_f32) { REQUIRE_GPU(); run_deterministic(HS_DTYPE_F32, "deterministic_f32"); }
Test(cuda_ops, deterministic_bf16) { REQUIRE_GPU(); run_deterministic(HS_DTYPE_BF16, "deterministic_bf16"); }

Test(cuda_ops, attention_bad_params) {
    REQUIRE_GPU();
    H h;
    h_init(&h, HS_DTYPE_BF16, "attention_bad_params", 1040);
    hs_err err = {0};
    void *buf = NULL;
    ok(h.gpu->ops->alloc(h.gpu, 1 << 20, &buf, &err), &err, "alloc");
    hs_attn_params g = {.B = 1, .T = 4, .H = 6, .H_kv = 4, .d_head = 64, .scale = 0.125f, .q = buf, .k = buf,
                        .v = buf, .z = buf};
    cr_assert_eq(h.gpu->ops->attention(h.gpu, &g, &err), HS_ERR_INVALID_ARG, "H %% H_kv != 0");
    g.H_kv = 3;
    g.d_head = 264;
    cr_assert_eq(h.gpu->ops->attention(h.gpu, &g, &err), HS_ERR_UNSUPPORTED, "d_head > 256");
    g.d_head = 64;
    g.q = NULL;
    cr_assert_eq(h.gpu->ops->attention(h.gpu, &g, &err), HS_ERR_INVALID_ARG, "NULL q");
    cr_assert_eq(h.gpu->ops->sync(h.gpu, &err), HS_OK, "%s", err.msg);
    h.gpu->ops->free(h.gpu, buf);

    /* A SET index past n_set, which the CPU refuses, makes that cell NaN on the GPU instead of
     * reading beyond set_src; the cells around it keep their computed values. */
    enum { T = 2, NH = 2, D = 64, NQ = T * NH * D };
    float *x = h_rand(&h, NQ, 0, 1), *src = h_rand(&h, D, 0, 1), z[NQ];
    const int32_t sidx[T * NH] = {-1, 1, 0, -1};
    void *gx = put(h.gpu, x, NQ, 0), *gs = put(h.gpu, src, D, 0), *gi = put(h.gpu, sidx, T * NH, 1);
    float sevens[NQ];
    for (int i = 0; i < NQ; i++) sevens[i] = 7.0f; /* finite: an unwritten cell 1 would not read NaN */
    gbuf gz = galloc(&h, NQ, 0, sevens);
    g = (hs_attn_params){.B = 1, .T = T, .H = NH, .H_kv = NH, .d_head = D, .scale = 0.125f, .q = gx, .k = gx,
                         .v = gx, .z = gptr(&gz), .set_idx = gi, .set_src = gs, .n_set = 1};
    ok(h.gpu->ops->attention(h.gpu, &g, &err), &err, "attention with a bad SET index");
    gread(&h, &gz, z, "attention with a bad SET index");
    for (int cell = 0; cell < T * NH; cell++)
        for (int i = 0; i < D; i++) {
            const float v = z[cell * D + i];
            if (cell == 1) cr_assert(isnan(v), "cell 1 (index 1 of 1 vector) z[%d] = %g, want NaN", i, v);
            else if (cell == 2) cr_assert_eq(v, src[i], "cell 2 (index 0) z[%d] = %g, want %g", i, v, src[i]);
            else cr_assert(isfinite(v) && v != 7.0f, "cell %d z[%d] = %g, want the computed value", cell, i, v);
        }
    gfree(&h, &gz);
    h.gpu->ops->free(h.gpu, gx), h.gpu->ops->free(h.gpu, gs), h.gpu->ops->free(h.gpu, gi);
    free(x), free(src);
    h_free(&h);
}

/* ---- CPU-only tests: they run (and assert) on every machine --------------------- */

Test(cuda_ops_cpu, bf16_round_helper) {
    /* exact values survive; ties go to even; NaN and Inf are kept */
    cr_assert_eq(hs_test_bf16_round(1.0f), 1.0f);
    cr_assert_eq(hs_test_bf16_round(-3.5f), -3.5f);
    cr_assert_eq(hs_test_bf16_round(1.0f + ldexpf(1, -8)), 1.0f);                      /* tie -> even */
    cr_assert_eq(hs_test_bf16_round(1.0f + 3 * ldexpf(1, -8)), 1.0f + ldexpf(1, -6)); /* tie -> even */
    cr_assert_eq(hs_test_bf16_round(1.0f + ldexpf(1, -8) + ldexpf(1, -12)), 1.0f + ldexpf(1, -7));
    cr_assert(isnan(hs_test_bf16_round(NAN)));
    cr_assert(isinf(hs_test_bf16_round(INFINITY)));
    for (int i = -20; i <= 20; i++) { /* relative error <= u = 2^-8 (8 significand bits) */
        float x = ldexpf(1.0f + 1.0f / 256 + 1.0f / 4096, i); /* just above a midpoint: worst case */
        float r = hs_test_bf16_round(x);
        cr_assert_eq(r, ldexpf(1.0f + 1.0f / 128, i), "rounds up past the midpoint");
        cr_assert_leq(fabsf(r - x), ldexpf(fabsf(x), -8));
    }
}

Test(cuda_ops_cpu, bf16_rule) {
    float ref[4] = {1, -2, 3, 0.5f}, naive[4] = {1.01f, -2, 3, 0.5f}, good[4] = {1, -2.015f, 3, 0.5f},
          bad[4] = {1, -2, 3.03f, 0.5f}, nan_[4] = {1, -2, NAN, 0.5f};
    cr_assert(hs_test_bf16_check(good, naive, ref, 4).ok, "0.015 <= 2 x 0.01 must pass");
    cr_assert(!hs_test_bf16_check(bad, naive, ref, 4).ok, "0.03 > 2 x 0.01 must fail");
    hs_test_bf16_result r = hs_test_bf16_check(nan_, naive, ref, 4);
    cr_assert(!r.ok && r.n_nonfinite == 1, "NaN must fail");
    cr_assert(hs_test_bf16_check(ref, ref, ref, 4).ok, "exact equals exact");
    cr_assert(!hs_test_bf16_check(ref, naive, nan_, 4).ok, "a NaN reference must fail");
    float inf_[4] = {1, -INFINITY, 3, 0.5f}, ninf[4] = {1, INFINITY, 3, 0.5f};
    cr_assert(hs_test_bf16_check(inf_, inf_, inf_, 4).ok, "the same infinity matches");
    cr_assert(!hs_test_bf16_check(ninf, inf_, inf_, 4).ok, "the other infinity does not");
    cr_assert(!hs_test_bf16_check(ref, inf_, inf_, 4).ok, "a finite value does not match an infinity");
}

Test(cuda_ops_cpu, init_contract) {
    hs_err err = {0};
    hs_backend *be = (hs_backend *)&err; /* must be reset to NULL on failure */
    hs_backend_params p = hs_backend_default_params();
    cr_assert_eq(p.dtype, HS_DTYPE_BF16, "default CUDA dtype is bf16");
    int n = hs_backend_cuda_device_count();
    cr_assert_geq(n, 0);
    if (n == 0) {
        hs_status st = hs_backend_cuda_init(&p, &be, &err);
        cr_assert(st == HS_ERR_DEVICE || st == HS_ERR_UNSUPPORTED, "got %s", hs_status_str(st));
        cr_assert_null(be);
#ifdef HS_HAVE_CUDA
        cr_assert_eq(st, HS_ERR_DEVICE);
        cr_assert_str_eq(err.msg, "no CUDA device");
#else
        cr_assert_eq(st, HS_ERR_UNSUPPORTED);
#endif
        return;
    }
    p.dtype = HS_DTYPE_Q4_0;
    cr_assert_eq(hs_backend_cuda_init(&p, &be, &err), HS_ERR_UNSUPPORTED);
    cr_assert_null(be);
    p = hs_backend_default_params();
    p.device = n;
    cr_assert_eq(hs_backend_cuda_init(&p, &be, &err), HS_ERR_INVALID_ARG);
    cr_assert_null(be);
    p.device = 0;
    cr_assert_eq(hs_backend_cuda_init(&p, &be, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(be->device, HS_DEVICE_CUDA);
    cr_assert_str_eq(be->ops->name, "cuda");
    cr_assert_eq(be->ops->version, HS_BACKEND_API_VERSION);
    for (int op = 0; op < HS_OP_COUNT; op++) cr_assert(be->ops->supports_op(be, (hs_op)op));
    hs_backend_free(be);
}
