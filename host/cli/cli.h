/* Subcommands of the headsweep CLI; each returns the process exit code. */
#ifndef HS_CLI_H
#define HS_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "headsweep/hs_h5.h"

int hs_cli_info(int argc, char **argv);
int hs_cli_forward(int argc, char **argv);
int hs_cli_run(int argc, char **argv);
int hs_cli_shard_path(int argc, char **argv);
int hs_cli_merge(int argc, char **argv);
/* Warns on stderr when a result or shard file's computed_on names more than
 * one backend identity. */
void hs_cli_warn_mixed(const char *cmd, const char *path);

/* Exit code of a run stopped by a signal with its progress journaled
 * (EX_TEMPFAIL): slurm/sweep.sbatch requeues the task on it. */
#define HS_CLI_EXIT_REQUEUE 75
int hs_cli_plot(int argc, char **argv);
/* "L<layer>H<head>" (both >= 0) into *l, *h: 1, or 0 when s is not one. */
int hs_cli_parse_head(const char *s, int *l, int *h);
/* Whether a dataset of shape sh is a composition score [layer, head, reader_layer, reader_head]. */
int hs_cli_is_composition(const hs_h5_shape *sh);
/* Reader head rl, rh of composition score sh: 1 if the model has it, else 0 with a message in msg. */
int hs_cli_reader_fits(const hs_h5_shape *sh, int rl, int rh, char *msg, size_t n);
int hs_cli_top(int argc, char **argv);
/* The k strongest edges of d [nu, nd] (an edge attribution; NaN = no edge; taken ones set to NaN)
 * as an SVG graph into o, nodes named by up and down. Returns the edges drawn (0: none, or out of
 * memory). */
int hs_cli_plot_edges(FILE *o, const char *title, float *d, int64_t nu, int64_t nd, char **up, char **down, int k);
int hs_cli_validate(int argc, char **argv);
int hs_cli_tokenize(int argc, char **argv);
int hs_cli_dataset(int argc, char **argv);

#endif
