/* hs_config loading: libfyaml parses the file (its diagnostics collected,
 * never printed), the key tables drive the walk, --set overrides are applied
 * in order, then hs_cfg_resolve fills defaults and checks across keys.
 * libfyaml is used only here and in hs_config_value.c. */
#include <ctype.h>
#include <errno.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_config_internal.h"

hs_status hs_cfg_fail(const hs_cfg_ctx *ctx, hs_cfg_loc loc, hs_err *err, hs_status code,
                      const char *fmt, ...) {
    char msg[HS_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (loc.src == HS_CFG_SRC_OVERRIDE)
        return hs_err_set(err, code, "--set %s: %s", ctx->overrides[loc.override], msg);
    if (loc.src == HS_CFG_SRC_FILE)
        return hs_err_set(err, code, "%s:%d:%d: %s", ctx->path, loc.line, loc.col, msg);
    return hs_err_set(err, code, "%s: %s", ctx->path, msg);
}

hs_cfg_loc hs_cfg_node_loc(const hs_cfg_ctx *ctx, struct fy_node *node, hs_cfg_loc fallback) {
    if (ctx->cur.src != HS_CFG_SRC_FILE) return ctx->cur;
    if (!node) return fallback;
    hs_cfg_loc loc = {HS_CFG_SRC_FILE, 0, 0, 0, 0, 0};
    struct fy_token *tok = fy_node_get_scalar_token(node);
    const struct fy_mark *m = tok ? fy_token_start_mark(tok) : NULL;
    if (m) { /* fy_mark is 0-based and, for quoted scalars, after the quote */
        enum fy_node_style style = fy_node_get_style(node);
        loc.line = m->line + 1;
        loc.col = m->column + 1;
        if ((style == FYNS_SINGLE_QUOTED || style == FYNS_DOUBLE_QUOTED) && loc.col > 1) loc.col--;
        return loc;
    }
    /* Collections have no public mark accessor: a report collected (never
     * printed) by our diag carries the node's start position. */
    fy_diag_node_report(ctx->diag, node, FYET_ERROR, "locate");
    void *it = NULL;
    struct fy_diag_error *e, *last = NULL;
    while ((e = fy_diag_errors_iterate(ctx->diag, &it))) last = e;
    if (!last) return fallback;
    loc.line = last->line;
    loc.col = last->column;
    return loc;
}

/* A diag that collects instead of printing: the library stays silent and its
 * first error becomes our message. */
static struct fy_diag *diag_create(void) {
    struct fy_diag_cfg dc;
    fy_diag_cfg_default(&dc);
    dc.fp = NULL;
    dc.output_fn = NULL;
    dc.level = FYET_ERROR;
    dc.colorize = false;
    struct fy_diag *d = fy_diag_create(&dc);
    if (d) fy_diag_set_collect_errors(d, true);
    return d;
}

/* The n-th collected error (0-based), or NULL. */
static struct fy_diag_error *diag_nth(struct fy_diag *d, int n) {
    void *it = NULL;
    struct fy_diag_error *e;
    for (int i = 0; (e = fy_diag_errors_iterate(d, &it)); i++)
        if (i == n) return e;
    return NULL;
}
static int diag_count(struct fy_diag *d) {
    void *it = NULL;
    int n = 0;
    while (fy_diag_errors_iterate(d, &it)) n++;
    return n;
}

static struct fy_parse_cfg parse_cfg(struct fy_diag *diag) {
    struct fy_parse_cfg pc;
    memset(&pc, 0, sizeof pc);
    /* resolve: anchors, aliases and << merge keys work as in any YAML tool */
    pc.flags = FYPCF_QUIET | FYPCF_RESOLVE_DOCUMENT;
    pc.diag = diag;
    return pc;
}

static hs_status read_section(hs_cfg_ctx *ctx, hs_cfg_state *s, int key, struct fy_node *val,
                              hs_cfg_loc kl, hs_err *err);

/* Reads every pair of map into base through table; section names the
 * mapping in messages ("", "dataset", "experiments[1]"). */
static hs_status read_map(hs_cfg_ctx *ctx, hs_cfg_state *s, struct fy_node *map,
                          const hs_cfg_key *table, int n, void *base, hs_cfg_loc *locs,
                          hs_cfg_loc map_loc, const char *section, hs_err *err) {
    hs_status st = HS_OK;
    char *key = NULL, what[160], expected[512];
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(map, &it))) {
        struct fy_node *kn = fy_node_pair_key(p), *vn = fy_node_pair_value(p);
        hs_cfg_loc kl = hs_cfg_node_loc(ctx, kn, map_loc);
        size_t len = 0;
        const char *k = kn && fy_node_is_scalar(kn) ? fy_node_get_scalar(kn, &len) : NULL;
        if (!k || !len || !(key = strndup(k, len)))
            HS_CFG_FAIL(ctx, kl, err, HS_ERR_FORMAT, "%s%skeys must be names", section,
                        *section ? ": " : "");
        int i = hs_cfg_key_find(table, n, key);
        if (i < 0) {
            hs_cfg_key_list(table, n, 0, expected, sizeof expected);
            HS_CFG_FAIL(ctx, kl, err, HS_ERR_FORMAT, "unknown key '%s'%s%s (expected one of: %s)",
                        key, *section ? " in " : "", section, expected);
        }
        snprintf(what, sizeof what, "%s%s%s", section, *section ? "." : "", key);
        if (table[i].kind == HS_CFG_V_SECTION) {
            HS_CHECK(read_section(ctx, s, i, vn, kl, err));
        } else {
            HS_CHECK(hs_cfg_set_value(ctx, &table[i], base, vn, kl, what, err));
            hs_cfg_loc vl = hs_cfg_node_loc(ctx, vn, kl);
            kl.vline = vl.line;
            kl.vcol = vl.col;
            locs[i] = hs_cfg_is_null(vn) ? (hs_cfg_loc){HS_CFG_SRC_NONE, 0, 0, 0, 0, 0} : kl;
        }
        free(key);
        key = NULL;
    }
exit:
    free(key);
    return st;
}

static hs_status read_section(hs_cfg_ctx *ctx, hs_cfg_state *s, int key, struct fy_node *val,
                              hs_cfg_loc kl, hs_err *err) {
    hs_status st = HS_OK;
    hs_config *c = s->c;
    const char *name = hs_cfg_top_keys[key].name;
    hs_cfg_loc vl = hs_cfg_node_loc(ctx, val, kl);
    if (hs_cfg_is_null(val)) return HS_OK; /* null = absent */
    s->top[key] = kl;
    if (key == HS_TK_DATASET) {
        if (!fy_node_is_mapping(val))
            return hs_cfg_fail(ctx, vl, err, HS_ERR_FORMAT, "dataset: expected a mapping");
        s->dataset_map = vl;
        return read_map(ctx, s, val, hs_cfg_dataset_keys, HS_DK_COUNT, &c->dataset, s->ds, vl,
                        "dataset", err);
    }
    int n = fy_node_is_sequence(val) ? fy_node_sequence_item_count(val) : 0;
    if (n == 0)
        return hs_cfg_fail(ctx, vl, err, HS_ERR_FORMAT, "%s: expected a non-empty list", name);
    c->experiments = calloc((size_t)n, sizeof *c->experiments);
    s->exp_map = calloc((size_t)n, sizeof *s->exp_map);
    s->exp = calloc((size_t)n, sizeof *s->exp);
    if (!c->experiments || !s->exp_map || !s->exp)
        return hs_err_set(err, HS_ERR_OOM, "out of memory");
    c->n_experiments = n;
    void *it = NULL;
    struct fy_node *item;
    for (int i = 0; (item = fy_node_sequence_iterate(val, &it)); i++) {
        char section[64];
        snprintf(section, sizeof section, "experiments[%d]", i);
        s->exp_map[i] = hs_cfg_node_loc(ctx, item, vl);
        if (!fy_node_is_mapping(item))
            HS_CFG_FAIL(ctx, s->exp_map[i], err, HS_ERR_FORMAT, "%s: expected a mapping", section);
        HS_CHECK(read_map(ctx, s, item, hs_cfg_exp_keys, HS_EK_COUNT, &c->experiments[i], s->exp[i],
                          s->exp_map[i], section, err));
    }
exit:
    return st;
}

/* Finds experiment sel ("3" or a name). */
static int find_experiment(const hs_config *c, const char *sel) {
    char *end;
    if (isdigit((unsigned char)sel[0])) {
        long i = strtol(sel, &end, 10);
        return !*end && i < c->n_experiments ? (int)i : -1;
    }
    for (int i = 0; i < c->n_experiments; i++)
        if (c->experiments[i].name && !strcmp(c->experiments[i].name, sel)) return i;
    return -1;
}

/* Applies overrides[k] = "a.b.c=VALUE": the value is parsed as YAML and set
 * through the same code as a file value. */
static hs_status apply_override(hs_cfg_ctx *ctx, hs_cfg_state *s, int k, hs_err *err) {
    hs_status st = HS_OK;
    struct fy_document *doc = NULL;
    char *path = NULL, *seg[4], expected[512], what[160];
    hs_cfg_loc here = {HS_CFG_SRC_OVERRIDE, 0, 0, k, 0, 0};
    const char *kv = ctx->overrides[k], *eq = strchr(kv, '=');
    ctx->cur = here;
    if (!eq || eq == kv) HS_CFG_FAIL(ctx, here, err, HS_ERR_INVALID_ARG, "expected KEY=VALUE");
    if (!(path = strndup(kv, (size_t)(eq - kv)))) HS_FAIL(err, HS_ERR_OOM, "out of memory");
    struct fy_node *node = NULL;
    const char *v = eq + 1;
    while (isspace((unsigned char)*v)) v++;
    if (*v) { /* empty = null */
        int before = diag_count(ctx->diag);
        struct fy_parse_cfg pc = parse_cfg(ctx->diag);
        if (!(doc = fy_document_build_from_string(&pc, eq + 1, strlen(eq + 1)))) {
            struct fy_diag_error *e = diag_nth(ctx->diag, before);
            HS_CFG_FAIL(ctx, here, err, HS_ERR_INVALID_ARG, "malformed value: %s",
                        e ? e->msg : "not YAML");
        }
        node = fy_document_root(doc);
    }
    int nseg = 0;
    for (char *save = NULL, *t = strtok_r(path, ".", &save); t; t = strtok_r(NULL, ".", &save))
        seg[nseg < 4 ? nseg++ : 3] = t;
    const hs_cfg_key *table = NULL;
    int n = 0, e = -1;
    void *base = NULL;
    hs_cfg_loc *locs = NULL;
    if (nseg == 1) {
        table = hs_cfg_top_keys, n = HS_TK_COUNT, base = s->c, locs = s->top;
        snprintf(what, sizeof what, "%s", seg[0]);
    } else if (nseg == 2 && !strcmp(seg[0], "dataset")) {
        table = hs_cfg_dataset_keys, n = HS_DK_COUNT, base = &s->c->dataset, locs = s->ds;
        snprintf(what, sizeof what, "dataset");
    } else if (nseg == 3 && !strcmp(seg[0], "experiments")) {
        if ((e = find_experiment(s->c, seg[1])) < 0)
            HS_CFG_FAIL(ctx, here, err, HS_ERR_INVALID_ARG, "no experiment %s%s%s (there are %d)",
                        isdigit((unsigned char)seg[1][0]) ? "" : "named '", seg[1],
                        isdigit((unsigned char)seg[1][0]) ? "" : "'", s->c->n_experiments);
        table = hs_cfg_exp_keys, n = HS_EK_COUNT, base = &s->c->experiments[e], locs = s->exp[e];
        snprintf(what, sizeof what, "experiments[%d]", e);
    } else {
        HS_CFG_FAIL(ctx, here, err, HS_ERR_INVALID_ARG,
                    "unknown key path '%.*s' (expected KEY, dataset.KEY, experiments.INDEX.KEY or "
                    "experiments.NAME.KEY)",
                    (int)(eq - kv), kv);
    }
    const char *key = seg[nseg - 1];
    int i = hs_cfg_key_find(table, n, key);
    if (i < 0) {
        hs_cfg_key_list(table, n, 0, expected, sizeof expected);
        HS_CFG_FAIL(ctx, here, err, HS_ERR_INVALID_ARG,
                    "unknown key '%s'%s%s (expected one of: %s)", key, nseg > 1 ? " in " : "",
                    nseg > 1 ? what : "", expected);
    }
    if (table[i].kind == HS_CFG_V_SECTION)
        HS_CFG_FAIL(ctx, here, err, HS_ERR_INVALID_ARG,
                    "cannot replace the whole %s section; set one of its keys (%s)", key,
                    i == HS_TK_DATASET ? "dataset.n=100" : "experiments.0.metric=kl");
    if (nseg > 1) snprintf(what + strlen(what), sizeof what - strlen(what), ".%s", key);
    HS_CHECK(hs_cfg_set_value(ctx, &table[i], base, node, here, what, err));
    locs[i] = hs_cfg_is_null(node) ? (hs_cfg_loc){HS_CFG_SRC_NONE, 0, 0, 0, 0, 0} : here;
exit:
    free(path);
    if (doc) fy_document_destroy(doc);
    return st;
}

/* text NULL: read the file at path; else parse text, naming it path in messages. */
static hs_status load(const char *path, const char *text, const char *const *overrides, int n_overrides,
                      hs_config **out, hs_err *err) {
    hs_status st = HS_OK;
    hs_config *c = NULL;
    struct fy_diag *diag = NULL;
    struct fy_document *doc = NULL;
    hs_cfg_state s;
    memset(&s, 0, sizeof s);
    if (out) *out = NULL;
    if (!path || !out || n_overrides < 0 || (n_overrides > 0 && !overrides))
        HS_FAIL(err, HS_ERR_INVALID_ARG, "hs_config_load: bad arguments");
    if (!text) {
        FILE *f = fopen(path, "r");
        if (!f) HS_FAIL(err, HS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        fclose(f);
    }
    hs_cfg_ctx ctx = {path, overrides, NULL, {HS_CFG_SRC_FILE, 1, 1, 0, 0, 0}};
    if (!(ctx.diag = diag = diag_create())) HS_FAIL(err, HS_ERR_OOM, "out of memory");
    if (!(c = calloc(1, sizeof *c))) HS_FAIL(err, HS_ERR_OOM, "out of memory");
    *c = hs_config_default_params();
    s.c = c;
    struct fy_parse_cfg pc = parse_cfg(diag);
    doc = text ? fy_document_build_from_string(&pc, text, strlen(text)) : fy_document_build_from_file(&pc, path);
    struct fy_diag_error *e = doc ? NULL : diag_nth(diag, 0);
    if (e) HS_FAIL(err, HS_ERR_FORMAT, "%s:%d:%d: %s", path, e->line, e->column, e->msg);
    struct fy_node *root = doc ? fy_document_root(doc) : NULL; /* no error, no doc: empty file */
    s.root = hs_cfg_node_loc(&ctx, root, ctx.cur);
    if (!root || !fy_node_is_mapping(root))
        HS_CFG_FAIL(&ctx, s.root, err, HS_ERR_FORMAT,
                    "expected a mapping with model, output, dataset and experiments");
    HS_CHECK(read_map(&ctx, &s, root, hs_cfg_top_keys, HS_TK_COUNT, c, s.top, s.root, "", err));
    for (int k = 0; k < n_overrides; k++) HS_CHECK(apply_override(&ctx, &s, k, err));
    ctx.cur = (hs_cfg_loc){HS_CFG_SRC_FILE, 1, 1, 0, 0, 0};
    HS_CHECK(hs_cfg_resolve(&ctx, &s, err));
    *out = c;
    c = NULL;
exit:
    hs_config_free(c);
    free(s.exp_map);
    free(s.exp);
    if (doc) fy_document_destroy(doc);
    if (diag) fy_diag_destroy(diag);
    return st;
}

hs_status hs_config_load(const char *path, const char *const *overrides, int n_overrides,
                         hs_config **out, hs_err *err) {
    return load(path, NULL, overrides, n_overrides, out, err);
}

hs_status hs_config_load_text(const char *text, const char *name, hs_config **out, hs_err *err) {
    if (!text || !name) {
        if (out) *out = NULL;
        return hs_err_set(err, HS_ERR_INVALID_ARG, "hs_config_load_text: bad arguments");
    }
    return load(name, text, NULL, 0, out, err);
}
