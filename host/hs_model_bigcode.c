/* hs_model_bigcode: GPTBigCodeForCausalLM (SantaCoder, StarCoder, StarCoderBase,
 * TinyStarCoder, WizardCoder) from an HF folder: its config.json and weights.
 * GPT-2's block with nn.Linear weights ([out, in], not Conv1D's transpose),
 * usually multi-query attention: c_attn's outputs are all heads' q, then one
 * shared k and v ([d + 2 d_head] rows), a single KV head here. Without
 * multi_query, c_attn holds each head's q, k and v rows one after another, as
 * GPT-NeoX's query_key_value does. */
#include "hs_model_hf_internal.h"

hs_status hs_hf_parse_bigcode_config(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    hs_status st;
    c->arch = HS_ARCH_BIGCODE;
    /* defaults for absent keys: GPTBigCodeConfig's */
    if ((st = hs_hf_cfg_int(root, path, "n_layer", 0, 12, &c->n_layers, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "n_head", 0, 12, &c->n_heads, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "n_embd", 0, 768, &c->d_model, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "vocab_size", 0, 50257, &c->n_vocab, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "n_positions", 0, 1024, &c->n_ctx, err))) return st;
    if (json_is_null(json_object_get(root, "n_inner"))) c->d_mlp = 4 * c->d_model;
    else if ((st = hs_hf_cfg_int(root, path, "n_inner", 0, 4 * c->d_model, &c->d_mlp, err))) return st;
    if ((st = hs_hf_cfg_float(root, path, "layer_norm_epsilon", 1e-5f, &c->norm_eps, err))) return st;
    if (c->n_heads <= 0 || c->d_model % c->n_heads != 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: n_embd %d is not divisible by n_head %d", path, c->d_model,
                          c->n_heads);
    if (hs_hf_cfg_bool(root, "add_cross_attention", 0))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: add_cross_attention is not supported (a decoder only)", path);
    if ((st = hs_hf_cfg_act(root, path, "activation_function", "gelu_pytorch_tanh", 0, c, err))) return st;
    c->d_head = c->d_model / c->n_heads;
    c->n_kv_heads = hs_hf_cfg_bool(root, "multi_query", 1) ? 1 : c->n_heads;
    /* scale_attn_weights false: scores q.k, unscaled (the softmax's f32 upcasts change nothing in f32) */
    c->attn_scale = hs_hf_cfg_bool(root, "scale_attn_weights", 1) ? 0.0f : 1.0f;
    c->norm = HS_NORM_LAYERNORM;
    c->rope = HS_ROPE_NONE;
    c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", 1);
    c->qkv_bias = c->out_bias = c->learned_pos = 1;
    return HS_OK;
}

/* Layer l's attention: c_attn's weight [d + 2 kv, d] and bias into W's q, k and v, then c_proj. */
static hs_status load_attn(hs_hf_loader *L, int l, hs_layer_weights *W, hs_err *err) {
    hs_status st = HS_OK;
    const hs_model_config *c = &L->m->cfg;
    const int64_t d = c->d_model, kv = (int64_t)c->n_kv_heads * c->d_head, rows = d + 2 * kv;
    char n[256], nb[256];
    snprintf(n, sizeof n, "transformer.h.%d.attn.c_attn.weight", l);
    snprintf(nb, sizeof nb, "transformer.h.%d.attn.c_attn.bias", l);
    if (c->n_kv_heads == 1) { /* multi-query: [q (d) | k | v] rows, aliased into model-owned buffers */
        float *w = NULL, *b = NULL;
        HS_CHECK(hs_hf_load(L, n, rows, d, 0, &w, err));
        HS_CHECK(hs_hf_load(L, nb, rows, 0, 0, &b, err));
        W->wq = w, W->wk = w + d * d, W->wv = w + (d + kv) * d;
        W->bq = b, W->bk = b + d, W->bv = b + d + kv;
    } else { /* per head [q | k | v] */
        HS_CHECK(hs_hf_load_qkv_grouped(L, n, nb, W, err));
    }
    snprintf(n, sizeof n, "transformer.h.%d.attn.c_proj.weight", l);
    HS_CHECK(hs_hf_load(L, n, d, d, 0, &W->wo, err));
    snprintf(n, sizeof n, "transformer.h.%d.attn.c_proj.bias", l);
    HS_CHECK(hs_hf_load(L, n, d, 0, 0, &W->bo, err));
exit:
    return st;
}

hs_status hs_hf_load_bigcode(hs_hf_loader *L, hs_err *err) { return hs_hf_load_gpt2_linear(L, load_attn, err); }
