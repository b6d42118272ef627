# One training job per cell, one post-hoc job per post-hoc cell, one evaluation per cell.

SPLIT_CSV = f"resources/prepared/{{task}}/split_seed{config['split']['seed']}.csv"
CACHE_DIR = f"resources/cache/{{task}}/{IMAGE_SIZE}px-{CACHE_MODE}"


rule train:
    input:
        images=f"{CACHE_DIR}/images.npy",
        split=SPLIT_CSV,
    output:
        predictions="results/{experiment}/{task}/{model}/{method}/seed{seed}/predictions.csv",
        history="results/{experiment}/{task}/{model}/{method}/seed{seed}/history.csv",
        run="results/{experiment}/{task}/{model}/{method}/seed{seed}/run.json",
        weights="results/{experiment}/{task}/{model}/{method}/seed{seed}/best.pt",
    params:
        settings=train_settings,
    wildcard_constraints:
        method=_alternatives(TRAINED or ["-"]),
    threads: 1
    conda:
        "../../envs/imbench.yaml"
    log:
        "results/{experiment}/{task}/{model}/{method}/seed{seed}/train.log",
    benchmark:
        "results/{experiment}/{task}/{model}/{method}/seed{seed}/benchmark.tsv"
    shell:
        "imbench train --task {wildcards.task} --cache-dir $(dirname {input.images}) --split {input.split}"
        " --model {wildcards.model} --method {wildcards.method} --seed {wildcards.seed}"
        " --settings {params.settings:q} --threads {threads}"
        " --out-dir $(dirname {output.run}) > {log} 2>&1"


rule posthoc:
    input:
        predictions=lambda wc: f"{base_cell(wc)}/predictions.csv",
        run=lambda wc: f"{base_cell(wc)}/run.json",
    output:
        predictions="results/{experiment}/{task}/{model}/{method}/seed{seed}/predictions.csv",
        run="results/{experiment}/{task}/{model}/{method}/seed{seed}/run.json",
    params:
        method_params=posthoc_params,
    wildcard_constraints:
        method=_alternatives(POSTHOC or ["-"]),
    conda:
        "../../envs/imbench.yaml"
    log:
        "results/{experiment}/{task}/{model}/{method}/seed{seed}/posthoc.log",
    shell:
        "imbench posthoc --method {wildcards.method} --base-dir $(dirname {input.run})"
        " --params {params.method_params:q} --out-dir $(dirname {output.run}) > {log} 2>&1"


rule evaluate:
    input:
        predictions="results/{experiment}/{task}/{model}/{method}/seed{seed}/predictions.csv",
        run="results/{experiment}/{task}/{model}/{method}/seed{seed}/run.json",
    output:
        "results/{experiment}/{task}/{model}/{method}/seed{seed}/metrics.json",
    params:
        n_boot=config["evaluation"]["n_boot"],
        boot_seed=config["evaluation"]["boot_seed"],
    conda:
        "../../envs/imbench.yaml"
    log:
        "results/{experiment}/{task}/{model}/{method}/seed{seed}/evaluate.log",
    shell:
        "imbench evaluate --cell-dir $(dirname {input.run}) --n-boot {params.n_boot}"
        " --boot-seed {params.boot_seed} > {log} 2>&1"


rule prefetch_weights:
    # Download every pretrained weight file the grid needs into the local timm / torch hub caches,
    # once, before training (cluster nodes without internet then find them):
    #   snakemake --cores 1 prefetch_weights --configfile experiments/<name>.yaml
    localrule: True
    params:
        models=" ".join(config["models"]),
    conda:
        "../../envs/imbench.yaml"
    log:
        f"logs/{EXP}/prefetch_weights.log",
    shell:
        "imbench weights --models {params.models} > {log} 2>&1"
