/* hs_config values: one YAML node -> one typed field of a config struct, with
 * the checks and messages every value kind shares ("batch_size: 0 is out of
 * range 1..65536"). Numbers and booleans must be plain (unquoted) scalars. */
#include <ctype.h>
#include <errno.h>
#include <libfyaml.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hs_config_internal.h"

/* ---- one value ------------------------------------------------------------------ */

static size_t kind_size(hs_cfg_vkind k) {
    switch (k) {
    case HS_CFG_V_STR:
    case HS_CFG_V_PATH:
    case HS_CFG_V_NAME: return sizeof(char *);
    case HS_CFG_V_ENUM:
    case HS_CFG_V_BOOL:
    case HS_CFG_V_INT: return sizeof(int);
    case HS_CFG_V_DTYPE: return sizeof(hs_dtype);
    case HS_CFG_V_U64: return sizeof(uint64_t);
    case HS_CFG_V_F64: return sizeof(double);
    case HS_CFG_V_INTS: return sizeof(hs_config_ints);
    case HS_CFG_V_INT_LIST: return sizeof(hs_config_int_list);
    case HS_CFG_V_F64_LIST: return sizeof(hs_config_f64_list);
    case HS_CFG_V_ENUM_SET: return sizeof(unsigned);
    case HS_CFG_V_DEVICE: return sizeof(hs_config_device);
    case HS_CFG_V_SHARD: return sizeof(hs_config_shard);
    case HS_CFG_V_IMPORTANCE: return sizeof(hs_config_importance);
    case HS_CFG_V_HEADS: return sizeof(hs_config_heads);
    case HS_CFG_V_SECTION: break;
    }
    HS_ASSERT(!"section keys have no plain value");
    return 0;
}

void hs_cfg_clear_value(const hs_cfg_key *k, void *base) {
    char *f = (char *)base + k->off;
    switch (k->kind) {
    case HS_CFG_V_STR:
    case HS_CFG_V_PATH:
    case HS_CFG_V_NAME: free(*(char **)f); break;
    case HS_CFG_V_INTS: free(((hs_config_ints *)f)->v); break;
    case HS_CFG_V_IMPORTANCE: {
        hs_config_importance *im = (hs_config_importance *)f;
        free(im->experiment);
        free(im->file);
        free(im->dataset);
        break;
    }
    default: break;
    }
    memset(f, 0, kind_size(k->kind));
}

void hs_cfg_copy_plain(const hs_cfg_key *k, void *dst, const void *src) {
    memcpy((char *)dst + k->off, (const char *)src + k->off, kind_size(k->kind));
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}
static int cmp_f64(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Items of a list value: a sequence, or one scalar meaning a one-item list. */
typedef struct {
    struct fy_node *one;
    void *it;
    struct fy_node *seq;
} items;
static int items_count(struct fy_node *n) {
    return fy_node_is_sequence(n) ? fy_node_sequence_item_count(n) : 1;
}
static struct fy_node *items_next(items *s) {
    if (s->seq) return fy_node_sequence_iterate(s->seq, &s->it);
    struct fy_node *r = s->one;
    s->one = NULL;
    return r;
}

/* One number of a range-checked kind: INT (and list items) or F64. */
static hs_status number(const hs_cfg_ctx *ctx, const hs_cfg_key *k, struct fy_node *n,
                        hs_cfg_loc at, const char *what, int integer, double *out, hs_err *err) {
    char buf[64], d[256];
    hs_cfg_loc loc = hs_cfg_node_loc(ctx, n, at);
    long long iv = 0;
    int ok = hs_cfg_plain_text(n, buf, sizeof buf) &&
             (integer ? hs_cfg_parse_i64(buf, &iv) : hs_cfg_parse_f64(buf, out));
    if (!ok)
        return hs_cfg_fail(ctx, loc, err, HS_ERR_FORMAT, "%s: expected %s, got %s", what,
                           integer ? "an integer" : "a number", hs_cfg_describe(n, d, sizeof d));
    if (integer) *out = (double)iv;
    if (*out < k->min || *out > k->max || (k->min_open && *out == k->min)) {
        if (integer)
            return hs_cfg_fail(ctx, loc, err, HS_ERR_FORMAT, "%s: %s is out of range %.0f..%.0f",
                               what, buf, k->min, k->max);
        return hs_cfg_fail(ctx, loc, err, HS_ERR_FORMAT, "%s: %s is out of range %s%g, %g]", what,
                           buf, k->min_open ? "(" : "[", k->min, k->max);
    }
    return HS_OK;
}

static hs_status set_list(const hs_cfg_ctx *ctx, const hs_cfg_key *k, char *f, struct fy_node *val,
                          hs_cfg_loc at, const char *what, hs_err *err) {
    char d[256], iw[300];
    int cnt = items_count(val), integer = k->kind != HS_CFG_V_F64_LIST;
    hs_cfg_loc loc = hs_cfg_node_loc(ctx, val, at);
    if (k->kind == HS_CFG_V_INTS && fy_node_is_scalar(val)) {
        char *s = hs_cfg_scalar_dup(val);
        int all = s && !strcmp(s, "all");
        free(s);
        if (all) {
            ((hs_config_ints *)f)->all = 1;
            return HS_OK;
        }
    }
    if (fy_node_is_mapping(val) || cnt == 0)
        return hs_cfg_fail(ctx, loc, err, HS_ERR_FORMAT, "%s: expected %sa non-empty list, got %s",
                           what, k->kind == HS_CFG_V_INTS ? "'all' or " : "",
                           cnt == 0 ? "an empty list" : "a mapping");
    if (k->kind != HS_CFG_V_INTS && cnt > HS_CONFIG_MAX_LIST)
        return hs_cfg_fail(ctx, loc, err, HS_ERR_FORMAT, "%s: more than %d items", what,
                           HS_CONFIG_MAX_LIST);
    double *v = malloc((size_t)cnt * sizeof *v);
    if (!v) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    items s = {fy_node_is_sequence(val) ? NULL : val, NULL, fy_node_is_sequence(val) ? val : NULL};
    hs_status st = HS_OK;
    struct fy_node *item;
    for (int i = 0; (item = items_next(&s)); i++) {
        snprintf(iw, sizeof iw, "%s[%d]", what, i);
        if ((st = number(ctx, k, item, at, iw, integer, &v[i], err)) != HS_OK) goto exit;
        for (int j = 0; j < i; j++)
            if (v[j] == v[i])
                HS_CFG_FAIL(ctx, hs_cfg_node_loc(ctx, item, at), err, HS_ERR_FORMAT,
                            "%s: %s appears twice", what, hs_cfg_describe(item, d, sizeof d));
    }
    if (k->kind == HS_CFG_V_INTS) {
        hs_config_ints *l = (hs_config_ints *)f;
        if (!(l->v = malloc((size_t)cnt * sizeof *l->v))) HS_FAIL(err, HS_ERR_OOM, "out of memory");
        for (int i = 0; i < cnt; i++) l->v[i] = (int)v[i];
        l->n = cnt;
        qsort(l->v, (size_t)cnt, sizeof *l->v, cmp_int);
    } else if (k->kind == HS_CFG_V_INT_LIST) {
        hs_config_int_list *l = (hs_config_int_list *)f;
        for (int i = 0; i < cnt; i++) l->v[i] = (int)v[i];
        l->n = cnt;
        qsort(l->v, (size_t)cnt, sizeof *l->v, cmp_int);
    } else {
        hs_config_f64_list *l = (hs_config_f64_list *)f;
        memcpy(l->v, v, (size_t)cnt * sizeof *v);
        l->n = cnt;
        qsort(l->v, (size_t)cnt, sizeof *l->v, cmp_f64);
    }
exit:
    free(v);
    return st;
}

static hs_status set_enum_set(const hs_cfg_ctx *ctx, const hs_cfg_key *k, unsigned *f,
                              struct fy_node *val, hs_cfg_loc at, const char *what, hs_err *err) {
    char d[256], all[512];
    hs_cfg_loc loc = hs_cfg_node_loc(ctx, val, at);
    if (fy_node_is_mapping(val) || items_count(val) == 0)
        return hs_cfg_fail(ctx, loc, err, HS_ERR_FORMAT, "%s: expected a non-empty list, got %s",
                           what, fy_node_is_mapping(val) ? "a mapping" : "an empty list");
    items s = {fy_node_is_sequence(val) ? NULL : val, NULL, fy_node_is_sequence(val) ? val : NULL};
    unsigned set = 0;
    struct fy_node *item;
    for (int i = 0; (item = items_next(&s)); i++) {
        char *name = hs_cfg_scalar_dup(item);
        int v = name ? hs_cfg_find_name(k->names, name) : -1;
        free(name);
        hs_cfg_loc il = hs_cfg_node_loc(ctx, item, at);
        if (v < 0) {
            hs_cfg_join_names(k->names, all, sizeof all);
            return hs_cfg_fail(ctx, il, err, HS_ERR_FORMAT, "%s[%d]: %s is not one of %s", what, i,
                               hs_cfg_describe(item, d, sizeof d), all);
        }
        if (set & HS_CONFIG_BIT(v))
            return hs_cfg_fail(ctx, il, err, HS_ERR_FORMAT, "%s: %s appears twice", what,
                               k->names[v]);
        set |= HS_CONFIG_BIT(v);
    }
    *f = set;
    return HS_OK;
}

/* "L<layer>H<head>" -> 1 and the pair, else 0. */
static int head_name(const char *s, int *l, int *h) {
    long long a, b;
    const char *hp = s[0] == 'L' ? strchr(s, 'H') : NULL;
    if (!hp || hp == s + 1 || !isdigit((unsigned char)s[1]) || !isdigit((unsigned char)hp[1])) return 0;
    char lbuf[24];
    if ((size_t)(hp - s - 1) >= sizeof lbuf) return 0;
    memcpy(lbuf, s + 1, (size_t)(hp - s - 1));
    lbuf[hp - s - 1] = '\0';
    if (!hs_cfg_parse_i64(lbuf, &a) || !hs_cfg_parse_i64(hp + 1, &b) || a > (1 << 24) || b > (1 << 24)) return 0;
    *l = (int)a, *h = (int)b;
    return 1;
}

static hs_status set_heads(const hs_cfg_ctx *ctx, hs_config_heads *f, struct fy_node *val, hs_cfg_loc at,
                           const char *what, hs_err *err) {
    char d[256];
    hs_cfg_loc loc = hs_cfg_node_loc(ctx, val, at);
    const int cnt = items_count(val);
    if (fy_node_is_mapping(val) || cnt == 0)
        return hs_cfg_fail(ctx, loc, err, HS_ERR_FORMAT, "%s: expected a non-empty list of heads like L9H6, got %s",
                           what, cnt == 0 ? "an empty list" : "a mapping");
    if (cnt > HS_CONFIG_MAX_LIST)
        return hs_cfg_fail(ctx, loc, err, HS_ERR_FORMAT, "%s: more than %d heads", what, HS_CONFIG_MAX_LIST);
    items s = {fy_node_is_sequence(val) ? NULL : val, NULL, fy_node_is_sequence(val) ? val : NULL};
    struct fy_node *item;
    for (int i = 0; (item = items_next(&s)); i++) {
        char *name = fy_node_is_scalar(item) ? hs_cfg_scalar_dup(item) : NULL;
        int l = 0, h = 0;
        const int ok = name && head_name(name, &l, &h);
        free(name);
        hs_cfg_loc il = hs_cfg_node_loc(ctx, item, at);
        if (!ok)
            return hs_cfg_fail(ctx, il, err, HS_ERR_FORMAT, "%s[%d]: expected a head like L9H6 (layer 9, head 6), got %s",
                               what, i, hs_cfg_describe(item, d, sizeof d));
        for (int j = 0; j < i; j++)
            if (f->v[2 * j] == l && f->v[2 * j + 1] == h)
                return hs_cfg_fail(ctx, il, err, HS_ERR_FORMAT, "%s: L%dH%d appears twice", what, l, h);
        f->v[2 * i] = l, f->v[2 * i + 1] = h;
        f->n = i + 1;
    }
    return HS_OK;
}

/* "cuda:N" -> N, or -1. */
static int cuda_id(const char *s) {
    long long id;
    if (strncmp(s, "cuda:", 5) || !hs_cfg_parse_i64(s + 5, &id) || s[5] == '+' || s[5] == '-')
        return -1;
    return id < HS_CONFIG_MAX_DEVICES ? (int)id : -1;
}

static hs_status set_device(const hs_cfg_ctx *ctx, hs_config_device *dev, struct fy_node *val,
                            hs_cfg_loc at, const char *what, hs_err *err) {
    char d[256];
    hs_config_device out = {HS_CONFIG_DEVICE_CUDA, 0, {0}};
    if (fy_node_is_scalar(val)) {
        char *s = hs_cfg_scalar_dup(val);
        int id = s ? cuda_id(s) : -1;
        if (s && !strcmp(s, "cpu"))
            out.kind = HS_CONFIG_DEVICE_CPU;
        else if (s && !strcmp(s, "all"))
            out.kind = HS_CONFIG_DEVICE_CUDA_ALL;
        else if (s && !strcmp(s, "cuda"))
            out.n = 1; /* cuda:0, as in PyTorch */
        else if (id >= 0)
            out.ids[out.n++] = id;
        else
            out.n = -1;
        free(s);
        if (out.n < 0)
            return hs_cfg_fail(ctx, hs_cfg_node_loc(ctx, val, at), err, HS_ERR_FORMAT,
                               "%s: %s is not one of cpu, cuda, cuda:N (N < %d), all, or a list "
                               "[cuda:0, cuda:1]",
                               what, hs_cfg_describe(val, d, sizeof d), HS_CONFIG_MAX_DEVICES);
        *dev = out;
        return HS_OK;
    }
    if (!fy_node_is_sequence(val) || fy_node_sequence_item_count(val) == 0)
        return hs_cfg_fail(
            ctx, hs_cfg_node_loc(ctx, val, at), err, HS_ERR_FORMAT,
            "%s: expected cpu, cuda, cuda:N, all or a non-empty list of cuda:N, got %s", what,
            fy_node_is_mapping(val) ? "a mapping" : "an empty list");
    void *it = NULL;
    struct fy_node *item;
    while ((item = fy_node_sequence_iterate(val, &it))) {
        char *s = hs_cfg_scalar_dup(item);
        int id = s ? cuda_id(s) : -1;
        free(s);
        hs_cfg_loc il = hs_cfg_node_loc(ctx, item, at);
        if (id < 0)
            return hs_cfg_fail(ctx, il, err, HS_ERR_FORMAT, "%s[%d]: %s is not cuda:N (N < %d)",
                               what, out.n, hs_cfg_describe(item, d, sizeof d),
                               HS_CONFIG_MAX_DEVICES);
        for (int j = 0; j < out.n; j++)
            if (out.ids[j] == id)
                return hs_cfg_fail(ctx, il, err, HS_ERR_FORMAT, "%s: cuda:%d appears twice", what,
                                   id);
        if (out.n == HS_CONFIG_MAX_DEVICES)
            return hs_cfg_fail(ctx, il, err, HS_ERR_FORMAT, "%s: more than %d devices", what,
                               HS_CONFIG_MAX_DEVICES);
        out.ids[out.n++] = id;
    }
    qsort(out.ids, (size_t)out.n, sizeof out.ids[0], cmp_int);
    *dev = out;
    return HS_OK;
}

static hs_status set_shard(const hs_cfg_ctx *ctx, hs_config_shard *sh, struct fy_node *val,
                           hs_cfg_loc at, const char *what, hs_err *err) {
    char d[256];
    char *s = hs_cfg_scalar_dup(val), *slash = s ? strchr(s, '/') : NULL;
    long long i = -1, n = -1;
    if (slash) {
        *slash = '\0';
        if (!hs_cfg_parse_i64(s, &i) || !hs_cfg_parse_i64(slash + 1, &n)) i = n = -1;
    }
    free(s);
    if (i < 0 || n < 1 || i >= n || n > 1000000)
        return hs_cfg_fail(ctx, hs_cfg_node_loc(ctx, val, at), err, HS_ERR_FORMAT,
                           "%s: expected \"i/n\" with 0 <= i < n <= 1000000, or null, got %s", what,
                           hs_cfg_describe(val, d, sizeof d));
    sh->set = 1;
    sh->index = (int)i;
    sh->count = (int)n;
    return HS_OK;
}

/* "NAME" (an experiment of this config) or "FILE.h5:/group/dataset". */
static hs_status set_importance(const hs_cfg_ctx *ctx, hs_config_importance *im, char *s,
                                hs_cfg_loc loc, const char *what, hs_err *err) {
    char *sep = strstr(s, ":/"), *slash = strchr(s, '/');
    if (!sep && slash && slash > s && !strchr(slash + 1, '/')) { /* "EXPERIMENT/SCORE" */
        *slash = '\0';
        int ok = hs_cfg_is_name(s) && hs_cfg_is_name(slash + 1);
        *slash = '/';
        if (ok) {
            im->experiment = s;
            return HS_OK;
        }
    }
    if (!sep && hs_cfg_is_name(s)) {
        im->experiment = s;
        return HS_OK;
    }
    if (!sep || sep == s || !sep[2]) {
        free(s);
        return hs_cfg_fail(ctx, loc, err, HS_ERR_FORMAT,
                           "%s: expected the name of an experiment (EXPERIMENT/SCORE for one score of a "
                           "head_scores), or FILE.h5:/group/dataset",
                           what);
    }
    *sep = '\0';
    im->dataset = strdup(sep + 1);
    im->file = s;
    if (!im->dataset) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    return hs_cfg_expand_home(ctx, loc, what, &im->file, err);
}

hs_status hs_cfg_set_value(const hs_cfg_ctx *ctx, const hs_cfg_key *k, void *base,
                           struct fy_node *val, hs_cfg_loc at, const char *what, hs_err *err) {
    char *f = (char *)base + k->off, buf[64], d[256], all[512];
    hs_cfg_clear_value(k, base);
    if (hs_cfg_is_null(val)) return HS_OK; /* null = unset: the default applies */
    hs_cfg_loc loc = hs_cfg_node_loc(ctx, val, at);
    switch (k->kind) {
    case HS_CFG_V_INTS:
    case HS_CFG_V_INT_LIST:
    case HS_CFG_V_F64_LIST: return set_list(ctx, k, f, val, at, what, err);
    case HS_CFG_V_ENUM_SET: return set_enum_set(ctx, k, (unsigned *)f, val, at, what, err);
    case HS_CFG_V_DEVICE: return set_device(ctx, (hs_config_device *)f, val, at, what, err);
    case HS_CFG_V_SHARD: return set_shard(ctx, (hs_config_shard *)f, val, at, what, err);
    case HS_CFG_V_HEADS: return set_heads(ctx, (hs_config_heads *)f, val, at, what, err);
    case HS_CFG_V_INT:
    case HS_CFG_V_F64: {
        double v;
        hs_status st = number(ctx, k, val, at, what, k->kind == HS_CFG_V_INT, &v, err);
        if (st == HS_OK && k->kind == HS_CFG_V_INT) *(int *)f = (int)v;
        if (st == HS_OK && k->kind == HS_CFG_V_F64) *(double *)f = v;
        return st;
    }
    case HS_CFG_V_U64: {
        char *end;
        errno = 0;
        int ok = hs_cfg_plain_text(val, buf, sizeof buf) && isdigit((unsigned char)buf[0]);
        unsigned long long v = ok ? strtoull(buf, &end, 10) : 0;
        if (!ok || errno || *end)
            return hs_cfg_fail(ctx, loc, err, HS_ERR_FORMAT,
                               "%s: expected an integer in 0..18446744073709551615, got %s", what,
                               hs_cfg_describe(val, d, sizeof d));
        *(uint64_t *)f = (uint64_t)v;
        return HS_OK;
    }
    case HS_CFG_V_BOOL: {
        int ok = hs_cfg_plain_text(val, buf, sizeof buf);
        if (ok && (!strcmp(buf, "true") || !strcmp(buf, "True") || !strcmp(buf, "TRUE")))
            *(int *)f = 1;
        else if (ok && (!strcmp(buf, "false") || !strcmp(buf, "False") || !strcmp(buf, "FALSE")))
            *(int *)f = 0;
        else
            return hs_cfg_fail(ctx, loc, err, HS_ERR_FORMAT, "%s: expected true or false, got %s",
                               what, hs_cfg_describe(val, d, sizeof d));
        return HS_OK;
    }
    default: break;
    }
    /* the rest read one string */
    char *s = hs_cfg_scalar_dup(val);
    if (!s || !*s) {
        free(s);
        return hs_cfg_fail(
            ctx, loc, err, HS_ERR_FORMAT, "%s: expected %s, got %s", what,
            k->kind == HS_CFG_V_ENUM || k->kind == HS_CFG_V_DTYPE ? "a name" : "a non-empty string",
            fy_node_is_scalar(val) ? "an empty string" : hs_cfg_describe(val, d, sizeof d));
    }
    switch (k->kind) {
    case HS_CFG_V_ENUM:
    case HS_CFG_V_DTYPE: {
        static const char *const dtypes[] = {"f32", "bf16", NULL};
        const char *const *names = k->kind == HS_CFG_V_DTYPE ? dtypes : k->names;
        int v = hs_cfg_find_name(names, s);
        free(s);
        if (v < 0) {
            hs_cfg_join_names(names, all, sizeof all);
            return hs_cfg_fail(ctx, loc, err, HS_ERR_FORMAT, "%s: %s is not one of %s", what,
                               hs_cfg_describe(val, d, sizeof d), all);
        }
        if (k->kind == HS_CFG_V_DTYPE)
            *(hs_dtype *)f = v ? HS_DTYPE_BF16 : HS_DTYPE_F32;
        else
            *(int *)f = k->base + v;
        return HS_OK;
    }
    case HS_CFG_V_NAME:
        if (!hs_cfg_is_name(s)) {
            free(s);
            return hs_cfg_fail(ctx, loc, err, HS_ERR_FORMAT,
                               "%s: %s must match [A-Za-z0-9_-]+ (it names an HDF5 group)", what,
                               hs_cfg_describe(val, d, sizeof d));
        }
        *(char **)f = s;
        return HS_OK;
    case HS_CFG_V_PATH: *(char **)f = s; return hs_cfg_expand_home(ctx, loc, what, (char **)f, err);
    case HS_CFG_V_IMPORTANCE:
        return set_importance(ctx, (hs_config_importance *)f, s, loc, what, err);
    default: *(char **)f = s; return HS_OK;
    }
}
