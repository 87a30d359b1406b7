/* Built instead of cuda/ when the CUDA backend is not compiled in. */
#include "headsweep/hs_backend.h"
#include "hs_backend_cuda.h"

hs_status hs_backend_cuda_init(const hs_backend_params *p, hs_backend **out, hs_err *err) {
    *out = NULL;
    return hs_err_set(err, HS_ERR_UNSUPPORTED, "CUDA backend: headsweep was built without CUDA");
}

int hs_backend_cuda_device_count(void) { return 0; }

hs_status hs_backend_cuda_describe(int device, char *buf, size_t n, hs_err *err) {
    if (n) buf[0] = 0;
    return hs_err_set(err, HS_ERR_DEVICE, "cuda:%d: headsweep was built without CUDA", device);
}

void hs_backend_cuda_versions(char *buf, size_t n) {
    if (n) buf[0] = 0;
}

void hs_backend_cuda_identity(hs_backend *be, char *buf, size_t n) {
    (void)be;
    if (n) buf[0] = 0; /* no CUDA backend exists in this build */
}

hs_status hs_backend_cuda_set_attn_kernel(hs_backend *be, hs_cuda_attn_kernel kernel, int variant, hs_err *err) {
    return hs_err_set(err, HS_ERR_UNSUPPORTED, "CUDA backend: headsweep was built without CUDA");
}

hs_cuda_attn_kernel hs_backend_cuda_attn_kernel(hs_backend *be) {
    (void)be;
    return HS_CUDA_ATTN_AUTO;
}

int hs_backend_cuda_attn_tensor_cores(hs_backend *be, int d, int *cc) {
    (void)be, (void)d;
    if (cc) *cc = 0;
    return 0;
}

void hs_backend_cuda_attn_launches(hs_backend *be, int64_t out[3]) {
    for (int i = 0; i < 3; i++) out[i] = 0;
}
