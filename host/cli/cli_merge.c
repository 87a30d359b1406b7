/* `headsweep merge OUT SHARD...`: the shard files of one sweep into the
 * result file an unsharded run writes. Nothing is written unless every shard
 * is present, readable and from the same sweep. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "headsweep/hs_h5.h"
#include "headsweep/hs_run.h"

void hs_cli_warn_mixed(const char *cmd, const char *path) {
    hs_h5 *f = NULL;
    hs_h5_group *root;
    char *on = NULL;
    if (hs_h5_open_read(path, &f, NULL) || hs_h5_group_open(f, "/", &root, NULL) ||
        hs_h5_read_attr_str(root, NULL, "computed_on", &on, NULL)) {
        fprintf(stderr, "headsweep %s: warning: cannot read computed_on back from %s\n", cmd, path);
    } else if (strchr(on, '\n')) {
        fprintf(stderr,
                "headsweep %s: warning: %s was computed by backends that may round differently (a resumed run "
                "or shards on other hardware or libraries); its numbers can differ in the last bits from a run "
                "on any one of them. Its computed_on attribute lists them:\n  ", cmd, path);
        for (const char *c = on; *c; c++) *c == '\n' ? fputs("\n  ", stderr) : fputc(*c, stderr);
        fputc('\n', stderr);
    }
    free(on);
    if (f) hs_h5_close(f);
}

int hs_cli_merge(int argc, char **argv) {
    static const char usage[] = "usage: headsweep merge OUT SHARD... [--overwrite]\n";
    const char *out = NULL;
    const char **shards = calloc((size_t)argc + 1, sizeof *shards);
    int n = 0, overwrite = 0;
    if (!shards) return 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--overwrite")) overwrite = 1;
        else if (!strcmp(argv[i], "--help")) {
            printf("%s", usage);
            free(shards);
            return 0;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "headsweep merge: unexpected argument '%s'\n%s", argv[i], usage);
            free(shards);
            return 2;
        } else if (!out) out = argv[i];
        else shards[n++] = argv[i];
    }
    if (!out || !n) {
        fprintf(stderr, "%s", usage);
        free(shards);
        return 2;
    }
    hs_err err = {0};
    int rc = 0;
    if (hs_run_merge(out, shards, n, overwrite, &err)) {
        fprintf(stderr, "headsweep merge: %s\n", err.msg);
        rc = 1;
    } else {
        fprintf(stderr, "headsweep merge: wrote %s from %d shards\n", out, n);
        hs_cli_warn_mixed("merge", out);
    }
    free(shards);
    return rc;
}
