# Data stages: generate/download -> index -> grouped split -> cache.


rule synthetic_data:
    output:
        directory("resources/raw/{dataset}"),
    log:
        "logs/data/{dataset}.log",
    wildcard_constraints:
        dataset="synthetic|synthetic_ml",
    conda:
        "../../envs/imbench.yaml"
    params:
        second_lesion_fraction=second_lesion_fraction,
        n_images=config["synthetic"]["n_images"],
        seed=config["synthetic"]["seed"],
        width=config["synthetic"]["width"],
        height=config["synthetic"]["height"],
        noise=config["synthetic"]["noise"],
    shell:
        "imbench synth --out {output} --n-images {params.n_images} --seed {params.seed}"
        " --width {params.width} --height {params.height} --noise {params.noise}"
        " --second-lesion-fraction {params.second_lesion_fraction} > {log} 2>&1"


rule index:
    input:
        raw=raw_dir,
        plugin=job_plugin,
    output:
        index="resources/prepared/{task}/index.csv",
        exclusions="resources/prepared/{task}/exclusions.csv",
    log:
        "logs/data/index_{task}.log",
    conda:
        "../../envs/imbench.yaml"
    threads: 16  # decodes every image once; scaled down to --cores
    params:
        undecodable=config["index"]["undecodable"],
        plugin=job_plugin_args,
    shell:
        "imbench index --task {wildcards.task} --raw {input.raw} --out {output.index}"
        " --exclusions {output.exclusions} --undecodable {params.undecodable} --workers {threads}"
        " {params.plugin} > {log} 2>&1"


# The split's settings are in its file name (seed, fractions, grouping, cross-validation folds),
# never taken from the configuration, so each experiment's split is its own file; <split>.json
# records them with the SHA-256 of the index it was made from.


rule split:
    input:
        "resources/prepared/{task}/index.csv",
    output:
        split="resources/prepared/{task}/split_seed{split_seed}_frac{fractions}{grouping}.csv",
        record="resources/prepared/{task}/split_seed{split_seed}_frac{fractions}{grouping}.json",
    log:
        "logs/data/split_{task}_seed{split_seed}_frac{fractions}{grouping}.log",
    wildcard_constraints:
        split_seed=r"\d+",
        fractions=r"[0-9.e+-]+_[0-9.e+-]+_[0-9.e+-]+",
        grouping="|_ungrouped",
    conda:
        "../../envs/imbench.yaml"
    params:
        fractions=split_fractions,
        grouping=lambda wc: "--ungrouped" if wc.grouping else "",
    shell:
        ": > {log}; imbench split --index {input} --out {output.split} --seed {wildcards.split_seed}"
        " --fractions {params.fractions} {params.grouping} >> {log} 2> >(tee -a {log} >&2)"


rule split_cv:
    # The same split plus a cv_fold column: the non-test images in K folds (grouped like the split).
    input:
        "resources/prepared/{task}/index.csv",
    output:
        split="resources/prepared/{task}/split_seed{split_seed}_frac{fractions}{grouping}_cv{folds}.csv",
        record="resources/prepared/{task}/split_seed{split_seed}_frac{fractions}{grouping}_cv{folds}.json",
    log:
        "logs/data/split_{task}_seed{split_seed}_frac{fractions}{grouping}_cv{folds}.log",
    wildcard_constraints:
        split_seed=r"\d+",
        fractions=r"[0-9.e+-]+_[0-9.e+-]+_[0-9.e+-]+",
        grouping="|_ungrouped",
        folds=r"\d+",
    conda:
        "../../envs/imbench.yaml"
    params:
        fractions=split_fractions,
        grouping=lambda wc: "--ungrouped" if wc.grouping else "",
    shell:
        ": > {log}; imbench split --index {input} --out {output.split} --seed {wildcards.split_seed}"
        " --fractions {params.fractions} {params.grouping} --cv-folds {wildcards.folds}"
        " >> {log} 2> >(tee -a {log} >&2)"


rule imbalance_split:
    # A task variant's split (<task>@rho<ratio>): the base split with its training images
    # subsampled to the imbalance ratio; <split>.json records the per-class training counts.
    input:
        base="resources/prepared/{task}/{split}.csv",
        plugin=job_plugin,
    output:
        split="resources/prepared/{task}/{split}@rho{ratio}_seed{iseed}.csv",
        record="resources/prepared/{task}/{split}@rho{ratio}_seed{iseed}.json",
    log:
        "logs/data/imbalance_{task}_{split}@rho{ratio}_seed{iseed}.log",
    wildcard_constraints:
        split=r"split_[^/@]+",
        ratio=r"[0-9]+(\.[0-9]+)?",
        iseed=r"\d+",
    conda:
        "../../envs/imbench.yaml"
    params:
        plugin=job_plugin_args,
    shell:
        ": > {log}; imbench imbalance --split {input.base} --out {output.split} --task {wildcards.task}"
        " --ratio {wildcards.ratio} --seed {wildcards.iseed} {params.plugin}"
        " >> {log} 2> >(tee -a {log} >&2)"


rule cache:
    input:
        index="resources/prepared/{task}/index.csv",
        raw=raw_dir,
    output:
        images="resources/cache/{task}/{size}px-{mode}/images.npy",
        index="resources/cache/{task}/{size}px-{mode}/index.csv",
        # content fingerprint, written last; a cache found not to match it loses it (and is rebuilt)
        fingerprint="resources/cache/{task}/{size}px-{mode}/cache.json",
    log:
        "logs/data/cache_{task}_{size}px-{mode}.log",
    conda:
        "../../envs/imbench.yaml"
    threads: 16  # an upper bound: Snakemake scales it down to --cores
    shell:
        ": > {log}; imbench cache --index {input.index} --raw {input.raw} --out-dir $(dirname {output.images})"
        " --size {wildcards.size} --mode {wildcards.mode} --workers {threads} >> {log} 2> >(tee -a {log} >&2)"
