/* hs_model_smollm3: what SmolLM3ForCausalLM's config.json adds to the Llama
 * layout (its weights are Llama's, loaded with them). Some layers rotate
 * nothing (NoPE): no_rope_layers lists 1 (RoPE) or 0 (none) per layer, by
 * default a 0 every no_rope_layer_interval (4) layers, as SmolLM3Config fills
 * it (a longer list's extra entries unread, as transformers leaves them).
 * Windows: on the layers layer_types marks sliding, as transformers' masks
 * read it (eager and sdpa attention; use_sliding_window only feeds the
 * default layer_types, and flash attention); without layer_types, the NoPE
 * layers with use_sliding_window, as SmolLM3Config lays them out. */
#include <stdlib.h>

#include "hs_model_hf_internal.h"

/* no_rope_layers' entry v: 1 (RoPE), 0 (none), -1 neither (true / false taken too). */
static int rotates_at(json_t *v) {
    const json_int_t i = json_is_boolean(v) ? json_is_true(v) : json_is_integer(v) ? json_integer_value(v) : -1;
    return i == 0 || i == 1 ? (int)i : -1;
}

/* c->nope_every, from no_rope_layers or its interval (c->rope set). */
static hs_status nope_layout(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    json_t *list = json_object_get(root, "no_rope_layers");
    hs_status st = HS_OK;
    if (!list || json_is_null(list)) {
        if ((st = hs_hf_cfg_int(root, path, "no_rope_layer_interval", 0, 4, &c->nope_every, err))) return st;
        if (c->nope_every <= 0)
            return hs_err_set(err, HS_ERR_FORMAT, "%s: no_rope_layer_interval %d must be positive", path,
                              c->nope_every);
        return HS_OK;
    }
    if (!json_is_array(list) || (int)json_array_size(list) < c->n_layers)
        return hs_err_set(err, HS_ERR_FORMAT, "%s: no_rope_layers must list a 0 or 1 for each of the %d layers", path,
                          c->n_layers);
    c->nope_every = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const int rotates = rotates_at(json_array_get(list, (size_t)l));
        if (rotates < 0)
            return hs_err_set(err, HS_ERR_FORMAT, "%s: no_rope_layers[%d] must be 0 or 1", path, l);
        if (!rotates && !c->nope_every) c->nope_every = l + 1;
    }
    for (int l = 0; l < c->n_layers; l++)
        if (rotates_at(json_array_get(list, (size_t)l)) != hs_model_layer_rotates(c, l))
            return hs_err_set(err, HS_ERR_UNSUPPORTED,
                              "%s: no_rope_layers: only a layer without RoPE every N layers (SmolLM3's layout) is "
                              "supported (layer %d breaks the pattern)",
                              path, l);
    return HS_OK;
}

static hs_status window_layout(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    hs_status st;
    if ((st = hs_hf_cfg_window(root, path, 0, c, err))) return st;
    if (json_is_array(json_object_get(root, "layer_types"))) {
        if ((st = hs_hf_layer_layout(root, path, 0, 0, c, err))) return st;
        return hs_hf_check_window(root, path, 0, c, err);
    }
    if (!hs_hf_cfg_bool(root, "use_sliding_window", 0) || !c->sliding_window) { /* no sliding layers by default */
        c->sliding_window = 0;
        return HS_OK;
    }
    uint8_t *slides = malloc((size_t)c->n_layers);
    if (!slides) return hs_err_set(err, HS_ERR_OOM, "%s: out of memory", path);
    for (int l = 0; l < c->n_layers; l++) slides[l] = !hs_model_layer_rotates(c, l);
    st = hs_model_layout_of(path, "no_rope_layers", slides, c, err);
    free(slides);
    return st;
}

hs_status hs_hf_parse_smollm3(json_t *root, const char *path, hs_model_config *c, hs_err *err) {
    hs_status st = nope_layout(root, path, c, err);
    return st ? st : window_layout(root, path, c, err);
}
