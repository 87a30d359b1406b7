/* hs_backend_cpu: the reference backend. f32 everywhere, OpenBLAS for the
 * projections, plain per-head loops for attention (readable on purpose: this is
 * what every other backend is checked against). */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_backend.h"
#include "hs_backend_cpu_internal.h"
#include "hs_simd.h"

static int nthreads(hs_backend *be) { return hs_cpu_threads(be); }

static hs_dtype cpu_act_dtype(hs_backend *be) { return HS_DTYPE_F32; }
static int cpu_supports_op(hs_backend *be, hs_op op) { return op >= 0 && op < HS_OP_COUNT; }

static hs_status cpu_alloc(hs_backend *be, size_t nbytes, void **out, hs_err *err) {
    /* 64-byte alignment for vector loads; never 0 bytes. */
    size_t n = (nbytes + 63) & ~(size_t)63;
    *out = aligned_alloc(64, n ? n : 64);
    if (!*out) return hs_err_set(err, HS_ERR_OOM, "cpu backend: cannot allocate %zu bytes", nbytes);
    return HS_OK;
}
static void cpu_free(hs_backend *be, void *p) { free(p); }
static hs_status cpu_copy(hs_backend *be, void *dst, const void *src, size_t n, hs_err *err) {
    memcpy(dst, src, n);
    return HS_OK;
}
static hs_status cpu_zero(hs_backend *be, void *dst, size_t n, hs_err *err) {
    memset(dst, 0, n);
    return HS_OK;
}
static hs_status cpu_copy_2d(hs_backend *be, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                              size_t width, size_t rows, hs_err *err) {
    if (dst_pitch < width || src_pitch < width)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "cpu backend: copy_2d pitch %zu/%zu below the row width %zu",
                          dst_pitch, src_pitch, width);
    for (size_t i = 0; i < rows; i++) memcpy((char *)dst + i * dst_pitch, (const char *)src + i * src_pitch, width);
    return HS_OK;
}
static hs_status cpu_copy_f32(hs_backend *be, float *dst, const void *src, int64_t n, hs_err *err) {
    memcpy(dst, src, (size_t)n * sizeof(float));
    return HS_OK;
}
static hs_status cpu_upload_f32(hs_backend *be, void *dst, const float *src, int64_t n, hs_err *err) {
    memcpy(dst, src, (size_t)n * sizeof(float));
    return HS_OK;
}
static hs_status cpu_sync(hs_backend *be, hs_err *err) { return HS_OK; }

static hs_status cpu_embed(hs_backend *be, const int32_t *tokens, const int32_t *pos, const void *tok_embd,
                           const void *pos_embd, int64_t n, int d, float scale, void *out, hs_err *err) {
    const float *te = tok_embd, *pe = pos_embd;
    float *y = out;
    for (int64_t i = 0; i < n; i++) {
        memcpy(y + i * d, te + (int64_t)tokens[i] * d, (size_t)d * sizeof(float));
        if (scale != 1.0f)
            for (int j = 0; j < d; j++) y[i * d + j] *= scale;
        if (pe)
            for (int j = 0; j < d; j++) y[i * d + j] += pe[(int64_t)pos[i] * d + j];
    }
    return HS_OK;
}

static hs_status cpu_norm(hs_backend *be, hs_norm_kind kind, const void *xv, const void *wv, const void *bv,
                          float eps, int64_t rows, int d, int w_rows, void *yv, hs_err *err) {
    if (w_rows < 1) return hs_err_set(err, HS_ERR_INVALID_ARG, "cpu norm: w_rows %d", w_rows);
    const float *x = xv;
    float *y = yv;
#pragma omp parallel for num_threads(nthreads(be)) if (rows > 16)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        float *yr = y + r * d;
        const float *w = (const float *)wv + (r % w_rows) * d, *b = bv ? (const float *)bv + (r % w_rows) * d : NULL;
        if (kind == HS_NORM_LAYERNORM) {
            float mean = 0, var = 0;
            for (int i = 0; i < d; i++) mean += xr[i];
            mean /= (float)d;
            for (int i = 0; i < d; i++) var += (xr[i] - mean) * (xr[i] - mean);
            var /= (float)d;
            float inv = 1.0f / sqrtf(var + eps);
            for (int i = 0; i < d; i++) yr[i] = (xr[i] - mean) * inv * w[i] + (b ? b[i] : 0.0f);
        } else {
            float ss = 0;
            for (int i = 0; i < d; i++) ss += xr[i] * xr[i];
            float inv = 1.0f / sqrtf(ss / (float)d + eps);
            const float w0 = kind == HS_NORM_RMSNORM_1P ? 1.0f : 0.0f;
            for (int i = 0; i < d; i++) yr[i] = (w0 + w[i]) * (xr[i] * inv);
        }
    }
    return HS_OK;
}

static hs_status cpu_matmul(hs_backend *be, const void *x, const void *w, const void *bias, int64_t M, int N,
                            int K, int accumulate, void *yv, hs_err *err) {
    float *y = yv;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, N, K, 1.0f, x, K, w, K, accumulate ? 1.0f : 0.0f,
                y, N);
    if (bias) {
        const float *b = bias;
        for (int64_t i = 0; i < M; i++)
            for (int j = 0; j < N; j++) y[i * N + j] += b[j];
    }
    return HS_OK;
}

static hs_status cpu_rope(hs_backend *be, hs_rope_kind kind, void *xv, const int32_t *pos, int64_t n, int H,
                          int dh, int rot, const float *inv, float scale, hs_err *err) {
    float *x = xv;
    if (rot <= 0 || rot > dh || rot % 2 || !inv)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "rope: rotary dims %d must be even and within d_head %d, with %s",
                          rot, dh, inv ? "frequencies" : "no frequency table");
    int half = rot / 2; /* dims from rot on pass through (partial rotary) */
    for (int64_t r = 0; r < n; r++) {
        for (int i = 0; i < half; i++) {
            float ang = (float)pos[r] * inv[i], c = cosf(ang) * scale, s = sinf(ang) * scale;
            for (int h = 0; h < H; h++) {
                float *v = x + (r * H + h) * dh;
                int a = kind == HS_ROPE_NORMAL ? 2 * i : i, b = kind == HS_ROPE_NORMAL ? 2 * i + 1 : i + half;
                float x1 = v[a], x2 = v[b];
                v[a] = x1 * c - x2 * s;
                v[b] = x2 * c + x1 * s;
            }
        }
    }
    return HS_OK;
}


/* Attention for one (b, h) pair: S = q kᵀ (BLAS, strided views of the
 * [B, T, H, d_head] buffers), masked softmax row by row, z = P v (BLAS).
 * Query t sits at key position q0 + t (q0 = q_pos[b] when the keys come from
 * a cache, else 0), so only the first nk = q0 + T keys can be visible.
 * scores is scratch of T*T_kv floats. Called inside an OpenMP loop: the
 * OpenMP build of OpenBLAS runs these small products single-threaded there. */
HS_SIMD_CLONES
static void attend_head(const hs_attn_params *p, int b, int h, float *scores) {
    const int T = p->T, H = p->H, Hk = p->H_kv, dh = p->d_head, hk = h / (p->H / p->H_kv);
    const int Tk = p->T_kv > 0 ? p->T_kv : T, q0 = p->T_kv > 0 && p->q_pos ? p->q_pos[b] : 0, nk = q0 + T;
    const float *q = (const float *)p->q + ((int64_t)b * T * H + h) * dh;
    const float *k = (const float *)p->k + ((int64_t)b * Tk * Hk + hk) * dh;
    const float *v = (const float *)p->v + ((int64_t)b * Tk * Hk + hk) * dh;
    float *z = (float *)p->z + ((int64_t)b * T * H + h) * dh;
    const float hscale = p->head_scale ? p->head_scale[b * H + h] : 1.0f, slope = p->alibi ? p->alibi[h] : 0.0f;
    const int uni = p->uniform && p->uniform[b * H + h];
    if (!uni)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, nk, dh, p->scale, q, H * dh, k, Hk * dh, 0.0f, scores,
                    nk);
    for (int t = 0; t < T; t++) {
        const int ta = q0 + t; /* the query's key position */
        float *row = scores + (int64_t)t * nk, mx = -INFINITY;
        for (int s = 0; s < nk; s++) {
            int visible = s <= ta && (p->window <= 0 || ta - s < p->window) && (!p->key_mask || p->key_mask[(int64_t)b * Tk + s]);
            /* uniform: equal scores; the cap divides as HF does (not by a reciprocal) */
            float x = row[s];
            if (p->alibi) x += slope * (float)(s - ta);
            row[s] = !visible ? -INFINITY : uni ? 0.0f : p->softcap > 0.0f ? p->softcap * tanhf(x / p->softcap) : x;
            if (row[s] > mx) mx = row[s];
        }
        float *lse = p->lse ? p->lse + ((int64_t)b * H + h) * T + t : NULL;
        if (mx == -INFINITY) { /* no visible key: z = 0, a zero pattern row */
            memset(row, 0, (size_t)nk * sizeof(float));
            if (lse) *lse = -INFINITY;
        } else {
            double sum = 0; /* in double, as row_logsumexp: long contexts have many small terms */
            for (int s = 0; s < nk; s++) {
                row[s] = row[s] == -INFINITY ? 0.0f : expf(row[s] - mx);
                sum += row[s];
            }
            if (lse) *lse = (float)((double)mx + log(sum));
            for (int s = 0; s < nk; s++) row[s] = (float)(row[s] / sum); /* as the backward recomputes it */
        }
        float *pr = !p->pattern                ? NULL
                    : !p->pattern_rows         ? p->pattern + (((int64_t)b * H + h) * T + t) * Tk
                    : p->pattern_rows[b] == t ? p->pattern + ((int64_t)b * H + h) * Tk
                                               : NULL;
        if (pr) {
            memcpy(pr, row, (size_t)nk * sizeof(float));
            memset(pr + nk, 0, (size_t)(Tk - nk) * sizeof(float)); /* keys past the query's position */
        }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, dh, nk, hscale, scores, nk, v, Hk * dh, 0.0f, z, H * dh);
    if (p->set_idx)
        for (int t = 0; t < T; t++) {
            const int32_t i = p->set_idx[((int64_t)b * T + t) * H + h];
            if (i >= 0) memcpy(z + (int64_t)t * H * dh, (const float *)p->set_src + (int64_t)i * dh, (size_t)dh * sizeof(float));
        }
}

static hs_status cpu_attention(hs_backend *be, const hs_attn_params *p, hs_err *err) {
    if (p->set_idx) { /* the reference checks the table the GPU kernels trust */
        if (!p->set_src) return hs_err_set(err, HS_ERR_INVALID_ARG, "attention: set_idx without set_src");
        for (int64_t i = 0; i < (int64_t)p->B * p->T * p->H; i++)
            if (p->set_idx[i] >= p->n_set)
                return hs_err_set(err, HS_ERR_INVALID_ARG, "attention: set_idx[%lld] = %d outside [0, %lld)",
                                  (long long)i, p->set_idx[i], (long long)p->n_set);
    }
    if (p->T_kv < 0 || (p->T_kv > 0 && p->T_kv < p->T))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "attention: T_kv %d below the %d queries", p->T_kv, p->T);
    for (int b = 0; p->T_kv > 0 && p->q_pos && b < p->B; b++)
        if (p->q_pos[b] < 0 || p->q_pos[b] > p->T_kv - p->T)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "attention: q_pos[%d] = %d outside [0, %d] (T_kv %d, T %d)", b,
                              p->q_pos[b], p->T_kv - p->T, p->T_kv, p->T);
    const int Tk = p->T_kv > 0 ? p->T_kv : p->T;
    int failed = 0;
#pragma omp parallel num_threads(nthreads(be))
    {
        float *prob = malloc((size_t)p->T * Tk * sizeof(float));
        if (!prob) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < p->B; b++)
            for (int h = 0; h < p->H; h++)
                if (prob) attend_head(p, b, h, prob);
        free(prob);
    }
    if (failed) return hs_err_set(err, HS_ERR_OOM, "attention: out of memory");
    return HS_OK;
}

HS_SIMD_CLONES
static hs_status cpu_act(hs_backend *be, hs_act_kind kind, const void *gv, const void *uv, int64_t n, void *ov,
                         hs_err *err) {
    const float *g = gv, *u = uv;
    float *o = ov;
#pragma omp parallel for num_threads(nthreads(be)) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        if (kind == HS_ACT_GELU_NEW || kind == HS_ACT_GELU_GLU) {
            const float x = kind == HS_ACT_GELU_GLU ? g[i] : u[i];
            const float y = 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
            o[i] = kind == HS_ACT_GELU_GLU ? y * u[i] : y;
        } else if (kind == HS_ACT_GELU) {
            o[i] = 0.5f * u[i] * (1.0f + erff(u[i] * 0.7071067811865476f));
        } else if (kind == HS_ACT_RELU) {
            o[i] = u[i] < 0.0f ? 0.0f : u[i]; /* NaN stays NaN, as in torch */
        } else {
            o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
        }
    }
    return HS_OK;
}

static hs_status cpu_add(hs_backend *be, void *yv, const void *xv, int64_t n, hs_err *err) {
    float *y = yv;
    const float *x = xv;
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
    return HS_OK;
}

static hs_status cpu_axpy(hs_backend *be, void *yv, float alpha, const void *xv, int64_t n, hs_err *err) {
    float *y = yv;
    const float *x = xv;
    for (int64_t i = 0; i < n; i++) y[i] = fmaf(alpha, x[i], y[i]);
    return HS_OK;
}

static hs_status cpu_softcap(hs_backend *be, const void *xv, int64_t n, float cap, void *yv, hs_err *err) {
    const float *x = xv;
    float *y = yv;
#pragma omp parallel for num_threads(nthreads(be)) if (n > 65536)
    for (int64_t i = 0; i < n; i++) y[i] = cap * tanhf(x[i] / cap);
    return HS_OK;
}

static hs_status cpu_clamp(hs_backend *be, const void *xv, int64_t n, float c, void *yv, hs_err *err) {
    const float *x = xv;
    float *y = yv;
#pragma omp parallel for num_threads(nthreads(be)) if (n > 65536)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] != x[i] ? x[i] : x[i] < -c ? -c : x[i] > c ? c : x[i];
    return HS_OK;
}

/* The sum in double: a float one over a 49152-word vocabulary drifts low by ~1e-4 relative
 * (small terms lost against the accumulator), which the loss would carry. */
HS_SIMD_CLONES
static float row_logsumexp(const float *x, int n) {
    float mx = x[0];
    double sum = 0.0;
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++) sum += expf(x[i] - mx);
    return (float)((double)mx + log(sum));
}

static hs_status cpu_target_logprob(hs_backend *be, const void *lv, const int32_t *tg, int64_t R, int V, float *out,
                                    hs_err *err) {
    const float *logits = lv;
#pragma omp parallel for num_threads(nthreads(be)) schedule(static)
    for (int64_t r = 0; r < R; r++)
        out[r] = tg[r] >= 0 ? logits[r * V + tg[r]] - row_logsumexp(logits + r * V, V) : NAN;
    return HS_OK;
}

static void cpu_destroy(hs_backend *be) { free(be); }

static const hs_backend_ops cpu_ops = {
    .version = HS_BACKEND_API_VERSION,
    .name = "cpu",
    .act_dtype = cpu_act_dtype,
    .supports_op = cpu_supports_op,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .zero = cpu_zero,
    .copy_2d = cpu_copy_2d,
    .upload_f32 = cpu_upload_f32,
    .download_f32 = cpu_copy_f32,
    .sync = cpu_sync,
    .embed = cpu_embed,
    .norm = cpu_norm,
    .matmul = cpu_matmul,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .act = cpu_act,
    .add = cpu_add,
    .axpy = cpu_axpy,
    .softcap = cpu_softcap,
    .clamp = cpu_clamp,
    .target_logprob = cpu_target_logprob,
    .matmul_bwd = hs_cpu_matmul_bwd,
    .norm_bwd = hs_cpu_norm_bwd,
    .act_bwd = hs_cpu_act_bwd,
    .softcap_bwd = hs_cpu_softcap_bwd,
    .clamp_bwd = hs_cpu_clamp_bwd,
    .attention_bwd = hs_cpu_attention_bwd,
    .logprob_grad = hs_cpu_logprob_grad,
    .head_dot = hs_cpu_head_dot,
    .destroy = cpu_destroy,
};

hs_status hs_backend_cpu_init(const hs_backend_params *p, hs_backend **out, hs_err *err) {
    hs_cpu_backend *be = calloc(1, sizeof *be);
    if (!be) return hs_err_set(err, HS_ERR_OOM, "cpu backend: out of memory");
    be->base.ops = &cpu_ops;
    be->base.device = HS_DEVICE_CPU;
    be->n_threads = (p && p->n_threads > 0) ? p->n_threads : omp_get_num_procs();
    /* OpenBLAS keeps its thread count per process; set it only when asked. */
    if (p && p->n_threads > 0) openblas_set_num_threads(p->n_threads);
    *out = &be->base;
    return HS_OK;
}
