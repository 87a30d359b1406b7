/* hs_retrieval: greedy decoding of needle prompts (hs_decode.h) with the
 * argmax of every head's attention row at the generating position recorded
 * per step (the forward computes only that row of each pattern, and the hook
 * reads it in one download per layer), then copy counting. */
#include "headsweep/hs_retrieval.h"

#include <stdlib.h>
#include <string.h>

#include "hs_decode.h"

hs_retrieval_params hs_retrieval_default_params(void) {
    hs_retrieval_params p = {.n_generate = 32, .batch_rows = 8};
    return p;
}

int hs_retrieval_unit(const hs_retrieval_params *p) { return p->batch_rows; }

/* The pattern hook's state: for the current step, the argmax key of each
 * (layer, row, head)'s last query row. */
typedef struct {
    hs_backend *be;
    int B, H;
    const int32_t *cur; /* [B] context length per row */
    float *rows;        /* [B, H, T] the downloaded last rows */
    int32_t *argmax;    /* [L, B, H] */
} argmax_hook;

static int hook_wants(void *user, hs_hook_point p, int layer) {
    (void)user, (void)layer;
    return p == HS_HOOK_PATTERN;
}

static hs_status hook_fn(void *user, hs_hook_point p, int l, hs_tensor *t, hs_err *err) {
    argmax_hook *a = user;
    (void)p;
    const int64_t T = t->shape[3]; /* [B, H, 1, T] f32: row cur[b] - 1 of each pattern */
    hs_status st = a->be->ops->download(a->be, a->rows, t->data, (size_t)a->B * a->H * T * sizeof(float), err);
    if (st) return st;
    for (int b = 0; b < a->B; b++)
        for (int h = 0; h < a->H; h++) {
            const float *row = a->rows + ((int64_t)b * a->H + h) * T;
            int best = 0; /* the first maximum, as torch.argmax */
            for (int j = 1; j < a->cur[b]; j++)
                if (row[j] > row[best]) best = j;
            a->argmax[((int64_t)l * a->B + b) * a->H + h] = best;
        }
    return HS_OK;
}

static hs_status check_args(const hs_prompts *pr, const int32_t *ns, const int32_t *nl, const hs_retrieval_params *p,
                            hs_err *err) {
    if (p->n_generate < 1 || p->batch_rows < 1)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "retrieval: n_generate %d and batch_rows %d must be >= 1",
                          p->n_generate, p->batch_rows);
    return hs_needle_spans_check(pr, ns, nl, "retrieval", err);
}

hs_status hs_retrieval_scores_per_prompt(hs_session *s, const hs_model *m, const hs_prompts *pr, const int32_t *ns,
                                         const int32_t *nl, const hs_retrieval_params *p, float *out_score,
                                         int32_t *out_generated, hs_err *err) {
    hs_status st = check_args(pr, ns, nl, p, err);
    if (st) return st;
    const hs_model_config *c = hs_model_get_config(m);
    const int L = c->n_layers, H = c->n_heads, G = p->n_generate, R = p->batch_rows;
    int max_len = 1, max_nl = 1;
    for (int i = 0; i < pr->N; i++) {
        if (pr->lengths[i] > max_len) max_len = pr->lengths[i];
        if (nl[i] > max_nl) max_nl = nl[i];
    }
    hs_decoder d;
    if ((st = hs_decoder_init(s, m, R, max_len, G, !p->no_kv_cache, &d, err))) return st;
    int32_t *am = malloc((size_t)L * R * H * sizeof *am), *w = malloc((size_t)R * sizeof *w);
    uint8_t *copied = malloc((size_t)R * L * H * max_nl); /* [R, L, H, needle position] */
    float *rows = malloc((size_t)R * H * d.Tc * sizeof(float));
    if (!am || !w || !copied || !rows) HS_FAIL(err, HS_ERR_OOM, "retrieval: out of memory for %d rows x %d tokens", R, d.Tc);
    argmax_hook ah = {.be = hs_session_backend(s), .H = H, .cur = d.cur, .rows = rows, .argmax = am};
    hs_hooks hooks = {.wants = hook_wants, .fn = hook_fn, .user = &ah};
    for (int p0 = 0; p0 < pr->N; p0 += R) {
        const int B = pr->N - p0 < R ? pr->N - p0 : R;
        ah.B = B;
        memset(copied, 0, (size_t)B * L * H * max_nl);
        hs_decoder_start(&d, pr, p0, B);
        for (int step = 0; step < G; step++) {
            hs_forward_params fp = hs_forward_default_params();
            fp.hooks = &hooks;
            HS_CHECK(hs_decoder_step(&d, &fp, w, err));
            for (int b = 0; b < B; b++) {
                const int i = p0 + b;
                const int32_t *ptok = pr->tokens + (int64_t)i * pr->T; /* the needle lies in the prompt */
                for (int lh = 0; lh < L * H; lh++) {
                    const int j = am[((int64_t)(lh / H) * B + b) * H + lh % H];
                    if (j >= ns[i] && j < ns[i] + nl[i] && ptok[j] == w[b])
                        copied[((int64_t)b * L * H + lh) * max_nl + (j - ns[i])] = 1;
                }
                if (out_generated) out_generated[(int64_t)i * G + step] = w[b];
            }
        }
        for (int b = 0; b < B; b++) {
            const int i = p0 + b;
            for (int lh = 0; lh < L * H; lh++) {
                int n = 0;
                for (int k = 0; k < nl[i]; k++) n += copied[((int64_t)b * L * H + lh) * max_nl + k];
                out_score[(int64_t)i * L * H + lh] = (float)n / (float)nl[i];
            }
        }
    }
exit:
    hs_decoder_free(&d);
    free(am), free(w), free(copied), free(rows);
    return st;
}

hs_status hs_retrieval_scores(hs_session *s, const hs_model *m, const hs_prompts *pr, const int32_t *ns,
                              const int32_t *nl, const hs_retrieval_params *p, float *out, hs_err *err) {
    const hs_model_config *c = hs_model_get_config(m);
    const int64_t LH = (int64_t)c->n_layers * c->n_heads;
    if (pr->N < 1) return hs_err_set(err, HS_ERR_INVALID_ARG, "retrieval: no prompts");
    float *per = malloc((size_t)pr->N * LH * sizeof *per);
    if (!per) return hs_err_set(err, HS_ERR_OOM, "retrieval: out of memory");
    hs_status st = hs_retrieval_scores_per_prompt(s, m, pr, ns, nl, p, per, NULL, err);
    for (int64_t j = 0; !st && j < LH; j++) {
        double acc = 0; /* prompt order: the same sum however the prompts were sharded */
        for (int i = 0; i < pr->N; i++) acc += per[(int64_t)i * LH + j];
        out[j] = (float)(acc / pr->N);
    }
    free(per);
    return st;
}
