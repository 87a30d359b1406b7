/* `headsweep merge OUT SHARD...`: the shard files of one sweep into the
 * result file an unsharded run writes. Nothing is written unless every shard
 * is present, readable and from the same sweep. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "headsweep/hs_run.h"

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
    }
    free(shards);
    return rc;
}
