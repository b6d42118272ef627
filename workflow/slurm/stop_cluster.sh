#!/usr/bin/env bash
# Stop the one-node SLURM cluster of workflow/slurm/start_cluster.sh (idempotent).
#
#   sudo workflow/slurm/stop_cluster.sh
#
# Stops slurmd, slurmctld, slurmdbd, mariadbd and munged by their pid files, in that order, and
# removes the fake GPU devices. Packages, configuration, the accounting database and the job
# history stay, so the next start_cluster.sh is quick and `sacct` still lists earlier jobs.
set -euo pipefail

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
fi

stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
stop slurmdbd /run/slurmdbd.pid
stop mariadbd /run/mysqld/mariadbd.pid
stop munged /run/munge/munged.pid

for dev in /dev/fakegpu*; do
    [[ -e $dev ]] || continue
    rm -f "$dev"
    log "removed $dev"
done
log "done"
