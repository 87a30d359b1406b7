#!/usr/bin/env bash
# Direct logit attribution on SmolLM2-135M (CPU), headsweep vs transformers + hooks in the
# TransformerLens way (PyTorch CPU) in one command, same weights, prompts and threads; the
# peer also compares the heads' direct effects. Writes bench/results/cpu-dla.md. Needs build/
# (scripts/setup.sh) and .venv (scripts/setup-python.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
THREADS=${THREADS:-$(nproc)} N=${N:-32} SEQ=${SEQ:-64} REPS=${REPS:-3}
OUT=bench/results/cpu-dla.md
PY=${PYTHON:-.venv/bin/python}
MODEL=$(scripts/fetch-model.sh)
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
ours=$(build/bench_dla "$MODEL" --prompts "$N" --seq "$SEQ" --threads "$THREADS" --reps "$REPS" --out "$raw")
peer=$($PY bench/peer_dla.py "$MODEL" --prompts "$N" --seq "$SEQ" --threads "$THREADS" --reps "$REPS" --ours "$raw" 2>/dev/null)
echo "$ours"; echo "$peer"
fast=$(hs_get "$ours" seconds)
torch=$(hs_get "$peer" seconds)
cpu=$(hs_cpu_name)
{
    echo "# CPU direct logit attribution: SmolLM2-135M, 270 heads"
    echo
    echo "Command: \`THREADS=$THREADS N=$N SEQ=$SEQ REPS=$REPS bench/run-dla.sh\` ($(date -u +%Y-%m-%d), $cpu, $THREADS threads)."
    echo "Each head's direct effect on logit(answer) - logit(distractor) after the last token, through the final"
    echo "norm with its scale frozen; $N prompts x $SEQ token ids, answers and distractors (splitmix64, identical on"
    echo "both sides), f32, one batch, the forward included, best of $REPS."
    echo
    echo "| way | seconds | vs headsweep |"
    echo "|---|---|---|"
    echo "| headsweep: one forward, the last token's rows projected on the host | $fast | 1.00 |"
    echo "| transformers + hooks, TransformerLens's stack_head_results / apply_ln_to_stack at the last token (PyTorch CPU) | $torch | $(hs_vs "$torch" "$fast") |"
    echo
    echo "Agreement: largest |headsweep - PyTorch| = $(hs_get "$peer" max_abs_diff) on direct effects up to $(hs_get "$peer" max_abs_dla)"
    echo "(f32 both; the weights are the GGUF's Q4_1 dequantised by each side); mean logit difference headsweep"
    echo "$(hs_get "$ours" mean_logit_diff), PyTorch $(hs_get "$peer" mean_logit_diff); headsweep's parts add up to its"
    echo "logit difference within $(hs_get "$ours" parts_vs_metric); largest summed direct effect: headsweep $(hs_get "$ours" top_head), PyTorch $(hs_get "$peer" top_head)."
} | tee "$OUT"
