#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for `pytest -m slurm` and for trying a sweep before sending it
# to a shared cluster (docs/cluster.md, "Try Slurm on your laptop").
#
#   sudo tests/cluster/start_slurm.sh    # installs slurm-wlm + munge if missing, starts munged, slurmctld, slurmd
#   sudo tests/cluster/stop_slurm.sh     # stops them again
#
# Idempotent: a second run leaves running daemons alone (restarting them only when the machine's slurm.conf had to
# change) and returns once the node is idle. Needs root; the only network it uses is apt's package mirror.
# Start it under `nice -n 19` and the jobs run at that niceness too (Slurm's tasks inherit slurmd's priority).
#
# The node is sized from the machine (`slurmd -C`: CPUs, sockets, cores, threads, memory); jobs run as the user who
# submits them, root included. No slurmdbd: `sacct` needs its database, so job records are in the completion log
# /var/log/slurm/jobcomp.log (one line per job end, requeues included) and in `scontrol show job` (for 5 minutes
# after a job ends). A /etc/slurm/slurm.conf not written by this script is never overwritten.
set -euo pipefail

MARK="# written by softqmix tests/cluster/start_slurm.sh"
CONF=/etc/slurm/slurm.conf
LOGS=/var/log/slurm
RUN=/run/slurm
WAIT_S=${SLURM_START_TIMEOUT_S:-90}

say() { echo "start_slurm: $*"; }
die() {
    echo "start_slurm: error: $*" >&2
    exit 1
}
cannot_install() { # exit code 3: the tests skip (instead of failing) on a machine where Slurm cannot be installed
    echo "start_slurm: error: cannot install slurm-wlm and munge: $*" >&2
    exit 3
}

[[ $EUID -eq 0 ]] || die "run as root (it installs packages and starts munged, slurmctld and slurmd)"

# --- packages -------------------------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || cannot_install "no apt-get on this machine"
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || cannot_install "apt-get update failed"
    # the packages' own service start may be refused (no systemd in a container); the daemons are started below
    apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null || cannot_install "apt-get install failed"
fi

# --- munge: the authentication every Slurm daemon and command uses ---------------------------------------------
KEY=/etc/munge/munge.key
if [[ ! -s $KEY ]]; then
    say "creating $KEY"
    mungekey --create --keyfile="$KEY"
fi
chown munge:munge "$KEY" && chmod 400 "$KEY"
install -d -o munge -g munge -m 755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    runuser -u munge -- munged
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# --- slurm.conf, sized from this machine ------------------------------------------------------------------------
HOST=$(hostname -s)
# `slurmd -C` prints what slurmd will detect: "NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..", then UpTime
NODE=$(slurmd -C | sed -n 1p)
[[ $NODE == NodeName=* ]] || die "slurmd -C did not describe this node: $NODE"
[[ $NODE == *RealMemory=* ]] || die "slurmd -C reported no memory: $NODE"

NEW=$(mktemp)
trap 'rm -f "$NEW"' EXIT
cat >"$NEW" <<EOF
$MARK
# A one-node cluster for tests and for trying sweeps (docs/cluster.md of softqmix).
ClusterName=softqmix-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job may start again cred_expire + 1 s after its requeue: 11 s instead of Slurm's default 121 s
AuthInfo=cred_expire=10
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# no cgroups: works in containers and VMs without a delegated cgroup tree
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
# no slurmdbd, so no sacct; each job's end (state, exit code, requeues) goes to the completion log instead
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGS/jobcomp.log
SchedulerType=sched/backfill
# look at pending jobs every 2 s (defaults: 60 s and 30 s), so a requeued job starts once it is eligible
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# a job that asks for more CPUs or memory than the node has is refused by sbatch, instead of pending for ever
EnforcePartLimits=ALL
MpiDefault=none
SwitchType=switch/none
# a node that was down (e.g. the machine rebooted) comes back when slurmd registers
ReturnToService=2
# seconds between SIGTERM and SIGKILL when a job is cancelled, requeued or reaches its time limit
KillWait=30
MinJobAge=300
$NODE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

changed=0
if [[ -e $CONF ]] && ! head -n 1 "$CONF" | grep -qxF "$MARK"; then
    die "$CONF exists and was not written by this script; move it away to use the test cluster"
fi
if ! cmp -s "$NEW" "$CONF"; then
    install -d /etc/slurm
    install -m 644 "$NEW" "$CONF"
    changed=1
    say "wrote $CONF ($NODE)"
fi

# --- daemons -----------------------------------------------------------------------------------------------------
install -d -o slurm -g slurm -m 755 "$LOGS" /var/lib/slurm/slurmctld
install -d -m 755 "$RUN" /var/lib/slurm/slurmd

running() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
# a daemon started otherwise (systemd, after a reboot: Debian's packages enable their units) is left to its owner
for daemon in slurmctld slurmd; do
    if ! running "$RUN/$daemon.pid" && pgrep -x "$daemon" >/dev/null; then
        die "$daemon runs already (pid $(pgrep -x "$daemon" | tr '\n' ' ')), not started by this script: stop it first" \
            "(systemctl stop $daemon, or kill that pid)"
    fi
done

if [[ $changed == 1 ]] && { running "$RUN/slurmctld.pid" || running "$RUN/slurmd.pid"; }; then
    say "slurm.conf changed: restarting the daemons"
    "$(dirname "$0")/stop_slurm.sh" --keep-munge
fi
if ! running "$RUN/slurmctld.pid"; then
    say "starting slurmctld (log: $LOGS/slurmctld.log)"
    slurmctld
fi
if ! running "$RUN/slurmd.pid"; then
    say "starting slurmd (log: $LOGS/slurmd.log)"
    slurmd
fi

# --- wait for an idle node ---------------------------------------------------------------------------------------
state=""
for _ in $(seq $((WAIT_S * 2))); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
    case $state in
    idle) break ;;
    drain* | *drain) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.5
done
if [[ $state != idle ]]; then
    tail -n 20 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 || true
    die "node $HOST is '${state:-unknown}' after ${WAIT_S}s, not idle (jobs still running? logs above)"
fi
say "node $HOST is idle: $(sinfo -h -N -o '%N %c CPUs %m MB partition %P')"
