/* bench_attention: headsweep's fused causal attention (cuda/hs_attn_mma.cu via
 * the backend's attention op) against a naive cuBLAS path, bf16, causal.
 *
 * Variants timed (same inputs; B x H sized so B*T = 16384 tokens and
 * H*d_head = 2048, the FlashAttention benchmark convention):
 *   1. fused            z + lse, nothing captured (the sweep path)
 *   2. fused_head_scale 1. plus a per-(row, head) multiplier in the epilogue
 *      fused_window     1. with a sliding window of T/4 keys (T >= 1024;
 *                       TFLOP/s of the work the window keeps)
 *   3. fused_pattern    2. plus the f32 pattern [B,H,T,T] recomputed from
 *                       q, k and lse (the capture path; skipped when the
 *                       pattern would not fit in a quarter of free memory)
 *   4. naive_cublas     S = scale·QKᵀ (one cublasGemmBatchedEx over all B*H
 *                       heads, bf16 out), a causal softmax kernel, O = PV
 *                       (cuBLAS), full T² work and T² memory
 *   5. mma_v1_3blk, mma_v2_freeregs, mma_v3_wm2: the tensor-core kernel's
 *      variants (cuda/hs_attn_mma.cu) called directly:
 *        v1 one m-tile (16 rows) per warp, registers capped for 3 blocks/SM;
 *        v2 the same, registers left to the compiler (d128: 200, 2 blocks/SM);
 *        v3 two m-tiles per warp (128-row blocks, d_head <= 64): half the
 *           shared-memory reads per mma, 224+ registers.
 *      H100 history of the default (TFLOP/s at d64 / d128, T=8192, this
 *      benchmark; cuDNN SDPA 461 / 617):
 *        a. first kernel: one tile loop, every tile masked           180 / 214
 *        b. + uniform heads, a branch skipping masking on
 *           wholly visible tiles                                      172 / 200
 *        c. + branches skipping above-diagonal S and P·V steps,
 *           nk-outer S loop (chains of dependent mma's)               145 / 168
 *        d. kd-outer again, only the P·V skip branch                  159 / 181
 *        v3 (two m-tiles per warp) measured with b.                   141 / —
 *        e. diagonal tiles in their own instantiation of the tile
 *           step (no branches in the common step), v1               186 / 215
 *           v2 (free registers)                                      184 / 201
 *           v3 (two m-tiles per warp)                                205 / —
 *      Default now: v3 for d_head <= 64 at T >= 1024 (it loses 10-15% at
 *      T <= 512), else v1.
 *   6. wgmma_bk64, wgmma_bk128, wgmma_pipe_bk64, wgmma_pipe_bk128: the Hopper
 *      kernel's variants (cuda/hs_attn_wgmma_sm90a.cu, compute capability 9.0
 *      only): plain or pipelined schedule, 64- or 128-key tiles; each one's z
 *      is first compared with the default kernel's on the same inputs.
 * TFLOP/s use the causal count 2·2·B·H·T²·d/2 for every variant. Timing: CUDA
 * events around each launch, 3 warm-ups, median of repeats. A spot check
 * compares fused and naive z before timing.
 * Usage: bench_attention [--out FILE(.csv|.md)] [--quick] */
#include <algorithm>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "headsweep/hs_backend.h"
#include "hs_attention.cuh"
#include "hs_backend_cuda.h"
#include "hs_bench_check.cuh"


typedef __nv_bfloat16 bf16;

/* max |a - b| over n bf16 device values; *max_b gets max |b|. */
static double max_abs_diff_bf16(const void *a, const void *b, int64_t n, double *max_b) {
    std::vector<uint16_t> ha(n), hb(n);
    CK(cudaMemcpy(ha.data(), a, n * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hb.data(), b, n * 2, cudaMemcpyDeviceToHost));
    double mx = 0;
    *max_b = 0;
    for (int64_t i = 0; i < n; i++) {
        const double vb = fabs((double)hs_bf16_to_f32(hb[i]));
        const double d = fabs((double)hs_bf16_to_f32(ha[i]) - (double)hs_bf16_to_f32(hb[i]));
        if (d != d) return INFINITY; /* NaN */
        if (d > mx) mx = d;
        if (vb > *max_b) *max_b = vb;
    }
    return mx;
}

/* Row-wise causal softmax in place on S [BH, T, T] (bf16): the naive baseline. */
__global__ void naive_softmax(bf16 *S, int T) {
    __shared__ float sh[32];
    const int64_t row = blockIdx.x;
    const int t = (int)(row % T);
    bf16 *r = S + row * T;
    float mx = -INFINITY;
    for (int s = threadIdx.x; s <= t; s += blockDim.x) mx = fmaxf(mx, __bfloat162float(r[s]));
    for (int o = 16; o; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(~0u, mx, o));
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = -INFINITY;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) mx = fmaxf(mx, sh[i]);
    __syncthreads();
    float sum = 0;
    for (int s = threadIdx.x; s <= t; s += blockDim.x) sum += __expf(__bfloat162float(r[s]) - mx);
    for (int o = 16; o; o >>= 1) sum += __shfl_xor_sync(~0u, sum, o);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = sum;
    __syncthreads();
    sum = 0;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) sum += sh[i];
    const float inv = 1.0f / sum;
    for (int s = threadIdx.x; s < T; s += blockDim.x)
        r[s] = __float2bfloat16(s <= t ? __expf(__bfloat162float(r[s]) - mx) * inv : 0.0f);
}

struct Row {
    const char *impl;
    int d, T, B, H;
    double ms, tflops;
};

static double median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

/* Times fn() (which enqueues on st): 3 warm-ups, then reps with events. */
template <typename F> static double time_ms(cudaStream_t st, F fn, int reps) {
    for (int i = 0; i < 3; i++) fn();
    CK(cudaStreamSynchronize(st));
    std::vector<cudaEvent_t> ev(2 * reps);
    for (auto &e : ev) CK(cudaEventCreate(&e));
    for (int i = 0; i < reps; i++) {
        CK(cudaEventRecord(ev[2 * i], st));
        fn();
        CK(cudaEventRecord(ev[2 * i + 1], st));
    }
    CK(cudaStreamSynchronize(st));
    std::vector<float> ms(reps);
    for (int i = 0; i < reps; i++) CK(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]));
    for (auto &e : ev) CK(cudaEventDestroy(e));
    return median(ms);
}

/* The rows as CSV, or as a markdown table for a .md path; false (reported) when the file cannot be written. */
static bool write_rows(const char *out, const std::vector<Row> &rows) {
    FILE *f = fopen(out, "w");
    if (!f) {
        perror(out);
        return false;
    }
    const bool md = strlen(out) > 3 && !strcmp(out + strlen(out) - 3, ".md");
    if (md) {
        fprintf(f, "| impl | d_head | seq | batch | heads | ms | TFLOP/s |\n|---|---|---|---|---|---|---|\n");
        for (const Row &r : rows)
            fprintf(f, "| %s | %d | %d | %d | %d | %.4f | %.1f |\n", r.impl, r.d, r.T, r.B, r.H, r.ms, r.tflops);
    } else {
        fprintf(f, "impl,dtype,d_head,seq,batch,heads,causal,ms,tflops\n");
        for (const Row &r : rows)
            fprintf(f, "%s,bf16,%d,%d,%d,%d,1,%.5f,%.2f\n", r.impl, r.d, r.T, r.B, r.H, r.ms, r.tflops);
    }
    return fclose(f) == 0;
}

int main(int argc, char **argv) {
    const char *out = NULL;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else {
            fprintf(stderr, "usage: %s [--out FILE(.csv|.md)] [--quick]\n", argv[0]);
            return 2;
        }
    }
    hs_backend *be = NULL;
    hs_backend_params bp = hs_backend_default_params();
    bp.dtype = HS_DTYPE_BF16;
    {
        hs_err err = {};
        if (hs_backend_cuda_init(&bp, &be, &err) != HS_OK) {
            fprintf(stderr, "bench_attention: %s\n", err.msg);
            return 1;
        }
    }
    const hs_backend_ops *o = be->ops;
    cudaStream_t st = (cudaStream_t)hs_backend_cuda_stream(be);
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    int rt = 0, drv = 0;
    CK(cudaRuntimeGetVersion(&rt));
    CK(cudaDriverGetVersion(&drv));
    printf("device: %s (%d SMs), runtime %d, driver %d, cuBLASLt %zu\n", prop.name,
           prop.multiProcessorCount, rt, drv, cublasLtGetVersion());
    cublasHandle_t blas;
    CB(cublasCreate(&blas));
    CB(cublasSetStream(blas, st));

    std::vector<Row> rows;
    int disagree = 0; /* a kernel variant whose z differed from the default kernel's */
    const int ds[] = {64, 128, 256}; /* 256: Gemma 2 / 3, GPT-J */
    const int Ts[] = {128, 512, 2048, 8192};
    for (int d : ds) {
        for (int T : Ts) {
            if (quick && T > 2048) continue;
            const int B = 16384 / T, H = 2048 / d;
            const int64_t nz = (int64_t)B * T * H * d, nS = (int64_t)B * H * T * T;
            const double flops = 2.0 * 2.0 * B * H * (double)T * T * d / 2.0;
            void *q, *k, *v, *z, *z2, *lse, *hsc;
            hs_err err = {};
            HS(err, o->alloc(be, nz * 2, &q, &err));
            HS(err, o->alloc(be, nz * 2, &k, &err));
            HS(err, o->alloc(be, nz * 2, &v, &err));
            HS(err, o->alloc(be, nz * 2, &z, &err));
            HS(err, o->alloc(be, nz * 2, &z2, &err));
            HS(err, o->alloc(be, (size_t)B * H * T * 4, &lse, &err));
            HS(err, o->alloc(be, (size_t)B * H * 4, &hsc, &err));
            HS(err, hs_backend_cuda_fill_normal(be, q, nz, 1 + d + T, 0, 1, &err));
            HS(err, hs_backend_cuda_fill_normal(be, k, nz, 2 + d + T, 0, 1, &err));
            HS(err, hs_backend_cuda_fill_normal(be, v, nz, 3 + d + T, 0, 1, &err));
            std::vector<float> hs_host((size_t)B * H);
            for (size_t i = 0; i < hs_host.size(); i++) hs_host[i] = (i % 7 == 3) ? 0.0f : 1.0f;
            HS(err, o->upload(be, hsc, hs_host.data(), hs_host.size() * 4, &err));
            hs_attn_params p = {};
            p.B = B, p.T = T, p.H = H, p.H_kv = H, p.d_head = d, p.scale = 1.0f / sqrtf((float)d);
            p.q = q, p.k = k, p.v = v, p.z = z, p.lse = (float *)lse;
            const int reps = T >= 8192 ? 10 : 20;

            /* naive path buffers: S [B, H, T, T] bf16 */
            bf16 *S = NULL;
            const float alpha = p.scale, one = 1.0f, zero = 0.0f;
            const bool naive_fits = (size_t)nS * 2 < prop.totalGlobalMem / 3;
            if (naive_fits) CK(cudaMalloc(&S, (size_t)nS * 2));
            /* one batched call per GEMM over all B*H (b, h) matrices: device
             * pointer arrays, since [B, T, H, d] has no single batch stride */
            const void **ptrs = NULL;
            const int64_t nbh = (int64_t)B * H;
            if (naive_fits) {
                std::vector<const void *> hp(5 * nbh);
                for (int64_t i = 0; i < nbh; i++) {
                    const int64_t b = i / H, hh = i % H, off = b * T * H * d + hh * d;
                    hp[i] = (const bf16 *)k + off;                    /* A of S */
                    hp[nbh + i] = (const bf16 *)q + off;              /* B of S */
                    hp[2 * nbh + i] = S + i * (int64_t)T * T;         /* C of S, B of O */
                    hp[3 * nbh + i] = (const bf16 *)v + off;          /* A of O */
                    hp[4 * nbh + i] = (const bf16 *)z2 + off;         /* C of O */
                }
                CK(cudaMalloc(&ptrs, hp.size() * sizeof(void *)));
                CK(cudaMemcpy(ptrs, hp.data(), hp.size() * sizeof(void *), cudaMemcpyHostToDevice));
            }
            auto naive = [&]() {
                CB(cublasGemmBatchedEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, T, T, d, &alpha, ptrs, CUDA_R_16BF, H * d,
                                       ptrs + nbh, CUDA_R_16BF, H * d, &zero, (void *const *)(ptrs + 2 * nbh),
                                       CUDA_R_16BF, T, (int)nbh, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
                naive_softmax<<<(unsigned)((int64_t)B * H * T), 256, 0, st>>>(S, T);
                CK(cudaGetLastError());
                CB(cublasGemmBatchedEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, d, T, T, &one, ptrs + 3 * nbh, CUDA_R_16BF,
                                       H * d, ptrs + 2 * nbh, CUDA_R_16BF, T, &zero,
                                       (void *const *)(ptrs + 4 * nbh), CUDA_R_16BF, H * d, (int)nbh,
                                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
            };
            auto fused = [&]() {
                hs_err e = {};
                if (o->attention(be, &p, &e) != HS_OK) {
                    fprintf(stderr, "attention: %s\n", e.msg);
                    exit(1);
                }
            };

            /* spot check: fused vs naive z */
            if (naive_fits) {
                fused();
                naive();
                CK(cudaStreamSynchronize(st));
                std::vector<uint16_t> a(nz), bb(nz);
                CK(cudaMemcpy(a.data(), z, nz * 2, cudaMemcpyDeviceToHost));
                CK(cudaMemcpy(bb.data(), z2, nz * 2, cudaMemcpyDeviceToHost));
                double mx = 0, ref = 0;
                for (int64_t i = 0; i < nz; i += 97) {
                    float fa = hs_bf16_to_f32(a[i]), fb = hs_bf16_to_f32(bb[i]);
                    mx = fmax(mx, fabs(fa - fb));
                    ref = fmax(ref, fabs(fb));
                }
                printf("check d=%d T=%d: max |fused - naive| = %.4g (max |z| %.3g)\n", d, T, mx, ref);
                if (!(mx <= 0.05 * ref + 0.02)) {
                    fprintf(stderr, "bench_attention: fused and naive disagree\n");
                    return 1;
                }
            }

            double ms = time_ms(st, fused, reps);
            rows.push_back({"headsweep_fused", d, T, B, H, ms, flops / ms / 1e9});
            p.head_scale = (const float *)hsc;
            ms = time_ms(st, fused, reps);
            rows.push_back({"headsweep_fused_head_scale", d, T, B, H, ms, flops / ms / 1e9});
            if (T >= 1024) { /* a sliding window of T/4 (Mistral's 4096 at 16k): TFLOP/s of the work it keeps */
                const int w = T / 4;
                const double wflops = 2.0 * 2.0 * B * H * ((double)T * w - (double)w * (w - 1) / 2.0) * d;
                p.head_scale = NULL, p.window = w;
                ms = time_ms(st, fused, reps);
                rows.push_back({"headsweep_fused_window", d, T, B, H, ms, wflops / ms / 1e9});
                p.window = 0, p.head_scale = (const float *)hsc;
            }
            size_t fr = 0, tot = 0;
            CK(cudaMemGetInfo(&fr, &tot));
            if ((size_t)nS * 4 < fr / 4) {
                float *pat = NULL;
                CK(cudaMalloc(&pat, (size_t)nS * 4));
                p.pattern = pat;
                ms = time_ms(st, fused, std::min(reps, 10));
                rows.push_back({"headsweep_fused_pattern", d, T, B, H, ms, flops / ms / 1e9});
                p.pattern = NULL;
                CK(cudaFree(pat));
            } else {
                printf("skip fused_pattern d=%d T=%d: pattern needs %.1f GB\n", d, T, nS * 4 / 1e9);
            }
            p.head_scale = NULL;
            { /* variant 5: the tensor-core kernel's variants, called directly */
                hs_cuda_attn_args aa = {};
                aa.B = B, aa.T = T, aa.H = H, aa.H_kv = H, aa.d = d, aa.scale = p.scale;
                aa.scale_log2 = p.scale * HS_ATTN_LOG2E;
                aa.q = q, aa.k = k, aa.v = v, aa.z = z, aa.lse = (float *)lse;
                aa.q_sh = aa.k_sh = aa.v_sh = aa.z_sh = d;
                aa.q_st = aa.k_st = aa.v_st = aa.z_st = (int64_t)H * d;
                aa.q_sb = aa.k_sb = aa.v_sb = aa.z_sb = (int64_t)T * H * d;
                static const char *names[] = {"", "mma_v1_3blk", "mma_v2_freeregs", "mma_v3_wm2"};
                /* d 256: one shape, and only where a block may take its shared memory */
                const int nvar = !hs_cuda_attn_mma_supports(d, prop.sharedMemPerBlockOptin) ? 0
                                 : d <= 64                                                  ? 3
                                 : d > 128                                                  ? 1
                                                                                            : 2;
                for (int var = 1; var <= nvar; var++) {
                    auto run = [&]() {
                        hs_err e = {};
                        if (hs_cuda_attn_mma_variant(&aa, var, st, &e) != HS_OK) {
                            fprintf(stderr, "attention variant %d: %s\n", var, e.msg);
                            exit(1);
                        }
                    };
                    ms = time_ms(st, run, reps);
                    rows.push_back({names[var], d, T, B, H, ms, flops / ms / 1e9});
                }
                /* 6. the Hopper kernel (cuda/hs_attn_wgmma_sm90a.cu), checked
                 * against the mma kernel's z before it is timed */
                const int cc = prop.major * 10 + prop.minor;
                static const char *wnames[] = {"", "wgmma_bk64", "wgmma_bk128", "wgmma_pipe_bk64", "wgmma_pipe_bk128"};
                for (int var = 1; var <= HS_CUDA_WGMMA_VARIANTS && hs_cuda_attn_wgmma_supports(d, cc); var++) {
                    aa.z = z2;
                    auto run = [&]() {
                        hs_err e = {};
                        if (hs_cuda_attn_wgmma(&aa, var, st, &e) != HS_OK) {
                            fprintf(stderr, "wgmma variant %d: %s\n", var, e.msg);
                            exit(1);
                        }
                    };
                    run();
                    fused();
                    CK(cudaStreamSynchronize(st));
                    double ref = 0;
                    const double mx = max_abs_diff_bf16(z, z2, nz, &ref);
                    printf("check d=%d T=%d: max |%s - fused| = %.4g (max |z| %.3g)\n", d, T, wnames[var], mx, ref);
                    /* Scaled like the naive check: a bf16 step grows with |z|. */
                    if (!(mx <= 0.05 * ref + 0.02)) { /* not timed; the run still reports the rest */
                        fprintf(stderr, "bench_attention: %s and the default kernel disagree\n", wnames[var]);
                        disagree = 1;
                        aa.z = z;
                        continue;
                    }
                    ms = time_ms(st, run, reps);
                    rows.push_back({wnames[var], d, T, B, H, ms, flops / ms / 1e9});
                    aa.z = z;
                }
            }
            if (naive_fits) {
                ms = time_ms(st, naive, reps);
                rows.push_back({"naive_cublas", d, T, B, H, ms, flops / ms / 1e9});
                CK(cudaFree(S));
                CK(cudaFree(ptrs));
            }
            void *bufs[] = {q, k, v, z, z2, lse, hsc};
            for (void *b : bufs) o->free(be, b);
            for (const Row &r : rows)
                if (r.d == d && r.T == T)
                    printf("%-28s d=%-3d T=%-5d B=%-4d H=%-3d %9.3f ms %8.1f TFLOP/s\n", r.impl, r.d, r.T,
                           r.B, r.H, r.ms, r.tflops);
            fflush(stdout);
            /* the table so far: a run stopped at its time limit keeps its rows */
            if (out && !write_rows(out, rows)) return 1;
        }
    }
    if (out && !write_rows(out, rows)) return 1;
    if (out) printf("wrote %s\n", out);
    cublasDestroy(blas);
    hs_backend_free(be);
    return disagree ? 1 : 0;
}
