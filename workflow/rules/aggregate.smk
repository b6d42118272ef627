# Tables and figures of the whole experiment, registered for `snakemake --report`.


localrules:
    aggregate,


rule aggregate:
    # Every file the aggregation reads is an input, so a deleted cell (or one of its files) is
    # replanned and recomputed rather than silently missing from, or stale in, the tables.
    input:
        metrics=all_metrics(),
        predictions=cell_files("predictions.csv"),
        history=cell_files("history.csv", trained_only=True),
    output:
        tables=[
            report(
                f"results/{EXP}/tables/{name}",
                caption=f"../report/{name.split('.')[0]}.rst",
                category="tables",
                labels={"table": name},
            )
            for name in TABLES
        ],
        markdown=[f"results/{EXP}/tables/{t}.md" for t in config["tasks"]],
        latex=[f"results/{EXP}/tables/{t}.tex" for t in config["tasks"]],
        paper=f"results/{EXP}/tables/paper_vs_ours.md",
        ranking=f"results/{EXP}/tables/ranking.md",
        cd=report(
            f"results/{EXP}/figures/critical_difference.png",
            caption="../report/critical_difference.rst",
            category="ranking",
            labels={"figure": "critical difference"},
        ),
        figures=[report_figure(t, f) for t in config["tasks"] for f in figure_names(t)]
        + [
            report(
                f"results/{EXP}/figures/{f}",
                caption="../report/ratio_sweep.rst",
                category="imbalance ratio",
                labels={"figure": "headline against the imbalance ratio"},
            )
            for f in ratio_figure_names()
        ],
    log:
        f"logs/{EXP}/aggregate.log",
    conda:
        "../../envs/imbench.yaml"
    params:
        settings=aggregate_settings,
        experiment=EXP,
        results=results_dir,
    shell:
        "imbench aggregate --experiment {params.experiment} --results {params.results} --metrics {input.metrics}"
        " --settings {params.settings:q} > {log} 2>&1"


rule explain:
    input:
        cells=explain_cells,
        images=lambda wc: f"{cache_dir(wc.task, config['models'][0])}/images.npy",
        split=split_csv,
    output:
        figures=[
            report_figure("{task}", f"{{task}}_{k}.png")
            for k in EXPLAIN.get("figures", ["tsne", "gradcam"])
        ],
    log:
        f"logs/{EXP}/explain_{{task}}.log",
    conda:
        "../../envs/imbench.yaml"
    threads: 1
    params:
        args=explain_args,
        out_dir=figures_dir,
    shell:
        "imbench explain {params.args} --cache-dir $(dirname {input.images}) --split {input.split}"
        " --threads {threads} --out-dir {params.out_dir} > {log} 2>&1"
