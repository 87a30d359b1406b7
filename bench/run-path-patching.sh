#!/usr/bin/env bash
# Path patching to receiver heads on SmolLM2-135M (CPU), IOI prompts: every
# head of the layers before the last receiver as sender, the receivers' k
# (KV head 1 of layers 23 and 24, docs/reproductions.md), logit difference.
# headsweep (`headsweep run`, targets: [path_heads]) and the same cells in
# transformers + hooks (bench/peer_path_patching.py, PyTorch CPU), in one
# command, same weights, prompts and threads; the peer checks headsweep's
# cells. Writes bench/results/cpu-path-patching.md. Needs build/
# (scripts/setup.sh) and .venv (scripts/setup-python.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
THREADS=${THREADS:-$(nproc)} N=${N:-8}
OUT=bench/results/cpu-path-patching.md
PY=${PYTHON:-.venv/bin/python}
MODEL=$(scripts/fetch-model.sh)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/paths.yaml" <<EOF
model: $MODEL
threads: $THREADS
batch_size: 36
output: $tmp/paths.h5
dataset: {generator: ioi, n: $N}
experiments:
  - {name: to_k, type: activation_patching, metric: logit_diff, targets: [path_heads],
     receivers: [L23H1, L24H1], receiver_input: k}
EOF
t0=$(date +%s.%N)
build/headsweep run "$tmp/paths.yaml" 2>"$tmp/run.log"
t1=$(date +%s.%N)
ours=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
peer=$($PY bench/peer_path_patching.py "$MODEL" --result "$tmp/paths.h5" --experiment to_k --threads "$THREADS" 2>/dev/null)
echo "headsweep_seconds=$ours"; echo "$peer"
torch=$(hs_get "$peer" seconds)
cpu=$(hs_cpu_name)
{
    echo "# CPU path patching to receiver heads: SmolLM2-135M, IOI"
    echo
    echo "Command: \`THREADS=$THREADS N=$N bench/run-path-patching.sh\` ($(date -u +%Y-%m-%d), $cpu, $THREADS threads)."
    echo "$N IOI prompts (the library's generator, seed 0), clean -> corrupt. Senders: every head of layers 0-23"
    echo "($(hs_get "$peer" senders) heads); receivers: the $(hs_get "$peer" input) of $(hs_get "$peer" receivers) (KV heads); metric"
    echo "logit(IO) - logit(S) at the last token, f32. Each sender's cell needs two passes: the sender's clean z with"
    echo "every later head held at its corrupted z (up to the last receiver), then the receivers' input patched in."
    echo
    echo "| way | seconds | |"
    echo "|---|---|---|"
    echo "| headsweep: \`headsweep run\` (model load included), batched senders, both passes from cached residuals | $ours | 1.00 |"
    echo "| transformers + forward hooks, all prompts of a sender in one batch, pass 1 stopped after the last receiver (PyTorch CPU) | $torch | $(hs_vs "$torch" "$ours") |"
    echo
    echo "Agreement (every non-NaN cell): largest |diff| $(hs_get "$peer" max_abs_diff) on cells up to $(hs_get "$peer" max_abs_cell),"
    echo "||diff|| / ||PyTorch|| = $(hs_get "$peer" rel_l2); NaN in the same cells (senders with no receiver after them):"
    echo "$(hs_get "$peer" same_nan). Each side dequantises the Q4_1 GGUF itself."
} | tee "$OUT"
