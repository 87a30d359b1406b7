/* hs_session_internal: the session's layout, shared by the forward
 * (hs_forward.c) and the backward (hs_backward.c), which reruns a layer
 * on the session's weights and scratch. */
#ifndef HS_SESSION_INTERNAL_H
#define HS_SESSION_INTERNAL_H

#include "headsweep/hs_forward.h"

typedef struct {
    void *ln1_w, *ln1_b, *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo, *ln2_w, *ln2_b;
    void *w_gate, *w_up, *b_up, *w_down, *b_down;
    void *q_norm_w, *k_norm_w; /* qk_norm only */
    void *attn_post_w, *mlp_post_w; /* post_norms only */
} hs_session_layer;

struct hs_session {
    hs_backend *be;
    const hs_model *model;
    hs_model_config cfg; /* the model's, rot_dim resolved (the rotated width, never 0 with RoPE) */
    int max_B, max_T;
    int owns_weights; /* 0 on the CPU backend: weights alias the model's */
    size_t es;        /* bytes per activation element */
    void *tok_embd, *pos_embd, *lnf_w, *lnf_b, *unembed, *unembed_b;
    void *embed_ln_w, *embed_ln_b; /* embed_norm: the embedding's LayerNorm */
    hs_session_layer *layers;
    /* scratch, sized for max_B * max_T rows */
    void *x, *xn, *q, *k, *v, *z, *attn_out, *gate, *up, *hid, *mlp_out, *logits;
    void *q_pre, *k_pre; /* qk_norm: q and k before their norms (hook_q, hook_k) */
    void *raw;           /* post_norms: o_proj's or down_proj's output before its norm */
    void *split_x, *split_y; /* split inputs: one node's stream [rows, d] and projection [rows, d_head], at first use */
    float *rope_inv;     /* host [rot_dim / 2]: RoPE's inverse frequencies (hs_model_rope_inv_freq) */
    float *rope_inv_local; /* the local layers' (Gemma 3; hs_model_rope_inv_freq_local), or NULL */
    float *rope_inv_long;  /* LONGROPE: the long factors' (hs_model_rope_inv_freq_long), or NULL */
    uint8_t *rope_long_rows; /* LONGROPE: [max_B], the last forward's rows that rotate with rope_inv_long */
    int32_t *d_tokens, *d_pos, *d_mask;
    int32_t *d_pattern_rows; /* [max_B] */
    /* target log-probs: one chunk's logits, targets and results, allocated at
     * first use and kept (no device allocation per forward) */
    void *tl_logits;
    void *tl_dlogits; /* final_softcap: the capped chunk's gradient beside the capped logits */
    int32_t *tl_targets;
    float *tl_out;
    float *d_head_scale; /* [max_B, H] */
    float *d_alibi;      /* ALiBi: the heads' slopes, f32 [H] (hs_model_alibi_slopes); NULL without */
    uint8_t *d_uniform;  /* [max_B, H] */
    /* the attention op's SET table and vectors, allocated at first use */
    int32_t *d_set_idx; /* [max_B, max_T, H] */
    void *d_set_src;
    size_t set_src_bytes;
    /* the pattern hook's and HS_LOGITS_ALL's buffers, grown at need and kept:
     * a per-forward cudaFree waits for the whole device, every worker on it */
    float *d_pattern;
    size_t pattern_bytes;
    void *d_all_logits;
    size_t all_logits_bytes;
    struct hs_bwd *bwd; /* the backward's buffers (hs_backward.h), allocated at first use */
    int64_t bwd_keep_bytes; /* hs_session_set_backward_keep_bytes */
    int64_t bytes;
};

/* The session's unembedding chunk (tl_logits [rows, V], tl_targets, tl_out),
 * allocated at first use: rows = the chunk's capacity. */
hs_status hs_session_logit_chunk(hs_session *s, int64_t *rows, hs_err *err);

/* out = layer l's norm before the attention (mlp = 0) or the MLP (mlp = 1)
 * of x, n rows; with no_pre_norms a copy of x. */
hs_status hs_session_pre_norm(hs_session *s, int l, int mlp, const void *x, int64_t n, void *out, hs_err *err);

/* post_norms: out = the model's norm of s->raw with layer l's attention
 * (mlp = 0) or MLP (mlp = 1) post-norm weights, n rows. */
hs_status hs_session_post_norm(hs_session *s, int l, int mlp, int64_t n, void *out, hs_err *err);

/* final_softcap: logits [R, V] capped in place. */
hs_status hs_session_cap_logits(hs_session *s, void *logits, int64_t R, hs_err *err);

/* x [B, T, heads, d_head] rotated in place for layer l at positions pos
 * (backend memory, [B, T]; negated: the transpose), each row with the table
 * its prompt's length picks (rope_long_rows: LongRoPE's long or short
 * factors, set by the forward), in one backend call per run of rows that
 * share a table. A NoPE layer (hs_model_layer_rotates) leaves x as it is. */
hs_status hs_session_rope(hs_session *s, int l, void *x, const int32_t *pos, int B, int T, int heads, hs_err *err);

/* The RoPE table layer l rotates with (the short one under LongRoPE), and the
 * factor on its cos and sin (YaRN's or LongRoPE's attention factor, on the
 * layers its table serves). */
static inline const float *hs_session_rope_inv(const hs_session *s, int l) {
    return s->rope_inv_local && hs_model_layer_rope_local(&s->cfg, l) ? s->rope_inv_local : s->rope_inv;
}
static inline float hs_session_rope_scale(const hs_session *s, int l) {
    return hs_session_rope_inv(s, l) == s->rope_inv ? hs_model_rope_attn_factor(&s->cfg) : 1.0f;
}

/* The attention window of layer l over T positions, 0 where it hides no key
 * (then a backend may take its unwindowed kernel). */
static inline int hs_session_window(const hs_session *s, int l, int T) {
    const int w = hs_model_layer_window(&s->cfg, l);
    return w > 0 && w < T ? w : 0;
}

/* qk_norm: s->q = RMSNorm(s->q_pre) per head (or over all heads:
 * qk_norm_all) with layer l's q norm (do_q), and the same for k (do_k), over
 * n rows. */
hs_status hs_session_qk_norm(hs_session *s, int l, int64_t n, int do_q, int do_k, hs_err *err);
/* out = layer l's projection `which` (0 q, 1 k, 2 v) of s->xn, n rows; with
 * clip, clamped by the model's clip_qkv (OLMo), as the forward computes it;
 * without, the clamp's input, which its backward needs. */
hs_status hs_session_project(hs_session *s, int l, int which, int64_t n, int clip, void *out, hs_err *err);

/* Split inputs (hs_input_hooks, hs_forward_split.c). Whether fp's input hook
 * takes layer l, and node (kind, head) of it; in out, layer l's projection
 * `which` (0 q, 1 k, 2 v, clamped like hs_session_project) of [B, T] rows,
 * each wanted head's columns from its own copy of s->x that the hook saw;
 * s->xn = the MLP's norm of its own copy of s->x. */
int hs_session_split_wanted(const hs_forward_params *fp, int l);
int hs_session_split_node(const hs_input_hooks *in, int l, hs_input_kind kind, int head);
hs_status hs_session_split_project(hs_session *s, const hs_input_hooks *in, int l, int which, int B, int T, void *out,
                                   hs_err *err);
hs_status hs_session_split_mlp_in(hs_session *s, const hs_input_hooks *in, int l, int B, int T, hs_err *err);

/* The forward's side of a KV cache (hs_kv_cache.c): hs_kv_begin checks the
 * batch against the cache and, appending, sets the new tokens' positions pos
 * [B, T] (and the attention's q_pos); hs_kv_layer stores layer l's s->k and
 * s->v (what the attention reads) and, appending, points ap at the cache;
 * hs_kv_end counts the stored positions after the last layer. */
hs_status hs_kv_begin(hs_kv_cache *kv, const hs_session *s, const hs_batch *b, const hs_forward_params *fp,
                      int32_t *pos, hs_err *err);
hs_status hs_kv_layer(hs_kv_cache *kv, const hs_session *s, int l, int append, hs_attn_params *ap, hs_err *err);
void hs_kv_end(hs_kv_cache *kv, const hs_batch *b, int append);
/* The cache's positions per row: an appending forward's keys per pattern row. */
int hs_kv_cache_max_T(const hs_kv_cache *kv);

#endif
