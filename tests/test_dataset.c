/* Prompt datasets: the JSONL reader (happy path and every validation error,
 * each naming file:line and field), the IOI and needle generators on a
 * fixture tokenizer (always) and on SmolLM2's (when the GGUF is present),
 * the text generator's perplexity windows, JSONL write -> load round trips,
 * and `headsweep run` on file, IOI and text datasets. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "headsweep/hs_config.h"
#include "headsweep/hs_dataset.h"
#include "headsweep/hs_forward.h"
#include "headsweep/hs_h5.h"
#include "headsweep/hs_run.h"
#include "hs_testutil.h"

static const char *NEEDLE = "The secret password of the lighthouse keeper is blue harbour.";
static const char *QUESTION = "What is the secret password of the lighthouse keeper?";
static const char *ANSWER = " the"; /* one token in every tokenizer tested */

/* ---- helpers ---------------------------------------------------------------------- */

static char dir[64];

static void make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/hs_test_dataset_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void) {
    hs_test_remove_dir(dir);
}

/* dir/name with the given content; returns the path (static per slot). */
static const char *write_tmp(const char *name, const char *content) {
    static char paths[4][256];
    static int slot;
    char *p = paths[slot++ % 4];
    snprintf(p, 256, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(content, f);
    fclose(f);
    return p;
}

static hs_tokenizer *load_tok(const char *path) {
    hs_tokenizer *tok = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_tokenizer_load(path, &tok, &err), HS_OK, "%s: %s", path, err.msg);
    return tok;
}

static hs_tokenizer *fixture_tok(const char *name) {
    char path[1024];
    hs_test_fixture_path(path, sizeof path, name);
    return load_tok(path);
}

static hs_tokenizer *smollm2_tok(void) {
    char path[1024];
    if (!hs_test_smollm2_path(path, sizeof path)) return NULL;
    return load_tok(path);
}

#define SKIP_WITHOUT_SMOLLM2(tok)                                                                                      \
    do {                                                                                                               \
        if (!(tok)) cr_skip_test("SmolLM2 GGUF not found (set HS_SMOLLM2_GGUF or run scripts/fetch-model.sh)");        \
    } while (0)

/* A model config that fits the tokenizer: the dataset reads n_vocab and n_ctx. */
static hs_model_config config_for(const hs_tokenizer *tok, int n_ctx) {
    hs_model_config c;
    memset(&c, 0, sizeof c);
    c.n_vocab = hs_tokenizer_vocab_size(tok);
    c.n_ctx = n_ctx;
    c.bos_token_id = hs_tokenizer_bos_id(tok);
    c.eos_token_id = -1;
    return c;
}

static char *decode(hs_tokenizer *tok, const int32_t *ids, int n, int flags) {
    char *s = NULL;
    size_t len = 0;
    hs_err err = {0};
    cr_assert_eq(hs_tokenizer_decode(tok, ids, n, flags, &s, &len, &err), HS_OK, "%s", err.msg);
    return s;
}

/* A byte-level BPE tokenizer.json in dir whose only merges spell " Name" for
 * ten names (so the IOI name filter keeps exactly those), with a BOS "<s>"
 * added by TemplateProcessing: a real tokenizer that needs no download. */
static const char *const fixture_names[] = {"Mary", "John", "Alice", "Bob",  "Tom",
                                            "Anna", "Kate", "Paul",  "Lisa", "Mark"};

static void byte_symbol(int b, char *out) { /* GPT-2's bytes_to_unicode, as UTF-8 */
    int cp = b, n = 0;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
        for (int k = 0; k < b; k++) n += !((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174 && k <= 255));
        cp = 256 + n;
    }
    if (cp < 0x80) out[0] = (char)cp, out[1] = 0;
    else out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
}

static const char *names_tokenizer(void) {
    json_t *vocab = json_object(), *merges = json_array();
    int next = 0;
    char sym[4];
    for (int b = 0; b < 256; b++) {
        byte_symbol(b, sym);
        json_object_set_new(vocab, sym, json_integer(next++));
    }
    for (size_t i = 0; i < sizeof fixture_names / sizeof *fixture_names; i++) {
        char piece[64];
        byte_symbol(' ', piece);
        for (const char *c = fixture_names[i]; *c; c++) {
            char one[2] = {*c, 0}, merged[64];
            const size_t lp = strlen(piece); /* names are short: no overflow */
            memcpy(merged, piece, lp);
            merged[lp] = *c, merged[lp + 1] = 0;
            if (!json_object_get(vocab, merged)) {
                json_array_append_new(merges, json_pack("[ss]", piece, one));
                json_object_set_new(vocab, merged, json_integer(next++));
            }
            memcpy(piece, merged, sizeof piece);
        }
    }
    /* everything but vocab and merges; BOS id %d after the vocabulary */
    static const char skeleton[] =
        "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"normalizer\": null, \"added_tokens\": "
        "[{\"id\": %d, \"content\": \"<s>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
        "\"normalized\": false, \"special\": true}], "
        "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
        "\"use_regex\": true}, "
        "\"post_processor\": {\"type\": \"TemplateProcessing\", "
        "\"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], "
        "\"pair\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], "
        "\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [%d], \"tokens\": [\"<s>\"]}}}, "
        "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null, "
        "\"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": false}}";
    char text[sizeof skeleton + 32];
    snprintf(text, sizeof text, skeleton, next, next);
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    cr_assert_not_null(root, "skeleton: %s", je.text);
    json_t *model = json_object_get(root, "model");
    json_object_set_new(model, "vocab", vocab);
    json_object_set_new(model, "merges", merges);
    static char path[256];
    snprintf(path, sizeof path, "%s/names_tokenizer.json", dir);
    cr_assert_eq(json_dump_file(root, path, 0), 0);
    json_decref(root);
    return path;
}

/* ---- JSONL reader ------------------------------------------------------------------- */

Test(dataset_jsonl, happy_path_with_bos) {
    make_dir();
    hs_tokenizer *tok = fixture_tok("tokenizer/bpe_llama3.json"); /* adds BOS <|endoftext|> = 0 */
    hs_model_config c = config_for(tok, 64);
    const char *p = write_tmp(
        "ok.jsonl",
        "{\"prompt\": \"The cat sat on the\", \"answer\": \" world\", \"distractor\": \" and\", "
        "\"corrupt\": \"The cat sat on and\", \"template\": \"a\", \"id\": \"first\"}\n"
        "\n"
        "   \n"
        "{\"prompt\": \"Hello world\", \"answer\": 618, \"distractor\": \" of\", "
        "\"corrupt\": [0, 41, 70, 290, 80, 334], \"template\": \"b\", \"id\": 7}\n"
        "{\"tokens\": [5, 6, 7], \"answer\": 9, \"distractor\": 10, \"corrupt\": [5, 6, 8], \"template\": \"a\"}\n");
    hs_dataset *d = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_dataset_load_jsonl(p, tok, &c, 0, &d, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(d->N, 3);
    cr_assert_eq(d->T, 9);
    const int32_t row0[9] = {0, 53, 381, 318, 268, 264, 268, 401, 334}, row1[6] = {0, 41, 70, 290, 80, 618};
    cr_assert_arr_eq(d->tokens, row0, sizeof row0);
    cr_assert_arr_eq(d->tokens + 9, row1, sizeof row1);
    cr_assert_eq(d->tokens[9 + 6], 0, "right padding with 0");
    cr_assert_eq(d->tokens[18], 5, "token rows are taken as is: no BOS");
    cr_assert_eq(d->lengths[0], 9);
    cr_assert_eq(d->lengths[1], 6);
    cr_assert_eq(d->lengths[2], 3);
    cr_assert_eq(d->answer[0], 618);
    cr_assert_eq(d->distractor[0], 468);
    cr_assert_eq(d->answer[1], 618);
    cr_assert_eq(d->distractor[1], 415);
    cr_assert_eq(d->answer[2], 9);
    cr_assert_eq(d->corrupt_tokens[8], 468);
    cr_assert_eq(d->corrupt_tokens[9 + 5], 334);
    cr_assert_eq(d->template_id[0], 0);
    cr_assert_eq(d->template_id[1], 1);
    cr_assert_eq(d->template_id[2], 0);
    cr_assert_str_eq(d->text[0], "The cat sat on the");
    cr_assert_null(d->text[2]);
    cr_assert_str_eq(d->id[0], "first");
    cr_assert_str_eq(d->id[1], "7");
    cr_assert_null(d->id[2]);
    cr_assert_null(d->needle_start);
    hs_prompts pr = hs_dataset_prompts(d);
    cr_assert_eq(pr.answer, d->answer);
    hs_dataset_free(d);
    hs_tokenizer_free(tok);
    remove_dir();
}

/* Each bad file must fail with its code and a message holding every needle. */
typedef struct {
    const char *content;
    int max_len, n_ctx, no_tokenizer;
    hs_status code;
    const char *want[3];
} bad_case;

Test(dataset_jsonl, validation_errors_name_file_line_and_field) {
    make_dir();
    hs_tokenizer *tok = fixture_tok("tokenizer/bpe_gpt2.json");
    static const bad_case cases[] = {
        {"{\"prompt\": \"a b\"}\n{\"prompt\": \"x\",, }\n", 0, 0, 0, HS_ERR_FORMAT, {"bad.jsonl:2:", "malformed JSON"}},
        {"{\"promt\": \"a\"}\n", 0, 0, 0, HS_ERR_FORMAT, {"bad.jsonl:1:", "unknown key 'promt'"}},
        {"{\"prompt\": \"a\"}\n{\"prompt\": \"\"}\n", 0, 0, 0, HS_ERR_FORMAT, {"bad.jsonl:2:", "prompt:", "empty"}},
        {"{\"answer\": \" the\"}\n", 0, 0, 0, HS_ERR_FORMAT, {"bad.jsonl:1:", "prompt:", "missing"}},
        {"{\"prompt\": \"a\", \"tokens\": [1]}\n", 0, 0, 0, HS_ERR_FORMAT, {"bad.jsonl:1:", "prompt:", "not both"}},
        {"{\"prompt\": 3}\n", 0, 0, 0, HS_ERR_FORMAT, {"bad.jsonl:1:", "prompt:", "string"}},
        {"{\"prompt\": \"a\"}\n\n{\"prompt\": \"The cat sat on the\"}\n",
         5,
         0,
         0,
         HS_ERR_FORMAT,
         {"bad.jsonl:3:", "prompt:", "max_len 5"}},
        {"{\"prompt\": \"The cat sat on the mat and the dog\"}\n",
         0,
         6,
         0,
         HS_ERR_FORMAT,
         {"bad.jsonl:1:", "prompt:", "model context 6"}},
        {"{\"tokens\": [1, 2, 3, 4, 5, 6, 7]}\n",
         0,
         6,
         0,
         HS_ERR_FORMAT,
         {"bad.jsonl:1:", "tokens:", "model context 6"}},
        {"{\"prompt\": \"The cat sat on the\", \"answer\": \" New York\"}\n",
         0,
         0,
         0,
         HS_ERR_FORMAT,
         {"bad.jsonl:1:", "answer:", "not one"}},
        {"{\"prompt\": \"The cat\", \"answer\": \" the\", \"distractor\": \" dog\"}\n",
         0,
         0,
         0,
         HS_ERR_FORMAT,
         {"bad.jsonl:1:", "distractor:", "2 tokens"}},
        {"{\"prompt\": \"The ca\", \"answer\": \"t\"}\n",
         0,
         0,
         0,
         HS_ERR_FORMAT,
         {"bad.jsonl:1:", "answer:", "merges with the end"}},
        {"{\"prompt\": \"The cat\", \"answer\": 100000}\n",
         0,
         0,
         0,
         HS_ERR_FORMAT,
         {"bad.jsonl:1:", "answer:", "outside"}},
        {"{\"prompt\": \"The cat\", \"answer\": [1]}\n",
         0,
         0,
         0,
         HS_ERR_FORMAT,
         {"bad.jsonl:1:", "answer:", "string or a token id"}},
        {"{\"tokens\": [1, 2], \"answer\": \" the\"}\n",
         0,
         0,
         0,
         HS_ERR_FORMAT,
         {"bad.jsonl:1:", "answer:", "'prompt'"}},
        {"{\"prompt\": \"The cat sat\", \"corrupt\": \"The dog\"}\n",
         0,
         0,
         0,
         HS_ERR_FORMAT,
         {"bad.jsonl:1:", "corrupt:", "equal lengths"}},
        {"{\"prompt\": \"The cat\", \"corrupt\": \"The hat\"}\n{\"prompt\": \"The cat\"}\n",
         0,
         0,
         0,
         HS_ERR_FORMAT,
         {"bad.jsonl:2:", "corrupt:", "line 1"}},
        {"{\"prompt\": \"The cat\"}\n{\"prompt\": \"The cat\", \"answer\": \" the\"}\n",
         0,
         0,
         0,
         HS_ERR_FORMAT,
         {"bad.jsonl:2:", "answer:", "every line or none"}},
        {"{\"prompt\": \"a\", \"template\": 1}\n{\"prompt\": \"b\", \"template\": \"x\"}\n",
         0,
         0,
         0,
         HS_ERR_FORMAT,
         {"bad.jsonl:2:", "template:", "line 1"}},
        {"{\"prompt\": \"a\", \"template\": 1.5}\n", 0, 0, 0, HS_ERR_FORMAT, {"bad.jsonl:1:", "template:"}},
        {"{\"tokens\": [1, 99999]}\n", 0, 0, 0, HS_ERR_FORMAT, {"bad.jsonl:1:", "tokens:", "element 1"}},
        {"{\"tokens\": []}\n", 0, 0, 0, HS_ERR_FORMAT, {"bad.jsonl:1:", "tokens:", "non-empty"}},
        {"{\"tokens\": [1, 2], \"needle_start\": 1}\n",
         0,
         0,
         0,
         HS_ERR_FORMAT,
         {"bad.jsonl:1:", "needle_len:", "missing"}},
        {"{\"tokens\": [1, 2], \"needle_start\": 1, \"needle_len\": 2}\n",
         0,
         0,
         0,
         HS_ERR_FORMAT,
         {"bad.jsonl:1:", "needle_len:", "within"}},
        {"{\"prompt\": \"a\", \"id\": [1]}\n", 0, 0, 0, HS_ERR_FORMAT, {"bad.jsonl:1:", "id:"}},
        {"[1, 2]\n", 0, 0, 0, HS_ERR_FORMAT, {"bad.jsonl:1:", "not a JSON object"}},
        {"\n  \n", 0, 0, 0, HS_ERR_FORMAT, {"bad.jsonl", "no prompts"}},
        {"{\"prompt\": \"a\"}\n", 0, 0, 1, HS_ERR_INVALID_ARG, {"bad.jsonl:1:", "prompt:", "tokenizer"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const bad_case *bc = &cases[i];
        const char *p = write_tmp("bad.jsonl", bc->content);
        hs_model_config c = config_for(tok, bc->n_ctx ? bc->n_ctx : 64);
        hs_dataset *d = (hs_dataset *)1;
        hs_err err = {0};
        hs_status st = hs_dataset_load_jsonl(p, bc->no_tokenizer ? NULL : tok, &c, bc->max_len, &d, &err);
        cr_assert_eq(st, bc->code, "case %zu: status %d (%s)", i, st, err.msg);
        cr_assert_null(d, "case %zu", i);
        for (int k = 0; k < 3 && bc->want[k]; k++)
            cr_assert(strstr(err.msg, bc->want[k]), "case %zu: '%s' not in: %s", i, bc->want[k], err.msg);
    }
    /* malformed JSON gives jansson's column */
    const char *p = write_tmp("bad.jsonl", "{\"prompt\": \"x\",, }\n");
    hs_model_config c = config_for(tok, 64);
    hs_dataset *d = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_dataset_load_jsonl(p, tok, &c, 0, &d, &err), HS_ERR_FORMAT);
    cr_assert(strstr(err.msg, "bad.jsonl:1:16:"), "%s", err.msg);
    cr_assert_eq(hs_dataset_load_jsonl("/nonexistent/x.jsonl", tok, &c, 0, &d, &err), HS_ERR_IO);
    cr_assert(strstr(err.msg, "/nonexistent/x.jsonl"), "%s", err.msg);
    hs_tokenizer_free(tok);
    remove_dir();
}

/* ---- IOI ------------------------------------------------------------------------------ */

static int count_tok(const int32_t *row, int n, int32_t id) {
    int k = 0;
    for (int i = 0; i < n; i++) k += row[i] == id;
    return k;
}

/* The properties every IOI dataset must have, for any tokenizer. */
static void check_ioi(hs_tokenizer *tok, const hs_dataset *d, hs_dataset_ioi_templates which) {
    int seen[30] = {0};
    for (int i = 0; i < d->N; i++) {
        const int32_t *row = d->tokens + (size_t)i * d->T, *crow = d->corrupt_tokens + (size_t)i * d->T;
        const int n = d->lengths[i], t = d->template_id[i];
        cr_assert(t >= 0 && t < 30, "row %d template %d", i, t);
        if (which == HS_DATASET_IOI_BABA) cr_assert_lt(t, 15);
        if (which == HS_DATASET_IOI_ABBA) cr_assert_geq(t, 15);
        seen[t]++;
        cr_assert_neq(d->answer[i], d->distractor[i], "row %d", i);
        /* names are one token: " Name" */
        char *a = decode(tok, &d->answer[i], 1, 0), *b = decode(tok, &d->distractor[i], 1, 0);
        cr_assert(a[0] == ' ' && a[1] >= 'A' && a[1] <= 'Z' && !strchr(a + 1, ' '), "row %d answer '%s'", i, a);
        cr_assert(b[0] == ' ' && b[1] >= 'A' && b[1] <= 'Z' && !strchr(b + 1, ' '), "row %d distractor '%s'", i, b);
        /* IO once (first clause), S twice (first clause and subject of the second) */
        cr_assert_eq(count_tok(row, n, d->answer[i]), 1, "row %d: '%s'", i, d->text[i]);
        cr_assert_eq(count_tok(row, n, d->distractor[i]), 2, "row %d: '%s'", i, d->text[i]);
        /* BABA: S before IO; ABBA: IO before S */
        int first_io = 0, first_s = 0;
        while (row[first_io] != d->answer[i]) first_io++;
        while (row[first_s] != d->distractor[i]) first_s++;
        cr_assert_eq(first_s < first_io, t < 15, "row %d template %d: '%s'", i, t, d->text[i]);
        /* ABC: same length, exactly the two first-clause names differ, IO gone, S kept once */
        int diff = 0;
        for (int k = 0; k < n; k++) diff += row[k] != crow[k];
        cr_assert_eq(diff, 2, "row %d: %d tokens differ", i, diff);
        cr_assert_eq(count_tok(crow, n, d->answer[i]), 0, "row %d", i);
        cr_assert_eq(count_tok(crow, n, d->distractor[i]), 1, "row %d", i);
        for (int k = n; k < d->T; k++) cr_assert_eq(row[k], 0, "padding");
        /* the text is what the tokens say (BOS aside) */
        char *s = decode(tok, row, n, HS_TOK_DECODE_SKIP_SPECIAL);
        cr_assert_str_eq(s, d->text[i]);
        cr_assert_eq(row[0] == hs_tokenizer_bos_id(tok), hs_tokenizer_add_bos(tok), "BOS as the tokenizer adds it");
        free(a), free(b), free(s);
    }
    if (which == HS_DATASET_IOI_ALL && d->N >= 60)
        for (int t = 0; t < 30; t++) cr_assert_eq(seen[t], 2, "template %d dealt %d times in 60 rows", t, seen[t]);
}

static void same_dataset(const hs_dataset *a, const hs_dataset *b, int text) {
    cr_assert_eq(a->N, b->N);
    cr_assert_eq(a->T, b->T);
    cr_assert_arr_eq(a->tokens, b->tokens, (size_t)a->N * a->T * sizeof(int32_t));
    cr_assert_arr_eq(a->lengths, b->lengths, (size_t)a->N * sizeof(int32_t));
#define SAME_OPT(f, n)                                                                                                 \
    cr_assert_eq(!a->f, !b->f, #f);                                                                                    \
    if (a->f) cr_assert_arr_eq(a->f, b->f, (size_t)(n) * sizeof(int32_t), #f)
    SAME_OPT(answer, a->N);
    SAME_OPT(distractor, a->N);
    SAME_OPT(template_id, a->N);
    SAME_OPT(corrupt_tokens, (size_t)a->N * a->T);
    SAME_OPT(needle_start, a->N);
    SAME_OPT(needle_len, a->N);
#undef SAME_OPT
    if (text)
        for (int i = 0; i < a->N; i++) cr_assert_str_eq(a->text[i], b->text[i]);
}

static void ioi_suite(hs_tokenizer *tok) {
    hs_model_config c = config_for(tok, 256);
    hs_dataset *d = NULL, *e = NULL, *f = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_dataset_ioi(tok, &c, 60, 5, HS_DATASET_IOI_ALL, &d, &err), HS_OK, "%s", err.msg);
    check_ioi(tok, d, HS_DATASET_IOI_ALL);
    cr_assert_eq(hs_dataset_ioi(tok, &c, 60, 5, HS_DATASET_IOI_ALL, &e, &err), HS_OK, "%s", err.msg);
    same_dataset(d, e, 1); /* deterministic for a seed */
    hs_dataset_free(e);
    cr_assert_eq(hs_dataset_ioi(tok, &c, 60, 6, HS_DATASET_IOI_ALL, &e, &err), HS_OK, "%s", err.msg);
    cr_assert(d->T != e->T || memcmp(d->tokens, e->tokens, (size_t)d->N * d->T * sizeof(int32_t)),
              "seed changes prompts");
    hs_dataset_free(e);
    for (int w = HS_DATASET_IOI_BABA; w <= HS_DATASET_IOI_ABBA; w++) {
        cr_assert_eq(hs_dataset_ioi(tok, &c, 20, 1, (hs_dataset_ioi_templates)w, &e, &err), HS_OK, "%s", err.msg);
        check_ioi(tok, e, (hs_dataset_ioi_templates)w);
        hs_dataset_free(e);
    }
    /* write -> load: the same dataset */
    char path[256];
    snprintf(path, sizeof path, "%s/ioi.jsonl", dir);
    cr_assert_eq(hs_dataset_write_jsonl(d, tok, path, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_dataset_load_jsonl(path, tok, &c, 0, &f, &err), HS_OK, "%s", err.msg);
    same_dataset(d, f, 1);
    /* written as text, not ids */
    FILE *fp = fopen(path, "r");
    char line[2048];
    cr_assert_not_null(fgets(line, sizeof line, fp));
    fclose(fp);
    cr_assert(strstr(line, "\"prompt\": \"") && strstr(line, "\"answer\": \" ") && strstr(line, "\"corrupt\": \""),
              "%s", line);
    hs_dataset_free(f);
    hs_dataset_free(d);
}

Test(dataset_ioi, fixture_tokenizer) {
    make_dir();
    hs_tokenizer *tok = load_tok(names_tokenizer());
    cr_assert(hs_tokenizer_add_bos(tok));
    ioi_suite(tok);
    /* only the ten names with merges are one token */
    hs_model_config c = config_for(tok, 256);
    hs_dataset *d = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_dataset_ioi(tok, &c, 30, 2, HS_DATASET_IOI_ALL, &d, &err), HS_OK, "%s", err.msg);
    for (int i = 0; i < d->N; i++) {
        char *a = decode(tok, &d->answer[i], 1, 0);
        int known = 0;
        for (size_t k = 0; k < sizeof fixture_names / sizeof *fixture_names; k++)
            known |= !strcmp(a + 1, fixture_names[k]);
        cr_assert(known, "'%s'", a);
        free(a);
    }
    hs_dataset_free(d);
    hs_tokenizer_free(tok);
    remove_dir();
}

Test(dataset_ioi, smollm2_tokenizer) {
    hs_tokenizer *tok = smollm2_tok();
    SKIP_WITHOUT_SMOLLM2(tok);
    make_dir();
    cr_assert(!hs_tokenizer_add_bos(tok), "SmolLM2's GGUF adds no BOS");
    ioi_suite(tok);
    hs_tokenizer_free(tok);
    remove_dir();
}

Test(dataset_ioi, errors) {
    hs_tokenizer *tok = fixture_tok("tokenizer/bpe_gpt2.json"); /* vocabulary of 1000: no name is one token */
    hs_model_config c = config_for(tok, 256);
    hs_dataset *d = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_dataset_ioi(tok, &c, 4, 1, HS_DATASET_IOI_ALL, &d, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "one token") && strstr(err.msg, "4 are needed"), "%s", err.msg);
    cr_assert_eq(hs_dataset_ioi(tok, &c, 0, 1, HS_DATASET_IOI_ALL, &d, &err), HS_ERR_INVALID_ARG);
    cr_assert_null(d);
    cr_assert_null(hs_dataset_ioi_template(30));
    cr_assert_str_eq(hs_dataset_ioi_template(0), "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]");
    /* ABBA t + 15 is BABA t with the first two names swapped */
    for (int t = 0; t < 15; t++) {
        char swapped[256];
        snprintf(swapped, sizeof swapped, "%s", hs_dataset_ioi_template(t));
        char *pa = strstr(swapped, "[A]"), *pb = strstr(swapped, "[B]");
        pa[1] = 'B', pb[1] = 'A';
        cr_assert_str_eq(swapped, hs_dataset_ioi_template(t + 15), "template %d", t);
    }
    hs_tokenizer_free(tok);
}

/* ---- needle in a haystack ------------------------------------------------------------ */

static void needle_suite(hs_tokenizer *tok, int n_ctx) {
    char hay[1024];
    hs_test_fixture_path(hay, sizeof hay, "haystack.txt");
    hs_model_config c = config_for(tok, n_ctx);
    const double depths[] = {0.0, 0.25, 0.5, 1.0};
    const int lengths[] = {200, 600, 1500};
    hs_dataset *d = NULL, *e = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_dataset_needle(tok, &c, hay, NEEDLE, QUESTION, NULL, depths, 4, lengths, 3, 9, &d, &err), HS_OK, "%s",
                 err.msg);
    cr_assert_eq(d->N, 12);
    cr_assert_null(d->answer);
    char spaced[256];
    snprintf(spaced, sizeof spaced, " %s", NEEDLE);
    for (int li = 0; li < 3; li++) {
        for (int di = 0; di < 4; di++) {
            const int i = li * 4 + di, n = d->lengths[i];
            const int32_t *row = d->tokens + (size_t)i * d->T;
            /* within the budget, and filled: the haystack's longest sentence is < 60 tokens */
            cr_assert_leq(n, lengths[li], "row %d", i);
            cr_assert_geq(n, lengths[li] - 60, "row %d: %d tokens for length %d", i, n, lengths[li]);
            char *span = decode(tok, row + d->needle_start[i], d->needle_len[i], 0);
            cr_assert_str_eq(span, depths[di] == 0.0 ? NEEDLE : spaced, "row %d", i);
            free(span);
            if (depths[di] == 0.0) cr_assert_eq(d->needle_start[i], hs_tokenizer_add_bos(tok) ? 1 : 0);
            if (di > 0) cr_assert_geq(d->needle_start[i], d->needle_start[i - 1], "deeper needles start later");
            char *s = decode(tok, row, n, HS_TOK_DECODE_SKIP_SPECIAL);
            cr_assert_str_eq(s, d->text[i]);
            const size_t ls = strlen(s), lq = strlen(QUESTION);
            cr_assert(ls > lq && s[ls - lq - 1] == '\n' && !strcmp(s + ls - lq, QUESTION), "ends with the question");
            free(s);
        }
        /* depth 1: the needle right before the question */
        const int i = li * 4 + 3;
        char *tail =
            decode(tok, d->tokens + (size_t)i * d->T + d->needle_start[i], d->lengths[i] - d->needle_start[i], 0);
        cr_assert(!strncmp(tail, spaced, strlen(spaced)) && tail[strlen(spaced)] == '\n', "%s", tail);
        free(tail);
    }
    /* deterministic; written and read back identically */
    cr_assert_eq(hs_dataset_needle(tok, &c, hay, NEEDLE, QUESTION, NULL, depths, 4, lengths, 3, 9, &e, &err), HS_OK, "%s",
                 err.msg);
    same_dataset(d, e, 1);
    hs_dataset_free(e);
    char path[256];
    snprintf(path, sizeof path, "%s/needle.jsonl", dir);
    cr_assert_eq(hs_dataset_write_jsonl(d, tok, path, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_dataset_load_jsonl(path, tok, &c, 0, &e, &err), HS_OK, "%s", err.msg);
    same_dataset(d, e, 1);
    hs_dataset_free(e);
    hs_dataset_free(d);
    /* with an answer: the one token it becomes after each prompt, for every prompt; the
     * prompts themselves unchanged; written and read back with it */
    cr_assert_eq(hs_dataset_needle(tok, &c, hay, NEEDLE, QUESTION, ANSWER, depths, 4, lengths, 3, 9, &d, &err), HS_OK,
                 "%s", err.msg);
    cr_assert_not_null(d->answer);
    for (int i = 0; i < d->N; i++) {
        int32_t *ids = NULL;
        int n = 0;
        char *full = malloc(strlen(d->text[i]) + strlen(ANSWER) + 1);
        strcpy(full, d->text[i]), strcat(full, ANSWER);
        cr_assert_eq(hs_tokenizer_encode(tok, full, strlen(full), 1, &ids, &n, &err), HS_OK, "%s", err.msg);
        cr_assert(n == d->lengths[i] + 1 && !memcmp(ids, d->tokens + (size_t)i * d->T, (size_t)d->lengths[i] * 4),
                  "row %d: the prompt's tokens, then one more", i);
        cr_assert_eq(d->answer[i], ids[n - 1], "row %d", i);
        free(ids), free(full);
    }
    cr_assert_eq(hs_dataset_needle(tok, &c, hay, NEEDLE, QUESTION, NULL, depths, 4, lengths, 3, 9, &e, &err), HS_OK,
                 "%s", err.msg);
    cr_assert(!memcmp(d->tokens, e->tokens, (size_t)d->N * d->T * 4) && !memcmp(d->lengths, e->lengths, (size_t)d->N * 4));
    hs_dataset_free(e);
    cr_assert_eq(hs_dataset_write_jsonl(d, tok, path, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_dataset_load_jsonl(path, tok, &c, 0, &e, &err), HS_OK, "%s", err.msg);
    same_dataset(d, e, 1);
    hs_dataset_free(e);
    hs_dataset_free(d);
}

Test(dataset_needle, fixture_tokenizer) {
    make_dir();
    hs_tokenizer *tok = fixture_tok("tokenizer/bpe_llama3.json"); /* with BOS */
    needle_suite(tok, 2048);
    hs_tokenizer_free(tok);
    remove_dir();
}

Test(dataset_needle, smollm2_tokenizer) {
    hs_tokenizer *tok = smollm2_tok();
    SKIP_WITHOUT_SMOLLM2(tok);
    make_dir();
    needle_suite(tok, 8192);
    hs_tokenizer_free(tok);
    remove_dir();
}

Test(dataset_needle, errors) {
    make_dir();
    hs_tokenizer *tok = fixture_tok("tokenizer/bpe_gpt2.json");
    hs_model_config c = config_for(tok, 1000);
    char hay[1024];
    hs_test_fixture_path(hay, sizeof hay, "haystack.txt");
    const double depth = 0.5, bad_depth = 1.5;
    const int len = 300, short_len = 10, long_len = 5000;
    hs_dataset *d = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_dataset_needle(tok, &c, "/nonexistent/h.txt", NEEDLE, QUESTION, NULL, &depth, 1, &len, 1, 0, &d, &err),
                 HS_ERR_IO);
    cr_assert(strstr(err.msg, "/nonexistent/h.txt"), "%s", err.msg);
    cr_assert_eq(hs_dataset_needle(tok, &c, hay, NEEDLE, QUESTION, NULL, &bad_depth, 1, &len, 1, 0, &d, &err),
                 HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "depth 1.5"), "%s", err.msg);
    cr_assert_eq(hs_dataset_needle(tok, &c, hay, NEEDLE, QUESTION, NULL, &depth, 1, &short_len, 1, 0, &d, &err),
                 HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "too short"), "%s", err.msg);
    cr_assert_eq(hs_dataset_needle(tok, &c, hay, NEEDLE, QUESTION, NULL, &depth, 1, &long_len, 1, 0, &d, &err),
                 HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "context"), "%s", err.msg);
    cr_assert_eq(hs_dataset_needle(tok, &c, hay, "", QUESTION, NULL, &depth, 1, &len, 1, 0, &d, &err), HS_ERR_INVALID_ARG);
    const char *empty = write_tmp("empty.txt", " \n\n \t\n");
    cr_assert_eq(hs_dataset_needle(tok, &c, empty, NEEDLE, QUESTION, NULL, &depth, 1, &len, 1, 0, &d, &err),
                 HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "no text"), "%s", err.msg);
    cr_assert_eq(hs_dataset_needle(tok, &c, hay, NEEDLE, QUESTION, " blue harbour lighthouse", &depth, 1, &len, 1, 0, &d,
                                   &err),
                 HS_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "the answer ' blue harbour lighthouse' is not one token after the question ("), "%s",
              err.msg);
    cr_assert_null(d);
    hs_tokenizer_free(tok);
    remove_dir();
}

/* ---- perplexity windows of a corpus ------------------------------------------------------ */

/* The windows are the corpus's own tokens, in order: BOS (the tokenizer adds one) then the text
 * in windows of seq_len; with window_bos, BOS and seq_len - 1 text tokens each. */
Test(dataset_text, windows_are_the_corpus_tokens) {
    hs_tokenizer *tok = fixture_tok("tokenizer/bpe_llama3.json"); /* adds BOS <|endoftext|> = 0 */
    hs_model_config c = config_for(tok, 8192);
    char hay[1024];
    hs_test_fixture_path(hay, sizeof hay, "haystack.txt");
    FILE *f = fopen(hay, "rb");
    cr_assert(f);
    char *text = calloc(1 << 20, 1);
    const size_t len = fread(text, 1, (1 << 20) - 1, f);
    fclose(f);
    hs_err err = {0};
    for (int wb = 0; wb < 2; wb++) {
        int32_t *ids = NULL;
        int n = 0;
        cr_assert_eq(hs_tokenizer_encode(tok, text, len, 0, &ids, &n, &err), HS_OK, "%s", err.msg);
        if (!wb) { /* BOS, then the text */
            ids = realloc(ids, (size_t)(n + 1) * sizeof *ids);
            memmove(ids + 1, ids, (size_t)n * sizeof *ids);
            ids[0] = 0, n++;
        }
        const int L = 64, step = wb ? L - 1 : L;
        cr_assert(n > 3 * step, "the corpus holds %d tokens", n);
        cr_assert_eq(ids[0] == 0, !wb, "BOS opens the corpus only without window_bos");
        hs_dataset *d = NULL;
        cr_assert_eq(hs_dataset_text(tok, &c, hay, L, 0, wb, &d, &err), HS_OK, "%s", err.msg);
        cr_assert(d->N == n / step && d->T == L, "%d windows of %d from %d tokens", d->N, d->T, n);
        cr_assert(!d->answer && !d->distractor && !d->corrupt_tokens && !d->text);
        for (int w = 0; w < d->N; w++) {
            const int32_t *row = d->tokens + (int64_t)w * L;
            cr_assert_eq(d->lengths[w], L);
            if (wb) cr_assert_eq(row[0], 0, "window %d opens with BOS", w);
            cr_assert(!memcmp(row + wb, ids + (int64_t)w * step, (size_t)step * sizeof *row), "window %d", w);
        }
        hs_dataset *e = NULL; /* at most 2 windows: the first two */
        cr_assert_eq(hs_dataset_text(tok, &c, hay, L, 2, wb, &e, &err), HS_OK, "%s", err.msg);
        cr_assert(e->N == 2 && !memcmp(e->tokens, d->tokens, (size_t)2 * L * sizeof *e->tokens));
        hs_dataset_free(e);
        hs_dataset_free(d);
        free(ids);
    }
    free(text);
    hs_tokenizer_free(tok);
}

Test(dataset_text, errors) {
    make_dir();
    hs_tokenizer *tok = fixture_tok("tokenizer/bpe_llama3.json"), *nobos = fixture_tok("tokenizer/bpe_gpt2.json");
    hs_model_config c = config_for(tok, 8192), cn = config_for(nobos, 8192);
    char hay[1024];
    hs_test_fixture_path(hay, sizeof hay, "haystack.txt");
    hs_dataset *d = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_dataset_text(tok, &c, "/nonexistent/corpus.txt", 64, 0, 0, &d, &err), HS_ERR_IO);
    cr_assert(strstr(err.msg, "/nonexistent/corpus.txt"), "%s", err.msg);
    cr_assert_eq(hs_dataset_text(tok, &c, hay, 1, 0, 0, &d, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "seq_len 1"), "%s", err.msg);
    const char *tiny = write_tmp("tiny.txt", "Just a few words.");
    cr_assert_eq(hs_dataset_text(tok, &c, tiny, 64, 0, 0, &d, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, tiny) && strstr(err.msg, "fewer than one window of 64"), "%s", err.msg);
    const char *bad = write_tmp("bad.txt", "valid text, then \xff\xfe bytes that are not UTF-8");
    cr_assert_eq(hs_dataset_text(tok, &c, bad, 4, 0, 0, &d, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, bad) && strstr(err.msg, "UTF-8"), "%s", err.msg);
    cr_assert_eq(hs_tokenizer_bos_id(nobos), -1, "the GPT-2 fixture tokenizer has no BOS");
    cr_assert_eq(hs_dataset_text(nobos, &cn, hay, 64, 0, 1, &d, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "no BOS"), "%s", err.msg);
    c.learned_pos = 1, c.n_ctx = 32;
    cr_assert_eq(hs_dataset_text(tok, &c, hay, 64, 0, 0, &d, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "context 32"), "%s", err.msg);
    cr_assert_null(d);
    hs_tokenizer_free(nobos);
    hs_tokenizer_free(tok);
    remove_dir();
}

/* A tokenizer may know more ids than the model (added tokens past its embedding): every
 * generator refuses a prompt with one, naming the id and the vocabulary. Here the model is
 * given a vocabulary of 40 ids, which every text reaches past. */
Test(dataset_errors, ids_outside_the_model_vocabulary) {
    make_dir();
    hs_tokenizer *tok = fixture_tok("tokenizer/bpe_gpt2.json"), *names = load_tok(names_tokenizer());
    hs_model_config c = config_for(tok, 8192), cn = config_for(names, 256);
    c.n_vocab = cn.n_vocab = 40;
    char hay[1024];
    hs_test_fixture_path(hay, sizeof hay, "haystack.txt");
    const double depth = 0.5;
    const int len = 300;
    hs_dataset *d = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_dataset_text(tok, &c, hay, 64, 0, 0, &d, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, hay) && strstr(err.msg, "outside the model's vocabulary of 40"), "%s", err.msg);
    cr_assert_eq(hs_dataset_needle(tok, &c, hay, NEEDLE, QUESTION, NULL, &depth, 1, &len, 1, 0, &d, &err),
                 HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "needle: token id") && strstr(err.msg, "vocabulary [0, 40)"), "%s", err.msg);
    cr_assert_eq(hs_dataset_ioi(names, &cn, 4, 2, HS_DATASET_IOI_ALL, &d, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "ioi: token id") && strstr(err.msg, "vocabulary [0, 40)"), "%s", err.msg);
    const char *p = write_tmp("big.jsonl", "{\"prompt\": \"The cat sat on the mat\"}\n");
    cr_assert_eq(hs_dataset_load_jsonl(p, tok, &c, 0, &d, &err), HS_ERR_FORMAT);
    cr_assert(strstr(err.msg, "big.jsonl:1:") && strstr(err.msg, "vocabulary [0, 40)"), "%s", err.msg);
    cr_assert_null(d);
    hs_tokenizer_free(names);
    hs_tokenizer_free(tok);
    remove_dir();
}

/* ---- round trips without text ------------------------------------------------------- */

Test(dataset_roundtrip, induction_as_token_ids) {
    make_dir();
    hs_model_config c;
    memset(&c, 0, sizeof c);
    c.n_vocab = 500, c.n_ctx = 64, c.bos_token_id = 1;
    hs_dataset *d = NULL, *e = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_dataset_induction(&c, 6, 10, 3, 500, 11, &d, &err), HS_OK, "%s", err.msg);
    char path[256];
    snprintf(path, sizeof path, "%s/ind.jsonl", dir);
    cr_assert_eq(hs_dataset_write_jsonl(d, NULL, path, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_dataset_load_jsonl(path, NULL, &c, 0, &e, &err), HS_OK, "%s", err.msg);
    same_dataset(d, e, 0);
    cr_assert_null(e->text);
    cr_assert_str_eq(e->id[5], "5");
    hs_dataset_free(e);
    /* with a tokenizer, rows without text are still written as ids */
    hs_tokenizer *tok = fixture_tok("tokenizer/bpe_gpt2.json");
    cr_assert_eq(hs_dataset_write_jsonl(d, tok, path, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_dataset_load_jsonl(path, NULL, &c, 0, &e, &err), HS_OK, "%s", err.msg);
    same_dataset(d, e, 0);
    hs_dataset_free(e);
    hs_tokenizer_free(tok);
    hs_dataset_free(d);
    remove_dir();
}

Test(dataset_roundtrip, file_rows_and_ids_survive) {
    make_dir();
    hs_tokenizer *tok = fixture_tok("tokenizer/bpe_llama3.json");
    hs_model_config c = config_for(tok, 64);
    const char *p = write_tmp(
        "in.jsonl", "{\"prompt\": \"The cat sat on the\", \"answer\": \" world\", \"distractor\": 5, \"id\": \"a\"}\n"
                    "{\"tokens\": [0, 7, 8], \"answer\": 9, \"distractor\": 10, \"id\": \"b\"}\n");
    hs_dataset *d = NULL, *e = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_dataset_load_jsonl(p, tok, &c, 0, &d, &err), HS_OK, "%s", err.msg);
    char path[256];
    snprintf(path, sizeof path, "%s/out.jsonl", dir);
    cr_assert_eq(hs_dataset_write_jsonl(d, tok, path, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_dataset_load_jsonl(path, tok, &c, 0, &e, &err), HS_OK, "%s", err.msg);
    same_dataset(d, e, 0);
    cr_assert_str_eq(e->text[0], "The cat sat on the");
    cr_assert_null(e->text[1]);
    cr_assert_str_eq(e->id[1], "b");
    hs_dataset_free(e);
    hs_dataset_free(d);
    hs_tokenizer_free(tok);
    remove_dir();
}

/* ---- the run driver ------------------------------------------------------------------ */

static void run_config(const char *yaml, hs_status want, const char *want_msg) {
    const char *cfgp = write_tmp("c.yaml", yaml);
    hs_config *cfg = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_config_load(cfgp, NULL, 0, &cfg, &err), HS_OK, "%s", err.msg);
    hs_status st = hs_run(cfg, "x", NULL, &err);
    cr_assert_eq(st, want, "status %d: %s", st, err.msg);
    if (want_msg) cr_assert(strstr(err.msg, want_msg), "%s", err.msg);
    hs_config_free(cfg);
}

static int32_t *read_i32(const char *file, const char *name, hs_h5_shape *sh) {
    hs_h5 *f = NULL;
    hs_h5_group *g;
    int32_t *v = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_h5_open_read(file, &f, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_group_open(f, "dataset", &g, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_i32(g, name, &v, sh, &err), HS_OK, "%s: %s", name, err.msg);
    hs_h5_close(f);
    return v;
}

Test(dataset_run, file_dataset_of_token_ids_on_a_fixture_model) {
    make_dir();
    char model[1024], yaml[4096], out[256];
    hs_test_fixture_path(model, sizeof model, "models/gpt2");
    const char *data = write_tmp("d.jsonl", "{\"tokens\": [5, 6, 7, 8], \"answer\": 9, \"distractor\": 10}\n"
                                            "{\"tokens\": [11, 12, 13], \"answer\": 14, \"distractor\": 15}\n");
    snprintf(out, sizeof out, "%s/r.h5", dir);
    snprintf(yaml, sizeof yaml,
             "model: %s\noutput: %s\ndataset:\n  file: %s\nexperiments:\n"
             "  - name: abl\n    type: head_ablation\n    metric: logit_diff\n",
             model, out, data);
    run_config(yaml, HS_OK, NULL);
    hs_h5_shape sh;
    int32_t *tok = read_i32(out, "tokens", &sh), *ans = read_i32(out, "answer", NULL),
            *dis = read_i32(out, "distractor", NULL);
    cr_assert_eq(sh.dims[0], 2);
    cr_assert_eq(sh.dims[1], 4);
    cr_assert_eq(tok[4], 11);
    cr_assert_eq(tok[7], 0);
    cr_assert_eq(ans[1], 14);
    cr_assert_eq(dis[0], 10);
    free(tok), free(ans), free(dis);
    /* the same file without distractors: refused before any work, naming the experiment */
    write_tmp("d.jsonl", "{\"tokens\": [5, 6, 7, 8], \"answer\": 9}\n");
    snprintf(yaml, sizeof yaml,
             "model: %s\noutput: %s/r2.h5\ndataset:\n  file: %s\nexperiments:\n"
             "  - name: abl\n    type: head_ablation\n    metric: logit_diff\n",
             model, dir, data);
    run_config(yaml, HS_ERR_INVALID_ARG, "'abl' needs distractors");
    /* text needs a tokenizer, and this model folder has none: the error says so */
    write_tmp("d.jsonl", "{\"prompt\": \"hello\"}\n");
    snprintf(yaml, sizeof yaml,
             "model: %s\noutput: %s/r3.h5\ndataset:\n  file: %s\nexperiments:\n"
             "  - name: abl\n    type: head_ablation\n    metric: loss\n",
             model, dir, data);
    run_config(yaml, HS_ERR_INVALID_ARG, "no tokenizer");
    /* generators that need the tokenizer say so too */
    snprintf(yaml, sizeof yaml,
             "model: %s\noutput: %s/r4.h5\ndataset:\n  generator: ioi\n  n: 2\nexperiments:\n"
             "  - name: abl\n    type: head_ablation\n    metric: logit_diff\n",
             model, dir);
    const char *cfgp = write_tmp("c.yaml", yaml);
    hs_config *cfg = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_config_load(cfgp, NULL, 0, &cfg, &err), HS_OK, "%s", err.msg);
    cr_assert_neq(hs_run(cfg, "x", NULL, &err), HS_OK);
    cr_assert(strstr(err.msg, "needs the model's tokenizer"), "%s", err.msg);
    hs_config_free(cfg);
    remove_dir();
}

Test(dataset_run, ioi_needle_and_text_on_smollm2, .timeout = 300) {
    char model[1024];
    if (!hs_test_smollm2_path(model, sizeof model))
        cr_skip_test("SmolLM2 GGUF not found (set HS_SMOLLM2_GGUF or run scripts/fetch-model.sh)");
    make_dir();
    char hay[1024], yaml[4096], out[256];
    hs_test_fixture_path(hay, sizeof hay, "haystack.txt");
    snprintf(out, sizeof out, "%s/ioi.h5", dir);
    snprintf(yaml, sizeof yaml,
             "model: %s\noutput: %s\nseed: 3\ndataset:\n  generator: ioi\n  n: 3\nexperiments:\n"
             "  - name: cap\n    type: capture\n    hooks: [z]\n    layers: [0]\n",
             model, out);
    run_config(yaml, HS_OK, NULL);
    hs_h5_shape sh;
    int32_t *t = read_i32(out, "template_id", &sh), *ct = read_i32(out, "corrupt_tokens", NULL);
    cr_assert_eq(sh.dims[0], 3);
    free(t), free(ct);
    snprintf(out, sizeof out, "%s/needle.h5", dir);
    snprintf(yaml, sizeof yaml,
             "model: %s\noutput: %s\ndataset:\n  generator: needle\n  haystack: %s\n  needle: \"%s\"\n"
             "  question: \"%s\"\n  depths: [0.5]\n  lengths: [128]\nexperiments:\n"
             "  - name: cap\n    type: capture\n    hooks: [z]\n    layers: [0]\n",
             model, out, hay, NEEDLE, QUESTION);
    run_config(yaml, HS_OK, NULL);
    int32_t *ns = read_i32(out, "needle_start", &sh), *nl = read_i32(out, "needle_len", NULL);
    cr_assert_eq(sh.dims[0], 1);
    cr_assert_gt(ns[0], 10);
    cr_assert_gt(nl[0], 5);
    free(ns), free(nl);

    /* perplexity windows: the run's unablated loss of each window is its mean next-token NLL */
    snprintf(out, sizeof out, "%s/text.h5", dir);
    snprintf(yaml, sizeof yaml,
             "model: %s\noutput: %s\ndataset:\n  generator: text\n  corpus: %s\n  seq_len: 32\n  windows: 2\n"
             "experiments:\n  - name: abl\n    type: head_ablation\n    metric: loss\n    layers: [0]\n"
             "    heads: [0]\n",
             model, out, hay);
    run_config(yaml, HS_OK, NULL);
    int32_t *tok = read_i32(out, "tokens", &sh);
    cr_assert(sh.dims[0] == 2 && sh.dims[1] == 32);
    hs_h5 *f = NULL;
    hs_h5_group *g;
    float *base = NULL;
    char *kind = NULL;
    hs_err err = {0};
    cr_assert_eq(hs_h5_open_read(out, &f, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_group_open(f, "dataset", &g, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_attr_str(g, NULL, "kind", &kind, &err), HS_OK, "%s", err.msg);
    cr_assert_str_eq(kind, "text");
    cr_assert_eq(hs_h5_group_open(f, "abl", &g, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_h5_read_f32(g, "base", &base, &sh, &err), HS_OK, "%s", err.msg);
    hs_h5_close(f);
    hs_model *m = NULL;
    hs_backend *be = NULL;
    hs_session *s = NULL;
    cr_assert_eq(hs_model_load(model, &m, &err), HS_OK, "%s", err.msg);
    const int V = hs_model_get_config(m)->n_vocab;
    float *lg = malloc((size_t)2 * 32 * V * sizeof *lg);
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_session_init(be, m, 2, 32, &s, &err), HS_OK, "%s", err.msg);
    hs_batch b = {.B = 2, .T = 32, .tokens = tok};
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = HS_LOGITS_ALL;
    cr_assert_eq(hs_forward(s, &b, &fp, lg, &err), HS_OK, "%s", err.msg);
    for (int r = 0; r < 2; r++) {
        double nll = 0;
        for (int p = 0; p < 31; p++) {
            const float *x = lg + ((int64_t)r * 32 + p) * V;
            double mx = x[0], z = 0;
            for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
            for (int v = 0; v < V; v++) z += exp(x[v] - mx);
            nll += mx + log(z) - x[tok[r * 32 + p + 1]];
        }
        nll /= 31;
        cr_assert(fabs(base[r] - nll) <= 1e-5 * (1 + fabs(nll)), "window %d: loss %.7g, mean NLL %.7g", r, base[r], nll);
    }
    free(lg), free(base), free(kind), free(tok);
    hs_session_free(s);
    hs_backend_free(be);
    hs_model_free(m);
    remove_dir();
}
