/* hs_mma_util: the bf16 tensor-core building blocks shared by the fused
 * attention kernel and the pattern recompute: cp.async tile staging,
 * ldmatrix, mma.sync m16n8k16 and the tile geometry. Internal to cuda/.
 *
 * Fragment layouts (PTX ISA, mma.m16n8k16, g = lane/4, c = lane%4):
 *   A (16x16, row-major): (g, 2c..2c+1), (g+8, 2c..), (g, 2c+8..), (g+8, 2c+8..)
 *   B (16x8, "col"):      (k 2c..2c+1, n g), (k 2c+8..2c+9, n g)
 *   C/D (16x8, f32):      (g, 2c), (g, 2c+1), (g+8, 2c), (g+8, 2c+1)
 * so the C fragments of S = Q·Kᵀ for keys 16kk..16kk+15 are exactly the A
 * fragment of P for P·V, and P never leaves registers. */
#ifndef HS_MMA_UTIL_CUH
#define HS_MMA_UTIL_CUH

#include <stdint.h>

#include "hs_attention.cuh"

#define MMA_WARPS 4
#define MMA_BK 64 /* keys per tile */

/* Tile rows are padded by 8 bf16: 16-byte aligned for cp.async/ldmatrix, and
 * the 8 rows an ldmatrix phase reads fall in distinct banks for D = 32..256.
 * QREG: a warp keeps its Q fragments in registers for the whole key loop. At
 * D = 256 they would take 64 registers beside O's 128 and spill, so there
 * they are read from shared memory at every k step instead (QF = 1 slot). */
template <int D> struct hs_mma_geom {
    static constexpr int DP = D + 8;
    static constexpr int KSTEPS = D / 16; /* k steps of Q·Kᵀ */
    static constexpr int NT_D = D / 8;    /* n tiles of P·V */
    static constexpr int NT_K = MMA_BK / 8;
    static constexpr bool QREG = D <= 128;
    static constexpr int QF = QREG ? KSTEPS : 1;
};

__device__ __forceinline__ void hs_cp_async16(void *smem, const void *gmem, int src_bytes) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
                 "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void hs_cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void hs_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void hs_ldsm_x4(uint32_t r[4], const void *p) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
}
__device__ __forceinline__ void hs_ldsm_x4_trans(uint32_t r[4], const void *p) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
}

/* c += a · b, 16x8x16, bf16 inputs, f32 accumulators. */
__device__ __forceinline__ void hs_mma_bf16(float c[4], const uint32_t a[4], uint32_t b0,
                                            uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t hs_pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); /* .x (low half) = lo */
    return *reinterpret_cast<uint32_t *>(&v);
}

/* Stages rows row0..row0+ROWS-1 of a [.., D] bf16 matrix (row stride `stride`
 * elements) into s [ROWS][DP] with cp.async; rows >= T are zero-filled
 * (src-size 0), so rows past the end can never inject NaN into P·V. */
template <int D, int ROWS>
__device__ __forceinline__ void hs_load_tile(__nv_bfloat16 *s, const __nv_bfloat16 *g,
                                             int64_t stride, int row0, int T) {
    constexpr int CH = D / 8; /* 16-byte chunks per row */
    for (int i = threadIdx.x; i < ROWS * CH; i += MMA_WARPS * 32) {
        const int r = i / CH, c = (i - r * CH) * 8, t = row0 + r;
        const bool ok = t < T;
        hs_cp_async16(s + r * hs_mma_geom<D>::DP + c,
                      ok ? (const void *)(g + t * stride + c) : (const void *)g, ok ? 16 : 0);
    }
}

/* sMask[j] = 1 iff key k0+j exists and is not padding (plain stores: the
 * caller's next __syncthreads publishes them). */
__device__ __forceinline__ void hs_load_key_mask(int *sMask, const int32_t *mask, int k0, int T) {
    if (threadIdx.x < MMA_BK) {
        const int s = k0 + threadIdx.x;
        sMask[threadIdx.x] = (s < T && (!mask || mask[s] != 0)) ? 1 : 0;
    }
}

/* The Q fragment of m-tile rows r0..r0+15 at k step kd: an A operand. */
template <int D>
__device__ __forceinline__ void hs_load_q_frag(uint32_t qf[4], const __nv_bfloat16 *sQ, int r0, int kd) {
    const int lane = threadIdx.x & 31;
    hs_ldsm_x4(qf, sQ + (r0 + (lane & 7) + ((lane >> 3) & 1) * 8) * hs_mma_geom<D>::DP + kd * 16 +
                       (lane >> 4) * 8);
}

/* The same for every k step. */
template <int D>
__device__ __forceinline__ void hs_load_q_frags(uint32_t qf[][4], const __nv_bfloat16 *sQ, int r0) {
#pragma unroll
    for (int kd = 0; kd < hs_mma_geom<D>::KSTEPS; kd++) hs_load_q_frag<D>(qf[kd], sQ, r0, kd);
}

/* B fragments of K for key n-tiles nk and nk+1 at k step kd: kf[0..1] for nk,
 * kf[2..3] for nk+1. */
template <int D>
__device__ __forceinline__ void hs_load_k_frags(uint32_t kf[4], const __nv_bfloat16 *sK, int nk,
                                                int kd) {
    const int lane = threadIdx.x & 31;
    hs_ldsm_x4(kf, sK + ((nk + (lane >> 4)) * 8 + (lane & 7)) * hs_mma_geom<D>::DP + kd * 16 +
                       ((lane >> 3) & 1) * 8);
}

/* B fragments of V for key step kk and dim n-tiles nd, nd+1 (transposed load). */
template <int D>
__device__ __forceinline__ void hs_load_v_frags(uint32_t vf[4], const __nv_bfloat16 *sV, int kk,
                                                int nd) {
    const int lane = threadIdx.x & 31;
    hs_ldsm_x4_trans(vf, sV + (kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * hs_mma_geom<D>::DP +
                             (nd + (lane >> 4)) * 8);
}

#endif
