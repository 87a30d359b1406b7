/* `headsweep info` and `headsweep forward`: inspect a model and run one
 * forward pass on given token ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "headsweep/hs_backend.h"
#include "headsweep/hs_forward.h"
#include "headsweep/hs_model.h"

static const char *arch_str(hs_arch a) {
    return a == HS_ARCH_GPT2 ? "gpt2" : a == HS_ARCH_NEOX ? "gpt_neox" : a == HS_ARCH_GEMMA ? "gemma"
           : a == HS_ARCH_PHI ? "phi" : a == HS_ARCH_GPTNEO ? "gpt_neo" : a == HS_ARCH_GPTJ ? "gptj"
           : a == HS_ARCH_OPT ? "opt" : a == HS_ARCH_BIGCODE ? "gpt_bigcode" : a == HS_ARCH_FALCON ? "falcon"
           : a == HS_ARCH_STABLELM ? "stablelm" : a == HS_ARCH_BLOOM ? "bloom"
           : a == HS_ARCH_MPT ? "mpt" : a == HS_ARCH_COHERE ? "cohere" : a == HS_ARCH_STARCODER2 ? "starcoder2"
                                                                                                : "llama";
}

static const char *act_str(hs_act_kind a) {
    return a == HS_ACT_GELU_NEW ? "gelu_new (tanh)" : a == HS_ACT_GELU ? "gelu (erf)" : a == HS_ACT_GELU_GLU ? "gelu-gated"
           : a == HS_ACT_RELU   ? "relu"
                                : "silu-gated";
}

int hs_cli_info(int argc, char **argv) {
    if (argc != 2 || !strcmp(argv[1], "--help")) {
        fprintf(argc == 2 ? stdout : stderr, "usage: headsweep info MODEL\n");
        return argc == 2 ? 0 : 2;
    }
    hs_err err = {0};
    hs_model *m = NULL;
    if (hs_model_load(argv[1], &m, &err) != HS_OK) {
        fprintf(stderr, "headsweep info: %s\n", err.msg);
        return 1;
    }
    const hs_model_config *c = hs_model_get_config(m);
    printf("file:          %s\n", hs_model_get_path(m));
    printf("format:        %s (%s)\n", hs_model_get_format(m), hs_model_get_source_dtypes(m));
    printf("architecture:  %s (%s)\n", c->arch_name, arch_str(c->arch));
    printf("layers:        %d\n", c->n_layers);
    printf("heads:         %d (kv heads %d)\n", c->n_heads, c->n_kv_heads);
    printf("d_model:       %d\n", c->d_model);
    printf("d_head:        %d\n", c->d_head);
    printf("d_mlp:         %d\n", c->d_mlp);
    printf("vocab:         %d\n", c->n_vocab);
    printf("context:       %d\n", c->n_ctx);
    if (c->sliding_window) {
        int n = 0;
        for (int l = 0; l < c->n_layers; l++) n += hs_model_layer_window(c, l) > 0;
        printf("window:        %d tokens in %d of %d layers\n", c->sliding_window, n, c->n_layers);
    }
    printf("norm:          %s (eps %g)%s\n",
           c->norm == HS_NORM_RMSNORM ? "rmsnorm" : c->norm == HS_NORM_RMSNORM_1P ? "rmsnorm, scaled by 1 + w" : "layernorm",
           (double)c->norm_eps,
           !c->qk_norm             ? ""
           : c->qk_norm_all        ? ", also on q and k (over all heads) before RoPE"
           : c->qk_norm_per_head ? ", also on each head's q and k before RoPE (weights per head)"
                                   : ", also on each head's q and k before RoPE");
    printf("mlp:           %s%s\n", act_str(c->act), c->parallel_attn_mlp ? ", parallel to attention" : "");
    if (c->post_norms)
        printf("post-norms:    on the attention's and the MLP's outputs%s\n",
               c->no_pre_norms ? " (their only norms: none before them)" : "");
    if (c->embed_scale > 0.0f) printf("embed scale:   %g\n", (double)c->embed_scale);
    if (c->embed_norm) printf("embed norm:    a LayerNorm on the embedding before layer 0\n");
    if (c->alibi) printf("positions:     ALiBi, per-head score biases (no position embedding)\n");
    if (c->attn_scale > 0.0f) printf("score scale:   %g\n", (double)c->attn_scale);
    if (c->clip_qkv > 0.0f) printf("clip_qkv:      q, k and v clamped to +-%g\n", (double)c->clip_qkv);
    if (c->logit_scale > 0.0f && c->logit_scale != 1.0f) printf("logit scale:   %g (folded into the final norm)\n", (double)c->logit_scale);
    if (c->residual_scale > 0.0f && c->residual_scale != 1.0f) printf("resid scale:   %g (folded into W_O and W_out)\n", (double)c->residual_scale);
    if (c->attn_softcap > 0.0f || c->final_softcap > 0.0f)
        printf("softcaps:      attention %g, logits %g (0 = none)\n", (double)c->attn_softcap, (double)c->final_softcap);
    if (c->rope != HS_ROPE_NONE)
        printf("rope:          theta %g, %d of %d dims per head%s\n", (double)c->rope_theta,
               c->rot_dim ? c->rot_dim : c->d_head, c->d_head, c->rope == HS_ROPE_NORMAL ? ", adjacent pairs" : "");
    if (c->rope != HS_ROPE_NONE && c->nope_every > 0 && c->nope_every <= c->n_layers) {
        printf("nope:          one layer in %d rotates nothing (layers", c->nope_every);
        for (int l = c->nope_every - 1, k = 0; l < c->n_layers; l += c->nope_every, k++)
            printf(k == 3 ? ", ..." : k > 3 ? "" : "%s %d", k ? "," : "", l);
        printf(")\n");
    }
    if (c->rope_scaling == HS_ROPE_SCALING_LINEAR)
        printf("rope scaling:  linear, factor %g\n", (double)c->rope_factor);
    else if (c->rope_scaling == HS_ROPE_SCALING_LLAMA3)
        printf("rope scaling:  llama3, factor %g, frequency factors %g..%g over %d original positions\n",
               (double)c->rope_factor, (double)c->rope_low_freq_factor, (double)c->rope_high_freq_factor,
               c->rope_original_ctx);
    else if (c->rope_scaling == HS_ROPE_SCALING_YARN)
        printf("rope scaling:  yarn, factor %g over %d original positions, betas %g / %g%s, attention factor %g\n",
               (double)c->rope_factor, c->rope_original_ctx, (double)c->rope_beta_fast, (double)c->rope_beta_slow,
               c->rope_truncate ? "" : " (not truncated)", (double)c->rope_attn_factor);
    else if (c->rope_scaling == HS_ROPE_SCALING_LONGROPE) {
        float lo = c->rope_long_factor[0], hi = lo;
        for (int i = 1; i < c->rope_n_factors; i++) {
            lo = c->rope_long_factor[i] < lo ? c->rope_long_factor[i] : lo;
            hi = c->rope_long_factor[i] > hi ? c->rope_long_factor[i] : hi;
        }
        printf("rope scaling:  longrope, %d short and %d long factors (long %g..%g) past %d positions, attention factor %g\n",
               c->rope_n_factors, c->rope_n_factors, (double)lo, (double)hi, c->rope_original_ctx,
               (double)c->rope_attn_factor);
    }
    if (c->rope_local_theta > 0.0f)
        printf("rope local:    theta %g, unscaled, on the sliding layers\n", (double)c->rope_local_theta);
    if (hs_model_get_weights(m)->rope_freq_factors) printf("rope scaling:  per-frequency factors (rope_freqs)\n");
    printf("tied unembed:  %s\n", c->tied_embeddings ? "yes" : "no");
    printf("parameters:    %lld (%.1f M)\n", (long long)hs_model_n_params(m), (double)hs_model_n_params(m) / 1e6);
    hs_model_free(m);
    return 0;
}

/* Parses "1,2,3" into a fresh array; returns the count or -1. */
static int parse_ids(const char *s, int32_t **out) {
    int cap = 16, n = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return -1;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 0x7fffffff) {
            free(ids);
            return -1;
        }
        if (n == cap) {
            int32_t *p = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (!p) {
                free(ids);
                return -1;
            }
            ids = p;
        }
        ids[n++] = (int32_t)v;
        s = end;
        if (*s == ',') s++;
        else if (*s) {
            free(ids);
            return -1;
        }
    }
    *out = ids;
    return n;
}

int hs_cli_forward(int argc, char **argv) {
    const char *model_path = NULL, *tokens = NULL, *device = "cpu";
    int top_k = 5, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = argv[++i];
        else if (!strcmp(argv[i], "--top-k") && i + 1 < argc) top_k = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--help")) {
            printf("usage: headsweep forward MODEL --tokens ID,ID,... [--top-k K] [--device cpu|cuda:N] [--threads N]\n");
            return 0;
        } else if (argv[i][0] != '-' && !model_path) model_path = argv[i];
        else {
            fprintf(stderr, "headsweep forward: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!model_path || !tokens) {
        fprintf(stderr, "usage: headsweep forward MODEL --tokens ID,ID,... [--top-k K] [--device D]\n");
        return 2;
    }
    int32_t *ids = NULL;
    int n = parse_ids(tokens, &ids);
    if (n <= 0) {
        fprintf(stderr, "headsweep forward: --tokens '%s': expected comma-separated non-negative integers\n", tokens);
        return 2;
    }
    int rc = 1;
    hs_err err = {0};
    hs_model *m = NULL;
    hs_backend *be = NULL;
    hs_session *s = NULL;
    float *logits = NULL;
    hs_backend_params bp = hs_backend_default_params();
    bp.n_threads = threads;
    if (hs_model_load(model_path, &m, &err) != HS_OK) goto fail;
    const hs_model_config *c = hs_model_get_config(m);
    if (top_k < 1 || top_k > c->n_vocab) top_k = 5;
    if (hs_backend_init_by_name(device, &bp, &be, &err) != HS_OK) goto fail;
    if (hs_session_init(be, m, 1, n, &s, &err) != HS_OK) goto fail;
    logits = malloc((size_t)c->n_vocab * sizeof *logits);
    if (!logits) {
        snprintf(err.msg, sizeof err.msg, "out of memory");
        goto fail;
    }
    hs_batch batch = {.B = 1, .T = n, .tokens = ids};
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = HS_LOGITS_LAST;
    if (hs_forward(s, &batch, &fp, logits, &err) != HS_OK) goto fail;
    printf("top-%d next tokens after %d input tokens (%s):\n", top_k, n, device);
    for (int k = 0; k < top_k; k++) { /* partial selection: k is small */
        int best = -1;
        for (int v = 0; v < c->n_vocab; v++)
            if (best < 0 || logits[v] > logits[best]) best = v;
        printf("  %2d  id %6d  logit %9.4f\n", k + 1, best, (double)logits[best]);
        logits[best] = -__builtin_inff();
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "headsweep forward: %s\n", err.msg);
done:
    free(logits);
    hs_session_free(s);
    hs_backend_free(be);
    hs_model_free(m);
    free(ids);
    return rc;
}
