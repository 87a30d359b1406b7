/* Llama-family models from GGUF: tiny models written here in F32, F16, BF16,
 * Q8_0, Q4_0 and Q4_1 load with the right configuration and weights (dequantised values
 * computed independently in this file, Q/K un-permuted back to HF layout);
 * missing or contradicting tensors and keys are refused by name; a
 * one-layer model runs attribution patching; a model mixing the k-quants
 * matches transformers on gguf-py's decoding; and the real SmolLM2-135M GGUF
 * loads with its published shape. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "headsweep/hs_gguf.h"
#include "headsweep/hs_model.h"
#include "headsweep/hs_patching.h"
#include "hs_gguf_writer.h"
#include "hs_testutil.h"

/* ---- reference encoders / decoders (independent of hs_tensor.c's decoders) ---- */

static float ref_f16(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m + 1024), e - 25);
    return (h & 0x8000) ? -v : v;
}

static float ref_bf16(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static size_t row_bytes(uint32_t type, int64_t n) {
    switch (type) {
    case HS_GGML_TYPE_F32: return (size_t)n * 4;
    case HS_GGML_TYPE_F16:
    case HS_GGML_TYPE_BF16: return (size_t)n * 2;
    case HS_GGML_TYPE_Q8_0: return (size_t)n / 32 * 34;
    case HS_GGML_TYPE_Q4_0: return (size_t)n / 32 * 18;
    case HS_GGML_TYPE_Q4_1: return (size_t)n / 32 * 20;
    }
    cr_assert_fail("bad type %u", type);
    return 0;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Encodes one row of n elements (n a multiple of 32 for the block types). */
static void enc_row(uint32_t type, const float *x, int64_t n, uint8_t *out) {
    if (type == HS_GGML_TYPE_F32) {
        memcpy(out, x, (size_t)n * 4);
        return;
    }
    if (type == HS_GGML_TYPE_F16 || type == HS_GGML_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = type == HS_GGML_TYPE_F16 ? hs_f32_to_f16(x[i]) : hs_f32_to_bf16(x[i]);
            memcpy(out + 2 * i, &h, 2);
        }
        return;
    }
    for (int64_t b = 0; b < n / 32; b++) {
        const float *v = x + 32 * b;
        float amax = 0, mn = v[0], mx = v[0];
        for (int j = 0; j < 32; j++) {
            amax = fmaxf(amax, fabsf(v[j]));
            mn = fminf(mn, v[j]);
            mx = fmaxf(mx, v[j]);
        }
        if (type == HS_GGML_TYPE_Q8_0) {
            uint16_t dh = hs_f32_to_f16(amax / 127.0f);
            float d = ref_f16(dh);
            memcpy(out, &dh, 2);
            for (int j = 0; j < 32; j++)
                out[2 + j] = (uint8_t)(int8_t)clampi(d ? (int)lrintf(v[j] / d) : 0, -127, 127);
            out += 34;
        } else if (type == HS_GGML_TYPE_Q4_0) {
            uint16_t dh = hs_f32_to_f16(amax / 7.0f);
            float d = ref_f16(dh);
            memcpy(out, &dh, 2);
            for (int j = 0; j < 16; j++) {
                int lo = clampi(d ? (int)lrintf(v[j] / d) + 8 : 8, 0, 15);
                int hi = clampi(d ? (int)lrintf(v[j + 16] / d) + 8 : 8, 0, 15);
                out[2 + j] = (uint8_t)(lo | hi << 4);
            }
            out += 18;
        } else {
            uint16_t dh = hs_f32_to_f16((mx - mn) / 15.0f), mh = hs_f32_to_f16(mn);
            float d = ref_f16(dh), m = ref_f16(mh);
            memcpy(out, &dh, 2);
            memcpy(out + 2, &mh, 2);
            for (int j = 0; j < 16; j++) {
                int lo = clampi(d ? (int)lrintf((v[j] - m) / d) : 0, 0, 15);
                int hi = clampi(d ? (int)lrintf((v[j + 16] - m) / d) : 0, 0, 15);
                out[4 + j] = (uint8_t)(lo | hi << 4);
            }
            out += 20;
        }
    }
}

/* What a correct reader must return for a row written by enc_row. */
static void dec_row(uint32_t type, const uint8_t *in, int64_t n, float *y) {
    uint16_t h, h2;
    switch (type) {
    case HS_GGML_TYPE_F32: memcpy(y, in, (size_t)n * 4); return;
    case HS_GGML_TYPE_F16:
    case HS_GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            memcpy(&h, in + 2 * i, 2);
            y[i] = type == HS_GGML_TYPE_F16 ? ref_f16(h) : ref_bf16(h);
        }
        return;
    }
    for (int64_t b = 0; b < n / 32; b++, y += 32) {
        memcpy(&h, in, 2);
        float d = ref_f16(h);
        if (type == HS_GGML_TYPE_Q8_0) {
            for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)in[2 + j] * d;
            in += 34;
        } else if (type == HS_GGML_TYPE_Q4_0) {
            for (int j = 0; j < 16; j++) {
                y[j] = (float)((in[2 + j] & 15) - 8) * d;
                y[j + 16] = (float)((in[2 + j] >> 4) - 8) * d;
            }
            in += 18;
        } else {
            memcpy(&h2, in + 2, 2);
            float m = ref_f16(h2);
            for (int j = 0; j < 16; j++) {
                y[j] = (float)(in[4 + j] & 15) * d + m;
                y[j + 16] = (float)(in[4 + j] >> 4) * d + m;
            }
            in += 20;
        }
    }
}

/* ---- tiny model writer -------------------------------------------------------------------- */

typedef struct {
    const char *arch;
    int L, d, H, KV, dh, f, V, ctx;
    uint32_t wtype;    /* linear weights and embeddings; norms are always F32 */
    int tied, bias;
    int write_key_length, write_rope_base, write_token_ids;
    int q_row_ids;     /* Q of layer 0 holds row*1000 + col instead of noise */
    const char *omit;      /* leave this tensor out */
    const char *bad_shape; /* write this tensor with one row too many */
    const char *omit_key;  /* leave this "<arch>.<suffix>" key out */
    const char *extra_str_key, *extra_str_val;
    int rope_dims; /* write <arch>.rope.dimension_count when non-zero */
    float rope_scaling_factor; /* write <arch>.rope.scaling.factor when non-zero */
    int rope_freqs;            /* write rope_freqs.weight [dh / 2] (Llama 3.1's per-frequency factors) */
} tiny_opts;

#define MAX_REFS 64
typedef struct {
    char name[MAX_REFS][64];
    float *ref[MAX_REFS];
    int64_t n[MAX_REFS];
    int count;
} tiny_refs;

static void refs_free(tiny_refs *r) {
    for (int i = 0; i < r->count; i++) free(r->ref[i]);
}

/* Adds tensor `name` with HF-layout values [out, in] (out == 0: 1-D of in),
 * stored with llama.cpp's Q/K permutation when perm_heads > 0, and records
 * the values a correct loader must produce. */
static void add_weight(gw_file *gf, tiny_refs *r, const tiny_opts *o, hs_test_rng *rng,
                       const char *name, int64_t in, int64_t out, int perm_heads, int is_norm) {
    if (o->omit && !strcmp(o->omit, name)) return;
    int64_t rows = out ? out : 1, n = in * rows;
    uint32_t type = is_norm ? HS_GGML_TYPE_F32 : o->wtype;
    float *hf = malloc((size_t)n * sizeof *hf), *ref = malloc((size_t)n * sizeof *ref);
    for (int64_t i = 0; i < n; i++)
        hf[i] = is_norm ? 1.0f + 0.1f * hs_test_rng_normal(rng) : 0.5f * hs_test_rng_normal(rng);
    if (o->q_row_ids && !strcmp(name, "blk.0.attn_q.weight"))
        for (int64_t i = 0; i < n; i++) hf[i] = (float)(i / in * 1000 + i % in);
    /* Rows are encoded independently, so dec(enc(permute(hf))) = permute(dec(enc(hf))):
     * the reference is the HF-order decode. A bias (1-D, permuted) is handled as
     * `in` rows of one element, always F32 here. */
    size_t rb = row_bytes(type, out ? in : n);
    uint8_t *tmp = malloc(rb);
    for (int64_t q = 0; q < rows; q++) {
        enc_row(type, hf + q * in, out ? in : n, tmp);
        dec_row(type, tmp, out ? in : n, ref + q * in);
    }
    /* llama.cpp's converter: w.reshape(H, 2, d/2, in).swapaxes(1, 2).reshape(out, in),
     * i.e. stored[h][j][s] = hf[h][s][j]. */
    int64_t prow = out ? out : in, pcol = out ? in : 1;
    float *stored = malloc((size_t)n * sizeof *stored);
    memcpy(stored, hf, (size_t)n * sizeof *stored);
    if (perm_heads) {
        int64_t d = prow / perm_heads;
        for (int64_t h = 0; h < perm_heads; h++)
            for (int64_t j = 0; j < d / 2; j++)
                for (int s = 0; s < 2; s++)
                    memcpy(stored + (h * d + 2 * j + s) * pcol, hf + (h * d + s * (d / 2) + j) * pcol,
                           (size_t)pcol * sizeof(float));
    }
    int bad = o->bad_shape && !strcmp(o->bad_shape, name);
    int64_t wrows = rows + (bad ? 1 : 0);
    size_t nbytes = (size_t)wrows * rb;
    uint8_t *data = calloc(1, nbytes);
    for (int64_t q = 0; q < rows; q++) enc_row(type, stored + q * in, out ? in : n, data + (size_t)q * rb);
    int64_t ne[2] = {in, wrows};
    gw_tensor_add(gf, name, type, out || bad ? 2 : 1, ne, data, nbytes);
    cr_assert(r->count < MAX_REFS);
    snprintf(r->name[r->count], 64, "%s", name);
    r->ref[r->count] = ref;
    r->n[r->count++] = n;
    free(data);
    free(stored);
    free(tmp);
    free(hf);
}

static void meta_u32(gw_file *gf, const tiny_opts *o, const char *suffix, uint32_t v) {
    char key[128];
    if (o->omit_key && !strcmp(o->omit_key, suffix)) return;
    snprintf(key, sizeof key, "%s.%s", o->arch, suffix);
    gw_kv_u32(gf, key, v);
}

/* Writes the model to a temporary .gguf file; returns its path (free it). */
static char *write_tiny(const tiny_opts *o, tiny_refs *r) {
    gw_file gf;
    hs_test_rng rng;
    hs_test_rng_seed(&rng, 42);
    memset(r, 0, sizeof *r);
    gw_init(&gf);
    gw_kv_str(&gf, "general.architecture", o->arch);
    gw_kv_alignment(&gf, 64);
    meta_u32(&gf, o, "block_count", (uint32_t)o->L);
    meta_u32(&gf, o, "context_length", (uint32_t)o->ctx);
    meta_u32(&gf, o, "embedding_length", (uint32_t)o->d);
    meta_u32(&gf, o, "feed_forward_length", (uint32_t)o->f);
    meta_u32(&gf, o, "attention.head_count", (uint32_t)o->H);
    meta_u32(&gf, o, "attention.head_count_kv", (uint32_t)o->KV);
    if (o->write_key_length) meta_u32(&gf, o, "attention.key_length", (uint32_t)o->dh);
    if (o->rope_dims) meta_u32(&gf, o, "rope.dimension_count", (uint32_t)o->rope_dims);
    char key[128];
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", o->arch);
    gw_kv_f32(&gf, key, 1e-5f);
    snprintf(key, sizeof key, "%s.rope.freq_base", o->arch);
    if (o->write_rope_base) gw_kv_f32(&gf, key, 5000.0f);
    if (o->extra_str_key) gw_kv_str(&gf, o->extra_str_key, o->extra_str_val);
    snprintf(key, sizeof key, "%s.rope.scaling.factor", o->arch);
    if (o->rope_scaling_factor) gw_kv_f32(&gf, key, o->rope_scaling_factor);
    if (o->write_token_ids) {
        gw_kv_u32(&gf, "tokenizer.ggml.bos_token_id", 1);
        gw_kv_u32(&gf, "tokenizer.ggml.eos_token_id", 2);
    }
    const int perm = !strcmp(o->arch, "llama");
    const int64_t d = o->d, qd = (int64_t)o->H * o->dh, kd = (int64_t)o->KV * o->dh;
    add_weight(&gf, r, o, &rng, "token_embd.weight", d, o->V, 0, 0);
    add_weight(&gf, r, o, &rng, "output_norm.weight", d, 0, 0, 1);
    if (o->rope_freqs) add_weight(&gf, r, o, &rng, "rope_freqs.weight", o->dh / 2, 0, 0, 1);
    if (!o->tied) add_weight(&gf, r, o, &rng, "output.weight", d, o->V, 0, 0);
    for (int l = 0; l < o->L; l++) {
        char nm[64];
#define W(suffix, in, out, ph, norm)                                       \
    snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix);                       \
    add_weight(&gf, r, o, &rng, nm, in, out, ph, norm)
        W("attn_norm.weight", d, 0, 0, 1);
        W("attn_q.weight", d, qd, perm ? o->H : 0, 0);
        W("attn_k.weight", d, kd, perm ? o->KV : 0, 0);
        W("attn_v.weight", d, kd, 0, 0);
        W("attn_output.weight", qd, d, 0, 0);
        W("ffn_norm.weight", d, 0, 0, 1);
        W("ffn_gate.weight", d, o->f, 0, 0);
        W("ffn_up.weight", d, o->f, 0, 0);
        W("ffn_down.weight", o->f, d, 0, 0);
        if (!strcmp(o->arch, "qwen3")) {
            W("attn_q_norm.weight", o->dh, 0, 0, 1);
            W("attn_k_norm.weight", o->dh, 0, 0, 1);
        }
        if (o->bias) { /* 1-D, F32 like the norms */
            W("attn_q.bias", qd, 0, perm ? o->H : 0, 1);
            W("attn_k.bias", kd, 0, perm ? o->KV : 0, 1);
            W("attn_v.bias", kd, 0, 0, 1);
        }
#undef W
    }
    size_t n;
    uint8_t *p = gw_build(&gf, &n);
    char *path = strdup("/tmp/hs_test_gguf_model_XXXXXX.gguf");
    int fd = mkstemps(path, 5);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, p, n), (ssize_t)n);
    close(fd);
    free(p);
    gw_free(&gf);
    return path;
}

static const float *model_tensor(const hs_model *m, const char *name) {
    const hs_model_weights *w = hs_model_get_weights(m);
    int l;
    char rest[64];
    if (!strcmp(name, "token_embd.weight")) return w->tok_embd;
    if (!strcmp(name, "output_norm.weight")) return w->lnf_w;
    if (!strcmp(name, "output.weight")) return w->unembed;
    if (!strcmp(name, "rope_freqs.weight")) return w->rope_freq_factors;
    cr_assert_eq(sscanf(name, "blk.%d.%63s", &l, rest), 2, "%s", name);
    const hs_layer_weights *L = &w->layers[l];
    const struct { const char *s; const float *p; } map[] = {
        {"attn_norm.weight", L->ln1_w}, {"attn_q.weight", L->wq},      {"attn_k.weight", L->wk},
        {"attn_v.weight", L->wv},       {"attn_output.weight", L->wo}, {"ffn_norm.weight", L->ln2_w},
        {"ffn_gate.weight", L->w_gate}, {"ffn_up.weight", L->w_up},    {"ffn_down.weight", L->w_down},
        {"attn_q.bias", L->bq},         {"attn_k.bias", L->bk},        {"attn_v.bias", L->bv},
        {"attn_q_norm.weight", L->q_norm_w}, {"attn_k_norm.weight", L->k_norm_w},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(rest, map[i].s)) return map[i].p;
    cr_assert_fail("no such tensor %s", name);
    return NULL;
}

static hs_status load(const tiny_opts *o, hs_model **m, tiny_refs *r, hs_err *e) {
    char *path = write_tiny(o, r);
    hs_status st = hs_model_load(path, m, e);
    unlink(path);
    free(path);
    return st;
}

/* Float types: odd sizes, d_head from key_length with n_heads*d_head != d_model. */
static const tiny_opts FLOAT_CFG = {.arch = "llama", .L = 2, .d = 30, .H = 4, .KV = 2, .dh = 8,
                                    .f = 14, .V = 37, .ctx = 64, .write_key_length = 1,
                                    .write_rope_base = 1, .write_token_ids = 1};
/* Block types need rows of whole 32-element blocks; d_head = d_model / n_heads. */
static const tiny_opts QUANT_CFG = {.arch = "llama", .L = 2, .d = 64, .H = 4, .KV = 2, .dh = 16,
                                    .f = 96, .V = 37, .ctx = 48, .tied = 1};

static void check_roundtrip(tiny_opts o, uint32_t wtype, const char *dtypes) {
    o.wtype = wtype;
    hs_model *m = NULL;
    tiny_refs r;
    hs_err e = {0};
    cr_assert_eq(load(&o, &m, &r, &e), HS_OK, "%s", e.msg);
    const hs_model_config *c = hs_model_get_config(m);
    cr_assert_eq(c->arch, HS_ARCH_LLAMA);
    cr_assert_str_eq(c->arch_name, "LlamaForCausalLM");
    cr_assert(c->n_layers == o.L && c->n_heads == o.H && c->n_kv_heads == o.KV && c->d_model == o.d);
    cr_assert(c->d_head == o.dh && c->d_mlp == o.f && c->n_vocab == o.V && c->n_ctx == o.ctx);
    cr_assert_eq(c->norm_eps, 1e-5f);
    cr_assert_eq(c->rope_theta, o.write_rope_base ? 5000.0f : 10000.0f);
    cr_assert(c->norm == HS_NORM_RMSNORM && c->act == HS_ACT_SILU_GLU && c->rope == HS_ROPE_NEOX);
    cr_assert(!c->learned_pos && !c->qkv_bias && !c->out_bias);
    cr_assert_eq(c->tied_embeddings, o.tied);
    cr_assert_eq(c->bos_token_id, o.write_token_ids ? 1 : -1);
    cr_assert_eq(c->eos_token_id, o.write_token_ids ? 2 : -1);
    cr_assert_str_eq(hs_model_get_format(m), "gguf");
    cr_assert_str_eq(hs_model_get_source_dtypes(m), dtypes);
    const hs_model_weights *w = hs_model_get_weights(m);
    if (o.tied) cr_assert_eq(w->unembed, w->tok_embd);
    else cr_assert_neq(w->unembed, w->tok_embd);
    for (int i = 0; i < r.count; i++) {
        const float *got = model_tensor(m, r.name[i]);
        cr_assert_not_null(got, "%s not loaded", r.name[i]);
        for (int64_t j = 0; j < r.n[i]; j++)
            cr_assert_eq(got[j], r.ref[i][j], "%s[%lld]: got %g, want %g", r.name[i], (long long)j,
                         (double)got[j], (double)r.ref[i][j]);
    }
    hs_model_free(m);
    refs_free(&r);
}

Test(gguf_model, f32) { check_roundtrip(FLOAT_CFG, HS_GGML_TYPE_F32, "F32"); }
Test(gguf_model, f16) { check_roundtrip(FLOAT_CFG, HS_GGML_TYPE_F16, "F16,F32"); }
Test(gguf_model, bf16) { check_roundtrip(FLOAT_CFG, HS_GGML_TYPE_BF16, "BF16,F32"); }
Test(gguf_model, q8_0) { check_roundtrip(QUANT_CFG, HS_GGML_TYPE_Q8_0, "Q8_0,F32"); }
Test(gguf_model, q4_0) { check_roundtrip(QUANT_CFG, HS_GGML_TYPE_Q4_0, "Q4_0,F32"); }
Test(gguf_model, q4_1) { check_roundtrip(QUANT_CFG, HS_GGML_TYPE_Q4_1, "Q4_1,F32"); }

/* A one-layer model (every fixture has three) runs attribution patching,
 * and GradDrop, which averages over the other layers, is refused by name. */
Test(gguf_model, one_layer_model_refuses_grad_drop) {
    tiny_opts o = FLOAT_CFG;
    o.L = 1;
    hs_model *m = NULL;
    hs_backend *be = NULL;
    hs_session *s = NULL;
    tiny_refs r;
    hs_err e = {0};
    cr_assert_eq(load(&o, &m, &r, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(hs_session_init(be, m, 2, 4, &s, &e), HS_OK, "%s", e.msg);
    const int32_t tok[8] = {1, 5, 9, 3, 1, 7, 2, 30}, corrupt[8] = {1, 6, 9, 3, 1, 8, 2, 30}, len[2] = {4, 4};
    const int32_t ans[2] = {11, 12}, dis[2] = {13, 14};
    const hs_prompts pr = {.N = 2, .T = 4, .tokens = tok, .lengths = len, .answer = ans, .distractor = dis};
    float clean[2], corr[2], za[2 * 4] = {0};
    hs_patching_out out = {.clean = clean, .corrupt = corr, .z_all_pos = za};
    hs_patching_params p = hs_patching_default_params();
    p.batch_rows = 2;
    cr_assert_eq(hs_attribution_patching(s, m, &pr, corrupt, &p, &out, &e), HS_OK, "%s", e.msg);
    cr_assert(isfinite(za[0]) && clean[0] != corr[0], "za %g, clean %g, corrupt %g", za[0], clean[0], corr[0]);
    p.grad_drop = 1;
    cr_assert_eq(hs_attribution_patching(s, m, &pr, corrupt, &p, &out, &e), HS_ERR_INVALID_ARG);
    cr_assert(strstr(e.msg, "grad_drop") && strstr(e.msg, "only one"), "%s", e.msg);
    hs_session_free(s);
    hs_backend_free(be);
    hs_model_free(m);
    refs_free(&r);
}

/* A known matrix: Q rows hold their HF row index. The file must hold them in
 * llama.cpp's order (per head of d = 4: rows 0 2 1 3), and the loader must
 * give back 0 1 2 3. */
Test(gguf_model, unpermute_known_matrix) {
    tiny_opts o = {.arch = "llama", .L = 1, .d = 8, .H = 2, .KV = 1, .dh = 4, .f = 6, .V = 5,
                   .ctx = 16, .wtype = HS_GGML_TYPE_F32, .q_row_ids = 1};
    tiny_refs r;
    char *path = write_tiny(&o, &r);
    hs_gguf *g = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_gguf_open(path, &g, &e), HS_OK, "%s", e.msg);
    hs_gguf_tensor_info ti;
    cr_assert_eq(hs_gguf_tensor_find(g, "blk.0.attn_q.weight", &ti, &e), HS_OK, "%s", e.msg);
    float stored[64];
    hs_to_f32(ti.dtype, ti.data, stored, 64);
    const int file_order[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int row = 0; row < 8; row++)
        cr_assert_eq(stored[row * 8 + 3], (float)(file_order[row] * 1000 + 3), "file row %d", row);
    hs_gguf_close(g);

    hs_model *m = NULL;
    cr_assert_eq(hs_model_load(path, &m, &e), HS_OK, "%s", e.msg);
    const float *wq = hs_model_get_weights(m)->layers[0].wq;
    for (int row = 0; row < 8; row++)
        for (int col = 0; col < 8; col++)
            cr_assert_eq(wq[row * 8 + col], (float)(row * 1000 + col), "wq[%d][%d] = %g", row, col,
                         (double)wq[row * 8 + col]);
    hs_model_free(m);
    unlink(path);
    free(path);
    refs_free(&r);
}

/* Biases load (and are un-permuted with their rows for llama); qwen2 files
 * are not permuted by the converter, so nothing is undone there. */
static void check_bias(const char *arch, const char *arch_name) {
    tiny_opts o = FLOAT_CFG;
    o.arch = arch;
    o.bias = 1;
    o.wtype = HS_GGML_TYPE_F32;
    hs_model *m = NULL;
    tiny_refs r;
    hs_err e = {0};
    cr_assert_eq(load(&o, &m, &r, &e), HS_OK, "%s", e.msg);
    const hs_model_config *c = hs_model_get_config(m);
    cr_assert_str_eq(c->arch_name, arch_name);
    cr_assert_eq(c->qkv_bias, 1);
    for (int i = 0; i < r.count; i++) {
        const float *got = model_tensor(m, r.name[i]);
        for (int64_t j = 0; j < r.n[i]; j++)
            cr_assert_eq(got[j], r.ref[i][j], "%s[%lld]", r.name[i], (long long)j);
    }
    hs_model_free(m);
    refs_free(&r);
}

Test(gguf_model, llama_with_bias) { check_bias("llama", "LlamaForCausalLM"); }
Test(gguf_model, qwen2_with_bias) { check_bias("qwen2", "Qwen2ForCausalLM"); }

/* Qwen3: not permuted, and per-head q/k norms (blk.N.attn_q_norm / attn_k_norm,
 * [d_head]) that must load, or be missed by name. */
Test(gguf_model, qwen3_loads_its_qk_norms) {
    tiny_opts o = FLOAT_CFG;
    o.arch = "qwen3";
    hs_model *m = NULL;
    tiny_refs r;
    hs_err e = {0};
    cr_assert_eq(load(&o, &m, &r, &e), HS_OK, "%s", e.msg);
    const hs_model_config *c = hs_model_get_config(m);
    cr_assert_str_eq(c->arch_name, "Qwen3ForCausalLM");
    cr_assert(c->qk_norm && !c->qkv_bias);
    int norms = 0;
    for (int i = 0; i < r.count; i++) {
        const float *got = model_tensor(m, r.name[i]);
        norms += strstr(r.name[i], "attn_q_norm") || strstr(r.name[i], "attn_k_norm");
        for (int64_t j = 0; j < r.n[i]; j++)
            cr_assert_eq(got[j], r.ref[i][j], "%s[%lld]", r.name[i], (long long)j);
    }
    cr_assert_eq(norms, 2 * o.L, "%d q/k norm tensors compared", norms);
    hs_model_free(m);
    refs_free(&r);
    o.omit = "blk.1.attn_k_norm.weight";
    cr_assert_eq(load(&o, &m, &r, &e), HS_ERR_MISSING, "%s", e.msg);
    cr_assert(strstr(e.msg, "blk.1.attn_k_norm.weight"), "%s", e.msg);
    refs_free(&r);
}

/* ---- refusals --------------------------------------------------------------------------------- */

static void expect_fail(tiny_opts o, hs_status code, const char *needle, const char *needle2) {
    if (!o.wtype) o.wtype = HS_GGML_TYPE_F32;
    hs_model *m = NULL;
    tiny_refs r;
    hs_err e = {0};
    hs_status st = load(&o, &m, &r, &e);
    cr_assert_eq(st, code, "expected %s, got %s: '%s'", hs_status_str(code), hs_status_str(st), e.msg);
    cr_assert_null(m);
    cr_assert(strstr(e.msg, needle), "message '%s' lacks '%s'", e.msg, needle);
    if (needle2) cr_assert(strstr(e.msg, needle2), "message '%s' lacks '%s'", e.msg, needle2);
    cr_assert(strstr(e.msg, "/tmp/hs_test_gguf_model_"), "message '%s' lacks the file", e.msg);
    refs_free(&r);
}

Test(gguf_model, missing_tensor) {
    tiny_opts o = FLOAT_CFG;
    o.omit = "blk.1.ffn_up.weight";
    expect_fail(o, HS_ERR_MISSING, "'blk.1.ffn_up.weight'", NULL);
    o.omit = "token_embd.weight";
    expect_fail(o, HS_ERR_MISSING, "'token_embd.weight'", NULL);
}

Test(gguf_model, shape_contradicts_config) {
    tiny_opts o = FLOAT_CFG;
    o.bad_shape = "blk.1.attn_k.weight";
    expect_fail(o, HS_ERR_SHAPE, "'blk.1.attn_k.weight'", "[30, 17]");
    o.bad_shape = "blk.0.attn_norm.weight";
    expect_fail(o, HS_ERR_SHAPE, "'blk.0.attn_norm.weight'", "expected [30]");
}

Test(gguf_model, unsupported_architecture) {
    tiny_opts o = FLOAT_CFG;
    o.arch = "falcon";
    expect_fail(o, HS_ERR_UNSUPPORTED, "'falcon'", "general.architecture");
}

Test(gguf_model, missing_key) {
    tiny_opts o = FLOAT_CFG;
    o.omit_key = "block_count";
    expect_fail(o, HS_ERR_MISSING, "'llama.block_count'", NULL);
    o.omit_key = "attention.head_count";
    expect_fail(o, HS_ERR_MISSING, "'llama.attention.head_count'", NULL);
}

Test(gguf_model, unsupported_rope_variants) {
    tiny_opts o = FLOAT_CFG;
    o.rope_dims = o.dh / 2;
    expect_fail(o, HS_ERR_UNSUPPORTED, "'llama.rope.dimension_count'", "partial");
    o = FLOAT_CFG;
    o.extra_str_key = "llama.rope.scaling.type";
    o.extra_str_val = "yarn";
    expect_fail(o, HS_ERR_UNSUPPORTED, "'llama.rope.scaling.type'", "yarn");
    o.extra_str_val = "linear"; /* without its factor */
    expect_fail(o, HS_ERR_MISSING, "'llama.rope.scaling.factor'", "not found");
}

/* The inverse frequencies of a loaded model: theta^(-2i/d) (theta 5000 here),
 * divided by rope.scaling.factor for linear scaling, or by each entry of
 * rope_freqs.weight (how llama.cpp stores Llama 3.1's rescaling). */
static void check_inv_freq(const hs_model *m, float divide_all, const float *divide_each) {
    const hs_model_config *c = hs_model_get_config(m);
    float inv[32];
    hs_model_rope_inv_freq(c, hs_model_get_weights(m), inv);
    for (int i = 0; i < c->d_head / 2; i++) {
        float want = 1.0f / powf(5000.0f, (float)(2 * i) / (float)c->d_head) / divide_all;
        if (divide_each) want /= divide_each[i];
        cr_assert_eq(inv[i], want, "inv_freq[%d] = %.9g, want %.9g", i, (double)inv[i], (double)want);
    }
}

Test(gguf_model, rope_scaling_linear_and_freq_factors) {
    tiny_opts o = FLOAT_CFG;
    o.extra_str_key = "llama.rope.scaling.type";
    o.extra_str_val = "linear";
    o.rope_scaling_factor = 4.0f;
    hs_model *m = NULL;
    tiny_refs r;
    hs_err e = {0};
    cr_assert_eq(load(&o, &m, &r, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(hs_model_get_config(m)->rope_scaling, HS_ROPE_SCALING_LINEAR);
    check_inv_freq(m, 4.0f, NULL);
    hs_model_free(m);
    refs_free(&r);

    o = FLOAT_CFG;
    o.rope_freqs = 1;
    cr_assert_eq(load(&o, &m, &r, &e), HS_OK, "%s", e.msg);
    int k = 0;
    while (k < r.count && strcmp(r.name[k], "rope_freqs.weight")) k++;
    cr_assert_lt(k, r.count);
    cr_assert_not_null(hs_model_get_weights(m)->rope_freq_factors);
    check_inv_freq(m, 1.0f, r.ref[k]);
    hs_model_free(m);
    refs_free(&r);

    o.bad_shape = "rope_freqs.weight";
    expect_fail(o, HS_ERR_SHAPE, "'rope_freqs.weight'", "contradicts");
}

/* A Llama whose matrices mix the k-quants and Q5_0/Q5_1, as llama.cpp's
 * Q4_K_M files do (tests/fixtures/models/llama_kquant.gguf, random valid
 * blocks): every position's logits equal transformers' on the weights
 * gguf-py decodes (Q/K un-permuted there), both in f32. */
Test(gguf_model, kquant_mix_matches_transformers) {
    char path[1024], ref_path[1024];
    hs_test_fixture_path(path, sizeof path, "models/llama_kquant.gguf");
    hs_test_fixture_path(ref_path, sizeof ref_path, "ref/llama_kquant.safetensors");
    hs_model *m = NULL;
    hs_st_file *ref = NULL;
    hs_backend *be = NULL;
    hs_session *s = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_model_load(path, &m, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(hs_st_open(ref_path, &ref, &e), HS_OK, "%s", e.msg);
    const hs_st_tensor *tok = hs_st_find(ref, "tokens"), *lg = hs_st_find(ref, "logits");
    cr_assert(tok && lg && tok->dtype == HS_DTYPE_I32 && lg->dtype == HS_DTYPE_F32);
    const int B = (int)tok->shape[0], T = (int)tok->shape[1], V = hs_model_get_config(m)->n_vocab;
    cr_assert_eq(lg->shape[2], V);
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(hs_session_init(be, m, B, T, &s, &e), HS_OK, "%s", e.msg);
    hs_batch b = {.B = B, .T = T, .tokens = tok->data};
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = HS_LOGITS_ALL;
    float *got = malloc((size_t)B * T * V * sizeof *got);
    cr_assert_eq(hs_forward(s, &b, &fp, got, &e), HS_OK, "%s", e.msg);
    const int64_t n = (int64_t)B * T * V;
    hs_test_cmp c = hs_test_compare(got, lg->data, n, 1e-5 * hs_test_max_abs(lg->data, n), 1e-5);
    cr_assert(c.n_bad == 0 && !c.nan, "%lld of %lld logits off, max abs %.3g (logits up to %.3g)", (long long)c.n_bad,
              (long long)n, c.max_abs, hs_test_max_abs(lg->data, n));
    free(got);
    hs_session_free(s);
    hs_backend_free(be);
    hs_st_close(ref);
    hs_model_free(m);
}

/* The real SmolLM2-135M-Instruct (Q4_1 linears, Q8_0 embedding, F32 norms). */
Test(gguf_model, smollm2_real_file) {
    char path[4096];
    if (!hs_test_smollm2_path(path, sizeof path))
        cr_skip_test("SmolLM2 GGUF not found at %s (set HS_SMOLLM2_GGUF or run the set-up script)", path);
    hs_model *m = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_model_load(path, &m, &e), HS_OK, "%s", e.msg);
    const hs_model_config *c = hs_model_get_config(m);
    cr_assert_eq(c->n_layers, 30);
    cr_assert_eq(c->n_heads, 9);
    cr_assert_eq(c->n_kv_heads, 3);
    cr_assert_eq(c->d_model, 576);
    cr_assert_eq(c->d_head, 64);
    cr_assert_eq(c->d_mlp, 1536);
    cr_assert_eq(c->n_vocab, 49152);
    cr_assert_eq(c->n_ctx, 8192);
    cr_assert_eq(c->rope_theta, 100000.0f);
    cr_assert_eq(c->tied_embeddings, 1);
    cr_assert_eq(c->bos_token_id, 1);
    cr_assert_eq(c->eos_token_id, 2);
    cr_assert_str_eq(hs_model_get_source_dtypes(m), "Q8_0,F32,Q4_1");
    cr_assert_eq(hs_model_n_params(m), 134515008);
    hs_model_free(m);
}
