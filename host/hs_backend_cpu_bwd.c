/* hs_backend_cpu_bwd: the CPU backend's backward ops (input gradients only),
 * the reference the other backends are held to. Sums over a row accumulate
 * in double (these gradients are compared with PyTorch autograd to ~1e-5);
 * elementwise math is f32, as in the forward ops, so it vectorises. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hs_backend_cpu_internal.h"
#include "hs_simd.h"

hs_status hs_cpu_matmul_bwd(hs_backend *be, const void *dy, const void *w, int64_t M, int N, int K, int accumulate,
                            void *dx, hs_err *err) {
    (void)be, (void)err;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, K, N, 1.0f, dy, N, w, K, accumulate ? 1.0f : 0.0f,
                dx, K);
    return HS_OK;
}

/* LayerNorm: dx = inv * (g - mean(g) - xhat * mean(g * xhat)); RMSNorm: the
 * same without the mean of g, xhat = x * inv; g = dy * w (dy * (1 + w) for
 * RMSNORM_1P). */
hs_status hs_cpu_norm_bwd(hs_backend *be, hs_norm_kind kind, const void *xv, const void *wv, float eps, int64_t rows,
                          int d, int w_rows, const void *dyv, int accumulate, void *dxv, hs_err *err) {
    if (w_rows < 1) return hs_err_set(err, HS_ERR_INVALID_ARG, "cpu norm_bwd: w_rows %d", w_rows);
    const float *x = xv, *dy = dyv;
    float *dx = dxv;
    const float w0 = kind == HS_NORM_RMSNORM_1P ? 1.0f : 0.0f;
#pragma omp parallel for num_threads(hs_cpu_threads(be)) if (rows > 16)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d, *dyr = dy + r * d, *w = (const float *)wv + (r % w_rows) * d;
        float *dxr = dx + r * d;
        double mean = 0, ss = 0;
        if (kind == HS_NORM_LAYERNORM) {
            for (int i = 0; i < d; i++) mean += xr[i];
            mean /= d;
        }
        for (int i = 0; i < d; i++) ss += (xr[i] - mean) * (xr[i] - mean);
        const double inv = 1.0 / sqrt(ss / d + eps);
        double g_mean = 0, gx_mean = 0;
        for (int i = 0; i < d; i++) {
            const double g = (double)dyr[i] * (w0 + w[i]);
            g_mean += g;
            gx_mean += g * (xr[i] - mean) * inv;
        }
        g_mean = kind == HS_NORM_LAYERNORM ? g_mean / d : 0.0;
        gx_mean /= d;
        for (int i = 0; i < d; i++) {
            const double g = (double)dyr[i] * (w0 + w[i]), xh = (xr[i] - mean) * inv;
            const float v = (float)(inv * (g - g_mean - xh * gx_mean));
            dxr[i] = accumulate ? dxr[i] + v : v;
        }
    }
    return HS_OK;
}

HS_SIMD_CLONES
hs_status hs_cpu_act_bwd(hs_backend *be, hs_act_kind kind, const void *gv, const void *uv, const void *dov, int64_t n,
                         void *dgv, void *duv, hs_err *err) {
    (void)err;
    const float *g = gv, *u = uv, *dout = dov;
    float *dg = dgv, *du = duv;
    if (kind == HS_ACT_GELU_NEW || kind == HS_ACT_GELU_GLU) {
        const int glu = kind == HS_ACT_GELU_GLU;
#pragma omp parallel for simd num_threads(hs_cpu_threads(be)) if (n > 65536)
        for (int64_t i = 0; i < n; i++) {
            const float x = glu ? g[i] : u[i], c = 0.7978845608028654f, t = tanhf(c * (x + 0.044715f * x * x * x));
            const float dgelu = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * c * (1.0f + 3.0f * 0.044715f * x * x);
            if (glu) { /* out = gelu(gate) * up */
                du[i] = dout[i] * 0.5f * x * (1.0f + t);
                dg[i] = dout[i] * u[i] * dgelu;
            } else {
                du[i] = dout[i] * dgelu;
            }
        }
        return HS_OK;
    }
    if (kind == HS_ACT_RELU) {
#pragma omp parallel for simd num_threads(hs_cpu_threads(be)) if (n > 65536)
        for (int64_t i = 0; i < n; i++) du[i] = u[i] > 0.0f ? dout[i] : 0.0f;
        return HS_OK;
    }
    if (kind == HS_ACT_GELU) { /* d/dx x Phi(x) = Phi(x) + x phi(x) */
#pragma omp parallel for simd num_threads(hs_cpu_threads(be)) if (n > 65536)
        for (int64_t i = 0; i < n; i++) {
            const float x = u[i];
            du[i] = dout[i] * (0.5f * (1.0f + erff(x * 0.7071067811865476f)) +
                               x * 0.3989422804014327f * expf(-0.5f * x * x));
        }
        return HS_OK;
    }
#pragma omp parallel for simd num_threads(hs_cpu_threads(be)) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i], s = 1.0f / (1.0f + expf(-x));
        du[i] = dout[i] * x * s;
        dg[i] = dout[i] * u[i] * s * (1.0f + x * (1.0f - s));
    }
    return HS_OK;
}

HS_SIMD_CLONES
hs_status hs_cpu_softcap_bwd(hs_backend *be, const void *yv, const void *dyv, int64_t n, float cap, void *dxv,
                             hs_err *err) {
    (void)err;
    const float *y = yv, *dy = dyv;
    float *dx = dxv;
#pragma omp parallel for simd num_threads(hs_cpu_threads(be)) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        const float t = y[i] / cap;
        dx[i] = dy[i] * (1.0f - t * t);
    }
    return HS_OK;
}

hs_status hs_cpu_clamp_bwd(hs_backend *be, const void *xv, const void *dyv, int64_t n, float c, void *dxv,
                           hs_err *err) {
    (void)err;
    const float *x = xv, *dy = dyv;
    float *dx = dxv;
#pragma omp parallel for simd num_threads(hs_cpu_threads(be)) if (n > 65536)
    for (int64_t i = 0; i < n; i++) dx[i] = x[i] > -c && x[i] < c ? dy[i] : 0.0f;
    return HS_OK;
}

/* One (batch row, kv head): for each query head of the group, recompute P,
 * then dP = dZ Vᵀ, dS = P ∘ (dP - rowsum(P ∘ dP)), dQ = scale dS K,
 * dK += scale dSᵀ Q, dV += Pᵀ dZ. S and dP are T*T scratch each. With a
 * softcap, dS also takes the cap's derivative 1 - tanh², kept in C (T*T).
 * ALiBi's biases join S before the cap, as in the forward. */
static void attend_head_bwd(const hs_attn_params *p, const float *dz, float *dq, float *dk, float *dv, int b, int hk,
                            float *S, float *dP, float *C) {
    const float cap = p->softcap;
    const int T = p->T, H = p->H, Hk = p->H_kv, dh = p->d_head, grp = H / Hk;
    const float *k = (const float *)p->k + ((int64_t)b * T * Hk + hk) * dh;
    const float *v = (const float *)p->v + ((int64_t)b * T * Hk + hk) * dh;
    float *dkb = dk + ((int64_t)b * T * Hk + hk) * dh, *dvb = dv + ((int64_t)b * T * Hk + hk) * dh;
    for (int h = hk * grp; h < (hk + 1) * grp; h++) {
        const int64_t qo = ((int64_t)b * T * H + h) * dh;
        const float *q = (const float *)p->q + qo, *dzb = dz + qo;
        const float hs = p->head_scale ? p->head_scale[b * H + h] : 1.0f; /* z = hs * P v */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, dh, p->scale, q, H * dh, k, Hk * dh, 0.0f, S, T);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, dh, hs, dzb, H * dh, v, Hk * dh, 0.0f, dP, T);
        for (int t = 0; t < T; t++) {
            float *s = S + (int64_t)t * T, *dp = dP + (int64_t)t * T, *cd = C ? C + (int64_t)t * T : NULL;
            float mx = -INFINITY;
            for (int j = 0; j < T; j++) {
                if (p->alibi) s[j] += p->alibi[h] * (float)(j - t); /* a constant in q and k: only P moves */
                if (cap > 0.0f) {
                    const float th = tanhf(s[j] / cap);
                    s[j] = cap * th, cd[j] = 1.0f - th * th;
                }
                if (j > t || (p->window > 0 && t - j >= p->window) || (p->key_mask && !p->key_mask[b * T + j]))
                    s[j] = -INFINITY;
                if (s[j] > mx) mx = s[j];
            }
            double sum = 0, pdp = 0;
            for (int j = 0; j < T; j++) {
                s[j] = (mx == -INFINITY || s[j] == -INFINITY) ? 0.0f : expf(s[j] - mx);
                sum += s[j];
            }
            for (int j = 0; j < T; j++) {
                s[j] = sum > 0 ? (float)(s[j] / sum) : 0.0f;
                pdp += (double)s[j] * dp[j];
            }
            for (int j = 0; j < T; j++) dp[j] = (float)(s[j] * (dp[j] - pdp)) * (cap > 0.0f ? cd[j] : 1.0f); /* dS */
        }
        const float beta = h == hk * grp ? 0.0f : 1.0f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, dh, T, p->scale, dP, T, k, Hk * dh, 0.0f, dq + qo,
                    H * dh);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, dh, T, p->scale, dP, T, q, H * dh, beta, dkb, Hk * dh);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, dh, T, hs, S, T, dzb, H * dh, beta, dvb, Hk * dh);
    }
}

hs_status hs_cpu_attention_bwd(hs_backend *be, const hs_attn_params *p, const void *dz, void *dq, void *dk, void *dv,
                               hs_err *err) {
    if (p->uniform || p->set_idx)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "attention_bwd: uniform heads and SET edits are not supported");
    if (p->T_kv > 0) return hs_err_set(err, HS_ERR_UNSUPPORTED, "attention_bwd: keys from a cache (T_kv) are not supported");
    int failed = 0;
#pragma omp parallel num_threads(hs_cpu_threads(be))
    {
        const size_t tt = (size_t)p->T * p->T * sizeof(float);
        float *S = malloc(tt), *dP = malloc(tt), *C = p->softcap > 0.0f ? malloc(tt) : NULL;
        if (!S || !dP || (p->softcap > 0.0f && !C)) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < p->B; b++)
            for (int hk = 0; hk < p->H_kv; hk++)
                if (S && dP && (C || !(p->softcap > 0.0f))) attend_head_bwd(p, dz, dq, dk, dv, b, hk, S, dP, C);
        free(S), free(dP), free(C);
    }
    if (failed) return hs_err_set(err, HS_ERR_OOM, "attention_bwd: out of memory");
    return HS_OK;
}

hs_status hs_cpu_logprob_grad(hs_backend *be, const void *lv, const int32_t *tg, int64_t R, int V, void *dv,
                              hs_err *err) {
    (void)err;
    const float *logits = lv;
    float *dl = dv;
#pragma omp parallel for num_threads(hs_cpu_threads(be)) schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const float *x = logits + r * V;
        float *g = dl + r * V;
        if (tg[r] < 0) {
            memset(g, 0, (size_t)V * sizeof(float));
            continue;
        }
        float mx = x[0];
        for (int i = 1; i < V; i++) mx = x[i] > mx ? x[i] : mx;
        double sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < V; i++) { /* g may alias x: each element is read before it is written */
            g[i] = expf(x[i] - mx);
            sum += g[i];
        }
        const float inv = (float)(1.0 / sum);
#pragma omp simd
        for (int i = 0; i < V; i++) g[i] *= inv;
        g[tg[r]] -= 1.0f;
    }
    return HS_OK;
}

hs_status hs_cpu_head_dot(hs_backend *be, const void *av, const void *cv, int B, int T, int H, int d, float *out,
                          hs_err *err) {
    (void)err;
    const float *a = av, *c = cv;
#pragma omp parallel for collapse(2) num_threads(hs_cpu_threads(be)) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            double acc = 0;
            for (int t = 0; t < T; t++) {
                const int64_t o = (((int64_t)b * T + t) * H + h) * d;
                for (int i = 0; i < d; i++) acc += (double)a[o + i] * c[o + i];
            }
            out[b * H + h] = (float)acc;
        }
    return HS_OK;
}
