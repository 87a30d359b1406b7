"""Peer for bench_attribution: attribution patching the way PyTorch users
write it (Nanda 2023), transformers + autograd: one clean forward keeping each
o_proj input (z), one corrupted forward with z in the graph, the summed logit
difference at each prompt's last token, one backward (input gradients only:
the embedding output requires grad, the weights do not), then
(z_clean - z_corrupt) . dLD/dz per prompt, layer and head. PyTorch CPU, the
same GGUF weights, prompts (bench_attribution --ids) and thread count. With
--ours F (bench_attribution --out) it also reports the agreement.

GradDrop (AtP*), the efficient way in PyTorch: one corrupted forward in which
each decoder layer's output passes a gate (an autograd Function, the identity
forward) that, when its layer is the one dropped, sends the incoming gradient
to the layer's input directly and none into the layer; then one backward per
layer on that graph (retain_graph) and sum over layers of |estimate| / (L - 1).
--ours-gd F (bench_attribution --out-gd) reports that agreement too. Prints
key=value."""
import argparse, os, time

import numpy as np
import torch
from peer_util import load_gguf, read_pairs

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--ids", required=True)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--ours")
ap.add_argument("--ours-gd")
a = ap.parse_args()
torch.set_num_threads(a.threads)
model = load_gguf(a.model)
for p in model.parameters():
    p.requires_grad_(False)
c = model.config
L, H = c.num_hidden_layers, c.num_attention_heads
dh = c.hidden_size // H
clean, corrupt, lengths, answer, distractor = read_pairs(a.ids)
N, T = clean.shape
mask = (torch.arange(T)[None] < lengths[:, None]).long()
last = lengths - 1
o_projs = [model.model.layers[l].self_attn.o_proj for l in range(L)]
drop = {"layer": None}  # GradDrop: the layer whose addition to the stream passes no gradient


class Gate(torch.autograd.Function):
    """out, unchanged; backward: the gradient into out, or, for the dropped
    layer, straight to the layer's input x and none into the layer."""
    @staticmethod
    def forward(ctx, x, out, layer):
        ctx.layer = layer
        return out.view_as(out)

    @staticmethod
    def backward(ctx, g):
        return (g, None, None) if drop["layer"] == ctx.layer else (None, g, None)


def gate_hook(layer):
    def post(mod, args, kwargs, out):
        x = args[0] if args else kwargs["hidden_states"]
        y = Gate.apply(x, out[0] if isinstance(out, tuple) else out, layer)
        return (y,) + tuple(out[1:]) if isinstance(out, tuple) else y
    return post


def logit_diff(logits):
    lg = logits[torch.arange(N), last]
    return lg[torch.arange(N), answer] - lg[torch.arange(N), distractor]  # [N]


def run(ids, grad, gates=False):
    z = {}
    hooks = [op.register_forward_pre_hook(lambda mod, args, l=l: z.__setitem__(l, args[0])) for l, op in enumerate(o_projs)]
    if grad:  # puts every activation in the graph without weight gradients
        hooks.append(model.model.embed_tokens.register_forward_hook(lambda mod, args, out: out.requires_grad_(True)))
    if gates:
        hooks += [layer.register_forward_hook(gate_hook(l), with_kwargs=True)
                  for l, layer in enumerate(model.model.layers)]
    with torch.set_grad_enabled(grad):
        ld = logit_diff(model(ids, attention_mask=mask).logits)
    for hd in hooks:
        hd.remove()
    return ld, [z[l] for l in range(L)]


keep = mask[:, :, None, None].float()


def head_cells(zc, zx, gz):
    """(z_clean - z_corrupt) . dLD/dz per prompt, layer and head [N, L, H]; a z
    the gradient does not reach (gz[l] None) gives 0."""
    return torch.stack([torch.zeros(N, H) if gz[l] is None else
                        ((zc[l] - zx[l].detach()).unflatten(-1, (H, dh)) * gz[l].unflatten(-1, (H, dh)) * keep)
                        .sum((1, 3)) for l in range(L)], 1)


def attribution():
    ld_c, zc = run(clean, False)
    ld_x, zx = run(corrupt, True)
    gz = torch.autograd.grad(ld_x.sum(), zx)  # prompts are independent
    return ld_c.detach(), ld_x.detach(), head_cells(zc, zx, gz)


def grad_drop():
    ld_c, zc = run(clean, False)
    ld_x, zx = run(corrupt, True, gates=True)
    total = torch.zeros(N, L, H)
    for layer in range(L):
        drop["layer"] = layer
        gz = torch.autograd.grad(ld_x.sum(), zx, retain_graph=True, allow_unused=True)
        total += head_cells(zc, zx, gz).abs()
    drop["layer"] = None
    return ld_x.detach(), total / (L - 1)


def best_of(fn):
    best, res = float("inf"), None
    for _ in range(a.reps):
        t0 = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t0)
    return best, res


def agreement(path, mine, ld_x, key):
    """bench_attribution's cells [N, L, H] then corrupted metric [N] (raw f32) vs ours."""
    raw = np.fromfile(path, dtype=np.float32)
    ours = torch.from_numpy(raw[: N * L * H].reshape(N, L, H)).double()
    ours_x = torch.from_numpy(raw[N * L * H:]).double()
    mine = mine.double()
    theirs = ours - ours_x[:, None, None]  # the estimated effects, M(corrupt) taken off
    rel = ((theirs - mine).norm() / mine.norm()).item()
    return (f" {key}max_abs_diff={(theirs - mine).abs().max().item():.3g} "
            f"{key}max_abs_effect={mine.abs().max().item():.3g} {key}rel_l2={rel:.3g} "
            f"{key}corrupt_ld_diff={(ours_x - ld_x.double()).abs().max().item():.3g}")


t_atp, (ld_c, ld_x, cells) = best_of(attribution)
t_gd, (ld_x_gd, gd_cells) = best_of(grad_drop)
line = f"impl=transformers_autograd heads={L * H} prompts={N} seq={T} seconds={t_atp:.3f} graddrop_seconds={t_gd:.3f}"
if a.ours:
    line += agreement(a.ours, cells, ld_x, "")
if a.ours_gd:
    line += agreement(a.ours_gd, gd_cells, ld_x_gd, "gd_")
print(line)
