/* hs_backend_cuda (internal C interface): CUDA-backend extras that are not
 * part of the op table, for benchmarks and tests that build device data
 * directly (e.g. a 7B-shaped model whose weights are generated on the device
 * instead of uploaded from a host model). Only for a backend made by
 * hs_backend_cuda_init. */
#ifndef HS_BACKEND_CUDA_H
#define HS_BACKEND_CUDA_H

#include <stdint.h>

#include "headsweep/hs_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fills n act-dtype elements at dst (backend memory) with mean + std * N(0,1)
 * from a counter-based generator keyed by (seed, index): reproducible for a
 * seed. std = 0 gives the constant mean (norm weights). Asynchronous. */
hs_status hs_backend_cuda_fill_normal(hs_backend *be, void *dst, int64_t n, uint64_t seed,
                                      float mean, float std, hs_err *err);

/* The bf16 fused-attention kernel. AUTO is the default choice (today the
 * mma.sync kernel everywhere); MMA forces it; SIMT forces the CUDA-core
 * kernel (what f32, odd d_head and unaligned buffers take; what d_head 256
 * takes on sm_86/89 parts), for tests and comparisons; WGMMA asks for the Hopper
 * kernel, which needs a compute-capability 9.0 device (HS_ERR_UNSUPPORTED
 * otherwise) and covers d_head 64 and 128 (other shapes keep the mma.sync
 * kernel). variant picks the kernel's variant (0 = its default; the wgmma
 * kernel's are listed in cuda/hs_attn_wgmma_sm90a.cu). A backend starts from
 * the environment variable HS_CUDA_ATTN (auto, mma, simt, wgmma or wgmma:VARIANT)
 * when it is set. */
typedef enum { HS_CUDA_ATTN_AUTO = 0, HS_CUDA_ATTN_MMA, HS_CUDA_ATTN_WGMMA, HS_CUDA_ATTN_SIMT } hs_cuda_attn_kernel;
#define HS_CUDA_WGMMA_VARIANTS 4
hs_status hs_backend_cuda_set_attn_kernel(hs_backend *be, hs_cuda_attn_kernel kernel, int variant, hs_err *err);
/* The kernel the backend is set to (by HS_CUDA_ATTN or the call above); AUTO
 * for anything that is not a CUDA backend. */
hs_cuda_attn_kernel hs_backend_cuda_attn_kernel(hs_backend *be);

/* How many attention calls each kernel has taken on this backend so far:
 * out[0] the CUDA-core kernel, out[1] mma.sync, out[2] wgmma. Lets a test
 * show that a forced kernel actually ran. */
void hs_backend_cuda_attn_launches(hs_backend *be, int64_t out[3]);

/* Whether bf16 attention at d_head d takes a tensor-core kernel on this
 * backend's device (given 16-byte-aligned buffers); *cc gets the device's
 * compute capability (major * 10 + minor). 0 and 0 for anything that is not
 * a CUDA backend. d_head 256 needs 101,632 B of shared memory per block: A100
 * and H100 give it, sm_86/89 parts do not. ALiBi's attention never takes them
 * (the CUDA-core kernel carries its biases). */
int hs_backend_cuda_attn_tensor_cores(hs_backend *be, int d, int *cc);

/* hs_backend_identity's text for a CUDA backend. */
void hs_backend_cuda_identity(hs_backend *be, char *buf, size_t n);

/* The backend's cudaStream_t (as void*), for events in benchmarks. */
void *hs_backend_cuda_stream(hs_backend *be);

#ifdef __cplusplus
}
#endif
#endif
