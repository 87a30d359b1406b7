"""Peer for bench_sweep_7b: the single-head zero-ablation sweep the way
TransformerLens-style tools run it, with transformers + a forward pre-hook on
o_proj (one full forward per head, the metric read back per head), on the same
GPU, same model shape (random bf16 weights, SDPA attention), same prompt ids.
A full 1024-head sweep takes minutes, so --sample K heads spread over the
layers are timed and the per-head time is multiplied by L*H (stated in the
output as extrapolated). Prints key=value lines.

  python bench/peer_sweep_7b.py [--device cuda] [--layers 32] [--heads 32] [--d-model 4096]
      [--d-mlp 11008] [--vocab 32000] [--prompts 64] [--seq 128] [--sample 64] [--metric loss|logprob]
"""
import argparse, time

import torch
import torch.nn.functional as F
from peer_util import prompt_ids
from transformers import LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--device", default="cuda")
ap.add_argument("--layers", type=int, default=32)
ap.add_argument("--heads", type=int, default=32)
ap.add_argument("--d-model", type=int, default=4096)
ap.add_argument("--d-mlp", type=int, default=11008)
ap.add_argument("--vocab", type=int, default=32000)
ap.add_argument("--prompts", type=int, default=64)
ap.add_argument("--seq", type=int, default=128)
ap.add_argument("--sample", type=int, default=64)
ap.add_argument("--metric", default="loss", choices=["loss", "logprob"])
a = ap.parse_args()
dev = torch.device(a.device)
dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.d_model, intermediate_size=a.d_mlp,
                  num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.heads,
                  max_position_embeddings=a.seq, rms_norm_eps=1e-5, tie_word_embeddings=False)
cfg._attn_implementation = "sdpa"
t0 = time.perf_counter()
with torch.device(dev):
    model = LlamaForCausalLM(cfg).to(dtype).eval()
init_s = time.perf_counter() - t0
L, H, dh = a.layers, a.heads, a.d_model // a.heads
ids = prompt_ids(a.prompts, a.seq, a.vocab, dev)  # the same ids bench_sweep_7b.c draws
answer = ids[:, 1]
state = {"layer": -1, "head": -1}


def make_hook(layer):
    def hook(mod, args):
        if state["layer"] != layer:
            return None
        z = args[0].clone()
        z[..., state["head"] * dh:(state["head"] + 1) * dh] = 0
        return (z,)
    return hook


for l, blk in enumerate(model.model.layers):
    blk.self_attn.o_proj.register_forward_pre_hook(make_hook(l))


@torch.no_grad()
def metric():
    # no KV cache (nothing reuses it); the last position's logits only where only they are read
    lg = model(ids, use_cache=False, logits_to_keep=0 if a.metric == "loss" else 1).logits.float()
    if a.metric == "loss":
        nll = F.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
        return nll.view(a.prompts, -1).mean(-1).cpu()  # read back per head, as hook-based tools do
    return lg[:, -1].log_softmax(-1).gather(1, answer[:, None])[:, 0].cpu()


base = metric()  # also warms up kernels
heads = [(k * L * H // a.sample) for k in range(a.sample)]
if dev.type == "cuda":
    torch.cuda.synchronize()
t0 = time.perf_counter()
s = 0.0
for k in heads:
    state["layer"], state["head"] = k // H, k % H
    s += float((metric() - base).mean())
if dev.type == "cuda":
    torch.cuda.synchronize()
per_head = (time.perf_counter() - t0) / len(heads)
print(f"impl=transformers+hooks device={a.device} dtype={str(dtype).split('.')[-1]} layers={L} heads={H} "
      f"prompts={a.prompts} seq={a.seq} metric={a.metric} init_s={init_s:.1f}")
print(f"sampled_heads={len(heads)} seconds_per_head={per_head:.4f} "
      f"extrapolated_sweep_s={per_head * L * H:.1f} mean_delta_sampled={s / len(heads):.4g}")
