/* hs_head_scores: per-head pattern scores from captured attention patterns. */
#include "headsweep/hs_head_scores.h"

#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_capture.h"
#include "hs_batches.h"

const char *hs_score_name(hs_score_kind k) {
    static const char *n[HS_SCORE_COUNT] = {"previous_token", "duplicate_token", "induction", "olsson_induction"};
    return (k >= 0 && k < HS_SCORE_COUNT) ? n[k] : "?";
}

/* Detection pattern entry D[i, j] of a TransformerLens detector. */
static int detect(hs_score_kind k, const int32_t *tok, int i, int j) {
    switch (k) {
    case HS_SCORE_PREVIOUS_TOKEN: return j == i - 1;
    case HS_SCORE_DUPLICATE_TOKEN: return j < i && tok[i] == tok[j];
    case HS_SCORE_INDUCTION: return j >= 1 && j - 1 < i && tok[i] == tok[j - 1];
    default: return 0;
    }
}

/* Scores of one head on one prompt. A: [T, T] pattern rows, n valid tokens. */
static double head_score(hs_score_kind k, const float *A, int T, int n, const int32_t *tok) {
    if (k == HS_SCORE_OLSSON_INDUCTION) {
        int half = (n - 1) / 2;
        double s = 0;
        for (int i = half + 1; i < n; i++) s += A[(int64_t)i * T + (i - half + 1)];
        return half > 0 ? s / half : 0.0;
    }
    double num = 0, den = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double a = A[(int64_t)i * T + j];
            den += a;
            if (detect(k, tok, i, j)) num += a;
        }
    return den > 0 ? num / den : 0.0;
}

/* Scores every (prompt, kind, layer, head) of a batch from its patterns. */
typedef struct {
    const hs_prompts *pr;
    unsigned kinds;
    int L, H;
    float *out;
} score_batch;

static hs_status score_visit(void *user, int p0, int B, const hs_capture *cap, hs_err *err) {
    const score_batch *u = user;
    const int T = u->pr->T, L = u->L, H = u->H;
    (void)err;
    for (int l = 0; l < L; l++) {
        const float *pat = hs_capture_get(cap, HS_HOOK_PATTERN, l, NULL); /* [B, H, T, T] */
        for (int k = 0; k < HS_SCORE_COUNT; k++) {
            if (!(u->kinds & (1u << k))) continue;
            for (int bi = 0; bi < B; bi++)
                for (int h = 0; h < H; h++)
                    u->out[(((int64_t)(p0 + bi) * HS_SCORE_COUNT + k) * L + l) * H + h] =
                        (float)head_score((hs_score_kind)k, pat + ((int64_t)bi * H + h) * T * T, T,
                                          u->pr->lengths[p0 + bi], u->pr->tokens + (int64_t)(p0 + bi) * T);
        }
    }
    return HS_OK;
}

hs_status hs_head_scores_per_prompt(hs_session *s, const hs_model *m, const hs_prompts *pr, unsigned mask,
                                    int batch_rows, float *out, hs_err *err) {
    hs_status st = HS_OK;
    const hs_model_config *c = hs_model_get_config(m);
    if (batch_rows < 1) return hs_err_set(err, HS_ERR_INVALID_ARG, "head_scores: batch_rows must be >= 1");
    if (mask & (1u << HS_SCORE_OLSSON_INDUCTION))
        for (int i = 0; i < pr->N; i++)
            if (pr->lengths[i] < 3 || pr->lengths[i] % 2 == 0)
                return hs_err_set(err, HS_ERR_INVALID_ARG,
                                  "head_scores: olsson_induction needs [BOS] x x prompts of odd length; prompt %d has %d",
                                  i, pr->lengths[i]);
    hs_capture *cap = NULL;
    score_batch u = {.pr = pr, .kinds = mask, .L = c->n_layers, .H = c->n_heads, .out = out};
    HS_CHECK(hs_capture_init(hs_session_backend(s), &cap, err));
    HS_CHECK(hs_capture_want(cap, HS_HOOK_PATTERN, -1, err));
    HS_CHECK(hs_capture_batches(s, cap, pr, batch_rows, score_visit, &u, err));
exit:
    hs_capture_free(cap);
    return st;
}

hs_status hs_head_scores(hs_session *s, const hs_model *m, const hs_prompts *pr, unsigned mask, int batch_rows,
                         float *out, hs_err *err) {
    const hs_model_config *c = hs_model_get_config(m);
    const int64_t K = (int64_t)HS_SCORE_COUNT * c->n_layers * c->n_heads;
    float *per = malloc((size_t)(pr->N > 0 ? pr->N : 1) * K * sizeof *per);
    if (!per) return hs_err_set(err, HS_ERR_OOM, "head_scores: out of memory");
    hs_status st = hs_head_scores_per_prompt(s, m, pr, mask, batch_rows, per, err);
    const int64_t LH = (int64_t)c->n_layers * c->n_heads;
    for (int k = 0; !st && k < HS_SCORE_COUNT; k++) {
        if (!(mask & (1u << k))) continue;
        for (int64_t j = 0; j < LH; j++) {
            double acc = 0; /* prompt order: the same sum however the prompts were sharded */
            for (int i = 0; i < pr->N; i++) acc += per[(int64_t)i * K + k * LH + j];
            out[k * LH + j] = (float)(acc / pr->N);
        }
    }
    free(per);
    return st;
}
