/* hs_model_gptj: GPTJForCausalLM (GPT-J-6B) from an HF folder: its
 * config.json and weights. Phi's parallel block (one LayerNorm read by the
 * attention and the MLP: ln2 aliases ln1) without q/k/v or output-projection
 * biases; the MLP and lm_head have biases. RoPE rotates the first rotary_dim
 * dims of each head in adjacent pairs (rotate_every_two: HS_ROPE_NORMAL), kept
 * in the checkpoint's layout, so hook_q and hook_k are transformers' (and
 * TransformerLens's) tensors as they are. */

#include "hs_model_hf_internal.h"

hs_status hs_hf_parse_gptj_config(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    hs_status st;
    c->arch = HS_ARCH_GPTJ;
    /* defaults for absent keys: GPTJConfig's */
    if ((st = hs_hf_cfg_int(root, path, "n_layer", 1, 0, &c->n_layers, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "n_head", 1, 0, &c->n_heads, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "n_embd", 1, 0, &c->d_model, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "vocab_size", 1, 0, &c->n_vocab, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "n_positions", 0, 2048, &c->n_ctx, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "n_inner", 0, 4 * c->d_model, &c->d_mlp, err))) return st;
    if ((st = hs_hf_cfg_float(root, path, "layer_norm_epsilon", 1e-5f, &c->norm_eps, err))) return st;
    if (c->n_heads <= 0 || c->d_model % c->n_heads != 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: n_embd %d is not divisible by n_head %d", path, c->d_model,
                          c->n_heads);
    c->n_kv_heads = c->n_heads;
    c->d_head = c->d_model / c->n_heads;
    /* rotary_dim null rotates a table as wide as the whole stream over each head, which
     * transformers only runs when n_head is 1 */
    if (json_is_null(json_object_get(root, "rotary_dim")))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: rotary_dim null is not supported", path);
    if ((st = hs_hf_cfg_int(root, path, "rotary_dim", 0, 64, &c->rot_dim, err))) return st;
    if (c->rot_dim < 2 || c->rot_dim > c->d_head || c->rot_dim % 2)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: rotary_dim %d must be even, from 2 to the head's %d", path,
                          c->rot_dim, c->d_head);
    if ((st = hs_hf_cfg_act(root, path, "activation_function", "gelu_new", 0, c, err))) return st;
    c->rope = HS_ROPE_NORMAL;
    c->rope_theta = 10000.0f; /* fixed in GPT-J's create_sinusoidal_positions */
    c->norm = HS_NORM_LAYERNORM;
    c->parallel_attn_mlp = 1;
    c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", 0);
    c->qkv_bias = 0;
    c->out_bias = 1; /* the MLP's; the output projection has none (bo stays NULL) */
    c->learned_pos = 0;
    return HS_OK;
}

hs_status hs_hf_load_gptj(hs_hf_loader *L, hs_err *err) {
    hs_status st = HS_OK;
    hs_model *m = L->m;
    const hs_model_config *c = &m->cfg;
    const int64_t d = c->d_model, f = c->d_mlp;
    char n[256];
    HS_CHECK(hs_hf_load(L, "transformer.wte.weight", c->n_vocab, d, 0, &m->w.tok_embd, err));
    for (int l = 0; l < c->n_layers; l++) {
        hs_layer_weights *W = &m->w.layers[l];
#define NAME(s) (snprintf(n, sizeof n, "transformer.h.%d.%s", l, s), n)
        HS_CHECK(hs_hf_load(L, NAME("ln_1.weight"), d, 0, 0, &W->ln1_w, err));
        HS_CHECK(hs_hf_load(L, NAME("ln_1.bias"), d, 0, 0, &W->ln1_b, err));
        W->ln2_w = W->ln1_w, W->ln2_b = W->ln1_b; /* one norm read by both halves of the block */
        HS_CHECK(hs_hf_load(L, NAME("attn.q_proj.weight"), d, d, 0, &W->wq, err));
        HS_CHECK(hs_hf_load(L, NAME("attn.k_proj.weight"), d, d, 0, &W->wk, err));
        HS_CHECK(hs_hf_load(L, NAME("attn.v_proj.weight"), d, d, 0, &W->wv, err));
        HS_CHECK(hs_hf_load(L, NAME("attn.out_proj.weight"), d, d, 0, &W->wo, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.fc_in.weight"), f, d, 0, &W->w_up, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.fc_in.bias"), f, 0, 0, &W->b_up, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.fc_out.weight"), d, f, 0, &W->w_down, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.fc_out.bias"), d, 0, 0, &W->b_down, err));
#undef NAME
    }
    HS_CHECK(hs_hf_load_final(L, "transformer.ln_f", 1, "lm_head.weight", err));
    HS_CHECK(hs_hf_load(L, "lm_head.bias", c->n_vocab, 0, 0, &m->w.unembed_b, err));
exit:
    return st;
}
