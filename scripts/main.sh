#!/usr/bin/env bash
# The main job on the default model (SmolLM2-135M-Instruct, Q4_1 GGUF): set up
# and build, then find SmolLM2's induction heads: the Olsson repeated-random-
# token score and the TransformerLens detectors for all 270 heads, and the
# loss increase when each head is mean-ablated, and the top-10 induction heads
# ablated together against random heads, and from the weights the heads whose
# output an induction head (L17H4) reads with its keys (K-composition)
# (configs/smollm2-induction.yaml); then the IOI circuit as edges: edge
# attribution patching (EAP, EAP-IG) over all 70,651 edges of the graph on 32 IOI
# prompts, and how faithful circuits of their strongest edges are
# (configs/smollm2-ioi-edges.yaml).
# Results: results/smollm2-induction.h5 (+ SVG heatmaps beside it),
# results/smollm2-ioi-edges.h5 (+ the graph of its 30 strongest edges, results/eap_ig_edges.svg,
# and the faithfulness curve, results/eap_ig_faithfulness.svg).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
MODEL=$(scripts/fetch-model.sh)
build/headsweep info "$MODEL"
mkdir -p results
OUT=results/smollm2-induction.h5
build/headsweep run configs/smollm2-induction.yaml --set "model=$MODEL" --set "output=$OUT" --overwrite
build/headsweep top "$OUT" --experiment induction_scores --dataset olsson_induction -k 10
build/headsweep top "$OUT" --experiment mean_ablation -k 10
build/headsweep top "$OUT" --experiment top10_vs_random
build/headsweep top "$OUT" --experiment circuits --dataset k_composition --reader L17H4 -k 5
build/headsweep plot "$OUT" --experiment induction_scores --dataset olsson_induction -o results/olsson_induction.svg
build/headsweep plot "$OUT" --experiment mean_ablation -o results/mean_ablation.svg
build/headsweep plot "$OUT" --experiment circuits --dataset k_composition --reader L17H4 -o results/k_composition_L17H4.svg
EDGES=results/smollm2-ioi-edges.h5
build/headsweep run configs/smollm2-ioi-edges.yaml --set "model=$MODEL" --set "output=$EDGES" --overwrite
build/headsweep top "$EDGES" --experiment eap_ig -k 10
build/headsweep top "$EDGES" --experiment eap_ig --node L17H4 -k 5
build/headsweep plot "$EDGES" --experiment eap_ig -k 30 -o results/eap_ig_edges.svg
build/headsweep top "$EDGES" --experiment faith_eap
build/headsweep top "$EDGES" --experiment faith_eap_ig
build/headsweep plot "$EDGES" --experiment faith_eap_ig -o results/eap_ig_faithfulness.svg
