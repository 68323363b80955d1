#!/usr/bin/env bash
# End-to-end test of the Slurm templates in deploy/slurm/ on a real Slurm: a single-node cluster
# started on this machine (munged, slurmctld and slurmd run directly, no systemd), from Debian's
# packages (installed with apt-get when missing; needs root). It
#
#   1. submits the quick noise sweep (configs/noise-sweep.toml --quick) as an array of 3 tasks,
#      each writing its own folder, plus the merge job (deploy/slurm/submit.sh), and checks that
#      the merged results.csv equals a local `speckle sweep --quick` row for row, and the logs;
#   2. submits it again as 3 tasks sharing one folder, cancels task 1 while it trains its first
#      point and task 2 before it starts, checks that the merge job did not run, resubmits the
#      same array and checks the resume: the finished points are skipped (the logs say so, their
#      files are untouched), the others run, and the merged results equal the local run;
#   3. submits a sweep of two points, one failing (its data folder does not exist), as 2 tasks:
#      the task with the failing point fails, the merge never runs.
#
# Every daemon it starts is stopped by pid, and its folder is removed. The speckle binary is
# $SPECKLE when set, else target/debug/speckle as `cargo test` builds it (`cargo build --profile
# test --bin speckle`, a no-op after `cargo test`). Prints `slurm: P passed, F failed` last;
# exits 1 when a check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
config=configs/noise-sweep.toml

passed=0
failed=0
ok() {
    passed=$((passed + 1))
    echo "ok: $*"
}
not_ok() {
    failed=$((failed + 1))
    echo "FAILED: $*"
}
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}
summary() {
    printf 'slurm: %d passed, %d failed (%ds)\n' "$passed" "$failed" "$SECONDS"
}
step() { printf '== slurm: %s (%ds)\n' "$1" "$SECONDS"; }
# A failure that stops the test (setup, or a job that never ends).
die() {
    not_ok "$*"
    exit 1
}

work=$(mktemp -d /tmp/speckle-slurm-test.XXXXXX)
chmod 700 "$work"
pids=()
policy_created=
cluster_up=
cleanup() {
    local status=$?
    set +e
    if [[ -n $cluster_up ]]; then
        scancel --quiet --user="$(id -un)" 2>/dev/null
        for _ in $(seq 50); do
            [[ -z $(squeue -h 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
    # The daemons, newest first (slurmd, slurmctld, munged), then anything still running with
    # this cluster's configuration in its environment (jobs and their slurmstepd).
    local i pid
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[i]}" 2>/dev/null
        wait "${pids[i]}" 2>/dev/null
    done
    for pid in $(grep -lsz "^SLURM_CONF=$work/slurm.conf$" /proc/[0-9]*/environ | cut -d/ -f3); do
        [[ $pid != "$$" ]] && kill -9 "$pid" 2>/dev/null
    done
    [[ -n $policy_created ]] && rm -f /usr/sbin/policy-rc.d
    rm -rf "$work"
    summary
    [[ $failed -eq 0 && $status -eq 0 ]] || exit 1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "packages"
need=()
for pair in slurmctld:slurmctld slurmd:slurmd slurm-client:sbatch munge:munged; do
    command -v "${pair#*:}" >/dev/null || need+=("${pair%%:*}")
done
if [[ ${#need[@]} -gt 0 ]]; then
    [[ $(id -u) -eq 0 ]] || die "installing ${need[*]} needs root"
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        # Keep the packages from starting their own daemons.
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_created=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    echo "installing ${need[*]}"
    if ! apt-get install -y -q --no-install-recommends "${need[@]}" >"$work/apt.log" 2>&1; then
        apt-get update -q >>"$work/apt.log" 2>&1 &&
            apt-get install -y -q --no-install-recommends "${need[@]}" >>"$work/apt.log" 2>&1 ||
            {
                tail -5 "$work/apt.log"
                die "apt-get install ${need[*]}"
            }
    fi
    if [[ -n $policy_created ]]; then
        rm -f /usr/sbin/policy-rc.d
        policy_created=
    fi
fi
echo "$(slurmd -V), $(munged -V 2>&1 | head -1)"

step "speckle binary"
if [[ -n ${SPECKLE:-} ]]; then
    speckle=$(realpath "$SPECKLE")
else
    # The profile `cargo test` builds the binary with: nothing to do after `cargo test`.
    cargo build --quiet --profile test --bin speckle || die "cargo build --profile test --bin speckle"
    speckle=$root/target/debug/speckle
fi
[[ -x $speckle ]] || die "no speckle binary at $speckle"
echo "$speckle"

step "starting a single-node cluster in $work"
# Two free TCP ports (none listening or connected on them).
port_free() {
    ! grep -qi "$(printf ':%04X ' "$1")" /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
ports=()
while [[ ${#ports[@]} -lt 2 ]]; do
    p=$((20000 + RANDOM % 30000))
    if port_free "$p" && port_free "$((p + 1))"; then ports=("$p" "$((p + 1))"); fi
done
mkdir -p "$work/munge" "$work/state" "$work/spool"
head -c 1024 /dev/urandom >"$work/munge/munge.key"
chmod 400 "$work/munge/munge.key"
munged -F --force --key-file="$work/munge/munge.key" --socket="$work/munge/socket" \
    --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" \
    --seed-file="$work/munge/seed" >"$work/munge/stdout" 2>&1 &
pids+=($!)
node=$(slurmd -C | head -1)
host=$(sed -E 's/^NodeName=([^ ]+).*/\1/' <<<"$node")
cat >"$work/slurm.conf" <<EOF
ClusterName=speckletest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=${ports[0]}
SlurmdPort=${ports[1]}
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge/socket
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=2
MinJobAge=600
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$work/slurm.conf
for _ in $(seq 50); do
    [[ -S $work/munge/socket ]] && break
    sleep 0.1
done
[[ -S $work/munge/socket ]] || die "munged did not start: $(tail -3 "$work/munge/munged.log" "$work/munge/stdout" 2>&1)"
slurmctld -D -i -f "$SLURM_CONF" >"$work/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" >"$work/slurmd.out" 2>&1 &
pids+=($!)
state=
for _ in $(seq 100); do
    state=$(sinfo -h -N -o %t 2>/dev/null || true)
    [[ $state == idle ]] && break
    sleep 0.2
done
[[ $state == idle ]] || die "the node is not idle (${state:-no answer}): $(tail -3 "$work/slurmctld.log" "$work/slurmd.log" 2>&1)"
cluster_up=1
echo "node $host idle ($(sinfo -h -N -o '%c CPUs')), started in ${SECONDS}s"

# Waits until the cluster has no pending or running job (at most 90 s).
wait_idle() {
    local t=$SECONDS
    while [[ -n $(squeue -h) ]]; do
        ((SECONDS - t < 90)) || die "jobs still queued after 90 s: $(squeue -h)"
        sleep 0.2
    done
}
# `TASK=STATE` for tasks 0 to $2 - 1 of array job $1 (`none`: not in the array), or the state
# of job $1 when $2 is absent.
states() {
    local i state
    if [[ $# -eq 1 ]]; then
        scontrol -o show job "$1" | grep -o ' JobState=[^ ]*' | cut -d= -f2
    else
        for ((i = 0; i < $2; i++)); do
            state=$(scontrol -o show job "$1_$i" 2>/dev/null | grep -o ' JobState=[^ ]*' | cut -d= -f2)
            echo "$i=${state:-none}"
        done | xargs
    fi
}
# Submits with deploy/slurm/submit.sh; sets $array and $merge.
submit() {
    local text
    text=$(deploy/slurm/submit.sh "$@") || die "submit.sh $*"
    echo "$text"
    array=$(sed -n 's/^sweep job \([0-9]*\):.*/\1/p' <<<"$text")
    merge=$(sed -n 's/^merge job \([0-9]*\):.*/\1/p' <<<"$text")
    [[ -n $array && -n $merge ]] || die "submit.sh printed no job ids"
}
same_file() { cmp "$1" "$2"; }
# Submits the quick noise sweep as 3 tasks into $SPECKLE_OUT plus the merge job, waits, and
# checks that all of them completed and that the merged results equal the local sweep's.
sweep_and_merge() {
    submit "$config" 3
    wait_idle
    check "$1: array tasks completed" \
        equal "$(states "$array" 3)" "0=COMPLETED 1=COMPLETED 2=COMPLETED"
    check "$1: merge job completed" equal "$(states "$merge")" COMPLETED
    check "$1: merged results.csv equals the local sweep" \
        same_file "$SPECKLE_OUT/results.csv" "$work/local/results.csv"
}
log_has() {
    grep -qF -- "$2" "$1" || {
        echo "  no '$2' in $1:"
        sed 's/^/  | /' "$1"
        return 1
    }
}
no_file() { [[ ! -e $1 ]]; }
equal() {
    [[ $1 == "$2" ]] || {
        echo "  got '$1', want '$2'"
        return 1
    }
}

export SPECKLE=$speckle SPECKLE_ARGS=--quick
unset SPECKLE_LAYOUT SPECKLE_SHARDS

step "local reference (speckle sweep --quick)"
"$speckle" sweep --config "$config" --quick --out "$work/local" --jobs 2 2>"$work/local.log" ||
    die "the local sweep: $(tail -1 "$work/local.log")"
points=$(($(wc -l <"$work/local/results.csv") - 1))
echo "$points points"

step "array of 3 tasks, each writing its own folder, then the merge job"
export SPECKLE_OUT=$work/per-task SPECKLE_LOGS=$work/logs-per-task SPECKLE_LAYOUT=per-task
sweep_and_merge "per-task folders"
check "report.md written" test -s "$work/per-task/report.md"
check "task folders task-0 to task-2" equal "$(cd "$work/per-task" && echo task-*)" "task-0 task-1 task-2"
for i in 0 1 2; do
    log=$SPECKLE_LOGS/sweep-${array}_$i.out
    want=$(awk -F, -v i="$i" 'NR > 1 && (NR - 2) % 3 == i { printf "%s%d %s", sep, NR - 2, $NF; sep = ", " }' \
        "$work/local/results.csv")
    check "log sweep-${array}_$i.out names shard $i/3 and its points" log_has "$log" \
        "shard $i/3 (Slurm array task $i of 0-2): points $want; --jobs 1 (SLURM_CPUS_PER_TASK=1)"
done
check "merge log" log_has "$SPECKLE_LOGS/merge-$merge.out" "merged $points of $points points"

step "3 tasks sharing one folder: cancel task 1 while it runs and task 2 before it starts, then resubmit the same array"
export SPECKLE_OUT=$work/shared SPECKLE_LOGS=$work/logs-shared SPECKLE_LAYOUT=shared
submit "$config" 3 --hold
# Task 1 alone first, cancelled as soon as it has started training its first point (point 1,
# the 2nd row of the local results: a second or more of work left, the cancel takes a fraction
# of that). Task 2 is cancelled while still pending (held): Slurm drops it from the array. Then
# task 0 and the merge job are released.
shard1=$(awk -F, 'NR == 3 || NR == 6 || NR == 9 { print $NF }' "$work/local/results.csv")
scontrol release "${array}_1" || die "scontrol release ${array}_1"
t=$SECONDS
until [[ -d $work/shared/runs/${shard1%%$'\n'*} ]]; do
    ((SECONDS - t < 60)) || die "task 1 did not start training within 60 s"
    sleep 0.05
done
scancel "${array}_1" "${array}_2" || die "scancel ${array}_1 ${array}_2"
scontrol release "${array}_0" "$merge" || die "scontrol release ${array}_0 $merge"
wait_idle
check "task 0 completed, task 1 cancelled while running, task 2 dropped" \
    equal "$(states "$array" 3)" "0=COMPLETED 1=CANCELLED 2=none"
check "merge job cancelled (afterok not satisfied)" equal "$(states "$merge")" CANCELLED
check "no results.csv before the merge" no_file "$work/shared/results.csv"
# Shard 1 holds points 1, 4 and 7. A point is finished once its run wrote summary.json (a point
# cancelled after that, while the sweep recorded it, is recorded by the next attempt).
finished1=0
interrupted1=0
for id in $shard1; do
    if [[ -e $work/shared/runs/$id/summary.json ]]; then
        finished1=$((finished1 + 1))
    elif [[ -e $work/shared/runs/$id ]]; then
        interrupted1=$((interrupted1 + 1))
    fi
done
echo "cancelled task 1 had finished $finished1 of its 3 points, $interrupted1 interrupted"
check "task 1 was cancelled before finishing its points" test "$finished1" -lt 3
done_before=$(find "$work/shared/runs" -name result.json | sort)
fingerprint() { xargs -r sha256sum <<<"$done_before" && xargs -r stat -c '%n %Y.%y' <<<"$done_before"; }
fingerprint_before=$(fingerprint)
sweep_and_merge "resubmitted"
# Shard 0 holds points 0, 3 and 6; shard 1 points 1, 4 and 7; shard 2 points 2 and 5.
check "task 0 skipped its 3 finished points" \
    log_has "$SPECKLE_LOGS/sweep-${array}_0.out" "shard 0/3 has 3, 3 already done, 0 to run"
check "task 1 skipped its $finished1 finished point(s) and ran the others" \
    log_has "$SPECKLE_LOGS/sweep-${array}_1.out" \
    "shard 1/3 has 3, $finished1 already done, $((3 - finished1)) to run"
check "task 2 ran its 2 points" \
    log_has "$SPECKLE_LOGS/sweep-${array}_2.out" "shard 2/3 has 2, 0 already done, 2 to run"
check "the first attempt's finished points are untouched" equal "$(fingerprint)" "$fingerprint_before"

step "a failing point fails its task, and the merge does not run"
cat >"$work/fails.toml" <<EOF
name = "fails"
base = "$root/configs/mnist-dfa.toml"
[set]
"training.epochs" = 1
"data.train_subset" = 512
"data.test_subset" = 256
"model.hidden" = [64]
[[points]]
"training.seed" = 0
[[points]]
"training.seed" = 1
"data.dir" = "$work/no-such-data"
EOF
export SPECKLE_OUT=$work/fails SPECKLE_LOGS=$work/logs-fails SPECKLE_ARGS=
submit "$work/fails.toml" 2
wait_idle
check "task 1 (the failing point) failed, task 0 completed" \
    equal "$(states "$array" 2)" "0=COMPLETED 1=FAILED"
check "merge job cancelled" equal "$(states "$merge")" CANCELLED
check "task 1's log names the failure" log_has "$SPECKLE_LOGS/sweep-${array}_1.out" \
    "error: 1 of 1 points of shard 1/2 failed"
check "both points recorded, nothing merged" \
    equal "$(find "$work/fails/runs" -name result.json | wc -l) $(ls "$work/fails" | xargs)" "2 runs sweep.json"
