#!/usr/bin/env bash
# Run a tiny grid (workflow/slurm/demo.yaml) through the SLURM profile (profiles/slurm) on the
# cluster that answers `sinfo`, then check that every output exists and that `sacct` shows every
# job of the run COMPLETED, with a GPU for each training job; it also prints the jobs per node.
#
#   sudo workflow/slurm/start_cluster.sh      # a local one-node cluster, if there is no real one
#                                             # (--nodes 2: a local two-node one)
#   workflow/slurm/run_demo.sh
#
# The demo runs in its own working directory, IMBENCH_SLURM_DEMO_DIR (default results/slurm_demo,
# git-ignored; it must be on a file system the compute nodes share), with its own resources/,
# results/, logs/ and .snakemake/, so it never touches the main resources/ of the repository. It
# starts from an empty directory on every run, so that every job really goes through SLURM.
#
# Beyond the profile, the command line only adds:
#   --max-threads ${IMBENCH_SLURM_DEMO_THREADS:-1}: CPU cores per job, so that the profile's
#       per-rule threads (train 4, cache 8) fit a small node and two jobs run side by side;
#   --slurm-init-seconds-before-status-checks 5: first status poll after 5 s, not 40 (the
#       jobs of this grid take seconds);
#   --verbose: the log then has each job's sbatch command line, printed below for the train jobs.
# Any further arguments are passed on to snakemake, e.g. run_demo.sh --slurm-keep-successful-logs.
# Environment: SNAKEMAKE (default .venv/bin/snakemake, else snakemake on PATH), IMBENCH_SLURM_DEMO_DIR,
# IMBENCH_SLURM_DEMO_THREADS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
DEMO_DIR=${IMBENCH_SLURM_DEMO_DIR:-results/slurm_demo}
THREADS=${IMBENCH_SLURM_DEMO_THREADS:-1}
EXPERIMENT=slurm_demo   # as in demo.yaml
EXPECTED_JOBS=9         # synthetic_data index split cache 2*train 2*evaluate explain (aggregate is local)

log() { printf '[run_demo] %s\n' "$*"; }
die() { printf '[run_demo] ERROR: %s\n' "$*" >&2; exit 1; }

if [[ -n ${SNAKEMAKE:-} ]]; then
    :
elif [[ -x $ROOT/.venv/bin/snakemake ]]; then
    SNAKEMAKE=$ROOT/.venv/bin/snakemake
else
    SNAKEMAKE=$(command -v snakemake) || die "snakemake not found: set SNAKEMAKE or create .venv (make install)"
fi
PYTHON=$(dirname "$SNAKEMAKE")/python
[[ -x $PYTHON ]] || PYTHON=python3

# --- preconditions --------------------------------------------------------------------------------
command -v sinfo >/dev/null || die "sinfo not found: no SLURM client here (local test cluster: sudo workflow/slurm/start_cluster.sh)"
timeout 20 sinfo -h -o %a >/dev/null 2>&1 \
    || die "no SLURM controller answers sinfo (local test cluster: sudo workflow/slurm/start_cluster.sh)"
timeout 20 sacct -n -X -S now >/dev/null 2>&1 \
    || die "sacct does not work (no accounting): the plugin's job polling needs it; see docs/slurm.md"
"$PYTHON" -c 'import snakemake_executor_plugin_slurm' 2>/dev/null \
    || die "snakemake-executor-plugin-slurm is not installed in $("$PYTHON" -c 'import sys; print(sys.prefix)'): pip install -e \".[slurm]\""
plugin_version=$("$PYTHON" -c 'from importlib.metadata import version; print(version("snakemake-executor-plugin-slurm"))')

case $DEMO_DIR in
    "" | / | . | "$ROOT" | "$ROOT/") die "IMBENCH_SLURM_DEMO_DIR must be a dedicated directory, got '$DEMO_DIR'" ;;
esac
if [[ -e $DEMO_DIR ]]; then
    # Only a folder left by an earlier demo (or an empty one) is removed.
    if [[ -e $DEMO_DIR/run_demo.log || -z $(ls -A "$DEMO_DIR") ]]; then
        log "removing the previous demo in $DEMO_DIR"
        rm -rf "$DEMO_DIR"
    else
        die "$DEMO_DIR exists and is not an earlier demo (no run_demo.log): choose another IMBENCH_SLURM_DEMO_DIR"
    fi
fi
mkdir -p "$DEMO_DIR"
DEMO_DIR=$(cd "$DEMO_DIR" && pwd)
RUN_LOG=$DEMO_DIR/run_demo.log

log "$(date -u '+%Y-%m-%d %H:%M:%S UTC'); $(sinfo --version); snakemake $("$SNAKEMAKE" --version); snakemake-executor-plugin-slurm $plugin_version"
sinfo
log "working directory: $DEMO_DIR (log: $RUN_LOG)"

# --- the run --------------------------------------------------------------------------------------
cmd=("$SNAKEMAKE" --profile "$ROOT/profiles/slurm" --snakefile "$ROOT/Snakefile" --directory "$DEMO_DIR"
     --configfile "$ROOT/workflow/slurm/demo.yaml"
     --max-threads "$THREADS" --slurm-init-seconds-before-status-checks 5 --verbose "$@")
log "command: ${cmd[*]}"
start_epoch=$(date +%s)
set +e
"${cmd[@]}" >"$RUN_LOG" 2>&1
rc=$?
set -e
elapsed=$(($(date +%s) - start_epoch))
log "snakemake exited with $rc after ${elapsed} s; last lines of its log:"
grep -v '^DEBUG\|^\s*$' "$RUN_LOG" | tail -n 6
((rc == 0)) || die "snakemake failed (exit $rc): see $RUN_LOG and $DEMO_DIR/.snakemake/slurm_logs/"

# --- checks ---------------------------------------------------------------------------------------
out=$DEMO_DIR/results/$EXPERIMENT
missing=()
for f in tables/summary.csv tables/metrics_long.csv tables/paired_vs_ce.csv tables/synthetic.md \
    figures/synthetic_tsne.png figures/synthetic_methods.png \
    synthetic/test_resnet/ce/seed0/metrics.json synthetic/test_resnet/focal/seed0/metrics.json \
    synthetic/test_resnet/ce/seed0/best.pt synthetic/test_resnet/focal/seed0/best.pt; do
    [[ -s $out/$f ]] || missing+=("$f")
done
((${#missing[@]} == 0)) || die "missing outputs under $out: ${missing[*]}"
log "all expected outputs exist under $out"

run_id=$(sed -n 's/.*SLURM run ID: \([^ ]*\).*/\1/p' "$RUN_LOG" | head -n 1)
[[ -n $run_id ]] || die "no 'SLURM run ID' line in $RUN_LOG: were the jobs submitted to SLURM?"
log "SLURM run ID (the job name of every job of this run): $run_id"
log "sbatch command lines of the train jobs (from the log; the --wrap payload is cut):"
grep -o 'sbatch call: sbatch .*rule_train_.*' "$RUN_LOG" | sed 's/ --wrap.*//; s/^sbatch call: //' || true
fields=JobID,JobName%48,Partition,Account,AllocCPUS,AllocTRES%40,NodeList,State,ExitCode,Elapsed,Comment%70
sacct -X --name "$run_id" -S now-1days -o "$fields"
table=$(sacct -X -n -P --name "$run_id" -S now-1days -o JobID,Partition,AllocTRES,State,Comment,NodeList)
n_jobs=$(grep -c . <<<"$table" || true)
n_done=$(awk -F'|' '$4 == "COMPLETED"' <<<"$table" | grep -c . || true)
n_gpu_train=$(awk -F'|' '$5 ~ /^rule_train_/ && $2 == "gpu" && $3 ~ /gres\/gpu=1/' <<<"$table" | grep -c . || true)
((n_jobs == EXPECTED_JOBS)) || die "sacct lists $n_jobs jobs for this run, expected $EXPECTED_JOBS"
((n_done == n_jobs)) || die "only $n_done of $n_jobs jobs are COMPLETED in sacct"
((n_gpu_train == 2)) || die "expected 2 train jobs on partition gpu with gres/gpu=1, sacct shows $n_gpu_train"
log "jobs per node: $(awk -F'|' '{n[$6]++} END {for (k in n) printf "%s=%d ", k, n[k]}' <<<"$table" | xargs -n1 | sort | xargs)"
log "OK: $n_jobs SLURM jobs COMPLETED (2 train jobs with one GPU each on partition gpu), ${elapsed} s"
