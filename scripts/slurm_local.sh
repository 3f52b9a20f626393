#!/usr/bin/env bash
# A one-node SLURM on this machine, from Debian's packages, for tests/test_slurm.py and for trying
# `python -m jacnb.run CHAPTER --executor slurm --partition debug` without a cluster.
#
#   scripts/slurm_local.sh up       # install if needed, configure, start; wait until the node is idle
#   scripts/slurm_local.sh down     # cancel every job, stop slurmd, slurmctld and munged
#   scripts/slurm_local.sh status   # exit 0 if the node answers (idle, mixed or allocated)
#
# Needs root on Debian (or a derivative with Debian's slurm packages). The first `up` runs
# `apt-get update` once and installs slurmctld, slurmd, slurm-client and munge. The cluster is the
# smallest that runs job arrays: one node with this machine's CPUs and memory (as `slurmd -C`
# reports them), one partition `debug`, no accounting (no slurmdbd), no cgroups
# (ProctrackType=proctrack/linuxproc, TaskPlugin=task/none), SlurmUser root, and each task
# allocated by CPU (SelectType=select/cons_tres, CR_CPU), so a node with N CPUs runs N one-CPU
# tasks at once. `up` and `down` are idempotent: `up` on a running cluster with the same
# configuration only checks it; with a changed configuration it restarts it.
#
# Exit status: 0 done; 77 cannot run here (not root, not Debian, packages not installable): the
# message on stderr says which, and tests skip with it; 1 anything else (a daemon did not start,
# the node did not become idle), with the daemons' log tails on stderr.
set -euo pipefail

PARTITION=${JACNB_SLURM_PARTITION:-debug}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
UP_TIMEOUT=${JACNB_SLURM_UP_TIMEOUT:-60}
PACKAGES=(slurmctld slurmd slurm-client munge)

say() { echo "[slurm_local] $*" >&2; }
cannot() { say "cannot stand up a local SLURM: $*"; exit 77; }
fail() {
  say "FAILED: $*"
  for f in "$LOGS/slurmctld.log" "$LOGS/slurmd.log" /var/log/munge/munged.log; do
    [ -f "$f" ] && { say "--- tail $f"; tail -n 15 "$f" >&2; }
  done
  exit 1
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() {  # stop the daemon whose pid is in $1 (TERM, then KILL after 10 s)
  local file=$1 pid i
  alive "$file" || { rm -f "$file"; return 0; }
  pid=$(cat "$file")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$file"
}

check_host() {
  [ "$(id -u)" = 0 ] || cannot "not root (run as root: it installs packages and starts daemons)"
  [ -f /etc/debian_version ] && command -v apt-get >/dev/null ||
    cannot "not Debian (needs apt-get and Debian's slurm packages)"
}

install_packages() {
  local missing=0 p
  for p in slurmctld slurmd sinfo munged; do
    command -v "$p" >/dev/null || PATH=$PATH:/usr/sbin command -v "$p" >/dev/null || missing=1
  done
  [ "$missing" = 0 ] && return 0
  say "installing ${PACKAGES[*]} (apt-get update + install, once)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null 2>&1 ||
    cannot "apt-get update failed (offline?)"
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${PACKAGES[@]}" \
    >/dev/null 2>&1 || cannot "apt-get install ${PACKAGES[*]} failed (packages unavailable?)"
}

start_munge() {
  install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
  install -d -o munge -g munge -m 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then
      mungekey --create --keyfile=/etc/munge/munge.key
    else
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    return 0  # a munged answers (started by us before, or by the package's init script)
  fi
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock "$MUNGE_PID"
  runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PID" ||
    fail "munged did not start"
  local i
  for i in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "munged started but does not answer"
}

write_conf() {  # prints "changed" if slurm.conf was (re)written
  local host node new
  host=$(hostname -s)
  # this machine as slurmd sees it: CPUs, sockets/cores/threads, RealMemory
  node=$(/usr/sbin/slurmd -C 2>/dev/null | head -n 1) || true
  [[ $node == NodeName=* ]] || node="NodeName=$host CPUs=$(nproc)"
  node=${node/NodeName=* CPUs=/NodeName=$host CPUs=}
  new=$(cat <<EOF
# written by scripts/slurm_local.sh: a one-node SLURM for tests, no accounting, no cgroups
ClusterName=jacnb
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=5
$node State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
)
  install -d -m 0755 "$CONF_DIR" "$STATE" "$SPOOL" "$LOGS"
  if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$new" ]; then
    return 0
  fi
  printf '%s\n' "$new" >"$CONF"
  echo changed
}

node_state() { sinfo -h -p "$PARTITION" -o %T 2>/dev/null | head -n 1; }

up() {
  local t0 changed i state
  t0=$(date +%s.%N)
  check_host
  install_packages
  export PATH=$PATH:/usr/sbin
  start_munge
  changed=$(write_conf)
  if [ -n "$changed" ]; then
    stop_pidfile "$SLURMD_PID"
    stop_pidfile "$CTLD_PID"
  fi
  alive "$CTLD_PID" || slurmctld -c -i || fail "slurmctld did not start"
  alive "$SLURMD_PID" || slurmd || fail "slurmd did not start"
  for i in $(seq $((UP_TIMEOUT * 5))); do
    state=$(node_state)
    case $state in
      idle | mixed | allocated | completing) break ;;
      drain* | down*) scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.2
  done
  case $state in
    idle | mixed | allocated | completing) ;;
    *) fail "node state '${state:-none}' after ${UP_TIMEOUT}s (want idle)" ;;
  esac
  say "up: partition $PARTITION, node $(hostname -s) $state," \
    "$(sinfo -h -p "$PARTITION" -o %c) CPUs, in $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}") s"
}

down() {
  local i
  export PATH=$PATH:/usr/sbin
  if alive "$CTLD_PID" && command -v squeue >/dev/null; then
    # shellcheck disable=SC2046
    scancel $(squeue -h -o %A 2>/dev/null) 2>/dev/null || true
    for i in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  stop_pidfile "$SLURMD_PID"
  stop_pidfile "$CTLD_PID"
  stop_pidfile "$MUNGE_PID"
  say "down"
}

status() {
  export PATH=$PATH:/usr/sbin
  case $(node_state) in
    idle | mixed | allocated | completing) sinfo -p "$PARTITION"; return 0 ;;
    *) say "no local SLURM answering"; return 1 ;;
  esac
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
