/* hs_cuda_backend (internal): the CUDA backend instance and the launchers
 * each cuda/ file provides to the op table in hs_backend_cuda.cu. Everything
 * an op needs (stream, cuBLAS handles, workspace, caches) lives in the
 * instance: there is no global state. */
#ifndef HS_CUDA_BACKEND_CUH
#define HS_CUDA_BACKEND_CUH

#include <stdint.h>

#include "hs_cuda_common.cuh"
#include "headsweep/hs_backend.h"

#define HS_CUDA_WORKSPACE_BYTES (32u << 20) /* cuBLAS' recommendation for Hopper */
#define HS_CUDA_STAGE_ELEMS (4 << 20)       /* f32 staging for upload_f32/download_f32 */
#define HS_CUDA_GEMM_CACHE 32

/* One cached cuBLASLt plan: the descriptors and algorithm for a problem key. */
typedef struct {
    int valid;
    int64_t M;
    int N, K, bias, accumulate;
    unsigned align[4]; /* x, w, y, bias pointer alignments the algorithm was chosen for */
    int use_lt;        /* 0: no Lt algorithm, fall back to cublasGemmEx */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} hs_cuda_gemm_plan;

typedef struct {
    hs_backend base; /* must be first: hs_backend* and hs_cuda_backend* convert */
    hs_dtype dtype;  /* activation and weight dtype: HS_DTYPE_BF16 or HS_DTYPE_F32 */
    int device;
    int sm_count;
    int cc;           /* compute capability, major * 10 + minor */
    size_t smem_optin; /* shared memory a block may opt in to: whether d_head 256 runs on tensor cores */
    int attn_kernel;  /* hs_cuda_attn_kernel: which bf16 attention kernel */
    int attn_variant; /* and its variant (0 = the kernel's default) */
    int64_t attn_launches[3]; /* attention calls per kernel: CUDA-core, mma.sync, wgmma (tests read them) */
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    void *workspace;  /* HS_CUDA_WORKSPACE_BYTES, shared by cuBLAS and cuBLASLt (same stream) */
    float *stage;     /* device f32 staging, HS_CUDA_STAGE_ELEMS */
    float *lse_tmp;   /* lse scratch when a pattern is wanted without lse */
    size_t lse_tmp_bytes;
    void *bwd_tmp;    /* attention_bwd's row statistics (lse, D) */
    size_t bwd_tmp_bytes;
    /* Two RoPE tables (Gemma 3's layers alternate between a local and a global
     * one), each [rope_rot / 2] inverse frequencies on the device ... */
    float *rope_inv[2];
    float *rope_inv_host[2]; /* ... and the host table it was copied from */
    int rope_rot[2];
    int rope_next; /* the slot a new table replaces */
    hs_cuda_gemm_plan plans[HS_CUDA_GEMM_CACHE];
    int plan_next;    /* round-robin replacement */
} hs_cuda_backend;

/* Grow-only device scratch: *buf holds at least need bytes afterwards (old
 * contents are not kept; cudaFree waits for work still using the old buffer). */
static inline hs_status hs_cuda_scratch(void **buf, size_t *bytes, size_t need, hs_err *err) {
    if (*bytes >= need) return HS_OK;
    if (*buf) HS_CUDA_CHECK(err, cudaFree(*buf));
    *buf = NULL;
    *bytes = 0;
    const cudaError_t e = cudaMalloc(buf, need);
    if (e == cudaErrorMemoryAllocation) { /* OOM, as cu_alloc says it, not a device fault */
        (void)cudaGetLastError();
        *buf = NULL;
        return hs_err_set(err, HS_ERR_OOM, "cuda backend: cannot allocate %zu bytes of scratch", need);
    }
    HS_CUDA_CHECK(err, e);
    *bytes = need;
    return HS_OK;
}

/* ---- hs_kern_elementwise.cu (dt: the element type of every void* buffer) -- */
hs_status hs_cuda_embed(cudaStream_t st, hs_dtype dt, const int32_t *tokens, const int32_t *pos,
                        const void *tok_embd, const void *pos_embd, int64_t n, int d, float scale, void *out,
                        hs_err *err);
hs_status hs_cuda_norm(cudaStream_t st, hs_dtype dt, hs_norm_kind kind, const void *x,
                       const void *w, const void *b, float eps, int64_t rows, int d, int w_rows, void *y,
                       hs_err *err);
/* inv_freq: device f32 [rot/2], computed on the host like the reference;
 * scale multiplies cos and sin (YaRN). */
hs_status hs_cuda_rope(cudaStream_t st, hs_dtype dt, hs_rope_kind kind, void *x,
                       const int32_t *pos, const float *inv_freq, float scale, int64_t n, int H, int d_head,
                       int rot, hs_err *err);
hs_status hs_cuda_act(cudaStream_t st, hs_dtype dt, hs_act_kind kind, const void *gate,
                      const void *up, int64_t n, void *out, hs_err *err);
hs_status hs_cuda_add(cudaStream_t st, hs_dtype dt, void *y, const void *x, int64_t n,
                      hs_err *err);
/* y += alpha * x (one FMA per element, in f32). */
hs_status hs_cuda_axpy(cudaStream_t st, hs_dtype dt, void *y, float alpha, const void *x, int64_t n,
                       hs_err *err);
hs_status hs_cuda_softcap(cudaStream_t st, hs_dtype dt, const void *x, int64_t n, float cap, void *y, hs_err *err);
hs_status hs_cuda_clamp(cudaStream_t st, hs_dtype dt, const void *x, int64_t n, float c, void *y, hs_err *err);
hs_status hs_cuda_clamp_bwd(cudaStream_t st, hs_dtype dt, const void *x, const void *dy, int64_t n, float c, void *dx,
                            hs_err *err);
/* y[M,N] += bias[N] (the GEMM fallback's epilogue). */
hs_status hs_cuda_add_bias(cudaStream_t st, hs_dtype dt, void *y, const void *bias, int64_t M,
                           int N, hs_err *err);
/* dst (dt) = src (f32), n elements; and back. */
hs_status hs_cuda_from_f32(cudaStream_t st, hs_dtype dt, void *dst, const float *src, int64_t n,
                           hs_err *err);
hs_status hs_cuda_to_f32(cudaStream_t st, hs_dtype dt, float *dst, const void *src, int64_t n,
                         hs_err *err);
/* dst[i] = mean + std * N(0,1) from a counter-based generator keyed by
 * (seed, i): the same values for a seed whatever the launch shape. */
hs_status hs_cuda_fill_normal(cudaStream_t st, hs_dtype dt, void *dst, int64_t n, uint64_t seed,
                              float mean, float std, hs_err *err);

/* ---- hs_kern_reduce.cu ------------------------------------------------------ */
/* out[r] = logits[r, targets[r]] - logsumexp(logits[r, :]) (NAN for targets < 0). */
hs_status hs_cuda_target_logprob(cudaStream_t st, hs_dtype dt, const void *logits, const int32_t *targets, int64_t R,
                                 int V, float *out, hs_err *err);

/* ---- hs_kern_backward.cu: the backward ops (contracts in hs_backend.h) ------- */
hs_status hs_cuda_matmul_bwd(hs_cuda_backend *be, const void *dy, const void *w, int64_t M, int N, int K,
                             int accumulate, void *dx, hs_err *err);
hs_status hs_cuda_norm_bwd(cudaStream_t st, hs_dtype dt, hs_norm_kind kind, const void *x, const void *w, float eps,
                           int64_t rows, int d, int w_rows, const void *dy, int accumulate, void *dx, hs_err *err);
hs_status hs_cuda_act_bwd(cudaStream_t st, hs_dtype dt, hs_act_kind kind, const void *gate, const void *up,
                          const void *dout, int64_t n, void *dgate, void *dup, hs_err *err);
hs_status hs_cuda_logprob_grad(cudaStream_t st, hs_dtype dt, const void *logits, const int32_t *targets, int64_t R,
                               int V, void *dlogits, hs_err *err);
hs_status hs_cuda_softcap_bwd(cudaStream_t st, hs_dtype dt, const void *y, const void *dy, int64_t n, float cap,
                              void *dx, hs_err *err);
hs_status hs_cuda_attention_bwd(hs_cuda_backend *be, const hs_attn_params *p, const void *dz, void *dq, void *dk,
                                void *dv, hs_err *err);
hs_status hs_cuda_head_dot(cudaStream_t st, hs_dtype dt, const void *a, const void *c, int B, int T, int H, int d,
                           float *out, hs_err *err);

/* ---- hs_gemm.cu ------------------------------------------------------------ */
hs_status hs_cuda_gemm_init(hs_cuda_backend *be, hs_err *err);
void hs_cuda_gemm_free(hs_cuda_backend *be);
/* y[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]) (+ y if accumulate), f32 accumulation. */
hs_status hs_cuda_gemm(hs_cuda_backend *be, const void *x, const void *w, const void *bias,
                       int64_t M, int N, int K, int accumulate, void *y, hs_err *err);

/* ---- hs_attention.cu ------------------------------------------------------- */
/* Validates p and runs the fused attention (and the pattern recompute when
 * p->pattern) on be's stream. */
hs_status hs_cuda_attention(hs_cuda_backend *be, const hs_attn_params *p, hs_err *err);

#endif
