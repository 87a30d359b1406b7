/* hs_kern_reduce: the metric reductions of the CUDA backend, so that a loss
 * reads back one float per position instead of a vocabulary-wide row of
 * logits. One block per row; every reduction is a fixed-order tree in f32
 * (the same bits every run, no atomics), max-shifted like the CPU reference. */
#include "hs_block_reduce.cuh"
#include "hs_cuda_backend.cuh"

#include <math.h>

typedef __nv_bfloat16 bf16;

template <typename T>
__global__ void __launch_bounds__(HS_RED_THREADS)
    hs_k_target_logprob(const T *logits, const int32_t *targets, int V, float *out) {
    __shared__ float sh[HS_RED_THREADS];
    const int64_t r = blockIdx.x;
    const int tg = targets[r];
    if (tg < 0) { /* uniform per block: the whole block leaves */
        if (threadIdx.x == 0) out[r] = NAN;
        return;
    }
    const T *x = logits + r * V;
    float mx;
    const float sum = hs_block_row_sumexp(x, V, sh, &mx);
    if (threadIdx.x == 0) out[r] = hs_ld(x + tg) - (mx + logf(sum));
}

hs_status hs_cuda_target_logprob(cudaStream_t st, hs_dtype dt, const void *logits, const int32_t *targets, int64_t R,
                                 int V, float *out, hs_err *err) {
    if (R <= 0) return HS_OK;
    if (R > 0x7fffffff || V <= 0)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda target_logprob: %lld rows of %d", (long long)R, V);
    if (dt == HS_DTYPE_BF16)
        hs_k_target_logprob<bf16><<<(unsigned)R, HS_RED_THREADS, 0, st>>>((const bf16 *)logits, targets, V, out);
    else
        hs_k_target_logprob<float><<<(unsigned)R, HS_RED_THREADS, 0, st>>>((const float *)logits, targets, V, out);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_target_logprob");
    return HS_OK;
}
