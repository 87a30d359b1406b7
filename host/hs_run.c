/* hs_run: config -> model, backends, dataset -> units of work (sharded,
 * journaled, spread over workers) -> one HDF5 result or shard file.
 * Options the engine does not implement yet are refused up front with a
 * message naming the experiment and key, never silently ignored. */
#include "headsweep/hs_run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "headsweep/hs_dataset.h"
#include "headsweep/hs_sha256.h"
#include "hs_run_internal.h"

hs_run_params hs_run_default_params(void) {
    hs_run_params p;
    memset(&p, 0, sizeof p);
    return p;
}

static hs_status unsupported(hs_err *err, const hs_config_experiment *e, const char *what) {
    return hs_err_set(err, HS_ERR_UNSUPPORTED, "experiment '%s' (%s): %s is not implemented yet", e->name,
                      hs_config_exp_type_name(e->type), what);
}

/* Everything this engine cannot do yet, before any work starts. */
static hs_status check_supported(const hs_config *cfg, int shard_count, hs_err *err) {
    for (int i = 0; i < cfg->n_experiments; i++) {
        const hs_config_experiment *e = &cfg->experiments[i];
        switch (e->type) {
        case HS_CONFIG_EXP_HEAD_ABLATION:
            if ((e->metric == HS_CONFIG_METRIC_LOSS) != (e->positions == HS_CONFIG_POSITIONS_ALL) ||
                e->positions == HS_CONFIG_POSITIONS_ANSWER)
                return unsupported(err, e, "these metric positions (loss reads all positions, other metrics the last)");
            break;
        case HS_CONFIG_EXP_HEAD_SCORES:
            if (!e->layers.all || !e->heads.all) return unsupported(err, e, "a subset of layers or heads");
            break;
        case HS_CONFIG_EXP_PRUNING_CURVE:
            if (e->importance.experiment && shard_count > 1)
                return hs_err_set(err, HS_ERR_UNSUPPORTED,
                                  "experiment '%s': importance from experiment '%s' needs every prompt's ablation, which "
                                  "a shard does not have; run the ablation sharded, merge, then point importance at "
                                  "the merged file (importance: FILE:/%s/delta_mean)",
                                  e->name, e->importance.experiment, e->importance.experiment);
            if (e->mode != HS_CONFIG_MODE_ZERO) return unsupported(err, e, "pruning by a mode other than zero");
            if ((e->metric == HS_CONFIG_METRIC_LOSS) != (e->positions == HS_CONFIG_POSITIONS_ALL))
                return unsupported(err, e, "these metric positions");
            break;
        case HS_CONFIG_EXP_HEAD_SET_ABLATION:
            if ((e->metric == HS_CONFIG_METRIC_LOSS) !=
                    (e->positions == HS_CONFIG_POSITIONS_ALL || e->positions == HS_CONFIG_POSITIONS_SECOND_HALF) ||
                e->positions == HS_CONFIG_POSITIONS_ANSWER)
                return unsupported(err, e, "these metric positions");
            if (e->importance.experiment && shard_count > 1)
                return hs_err_set(err, HS_ERR_UNSUPPORTED,
                                  "experiment '%s': a ranking from experiment '%s' needs every prompt, which a shard "
                                  "does not have; merge that experiment first and rank from the merged file",
                                  e->name, e->importance.experiment);
            break;
        case HS_CONFIG_EXP_CAPTURE:
        case HS_CONFIG_EXP_CIRCUIT_SCORES: break;
        case HS_CONFIG_EXP_EDGE_ATTRIBUTION: { /* the parameters; the model's refusals in check_model_fits */
            const hs_eap_params p = hs_run_eap_params(cfg, e);
            hs_status st = hs_eap_check(NULL, &p, err);
            if (st) return hs_err_prefix(err, "experiment '%s'", e->name), st;
            break;
        }
        case HS_CONFIG_EXP_CIRCUIT_FAITHFULNESS:
            if (e->edges_from.experiment && shard_count > 1)
                return hs_err_set(err, HS_ERR_UNSUPPORTED,
                                  "experiment '%s': edges from experiment '%s' need every prompt's scores, which a "
                                  "shard does not have; run the edge attribution sharded, merge, then point "
                                  "edges_from at the merged file (edges_from: FILE:/%s/edges)",
                                  e->name, e->edges_from.experiment, e->edges_from.experiment);
            if (e->metric != HS_CONFIG_METRIC_LOGIT_DIFF && e->metric != HS_CONFIG_METRIC_LOGPROB &&
                e->metric != HS_CONFIG_METRIC_LOSS && e->metric != HS_CONFIG_METRIC_KL &&
                e->metric != HS_CONFIG_METRIC_ACCURACY)
                return hs_err_set(err, HS_ERR_UNSUPPORTED,
                                  "experiment '%s' (circuit_faithfulness): metric %s does not apply; use logit_diff, "
                                  "logprob, loss, kl or accuracy",
                                  e->name, hs_config_metric_name(e->metric));
            break;
        case HS_CONFIG_EXP_DLA:
            if (e->metric != HS_CONFIG_METRIC_LOGIT_DIFF && e->metric != HS_CONFIG_METRIC_LOGIT)
                return hs_err_set(err, HS_ERR_UNSUPPORTED,
                                  "experiment '%s' (direct_logit_attribution): metric %s is not linear in the "
                                  "residual; the direct effect is defined on logits (metric logit_diff or logit)",
                                  e->name, hs_config_metric_name(e->metric));
            if (e->positions == HS_CONFIG_POSITIONS_ANSWER)
                return hs_err_set(err, HS_ERR_UNSUPPORTED,
                                  "experiment '%s' (direct_logit_attribution): positions answer: it reads after the "
                                  "last token (last) or each position's next token (all, second_half)",
                                  e->name);
            if (e->positions != HS_CONFIG_POSITIONS_LAST && e->metric != HS_CONFIG_METRIC_LOGIT)
                return hs_err_set(err, HS_ERR_UNSUPPORTED,
                                  "experiment '%s' (direct_logit_attribution): positions %s score each position's "
                                  "next token, metric logit (not %s)",
                                  e->name, hs_config_positions_name(e->positions), hs_config_metric_name(e->metric));
            break;
        case HS_CONFIG_EXP_HEAD_IMPORTANCE:
            if (e->metric == HS_CONFIG_METRIC_KL || e->metric == HS_CONFIG_METRIC_ACCURACY)
                return hs_err_set(err, HS_ERR_UNSUPPORTED,
                                  "experiment '%s' (head_importance): metric %s has no useful gradient (KL to the "
                                  "unmasked model is flat there, accuracy is a step); use loss, logit_diff, logprob or "
                                  "logit",
                                  e->name, hs_config_metric_name(e->metric));
            break;
        case HS_CONFIG_EXP_ACTIVATION_PATCHING:
            if (!e->layers.all || !e->heads.all) return unsupported(err, e, "a subset of layers or heads");
            if ((e->metric == HS_CONFIG_METRIC_LOSS) != (e->positions == HS_CONFIG_POSITIONS_ALL) ||
                e->positions == HS_CONFIG_POSITIONS_ANSWER)
                return unsupported(err, e, "these metric positions (loss reads all positions, other metrics the last)");
            if (e->method == HS_CONFIG_METHOD_ATTRIBUTION && e->metric == HS_CONFIG_METRIC_ACCURACY)
                return hs_err_set(err, HS_ERR_UNSUPPORTED,
                                  "experiment '%s' (activation_patching): method attribution needs a gradient, and "
                                  "metric accuracy has none (use logit_diff, logprob, kl or loss, or method exact)",
                                  e->name);
            break;
        default: return unsupported(err, e, "this experiment type");
        }
    }
    return HS_OK;
}

/* The prompt set of cfg->dataset. Text needs the model's tokenizer (from its
 * GGUF or folder); a JSONL file of token ids works without one. */
static hs_status build_dataset(const hs_config *cfg, const hs_model *m, hs_dataset **out, hs_err *err) {
    const hs_config_dataset *ds = &cfg->dataset;
    const hs_model_config *c = hs_model_get_config(m);
    const char *kind = hs_config_dataset_kind_name(ds->kind);
    hs_status st = HS_OK;
    if (ds->kind == HS_CONFIG_DATASET_INDUCTION) {
        st = hs_dataset_induction(c, ds->n, ds->seq_len, ds->token_min, ds->token_max, cfg->seed, out, err);
    } else {
        hs_tokenizer *tok = NULL;
        hs_err tok_err = {0};
        hs_status tst = hs_tokenizer_load(hs_model_get_path(m), &tok, &tok_err);
        if (tst && ds->kind != HS_CONFIG_DATASET_FILE)
            return hs_err_set(err, tst, "dataset '%s' needs the model's tokenizer: %s", kind, tok_err.msg);
        int lengths[HS_CONFIG_MAX_LIST];
        for (int i = 0; i < ds->lengths.n; i++) lengths[i] = ds->lengths.v[i];
        switch (ds->kind) {
        case HS_CONFIG_DATASET_FILE: st = hs_dataset_load_jsonl(ds->file, tok, c, ds->max_len, out, err); break;
        case HS_CONFIG_DATASET_IOI:
            st = hs_dataset_ioi(tok, c, ds->n, cfg->seed,
                                ds->templates == HS_CONFIG_IOI_BABA   ? HS_DATASET_IOI_BABA
                                : ds->templates == HS_CONFIG_IOI_ABBA ? HS_DATASET_IOI_ABBA
                                                                      : HS_DATASET_IOI_ALL,
                                out, err);
            break;
        case HS_CONFIG_DATASET_TEXT:
            st = hs_dataset_text(tok, c, ds->corpus, ds->seq_len, ds->windows, ds->window_bos, out, err);
            break;
        default:
            st = hs_dataset_needle(tok, c, ds->haystack, ds->needle, ds->question, ds->answer, ds->depths.v, ds->depths.n,
                                   lengths, ds->lengths.n, cfg->seed, out, err);
        }
        if (st && !tok && err) { /* say why there was no tokenizer */
            char msg[HS_ERR_MSG_MAX];
            snprintf(msg, sizeof msg, "%.600s (no tokenizer: %.380s)", err->msg, tok_err.msg);
            memcpy(err->msg, msg, sizeof msg);
        }
        hs_tokenizer_free(tok);
    }
    if (st == HS_OK && ds->max_len > 0 && (*out)->T > ds->max_len) {
        st = hs_err_set(err, HS_ERR_INVALID_ARG, "dataset '%s': prompts of %d tokens exceed max_len %d", kind, (*out)->T,
                        ds->max_len);
        hs_dataset_free(*out);
        *out = NULL;
    }
    return st;
}

/* The hooks a capture asks for exist in this model; checked before the
 * journal is opened, so a refused run leaves nothing behind. */
static hs_status check_model_fits(const hs_config *cfg, const hs_model_config *c, hs_err *err) {
    for (int i = 0; i < cfg->n_experiments; i++) {
        const hs_config_experiment *e = &cfg->experiments[i];
        if (e->type == HS_CONFIG_EXP_DLA && (c->post_norms || c->final_softcap > 0.0f))
            return hs_err_set(err, HS_ERR_UNSUPPORTED,
                              "experiment '%s' (direct_logit_attribution): the model %s, so its heads' direct "
                              "effects do not add up to the metric",
                              e->name, c->post_norms ? "normalises the attention's and MLP's outputs (post-norms)"
                                                     : "soft-caps its logits");
        if (e->type == HS_CONFIG_EXP_EDGE_ATTRIBUTION || e->type == HS_CONFIG_EXP_CIRCUIT_FAITHFULNESS) {
            const hs_eap_params p = hs_run_eap_params(cfg, e); /* the edge graph's refusals */
            hs_status st = e->type == HS_CONFIG_EXP_EDGE_ATTRIBUTION ? hs_eap_check(c, &p, err)
                                                                      : hs_eap_circuit_check(c, NULL, err);
            if (st) return hs_err_prefix(err, "experiment '%s'", e->name), st;
        }
        if (e->type != HS_CONFIG_EXP_CAPTURE) continue;
        if (c->rope == HS_ROPE_NONE && (e->hooks & (HS_CONFIG_BIT(HS_HOOK_ROT_Q) | HS_CONFIG_BIT(HS_HOOK_ROT_K))))
            return hs_err_set(err, HS_ERR_INVALID_ARG,
                              "experiment '%s': hooks rot_q/rot_k: the model has no rotary embedding", e->name);
        if (c->parallel_attn_mlp && (e->hooks & HS_CONFIG_BIT(HS_HOOK_RESID_MID)))
            return hs_err_set(err, HS_ERR_INVALID_ARG,
                              "experiment '%s': hook resid_mid: the model's attention and MLP run in parallel (both "
                              "read resid_pre), so there is no resid_mid",
                              e->name);
        if (!hs_act_gated(c->act) && (e->hooks & HS_CONFIG_BIT(HS_HOOK_MLP_PRE_LINEAR)))
            return hs_err_set(err, HS_ERR_INVALID_ARG, "experiment '%s': hook mlp_pre_linear: the model's MLP is not gated",
                              e->name);
    }
    return HS_OK;
}

/* What each experiment reads from the dataset is there (a JSONL file may lack it). */
static hs_status check_dataset_fits(const hs_config *cfg, const hs_dataset *d, hs_err *err) {
    for (int i = 0; i < cfg->n_experiments; i++) {
        const hs_config_experiment *e = &cfg->experiments[i];
        const int metric = e->type == HS_CONFIG_EXP_HEAD_ABLATION || e->type == HS_CONFIG_EXP_ACTIVATION_PATCHING ||
                           e->type == HS_CONFIG_EXP_PRUNING_CURVE || e->type == HS_CONFIG_EXP_HEAD_SET_ABLATION ||
                           e->type == HS_CONFIG_EXP_HEAD_IMPORTANCE || e->type == HS_CONFIG_EXP_DLA ||
                           e->type == HS_CONFIG_EXP_EDGE_ATTRIBUTION || e->type == HS_CONFIG_EXP_CIRCUIT_FAITHFULNESS;
        const int recall = e->type == HS_CONFIG_EXP_HEAD_SET_ABLATION && e->metric == HS_CONFIG_METRIC_NEEDLE_RECALL;
        const char *missing = NULL;
        if (recall && (!d->needle_start || !d->needle_len))
            missing = "needle spans (needle_start, needle_len)";
        else if (metric && !recall && e->metric != HS_CONFIG_METRIC_LOSS && e->metric != HS_CONFIG_METRIC_KL &&
                 !(e->type == HS_CONFIG_EXP_DLA && e->positions != HS_CONFIG_POSITIONS_LAST) && !d->answer)
            missing = "answers";
        else if (metric && e->metric == HS_CONFIG_METRIC_LOGIT_DIFF && !d->distractor)
            missing = "distractors";
        else if ((e->type == HS_CONFIG_EXP_ACTIVATION_PATCHING || e->type == HS_CONFIG_EXP_EDGE_ATTRIBUTION ||
                  e->type == HS_CONFIG_EXP_CIRCUIT_FAITHFULNESS ||
                  e->mode == HS_CONFIG_MODE_PATCH) &&
                 !d->corrupt_tokens)
            missing = "corrupt prompts";
        else if (e->mode == HS_CONFIG_MODE_MEAN && e->mean_over == HS_CONFIG_MEAN_OVER_TEMPLATE && !d->template_id)
            missing = "template ids";
        else if (e->type == HS_CONFIG_EXP_HEAD_SCORES && (e->scores & HS_CONFIG_BIT(HS_CONFIG_SCORE_RETRIEVAL)) &&
                 (!d->needle_start || !d->needle_len))
            missing = "needle spans (needle_start, needle_len)";
        else if (e->mode == HS_CONFIG_MODE_RESAMPLE && d->N < 2)
            missing = "a second prompt to resample from";
        if (missing)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "experiment '%s' needs %s and the dataset (%s) has none", e->name,
                              missing, hs_config_dataset_kind_name(cfg->dataset.kind));
    }
    return HS_OK;
}

/* An environment variable as a non-negative int; -1 if unset, -2 if malformed. */
static int env_int(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) return -1;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    return (*end || errno || x < 0 || x > 1000000) ? -2 : (int)x;
}

hs_status hs_run_shard(const hs_config *cfg, int *index, int *count, hs_err *err) {
    *index = 0, *count = 1;
    if (cfg->shard.set) {
        *index = cfg->shard.index, *count = cfg->shard.count;
        return HS_OK;
    }
    const char *pairs[2][3] = {{"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"},
                               {"SLURM_PROCID", "SLURM_NTASKS", NULL}};
    for (int k = 0; k < 2; k++) {
        int i = env_int(pairs[k][0]), n = env_int(pairs[k][1]), base = pairs[k][2] ? env_int(pairs[k][2]) : 0;
        if (i == -1 && n == -1) continue;
        if (base == -1) base = 0;
        if (i < 0 || n < 1 || base < 0 || i - base < 0 || i - base >= n)
            return hs_err_set(err, HS_ERR_INVALID_ARG, "shard from the environment: %s=%s, %s=%s%s%s do not make a shard i/n",
                              pairs[k][0], getenv(pairs[k][0]) ? getenv(pairs[k][0]) : "(unset)", pairs[k][1],
                              getenv(pairs[k][1]) ? getenv(pairs[k][1]) : "(unset)", pairs[k][2] ? ", min " : "",
                              pairs[k][2] && getenv(pairs[k][2]) ? getenv(pairs[k][2]) : "");
        *index = i - base, *count = n;
        return HS_OK;
    }
    return HS_OK;
}

void hs_run_shard_path(const hs_config *cfg, int index, int count, char *out, size_t n) {
    if (count <= 1) {
        snprintf(out, n, "%s", cfg->output);
        return;
    }
    size_t len = strlen(cfg->output);
    if (len >= 3 && !strcmp(cfg->output + len - 3, ".h5")) len -= 3;
    snprintf(out, n, "%.*s.shard-%05d-of-%05d.h5", (int)len, cfg->output, index, count);
}

/* One backend and session per worker: workers_per_device of them on the
 * CPU, or on each listed or visible GPU. */
static hs_status open_workers(const hs_config *cfg, const hs_run_params *rp, hs_model *m, int T, hs_run_worker **out,
                              int *n_out, char *desc, size_t n, hs_err *err) {
    int ids[HS_CONFIG_MAX_DEVICES], nd = 1, per = rp->workers_per_device > 1 ? rp->workers_per_device : 1;
    hs_status st = HS_OK;
    if (cfg->device.kind == HS_CONFIG_DEVICE_CPU) {
        if (cfg->dtype != HS_DTYPE_F32)
            return hs_err_set(err, HS_ERR_UNSUPPORTED, "dtype %s: the CPU backend computes in f32 only",
                              hs_dtype_name(cfg->dtype));
        snprintf(desc, n, "cpu");
    } else if (cfg->device.kind == HS_CONFIG_DEVICE_CUDA) {
        nd = cfg->device.n;
        memcpy(ids, cfg->device.ids, (size_t)nd * sizeof *ids);
    } else {
        nd = hs_backend_cuda_device_count();
        if (nd < 1) { /* say why: no device, a driver too old for the runtime, a build without CUDA */
            char unused[8];
            hs_err why = {0};
            hs_backend_cuda_describe(0, unused, sizeof unused, &why);
            return hs_err_set(err, HS_ERR_DEVICE, "device: all: no CUDA device (%s)", why.msg);
        }
        if (nd > HS_CONFIG_MAX_DEVICES) nd = HS_CONFIG_MAX_DEVICES;
        for (int i = 0; i < nd; i++) ids[i] = i;
    }
    if (cfg->device.kind != HS_CONFIG_DEVICE_CPU) {
        /* cuBLAS promises the same bits only on one GPU model: units spread over two models would
         * make the results depend on which device ran which unit. */
        char first[160], other[160];
        if ((st = hs_backend_cuda_describe(ids[0], first, sizeof first, err))) return st;
        for (int i = 1; i < nd; i++) {
            if ((st = hs_backend_cuda_describe(ids[i], other, sizeof other, err))) return st;
            if (strcmp(first, other))
                return hs_err_set(err, HS_ERR_UNSUPPORTED,
                                  "device: cuda:%d (%s) and cuda:%d (%s) differ: results would depend on which GPU "
                                  "ran which unit; list GPUs of one model", ids[0], first, ids[i], other);
        }
        size_t len = (size_t)snprintf(desc, n, "cuda:");
        for (int i = 0; i < nd && len < n; i++) len += (size_t)snprintf(desc + len, n - len, "%s%d", i ? "," : "", ids[i]);
        if (len < n) snprintf(desc + len, n - len, " (%s; %s)", hs_dtype_name(cfg->dtype), first);
    }
    int nw = nd * per;
    hs_run_worker *w = calloc((size_t)nw, sizeof *w);
    if (!w) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    *out = w, *n_out = nw;
    for (int i = 0; i < nw; i++) {
        hs_backend_params bp = hs_backend_default_params();
        bp.n_threads = cfg->threads;
        bp.dtype = cfg->dtype;
        if (cfg->device.kind == HS_CONFIG_DEVICE_CPU) {
            HS_CHECK(hs_backend_cpu_init(&bp, &w[i].be, err));
        } else {
            bp.device = ids[i / per];
            HS_CHECK(hs_backend_cuda_init(&bp, &w[i].be, err));
        }
        if ((st = hs_session_init(w[i].be, m, cfg->batch_size, T, &w[i].session, err))) {
            /* each worker holds its own copy of the weights and scratch */
            if (nw > 1 && st == HS_ERR_OOM)
                hs_err_prefix(err, "worker %d of %d (workers_per_device %d, each with its own copy of the weights)",
                              i + 1, nw, per);
            goto exit;
        }
        hs_session_set_backward_keep_bytes(w[i].session, (int64_t)cfg->backward_memory_mb << 20);
    }
exit:
    return st;
}

static void close_workers(hs_run_worker *w, int n) {
    for (int i = 0; w && i < n; i++) {
        hs_session_free(w[i].session);
        hs_backend_free(w[i].be);
    }
    free(w);
}

static hs_status write_output(hs_run_ctx *x, const char *path, const char *text, const char *device,
                              const char *sweep_sha, hs_err *err) {
    hs_h5 *f = NULL;
    hs_status st = HS_OK;
    HS_CHECK(hs_h5_create(path, x->cfg->overwrite, &f, err));
    HS_CHECK(hs_run_write_header(x, f, text, device, err));
    if (x->shard_count > 1) {
        HS_CHECK(hs_run_write_shard(x, f, sweep_sha, err));
    } else {
        for (int i = 0; i < x->cfg->n_experiments; i++) {
            hs_h5_group *g;
            HS_CHECK(hs_h5_group_open(f, x->cfg->experiments[i].name, &g, err));
            st = hs_run_write(x->cfg, i, &x->exps[i], g, err);
            if (st) {
                hs_err_prefix(err, "experiment '%s'", x->cfg->experiments[i].name);
                goto exit;
            }
        }
    }
    st = hs_h5_commit(f, err);
    f = NULL; /* commit frees the handle either way */
exit:
    if (f) hs_h5_abort(f);
    return st;
}

hs_status hs_run(const hs_config *cfg, const char *config_text, const hs_run_params *rp, hs_err *err) {
    hs_status st = HS_OK;
    hs_run_params defaults = hs_run_default_params();
    hs_run_ctx x;
    memset(&x, 0, sizeof x);
    pthread_mutex_init(&x.lock, NULL);
    x.cfg = cfg;
    x.rp = rp ? rp : &defaults;
    hs_run_worker *w = NULL;
    int nw = 0;
    char device[600], path[4200], jpath[4300], sweep_sha[HS_SHA256_HEX_LEN + 1], journal_sha[HS_SHA256_HEX_LEN + 1];
    char *sweep = NULL;
    struct stat sb;
    HS_CHECK(hs_run_shard(cfg, &x.shard_index, &x.shard_count, err));
    HS_CHECK(check_supported(cfg, x.shard_count, err));
    hs_run_shard_path(cfg, x.shard_index, x.shard_count, path, sizeof path);
    if (!cfg->overwrite && stat(path, &sb) == 0)
        HS_FAIL(err, HS_ERR_INVALID_ARG, "%s exists; pass --overwrite to replace it", path);
    HS_CHECK(hs_config_sweep_yaml(cfg, &sweep, err));
    hs_sha256_hex(sweep, strlen(sweep), sweep_sha);
    {
        char tag[64];
        hs_sha256_ctx h;
        uint8_t d[HS_SHA256_BYTES];
        snprintf(tag, sizeof tag, "\nshard: %d/%d\n", x.shard_index, x.shard_count);
        hs_sha256_init(&h);
        hs_sha256_update(&h, sweep, strlen(sweep));
        hs_sha256_update(&h, tag, strlen(tag));
        hs_sha256_final(&h, d);
        hs_sha256_to_hex(d, journal_sha);
    }
    HS_CHECK(hs_model_load(cfg->model, &x.model, err));
    HS_CHECK(check_model_fits(cfg, hs_model_get_config(x.model), err));
    HS_CHECK(build_dataset(cfg, x.model, &x.data, err));
    HS_CHECK(check_dataset_fits(cfg, x.data, err));
    x.prompts = hs_dataset_prompts(x.data);
    int session_T = x.prompts.T;
    for (int i = 0; i < cfg->n_experiments; i++) { /* greedy decoding: room for the context to grow without a KV cache */
        const hs_config_experiment *e = &cfg->experiments[i];
        if ((e->type == HS_CONFIG_EXP_HEAD_SCORES && (e->scores & HS_CONFIG_BIT(HS_CONFIG_SCORE_RETRIEVAL))) ||
            (e->type == HS_CONFIG_EXP_HEAD_SET_ABLATION && e->metric == HS_CONFIG_METRIC_NEEDLE_RECALL))
            session_T = x.prompts.T + HS_RUN_RETRIEVAL_TOKENS - 1;
    }
    HS_CHECK(open_workers(cfg, x.rp, x.model, session_T, &w, &nw, device, sizeof device, err));
    hs_backend_identity(w[0].be, x.ident, sizeof x.ident); /* one GPU model per run: every worker's */
    if (!(x.exps = calloc((size_t)cfg->n_experiments, sizeof *x.exps))) HS_FAIL(err, HS_ERR_OOM, "run: out of memory");
    int64_t n_batches;
    HS_CHECK(hs_run_plan_units(&x, &n_batches, err));
    snprintf(jpath, sizeof jpath, "%s.journal", path);
    if (n_batches > 0) {
        HS_CHECK(hs_journal_open(jpath, journal_sha, n_batches, &x.journal, err));
        HS_CHECK(hs_journal_foreach(x.journal, hs_run_replay, &x, err));
    }
    /* this run computes the sweep's constants (rankings, mean activations) even when the journal holds every unit */
    hs_run_computed_on_add(x.computed_on, sizeof x.computed_on, x.ident);
    for (int phase = 0; phase < 2; phase++) HS_CHECK(hs_run_phase(&x, phase, w, nw, err));
    if (x.stop) {
        HS_FAIL(err, HS_ERR_INTERRUPTED, "interrupted: %lld of %lld units done, kept in %s; run again to resume",
                (long long)(x.journal ? hs_journal_n_done(x.journal) : 0), (long long)n_batches, jpath);
    }
    HS_CHECK(write_output(&x, path, config_text, device, sweep_sha, err));
    if (x.journal) {
        hs_journal_close(x.journal);
        x.journal = NULL;
        HS_CHECK(hs_journal_remove(jpath, err));
    }
exit:
    hs_journal_close(x.journal);
    for (int i = 0; x.exps && i < cfg->n_experiments; i++) hs_run_exp_free(&x.exps[i]);
    free(x.exps);
    close_workers(w, nw);
    hs_dataset_free(x.data);
    hs_model_free(x.model);
    free(sweep);
    pthread_mutex_destroy(&x.lock);
    return st;
}
