/* hs_dataset IOI generator (Wang et al. 2022): the paper's 15 BABA templates
 * and their ABBA versions, filled with names that are one token for the
 * tokenizer at hand, plus the ABC corruption of every prompt. */
#include <stdlib.h>
#include <string.h>

#include "hs_dataset_internal.h"

/* [A] = indirect object (the answer), [B] = subject (the distractor). Every
 * template ends with " [A]", and its first two names form the first clause. */
static const char *const templates[2 * HS_DATASET_IOI_N_BABA] = {
    /* BABA */
    "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to [A]",
    "Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to [A]",
    "Then, [B] and [A] had a long argument, and afterwards [B] said to [A]",
    "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to [A]",
    "While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to [A]",
    "While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to [A]",
    "After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [B] and [A] had a long argument. Afterwards [B] said to [A]",
    "The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to [A]",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to [A]",
    /* ABBA: the same with the first two names swapped */
    "Then, [A] and [B] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [A] and [B] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [A] and [B] were working at the [PLACE]. [B] decided to give a [OBJECT] to [A]",
    "Then, [A] and [B] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to [A]",
    "Then, [A] and [B] had a long argument, and afterwards [B] said to [A]",
    "After [A] and [B] went to the [PLACE], [B] gave a [OBJECT] to [A]",
    "When [A] and [B] got a [OBJECT] at the [PLACE], [B] decided to give it to [A]",
    "When [A] and [B] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to [A]",
    "While [A] and [B] were working at the [PLACE], [B] gave a [OBJECT] to [A]",
    "While [A] and [B] were commuting to the [PLACE], [B] gave a [OBJECT] to [A]",
    "After the lunch, [A] and [B] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Afterwards, [A] and [B] went to the [PLACE]. [B] gave a [OBJECT] to [A]",
    "Then, [A] and [B] had a long argument. Afterwards [B] said to [A]",
    "The [PLACE] [A] and [B] went to had a [OBJECT]. [B] gave it to [A]",
    "Friends [A] and [B] found a [OBJECT] at the [PLACE]. [B] gave it to [A]",
};

/* Common English first names; those that are not one token are dropped. */
static const char *const names[] = {
    "Mary",   "John",   "Alice",   "Bob",      "James",     "Michael",  "David",   "Sarah",  "Emma",   "Tom",
    "Anna",   "Kate",   "Paul",    "Mark",     "Lisa",      "Laura",    "Peter",   "Jack",   "Rachel", "Daniel",
    "Chris",  "Steven", "Robert",  "William",  "Richard",   "Thomas",   "Charles", "Joseph", "George", "Edward",
    "Henry",  "Frank",  "Jessica", "Jennifer", "Elizabeth", "Susan",    "Karen",   "Nancy",  "Betty",  "Helen",
    "Sandra", "Carol",  "Ruth",    "Sharon",   "Michelle",  "Amy",      "Emily",   "Kevin",  "Brian",  "Jason",
    "Ryan",   "Eric",   "Adam",    "Andrew",   "Joshua",    "Matthew",  "Anthony", "Tim",    "Jeff",   "Scott",
    "Sam",    "Ben",    "Max",     "Leo",      "Luke",      "Jacob",    "Noah",    "Ethan",  "Oliver", "Grace",
    "Rose",   "Lucy",   "Sophie",  "Claire",   "Julia",     "Victoria", "Jane",    "Amanda", "Hannah", "Olivia",
    "Nick",   "Alex",   "Dan",     "Kim",      "Joe",       "Mike",     "Steve",   "Greg",   "Carl",   "Ian",
    "Roger",  "Martin", "Arthur",  "Harry",    "Louis",     "Simon",    "Patrick", "Sean",   "Eva",    "Nina",
};
#define N_NAMES ((int)(sizeof names / sizeof names[0]))

/* Consonant-initial objects: the templates say "a [OBJECT]". */
static const char *const places[] = {"store", "garden",  "restaurant", "school",  "hospital", "office",
                                     "house", "station", "park",       "library", "market",   "museum"};
static const char *const objects[] = {"ring",  "kiss",  "bone", "basketball", "computer", "necklace",
                                      "drink", "snack", "book", "letter",     "cake",     "flower"};

const char *hs_dataset_ioi_template(int t) { return t >= 0 && t < 2 * HS_DATASET_IOI_N_BABA ? templates[t] : NULL; }

typedef struct {
    int32_t *ids, *cids; /* [n] clean and corrupt prompt */
    int n;
    char *text;
    int32_t answer, distractor, tmpl;
} ioi_row;

/* The prompt of template t: everything before the final " [A]". With c/d,
 * the first two name slots (the first clause) get c and d instead. */
static int fill(hs_ds_buf *b, const char *t, const char *a, const char *bn, const char *place, const char *obj,
                const char *c, const char *d) {
    const char *end = t + strlen(t) - strlen(" [A]");
    int slot = 0;
    b->n = 0;
    if (hs_ds_buf_add(b, "", 0)) return -1;
    for (const char *p = t; p < end;) {
        const char *v = NULL;
        size_t skip = 0;
        if (!strncmp(p, "[A]", 3) || !strncmp(p, "[B]", 3)) {
            v = c && slot < 2 ? (slot == 0 ? c : d) : p[1] == 'A' ? a : bn;
            slot++, skip = 3;
        } else if (!strncmp(p, "[PLACE]", 7)) {
            v = place, skip = 7;
        } else if (!strncmp(p, "[OBJECT]", 8)) {
            v = obj, skip = 8;
        }
        if (v ? hs_ds_buf_add(b, v, (size_t)-1) : hs_ds_buf_add(b, p, 1)) return -1;
        p += v ? skip : 1;
    }
    return 0;
}

/* The words[0..n) that are one token after a space, mid-sentence: names,
 * and places and objects, so that every prompt of a template has the same
 * token length and positions line up (per-template means, Wang et al.). */
static hs_status single_token_words(hs_tokenizer *tok, const char *const *words, int n_words, int *keep, int *n_keep,
                                    hs_err *err) {
    static const char prefix[] = "Then,";
    int32_t *ids = NULL, id;
    int n = 0, extra;
    *n_keep = 0;
    hs_status st = hs_tokenizer_encode(tok, prefix, sizeof prefix - 1, 0, &ids, &n, err);
    char cont[64];
    for (int i = 0; st == HS_OK && i < n_words; i++) {
        snprintf(cont, sizeof cont, " %s", words[i]);
        st = hs_ds_continuation(tok, prefix, sizeof prefix - 1, ids, n, cont, &id, &extra, err);
        if (st == HS_OK && id >= 0) keep[(*n_keep)++] = i;
    }
    free(ids);
    return st;
}

#define N_PLACES ((int)(sizeof places / sizeof *places))
#define N_OBJECTS ((int)(sizeof objects / sizeof *objects))

/* The places and objects a prompt may use: the single-token ones, or all of
 * them when the tokenizer splits every one (then lengths vary within a template). */
typedef struct {
    int place[N_PLACES], object[N_OBJECTS], n_place, n_object;
} ioi_words;

/* A name index from pool[0..n) that is not in avoid[0..n_avoid). */
static int pick(uint64_t *s, const int *pool, int n, const int *avoid, int n_avoid) {
    for (;;) {
        int v = pool[hs_ds_below(s, n)], clash = 0;
        for (int k = 0; k < n_avoid; k++) clash |= v == avoid[k];
        if (!clash) return v;
    }
}

/* One row: fills r, or sets r->ids NULL when the sampled names do not work. */
static hs_status make_row(hs_tokenizer *tok, const hs_model_config *cfg, uint64_t *s, int t, const int *pool,
                          int n_pool, const ioi_words *w, hs_ds_buf *b, ioi_row *r, hs_err *err) {
    hs_status st = HS_OK;
    int extra, nc = 0;
    const int a = pick(s, pool, n_pool, NULL, 0), bn = pick(s, pool, n_pool, &a, 1);
    const char *place = places[w->place[hs_ds_below(s, w->n_place)]];
    const char *obj = objects[w->object[hs_ds_below(s, w->n_object)]];
    const int nb = hs_ds_n_bos(tok);
    char cont[64];
    if (fill(b, templates[t], names[a], names[bn], place, obj, NULL, NULL))
        return hs_err_set(err, HS_ERR_OOM, "ioi: out of memory");
    HS_CHECK(hs_ds_encode_prompt(tok, b->p, b->n, &r->ids, &r->n, err));
    if (cfg->n_ctx > 0 && r->n > cfg->n_ctx)
        HS_FAIL(err, HS_ERR_INVALID_ARG, "ioi: a prompt of %d tokens exceeds the model context %d", r->n, cfg->n_ctx);
    snprintf(cont, sizeof cont, " %s", names[a]);
    HS_CHECK(hs_ds_continuation(tok, b->p, b->n, r->ids + nb, r->n - nb, cont, &r->answer, &extra, err));
    snprintf(cont, sizeof cont, " %s", names[bn]);
    HS_CHECK(hs_ds_continuation(tok, b->p, b->n, r->ids + nb, r->n - nb, cont, &r->distractor, &extra, err));
    if (r->answer < 0 || r->distractor < 0) goto retry;
    if (!(r->text = strdup(b->p))) HS_FAIL(err, HS_ERR_OOM, "ioi: out of memory");
    /* ABC: two other names in the first clause; same token length or resample */
    for (int attempt = 0; attempt < 100; attempt++) {
        int used[3] = {a, bn, -1};
        used[2] = pick(s, pool, n_pool, used, 2);
        const int c = used[2], d = pick(s, pool, n_pool, used, 3);
        if (fill(b, templates[t], names[a], names[bn], place, obj, names[c], names[d]))
            HS_FAIL(err, HS_ERR_OOM, "ioi: out of memory");
        HS_CHECK(hs_ds_encode_prompt(tok, b->p, b->n, &r->cids, &nc, err));
        if (nc == r->n) break;
        free(r->cids);
        r->cids = NULL;
    }
    if (!r->cids) goto retry;
    r->tmpl = t;
    for (int k = 0; k < 2; k++) {
        const int32_t *ids = k ? r->cids : r->ids;
        const int64_t bad = hs_ds_outside_vocab(ids, r->n, cfg->n_vocab);
        if (bad >= 0)
            HS_FAIL(err, HS_ERR_INVALID_ARG, "ioi: token id %d is outside the model vocabulary [0, %d)", (int)ids[bad],
                    cfg->n_vocab);
    }
    return HS_OK;
retry:
    st = HS_OK;
exit:
    free(r->ids), free(r->cids), free(r->text);
    r->ids = r->cids = NULL, r->text = NULL;
    return st;
}

hs_status hs_dataset_ioi(hs_tokenizer *tok, const hs_model_config *c, int n, uint64_t seed,
                         hs_dataset_ioi_templates which, hs_dataset **out, hs_err *err) {
    hs_status st = HS_OK;
    ioi_row *rows = NULL;
    hs_ds_buf b = {0};
    int pool[N_NAMES], n_pool = 0, deck[2 * HS_DATASET_IOI_N_BABA], n_deck = 0, dealt = 0;
    *out = NULL;
    if (n < 1) return hs_err_set(err, HS_ERR_INVALID_ARG, "ioi: n %d must be positive", n);
    if (!tok) return hs_err_set(err, HS_ERR_INVALID_ARG, "ioi: needs a tokenizer");
    for (int t = 0; t < 2 * HS_DATASET_IOI_N_BABA; t++)
        if (which == HS_DATASET_IOI_ALL || (which == HS_DATASET_IOI_BABA) == (t < HS_DATASET_IOI_N_BABA))
            deck[n_deck++] = t;
    HS_CHECK(single_token_words(tok, names, N_NAMES, pool, &n_pool, err));
    ioi_words w;
    HS_CHECK(single_token_words(tok, places, N_PLACES, w.place, &w.n_place, err));
    HS_CHECK(single_token_words(tok, objects, N_OBJECTS, w.object, &w.n_object, err));
    if (!w.n_place)
        for (int i = 0; i < N_PLACES; i++) w.place[w.n_place++] = i;
    if (!w.n_object)
        for (int i = 0; i < N_OBJECTS; i++) w.object[w.n_object++] = i;
    if (n_pool < 4)
        HS_FAIL(err, HS_ERR_INVALID_ARG, "ioi: only %d of %d names are one token for this tokenizer (%s); 4 are needed",
                n_pool, N_NAMES, hs_tokenizer_describe(tok));
    if (!(rows = calloc((size_t)n, sizeof *rows))) HS_FAIL(err, HS_ERR_OOM, "ioi: out of memory for %d prompts", n);
    uint64_t s = seed ^ 0x696f69ull; /* "ioi" */
    int T = 0;
    for (int i = 0; i < n; i++) {
        if (dealt % n_deck == 0) /* a fresh seeded shuffle of the allowed templates */
            for (int k = n_deck - 1; k > 0; k--) {
                int j = hs_ds_below(&s, k + 1), tmp = deck[k];
                deck[k] = deck[j], deck[j] = tmp;
            }
        const int t = deck[dealt++ % n_deck];
        for (int attempt = 0; !rows[i].ids; attempt++) {
            if (attempt == 100)
                HS_FAIL(err, HS_ERR_INVALID_ARG,
                        "ioi: template %d: no names found whose answer is one token after the prompt", t);
            HS_CHECK(make_row(tok, c, &s, t, pool, n_pool, &w, &b, &rows[i], err));
        }
        if (rows[i].n > T) T = rows[i].n;
    }
    hs_dataset *d = NULL;
    HS_CHECK(hs_ds_alloc(n, T, HS_DS_ANSWER | HS_DS_DISTRACTOR | HS_DS_TEMPLATE | HS_DS_TEXT | HS_DS_CORRUPT, "ioi", &d,
                         err));
    for (int i = 0; i < n; i++) {
        memcpy(d->tokens + (size_t)i * T, rows[i].ids, (size_t)rows[i].n * sizeof(int32_t));
        memcpy(d->corrupt_tokens + (size_t)i * T, rows[i].cids, (size_t)rows[i].n * sizeof(int32_t));
        d->lengths[i] = rows[i].n;
        d->answer[i] = rows[i].answer;
        d->distractor[i] = rows[i].distractor;
        d->template_id[i] = rows[i].tmpl;
        d->text[i] = rows[i].text;
        rows[i].text = NULL;
    }
    *out = d;
exit:
    for (int i = 0; rows && i < n; i++) free(rows[i].ids), free(rows[i].cids), free(rows[i].text);
    free(rows);
    free(b.p);
    return st;
}
