"""Peer for bench_importance: Michel et al.'s head importance the way PyTorch
users compute it, transformers + autograd: a mask variable xi [L, H] on the
input of every o_proj (requires_grad), the summed next-token NLL of each
prompt, one backward per prompt (per-example gradients). PyTorch CPU, the same
GGUF weights, prompts and thread count. With --ours F (bench_importance's raw
f32 [N, L, H]) it also reports the largest difference. Prints key=value."""
import argparse, os, time

import numpy as np
import torch
import torch.nn.functional as F
from peer_util import load_gguf, prompt_ids

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--prompts", type=int, default=8)
ap.add_argument("--seq", type=int, default=32)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--ours")
a = ap.parse_args()
torch.set_num_threads(a.threads)
model = load_gguf(a.model)
for p in model.parameters():
    p.requires_grad_(False)
c = model.config
L, H = c.num_hidden_layers, c.num_attention_heads
dh = c.hidden_size // H
ids = prompt_ids(a.prompts, a.seq, c.vocab_size)  # the same ids bench_importance.c draws


def grads():
    xi = torch.ones(a.prompts, L, H, requires_grad=True)  # one mask per prompt: per-example gradients

    def hook(l):
        def pre(mod, args):
            z = args[0].unflatten(-1, (H, dh))  # [N, T, H, dh]
            return ((z * xi[:, l][:, None, :, None]).flatten(-2),)
        return pre

    hooks = [model.model.layers[l].self_attn.o_proj.register_forward_pre_hook(hook(l)) for l in range(L)]
    lg = model(ids).logits
    nll = F.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum")
    nll.backward()  # prompts are independent: d(sum over prompts)/dxi[p] = d(loss of p)/dxi[p]
    for hd in hooks:
        hd.remove()
    return xi.grad


best = float("inf")
for _ in range(a.reps):
    t0 = time.perf_counter()
    g = grads()
    best = min(best, time.perf_counter() - t0)
imp = g.abs().sum(0).flatten()
top = int(imp.argmax())
line = f"impl=transformers_autograd heads={L * H} prompts={a.prompts} seq={a.seq} seconds={best:.3f} top_head=L{top // H}H{top % H}"
if a.ours:
    ours = torch.from_numpy(np.fromfile(a.ours, dtype=np.float32).reshape(a.prompts, L, H))
    diff = (ours - g).abs().max().item()
    rel = ((ours - g).norm() / g.norm()).item()
    line += f" max_abs_diff={diff:.3g} max_abs_grad={g.abs().max().item():.3g} rel_l2={rel:.3g}"
print(line)
