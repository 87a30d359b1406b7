/* `headsweep dataset ioi|induction|needle|text`: runs a built-in prompt generator
 * for a model's tokenizer and vocabulary and writes the prompts as JSONL
 * (the format a config's `dataset: file:` reads back identically). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "headsweep/hs_config.h"
#include "headsweep/hs_dataset.h"
#include "headsweep/hs_model.h"
#include "headsweep/hs_tokenizer.h"

#define MAX_LIST HS_CONFIG_MAX_LIST

static int usage(FILE *to, int code) {
    fprintf(to, "usage: headsweep dataset ioi|induction|needle|text --model MODEL -o FILE [options]\n"
                "\n"
                "  --model MODEL      the model (.gguf, folder or HF id): its vocabulary, context and tokenizer\n"
                "  --tokenizer PATH   another tokenizer (tokenizer.json, folder or .gguf) than the model's\n"
                "  --seed S           generator seed (0)\n"
                "  -o FILE            the JSONL output (one prompt object per line)\n"
                "ioi (Wang et al. 2022):\n"
                "  --n N              prompts (64)\n"
                "  --templates T      all, baba or abba (all)\n"
                "induction (Olsson et al. 2022; written as token ids):\n"
                "  --n N              prompts (64)\n"
                "  --seq-len N        random tokens per half (50)\n"
                "  --token-min N, --token-max N   ids drawn from [min, max) (100, 20000)\n"
                "needle (Wu et al. 2024; one prompt per length and depth):\n"
                "  --haystack FILE    haystack text\n"
                "  --needle TEXT      the sentence to hide\n"
                "  --question TEXT    the question at the end\n"
                "  --answer TEXT      each prompt's one-token answer after the question (none)\n"
                "  --depths D,...     insertion depths in [0, 1] (0.1,0.5,0.9)\n"
                "  --lengths L,...    prompt lengths in tokens (512,1024)\n"
                "text (perplexity windows of a corpus, as GPTQ / SparseGPT / Wanda cut WikiText-2):\n"
                "  --corpus FILE      the text, tokenized whole\n"
                "  --seq-len N        tokens per window (512)\n"
                "  --windows N        at most N windows from the start (0: all)\n"
                "  --window-bos       each window opens with BOS (default: one BOS opens the corpus)\n");
    return code;
}

/* "a,b,c" -> up to MAX_LIST numbers; -1 on a malformed list. */
static int parse_list(const char *s, double *v) {
    int n = 0;
    while (*s && n < MAX_LIST) {
        char *end;
        v[n++] = strtod(s, &end);
        if (end == s || (*end && *end != ',')) return -1;
        s = *end ? end + 1 : end;
    }
    return *s ? -1 : n;
}

static int parse_int(const char *s, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < -2147483647L || v > 2147483647L) return -1;
    *out = (int)v;
    return 0;
}

typedef struct {
    const char *kind, *model, *tokenizer, *output, *templates, *haystack, *needle, *question, *answer, *corpus;
    long long seed;
    int n, seq_len, seq_len_set, token_min, token_max, n_depths, n_lengths, windows, window_bos;
    double depths[MAX_LIST], lengths[MAX_LIST];
} args;

/* 0 ok, 2 usage error (message printed). */
static int parse_args(int argc, char **argv, args *a) {
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (o[0] != '-' && !a->kind) {
            a->kind = o;
            continue;
        }
        if (!strcmp(o, "--window-bos")) { /* a flag: no value */
            a->window_bos = 1;
            continue;
        }
        static const char *const known[] = {"--model",     "--tokenizer", "-o",        "--output",
                                            "--templates", "--haystack",  "--needle",  "--question",
                                            "--seed",      "--n",         "--seq-len", "--token-min",
                                            "--token-max", "--depths",    "--lengths",   "--answer",
                                            "--corpus",    "--windows",   NULL};
        int k = 0;
        while (known[k] && strcmp(known[k], o)) k++;
        if (!known[k]) {
            fprintf(stderr, "headsweep dataset: unknown option '%s'\n\n", o);
            return usage(stderr, 2);
        }
        if (!v) bad = 1;
        else if (!strcmp(o, "--model")) a->model = v;
        else if (!strcmp(o, "--tokenizer")) a->tokenizer = v;
        else if (!strcmp(o, "-o") || !strcmp(o, "--output")) a->output = v;
        else if (!strcmp(o, "--templates")) a->templates = v;
        else if (!strcmp(o, "--haystack")) a->haystack = v;
        else if (!strcmp(o, "--needle")) a->needle = v;
        else if (!strcmp(o, "--question")) a->question = v;
        else if (!strcmp(o, "--answer")) a->answer = v;
        else if (!strcmp(o, "--corpus")) a->corpus = v;
        else if (!strcmp(o, "--windows")) bad = parse_int(v, &a->windows) || a->windows < 0;
        else if (!strcmp(o, "--seed")) bad = sscanf(v, "%lld", &a->seed) != 1 || a->seed < 0;
        else if (!strcmp(o, "--n")) bad = parse_int(v, &a->n) || a->n < 1;
        else if (!strcmp(o, "--seq-len")) bad = parse_int(v, &a->seq_len) || a->seq_len < 1, a->seq_len_set = 1;
        else if (!strcmp(o, "--token-min")) bad = parse_int(v, &a->token_min);
        else if (!strcmp(o, "--token-max")) bad = parse_int(v, &a->token_max);
        else if (!strcmp(o, "--depths")) bad = (a->n_depths = parse_list(v, a->depths)) < 1;
        else if (!strcmp(o, "--lengths")) {
            bad = (a->n_lengths = parse_list(v, a->lengths)) < 1;
            for (int k2 = 0; !bad && k2 < a->n_lengths; k2++) bad = a->lengths[k2] != (int)a->lengths[k2];
        }
        if (bad) {
            fprintf(stderr, "headsweep dataset: %s needs a %s\n", o, v ? "valid value" : "value");
            return 2;
        }
        i++;
    }
    return 0;
}

static int generate(const args *a, hs_model *m, hs_tokenizer *tok, hs_dataset **d, hs_err *err) {
    const hs_model_config *c = hs_model_get_config(m);
    if (!strcmp(a->kind, "induction"))
        return hs_dataset_induction(c, a->n, a->seq_len, a->token_min, a->token_max, (uint64_t)a->seed, d, err);
    if (!strcmp(a->kind, "ioi")) {
        hs_dataset_ioi_templates t = !strcmp(a->templates, "baba")   ? HS_DATASET_IOI_BABA
                                     : !strcmp(a->templates, "abba") ? HS_DATASET_IOI_ABBA
                                                                     : HS_DATASET_IOI_ALL;
        return hs_dataset_ioi(tok, c, a->n, (uint64_t)a->seed, t, d, err);
    }
    if (!strcmp(a->kind, "text"))
        return hs_dataset_text(tok, c, a->corpus, a->seq_len_set ? a->seq_len : hs_config_dataset_default_params(
                                                                                   HS_CONFIG_DATASET_TEXT).seq_len,
                               a->windows, a->window_bos, d, err);
    int lengths[MAX_LIST];
    for (int i = 0; i < a->n_lengths; i++) lengths[i] = (int)a->lengths[i];
    return hs_dataset_needle(tok, c, a->haystack, a->needle, a->question, a->answer, a->depths, a->n_depths, lengths,
                             a->n_lengths, (uint64_t)a->seed, d, err);
}

int hs_cli_dataset(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout, 0);
    /* the config file's defaults */
    const hs_config_dataset def = hs_config_dataset_default_params(HS_CONFIG_DATASET_IOI);
    args a = {.templates = "all",
              .n = def.n,
              .seq_len = def.seq_len,
              .token_min = def.token_min,
              .token_max = def.token_max,
              .n_depths = def.depths.n,
              .n_lengths = def.lengths.n};
    for (int i = 0; i < def.depths.n; i++) a.depths[i] = def.depths.v[i];
    for (int i = 0; i < def.lengths.n; i++) a.lengths[i] = def.lengths.v[i];
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    if (!a.kind || !a.model || !a.output) return usage(stderr, 2);
    const int ioi = !strcmp(a.kind, "ioi"), needle = !strcmp(a.kind, "needle"), text = !strcmp(a.kind, "text");
    if (!ioi && !needle && !text && strcmp(a.kind, "induction")) {
        fprintf(stderr, "headsweep dataset: unknown generator '%s' (ioi, induction, needle, text)\n", a.kind);
        return 2;
    }
    if (text && !a.corpus) {
        fprintf(stderr, "headsweep dataset: text needs --corpus\n");
        return 2;
    }
    if (ioi && strcmp(a.templates, "all") && strcmp(a.templates, "baba") && strcmp(a.templates, "abba")) {
        fprintf(stderr, "headsweep dataset: --templates must be all, baba or abba\n");
        return 2;
    }
    if (needle && (!a.haystack || !a.needle || !a.question)) {
        fprintf(stderr, "headsweep dataset: needle needs --haystack, --needle and --question\n");
        return 2;
    }
    hs_err err = {0};
    hs_model *m = NULL;
    hs_tokenizer *tok = NULL;
    hs_dataset *d = NULL;
    rc = 1;
    if (hs_model_load(a.model, &m, &err)) goto fail;
    /* induction writes token ids: a tokenizer is optional there */
    const char *tp = a.tokenizer ? a.tokenizer : hs_model_get_path(m);
    if ((ioi || needle || text || a.tokenizer) && hs_tokenizer_load(tp, &tok, &err)) goto fail;
    if (generate(&a, m, tok, &d, &err) || hs_dataset_write_jsonl(d, tok, a.output, &err)) goto fail;
    int lo = d->T;
    for (int i = 0; i < d->N; i++) lo = d->lengths[i] < lo ? d->lengths[i] : lo;
    fprintf(stderr, "headsweep dataset: wrote %d %s prompts (%d..%d tokens) to %s\n", d->N, a.kind, lo, d->T, a.output);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "headsweep dataset: %s\n", err.msg);
done:
    hs_dataset_free(d);
    hs_tokenizer_free(tok);
    hs_model_free(m);
    return rc;
}
