/* hs_h5 attributes: scalar string/int/float attributes on groups and datasets,
 * and the provenance block written as root attributes. Strings are stored as
 * variable-length UTF-8 so that a long resolved config fits (no 64 KiB
 * object-header limit: the bytes live in the global heap). */
#include "hs_h5_internal.h"

#include <string.h>
#include <time.h>

#include "headsweep/hs_sha256.h"

/* The object attributes go on: the group itself, or dataset obj in it. The
 * caller closes *loc when *opened is set. */
static hs_status attr_target(hs_h5_group *g, const char *obj, const char *key, hid_t *loc,
                             int *opened, hs_err *err) {
    hs_status st = HS_OK;
    *loc = g->id;
    *opened = 0;
    if (!hs_h5_name_ok(key)) HS_H5_FAIL(err, HS_ERR_INVALID_ARG, g, obj, 0, "bad attribute name '%s'", key ? key : "(null)");
    if (!obj || !*obj) goto exit;
    if (!hs_h5_name_ok(obj)) HS_H5_FAIL(err, HS_ERR_INVALID_ARG, g, obj, 0, "bad dataset name");
    htri_t ex = H5Lexists(g->id, obj, H5P_DEFAULT);
    if (ex < 0) HS_H5_FAIL(err, HS_ERR_IO, g, obj, 1, "cannot look it up");
    if (!ex) HS_H5_FAIL(err, HS_ERR_MISSING, g, obj, 0, "no such dataset (attribute '%s')", key);
    *loc = H5Oopen(g->id, obj, H5P_DEFAULT);
    if (*loc < 0) HS_H5_FAIL(err, HS_ERR_IO, g, obj, 1, "cannot open it (attribute '%s')", key);
    *opened = 1;
exit:
    return st;
}

/* Writes (replacing) scalar attribute key of file type ftype from buf (memory type mtype). */
static hs_status attr_write(hs_h5_group *g, const char *obj, const char *key, hid_t ftype, hid_t mtype,
                            const void *buf, hs_err *err) {
    hs_status st = HS_OK;
    hid_t loc = H5I_INVALID_HID, space = H5I_INVALID_HID, a = H5I_INVALID_HID;
    int opened = 0;
    hs_h5_quiet q;
    hs_h5_quiet_begin(&q);
    if (!g) HS_FAIL(err, HS_ERR_INVALID_ARG, "hs_h5_attr: group is NULL");
    HS_CHECK(attr_target(g, obj, key, &loc, &opened, err));
    if (!g->file->writable) HS_H5_FAIL(err, HS_ERR_INVALID_ARG, g, obj, 0, "attribute '%s': file is read-only", key);
    htri_t ex = H5Aexists(loc, key);
    if (ex < 0 || (ex > 0 && H5Adelete(loc, key) < 0))
        HS_H5_FAIL(err, HS_ERR_IO, g, obj, 1, "cannot replace attribute '%s'", key);
    if ((space = H5Screate(H5S_SCALAR)) < 0 ||
        (a = H5Acreate2(loc, key, ftype, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 || H5Awrite(a, mtype, buf) < 0)
        HS_H5_FAIL(err, HS_ERR_IO, g, obj, 1, "cannot write attribute '%s'", key);
exit:
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    if (opened) H5Oclose(loc);
    hs_h5_quiet_end(&q);
    return st;
}

static hid_t vlen_utf8(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

hs_status hs_h5_attr_str(hs_h5_group *g, const char *obj, const char *key, const char *value, hs_err *err) {
    hid_t t = vlen_utf8();
    if (t < 0) return hs_err_set(err, HS_ERR_IO, "hs_h5_attr_str: cannot make a string type");
    const char *v = value ? value : "";
    hs_status st = attr_write(g, obj, key, t, t, &v, err);
    H5Tclose(t);
    return st;
}

hs_status hs_h5_attr_int(hs_h5_group *g, const char *obj, const char *key, int64_t value, hs_err *err) {
    return attr_write(g, obj, key, H5T_STD_I64LE, H5T_NATIVE_INT64, &value, err);
}

hs_status hs_h5_attr_f64(hs_h5_group *g, const char *obj, const char *key, double value, hs_err *err) {
    return attr_write(g, obj, key, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, err);
}

/* ---- reading -------------------------------------------------------------------------- */

typedef enum { WANT_STR, WANT_INT, WANT_F64 } attr_want;

static hs_status attr_read(hs_h5_group *g, const char *obj, const char *key, attr_want want, void *out,
                           hs_err *err) {
    hs_status st = HS_OK;
    hid_t loc = H5I_INVALID_HID, a = H5I_INVALID_HID, t = H5I_INVALID_HID, mt = H5I_INVALID_HID,
          space = H5I_INVALID_HID;
    int opened = 0;
    char *vs = NULL;
    hs_h5_quiet q;
    hs_h5_quiet_begin(&q);
    if (!g || !out) HS_FAIL(err, HS_ERR_INVALID_ARG, "hs_h5_read_attr: NULL argument");
    HS_CHECK(attr_target(g, obj, key, &loc, &opened, err));
    htri_t ex = H5Aexists(loc, key);
    if (ex < 0) HS_H5_FAIL(err, HS_ERR_IO, g, obj, 1, "cannot look up attribute '%s'", key);
    if (!ex) HS_H5_FAIL(err, HS_ERR_MISSING, g, obj, 0, "no attribute '%s'", key);
    if ((a = H5Aopen(loc, key, H5P_DEFAULT)) < 0 || (t = H5Aget_type(a)) < 0 || (space = H5Aget_space(a)) < 0)
        HS_H5_FAIL(err, HS_ERR_IO, g, obj, 1, "cannot open attribute '%s'", key);
    if (H5Sget_simple_extent_npoints(space) != 1)
        HS_H5_FAIL(err, HS_ERR_FORMAT, g, obj, 0, "attribute '%s' is not a scalar", key);
    H5T_class_t cls = H5Tget_class(t);
    if (want == WANT_STR) {
        if (cls != H5T_STRING) HS_H5_FAIL(err, HS_ERR_FORMAT, g, obj, 0, "attribute '%s' is not a string", key);
        if (H5Tis_variable_str(t) > 0) {
            if ((mt = vlen_utf8()) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0 || H5Aread(a, mt, &vs) < 0)
                HS_H5_FAIL(err, HS_ERR_IO, g, obj, 1, "cannot read attribute '%s'", key);
            char *copy = strdup(vs ? vs : "");
            H5Dvlen_reclaim(mt, space, H5P_DEFAULT, &vs);
            vs = NULL;
            if (!copy) HS_FAIL(err, HS_ERR_OOM, "out of memory");
            *(char **)out = copy;
        } else {
            size_t n = H5Tget_size(t);
            char *buf = calloc(1, n + 1); /* fixed-length strings need not be NUL-terminated */
            if (!buf) HS_FAIL(err, HS_ERR_OOM, "out of memory");
            if ((mt = H5Tcopy(t)) < 0 || H5Aread(a, mt, buf) < 0) {
                free(buf);
                HS_H5_FAIL(err, HS_ERR_IO, g, obj, 1, "cannot read attribute '%s'", key);
            }
            *(char **)out = buf;
        }
    } else {
        if (cls != H5T_INTEGER && (want == WANT_INT || cls != H5T_FLOAT))
            HS_H5_FAIL(err, HS_ERR_FORMAT, g, obj, 0, "attribute '%s' is not %s", key,
                       want == WANT_INT ? "an integer" : "a number");
        if (H5Aread(a, want == WANT_INT ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, out) < 0)
            HS_H5_FAIL(err, HS_ERR_IO, g, obj, 1, "cannot read attribute '%s'", key);
    }
exit:
    if (mt >= 0) H5Tclose(mt);
    if (t >= 0) H5Tclose(t);
    if (space >= 0) H5Sclose(space);
    if (a >= 0) H5Aclose(a);
    if (opened) H5Oclose(loc);
    hs_h5_quiet_end(&q);
    return st;
}

hs_status hs_h5_read_attr_str(hs_h5_group *g, const char *obj, const char *key, char **value, hs_err *err) {
    if (value) *value = NULL;
    return attr_read(g, obj, key, WANT_STR, value, err);
}
hs_status hs_h5_read_attr_int(hs_h5_group *g, const char *obj, const char *key, int64_t *value, hs_err *err) {
    return attr_read(g, obj, key, WANT_INT, value, err);
}
hs_status hs_h5_read_attr_f64(hs_h5_group *g, const char *obj, const char *key, double *value, hs_err *err) {
    return attr_read(g, obj, key, WANT_F64, value, err);
}

/* ---- provenance ------------------------------------------------------------------------- */

hs_h5_provenance hs_h5_provenance_default(void) {
    hs_h5_provenance p;
    memset(&p, 0, sizeof p);
    return p;
}

/* "<hex>  <path>\n" per weight file (sha256sum's format, so `sha256sum -c` can
 * check it), hashing files whose digest was not given. malloc'd. */
static hs_status weights_text(const hs_h5_provenance *p, const char *file, char **out, hs_err *err) {
    hs_status st = HS_OK;
    size_t cap = 1, len = 0;
    char *s = NULL;
    *out = NULL;
    for (int i = 0; i < p->n_weight_files; i++) cap += HS_SHA256_HEX_LEN + 3 + strlen(p->weight_files[i] ? p->weight_files[i] : "");
    if (!(s = malloc(cap))) HS_FAIL(err, HS_ERR_OOM, "out of memory");
    s[0] = '\0';
    for (int i = 0; i < p->n_weight_files; i++) {
        const char *path = p->weight_files[i] ? p->weight_files[i] : "";
        char hex[HS_SHA256_HEX_LEN + 1];
        const char *given = p->weight_sha256 ? p->weight_sha256[i] : NULL;
        if (given) snprintf(hex, sizeof hex, "%s", given);
        else if ((st = hs_sha256_file(path, hex, err)) != HS_OK) {
            hs_err_prefix(err, "file '%s': provenance: weight file %d", file, i);
            goto exit;
        }
        len += (size_t)snprintf(s + len, cap - len, "%s  %s\n", hex, path);
    }
    *out = s;
    s = NULL;
exit:
    free(s);
    return st;
}

hs_status hs_h5_write_provenance(hs_h5 *f, const hs_h5_provenance *p, hs_err *err) {
    hs_status st = HS_OK;
    char *weights = NULL;
    hs_h5_group *r = NULL;
    if (!f || !p) return hs_err_set(err, HS_ERR_INVALID_ARG, "hs_h5_write_provenance: NULL argument");
    if (p->n_weight_files < 0 || (p->n_weight_files > 0 && !p->weight_files))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "file '%s': provenance: weight file list missing", f->path);
    HS_CHECK(hs_h5_group_open(f, "/", &r, err));
    char now[32], hdf5v[32], cfg_hex[HS_SHA256_HEX_LEN + 1];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
    unsigned maj = 0, min = 0, rel = 0;
    H5get_libversion(&maj, &min, &rel);
    snprintf(hdf5v, sizeof hdf5v, "%u.%u.%u", maj, min, rel);
    const char *cfg = p->config_text ? p->config_text : "";
    hs_sha256_hex(cfg, strlen(cfg), cfg_hex);
    HS_CHECK(weights_text(p, f->path, &weights, err));

    const struct {
        const char *key, *val;
    } strs[] = {
        {"headsweep_version", p->version ? p->version : HS_VERSION},
        {"git_revision", p->git_revision ? p->git_revision : HS_GIT_REV},
        {"created_utc", p->created_utc ? p->created_utc : now},
        {"config", cfg},
        {"config_sha256", cfg_hex},
        {"model_path", p->model_path},
        {"model_id", p->model_id},
        {"weights_sha256", weights},
        {"device", p->device},
        {"hdf5_version", hdf5v},
        {"blas_version", p->blas_version},
        {"cuda_version", p->cuda_version},
    };
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        HS_CHECK(hs_h5_attr_str(r, NULL, strs[i].key, strs[i].val, err));
    if (p->computed_on) HS_CHECK(hs_h5_attr_str(r, NULL, "computed_on", p->computed_on, err));
    const struct {
        const char *key;
        int64_t val;
    } ints[] = {
        {"n_layers", p->n_layers}, {"n_heads", p->n_heads}, {"n_kv_heads", p->n_kv_heads},
        {"d_model", p->d_model},   {"d_head", p->d_head},   {"d_mlp", p->d_mlp},
        {"n_vocab", p->n_vocab},  {"parallel_attn_mlp", p->parallel_attn_mlp},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        HS_CHECK(hs_h5_attr_int(r, NULL, ints[i].key, ints[i].val, err));
    /* unsigned: seeds use all 64 bits */
    HS_CHECK(attr_write(r, NULL, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &p->seed, err));
exit:
    free(weights);
    return st;
}

typedef struct {
    hid_t dst;
    const char *skip;
    int failed;
    char name[HS_H5_NAME_MAX];
} copy_ctx;

static herr_t copy_one(hid_t loc, const char *name, const H5A_info_t *info, void *user) {
    (void)info;
    copy_ctx *c = user;
    if (c->skip && !strncmp(name, c->skip, strlen(c->skip))) return 0;
    htri_t ex = H5Aexists(c->dst, name);
    if (ex != 0) return ex < 0 ? -1 : 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = -1, sp = -1, b = -1;
    void *buf = NULL;
    herr_t rc = -1;
    if (a < 0 || (t = H5Aget_type(a)) < 0 || (sp = H5Aget_space(a)) < 0) goto done;
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    size_t sz = H5Tget_size(t);
    if (n < 0 || sz == 0 || !(buf = calloc((size_t)(n ? n : 1), sz))) goto done;
    if (H5Aread(a, t, buf) < 0) goto done;
    if ((b = H5Acreate2(c->dst, name, t, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 || H5Awrite(b, t, buf) < 0) goto done;
    rc = 0;
done:
    if (rc < 0) snprintf(c->name, sizeof c->name, "%s", name), c->failed = 1;
    if (buf && t >= 0 && H5Tis_variable_str(t) > 0 && sp >= 0) H5Dvlen_reclaim(t, sp, H5P_DEFAULT, buf);
    free(buf);
    if (b >= 0) H5Aclose(b);
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    return rc;
}

hs_status hs_h5_copy_attrs(hs_h5_group *src, const char *sobj, hs_h5_group *dst, const char *dobj,
                           const char *skip_prefix, hs_err *err) {
    hs_status st = HS_OK;
    hid_t sloc = H5I_INVALID_HID, dloc = H5I_INVALID_HID;
    int sopen = 0, dopen = 0;
    hs_h5_quiet q;
    hs_h5_quiet_begin(&q);
    if (!src || !dst) HS_FAIL(err, HS_ERR_INVALID_ARG, "hs_h5_copy_attrs: group is NULL");
    if (!dst->file->writable) HS_H5_FAIL(err, HS_ERR_INVALID_ARG, dst, dobj, 0, "copying attributes: file is read-only");
    HS_CHECK(attr_target(src, sobj, "copy", &sloc, &sopen, err));
    HS_CHECK(attr_target(dst, dobj, "copy", &dloc, &dopen, err));
    copy_ctx c = {.dst = dloc, .skip = skip_prefix};
    hsize_t idx = 0;
    if (H5Aiterate2(sloc, H5_INDEX_NAME, H5_ITER_INC, &idx, copy_one, &c) < 0)
        HS_H5_FAIL(err, HS_ERR_IO, dst, dobj, 1, "cannot copy attribute '%s' from %s", c.failed ? c.name : "?",
                   src->file->path);
exit:
    if (sopen) H5Oclose(sloc);
    if (dopen) H5Oclose(dloc);
    hs_h5_quiet_end(&q);
    return st;
}
