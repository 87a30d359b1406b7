#!/usr/bin/env bash
# The 1024-head single-head ablation sweep on a Llama-2-7B-shaped model
# (random bf16 weights), 64 prompts x 128 tokens, on one GPU, two ways in one
# command: headsweep (bench_sweep_7b: prefix reuse + batched variants) and
# transformers + o_proj hooks (bench/peer_sweep_7b.py, sampled heads,
# extrapolated). Writes a markdown table to stdout and to $OUT_MD if set.
# Needs ~40 GB host RAM (the f32 random model) and one 80 GB GPU; a GPU
# machine call of its own (about 5-8 minutes).
#   BIN=build-gpu bench/run-sweep-7b.sh [extra bench_sweep_7b options]
# A CPU smoke run of the whole script at a toy shape (both programs get SHAPE):
#   DEVICE=cpu SHAPE="--layers 2 --heads 4 --d-model 64 --d-mlp 128 --vocab 256 --prompts 4 --seq 16 --rows 4" \
#     SAMPLE=4 PYTHON=.venv/bin/python bench/run-sweep-7b.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
BIN=${BIN:-build}
PY=${PYTHON:-python3}
METRIC=${METRIC:-loss}
SAMPLE=${SAMPLE:-64}
DEVICE=${DEVICE:-}
SHAPE=${SHAPE:-}
peer_shape=$(echo "$SHAPE" | sed 's/--rows [0-9]*//') # the peer runs one forward per head: no batching option
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# shellcheck disable=SC2086 # SHAPE is a list of options
ours_rc=0
# BIN_LD: the library path for $BIN's binaries alone (a prebuilt bundle's), not for the Python peer
ours=$(LD_LIBRARY_PATH=${BIN_LD:-${LD_LIBRARY_PATH:-}} "$BIN/bench_sweep_7b" ${DEVICE:+--device "$DEVICE"} $SHAPE \
    --metric "$METRIC" "$@" 2>"$log") || ours_rc=$?
ours_note=""
if [ $ours_rc -ne 0 ]; then
    cat "$log" >&2
    # it prints the sweep's figures before attribution patching: keep them if they came
    case "$ours" in *sweep_s=*) ;; *) echo "run-sweep-7b: bench_sweep_7b failed" >&2; exit 1 ;; esac
    ours_note="bench_sweep_7b failed after the sweep (exit $ours_rc): $(tail -1 "$log")"
fi
echo "$ours" >&2 # now, and in $OUT_MD below: a peer that runs out of time must not take these along
sweep=$(hs_get "$ours" sweep_s)
floor=$(hs_get "$ours" floor_s)
tfl=$(hs_get "$ours" achieved_tflops)
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
args="$*"
# table PEER_SECONDS PEER_NOTE
table() {
    if [ -z "$SHAPE" ]; then
        echo "## 1024-head ablation sweep, Llama-2-7B shape (bf16, 64 x 128 tokens, metric $METRIC)"
    else
        echo "## Ablation sweep smoke run at a toy shape ($SHAPE, metric $METRIC): timings mean nothing"
    fi
    echo
    echo "Command: \`BIN=$BIN METRIC=$METRIC SAMPLE=$SAMPLE${DEVICE:+ DEVICE=$DEVICE}${SHAPE:+ SHAPE=\"$SHAPE\"} bench/run-sweep-7b.sh $args\` ($(date -u +%Y-%m-%d), ${gpu:-unknown GPU})."
    echo
    echo "| way | seconds | note |"
    echo "|---|---|---|"
    echo "| floor: the sweep's FLOPs at 800 TFLOP/s | $floor | every variant from its layer to the logits |"
    echo "| headsweep (prefix reuse, heads of a layer batched) | $sweep | $tfl TFLOP/s achieved; $(hs_ratio "$sweep" "$floor")x the floor (target <= 2) |"
    echo "| transformers + o_proj hooks, one forward per head | $1 | $2 |"
    echo
    if [ -n "$ours_note" ]; then
        echo "**$ours_note**"
    else
        echo "Attribution patching of every head's z over the same prompts (one backward per batch): $(hs_get "$ours" attribution_s) s,"
        echo "$(hs_get "$ours" attribution_ratio)x REFERENCES.md's anchor of three forwards at 800 TFLOP/s ($(hs_get "$ours" attribution_anchor_s) s)."
    fi
}
[ -n "${OUT_MD:-}" ] && table "—" "not finished (the peer was still running)" >"$OUT_MD"
# shellcheck disable=SC2086
peer=$($PY bench/peer_sweep_7b.py ${DEVICE:+--device "${DEVICE%%:*}"} $peer_shape --metric "$METRIC" \
    --sample "$SAMPLE" 2>"$log") || {
    cat "$log" >&2
    [ -n "${OUT_MD:-}" ] && table "—" "peer_sweep_7b.py failed" >"$OUT_MD"
    echo "run-sweep-7b: peer_sweep_7b.py failed" >&2
    exit 1
}
echo "$peer" >&2
torch=$(hs_get "$peer" extrapolated_sweep_s)
md=$(table "$torch" "extrapolated from $SAMPLE sampled heads; headsweep $(hs_ratio "$torch" "$sweep")x faster (target >= 5; at equal TFLOP/s prefix reuse alone gives $(hs_get "$ours" work_ratio)x)")
echo "$md"
[ -n "${OUT_MD:-}" ] && echo "$md" >"$OUT_MD"
[ $ours_rc -eq 0 ]
