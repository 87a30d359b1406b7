#!/usr/bin/env bash
# tree-hash: one SHA-256 over the files the test and benchmark binaries are
# built from or read at run time (sources, headers, test fixtures, CMake), by
# content and path. The device machine's copy of the tree has no .git and no
# ignored files: here git lists the same set (tracked and untracked, ignored
# left out), there find does. device-bundle.sh records it; gpu-check.sh warns
# when the tree it runs in differs from the one the bundle was built from.
set -euo pipefail
cd "$(dirname "$0")/.."
dirs=(CMakeLists.txt host cuda include tests bench)
if git rev-parse --git-dir >/dev/null 2>&1; then
    git ls-files -z -co --exclude-standard -- "${dirs[@]}"
else
    find "${dirs[@]}" -type f -print0
fi | grep -zv '^bench/results/' | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
