"""Peer for bench_retrieval: the same retrieval scores with transformers'
greedy generate (KV cache, eager attention for output_attentions), PyTorch CPU,
same GGUF weights, same prompts (needle at [T/4, T/4 + 16), its first half
again at the end), same thread count. Prints key=value lines."""
import argparse, os, time

import torch
from peer_util import load_gguf, prompt_ids

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--prompts", type=int, default=8)
ap.add_argument("--seq", type=int, default=512)
ap.add_argument("--generate", type=int, default=32)
ap.add_argument("--threads", type=int, default=os.cpu_count())
a = ap.parse_args()
torch.set_num_threads(a.threads)
model = load_gguf(a.model, attn_implementation="eager")
c = model.config
L, H, N, T, G, NL = c.num_hidden_layers, c.num_attention_heads, a.prompts, a.seq, a.generate, 16
ids = prompt_ids(N, T, c.vocab_size)  # the ids bench_retrieval.c draws
ns = T // 4
ids[:, T - NL // 2:] = ids[:, ns:ns + NL // 2]

with torch.inference_mode():
    t0 = time.perf_counter()
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=G, min_new_tokens=G,
                         do_sample=False, output_attentions=True, return_dict_in_generate=True,
                         pad_token_id=0, eos_token_id=None)
    seqs = out.sequences
    copied = torch.zeros(N, L, H, NL, dtype=torch.bool)
    for step, att in enumerate(out.attentions):  # per step: per layer [N, H, q, keys]
        w = seqs[:, T + step]
        for l, a_l in enumerate(att):
            j = a_l[:, :, -1, :].argmax(-1)  # [N, H], the first maximum
            hit = (j >= ns) & (j < ns + NL) & (seqs.gather(1, j) == w[:, None])
            for n, h in hit.nonzero().tolist():
                copied[n, l, h, j[n, h] - ns] = True
    sec = time.perf_counter() - t0
score = copied.sum(-1).float() / NL
g = seqs[:, T:]
print(f"impl=transformers-{torch.__version__} prompts={N} seq={T} generate={G} seconds={sec:.3f} "
      f"score_sum={score.sum().item():.6f} copying={int((score > 0).sum())} "
      f"first_tokens={g[0, 0].item()},{g[0, 1].item()},{g[0, 2].item()}")
