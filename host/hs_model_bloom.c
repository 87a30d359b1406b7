/* hs_model_bloom: BloomForCausalLM (BLOOM 560M to 176B, BLOOMZ) from an HF folder:
 * its config.json (n_embed or hidden_size, n_head, n_layer) and weights, under
 * "transformer." or, as the Hub's files hold them (saved from BloomModel),
 * without it. GPT-2's pre-LN block with nn.Linear projections, a LayerNorm on
 * the embedding (embed_norm), query_key_value per head [q | k | v] with biases,
 * the tanh GELU, no position embedding: ALiBi's per-head score biases instead
 * (on the CUDA backend its CUDA-core attention kernels carry them). */
#include <string.h>

#include "hs_model_hf_internal.h"

hs_status hs_hf_parse_bloom_config(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    hs_status st;
    c->arch = HS_ARCH_BLOOM;
    /* defaults for absent keys: BloomConfig's; n_embed is the Hub's older spelling of hidden_size,
     * num_hidden_layers and num_attention_heads the attribute_map's of n_layer and n_head */
    if ((st = hs_hf_cfg_int2(root, path, "n_layer", "num_hidden_layers", 0, 2, &c->n_layers, err)) ||
        (st = hs_hf_cfg_int2(root, path, "n_head", "num_attention_heads", 0, 8, &c->n_heads, err)) ||
        (st = hs_hf_cfg_int2(root, path, "hidden_size", "n_embed", 0, 64, &c->d_model, err)) ||
        (st = hs_hf_cfg_int(root, path, "vocab_size", 0, 250880, &c->n_vocab, err)) ||
        (st = hs_hf_cfg_float(root, path, "layer_norm_epsilon", 1e-5f, &c->norm_eps, err)))
        return st;
    /* ALiBi has no position table; the context BLOOM was trained at, where the config says none */
    if ((st = hs_hf_cfg_int(root, path, "seq_length", 0, 2048, &c->n_ctx, err))) return st;
    if (c->n_heads <= 0 || c->d_model % c->n_heads != 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: hidden_size %d is not divisible by n_head %d", path, c->d_model,
                          c->n_heads);
    if (hs_hf_cfg_bool(root, "apply_residual_connection_post_layernorm", 0))
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "%s: apply_residual_connection_post_layernorm true is not supported", path);
    int tp = 1;
    if ((st = hs_hf_cfg_int(root, path, "pretraining_tp", 0, 1, &tp, err))) return st;
    if (tp > 1 && hs_hf_cfg_bool(root, "slow_but_exact", 0)) /* sums dense's products in slices: other bits */
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: slow_but_exact with pretraining_tp %d is not supported", path, tp);
    c->n_kv_heads = c->n_heads;
    c->d_head = c->d_model / c->n_heads;
    c->d_mlp = 4 * c->d_model;
    c->norm = HS_NORM_LAYERNORM;
    c->act = HS_ACT_GELU_NEW; /* bloom_gelu_forward: the tanh form, its constant 0.79788456 = sqrt(2/pi) in f32 */
    c->rope = HS_ROPE_NONE;
    c->alibi = c->embed_norm = 1;
    c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", 1);
    c->qkv_bias = c->out_bias = 1;
    c->learned_pos = 0;
    return HS_OK;
}

hs_status hs_hf_load_bloom(hs_hf_loader *L, hs_err *err) {
    hs_status st = HS_OK;
    hs_model *m = L->m;
    const hs_model_config *c = &m->cfg;
    const int64_t d = c->d_model;
    char n[256];
    L->prefix = hs_hf_has_tensor(L, "transformer.word_embeddings.weight") ? "transformer." : "";
#define TOP(s) (snprintf(n, sizeof n, "%s%s", L->prefix, s), n)
    HS_CHECK(hs_hf_load(L, TOP("word_embeddings.weight"), c->n_vocab, d, 0, &m->w.tok_embd, err));
    HS_CHECK(hs_hf_load(L, TOP("word_embeddings_layernorm.weight"), d, 0, 0, &m->w.embed_ln_w, err));
    HS_CHECK(hs_hf_load(L, TOP("word_embeddings_layernorm.bias"), d, 0, 0, &m->w.embed_ln_b, err));
    for (int l = 0; l < c->n_layers; l++) { /* GPT-NeoX's layer, its attention named self_attention */
        snprintf(n, sizeof n, "%sh.%d.", L->prefix, l);
        HS_CHECK(hs_hf_load_neox_layer(L, n, "self_attention", &m->w.layers[l], err));
    }
    HS_CHECK(hs_hf_load_final(L, TOP("ln_f"), 1, "lm_head.weight", err));
#undef TOP
exit:
    return st;
}
