/* test_attention_op: the attention op's pattern contract on the CPU reference
 * backend (the CUDA backend is held to the CPU op in test_cuda_ops):
 *   - every pattern entry is written, a query with no visible key (left
 *     padding) gets a zero row, whatever the buffer held before;
 *   - pattern_rows gives exactly those rows of the whole pattern;
 *   - through hs_forward, a pattern hook sees [B, H, 1, T] with pattern_rows
 *     and the same values as the whole pattern's rows; bad rows are refused;
 *   - the SET table: a listed cell holds its vector exactly (head_scale not
 *     applied), every other value, lse and pattern are as without it; an
 *     index past the vectors is refused and named;
 *   - a sliding window: each query's row is the unwindowed attention's with
 *     the keys before its window masked as padding;
 *   - keys from a cache (T_kv, q_pos): queries placed anywhere in the keys
 *     give the whole attention's rows there;
 *   - ALiBi: the pattern and z are a double-precision softmax of
 *     scale q·k + slope_h (s - t) over the visible keys (1e-5), uniform heads
 *     untouched by it, and its backward is the same as with the biases folded
 *     into q and k (an exact identity: slope (s - t) = [q, 1, -t]·[k, slope s, slope]). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_backend.h"
#include "headsweep/hs_capture.h"
#include "headsweep/hs_forward.h"
#include "headsweep/hs_model.h"
#include "hs_testutil.h"

enum { B = 3, T = 11, H = 4, HK = 2, D = 8 };

typedef struct {
    hs_backend *be;
    float *q, *k, *v, *z, *lse;
    int32_t mask[B * T];
    uint8_t uni[B * H];
} op_case;

/* Left padding of 0, 3 and 5 tokens; head 2 of row 1 attends uniformly. */
static void op_init(op_case *c) {
    hs_err err = {0};
    memset(c, 0, sizeof *c);
    cr_assert_eq(hs_backend_cpu_init(NULL, &c->be, &err), HS_OK, "%s", err.msg);
    hs_test_rng rng;
    hs_test_rng_seed(&rng, 77);
    c->q = malloc(sizeof(float) * B * T * H * D);
    c->k = malloc(sizeof(float) * B * T * HK * D);
    c->v = malloc(sizeof(float) * B * T * HK * D);
    c->z = malloc(sizeof(float) * B * T * H * D);
    c->lse = malloc(sizeof(float) * B * H * T);
    cr_assert(c->q && c->k && c->v && c->z && c->lse);
    hs_test_fill_normal(&rng, c->q, B * T * H * D, 1.0f);
    hs_test_fill_normal(&rng, c->k, B * T * HK * D, 1.0f);
    hs_test_fill_normal(&rng, c->v, B * T * HK * D, 1.0f);
    const int pad[B] = {0, 3, 5};
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) c->mask[b * T + t] = t >= pad[b];
    c->uni[1 * H + 2] = 1;
}

static void op_free(op_case *c) {
    free(c->q), free(c->k), free(c->v), free(c->z), free(c->lse);
    hs_backend_free(c->be);
}

static hs_attn_params op_params(op_case *c, float *pattern, const int32_t *rows) {
    hs_attn_params p = {.B = B, .T = T, .H = H, .H_kv = HK, .d_head = D, .scale = 1.0f / sqrtf((float)D),
                        .q = c->q, .k = c->k, .v = c->v, .key_mask = c->mask, .z = c->z, .lse = c->lse,
                        .pattern = pattern, .pattern_rows = rows, .uniform = c->uni};
    return p;
}

static void poison(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

Test(attention_op, every_entry_written_and_masked_queries_get_zero_rows) {
    op_case c;
    op_init(&c);
    hs_err err = {0};
    float *pat = malloc(sizeof(float) * B * H * T * T);
    poison(pat, (size_t)B * H * T * T);
    hs_attn_params p = op_params(&c, pat, NULL);
    cr_assert_eq(c.be->ops->attention(c.be, &p, &err), HS_OK, "%s", err.msg);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const float *row = pat + (((int64_t)b * H + h) * T + t) * T;
                double sum = 0;
                for (int s = 0; s < T; s++) {
                    cr_assert(isfinite(row[s]), "pattern[%d,%d,%d,%d] not written (%g)", b, h, t, s, row[s]);
                    const int vis = s <= t && c.mask[b * T + s];
                    cr_assert(vis || row[s] == 0.0f, "pattern[%d,%d,%d,%d] = %g on a hidden key", b, h, t, s, row[s]);
                    sum += row[s];
                }
                const int any = c.mask[b * T + t]; /* left padding: a query sees a key iff it is real */
                cr_assert(any ? fabs(sum - 1.0) < 1e-5 : sum == 0.0, "row (%d,%d,%d) sums to %g", b, h, t, sum);
                if (!any) cr_assert(isinf(c.lse[((int64_t)b * H + h) * T + t]), "lse of a query with no key");
            }
    free(pat);
    op_free(&c);
}

Test(attention_op, window_equals_masking_the_keys_before_it) {
    op_case c;
    op_init(&c);
    hs_err err = {0};
    enum { W = 3 };
    const int64_t nz = (int64_t)B * T * H * D, np = (int64_t)B * H * T * T;
    float *pat = malloc(sizeof(float) * np), *ref = malloc(sizeof(float) * np);
    float *z = malloc(sizeof(float) * nz), *lse = malloc(sizeof(float) * B * H * T);
    hs_attn_params p = op_params(&c, pat, NULL);
    p.window = W;
    cr_assert_eq(c.be->ops->attention(c.be, &p, &err), HS_OK, "%s", err.msg);
    memcpy(z, c.z, sizeof(float) * nz), memcpy(lse, c.lse, sizeof(float) * B * H * T);
    int32_t mask0[B * T];
    memcpy(mask0, c.mask, sizeof mask0);
    int hidden = 0;
    for (int t = 0; t < T; t++) { /* query t: keys before t - W + 1 hidden by the mask instead */
        for (int b = 0; b < B; b++)
            for (int s = 0; s < T; s++) c.mask[b * T + s] = mask0[b * T + s] && s > t - W;
        hs_attn_params m = op_params(&c, ref, NULL);
        cr_assert_eq(c.be->ops->attention(c.be, &m, &err), HS_OK, "%s", err.msg);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                const int64_t r = ((int64_t)b * H + h) * T + t;
                for (int s = 0; s < T; s++) {
                    cr_assert_eq(pat[r * T + s], ref[r * T + s], "pattern (%d,%d,%d,%d)", b, h, t, s);
                    hidden += s <= t - W && mask0[b * T + s];
                }
                cr_assert(lse[r] == c.lse[r] || (isinf(lse[r]) && isinf(c.lse[r])), "lse (%d,%d,%d)", b, h, t);
                cr_assert(!memcmp(z + (((int64_t)b * T + t) * H + h) * D, c.z + (((int64_t)b * T + t) * H + h) * D,
                                  sizeof(float) * D), "z (%d,%d,%d)", b, t, h);
            }
    }
    cr_assert_gt(hidden, 100, "the window must hide keys the causal mask shows");
    p.window = T; /* a window as wide as the sequence hides nothing */
    memcpy(c.mask, mask0, sizeof mask0);
    cr_assert_eq(c.be->ops->attention(c.be, &p, &err), HS_OK, "%s", err.msg);
    memcpy(z, c.z, sizeof(float) * nz);
    p.window = 0;
    cr_assert_eq(c.be->ops->attention(c.be, &p, &err), HS_OK, "%s", err.msg);
    cr_assert(!memcmp(z, c.z, sizeof(float) * nz), "window T differs from none");
    free(pat), free(ref), free(z), free(lse);
    op_free(&c);
}

Test(attention_op, alibi_adds_slope_times_key_distance) {
    op_case c;
    op_init(&c);
    hs_err err = {0};
    const float slopes[H] = {0.5f, 0.25f, 0.125f, 0.0625f};
    const int64_t nz = (int64_t)B * T * H * D, np = (int64_t)B * H * T * T;
    float *pat = malloc(sizeof(float) * np);
    poison(pat, (size_t)np);
    poison(c.z, (size_t)nz);
    hs_attn_params p = op_params(&c, pat, NULL);
    p.alibi = slopes;
    cr_assert_eq(c.be->ops->attention(c.be, &p, &err), HS_OK, "%s", err.msg);
    int differs = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                if (!c.mask[b * T + t]) continue;
                const int uni = c.uni[b * H + h], hk = h / (H / HK);
                double sc[T], mx = -INFINITY, sum = 0;
                for (int s = 0; s < T; s++) {
                    sc[s] = -INFINITY;
                    if (s > t || !c.mask[b * T + s]) continue;
                    double dot = 0;
                    for (int i = 0; i < D; i++)
                        dot += (double)c.q[((b * T + t) * H + h) * D + i] * c.k[((b * T + s) * HK + hk) * D + i];
                    sc[s] = uni ? 0.0 : dot / sqrt((double)D) + (double)slopes[h] * (s - t);
                    if (sc[s] > mx) mx = sc[s];
                }
                for (int s = 0; s < T; s++) sum += sc[s] == -INFINITY ? 0.0 : exp(sc[s] - mx);
                double zr[D] = {0};
                for (int s = 0; s < T; s++) {
                    const double pr = sc[s] == -INFINITY ? 0.0 : exp(sc[s] - mx) / sum;
                    const float got = pat[(((int64_t)b * H + h) * T + t) * T + s];
                    cr_assert(fabs(got - pr) <= 1e-5, "pattern (%d,%d,%d,%d): %g, reference %g", b, h, t, s, got, pr);
                    for (int i = 0; i < D; i++) zr[i] += pr * c.v[((b * T + s) * HK + hk) * D + i];
                }
                for (int i = 0; i < D; i++) {
                    const float got = c.z[((int64_t)(b * T + t) * H + h) * D + i];
                    cr_assert(fabs(got - zr[i]) <= 1e-5 * (1.0 + fabs(zr[i])), "z (%d,%d,%d)[%d]: %g, reference %g", b, t,
                              h, i, got, zr[i]);
                }
                differs += !uni && t > 0;
            }
    cr_assert_gt(differs, 50);
    free(pat);
    op_free(&c);
}

/* ALiBi's backward: slope (s - t) = q'·k' with q' = [q, 1, -t] and k' = [k, slope s, slope] scaled
 * back by 1/scale, so the biased op's dq, dk, dv equal the unbiased op's on the widened heads,
 * cut back to D (one head group per KV head: the bias of a query head h needs its own k', so
 * here one query head per KV head). */
Test(attention_op, alibi_backward_equals_folding_the_biases_into_q_and_k) {
    enum { B1 = 2, T1 = 7, H1 = 3, D1 = 6, DW = D1 + 2 };
    hs_backend *be;
    hs_err err = {0};
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK, "%s", err.msg);
    hs_test_rng rng;
    hs_test_rng_seed(&rng, 91);
    const int64_t n = (int64_t)B1 * T1 * H1;
    float q[n * D1], k[n * D1], v[n * D1], dz[n * D1], qw[n * DW], kw[n * DW], vw[n * DW], dzw[n * DW];
    hs_test_fill_normal(&rng, q, n * D1, 1.0f), hs_test_fill_normal(&rng, k, n * D1, 1.0f);
    hs_test_fill_normal(&rng, v, n * D1, 1.0f), hs_test_fill_normal(&rng, dz, n * D1, 1.0f);
    const float slopes[H1] = {0.5f, 0.25f, 0.125f}, scale = 1.0f / sqrtf((float)D1);
    for (int64_t r = 0; r < n; r++) {
        const int t = (int)(r / H1 % T1), h = (int)(r % H1);
        for (int i = 0; i < DW; i++) {
            qw[r * DW + i] = i < D1 ? q[r * D1 + i] : i == D1 ? 1.0f : -(float)t;
            kw[r * DW + i] = i < D1 ? k[r * D1 + i] : (i == D1 ? slopes[h] * (float)t : slopes[h]) / scale;
            vw[r * DW + i] = i < D1 ? v[r * D1 + i] : 0.0f;
            dzw[r * DW + i] = i < D1 ? dz[r * D1 + i] : 0.0f;
        }
    }
    float z[n * D1], zw[n * DW], dq[n * D1], dk[n * D1], dv[n * D1], dqw[n * DW], dkw[n * DW], dvw[n * DW];
    hs_attn_params p = {.B = B1, .T = T1, .H = H1, .H_kv = H1, .d_head = D1, .scale = scale, .alibi = slopes,
                        .q = q, .k = k, .v = v, .z = z};
    hs_attn_params pw = {.B = B1, .T = T1, .H = H1, .H_kv = H1, .d_head = DW, .scale = scale,
                         .q = qw, .k = kw, .v = vw, .z = zw};
    cr_assert_eq(be->ops->attention(be, &p, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(be->ops->attention(be, &pw, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(be->ops->attention_bwd(be, &p, dz, dq, dk, dv, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(be->ops->attention_bwd(be, &pw, dzw, dqw, dkw, dvw, &err), HS_OK, "%s", err.msg);
    for (int64_t r = 0; r < n; r++)
        for (int i = 0; i < D1; i++) {
            const float *got[4] = {z, dq, dk, dv}, *want[4] = {zw, dqw, dkw, dvw};
            for (int j = 0; j < 4; j++)
                cr_assert(fabsf(got[j][r * D1 + i] - want[j][r * DW + i]) <= 1e-4f * (1.0f + fabsf(want[j][r * DW + i])),
                          "%s (%lld)[%d]: %g, folded %g", (const char *[]){"z", "dq", "dk", "dv"}[j], (long long)r, i,
                          got[j][r * D1 + i], want[j][r * DW + i]);
        }
    hs_backend_free(be);
}

Test(attention_op, pattern_rows_are_rows_of_the_whole_pattern) {
    op_case c;
    op_init(&c);
    hs_err err = {0};
    float *full = malloc(sizeof(float) * B * H * T * T), *part = malloc(sizeof(float) * B * H * T);
    float *z_full = malloc(sizeof(float) * B * T * H * D);
    hs_attn_params p = op_params(&c, full, NULL);
    cr_assert_eq(c.be->ops->attention(c.be, &p, &err), HS_OK, "%s", err.msg);
    memcpy(z_full, c.z, sizeof(float) * B * T * H * D);
    const int32_t rows[B] = {T - 1, 4, 2}; /* row 2 of batch row 2 is padding: a zero row */
    poison(part, (size_t)B * H * T);
    p = op_params(&c, part, rows);
    cr_assert_eq(c.be->ops->attention(c.be, &p, &err), HS_OK, "%s", err.msg);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            cr_assert(!memcmp(part + ((int64_t)b * H + h) * T, full + (((int64_t)b * H + h) * T + rows[b]) * T,
                              sizeof(float) * T),
                      "pattern_rows row (%d, %d) differs from row %d of the whole pattern", b, h, rows[b]);
    cr_assert(!memcmp(z_full, c.z, sizeof(float) * B * T * H * D), "z depends on pattern_rows");
    free(full), free(part), free(z_full);
    op_free(&c);
}

Test(attention_op, set_table_replaces_listed_cells_only) {
    op_case c;
    op_init(&c);
    hs_err err = {0};
    const int64_t nz = (int64_t)B * T * H * D, nl = (int64_t)B * H * T, np = nl * T;
    float hsc[B * H];
    for (int i = 0; i < B * H; i++) hsc[i] = i % 3 == 0 ? 0.5f : 1.0f; /* scaled heads must not scale a SET */
    float *pat0 = malloc(sizeof(float) * np), *pat1 = malloc(sizeof(float) * np);
    float *z0 = malloc(sizeof(float) * nz), *lse0 = malloc(sizeof(float) * nl);
    hs_attn_params p = op_params(&c, pat0, NULL);
    p.head_scale = hsc;
    cr_assert_eq(c.be->ops->attention(c.be, &p, &err), HS_OK, "%s", err.msg);
    memcpy(z0, c.z, sizeof(float) * nz), memcpy(lse0, c.lse, sizeof(float) * nl);

    enum { NV = 3 };
    float src[NV * D];
    for (int i = 0; i < NV * D; i++) src[i] = 100.0f + (float)i;
    int32_t idx[B * T * H];
    for (int i = 0; i < B * T * H; i++) idx[i] = -1;
    for (int t = 0; t < T; t++) idx[(0 * T + t) * H + 0] = t % NV; /* every position of (row 0, head 0) */
    idx[(1 * T + 0) * H + 3] = 2;                                  /* a padded position */
    idx[(2 * T + 7) * H + 2] = 1, idx[(2 * T + 8) * H + 2] = 1;    /* a shared vector */
    poison(c.z, (size_t)nz), poison(pat1, (size_t)np);
    p.pattern = pat1;
    p.set_idx = idx, p.set_src = src, p.n_set = NV;
    cr_assert_eq(c.be->ops->attention(c.be, &p, &err), HS_OK, "%s", err.msg);
    for (int64_t cell = 0; cell < (int64_t)B * T * H; cell++)
        for (int j = 0; j < D; j++) {
            const float want = idx[cell] >= 0 ? src[idx[cell] * D + j] : z0[cell * D + j];
            cr_assert(c.z[cell * D + j] == want, "z cell %lld [%d] = %g, want %g", (long long)cell, j,
                      c.z[cell * D + j], want);
        }
    cr_assert(!memcmp(lse0, c.lse, sizeof(float) * nl), "lse changed by the SET table");
    cr_assert(!memcmp(pat0, pat1, sizeof(float) * np), "pattern changed by the SET table");

    idx[5] = NV; /* one past the vectors */
    cr_assert_eq(c.be->ops->attention(c.be, &p, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "set_idx[5]"), "error names the cell: %s", err.msg);
    free(pat0), free(pat1), free(z0), free(lse0);
    op_free(&c);
}

/* A hook that copies the pattern tensor it is offered at one layer. */
typedef struct {
    int layer;
    int64_t shape[4];
    float *copy;
} grab;

static int grab_wants(void *user, hs_hook_point p, int layer) {
    return p == HS_HOOK_PATTERN && layer == ((grab *)user)->layer;
}

static hs_status grab_fn(void *user, hs_hook_point p, int layer, hs_tensor *t, hs_err *err) {
    grab *g = user;
    (void)p, (void)layer, (void)err;
    const int64_t n = hs_tensor_numel(t);
    memcpy(g->shape, t->shape, sizeof g->shape);
    g->copy = malloc((size_t)n * sizeof(float));
    memcpy(g->copy, t->data, (size_t)n * sizeof(float)); /* the CPU backend's memory is host memory */
    return HS_OK;
}

Test(attention_op, forward_offers_one_row_per_batch_row) {
    char path[1024];
    hs_model *m = NULL;
    hs_err err = {0};
    hs_test_fixture_path(path, sizeof path, "models/llama_gqa");
    cr_assert_eq(hs_model_load(path, &m, &err), HS_OK, "%s", err.msg);
    const hs_model_config *cfg = hs_model_get_config(m);
    hs_backend *be = NULL;
    hs_session *s = NULL;
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK, "%s", err.msg);
    enum { R = 2, TT = 9 };
    cr_assert_eq(hs_session_init(be, m, R, TT, &s, &err), HS_OK, "%s", err.msg);
    int32_t tok[R * TT], mask[R * TT];
    for (int i = 0; i < R * TT; i++) tok[i] = (i * 7 + 3) % cfg->n_vocab, mask[i] = !(i >= TT && i < TT + 2);
    hs_batch b = {.B = R, .T = TT, .tokens = tok, .mask = mask};
    const int L1 = cfg->n_layers - 1, Hh = cfg->n_heads;
    grab whole = {.layer = L1}, rows = {.layer = L1};
    hs_hooks hw = {.wants = grab_wants, .fn = grab_fn, .user = &whole}, hr = {.wants = grab_wants, .fn = grab_fn,
                                                                           .user = &rows};
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = HS_LOGITS_NONE;
    fp.hooks = &hw;
    cr_assert_eq(hs_forward(s, &b, &fp, NULL, &err), HS_OK, "%s", err.msg);
    const int32_t last[R] = {TT - 1, 5};
    fp.hooks = &hr;
    fp.pattern_rows = last;
    cr_assert_eq(hs_forward(s, &b, &fp, NULL, &err), HS_OK, "%s", err.msg);
    cr_assert(rows.shape[0] == R && rows.shape[1] == Hh && rows.shape[2] == 1 && rows.shape[3] == TT,
              "pattern_rows hook shape [%lld, %lld, %lld, %lld], want [%d, %d, 1, %d]", (long long)rows.shape[0],
              (long long)rows.shape[1], (long long)rows.shape[2], (long long)rows.shape[3], R, Hh, TT);
    for (int r = 0; r < R; r++)
        for (int h = 0; h < Hh; h++)
            cr_assert(!memcmp(rows.copy + ((int64_t)r * Hh + h) * TT,
                              whole.copy + (((int64_t)r * Hh + h) * TT + last[r]) * TT, sizeof(float) * TT),
                      "row %d head %d: the one-row pattern differs from the whole pattern's row %d", r, h, last[r]);
    const int32_t bad[R] = {0, TT};
    fp.pattern_rows = bad;
    cr_assert_eq(hs_forward(s, &b, &fp, NULL, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "pattern_rows[1]"), "error names the bad row: %s", err.msg);
    free(whole.copy), free(rows.copy);
    hs_session_free(s);
    hs_backend_free(be);
    hs_model_free(m);
}

/* Keys from a cache (T_kv, q_pos): two queries per row placed at q_pos[b] and
 * q_pos[b] + 1 of the same keys give the whole attention's rows there (z, lse,
 * pattern, with uniform heads, a window and one-row patterns), 0 past each
 * query; a q_pos past the keys and the backward are refused. */
Test(attention_op, cached_keys_give_the_whole_attentions_rows) {
    op_case c;
    op_init(&c);
    hs_err err = {0};
    enum { TQ = 2 };
    const int32_t qpos[B] = {T - TQ, 4, 7};
    for (int window = 0; window <= 4; window += 4)
        for (int one_row = 0; one_row < 2; one_row++) {
            float *pat = malloc(sizeof(float) * B * H * T * T), *dpat = malloc(sizeof(float) * B * H * TQ * T);
            float q[B * TQ * H * D], z[B * TQ * H * D], lse[B * H * TQ];
            cr_assert(pat && dpat);
            hs_attn_params p = op_params(&c, pat, NULL);
            p.window = window;
            cr_assert_eq(c.be->ops->attention(c.be, &p, &err), HS_OK, "%s", err.msg);
            for (int b = 0; b < B; b++)
                memcpy(q + (int64_t)b * TQ * H * D, c.q + ((int64_t)b * T + qpos[b]) * H * D, sizeof(float) * TQ * H * D);
            poison(z, sizeof z / sizeof *z), poison(lse, sizeof lse / sizeof *lse);
            poison(dpat, (size_t)B * H * TQ * T);
            const int32_t rows[B] = {1, 0, 1};
            hs_attn_params d = p;
            d.T = TQ, d.T_kv = T, d.q_pos = qpos, d.q = q, d.z = z, d.lse = lse, d.pattern = dpat;
            d.pattern_rows = one_row ? rows : NULL;
            cr_assert_eq(c.be->ops->attention(c.be, &d, &err), HS_OK, "%s", err.msg);
            for (int b = 0; b < B; b++)
                for (int t = 0; t < TQ; t++)
                    for (int h = 0; h < H; h++) {
                        const int ta = qpos[b] + t;
                        const float *zw = c.z + (((int64_t)b * T + ta) * H + h) * D, *zd = z + (((int64_t)b * TQ + t) * H + h) * D;
                        hs_test_cmp cz = hs_test_compare(zd, zw, D, 1e-6, 1e-6);
                        cr_assert(cz.n_bad == 0 && !cz.nan, "window %d row %d query %d head %d: z off by %g", window, b,
                                  t, h, cz.max_abs);
                        const float lw = c.lse[((int64_t)b * H + h) * T + ta], ld = lse[((int64_t)b * H + h) * TQ + t];
                        cr_assert(fabsf(lw - ld) <= 1e-6f * (1 + fabsf(lw)), "lse %g, whole %g", ld, lw);
                        if (one_row && rows[b] != t) continue;
                        const float *pw = pat + (((int64_t)b * H + h) * T + ta) * T;
                        const float *pd = dpat + (one_row ? ((int64_t)b * H + h) * T : (((int64_t)b * H + h) * TQ + t) * T);
                        for (int s = 0; s < T; s++)
                            cr_assert(fabsf(pd[s] - pw[s]) <= 1e-6f && (s <= ta || pd[s] == 0.0f),
                                      "window %d row %d query %d head %d key %d: pattern %g, whole %g", window, b, t, h,
                                      s, pd[s], pw[s]);
                    }
            const int32_t bad[B] = {T - TQ + 1, 0, 0};
            d.q_pos = bad;
            cr_assert_eq(c.be->ops->attention(c.be, &d, &err), HS_ERR_INVALID_ARG);
            cr_assert(strstr(err.msg, "q_pos[0] = 10"), "%s", err.msg);
            d.q_pos = qpos, d.uniform = NULL;
            cr_assert_eq(c.be->ops->attention_bwd(c.be, &d, z, z, z, z, &err), HS_ERR_UNSUPPORTED);
            cr_assert(strstr(err.msg, "cache"), "%s", err.msg);
            free(pat), free(dpat);
        }
    op_free(&c);
}
