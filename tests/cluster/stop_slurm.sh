#!/usr/bin/env bash
# Stops what tests/cluster/start_slurm.sh started: slurmd, slurmctld and (unless --keep-munge) munged.
# Idempotent: daemons that are not running are skipped. Jobs still queued or running are cancelled first, so that
# they neither outlive slurmd (their slurmstepd would) nor start again with the next start_slurm.sh.
# The packages, /etc/slurm/slurm.conf and the logs in /var/log/slurm stay.
set -euo pipefail

[[ $EUID -eq 0 ]] || {
    echo "stop_slurm: error: run as root" >&2
    exit 1
}

stop() { # stop <name> <pid file>: SIGTERM, then wait up to 30 s for the process to go
    local name=$1 pidfile=$2 pid
    [[ -s $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || return 0
    echo "stop_slurm: stopping $name (pid $pid)"
    kill "$pid"
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "stop_slurm: error: $name (pid $pid) did not stop within 30 s" >&2
    return 1
}

if [[ -s /run/slurm/slurmctld.pid ]] && kill -0 "$(cat /run/slurm/slurmctld.pid)" 2>/dev/null; then
    jobs=$(squeue -h -o %A 2>/dev/null | sort -u || true)
    if [[ -n $jobs ]]; then
        echo "stop_slurm: cancelling jobs" $jobs
        # shellcheck disable=SC2086
        scancel $jobs || true
        for _ in $(seq 80); do # KillWait (30 s) plus margin
            [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
fi
stop slurmd /run/slurm/slurmd.pid
stop slurmctld /run/slurm/slurmctld.pid
if [[ ${1:-} != --keep-munge ]]; then
    stop munged /run/munge/munged.pid
fi
