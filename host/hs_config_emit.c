/* hs_config canonical YAML: the resolved config written by hand (not by
 * libfyaml's emitter) so the text is a fixed function of the values: keys in
 * schema order, only keys that apply, strings double-quoted with escapes,
 * numbers in their shortest round-trip form, lists in flow style. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_config_internal.h"

typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} buf;

static void put(buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void put(buf *b, const char *fmt, ...) {
    if (b->oom) return;
    if (!b->s && !(b->s = malloc(b->cap = 1024))) {
        b->oom = 1;
        return;
    }
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n) * 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
}

/* Body of a YAML double-quoted scalar: escapes ", \ and control bytes;
 * UTF-8 passes through. */
static void put_escaped(buf *b, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            put(b, "\\%c", *p);
        else if (*p == '\n')
            put(b, "\\n");
        else if (*p == '\t')
            put(b, "\\t");
        else if (*p < 0x20 || *p == 0x7f)
            put(b, "\\x%02x", *p);
        else
            put(b, "%c", *p);
    }
}

static void put_str(buf *b, const char *s) {
    if (!s) { /* only in a hand-built config: loaded ones always have their strings */
        put(b, "null");
        return;
    }
    put(b, "\"");
    put_escaped(b, s);
    put(b, "\"");
}

/* Shortest %g that reads back to the same double, always with a '.' or
 * exponent so it reads as a float. */
static void put_f64(buf *b, double v) {
    char t[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(t, sizeof t, "%.*g", p, v);
        if (strtod(t, NULL) == v) break;
    }
    put(b, "%s%s", t, strpbrk(t, ".e") ? "" : ".0");
}

static void put_value(buf *b, const hs_cfg_key *k, const void *base) {
    const char *f = (const char *)base + k->off;
    switch (k->kind) {
    case HS_CFG_V_STR:
    case HS_CFG_V_PATH:
    case HS_CFG_V_NAME: put_str(b, *(char *const *)f); break;
    case HS_CFG_V_ENUM: {
        int v = *(const int *)f - k->base, n = 0;
        while (k->names[n]) n++;
        put(b, "%s", v >= 0 && v < n ? k->names[v] : "?"); /* "?" fails to load again */
        break;
    }
    case HS_CFG_V_DTYPE:
        put(b, "%s", *(const hs_dtype *)f == HS_DTYPE_BF16 ? "bf16" : "f32");
        break;
    case HS_CFG_V_BOOL: put(b, "%s", *(const int *)f ? "true" : "false"); break;
    case HS_CFG_V_INT: put(b, "%d", *(const int *)f); break;
    case HS_CFG_V_U64: put(b, "%llu", (unsigned long long)*(const uint64_t *)f); break;
    case HS_CFG_V_F64: put_f64(b, *(const double *)f); break;
    case HS_CFG_V_INTS: {
        const hs_config_ints *l = (const hs_config_ints *)f;
        if (l->all) {
            put(b, "all");
            break;
        }
        for (int i = 0; i < l->n; i++) put(b, "%s%d", i ? ", " : "[", l->v[i]);
        put(b, "]");
        break;
    }
    case HS_CFG_V_INT_LIST: {
        const hs_config_int_list *l = (const hs_config_int_list *)f;
        for (int i = 0; i < l->n; i++) put(b, "%s%d", i ? ", " : "[", l->v[i]);
        put(b, "]");
        break;
    }
    case HS_CFG_V_F64_LIST: {
        const hs_config_f64_list *l = (const hs_config_f64_list *)f;
        for (int i = 0; i < l->n; i++) {
            put(b, "%s", i ? ", " : "[");
            put_f64(b, l->v[i]);
        }
        put(b, "]");
        break;
    }
    case HS_CFG_V_ENUM_SET: {
        unsigned set = *(const unsigned *)f;
        int first = 1;
        for (int i = 0; k->names[i]; i++)
            if (set & HS_CONFIG_BIT(i)) {
                put(b, "%s%s", first ? "[" : ", ", k->names[i]);
                first = 0;
            }
        put(b, "]");
        break;
    }
    case HS_CFG_V_DEVICE: {
        const hs_config_device *d = (const hs_config_device *)f;
        if (d->kind == HS_CONFIG_DEVICE_CPU)
            put(b, "cpu");
        else if (d->kind == HS_CONFIG_DEVICE_CUDA_ALL)
            put(b, "all");
        else if (d->n == 1)
            put(b, "cuda:%d", d->ids[0]);
        else {
            for (int i = 0; i < d->n; i++) put(b, "%scuda:%d", i ? ", " : "[", d->ids[i]);
            put(b, "]");
        }
        break;
    }
    case HS_CFG_V_SHARD: {
        const hs_config_shard *sh = (const hs_config_shard *)f;
        if (sh->set)
            put(b, "\"%d/%d\"", sh->index, sh->count);
        else
            put(b, "null");
        break;
    }
    case HS_CFG_V_IMPORTANCE: {
        const hs_config_importance *im = (const hs_config_importance *)f;
        if (im->experiment || !im->file || !im->dataset) {
            put_str(b, im->experiment);
        } else {
            put(b, "\"");
            put_escaped(b, im->file);
            put(b, ":");
            put_escaped(b, im->dataset);
            put(b, "\"");
        }
        break;
    }
    case HS_CFG_V_HEADS: {
        const hs_config_heads *l = (const hs_config_heads *)f;
        for (int i = 0; i < l->n; i++) put(b, "%sL%dH%d", i ? ", " : "[", l->v[2 * i], l->v[2 * i + 1]);
        put(b, l->n ? "]" : "null"); /* null only in a hand-built config: loading refuses it */
        break;
    }
    case HS_CFG_V_SECTION: HS_ASSERT(!"sections are emitted by emit()"); break;
    }
}

static hs_status emit(const hs_config *c, int placement, char **text, hs_err *err) {
    buf b = {0};
    static const int placement_keys[] = {HS_TK_DEVICE, HS_TK_THREADS, HS_TK_BACKWARD_MEMORY_MB, HS_TK_OUTPUT,
                                         HS_TK_OVERWRITE, HS_TK_SHARD}; /* none changes a result */
    if (!c || !text) return hs_err_set(err, HS_ERR_INVALID_ARG, "hs_config emit: bad arguments");
    *text = NULL;
    for (int k = 0; k < HS_TK_COUNT; k++) {
        const hs_cfg_key *key = &hs_cfg_top_keys[k];
        int skip = 0;
        for (size_t j = 0; !placement && j < sizeof placement_keys / sizeof *placement_keys; j++)
            skip |= placement_keys[j] == k;
        if (skip) continue;
        if (k == HS_TK_DATASET) {
            put(&b, "dataset:\n");
            for (int d = 0; d < HS_DK_COUNT; d++) {
                if (!hs_cfg_dataset_key_applies(&c->dataset, d)) continue;
                put(&b, "  %s: ", hs_cfg_dataset_keys[d].name);
                put_value(&b, &hs_cfg_dataset_keys[d], &c->dataset);
                put(&b, "\n");
            }
        } else if (k == HS_TK_EXPERIMENTS) {
            put(&b, "experiments:\n");
            for (int i = 0; i < c->n_experiments; i++)
                for (int e = 0, first = 1; e < HS_EK_COUNT; e++) {
                    if (!hs_cfg_exp_key_applies(&c->experiments[i], e)) continue;
                    put(&b, "  %s %s: ", first ? "-" : " ", hs_cfg_exp_keys[e].name);
                    put_value(&b, &hs_cfg_exp_keys[e], &c->experiments[i]);
                    put(&b, "\n");
                    first = 0;
                }
        } else {
            put(&b, "%s: ", key->name);
            put_value(&b, key, c);
            put(&b, "\n");
        }
    }
    if (b.oom) {
        free(b.s);
        return hs_err_set(err, HS_ERR_OOM, "out of memory");
    }
    *text = b.s;
    return HS_OK;
}

hs_status hs_config_resolved_yaml(const hs_config *c, char **text, hs_err *err) {
    return emit(c, 1, text, err);
}

hs_status hs_config_sweep_yaml(const hs_config *c, char **text, hs_err *err) {
    return emit(c, 0, text, err);
}
