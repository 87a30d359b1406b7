/* hs_model internals shared by the loaders (safetensors/HF, GGUF, random):
 * the model struct and its tracked allocations. Not a public header. */
#ifndef HS_MODEL_INTERNAL_H
#define HS_MODEL_INTERNAL_H

#include "headsweep/hs_gguf.h"
#include "headsweep/hs_model.h"

struct hs_model {
    hs_model_config cfg;
    hs_model_weights w;
    float **owned; /* every weight buffer, freed by hs_model_free */
    int n_owned, cap_owned;
    char path[4096];
    char format[32];
    char src_dtypes[128]; /* comma-separated source dtypes, e.g. "Q4_1,F32" */
    int64_t n_params;
};

/* A zeroed model with no layers. */
hs_model *hs_model_new_empty(void);
/* Allocates cfg.n_layers zeroed layer structs (cfg must be set). */
hs_status hs_model_alloc_layers(hs_model *m, hs_err *err);
/* A tracked f32 buffer of n elements (freed with the model); counts toward n_params
 * unless it aliases (tied weights are assigned by pointer, not allocated). */
hs_status hs_model_alloc_f32(hs_model *m, int64_t n, float **out, hs_err *err);
/* Records a source dtype name in src_dtypes (deduplicated). */
void hs_model_note_dtype(hs_model *m, const char *dtype_name);

/* The (window_from, global_every) of the layers that slide (slides[n_layers],
 * 0 or 1), refused by name (the config key `key`) where no pair describes them. */
hs_status hs_model_layout_of(const char *path, const char *key, const uint8_t *slides, hs_model_config *c,
                             hs_err *err);

/* Folds cfg.logit_scale and cfg.residual_scale into m's weights (see hs_model_config):
 * hs_model_load and hs_model_init_random call it once, after the weights are in. A final
 * norm weight shared with another norm (OLMo's ones) is copied first. */
hs_status hs_model_fold_scales(hs_model *m, hs_err *err);

/* Loaders: fill m->cfg and m->w; on error the caller frees m. */
hs_status hs_model_load_hf_dir(hs_model *m, const char *dir, hs_err *err);
hs_status hs_model_load_gguf(hs_model *m, const char *path, hs_err *err);

/* How a GGUF architecture's tensors are laid out (hs_model_gguf_cfg.c reads the
 * configuration, hs_model_gguf.c the tensors). */
typedef enum {
    HS_GGUF_LLAMA = 0, /* llama, qwen2, qwen3: one tensor per projection */
    HS_GGUF_GEMMA,     /* gemma, gemma2, gemma3: the same, with post-norms and q/k norms */
    HS_GGUF_PHI3,      /* fused attn_qkv and ffn_up (gate, then up) */
    HS_GGUF_GPT2,      /* fused attn_qkv with biases, LayerNorms, learned positions */
    HS_GGUF_PHI2       /* Phi-1 to 2: a parallel block of one LayerNorm, biases everywhere, partial RoPE */
} hs_gguf_family;
typedef struct {
    hs_gguf_family family;
    int permuted;      /* Q/K rows in llama.cpp's interleaved order */
    float norm_offset; /* added to every norm weight (Gemma's 1 + w stored: -1) */
} hs_gguf_layout;
hs_status hs_gguf_read_config(const hs_gguf *g, hs_model_config *c, hs_gguf_layout *lay, hs_err *err);

#endif
