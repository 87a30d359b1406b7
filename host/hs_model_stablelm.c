/* hs_model_stablelm: StableLmForCausalLM (StableLM-3B-4E1T, StableLM-2 1.6B and
 * Zephyr, StableCode-3B) config from an HF folder's config.json. The layer is
 * Llama's (q/k/v/o, gate/up/down, SiLU) with LayerNorms that carry biases, q/k/v
 * biases where use_qkv_bias says, RoPE on the first partial_rotary_factor of each
 * head (rotate_half), and with use_parallel_residual GPT-NeoX's parallel block
 * on one norm (ln2 points at ln1, as for Phi), and with qk_layernorm (StableLM-2
 * 12B) a LayerNorm without bias on each head's q and k, each head its own weights.
 * Its weights are loaded with the Llama layout (hs_model_hf.c). */
#include <string.h>

#include "hs_model_hf_internal.h"

hs_status hs_hf_parse_stablelm_config(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    hs_status st;
    c->arch = HS_ARCH_STABLELM;
    if ((st = hs_hf_cfg_sizes(root, path, c, err))) return st;
    /* defaults for absent keys: StableLmConfig's */
    if ((st = hs_hf_cfg_int(root, path, "max_position_embeddings", 0, 4096, &c->n_ctx, err))) return st;
    if (c->n_heads <= 0 || c->d_model % c->n_heads != 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: hidden_size %d is not divisible by num_attention_heads %d", path,
                          c->d_model, c->n_heads);
    c->d_head = c->d_model / c->n_heads; /* StableLmAttention's: no head_dim key */
    if ((st = hs_hf_cfg_float(root, path, "layer_norm_eps", 1e-5f, &c->norm_eps, err))) return st;
    c->qk_norm = c->qk_norm_per_head = hs_hf_cfg_bool(root, "qk_layernorm", 0); /* StableLM-2 12B */
    json_t *act = json_object_get(root, "hidden_act");
    if (json_is_string(act) && strcmp(json_string_value(act), "silu"))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (silu only)", path,
                          json_string_value(act));
    const char *rs_name;
    json_t *rs = hs_hf_rope_dict(root, &rs_name);
    if ((st = hs_hf_rope_theta(root, rs, path, 10000.0f, c, err)) ||
        (st = hs_hf_partial_rotary(root, rs, path, 0.25, c, err)))
        return st;
    if (json_is_object(rs) && (st = hs_hf_parse_rope_scaling(root, rs, path, rs_name, c, err))) return st;
    c->norm = HS_NORM_LAYERNORM;
    c->act = HS_ACT_SILU_GLU;
    c->rope = HS_ROPE_NEOX;
    c->parallel_attn_mlp = hs_hf_cfg_bool(root, "use_parallel_residual", 0);
    c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", 0);
    c->qkv_bias = hs_hf_cfg_bool(root, "use_qkv_bias", 0);
    c->out_bias = 0;
    c->learned_pos = 0;
    return HS_OK;
}
