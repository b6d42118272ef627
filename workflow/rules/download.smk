# Real datasets: download, verify and unpack into resources/raw/<dataset>/ (`imbench download`).
#
# Each rule is one call of `imbench download <dataset>`; its options come from
# config["download"][<dataset>] (keys in imbench.data.download.CONFIG_KEYS; unset keys keep the
# official sources). Downloaded files are kept in resources/downloads/<dataset>/, outside the
# rule's output, so an interrupted run resumes and a rerun does not fetch them again.
#
# ODIR-5K needs a Kaggle API token, or files placed by hand in resources/downloads/odir/ (the
# Kaggle zip or the OIA-ODIR "Training Set/" folder); an extracted tree placed directly in
# resources/raw/odir/ is used as it is (the rule then has nothing to do).
#
# index.undecodable (exclude | fail) also applies here: with `exclude` an image that does not decode
# is reported and kept, and the index step lists it in the task's exclusions.csv.


localrules:
    download_ham10000,
    download_isic2019,
    download_odir,
    download_dermamnist,


rule download_ham10000:
    output:
        directory("resources/raw/ham10000"),
    log:
        "logs/download/ham10000.log",
    conda:
        "../../envs/imbench.yaml"
    params:
        args=download_args("ham10000"),
        undecodable=config["index"]["undecodable"],
    shell:
        "imbench download ham10000 --out {output} --undecodable {params.undecodable} {params.args} > {log} 2>&1"


rule download_isic2019:
    output:
        directory("resources/raw/isic2019"),
    log:
        "logs/download/isic2019.log",
    conda:
        "../../envs/imbench.yaml"
    params:
        args=download_args("isic2019"),
        undecodable=config["index"]["undecodable"],
    shell:
        "imbench download isic2019 --out {output} --undecodable {params.undecodable} {params.args} > {log} 2>&1"


rule download_odir:
    output:
        directory("resources/raw/odir"),
    log:
        "logs/download/odir.log",
    conda:
        "../../envs/imbench.yaml"
    params:
        args=download_args("odir"),
        undecodable=config["index"]["undecodable"],
    shell:
        "imbench download odir --out {output} --undecodable {params.undecodable} {params.args} > {log} 2>&1"


rule download_dermamnist:
    output:
        directory("resources/raw/dermamnist"),
    log:
        "logs/download/dermamnist.log",
    conda:
        "../../envs/imbench.yaml"
    params:
        args=download_args("dermamnist"),
        undecodable=config["index"]["undecodable"],
    shell:
        "imbench download dermamnist --out {output} --undecodable {params.undecodable} {params.args} > {log} 2>&1"
