/* hs_model_starcoder2: Starcoder2ForCausalLM (StarCoder2 3B, 7B, 15B) from an
 * HF folder: its config.json and weights. The layer is Llama's attention
 * (q/k/v/o, grouped KV heads, RoPE rotate_half style) with GPT-2's ungated MLP
 * (c_fc, the tanh GELU, c_proj), LayerNorms with biases, biases on every
 * projection where use_bias says, and with sliding_window a window in every
 * layer. */
#include <string.h>

#include "hs_model_hf_internal.h"

hs_status hs_hf_parse_starcoder2_config(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    hs_status st;
    c->arch = HS_ARCH_STARCODER2;
    if ((st = hs_hf_cfg_sizes(root, path, c, err))) return st;
    /* defaults for absent keys: Starcoder2Config's */
    if ((st = hs_hf_cfg_int(root, path, "max_position_embeddings", 0, 4096, &c->n_ctx, err))) return st;
    if (c->n_heads <= 0) return hs_err_set(err, HS_ERR_FORMAT, "%s: num_attention_heads must be positive", path);
    /* Starcoder2Attention: head_dim where given and nonzero, else hidden_size / heads */
    json_t *hd = json_object_get(root, "head_dim");
    c->d_head = c->d_model / c->n_heads;
    if (json_is_integer(hd) && json_integer_value(hd) != 0 &&
        (st = hs_hf_cfg_int(root, path, "head_dim", 0, c->d_head, &c->d_head, err)))
        return st;
    if ((st = hs_hf_cfg_float(root, path, "norm_epsilon", 1e-5f, &c->norm_eps, err)) ||
        (st = hs_hf_cfg_act(root, path, "hidden_act", "gelu_pytorch_tanh", 0, c, err)) ||
        (st = hs_hf_cfg_window(root, path, 0, c, err))) /* every layer (null: none) */
        return st;
    const char *rs_name;
    json_t *rs = hs_hf_rope_dict(root, &rs_name);
    if ((st = hs_hf_rope_theta(root, rs, path, 10000.0f, c, err))) return st;
    if (json_is_object(rs) && (st = hs_hf_parse_rope_scaling(root, rs, path, rs_name, c, err))) return st;
    c->window_from = 0, c->global_every = 0;
    c->norm = HS_NORM_LAYERNORM;
    c->rope = HS_ROPE_NEOX;
    c->parallel_attn_mlp = 0;
    c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", 1);
    c->qkv_bias = c->out_bias = hs_hf_cfg_bool(root, "use_bias", 1);
    c->learned_pos = 0;
    return HS_OK;
}

hs_status hs_hf_load_starcoder2(hs_hf_loader *L, hs_err *err) {
    hs_status st = HS_OK;
    hs_model *m = L->m;
    const hs_model_config *c = &m->cfg;
    const int64_t d = c->d_model, q = (int64_t)c->n_heads * c->d_head, kv = (int64_t)c->n_kv_heads * c->d_head,
                  f = c->d_mlp;
    char n[256];
    HS_CHECK(hs_hf_load(L, "model.embed_tokens.weight", c->n_vocab, d, 0, &m->w.tok_embd, err));
    for (int l = 0; l < c->n_layers; l++) {
        hs_layer_weights *W = &m->w.layers[l];
#define NAME(s) (snprintf(n, sizeof n, "model.layers.%d.%s", l, s), n)
        HS_CHECK(hs_hf_load(L, NAME("input_layernorm.weight"), d, 0, 0, &W->ln1_w, err));
        HS_CHECK(hs_hf_load(L, NAME("input_layernorm.bias"), d, 0, 0, &W->ln1_b, err));
        HS_CHECK(hs_hf_load(L, NAME("self_attn.q_proj.weight"), q, d, 0, &W->wq, err));
        HS_CHECK(hs_hf_load(L, NAME("self_attn.k_proj.weight"), kv, d, 0, &W->wk, err));
        HS_CHECK(hs_hf_load(L, NAME("self_attn.v_proj.weight"), kv, d, 0, &W->wv, err));
        HS_CHECK(hs_hf_load(L, NAME("self_attn.o_proj.weight"), d, q, 0, &W->wo, err));
        HS_CHECK(hs_hf_load(L, NAME("post_attention_layernorm.weight"), d, 0, 0, &W->ln2_w, err));
        HS_CHECK(hs_hf_load(L, NAME("post_attention_layernorm.bias"), d, 0, 0, &W->ln2_b, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.c_fc.weight"), f, d, 0, &W->w_up, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.c_proj.weight"), d, f, 0, &W->w_down, err));
        if (c->qkv_bias) {
            HS_CHECK(hs_hf_load(L, NAME("self_attn.q_proj.bias"), q, 0, 0, &W->bq, err));
            HS_CHECK(hs_hf_load(L, NAME("self_attn.k_proj.bias"), kv, 0, 0, &W->bk, err));
            HS_CHECK(hs_hf_load(L, NAME("self_attn.v_proj.bias"), kv, 0, 0, &W->bv, err));
            HS_CHECK(hs_hf_load(L, NAME("self_attn.o_proj.bias"), d, 0, 0, &W->bo, err));
            HS_CHECK(hs_hf_load(L, NAME("mlp.c_fc.bias"), f, 0, 0, &W->b_up, err));
            HS_CHECK(hs_hf_load(L, NAME("mlp.c_proj.bias"), d, 0, 0, &W->b_down, err));
        }
#undef NAME
    }
    HS_CHECK(hs_hf_load_final(L, "model.norm", 1, "lm_head.weight", err));
exit:
    return st;
}
