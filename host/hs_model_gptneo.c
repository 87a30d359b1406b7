/* hs_model_gptneo: GPTNeoForCausalLM (GPT-Neo 125M to 2.7B, the TinyStories
 * models) from an HF folder: its config.json and weights. GPT-2's block with
 * nn.Linear projections (no q/k/v biases), scores not scaled by 1/sqrt(d_head),
 * and "local" layers that see only the last window_size keys, as
 * attention_types lays them out (global and local alternating in every
 * released model). Its loader, hs_hf_load_gpt2_linear, serves GPT-BigCode
 * too, each with its own attention. */
#include <stdlib.h>
#include <string.h>

#include "hs_model_hf_internal.h"

/* attention_types [[["global", "local"], 12], ...] (absent: that default)
 * expanded as transformers' expand_attention_types_params does, into
 * window_from / global_every, or refused by name where they cannot describe it. */
static hs_status neo_layout(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    json_t *types = json_object_get(root, "attention_types"), *dflt = NULL;
    if (!types || json_is_null(types)) types = dflt = json_pack("[[[ss]i]]", "global", "local", 12);
    uint8_t *slides = calloc((size_t)c->n_layers, 1);
    hs_status st = HS_OK;
    int n = 0;
    if (!types || !slides) HS_FAIL(err, HS_ERR_OOM, "%s: out of memory", path);
    if (!json_is_array(types))
        HS_FAIL(err, HS_ERR_FORMAT, "%s: attention_types must be a list of [types, count] pairs", path);
    for (size_t i = 0; i < json_array_size(types); i++) {
        json_t *item = json_array_get(types, i), *list = json_array_get(item, 0), *count = json_array_get(item, 1);
        if (!json_is_array(item) || json_array_size(item) != 2 || !json_is_array(list) || !json_is_integer(count) ||
            json_integer_value(count) < 0)
            HS_FAIL(err, HS_ERR_FORMAT, "%s: attention_types[%zu] must be [[types...], count]", path, i);
        for (json_int_t k = 0; k < json_integer_value(count); k++)
            for (size_t j = 0; j < json_array_size(list); j++) {
                const char *t = json_string_value(json_array_get(list, j));
                if (!t || (strcmp(t, "global") && strcmp(t, "local")))
                    HS_FAIL(err, HS_ERR_UNSUPPORTED, "%s: attention_types[%zu] has '%s' (global or local)", path, i,
                            t ? t : "(not a string)");
                if (n == c->n_layers)
                    HS_FAIL(err, HS_ERR_FORMAT, "%s: attention_types lists more layers than num_layers %d", path,
                            c->n_layers);
                slides[n++] = t[0] == 'l';
            }
    }
    if (n != c->n_layers)
        HS_FAIL(err, HS_ERR_FORMAT, "%s: attention_types lists %d layers for num_layers %d", path, n, c->n_layers);
    st = hs_model_layout_of(path, "attention_types", slides, c, err);
exit:
    free(slides);
    json_decref(dflt);
    return st;
}

hs_status hs_hf_parse_gptneo_config(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    hs_status st;
    c->arch = HS_ARCH_GPTNEO;
    /* defaults for absent keys: GPTNeoConfig's */
    if ((st = hs_hf_cfg_int(root, path, "num_layers", 1, 0, &c->n_layers, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "num_heads", 1, 0, &c->n_heads, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "hidden_size", 1, 0, &c->d_model, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "vocab_size", 1, 0, &c->n_vocab, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "intermediate_size", 0, 4 * c->d_model, &c->d_mlp, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "max_position_embeddings", 0, 2048, &c->n_ctx, err))) return st;
    if ((st = hs_hf_cfg_float(root, path, "layer_norm_epsilon", 1e-5f, &c->norm_eps, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "window_size", 0, 256, &c->sliding_window, err))) return st;
    if (c->n_heads <= 0 || c->d_model % c->n_heads != 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: hidden_size %d is not divisible by num_heads %d", path, c->d_model,
                          c->n_heads);
    if (c->n_layers <= 0) return hs_err_set(err, HS_ERR_FORMAT, "%s: num_layers must be positive", path);
    if (c->sliding_window <= 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: window_size %d must be positive", path, c->sliding_window);
    if ((st = neo_layout(root, path, c, err))) return st;
    if ((st = hs_hf_cfg_act(root, path, "activation_function", "gelu_new", 0, c, err))) return st;
    c->n_kv_heads = c->n_heads;
    c->d_head = c->d_model / c->n_heads;
    c->attn_scale = 1.0f; /* GPT-Neo's scores are q·k, unscaled */
    c->norm = HS_NORM_LAYERNORM;
    c->rope = HS_ROPE_NONE;
    c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", 1);
    c->qkv_bias = 0;
    c->out_bias = c->learned_pos = 1;
    return HS_OK;
}

hs_status hs_hf_load_gpt2_linear(hs_hf_loader *L, hs_hf_attn_loader attn, hs_err *err) {
    hs_status st = HS_OK;
    hs_model *m = L->m;
    const hs_model_config *c = &m->cfg;
    const int64_t d = c->d_model, f = c->d_mlp;
    char n[256];
    HS_CHECK(hs_hf_load(L, "transformer.wte.weight", c->n_vocab, d, 0, &m->w.tok_embd, err));
    HS_CHECK(hs_hf_load(L, "transformer.wpe.weight", c->n_ctx, d, 0, &m->w.pos_embd, err));
    for (int l = 0; l < c->n_layers; l++) {
        hs_layer_weights *W = &m->w.layers[l];
#define NAME(s) (snprintf(n, sizeof n, "transformer.h.%d.%s", l, s), n)
        HS_CHECK(hs_hf_load(L, NAME("ln_1.weight"), d, 0, 0, &W->ln1_w, err));
        HS_CHECK(hs_hf_load(L, NAME("ln_1.bias"), d, 0, 0, &W->ln1_b, err));
        HS_CHECK(attn(L, l, W, err));
        HS_CHECK(hs_hf_load(L, NAME("ln_2.weight"), d, 0, 0, &W->ln2_w, err));
        HS_CHECK(hs_hf_load(L, NAME("ln_2.bias"), d, 0, 0, &W->ln2_b, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.c_fc.weight"), f, d, 0, &W->w_up, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.c_fc.bias"), f, 0, 0, &W->b_up, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.c_proj.weight"), d, f, 0, &W->w_down, err));
        HS_CHECK(hs_hf_load(L, NAME("mlp.c_proj.bias"), d, 0, 0, &W->b_down, err));
#undef NAME
    }
    HS_CHECK(hs_hf_load_final(L, "transformer.ln_f", 1, "lm_head.weight", err));
exit:
    return st;
}

/* Layer l's attention: q, k, v and out_proj under attn.attention, out_proj's bias only. */
static hs_status load_attn(hs_hf_loader *L, int l, hs_layer_weights *W, hs_err *err) {
    hs_status st = HS_OK;
    const int64_t d = L->m->cfg.d_model;
    char n[256];
#define NAME(s) (snprintf(n, sizeof n, "transformer.h.%d.attn.attention.%s", l, s), n)
    HS_CHECK(hs_hf_load(L, NAME("q_proj.weight"), d, d, 0, &W->wq, err));
    HS_CHECK(hs_hf_load(L, NAME("k_proj.weight"), d, d, 0, &W->wk, err));
    HS_CHECK(hs_hf_load(L, NAME("v_proj.weight"), d, d, 0, &W->wv, err));
    HS_CHECK(hs_hf_load(L, NAME("out_proj.weight"), d, d, 0, &W->wo, err));
    HS_CHECK(hs_hf_load(L, NAME("out_proj.bias"), d, 0, 0, &W->bo, err));
#undef NAME
exit:
    return st;
}

hs_status hs_hf_load_gptneo(hs_hf_loader *L, hs_err *err) { return hs_hf_load_gpt2_linear(L, load_attn, err); }
