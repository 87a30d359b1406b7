#!/usr/bin/env bash
# CPU forward throughput, headsweep vs transformers (PyTorch CPU), side by side
# with the same thread count, on SmolLM2-135M (batch 8 x 128 tokens).
# Needs build/ (scripts/setup.sh) and .venv (scripts/setup-python.sh).
# Writes bench/results/cpu-forward.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
THREADS=${THREADS:-$(nproc)}
MODEL=$(scripts/fetch-model.sh)
ours=$(build/bench_cpu_forward "$MODEL" --batch 8 --seq 128 --threads "$THREADS" --iters 5)
peer=$(${PYTHON:-.venv/bin/python} bench/peer_cpu_forward.py "$MODEL" --batch 8 --seq 128 --threads "$THREADS" --iters 5 2>/dev/null | tail -1)
echo "$ours"
echo "$peer"
ratio=$(hs_ratio "$(hs_get "$ours" tokens_per_s)" "$(hs_get "$peer" tokens_per_s)")
rss_ratio=$(hs_ratio "$(hs_get "$ours" peak_rss_mb)" "$(hs_get "$ours" weights_f32_mb)")
cpu=$(hs_cpu_name)
{
    echo "# CPU forward throughput: headsweep vs transformers"
    echo
    echo "Command: \`THREADS=$THREADS bench/run-cpu-forward.sh\` ($(date -u +%Y-%m-%d), $cpu, $THREADS threads)"
    echo
    echo "| impl | batch x seq | median s / forward | tokens/s | peak RSS MB |"
    echo "|---|---|---|---|---|"
    for line in "$ours" "$peer"; do
        echo "| $(hs_get "$line" impl) | 8 x 128 | $(hs_get "$line" median_s) | $(hs_get "$line" tokens_per_s) | $(hs_get "$line" peak_rss_mb) |"
    done
    echo
    echo "Throughput ratio headsweep / transformers: **${ratio}x** (target >= 1.0)."
    echo "headsweep peak RSS / f32 weights ($(hs_get "$ours" weights_f32_mb) MB): **${rss_ratio}x** (target <= 1.5)."
} | tee bench/results/cpu-forward.md
