/* hs_model_opt: OPTForCausalLM (OPT-125M to 66B, the pruning literature's
 * other standard family) from an HF folder: its config.json and weights.
 * GPT-2's pre-LN block with nn.Linear projections, a ReLU MLP, and learned
 * positions whose table starts two rows in (OPTLearnedPositionalEmbedding's
 * offset). OPT-350M's post-LN layout and its project_in / project_out are
 * refused by name. */

#include "hs_model_hf_internal.h"

hs_status hs_hf_parse_opt_config(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    hs_status st;
    c->arch = HS_ARCH_OPT;
    /* defaults for absent keys: OPTConfig's */
    if ((st = hs_hf_cfg_int(root, path, "num_hidden_layers", 1, 0, &c->n_layers, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "num_attention_heads", 1, 0, &c->n_heads, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "hidden_size", 1, 0, &c->d_model, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "ffn_dim", 1, 0, &c->d_mlp, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "vocab_size", 1, 0, &c->n_vocab, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "max_position_embeddings", 0, 2048, &c->n_ctx, err))) return st;
    if (c->n_heads <= 0 || c->d_model % c->n_heads != 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: hidden_size %d is not divisible by num_attention_heads %d", path,
                          c->d_model, c->n_heads);
    int proj_dim = c->d_model;
    if ((st = hs_hf_cfg_int(root, path, "word_embed_proj_dim", 0, c->d_model, &proj_dim, err))) return st;
    if (proj_dim != c->d_model)
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "%s: word_embed_proj_dim %d differs from hidden_size %d (OPT-350M's project_in / "
                          "project_out): not supported",
                          path, proj_dim, c->d_model);
    if (!hs_hf_cfg_bool(root, "do_layer_norm_before", 1))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: do_layer_norm_before false (OPT-350M's post-LN) is not supported",
                          path);
    if (hs_hf_cfg_bool(root, "_remove_final_layer_norm", 0) || !hs_hf_cfg_bool(root, "layer_norm_elementwise_affine", 1))
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "%s: _remove_final_layer_norm and LayerNorms without weights are not supported", path);
    if ((st = hs_hf_cfg_act(root, path, "activation_function", "relu", 1, c, err))) return st;
    c->n_kv_heads = c->n_heads;
    c->d_head = c->d_model / c->n_heads;
    c->norm_eps = 1e-5f; /* nn.LayerNorm's default: OPT's config has no epsilon */
    c->norm = HS_NORM_LAYERNORM;
    c->rope = HS_ROPE_NONE;
    c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", 1);
    c->qkv_bias = c->out_bias = hs_hf_cfg_bool(root, "enable_bias", 1);
    c->learned_pos = 1;
    return HS_OK;
}

hs_status hs_hf_load_opt(hs_hf_loader *L, hs_err *err) {
    hs_status st = HS_OK;
    hs_model *m = L->m;
    const hs_model_config *c = &m->cfg;
    const int64_t d = c->d_model, f = c->d_mlp;
    char n[256];
    float *pos = NULL; /* [n_ctx + 2, d]: position p's row is p + 2 */
    /* the Hub's older files name the decoder without the "model." prefix */
    L->prefix = hs_hf_has_tensor(L, "model.decoder.embed_tokens.weight") ? "model." : "";
#define TOP(s) (snprintf(n, sizeof n, "%sdecoder.%s", L->prefix, s), n)
    HS_CHECK(hs_hf_load(L, TOP("embed_tokens.weight"), c->n_vocab, d, 0, &m->w.tok_embd, err));
    HS_CHECK(hs_hf_load(L, TOP("embed_positions.weight"), c->n_ctx + 2, d, 0, &pos, err));
    m->w.pos_embd = pos + 2 * d;
    for (int l = 0; l < c->n_layers; l++) {
        hs_layer_weights *W = &m->w.layers[l];
#define NAME(s) (snprintf(n, sizeof n, "%sdecoder.layers.%d.%s", L->prefix, l, s), n)
        HS_CHECK(hs_hf_load(L, NAME("self_attn_layer_norm.weight"), d, 0, 0, &W->ln1_w, err));
        HS_CHECK(hs_hf_load(L, NAME("self_attn_layer_norm.bias"), d, 0, 0, &W->ln1_b, err));
        const char *proj[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        float **ws[4] = {&W->wq, &W->wk, &W->wv, &W->wo}, **bs[4] = {&W->bq, &W->bk, &W->bv, &W->bo};
        for (int j = 0; j < 4; j++) {
            char wn[64], bn[64];
            snprintf(wn, sizeof wn, "self_attn.%s.weight", proj[j]);
            snprintf(bn, sizeof bn, "self_attn.%s.bias", proj[j]);
            HS_CHECK(hs_hf_load(L, NAME(wn), d, d, 0, ws[j], err));
            if (c->qkv_bias) HS_CHECK(hs_hf_load(L, NAME(bn), d, 0, 0, bs[j], err));
        }
        /* the layer's final_layer_norm is the MLP's pre-norm */
        HS_CHECK(hs_hf_load(L, NAME("final_layer_norm.weight"), d, 0, 0, &W->ln2_w, err));
        HS_CHECK(hs_hf_load(L, NAME("final_layer_norm.bias"), d, 0, 0, &W->ln2_b, err));
        HS_CHECK(hs_hf_load(L, NAME("fc1.weight"), f, d, 0, &W->w_up, err));
        HS_CHECK(hs_hf_load(L, NAME("fc2.weight"), d, f, 0, &W->w_down, err));
        if (c->out_bias) {
            HS_CHECK(hs_hf_load(L, NAME("fc1.bias"), f, 0, 0, &W->b_up, err));
            HS_CHECK(hs_hf_load(L, NAME("fc2.bias"), d, 0, 0, &W->b_down, err));
        }
#undef NAME
    }
    HS_CHECK(hs_hf_load_final(L, TOP("final_layer_norm"), 1, "lm_head.weight", err));
#undef TOP
exit:
    return st;
}
