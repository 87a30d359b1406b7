/* hs_head_sets: one forward per batch of prompts with every head of a set
 * edited in each row (the same edit list the sweeps use), through the
 * per-prompt metric loop of hs_batches.c. */
#include "headsweep/hs_head_sets.h"

#include <stdlib.h>
#include <string.h>

#include "hs_batches.h"
#include "hs_metric.h"

hs_head_set_params hs_head_set_default_params(void) {
    hs_head_set_params p;
    memset(&p, 0, sizeof p);
    p.metric = HS_METRIC_LOSS;
    p.mode = HS_ABLATE_ZERO;
    p.batch_rows = 16;
    return p;
}

/* Every head of the set edited in every row of a batch. */
typedef struct {
    const hs_head_set_params *p;
    const uint8_t *set;
    int L, H, T, d_head;
    hs_z_edit *edits; /* [batch_rows * heads in the set] */
} set_edits;

static hs_status build_edits(void *user, int p0, int B, hs_forward_params *fp, hs_err *err) {
    const set_edits *u = user;
    const hs_head_set_params *p = u->p;
    (void)err;
    int ne = 0;
    for (int r = 0; r < B; r++)
        for (int k = 0; u->set && k < u->L * u->H; k++) {
            if (!u->set[k]) continue;
            hs_z_edit e = {.row = r, .layer = k / u->H, .head = k % u->H, .pos = -1, .scale = p->scale};
            e.mode = p->mode == HS_ABLATE_ZERO    ? HS_EDIT_ZERO
                     : p->mode == HS_ABLATE_SCALE ? HS_EDIT_SCALE
                     : p->mode == HS_ABLATE_MEAN  ? HS_EDIT_SET
                                                  : HS_EDIT_UNIFORM;
            if (p->mode == HS_ABLATE_MEAN) {
                const int64_t tm = p->mean_template ? p->mean_template[p0 + r] : 0; /* the row's template mean */
                e.src = p->mean_z + (tm * u->L * u->H + k) * u->T * u->d_head;
            }
            u->edits[ne++] = e;
        }
    fp->edits = u->edits;
    fp->n_edits = ne;
    return HS_OK;
}

hs_status hs_head_set_metric(hs_session *s, const hs_model *m, const hs_prompts *pr, const hs_head_set_params *p,
                             const uint8_t *set, float *out, hs_err *err) {
    hs_status st = HS_OK;
    const hs_model_config *c = hs_model_get_config(m);
    const int L = c->n_layers, H = c->n_heads, R = p->batch_rows;
    if (R < 1 || p->mode < 0 || p->mode >= HS_ABLATE_COUNT || p->mode == HS_ABLATE_RESAMPLE ||
        (p->mode == HS_ABLATE_MEAN && !p->mean_z) || (p->second_half && p->metric != HS_METRIC_LOSS))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "head sets: bad parameters (batch_rows, mode, mean_z or second_half)");
    for (int i = 0; p->mean_template && i < pr->N; i++)
        if (p->mean_template[i] < 0 || p->mean_template[i] >= p->n_templates)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "head sets: prompt %d has template %d outside [0, %d)", i,
                              p->mean_template[i], p->n_templates);
    if ((st = hs_metric_check(c, pr, p->metric, err))) return hs_err_prefix(err, "head sets");
    for (int i = 0; p->second_half && i < pr->N; i++)
        if (pr->lengths[i] < 5 || pr->lengths[i] % 2 == 0)
            return hs_err_set(err, HS_ERR_INVALID_ARG,
                              "head sets: second_half needs [BOS] x x prompts of odd length >= 5; prompt %d has %d", i,
                              pr->lengths[i]);
    int n_set = 0;
    for (int k = 0; set && k < L * H; k++) n_set += set[k] != 0;
    set_edits u = {.p = p, .set = set, .L = L, .H = H, .T = pr->T, .d_head = c->d_head};
    u.edits = malloc((size_t)(R * n_set > 0 ? R * n_set : 1) * sizeof *u.edits);
    if (!u.edits) return hs_err_set(err, HS_ERR_OOM, "head sets: out of memory");
    st = hs_metric_per_prompt_edited(s, m, pr, p->metric, p->second_half, R, build_edits, &u, out, err);
    free(u.edits);
    return st;
}
