/* hs_patching: clean -> corrupt activation patching with prefix reuse and
 * batched patches. Rows of a patched forward pass are "items": (prompt, head)
 * for z at all positions, (prompt, head, position) for z at one position,
 * (prompt, position) for resid_pre (which needs no edit: the patched residual
 * simply becomes the pass's starting state at that layer), attn_out and
 * mlp_out (a hook writes the clean row over the computed one before it is
 * added to the stream), (prompt, head) for q, k and v (a hook writes the
 * clean head's slice at every position before RoPE and attention), and
 * (prompt, head) for path_logits (z's edit, plus a hook that gives every
 * later layer its corrupted z, so those layers compute no attention) and for
 * path_heads (path_logits' pass, cut after the last receiver's layer, keeps
 * the receivers' input; a second pass from the first receiver's layer
 * patches it in). */
#include "headsweep/hs_patching.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_capture.h"
#include "hs_metric.h"
#include "hs_patching_internal.h"
#include "hs_resid_cache.h"

hs_patching_params hs_patching_default_params(void) {
    hs_patching_params p;
    memset(&p, 0, sizeof p);
    p.metric = HS_METRIC_LOGIT_DIFF;
    p.batch_rows = 16;
    p.targets = 1u << HS_PATCH_Z_ALL_POS;
    p.qk_fix = 1;
    p.receiver_input = HS_HOOK_Q;
    return p;
}

typedef struct {
    int prompt, head, pos; /* head or pos -1 where the target has none */
} item;

typedef struct {
    hs_session *s;
    const hs_model_config *c;
    const hs_prompts *pr;
    const int32_t *corrupt;
    const hs_patching_params *p;
    int p0, P, T, V, d, dh;
    int32_t *mask, *targets, *targets_clean; /* [N, T]; targets of the corrupted and clean prompts */
    float *zc;                          /* [L, P, T, H, dh] clean z */
    hs_resid_cache rx;                  /* corrupted resid_pre, backend memory */
    hs_resid_cache zx;                  /* path_logits, path_heads: the corrupted z, backend memory */
    hs_resid_cache rcv;                 /* path_heads: the receivers' input per batch row, layers 0..last receiver's */
    hs_resid_cache clean[HS_PATCH_COUNT]; /* per target that reads one: the clean activation, backend memory */
    void *dres;                         /* [batch_rows, T, d] a patched pass's resid_start */
    float *clean_logp;                  /* [P, V] */
    /* per-forward scratch, batch_rows rows */
    int32_t *tok, *msk, *tg;
    float *logits, *lp, *src, *scratch;
    hs_z_edit *edits;
} patch_ctx;

/* A patched pass's hook for attn_out, mlp_out, q, k or v: each batch row
 * gets the clean prompt's row at its item's position, or its item head's
 * slice at every position. */
typedef struct {
    const hs_resid_cache *clean;
    const item *it;         /* the pass's items, one per batch row */
    const int32_t *lengths; /* of the chunk's prompts */
    int B, layer, dh;
} row_patch;

static int patch_wants(void *user, hs_hook_point p, int layer) {
    const row_patch *rp = user;
    return p == rp->clean->point && layer == rp->layer;
}

static hs_status patch_fn(void *user, hs_hook_point p, int layer, hs_tensor *t, hs_err *err) {
    const row_patch *rp = user;
    hs_status st = HS_OK;
    for (int r = 0; st == HS_OK && r < rp->B; r++) {
        const item *e = &rp->it[r];
        st = e->head < 0 ? hs_resid_cache_get(rp->clean, layer, e->prompt, e->pos, t->data, r, err)
                         : hs_resid_cache_get_cols(rp->clean, layer, e->prompt, e->head * rp->dh, rp->dh,
                                                   rp->lengths[e->prompt], t->data, r, err);
    }
    return st;
}

/* A path-patching pass's hook: every head of the layers after the patched
 * one keeps its corrupted z, whatever the patch changed in its input (the
 * pass's z_from_hook: the forward computes no attention there). */
typedef struct {
    const hs_resid_cache *corrupt_z;
    const item *it;
    int B, layer;
} row_freeze;

static int freeze_wants(void *user, hs_hook_point p, int layer) {
    const row_freeze *rf = user;
    return p == HS_HOOK_Z && layer > rf->layer;
}

static hs_status freeze_fn(void *user, hs_hook_point p, int layer, hs_tensor *t, hs_err *err) {
    const row_freeze *rf = user;
    hs_status st = HS_OK;
    for (int r = 0; st == HS_OK && r < rf->B; r++)
        st = hs_resid_cache_get(rf->corrupt_z, layer, rf->it[r].prompt, -1, t->data, r, err);
    return st;
}

/* path_heads' second pass: each batch row's receivers (at layers after the
 * sender's) get their input from the first pass, kept in rcv. */
typedef struct {
    const hs_resid_cache *rcv;
    const hs_patching_params *p;
    const item *it;
    const int32_t *lengths;
    int B, layer, dh;
} recv_patch;

static int recv_wants(void *user, hs_hook_point pt, int layer) {
    const recv_patch *rp = user;
    for (int i = 0; pt == rp->p->receiver_input && layer > rp->layer && i < rp->p->n_receivers; i++)
        if (rp->p->receivers[2 * i] == layer) return 1;
    return 0;
}

static hs_status recv_fn(void *user, hs_hook_point pt, int layer, hs_tensor *t, hs_err *err) {
    const recv_patch *rp = user;
    hs_status st = HS_OK;
    for (int r = 0; st == HS_OK && r < rp->B; r++)
        for (int i = 0; st == HS_OK && i < rp->p->n_receivers; i++)
            if (rp->p->receivers[2 * i] == layer)
                st = hs_resid_cache_get_cols(rp->rcv, layer, r, rp->p->receivers[2 * i + 1] * rp->dh, rp->dh,
                                             rp->lengths[rp->it[r].prompt], t->data, r, err);
    return st;
}

/* The layer of path_heads' last receiver, and of its first after layer l
 * (-1 if none). */
static int receivers_last(const hs_patching_params *p) {
    int m = -1;
    for (int i = 0; i < p->n_receivers; i++) m = p->receivers[2 * i] > m ? p->receivers[2 * i] : m;
    return m;
}
static int receivers_first_after(const hs_patching_params *p, int l) {
    int m = -1;
    for (int i = 0; i < p->n_receivers; i++)
        if (p->receivers[2 * i] > l && (m < 0 || p->receivers[2 * i] < m)) m = p->receivers[2 * i];
    return m;
}

/* path_heads' first pass over B rows whose senders sit at layer l (edits
 * ready, dres holding the corrupted resid_pre[l]): path_logits' pass (its
 * freeze hooks), up to the last receiver's layer, keeping the receivers'
 * input hook in rcv. Then dres holds the corrupted resid_pre of the first
 * receiver layer after l, where the second pass starts. */
static hs_status receiver_pass(patch_ctx *x, int l, const item *it, int B, int ne, const hs_hooks *freeze,
                               hs_batch *b, int *start, hs_err *err) {
    const hs_hooks keep = hs_resid_cache_hooks(&x->rcv, freeze);
    hs_forward_params fp = hs_forward_default_params();
    fp.start_layer = l;
    fp.stop_layer = receivers_last(x->p) + 1;
    fp.z_from_hook = l + 1; /* the freeze hook's */
    fp.resid_start_dev = x->dres;
    fp.edits = x->edits;
    fp.n_edits = ne;
    fp.hooks = &keep;
    fp.logits = HS_LOGITS_NONE;
    hs_status st = hs_forward(x->s, b, &fp, NULL, err);
    *start = receivers_first_after(x->p, l);
    for (int r = 0; st == HS_OK && r < B; r++) st = hs_resid_cache_get(&x->rx, *start, it[r].prompt, -1, x->dres, r, err);
    return st;
}

/* Where target tgt's cell of item e at layer l goes. */
static float *cell(const patch_ctx *x, hs_patching_out *out, hs_patch_target tgt, int l, const item *e) {
    int per_pos;
    const int64_t g = x->p0 + e->prompt, inner = hs_patch_target_cells(x->c, tgt, &per_pos);
    float *row = hs_patch_out(out, tgt) + (g * x->c->n_layers + l) * (per_pos ? x->T * inner : inner);
    return row + (per_pos ? e->pos * inner : 0) + (e->head < 0 ? 0 : e->head);
}

/* Runs the items of one layer in batches and stores each item's metric. */
static hs_status run_items(patch_ctx *x, hs_patch_target tgt, int l, const item *it, int n, hs_patching_out *out,
                           hs_err *err) {
    const int R = x->p->batch_rows, T = x->T, dh = x->dh, H = x->c->n_heads;
    hs_status st = HS_OK;
    for (int k0 = 0; k0 < n; k0 += R) {
        const int B = n - k0 < R ? n - k0 : R;
        int ne = 0;
        for (int r = 0; r < B; r++) {
            const item *e = &it[k0 + r];
            const int g = x->p0 + e->prompt;
            memcpy(x->tok + (int64_t)r * T, x->corrupt + (int64_t)g * T, (size_t)T * sizeof(int32_t));
            memcpy(x->msk + (int64_t)r * T, x->mask + (int64_t)g * T, (size_t)T * sizeof(int32_t));
            memcpy(x->tg + (int64_t)r * T, x->targets + (int64_t)g * T, (size_t)T * sizeof(int32_t));
            if ((st = hs_resid_cache_get(&x->rx, l, e->prompt, -1, x->dres, r, err))) return st;
            const float *zl = x->zc + ((int64_t)l * x->P + e->prompt) * T * H * dh; /* [T, H, dh] */
            if (tgt == HS_PATCH_RESID_PRE) {
                if ((st = hs_resid_cache_get(&x->clean[tgt], l, e->prompt, e->pos, x->dres, r, err))) return st;
            } else if (tgt != HS_PATCH_Z_ALL_POS && tgt != HS_PATCH_Z_BY_POS && tgt != HS_PATCH_PATH_LOGITS &&
                       tgt != HS_PATCH_PATH_HEADS) {
                /* patched by the hook below */
            } else if (tgt != HS_PATCH_Z_BY_POS) { /* the head's z at every position */
                float *src = x->src + (int64_t)r * T * dh; /* the head's clean z, [T, dh] */
                for (int t = 0; t < T; t++) memcpy(src + t * dh, zl + ((int64_t)t * H + e->head) * dh, (size_t)dh * sizeof(float));
                x->edits[ne++] = (hs_z_edit){.row = r, .layer = l, .head = e->head, .pos = -1, .mode = HS_EDIT_SET, .src = src};
            } else {
                x->edits[ne++] = (hs_z_edit){.row = r, .layer = l, .head = e->head, .pos = e->pos, .mode = HS_EDIT_SET,
                                             .src = zl + ((int64_t)e->pos * H + e->head) * dh};
            }
        }
        hs_batch b = {.B = B, .T = T, .tokens = x->tok, .mask = x->msk, .targets = x->tg};
        hs_forward_params fp = hs_forward_default_params();
        fp.start_layer = l;
        fp.resid_start_dev = x->dres;
        fp.edits = x->edits;
        fp.n_edits = ne;
        fp.logits = hs_metric_logits(x->p->metric);
        fp.target_logprobs = x->p->metric == HS_METRIC_LOSS ? x->lp : NULL;
        row_patch rp = {.clean = &x->clean[tgt], .it = it + k0, .lengths = x->pr->lengths + x->p0, .B = B,
                        .layer = l, .dh = dh};
        const hs_hooks patch = {.wants = patch_wants, .fn = patch_fn, .user = &rp};
        if (tgt >= HS_PATCH_ATTN_OUT && tgt <= HS_PATCH_V_ALL_POS) fp.hooks = &patch;
        row_freeze rf = {.corrupt_z = &x->zx, .it = it + k0, .B = B, .layer = l};
        const hs_hooks freeze = {.wants = freeze_wants, .fn = freeze_fn, .user = &rf};
        if (tgt == HS_PATCH_PATH_LOGITS) fp.hooks = &freeze, fp.z_from_hook = l + 1;
        recv_patch rcv = {.rcv = &x->rcv, .p = x->p, .it = it + k0, .lengths = x->pr->lengths + x->p0, .B = B,
                          .layer = l, .dh = dh};
        const hs_hooks recv = {.wants = recv_wants, .fn = recv_fn, .user = &rcv};
        if (tgt == HS_PATCH_PATH_HEADS) {
            if ((st = receiver_pass(x, l, it + k0, B, ne, &freeze, &b, &fp.start_layer, err))) return st;
            fp.edits = NULL;
            fp.n_edits = 0;
            fp.hooks = &recv;
        }
        if ((st = hs_forward(x->s, &b, &fp, x->logits, err))) return st;
        for (int r = 0; r < B; r++) {
            const item *e = &it[k0 + r];
            const int g = x->p0 + e->prompt;
            double v = hs_row_metric(x->p->metric, x->pr, g, x->logits + (int64_t)r * x->V, x->lp + (int64_t)r * T, x->V,
                                     x->clean_logp + (int64_t)e->prompt * x->V, x->scratch);
            *cell(x, out, tgt, l, e) = (float)v;
        }
    }
    return st;
}

/* One unedited pass over prompts p0..p0+P-1 (clean or corrupted tokens):
 * metrics, z copied out of the capture (z_out) and the hook points of the
 * caches kept in backend memory, each where asked for. */
static hs_status base_pass(patch_ctx *x, hs_capture *cap, const int32_t *tokens, const int32_t *targets,
                           float *metric_out, float *z_out, hs_resid_cache *const *caches, int n_caches, int keep_logp,
                           hs_err *err) {
    const int T = x->T, L = x->c->n_layers, P = x->P;
    hs_batch b = {.B = P, .T = T, .tokens = tokens + (int64_t)x->p0 * T, .mask = x->mask + (int64_t)x->p0 * T,
                  .targets = targets + (int64_t)x->p0 * T};
    hs_hooks chain[HS_PATCH_COUNT + 1]; /* the capture's hooks, then each cache's passing on to the one before */
    chain[0] = hs_capture_hooks(cap);
    for (int i = 0; i < n_caches; i++) chain[i + 1] = hs_resid_cache_hooks(caches[i], &chain[i]);
    hs_forward_params fp = hs_forward_default_params();
    fp.hooks = &chain[n_caches];
    fp.logits = hs_metric_logits(x->p->metric);
    fp.target_logprobs = x->p->metric == HS_METRIC_LOSS ? x->lp : NULL;
    hs_status st = hs_forward(x->s, &b, &fp, x->logits, err);
    if (st) return st;
    if (keep_logp && x->p->metric == HS_METRIC_KL) /* only KL reads the clean distribution */
        for (int i = 0; i < P; i++) hs_log_softmax(x->logits + (int64_t)i * x->V, x->V, x->clean_logp + (int64_t)i * x->V);
    for (int i = 0; i < P; i++)
        metric_out[x->p0 + i] = (float)hs_row_metric(x->p->metric, x->pr, x->p0 + i, x->logits + (int64_t)i * x->V,
                                                     x->lp + (int64_t)i * T, x->V, x->clean_logp + (int64_t)i * x->V,
                                                     x->scratch);
    const int64_t zn = (int64_t)P * T * x->c->n_heads * x->dh;
    for (int l = 0; z_out && l < L; l++)
        memcpy(z_out + l * zn, hs_capture_get(cap, HS_HOOK_Z, l, NULL), (size_t)zn * sizeof(float));
    return HS_OK;
}

float *hs_patch_out(const hs_patching_out *out, hs_patch_target k) {
    float *const bufs[HS_PATCH_COUNT] = {out->z_all_pos, out->z_by_pos,  out->resid_pre,   out->attn_out,
                                         out->mlp_out,   out->q_all_pos, out->k_all_pos,   out->v_all_pos,
                                         out->path_logits, out->path_heads};
    return bufs[k];
}

int hs_patch_target_cells(const hs_model_config *c, hs_patch_target k, int *per_pos) {
    *per_pos = k >= HS_PATCH_Z_BY_POS && k <= HS_PATCH_MLP_OUT;
    if (k == HS_PATCH_K_ALL_POS || k == HS_PATCH_V_ALL_POS) return c->n_kv_heads;
    return *per_pos && k != HS_PATCH_Z_BY_POS ? 1 : c->n_heads;
}

hs_status hs_patching_prepare(const hs_patching_params *p, hs_patching_out *out, const hs_model_config *c, int N,
                              int T, int want[HS_PATCH_COUNT], const char *who, hs_err *err) {
    static const char *const names[HS_PATCH_COUNT] = {"z_all_pos", "z_by_pos",  "resid_pre", "attn_out",
                                                      "mlp_out",   "q_all_pos", "k_all_pos", "v_all_pos",
                                                      "path_logits", "path_heads"};
    if (p->batch_rows < 1) return hs_err_set(err, HS_ERR_INVALID_ARG, "%s: batch_rows must be >= 1", who);
    if (!p->targets || p->targets >= (1u << HS_PATCH_COUNT))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "%s: targets 0x%x: at least one known target needed", who,
                          p->targets);
    for (int k = 0; k < HS_PATCH_COUNT; k++) {
        want[k] = !!(p->targets & (1u << k));
        if (want[k] && !hs_patch_out(out, (hs_patch_target)k))
            return hs_err_set(err, HS_ERR_INVALID_ARG, "%s: no output buffer for the requested target %s", who,
                              names[k]);
    }
    for (int k = 0; k < HS_PATCH_COUNT; k++) { /* the per-position targets: NAN beyond each prompt */
        int per_pos;
        const int64_t n = (int64_t)N * c->n_layers * T * hs_patch_target_cells(c, (hs_patch_target)k, &per_pos);
        float *buf = hs_patch_out(out, (hs_patch_target)k);
        for (int64_t i = 0; want[k] && per_pos && i < n; i++) buf[i] = NAN;
    }
    if (want[HS_PATCH_PATH_HEADS]) {
        const hs_hook_point in = p->receiver_input;
        const int nh = in == HS_HOOK_Q ? c->n_heads : c->n_kv_heads;
        if (in != HS_HOOK_Q && in != HS_HOOK_K && in != HS_HOOK_V)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "%s: path_heads: the receivers' input must be q, k or v", who);
        if (p->n_receivers < 1 || !p->receivers)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "%s: path_heads needs at least one receiver", who);
        for (int i = 0; i < p->n_receivers; i++) {
            const int l = p->receivers[2 * i], h = p->receivers[2 * i + 1];
            if (l < 0 || l >= c->n_layers || h < 0 || h >= nh)
                return hs_err_set(err, HS_ERR_INVALID_ARG,
                                  "%s: path_heads receiver %d (layer %d, head %d) is outside the model's %d layers "
                                  "x %d %s heads",
                                  who, i, l, h, c->n_layers, nh, in == HS_HOOK_Q ? "query" : "key/value");
        }
        /* no path from a sender at or after the last receiver's layer */
        for (int64_t g = 0; g < N; g++)
            for (int l = receivers_last(p); l < c->n_layers; l++)
                for (int h = 0; h < c->n_heads; h++) out->path_heads[(g * c->n_layers + l) * c->n_heads + h] = NAN;
    }
    return HS_OK;
}

hs_hook_point hs_patch_target_point(hs_patch_target k) {
    static const hs_hook_point points[HS_PATCH_COUNT] = {
        [HS_PATCH_Z_ALL_POS] = HS_HOOK_Z,       [HS_PATCH_Z_BY_POS] = HS_HOOK_Z,  [HS_PATCH_RESID_PRE] = HS_HOOK_RESID_PRE,
        [HS_PATCH_ATTN_OUT] = HS_HOOK_ATTN_OUT, [HS_PATCH_MLP_OUT] = HS_HOOK_MLP_OUT, [HS_PATCH_Q_ALL_POS] = HS_HOOK_Q,
        [HS_PATCH_K_ALL_POS] = HS_HOOK_K,       [HS_PATCH_V_ALL_POS] = HS_HOOK_V, [HS_PATCH_PATH_LOGITS] = HS_HOOK_Z,
        [HS_PATCH_PATH_HEADS] = HS_HOOK_Z};
    return points[k];
}

int64_t hs_patch_target_width(const hs_model_config *c, hs_patch_target k) {
    const hs_hook_point p = hs_patch_target_point(k);
    if (p == HS_HOOK_Z || p == HS_HOOK_Q) return (int64_t)c->n_heads * c->d_head;
    if (p == HS_HOOK_K || p == HS_HOOK_V) return (int64_t)c->n_kv_heads * c->d_head;
    return c->d_model;
}

int hs_activation_patching_unit(const hs_model *m, const hs_patching_params *p) {
    const int H = hs_model_get_config(m)->n_heads;
    return p->batch_rows / H > 0 ? p->batch_rows / H : 1;
}

hs_status hs_activation_patching(hs_session *s, const hs_model *m, const hs_prompts *pr, const int32_t *corrupt,
                                 const hs_patching_params *p, hs_patching_out *out, hs_err *err) {
    const hs_model_config *c = hs_model_get_config(m);
    const int N = pr->N, T = pr->T, L = c->n_layers, H = c->n_heads, R = p->batch_rows;
    int want[HS_PATCH_COUNT];
    hs_status st = hs_metric_check(c, pr, p->metric, err);
    if (st) return hs_err_prefix(err, "patching");
    if ((st = hs_patching_prepare(p, out, c, N, T, want, "patching", err))) return st;
    patch_ctx x;
    memset(&x, 0, sizeof x);
    x.s = s, x.c = c, x.pr = pr, x.corrupt = corrupt, x.p = p, x.T = T, x.V = c->n_vocab, x.d = c->d_model;
    x.dh = c->d_head;
    const int P_max = hs_activation_patching_unit(m, p);
    const int64_t nz = (int64_t)L * P_max * T * H * x.dh;
    hs_backend *be = hs_session_backend(s);
    hs_capture *cap_c = NULL, *cap_x = NULL;
    item *items = malloc((size_t)P_max * H * T * sizeof *items);
    x.mask = malloc((size_t)N * T * sizeof(int32_t));
    x.targets = malloc((size_t)N * T * sizeof(int32_t));
    x.targets_clean = malloc((size_t)N * T * sizeof(int32_t));
    x.zc = malloc((size_t)nz * sizeof(float));
    x.clean_logp = malloc((size_t)P_max * x.V * sizeof(float));
    x.tok = malloc((size_t)R * T * sizeof(int32_t));
    x.msk = malloc((size_t)R * T * sizeof(int32_t));
    x.tg = malloc((size_t)R * T * sizeof(int32_t));
    x.logits = malloc((size_t)(R > P_max ? R : P_max) * x.V * sizeof(float));
    x.lp = malloc((size_t)(R > P_max ? R : P_max) * T * sizeof(float));
    x.src = malloc((size_t)R * T * x.dh * sizeof(float));
    x.scratch = malloc((size_t)x.V * sizeof(float));
    x.edits = malloc((size_t)R * sizeof *x.edits);
    if (!items || !x.mask || !x.targets || !x.targets_clean || !x.zc || !x.clean_logp || !x.tok || !x.msk || !x.tg ||
        !x.logits || !x.lp || !x.src || !x.scratch || !x.edits)
        HS_FAIL(err, HS_ERR_OOM, "patching: out of memory for %d rows x %d tokens", R, T);
    /* a clean cache for each target that reads one (z comes from the capture) */
    const int Hk = c->n_kv_heads;
    hs_resid_cache *clean[HS_PATCH_COUNT];
    int n_clean = 0;
    for (int k = HS_PATCH_RESID_PRE; k <= HS_PATCH_V_ALL_POS; k++)
        if (want[k]) {
            HS_CHECK(hs_resid_cache_init(&x.clean[k], be, hs_patch_target_point((hs_patch_target)k), L, P_max, T,
                                         (int)hs_patch_target_width(c, (hs_patch_target)k), err));
            clean[n_clean++] = &x.clean[k];
        }
    HS_CHECK(hs_resid_cache_init(&x.rx, be, HS_HOOK_RESID_PRE, L, P_max, T, x.d, err));
    hs_resid_cache *corrupt_caches[2] = {&x.rx, &x.zx};
    const int paths = want[HS_PATCH_PATH_LOGITS] || want[HS_PATCH_PATH_HEADS];
    if (paths) HS_CHECK(hs_resid_cache_init(&x.zx, be, HS_HOOK_Z, L, P_max, T, H * x.dh, err));
    if (want[HS_PATCH_PATH_HEADS]) /* layers up to the last receiver's: the first pass stops there */
        HS_CHECK(hs_resid_cache_init(&x.rcv, be, p->receiver_input, receivers_last(p) + 1, R, T,
                                     (p->receiver_input == HS_HOOK_Q ? H : Hk) * x.dh, err));
    HS_CHECK(be->ops->alloc(be, (size_t)R * x.rx.row_bytes, &x.dres, err));
    hs_prompts_mask_targets(pr, corrupt, x.mask, x.targets);
    hs_prompts_mask_targets(pr, NULL, NULL, x.targets_clean);
    HS_CHECK(hs_capture_init(be, &cap_c, err));
    HS_CHECK(hs_capture_init(be, &cap_x, err));
    HS_CHECK(hs_capture_want(cap_c, HS_HOOK_Z, -1, err));
    const int chunks = (N + P_max - 1) / P_max;
    for (x.p0 = 0; x.p0 < N; x.p0 += P_max) {
        x.P = N - x.p0 < P_max ? N - x.p0 : P_max;
        HS_CHECK(base_pass(&x, cap_c, pr->tokens, x.targets_clean, out->clean, x.zc, clean, n_clean, 1, err));
        HS_CHECK(base_pass(&x, cap_x, corrupt, x.targets, out->corrupt, NULL, corrupt_caches,
                           paths ? 2 : 1, 0, err));
        for (int l = 0; l < L; l++) {
            int n = 0;
            const hs_patch_target per_head[3] = {HS_PATCH_Z_ALL_POS, HS_PATCH_PATH_LOGITS, HS_PATCH_PATH_HEADS};
            for (int j = 0; j < 3; j++) { /* z at every position */
                if (!want[per_head[j]] || (per_head[j] == HS_PATCH_PATH_HEADS && l >= receivers_last(p))) continue;
                n = 0;
                for (int i = 0; i < x.P; i++)
                    for (int h = 0; h < H; h++) items[n++] = (item){i, h, -1};
                HS_CHECK(run_items(&x, per_head[j], l, items, n, out, err));
            }
            if (want[HS_PATCH_Z_BY_POS]) {
                n = 0;
                for (int i = 0; i < x.P; i++)
                    for (int t = 0; t < pr->lengths[x.p0 + i]; t++)
                        for (int h = 0; h < H; h++) items[n++] = (item){i, h, t};
                HS_CHECK(run_items(&x, HS_PATCH_Z_BY_POS, l, items, n, out, err));
            }
            for (int k = HS_PATCH_RESID_PRE; k <= HS_PATCH_MLP_OUT; k++) { /* one cell per position */
                if (!want[k]) continue;
                n = 0;
                for (int i = 0; i < x.P; i++)
                    for (int t = 0; t < pr->lengths[x.p0 + i]; t++) items[n++] = (item){i, -1, t};
                HS_CHECK(run_items(&x, (hs_patch_target)k, l, items, n, out, err));
            }
            for (int k = HS_PATCH_Q_ALL_POS; k <= HS_PATCH_V_ALL_POS; k++) { /* one cell per (KV) head */
                if (!want[k]) continue;
                n = 0;
                for (int i = 0; i < x.P; i++)
                    for (int h = 0; h < (k == HS_PATCH_Q_ALL_POS ? H : Hk); h++) items[n++] = (item){i, h, -1};
                HS_CHECK(run_items(&x, (hs_patch_target)k, l, items, n, out, err));
            }
            if (p->progress && p->progress(p->progress_user, (x.p0 / P_max) * L + l + 1, chunks * L))
                HS_FAIL(err, HS_ERR_INVALID_ARG, "patching: interrupted at layer %d", l);
        }
    }
exit:
    hs_capture_free(cap_c);
    hs_capture_free(cap_x);
    for (int k = 0; k < HS_PATCH_COUNT; k++) hs_resid_cache_free(&x.clean[k]);
    hs_resid_cache_free(&x.rx);
    hs_resid_cache_free(&x.zx);
    hs_resid_cache_free(&x.rcv);
    if (x.dres) be->ops->free(be, x.dres);
    free(items), free(x.mask), free(x.targets), free(x.targets_clean), free(x.zc), free(x.clean_logp);
    free(x.tok), free(x.msk), free(x.tg), free(x.logits), free(x.lp), free(x.src), free(x.scratch);
    free(x.edits);
    return st;
}
