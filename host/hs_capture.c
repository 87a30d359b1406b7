/* hs_capture: a hook that copies requested activations to the host, and
 * computes the per-head attention results from z where asked. */
#include "headsweep/hs_capture.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#define CAP_MAX_LAYERS 4096
#define CAP_RESULT HS_HOOK_COUNT /* the entry key of hook_result */

typedef struct {
    hs_hook_point p;
    int layer;
    hs_tensor shape;
    float *data;
    int64_t cap; /* elements allocated */
} cap_entry;

struct hs_capture {
    hs_backend *be;
    int all;
    uint8_t *want; /* [HS_HOOK_COUNT + 1][CAP_MAX_LAYERS + 1]; the extra column = every layer,
                      the extra row = hook_result */
    const hs_model *model; /* W_O for hook_result */
    cap_entry *e;
    int n, cap;
};

hs_status hs_capture_init(hs_backend *be, hs_capture **out, hs_err *err) {
    hs_capture *c = calloc(1, sizeof *c);
    if (c) c->want = calloc((size_t)(HS_HOOK_COUNT + 1) * (CAP_MAX_LAYERS + 1), 1);
    if (!c || !c->want) {
        free(c);
        return hs_err_set(err, HS_ERR_OOM, "capture: out of memory");
    }
    c->be = be;
    *out = c;
    return HS_OK;
}

void hs_capture_free(hs_capture *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) free(c->e[i].data);
    free(c->e);
    free(c->want);
    free(c);
}

hs_status hs_capture_want(hs_capture *c, hs_hook_point p, int layer, hs_err *err) {
    if (p < 0 || p >= HS_HOOK_COUNT || layer >= CAP_MAX_LAYERS)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "capture: bad hook point %d or layer %d", (int)p, layer);
    c->want[(size_t)p * (CAP_MAX_LAYERS + 1) + (layer < 0 ? CAP_MAX_LAYERS : layer)] = 1;
    return HS_OK;
}

void hs_capture_want_all(hs_capture *c) { c->all = 1; }

hs_status hs_capture_want_result(hs_capture *c, const hs_model *m, int layer, hs_err *err) {
    if (!m || layer >= hs_model_get_config(m)->n_layers || (c->model && c->model != m))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "capture: result at layer %d needs the model (one per capture)",
                          layer);
    c->model = m;
    c->want[(size_t)CAP_RESULT * (CAP_MAX_LAYERS + 1) + (layer < 0 ? CAP_MAX_LAYERS : layer)] = 1;
    return HS_OK;
}

static int wanted(const hs_capture *c, int row_index, int layer) {
    const uint8_t *row = c->want + (size_t)row_index * (CAP_MAX_LAYERS + 1);
    return row[CAP_MAX_LAYERS] || (layer >= 0 && layer < CAP_MAX_LAYERS && row[layer]);
}

static int cap_wants(void *user, hs_hook_point p, int layer) {
    hs_capture *c = user;
    return c->all || wanted(c, p, layer) || (p == HS_HOOK_Z && wanted(c, CAP_RESULT, layer));
}

static cap_entry *find(const hs_capture *c, hs_hook_point p, int layer) {
    for (int i = 0; i < c->n; i++)
        if (c->e[i].p == p && c->e[i].layer == layer) return &c->e[i];
    return NULL;
}

/* The entry of (p, layer) with room for n values, created on first use. */
static hs_status entry(hs_capture *c, int p, int layer, int64_t n, cap_entry **out, hs_err *err) {
    cap_entry *e = find(c, (hs_hook_point)p, layer);
    if (!e) {
        if (c->n == c->cap) {
            int nc = c->cap ? 2 * c->cap : 32;
            cap_entry *ne = realloc(c->e, (size_t)nc * sizeof *ne);
            if (!ne) return hs_err_set(err, HS_ERR_OOM, "capture: out of memory");
            c->e = ne;
            c->cap = nc;
        }
        e = &c->e[c->n++];
        memset(e, 0, sizeof *e);
        e->p = (hs_hook_point)p;
        e->layer = layer;
    }
    if (n > e->cap) {
        float *d = realloc(e->data, (size_t)n * sizeof(float));
        if (!d) return hs_err_set(err, HS_ERR_OOM, "capture: out of memory for %lld values", (long long)n);
        e->data = d;
        e->cap = n;
    }
    *out = e;
    return HS_OK;
}

/* hook_result of layer from its recorded z [B, T, H, dh]: one GEMM per head,
 * result[:, :, h] = z[:, :, h] W_O[:, h-slice]^T (HF layout W_O [d, H*dh]).
 * z is passed by value: creating the result entry may move the entry table. */
static hs_status record_result(hs_capture *c, int layer, const float *z, int64_t B, int64_t T, hs_err *err) {
    const hs_model_config *cfg = hs_model_get_config(c->model);
    const int H = cfg->n_heads, dh = cfg->d_head, d = cfg->d_model;
    const int64_t BT = B * T;
    cap_entry *e = NULL;
    hs_status st = entry(c, CAP_RESULT, layer, BT * H * d, &e, err);
    if (st) return st;
    const float *wo = hs_model_get_weights(c->model)->layers[layer].wo;
    for (int h = 0; h < H; h++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)BT, d, dh, 1.0f, z + (int64_t)h * dh, H * dh,
                    wo + (int64_t)h * dh, H * dh, 0.0f, e->data + (int64_t)h * d, H * d);
    e->shape = (hs_tensor){.data = e->data, .dtype = HS_DTYPE_F32, .ndim = 4, .shape = {B, T, H, d},
                           .device = HS_DEVICE_CPU};
    return HS_OK;
}

static hs_status cap_fn(void *user, hs_hook_point p, int layer, hs_tensor *t, hs_err *err) {
    hs_capture *c = user;
    cap_entry *e = NULL;
    int64_t n = hs_tensor_numel(t);
    hs_status st = entry(c, p, layer, n, &e, err);
    if (st) return st;
    e->shape = *t;
    e->shape.data = e->data;
    e->shape.dtype = HS_DTYPE_F32;
    e->shape.device = HS_DEVICE_CPU;
    /* Patterns are f32 on every backend; other activations use the act dtype. */
    if (t->dtype == HS_DTYPE_F32 || t->device == HS_DEVICE_CPU) {
        if (t->dtype != HS_DTYPE_F32)
            return hs_err_set(err, HS_ERR_UNSUPPORTED, "capture: host tensor of dtype %s", hs_dtype_name(t->dtype));
        st = c->be->ops->download(c->be, e->data, t->data, (size_t)n * sizeof(float), err);
    } else {
        st = c->be->ops->download_f32(c->be, e->data, t->data, n, err);
    }
    if (st == HS_OK && p == HS_HOOK_Z && wanted(c, CAP_RESULT, layer)) st = record_result(c, layer, e->data, t->shape[0], t->shape[1], err);
    return st;
}

hs_hooks hs_capture_hooks(hs_capture *c) {
    hs_hooks h = {.wants = cap_wants, .fn = cap_fn, .user = c};
    return h;
}

const float *hs_capture_get_result(const hs_capture *c, int layer, hs_tensor *shape) {
    return hs_capture_get(c, (hs_hook_point)CAP_RESULT, layer, shape);
}

const float *hs_capture_get(const hs_capture *c, hs_hook_point p, int layer, hs_tensor *shape) {
    const cap_entry *e = find(c, p, layer);
    if (!e) return NULL;
    if (shape) *shape = e->shape;
    return e->data;
}
