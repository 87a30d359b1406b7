/* hs_block_reduce (internal): the fixed-order block reduction the row kernels
 * share (metric reductions, backward ops): a tree over HS_RED_THREADS values
 * in shared memory, the same bits every run (no atomics, no warp-order luck). */
#ifndef HS_BLOCK_REDUCE_CUH
#define HS_BLOCK_REDUCE_CUH

#define HS_RED_THREADS 256 /* blockDim.x of every kernel that calls it */

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

#endif
