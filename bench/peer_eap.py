"""Peer for bench_eap: edge attribution patching the way Hanna et al.'s EAP-IG
library computes it, on TransformerLens 4.3 (TransformerBridge over the
transformers model, split q/k/v inputs, per-head results, hook_mlp_in): a
corrupted forward whose hooks keep every upstream node's output, a clean
forward whose hooks subtract the clean outputs (the activation differences,
[batch, pos, upstream, d_model]), then the metric's backward, whose hooks
score each downstream input's gradient against the differences of every
upstream node (one einsum per hook). EAP-IG: the backward repeated on m
inputs interpolated between the corrupted and the clean embedding, as the
library's get_scores_eap_ig does but ending at the clean input (k = 1..m).

The prompts are right-padded into one batch without an attention mask: under
the causal mask no real position reads a pad, the metric reads each prompt's
last real token, and the gradient at a pad is zero. PyTorch CPU, the same
GGUF weights, prompts (bench_eap --ids) and thread count. With --ours F
(bench_eap --out) and --ours-ig F it reports the agreement. Prints key=value."""
import argparse, os, resource, time

import numpy as np
import torch
from peer_util import edge_graph, load_edge_bridge, logit_diff, read_pairs

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--ids", required=True)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--ig-steps", type=int, default=5)
ap.add_argument("--ours")
ap.add_argument("--ours-ig")
a = ap.parse_args()
torch.set_num_threads(a.threads)

hf, bridge = load_edge_bridge(a.model)
for p in bridge.parameters():
    p.requires_grad_(False)
c = hf.config
L, H, Hk = c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads
U, P, V, up_hooks, up_slice = edge_graph(c)

clean, corrupt, lengths, answer, distractor = read_pairs(a.ids)
N, T = clean.shape
last = lengths - 1


def ld(logits):
    return logit_diff(logits, last, answer, distractor)


def scores(steps):
    diff = torch.zeros(N, T, U, c.hidden_size)

    def keep(sign):
        def fn(t, hook, name):
            x = t.detach() if t.dim() == 4 else t.detach()[:, :, None]
            diff[:, :, up_slice(name)] += sign * x
        return fn

    fwd = lambda sign: [(n, lambda t, hook, n=n: keep(sign)(t, hook, n)) for n in up_hooks]
    s = torch.zeros(U, V, dtype=torch.float64)

    def grad_fn(g, hook, name):
        l = int(name.split(".")[1])
        if name.endswith("resid_post"):
            cols, n_up, g = [V - 1], U, g[:, :, None]
        elif name.endswith("mlp_in"):
            cols, n_up, g = [l * P + P - 1], 1 + l * (H + 1) + H, g[:, :, None]
        else:
            j0 = {"q": 0, "k": H, "v": H + Hk}[name.split("_")[-2][-1]]
            cols = list(range(l * P + j0, l * P + j0 + g.shape[2]))
            n_up = 1 + l * (H + 1)
        s[:n_up, cols] += torch.einsum("btud,btvd->uv", diff[:, :, :n_up], g).double()

    down = [f"blocks.{l}.hook_{x}_input" for l in range(L) for x in "qkv"] + \
           [f"blocks.{l}.hook_mlp_in" for l in range(L)] + [f"blocks.{L - 1}.hook_resid_post"]
    bwd = [(n, lambda g, hook, n=n: grad_fn(g, hook, n)) for n in down]
    with torch.no_grad():
        with bridge.hooks(fwd_hooks=fwd(1.0)):
            bridge(corrupt)
        e_x = diff[:, :, 0].clone()
        with bridge.hooks(fwd_hooks=fwd(-1.0)):
            bridge(clean)
        e_c = e_x - diff[:, :, 0]
    for k in range(1, steps + 1):
        # the graph starts at the input (the weights need no gradient); at k = m the clean input itself
        mix = e_x + k / steps * (e_c - e_x) if k < steps else None
        hooks = [(up_hooks[0], lambda t, hook, mix=mix: (t.detach() if mix is None else mix).clone().requires_grad_(True))]
        with bridge.hooks(fwd_hooks=hooks, bwd_hooks=bwd):
            ld(bridge(clean)).sum().backward()
    return (s / (N * steps)).float().numpy()


def timed(steps):
    best, out = float("inf"), None
    for _ in range(a.reps):
        t0 = time.perf_counter()
        out = scores(steps)
        best = min(best, time.perf_counter() - t0)
    return best, out


t_eap, eap = timed(1)
t_ig, ig = timed(a.ig_steps)
print(f"impl=transformer_lens seconds={t_eap:.3f} ig_seconds={t_ig:.3f} "
      f"peak_rss_gb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f}", end="")
for key, path, ref in (("", a.ours, eap), ("ig_", a.ours_ig, ig)):
    if not path:
        continue
    ours = np.fromfile(path, dtype=np.float32).reshape(U, V)
    m = (ours != 0) | (ref != 0)  # the edges (both sides leave the rest 0)
    d = np.abs(ours[m] - ref[m])
    print(f" {key}rel_l2={np.linalg.norm(ours[m] - ref[m]) / np.linalg.norm(ref[m]):.2e} "
          f"{key}max_abs_diff={d.max():.2e} {key}max_abs_score={np.abs(ref[m]).max():.4f}", end="")
print()
