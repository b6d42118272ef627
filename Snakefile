# imbench: class-imbalance methods for medical image classification, as one Snakemake workflow.
#
#   snakemake --cores all                          the grid of config.yaml (synthetic data, CPU)
#   snakemake --cores all --configfile experiments/<name>.yaml
#   snakemake --report results/<experiment>/report.html
#
# The rules are thin shell calls of the package's CLI (`imbench <stage> ...`); see README.md.

from snakemake.utils import min_version

min_version("9.0")


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
