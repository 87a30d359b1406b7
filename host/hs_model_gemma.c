/* hs_model_gemma: the config.json of GemmaForCausalLM, Gemma2ForCausalLM,
 * Gemma3ForCausalLM (the text-only Gemma 3 checkpoints: 270M, 1B) and the text
 * model of Gemma3ForConditionalGeneration (4B, 12B, 27B); their weights are
 * the Llama layout's and load with it (hs_model_hf.c).
 * Gemma is the Llama layout with a GeGLU MLP, RMSNorms that scale by
 * (1 + w) (HS_NORM_RMSNORM_1P: the sum is formed in f32, also from bf16
 * weights, as transformers forms it; the weights load as stored) and a token
 * embedding multiplied by sqrt(d_model). Gemma 2 adds norms on the attention's
 * and the MLP's outputs, a score scale of its own (query_pre_attn_scalar),
 * tanh soft-capping of the scores and the logits, and a sliding window on
 * every other layer. Gemma 3 keeps the post-norms and the score scale, drops
 * the caps, adds (1 + w) norms over each head's q and k, and rotates its
 * sliding-window ("local") layers with a RoPE base of their own, unscaled,
 * every global_every-th layer being global (hs_hf_layer_layout). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "hs_model_hf_internal.h"

/* A soft-cap key: absent = Gemma2Config's default, null = none, else a positive number. */
static hs_status cfg_softcap(json_t *root, const char *path, const char *key, float absent, float *out, hs_err *err) {
    if (!json_object_get(root, key)) return *out = absent, HS_OK;
    hs_status st = hs_hf_cfg_float(root, path, key, 0.0f, out, err);
    if (st == HS_OK && !(*out >= 0.0f))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s' must be positive or null (got %g)", path, key, (double)*out);
    return st;
}

hs_status hs_hf_parse_gemma_config(json_t *root, const char *path, const char *arch, hs_model_config *c, hs_err *err) {
    hs_status st;
    const int g3 = !strcmp(arch, "Gemma3ForCausalLM"), g2 = g3 || !strcmp(arch, "Gemma2ForCausalLM");
    c->arch = HS_ARCH_GEMMA;
    if ((st = hs_hf_cfg_sizes(root, path, c, err))) return st;
    /* defaults for absent keys: GemmaConfig's, Gemma2Config's and Gemma3TextConfig's */
    if ((st = hs_hf_cfg_int(root, path, "num_key_value_heads", 0, g2 ? 4 : 16, &c->n_kv_heads, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "max_position_embeddings", 0, g3 ? 131072 : 8192, &c->n_ctx, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "head_dim", 0, 256, &c->d_head, err))) return st;
    if ((st = hs_hf_cfg_float(root, path, "rms_norm_eps", 1e-6f, &c->norm_eps, err))) return st;
    if (g3) {
        /* the global layers' (rope_theta, rope_scaling; or rope_parameters.full_attention), the local
         * layers' (rope_local_base_freq; or rope_parameters.sliding_attention) */
        if ((st = hs_hf_parse_typed_rope(root, path, 1e6f, "rope_local_base_freq", 10000.0f, c, err))) return st;
    } else {
        if ((st = hs_hf_cfg_float(root, path, "rope_theta", 10000.0f, &c->rope_theta, err))) return st;
        json_t *rp = json_object_get(root, "rope_parameters"), *rs = json_object_get(root, "rope_scaling");
        if (json_is_object(rp) && json_is_number(json_object_get(rp, "rope_theta")))
            c->rope_theta = (float)json_number_value(json_object_get(rp, "rope_theta"));
        json_t *types[2] = {json_is_object(rs) ? json_object_get(rs, "rope_type") : NULL,
                            json_is_object(rp) ? json_object_get(rp, "rope_type") : NULL};
        for (int i = 0; i < 2; i++)
            if (json_is_string(types[i]) && strcmp(json_string_value(types[i]), "default"))
                return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: %s: rope type '%s' is not supported for Gemma", path,
                                  i ? "rope_parameters" : "rope_scaling", json_string_value(types[i]));
    }
    /* As transformers 5 reads them: Gemma 2's and 3's MLP takes hidden_activation, Gemma's takes
     * hidden_act, whose legacy "gelu" (the Hub's Gemma configs) means the tanh form. */
    const char *act_key = g2 ? "hidden_activation" : "hidden_act";
    json_t *act = json_object_get(root, act_key);
    const char *a = json_is_string(act) ? json_string_value(act) : "gelu_pytorch_tanh";
    if (strcmp(a, "gelu_pytorch_tanh") && strcmp(a, "gelu_new") && (g2 || strcmp(a, "gelu")))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: %s '%s' is not supported (gelu_pytorch_tanh)", path, act_key, a);
    if (hs_hf_cfg_bool(root, "attention_bias", 0))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: attention_bias is not supported for Gemma", path);
    if (hs_hf_cfg_bool(root, "use_bidirectional_attention", 0))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: use_bidirectional_attention: headsweep's attention is causal",
                          path);
    if (c->d_model <= 0) return hs_err_set(err, HS_ERR_FORMAT, "%s: hidden_size must be positive", path);
    c->embed_scale = (float)sqrt((double)c->d_model);
    if (g2) {
        float qpas = 0.0f;
        if ((st = hs_hf_cfg_float(root, path, "query_pre_attn_scalar", 256.0f, &qpas, err))) return st;
        if (!(qpas > 0.0f))
            return hs_err_set(err, HS_ERR_FORMAT, "%s: query_pre_attn_scalar %g must be positive", path, (double)qpas);
        c->attn_scale = (float)pow((double)qpas, -0.5);
        /* Gemma 2's caps default on, Gemma 3's off */
        if ((st = cfg_softcap(root, path, "attn_logit_softcapping", g3 ? 0.0f : 50.0f, &c->attn_softcap, err)) ||
            (st = cfg_softcap(root, path, "final_logit_softcapping", g3 ? 0.0f : 30.0f, &c->final_softcap, err)))
            return st;
        c->post_norms = 1;
        c->qk_norm = g3;
        /* the layout: layer_types, else HF's default, a full layer every 2 (Gemma 2) or every
         * sliding_window_pattern (the Hub's Gemma 3 configs; 6) */
        int every = 2;
        if (g3 && (st = hs_hf_cfg_int(root, path, "sliding_window_pattern", 0, 6, &every, err))) return st;
        if (every < 1) return hs_err_set(err, HS_ERR_FORMAT, "%s: sliding_window_pattern %d must be positive", path, every);
        if ((st = hs_hf_layer_layout(root, path, 0, every, c, err))) return st;
        if (!g3) c->rope_local_theta = 0.0f;
        if ((st = hs_hf_cfg_window(root, path, 4096, c, err)) || (st = hs_hf_check_window(root, path, 1, c, err)))
            return st;
    }
    c->norm = HS_NORM_RMSNORM_1P;
    c->act = HS_ACT_GELU_GLU;
    c->rope = HS_ROPE_NEOX;
    c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", 1);
    return HS_OK;
}

hs_status hs_hf_parse_gemma3_mm_config(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    json_t *tc = json_object_get(root, "text_config");
    if (tc && !json_is_object(tc))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key 'text_config' must be an object", path);
    json_t *t = tc ? json_deep_copy(tc) : json_object();
    if (!t) return hs_err_set(err, HS_ERR_OOM, "%s: out of memory", path);
    /* the Hub's configs save only the text keys off Gemma3TextConfig's defaults: the sizes
     * hs_hf_cfg_sizes requires get those defaults (4B's leaves out its head counts) */
    static const struct {
        const char *key;
        int dflt;
    } sizes[] = {{"num_hidden_layers", 26}, {"num_attention_heads", 8}, {"hidden_size", 2304},
                 {"intermediate_size", 9216}, {"vocab_size", 262208}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        if (!json_object_get(t, sizes[i].key)) json_object_set_new(t, sizes[i].key, json_integer(sizes[i].dflt));
    char tpath[4300];
    snprintf(tpath, sizeof tpath, "%s: text_config", path);
    hs_status st = hs_hf_parse_gemma_config(t, tpath, "Gemma3ForCausalLM", c, err);
    if (st == HS_OK) {
        /* lm_head is tied as the outer config says (transformers ties by the model's own config) */
        c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", 1);
        /* BOS / EOS: the outer config's, else text_config's, else Gemma3TextConfig's */
        if (c->bos_token_id < 0)
            c->bos_token_id = json_object_get(t, "bos_token_id") ? hs_hf_cfg_token_id(t, "bos_token_id") : 2;
        if (c->eos_token_id < 0)
            c->eos_token_id = json_object_get(t, "eos_token_id") ? hs_hf_cfg_token_id(t, "eos_token_id") : 1;
    }
    json_decref(t);
    return st;
}
