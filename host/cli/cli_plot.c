/* `headsweep plot FILE --experiment NAME [--dataset D] [--reader LxHy] [-k 30] [-o OUT.svg]`:
 * draws a [layer, head] result as an SVG heatmap (diverging colours for signed data), a
 * composition score's writers into one reader head likewise, a 1-D [step] result (pruning
 * curves) as a line plot, or an edge attribution's k strongest edges as a graph
 * (cli_plot_edges.c). Plain SVG, no plotting library: it opens in any browser. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "headsweep/hs_h5.h"

/* Sequential: white -> dark blue; diverging: blue -> white -> red. */
static void colour(double v, double lo, double hi, int diverging, char *out, size_t n) {
    double r, g, b;
    if (diverging) {
        double m = fmax(fabs(lo), fabs(hi)), t = m > 0 ? v / m : 0; /* -1..1 */
        if (t < 0) r = 1 + t, g = 1 + 0.6 * t, b = 1;
        else r = 1, g = 1 - 0.8 * t, b = 1 - t;
    } else {
        double t = hi > lo ? (v - lo) / (hi - lo) : 0;
        r = 1 - 0.9 * t, g = 1 - 0.7 * t, b = 1 - 0.35 * t;
    }
    snprintf(out, n, "rgb(%d,%d,%d)", (int)(255 * fmin(1, fmax(0, r))), (int)(255 * fmin(1, fmax(0, g))),
             (int)(255 * fmin(1, fmax(0, b))));
}

static void heatmap(FILE *o, const char *title, const float *d, int L, int H) {
    double lo = d[0], hi = d[0];
    for (int i = 1; i < L * H; i++) lo = fmin(lo, d[i]), hi = fmax(hi, d[i]);
    int diverging = lo < 0 && hi > 0;
    const int cw = H > 24 ? 14 : 28, ch = L > 40 ? 10 : 18, x0 = 60, y0 = 50;
    const int W = x0 + H * cw + 120, Ht = y0 + L * ch + 60;
    char c[32];
    fprintf(o, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif' font-size='11'>\n",
            W, Ht);
    fprintf(o, "<rect width='100%%' height='100%%' fill='white'/>\n<text x='%d' y='22' font-size='14'>%s</text>\n", x0,
            title);
    for (int l = 0; l < L; l++) {
        if (L <= 40 || l % 5 == 0) fprintf(o, "<text x='%d' y='%d' text-anchor='end'>%d</text>\n", x0 - 6, y0 + l * ch + ch - 3, l);
        for (int h = 0; h < H; h++) {
            colour(d[l * H + h], lo, hi, diverging, c, sizeof c);
            fprintf(o, "<rect x='%d' y='%d' width='%d' height='%d' fill='%s'><title>L%d H%d: %.5g</title></rect>\n",
                    x0 + h * cw, y0 + l * ch, cw, ch, c, l, h, (double)d[l * H + h]);
        }
    }
    for (int h = 0; h < H; h++)
        if (H <= 24 || h % 4 == 0)
            fprintf(o, "<text x='%d' y='%d' text-anchor='middle'>%d</text>\n", x0 + h * cw + cw / 2, y0 + L * ch + 14, h);
    fprintf(o, "<text x='%d' y='%d' text-anchor='middle'>head</text>\n", x0 + H * cw / 2, y0 + L * ch + 32);
    fprintf(o, "<text x='14' y='%d' transform='rotate(-90 14 %d)' text-anchor='middle'>layer</text>\n", y0 + L * ch / 2,
            y0 + L * ch / 2);
    const int bx = x0 + H * cw + 20, bh = L * ch; /* colour bar */
    for (int k = 0; k < 50; k++) {
        double v = hi - (hi - lo) * k / 49.0;
        colour(v, lo, hi, diverging, c, sizeof c);
        fprintf(o, "<rect x='%d' y='%d' width='14' height='%d' fill='%s'/>\n", bx, y0 + bh * k / 50, bh / 50 + 1, c);
    }
    fprintf(o, "<text x='%d' y='%d'>%.3g</text>\n<text x='%d' y='%d'>%.3g</text>\n", bx + 18, y0 + 10, hi, bx + 18,
            y0 + bh, lo);
    fprintf(o, "</svg>\n");
}

/* y against x: the pruned fraction (0 to 1), or with logx a count drawn on
 * log10(1 + x) up to its largest. */
static void lineplot(FILE *o, const char *title, const float *x_in, const float *y, int n, int logx) {
    double lo = y[0], hi = y[0], xmax = 0;
    for (int i = 1; i < n; i++) lo = fmin(lo, y[i]), hi = fmax(hi, y[i]);
    if (hi == lo) hi = lo + 1;
    float *x = malloc((size_t)n * sizeof *x);
    if (!x) return;
    for (int i = 0; i < n; i++) xmax = fmax(xmax, logx ? log10(1.0 + x_in[i]) : 1.0);
    for (int i = 0; i < n; i++) x[i] = (float)((logx ? log10(1.0 + x_in[i]) : x_in[i]) / (xmax > 0 ? xmax : 1));
    const int x0 = 70, y0 = 40, w = 480, h = 300;
    fprintf(o, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif' font-size='11'>\n",
            x0 + w + 30, y0 + h + 60);
    fprintf(o, "<rect width='100%%' height='100%%' fill='white'/>\n<text x='%d' y='22' font-size='14'>%s</text>\n", x0,
            title);
    fprintf(o, "<rect x='%d' y='%d' width='%d' height='%d' fill='none' stroke='#888'/>\n<polyline fill='none' "
               "stroke='#1f5fa8' stroke-width='2' points='", x0, y0, w, h);
    for (int i = 0; i < n; i++) fprintf(o, "%.1f,%.1f ", x0 + w * x[i], y0 + h * (hi - y[i]) / (hi - lo));
    fprintf(o, "'/>\n");
    for (int i = 0; i < n; i++)
        fprintf(o, "<circle cx='%.1f' cy='%.1f' r='3' fill='#1f5fa8'><title>%.6g: %.5g</title></circle>\n",
                x0 + w * x[i], y0 + h * (hi - y[i]) / (hi - lo), (double)x_in[i], (double)y[i]);
    fprintf(o, "<text x='%d' y='%d' text-anchor='end'>%.4g</text><text x='%d' y='%d' text-anchor='end'>%.4g</text>\n",
            x0 - 6, y0 + 10, hi, x0 - 6, y0 + h, lo);
    if (logx)
        fprintf(o,
                "<text x='%d' y='%d' text-anchor='middle'>edges in the circuit (log scale, 0 to %.0f)</text>\n</svg>\n",
                x0 + w / 2, y0 + h + 30, pow(10.0, xmax) - 1);
    else
        fprintf(o, "<text x='%d' y='%d' text-anchor='middle'>fraction of heads pruned (0 to 1)</text>\n</svg>\n",
                x0 + w / 2, y0 + h + 30);
    free(x);
}

int hs_cli_plot(int argc, char **argv) {
    const char *file = NULL, *exp = NULL, *dsname = NULL, *outp = NULL, *reader = NULL;
    int rl = -1, rh = -1, k = 30;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--experiment") && i + 1 < argc) exp = argv[++i];
        else if (!strcmp(argv[i], "--reader") && i + 1 < argc) reader = argv[++i];
        else if (!strcmp(argv[i], "--dataset") && i + 1 < argc) dsname = argv[++i];
        else if (!strcmp(argv[i], "-o") && i + 1 < argc) outp = argv[++i];
        else if (!strcmp(argv[i], "-k") && i + 1 < argc) k = atoi(argv[++i]);
        else if (argv[i][0] != '-' && !file) file = argv[i];
        else file = NULL, i = argc;
    }
    if (!file || !exp || k < 1 || (reader && !hs_cli_parse_head(reader, &rl, &rh))) {
        fprintf(stderr,
                "usage: headsweep plot FILE --experiment NAME [--dataset D] [--reader LxHy] [-k 30] [-o OUT.svg]\n");
        return 2;
    }
    hs_err err = {0};
    hs_h5 *f = NULL;
    hs_h5_group *g;
    float *d = NULL, *x = NULL;
    int32_t *sizes = NULL; /* circuit_faithfulness: the x axis */
    char *type = NULL, **names = NULL, title[512], outbuf[1024];
    int64_t nn = 0;
    int rc = 1;
    hs_h5_shape sh;
    if (hs_h5_open_read(file, &f, &err) || hs_h5_group_open(f, exp, &g, &err)) goto fail;
    if (hs_h5_read_attr_str(g, NULL, "type", &type, &err)) goto fail;
    if (!dsname) { /* the experiment's headline result */
        if (!strcmp(type, "head_ablation")) dsname = "delta_mean";
        else if (!strcmp(type, "direct_logit_attribution")) dsname = "dla_mean";
        else if (!strcmp(type, "pruning_curve")) dsname = "metric";
        else if (!strcmp(type, "edge_attribution")) dsname = "edges";
        else if (!strcmp(type, "circuit_faithfulness")) dsname = "faithfulness";
        else {
            if (hs_h5_list_datasets(g, &names, &nn, &err)) goto fail;
            for (int64_t i = 0; i < nn && !dsname; i++) {
                hs_h5_shape s2;
                if (!hs_h5_read_shape(g, names[i], &s2, &err) && s2.ndim == 2 && !strcmp(s2.dim_names[0], "layer"))
                    dsname = names[i];
            }
            if (!dsname) {
                snprintf(err.msg, sizeof err.msg, "%s: experiment '%s' has no [layer, head] dataset", file, exp);
                goto fail;
            }
        }
    }
    if (hs_h5_read_f32(g, dsname, &d, &sh, &err)) goto fail;
    snprintf(title, sizeof title, "%s / %s (%s)", exp, dsname, type);
    if (reader) { /* writers [layer, head] into one reader head of a composition score */
        if (!hs_cli_is_composition(&sh)) {
            snprintf(err.msg, sizeof err.msg, "%s: --reader: %s/%s is not a composition score", file, exp, dsname);
            goto fail;
        }
        if (!hs_cli_reader_fits(&sh, rl, rh, err.msg, sizeof err.msg)) goto fail;
        const int64_t L1 = sh.dims[0], H = sh.dims[1], L2 = sh.dims[2];
        for (int64_t i = 0; i < L1 * H; i++) d[i] = d[(i * L2 + rl) * H + rh]; /* in place: i <= its source */
        sh.ndim = 2;
        snprintf(title, sizeof title, "%s / %s into L%dH%d (%s)", exp, dsname, rl, rh, type);
    }
    if (!outp) {
        if (reader) snprintf(outbuf, sizeof outbuf, "%s-%s-L%dH%d.svg", exp, dsname, rl, rh);
        else snprintf(outbuf, sizeof outbuf, "%s-%s.svg", exp, dsname);
        outp = outbuf;
    }
    FILE *o = fopen(outp, "w");
    if (!o) {
        snprintf(err.msg, sizeof err.msg, "%.900s: cannot write", outp);
        goto fail;
    }
    if (sh.ndim == 2 && !strcmp(sh.dim_names[0], "upstream")) { /* edges: the node names from the group */
        char **up = NULL, **down = NULL;
        int64_t nu = 0, nd = 0;
        int drawn = 0;
        if (!hs_h5_read_str(g, "upstream", &up, &nu, &err) && !hs_h5_read_str(g, "downstream", &down, &nd, &err) &&
            nu == sh.dims[0] && nd == sh.dims[1])
            drawn = hs_cli_plot_edges(o, title, d, nu, nd, up, down, k);
        hs_h5_names_free(up, nu), hs_h5_names_free(down, nd);
        if (!drawn) {
            fclose(o);
            remove(outp);
            if (!err.msg[0]) snprintf(err.msg, sizeof err.msg, "%s: %s/%s has no edge to draw", file, exp, dsname);
            goto fail;
        }
    } else if (sh.ndim == 2) {
        heatmap(o, title, d, (int)sh.dims[0], (int)sh.dims[1]);
    } else if (sh.ndim == 1 && !strcmp(sh.dim_names[0], "step") && !hs_h5_read_f32(g, "step", &x, NULL, &err)) {
        lineplot(o, title, x, d, (int)sh.dims[0], 0);
    } else if (sh.ndim == 1 && !strcmp(sh.dim_names[0], "n_edges") &&
               !hs_h5_read_i32(g, "n_edges", &sizes, NULL, &err) && (x = malloc((size_t)sh.dims[0] * sizeof *x))) {
        for (int64_t i = 0; i < sh.dims[0]; i++) x[i] = (float)sizes[i];
        lineplot(o, title, x, d, (int)sh.dims[0], 1);
    } else {
        fclose(o);
        remove(outp);
        snprintf(err.msg, sizeof err.msg, "%s: dataset '%s' is neither [layer, head] nor [step] nor [n_edges]", file,
                 dsname);
        goto fail;
    }
    if (fclose(o) != 0) {
        snprintf(err.msg, sizeof err.msg, "%.900s: write failed", outp);
        goto fail;
    }
    printf("%s\n", outp);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "headsweep plot: %s\n", err.msg);
done:
    free(d);
    free(x);
    free(sizes);
    free(type);
    if (names) hs_h5_names_free(names, nn);
    if (f) hs_h5_close(f);
    return rc;
}
