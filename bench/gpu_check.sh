#!/usr/bin/env bash
# GPU acceptance check (bench/gpu_check.py): every stage on one GPU within 8 minutes, one result
# JSON (bench/results/gpu_check.json) and its rows in the table of BENCHMARKS.md.
#
#   bench/gpu_check.sh                  # on a machine with a CUDA GPU (make gpu-check)
#   bench/gpu_check.sh --dry-run        # the same stages at tiny sizes on the CPU
#
# PYTHON selects the interpreter (default: .venv/bin/python when present, else python3); extra
# arguments go to bench/gpu_check.py. Exit status: 0 when every stage passed, 1 when one failed
# (the JSON names it), 124 when the 8-minute limit was reached.
set -euo pipefail

cd "$(dirname "$0")/.."
if [[ -z ${PYTHON:-} ]]; then
    PYTHON=python3
    [[ -x .venv/bin/python ]] && PYTHON=.venv/bin/python
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
LIMIT_S=${IMBENCH_GPU_CHECK_LIMIT_S:-480}

status=0
timeout --signal=TERM --kill-after=15 "$LIMIT_S" "$PYTHON" bench/gpu_check.py "$@" || status=$?
if [[ " $* " != *" --dry-run "* && -f bench/results/gpu_check.json ]]; then
    "$PYTHON" bench/report.py
fi
exit "$status"
