/* Result-file headers, shard files and their merge.
 *
 * A shard file holds what one Slurm task computed: the provenance and the
 * whole dataset (like a result file), root attributes shard_index,
 * shard_count and shard_sweep_sha256 (the hash of the sweep's resolved config
 * without its placement keys), and per experiment the rows [item_lo, item_hi)
 * of every per-item array plus the constants. Merge checks that the shards
 * form one complete sweep, concatenates the rows in item order and writes the
 * result groups with the same code as an unsharded run. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "headsweep/hs_sha256.h"
#include "hs_run_internal.h"

/* The weight files of a model path, for provenance hashes: the file itself,
 * or the .safetensors files of a folder. */
static int weight_files(const char *path, char ***out) {
    struct stat sb;
    *out = NULL;
    if (stat(path, &sb) != 0) return 0;
    char **v = calloc(64, sizeof *v);
    int n = 0;
    if (!v) return 0;
    if (S_ISREG(sb.st_mode)) {
        v[n++] = strdup(path);
    } else {
        char cand[4200];
        snprintf(cand, sizeof cand, "%s/model.safetensors", path);
        if (stat(cand, &sb) == 0) {
            v[n++] = strdup(cand);
        } else {
            for (int k = 1; k <= 63 && n < 64; k++) { /* model-0000k-of-0000N.safetensors */
                int found = 0;
                for (int total = k; total <= 63 && !found; total++) {
                    snprintf(cand, sizeof cand, "%s/model-%05d-of-%05d.safetensors", path, k, total);
                    if (stat(cand, &sb) == 0) v[n++] = strdup(cand), found = 1;
                }
                if (!found) break;
            }
        }
    }
    *out = v;
    return n;
}

void hs_run_computed_on_add(char *list, size_t n, const char *ident) {
    static const char full[] = "(more; the list is full)";
    const size_t k = strlen(ident), len = strlen(list);
    for (const char *l = list; *l;) { /* already a line? */
        const char *e = strchr(l, '\n');
        const size_t ll = e ? (size_t)(e - l) : strlen(l);
        if ((ll == k && !strncmp(l, ident, k)) || (ll == sizeof full - 1 && !strncmp(l, full, ll))) return;
        l += ll + (e != NULL);
    }
    const char *add = len + !!len + k + 1 + sizeof full <= n ? ident : full; /* always room left for the marker */
    snprintf(list + len, n - len, "%s%s", len ? "\n" : "", add);
}

static hs_status write_provenance(hs_h5 *f, const hs_config *cfg, const char *text, const hs_model *m,
                                  const char *device, const char *computed_on, hs_err *err) {
    const hs_model_config *c = hs_model_get_config(m);
    char **files = NULL;
    int nf = weight_files(hs_model_get_path(m), &files);
    hs_h5_provenance p = hs_h5_provenance_default();
    p.config_text = text;
    p.model_path = cfg->model;
    p.model_id = hs_model_get_path(m);
    p.n_weight_files = nf;
    p.weight_files = (const char *const *)files;
    p.n_layers = c->n_layers;
    p.n_heads = c->n_heads;
    p.n_kv_heads = c->n_kv_heads;
    p.d_model = c->d_model;
    p.d_head = c->d_head;
    p.d_mlp = c->d_mlp;
    p.n_vocab = c->n_vocab;
    p.parallel_attn_mlp = c->parallel_attn_mlp;
    p.device = device;
    p.computed_on = computed_on;
    p.blas_version = openblas_get_config();
    char cuda[160] = "";
    if (cfg->device.kind != HS_CONFIG_DEVICE_CPU) hs_backend_cuda_versions(cuda, sizeof cuda);
    p.cuda_version = cuda;
    p.seed = cfg->seed;
    hs_status st = hs_h5_write_provenance(f, &p, err);
    for (int i = 0; i < nf; i++) free(files[i]);
    free(files);
    return st;
}

/* tokens and lengths, and whichever of answers, distractors, templates,
 * corrupt prompts and needle spans the dataset has. */
static hs_status write_dataset(hs_h5 *f, const hs_config *cfg, const hs_dataset *d, hs_err *err) {
    hs_h5_group *g;
    hs_status st = hs_h5_group_open(f, "dataset", &g, err);
    if (st) return st;
    const int64_t dims[2] = {d->N, d->T};
    const char *names[2] = {"prompt", "position"};
    const struct {
        const char *name;
        const int32_t *v;
        int ndim;
    } arrays[] = {{"tokens", d->tokens, 2},           {"lengths", d->lengths, 1},
                  {"answer", d->answer, 1},           {"distractor", d->distractor, 1},
                  {"template_id", d->template_id, 1}, {"corrupt_tokens", d->corrupt_tokens, 2},
                  {"needle_start", d->needle_start, 1}, {"needle_len", d->needle_len, 1}};
    for (size_t i = 0; i < sizeof arrays / sizeof *arrays; i++)
        if (arrays[i].v && (st = hs_h5_write_i32(g, arrays[i].name, arrays[i].ndim, dims, names, arrays[i].v, err)))
            return st;
    return hs_h5_attr_str(g, NULL, "kind", hs_config_dataset_kind_name(cfg->dataset.kind), err);
}

hs_status hs_run_write_header(hs_run_ctx *x, hs_h5 *f, const char *config_text, const char *device, hs_err *err) {
    hs_status st = write_provenance(f, x->cfg, config_text, x->model, device, x->computed_on, err);
    return st ? st : write_dataset(f, x->cfg, x->data, err);
}

/* Writes rows [0, rows) of a as [rows, dims...] (rows < 0: a constant, [dims...]). */
static hs_status put_rows(hs_h5_group *g, const hs_run_array *a, int64_t rows, hs_err *err) {
    int64_t dims[HS_RUN_MAX_DIMS + 1] = {rows};
    for (int k = 0; k < a->ndim; k++) dims[k + 1] = a->dims[k];
    if (rows < 0) return hs_h5_write_f32(g, a->name, a->ndim, a->dims, a->dim_names + 1, a->data, err);
    return hs_h5_write_f32(g, a->name, a->ndim + 1, dims, a->dim_names, a->data, err);
}

hs_status hs_run_write_shard(hs_run_ctx *x, hs_h5 *f, const char *sweep_sha, hs_err *err) {
    hs_h5_group *root, *g;
    hs_status st = HS_OK;
    HS_CHECK(hs_h5_group_open(f, "/", &root, err));
    HS_CHECK(hs_h5_attr_int(root, NULL, "shard_index", x->shard_index, err));
    HS_CHECK(hs_h5_attr_int(root, NULL, "shard_count", x->shard_count, err));
    HS_CHECK(hs_h5_attr_str(root, NULL, "shard_sweep_sha256", sweep_sha, err));
    for (int i = 0; i < x->cfg->n_experiments; i++) {
        const hs_run_exp *r = &x->exps[i];
        HS_CHECK(hs_h5_group_open(f, x->cfg->experiments[i].name, &g, err));
        HS_CHECK(hs_h5_attr_str(g, NULL, "type", hs_config_exp_type_name(x->cfg->experiments[i].type), err));
        HS_CHECK(hs_h5_attr_int(g, NULL, "item_lo", r->lo, err));
        HS_CHECK(hs_h5_attr_int(g, NULL, "item_hi", r->hi, err));
        HS_CHECK(hs_h5_attr_int(g, NULL, "n_items", r->n_items, err));
        HS_CHECK(hs_h5_attr_int(g, NULL, "unit_items", r->unit, err));
        HS_CHECK(hs_h5_attr_int(g, NULL, "unit_parts", r->parts, err));
        HS_CHECK(hs_h5_attr_int(g, NULL, "unit_lo", r->u_lo, err));
        HS_CHECK(hs_h5_attr_int(g, NULL, "unit_hi", r->u_hi, err));
        for (int k = 0; k < r->n_arrays && r->hi > r->lo; k++) HS_CHECK(put_rows(g, &r->arrays[k], r->hi - r->lo, err));
        for (int k = 0; k < r->n_consts; k++) HS_CHECK(put_rows(g, &r->consts[k], -1, err));
    }
exit:
    return st;
}

/* ---- merge ------------------------------------------------------------------ */

typedef struct {
    const char *path;
    hs_h5 *f;
    hs_h5_group *root;
    int64_t index, count;
    char *sha;
} shard;

static hs_status open_shard(shard *s, hs_err *err) {
    hs_status st = hs_h5_open_read(s->path, &s->f, err);
    if (!st) st = hs_h5_group_open(s->f, "/", &s->root, err);
    if (!st && (hs_h5_read_attr_int(s->root, NULL, "shard_index", &s->index, NULL) ||
                hs_h5_read_attr_int(s->root, NULL, "shard_count", &s->count, NULL) ||
                hs_h5_read_attr_str(s->root, NULL, "shard_sweep_sha256", &s->sha, NULL)))
        st = hs_err_set(err, HS_ERR_FORMAT, "%s: not a shard file (no shard_index, shard_count or shard_sweep_sha256)",
                        s->path);
    return st;
}

/* Every shard is there once, from the same sweep. */
static hs_status check_shards(shard *s, int n, shard **by_index, hs_err *err) {
    const int64_t count = s[0].count;
    if (count < 1 || count > 1000000) return hs_err_set(err, HS_ERR_FORMAT, "%s: shard_count %lld", s[0].path, (long long)count);
    for (int i = 0; i < n; i++) {
        if (strcmp(s[i].sha, s[0].sha))
            return hs_err_set(err, HS_ERR_INVALID_ARG, "%s is from a different sweep than %s (config sha256 %.12s... vs %.12s...)",
                              s[i].path, s[0].path, s[i].sha, s[0].sha);
        if (s[i].count != count)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "%s is shard %lld of %lld, %s one of %lld", s[i].path,
                              (long long)s[i].index, (long long)s[i].count, s[0].path, (long long)count);
        if (s[i].index < 0 || s[i].index >= count)
            return hs_err_set(err, HS_ERR_FORMAT, "%s: shard_index %lld outside 0..%lld", s[i].path, (long long)s[i].index,
                              (long long)count - 1);
        if (by_index[s[i].index])
            return hs_err_set(err, HS_ERR_INVALID_ARG, "shard %lld given twice: %s and %s", (long long)s[i].index,
                              by_index[s[i].index]->path, s[i].path);
        by_index[s[i].index] = &s[i];
    }
    char missing[600] = "";
    int n_missing = 0;
    for (int64_t k = 0; k < count; k++)
        if (!by_index[k]) {
            size_t len = strlen(missing);
            if (len < sizeof missing - 32) snprintf(missing + len, sizeof missing - len, "%s%lld", n_missing ? ", " : "", (long long)k);
            n_missing++;
        }
    if (n_missing)
        return hs_err_set(err, HS_ERR_MISSING, "%d of %lld shards missing (index %s): nothing merged", n_missing,
                          (long long)count, missing);
    return HS_OK;
}

/* The model shape recorded in a result file's provenance. */
static hs_status file_model_config(hs_h5_group *root, hs_model_config *c, hs_err *err) {
    memset(c, 0, sizeof *c);
    struct {
        const char *key;
        int *v;
    } k[] = {{"n_layers", &c->n_layers}, {"n_heads", &c->n_heads}, {"n_kv_heads", &c->n_kv_heads},
             {"d_model", &c->d_model},   {"d_head", &c->d_head},   {"d_mlp", &c->d_mlp}, {"n_vocab", &c->n_vocab}};
    for (size_t i = 0; i < sizeof k / sizeof *k; i++) {
        int64_t v;
        hs_status st = hs_h5_read_attr_int(root, NULL, k[i].key, &v, err);
        if (st) return st;
        *k[i].v = (int)v;
    }
    int64_t par = 0; /* absent from files written before it was recorded (no experiment then read it) */
    if (!hs_h5_read_attr_int(root, NULL, "parallel_attn_mlp", &par, NULL)) c->parallel_attn_mlp = (int)par;
    return HS_OK;
}

/* The merged file's device (each shard's, once, in shard order: "; "
 * between) and computed_on (the union of the shards' lists). A shard from
 * before computed_on counts as unrecorded, as a journal record from then does. */
static hs_status merge_devices(shard **sh, int64_t count, hs_h5_group *root, hs_err *err) {
    char devices[HS_RUN_COMPUTED_ON_MAX] = "", computed_on[HS_RUN_COMPUTED_ON_MAX] = "";
    char *dev = NULL, *on = NULL;
    hs_status st = HS_OK;
    for (int64_t s = 0; s < count; s++) {
        HS_CHECK(hs_h5_read_attr_str(sh[s]->root, NULL, "device", &dev, err));
        if (hs_h5_read_attr_str(sh[s]->root, NULL, "computed_on", &on, NULL))
            on = strdup("unrecorded (a shard from a headsweep that did not record it)");
        if (!on) HS_FAIL(err, HS_ERR_OOM, "out of memory");
        hs_run_computed_on_add(devices, sizeof devices, dev);
        for (char *line = on, *e; line; line = e ? e + 1 : NULL) {
            if ((e = strchr(line, '\n'))) *e = 0;
            if (*line) hs_run_computed_on_add(computed_on, sizeof computed_on, line);
        }
        free(dev), free(on);
        dev = on = NULL;
    }
    char one_line[sizeof devices * 2], *o = one_line; /* "a; b" */
    for (const char *c = devices; *c; c++) {
        if (*c == '\n') *o++ = ';', *o++ = ' ';
        else *o++ = *c;
    }
    *o = 0;
    HS_CHECK(hs_h5_attr_str(root, NULL, "device", one_line, err));
    HS_CHECK(hs_h5_attr_str(root, NULL, "computed_on", computed_on, err));
exit:
    free(dev), free(on);
    return st;
}

static hs_status copy_dataset_group(hs_h5 *src, hs_h5 *dst, int *N, int *T, hs_err *err) {
    hs_h5_group *gs, *gd;
    char **names = NULL;
    int64_t n = 0;
    hs_status st = HS_OK;
    *N = *T = 0;
    HS_CHECK(hs_h5_group_open(src, "dataset", &gs, err));
    HS_CHECK(hs_h5_group_open(dst, "dataset", &gd, err));
    HS_CHECK(hs_h5_list_datasets(gs, &names, &n, err));
    for (int64_t i = 0; i < n; i++) {
        if (!strcmp(names[i], "prompt") || !strcmp(names[i], "position")) continue; /* coordinates */
        int32_t *v = NULL;
        hs_h5_shape sh;
        const char *dn[2] = {"prompt", "position"};
        HS_CHECK(hs_h5_read_i32(gs, names[i], &v, &sh, err));
        st = hs_h5_write_i32(gd, names[i], sh.ndim, sh.dims, dn, v, err);
        if (!st && !strcmp(names[i], "tokens") && sh.ndim == 2) *N = (int)sh.dims[0], *T = (int)sh.dims[1];
        free(v);
        if (st) goto exit;
    }
    HS_CHECK(hs_h5_copy_attrs(gs, NULL, gd, NULL, NULL, err));
    if (*N < 1 || *T < 1) HS_FAIL(err, HS_ERR_FORMAT, "%s: dataset/tokens missing or malformed", hs_h5_path(src));
exit:
    hs_h5_names_free(names, n);
    return st;
}

/* Fills r from every shard's group, in shard order: each shard contributes
 * the columns of the units it ran (units tile the sweep; a chunk of items
 * split into parts may span two shards). */
static hs_status gather(shard **sh, int64_t count, const char *group, hs_run_exp *r, hs_err *err) {
    hs_status st = HS_OK;
    int64_t next = 0, n_units = -1, unit = 0;
    float *v = NULL;
    for (int64_t s = 0; s < count; s++) {
        hs_h5_group *g;
        int64_t lo, hi, n_items, u_items, parts, u_lo, u_hi;
        HS_CHECK(hs_h5_group_open(sh[s]->f, group, &g, err));
        HS_CHECK(hs_h5_read_attr_int(g, NULL, "item_lo", &lo, err));
        HS_CHECK(hs_h5_read_attr_int(g, NULL, "item_hi", &hi, err));
        HS_CHECK(hs_h5_read_attr_int(g, NULL, "n_items", &n_items, err));
        HS_CHECK(hs_h5_read_attr_int(g, NULL, "unit_items", &u_items, err));
        HS_CHECK(hs_h5_read_attr_int(g, NULL, "unit_parts", &parts, err));
        HS_CHECK(hs_h5_read_attr_int(g, NULL, "unit_lo", &u_lo, err));
        HS_CHECK(hs_h5_read_attr_int(g, NULL, "unit_hi", &u_hi, err));
        if (s == 0) unit = u_items, n_units = u_items > 0 ? (r->n_items + u_items - 1) / u_items * r->parts : -1;
        if (n_items != r->n_items || u_items != unit || unit < 1 || parts != r->parts || u_lo != next || u_hi < u_lo ||
            u_hi > n_units || lo < 0 || hi < lo || hi > r->n_items ||
            (u_hi > u_lo && (lo != u_lo / parts * unit || hi < (u_hi - 1) / parts * unit + 1)))
            HS_FAIL(err, HS_ERR_FORMAT,
                    "%s: experiment '%s' holds units %lld..%lld (items %lld..%lld of %lld, %lld per unit, %lld parts); "
                    "expected units from %lld of %lld, %d items, %d parts",
                    sh[s]->path, group, (long long)u_lo, (long long)u_hi, (long long)lo, (long long)hi,
                    (long long)n_items, (long long)u_items, (long long)parts, (long long)next, (long long)n_units,
                    r->n_items, r->parts);
        for (int k = 0; k < r->n_arrays + (s == 0 ? r->n_consts : 0); k++) {
            const int is_const = k >= r->n_arrays;
            hs_run_array *a = is_const ? &r->consts[k - r->n_arrays] : &r->arrays[k];
            if (!is_const && hi == lo) continue; /* a shard with none of this experiment's items */
            hs_h5_shape shp;
            HS_CHECK(hs_h5_read_f32(g, a->name, &v, &shp, err));
            int64_t numel = 1;
            for (int d = 0; d < shp.ndim; d++) numel *= shp.dims[d];
            const int64_t want = is_const ? a->per : (hi - lo) * a->per;
            if (numel != want || shp.ndim != a->ndim + !is_const)
                HS_FAIL(err, HS_ERR_SHAPE, "%s: %s/%s has %lld values, expected %lld", sh[s]->path, group, a->name,
                        (long long)numel, (long long)want);
            if (is_const) memcpy(a->data, v, (size_t)want * sizeof(float));
            for (int64_t u = u_lo; !is_const && u < u_hi; u++) {
                const int64_t i0 = u / parts * unit, i1 = i0 + unit < r->n_items ? i0 + unit : r->n_items;
                int64_t c0, c1;
                hs_run_part_cols(r, a, (int)(u % parts), &c0, &c1);
                for (int64_t i = i0; i < i1; i++)
                    memcpy(a->data + i * a->per + c0, v + (i - lo) * a->per + c0, (size_t)(c1 - c0) * sizeof(float));
            }
            free(v);
            v = NULL;
        }
        next = u_hi;
    }
    if (next != n_units)
        HS_FAIL(err, HS_ERR_FORMAT, "experiment '%s': the shards hold %lld of its %lld units", group, (long long)next,
                (long long)n_units);
exit:
    free(v);
    return st;
}

hs_status hs_run_merge(const char *out, const char *const *paths, int n, int overwrite, hs_err *err) {
    hs_status st = HS_OK;
    shard *s = calloc((size_t)(n > 0 ? n : 1), sizeof *s), **by_index = NULL;
    hs_config *cfg = NULL;
    char *text = NULL;
    hs_h5 *f = NULL;
    hs_run_exp r;
    memset(&r, 0, sizeof r);
    if (n < 1) HS_FAIL(err, HS_ERR_INVALID_ARG, "merge: no shard files given");
    if (!s) HS_FAIL(err, HS_ERR_OOM, "out of memory");
    for (int i = 0; i < n; i++) {
        s[i].path = paths[i];
        HS_CHECK(open_shard(&s[i], err));
    }
    if (!(by_index = calloc((size_t)(s[0].count > 0 && s[0].count <= 1000000 ? s[0].count : 1), sizeof *by_index)))
        HS_FAIL(err, HS_ERR_OOM, "out of memory");
    HS_CHECK(check_shards(s, n, by_index, err));
    HS_CHECK(hs_h5_read_attr_str(by_index[0]->root, NULL, "config", &text, err));
    HS_CHECK(hs_config_load_text(text, by_index[0]->path, &cfg, err));
    hs_model_config c;
    int N, T;
    HS_CHECK(file_model_config(by_index[0]->root, &c, err));
    HS_CHECK(hs_h5_create(out, overwrite, &f, err));
    hs_h5_group *root;
    HS_CHECK(hs_h5_group_open(f, "/", &root, err));
    HS_CHECK(hs_h5_copy_attrs(by_index[0]->root, NULL, root, NULL, "shard_", err));
    HS_CHECK(hs_h5_attr_int(root, NULL, "merged_shards", s[0].count, err));
    HS_CHECK(merge_devices(by_index, s[0].count, root, err));
    { /* the config as an unsharded run states it */
        char *resolved = NULL, hex[HS_SHA256_HEX_LEN + 1];
        cfg->shard.set = 0, cfg->shard.index = 0, cfg->shard.count = 0;
        st = hs_config_resolved_yaml(cfg, &resolved, err);
        if (!st) hs_sha256_hex(resolved, strlen(resolved), hex);
        if (!st) st = hs_h5_attr_str(root, NULL, "config", resolved, err);
        if (!st) st = hs_h5_attr_str(root, NULL, "config_sha256", hex, err);
        free(resolved);
        if (st) goto exit;
    }
    HS_CHECK(copy_dataset_group(by_index[0]->f, f, &N, &T, err));
    for (int i = 0; i < cfg->n_experiments; i++) {
        hs_h5_group *g;
        HS_CHECK(hs_run_plan(cfg, i, &c, N, T, &r, err));
        r.lo = 0, r.hi = r.n_items;
        HS_CHECK(hs_run_alloc(&r, err));
        HS_CHECK(gather(by_index, s[0].count, cfg->experiments[i].name, &r, err));
        HS_CHECK(hs_h5_group_open(f, cfg->experiments[i].name, &g, err));
        HS_CHECK(hs_run_write(cfg, i, &r, g, err));
        hs_run_exp_free(&r);
    }
    st = hs_h5_commit(f, err);
    f = NULL;
exit:
    if (f) hs_h5_abort(f);
    hs_run_exp_free(&r);
    for (int i = 0; s && i < n; i++) {
        if (s[i].f) hs_h5_close(s[i].f);
        free(s[i].sha);
    }
    free(s), free(by_index), free(text);
    hs_config_free(cfg);
    return st;
}
