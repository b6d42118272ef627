# Tables and figures of the whole experiment, registered for `snakemake --report`.

localrules:
    aggregate,


rule aggregate:
    input:
        all_metrics(),
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
        figures=[report_figure(t, f) for t in config["tasks"] for f in figure_names(t)],
    params:
        settings=aggregate_settings,
        experiment=EXP,
        results=results_dir,
    conda:
        "../../envs/imbench.yaml"
    log:
        f"logs/{EXP}/aggregate.log",
    shell:
        "imbench aggregate --experiment {params.experiment} --results {params.results} --metrics {input}"
        " --settings {params.settings:q} > {log} 2>&1"
