/* hs_gguf accessors: typed key-value getters with checked conversions, array
 * elements, and tensor infos. Everything read here was bounds-checked by the
 * parser in hs_gguf.c; these functions only check types and indices. */
#include <string.h>

#include "hs_gguf_internal.h"

const char *hs_gguf_type_name(int t) {
    static const char *names[HS_GGUF_TYPE_COUNT] = {
        "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32",  "FLOAT32",
        "BOOL",  "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"};
    return (t >= 0 && t < HS_GGUF_TYPE_COUNT) ? names[t] : "?";
}

int64_t hs_gguf_kv_count(const hs_gguf *g) { return g->n_kv; }

const char *hs_gguf_kv_key(const hs_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_kv) ? g->kv[i].key : NULL;
}

int hs_gguf_kv_type(const hs_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_kv) ? (int)g->kv[i].type : -1;
}

int hs_gguf_kv_arr_type(const hs_gguf *g, int64_t i) {
    if (i < 0 || i >= g->n_kv || g->kv[i].type != HS_GGUF_TYPE_ARRAY) return -1;
    return (int)g->kv[i].arr_type;
}

uint64_t hs_gguf_kv_arr_len(const hs_gguf *g, int64_t i) {
    if (i < 0 || i >= g->n_kv || g->kv[i].type != HS_GGUF_TYPE_ARRAY) return 0;
    return g->kv[i].arr_n;
}

int64_t hs_gguf_find_key(const hs_gguf *g, const char *key) {
    if (!g || !key || !g->kv_index) return -1;
    return hs_gguf_index_find(g->kv_index, g->n_kv, key);
}

static hs_status find_kv(const hs_gguf *g, const char *key, const gguf_kv **kv, hs_err *err) {
    int64_t i = hs_gguf_find_key(g, key);
    *kv = NULL;
    if (i < 0) {
        hs_err_set(err, HS_ERR_MISSING, "%s: key '%s' not found", g->name, key);
        return HS_ERR_MISSING;
    }
    *kv = &g->kv[i];
    return HS_OK;
}

/* An integer of type t at p in sign/magnitude form (so that every integer
 * type compares exactly against every range); 0 if t is not an integer type. */
static int read_int(const uint8_t *p, uint32_t t, int *neg, uint64_t *mag) {
    uint8_t u8; uint16_t u16; uint32_t u32; uint64_t u64;
    int8_t i8; int16_t i16; int32_t i32; int64_t s;
    *neg = 0;
    *mag = 0;
    switch (t) {
    case HS_GGUF_TYPE_UINT8: memcpy(&u8, p, 1); *neg = 0; *mag = u8; return 1;
    case HS_GGUF_TYPE_UINT16: memcpy(&u16, p, 2); *neg = 0; *mag = u16; return 1;
    case HS_GGUF_TYPE_UINT32: memcpy(&u32, p, 4); *neg = 0; *mag = u32; return 1;
    case HS_GGUF_TYPE_UINT64: memcpy(&u64, p, 8); *neg = 0; *mag = u64; return 1;
    case HS_GGUF_TYPE_INT8: memcpy(&i8, p, 1); s = i8; break;
    case HS_GGUF_TYPE_INT16: memcpy(&i16, p, 2); s = i16; break;
    case HS_GGUF_TYPE_INT32: memcpy(&i32, p, 4); s = i32; break;
    case HS_GGUF_TYPE_INT64: memcpy(&s, p, 8); break;
    default: return 0;
    }
    *neg = s < 0;
    *mag = s < 0 ? (uint64_t)(-(s + 1)) + 1 : (uint64_t)s;
    return 1;
}

static int64_t from_mag(int neg, uint64_t mag) {
    return neg ? -(int64_t)(mag - 1) - 1 : (int64_t)mag;
}

/* Integer value of key, checked to lie in [lo, hi]. */
static hs_status get_int(const hs_gguf *g, const char *key, int64_t lo, uint64_t hi, int *neg,
                         uint64_t *mag, hs_err *err) {
    const gguf_kv *kv;
    *neg = 0;
    *mag = 0;
    hs_status st = find_kv(g, key, &kv, err);
    if (st != HS_OK) return st;
    if (!read_int(g->base + kv->val_pos, kv->type, neg, mag))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s' has type %s, expected an integer",
                          g->name, key, hs_gguf_type_name((int)kv->type));
    uint64_t lo_mag = lo < 0 ? (uint64_t)(-(lo + 1)) + 1 : 0;
    if ((*neg && *mag > lo_mag) || (!*neg && *mag > hi))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s': value %s%llu is out of range [%lld, %llu]",
                          g->name, key, *neg ? "-" : "", (unsigned long long)*mag, (long long)lo,
                          (unsigned long long)hi);
    return HS_OK;
}

hs_status hs_gguf_get_u32(const hs_gguf *g, const char *key, uint32_t *out, hs_err *err) {
    int neg;
    uint64_t mag;
    hs_status st = get_int(g, key, 0, UINT32_MAX, &neg, &mag, err);
    if (st == HS_OK) *out = (uint32_t)mag;
    return st;
}

hs_status hs_gguf_get_i32(const hs_gguf *g, const char *key, int32_t *out, hs_err *err) {
    int neg;
    uint64_t mag;
    hs_status st = get_int(g, key, INT32_MIN, INT32_MAX, &neg, &mag, err);
    if (st == HS_OK) *out = (int32_t)from_mag(neg, mag);
    return st;
}

hs_status hs_gguf_get_u64(const hs_gguf *g, const char *key, uint64_t *out, hs_err *err) {
    int neg;
    uint64_t mag;
    hs_status st = get_int(g, key, 0, UINT64_MAX, &neg, &mag, err);
    if (st == HS_OK) *out = mag;
    return st;
}

hs_status hs_gguf_get_i64(const hs_gguf *g, const char *key, int64_t *out, hs_err *err) {
    int neg;
    uint64_t mag;
    hs_status st = get_int(g, key, INT64_MIN, INT64_MAX, &neg, &mag, err);
    if (st == HS_OK) *out = from_mag(neg, mag);
    return st;
}

/* Any numeric scalar at p as double; 0 if t is not numeric. */
static int read_num(const uint8_t *p, uint32_t t, double *out) {
    int neg;
    uint64_t mag;
    if (t == HS_GGUF_TYPE_FLOAT32) {
        float f;
        memcpy(&f, p, 4);
        *out = f;
        return 1;
    }
    if (t == HS_GGUF_TYPE_FLOAT64) {
        memcpy(out, p, 8);
        return 1;
    }
    if (!read_int(p, t, &neg, &mag)) return 0;
    *out = neg ? -(double)mag : (double)mag;
    return 1;
}

hs_status hs_gguf_get_f32(const hs_gguf *g, const char *key, float *out, hs_err *err) {
    const gguf_kv *kv;
    double v;
    hs_status st = find_kv(g, key, &kv, err);
    if (st != HS_OK) return st;
    if (!read_num(g->base + kv->val_pos, kv->type, &v))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s' has type %s, expected a number",
                          g->name, key, hs_gguf_type_name((int)kv->type));
    *out = (float)v;
    return HS_OK;
}

hs_status hs_gguf_get_bool(const hs_gguf *g, const char *key, int *out, hs_err *err) {
    const gguf_kv *kv;
    hs_status st = find_kv(g, key, &kv, err);
    if (st != HS_OK) return st;
    if (kv->type != HS_GGUF_TYPE_BOOL)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s' has type %s, expected BOOL", g->name,
                          key, hs_gguf_type_name((int)kv->type));
    uint8_t b = g->base[kv->val_pos];
    if (b > 1)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s': bool byte %u is neither 0 nor 1",
                          g->name, key, b);
    *out = b;
    return HS_OK;
}

hs_status hs_gguf_get_str(const hs_gguf *g, const char *key, const char **out, size_t *len,
                          hs_err *err) {
    const gguf_kv *kv;
    hs_status st = find_kv(g, key, &kv, err);
    if (st != HS_OK) return st;
    if (kv->type != HS_GGUF_TYPE_STRING)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s' has type %s, expected STRING",
                          g->name, key, hs_gguf_type_name((int)kv->type));
    *out = kv->str;
    if (len) *len = (size_t)kv->val_len;
    return HS_OK;
}

/* ---- arrays ------------------------------------------------------------------------------ */

static hs_status find_arr(const hs_gguf *g, const char *key, const gguf_kv **kv, hs_err *err) {
    hs_status st = find_kv(g, key, kv, err);
    if (st != HS_OK) return st;
    if ((*kv)->type != HS_GGUF_TYPE_ARRAY)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s' has type %s, expected ARRAY", g->name,
                          key, hs_gguf_type_name((int)(*kv)->type));
    return HS_OK;
}

static hs_status check_index(const hs_gguf *g, const char *key, const gguf_kv *kv, uint64_t i,
                             hs_err *err) {
    if (i >= kv->arr_n)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "%s: key '%s': index %llu out of range (%llu elements)",
                          g->name, key, (unsigned long long)i, (unsigned long long)kv->arr_n);
    return HS_OK;
}

hs_status hs_gguf_get_arr_info(const hs_gguf *g, const char *key, hs_gguf_type *elem_type,
                               uint64_t *n, hs_err *err) {
    const gguf_kv *kv;
    hs_status st = find_arr(g, key, &kv, err);
    if (st != HS_OK) return st;
    if (elem_type) *elem_type = (hs_gguf_type)kv->arr_type;
    if (n) *n = kv->arr_n;
    return HS_OK;
}

hs_status hs_gguf_get_arr_str(const hs_gguf *g, const char *key, uint64_t i, const char **s,
                              size_t *len, hs_err *err) {
    const gguf_kv *kv;
    hs_status st = find_arr(g, key, &kv, err);
    if (st != HS_OK) return st;
    if (kv->arr_type != HS_GGUF_TYPE_STRING)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s' is an array of %s, expected STRING",
                          g->name, key, hs_gguf_type_name((int)kv->arr_type));
    st = check_index(g, key, kv, i, err);
    if (st != HS_OK) return st;
    uint64_t n;
    memcpy(&n, g->base + kv->str_pos[i], 8);
    *s = (const char *)g->base + kv->str_pos[i] + 8;
    *len = (size_t)n;
    return HS_OK;
}

hs_status hs_gguf_get_arr_i64(const hs_gguf *g, const char *key, uint64_t i, int64_t *out,
                              hs_err *err) {
    const gguf_kv *kv;
    int neg;
    uint64_t mag;
    hs_status st = find_arr(g, key, &kv, err);
    if (st != HS_OK) return st;
    int es = (int)hs_gguf_type_size(kv->arr_type);
    uint32_t t = kv->arr_type == HS_GGUF_TYPE_BOOL ? HS_GGUF_TYPE_UINT8 : kv->arr_type;
    if (es == 0 || t == HS_GGUF_TYPE_FLOAT32 || t == HS_GGUF_TYPE_FLOAT64)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s' is an array of %s, expected integers",
                          g->name, key, hs_gguf_type_name((int)kv->arr_type));
    st = check_index(g, key, kv, i, err);
    if (st != HS_OK) return st;
    read_int(g->base + kv->val_pos + i * (uint64_t)es, t, &neg, &mag);
    if (!neg && mag > (uint64_t)INT64_MAX)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s'[%llu]: %llu does not fit in int64",
                          g->name, key, (unsigned long long)i, (unsigned long long)mag);
    *out = from_mag(neg, mag);
    return HS_OK;
}

hs_status hs_gguf_get_arr_f64(const hs_gguf *g, const char *key, uint64_t i, double *out,
                              hs_err *err) {
    const gguf_kv *kv;
    hs_status st = find_arr(g, key, &kv, err);
    if (st != HS_OK) return st;
    int es = (int)hs_gguf_type_size(kv->arr_type);
    if (es == 0 || kv->arr_type == HS_GGUF_TYPE_BOOL)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s' is an array of %s, expected numbers",
                          g->name, key, hs_gguf_type_name((int)kv->arr_type));
    st = check_index(g, key, kv, i, err);
    if (st != HS_OK) return st;
    read_num(g->base + kv->val_pos + i * (uint64_t)es, kv->arr_type, out);
    return HS_OK;
}

hs_status hs_gguf_get_arr_data(const hs_gguf *g, const char *key, hs_gguf_type *elem_type,
                               const void **data, uint64_t *n, hs_err *err) {
    const gguf_kv *kv;
    hs_status st = find_arr(g, key, &kv, err);
    if (st != HS_OK) return st;
    if (hs_gguf_type_size(kv->arr_type) == 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s' is an array of %s, expected numbers",
                          g->name, key, hs_gguf_type_name((int)kv->arr_type));
    if (elem_type) *elem_type = (hs_gguf_type)kv->arr_type;
    *data = g->base + kv->val_pos;
    if (n) *n = kv->arr_n;
    return HS_OK;
}

/* ---- tensors ------------------------------------------------------------------------------ */

int64_t hs_gguf_tensor_count(const hs_gguf *g) { return g->n_tensors; }

static hs_status tensor_info(const hs_gguf *g, const gguf_tensor *t, hs_gguf_tensor_info *out,
                             hs_err *err) {
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->ggml_type = t->type;
    out->n_dims = (int)t->n_dims;
    memcpy(out->ne, t->ne, sizeof out->ne);
    out->n_elems = t->n_elems;
    out->offset = t->offset;
    /* An empty tensor may sit where there is no data section: give it a valid
     * (never NULL) pointer, since memcpy(dst, NULL, 0) is undefined. */
    out->data = t->nbytes ? g->base + g->data_off + t->offset : g->base;
    out->nbytes = t->nbytes;
    switch (t->type) {
    case HS_GGML_TYPE_F32: out->dtype = HS_DTYPE_F32; break;
    case HS_GGML_TYPE_F16: out->dtype = HS_DTYPE_F16; break;
    case HS_GGML_TYPE_BF16: out->dtype = HS_DTYPE_BF16; break;
    case HS_GGML_TYPE_Q8_0: out->dtype = HS_DTYPE_Q8_0; break;
    case HS_GGML_TYPE_Q4_0: out->dtype = HS_DTYPE_Q4_0; break;
    case HS_GGML_TYPE_Q4_1: out->dtype = HS_DTYPE_Q4_1; break;
    case HS_GGML_TYPE_Q5_0: out->dtype = HS_DTYPE_Q5_0; break;
    case HS_GGML_TYPE_Q5_1: out->dtype = HS_DTYPE_Q5_1; break;
    case HS_GGML_TYPE_Q2_K: out->dtype = HS_DTYPE_Q2_K; break;
    case HS_GGML_TYPE_Q3_K: out->dtype = HS_DTYPE_Q3_K; break;
    case HS_GGML_TYPE_Q4_K: out->dtype = HS_DTYPE_Q4_K; break;
    case HS_GGML_TYPE_Q5_K: out->dtype = HS_DTYPE_Q5_K; break;
    case HS_GGML_TYPE_Q6_K: out->dtype = HS_DTYPE_Q6_K; break;
    default:
        out->dtype = HS_DTYPE_COUNT;
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "%s: tensor '%s': ggml type %u (%s) is not supported "
                          "(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)",
                          g->name, t->name, t->type, hs_gguf_ggml_type_name(t->type));
    }
    return HS_OK;
}

hs_status hs_gguf_tensor_get(const hs_gguf *g, int64_t i, hs_gguf_tensor_info *out, hs_err *err) {
    if (i < 0 || i >= g->n_tensors)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "%s: tensor index %lld out of range (%lld tensors)",
                          g->name, (long long)i, (long long)g->n_tensors);
    return tensor_info(g, &g->tensors[i], out, err);
}

hs_status hs_gguf_tensor_find(const hs_gguf *g, const char *name, hs_gguf_tensor_info *out,
                              hs_err *err) {
    int64_t i = g->tensor_index ? hs_gguf_index_find(g->tensor_index, g->n_tensors, name) : -1;
    if (i < 0) return hs_err_set(err, HS_ERR_MISSING, "%s: tensor '%s' not found", g->name, name);
    return tensor_info(g, &g->tensors[i], out, err);
}
