/* hs_head_sets: one forward per batch of prompts with every head of a set
 * edited in each row (the same edit list the sweeps use), through the
 * per-prompt metric loop of hs_batches.c; needle recall instead decodes each
 * batch greedily under the same edits (hs_decode.h). */
#include "headsweep/hs_head_sets.h"

#include <stdlib.h>
#include <string.h>

#include "hs_batches.h"
#include "hs_decode.h"
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
    hs_session *s;
    const hs_prompts *pr;
    const hs_head_set_params *p;
    const uint8_t *set;
    int L, H, T, d_head;
    hs_z_edit *edits; /* [batch_rows * heads in the set (* T with resample)] */
    hs_capture *cap;  /* resample: the source prompts' z at the set's layers */
    int32_t *stok, *smask;
} set_edits;

/* Resample: the batch's source prompts run first; each set head of row r then
 * takes the source's z at every position both prompts have. */
static hs_status resample_edits(set_edits *u, int p0, int B, int *ne, hs_err *err) {
    const hs_prompts *ref = u->p->resample_ref;
    const int32_t *src = u->p->resample_src + p0;
    const int Tr = ref->T, H = u->H, dh = u->d_head;
    hs_status st = hs_resample_forward(u->s, ref, src, B, u->cap, u->stok, u->smask, err);
    if (st != HS_OK) return st;
    for (int k = 0; k < u->L * H; k++) {
        if (!u->set[k]) continue;
        const float *rz = hs_capture_get(u->cap, HS_HOOK_Z, k / H, NULL); /* [B, Tr, H, dh] */
        for (int r = 0; r < B; r++)
            *ne += hs_resample_edits(u->edits + *ne, r, k / H, k % H, u->pr->lengths[p0 + r], ref->lengths[src[r]], rz,
                                     r, Tr, H, dh);
    }
    return HS_OK;
}

static hs_status build_edits(void *user, int p0, int B, hs_forward_params *fp, hs_err *err) {
    set_edits *u = user;
    const hs_head_set_params *p = u->p;
    int ne = 0;
    if (p->mode == HS_ABLATE_RESAMPLE && u->cap) { /* (no capture: an empty set, nothing to edit) */
        hs_status st = resample_edits(u, p0, B, &ne, err);
        if (st != HS_OK) return st;
        fp->edits = u->edits;
        fp->n_edits = ne;
        return HS_OK;
    }
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

/* Needle recall: each batch decoded greedily with the set's edits on every
 * position of the prompt and of every generated token. */
static hs_status needle_recall(set_edits *u, const hs_model *m, float *out, hs_err *err) {
    const hs_prompts *pr = u->pr;
    const hs_head_set_params *p = u->p;
    const int R = p->batch_rows, G = p->n_generate;
    int max_len = 1;
    for (int i = 0; i < pr->N; i++) max_len = pr->lengths[i] > max_len ? pr->lengths[i] : max_len;
    hs_decoder d;
    hs_status st = hs_decoder_init(u->s, m, R, max_len, G, 1, &d, err);
    if (st) return st;
    int32_t *gen = malloc((size_t)R * G * sizeof *gen), *w = malloc((size_t)R * sizeof *w);
    if (!gen || !w) HS_FAIL(err, HS_ERR_OOM, "head sets: out of memory");
    for (int p0 = 0; p0 < pr->N; p0 += R) {
        const int B = pr->N - p0 < R ? pr->N - p0 : R;
        hs_forward_params fp = hs_forward_default_params();
        HS_CHECK(build_edits(u, p0, B, &fp, err));
        hs_decoder_start(&d, pr, p0, B);
        for (int step = 0; step < G; step++) {
            HS_CHECK(hs_decoder_step(&d, &fp, w, err));
            for (int b = 0; b < B; b++) gen[(int64_t)b * G + step] = w[b];
        }
        if (p->generated) memcpy(p->generated + (int64_t)p0 * G, gen, (size_t)B * G * sizeof *gen);
        for (int b = 0; b < B; b++) {
            const int i = p0 + b;
            out[i] = hs_needle_recall(pr->tokens + (int64_t)i * pr->T + p->needle_start[i], p->needle_len[i],
                                      gen + (int64_t)b * G, G);
        }
    }
exit:
    hs_decoder_free(&d);
    free(gen), free(w);
    return st;
}

static hs_status check_needles(const hs_prompts *pr, const hs_head_set_params *p, hs_err *err) {
    if (p->mode != HS_ABLATE_ZERO && p->mode != HS_ABLATE_SCALE && p->mode != HS_ABLATE_UNIFORM)
        return hs_err_set(err, HS_ERR_INVALID_ARG,
                          "head sets: needle_recall takes modes zero, scale and uniform (mode %s sets z per position "
                          "of the prompt)", hs_ablate_mode_name(p->mode));
    if (p->n_generate < 1 || p->second_half || p->batch_rows < 1)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "head sets: needle_recall needs n_generate >= 1 (%d), batch_rows "
                                                   ">= 1 and no second_half", p->n_generate);
    return hs_needle_spans_check(pr, p->needle_start, p->needle_len, "head sets", err);
}

hs_status hs_head_set_metric(hs_session *s, const hs_model *m, const hs_prompts *pr, const hs_head_set_params *p,
                             const uint8_t *set, float *out, hs_err *err) {
    hs_status st = HS_OK;
    const hs_model_config *c = hs_model_get_config(m);
    const int L = c->n_layers, H = c->n_heads, R = p->batch_rows;
    const int resample = p->mode == HS_ABLATE_RESAMPLE, recall = p->metric == HS_METRIC_NEEDLE_RECALL;
    if (recall && (st = check_needles(pr, p, err))) return st; /* first: its own refusals, by name */
    if (R < 1 || p->mode < 0 || p->mode >= HS_ABLATE_COUNT || (p->mode == HS_ABLATE_MEAN && !p->mean_z) ||
        (resample && (!p->resample_ref || !p->resample_src || p->resample_ref->N < 1)) ||
        (p->second_half && p->metric != HS_METRIC_LOSS))
        return hs_err_set(err, HS_ERR_INVALID_ARG,
                          "head sets: bad parameters (batch_rows, mode, mean_z, resample_ref/src or second_half)");
    for (int i = 0; resample && i < pr->N; i++)
        if (p->resample_src[i] < 0 || p->resample_src[i] >= p->resample_ref->N)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "head sets: prompt %d has resample source %d outside [0, %d)", i,
                              p->resample_src[i], p->resample_ref->N);
    for (int i = 0; p->mean_template && i < pr->N; i++)
        if (p->mean_template[i] < 0 || p->mean_template[i] >= p->n_templates)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "head sets: prompt %d has template %d outside [0, %d)", i,
                              p->mean_template[i], p->n_templates);
    if (!recall && (st = hs_metric_check(c, pr, p->metric, err))) return hs_err_prefix(err, "head sets");
    for (int i = 0; p->second_half && i < pr->N; i++)
        if (pr->lengths[i] < 5 || pr->lengths[i] % 2 == 0)
            return hs_err_set(err, HS_ERR_INVALID_ARG,
                              "head sets: second_half needs [BOS] x x prompts of odd length >= 5; prompt %d has %d", i,
                              pr->lengths[i]);
    int n_set = 0;
    for (int k = 0; set && k < L * H; k++) n_set += set[k] != 0;
    set_edits u = {.s = s, .pr = pr, .p = p, .set = set, .L = L, .H = H, .T = pr->T, .d_head = c->d_head};
    const int64_t per_row = (int64_t)n_set * (resample ? pr->T : 1), Tr = resample ? p->resample_ref->T : 0;
    u.edits = malloc((size_t)(R * per_row > 0 ? R * per_row : 1) * sizeof *u.edits);
    if (resample && n_set) {
        u.stok = malloc((size_t)R * Tr * sizeof *u.stok);
        u.smask = malloc((size_t)R * Tr * sizeof *u.smask);
        if (u.stok && u.smask && (st = hs_capture_init(hs_session_backend(s), &u.cap, err)) == HS_OK)
            for (int l = 0; l < L && st == HS_OK; l++) /* only the layers the set edits */
                for (int h = 0; h < H; h++)
                    if (set[l * H + h]) {
                        st = hs_capture_want(u.cap, HS_HOOK_Z, l, err);
                        break;
                    }
    }
    if (st == HS_OK && (!u.edits || (resample && n_set && (!u.stok || !u.smask))))
        st = hs_err_set(err, HS_ERR_OOM, "head sets: out of memory");
    if (st == HS_OK && recall) st = needle_recall(&u, m, out, err);
    else if (st == HS_OK) st = hs_metric_per_prompt_edited(s, m, pr, p->metric, p->second_half, R, build_edits, &u, out, err);
    hs_capture_free(u.cap);
    free(u.edits), free(u.stok), free(u.smask);
    return st;
}
