/* Shared test helpers: fixture paths, seeded random data and the one place
 * where tolerances are written down. */
#ifndef HS_TESTUTIL_H
#define HS_TESTUTIL_H

#include <stdint.h>

#include "headsweep/hs_ablation.h"
#include "headsweep/hs_model.h"
#include "headsweep/hs_run.h"
#include "headsweep/hs_safetensors.h"
#include "headsweep/hs_status.h"

/* Path of a file under the source tree's tests/fixtures (static buffer per call site
 * is avoided: writes into out). */
void hs_test_fixture_path(char *out, size_t n, const char *rel);
/* Loads fixtures/models/<model>; a failure fails the test. */
hs_model *hs_test_fixture_model(const char *model);
/* Loads fixtures/models/<model> into *m and opens its reference tensors
 * fixtures/ref/<model>_<part>.safetensors into *ref; a failure fails the test. */
void hs_test_load_fixture(const char *model, const char *part, hs_model **m, hs_st_file **ref);
/* Reference tensor `name` of a fixture file; its absence fails the test. */
const hs_st_tensor *hs_test_ref_tensor(hs_st_file *ref, const char *name);
/* The clean prompts of a patching-style fixture (tensors tokens [N, T],
 * lengths, answer, distractor; borrowed from ref). */
hs_prompts hs_test_ref_prompts(hs_st_file *ref);
/* The needle prompts of a retrieval fixture (make_retrieval_refs): prompts,
 * needle spans and transformers' greedy tokens gen [N, G] (borrowed from ref). */
typedef struct {
    hs_prompts pr;
    const int32_t *ns, *nl, *gen;
    int G;
} hs_test_needles;
hs_test_needles hs_test_ref_needles(hs_st_file *ref);
/* ROUGE-1 recall over tokens of answer gen [G] against needle [n], written
 * another way than the library's: each needle token takes one unused equal
 * answer token; / n. */
float hs_test_token_recall(const int32_t *needle, int n, const int32_t *gen, int G);
/* Removes a test's temporary directory and everything in it (rm -rf); a
 * failure fails the test. */
void hs_test_remove_dir(const char *dir);
/* Opens a result file the way users do, h5py and xarray (tests/h5_check_run.py),
 * and fails the test if that check fails; only logged when HS_PYTHON is unset
 * (CI sets it). */
void hs_test_check_with_h5py(const char *path);
/* Loads the config at path with overrides sets[0..n_sets) (a failure fails
 * the test) and runs it as `headsweep run` does; returns hs_run's status. */
hs_status hs_test_run_config(const char *path, const char *const *sets, int n_sets, const hs_run_params *rp, hs_err *err);
/* The real SmolLM2 GGUF: $HS_SMOLLM2_GGUF or the set-up script's cache path.
 * Returns 1 if the file exists. */
int hs_test_smollm2_path(char *out, size_t n);

/* Skips the calling Criterion test, with the reason, where no CUDA device is
 * visible (the test file includes criterion and hs_backend.h). */
#define REQUIRE_GPU()                                                              \
    do {                                                                           \
        if (hs_backend_cuda_device_count() == 0) cr_skip_test("no CUDA device");   \
    } while (0)

/* xorshift64* generator: tests seed it and print the seed. */
typedef struct { uint64_t s; } hs_test_rng;
void hs_test_rng_seed(hs_test_rng *r, uint64_t seed);
uint64_t hs_test_rng_u64(hs_test_rng *r);
float hs_test_rng_uniform(hs_test_rng *r);  /* [0, 1) */
float hs_test_rng_normal(hs_test_rng *r);   /* N(0, 1) */
void hs_test_fill_normal(hs_test_rng *r, float *x, int64_t n, float std);

/* Result of comparing got against ref elementwise:
 * passes iff every |got - ref| <= atol + rtol*|ref| and no value is NaN/Inf
 * where ref is finite. */
typedef struct {
    int64_t n, n_bad, first_bad;
    double max_abs, max_rel, rel_l2; /* rel_l2 = ||got-ref|| / ||ref|| */
    int nan;
} hs_test_cmp;

hs_test_cmp hs_test_compare(const float *got, const float *ref, int64_t n, double atol,
                            double rtol);
/* Same with a stride-free mask: element i compared only if keep[i] != 0. */
hs_test_cmp hs_test_compare_masked(const float *got, const float *ref, const uint8_t *keep,
                                   int64_t n, double atol, double rtol);

/* f32 tolerances for whole-model comparisons against transformers.
 * Both sides compute in f32 with different summation orders (OpenBLAS vs MKL/
 * oneDNN blocking, fused vs unfused softmax). Each dot product of length K
 * accumulates rounding of order sqrt(K)*eps*|terms|; with K <= a few hundred and
 * 3-30 layers of compounding, observed relative error stays below 1e-5 of the
 * activation scale, so: rtol 1e-5 with an atol of 1e-5 times the tensor's RMS
 * (elements near zero carry absolute, not relative, error). */
#define HS_TEST_F32_RTOL 1e-5
#define HS_TEST_F32_ATOL_RMS 1e-5
double hs_test_rms(const float *x, int64_t n);

/* Runs m on the CPU over a reference file's batch (tokens, mask, positions)
 * and fails the test, naming what, unless every unmasked position's logits
 * match the file's "logits" within the tolerances above. */
void hs_test_logits_match(const hs_model *m, hs_st_file *ref, const char *what);
/* The same with the batch's positions replaced by positions [B, T] (the
 * file's where NULL). */
void hs_test_logits_match_at(const hs_model *m, hs_st_file *ref, const int32_t *positions, const char *what);

/* ==== CUDA-backend comparisons (test_cuda_ops.c, test_cuda_model.c) ==========
 * bf16 rule (FlashAttention's tests): a bf16 kernel is right when its error
 * against the f32 reference is at most twice the error of a naive bf16
 * computation of the same op (inputs, every intermediate tensor and the output
 * rounded to bf16, reductions in f32 as bf16 frameworks do):
 *     max|got - ref| <= 2 * max|naive - ref| + floor,
 * floor = 64 * 2^-24 * max|ref|. Why the floor: where the naive computation
 * happens to be exact (a single rounding of an exactly representable sum),
 * the f32 reference itself carries reduction-order noise of a few dozen f32
 * ulps; 64 * 2^-24 is ~4e-6 relative, 1000x below one bf16 ulp (2^-8), so it
 * can never hide a bf16-sized error. NaN/Inf in got where ref is finite
 * always fails. */
#include "headsweep/hs_tensor.h"

/* Round-to-nearest-even to bf16 and back to f32 (NaN stays NaN). */
float hs_test_bf16_round(float x);
void hs_test_bf16_round_array(float *x, int64_t n);
/* Rounds every weight of m to bf16 in place (tied tensors twice: idempotent),
 * so that an f32 backend and a bf16 one see the same weights. */
void hs_test_round_model_bf16(hs_model *m);
/* A Llama-family configuration (RMSNorm, SiLU-gated MLP, NeoX RoPE, BOS 1,
 * EOS 2, untied head) for random test models. */
hs_model_config hs_test_llama_config(int n_layers, int n_heads, int n_kv_heads, int d_model, int d_head, int d_mlp,
                                     int n_vocab, int n_ctx, float rope_theta);

typedef struct {
    double err;       /* max |got - ref| */
    double naive_err; /* max |naive - ref| */
    double bound;     /* 2 * naive_err + floor */
    int64_t worst;    /* index of the largest |got - ref| */
    int64_t n_nonfinite; /* got non-finite where ref is finite, ref NaN, or a different infinity */
    int ok;
} hs_test_bf16_result;

hs_test_bf16_result hs_test_bf16_check(const float *got, const float *naive, const float *ref,
                                       int64_t n);

/* max |x| over n values (0 for n = 0); non-finite values are skipped. */
double hs_test_max_abs(const float *x, int64_t n);

/* $HS_SOURCE_DIR at run time if set (a prebuilt tree run elsewhere), else the
 * compiled-in source directory. */
const char *hs_test_source_dir(void);
/* ==== end of CUDA-backend comparisons ========================================= */

/* Runs `headsweep ARGS REDIRECT` from the source tree (e.g. REDIRECT "2>&1"),
 * capturing what reaches the pipe into out; returns the exit code, -1 if the
 * command could not be run or did not exit normally. */
int hs_test_run_cli(const char *args, const char *redirect, char *out, size_t n);

#endif
