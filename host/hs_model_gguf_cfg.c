/* hs_model_gguf_cfg: a GGUF file's "<arch>.*" metadata as an hs_model_config,
 * for the architectures whose llama.cpp conversion headsweep reads: llama,
 * qwen2, qwen3, gemma, gemma2, gemma3, phi2, phi3 and gpt2. What the file leaves out
 * is what llama.cpp's loader assumes (its defaults, the layer patterns and
 * Gemma's 27B score scale); where llama.cpp and transformers differ on what
 * a file means (Phi-3's sliding window, LongRoPE's choice of factors) the
 * model computes as transformers does on the original checkpoint. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hs_model_internal.h"

static const struct {
    const char *gguf, *hf;
    hs_gguf_family family;
    int permuted; /* convert_hf_to_gguf.py permuted the Q/K rows (LlamaModel.permute) */
} ARCHS[] = {
    {"llama", "LlamaForCausalLM", HS_GGUF_LLAMA, 1},   {"qwen2", "Qwen2ForCausalLM", HS_GGUF_LLAMA, 0},
    {"qwen3", "Qwen3ForCausalLM", HS_GGUF_LLAMA, 0},   {"gemma", "GemmaForCausalLM", HS_GGUF_GEMMA, 0},
    {"gemma2", "Gemma2ForCausalLM", HS_GGUF_GEMMA, 0}, {"gemma3", "Gemma3ForCausalLM", HS_GGUF_GEMMA, 0},
    {"phi3", "Phi3ForCausalLM", HS_GGUF_PHI3, 0},      {"gpt2", "GPT2LMHeadModel", HS_GGUF_GPT2, 0},
    {"phi2", "PhiForCausalLM", HS_GGUF_PHI2, 0},
};

/* "<arch>.<suffix>" as an int >= lo (lo 1: a size; 0: a count that may be 0); dflt when
 * absent unless required. */
static hs_status meta_int(const hs_gguf *g, const char *arch, const char *suffix, int required, int lo, int dflt,
                          int *out, hs_err *err) {
    char key[160];
    uint32_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!required && hs_gguf_find_key(g, key) < 0) return *out = dflt, HS_OK;
    hs_status st = hs_gguf_get_u32(g, key, &v, err);
    if (st != HS_OK) return st;
    if (v < (uint32_t)lo || v > INT_MAX)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s': %u is not a valid %s", hs_gguf_name(g), key, v,
                          lo ? "size" : "count");
    *out = (int)v;
    return HS_OK;
}

static hs_status meta_float(const hs_gguf *g, const char *arch, const char *suffix, int required, float dflt,
                            float *out, hs_err *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!required && hs_gguf_find_key(g, key) < 0) return *out = dflt, HS_OK;
    hs_status st = hs_gguf_get_f32(g, key, out, err);
    if (st == HS_OK && !(*out >= 0.0f && *out < 1e30f))
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s': %g is out of range", hs_gguf_name(g), key, (double)*out);
    return st;
}

/* A token id, or -1 when absent. */
static hs_status meta_token(const hs_gguf *g, const char *key, int *out, hs_err *err) {
    int32_t v;
    *out = -1;
    if (hs_gguf_find_key(g, key) < 0) return HS_OK;
    hs_status st = hs_gguf_get_i32(g, key, &v, err);
    if (st == HS_OK) *out = v;
    return st;
}

static int has_tensor(const hs_gguf *g, const char *name) {
    hs_gguf_tensor_info ti;
    return hs_gguf_tensor_find(g, name, &ti, NULL) != HS_ERR_MISSING;
}

/* Which layers slide: "<arch>.attention.sliding_window_pattern" as llama.cpp
 * reads it, a period n (layer l slides unless (l + 1) % n == 0; dflt when
 * absent) or one bool per layer. */
static hs_status swa_pattern(const hs_gguf *g, const char *arch, int dflt, hs_model_config *c, hs_err *err) {
    char key[160];
    hs_gguf_type et;
    uint64_t n = 0;
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", arch);
    const int64_t k = hs_gguf_find_key(g, key);
    if (k < 0 || hs_gguf_kv_arr_type(g, k) < 0)
        return meta_int(g, arch, "attention.sliding_window_pattern", 0, 1, dflt, &c->global_every, err);
    hs_status st = hs_gguf_get_arr_info(g, key, &et, &n, err);
    if (st) return st;
    if (n != (uint64_t)c->n_layers)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s': %llu entries for %d layers", hs_gguf_name(g), key,
                          (unsigned long long)n, c->n_layers);
    uint8_t *slides = malloc((size_t)n);
    if (!slides) return hs_err_set(err, HS_ERR_OOM, "%s: out of memory", hs_gguf_name(g));
    for (uint64_t l = 0; l < n && !st; l++) {
        int64_t v = 0;
        st = hs_gguf_get_arr_i64(g, key, l, &v, err);
        slides[l] = v != 0;
    }
    if (!st) st = hs_model_layout_of(hs_gguf_name(g), key, slides, c, err);
    free(slides);
    return st;
}

/* Gemma 1 to 3 (llama.cpp's gemma*.cpp): the norms were stored as 1 + w (undone
 * at load, so that the (1 + w) norms form the sum in f32 as transformers
 * does); the score scale 1/sqrt(d_head), but 1/sqrt(d_model / n_heads) in the
 * 27B models, which llama.cpp knows by their layer count (46, 62) since the
 * file does not carry query_pre_attn_scalar; Gemma 2's caps (50 and 30 when
 * absent) and a window on every other layer (4096 when absent); Gemma 3's
 * q/k norms, its final cap only when given, and, with a window, five sliding
 * layers in six rotating with their own base (10000 when absent), unscaled. */
static hs_status gemma_config(const hs_gguf *g, const char *arch, hs_model_config *c, hs_err *err) {
    const int gen = arch[5] ? arch[5] - '0' : 1;
    hs_status st;
    c->arch = HS_ARCH_GEMMA;
    c->norm = HS_NORM_RMSNORM_1P;
    c->act = HS_ACT_GELU_GLU;
    c->embed_scale = sqrtf((float)c->d_model);
    if (gen == 1) return HS_OK;
    c->post_norms = 1;
    c->qk_norm = gen == 3;
    if (c->n_layers == (gen == 2 ? 46 : 62)) c->attn_scale = 1.0f / sqrtf((float)(c->d_model / c->n_heads));
    if ((st = meta_float(g, arch, "attn_logit_softcapping", 0, gen == 2 ? 50.0f : 0.0f, &c->attn_softcap, err)) ||
        (st = meta_float(g, arch, "final_logit_softcapping", 0, gen == 2 ? 30.0f : 0.0f, &c->final_softcap, err)) ||
        (st = meta_int(g, arch, "attention.sliding_window", 0, 0, gen == 2 ? 4096 : 0, &c->sliding_window, err)) ||
        (st = swa_pattern(g, arch, gen == 2 ? 2 : 6, c, err)))
        return st;
    if (gen == 3) c->attn_softcap = 0.0f; /* llama.cpp's Gemma 3 has none, whatever the file says */
    if (gen == 3 && c->sliding_window > 0)
        return meta_float(g, arch, "rope.freq_base_swa", 0, 10000.0f, &c->rope_local_theta, err);
    return HS_OK;
}

/* Phi-3, Phi-3.5, Phi-4-mini: fused qkv and gate_up (plan_tensors), partial
 * RoPE, a window on every layer (transformers applies it; llama.cpp does not)
 * and, in the 128k variants, LongRoPE's factor lists as the tensors
 * rope_factors_short / rope_factors_long with the attention factor a key. */
static hs_status phi3_config(const hs_gguf *g, const char *arch, hs_model_config *c, hs_err *err) {
    const char *file = hs_gguf_name(g);
    const char *names[2] = {"rope_factors_short.weight", "rope_factors_long.weight"};
    float *lists[2] = {c->rope_short_factor, c->rope_long_factor};
    hs_status st;
    if ((st = meta_int(g, arch, "attention.sliding_window", 0, 0, 0, &c->sliding_window, err))) return st;
    if (!has_tensor(g, names[0]) && !has_tensor(g, names[1])) return HS_OK;
    const int pairs = (c->rot_dim ? c->rot_dim : c->d_head) / 2;
    for (int i = 0; i < 2; i++) {
        hs_gguf_tensor_info ti;
        if ((st = hs_gguf_tensor_find(g, names[i], &ti, err))) return st;
        if (ti.n_dims != 1 || ti.ne[0] != pairs || pairs > HS_ROPE_MAX_FREQS)
            return hs_err_set(err, HS_ERR_SHAPE, "%s: tensor '%s': %lld factors, expected one per rotated pair (%d)",
                              file, names[i], (long long)ti.ne[0], pairs);
        hs_to_f32(ti.dtype, ti.data, lists[i], pairs);
    }
    c->rope_scaling = HS_ROPE_SCALING_LONGROPE;
    c->rope_n_factors = pairs;
    if ((st = meta_int(g, arch, "rope.scaling.original_context_length", 0, 1, c->n_ctx, &c->rope_original_ctx, err)))
        return st;
    /* the converter writes the attention factor; else transformers' default for the file's contexts */
    const double f = (double)c->n_ctx / c->rope_original_ctx;
    const float af = f <= 1.0 ? 1.0f : (float)sqrt(1.0 + log(f) / log((double)c->rope_original_ctx));
    c->rope_factor = (float)f;
    return meta_float(g, arch, "rope.scaling.attn_factor", 0, af, &c->rope_attn_factor, err);
}

/* The sizes, norm, RoPE and scaling every architecture reads alike. */
static hs_status common_config(const hs_gguf *g, const char *arch, hs_gguf_family fam, hs_model_config *c,
                               hs_err *err) {
    const char *file = hs_gguf_name(g), *rs;
    char key[160];
    int rope_dims = 0, v_len = 0;
    hs_status st;
    if ((st = meta_int(g, arch, "block_count", 1, 1, 0, &c->n_layers, err)) ||
        (st = meta_int(g, arch, "embedding_length", 1, 1, 0, &c->d_model, err)) ||
        (st = meta_int(g, arch, "feed_forward_length", 1, 1, 0, &c->d_mlp, err)) ||
        (st = meta_int(g, arch, "attention.head_count", 1, 1, 0, &c->n_heads, err)) ||
        (st = meta_int(g, arch, "attention.head_count_kv", 0, 1, c->n_heads, &c->n_kv_heads, err)) ||
        (st = meta_int(g, arch, "context_length", 1, 1, 0, &c->n_ctx, err)))
        return st;
    if (fam == HS_GGUF_GPT2 || fam == HS_GGUF_PHI2)
        st = meta_float(g, arch, "attention.layer_norm_epsilon", 1, 0, &c->norm_eps, err);
    else st = meta_float(g, arch, "attention.layer_norm_rms_epsilon", 1, 0, &c->norm_eps, err);
    if (st) return st;
    snprintf(key, sizeof key, "%s.attention.key_length", arch);
    if (hs_gguf_find_key(g, key) >= 0) {
        if ((st = meta_int(g, arch, "attention.key_length", 1, 1, 0, &c->d_head, err))) return st;
    } else if (c->d_model % c->n_heads != 0) {
        return hs_err_set(err, HS_ERR_FORMAT, "%s: key '%s.embedding_length': %d is not a multiple of the head count %d",
                          file, arch, c->d_model, c->n_heads);
    } else {
        c->d_head = c->d_model / c->n_heads;
    }
    if ((st = meta_int(g, arch, "attention.value_length", 0, 1, c->d_head, &v_len, err))) return st;
    if (v_len != c->d_head)
        return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: key '%s.attention.value_length': %d differs from the key length %d",
                          file, arch, v_len, c->d_head);
    if (fam == HS_GGUF_GPT2) {
        c->arch = HS_ARCH_GPT2;
        c->norm = HS_NORM_LAYERNORM;
        c->act = HS_ACT_GELU_NEW;
        c->qkv_bias = c->out_bias = c->learned_pos = 1;
        return HS_OK;
    }
    c->arch = HS_ARCH_LLAMA;
    c->norm = HS_NORM_RMSNORM;
    c->act = HS_ACT_SILU_GLU;
    c->rope = HS_ROPE_NEOX;
    if ((st = meta_float(g, arch, "rope.freq_base", 0, 10000.0f, &c->rope_theta, err))) return st;
    /* Partial rotary only where the architecture has it (Phi-4-mini); Llama 3.1's
     * scaling comes as the tensor rope_freqs.weight (plan_tensors). */
    if ((st = meta_int(g, arch, "rope.dimension_count", 0, 1, c->d_head, &rope_dims, err))) return st;
    const int partial_ok = fam == HS_GGUF_PHI3 || fam == HS_GGUF_PHI2;
    if (rope_dims != c->d_head && (!partial_ok || rope_dims > c->d_head || rope_dims % 2))
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "%s: key '%s.rope.dimension_count': partial RoPE (%d of %d dimensions) is not supported here",
                          file, arch, rope_dims, c->d_head);
    if (rope_dims != c->d_head) c->rot_dim = rope_dims;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if (hs_gguf_find_key(g, key) >= 0) {
        if ((st = hs_gguf_get_str(g, key, &rs, NULL, err))) return st;
        if (!strcmp(rs, "linear")) {
            c->rope_scaling = HS_ROPE_SCALING_LINEAR;
            if ((st = meta_float(g, arch, "rope.scaling.factor", 1, 0, &c->rope_factor, err))) return st;
            if (c->rope_factor == 1.0f) c->rope_scaling = HS_ROPE_SCALING_NONE; /* what some converters write for none */
        } else if (strcmp(rs, "none") != 0) {
            return hs_err_set(err, HS_ERR_UNSUPPORTED, "%s: key '%s': RoPE scaling '%.60s' is not supported (none, linear)",
                              file, key, rs);
        }
    }
    return HS_OK;
}

hs_status hs_gguf_read_config(const hs_gguf *g, hs_model_config *c, hs_gguf_layout *lay, hs_err *err) {
    const char *arch = NULL, *file = hs_gguf_name(g);
    hs_gguf_tensor_info emb;
    size_t a = 0;
    hs_status st = hs_gguf_get_str(g, "general.architecture", &arch, NULL, err);
    if (st) return st;
    memset(c, 0, sizeof *c);
    while (a < sizeof ARCHS / sizeof *ARCHS && strcmp(arch, ARCHS[a].gguf)) a++;
    if (a == sizeof ARCHS / sizeof *ARCHS)
        return hs_err_set(err, HS_ERR_UNSUPPORTED,
                          "%s: key 'general.architecture': architecture '%.100s' is not supported "
                          "(supported: llama, qwen2, qwen3, gemma, gemma2, gemma3, phi2, phi3, gpt2)",
                          file, arch);
    lay->family = ARCHS[a].family;
    lay->permuted = ARCHS[a].permuted;
    lay->norm_offset = lay->family == HS_GGUF_GEMMA ? -1.0f : 0.0f;
    snprintf(c->arch_name, sizeof c->arch_name, "%s", ARCHS[a].hf);
    c->qk_norm = !strcmp(arch, "qwen3");
    if ((st = common_config(g, arch, lay->family, c, err))) return st;
    if (lay->family == HS_GGUF_GEMMA) st = gemma_config(g, arch, c, err);
    else if (lay->family == HS_GGUF_PHI3) st = phi3_config(g, arch, c, err);
    else if (lay->family == HS_GGUF_PHI2) { /* the same normed stream feeds both halves; GELU's tanh form */
        c->arch = HS_ARCH_PHI, c->norm = HS_NORM_LAYERNORM, c->act = HS_ACT_GELU_NEW;
        c->parallel_attn_mlp = c->out_bias = 1;
    }
    if (st) return st;

    /* The vocabulary is whatever the embedding holds (it may be padded, or cut to the tokenizer's). */
    st = hs_gguf_tensor_find(g, "token_embd.weight", &emb, err);
    if (st != HS_OK && st != HS_ERR_UNSUPPORTED) return st; /* an unsupported type is named when the tensors are planned */
    if (emb.ne[1] <= 0 || emb.ne[1] > INT_MAX)
        return hs_err_set(err, HS_ERR_SHAPE, "%s: tensor 'token_embd.weight': vocabulary size %lld out of range", file,
                          (long long)emb.ne[1]);
    c->n_vocab = (int)emb.ne[1];
    /* tied: no output.weight, or one that repeats the embedding byte for byte (llama.cpp's GPT-2
     * converter writes that copy) */
    hs_gguf_tensor_info out;
    const hs_status so = hs_gguf_tensor_find(g, "output.weight", &out, NULL);
    c->tied_embeddings = so == HS_ERR_MISSING ||
                         (so == HS_OK && st == HS_OK && out.dtype == emb.dtype && out.nbytes == emb.nbytes &&
                          !memcmp(out.ne, emb.ne, sizeof out.ne) && !memcmp(out.data, emb.data, (size_t)emb.nbytes));
    /* Q/K/V biases (Qwen2) are all or nothing; layer 0 decides. */
    if (lay->family != HS_GGUF_GPT2) c->qkv_bias = has_tensor(g, "blk.0.attn_q.bias") || has_tensor(g, "blk.0.attn_qkv.bias");
    if ((st = meta_token(g, "tokenizer.ggml.bos_token_id", &c->bos_token_id, err))) return st;
    return meta_token(g, "tokenizer.ggml.eos_token_id", &c->eos_token_id, err);
}
