"""Peer for bench_circuit: TransformerLens 4.3 itself (TransformerBridge over transformers'
model, enable_compatibility_mode: from_pretrained's weight processing) computing
all_composition_scores("Q" | "K" | "V") and the copying score of its demo,
(W_E @ OV @ W_U).eigenvalues -> sum(Re) / sum(|.|), one layer at a time (the demo's all-layers
form adds two [L, H, V, d_head] factors, 7 GB on SmolLM2, beside all_composition_scores' own
peak of 24 GB, which is already all the 2-core machine has).
PyTorch CPU, the same GGUF weights and thread count; the processing is left out of the timing
(headsweep's includes its QR factors).
With --ours F (bench_circuit's raw f32) it also reports the largest differences. Prints
key=value."""
import argparse, os, time

import numpy as np
import torch
from peer_util import load_gguf_bridge

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--ours")
a = ap.parse_args()
torch.set_num_threads(a.threads)

hf, bridge = load_gguf_bridge(a.model)
bridge.enable_compatibility_mode()
L, H = hf.config.num_hidden_layers, hf.config.num_attention_heads


@torch.no_grad()
def scores():
    comp = [torch.as_tensor(getattr(s, "scores", s)) for s in (bridge.all_composition_scores(m) for m in "QKV")]
    t = time.perf_counter()
    OV = bridge.OV
    ev = torch.stack([(bridge.W_E @ OV[l] @ bridge.W_U).eigenvalues for l in range(L)])  # the demo, per layer
    copying = ev.sum(-1).real / ev.abs().sum(-1)
    return comp, copying, time.perf_counter() - t


best, best_copying = float("inf"), float("inf")
for _ in range(a.reps):
    t0 = time.perf_counter()
    comp, copying, tc = scores()
    best = min(best, time.perf_counter() - t0)
    best_copying = min(best_copying, tc)
k = comp[1].reshape(-1)
i = int(k.argmax())
words = [f"impl=transformer_lens heads={L * H} seconds={best:.3f} copying_seconds={best_copying:.3f}",
         f"top_k_composition=L{i // (H * L * H)}H{i // (L * H) % H}->L{i // H % L}H{i % H} top_k_score={k[i].item():.5f}"]
if a.ours:
    n4 = L * H * L * H
    ours = np.fromfile(a.ours, dtype=np.float32)
    diff = [np.abs(ours[j * n4:(j + 1) * n4] - comp[j].float().numpy().reshape(-1)).max() for j in range(3)]
    words.append("max_abs_diff_composition=%.2g" % max(diff))
    words.append("max_abs_diff_copying=%.2g" % np.abs(ours[3 * n4:] - copying.float().numpy().reshape(-1)).max())
print(" ".join(words))
