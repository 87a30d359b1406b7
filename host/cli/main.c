/* headsweep command-line entry: subcommand dispatch. Only main decides to
 * exit; each subcommand returns an exit code and prints errors to stderr. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *to) {
    fprintf(to,
            "usage: headsweep <command> [options]\n"
            "\n"
            "commands:\n"
            "  info MODEL                      architecture, sizes and weight dtypes of a model\n"
            "  forward MODEL --tokens IDS      run one forward pass and print the top-k next tokens\n"
            "  run CONFIG [--set K=V]          run a sweep config into its HDF5 result file\n"
            "      [--shard I/N]               ... or shard I of N of it (default: from Slurm)\n"
            "  merge OUT SHARD...              merge the shard files of a sweep into OUT\n"
            "  shard-path CONFIG I/N           the file shard I of N writes\n"
            "  validate CONFIG [--set K=V]     check a sweep config and print it resolved\n"
            "  plot FILE --experiment NAME     layer x head heatmap (or pruning curve) as SVG\n"
            "  top FILE --experiment NAME      the heads with the largest values of a result\n"
            "  tokenize MODEL TEXT             token ids and pieces of TEXT (--decode IDS: the reverse)\n"
            "  dataset ioi|induction|needle    generate prompts for a model as JSONL (--model, -o)\n"
            "  version                         print the version and git revision\n"
            "\n"
            "MODEL is a .gguf file, a folder with config.json + safetensors, or an HF id in the\n"
            "offline HF cache. Run 'headsweep <command> --help' for a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "info")) return hs_cli_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "forward")) return hs_cli_forward(argc - 1, argv + 1);
    if (!strcmp(cmd, "validate")) return hs_cli_validate(argc - 1, argv + 1);
    if (!strcmp(cmd, "run")) return hs_cli_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "merge")) return hs_cli_merge(argc - 1, argv + 1);
    if (!strcmp(cmd, "shard-path")) return hs_cli_shard_path(argc - 1, argv + 1);
    if (!strcmp(cmd, "plot")) return hs_cli_plot(argc - 1, argv + 1);
    if (!strcmp(cmd, "top")) return hs_cli_top(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return hs_cli_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "dataset")) return hs_cli_dataset(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("headsweep %s (git %s)\n", HS_VERSION, HS_GIT_REV);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "headsweep: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
