/* The units of work of a run: the plan (each experiment's units and this
 * shard's range of them), the journal record of a unit (its columns of every
 * per-item array), and the workers that take pending units from a shared
 * counter, one per backend (one per GPU), and journal each as it completes. */
#include <stdlib.h>
#include <string.h>

#include "hs_run_internal.h"

int hs_run_should_stop(hs_run_ctx *x, int exp) {
    pthread_mutex_lock(&x->lock);
    const hs_run_exp *r = &x->exps[exp];
    if (!x->stop && x->rp->progress)
        x->stop = x->rp->progress(x->rp->progress_user, x->cfg->experiments[exp].name, (int)r->units_done,
                                  (int)(r->u_hi - r->u_lo));
    int s = x->stop || x->failed;
    pthread_mutex_unlock(&x->lock);
    return s;
}

/* ---- the journal: one record per completed unit ---------------------------- */

/* A record: the header; since UNIT_MAGIC_2, the identity of the backend
 * that computed the unit (ident_bytes, zero-padded to 8); the floats. */
#define UNIT_MAGIC_1 0x54494e55u /* "UNIT": no identity (journaled before identities were recorded) */
#define UNIT_MAGIC_2 0x32494e55u /* "UNI2" */
#define IDENT_PAD(n) (((n) + 7) & ~(size_t)7)

typedef struct {
    uint32_t magic, exp;
    int64_t unit, n_floats;
} unit_header;

typedef struct {
    uint64_t ident_bytes;
} unit_ident;

/* Floats a unit of part g over n items holds: its columns of every array. */
static int64_t unit_floats(const hs_run_exp *r, int n, int g) {
    int64_t k = 0, c0, c1;
    for (int a = 0; a < r->n_arrays; a++) {
        hs_run_part_cols(r, &r->arrays[a], g, &c0, &c1);
        k += (c1 - c0) * n;
    }
    return k;
}

/* Unit u: items [i0, i0 + n) of chunk u / parts, part g = u % parts. */
static void unit_items(const hs_run_exp *r, int64_t u, int *i0, int *n, int *g) {
    *i0 = (int)(u / r->parts * r->unit);
    *n = r->n_items - *i0 < r->unit ? r->n_items - *i0 : r->unit;
    *g = (int)(u % r->parts);
}

/* Copies a unit's columns of every array between the arrays and a packed
 * buffer (to_buf: arrays -> buf). */
static void pack_unit(const hs_run_exp *r, int i0, int n, int g, float *buf, int to_buf) {
    for (int a = 0; a < r->n_arrays; a++) {
        const hs_run_array *ar = &r->arrays[a];
        int64_t c0, c1;
        hs_run_part_cols(r, ar, g, &c0, &c1);
        for (int i = 0; i < n; i++, buf += c1 - c0) {
            float *row = ar->data + (int64_t)(i0 + i - r->lo) * ar->per + c0;
            memcpy(to_buf ? buf : row, to_buf ? row : buf, (size_t)(c1 - c0) * sizeof(float));
        }
    }
}

/* The unit's rows of every array, after a header, into one buffer. */
static hs_status journal_unit(hs_run_ctx *x, int exp, int64_t u, hs_err *err) {
    const hs_run_exp *r = &x->exps[exp];
    int i0, n, g;
    unit_items(r, u, &i0, &n, &g);
    const int64_t nf = unit_floats(r, n, g);
    const unit_header h = {UNIT_MAGIC_2, (uint32_t)exp, u, nf};
    const unit_ident id = {strlen(x->ident)};
    const size_t head = sizeof h + sizeof id + IDENT_PAD(id.ident_bytes), len = head + (size_t)nf * sizeof(float);
    char *buf = calloc(1, len);
    if (!buf) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, &id, sizeof id);
    memcpy(buf + sizeof h + sizeof id, x->ident, id.ident_bytes);
    pack_unit(r, i0, n, g, (float *)(buf + head), 1);
    pthread_mutex_lock(&x->lock);
    hs_status st = hs_journal_append(x->journal, r->batch0 + (u - r->u_lo), buf, len, err);
    pthread_mutex_unlock(&x->lock);
    free(buf);
    return st;
}

/* Puts a journaled unit back into the arrays. */
hs_status hs_run_replay(void *user, int64_t batch, const void *payload, size_t len, hs_err *err) {
    hs_run_ctx *x = user;
    unit_header h;
    unit_ident id = {0};
    char ident[sizeof x->ident] = "unrecorded (journaled by a headsweep that did not record it)";
    const char *p = payload;
    size_t head = sizeof h;
    if (len < sizeof h) return hs_err_set(err, HS_ERR_FORMAT, "journal record %lld: %zu bytes", (long long)batch, len);
    memcpy(&h, p, sizeof h);
    if (h.magic == UNIT_MAGIC_2) {
        if (len >= sizeof h + sizeof id) memcpy(&id, p + sizeof h, sizeof id);
        if (id.ident_bytes == 0 || id.ident_bytes >= sizeof ident || len < sizeof h + sizeof id + IDENT_PAD(id.ident_bytes))
            return hs_err_set(err, HS_ERR_FORMAT, "journal record %lld: bad backend identity", (long long)batch);
        memcpy(ident, p + sizeof h + sizeof id, id.ident_bytes);
        ident[id.ident_bytes] = 0;
        head += sizeof id + IDENT_PAD(id.ident_bytes);
    }
    hs_run_exp *r = h.exp < (uint32_t)x->cfg->n_experiments ? &x->exps[h.exp] : NULL;
    int i0 = 0, n = 0, g = 0;
    if (r && h.unit >= r->u_lo && h.unit < r->u_hi) unit_items(r, h.unit, &i0, &n, &g);
    if ((h.magic != UNIT_MAGIC_1 && h.magic != UNIT_MAGIC_2) || !r || h.unit < r->u_lo || h.unit >= r->u_hi ||
        r->batch0 + (h.unit - r->u_lo) != batch || h.n_floats != unit_floats(r, n, g) ||
        len != head + (size_t)h.n_floats * sizeof(float))
        return hs_err_set(err, HS_ERR_FORMAT, "journal record %lld does not match this run's plan", (long long)batch);
    pack_unit(r, i0, n, g, (float *)(p + head), 0);
    hs_run_computed_on_add(x->computed_on, sizeof x->computed_on, ident);
    r->units_done++;
    return HS_OK;
}

/* ---- workers ------------------------------------------------------------------ */

typedef struct {
    int exp;
    int64_t unit;
} job;

typedef struct {
    hs_run_ctx *x;
    hs_run_worker *w;
    const job *jobs;
    int n_jobs, *next;
} worker_arg;

static void fail(hs_run_ctx *x, hs_status st, const hs_err *e) {
    pthread_mutex_lock(&x->lock);
    if (!x->failed && !x->stop) x->failed = st, x->failed_err = *e;
    pthread_mutex_unlock(&x->lock);
}

static void *worker_main(void *arg) {
    worker_arg *a = arg;
    hs_run_ctx *x = a->x;
    for (;;) {
        pthread_mutex_lock(&x->lock);
        const int k = x->stop || x->failed || *a->next >= a->n_jobs ? -1 : (*a->next)++;
        pthread_mutex_unlock(&x->lock);
        if (k < 0) break;
        const job j = a->jobs[k];
        hs_run_exp *r = &x->exps[j.exp];
        pthread_mutex_lock(&x->lock);
        const int first = !r->started;
        r->started = 1;
        pthread_mutex_unlock(&x->lock);
        /* report the experiment's start, so its elapsed time (and rate, and
         * ETA) counts its first unit too: a one-unit experiment used to read
         * "0s elapsed" */
        if (first && hs_run_should_stop(x, j.exp)) break;
        int i0, n, g;
        unit_items(r, j.unit, &i0, &n, &g);
        hs_err e = {0};
        hs_status st = hs_run_unit(x, j.exp, a->w, i0, n, g, &e);
        if (!st) st = journal_unit(x, j.exp, j.unit, &e);
        if (st) {
            hs_err_prefix(&e, "experiment '%s', items %d..%d", x->cfg->experiments[j.exp].name, i0, i0 + n - 1);
            fail(x, st, &e);
            break;
        }
        pthread_mutex_lock(&x->lock);
        r->units_done++;
        pthread_mutex_unlock(&x->lock);
        hs_run_should_stop(x, j.exp); /* reports progress */
    }
    return NULL;
}

/* Runs every unit of the phase's experiments that the journal does not hold. */
hs_status hs_run_phase(hs_run_ctx *x, int phase, hs_run_worker *w, int nw, hs_err *err) {
    int n_jobs = 0, next = 0;
    if (x->stop) return HS_OK;
    for (int i = 0; i < x->cfg->n_experiments; i++) n_jobs += x->exps[i].phase == phase ? (int)(x->exps[i].u_hi - x->exps[i].u_lo) : 0;
    job *jobs = malloc((size_t)(n_jobs > 0 ? n_jobs : 1) * sizeof *jobs);
    if (!jobs) return hs_err_set(err, HS_ERR_OOM, "out of memory");
    n_jobs = 0;
    for (int i = 0; i < x->cfg->n_experiments; i++) {
        hs_run_exp *r = &x->exps[i];
        if (r->phase != phase) continue;
        int pending = 0;
        for (int64_t u = r->u_lo; u < r->u_hi; u++)
            if (!hs_journal_is_done(x->journal, r->batch0 + (u - r->u_lo))) jobs[n_jobs++] = (job){i, u}, pending = 1;
        hs_status st = hs_run_prepare(x, i, &w[0], pending, err);
        if (st) {
            free(jobs);
            return hs_err_prefix(err, "experiment '%s'", x->cfg->experiments[i].name);
        }
    }
    worker_arg *args = calloc((size_t)nw, sizeof *args);
    pthread_t *th = calloc((size_t)nw, sizeof *th);
    int started = 0;
    if (args && th) {
        for (int i = 0; i < nw; i++) args[i] = (worker_arg){x, &w[i], jobs, n_jobs, &next};
        if (nw == 1) {
            worker_main(&args[0]);
        } else {
            for (; started < nw; started++)
                if (pthread_create(&th[started], NULL, worker_main, &args[started])) break;
            if (!started) worker_main(&args[0]); /* no threads to be had: one worker */
            for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
        }
    }
    hs_status st = !args || !th ? hs_err_set(err, HS_ERR_OOM, "out of memory") : HS_OK;
    free(args), free(th), free(jobs);
    if (st) return st;
    if (x->failed) {
        if (err) *err = x->failed_err;
        return x->failed;
    }
    return HS_OK;
}

/* Units and this shard's part of them, for every experiment; the journal
 * numbers the shard's units in experiment order. */
hs_status hs_run_plan_units(hs_run_ctx *x, int64_t *n_batches, hs_err *err) {
    const hs_model_config *c = hs_model_get_config(x->model);
    *n_batches = 0;
    for (int i = 0; i < x->cfg->n_experiments; i++) {
        hs_run_exp *r = &x->exps[i];
        hs_status st = hs_run_plan(x->cfg, i, c, x->prompts.N, x->prompts.T, r, err);
        if (st) return st;
        r->unit = hs_run_unit_size(x, i);
        r->n_units = (r->n_items + r->unit - 1) / r->unit * r->parts;
        r->u_lo = r->n_units * x->shard_index / x->shard_count;
        r->u_hi = r->n_units * (x->shard_index + 1) / x->shard_count;
        /* the items of the chunks the shard's units touch (a chunk may be split with a neighbour) */
        const int64_t c_lo = r->u_lo / r->parts, c_hi = r->u_hi > r->u_lo ? (r->u_hi - 1) / r->parts + 1 : c_lo;
        r->lo = (int)(c_lo * r->unit < r->n_items ? c_lo * r->unit : r->n_items);
        r->hi = (int)(c_hi * r->unit < r->n_items ? c_hi * r->unit : r->n_items);
        if (r->hi < r->lo) r->hi = r->lo;
        r->batch0 = *n_batches;
        *n_batches += r->u_hi - r->u_lo;
        if ((st = hs_run_alloc(r, err))) return st;
    }
    return HS_OK;
}
