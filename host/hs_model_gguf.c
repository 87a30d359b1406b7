/* hs_model_gguf: Llama-family models (llama, qwen2, qwen3) from a GGUF file. The
 * configuration comes from the "<arch>.*" metadata, the weights are
 * dequantised to f32 in HF layout: every shape is checked against the
 * configuration before anything is allocated, and llama.cpp's Q/K row
 * permutation is undone so that the model uses HF's rotate_half RoPE. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_gguf.h"
#include "hs_model_internal.h"

/* One tensor to load: expected GGUF shape ne = [in, out] (out == 0 for a 1-D
 * tensor of length in), where it goes, and whether its rows are permuted. */
typedef struct {
    char name[96];
    int64_t in, out;
    float **dst;
    int perm_heads; /* > 0: rows hold perm_heads heads in llama.cpp's interleaved order */
    hs_gguf_tensor_info ti;
} tensor_spec;

/* ---- configuration ------------------------------------------------------------------- */

/* "<arch>.<suffix>" as a positive int; dflt when absent unless required. */
static hs_status meta_int(const hs_gguf *g, const char *arch, const char *suffix, int required,
                          int dflt, int *out, hs_err *err) {
    char key[160];
    uint32_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!required && hs_gguf_find_key(g, key) < 0) {
        *out = dflt;
        return HS_OK;
    }
    hs_status st = hs_gguf_get_u32(g, key, &v, err);
    if (st != HS_OK) return st;
    if (v == 0 || v > INT_MAX)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s': %u is not a valid size",
                          hs_gguf_name(g), key, v);
    *out = (int)v;
    return HS_OK;
}

static hs_status meta_float(const hs_gguf *g, const char *arch, const char *suffix, int required,
                            float dflt, float *out, hs_err *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!required && hs_gguf_find_key(g, key) < 0) {
        *out = dflt;
        return HS_OK;
    }
    return hs_gguf_get_f32(g, key, out, err);
}

/* A token id, or -1 when absent. */
static hs_status meta_token(const hs_gguf *g, const char *key, int *out, hs_err *err) {
    int32_t v;
    *out = -1;
    if (hs_gguf_find_key(g, key) < 0) return HS_OK;
    hs_status st = hs_gguf_get_i32(g, key, &v, err);
    if (st == HS_OK) *out = v;
    return st;
}

static hs_status read_config(const hs_gguf *g, hs_model_config *c, int *permuted, hs_err *err) {
    hs_status st = HS_OK;
    const char *arch = NULL, *file = hs_gguf_name(g), *rs;
    char key[160];
    int rope_dims = 0, v_len = 0;
    hs_gguf_tensor_info emb;

    HS_CHECK(hs_gguf_get_str(g, "general.architecture", &arch, NULL, err));
    memset(c, 0, sizeof *c);
    if (!strcmp(arch, "llama")) {
        /* convert_hf_to_gguf.py permutes llama's Q/K rows (see hf_row below). */
        *permuted = 1;
        snprintf(c->arch_name, sizeof c->arch_name, "LlamaForCausalLM");
    } else if (!strcmp(arch, "qwen2") || !strcmp(arch, "qwen3")) {
        /* Qwen2 and Qwen3 are converted without the permutation; llama.cpp runs them with NEOX RoPE. */
        *permuted = 0;
        c->qk_norm = arch[4] == '3';
        snprintf(c->arch_name, sizeof c->arch_name, "%s", c->qk_norm ? "Qwen3ForCausalLM" : "Qwen2ForCausalLM");
    } else {
        HS_FAIL(err, HS_ERR_UNSUPPORTED,
                "%s: key 'general.architecture': architecture '%.100s' is not supported "
                "(supported: llama, qwen2, qwen3)", file, arch);
    }
    c->arch = HS_ARCH_LLAMA;
    c->norm = HS_NORM_RMSNORM;
    c->act = HS_ACT_SILU_GLU;
    c->rope = HS_ROPE_NEOX;
    HS_CHECK(meta_int(g, arch, "block_count", 1, 0, &c->n_layers, err));
    HS_CHECK(meta_int(g, arch, "embedding_length", 1, 0, &c->d_model, err));
    HS_CHECK(meta_int(g, arch, "feed_forward_length", 1, 0, &c->d_mlp, err));
    HS_CHECK(meta_int(g, arch, "attention.head_count", 1, 0, &c->n_heads, err));
    HS_CHECK(meta_int(g, arch, "attention.head_count_kv", 0, c->n_heads, &c->n_kv_heads, err));
    HS_CHECK(meta_int(g, arch, "context_length", 1, 0, &c->n_ctx, err));
    HS_CHECK(meta_float(g, arch, "attention.layer_norm_rms_epsilon", 1, 0, &c->norm_eps, err));
    HS_CHECK(meta_float(g, arch, "rope.freq_base", 0, 10000.0f, &c->rope_theta, err));
    snprintf(key, sizeof key, "%s.attention.key_length", arch);
    if (hs_gguf_find_key(g, key) >= 0)
        HS_CHECK(meta_int(g, arch, "attention.key_length", 1, 0, &c->d_head, err));
    else if (c->d_model % c->n_heads != 0)
        HS_FAIL(err, HS_ERR_FORMAT, "%s: key '%s.embedding_length': %d is not a multiple of the head count %d",
                file, arch, c->d_model, c->n_heads);
    else
        c->d_head = c->d_model / c->n_heads;
    HS_CHECK(meta_int(g, arch, "attention.value_length", 0, c->d_head, &v_len, err));
    if (v_len != c->d_head)
        HS_FAIL(err, HS_ERR_UNSUPPORTED, "%s: key '%s.attention.value_length': %d differs from the key length %d",
                file, arch, v_len, c->d_head);
    /* Partial rotary and RoPE scaling other than linear are not implemented:
     * refuse rather than silently compute something else. Llama 3.1's scaling
     * comes as the tensor rope_freqs.weight (plan_tensors). */
    HS_CHECK(meta_int(g, arch, "rope.dimension_count", 0, c->d_head, &rope_dims, err));
    if (rope_dims != c->d_head)
        HS_FAIL(err, HS_ERR_UNSUPPORTED, "%s: key '%s.rope.dimension_count': partial RoPE (%d of %d dimensions) is not supported",
                file, arch, rope_dims, c->d_head);
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if (hs_gguf_find_key(g, key) >= 0) {
        HS_CHECK(hs_gguf_get_str(g, key, &rs, NULL, err));
        if (!strcmp(rs, "linear")) {
            c->rope_scaling = HS_ROPE_SCALING_LINEAR;
            HS_CHECK(meta_float(g, arch, "rope.scaling.factor", 1, 0, &c->rope_factor, err));
        } else if (strcmp(rs, "none") != 0) {
            HS_FAIL(err, HS_ERR_UNSUPPORTED, "%s: key '%s': RoPE scaling '%.60s' is not supported (none, linear)",
                    file, key, rs);
        }
    }

    /* The vocabulary is whatever the embedding holds (it may be padded). */
    st = hs_gguf_tensor_find(g, "token_embd.weight", &emb, err);
    if (st != HS_OK && st != HS_ERR_UNSUPPORTED) goto exit;
    st = HS_OK;
    if (emb.ne[1] <= 0 || emb.ne[1] > INT_MAX)
        HS_FAIL(err, HS_ERR_SHAPE, "%s: tensor 'token_embd.weight': vocabulary size %lld out of range", file,
                (long long)emb.ne[1]);
    c->n_vocab = (int)emb.ne[1];
    HS_CHECK(meta_token(g, "tokenizer.ggml.bos_token_id", &c->bos_token_id, err));
    HS_CHECK(meta_token(g, "tokenizer.ggml.eos_token_id", &c->eos_token_id, err));
exit:
    return st;
}

/* ---- tensors ---------------------------------------------------------------------------- */

static void add_spec(tensor_spec *s, int *n, const char *name, int64_t in, int64_t out, float **dst,
                     int perm_heads) {
    tensor_spec *t = &s[(*n)++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->in = in;
    t->out = out;
    t->dst = dst;
    t->perm_heads = perm_heads;
}

/* Finds every tensor and checks type and shape; nothing is allocated yet. */
static hs_status check_spec(const hs_gguf *g, tensor_spec *t, hs_err *err) {
    hs_status st = hs_gguf_tensor_find(g, t->name, &t->ti, err);
    if (st != HS_OK) return st;
    const int64_t *ne = t->ti.ne;
    int64_t want1 = t->out ? t->out : 1;
    if (ne[0] != t->in || ne[1] != want1 || ne[2] != 1 || ne[3] != 1) {
        char want[64], got[96];
        if (t->out) snprintf(want, sizeof want, "[%lld, %lld]", (long long)t->in, (long long)t->out);
        else snprintf(want, sizeof want, "[%lld]", (long long)t->in);
        int k = snprintf(got, sizeof got, "[");
        for (int d = 0; d < (t->ti.n_dims ? t->ti.n_dims : 1); d++)
            k += snprintf(got + k, sizeof got - (size_t)k, "%s%lld", d ? ", " : "", (long long)ne[d]);
        snprintf(got + k, sizeof got - (size_t)k, "]");
        return hs_err_set(err, HS_ERR_SHAPE,
                          "%s: tensor '%s': shape %s contradicts the configuration, expected %s "
                          "(GGUF order, innermost first)",
                          hs_gguf_name(g), t->name, got, want);
    }
    return HS_OK;
}

static hs_status plan_tensors(const hs_gguf *g, hs_model *m, int permuted, tensor_spec *s, int *n,
                              hs_err *err) {
    hs_status st = HS_OK;
    hs_model_config *c = &m->cfg;
    hs_model_weights *w = &m->w;
    hs_gguf_tensor_info ti;
    const int64_t d = c->d_model, qd = (int64_t)c->n_heads * c->d_head,
                  kd = (int64_t)c->n_kv_heads * c->d_head, f = c->d_mlp;
    const int qh = permuted ? c->n_heads : 0, kh = permuted ? c->n_kv_heads : 0;
    char nm[96];
    *n = 0;

    add_spec(s, n, "token_embd.weight", d, c->n_vocab, &w->tok_embd, 0);
    add_spec(s, n, "output_norm.weight", d, 0, &w->lnf_w, 0);
    /* Llama 3.1 / 3.2: each RoPE frequency divided by its factor (llama.cpp's rope_freqs) */
    if (hs_gguf_tensor_find(g, "rope_freqs.weight", &ti, NULL) != HS_ERR_MISSING)
        add_spec(s, n, "rope_freqs.weight", c->d_head / 2, 0, &w->rope_freq_factors, 0);
    c->tied_embeddings = hs_gguf_tensor_find(g, "output.weight", &ti, NULL) == HS_ERR_MISSING;
    if (!c->tied_embeddings) add_spec(s, n, "output.weight", d, c->n_vocab, &w->unembed, 0);
    /* Q/K/V biases (Qwen2) are all or nothing; layer 0 decides. */
    c->qkv_bias = hs_gguf_tensor_find(g, "blk.0.attn_q.bias", &ti, NULL) != HS_ERR_MISSING;
#define LAYER(suffix, in, out, dst, ph)                          \
    do {                                                         \
        snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix);         \
        add_spec(s, n, nm, in, out, &L->dst, ph);                \
    } while (0)
    for (int l = 0; l < c->n_layers; l++) {
        hs_layer_weights *L = &w->layers[l];
        LAYER("attn_norm.weight", d, 0, ln1_w, 0);
        LAYER("attn_q.weight", d, qd, wq, qh);
        LAYER("attn_k.weight", d, kd, wk, kh);
        LAYER("attn_v.weight", d, kd, wv, 0);
        if (c->qk_norm) {
            LAYER("attn_q_norm.weight", c->d_head, 0, q_norm_w, 0);
            LAYER("attn_k_norm.weight", c->d_head, 0, k_norm_w, 0);
        }
        LAYER("attn_output.weight", qd, d, wo, 0);
        LAYER("ffn_norm.weight", d, 0, ln2_w, 0);
        LAYER("ffn_gate.weight", d, f, w_gate, 0);
        LAYER("ffn_up.weight", d, f, w_up, 0);
        LAYER("ffn_down.weight", f, d, w_down, 0);
        if (c->qkv_bias) {
            /* A bias is a one-column matrix: its entries permute like Q/K rows. */
            LAYER("attn_q.bias", qd, 0, bq, qh);
            LAYER("attn_k.bias", kd, 0, bk, kh);
            LAYER("attn_v.bias", kd, 0, bv, 0);
        }
    }
#undef LAYER
    for (int i = 0; i < *n; i++) HS_CHECK(check_spec(g, &s[i], err));
exit:
    return st;
}

/* llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel.permute) reorders
 * the rows of each head of Q and K (d = d_head rows per head):
 *     w.reshape(n_head, 2, d/2, in).swapaxes(1, 2).reshape(n_head*d, in)
 * so GGUF row h*d + 2j + s holds HF row h*d + s*(d/2) + j (j < d/2, s in {0,1}):
 * HF's rotary pairs (j, j + d/2) became adjacent rows (2j, 2j+1), Meta's
 * layout for interleaved RoPE. The inverse sends GGUF row r to this HF row. */
static int64_t hf_row(int64_t r, int64_t d) {
    int64_t h = r / d, i = r % d, j = i / 2, s = i % 2;
    return h * d + s * (d / 2) + j;
}

/* Dequantises one tensor, writing each GGUF row straight to its HF row (rows
 * are whole blocks, checked by the parser). Returns 0, or -1 out of memory. */
static int convert_tensor(const tensor_spec *t) {
    const uint8_t *src = t->ti.data;
    float *dst = *t->dst;
    if (!t->perm_heads) {
        hs_to_f32(t->ti.dtype, src, dst, t->ti.n_elems);
        return 0;
    }
    if (t->out) { /* [out, in] matrix: rows of ne[0] elements */
        const int64_t n_in = t->ti.ne[0], rows = t->ti.n_elems / n_in, d = rows / t->perm_heads;
        const int64_t row_bytes = hs_dtype_nbytes(t->ti.dtype, n_in);
        for (int64_t r = 0; r < rows; r++)
            hs_to_f32(t->ti.dtype, src + r * row_bytes, dst + hf_row(r, d) * n_in, n_in);
        return 0;
    }
    /* A bias: one element per row, possibly inside a quantisation block, so
     * dequantise all of it first. */
    const int64_t rows = t->ti.n_elems, d = rows / t->perm_heads;
    float *tmp = malloc((size_t)rows * sizeof *tmp);
    if (!tmp) return -1;
    hs_to_f32(t->ti.dtype, src, tmp, rows);
    for (int64_t r = 0; r < rows; r++) dst[hf_row(r, d)] = tmp[r];
    free(tmp);
    return 0;
}

hs_status hs_model_load_gguf(hs_model *m, const char *path, hs_err *err) {
    hs_status st = HS_OK;
    hs_gguf *g = NULL;
    tensor_spec *specs = NULL;
    int n_specs = 0, permuted = 0, failed = 0;

    HS_CHECK(hs_gguf_open(path, &g, err));
    HS_CHECK(read_config(g, &m->cfg, &permuted, err));
    HS_CHECK(hs_model_config_validate(&m->cfg, path, err));
    if (permuted && m->cfg.d_head % 2 != 0)
        HS_FAIL(err, HS_ERR_FORMAT, "%s: head dimension %d is odd: cannot undo the Q/K permutation", path,
                m->cfg.d_head);
    HS_CHECK(hs_model_alloc_layers(m, err));
    /* per layer at most 9 weights, 2 q/k norms and 3 biases; 4 more for the whole model */
    specs = calloc((size_t)m->cfg.n_layers * 14 + 4, sizeof *specs);
    if (!specs) HS_FAIL(err, HS_ERR_OOM, "%s: out of memory", path);
    HS_CHECK(plan_tensors(g, m, permuted, specs, &n_specs, err));

    for (int i = 0; i < n_specs; i++) {
        tensor_spec *t = &specs[i];
        HS_CHECK(hs_model_alloc_f32(m, t->ti.n_elems, t->dst, err));
        hs_model_note_dtype(m, hs_dtype_name(t->ti.dtype));
    }
    /* Tensors are independent: dequantise them in parallel. */
#pragma omp parallel for schedule(dynamic) reduction(| : failed)
    for (int i = 0; i < n_specs; i++) failed |= convert_tensor(&specs[i]) != 0;
    if (failed) HS_FAIL(err, HS_ERR_OOM, "%s: out of memory while dequantising", path);
    if (m->cfg.tied_embeddings) m->w.unembed = m->w.tok_embd;
    for (int i = 0; m->w.rope_freq_factors && i < m->cfg.d_head / 2; i++)
        if (!(m->w.rope_freq_factors[i] > 0.0f) || isinf(m->w.rope_freq_factors[i]))
            HS_FAIL(err, HS_ERR_FORMAT, "%s: tensor 'rope_freqs.weight': factor %d is %g (must be positive and finite)",
                    path, i, (double)m->w.rope_freq_factors[i]);
exit:
    free(specs);
    hs_gguf_close(g);
    return st;
}
