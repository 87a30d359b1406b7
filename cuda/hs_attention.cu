/* hs_attention: the attention op of the CUDA backend. Validates the
 * parameters, lays out the strides, picks the kernel (bf16 tensor cores for
 * d_head 32/64/80/96/128/256 with aligned buffers, 256 only where a block may
 * take 101,632 B of shared memory; the CUDA-core kernel otherwise, up to 256, and
 * always in f32 mode and with ALiBi; keys from a cache: the decode kernel), applies the SET table and,
 * only when a pattern is wanted, has it recomputed from q, k and the
 * log-sum-exp the fused kernel stored. */
#include "hs_attention.cuh"
#include "hs_backend_cuda.h"
#include "hs_cuda_backend.cuh"

#include <math.h>

/* ---- SET edits -------------------------------------------------------------------- */

/* z[b,t,h,:] = src[idx[b,t,h], :] where idx >= 0; one block per (b, t). An
 * index past n_set (the CPU reference refuses it; a kernel cannot) writes NaN,
 * so a bad table shows in the results instead of reading beyond src. A pass
 * of its own rather than in the fused kernels' epilogues: there the extra
 * code made the d_head-128 tensor-core kernel spill in its main loop (ptxas:
 * 54 B of spill stores), a cost every forward would pay, SET or not. This
 * pass touches only the SET cells, on the same stream. */
template <typename T>
__global__ void __launch_bounds__(128) hs_k_attn_set(T *z, const int32_t *idx, const T *src, int64_t n_set, int H,
                                                     int d) {
    const int64_t bt = blockIdx.x;
    for (int h = 0; h < H; h++) {
        const int32_t i = idx[bt * H + h];
        if (i < 0) continue;
        T *zr = z + (bt * H + h) * d;
        if (i >= n_set) {
            for (int j = threadIdx.x; j < d; j += blockDim.x) zr[j] = (T)NAN;
            continue;
        }
        const T *sr = src + (int64_t)i * d;
        for (int j = threadIdx.x; j < d; j += blockDim.x) zr[j] = sr[j];
    }
}

static hs_status hs_attn_set(const hs_attn_params *p, int bf16, cudaStream_t st, hs_err *err) {
    const unsigned rows = (unsigned)((int64_t)p->B * p->T);
    if (bf16)
        hs_k_attn_set<__nv_bfloat16><<<rows, 128, 0, st>>>((__nv_bfloat16 *)p->z, p->set_idx,
                                                          (const __nv_bfloat16 *)p->set_src, p->n_set, p->H, p->d_head);
    else
        hs_k_attn_set<float><<<rows, 128, 0, st>>>((float *)p->z, p->set_idx, (const float *)p->set_src, p->n_set,
                                                  p->H, p->d_head);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_attn_set");
    return HS_OK;
}

/* ---- the op --------------------------------------------------------------------- */

static int hs_al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

hs_status hs_cuda_attention(hs_cuda_backend *be, const hs_attn_params *p, hs_err *err) {
    if (!p) return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda attention: NULL params");
    if (p->B <= 0 || p->T <= 0 || p->H <= 0 || p->H_kv <= 0 || p->d_head <= 0)
        return hs_err_set(err, HS_ERR_INVALID_ARG,
                          "cuda attention: bad sizes B=%d T=%d H=%d H_kv=%d d_head=%d", p->B, p->T,
                          p->H, p->H_kv, p->d_head);
    if (p->H % p->H_kv != 0)
        return hs_err_set(err, HS_ERR_INVALID_ARG,
                          "cuda attention: H=%d is not a multiple of H_kv=%d", p->H, p->H_kv);
    if (p->d_head > 256)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda attention: d_head %d > 256", p->d_head);
    if (!p->q || !p->k || !p->v || !p->z)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda attention: NULL q, k, v or z");
    if (p->set_idx && !p->set_src)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda attention: set_idx without set_src");
    if (p->alibi && p->softcap > 0.0f) /* no model has both; the kernels add the bias after the score */
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda attention: ALiBi with a soft-cap is not supported");
    if (p->B > 65535 || p->H > 65535) /* grids are (query tiles, H, B); the pattern's own check its */
        return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda attention: B=%d or H=%d exceeds the grid", p->B, p->H);

    if (p->T_kv < 0 || (p->T_kv > 0 && p->T_kv < p->T))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda attention: T_kv %d below the %d queries", p->T_kv, p->T);

    const int B = p->B, T = p->T, H = p->H, Hk = p->H_kv, d = p->d_head, Tk = p->T_kv > 0 ? p->T_kv : T;
    const int bf16 = be->dtype == HS_DTYPE_BF16;
    hs_cuda_attn_args a = {}; /* every field the kernels read: alibi and the rest NULL unless set below */
    a.B = B;
    a.T = T;
    a.H = H;
    a.H_kv = Hk;
    a.d = d;
    a.scale = p->scale;
    a.scale_log2 = p->scale * HS_ATTN_LOG2E;
    a.softcap = p->softcap > 0.0f ? p->softcap : 0.0f;
    a.softcap_inv = p->softcap > 0.0f ? 1.0f / p->softcap : 0.0f;
    a.window = p->window > 0 && p->window < Tk ? p->window : 0;
    a.alibi = p->alibi;
    a.q = p->q;
    a.k = p->k;
    a.v = p->v;
    a.z = p->z;
    /* The public layout is contiguous [B, T, heads, d]. */
    a.q_sh = d, a.q_st = (int64_t)H * d, a.q_sb = (int64_t)T * H * d;
    a.k_sh = d, a.k_st = (int64_t)Hk * d, a.k_sb = (int64_t)Tk * Hk * d;
    a.v_sh = a.k_sh, a.v_st = a.k_st, a.v_sb = a.k_sb;
    a.z_sh = a.q_sh, a.z_st = a.q_st, a.z_sb = a.q_sb;
    a.key_mask = p->key_mask;
    a.head_scale = p->head_scale;
    a.lse = p->lse;
    a.uniform = p->uniform;
    a.T_kv = p->T_kv;
    a.q_pos = p->T_kv > 0 ? p->q_pos : NULL;

    hs_status st;
    if (p->T_kv > 0) { /* decoding: its own kernel, the pattern included (attn_launches counts the fused ones) */
        st = hs_cuda_attn_decode(&a, bf16, p->pattern ? p->pattern_rows : NULL, p->pattern, be->stream, err);
        if (st == HS_OK && p->set_idx) st = hs_attn_set(p, bf16, be->stream, err);
        return st;
    }
    if (p->pattern && !a.lse) { /* the recompute needs the LSE: keep it in scratch (decoding computes its own) */
        st = hs_cuda_scratch((void **)&be->lse_tmp, &be->lse_tmp_bytes, (size_t)B * H * T * sizeof(float), err);
        if (st != HS_OK) return st;
        a.lse = be->lse_tmp;
    }
    const int strides_ok = a.q_st % 8 == 0 && a.q_sh % 8 == 0 && a.k_st % 8 == 0 &&
                           a.k_sh % 8 == 0 && a.q_sb % 8 == 0 && a.k_sb % 8 == 0;
    /* ALiBi (BLOOM) runs on the CUDA-core kernels, whose scores carry the bias: the tensor-core ones have none */
    const int mma = bf16 && be->attn_kernel != HS_CUDA_ATTN_SIMT && hs_cuda_attn_mma_supports(d, be->smem_optin) &&
                    strides_ok && hs_al16(a.q) && hs_al16(a.k) && hs_al16(a.v) && hs_al16(a.z) && !p->alibi;
    /* the Hopper kernel has no soft-cap (Gemma 2) and no window: the mma kernel takes those */
    const int wg = mma && be->attn_kernel == HS_CUDA_ATTN_WGMMA && hs_cuda_attn_wgmma_supports(d, be->cc) &&
                   !(a.softcap > 0.0f) && !a.window;
    be->attn_launches[wg ? 2 : mma ? 1 : 0]++;
    if (wg) st = hs_cuda_attn_wgmma(&a, be->attn_variant, be->stream, err);
    else if (mma) st = hs_cuda_attn_mma(&a, be->stream, err);
    else st = hs_cuda_attn_simt(&a, bf16, be->stream, err);
    if (st != HS_OK) return st;
    if (p->set_idx && (st = hs_attn_set(p, bf16, be->stream, err)) != HS_OK) return st;
    if (p->pattern && p->pattern_rows)
        return hs_cuda_attn_pattern_rows(&a, bf16, p->pattern_rows, a.lse, p->pattern, be->stream, err);
    if (p->pattern) return hs_cuda_attn_pattern(&a, bf16, mma, a.lse, p->pattern, be->stream, err);
    return HS_OK;
}
