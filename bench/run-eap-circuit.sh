#!/usr/bin/env bash
# Circuit faithfulness on SmolLM2-135M (CPU), IOI prompts, logit difference:
# the circuits of the 100, 1,000 and 10,000 edges of largest |EAP score|,
# evaluated by headsweep (hs_eap_circuit) and the way Hanna et al.'s EAP-IG
# library's evaluate_graph patches on TransformerLens (PyTorch CPU), in one
# command, same weights, prompts, ranking and threads. Writes
# bench/results/cpu-eap-circuit.md. Needs build/ (scripts/setup.sh) and .venv
# (scripts/setup-python.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
THREADS=${THREADS:-$(nproc)} N=${N:-32} REPS=${REPS:-3} SIZES=${SIZES:-100,1000,10000}
OUT=bench/results/cpu-eap-circuit.md
PY=${PYTHON:-.venv/bin/python}
MODEL=$(scripts/fetch-model.sh)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ours=$(/usr/bin/time -f "peak_rss_kb=%M" build/bench_eap_circuit "$MODEL" --prompts "$N" --threads "$THREADS" \
    --reps "$REPS" --sizes "$SIZES" --ids "$tmp/ids.jsonl" --rank "$tmp/rank.raw" --out "$tmp/metric.raw" 2>&1)
peer=$(HF_HUB_OFFLINE=1 $PY bench/peer_eap_circuit.py "$MODEL" --ids "$tmp/ids.jsonl" --rank "$tmp/rank.raw" \
    --sizes "$SIZES" --threads "$THREADS" --reps "$REPS" --ours "$tmp/metric.raw" 2>/dev/null | grep impl=)
echo "$ours"; echo "$peer"
t=$(hs_get "$ours" seconds) t_peer=$(hs_get "$peer" seconds)
rss=$(hs_get "$ours" peak_rss_kb)
K=$(hs_get "$ours" circuits)
{
    echo "# CPU circuit faithfulness: SmolLM2-135M, IOI, circuits of the strongest of $(hs_get "$ours" edges) edges"
    echo
    echo "Command: \`THREADS=$THREADS N=$N REPS=$REPS SIZES=$SIZES bench/run-eap-circuit.sh\` ($(date -u +%Y-%m-%d), $(hs_cpu_name), $THREADS threads)."
    echo "$N IOI prompts (the library's generator, seed 1, $(hs_get "$ours" seq) tokens padded), clean -> corrupt (ABC), metric"
    echo "logit(IO) - logit(S) at the last token, f32. Edges ranked by |EAP score| (headsweep's, handed to the peer); each"
    echo "circuit keeps its n strongest edges and every other edge u -> v adds a_u(corrupt) - a_u(this run) to v's input."
    echo
    echo "| way | seconds | vs headsweep |"
    echo "|---|---|---|"
    echo "| headsweep: a corrupted and a clean forward, then $K circuit forwards, the batch of $N (best of $REPS) | $t | 1.00 |"
    echo "| TransformerLens 4.3, evaluate_graph's patching (split q/k/v inputs; one corrupted forward shared by the circuits; best of $REPS) | $t_peer | $(hs_vs "$t_peer" "$t") |"
    echo
    echo "For scale: a plain headsweep forward of the batch takes $(hs_get "$ours" forward_seconds) s."
    echo "Peak resident memory: headsweep $(awk -v k="$rss" 'BEGIN{printf "%.2f", k/1048576}') GB (the whole benchmark process, EAP ranking included),"
    echo "TransformerLens $(hs_get "$peer" peak_rss_gb) GB."
    echo
    echo "Agreement: largest |diff| over every prompt's metric with every circuit $(hs_get "$peer" max_abs_diff), on metrics up to $(hs_get "$peer" max_abs_metric)."
    echo "Clean logit difference $(hs_get "$ours" clean_ld) (TransformerLens $(hs_get "$peer" clean_ld)), corrupted $(hs_get "$ours" corrupt_ld) ($(hs_get "$peer" corrupt_ld))."
    echo
    echo "| edges kept | headsweep logit diff | TransformerLens | faithfulness |"
    echo "|---|---|---|---|"
    for n in ${SIZES//,/ }; do
        echo "| $n | $(hs_get "$ours" "n${n}_ld") | $(hs_get "$peer" "n${n}_ld") | $(hs_get "$ours" "n${n}_faith") |"
    done
} | tee "$OUT"
