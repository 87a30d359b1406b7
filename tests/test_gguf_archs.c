/* GGUF files of the architectures beyond llama: gemma, gemma2, gemma3, phi2,
 * phi3 (with LongRoPE) and gpt2, as llama.cpp's converter writes them
 * (tests/fixtures/gguf_archs.py: F32, F16 and Q8_0 matrices, fused tensors,
 * Gemma's 1 + w norms). Each loads with the configuration the file means and
 * gives transformers' logits on the weights gguf-py reads back, every prompt
 * alone; transformers' own GGUF reader checked the files' names and transforms
 * when they were made. Then the rules llama.cpp applies that the file does not
 * spell out (Gemma's 27B score scale, its defaults, the window patterns), on
 * hand-built metadata, and the errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "headsweep/hs_backend.h"
#include "headsweep/hs_forward.h"
#include "headsweep/hs_model.h"
#include "headsweep/hs_safetensors.h"
#include "hs_gguf_writer.h"
#include "hs_model_internal.h"
#include "hs_testutil.h"

/* models/<name>.gguf against ref/<name>_gguf.safetensors: each prompt alone, every position's logits. */
static hs_model *check_logits(const char *name) {
    char path[1024], ref_path[1024], rel[128];
    snprintf(rel, sizeof rel, "models/%s.gguf", name);
    hs_test_fixture_path(path, sizeof path, rel);
    snprintf(rel, sizeof rel, "ref/%s_gguf.safetensors", name);
    hs_test_fixture_path(ref_path, sizeof ref_path, rel);
    hs_model *m = NULL;
    hs_st_file *ref = NULL;
    hs_backend *be = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_model_load(path, &m, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(hs_st_open(ref_path, &ref, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(hs_backend_cpu_init(NULL, &be, &e), HS_OK, "%s", e.msg);
    const int V = hs_model_get_config(m)->n_vocab;
    for (int p = 0; p < 2; p++) {
        char tn[32], ln[32];
        snprintf(tn, sizeof tn, "tokens_%d", p);
        snprintf(ln, sizeof ln, "logits_%d", p);
        const hs_st_tensor *tok = hs_test_ref_tensor(ref, tn), *lg = hs_test_ref_tensor(ref, ln);
        const int T = (int)tok->shape[0];
        cr_assert_eq(lg->numel, (int64_t)T * V, "%s: %s has %lld logits for %d x %d", name, ln, (long long)lg->numel, T, V);
        hs_session *s = NULL;
        cr_assert_eq(hs_session_init(be, m, 1, T, &s, &e), HS_OK, "%s", e.msg);
        hs_batch b = {.B = 1, .T = T, .tokens = tok->data};
        hs_forward_params fp = hs_forward_default_params();
        fp.logits = HS_LOGITS_ALL;
        const int64_t n = (int64_t)T * V;
        float *got = malloc((size_t)n * sizeof *got);
        for (int64_t i = 0; i < n; i++) got[i] = NAN;
        cr_assert_eq(hs_forward(s, &b, &fp, got, &e), HS_OK, "%s: %s", name, e.msg);
        const double atol = HS_TEST_F32_ATOL_RMS * hs_test_rms(lg->data, n);
        hs_test_cmp c = hs_test_compare(got, lg->data, n, atol, HS_TEST_F32_RTOL);
        cr_assert(c.n_bad == 0 && !c.nan, "%s, prompt %d (%d tokens): %lld of %lld logits off, max abs %.3g", name, p, T,
                  (long long)c.n_bad, (long long)n, c.max_abs);
        free(got);
        hs_session_free(s);
    }
    hs_backend_free(be);
    hs_st_close(ref);
    return m;
}

Test(gguf_archs, gemma) {
    hs_model *m = check_logits("gemma");
    const hs_model_config *c = hs_model_get_config(m);
    cr_assert_str_eq(c->arch_name, "GemmaForCausalLM");
    cr_assert(c->arch == HS_ARCH_GEMMA && c->norm == HS_NORM_RMSNORM_1P && c->act == HS_ACT_GELU_GLU);
    cr_assert(c->tied_embeddings && c->n_kv_heads == 1 && c->d_head == 16 && !c->post_norms && !c->sliding_window);
    cr_assert_float_eq(c->embed_scale, sqrtf(48.0f), 1e-6f);
    cr_assert_str_eq(hs_model_get_source_dtypes(m), "F32");
    hs_model_free(m);
}

Test(gguf_archs, gemma2) {
    hs_model *m = check_logits("gemma2");
    const hs_model_config *c = hs_model_get_config(m);
    cr_assert_str_eq(c->arch_name, "Gemma2ForCausalLM");
    cr_assert(c->post_norms && !c->qk_norm && c->attn_softcap == 3.0f && c->final_softcap == 5.0f);
    cr_assert(c->sliding_window == 3 && c->window_from == 0 && c->global_every == 2);
    cr_assert_eq(hs_model_attn_scale(c), 0.25f, "below 27B the scale is 1/sqrt(d_head)");
    cr_assert_str_eq(hs_model_get_source_dtypes(m), "F16,F32");
    hs_model_free(m);
}

Test(gguf_archs, gemma3) {
    hs_model *m = check_logits("gemma3");
    const hs_model_config *c = hs_model_get_config(m);
    cr_assert_str_eq(c->arch_name, "Gemma3ForCausalLM");
    cr_assert(c->post_norms && c->qk_norm && c->attn_softcap == 0.0f && c->final_softcap == 0.0f);
    cr_assert(c->n_layers == 6 && c->sliding_window == 4 && c->window_from == 0 && c->global_every == 6);
    for (int l = 0; l < 6; l++) cr_assert_eq(hs_model_layer_slides(c, l), l != 5);
    cr_assert(c->rope_theta == 1e6f && c->rope_local_theta == 10000.0f);
    cr_assert(c->rope_scaling == HS_ROPE_SCALING_LINEAR && c->rope_factor == 2.0f);
    hs_model_free(m);
}

Test(gguf_archs, phi3) {
    hs_model *m = check_logits("phi3");
    const hs_model_config *c = hs_model_get_config(m);
    cr_assert_str_eq(c->arch_name, "Phi3ForCausalLM");
    cr_assert(c->arch == HS_ARCH_LLAMA && !c->tied_embeddings && c->rot_dim == 12 && c->d_head == 16);
    cr_assert(c->sliding_window == 5 && c->window_from == 0 && c->global_every == 0 && !c->qkv_bias);
    cr_assert_eq(c->rope_scaling, HS_ROPE_SCALING_NONE);
    cr_assert_str_eq(hs_model_get_source_dtypes(m), "Q8_0,F32");
    hs_model_free(m);
}

/* The 12-token prompt is longer than the original context of 5: it rotates by the long factors. */
Test(gguf_archs, phi3_longrope) {
    hs_model *m = check_logits("phi3_longrope");
    const hs_model_config *c = hs_model_get_config(m);
    cr_assert(c->rope_scaling == HS_ROPE_SCALING_LONGROPE && c->rope_n_factors == 6 && c->rope_original_ctx == 5);
    cr_assert_float_eq(c->rope_attn_factor, sqrtf(1.0f + logf(12.8f) / logf(5.0f)), 1e-6f);
    cr_assert(c->rope_short_factor[1] == 1.05f && c->rope_long_factor[5] == 12.5f);
    hs_model_free(m);
}

Test(gguf_archs, gpt2) {
    hs_model *m = check_logits("gpt2");
    const hs_model_config *c = hs_model_get_config(m);
    cr_assert_str_eq(c->arch_name, "GPT2LMHeadModel");
    cr_assert(c->arch == HS_ARCH_GPT2 && c->norm == HS_NORM_LAYERNORM && c->learned_pos && c->qkv_bias && c->out_bias);
    cr_assert(c->d_mlp == 256 && c->rope == HS_ROPE_NONE);
    cr_assert(c->tied_embeddings && hs_model_get_weights(m)->unembed == hs_model_get_weights(m)->tok_embd,
              "output.weight repeats token_embd byte for byte: tied, one copy");
    hs_model_free(m);
}

Test(gguf_archs, phi2) {
    hs_model *m = check_logits("phi2");
    const hs_model_config *c = hs_model_get_config(m);
    const hs_model_weights *w = hs_model_get_weights(m);
    cr_assert_str_eq(c->arch_name, "PhiForCausalLM");
    cr_assert(c->arch == HS_ARCH_PHI && c->norm == HS_NORM_LAYERNORM && c->act == HS_ACT_GELU_NEW);
    cr_assert(c->parallel_attn_mlp && c->qkv_bias && c->out_bias && !c->tied_embeddings && c->rot_dim == 8);
    cr_assert(w->unembed_b && w->layers[1].ln2_w == w->layers[1].ln1_w, "output bias; one norm per layer");
    hs_model_free(m);
}

/* ---- metadata alone: what the file leaves to llama.cpp's rules ---------------------------- */

typedef struct {
    const char *arch;
    int layers, d, heads, d_head;
    const char *extra_u32, *extra_f32; /* one more key of each kind, or NULL */
    uint32_t u32;
    float f32;
    const uint8_t *pattern; /* sliding_window_pattern as one bool per layer, or NULL */
    int64_t phi3_factors;   /* > 0: rope_factors_short/long of this length */
} meta_opts;

/* A file of metadata and a token embedding only: enough for hs_gguf_read_config. */
static hs_status read_cfg(const meta_opts *o, hs_model_config *c, hs_err *e) {
    gw_file f;
    gw_init(&f);
    char key[128];
#define KEY(suffix) (snprintf(key, sizeof key, "%s.%s", o->arch, suffix), key)
    gw_kv_str(&f, "general.architecture", o->arch);
    gw_kv_u32(&f, KEY("block_count"), (uint32_t)o->layers);
    gw_kv_u32(&f, KEY("context_length"), 64);
    gw_kv_u32(&f, KEY("embedding_length"), (uint32_t)o->d);
    gw_kv_u32(&f, KEY("feed_forward_length"), 32);
    gw_kv_u32(&f, KEY("attention.head_count"), (uint32_t)o->heads);
    gw_kv_u32(&f, KEY("attention.key_length"), (uint32_t)o->d_head);
    gw_kv_f32(&f, KEY("attention.layer_norm_rms_epsilon"), 1e-6f);
    if (o->extra_u32) gw_kv_u32(&f, KEY(o->extra_u32), o->u32);
    if (o->extra_f32) gw_kv_f32(&f, KEY(o->extra_f32), o->f32);
    if (o->pattern) {
        gw_kv_arr_begin(&f, KEY("attention.sliding_window_pattern"), HS_GGUF_TYPE_BOOL, (uint64_t)o->layers);
        for (int l = 0; l < o->layers; l++) gw_u8(&f.kv, o->pattern[l]);
    }
#undef KEY
    float emb[8 * 16] = {0}, factors[64];
    const int64_t ne[2] = {o->d, 8};
    gw_tensor_add(&f, "token_embd.weight", HS_GGML_TYPE_F32, 2, ne, emb, (size_t)o->d * 8 * sizeof(float));
    for (int i = 0; i < 64; i++) factors[i] = 1.0f + (float)i;
    if (o->phi3_factors > 0) {
        gw_tensor_add(&f, "rope_factors_short.weight", HS_GGML_TYPE_F32, 1, &o->phi3_factors, factors,
                      (size_t)o->phi3_factors * sizeof(float));
        gw_tensor_add(&f, "rope_factors_long.weight", HS_GGML_TYPE_F32, 1, &o->phi3_factors, factors,
                      (size_t)o->phi3_factors * sizeof(float));
    }
    size_t size = 0;
    uint8_t *bytes = gw_build(&f, &size);
    gw_free(&f);
    char path[] = "/tmp/hs_test_gguf_archs_XXXXXX";
    const int fd = mkstemp(path);
    cr_assert(fd >= 0 && write(fd, bytes, size) == (ssize_t)size);
    close(fd);
    free(bytes);
    hs_gguf *g = NULL;
    hs_gguf_layout lay;
    hs_status st = hs_gguf_open(path, &g, e);
    if (st == HS_OK) st = hs_gguf_read_config(g, c, &lay, e);
    hs_gguf_close(g);
    unlink(path);
    return st;
}

Test(gguf_archs_meta, gemma_27b_scale_by_layer_count) {
    hs_model_config c;
    hs_err e = {0};
    meta_opts o = {.arch = "gemma2", .layers = 46, .d = 16, .heads = 2, .d_head = 4};
    cr_assert_eq(read_cfg(&o, &c, &e), HS_OK, "%s", e.msg);
    cr_assert_float_eq(hs_model_attn_scale(&c), 1.0f / sqrtf(8.0f), 1e-7f, "27B: 1/sqrt(d_model / n_heads)");
    o.layers = 42;
    cr_assert_eq(read_cfg(&o, &c, &e), HS_OK, "%s", e.msg);
    cr_assert_float_eq(hs_model_attn_scale(&c), 0.5f, 1e-7f, "9B: 1/sqrt(d_head)");
    o.arch = "gemma3", o.layers = 62;
    cr_assert_eq(read_cfg(&o, &c, &e), HS_OK, "%s", e.msg);
    cr_assert_float_eq(hs_model_attn_scale(&c), 1.0f / sqrtf(8.0f), 1e-7f, "Gemma 3 27B");
}

Test(gguf_archs_meta, gemma_defaults) {
    hs_model_config c;
    hs_err e = {0};
    meta_opts o = {.arch = "gemma2", .layers = 4, .d = 16, .heads = 2, .d_head = 8};
    cr_assert_eq(read_cfg(&o, &c, &e), HS_OK, "%s", e.msg);
    cr_assert(c.attn_softcap == 50.0f && c.final_softcap == 30.0f, "llama.cpp's caps when absent");
    cr_assert(c.sliding_window == 4096 && c.global_every == 2 && c.rope_local_theta == 0.0f);
    o.arch = "gemma3"; /* no window key: every layer global, one RoPE base */
    cr_assert_eq(read_cfg(&o, &c, &e), HS_OK, "%s", e.msg);
    cr_assert(c.sliding_window == 0 && c.rope_local_theta == 0.0f && c.final_softcap == 0.0f && c.qk_norm);
    o.extra_u32 = "attention.sliding_window", o.u32 = 512;
    cr_assert_eq(read_cfg(&o, &c, &e), HS_OK, "%s", e.msg);
    cr_assert(c.sliding_window == 512 && c.global_every == 6 && c.rope_local_theta == 10000.0f);
    o.extra_f32 = "rope.freq_base_swa", o.f32 = 5000.0f;
    cr_assert_eq(read_cfg(&o, &c, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(c.rope_local_theta, 5000.0f);
}

Test(gguf_archs_meta, window_pattern_forms) {
    hs_model_config c;
    hs_err e = {0};
    static const uint8_t every3[6] = {1, 1, 0, 1, 1, 0}, broken[6] = {1, 0, 1, 1, 0, 1};
    meta_opts o = {.arch = "gemma3", .layers = 6, .d = 16, .heads = 2, .d_head = 8,
                   .extra_u32 = "attention.sliding_window", .u32 = 64, .pattern = every3};
    cr_assert_eq(read_cfg(&o, &c, &e), HS_OK, "%s", e.msg);
    cr_assert(c.window_from == 0 && c.global_every == 3);
    o.pattern = broken;
    cr_assert_eq(read_cfg(&o, &c, &e), HS_ERR_UNSUPPORTED);
    cr_assert(strstr(e.msg, "gemma3.attention.sliding_window_pattern") && strstr(e.msg, "layer 3"), "%s", e.msg);
    o.pattern = NULL, o.extra_f32 = NULL;
    o.extra_u32 = "attention.sliding_window_pattern", o.u32 = 4; /* the period form */
    cr_assert_eq(read_cfg(&o, &c, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(c.global_every, 4);
}

Test(gguf_archs_meta, phi3_factor_lists_checked) {
    hs_model_config c;
    hs_err e = {0};
    meta_opts o = {.arch = "phi3", .layers = 2, .d = 16, .heads = 2, .d_head = 8, .phi3_factors = 4};
    cr_assert_eq(read_cfg(&o, &c, &e), HS_OK, "%s", e.msg);
    cr_assert(c.rope_scaling == HS_ROPE_SCALING_LONGROPE && c.rope_n_factors == 4 && c.rope_original_ctx == 64);
    cr_assert_eq(c.rope_attn_factor, 1.0f, "original context = context: no attention factor");
    o.phi3_factors = 3;
    cr_assert_eq(read_cfg(&o, &c, &e), HS_ERR_SHAPE);
    cr_assert(strstr(e.msg, "rope_factors_short.weight") && strstr(e.msg, "(4)"), "%s", e.msg);
    o.phi3_factors = 0, o.extra_u32 = "rope.dimension_count", o.u32 = 5; /* odd */
    cr_assert_eq(read_cfg(&o, &c, &e), HS_ERR_UNSUPPORTED);
    cr_assert(strstr(e.msg, "phi3.rope.dimension_count"), "%s", e.msg);
}

/* A fused tensor whose rows do not add up to q + k + v is refused by name: the
 * Phi-3 fixture with its key/value head count patched from 2 to 1. */
Test(gguf_archs_meta, fused_qkv_shape_refused) {
    char path[1024];
    hs_test_fixture_path(path, sizeof path, "models/phi3.gguf");
    FILE *fp = fopen(path, "rb");
    cr_assert(fp);
    fseek(fp, 0, SEEK_END);
    const long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *bytes = malloc((size_t)size);
    cr_assert(fread(bytes, 1, (size_t)size, fp) == (size_t)size);
    fclose(fp);
    static const char key[] = "phi3.attention.head_count_kv";
    uint8_t *at = memmem(bytes, (size_t)size, key, sizeof key - 1);
    cr_assert(at, "key not in the fixture");
    uint32_t type, v;
    memcpy(&type, at + sizeof key - 1, 4);
    memcpy(&v, at + sizeof key - 1 + 4, 4);
    cr_assert(type == HS_GGUF_TYPE_UINT32 && v == 2);
    v = 1;
    memcpy(at + sizeof key - 1 + 4, &v, 4);
    char tmp[] = "/tmp/hs_test_gguf_archs_XXXXXX.gguf";
    const int fd = mkstemps(tmp, 5);
    cr_assert(fd >= 0 && write(fd, bytes, (size_t)size) == size);
    close(fd);
    free(bytes);
    hs_model *m = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_model_load(tmp, &m, &e), HS_ERR_SHAPE, "%s", e.msg);
    cr_assert(strstr(e.msg, "blk.0.attn_qkv.weight") && strstr(e.msg, "[64, 128]") && strstr(e.msg, "[64, 96]"), "%s",
              e.msg);
    cr_assert_null(m);
    unlink(tmp);
}

/* Deterministic mutations of each fixture's metadata and tensor infos (the
 * bytes before the first tensor's data): any status, never a crash, an error
 * that names the file (meaningful under HS_SANITIZE). */
Test(gguf_archs_meta, header_mutations_never_crash) {
    static const char *names[] = {"gemma", "gemma2", "gemma3", "phi3", "phi3_longrope", "gpt2", "phi2"};
    hs_test_rng r;
    hs_test_rng_seed(&r, 4321);
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        char path[1024], rel[64];
        snprintf(rel, sizeof rel, "models/%s.gguf", names[k]);
        hs_test_fixture_path(path, sizeof path, rel);
        FILE *fp = fopen(path, "rb");
        cr_assert(fp, "%s", path);
        fseek(fp, 0, SEEK_END);
        const size_t n = (size_t)ftell(fp);
        fseek(fp, 0, SEEK_SET);
        uint8_t *orig = malloc(n), *q = malloc(n);
        cr_assert(fread(orig, 1, n, fp) == n);
        fclose(fp);
        hs_gguf *g = NULL;
        hs_gguf_tensor_info ti;
        hs_err e = {0};
        cr_assert_eq(hs_gguf_open_memory(orig, n, path, &g, &e), HS_OK, "%s", e.msg);
        cr_assert_eq(hs_gguf_tensor_get(g, 0, &ti, &e), HS_OK, "%s", e.msg);
        size_t header = (size_t)((const uint8_t *)ti.data - orig);
        for (int64_t i = 1; i < hs_gguf_tensor_count(g); i++)
            if (hs_gguf_tensor_get(g, i, &ti, NULL) == HS_OK && (size_t)((const uint8_t *)ti.data - orig) < header)
                header = (size_t)((const uint8_t *)ti.data - orig);
        hs_gguf_close(g);
        for (int it = 0; it < 60; it++) {
            memcpy(q, orig, n);
            for (int j = 1 + (int)(hs_test_rng_u64(&r) % 3); j > 0; j--)
                q[hs_test_rng_u64(&r) % header] = (uint8_t)hs_test_rng_u64(&r);
            char tmp[] = "/tmp/hs_test_gguf_archs_XXXXXX.gguf";
            const int fd = mkstemps(tmp, 5);
            cr_assert(fd >= 0 && write(fd, q, n) == (ssize_t)n);
            close(fd);
            hs_model *m = NULL;
            if (hs_model_load(tmp, &m, &e) == HS_OK) hs_model_free(m);
            else cr_assert(strstr(e.msg, tmp), "%s, mutation %d: '%s' lacks the file", names[k], it, e.msg);
            unlink(tmp);
        }
        free(orig);
        free(q);
    }
}
