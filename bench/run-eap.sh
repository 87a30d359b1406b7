#!/usr/bin/env bash
# Edge attribution patching on SmolLM2-135M (CPU), IOI prompts, logit
# difference, every edge of the graph: headsweep's EAP and EAP-IG against the
# same computed the way Hanna et al.'s EAP-IG library computes EAP on
# TransformerLens (PyTorch CPU), in one command, same weights, prompts and
# threads. Writes bench/results/cpu-eap.md. Needs build/ (scripts/setup.sh)
# and .venv (scripts/setup-python.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
THREADS=${THREADS:-$(nproc)} N=${N:-32} REPS=${REPS:-3} STEPS=${STEPS:-5}
OUT=bench/results/cpu-eap.md
PY=${PYTHON:-.venv/bin/python}
MODEL=$(scripts/fetch-model.sh)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ours=$(/usr/bin/time -f "peak_rss_kb=%M" build/bench_eap "$MODEL" --prompts "$N" --threads "$THREADS" --reps "$REPS" \
    --ig-steps "$STEPS" --ids "$tmp/ids.jsonl" --out "$tmp/eap.raw" --out-ig "$tmp/ig.raw" 2>&1)
peer=$(HF_HUB_OFFLINE=1 $PY bench/peer_eap.py "$MODEL" --ids "$tmp/ids.jsonl" --threads "$THREADS" --reps "$REPS" \
    --ig-steps "$STEPS" --ours "$tmp/eap.raw" --ours-ig "$tmp/ig.raw" 2>/dev/null | grep impl=)
echo "$ours"; echo "$peer"
eap=$(hs_get "$ours" eap_seconds) ig=$(hs_get "$ours" ig_seconds)
t_eap=$(hs_get "$peer" seconds) t_ig=$(hs_get "$peer" ig_seconds)
rss=$(hs_get "$ours" peak_rss_kb)
cpu=$(hs_cpu_name)
{
    echo "# CPU edge attribution patching: SmolLM2-135M, IOI, $(hs_get "$ours" edges) edges"
    echo
    echo "Command: \`THREADS=$THREADS N=$N REPS=$REPS STEPS=$STEPS bench/run-eap.sh\` ($(date -u +%Y-%m-%d), $cpu, $THREADS threads)."
    echo "$N IOI prompts (the library's generator, seed 1, $(hs_get "$ours" seq) tokens padded), clean -> corrupt (ABC), metric"
    echo "logit(IO) - logit(S) at the last token, f32; every edge from the input, the 270 heads' results and the 30 MLPs to"
    echo "every head's q input, every KV head's k and v input, every MLP's input and the logits."
    echo "Clean logit difference $(hs_get "$ours" clean_ld), corrupted $(hs_get "$ours" corrupt_ld) (means over prompts)."
    echo
    echo "| way | seconds | vs headsweep |"
    echo "|---|---|---|"
    echo "| headsweep EAP: 2 forwards + 1 backward for the batch of $N prompts (best of $REPS) | $eap | 1.00 |"
    echo "| TransformerLens 4.3, Hanna et al.'s EAP (split q/k/v inputs, scores in the backward hooks; best of $REPS) | $t_eap | $(hs_vs "$t_eap" "$eap") |"
    echo "| headsweep EAP-IG, $STEPS steps: 2 forwards + $STEPS forward/backward pairs (best of $REPS) | $ig | 1.00 |"
    echo "| TransformerLens 4.3, EAP-IG, $STEPS steps (best of $REPS) | $t_ig | $(hs_vs "$t_ig" "$ig") |"
    echo
    echo "Peak resident memory: headsweep $(awk -v k="$rss" 'BEGIN{printf "%.2f", k/1048576}') GB (the whole benchmark process),"
    echo "TransformerLens $(hs_get "$peer" peak_rss_gb) GB (the peer's process, model and bridge included)."
    echo
    echo "Agreement with TransformerLens over the edges (each side dequantises the Q4_1 GGUF itself):"
    echo "EAP ||diff|| / ||TL|| = $(hs_get "$peer" rel_l2), largest |diff| $(hs_get "$peer" max_abs_diff) on scores up to $(hs_get "$peer" max_abs_score);"
    echo "EAP-IG ||diff|| / ||TL|| = $(hs_get "$peer" ig_rel_l2), largest |diff| $(hs_get "$peer" ig_max_abs_diff) on scores up to $(hs_get "$peer" ig_max_abs_score)."
    echo
    echo "- strongest edges, EAP: $(hs_get "$ours" top_eap)"
    echo "- strongest edges, EAP-IG: $(hs_get "$ours" top_ig)"
} | tee "$OUT"
