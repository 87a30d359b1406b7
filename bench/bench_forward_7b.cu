/* bench_forward_7b: end-to-end forward of a Llama-2-7B-shaped model (32
 * layers, 32 heads, d_model 4096, d_mlp 11008, vocab 32000, RMSNorm, SwiGLU,
 * RoPE) on the CUDA backend in bf16, 64 prompts x 128 tokens, all logits.
 *
 * Weights are synthetic bf16 generated ON THE DEVICE (hs_backend_cuda_fill_normal)
 * — a 7B host f32 model would be 27 GB. hs_session_init uploads an hs_model's
 * host f32 weights and cannot take device weights, so the layer loop here is
 * written on the backend ops directly, mirroring hs_forward.c op for op (same
 * matmuls, separate attn_out/mlp_out + add, logits for every position).
 *
 * Reports time per forward (median of repeats, CUDA events), tokens/s, model
 * FLOPs (2·tokens·linear params + causal attention), MFU against a bf16
 * 8192³ GEMM measured in the same run through the same backend matmul
 * (cuBLASLt), and peak device memory (cudaMemGetInfo).
 * Usage: bench_forward_7b [--out FILE(.md|.csv)] [--layers N] [--reps N] */
#include <algorithm>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "headsweep/hs_backend.h"
#include "headsweep/hs_model.h"
#include "hs_backend_cuda.h"
#include "hs_bench_check.cuh"
#include "hs_cuda_common.cuh"


struct Layer {
    void *ln1, *wq, *wk, *wv, *wo, *ln2, *wg, *wu, *wd;
};

static hs_backend *be;
static hs_err err;
static size_t free_min = (size_t)-1;

static void note_mem() {
    size_t fr = 0, tot = 0;
    CK(cudaMemGetInfo(&fr, &tot));
    free_min = std::min(free_min, fr);
}

static void *dalloc(size_t bytes) {
    void *p = NULL;
    HS(err, be->ops->alloc(be, bytes, &p, &err));
    note_mem();
    return p;
}

static void *weight(int64_t n, uint64_t seed, float mean, float std) {
    void *p = dalloc((size_t)n * 2);
    HS(err, hs_backend_cuda_fill_normal(be, p, n, seed, mean, std, &err));
    return p;
}

int main(int argc, char **argv) {
    const char *out = NULL;
    int L = 32, reps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--layers") && i + 1 < argc) L = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--out FILE] [--layers N] [--reps N]\n", argv[0]);
            return 2;
        }
    }
    const int H = 32, Hk = 32, d = 4096, dh = 128, f = 11008, V = 32000, B = 64, T = 128;
    const int64_t n = (int64_t)B * T;
    const float eps = 1e-5f;
    hs_model_config rope_cfg = {};
    rope_cfg.d_head = dh, rope_cfg.rope_theta = 10000.0f;
    std::vector<float> inv_freq(dh / 2);
    hs_model_rope_inv_freq(&rope_cfg, NULL, inv_freq.data());
    hs_backend_params bp = hs_backend_default_params();
    bp.dtype = HS_DTYPE_BF16;
    size_t free0 = 0, total = 0;
    CK(cudaSetDevice(bp.device));
    CK(cudaMemGetInfo(&free0, &total));
    HS(err, hs_backend_cuda_init(&bp, &be, &err));
    const hs_backend_ops *o = be->ops;
    cudaStream_t st = (cudaStream_t)hs_backend_cuda_stream(be);
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, bp.device));

    /* ---- bf16 GEMM ceiling: 8192^3 through the same backend matmul ---------- */
    double gemm_tflops = 0;
    {
        const int G = 8192;
        void *a = weight((int64_t)G * G, 11, 0, 1), *w = weight((int64_t)G * G, 12, 0, 1),
             *c = dalloc((size_t)G * G * 2);
        std::vector<float> ms;
        cudaEvent_t e0, e1;
        CK(cudaEventCreate(&e0));
        CK(cudaEventCreate(&e1));
        for (int i = 0; i < 13; i++) {
            CK(cudaEventRecord(e0, st));
            HS(err, o->matmul(be, a, w, NULL, G, G, G, 0, c, &err));
            CK(cudaEventRecord(e1, st));
            CK(cudaEventSynchronize(e1));
            float t;
            CK(cudaEventElapsedTime(&t, e0, e1));
            if (i >= 3) ms.push_back(t);
        }
        std::sort(ms.begin(), ms.end());
        gemm_tflops = 2.0 * G * (double)G * G / ms[ms.size() / 2] / 1e9;
        o->free(be, a), o->free(be, w), o->free(be, c);
        CK(cudaEventDestroy(e0));
        CK(cudaEventDestroy(e1));
        printf("bf16 GEMM 8192^3 (cuBLASLt via the backend): %.1f TFLOP/s\n", gemm_tflops);
    }

    /* ---- weights, generated on the device ------------------------------------ */
    std::vector<Layer> W(L);
    uint64_t seed = 1000;
    void *tok = weight((int64_t)V * d, seed++, 0, 0.02f);
    for (int l = 0; l < L; l++) {
        Layer &w = W[l];
        w.ln1 = weight(d, seed++, 1, 0);
        w.wq = weight((int64_t)H * dh * d, seed++, 0, 0.02f);
        w.wk = weight((int64_t)Hk * dh * d, seed++, 0, 0.02f);
        w.wv = weight((int64_t)Hk * dh * d, seed++, 0, 0.02f);
        w.wo = weight((int64_t)d * H * dh, seed++, 0, 0.02f);
        w.ln2 = weight(d, seed++, 1, 0);
        w.wg = weight((int64_t)f * d, seed++, 0, 0.02f);
        w.wu = weight((int64_t)f * d, seed++, 0, 0.02f);
        w.wd = weight((int64_t)d * f, seed++, 0, 0.02f);
    }
    void *lnf = weight(d, seed++, 1, 0), *unembed = weight((int64_t)V * d, seed++, 0, 0.02f);
    const int64_t n_lin = (int64_t)L * (4LL * d * H * dh + 3LL * d * f) + (int64_t)V * d;

    /* ---- activations (as hs_session_init sizes them) --------------------------- */
    const size_t es = 2;
    void *x = dalloc(n * d * es), *xn = dalloc(n * d * es), *q = dalloc(n * H * dh * es),
         *k = dalloc(n * Hk * dh * es), *v = dalloc(n * Hk * dh * es), *z = dalloc(n * H * dh * es),
         *attn_out = dalloc(n * d * es), *gate = dalloc(n * f * es), *up = dalloc(n * f * es),
         *hid = dalloc(n * f * es), *mlp_out = dalloc(n * d * es), *logits = dalloc(n * V * es);
    int32_t *d_tok = (int32_t *)dalloc(n * 4), *d_pos = (int32_t *)dalloc(n * 4);
    {
        std::vector<int32_t> tk(n), ps(n);
        for (int64_t i = 0; i < n; i++) {
            tk[i] = (int32_t)((i * 2654435761u) % V);
            ps[i] = (int32_t)(i % T);
        }
        HS(err, o->upload(be, d_tok, tk.data(), n * 4, &err));
        HS(err, o->upload(be, d_pos, ps.data(), n * 4, &err));
    }

    hs_attn_params ap = {};
    ap.B = B, ap.T = T, ap.H = H, ap.H_kv = Hk, ap.d_head = dh, ap.scale = 1.0f / sqrtf((float)dh);
    ap.q = q, ap.k = k, ap.v = v, ap.z = z;
    auto forward = [&]() {
        HS(err, o->embed(be, d_tok, d_pos, tok, NULL, n, d, 1.0f, x, &err));
        for (int l = 0; l < L; l++) {
            const Layer &w = W[l];
            HS(err, o->norm(be, HS_NORM_RMSNORM, x, w.ln1, NULL, eps, n, d, 1, xn, &err));
            HS(err, o->matmul(be, xn, w.wq, NULL, n, H * dh, d, 0, q, &err));
            HS(err, o->matmul(be, xn, w.wk, NULL, n, Hk * dh, d, 0, k, &err));
            HS(err, o->matmul(be, xn, w.wv, NULL, n, Hk * dh, d, 0, v, &err));
            HS(err, o->rope(be, HS_ROPE_NEOX, q, d_pos, n, H, dh, dh, inv_freq.data(), 1.0f, &err));
            HS(err, o->rope(be, HS_ROPE_NEOX, k, d_pos, n, Hk, dh, dh, inv_freq.data(), 1.0f, &err));
            HS(err, o->attention(be, &ap, &err));
            HS(err, o->matmul(be, z, w.wo, NULL, n, d, H * dh, 0, attn_out, &err));
            HS(err, o->add(be, x, attn_out, n * d, &err));
            HS(err, o->norm(be, HS_NORM_RMSNORM, x, w.ln2, NULL, eps, n, d, 1, xn, &err));
            HS(err, o->matmul(be, xn, w.wu, NULL, n, f, d, 0, up, &err));
            HS(err, o->matmul(be, xn, w.wg, NULL, n, f, d, 0, gate, &err));
            HS(err, o->act(be, HS_ACT_SILU_GLU, gate, up, n * f, hid, &err));
            HS(err, o->matmul(be, hid, w.wd, NULL, n, d, f, 0, mlp_out, &err));
            HS(err, o->add(be, x, mlp_out, n * d, &err));
        }
        HS(err, o->norm(be, HS_NORM_RMSNORM, x, lnf, NULL, eps, n, d, 1, xn, &err));
        HS(err, o->matmul(be, xn, unembed, NULL, n, V, d, 0, logits, &err));
    };

    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < 2; i++) forward(); /* warm-up: plans, rope table */
    HS(err, o->sync(be, &err));
    note_mem();
    std::vector<float> ms;
    for (int i = 0; i < reps; i++) {
        CK(cudaEventRecord(e0, st));
        forward();
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        float t;
        CK(cudaEventElapsedTime(&t, e0, e1));
        ms.push_back(t);
    }
    note_mem();
    std::sort(ms.begin(), ms.end());
    const double t_ms = ms[ms.size() / 2];
    /* sanity: logits finite */
    {
        std::vector<float> lg(V);
        HS(err, o->download_f32(be, lg.data(), (char *)logits + (n - 1) * V * es, V, &err));
        for (float vv : lg)
            if (!isfinite(vv)) {
                fprintf(stderr, "bench_forward_7b: non-finite logit\n");
                return 1;
            }
    }
    const double attn_flops = (double)L * 2.0 * 2.0 * B * H * (double)T * T * dh / 2.0;
    const double flops = 2.0 * n * (double)n_lin + attn_flops;
    const double tflops = flops / t_ms / 1e9;
    const double peak_gb = (double)(free0 - free_min) / 1e9;
    printf("Llama-2-7B shape (%d layers), %d x %d tokens, bf16: %.2f ms/forward (median of %d), "
           "%.0f tokens/s, %.1f TFLOP/s, MFU %.1f%% of the measured GEMM rate, peak memory %.2f GB\n",
           L, B, T, t_ms, reps, n / (t_ms / 1e3), tflops, 100.0 * tflops / gemm_tflops, peak_gb);
    if (out) {
        FILE *fo = fopen(out, "w");
        if (!fo) {
            perror(out);
            return 1;
        }
        const bool md = strlen(out) > 3 && !strcmp(out + strlen(out) - 3, ".md");
        if (md) {
            fprintf(fo, "| metric | value |\n|---|---|\n");
            fprintf(fo, "| device | %s |\n| model | Llama-2-7B shape, %d layers, synthetic bf16 weights |\n",
                    prop.name, L);
            fprintf(fo, "| batch | %d x %d tokens |\n| ms / forward (median of %d) | %.2f |\n", B, T, reps, t_ms);
            fprintf(fo, "| tokens/s | %.0f |\n| model TFLOP / forward | %.2f |\n| achieved TFLOP/s | %.1f |\n",
                    n / (t_ms / 1e3), flops / 1e12, tflops);
            fprintf(fo, "| bf16 GEMM 8192^3 TFLOP/s | %.1f |\n| MFU vs that GEMM | %.1f%% |\n", gemm_tflops,
                    100.0 * tflops / gemm_tflops);
            fprintf(fo, "| peak device memory (GB) | %.2f |\n", peak_gb);
        } else {
            fprintf(fo, "device,layers,batch,seq,ms,tokens_per_s,tflops,gemm_tflops,mfu,peak_gb\n");
            fprintf(fo, "%s,%d,%d,%d,%.3f,%.0f,%.2f,%.2f,%.4f,%.3f\n", prop.name, L, B, T, t_ms,
                    n / (t_ms / 1e3), tflops, gemm_tflops, tflops / gemm_tflops, peak_gb);
        }
        fclose(fo);
        printf("wrote %s\n", out);
    }
    hs_backend_free(be); /* process exit releases the buffers */
    return 0;
}
