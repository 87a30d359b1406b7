#!/usr/bin/env bash
# Sets up, builds and runs every test: the Criterion suite (CUDA compiled in
# when nvcc is present; GPU tests skip without a device), the same suite under
# ASan+UBSan, the slurm/ scripts on a single-node Slurm cluster started on
# localhost, and bounded libFuzzer runs of the file-format parsers.
#   HS_FUZZ_SECONDS   seconds per fuzz target (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
export HS_CMAKE_ARGS="-DHS_WERROR=ON ${HS_CMAKE_ARGS:-}"
scripts/setup.sh
JOBS=$(nproc)

# A small venv that lets the tests open result files the way users do
# (h5py, xarray); pinned like scripts/setup-python.sh.
PYREAD=build/pyread
if [ ! -x "$PYREAD/bin/python" ] || ! "$PYREAD/bin/python" -c "import h5py, xarray, h5netcdf" 2>/dev/null; then
    python3 -m venv "$PYREAD"
    "$PYREAD/bin/pip" install --quiet numpy==2.4.6 h5py==3.16.0 xarray==2026.9.0 h5netcdf==1.8.2
fi
export HS_PYTHON=$PWD/$PYREAD/bin/python

echo "== test suite (build/) =="
ctest --test-dir build --output-on-failure -j"$JOBS"

echo "== test suite under ASan+UBSan (build-asan/) =="
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DHS_CUDA=OFF -DHS_SANITIZE=ON -DHS_WERROR=ON >/dev/null
cmake --build build-asan -j"$JOBS"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$JOBS"

echo "== local Slurm cluster (slurm/ scripts, tests/slurm/) =="
HS_BIN=$PWD/build/headsweep tests/slurm/test_slurm.sh

echo "== fuzzing the file parsers (build-fuzz/) =="
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DHS_CUDA=OFF -DHS_FUZZ=ON -DHS_TESTS=OFF >/dev/null
cmake --build build-fuzz -j"$JOBS" --target fuzz_safetensors fuzz_gguf
for t in safetensors gguf; do
    work=$(mktemp -d)
    cp tests/fuzz/corpus_$t/* "$work"/
    rc=0
    build-fuzz/fuzz_$t -max_total_time="${HS_FUZZ_SECONDS:-60}" -max_len=65536 -print_final_stats=1 \
        "$work" >"$work.log" 2>&1 || rc=$?
    grep -E "^stat::number_of_executed_units" "$work.log" | sed "s/^/fuzz_$t: /" || true
    if [ "$rc" != 0 ]; then
        tail -60 "$work.log" >&2
        echo "fuzz_$t: crash found (exit $rc)" >&2
        exit 1
    fi
    rm -rf "$work" "$work.log"
done
echo "== all tests passed =="
