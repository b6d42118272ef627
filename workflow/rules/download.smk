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

localrules:
    download_ham10000,
    download_isic2019,
    download_odir,
    download_dermamnist,


rule download_ham10000:
    output:
        directory("resources/raw/ham10000"),
    params:
        args=download_args("ham10000"),
    conda:
        "../../envs/imbench.yaml"
    log:
        "logs/download/ham10000.log",
    shell:
        "imbench download ham10000 --out {output} {params.args} > {log} 2>&1"


rule download_isic2019:
    output:
        directory("resources/raw/isic2019"),
    params:
        args=download_args("isic2019"),
    conda:
        "../../envs/imbench.yaml"
    log:
        "logs/download/isic2019.log",
    shell:
        "imbench download isic2019 --out {output} {params.args} > {log} 2>&1"


rule download_odir:
    output:
        directory("resources/raw/odir"),
    params:
        args=download_args("odir"),
    conda:
        "../../envs/imbench.yaml"
    log:
        "logs/download/odir.log",
    shell:
        "imbench download odir --out {output} {params.args} > {log} 2>&1"


rule download_dermamnist:
    output:
        directory("resources/raw/dermamnist"),
    params:
        args=download_args("dermamnist"),
    conda:
        "../../envs/imbench.yaml"
    log:
        "logs/download/dermamnist.log",
    shell:
        "imbench download dermamnist --out {output} {params.args} > {log} 2>&1"
