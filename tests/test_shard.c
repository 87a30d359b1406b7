/* Scale-out: shards merged, resumed runs (progress stop and kill -9) and
 * several workers all give the unsharded run's file bit for bit, on the CPU
 * and (with a device) on CUDA in bf16; merge refuses incomplete or mixed
 * shard sets and writes nothing then. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "headsweep/hs_config.h"
#include "headsweep/hs_h5.h"
#include "headsweep/hs_journal.h"
#include "headsweep/hs_run.h"
#include "hs_backend_cuda.h"
#include "hs_testutil.h"

static char dir[64];

static void make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/hs_test_shard_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void) {
    hs_test_remove_dir(dir);
}

/* 11 prompts of token ids with answers, distractors and corrupted copies. */
static void write_jsonl(const char *path) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    hs_test_rng r;
    hs_test_rng_seed(&r, 11);
    for (int i = 0; i < 11; i++) {
        int t[6];
        for (int k = 0; k < 6; k++) t[k] = 3 + (int)(hs_test_rng_u64(&r) % 200);
        fprintf(f, "{\"tokens\": [%d, %d, %d, %d, %d, %d], \"corrupt\": [%d, %d, %d, %d, %d, %d], \"answer\": %d, "
                   "\"distractor\": %d}\n",
                t[0], t[1], t[2], t[3], t[4], t[5], t[0], t[1], (t[2] + 7) % 200 + 3, t[3], t[4], t[5], t[2], t[1]);
    }
    fclose(f);
}

/* Every experiment type that shards, two of them over a JSONL dataset. */
static void write_config(const char *path, const char *out, const char *importance, const char *model_name) {
    char model[1024], data[256], rel[128];
    snprintf(rel, sizeof rel, "models/%s", model_name);
    hs_test_fixture_path(model, sizeof model, rel);
    snprintf(data, sizeof data, "%s/data.jsonl", dir);
    write_jsonl(data);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "model: %s\nseed: 3\nbatch_size: 12\noutput: %s\n"
            "dataset:\n  file: %s\n"
            "experiments:\n"
            "  - name: abl\n    type: head_ablation\n    metric: logit_diff\n    positions: last\n    mode: mean\n"
            "    whole_layers: true\n    all_but_one: true\n"
            "  - name: res\n    type: head_ablation\n    mode: resample\n    metric: loss\n"
            "  - name: patch\n    type: activation_patching\n    metric: logit_diff\n    positions: last\n"
            "    targets: [z_all_pos, z_by_pos, resid_pre, attn_out, mlp_out, k_all_pos, path_logits, path_heads]\n"
            "    receivers: [L2H1, L1H0]\n"
            "  - name: atp\n    type: activation_patching\n    method: attribution\n    metric: kl\n    positions: last\n"
            "    targets: [z_all_pos, resid_pre, attn_out, mlp_out, q_all_pos, k_all_pos, v_all_pos]\n"
            "  - name: atpgd\n    type: activation_patching\n    method: attribution\n    grad_drop: true\n"
            "    metric: logit_diff\n    targets: [z_by_pos, resid_pre, q_all_pos]\n"
            "  - name: scores\n    type: head_scores\n    scores: [previous_token, induction]\n"
            "  - name: michel\n    type: head_importance\n"
            "  - name: dla\n    type: direct_logit_attribution\n"
            "  - name: dlapos\n    type: direct_logit_attribution\n    metric: logit\n    positions: all\n"
            "    by_position: true\n"
            "  - name: circ\n    type: circuit_scores\n"
            "  - name: eap\n    type: edge_attribution\n    metric: logprob\n"
            "  - name: cap\n    type: capture\n    hooks: [z, resid_post]\n    layers: [0, 2]\n    prompts: [1, 4, 10]\n",
            model, out, data);
    if (importance)
        fprintf(f, "  - name: prune\n    type: pruning_curve\n    metric: logit_diff\n    positions: last\n"
                   "    importance: %s\n    step: 0.25\n", importance);
    fclose(f);
}

static hs_status run(const char *cfg_path, const char *shard, const hs_run_params *rp, hs_err *err) {
    char set[64];
    snprintf(set, sizeof set, "shard=%s", shard ? shard : "null");
    const char *sets[1] = {set};
    return hs_test_run_config(cfg_path, sets, 1, rp, err);
}

/* Every dataset of every group of a equals b's, bit for bit, and b has no others. */
static void assert_same_results(const char *a, const char *b) {
    hs_h5 *fa, *fb;
    hs_err err = {0};
    cr_assert_eq(hs_h5_open_read(a, &fa, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_open_read(b, &fb, &err), HS_OK, "%s", err.msg);
    char **groups, **names_a, **names_b;
    int64_t ng, na, nb, compared = 0;
    cr_assert_eq(hs_h5_list_groups(fa, &groups, &ng, &err), HS_OK, "%s", err.msg);
    char **groups_b;
    int64_t ngb;
    cr_assert_eq(hs_h5_list_groups(fb, &groups_b, &ngb, &err), HS_OK, "%s", err.msg);
    hs_h5_names_free(groups_b, ngb);
    cr_assert_eq(ng, ngb, "%s has %lld groups, %s %lld", a, (long long)ng, b, (long long)ngb);
    for (int64_t i = 0; i < ng; i++) {
        hs_h5_group *ga, *gb;
        cr_assert_eq(hs_h5_group_open(fa, groups[i], &ga, &err), HS_OK, "%s", err.msg);
        cr_assert_eq(hs_h5_group_open(fb, groups[i], &gb, &err), HS_OK, "%s: %s", b, err.msg);
        cr_assert_eq(hs_h5_list_datasets(ga, &names_a, &na, &err), HS_OK);
        cr_assert_eq(hs_h5_list_datasets(gb, &names_b, &nb, &err), HS_OK);
        cr_assert_eq(na, nb, "group %s: %lld vs %lld datasets", groups[i], (long long)na, (long long)nb);
        for (int64_t k = 0; k < na; k++) {
            void *da = NULL, *db = NULL;
            hs_h5_shape sa, sb;
            char **sa_s, **sb_s; /* string datasets (node names) */
            int64_t nsa, nsb;
            if (hs_h5_read_str(ga, names_a[k], &sa_s, &nsa, NULL) == HS_OK) {
                cr_assert_eq(hs_h5_read_str(gb, names_a[k], &sb_s, &nsb, &err), HS_OK, "%s", err.msg);
                cr_assert_eq(nsa, nsb, "%s/%s", groups[i], names_a[k]);
                for (int64_t j = 0; j < nsa; j++)
                    cr_assert_str_eq(sa_s[j], sb_s[j], "%s/%s[%lld]", groups[i], names_a[k], (long long)j);
                hs_h5_names_free(sa_s, nsa);
                hs_h5_names_free(sb_s, nsb);
                compared++;
                continue;
            }
            int isf = hs_h5_read_f32(ga, names_a[k], (float **)&da, &sa, NULL) == HS_OK;
            if (isf) cr_assert_eq(hs_h5_read_f32(gb, names_a[k], (float **)&db, &sb, &err), HS_OK, "%s", err.msg);
            else {
                cr_assert_eq(hs_h5_read_i32(ga, names_a[k], (int32_t **)&da, &sa, &err), HS_OK, "%s", err.msg);
                cr_assert_eq(hs_h5_read_i32(gb, names_a[k], (int32_t **)&db, &sb, &err), HS_OK, "%s", err.msg);
            }
            cr_assert_eq(sa.ndim, sb.ndim, "%s/%s", groups[i], names_a[k]);
            int64_t n = 1;
            for (int d = 0; d < sa.ndim; d++) {
                cr_assert_eq(sa.dims[d], sb.dims[d], "%s/%s", groups[i], names_a[k]);
                n *= sa.dims[d];
            }
            cr_assert_eq(memcmp(da, db, (size_t)n * 4), 0, "%s/%s differs between %s and %s", groups[i], names_a[k], a, b);
            free(da), free(db);
            compared++;
        }
        hs_h5_names_free(names_a, na);
        hs_h5_names_free(names_b, nb);
    }
    cr_assert_gt(compared, 10, "only %lld datasets compared", (long long)compared);
    hs_h5_names_free(groups, ng);
    hs_h5_close(fa);
    hs_h5_close(fb);
}

static void path_in(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static int exists(const char *p) { return access(p, F_OK) == 0; }

/* Root attribute key of the file at path (free it). */
static char *root_attr(const char *path, const char *key) {
    hs_h5 *f;
    hs_h5_group *root;
    char *v = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_h5_open_read(path, &f, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_group_open(f, "/", &root, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_attr_str(root, NULL, key, &v, &err), HS_OK, "%s: %s", path, err.msg);
    hs_h5_close(f);
    return v;
}

/* This process's CPU backend identity. */
static void cpu_identity(char *buf, size_t n) {
    hs_backend *be = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK, "%s", err.msg);
    hs_backend_identity(be, buf, n);
    hs_backend_free(be);
    cr_assert(!strncmp(buf, "cpu (f32; OpenBLAS ", 19), "%s", buf);
}

/* The unsharded result as ref.h5 and the config (with output out.h5) at cfg;
 * on the CPU with llama_gqa, or with cuda_model on cuda:0 in bf16. */
static void reference(char *cfg, char *ref, const char *importance, const char *cuda_model) {
    char out[256];
    path_in(cfg, 256, "c.yaml");
    path_in(out, sizeof out, "out.h5");
    path_in(ref, 256, "ref.h5");
    write_config(cfg, out, importance, cuda_model ? cuda_model : "llama_gqa");
    if (cuda_model) {
        FILE *f = fopen(cfg, "a");
        cr_assert_not_null(f);
        fputs("device: cuda:0\ndtype: bf16\n", f);
        fclose(f);
    }
    hs_err err = {0};
    cr_assert_eq(run(cfg, NULL, NULL, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(rename(out, ref), 0);
}

/* Shards of n, merged into merged.h5. */
static void run_shards(const char *cfg, int n, char paths[][256]) {
    for (int i = 0; i < n; i++) {
        char spec[32];
        hs_err err = {0};
        snprintf(spec, sizeof spec, "%d/%d", i, n);
        cr_assert_eq(run(cfg, spec, NULL, &err), HS_OK, "shard %s: %s", spec, err.msg);
        snprintf(paths[i], 256, "%s/out.shard-%05d-of-%05d.h5", dir, i, n);
        cr_assert(exists(paths[i]), "%s", paths[i]);
        char j[2048];
        snprintf(j, sizeof j, "%s.journal", paths[i]);
        cr_assert(!exists(j), "journal %s left after a complete shard", j);
    }
}

Test(shard, three_shards_merge_to_the_unsharded_result, .timeout = 300) {
    make_dir();
    char cfg[256], ref[256], merged[256], imp[300], paths[3][256];
    path_in(ref, sizeof ref, "ref.h5");
    snprintf(imp, sizeof imp, "%s:/abl/delta_mean", ref);
    /* the pruning curve reads its importance from a finished file, as a sharded sweep must */
    reference(cfg, ref, NULL, NULL);
    char ref2[256];
    path_in(ref2, sizeof ref2, "ref_pruned.h5");
    write_config(cfg, ref2, imp, "llama_gqa");
    hs_err err = {0};
    cr_assert_eq(run(cfg, NULL, NULL, &err), HS_OK, "%s", err.msg);
    char out[256];
    path_in(out, sizeof out, "out.h5");
    write_config(cfg, out, imp, "llama_gqa");
    run_shards(cfg, 3, paths);
    path_in(merged, sizeof merged, "merged.h5");
    const char *sp[3] = {paths[2], paths[0], paths[1]}; /* any order */
    cr_assert_eq(hs_run_merge(merged, sp, 3, 0, &err), HS_OK, "%s", err.msg);
    assert_same_results(ref2, merged);
    assert_same_results(merged, ref2);
    hs_test_check_with_h5py(merged);
    /* the merged file records the sweep as an unsharded run would */
    hs_h5 *f;
    hs_h5_group *root;
    char *text = NULL;
    int64_t v;
    cr_assert_eq(hs_h5_open_read(merged, &f, &err), HS_OK);
    cr_assert_eq(hs_h5_group_open(f, "/", &root, &err), HS_OK);
    cr_assert_eq(hs_h5_read_attr_str(root, NULL, "config", &text, &err), HS_OK);
    cr_assert(strstr(text, "shard: null"), "%s", text);
    cr_assert_eq(hs_h5_read_attr_int(root, NULL, "merged_shards", &v, &err), HS_OK);
    cr_assert_eq(v, 3);
    cr_assert_neq(hs_h5_read_attr_int(root, NULL, "shard_index", &v, NULL), HS_OK, "shard attributes leaked");
    free(text);
    hs_h5_close(f);
    char here[400];
    cpu_identity(here, sizeof here);
    char *on = root_attr(merged, "computed_on"), *dev = root_attr(merged, "device");
    cr_assert_str_eq(on, here); /* one backend: one line */
    cr_assert_str_eq(dev, "cpu");
    free(on), free(dev);
    remove_dir();
}

static int stop_after(void *user, const char *exp, int done, int total) {
    (void)exp, (void)done, (void)total;
    int *calls = user;
    return --*calls <= 0;
}

Test(shard, a_stopped_run_resumes_to_the_same_bits, .timeout = 300) {
    make_dir();
    char cfg[256], ref[256], out[256], journal[300];
    reference(cfg, ref, NULL, NULL);
    path_in(out, sizeof out, "out.h5");
    snprintf(journal, sizeof journal, "%s.journal", out);
    int budget = 3;
    for (int attempt = 0; attempt < 40; attempt++) { /* stop again and again, a few units further each time */
        int calls = budget;
        hs_run_params rp = hs_run_default_params();
        rp.progress = stop_after;
        rp.progress_user = &calls;
        hs_err err = {0};
        hs_status st = run(cfg, NULL, &rp, &err);
        if (st == HS_OK) break;
        cr_assert_eq(st, HS_ERR_INTERRUPTED, "%s", err.msg);
        cr_assert(!exists(out), "an interrupted run wrote its output");
        cr_assert(exists(journal));
        budget += 3;
    }
    cr_assert(exists(out), "the run never finished");
    cr_assert(!exists(journal), "journal left after the run completed");
    assert_same_results(ref, out);
    char here[400], *on = root_attr(out, "computed_on");
    cpu_identity(here, sizeof here);
    cr_assert_str_eq(on, here); /* the journal's units and this process's: one identity */
    free(on);
    remove_dir();
}

/* A journal written before records carried the backend identity (payload
 * magic "UNIT", no identity: docs/hdf5-schema.md) still resumes to the same
 * bits, and the file says those units' backend is unrecorded. */
Test(shard, a_journal_from_before_identities_resumes, .timeout = 300) {
    make_dir();
    char cfg[256], ref[256], out[256], journal[300], old[320];
    reference(cfg, ref, NULL, NULL);
    path_in(out, sizeof out, "out.h5");
    snprintf(journal, sizeof journal, "%s.journal", out);
    snprintf(old, sizeof old, "%s.old", journal);
    int calls = 30; /* progress calls: a few units into the sweep */
    hs_run_params rp = hs_run_default_params();
    rp.progress = stop_after;
    rp.progress_user = &calls;
    hs_err err = {0};
    cr_assert_eq(run(cfg, NULL, &rp, &err), HS_ERR_INTERRUPTED, "%s", err.msg);
    /* the header's config hash and batch count, then each record rewritten without its identity */
    unsigned char head[88];
    FILE *f = fopen(journal, "rb");
    cr_assert(f && fread(head, 1, sizeof head, f) == sizeof head);
    fclose(f);
    char sha[65];
    memcpy(sha, head + 12, 64), sha[64] = 0;
    int64_t n_batches = 0;
    for (int i = 7; i >= 0; i--) n_batches = n_batches << 8 | head[76 + i];
    hs_journal *jn = NULL, *jo = NULL;
    cr_assert_eq(hs_journal_open(journal, sha, n_batches, &jn, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_journal_open(old, sha, n_batches, &jo, &err), HS_OK, "%s", err.msg);
    int64_t converted = 0;
    for (int64_t b = 0; b < n_batches; b++) {
        if (!hs_journal_is_done(jn, b)) continue;
        unsigned char *p = NULL;
        size_t len;
        uint32_t magic;
        uint64_t ident;
        cr_assert_eq(hs_journal_read(jn, b, (void **)&p, &len, &err), HS_OK, "%s", err.msg);
        memcpy(&magic, p, 4), memcpy(&ident, p + 24, 8);
        cr_assert_eq(magic, 0x32494e55u, "record %lld: magic %08x", (long long)b, magic);
        const size_t skip = 8 + ((ident + 7) & ~(uint64_t)7);
        magic = 0x54494e55u;
        memcpy(p, &magic, 4);
        memmove(p + 24, p + 24 + skip, len - 24 - skip);
        cr_assert_eq(hs_journal_append(jo, b, p, len - skip, &err), HS_OK, "%s", err.msg);
        free(p);
        converted++;
    }
    hs_journal_close(jn), hs_journal_close(jo);
    cr_assert_gt(converted, 0);
    cr_assert_eq(rename(old, journal), 0);
    cr_assert_eq(run(cfg, NULL, NULL, &err), HS_OK, "%s", err.msg);
    assert_same_results(ref, out);
    char here[400], want[900], *on = root_attr(out, "computed_on");
    cpu_identity(here, sizeof here);
    snprintf(want, sizeof want, "unrecorded (journaled by a headsweep that did not record it)\n%s", here);
    cr_assert_str_eq(on, want);
    free(on);
    remove_dir();
}

Test(shard, several_workers_give_the_same_bits, .timeout = 300) {
    make_dir();
    char cfg[256], ref[256], out[256];
    reference(cfg, ref, NULL, NULL);
    path_in(out, sizeof out, "out.h5");
    hs_run_params rp = hs_run_default_params();
    rp.workers_per_device = 3;
    hs_err err = {0};
    cr_assert_eq(run(cfg, NULL, &rp, &err), HS_OK, "%s", err.msg);
    assert_same_results(ref, out);
    remove_dir();
}

/* The same on CUDA in bf16, where every worker has its own stream, cuBLAS
 * handle and weight copy: two workers sharing one GPU (the multi-GPU path on a
 * single-GPU machine) and two merged shards give the one-worker file. Both
 * attention kernels: llama_gqa's d_head 12 takes the CUDA-core one, pythia's 32
 * the tensor-core one. */
Test(shard_cuda, workers_and_shards_give_the_same_bits, .timeout = 300) {
    if (hs_backend_cuda_device_count() == 0) cr_skip_test("no CUDA device");
    const char *models[2] = {"llama_gqa", "pythia"};
    for (int mi = 0; mi < 2; mi++) {
        make_dir();
        char cfg[256], ref[256], out[256], merged[256], paths[2][256];
        reference(cfg, ref, NULL, models[mi]);
        path_in(out, sizeof out, "out.h5");
        hs_run_params rp = hs_run_default_params();
        rp.workers_per_device = 2;
        hs_err err = {0};
        cr_assert_eq(run(cfg, NULL, &rp, &err), HS_OK, "%s: %s", models[mi], err.msg);
        assert_same_results(ref, out);
        run_shards(cfg, 2, paths);
        path_in(merged, sizeof merged, "merged.h5");
        const char *sp[2] = {paths[0], paths[1]};
        cr_assert_eq(hs_run_merge(merged, sp, 2, 0, &err), HS_OK, "%s: %s", models[mi], err.msg);
        assert_same_results(ref, merged);
        char *on = root_attr(merged, "computed_on"), *ver = root_attr(merged, "cuda_version");
        cr_log_info("computed_on: %s; cuda_version: %s", on, ver);
        cr_assert(!strncmp(on, "cuda (bf16; ", 12) && strstr(on, "; cuBLAS ") && strstr(on, "; attention ") &&
                      !strchr(on, '\n'),
                  "%s", on);
        cr_assert(!strncmp(ver, "CUDA runtime ", 13), "%s", ver);
        free(on), free(ver);
        remove_dir();
    }
}

/* Runs `headsweep run cfg [--shard shard]` (with OPENBLAS_CORETYPE=coretype
 * when not NULL) and kills it with SIGKILL once its journal holds a unit,
 * before it writes out (the shard's file). */
static void kill_9_mid_run(const char *cfg, const char *shard, const char *coretype, const char *out) {
    char journal[300], bin[1024];
    snprintf(journal, sizeof journal, "%s.journal", out);
    snprintf(bin, sizeof bin, "%s/headsweep", HS_BINARY_DIR);
    int killed_mid_run = 0;
    for (int attempt = 0; attempt < 5 && !killed_mid_run; attempt++) {
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            int fd = open("/dev/null", O_WRONLY);
            dup2(fd, 2);
            if (coretype) setenv("OPENBLAS_CORETYPE", coretype, 1);
            if (shard) execl(bin, bin, "run", cfg, "--shard", shard, (char *)NULL);
            else execl(bin, bin, "run", cfg, (char *)NULL);
            _exit(127);
        }
        struct stat sb;
        for (int i = 0; i < 20000; i++) { /* until a unit is on disk (88-byte header + records) */
            if (stat(journal, &sb) == 0 && sb.st_size > 88) break;
            usleep(500);
        }
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        killed_mid_run = WIFSIGNALED(status) && !exists(out);
        if (!killed_mid_run) remove(out), remove(journal); /* it finished first: try again */
    }
    cr_assert(killed_mid_run, "could not kill the run before it finished");
    cr_assert(exists(journal));
}

/* kill -9 the CLI once its journal holds a unit, then rerun it to the end. */
Test(shard, kill_9_then_rerun_gives_the_same_bits, .timeout = 300) {
    make_dir();
    char cfg[256], ref[256], out[256], journal[300];
    reference(cfg, ref, NULL, NULL);
    path_in(out, sizeof out, "out.h5");
    snprintf(journal, sizeof journal, "%s.journal", out);
    kill_9_mid_run(cfg, NULL, NULL, out);
    char args[600], msg[4096];
    snprintf(args, sizeof args, "run %s", cfg);
    cr_assert_eq(hs_test_run_cli(args, "2>&1", msg, sizeof msg), 0, "%s", msg);
    cr_assert(!exists(journal));
    assert_same_results(ref, out);
    remove_dir();
}

/* A shard resumed on a CPU whose BLAS kernels differ, and merged with a shard
 * from this one, says so: computed_on lists both identities, in order, and
 * run and merge warn. OPENBLAS_CORETYPE stands in for the other CPU: the
 * child's OpenBLAS then picks that microarchitecture's kernels. */
Test(shard, work_from_other_cpus_is_recorded_and_warned, .timeout = 300) {
    char here[400], core[40];
    cpu_identity(here, sizeof here);
#ifndef __x86_64__
    cr_skip_test("the stand-in CPU is an x86-64 OPENBLAS_CORETYPE");
#endif
    if (!strstr(here, " DYNAMIC_ARCH "))
        cr_skip_test("OpenBLAS built without DYNAMIC_ARCH cannot be made to pick another CPU's kernels (%s)", here);
    const char *other = strstr(here, " Prescott ") ? "Core2" : "Prescott"; /* any x86-64 runs both */
    snprintf(core, sizeof core, " %s ", other);
    make_dir();
    char cfg[256], out[256], shard0[300], shard1[300], merged[300], args[1200], msg[8192];
    path_in(cfg, sizeof cfg, "c.yaml");
    path_in(out, sizeof out, "out.h5");
    path_in(merged, sizeof merged, "merged.h5");
    snprintf(shard0, sizeof shard0, "%s/out.shard-00000-of-00002.h5", dir);
    snprintf(shard1, sizeof shard1, "%s/out.shard-00001-of-00002.h5", dir);
    write_config(cfg, out, NULL, "llama_gqa");

    kill_9_mid_run(cfg, "0/2", other, shard0);
    snprintf(args, sizeof args, "run %s --shard 0/2", cfg);
    cr_assert_eq(hs_test_run_cli(args, "2>&1", msg, sizeof msg), 0, "%s", msg);
    cr_assert(strstr(msg, "warning: ") && strstr(msg, core) && strstr(msg, here), "no warning naming both: %s", msg);
    char *on = root_attr(shard0, "computed_on"), *nl = strchr(on, '\n');
    /* the journal's units' identity first, then this CPU's */
    cr_assert(nl && !strncmp(on, "cpu (f32; OpenBLAS ", 19) && strstr(on, core) < nl, "%s", on);
    cr_assert_str_eq(nl + 1, here);
    char *want = strdup(on);
    free(on);

    hs_err err = {0};
    cr_assert_eq(run(cfg, "1/2", NULL, &err), HS_OK, "%s", err.msg);
    on = root_attr(shard1, "computed_on");
    cr_assert_str_eq(on, here);
    free(on);

    snprintf(args, sizeof args, "merge %s %s %s", merged, shard1, shard0);
    cr_assert_eq(hs_test_run_cli(args, "2>&1", msg, sizeof msg), 0, "%s", msg);
    cr_assert(strstr(msg, "warning: ") && strstr(msg, core), "no warning: %s", msg);
    on = root_attr(merged, "computed_on");
    cr_assert_str_eq(on, want); /* in shard order, each once */
    free(on), free(want);
    char *dev = root_attr(merged, "device");
    cr_assert_str_eq(dev, "cpu");
    free(dev);
    remove_dir();
}

Test(shard, merge_refuses_incomplete_or_mixed_shards, .timeout = 300) {
    make_dir();
    char cfg[256], out[256], merged[256], paths[3][256], other[3][256];
    path_in(cfg, sizeof cfg, "c.yaml");
    path_in(out, sizeof out, "out.h5");
    path_in(merged, sizeof merged, "merged.h5");
    write_config(cfg, out, NULL, "llama_gqa");
    run_shards(cfg, 3, paths);
    hs_err err = {0};
    const char *two[2] = {paths[0], paths[2]};
    cr_assert_eq(hs_run_merge(merged, two, 2, 0, &err), HS_ERR_MISSING);
    cr_assert(strstr(err.msg, "index 1"), "%s", err.msg);
    const char *dup[3] = {paths[0], paths[1], paths[0]};
    cr_assert_eq(hs_run_merge(merged, dup, 3, 0, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "given twice"), "%s", err.msg);
    /* a shard of another sweep (another seed) */
    for (int i = 0; i < 3; i++) snprintf(other[i], 256, "%s/other_%d.h5", dir, i);
    cr_assert_eq(rename(paths[1], other[0]), 0);
    char set_cmd[700];
    snprintf(set_cmd, sizeof set_cmd, "sed -i 's/^seed: 3/seed: 4/' %s", cfg);
    cr_assert_eq(system(set_cmd), 0);
    cr_assert_eq(run(cfg, "1/3", NULL, &err), HS_OK, "%s", err.msg);
    const char *mixed[3] = {paths[0], paths[1], paths[2]};
    cr_assert_eq(hs_run_merge(merged, mixed, 3, 0, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "different sweep"), "%s", err.msg);
    /* a truncated shard */
    cr_assert_eq(rename(other[0], paths[1]), 0);
    char cp[700];
    snprintf(cp, sizeof cp, "head -c 3000 %s > %s", paths[2], other[1]);
    cr_assert_eq(system(cp), 0);
    const char *trunc[3] = {paths[0], paths[1], other[1]};
    cr_assert_neq(hs_run_merge(merged, trunc, 3, 0, &err), HS_OK);
    cr_assert(strstr(err.msg, other[1]), "error does not name the file: %s", err.msg);
    /* an output directory that does not exist */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/no/such/dir/m.h5", dir);
    cr_assert_neq(hs_run_merge(bad, mixed, 3, 0, &err), HS_OK);
    cr_assert(strstr(err.msg, "no/such/dir"), "%s", err.msg);
    cr_assert(!exists(merged), "a refused merge wrote its output");
    /* the shards themselves are untouched: the complete set still merges */
    cr_assert_eq(hs_run_merge(merged, mixed, 3, 0, &err), HS_OK, "%s", err.msg);
    remove_dir();
}

Test(shard, two_tasks_with_one_shard_index_are_refused) {
    make_dir();
    char cfg[256], out[256], journal[300];
    path_in(cfg, sizeof cfg, "c.yaml");
    path_in(out, sizeof out, "out.h5");
    write_config(cfg, out, NULL, "llama_gqa");
    snprintf(journal, sizeof journal, "%s/out.shard-00001-of-00003.h5.journal", dir);
    /* the other task holds the journal; its hash does not matter, the lock does */
    hs_journal *j = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_journal_open(journal, "0000000000000000000000000000000000000000000000000000000000000000", 1, &j, &err),
                 HS_OK, "%s", err.msg);
    cr_assert_neq(run(cfg, "1/3", NULL, &err), HS_OK);
    cr_assert(strstr(err.msg, "in use"), "%s", err.msg);
    hs_journal_close(j);
    remove_dir();
}

Test(shard, shard_comes_from_slurm_when_not_given) {
    hs_config *c = calloc(1, sizeof *c);
    cr_assert_not_null(c);
    c->output = "/tmp/x/out.h5";
    int i, n;
    hs_err err = {0};
    char p[256];
    unsetenv("SLURM_ARRAY_TASK_ID"), unsetenv("SLURM_ARRAY_TASK_COUNT"), unsetenv("SLURM_ARRAY_TASK_MIN");
    unsetenv("SLURM_PROCID"), unsetenv("SLURM_NTASKS");
    cr_assert_eq(hs_run_shard(c, &i, &n, &err), HS_OK);
    cr_assert(i == 0 && n == 1);
    hs_run_shard_path(c, i, n, p, sizeof p);
    cr_assert_str_eq(p, "/tmp/x/out.h5");
    setenv("SLURM_PROCID", "2", 1), setenv("SLURM_NTASKS", "4", 1);
    cr_assert_eq(hs_run_shard(c, &i, &n, &err), HS_OK);
    cr_assert(i == 2 && n == 4, "%d/%d", i, n);
    setenv("SLURM_ARRAY_TASK_ID", "5", 1), setenv("SLURM_ARRAY_TASK_COUNT", "3", 1), setenv("SLURM_ARRAY_TASK_MIN", "4", 1);
    cr_assert_eq(hs_run_shard(c, &i, &n, &err), HS_OK); /* the array wins over srun's task id */
    cr_assert(i == 1 && n == 3, "%d/%d", i, n);
    hs_run_shard_path(c, i, n, p, sizeof p);
    cr_assert_str_eq(p, "/tmp/x/out.shard-00001-of-00003.h5");
    setenv("SLURM_ARRAY_TASK_ID", "9", 1);
    cr_assert_eq(hs_run_shard(c, &i, &n, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "SLURM_ARRAY_TASK_ID=9"), "%s", err.msg);
    c->shard = (hs_config_shard){1, 0, 2}; /* --shard wins over the environment */
    cr_assert_eq(hs_run_shard(c, &i, &n, &err), HS_OK);
    cr_assert(i == 0 && n == 2);
    unsetenv("SLURM_ARRAY_TASK_ID"), unsetenv("SLURM_ARRAY_TASK_COUNT"), unsetenv("SLURM_ARRAY_TASK_MIN");
    unsetenv("SLURM_PROCID"), unsetenv("SLURM_NTASKS");
    free(c);
}

/* An output directory that cannot be written fails before any work, naming the path. */
Test(shard, an_unwritable_output_fails_before_the_work) {
    make_dir();
    char cfg[256], out[256];
    path_in(cfg, sizeof cfg, "c.yaml");
    snprintf(out, sizeof out, "%s/no/such/dir/out.h5", dir);
    write_config(cfg, out, NULL, "llama_gqa");
    int calls = 0;
    hs_run_params rp = hs_run_default_params();
    rp.progress = stop_after; /* counts down from 0: any unit that ran would stop the run */
    rp.progress_user = &calls;
    hs_err err = {0};
    hs_status st = run(cfg, NULL, &rp, &err);
    cr_assert(st == HS_ERR_IO, "status %d: %s", st, err.msg);
    cr_assert(strstr(err.msg, "no/such/dir"), "%s", err.msg);
    remove_dir();
}

/* split_layers cuts every prompt chunk of an ablation into layer groups: more
 * units than chunks, so more shards than chunks, and a chunk's parts may land
 * in different shards. The numbers equal the unsplit sweep's bit for bit
 * (each part runs the same forwards). */
Test(shard, split_layers_shards_a_chunk_over_tasks, .timeout = 300) {
    make_dir();
    char model[1024], cfg[256], ref[256], out[256], merged[256], paths[7][256];
    hs_test_fixture_path(model, sizeof model, "models/llama_gqa");
    path_in(cfg, sizeof cfg, "c.yaml");
    path_in(out, sizeof out, "out.h5");
    path_in(ref, sizeof ref, "ref.h5");
    path_in(merged, sizeof merged, "merged.h5");
    for (int split = 1; split <= 3; split += 2) {
        FILE *f = fopen(cfg, "w");
        cr_assert_not_null(f);
        fprintf(f,
                "model: %s\nseed: 3\nbatch_size: 12\noutput: %s\n"
                "dataset:\n  generator: induction\n  n: 5\n  seq_len: 4\n  token_min: 3\n  token_max: 300\n"
                "experiments:\n  - name: abl\n    type: head_ablation\n    mode: mean\n    whole_layers: true\n"
                "    all_but_one: true\n    split_layers: %d\n",
                model, split == 1 ? ref : out, split);
        fclose(f);
        hs_err err = {0};
        cr_assert_eq(run(cfg, NULL, NULL, &err), HS_OK, "%s", err.msg);
    }
    assert_same_results(ref, out); /* split or not: the same bits */
    run_shards(cfg, 7, paths);     /* 3 chunks x 3 parts = 9 units over 7 shards */
    const char *sp[7];
    for (int i = 0; i < 7; i++) sp[i] = paths[6 - i];
    hs_err err = {0};
    cr_assert_eq(hs_run_merge(merged, sp, 7, 0, &err), HS_OK, "%s", err.msg);
    assert_same_results(ref, merged);
    remove_dir();
}

/* Edge attribution over 4 batches of 3 prompts on GPT-NeoX (parallel blocks): 3 shards merged
 * equal the unsharded file bit for bit (the batches' sums added in order), and the merged graph
 * is the parallel one (no edge from a head into its own layer's MLP), read from the shards'
 * parallel_attn_mlp attribute without the model. Then circuit faithfulness ranked by the merged
 * file, sharded the same way. */
Test(shard, edge_attribution_batches_merge_in_order, .timeout = 300) {
    make_dir();
    char model[1024], cfg[256], data[256], ref[256], out[256], merged[256], paths[3][256];
    hs_test_fixture_path(model, sizeof model, "models/pythia");
    path_in(cfg, sizeof cfg, "c.yaml");
    path_in(data, sizeof data, "data.jsonl");
    path_in(out, sizeof out, "out.h5");
    path_in(ref, sizeof ref, "ref.h5");
    path_in(merged, sizeof merged, "merged.h5");
    write_jsonl(data);
    FILE *f = fopen(cfg, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "model: %s\nbatch_size: 3\noutput: %s\ndataset:\n  file: %s\nexperiments:\n"
            "  - name: eap\n    type: edge_attribution\n    ig_steps: 2\n",
            model, out, data);
    fclose(f);
    hs_err err = {0};
    cr_assert_eq(run(cfg, NULL, NULL, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(rename(out, ref), 0);
    run_shards(cfg, 3, paths); /* 4 batches over 3 shards */
    const char *sp[3] = {paths[1], paths[2], paths[0]};
    cr_assert_eq(hs_run_merge(merged, sp, 3, 0, &err), HS_OK, "%s", err.msg);
    assert_same_results(ref, merged);
    hs_h5 *h;
    hs_h5_group *g;
    float *e = NULL;
    hs_h5_shape sh;
    cr_assert_eq(hs_h5_open_read(merged, &h, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_group_open(h, "eap", &g, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_f32(g, "edges", &e, &sh, &err), HS_OK, "%s", err.msg);
    int64_t v_mlp0 = -1, u_h0 = 1; /* MLP0 among the downstream nodes; L0H0 upstream */
    char **down;
    int64_t nd;
    cr_assert_eq(hs_h5_read_str(g, "downstream", &down, &nd, &err), HS_OK, "%s", err.msg);
    for (int64_t v = 0; v < nd; v++)
        if (!strcmp(down[v], "MLP0")) v_mlp0 = v;
    hs_h5_names_free(down, nd);
    cr_assert(v_mlp0 >= 0 && sh.dims[1] == nd);
    cr_assert(isnan(e[u_h0 * nd + v_mlp0]), "parallel block: L0H0 -> MLP0 is no edge, got %g", e[u_h0 * nd + v_mlp0]);
    cr_assert(!isnan(e[v_mlp0]) && e[v_mlp0] != 0.0f, "input -> MLP0 is an edge: %g", e[v_mlp0]);
    free(e);
    hs_h5_close(h);
    /* circuits of the merged scores' strongest edges, sharded over the prompts: the same bits */
    char ranked[256], ref2[256];
    path_in(ranked, sizeof ranked, "ranked.h5");
    path_in(ref2, sizeof ref2, "ref2.h5");
    cr_assert_eq(rename(merged, ranked), 0);
    f = fopen(cfg, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "model: %s\nbatch_size: 3\noutput: %s\ndataset:\n  file: %s\nexperiments:\n"
            "  - name: faith\n    type: circuit_faithfulness\n    metric: kl\n    edges_from: %s:/eap/edges\n"
            "    n_edges: [0, 5, 50]\n",
            model, out, data, ranked);
    fclose(f);
    cr_assert_eq(run(cfg, NULL, NULL, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(rename(out, ref2), 0);
    for (int i = 0; i < 3; i++) cr_assert_eq(remove(paths[i]), 0, "%s", paths[i]); /* the edge attribution's */
    run_shards(cfg, 3, paths); /* 4 units (3, 3, 3 and 2 prompts) over 3 shards */
    cr_assert_eq(hs_run_merge(merged, sp, 3, 0, &err), HS_OK, "%s", err.msg);
    assert_same_results(ref2, merged);
    cr_assert_eq(hs_h5_open_read(merged, &h, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_group_open(h, "faith", &g, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_f32(g, "metric", &e, &sh, &err), HS_OK, "%s", err.msg);
    cr_assert(sh.dims[0] == 11 && sh.dims[1] == 3, "[prompt, n_edges] = [%lld, %lld]", (long long)sh.dims[0],
              (long long)sh.dims[1]);
    for (int i = 0; i < 11; i++) cr_assert(e[i * 3] > 1e-4f, "prompt %d: no edge kept, KL %g", i, e[i * 3]);
    free(e);
    hs_h5_close(h);
    remove_dir();
}
