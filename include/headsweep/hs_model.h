/* hs_model: architecture description, configuration and weights of a causal
 * transformer LM (GPT-2, the Llama family, Gemma, GPT-NeoX/Pythia, Falcon and more), loaded from an HF checkpoint
 * folder (config.json + safetensors), a model id in the offline HF cache, or a
 * GGUF file. Weights are held on the host as f32 in one canonical layout, so
 * every backend and every source format meet in the same place. */
#ifndef HS_MODEL_H
#define HS_MODEL_H

#include <stdint.h>

#include "headsweep/hs_status.h"
#include "headsweep/hs_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { HS_ARCH_GPT2 = 0, HS_ARCH_LLAMA, HS_ARCH_NEOX, HS_ARCH_GEMMA, HS_ARCH_PHI, HS_ARCH_GPTNEO,
               HS_ARCH_GPTJ, HS_ARCH_OPT, HS_ARCH_BIGCODE, HS_ARCH_FALCON, HS_ARCH_STABLELM, HS_ARCH_BLOOM,
               HS_ARCH_MPT, HS_ARCH_COHERE, HS_ARCH_STARCODER2 } hs_arch;
/* RMSNORM_1P: an RMSNorm that scales by (1 + w) (Gemma: its weights are stored
 * as offsets from 1; kept so, the sum is formed in f32 as transformers forms
 * it, also where the weights are held in bf16). */
typedef enum { HS_NORM_LAYERNORM = 0, HS_NORM_RMSNORM, HS_NORM_RMSNORM_1P } hs_norm_kind;
/* GELU_NEW: the tanh approximation (GPT-2); GELU: the exact erf form
 * (GPT-NeoX/Pythia); SILU_GLU: silu(gate) * up (Llama); GELU_GLU:
 * gelu_tanh(gate) * up (Gemma's GeGLU); RELU: max(up, 0) (OPT). */
typedef enum { HS_ACT_GELU_NEW = 0, HS_ACT_SILU_GLU, HS_ACT_GELU, HS_ACT_GELU_GLU, HS_ACT_RELU } hs_act_kind;

/* A gated MLP: act(gate) * up, with a gate projection. */
static inline int hs_act_gated(hs_act_kind k) { return k == HS_ACT_SILU_GLU || k == HS_ACT_GELU_GLU; }
/* HS_ROPE_NEOX rotates dimension i with i + d/2 (HF rotate_half);
 * HS_ROPE_NORMAL rotates adjacent pairs (2i, 2i+1) (Meta / GGUF layout, GPT-J).
 * GGUF weights are brought to the NEOX layout, as HF's Llama checkpoints have
 * it; GPT-J's keep their adjacent pairs, so its hook_q / hook_k are HF's. */
typedef enum { HS_ROPE_NONE = 0, HS_ROPE_NEOX, HS_ROPE_NORMAL } hs_rope_kind;
/* How a checkpoint rescales RoPE's frequencies (HF rope_type): LINEAR divides
 * them all by factor; LLAMA3 (Llama 3.1 / 3.2) divides the low ones by factor,
 * keeps the high ones and blends between; YARN blends by rotation count;
 * LONGROPE (Phi-3 128k, Phi-3.5, Phi-4-mini) divides each by its own factor, from
 * one list for prompts within the original context and another for longer
 * ones (hs_model_rope_inv_freq, hs_model_rope_long). */
typedef enum {
    HS_ROPE_SCALING_NONE = 0,
    HS_ROPE_SCALING_LINEAR,
    HS_ROPE_SCALING_LLAMA3,
    HS_ROPE_SCALING_YARN,
    HS_ROPE_SCALING_LONGROPE
} hs_rope_scaling_kind;

/* The most rotated frequency pairs (rot / 2) a LONGROPE factor list holds. */
#define HS_ROPE_MAX_FREQS 128

typedef struct {
    hs_arch arch;
    char arch_name[64]; /* e.g. "GPT2LMHeadModel", "LlamaForCausalLM" */
    int n_layers;
    int n_heads;
    int n_kv_heads; /* == n_heads without GQA */
    int d_model;
    int d_head;
    int d_mlp;
    int n_vocab;
    int n_ctx; /* maximum positions */
    /* Sliding-window attention: in the layers hs_model_layer_slides names, query t
     * sees the keys t - sliding_window < s <= t (Mistral v0.1, Phi-3, Qwen2's upper
     * layers, Gemma 2 / 3's local layers). sliding_window 0 = none. The layout:
     * layer l slides iff l >= window_from and, with global_every > 0,
     * (l - window_from + 1) % global_every != 0 (from window_from on, a "global"
     * full-attention layer every N: Gemma 2's, GPT-Neo's alternation). */
    int sliding_window;
    int window_from;
    int global_every;
    float norm_eps;
    float rope_theta;
    hs_norm_kind norm;
    hs_act_kind act;
    hs_rope_kind rope;
    int rot_dim;         /* leading dims of each head that RoPE rotates, even (partial
                            rotary: GPT-NeoX rotary_pct); 0 = all d_head */
    hs_rope_scaling_kind rope_scaling;
    float rope_factor;                 /* LINEAR, LLAMA3, YARN; LONGROPE: only feeds the attention factor */
    float rope_low_freq_factor, rope_high_freq_factor; /* LLAMA3 */
    int rope_original_ctx;             /* LLAMA3, YARN, LONGROPE: original_max_position_embeddings */
    float rope_beta_fast, rope_beta_slow; /* YARN: the rotation counts bounding the blend */
    int rope_truncate;                 /* YARN: the blend's bounds rounded outwards to whole dims */
    float rope_attn_factor;            /* YARN, LONGROPE: cos and sin times it (the scores times its square) */
    /* LONGROPE: frequency i is divided by short_factor[i] for a prompt of at most
     * rope_original_ctx positions, by long_factor[i] for a longer one; rot / 2
     * entries (rope_n_factors) */
    int rope_n_factors;
    float rope_short_factor[HS_ROPE_MAX_FREQS], rope_long_factor[HS_ROPE_MAX_FREQS];
    /* Gemma 3: the sliding ("local") layers rotate with their own base, unscaled;
     * the others ("global") with rope_theta and the scaling above. 0 = one base. */
    float rope_local_theta;
    /* SmolLM3's NoPE layers: layers l with (l + 1) % nope_every == 0 rotate nothing (their rot_q,
     * rot_k equal q, k); 0 = every layer rotates. */
    int nope_every;
    int parallel_attn_mlp; /* the MLP reads norm2(resid_pre), not norm2(resid_mid), and
                              resid_post = resid_pre + attn_out + mlp_out (GPT-NeoX) */
    int tied_embeddings; /* unembedding shares the token embedding */
    int qkv_bias;        /* q/k/v projections have biases (GPT-2, Qwen2, GPT-NeoX) */
    int qk_norm;         /* an RMSNorm over each head's q and k (of the model's norm kind), between
                            the projection and RoPE (Qwen3, Gemma 3); hook_q / hook_k are the
                            projection's output */
    int qk_norm_all;     /* with qk_norm: one norm over all heads' q (k) at once (OLMo-2) */
    int qk_norm_per_head; /* with qk_norm: each head's q (k) norm has weights of its own (StableLM-2
                             12B's, Command R+'s per-head LayerNorms) */
    int out_bias;        /* attention output and MLP projections have biases (GPT-2, GPT-NeoX) */
    int post_norms;      /* an RMSNorm on the attention's and the MLP's outputs before they join the
                            stream (Gemma 2's sandwich norms); hook_attn_out / hook_mlp_out come after
                            them, as TransformerLens places them: what the stream receives */
    int no_pre_norms;    /* with post_norms: the attention and the MLP read the stream itself, not
                            normed (OLMo-2: the post-norms are the layer's only norms) */
    float embed_scale;   /* the token embedding is multiplied by it (Gemma: sqrt(d_model)); 0 = 1 */
    float attn_scale;    /* the attention's score scale (Gemma 2: query_pre_attn_scalar^-1/2);
                            0 = 1/sqrt(d_head) */
    float attn_softcap;  /* scores become cap * tanh(score / cap) before the mask (Gemma 2: 50); 0 = none */
    float final_softcap; /* the logits likewise (Gemma 2: 30); 0 = none */
    /* The logits are multiplied by logit_scale before any final soft-cap (Cohere's 0.0625,
     * Granite's 1 / logits_scaling), and attn_out and mlp_out by residual_scale before they join
     * the stream (Granite's residual_multiplier). 0 = 1. Both are folded into the weights when
     * the model is loaded (hs_model_fold_scales): logit_scale into the final norm's weight and
     * bias and the unembedding's bias, residual_scale into W_O, b_O, w_down and b_down; so
     * hook_attn_out and hook_mlp_out are what the stream receives. */
    float logit_scale;
    float residual_scale;
    float clip_qkv;      /* q, k and v are clamped to [-clip, clip] after their projections (OLMo
                            7B 0424 / 0724: 8); hook_q, hook_k, hook_v are the clamped values,
                            what the model computes with; 0 = none */
    int learned_pos;     /* learned absolute position embedding (GPT-2) */
    int alibi;           /* ALiBi (BLOOM, MPT): head h's scores gain slope_h * (s - t) for key s of
                            query t (hs_model_alibi_slopes); positions are only these biases */
    float alibi_scale;   /* ALiBi's slopes times it (Falcon-RW: 1/sqrt(d_head), its biases added
                            before the score scale); 0 = 1 */
    int embed_norm;      /* a LayerNorm on the embedding before layer 0 (BLOOM's
                            word_embeddings_layernorm): resid_pre of layer 0 comes after it */
    int bos_token_id;    /* -1 if unknown */
    int eos_token_id;    /* -1 if unknown */
} hs_model_config;

/* One layer's weights: host f32, row-major, linear weights in the HF layout
 * [out_features, in_features]. Absent tensors (biases of a bias-free
 * architecture) are NULL. */
typedef struct {
    float *ln1_w, *ln1_b;      /* [d_model] (ln*_b NULL for RMSNorm; ln*_w NULL with no_pre_norms) */
    float *wq, *bq;            /* [n_heads*d_head, d_model], [n_heads*d_head] */
    float *wk, *bk;            /* [n_kv_heads*d_head, d_model], [n_kv_heads*d_head] */
    float *wv, *bv;            /* as wk, bk */
    float *q_norm_w, *k_norm_w; /* [d_head] each (qk_norm only); with qk_norm_all or
                                   qk_norm_per_head [n_heads*d_head], [n_kv_heads*d_head] */
    float *wo, *bo;            /* [d_model, n_heads*d_head], [d_model] */
    float *ln2_w, *ln2_b;      /* [d_model] */
    float *w_gate;             /* [d_mlp, d_model] (SwiGLU only) */
    float *w_up, *b_up;        /* [d_mlp, d_model], [d_mlp] (GPT-2 c_fc) */
    float *w_down, *b_down;    /* [d_model, d_mlp], [d_model] (GPT-2 c_proj) */
    float *attn_post_w, *mlp_post_w; /* [d_model] each (post_norms only) */
} hs_layer_weights;

typedef struct {
    float *tok_embd;          /* [n_vocab, d_model] */
    float *pos_embd;          /* [n_ctx, d_model] or NULL */
    hs_layer_weights *layers; /* [n_layers] */
    float *lnf_w, *lnf_b;     /* [d_model] */
    float *embed_ln_w, *embed_ln_b; /* [d_model] (embed_norm only) */
    float *unembed;           /* [n_vocab, d_model]; aliases tok_embd when tied */
    float *unembed_b;         /* [n_vocab] or NULL */
    float *rope_freq_factors; /* [rot/2]: GGUF's rope_freqs (Llama 3.1 files): each frequency is divided
                                 by its factor; NULL = none */
} hs_model_weights;

typedef struct hs_model hs_model;

/* Loads a model from:
 *   - a folder with config.json and model.safetensors (or a sharded set with
 *     model.safetensors.index.json),
 *   - a single .gguf file (llama, qwen2, qwen3, gemma, gemma2, gemma3, phi2, phi3, gpt2),
 *   - an HF model id "org/name", resolved offline in $HF_HOME/hub (default
 *     ~/.cache/huggingface/hub).
 * On success *out owns everything; release with hs_model_free. Every error
 * names the file and the tensor or key at fault. */
hs_status hs_model_load(const char *path, hs_model **out, hs_err *err);

/* A model of the given configuration with seeded random weights
 * (normal(0, 0.02) linears, unit norms): for benchmarks and tests. */
hs_status hs_model_init_random(const hs_model_config *cfg, uint64_t seed, hs_model **out,
                               hs_err *err);

void hs_model_free(hs_model *m);

const hs_model_config *hs_model_get_config(const hs_model *m);
const hs_model_weights *hs_model_get_weights(const hs_model *m);
/* The path the model was loaded from ("random:<seed>" for random models). */
const char *hs_model_get_path(const hs_model *m);
/* Source format ("safetensors", "gguf", "random") and the dtypes found in the
 * source file, e.g. "Q4_1,F32". */
const char *hs_model_get_format(const hs_model *m);
const char *hs_model_get_source_dtypes(const hs_model *m);
int64_t hs_model_n_params(const hs_model *m);

/* Whether layer l is one of the layout's sliding ("local") layers (see
 * sliding_window), and its attention window: sliding_window there, else 0. */
int hs_model_layer_slides(const hs_model_config *c, int l);
int hs_model_layer_window(const hs_model_config *c, int l);

/* Whether layer l rotates q and k at all: the model has RoPE and l is not a NoPE
 * layer (see nope_every). */
int hs_model_layer_rotates(const hs_model_config *c, int l);

/* Whether layer l rotates with the local RoPE base (Gemma 3's sliding layers),
 * and that table: rope_local_theta^(-2i/rot), unscaled, out[rot/2]. */
int hs_model_layer_rope_local(const hs_model_config *c, int l);
void hs_model_rope_inv_freq_local(const hs_model_config *c, float *out);

/* The width of one row of the q (kv = 0) or k (kv = 1) norm: d_head, or with
 * qk_norm_all every head's d_head at once. */
int hs_model_qk_norm_width(const hs_model_config *c, int kv);
/* The rows of its weight, each normalised row r using row r % rows: the q (k) heads with
 * qk_norm_per_head, else 1. The weight holds width * rows floats. */
int hs_model_qk_norm_rows(const hs_model_config *c, int kv);

/* YaRN's or LongRoPE's attention factor on the scaled table's cos and sin, else 1. */
float hs_model_rope_attn_factor(const hs_model_config *c);

/* LONGROPE: whether a prompt whose positions reach n_pos - 1 rotates with the
 * long factors (n_pos > rope_original_ctx, as transformers decides for a batch
 * of one); 0 for every other scaling. */
int hs_model_rope_long(const hs_model_config *c, int64_t n_pos);

/* ALiBi's per-head slopes, out[n_heads]: for the largest power of two P <= n_heads,
 * 2^(-8i/P) for heads i = 1..P, then (beyond P) every other one of 2P's, 2^(-4i/P) for
 * i = 1, 3, 5, ... (Press et al.; BLOOM's _get_alibi_slopes, in f32 as it computes them).
 * MPT's build_mpt_alibi_tensor orders the same values another way (from the power of two
 * above n_heads, its even steps first): equal for every head count, to an f32 ulp. Times
 * alibi_scale where it is set. */
void hs_model_alibi_slopes(const hs_model_config *c, float *out);

/* The attention's score scale: attn_scale, or 1/sqrt(d_head). */
float hs_model_attn_scale(const hs_model_config *c);

/* RoPE's inverse frequencies, out[rot/2] (rot: the rotated dims, rot_dim or
 * d_head): theta^(-2i/rot) as HF computes them in f32, then the config's
 * rope_scaling and the weights' rope_freq_factors. LONGROPE: the short
 * factors' table; hs_model_rope_inv_freq_long gives the long factors' (and
 * for any other scaling the same table as hs_model_rope_inv_freq). */
void hs_model_rope_inv_freq(const hs_model_config *c, const hs_model_weights *w, float *out);
void hs_model_rope_inv_freq_long(const hs_model_config *c, const hs_model_weights *w, float *out);

/* Checks the configuration for internal consistency (positive sizes, d_model
 * == n_heads * d_head unless overridden, n_heads % n_kv_heads == 0, ...). */
hs_status hs_model_config_validate(const hs_model_config *cfg, const char *source, hs_err *err);

#ifdef __cplusplus
}
#endif
#endif
