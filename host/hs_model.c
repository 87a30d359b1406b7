/* hs_model: loader dispatch (folder, .gguf, HF cache id), tracked weight
 * allocations, random models, and configuration checks. */
#include "hs_model_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

hs_model *hs_model_new_empty(void) { return calloc(1, sizeof(hs_model)); }

hs_status hs_model_alloc_layers(hs_model *m, hs_err *err) {
    if (m->cfg.n_layers <= 0 || m->cfg.n_layers > 100000)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: invalid layer count %d", m->path, m->cfg.n_layers);
    m->w.layers = calloc((size_t)m->cfg.n_layers, sizeof *m->w.layers);
    if (!m->w.layers) return hs_err_set(err, HS_ERR_OOM, "%s: out of memory for layers", m->path);
    return HS_OK;
}

hs_status hs_model_alloc_f32(hs_model *m, int64_t n, float **out, hs_err *err) {
    *out = NULL;
    if (n <= 0 || n > (int64_t)1 << 40)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "%s: bad weight size %lld", m->path, (long long)n);
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 64;
        float **p = realloc(m->owned, (size_t)cap * sizeof *p);
        if (!p) return hs_err_set(err, HS_ERR_OOM, "%s: out of memory", m->path);
        m->owned = p;
        m->cap_owned = cap;
    }
    float *buf = malloc((size_t)n * sizeof(float));
    if (!buf)
        return hs_err_set(err, HS_ERR_OOM, "%s: out of memory for %lld weights", m->path, (long long)n);
    m->owned[m->n_owned++] = buf;
    m->n_params += n;
    *out = buf;
    return HS_OK;
}

void hs_model_note_dtype(hs_model *m, const char *name) {
    size_t len = strlen(m->src_dtypes), nl = strlen(name);
    /* already listed? match whole comma-separated items */
    for (const char *p = m->src_dtypes; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == nl && !strncmp(p, name, nl)) return;
        p += l + (e ? 1 : 0);
    }
    if (len + nl + 2 > sizeof m->src_dtypes) return;
    if (len) m->src_dtypes[len++] = ',';
    memcpy(m->src_dtypes + len, name, nl + 1);
}

void hs_model_free(hs_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->w.layers);
    free(m);
}

const hs_model_config *hs_model_get_config(const hs_model *m) { return &m->cfg; }
const hs_model_weights *hs_model_get_weights(const hs_model *m) { return &m->w; }
const char *hs_model_get_path(const hs_model *m) { return m->path; }
const char *hs_model_get_format(const hs_model *m) { return m->format; }
const char *hs_model_get_source_dtypes(const hs_model *m) { return m->src_dtypes; }
int64_t hs_model_n_params(const hs_model *m) { return m->n_params; }

/* YaRN's blend bounds, in dims, as transformers' find_correction_range (in double). */
static void yarn_range(const hs_model_config *c, int rot, double *lo, double *hi) {
    const double base = c->rope_theta, orig = c->rope_original_ctx, two_pi = 6.283185307179586;
    *lo = rot * log(orig / (c->rope_beta_fast * two_pi)) / (2.0 * log(base));
    *hi = rot * log(orig / (c->rope_beta_slow * two_pi)) / (2.0 * log(base));
    if (c->rope_truncate) *lo = floor(*lo), *hi = ceil(*hi);
    *lo = *lo > 0.0 ? *lo : 0.0;
    *hi = *hi < rot - 1 ? *hi : rot - 1;
    if (*lo == *hi) *hi += 0.001; /* as transformers avoids the singular ramp */
}

static void rope_inv_freq(const hs_model_config *c, const hs_model_weights *w, int use_long, float *out) {
    const int rot = c->rot_dim ? c->rot_dim : c->d_head;
    double y_lo = 0.0, y_hi = 1.0;
    if (c->rope_scaling == HS_ROPE_SCALING_YARN) yarn_range(c, rot, &y_lo, &y_hi);
    /* HF's llama3 rescaling, in f32 like its tensors: wavelengths above the original context's
     * (low frequencies) are slowed by factor, those under original / high_freq_factor are kept,
     * and the band between is blended linearly in original / wavelength. */
    const float factor = c->rope_factor, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    const float orig = (float)c->rope_original_ctx, lo_wl = orig / lo, hi_wl = orig / hi;
    for (int i = 0; i < rot / 2; i++) {
        float inv = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)rot);
        if (c->rope_scaling == HS_ROPE_SCALING_LINEAR) {
            inv /= factor;
        } else if (c->rope_scaling == HS_ROPE_SCALING_LLAMA3) {
            const float wavelen = 6.28318548f / inv, scaled = wavelen > lo_wl ? inv / factor : inv;
            const float smooth = (orig / wavelen - lo) / (hi - lo);
            const int medium = !(wavelen < hi_wl) && !(wavelen > lo_wl);
            inv = medium ? (1.0f - smooth) * scaled / factor + smooth * scaled : scaled;
        } else if (c->rope_scaling == HS_ROPE_SCALING_YARN) {
            /* HF's f32 tensors: the unscaled frequency (extrapolation) on the fast dims, the
             * one divided by factor (interpolation) on the slow ones, a linear ramp between */
            const float pos_freq = powf(c->rope_theta, (float)(2 * i) / (float)rot);
            float ramp = ((float)i - (float)y_lo) / (float)(y_hi - y_lo);
            ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
            const float extrap = 1.0f - ramp;
            inv = 1.0f / (factor * pos_freq) * (1.0f - extrap) + 1.0f / pos_freq * extrap;
        } else if (c->rope_scaling == HS_ROPE_SCALING_LONGROPE) { /* HF: 1 / (ext * base^(2i/rot)) */
            const float ext = use_long ? c->rope_long_factor[i] : c->rope_short_factor[i];
            inv = 1.0f / (ext * powf(c->rope_theta, (float)(2 * i) / (float)rot));
        }
        if (w && w->rope_freq_factors) inv /= w->rope_freq_factors[i];
        out[i] = inv;
    }
}

void hs_model_rope_inv_freq(const hs_model_config *c, const hs_model_weights *w, float *out) {
    rope_inv_freq(c, w, 0, out);
}

void hs_model_rope_inv_freq_long(const hs_model_config *c, const hs_model_weights *w, float *out) {
    rope_inv_freq(c, w, 1, out);
}

int hs_model_rope_long(const hs_model_config *c, int64_t n_pos) {
    return c->rope_scaling == HS_ROPE_SCALING_LONGROPE && n_pos > c->rope_original_ctx;
}

int hs_model_layer_slides(const hs_model_config *c, int l) {
    return l >= c->window_from && (c->global_every <= 0 || (l - c->window_from + 1) % c->global_every != 0);
}

int hs_model_layer_window(const hs_model_config *c, int l) {
    return c->sliding_window > 0 && hs_model_layer_slides(c, l) ? c->sliding_window : 0;
}

int hs_model_layer_rotates(const hs_model_config *c, int l) {
    return c->rope != HS_ROPE_NONE && !(c->nope_every > 0 && (l + 1) % c->nope_every == 0);
}

int hs_model_layer_rope_local(const hs_model_config *c, int l) {
    return c->rope_local_theta > 0.0f && hs_model_layer_slides(c, l);
}

void hs_model_rope_inv_freq_local(const hs_model_config *c, float *out) {
    hs_model_config local = *c;
    local.rope_theta = c->rope_local_theta;
    local.rope_scaling = HS_ROPE_SCALING_NONE;
    hs_model_rope_inv_freq(&local, NULL, out);
}

float hs_model_rope_attn_factor(const hs_model_config *c) {
    const int scaled = c->rope_scaling == HS_ROPE_SCALING_YARN || c->rope_scaling == HS_ROPE_SCALING_LONGROPE;
    return scaled ? c->rope_attn_factor : 1.0f; /* validated positive */
}

int hs_model_qk_norm_width(const hs_model_config *c, int kv) {
    return c->qk_norm_all ? (kv ? c->n_kv_heads : c->n_heads) * c->d_head : c->d_head;
}

int hs_model_qk_norm_rows(const hs_model_config *c, int kv) {
    return c->qk_norm_per_head && !c->qk_norm_all ? (kv ? c->n_kv_heads : c->n_heads) : 1;
}

hs_status hs_model_layout_of(const char *path, const char *key, const uint8_t *slides, hs_model_config *c, hs_err *err) {
    const int n = c->n_layers;
    c->window_from = n, c->global_every = 0; /* the first sliding layer, then the first full layer after it */
    for (int l = 0; l < n; l++) {
        if (slides[l] && c->window_from == n) c->window_from = l;
        if (!slides[l] && c->window_from < l && !c->global_every) c->global_every = l - c->window_from + 1;
    }
    for (int l = 0; l < n; l++)
        if (slides[l] != hs_model_layer_slides(c, l))
            return hs_err_set(err, HS_ERR_UNSUPPORTED,
                              "%s: %s: only sliding layers from one layer on, with a full layer every N "
                              "among them, are supported (layer %d breaks the pattern)",
                              path, key, l);
    return HS_OK;
}

void hs_model_alibi_slopes(const hs_model_config *c, float *out) {
    int p2 = 1;
    while (2 * p2 <= c->n_heads) p2 *= 2;
    /* bases 2^(-8/P) and 2^(-4/P) in double as Python forms them, raised in f32 as torch.pow does */
    const float base = (float)exp2(-8.0 / p2), extra = (float)exp2(-4.0 / p2);
    for (int i = 0; i < c->n_heads; i++)
        out[i] = i < p2 ? powf(base, (float)(i + 1)) : powf(extra, (float)(2 * (i - p2) + 1));
    if (c->alibi_scale > 0.0f)
        for (int i = 0; i < c->n_heads; i++) out[i] *= c->alibi_scale;
}

float hs_model_attn_scale(const hs_model_config *c) {
    return c->attn_scale > 0.0f ? c->attn_scale : 1.0f / sqrtf((float)c->d_head);
}

hs_status hs_model_config_validate(const hs_model_config *c, const char *src, hs_err *err) {
#define POS(field)                                                                               \
    if (c->field <= 0)                                                                           \
        return hs_err_set(err, HS_ERR_FORMAT, "%s: config '%s' must be positive (got %d)", src,  \
                          #field, (int)c->field);
    POS(n_layers) POS(n_heads) POS(n_kv_heads) POS(d_model) POS(d_head) POS(d_mlp) POS(n_vocab)
    POS(n_ctx)
#undef POS
    if (c->n_heads % c->n_kv_heads != 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: n_heads %d is not a multiple of n_kv_heads %d", src,
                          c->n_heads, c->n_kv_heads);
    if (c->rope != HS_ROPE_NONE && c->d_head % 2 != 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: RoPE needs an even head dimension (got %d)", src, c->d_head);
    if (c->rot_dim < 0 || c->rot_dim > c->d_head || c->rot_dim % 2 != 0 || (c->rot_dim && c->rope == HS_ROPE_NONE))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: rotary dims %d must be even, within the head's %d and need RoPE",
                          src, c->rot_dim, c->d_head);
    if (!(c->norm_eps > 0.0f) || c->norm_eps > 1.0f)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: norm epsilon %g out of range", src, (double)c->norm_eps);
    if ((c->qk_norm_all && !c->qk_norm) || (c->no_pre_norms && !c->post_norms))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: q/k norms over all heads need q/k norms; no pre-norms need post-norms", src);
    if (c->qk_norm && c->rope == HS_ROPE_NONE)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: q/k norms need RoPE", src);
    if (c->sliding_window < 0 || c->window_from < 0 || c->global_every < 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: sliding window %d, from layer %d, global every %d: none may be negative",
                          src, c->sliding_window, c->window_from, c->global_every);
    if (c->nope_every < 0 || (c->nope_every > 0 && c->rope == HS_ROPE_NONE))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: NoPE every %d layers: needs RoPE, may not be negative", src,
                          c->nope_every);
    if (c->rope_local_theta > 0.0f && c->rope == HS_ROPE_NONE)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: a local RoPE base needs RoPE", src);
    if (c->alibi && (c->rope != HS_ROPE_NONE || c->learned_pos))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: ALiBi positions exclude RoPE and learned positions", src);
    if (c->rope != HS_ROPE_NONE && !(c->rope_theta > 0.0f))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: rope_theta %g must be positive", src, (double)c->rope_theta);
    if (c->rope_scaling != HS_ROPE_SCALING_NONE && c->rope_scaling != HS_ROPE_SCALING_LONGROPE &&
        !(c->rope_factor >= 1.0f && c->rope_factor < 1e6f))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: RoPE scaling factor %g must be at least 1", src,
                          (double)c->rope_factor);
    if (c->rope_scaling == HS_ROPE_SCALING_YARN &&
        !(c->rope_original_ctx > 0 && c->rope_beta_fast > 0.0f && c->rope_beta_slow > 0.0f && c->rope_attn_factor > 0.0f &&
          c->rope_theta != 1.0f))
        return hs_err_set(err, HS_ERR_FORMAT,
                          "%s: yarn needs an original context (%d), betas (%g, %g), an attention factor (%g) above 0 "
                          "and a base other than 1",
                          src, c->rope_original_ctx, (double)c->rope_beta_fast, (double)c->rope_beta_slow,
                          (double)c->rope_attn_factor);
    if (c->rope_scaling == HS_ROPE_SCALING_LONGROPE) {
        const int pairs = (c->rot_dim ? c->rot_dim : c->d_head) / 2;
        if (c->rope_n_factors != pairs || !(c->rope_original_ctx > 0 && c->rope_attn_factor > 0.0f))
            return hs_err_set(err, HS_ERR_FORMAT,
                              "%s: longrope needs short_factor and long_factor of %d entries, one per rotated pair "
                              "(got %d), a positive original context (%d) and attention factor (%g)",
                              src, pairs, c->rope_n_factors, c->rope_original_ctx, (double)c->rope_attn_factor);
        for (int i = 0; i < pairs; i++)
            if (!(c->rope_short_factor[i] > 0.0f && c->rope_short_factor[i] < 1e30f && c->rope_long_factor[i] > 0.0f &&
                  c->rope_long_factor[i] < 1e30f))
                return hs_err_set(err, HS_ERR_FORMAT, "%s: longrope factors [%d] (short %g, long %g) must be positive",
                                  src, i, (double)c->rope_short_factor[i], (double)c->rope_long_factor[i]);
    }
    if (c->rope_scaling == HS_ROPE_SCALING_LLAMA3 &&
        !(c->rope_low_freq_factor > 0.0f && c->rope_high_freq_factor > c->rope_low_freq_factor &&
          c->rope_original_ctx > 0))
        return hs_err_set(err, HS_ERR_FORMAT,
                          "%s: llama3 RoPE scaling needs 0 < low_freq_factor (%g) < high_freq_factor (%g) and a "
                          "positive original_max_position_embeddings (%d)",
                          src, (double)c->rope_low_freq_factor, (double)c->rope_high_freq_factor, c->rope_original_ctx);
    if (c->qk_norm_per_head && (!c->qk_norm || c->qk_norm_all))
        return hs_err_set(err, HS_ERR_INVALID_ARG, "%s: per-head q/k norm weights need qk_norm over single heads", src);
    if (c->clip_qkv > 0.0f && c->qk_norm) /* OLMoE clamps after its q/k norms, the forward before them */
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: clip_qkv with q/k norms is not supported", src);
    if (c->post_norms && (c->norm == HS_NORM_LAYERNORM || c->parallel_attn_mlp))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: post-norms need RMSNorm and a sequential block (the Gemma 2 layout)",
                          src);
    const float knobs[8] = {c->embed_scale, c->attn_scale,  c->attn_softcap,   c->final_softcap,
                            c->clip_qkv,    c->logit_scale, c->residual_scale, c->alibi_scale};
    const char *knob_names[8] = {"embedding scale", "attention scale", "attention softcap", "final logit softcap",
                                 "clip_qkv",        "logit scale",     "residual scale",    "ALiBi slope scale"};
    if (c->residual_scale > 0.0f && c->post_norms) /* a post-norm would undo it; no model has both */
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: a residual scale with post-norms is not supported", src);
    for (int i = 0; i < 8; i++)
        if (!(knobs[i] >= 0.0f && knobs[i] < 1e30f))
            return hs_err_set(err, HS_ERR_FORMAT, "%s: %s %g must be positive (or 0 for none)", src, knob_names[i],
                              (double)knobs[i]);
    /* Guard against sizes whose products overflow later index arithmetic. */
    if ((int64_t)c->n_heads * c->d_head > (1 << 20) || c->d_model > (1 << 20) || c->d_mlp > (1 << 22) ||
        c->n_vocab > (1 << 24) || c->n_ctx > (1 << 24) || c->n_layers > 4096)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: model dimensions beyond supported limits", src);
    return HS_OK;
}

static void scale_f32(float *x, int64_t n, float s) {
    if (x)
        for (int64_t i = 0; i < n; i++) x[i] *= s;
}

/* Whether p is one of the layers' norm weights or biases, or the embedding norm's (OLMo's
 * shared ones). */
static int norm_shared(const hs_model *m, const float *p) {
    if (p == m->w.embed_ln_w || p == m->w.embed_ln_b) return 1;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const hs_layer_weights *W = &m->w.layers[l];
        const float *ps[6] = {W->ln1_w, W->ln1_b, W->ln2_w, W->ln2_b, W->attn_post_w, W->mlp_post_w};
        for (int i = 0; i < 6; i++)
            if (p == ps[i]) return 1;
    }
    return 0;
}

/* *p as a buffer of its own, to scale: a copy where another norm shares it, or dflt where
 * it is NULL. */
static hs_status unshare(hs_model *m, float **p, int64_t n, float dflt, hs_err *err) {
    if (*p && !norm_shared(m, *p)) return HS_OK;
    float *own = NULL, *from = *p;
    hs_status st = hs_model_alloc_f32(m, n, &own, err);
    if (st != HS_OK) return st;
    m->n_params -= n; /* a copy, not a parameter of the checkpoint */
    for (int64_t i = 0; i < n; i++) own[i] = from ? from[i] : dflt;
    *p = own;
    return HS_OK;
}

hs_status hs_model_fold_scales(hs_model *m, hs_err *err) {
    const hs_model_config *c = &m->cfg;
    const int64_t d = c->d_model, qd = (int64_t)c->n_heads * c->d_head, f = c->d_mlp;
    const float r = c->residual_scale, ls = c->logit_scale;
    if (r > 0.0f && r != 1.0f) /* attn_out = r (z W_O^T + b_O) = z (r W_O)^T + r b_O; the MLP's likewise */
        for (int l = 0; l < c->n_layers; l++) {
            hs_layer_weights *W = &m->w.layers[l];
            scale_f32(W->wo, d * qd, r);
            scale_f32(W->bo, d, r);
            scale_f32(W->w_down, d * f, r);
            scale_f32(W->b_down, d, r);
        }
    if (!(ls > 0.0f) || ls == 1.0f) return HS_OK;
    /* logits = (n(x) w + b) U^T + u, so s logits = (n(x) (s w) + s b) U^T + s u; the soft-cap
     * comes after. Gemma's (1 + w) norms would need s (1 + w) - 1: no such model has a scale. */
    if (c->norm == HS_NORM_RMSNORM_1P)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: a logit scale with (1 + w) norms is not supported", m->path);
    hs_status st = unshare(m, &m->w.lnf_w, d, 1.0f, err);
    if (st == HS_OK && m->w.lnf_b) st = unshare(m, &m->w.lnf_b, d, 0.0f, err);
    if (st != HS_OK) return st;
    scale_f32(m->w.lnf_w, d, ls);
    scale_f32(m->w.lnf_b, d, ls);
    scale_f32(m->w.unembed_b, c->n_vocab, ls);
    return HS_OK;
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* "org/name" -> $HF_HOME/hub/models--org--name/snapshots/<refs/main or any>. */
static hs_status resolve_hf_id(const char *id, char *out, size_t n, hs_err *err) {
    const char *hf_home = getenv("HF_HOME"), *home = getenv("HOME"), *hub_cache = getenv("HF_HUB_CACHE");
    char hub[2048], repo[3072], ref[256] = "";
    if (hub_cache && *hub_cache) snprintf(hub, sizeof hub, "%s", hub_cache);
    else if (hf_home && *hf_home) snprintf(hub, sizeof hub, "%s/hub", hf_home);
    else snprintf(hub, sizeof hub, "%s/.cache/huggingface/hub", home ? home : ".");
    char flat[512];
    size_t k = 0;
    for (const char *p = id; *p && k + 3 < sizeof flat; p++) {
        if (*p == '/') {
            flat[k++] = '-';
            flat[k++] = '-';
        } else {
            flat[k++] = *p;
        }
    }
    flat[k] = '\0';
    snprintf(repo, sizeof repo, "%s/models--%s", hub, flat);
    if (!is_dir(repo))
        return hs_err_set(err, HS_ERR_IO, "%s: not a file or folder, and not in the HF cache (looked for %s)", id, repo);
    char refpath[3200];
    snprintf(refpath, sizeof refpath, "%s/refs/main", repo);
    FILE *fp = fopen(refpath, "r");
    if (fp) {
        if (!fgets(ref, sizeof ref, fp)) ref[0] = '\0';
        fclose(fp);
        ref[strcspn(ref, "\r\n")] = '\0';
    }
    if (!ref[0])
        return hs_err_set(err, HS_ERR_IO, "%s: HF cache entry %s has no refs/main", id, repo);
    snprintf(out, n, "%s/snapshots/%s", repo, ref);
    if (!is_dir(out)) return hs_err_set(err, HS_ERR_IO, "%s: snapshot folder %s is missing", id, out);
    return HS_OK;
}

hs_status hs_model_load(const char *path, hs_model **out, hs_err *err) {
    *out = NULL;
    hs_status st = HS_OK;
    hs_model *m = hs_model_new_empty();
    if (!m) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    snprintf(m->path, sizeof m->path, "%s", path);
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
        if (ends_with(path, ".gguf")) {
            snprintf(m->format, sizeof m->format, "gguf");
            st = hs_model_load_gguf(m, path, err);
        } else {
            st = hs_err_set(err, HS_ERR_UNSUPPORTED,
                            "%s: unknown model file type (want a .gguf file or a folder with config.json)", path);
        }
    } else if (is_dir(path)) {
        snprintf(m->format, sizeof m->format, "safetensors");
        st = hs_model_load_hf_dir(m, path, err);
    } else if (strchr(path, '/') && path[0] != '/' && path[0] != '.') {
        char snap[4096];
        st = resolve_hf_id(path, snap, sizeof snap, err);
        if (st == HS_OK) {
            snprintf(m->format, sizeof m->format, "safetensors");
            snprintf(m->path, sizeof m->path, "%s", snap);
            st = hs_model_load_hf_dir(m, snap, err);
        }
    } else {
        st = hs_err_set(err, HS_ERR_IO, "%s: no such file or folder: %s", path, strerror(ENOENT));
    }
    if (st == HS_OK) st = hs_model_config_validate(&m->cfg, m->path, err);
    if (st == HS_OK) st = hs_model_fold_scales(m, err);
    if (st != HS_OK) {
        hs_model_free(m);
        return st;
    }
    *out = m;
    return HS_OK;
}

/* splitmix64, a tiny seeded generator so random models are reproducible. Its
 * k-th draw from state s0 is mix(s0 + k*GAMMA), so any draw can be computed
 * on its own: rand_tensor fills in parallel and gives the sequential bits. */
#define HS_SPLITMIX_GAMMA 0x9e3779b97f4a7c15ull
static uint64_t splitmix_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static hs_status rand_tensor(hs_model *m, uint64_t *s, int64_t n, float std, float mean, float **out,
                             hs_err *err) {
    hs_status st = hs_model_alloc_f32(m, n, out, err);
    if (st != HS_OK) return st;
    const uint64_t s0 = *s;
    float *o = *out;
    /* Irwin-Hall(4) approximates a normal well enough for weights; cheap. Parallel: a 7B model
     * is 6.7e9 weights, a minute on one core. */
#pragma omp parallel for schedule(static) if (n > (1 << 20))
    for (int64_t i = 0; i < n; i++) {
        float u = 0;
        for (int k = 0; k < 4; k++)
            u += (float)(splitmix_mix(s0 + (uint64_t)(4 * i + k + 1) * HS_SPLITMIX_GAMMA) >> 40) / 16777216.0f;
        o[i] = mean + std * (u - 2.0f) * 1.7320508f;
    }
    *s = s0 + (uint64_t)(4 * n) * HS_SPLITMIX_GAMMA;
    return HS_OK;
}

hs_status hs_model_init_random(const hs_model_config *cfg, uint64_t seed, hs_model **out, hs_err *err) {
    *out = NULL;
    hs_status st = HS_OK;
    hs_model *m = hs_model_new_empty();
    if (!m) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    m->cfg = *cfg;
    snprintf(m->path, sizeof m->path, "random:%llu", (unsigned long long)seed);
    snprintf(m->format, sizeof m->format, "random");
    hs_model_note_dtype(m, "F32");
    uint64_t s = seed;
    const hs_model_config *c = &m->cfg;
    HS_CHECK(hs_model_config_validate(c, m->path, err));
    HS_CHECK(hs_model_alloc_layers(m, err));
    int64_t d = c->d_model, qd = (int64_t)c->n_heads * c->d_head, kd = (int64_t)c->n_kv_heads * c->d_head;
    int ln = c->norm == HS_NORM_LAYERNORM;
    const float sd = 0.02f, nw = c->norm == HS_NORM_RMSNORM_1P ? 0.0f : 1.0f; /* norm weights about 1 as applied */
    HS_CHECK(rand_tensor(m, &s, (int64_t)c->n_vocab * d, sd, 0, &m->w.tok_embd, err));
    if (c->learned_pos) HS_CHECK(rand_tensor(m, &s, (int64_t)c->n_ctx * d, sd, 0, &m->w.pos_embd, err));
    for (int l = 0; l < c->n_layers; l++) {
        hs_layer_weights *L = &m->w.layers[l];
        if (!c->no_pre_norms) {
            HS_CHECK(rand_tensor(m, &s, d, 0.1f, nw, &L->ln1_w, err));
            HS_CHECK(rand_tensor(m, &s, d, 0.1f, nw, &L->ln2_w, err));
        }
        if (ln) {
            HS_CHECK(rand_tensor(m, &s, d, 0.02f, 0, &L->ln1_b, err));
            HS_CHECK(rand_tensor(m, &s, d, 0.02f, 0, &L->ln2_b, err));
        }
        HS_CHECK(rand_tensor(m, &s, qd * d, sd, 0, &L->wq, err));
        HS_CHECK(rand_tensor(m, &s, kd * d, sd, 0, &L->wk, err));
        HS_CHECK(rand_tensor(m, &s, kd * d, sd, 0, &L->wv, err));
        HS_CHECK(rand_tensor(m, &s, d * qd, sd, 0, &L->wo, err));
        if (c->qk_norm) {
            HS_CHECK(rand_tensor(m, &s, (int64_t)hs_model_qk_norm_width(c, 0) * hs_model_qk_norm_rows(c, 0), 0.1f, nw,
                                 &L->q_norm_w, err));
            HS_CHECK(rand_tensor(m, &s, (int64_t)hs_model_qk_norm_width(c, 1) * hs_model_qk_norm_rows(c, 1), 0.1f, nw,
                                 &L->k_norm_w, err));
        }
        if (c->qkv_bias) {
            HS_CHECK(rand_tensor(m, &s, qd, sd, 0, &L->bq, err));
            HS_CHECK(rand_tensor(m, &s, kd, sd, 0, &L->bk, err));
            HS_CHECK(rand_tensor(m, &s, kd, sd, 0, &L->bv, err));
        }
        if (hs_act_gated(c->act)) HS_CHECK(rand_tensor(m, &s, (int64_t)c->d_mlp * d, sd, 0, &L->w_gate, err));
        if (c->post_norms) {
            HS_CHECK(rand_tensor(m, &s, d, 0.1f, nw, &L->attn_post_w, err));
            HS_CHECK(rand_tensor(m, &s, d, 0.1f, nw, &L->mlp_post_w, err));
        }
        HS_CHECK(rand_tensor(m, &s, (int64_t)c->d_mlp * d, sd, 0, &L->w_up, err));
        HS_CHECK(rand_tensor(m, &s, d * c->d_mlp, sd, 0, &L->w_down, err));
        if (c->out_bias) {
            HS_CHECK(rand_tensor(m, &s, d, sd, 0, &L->bo, err));
            HS_CHECK(rand_tensor(m, &s, c->d_mlp, sd, 0, &L->b_up, err));
            HS_CHECK(rand_tensor(m, &s, d, sd, 0, &L->b_down, err));
        }
    }
    HS_CHECK(rand_tensor(m, &s, d, 0.1f, nw, &m->w.lnf_w, err));
    if (ln) HS_CHECK(rand_tensor(m, &s, d, 0.02f, 0, &m->w.lnf_b, err));
    if (c->embed_norm) { /* drawn last: the other weights stay those of the same seed without it */
        HS_CHECK(rand_tensor(m, &s, d, 0.1f, nw, &m->w.embed_ln_w, err));
        if (ln) HS_CHECK(rand_tensor(m, &s, d, 0.02f, 0, &m->w.embed_ln_b, err));
    }
    if (c->tied_embeddings) m->w.unembed = m->w.tok_embd;
    else HS_CHECK(rand_tensor(m, &s, (int64_t)c->n_vocab * d, sd, 0, &m->w.unembed, err));
    HS_CHECK(hs_model_fold_scales(m, err));
exit:
    if (st != HS_OK) {
        hs_model_free(m);
        return st;
    }
    *out = m;
    return HS_OK;
}
