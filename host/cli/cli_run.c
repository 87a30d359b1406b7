/* `headsweep run CONFIG`: runs a sweep config (or one shard of it) into its
 * HDF5 output. Progress goes to stderr: a redrawn bar on a terminal,
 * timestamped lines every 5% or 30 s otherwise (Slurm logs). SIGINT, SIGTERM
 * and SIGUSR1 (Slurm's warning before a time limit or preemption) drop the
 * unit in flight, keep the journal of completed units, write no result file
 * and exit with HS_CLI_EXIT_REQUEUE, which slurm/sweep.sbatch turns into a
 * requeue; the rerun resumes from the journal.
 * `headsweep shard-path CONFIG i/n` prints the file shard i of n writes. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "headsweep/hs_config.h"
#include "headsweep/hs_run.h"

/* The one piece of process state a signal handler may touch. */
static volatile sig_atomic_t g_stop = 0;

static void on_signal(int sig) { g_stop = sig; }

#define RUN_USAGE "usage: headsweep run CONFIG [--set KEY=VALUE]... [--shard I/N] [--overwrite]\n"

/* Collects CONFIG, --set and --shard (as an override); 0 ok, 2 usage error. */
static int parse_args(int argc, char **argv, const char *usage, const char **path, const char **sets, int *n_sets,
                      int *overwrite, char *shard, size_t shard_n) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--set") && i + 1 < argc) sets[(*n_sets)++] = argv[++i];
        else if (!strcmp(argv[i], "--shard") && i + 1 < argc) {
            snprintf(shard, shard_n, "shard=%s", argv[++i]);
            sets[(*n_sets)++] = shard;
        } else if (!strcmp(argv[i], "--overwrite") && overwrite) *overwrite = 1;
        else if (!strcmp(argv[i], "--help")) {
            printf("%s", usage);
            return 1;
        } else if (argv[i][0] != '-' && !*path) *path = argv[i];
        else {
            fprintf(stderr, "headsweep: unexpected argument '%s'\n%s", argv[i], usage);
            return 2;
        }
    }
    if (!*path) {
        fprintf(stderr, "%s", usage);
        return 2;
    }
    return 0;
}

typedef struct {
    int tty;
    time_t start, last_line;
    int last_pct;
    char last_exp[128];
} progress_state;

static int on_progress(void *user, const char *exp, int done, int total) {
    progress_state *p = user;
    time_t now = time(NULL);
    if (strcmp(p->last_exp, exp)) {
        snprintf(p->last_exp, sizeof p->last_exp, "%s", exp);
        p->start = now;
        p->last_line = 0;
        p->last_pct = -100;
    }
    int pct = total ? (int)(100.0 * done / total) : 100;
    double el = difftime(now, p->start);
    char eta[32] = "?"; /* no estimate before the first unit is done */
    if (done) snprintf(eta, sizeof eta, "%.0fs", el * (total - done) / done);
    if (p->tty) {
        int w = 30, fill = total ? w * done / total : w;
        fprintf(stderr, "\r%-16s [%.*s%*s] %d/%d units  %.2f units/s  %.0fs elapsed, ETA %s ", exp, fill,
                "##############################", w - fill, "", done, total, el > 0 ? done / el : 0.0, el, eta);
        if (done == total) fputc('\n', stderr);
    } else if (pct - p->last_pct >= 5 || difftime(now, p->last_line) >= 30 || done == total) {
        char ts[32];
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        fprintf(stderr, "%s %s: %d/%d units (%d%%), %.2f units/s, %.0fs elapsed, ETA %s\n", ts, exp, done, total, pct,
                el > 0 ? done / el : 0.0, el, eta);
        p->last_pct = pct;
        p->last_line = now;
    }
    return g_stop != 0;
}

int hs_cli_run(int argc, char **argv) {
    const char *path = NULL;
    const char **sets = calloc((size_t)argc + 2, sizeof *sets);
    int n_sets = 0, overwrite = 0;
    char shard[64];
    if (!sets) return 1;
    int prc = parse_args(argc, argv, RUN_USAGE, &path, sets, &n_sets, &overwrite, shard, sizeof shard);
    if (prc) {
        free(sets);
        return prc == 1 ? 0 : prc;
    }
    if (overwrite) sets[n_sets++] = "overwrite=true";
    hs_err err = {0};
    hs_config *cfg = NULL;
    char *text = NULL;
    int rc = 1;
    if (hs_config_load(path, sets, n_sets, &cfg, &err) || hs_config_resolved_yaml(cfg, &text, &err)) goto fail;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    progress_state ps = {.tty = isatty(STDERR_FILENO)};
    hs_run_params rp = hs_run_default_params();
    rp.progress = on_progress;
    rp.progress_user = &ps;
    time_t t0 = time(NULL);
    int si, sn;
    char out[4200];
    if (hs_run_shard(cfg, &si, &sn, &err)) goto fail;
    hs_run_shard_path(cfg, si, sn, out, sizeof out);
    if (sn > 1) fprintf(stderr, "headsweep run: shard %d of %d -> %s\n", si, sn, out);
    hs_status st = hs_run(cfg, text, &rp, &err);
    if (st == HS_ERR_INTERRUPTED) {
        fprintf(stderr, "headsweep run: stopped by signal %d: %s\n", (int)g_stop, err.msg);
        rc = HS_CLI_EXIT_REQUEUE;
        goto done;
    }
    if (st) goto fail;
    fprintf(stderr, "headsweep run: wrote %s in %.0f s\n", out, difftime(time(NULL), t0));
    hs_cli_warn_mixed("run", out);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "headsweep run: %s\n", err.msg);
done:
    free(text);
    hs_config_free(cfg);
    free(sets);
    return rc;
}

int hs_cli_shard_path(int argc, char **argv) {
    static const char usage[] = "usage: headsweep shard-path CONFIG I/N [--set KEY=VALUE]...\n"
                                "prints the file that shard I of N writes\n";
    const char *pos[2] = {NULL, NULL};
    const char **sets = calloc((size_t)argc + 2, sizeof *sets);
    int n_sets = 0, n_pos = 0, rc = 2;
    char shard[64];
    if (!sets) return 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--set") && i + 1 < argc) sets[n_sets++] = argv[++i];
        else if (argv[i][0] != '-' && n_pos < 2) pos[n_pos++] = argv[i];
        else n_pos = 3;
    }
    if (n_pos != 2) {
        fprintf(stderr, "%s", usage);
        free(sets);
        return 2;
    }
    snprintf(shard, sizeof shard, "shard=%s", pos[1]);
    sets[n_sets++] = shard;
    hs_err err = {0};
    hs_config *cfg = NULL;
    int si, sn;
    char out[4200];
    if (hs_config_load(pos[0], sets, n_sets, &cfg, &err) || hs_run_shard(cfg, &si, &sn, &err)) {
        fprintf(stderr, "headsweep shard-path: %s\n", err.msg);
        rc = 1;
    } else {
        hs_run_shard_path(cfg, si, sn, out, sizeof out);
        printf("%s\n", out);
        rc = 0;
    }
    hs_config_free(cfg);
    free(sets);
    return rc;
}
