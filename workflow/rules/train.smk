# One training job per cell, one post-hoc job per post-hoc cell, one evaluation per cell.
#
# Logs: each command starts its log empty (": > {log}"), appends its standard output to it, and
# sends its standard error (warnings, the one-line error of a failure) both to the log and to
# Snakemake's own output (">> {log} 2> >(tee -a {log} >&2)"), so a failure is seen even when the
# log cannot be written (a full disk) or is not read.

# Where a training job writes: the cell folder, or with cross-validation one folder per fold model.
TRAIN_DIR = os.path.join(
    "results/{experiment}/{task}/{model}/{method}/seed{seed}", *(["fold{fold}"] if FOLDS else [])
)


rule train:
    input:
        images=train_images,
        fingerprint=train_cache_fingerprint,
        split=split_csv,
        plugin=job_plugin,
    output:
        predictions=f"{TRAIN_DIR}/predictions.csv",
        history=f"{TRAIN_DIR}/history.csv",
        run=f"{TRAIN_DIR}/run.json",
        weights=f"{TRAIN_DIR}/best.pt",
    log:
        f"{TRAIN_DIR}/train.log",
    benchmark:
        f"{TRAIN_DIR}/benchmark.tsv"
    wildcard_constraints:
        method=_alternatives(TRAINED or ["-"]),
        fold=r"\d+",
    conda:
        "../../envs/imbench.yaml"
    threads: 1
    params:
        settings=train_settings,
        plugin=job_plugin_args,
        fold="--fold {fold}" if FOLDS else "",  # a plain pattern: no function call per job
    shell:
        ": > {log}; imbench train --task {wildcards.task} --cache-dir $(dirname {input.images}) --split {input.split}"
        " --model {wildcards.model} --method {wildcards.method} --seed {wildcards.seed} {params.fold}"
        " --settings {params.settings:q} --threads {threads} {params.plugin}"
        " --out-dir $(dirname {output.run}) >> {log} 2> >(tee -a {log} >&2)"


if FOLDS:

    localrules:
        ensemble,

    rule ensemble:
        # The cell from its fold models: mean test probabilities, out-of-fold validation predictions.
        input:
            runs=expand(
                "results/{{experiment}}/{{task}}/{{model}}/{{method}}/seed{{seed}}/fold{fold}/run.json",
                fold=range(FOLDS),
            ),
            predictions=expand(
                "results/{{experiment}}/{{task}}/{{model}}/{{method}}/seed{{seed}}/fold{fold}/predictions.csv",
                fold=range(FOLDS),
            ),
        output:
            predictions="results/{experiment}/{task}/{model}/{method}/seed{seed}/predictions.csv",
            history="results/{experiment}/{task}/{model}/{method}/seed{seed}/history.csv",
            run="results/{experiment}/{task}/{model}/{method}/seed{seed}/run.json",
        log:
            "results/{experiment}/{task}/{model}/{method}/seed{seed}/ensemble.log",
        wildcard_constraints:
            method=_alternatives(TRAINED or ["-"]),
        conda:
            "../../envs/imbench.yaml"
        params:
            folds=lambda wc, input: " ".join(os.path.dirname(p) for p in input.runs),
        shell:
            ": > {log}; imbench ensemble --folds {params.folds} --out-dir $(dirname {output.run})"
            " >> {log} 2> >(tee -a {log} >&2)"


rule posthoc:
    input:
        predictions=lambda wc: f"{base_cell(wc)}/predictions.csv",
        run=lambda wc: f"{base_cell(wc)}/run.json",
    output:
        predictions="results/{experiment}/{task}/{model}/{method}/seed{seed}/predictions.csv",
        run="results/{experiment}/{task}/{model}/{method}/seed{seed}/run.json",
    log:
        "results/{experiment}/{task}/{model}/{method}/seed{seed}/posthoc.log",
    wildcard_constraints:
        method=_alternatives(POSTHOC or ["-"]),
    conda:
        "../../envs/imbench.yaml"
    params:
        method_params=posthoc_params,
    shell:
        ": > {log}; imbench posthoc --method {wildcards.method} --base-dir $(dirname {input.run})"
        " --params {params.method_params:q} --out-dir $(dirname {output.run}) >> {log} 2> >(tee -a {log} >&2)"


rule decouple:
    # The second stage of crt / lws / tau_norm: the base (ce) cell's saved network, frozen; only
    # the classifier is re-fitted (imbench.decouple). Rerunning it never retrains the base cell.
    input:
        weights=lambda wc: f"{base_cell(wc)}/best.pt",
        run=lambda wc: f"{base_cell(wc)}/run.json",
        images=train_images,
        split=SPLIT_CSV,
        plugin=job_plugin,
    output:
        predictions="results/{experiment}/{task}/{model}/{method}/seed{seed}/predictions.csv",
        run="results/{experiment}/{task}/{model}/{method}/seed{seed}/run.json",
    log:
        "results/{experiment}/{task}/{model}/{method}/seed{seed}/decouple.log",
    benchmark:
        "results/{experiment}/{task}/{model}/{method}/seed{seed}/benchmark.tsv"
    wildcard_constraints:
        method=_alternatives(DECOUPLED or ["-"]),
    conda:
        "../../envs/imbench.yaml"
    threads: 1
    params:
        method_params=posthoc_params,
        plugin=job_plugin_args,
    shell:
        ": > {log}; imbench decouple --method {wildcards.method} --base-dir $(dirname {input.run})"
        " --cache-dir $(dirname {input.images}) --split {input.split} --seed {wildcards.seed}"
        " --params {params.method_params:q} --threads {threads} {params.plugin}"
        " --out-dir $(dirname {output.run})"
        " >> {log} 2> >(tee -a {log} >&2)"


rule evaluate:
    input:
        predictions="results/{experiment}/{task}/{model}/{method}/seed{seed}/predictions.csv",
        run="results/{experiment}/{task}/{model}/{method}/seed{seed}/run.json",
        split=split_csv,
    output:
        "results/{experiment}/{task}/{model}/{method}/seed{seed}/metrics.json",
    log:
        "results/{experiment}/{task}/{model}/{method}/seed{seed}/evaluate.log",
    benchmark:
        # the evaluation's wall time lives here, not in metrics.json (identical runs, identical bytes)
        "results/{experiment}/{task}/{model}/{method}/seed{seed}/evaluate_benchmark.tsv"
    conda:
        "../../envs/imbench.yaml"
    params:
        n_boot=config["evaluation"]["n_boot"],
        boot_seed=config["evaluation"]["boot_seed"],
    shell:
        ": > {log}; imbench evaluate --cell-dir $(dirname {input.run}) --split {input.split}"
        " --n-boot {params.n_boot} --boot-seed {params.boot_seed} >> {log} 2> >(tee -a {log} >&2)"


rule prefetch_weights:
    log:
        f"logs/{EXP}/prefetch_weights.log",
    # Download every pretrained weight file the grid needs into the local timm / torch hub caches,
    # once, before training (cluster nodes without internet then find them):
    #   snakemake --cores 1 prefetch_weights --configfile experiments/<name>.yaml
    localrule: True
    conda:
        "../../envs/imbench.yaml"
    params:
        models=" ".join(config["models"]),
        plugin=models_plugin_args(),
    shell:
        "imbench weights --models {params.models} {params.plugin} > {log} 2>&1"
