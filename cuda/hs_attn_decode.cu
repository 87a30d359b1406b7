/* hs_attn_decode: attention of a few new queries against keys from a cache
 * (the attention op with T_kv > 0: decoding). f32 or bf16 elements, computed
 * in f32, any d_head <= 256, every edit the fused kernels take (uniform heads,
 * head_scale, soft-cap, window, key mask) and the pattern written in the same
 * kernel.
 *
 * One block of 4 warps per (query, head, batch row). Query t of row b sits at
 * key position q_pos[b] + t, so only keys up to there are read. Warp w takes
 * keys w, w + 4, ...: lanes hold dims lane, lane + 32, ... (a key's row read
 * coalesced), the dot product is a shuffle reduction, and each warp keeps its
 * own online softmax. The 4 partial states are merged in warp order through
 * shared memory: a fixed order, no atomics, deterministic. Decoding reads the
 * whole cache once per query head and is bound by memory, not arithmetic;
 * this kernel is the simple correct one (a GQA group re-reads its key head
 * per query head), not a tuned split-K kernel. */
#include "hs_attention.cuh"

#include <math.h>

#define DEC_WARPS 4

__device__ __forceinline__ float hs_dec_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* DPL: dims per lane, d <= 32 * DPL. */
template <typename T, int DPL>
__global__ void __launch_bounds__(DEC_WARPS * 32)
    hs_k_attn_decode(hs_cuda_attn_args a, const int32_t *pattern_rows, float *pattern) {
    __shared__ float s_m[DEC_WARPS], s_l[DEC_WARPS], s_lse;
    extern __shared__ float s_acc[]; /* [DEC_WARPS][d], then q [d] */
    const int d = a.d, Tk = a.T_kv, t = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int hk = h / (a.H / a.H_kv), bh = b * a.H + h;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int ta = (a.q_pos ? a.q_pos[b] : 0) + t; /* the query's key position */
    const int nk = min(Tk, ta + 1);                /* keys it may see */
    const int s0 = a.window > 0 && ta >= a.window ? ta - a.window + 1 : 0;
    const T *qr = (const T *)a.q + b * a.q_sb + t * a.q_st + h * a.q_sh;
    const T *kb = (const T *)a.k + b * a.k_sb + hk * a.k_sh;
    const T *vb = (const T *)a.v + b * a.v_sb + hk * a.v_sh;
    const int32_t *mask = a.key_mask ? a.key_mask + (int64_t)b * Tk : NULL;
    const bool uni = a.uniform && a.uniform[bh] != 0;
    const float slope = hs_attn_slope(a, h), slope2 = slope * HS_ATTN_LOG2E; /* ALiBi, natural and base 2 */
    float *sq = s_acc + DEC_WARPS * d;
    for (int c = tid; c < d; c += blockDim.x) sq[c] = hs_ld(qr + c);
    __syncthreads();

    float q[DPL], acc[DPL], m = -INFINITY, l = 0.0f;
#pragma unroll
    for (int c = 0; c < DPL; c++) {
        const int dim = lane + 32 * c;
        q[c] = dim < d ? sq[dim] : 0.0f;
        acc[c] = 0.0f;
    }
    for (int s = s0 + warp; s < nk; s += DEC_WARPS) {
        if (mask && mask[s] == 0) continue; /* the same s for the whole warp */
        const T *kr = kb + s * a.k_st, *vr = vb + s * a.v_st;
        float dot = 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            const int dim = lane + 32 * c;
            if (dim < d) dot = fmaf(q[c], hs_ld(kr + dim), dot);
        }
        dot = hs_dec_warp_sum(dot);
        const float sc = uni ? 0.0f : hs_attn_score2(a, dot) + slope2 * (float)(s - ta);
        /* a score of -inf (an overflowed dot) hides its key, as on the CPU: no exp2(-inf - -inf) */
        const float m_new = fmaxf(m, sc);
        const float corr = m_new == -INFINITY ? 1.0f : exp2f(m - m_new), p = sc == -INFINITY ? 0.0f : exp2f(sc - m_new);
        l = l * corr + p;
        m = m_new;
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            const int dim = lane + 32 * c;
            acc[c] = fmaf(p, dim < d ? hs_ld(vr + dim) : 0.0f, acc[c] * corr);
        }
    }
    if (lane == 0) s_m[warp] = m, s_l[warp] = l;
#pragma unroll
    for (int c = 0; c < DPL; c++) {
        const int dim = lane + 32 * c;
        if (dim < d) s_acc[warp * d + dim] = acc[c];
    }
    __syncthreads();

    float M = -INFINITY, L = 0.0f, f[DEC_WARPS];
#pragma unroll
    for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, s_m[w]);
#pragma unroll
    for (int w = 0; w < DEC_WARPS; w++) {
        f[w] = s_m[w] == -INFINITY ? 0.0f : exp2f(s_m[w] - M); /* a warp that saw no key adds nothing */
        L += s_l[w] * f[w];
    }
    const float hsc = a.head_scale ? a.head_scale[bh] : 1.0f, inv = L > 0.0f ? hsc / L : 0.0f;
    T *zr = (T *)a.z + b * a.z_sb + t * a.z_st + h * a.z_sh;
    for (int dim = tid; dim < d; dim += blockDim.x) {
        float z = 0.0f;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) z = fmaf(s_acc[w * d + dim], f[w], z);
        hs_st(zr + dim, z * inv);
    }
    const float lse = L > 0.0f ? (M + log2f(L)) * HS_ATTN_LN2 : -INFINITY;
    if (tid == 0 && a.lse) a.lse[(int64_t)bh * a.T + t] = lse;
    if (tid == 0) s_lse = lse;

    if (!pattern || (pattern_rows && pattern_rows[b] != t)) return;
    __syncthreads();
    float *prow = pattern + (pattern_rows ? (int64_t)bh * Tk : ((int64_t)bh * a.T + t) * Tk);
    for (int s = tid; s < Tk; s += blockDim.x) {
        const bool vis = s >= s0 && s < nk && (!mask || mask[s] != 0) && s_lse != -INFINITY;
        float dot = 0.0f;
        if (vis && !uni) {
            const T *kr = kb + s * a.k_st;
            for (int c = 0; c < d; c++) dot = fmaf(sq[c], hs_ld(kr + c), dot);
        }
        prow[s] = vis ? expf((uni ? 0.0f : hs_attn_score(a, dot) + slope * (float)(s - ta)) - s_lse) : 0.0f;
    }
}

template <typename T, int DPL>
static hs_status hs_decode_launch(const hs_cuda_attn_args *a, const int32_t *rows, float *pattern, cudaStream_t st,
                                  hs_err *err) {
    const dim3 grid((unsigned)a->T, (unsigned)a->H, (unsigned)a->B);
    const size_t smem = sizeof(float) * (size_t)(DEC_WARPS + 1) * a->d; /* 5 KiB at d_head 256 */
    hs_k_attn_decode<T, DPL><<<grid, DEC_WARPS * 32, smem, st>>>(*a, rows, pattern);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_attn_decode");
    return HS_OK;
}

template <typename T>
static hs_status hs_decode_dispatch(const hs_cuda_attn_args *a, const int32_t *rows, float *pattern, cudaStream_t st,
                                    hs_err *err) {
    if (a->d <= 32) return hs_decode_launch<T, 1>(a, rows, pattern, st, err);
    if (a->d <= 64) return hs_decode_launch<T, 2>(a, rows, pattern, st, err);
    if (a->d <= 128) return hs_decode_launch<T, 4>(a, rows, pattern, st, err);
    if (a->d <= 256) return hs_decode_launch<T, 8>(a, rows, pattern, st, err);
    return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda attention: d_head %d > 256", a->d);
}

hs_status hs_cuda_attn_decode(const hs_cuda_attn_args *a, int is_bf16, const int32_t *pattern_rows, float *pattern,
                              cudaStream_t st, hs_err *err) {
    return is_bf16 ? hs_decode_dispatch<__nv_bfloat16>(a, pattern_rows, pattern, st, err)
                   : hs_decode_dispatch<float>(a, pattern_rows, pattern, st, err);
}
