"""What the PyTorch peers of the benchmarks share: the prompt ids the C
benchmarks draw (splitmix64(i) % vocab, so both sides run the same tokens) and
loading the GGUF checkpoint with transformers."""
import os

import torch

M64 = (1 << 64) - 1


def splitmix(i):
    z = ((i + 1) * 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def prompt_ids(prompts, seq, vocab, device="cpu"):
    """[prompts, seq] token ids, identical to the C benchmarks' (bench_*.c)."""
    return torch.tensor([splitmix(i) % vocab for i in range(prompts * seq)], device=device).view(prompts, seq)


def load_gguf(path, **kw):
    """transformers' float32 model from a GGUF file (dequantised), in eval mode;
    kw goes to from_pretrained (attn_implementation="eager" for attentions)."""
    from transformers import AutoModelForCausalLM

    d, f = os.path.split(path)
    return AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, **kw).eval()


def load_gguf_bridge(path):
    """(the transformers model, TransformerLens 4.3's TransformerBridge over it) from a GGUF file,
    the bridge not yet in compatibility mode; it reads the config from a folder, so one is made."""
    import tempfile

    from transformers import AutoTokenizer
    from transformer_lens.model_bridge import TransformerBridge

    hf = load_gguf(path)
    d, f = os.path.split(path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    with tempfile.TemporaryDirectory() as tmp:
        hf.config.save_pretrained(tmp)
        bridge = TransformerBridge.boot_transformers(tmp, hf_model=hf, tokenizer=tok, device="cpu")
    return hf, bridge


def read_pairs(path):
    """The IOI pairs a C benchmark wrote (hs_dataset_write_jsonl): clean and corrupt token ids right-padded
    with 0 to [N, T], the lengths, the answer and distractor ids."""
    import json

    rows = [json.loads(line) for line in open(path) if line.strip()]
    N, T = len(rows), max(len(r["tokens"]) for r in rows)
    lengths = torch.tensor([len(r["tokens"]) for r in rows])
    clean = torch.zeros(N, T, dtype=torch.long)
    corrupt = torch.zeros(N, T, dtype=torch.long)
    for i, r in enumerate(rows):
        clean[i, : lengths[i]] = torch.tensor(r["tokens"])
        corrupt[i, : lengths[i]] = torch.tensor(r["corrupt"])
    answer = torch.tensor([r["answer"] for r in rows])
    distractor = torch.tensor([r["distractor"] for r in rows])
    return clean, corrupt, lengths, answer, distractor


def load_edge_bridge(path):
    """(the transformers model, the bridge) set up as Hanna et al.'s library runs TransformerLens for its
    edge graph: no weight processing, split q/k/v inputs, per-head results, hook_mlp_in."""
    hf, bridge = load_gguf_bridge(path)
    bridge.enable_compatibility_mode(no_processing=True)
    bridge.set_use_split_qkv_input(True)
    bridge.set_use_attn_result(True)
    bridge.set_use_hook_mlp_in(True)
    return hf, bridge


def edge_graph(cfg):
    """The edge graph of a model config (hs_eap.h): (U, P, V), the upstream hooks (the input, each
    layer's per-head results, its MLP output) and up_slice(hook name) -> the upstream nodes it fills."""
    L, H, Hk = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads
    U, P = 1 + L * (H + 1), H + 2 * Hk + 1
    inp = "blocks.0.hook_resid_pre"
    hooks = [inp] + [f"blocks.{l}.{h}" for l in range(L) for h in ("attn.hook_result", "hook_mlp_out")]

    def up_slice(name):
        if name == inp:
            return slice(0, 1)
        base = 1 + int(name.split(".")[1]) * (H + 1)
        return slice(base, base + H) if "result" in name else slice(base + H, base + H + 1)

    return U, P, L * P + 1, hooks, up_slice


def logit_diff(logits, last, answer, distractor):
    """logit(answer) - logit(distractor) at each row's last real token."""
    rows = torch.arange(logits.shape[0])
    lg = logits[rows, last]
    return lg[rows, answer] - lg[rows, distractor]
