/* hs_forward: the backend-agnostic layer loop. A session holds one model's
 * weights on one backend plus scratch buffers sized for a maximum batch; a
 * forward pass evaluates a padded batch and calls the caller's hooks at every
 * hook point of DESIGN.md §2 (TransformerLens names and shapes), where the
 * caller may read or edit the activation in place. */
#ifndef HS_FORWARD_H
#define HS_FORWARD_H

#include <stdint.h>

#include "headsweep/hs_backend.h"
#include "headsweep/hs_model.h"
#include "headsweep/hs_status.h"
#include "headsweep/hs_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    HS_HOOK_RESID_PRE = 0, /* [B, T, d_model] */
    HS_HOOK_Q,             /* [B, T, H, d_head] before RoPE */
    HS_HOOK_K,             /* [B, T, H_kv, d_head] before RoPE */
    HS_HOOK_V,             /* [B, T, H_kv, d_head] */
    HS_HOOK_ROT_Q,         /* [B, T, H, d_head] after RoPE (RoPE models only) */
    HS_HOOK_ROT_K,         /* [B, T, H_kv, d_head] after RoPE (RoPE models only) */
    HS_HOOK_PATTERN,       /* [B, H, T, T] f32 probabilities; only when wanted */
    HS_HOOK_Z,             /* [B, T, H, d_head] per-head output before W_O */
    HS_HOOK_ATTN_OUT,      /* [B, T, d_model] */
    HS_HOOK_RESID_MID,     /* [B, T, d_model] */
    HS_HOOK_MLP_PRE,       /* [B, T, d_mlp] the activation's input: W_in x + b_in, or W_gate x (gated MLPs) */
    HS_HOOK_MLP_PRE_LINEAR, /* [B, T, d_mlp] gated MLPs only: W_up x, the factor the activation multiplies */
    HS_HOOK_MLP_POST,      /* [B, T, d_mlp] the activation: gelu_new(pre), or silu(pre) * pre_linear */
    HS_HOOK_MLP_OUT,       /* [B, T, d_model] */
    HS_HOOK_RESID_POST,    /* [B, T, d_model] */
    HS_HOOK_COUNT
} hs_hook_point;

/* TransformerLens-style name without the layer, e.g. "hook_z" -> "z"; the
 * MLP's hooks are "mlp_pre", "mlp_pre_linear", "mlp_post" (TransformerLens
 * blocks.L.mlp.hook_pre, hook_pre_linear, hook_post). */
const char *hs_hook_name(hs_hook_point p);
/* Parses a hook name ("z", "resid_pre", ...); returns HS_HOOK_COUNT if unknown. */
hs_hook_point hs_hook_from_name(const char *name);

typedef struct {
    /* Nonzero if the hook wants this point at this layer. Points nobody wants
     * are never materialised (patterns are only computed when wanted). */
    int (*wants)(void *user, hs_hook_point p, int layer); /* NULL = everything */
    /* Called with a view in backend memory (t->device says which). The hook
     * may read it or modify it in place; edits flow into the rest of the pass.
     * A non-OK return aborts the forward with that status. */
    hs_status (*fn)(void *user, hs_hook_point p, int layer, hs_tensor *t, hs_err *err);
    void *user;
} hs_hooks;

/* Whether hk (may be NULL) takes point p at layer: what the forward asks
 * before offering, and what a hook that chains to another should ask too. */
static inline int hs_hooks_want(const hs_hooks *hk, hs_hook_point p, int layer) {
    return hk && hk->fn && (!hk->wants || hk->wants(hk->user, p, layer));
}

typedef struct {
    int B, T;
    const int32_t *tokens;    /* [B, T] host; padding slots may hold any valid id */
    const int32_t *targets;   /* [B, T] host or NULL: the token whose log-probability is read
                                 at each position (usually tokens shifted by one); -1 = none */
    const int32_t *mask;      /* [B, T] host, 1 = real token, 0 = padding; NULL = none */
    const int32_t *positions; /* [B, T] host or NULL: then cumsum(mask) - 1 (0 for pads),
                                 which is right for left and right padding alike */
} hs_batch;

typedef enum {
    HS_LOGITS_NONE = 0,
    HS_LOGITS_ALL,  /* out [B, T, V] */
    HS_LOGITS_LAST, /* out [B, V] at each row's last real token */
} hs_logits_mode;

/* Interventions on z, the per-head output before W_O (DESIGN.md §2). Mean,
 * resample and patch ablations all become HS_EDIT_SET with the right source. */
typedef enum {
    HS_EDIT_ZERO = 0, /* z_h := 0 */
    HS_EDIT_SCALE,    /* z_h := scale * z_h (the head-mask variable xi_h) */
    HS_EDIT_SET,      /* z_h := src */
    HS_EDIT_UNIFORM,  /* the head attends uniformly over its visible keys (all positions only) */
} hs_edit_mode;

typedef struct {
    int row;          /* batch row */
    int layer, head;
    int pos;          /* a position, or -1 for every position */
    hs_edit_mode mode;
    float scale;      /* HS_EDIT_SCALE */
    const float *src; /* HS_EDIT_SET: host f32 [T, d_head] when pos = -1, else [d_head] */
} hs_z_edit;

/* Split inputs (TransformerLens's use_split_qkv_input with hook_q_input,
 * hook_k_input and hook_v_input, and hook_mlp_in): at a layer the hook
 * wants, each node it wants (a head's q projection, a KV head's k or v
 * projection, the MLP) reads the residual stream through a copy of its own,
 * which the hook may edit for that one node (edge-level interventions:
 * hs_eap_circuit); the others read the stream as usual. A q or k norm over
 * all heads (qk_norm_all) still mixes the heads' projections after that. */
typedef enum { HS_INPUT_Q = 0, HS_INPUT_K, HS_INPUT_V, HS_INPUT_MLP } hs_input_kind;

typedef struct {
    int (*wants)(void *user, int layer); /* NULL = every layer */
    /* NULL = every node of a wanted layer (head: a KV head for K and V, -1 for the MLP) */
    int (*node_wants)(void *user, int layer, hs_input_kind kind, int head);
    /* x: [B, T, d_model] in backend memory, the stream as node (kind, head)
     * reads it before the layer's norm, q, k and v in head order before the
     * MLP; edit it in place. */
    hs_status (*fn)(void *user, int layer, hs_input_kind kind, int head, hs_tensor *x, hs_err *err);
    void *user;
} hs_input_hooks;

typedef struct hs_kv_cache hs_kv_cache;

typedef struct {
    hs_logits_mode logits;
    const hs_hooks *hooks;    /* NULL = none */
    const float *head_scale;  /* host f32 [n_layers, B, H] multipliers on z, or NULL */
    /* Applied at z before its hooks run, in list order: a SET replaces what
     * came before it, a ZERO/SCALE after a SET scales the set value. UNIFORM
     * changes how z is computed, so it precedes every other edit. */
    const hs_z_edit *edits;
    int n_edits;
    /* Prefix reuse: run layers [start_layer, n_layers) from resid_start, the
     * host f32 [B, T, d_model] resid_pre of start_layer (e.g. cached from an
     * unedited run). Edits and hooks before start_layer are not run. With
     * start_layer 0, resid_start (if given) replaces the embedding output. */
    int start_layer;
    const float *resid_start;
    /* The same already in backend memory, act dtype [B, T, d_model] (e.g. the
     * unedited run's resid_pre kept on the device): no host round trip. At
     * most one of resid_start and resid_start_dev. */
    const void *resid_start_dev;
    /* Run layers [start_layer, stop_layer) only, for a pass whose hooks read
     * what they need before the end (path patching's receivers); no logits
     * or log-probabilities then. 0 = every layer. */
    int stop_layer;
    /* Layers >= z_from_hook (when > 0) take every head's z from the Z hook,
     * which must want z there and overwrite all of it (path patching's frozen
     * heads): the layer's attention is not computed, and its q, k and v
     * projections only where a hook wants them. Edits and head_scale at those
     * layers are moot. 0 = none. */
    int z_from_hook;
    /* out host f32 [B, T]: log p(targets[b,t] | prefix) at each position, NAN
     * where targets < 0. Needs batch->targets. NULL = not computed. */
    float *target_logprobs;
    /* host int32 [B], 0 <= pattern_rows[b] < T, or NULL: patterns offered to
     * hooks then hold only query row pattern_rows[b] of each batch row, as
     * [B, H, 1, T] (B*H*T floats instead of B*H*T², for analyses that read
     * one row, like the retrieval score's last position). */
    const int32_t *pattern_rows;
    /* Decoding with a KV cache (hs_kv_cache_init), or NULL. kv_append 0 (the
     * prefill): the batch runs as usual and its rows' keys and values (after
     * norms and RoPE: what the attention read) replace the cache's contents;
     * rows must be right-padded (each row's real tokens first). kv_append 1:
     * the batch holds T new tokens per row (all real; B = the prefill's rows)
     * at the positions after each row's cached ones; they attend to the cache
     * and are appended to it. Hooks then see the new tokens only: [B, T, ...],
     * the pattern [B, H, T, the cache's max_T] (0 past each query's position).
     * Not with start_layer, resid_start(_dev), stop_layer, z_from_hook or batch
     * positions; appended tokens take no SET and no one-position edit (edits
     * on every position and head_scale apply to them as to the prefill). The
     * logits equal the whole sequence's forward up to rounding, but with
     * LongRoPE once a row passes the original context: appended tokens rotate
     * by the table of the length they reach, the cached keys stay as they were
     * computed (transformers' model called with past_key_values does the same;
     * its generate, and hs_decode, rerun the context at that step). The cache
     * counts the tokens once every layer has run (a failure in the logits after
     * that leaves them appended); a prefill empties it first. */
    hs_kv_cache *kv;
    int kv_append;
    /* Split inputs (above), or NULL. Not with a KV cache, z_from_hook or
     * hs_bwd_forward. Each wanted head costs a norm and a narrow GEMM on top
     * of the layer's three wide ones. */
    const hs_input_hooks *inputs;
} hs_forward_params;

hs_forward_params hs_forward_default_params(void);

typedef struct hs_session hs_session;

/* Uploads the model's weights to the backend. The session borrows be and m:
 * both must outlive it. max_B x max_T bounds every batch it will run. */
hs_status hs_session_init(hs_backend *be, const hs_model *m, int max_B, int max_T,
                          hs_session **out, hs_err *err);
void hs_session_free(hs_session *s);

/* Runs one forward pass. logits_out (host f32) must hold [B, T, V] for
 * HS_LOGITS_ALL, [B, V] for HS_LOGITS_LAST, and may be NULL for NONE. */
hs_status hs_forward(hs_session *s, const hs_batch *batch, const hs_forward_params *p,
                     float *logits_out, hs_err *err);

/* The backend the session runs on (borrowed). */
hs_backend *hs_session_backend(const hs_session *s);

/* Backend memory a backward pass (head gradients, attribution patching) may
 * spend on keeping every layer's activations from its forward, instead of
 * recomputing each layer from its input (about a quarter less work). A batch
 * whose activations need more recomputes. 0 = always recompute. The results
 * are the same bits either way. Default HS_BACKWARD_KEEP_BYTES. */
#define HS_BACKWARD_KEEP_BYTES ((int64_t)2 << 30)
void hs_session_set_backward_keep_bytes(hs_session *s, int64_t bytes);

/* A KV cache on s's backend for max_B rows of up to max_T positions each:
 * 2 * n_layers * max_B * max_T * n_kv_heads * d_head activation elements.
 * Borrows s, which must outlive it. */
hs_status hs_kv_cache_init(hs_session *s, int max_B, int max_T, hs_kv_cache **out, hs_err *err);
void hs_kv_cache_free(hs_kv_cache *kv);
/* Positions cached in row r (0 before a prefill, and past its rows). */
int hs_kv_cache_len(const hs_kv_cache *kv, int r);

/* Bytes of backend memory the session holds (weights + scratch). */
int64_t hs_session_device_bytes(const hs_session *s);

#ifdef __cplusplus
}
#endif
#endif
