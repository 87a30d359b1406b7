/* hs_kern_elementwise: the memory-bound ops of the CUDA backend (embedding
 * gather, LayerNorm/RMSNorm, RoPE, gelu_new, gelu, SiLU·gate and GELU·gate, softcap, clamp and
 * its backward, residual add, bias add, dtype conversion, seeded fills). Each is templated on the element type
 * (f32 or bf16); arithmetic is f32 and follows the CPU reference's formulas,
 * so the f32 mode agrees to rounding. Reductions are fixed-order:
 * deterministic. */
#include "hs_cuda_backend.cuh"

#include <math.h>

typedef __nv_bfloat16 bf16;

#define HS_EW_THREADS 256

/* ---- vector access: 16 bytes per load where the pointers allow ----------- */

template <typename T> struct hs_vec { static constexpr int n = 16 / (int)sizeof(T); };

template <typename T>
__device__ __forceinline__ void hs_ldv(const T *p, float *f) {
    uint4 u = *reinterpret_cast<const uint4 *>(p);
    const T *e = reinterpret_cast<const T *>(&u);
#pragma unroll
    for (int i = 0; i < hs_vec<T>::n; i++) f[i] = hs_ld(e + i);
}

template <typename T>
__device__ __forceinline__ void hs_stv(T *p, const float *f) {
    uint4 u;
    T *e = reinterpret_cast<T *>(&u);
#pragma unroll
    for (int i = 0; i < hs_vec<T>::n; i++) hs_st(e + i, f[i]);
    *reinterpret_cast<uint4 *>(p) = u;
}

static inline int hs_aligned16(const void *p) { return p == NULL || ((uintptr_t)p & 15) == 0; }

/* ---- elementwise maps: out = f(a, b) ---------------------------------------- */

struct hs_op_add {
    __device__ float operator()(float y, float x) const { return y + x; }
};
struct hs_op_axpy { /* a = y, b = x */
    float alpha;
    __device__ float operator()(float y, float x) const { return fmaf(alpha, x, y); }
};
struct hs_op_gelu_new { /* a unused; b = up */
    __device__ float operator()(float a, float x) const {
        return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    }
};
struct hs_op_gelu { /* the exact (erf) form; a unused; b = up */
    __device__ float operator()(float a, float x) const { return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f)); }
};
struct hs_op_relu { /* a unused; b = up; NaN stays NaN, as in torch */
    __device__ float operator()(float a, float x) const { return x < 0.0f ? 0.0f : x; }
};
struct hs_op_silu_glu { /* a = gate, b = up */
    __device__ float operator()(float g, float u) const { return g / (1.0f + expf(-g)) * u; }
};
struct hs_op_gelu_glu { /* a = gate, b = up: Gemma's GeGLU */
    __device__ float operator()(float g, float u) const {
        return 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g))) * u;
    }
};
struct hs_op_softcap { /* a unused; b = x; divides as HF does, not by a reciprocal */
    float cap;
    __device__ float operator()(float a, float x) const { return cap * tanhf(x / cap); }
};

struct hs_op_clamp { /* a unused; b = x; NaN passed on, as torch.clamp does */
    float c;
    __device__ float operator()(float a, float x) const { return x != x ? x : fminf(fmaxf(x, -c), c); }
};
struct hs_op_clamp_bwd { /* a = the clamp's input x, b = dy; zero on the bounds, as torch's */
    float c;
    __device__ float operator()(float x, float dy) const { return x > -c && x < c ? dy : 0.0f; }
};

/* out[i] = f(a[i], b[i]); a may be NULL (read as 0). The first nvec*V elements
 * go through 16-byte vectors when every pointer is 16-byte aligned. */
template <typename T, typename F>
__global__ void hs_k_map2(const T *a, const T *b, T *out, int64_t n, int64_t nvec, F f) {
    constexpr int V = hs_vec<T>::n;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t v = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; v < nvec; v += stride) {
        float fa[V], fb[V];
        if (a) hs_ldv(a + v * V, fa);
        else
            for (int i = 0; i < V; i++) fa[i] = 0.0f;
        hs_ldv(b + v * V, fb);
#pragma unroll
        for (int i = 0; i < V; i++) fa[i] = f(fa[i], fb[i]);
        hs_stv(out + v * V, fa);
    }
    for (int64_t i = nvec * V + (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        hs_st(out + i, f(a ? hs_ld(a + i) : 0.0f, hs_ld(b + i)));
}

template <typename T, typename F>
static hs_status hs_map2(cudaStream_t st, const void *a, const void *b, void *out, int64_t n, F f,
                         hs_err *err) {
    if (n <= 0) return HS_OK;
    const int V = hs_vec<T>::n;
    int64_t nvec = (hs_aligned16(a) && hs_aligned16(b) && hs_aligned16(out)) ? n / V : 0;
    unsigned grid = hs_cuda_grid_1d(nvec > 0 ? nvec : n, HS_EW_THREADS);
    hs_k_map2<T, F><<<grid, HS_EW_THREADS, 0, st>>>((const T *)a, (const T *)b, (T *)out, n, nvec, f);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_map2");
    return HS_OK;
}

#define HS_DISPATCH_DT(dt, FN, ...) \
    ((dt) == HS_DTYPE_F32 ? FN<float>(__VA_ARGS__) : FN<bf16>(__VA_ARGS__))

hs_status hs_cuda_add(cudaStream_t st, hs_dtype dt, void *y, const void *x, int64_t n,
                      hs_err *err) {
    return dt == HS_DTYPE_F32 ? hs_map2<float>(st, y, x, y, n, hs_op_add(), err)
                              : hs_map2<bf16>(st, y, x, y, n, hs_op_add(), err);
}

hs_status hs_cuda_axpy(cudaStream_t st, hs_dtype dt, void *y, float alpha, const void *x, int64_t n,
                       hs_err *err) {
    return dt == HS_DTYPE_F32 ? hs_map2<float>(st, y, x, y, n, hs_op_axpy{alpha}, err)
                              : hs_map2<bf16>(st, y, x, y, n, hs_op_axpy{alpha}, err);
}

hs_status hs_cuda_act(cudaStream_t st, hs_dtype dt, hs_act_kind kind, const void *gate,
                      const void *up, int64_t n, void *out, hs_err *err) {
    if (kind == HS_ACT_GELU_NEW)
        return dt == HS_DTYPE_F32 ? hs_map2<float>(st, NULL, up, out, n, hs_op_gelu_new(), err)
                                  : hs_map2<bf16>(st, NULL, up, out, n, hs_op_gelu_new(), err);
    if (kind == HS_ACT_GELU)
        return dt == HS_DTYPE_F32 ? hs_map2<float>(st, NULL, up, out, n, hs_op_gelu(), err)
                                  : hs_map2<bf16>(st, NULL, up, out, n, hs_op_gelu(), err);
    if (kind == HS_ACT_RELU)
        return dt == HS_DTYPE_F32 ? hs_map2<float>(st, NULL, up, out, n, hs_op_relu(), err)
                                  : hs_map2<bf16>(st, NULL, up, out, n, hs_op_relu(), err);
    if (hs_act_gated(kind) && !gate) return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda act: a gated MLP needs a gate");
    if (kind == HS_ACT_SILU_GLU)
        return dt == HS_DTYPE_F32 ? hs_map2<float>(st, gate, up, out, n, hs_op_silu_glu(), err)
                                  : hs_map2<bf16>(st, gate, up, out, n, hs_op_silu_glu(), err);
    if (kind == HS_ACT_GELU_GLU)
        return dt == HS_DTYPE_F32 ? hs_map2<float>(st, gate, up, out, n, hs_op_gelu_glu(), err)
                                  : hs_map2<bf16>(st, gate, up, out, n, hs_op_gelu_glu(), err);
    return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda act: unknown activation %d", (int)kind);
}

hs_status hs_cuda_softcap(cudaStream_t st, hs_dtype dt, const void *x, int64_t n, float cap, void *y, hs_err *err) {
    if (!(cap > 0.0f)) return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda softcap: cap %g must be positive", (double)cap);
    const hs_op_softcap f = {cap};
    return dt == HS_DTYPE_F32 ? hs_map2<float>(st, NULL, x, y, n, f, err) : hs_map2<bf16>(st, NULL, x, y, n, f, err);
}

hs_status hs_cuda_clamp(cudaStream_t st, hs_dtype dt, const void *x, int64_t n, float c, void *y, hs_err *err) {
    if (!(c > 0.0f)) return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda clamp: bound %g must be positive", (double)c);
    const hs_op_clamp f = {c};
    return dt == HS_DTYPE_F32 ? hs_map2<float>(st, NULL, x, y, n, f, err) : hs_map2<bf16>(st, NULL, x, y, n, f, err);
}

hs_status hs_cuda_clamp_bwd(cudaStream_t st, hs_dtype dt, const void *x, const void *dy, int64_t n, float c, void *dx,
                            hs_err *err) {
    if (!(c > 0.0f)) return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda clamp_bwd: bound %g must be positive", (double)c);
    if (!x) return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda clamp_bwd: NULL x");
    const hs_op_clamp_bwd f = {c};
    return dt == HS_DTYPE_F32 ? hs_map2<float>(st, x, dy, dx, n, f, err) : hs_map2<bf16>(st, x, dy, dx, n, f, err);
}

/* ---- embedding gather --------------------------------------------------------- */

template <typename T>
__global__ void hs_k_embed(const int32_t *tokens, const int32_t *pos, const T *tok, const T *pe,
                           int64_t n, int d, float scale, T *out) {
    for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
        const T *tr = tok + (int64_t)tokens[i] * d;
        const T *pr = pe ? pe + (int64_t)pos[i] * d : NULL;
        T *o = out + i * d;
        for (int c = threadIdx.x; c < d; c += blockDim.x) {
            float v = hs_ld(tr + c) * scale;
            if (pr) v += hs_ld(pr + c);
            hs_st(o + c, v);
        }
    }
}

template <typename T>
static hs_status hs_embed_t(cudaStream_t st, const int32_t *tokens, const int32_t *pos,
                            const void *tok, const void *pe, int64_t n, int d, float scale, void *out,
                            hs_err *err) {
    unsigned grid = (unsigned)(n < (1 << 20) ? n : (1 << 20));
    hs_k_embed<T><<<grid, 128, 0, st>>>(tokens, pos, (const T *)tok, (const T *)pe, n, d, scale, (T *)out);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_embed");
    return HS_OK;
}

hs_status hs_cuda_embed(cudaStream_t st, hs_dtype dt, const int32_t *tokens, const int32_t *pos,
                        const void *tok_embd, const void *pos_embd, int64_t n, int d, float scale, void *out,
                        hs_err *err) {
    if (n <= 0 || d <= 0) return HS_OK;
    if (pos_embd && !pos)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda embed: pos_embd given without positions");
    return HS_DISPATCH_DT(dt, hs_embed_t, st, tokens, pos, tok_embd, pos_embd, n, d, scale, out, err);
}

/* ---- LayerNorm / RMSNorm: one block per row ------------------------------------- */

/* Sum over the block, the same fixed order in every thread (deterministic);
 * sh holds one partial per warp. */
__device__ float hs_block_sum(float v, float *sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); /* the previous reduction's readers are done with sh */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    float t = 0.0f;
    for (int i = 0; i < nw; i++) t += sh[i];
    return t;
}

template <typename T>
__global__ void hs_k_norm(int layernorm, float w0, const T *x, const T *wt, const T *bt, float eps,
                          int64_t rows, int d, int w_rows, T *y) {
    __shared__ float sh[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const T *xr = x + r * d;
        T *yr = y + r * d;
        const int64_t wo = (r % w_rows) * d; /* this row's weight (and bias) row */
        const T *w = wt + wo, *b = bt ? bt + wo : nullptr;
        if (layernorm) {
            float s = 0.0f;
            for (int i = threadIdx.x; i < d; i += blockDim.x) s += hs_ld(xr + i);
            const float mean = hs_block_sum(s, sh) / (float)d;
            float v = 0.0f;
            for (int i = threadIdx.x; i < d; i += blockDim.x) {
                float c = hs_ld(xr + i) - mean;
                v += c * c;
            }
            const float inv = 1.0f / sqrtf(hs_block_sum(v, sh) / (float)d + eps);
            /* Each thread rewrites only what it read: y may alias x. */
            for (int i = threadIdx.x; i < d; i += blockDim.x)
                hs_st(yr + i, (hs_ld(xr + i) - mean) * inv * hs_ld(w + i) + (b ? hs_ld(b + i) : 0.0f));
        } else {
            float s = 0.0f;
            for (int i = threadIdx.x; i < d; i += blockDim.x) {
                float c = hs_ld(xr + i);
                s += c * c;
            }
            const float inv = 1.0f / sqrtf(hs_block_sum(s, sh) / (float)d + eps);
            for (int i = threadIdx.x; i < d; i += blockDim.x)
                hs_st(yr + i, (w0 + hs_ld(w + i)) * (hs_ld(xr + i) * inv)); /* w0: 1 for (1 + w) */
        }
    }
}

template <typename T>
static hs_status hs_norm_t(cudaStream_t st, int layernorm, float w0, const void *x, const void *w,
                           const void *b, float eps, int64_t rows, int d, int w_rows, void *y, hs_err *err) {
    int threads = d >= 2048 ? 512 : d >= 512 ? 256 : d >= 128 ? 128 : 32;
    unsigned grid = (unsigned)(rows < (1 << 20) ? rows : (1 << 20));
    hs_k_norm<T><<<grid, threads, 0, st>>>(layernorm, w0, (const T *)x, (const T *)w, (const T *)b, eps,
                                          rows, d, w_rows, (T *)y);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_norm");
    return HS_OK;
}

hs_status hs_cuda_norm(cudaStream_t st, hs_dtype dt, hs_norm_kind kind, const void *x,
                       const void *w, const void *b, float eps, int64_t rows, int d, int w_rows, void *y,
                       hs_err *err) {
    if (rows <= 0 || d <= 0) return HS_OK;
    if (w_rows < 1) return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda norm: w_rows %d", w_rows);
    if (kind != HS_NORM_LAYERNORM && kind != HS_NORM_RMSNORM && kind != HS_NORM_RMSNORM_1P)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda norm: unknown kind %d", (int)kind);
    return HS_DISPATCH_DT(dt, hs_norm_t, st, kind == HS_NORM_LAYERNORM, kind == HS_NORM_RMSNORM_1P ? 1.0f : 0.0f, x,
                          w, b, eps, rows, d, w_rows, y, err);
}

/* ---- RoPE, in place on x [n, H, d_head] --------------------------------------- */

/* One thread per (row, pair i): the angle pos·inv_freq[i] is shared by all
 * heads. Only each head's first rot dims turn (partial rotary). */
template <typename T>
__global__ void hs_k_rope(T *x, const int32_t *pos, const float *inv_freq, float scale, int64_t n, int H,
                          int dh, int rot, int normal) {
    const int half = rot / 2;
    const int64_t total = n * half, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int i = (int)(idx % half);
        const int64_t r = idx / half;
        const float ang = (float)pos[r] * inv_freq[i];
        float s, c;
        sincosf(ang, &s, &c);
        s *= scale, c *= scale;
        const int a = normal ? 2 * i : i, bo = normal ? 2 * i + 1 : i + half;
        for (int h = 0; h < H; h++) {
            T *v = x + (r * H + h) * dh;
            const float x1 = hs_ld(v + a), x2 = hs_ld(v + bo);
            hs_st(v + a, x1 * c - x2 * s);
            hs_st(v + bo, x2 * c + x1 * s);
        }
    }
}

template <typename T>
static hs_status hs_rope_t(cudaStream_t st, int normal, void *x, const int32_t *pos,
                           const float *inv_freq, float scale, int64_t n, int H, int dh, int rot, hs_err *err) {
    hs_k_rope<T><<<hs_cuda_grid_1d(n * (rot / 2), HS_EW_THREADS), HS_EW_THREADS, 0, st>>>(
        (T *)x, pos, inv_freq, scale, n, H, dh, rot, normal);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_rope");
    return HS_OK;
}

hs_status hs_cuda_rope(cudaStream_t st, hs_dtype dt, hs_rope_kind kind, void *x,
                       const int32_t *pos, const float *inv_freq, float scale, int64_t n, int H, int d_head,
                       int rot, hs_err *err) {
    if (kind == HS_ROPE_NONE || n <= 0 || H <= 0) return HS_OK;
    if (kind != HS_ROPE_NEOX && kind != HS_ROPE_NORMAL)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda rope: unknown kind %d", (int)kind);
    if (rot <= 0 || rot > d_head || rot % 2)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda rope: rotary dims %d must be even and within d_head %d",
                          rot, d_head);
    return HS_DISPATCH_DT(dt, hs_rope_t, st, kind == HS_ROPE_NORMAL, x, pos, inv_freq, scale, n, H, d_head,
                          rot, err);
}

/* ---- bias add (GEMM fallback epilogue) ----------------------------------------- */

template <typename T>
__global__ void hs_k_add_bias(T *y, const T *bias, int64_t M, int N) {
    const int64_t total = M * N, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride)
        hs_st(y + i, hs_ld(y + i) + hs_ld(bias + i % N));
}

template <typename T>
static hs_status hs_add_bias_t(cudaStream_t st, void *y, const void *bias, int64_t M, int N,
                               hs_err *err) {
    hs_k_add_bias<T><<<hs_cuda_grid_1d(M * N, HS_EW_THREADS), HS_EW_THREADS, 0, st>>>(
        (T *)y, (const T *)bias, M, N);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_add_bias");
    return HS_OK;
}

hs_status hs_cuda_add_bias(cudaStream_t st, hs_dtype dt, void *y, const void *bias, int64_t M,
                           int N, hs_err *err) {
    if (M <= 0 || N <= 0) return HS_OK;
    return HS_DISPATCH_DT(dt, hs_add_bias_t, st, y, bias, M, N, err);
}

/* ---- conversions and fills ------------------------------------------------------ */

template <typename D, typename S>
__global__ void hs_k_convert(D *dst, const S *src, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        hs_st(dst + i, hs_ld(src + i));
}

hs_status hs_cuda_from_f32(cudaStream_t st, hs_dtype dt, void *dst, const float *src, int64_t n,
                           hs_err *err) {
    if (n <= 0) return HS_OK;
    if (dt == HS_DTYPE_F32) {
        HS_CUDA_CHECK(err, cudaMemcpyAsync(dst, src, (size_t)n * 4, cudaMemcpyDeviceToDevice, st));
        return HS_OK;
    }
    hs_k_convert<bf16, float><<<hs_cuda_grid_1d(n, HS_EW_THREADS), HS_EW_THREADS, 0, st>>>(
        (bf16 *)dst, src, n);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_convert<bf16,f32>");
    return HS_OK;
}

hs_status hs_cuda_to_f32(cudaStream_t st, hs_dtype dt, float *dst, const void *src, int64_t n,
                         hs_err *err) {
    if (n <= 0) return HS_OK;
    if (dt == HS_DTYPE_F32) {
        HS_CUDA_CHECK(err, cudaMemcpyAsync(dst, src, (size_t)n * 4, cudaMemcpyDeviceToDevice, st));
        return HS_OK;
    }
    hs_k_convert<float, bf16><<<hs_cuda_grid_1d(n, HS_EW_THREADS), HS_EW_THREADS, 0, st>>>(
        dst, (const bf16 *)src, n);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_convert<f32,bf16>");
    return HS_OK;
}

__device__ __forceinline__ uint64_t hs_splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

template <typename T>
__global__ void hs_k_fill_normal(T *dst, int64_t n, uint64_t seed, float mean, float std) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const uint64_t key = hs_splitmix64(seed);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        uint64_t h = hs_splitmix64(key ^ (uint64_t)i);
        /* Box-Muller on two 24-bit uniforms, u1 in (0, 1]. */
        float u1 = ((float)(h >> 40) + 1.0f) * (1.0f / 16777216.0f);
        float u2 = (float)((h >> 16) & 0xffffff) * (1.0f / 16777216.0f);
        float z = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
        hs_st(dst + i, mean + std * z);
    }
}

hs_status hs_cuda_fill_normal(cudaStream_t st, hs_dtype dt, void *dst, int64_t n, uint64_t seed,
                              float mean, float std, hs_err *err) {
    if (n <= 0) return HS_OK;
    unsigned grid = hs_cuda_grid_1d(n, HS_EW_THREADS);
    if (dt == HS_DTYPE_F32)
        hs_k_fill_normal<float><<<grid, HS_EW_THREADS, 0, st>>>((float *)dst, n, seed, mean, std);
    else
        hs_k_fill_normal<bf16><<<grid, HS_EW_THREADS, 0, st>>>((bf16 *)dst, n, seed, mean, std);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_fill_normal");
    return HS_OK;
}
