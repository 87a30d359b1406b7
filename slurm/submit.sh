#!/usr/bin/env bash
# Submits a sharded headsweep sweep: an array job with one shard per task
# (sweep.sbatch) and a merge job (merge.sbatch) that runs once every task has
# succeeded. Prints `array_job=ID` and `merge_job=ID` (docs/slurm.md).
set -euo pipefail

usage() {
    cat <<'EOF'
usage: slurm/submit.sh CONFIG --shards N [options]
  --shards N            number of array tasks, one shard each (N >= 1)
  --gpus-per-task G     GPUs per task, as --gres=gpu:G (default 0: none)
  --partition P         partition for both jobs
  --time T              time limit of each job (sbatch --time syntax)
  --set KEY=VALUE       config override, passed to run and merge (repeatable)
  --overwrite           replace existing shard and merged files
  --bin PATH            headsweep binary (default $HS_BIN, else headsweep on PATH)
  --job-name NAME       job name, and so log names NAME-ARRAY_TASK.out (default headsweep)
  --sbatch-arg ARG      extra argument for both sbatch calls, e.g. --sbatch-arg=--account=abc
Logs go to the current directory: NAME-<array job>_<task>.out, NAME-merge-<job>.out.
EOF
}
die() {
    echo "submit.sh: $*" >&2
    exit 2
}
need_value() { if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value (see --help)"; fi; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
config="" shards="" gpus=0 partition="" time_limit="" bin=${HS_BIN:-headsweep} name=headsweep
sets=() run_flags=() extra=()
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --shards) need_value "$@"; shards=$2; shift 2 ;;
    --gpus-per-task) need_value "$@"; gpus=$2; shift 2 ;;
    --partition) need_value "$@"; partition=$2; shift 2 ;;
    --time) need_value "$@"; time_limit=$2; shift 2 ;;
    --set) need_value "$@"; [[ $2 == ?*=* ]] || die "--set takes KEY=VALUE, not '$2'"; sets+=(--set "$2"); shift 2 ;;
    --overwrite) run_flags+=(--overwrite); shift ;;
    --bin) need_value "$@"; bin=$2; shift 2 ;;
    --job-name) need_value "$@"; name=$2; shift 2 ;;
    --sbatch-arg) need_value "$@"; extra+=("$2"); shift 2 ;;
    --sbatch-arg=*) extra+=("${1#--sbatch-arg=}"); shift ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) [ -z "$config" ] || die "one CONFIG only ('$config', then '$1')"; config=$1; shift ;;
    esac
done

[ -n "$config" ] || { usage >&2; exit 2; }
{ [ -f "$config" ] && [ -r "$config" ]; } || die "config '$config' is not a readable file"
[ -n "$shards" ] || die "--shards N is required"
[[ $shards =~ ^[1-9][0-9]*$ ]] || die "--shards must be a positive integer, not '$shards'"
[[ $gpus =~ ^[0-9]+$ ]] || die "--gpus-per-task must be a non-negative integer, not '$gpus'"
[[ $name =~ ^[A-Za-z0-9._-]+$ ]] || die "--job-name may hold letters, digits, '.', '_' and '-' only"
command -v sbatch >/dev/null || die "sbatch not found: run this on a Slurm login node"
resolved=$(command -v "$bin") || die "headsweep binary '$bin' not found (use --bin PATH or HS_BIN)"
bin=$(cd "$(dirname "$resolved")" && pwd)/$(basename "$resolved")
[ -x "$bin" ] || die "'$bin' is not executable"
config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")

# A config error should stop here, not in N queued jobs.
if ! "$bin" validate "$config" "${sets[@]}" >/dev/null; then
    die "$config does not validate (headsweep validate's message above)"
fi

common=("${extra[@]}")
[ -z "$partition" ] || common+=(--partition="$partition")
[ -z "$time_limit" ] || common+=(--time="$time_limit")

task_opts=(--array="0-$((shards - 1))" --job-name="$name" --output="$name-%A_%a.out")
[ "$gpus" = 0 ] || task_opts+=(--gres="gpu:$gpus")
array_id=$(sbatch --parsable "${common[@]}" "${task_opts[@]}" "$here/sweep.sbatch" \
    --bin "$bin" --shards "$shards" "$config" "${sets[@]}" "${run_flags[@]}")
array_id=${array_id%%;*} # --parsable prints id[;cluster]
echo "array_job=$array_id"

# One shard is the whole sweep: the task writes the config's output itself.
if [ "$shards" = 1 ]; then
    echo "merge_job=none"
    exit 0
fi
merge_id=$(sbatch --parsable "${common[@]}" --dependency="afterok:$array_id" --kill-on-invalid-dep=yes \
    --job-name="$name-merge" --output="$name-merge-%j.out" "$here/merge.sbatch" \
    --bin "$bin" --shards "$shards" "$config" "${sets[@]}" "${run_flags[@]}")
echo "merge_job=${merge_id%%;*}"
