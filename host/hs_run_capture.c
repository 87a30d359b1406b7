/* The capture experiment's unit: selected hook points of a unit of selected
 * prompts, stored under TransformerLens names ("blocks.3.attn.hook_z"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headsweep/hs_capture.h"
#include "hs_run_internal.h"

hs_status hs_run_capture_unit(hs_run_ctx *x, int exp, hs_run_worker *w, int i0, int n, hs_err *err) {
    const hs_config_experiment *e = &x->cfg->experiments[exp];
    const hs_run_exp *r = &x->exps[exp];
    const hs_prompts *pr = &x->prompts;
    const int L = hs_model_get_config(x->model)->n_layers, T = pr->T, nL = e->layers.all ? L : e->layers.n;
    hs_status st = HS_OK;
    hs_capture *cap = NULL;
    int32_t *tok = malloc((size_t)n * T * sizeof *tok), *msk = malloc((size_t)n * T * sizeof *msk);
    if (!tok || !msk) HS_FAIL(err, HS_ERR_OOM, "out of memory");
    HS_CHECK(hs_capture_init(w->be, &cap, err));
    for (int p = 0; p <= HS_HOOK_COUNT; p++) /* HS_HOOK_COUNT: the result hook (config bit "result") */
        for (int i = 0; i < nL && (e->hooks & HS_CONFIG_BIT(p)); i++) {
            const int l = e->layers.all ? i : e->layers.v[i];
            HS_CHECK(p == HS_HOOK_COUNT ? hs_capture_want_result(cap, x->model, l, err)
                                        : hs_capture_want(cap, (hs_hook_point)p, l, err));
        }
    for (int i = 0; i < n; i++) {
        const int g = r->items[i0 + i];
        for (int t = 0; t < T; t++) {
            tok[(int64_t)i * T + t] = pr->tokens[(int64_t)g * T + t];
            msk[(int64_t)i * T + t] = t < pr->lengths[g];
        }
    }
    hs_hooks hooks = hs_capture_hooks(cap);
    hs_forward_params fp = hs_forward_default_params();
    fp.logits = HS_LOGITS_NONE;
    fp.hooks = &hooks;
    hs_batch b = {.B = n, .T = T, .tokens = tok, .mask = msk};
    HS_CHECK(hs_forward(w->session, &b, &fp, NULL, err));
    for (int p = 0; p <= HS_HOOK_COUNT; p++)
        for (int i = 0; i < nL && (e->hooks & HS_CONFIG_BIT(p)); i++) {
            const int l = e->layers.all ? i : e->layers.v[i];
            char name[128];
            hs_run_hook_name(name, sizeof name, (hs_hook_point)p, l);
            hs_run_array *a = hs_run_find(r, name);
            hs_tensor shp;
            const float *src = p == HS_HOOK_COUNT ? hs_capture_get_result(cap, l, &shp)
                                                  : hs_capture_get(cap, (hs_hook_point)p, l, &shp);
            if (!src || !a || hs_tensor_numel(&shp) != a->per * n)
                HS_FAIL(err, HS_ERR_INVALID_ARG, "hook %s was not produced as planned", name);
            memcpy(a->data + (int64_t)(i0 - r->lo) * a->per, src, (size_t)(a->per * n) * sizeof(float));
        }
    if (hs_run_should_stop(x, exp)) HS_FAIL(err, HS_ERR_INTERRUPTED, "interrupted");
exit:
    hs_capture_free(cap);
    free(tok), free(msk);
    return st;
}
