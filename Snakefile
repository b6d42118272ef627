# imbench: class-imbalance methods for medical image classification, as one Snakemake workflow.
#
#   snakemake --cores all                          the grid of config.yaml (synthetic data, CPU)
#   snakemake --cores all --configfile experiments/<name>.yaml
#   snakemake --report results/<experiment>/report.html
#
# The rules are thin shell calls of the package's CLI (`imbench <stage> ...`); see README.md.

import gc

from snakemake.utils import min_version

min_version("9.0")

# Planning a paper grid creates millions of small objects (jobs, files, wildcards), almost none of
# them garbage. With Python's default thresholds (700, 10, 10) the cyclic collector ran about 2,000
# times and took 8–11 % of `snakemake -n` on the largest grid; at (50,000, 20, 20) it runs a few
# dozen times (see BENCHMARKS.md, planning). Reference counting still frees everything acyclic at
# once, and the collector still runs, so a long scheduling process does not grow.
gc.set_threshold(50_000, 20, 20)


configfile: "config.yaml"


# Jobs find the `imbench` CLI through PATH (see workflow/rules/common.smk).
envvars:
    "PATH",


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    default_target: True
    input:
        aggregate_outputs(),
        all_cell_files(),  # a deleted cell file (weights, history, metrics) is recomputed
