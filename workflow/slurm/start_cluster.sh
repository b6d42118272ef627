#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine, to run profiles/slurm end to end without a real
# cluster (workflow/slurm/run_demo.sh). Debian 12 / Ubuntu packages (Slurm 22.05 on Debian 12);
# needs root, no systemd: every daemon is started by hand and writes a pid file under /run.
#
#   sudo workflow/slurm/start_cluster.sh      # install if needed, configure, start (idempotent)
#   sudo workflow/slurm/stop_cluster.sh       # stop every daemon again
#
# What it sets up:
#   - packages: munge slurm-wlm slurmctld slurmd slurm-client slurmdbd mariadb-server (apt-get,
#     about 30 s, only those not installed yet);
#   - one node, "localhost", with this machine's CPUs, in two partitions named like the
#     profile's: "cpu" (the default) and "gpu";
#   - fake GPUs (GRES gpu, character devices aliasing /dev/null) so that `--gpus=1` jobs are
#     scheduled and get CUDA_VISIBLE_DEVICES; the code in them still runs on the CPU;
#   - accounting (MariaDB + slurmdbd), so `sacct` works: the plugin polls job states with sacct,
#     and without accounting that polling never sees the jobs finish;
#   - the account "imbench" (the profile's slurm_account) with root (and $SUDO_USER) in it;
#     AccountingStorageEnforce=associations makes SLURM reject jobs with an unknown account.
#
# Memory: the node declares IMBENCH_SLURM_NODE_MEM_MB (default 65536) whatever the machine has
# (SlurmdParameters=config_overrides), so jobs sized for a real GPU node (16 GB in the profile)
# are accepted on a small machine. Nothing is enforced (no cgroups): it is a test cluster.
#
# Environment: IMBENCH_SLURM_CLUSTER (imbench-local), IMBENCH_SLURM_ACCOUNT (imbench),
# IMBENCH_SLURM_GPUS (2), IMBENCH_SLURM_NODE_MEM_MB (65536).
# Logs: /var/log/slurm/{slurmctld,slurmd,slurmdbd}.log and /var/log/slurm/mariadb.log.
set -euo pipefail

CLUSTER=${IMBENCH_SLURM_CLUSTER:-imbench-local}
ACCOUNT=${IMBENCH_SLURM_ACCOUNT:-imbench}
NGPUS=${IMBENCH_SLURM_GPUS:-2}
NODE_MEM_MB=${IMBENCH_SLURM_NODE_MEM_MB:-65536}
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
MARKER="# imbench local test cluster: written by workflow/slurm/start_cluster.sh"
DB_PASS=imbench-local   # MariaDB user of slurmdbd; the server only listens on 127.0.0.1
PACKAGES=(munge slurm-wlm slurmctld slurmd slurm-client slurmdbd mariadb-server)

log() { printf '[start_cluster] %s\n' "$*"; }
die() { printf '[start_cluster] ERROR: %s\n' "$*" >&2; exit 1; }
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }   # alive PIDFILE
wait_for() {   # wait_for SECONDS DESCRIPTION COMMAND...: poll every 0.5 s until COMMAND succeeds
    local seconds=$1 what=$2; shift 2
    local i
    for ((i = 0; i < seconds * 2; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "$what did not come up within $seconds s"
}

[[ $(id -u) -eq 0 ]] || die "run as root (sudo $0): it installs packages and starts daemons"
[[ $NGPUS =~ ^[1-9][0-9]*$ ]] || die "IMBENCH_SLURM_GPUS must be a positive integer, got '$NGPUS'"

# --- 1. packages ------------------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
    log "installing ${missing[*]} (apt-get, about 30 s)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
else
    log "packages already installed"
fi

# --- 2. configuration ---------------------------------------------------------------------------
if [[ -f $CONF_DIR/slurm.conf ]] && ! grep -qF "$MARKER" "$CONF_DIR/slurm.conf"; then
    die "$CONF_DIR/slurm.conf exists and was not written by this script: not overwriting it (is this a real cluster node?)"
fi
mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd

last=$((NGPUS - 1))
gpu_files="/dev/fakegpu0"
((last > 0)) && gpu_files="/dev/fakegpu[0-$last]"

new_conf=$(mktemp)
trap 'rm -f "$new_conf"' EXIT
cat >"$new_conf" <<CONF
$MARKER
# One node ("localhost") in two partitions, fake GPUs, accounting through slurmdbd.
ClusterName=$CLUSTER
SlurmctldHost=localhost
AuthType=auth/munge
CredType=cred/munge
# No cgroups needed (no systemd here): plain process tracking, no CPU binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Trust the node line below (memory is declared, not measured).
SlurmdParameters=config_overrides
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
MpiDefault=none
GresTypes=gpu
NodeName=localhost CPUs=$(nproc) RealMemory=$NODE_MEM_MB Gres=gpu:$NGPUS State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
CONF

if [[ -f $CONF_DIR/slurm.conf ]] && ! cmp -s "$new_conf" "$CONF_DIR/slurm.conf" \
    && { alive /run/slurmctld.pid || alive /run/slurmd.pid; }; then
    die "the configuration changed while SLURM is running: run workflow/slurm/stop_cluster.sh first"
fi
cp "$new_conf" "$CONF_DIR/slurm.conf"
printf '%s\nAutoDetect=off\nNodeName=localhost Name=gpu File=%s\n' "$MARKER" "$gpu_files" >"$CONF_DIR/gres.conf"
cat >"$CONF_DIR/slurmdbd.conf" <<CONF
$MARKER
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$LOG_DIR/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
CONF
chmod 600 "$CONF_DIR/slurmdbd.conf"
log "wrote $CONF_DIR/slurm.conf, gres.conf, slurmdbd.conf (node: $(nproc) CPUs, $NODE_MEM_MB MB, $NGPUS fake GPUs)"

# Fake GPU devices: character devices 1:3 (= /dev/null), one per GPU.
for ((i = 0; i < NGPUS; i++)); do
    [[ -e /dev/fakegpu$i ]] || mknod "/dev/fakegpu$i" c 1 3
done

# --- 3. daemons, in dependency order -------------------------------------------------------------
# munge: authentication between all SLURM commands and daemons.
mkdir -p /run/munge && chown munge:munge /run/munge
if alive /run/munge/munged.pid; then
    log "munged already running"
else
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
fi
wait_for 10 munged bash -c 'munge -n | unmunge'

# MariaDB: the accounting database behind slurmdbd.
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
if [[ ! -d /var/lib/mysql/mysql ]]; then
    log "initialising the MariaDB data directory"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$LOG_DIR/mariadb-install.log" 2>&1
fi
if alive /run/mysqld/mariadbd.pid; then
    log "mariadbd already running"
else
    log "starting mariadbd (127.0.0.1 only)"
    setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --pid-file=/run/mysqld/mariadbd.pid \
        </dev/null >>"$LOG_DIR/mariadb.log" 2>&1 &
fi
wait_for 30 "mariadbd (see $LOG_DIR/mariadb.log)" mariadb -e 'select 1'
mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
            CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"

# slurmdbd: accounting daemon (sacct, sacctmgr).
if alive /run/slurmdbd.pid; then
    log "slurmdbd already running"
else
    log "starting slurmdbd"
    /usr/sbin/slurmdbd
fi
wait_for 30 "slurmdbd (see $LOG_DIR/slurmdbd.log)" bash -c 'exec 3<>/dev/tcp/127.0.0.1/6819'
wait_for 30 "slurmdbd answering sacctmgr (see $LOG_DIR/slurmdbd.log)" sacctmgr -n show cluster

# Cluster, account and users in the accounting database (before slurmctld, which enforces them).
sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER" \
    || sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -n -P show account format=account | grep -qx "$ACCOUNT" \
    || sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="imbench jobs" Organization=imbench >/dev/null
users=(root)
[[ -n ${SUDO_USER:-} && ${SUDO_USER} != root ]] && users+=("$SUDO_USER")
for u in "${users[@]}"; do
    sacctmgr -n -P show assoc where cluster="$CLUSTER" account="$ACCOUNT" user="$u" format=user | grep -qx "$u" \
        || sacctmgr -i add user "$u" Cluster="$CLUSTER" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" >/dev/null
done
log "account '$ACCOUNT' on cluster '$CLUSTER' for: ${users[*]}"

# slurmctld (controller), then slurmd (the node).
if alive /run/slurmctld.pid; then
    log "slurmctld already running"
else
    log "starting slurmctld"
    /usr/sbin/slurmctld
fi
wait_for 30 "slurmctld (see $LOG_DIR/slurmctld.log)" scontrol ping
if alive /run/slurmd.pid; then
    log "slurmd already running"
else
    log "starting slurmd"
    /usr/sbin/slurmd -N localhost
fi

node_ready() { sinfo -h -n localhost -o %t | grep -Eq '^(idle|mix|alloc)'; }
for ((i = 0; i < 60; i++)); do node_ready && break; sleep 0.5; done
if ! node_ready; then
    sinfo -R >&2 || true
    tail -n 20 "$LOG_DIR/slurmd.log" >&2 || true
    die "node localhost is not idle (state: $(sinfo -h -n localhost -o %t 2>/dev/null)); see above and $LOG_DIR/slurmd.log"
fi

log "cluster is up ($(sinfo --version)):"
sinfo
sinfo -o '%P %D %c %m %G'
log "next: workflow/slurm/run_demo.sh"
