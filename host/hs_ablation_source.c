/* hs_ablation_source: what an ablated head's z is set to, computed once over a
 * reference set so that every unit of a sharded sweep uses the same values:
 * means of z (per position, per head, or per template) and resample sources. */
#include "headsweep/hs_ablation.h"

#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_capture.h"
#include "hs_batches.h"

/* Adds a batch's z into its group's sums. */
typedef struct {
    const hs_prompts *pr;
    const int32_t *group;
    int L, H, dh;
    float *out;
    int64_t *count;
} z_sums;

static hs_status sum_visit(void *user, int p0, int P, const hs_capture *cap, hs_err *err) {
    const z_sums *u = user;
    const int L = u->L, H = u->H, dh = u->dh, T = u->pr->T;
    (void)err;
    for (int p = 0; p < P; p++) {
        const int g = u->group ? u->group[p0 + p] : 0;
        for (int t = 0; t < u->pr->lengths[p0 + p]; t++) u->count[(int64_t)g * T + t]++;
    }
    for (int l = 0; l < L; l++) {
        const float *z = hs_capture_get(cap, HS_HOOK_Z, l, NULL); /* [P, T, H, dh] */
        for (int p = 0; p < P; p++) {
            float *o = u->out + (int64_t)(u->group ? u->group[p0 + p] : 0) * L * H * T * dh;
            for (int t = 0; t < u->pr->lengths[p0 + p]; t++)
                for (int h = 0; h < H; h++)
                    for (int i = 0; i < dh; i++)
                        o[(((int64_t)l * H + h) * T + t) * dh + i] += z[(((int64_t)p * T + t) * H + h) * dh + i];
        }
    }
    return HS_OK;
}

/* Sums z of the reference prompts into out [G, L, H, T, dh] by group
 * (group NULL = all in group 0) and counts valid prompts per (group,
 * position) into count [G, T]. */
static hs_status sum_z(hs_session *s, const hs_model *m, const hs_prompts *pr, const int32_t *group, int G, int rows,
                       float *out, int64_t *count, hs_err *err) {
    hs_status st = HS_OK;
    const hs_model_config *c = hs_model_get_config(m);
    z_sums u = {.pr = pr, .group = group, .L = c->n_layers, .H = c->n_heads, .dh = c->d_head, .out = out,
                .count = count};
    hs_capture *cap = NULL;
    memset(out, 0, (size_t)G * u.L * u.H * pr->T * u.dh * sizeof(float));
    memset(count, 0, (size_t)G * pr->T * sizeof *count);
    HS_CHECK(hs_capture_init(hs_session_backend(s), &cap, err));
    HS_CHECK(hs_capture_want(cap, HS_HOOK_Z, -1, err));
    HS_CHECK(hs_capture_batches(s, cap, pr, rows, sum_visit, &u, err));
exit:
    hs_capture_free(cap);
    return st;
}

hs_status hs_ablation_mean_z(hs_session *s, const hs_model *m, const hs_prompts *pr, int rows, int per_position,
                             float *out, hs_err *err) {
    const hs_model_config *c = hs_model_get_config(m);
    const int L = c->n_layers, H = c->n_heads, dh = c->d_head, T = pr->T;
    if (rows < 1) return hs_err_set(err, HS_ERR_INVALID_ARG, "mean z: batch_rows must be >= 1");
    int64_t *count = malloc((size_t)T * sizeof *count);
    if (!count) return hs_err_set(err, HS_ERR_OOM, "mean z: out of memory");
    hs_status st = sum_z(s, m, pr, NULL, 1, rows, out, count, err);
    int64_t total = 0;
    for (int t = 0; t < T; t++) total += count[t];
    for (int l = 0; !st && l < L; l++)
        for (int h = 0; h < H; h++) {
            float *o = out + ((int64_t)l * H + h) * T * dh;
            if (per_position) {
                for (int t = 0; t < T; t++)
                    for (int i = 0; i < dh; i++)
                        if (count[t]) o[t * dh + i] /= (float)count[t];
                continue;
            }
            /* one vector per head: the mean over every valid (prompt, position) */
            for (int i = 0; i < dh; i++) {
                double acc = 0;
                for (int t = 0; t < T; t++) acc += o[t * dh + i];
                float mean = total ? (float)(acc / (double)total) : 0.0f;
                for (int t = 0; t < T; t++) o[t * dh + i] = mean;
            }
        }
    free(count);
    return st;
}

hs_status hs_ablation_mean_z_template(hs_session *s, const hs_model *m, const hs_prompts *ref,
                                      const int32_t *template_id, int n_templates, int rows, float *out, hs_err *err) {
    const hs_model_config *c = hs_model_get_config(m);
    const int64_t per = (int64_t)c->n_layers * c->n_heads * ref->T * c->d_head; /* one template's [L, H, T, dh] */
    const int T = ref->T, dh = c->d_head;
    if (rows < 1) return hs_err_set(err, HS_ERR_INVALID_ARG, "template mean z: batch_rows must be >= 1");
    if (n_templates < 1 || !template_id)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "template mean z: needs template ids and n_templates >= 1 (got %d)",
                          n_templates);
    for (int i = 0; i < ref->N; i++)
        if (template_id[i] < 0 || template_id[i] >= n_templates)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "template mean z: prompt %d has template id %d outside [0, %d)",
                              i, template_id[i], n_templates);
    int64_t *count = malloc((size_t)n_templates * T * sizeof *count);
    if (!count) return hs_err_set(err, HS_ERR_OOM, "template mean z: out of memory");
    hs_status st = sum_z(s, m, ref, template_id, n_templates, rows, out, count, err);
    for (int g = 0; !st && g < n_templates; g++)
        for (int64_t lh = 0; lh < per / ((int64_t)T * dh); lh++) {
            float *o = out + g * per + lh * T * dh;
            for (int t = 0; t < T; t++) {
                const int64_t n = count[(int64_t)g * T + t];
                for (int i = 0; n && i < dh; i++) o[t * dh + i] /= (float)n;
            }
        }
    free(count);
    return st;
}

/* Sebastiano Vigna's splitmix64 finaliser: a well-mixed 64-bit hash. */
static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

hs_status hs_ablation_resample_sources(uint64_t seed, int n_ref, int first, int n, int32_t *out, hs_err *err) {
    if (n_ref < 2 || first < 0 || n < 0)
        return hs_err_set(err, HS_ERR_INVALID_ARG,
                          "resample sources: need >= 2 reference prompts (got %d), first >= 0 (%d), n >= 0 (%d)", n_ref,
                          first, n);
    for (int k = 0; k < n; k++) {
        const int64_t i = (int64_t)first + k;
        const uint64_t r = splitmix64(seed ^ splitmix64((uint64_t)i));
        if (i < n_ref) { /* uniform over the others: draw from n_ref - 1, skip i */
            int64_t j = (int64_t)(r % (uint64_t)(n_ref - 1));
            out[k] = (int32_t)(j + (j >= i));
        } else {
            out[k] = (int32_t)(r % (uint64_t)n_ref);
        }
    }
    return HS_OK;
}
