/* hs_attn_mma: bf16 fused causal attention on the tensor cores
 * (FlashAttention-2 style: mma.sync m16n8k16, f32 accumulation, online softmax
 * in registers, one pass over the keys in tiles of 64).
 *
 * Block = 4 warps over 64·WM query rows of one (batch, head); each warp owns
 * WM m-tiles of 16 rows and keeps their Q fragments in registers (d_head 256:
 * re-read from shared memory at each k step, see hs_mma_geom) (WM = 2, for
 * d_head <= 64, halves the shared-memory reads per mma: used for long
 * sequences, see the variants below). Per key tile: K and V are staged in padded shared memory
 * with cp.async (V's load overlaps S = Q·Kᵀ, the next K's load overlaps
 * softmax and P·V). Only the diagonal key tiles are cut by the causal mask;
 * they run their own instantiation of the tile step, which also skips the
 * P·V steps whose keys lie wholly above the warp's rows. A sliding window
 * skips the tiles before the first row's window and cuts the tiles at its
 * lower edge with the same instantiation (which masks by window as well).
 * Deterministic: no atomics; row sums are reduced across the 4 lanes of a
 * row in a fixed order. */
#include "hs_mma_util.cuh"

#include <math.h>

typedef __nv_bfloat16 bf16;

template <int D, int WM> struct hs_fa_cfg {
    static constexpr int BQ = 16 * WM * MMA_WARPS;
    static constexpr size_t SMEM =
        (size_t)(BQ + 2 * MMA_BK) * hs_mma_geom<D>::DP * sizeof(bf16) + MMA_BK * sizeof(int);
};

/* What one block's tile steps share. */
struct hs_fa_block {
    const hs_cuda_attn_args *a;
    const __nv_bfloat16 *sQ; /* read per k step where Q is not kept in registers */
    __nv_bfloat16 *sK, *sV;
    int *sMask;
    const __nv_bfloat16 *kb, *vb;
    const int32_t *mask;
    int T, wrow0, qrow, g, tig; /* qrow: the warp's first row in sQ */
    bool uni;
};

/* One key tile kt of nkt: S = Q·Kᵀ, mask, online softmax, O += P·V, and the
 * staging of the next K tile. DIAG: a tile that reaches the block's first row
 * (the causal mask cuts it; it may run past T) or the lower edge of a row's
 * window; every other tile lies wholly below the diagonal, in range and
 * inside every row's window, and needs only the padding mask. Two
 * instantiations keep the common body free of branches (one loop with a skip
 * branch in P·V measured 15% below the branch-free first kernel on an H100). */
template <int D, int WM, bool DIAG, bool WIN>
__device__ __forceinline__ void hs_fa_tile(const hs_fa_block &B, int kt, int nkt,
                                           uint32_t (&qf)[WM][hs_mma_geom<D>::QF][4],
                                           float (&o)[WM][hs_mma_geom<D>::NT_D][4], float (&m_r)[WM][2],
                                           float (&l_r)[WM][2]) {
    using G = hs_mma_geom<D>;
    const hs_cuda_attn_args &a = *B.a;
    const int k0 = kt * MMA_BK;
    hs_load_tile<D, MMA_BK>(B.sV, B.vb, a.v_st, k0, B.T);
    hs_cp_async_commit();

    /* S = Q Kᵀ: 16·WM rows x 64 keys per warp. kd outer: consecutive mma's
     * write different accumulators (an nk-outer order chains KSTEPS dependent
     * mma's per accumulator; that version measured ~8% slower). */
    float s[WM][G::NT_K][4];
#pragma unroll
    for (int mt = 0; mt < WM; mt++)
#pragma unroll
        for (int n = 0; n < G::NT_K; n++) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.0f;
#pragma unroll
    for (int kd = 0; kd < G::KSTEPS; kd++) {
        const int qk = G::QREG ? kd : 0;
        if constexpr (!G::QREG) {
#pragma unroll
            for (int mt = 0; mt < WM; mt++) hs_load_q_frag<D>(qf[mt][0], B.sQ, B.qrow + mt * 16, kd);
        }
#pragma unroll
        for (int nk = 0; nk < G::NT_K; nk += 2) {
            uint32_t kf[4];
            hs_load_k_frags<D>(kf, B.sK, nk, kd);
#pragma unroll
            for (int mt = 0; mt < WM; mt++) {
                hs_mma_bf16(s[mt][nk], qf[mt][qk], kf[0], kf[1]);
                hs_mma_bf16(s[mt][nk + 1], qf[mt][qk], kf[2], kf[3]);
            }
        }
    }

    /* mask, scale into base 2 (uniform heads: score 0 on visible keys) */
#pragma unroll
    for (int mt = 0; mt < WM; mt++)
#pragma unroll
        for (int nk = 0; nk < G::NT_K; nk++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int j = nk * 8 + B.tig * 2 + (e & 1);
                bool vis = B.sMask[j] != 0;
                if (DIAG) {
                    const int row = B.wrow0 + mt * 16 + B.g + (e >> 1) * 8;
                    vis = vis && k0 + j <= row && (!WIN || hs_attn_in_window(a, row, k0 + j));
                }
                s[mt][nk][e] = vis ? (B.uni ? 0.0f : hs_attn_score2(a, s[mt][nk][e])) : -INFINITY;
            }

    /* online softmax: rows g (i = 0) and g + 8 (i = 1) of each m-tile */
#pragma unroll
    for (int mt = 0; mt < WM; mt++) {
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float mx = m_r[mt][i];
#pragma unroll
            for (int nk = 0; nk < G::NT_K; nk++) mx = fmaxf(mx, fmaxf(s[mt][nk][2 * i], s[mt][nk][2 * i + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_use = mx == -INFINITY ? 0.0f : mx; /* no visible key yet */
            const float corr = exp2f(m_r[mt][i] - m_use);
            m_r[mt][i] = mx;
            float ls = 0.0f;
#pragma unroll
            for (int nk = 0; nk < G::NT_K; nk++) {
                s[mt][nk][2 * i] = exp2f(s[mt][nk][2 * i] - m_use);
                s[mt][nk][2 * i + 1] = exp2f(s[mt][nk][2 * i + 1] - m_use);
                ls += s[mt][nk][2 * i] + s[mt][nk][2 * i + 1];
            }
            l_r[mt][i] = l_r[mt][i] * corr + ls;
#pragma unroll
            for (int n = 0; n < G::NT_D; n++) {
                o[mt][n][2 * i] *= corr;
                o[mt][n][2 * i + 1] *= corr;
            }
        }
    }

    /* P (bf16) as A fragments: key step kk covers S n-tiles 2kk, 2kk+1 */
    uint32_t pf[WM][MMA_BK / 16][4];
#pragma unroll
    for (int mt = 0; mt < WM; mt++)
#pragma unroll
        for (int kk = 0; kk < MMA_BK / 16; kk++) {
            pf[mt][kk][0] = hs_pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
            pf[mt][kk][1] = hs_pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
            pf[mt][kk][2] = hs_pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
            pf[mt][kk][3] = hs_pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
        }

    __syncthreads(); /* every warp is done with sK and sMask */
    if (kt + 1 < nkt) {
        hs_load_tile<D, MMA_BK>(B.sK, B.kb, a.k_st, k0 + MMA_BK, B.T);
        hs_cp_async_commit();
        hs_load_key_mask(B.sMask, B.mask, k0 + MMA_BK, B.T);
        hs_cp_async_wait<1>(); /* V of this tile landed; the next K may be in flight */
    } else {
        hs_cp_async_wait<0>();
    }
    __syncthreads();

    /* O += P V; on the diagonal tile, key steps wholly above the warp's rows
     * have P = 0 and are skipped */
    const int wrow_max = B.wrow0 + 16 * WM - 1;
#pragma unroll
    for (int kk = 0; kk < MMA_BK / 16; kk++) {
        if (DIAG && k0 + kk * 16 > wrow_max) continue;
#pragma unroll
        for (int nd = 0; nd < G::NT_D; nd += 2) {
            uint32_t vf[4];
            hs_load_v_frags<D>(vf, B.sV, kk, nd);
#pragma unroll
            for (int mt = 0; mt < WM; mt++) {
                hs_mma_bf16(o[mt][nd], pf[mt][kk], vf[0], vf[1]);
                hs_mma_bf16(o[mt][nd + 1], pf[mt][kk], vf[2], vf[3]);
            }
        }
    }
    hs_cp_async_wait<0>(); /* the next K tile */
    __syncthreads();       /* every warp is done with sV */
}

/* MINB: blocks per SM the register allocation must allow (1 = compiler's choice).
 * WIN: a sliding window (a.window > 0), in instantiations of its own: in the
 * one kernel, its tile bounds cost every unwindowed instance 9 to 17 registers. */
template <int D, int WM, int MINB, bool WIN>
__global__ void __launch_bounds__(MMA_WARPS * 32, MINB) hs_k_attn_mma(hs_cuda_attn_args a) {
    using G = hs_mma_geom<D>;
    constexpr int DP = G::DP, BQ = hs_fa_cfg<D, WM>::BQ;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *sQ = reinterpret_cast<bf16 *>(smem_raw); /* [BQ][DP] */
    hs_fa_block B;
    B.a = &a;
    B.sQ = sQ; /* never overwritten: the D = 256 tile steps read their Q fragments from it */
    B.sK = sQ + BQ * DP;          /* [BK][DP] */
    B.sV = B.sK + MMA_BK * DP;    /* [BK][DP] */
    B.sMask = reinterpret_cast<int *>(B.sV + MMA_BK * DP);

    const int T_ = a.T, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    B.T = T_;
    B.g = lane >> 2;
    B.tig = lane & 3;
    const int nqt = (T_ + BQ - 1) / BQ;
    const int q0 = (nqt - 1 - (int)blockIdx.x) * BQ; /* longest rows first */
    const int h = blockIdx.y, b = blockIdx.z, hk = h / (a.H / a.H_kv);
    const bf16 *qb = (const bf16 *)a.q + b * a.q_sb + h * a.q_sh;
    B.kb = (const bf16 *)a.k + b * a.k_sb + hk * a.k_sh;
    B.vb = (const bf16 *)a.v + b * a.v_sb + hk * a.v_sh;
    B.mask = a.key_mask ? a.key_mask + (int64_t)b * T_ : NULL;
    B.uni = a.uniform && a.uniform[b * a.H + h] != 0;
    B.qrow = warp * 16 * WM;
    B.wrow0 = q0 + B.qrow; /* this warp's first row */
    const int q_last = min(T_, q0 + BQ) - 1;
    const int nkt = q_last / MMA_BK + 1;
    const int kdiag = q0 / MMA_BK; /* tiles from here on reach the block's rows: causal cut */
    /* a window: tiles before k_lo lie outside every row's window; tiles before k_edge hold a key
     * outside the last row's (k0 <= q_last - window), so the window cuts them */
    const int k_lo = WIN ? hs_attn_first_tile(a, q0, MMA_BK) : 0;
    const int k_edge = WIN && q_last >= a.window ? min(kdiag, (q_last - a.window) / MMA_BK + 1) : k_lo;

    hs_load_tile<D, BQ>(sQ, qb, a.q_st, q0, T_);
    hs_load_tile<D, MMA_BK>(B.sK, B.kb, a.k_st, k_lo * MMA_BK, T_);
    hs_cp_async_commit();
    hs_load_key_mask(B.sMask, B.mask, k_lo * MMA_BK, T_);
    hs_cp_async_wait<0>();
    __syncthreads();

    uint32_t qf[WM][G::QF][4];
    if constexpr (G::QREG) {
#pragma unroll
        for (int mt = 0; mt < WM; mt++) hs_load_q_frags<D>(qf[mt], sQ, B.qrow + mt * 16);
    }

    float o[WM][G::NT_D][4];
    float m_r[WM][2], l_r[WM][2];
#pragma unroll
    for (int mt = 0; mt < WM; mt++) {
#pragma unroll
        for (int n = 0; n < G::NT_D; n++) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.0f;
        m_r[mt][0] = m_r[mt][1] = -INFINITY;
        l_r[mt][0] = l_r[mt][1] = 0.0f;
    }

    for (int kt = k_lo; kt < k_edge; kt++) hs_fa_tile<D, WM, true, WIN>(B, kt, nkt, qf, o, m_r, l_r);
    for (int kt = k_edge; kt < kdiag; kt++) hs_fa_tile<D, WM, false, WIN>(B, kt, nkt, qf, o, m_r, l_r);
    for (int kt = kdiag; kt < nkt; kt++) hs_fa_tile<D, WM, true, WIN>(B, kt, nkt, qf, o, m_r, l_r);

    /* epilogue: z = O / l * head_scale, lse = ln(sum exp) */
    const float hsc = a.head_scale ? a.head_scale[b * a.H + h] : 1.0f;
#pragma unroll
    for (int mt = 0; mt < WM; mt++) {
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float l = l_r[mt][i];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const int row = B.wrow0 + mt * 16 + B.g + i * 8;
            if (row >= T_) continue;
            const float inv = l > 0.0f ? hsc / l : 0.0f;
            bf16 *zr = (bf16 *)a.z + b * a.z_sb + row * a.z_st + h * a.z_sh;
#pragma unroll
            for (int n = 0; n < G::NT_D; n++) {
                __nv_bfloat162 v = __floats2bfloat162_rn(o[mt][n][2 * i] * inv, o[mt][n][2 * i + 1] * inv);
                *reinterpret_cast<__nv_bfloat162 *>(zr + n * 8 + B.tig * 2) = v;
            }
            if (B.tig == 0 && a.lse)
                a.lse[((int64_t)b * a.H + h) * T_ + row] =
                    l > 0.0f ? (m_r[mt][i] + log2f(l)) * HS_ATTN_LN2 : -INFINITY;
        }
    }
}

template <int D, int WM, int MINB, bool WIN = false>
static hs_status hs_mma_launch(const hs_cuda_attn_args *a, cudaStream_t st, hs_err *err) {
    const size_t smem = hs_fa_cfg<D, WM>::SMEM;
    constexpr int BQ = hs_fa_cfg<D, WM>::BQ;
    /* Above 48 KiB a kernel must opt in (per device, so on every launch). */
    if (smem > 48 * 1024)
        HS_CUDA_CHECK(err, cudaFuncSetAttribute(hs_k_attn_mma<D, WM, MINB, WIN>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                (int)smem));
    const dim3 grid((unsigned)((a->T + BQ - 1) / BQ), (unsigned)a->H, (unsigned)a->B);
    hs_k_attn_mma<D, WM, MINB, WIN><<<grid, MMA_WARPS * 32, smem, st>>>(*a);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_attn_mma");
    return HS_OK;
}

/* The one shape d_head 256 has (Gemma 2 and 3, GPT-J): 64-row blocks, registers as the
 * compiler likes (O alone takes 128 per thread), 101,632 B of shared memory (99 KiB and 256 B),
 * so 2 blocks per SM on an H100 (1 on an A100) and none on parts that give a block less
 * (sm_86/89: 99 KiB), which keep the CUDA-core kernel. */
#define HS_MMA_D256_SMEM (hs_fa_cfg<256, 1>::SMEM)

int hs_cuda_attn_mma_supports(int d, size_t smem_optin) {
    if (d == 256) return HS_MMA_D256_SMEM <= smem_optin;
    return d == 32 || d == 64 || d == 80 || d == 96 || d == 128;
}

/* Variants (bench_attention times them; see its header for the numbers):
 *   1: one m-tile per warp, registers capped for 3 blocks (12 warps) per SM
 *   2: one m-tile per warp, registers as the compiler likes (d128: 204, 2
 *      blocks per SM: 6-12% slower than 1 on an H100)
 *   3: two m-tiles per warp (128-row blocks), d_head <= 64: half the
 *      shared-memory reads per mma; on an H100 +5-10% at T >= 2048, -10-15%
 *      at T <= 512 (fewer, longer blocks), hence the default below.
 * A sliding window takes variant 1's shape whatever the variant asked for:
 * one windowed instance per d_head keeps the build's size. */
static int hs_default_variant(const hs_cuda_attn_args *a) {
    return (a->d <= 64 && a->T >= 1024) ? 3 : 1;
}

template <int D> static hs_status hs_mma_variant(const hs_cuda_attn_args *a, int v, cudaStream_t st, hs_err *err) {
    constexpr int MINB1 = D > 128 ? 1 : 3; /* d_head 256: variants 1 and 2 are the one shape */
    switch (v) {
    case 1: return hs_mma_launch<D, 1, MINB1>(a, st, err);
    case 2: return hs_mma_launch<D, 1, 1>(a, st, err);
    default: break;
    }
    return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda attention: no variant %d for d_head %d", v, a->d);
}

hs_status hs_cuda_attn_mma_variant(const hs_cuda_attn_args *a, int variant, cudaStream_t st,
                                   hs_err *err) {
    const int v = variant ? variant : hs_default_variant(a);
    if (a->window > 0) {
        switch (a->d) {
        case 32: return hs_mma_launch<32, 1, 3, true>(a, st, err);
        case 64: return hs_mma_launch<64, 1, 3, true>(a, st, err);
        case 80: return hs_mma_launch<80, 1, 3, true>(a, st, err);
        case 96: return hs_mma_launch<96, 1, 3, true>(a, st, err);
        case 128: return hs_mma_launch<128, 1, 3, true>(a, st, err);
        case 256: return hs_mma_launch<256, 1, 1, true>(a, st, err);
        default: break;
        }
    } else if (v == 3) {
        if (a->d == 32) return hs_mma_launch<32, 2, 1>(a, st, err);
        if (a->d == 64) return hs_mma_launch<64, 2, 1>(a, st, err);
    } else {
        switch (a->d) {
        case 32: return hs_mma_variant<32>(a, v, st, err);
        case 64: return hs_mma_variant<64>(a, v, st, err);
        case 80: return hs_mma_variant<80>(a, v, st, err);
        case 96: return hs_mma_variant<96>(a, v, st, err);
        case 128: return hs_mma_variant<128>(a, v, st, err);
        case 256: return hs_mma_variant<256>(a, v, st, err);
        default: break;
        }
    }
    return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda attention: no tensor-core variant %d for d_head %d",
                      v, a->d);
}

hs_status hs_cuda_attn_mma(const hs_cuda_attn_args *a, cudaStream_t st, hs_err *err) {
    return hs_cuda_attn_mma_variant(a, 0, st, err);
}
