/* hs_bench_ids: the prompt token ids the CPU/CUDA benchmarks draw,
 * tok[i] = splitmix64(i) % vocab, and the PyTorch peers draw too
 * (bench/peer_util.py prompt_ids), so both sides run the same tokens. */
#ifndef HS_BENCH_IDS_H
#define HS_BENCH_IDS_H

#include <stdint.h>

static inline void hs_bench_prompt_ids(int32_t *tok, int64_t n, int vocab) {
    for (int64_t i = 0; i < n; i++) {
        uint64_t z = (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        tok[i] = (int32_t)((z ^ (z >> 31)) % (uint64_t)vocab);
    }
}

#endif
