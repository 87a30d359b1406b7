#!/usr/bin/env bash
# Tokenizer throughput, headsweep vs HF `tokenizers`, single thread each, on
# SmolLM2's tokenizer over a >= 10 MB corpus made from the committed
# conformance corpus (tests/fixtures/tokenizer/corpus.jsonl, seeded shuffle).
# Needs a build folder with bench_tokenize (BUILD, default build/) and .venv
# (scripts/setup-python.sh; PYTHON overrides). Writes bench/results/tokenize.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-.venv/bin/python}
RUNS=${RUNS:-5}
MODEL=${MODEL:-$(scripts/fetch-model.sh)}
DOCS=${DOCS:-/tmp/headsweep-tokenize-bench.jsonl}

cmake --build "$BUILD" --target bench_tokenize >/dev/null
"$PYTHON" bench/peer_tokenize.py make-corpus --out "$DOCS" --mb 10 >/dev/null
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
ours=$("$BUILD"/bench_tokenize --tokenizer "$MODEL" --corpus "$DOCS" --runs "$RUNS")
peers=$("$PYTHON" bench/peer_tokenize.py run --gguf "$MODEL" --corpus "$DOCS" --runs "$RUNS" 2>/dev/null |
        grep '^impl=')
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo "$ours"
echo "$peers"

# Same work: the token counts must agree.
while read -r p; do
    if [ "$(hs_get "$p" tokens)" != "$(hs_get "$ours" tokens)" ]; then
        echo "run-tokenize: token counts differ: headsweep $(hs_get "$ours" tokens), $(hs_get "$p" impl) $(hs_get "$p" tokens)" >&2
        exit 1
    fi
done <<<"$peers"

best=$(while read -r p; do hs_get "$p" mb_per_s; done <<<"$peers" | sort -g | tail -1)
ratio=$(hs_ratio "$(hs_get "$ours" mb_per_s)" "$best")
cpu=$(hs_cpu_name)
{
    echo "# Tokenizer throughput: headsweep vs HF tokenizers (single thread)"
    echo
    echo "Command: \`bench/run-tokenize.sh\` ($(date -u +%Y-%m-%d), $cpu, $(nproc) cores;"
    echo "load average before / after: $load_before / $load_after)."
    echo "Tokenizer: SmolLM2-135M-Instruct from its GGUF ($(basename "$MODEL")); corpus: $(hs_get "$ours" docs) documents,"
    echo "$(hs_get "$ours" bytes) bytes, $(hs_get "$ours" tokens) tokens (equal on both sides); median of $RUNS runs, no BOS/EOS."
    echo "The peer runs with RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false."
    echo
    echo "| impl | median s | MB/s | first run s | load s |"
    echo "|---|---|---|---|---|"
    while read -r line; do
        echo "| $(hs_get "$line" impl) | $(hs_get "$line" median_s) | $(hs_get "$line" mb_per_s) | $(hs_get "$line" first_s) | $(hs_get "$line" load_s) |"
    done <<<"$(printf '%s\n%s\n' "$ours" "$peers")"
    echo
    echo "headsweep pre-token cache hit rate: $(hs_get "$ours" cache_hit_pct)%. Both sides cache pre-token results"
    echo "(headsweep: up to 65,536 pre-tokens of <= 128 bytes; tokenizers: its BPE word cache), and the corpus"
    echo "recombines the 2,231 conformance lines, so both caches are warm after the first documents."
    echo
    echo "Throughput ratio headsweep / fastest tokenizers mode: **${ratio}x** (target >= 1.0)."
} | tee bench/results/tokenize.md
