/* hs_attention (internal): the kernel parameter struct of the fused causal
 * attention (explicit strides, so q/k/v/z may be views into wider buffers)
 * and the launchers of its two kernels and the pattern recompute:
 *   - hs_attn_mma.cu: bf16 tensor-core kernel (mma.sync m16n8k16, online
 *     softmax over key tiles of 64), d_head in {32, 64, 80, 96, 128};
 *   - hs_attn_wgmma_sm90a.cu: the same on Hopper's warpgroup tensor cores
 *     (wgmma), d_head 64 and 128, no cap and no window, compute capability 9.0 only; built for
 *     sm_90a alone and chosen only on request (hs_backend_cuda_set_attn_kernel
 *     or HS_CUDA_ATTN=wgmma) until it has been validated on a device;
 *   - hs_attn_simt.cu: generic CUDA-core kernel, f32 or bf16, any d_head <= 256
 *     (true f32 math: the f32 validation mode uses it for every shape);
 *   - hs_attn_pattern.cu: the pattern recompute from q, k and the LSE
 *     (tensor cores for bf16 where the fused kernel ran on them, else CUDA cores);
 *   - hs_attn_decode.cu: a few queries against keys from a cache (T_kv > 0:
 *     decoding), pattern included, f32 or bf16, any d_head <= 256;
 *   - hs_attention.cu: validation and dispatch.
 * All of them are deterministic (no atomics; fixed reduction orders). */
#ifndef HS_ATTENTION_CUH
#define HS_ATTENTION_CUH

#include <stdint.h>

#include "hs_cuda_common.cuh"

typedef struct {
    int B, T, H, H_kv, d;
    float scale;      /* score scale in natural units (1/sqrt(d) usually) */
    float scale_log2; /* scale * log2(e): the kernels work in base 2 */
    float softcap;    /* > 0: scores are softcap * tanh(scale q·k / softcap) (Gemma 2); 0 = none */
    float softcap_inv; /* 1 / softcap: a division's slow-path call made the simt kernel spill */
    int window;       /* > 0: query t sees keys t - window < s <= t (set only when window < T); 0 = none */
    const float *alibi; /* [H] ALiBi slopes: key s of query t scores slope_h * (s - t) more (natural
                           units), or NULL; the CUDA-core kernels only (the dispatch routes it there) */
    const void *q, *k, *v; /* element type: the launcher's */
    void *z;
    /* Strides in elements: batch, time, head; the head's d values are contiguous. */
    int64_t q_sb, q_st, q_sh;
    int64_t k_sb, k_st, k_sh;
    int64_t v_sb, v_st, v_sh;
    int64_t z_sb, z_st, z_sh;
    const int32_t *key_mask;  /* [B, T] or NULL */
    const float *head_scale;  /* [B, H] or NULL */
    float *lse;               /* [B, H, T] natural-log LSE, or NULL */
    const uint8_t *uniform;   /* [B, H] nonzero: uniform over visible keys, or NULL */
    /* The decode kernel only: keys per row of k, v and key_mask (which are then
     * [B, T_kv, ...]) and query t's key position q_pos[b] + t (q_pos NULL = 0). */
    int T_kv;
    const int32_t *q_pos;
} hs_cuda_attn_args;

/* bf16 tensor-core kernel; returns HS_ERR_UNSUPPORTED for a d it has no
 * instantiation for (the caller then uses the SIMT kernel). Needs q, k, v, z
 * 16-byte aligned and every stride a multiple of 8 elements. supports(d,
 * smem_optin): whether it covers d_head d on a device whose blocks may opt in
 * to smem_optin bytes of shared memory (cudaDeviceProp::sharedMemPerBlockOptin). */
int hs_cuda_attn_mma_supports(int d, size_t smem_optin);
hs_status hs_cuda_attn_mma(const hs_cuda_attn_args *a, cudaStream_t st, hs_err *err);
/* The same with a kernel variant chosen (0 = the default; the others are
 * listed in hs_attn_mma.cu). For benchmarks. */
hs_status hs_cuda_attn_mma_variant(const hs_cuda_attn_args *a, int variant, cudaStream_t st,
                                   hs_err *err);

/* Hopper kernel: supports(d, cc) says whether it covers d_head d on a device
 * of compute capability cc (major * 10 + minor); same buffer conditions as
 * the mma kernel. variant 0 = the default; the others are listed in
 * hs_attn_wgmma_sm90a.cu. */
int hs_cuda_attn_wgmma_supports(int d, int cc);
hs_status hs_cuda_attn_wgmma(const hs_cuda_attn_args *a, int variant, cudaStream_t st, hs_err *err);

/* CUDA-core kernel, f32 (is_bf16 = 0) or bf16 (is_bf16 = 1) elements, d <= 256. */
hs_status hs_cuda_attn_simt(const hs_cuda_attn_args *a, int is_bf16, cudaStream_t st, hs_err *err);

/* Keys from a cache (a.T_kv > 0): z, lse and, when pattern is not NULL, the
 * pattern [B, H, T, T_kv] (with pattern_rows int32 [B] device: [B, H, T_kv],
 * query row pattern_rows[b] only), every entry written. */
hs_status hs_cuda_attn_decode(const hs_cuda_attn_args *a, int is_bf16, const int32_t *pattern_rows, float *pattern,
                              cudaStream_t st, hs_err *err);

/* pattern[b,h,t,s] = exp(score(q_t·k_s) + slope_h (s - t) - lse[b,h,t]) for visible s (the
 * ALiBi term only with a.alibi; score 0 for uniform heads), else 0: every one of the B*H*T*T
 * entries is written.
 * use_mma: the bf16 tensor-core version (same conditions as the fused kernel). */
hs_status hs_cuda_attn_pattern(const hs_cuda_attn_args *a, int is_bf16, int use_mma, const float *lse,
                               float *pattern, cudaStream_t st, hs_err *err);

/* The same for one query row per batch row: rows int32 [B] (device), pattern
 * [B, H, T] = P[b, h, rows[b], :]. */
hs_status hs_cuda_attn_pattern_rows(const hs_cuda_attn_args *a, int is_bf16, const int32_t *rows, const float *lse,
                                    float *pattern, cudaStream_t st, hs_err *err);

#define HS_ATTN_LN2 0.69314718055994530942f
#define HS_ATTN_LOG2E 1.44269504088896340736f

/* Whether key s lies in query t's sliding window (with s <= t). */
__device__ __forceinline__ bool hs_attn_in_window(const hs_cuda_attn_args &a, int t, int s) {
    return a.window <= 0 || t - s < a.window;
}

/* The first key tile of tile size bk that holds a key in the window of query row q0. */
__device__ __forceinline__ int hs_attn_first_tile(const hs_cuda_attn_args &a, int q0, int bk) {
    return a.window > 0 && q0 >= a.window ? (q0 - a.window + 1) / bk : 0;
}

/* The score of a raw q·k in natural units: scaled, then capped as the CPU
 * reference does (which divides by the cap, as HF does: within an ulp). */
__device__ __forceinline__ float hs_attn_score(const hs_cuda_attn_args &a, float dot) {
    return a.softcap > 0.0f ? a.softcap * tanhf(dot * a.scale * a.softcap_inv) : dot * a.scale;
}
/* The same in base 2, what the online softmax works in. */
__device__ __forceinline__ float hs_attn_score2(const hs_cuda_attn_args &a, float dot) {
    return a.softcap > 0.0f ? hs_attn_score(a, dot) * HS_ATTN_LOG2E : dot * a.scale_log2;
}
/* Head h's ALiBi slope in natural units (0 without ALiBi: adding slope * (s - t) then changes no
 * score, so the kernels add it unconditionally). Never with a soft-cap (the dispatch refuses it). */
__device__ __forceinline__ float hs_attn_slope(const hs_cuda_attn_args &a, int h) {
    return a.alibi ? a.alibi[h] : 0.0f;
}

#endif
