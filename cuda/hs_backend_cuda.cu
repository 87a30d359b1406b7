/* hs_backend_cuda: the CUDA backend's op table, instance lifetime and memory
 * transfers. One instance = one device, one stream, one cuBLAS + cuBLASLt
 * handle pair and one workspace; nothing global. Activations and weights are
 * held in the instance's dtype (bf16 by default, f32 for validation);
 * upload_f32/download_f32 convert on the device through an f32 staging buffer. */
#include "hs_attention.cuh"
#include "hs_backend_cuda.h"
#include "hs_cuda_backend.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static hs_cuda_backend *hs_cb(hs_backend *be) { return (hs_cuda_backend *)be; }

/* Every entry point makes the instance's device current: a process may hold
 * one backend per GPU and call them from any thread. */
#define HS_ENTER(be, err) HS_CUDA_CHECK(err, cudaSetDevice(hs_cb(be)->device))


static hs_dtype cu_act_dtype(hs_backend *be) { return hs_cb(be)->dtype; }
static int cu_supports_op(hs_backend *be, hs_op op) { return op >= 0 && op < HS_OP_COUNT; }

static hs_status cu_alloc(hs_backend *be, size_t nbytes, void **out, hs_err *err) {
    *out = NULL;
    HS_ENTER(be, err);
    cudaError_t e = cudaMalloc(out, nbytes ? nbytes : 256);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        (void)cudaMemGetInfo(&fr, &tot);
        *out = NULL;
        return hs_err_set(err, HS_ERR_OOM,
                          "cuda backend: cannot allocate %zu bytes on device %d (%zu of %zu free)",
                          nbytes, hs_cb(be)->device, fr, tot);
    }
    HS_CUDA_CHECK(err, e);
    return HS_OK;
}

static void cu_free(hs_backend *be, void *ptr) {
    if (!ptr) return;
    (void)cudaSetDevice(hs_cb(be)->device);
    (void)cudaFree(ptr);
}

static hs_status cu_upload(hs_backend *be, void *dst, const void *src, size_t nbytes, hs_err *err) {
    hs_cuda_backend *c = hs_cb(be);
    HS_ENTER(be, err);
    if (!nbytes) return HS_OK;
    HS_CUDA_CHECK(err, cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, c->stream));
    HS_CUDA_CHECK(err, cudaStreamSynchronize(c->stream)); /* src may be reused on return */
    return HS_OK;
}

static hs_status cu_copy(hs_backend *be, void *dst, const void *src, size_t nbytes, hs_err *err) {
    hs_cuda_backend *c = hs_cb(be);
    HS_ENTER(be, err);
    if (!nbytes) return HS_OK;
    HS_CUDA_CHECK(err, cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, c->stream));
    return HS_OK;
}

static hs_status cu_copy_2d(hs_backend *be, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                            size_t width, size_t rows, hs_err *err) {
    HS_ENTER(be, err);
    if (dst_pitch < width || src_pitch < width)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda backend: copy_2d pitch %zu/%zu below the row width %zu",
                          dst_pitch, src_pitch, width);
    if (!width || !rows) return HS_OK;
    HS_CUDA_CHECK(err, cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows, cudaMemcpyDeviceToDevice,
                                         hs_cb(be)->stream));
    return HS_OK;
}

static hs_status cu_zero(hs_backend *be, void *dst, size_t nbytes, hs_err *err) {
    HS_ENTER(be, err);
    if (!nbytes) return HS_OK;
    HS_CUDA_CHECK(err, cudaMemsetAsync(dst, 0, nbytes, hs_cb(be)->stream));
    return HS_OK;
}

static hs_status cu_download(hs_backend *be, void *dst, const void *src, size_t nbytes,
                             hs_err *err) {
    hs_cuda_backend *c = hs_cb(be);
    HS_ENTER(be, err);
    if (!nbytes) return HS_OK;
    HS_CUDA_CHECK(err, cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, c->stream));
    HS_CUDA_CHECK(err, cudaStreamSynchronize(c->stream));
    return HS_OK;
}

static hs_status cu_upload_f32(hs_backend *be, void *dst, const float *src, int64_t n,
                               hs_err *err) {
    hs_cuda_backend *c = hs_cb(be);
    if (n <= 0) return HS_OK;
    if (c->dtype == HS_DTYPE_F32) return cu_upload(be, dst, src, (size_t)n * 4, err);
    HS_ENTER(be, err);
    /* Chunks through the staging buffer; stream order keeps a chunk's copy
     * from overwriting the stage before the previous conversion read it. */
    for (int64_t off = 0; off < n; off += HS_CUDA_STAGE_ELEMS) {
        const int64_t cnt = n - off < HS_CUDA_STAGE_ELEMS ? n - off : HS_CUDA_STAGE_ELEMS;
        HS_CUDA_CHECK(err, cudaMemcpyAsync(c->stage, src + off, (size_t)cnt * 4,
                                           cudaMemcpyHostToDevice, c->stream));
        hs_status st = hs_cuda_from_f32(c->stream, c->dtype, (char *)dst + off * 2, c->stage, cnt, err);
        if (st != HS_OK) return st;
    }
    HS_CUDA_CHECK(err, cudaStreamSynchronize(c->stream));
    return HS_OK;
}

static hs_status cu_download_f32(hs_backend *be, float *dst, const void *src, int64_t n,
                                 hs_err *err) {
    hs_cuda_backend *c = hs_cb(be);
    if (n <= 0) return HS_OK;
    if (c->dtype == HS_DTYPE_F32) return cu_download(be, dst, src, (size_t)n * 4, err);
    HS_ENTER(be, err);
    for (int64_t off = 0; off < n; off += HS_CUDA_STAGE_ELEMS) {
        const int64_t cnt = n - off < HS_CUDA_STAGE_ELEMS ? n - off : HS_CUDA_STAGE_ELEMS;
        hs_status st = hs_cuda_to_f32(c->stream, c->dtype, c->stage, (const char *)src + off * 2, cnt, err);
        if (st != HS_OK) return st;
        HS_CUDA_CHECK(err, cudaMemcpyAsync(dst + off, c->stage, (size_t)cnt * 4,
                                           cudaMemcpyDeviceToHost, c->stream));
    }
    HS_CUDA_CHECK(err, cudaStreamSynchronize(c->stream));
    return HS_OK;
}

static hs_status cu_sync(hs_backend *be, hs_err *err) {
    HS_ENTER(be, err);
    HS_CUDA_CHECK(err, cudaStreamSynchronize(hs_cb(be)->stream));
    return HS_OK;
}

static hs_status cu_embed(hs_backend *be, const int32_t *tokens, const int32_t *pos,
                          const void *tok_embd, const void *pos_embd, int64_t n, int d, float scale, void *out,
                          hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_embed(hs_cb(be)->stream, hs_cb(be)->dtype, tokens, pos, tok_embd, pos_embd, n, d,
                         scale, out, err);
}

static hs_status cu_norm(hs_backend *be, hs_norm_kind kind, const void *x, const void *w,
                         const void *b, float eps, int64_t rows, int d, int w_rows, void *y, hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_norm(hs_cb(be)->stream, hs_cb(be)->dtype, kind, x, w, b, eps, rows, d, w_rows, y, err);
}

static hs_status cu_matmul(hs_backend *be, const void *x, const void *w, const void *bias,
                           int64_t M, int N, int K, int accumulate, void *y, hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_gemm(hs_cb(be), x, w, bias, M, N, K, accumulate, y, err);
}

/* The caller's host table of inverse frequencies (the same f32 values the CPU
 * backend rotates by), on the device in *out: one of two cached tables, or
 * copied over the older one when it matches neither. A session's forward and
 * backward keep reusing its one table, or its two (Gemma 3's local and
 * global layers), without a copy. */
static hs_status hs_rope_table(hs_cuda_backend *c, const float *inv, int rot, const float **out, hs_err *err) {
    const size_t bytes = (size_t)(rot / 2) * sizeof(float);
    for (int i = 0; i < 2; i++)
        if (c->rope_inv[i] && c->rope_rot[i] == rot && !memcmp(c->rope_inv_host[i], inv, bytes))
            return *out = c->rope_inv[i], HS_OK;
    hs_status st = HS_OK;
    const int i = c->rope_next;
    c->rope_next ^= 1;
    if (c->rope_inv[i] && c->rope_rot[i] < rot) {
        HS_CUDA_CHECK_GOTO(err, cudaFree(c->rope_inv[i])); /* synchronises: no reader left */
        c->rope_inv[i] = NULL;
    }
    if (!c->rope_inv[i]) { /* the host copy always has the device table's size */
        free(c->rope_inv_host[i]);
        if (!(c->rope_inv_host[i] = (float *)malloc(bytes)))
            return hs_err_set(err, HS_ERR_OOM, "cuda rope: out of memory");
        HS_CUDA_CHECK_GOTO(err, cudaMalloc((void **)&c->rope_inv[i], bytes));
    }
    c->rope_rot[i] = 0; /* invalid until the copy is done */
    /* on the stream, so after every kernel that still reads the old table */
    HS_CUDA_CHECK_GOTO(err, cudaMemcpyAsync(c->rope_inv[i], inv, bytes, cudaMemcpyHostToDevice, c->stream));
    HS_CUDA_CHECK_GOTO(err, cudaStreamSynchronize(c->stream));
    memcpy(c->rope_inv_host[i], inv, bytes);
    c->rope_rot[i] = rot;
    *out = c->rope_inv[i];
exit:
    return st;
}

static hs_status cu_rope(hs_backend *be, hs_rope_kind kind, void *x, const int32_t *pos,
                         int64_t n, int H, int d_head, int rot, const float *inv_freq, float scale, hs_err *err) {
    hs_cuda_backend *c = hs_cb(be);
    HS_ENTER(be, err);
    if (kind == HS_ROPE_NONE || n <= 0) return HS_OK;
    if (rot <= 0 || rot > d_head || rot % 2 || !inv_freq)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda rope: rotary dims %d must be even and within d_head %d, with %s",
                          rot, d_head, inv_freq ? "frequencies" : "no frequency table");
    const float *table = NULL;
    hs_status st = hs_rope_table(c, inv_freq, rot, &table, err);
    if (st != HS_OK) return st;
    return hs_cuda_rope(c->stream, c->dtype, kind, x, pos, table, scale, n, H, d_head, rot, err);
}

static hs_status cu_attention(hs_backend *be, const hs_attn_params *p, hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_attention(hs_cb(be), p, err);
}

static hs_status cu_act(hs_backend *be, hs_act_kind kind, const void *gate, const void *up,
                        int64_t n, void *out, hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_act(hs_cb(be)->stream, hs_cb(be)->dtype, kind, gate, up, n, out, err);
}

static hs_status cu_add(hs_backend *be, void *y, const void *x, int64_t n, hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_add(hs_cb(be)->stream, hs_cb(be)->dtype, y, x, n, err);
}

static hs_status cu_axpy(hs_backend *be, void *y, float alpha, const void *x, int64_t n, hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_axpy(hs_cb(be)->stream, hs_cb(be)->dtype, y, alpha, x, n, err);
}

static hs_status cu_softcap(hs_backend *be, const void *x, int64_t n, float cap, void *y, hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_softcap(hs_cb(be)->stream, hs_cb(be)->dtype, x, n, cap, y, err);
}

static hs_status cu_clamp(hs_backend *be, const void *x, int64_t n, float c, void *y, hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_clamp(hs_cb(be)->stream, hs_cb(be)->dtype, x, n, c, y, err);
}

static hs_status cu_clamp_bwd(hs_backend *be, const void *x, const void *dy, int64_t n, float c, void *dx,
                              hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_clamp_bwd(hs_cb(be)->stream, hs_cb(be)->dtype, x, dy, n, c, dx, err);
}

static hs_status cu_target_logprob(hs_backend *be, const void *logits, const int32_t *targets, int64_t R, int V,
                                   float *out, hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_target_logprob(hs_cb(be)->stream, hs_cb(be)->dtype, logits, targets, R, V, out, err);
}

static hs_status cu_matmul_bwd(hs_backend *be, const void *dy, const void *w, int64_t M, int N, int K, int accumulate,
                               void *dx, hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_matmul_bwd(hs_cb(be), dy, w, M, N, K, accumulate, dx, err);
}

static hs_status cu_norm_bwd(hs_backend *be, hs_norm_kind kind, const void *x, const void *w, float eps, int64_t rows,
                             int d, int w_rows, const void *dy, int accumulate, void *dx, hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_norm_bwd(hs_cb(be)->stream, hs_cb(be)->dtype, kind, x, w, eps, rows, d, w_rows, dy, accumulate, dx,
                            err);
}

static hs_status cu_act_bwd(hs_backend *be, hs_act_kind kind, const void *gate, const void *up, const void *d_out,
                            int64_t n, void *d_gate, void *d_up, hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_act_bwd(hs_cb(be)->stream, hs_cb(be)->dtype, kind, gate, up, d_out, n, d_gate, d_up, err);
}

static hs_status cu_softcap_bwd(hs_backend *be, const void *y, const void *dy, int64_t n, float cap, void *dx,
                                hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_softcap_bwd(hs_cb(be)->stream, hs_cb(be)->dtype, y, dy, n, cap, dx, err);
}

static hs_status cu_attention_bwd(hs_backend *be, const hs_attn_params *p, const void *dz, void *dq, void *dk, void *dv,
                                  hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_attention_bwd(hs_cb(be), p, dz, dq, dk, dv, err);
}

static hs_status cu_logprob_grad(hs_backend *be, const void *logits, const int32_t *targets, int64_t R, int V,
                                 void *dlogits, hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_logprob_grad(hs_cb(be)->stream, hs_cb(be)->dtype, logits, targets, R, V, dlogits, err);
}

static hs_status cu_head_dot(hs_backend *be, const void *a, const void *c, int B, int T, int H, int d, float *out,
                             hs_err *err) {
    HS_ENTER(be, err);
    return hs_cuda_head_dot(hs_cb(be)->stream, hs_cb(be)->dtype, a, c, B, T, H, d, out, err);
}

/* Releases whatever init managed to create (every field starts NULL). */
static void cu_destroy(hs_backend *be) {
    hs_cuda_backend *c = hs_cb(be);
    if (!c) return;
    (void)cudaSetDevice(c->device);
    if (c->stream) (void)cudaStreamSynchronize(c->stream);
    hs_cuda_gemm_free(c);
    if (c->lt) cublasLtDestroy(c->lt);
    if (c->blas) cublasDestroy(c->blas);
    for (int i = 0; i < 2; i++) {
        if (c->rope_inv[i]) (void)cudaFree(c->rope_inv[i]);
        free(c->rope_inv_host[i]);
    }
    if (c->lse_tmp) (void)cudaFree(c->lse_tmp);
    if (c->bwd_tmp) (void)cudaFree(c->bwd_tmp);
    if (c->stage) (void)cudaFree(c->stage);
    if (c->workspace) (void)cudaFree(c->workspace);
    if (c->stream) (void)cudaStreamDestroy(c->stream);
    free(c);
}

static const hs_backend_ops hs_cuda_ops = {
    HS_BACKEND_API_VERSION, /* version */
    "cuda",                 /* name */
    cu_act_dtype,
    cu_supports_op,
    cu_alloc,
    cu_free,
    cu_upload,
    cu_download,
    cu_copy,
    cu_zero,
    cu_copy_2d,
    cu_upload_f32,
    cu_download_f32,
    cu_sync,
    cu_embed,
    cu_norm,
    cu_matmul,
    cu_rope,
    cu_attention,
    cu_act,
    cu_add,
    cu_axpy,
    cu_softcap,
    cu_clamp,
    cu_target_logprob,
    cu_matmul_bwd,
    cu_norm_bwd,
    cu_act_bwd,
    cu_softcap_bwd,
    cu_clamp_bwd,
    cu_attention_bwd,
    cu_logprob_grad,
    cu_head_dot,
    cu_destroy,
};

extern "C" int hs_backend_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" hs_status hs_backend_cuda_describe(int device, char *buf, size_t n, hs_err *err) {
    cudaDeviceProp prop;
    const cudaError_t e = cudaGetDeviceProperties(&prop, device);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return hs_err_set(err, HS_ERR_DEVICE, "cuda:%d: %s", device, cudaGetErrorString(e));
    }
    snprintf(buf, n, "%s, compute capability %d.%d, %d SMs", prop.name, prop.major, prop.minor,
             prop.multiProcessorCount);
    return HS_OK;
}

static void cublas_version(char *buf, size_t n) {
    int v[3] = {0, 0, 0};
    const libraryPropertyType k[3] = {MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL};
    for (int i = 0; i < 3; i++)
        if (cublasGetProperty(k[i], &v[i]) != CUBLAS_STATUS_SUCCESS) {
            snprintf(buf, n, "unknown");
            return;
        }
    snprintf(buf, n, "%d.%d.%d", v[0], v[1], v[2]);
}

extern "C" void hs_backend_cuda_versions(char *buf, size_t n) {
    int rt = 0, drv = 0;
    char blas[32], drv_s[32];
    if (cudaRuntimeGetVersion(&rt) != cudaSuccess) (void)cudaGetLastError();
    if (cudaDriverGetVersion(&drv) != cudaSuccess) (void)cudaGetLastError();
    if (drv > 0) snprintf(drv_s, sizeof drv_s, "%d.%d", drv / 1000, drv % 1000 / 10);
    else snprintf(drv_s, sizeof drv_s, "none");
    cublas_version(blas, sizeof blas);
    snprintf(buf, n, "CUDA runtime %d.%d, driver %s, cuBLAS %s", rt / 1000, rt % 1000 / 10, drv_s, blas);
}

/* Everything that picks kernels: the GPU model, the cuBLAS release (its
 * heuristics choose the GEMM algorithms) and the attention kernel. */
extern "C" void hs_backend_cuda_identity(hs_backend *be, char *buf, size_t n) {
    const hs_cuda_backend *c = hs_cb(be);
    char gpu[320], blas[32], attn[16] = "mma";
    hs_err e = {};
    const int known = hs_backend_cuda_describe(c->device, gpu, sizeof gpu, &e) == HS_OK;
    cublas_version(blas, sizeof blas);
    if (c->attn_kernel == HS_CUDA_ATTN_WGMMA) snprintf(attn, sizeof attn, "wgmma:%d", c->attn_variant);
    if (c->attn_kernel == HS_CUDA_ATTN_SIMT) snprintf(attn, sizeof attn, "simt");
    /* lower case, as the CPU's "cpu (f32; ..." and the documented form (hs_dtype_name is upper) */
    snprintf(buf, n, "cuda (%s; %s; cuBLAS %s; attention %s)", c->dtype == HS_DTYPE_BF16 ? "bf16" : "f32",
             known ? gpu : e.msg, blas, attn);
}

/* HS_CUDA_ATTN=auto|mma|wgmma[:VARIANT] picks the attention kernel (see
 * hs_backend_cuda.h), so a whole test suite or run can be pointed at one. */
static hs_status hs_attn_kernel_from_env(hs_backend *be, hs_err *err) {
    const char *v = getenv("HS_CUDA_ATTN");
    if (!v || !*v) return HS_OK;
    hs_cuda_attn_kernel k = HS_CUDA_ATTN_AUTO;
    int variant = 0, ok = 1;
    if (!strcmp(v, "mma")) k = HS_CUDA_ATTN_MMA;
    else if (!strcmp(v, "simt")) k = HS_CUDA_ATTN_SIMT;
    else if (!strcmp(v, "wgmma")) k = HS_CUDA_ATTN_WGMMA;
    else if (!strncmp(v, "wgmma:", 6)) {
        char *end = NULL;
        variant = (int)strtol(v + 6, &end, 10);
        ok = end != v + 6 && *end == 0;
        k = HS_CUDA_ATTN_WGMMA;
    } else ok = !strcmp(v, "auto");
    if (!ok)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "HS_CUDA_ATTN=%s: expected auto, mma, simt, wgmma or wgmma:VARIANT", v);
    return hs_backend_cuda_set_attn_kernel(be, k, variant, err);
}

extern "C" hs_status hs_backend_cuda_set_attn_kernel(hs_backend *be, hs_cuda_attn_kernel kernel, int variant,
                                                     hs_err *err) {
    if (!be || be->device != HS_DEVICE_CUDA)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "set_attn_kernel: not a CUDA backend");
    hs_cuda_backend *c = hs_cb(be);
    if (kernel != HS_CUDA_ATTN_AUTO && kernel != HS_CUDA_ATTN_MMA && kernel != HS_CUDA_ATTN_WGMMA &&
        kernel != HS_CUDA_ATTN_SIMT)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "set_attn_kernel: unknown kernel %d", (int)kernel);
    if (variant < 0 || (kernel == HS_CUDA_ATTN_WGMMA && variant > HS_CUDA_WGMMA_VARIANTS) ||
        (kernel != HS_CUDA_ATTN_WGMMA && variant != 0))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "set_attn_kernel: no variant %d of that kernel", variant);
    if (kernel == HS_CUDA_ATTN_WGMMA && !hs_cuda_attn_wgmma_supports(128, c->cc))
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "the wgmma attention kernel needs compute capability 9.0 (device %d has %d.%d)",
                          c->device, c->cc / 10, c->cc % 10);
    c->attn_kernel = kernel;
    c->attn_variant = variant;
    return HS_OK;
}

extern "C" hs_status hs_backend_cuda_init(const hs_backend_params *p, hs_backend **out,
                                          hs_err *err) {
    hs_status st = HS_OK;
    hs_cuda_backend *c = NULL;
    int n_dev = 0, dev = 0;
    hs_dtype dt = HS_DTYPE_BF16;
    cudaDeviceProp prop;
    if (!out) return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda backend: NULL out");
    *out = NULL;
    if (p) {
        dev = p->device;
        dt = p->dtype;
    }
    if (dt != HS_DTYPE_BF16 && dt != HS_DTYPE_F32)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "cuda backend: dtype %s (use BF16 or F32)",
                          hs_dtype_name(dt));
    n_dev = hs_backend_cuda_device_count();
    if (n_dev == 0) return hs_err_set(err, HS_ERR_DEVICE, "no CUDA device");
    if (dev < 0 || dev >= n_dev)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda backend: device %d of %d visible", dev,
                          n_dev);
    HS_CUDA_CHECK(err, cudaSetDevice(dev));
    HS_CUDA_CHECK(err, cudaGetDeviceProperties(&prop, dev));
    if (prop.major < 8)
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "cuda backend: %s has compute capability %d.%d; bf16 kernels need 8.0",
                          prop.name, prop.major, prop.minor);

    c = (hs_cuda_backend *)calloc(1, sizeof *c);
    if (!c) return hs_err_set(err, HS_ERR_OOM, "cuda backend: out of memory");
    c->base.ops = &hs_cuda_ops;
    c->base.device = HS_DEVICE_CUDA;
    c->base.device_index = dev;
    c->dtype = dt;
    c->device = dev;
    c->sm_count = prop.multiProcessorCount;
    c->cc = prop.major * 10 + prop.minor;
    c->smem_optin = prop.sharedMemPerBlockOptin;
    HS_CUDA_CHECK_GOTO(err, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    HS_CUDA_CHECK_GOTO(err, cudaMalloc(&c->workspace, HS_CUDA_WORKSPACE_BYTES));
    HS_CUDA_CHECK_GOTO(err, cudaMalloc((void **)&c->stage, (size_t)HS_CUDA_STAGE_ELEMS * 4));
    HS_CUBLAS_CHECK_GOTO(err, cublasCreate(&c->blas));
    HS_CUBLAS_CHECK_GOTO(err, cublasSetStream(c->blas, c->stream));
    HS_CUBLAS_CHECK_GOTO(err, cublasSetWorkspace(c->blas, c->workspace, HS_CUDA_WORKSPACE_BYTES));
    /* Deterministic results: no atomics-based reductions; default math mode
     * (CUBLAS_COMPUTE_32F is then true f32 for f32 data, never TF32). */
    HS_CUBLAS_CHECK_GOTO(err, cublasSetAtomicsMode(c->blas, CUBLAS_ATOMICS_NOT_ALLOWED));
    HS_CUBLAS_CHECK_GOTO(err, cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH));
    HS_CUBLAS_CHECK_GOTO(err, cublasLtCreate(&c->lt));
    if ((st = hs_cuda_gemm_init(c, err)) != HS_OK) goto exit;
    if ((st = hs_attn_kernel_from_env(&c->base, err)) != HS_OK) goto exit;
exit:
    if (st != HS_OK) {
        cu_destroy(&c->base);
        return hs_err_prefix(err, "cuda backend init (device %d)", dev);
    }
    *out = &c->base;
    return HS_OK;
}

extern "C" hs_status hs_backend_cuda_fill_normal(hs_backend *be, void *dst, int64_t n,
                                                 uint64_t seed, float mean, float std,
                                                 hs_err *err) {
    if (!be || be->device != HS_DEVICE_CUDA)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "fill_normal: not a CUDA backend");
    HS_ENTER(be, err);
    return hs_cuda_fill_normal(hs_cb(be)->stream, hs_cb(be)->dtype, dst, n, seed, mean, std, err);
}

extern "C" hs_cuda_attn_kernel hs_backend_cuda_attn_kernel(hs_backend *be) {
    return be && be->device == HS_DEVICE_CUDA ? (hs_cuda_attn_kernel)hs_cb(be)->attn_kernel : HS_CUDA_ATTN_AUTO;
}

extern "C" int hs_backend_cuda_attn_tensor_cores(hs_backend *be, int d, int *cc) {
    const int cuda = be && be->device == HS_DEVICE_CUDA;
    if (cc) *cc = cuda ? hs_cb(be)->cc : 0;
    return cuda && hs_cb(be)->dtype == HS_DTYPE_BF16 && hs_cb(be)->attn_kernel != HS_CUDA_ATTN_SIMT &&
           hs_cuda_attn_mma_supports(d, hs_cb(be)->smem_optin);
}

extern "C" void hs_backend_cuda_attn_launches(hs_backend *be, int64_t out[3]) {
    for (int i = 0; i < 3; i++) out[i] = be && be->device == HS_DEVICE_CUDA ? hs_cb(be)->attn_launches[i] : 0;
}

extern "C" void *hs_backend_cuda_stream(hs_backend *be) {
    return be && be->device == HS_DEVICE_CUDA ? (void *)hs_cb(be)->stream : NULL;
}
