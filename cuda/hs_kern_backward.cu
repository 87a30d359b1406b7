/* hs_kern_backward: the CUDA backend's backward ops (input gradients only;
 * contracts in hs_backend.h), for the gradient head importance. Written for
 * clarity and determinism rather than speed: every reduction is a fixed-order
 * tree (warp shuffles, or a block tree), no atomics, so a run gives the same
 * bits every time; the CPU backend (hs_backend_cpu_bwd.c) is the reference
 * they are tested against. Attention's backward recomputes P from q, k and
 * the row log-sum-exp (FlashAttention's D_t = sum_s P_ts dP_ts trick) in
 * three passes: row statistics, dQ by query row, dK and dV by key row. */
#include "hs_block_reduce.cuh"
#include "hs_cuda_backend.cuh"

#include <limits.h>
#include <math.h>

typedef __nv_bfloat16 bf16;

#define HS_BWD_THREADS HS_RED_THREADS

__device__ __forceinline__ float hs_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ---- matmul: dx[M,K] (+)= dy[M,N] · w[N,K] ---------------------------------------- */

hs_status hs_cuda_matmul_bwd(hs_cuda_backend *be, const void *dy, const void *w, int64_t M, int N, int K,
                             int accumulate, void *dx, hs_err *err) {
    if (M < 0 || N <= 0 || K <= 0)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda matmul_bwd: bad shape M=%lld N=%d K=%d", (long long)M, N, K);
    if (M == 0) return HS_OK;
    if (M > INT_MAX) return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda matmul_bwd: M=%lld too large", (long long)M);
    /* column-major: dxᵀ[K,M] = w (K x N, ld K) · dyᵀ (N x M, ld N) */
    const cudaDataType_t t = be->dtype == HS_DTYPE_F32 ? CUDA_R_32F : CUDA_R_16BF;
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    HS_CUBLAS_CHECK(err, cublasGemmEx(be->blas, CUBLAS_OP_N, CUBLAS_OP_N, K, (int)M, N, &alpha, w, t, K, dy, t, N,
                                      &beta, dx, t, K, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return HS_OK;
}

/* ---- norms: one block per row --------------------------------------------------- */

template <typename T>
__global__ void __launch_bounds__(HS_BWD_THREADS)
    hs_k_norm_bwd(int layernorm, float w0, const T *x, const T *wt, float eps, int d, int w_rows, const T *dy,
                  int accumulate, T *dx) {
    __shared__ float sh[HS_BWD_THREADS];
    const int64_t r = blockIdx.x;
    const T *xr = x + r * d, *dyr = dy + r * d, *w = wt + (r % w_rows) * d;
    T *dxr = dx + r * d;
    float mean = 0.0f;
    if (layernorm) {
        float s = 0.0f;
        for (int i = threadIdx.x; i < d; i += HS_BWD_THREADS) s += hs_ld(xr + i);
        mean = hs_block_reduce<false>(s, sh) / (float)d;
    }
    float ss = 0.0f;
    for (int i = threadIdx.x; i < d; i += HS_BWD_THREADS) {
        const float c = hs_ld(xr + i) - mean;
        ss += c * c;
    }
    const float inv = 1.0f / sqrtf(hs_block_reduce<false>(ss, sh) / (float)d + eps);
    float gs = 0.0f, gx = 0.0f;
    for (int i = threadIdx.x; i < d; i += HS_BWD_THREADS) {
        const float g = hs_ld(dyr + i) * (w0 + hs_ld(w + i)); /* w0: 1 for (1 + w) */
        gs += g;
        gx += g * (hs_ld(xr + i) - mean) * inv;
    }
    const float g_mean = layernorm ? hs_block_reduce<false>(gs, sh) / (float)d : 0.0f;
    const float gx_mean = hs_block_reduce<false>(gx, sh) / (float)d;
    for (int i = threadIdx.x; i < d; i += HS_BWD_THREADS) {
        const float g = hs_ld(dyr + i) * (w0 + hs_ld(w + i)), xh = (hs_ld(xr + i) - mean) * inv;
        const float v = inv * (g - g_mean - xh * gx_mean);
        hs_st(dxr + i, accumulate ? hs_ld(dxr + i) + v : v);
    }
}

/* ---- activations: elementwise --------------------------------------------------- */

/* gelu: 0 = SiLU-GLU, 1 = gelu_new (tanh), 2 = gelu (erf), 3 = GeGLU, 4 = ReLU. */
template <typename T>
__global__ void hs_k_act_bwd(int gelu, const T *gate, const T *up, const T *dout, int64_t n, T *dgate, T *dup) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float d = hs_ld(dout + i);
        if (gelu == 1) {
            const float x = hs_ld(up + i), c = 0.7978845608028654f, t = tanhf(c * (x + 0.044715f * x * x * x));
            hs_st(dup + i, d * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * c * (1.0f + 3.0f * 0.044715f * x * x)));
        } else if (gelu == 2) { /* Phi(x) + x phi(x) */
            const float x = hs_ld(up + i);
            hs_st(dup + i, d * (0.5f * (1.0f + erff(x * 0.7071067811865476f)) +
                                x * 0.3989422804014327f * expf(-0.5f * x * x)));
        } else if (gelu == 4) { /* torch's threshold_backward: the gradient where up > 0 */
            hs_st(dup + i, hs_ld(up + i) > 0.0f ? d : 0.0f);
        } else if (gelu == 3) { /* GeGLU: out = gelu_tanh(gate) * up */
            const float x = hs_ld(gate + i), c = 0.7978845608028654f, t = tanhf(c * (x + 0.044715f * x * x * x));
            hs_st(dup + i, d * 0.5f * x * (1.0f + t));
            hs_st(dgate + i, d * hs_ld(up + i) *
                                 (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * c * (1.0f + 3.0f * 0.044715f * x * x)));
        } else {
            const float x = hs_ld(gate + i), s = 1.0f / (1.0f + expf(-x));
            hs_st(dup + i, d * x * s);
            hs_st(dgate + i, d * hs_ld(up + i) * s * (1.0f + x * (1.0f - s)));
        }
    }
}

/* dx = dy * (1 - (y / cap)^2); dx may be dy (each element read before written). */
template <typename T> __global__ void hs_k_softcap_bwd(const T *y, const T *dy, int64_t n, float cap, T *dx) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float t = hs_ld(y + i) / cap;
        hs_st(dx + i, hs_ld(dy + i) * (1.0f - t * t));
    }
}

/* ---- -log p(target): one block per row ---------------------------------------- */

template <typename T>
__global__ void __launch_bounds__(HS_BWD_THREADS)
    hs_k_logprob_grad(const T *logits, const int32_t *targets, int V, T *dl) {
    __shared__ float sh[HS_BWD_THREADS];
    const int64_t r = blockIdx.x;
    const int tg = targets[r];
    const T *x = logits + r * V;
    T *g = dl + r * V;
    if (tg < 0) { /* uniform per block */
        for (int i = threadIdx.x; i < V; i += HS_BWD_THREADS) hs_st(g + i, 0.0f);
        return;
    }
    float mx;
    const float sum = hs_block_row_sumexp(x, V, sh, &mx); /* every read of x is done: g may alias it */
    for (int i = threadIdx.x; i < V; i += HS_BWD_THREADS) hs_st(g + i, expf(hs_ld(x + i) - mx) / sum - (i == tg));
}

/* ---- head_dot: one block per (b, h) ---------------------------------------------- */

template <typename T>
__global__ void __launch_bounds__(HS_BWD_THREADS)
    hs_k_head_dot(const T *a, const T *c, int Tn, int H, int d, float *out) {
    __shared__ float sh[HS_BWD_THREADS];
    const int b = blockIdx.x / H, h = blockIdx.x % H;
    float acc = 0.0f;
    for (int64_t i = threadIdx.x; i < (int64_t)Tn * d; i += HS_BWD_THREADS) {
        const int64_t o = (((int64_t)b * Tn + i / d) * H + h) * d + i % d;
        acc += hs_ld(a + o) * hs_ld(c + o);
    }
    acc = hs_block_reduce<false>(acc, sh);
    if (threadIdx.x == 0) out[blockIdx.x] = acc;
}

hs_status hs_cuda_head_dot(cudaStream_t st, hs_dtype dt, const void *a, const void *c, int B, int T, int H, int d,
                           float *out, hs_err *err) {
    if (B <= 0 || H <= 0) return HS_OK;
    if ((int64_t)B * H > 0x7fffffff) return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda head_dot: %d x %d", B, H);
    const unsigned grid = (unsigned)((int64_t)B * H);
    if (dt == HS_DTYPE_BF16)
        hs_k_head_dot<bf16><<<grid, HS_BWD_THREADS, 0, st>>>((const bf16 *)a, (const bf16 *)c, T, H, d, out);
    else
        hs_k_head_dot<float><<<grid, HS_BWD_THREADS, 0, st>>>((const float *)a, (const float *)c, T, H, d, out);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_head_dot");
    return HS_OK;
}

/* ---- attention ------------------------------------------------------------------- */

#define HS_BWD_WARPS 4
/* DPL, the kernels' template parameter: d_head values per lane, 4 (d_head <= 128) or 8 (256: Gemma 2). */

typedef struct {
    int B, T, H, Hk, d;
    float scale, softcap, softcap_inv; /* softcap > 0: scores are cap * tanh(scale q·k / cap); its inverse */
    int window; /* query t sees keys t - window < s <= t: the attention's window, or T */
    const float *alibi; /* [H] ALiBi slopes (key s of query t: + slope_h (s - t), never with a cap), or NULL */
    const void *q, *k, *v, *dz;
    const int32_t *mask;
    const float *hscale; /* [B, H]: z = hscale * P v, so dz acts as hscale * dz; NULL = ones */
    void *dq, *dk, *dv;
    float *lse, *D; /* [B, H, T] */
} hs_bwd_attn;

template <typename T, int DPL>
__device__ __forceinline__ void hs_bwd_load(const T *p, int d, float (&r)[DPL], float mul = 1.0f) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int c = 0; c < DPL; c++) r[c] = lane + 32 * c < d ? mul * hs_ld(p + lane + 32 * c) : 0.0f;
}

/* The head multiplier dz is scaled by (see hs_bwd_attn.hscale). */
__device__ __forceinline__ float hs_bwd_hs(const hs_bwd_attn &a, int b, int h) {
    return a.hscale ? a.hscale[b * a.H + h] : 1.0f;
}

template <int DPL> __device__ __forceinline__ float hs_bwd_dot(const float (&a)[DPL], const float (&b)[DPL]) {
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < DPL; c++) s += a[c] * b[c];
    return hs_warp_sum(s);
}
/* The scaled score of query t, head h for key `key`, rounded once (__fmul_rn, and ALiBi's bias
 * added by __fadd_rn): the log-sum-exp is built from it, and exp(score - lse) must see the same
 * value, not a fused multiply-add of the unrounded product (with one visible key, P would then
 * miss 1). */
template <int DPL>
__device__ __forceinline__ float hs_bwd_score(const hs_bwd_attn &a, const float (&q)[DPL], const float (&k)[DPL], int h,
                                              int t, int key) {
    float s = __fmul_rn(a.scale, hs_bwd_dot(q, k));
    if (a.alibi) s = __fadd_rn(s, __fmul_rn(a.alibi[h], (float)(key - t)));
    return a.softcap > 0.0f ? __fmul_rn(a.softcap, tanhf(s * a.softcap_inv)) : s;
}

/* The cap's derivative at a capped score sc: 1 - tanh^2 (1 without a cap). */
__device__ __forceinline__ float hs_bwd_capd(const hs_bwd_attn &a, float sc) {
    if (!(a.softcap > 0.0f)) return 1.0f;
    const float t = sc * a.softcap_inv;
    return 1.0f - t * t;
}

/* Pass 1, a warp per query row (b, h, t): lse_t, then D_t = sum_s P_ts dZ_t·v_s. */
template <typename T, int DPL> __global__ void __launch_bounds__(HS_BWD_WARPS * 32) hs_k_attn_bwd_rows(hs_bwd_attn a) {
    const int64_t row = (int64_t)blockIdx.x * HS_BWD_WARPS + (threadIdx.x >> 5);
    if (row >= (int64_t)a.B * a.H * a.T) return;
    const int t = (int)(row % a.T), h = (int)(row / a.T % a.H), b = (int)(row / ((int64_t)a.T * a.H));
    const int hk = h / (a.H / a.Hk);
    float qv[DPL], dzv[DPL], kv[DPL];
    hs_bwd_load((const T *)a.q + (((int64_t)b * a.T + t) * a.H + h) * a.d, a.d, qv);
    hs_bwd_load((const T *)a.dz + (((int64_t)b * a.T + t) * a.H + h) * a.d, a.d, dzv, hs_bwd_hs(a, b, h));
    float m = -INFINITY, l = 0.0f;
    const int s0 = max(0, t - a.window + 1);
    for (int s = s0; s <= t; s++) {
        if (a.mask && !a.mask[(int64_t)b * a.T + s]) continue;
        hs_bwd_load((const T *)a.k + (((int64_t)b * a.T + s) * a.Hk + hk) * a.d, a.d, kv);
        const float sc = hs_bwd_score(a, qv, kv, h, t, s), mn = fmaxf(m, sc);
        l = l * expf(m - mn) + expf(sc - mn);
        m = mn;
    }
    /* l != 0, not l > 0: a NaN score must reach the gradients, as on the CPU, not read as a row
     * with no visible key. */
    const float lse = l != 0.0f ? m + logf(l) : -INFINITY;
    float D = 0.0f;
    for (int s = s0; s <= t && l != 0.0f; s++) {
        if (a.mask && !a.mask[(int64_t)b * a.T + s]) continue;
        hs_bwd_load((const T *)a.k + (((int64_t)b * a.T + s) * a.Hk + hk) * a.d, a.d, kv);
        const float p = expf(hs_bwd_score(a, qv, kv, h, t, s) - lse);
        hs_bwd_load((const T *)a.v + (((int64_t)b * a.T + s) * a.Hk + hk) * a.d, a.d, kv);
        D += p * hs_bwd_dot(dzv, kv);
    }
    if ((threadIdx.x & 31) == 0) a.lse[row] = lse, a.D[row] = D;
}

/* Pass 2, a warp per query row: dq_t = scale sum_s P_ts (dP_ts - D_t) c_ts k_s, c the cap's
 * derivative (1 without a cap). */
template <typename T, int DPL> __global__ void __launch_bounds__(HS_BWD_WARPS * 32) hs_k_attn_bwd_dq(hs_bwd_attn a) {
    const int64_t row = (int64_t)blockIdx.x * HS_BWD_WARPS + (threadIdx.x >> 5);
    if (row >= (int64_t)a.B * a.H * a.T) return;
    const int t = (int)(row % a.T), h = (int)(row / a.T % a.H), b = (int)(row / ((int64_t)a.T * a.H));
    const int hk = h / (a.H / a.Hk), lane = threadIdx.x & 31;
    const int64_t qo = (((int64_t)b * a.T + t) * a.H + h) * a.d;
    float qv[DPL], dzv[DPL], kv[DPL], vv[DPL], acc[DPL] = {};
    hs_bwd_load((const T *)a.q + qo, a.d, qv);
    hs_bwd_load((const T *)a.dz + qo, a.d, dzv, hs_bwd_hs(a, b, h));
    const float lse = a.lse[row], D = a.D[row];
    for (int s = max(0, t - a.window + 1); s <= t && lse != -INFINITY; s++) {
        if (a.mask && !a.mask[(int64_t)b * a.T + s]) continue;
        const int64_t ko = (((int64_t)b * a.T + s) * a.Hk + hk) * a.d;
        hs_bwd_load((const T *)a.k + ko, a.d, kv);
        hs_bwd_load((const T *)a.v + ko, a.d, vv);
        const float sc = hs_bwd_score(a, qv, kv, h, t, s), p = expf(sc - lse),
                    ds = p * (hs_bwd_dot(dzv, vv) - D) * hs_bwd_capd(a, sc);
#pragma unroll
        for (int c = 0; c < DPL; c++) acc[c] += ds * kv[c];
    }
#pragma unroll
    for (int c = 0; c < DPL; c++)
        if (lane + 32 * c < a.d) hs_st((T *)a.dq + qo + lane + 32 * c, a.scale * acc[c]);
}

/* Pass 3, a warp per key row (b, hk, s): over the group's heads and the
 * queries t >= s that see key s, dv_s = sum P_ts dZ_t, dk_s = scale sum dS_ts q_t.
 * At least 8 blocks per SM (<= 64 registers; 4 blocks, <= 128, for DPL 8,
 * whose six per-lane arrays alone take 48): with the thread bound alone,
 * ptxas for sm_90 chose 56 registers and spilled 4 bytes
 * (scripts/check-cuda-resources.py). */
template <typename T, int DPL>
__global__ void __launch_bounds__(HS_BWD_WARPS * 32, DPL <= 4 ? 8 : 4) hs_k_attn_bwd_dkv(hs_bwd_attn a) {
    const int64_t row = (int64_t)blockIdx.x * HS_BWD_WARPS + (threadIdx.x >> 5);
    if (row >= (int64_t)a.B * a.Hk * a.T) return;
    const int s = (int)(row % a.T), hk = (int)(row / a.T % a.Hk), b = (int)(row / ((int64_t)a.T * a.Hk));
    const int grp = a.H / a.Hk, lane = threadIdx.x & 31;
    const int64_t ko = (((int64_t)b * a.T + s) * a.Hk + hk) * a.d;
    float kv[DPL], vv[DPL], qv[DPL], dzv[DPL], dk[DPL] = {}, dv[DPL] = {};
    hs_bwd_load((const T *)a.k + ko, a.d, kv);
    hs_bwd_load((const T *)a.v + ko, a.d, vv);
    const int visible = !a.mask || a.mask[(int64_t)b * a.T + s];
    for (int h = hk * grp; h < (hk + 1) * grp && visible; h++)
        for (int t = s; t < a.T && t - s < a.window; t++) {
            const int64_t r = ((int64_t)b * a.H + h) * a.T + t;
            const float lse = a.lse[r];
            if (lse == -INFINITY) continue;
            const int64_t qo = (((int64_t)b * a.T + t) * a.H + h) * a.d;
            hs_bwd_load((const T *)a.q + qo, a.d, qv);
            hs_bwd_load((const T *)a.dz + qo, a.d, dzv, hs_bwd_hs(a, b, h));
            const float sc = hs_bwd_score(a, qv, kv, h, t, s), p = expf(sc - lse),
                        ds = p * (hs_bwd_dot(dzv, vv) - a.D[r]) * hs_bwd_capd(a, sc);
#pragma unroll
            for (int c = 0; c < DPL; c++) dv[c] += p * dzv[c], dk[c] += ds * qv[c];
        }
#pragma unroll
    for (int c = 0; c < DPL; c++)
        if (lane + 32 * c < a.d) {
            hs_st((T *)a.dk + ko + lane + 32 * c, a.scale * dk[c]);
            hs_st((T *)a.dv + ko + lane + 32 * c, dv[c]);
        }
}

/* ---- launchers ------------------------------------------------------------------ */

template <typename T>
static hs_status hs_bwd_launch_norm(cudaStream_t st, int ln, float w0, const void *x, const void *w, float eps,
                                    int64_t rows, int d, int w_rows, const void *dy, int acc, void *dx, hs_err *err) {
    hs_k_norm_bwd<T><<<(unsigned)rows, HS_BWD_THREADS, 0, st>>>(ln, w0, (const T *)x, (const T *)w, eps, d, w_rows,
                                                                (const T *)dy, acc, (T *)dx);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_norm_bwd");
    return HS_OK;
}

hs_status hs_cuda_norm_bwd(cudaStream_t st, hs_dtype dt, hs_norm_kind kind, const void *x, const void *w, float eps,
                           int64_t rows, int d, int w_rows, const void *dy, int accumulate, void *dx, hs_err *err) {
    if (rows <= 0 || d <= 0) return HS_OK;
    if (w_rows < 1) return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda norm_bwd: w_rows %d", w_rows);
    if (rows > 0x7fffffff) return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda norm_bwd: %lld rows", (long long)rows);
    if (kind != HS_NORM_LAYERNORM && kind != HS_NORM_RMSNORM && kind != HS_NORM_RMSNORM_1P)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda norm_bwd: unknown kind %d", (int)kind);
    const int ln = kind == HS_NORM_LAYERNORM;
    const float w0 = kind == HS_NORM_RMSNORM_1P ? 1.0f : 0.0f;
    return dt == HS_DTYPE_BF16 ? hs_bwd_launch_norm<bf16>(st, ln, w0, x, w, eps, rows, d, w_rows, dy, accumulate, dx, err)
                               : hs_bwd_launch_norm<float>(st, ln, w0, x, w, eps, rows, d, w_rows, dy, accumulate, dx,
                                                           err);
}

hs_status hs_cuda_act_bwd(cudaStream_t st, hs_dtype dt, hs_act_kind kind, const void *gate, const void *up,
                          const void *dout, int64_t n, void *dgate, void *dup, hs_err *err) {
    if (n <= 0) return HS_OK;
    if (kind != HS_ACT_GELU_NEW && kind != HS_ACT_GELU && kind != HS_ACT_GELU_GLU && kind != HS_ACT_SILU_GLU &&
        kind != HS_ACT_RELU)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda act_bwd: unknown activation %d", (int)kind);
    const int gelu = kind == HS_ACT_GELU_NEW ? 1 : kind == HS_ACT_GELU ? 2 : kind == HS_ACT_GELU_GLU ? 3
                     : kind == HS_ACT_RELU   ? 4 : 0;
    const unsigned grid = hs_cuda_grid_1d(n, HS_BWD_THREADS);
    if (dt == HS_DTYPE_BF16)
        hs_k_act_bwd<bf16><<<grid, HS_BWD_THREADS, 0, st>>>(gelu, (const bf16 *)gate, (const bf16 *)up,
                                                            (const bf16 *)dout, n, (bf16 *)dgate, (bf16 *)dup);
    else
        hs_k_act_bwd<float><<<grid, HS_BWD_THREADS, 0, st>>>(gelu, (const float *)gate, (const float *)up,
                                                             (const float *)dout, n, (float *)dgate, (float *)dup);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_act_bwd");
    return HS_OK;
}

hs_status hs_cuda_softcap_bwd(cudaStream_t st, hs_dtype dt, const void *y, const void *dy, int64_t n, float cap,
                              void *dx, hs_err *err) {
    if (n <= 0) return HS_OK;
    if (!(cap > 0.0f)) return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda softcap_bwd: cap %g must be positive", (double)cap);
    const unsigned grid = hs_cuda_grid_1d(n, HS_BWD_THREADS);
    if (dt == HS_DTYPE_BF16)
        hs_k_softcap_bwd<bf16><<<grid, HS_BWD_THREADS, 0, st>>>((const bf16 *)y, (const bf16 *)dy, n, cap, (bf16 *)dx);
    else
        hs_k_softcap_bwd<float><<<grid, HS_BWD_THREADS, 0, st>>>((const float *)y, (const float *)dy, n, cap, (float *)dx);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_softcap_bwd");
    return HS_OK;
}

hs_status hs_cuda_logprob_grad(cudaStream_t st, hs_dtype dt, const void *logits, const int32_t *targets, int64_t R,
                               int V, void *dlogits, hs_err *err) {
    if (R <= 0) return HS_OK;
    if (R > 0x7fffffff || V <= 0)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda logprob_grad: %lld rows of %d", (long long)R, V);
    if (dt == HS_DTYPE_BF16)
        hs_k_logprob_grad<bf16><<<(unsigned)R, HS_BWD_THREADS, 0, st>>>((const bf16 *)logits, targets, V,
                                                                        (bf16 *)dlogits);
    else
        hs_k_logprob_grad<float><<<(unsigned)R, HS_BWD_THREADS, 0, st>>>((const float *)logits, targets, V,
                                                                         (float *)dlogits);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_logprob_grad");
    return HS_OK;
}

template <typename T, int DPL>
static hs_status hs_bwd_launch_attn(cudaStream_t st, const hs_bwd_attn &a, hs_err *err) {
    const int64_t q_rows = (int64_t)a.B * a.H * a.T, k_rows = (int64_t)a.B * a.Hk * a.T;
    const unsigned gq = (unsigned)((q_rows + HS_BWD_WARPS - 1) / HS_BWD_WARPS),
                   gk = (unsigned)((k_rows + HS_BWD_WARPS - 1) / HS_BWD_WARPS);
    hs_k_attn_bwd_rows<T, DPL><<<gq, HS_BWD_WARPS * 32, 0, st>>>(a);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_attn_bwd_rows");
    hs_k_attn_bwd_dq<T, DPL><<<gq, HS_BWD_WARPS * 32, 0, st>>>(a);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_attn_bwd_dq");
    hs_k_attn_bwd_dkv<T, DPL><<<gk, HS_BWD_WARPS * 32, 0, st>>>(a);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_attn_bwd_dkv");
    return HS_OK;
}

template <typename T> static hs_status hs_bwd_dispatch_attn(cudaStream_t st, const hs_bwd_attn &a, hs_err *err) {
    return a.d <= 128 ? hs_bwd_launch_attn<T, 4>(st, a, err) : hs_bwd_launch_attn<T, 8>(st, a, err);
}

hs_status hs_cuda_attention_bwd(hs_cuda_backend *be, const hs_attn_params *p, const void *dz, void *dq, void *dk,
                                void *dv, hs_err *err) {
    if (p->uniform || p->set_idx)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda attention_bwd: uniform heads and SET edits are not supported");
    if (p->T_kv > 0)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda attention_bwd: keys from a cache (T_kv) are not supported");
    if (p->alibi && p->softcap > 0.0f)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda attention_bwd: ALiBi with a soft-cap is not supported");
    if (p->B <= 0 || p->T <= 0 || p->H <= 0 || p->H_kv <= 0 || p->H % p->H_kv || p->d_head <= 0)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda attention_bwd: bad sizes B=%d T=%d H=%d H_kv=%d d_head=%d",
                          p->B, p->T, p->H, p->H_kv, p->d_head);
    if (p->d_head > 256) return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda attention_bwd: d_head %d > 256", p->d_head);
    const size_t stat = (size_t)p->B * p->H * p->T * sizeof(float);
    hs_status st = hs_cuda_scratch(&be->bwd_tmp, &be->bwd_tmp_bytes, 2 * stat, err);
    if (st != HS_OK) return st;
    const float cap = p->softcap > 0.0f ? p->softcap : 0.0f;
    const int window = p->window > 0 && p->window < p->T ? p->window : p->T;
    hs_bwd_attn a = {p->B, p->T, p->H, p->H_kv, p->d_head, p->scale, cap, cap > 0.0f ? 1.0f / cap : 0.0f, window,
                     p->alibi, p->q, p->k, p->v, dz, p->key_mask, p->head_scale, dq, dk, dv, (float *)be->bwd_tmp,
                     (float *)((char *)be->bwd_tmp + stat)};
    return be->dtype == HS_DTYPE_BF16 ? hs_bwd_dispatch_attn<bf16>(be->stream, a, err)
                                      : hs_bwd_dispatch_attn<float>(be->stream, a, err);
}
