#!/usr/bin/env bash
# Michel gradient head importance on SmolLM2-135M (CPU), headsweep vs
# transformers + autograd (PyTorch CPU) in one command, same weights, prompts
# and threads; the peer also checks headsweep's gradients against autograd's.
# Writes bench/results/cpu-importance.md. Needs build/ (scripts/setup.sh) and
# .venv (scripts/setup-python.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
THREADS=${THREADS:-$(nproc)} N=${N:-8} SEQ=${SEQ:-64} REPS=${REPS:-3}
OUT=bench/results/cpu-importance.md
PY=${PYTHON:-.venv/bin/python}
MODEL=$(scripts/fetch-model.sh)
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
ours=$(build/bench_importance "$MODEL" --prompts "$N" --seq "$SEQ" --threads "$THREADS" --reps "$REPS" --out "$raw")
peer=$($PY bench/peer_importance.py "$MODEL" --prompts "$N" --seq "$SEQ" --threads "$THREADS" --reps "$REPS" --ours "$raw" 2>/dev/null)
echo "$ours"; echo "$peer"
fast=$(hs_get "$ours" seconds)
torch=$(hs_get "$peer" seconds)
cpu=$(hs_cpu_name)
{
    echo "# CPU gradient head importance (Michel et al.): SmolLM2-135M, 270 heads"
    echo
    echo "Command: \`THREADS=$THREADS N=$N SEQ=$SEQ REPS=$REPS bench/run-importance.sh\` ($(date -u +%Y-%m-%d), $cpu, $THREADS threads)."
    echo "dL/dxi for every head and prompt (L = each prompt's summed next-token NLL, xi a mask on each head's"
    echo "output), $N prompts x $SEQ token ids (splitmix64, identical on both sides), f32, best of $REPS."
    echo
    echo "| way | seconds | vs headsweep |"
    echo "|---|---|---|"
    echo "| headsweep: one forward keeping the activations, one backward | $fast | 1.00 |"
    echo "| transformers + autograd, xi on every o_proj input (PyTorch CPU) | $torch | $(hs_vs "$torch" "$fast") |"
    echo
    echo "Agreement: largest |headsweep - autograd| = $(hs_get "$peer" max_abs_diff) on gradients up to $(hs_get "$peer" max_abs_grad),"
    echo "||headsweep - autograd|| / ||autograd|| = $(hs_get "$peer" rel_l2) (f32 both; the weights are the GGUF's Q4_1 dequantised by each side);"
    echo "most important head (sum over prompts of |grad|): headsweep $(hs_get "$ours" top_head), autograd $(hs_get "$peer" top_head)."
} | tee "$OUT"
