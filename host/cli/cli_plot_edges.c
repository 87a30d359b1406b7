/* The k strongest edges of an edge attribution [upstream, downstream] as an SVG graph: nodes in
 * rows by depth (the input at the bottom, each layer's heads then its MLP, the logits on top),
 * an edge's width by |score|, its colour by sign, its dash by the input it enters (q solid, k
 * dashed, v dotted). A head's q, k and v inputs are the head itself; with grouped keys and values
 * a KV head (L3KV1) is a node of its own. Plain SVG, like the heatmaps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define NODE_NAME 32

typedef struct {
    char name[NODE_NAME];
    int row, col;
} node;

typedef struct {
    int u, v;    /* node indices */
    char input;  /* 'q', 'k', 'v', or 0 (an MLP's input, the logits) */
    float score;
} edge;

/* The graph node a node name belongs to (the name without its <q>/<k>/<v>) and its row: input 0,
 * layer l's heads 1 + 2l, its MLP 2 + 2l, the logits -1 (placed on top once the rows are known). */
static int parse(const char *full, char *name, char *input) {
    const char *lt = strchr(full, '<');
    const size_t n = lt ? (size_t)(lt - full) : strlen(full);
    snprintf(name, NODE_NAME, "%.*s", (int)(n < NODE_NAME ? n : NODE_NAME - 1), full);
    *input = lt ? lt[1] : 0;
    int l;
    if (!strcmp(name, "logits")) return -1;
    if (sscanf(name, "MLP%d", &l) == 1) return 2 + 2 * l;
    if (sscanf(name, "L%d", &l) == 1) return 1 + 2 * l;
    return 0; /* the input */
}

static int find_or_add(node *nodes, int *n, const char *name, int row) {
    for (int i = 0; i < *n; i++)
        if (!strcmp(nodes[i].name, name)) return i;
    snprintf(nodes[*n].name, NODE_NAME, "%s", name);
    nodes[*n].row = row, nodes[*n].col = 0;
    return (*n)++;
}

int hs_cli_plot_edges(FILE *o, const char *title, float *d, int64_t nu, int64_t nd, char **up, char **down, int k) {
    edge *es = malloc((size_t)k * sizeof *es);
    node *nodes = malloc((size_t)2 * k * sizeof *nodes);
    if (!es || !nodes) {
        free(es), free(nodes);
        return 0;
    }
    int ne = 0, nn = 0, rows = 1;
    double mx = 0;
    for (; ne < k; ne++) { /* the k largest |score|; NaN (no edge) and those taken skipped */
        int64_t best = -1;
        for (int64_t i = 0; i < nu * nd; i++)
            if (d[i] == d[i] && (best < 0 || fabsf(d[i]) > fabsf(d[best]))) best = i;
        if (best < 0) break;
        char name[NODE_NAME], in;
        const int ru = parse(up[best / nd], name, &in);
        es[ne].u = find_or_add(nodes, &nn, name, ru);
        const int rv = parse(down[best % nd], name, &es[ne].input);
        es[ne].v = find_or_add(nodes, &nn, name, rv);
        es[ne].score = d[best];
        rows = ru + 1 > rows ? ru + 1 : rows, rows = rv + 1 > rows ? rv + 1 : rows;
        mx = fmax(mx, fabs((double)d[best]));
        d[best] = NAN;
    }
    int per_row_max = 1;
    for (int i = 0; i < nn; i++) {
        if (nodes[i].row < 0) nodes[i].row = rows; /* the logits above everything */
        int c = 0;
        for (int j = 0; j < i; j++) c += nodes[j].row == nodes[i].row;
        nodes[i].col = c;
        per_row_max = c + 1 > per_row_max ? c + 1 : per_row_max;
    }
    rows += 1;
    /* only the rows that hold a node take space */
    int *y_of = calloc((size_t)rows, sizeof *y_of), used = 0;
    double *x_off = calloc((size_t)rows, sizeof *x_off);
    if (!y_of || !x_off) {
        free(es), free(nodes), free(y_of), free(x_off);
        return 0;
    }
    for (int r = rows - 1; r >= 0; r--) { /* each row centred, every other row shifted, so that edges
                                             between rows far apart do not run through the rows between */
        int count = 0;
        for (int i = 0; i < nn; i++) count += nodes[i].row == r;
        y_of[r] = count ? used++ : -1;
        x_off[r] = (per_row_max - count) / 2.0 + (count && used % 2 ? 0.45 : 0.0);
    }
    const int nw = 76, nh = 22, gx = 28, gy = 64, x0 = 30, y0 = 60;
    const int W = x0 * 2 + (per_row_max + 1) * (nw + gx), Ht = y0 + used * gy + 70;
    fprintf(o, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif' font-size='11'>\n",
            W, Ht);
    fprintf(o, "<rect width='100%%' height='100%%' fill='white'/>\n<text x='%d' y='22' font-size='14'>%s</text>\n", x0,
            title);
    fprintf(o, "<text x='%d' y='40'>the %d edges of largest |score|; red: score &lt; 0 (corrupting the edge lowers the "
               "metric), blue: &gt; 0; q solid, k dashed, v dotted</text>\n",
            x0, ne);
    for (int i = ne - 1; i >= 0; i--) { /* the strongest drawn last, on top */
        const node *a = &nodes[es[i].u], *b = &nodes[es[i].v];
        const double ax = x0 + (a->col + x_off[a->row]) * (nw + gx) + nw / 2.0, ay = y0 + y_of[a->row] * gy;
        const double bx = x0 + (b->col + x_off[b->row]) * (nw + gx) + nw / 2.0, by = y0 + y_of[b->row] * gy + nh;
        const double w = 0.8 + 5.0 * fabs((double)es[i].score) / (mx > 0 ? mx : 1);
        const char *dash = es[i].input == 'k'   ? " stroke-dasharray='6,3'"
                           : es[i].input == 'v' ? " stroke-dasharray='2,3'"
                                                : "";
        char in[16] = "";
        if (es[i].input) snprintf(in, sizeof in, "&lt;%c&gt;", es[i].input);
        fprintf(o,
                "<path d='M%.1f %.1f C%.1f %.1f %.1f %.1f %.1f %.1f' fill='none' stroke='%s' stroke-opacity='0.7' "
                "stroke-width='%.2f'%s><title>%s -&gt; %s%s: %.5g</title></path>\n",
                ax, ay, ax, (ay + by) / 2, bx, (ay + by) / 2, bx, by,
                es[i].score < 0 ? "rgb(200,40,40)" : "rgb(40,80,200)", w, dash, a->name, b->name, in,
                (double)es[i].score);
    }
    for (int i = 0; i < nn; i++) {
        const int x = (int)(x0 + (nodes[i].col + x_off[nodes[i].row]) * (nw + gx)), y = y0 + y_of[nodes[i].row] * gy;
        fprintf(o,
                "<rect x='%d' y='%d' width='%d' height='%d' rx='5' fill='rgb(245,245,240)' stroke='rgb(90,90,90)'/>"
                "<text x='%d' y='%d' text-anchor='middle'>%s</text>\n",
                x, y, nw, nh, x + nw / 2, y + 15, nodes[i].name);
    }
    fprintf(o, "</svg>\n");
    free(es), free(nodes), free(y_of), free(x_off);
    return ne;
}
