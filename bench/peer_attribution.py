"""Peer for bench_attribution: attribution patching the way PyTorch users
write it (Nanda 2023), transformers + autograd: one clean forward keeping each
o_proj input (z), one corrupted forward with z in the graph, the summed logit
difference at each prompt's last token, one backward (input gradients only:
the embedding output requires grad, the weights do not), then
(z_clean - z_corrupt) . dLD/dz per prompt, layer and head. PyTorch CPU, the
same GGUF weights, prompts (bench_attribution --ids) and thread count. With
--ours F (bench_attribution --out) it also reports the agreement. Prints
key=value."""
import argparse, json, os, time

import numpy as np
import torch
from peer_util import load_gguf

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--ids", required=True)
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
rows = [json.loads(line) for line in open(a.ids) if line.strip()]
N, T = len(rows), max(len(r["tokens"]) for r in rows)
lengths = torch.tensor([len(r["tokens"]) for r in rows])
mask = (torch.arange(T)[None] < lengths[:, None]).long()
clean = torch.zeros(N, T, dtype=torch.long)
corrupt = torch.zeros(N, T, dtype=torch.long)
for i, r in enumerate(rows):
    clean[i, : lengths[i]] = torch.tensor(r["tokens"])
    corrupt[i, : lengths[i]] = torch.tensor(r["corrupt"])
answer = torch.tensor([r["answer"] for r in rows])
distractor = torch.tensor([r["distractor"] for r in rows])
last = lengths - 1
o_projs = [model.model.layers[l].self_attn.o_proj for l in range(L)]


def logit_diff(logits):
    lg = logits[torch.arange(N), last]
    return lg[torch.arange(N), answer] - lg[torch.arange(N), distractor]  # [N]


def run(ids, grad):
    z = {}
    hooks = [op.register_forward_pre_hook(lambda mod, args, l=l: z.__setitem__(l, args[0])) for l, op in enumerate(o_projs)]
    if grad:  # puts every activation in the graph without weight gradients
        hooks.append(model.model.embed_tokens.register_forward_hook(lambda mod, args, out: out.requires_grad_(True)))
    with torch.set_grad_enabled(grad):
        ld = logit_diff(model(ids, attention_mask=mask).logits)
    for hd in hooks:
        hd.remove()
    return ld, [z[l] for l in range(L)]


def attribution():
    ld_c, zc = run(clean, False)
    ld_x, zx = run(corrupt, True)
    gz = torch.autograd.grad(ld_x.sum(), zx)  # prompts are independent
    keep = mask[:, :, None, None].float()
    cells = torch.stack([((zc[l] - zx[l].detach()).unflatten(-1, (H, dh)) * gz[l].unflatten(-1, (H, dh)) * keep)
                         .sum((1, 3)) for l in range(L)], 1)  # [N, L, H]
    return ld_c.detach(), ld_x.detach(), cells


best = float("inf")
for _ in range(a.reps):
    t0 = time.perf_counter()
    ld_c, ld_x, cells = attribution()
    best = min(best, time.perf_counter() - t0)
line = f"impl=transformers_autograd heads={L * H} prompts={N} seq={T} seconds={best:.3f}"
if a.ours:
    raw = np.fromfile(a.ours, dtype=np.float32)
    ours = torch.from_numpy(raw[: N * L * H].reshape(N, L, H)).double()
    ours_x = torch.from_numpy(raw[N * L * H:]).double()
    mine = cells.double()
    theirs = ours - ours_x[:, None, None]  # the estimated effects, M(corrupt) taken off
    rel = ((theirs - mine).norm() / mine.norm()).item()
    line += (f" max_abs_diff={(theirs - mine).abs().max().item():.3g} max_abs_effect={mine.abs().max().item():.3g}"
             f" rel_l2={rel:.3g} corrupt_ld_diff={(ours_x - ld_x.double()).abs().max().item():.3g}")
print(line)
