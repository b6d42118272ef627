# Data stages: generate/download -> index -> grouped split -> cache.


rule synthetic_data:
    output:
        directory("resources/raw/{dataset}"),
    wildcard_constraints:
        dataset="synthetic|synthetic_ml",
    params:
        second_lesion_fraction=second_lesion_fraction,
        n_images=config["synthetic"]["n_images"],
        seed=config["synthetic"]["seed"],
        width=config["synthetic"]["width"],
        height=config["synthetic"]["height"],
        noise=config["synthetic"]["noise"],
    conda:
        "../../envs/imbench.yaml"
    log:
        "logs/data/{dataset}.log",
    shell:
        "imbench synth --out {output} --n-images {params.n_images} --seed {params.seed}"
        " --width {params.width} --height {params.height} --noise {params.noise}"
        " --second-lesion-fraction {params.second_lesion_fraction} > {log} 2>&1"


rule index:
    input:
        raw=raw_dir,
    output:
        index="resources/prepared/{task}/index.csv",
        exclusions="resources/prepared/{task}/exclusions.csv",
    params:
        undecodable=config["index"]["undecodable"],
    threads: 16  # decodes every image once; scaled down to --cores
    conda:
        "../../envs/imbench.yaml"
    log:
        "logs/data/index_{task}.log",
    shell:
        "imbench index --task {wildcards.task} --raw {input.raw} --out {output.index}"
        " --exclusions {output.exclusions} --undecodable {params.undecodable} --workers {threads} > {log} 2>&1"


rule split:
    input:
        "resources/prepared/{task}/index.csv",
    output:
        "resources/prepared/{task}/split_seed{split_seed}{grouping}.csv",
    params:
        fractions=" ".join(str(f) for f in config["split"]["fractions"]),
        grouping=lambda wc: "--ungrouped" if wc.grouping else "",
    wildcard_constraints:
        split_seed=r"\d+",
        grouping="|_ungrouped",
    conda:
        "../../envs/imbench.yaml"
    log:
        "logs/data/split_{task}_seed{split_seed}{grouping}.log",
    shell:
        "imbench split --index {input} --out {output} --seed {wildcards.split_seed}"
        " --fractions {params.fractions} {params.grouping} > {log} 2>&1"


rule split_cv:
    # The same grouped split plus a cv_fold column: the non-test images in K grouped folds.
    input:
        "resources/prepared/{task}/index.csv",
    output:
        "resources/prepared/{task}/split_seed{split_seed}{grouping}_cv{folds}.csv",
    params:
        fractions=" ".join(str(f) for f in config["split"]["fractions"]),
        grouping=lambda wc: "--ungrouped" if wc.grouping else "",
    wildcard_constraints:
        split_seed=r"\d+",
        folds=r"\d+",
        grouping="|_ungrouped",
    conda:
        "../../envs/imbench.yaml"
    log:
        "logs/data/split_{task}_seed{split_seed}{grouping}_cv{folds}.log",
    shell:
        "imbench split --index {input} --out {output} --seed {wildcards.split_seed}"
        " --fractions {params.fractions} {params.grouping} --cv-folds {wildcards.folds} > {log} 2>&1"


rule cache:
    input:
        index="resources/prepared/{task}/index.csv",
        raw=raw_dir,
    output:
        images="resources/cache/{task}/{size}px-{mode}/images.npy",
        index="resources/cache/{task}/{size}px-{mode}/index.csv",
    threads: 16  # an upper bound: Snakemake scales it down to --cores
    conda:
        "../../envs/imbench.yaml"
    log:
        "logs/data/cache_{task}_{size}px-{mode}.log",
    shell:
        "imbench cache --index {input.index} --raw {input.raw} --out-dir $(dirname {output.images})"
        " --size {wildcards.size} --mode {wildcards.mode} --workers {threads} > {log} 2>&1"
