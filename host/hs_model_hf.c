/* hs_model_hf: HF checkpoint folders (config.json + model.safetensors, or
 * shards listed in model.safetensors.index.json) for GPT2LMHeadModel, the
 * Llama family (Llama, Mistral, Qwen2, Qwen3, Phi-3, OLMo, OLMo-2, OLMo-3, SmolLM3:
 * hs_model_smollm3.c), Gemma (hs_model_gemma.c; Gemma 3's multimodal checkpoints: their text model),
 * GPTNeoXForCausalLM (Pythia; hs_model_neox.c), PhiForCausalLM (hs_model_phi.c),
 * GPTNeoForCausalLM (hs_model_gptneo.c), GPTJForCausalLM (hs_model_gptj.c), OPTForCausalLM
 * (hs_model_opt.c), GPTBigCodeForCausalLM (hs_model_bigcode.c), FalconForCausalLM
 * (hs_model_falcon.c), StableLmForCausalLM (hs_model_stablelm.c; its tensors: Llama's) and
 * BloomForCausalLM (hs_model_bloom.c) and MptForCausalLM (hs_model_mpt.c).
 * Tensors are converted to f32 in the canonical layout of hs_model_weights;
 * every shape is checked first. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_model_hf_internal.h"

/* ---- config.json ------------------------------------------------------- */

hs_status hs_hf_cfg_int(json_t *root, const char *path, const char *key, int required, int dflt, int *out,
                        hs_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return hs_err_set(err, HS_ERR_MISSING, "%s: missing key '%s'", path, key);
        *out = dflt;
        return HS_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > INT32_MAX)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s' must be an integer", path, key);
    *out = (int)json_integer_value(v);
    return HS_OK;
}

hs_status hs_hf_cfg_float(json_t *root, const char *path, const char *key, float dflt, float *out, hs_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return HS_OK;
    }
    if (!json_is_number(v)) return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s' must be a number", path, key);
    *out = (float)json_number_value(v);
    return HS_OK;
}

int hs_hf_cfg_bool(json_t *root, const char *key, int dflt) {
    json_t *v = json_object_get(root, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

hs_status hs_hf_rot_dim(const char *path, const char *key, double pct, hs_model_config *c, hs_err *err) {
    if (!(pct > 0.0) || pct > 1.0) return hs_err_set(err, HS_ERR_FORMAT, "%s: %s %g must be in (0, 1]", path, key, pct);
    c->rot_dim = (int)(c->d_head * pct);
    if (c->rot_dim < 2 || c->rot_dim % 2)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: %s %g gives %d rotary dims of %d: not an even count", path, key,
                          pct, c->rot_dim, c->d_head);
    return HS_OK;
}

hs_status hs_hf_cfg_act(json_t *root, const char *path, const char *key, const char *dflt, int relu_ok,
                        hs_model_config *c, hs_err *err) {
    json_t *v = json_object_get(root, key);
    const char *a = json_is_string(v) ? json_string_value(v) : dflt;
    /* gelu_fast is gelu_new's tanh formula, its product regrouped */
    if (!strcmp(a, "gelu_new") || !strcmp(a, "gelu_pytorch_tanh") || !strcmp(a, "gelu_fast")) c->act = HS_ACT_GELU_NEW;
    else if (!strcmp(a, "gelu")) c->act = HS_ACT_GELU;
    else if (relu_ok && !strcmp(a, "relu")) c->act = HS_ACT_RELU;
    else
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: %s '%s' is not supported (gelu_new, gelu_fast, gelu%s)", path,
                          key, a, relu_ok ? ", relu" : "");
    return HS_OK;
}

hs_status hs_hf_rope_theta(json_t *root, json_t *rs, const char *path, float dflt, hs_model_config *c, hs_err *err) {
    hs_status st = hs_hf_cfg_float(root, path, "rope_theta", dflt, &c->rope_theta, err);
    json_t *th = json_is_object(rs) ? json_object_get(rs, "rope_theta") : NULL;
    if (st == HS_OK && json_is_number(th)) c->rope_theta = (float)json_number_value(th);
    return st;
}

hs_status hs_hf_partial_rotary(json_t *root, json_t *rs, const char *path, double dflt, hs_model_config *c, hs_err *err) {
    json_t *top = json_object_get(root, "partial_rotary_factor"),
           *in_rs = json_is_object(rs) ? json_object_get(rs, "partial_rotary_factor") : NULL;
    const double pct = json_is_number(in_rs) ? json_number_value(in_rs) : json_is_number(top) ? json_number_value(top) : dflt;
    hs_status st = hs_hf_rot_dim(path, "partial_rotary_factor", pct, c, err);
    if (st == HS_OK && c->rot_dim == c->d_head) c->rot_dim = 0;
    return st;
}

hs_status hs_hf_load_final(hs_hf_loader *L, const char *norm, int bias, const char *head, hs_err *err) {
    hs_status st = HS_OK;
    hs_model *m = L->m;
    const int64_t d = m->cfg.d_model;
    char n[320];
    snprintf(n, sizeof n, "%s.weight", norm);
    HS_CHECK(hs_hf_load(L, n, d, 0, 0, &m->w.lnf_w, err));
    snprintf(n, sizeof n, "%s.bias", norm);
    if (bias) HS_CHECK(hs_hf_load(L, n, d, 0, 0, &m->w.lnf_b, err));
    if (m->cfg.tied_embeddings) m->w.unembed = m->w.tok_embd;
    else HS_CHECK(hs_hf_load(L, head, m->cfg.n_vocab, d, 0, &m->w.unembed, err));
exit:
    return st;
}

hs_status hs_hf_cfg_int2(json_t *root, const char *path, const char *key, const char *alt, int required, int dflt,
                         int *out, hs_err *err) {
    if (!json_object_get(root, key) && json_object_get(root, alt)) key = alt;
    return hs_hf_cfg_int(root, path, key, required, dflt, out, err);
}

/* bos/eos may be an integer or a list (first entry is used). */
int hs_hf_cfg_token_id(json_t *root, const char *key) {
    json_t *v = json_object_get(root, key);
    if (json_is_array(v)) v = json_array_get(v, 0);
    return json_is_integer(v) ? (int)json_integer_value(v) : -1;
}

static hs_status parse_gpt2_config(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    hs_status st;
    c->arch = HS_ARCH_GPT2;
    if ((st = hs_hf_cfg_int(root, path, "n_layer", 1, 0, &c->n_layers, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "n_head", 1, 0, &c->n_heads, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "n_embd", 1, 0, &c->d_model, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "vocab_size", 1, 0, &c->n_vocab, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "n_positions", 1, 0, &c->n_ctx, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "n_inner", 0, 4 * c->d_model, &c->d_mlp, err))) return st;
    if ((st = hs_hf_cfg_float(root, path, "layer_norm_epsilon", 1e-5f, &c->norm_eps, err))) return st;
    json_t *act = json_object_get(root, "activation_function");
    const char *a = json_is_string(act) ? json_string_value(act) : "gelu_new";
    if (strcmp(a, "gelu_new") && strcmp(a, "gelu_pytorch_tanh"))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: activation_function '%s' is not supported (gelu_new only)",
                          path, a);
    if (hs_hf_cfg_bool(root, "scale_attn_by_inverse_layer_idx", 0) || !hs_hf_cfg_bool(root, "scale_attn_weights", 1))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: non-standard GPT-2 attention scaling is not supported", path);
    if (c->n_heads <= 0 || c->d_model % c->n_heads != 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: n_embd %d is not divisible by n_head %d", path, c->d_model,
                          c->n_heads);
    c->n_kv_heads = c->n_heads;
    c->d_head = c->d_model / c->n_heads;
    c->norm = HS_NORM_LAYERNORM;
    c->act = HS_ACT_GELU_NEW;
    c->rope = HS_ROPE_NONE;
    c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", 1);
    c->qkv_bias = c->out_bias = c->learned_pos = 1;
    return HS_OK;
}

/* yarn's original_max_position_embeddings as transformers' standardize_rope_params
 * sets it: a top-level key first (Phi-3 saves one), then the scaling's own,
 * else max_position_embeddings. (llama3 still requires the scaling's own key,
 * as it did before yarn: a stricter reading kept, not this one.) */
static hs_status rope_original_ctx(json_t *root, json_t *rs, const char *path, const char *obj, hs_model_config *c,
                                   hs_err *err) {
    const char *key = "original_max_position_embeddings";
    json_t *v = json_is_number(json_object_get(root, key)) ? json_object_get(root, key) : json_object_get(rs, key);
    const double o = json_is_number(v) ? json_number_value(v) : v && !json_is_null(v) ? NAN : (double)c->n_ctx;
    if (!(o >= 1.0 && o <= 1e9 && o == floor(o)))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: %s: '%s' must be a positive whole number", path, obj, key);
    c->rope_original_ctx = (int)o;
    return HS_OK;
}

/* A Python truthiness of a JSON value: absent = dflt. */
static int json_truthy(json_t *v, int dflt) {
    if (!v) return dflt;
    if (json_is_boolean(v)) return json_is_true(v);
    if (json_is_number(v)) return json_number_value(v) != 0.0;
    if (json_is_string(v)) return json_string_value(v)[0] != 0;
    return !json_is_null(v);
}

/* YaRN as transformers' _compute_yarn_parameters reads it: factor required
 * (null: max_position_embeddings over the original), beta_fast / beta_slow
 * 32 / 1 when absent or 0, truncate unless falsy, attention_factor given or
 * 0.1 ln(factor) + 1; DeepSeek's mscale with mscale_all_dim is refused. */
static hs_status parse_yarn(json_t *root, json_t *rs, const char *path, const char *obj, hs_model_config *c,
                            hs_err *err) {
    hs_status st;
    c->rope_scaling = HS_ROPE_SCALING_YARN;
    if (json_truthy(json_object_get(rs, "mscale"), 0) && json_truthy(json_object_get(rs, "mscale_all_dim"), 0))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: %s: yarn's mscale / mscale_all_dim is not supported", path, obj);
    if (!json_object_get(rs, "factor"))
        return hs_err_set(err, HS_ERR_MISSING, "%s: %s: rope type 'yarn' needs 'factor'", path, obj);
    if ((st = rope_original_ctx(root, rs, path, obj, c, err)) ||
        (st = hs_hf_cfg_float(rs, path, "factor", (float)c->n_ctx / (float)c->rope_original_ctx, &c->rope_factor, err)) ||
        (st = hs_hf_cfg_float(rs, path, "beta_fast", 0.0f, &c->rope_beta_fast, err)) ||
        (st = hs_hf_cfg_float(rs, path, "beta_slow", 0.0f, &c->rope_beta_slow, err)))
        return st;
    if (!(c->rope_factor >= 1.0f))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: %s: yarn factor %g must be at least 1", path, obj, (double)c->rope_factor);
    if (c->rope_beta_fast == 0.0f) c->rope_beta_fast = 32.0f;
    if (c->rope_beta_slow == 0.0f) c->rope_beta_slow = 1.0f;
    c->rope_truncate = json_truthy(json_object_get(rs, "truncate"), 1);
    json_t *a = json_object_get(rs, "attention_factor");
    double af = c->rope_factor <= 1.0f ? 1.0 : 0.1 * log((double)c->rope_factor) + 1.0;
    if (json_is_number(a)) af = json_number_value(a);
    else if (a && !json_is_null(a))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: %s: key 'attention_factor' must be a number", path, obj);
    if (!(af > 0.0)) return hs_err_set(err, HS_ERR_FORMAT, "%s: %s: attention_factor %g must be positive", path, obj, af);
    c->rope_attn_factor = (float)af;
    return HS_OK;
}

/* One of longrope's factor lists into dst, its length into *n. */
static hs_status longrope_list(json_t *rs, const char *path, const char *obj, const char *key, float *dst, int *n,
                               hs_err *err) {
    json_t *a = json_object_get(rs, key);
    if (!json_is_array(a))
        return hs_err_set(err, HS_ERR_MISSING, "%s: %s: rope type 'longrope' needs a list '%s'", path, obj, key);
    if (json_array_size(a) > HS_ROPE_MAX_FREQS)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: %s: '%s' has %zu entries (at most %d supported)", path, obj, key,
                          json_array_size(a), HS_ROPE_MAX_FREQS);
    *n = (int)json_array_size(a);
    for (int i = 0; i < *n; i++) {
        json_t *v = json_array_get(a, (size_t)i);
        if (!json_is_number(v) || !(json_number_value(v) > 0.0))
            return hs_err_set(err, HS_ERR_FORMAT, "%s: %s: '%s'[%d] must be a positive number", path, obj, key, i);
        dst[i] = (float)json_number_value(v);
    }
    return HS_OK;
}

/* LongRoPE as transformers' _compute_longrope_parameters reads it: both factor
 * lists (their length is checked against the rotated pairs once the partial
 * rotary factor is known, in hs_model_config_validate), the original context
 * (Phi-3: the top-level key, else its config class's 4096; others as yarn's),
 * the attention factor given, else sqrt(1 + ln f / ln original) with f the
 * factor given, else max_position_embeddings over the original (1 for f <= 1). */
static hs_status parse_longrope(json_t *root, json_t *rs, const char *path, const char *obj, hs_model_config *c,
                                hs_err *err) {
    hs_status st;
    int n_long = 0;
    c->rope_scaling = HS_ROPE_SCALING_LONGROPE;
    if ((st = longrope_list(rs, path, obj, "short_factor", c->rope_short_factor, &c->rope_n_factors, err)) ||
        (st = longrope_list(rs, path, obj, "long_factor", c->rope_long_factor, &n_long, err)))
        return st;
    if (n_long != c->rope_n_factors)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: %s: short_factor has %d entries, long_factor %d", path, obj,
                          c->rope_n_factors, n_long);
    const char *key = "original_max_position_embeddings";
    if (!strcmp(c->arch_name, "Phi3ForCausalLM") && !json_is_number(json_object_get(root, key))) {
        c->rope_original_ctx = 4096;
    } else if ((st = rope_original_ctx(root, rs, path, obj, c, err))) {
        return st;
    }
    if ((st = hs_hf_cfg_float(rs, path, "factor", (float)c->n_ctx / (float)c->rope_original_ctx, &c->rope_factor, err)))
        return st;
    json_t *a = json_object_get(rs, "attention_factor");
    double af = c->rope_factor <= 1.0f ? 1.0 : sqrt(1.0 + log((double)c->rope_factor) / log((double)c->rope_original_ctx));
    if (json_is_number(a)) af = json_number_value(a);
    else if (a && !json_is_null(a))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: %s: key 'attention_factor' must be a number", path, obj);
    if (!(af > 0.0) || !isfinite(af))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: %s: attention_factor %g must be positive", path, obj, af);
    c->rope_attn_factor = (float)af;
    return HS_OK;
}

hs_status hs_hf_parse_rope_scaling(json_t *root, json_t *rs, const char *path, const char *obj, hs_model_config *c,
                                   hs_err *err) {
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    const char *type = json_is_string(t) ? json_string_value(t) : "default";
    if (!strcmp(type, "default")) return HS_OK;
    /* Phi-3's config class renames yarn (and su) to longrope */
    const int phi3 = !strcmp(c->arch_name, "Phi3ForCausalLM");
    if (!strcmp(type, "yarn") && !phi3) return parse_yarn(root, rs, path, obj, c, err);
    if (!strcmp(type, "longrope") || (phi3 && (!strcmp(type, "yarn") || !strcmp(type, "su"))))
        return parse_longrope(root, rs, path, obj, c, err);
    if (strcmp(type, "linear") && strcmp(type, "llama3"))
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "%s: %s: rope type '%s' is not supported (default, linear, llama3, yarn, longrope)", path, obj,
                          type);
    const int llama3 = type[0] == 'l' && type[1] == 'l';
    c->rope_scaling = llama3 ? HS_ROPE_SCALING_LLAMA3 : HS_ROPE_SCALING_LINEAR;
    const char *keys[3] = {"factor", "low_freq_factor", "high_freq_factor"};
    float *dst[3] = {&c->rope_factor, &c->rope_low_freq_factor, &c->rope_high_freq_factor};
    hs_status st;
    for (int i = 0; i < (llama3 ? 3 : 1); i++) {
        if ((st = hs_hf_cfg_float(rs, path, keys[i], NAN, dst[i], err))) return st;
        if (isnan(*dst[i])) return hs_err_set(err, HS_ERR_MISSING, "%s: %s: rope type '%s' needs '%s'", path, obj, type, keys[i]);
    }
    if (llama3 && (st = hs_hf_cfg_int(rs, path, "original_max_position_embeddings", 0, 0, &c->rope_original_ctx, err)))
        return st;
    if (llama3 && c->rope_original_ctx <= 0)
        return hs_err_set(err, HS_ERR_MISSING, "%s: %s: rope type 'llama3' needs a positive 'original_max_position_embeddings'",
                          path, obj);
    return HS_OK;
}

json_t *hs_hf_rope_dict(json_t *root, const char **name) {
    json_t *rs = json_object_get(root, "rope_scaling");
    if (json_is_object(rs) && json_object_size(rs) > 0) return *name = "rope_scaling", rs;
    return *name = "rope_parameters", json_object_get(root, "rope_parameters");
}

hs_status hs_hf_parse_typed_rope(json_t *root, const char *path, float full_dflt, const char *local_key,
                                 float local_dflt, hs_model_config *c, hs_err *err) {
    hs_status st;
    if ((st = hs_hf_cfg_float(root, path, "rope_theta", full_dflt, &c->rope_theta, err))) return st;
    c->rope_local_theta = local_dflt;
    if (local_key && (st = hs_hf_cfg_float(root, path, local_key, local_dflt, &c->rope_local_theta, err))) return st;
    json_t *rp = json_object_get(root, "rope_parameters"), *rs = json_object_get(root, "rope_scaling");
    json_t *full = json_is_object(rp) ? json_object_get(rp, "full_attention") : NULL,
           *local = json_is_object(rp) ? json_object_get(rp, "sliding_attention") : NULL;
    if (json_is_object(full) && json_is_number(json_object_get(full, "rope_theta")))
        c->rope_theta = (float)json_number_value(json_object_get(full, "rope_theta"));
    if (json_is_object(local) && json_is_number(json_object_get(local, "rope_theta")))
        c->rope_local_theta = (float)json_number_value(json_object_get(local, "rope_theta"));
    json_t *lt = json_is_object(local) ? json_object_get(local, "rope_type") : NULL;
    if (json_is_string(lt) && strcmp(json_string_value(lt), "default"))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: rope_parameters.sliding_attention: rope type '%s' is not supported",
                          path, json_string_value(lt));
    if (!(c->rope_local_theta > 0.0f))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: the local layers' RoPE base %g must be positive", path,
                          (double)c->rope_local_theta);
    /* transformers merges rope_scaling into rope_parameters.full_attention key by key (dict.update) */
    json_t *merged = json_is_object(full) ? json_deep_copy(full) : json_object();
    if (!merged || (json_is_object(rs) && json_object_update(merged, rs)))
        return json_decref(merged), hs_err_set(err, HS_ERR_OOM, "%s: out of memory", path);
    st = hs_hf_parse_rope_scaling(root, merged, path, json_is_object(rs) ? "rope_scaling" : "rope_parameters.full_attention",
                                  c, err);
    json_decref(merged);
    if (st) return st;
    c->rope_truncate = 1; /* yarn's truncate is read from the outer rope_parameters, where it never is */
    return HS_OK;
}

hs_status hs_hf_cfg_sizes(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    hs_status st;
    if ((st = hs_hf_cfg_int(root, path, "num_hidden_layers", 1, 0, &c->n_layers, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "num_attention_heads", 1, 0, &c->n_heads, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "num_key_value_heads", 0, c->n_heads, &c->n_kv_heads, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "hidden_size", 1, 0, &c->d_model, err))) return st;
    if ((st = hs_hf_cfg_int(root, path, "intermediate_size", 1, 0, &c->d_mlp, err))) return st;
    return hs_hf_cfg_int(root, path, "vocab_size", 1, 0, &c->n_vocab, err);
}

hs_status hs_hf_layer_layout(json_t *root, const char *path, int from, int every, hs_model_config *c, hs_err *err) {
    c->window_from = from, c->global_every = every;
    json_t *lt = json_object_get(root, "layer_types");
    if (!json_is_array(lt)) return HS_OK;
    const int n = c->n_layers;
    if ((int)json_array_size(lt) != n)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: layer_types has %zu entries for %d layers", path, json_array_size(lt),
                          n);
    uint8_t *slides = malloc((size_t)n + 1);
    if (!slides) return hs_err_set(err, HS_ERR_OOM, "%s: out of memory", path);
    for (int l = 0; l < n; l++) {
        const char *t = json_string_value(json_array_get(lt, l));
        if (!t || (strcmp(t, "sliding_attention") && strcmp(t, "full_attention"))) {
            free(slides);
            return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: layer_types[%d] is '%s' (sliding_attention or full_attention)",
                              path, l, t ? t : "(not a string)");
        }
        slides[l] = t[0] == 's';
    }
    hs_status st = hs_model_layout_of(path, "layer_types", slides, c, err);
    free(slides);
    return st;
}

hs_status hs_hf_cfg_window(json_t *root, const char *path, int dflt, hs_model_config *c, hs_err *err) {
    c->sliding_window = 0;
    if (json_is_null(json_object_get(root, "sliding_window"))) return HS_OK;
    hs_status st = hs_hf_cfg_int(root, path, "sliding_window", 0, dflt, &c->sliding_window, err);
    if (st == HS_OK && c->sliding_window < 0)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: sliding_window %d is negative", path, c->sliding_window);
    return st;
}

hs_status hs_hf_check_window(json_t *root, const char *path, int slides_by_default, const hs_model_config *c,
                             hs_err *err) {
    if (c->sliding_window > 0) return HS_OK;
    int listed = 0, by_default = 0;
    json_t *lt = json_object_get(root, "layer_types");
    for (size_t i = 0; json_is_array(lt) && i < json_array_size(lt); i++) {
        const char *t = json_string_value(json_array_get(lt, i));
        listed |= t && !strcmp(t, "sliding_attention");
    }
    for (int l = 0; slides_by_default && !json_is_array(lt) && l < c->n_layers; l++)
        by_default |= hs_model_layer_slides(c, l);
    if (listed || by_default)
        return hs_err_set(err, HS_ERR_FORMAT,
                          "%s: sliding layers%s without a window (sliding_window null, or use_sliding_window false): "
                          "transformers cannot run this config either",
                          path, listed ? " in layer_types" : "");
    return HS_OK;
}

/* The attention window as transformers applies it: every layer of Mistral and
 * Phi-3, Qwen2's and Qwen3's layers from max_window_layers on (or as
 * layer_types says) and only with use_sliding_window, OLMo-3's three layers
 * in four (or as layer_types says); Llama and OLMo-2 have none. */
static hs_status llama_window(json_t *root, const char *path, const char *arch, hs_model_config *c, hs_err *err) {
    const int phi3 = !strcmp(arch, "Phi3ForCausalLM"), qwen = !strncmp(arch, "Qwen", 4);
    hs_status st;
    if (!strcmp(arch, "Olmo3ForCausalLM")) {
        if ((st = hs_hf_cfg_window(root, path, 4096, c, err)) || (st = hs_hf_layer_layout(root, path, 0, 4, c, err)))
            return st;
        return hs_hf_check_window(root, path, 1, c, err);
    }
    if (!phi3 && !qwen && strcmp(arch, "MistralForCausalLM")) return HS_OK;
    if (qwen && !hs_hf_cfg_bool(root, "use_sliding_window", 0)) return hs_hf_check_window(root, path, 0, c, err);
    if ((st = hs_hf_cfg_window(root, path, phi3 ? 0 : 4096, c, err)) || !qwen) return st;
    int from = 0;
    if ((st = hs_hf_cfg_int(root, path, "max_window_layers", 0, 28, &from, err)) ||
        (st = hs_hf_layer_layout(root, path, from < 0 ? 0 : from, 0, c, err)))
        return st;
    return hs_hf_check_window(root, path, 0, c, err);
}

/* Granite's four multipliers (GraniteConfig's defaults 1): the embedding's (embed_scale), the
 * attention's score scale in place of 1/sqrt(d_head) (attn_scale), the attention's and MLP's
 * outputs' before they join the stream (residual_scale) and the logits' divisor (logit_scale
 * is its inverse). */
static hs_status granite_multipliers(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    static const char *keys[4] = {"embedding_multiplier", "attention_multiplier", "residual_multiplier",
                                  "logits_scaling"};
    float v[4];
    for (int i = 0; i < 4; i++) {
        hs_status st = hs_hf_cfg_float(root, path, keys[i], 1.0f, &v[i], err);
        if (st) return st;
        if (!(v[i] > 0.0f && v[i] < 1e30f))
            return hs_err_set(err, HS_ERR_FORMAT, "%s: %s %g must be positive", path, keys[i], (double)v[i]);
    }
    c->embed_scale = v[0], c->attn_scale = v[1], c->residual_scale = v[2], c->logit_scale = 1.0f / v[3];
    return HS_OK;
}

static hs_status parse_llama_config(json_t *root, const char *path, const char *arch, hs_model_config *c,
                                    hs_err *err) {
    hs_status st;
    const int phi3 = !strcmp(arch, "Phi3ForCausalLM"), olmo3 = !strcmp(arch, "Olmo3ForCausalLM"),
              olmo = olmo3 || !strcmp(arch, "Olmo2ForCausalLM"), olmo1 = !strcmp(arch, "OlmoForCausalLM"),
              smollm3 = !strcmp(arch, "SmolLM3ForCausalLM"), granite = !strcmp(arch, "GraniteForCausalLM");
    c->arch = HS_ARCH_LLAMA;
    if ((st = hs_hf_cfg_sizes(root, path, c, err))) return st;
    /* defaults for absent keys: the architecture's config class's */
    if (smollm3 && !json_object_get(root, "num_key_value_heads")) c->n_kv_heads = 4;
    if ((st = hs_hf_cfg_int(root, path, "max_position_embeddings", 0, phi3 ? 4096 : smollm3 ? 32768 : 2048, &c->n_ctx,
                             err)))
        return st;
    if (c->n_heads <= 0) return hs_err_set(err, HS_ERR_FORMAT, "%s: num_attention_heads must be positive", path);
    if ((st = hs_hf_cfg_int(root, path, "head_dim", 0, c->d_model / c->n_heads, &c->d_head, err))) return st;
    if ((st = hs_hf_cfg_float(root, path, "rms_norm_eps", phi3 || olmo ? 1e-5f : 1e-6f, &c->norm_eps, err))) return st;
    /* rope_theta sits at the top level, or in the rope dict (rope_scaling when given, which then
     * replaces rope_parameters, as transformers reads them); OLMo-3's per layer
     * type (the sliding layers' base 5e5 unless given there: transformers gives a top-level
     * rope_theta to the full layers alone) */
    const char *rs_name;
    json_t *rs = hs_hf_rope_dict(root, &rs_name);
    if (olmo3 && (st = hs_hf_parse_typed_rope(root, path, 500000.0f, NULL, 500000.0f, c, err))) return st;
    if (!olmo3 && (st = hs_hf_rope_theta(root, rs, path, smollm3 ? 2e6f : 10000.0f, c, err))) return st;
    if (!olmo3 && json_is_object(rs) && (st = hs_hf_parse_rope_scaling(root, rs, path, rs_name, c, err))) return st;
    json_t *act = json_object_get(root, "hidden_act");
    if (json_is_string(act) && strcmp(json_string_value(act), "silu"))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (silu only)", path,
                          json_string_value(act));
    if (hs_hf_cfg_bool(root, "mlp_bias", 0))
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: mlp_bias is not supported", path);
    int att_bias = hs_hf_cfg_bool(root, "attention_bias", 0);
    if (att_bias) return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: attention_bias (with o_proj bias) is not supported", path);
    if (!smollm3 && (st = llama_window(root, path, arch, c, err))) return st;
    if (olmo1 && (st = hs_hf_cfg_float(root, path, "clip_qkv", 0.0f, &c->clip_qkv, err))) return st;
    if (olmo1 && json_is_number(json_object_get(root, "clip_qkv")) && !(c->clip_qkv > 0.0f && c->clip_qkv < 1e30f))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key 'clip_qkv' must be positive or null (got %g)", path,
                          (double)c->clip_qkv);
    c->norm = HS_NORM_RMSNORM;
    c->act = HS_ACT_SILU_GLU;
    c->rope = HS_ROPE_NEOX;
    c->tied_embeddings = hs_hf_cfg_bool(root, "tie_word_embeddings", smollm3);
    c->qkv_bias = !strcmp(arch, "Qwen2ForCausalLM");
    c->qk_norm = !strcmp(arch, "Qwen3ForCausalLM");
    if (olmo1) { /* OLMo (1): LayerNorms without weights or biases, their epsilon fixed */
        c->norm = HS_NORM_LAYERNORM;
        c->norm_eps = 1e-5f;
    }
    if (olmo) { /* norms on the outputs only, and over all heads' q and k */
        c->post_norms = c->no_pre_norms = 1;
        c->qk_norm = c->qk_norm_all = 1;
    }
    if (phi3 && (st = hs_hf_partial_rotary(root, rs, path, 1.0, c, err))) return st;
    if (smollm3 && (st = hs_hf_parse_smollm3(root, path, c, err))) return st;
    if (granite && (st = granite_multipliers(root, path, c, err))) return st;
    c->out_bias = 0;
    c->learned_pos = 0;
    return HS_OK;
}

static hs_status load_config(hs_hf_loader *L, hs_err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", L->dir);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        hs_status code = strstr(je.text, "unable to open") ? HS_ERR_IO : HS_ERR_FORMAT;
        return hs_err_set(err, code, "%s: %s (line %d)", path, je.text, je.line);
    }
    hs_status st = HS_OK;
    hs_model_config *c = &L->m->cfg;
    json_t *archs = json_object_get(root, "architectures");
    json_t *a0 = json_is_array(archs) ? json_array_get(archs, 0) : NULL;
    if (!json_is_string(a0)) {
        st = hs_err_set(err, HS_ERR_MISSING, "%s: missing key 'architectures'", path);
        goto exit;
    }
    const char *arch = json_string_value(a0);
    snprintf(c->arch_name, sizeof c->arch_name, "%s", arch);
    c->bos_token_id = hs_hf_cfg_token_id(root, "bos_token_id"); /* parsers may complete them */
    c->eos_token_id = hs_hf_cfg_token_id(root, "eos_token_id");
    if (!strcmp(arch, "GPT2LMHeadModel")) {
        st = parse_gpt2_config(root, path, c, err);
    } else if (!strcmp(arch, "LlamaForCausalLM") || !strcmp(arch, "MistralForCausalLM") ||
               !strcmp(arch, "Qwen2ForCausalLM") || !strcmp(arch, "Qwen3ForCausalLM") || !strcmp(arch, "Phi3ForCausalLM") ||
               !strcmp(arch, "Olmo2ForCausalLM") || !strcmp(arch, "Olmo3ForCausalLM") || !strcmp(arch, "OlmoForCausalLM") ||
               !strcmp(arch, "SmolLM3ForCausalLM") || !strcmp(arch, "GraniteForCausalLM")) {
        st = parse_llama_config(root, path, arch, c, err);
    } else if (!strcmp(arch, "GPTNeoXForCausalLM")) {
        st = hs_hf_parse_neox_config(root, path, c, err);
    } else if (!strcmp(arch, "PhiForCausalLM")) {
        st = hs_hf_parse_phi_config(root, path, c, err);
    } else if (!strcmp(arch, "GPTNeoForCausalLM")) {
        st = hs_hf_parse_gptneo_config(root, path, c, err);
    } else if (!strcmp(arch, "GPTJForCausalLM")) {
        st = hs_hf_parse_gptj_config(root, path, c, err);
    } else if (!strcmp(arch, "OPTForCausalLM")) {
        st = hs_hf_parse_opt_config(root, path, c, err);
    } else if (!strcmp(arch, "GPTBigCodeForCausalLM")) {
        st = hs_hf_parse_bigcode_config(root, path, c, err);
    } else if (!strcmp(arch, "FalconForCausalLM")) {
        st = hs_hf_parse_falcon_config(root, path, c, &L->two_norms, err);
    } else if (!strcmp(arch, "StableLmForCausalLM")) {
        st = hs_hf_parse_stablelm_config(root, path, c, err);
    } else if (!strcmp(arch, "BloomForCausalLM")) {
        st = hs_hf_parse_bloom_config(root, path, c, err);
    } else if (!strcmp(arch, "MptForCausalLM") || !strcmp(arch, "MPTForCausalLM")) {
        st = hs_hf_parse_mpt_config(root, path, c, err);
    } else if (!strcmp(arch, "CohereForCausalLM") || !strcmp(arch, "Cohere2ForCausalLM")) {
        st = hs_hf_parse_cohere_config(root, path, !strcmp(arch, "Cohere2ForCausalLM"), c, err);
    } else if (!strcmp(arch, "Starcoder2ForCausalLM")) {
        st = hs_hf_parse_starcoder2_config(root, path, c, err);
    } else if (!strcmp(arch, "Gemma3ForConditionalGeneration")) {
        st = hs_hf_parse_gemma3_mm_config(root, path, c, err);
    } else if (!strcmp(arch, "GemmaForCausalLM") || !strcmp(arch, "Gemma2ForCausalLM") ||
               !strcmp(arch, "Gemma3ForCausalLM")) {
        st = hs_hf_parse_gemma_config(root, path, arch, c, err);
    } else {
        st = hs_err_set(err, HS_ERR_UNSUPPORTED,
                        "%s: architecture '%s' is not supported (GPT2LMHeadModel, LlamaForCausalLM, "
                        "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM, GemmaForCausalLM, "
                        "Gemma2ForCausalLM, Gemma3ForCausalLM, Gemma3ForConditionalGeneration, GPTNeoXForCausalLM, "
                        "Olmo2ForCausalLM, Olmo3ForCausalLM, OlmoForCausalLM, SmolLM3ForCausalLM, PhiForCausalLM, "
                        "GPTNeoForCausalLM, GPTJForCausalLM, OPTForCausalLM, GPTBigCodeForCausalLM, FalconForCausalLM, "
                        "StableLmForCausalLM, BloomForCausalLM, MptForCausalLM, GraniteForCausalLM, "
                        "CohereForCausalLM, Cohere2ForCausalLM, Starcoder2ForCausalLM)",
                        path, arch);
    }
exit:
    json_decref(root);
    return st;
}

/* ---- weight files ------------------------------------------------------------ */

static hs_status open_shard(hs_hf_loader *L, const char *fname, hs_st_file **out, hs_err *err) {
    for (int i = 0; i < L->n_files; i++)
        if (!strcmp(L->file_names[i], fname)) return *out = L->files[i], HS_OK;
    if (L->n_files == HS_HF_MAX_SHARDS)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: more than %d shards", L->dir, HS_HF_MAX_SHARDS);
    if (strchr(fname, '/') || !strcmp(fname, ".."))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: shard name '%s' must be a plain file name", L->dir, fname);
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", L->dir, fname);
    hs_status st = hs_st_open(path, &L->files[L->n_files], err);
    if (st != HS_OK) return st;
    L->file_names[L->n_files] = strdup(fname);
    *out = L->files[L->n_files++];
    return HS_OK;
}

static hs_status open_weights(hs_hf_loader *L, hs_err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", L->dir);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        hs_st_file *f;
        return open_shard(L, "model.safetensors", &f, err);
    }
    fclose(fp);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) return hs_err_set(err, HS_ERR_FORMAT, "%s: %s (line %d)", path, je.text, je.line);
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        json_decref(root);
        return hs_err_set(err, HS_ERR_FORMAT, "%s: missing object 'weight_map'", path);
    }
    L->weight_map = json_incref(wm);
    json_decref(root);
    const char *k;
    json_t *v;
    json_object_foreach(L->weight_map, k, v) {
        if (!json_is_string(v))
            return hs_err_set(err, HS_ERR_FORMAT, "%s: weight_map['%s'] is not a file name", path, k);
    }
    return HS_OK;
}

static hs_status find_tensor(hs_hf_loader *L, const char *name, const hs_st_tensor **out, hs_err *err) {
    *out = NULL;
    if (L->weight_map) {
        json_t *v = json_object_get(L->weight_map, name);
        if (!v) return hs_err_set(err, HS_ERR_MISSING, "%s: missing tensor '%s' (not in the weight map)", L->dir, name);
        hs_st_file *f;
        hs_status st = open_shard(L, json_string_value(v), &f, err);
        if (st != HS_OK) return st;
        *out = hs_st_find(f, name);
        if (!*out)
            return hs_err_set(err, HS_ERR_MISSING, "%s: tensor '%s' listed in the index is not in the file",
                              hs_st_path(f), name);
        return HS_OK;
    }
    *out = hs_st_find(L->files[0], name);
    if (!*out) return hs_err_set(err, HS_ERR_MISSING, "%s: missing tensor '%s'", hs_st_path(L->files[0]), name);
    return HS_OK;
}

hs_status hs_hf_load(hs_hf_loader *L, const char *name, int64_t d0, int64_t d1, int transpose, float **out,
                     hs_err *err) {
    const hs_st_tensor *t;
    hs_status st = find_tensor(L, name, &t, err);
    if (st != HS_OK) return st;
    int nd = d1 ? 2 : 1;
    int64_t e0 = transpose ? d1 : d0, e1 = transpose ? d0 : d1;
    if (t->ndim != nd || t->shape[0] != e0 || (nd == 2 && t->shape[1] != e1)) {
        char got[128] = "", *p = got;
        for (int i = 0; i < t->ndim; i++) p += snprintf(p, sizeof got - (size_t)(p - got), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (nd == 2)
            return hs_err_set(err, HS_ERR_SHAPE, "%s: tensor '%s' has shape [%s], config.json implies [%lld, %lld]",
                              L->dir, name, got, (long long)e0, (long long)e1);
        return hs_err_set(err, HS_ERR_SHAPE, "%s: tensor '%s' has shape [%s], config.json implies [%lld]", L->dir,
                          name, got, (long long)e0);
    }
    if (t->dtype == HS_DTYPE_I32)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: tensor '%s' has integer dtype I32", L->dir, name);
    hs_model_note_dtype(L->m, hs_dtype_name(t->dtype));
    if (!*out && (st = hs_model_alloc_f32(L->m, t->numel, out, err))) return st;
    if (!transpose) {
        hs_to_f32(t->dtype, t->data, *out, t->numel);
        return HS_OK;
    }
    float *tmp = malloc((size_t)t->numel * sizeof(float));
    if (!tmp) return hs_err_set(err, HS_ERR_OOM, "%s: out of memory for '%s'", L->dir, name);
    hs_to_f32(t->dtype, t->data, tmp, t->numel);
    for (int64_t i = 0; i < d0; i++)
        for (int64_t j = 0; j < d1; j++) (*out)[i * d1 + j] = tmp[j * d0 + i];
    free(tmp);
    return HS_OK;
}

int hs_hf_has_tensor(hs_hf_loader *L, const char *name) {
    if (L->weight_map) return json_object_get(L->weight_map, name) != NULL;
    return hs_st_find(L->files[0], name) != NULL;
}

/* GPT-2's fused c_attn [d, 3d] (Conv1D: in x out) -> wq, wk, wv [d, d] each. */
static hs_status load_gpt2_layer(hs_hf_loader *L, int l, hs_err *err) {
    hs_status st = HS_OK;
    hs_model *m = L->m;
    const hs_model_config *c = &m->cfg;
    hs_layer_weights *W = &m->w.layers[l];
    int64_t d = c->d_model, f = c->d_mlp;
    char n[256];
    float *qkv = NULL, *qkv_b = NULL;
#define NAME(s) (snprintf(n, sizeof n, "%sh.%d.%s", L->prefix, l, s), n)
    HS_CHECK(hs_hf_load(L, NAME("ln_1.weight"), d, 0, 0, &W->ln1_w, err));
    HS_CHECK(hs_hf_load(L, NAME("ln_1.bias"), d, 0, 0, &W->ln1_b, err));
    HS_CHECK(hs_hf_load(L, NAME("attn.c_attn.weight"), 3 * d, d, 1, &qkv, err));
    HS_CHECK(hs_hf_load(L, NAME("attn.c_attn.bias"), 3 * d, 0, 0, &qkv_b, err));
    /* Rows of the transposed [3d, d] matrix are q, then k, then v outputs:
     * alias into it rather than copy (the buffer is owned by the model). */
    W->wq = qkv;
    W->wk = qkv + d * d;
    W->wv = qkv + 2 * d * d;
    W->bq = qkv_b;
    W->bk = qkv_b + d;
    W->bv = qkv_b + 2 * d;
    HS_CHECK(hs_hf_load(L, NAME("attn.c_proj.weight"), d, d, 1, &W->wo, err));
    HS_CHECK(hs_hf_load(L, NAME("attn.c_proj.bias"), d, 0, 0, &W->bo, err));
    HS_CHECK(hs_hf_load(L, NAME("ln_2.weight"), d, 0, 0, &W->ln2_w, err));
    HS_CHECK(hs_hf_load(L, NAME("ln_2.bias"), d, 0, 0, &W->ln2_b, err));
    HS_CHECK(hs_hf_load(L, NAME("mlp.c_fc.weight"), f, d, 1, &W->w_up, err));
    HS_CHECK(hs_hf_load(L, NAME("mlp.c_fc.bias"), f, 0, 0, &W->b_up, err));
    HS_CHECK(hs_hf_load(L, NAME("mlp.c_proj.weight"), d, f, 1, &W->w_down, err));
    HS_CHECK(hs_hf_load(L, NAME("mlp.c_proj.bias"), d, 0, 0, &W->b_down, err));
#undef NAME
exit:
    return st;
}

static hs_status load_gpt2(hs_hf_loader *L, hs_err *err) {
    hs_status st = HS_OK;
    hs_model *m = L->m;
    const hs_model_config *c = &m->cfg;
    char n[256];
    L->prefix = hs_hf_has_tensor(L, "transformer.wte.weight") ? "transformer." : "";
#define NAME(s) (snprintf(n, sizeof n, "%s%s", L->prefix, s), n)
    HS_CHECK(hs_hf_load(L, NAME("wte.weight"), c->n_vocab, c->d_model, 0, &m->w.tok_embd, err));
    HS_CHECK(hs_hf_load(L, NAME("wpe.weight"), c->n_ctx, c->d_model, 0, &m->w.pos_embd, err));
    for (int l = 0; l < c->n_layers; l++) HS_CHECK(load_gpt2_layer(L, l, err));
    HS_CHECK(hs_hf_load(L, NAME("ln_f.weight"), c->d_model, 0, 0, &m->w.lnf_w, err));
    HS_CHECK(hs_hf_load(L, NAME("ln_f.bias"), c->d_model, 0, 0, &m->w.lnf_b, err));
#undef NAME
    if (!c->tied_embeddings && hs_hf_has_tensor(L, "lm_head.weight"))
        HS_CHECK(hs_hf_load(L, "lm_head.weight", c->n_vocab, c->d_model, 0, &m->w.unembed, err));
    else
        m->w.unembed = m->w.tok_embd;
exit:
    return st;
}

/* StableLM-2 12B's per-head LayerNorms (StableLmLayerNormPerHead): layer l's
 * self_attn.<which>.norms.<h>.weight, [d_head] each, into one new [heads * d_head] weight. */
static hs_status load_per_head_norms(hs_hf_loader *L, int l, const char *which, int heads, float **out, hs_err *err) {
    const int64_t dh = L->m->cfg.d_head;
    hs_status st = hs_model_alloc_f32(L->m, heads * dh, out, err);
    for (int h = 0; h < heads && st == HS_OK; h++) {
        char n[256];
        float *row = *out + h * dh;
        snprintf(n, sizeof n, "model.layers.%d.self_attn.%s.norms.%d.weight", l, which, h);
        st = hs_hf_load(L, n, dh, 0, 0, &row, err);
    }
    return st;
}

static hs_status load_llama(hs_hf_loader *L, hs_err *err) {
    hs_status st = HS_OK;
    hs_model *m = L->m;
    const hs_model_config *c = &m->cfg;
    int64_t d = c->d_model, q = (int64_t)c->n_heads * c->d_head, kv = (int64_t)c->n_kv_heads * c->d_head,
            f = c->d_mlp;
    const int phi3 = !strcmp(c->arch_name, "Phi3ForCausalLM"), olmo1 = !strcmp(c->arch_name, "OlmoForCausalLM"),
              ln_bias = c->arch == HS_ARCH_STABLELM; /* LayerNorms with biases */
    /* Gemma 3's multimodal checkpoints hold the text model under language_model.model. (the Hub's,
     * and what transformers saves) or model.language_model. (a state dict as transformers 4.52 and
     * later hold it, exported as it is) */
    const char *pre = "model.", *head = "lm_head.weight";
    if (!strcmp(c->arch_name, "Gemma3ForConditionalGeneration")) {
        pre = hs_hf_has_tensor(L, "model.language_model.embed_tokens.weight") ? "model.language_model."
                                                                               : "language_model.model.";
        if (!hs_hf_has_tensor(L, head)) head = "language_model.lm_head.weight";
    }
    char n[256];
    float *ones = NULL; /* OLMo (1): every norm's weight, shared (its LayerNorms have none) */
    if (olmo1) {
        HS_CHECK(hs_model_alloc_f32(m, d, &ones, err));
        for (int64_t i = 0; i < d; i++) ones[i] = 1.0f;
        m->n_params -= d; /* not a parameter of the checkpoint */
    }
    snprintf(n, sizeof n, "%sembed_tokens.weight", pre);
    HS_CHECK(hs_hf_load(L, n, c->n_vocab, d, 0, &m->w.tok_embd, err));
    for (int l = 0; l < c->n_layers; l++) {
        hs_layer_weights *W = &m->w.layers[l];
#define NAME(s) (snprintf(n, sizeof n, "%slayers.%d.%s", pre, l, s), n)
        if (olmo1) W->ln1_w = W->ln2_w = ones;
        else if (!c->no_pre_norms) HS_CHECK(hs_hf_load(L, NAME("input_layernorm.weight"), d, 0, 0, &W->ln1_w, err));
        if (ln_bias) HS_CHECK(hs_hf_load(L, NAME("input_layernorm.bias"), d, 0, 0, &W->ln1_b, err));
        if (phi3) { /* rows [q | k | v] of one qkv_proj: alias into it (the model owns the buffer) */
            HS_CHECK(hs_hf_load(L, NAME("self_attn.qkv_proj.weight"), q + 2 * kv, d, 0, &W->wq, err));
            W->wk = W->wq + q * d;
            W->wv = W->wk + kv * d;
        } else {
            HS_CHECK(hs_hf_load(L, NAME("self_attn.q_proj.weight"), q, d, 0, &W->wq, err));
            HS_CHECK(hs_hf_load(L, NAME("self_attn.k_proj.weight"), kv, d, 0, &W->wk, err));
            HS_CHECK(hs_hf_load(L, NAME("self_attn.v_proj.weight"), kv, d, 0, &W->wv, err));
        }
        if (c->qkv_bias) {
            HS_CHECK(hs_hf_load(L, NAME("self_attn.q_proj.bias"), q, 0, 0, &W->bq, err));
            HS_CHECK(hs_hf_load(L, NAME("self_attn.k_proj.bias"), kv, 0, 0, &W->bk, err));
            HS_CHECK(hs_hf_load(L, NAME("self_attn.v_proj.bias"), kv, 0, 0, &W->bv, err));
        }
        if (c->qk_norm && c->arch == HS_ARCH_STABLELM) { /* per head: q_layernorm.norms.<h>.weight */
            HS_CHECK(load_per_head_norms(L, l, "q_layernorm", c->n_heads, &W->q_norm_w, err));
            HS_CHECK(load_per_head_norms(L, l, "k_layernorm", c->n_kv_heads, &W->k_norm_w, err));
        } else if (c->qk_norm_per_head) { /* Cohere: [heads, d_head] */
            HS_CHECK(hs_hf_load(L, NAME("self_attn.q_norm.weight"), c->n_heads, c->d_head, 0, &W->q_norm_w, err));
            HS_CHECK(hs_hf_load(L, NAME("self_attn.k_norm.weight"), c->n_kv_heads, c->d_head, 0, &W->k_norm_w, err));
        } else if (c->qk_norm) {
            HS_CHECK(hs_hf_load(L, NAME("self_attn.q_norm.weight"), hs_model_qk_norm_width(c, 0), 0, 0, &W->q_norm_w, err));
            HS_CHECK(hs_hf_load(L, NAME("self_attn.k_norm.weight"), hs_model_qk_norm_width(c, 1), 0, 0, &W->k_norm_w, err));
        }
        HS_CHECK(hs_hf_load(L, NAME("self_attn.o_proj.weight"), d, q, 0, &W->wo, err));
        if (c->post_norms) { /* Gemma 2 / 3, OLMo-2: post_attention_layernorm is on the attention's output */
            HS_CHECK(hs_hf_load(L, NAME("post_attention_layernorm.weight"), d, 0, 0, &W->attn_post_w, err));
            if (!c->no_pre_norms)
                HS_CHECK(hs_hf_load(L, NAME("pre_feedforward_layernorm.weight"), d, 0, 0, &W->ln2_w, err));
            HS_CHECK(hs_hf_load(L, NAME("post_feedforward_layernorm.weight"), d, 0, 0, &W->mlp_post_w, err));
        } else if (c->parallel_attn_mlp) { /* StableLM's parallel block: one norm read by both halves */
            W->ln2_w = W->ln1_w, W->ln2_b = W->ln1_b;
        } else if (!olmo1) {
            HS_CHECK(hs_hf_load(L, NAME("post_attention_layernorm.weight"), d, 0, 0, &W->ln2_w, err));
            if (ln_bias) HS_CHECK(hs_hf_load(L, NAME("post_attention_layernorm.bias"), d, 0, 0, &W->ln2_b, err));
        }
        if (phi3) { /* rows [gate | up] of one gate_up_proj */
            HS_CHECK(hs_hf_load(L, NAME("mlp.gate_up_proj.weight"), 2 * f, d, 0, &W->w_gate, err));
            W->w_up = W->w_gate + f * d;
        } else {
            HS_CHECK(hs_hf_load(L, NAME("mlp.gate_proj.weight"), f, d, 0, &W->w_gate, err));
            HS_CHECK(hs_hf_load(L, NAME("mlp.up_proj.weight"), f, d, 0, &W->w_up, err));
        }
        HS_CHECK(hs_hf_load(L, NAME("mlp.down_proj.weight"), d, f, 0, &W->w_down, err));
#undef NAME
    }
    snprintf(n, sizeof n, "%snorm.weight", pre);
    if (olmo1) m->w.lnf_w = ones;
    else HS_CHECK(hs_hf_load(L, n, d, 0, 0, &m->w.lnf_w, err));
    snprintf(n, sizeof n, "%snorm.bias", pre);
    if (ln_bias) HS_CHECK(hs_hf_load(L, n, d, 0, 0, &m->w.lnf_b, err));
    if (c->tied_embeddings)
        m->w.unembed = m->w.tok_embd;
    else
        HS_CHECK(hs_hf_load(L, head, c->n_vocab, d, 0, &m->w.unembed, err));
exit:
    return st;
}

hs_status hs_model_load_hf_dir(hs_model *m, const char *dir, hs_err *err) {
    hs_status st = HS_OK;
    hs_hf_loader L;
    memset(&L, 0, sizeof L);
    L.m = m;
    snprintf(L.dir, sizeof L.dir, "%s", dir);
    HS_CHECK(load_config(&L, err));
    HS_CHECK(hs_model_config_validate(&m->cfg, dir, err));
    HS_CHECK(hs_model_alloc_layers(m, err));
    HS_CHECK(open_weights(&L, err));
    if (m->cfg.arch == HS_ARCH_GPT2) HS_CHECK(load_gpt2(&L, err));
    else if (m->cfg.arch == HS_ARCH_NEOX) HS_CHECK(hs_hf_load_neox(&L, err));
    else if (m->cfg.arch == HS_ARCH_PHI) HS_CHECK(hs_hf_load_phi(&L, err));
    else if (m->cfg.arch == HS_ARCH_GPTNEO) HS_CHECK(hs_hf_load_gptneo(&L, err));
    else if (m->cfg.arch == HS_ARCH_GPTJ) HS_CHECK(hs_hf_load_gptj(&L, err));
    else if (m->cfg.arch == HS_ARCH_OPT) HS_CHECK(hs_hf_load_opt(&L, err));
    else if (m->cfg.arch == HS_ARCH_BIGCODE) HS_CHECK(hs_hf_load_bigcode(&L, err));
    else if (m->cfg.arch == HS_ARCH_FALCON) HS_CHECK(hs_hf_load_falcon(&L, err));
    else if (m->cfg.arch == HS_ARCH_BLOOM) HS_CHECK(hs_hf_load_bloom(&L, err));
    else if (m->cfg.arch == HS_ARCH_MPT) HS_CHECK(hs_hf_load_mpt(&L, err));
    else if (m->cfg.arch == HS_ARCH_STARCODER2) HS_CHECK(hs_hf_load_starcoder2(&L, err));
    else HS_CHECK(load_llama(&L, err)); /* the Llama family, Gemma and StableLM: one tensor layout */
exit:
    for (int i = 0; i < L.n_files; i++) {
        hs_st_close(L.files[i]);
        free(L.file_names[i]);
    }
    json_decref(L.weight_map);
    return st;
}
