#!/usr/bin/env python3
"""bench_attention_sdpa: PyTorch scaled_dot_product_attention on the shapes of
bench_attention.cu (bf16, causal, B*T = 16384 tokens, H*d_head = 2048), with the
cuDNN backend when available, else flash. Same timing method (CUDA events, 3
warm-ups, median of repeats) and the same CSV columns, so scripts/gpu-check.sh
can put the two side by side.

Usage: bench_attention_sdpa.py [--out FILE(.csv|.md)] [--quick]
"""
import argparse
import statistics
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    try:
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        import torch.nn.functional as F
    except Exception as e:  # no torch: say so and leave no file
        print(f"bench_attention_sdpa: torch unavailable: {e}", file=sys.stderr)
        return 1
    if not torch.cuda.is_available():
        print("bench_attention_sdpa: no CUDA device", file=sys.stderr)
        return 1
    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"cuDNN {torch.backends.cudnn.version()}")

    def run(impl_backend, q, k, v):
        with sdpa_kernel([impl_backend]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def usable(backend, q, k, v):
        try:
            run(backend, q, k, v)
            torch.cuda.synchronize()
            return True
        except Exception:
            return False

    rows = []
    for d in (64, 128, 256):
        for T in (128, 512, 2048, 8192):
            if args.quick and T > 2048:
                continue
            B, H = 16384 // T, 2048 // d
            g = torch.Generator(device=dev).manual_seed(T * 1000 + d)
            # SDPA layout [B, H, T, d]; a transposed view of [B, T, H, d] would
            # be what a caller holding headsweep's layout passes.
            q, k, v = (torch.randn(B, T, H, d, device=dev, dtype=torch.bfloat16, generator=g)
                       .transpose(1, 2) for _ in range(3))
            backend, name = SDPBackend.CUDNN_ATTENTION, "sdpa_cudnn"
            if not usable(backend, q, k, v):
                backend, name = SDPBackend.FLASH_ATTENTION, "sdpa_flash"
                if not usable(backend, q, k, v):
                    print(f"skip d={d} T={T}: no cuDNN or flash SDPA backend", file=sys.stderr)
                    continue
            reps = 10 if T >= 8192 else 20
            for _ in range(3):
                run(backend, q, k, v)
            torch.cuda.synchronize()
            ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(reps)]
            for a, b in ev:
                a.record()
                run(backend, q, k, v)
                b.record()
            torch.cuda.synchronize()
            ms = statistics.median(a.elapsed_time(b) for a, b in ev)
            flops = 2.0 * 2.0 * B * H * T * T * d / 2.0
            tf = flops / ms / 1e9
            rows.append((name, d, T, B, H, ms, tf))
            print(f"{name:<28s} d={d:<3d} T={T:<5d} B={B:<4d} H={H:<3d} {ms:9.3f} ms {tf:8.1f} TFLOP/s",
                  flush=True)
            del q, k, v
            torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            if args.out.endswith(".md"):
                f.write("| impl | d_head | seq | batch | heads | ms | TFLOP/s |\n|---|---|---|---|---|---|---|\n")
                for r in rows:
                    f.write("| %s | %d | %d | %d | %d | %.4f | %.1f |\n" % r)
            else:
                f.write("impl,dtype,d_head,seq,batch,heads,causal,ms,tflops\n")
                for r in rows:
                    f.write("%s,bf16,%d,%d,%d,%d,1,%.5f,%.2f\n" % r)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
