"""Peer for bench_dla: direct logit attribution the way PyTorch users compute it
(TransformerLens's stack_head_results, apply_ln_to_stack, residual_stack_to_logit_diff),
with transformers hooks: each layer's o_proj input and the final norm's input, each head's
result z_h W_O[:, h]^T materialised at the last token, divided by the final RMSNorm's scale
frozen at the forward's value, dotted with w * (W_U[answer] - W_U[distractor]). PyTorch CPU,
the same GGUF weights, prompts and thread count. With --ours F (bench_dla's raw f32 [N, L, H])
it also reports the largest difference. Prints key=value."""
import argparse, os, time

import numpy as np
import torch
from peer_util import load_gguf, prompt_ids

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--prompts", type=int, default=32)
ap.add_argument("--seq", type=int, default=64)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--ours")
a = ap.parse_args()
torch.set_num_threads(a.threads)
model = load_gguf(a.model)
c = model.config
L, H, N, T = c.num_hidden_layers, c.num_attention_heads, a.prompts, a.seq
dh, d = c.hidden_size // H, c.hidden_size
flat = prompt_ids(1, N * T + 2 * N, c.vocab_size)[0]  # the ids bench_dla.c draws
ids, answer, distractor = flat[:N * T].view(N, T), flat[N * T::2], flat[N * T + 1::2]
norm = model.model.norm
U = model.get_output_embeddings().weight


@torch.no_grad()
def dla():
    z, fin = {}, {}
    hooks = [model.model.layers[l].self_attn.o_proj.register_forward_pre_hook(
        lambda mod, args, l=l: z.__setitem__(l, args[0][:, -1])) for l in range(L)]
    hooks.append(norm.register_forward_pre_hook(lambda mod, args: fin.__setitem__(0, args[0][:, -1])))
    logits = model(ids).logits[:, -1]
    for hd in hooks:
        hd.remove()
    x = fin[0]
    scale = (x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon).sqrt()  # frozen, as apply_ln_to_stack
    g = norm.weight * (U[answer] - U[distractor]) / scale  # [N, d]
    out = torch.empty(N, L, H)
    for l in range(L):
        W = model.model.layers[l].self_attn.o_proj.weight.view(d, H, dh)
        result = torch.einsum("nhk,dhk->nhd", z[l].view(N, H, dh), W)  # stack_head_results at the last token
        out[:, l] = torch.einsum("nhd,nd->nh", result, g)
    return out, logits.gather(1, answer[:, None])[:, 0] - logits.gather(1, distractor[:, None])[:, 0]


best = float("inf")
for _ in range(a.reps):
    t0 = time.perf_counter()
    heads, ld = dla()
    best = min(best, time.perf_counter() - t0)
top = int(heads.sum(0).flatten().argmax())
line = (f"impl=transformers_hooks heads={L * H} prompts={N} seq={T} seconds={best:.3f} top_head=L{top // H}H{top % H} "
        f"mean_logit_diff={ld.mean().item():.4f}")
if a.ours:
    ours = torch.from_numpy(np.fromfile(a.ours, dtype=np.float32).reshape(N, L, H))
    line += f" max_abs_diff={(ours - heads).abs().max().item():.3g} max_abs_dla={heads.abs().max().item():.3g}"
print(line)
