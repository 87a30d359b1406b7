/* hs_model_cohere: CohereForCausalLM (Command-R, Aya 23, Aya Expanse) and
 * Cohere2ForCausalLM (Command R7B, Command A) configs from an HF folder's
 * config.json. The layer is Llama's (q/k/v/o, gate/up/down, SiLU) in GPT-J's
 * parallel block on one LayerNorm without a bias (ln2 points at ln1), RoPE on
 * adjacent pairs of dims (HS_ROPE_NORMAL), and the logits times logit_scale.
 * Cohere2's layers slide except every fourth (or as layer_types says), and
 * only the sliding layers rotate: its full-attention layers are NoPE. The
 * weights are loaded with the Llama layout (hs_model_hf.c). Command R+ (use_qk_norm)
 * normalises each head's q and k with a LayerNorm of its own ([heads, d_head]
 * weights, no bias) before RoPE. */
#include <stdlib.h>
#include <string.h>

#include "hs_model_hf_internal.h"

/* Cohere2's NoPE layers are exactly its full-attention layers: c->nope_every from the window
 * layout, refused by name where no "every N-th layer" describes them. */
static hs_status nope_from_layout(const char *path, hs_model_config *c, hs_err *err) {
    c->nope_every = 0;
    for (int l = 0; l < c->n_layers && !c->nope_every; l++)
        if (!hs_model_layer_slides(c, l)) c->nope_every = l + 1;
    for (int l = 0; l < c->n_layers; l++)
        if (hs_model_layer_rotates(c, l) != hs_model_layer_slides(c, l))
            return hs_err_set(err, HS_ERR_UNSUPPORTED,
                              "%s: layer_types: the full-attention layers (Cohere2's layers without RoPE) must be "
                              "every N-th layer (layer %d breaks the pattern)",
                              path, l);
    return HS_OK;
}

hs_status hs_hf_parse_cohere_config(json_t *root, const char *path, int v2, hs_model_config *c, hs_err *err) {
    hs_status st;
    c->arch = HS_ARCH_COHERE;
    if ((st = hs_hf_cfg_sizes(root, path, c, err))) return st;
    /* defaults for absent keys: CohereConfig's and Cohere2Config's */
    if ((st = hs_hf_cfg_int(root, path, "max_position_embeddings", 0, 8192, &c->n_ctx, err))) return st;
    if (c->n_heads <= 0) return hs_err_set(err, HS_ERR_FORMAT, "%s: num_attention_heads must be positive", path);
    if ((st = hs_hf_cfg_int(root, path, "head_dim", 0, c->d_model / c->n_heads, &c->d_head, err))) return st;
    if ((st = hs_hf_cfg_float(root, path, "layer_norm_eps", 1e-5f, &c->norm_eps, err)) ||
        (st = hs_hf_cfg_float(root, path, "logit_scale", 0.0625f, &c->logit_scale, err)))
        return st;
    if (!(c->logit_scale > 0.0f))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: logit_scale %g must be positive", path, (double)c->logit_scale);
    c->qk_norm = c->qk_norm_per_head = !v2 && hs_hf_cfg_bool(root, "use_qk_norm", 0); /* Command R+ */
    if (hs_hf_cfg_bool(root, "attention_bias", 0))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: attention_bias is not supported", path);
    json_t *act = json_object_get(root, "hidden_act");
    if (json_is_string(act) && strcmp(json_string_value(act), "silu"))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (silu only)", path,
                          json_string_value(act));
    const char *rs_name;
    json_t *rs = hs_hf_rope_dict(root, &rs_name);
    if ((st = hs_hf_rope_theta(root, rs, path, 10000.0f, c, err))) return st;
    if (json_is_object(rs) && (st = hs_hf_parse_rope_scaling(root, rs, path, rs_name, c, err))) return st;
    c->norm = HS_NORM_LAYERNORM; /* CohereLayerNorm: mean-centred, a weight and no bias */
    c->act = HS_ACT_SILU_GLU;
    c->rope = HS_ROPE_NORMAL;
    c->parallel_attn_mlp = 1;
    c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", 1);
    c->qkv_bias = c->out_bias = 0;
    c->learned_pos = 0;
    if (!v2) return HS_OK;
    /* Cohere2: without layer_types, every sliding_window_pattern-th layer (4) is full */
    int every = 4;
    if ((st = hs_hf_cfg_window(root, path, 4096, c, err)) ||
        (st = hs_hf_cfg_int(root, path, "sliding_window_pattern", 0, 4, &every, err)))
        return st;
    if (every < 1) return hs_err_set(err, HS_ERR_FORMAT, "%s: sliding_window_pattern %d must be positive", path, every);
    if ((st = hs_hf_layer_layout(root, path, 0, every, c, err)) || (st = hs_hf_check_window(root, path, 1, c, err)))
        return st;
    return nope_from_layout(path, c, err);
}
