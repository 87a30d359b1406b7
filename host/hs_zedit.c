/* hs_zedit: folds a layer's z edits into the attention op's tables (see the
 * header for the rules). */
#include "hs_zedit.h"

#include <stdlib.h>
#include <string.h>

hs_status hs_zedit_init(hs_zedit *z, int B, int T, int H, int dh, const hs_z_edit *edits, int n_edits, hs_err *err) {
    memset(z, 0, sizeof *z);
    z->B = B, z->T = T, z->H = H, z->dh = dh;
    z->zero_vec = -1;
    const int64_t cells = (int64_t)B * T * H;
    int64_t need = 0; /* vectors staged by the whole list: a bound for any one layer */
    int post = 0;
    for (int i = 0; i < n_edits; i++) {
        if (edits[i].mode == HS_EDIT_SET || (edits[i].mode == HS_EDIT_ZERO && edits[i].pos >= 0))
            need += edits[i].pos < 0 ? T : 1;
        post |= edits[i].mode == HS_EDIT_SCALE && edits[i].pos >= 0;
    }
    /* a SET that hits a staged vector overwrites it, so no layer stages more
     * than one vector per cell plus the shared zero vector */
    z->cap_vec = need ? (need < cells ? need : cells) + 1 : 0;
    z->hscale = malloc((size_t)B * H * sizeof(float));
    z->uni = malloc((size_t)B * H);
    if (z->cap_vec) {
        z->set_idx = malloc((size_t)cells * sizeof(int32_t));
        z->vec = malloc((size_t)z->cap_vec * dh * sizeof(float));
    }
    if (post) z->post = malloc((size_t)cells * sizeof(float));
    if (!z->hscale || !z->uni || (z->cap_vec && (!z->set_idx || !z->vec)) || (post && !z->post)) {
        hs_zedit_free(z);
        return hs_err_set(err, HS_ERR_OOM, "forward: out of memory for the edit tables");
    }
    return HS_OK;
}

void hs_zedit_free(hs_zedit *z) {
    free(z->hscale), free(z->uni), free(z->set_idx), free(z->vec), free(z->post);
    memset(z, 0, sizeof *z);
}

static int64_t cell(const hs_zedit *z, int row, int t, int head) { return ((int64_t)row * z->T + t) * z->H + head; }

/* Gives a cell the value src (NULL = zeros). A cell that has its own staged
 * vector keeps it and it is overwritten (so a layer stages at most one vector
 * per cell); the others get a new one, or the shared zero vector, which is
 * never written again. */
static void stage(hs_zedit *z, int64_t c, const float *src) {
    int32_t i = z->set_idx[c];
    const int own = i >= 0 && i != z->zero_vec;
    if (!src && own) {
        memset(z->vec + (int64_t)i * z->dh, 0, (size_t)z->dh * sizeof(float));
        return;
    }
    if (!src) {
        if (z->zero_vec < 0) {
            z->zero_vec = (int32_t)z->n_vec++;
            memset(z->vec + (int64_t)z->zero_vec * z->dh, 0, (size_t)z->dh * sizeof(float));
        }
        z->set_idx[c] = z->zero_vec;
        return;
    }
    if (!own) z->set_idx[c] = i = (int32_t)z->n_vec++;
    memcpy(z->vec + (int64_t)i * z->dh, src, (size_t)z->dh * sizeof(float));
}

/* A ZERO/SCALE by s of one cell: scales its staged vector, or (computed z)
 * returns 0 so the caller records a multiplier. */
static int scale_staged(hs_zedit *z, int64_t c, float s) {
    const int32_t i = z->use_set ? z->set_idx[c] : -1;
    if (i < 0) return 0;
    if (i != z->zero_vec) {
        if (s == 0.0f) return stage(z, c, NULL), 1;
        float *v = z->vec + (int64_t)i * z->dh;
        for (int j = 0; j < z->dh; j++) v[j] *= s;
    }
    return 1;
}

void hs_zedit_build(hs_zedit *z, const float *head_scale_l, const hs_z_edit *edits, int n_edits, int layer) {
    const int BH = z->B * z->H, T = z->T;
    const int64_t cells = (int64_t)BH * T;
    z->use_scale = head_scale_l != NULL;
    z->use_uni = z->use_set = z->use_post = 0;
    z->n_vec = 0;
    z->zero_vec = -1;
    for (int i = 0; i < BH; i++) z->hscale[i] = head_scale_l ? head_scale_l[i] : 1.0f, z->uni[i] = 0;
    for (int i = 0; i < n_edits; i++) {
        const hs_z_edit *e = &edits[i];
        if (e->layer != layer || e->mode == HS_EDIT_UNIFORM || e->mode == HS_EDIT_SCALE) continue;
        if (e->mode == HS_EDIT_SET || e->pos >= 0) { /* something to stage: clear the table once */
            for (int64_t c = 0; c < cells; c++) z->set_idx[c] = -1;
            z->use_set = 1;
            break;
        }
    }
    for (int i = 0; i < n_edits; i++) {
        const hs_z_edit *e = &edits[i];
        if (e->layer != layer) continue;
        const int bh = e->row * z->H + e->head;
        const int t0 = e->pos < 0 ? 0 : e->pos, t1 = e->pos < 0 ? T : e->pos + 1;
        if (e->mode == HS_EDIT_UNIFORM) {
            z->uni[bh] = 1, z->use_uni = 1;
        } else if (e->mode == HS_EDIT_SET) {
            for (int t = t0; t < t1; t++) stage(z, cell(z, e->row, t, e->head), e->src + (int64_t)(t - t0) * z->dh);
        } else if (e->pos < 0) { /* all positions: the computed z's multiplier, and any staged vector */
            const float s = e->mode == HS_EDIT_ZERO ? 0.0f : e->scale;
            z->hscale[bh] *= s, z->use_scale = 1;
            if (z->use_set)
                for (int t = 0; t < T; t++) scale_staged(z, cell(z, e->row, t, e->head), s);
        } else if (e->mode == HS_EDIT_ZERO) {
            stage(z, cell(z, e->row, e->pos, e->head), NULL);
        } else if (!scale_staged(z, cell(z, e->row, e->pos, e->head), e->scale)) {
            if (!z->use_post) /* z->post was allocated by init, which saw this edit */
                for (int64_t c = 0; c < cells; c++) z->post[c] = 1.0f;
            z->post[cell(z, e->row, e->pos, e->head)] *= e->scale;
            z->use_post = 1;
        }
    }
}
