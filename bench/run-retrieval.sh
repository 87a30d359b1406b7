#!/usr/bin/env bash
# Retrieval scores (Wu et al.) on SmolLM2-135M (CPU): greedy decoding of N
# needle prompts of SEQ token ids, G tokens each, every head's attention argmax
# per step, three ways in one command: headsweep from its KV cache, headsweep
# rerunning the whole context per step, transformers' generate (KV cache,
# eager attention for output_attentions) on PyTorch CPU. Writes
# bench/results/cpu-retrieval.md.
# Needs build/ (scripts/setup.sh) and .venv (scripts/setup-python.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
THREADS=${THREADS:-$(nproc)} N=${N:-8} SEQ=${SEQ:-512} G=${G:-32}
OUT=bench/results/cpu-retrieval.md
PY=${PYTHON:-.venv/bin/python}
MODEL=$(scripts/fetch-model.sh)
ours=$(build/bench_retrieval "$MODEL" --prompts "$N" --seq "$SEQ" --generate "$G" --threads "$THREADS")
peer=$($PY bench/peer_retrieval.py "$MODEL" --prompts "$N" --seq "$SEQ" --generate "$G" --threads "$THREADS" 2>/dev/null)
echo "$ours"; echo "$peer"
cache=$(hs_get "$(echo "$ours" | grep impl=headsweep-cache)" seconds)
rerun=$(hs_get "$(echo "$ours" | grep impl=headsweep-rerun)" seconds)
torch=$(hs_get "$(echo "$peer" | grep impl=)" seconds)
cpu=$(hs_cpu_name)
line() { echo "| $1 | $2 | $([ "$2" = "$cache" ] && echo 1.00 || hs_vs "$2" "$cache") | $(hs_get "$3" score_sum) | $(hs_get "$3" copying) | $(hs_get "$3" first_tokens) |"; }
{
    echo "# CPU retrieval scores: SmolLM2-135M, greedy decoding with every head's attention argmax"
    echo
    echo "Command: \`THREADS=$THREADS N=$N SEQ=$SEQ G=$G bench/run-retrieval.sh\` ($(date -u +%Y-%m-%d), $cpu, $THREADS threads)."
    echo "$N prompts x $SEQ token ids (splitmix64, identical on both sides) with a 16-token needle at $((SEQ / 4)) whose first"
    echo "half ends the prompt, $G greedy tokens each, f32; the score counts the needle positions each head copies."
    echo
    echo "| way | seconds | vs headsweep (cache) | score sum | (prompt, head) pairs copying | row 0's first tokens |"
    echo "|---|---|---|---|---|---|"
    line "headsweep: KV cache" "$cache" "$(echo "$ours" | grep impl=headsweep-cache)"
    line "headsweep: whole context per step" "$rerun" "$(echo "$ours" | grep impl=headsweep-rerun)"
    line "transformers generate, eager attention (PyTorch CPU)" "$torch" "$peer"
    echo
    echo "headsweep's two ways: $(echo "$ours" | grep speedup=). The score sums, copying pairs and tokens are"
    echo "both sides' own: equal values mean the same greedy answers and the same argmax heads."
    echo "Target: >= 1x PyTorch."
} | tee "$OUT"
