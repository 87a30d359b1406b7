#!/usr/bin/env bash
# device-bundle: builds headsweep HERE (the dev machine, which has the Debian
# -dev packages) for sm_90 and packs what the GPU machine needs to run it into
# .device/ (git-ignored), so that `scripts/gpu-check.sh --prebuilt .device`
# works on a machine with CUDA but without jansson/OpenBLAS/Criterion/...
#
#   .device/bundle.tar.xz   bin/ (tests, benchmarks, CLI; stripped) and lib/
#                           (every non-system shared library they load)
#   .device/MANIFEST        source dir, git revision, toolkit and cuBLAS
#                           versions built against, file list
#
# Not bundled: glibc's libraries and the loader, libstdc++/libgcc_s (the GPU
# machine's are newer), libcuda (the driver's) and libcublas/libcublasLt
# (~600 MB; the GPU machine's CUDA 13 has them: gpu-check compares versions).
# With --model it also splits the SmolLM2 GGUF (98 MB, 90 MB as xz: more than
# one call may carry next to the bundle) into .device-model/part-a, part-b, ...
# (as few as fit, each beside the working tree), its SHA256 and PARTS (their
# count), for calls in a row (the machine keeps ignored files between calls
# while it stays warm, about 30 s); with two parts:
#   1. carry .device-model/part-a                  command: true
#   2. carry .device .device-model/part-b .device-model/SHA256 .device-model/PARTS
#                                                  command: scripts/gpu-check.sh --prebuilt .device
# and with three, part-a, then part-b, then .device with part-c (the script
# prints the calls). gpu-check joins the parts, unpacks them, checks the hash
# and runs the SmolLM2 tests too.
# Usage: scripts/device-bundle.sh [--model] [build-dir]   (default build-device)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
with_model=0
if [ "${1:-}" = "--model" ]; then with_model=1; shift; fi
build=${1:-$root/build-device}
out=$root/.device
# What one device call carries: the working tree (tracked and untracked, not
# ignored) plus the carried paths, 64 MiB in all; 1 MiB kept spare.
limit=$((64 * 1024 * 1024 - 1024 * 1024))
tree_bytes=$(git -C "$root" ls-files -z --cached --others --exclude-standard |
    (cd "$root" && xargs -0 stat -c %s 2>/dev/null || true) | awk '{s += $1} END {print s + 0}')

mkdir -p "$build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DHS_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DHS_TESTS=ON >"$build/configure.log" 2>&1 ||
    { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j"$(nproc)"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
bins=()
for f in "$build"/test_* "$build"/bench_* "$build"/headsweep; do
    [ -f "$f" ] && [ -x "$f" ] || continue
    # a binary left in the build folder by a test since removed
    case "$(basename "$f")" in test_*) [ -f "$root/tests/$(basename "$f").c" ] || continue ;; esac
    cp "$f" "$stage/bin/"
    strip --strip-unneeded "$stage/bin/$(basename "$f")" 2>/dev/null || true
    bins+=("$f")
done
[ ${#bins[@]} -gt 0 ] || { echo "device-bundle: nothing built in $build" >&2; exit 1; }

# Shared libraries: everything ldd resolves except the base system and CUDA.
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libresolv|libutil|libstdc\+\+|libgcc_s|libcuda\.so|libcublas|libcublasLt|libcudart|libnvidia)'
for f in "${bins[@]}"; do
    ldd "$f" | awk '/=>/ && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
    if [[ "$name" =~ $skip ]]; then continue; fi
    cp -L "$path" "$stage/lib/$name"
done

cublas_ver=$(awk '/define CUBLAS_VER_(MAJOR|MINOR|PATCH)/ {printf "%s%s", sep, $3; sep="."}' \
    "$(dirname "$(command -v nvcc)")/../include/cublas_api.h" 2>/dev/null || echo unknown)
rm -rf "$out"
mkdir -p "$out"
{
    echo "source_dir $root"
    echo "build_dir $build"
    echo "git_rev $(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo none)"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
    echo "nvcc $(nvcc --version | tail -1)"
    echo "cublas_built_against $cublas_ver"
    echo "cuda_arch 90"
    # what the binaries were built from and the fixtures they read (gpu-check.sh compares)
    echo "tree_sha256 $("$root/scripts/tree-hash.sh")"
    (cd "$stage" && find bin lib -type f -printf 'file %p %s\n' | sort)
} >"$out/MANIFEST"
# One xz stream with a 64 MiB window (-9, single-threaded): every binary links
# the same CUDA fatbins (~8 MB each), which -6's 8 MiB window cannot match
# across files (33 MB instead of 17 MB), and the model's second part must
# fit beside the bundle in one device call.
tar -C "$stage" -cf - bin lib | xz -T1 -9 >"$out/bundle.tar.xz"

bundle_bytes=$(find "$out" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
echo "device-bundle: $out: $(grep -c '^file bin/' "$out/MANIFEST") binaries," \
    "$(grep -c '^file lib/' "$out/MANIFEST") libraries, $bundle_bytes bytes; working tree $tree_bytes bytes"
if [ $((tree_bytes + bundle_bytes)) -gt $limit ]; then
    echo "device-bundle: the working tree and .device ($((tree_bytes + bundle_bytes)) bytes) exceed one" \
        "call's carry ($limit bytes)" >&2
    exit 1
fi
if [ $with_model -eq 1 ]; then
    gguf=$("$root/scripts/fetch-model.sh")
    rm -rf "$root/.device-model"
    mkdir -p "$root/.device-model"
    packed="$root/.device-model/model.xz"
    xz -T0 -6 -c "$gguf" >"$packed"
    packed_bytes=$(stat -c %s "$packed")
    # n calls: each carries the tree and one part, the last also .device, SHA256 and PARTS.
    # The fewest calls that fit, split so all have the same room to spare, for a tree that
    # grows after the split.
    n=2
    while :; do
        share=$(((packed_bytes + bundle_bytes + n - 1) / n))
        last=$((packed_bytes - (n - 1) * share))
        if [ $((tree_bytes + share)) -le $limit ] && [ $((tree_bytes + bundle_bytes + last + 4096)) -le $limit ]; then
            break
        fi
        n=$((n + 1))
        if [ $n -gt 6 ]; then
            echo "device-bundle: the model does not fit in 6 calls beside the tree ($tree_bytes bytes) and" \
                ".device ($bundle_bytes bytes), each call at most $limit" >&2
            rm -f "$packed"
            exit 1
        fi
    done
    letters=(a b c d e f)
    for ((i = 0; i < n; i++)); do
        size=$((i < n - 1 ? share : last))
        dd if="$packed" of="$root/.device-model/part-${letters[i]}" bs=1M iflag=skip_bytes,count_bytes \
            skip=$((i * share)) count="$size" status=none
    done
    rm -f "$packed"
    (cd "$(dirname "$gguf")" && sha256sum "$(basename "$gguf")") >"$root/.device-model/SHA256"
    echo "$n" >"$root/.device-model/PARTS"
    echo "device-bundle: .device-model: $(basename "$gguf") in $n parts, one call each, in order:"
    for ((i = 0; i < n - 1; i++)); do
        echo "  call $((i + 1)): carry .device-model/part-${letters[i]} ($((tree_bytes + share)) bytes with" \
            "the tree), command: true"
    done
    echo "  call $n: carry .device .device-model/part-${letters[n - 1]} .device-model/SHA256" \
        ".device-model/PARTS ($((tree_bytes + bundle_bytes + last)) bytes)," \
        "command: scripts/gpu-check.sh --prebuilt .device"
    echo "  (each call at most $limit bytes)"
fi
echo "run on the GPU machine: scripts/gpu-check.sh --prebuilt .device   (carry: .device)"
