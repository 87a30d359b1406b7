/* hs_model_mpt: MptForCausalLM (MPT-7B, MPT-30B and their instruct and chat models)
 * from an HF folder: its config.json (d_model, n_heads, n_layers, attn_config) and
 * weights. A pre-LN block of LayerNorms without biases, one fused Wqkv ([q | k | v]
 * rows, clamped with attn_config.clip_qkv), an exact-GELU MLP, no biases anywhere,
 * and ALiBi in place of positions: BLOOM's slopes (MPT computes the same values in
 * another order), relative to the query as the attention op takes them. Options
 * transformers' MptForCausalLM does not run (qk_ln, prefix_lm, sequence ids, a
 * logit scale, no ALiBi or another alibi_bias_max) are refused by name. */
#include <string.h>

#include "hs_model_hf_internal.h"

hs_status hs_hf_parse_mpt_config(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    hs_status st;
    c->arch = HS_ARCH_MPT;
    /* defaults for absent keys: MptConfig's (and its attribute_map's other spellings) */
    int ratio = 4;
    if ((st = hs_hf_cfg_int2(root, path, "n_layers", "num_hidden_layers", 0, 24, &c->n_layers, err)) ||
        (st = hs_hf_cfg_int2(root, path, "n_heads", "num_attention_heads", 0, 16, &c->n_heads, err)) ||
        (st = hs_hf_cfg_int2(root, path, "d_model", "hidden_size", 0, 2048, &c->d_model, err)) ||
        (st = hs_hf_cfg_int(root, path, "vocab_size", 0, 50368, &c->n_vocab, err)) ||
        (st = hs_hf_cfg_int(root, path, "max_seq_len", 0, 2048, &c->n_ctx, err)) ||
        (st = hs_hf_cfg_int(root, path, "expansion_ratio", 0, 4, &ratio, err)) ||
        (st = hs_hf_cfg_float(root, path, "layer_norm_epsilon", 1e-5f, &c->norm_eps, err)))
        return st;
    if (c->n_heads <= 0 || c->d_model % c->n_heads != 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: d_model %d is not divisible by n_heads %d", path, c->d_model,
                          c->n_heads);
    if (json_object_get(root, "logit_scale") && !json_is_null(json_object_get(root, "logit_scale")))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: logit_scale is not supported", path);
    /* attn_config absent: every default (jansson's getters take a NULL object) */
    json_t *ac = json_object_get(root, "attn_config");
    if (ac && !json_is_object(ac)) return hs_err_set(err, HS_ERR_FORMAT, "%s: attn_config must be an object", path);
    int bias_max = 8;
    if (ac && (st = hs_hf_cfg_int(ac, path, "alibi_bias_max", 0, 8, &bias_max, err))) return st;
    const int alibi = hs_hf_cfg_bool(ac, "alibi", 1), qk_ln = hs_hf_cfg_bool(ac, "qk_ln", 0),
              prefix = hs_hf_cfg_bool(ac, "prefix_lm", 0), seq_id = hs_hf_cfg_bool(ac, "attn_uses_sequence_id", 0);
    json_t *clip = json_object_get(ac, "clip_qkv"), *sm = json_object_get(ac, "softmax_scale");
    if ((clip && !json_is_null(clip) && !json_is_number(clip)) || (sm && !json_is_null(sm) && !json_is_number(sm)))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: attn_config: clip_qkv and softmax_scale must be numbers or null", path);
    if (json_is_number(clip)) c->clip_qkv = (float)json_number_value(clip);
    if (json_is_number(sm)) c->attn_scale = (float)json_number_value(sm);
    if (!alibi || bias_max != 8)
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "%s: attn_config: alibi %s with alibi_bias_max %d is not supported (ALiBi, bias max 8)", path,
                          alibi ? "true" : "false", bias_max);
    if (qk_ln || prefix || seq_id)
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "%s: attn_config: qk_ln, prefix_lm and attn_uses_sequence_id are not supported", path);
    if (json_is_number(clip) && !(c->clip_qkv > 0.0f))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: attn_config: clip_qkv %g must be positive or null", path,
                          (double)c->clip_qkv);
    if (json_is_number(sm) && !(c->attn_scale > 0.0f))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: attn_config: softmax_scale %g must be positive or null", path,
                          (double)c->attn_scale);
    c->n_kv_heads = c->n_heads;
    c->d_head = c->d_model / c->n_heads;
    c->d_mlp = ratio * c->d_model;
    c->norm = HS_NORM_LAYERNORM;
    c->act = HS_ACT_GELU;
    c->rope = HS_ROPE_NONE;
    c->alibi = 1;
    c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", 1);
    c->qkv_bias = c->out_bias = 0;
    c->learned_pos = 0; /* MPT's learned_pos_emb makes no table beside ALiBi */
    return HS_OK;
}

hs_status hs_hf_load_mpt(hs_hf_loader *L, hs_err *err) {
    hs_status st = HS_OK;
    hs_model *m = L->m;
    const hs_model_config *c = &m->cfg;
    const int64_t d = c->d_model, f = c->d_mlp;
    char n[256];
    HS_CHECK(hs_hf_load(L, "transformer.wte.weight", c->n_vocab, d, 0, &m->w.tok_embd, err));
    for (int l = 0; l < c->n_layers; l++) {
        hs_layer_weights *W = &m->w.layers[l];
#define NAME(s) (snprintf(n, sizeof n, "transformer.blocks.%d.%s", l, s), n)
        HS_CHECK(hs_hf_load(L, NAME("norm_1.weight"), d, 0, 0, &W->ln1_w, err));
        /* rows [q | k | v] of one Wqkv: aliased into it (the model owns the buffer) */
        HS_CHECK(hs_hf_load(L, NAME("attn.Wqkv.weight"), 3 * d, d, 0, &W->wq, err));
        W->wk = W->wq + d * d;
        W->wv = W->wk + d * d;
        HS_CHECK(hs_hf_load(L, NAME("attn.out_proj.weight"), d, d, 0, &W->wo, err));
        HS_CHECK(hs_hf_load(L, NAME("norm_2.weight"), d, 0, 0, &W->ln2_w, err));
        HS_CHECK(hs_hf_load(L, NAME("ffn.up_proj.weight"), f, d, 0, &W->w_up, err));
        HS_CHECK(hs_hf_load(L, NAME("ffn.down_proj.weight"), d, f, 0, &W->w_down, err));
#undef NAME
    }
    HS_CHECK(hs_hf_load_final(L, "transformer.norm_f", 0, "lm_head.weight", err)); /* no bias */
exit:
    return st;
}
