/* hs_attn_pattern: the attention pattern [B, H, T, T] (f32), or one query row
 * per batch row of it [B, H, T], recomputed only
 * when a hook wants it, from q, k and the log-sum-exp the fused kernel
 * stored: P[t,s] = exp(scale q_t·k_s (+ slope_h (s - t) with ALiBi) - lse_t) for
 * visible keys, 0 elsewhere (every entry is written). Writing T² floats is the cost, so:
 *   - bf16 on the tensor cores (the fused kernel's S = Q·Kᵀ tiles, stored
 *     straight from the accumulator fragments as float2), 64 query rows per
 *     block, tiles above the diagonal zero-filled without any compute;
 *   - f32 (and bf16 shapes the tensor-core kernel does not take, and ALiBi) on
 *     CUDA cores, 32x32 tiles, true f32. */
#include "hs_mma_util.cuh"

#include <math.h>

typedef __nv_bfloat16 bf16;

/* ---- CUDA cores ------------------------------------------------------------------- */

#define PAT_TILE 32
#define PAT_THREADS 256 /* 8 warps x 4 rows = 32 query rows; lane = key */

/* One block per (32 keys, 32 queries, b*H + h). */
template <typename T>
__global__ void __launch_bounds__(PAT_THREADS)
    hs_k_pattern_simt(hs_cuda_attn_args a, const float *lse, float *pattern) {
    extern __shared__ float sm[];
    const int d = a.d, T_ = a.T;
    float *sQ = sm;                /* [32][d] */
    float *sK = sQ + PAT_TILE * d; /* [32][d+1] */
    const int k0 = blockIdx.x * PAT_TILE, q0 = blockIdx.y * PAT_TILE;
    const int bh = blockIdx.z, b = bh / a.H, h = bh - b * a.H, hk = h / (a.H / a.H_kv);
    const int tid = threadIdx.x, lane = tid & 31, rw = (tid >> 5) * 4;
    const int key = k0 + lane;
    float *prow = pattern + (int64_t)bh * T_ * T_;
    if (k0 > q0 + PAT_TILE - 1) { /* strictly above the diagonal */
        for (int r = 0; r < 4; r++) {
            const int t = q0 + rw + r;
            if (t < T_ && key < T_) prow[(int64_t)t * T_ + key] = 0.0f;
        }
        return;
    }
    const T *qb = (const T *)a.q + b * a.q_sb + h * a.q_sh;
    const T *kb = (const T *)a.k + b * a.k_sb + hk * a.k_sh;
    for (int i = tid; i < PAT_TILE * d; i += PAT_THREADS) {
        const int r = i / d, c = i - r * d;
        const int t = q0 + r, s = k0 + r;
        sQ[i] = t < T_ ? hs_ld(qb + t * a.q_st + c) : 0.0f;
        sK[r * (d + 1) + c] = s < T_ ? hs_ld(kb + s * a.k_st + c) : 0.0f;
    }
    __syncthreads();
    if (key >= T_) return;
    const bool uni = a.uniform && a.uniform[bh] != 0;
    const bool kvis = !a.key_mask || a.key_mask[(int64_t)b * T_ + key] != 0;
    const float slope = hs_attn_slope(a, h); /* ALiBi; read once: the stores below may alias it */
    float dot[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const float *kr = sK + lane * (d + 1);
    for (int c = 0; c < d; c++) {
        const float kc = kr[c];
#pragma unroll
        for (int r = 0; r < 4; r++) dot[r] = fmaf(sQ[(rw + r) * d + c], kc, dot[r]);
    }
#pragma unroll
    for (int r = 0; r < 4; r++) {
        const int t = q0 + rw + r;
        if (t >= T_) continue;
        const float L = lse[(int64_t)bh * T_ + t];
        const bool vis = kvis && key <= t && hs_attn_in_window(a, t, key) && L != -INFINITY;
        prow[(int64_t)t * T_ + key] =
            vis ? expf((uni ? 0.0f : hs_attn_score(a, dot[r]) + slope * (float)(key - t)) - L) : 0.0f;
    }
}

/* One query row per batch row (rows[b]) into pattern [B, H, T]: one block
 * per b*H + h, a thread per key; for analyses that read a single row (the
 * retrieval score's last position), T floats per head instead of T². */
template <typename T>
__global__ void __launch_bounds__(PAT_THREADS)
    hs_k_pattern_row(hs_cuda_attn_args a, const int32_t *rows, const float *lse, float *pattern) {
    extern __shared__ float sq[]; /* [d] */
    const int T_ = a.T, bh = blockIdx.x, b = bh / a.H, h = bh - b * a.H, hk = h / (a.H / a.H_kv);
    const int t = rows[b];
    const T *qr = (const T *)a.q + b * a.q_sb + t * a.q_st + h * a.q_sh;
    const T *kb = (const T *)a.k + b * a.k_sb + hk * a.k_sh;
    for (int c = threadIdx.x; c < a.d; c += PAT_THREADS) sq[c] = hs_ld(qr + c);
    __syncthreads();
    const bool uni = a.uniform && a.uniform[bh] != 0;
    const float L = lse[(int64_t)bh * T_ + t], slope = hs_attn_slope(a, h); /* ALiBi */
    float *prow = pattern + (int64_t)bh * T_;
    for (int s = threadIdx.x; s < T_; s += PAT_THREADS) {
        const bool vis = s <= t && hs_attn_in_window(a, t, s) && L != -INFINITY &&
                         (!a.key_mask || a.key_mask[(int64_t)b * T_ + s] != 0);
        float dot = 0.0f;
        if (vis && !uni) {
            const T *kr = kb + s * a.k_st;
            for (int c = 0; c < a.d; c++) dot = fmaf(sq[c], hs_ld(kr + c), dot);
        }
        /* uniform heads: score 0 */
        prow[s] = vis ? expf((uni ? 0.0f : hs_attn_score(a, dot) + slope * (float)(s - t)) - L) : 0.0f;
    }
}

/* ---- tensor cores (bf16) ---------------------------------------------------------------- */

template <int D>
__global__ void __launch_bounds__(MMA_WARPS * 32)
    hs_k_pattern_mma(hs_cuda_attn_args a, const float *lse, float *pattern) {
    using G = hs_mma_geom<D>;
    constexpr int DP = G::DP, BQ = 16 * MMA_WARPS;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *sQ = reinterpret_cast<bf16 *>(smem_raw); /* [BQ][DP] */
    bf16 *sK = sQ + BQ * DP;                        /* [BK][DP] */
    int *sMask = reinterpret_cast<int *>(sK + MMA_BK * DP);

    const int T_ = a.T, tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tig = lane & 3;
    const int nqt = (T_ + BQ - 1) / BQ;
    const int q0 = (nqt - 1 - (int)blockIdx.x) * BQ;
    const int h = blockIdx.y, b = blockIdx.z, hk = h / (a.H / a.H_kv), bh = b * a.H + h;
    const bf16 *qb = (const bf16 *)a.q + b * a.q_sb + h * a.q_sh;
    const bf16 *kb = (const bf16 *)a.k + b * a.k_sb + hk * a.k_sh;
    const int32_t *mask = a.key_mask ? a.key_mask + (int64_t)b * T_ : NULL;
    const bool uni = a.uniform && a.uniform[bh] != 0;
    const int q_end = min(T_, q0 + BQ);
    const int nkt = (q_end - 1) / MMA_BK + 1;
    const int row_g = q0 + warp * 16 + g;
    float *P = pattern + (int64_t)bh * T_ * T_;
    const bool pairs = (T_ & 1) == 0; /* float2 stores stay 8-byte aligned */

    float L2[2]; /* lse in base 2 for rows row_g, row_g + 8 */
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int row = row_g + 8 * i;
        L2[i] = row < T_ ? lse[(int64_t)bh * T_ + row] * HS_ATTN_LOG2E : -INFINITY;
    }

    hs_load_tile<D, BQ>(sQ, qb, a.q_st, q0, T_);
    hs_cp_async_commit();
    uint32_t qf[G::KSTEPS][4];
    for (int kt = 0; kt < nkt; kt++) {
        const int k0 = kt * MMA_BK;
        if (kt > 0) __syncthreads(); /* every warp is done with the previous sK */
        hs_load_tile<D, MMA_BK>(sK, kb, a.k_st, k0, T_);
        hs_cp_async_commit();
        hs_load_key_mask(sMask, mask, k0, T_);
        hs_cp_async_wait<0>();
        __syncthreads();
        if (kt == 0) hs_load_q_frags<D>(qf, sQ, warp * 16);

        float s[G::NT_K][4];
#pragma unroll
        for (int n = 0; n < G::NT_K; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
        for (int kd = 0; kd < G::KSTEPS; kd++)
#pragma unroll
            for (int nk = 0; nk < G::NT_K; nk += 2) {
                uint32_t kf[4];
                hs_load_k_frags<D>(kf, sK, nk, kd);
                hs_mma_bf16(s[nk], qf[kd], kf[0], kf[1]);
                hs_mma_bf16(s[nk + 1], qf[kd], kf[2], kf[3]);
            }
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int row = row_g + 8 * i;
            if (row >= T_) continue;
            float *pr = P + (int64_t)row * T_;
#pragma unroll
            for (int nk = 0; nk < G::NT_K; nk++) {
                float p[2];
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int j = nk * 8 + tig * 2 + e, key = k0 + j;
                    const bool vis = key <= row && hs_attn_in_window(a, row, key) && sMask[j] && L2[i] != -INFINITY;
                    p[e] = vis ? exp2f((uni ? 0.0f : hs_attn_score2(a, s[nk][2 * i + e])) - L2[i]) : 0.0f;
                }
                const int col = k0 + nk * 8 + tig * 2;
                if (pairs && col + 1 < T_) {
                    *reinterpret_cast<float2 *>(pr + col) = make_float2(p[0], p[1]);
                } else {
                    if (col < T_) pr[col] = p[0];
                    if (col + 1 < T_) pr[col + 1] = p[1];
                }
            }
        }
    }
    /* keys past the last tile are above the diagonal for every row here */
    const int kz = nkt * MMA_BK;
    if (kz < T_) {
        const int w = T_ - kz;
        const int64_t total = (int64_t)(q_end - q0) * w;
        for (int64_t i = tid; i < total; i += MMA_WARPS * 32) {
            const int r = (int)(i / w), c = (int)(i - (int64_t)r * w);
            P[(int64_t)(q0 + r) * T_ + kz + c] = 0.0f;
        }
    }
}

template <int D>
static hs_status hs_pattern_mma_launch(const hs_cuda_attn_args *a, const float *lse, float *pattern,
                                       cudaStream_t st, hs_err *err) {
    constexpr int BQ = 16 * MMA_WARPS;
    const size_t smem = (size_t)(BQ + MMA_BK) * hs_mma_geom<D>::DP * sizeof(bf16) + MMA_BK * sizeof(int);
    if (smem > 48 * 1024)
        HS_CUDA_CHECK(err, cudaFuncSetAttribute(hs_k_pattern_mma<D>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                (int)smem));
    const dim3 grid((unsigned)((a->T + BQ - 1) / BQ), (unsigned)a->H, (unsigned)a->B);
    hs_k_pattern_mma<D><<<grid, MMA_WARPS * 32, smem, st>>>(*a, lse, pattern);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_pattern_mma");
    return HS_OK;
}

hs_status hs_cuda_attn_pattern_rows(const hs_cuda_attn_args *a, int is_bf16, const int32_t *rows, const float *lse,
                                    float *pattern, cudaStream_t st, hs_err *err) {
    const dim3 grid((unsigned)((int64_t)a->B * a->H));
    const size_t smem = sizeof(float) * (size_t)a->d;
    if (is_bf16)
        hs_k_pattern_row<bf16><<<grid, PAT_THREADS, smem, st>>>(*a, rows, lse, pattern);
    else
        hs_k_pattern_row<float><<<grid, PAT_THREADS, smem, st>>>(*a, rows, lse, pattern);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_pattern_row");
    return HS_OK;
}

hs_status hs_cuda_attn_pattern(const hs_cuda_attn_args *a, int is_bf16, int use_mma, const float *lse,
                               float *pattern, cudaStream_t st, hs_err *err) {
    if (is_bf16 && use_mma) {
        switch (a->d) {
        case 32: return hs_pattern_mma_launch<32>(a, lse, pattern, st, err);
        case 64: return hs_pattern_mma_launch<64>(a, lse, pattern, st, err);
        case 80: return hs_pattern_mma_launch<80>(a, lse, pattern, st, err);
        case 96: return hs_pattern_mma_launch<96>(a, lse, pattern, st, err);
        case 128: return hs_pattern_mma_launch<128>(a, lse, pattern, st, err);
        case 256: return hs_pattern_mma_launch<256>(a, lse, pattern, st, err);
        default: break; /* CUDA cores below */
        }
    }
    const unsigned nt = (unsigned)((a->T + PAT_TILE - 1) / PAT_TILE);
    if ((int64_t)a->B * a->H > 65535 || nt > 65535)
        return hs_err_set(err, HS_ERR_INVALID_ARG, "cuda attention: a full pattern of B=%d x H=%d, T=%d exceeds the grid",
                          a->B, a->H, a->T);
    const dim3 grid(nt, nt, (unsigned)((int64_t)a->B * a->H));
    const size_t smem = sizeof(float) * ((size_t)PAT_TILE * a->d + (size_t)PAT_TILE * (a->d + 1));
    if (smem > 48 * 1024) /* d_head > 188 (Gemma 2's 256) */
        HS_CUDA_CHECK(err, cudaFuncSetAttribute(is_bf16 ? (const void *)hs_k_pattern_simt<bf16>
                                                        : (const void *)hs_k_pattern_simt<float>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    if (is_bf16)
        hs_k_pattern_simt<bf16><<<grid, PAT_THREADS, smem, st>>>(*a, lse, pattern);
    else
        hs_k_pattern_simt<float><<<grid, PAT_THREADS, smem, st>>>(*a, lse, pattern);
    HS_CUDA_LAUNCH_CHECK(err, "hs_k_pattern_simt");
    return HS_OK;
}
