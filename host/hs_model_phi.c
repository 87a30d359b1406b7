/* hs_model_phi: PhiForCausalLM (Phi-1, Phi-1.5, Phi-2) from an HF folder: its
 * config.json and weights. Phi's layer is a parallel block like GPT-NeoX's,
 * with one LayerNorm that both the attention and the MLP read: the loader
 * points ln2 at ln1's weights, so the parallel block's second norm computes
 * the same normed stream. q, k, v, the output projection, both MLP
 * projections and the unembedding carry biases; RoPE rotates the first
 * partial_rotary_factor of each head, rotate_half style. */

#include "hs_model_hf_internal.h"

hs_status hs_hf_parse_phi_config(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    hs_status st;
    c->arch = HS_ARCH_PHI;
    if ((st = hs_hf_cfg_sizes(root, path, c, err))) return st;
    /* defaults for absent keys: PhiConfig's */
    if ((st = hs_hf_cfg_int(root, path, "max_position_embeddings", 0, 2048, &c->n_ctx, err))) return st;
    if (c->n_heads <= 0) return hs_err_set(err, HS_ERR_FORMAT, "%s: num_attention_heads must be positive", path);
    if ((st = hs_hf_cfg_int(root, path, "head_dim", 0, c->d_model / c->n_heads, &c->d_head, err))) return st;
    if ((st = hs_hf_cfg_float(root, path, "layer_norm_eps", 1e-5f, &c->norm_eps, err))) return st;
    if (hs_hf_cfg_bool(root, "qk_layernorm", 0))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: qk_layernorm (LayerNorms on q and k) is not supported", path);
    if ((st = hs_hf_cfg_act(root, path, "hidden_act", "gelu_new", 0, c, err))) return st;
    /* rope_theta and partial_rotary_factor at the top level, or in rope_scaling (else
     * rope_parameters), which wins as in transformers; PhiConfig's factor defaults to 0.5 */
    const char *rs_name;
    json_t *rs = hs_hf_rope_dict(root, &rs_name);
    if ((st = hs_hf_rope_theta(root, rs, path, 10000.0f, c, err)) ||
        (st = hs_hf_partial_rotary(root, rs, path, 0.5, c, err)))
        return st;
    if (json_is_object(rs) && (st = hs_hf_parse_rope_scaling(root, rs, path, rs_name, c, err))) return st;
    c->norm = HS_NORM_LAYERNORM;
    c->rope = HS_ROPE_NEOX;
    c->parallel_attn_mlp = 1;
    c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", 0);
    c->qkv_bias = c->out_bias = 1;
    c->learned_pos = 0;
    return HS_OK;
}

hs_status hs_hf_load_phi(hs_hf_loader *L, hs_err *err) {
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
        W->ln2_w = W->ln1_w, W->ln2_b = W->ln1_b; /* one norm read by both halves of the block */
        const char *proj[3] = {"q_proj", "k_proj", "v_proj"};
        float **ws[3] = {&W->wq, &W->wk, &W->wv}, **bs[3] = {&W->bq, &W->bk, &W->bv};
        for (int j = 0; j < 3; j++) {
            char wn[64], bn[64];
            snprintf(wn, sizeof wn, "self_attn.%s.weight", proj[j]);
            snprintf(bn, sizeof bn, "self_attn.%s.bias", proj[j]);
            HS_CHECK(hs_hf_load(L, NAME(wn), j ? kv : q, d, 0, ws[j], err));
            HS_CHECK(hs_hf_load(L, NAME(bn), j ? kv : q, 0, 0, bs[j], err));
        }
        HS_CHECK(hs_hf_load(L, NAME("self_attn.dense.weight"), d, q, 0, &W->wo, err));
        HS_CHECK(hs_hf_load(L, NAME("self_attn.dense.bias"), d, 0, 0, &W->bo, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.fc1.weight"), f, d, 0, &W->w_up, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.fc1.bias"), f, 0, 0, &W->b_up, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.fc2.weight"), d, f, 0, &W->w_down, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.fc2.bias"), d, 0, 0, &W->b_down, err));
#undef NAME
    }
    HS_CHECK(hs_hf_load(L, "model.final_layernorm.weight", d, 0, 0, &m->w.lnf_w, err));
    HS_CHECK(hs_hf_load(L, "model.final_layernorm.bias", d, 0, 0, &m->w.lnf_b, err));
    if (c->tied_embeddings) m->w.unembed = m->w.tok_embd;
    else HS_CHECK(hs_hf_load(L, "lm_head.weight", c->n_vocab, d, 0, &m->w.unembed, err));
    HS_CHECK(hs_hf_load(L, "lm_head.bias", c->n_vocab, 0, 0, &m->w.unembed_b, err));
exit:
    return st;
}
