/* hs_model_bigcode: GPTBigCodeForCausalLM (SantaCoder, StarCoder, StarCoderBase,
 * TinyStarCoder, WizardCoder) from an HF folder: its config.json and weights.
 * GPT-2's block with nn.Linear weights ([out, in], not Conv1D's transpose),
 * usually multi-query attention: c_attn's outputs are all heads' q, then one
 * shared k and v ([d + 2 d_head] rows), a single KV head here. Without
 * multi_query, c_attn holds each head's q, k and v rows one after another, as
 * GPT-NeoX's query_key_value does. */
#include <stdlib.h>

#include "hs_model_hf_internal.h"

hs_status hs_hf_parse_bigcode_config(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    hs_status st;
    c->arch = HS_ARCH_BIGCODE;
    /* defaults for absent keys: GPTBigCodeConfig's */
    if ((st = hs_hf_cfg_int(root, path, "n_layer", 0, 12, &c->n_layers, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "n_head", 0, 12, &c->n_heads, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "n_embd", 0, 768, &c->d_model, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "vocab_size", 0, 50257, &c->n_vocab, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "n_positions", 0, 1024, &c->n_ctx, err))) return st;
    if (json_is_null(json_object_get(root, "n_inner"))) c->d_mlp = 4 * c->d_model;
    else if ((st = hs_hf_cfg_int(root, path, "n_inner", 0, 4 * c->d_model, &c->d_mlp, err))) return st;
    if ((st = hs_hf_cfg_float(root, path, "layer_norm_epsilon", 1e-5f, &c->norm_eps, err))) return st;
    if (c->n_heads <= 0 || c->d_model % c->n_heads != 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: n_embd %d is not divisible by n_head %d", path, c->d_model,
                          c->n_heads);
    if (hs_hf_cfg_bool(root, "add_cross_attention", 0))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: add_cross_attention is not supported (a decoder only)", path);
    if ((st = hs_hf_cfg_act(root, path, "activation_function", "gelu_pytorch_tanh", 0, c, err))) return st;
    c->d_head = c->d_model / c->n_heads;
    c->n_kv_heads = hs_hf_cfg_bool(root, "multi_query", 1) ? 1 : c->n_heads;
    /* scale_attn_weights false: scores q.k, unscaled (the softmax's f32 upcasts change nothing in f32) */
    c->attn_scale = hs_hf_cfg_bool(root, "scale_attn_weights", 1) ? 0.0f : 1.0f;
    c->norm = HS_NORM_LAYERNORM;
    c->rope = HS_ROPE_NONE;
    c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", 1);
    c->qkv_bias = c->out_bias = c->learned_pos = 1;
    return HS_OK;
}

/* c_attn's weight [rows, d] and bias [rows] into W's q, k and v. */
static hs_status load_c_attn(hs_hf_loader *L, int l, hs_layer_weights *W, hs_err *err) {
    hs_status st = HS_OK;
    hs_model *m = L->m;
    const hs_model_config *c = &m->cfg;
    const int64_t d = c->d_model, kv = (int64_t)c->n_kv_heads * c->d_head, rows = d + 2 * kv;
    char n[256];
    float *w = NULL, *b = NULL;
    if (c->n_kv_heads == 1) { /* multi-query: [q (d) | k | v] rows, aliased into model-owned buffers */
        snprintf(n, sizeof n, "transformer.h.%d.attn.c_attn.weight", l);
        if ((st = hs_hf_load(L, n, rows, d, 0, &w, err))) return st;
        snprintf(n, sizeof n, "transformer.h.%d.attn.c_attn.bias", l);
        if ((st = hs_hf_load(L, n, rows, 0, 0, &b, err))) return st;
        W->wq = w, W->wk = w + d * d, W->wv = w + (d + kv) * d;
        W->bq = b, W->bk = b + d, W->bv = b + d + kv;
        return HS_OK;
    }
    /* per head [q | k | v]: read into scratch, split into the model's buffers */
    w = malloc((size_t)(rows * d) * sizeof(float)), b = malloc((size_t)rows * sizeof(float));
    if (!w || !b) HS_FAIL(err, HS_ERR_OOM, "%s: out of memory for c_attn", L->dir);
    snprintf(n, sizeof n, "transformer.h.%d.attn.c_attn.weight", l);
    HS_CHECK(hs_hf_load(L, n, rows, d, 0, &w, err));
    snprintf(n, sizeof n, "transformer.h.%d.attn.c_attn.bias", l);
    HS_CHECK(hs_hf_load(L, n, rows, 0, 0, &b, err));
    float **ws[3] = {&W->wq, &W->wk, &W->wv}, **bs[3] = {&W->bq, &W->bk, &W->bv};
    HS_CHECK(hs_hf_split_qkv_per_head(m, w, c->n_heads, c->d_head, d, ws, err));
    HS_CHECK(hs_hf_split_qkv_per_head(m, b, c->n_heads, c->d_head, 1, bs, err));
exit:
    free(w);
    free(b);
    return st;
}

hs_status hs_hf_load_bigcode(hs_hf_loader *L, hs_err *err) {
    hs_status st = HS_OK;
    hs_model *m = L->m;
    const hs_model_config *c = &m->cfg;
    const int64_t d = c->d_model, f = c->d_mlp;
    char n[256];
    HS_CHECK(hs_hf_load(L, "transformer.wte.weight", c->n_vocab, d, 0, &m->w.tok_embd, err));
    HS_CHECK(hs_hf_load(L, "transformer.wpe.weight", c->n_ctx, d, 0, &m->w.pos_embd, err));
    for (int l = 0; l < c->n_layers; l++) {
        hs_layer_weights *W = &m->w.layers[l];
#define NAME(s) (snprintf(n, sizeof n, "transformer.h.%d.%s", l, s), n)
        HS_CHECK(hs_hf_load(L, NAME("ln_1.weight"), d, 0, 0, &W->ln1_w, err));
        HS_CHECK(hs_hf_load(L, NAME("ln_1.bias"), d, 0, 0, &W->ln1_b, err));
        HS_CHECK(load_c_attn(L, l, W, err));
        HS_CHECK(hs_hf_load(L, NAME("attn.c_proj.weight"), d, d, 0, &W->wo, err));
        HS_CHECK(hs_hf_load(L, NAME("attn.c_proj.bias"), d, 0, 0, &W->bo, err));
        HS_CHECK(hs_hf_load(L, NAME("ln_2.weight"), d, 0, 0, &W->ln2_w, err));
        HS_CHECK(hs_hf_load(L, NAME("ln_2.bias"), d, 0, 0, &W->ln2_b, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.c_fc.weight"), f, d, 0, &W->w_up, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.c_fc.bias"), f, 0, 0, &W->b_up, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.c_proj.weight"), d, f, 0, &W->w_down, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.c_proj.bias"), d, 0, 0, &W->b_down, err));
#undef NAME
    }
    HS_CHECK(hs_hf_load(L, "transformer.ln_f.weight", d, 0, 0, &m->w.lnf_w, err));
    HS_CHECK(hs_hf_load(L, "transformer.ln_f.bias", d, 0, 0, &m->w.lnf_b, err));
    if (c->tied_embeddings) m->w.unembed = m->w.tok_embd;
    else HS_CHECK(hs_hf_load(L, "lm_head.weight", c->n_vocab, d, 0, &m->w.unembed, err));
exit:
    return st;
}
