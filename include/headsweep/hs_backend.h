/* hs_backend: the op table every compute backend implements (a CPU reference
 * and CUDA). The forward pass is written once against this table. All buffer
 * pointers passed to ops live in the backend's memory and hold elements of the
 * backend's activation dtype (hs_backend_act_dtype), except where a parameter
 * says f32 or int32. Ops may run asynchronously; hs_backend_sync waits. */
#ifndef HS_BACKEND_H
#define HS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "headsweep/hs_model.h"
#include "headsweep/hs_status.h"
#include "headsweep/hs_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HS_BACKEND_API_VERSION 17 /* 2: copy, target_logprob; 3: SET table in the attention op, set_z gone;
                                    4: the backward ops (gradient head importance); 5: zero; 6: copy_2d;
                                    7: rope's rot (partial rotary), act GELU; 8: embed's scale, the
                                    attention's softcap, softcap(_bwd), act GELU_GLU (Gemma 2);
                                    9: norm kind RMSNORM_1P (Gemma's (1 + w));
                                    10: the attention's sliding window; 11: rope's scale (YaRN);
                                    12: act RELU (OPT); 13: clamp(_bwd) (OLMo's clip_qkv);
                                    14: the attention's T_kv and q_pos (decoding from a KV cache);
                                    15: the attention's ALiBi slopes (BLOOM);
                                    16: norm(_bwd)'s w_rows (per-head q/k norm weights);
                                    17: axpy (edge attribution's differences) */

typedef enum {
    HS_OP_EMBED = 0,
    HS_OP_NORM,
    HS_OP_MATMUL,
    HS_OP_ROPE,
    HS_OP_ATTENTION,
    HS_OP_ACT,
    HS_OP_ADD,
    HS_OP_TARGET_LOGPROB,
    HS_OP_BACKWARD, /* matmul_bwd, norm_bwd, act_bwd, attention_bwd, logprob_grad, head_dot */
    HS_OP_COUNT
} hs_op;

/* Fused causal attention for one layer.
 * z[b,t,h,:] = sum_s P[b,h,t,s] v[b,s,h/(H/H_kv),:], P = softmax over keys s <= t
 * with key_mask[b,s] != 0 (and with a window, t - s < window) of the score scale * q·k (+ alibi[h] * (s - t)
 * with ALiBi), or with softcap > 0 of softcap * tanh(that / softcap). A query with no visible key gets z = 0
 * and lse = -inf. lse and pattern are of the scores after the cap. */
typedef struct {
    int B, T;        /* batch rows, sequence length (padded) */
    int H, H_kv;     /* query heads, key/value heads (GQA: H % H_kv == 0) */
    int d_head;
    float scale;     /* usually 1/sqrt(d_head) */
    float softcap;   /* > 0: scores are capped (Gemma 2); 0 = none */
    int window;      /* > 0: a sliding window, query t sees keys t - window < s <= t (indices,
                        as transformers masks them); 0 = none */
    const float *alibi; /* ALiBi (BLOOM): f32 [H] slopes, backend memory; query t's score of key s gains
                           alibi[h] * (s - t), t its key position (q_pos[b] + t from a cache). Between real
                           tokens index distance is position distance, whichever side pads, so this is
                           BLOOM's slope * position up to a per-row constant, which the softmax drops.
                           NULL = none */
    const void *q;   /* [B, T, H, d_head] */
    const void *k;   /* [B, T, H_kv, d_head] */
    const void *v;   /* [B, T, H_kv, d_head] */
    const int32_t *key_mask; /* [B, T] int32, nonzero = real token; NULL = no padding */
    /* Per-(row, head) multiplier on z (1 = untouched, 0 = zero-ablation,
     * s = the head-mask variable xi_h). NULL = all ones. f32 [B, H]. */
    const float *head_scale;
    void *z;         /* out [B, T, H, d_head] */
    float *lse;      /* out f32 [B, H, T] log-sum-exp of scaled scores, or NULL */
    float *pattern;  /* out f32 [B, H, T, T] probabilities (0 where masked), or NULL */
    /* With pattern: NULL = the whole pattern; else int32 [B] (backend memory),
     * one query row per batch row, 0 <= pattern_rows[b] < T: pattern is then
     * [B, H, T] and holds only P[b, h, pattern_rows[b], :]. */
    const int32_t *pattern_rows;
    /* Per-(row, head) flag [B, H]: nonzero = the head attends uniformly over
     * its visible keys (the retrieval-head papers' "masking"); NULL = none.
     * Backends that cannot do it return HS_ERR_UNSUPPORTED. */
    const uint8_t *uniform;
    /* In-kernel SET (mean, resample and patch ablation, a zeroed position):
     * set_idx int32 [B, T, H] (backend memory); set_idx[b,t,h] >= 0 writes
     * z[b,t,h,:] = set_src[set_idx[b,t,h], :] in place of the attention output
     * (head_scale does not apply to it; lse and pattern are unchanged); < 0
     * keeps the computed value. set_src: n_set vectors [n_set, d_head], act
     * dtype, backend memory. set_idx NULL = no SETs. */
    const int32_t *set_idx;
    const void *set_src;
    int64_t n_set;
    /* Keys from a cache (decoding). T_kv > 0: k, v and key_mask hold T_kv
     * positions per row ([B, T_kv, H_kv, d_head], [B, T_kv]) and query t of row
     * b sits at key position q_pos[b] + t (q_pos int32 [B], backend memory,
     * 0 <= q_pos[b] <= T_kv - T; the CPU refuses others, a device backend,
     * which reads q_pos in its kernel, does not check): it sees keys
     * s <= q_pos[b] + t, the window
     * counting from there; pattern is [B, H, T, T_kv] ([B, H, T_kv] with
     * pattern_rows), 0 past each query's position. T_kv = 0: the keys are the
     * queries' own T positions (q_pos unused). Forward only: attention_bwd
     * refuses it. */
    int T_kv;
    const int32_t *q_pos;
} hs_attn_params;

typedef struct hs_backend hs_backend;

typedef struct {
    int version; /* HS_BACKEND_API_VERSION */
    const char *name;
    hs_dtype (*act_dtype)(hs_backend *be);
    int (*supports_op)(hs_backend *be, hs_op op);

    hs_status (*alloc)(hs_backend *be, size_t nbytes, void **out, hs_err *err);
    void (*free)(hs_backend *be, void *ptr);
    /* Host <-> backend copies of raw bytes. */
    hs_status (*upload)(hs_backend *be, void *dst, const void *src, size_t nbytes, hs_err *err);
    hs_status (*download)(hs_backend *be, void *dst, const void *src, size_t nbytes, hs_err *err);
    /* Backend -> backend copy of raw bytes (non-overlapping). */
    hs_status (*copy)(hs_backend *be, void *dst, const void *src, size_t nbytes, hs_err *err);
    /* Sets nbytes of backend memory to zero bytes (0.0 in every dtype). */
    hs_status (*zero)(hs_backend *be, void *dst, size_t nbytes, hs_err *err);
    /* Backend -> backend copy of rows strided rows of width bytes: row i from
     * src + i * src_pitch to dst + i * dst_pitch (pitches >= width); the bytes
     * between rows are untouched. One head's slice of [T, H * d_head] in one
     * call rather than one copy per position. */
    hs_status (*copy_2d)(hs_backend *be, void *dst, size_t dst_pitch, const void *src, size_t src_pitch, size_t width,
                         size_t rows, hs_err *err);
    /* Copies n host f32 values into backend memory as act/weight dtype elements. */
    hs_status (*upload_f32)(hs_backend *be, void *dst, const float *src, int64_t n, hs_err *err);
    /* Copies n backend act-dtype elements into host f32. */
    hs_status (*download_f32)(hs_backend *be, float *dst, const void *src, int64_t n, hs_err *err);
    hs_status (*sync)(hs_backend *be, hs_err *err);

    /* out[i,:] = tok_embd[tokens[i],:] * scale (+ pos_embd[pos[i],:] if pos_embd). i < n. */
    hs_status (*embed)(hs_backend *be, const int32_t *tokens, const int32_t *pos,
                       const void *tok_embd, const void *pos_embd, int64_t n, int d,
                       float scale, void *out, hs_err *err);
    /* y = norm(x) * w (+ b); rows x d; y may be x. LayerNorm uses b (may be
     * NULL); RMSNORM_1P scales by (1 + w). w (and b) hold w_rows rows of d: row r
     * uses row r % w_rows (1: one for every row; the heads' count: StableLM-2's
     * per-head q/k norms over [tokens x heads, d_head]). */
    hs_status (*norm)(hs_backend *be, hs_norm_kind kind, const void *x, const void *w,
                      const void *b, float eps, int64_t rows, int d, int w_rows, void *y, hs_err *err);
    /* y[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]) (+ y if accumulate). */
    hs_status (*matmul)(hs_backend *be, const void *x, const void *w, const void *bias,
                        int64_t M, int N, int K, int accumulate, void *y, hs_err *err);
    /* In place on x [n, H, d_head] with positions pos[n] (int32): rotates each
     * head's first rot dims (even, <= d_head; the rest pass through) by the
     * angles pos * inv_freq[i], times scale (cos and sin times it: YaRN's
     * attention factor; 1 = a rotation); inv_freq: host memory, rot/2 entries
     * (hs_model_rope_inv_freq: theta^(-2i/rot) and the checkpoint's scaling). */
    hs_status (*rope)(hs_backend *be, hs_rope_kind kind, void *x, const int32_t *pos,
                      int64_t n, int H, int d_head, int rot, const float *inv_freq, float scale, hs_err *err);
    hs_status (*attention)(hs_backend *be, const hs_attn_params *p, hs_err *err);
    /* GELU_NEW: out = gelu_tanh(up); GELU: out = up * Phi(up) (erf); SILU_GLU:
     * out = silu(gate) * up; GELU_GLU: out = gelu_tanh(gate) * up; RELU: out =
     * max(up, 0), NaN passed on as torch passes it. n elements. */
    hs_status (*act)(hs_backend *be, hs_act_kind kind, const void *gate, const void *up,
                     int64_t n, void *out, hs_err *err);
    /* y += x, n elements. */
    hs_status (*add)(hs_backend *be, void *y, const void *x, int64_t n, hs_err *err);
    /* y += alpha * x, n elements (alpha * x rounded once with the sum: one FMA in f32). */
    hs_status (*axpy)(hs_backend *be, void *y, float alpha, const void *x, int64_t n, hs_err *err);
    /* y = cap * tanh(x / cap), n elements (Gemma 2's final logits); y may be x. */
    hs_status (*softcap)(hs_backend *be, const void *x, int64_t n, float cap, void *y, hs_err *err);
    /* y = min(max(x, -c), c), NaN passed on as torch.clamp passes it, n elements (OLMo's
     * clip_qkv); y may be x. */
    hs_status (*clamp)(hs_backend *be, const void *x, int64_t n, float c, void *y, hs_err *err);
    /* out[r] = logits[r, targets[r]] - logsumexp(logits[r, :]) for rows with
     * 0 <= targets[r] < V, NAN for targets[r] < 0; r < R. logits [R, V] act
     * dtype, targets int32 [R], out f32 [R], all in backend memory. The
     * reduction order is fixed (the same bits every run), so a loss never
     * needs its logits to leave the device. */
    hs_status (*target_logprob)(hs_backend *be, const void *logits, const int32_t *targets, int64_t R, int V,
                                float *out, hs_err *err);

    /* Backward ops: input gradients only (no weight gradients), for the
     * gradient of a loss with respect to activations (head importance).
     * Same dtypes and memory as the forward ops. */
    /* dx[M,K] (+)= dy[M,N] · w[N,K]: the input gradient of matmul. */
    hs_status (*matmul_bwd)(hs_backend *be, const void *dy, const void *w, int64_t M, int N, int K, int accumulate,
                            void *dx, hs_err *err);
    /* dx (+)= (d norm(x) * w / dx)ᵀ dy; rows x d, w_rows as norm's. The bias does not enter. */
    hs_status (*norm_bwd)(hs_backend *be, hs_norm_kind kind, const void *x, const void *w, float eps, int64_t rows,
                          int d, int w_rows, const void *dy, int accumulate, void *dx, hs_err *err);
    /* GELU_NEW, GELU: d_up = d_out * gelu'(up), d_gate unused (RELU: d_out where
     * up > 0, else 0, as torch's threshold_backward); SILU_GLU: d_up =
     * d_out * silu(gate), d_gate = d_out * up * silu'(gate); GELU_GLU likewise
     * with gelu_tanh. n elements. */
    hs_status (*act_bwd)(hs_backend *be, hs_act_kind kind, const void *gate, const void *up, const void *d_out,
                         int64_t n, void *d_gate, void *d_up, hs_err *err);
    /* dx = dy * (1 - (y / cap)^2), the input gradient of softcap given its
     * output y; n elements; dx may be dy. */
    hs_status (*softcap_bwd)(hs_backend *be, const void *y, const void *dy, int64_t n, float cap, void *dx,
                             hs_err *err);
    /* dx = dy where -c < x < c, else 0: the input gradient of clamp given its
     * input x (torch's with scalar bounds, as OLMo's clamp_ has: zero on the
     * bounds themselves, which bf16 values hit); n elements; dx may be dy. */
    hs_status (*clamp_bwd)(hs_backend *be, const void *x, const void *dy, int64_t n, float c, void *dx,
                           hs_err *err);
    /* Gradients of z = attention(q, k, v) (p: sizes, q, k, v, key_mask, scale,
     * softcap and head_scale: z = head_scale[b,h] * softmax(.) v; no other edits)
     * given dz [B, T, H, d_head]: dq [B, T, H, d_head], dk and dv
     * [B, T, H_kv, d_head] (summed over the query heads of a group). Overwrites. */
    hs_status (*attention_bwd)(hs_backend *be, const hs_attn_params *p, const void *dz, void *dq, void *dk, void *dv,
                               hs_err *err);
    /* dlogits[r, :] = softmax(logits[r, :]) - onehot(targets[r]) for
     * 0 <= targets[r] < V (the gradient of -log p(target)), 0 for targets < 0.
     * logits and dlogits [R, V] act dtype, targets int32 [R], backend memory. */
    hs_status (*logprob_grad)(hs_backend *be, const void *logits, const int32_t *targets, int64_t R, int V,
                              void *dlogits, hs_err *err);
    /* out[b, h] = sum over t and i of a[b,t,h,i] * c[b,t,h,i]: a, c [B, T, H, d]
     * act dtype, out f32 [B, H], all in backend memory; a fixed summation
     * order (the same bits every run). The head gradient's last step. */
    hs_status (*head_dot)(hs_backend *be, const void *a, const void *c, int B, int T, int H, int d, float *out,
                          hs_err *err);

    void (*destroy)(hs_backend *be);
} hs_backend_ops;

/* Every backend struct starts with this header. */
struct hs_backend {
    const hs_backend_ops *ops;
    hs_device_kind device;
    int device_index;
};

typedef struct {
    int n_threads; /* CPU: 0 = all cores */
    int device;    /* CUDA: device ordinal */
    hs_dtype dtype; /* CUDA: HS_DTYPE_BF16 (default) or HS_DTYPE_F32 */
} hs_backend_params;

hs_backend_params hs_backend_default_params(void);

/* The CPU reference backend (f32). */
hs_status hs_backend_cpu_init(const hs_backend_params *p, hs_backend **out, hs_err *err);
/* The CUDA backend; HS_ERR_DEVICE "no CUDA device" when none is visible, and
 * HS_ERR_UNSUPPORTED when built without CUDA. */
hs_status hs_backend_cuda_init(const hs_backend_params *p, hs_backend **out, hs_err *err);
/* Parses "cpu", "cuda", "cuda:N". */
hs_status hs_backend_init_by_name(const char *name, const hs_backend_params *p, hs_backend **out,
                                  hs_err *err);
/* Number of visible CUDA devices (0 when built without CUDA or none present). */
int hs_backend_cuda_device_count(void);
/* "NVIDIA H100 80GB HBM3, compute capability 9.0, 132 SMs" for device ordinal
 * device into buf; HS_ERR_DEVICE when there is no such device (or no CUDA). */
hs_status hs_backend_cuda_describe(int device, char *buf, size_t n, hs_err *err);
/* What decides the bits a backend computes, without the device index: two
 * backends with the same text give the same results for the same inputs, so a
 * result file can say whether all of its units agree (its computed_on
 * attribute). "cpu (f32; OpenBLAS 0.3.21 ... Zen MAX_THREADS=64)" (the BLAS
 * build and the kernels it picked for this CPU), or "cuda (bf16; NVIDIA H100
 * 80GB HBM3, compute capability 9.0, 132 SMs; cuBLAS 13.1.0; attention mma)". */
void hs_backend_identity(hs_backend *be, char *buf, size_t n);
/* "CUDA runtime 13.0, driver 13.0, cuBLAS 13.1.0" (driver "none" without one),
 * for a result file's provenance; "" when built without CUDA. Needs no GPU. */
void hs_backend_cuda_versions(char *buf, size_t n);
void hs_backend_free(hs_backend *be);

#ifdef __cplusplus
}
#endif
#endif
