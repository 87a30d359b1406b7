/* hs_model_neox: GPTNeoXForCausalLM (the Pythia suite) from an HF folder:
 * its config.json (Pythia's Hub spelling or transformers 5's) and weights,
 * the fused per-head query_key_value split into wq, wk, wv. */
#include <stdlib.h>
#include <string.h>

#include "hs_model_hf_internal.h"

/* GPT-NeoX (Pythia): LayerNorms with biases, fused per-head QKV, exact GELU,
 * RoPE on the first rotary_pct of each head, and (use_parallel_residual) the
 * attention and MLP both reading resid_pre. */
hs_status hs_hf_parse_neox_config(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    hs_status st;
    c->arch = HS_ARCH_NEOX;
    if ((st = hs_hf_cfg_int(root, path, "num_hidden_layers", 1, 0, &c->n_layers, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "num_attention_heads", 1, 0, &c->n_heads, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "hidden_size", 1, 0, &c->d_model, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "intermediate_size", 1, 0, &c->d_mlp, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "vocab_size", 1, 0, &c->n_vocab, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "max_position_embeddings", 0, 2048, &c->n_ctx, err))) return st;
    if ((st = hs_hf_cfg_float(root, path, "layer_norm_eps", 1e-5f, &c->norm_eps, err))) return st;
    if (c->n_heads <= 0 || c->d_model % c->n_heads != 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: hidden_size %d is not divisible by num_attention_heads %d", path,
                          c->d_model, c->n_heads);
    c->n_kv_heads = c->n_heads;
    c->d_head = c->d_model / c->n_heads;
    /* rotary_emb_base / rotary_pct at the top level, or rope_parameters' rope_theta /
     * partial_rotary_factor in files transformers 5 writes */
    float pct = 0.25f;
    json_t *rp = json_object_get(root, "rope_parameters");
    if ((st = hs_hf_cfg_float(root, path, "rotary_emb_base", 10000.0f, &c->rope_theta, err))) return st;
    if ((st = hs_hf_cfg_float(root, path, "rotary_pct", 0.25f, &pct, err))) return st;
    if (json_is_object(rp)) {
        json_t *t = json_object_get(rp, "rope_type"), *th = json_object_get(rp, "rope_theta"),
               *pf = json_object_get(rp, "partial_rotary_factor");
        if (json_is_string(t) && strcmp(json_string_value(t), "default"))
            return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: rope type '%s' is not supported", path,
                              json_string_value(t));
        if (json_is_number(th)) c->rope_theta = (float)json_number_value(th);
        if (json_is_number(pf)) pct = (float)json_number_value(pf);
    }
    json_t *rs = json_object_get(root, "rope_scaling");
    if (rs && !json_is_null(rs) && !(json_is_object(rs) && json_object_size(rs) == 0)) /* {} is none, as in HF */
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: rope_scaling is not supported for GPT-NeoX", path);
    if ((st = hs_hf_rot_dim(path, "rotary_pct", pct, c, err))) return st;
    if ((st = hs_hf_cfg_act(root, path, "hidden_act", "gelu", 0, c, err))) return st;
    if (!hs_hf_cfg_bool(root, "attention_bias", 1))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: attention_bias false is not supported for GPT-NeoX", path);
    c->norm = HS_NORM_LAYERNORM;
    c->rope = HS_ROPE_NEOX;
    c->parallel_attn_mlp = hs_hf_cfg_bool(root, "use_parallel_residual", 1);
    c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", 0);
    c->qkv_bias = c->out_bias = 1;
    c->learned_pos = 0;
    return HS_OK;
}

/* rows [n_kv, H / n_kv + 2, dh] x cols, per KV head its query heads, then its key, then its value,
 * into new model-owned w[0] (q, [H * dh, cols]), w[1] (k) and w[2] (v) ([n_kv * dh, cols] each). */
static hs_status split_grouped(hs_model *m, const float *qkv, int H, int n_kv, int dh, int64_t cols, float **w[3],
                               hs_err *err) {
    const int g = H / n_kv;
    const int64_t blk = (int64_t)dh * cols;
    for (int j = 0; j < 3; j++) {
        hs_status st = hs_model_alloc_f32(m, (int64_t)(j ? n_kv : H) * blk, w[j], err);
        if (st != HS_OK) return st;
    }
    for (int kv = 0; kv < n_kv; kv++) {
        const float *src = qkv + (int64_t)kv * (g + 2) * blk;
        memcpy(*w[0] + (int64_t)kv * g * blk, src, (size_t)(g * blk) * sizeof(float));
        memcpy(*w[1] + (int64_t)kv * blk, src + g * blk, (size_t)blk * sizeof(float));
        memcpy(*w[2] + (int64_t)kv * blk, src + (g + 1) * blk, (size_t)blk * sizeof(float));
    }
    return HS_OK;
}

hs_status hs_hf_load_qkv_grouped(hs_hf_loader *L, const char *weight, const char *bias, hs_layer_weights *W,
                                 hs_err *err) {
    hs_status st = HS_OK;
    const hs_model_config *c = &L->m->cfg;
    const int64_t d = c->d_model, rows = ((int64_t)c->n_heads + 2 * c->n_kv_heads) * c->d_head;
    float *w = malloc((size_t)(rows * d) * sizeof(float)), *b = malloc((size_t)rows * sizeof(float));
    if (!w || !b) HS_FAIL(err, HS_ERR_OOM, "%s: out of memory for '%s'", L->dir, weight);
    HS_CHECK(hs_hf_load(L, weight, rows, d, 0, &w, err));
    float **ws[3] = {&W->wq, &W->wk, &W->wv}, **bs[3] = {&W->bq, &W->bk, &W->bv};
    HS_CHECK(split_grouped(L->m, w, c->n_heads, c->n_kv_heads, c->d_head, d, ws, err));
    if (bias) {
        HS_CHECK(hs_hf_load(L, bias, rows, 0, 0, &b, err));
        HS_CHECK(split_grouped(L->m, b, c->n_heads, c->n_kv_heads, c->d_head, 1, bs, err));
    }
exit:
    free(w);
    free(b);
    return st;
}

hs_status hs_hf_load_neox_layer(hs_hf_loader *L, const char *pre, const char *attn, hs_layer_weights *W,
                                hs_err *err) {
    hs_status st = HS_OK;
    const hs_model_config *c = &L->m->cfg;
    const int64_t d = c->d_model, f = c->d_mlp;
    char n[320], nb[320];
#define NAME(s) (snprintf(n, sizeof n, "%s%s", pre, s), n)
#define ATTN(s) (snprintf(n, sizeof n, "%s%s.%s", pre, attn, s), n)
    HS_CHECK(hs_hf_load(L, NAME("input_layernorm.weight"), d, 0, 0, &W->ln1_w, err));
    HS_CHECK(hs_hf_load(L, NAME("input_layernorm.bias"), d, 0, 0, &W->ln1_b, err));
    snprintf(nb, sizeof nb, "%s%s.query_key_value.bias", pre, attn);
    HS_CHECK(hs_hf_load_qkv_grouped(L, ATTN("query_key_value.weight"), nb, W, err));
    HS_CHECK(hs_hf_load(L, ATTN("dense.weight"), d, d, 0, &W->wo, err));
    HS_CHECK(hs_hf_load(L, ATTN("dense.bias"), d, 0, 0, &W->bo, err));
    HS_CHECK(hs_hf_load(L, NAME("post_attention_layernorm.weight"), d, 0, 0, &W->ln2_w, err));
    HS_CHECK(hs_hf_load(L, NAME("post_attention_layernorm.bias"), d, 0, 0, &W->ln2_b, err));
    HS_CHECK(hs_hf_load(L, NAME("mlp.dense_h_to_4h.weight"), f, d, 0, &W->w_up, err));
    HS_CHECK(hs_hf_load(L, NAME("mlp.dense_h_to_4h.bias"), f, 0, 0, &W->b_up, err));
    HS_CHECK(hs_hf_load(L, NAME("mlp.dense_4h_to_h.weight"), d, f, 0, &W->w_down, err));
    HS_CHECK(hs_hf_load(L, NAME("mlp.dense_4h_to_h.bias"), d, 0, 0, &W->b_down, err));
#undef ATTN
#undef NAME
exit:
    return st;
}

hs_status hs_hf_load_neox(hs_hf_loader *L, hs_err *err) {
    hs_status st = HS_OK;
    hs_model *m = L->m;
    const hs_model_config *c = &m->cfg;
    const int64_t d = c->d_model;
    char pre[64];
    HS_CHECK(hs_hf_load(L, "gpt_neox.embed_in.weight", c->n_vocab, d, 0, &m->w.tok_embd, err));
    for (int l = 0; l < c->n_layers; l++) {
        snprintf(pre, sizeof pre, "gpt_neox.layers.%d.", l);
        HS_CHECK(hs_hf_load_neox_layer(L, pre, "attention", &m->w.layers[l], err));
    }
    HS_CHECK(hs_hf_load_final(L, "gpt_neox.final_layer_norm", 1, "embed_out.weight", err));
exit:
    return st;
}
