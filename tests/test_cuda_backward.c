/* test_cuda_backward: the backward ops (gradient head importance) and the
 * buffer ops they and patching use (zero, copy_2d) of the CUDA backend against
 * the CPU reference ops, on seeded random inputs with
 * poisoned, guard-banded outputs (hs_cuda_harness.h; the f32 rule of
 * test_cuda_ops). In bf16 mode both sides see the same bf16 inputs and the
 * "naive" result is the f32 reference rounded to bf16: the kernels accumulate
 * in f32 and round once, so their error must stay within twice that rounding.
 * Each reducing op also runs twice, and the second run must give the first's
 * bits (determinism). The cuda_backward_cpu tests check the CPU ops
 * themselves against central finite differences of the forward ops, so they
 * run everywhere. */
#include "hs_cuda_harness.h"

static void round_bf16(float *x, int64_t n) { hs_test_bf16_round_array(x, n); }

/* got (GPU) against ref (CPU), in the mode's rule. */
static void expect(H *h, const char *what, const float *got, const float *ref, int64_t n) {
    if (!h->bf16) {
        check_f32(h, what, got, ref, n);
        return;
    }
    float *naive = malloc((size_t)(n ? n : 1) * sizeof *naive);
    memcpy(naive, ref, (size_t)n * sizeof *naive);
    round_bf16(naive, n);
    check_bf16(h, what, got, naive, ref, n);
    free(naive);
}

/* ---- matmul_bwd --------------------------------------------------------------- */

static void run_matmul_bwd(hs_dtype dt, const char *name) {
    H h;
    h_init(&h, dt, name, 2001);
    const struct { int64_t M; int N, K; } cs[] = {{1, 1, 1}, {37, 300, 64}, {256, 1000, 576}, {9, 4096, 128}};
    for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++)
        for (int acc = 0; acc < 2; acc++) {
            hs_err err = {0};
            const int64_t M = cs[ci].M;
            const int N = cs[ci].N, K = cs[ci].K;
            char what[96];
            snprintf(what, sizeof what, "matmul_bwd M=%lld N=%d K=%d accumulate=%d", (long long)M, N, K, acc);
            float *dy = h_rand(&h, M * N, 0, 1), *w = h_rand(&h, (int64_t)N * K, 0, 0.05f),
                  *dx0 = h_rand(&h, M * K, 0, 1), *ref = h_zeros(M * K), *got = h_zeros(M * K);
            void *cdy = put(h.cpu, dy, M * N, 0), *cw = put(h.cpu, w, (int64_t)N * K, 0), *cdx = put(h.cpu, dx0, M * K, 0);
            ok(h.cpu->ops->matmul_bwd(h.cpu, cdy, cw, M, N, K, acc, cdx, &err), &err, "cpu matmul_bwd");
            get(h.cpu, ref, cdx, M * K, 0);
            void *gdy = put(h.gpu, dy, M * N, 0), *gw = put(h.gpu, w, (int64_t)N * K, 0);
            float *again = h_zeros(M * K); /* the second run's output */
            for (int rep = 0; rep < 2; rep++) {
                gbuf out = galloc(&h, M * K, 0, acc ? dx0 : NULL);
                ok(h.gpu->ops->matmul_bwd(h.gpu, gdy, gw, M, N, K, acc, gptr(&out), &err), &err, what);
                gread(&h, &out, rep ? again : got, what);
                gfree(&h, &out);
            }
            expect(&h, what, got, ref, M * K);
            check_same_bits(&h, what, got, again, M * K);
            h.cpu->ops->free(h.cpu, cdy), h.cpu->ops->free(h.cpu, cw), h.cpu->ops->free(h.cpu, cdx);
            h.gpu->ops->free(h.gpu, gdy), h.gpu->ops->free(h.gpu, gw);
            free(dy), free(w), free(dx0), free(ref), free(got), free(again);
        }
    h_free(&h);
}

Test(cuda_backward, matmul_bwd_f32) { REQUIRE_GPU(); run_matmul_bwd(HS_DTYPE_F32, "matmul_bwd_f32"); }
Test(cuda_backward, matmul_bwd_bf16) { REQUIRE_GPU(); run_matmul_bwd(HS_DTYPE_BF16, "matmul_bwd_bf16"); }

/* ---- norm_bwd ----------------------------------------------------------------- */

static void run_norm_bwd(hs_dtype dt, hs_norm_kind kind, const char *name) {
    H h;
    h_init(&h, dt, name, 2002);
    /* w_rows > 1: per-head q/k norm weights (StableLM-2 12B), row r reading weight row r % w_rows */
    const struct { int64_t rows; int d, w_rows; } cs[] = {{1, 8, 1},    {33, 576, 1}, {7, 4096, 1}, {300, 64, 1},
                                                          {640, 16, 1}, {96, 128, 1}, {640, 16, 8}, {96, 128, 3}};
    for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++)
        for (int acc = 0; acc < 2; acc++) {
            hs_err err = {0};
            const int64_t R = cs[ci].rows, n = R * cs[ci].d, nw = (int64_t)cs[ci].w_rows * cs[ci].d;
            const int d = cs[ci].d, wr = cs[ci].w_rows;
            char what[96];
            snprintf(what, sizeof what, "norm_bwd rows=%lld d=%d w_rows=%d accumulate=%d", (long long)R, d, wr, acc);
            float *x = h_rand(&h, n, 0.3f, 2), *w = h_rand(&h, nw, 1, 0.2f), *dy = h_rand(&h, n, 0, 1),
                  *dx0 = h_rand(&h, n, 0, 1), *ref = h_zeros(n), *got = h_zeros(n);
            void *cx = put(h.cpu, x, n, 0), *cw = put(h.cpu, w, nw, 0), *cdy = put(h.cpu, dy, n, 0),
                 *cdx = put(h.cpu, dx0, n, 0);
            ok(h.cpu->ops->norm_bwd(h.cpu, kind, cx, cw, 1e-5f, R, d, wr, cdy, acc, cdx, &err), &err, "cpu norm_bwd");
            get(h.cpu, ref, cdx, n, 0);
            void *gx = put(h.gpu, x, n, 0), *gw = put(h.gpu, w, nw, 0), *gdy = put(h.gpu, dy, n, 0);
            float *again = h_zeros(n); /* the second run's output */
            for (int rep = 0; rep < 2; rep++) {
                gbuf out = galloc(&h, n, 0, acc ? dx0 : NULL);
                ok(h.gpu->ops->norm_bwd(h.gpu, kind, gx, gw, 1e-5f, R, d, wr, gdy, acc, gptr(&out), &err), &err, what);
                gread(&h, &out, rep ? again : got, what);
                gfree(&h, &out);
            }
            expect(&h, what, got, ref, n);
            check_same_bits(&h, what, got, again, n);
            free(again);
            void *cb[] = {cx, cw, cdy, cdx}, *gb[] = {gx, gw, gdy};
            for (int i = 0; i < 4; i++) h.cpu->ops->free(h.cpu, cb[i]);
            for (int i = 0; i < 3; i++) h.gpu->ops->free(h.gpu, gb[i]);
            free(x), free(w), free(dy), free(dx0), free(ref), free(got);
        }
    h_free(&h);
}

Test(cuda_backward, norm_bwd_layernorm_f32) { REQUIRE_GPU(); run_norm_bwd(HS_DTYPE_F32, HS_NORM_LAYERNORM, "ln_bwd_f32"); }
Test(cuda_backward, norm_bwd_layernorm_bf16) { REQUIRE_GPU(); run_norm_bwd(HS_DTYPE_BF16, HS_NORM_LAYERNORM, "ln_bwd_bf16"); }
Test(cuda_backward, norm_bwd_rmsnorm_f32) { REQUIRE_GPU(); run_norm_bwd(HS_DTYPE_F32, HS_NORM_RMSNORM, "rms_bwd_f32"); }
Test(cuda_backward, norm_bwd_rmsnorm_bf16) { REQUIRE_GPU(); run_norm_bwd(HS_DTYPE_BF16, HS_NORM_RMSNORM, "rms_bwd_bf16"); }
Test(cuda_backward, norm_bwd_rmsnorm_1p_f32) { REQUIRE_GPU(); run_norm_bwd(HS_DTYPE_F32, HS_NORM_RMSNORM_1P, "rms1p_bwd_f32"); }
Test(cuda_backward, norm_bwd_rmsnorm_1p_bf16) {
    REQUIRE_GPU();
    run_norm_bwd(HS_DTYPE_BF16, HS_NORM_RMSNORM_1P, "rms1p_bwd_bf16");
}

/* ---- act_bwd ------------------------------------------------------------------ */

static void run_act_bwd(hs_dtype dt, hs_act_kind kind, const char *name) {
    H h;
    h_init(&h, dt, name, 2003);
    const int64_t ns[] = {1, 1000, 100003};
    const int silu = hs_act_gated(kind); /* a gate's gradient too */
    for (size_t ci = 0; ci < sizeof ns / sizeof *ns; ci++) {
        hs_err err = {0};
        const int64_t n = ns[ci];
        char what[64];
        snprintf(what, sizeof what, "act_bwd n=%lld", (long long)n);
        float *g = h_rand(&h, n, 0, 3), *u = h_rand(&h, n, 0, 3), *dout = h_rand(&h, n, 0, 1);
        float *rg = h_zeros(n), *ru = h_zeros(n), *xg = h_zeros(n), *xu = h_zeros(n);
        void *cg = put(h.cpu, g, n, 0), *cu = put(h.cpu, u, n, 0), *cd = put(h.cpu, dout, n, 0),
             *cdg = put(h.cpu, rg, n, 0), *cdu = put(h.cpu, ru, n, 0);
        ok(h.cpu->ops->act_bwd(h.cpu, kind, cg, cu, cd, n, cdg, cdu, &err), &err, "cpu act_bwd");
        get(h.cpu, ru, cdu, n, 0);
        if (silu) get(h.cpu, rg, cdg, n, 0);
        void *gg = put(h.gpu, g, n, 0), *gu = put(h.gpu, u, n, 0), *gd = put(h.gpu, dout, n, 0);
        gbuf odg = galloc(&h, silu ? n : 0, 0, NULL), odu = galloc(&h, n, 0, NULL);
        ok(h.gpu->ops->act_bwd(h.gpu, kind, gg, gu, gd, n, silu ? gptr(&odg) : NULL, gptr(&odu), &err), &err, what);
        gread(&h, &odu, xu, what);
        expect(&h, "d_up", xu, ru, n);
        if (silu) {
            gread(&h, &odg, xg, what);
            expect(&h, "d_gate", xg, rg, n);
        }
        gfree(&h, &odg), gfree(&h, &odu);
        void *cb[] = {cg, cu, cd, cdg, cdu}, *gb[] = {gg, gu, gd};
        for (int i = 0; i < 5; i++) h.cpu->ops->free(h.cpu, cb[i]);
        for (int i = 0; i < 3; i++) h.gpu->ops->free(h.gpu, gb[i]);
        free(g), free(u), free(dout), free(rg), free(ru), free(xg), free(xu);
    }
    h_free(&h);
}

Test(cuda_backward, act_bwd_gelu_f32) { REQUIRE_GPU(); run_act_bwd(HS_DTYPE_F32, HS_ACT_GELU_NEW, "gelu_bwd_f32"); }
Test(cuda_backward, act_bwd_gelu_bf16) { REQUIRE_GPU(); run_act_bwd(HS_DTYPE_BF16, HS_ACT_GELU_NEW, "gelu_bwd_bf16"); }
Test(cuda_backward, act_bwd_gelu_erf_f32) { REQUIRE_GPU(); run_act_bwd(HS_DTYPE_F32, HS_ACT_GELU, "gelu_erf_bwd_f32"); }
Test(cuda_backward, act_bwd_gelu_erf_bf16) {
    REQUIRE_GPU();
    run_act_bwd(HS_DTYPE_BF16, HS_ACT_GELU, "gelu_erf_bwd_bf16");
}
Test(cuda_backward, act_bwd_relu_f32) { REQUIRE_GPU(); run_act_bwd(HS_DTYPE_F32, HS_ACT_RELU, "relu_bwd_f32"); }
Test(cuda_backward, act_bwd_relu_bf16) { REQUIRE_GPU(); run_act_bwd(HS_DTYPE_BF16, HS_ACT_RELU, "relu_bwd_bf16"); }
Test(cuda_backward, act_bwd_silu_f32) { REQUIRE_GPU(); run_act_bwd(HS_DTYPE_F32, HS_ACT_SILU_GLU, "silu_bwd_f32"); }
Test(cuda_backward, act_bwd_silu_bf16) { REQUIRE_GPU(); run_act_bwd(HS_DTYPE_BF16, HS_ACT_SILU_GLU, "silu_bwd_bf16"); }
Test(cuda_backward, act_bwd_gelu_glu_f32) { REQUIRE_GPU(); run_act_bwd(HS_DTYPE_F32, HS_ACT_GELU_GLU, "geglu_bwd_f32"); }
Test(cuda_backward, act_bwd_gelu_glu_bf16) { REQUIRE_GPU(); run_act_bwd(HS_DTYPE_BF16, HS_ACT_GELU_GLU, "geglu_bwd_bf16"); }

/* ---- softcap_bwd and clamp_bwd, out of place and in place (dx = dy) ------------------- */

/* clamp = 0: softcap_bwd (cap 5) at outputs y drawn N(0, 0.9 cap) and kept within 0.99 cap (what a
 * cap can output); 1: clamp_bwd (bound 1) at inputs
 * x, one in five on the bounds themselves, where the gradient is zero as torch's is, compared
 * exactly (it selects, it does not compute). Both ops take (be, y or x, dy, n, cap, dx). */
static void run_pointwise_bwd(hs_dtype dt, const char *name, int clamp) {
    H h;
    h_init(&h, dt, name, clamp ? 2010 : 2009);
    const int64_t ns[] = {1, 1000, 100003};
    const float c = clamp ? 1.0f : 5.0f;
    const char *op = clamp ? "clamp_bwd" : "softcap_bwd";
    for (size_t ci = 0; ci < sizeof ns / sizeof *ns; ci++)
        for (int in_place = 0; in_place < 2; in_place++) {
            hs_err err = {0};
            const int64_t n = ns[ci];
            char what[64];
            snprintf(what, sizeof what, "%s n=%lld in_place=%d", op, (long long)n, in_place);
            float *x = h_rand(&h, n, 0, clamp ? 1.5f : 0.9f * c), *dy = h_rand(&h, n, 0, 1), *ref = h_zeros(n),
                  *got = h_zeros(n);
            for (int64_t i = 0; clamp && i < n; i += 5) x[i] = i % 2 ? -c : c; /* on the bounds: blocked */
            for (int64_t i = 0; !clamp && i < n; i++) x[i] = fmaxf(-0.99f * c, fminf(0.99f * c, x[i]));
            void *cx = put(h.cpu, x, n, 0), *cdy = put(h.cpu, dy, n, 0), *cdx = put(h.cpu, ref, n, 0);
            ok((clamp ? h.cpu->ops->clamp_bwd : h.cpu->ops->softcap_bwd)(h.cpu, cx, cdy, n, c, cdx, &err), &err, op);
            get(h.cpu, ref, cdx, n, 0);
            if (clamp) {
                int64_t passed = 0, on_bound = 0;
                for (int64_t i = 0; i < n; i++) {
                    const int in = x[i] > -c && x[i] < c;
                    cr_assert_eq(ref[i], in ? dy[i] : 0.0f, "%s: cpu dx[%lld] = %g for x %g, dy %g", what,
                                 (long long)i, ref[i], x[i], dy[i]);
                    passed += in, on_bound += fabsf(x[i]) == c;
                }
                cr_assert(n < 1000 || (passed > n / 4 && passed < n - n / 4 && on_bound >= n / 5),
                          "%s: %lld of %lld inside the bounds, %lld on them", what, (long long)passed,
                          (long long)n, (long long)on_bound);
            }
            void *gx = put(h.gpu, x, n, 0), *gdy = put(h.gpu, dy, n, 0);
            gbuf odx = galloc(&h, in_place ? 0 : n, 0, NULL);
            ok((clamp ? h.gpu->ops->clamp_bwd : h.gpu->ops->softcap_bwd)(h.gpu, gx, gdy, n, c,
                                                                        in_place ? gdy : gptr(&odx), &err),
               &err, what);
            if (in_place) ok(h.gpu->ops->download_f32(h.gpu, got, gdy, n, &err), &err, what);
            else gread(&h, &odx, got, what);
            if (clamp)
                for (int64_t i = 0; i < n; i++)
                    cr_assert(got[i] == ref[i], "%s: dx[%lld] = %g, want %g (x %g)", what, (long long)i, got[i],
                              ref[i], x[i]);
            else
                expect(&h, "dx", got, ref, n);
            gfree(&h, &odx);
            void *cb[] = {cx, cdy, cdx}, *gb[] = {gx, gdy};
            for (int i = 0; i < 3; i++) h.cpu->ops->free(h.cpu, cb[i]);
            for (int i = 0; i < 2; i++) h.gpu->ops->free(h.gpu, gb[i]);
            free(x), free(dy), free(ref), free(got);
        }
    h_free(&h);
}

/* The CPU ops, as torch 2.15 computes them (x.clamp(-2, 2) on these x): clamp passes NaN on;
 * its gradient passes strictly inside the bounds only (on them and for NaN: zero). */
Test(cuda_backward_cpu, clamp_reference) {
    hs_backend *be = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK, "%s", err.msg);
    float x[7] = {-3.0f, -2.0f, -1.5f, 0.25f, 2.0f, 7.0f, NAN}, dy[7] = {1, 2, 3, 4, 5, 6, 7}, y[7], dx[7];
    const float want_y[7] = {-2.0f, -2.0f, -1.5f, 0.25f, 2.0f, 2.0f, NAN}, want_dx[7] = {0, 0, 3, 4, 0, 0, 0};
    cr_assert_eq(be->ops->clamp(be, x, 7, 2.0f, y, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(be->ops->clamp_bwd(be, x, dy, 7, 2.0f, dx, &err), HS_OK, "%s", err.msg);
    for (int i = 0; i < 7; i++) {
        cr_assert(y[i] == want_y[i] || (isnan(y[i]) && isnan(want_y[i])), "clamp(%g) = %g", x[i], y[i]);
        cr_assert_eq(dx[i], want_dx[i], "clamp_bwd at x = %g: %g", x[i], dx[i]);
    }
    cr_assert_eq(be->ops->clamp(be, x, 7, 2.0f, x, &err), HS_OK, "%s", err.msg); /* in place */
    cr_assert(x[0] == -2.0f && x[5] == 2.0f && x[3] == 0.25f);
    hs_backend_free(be);
}

Test(cuda_backward, clamp_bwd_f32) { REQUIRE_GPU(); run_pointwise_bwd(HS_DTYPE_F32, "clamp_bwd_f32", 1); }
Test(cuda_backward, clamp_bwd_bf16) { REQUIRE_GPU(); run_pointwise_bwd(HS_DTYPE_BF16, "clamp_bwd_bf16", 1); }

Test(cuda_backward, softcap_bwd_f32) { REQUIRE_GPU(); run_pointwise_bwd(HS_DTYPE_F32, "softcap_bwd_f32", 0); }
Test(cuda_backward, softcap_bwd_bf16) { REQUIRE_GPU(); run_pointwise_bwd(HS_DTYPE_BF16, "softcap_bwd_bf16", 0); }

/* ---- logprob_grad, out of place and in place ------------------------------------ */

static void run_logprob_grad(hs_dtype dt, const char *name) {
    H h;
    h_init(&h, dt, name, 2004);
    const struct { int64_t R; int V; } cs[] = {{1, 1}, {7, 1000}, {33, 49152}};
    for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++)
        for (int in_place = 0; in_place < 2; in_place++) {
            hs_err err = {0};
            const int64_t R = cs[ci].R, n = R * cs[ci].V;
            const int V = cs[ci].V;
            char what[96];
            snprintf(what, sizeof what, "logprob_grad R=%lld V=%d in_place=%d", (long long)R, V, in_place);
            float *x = h_rand(&h, n, 0, 4), *ref = h_zeros(n), *got = h_zeros(n);
            int32_t *tg = malloc((size_t)R * sizeof *tg);
            for (int64_t r = 0; r < R; r++) tg[r] = r % 5 == 3 ? -1 : (int32_t)(hs_test_rng_u64(&h.rng) % (uint64_t)V);
            void *cx = put(h.cpu, x, n, 0), *ct = put(h.cpu, tg, R, 1), *co = put(h.cpu, ref, n, 0);
            ok(h.cpu->ops->logprob_grad(h.cpu, cx, ct, R, V, co, &err), &err, "cpu logprob_grad");
            get(h.cpu, ref, co, n, 0);
            void *gt = put(h.gpu, tg, R, 1), *gx = in_place ? NULL : put(h.gpu, x, n, 0);
            float *again = h_zeros(n); /* the second run's output */
            for (int rep = 0; rep < 2; rep++) {
                gbuf out = galloc(&h, n, 0, in_place ? x : NULL);
                ok(h.gpu->ops->logprob_grad(h.gpu, in_place ? gptr(&out) : gx, gt, R, V, gptr(&out), &err), &err,
                   what);
                gread(&h, &out, rep ? again : got, what);
                gfree(&h, &out);
            }
            expect(&h, what, got, ref, n);
            check_same_bits(&h, what, got, again, n);
            free(again);
            h.cpu->ops->free(h.cpu, cx), h.cpu->ops->free(h.cpu, ct), h.cpu->ops->free(h.cpu, co);
            h.gpu->ops->free(h.gpu, gt), h.gpu->ops->free(h.gpu, gx);
            free(x), free(ref), free(got), free(tg);
        }
    h_free(&h);
}

Test(cuda_backward, logprob_grad_f32) { REQUIRE_GPU(); run_logprob_grad(HS_DTYPE_F32, "logprob_grad_f32"); }
Test(cuda_backward, logprob_grad_bf16) { REQUIRE_GPU(); run_logprob_grad(HS_DTYPE_BF16, "logprob_grad_bf16"); }

/* ---- head_dot ---------------------------------------------------------------------- */

static void run_head_dot(hs_dtype dt, const char *name) {
    H h;
    h_init(&h, dt, name, 2006);
    const struct { int B, T, H, d; } cs[] = {{1, 1, 1, 8}, {3, 37, 9, 64}, {2, 128, 32, 128}};
    for (size_t ci = 0; ci < sizeof cs / sizeof *cs; ci++) {
        hs_err err = {0};
        const int B = cs[ci].B, T = cs[ci].T, Hh = cs[ci].H, d = cs[ci].d;
        const int64_t n = (int64_t)B * T * Hh * d, m = (int64_t)B * Hh;
        char what[96];
        snprintf(what, sizeof what, "head_dot B=%d T=%d H=%d d=%d", B, T, Hh, d);
        float *a = h_rand(&h, n, 0, 1), *c = h_rand(&h, n, 0, 1), *ref = h_zeros(m), *got = h_zeros(m);
        void *ca = put(h.cpu, a, n, 0), *cc = put(h.cpu, c, n, 0), *co = put(h.cpu, ref, m, 1);
        ok(h.cpu->ops->head_dot(h.cpu, ca, cc, B, T, Hh, d, co, &err), &err, "cpu head_dot");
        get(h.cpu, ref, co, m, 1);
        void *ga = put(h.gpu, a, n, 0), *gc = put(h.gpu, c, n, 0);
        float *again = h_zeros(m); /* the second run's output */
        for (int rep = 0; rep < 2; rep++) {
            gbuf out = galloc(&h, m, 1, NULL);
            ok(h.gpu->ops->head_dot(h.gpu, ga, gc, B, T, Hh, d, gptr(&out), &err), &err, what);
            gread(&h, &out, rep ? again : got, what);
            gfree(&h, &out);
        }
        /* Both reduce the same (bf16-exact) values in f32 or better, in different
         * orders. The f32 rule's scale is the outputs' rms; a few outputs of
         * cancelling terms (the 8-term case) need the terms' own scale,
         * sum |a c| / sqrt(terms), as floor. */
        const double rms = hs_test_rms(ref, m);
        for (int64_t o = 0; o < m; o++) {
            const int bb = (int)(o / Hh), hh = (int)(o % Hh);
            double sa = 0;
            for (int t = 0; t < T; t++)
                for (int i = 0; i < d; i++) {
                    const int64_t k = (((int64_t)bb * T + t) * Hh + hh) * d + i;
                    sa += fabs((double)a[k] * c[k]);
                }
            const double tol = F32_RTOL * fmax(rms, sa / sqrt((double)T * d));
            cr_assert(fabs((double)got[o] - ref[o]) <= tol, "%s: %s: [%lld] got %.9g want %.9g (tolerance %.3g)", h.name,
                      what, (long long)o, got[o], ref[o], tol);
        }
        check_same_bits(&h, what, got, again, m);
        h.cpu->ops->free(h.cpu, ca), h.cpu->ops->free(h.cpu, cc), h.cpu->ops->free(h.cpu, co);
        h.gpu->ops->free(h.gpu, ga), h.gpu->ops->free(h.gpu, gc);
        free(a), free(c), free(ref), free(got), free(again);
    }
    h_free(&h);
}

Test(cuda_backward, head_dot_f32) { REQUIRE_GPU(); run_head_dot(HS_DTYPE_F32, "head_dot_f32"); }
Test(cuda_backward, head_dot_bf16) { REQUIRE_GPU(); run_head_dot(HS_DTYPE_BF16, "head_dot_bf16"); }

/* ---- zero --------------------------------------------------------------------------- */

/* zero clears exactly its bytes: 1, 37 and 4099 elements (odd counts, no
 * whole vectors) inside a poisoned buffer. */
static void run_zero(hs_dtype dt, const char *name) {
    H h;
    h_init(&h, dt, name, 2007);
    const int64_t ns[] = {1, 37, 4099};
    for (size_t ci = 0; ci < sizeof ns / sizeof *ns; ci++) {
        hs_err err = {0};
        char what[64];
        snprintf(what, sizeof what, "zero n=%lld", (long long)ns[ci]);
        gbuf out = galloc(&h, ns[ci], 0, NULL);
        float *got = h_zeros(ns[ci]);
        for (int64_t i = 0; i < ns[ci]; i++) got[i] = NAN;
        ok(h.gpu->ops->zero(h.gpu, gptr(&out), (size_t)ns[ci] * h.es, &err), &err, what);
        gread(&h, &out, got, what); /* the guard bands stay poisoned */
        for (int64_t i = 0; i < ns[ci]; i++) cr_assert(got[i] == 0.0f && !signbit(got[i]), "%s: [%lld] = %g", what, (long long)i, got[i]);
        gfree(&h, &out);
        free(got);
    }
    h_free(&h);
}

Test(cuda_backward, zero_f32) { REQUIRE_GPU(); run_zero(HS_DTYPE_F32, "zero_f32"); }
Test(cuda_backward, zero_bf16) { REQUIRE_GPU(); run_zero(HS_DTYPE_BF16, "zero_bf16"); }

/* ---- copy_2d --------------------------------------------------------------------- */

typedef struct {
    int rows, width, src_pitch, dst_pitch; /* in elements */
} copy_case;

/* One position (1 x 1), one head's slice of a [T, H * d_head] q (20 positions
 * of 64 of 576), narrow rows into a wider pitch, and pitch = width (contiguous). */
static const copy_case copy_cases[] = {{1, 1, 1, 1}, {20, 64, 576, 576}, {37, 12, 36, 60}, {5, 128, 128, 128}};

/* The CPU op: row i of width elements from src + i src_pitch to dst + i
 * dst_pitch, nothing in between touched; a pitch below the width refused. */
Test(cuda_backward_cpu, copy_2d_reference) {
    hs_backend *be = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK, "%s", err.msg);
    for (size_t ci = 0; ci < sizeof copy_cases / sizeof *copy_cases; ci++) {
        const copy_case k = copy_cases[ci];
        float *src = malloc((size_t)k.rows * k.src_pitch * 4), *dst = malloc((size_t)k.rows * k.dst_pitch * 4);
        for (int i = 0; i < k.rows * k.src_pitch; i++) src[i] = (float)i;
        for (int i = 0; i < k.rows * k.dst_pitch; i++) dst[i] = -1.0f;
        cr_assert_eq(be->ops->copy_2d(be, dst, (size_t)k.dst_pitch * 4, src, (size_t)k.src_pitch * 4,
                                      (size_t)k.width * 4, (size_t)k.rows, &err), HS_OK, "%s", err.msg);
        for (int r = 0; r < k.rows; r++)
            for (int c = 0; c < k.dst_pitch; c++)
                cr_assert_eq(dst[r * k.dst_pitch + c], c < k.width ? (float)(r * k.src_pitch + c) : -1.0f,
                             "case %zu row %d col %d", ci, r, c);
        free(src), free(dst);
    }
    float a[4], b[4];
    cr_assert_eq(be->ops->copy_2d(be, a, 4, b, 16, 8, 1, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "pitch"), "%s", err.msg);
    hs_backend_free(be);
}

/* The CUDA op against the CPU op on a poisoned destination: the copied rows
 * equal, every byte between them still poison, the guard bands intact. */
static void run_copy_2d(hs_dtype dt, const char *name) {
    H h;
    h_init(&h, dt, name, 2011);
    for (size_t ci = 0; ci < sizeof copy_cases / sizeof *copy_cases; ci++) {
        const copy_case k = copy_cases[ci];
        hs_err err = {0};
        char what[64];
        snprintf(what, sizeof what, "copy_2d %dx%d pitch %d/%d", k.rows, k.width, k.src_pitch, k.dst_pitch);
        const int64_t ns = (int64_t)k.rows * k.src_pitch, nd = (int64_t)k.rows * k.dst_pitch;
        float *src = h_rand(&h, ns, 0.0f, 1.0f), *ref = malloc((size_t)nd * 4), *got = malloc((size_t)nd * 4);
        for (int64_t i = 0; i < nd; i++) ref[i] = NAN;
        void *cs = put(h.cpu, src, ns, 0), *cd = put(h.cpu, ref, nd, 0), *gs = put(h.gpu, src, ns, 0);
        /* each backend's own element size: the CPU one is always f32 */
        const size_t es = h.es, ces = (size_t)hs_dtype_block_bytes(h.cpu->ops->act_dtype(h.cpu));
        ok(h.cpu->ops->copy_2d(h.cpu, cd, k.dst_pitch * ces, cs, k.src_pitch * ces, k.width * ces, (size_t)k.rows,
                               &err),
           &err, what);
        get(h.cpu, ref, cd, nd, 0);
        gbuf out = galloc(&h, nd, 0, NULL);
        ok(h.gpu->ops->copy_2d(h.gpu, gptr(&out), k.dst_pitch * es, gs, k.src_pitch * es, k.width * es,
                               (size_t)k.rows, &err),
           &err, what);
        gread(&h, &out, got, what);
        for (int64_t i = 0; i < nd; i++) {
            const int copied = i % k.dst_pitch < k.width;
            cr_assert(copied ? got[i] == ref[i] && !isnan(got[i]) : isnan(got[i]) && isnan(ref[i]),
                      "%s: [%lld] (row %lld col %lld) got %g want %g", what, (long long)i,
                      (long long)(i / k.dst_pitch), (long long)(i % k.dst_pitch), got[i], ref[i]);
        }
        gfree(&h, &out);
        h.cpu->ops->free(h.cpu, cs), h.cpu->ops->free(h.cpu, cd), h.gpu->ops->free(h.gpu, gs);
        free(src), free(ref), free(got);
    }
    h_free(&h);
}

Test(cuda_backward, copy_2d_f32) { REQUIRE_GPU(); run_copy_2d(HS_DTYPE_F32, "copy_2d_f32"); }
Test(cuda_backward, copy_2d_bf16) { REQUIRE_GPU(); run_copy_2d(HS_DTYPE_BF16, "copy_2d_bf16"); }

/* ---- attention_bwd ------------------------------------------------------------- */

typedef struct {
    int B, T, H, Hk, d, mask; /* mask: 0 none, 1 left padding, 2 holes */
    float cap;                /* > 0: soft-capped scores (Gemma 2) */
    int window;               /* > 0: a sliding window */
    int alibi;                /* ALiBi (BLOOM): slopes 2^-(h + 1) */
} bwd_case;

/* Slopes 1/2, 1/4, ... for ALiBi's cases (the op takes any), or NULL. */
static float *bwd_slopes(const bwd_case *c) {
    if (!c->alibi) return NULL;
    float *s = malloc((size_t)c->H * sizeof *s);
    cr_assert(s);
    for (int h = 0; h < c->H; h++) s[h] = ldexpf(1.0f, -(h + 1));
    return s;
}

static const bwd_case bwd_cases[] = {
    {1, 1, 1, 1, 8, 0, 0, 0, 0}, {2, 37, 4, 2, 64, 1, 0, 0, 0}, {1, 129, 6, 3, 128, 2, 0, 0, 0}, {2, 64, 2, 2, 96, 0, 0, 0, 0},
    {1, 200, 4, 1, 80, 1, 0, 0, 0},
    {2, 45, 4, 2, 16, 2, 1.5f, 0, 0}, {1, 130, 4, 1, 128, 1, 2.5f, 0, 0},
    /* Gemma 2's d_head 256: the kernels' eight-values-per-lane instance */
    {1, 70, 4, 2, 256, 1, 0, 0, 0}, {2, 33, 2, 1, 256, 2, 2.0f, 0, 0},
    /* sliding windows, with holes, a cap and d_head 256 among them */
    {2, 40, 4, 2, 64, 2, 0, 7, 0}, {1, 90, 4, 1, 128, 1, 2.5f, 30, 0}, {1, 50, 2, 1, 256, 2, 0, 12, 0},
    /* ALiBi (BLOOM's d_head 64 and 128), with holes, GQA and a window */
    {2, 37, 4, 4, 64, 1, 0, 0, 1}, {1, 129, 6, 3, 128, 2, 0, 0, 1}, {2, 40, 4, 2, 64, 2, 0, 7, 1},
};

static int32_t *make_mask(hs_test_rng *rng, const bwd_case *c) {
    if (!c->mask) return NULL;
    int32_t *m = malloc((size_t)c->B * c->T * sizeof *m);
    for (int b = 0; b < c->B; b++)
        for (int t = 0; t < c->T; t++)
            m[b * c->T + t] = c->mask == 1 ? t >= (b * 5 + 2) % (c->T / 2 + 1) : hs_test_rng_uniform(rng) >= 0.2f;
    return m;
}

static void run_attention_bwd(hs_dtype dt, const char *name) {
    H h;
    h_init(&h, dt, name, 2005);
    for (size_t ci = 0; ci < sizeof bwd_cases / sizeof *bwd_cases; ci++) {
        hs_err err = {0};
        const bwd_case *c = &bwd_cases[ci];
        const int64_t nq = (int64_t)c->B * c->T * c->H * c->d, nk = (int64_t)c->B * c->T * c->Hk * c->d;
        char what[160];
        snprintf(what, sizeof what,
                 "attention_bwd B=%d T=%d H=%d H_kv=%d d=%d mask=%d head_scale=%d cap=%g window=%d alibi=%d", c->B,
                 c->T, c->H, c->Hk, c->d, c->mask, (int)(ci % 2), (double)c->cap, c->window, c->alibi);
        float *slopes = bwd_slopes(c);
        float *q = h_rand(&h, nq, 0, 1), *k = h_rand(&h, nk, 0, 1), *v = h_rand(&h, nk, 0, 1), *dz = h_rand(&h, nq, 0, 1);
        int32_t *mask = make_mask(&h.rng, c);
        float *hsc = NULL; /* odd cases: a pruning-style head multiplier (z = hsc * P v) */
        if (ci % 2) {
            static const float vals[] = {1.0f, 0.0f, 0.5f, 2.0f, -0.75f};
            hsc = malloc((size_t)c->B * c->H * sizeof *hsc);
            for (int i = 0; i < c->B * c->H; i++) hsc[i] = vals[i % 5];
        }
        float *rq = h_zeros(nq), *rk = h_zeros(nk), *rv = h_zeros(nk), *gq = h_zeros(nq), *gk = h_zeros(nk),
              *gv = h_zeros(nk);
        const float scale = 1.0f / sqrtf((float)c->d);
        void *cq = put(h.cpu, q, nq, 0), *ck = put(h.cpu, k, nk, 0), *cv = put(h.cpu, v, nk, 0),
             *cdz = put(h.cpu, dz, nq, 0), *cm = mask ? put(h.cpu, mask, (int64_t)c->B * c->T, 1) : NULL,
             *cdq = put(h.cpu, rq, nq, 0), *cdk = put(h.cpu, rk, nk, 0), *cdv = put(h.cpu, rv, nk, 0),
             *chs = hsc ? put(h.cpu, hsc, (int64_t)c->B * c->H, 1) : NULL,
             *cal = slopes ? put(h.cpu, slopes, c->H, 1) : NULL;
        hs_attn_params p = {.B = c->B, .T = c->T, .H = c->H, .H_kv = c->Hk, .d_head = c->d, .scale = scale,
                            .softcap = c->cap, .window = c->window, .alibi = cal, .q = cq, .k = ck, .v = cv, .key_mask = cm, .head_scale = chs};
        ok(h.cpu->ops->attention_bwd(h.cpu, &p, cdz, cdq, cdk, cdv, &err), &err, "cpu attention_bwd");
        get(h.cpu, rq, cdq, nq, 0), get(h.cpu, rk, cdk, nk, 0), get(h.cpu, rv, cdv, nk, 0);
        void *xq = put(h.gpu, q, nq, 0), *xk = put(h.gpu, k, nk, 0), *xv = put(h.gpu, v, nk, 0),
             *xdz = put(h.gpu, dz, nq, 0), *xm = mask ? put(h.gpu, mask, (int64_t)c->B * c->T, 1) : NULL,
             *xhs = hsc ? put(h.gpu, hsc, (int64_t)c->B * c->H, 1) : NULL,
             *xal = slopes ? put(h.gpu, slopes, c->H, 1) : NULL;
        hs_attn_params g = p;
        g.q = xq, g.k = xk, g.v = xv, g.key_mask = xm, g.head_scale = xhs, g.alibi = xal;
        float *aq = h_zeros(nq), *ak = h_zeros(nk), *av = h_zeros(nk); /* the second run's outputs */
        for (int rep = 0; rep < 2; rep++) {
            gbuf oq = galloc(&h, nq, 0, NULL), ok_ = galloc(&h, nk, 0, NULL), ov = galloc(&h, nk, 0, NULL);
            ok(h.gpu->ops->attention_bwd(h.gpu, &g, xdz, gptr(&oq), gptr(&ok_), gptr(&ov), &err), &err, what);
            gread(&h, &oq, rep ? aq : gq, what), gread(&h, &ok_, rep ? ak : gk, what);
            gread(&h, &ov, rep ? av : gv, what);
            gfree(&h, &oq), gfree(&h, &ok_), gfree(&h, &ov);
        }
        expect(&h, "dq", gq, rq, nq);
        expect(&h, "dk", gk, rk, nk);
        expect(&h, "dv", gv, rv, nk);
        check_same_bits(&h, "dq", gq, aq, nq);
        check_same_bits(&h, "dk", gk, ak, nk);
        check_same_bits(&h, "dv", gv, av, nk);
        free(aq), free(ak), free(av);
        void *cb[] = {cq, ck, cv, cdz, cm, cdq, cdk, cdv, chs, cal}, *gb[] = {xq, xk, xv, xdz, xm, xhs, xal};
        for (size_t i = 0; i < sizeof cb / sizeof *cb; i++) h.cpu->ops->free(h.cpu, cb[i]);
        for (size_t i = 0; i < sizeof gb / sizeof *gb; i++) h.gpu->ops->free(h.gpu, gb[i]);
        free(q), free(k), free(v), free(dz), free(mask), free(rq), free(rk), free(rv), free(gq), free(gk), free(gv);
        free(hsc), free(slopes);
    }
    h_free(&h);
}

Test(cuda_backward, attention_bwd_f32) { REQUIRE_GPU(); run_attention_bwd(HS_DTYPE_F32, "attention_bwd_f32"); }
Test(cuda_backward, attention_bwd_bf16) { REQUIRE_GPU(); run_attention_bwd(HS_DTYPE_BF16, "attention_bwd_bf16"); }

/* ---- the CPU ops against finite differences (run everywhere) -------------------- */

/* sum(dz * z(q, k, v)) by the CPU forward op, in double. */
static double attn_objective(hs_backend *be, hs_attn_params p, const float *dz, float *z, int64_t nq) {
    hs_err err = {0};
    p.z = z;
    cr_assert_eq(be->ops->attention(be, &p, &err), HS_OK, "%s", err.msg);
    double s = 0;
    for (int64_t i = 0; i < nq; i++) s += (double)dz[i] * z[i];
    return s;
}

/* Central differences in f32 (step 1e-2), with key padding, GQA and head
 * multipliers (a zeroed head among them), without and with a soft-cap on the
 * scores, a sliding window or ALiBi's biases: agreement to ~1e-3 of the gradient's scale; a
 * wrong term (a missing mask or window, a transposed product, the multiplier
 * or the cap's derivative left out) is off by O(1). */
static void attention_bwd_fd(float cap, int window, int alibi) {
    hs_backend *be = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK, "%s", err.msg);
    hs_test_rng rng;
    hs_test_rng_seed(&rng, 91);
    const bwd_case c = {2, 9, 4, 2, 8, 1, cap, window, alibi};
    const float slopes[4] = {0.5f, 0.25f, 0.125f, 0.0625f};
    const int64_t nq = (int64_t)c.B * c.T * c.H * c.d, nk = (int64_t)c.B * c.T * c.Hk * c.d;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *dz = malloc(nq * 4), *z = malloc(nq * 4);
    float *dq = malloc(nq * 4), *dk = malloc(nk * 4), *dv = malloc(nk * 4);
    hs_test_fill_normal(&rng, q, nq, 1), hs_test_fill_normal(&rng, k, nk, 1), hs_test_fill_normal(&rng, v, nk, 1);
    hs_test_fill_normal(&rng, dz, nq, 1);
    int32_t *mask = make_mask(&rng, &c);
    const float hsc[2 * 4] = {1.0f, 0.0f, 0.5f, -2.0f, 1.5f, 1.0f, 0.25f, 1.0f}; /* [B, H] */
    hs_attn_params p = {.B = c.B, .T = c.T, .H = c.H, .H_kv = c.Hk, .d_head = c.d, .scale = 0.35f,
                        .softcap = c.cap, .window = c.window, .alibi = alibi ? slopes : NULL, .q = q, .k = k, .v = v,
                        .key_mask = mask, .head_scale = hsc};
    cr_assert_eq(be->ops->attention_bwd(be, &p, dz, dq, dk, dv, &err), HS_OK, "%s", err.msg);
    float *ins[3] = {q, k, v}, *grads[3] = {dq, dk, dv};
    const int64_t ns[3] = {nq, nk, nk};
    const char *names[3] = {"dq", "dk", "dv"};
    for (int w = 0; w < 3; w++) {
        const double sc = hs_test_max_abs(grads[w], ns[w]);
        for (int64_t i = 0; i < ns[w]; i += 3) {
            const float x0 = ins[w][i], h = 1e-2f;
            ins[w][i] = x0 + h;
            const double up = attn_objective(be, p, dz, z, nq);
            ins[w][i] = x0 - h;
            const double dn = attn_objective(be, p, dz, z, nq);
            ins[w][i] = x0;
            const double fd = (up - dn) / (2.0 * h);
            cr_assert(fabs(fd - grads[w][i]) <= 2e-3 * sc + 1e-4,
                      "cap %g window %d alibi %d: %s[%lld]: op %g, finite difference %g", (double)cap, window, alibi,
                      names[w], (long long)i, grads[w][i], fd);
        }
    }
    free(q), free(k), free(v), free(dz), free(z), free(dq), free(dk), free(dv), free(mask);
    hs_backend_free(be);
}

Test(cuda_backward_cpu, attention_bwd_matches_finite_differences) { attention_bwd_fd(0.0f, 0, 0); }
Test(cuda_backward_cpu, attention_bwd_softcap_matches_finite_differences) { attention_bwd_fd(1.0f, 0, 0); }
Test(cuda_backward_cpu, attention_bwd_window_matches_finite_differences) { attention_bwd_fd(0.0f, 3, 0); }
Test(cuda_backward_cpu, attention_bwd_alibi_matches_finite_differences) { attention_bwd_fd(0.0f, 0, 1); }

/* norm_bwd against central differences of the norm op, every kind, one weight row for every
 * row and one per row (w_rows: per-head q/k norms). */
Test(cuda_backward_cpu, norm_bwd_matches_finite_differences) {
    hs_backend *be = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK, "%s", err.msg);
    hs_test_rng rng;
    hs_test_rng_seed(&rng, 92);
    enum { R = 6, D = 16 }; /* w_rows 3 below: rows 3-5 wrap round to weight rows 0-2 */
    float x[R * D], w[R * D], b[R * D], dy[R * D], dx[R * D], y[R * D];
    hs_test_fill_normal(&rng, x, R * D, 1), hs_test_fill_normal(&rng, w, R * D, 1), hs_test_fill_normal(&rng, b, R * D, 1);
    hs_test_fill_normal(&rng, dy, R * D, 1);
    for (int kind = 0; kind < 6; kind++) {
        const hs_norm_kind nk = kind % 3 == 2 ? HS_NORM_RMSNORM_1P : kind % 3 ? HS_NORM_RMSNORM : HS_NORM_LAYERNORM;
        const int wr = kind < 3 ? 1 : 3;
        cr_assert_eq(be->ops->norm_bwd(be, nk, x, w, 1e-5f, R, D, wr, dy, 0, dx, &err), HS_OK, "%s", err.msg);
        for (int i = 0; i < R * D; i++) {
            const float x0 = x[i], h = 1e-2f;
            double f[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                x[i] = x0 + (sgn ? -h : h);
                cr_assert_eq(be->ops->norm(be, nk, x, w, kind % 3 ? NULL : b, 1e-5f, R, D, wr, y, &err), HS_OK);
                f[sgn] = 0;
                for (int j = 0; j < R * D; j++) f[sgn] += (double)dy[j] * y[j];
            }
            x[i] = x0;
            const double fd = (f[0] - f[1]) / (2.0 * h);
            cr_assert(fabs(fd - dx[i]) <= 2e-3 * (1 + fabs(fd)), "%s (w_rows %d) dx[%d]: op %g, finite difference %g",
                      kind % 3 == 2 ? "rmsnorm_1p" : kind % 3 ? "rmsnorm" : "layernorm", wr, i, dx[i], fd);
        }
        if (wr == 1) continue;
        /* row r with weight row r % 3: the same as that row alone with w_rows 1 and those weights */
        float one[D];
        cr_assert_eq(be->ops->norm(be, nk, x, w, kind % 3 ? NULL : b, 1e-5f, R, D, wr, y, &err), HS_OK);
        for (int r = 0; r < R; r++) {
            const int wrow = r % wr;
            cr_assert_eq(be->ops->norm(be, nk, x + r * D, w + wrow * D, kind % 3 ? NULL : b + wrow * D, 1e-5f, 1, D, 1,
                                       one, &err),
                         HS_OK);
            cr_assert_eq(memcmp(one, y + r * D, sizeof one), 0, "row %d does not read weight row %d", r, wrow);
        }
    }
    hs_backend_free(be);
}
