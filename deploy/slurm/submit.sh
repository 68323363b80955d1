#!/usr/bin/env bash
# Submits a speckle sweep to Slurm: an array of N tasks (deploy/slurm/sweep.sbatch, one shard
# each) and a merge job (deploy/slurm/merge.sbatch) that runs once every task has succeeded
# (--dependency=afterok; it is cancelled if a task fails or is cancelled). Prints both job ids.
#
#     deploy/slurm/submit.sh CONFIG N [SBATCH_OPTION...]
#     deploy/slurm/submit.sh configs/noise-sweep.toml 8 --partition=cpu --time=2:00:00
#
# SBATCH options go to both jobs (those of the array win over the #SBATCH lines of
# sweep.sbatch, e.g. --cpus-per-task=4). Environment: SPECKLE_OUT, SPECKLE_LAYOUT, SPECKLE and
# SPECKLE_ARGS as described in sweep.sbatch, and SPECKLE_LOGS, the folder of the jobs' logs
# (default slurm-logs). Run it again with the same CONFIG, N and SPECKLE_OUT to resume.
set -euo pipefail

fail() {
    echo "submit.sh: $*" >&2
    exit 2
}
[[ $# -ge 2 ]] || fail "usage: deploy/slurm/submit.sh CONFIG N [SBATCH_OPTION...]"
config=$1
n=$2
shift 2
[[ -f $config ]] || fail "sweep file '$config' does not exist"
[[ $n =~ ^[1-9][0-9]*$ ]] || fail "N (the number of array tasks) must be a whole number ≥ 1, not '$n'"
case ${SPECKLE_LAYOUT:-shared} in
    shared | per-task) ;;
    *) fail "SPECKLE_LAYOUT must be shared or per-task, not '$SPECKLE_LAYOUT'" ;;
esac
command -v sbatch >/dev/null || fail "sbatch not found: run this where Slurm's commands are"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

export SPECKLE_CONFIG=$config
export SPECKLE_OUT=${SPECKLE_OUT:-sweeps/$(basename "$config" .toml)}
export SPECKLE_LAYOUT=${SPECKLE_LAYOUT:-shared}
logs=${SPECKLE_LOGS:-slurm-logs}
mkdir -p "$logs"

array=$(sbatch --parsable --array="0-$((n - 1))" --output="$logs/sweep-%A_%a.out" "$@" \
    "$here/sweep.sbatch") || fail "sbatch refused the array (its message is above)"
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes \
    --output="$logs/merge-%j.out" "$@" "$here/merge.sbatch") ||
    fail "array job $array is submitted but sbatch refused the merge job (its message is above)"
merge=${merge%%;*}
echo "sweep job $array: array 0-$((n - 1)) of $config into $SPECKLE_OUT, logs $logs/sweep-${array}_<task>.out"
echo "merge job $merge: runs after every task of $array succeeds, log $logs/merge-$merge.out"
