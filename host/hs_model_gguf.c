/* hs_model_gguf: a model from a GGUF file written by llama.cpp's converter
 * (llama, qwen2, qwen3, gemma, gemma2, gemma3, phi2, phi3, gpt2). The configuration
 * comes from the metadata (hs_model_gguf_cfg.c); the weights are dequantised
 * to f32 in HF layout: every shape is checked against the configuration
 * before anything is allocated, fused tensors (Phi-3's and GPT-2's attn_qkv,
 * Phi-3's gate + up) are cut into their projections, Gemma's norms get back
 * their offset from 1, and llama.cpp's Q/K row permutation is undone so that
 * the model uses HF's rotate_half RoPE. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_gguf.h"
#include "hs_model_internal.h"

/* One tensor to load, its expected GGUF shape ne = [in, rows] (rows 0: a
 * vector of in elements), the slice that goes to dst (rows first .. first +
 * count - 1 of a matrix, elements of a vector; count 0: all of it), whether
 * its rows are permuted, and a constant added to every element. */
typedef struct {
    char name[96];
    int64_t in, rows, first, count;
    float **dst;
    int perm_heads; /* > 0: rows hold perm_heads heads in llama.cpp's interleaved order */
    float add;
    hs_gguf_tensor_info ti;
} tensor_spec;

/* ---- tensors ---------------------------------------------------------------------------- */

typedef struct {
    tensor_spec *s;
    int n;
} plan;

static tensor_spec *add(plan *p, const char *name, int64_t in, int64_t rows, float **dst) {
    tensor_spec *t = &p->s[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->in = in;
    t->rows = rows;
    t->dst = dst;
    return t;
}

/* One slice of a fused tensor (count rows, or elements of a vector, from first). */
static void add_slice(plan *p, const char *name, int64_t in, int64_t rows, int64_t first, int64_t count, float **dst) {
    tensor_spec *t = add(p, name, in, rows, dst);
    t->first = first;
    t->count = count;
}

static int64_t spec_elems(const tensor_spec *t) {
    if (!t->count) return t->ti.n_elems;
    return t->rows ? t->count * t->in : t->count;
}

/* Finds every tensor and checks type and shape; nothing is allocated yet. */
static hs_status check_spec(const hs_gguf *g, tensor_spec *t, hs_err *err) {
    hs_status st = hs_gguf_tensor_find(g, t->name, &t->ti, err);
    if (st != HS_OK) return st;
    const int64_t *ne = t->ti.ne;
    int64_t want1 = t->rows ? t->rows : 1;
    if (ne[0] != t->in || ne[1] != want1 || ne[2] != 1 || ne[3] != 1) {
        char want[64], got[96];
        if (t->rows) snprintf(want, sizeof want, "[%lld, %lld]", (long long)t->in, (long long)t->rows);
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

#define LAYER(suffix) (snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix), nm)

/* Phi-3's attn_qkv rows are q, k, v; ffn_up's are the gate's, then up's. GPT-2's
 * attn_qkv likewise, its bias too. Separate q, k, v tensors are read as well. */
static void plan_qkv(const hs_gguf *g, plan *p, int l, const hs_model_config *c, hs_layer_weights *L) {
    const int64_t d = c->d_model, qd = (int64_t)c->n_heads * c->d_head, kd = (int64_t)c->n_kv_heads * c->d_head;
    char nm[96];
    hs_gguf_tensor_info ti;
    if (hs_gguf_tensor_find(g, LAYER("attn_qkv.weight"), &ti, NULL) == HS_ERR_MISSING) {
        add(p, LAYER("attn_q.weight"), d, qd, &L->wq);
        add(p, LAYER("attn_k.weight"), d, kd, &L->wk);
        add(p, LAYER("attn_v.weight"), d, kd, &L->wv);
        if (c->qkv_bias) {
            add(p, LAYER("attn_q.bias"), qd, 0, &L->bq);
            add(p, LAYER("attn_k.bias"), kd, 0, &L->bk);
            add(p, LAYER("attn_v.bias"), kd, 0, &L->bv);
        }
        return;
    }
    const int64_t all = qd + 2 * kd;
    add_slice(p, LAYER("attn_qkv.weight"), d, all, 0, qd, &L->wq);
    add_slice(p, LAYER("attn_qkv.weight"), d, all, qd, kd, &L->wk);
    add_slice(p, LAYER("attn_qkv.weight"), d, all, qd + kd, kd, &L->wv);
    if (!c->qkv_bias) return;
    add_slice(p, LAYER("attn_qkv.bias"), all, 0, 0, qd, &L->bq);
    add_slice(p, LAYER("attn_qkv.bias"), all, 0, qd, kd, &L->bk);
    add_slice(p, LAYER("attn_qkv.bias"), all, 0, qd + kd, kd, &L->bv);
}

/* GPT-2's and Phi-1/2's layers: LayerNorms with biases, biases on every projection. GPT-2 has a
 * second norm before the MLP; Phi's parallel block reads the first (ln2 aliases it after loading). */
static void plan_biased_layers(const hs_gguf *g, plan *p, hs_model *m, int ffn_norm) {
    const hs_model_config *c = &m->cfg;
    const int64_t d = c->d_model, qd = (int64_t)c->n_heads * c->d_head, f = c->d_mlp;
    char nm[96];
    add(p, "output_norm.bias", d, 0, &m->w.lnf_b);
    for (int l = 0; l < c->n_layers; l++) {
        hs_layer_weights *L = &m->w.layers[l];
        add(p, LAYER("attn_norm.weight"), d, 0, &L->ln1_w);
        add(p, LAYER("attn_norm.bias"), d, 0, &L->ln1_b);
        plan_qkv(g, p, l, c, L);
        add(p, LAYER("attn_output.weight"), qd, d, &L->wo);
        add(p, LAYER("attn_output.bias"), d, 0, &L->bo);
        if (ffn_norm) {
            add(p, LAYER("ffn_norm.weight"), d, 0, &L->ln2_w);
            add(p, LAYER("ffn_norm.bias"), d, 0, &L->ln2_b);
        }
        add(p, LAYER("ffn_up.weight"), d, f, &L->w_up);
        add(p, LAYER("ffn_up.bias"), f, 0, &L->b_up);
        add(p, LAYER("ffn_down.weight"), f, d, &L->w_down);
        add(p, LAYER("ffn_down.bias"), d, 0, &L->b_down);
    }
}

static void plan_layers(const hs_gguf *g, plan *p, hs_model *m, const hs_gguf_layout *lay) {
    const hs_model_config *c = &m->cfg;
    hs_model_weights *w = &m->w;
    const int64_t d = c->d_model, qd = (int64_t)c->n_heads * c->d_head, f = c->d_mlp;
    const int qh = lay->permuted ? c->n_heads : 0, kh = lay->permuted ? c->n_kv_heads : 0;
    char nm[96];
    for (int l = 0; l < c->n_layers; l++) {
        hs_layer_weights *L = &w->layers[l];
        add(p, LAYER("attn_norm.weight"), d, 0, &L->ln1_w);
        if (lay->family == HS_GGUF_PHI3) {
            plan_qkv(g, p, l, c, L);
        } else {
            const int64_t kd = (int64_t)c->n_kv_heads * c->d_head;
            add(p, LAYER("attn_q.weight"), d, qd, &L->wq)->perm_heads = qh;
            add(p, LAYER("attn_k.weight"), d, kd, &L->wk)->perm_heads = kh;
            add(p, LAYER("attn_v.weight"), d, kd, &L->wv);
            if (c->qkv_bias) { /* a bias is a one-column matrix: its entries permute like Q/K rows */
                add(p, LAYER("attn_q.bias"), qd, 0, &L->bq)->perm_heads = qh;
                add(p, LAYER("attn_k.bias"), kd, 0, &L->bk)->perm_heads = kh;
                add(p, LAYER("attn_v.bias"), kd, 0, &L->bv);
            }
        }
        if (c->qk_norm) {
            add(p, LAYER("attn_q_norm.weight"), c->d_head, 0, &L->q_norm_w);
            add(p, LAYER("attn_k_norm.weight"), c->d_head, 0, &L->k_norm_w);
        }
        add(p, LAYER("attn_output.weight"), qd, d, &L->wo);
        add(p, LAYER("ffn_norm.weight"), d, 0, &L->ln2_w);
        if (c->post_norms) {
            add(p, LAYER("post_attention_norm.weight"), d, 0, &L->attn_post_w);
            add(p, LAYER("post_ffw_norm.weight"), d, 0, &L->mlp_post_w);
        }
        if (lay->family == HS_GGUF_PHI3) {
            add_slice(p, LAYER("ffn_up.weight"), d, 2 * f, 0, f, &L->w_gate);
            add_slice(p, LAYER("ffn_up.weight"), d, 2 * f, f, f, &L->w_up);
        } else {
            add(p, LAYER("ffn_gate.weight"), d, f, &L->w_gate);
            add(p, LAYER("ffn_up.weight"), d, f, &L->w_up);
        }
        add(p, LAYER("ffn_down.weight"), f, d, &L->w_down);
    }
}
#undef LAYER

static hs_status plan_tensors(const hs_gguf *g, hs_model *m, const hs_gguf_layout *lay, plan *p, hs_err *err) {
    hs_model_config *c = &m->cfg;
    hs_model_weights *w = &m->w;
    hs_gguf_tensor_info ti;
    const int64_t d = c->d_model;
    p->n = 0;
    add(p, "token_embd.weight", d, c->n_vocab, &w->tok_embd);
    add(p, "output_norm.weight", d, 0, &w->lnf_w);
    if (!c->tied_embeddings) add(p, "output.weight", d, c->n_vocab, &w->unembed);
    if (lay->family == HS_GGUF_GPT2) {
        add(p, "position_embd.weight", d, c->n_ctx, &w->pos_embd);
        plan_biased_layers(g, p, m, 1);
    } else if (lay->family == HS_GGUF_PHI2) {
        if (!c->tied_embeddings) add(p, "output.bias", c->n_vocab, 0, &w->unembed_b);
        plan_biased_layers(g, p, m, 0);
    } else {
        /* Llama 3.1 / 3.2: each RoPE frequency divided by its factor (llama.cpp's rope_freqs) */
        if (hs_gguf_tensor_find(g, "rope_freqs.weight", &ti, NULL) != HS_ERR_MISSING) {
            if (c->rope_scaling == HS_ROPE_SCALING_LONGROPE)
                return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: tensor 'rope_freqs.weight' beside LongRoPE's factor lists",
                                  hs_gguf_name(g));
            add(p, "rope_freqs.weight", (c->rot_dim ? c->rot_dim : c->d_head) / 2, 0, &w->rope_freq_factors);
        }
        plan_layers(g, p, m, lay);
    }
    for (int i = 0; i < p->n; i++) {
        tensor_spec *t = &p->s[i];
        const size_t len = strlen(t->name);
        /* Gemma's norms hold 1 + w */
        if (len > 11 && !strcmp(t->name + len - 11, "norm.weight")) t->add = lay->norm_offset;
        const hs_status st = check_spec(g, t, err);
        if (st != HS_OK) return st;
    }
    return HS_OK;
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

/* Dequantises one tensor (or its slice), writing each GGUF row straight to its
 * HF row (rows are whole blocks, checked by the parser). Returns 0, or -1 out
 * of memory. */
static int convert_tensor(const tensor_spec *t) {
    const uint8_t *src = t->ti.data;
    float *dst = *t->dst;
    const int64_t n = spec_elems(t);
    if (t->rows) { /* [rows, in] matrix: rows of ne[0] elements */
        const int64_t n_in = t->ti.ne[0], row_bytes = hs_dtype_nbytes(t->ti.dtype, n_in);
        src += t->first * row_bytes;
        if (!t->perm_heads) {
            hs_to_f32(t->ti.dtype, src, dst, n);
        } else {
            const int64_t rows = n / n_in, d = rows / t->perm_heads;
            for (int64_t r = 0; r < rows; r++) hs_to_f32(t->ti.dtype, src + r * row_bytes, dst + hf_row(r, d) * n_in, n_in);
        }
    } else if (!t->perm_heads && !t->first && !t->count) {
        hs_to_f32(t->ti.dtype, src, dst, n);
    } else {
        /* A vector's slice or permutation: its elements may sit inside a
         * quantisation block, so dequantise all of it first. */
        const int64_t all = t->ti.n_elems, d = t->perm_heads ? all / t->perm_heads : 0;
        float *tmp = malloc((size_t)all * sizeof *tmp);
        if (!tmp) return -1;
        hs_to_f32(t->ti.dtype, src, tmp, all);
        for (int64_t r = 0; r < n; r++) dst[t->perm_heads ? hf_row(r, d) : r] = tmp[t->first + r];
        free(tmp);
    }
    for (int64_t i = 0; t->add != 0.0f && i < n; i++) dst[i] += t->add;
    return 0;
}

hs_status hs_model_load_gguf(hs_model *m, const char *path, hs_err *err) {
    hs_status st = HS_OK;
    hs_gguf *g = NULL;
    hs_gguf_layout lay;
    plan p = {0};
    int failed = 0;

    HS_CHECK(hs_gguf_open(path, &g, err));
    HS_CHECK(hs_gguf_read_config(g, &m->cfg, &lay, err));
    HS_CHECK(hs_model_config_validate(&m->cfg, path, err));
    if (lay.permuted && m->cfg.d_head % 2 != 0)
        HS_FAIL(err, HS_ERR_FORMAT, "%s: head dimension %d is odd: cannot undo the Q/K permutation", path,
                m->cfg.d_head);
    HS_CHECK(hs_model_alloc_layers(m, err));
    /* per layer at most 16 tensors (GPT-2's, or Gemma 3's with biases), 5 more for the whole model */
    p.s = calloc((size_t)m->cfg.n_layers * 16 + 5, sizeof *p.s);
    if (!p.s) HS_FAIL(err, HS_ERR_OOM, "%s: out of memory", path);
    HS_CHECK(plan_tensors(g, m, &lay, &p, err));

    for (int i = 0; i < p.n; i++) {
        tensor_spec *t = &p.s[i];
        HS_CHECK(hs_model_alloc_f32(m, spec_elems(t), t->dst, err));
        hs_model_note_dtype(m, hs_dtype_name(t->ti.dtype));
    }
    /* Tensors are independent: dequantise them in parallel. */
#pragma omp parallel for schedule(dynamic) reduction(| : failed)
    for (int i = 0; i < p.n; i++) failed |= convert_tensor(&p.s[i]) != 0;
    if (failed) HS_FAIL(err, HS_ERR_OOM, "%s: out of memory while dequantising", path);
    if (m->cfg.tied_embeddings) m->w.unembed = m->w.tok_embd;
    for (int l = 0; lay.family == HS_GGUF_PHI2 && l < m->cfg.n_layers; l++) /* one norm read by both halves */
        m->w.layers[l].ln2_w = m->w.layers[l].ln1_w, m->w.layers[l].ln2_b = m->w.layers[l].ln1_b;
    for (int i = 0; m->w.rope_freq_factors && i < (m->cfg.rot_dim ? m->cfg.rot_dim : m->cfg.d_head) / 2; i++)
        if (!(m->w.rope_freq_factors[i] > 0.0f) || isinf(m->w.rope_freq_factors[i]))
            HS_FAIL(err, HS_ERR_FORMAT, "%s: tensor 'rope_freqs.weight': factor %d is %g (must be positive and finite)",
                    path, i, (double)m->w.rope_freq_factors[i]);
exit:
    free(p.s);
    hs_gguf_close(g);
    return st;
}
