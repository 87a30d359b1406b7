/* hs_backend_cpu_internal: what the CPU backend's files share. */
#ifndef HS_BACKEND_CPU_INTERNAL_H
#define HS_BACKEND_CPU_INTERNAL_H

#include "headsweep/hs_backend.h"

typedef struct {
    hs_backend base;
    int n_threads;
} hs_cpu_backend;

static inline int hs_cpu_threads(hs_backend *be) { return ((hs_cpu_backend *)be)->n_threads; }

/* The backward ops (hs_backend_cpu_bwd.c); contracts in hs_backend.h. */
hs_status hs_cpu_matmul_bwd(hs_backend *be, const void *dy, const void *w, int64_t M, int N, int K, int accumulate,
                            void *dx, hs_err *err);
hs_status hs_cpu_norm_bwd(hs_backend *be, hs_norm_kind kind, const void *x, const void *w, float eps, int64_t rows,
                          int d, int w_rows, const void *dy, int accumulate, void *dx, hs_err *err);
hs_status hs_cpu_act_bwd(hs_backend *be, hs_act_kind kind, const void *gate, const void *up, const void *d_out,
                         int64_t n, void *d_gate, void *d_up, hs_err *err);
hs_status hs_cpu_softcap_bwd(hs_backend *be, const void *y, const void *dy, int64_t n, float cap, void *dx, hs_err *err);
hs_status hs_cpu_clamp_bwd(hs_backend *be, const void *x, const void *dy, int64_t n, float c, void *dx, hs_err *err);
hs_status hs_cpu_attention_bwd(hs_backend *be, const hs_attn_params *p, const void *dz, void *dq, void *dk, void *dv,
                               hs_err *err);
hs_status hs_cpu_head_dot(hs_backend *be, const void *a, const void *c, int B, int T, int H, int d, float *out,
                          hs_err *err);
hs_status hs_cpu_logprob_grad(hs_backend *be, const void *logits, const int32_t *targets, int64_t R, int V,
                              void *dlogits, hs_err *err);

#endif
