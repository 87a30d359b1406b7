"""Peer for path patching to receiver heads (Wang et al. 2022), the way
PyTorch users write it (the IOI paper's and ARENA's recipe), transformers +
forward hooks: one clean and one corrupted forward caching every o_proj input
(z); then per sender head, all prompts in one batch, (1) a corrupted forward
with the sender's z from the clean cache and every later layer's z from the
corrupted cache, stopped once the last receiver's q/k/v is captured, and (2) a
corrupted forward with the receivers' q/k/v columns replaced by (1)'s, the
logit difference read at each prompt's last token (lm_head on those rows
only). PyTorch CPU, the same GGUF weights and prompts: the prompts, receivers
and headsweep's cells come from a headsweep result file (run with
`targets: [path_heads]`), whose cells it also checks. Prints key=value."""
import argparse, os, time

import h5py
import numpy as np
import torch
from peer_util import load_gguf

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--result", required=True, help="headsweep's HDF5 result file")
ap.add_argument("--experiment", required=True)
ap.add_argument("--threads", type=int, default=os.cpu_count())
a = ap.parse_args()
torch.set_num_threads(a.threads)
model = load_gguf(a.model)
c = model.config
L, H, Hk = c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads
dh = c.hidden_size // H

f = h5py.File(a.result, "r")
ds, g = f["dataset"], f[a.experiment]
lengths = torch.tensor(ds["lengths"][:]).long()
N = len(lengths)
T = int(lengths.max())
clean = torch.tensor(ds["tokens"][:, :T]).long()
corrupt = torch.tensor(ds["corrupt_tokens"][:, :T]).long()
answer = torch.tensor(ds["answer"][:]).long()
distractor = torch.tensor(ds["distractor"][:]).long()
ours = g["path_heads"][:]
kind = g.attrs["receiver_input"]
kind = kind.decode() if isinstance(kind, bytes) else str(kind)
names = g.attrs["receivers"]
names = names.decode() if isinstance(names, bytes) else str(names)
receivers = [tuple(int(x) for x in r.strip()[1:].split("H")) for r in names.split(",")]
last_rl = max(rl for rl, _ in receivers)
rows = torch.arange(N)
layers = model.model.layers


def proj(l):
    at = layers[l].self_attn
    return {"q": at.q_proj, "k": at.k_proj, "v": at.v_proj}[kind]


class Stop(Exception):
    pass


def logit_diff(ids):
    """Right padding and causal attention: the last real token sees no pads."""
    hs = model.model(input_ids=ids).last_hidden_state[rows, lengths - 1]
    lg = model.lm_head(hs)
    return lg[rows, answer] - lg[rows, distractor]


def run(ids, pre=(), post=(), stop=False):
    hs = [m.register_forward_pre_hook(fn) for m, fn in pre] + [m.register_forward_hook(fn) for m, fn in post]
    try:
        with torch.no_grad():
            return logit_diff(ids)
    except Stop:
        if not stop:
            raise
    finally:
        for h in hs:
            h.remove()


def capture_z(ids):
    z = {}
    run(ids, pre=[(layers[l].self_attn.o_proj, lambda m, args, l=l: z.__setitem__(l, args[0].clone())) for l in range(L)])
    return z


t0 = time.perf_counter()
zc, zx = capture_z(clean), capture_z(corrupt)
theirs = np.full((N, L, H), np.nan, dtype=np.float32)
for l in range(last_rl):
    later = [(rl, rh) for rl, rh in receivers if rl > l]
    rls = sorted({rl for rl, _ in later})
    for h in range(H):
        def sender(m, args, l=l, h=h):
            z = args[0].clone()
            z[..., h * dh:(h + 1) * dh] = zc[l][..., h * dh:(h + 1) * dh]
            return (z,)
        pre = [(layers[l].self_attn.o_proj, sender)]
        pre += [(layers[m].self_attn.o_proj, lambda mod, args, m=m: (zx[m],)) for m in range(l + 1, last_rl + 1)]
        got = {}

        def keep(mod, args, out, rl):
            got[rl] = out.clone()
            if rl == last_rl:
                raise Stop  # nothing after the last receiver's input matters to pass 1
        run(corrupt, pre=pre, post=[(proj(rl), lambda mod, args, out, rl=rl: keep(mod, args, out, rl)) for rl in rls],
            stop=True)

        def patch(mod, args, out, rl):
            y = out.clone()
            for ll, rh in later:
                if ll == rl:
                    y[..., rh * dh:(rh + 1) * dh] = got[rl][..., rh * dh:(rh + 1) * dh]
            return y
        theirs[:, l, h] = run(corrupt, post=[(proj(rl), lambda mod, args, out, rl=rl: patch(mod, args, out, rl))
                                             for rl in rls]).numpy()
seconds = time.perf_counter() - t0

ok = ~np.isnan(ours)
same_nan = bool((np.isnan(ours) == np.isnan(theirs)).all())
d = np.abs(ours[ok] - theirs[ok])
print(f"seconds={seconds:.2f} prompts={N} senders={last_rl * H} receivers={names.replace(' ', '')} input={kind} "
      f"max_abs_diff={d.max():.2e} rel_l2={np.linalg.norm(ours[ok] - theirs[ok]) / np.linalg.norm(theirs[ok]):.2e} "
      f"max_abs_cell={np.abs(theirs[ok]).max():.3f} same_nan={same_nan}")
