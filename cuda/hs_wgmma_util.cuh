/* hs_wgmma_util: Hopper warpgroup tensor-core building blocks (sm_90a only)
 * for the fused attention kernel: shared-memory matrix descriptors for the
 * 128-byte-swizzled tiles, wgmma.mma_async m64nNk16 (bf16 in, f32
 * accumulators) and its fences. Internal to cuda/.
 *
 * Tile layout (what the descriptors below describe): a [rows][D] bf16 tile is
 * stored as D/64 column chunks, each [rows][64] with 128-byte rows; within
 * every 8-row (1024-byte) atom the 16-byte unit u of row r sits at unit
 * u ^ (r % 8) (Swizzle<3,4,3>, the copy engine's and the tensor cores'
 * 128-byte swizzle). Atoms must be 1024-byte aligned.
 *   K-major operand (Q as A, K as B of S = Q·Kᵀ; contraction dim contiguous):
 *     start = chunk base + row0 * 128 + (k % 64) * 2, SBO = 1024 (next 8
 *     rows), LBO unused (1).
 *   MN-major operand (V as B of O = P·V; keys are the contraction dim, d is
 *     contiguous): start = key0 * 128, LBO = rows * 128 (next 64-column
 *     chunk of d), SBO = 1024 (next 8 keys), transpose flag set.
 * Accumulator fragment of m64nN (warp w of the warpgroup, g = lane/4,
 * c = lane%4): d[4n + e] holds row 16w + g + 8(e/2), column 8n + 2c + e%2 —
 * per warp the mma.sync m16n8 C layout, so the S tile converts into the A
 * fragments of P·V in registers exactly as in hs_attn_mma.cu. */
#ifndef HS_WGMMA_UTIL_CUH
#define HS_WGMMA_UTIL_CUH

#include <stdint.h>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define HS_HAVE_WGMMA 1

/* The 64-bit wgmma shared-memory descriptor, 128-byte swizzle. */
__device__ __forceinline__ uint64_t hs_wg_desc(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((saddr & 0x3FFFFu) >> 4) | ((uint64_t)((lbo >> 4) & 0x3FFFu) << 16) |
           ((uint64_t)((sbo >> 4) & 0x3FFFu) << 32) | (1ull << 62);
}

__device__ __forceinline__ void hs_wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void hs_wg_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void hs_wg_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
/* Pins a register to this point of the instruction stream: accumulator
 * writes stay before the wgmma.fence, reads stay after the wait (the
 * compiler sees no dependency between those and the asynchronous MMA). */
__device__ __forceinline__ void hs_wg_pin(float &r) { asm volatile("" : "+f"(r)::"memory"); }
__device__ __forceinline__ void hs_wg_pin(uint32_t &r) { asm volatile("" : "+r"(r)::"memory"); }
/* Ordinary (and cp.async) shared-memory writes made visible to the tensor
 * cores' async proxy; each writing thread runs it before the barrier. */
__device__ __forceinline__ void hs_fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/* Eight accumulator operands d[i..i+7] of the asm statements below. */
#define HS_WG_ACC8(i)                                                                                   \
    "+f"(d[(i) + 0]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3]), "+f"(d[(i) + 4]), "+f"(d[(i) + 5]), \
        "+f"(d[(i) + 6]), "+f"(d[(i) + 7])

/* d (+)= A·B, m64nNk16; ss: A and B from shared memory (both K-major);
 * rs: A from registers (the mma.sync A fragment per warp), B MN-major.
 * acc = 0 overwrites d. */
__device__ __forceinline__ void hs_wg_ss_n64(float (&d)[32], uint64_t da, uint64_t db, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
        "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31"
        "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
        : HS_WG_ACC8(0), HS_WG_ACC8(8), HS_WG_ACC8(16), HS_WG_ACC8(24)
        : "l"(da), "l"(db), "r"(acc));
}
__device__ __forceinline__ void hs_wg_rs_n64(float (&d)[32], const uint32_t (&a)[4], uint64_t db, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
        "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31"
        "}, {%32,%33,%34,%35}, %36, p, 1, 1, 1;\n}\n"
        : HS_WG_ACC8(0), HS_WG_ACC8(8), HS_WG_ACC8(16), HS_WG_ACC8(24)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc));
}
__device__ __forceinline__ void hs_wg_ss_n128(float (&d)[64], uint64_t da, uint64_t db, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
        "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
        "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
        "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63"
        "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : HS_WG_ACC8(0), HS_WG_ACC8(8), HS_WG_ACC8(16), HS_WG_ACC8(24), HS_WG_ACC8(32), HS_WG_ACC8(40), HS_WG_ACC8(48), HS_WG_ACC8(56)
        : "l"(da), "l"(db), "r"(acc));
}
__device__ __forceinline__ void hs_wg_rs_n128(float (&d)[64], const uint32_t (&a)[4], uint64_t db, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
        "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
        "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
        "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
        "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63"
        "}, {%64,%65,%66,%67}, %68, p, 1, 1, 1;\n}\n"
        : HS_WG_ACC8(0), HS_WG_ACC8(8), HS_WG_ACC8(16), HS_WG_ACC8(24), HS_WG_ACC8(32), HS_WG_ACC8(40), HS_WG_ACC8(48), HS_WG_ACC8(56)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(acc));
}

template <int N> struct hs_wg;
template <> struct hs_wg<64> {
    static __device__ __forceinline__ void ss(float (&d)[32], uint64_t a, uint64_t b, int acc) {
        hs_wg_ss_n64(d, a, b, acc);
    }
    static __device__ __forceinline__ void rs(float (&d)[32], const uint32_t (&a)[4], uint64_t b, int acc) {
        hs_wg_rs_n64(d, a, b, acc);
    }
};
template <> struct hs_wg<128> {
    static __device__ __forceinline__ void ss(float (&d)[64], uint64_t a, uint64_t b, int acc) {
        hs_wg_ss_n128(d, a, b, acc);
    }
    static __device__ __forceinline__ void rs(float (&d)[64], const uint32_t (&a)[4], uint64_t b, int acc) {
        hs_wg_rs_n128(d, a, b, acc);
    }
};

#endif /* sm_90a */
#endif
