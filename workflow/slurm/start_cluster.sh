#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine, to run profiles/slurm end to end without a real
# cluster (workflow/slurm/run_demo.sh). Debian 12 / Ubuntu packages (Slurm 22.05 on Debian 12);
# needs root, no systemd: every daemon is started by hand and writes a pid file under /run.
#
#   sudo workflow/slurm/start_cluster.sh      # install if needed, configure, start (idempotent)
#   sudo workflow/slurm/start_cluster.sh --nodes 2   # two nodes instead (see "Several nodes")
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
# Several nodes (--nodes N or IMBENCH_SLURM_NODES=N, N from 2 to 8; the default 1 is the set-up
# above): nodes node1..nodeN, each a slurmd in its own network namespace (imbench-node<i>, address
# <subnet>.<10+i>) and UTS namespace (hostname node<i>), all on a bridge (imbslurm0, <subnet>.1)
# that joins them to the controller's daemons, which stay in the machine's own namespaces. Each
# slurmd has its own spool directory (/var/spool/slurmd/node<i>), pid file (/run/slurmd-node<i>.pid)
# and log (/var/log/slurm/slurmd-node<i>.log); every node declares this machine's CPUs, the memory
# above and the fake GPUs, in both partitions. The namespaces share the file system, which stands
# in for the shared storage of a real cluster (munged's socket included, so one munged serves all).
# Jobs go to the least loaded node (CR_LLN), so that jobs that run side by side use both nodes.
#
# Environment: IMBENCH_SLURM_CLUSTER (imbench-local), IMBENCH_SLURM_ACCOUNT (imbench),
# IMBENCH_SLURM_GPUS (2), IMBENCH_SLURM_NODE_MEM_MB (65536), IMBENCH_SLURM_NODES (1),
# IMBENCH_SLURM_SUBNET (10.213.7: the first three octets of the nodes' /24 network).
# Logs: /var/log/slurm/{slurmctld,slurmd,slurmdbd}.log and /var/log/slurm/mariadb.log
# (several nodes: slurmd-node<i>.log instead of slurmd.log).
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
NNODES=${IMBENCH_SLURM_NODES:-1}
SUBNET=${IMBENCH_SLURM_SUBNET:-10.213.7}
BRIDGE=imbslurm0   # names shared with stop_cluster.sh
NETNS_PREFIX=imbench-

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

while (($#)); do
    case $1 in
        --nodes) (($# >= 2)) || die "--nodes needs a value (1 to 8)"; NNODES=$2; shift 2 ;;
        --nodes=*) NNODES=${1#--nodes=}; shift ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (expected --nodes N)" ;;
    esac
done

[[ $NGPUS =~ ^[1-9][0-9]*$ ]] || die "IMBENCH_SLURM_GPUS must be a positive integer, got '$NGPUS'"
[[ $NNODES =~ ^[1-8]$ ]] || die "the number of nodes (--nodes or IMBENCH_SLURM_NODES) must be 1 to 8, got '$NNODES'"
valid_subnet() {
    [[ $SUBNET =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] \
        && ((10#${BASH_REMATCH[1]} < 256 && 10#${BASH_REMATCH[2]} < 256 && 10#${BASH_REMATCH[3]} < 256))
}
valid_subnet || die "IMBENCH_SLURM_SUBNET must be the first three octets of an IPv4 /24 network (e.g. 10.213.7), got '$SUBNET'"
[[ $(id -u) -eq 0 ]] || die "run as root (sudo $0): it installs packages and starts daemons"
if ((NNODES > 1)); then
    for tool in ip unshare nsenter; do
        command -v "$tool" >/dev/null || die "'$tool' not found (package iproute2 / util-linux): needed for --nodes $NNODES"
    done
    if ip -o -4 addr show | grep -v " $BRIDGE " | grep -q " inet $SUBNET\."; then
        die "the network $SUBNET.0/24 is already used on this machine (ip -4 addr): set IMBENCH_SLURM_SUBNET"
    fi
fi
CTL_ADDR=$SUBNET.1
NODES=()
for ((i = 1; i <= NNODES; i++)); do NODES+=("node$i"); done
node_addr() { printf '%s.%d' "$SUBNET" $((10 + ${1#node})); }   # node_addr node<i>

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
# The lines that differ between one node and several; everything else is shared.
if ((NNODES == 1)); then
    node_list=localhost
    conf_header='# One node ("localhost") in two partitions, fake GPUs, accounting through slurmdbd.'
    ctl_host=SlurmctldHost=localhost
    select_params=SelectTypeParameters=CR_Core_Memory
    slurmd_files="SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log"
    node_lines="NodeName=localhost CPUs=$(nproc) RealMemory=$NODE_MEM_MB Gres=gpu:$NGPUS State=UNKNOWN"
else
    node_list=node[1-$NNODES]
    conf_header="# $NNODES nodes ($node_list, each a slurmd in its own network and UTS namespace on this machine)
# in two partitions, fake GPUs, accounting through slurmdbd."
    ctl_host="# The controller runs in the machine's own namespaces; the nodes reach it on the bridge address.
SlurmctldHost=localhost($CTL_ADDR)"
    select_params="# Least loaded node first, so that jobs running side by side spread over the nodes.
SelectTypeParameters=CR_Core_Memory,CR_LLN"
    slurmd_files="# One spool directory, pid file and log per node (%n: the node's name).
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log"
    node_lines=$(for n in "${NODES[@]}"; do
        printf 'NodeName=%s NodeAddr=%s NodeHostname=%s CPUs=%s RealMemory=%s Gres=gpu:%s State=UNKNOWN\n' \
            "$n" "$(node_addr "$n")" "$n" "$(nproc)" "$NODE_MEM_MB" "$NGPUS"
    done)
fi
cat >"$new_conf" <<CONF
$MARKER
$conf_header
ClusterName=$CLUSTER
$ctl_host
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
$select_params
ReturnToService=2
# Trust the node line below (memory is declared, not measured).
SlurmdParameters=config_overrides
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
$slurmd_files
MpiDefault=none
GresTypes=gpu
$node_lines
PartitionName=cpu Nodes=$node_list Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$node_list MaxTime=INFINITE State=UP
CONF

slurmd_running() {   # any slurmd of this script, one node or several
    local f
    for f in /run/slurmd.pid /run/slurmd-node*.pid; do alive "$f" && return 0; done
    return 1
}
if [[ -f $CONF_DIR/slurm.conf ]] && ! cmp -s "$new_conf" "$CONF_DIR/slurm.conf" \
    && { alive /run/slurmctld.pid || slurmd_running; }; then
    die "the configuration changed while SLURM is running: run workflow/slurm/stop_cluster.sh first"
fi
cp "$new_conf" "$CONF_DIR/slurm.conf"
printf '%s\nAutoDetect=off\nNodeName=%s Name=gpu File=%s\n' "$MARKER" "$node_list" "$gpu_files" >"$CONF_DIR/gres.conf"
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
shape="node:"
((NNODES > 1)) && shape="$NNODES nodes, each:"
log "wrote $CONF_DIR/slurm.conf, gres.conf, slurmdbd.conf ($shape $(nproc) CPUs, $NODE_MEM_MB MB, $NGPUS fake GPUs)"

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

# Several nodes: the network that joins the nodes' namespaces to the controller. A bridge with
# the controller's address; per node a network namespace with a veth pair (imbn<i>h on the
# bridge, eth0 inside). No name resolution is needed: slurm.conf gives every address.
if ((NNODES > 1)); then
    ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
    ip addr replace "$CTL_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    for n in "${NODES[@]}"; do
        ns=$NETNS_PREFIX$n veth=imbn${n#node}h
        [[ -e /run/netns/$ns ]] || ip netns add "$ns"
        ip link show "$veth" >/dev/null 2>&1 || ip link add "$veth" type veth peer name eth0 netns "$ns"
        ip link set "$veth" master "$BRIDGE" up
        ip -n "$ns" addr replace "$(node_addr "$n")/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        mkdir -p "/var/spool/slurmd/$n"
    done
    log "network: bridge $BRIDGE $CTL_ADDR/24; $(for n in "${NODES[@]}"; do printf '%s %s (netns %s%s)  ' "$n" "$(node_addr "$n")" "$NETNS_PREFIX" "$n"; done)"
fi

# slurmctld (controller), then slurmd (the node, or one per node in its namespaces).
if alive /run/slurmctld.pid; then
    log "slurmctld already running"
else
    log "starting slurmctld"
    /usr/sbin/slurmctld
fi
wait_for 30 "slurmctld (see $LOG_DIR/slurmctld.log)" scontrol ping
if ((NNODES == 1)); then
    if alive /run/slurmd.pid; then
        log "slurmd already running"
    else
        log "starting slurmd"
        /usr/sbin/slurmd -N localhost
    fi
    NODES=(localhost)
else
    for n in "${NODES[@]}"; do
        if alive "/run/slurmd-$n.pid"; then
            log "slurmd of $n already running"
        else
            log "starting slurmd of $n (netns $NETNS_PREFIX$n, hostname $n)"
            # nsenter, not `ip netns exec`: that remounts /sys, without the cgroup file systems
            # slurmd needs. $1 is expanded by the inner shell:
            # shellcheck disable=SC2016
            nsenter --net="/run/netns/$NETNS_PREFIX$n" unshare --uts \
                sh -c 'hostname "$1" && exec /usr/sbin/slurmd -N "$1"' sh "$n" \
                || die "slurmd of $n did not start: see $LOG_DIR/slurmd-$n.log"
        fi
    done
fi

node_ready() { sinfo -h -n "$1" -o %t | grep -Eq '^(idle|mix|alloc)'; }   # node_ready NODE
for n in "${NODES[@]}"; do
    for ((i = 0; i < 60; i++)); do node_ready "$n" && break; sleep 0.5; done
    if ! node_ready "$n"; then
        slurmd_log=$LOG_DIR/slurmd.log
        ((NNODES > 1)) && slurmd_log=$LOG_DIR/slurmd-$n.log
        sinfo -R >&2 || true
        tail -n 20 "$slurmd_log" >&2 || true
        die "node $n is not idle (state: $(sinfo -h -n "$n" -o %t 2>/dev/null)); see above and $slurmd_log"
    fi
done

log "cluster is up ($(sinfo --version)):"
sinfo
sinfo -o '%P %D %c %m %G'
log "next: workflow/slurm/run_demo.sh"
