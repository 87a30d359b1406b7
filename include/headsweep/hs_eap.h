/* hs_eap: edge attribution patching (Syed et al. 2023, "Attribution Patching
 * Outperforms Automated Circuit Discovery") and its integrated-gradients form
 * EAP-IG (Hanna et al. 2024, "Have Faith in Faithfulness"), on the graph
 * Hanna et al.'s library builds on TransformerLens with split q/k/v inputs.
 * EAP-IG's steps end at the clean input (k = 1..m below), as the paper
 * writes the sum; versions of the library's loop run k = 0..m-1 instead.
 *
 * The graph: upstream nodes write to the residual stream, downstream nodes
 * read it. Upstream, in this order: the input (resid_pre of layer 0), then
 * per layer its heads' results (z_h W_O_h, TransformerLens's hook_result) and
 * its MLP's output. Downstream: per layer each head's q input, each KV head's
 * k and v input (the residual stream as that one projection reads it, before
 * the layer's norm: hook_q_input, hook_k_input, hook_v_input), the MLP's input
 * (hook_mlp_in), and at the end the logits (the final resid_post, before the
 * final norm). An edge joins an upstream node to every downstream node after
 * it: heads and MLPs of earlier layers, the input, and for the MLP of a
 * sequential block its own layer's heads.
 *
 * The score of an edge u -> v for one prompt is
 *     sum over positions t of (a_u(corrupt) - a_u(clean))[t] . g_v[t],
 * g_v = dM/d(input of v), the gradient of the metric at the clean run (EAP);
 * EAP-IG averages g_v over m runs whose input is corrupt + k/m (clean -
 * corrupt), k = 1..m (m = 1 is EAP). A positive score: corrupting the edge
 * raises the metric. Scores are averaged over prompts by the caller. */
#ifndef HS_EAP_H
#define HS_EAP_H

#include <stdint.h>

#include "headsweep/hs_ablation.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    hs_metric metric; /* LOGIT_DIFF, LOGPROB, LOSS (mean next-token NLL), or KL to
                         the clean run (EAP-IG only) */
    int batch_rows;   /* prompts per forward pass, >= 1 */
    int ig_steps;     /* 1: EAP; m > 1: EAP-IG with m steps */
} hs_eap_params;

hs_eap_params hs_eap_default_params(void);

/* Node counts: 1 + L (H + 1) upstream, L (H + 2 H_kv + 1) + 1 downstream. */
int hs_eap_n_upstream(const hs_model_config *c);
int hs_eap_n_downstream(const hs_model_config *c);
/* "input", "L3H5", "MLP3"; and "L3H5<q>", "L3H5<k>" (GQA: "L3KV1<k>", the KV
 * head), "L3H5<v>", "MLP3", "logits". */
void hs_eap_upstream_name(const hs_model_config *c, int u, char *buf, size_t n);
void hs_eap_downstream_name(const hs_model_config *c, int v, char *buf, size_t n);
/* 1 when upstream node u writes before downstream node v reads. */
int hs_eap_is_edge(const hs_model_config *c, int u, int v);

/* The model and parameters suit EAP: no post-norms (a block would add a normed
 * output, not a sum of head results), no clamped projections; a metric with
 * a gradient (KL's is zero at the clean run: EAP-IG only). c may be NULL:
 * the parameters alone (a config checked before the model is loaded). */
hs_status hs_eap_check(const hs_model_config *c, const hs_eap_params *p, hs_err *err);

/* For prompts [p0, p0 + n) of pr (right-padded; corrupt [N, T] their
 * corrupted tokens, the same lengths), in batches of p->batch_rows: adds each
 * prompt's edge scores to sum [U, V] (only edges; others untouched), its
 * clean metric to *clean_sum and its corrupted metric to *corrupt_sum. Each
 * prompt's scores are summed in double and added in prompt order: the same
 * batches give the same bits, whoever runs them. The metric's loss and
 * answers are the clean prompt's. Needs the backend's backward ops. */
hs_status hs_eap_scores(hs_session *s, const hs_prompts *pr, const int32_t *corrupt, const hs_eap_params *p, int p0,
                        int n, double *sum, double *clean_sum, double *corrupt_sum, hs_err *err);

/* Circuit evaluation (Hanna et al.'s evaluate_graph with patching): the
 * metric of the model run on the clean prompt with only a circuit's edges
 * intact. Every other edge u -> v carries the corrupted run's activation:
 * node v reads the residual stream plus a_u(corrupt) - a_u(this run) for
 * each upstream u outside the circuit (its own copy of the stream: split
 * inputs, hs_input_hooks), a_u(this run) being what u computes in this
 * intervened run. A circuit of every edge is the clean run and the empty
 * one the corrupted run, bit for bit. Edges whose upstream node is cut off
 * from the input, or whose downstream node cannot reach the logits, change
 * nothing (to rounding). Needs the backend's backward ops (matmul_bwd). */
typedef struct {
    hs_metric metric; /* logit_diff, logprob, loss, kl or accuracy; the loss and answers are the
                         clean prompt's, KL is to the clean run */
    int batch_rows;   /* prompts per forward pass, >= 1 */
    /* n_circuits masks [U, V] (host): nonzero = the edge is in the circuit;
     * entries that are not edges (hs_eap_is_edge) are ignored */
    const uint8_t *const *circuits;
    int n_circuits;
} hs_eap_circuit_params;

/* The model suits the graph (as hs_eap_check) and p is well formed; either
 * may be NULL (the other alone). */
hs_status hs_eap_circuit_check(const hs_model_config *c, const hs_eap_circuit_params *p, hs_err *err);

/* For prompts [p0, p0 + n) of pr (right-padded; corrupt [N, T] their
 * corrupted tokens, the same lengths): metric [n, n_circuits] each prompt's
 * metric with each circuit, clean [n] and corrupted [n] its metric on the
 * clean and on the corrupted prompt (either may be NULL). On failure the
 * batches before the failing one have written theirs. */
hs_status hs_eap_circuit(hs_session *s, const hs_prompts *pr, const int32_t *corrupt, const hs_eap_circuit_params *p,
                         int p0, int n, float *metric, float *clean, float *corrupted, hs_err *err);

#ifdef __cplusplus
}
#endif
#endif
