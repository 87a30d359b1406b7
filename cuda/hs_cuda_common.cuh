/* hs_cuda_common: error checking shared by every CUDA file of the backend
 * (one generic check macro instantiated for cudart and cuBLAS, after ggml's
 * CUDA_CHECK_GEN) and the element-type helpers (f32 / bf16 load and store).
 * Internal to cuda/ and bench/; not a public header. */
#ifndef HS_CUDA_COMMON_CUH
#define HS_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "headsweep/hs_status.h"

/* Records a failed CUDA/cuBLAS call in err: the expression text, the calling
 * function, file:line, the current device and the library's error string. */
static inline hs_status hs_cuda_fail(hs_err *err, const char *lib, const char *expr,
                                     const char *func, const char *file, int line,
                                     int code, const char *what) {
    int dev = -1;
    (void)cudaGetDevice(&dev);
    (void)cudaGetLastError(); /* reported here: keep it out of the next launch check */
    /* A kernel fault surfaces at a later call, perhaps another worker's on the same device. */
    const int fault = lib[0] == 'C' && (code == cudaErrorIllegalAddress || code == cudaErrorLaunchFailure ||
                                        code == cudaErrorMisalignedAddress || code == cudaErrorIllegalInstruction ||
                                        code == cudaErrorAssert || code == cudaErrorHardwareStackError);
    return hs_err_set(err, HS_ERR_DEVICE, "%s:%d: %s: %s error %d (%s) in `%s` on device %d%s", file, line, func,
                      lib, code, what ? what : "?", expr, dev,
                      fault ? " (a kernel fault, reported by a later call on the device, maybe another worker's: "
                              "CUDA_LAUNCH_BLOCKING=1 pins it to its launch)"
                            : "");
}

static inline const char *hs_cuda_err_str(cudaError_t e) { return cudaGetErrorString(e); }
static inline const char *hs_cublas_err_str(cublasStatus_t s) { return cublasGetStatusString(s); }

/* The generic check: evaluates expr once; on anything but ok_value records
 * the failure in err and runs on_fail (a `return` or a `goto`) with the
 * recorded status in hs_cuda_st_. */
#define HS_CU_CHECK_GEN(err, expr, ok_value, lib, str_fn, on_fail)                        \
    do {                                                                                \
        auto hs_cu_r_ = (expr);                                                         \
        if (hs_cu_r_ != (ok_value)) {                                                   \
            hs_status hs_cuda_st_ = hs_cuda_fail((err), (lib), #expr, __func__, __FILE__, \
                                                 __LINE__, (int)hs_cu_r_, str_fn(hs_cu_r_)); \
            (void)hs_cuda_st_;                                                          \
            on_fail;                                                                    \
        }                                                                               \
    } while (0)

/* Return-on-failure forms (functions without resources to release). */
#define HS_CUDA_CHECK(err, expr) \
    HS_CU_CHECK_GEN(err, expr, cudaSuccess, "CUDA", hs_cuda_err_str, return hs_cuda_st_)
#define HS_CUBLAS_CHECK(err, expr)                                                   \
    HS_CU_CHECK_GEN(err, expr, CUBLAS_STATUS_SUCCESS, "cuBLAS", hs_cublas_err_str, \
                    return hs_cuda_st_)

/* netCDF-style forms: set the function's `st` and jump to its `exit:` label.
 * (C++ forbids jumping over initialised locals: declare them first.) */
#define HS_CUDA_CHECK_GOTO(err, expr)                                            \
    HS_CU_CHECK_GEN(err, expr, cudaSuccess, "CUDA", hs_cuda_err_str, \
                    { st = hs_cuda_st_; goto exit; })
#define HS_CUBLAS_CHECK_GOTO(err, expr)                                                \
    HS_CU_CHECK_GEN(err, expr, CUBLAS_STATUS_SUCCESS, "cuBLAS", hs_cublas_err_str, \
                    { st = hs_cuda_st_; goto exit; })

/* After every kernel launch: the launch error (bad configuration, missing
 * image for this GPU) is reported here, asynchronous faults at the next
 * synchronising call. The kernel's name goes into the message. */
#define HS_CUDA_LAUNCH_CHECK(err, kernel_name) \
    HS_CU_CHECK_GEN(err, cudaGetLastError(), cudaSuccess, "CUDA launch of " kernel_name, \
                    hs_cuda_err_str, return hs_cuda_st_)

/* Grid sizing for 1-D grid-stride loops: enough blocks to fill the GPU a few
 * times over, never more than needed. */
static inline unsigned hs_cuda_grid_1d(int64_t n, int threads) {
    int64_t blocks = (n + threads - 1) / threads;
    if (blocks > 65536) blocks = 65536;
    if (blocks < 1) blocks = 1;
    return (unsigned)blocks;
}

/* ---- element types: loads and stores through f32 ------------------------ */

__device__ __forceinline__ float hs_ld(const float *p) { return *p; }
__device__ __forceinline__ float hs_ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void hs_st(float *p, float v) { *p = v; }
__device__ __forceinline__ void hs_st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

#endif
