# shellcheck shell=bash
# A throwaway single-node Slurm cluster on localhost, for tests. Source this
# file, then `hs_cluster_start DIR` / `hs_cluster_stop`. Everything lives in
# DIR (which the munge user must be able to reach): munge key and socket,
# slurm.conf, state, spool and logs; the daemons
# (munged as the munge user, slurmctld and slurmd as root) run in the
# foreground of background shells and are stopped by their PIDs.
# Needs root, munge and slurm-wlm (scripts/setup.sh installs them).

HS_CLUSTER_PIDS=()

# Prints why a cluster cannot be started here, or nothing when it can.
hs_cluster_unavailable() {
    local b
    [ "$(id -u)" = 0 ] || { echo "needs root (slurmd, and munged as the munge user)"; return; }
    for b in munged mungekey slurmctld slurmd sbatch scontrol setpriv python3; do
        command -v "$b" >/dev/null || { echo "'$b' not found (scripts/setup.sh installs munge and slurm-wlm)"; return; }
    done
    id munge >/dev/null 2>&1 || echo "no 'munge' user (the munge package creates it)"
}

# Two free TCP ports on localhost, one per line.
_hs_free_ports() {
    python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print("\n".join(str(x.getsockname()[1]) for x in s))'
}

# Waits up to $2 seconds for command $1 (a string) to succeed.
_hs_wait_for() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        eval "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

_hs_start_daemon() { # name, command...
    local name=$1
    shift
    "$@" >"$HS_CLUSTER_DIR/log/$name.stdout" 2>&1 &
    HS_CLUSTER_PIDS+=("$!")
}

# Starts munged, slurmctld and slurmd with their state in DIR and exports
# SLURM_CONF. Returns non-zero (and prints the daemon logs) when the node does
# not come up idle within 30 s.
hs_cluster_start() {
    HS_CLUSTER_DIR=$1
    local d=$HS_CLUSTER_DIR host ports ctld_port slurmd_port
    host=$(hostname -s)
    mapfile -t ports < <(_hs_free_ports)
    ctld_port=${ports[0]} slurmd_port=${ports[1]}
    mkdir -p "$d/munge" "$d/state" "$d/spool/slurmd-$host" "$d/log"
    chmod 755 "$d"

    # munged refuses keys and sockets that others could write
    mungekey --create --keyfile="$d/munge/munge.key" --force >/dev/null
    chown -R munge: "$d/munge"
    chmod 755 "$d/munge"
    chmod 600 "$d/munge/munge.key"
    _hs_start_daemon munged setpriv --reuid=munge --regid=munge --init-groups \
        munged --foreground --key-file="$d/munge/munge.key" --socket="$d/munge/munge.socket" \
        --pid-file="$d/munge/munged.pid" --log-file="$d/munge/munged.log" --seed-file="$d/munge/munged.seed"
    if ! _hs_wait_for "[ -S '$d/munge/munge.socket' ]" 10; then
        echo "cluster: munged did not start" >&2
        cat "$d/log/munged.stdout" "$d/munge/munged.log" >&2 2>/dev/null
        return 1
    fi

    # proctrack/linuxproc and task/none: the cgroup plugins fail in containers.
    # cred_expire is also the wait before a requeued job may start again.
    cat >"$d/slurm.conf" <<EOF
ClusterName=hstest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/munge/munge.socket,cred_expire=10
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool/slurmd-%n
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=kill_invalid_depend
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
KillWait=10
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    # jobs do not touch this "GPU"; it exists so that --gres=gpu:1 is scheduled
    echo "NodeName=$host Name=gpu File=/dev/null" >"$d/gres.conf"
    export SLURM_CONF=$d/slurm.conf

    _hs_start_daemon slurmctld slurmctld -D -i -f "$d/slurm.conf"
    _hs_start_daemon slurmd slurmd -D -N "$host" -f "$d/slurm.conf"
    if ! _hs_wait_for "scontrol show node '$host' | grep -Eq 'State=IDLE[ +]|State=IDLE$'" 30; then
        echo "cluster: node $host did not become idle" >&2
        scontrol show node "$host" >&2 2>/dev/null || true
        tail -n 30 "$d"/log/*.log "$d"/log/*.stdout >&2 2>/dev/null
        return 1
    fi
}

# Stops the daemons this shell started, by PID, newest first; SIGKILL after 10 s.
hs_cluster_stop() {
    local i pid
    for ((i = ${#HS_CLUSTER_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${HS_CLUSTER_PIDS[i]}
        kill -TERM "$pid" 2>/dev/null || continue
        _hs_wait_for "! kill -0 $pid" 10 || kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    HS_CLUSTER_PIDS=()
}
