# Real datasets: download, verify and unpack into resources/raw/<dataset>/ (`imbench download`).
#
# One rule for every dataset of the registry (imbench.data.registry: a dataset is one module with a
# DATASET spec). Its options come from config["download"][<dataset>] (the common keys of
# imbench.data.registry.COMMON_KEYS plus the dataset's own recipe options; unset keys keep the
# official sources). Downloaded files are kept in resources/downloads/<dataset>/, outside the
# rule's output, so an interrupted run resumes and a rerun does not fetch them again.
#
# ODIR-5K needs a Kaggle API token, or files placed by hand in resources/downloads/odir/ (the
# Kaggle zip or the OIA-ODIR "Training Set/" folder); an extracted tree placed directly in
# resources/raw/odir/ is used as it is (the rule then has nothing to do).
#
# index.undecodable (exclude | fail) also applies here: with `exclude` an image that does not decode
# is reported and kept, and the index step lists it in the task's exclusions.csv.

from imbench.data.registry import dataset_names

# Every configured download section is checked while planning (an unknown dataset or key is one
# error naming it), whether or not this run downloads that dataset.
for _dataset in config.get("download") or {}:
    download_args(_dataset)


localrules:
    download,


rule download:
    input:
        plugin=job_plugin,
    output:
        directory("resources/raw/{dataset}"),
    log:
        "logs/download/{dataset}.log",
    wildcard_constraints:
        dataset="|".join(dataset_names()),
    conda:
        "../../envs/imbench.yaml"
    params:
        args=lambda wildcards: download_args(wildcards.dataset),
        undecodable=config["index"]["undecodable"],
        plugin=job_plugin_args,
    shell:
        "imbench download {wildcards.dataset} --out {output} --undecodable {params.undecodable}"
        " {params.args} {params.plugin} > {log} 2>&1"
