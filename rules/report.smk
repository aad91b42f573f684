# The report (issue 14): the paper's tables with our numbers beside them, figures and the annotation's cost in the
# way of Table 17, from everything the other stages wrote. One CPU job; `snakemake --report report.html` shows
# its page and figures (captions in report/).
REPORT_DIR = PLAN.report_dir()
REPORT_IN = PLAN.report_inputs()


rule report:
    input:
        metrics=REPORT_IN["metrics"] or [],
        rag=REPORT_IN["rag"] or [],
        stats=list(REPORT_IN["stats"].values()),
        trainings=list(REPORT_IN["trainings"].values()),
        label_sets=list(REPORT_IN["label_sets"].values()),
        script=script("report.py"),
    output:
        index_md=f"{REPORT_DIR}/index.md",
        index_html=report(
            f"{REPORT_DIR}/index.html",
            caption="../report/index.rst",
            category="Report",
            subcategory="Tables",
        ),
        cells=f"{REPORT_DIR}/cells.tsv",
        stages=f"{REPORT_DIR}/stages.tsv",
        cost=f"{REPORT_DIR}/cost.tsv",
        figures=[
            report(
                f"{REPORT_DIR}/figures/{name}.{ext}",
                caption=f"../report/{name}.rst",
                category="Report",
                subcategory="Figures",
                labels={"figure": name, "format": ext},
            )
            for name in PLAN.REPORT_FIGURES
            for ext in ("png", "svg")
        ],
    log:
        f"{LOGS}/report.log",
    conda:
        "../envs/eval.yaml"
    container:
        config["containers"]["eval"]
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        spec=lambda wc: PLAN.report_spec(),
    shell:
        "python {input.script:q} build --spec {params.spec:q} > {log:q} 2>&1"
