/* hs_backend: backend selection by name and the shared free path. */
#include "headsweep/hs_backend.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_backend_cuda.h"

hs_backend_params hs_backend_default_params(void) {
    hs_backend_params p = {.n_threads = 0, .device = 0, .dtype = HS_DTYPE_BF16};
    return p;
}

hs_status hs_backend_init_by_name(const char *name, const hs_backend_params *p, hs_backend **out, hs_err *err) {
    *out = NULL;
    hs_backend_params q = p ? *p : hs_backend_default_params();
    if (!strcmp(name, "cpu")) return hs_backend_cpu_init(&q, out, err);
    if (!strcmp(name, "cuda")) return hs_backend_cuda_init(&q, out, err);
    if (!strncmp(name, "cuda:", 5)) {
        char *end;
        long d = strtol(name + 5, &end, 10);
        if (*end || end == name + 5 || d < 0 || d > 1024)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "device '%s': expected cuda:N with N a device number", name);
        q.device = (int)d;
        return hs_backend_cuda_init(&q, out, err);
    }
    return hs_err_set(err, HS_ERR_INVALID_ARG, "device '%s': expected cpu, cuda or cuda:N", name);
}

void hs_backend_identity(hs_backend *be, char *buf, size_t n) {
    if (n == 0) return;
    if (be && be->device == HS_DEVICE_CUDA) hs_backend_cuda_identity(be, buf, n);
    else snprintf(buf, n, "cpu (f32; %s)", openblas_get_config()); /* the CPU backend computes in f32 only */
}

void hs_backend_free(hs_backend *be) {
    if (be) be->ops->destroy(be);
}
