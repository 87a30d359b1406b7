#!/usr/bin/env bash
# Installs headsweep's build and test dependencies (Debian packages), builds
# it into build/, and fetches the default model. Idempotent: rerun any time.
#   HS_SKIP_APT=1     do not call apt-get (packages already present)
#   HS_BUILD_DIR=dir  build folder (default build)
#   HS_CMAKE_ARGS     extra CMake arguments
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake pkg-config git python3 python3-pip python3-venv
      libjansson-dev libopenblas-openmp-dev libcriterion-dev libhdf5-dev hdf5-tools
      libfyaml-dev libpcre2-dev clang libclang-rt-14-dev libomp-14-dev
      slurm-wlm munge)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${HS_SKIP_APT:-0}" != 1 ] && [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# CUDA is optional: the toolkit's usual home is put on PATH when present.
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH=/usr/local/cuda/bin:$PATH
fi

BUILD=${HS_BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release ${HS_CMAKE_ARGS:-}
cmake --build "$BUILD" -j"$(nproc)"

scripts/fetch-model.sh
