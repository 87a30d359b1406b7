#!/usr/bin/env bash
# Attribution patching vs activation patching on SmolLM2-135M (CPU), IOI
# prompts, every head's z at all positions, logit difference: headsweep's exact
# sweep and its attribution estimate (how well the estimate ranks the heads),
# and the same estimate in transformers + autograd (PyTorch CPU); then both
# with AtP*'s GradDrop; in one command, same weights, prompts and threads. Writes
# bench/results/cpu-attribution.md. Needs build/ (scripts/setup.sh) and .venv
# (scripts/setup-python.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
THREADS=${THREADS:-$(nproc)} N=${N:-32} REPS=${REPS:-3}
OUT=bench/results/cpu-attribution.md
PY=${PYTHON:-.venv/bin/python}
MODEL=$(scripts/fetch-model.sh)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ours=$(build/bench_attribution "$MODEL" --prompts "$N" --threads "$THREADS" --reps "$REPS" --ids "$tmp/ids.jsonl" --out "$tmp/atp.raw" --out-gd "$tmp/gd.raw")
peer=$($PY bench/peer_attribution.py "$MODEL" --ids "$tmp/ids.jsonl" --threads "$THREADS" --reps "$REPS" --ours "$tmp/atp.raw" --ours-gd "$tmp/gd.raw" 2>/dev/null)
echo "$ours"; echo "$peer"
exact=$(hs_get "$ours" exact_seconds)
atp=$(hs_get "$ours" attribution_seconds)
torch=$(hs_get "$peer" seconds)
gd=$(hs_get "$ours" graddrop_seconds)
torch_gd=$(hs_get "$peer" graddrop_seconds)
cpu=$(hs_cpu_name)
{
    echo "# CPU attribution patching vs activation patching: SmolLM2-135M, IOI, 270 heads"
    echo
    echo "Command: \`THREADS=$THREADS N=$N REPS=$REPS bench/run-attribution.sh\` ($(date -u +%Y-%m-%d), $cpu, $THREADS threads)."
    echo "$N IOI prompts (the library's generator, seed 1, $(hs_get "$ours" seq) tokens padded), clean -> corrupt (ABC) patching of"
    echo "every head's z at all positions, metric logit(IO) - logit(S) at the last token, f32."
    echo "Clean logit difference $(hs_get "$ours" clean_ld), corrupted $(hs_get "$ours" corrupt_ld) (means over prompts)."
    echo
    echo "| way | seconds | vs headsweep attribution |"
    echo "|---|---|---|"
    echo "| headsweep exact: one patched forward per (prompt, head), prefix reuse, 4 prompts x 9 heads per forward (one run) | $exact | $(hs_vs "$exact" "$atp") |"
    echo "| headsweep attribution: 2 forwards + 1 backward per batch of $N prompts (best of $REPS) | $atp | 1.00 |"
    echo "| transformers + autograd attribution, the same estimate (PyTorch CPU, best of $REPS) | $torch | $(hs_vs "$torch" "$atp") |"
    echo "| headsweep attribution with AtP*'s GradDrop: the plain walk + L(L-1)/2 layer backwards (best of $REPS) | $gd | $(hs_vs "$gd" "$atp") |"
    echo "| transformers + autograd GradDrop: one gated forward graph, one backward per layer (PyTorch CPU, best of $REPS) | $torch_gd | $(hs_vs "$torch_gd" "$atp") |"
    echo
    echo "How well the estimate ranks heads (normalised [layer, head] maps, exact vs headsweep attribution):"
    echo "Pearson r = $(hs_get "$ours" pearson), Spearman rho = $(hs_get "$ours" spearman), top-10 overlap $(hs_get "$ours" top10_overlap)/10;"
    echo "top head exact $(hs_get "$ours" top_exact), attribution $(hs_get "$ours" top_attribution) (head:normalised effect)."
    echo
    echo "- top 10 exact: $(hs_get "$ours" top10_exact)"
    echo "- top 10 attribution: $(hs_get "$ours" top10_attribution)"
    echo
    echo "headsweep attribution vs autograd attribution: ||diff|| / ||autograd|| = $(hs_get "$peer" rel_l2) over the estimated"
    echo "effects (largest |diff| $(hs_get "$peer" max_abs_diff) on effects up to $(hs_get "$peer" max_abs_effect); each side dequantises the Q4_1 GGUF itself)."
    echo "GradDrop, the same comparison: ||diff|| / ||autograd|| = $(hs_get "$peer" gd_rel_l2) (largest |diff| $(hs_get "$peer" gd_max_abs_diff)"
    echo "on magnitudes up to $(hs_get "$peer" gd_max_abs_effect)); headsweep's GradDrop vs PyTorch's: $(hs_vs "$gd" "$torch_gd")."
} | tee "$OUT"
