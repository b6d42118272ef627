#!/usr/bin/env bash
# Stop the SLURM cluster of workflow/slurm/start_cluster.sh, one node or several (idempotent).
#
#   sudo workflow/slurm/stop_cluster.sh
#
# Stops slurmd (every node's), slurmctld, slurmdbd, mariadbd and munged by their pid files, in
# that order, and removes the fake GPU devices. Of a cluster with several nodes (--nodes N) it also
# ends what is left in the nodes' network namespaces (job steps of jobs still running), deletes the
# namespaces (imbench-node<i>, which takes their veth pairs with them) and the bridge imbslurm0.
# Packages, configuration, the accounting database and the job history stay, so the next
# start_cluster.sh is quick and `sacct` still lists earlier jobs.
set -euo pipefail

BRIDGE=imbslurm0   # names shared with start_cluster.sh
NETNS_PREFIX=imbench-

log() { printf '[stop_cluster] %s\n' "$*"; }
die() { printf '[stop_cluster] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (sudo $0)"

stop() {   # stop NAME PIDFILE
    local name=$1 pidfile=$2 pid i
    if [[ ! -s $pidfile ]] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        log "$name: not running"
        return 0
    fi
    pid=$(cat "$pidfile")
    log "$name: stopping (pid $pid)"
    kill "$pid"
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || { log "$name: stopped"; return 0; }
        sleep 0.5
    done
    die "$name (pid $pid) did not stop within 30 s"
}

if command -v squeue >/dev/null && squeue -h >/dev/null 2>&1 && [[ -n $(squeue -h -o %i) ]]; then
    log "warning: jobs still in the queue are ended with the cluster: $(squeue -h -o %i | tr '\n' ' ')"
    if compgen -G "/run/netns/${NETNS_PREFIX}node*" >/dev/null; then
        # Several nodes: their processes end with the namespaces below, so cancel the jobs first;
        # otherwise the controller would recover them as running at the next start.
        mapfile -t queued < <(squeue -h -o %i)
        scancel "${queued[@]}" || true
        for ((i = 0; i < 20; i++)); do
            [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
            sleep 0.5
        done
        log "cancelled them"
    fi
fi

stop slurmd /run/slurmd.pid
for pidfile in /run/slurmd-node*.pid; do
    [[ -e $pidfile ]] || continue
    node=${pidfile#/run/slurmd-}
    stop "slurmd of ${node%.pid}" "$pidfile"
done
stop slurmctld /run/slurmctld.pid
stop slurmdbd /run/slurmdbd.pid
stop mariadbd /run/mysqld/mariadbd.pid
stop munged /run/munge/munged.pid

for dev in /dev/fakegpu*; do
    [[ -e $dev ]] || continue
    rm -f "$dev"
    log "removed $dev"
done

# The nodes' namespaces and their network (several nodes only).
for nsfile in /run/netns/"$NETNS_PREFIX"node*; do
    [[ -e $nsfile ]] || continue
    ns=${nsfile##*/}
    mapfile -t left < <(ip netns pids "$ns" 2>/dev/null)
    if ((${#left[@]})); then
        log "$ns: ending processes left in it: ${left[*]}"
        kill "${left[@]}" 2>/dev/null || true
        for ((i = 0; i < 20; i++)); do
            [[ -z $(ip netns pids "$ns" 2>/dev/null) ]] && break
            sleep 0.5
        done
        mapfile -t left < <(ip netns pids "$ns" 2>/dev/null)
        ((${#left[@]} == 0)) || kill -KILL "${left[@]}" 2>/dev/null || true
    fi
    ip netns del "$ns"
    log "removed network namespace $ns"
done
# Veth pairs go with their namespace (the kernel removes them shortly after); any left are
# deleted here, and one that disappears meanwhile is no error.
while read -r veth; do
    [[ -n $veth ]] || continue
    if ip link del "$veth" 2>/dev/null; then log "removed $veth"; fi
done < <(ip -o link show type veth 2>/dev/null | sed -n 's/^[0-9]*: \(imbn[0-9]*h\)@.*/\1/p')
if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link del "$BRIDGE"
    log "removed bridge $BRIDGE"
fi
log "done"
