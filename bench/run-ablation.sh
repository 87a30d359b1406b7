#!/usr/bin/env bash
# Full single-head zero-ablation sweep on SmolLM2-135M (CPU), three ways in one
# command: naive one-forward-per-head, headsweep (prefix reuse + batched
# variants), transformers + hooks on PyTorch CPU. Writes bench/results/cpu-ablation.md
# (METRIC=logprob: bench/results/cpu-ablation-logprob.md).
# Needs build/ (scripts/setup.sh) and .venv (scripts/setup-python.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
THREADS=${THREADS:-$(nproc)} N=${N:-8} SEQ=${SEQ:-32} METRIC=${METRIC:-loss}
OUT=bench/results/cpu-ablation.md
[ "$METRIC" = loss ] || OUT=bench/results/cpu-ablation-$METRIC.md
PY=${PYTHON:-.venv/bin/python}
MODEL=$(scripts/fetch-model.sh)
ours=$(build/bench_ablation "$MODEL" --prompts "$N" --seq "$SEQ" --threads "$THREADS" --metric "$METRIC")
peer=$($PY bench/peer_ablation.py "$MODEL" --prompts "$N" --seq "$SEQ" --threads "$THREADS" --metric "$METRIC" 2>/dev/null)
echo "$ours"; echo "$peer"
naive=$(hs_get "$(echo "$ours" | grep impl=naive)" seconds)
fast=$(hs_get "$(echo "$ours" | grep impl=headsweep)" seconds)
torch=$(hs_get "$(echo "$peer" | grep impl=)" seconds)
cpu=$(hs_cpu_name)
{
    echo "# CPU single-head ablation sweep: SmolLM2-135M, 270 heads"
    echo
    echo "Command: \`THREADS=$THREADS N=$N SEQ=$SEQ METRIC=$METRIC bench/run-ablation.sh\` ($(date -u +%Y-%m-%d), $cpu, $THREADS threads)."
    if [ "$METRIC" = loss ]; then
        echo "Zero ablation of z, loss metric (every position's next token: the full unembedding per variant), $N prompts x $SEQ token ids (splitmix64, identical on both sides), f32."
    else
        echo "Zero ablation of z, log-prob of a fixed token after the last position (one unembedded row per prompt), $N prompts x $SEQ token ids (splitmix64, identical on both sides), f32."
    fi
    echo
    echo "| way | seconds | vs headsweep |"
    echo "|---|---|---|"
    echo "| naive: one forward per head from layer 0 | $naive | $(hs_vs "$naive" "$fast") |"
    echo "| headsweep: prefix reuse + batched variants | $fast | 1.00 |"
    echo "| transformers + o_proj pre-hook (PyTorch CPU) | $torch | $(hs_vs "$torch" "$fast") |"
    echo
    echo "Naive vs headsweep results: $(echo "$ours" | grep speedup= | sed 's/speedup=[^ ]* //')."
    echo "Top head (mean $METRIC change): headsweep $(hs_get "$(echo "$ours" | grep top_head | tail -1)" top_head), transformers $(hs_get "$(echo "$peer" | grep top_head)" top_head)."
    echo "Targets: >= 2x naive, >= 1x PyTorch."
} | tee "$OUT"
