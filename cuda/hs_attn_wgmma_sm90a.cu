/* hs_attn_wgmma: bf16 fused causal attention for Hopper (compute capability
 * 9.0, built for sm_90a only) on the warpgroup tensor cores.
 *
 * Same contract and numerics as hs_attn_mma.cu (online softmax in base 2,
 * f32 accumulation, z scaled by head_scale, uniform heads, key padding mask,
 * natural-log LSE; deterministic), different engine: S = Q·Kᵀ and O += P·V
 * are wgmma.mma_async m64nNk16 issued by whole warpgroups, A = Q and B = K
 * read straight from 128-byte-swizzled shared memory (no ldmatrix), P kept
 * in registers as the A operand of P·V.
 *
 * Block = 2 warpgroups (256 threads) over BQ = 128 query rows of one
 * (batch, head), 64 rows per warpgroup. Key tiles of BK (64 or 128) are
 * double-buffered: the cp.async copy of tile j+1 overlaps the two GEMMs and
 * the softmax of tile j, and the two warpgroups' softmax and GEMM phases
 * interleave on the SM's schedulers. What it does not do yet (FlashAttention-3
 * does): a producer warp with the bulk tensor copy engine and setmaxnreg,
 * and explicit ping-pong between the warpgroups. Tiles wholly above a
 * warpgroup's rows are skipped; diagonal tiles apply the causal mask. */
#include "hs_attention.cuh"
#include "hs_wgmma_util.cuh"

#include <math.h>

typedef __nv_bfloat16 bf16;

#define WG_BQ 128
#define WG_THREADS 256

template <int D, int BK> struct hs_wg_cfg {
    static constexpr uint32_t Q_BYTES = WG_BQ * D * 2;
    static constexpr uint32_t KV_BYTES = BK * D * 2;
    /* 1 KiB of slack to align the tiles to 1024 bytes, Q, two stages of K and
     * V, two stages of the key mask */
    static constexpr size_t SMEM = 1024 + Q_BYTES + 4 * KV_BYTES + 2 * BK * sizeof(int);
};

#ifdef HS_HAVE_WGMMA /* the device pass for sm_90a; every other pass sees empty bodies */

__device__ __forceinline__ void hs_wg_cp16(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
                 : "memory");
}

/* Rows row0.. of a [.., D] bf16 matrix into the swizzled tile at s (see
 * hs_wgmma_util.cuh); rows >= T are zero-filled. */
template <int D, int ROWS>
__device__ __forceinline__ void hs_wg_load(uint32_t s, const bf16 *g, int64_t stride, int row0, int T) {
    constexpr int U = D / 8; /* 16-byte units per row */
    for (int i = threadIdx.x; i < ROWS * U; i += WG_THREADS) {
        const int r = i / U, u = i - r * U, t = row0 + r;
        const uint32_t dst = s + (u >> 3) * (ROWS * 128) + r * 128 + (((u & 7) ^ (r & 7)) << 4);
        const bool ok = t < T;
        hs_wg_cp16(dst, ok ? (const void *)(g + t * stride + (u << 3)) : (const void *)g, ok ? 16 : 0);
    }
}

__device__ __forceinline__ uint32_t hs_wg_pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

#endif

template <int D, int BK>
__global__ void __launch_bounds__(WG_THREADS, 1) hs_k_attn_wgmma(const hs_cuda_attn_args a) {
#ifdef HS_HAVE_WGMMA
    using C = hs_wg_cfg<D, BK>;
    constexpr int NS = BK / 8; /* n-tiles of S per thread */
    constexpr int NO = D / 8;  /* n-tiles of O */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem_raw);
    const uint32_t sQ = (raw + 1023u) & ~1023u, sK0 = sQ + C::Q_BYTES, sV0 = sK0 + 2 * C::KV_BYTES;
    int *sMask = reinterpret_cast<int *>(smem_raw + (sV0 + 2 * C::KV_BYTES - raw)); /* [2][BK] */

    const int T_ = a.T, tid = threadIdx.x, wg = tid >> 7, lane = tid & 31;
    const int g = lane >> 2, c = lane & 3;
    const int nqt = (T_ + WG_BQ - 1) / WG_BQ;
    const int q0 = (nqt - 1 - (int)blockIdx.x) * WG_BQ; /* longest rows first */
    const int h = blockIdx.y, b = blockIdx.z, hk = h / (a.H / a.H_kv);
    const bf16 *qb = (const bf16 *)a.q + b * a.q_sb + h * a.q_sh;
    const bf16 *kb = (const bf16 *)a.k + b * a.k_sb + hk * a.k_sh;
    const bf16 *vb = (const bf16 *)a.v + b * a.v_sb + hk * a.v_sh;
    const int32_t *mask = a.key_mask ? a.key_mask + (int64_t)b * T_ : NULL;
    const bool uni = a.uniform && a.uniform[b * a.H + h] != 0;
    const int wrow0 = q0 + wg * 64;                          /* this warpgroup's rows */
    const int row0 = wrow0 + ((tid >> 5) & 3) * 16 + g;      /* this thread's rows: row0, row0 + 8 */
    const int nkt = (min(T_, q0 + WG_BQ) - 1) / BK + 1;
    const int kdiag = q0 / BK; /* tiles from here on reach the block's rows */

    auto load_keys = [&](int kt, int s) {
        hs_wg_load<D, BK>(sK0 + s * C::KV_BYTES, kb, a.k_st, kt * BK, T_);
        hs_wg_load<D, BK>(sV0 + s * C::KV_BYTES, vb, a.v_st, kt * BK, T_);
        for (int j = tid; j < BK; j += WG_THREADS) {
            const int t = kt * BK + j;
            sMask[s * BK + j] = (t < T_ && (!mask || mask[t] != 0)) ? 1 : 0;
        }
    };
    hs_wg_load<D, WG_BQ>(sQ, qb, a.q_st, q0, T_);
    load_keys(0, 0);
    asm volatile("cp.async.commit_group;\n" ::: "memory");

    float o[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; i++) o[i] = 0.0f;
    float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.0f, 0.0f};

    for (int kt = 0; kt < nkt; kt++) {
        const int s = kt & 1, k0 = kt * BK;
        if (kt + 1 < nkt) load_keys(kt + 1, s ^ 1);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
        asm volatile("cp.async.wait_group 1;\n" ::: "memory"); /* tile kt (and Q) landed */
        hs_fence_proxy_async();
        __syncthreads();

        /* a tile wholly above this warpgroup's rows, or rows past T, contribute nothing */
        if (k0 <= wrow0 + 63 && wrow0 < T_) {
            const uint32_t sK = sK0 + s * C::KV_BYTES, sV = sV0 + s * C::KV_BYTES;
            float sc[BK / 2]; /* the first k step overwrites (acc = 0) */
            hs_wg_fence();
#pragma unroll
            for (int kd = 0; kd < D / 16; kd++) {
                const uint32_t koff = (kd & 3) << 5; /* 16 columns = 32 bytes into the 128-byte row */
                const uint64_t da = hs_wg_desc(sQ + (kd >> 2) * (WG_BQ * 128) + wg * 64 * 128 + koff, 16, 1024);
                const uint64_t db = hs_wg_desc(sK + (kd >> 2) * (BK * 128) + koff, 16, 1024);
                hs_wg<BK>::ss(sc, da, db, kd > 0);
            }
            hs_wg_commit();
            hs_wg_wait0();
#pragma unroll
            for (int i = 0; i < BK / 2; i++) hs_wg_pin(sc[i]);

            /* mask, scale into base 2 (uniform heads: score 0 on visible keys) */
            const bool diag = kt >= kdiag;
#pragma unroll
            for (int n = 0; n < NS; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int j = n * 8 + c * 2 + (e & 1);
                    bool vis = sMask[s * BK + j] != 0;
                    if (diag) vis = vis && k0 + j <= row0 + (e >> 1) * 8;
                    sc[4 * n + e] = vis ? (uni ? 0.0f : sc[4 * n + e] * a.scale_log2) : -INFINITY;
                }

            /* online softmax: rows row0 (i = 0) and row0 + 8 (i = 1) */
#pragma unroll
            for (int i = 0; i < 2; i++) {
                float mx = m_r[i];
#pragma unroll
                for (int n = 0; n < NS; n++) mx = fmaxf(mx, fmaxf(sc[4 * n + 2 * i], sc[4 * n + 2 * i + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float m_use = mx == -INFINITY ? 0.0f : mx; /* no visible key yet */
                const float corr = exp2f(m_r[i] - m_use);
                m_r[i] = mx;
                float ls = 0.0f;
#pragma unroll
                for (int n = 0; n < NS; n++) {
                    sc[4 * n + 2 * i] = exp2f(sc[4 * n + 2 * i] - m_use);
                    sc[4 * n + 2 * i + 1] = exp2f(sc[4 * n + 2 * i + 1] - m_use);
                    ls += sc[4 * n + 2 * i] + sc[4 * n + 2 * i + 1];
                }
                l_r[i] = l_r[i] * corr + ls;
#pragma unroll
                for (int n = 0; n < NO; n++) {
                    o[4 * n + 2 * i] *= corr;
                    o[4 * n + 2 * i + 1] *= corr;
                }
            }

            /* P (bf16) as A fragments: key step kk covers S n-tiles 2kk, 2kk+1 */
            uint32_t pf[BK / 16][4];
#pragma unroll
            for (int kk = 0; kk < BK / 16; kk++) {
                pf[kk][0] = hs_wg_pack(sc[8 * kk + 0], sc[8 * kk + 1]);
                pf[kk][1] = hs_wg_pack(sc[8 * kk + 2], sc[8 * kk + 3]);
                pf[kk][2] = hs_wg_pack(sc[8 * kk + 4], sc[8 * kk + 5]);
                pf[kk][3] = hs_wg_pack(sc[8 * kk + 6], sc[8 * kk + 7]);
#pragma unroll
                for (int r = 0; r < 4; r++) hs_wg_pin(pf[kk][r]);
            }
#pragma unroll
            for (int i = 0; i < D / 2; i++) hs_wg_pin(o[i]);
            hs_wg_fence();
            /* O += P V */
#pragma unroll
            for (int kk = 0; kk < BK / 16; kk++) {
                const uint64_t dv = hs_wg_desc(sV + kk * 16 * 128, BK * 128, 1024);
                hs_wg<D>::rs(o, pf[kk], dv, 1);
            }
            hs_wg_commit();
            hs_wg_wait0();
#pragma unroll
            for (int i = 0; i < D / 2; i++) hs_wg_pin(o[i]);
        }
        __syncthreads(); /* every warpgroup is done with stage s before it is refilled */
    }
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");

    /* epilogue: z = O / l * head_scale, lse = ln(sum exp) */
    const float hsc = a.head_scale ? a.head_scale[b * a.H + h] : 1.0f;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        float l = l_r[i];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const int row = row0 + i * 8;
        if (row >= T_) continue;
        const float inv = l > 0.0f ? hsc / l : 0.0f;
        bf16 *zr = (bf16 *)a.z + b * a.z_sb + row * a.z_st + h * a.z_sh;
#pragma unroll
        for (int n = 0; n < NO; n++) {
            __nv_bfloat162 v = __floats2bfloat162_rn(o[4 * n + 2 * i] * inv, o[4 * n + 2 * i + 1] * inv);
            *reinterpret_cast<__nv_bfloat162 *>(zr + n * 8 + c * 2) = v;
        }
        if (c == 0 && a.lse)
            a.lse[((int64_t)b * a.H + h) * T_ + row] = l > 0.0f ? (m_r[i] + log2f(l)) * HS_ATTN_LN2 : -INFINITY;
    }
#endif
}

template <int D, int BK> static hs_status hs_wg_launch(const hs_cuda_attn_args *a, cudaStream_t st, hs_err *err) {
    const size_t smem = hs_wg_cfg<D, BK>::SMEM;
    HS_CUDA_CHECK(err, cudaFuncSetAttribute(hs_k_attn_wgmma<D, BK>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            (int)smem));
    const dim3 grid((unsigned)((a->T + WG_BQ - 1) / WG_BQ), (unsigned)a->H, (unsigned)a->B);
    hs_k_attn_wgmma<D, BK><<<grid, WG_THREADS, smem, st>>>(*a);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_attn_wgmma");
    return HS_OK;
}

int hs_cuda_attn_wgmma_supports(int d, int cc) { return cc == 90 && (d == 64 || d == 128); }

hs_status hs_cuda_attn_wgmma(const hs_cuda_attn_args *a, int variant, cudaStream_t st, hs_err *err) {
    /* variant 1: 64-key tiles; 2 (and 0, the default): 128-key tiles */
    const int bk = variant == 1 ? 64 : 128;
    if (variant < 0 || variant > 2)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda attention: no wgmma variant %d", variant);
    if (a->d == 64) return bk == 64 ? hs_wg_launch<64, 64>(a, st, err) : hs_wg_launch<64, 128>(a, st, err);
    if (a->d == 128) return bk == 64 ? hs_wg_launch<128, 64>(a, st, err) : hs_wg_launch<128, 128>(a, st, err);
    return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda attention: no wgmma kernel for d_head %d", a->d);
}
