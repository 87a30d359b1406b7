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
 * (batch, head), 64 rows per warpgroup; key tiles of BK = 64 or 128, copied
 * with cp.async one tile ahead. Two schedules:
 *   plain      per tile: S = Q·Kᵀ, wait, softmax, O += P·V, wait. The
 *              block-wide barrier of each tile keeps the two warpgroups in
 *              step (no overlap between them: that is the missing ping-pong).
 *   pipelined  FlashAttention-3's intra-warpgroup overlap: S_j = Q·K_jᵀ and
 *              O += P_{j-1}·V_{j-1} are issued together, and the softmax of
 *              S_j runs while the tensor cores still work on P_{j-1}·V_{j-1};
 *              O is rescaled after that wait. V keeps three stages (tile j+1
 *              lands while V_{j-1} is still read), K two.
 * Not done (FlashAttention-3 does): a producer warp with the bulk tensor copy
 * engine and setmaxnreg, and explicit ping-pong between the warpgroups. Both
 * warpgroups run every key tile of the block (on the diagonal, rows above the
 * keys are masked), so every wgmma is issued on a uniform path. */
#include "hs_attention.cuh"
#include "hs_wgmma_util.cuh"

#include <math.h>

typedef __nv_bfloat16 bf16;

#define WG_BQ 128
#define WG_THREADS 256

/* Shared memory: 1 KiB of slack to align the tiles to 1024 bytes, Q, KS
 * stages of K, VS of V, KS of the key mask. */
template <int D, int BK, bool PIPE> struct hs_wg_cfg {
    static constexpr int KS = 2, VS = PIPE ? 3 : 2;
    static constexpr uint32_t Q_BYTES = WG_BQ * D * 2, KV_BYTES = BK * D * 2;
    static constexpr size_t SMEM = 1024 + Q_BYTES + (KS + VS) * KV_BYTES + KS * BK * sizeof(int);
};

#ifdef HS_HAVE_WGMMA /* the device pass for sm_90a; every other pass sees empty bodies */

__device__ __forceinline__ void hs_wg_cp16(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void hs_wg_cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

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

/* What one block works on; the step functions below take it. */
struct hs_wg_block {
    const hs_cuda_attn_args *a;
    const bf16 *kb, *vb;
    const int32_t *mask;
    uint32_t sQ, sK0, sV0;
    int *sMask;
    int T, q0, wg, row0, c, kdiag;
    bool uni;
};

/* Issues the copy of key tile kt into K stage ks and V stage vs. */
template <int D, int BK>
__device__ __forceinline__ void hs_wg_load_keys(const hs_wg_block &B, int kt, int ks, int vs) {
    constexpr uint32_t KV = BK * D * 2;
    hs_wg_load<D, BK>(B.sK0 + ks * KV, B.kb, B.a->k_st, kt * BK, B.T);
    hs_wg_load<D, BK>(B.sV0 + vs * KV, B.vb, B.a->v_st, kt * BK, B.T);
    for (int j = threadIdx.x; j < BK; j += WG_THREADS) {
        const int t = kt * BK + j;
        B.sMask[ks * BK + j] = (t < B.T && (!B.mask || B.mask[t] != 0)) ? 1 : 0;
    }
}

/* Issues S = Q·Kᵀ for this warpgroup's 64 rows against K stage ks. */
template <int D, int BK> __device__ __forceinline__ void hs_wg_qk(const hs_wg_block &B, int ks, float (&sc)[BK / 2]) {
    const uint32_t sK = B.sK0 + ks * (BK * D * 2);
#pragma unroll
    for (int kd = 0; kd < D / 16; kd++) {
        const uint32_t koff = (kd & 3) << 5; /* 16 columns = 32 bytes into the 128-byte row */
        const uint64_t da = hs_wg_desc(B.sQ + (kd >> 2) * (WG_BQ * 128) + B.wg * 64 * 128 + koff, 16, 1024);
        const uint64_t db = hs_wg_desc(sK + (kd >> 2) * (BK * 128) + koff, 16, 1024);
        hs_wg<BK>::ss(sc, da, db, kd > 0);
    }
}

/* Issues O += P·V against V stage vs. */
template <int D, int BK>
__device__ __forceinline__ void hs_wg_pv(const hs_wg_block &B, int vs, const uint32_t (&pf)[BK / 16][4],
                                         float (&o)[D / 2]) {
    const uint32_t sV = B.sV0 + vs * (BK * D * 2);
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++) hs_wg<D>::rs(o, pf[kk], hs_wg_desc(sV + kk * 16 * 128, BK * 128, 1024), 1);
}

/* Masks and scales tile kt's scores into base 2 (uniform heads: 0 on visible
 * keys) and advances the online softmax of this thread's two rows: sc becomes
 * exp2(s - m_new), corr the factor O must be rescaled by. */
template <int BK>
__device__ __forceinline__ void hs_wg_softmax(const hs_wg_block &B, int kt, int ks, float (&sc)[BK / 2],
                                              float (&m_r)[2], float (&l_r)[2], float (&corr)[2]) {
    const int k0 = kt * BK;
    const bool diag = kt >= B.kdiag;
    const int *msk = B.sMask + ks * BK;
#pragma unroll
    for (int n = 0; n < BK / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int j = n * 8 + B.c * 2 + (e & 1);
            bool vis = msk[j] != 0;
            if (diag) vis = vis && k0 + j <= B.row0 + (e >> 1) * 8;
            sc[4 * n + e] = vis ? (B.uni ? 0.0f : sc[4 * n + e] * B.a->scale_log2) : -INFINITY;
        }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        float mx = m_r[i];
#pragma unroll
        for (int n = 0; n < BK / 8; n++) mx = fmaxf(mx, fmaxf(sc[4 * n + 2 * i], sc[4 * n + 2 * i + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_use = mx == -INFINITY ? 0.0f : mx; /* no visible key yet */
        corr[i] = exp2f(m_r[i] - m_use);
        m_r[i] = mx;
        float ls = 0.0f;
#pragma unroll
        for (int n = 0; n < BK / 8; n++) {
            sc[4 * n + 2 * i] = exp2f(sc[4 * n + 2 * i] - m_use);
            sc[4 * n + 2 * i + 1] = exp2f(sc[4 * n + 2 * i + 1] - m_use);
            ls += sc[4 * n + 2 * i] + sc[4 * n + 2 * i + 1];
        }
        l_r[i] = l_r[i] * corr[i] + ls;
    }
}

template <int D> __device__ __forceinline__ void hs_wg_rescale(float (&o)[D / 2], const float (&corr)[2]) {
#pragma unroll
    for (int n = 0; n < D / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) o[4 * n + e] *= corr[e >> 1];
}

__device__ __forceinline__ uint32_t hs_wg_pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* P (bf16) as A fragments: key step kk covers S n-tiles 2kk, 2kk+1. */
template <int BK> __device__ __forceinline__ void hs_wg_to_a(const float (&sc)[BK / 2], uint32_t (&pf)[BK / 16][4]) {
#pragma unroll
    for (int kk = 0; kk < BK / 16; kk++)
#pragma unroll
        for (int r = 0; r < 4; r++) pf[kk][r] = hs_wg_pack(sc[8 * kk + 2 * r], sc[8 * kk + 2 * r + 1]);
}

template <int N> __device__ __forceinline__ void hs_wg_pin_all(float (&x)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) hs_wg_pin(x[i]);
}
template <int N> __device__ __forceinline__ void hs_wg_pin_all(uint32_t (&x)[N][4]) {
#pragma unroll
    for (int i = 0; i < N; i++)
#pragma unroll
        for (int r = 0; r < 4; r++) hs_wg_pin(x[i][r]);
}

/* Waits for every copy group but the newest (the tile in use has landed) and
 * publishes it to the tensor cores' async proxy and to the other threads. */
__device__ __forceinline__ void hs_wg_tile_ready() {
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");
    hs_fence_proxy_async();
    __syncthreads();
}

/* z = O / l * head_scale, lse = ln(sum exp). */
template <int D>
__device__ __forceinline__ void hs_wg_epilogue(const hs_wg_block &B, const float (&o)[D / 2], const float (&m_r)[2],
                                               const float (&l_r)[2]) {
    const hs_cuda_attn_args &a = *B.a;
    const int b = blockIdx.z, h = blockIdx.y;
    const float hsc = a.head_scale ? a.head_scale[b * a.H + h] : 1.0f;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        float l = l_r[i];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const int row = B.row0 + i * 8;
        if (row >= B.T) continue;
        const float inv = l > 0.0f ? hsc / l : 0.0f;
        bf16 *zr = (bf16 *)a.z + b * a.z_sb + row * a.z_st + h * a.z_sh;
#pragma unroll
        for (int n = 0; n < D / 8; n++) {
            __nv_bfloat162 v = __floats2bfloat162_rn(o[4 * n + 2 * i] * inv, o[4 * n + 2 * i + 1] * inv);
            *reinterpret_cast<__nv_bfloat162 *>(zr + n * 8 + B.c * 2) = v;
        }
        if (B.c == 0 && a.lse)
            a.lse[((int64_t)b * a.H + h) * B.T + row] = l > 0.0f ? (m_r[i] + log2f(l)) * HS_ATTN_LN2 : -INFINITY;
    }
}

#endif

template <int D, int BK, bool PIPE>
__global__ void __launch_bounds__(WG_THREADS, 1) hs_k_attn_wgmma(const hs_cuda_attn_args a) {
#ifdef HS_HAVE_WGMMA
    using C = hs_wg_cfg<D, BK, PIPE>;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const uint32_t raw = (uint32_t)__cvta_generic_to_shared(smem_raw);
    hs_wg_block B;
    B.a = &a;
    B.sQ = (raw + 1023u) & ~1023u;
    B.sK0 = B.sQ + C::Q_BYTES;
    B.sV0 = B.sK0 + C::KS * C::KV_BYTES;
    B.sMask = reinterpret_cast<int *>(smem_raw + (B.sV0 + C::VS * C::KV_BYTES - raw)); /* [KS][BK] */
    B.T = a.T;
    const int tid = threadIdx.x, lane = tid & 31, nqt = (a.T + WG_BQ - 1) / WG_BQ;
    B.q0 = (nqt - 1 - (int)blockIdx.x) * WG_BQ; /* longest rows first */
    const int h = blockIdx.y, b = blockIdx.z, hk = h / (a.H / a.H_kv);
    B.kb = (const bf16 *)a.k + b * a.k_sb + hk * a.k_sh;
    B.vb = (const bf16 *)a.v + b * a.v_sb + hk * a.v_sh;
    B.mask = a.key_mask ? a.key_mask + (int64_t)b * a.T : NULL;
    B.uni = a.uniform && a.uniform[b * a.H + h] != 0;
    B.wg = tid >> 7;
    B.row0 = B.q0 + B.wg * 64 + ((tid >> 5) & 3) * 16 + (lane >> 2); /* this thread's rows: row0, row0 + 8 */
    B.c = lane & 3;
    B.kdiag = B.q0 / BK; /* tiles from here on reach the block's rows: causal mask */
    const int nkt = (min(a.T, B.q0 + WG_BQ) - 1) / BK + 1;

    hs_wg_load<D, WG_BQ>(B.sQ, (const bf16 *)a.q + b * a.q_sb + h * a.q_sh, a.q_st, B.q0, a.T);
    hs_wg_load_keys<D, BK>(B, 0, 0, 0);
    hs_wg_cp_commit();

    float o[D / 2], sc[BK / 2], corr[2];
    uint32_t pf[BK / 16][4];
#pragma unroll
    for (int i = 0; i < D / 2; i++) o[i] = 0.0f;
#pragma unroll
    for (int i = 0; i < BK / 2; i++) sc[i] = 0.0f; /* read as "+f" by the first Q.K^T, which ignores it */
    float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.0f, 0.0f};

    if (!PIPE) {
        for (int kt = 0; kt < nkt; kt++) {
            const int s = kt & 1;
            if (kt + 1 < nkt) hs_wg_load_keys<D, BK>(B, kt + 1, s ^ 1, s ^ 1);
            hs_wg_cp_commit();
            hs_wg_tile_ready();
            hs_wg_fence();
            hs_wg_qk<D, BK>(B, s, sc); /* the first k step overwrites sc */
            hs_wg_commit();
            hs_wg_wait0();
            hs_wg_pin_all(sc);
            hs_wg_softmax<BK>(B, kt, s, sc, m_r, l_r, corr);
            hs_wg_rescale<D>(o, corr);
            hs_wg_to_a<BK>(sc, pf);
            hs_wg_pin_all(pf);
            hs_wg_pin_all(o);
            hs_wg_fence();
            hs_wg_pv<D, BK>(B, s, pf, o);
            hs_wg_commit();
            hs_wg_wait0();
            hs_wg_pin_all(o);
            __syncthreads(); /* every warpgroup is done with stage s before it is refilled */
        }
    } else {
        /* tile 0: S_0 and its softmax; no P·V yet */
        if (nkt > 1) hs_wg_load_keys<D, BK>(B, 1, 1, 1);
        hs_wg_cp_commit();
        hs_wg_tile_ready();
        hs_wg_fence();
        hs_wg_qk<D, BK>(B, 0, sc);
        hs_wg_commit();
        hs_wg_wait0();
        hs_wg_pin_all(sc);
        hs_wg_softmax<BK>(B, 0, 0, sc, m_r, l_r, corr);
        hs_wg_to_a<BK>(sc, pf);
        for (int kt = 1; kt < nkt; kt++) {
            /* K stage (kt+1)%2 held K_{kt-1} (its S is done), V stage (kt+1)%3
             * held V_{kt-2} (its P·V is done): free once every warpgroup
             * has finished the previous step */
            __syncthreads();
            if (kt + 1 < nkt) hs_wg_load_keys<D, BK>(B, kt + 1, (kt + 1) & 1, (kt + 1) % 3);
            hs_wg_cp_commit();
            hs_wg_tile_ready();
            hs_wg_pin_all(pf);
            hs_wg_pin_all(o);
            hs_wg_fence();
            hs_wg_qk<D, BK>(B, kt & 1, sc);
            hs_wg_commit();
            hs_wg_pv<D, BK>(B, (kt - 1) % 3, pf, o);
            hs_wg_commit();
            asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); /* S_kt done, P·V in flight */
            hs_wg_pin_all(sc);
            hs_wg_softmax<BK>(B, kt, kt & 1, sc, m_r, l_r, corr);
            hs_wg_wait0();
            hs_wg_pin_all(o);
            hs_wg_rescale<D>(o, corr);
            hs_wg_to_a<BK>(sc, pf);
        }
        hs_wg_pin_all(pf);
        hs_wg_pin_all(o);
        hs_wg_fence();
        hs_wg_pv<D, BK>(B, (nkt - 1) % 3, pf, o);
        hs_wg_commit();
        hs_wg_wait0();
        hs_wg_pin_all(o);
    }
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    hs_wg_epilogue<D>(B, o, m_r, l_r);
#elif defined(__CUDA_ARCH__)
    __trap(); /* an image without wgmma would otherwise return with z unwritten */
#endif
}

template <int D, int BK, bool PIPE>
static hs_status hs_wg_launch(const hs_cuda_attn_args *a, cudaStream_t st, hs_err *err) {
    const size_t smem = hs_wg_cfg<D, BK, PIPE>::SMEM;
    HS_CUDA_CHECK(err, cudaFuncSetAttribute(hs_k_attn_wgmma<D, BK, PIPE>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    const dim3 grid((unsigned)((a->T + WG_BQ - 1) / WG_BQ), (unsigned)a->H, (unsigned)a->B);
    hs_k_attn_wgmma<D, BK, PIPE><<<grid, WG_THREADS, smem, st>>>(*a);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_attn_wgmma");
    return HS_OK;
}

int hs_cuda_attn_wgmma_supports(int d, int cc) { return cc == 90 && (d == 64 || d == 128); }

/* Variants (the tests run each; bench_attention times each):
 *   1 plain, 64-key tiles        2 plain, 128-key tiles (the default, 0)
 *   3 pipelined, 64-key tiles    4 pipelined, 128-key tiles */
template <int D> static hs_status hs_wg_variant(const hs_cuda_attn_args *a, int v, cudaStream_t st, hs_err *err) {
    switch (v) {
    case 1: return hs_wg_launch<D, 64, false>(a, st, err);
    case 0: /* the default */
    case 2: return hs_wg_launch<D, 128, false>(a, st, err);
    case 3: return hs_wg_launch<D, 64, true>(a, st, err);
    case 4: return hs_wg_launch<D, 128, true>(a, st, err);
    default: break;
    }
    return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda attention: no wgmma variant %d", v);
}

hs_status hs_cuda_attn_wgmma(const hs_cuda_attn_args *a, int variant, cudaStream_t st, hs_err *err) {
    if (a->d == 64) return hs_wg_variant<64>(a, variant, st, err);
    if (a->d == 128) return hs_wg_variant<128>(a, variant, st, err);
    return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda attention: no wgmma kernel for d_head %d", a->d);
}
