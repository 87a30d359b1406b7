/* hs_attn_simt: the generic fused attention kernel on CUDA cores. f32 or bf16
 * elements (computed in f32), any d_head <= 256. It is the f32 validation
 * path (no tensor cores, so no TF32) and the bf16 path for head sizes the
 * tensor-core kernel has no instantiation for (tiny test models: d_head 12;
 * Gemma 2's 256).
 *
 * Block = 4 warps over a tile of 16 query rows (4 rows per warp) of one
 * (batch, head); keys in tiles of 32 staged in shared memory as f32. In a key
 * tile, lane j scores key j against the warp's 4 rows, the online softmax
 * update runs with warp shuffles, then lane j accumulates dims j, j+32, ...
 * of z. With a sliding window the tiles wholly before the block's first
 * row's window are skipped. Fixed reduction orders throughout: deterministic. */
#include "hs_attention.cuh"

#include <math.h>

#define SIMT_WARPS 4
#define SIMT_RPW 4                        /* query rows per warp */
#define SIMT_BQ (SIMT_WARPS * SIMT_RPW)   /* 16 query rows per block */
#define SIMT_BK 32                        /* keys per tile = lanes */

__device__ __forceinline__ float hs_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float hs_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static size_t hs_simt_smem(int d) {
    /* sQ [BQ][d], sK [BK][d+1] (odd stride: conflict-free column reads),
     * sV [BK][d], sP [WARPS][RPW][BK] */
    return sizeof(float) * ((size_t)SIMT_BQ * d + (size_t)SIMT_BK * (d + 1) + (size_t)SIMT_BK * d +
                            (size_t)SIMT_WARPS * SIMT_RPW * SIMT_BK);
}

/* DPL: dims per lane, d <= 32 * DPL. CAP: the scores are soft-capped (a.softcap > 0), in an
 * instantiation of its own: in the one kernel, the cap's code made ptxas spill for sm_90. */
template <typename T, int DPL, bool CAP>
__global__ void __launch_bounds__(SIMT_WARPS * 32) hs_k_attn_simt(hs_cuda_attn_args a) {
    extern __shared__ float smem[];
    const int d = a.d, T_ = a.T;
    float *sQ = smem;                      /* [BQ][d] */
    float *sK = sQ + SIMT_BQ * d;          /* [BK][d+1] */
    float *sV = sK + SIMT_BK * (d + 1);    /* [BK][d] */
    float *sP = sV + SIMT_BK * d;          /* [WARPS][RPW][BK] */
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int nqt = (T_ + SIMT_BQ - 1) / SIMT_BQ;
    const int q0 = (nqt - 1 - (int)blockIdx.x) * SIMT_BQ; /* longest rows first */
    const int h = blockIdx.y, b = blockIdx.z, hk = h / (a.H / a.H_kv);
    const T *qb = (const T *)a.q + b * a.q_sb + h * a.q_sh;
    const T *kb = (const T *)a.k + b * a.k_sb + hk * a.k_sh;
    const T *vb = (const T *)a.v + b * a.v_sb + hk * a.v_sh;
    const int32_t *mask = a.key_mask ? a.key_mask + (int64_t)b * T_ : NULL;
    const bool uni = a.uniform && a.uniform[b * a.H + h] != 0; /* all visible scores 0 */
    const float slope2 = hs_attn_slope(a, h) * HS_ATTN_LOG2E; /* ALiBi, base 2 */

    for (int i = tid; i < SIMT_BQ * d; i += blockDim.x) {
        const int r = i / d, c = i - r * d, t = q0 + r;
        sQ[i] = t < T_ ? hs_ld(qb + t * a.q_st + c) : 0.0f;
    }
    float m[SIMT_RPW], l[SIMT_RPW], acc[SIMT_RPW][DPL];
#pragma unroll
    for (int r = 0; r < SIMT_RPW; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; c++) acc[r][c] = 0.0f;
    }
    const int row0 = warp * SIMT_RPW; /* this warp's first row in the tile */
    const int q_last = min(T_, q0 + SIMT_BQ) - 1;
    const int nkt = q_last / SIMT_BK + 1;
    float *sPw = sP + warp * SIMT_RPW * SIMT_BK;

    for (int kt = hs_attn_first_tile(a, q0, SIMT_BK); kt < nkt; kt++) {
        const int k0 = kt * SIMT_BK;
        __syncthreads(); /* the previous tile's readers are done (and sQ is loaded) */
        for (int i = tid; i < SIMT_BK * d; i += blockDim.x) {
            const int r = i / d, c = i - r * d, s = k0 + r;
            const bool ok = s < T_;
            sK[r * (d + 1) + c] = ok ? hs_ld(kb + s * a.k_st + c) : 0.0f;
            sV[r * d + c] = ok ? hs_ld(vb + s * a.v_st + c) : 0.0f;
        }
        __syncthreads();

        const int s = k0 + lane;
        const bool kvis = s < T_ && (!mask || mask[s] != 0);
        float dot[SIMT_RPW];
#pragma unroll
        for (int r = 0; r < SIMT_RPW; r++) dot[r] = 0.0f;
        const float *kr = sK + lane * (d + 1);
        for (int c = 0; c < d; c++) {
            const float kc = kr[c];
#pragma unroll
            for (int r = 0; r < SIMT_RPW; r++) dot[r] = fmaf(sQ[(row0 + r) * d + c], kc, dot[r]);
        }
#pragma unroll
        for (int r = 0; r < SIMT_RPW; r++) dot[r] = CAP ? hs_attn_score(a, dot[r]) * HS_ATTN_LOG2E : dot[r] * a.scale_log2;
#pragma unroll
        for (int r = 0; r < SIMT_RPW; r++) {
            const int t = q0 + row0 + r;
            const float sc = (kvis && s <= t && hs_attn_in_window(a, t, s)) ? (uni ? 0.0f : dot[r] + slope2 * (float)(s - t))
                                                                            : -INFINITY;
            const float m_new = fmaxf(m[r], hs_warp_max(sc));
            const float m_use = m_new == -INFINITY ? 0.0f : m_new; /* no visible key yet */
            const float p = exp2f(sc - m_use);
            const float corr = exp2f(m[r] - m_use);
            l[r] = l[r] * corr + hs_warp_sum(p);
            m[r] = m_new;
#pragma unroll
            for (int c = 0; c < DPL; c++) acc[r][c] *= corr;
            sPw[r * SIMT_BK + lane] = p;
        }
        __syncwarp();
        const int jmax = min(SIMT_BK, T_ - k0);
        for (int j = 0; j < jmax; j++) {
            float vv[DPL];
#pragma unroll
            for (int c = 0; c < DPL; c++) {
                const int dim = lane + 32 * c;
                vv[c] = dim < d ? sV[j * d + dim] : 0.0f;
            }
#pragma unroll
            for (int r = 0; r < SIMT_RPW; r++) {
                const float pj = sPw[r * SIMT_BK + j];
#pragma unroll
                for (int c = 0; c < DPL; c++) acc[r][c] = fmaf(pj, vv[c], acc[r][c]);
            }
        }
        __syncwarp();
    }

    const float hsc = a.head_scale ? a.head_scale[b * a.H + h] : 1.0f;
#pragma unroll
    for (int r = 0; r < SIMT_RPW; r++) {
        const int t = q0 + row0 + r;
        if (t >= T_) continue;
        const float inv = l[r] > 0.0f ? hsc / l[r] : 0.0f;
        T *zr = (T *)a.z + b * a.z_sb + t * a.z_st + h * a.z_sh;
#pragma unroll
        for (int c = 0; c < DPL; c++) {
            const int dim = lane + 32 * c;
            if (dim < d) hs_st(zr + dim, acc[r][c] * inv);
        }
        if (lane == 0 && a.lse)
            a.lse[((int64_t)b * a.H + h) * T_ + t] =
                l[r] > 0.0f ? (m[r] + log2f(l[r])) * HS_ATTN_LN2 : -INFINITY;
    }
}

template <typename T, int DPL, bool CAP>
static hs_status hs_simt_launch_cap(const hs_cuda_attn_args *a, cudaStream_t st, hs_err *err) {
    const dim3 grid((unsigned)((a->T + SIMT_BQ - 1) / SIMT_BQ), (unsigned)a->H, (unsigned)a->B);
    const size_t smem = hs_simt_smem(a->d);
    if (smem > 48 * 1024)
        HS_CUDA_CHECK(err, cudaFuncSetAttribute(hs_k_attn_simt<T, DPL, CAP>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                (int)smem));
    hs_k_attn_simt<T, DPL, CAP><<<grid, SIMT_WARPS * 32, smem, st>>>(*a);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_attn_simt");
    return HS_OK;
}

template <typename T, int DPL>
static hs_status hs_simt_launch(const hs_cuda_attn_args *a, cudaStream_t st, hs_err *err) {
    return a->softcap > 0.0f ? hs_simt_launch_cap<T, DPL, true>(a, st, err) : hs_simt_launch_cap<T, DPL, false>(a, st, err);
}

template <typename T>
static hs_status hs_simt_dispatch(const hs_cuda_attn_args *a, cudaStream_t st, hs_err *err) {
    if (a->d <= 32) return hs_simt_launch<T, 1>(a, st, err);
    if (a->d <= 64) return hs_simt_launch<T, 2>(a, st, err);
    if (a->d <= 96) return hs_simt_launch<T, 3>(a, st, err);
    if (a->d <= 128) return hs_simt_launch<T, 4>(a, st, err);
    if (a->d <= 256) return hs_simt_launch<T, 8>(a, st, err); /* Gemma 2 2B / 9B */
    return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda attention: d_head %d > 256", a->d);
}

hs_status hs_cuda_attn_simt(const hs_cuda_attn_args *a, int is_bf16, cudaStream_t st, hs_err *err) {
    return is_bf16 ? hs_simt_dispatch<__nv_bfloat16>(a, st, err) : hs_simt_dispatch<float>(a, st, err);
}
