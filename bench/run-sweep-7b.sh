#!/usr/bin/env bash
# The 1024-head single-head ablation sweep on a Llama-2-7B-shaped model
# (random bf16 weights), 64 prompts x 128 tokens, on one GPU, two ways in one
# command: headsweep (bench_sweep_7b: prefix reuse + batched variants) and
# transformers + o_proj hooks (bench/peer_sweep_7b.py, sampled heads,
# extrapolated). Writes a markdown table to stdout and to $OUT_MD if set.
# Needs ~40 GB host RAM (the f32 random model) and one 80 GB GPU; a GPU
# machine call of its own (about 5-8 minutes).
#   BIN=build-gpu bench/run-sweep-7b.sh [extra bench_sweep_7b options]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build}
PY=${PYTHON:-python3}
METRIC=${METRIC:-loss}
SAMPLE=${SAMPLE:-64}
ours=$("$BIN/bench_sweep_7b" --metric "$METRIC" "$@")
peer=$($PY bench/peer_sweep_7b.py --metric "$METRIC" --sample "$SAMPLE" 2>/dev/null)
echo "$ours" >&2
echo "$peer" >&2
get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
sweep=$(get "$ours" sweep_s)
floor=$(get "$ours" floor_s)
tfl=$(get "$ours" achieved_tflops)
torch=$(get "$peer" extrapolated_sweep_s)
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
md=$(
    echo "## 1024-head ablation sweep, Llama-2-7B shape (bf16, 64 x 128 tokens, metric $METRIC)"
    echo
    echo "Command: \`BIN=$BIN METRIC=$METRIC SAMPLE=$SAMPLE bench/run-sweep-7b.sh $*\` ($(date -u +%Y-%m-%d), ${gpu:-unknown GPU})."
    echo
    echo "| way | seconds | note |"
    echo "|---|---|---|"
    echo "| floor: the sweep's FLOPs at 800 TFLOP/s | $floor | every variant from its layer to the logits |"
    echo "| headsweep (prefix reuse, heads of a layer batched) | $sweep | $tfl TFLOP/s achieved; $(python3 -c "print(f'{$sweep/$floor:.2f}')")x the floor (target <= 2) |"
    echo "| transformers + o_proj hooks, one forward per head | $torch | extrapolated from $SAMPLE sampled heads; headsweep $(python3 -c "print(f'{$torch/$sweep:.1f}')")x faster (target >= 5) |"
)
echo "$md"
[ -n "${OUT_MD:-}" ] && echo "$md" >"$OUT_MD"
exit 0
