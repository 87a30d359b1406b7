/* hs_model_hf internals shared by the HF-folder loaders (hs_model_hf.c: the
 * folder, its config.json and weight files, GPT-2 and the Llama family;
 * hs_model_neox.c: GPT-NeoX; hs_model_gemma.c: Gemma). Not a public header. */
#ifndef HS_MODEL_HF_INTERNAL_H
#define HS_MODEL_HF_INTERNAL_H

#include <jansson.h>

#include "headsweep/hs_safetensors.h"
#include "hs_model_internal.h"

#define HS_HF_MAX_SHARDS 256

typedef struct {
    hs_model *m;
    char dir[4096];
    hs_st_file *files[HS_HF_MAX_SHARDS];
    char *file_names[HS_HF_MAX_SHARDS];
    int n_files;
    json_t *weight_map; /* NULL for a single file */
    const char *prefix; /* GPT-2 checkpoints: "transformer." or "" */
    int two_norms;      /* Falcon's parallel block: ln_attn and ln_mlp, not one input_layernorm */
} hs_hf_loader;

/* config.json values: a missing key is an error when required, else dflt. */
hs_status hs_hf_cfg_int(json_t *root, const char *path, const char *key, int required, int dflt, int *out,
                        hs_err *err);
hs_status hs_hf_cfg_float(json_t *root, const char *path, const char *key, float dflt, float *out, hs_err *err);
/* hs_hf_cfg_int under key, or under its other spelling alt where only that is given (the Hub's
 * older names, or a config class's attribute_map). */
hs_status hs_hf_cfg_int2(json_t *root, const char *path, const char *key, const char *alt, int required, int dflt,
                         int *out, hs_err *err);
int hs_hf_cfg_bool(json_t *root, const char *key, int dflt);
/* A token id under key (a list's first), -1 if absent or not an integer. */
int hs_hf_cfg_token_id(json_t *root, const char *key);
/* The Llama-family size keys (num_hidden_layers, num_attention_heads,
 * num_key_value_heads (default: the heads), hidden_size, intermediate_size,
 * vocab_size), shared by the Llama and Gemma parsers. */
hs_status hs_hf_cfg_sizes(json_t *root, const char *path, hs_model_config *c, hs_err *err);
/* Partial RoPE: c->rot_dim = int(d_head * pct) in double, as transformers
 * computes it, refused unless pct is in (0, 1] and the count even and >= 2;
 * key names pct in the messages. */
hs_status hs_hf_rot_dim(const char *path, const char *key, double pct, hs_model_config *c, hs_err *err);
/* The ungated MLP's activation under `key` (absent: dflt): gelu_new (or
 * gelu_pytorch_tanh), gelu, and with relu_ok relu; others refused by name. */
hs_status hs_hf_cfg_act(json_t *root, const char *path, const char *key, const char *dflt, int relu_ok,
                        hs_model_config *c, hs_err *err);
/* rope_theta: the rope dict rs's (hs_hf_rope_dict), else the top level's, else dflt. */
hs_status hs_hf_rope_theta(json_t *root, json_t *rs, const char *path, float dflt, hs_model_config *c, hs_err *err);
/* Phi's and Phi-3's partial RoPE: partial_rotary_factor from the rope dict rs
 * (hs_hf_rope_dict), else the top level, else dflt, through hs_hf_rot_dim;
 * a factor of 1 leaves rot_dim 0 (the whole head). */
hs_status hs_hf_partial_rotary(json_t *root, json_t *rs, const char *path, double dflt, hs_model_config *c, hs_err *err);

/* Loads tensor `name` with the expected shape [d0] or [d0, d1] (d1 = 0 for
 * 1-D), converting to f32, into *out: a new model-owned buffer when *out is
 * NULL, else the caller's buffer of d0 * max(d1, 1) floats. transpose: the
 * file holds [d1, d0] (GPT-2 Conv1D) and we want [d0, d1]. */
hs_status hs_hf_load(hs_hf_loader *L, const char *name, int64_t d0, int64_t d1, int transpose, float **out,
                     hs_err *err);
/* The model's last norm, "<norm>.weight" and with bias "<norm>.bias" ([d_model] each), then
 * the unembedding: the token embedding when tied, else tensor `head` [n_vocab, d_model]. */
hs_status hs_hf_load_final(hs_hf_loader *L, const char *norm, int bias, const char *head, hs_err *err);
/* Whether the checkpoint holds tensor `name`. */
int hs_hf_has_tensor(hs_hf_loader *L, const char *name);

/* rope_scaling (or transformers 5's rope_parameters) object rs, named obj in
 * the messages: rope_type default, linear (factor) or llama3 (factor,
 * low_freq_factor, high_freq_factor, original_max_position_embeddings), yarn
 * or longrope (short_factor, long_factor) into c (root: the config, for the
 * original context); others are refused. */
hs_status hs_hf_parse_rope_scaling(json_t *root, json_t *rs, const char *path, const char *obj, hs_model_config *c,
                                   hs_err *err);

/* The dict transformers reads RoPE's parameters from: rope_scaling when it is
 * a non-empty object (it replaces rope_parameters), else rope_parameters
 * (may be NULL); *name is the key, for messages. */
json_t *hs_hf_rope_dict(json_t *root, const char **name);

/* sliding_window into c: null = none, absent = dflt (the config class's
 * default), else a count, refused when negative. */
hs_status hs_hf_cfg_window(json_t *root, const char *path, int dflt, hs_model_config *c, hs_err *err);

/* Refuses sliding layers without a window (sliding_window 0 in c), on which
 * transformers fails: those layer_types lists, or with slides_by_default
 * (Gemma 2 / 3, OLMo-3: transformers' default layouts slide) those of c's
 * layout when layer_types is absent. */
hs_status hs_hf_check_window(json_t *root, const char *path, int slides_by_default, const hs_model_config *c,
                             hs_err *err);

/* Which layers slide (see hs_model_config.sliding_window): from layer from on,
 * a full layer every `every` among them (0: none), or as config.json's
 * layer_types lists them, refused by name where no (from, every) describes it. */
hs_status hs_hf_layer_layout(json_t *root, const char *path, int from, int every, hs_model_config *c, hs_err *err);

/* RoPE per layer type (Gemma 3, OLMo-3): the full-attention layers' base
 * (rope_theta, default full_dflt) and scaling (rope_scaling, merged over
 * rope_parameters.full_attention as transformers merges it) into rope_theta
 * and rope_scaling; the sliding layers' base, unscaled (local_key at the top
 * level when given, default local_dflt; rope_parameters.sliding_attention
 * wins) into rope_local_theta. */
hs_status hs_hf_parse_typed_rope(json_t *root, const char *path, float full_dflt, const char *local_key,
                                 float local_dflt, hs_model_config *c, hs_err *err);

/* GemmaForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM (hs_model_gemma.c):
 * the config; the weights are the Llama layout's (post_norms: Gemma 2 and 3's
 * four norms per layer), loaded with it. */
hs_status hs_hf_parse_gemma_config(json_t *root, const char *path, const char *arch, hs_model_config *c, hs_err *err);
/* Gemma3ForConditionalGeneration (Gemma 3 4B, 12B, 27B): its text model, from
 * text_config (absent keys at Gemma3TextConfig's defaults), Gemma3ForCausalLM's
 * layout; the vision tower and projector are never loaded (prompts are text,
 * which the text model alone computes). */
hs_status hs_hf_parse_gemma3_mm_config(json_t *root, const char *path, hs_model_config *c, hs_err *err);

/* PhiForCausalLM (hs_model_phi.c), GPTNeoForCausalLM (hs_model_gptneo.c),
 * OPTForCausalLM (hs_model_opt.c) and GPTJForCausalLM (hs_model_gptj.c). */
hs_status hs_hf_parse_opt_config(json_t *root, const char *path, hs_model_config *c, hs_err *err);
hs_status hs_hf_load_opt(hs_hf_loader *L, hs_err *err);
hs_status hs_hf_parse_gptj_config(json_t *root, const char *path, hs_model_config *c, hs_err *err);
hs_status hs_hf_load_gptj(hs_hf_loader *L, hs_err *err);
hs_status hs_hf_parse_phi_config(json_t *root, const char *path, hs_model_config *c, hs_err *err);
hs_status hs_hf_load_phi(hs_hf_loader *L, hs_err *err);
hs_status hs_hf_parse_gptneo_config(json_t *root, const char *path, hs_model_config *c, hs_err *err);
hs_status hs_hf_load_gptneo(hs_hf_loader *L, hs_err *err);

/* Layer l's attention weights into W (q, k, v, out, their biases where the model has them). */
typedef hs_status (*hs_hf_attn_loader)(hs_hf_loader *L, int l, hs_layer_weights *W, hs_err *err);
/* GPT-2's layout with nn.Linear weights, GPT-Neo's and GPT-BigCode's (hs_model_gptneo.c):
 * transformer.wte / wpe, each layer's ln_1, its attention through attn, ln_2, mlp.c_fc and
 * mlp.c_proj with biases, then ln_f, and lm_head unless tied. */
hs_status hs_hf_load_gpt2_linear(hs_hf_loader *L, hs_hf_attn_loader attn, hs_err *err);

/* SmolLM3ForCausalLM (hs_model_smollm3.c): its NoPE layers and sliding window
 * into c, whose Llama layout (RoPE included) is already parsed. */
hs_status hs_hf_parse_smollm3(json_t *root, const char *path, hs_model_config *c, hs_err *err);

/* GPTNeoXForCausalLM (hs_model_neox.c). */
hs_status hs_hf_parse_neox_config(json_t *root, const char *path, hs_model_config *c, hs_err *err);
hs_status hs_hf_load_neox(hs_hf_loader *L, hs_err *err);
/* GPT-NeoX's layer under name prefix pre (e.g. "gpt_neox.layers.3."): input_layernorm,
 * <attn>.query_key_value (per head), <attn>.dense, post_attention_layernorm, mlp.dense_h_to_4h and
 * mlp.dense_4h_to_h, every one with its bias. BLOOM's is the same with attn "self_attention". */
hs_status hs_hf_load_neox_layer(hs_hf_loader *L, const char *pre, const char *attn, hs_layer_weights *W,
                                hs_err *err);
/* A fused q/k/v projection whose weight [(H + 2 n_kv) d_head, d] and bias (NULL: none) hold,
 * per KV head, its H / n_kv query heads' rows, then its key's, then its value's (GPT-NeoX's
 * query_key_value and GPT-BigCode's c_attn without multi-query, n_kv = H: each head's q, k, v;
 * Falcon's query_key_value in all its layouts), read through scratch into new model-owned
 * W->wq, wk, wv and bq, bk, bv. */
hs_status hs_hf_load_qkv_grouped(hs_hf_loader *L, const char *weight, const char *bias, hs_layer_weights *W,
                                 hs_err *err);

/* FalconForCausalLM (hs_model_falcon.c); *two_norms: the parallel block has ln_attn and
 * ln_mlp (for the loader's two_norms). */
hs_status hs_hf_parse_falcon_config(json_t *root, const char *path, hs_model_config *c, int *two_norms, hs_err *err);
hs_status hs_hf_load_falcon(hs_hf_loader *L, hs_err *err);

/* BloomForCausalLM (hs_model_bloom.c). */
hs_status hs_hf_parse_bloom_config(json_t *root, const char *path, hs_model_config *c, hs_err *err);
hs_status hs_hf_load_bloom(hs_hf_loader *L, hs_err *err);

/* MptForCausalLM (hs_model_mpt.c; the Hub's remote-code spelling MPTForCausalLM too). */
hs_status hs_hf_parse_mpt_config(json_t *root, const char *path, hs_model_config *c, hs_err *err);
hs_status hs_hf_load_mpt(hs_hf_loader *L, hs_err *err);

/* StableLmForCausalLM (hs_model_stablelm.c): the config; the weights are the Llama layout's
 * with LayerNorms' biases, loaded with it. */
hs_status hs_hf_parse_stablelm_config(json_t *root, const char *path, hs_model_config *c, hs_err *err);

/* CohereForCausalLM and (v2) Cohere2ForCausalLM (hs_model_cohere.c): the config; the weights
 * are the Llama layout's (the parallel block's one norm), loaded with it. */
hs_status hs_hf_parse_cohere_config(json_t *root, const char *path, int v2, hs_model_config *c, hs_err *err);

/* Starcoder2ForCausalLM (hs_model_starcoder2.c). */
hs_status hs_hf_parse_starcoder2_config(json_t *root, const char *path, hs_model_config *c, hs_err *err);
hs_status hs_hf_load_starcoder2(hs_hf_loader *L, hs_err *err);

/* GPTBigCodeForCausalLM (hs_model_bigcode.c). */
hs_status hs_hf_parse_bigcode_config(json_t *root, const char *path, hs_model_config *c, hs_err *err);
hs_status hs_hf_load_bigcode(hs_hf_loader *L, hs_err *err);

#endif
