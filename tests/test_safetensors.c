/* safetensors and HF-folder loading: valid files parse, and every kind of
 * bad input gives its own status and a message naming the file and the
 * tensor or key. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "headsweep/hs_backend.h"
#include "headsweep/hs_dataset.h"
#include "headsweep/hs_forward.h"
#include "headsweep/hs_model.h"
#include "headsweep/hs_safetensors.h"
#include "hs_testutil.h"

/* Builds a safetensors image: 8-byte length, header, then `data_len` bytes. */
static uint8_t *image(const char *header, size_t data_len, size_t *len) {
    size_t n = strlen(header);
    *len = 8 + n + data_len;
    uint8_t *b = calloc(1, *len);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(b + 8, header, n);
    for (size_t i = 0; i < data_len; i++) b[8 + n + i] = (uint8_t)i;
    return b;
}

static hs_status parse(const char *header, size_t data_len, hs_err *err) {
    size_t len;
    uint8_t *b = image(header, data_len, &len);
    hs_st_file *f = NULL;
    hs_status st = hs_st_open_memory(b, len, "mem.safetensors", &f, err);
    hs_st_close(f);
    free(b);
    return st;
}

#define EXPECT(hdr, dlen, code, needle)                                                            \
    do {                                                                                           \
        hs_err e = {0};                                                                            \
        cr_assert_eq(parse(hdr, dlen, &e), code, "header %s: got '%s'", hdr, e.msg);               \
        cr_assert(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);        \
        cr_assert(strstr(e.msg, "mem.safetensors") != NULL, "message '%s' lacks the file", e.msg); \
    } while (0)

Test(safetensors, valid_file_parses) {
    size_t len;
    uint8_t *b = image("{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"F16\",\"shape\":[2],"
                       "\"data_offsets\":[24,28]},\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}",
                       28, &len);
    hs_st_file *f = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_st_open_memory(b, len, "mem", &f, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(hs_st_count(f), 2);
    const hs_st_tensor *a = hs_st_find(f, "a");
    cr_assert_not_null(a);
    cr_assert_eq(a->dtype, HS_DTYPE_F32);
    cr_assert_eq(a->ndim, 2);
    cr_assert_eq(a->shape[1], 3);
    cr_assert_eq(a->numel, 6);
    cr_assert_eq((const uint8_t *)hs_st_find(f, "b")->data - (const uint8_t *)a->data, 24);
    cr_assert_null(hs_st_find(f, "c"));
    hs_st_close(f);
    free(b);
}

Test(safetensors, truncated_header) {
    hs_err e = {0};
    uint8_t b[5] = {1, 2, 3, 4, 5};
    hs_st_file *f = NULL;
    cr_assert_eq(hs_st_open_memory(b, sizeof b, "short.safetensors", &f, &e), HS_ERR_FORMAT);
    cr_assert(strstr(e.msg, "short.safetensors") && strstr(e.msg, "too short"), "%s", e.msg);
}

Test(safetensors, header_length_beyond_file) {
    size_t len;
    uint8_t *b = image("{}", 0, &len);
    b[0] = 200; /* claims 200 bytes of header in a 10-byte file */
    hs_st_file *f = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_st_open_memory(b, len, "mem.safetensors", &f, &e), HS_ERR_FORMAT);
    cr_assert(strstr(e.msg, "exceeds the file"), "%s", e.msg);
    free(b);
}

Test(safetensors, malformed_json) { EXPECT("{\"a\":{\"dtype\":", 0, HS_ERR_FORMAT, "malformed JSON"); }
Test(safetensors, not_an_object) { EXPECT("[1,2]", 0, HS_ERR_FORMAT, "not an object"); }
Test(safetensors, duplicate_keys) {
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
           8, HS_ERR_FORMAT, "malformed JSON");
}
Test(safetensors, unknown_dtype) {
    EXPECT("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, HS_ERR_UNSUPPORTED, "'w'");
}
Test(safetensors, bad_shape) {
    EXPECT("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, HS_ERR_FORMAT, "'w'");
    EXPECT("{\"w\":{\"dtype\":\"F32\",\"shape\":\"4\",\"data_offsets\":[0,4]}}", 4, HS_ERR_FORMAT, "'w'");
}
Test(safetensors, offsets_out_of_range) {
    EXPECT("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, HS_ERR_FORMAT, "'w'");
    EXPECT("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, HS_ERR_FORMAT, "'w'");
}
Test(safetensors, size_disagrees_with_shape) {
    EXPECT("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, HS_ERR_FORMAT, "'w'");
}
Test(safetensors, overlapping_tensors) {
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
           12, HS_ERR_FORMAT, "overlaps");
}
Test(safetensors, gap_and_trailing_bytes) {
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, HS_ERR_FORMAT, "'a'");
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, HS_ERR_FORMAT, "cover 4 of 8");
}
Test(safetensors, missing_file) {
    hs_st_file *f = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_st_open("/nonexistent/x.safetensors", &f, &e), HS_ERR_IO);
    cr_assert(strstr(e.msg, "/nonexistent/x.safetensors"), "%s", e.msg);
}

/* ---- HF folders built from the tiny Llama fixture with one thing broken ---- */

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    cr_assert(a && b, "copy %s -> %s", from, to);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    fclose(a);
    fclose(b);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

/* A scratch copy of models/MODEL whose config.json has `from` replaced by `to`. */
static void broken_copy_of(const char *model, char *dir, size_t n, const char *from, const char *to) {
    char src[1024], p[1200], rel[256];
    snprintf(dir, n, "/tmp/hs_test_model_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(rel, sizeof rel, "models/%s/model.safetensors", model);
    hs_test_fixture_path(src, sizeof src, rel);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    copy_file(src, p);
    snprintf(rel, sizeof rel, "models/%s/config.json", model);
    hs_test_fixture_path(src, sizeof src, rel);
    char *cfg = read_text(src);
    char *hit = from ? strstr(cfg, from) : NULL;
    if (from) cr_assert_not_null(hit, "fixture config lacks '%s'", from);
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (hit) {
        size_t pre = (size_t)(hit - cfg);
        char *out = malloc(strlen(cfg) + strlen(to) + 1);
        memcpy(out, cfg, pre);
        strcpy(out + pre, to);
        strcat(out, hit + strlen(from));
        write_text(p, out);
        free(out);
    } else {
        write_text(p, cfg);
    }
    free(cfg);
}

/* Renames tensors in a safetensors file in place: every `from` in its JSON
 * header becomes `to` (the data offsets are relative to the header's end). */
static void rename_tensors(const char *path, const char *from, const char *to) {
    char *blob = NULL;
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    cr_assert_not_null(blob = malloc((size_t)size));
    cr_assert_eq(fread(blob, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    uint64_t hn;
    memcpy(&hn, blob, 8);
    char *head = calloc(hn + 1, 1), *out = calloc(2 * hn + 1, 1), *o = out;
    memcpy(head, blob + 8, hn);
    for (const char *p = head, *hit; *p; p = hit + strlen(from)) {
        if (!(hit = strstr(p, from))) {
            o = stpcpy(o, p);
            break;
        }
        o = stpcpy(stpncpy(o, p, (size_t)(hit - p)), to);
    }
    const uint64_t on = (uint64_t)(o - out);
    cr_assert_not_null(f = fopen(path, "wb"));
    fwrite(&on, 8, 1, f);
    fwrite(out, 1, on, f);
    fwrite(blob + 8 + hn, 1, (size_t)(size - 8 - (long)hn), f);
    fclose(f);
    free(blob), free(head), free(out);
}

static void broken_copy(char *dir, size_t n, const char *from, const char *to) {
    broken_copy_of("llama_mha", dir, n, from, to);
}

static void expect_load(const char *dir, hs_status code, const char *needle) {
    hs_model *m = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_model_load(dir, &m, &e), code, "load %s: got '%s'", dir, e.msg);
    cr_assert_null(m);
    cr_assert(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
}

/* A scratch copy of models/MODEL with `from` replaced by `to` in its config.json
 * fails to load with code and a message containing needle. */
static void expect_refused(const char *model, const char *from, const char *to, hs_status code, const char *needle) {
    char dir[256];
    broken_copy_of(model, dir, sizeof dir, from, to);
    expect_load(dir, code, needle);
    hs_test_remove_dir(dir);
}

Test(hf_folder, loads_fixture) {
    char dir[256];
    broken_copy(dir, sizeof dir, NULL, NULL);
    hs_model *m = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_model_load(dir, &m, &e), HS_OK, "%s", e.msg);
    const hs_model_config *c = hs_model_get_config(m);
    cr_assert_eq(c->n_layers, 3);
    cr_assert_eq(c->n_heads, 5);
    cr_assert_eq(c->d_head, 12);
    cr_assert_eq(c->arch, HS_ARCH_LLAMA);
    hs_model_free(m);
    hs_test_remove_dir(dir);
}

/* The config of a scratch copy of models/MODEL with `from` replaced by `to` in its config.json. */
static hs_model_config loaded_config(const char *model, const char *from, const char *to);

/* The context is the model's, and each of its layers has the expected window (0 = none). */
static void expect_windows(const hs_model_config *c, int n_ctx, const int *windows) {
    cr_assert_eq(c->n_ctx, n_ctx);
    for (int l = 0; l < c->n_layers; l++)
        cr_assert_eq(hs_model_layer_window(c, l), windows[l], "layer %d: window %d, expected %d", l,
                     hs_model_layer_window(c, l), windows[l]);
}

/* A scratch copy of models/MODEL with `from` replaced by `to` in its config.json, loaded. */
static hs_model *loaded_model(const char *model, const char *from, const char *to) {
    char dir[256];
    broken_copy_of(model, dir, sizeof dir, from, to);
    hs_model *m = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_model_load(dir, &m, &e), HS_OK, "%s", e.msg);
    hs_test_remove_dir(dir);
    return m;
}

/* Its config. */
static hs_model_config loaded_config(const char *model, const char *from, const char *to) {
    hs_model *m = loaded_model(model, from, to);
    hs_model_config c = *hs_model_get_config(m);
    hs_model_free(m);
    return c;
}

/* Qwen3: the q/k norms come with the architecture, over heads wider than the
 * stream; a Llama checkpoint relabelled Qwen3 lacks them and says which. */
Test(hf_folder, qwen3_has_qk_norms) {
    hs_model_config c = loaded_config("qwen3", NULL, NULL);
    cr_assert_eq(c.arch, HS_ARCH_LLAMA);
    cr_assert(c.qk_norm && !c.qkv_bias && c.tied_embeddings);
    cr_assert_eq(c.n_heads * c.d_head, 64);
    cr_assert_eq(c.d_model, 48);
    cr_assert_eq(c.rope_theta, 1e6f);
    char dir[256];
    broken_copy_of("llama_gqa", dir, sizeof dir, "LlamaForCausalLM", "Qwen3ForCausalLM");
    hs_model *m = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_model_load(dir, &m, &e), HS_ERR_MISSING, "%s", e.msg);
    cr_assert(strstr(e.msg, "'model.layers.0.self_attn.q_norm.weight'"), "%s", e.msg);
    cr_assert_null(m);
    hs_test_remove_dir(dir);
}

/* OLMo-2: norms on the attention's and the MLP's outputs only, q/k norms over all heads at
 * once; the class's eps where the key is absent; a Llama relabelled OLMo-2 lacks the norms and
 * says which. */
Test(hf_folder, olmo2_config_and_norms) {
    char dir[256];
    broken_copy_of("olmo2", dir, sizeof dir, NULL, NULL);
    hs_model *m = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_model_load(dir, &m, &e), HS_OK, "%s", e.msg);
    const hs_model_config *c = hs_model_get_config(m);
    cr_assert(c->arch == HS_ARCH_LLAMA && c->post_norms && c->no_pre_norms && c->qk_norm && c->qk_norm_all);
    cr_assert(c->norm == HS_NORM_RMSNORM && c->act == HS_ACT_SILU_GLU && !c->tied_embeddings);
    cr_assert(hs_model_qk_norm_width(c, 0) == 48 && hs_model_qk_norm_width(c, 1) == 24);
    const hs_layer_weights *L = &hs_model_get_weights(m)->layers[2];
    cr_assert(!L->ln1_w && !L->ln2_w && L->attn_post_w && L->mlp_post_w && L->q_norm_w && L->k_norm_w);
    hs_model_free(m);
    hs_test_remove_dir(dir);
    hs_model_config k = loaded_config("olmo2", "\"rms_norm_eps\": 1e-05,", "");
    cr_assert_eq(k.norm_eps, 1e-5f);
    expect_refused("llama_gqa", "LlamaForCausalLM", "Olmo2ForCausalLM", HS_ERR_MISSING,
                   "'model.layers.0.self_attn.q_norm.weight'");
}

/* OLMo-3: OLMo-2's norms, windows in three layers of four, the full layers' RoPE base and YaRN, the
 * sliding layers' own base, unscaled; the Hub's spelling (top-level rope_theta and rope_scaling)
 * read as transformers reads it: the top-level base goes to the full layers alone. */
Test(hf_folder, olmo3_config) {
    hs_model_config c = loaded_config("olmo3", NULL, NULL);
    cr_assert(c.post_norms && c.no_pre_norms && c.qk_norm_all);
    expect_windows(&c, 64, (const int[]){3, 3, 3, 0});
    cr_assert(c.rope_theta == 5e5f && c.rope_local_theta == 1e4f && c.rope_scaling == HS_ROPE_SCALING_YARN);
    cr_assert(hs_model_layer_rope_local(&c, 2) && !hs_model_layer_rope_local(&c, 3));
    cr_assert_float_eq(hs_model_rope_attn_factor(&c), (float)(0.1 * log(2.0) + 1.0), 1e-7f);
    cr_assert(c.rope_original_ctx == 32 && c.rope_factor == 2.0f && c.rope_truncate);
    c = loaded_config("olmo3", "\"rope_parameters\": {", "\"rope_theta\": 2e4, \"rope_scaling\": {\"rope_type\": "
                      "\"linear\", \"factor\": 3.0}, \"unused\": {");
    cr_assert(c.rope_theta == 2e4f && c.rope_local_theta == 5e5f && c.rope_scaling == HS_ROPE_SCALING_LINEAR);
    cr_assert_eq(hs_model_rope_attn_factor(&c), 1.0f);
    expect_refused("olmo3", "\"rope_type\": \"default\"", "\"rope_type\": \"linear\", \"factor\": 2.0", HS_ERR_UNSUPPORTED,
                   "rope_parameters.sliding_attention: rope type 'linear' is not supported");
    expect_refused("olmo3", "\"sliding_window\": 3", "\"sliding_window\": null", HS_ERR_FORMAT,
                   "sliding layers in layer_types without a window");
    /* rope_scaling merges into the full layers' parameters key by key, as dict.update does */
    c = loaded_config("olmo3", "\"rope_parameters\": {", "\"rope_scaling\": {\"factor\": 4.0}, \"rope_parameters\": {");
    cr_assert(c.rope_scaling == HS_ROPE_SCALING_YARN && c.rope_factor == 4.0f && c.rope_original_ctx == 32);
    c = loaded_config("olmo3", "\"rope_parameters\": {", "\"rope_scaling\": {\"rope_type\": \"default\"}, \"rope_parameters\": {");
    cr_assert_eq(c.rope_scaling, HS_ROPE_SCALING_NONE);
}

/* SmolLM3: no RoPE in every N-th layer, from no_rope_layers (ints or booleans) or, without
 * it, no_rope_layer_interval; windows on the layers layer_types marks, whatever
 * use_sliding_window says (transformers' masks read layer_types), and without layer_types on
 * the NoPE layers when use_sliding_window is set. */
Test(hf_folder, smollm3_config) {
    hs_model_config c = loaded_config("smollm3", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_LLAMA && c.nope_every == 2 && c.tied_embeddings && c.rope_theta == 1e4f);
    for (int l = 0; l < 4; l++) cr_assert_eq(hs_model_layer_rotates(&c, l), l % 2 == 0, "layer %d", l);
    expect_windows(&c, 64, (const int[]){0, 3, 0, 3});
    c = loaded_config("smollm3", "\"no_rope_layers\": [", "\"no_rope_layers\": [true, true, true, false], \"unused\": [");
    cr_assert_eq(c.nope_every, 4);
    c = loaded_config("smollm3", "\"no_rope_layer_interval\": 2,\n  \"no_rope_layers\": [",
                      "\"no_rope_layer_interval\": 3,\n  \"unused\": [");
    cr_assert(c.nope_every == 3 && !hs_model_layer_rotates(&c, 2) && hs_model_layer_rotates(&c, 3));
    c = loaded_config("smollm3", "\"no_rope_layers\": [", "\"no_rope_layers\": [1, 1, 1, 1], \"unused\": [");
    for (int l = 0; l < 4; l++) cr_assert(hs_model_layer_rotates(&c, l), "layer %d", l);
    /* layer_types decides, as transformers' masks read it; without it, use_sliding_window */
    c = loaded_config("smollm3", "\"use_sliding_window\": true", "\"use_sliding_window\": false");
    expect_windows(&c, 64, (const int[]){0, 3, 0, 3});
    c = loaded_config("smollm3", "\"layer_types\": [", "\"unused\": [");
    expect_windows(&c, 64, (const int[]){0, 3, 0, 3});
    char dir[256], cfg[1100];
    broken_copy_of("smollm3", dir, sizeof dir, "\"layer_types\": [", "\"unused\": [");
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    char *text = read_text(cfg), *hit = strstr(text, "\"use_sliding_window\": true");
    cr_assert_not_null(hit);
    memcpy(hit + 22, "0   ", 4); /* true -> 0 */
    write_text(cfg, text);
    free(text);
    hs_model *m = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_model_load(dir, &m, &e), HS_OK, "%s", e.msg);
    expect_windows(hs_model_get_config(m), 64, (const int[]){0, 0, 0, 0});
    hs_model_free(m);
    hs_test_remove_dir(dir);
    /* a longer list's extra entries unread; SmolLM3Config's 4 KV heads when the key is absent */
    cr_assert_eq(loaded_config("smollm3", "\"no_rope_layers\": [", "\"no_rope_layers\": [1, 0, 1, 0, 1, 1], \"unused\": [")
                     .nope_every,
                 2);
    expect_refused("smollm3", "\"num_key_value_heads\": 2,", "", HS_ERR_SHAPE,
                   "'model.layers.0.self_attn.k_proj.weight' has shape [24, 48], config.json implies [48, 48]");
    expect_refused("smollm3", "\"no_rope_layers\": [", "\"no_rope_layers\": [0, 1, 1, 0], \"unused\": [",
                   HS_ERR_UNSUPPORTED, "no_rope_layers: only a layer without RoPE every N layers (SmolLM3's layout) "
                   "is supported (layer 1 breaks the pattern)");
    expect_refused("smollm3", "\"no_rope_layers\": [", "\"no_rope_layers\": [1, 2, 1, 0], \"unused\": [",
                   HS_ERR_FORMAT, "no_rope_layers[1] must be 0 or 1");
    expect_refused("smollm3", "\"no_rope_layers\": [", "\"no_rope_layers\": [1, 0], \"unused\": [", HS_ERR_FORMAT,
                   "no_rope_layers must list a 0 or 1 for each of the 4 layers");
    expect_refused("smollm3", "\"no_rope_layer_interval\": 2,\n  \"no_rope_layers\": [",
                   "\"no_rope_layer_interval\": 0,\n  \"unused\": [", HS_ERR_FORMAT,
                   "no_rope_layer_interval 0 must be positive");
    expect_refused("smollm3", "\"sliding_window\": 3", "\"sliding_window\": null", HS_ERR_FORMAT,
                   "sliding layers in layer_types without a window");
    c.rope = HS_ROPE_NONE, c.nope_every = 2;
    cr_assert_eq(hs_model_config_validate(&c, "x", &e), HS_ERR_FORMAT);
    cr_assert(strstr(e.msg, "NoPE every 2 layers: needs RoPE"), "%s", e.msg);
}

/* Phi-3: fused qkv_proj and gate_up_proj split by rows, partial RoPE from
 * rope_parameters or the top level (longrope: hf_folder/longrope_config). */
Test(hf_folder, phi3_config_and_fused_weights) {
    hs_model_config c = loaded_config("phi3", NULL, NULL);
    cr_assert_eq(c.rot_dim, 12);
    cr_assert(!c.tied_embeddings && !c.qkv_bias && !c.qk_norm);
    c = loaded_config("phi3", "\"partial_rotary_factor\": 0.75,", "");
    cr_assert_eq(c.rot_dim, 0, "factor 1: the whole head");
    /* the Hub's spelling, at the top level; and both, where rope_parameters' wins as in transformers */
    c = loaded_config("phi3", "\"rope_parameters\": {\n    \"partial_rotary_factor\": 0.75,",
                      "\"partial_rotary_factor\": 0.5, \"rope_parameters\": {");
    cr_assert_eq(c.rot_dim, 8);
    c = loaded_config("phi3", "\"rope_parameters\": {", "\"partial_rotary_factor\": 0.5, \"rope_parameters\": {");
    cr_assert_eq(c.rot_dim, 12);
    expect_refused("phi3", "\"partial_rotary_factor\": 0.75", "\"partial_rotary_factor\": 0.7",
                   HS_ERR_UNSUPPORTED, "not an even count");
}

/* Phi (1, 1.5, 2): a parallel block whose two norms are one (ln2 aliases ln1),
 * biases on every projection and on lm_head, partial RoPE from rope_parameters
 * or the top level (PhiConfig's 0.5 when absent). */
Test(hf_folder, phi_config_and_shared_norm) {
    hs_model_config c = loaded_config("phi", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_PHI && c.parallel_attn_mlp && c.norm == HS_NORM_LAYERNORM && c.act == HS_ACT_GELU_NEW);
    cr_assert(c.qkv_bias && c.out_bias && !c.tied_embeddings && !c.learned_pos && c.rope == HS_ROPE_NEOX);
    cr_assert(c.d_head == 20 && c.rot_dim == 8, "d_head %d rot %d", c.d_head, c.rot_dim);
    hs_model *m = hs_test_fixture_model("phi");
    const hs_model_weights *w = hs_model_get_weights(m);
    for (int l = 0; l < 3; l++) cr_assert(w->layers[l].ln2_w == w->layers[l].ln1_w && w->layers[l].ln2_b == w->layers[l].ln1_b);
    cr_assert(w->unembed_b && w->unembed != w->tok_embd);
    hs_model_free(m);
    c = loaded_config("phi", "\"rope_parameters\": {\n    \"partial_rotary_factor\": 0.4,",
                      "\"partial_rotary_factor\": 0.5, \"rope_parameters\": {");
    cr_assert_eq(c.rot_dim, 10);
    c = loaded_config("phi", "\"partial_rotary_factor\": 0.4,", "");
    cr_assert_eq(c.rot_dim, 10, "PhiConfig's default 0.5");
    /* an empty rope_scaling is no rope_scaling: rope_parameters' factor stands */
    c = loaded_config("phi", "\"rope_parameters\": {", "\"rope_scaling\": {}, \"rope_parameters\": {");
    cr_assert_eq(c.rot_dim, 8);
    c = loaded_config("llama_gqa", "\"rope_parameters\": {", "\"rope_scaling\": {}, \"rope_parameters\": {");
    cr_assert(c.rope_theta == 500000.0f && c.rope_scaling == HS_ROPE_SCALING_NONE);
    /* a non-empty rope_scaling replaces rope_parameters, its rope_theta included */
    c = loaded_config("llama_gqa", "\"rope_parameters\": {", "\"rope_scaling\": {\"rope_theta\": 1000.0}, \"rope_parameters\": {");
    cr_assert_eq(c.rope_theta, 1000.0f);
    expect_refused("phi", "\"qk_layernorm\": false", "\"qk_layernorm\": true", HS_ERR_UNSUPPORTED,
                   "qk_layernorm (LayerNorms on q and k) is not supported");
    expect_refused("phi", "\"gelu_new\"", "\"relu\"", HS_ERR_UNSUPPORTED, "hidden_act 'relu' is not supported");
    expect_refused("phi", "\"partial_rotary_factor\": 0.4", "\"partial_rotary_factor\": 0.45", HS_ERR_UNSUPPORTED,
                   "not an even count");
}

/* GPT-Neo: unscaled scores, learned positions, tied; attention_types expanded
 * as transformers expands it (absent: its default of 24 layers) into the
 * window layout, other layouts refused by name. */
Test(hf_folder, gptneo_config_and_layouts) {
    hs_model_config c = loaded_config("gptneo", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_GPTNEO && c.attn_scale == 1.0f && c.learned_pos && c.tied_embeddings);
    cr_assert(!c.qkv_bias && c.out_bias && c.rope == HS_ROPE_NONE && c.norm == HS_NORM_LAYERNORM && c.d_mlp == 80);
    expect_windows(&c, 64, (const int[]){0, 3, 0, 3});
    const char *pair = "\"global\",\n        \"local\"\n      ],\n      2";
    c = loaded_config("gptneo", pair, "\"local\",\n        \"global\"\n      ],\n      2");
    expect_windows(&c, 64, (const int[]){3, 0, 3, 0});
    c = loaded_config("gptneo", pair, "\"global\"\n      ],\n      4");
    expect_windows(&c, 64, (const int[]){0, 0, 0, 0});
    c = loaded_config("gptneo", pair, "\"global\", \"local\", \"local\", \"global\"\n      ],\n      1");
    expect_windows(&c, 64, (const int[]){0, 3, 3, 0});
    /* a null intermediate_size is 4 x hidden_size, which these weights are not */
    expect_refused("gptneo", "\"intermediate_size\": 80", "\"intermediate_size\": null", HS_ERR_SHAPE,
                   "'transformer.h.0.mlp.c_fc.weight' has shape [80, 48], config.json implies [192, 48]");
    expect_refused("gptneo", pair, "\"local\", \"global\", \"global\", \"local\"\n      ],\n      1", HS_ERR_UNSUPPORTED,
                   "attention_types: only sliding layers from one layer on, with a full layer every N among them, "
                   "are supported (layer 2 breaks the pattern)");
    expect_refused("gptneo", pair, "\"global\",\n        \"local\"\n      ],\n      3", HS_ERR_FORMAT,
                   "attention_types lists more layers than num_layers 4");
    expect_refused("gptneo", pair, "\"global\"\n      ],\n      3", HS_ERR_FORMAT,
                   "attention_types lists 3 layers for num_layers 4");
    expect_refused("gptneo", "\"attention_types\"", "\"unused_types\"", HS_ERR_FORMAT,
                   "attention_types lists more layers than num_layers 4");
    expect_refused("gptneo", pair, "\"global\",\n        \"sparse\"\n      ],\n      2", HS_ERR_UNSUPPORTED,
                   "attention_types[0] has 'sparse' (global or local)");
    expect_refused("gptneo", "\"window_size\": 3", "\"window_size\": 0", HS_ERR_FORMAT, "window_size 0 must be positive");
}

/* GPT-J: adjacent-pair RoPE on rotary_dim dims, kept in the checkpoint's
 * layout; the parallel block's one norm; biases on the MLP and lm_head only. */
Test(hf_folder, gptj_config) {
    hs_model_config c = loaded_config("gptj", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_GPTJ && c.rope == HS_ROPE_NORMAL && c.rot_dim == 8 && c.d_head == 16);
    cr_assert(c.parallel_attn_mlp && !c.qkv_bias && !c.tied_embeddings && c.rope_theta == 10000.0f && c.d_mlp == 96);
    hs_model *m = hs_test_fixture_model("gptj");
    const hs_model_weights *w = hs_model_get_weights(m);
    cr_assert(w->layers[0].ln2_w == w->layers[0].ln1_w && !w->layers[0].bo && w->layers[0].b_up && w->unembed_b);
    hs_model_free(m);
    expect_refused("gptj", "\"rotary_dim\": 8", "\"rotary_dim\": null", HS_ERR_UNSUPPORTED, "rotary_dim null is not supported");
    expect_refused("gptj", "\"rotary_dim\": 8", "\"rotary_dim\": 18", HS_ERR_FORMAT,
                   "rotary_dim 18 must be even, from 2 to the head's 16");
    expect_refused("gptj", "\"rotary_dim\": 8", "\"rotary_dim\": 7", HS_ERR_FORMAT, "rotary_dim 7 must be even");
}

/* GPT-BigCode: GPT-2's block in nn.Linear layout, one key/value head with multi_query (else
 * one per head, c_attn's rows per head), scale_attn_weights false as unscaled scores. */
Test(hf_folder, bigcode_config) {
    hs_model_config c = loaded_config("bigcode", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_BIGCODE && c.n_kv_heads == 1 && c.n_heads == 4 && c.d_head == 12 && c.d_mlp == 80);
    cr_assert(c.act == HS_ACT_GELU_NEW && c.norm == HS_NORM_LAYERNORM && c.rope == HS_ROPE_NONE && c.n_ctx == 64);
    cr_assert(c.learned_pos && c.tied_embeddings && c.qkv_bias && c.out_bias && c.attn_scale == 0.0f);
    cr_assert_eq(loaded_config("bigcode_mha", NULL, NULL).n_kv_heads, 4);
    cr_assert_eq(loaded_config("bigcode", "\"scale_attn_weights\": true", "\"scale_attn_weights\": false").attn_scale,
                 1.0f);
    cr_assert_eq(loaded_config("bigcode", "\"gelu_pytorch_tanh\"", "\"gelu\"").act, HS_ACT_GELU);
    expect_refused("bigcode", "\"multi_query\": true", "\"multi_query\": false", HS_ERR_SHAPE,
                   "'transformer.h.0.attn.c_attn.weight' has shape [72, 48], config.json implies [144, 48]");
    expect_refused("bigcode", "\"n_inner\": 80", "\"n_inner\": null", HS_ERR_SHAPE,
                   "'transformer.h.0.mlp.c_fc.weight' has shape [80, 48], config.json implies [192, 48]");
    expect_refused("bigcode", "\"add_cross_attention\": false", "\"add_cross_attention\": true", HS_ERR_UNSUPPORTED,
                   "add_cross_attention is not supported");
    cr_assert_eq(loaded_config("bigcode", "\"gelu_pytorch_tanh\"", "\"gelu_fast\"").act, HS_ACT_GELU_NEW);
    expect_refused("bigcode", "\"gelu_pytorch_tanh\"", "\"gelu_10\"", HS_ERR_UNSUPPORTED,
                   "activation_function 'gelu_10' is not supported");
}

/* Falcon: the three layouts FalconDecoderLayer builds from the config (7B's parallel block on one
 * norm with one key/value head, 40B's ln_attn / ln_mlp with grouped heads, the sequential block),
 * the Hub's older key spellings, and the combinations transformers cannot run refused by name. */
Test(hf_folder, falcon_config) {
    hs_model_config c = loaded_config("falcon_mq", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_FALCON && c.n_heads == 4 && c.n_kv_heads == 1 && c.d_head == 12 && c.d_mlp == 80);
    cr_assert(c.parallel_attn_mlp && c.tied_embeddings && !c.qkv_bias && !c.out_bias && c.act == HS_ACT_GELU);
    cr_assert(c.norm == HS_NORM_LAYERNORM && c.rope == HS_ROPE_NEOX && c.rot_dim == 0 && c.rope_theta == 1e4f);
    hs_model *m = hs_test_fixture_model("falcon_mq");
    const hs_model_weights *w = hs_model_get_weights(m);
    cr_assert(w->layers[0].ln2_w == w->layers[0].ln1_w && w->layers[0].ln2_b == w->layers[0].ln1_b);
    hs_model_free(m);
    c = loaded_config("falcon_gqa", NULL, NULL);
    cr_assert(c.n_kv_heads == 2 && c.parallel_attn_mlp && c.qkv_bias && c.out_bias && !c.tied_embeddings);
    m = hs_test_fixture_model("falcon_gqa");
    w = hs_model_get_weights(m);
    cr_assert(w->layers[0].ln2_w != w->layers[0].ln1_w && w->layers[0].ln2_b != w->layers[0].ln1_b);
    hs_model_free(m);
    c = loaded_config("falcon_seq", NULL, NULL);
    cr_assert(c.n_kv_heads == 4 && !c.parallel_attn_mlp);
    cr_assert_eq(loaded_config("falcon_mq", "\"num_attention_heads\": 4", "\"n_head\": 4").n_heads, 4);
    cr_assert_eq(loaded_config("falcon_mq", "\"num_hidden_layers\": 3", "\"n_layer\": 3").n_layers, 3);
    cr_assert_eq(loaded_config("falcon_gqa", "\"num_kv_heads\": 2", "\"n_head_kv\": 2").n_kv_heads, 2);
    cr_assert_eq(loaded_config("falcon_mq", "\"activation\": \"gelu\"", "\"activation\": \"gelu_new\"").act,
                 HS_ACT_GELU_NEW);
    expect_refused("falcon_gqa", "\"parallel_attn\": true", "\"parallel_attn\": false", HS_ERR_UNSUPPORTED,
                   "new_decoder_architecture with parallel_attn false is not supported");
    expect_refused("falcon_mq", "\"num_ln_in_parallel_attn\": null", "\"num_ln_in_parallel_attn\": 2",
                   HS_ERR_UNSUPPORTED, "num_ln_in_parallel_attn 2 is not supported");
    expect_refused("falcon_gqa", "\"num_kv_heads\": 2", "\"num_kv_heads\": 3", HS_ERR_FORMAT,
                   "num_attention_heads 4 is not a multiple of num_kv_heads 3");
    expect_refused("falcon_gqa", "\"num_ln_in_parallel_attn\": 2", "\"num_ln_in_parallel_attn\": 1", HS_ERR_MISSING,
                   "transformer.h.0.input_layernorm.weight");
    expect_refused("falcon_mq", "\"multi_query\": true", "\"multi_query\": false", HS_ERR_SHAPE,
                   "'transformer.h.0.self_attention.query_key_value.weight' has shape [72, 48], config.json implies "
                   "[144, 48]");
    expect_refused("falcon_mq", "\"activation\": \"gelu\"", "\"activation\": \"silu\"", HS_ERR_UNSUPPORTED,
                   "activation 'silu' is not supported");
    expect_refused("falcon_mq", "\"alibi\": false", "\"apply_residual_connection_post_layernorm\": true, \"alibi\": false",
                   HS_ERR_UNSUPPORTED, "apply_residual_connection_post_layernorm true is not supported");
}

/* Falcon-RW: ALiBi in place of RoPE, its biases added before the score scale, so the slopes are
 * BLOOM's over sqrt(d_head). */
Test(hf_folder, falcon_rw_config) {
    hs_model_config c = loaded_config("falcon_rw", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_FALCON && c.alibi && c.rope == HS_ROPE_NONE && !c.parallel_attn_mlp && c.n_kv_heads == 4);
    cr_assert(c.qkv_bias && c.out_bias && c.tied_embeddings && c.d_head == 12);
    cr_assert_float_eq(c.alibi_scale, 1.0f / sqrtf(12.0f), 1e-7f);
    float slopes[4];
    hs_model_alibi_slopes(&c, slopes);
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(slopes[i], exp2f(-2.0f * (float)(i + 1)) / sqrtf(12.0f), 1e-8f, "slope %d: %g", i,
                           (double)slopes[i]);
}

/* BLOOM: ALiBi in place of positions, the embedding's LayerNorm, the Hub's spellings (n_embed,
 * tensors without "transformer."; the fixture's are so) and the slopes of a head count that is
 * not a power of two. */
Test(hf_folder, bloom_config) {
    hs_model_config c = loaded_config("bloom", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_BLOOM && c.alibi && c.embed_norm && c.rope == HS_ROPE_NONE && !c.learned_pos);
    cr_assert(c.n_heads == 6 && c.n_kv_heads == 6 && c.d_head == 8 && c.d_mlp == 192 && c.n_ctx == 2048);
    cr_assert(c.act == HS_ACT_GELU_NEW && c.norm == HS_NORM_LAYERNORM && c.qkv_bias && c.out_bias && c.tied_embeddings);
    cr_assert_eq(loaded_config("bloom", "\"hidden_size\": 48", "\"n_embed\": 48").d_model, 48);
    cr_assert_eq(loaded_config("bloom", "\"n_head\": 6", "\"num_attention_heads\": 6").n_heads, 6);
    float slopes[6];
    hs_model_alibi_slopes(&c, slopes);
    /* 2^(-8i/4) for the 4 heads of the power of two, then 2^(-4i/4) for i = 1, 3 */
    const double want[6] = {0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125};
    for (int h = 0; h < 6; h++) cr_assert_float_eq(slopes[h], want[h], 1e-12, "slope %d: %g", h, (double)slopes[h]);
    expect_refused("bloom", "\"apply_residual_connection_post_layernorm\": false",
                   "\"apply_residual_connection_post_layernorm\": true", HS_ERR_UNSUPPORTED,
                   "apply_residual_connection_post_layernorm true is not supported");
    expect_refused("bloom", "\"pretraining_tp\": 1,\n  \"slow_but_exact\": false",
                   "\"pretraining_tp\": 4,\n  \"slow_but_exact\": true", HS_ERR_UNSUPPORTED,
                   "slow_but_exact with pretraining_tp 4 is not supported");
    hs_model *m = hs_test_fixture_model("bloom");
    const hs_model_weights *w = hs_model_get_weights(m);
    cr_assert(w->embed_ln_w && w->embed_ln_b && !w->pos_embd);
    hs_model_free(m);
}

/* MPT: ALiBi, bias-free LayerNorms and projections, one fused Wqkv aliased three ways, attn_config's
 * clip_qkv and softmax_scale; the Hub's remote-code spelling MPTForCausalLM; what transformers'
 * MptForCausalLM does not run refused by name. */
Test(hf_folder, mpt_config) {
    hs_model_config c = loaded_config("mpt", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_MPT && c.alibi && !c.embed_norm && c.rope == HS_ROPE_NONE && !c.learned_pos);
    cr_assert(c.n_heads == 6 && c.d_head == 8 && c.d_mlp == 192 && c.n_ctx == 64 && c.act == HS_ACT_GELU);
    cr_assert(c.norm == HS_NORM_LAYERNORM && !c.qkv_bias && !c.out_bias && c.tied_embeddings);
    cr_assert(c.clip_qkv == 0.0f && c.attn_scale == 0.0f);
    c = loaded_config("mpt_clip", NULL, NULL);
    cr_assert(c.clip_qkv == 1.0f && c.attn_scale == 0.3f);
    cr_assert_eq(loaded_config("mpt", "\"MptForCausalLM\"", "\"MPTForCausalLM\"").arch, HS_ARCH_MPT);
    hs_model *m = hs_test_fixture_model("mpt");
    const hs_model_weights *w = hs_model_get_weights(m);
    cr_assert(w->layers[1].wk == w->layers[1].wq + 48 * 48 && w->layers[1].wv == w->layers[1].wk + 48 * 48);
    cr_assert(!w->layers[0].ln1_b && !w->layers[0].ln2_b && !w->lnf_b && !w->layers[0].bq);
    hs_model_free(m);
    expect_refused("mpt", "\"qk_ln\": false", "\"qk_ln\": true", HS_ERR_UNSUPPORTED,
                   "qk_ln, prefix_lm and attn_uses_sequence_id are not supported");
    expect_refused("mpt", "\"alibi\": true", "\"alibi\": false", HS_ERR_UNSUPPORTED,
                   "alibi false with alibi_bias_max 8 is not supported");
    expect_refused("mpt", "\"alibi_bias_max\": 8", "\"alibi_bias_max\": 16", HS_ERR_UNSUPPORTED,
                   "alibi true with alibi_bias_max 16 is not supported");
    expect_refused("mpt", "\"logit_scale\": null", "\"logit_scale\": 0.5", HS_ERR_UNSUPPORTED,
                   "logit_scale is not supported");
    expect_refused("mpt_clip", "\"clip_qkv\": 1.0", "\"clip_qkv\": -1.0", HS_ERR_FORMAT,
                   "clip_qkv -1 must be positive or null");
    expect_refused("mpt", "\"expansion_ratio\": 4", "\"expansion_ratio\": 2", HS_ERR_SHAPE, "ffn.up_proj.weight");
}

/* StableLM: Llama's tensors with LayerNorm biases, q/k/v biases by use_qkv_bias, a quarter of
 * each head rotated, the parallel block on one norm; StableLM-2 12B's per-head q/k norms, read
 * from one module per head into one [heads * d_head] weight. */
Test(hf_folder, stablelm_config) {
    hs_model_config c = loaded_config("stablelm", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_STABLELM && c.n_heads == 4 && c.n_kv_heads == 2 && c.d_head == 16 && c.rot_dim == 4);
    cr_assert(c.norm == HS_NORM_LAYERNORM && c.act == HS_ACT_SILU_GLU && c.qkv_bias && !c.out_bias);
    cr_assert(!c.parallel_attn_mlp && !c.tied_embeddings && c.n_ctx == 64);
    hs_model *m = hs_test_fixture_model("stablelm");
    const hs_model_weights *w = hs_model_get_weights(m);
    cr_assert(w->layers[0].ln1_b && w->layers[0].ln2_b && w->lnf_b && w->layers[0].bq && !w->layers[0].bo);
    hs_model_free(m);
    m = hs_test_fixture_model("stablelm_par");
    w = hs_model_get_weights(m);
    cr_assert(hs_model_get_config(m)->parallel_attn_mlp && w->layers[1].ln2_w == w->layers[1].ln1_w &&
              w->layers[1].ln2_b == w->layers[1].ln1_b);
    hs_model_free(m);
    cr_assert_eq(loaded_config("stablelm", "\"partial_rotary_factor\": 0.25", "\"partial_rotary_factor\": 0.5").rot_dim, 8);
    c = loaded_config("stablelm_qk", NULL, NULL);
    cr_assert(c.qk_norm && c.qk_norm_per_head && !c.qk_norm_all);
    cr_assert(hs_model_qk_norm_width(&c, 0) == 16 && hs_model_qk_norm_rows(&c, 0) == 4 && hs_model_qk_norm_rows(&c, 1) == 2);
    expect_refused("stablelm", "\"qk_layernorm\": false", "\"qk_layernorm\": true", HS_ERR_MISSING,
                   "model.layers.0.self_attn.q_layernorm.norms.0.weight");
    expect_refused("stablelm", "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", HS_ERR_UNSUPPORTED,
                   "hidden_act 'gelu' is not supported (silu only)");
}

/* Granite: Llama's tensors and four multipliers. The residual and logit multipliers are folded
 * into W_O and W_out and into the final norm (powers of two here: the fold is exact), which
 * this checks against a copy whose multipliers are 1. */
Test(hf_folder, granite_config) {
    hs_model_config c = loaded_config("granite", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_LLAMA && !strcmp(c.arch_name, "GraniteForCausalLM") && c.tied_embeddings);
    cr_assert(c.embed_scale == 3.0f && c.attn_scale == 0.2f && c.residual_scale == 0.5f && c.logit_scale == 0.25f);
    hs_model *m = hs_test_fixture_model("granite"),
             *one = loaded_model("granite", "\"residual_multiplier\": 0.5", "\"residual_multiplier\": 1.0");
    const hs_model_weights *w = hs_model_get_weights(m), *w1 = hs_model_get_weights(one);
    for (int i = 0; i < 48 * 48; i++) cr_assert_eq(w->layers[2].wo[i], 0.5f * w1->layers[2].wo[i], "wo[%d]", i);
    for (int i = 0; i < 48 * 80; i++) cr_assert_eq(w->layers[0].w_down[i], 0.5f * w1->layers[0].w_down[i], "w_down[%d]", i);
    for (int i = 0; i < 48; i++) cr_assert_eq(w->lnf_w[i], w1->lnf_w[i], "the logit scale folded in both");
    cr_assert_eq(memcmp(w->layers[0].wq, w1->layers[0].wq, 48 * 48 * sizeof(float)), 0, "W_Q untouched");
    cr_assert_eq(w->unembed, w->tok_embd);
    cr_assert_eq(memcmp(w->tok_embd, w1->tok_embd, 300 * 48 * sizeof(float)), 0, "tied: the fold leaves the embedding alone");
    hs_model_free(one);
    one = loaded_model("granite", "\"logits_scaling\": 4.0", "\"logits_scaling\": 1.0");
    w1 = hs_model_get_weights(one);
    for (int i = 0; i < 48; i++) cr_assert_eq(w->lnf_w[i], 0.25f * w1->lnf_w[i], "lnf_w[%d]", i);
    hs_model_free(one);
    hs_model_free(m);
    expect_refused("granite", "\"logits_scaling\": 4.0", "\"logits_scaling\": 0.0", HS_ERR_FORMAT,
                   "logits_scaling 0 must be positive");
    expect_refused("granite", "\"attention_bias\": false", "\"attention_bias\": true", HS_ERR_UNSUPPORTED,
                   "attention_bias (with o_proj bias) is not supported");
}

/* Cohere: Llama's tensors in GPT-J's parallel block on one bias-free LayerNorm, RoPE on adjacent
 * pairs, the logit scale folded into the final norm; Command R+'s per-head q/k norms. */
Test(hf_folder, cohere_config) {
    hs_model_config c = loaded_config("cohere", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_COHERE && c.parallel_attn_mlp && c.norm == HS_NORM_LAYERNORM && c.rope == HS_ROPE_NORMAL);
    cr_assert(c.act == HS_ACT_SILU_GLU && c.logit_scale == 0.25f && c.tied_embeddings && !c.qkv_bias && !c.out_bias);
    cr_assert(c.n_kv_heads == 2 && c.d_head == 12 && c.sliding_window == 0 && c.nope_every == 0 && c.norm_eps == 1e-5f);
    hs_model *m = hs_test_fixture_model("cohere"),
             *one = loaded_model("cohere", "\"logit_scale\": 0.25", "\"logit_scale\": 1.0");
    const hs_model_weights *w = hs_model_get_weights(m), *w1 = hs_model_get_weights(one);
    cr_assert(w->layers[1].ln2_w == w->layers[1].ln1_w && !w->layers[1].ln1_b && !w->lnf_b);
    for (int i = 0; i < 48; i++) cr_assert_eq(w->lnf_w[i], 0.25f * w1->lnf_w[i], "lnf_w[%d]", i);
    hs_model_free(one);
    hs_model_free(m);
    c = loaded_config("cohere_qk", NULL, NULL);
    cr_assert(c.qk_norm && c.qk_norm_per_head && hs_model_qk_norm_rows(&c, 0) == 4 && hs_model_qk_norm_rows(&c, 1) == 2);
    expect_refused("cohere", "\"use_qk_norm\": false", "\"use_qk_norm\": true", HS_ERR_MISSING,
                   "model.layers.0.self_attn.q_norm.weight");
    expect_refused("cohere", "\"logit_scale\": 0.25", "\"logit_scale\": -1", HS_ERR_FORMAT,
                   "logit_scale -1 must be positive");
}

/* Cohere2: every fourth layer full and without RoPE, the others sliding and rotating; as
 * layer_types lists them, or as sliding_window_pattern lays them out where it is absent. */
Test(hf_folder, cohere2_config) {
    hs_model_config c = loaded_config("cohere2", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_COHERE && !strcmp(c.arch_name, "Cohere2ForCausalLM") && c.nope_every == 4);
    expect_windows(&c, 64, (const int[]){3, 3, 3, 0});
    for (int l = 0; l < 4; l++) cr_assert_eq(hs_model_layer_rotates(&c, l), l != 3, "layer %d", l);
    c = loaded_config("cohere2", "\"layer_types\": [", "\"sliding_window_pattern\": 2, \"unread\": [");
    expect_windows(&c, 64, (const int[]){3, 0, 3, 0});
    cr_assert_eq(c.nope_every, 2);
    expect_refused("cohere2", "\"layer_types\": [\n    \"sliding_attention\"", "\"layer_types\": [\n    \"full_attention\"",
                   HS_ERR_UNSUPPORTED, "must be every N-th layer (layer 1 breaks the pattern)");
    expect_refused("cohere2", "\"sliding_window\": 3", "\"sliding_window\": null", HS_ERR_FORMAT,
                   "sliding layers in layer_types without a window");
}

/* StarCoder2: LayerNorms with biases, biases on every projection (use_bias), the tanh GELU MLP,
 * a window in every layer (none where sliding_window is null), an untied lm_head. */
Test(hf_folder, starcoder2_config) {
    hs_model_config c = loaded_config("starcoder2", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_STARCODER2 && c.norm == HS_NORM_LAYERNORM && c.act == HS_ACT_GELU_NEW);
    cr_assert(c.qkv_bias && c.out_bias && !c.tied_embeddings && c.rope == HS_ROPE_NEOX && c.n_kv_heads == 2);
    expect_windows(&c, 64, (const int[]){4, 4, 4});
    hs_model *m = hs_test_fixture_model("starcoder2");
    const hs_model_weights *w = hs_model_get_weights(m);
    cr_assert(w->layers[2].bo && w->layers[2].b_up && w->layers[2].b_down && w->layers[2].ln2_b && w->lnf_b);
    cr_assert(!w->layers[2].w_gate && w->unembed != w->tok_embd);
    hs_model_free(m);
    c = loaded_config("starcoder2", "\"sliding_window\": 4", "\"sliding_window\": null");
    expect_windows(&c, 64, (const int[]){0, 0, 0});
    c = loaded_config("starcoder2", "\"use_bias\": true", "\"use_bias\": false");
    cr_assert(!c.qkv_bias && !c.out_bias);
    expect_refused("starcoder2", "\"hidden_act\": \"gelu_pytorch_tanh\"", "\"hidden_act\": \"silu\"",
                   HS_ERR_UNSUPPORTED, "silu");
}

/* Gemma 3's multimodal checkpoints (4B, 12B, 27B): the text model from text_config, whose
 * absent keys take Gemma3TextConfig's defaults (the Hub's configs leave most out), under the
 * Hub's tensor names or a transformers state dict's (model.language_model.*); the vision tower
 * never loaded. */
Test(hf_folder, gemma3_multimodal_text_model) {
    hs_model_config c = loaded_config("gemma3_mm", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_GEMMA && !strcmp(c.arch_name, "Gemma3ForConditionalGeneration"));
    cr_assert(c.qk_norm && c.post_norms && c.norm == HS_NORM_RMSNORM_1P && c.tied_embeddings && c.norm_eps == 1e-6f);
    cr_assert(c.attn_softcap == 0.0f && c.final_softcap == 0.0f && c.act == HS_ACT_GELU_GLU && c.n_kv_heads == 2);
    cr_assert(c.rope_theta == 1e6f && c.rope_local_theta == 1e4f && c.rope_scaling == HS_ROPE_SCALING_LINEAR);
    expect_windows(&c, 64, (const int[]){4, 4, 0});
    cr_assert(c.bos_token_id == 2 && c.eos_token_id == 1, "Gemma3TextConfig's, which text_config leaves out");
    hs_model *m = hs_test_fixture_model("gemma3_mm"), *t = hs_test_fixture_model("gemma3");
    cr_assert_eq(hs_model_n_params(m), hs_model_n_params(t), "the text model's parameters alone");
    hs_model_free(t);
    char dir[256], st_path[1100];
    broken_copy_of("gemma3_mm", dir, sizeof dir, NULL, NULL);
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
    rename_tensors(st_path, "\"language_model.model.", "\"model.language_model.");
    hs_model *m2 = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_model_load(dir, &m2, &e), HS_OK, "%s", e.msg);
    const hs_model_weights *w = hs_model_get_weights(m), *w2 = hs_model_get_weights(m2);
    cr_assert(!memcmp(w->layers[2].q_norm_w, w2->layers[2].q_norm_w, 16 * sizeof(float)) &&
              !memcmp(w->tok_embd, w2->tok_embd, 300 * 48 * sizeof(float)) &&
              !memcmp(w->lnf_w, w2->lnf_w, 48 * sizeof(float)));
    hs_model_free(m2);
    hs_model_free(m);
    hs_test_remove_dir(dir);
    /* without num_attention_heads the default 8 heads of 16 dims need a q_proj these weights lack */
    expect_refused("gemma3_mm", "\"num_attention_heads\": 4,", "", HS_ERR_SHAPE,
                   "'language_model.model.layers.0.self_attn.q_proj.weight' has shape [64, 48], config.json implies "
                   "[128, 48]");
    expect_refused("gemma3_mm", "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false", HS_ERR_MISSING,
                   "'language_model.lm_head.weight'"); /* untied: the head under the text model's name */
    expect_refused("gemma3_mm", "\"text_config\": {", "\"text_config\": 1, \"unused\": {", HS_ERR_FORMAT,
                   "key 'text_config' must be an object");
    expect_refused("gemma3_mm", "\"query_pre_attn_scalar\": 24", "\"query_pre_attn_scalar\": 0", HS_ERR_FORMAT,
                   "config.json: text_config: query_pre_attn_scalar 0 must be positive");
}

/* OPT: a ReLU MLP, learned positions two rows into their table (row p + 2
 * for position p), biases per enable_bias; OPT-350M's layout refused. */
Test(hf_folder, opt_config) {
    hs_model_config c = loaded_config("opt", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_OPT && c.act == HS_ACT_RELU && c.learned_pos && c.tied_embeddings);
    cr_assert(c.qkv_bias && c.out_bias && c.norm == HS_NORM_LAYERNORM && c.norm_eps == 1e-5f && c.n_ctx == 64);
    char st_path[1100];
    hs_err e = {0};
    hs_model *m = hs_test_fixture_model("opt");
    hs_test_fixture_path(st_path, sizeof st_path, "models/opt/model.safetensors");
    hs_st_file *f = NULL;
    cr_assert_eq(hs_st_open(st_path, &f, &e), HS_OK, "%s", e.msg);
    const hs_st_tensor *t = hs_st_find(f, "model.decoder.embed_positions.weight");
    cr_assert(t && t->shape[0] == 66 && t->dtype == HS_DTYPE_F32);
    cr_assert(!memcmp(hs_model_get_weights(m)->pos_embd, (const float *)t->data + 2 * 48, 64 * 48 * sizeof(float)),
              "position p is the table's row p + 2");
    hs_st_close(f);
    /* the Hub's OPT files name the decoder without "model.": the same model, tensor for tensor */
    char dir[256];
    broken_copy_of("opt", dir, sizeof dir, NULL, NULL);
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
    rename_tensors(st_path, "\"model.decoder.", "\"decoder.");
    cr_assert_eq(hs_st_open(st_path, &f, &e), HS_OK, "%s", e.msg);
    cr_assert(hs_st_find(f, "decoder.embed_tokens.weight") && !hs_st_find(f, "model.decoder.embed_tokens.weight"));
    hs_st_close(f);
    hs_model *m2 = NULL;
    cr_assert_eq(hs_model_load(dir, &m2, &e), HS_OK, "%s", e.msg);
    const hs_model_weights *w = hs_model_get_weights(m), *w2 = hs_model_get_weights(m2);
    cr_assert(!memcmp(w->layers[2].w_down, w2->layers[2].w_down, 48 * 80 * sizeof(float)) &&
              !memcmp(w->pos_embd, w2->pos_embd, 64 * 48 * sizeof(float)));
    hs_model_free(m2);
    hs_test_remove_dir(dir);
    hs_model_free(m);
    expect_refused("opt", "\"do_layer_norm_before\": true", "\"do_layer_norm_before\": false", HS_ERR_UNSUPPORTED,
                   "do_layer_norm_before false (OPT-350M's post-LN) is not supported");
    expect_refused("opt", "\"word_embed_proj_dim\": 48", "\"word_embed_proj_dim\": 32", HS_ERR_UNSUPPORTED,
                   "word_embed_proj_dim 32 differs from hidden_size 48");
    expect_refused("opt", "\"activation_function\": \"relu\"", "\"activation_function\": \"silu\"", HS_ERR_UNSUPPORTED,
                   "activation_function 'silu' is not supported");
    expect_refused("opt", "\"max_position_embeddings\": 64", "\"max_position_embeddings\": 65", HS_ERR_SHAPE,
                   "'model.decoder.embed_positions.weight' has shape [66, 48], config.json implies [67, 48]");
}

/* OLMo (1): Llama's layout with parameter-free LayerNorms (one shared weight
 * of ones, no bias, not counted as parameters); clip_qkv read (null: none), a
 * negative or non-numeric one refused. */
Test(hf_folder, olmo1_config) {
    hs_model_config c = loaded_config("olmo", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_LLAMA && c.norm == HS_NORM_LAYERNORM && c.norm_eps == 1e-5f && !c.post_norms);
    hs_model *m = hs_test_fixture_model("olmo");
    const hs_model_weights *w = hs_model_get_weights(m);
    cr_assert(w->lnf_w && w->layers[1].ln1_w == w->lnf_w && w->layers[2].ln2_w == w->lnf_w && !w->layers[0].ln1_b);
    for (int i = 0; i < 48; i++) cr_assert_eq(w->lnf_w[i], 1.0f);
    const int64_t expect = 300 * 48 * 2 + 3 * (48 * 48 * 2 + 24 * 48 * 2 + 3 * 48 * 80);
    cr_assert_eq(hs_model_n_params(m), expect, "%lld parameters, %lld expected", (long long)hs_model_n_params(m),
                 (long long)expect);
    hs_model_free(m);
    cr_assert_eq(c.clip_qkv, 0.0f);
    hs_model_config cc = loaded_config("olmo_clip", NULL, NULL);
    cr_assert_eq(cc.clip_qkv, 1.0f);
    hs_err e = {0};
    cc.qk_norm = 1, cc.norm = HS_NORM_RMSNORM; /* OLMoE's order (clamp after the norms) is not the forward's */
    cr_assert_eq(hs_model_config_validate(&cc, "x", &e), HS_ERR_UNSUPPORTED);
    cr_assert(strstr(e.msg, "clip_qkv with q/k norms"), "%s", e.msg);
    cc.qk_norm = 0, cc.norm = HS_NORM_LAYERNORM, cc.clip_qkv = -1.0f;
    cr_assert_eq(hs_model_config_validate(&cc, "x", &e), HS_ERR_FORMAT);
    cr_assert(strstr(e.msg, "clip_qkv -1 must be positive"), "%s", e.msg);
    cr_assert_eq(loaded_config("olmo", "\"clip_qkv\": null", "\"clip_qkv\": 8.0").clip_qkv, 8.0f);
    expect_refused("olmo", "\"clip_qkv\": null", "\"clip_qkv\": -8.0", HS_ERR_FORMAT,
                   "key 'clip_qkv' must be positive or null (got -8)");
    expect_refused("olmo", "\"clip_qkv\": null", "\"clip_qkv\": 0", HS_ERR_FORMAT,
                   "key 'clip_qkv' must be positive or null (got 0)"); /* transformers would clamp to 0 */
    expect_refused("olmo", "\"clip_qkv\": null", "\"clip_qkv\": \"8\"", HS_ERR_FORMAT,
                   "key 'clip_qkv' must be a number");
}

/* Gemma 2: its own score scale, the caps, the sandwich norms, the embedding's scale, the
 * sliding windows of its layers; Gemma (1) has none of the Gemma 2 parts. What Gemma cannot
 * be is refused by name. */
Test(hf_folder, gemma_configs) {
    char dir[256];
    hs_model_config c = loaded_config("gemma2", NULL, NULL);
    cr_assert_eq(c.arch, HS_ARCH_GEMMA);
    cr_assert(c.post_norms && c.act == HS_ACT_GELU_GLU && c.tied_embeddings && c.norm == HS_NORM_RMSNORM_1P);
    cr_assert_float_eq(c.attn_scale, 1.0f / sqrtf(24.0f), 1e-7f);
    cr_assert_eq(c.attn_softcap, 3.0f);
    cr_assert_eq(c.final_softcap, 5.0f);
    cr_assert_float_eq(c.embed_scale, sqrtf(48.0f), 1e-6f);
    expect_windows(&c, 64, (const int[]){3, 0, 3}); /* layer_types: sliding, full, sliding */
    /* null switches a cap off; an absent key takes Gemma2Config's default */
    c = loaded_config("gemma2", "\"attn_logit_softcapping\": 3.0", "\"attn_logit_softcapping\": null");
    cr_assert_eq(c.attn_softcap, 0.0f);
    c = loaded_config("gemma2", "\"final_logit_softcapping\": 5.0,", "");
    cr_assert_eq(c.final_softcap, 30.0f);
    c = loaded_config("gemma2", "\"sliding_attention\",\n    \"full_attention\",\n    \"sliding_attention\"",
                      "\"full_attention\", \"full_attention\", \"full_attention\"");
    expect_windows(&c, 64, (const int[]){0, 0, 0});
    c = loaded_config("gemma", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_GEMMA && !c.post_norms && c.act == HS_ACT_GELU_GLU && c.n_kv_heads == 1 &&
              c.norm == HS_NORM_RMSNORM_1P);
    cr_assert(c.attn_scale == 0.0f && c.attn_softcap == 0.0f && c.final_softcap == 0.0f && c.sliding_window == 0);
    /* Gemma 3: q/k norms, the local layers' RoPE base, one global layer in three (layer_types, or
     * the Hub's sliding_window_pattern), the global layers' scaling; no caps */
    c = loaded_config("gemma3", NULL, NULL);
    cr_assert(c.arch == HS_ARCH_GEMMA && c.qk_norm && c.post_norms && c.norm == HS_NORM_RMSNORM_1P);
    cr_assert(c.attn_softcap == 0.0f && c.final_softcap == 0.0f);
    cr_assert(c.rope_theta == 1e6f && c.rope_local_theta == 1e4f && c.global_every == 3);
    cr_assert(c.rope_scaling == HS_ROPE_SCALING_LINEAR && c.rope_factor == 2.0f);
    cr_assert(hs_model_layer_rope_local(&c, 0) && hs_model_layer_rope_local(&c, 1) && !hs_model_layer_rope_local(&c, 2));
    expect_windows(&c, 64, (const int[]){4, 4, 0});
    c = loaded_config("gemma3", "\"layer_types\": [", "\"sliding_window_pattern\": 2, \"unused_layer_types\": [");
    cr_assert_eq(c.global_every, 2);
    expect_windows(&c, 64, (const int[]){4, 0, 4});
    expect_refused("gemma3", "\"sliding_window\": 4", "\"sliding_window\": null", HS_ERR_FORMAT,
                   "sliding layers in layer_types without a window");
    expect_refused("gemma2", "\"sliding_window\": 3", "\"sliding_window\": null", HS_ERR_FORMAT,
                   "sliding layers in layer_types without a window");
    /* Gemma (1)'s legacy "gelu" is the tanh form, as transformers 5 reads it; other values are refused */
    c = loaded_config("gemma", "\"hidden_act\": \"gelu_pytorch_tanh\"", "\"hidden_act\": \"gelu\"");
    cr_assert_eq(c.act, HS_ACT_GELU_GLU);
    expect_refused("gemma", "\"hidden_act\": \"gelu_pytorch_tanh\"", "\"hidden_act\": \"silu\"",
                   HS_ERR_UNSUPPORTED, "hidden_act 'silu' is not supported");
    /* the norms' weights are loaded as stored: offsets from 1 */
    broken_copy_of("gemma2", dir, sizeof dir, NULL, NULL);
    hs_model *m = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_model_load(dir, &m, &e), HS_OK, "%s", e.msg);
    char st_path[512];
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
    hs_st_file *f = NULL;
    cr_assert_eq(hs_st_open(st_path, &f, &e), HS_OK, "%s", e.msg);
    const hs_st_tensor *t = hs_st_find(f, "model.layers.1.post_feedforward_layernorm.weight");
    cr_assert(t && t->dtype == HS_DTYPE_F32);
    cr_assert_eq(hs_model_get_weights(m)->layers[1].mlp_post_w[5], ((const float *)t->data)[5]);
    hs_st_close(f);
    hs_model_free(m);
    hs_test_remove_dir(dir);
    const char *bad[][3] = {
        {"\"rope_type\": \"default\"", "\"rope_type\": \"yarn\"", "rope type 'yarn' is not supported for Gemma"},
        {"\"gelu_pytorch_tanh\"", "\"relu\"", "hidden_activation 'relu' is not supported"},
        {"\"gelu_pytorch_tanh\"", "\"gelu\"", "hidden_activation 'gelu' is not supported"}, /* Gemma 2: the erf form */
        {"\"use_bidirectional_attention\": null", "\"use_bidirectional_attention\": true", "causal"},
        {"\"attn_logit_softcapping\": 3.0", "\"attn_logit_softcapping\": -3.0", "'attn_logit_softcapping' must be positive"},
        {"\"query_pre_attn_scalar\": 24", "\"query_pre_attn_scalar\": 0", "query_pre_attn_scalar 0 must be positive"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        expect_refused("gemma2", bad[i][0], bad[i][1], i < 4 ? HS_ERR_UNSUPPORTED : HS_ERR_FORMAT, bad[i][2]);
    }
    /* a Gemma 2 checkpoint relabelled Gemma 3 lacks the q/k norms, and says which */
    expect_refused("gemma2", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
                   HS_ERR_MISSING, "'model.layers.0.self_attn.q_norm.weight'");
    /* ... and relabelled multimodal, it has no text model where one is looked for */
    expect_refused("gemma2", "Gemma2ForCausalLM", "Gemma3ForConditionalGeneration",
                   HS_ERR_MISSING, "'language_model.model.embed_tokens.weight'");
    /* other layouts: where (window_from, global_every) describes them, the sliding layers get the
     * window and (Gemma 3) the local RoPE base; where not, they are refused by name */
    c = loaded_config("gemma3", "\"sliding_attention\",\n    \"sliding_attention\",\n    \"full_attention\"",
                      "\"full_attention\", \"sliding_attention\", \"full_attention\"");
    expect_windows(&c, 64, (const int[]){0, 4, 0});
    cr_assert(!hs_model_layer_rope_local(&c, 0) && hs_model_layer_rope_local(&c, 1) && !hs_model_layer_rope_local(&c, 2));
    expect_refused("gemma3", "\"sliding_attention\",\n    \"sliding_attention\",\n    \"full_attention\"",
                   "\"sliding_attention\", \"full_attention\", \"full_attention\"",
                   HS_ERR_UNSUPPORTED, "(layer 2 breaks the pattern)");
    expect_refused("gemma3", "\"sliding_attention\",\n    \"sliding_attention\",\n    \"full_attention\"",
                   "\"sliding_attention\", \"chunked_attention\", \"full_attention\"",
                   HS_ERR_UNSUPPORTED, "layer_types[1] is 'chunked_attention'");
    c = loaded_config("gemma2", "\"sliding_attention\",\n    \"full_attention\",\n    \"sliding_attention\"",
                      "\"full_attention\", \"sliding_attention\", \"sliding_attention\"");
    expect_windows(&c, 64, (const int[]){0, 3, 3});
    expect_refused("gemma3", "\"rope_theta\": 10000.0", "\"rope_theta\": 0.0",
                   HS_ERR_FORMAT, "the local layers' RoPE base 0 must be positive");
}

/* llama_gqa's weights under RoPE frequency rescaling (transformers' references,
 * part rope_scaling): llama3 (Llama 3.1 / 3.2) in transformers 5's spelling
 * (rope_parameters) and the Hub's (rope_theta beside rope_scaling), and linear.
 * The logits move by up to 3.5 from the unscaled model's, so a loader that
 * ignored the scaling fails; they must match within the conformance bound. */
static void rope_scaling_case(const char *kind, int hub_spelling) {
    char rel[128], path[1024], params[400], dir[256];
    snprintf(rel, sizeof rel, "ref/llama_gqa_rope_%s.safetensors", kind);
    hs_test_fixture_path(path, sizeof path, rel);
    hs_st_file *ref = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_st_open(path, &ref, &e), HS_OK, "%s", e.msg);
    const float factor = *(const float *)hs_test_ref_tensor(ref, "rope.factor")->data;
    if (!strcmp(kind, "llama3"))
        snprintf(params, sizeof params,
                 "\"rope_type\": \"llama3\", \"factor\": %.9g, \"low_freq_factor\": %.9g, \"high_freq_factor\": %.9g, "
                 "\"original_max_position_embeddings\": %d",
                 (double)factor, (double)*(const float *)hs_test_ref_tensor(ref, "rope.low_freq_factor")->data,
                 (double)*(const float *)hs_test_ref_tensor(ref, "rope.high_freq_factor")->data,
                 (int)*(const float *)hs_test_ref_tensor(ref, "rope.original_max_position_embeddings")->data);
    else if (!strncmp(kind, "yarn", 4)) { /* every rope.* tensor is a key of the scaling */
        int n = snprintf(params, sizeof params, "\"rope_type\": \"yarn\"");
        for (int i = 0; i < hs_st_count(ref); i++) {
            const hs_st_tensor *t = hs_st_get(ref, i);
            if (strncmp(t->name, "rope.", 5)) continue;
            const double v = *(const float *)t->data;
            if (!strcmp(t->name, "rope.truncate")) n += snprintf(params + n, sizeof params - n, ", \"truncate\": %s", v ? "true" : "false");
            else n += snprintf(params + n, sizeof params - n, ", \"%s\": %.9g", t->name + 5, v);
        }
    } else
        snprintf(params, sizeof params, "\"rope_type\": \"%s\", \"factor\": %.9g", kind, (double)factor);
    char from[200], to[600];
    snprintf(from, sizeof from, "\"rope_parameters\": {\n    \"rope_theta\": 500000.0,\n    \"rope_type\": \"default\"\n  }");
    if (hub_spelling) snprintf(to, sizeof to, "\"rope_theta\": 500000.0, \"rope_scaling\": {%s}", params);
    else snprintf(to, sizeof to, "\"rope_parameters\": {\"rope_theta\": 500000.0, %s}", params);
    broken_copy_of("llama_gqa", dir, sizeof dir, from, to);
    hs_model *m = NULL;
    cr_assert_eq(hs_model_load(dir, &m, &e), HS_OK, "%s", e.msg);
    const hs_model_config *c = hs_model_get_config(m);
    cr_assert_eq(c->rope_scaling, !strcmp(kind, "llama3")     ? HS_ROPE_SCALING_LLAMA3
                                  : !strncmp(kind, "yarn", 4) ? HS_ROPE_SCALING_YARN
                                                              : HS_ROPE_SCALING_LINEAR);
    char what[64];
    snprintf(what, sizeof what, "rope %s%s", kind, hub_spelling ? " (Hub spelling)" : "");
    hs_test_logits_match(m, ref, what);
    hs_model_free(m);
    hs_st_close(ref);
    hs_test_remove_dir(dir);
}

Test(hf_folder, rope_scaling_matches_transformers) {
    rope_scaling_case("llama3", 0);
    rope_scaling_case("llama3", 1);
    rope_scaling_case("linear", 0);
    rope_scaling_case("yarn", 0);
    rope_scaling_case("yarn", 1);
    rope_scaling_case("yarn_betas", 0);
}

/* dynamic (frequencies that follow the longest sequence seen so far) is
 * refused by name, as are incomplete scalings and YaRN's mscale variant. */
Test(hf_folder, rope_scaling_refusals) {
    const char *from = "\"rope_type\": \"default\"";
    expect_refused("llama_gqa", from, "\"rope_type\": \"dynamic\", \"factor\": 4.0",
                   HS_ERR_UNSUPPORTED, "rope type 'dynamic' is not supported");
    expect_refused("llama_gqa", from, "\"rope_type\": \"yarn\", \"original_max_position_embeddings\": 16",
                   HS_ERR_MISSING, "rope type 'yarn' needs 'factor'");
    expect_refused("llama_gqa", from, "\"rope_type\": \"yarn\", \"factor\": 4.0, \"mscale\": 1.0, \"mscale_all_dim\": 1.0",
                   HS_ERR_UNSUPPORTED, "mscale");
    expect_refused("llama_gqa", from, "\"rope_type\": \"yarn\", \"factor\": 2.0, \"original_max_position_embeddings\": 8.5",
                   HS_ERR_FORMAT, "must be a positive whole number");
    /* as transformers reads them: the original context from max_position_embeddings (64), a null
     * factor from their ratio, mscale alone ignored, a falsy truncate off */
    hs_model_config c = loaded_config("llama_gqa", from, "\"rope_type\": \"yarn\", \"factor\": null, \"mscale\": 1.0, "
                                      "\"original_max_position_embeddings\": 16.0, \"truncate\": null");
    cr_assert(c.rope_scaling == HS_ROPE_SCALING_YARN && c.rope_factor == 4.0f && c.rope_original_ctx == 16 && !c.rope_truncate);
    c = loaded_config("llama_gqa", from, "\"rope_type\": \"yarn\", \"factor\": 2.0");
    cr_assert(c.rope_original_ctx == 64 && c.rope_truncate && c.rope_beta_fast == 32.0f && c.rope_beta_slow == 1.0f);
    /* Phi-3's config class renames yarn to longrope, which needs its lists */
    expect_refused("phi3", from, "\"rope_type\": \"yarn\", \"factor\": 2.0", HS_ERR_MISSING,
                   "rope type 'longrope' needs a list 'short_factor'");
    expect_refused("llama_gqa", from, "\"rope_type\": \"llama3\", \"factor\": 8.0",
                   HS_ERR_MISSING, "needs 'low_freq_factor'");
    expect_refused("llama_gqa", from, "\"rope_type\": \"linear\", \"factor\": 0.5",
                   HS_ERR_FORMAT, "factor 0.5 must be at least 1");
}

/* The LongRoPE lists and attention factor as transformers reads them (the
 * logits are test_conformance's phi3_longrope): Phi-3's original context from
 * the top level, else its config class's 4096; other architectures' as
 * yarn's; the Hub's spellings; and what is refused. */
Test(hf_folder, longrope_config) {
    const float shrt[6] = {1.0f, 1.05f, 1.3f, 1.8f, 2.2f, 2.5f}, lng[6] = {1.0f, 1.6f, 3.1f, 5.5f, 9.0f, 12.5f};
    hs_model_config c = loaded_config("phi3_longrope", NULL, NULL);
    cr_assert(c.rope_scaling == HS_ROPE_SCALING_LONGROPE && c.rope_n_factors == 6 && c.rot_dim == 12);
    cr_assert(c.rope_original_ctx == 5 && c.rope_factor == 12.8f, "orig %d factor %g", c.rope_original_ctx,
              (double)c.rope_factor);
    cr_assert_float_eq(c.rope_attn_factor, (float)sqrt(1.0 + log(12.8) / log(5.0)), 1e-6);
    cr_assert(!memcmp(c.rope_short_factor, shrt, sizeof shrt) && !memcmp(c.rope_long_factor, lng, sizeof lng));
    cr_assert(!hs_model_rope_long(&c, 5) && hs_model_rope_long(&c, 6));
    float inv_s[6], inv_l[6];
    hs_model_rope_inv_freq(&c, NULL, inv_s);
    hs_model_rope_inv_freq_long(&c, NULL, inv_l);
    for (int i = 0; i < 6; i++) {
        const float base = powf(10000.0f, (float)(2 * i) / 12.0f);
        cr_assert(inv_s[i] == 1.0f / (shrt[i] * base) && inv_l[i] == 1.0f / (lng[i] * base), "pair %d", i);
    }
    /* the Hub's spelling: rope_scaling, with the old name 'su' of Phi-3-128k's early revisions,
     * read as longrope as transformers 4 read it (5.23 renames it only after looking for
     * longrope's keys, and fails): a leniency, on purpose */
    hs_model_config h = loaded_config("phi3_longrope", "\"rope_parameters\": {",
                                      "\"rope_theta\": 10000.0, \"rope_scaling\": {\"type\": \"su\",");
    cr_assert(h.rope_scaling == HS_ROPE_SCALING_LONGROPE && h.rot_dim == 12 && h.rope_attn_factor == c.rope_attn_factor);
    /* without the top-level key Phi-3 takes 4096, not the scaling's 5: 64 / 4096 < 1, no attention factor */
    h = loaded_config("phi3_longrope", "\"original_max_position_embeddings\": 5,\n  \"pad", "\"pad");
    cr_assert(h.rope_original_ctx == 4096 && h.rope_attn_factor == 1.0f && !hs_model_rope_long(&h, 64));
    h = loaded_config("phi3_longrope", "\"rope_type\": \"longrope\",",
                      "\"rope_type\": \"longrope\", \"factor\": 2.0, \"attention_factor\": 1.25,");
    cr_assert(h.rope_factor == 2.0f && h.rope_attn_factor == 1.25f);
    /* a Llama checkpoint: the scaling's own original context (16), factor 64 / 16 */
    h = loaded_config("llama_gqa", "\"rope_type\": \"default\"",
                      "\"rope_type\": \"longrope\", \"original_max_position_embeddings\": 16, "
                      "\"short_factor\": [1, 1, 1, 1, 1, 1], \"long_factor\": [1, 2, 3, 4, 5, 6]");
    cr_assert(h.rope_original_ctx == 16 && h.rope_factor == 4.0f);
    cr_assert_float_eq(h.rope_attn_factor, (float)sqrt(1.0 + log(4.0) / log(16.0)), 1e-6);
    expect_refused("phi3_longrope", "\"long_factor\": [", "\"lf\": [", HS_ERR_MISSING,
                   "rope type 'longrope' needs a list 'long_factor'");
    expect_refused("phi3_longrope", "\"long_factor\": [\n      1.0,", "\"long_factor\": [", HS_ERR_FORMAT,
                   "short_factor has 6 entries, long_factor 5");
    expect_refused("phi3_longrope", "\"long_factor\": [\n      1.0,", "\"long_factor\": [\n      1.0, 1.0,", HS_ERR_FORMAT,
                   "short_factor has 6 entries, long_factor 7");
    expect_refused("phi3_longrope", "\"partial_rotary_factor\": 0.75", "\"partial_rotary_factor\": 0.5",
                   HS_ERR_FORMAT, "longrope needs short_factor and long_factor of 4 entries, one per rotated pair (got 6)");
    expect_refused("phi3_longrope", "9.0", "-9.0", HS_ERR_FORMAT, "'long_factor'[4] must be a positive number");
    expect_refused("phi3_longrope", "9.0", "\"9\"", HS_ERR_FORMAT, "'long_factor'[4] must be a positive number");
    expect_refused("phi3_longrope", "\"rope_type\": \"longrope\",", "\"rope_type\": \"longrope\", \"attention_factor\": -1,",
                   HS_ERR_FORMAT, "attention_factor -1 must be positive");
}

/* GPT-NeoX's config: Pythia's Hub spelling (rotary_pct, rotary_emb_base at the
 * top level), transformers 5's (rope_parameters), and what is refused. */
Test(hf_folder, neox_config_spellings) {
    hs_model_config c = loaded_config("pythia", NULL, NULL);
    cr_assert_eq(c.arch, HS_ARCH_NEOX);
    cr_assert_eq(c.d_head, 32);
    cr_assert_eq(c.rot_dim, 8);
    cr_assert_eq(c.rope_theta, 10000.0f);
    cr_assert_eq(c.act, HS_ACT_GELU);
    cr_assert(c.parallel_attn_mlp && !c.tied_embeddings && c.qkv_bias && c.out_bias && !c.learned_pos);
    cr_assert_eq(c.norm, HS_NORM_LAYERNORM);
    c = loaded_config("pythia", "\"rotary_pct\": 0.25",
                      "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500.0, "
                      "\"partial_rotary_factor\": 0.5}");
    cr_assert_eq(c.rot_dim, 16);
    cr_assert_eq(c.rope_theta, 500.0f);
    c = loaded_config("pythia", "\"use_parallel_residual\": true", "\"use_parallel_residual\": false");
    cr_assert_eq(c.parallel_attn_mlp, 0);
    c = loaded_config("pythia", "\"hidden_act\": \"gelu\"", "\"hidden_act\": \"gelu_new\"");
    cr_assert_eq(c.act, HS_ACT_GELU_NEW);
}

Test(hf_folder, neox_refusals) {
    const struct { const char *from, *to, *needle; hs_status code; } cs[] = {
        {"\"rotary_pct\": 0.25", "\"rotary_pct\": 0.1", "not an even count", HS_ERR_UNSUPPORTED},
        {"\"rotary_pct\": 0.25", "\"rotary_pct\": 1.5", "rotary_pct 1.5", HS_ERR_FORMAT},
        {"\"hidden_act\": \"gelu\"", "\"hidden_act\": \"relu\"", "hidden_act 'relu'", HS_ERR_UNSUPPORTED},
        {"\"attention_bias\": true", "\"attention_bias\": false", "attention_bias", HS_ERR_UNSUPPORTED},
        {"\"hidden_size\": 64", "\"hidden_size\": 65", "not divisible", HS_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        expect_refused("pythia", cs[i].from, cs[i].to, cs[i].code, cs[i].needle);
    }
}

/* Which layers slide, as transformers decides it: every layer of Mistral and Phi-3; Qwen2/3's
 * only with use_sliding_window, from max_window_layers on or as layer_types says; Llama never.
 * The context stays the model's: prompts past the window run, masked by it. */
Test(hf_folder, sliding_window_layouts) {
    hs_model_config c = loaded_config("qwen3", NULL, NULL); /* layer_types: full, sliding, sliding */
    expect_windows(&c, 64, (const int[]){0, 3, 3});
    c = loaded_config("qwen3", "\"layer_types\": [", "\"unused_layer_types\": ["); /* max_window_layers 1 */
    expect_windows(&c, 64, (const int[]){0, 3, 3});
    c = loaded_config("qwen3", "\"max_window_layers\": 1", "\"max_window_layers\": 2"); /* layer_types wins */
    expect_windows(&c, 64, (const int[]){0, 3, 3});
    /* neither layer_types nor max_window_layers: transformers' default 28, no layer of three slides */
    c = loaded_config("qwen3",
                      "\"layer_types\": [\n    \"full_attention\",\n    \"sliding_attention\",\n    \"sliding_attention\"\n  ],\n"
                      "  \"max_position_embeddings\": 64,\n  \"max_window_layers\": 1,",
                      "\"max_position_embeddings\": 64,");
    expect_windows(&c, 64, (const int[]){0, 0, 0});
    /* without a window, listed sliding layers are refused, as transformers fails on them */
    expect_refused("qwen3", "\"use_sliding_window\": true", "\"use_sliding_window\": false", HS_ERR_FORMAT,
                   "sliding layers in layer_types without a window");
    expect_refused("qwen3", "\"sliding_window\": 3", "\"sliding_window\": null", HS_ERR_FORMAT,
                   "sliding layers in layer_types without a window");
    c = loaded_config("qwen3", "\"full_attention\",\n    \"sliding_attention\",\n    \"sliding_attention\"",
                      "\"full_attention\", \"full_attention\", \"full_attention\"");
    expect_windows(&c, 64, (const int[]){0, 0, 0});
    expect_refused("qwen3", "\"full_attention\",\n    \"sliding_attention\",\n    \"sliding_attention\"",
                   "\"full_attention\", \"sliding_attention\"", HS_ERR_FORMAT, "layer_types has 2 entries for 3 layers");
    c = loaded_config("phi3", NULL, NULL);
    expect_windows(&c, 64, (const int[]){5, 5, 5});
    c = loaded_config("phi3", "\"sliding_window\": 5,", ""); /* Phi3Config's default: none */
    expect_windows(&c, 64, (const int[]){0, 0, 0});
    /* Mistral: every layer, the class's 4096 where the key is absent; Llama ignores the key */
    c = loaded_config("llama_mha", "LlamaForCausalLM", "MistralForCausalLM");
    expect_windows(&c, 64, (const int[]){4096, 4096, 4096});
    c = loaded_config("llama_mha", "LlamaForCausalLM", "MistralForCausalLM\"], \"sliding_window\": null, \"x\": [\"");
    expect_windows(&c, 64, (const int[]){0, 0, 0}); /* Mistral v0.2 on: null, full attention */
    c = loaded_config("llama_mha", "\"rope_theta\": 10000.0,", "\"rope_theta\": 10000.0, \"sliding_window\": 4,");
    expect_windows(&c, 64, (const int[]){0, 0, 0});
    expect_refused("phi3", "\"sliding_window\": 5", "\"sliding_window\": -1", HS_ERR_FORMAT,
                   "sliding_window -1 is negative");
}

/* A Mistral window under the prompt: the forward runs past it, and it changes the logits of the
 * positions past it only (the numbers themselves are the conformance tests', models/phi3 etc.). */
Test(hf_folder, sliding_window_masks_long_prompts) {
    char dir[256], plain[256];
    broken_copy(dir, sizeof dir, "LlamaForCausalLM", "MistralForCausalLM\"], \"sliding_window\": 4, \"x\": [\"");
    broken_copy(plain, sizeof plain, NULL, NULL);
    hs_err e = {0};
    hs_model *m[2] = {NULL, NULL};
    cr_assert_eq(hs_model_load(dir, &m[0], &e), HS_OK, "%s", e.msg);
    cr_assert_eq(hs_model_load(plain, &m[1], &e), HS_OK, "%s", e.msg);
    cr_assert_eq(hs_model_layer_window(hs_model_get_config(m[0]), 2), 4);
    hs_dataset *d = NULL;
    cr_assert_eq(hs_dataset_induction(hs_model_get_config(m[0]), 2, 8, 3, 200, 1, &d, &e), HS_OK,
                 "17 tokens, over the window: %s", e.msg);
    hs_dataset_free(d);
    enum { T = 12 };
    const int V = hs_model_get_config(m[0])->n_vocab;
    float *logits[2];
    int32_t tok[T];
    for (int i = 0; i < T; i++) tok[i] = 3 + 7 * i;
    for (int k = 0; k < 2; k++) {
        hs_backend *be = NULL;
        hs_session *s = NULL;
        cr_assert_eq(hs_backend_cpu_init(NULL, &be, &e), HS_OK, "%s", e.msg);
        cr_assert_eq(hs_session_init(be, m[k], 1, T, &s, &e), HS_OK, "%s", e.msg);
        hs_batch b = {.B = 1, .T = T, .tokens = tok};
        hs_forward_params p = hs_forward_default_params();
        p.logits = HS_LOGITS_ALL;
        logits[k] = malloc((size_t)T * V * sizeof(float));
        cr_assert_eq(hs_forward(s, &b, &p, logits[k], &e), HS_OK, "%s", e.msg);
        hs_session_free(s);
        hs_backend_free(be);
        hs_model_free(m[k]);
    }
    for (int t = 0; t < T; t++) {
        float diff = 0.0f;
        for (int v = 0; v < V; v++) diff = fmaxf(diff, fabsf(logits[0][t * V + v] - logits[1][t * V + v]));
        if (t < 4) cr_assert_eq(diff, 0.0f, "position %d sees no key past the window: the same logits", t);
        else cr_assert_gt(diff, 1e-3f, "position %d: the window hides keys, the logits must move", t);
    }
    free(logits[0]), free(logits[1]);
    hs_test_remove_dir(dir);
    hs_test_remove_dir(plain);
}

Test(hf_folder, unsupported_architecture) {
    expect_refused("llama_mha", "LlamaForCausalLM", "XGLMForCausalLM", HS_ERR_UNSUPPORTED, "XGLMForCausalLM");
}

Test(hf_folder, shape_contradicts_config) {
    expect_refused("llama_mha", "\"intermediate_size\": 88", "\"intermediate_size\": 90",
                   HS_ERR_SHAPE, "mlp.gate_proj.weight");
}

Test(hf_folder, missing_tensor) {
    expect_refused("llama_mha", "\"num_hidden_layers\": 3", "\"num_hidden_layers\": 4",
                   HS_ERR_MISSING, "model.layers.3.input_layernorm.weight");
}

Test(hf_folder, missing_config_key) {
    expect_refused("llama_mha", "\"hidden_size\"", "\"hidden_sizes\"", HS_ERR_MISSING, "'hidden_size'");
}

Test(hf_folder, malformed_config_json) {
    expect_refused("llama_mha", "{", "{{", HS_ERR_FORMAT, "config.json");
}

Test(hf_folder, truncated_weights) {
    char dir[256], p[512];
    broken_copy(dir, sizeof dir, NULL, NULL);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    struct stat sb;
    cr_assert_eq(stat(p, &sb), 0);
    cr_assert_eq(truncate(p, sb.st_size - 100), 0);
    expect_load(dir, HS_ERR_FORMAT, "model.safetensors");
    hs_test_remove_dir(dir);
}

Test(hf_folder, nonexistent_path) {
    expect_load("/nonexistent/model", HS_ERR_IO, "/nonexistent/model");
}

Test(hf_folder, hf_cache_id_resolves_offline) {
    char home[256], snap[512], cmd[4096], src[1024];
    snprintf(home, sizeof home, "/tmp/hs_test_hf_XXXXXX");
    cr_assert_not_null(mkdtemp(home));
    snprintf(snap, sizeof snap, "%s/hub/models--tiny--llama/snapshots/abc123", home);
    hs_test_fixture_path(src, sizeof src, "models/llama_mha");
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' '%s/hub/models--tiny--llama/refs' && cp '%s'/* '%s'/ && "
             "printf abc123 > '%s/hub/models--tiny--llama/refs/main'", snap, home, src, snap, home);
    cr_assert_eq(system(cmd), 0);
    setenv("HF_HOME", home, 1);
    hs_model *m = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_model_load("tiny/llama", &m, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(hs_model_get_config(m)->n_layers, 3);
    hs_model_free(m);
    cr_assert_eq(hs_model_load("tiny/absent", &m, &e), HS_ERR_IO);
    cr_assert(strstr(e.msg, "tiny/absent"), "%s", e.msg);
    hs_test_remove_dir(home);
}

/* Writes a copy of models/llama_mha with every tensor converted to F16 (the
 * JSON header is rebuilt with the new offsets), then checks the loader widens
 * each weight exactly. */
Test(hf_folder, f16_weights_widen_exactly) {
    char src[1024], dir[256], p[512];
    hs_test_fixture_path(src, sizeof src, "models/llama_mha/model.safetensors");
    hs_st_file *f = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_st_open(src, &f, &e), HS_OK, "%s", e.msg);
    broken_copy(dir, sizeof dir, NULL, NULL); /* config.json + f32 weights */
    size_t hcap = 65536, hlen = 0;
    char *hdr = malloc(hcap);
    hlen += (size_t)snprintf(hdr, hcap, "{");
    int64_t off = 0;
    for (int i = 0; i < hs_st_count(f); i++) {
        const hs_st_tensor *t = hs_st_get(f, i);
        cr_assert_eq(t->dtype, HS_DTYPE_F32);
        hlen += (size_t)snprintf(hdr + hlen, hcap - hlen, "%s\"%s\":{\"dtype\":\"F16\",\"shape\":[", i ? "," : "",
                                 t->name);
        for (int d = 0; d < t->ndim; d++)
            hlen += (size_t)snprintf(hdr + hlen, hcap - hlen, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        hlen += (size_t)snprintf(hdr + hlen, hcap - hlen, "],\"data_offsets\":[%lld,%lld]}", (long long)off,
                                 (long long)(off + 2 * t->numel));
        off += 2 * t->numel;
        cr_assert_lt(hlen, hcap - 256);
    }
    hlen += (size_t)snprintf(hdr + hlen, hcap - hlen, "}");
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    FILE *out = fopen(p, "wb");
    cr_assert_not_null(out);
    uint64_t n = hlen;
    fwrite(&n, 8, 1, out); /* little-endian host */
    fwrite(hdr, 1, hlen, out);
    for (int i = 0; i < hs_st_count(f); i++) {
        const hs_st_tensor *t = hs_st_get(f, i);
        const float *x = t->data;
        for (int64_t j = 0; j < t->numel; j++) {
            uint16_t h = hs_f32_to_f16(x[j]);
            fwrite(&h, 2, 1, out);
        }
    }
    fclose(out);
    free(hdr);

    hs_model *m16 = NULL, *m32 = NULL;
    char orig[1024];
    hs_test_fixture_path(orig, sizeof orig, "models/llama_mha");
    cr_assert_eq(hs_model_load(dir, &m16, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(hs_model_load(orig, &m32, &e), HS_OK, "%s", e.msg);
    cr_assert_str_eq(hs_model_get_source_dtypes(m16), "F16");
    const hs_model_config *c = hs_model_get_config(m32);
    const hs_model_weights *a = hs_model_get_weights(m16), *b = hs_model_get_weights(m32);
    int64_t nq = (int64_t)c->n_heads * c->d_head * c->d_model;
    const float *pairs[][2] = {{a->tok_embd, b->tok_embd}, {a->layers[2].wq, b->layers[2].wq},
                               {a->unembed, b->unembed}};
    int64_t sizes[] = {(int64_t)c->n_vocab * c->d_model, nq, (int64_t)c->n_vocab * c->d_model};
    for (int k = 0; k < 3; k++)
        for (int64_t j = 0; j < sizes[k]; j++)
            cr_assert_eq(pairs[k][0][j], hs_f16_to_f32(hs_f32_to_f16(pairs[k][1][j])), "tensor %d element %lld", k,
                         (long long)j);
    hs_model_free(m16);
    hs_model_free(m32);
    hs_st_close(f);
    hs_test_remove_dir(dir);
}
