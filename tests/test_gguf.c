/* GGUF reader: typed metadata access, tensor infos, dequantisation of
 * hand-built blocks, and bad input of every kind, each giving its own status
 * and a message naming the file and the key or tensor at fault. Model loading
 * from GGUF is in test_gguf_model.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "headsweep/hs_gguf.h"
#include "hs_gguf_writer.h"
#include "hs_testutil.h"

#define NAME "mem.gguf"

/* A small valid file: three KVs (one a string array) and, with tensors,
 * three F32 tensors a [2,3], b [3], c [5,8] (PyTorch order), in that order. */
static uint8_t *small_file_opt(gw_file *f, size_t *size, int with_tensors) {
    gw_init(f);
    gw_kv_str(f, "general.architecture", "llama");
    gw_kv_u32(f, "answer", 42);
    const char *toks[] = {"a", "bc", ""};
    gw_kv_arr_begin(f, "tokens", HS_GGUF_TYPE_STRING, 3);
    for (int i = 0; i < 3; i++) gw_str(&f->kv, toks[i]);
    if (!with_tensors) return gw_build(f, size);
    float a[6], b[3], c[40];
    for (int i = 0; i < 6; i++) a[i] = (float)i;
    for (int i = 0; i < 3; i++) b[i] = -(float)i;
    for (int i = 0; i < 40; i++) c[i] = 0.5f * (float)i;
    gw_tensor_add(f, "a", HS_GGML_TYPE_F32, 2, (int64_t[]){3, 2}, a, sizeof a);
    gw_tensor_add(f, "b", HS_GGML_TYPE_F32, 1, (int64_t[]){3}, b, sizeof b);
    gw_tensor_add(f, "c", HS_GGML_TYPE_F32, 2, (int64_t[]){8, 5}, c, sizeof c);
    return gw_build(f, size);
}

static uint8_t *small_file(gw_file *f, size_t *size) { return small_file_opt(f, size, 1); }

static hs_status open_bytes(const uint8_t *p, size_t n, hs_err *e) {
    hs_gguf *g = NULL;
    hs_status st = hs_gguf_open_memory(p, n, NAME, &g, e);
    if (st == HS_OK) cr_assert_not_null(g);
    else cr_assert_null(g);
    hs_gguf_close(g);
    return st;
}

#define EXPECT_FAIL(p, n, code, needle)                                                          \
    do {                                                                                         \
        hs_err e_ = {0};                                                                         \
        hs_status st_ = open_bytes((p), (n), &e_);                                               \
        cr_assert_eq(st_, (code), "expected %s, got %s: '%s'", hs_status_str(code),              \
                     hs_status_str(st_), e_.msg);                                                \
        cr_assert(strstr(e_.msg, (needle)) != NULL, "message '%s' lacks '%s'", e_.msg, (needle)); \
        cr_assert(strstr(e_.msg, NAME) != NULL, "message '%s' lacks the file name", e_.msg);     \
    } while (0)

/* ---- valid files --------------------------------------------------------------------- */

Test(gguf, tensor_infos) {
    gw_file f;
    size_t n;
    uint8_t *p = small_file(&f, &n);
    hs_gguf *g = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_gguf_open_memory(p, n, NAME, &g, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(hs_gguf_version(g), 3);
    cr_assert_eq(hs_gguf_alignment(g), 32);
    cr_assert_str_eq(hs_gguf_name(g), NAME);
    cr_assert_eq(hs_gguf_data_offset(g), f.pos_data);
    cr_assert_eq(hs_gguf_tensor_count(g), 3);

    hs_gguf_tensor_info ti;
    cr_assert_eq(hs_gguf_tensor_get(g, 0, &ti, &e), HS_OK, "%s", e.msg);
    cr_assert_str_eq(ti.name, "a");
    cr_assert_eq(ti.dtype, HS_DTYPE_F32);
    cr_assert_eq(ti.n_dims, 2);
    cr_assert(ti.ne[0] == 3 && ti.ne[1] == 2 && ti.ne[2] == 1 && ti.ne[3] == 1);
    cr_assert_eq(ti.n_elems, 6);
    cr_assert_eq(ti.nbytes, 24);
    cr_assert_eq((const uint8_t *)ti.data - p, (ptrdiff_t)f.t[0].pos_data);
    cr_assert_eq(((const uint8_t *)ti.data - p) % 32, 0);

    cr_assert_eq(hs_gguf_tensor_find(g, "c", &ti, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(ti.n_elems, 40);
    cr_assert_eq(ti.offset, 64);
    float c[40];
    hs_to_f32(ti.dtype, ti.data, c, 40);
    cr_assert_eq(c[39], 19.5f);

    cr_assert_eq(hs_gguf_tensor_find(g, "zz", &ti, &e), HS_ERR_MISSING);
    cr_assert(strstr(e.msg, "'zz'") && strstr(e.msg, NAME), "%s", e.msg);
    cr_assert_eq(hs_gguf_tensor_get(g, 3, &ti, &e), HS_ERR_INVALID_ARG);
    hs_gguf_close(g);
    free(p);
    gw_free(&f);
}

Test(gguf, custom_alignment_and_version_2) {
    gw_file f;
    gw_init(&f);
    f.version = 2;
    gw_kv_alignment(&f, 64);
    float x[5] = {1, 2, 3, 4, 5};
    gw_tensor_add(&f, "x", HS_GGML_TYPE_F32, 1, (int64_t[]){5}, x, sizeof x);
    gw_tensor_add(&f, "y", HS_GGML_TYPE_F32, 1, (int64_t[]){5}, x, sizeof x);
    size_t n;
    uint8_t *p = gw_build(&f, &n);
    hs_gguf *g = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_gguf_open_memory(p, n, NAME, &g, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(hs_gguf_version(g), 2);
    cr_assert_eq(hs_gguf_alignment(g), 64);
    hs_gguf_tensor_info ti;
    cr_assert_eq(hs_gguf_tensor_find(g, "y", &ti, &e), HS_OK, "%s", e.msg);
    cr_assert_eq(ti.offset, 64);
    cr_assert_eq(((const uint8_t *)ti.data - p) % 64, 0);
    hs_gguf_close(g);
    free(p);
    gw_free(&f);
}

Test(gguf, kv_getters_and_conversions) {
    gw_file f;
    gw_init(&f);
    uint8_t u8 = 200;
    int8_t i8 = -5;
    uint64_t u64 = (uint64_t)1 << 40, big = ((uint64_t)1 << 63) + 1;
    int64_t i64 = -((int64_t)1 << 40);
    double f64 = 0.25;
    gw_kv_begin(&f, "t.u8", HS_GGUF_TYPE_UINT8), gw_put(&f.kv, &u8, 1);
    gw_kv_begin(&f, "t.i8", HS_GGUF_TYPE_INT8), gw_put(&f.kv, &i8, 1);
    gw_kv_u32(&f, "t.u32", 4000000000u);
    gw_kv_i32(&f, "t.i32", -7);
    gw_kv_f32(&f, "t.f32", 1.5f);
    gw_kv_begin(&f, "t.bool", HS_GGUF_TYPE_BOOL), gw_u8(&f.kv, 1);
    gw_kv_begin(&f, "t.bool2", HS_GGUF_TYPE_BOOL), gw_u8(&f.kv, 2);
    gw_kv_str(&f, "t.str", "hello");
    gw_kv_begin(&f, "t.u64", HS_GGUF_TYPE_UINT64), gw_u64(&f.kv, u64);
    gw_kv_begin(&f, "t.i64", HS_GGUF_TYPE_INT64), gw_put(&f.kv, &i64, 8);
    gw_kv_begin(&f, "t.f64", HS_GGUF_TYPE_FLOAT64), gw_put(&f.kv, &f64, 8);
    gw_kv_arr_begin(&f, "t.arr_i32", HS_GGUF_TYPE_INT32, 3);
    int32_t ai[3] = {1, -2, 3};
    gw_put(&f.kv, ai, sizeof ai);
    gw_kv_arr_begin(&f, "t.arr_f32", HS_GGUF_TYPE_FLOAT32, 2);
    float af[2] = {0.5f, 1.5f};
    gw_put(&f.kv, af, sizeof af);
    gw_kv_arr_begin(&f, "t.arr_str", HS_GGUF_TYPE_STRING, 3);
    gw_str(&f.kv, "x"), gw_str(&f.kv, "yz"), gw_str(&f.kv, "");
    gw_kv_arr_begin(&f, "t.nested", HS_GGUF_TYPE_ARRAY, 2); /* [[1, 2], [3]] */
    gw_u32(&f.kv, HS_GGUF_TYPE_UINT8), gw_u64(&f.kv, 2), gw_u8(&f.kv, 1), gw_u8(&f.kv, 2);
    gw_u32(&f.kv, HS_GGUF_TYPE_UINT8), gw_u64(&f.kv, 1), gw_u8(&f.kv, 3);
    gw_kv_arr_begin(&f, "t.arr_bool", HS_GGUF_TYPE_BOOL, 2);
    gw_u8(&f.kv, 1), gw_u8(&f.kv, 0);
    gw_kv_arr_begin(&f, "t.arr_u64", HS_GGUF_TYPE_UINT64, 1);
    gw_u64(&f.kv, big);
    size_t n;
    uint8_t *p = gw_build(&f, &n);
    hs_gguf *g = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_gguf_open_memory(p, n, NAME, &g, &e), HS_OK, "%s", e.msg);

#define OK(call) cr_assert_eq((call), HS_OK, "%s", e.msg)
#define BAD(call, code, key)                                                                 \
    do {                                                                                     \
        cr_assert_eq((call), (code), "%s", e.msg);                                           \
        cr_assert(strstr(e.msg, key) && strstr(e.msg, NAME), "message '%s' lacks '%s'", e.msg, key); \
    } while (0)
    uint32_t v32;
    int32_t s32;
    uint64_t v64;
    int64_t s64;
    float fl;
    int b;
    OK(hs_gguf_get_u32(g, "t.u8", &v32, &e)); cr_assert_eq(v32, 200);
    OK(hs_gguf_get_i32(g, "t.u8", &s32, &e)); cr_assert_eq(s32, 200);
    OK(hs_gguf_get_i32(g, "t.i8", &s32, &e)); cr_assert_eq(s32, -5);
    BAD(hs_gguf_get_u64(g, "t.i8", &v64, &e), HS_ERR_FORMAT, "'t.i8'");
    OK(hs_gguf_get_u32(g, "t.u32", &v32, &e)); cr_assert_eq(v32, 4000000000u);
    BAD(hs_gguf_get_i32(g, "t.u32", &s32, &e), HS_ERR_FORMAT, "'t.u32'");
    OK(hs_gguf_get_i64(g, "t.u64", &s64, &e)); cr_assert_eq(s64, (int64_t)u64);
    BAD(hs_gguf_get_u32(g, "t.u64", &v32, &e), HS_ERR_FORMAT, "'t.u64'");
    OK(hs_gguf_get_i64(g, "t.i64", &s64, &e)); cr_assert_eq(s64, i64);
    BAD(hs_gguf_get_u64(g, "t.i64", &v64, &e), HS_ERR_FORMAT, "'t.i64'");
    OK(hs_gguf_get_i32(g, "t.i32", &s32, &e)); cr_assert_eq(s32, -7);
    BAD(hs_gguf_get_u32(g, "t.f32", &v32, &e), HS_ERR_FORMAT, "'t.f32'");
    OK(hs_gguf_get_f32(g, "t.f32", &fl, &e)); cr_assert_eq(fl, 1.5f);
    OK(hs_gguf_get_f32(g, "t.f64", &fl, &e)); cr_assert_eq(fl, 0.25f);
    OK(hs_gguf_get_f32(g, "t.i32", &fl, &e)); cr_assert_eq(fl, -7.0f);
    BAD(hs_gguf_get_f32(g, "t.str", &fl, &e), HS_ERR_FORMAT, "'t.str'");
    OK(hs_gguf_get_bool(g, "t.bool", &b, &e)); cr_assert_eq(b, 1);
    BAD(hs_gguf_get_bool(g, "t.bool2", &b, &e), HS_ERR_FORMAT, "'t.bool2'");
    BAD(hs_gguf_get_bool(g, "t.u8", &b, &e), HS_ERR_FORMAT, "'t.u8'");
    const char *s;
    size_t len;
    OK(hs_gguf_get_str(g, "t.str", &s, &len, &e)); cr_assert_str_eq(s, "hello"); cr_assert_eq(len, 5);
    BAD(hs_gguf_get_str(g, "t.u32", &s, &len, &e), HS_ERR_FORMAT, "'t.u32'");
    BAD(hs_gguf_get_str(g, "no.such.key", &s, &len, &e), HS_ERR_MISSING, "'no.such.key'");
    BAD(hs_gguf_get_u32(g, "no.such.key", &v32, &e), HS_ERR_MISSING, "'no.such.key'");

    hs_gguf_type et;
    double d;
    OK(hs_gguf_get_arr_info(g, "t.arr_i32", &et, &v64, &e));
    cr_assert(et == HS_GGUF_TYPE_INT32 && v64 == 3);
    BAD(hs_gguf_get_arr_info(g, "t.u32", &et, &v64, &e), HS_ERR_FORMAT, "'t.u32'");
    OK(hs_gguf_get_arr_i64(g, "t.arr_i32", 1, &s64, &e)); cr_assert_eq(s64, -2);
    BAD(hs_gguf_get_arr_i64(g, "t.arr_i32", 3, &s64, &e), HS_ERR_INVALID_ARG, "'t.arr_i32'");
    OK(hs_gguf_get_arr_f64(g, "t.arr_i32", 1, &d, &e)); cr_assert_eq(d, -2.0);
    OK(hs_gguf_get_arr_f64(g, "t.arr_f32", 1, &d, &e)); cr_assert_eq(d, 1.5);
    BAD(hs_gguf_get_arr_i64(g, "t.arr_f32", 0, &s64, &e), HS_ERR_FORMAT, "'t.arr_f32'");
    OK(hs_gguf_get_arr_i64(g, "t.arr_bool", 0, &s64, &e)); cr_assert_eq(s64, 1);
    BAD(hs_gguf_get_arr_i64(g, "t.arr_u64", 0, &s64, &e), HS_ERR_FORMAT, "'t.arr_u64'");
    OK(hs_gguf_get_arr_str(g, "t.arr_str", 1, &s, &len, &e));
    cr_assert(len == 2 && !memcmp(s, "yz", 2));
    OK(hs_gguf_get_arr_str(g, "t.arr_str", 2, &s, &len, &e)); cr_assert_eq(len, 0);
    BAD(hs_gguf_get_arr_str(g, "t.arr_i32", 0, &s, &len, &e), HS_ERR_FORMAT, "'t.arr_i32'");
    BAD(hs_gguf_get_arr_str(g, "t.arr_str", 3, &s, &len, &e), HS_ERR_INVALID_ARG, "'t.arr_str'");
    const void *raw;
    OK(hs_gguf_get_arr_data(g, "t.arr_i32", &et, &raw, &v64, &e));
    int32_t back[3];
    memcpy(back, raw, sizeof back);
    cr_assert(back[0] == 1 && back[1] == -2 && back[2] == 3);
    BAD(hs_gguf_get_arr_data(g, "t.nested", &et, &raw, &v64, &e), HS_ERR_FORMAT, "'t.nested'");
    BAD(hs_gguf_get_arr_data(g, "t.arr_str", &et, &raw, &v64, &e), HS_ERR_FORMAT, "'t.arr_str'");
#undef OK
#undef BAD

    /* iteration by index agrees with lookup by name */
    int64_t nk = hs_gguf_kv_count(g);
    cr_assert_eq(nk, 17);
    for (int64_t i = 0; i < nk; i++) cr_assert_eq(hs_gguf_find_key(g, hs_gguf_kv_key(g, i)), i);
    int64_t ni = hs_gguf_find_key(g, "t.nested");
    cr_assert_eq(hs_gguf_kv_type(g, ni), HS_GGUF_TYPE_ARRAY);
    cr_assert_eq(hs_gguf_kv_arr_type(g, ni), HS_GGUF_TYPE_ARRAY);
    cr_assert_eq(hs_gguf_kv_arr_len(g, ni), 2);
    cr_assert_eq(hs_gguf_kv_arr_type(g, 0), -1);
    cr_assert_null(hs_gguf_kv_key(g, nk));
    cr_assert_eq(hs_gguf_kv_type(g, -1), -1);
    cr_assert_eq(hs_gguf_find_key(g, "t.u"), -1);
    hs_gguf_close(g);
    free(p);
    gw_free(&f);
}

Test(gguf, open_file_and_missing_file) {
    gw_file f;
    size_t n;
    uint8_t *p = small_file(&f, &n);
    char path[] = "/tmp/hs_test_gguf_XXXXXX.gguf";
    int fd = mkstemps(path, 5);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, p, n), (ssize_t)n);
    close(fd);
    hs_gguf *g = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_gguf_open(path, &g, &e), HS_OK, "%s", e.msg);
    hs_gguf_tensor_info ti;
    cr_assert_eq(hs_gguf_tensor_find(g, "b", &ti, &e), HS_OK, "%s", e.msg);
    float b[3];
    hs_to_f32(ti.dtype, ti.data, b, 3);
    cr_assert(b[0] == 0.0f && b[2] == -2.0f);
    hs_gguf_close(g);
    unlink(path);
    cr_assert_eq(hs_gguf_open(path, &g, &e), HS_ERR_IO);
    cr_assert(strstr(e.msg, path), "%s", e.msg);
    free(p);
    gw_free(&f);
}

/* Hand-built blocks with known scales and quants, decoded by hand here. */
Test(gguf, dequantise_hand_built_blocks) {
    gw_file f;
    gw_init(&f);
    uint16_t h16[4] = {0x3C00, 0xC000, 0x3555, 0x0001}; /* 1, -2, 0.333251953125, 2^-24 */
    uint16_t bf[4] = {0x3F80, 0xC040, 0x3E20, 0x8000};  /* 1, -3, 0.15625, -0 */
    uint8_t q8[2 * 34], q40[18], q41[20];
    uint16_t two = 0x4000, quarter = 0x3400, half = 0x3800, minus1 = 0xBC00;
    memcpy(q8, &two, 2);
    for (int j = 0; j < 32; j++) q8[2 + j] = (uint8_t)(int8_t)(j - 16);
    memcpy(q8 + 34, &quarter, 2);
    for (int j = 0; j < 32; j++) q8[36 + j] = (uint8_t)(int8_t)(j % 2 ? 127 : -128);
    memcpy(q40, &half, 2);
    for (int j = 0; j < 16; j++) q40[2 + j] = (uint8_t)(j | (15 - j) << 4);
    memcpy(q41, &quarter, 2);
    memcpy(q41 + 2, &minus1, 2);
    for (int j = 0; j < 16; j++) q41[4 + j] = (uint8_t)(j | ((j + 1) % 16) << 4);
    gw_tensor_add(&f, "f16", HS_GGML_TYPE_F16, 1, (int64_t[]){4}, h16, sizeof h16);
    gw_tensor_add(&f, "bf16", HS_GGML_TYPE_BF16, 1, (int64_t[]){4}, bf, sizeof bf);
    gw_tensor_add(&f, "q8", HS_GGML_TYPE_Q8_0, 2, (int64_t[]){32, 2}, q8, sizeof q8);
    gw_tensor_add(&f, "q40", HS_GGML_TYPE_Q4_0, 1, (int64_t[]){32}, q40, sizeof q40);
    gw_tensor_add(&f, "q41", HS_GGML_TYPE_Q4_1, 1, (int64_t[]){32}, q41, sizeof q41);
    size_t n;
    uint8_t *p = gw_build(&f, &n);
    hs_gguf *g = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_gguf_open_memory(p, n, NAME, &g, &e), HS_OK, "%s", e.msg);

    float got[64], want[64];
    hs_gguf_tensor_info ti;
#define DECODE(name, dt, count)                                                              \
    do {                                                                                     \
        cr_assert_eq(hs_gguf_tensor_find(g, name, &ti, &e), HS_OK, "%s", e.msg);            \
        cr_assert_eq(ti.dtype, dt, "%s: dtype %d", name, ti.dtype);                          \
        cr_assert_eq(ti.n_elems, count);                                                     \
        cr_assert_eq(ti.nbytes, (uint64_t)hs_dtype_nbytes(dt, count));                       \
        hs_to_f32(ti.dtype, ti.data, got, count);                                            \
        for (int i_ = 0; i_ < (count); i_++)                                                 \
            cr_assert_eq(got[i_], want[i_], "%s[%d]: got %g, want %g", name, i_,             \
                         (double)got[i_], (double)want[i_]);                                 \
    } while (0)
    want[0] = 1.0f, want[1] = -2.0f, want[2] = 0.333251953125f, want[3] = 5.9604644775390625e-8f;
    DECODE("f16", HS_DTYPE_F16, 4);
    want[0] = 1.0f, want[1] = -3.0f, want[2] = 0.15625f, want[3] = -0.0f;
    DECODE("bf16", HS_DTYPE_BF16, 4);
    for (int j = 0; j < 32; j++) want[j] = 2.0f * (float)(j - 16);
    for (int j = 0; j < 32; j++) want[32 + j] = j % 2 ? 31.75f : -32.0f;
    DECODE("q8", HS_DTYPE_Q8_0, 64);
    for (int j = 0; j < 16; j++) want[j] = 0.5f * (float)(j - 8), want[j + 16] = 0.5f * (float)(7 - j);
    DECODE("q40", HS_DTYPE_Q4_0, 32);
    for (int j = 0; j < 16; j++)
        want[j] = 0.25f * (float)j - 1.0f, want[j + 16] = 0.25f * (float)((j + 1) % 16) - 1.0f;
    DECODE("q41", HS_DTYPE_Q4_1, 32);
#undef DECODE
    hs_gguf_close(g);
    free(p);
    gw_free(&f);
}

/* Every block type against gguf-py, llama.cpp's own Python decoder: random
 * valid blocks (tests/fixtures/make_fixtures.py, part quants) and the values
 * gguf-py decoded, in one GGUF file. Both sides compute in f32; the order of
 * the multiply-adds may differ, so a few ulps of the largest value. */
Test(gguf, block_types_match_gguf_py) {
    char path[1024];
    hs_test_fixture_path(path, sizeof path, "ref/gguf_quants.gguf");
    hs_gguf *g = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_gguf_open(path, &g, &e), HS_OK, "%s", e.msg);
    static const char *types[] = {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"};
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        hs_gguf_tensor_info q, r;
        char ref[32];
        snprintf(ref, sizeof ref, "%s.ref", types[k]);
        cr_assert_eq(hs_gguf_tensor_find(g, types[k], &q, &e), HS_OK, "%s", e.msg);
        cr_assert_eq(hs_gguf_tensor_find(g, ref, &r, &e), HS_OK, "%s", e.msg);
        cr_assert_str_eq(hs_dtype_name(q.dtype), types[k]);
        cr_assert_eq(r.dtype, HS_DTYPE_F32);
        cr_assert_eq(q.n_elems, r.n_elems);
        cr_assert_eq(q.nbytes, (uint64_t)hs_dtype_nbytes(q.dtype, q.n_elems), "%s", types[k]);
        float *got = malloc((size_t)q.n_elems * sizeof *got), *want = malloc((size_t)q.n_elems * sizeof *want);
        hs_to_f32(q.dtype, q.data, got, q.n_elems);
        memcpy(want, r.data, (size_t)q.n_elems * sizeof *want);
        const double scale = hs_test_max_abs(want, q.n_elems);
        cr_assert_gt(scale, 0, "%s: all zero", types[k]);
        double md = 0;
        for (int64_t i = 0; i < q.n_elems; i++) {
            cr_assert(isfinite(got[i]), "%s[%lld]: %g", types[k], (long long)i, got[i]);
            md = fmax(md, fabs((double)got[i] - want[i]));
        }
        cr_assert_leq(md, 8.0 * ldexp(scale, -24), "%s: max |headsweep - gguf-py| %.3g of values up to %.3g", types[k],
                      md, scale);
        free(got), free(want);
    }
    hs_gguf_close(g);
}

/* A type ggml knows but headsweep does not dequantise: the file opens (it
 * can be listed), the tensor itself is refused. */
Test(gguf, known_but_unsupported_type) {
    gw_file f;
    gw_init(&f);
    uint8_t iq[66] = {0};
    gw_tensor_add(&f, "w.iq", 16 /* IQ2_XXS */, 1, (int64_t[]){256}, iq, sizeof iq);
    size_t n;
    uint8_t *p = gw_build(&f, &n);
    hs_gguf *g = NULL;
    hs_err e = {0};
    cr_assert_eq(hs_gguf_open_memory(p, n, NAME, &g, &e), HS_OK, "%s", e.msg);
    hs_gguf_tensor_info ti;
    cr_assert_eq(hs_gguf_tensor_get(g, 0, &ti, &e), HS_ERR_UNSUPPORTED);
    cr_assert(strstr(e.msg, "'w.iq'") && strstr(e.msg, "16") && strstr(e.msg, "IQ2_XXS"), "%s", e.msg);
    cr_assert_str_eq(ti.name, "w.iq");
    cr_assert_eq(ti.nbytes, 66);
    hs_gguf_close(g);
    free(p);
    gw_free(&f);
}

/* ---- bad input -------------------------------------------------------------------------- */

Test(gguf_bad, every_truncation_fails) {
    gw_file f;
    size_t n;
    uint8_t *p = small_file(&f, &n);
    for (size_t cut = 0; cut < n; cut++) EXPECT_FAIL(p, cut, HS_ERR_FORMAT, NAME);
    EXPECT_FAIL(p, 23, HS_ERR_FORMAT, "too small");
    /* early cuts leave no room for three tensor infos: the header count is refused */
    EXPECT_FAIL(p, 24 + f.kv_rel[1] + 5, HS_ERR_FORMAT, "tensor count 3 cannot fit");
    EXPECT_FAIL(p, f.t[1].pos_info + 6, HS_ERR_FORMAT, "tensor #1");
    EXPECT_FAIL(p, f.t[1].pos_info + 10, HS_ERR_FORMAT, "tensor 'b'");
    EXPECT_FAIL(p, f.t[2].pos_type + 2, HS_ERR_FORMAT, "tensor 'c'");
    EXPECT_FAIL(p, f.t[0].pos_data + 4, HS_ERR_FORMAT, "tensor 'a'");
    EXPECT_FAIL(p, n - 1, HS_ERR_FORMAT, "tensor 'c'");
    free(p);
    gw_free(&f);

    /* without tensors, cuts inside the key-values name the key */
    p = small_file_opt(&f, &n, 0);
    for (size_t cut = 0; cut < 24 + f.kv.n; cut++) EXPECT_FAIL(p, cut, HS_ERR_FORMAT, NAME);
    EXPECT_FAIL(p, 24 + f.kv_rel[1] + 5, HS_ERR_FORMAT, "key #1");
    EXPECT_FAIL(p, 24 + f.kv_rel[1] + 18, HS_ERR_FORMAT, "key 'answer'");
    EXPECT_FAIL(p, 24 + f.kv_rel[2] + 20, HS_ERR_FORMAT, "key 'tokens'");
    EXPECT_FAIL(p, 24 + f.kv.n - 1, HS_ERR_FORMAT, "key 'tokens'");
    free(p);
    gw_free(&f);
}

/* Runs `patch` on a fresh copy of the small file, then expects failure. */
#define PATCHED(patch, code, needle)                   \
    do {                                               \
        gw_file f_;                                    \
        size_t n_;                                     \
        uint8_t *p_ = small_file(&f_, &n_);            \
        gw_file *f = &f_;                              \
        uint8_t *p = p_;                               \
        (void)f;                                       \
        patch;                                         \
        EXPECT_FAIL(p_, n_, code, needle);             \
        free(p_);                                      \
        gw_free(&f_);                                  \
    } while (0)

Test(gguf_bad, header) {
    PATCHED(p[0] = 'X', HS_ERR_FORMAT, "magic");
    PATCHED(gw_patch_u32(p, 4, 1), HS_ERR_UNSUPPORTED, "version 1");
    PATCHED(gw_patch_u32(p, 4, 4), HS_ERR_UNSUPPORTED, "version 4");
    PATCHED(gw_patch_u32(p, 4, 0x03000000), HS_ERR_UNSUPPORTED, "big-endian");
    PATCHED(gw_patch_u64(p, 8, (uint64_t)1 << 40), HS_ERR_FORMAT, "tensor count");
    PATCHED(gw_patch_u64(p, 8, UINT64_MAX), HS_ERR_FORMAT, "tensor count");
    PATCHED(gw_patch_u64(p, 16, (uint64_t)1 << 40), HS_ERR_FORMAT, "key-value count");
    /* one tensor more than written: the parser runs into the data section */
    PATCHED(gw_patch_u64(p, 8, 4), HS_ERR_FORMAT, "tensor");
}

Test(gguf_bad, key_values) {
    const size_t arch_len = strlen("general.architecture");
    /* key length, value string length, array length, value type */
    PATCHED(gw_patch_u64(p, 24 + f->kv_rel[0], (uint64_t)1 << 40), HS_ERR_FORMAT, "key #0");
    PATCHED(gw_patch_u64(p, 24 + f->kv_rel[0] + 8 + arch_len + 4, (uint64_t)1 << 40), HS_ERR_FORMAT,
            "key 'general.architecture'");
    PATCHED(gw_patch_u64(p, 24 + f->kv_rel[0] + 8 + arch_len + 4, UINT64_MAX), HS_ERR_FORMAT,
            "string length");
    PATCHED(gw_patch_u64(p, 24 + f->kv_rel[2] + 8 + 6 + 4 + 4, (uint64_t)1 << 50), HS_ERR_FORMAT,
            "key 'tokens': array length");
    PATCHED(gw_patch_u32(p, 24 + f->kv_rel[2] + 8 + 6 + 4, 77), HS_ERR_FORMAT, "key 'tokens'");
    PATCHED(gw_patch_u32(p, 24 + f->kv_rel[1] + 8 + 6, 13), HS_ERR_FORMAT, "key 'answer'");
    /* "tokens" element 1 claims more bytes than the file has */
    PATCHED(gw_patch_u64(p, 24 + f->kv_rel[2] + 8 + 6 + 4 + 4 + 8 + 8 + 1, (uint64_t)1 << 33),
            HS_ERR_FORMAT, "key 'tokens'");
}

static hs_status open_built(gw_file *f, hs_err *e) {
    size_t n;
    uint8_t *p = gw_build(f, &n);
    hs_status st = open_bytes(p, n, e);
    free(p);
    gw_free(f);
    return st;
}

#define BUILT_FAIL(setup, code, needle)                                                        \
    do {                                                                                       \
        gw_file f_;                                                                            \
        gw_file *f = &f_;                                                                      \
        hs_err e_ = {0};                                                                       \
        gw_init(f);                                                                            \
        setup;                                                                                 \
        hs_status st_ = open_built(f, &e_);                                                    \
        cr_assert_eq(st_, (code), "expected %s, got %s: '%s'", hs_status_str(code),            \
                     hs_status_str(st_), e_.msg);                                              \
        cr_assert(strstr(e_.msg, (needle)) && strstr(e_.msg, NAME), "message '%s' lacks '%s'", \
                  e_.msg, (needle));                                                           \
    } while (0)

/* An array of arrays nested 9 deep (the reader allows 8), then an empty u8 array. */
static void deep_array(gw_file *f) {
    gw_kv_arr_begin(f, "deep", HS_GGUF_TYPE_ARRAY, 1);
    for (int i = 0; i < 8; i++) {
        gw_u32(&f->kv, HS_GGUF_TYPE_ARRAY);
        gw_u64(&f->kv, 1);
    }
    gw_u32(&f->kv, HS_GGUF_TYPE_UINT8);
    gw_u64(&f->kv, 0);
}

Test(gguf_bad, keys_semantics) {
    BUILT_FAIL((gw_kv_u32(f, "k", 1), gw_kv_u32(f, "k", 2)), HS_ERR_FORMAT, "duplicate key 'k'");
    BUILT_FAIL(gw_kv_alignment(f, 48), HS_ERR_FORMAT, "'general.alignment'");
    BUILT_FAIL(gw_kv_u32(f, "general.alignment", 0), HS_ERR_FORMAT, "'general.alignment'");
    BUILT_FAIL(gw_kv_str(f, "general.alignment", "32"), HS_ERR_FORMAT, "'general.alignment'");
    BUILT_FAIL(deep_array(f), HS_ERR_FORMAT, "key 'deep': arrays nested");
}

Test(gguf_bad, tensor_infos) {
    PATCHED(gw_patch_u32(p, f->t[0].pos_ndims, 5), HS_ERR_FORMAT, "tensor 'a': n_dims 5");
    PATCHED(gw_patch_u64(p, f->t[0].pos_ndims + 4, (uint64_t)-3), HS_ERR_FORMAT, "tensor 'a'");
    PATCHED(gw_patch_u32(p, f->t[1].pos_type, 99), HS_ERR_UNSUPPORTED, "tensor 'b': unknown ggml type 99");
    PATCHED(gw_patch_u32(p, f->t[1].pos_type, 4), HS_ERR_UNSUPPORTED, "tensor 'b'");
    PATCHED(gw_patch_u64(p, f->t[2].pos_offset, 1 << 20), HS_ERR_FORMAT, "tensor 'c'");
    PATCHED(gw_patch_u64(p, f->t[2].pos_offset, UINT64_MAX - 31), HS_ERR_FORMAT, "tensor 'c'");
    PATCHED(gw_patch_u64(p, f->t[1].pos_offset, 36), HS_ERR_FORMAT, "tensor 'b': data offset 36");
    PATCHED(gw_patch_u64(p, f->t[1].pos_offset, 0), HS_ERR_FORMAT, "tensors 'a' and 'b' overlap");
    PATCHED(gw_patch_u64(p, f->t[0].pos_offset, 64), HS_ERR_FORMAT, "overlap");
    /* dims whose product overflows int64 */
    PATCHED((gw_patch_u64(p, f->t[0].pos_ndims + 4, (uint64_t)1 << 62),
             gw_patch_u64(p, f->t[0].pos_ndims + 12, 8)),
            HS_ERR_FORMAT, "tensor 'a': element count overflows");
    /* Q8_0 rows must be whole 32-element blocks */
    PATCHED(gw_patch_u32(p, f->t[0].pos_type, HS_GGML_TYPE_Q8_0), HS_ERR_FORMAT,
            "tensor 'a': row length 3 is not a multiple");
}

Test(gguf_bad, tensor_layout) {
    float x[64] = {0};
    BUILT_FAIL((gw_tensor_add(f, "dup", 0, 1, (int64_t[]){4}, x, 16),
                gw_tensor_add(f, "dup", 0, 1, (int64_t[]){4}, x, 16)),
               HS_ERR_FORMAT, "duplicate tensor name 'dup'");
    BUILT_FAIL(gw_tensor_add(f, "q", HS_GGML_TYPE_Q8_0, 2, (int64_t[]){16, 4}, x, 68), HS_ERR_FORMAT,
               "tensor 'q': row length 16");
}

/* Deterministic byte mutations of a valid file: any status, never a crash
 * (meaningful under HS_SANITIZE; the fuzz target goes much further). */
Test(gguf_bad, mutations_never_crash) {
    gw_file f;
    size_t n;
    uint8_t *p = small_file(&f, &n), *q = malloc(n);
    hs_test_rng r;
    hs_test_rng_seed(&r, 1234);
    for (int it = 0; it < 20000; it++) {
        memcpy(q, p, n);
        int k = 1 + (int)(hs_test_rng_u64(&r) % 4);
        for (int j = 0; j < k; j++) {
            size_t at = hs_test_rng_u64(&r) % n;
            q[at] = (uint8_t)hs_test_rng_u64(&r);
        }
        hs_gguf *g = NULL;
        hs_err e = {0};
        if (hs_gguf_open_memory(q, n, NAME, &g, &e) == HS_OK) {
            for (int64_t i = 0; i < hs_gguf_kv_count(g); i++) {
                const char *s;
                size_t len;
                hs_gguf_get_str(g, hs_gguf_kv_key(g, i), &s, &len, &e);
            }
            hs_gguf_tensor_info ti;
            for (int64_t i = 0; i < hs_gguf_tensor_count(g); i++) hs_gguf_tensor_get(g, i, &ti, &e);
            hs_gguf_close(g);
        } else {
            cr_assert(strstr(e.msg, NAME), "iteration %d: message '%s' lacks the file", it, e.msg);
        }
    }
    free(q);
    free(p);
    gw_free(&f);
}
