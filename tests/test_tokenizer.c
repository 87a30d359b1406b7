/* Tokenizer conformance against HF `tokenizers` (goldens made by
 * tests/fixtures/make_tokenizer_fixtures.py), decode round trips, added and
 * special tokens, errors on bad tokenizer.json / GGUF metadata, and linear
 * cost on 1 MB inputs. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "headsweep/hs_tokenizer.h"
#include "hs_gguf_writer.h"
#include "hs_testutil.h"
#include "hs_unicode_nfc.h"

/* ---- fixtures ------------------------------------------------------------------ */

typedef struct {
    int n;
    char **text;
    size_t *len;
} corpus;

static corpus load_corpus(void) {
    char path[1024];
    hs_test_fixture_path(path, sizeof path, "tokenizer/corpus.jsonl");
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    corpus c = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, f)) > 0) {
        json_error_t je;
        json_t *s = json_loadb(line, (size_t)got, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        cr_assert(json_is_string(s), "%s line %d: %s", path, c.n + 1, je.text);
        c.text = realloc(c.text, (size_t)(c.n + 1) * sizeof *c.text);
        c.len = realloc(c.len, (size_t)(c.n + 1) * sizeof *c.len);
        c.len[c.n] = json_string_length(s);
        c.text[c.n] = malloc(c.len[c.n] + 1);
        memcpy(c.text[c.n], json_string_value(s), c.len[c.n] + 1);
        c.n++;
        json_decref(s);
    }
    free(line);
    fclose(f);
    cr_assert_geq(c.n, 2000, "corpus has %d lines", c.n);
    return c;
}

static void free_corpus(corpus *c) {
    for (int i = 0; i < c->n; i++) free(c->text[i]);
    free(c->text);
    free(c->len);
}

/* Golden line i: space-separated ids; returns the count (ids in out[]). */
static int parse_ids(const char *s, int32_t *out, int cap) {
    int n = 0;
    while (*s && *s != '\n') {
        char *end;
        long v = strtol(s, &end, 10);
        cr_assert(end != s, "bad golden line '%s'", s);
        cr_assert_lt(n, cap);
        out[n++] = (int32_t)v;
        s = end;
        while (*s == ' ') s++;
    }
    return n;
}

static void fmt_ids(char *o, size_t cap, const int32_t *ids, int n) {
    size_t k = 0;
    o[0] = 0;
    for (int i = 0; i < n && k + 16 < cap; i++) k += (size_t)snprintf(o + k, cap - k, "%s%d", i ? " " : "", (int)ids[i]);
}

static void fmt_text(char *o, size_t cap, const char *s, size_t len) {
    size_t k = 0;
    for (size_t i = 0; i < len && k + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') k += (size_t)snprintf(o + k, cap - k, "\\n");
        else if (c < 0x20 || c == 0x7f) k += (size_t)snprintf(o + k, cap - k, "\\x%02x", c);
        else o[k++] = (char)c;
    }
    o[k] = 0;
}

static hs_tokenizer *load_fixture(const char *rel) {
    char path[1024];
    hs_err err = {0};
    hs_tokenizer *tok = NULL;
    hs_test_fixture_path(path, sizeof path, rel);
    cr_assert_eq(hs_tokenizer_load(path, &tok, &err), HS_OK, "%s", err.msg);
    return tok;
}

/* Round-trip exceptions inherent in a tokenizer (see hs_tokenizer.h). */
enum { RT_SKIP_MASK = 1, RT_SKIP_SPACEMARK = 2, RT_SKIP_METASPACE_FIRST = 4, RT_SKIP_NFC = 8 };

static int rt_skipped(const char *s, int flags) {
    if (flags & RT_SKIP_NFC) { /* an NFC normalizer decodes to the NFC text */
        char *nfc;
        size_t n;
        cr_assert_eq(hs_unicode_nfc(s, strlen(s), &nfc, &n), 0);
        const int differs = nfc && (n != strlen(s) || memcmp(nfc, s, n));
        free(nfc);
        if (differs) return 1;
    }
    if ((flags & RT_SKIP_MASK) && strstr(s, "<mask>")) return 1;
    if ((flags & (RT_SKIP_SPACEMARK | RT_SKIP_METASPACE_FIRST)) && strstr(s, "\xe2\x96\x81")) return 1;
    if ((flags & RT_SKIP_METASPACE_FIRST) && (s[0] == ' ' || !strncmp(s, "<s>", 3))) return 1;
    return 0;
}

/* Every corpus line: ids equal to the golden; decode gives the line back. */
static void check_corpus(hs_tokenizer *tok, const char *golden, int rt_flags) {
    corpus c = load_corpus();
    char path[1024], *line = NULL;
    size_t cap = 0;
    hs_test_fixture_path(path, sizeof path, golden);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    static int32_t want[1 << 16];
    int bad = 0, first_bad = -1, rt_bad = 0, rt_checked = 0, first_rt = -1;
    char msg[4096] = "";
    for (int i = 0; i < c.n; i++) {
        cr_assert_gt(getline(&line, &cap, f), 0, "%s ends at line %d", golden, i + 1);
        int nw = parse_ids(line, want, 1 << 16);
        int32_t *ids;
        int n;
        hs_err err = {0};
        cr_assert_eq(hs_tokenizer_encode(tok, c.text[i], c.len[i], 0, &ids, &n, &err), HS_OK, "line %d: %s", i + 1,
                     err.msg);
        if (n != nw || memcmp(ids, want, (size_t)n * sizeof *ids)) {
            if (!bad++) {
                char t[512], a[1200], b[1200];
                fmt_text(t, sizeof t, c.text[i], c.len[i]);
                fmt_ids(a, sizeof a, want, nw);
                fmt_ids(b, sizeof b, ids, n);
                snprintf(msg, sizeof msg, "corpus line %d \"%s\"\n  HF:        %s\n  headsweep: %s", i + 1, t, a, b);
                first_bad = i + 1;
            }
        }
        if (!rt_skipped(c.text[i], rt_flags)) {
            char *back;
            size_t blen;
            cr_assert_eq(hs_tokenizer_decode(tok, ids, n, 0, &back, &blen, &err), HS_OK, "%s", err.msg);
            rt_checked++;
            if (blen != c.len[i] || memcmp(back, c.text[i], blen)) {
                if (!rt_bad++) first_rt = i + 1;
            }
            free(back);
        }
        free(ids);
    }
    cr_log_info("%s: %d lines, %d exact, %d/%d round trips exact", golden, c.n, c.n - bad, rt_checked - rt_bad,
                rt_checked);
    fprintf(stderr, "%s: %d lines, %d exact matches; %d/%d round trips exact\n", golden, c.n, c.n - bad,
            rt_checked - rt_bad, rt_checked);
    free(line);
    fclose(f);
    free_corpus(&c);
    cr_assert_eq(bad, 0, "%s: %d of the corpus lines differ (first at line %d):\n%s", golden, bad, first_bad, msg);
    cr_assert_eq(rt_bad, 0, "%s: %d round trips differ, first at corpus line %d", golden, rt_bad, first_rt);
}

Test(tokenizer_conformance, bpe_gpt2) {
    hs_tokenizer *tok = load_fixture("tokenizer/bpe_gpt2.json");
    check_corpus(tok, "tokenizer/golden_bpe_gpt2.txt", RT_SKIP_MASK);
    hs_tokenizer_free(tok);
}

Test(tokenizer_conformance, bpe_llama3) {
    hs_tokenizer *tok = load_fixture("tokenizer/bpe_llama3.json");
    check_corpus(tok, "tokenizer/golden_bpe_llama3.txt", 0);
    hs_tokenizer_free(tok);
}

/* Pythia's layout: NFC, then normalized added tokens matched on the NFC text */
Test(tokenizer_conformance, bpe_neox) {
    hs_tokenizer *tok = load_fixture("tokenizer/bpe_neox.json");
    check_corpus(tok, "tokenizer/golden_bpe_neox.txt", RT_SKIP_NFC);
    hs_tokenizer_free(tok);
}

/* Falcon's layout: Punctuation (contiguous), the ByteLevel split, then Digits and a Split on
 * three digits matched against the byte alphabet, where they cut characters' bytes apart */
Test(tokenizer_conformance, bpe_falcon) {
    hs_tokenizer *tok = load_fixture("tokenizer/bpe_falcon.json");
    check_corpus(tok, "tokenizer/golden_bpe_falcon.txt", 0);
    hs_tokenizer_free(tok);
}

Test(tokenizer_conformance, spm_bpe) {
    hs_tokenizer *tok = load_fixture("tokenizer/spm_bpe.json");
    check_corpus(tok, "tokenizer/golden_spm_bpe.txt", RT_SKIP_SPACEMARK);
    hs_tokenizer_free(tok);
}

/* Gemma's layout: Replace(" ", "▁") with no prefix mark, Split(" ", MergedWithPrevious). */
Test(tokenizer_conformance, spm_gemma) {
    hs_tokenizer *tok = load_fixture("tokenizer/spm_gemma.json");
    check_corpus(tok, "tokenizer/golden_spm_gemma.txt", RT_SKIP_SPACEMARK);
    hs_tokenizer_free(tok);
}

Test(tokenizer_conformance, spm_gguf) {
    hs_tokenizer *tok = load_fixture("tokenizer/spm_bpe.gguf");
    check_corpus(tok, "tokenizer/golden_spm_gguf.txt", RT_SKIP_METASPACE_FIRST);
    hs_tokenizer_free(tok);
}

Test(tokenizer_conformance, smollm2_gguf) {
    char path[1024];
    if (!hs_test_smollm2_path(path, sizeof path))
        cr_skip_test("SmolLM2 GGUF not found (set HS_SMOLLM2_GGUF or run scripts/fetch-model.sh)");
    hs_err err = {0};
    hs_tokenizer *tok = NULL;
    cr_assert_eq(hs_tokenizer_load(path, &tok, &err), HS_OK, "%s", err.msg);
    check_corpus(tok, "tokenizer/golden_smollm2.txt", 0);
    hs_tokenizer_free(tok);
}

/* cases.jsonl: add_special on and off, the SmolLM2 chat template, Punctuation's behaviours and
 * every code point `tokenizers` or Unicode's \p{P} calls punctuation, between letters. */
Test(tokenizer_conformance, cases) {
    static const char *const files[][2] = {{"bpe_gpt2", "tokenizer/bpe_gpt2.json"},
                                           {"bpe_llama3", "tokenizer/bpe_llama3.json"},
                                           {"spm_bpe", "tokenizer/spm_bpe.json"},
                                           {"spm_gemma", "tokenizer/spm_gemma.json"},
                                           {"spm_merged", "tokenizer/spm_merged.json"},
                                           {"spm_gguf", "tokenizer/spm_bpe.gguf"},
                                           {"bpe_neox", "tokenizer/bpe_neox.json"},
                                           {"bpe_falcon", "tokenizer/bpe_falcon.json"},
                                           {"bpe_punct_isolated", "tokenizer/bpe_punct_isolated.json"},
                                           {"bpe_punct_removed", "tokenizer/bpe_punct_removed.json"},
                                           {"bpe_punct_merged", "tokenizer/bpe_punct_merged.json"},
                                           {"smollm2", NULL}};
    enum { N_TOK = sizeof files / sizeof *files };
    hs_tokenizer *toks[N_TOK] = {0};
    char path[1024];
    for (int i = 0; i < N_TOK; i++) {
        if (files[i][1]) toks[i] = load_fixture(files[i][1]);
        else if (hs_test_smollm2_path(path, sizeof path)) cr_assert_eq(hs_tokenizer_load(path, &toks[i], NULL), HS_OK);
    }
    hs_test_fixture_path(path, sizeof path, "tokenizer/cases.jsonl");
    json_error_t je;
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char *line = NULL;
    size_t cap = 0;
    int checked = 0, chat = 0, punct = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *c = json_loads(line, JSON_ALLOW_NUL, &je);
        cr_assert_not_null(c, "%s", je.text);
        const char *name = json_string_value(json_object_get(c, "tok"));
        hs_tokenizer *tok = NULL;
        for (int i = 0; i < N_TOK; i++)
            if (!strcmp(name, files[i][0])) tok = toks[i];
        json_t *text = json_object_get(c, "text"), *want = json_object_get(c, "ids");
        if (tok) {
            int32_t *ids;
            int n;
            cr_assert_eq(hs_tokenizer_encode(tok, json_string_value(text), json_string_length(text),
                                             json_is_true(json_object_get(c, "add_special")), &ids, &n, NULL),
                         HS_OK);
            int ok = n == (int)json_array_size(want);
            for (int k = 0; ok && k < n; k++) ok = ids[k] == json_integer_value(json_array_get(want, k));
            cr_assert(ok, "%s: case %s differs (got %d ids)", name, line, n);
            checked++;
            const char *what = json_string_value(json_object_get(c, "what"));
            chat += what && !strcmp(what, "chat template");
            punct += what && !strcmp(what, "punctuation set");
            free(ids);
        }
        json_decref(c);
    }
    free(line);
    fclose(f);
    cr_assert_geq(checked, 70);
    cr_assert_geq(punct, 8, "the punctuation-set cases were not checked");
    if (toks[N_TOK - 1]) cr_assert_eq(chat, 1, "the SmolLM2 chat-template case was not checked");
    for (int i = 0; i < N_TOK; i++) hs_tokenizer_free(toks[i]);
}

/* NFC against Python's unicodedata.normalize on nfc_cases.jsonl: every code
 * point NFC changes, every composable pair, Hangul jamo, marks out of order
 * and the corpus lines beyond U+0300. */
Test(tokenizer, nfc_matches_unicodedata) {
    char path[1024];
    hs_test_fixture_path(path, sizeof path, "tokenizer/nfc_cases.jsonl");
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    char *line = NULL;
    size_t cap = 0;
    int n = 0, changed = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *c = json_loads(line, 0, &je);
        cr_assert_not_null(c, "%s: %s", path, je.text);
        json_t *text = json_object_get(c, "text"), *want = json_object_get(c, "nfc");
        char *got;
        size_t glen;
        cr_assert_eq(hs_unicode_nfc(json_string_value(text), json_string_length(text), &got, &glen), 0);
        const char *g = got ? got : json_string_value(text);
        if (!got) glen = json_string_length(text);
        char shown[512];
        fmt_text(shown, sizeof shown, json_string_value(text), json_string_length(text));
        cr_assert(glen == json_string_length(want) && !memcmp(g, json_string_value(want), glen),
                  "%s line %d: NFC of '%s' differs from unicodedata's", path, n + 1, shown);
        changed += json_string_length(want) != json_string_length(text) ||
                   memcmp(json_string_value(want), json_string_value(text), glen);
        free(got);
        json_decref(c);
        n++;
    }
    free(line);
    fclose(f);
    cr_assert_gt(n, 1000, "only %d cases", n);
    cr_assert_gt(changed, 300, "only %d cases change under NFC", changed);
    cr_log_info("NFC (Unicode %s): %d cases, %d changed by NFC", hs_unicode_nfc_version(), n, changed);
}

/* ---- special tokens, pieces, decode --------------------------------------------- */

Test(tokenizer, special_and_added_tokens) {
    hs_tokenizer *tok = load_fixture("tokenizer/bpe_gpt2.json");
    cr_assert_eq(hs_tokenizer_piece_id(tok, "<|endoftext|>"), 0);
    cr_assert(hs_tokenizer_is_special(tok, 0));
    int32_t mask = hs_tokenizer_piece_id(tok, "<mask>");
    cr_assert_eq(mask, 1000);
    cr_assert(!hs_tokenizer_is_special(tok, mask));
    cr_assert_eq(hs_tokenizer_bos_id(tok), -1);
    cr_assert_eq(hs_tokenizer_vocab_size(tok), 1002);
    int32_t *ids;
    int n;
    /* lstrip swallows the spaces before <mask>; special tokens match inside words */
    const char *t = "a   <mask>x<|endoftext|>y";
    cr_assert_eq(hs_tokenizer_encode(tok, t, strlen(t), 1, &ids, &n, NULL), HS_OK);
    cr_assert_geq(n, 5);
    cr_assert_eq(ids[1], mask, "lstrip: got %d", ids[1]);
    char *s;
    size_t len;
    cr_assert_eq(hs_tokenizer_decode(tok, ids, n, 0, &s, &len, NULL), HS_OK);
    cr_assert_str_eq(s, "a<mask>x<|endoftext|>y");
    free(s);
    cr_assert_eq(hs_tokenizer_decode(tok, ids, n, HS_TOK_DECODE_SKIP_SPECIAL, &s, &len, NULL), HS_OK);
    cr_assert_str_eq(s, "a<mask>xy");
    free(s);
    free(ids);
    /* single_word: [[name]] only between non-word characters */
    cr_assert_eq(hs_tokenizer_encode(tok, "x[[name]]", 9, 0, &ids, &n, NULL), HS_OK);
    for (int i = 0; i < n; i++) cr_assert_neq(ids[i], 1001);
    free(ids);
    cr_assert_eq(hs_tokenizer_encode(tok, "([[name]])", 10, 0, &ids, &n, NULL), HS_OK);
    cr_assert(n == 3 && ids[1] == 1001, "n = %d", n);
    free(ids);
    hs_tokenizer_free(tok);
}

Test(tokenizer, bos_pieces_and_errors) {
    hs_tokenizer *tok = load_fixture("tokenizer/spm_bpe.json");
    cr_assert_eq(hs_tokenizer_bos_id(tok), 1);
    cr_assert(hs_tokenizer_add_bos(tok));
    cr_assert(!hs_tokenizer_add_eos(tok));
    cr_assert_str_eq(hs_tokenizer_token_piece(tok, 1), "<s>");
    cr_assert_str_eq(hs_tokenizer_token_piece(tok, 3 + 0x0A), "<0x0A>");
    cr_assert_null(hs_tokenizer_token_piece(tok, 1 << 20));
    int32_t *ids;
    int n;
    hs_err err = {0};
    cr_assert_eq(hs_tokenizer_encode(tok, "ok\xff", 3, 0, &ids, &n, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "UTF-8 at byte 2"), "%s", err.msg);
    cr_assert_null(ids);
    cr_assert_eq(hs_tokenizer_encode(tok, "Hi", 2, 1, &ids, &n, NULL), HS_OK);
    cr_assert_eq(ids[0], 1);
    char *s;
    size_t len;
    cr_assert_eq(hs_tokenizer_decode(tok, ids, n, HS_TOK_DECODE_SKIP_SPECIAL, &s, &len, NULL), HS_OK);
    cr_assert_str_eq(s, "Hi");
    free(s);
    free(ids);
    int32_t badid = 5000;
    cr_assert_eq(hs_tokenizer_decode(tok, &badid, 1, 0, &s, &len, &err), HS_ERR_INVALID_ARG);
    cr_assert(strstr(err.msg, "5000"), "%s", err.msg);
    cr_assert_eq(hs_tokenizer_encode(tok, "", 0, 0, &ids, &n, NULL), HS_OK);
    cr_assert(n == 0 && ids);
    free(ids);
    hs_tokenizer_free(tok);
}

/* ---- bad tokenizer.json ---------------------------------------------------------- */

typedef struct {
    char dir[64], path[128];
} tmp_place;

static void tmp_open(tmp_place *t, const char *name) {
    snprintf(t->dir, sizeof t->dir, "/tmp/hs_test_tok_XXXXXX");
    cr_assert_not_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/%s", t->dir, name);
}

static void tmp_close(tmp_place *t) {
    unlink(t->path);
    rmdir(t->dir);
}

/* Loads bpe_gpt2.json changed by edit(root); returns the status, err filled. */
static hs_status load_edited(void (*edit)(json_t *), hs_err *err) {
    char src[1024];
    json_error_t je;
    hs_test_fixture_path(src, sizeof src, "tokenizer/bpe_gpt2.json");
    json_t *root = json_load_file(src, 0, &je);
    cr_assert_not_null(root, "%s", je.text);
    edit(root);
    tmp_place t;
    tmp_open(&t, "tokenizer.json");
    cr_assert_eq(json_dump_file(root, t.path, 0), 0);
    json_decref(root);
    hs_tokenizer *tok = NULL;
    hs_status st = hs_tokenizer_load(t.dir, &tok, err); /* the folder form */
    hs_tokenizer_free(tok);
    tmp_close(&t);
    return st;
}

static json_t *model_of(json_t *r) { return json_object_get(r, "model"); }
static void no_model(json_t *r) { json_object_del(r, "model"); }
static void wordpiece(json_t *r) { json_object_set_new(model_of(r), "type", json_string("WordPiece")); }
static void whitespace_pre(json_t *r) {
    json_object_set_new(r, "pre_tokenizer", json_pack("{s:s}", "type", "Whitespace"));
}
static void nfkc(json_t *r) { json_object_set_new(r, "normalizer", json_pack("{s:s}", "type", "NFKC")); }
static void dropout(json_t *r) { json_object_set_new(model_of(r), "dropout", json_real(0.1)); }
static void three_part_merge(json_t *r) {
    json_array_set_new(json_object_get(model_of(r), "merges"), 5, json_string("a b c"));
}
static void unknown_merge(json_t *r) {
    json_array_set_new(json_object_get(model_of(r), "merges"), 3, json_pack("[ss]", "zzqx", "b"));
}
static void bad_regex(json_t *r) {
    json_object_set_new(r, "pre_tokenizer", json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex",
                                                      "(\\p{L}+", "behavior", "Isolated", "invert", 0));
}
static void onig_only_regex(json_t *r) {
    json_object_set_new(r, "pre_tokenizer", json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex",
                                                      "\\h+", "behavior", "Isolated", "invert", 0));
}
static void bad_added_id(json_t *r) {
    json_object_set_new(json_array_get(json_object_get(r, "added_tokens"), 0), "id", json_integer(-1));
}
static void string_vocab_id(json_t *r) {
    json_object_set_new(json_object_get(model_of(r), "vocab"), "a", json_string("7"));
}
/* bpe_gpt2's ByteLevel, then `after` */
static void after_byte_level(json_t *r, json_t *after) {
    json_t *bl = json_incref(json_object_get(r, "pre_tokenizer"));
    json_object_set_new(r, "pre_tokenizer", json_pack("{s:s, s:[o, o]}", "type", "Sequence", "pretokenizers", bl, after));
}
static void metaspace_after_byte_level(json_t *r) {
    after_byte_level(r, json_pack("{s:s, s:s, s:s}", "type", "Metaspace", "replacement", "_", "prepend_scheme", "never"));
}
static void byte_level_twice(json_t *r) { after_byte_level(r, json_pack("{s:s}", "type", "ByteLevel")); }
static void punct_merged_next(json_t *r) {
    json_object_set_new(r, "pre_tokenizer", json_pack("{s:s, s:s}", "type", "Punctuation", "behavior", "MergedWithNext"));
}

Test(tokenizer_errors, bad_tokenizer_json) {
    static const struct {
        void (*edit)(json_t *);
        hs_status want;
        const char *msg1, *msg2;
    } cases[] = {
        {no_model, HS_ERR_MISSING, "tokenizer.json", "'model'"},
        {wordpiece, HS_ERR_UNSUPPORTED, "model.type", "WordPiece"},
        {whitespace_pre, HS_ERR_UNSUPPORTED, "pre_tokenizer", "'Whitespace'"},
        {nfkc, HS_ERR_UNSUPPORTED, "normalizer", "'NFKC'"},
        {dropout, HS_ERR_UNSUPPORTED, "model.dropout", "random"},
        {three_part_merge, HS_ERR_FORMAT, "model.merges[5]", "'a b c'"},
        {unknown_merge, HS_ERR_FORMAT, "model.merges[3]", "'zzqx' is not in the vocabulary"},
        {bad_regex, HS_ERR_UNSUPPORTED, "pre_tokenizer", "does not compile"},
        {onig_only_regex, HS_ERR_UNSUPPORTED, "pre_tokenizer", "\\h"},
        {bad_added_id, HS_ERR_FORMAT, "added_tokens[0]", "id"},
        {string_vocab_id, HS_ERR_FORMAT, "model.vocab['a']", "integer"},
        {metaspace_after_byte_level, HS_ERR_UNSUPPORTED, "pre_tokenizer.pretokenizers[1]",
         "a Metaspace pre-tokenizer after ByteLevel is not supported"},
        {byte_level_twice, HS_ERR_UNSUPPORTED, "pre_tokenizer.pretokenizers[1]", "a ByteLevel pre-tokenizer after"},
        {punct_merged_next, HS_ERR_UNSUPPORTED, "pre_tokenizer", "Punctuation behavior 'MergedWithNext'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hs_err err = {0};
        hs_status st = load_edited(cases[i].edit, &err);
        cr_assert_eq(st, cases[i].want, "case %zu: status %s (%s)", i, hs_status_str(st), err.msg);
        cr_assert(strstr(err.msg, cases[i].msg1) && strstr(err.msg, cases[i].msg2), "case %zu: message '%s'", i, err.msg);
    }
}

/* Added tokens are matched after the normalizer only when it is NFC alone. */
static void normalized_added_with_replace(json_t *r) {
    json_object_set_new(r, "normalizer", json_pack("{s:s, s:{s:s}, s:s}", "type", "Replace", "pattern", "String", "x",
                                                   "content", "y"));
    json_array_append_new(json_object_get(r, "added_tokens"),
                          json_pack("{s:i, s:s, s:b, s:b}", "id", 7, "content", "ab", "normalized", 1, "special", 0));
}

Test(tokenizer_errors, normalized_added_tokens_need_nfc_alone) {
    hs_err err = {0};
    cr_assert_eq(load_edited(normalized_added_with_replace, &err), HS_ERR_UNSUPPORTED, "%s", err.msg);
    cr_assert(strstr(err.msg, "'ab'") && strstr(err.msg, "other than NFC"), "%s", err.msg);
}

Test(tokenizer_errors, unreadable_files) {
    hs_err err = {0};
    hs_tokenizer *tok = NULL;
    cr_assert_eq(hs_tokenizer_load("/nonexistent/tokenizer.json", &tok, &err), HS_ERR_IO);
    cr_assert(strstr(err.msg, "/nonexistent/tokenizer.json"), "%s", err.msg);
    tmp_place t;
    tmp_open(&t, "tokenizer.json");
    FILE *f = fopen(t.path, "w");
    fputs("{\"model\": {\"vocab\": {\"a\": 0},\n \"merges\": [}", f);
    fclose(f);
    cr_assert_eq(hs_tokenizer_load(t.path, &tok, &err), HS_ERR_FORMAT);
    cr_assert(strstr(err.msg, "line 2"), "%s", err.msg);
    cr_assert_null(tok);
    cr_assert_eq(hs_tokenizer_load(t.dir, &tok, &err), HS_ERR_FORMAT); /* the folder form */
    tmp_close(&t);
    tmp_open(&t, "empty");
    cr_assert_eq(mkdir(t.path, 0700), 0);
    cr_assert_eq(hs_tokenizer_load(t.path, &tok, &err), HS_ERR_MISSING);
    cr_assert(strstr(err.msg, "no tokenizer.json"), "%s", err.msg);
    rmdir(t.path);
    tmp_close(&t);
}

/* ---- GGUF tokenizer metadata ----------------------------------------------------------- */

typedef struct {
    const char *model, *pre, *merge;
    int scores, types_n, bos;
} gguf_spec;

/* A tokenizer-only GGUF: tokens a, b, ab, Ġ, <s>; merge "a b"; written to a file. */
static hs_status load_gguf(const gguf_spec *sp, hs_tokenizer **tok, hs_err *err) {
    static const char *const toks[] = {"a", "b", "ab", "\xc4\xa0", "<s>"};
    gw_file f;
    gw_init(&f);
    gw_kv_str(&f, "general.architecture", "llama");
    if (sp->model) gw_kv_str(&f, "tokenizer.ggml.model", sp->model);
    if (sp->pre) gw_kv_str(&f, "tokenizer.ggml.pre", sp->pre);
    gw_kv_arr_begin(&f, "tokenizer.ggml.tokens", HS_GGUF_TYPE_STRING, 5);
    for (int i = 0; i < 5; i++) gw_str(&f.kv, toks[i]);
    gw_kv_arr_begin(&f, "tokenizer.ggml.token_type", HS_GGUF_TYPE_INT32, (uint64_t)sp->types_n);
    for (int i = 0; i < sp->types_n; i++) gw_u32(&f.kv, i == 4 ? 3 : 1);
    if (sp->merge) {
        gw_kv_arr_begin(&f, "tokenizer.ggml.merges", HS_GGUF_TYPE_STRING, 1);
        gw_str(&f.kv, sp->merge);
    }
    if (sp->scores) {
        gw_kv_arr_begin(&f, "tokenizer.ggml.scores", HS_GGUF_TYPE_FLOAT32, 5);
        for (int i = 0; i < 5; i++) {
            float v = -(float)i;
            gw_put(&f.kv, &v, 4);
        }
    }
    gw_kv_u32(&f, "tokenizer.ggml.bos_token_id", (uint32_t)sp->bos);
    size_t size;
    uint8_t *data = gw_build(&f, &size);
    tmp_place t;
    tmp_open(&t, "tok.gguf");
    FILE *fp = fopen(t.path, "wb");
    cr_assert_eq(fwrite(data, 1, size, fp), size);
    fclose(fp);
    hs_status st = hs_tokenizer_load(t.path, tok, err);
    tmp_close(&t);
    free(data);
    gw_free(&f);
    return st;
}

Test(tokenizer_errors, gguf_metadata) {
    hs_tokenizer *tok = NULL;
    hs_err err = {0};
    gguf_spec ok = {"gpt2", "gpt2", "a b", 0, 5, 4};
    cr_assert_eq(load_gguf(&ok, &tok, &err), HS_OK, "%s", err.msg);
    int32_t *ids;
    int n;
    cr_assert_eq(hs_tokenizer_encode(tok, "ab ab<s>", 8, 0, &ids, &n, NULL), HS_OK);
    cr_assert(n == 4 && ids[0] == 2 && ids[1] == 3 && ids[2] == 2 && ids[3] == 4, "n = %d: %d %d %d", n, ids[0],
              ids[1], ids[2]);
    free(ids);
    hs_tokenizer_free(tok);
    tok = NULL;
    static const struct {
        gguf_spec sp;
        hs_status want;
        const char *msg;
    } bad[] = {
        {{"bert", "gpt2", "a b", 0, 5, 4}, HS_ERR_UNSUPPORTED, "tokenizer.ggml.model 'bert'"},
        {{NULL, "gpt2", "a b", 0, 5, 4}, HS_ERR_MISSING, "tokenizer.ggml.model"},
        {{"gpt2", "weird", "a b", 0, 5, 4}, HS_ERR_UNSUPPORTED, "tokenizer.ggml.pre 'weird'"},
        {{"gpt2", "gpt2", "a c", 0, 5, 4}, HS_ERR_FORMAT, "tokenizer.ggml.merges[0] 'a c'"},
        {{"gpt2", "gpt2", "ab", 0, 5, 4}, HS_ERR_FORMAT, "tokenizer.ggml.merges[0]"},
        {{"gpt2", "gpt2", NULL, 0, 5, 4}, HS_ERR_MISSING, "tokenizer.ggml.merges"},
        {{"gpt2", "gpt2", "a b", 0, 3, 4}, HS_ERR_FORMAT, "tokenizer.ggml.token_type"},
        {{"gpt2", "gpt2", "a b", 0, 5, 9}, HS_ERR_FORMAT, "tokenizer.ggml.bos_token_id"},
        {{"llama", NULL, NULL, 0, 5, 4}, HS_ERR_MISSING, "tokenizer.ggml.scores"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hs_status st = load_gguf(&bad[i].sp, &tok, &err);
        cr_assert_eq(st, bad[i].want, "case %zu: %s (%s)", i, hs_status_str(st), err.msg);
        cr_assert(strstr(err.msg, bad[i].msg) && strstr(err.msg, "tok.gguf"), "case %zu: '%s'", i, err.msg);
        cr_assert_null(tok);
    }
    /* a SentencePiece vocabulary rebuilds its merges from the scores */
    gguf_spec spm = {"llama", NULL, NULL, 1, 5, 4};
    cr_assert_eq(load_gguf(&spm, &tok, &err), HS_OK, "%s", err.msg);
    cr_assert_eq(hs_tokenizer_encode(tok, "ab", 2, 1, &ids, &n, NULL), HS_OK);
    cr_assert(n == 2 && ids[0] == 4 && ids[1] == 2, "n = %d", n); /* BOS, then "ab"; no ▁ token here */
    free(ids);
    hs_tokenizer_free(tok);
}

/* ---- linear cost ---------------------------------------------------------------------------- */

/* Encodes 1 MB of one repeated character; the work counters must grow
 * linearly (every merge pushes at most two heap entries) and it must finish
 * well inside a generous time bound even at -O0 under ASan. */
static void check_linear(hs_tokenizer *tok, const char *unit, const char *what) {
    size_t u = strlen(unit), n = (1 << 20) / u * u; /* whole characters */
    char *text = malloc(n);
    for (size_t i = 0; i < n; i++) text[i] = unit[i % u];
    hs_tokenizer_stats a, b;
    hs_tokenizer_get_stats(tok, &a);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int32_t *ids;
    int nid;
    cr_assert_eq(hs_tokenizer_encode(tok, text, n, 0, &ids, &nid, NULL), HS_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    hs_tokenizer_get_stats(tok, &b);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    uint64_t pops = b.heap_pops - a.heap_pops, calls = b.regex_calls - a.regex_calls, pre = b.pretokens - a.pretokens;
    fprintf(stderr, "linear %s: 1 MiB -> %d ids in %.3f s (heap pops %llu, regex calls %llu, pre-tokens %llu)\n", what,
            nid, secs, (unsigned long long)pops, (unsigned long long)calls, (unsigned long long)pre);
    cr_assert_leq(pops, 3 * (uint64_t)n, "%s: %llu heap pops for %zu bytes", what, (unsigned long long)pops, n);
    cr_assert_leq(calls, 4 * pre + 64, "%s: %llu regex calls for %llu pre-tokens", what, (unsigned long long)calls,
                  (unsigned long long)pre);
    cr_assert_lt(secs, 10.0, "%s took %.1f s", what, secs);
    char *back;
    size_t blen;
    cr_assert_eq(hs_tokenizer_decode(tok, ids, nid, 0, &back, &blen, NULL), HS_OK);
    cr_assert(blen == n && !memcmp(back, text, n), "%s: round trip", what);
    free(back);
    free(ids);
    free(text);
}

Test(tokenizer_linear, one_megabyte_lines, .timeout = 120) {
    hs_tokenizer *g = load_fixture("tokenizer/bpe_gpt2.json"), *l = load_fixture("tokenizer/bpe_llama3.json");
    hs_tokenizer *s = load_fixture("tokenizer/spm_bpe.json");
    check_linear(g, "a", "gpt2 letters");
    check_linear(g, " ", "gpt2 spaces");
    check_linear(g, "7", "gpt2 digits");
    check_linear(l, " ", "llama3 spaces");
    check_linear(l, "1", "llama3 digits");
    check_linear(l, "\n ", "llama3 newline-space");
    check_linear(l, "<|endoftext", "llama3 special look-alike");
    check_linear(s, "a", "spm letters");
    check_linear(s, "\xe4\xb8\xad", "spm byte fallback");
    hs_tokenizer_free(g);
    hs_tokenizer_free(l);
    hs_tokenizer_free(s);
}

/* ---- one handle, several threads ----------------------------------------------------------- */

typedef struct {
    hs_tokenizer *tok;
    const corpus *c;
    int32_t **want;
    int *nwant, start, bad;
} thread_job;

static void *encode_all(void *arg) {
    thread_job *j = arg;
    for (int k = 0; k < j->c->n; k++) {
        int i = (j->start + k) % j->c->n; /* threads walk the corpus out of phase */
        int32_t *ids;
        int n;
        if (hs_tokenizer_encode(j->tok, j->c->text[i], j->c->len[i], 1, &ids, &n, NULL)) {
            j->bad++;
            continue;
        }
        j->bad += n != j->nwant[i] || memcmp(ids, j->want[i], (size_t)n * sizeof *ids);
        free(ids);
    }
    return NULL;
}

/* The shared scratch is try-locked; callers that find it busy use their own:
 * the ids must not depend on which. */
Test(tokenizer, concurrent_encode) {
    hs_tokenizer *tok = load_fixture("tokenizer/bpe_llama3.json");
    corpus c = load_corpus();
    int32_t **want = calloc((size_t)c.n, sizeof *want);
    int *nwant = calloc((size_t)c.n, sizeof *nwant);
    for (int i = 0; i < c.n; i++)
        cr_assert_eq(hs_tokenizer_encode(tok, c.text[i], c.len[i], 1, &want[i], &nwant[i], NULL), HS_OK);
    hs_tokenizer_free(tok); /* fresh handle: cold cache */
    tok = load_fixture("tokenizer/bpe_llama3.json");
    pthread_t th[4];
    thread_job jobs[4];
    for (int t = 0; t < 4; t++) {
        jobs[t] = (thread_job){tok, &c, want, nwant, t * c.n / 4, 0};
        cr_assert_eq(pthread_create(&th[t], NULL, encode_all, &jobs[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        cr_assert_eq(jobs[t].bad, 0, "thread %d: %d lines differ", t, jobs[t].bad);
    }
    hs_tokenizer_stats st;
    hs_tokenizer_get_stats(tok, &st);
    cr_assert_gt(st.bytes, 0);
    for (int i = 0; i < c.n; i++) free(want[i]);
    free(want);
    free(nwant);
    free_corpus(&c);
    hs_tokenizer_free(tok);
}
