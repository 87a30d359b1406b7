/* hs_block_reduce (internal): the fixed-order block reduction the row kernels
 * share (metric reductions, backward ops): a tree over HS_RED_THREADS values
 * in shared memory, the same bits every run (no atomics, no warp-order luck). */
#ifndef HS_BLOCK_REDUCE_CUH
#define HS_BLOCK_REDUCE_CUH

#include "hs_cuda_common.cuh"

#define HS_RED_THREADS 256 /* blockDim.x of every kernel that calls it */
static_assert((HS_RED_THREADS & (HS_RED_THREADS - 1)) == 0 && HS_RED_THREADS <= 1024,
              "the tree halves a power-of-two block");

/* One value per thread in, the block's max (MAX) or sum out, to every
 * thread; sh holds HS_RED_THREADS floats and may be reused right after. */
template <bool MAX> __device__ __forceinline__ float hs_block_reduce(float v, float *sh) {
    const int tid = threadIdx.x;
    sh[tid] = v;
    __syncthreads();
#pragma unroll
    for (int s = HS_RED_THREADS / 2; s > 0; s >>= 1) {
        if (tid < s) sh[tid] = MAX ? fmaxf(sh[tid], sh[tid + s]) : sh[tid] + sh[tid + s];
        __syncthreads();
    }
    const float r = sh[0];
    __syncthreads(); /* sh is reused by the next reduction */
    return r;
}

/* The max-shifted softmax denominator of one row of n values, reduced by
 * the whole block: *mx = max x, returns sum exp(x - *mx) (the same bits on
 * every thread). Every read of x is done when it returns. */
template <typename T> __device__ __forceinline__ float hs_block_row_sumexp(const T *x, int n, float *sh, float *mx) {
    float m = -INFINITY;
    for (int i = threadIdx.x; i < n; i += HS_RED_THREADS) m = fmaxf(m, hs_ld(x + i));
    m = hs_block_reduce<true>(m, sh);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < n; i += HS_RED_THREADS) sum += expf(hs_ld(x + i) - m);
    *mx = m;
    return hs_block_reduce<false>(sum, sh);
}

#endif
