"""Peer for bench_eap_circuit: circuit evaluation the way Hanna et al.'s EAP-IG
library's evaluate_graph patches, on TransformerLens 4.3 (TransformerBridge
over the transformers model, split q/k/v inputs, per-head results,
hook_mlp_in): a corrupted forward whose hooks add every upstream node's output
to the activation differences [batch, pos, upstream, d_model], then per
circuit a clean forward whose upstream hooks subtract this run's outputs and
whose downstream input hooks add the differences of the edges the circuit
cuts (one einsum per hook). The library reruns the corrupted forward for each
circuit; this peer runs it once per timing and copies its differences, and
adds one clean forward for the clean metric, as bench_eap_circuit does.

The prompts are right-padded into one batch without an attention mask: under
the causal mask no real position reads a pad and the metric reads each
prompt's last real token. PyTorch CPU, the same GGUF weights, prompts
(bench_eap_circuit --ids), ranking (--rank) and thread count. With --ours F
(bench_eap_circuit --out) it reports the agreement. Prints key=value."""
import argparse, os, resource, time

import numpy as np
import torch
from peer_util import edge_graph, load_edge_bridge, logit_diff, read_pairs

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--ids", required=True)
ap.add_argument("--rank", required=True)
ap.add_argument("--sizes", default="100,1000,10000")
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--ours")
a = ap.parse_args()
torch.set_num_threads(a.threads)

hf, bridge = load_edge_bridge(a.model)
c = hf.config
L, H, Hk = c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads
U, P, V, up_hooks, up_slice = edge_graph(c)

clean, corrupt, lengths, answer, distractor = read_pairs(a.ids)
N, T = clean.shape
last = lengths - 1
rank = torch.from_numpy(np.fromfile(a.rank, dtype=np.float32).reshape(U, V))
sizes = [int(s) for s in a.sizes.split(",")]
# the edges each circuit cuts: an edge (rank not NaN) of rank >= n
cuts = [((~rank.isnan()) & ~(rank < n)).float() for n in sizes]


def ld(logits):
    return logit_diff(logits, last, answer, distractor)


def add_up(diff, sign):
    def fn(t, hook, name):
        x = t if t.dim() == 4 else t[:, :, None]
        diff[:, :, up_slice(name)] += sign * x
        return t
    return [(n, lambda t, hook, n=n: fn(t, hook, n)) for n in up_hooks]


def down_hooks(diff, cut):
    def fn(t, hook, name):
        l = int(name.split(".")[1])
        if name.endswith("resid_post"):
            v0, n_up, heads = V - 1, U, 1
        elif name.endswith("mlp_in"):
            v0, n_up, heads = l * P + P - 1, 1 + l * (H + 1) + H, 1
        else:
            j0 = {"q": 0, "k": H, "v": H + Hk}[name.split("_")[-2][-1]]
            v0, n_up, heads = l * P + j0, 1 + l * (H + 1), t.shape[2]
        add = torch.einsum("btud,uv->btvd", diff[:, :, :n_up], cut[:n_up, v0: v0 + heads])
        return t + (add if t.dim() == 4 else add[:, :, 0])
    names = [f"blocks.{l}.hook_{x}_input" for l in range(L) for x in "qkv"] + \
            [f"blocks.{l}.hook_mlp_in" for l in range(L)] + [f"blocks.{L - 1}.hook_resid_post"]
    return [(n, lambda t, hook, n=n: fn(t, hook, n)) for n in names]


@torch.no_grad()
def evaluate():
    d0 = torch.zeros(N, T, U, c.hidden_size)
    with bridge.hooks(fwd_hooks=add_up(d0, 1.0)):
        m_x = ld(bridge(corrupt))
    m_c = ld(bridge(clean))
    out = []
    for cut in cuts:
        diff = d0.clone()
        with bridge.hooks(fwd_hooks=add_up(diff, -1.0) + down_hooks(diff, cut)):
            out.append(ld(bridge(clean)))
    return torch.stack(out, 1), m_c, m_x


best, res = float("inf"), None
for _ in range(a.reps):
    t0 = time.perf_counter()
    res = evaluate()
    best = min(best, time.perf_counter() - t0)
m, m_c, m_x = res
print(f"impl=transformer_lens seconds={best:.3f} clean_ld={m_c.mean():.4f} corrupt_ld={m_x.mean():.4f} "
      f"peak_rss_gb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f}", end="")
for k, n in enumerate(sizes):
    print(f" n{n}_ld={m[:, k].mean():.4f}", end="")
if a.ours:
    ours = torch.from_numpy(np.fromfile(a.ours, dtype=np.float32).reshape(N, len(sizes)))
    print(f" max_abs_diff={(ours - m).abs().max():.2e} max_abs_metric={m.abs().max():.4f}", end="")
print()
