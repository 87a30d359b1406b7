#!/usr/bin/env bash
# The slurm/ scripts on a real single-node Slurm cluster started on localhost
# (tests/slurm/cluster.sh), with a small CPU sweep on the tiny llama_gqa
# fixture:
#   1. slurm/submit.sh runs it as a 3-task array plus the dependent merge; the
#      merged file equals a single-process run of the same config.
#   2. the same, with SIGUSR1 sent to task 1's batch shell mid-run: headsweep
#      saves its progress and exits 75, the task is requeued, resumes from its
#      journal, and the merged file is still equal.
# Usage: tests/slurm/test_slurm.sh   (HS_BIN: binary, default build/headsweep;
# HS_PYTHON: a python with h5py, default python3). Skips, saying why, only when
# not root; as root a missing package is a failure. About a minute on 2 cores.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${HS_BIN:-$repo/build/headsweep}
py=${HS_PYTHON:-python3}
# shellcheck source=tests/slurm/cluster.sh
source "$repo/tests/slurm/cluster.sh"

reason=$(hs_cluster_unavailable)
if [ -n "$reason" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "SKIP local Slurm test: $reason"
        exit 0
    fi
    echo "local Slurm test: cannot start a cluster: $reason" >&2
    exit 1
fi
[ -x "$bin" ] || { echo "local Slurm test: no headsweep binary at $bin (build first)" >&2; exit 1; }
"$py" -c "import h5py" || { echo "local Slurm test: $py cannot import h5py (set HS_PYTHON)" >&2; exit 1; }

T=$(mktemp -d /tmp/hs-slurm-test.XXXXXX)
chmod 755 "$T" # munged runs as the munge user
jobs_submitted=()
ok=0
cleanup() {
    local i
    if [ ${#jobs_submitted[@]} -gt 0 ]; then
        scancel "${jobs_submitted[@]}" 2>/dev/null || true
        for ((i = 0; i < 300; i++)); do
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
    if [ "$ok" != 1 ]; then
        echo "--- job logs" >&2
        tail -n 40 "$T"/*/*.out >&2 2>/dev/null || true
        echo "--- daemon logs" >&2
        tail -n 20 "$T"/cluster/log/*.log >&2 2>/dev/null || true
    fi
    local pids=("${HS_CLUSTER_PIDS[@]}")
    hs_cluster_stop
    for i in "${pids[@]}"; do
        if kill -0 "$i" 2>/dev/null; then
            echo "local Slurm test: daemon $i still running after stop" >&2
            ok=0
        fi
    done
    if [ "$ok" = 1 ]; then
        rm -rf "$T"
    else
        echo "local Slurm test: files kept in $T" >&2
        exit 1
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "local Slurm test: FAIL: $*" >&2
    exit 1
}

# state of a job (or of every task of an array job, one per line)
job_states() { scontrol show job -o "$1" | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }

# Waits until job $1 has ended (COMPLETED, FAILED, CANCELLED, ...), up to $2 s.
wait_ended() {
    local i s
    for ((i = 0; i < $2; i++)); do
        s=$(job_states "$1") || fail "scontrol show job $1 failed"
        case $s in PENDING | RUNNING | REQUEUED | CONFIGURING | COMPLETING | SUSPENDED | RESIZING) ;; *) return 0 ;; esac
        sleep 1
    done
    fail "job $1 still $s after $2 s"
}

# A sweep of 6 x 3 heads x 300 prompts, two experiments: ~12 s on one core.
cat >"$T/sweep.yaml" <<EOF
model: $repo/tests/fixtures/models/llama_gqa
device: cpu
threads: 1
seed: 11
batch_size: 8
output: out/sweep.h5
dataset:
  generator: induction
  n: 300
  seq_len: 40
  token_min: 3
  token_max: 300
experiments:
  - name: abl_loss
    type: head_ablation
    metric: loss
    mode: zero
  - name: abl_kl
    type: head_ablation
    metric: kl
    positions: last
    mode: zero
EOF

hs_cluster_start "$T/cluster" || fail "the cluster did not start"
echo "cluster up: SLURM_CONF=$SLURM_CONF"

mkdir -p "$T/single/out"
(cd "$T/single" && "$bin" run "$T/sweep.yaml" 2>"$T/single/run.log") ||
    { cat "$T/single/run.log" >&2; fail "single-process run failed"; }

# Submits the sweep from directory $1 (extra submit.sh arguments follow);
# sets array_job and merge_job.
submit() {
    local dir=$1 out
    shift
    mkdir -p "$T/$dir/out"
    out=$(cd "$T/$dir" && "$repo/slurm/submit.sh" "$T/sweep.yaml" --shards 3 --bin "$bin" "$@") ||
        fail "submit.sh failed"
    echo "$out"
    array_job=$(sed -n 's/^array_job=//p' <<<"$out")
    merge_job=$(sed -n 's/^merge_job=//p' <<<"$out")
    [[ $array_job =~ ^[0-9]+$ && $merge_job =~ ^[0-9]+$ ]] || fail "submit.sh printed no job ids"
    jobs_submitted+=("$array_job" "$merge_job")
}

# Checks that every task and the merge completed and the merged file equals
# the single-process run.
check_result() {
    local dir=$1 states
    wait_ended "$merge_job" 240
    states=$(job_states "$array_job" | sort | uniq -c | tr -s ' ')
    [ "$states" = " 3 COMPLETED" ] || fail "array job $array_job: task states $states"
    [ "$(job_states "$merge_job")" = COMPLETED ] || fail "merge job $merge_job: $(job_states "$merge_job")"
    "$py" "$repo/tests/slurm/compare_h5.py" "$T/single/out/sweep.h5" "$T/$dir/out/sweep.h5" ||
        fail "merged result differs from the single-process run"
}

echo "== 1. array of 3 shards + merge"
submit array --gpus-per-task 1 --time 10
check_result array

echo "== 2. SIGUSR1 to a running task: exit 75, requeue, resume"
submit usr1
journal=$(cd "$T/usr1" && "$bin" shard-path "$T/sweep.yaml" 1/3).journal
for ((i = 0; i < 600; i++)); do
    [ -f "$T/usr1/$journal" ] && [ "$(job_states "${array_job}_1")" = RUNNING ] && break
    sleep 0.1
done
[ -f "$T/usr1/$journal" ] || fail "task 1 never started its journal $journal"
scancel --signal=USR1 --batch "${array_job}_1"
check_result usr1
restarts=$(scontrol show job -o "${array_job}_1" | grep -o 'Restarts=[0-9]*')
[ "$restarts" = Restarts=1 ] ||
    fail "task 1 has $restarts: the signal did not cause one requeue (did it arrive after the last batch?)"
grep -q "exit 75" "$T/usr1/headsweep-${array_job}_1.out" || fail "task 1's log shows no exit 75"

ok=1
echo "local Slurm test: OK"
