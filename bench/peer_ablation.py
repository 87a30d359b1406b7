"""Peer for bench_ablation: the same single-head zero-ablation sweep with
transformers + a forward pre-hook on o_proj (how TransformerLens-style tools do
it: one full forward per head), PyTorch CPU, same GGUF weights, same prompts
shape, same thread count. Prints key=value lines."""
import argparse, os, time

import torch
import torch.nn.functional as F
from peer_util import load_gguf, prompt_ids

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--prompts", type=int, default=8)
ap.add_argument("--seq", type=int, default=32)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--metric", default="loss", choices=["loss", "logprob"])
a = ap.parse_args()
torch.set_num_threads(a.threads)
model = load_gguf(a.model)
c = model.config
L, H = c.num_hidden_layers, c.num_attention_heads
dh = c.hidden_size // H
ids = prompt_ids(a.prompts, a.seq, c.vocab_size)  # the same ids bench_ablation.c draws


def loss_per_prompt():
    if a.metric == "logprob":  # log p(ids[:, 1]) after the last token: the fixed answer bench_ablation.c uses
        lg = model(ids, logits_to_keep=1).logits[:, -1]
        return lg.log_softmax(-1).gather(1, ids[:, 1:2])[:, 0]
    lg = model(ids).logits
    nll = F.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
    return nll.view(a.prompts, -1).mean(-1)


with torch.inference_mode():
    t0 = time.perf_counter()
    base = loss_per_prompt()
    delta = torch.zeros(a.prompts, L, H)
    for l in range(L):
        proj = model.model.layers[l].self_attn.o_proj
        for h in range(H):
            def pre(mod, args, h=h):
                z = args[0].clone()
                z[..., h * dh:(h + 1) * dh] = 0
                return (z,)
            hd = proj.register_forward_pre_hook(pre)
            delta[:, l, h] = loss_per_prompt() - base
            hd.remove()
    sec = time.perf_counter() - t0
mean = delta.mean(0).flatten() * (1 if a.metric == "loss" else -1)
k = int(mean.argmax())
print(f"impl=transformers-{torch.__version__} heads={L * H} prompts={a.prompts} seq={a.seq} metric={a.metric} seconds={sec:.3f}")
print(f"top_head=L{k // H}H{k % H} mean_delta_{a.metric}={mean[k].item() * (1 if a.metric == 'loss' else -1):.4f}")
