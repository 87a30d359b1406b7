/* hs_model_falcon: FalconForCausalLM (Falcon-7B, 40B, 180B, Falcon2-11B) from an
 * HF folder: its config.json (the Hub's older spellings n_layer, n_head, n_head_kv
 * and n_embed as well) and weights.
 *
 * Three layouts, as transformers' FalconDecoderLayer reads the config:
 * - parallel_attn (7B): one LayerNorm that the attention and the MLP both read
 *   (ln2 points at ln1's weights, as for Phi), multi-query attention;
 * - new_decoder_architecture (40B, 180B): ln_attn and ln_mlp, both on resid_pre,
 *   num_kv_heads grouped key/value heads (num_ln_in_parallel_attn 1: Falcon2-11B's
 *   one shared norm);
 * - neither: the sequential pre-LN block.
 * query_key_value holds, per KV head, its query heads, then its key, then its
 * value; RoPE rotates whole heads, rotate_half style. Falcon-RW (alibi) has
 * ALiBi in place of RoPE, its biases added to q k^T before the score scale: the
 * slopes are scaled by 1/sqrt(d_head) (alibi_scale). */
#include <math.h>
#include <string.h>

#include "hs_model_hf_internal.h"

hs_status hs_hf_parse_falcon_config(json_t *root, const char *path, hs_model_config *c, int *two_norms, hs_err *err) {
    hs_status st;
    c->arch = HS_ARCH_FALCON;
    /* defaults for absent keys: FalconConfig's */
    if ((st = hs_hf_cfg_int2(root, path, "num_hidden_layers", "n_layer", 1, 0, &c->n_layers, err)) ||
        (st = hs_hf_cfg_int2(root, path, "num_attention_heads", "n_head", 1, 0, &c->n_heads, err)) ||
        (st = hs_hf_cfg_int2(root, path, "hidden_size", "n_embed", 1, 0, &c->d_model, err)) ||
        (st = hs_hf_cfg_int(root, path, "vocab_size", 1, 0, &c->n_vocab, err)) ||
        (st = hs_hf_cfg_int(root, path, "max_position_embeddings", 0, 2048, &c->n_ctx, err)) ||
        (st = hs_hf_cfg_float(root, path, "layer_norm_epsilon", 1e-5f, &c->norm_eps, err)))
        return st;
    if (c->n_heads <= 0 || c->d_model % c->n_heads != 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: hidden_size %d is not divisible by num_attention_heads %d", path,
                          c->d_model, c->n_heads);
    c->d_head = c->d_model / c->n_heads;
    if (json_is_null(json_object_get(root, "ffn_hidden_size"))) c->d_mlp = 4 * c->d_model;
    else if ((st = hs_hf_cfg_int(root, path, "ffn_hidden_size", 0, 4 * c->d_model, &c->d_mlp, err))) return st;
    if (hs_hf_cfg_bool(root, "apply_residual_connection_post_layernorm", 0))
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "%s: apply_residual_connection_post_layernorm true is not supported", path);
    const int new_arch = hs_hf_cfg_bool(root, "new_decoder_architecture", 0),
              parallel = hs_hf_cfg_bool(root, "parallel_attn", 1);
    int n_ln = new_arch ? 2 : 1;
    if (!json_is_null(json_object_get(root, "num_ln_in_parallel_attn")) &&
        (st = hs_hf_cfg_int(root, path, "num_ln_in_parallel_attn", 0, n_ln, &n_ln, err)))
        return st;
    /* the combinations FalconDecoderLayer cannot run (it reads a norm it never made) */
    if (new_arch && !parallel)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: new_decoder_architecture with parallel_attn false is not supported",
                          path);
    if (parallel && (n_ln < 1 || n_ln > 2 || (n_ln == 2 && !new_arch)))
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "%s: num_ln_in_parallel_attn %d is not supported (1, or 2 with new_decoder_architecture)",
                          path, n_ln);
    if (new_arch) {
        if ((st = hs_hf_cfg_int2(root, path, "num_kv_heads", "n_head_kv", 0, c->n_heads, &c->n_kv_heads, err))) return st;
        if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads != 0)
            return hs_err_set(err, HS_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of num_kv_heads %d", path,
                              c->n_heads, c->n_kv_heads);
    } else {
        c->n_kv_heads = hs_hf_cfg_bool(root, "multi_query", 1) ? 1 : c->n_heads;
    }
    if ((st = hs_hf_cfg_act(root, path, "activation", "gelu", 0, c, err))) return st;
    const char *rs_name;
    json_t *rs = hs_hf_rope_dict(root, &rs_name);
    if ((st = hs_hf_rope_theta(root, rs, path, 10000.0f, c, err))) return st;
    if (json_is_object(rs) && (st = hs_hf_parse_rope_scaling(root, rs, path, rs_name, c, err))) return st;
    c->norm = HS_NORM_LAYERNORM;
    c->rope = HS_ROPE_NEOX;
    if (hs_hf_cfg_bool(root, "alibi", 0)) { /* FalconAttention: (q k^T + alibi) / sqrt(d_head), no rotation */
        c->rope = HS_ROPE_NONE;
        c->alibi = 1;
        c->alibi_scale = (float)(1.0 / sqrt((double)c->d_head));
    }
    c->parallel_attn_mlp = parallel;
    *two_norms = parallel && n_ln == 2;
    c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", 1);
    c->qkv_bias = c->out_bias = hs_hf_cfg_bool(root, "bias", 0);
    c->learned_pos = 0;
    return HS_OK;
}

hs_status hs_hf_load_falcon(hs_hf_loader *L, hs_err *err) {
    hs_status st = HS_OK;
    hs_model *m = L->m;
    const hs_model_config *c = &m->cfg;
    const int64_t d = c->d_model, f = c->d_mlp;
    char n[256], nb[256];
    HS_CHECK(hs_hf_load(L, "transformer.word_embeddings.weight", c->n_vocab, d, 0, &m->w.tok_embd, err));
    for (int l = 0; l < c->n_layers; l++) {
        hs_layer_weights *W = &m->w.layers[l];
#define NAME(s) (snprintf(n, sizeof n, "transformer.h.%d.%s", l, s), n)
        const int two = L->two_norms; /* ln_attn and ln_mlp, else input_layernorm (and post_attention_layernorm) */
        HS_CHECK(hs_hf_load(L, NAME(two ? "ln_attn.weight" : "input_layernorm.weight"), d, 0, 0, &W->ln1_w, err));
        HS_CHECK(hs_hf_load(L, NAME(two ? "ln_attn.bias" : "input_layernorm.bias"), d, 0, 0, &W->ln1_b, err));
        snprintf(nb, sizeof nb, "transformer.h.%d.self_attention.query_key_value.bias", l);
        HS_CHECK(hs_hf_load_qkv_grouped(L, NAME("self_attention.query_key_value.weight"), c->qkv_bias ? nb : NULL, W,
                                        err));
        HS_CHECK(hs_hf_load(L, NAME("self_attention.dense.weight"), d, d, 0, &W->wo, err));
        if (c->out_bias) HS_CHECK(hs_hf_load(L, NAME("self_attention.dense.bias"), d, 0, 0, &W->bo, err));
        if (!c->parallel_attn_mlp || two) {
            HS_CHECK(hs_hf_load(L, NAME(two ? "ln_mlp.weight" : "post_attention_layernorm.weight"), d, 0, 0, &W->ln2_w, err));
            HS_CHECK(hs_hf_load(L, NAME(two ? "ln_mlp.bias" : "post_attention_layernorm.bias"), d, 0, 0, &W->ln2_b, err));
        } else {
            W->ln2_w = W->ln1_w, W->ln2_b = W->ln1_b; /* one norm read by both halves of the block */
        }
        HS_CHECK(hs_hf_load(L, NAME("mlp.dense_h_to_4h.weight"), f, d, 0, &W->w_up, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.dense_4h_to_h.weight"), d, f, 0, &W->w_down, err));
        if (c->out_bias) {
            HS_CHECK(hs_hf_load(L, NAME("mlp.dense_h_to_4h.bias"), f, 0, 0, &W->b_up, err));
            HS_CHECK(hs_hf_load(L, NAME("mlp.dense_4h_to_h.bias"), d, 0, 0, &W->b_down, err));
        }
#undef NAME
    }
    HS_CHECK(hs_hf_load_final(L, "transformer.ln_f", 1, "lm_head.weight", err));
exit:
    return st;
}
