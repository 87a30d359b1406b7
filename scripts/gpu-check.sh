#!/usr/bin/env bash
# gpu-check: one command on the GPU machine. Builds headsweep (Release, CUDA,
# sm_90) or uses a prebuilt bundle, runs every test binary (the CUDA tests run
# instead of skipping), compute-sanitizer memcheck and racecheck over subsets
# of test_cuda_ops and test_cuda_backward, the benchmarks (fused attention vs
# naive cuBLAS and vs PyTorch SDPA, Llama-2-7B-shaped forward), and writes a
# markdown report to
# bench/results/gpu-check-<date>-<gpu>.md (copied to $OUT when set).
#
#   scripts/gpu-check.sh                      configure + build here; falls back
#                                             to .device/ if configure fails
#   scripts/gpu-check.sh --prebuilt .device   use the bundle made by
#                                             scripts/device-bundle.sh
#   options: --quick (short benchmarks), --no-bench, --no-sanitizer,
#            --no-tests,
#            --sweep (add the 1024-head 7B-shaped ablation sweep vs transformers,
#            bench/run-sweep-7b.sh: ~5-8 more minutes, so run it in a call of
#            its own, carrying .device: HS_GPU_CHECK_BUDGET=580
#            scripts/gpu-check.sh --prebuilt .device --sweep --no-tests
#            --no-sanitizer --no-bench)
# Designed to finish inside 10 minutes on an H100: every step's timeout is cut
# to what is left of HS_GPU_CHECK_BUDGET seconds (default 540), a step with
# too little left is skipped and named, and the report (with the logs) is
# rewritten into $OUT after every section, so a call stopped at its limit
# still brings back what ran. The order puts the most telling checks first:
# the test binaries with CUDA cases, compute-sanitizer, the benchmarks, the
# CPU-only test binaries (CI runs them on every push), then the CUDA tests that
# the opt-in Hopper kernel changes, again on it. Exit status: 0 when every
# test passed (no CUDA test skipped on the GPU) and compute-sanitizer found
# nothing; 1 on a failure; 3 when nothing failed but the time budget cut or
# left out steps (named in the report as CUT or NOT RUN, not as failures).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
prebuilt="" build="$root/build-gpu" quick=0 do_bench=1 do_san=1 do_sweep=0 do_tests=1
while [ $# -gt 0 ]; do
    case "$1" in
    --prebuilt) prebuilt=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --no-bench) do_bench=0; shift ;;
    --no-sanitizer) do_san=0; shift ;;
    --sweep) do_sweep=1; shift ;;
    --no-tests) do_tests=0; shift ;;
    *) echo "usage: $0 [--prebuilt DIR] [--build-dir DIR] [--quick] [--no-bench] [--no-sanitizer] [--no-tests] [--sweep]" >&2; exit 2 ;;
    esac
done

t0=$(date +%s)
deadline=$((t0 + ${HS_GPU_CHECK_BUDGET:-540}))
work=$(mktemp -d /tmp/hs-gpu-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
log() { echo "[gpu-check +$(($(date +%s) - t0))s] $*"; }
status=0 incomplete=0
# budget WANT: the timeout for a step that wants WANT seconds, cut to the time
# left before the deadline less 20 s for the report; <= 10 means skip it.
budget() {
    local left=$((deadline - $(date +%s) - 20))
    echo $((left < $1 ? left : $1))
}
skipped="" san_md="not run" bench_note="" sweep_note=""

# ---- the machine ------------------------------------------------------------------
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
gpu_name=${gpu_name:-unknown GPU}
driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
gpu_mem=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader 2>/dev/null | head -1)
nvcc_ver=$(nvcc --version 2>/dev/null | tail -1)
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1)
gpu_tag=$(echo "$gpu_name" | tr -c 'A-Za-z0-9' '_' | sed 's/__*/_/g; s/^_//; s/_$//')
stamp=$(date -u +%Y%m%d-%H%M)
mkdir -p bench/results
report="$root/bench/results/gpu-check-$stamp-$gpu_tag.md"
log "$gpu_name, driver $driver, $nvcc_ver"

# cuBLAS for prebuilt binaries: the toolkit's, else the pip wheels' (torch)
cuda_libs() {
    local d
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib; do
        [ -e "$d/libcublasLt.so.13" ] && { echo "$d"; return; }
    done
    for d in $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
        for l in "$d"/nvidia/cu13/lib "$d"/nvidia/cublas/lib; do
            [ -e "$l/libcublasLt.so.13" ] && { echo "$l"; return; }
        done
    done
    ldconfig -p 2>/dev/null | awk '/libcublasLt\.so\.13 / {print $NF; exit}' | xargs -r dirname
}

# ---- build or unpack ------------------------------------------------------------------
mode=""
if [ -z "$prebuilt" ]; then
    log "configure + build in $build (Release, CUDA, sm_90)"
    if cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHS_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
        -DHS_WERROR=ON >"$work/configure.log" 2>&1 &&
        cmake --build "$build" -j"$(nproc)" >"$work/build.log" 2>&1; then
        bindir=$build
        mode="built from source here ($build)"
    elif [ -f "$root/.device/bundle.tar.xz" ]; then
        log "configure/build failed (see configure.log/build.log): using the prebuilt .device bundle"
        tail -5 "$work/configure.log" "$work/build.log" 2>/dev/null
        prebuilt="$root/.device"
    else
        log "configure/build failed and no .device bundle: giving up"
        tail -30 "$work/configure.log" "$work/build.log" 2>/dev/null
        exit 1
    fi
fi
if [ -n "$prebuilt" ]; then
    [ -f "$prebuilt/bundle.tar.xz" ] || { echo "gpu-check: $prebuilt/bundle.tar.xz missing" >&2; exit 1; }
    mkdir -p "$work/bundle"
    tar -C "$work/bundle" -xJf "$prebuilt/bundle.tar.xz" ||
        { echo "gpu-check: cannot unpack $prebuilt/bundle.tar.xz (is xz installed?)" >&2; exit 1; }
    bindir="$work/bundle/bin"
    cl=$(cuda_libs)
    # for the bundle's binaries only (run_bin): python3 and the peers keep the system's libraries
    bundle_ld="$work/bundle/lib${cl:+:$cl}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    # Tests compiled elsewhere look for fixtures under the baked-in source dir.
    src=$(awk '$1 == "source_dir" {print $2}' "$prebuilt/MANIFEST")
    if [ -n "$src" ] && [ "$src" != "$root" ] && [ ! -e "$src" ]; then
        mkdir -p "$(dirname "$src")" && ln -s "$root" "$src" && log "linked $src -> $root"
    fi
    # ... and the CLI test for the binaries under the baked-in build dir.
    bd=$(awk '$1 == "build_dir" {print $2}' "$prebuilt/MANIFEST")
    # a link an earlier call made on this (warm) machine, into its removed work dir
    [ -n "$bd" ] && [ -L "$bd" ] && [[ "$(readlink "$bd")" == /tmp/hs-gpu-check.* ]] && rm -f "$bd"
    if [ -n "$bd" ] && [ ! -e "$bd" ]; then
        mkdir -p "$(dirname "$bd")" && ln -s "$bindir" "$bd" && log "linked $bd -> $bindir"
    fi
    mode="prebuilt bundle $prebuilt ($(awk '$1 == "built" {$1 = ""; print}' "$prebuilt/MANIFEST")), cuBLAS libs from ${cl:-?}"
    built_from=$(awk '$1 == "tree_sha256" {print $2}' "$prebuilt/MANIFEST")
    here=$(scripts/tree-hash.sh 2>/dev/null || echo "?")
    if [ -n "$built_from" ] && [ "$built_from" != "$here" ]; then
        mode+="; **the tree differs from the one the bundle was built from** ($built_from, here $here): rebuild it"
        log "warning: the bundle was built from another tree ($built_from, here $here)"
    fi
    missing=$(LD_LIBRARY_PATH=$bundle_ld ldd "$bindir"/test_* "$bindir"/bench_* 2>/dev/null | grep 'not found' | sort -u)
    [ -n "$missing" ] && { log "unresolved libraries:"; echo "$missing"; }
fi
export HS_SOURCE_DIR="$root"
bundle_ld=${bundle_ld:-${LD_LIBRARY_PATH:-}}
# run_bin CMD...: a command that runs the bundle's binaries, with its libraries
run_bin() { LD_LIBRARY_PATH=$bundle_ld "$@"; }
# compute-sanitizer: on PATH, else where the toolkit installs it
sanitizer=$(command -v compute-sanitizer || true)
for d in /usr/local/cuda/bin /usr/local/cuda/compute-sanitizer; do
    [ -z "$sanitizer" ] && [ -x "$d/compute-sanitizer" ] && sanitizer="$d/compute-sanitizer"
done

# The SmolLM2 GGUF, carried in parts, one per call (scripts/device-bundle.sh --model;
# PARTS says how many, two where it is absent)
smollm2_md="not on this machine: the SmolLM2 tests skip (scripts/device-bundle.sh --model carries it)"
model_parts=()
if [ -f .device-model/SHA256 ]; then
    n_parts=$(cat .device-model/PARTS 2>/dev/null || echo 2)
    for l in a b c d e f; do
        [ ${#model_parts[@]} -lt "$n_parts" ] || break
        model_parts+=(".device-model/part-$l")
    done
fi
parts_here=1
for f in "${model_parts[@]}"; do [ -f "$f" ] || parts_here=0; done
if [ -z "${HS_SMOLLM2_GGUF:-}" ] && [ ${#model_parts[@]} -gt 0 ] && [ $parts_here -eq 1 ]; then
    mname=$(awk '{print $2}' .device-model/SHA256)
    mkdir -p "$work/model" # its own folder: the logs tarball leaves it out
    cat "${model_parts[@]}" | xz -dc >"$work/model/$mname"
    if (cd "$work/model" && sha256sum -c --quiet "$root/.device-model/SHA256"); then
        export HS_SMOLLM2_GGUF="$work/model/$mname"
        smollm2_md="$mname joined from .device-model/ (SHA-256 checked)"
    else
        smollm2_md="**.device-model parts do not match their SHA-256**: SmolLM2 tests skip"
        status=1
    fi
elif [ -n "${HS_SMOLLM2_GGUF:-}" ]; then
    smollm2_md="$HS_SMOLLM2_GGUF"
elif [ ${#model_parts[@]} -gt 0 ]; then
    smollm2_md="only some of the model's ${#model_parts[@]} parts arrived (${model_parts[*]}: each in its own call before)"
fi
log "SmolLM2: $smollm2_md"
cublas_built=$(awk '$1 == "cublas_built_against" {print $2}' "${prebuilt:-/dev/null}/MANIFEST" 2>/dev/null)
cublas_here=$(ls "$(cuda_libs)"/libcublasLt.so.13.* 2>/dev/null | head -1 | sed 's/.*libcublasLt.so.//')

# ---- report: rewritten after every section, so a stopped call still brings back what ran ----------
# write_report STAGE ("final", or the section just finished)
write_report() {
    {
        echo "# headsweep gpu-check, $(date -u +%Y-%m-%dT%H:%MZ)"
        echo
        echo "| | |"
        echo "|---|---|"
        echo "| GPU | $gpu_name ($gpu_mem) |"
        echo "| driver | $driver |"
        echo "| nvcc | $nvcc_ver |"
        echo "| binaries | $mode |"
        echo "| cuBLAS built against / found | ${cublas_built:-this toolkit} / ${cublas_here:-?} |"
        echo "| SmolLM2 GGUF | $smollm2_md |"
        if [ $status -ne 0 ]; then v='**FAILURES, see below**'
        elif [ $incomplete -ne 0 ]; then v="no failures in what ran; **incomplete**: the time budget cut or left out $skipped"
        elif [ $do_tests -eq 0 ]; then v='no failures (tests not run in this call)'
        elif [ "$san_md" = "not run" ]; then v="all tests passed (compute-sanitizer: $san_md)"
        else v='all tests passed, compute-sanitizer clean'; fi
        echo "| verdict | $v |"
        echo "| wall time | $(($(date +%s) - t0)) s |"
        [ -n "$skipped" ] && echo "| cut or not run (time budget) | $skipped |"
        [ "$1" = final ] || echo "| **partial report** | written after $1; the call ended before the rest |"
        echo
        echo "## Tests (every tests/test_*.c binary, -j1)"
        echo
        cat "$work/tests.md"
        echo "## compute-sanitizer (memcheck and racecheck over subsets of test_cuda_ops and test_cuda_backward)"
        echo
        echo "$san_md"
        [ -s "$work/san_detail.txt" ] && { echo '```'; cat "$work/san_detail.txt"; echo '```'; }
        echo
        if [ $do_bench -eq 1 ]; then
            echo "## Attention (bf16, causal, B*T = 16384, H*d = 2048)"
            echo
            [ -n "$bench_note" ] && echo "Notes: $bench_note" && echo
            python3 - "$work/attn.csv" "$work/sdpa.csv" <<'EOF'
import csv, sys
rows = []
for p in sys.argv[1:]:
    try:
        rows += list(csv.DictReader(open(p)))
    except OSError:
        pass
if not rows:
    print("(no benchmark output)")
    sys.exit(0)
impls = []
for r in rows:
    if r["impl"] not in impls:
        impls.append(r["impl"])
shapes = sorted({(int(r["d_head"]), int(r["seq"])) for r in rows})
tf = {(r["impl"], int(r["d_head"]), int(r["seq"])): float(r["tflops"]) for r in rows}
ms = {(r["impl"], int(r["d_head"]), int(r["seq"])): float(r["ms"]) for r in rows}
sdpa = [i for i in impls if i.startswith("sdpa")]
print("TFLOP/s (causal FLOPs 2·2·B·H·T²·d/2) and ms per call:")
print()
print("| d_head | seq | " + " | ".join(impls) + (" | fused / SDPA |" if sdpa else " |"))
print("|---|---|" + "---|" * len(impls) + ("---|" if sdpa else ""))
for d, T in shapes:
    cells = []
    for i in impls:
        k = (i, d, T)
        cells.append(f"{tf[k]:.1f} ({ms[k]:.3f} ms)" if k in tf else "—")
    line = f"| {d} | {T} | " + " | ".join(cells) + " |"
    if sdpa:
        s = next((tf[(i, d, T)] for i in sdpa if (i, d, T) in tf), None)
        f = tf.get(("headsweep_fused", d, T))
        line += f" {f / s:.2f} |" if s and f else " — |"
    print(line)
EOF
            echo
            grep -a '^check' "$work/bench_attention.log" 2>/dev/null | sed 's/^/    /'
            echo
            echo "## Llama-2-7B-shaped forward (bf16, 64 x 128 tokens)"
            echo
            if [ -s "$work/fwd.md" ]; then cat "$work/fwd.md"; else echo "(no output)"; tail -5 "$work/bench_forward_7b.log" 2>/dev/null; fi
            echo
        fi
        if [ $do_sweep -eq 1 ]; then
            [ -n "$sweep_note" ] && echo "Sweep: $sweep_note" && echo
            if [ -s "$work/sweep.md" ]; then cat "$work/sweep.md"; else echo "## 7B sweep: no output"; tail -8 "$work/bench_sweep.log" 2>/dev/null; fi
            echo
        fi
    } >"$report"
    if [ -n "${OUT:-}" ]; then
        cp "$report" "$OUT/"
        tar -C "$work" -czf "$OUT/gpu-check-logs.tar.gz" --exclude=./bundle --exclude=./model . 2>/dev/null
    fi
}

# ---- tests ------------------------------------------------------------------------------
: >"$work/tests.md"
[ $do_tests -eq 1 ] || echo "Tests not run in this call (--no-tests)." >>"$work/tests.md"
[ $do_tests -eq 1 ] && log "tests"
# run_test BINARY LOG [ARGS...]: runs one test binary (environment as the
# caller sets it, ARGS passed on) and sets synth, verdict and secs; a failure
# sets status=1.
# On a GPU machine a CUDA test that skips for want of a device (a driver or
# runtime mismatch), or on a 9.0 device for want of compute capability 9.0, is
# a failure, not a pass.
run_test() {
    local start rc tmo
    start=$(date +%s) synth="" secs=0
    tmo=$(budget 300)
    if [ "$tmo" -le 10 ]; then
        verdict="NOT RUN (time budget spent)" incomplete=1 skipped+="$(basename "$1") "
        : >"$2"
        return
    fi
    run_bin timeout -k 5 "$tmo" "$1" -j1 --verbose "${@:3}" >"$2" 2>&1
    rc=$?
    secs=$(($(date +%s) - start))
    synth=$(grep -ao 'Tested: [0-9]* | Passing: [0-9]* | Failing: [0-9]* | Crashing: [0-9]*' "$2" | tail -1)
    verdict=$([ $rc -eq 0 ] && echo PASS || echo "FAIL (exit $rc)")
    if [ $rc -eq 124 ] && [ "$tmo" -lt 300 ]; then # the budget's cut, not the test's hang
        if grep -aqE '^\[(FAIL|ERR )\]|Assertion' "$2"; then # what failed before the cut still fails
            verdict="FAIL (failures before the time budget cut it at $tmo s)" status=1
        else
            verdict="CUT (time budget: $tmo s)" incomplete=1 skipped+="$(basename "$1") "
        fi
        return
    fi
    [ $rc -eq 124 ] && verdict="FAIL (timeout after $tmo s)"
    local gpu_skip='no CUDA device'
    [ "$cc" = "9.0" ] && gpu_skip+='|compute capability'
    if [ $rc -eq 0 ] && [ "$gpu_name" != "unknown GPU" ] && grep -aqE "^\[SKIP\].*($gpu_skip)" "$2"; then
        rc=1 verdict="FAIL (GPU tests skipped on a GPU machine)"
    fi
    [ $rc -ne 0 ] && status=1
}
# run_tests PASS: the binaries with CUDA cases first (pass 1), the CPU-only ones
# after the sanitizer and the benchmarks (pass 2): CI runs those on every push.
gpu_tests=" test_cuda_ops test_cuda_backward test_cuda_model test_cuda_experiments test_kv_cache test_shard test_run "
run_tests() {
    local t name
    for t in "$bindir"/test_*; do
        [ $do_tests -eq 1 ] && [ -x "$t" ] || continue
        name=$(basename "$t")
        case "$gpu_tests" in *" $name "*) [ "$1" = 1 ] || continue ;; *) [ "$1" = 2 ] || continue ;; esac
        run_test "$t" "$work/$name.log"
        log "$name: $verdict, $synth (${secs}s)"
        {
            echo "### $name: $verdict, ${synth:-no summary} (${secs} s)"
            echo
            echo '```'
            # every line that is not a pass; the passes, up to 60
            grep -aE '^\[(FAIL|SKIP|ERR |WARN)\]|Assertion|\[----\] .*(Failed|failed|error)' "$work/$name.log"
            grep -aE '^\[PASS\]' "$work/$name.log" | head -60
            n_pass=$(grep -acE '^\[PASS\]' "$work/$name.log")
            [ "$n_pass" -gt 60 ] && echo "... and $((n_pass - 60)) more passes"
            echo '```'
            echo
        } >>"$work/tests.md"
        write_report "$name"
    done
}
run_tests 1

# ---- compute-sanitizer: memcheck over the op tests, racecheck over the block reductions ------------
if [ $do_san -eq 1 ] && [ -n "$sanitizer" ] && [ -x "$bindir/test_cuda_ops" ]; then
    san_md=""
    # racecheck (shared memory) over the kernels with block reductions: norms, log-probs, head_dot.
    # Attention under memcheck: attention_bf16 (in *_bf16) is the default routing, which is what
    # attention_bf16_mma forces, so that one is left out; the wgmma variants run last, apart, so
    # that their time cannot take the other runs' verdicts with it.
    for run in "memcheck test_cuda_ops cuda_ops/attention_@(f32|bad_params|bf16_simt|cached_keys_f32)" \
        "memcheck test_cuda_ops cuda_ops/*_bf16" \
        "memcheck test_cuda_backward cuda_backward/*_f32" "memcheck test_cuda_backward cuda_backward/*_bf16" "racecheck test_cuda_ops cuda_ops/@(target_logprob|norm|attention_cached_keys)_*" \
        "racecheck test_cuda_backward cuda_backward/@(norm_bwd|logprob_grad|head_dot)*_bf16" \
        "memcheck test_cuda_ops cuda_ops/attention_bf16_wgmma"; do
        read -r tool bin filt <<<"$run"
        [ -x "$bindir/$bin" ] || continue
        case "$filt" in *wgmma*) [ "${cc:-}" = "9.0" ] || continue ;; esac # skipped elsewhere: nothing to check
        tmo=$(budget 240)
        if [ "$tmo" -le 10 ]; then
            san_md+="- $tool \`$bin --filter $filt\`: NOT RUN (time budget spent)"$'\n'
            skipped+="$tool:$bin " incomplete=1
            continue
        fi
        log "compute-sanitizer $tool: $bin --filter $filt"
        f="$work/$tool-$bin-$(echo "$filt" | tr -c 'A-Za-z0-9' '_').log"
        run_bin timeout -k 5 "$tmo" "$sanitizer" --tool "$tool" --target-processes all --error-exitcode 99 \
            --print-limit 20 "$bindir/$bin" -j1 --verbose --filter "$filt" >"$f" 2>&1
        rc=$?
        # memcheck: "ERROR SUMMARY: N errors"; racecheck: "RACECHECK SUMMARY: H hazards displayed (N errors, W warnings)"
        errs=$(grep -aE 'SUMMARY: [0-9]+' "$f" | grep -aoE '[0-9]+ errors?' | awk '{s += $1} END {print s + 0}')
        synth=$(grep -ao 'Tested: [0-9]* | Passing: [0-9]* | Failing: [0-9]* | Crashing: [0-9]*' "$f" | tail -1)
        verdict="exit $rc, $errs $tool errors, $synth"
        # a cut run prints no SUMMARY: its errors so far are the report lines themselves
        [ $rc -eq 124 ] && errs=$((errs + $(grep -acE '^========= (Invalid|Program hit|Error)' "$f")))
        if [ $rc -eq 124 ] && [ "$errs" = 0 ] && [ "$tmo" -lt 240 ]; then # the budget's cut, nothing found so far
            verdict="CUT (time budget: $tmo s), no errors so far, $synth" incomplete=1 skipped+="$tool:$bin "
        elif [ $rc -eq 124 ]; then
            verdict="TIMEOUT ($tmo s), $errs errors so far, $synth" status=1
        elif [ $rc -ne 0 ] || [ "$errs" != 0 ]; then
            status=1
        fi
        # a filter that matches nothing checks nothing
        [ $rc -ne 124 ] && case "$synth" in "" | "Tested: 0 "*) verdict+=" (no test ran under it)"; status=1 ;; esac
        log "$tool $filt: $verdict"
        san_md+="- $tool \`$bin --filter $filt\`: $verdict"$'\n'
        grep -aE '^========= (Invalid|Program hit|Error|  at )' "$f" | head -20 | sed 's/^/    /' >>"$work/san_detail.txt"
    done
    write_report "compute-sanitizer"
elif [ $do_san -eq 1 ] && [ -x "$bindir/test_cuda_ops" ]; then
    san_md="**compute-sanitizer not found** (PATH, /usr/local/cuda/bin, /usr/local/cuda/compute-sanitizer)"
    status=1
fi

# ---- benchmarks ---------------------------------------------------------------------------------
if [ $do_bench -eq 1 ]; then
    q=""; [ $quick -eq 1 ] && q="--quick"
    # step NAME WANT COMMAND...: runs it under the budget, or notes that it could not run
    step() {
        local name=$1 tmo
        tmo=$(budget "$2")
        shift 2
        if [ "$tmo" -le 10 ]; then
            bench_note+="$name not run (time budget spent); " skipped+="$name " incomplete=1
            return
        fi
        log "$name"
        "$@" "$tmo" || bench_note+="$name failed; "
    }
    b_attn() { run_bin timeout -k 5 "$1" "$bindir/bench_attention" --out "$work/attn.csv" $q >"$work/bench_attention.log" 2>&1 ||
        { status=1; false; }; }
    b_sdpa() { PYTHONUNBUFFERED=1 timeout -k 5 "$1" python3 bench/bench_attention_sdpa.py --out "$work/sdpa.csv" $q \
        >"$work/bench_sdpa.log" 2>&1; }
    b_fwd() { run_bin timeout -k 5 "$1" "$bindir/bench_forward_7b" --out "$work/fwd.md" >"$work/bench_forward_7b.log" 2>&1 ||
        { status=1; false; }; }
    step bench_attention 240 b_attn
    step bench_attention_sdpa.py 150 b_sdpa
    write_report "the attention benchmarks"
    step bench_forward_7b 150 b_fwd
    write_report "the benchmarks"
fi

# ---- the CPU-only test binaries ----------------------------------------------------------------
[ $do_tests -eq 1 ] && log "the CPU-only test binaries"
run_tests 2

# ---- the CUDA tests again on the Hopper wgmma attention kernel ------------------------------------
# It is opt-in (HS_CUDA_ATTN=wgmma) until these pass on a device; test_cuda_ops
# already forces it in attention_bf16_wgmma. The variable changes bf16 attention
# at d_head 64 and 128 only, so only the tests that reach it run again (the
# fixture models' heads are narrower: the CUDA-core kernel whatever the variable).
if [ $do_tests -eq 0 ]; then
    :
elif [ "$cc" = "9.0" ]; then
    log "tests with HS_CUDA_ATTN=wgmma"
    echo "### CUDA tests with HS_CUDA_ATTN=wgmma[:4] (every eligible attention call on the Hopper kernel)" >>"$work/tests.md"
    echo >>"$work/tests.md"
    # wgmma = its default variant (plain schedule); wgmma:4 = the pipelined one
    for run in "wgmma test_cuda_ops cuda_ops/deterministic_bf16" \
        "wgmma test_cuda_model cuda_model/smollm2_*_bf16" "wgmma test_cuda_experiments cuda_experiments/bf16_*" \
        "wgmma:4 test_cuda_model cuda_model/smollm2_*_bf16" "wgmma:4 test_cuda_experiments cuda_experiments/bf16_*"; do
        read -r kern name filt <<<"$run"
        [ -x "$bindir/$name" ] || continue
        f="$work/$name.$(echo "$kern" | tr ':' '_').log"
        HS_CUDA_ATTN=$kern run_test "$bindir/$name" "$f" --filter "$filt"
        case "$verdict:$synth" in # every test skipped (no SmolLM2 here): checked nothing
        PASS:"Tested: 0 "* | PASS:) verdict="NOTHING CHECKED (every test skipped: $(grep -am1 '^\[SKIP\]' "$f" | cut -c1-120))" incomplete=1
            skipped+="$name($kern) " ;;
        esac
        log "$name --filter $filt (HS_CUDA_ATTN=$kern): $verdict, $synth"
        echo "- HS_CUDA_ATTN=$kern \`$name --filter $filt\`: $verdict, ${synth:-no summary}" >>"$work/tests.md"
        grep -aE '^\[(FAIL|ERR )\]|Assertion' "$f" | head -20 | sed 's/^/    /' >>"$work/tests.md"
    done
    echo >>"$work/tests.md"
    write_report "the wgmma reruns"
else
    echo "CUDA tests with HS_CUDA_ATTN=wgmma: not run (compute capability ${cc:-unknown}, the kernel needs 9.0)" >>"$work/tests.md"
fi

if [ $do_sweep -eq 1 ]; then
    tmo=$(budget 560)
    if [ "$tmo" -le 60 ]; then
        sweep_note="run-sweep-7b.sh not run (time budget spent)" skipped+="sweep " incomplete=1
    else
        log "bench/run-sweep-7b.sh (timeout $tmo s)"
        write_report "the steps before the sweep"
        BIN="$bindir" BIN_LD="$bundle_ld" OUT_MD="$work/sweep.md" timeout -k 5 "$tmo" bench/run-sweep-7b.sh >"$work/bench_sweep.log" 2>&1 ||
            { sweep_note="run-sweep-7b.sh failed (exit $?)"; status=1; }
    fi
fi

log "report $report"
write_report final
[ $status -eq 0 ] && [ $incomplete -ne 0 ] && status=3
log "done: $(case $status in 0) echo OK ;; 3) echo "no failures, incomplete" ;; *) echo FAILURES ;; esac) — $report"
exit $status
