/* `headsweep top FILE --experiment NAME [--dataset D] [-k 10] [--reader LxHy]`: the k heads
 * with the largest values of a [layer, head] result, e.g. the strongest
 * induction heads or the heads whose ablation hurts most. For a
 * head_set_ablation: the heads of the top set and the metric with it
 * ablated against the random sets. For a composition score [layer, head,
 * reader_layer, reader_head]: the k strongest writer -> reader pairs (into
 * one reader head with --reader). For edge attribution [upstream,
 * downstream]: the k edges of largest |score|, by their nodes' names (only
 * those into or out of one node with --node NAME). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "headsweep/hs_h5.h"

/* The k largest writer -> reader pairs of d [writer layer, head, reader layer, head] (into reader
 * rl, rh only when rl >= 0); pairs whose reader is not later than the writer (0 by definition) are
 * not ranked. */
static int top_pairs(float *d, const hs_h5_shape *sh, const char *exp, const char *ds, int k, int rl, int rh) {
    const int64_t L1 = sh->dims[0], H = sh->dims[1], L2 = sh->dims[2], n = L1 * H * L2 * H;
    char msg[256];
    if (rl >= 0 && !hs_cli_reader_fits(sh, rl, rh, msg, sizeof msg)) {
        fprintf(stderr, "headsweep top: %s\n", msg);
        return 1;
    }
    printf("top %d writer -> reader pairs by %s/%s%s:\n", k, exp, ds, rl >= 0 ? " into the reader" : "");
    for (int r = 0; r < k; r++) {
        int64_t best = -1;
        for (int64_t i = 0; i < n; i++) {
            const int64_t l1 = i / (H * L2 * H), l2 = i / H % L2, h2 = i % H;
            if (l2 > l1 && d[i] == d[i] && (rl < 0 || (l2 == rl && h2 == rh)) && (best < 0 || d[i] > d[best]))
                best = i;
        }
        if (best < 0) break;
        printf("  %2d  L%lldH%lld -> L%lldH%lld %10.5f\n", r + 1, (long long)(best / (H * L2 * H)),
               (long long)(best / (L2 * H) % H), (long long)(best / H % L2), (long long)(best % H), (double)d[best]);
        d[best] = NAN;
    }
    return 0;
}

/* A circuit_faithfulness: each circuit's size, mean metric and faithfulness. */
static int top_faithfulness(hs_h5_group *g, const char *exp, hs_err *err) {
    float *m = NULL, *fa = NULL, *cl = NULL, *co = NULL;
    int32_t *sizes = NULL;
    char *metric = NULL;
    hs_h5_shape sh;
    int rc = 1;
    if (hs_h5_read_i32(g, "n_edges", &sizes, &sh, err) || hs_h5_read_f32(g, "metric_mean", &m, NULL, err) ||
        hs_h5_read_f32(g, "faithfulness", &fa, NULL, err) || hs_h5_read_f32(g, "metric_clean_mean", &cl, NULL, err) ||
        hs_h5_read_f32(g, "metric_corrupt_mean", &co, NULL, err) ||
        hs_h5_read_attr_str(g, NULL, "metric", &metric, err))
        goto done;
    printf("%s: %s with only the strongest edges intact (clean %.5f, corrupted %.5f)\n", exp, metric, cl[0], co[0]);
    printf("  %10s  %12s  %12s\n", "edges", metric, "faithfulness");
    for (int64_t i = 0; i < sh.dims[0]; i++) printf("  %10d  %12.5f  %12.4f\n", sizes[i], m[i], fa[i]);
    rc = 0;
done:
    free(m), free(fa), free(cl), free(co), free(sizes), free(metric);
    return rc;
}

/* The k edges of largest |score| of d [upstream, downstream] (NaN: no edge), named by the group's
 * upstream and downstream datasets; with node, only the edges into or out of it. */
static int top_edges(hs_h5_group *g, float *d, const hs_h5_shape *sh, const char *exp, const char *ds, int k,
                     const char *node, hs_err *err) {
    char **up = NULL, **down = NULL;
    int64_t nu = 0, nd = 0;
    if (hs_h5_read_str(g, "upstream", &up, &nu, err) || hs_h5_read_str(g, "downstream", &down, &nd, err) ||
        nu != sh->dims[0] || nd != sh->dims[1]) {
        if (!err->msg[0]) snprintf(err->msg, sizeof err->msg, "%s/%s: the node names do not fit its axes", exp, ds);
        hs_h5_names_free(up, nu), hs_h5_names_free(down, nd);
        return 1;
    }
    int found = !node;
    for (int64_t i = 0; node && i < nu + nd; i++) found |= !strcmp(i < nu ? up[i] : down[i - nu], node);
    if (!found) {
        snprintf(err->msg, sizeof err->msg, "%s/%s: no node '%s' (nodes are named like input, L3H5, MLP3, L3H5<q>, "
                 "logits: see its upstream and downstream datasets)", exp, ds, node);
        hs_h5_names_free(up, nu), hs_h5_names_free(down, nd);
        return 1;
    }
    printf("top %d edges by |%s/%s|%s%s:\n", k, exp, ds, node ? " at " : "", node ? node : "");
    for (int r = 0; r < k; r++) {
        int64_t best = -1;
        for (int64_t i = 0; i < nu * nd; i++)
            if (d[i] == d[i] && (!node || !strcmp(up[i / nd], node) || !strcmp(down[i % nd], node)) &&
                (best < 0 || fabsf(d[i]) > fabsf(d[best])))
                best = i;
        if (best < 0) break;
        printf("  %2d  %-10s -> %-12s %10.5f\n", r + 1, up[best / nd], down[best % nd], (double)d[best]);
        d[best] = NAN;
    }
    hs_h5_names_free(up, nu), hs_h5_names_free(down, nd);
    return 0;
}

int hs_cli_parse_head(const char *s, int *l, int *h) {
    char tail;
    return sscanf(s, "L%dH%d%c", l, h, &tail) == 2 && *l >= 0 && *h >= 0;
}

int hs_cli_is_composition(const hs_h5_shape *sh) { return sh->ndim == 4 && !strcmp(sh->dim_names[2], "reader_layer"); }

int hs_cli_reader_fits(const hs_h5_shape *sh, int rl, int rh, char *msg, size_t n) {
    if (rl < sh->dims[2] && rh < sh->dims[3]) return 1;
    snprintf(msg, n, "--reader L%dH%d is outside the model's %lld layers x %lld heads", rl, rh, (long long)sh->dims[2],
             (long long)sh->dims[3]);
    return 0;
}

int hs_cli_top(int argc, char **argv) {
    const char *file = NULL, *exp = NULL, *ds = NULL, *reader = NULL, *node = NULL;
    int k = 10, rl = -1, rh = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--experiment") && i + 1 < argc) exp = argv[++i];
        else if (!strcmp(argv[i], "--dataset") && i + 1 < argc) ds = argv[++i];
        else if (!strcmp(argv[i], "-k") && i + 1 < argc) k = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reader") && i + 1 < argc) reader = argv[++i];
        else if (!strcmp(argv[i], "--node") && i + 1 < argc) node = argv[++i];
        else if (argv[i][0] != '-' && !file) file = argv[i];
        else file = NULL, i = argc;
    }
    if (!file || !exp || k < 1 || (reader && !hs_cli_parse_head(reader, &rl, &rh))) {
        fprintf(stderr,
                "usage: headsweep top FILE --experiment NAME [--dataset D] [-k 10] [--reader LxHy] [--node NAME]\n");
        return 2;
    }
    hs_err err = {0};
    hs_h5 *f = NULL;
    hs_h5_group *g;
    float *d = NULL;
    char *type = NULL;
    hs_h5_shape sh;
    int rc = 1;
    if (hs_h5_open_read(file, &f, &err) || hs_h5_group_open(f, exp, &g, &err) ||
        hs_h5_read_attr_str(g, NULL, "type", &type, &err))
        goto fail;
    if (!strcmp(type, "head_set_ablation") && !ds) {
        double base, top, rmean = NAN, rstd = NAN;
        int64_t topk;
        char *metric = NULL;
        if (hs_h5_read_attr_f64(g, NULL, "metric_base", &base, &err) || hs_h5_read_attr_f64(g, NULL, "metric_top_k", &top, &err) ||
            hs_h5_read_attr_int(g, NULL, "top_k", &topk, &err) || hs_h5_read_attr_str(g, NULL, "metric", &metric, &err) ||
            hs_h5_read_f32(g, "sets", &d, &sh, &err))
            goto fail;
        hs_h5_read_attr_f64(g, NULL, "metric_random_mean", &rmean, NULL); /* absent with no random sets */
        hs_h5_read_attr_f64(g, NULL, "metric_random_std", &rstd, NULL);
        const int H = (int)sh.dims[2], n = (int)(sh.dims[1] * sh.dims[2]);
        printf("%s: the %lld top heads ablated together:", exp, (long long)topk);
        for (int i = 0; i < n; i++)
            if (d[i] != 0) printf(" L%dH%d", i / H, i % H);
        printf("\n  %s unablated          %10.5f\n  %s top %lld ablated      %10.5f\n", metric, base, metric,
               (long long)topk, top);
        if (rmean == rmean)
            printf("  %s random %lld ablated   %10.5f +- %.5f (%lld random sets)\n", metric, (long long)topk, rmean, rstd,
                   (long long)sh.dims[0] - 1);
        free(metric);
        rc = 0;
        goto done;
    }
    if (!strcmp(type, "circuit_faithfulness") && !ds) {
        rc = top_faithfulness(g, exp, &err);
        if (rc) goto fail;
        goto done;
    }
    if (!ds) /* the experiment's [layer, head] result: for the first two, what a pruning curve ranks by */
        ds = !strcmp(type, "head_ablation")              ? "delta_mean"
             : !strcmp(type, "head_importance")          ? "importance"
             : !strcmp(type, "direct_logit_attribution") ? "dla_mean"
             : !strcmp(type, "circuit_scores")           ? "copying"
             : !strcmp(type, "edge_attribution")         ? "edges"
                                                         : NULL;
    if (!ds) {
        snprintf(err.msg, sizeof err.msg, "%s: experiment '%s' (%s): name the result with --dataset", file, exp, type);
        goto fail;
    }
    if (hs_h5_read_f32(g, ds, &d, &sh, &err)) goto fail;
    const int edges = sh.ndim == 2 && !strcmp(sh.dim_names[0], "upstream");
    if (node && !edges) {
        snprintf(err.msg, sizeof err.msg, "%s: --node: %s/%s is not an edge attribution", file, exp, ds);
        goto fail;
    }
    if (hs_cli_is_composition(&sh)) {
        rc = top_pairs(d, &sh, exp, ds, k, rl, rh);
        goto done;
    }
    if (reader) {
        snprintf(err.msg, sizeof err.msg, "%s: --reader: %s/%s is not a composition score", file, exp, ds);
        goto fail;
    }
    if (edges) {
        if ((rc = top_edges(g, d, &sh, exp, ds, k, node, &err))) goto fail;
        goto done;
    }
    if (sh.ndim != 2 || strcmp(sh.dim_names[0], "layer")) {
        snprintf(err.msg, sizeof err.msg, "%s: %s/%s is not a [layer, head] result", file, exp, ds);
        goto fail;
    }
    int H = (int)sh.dims[1], n = (int)(sh.dims[0] * sh.dims[1]);
    if (k > n) k = n;
    printf("top %d heads by %s/%s:\n", k, exp, ds);
    for (int r = 0; r < k; r++) { /* partial selection; k is small */
        int best = -1;
        for (int i = 0; i < n; i++)
            if (d[i] == d[i] && (best < 0 || d[i] > d[best])) best = i;
        if (best < 0) break;
        printf("  %2d  L%-3d H%-3d %10.5f\n", r + 1, best / H, best % H, (double)d[best]);
        d[best] = NAN; /* skipped from now on */
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "headsweep top: %s\n", err.msg);
done:
    free(d);
    free(type);
    if (f) hs_h5_close(f);
    return rc;
}
