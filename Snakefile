# Utility-focused LLM annotation for retrieval and RAG (Zhang et al., EMNLP 2025): the workflow.
# The science is in config.yaml (documented in rules/schema.yaml); the machine is in profiles/.
from snakemake.utils import min_version

min_version("9.0")


# The paper grid, unless a --configfile gave a whole grid of its own (one with `datasets:`, as the tiny config
# and your own grids have): it then replaces the paper grid instead of being merged into it. --config
# KEY=VALUE still overrides single keys of whichever file is used.
if "datasets" not in config:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/pool.smk"
include: "rules/annotate.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/hybrid.smk"
include: "rules/rag.smk"
include: "rules/report.smk"


report: "report/workflow.rst"


localrules:
    all,
    data_only,
    annotate_only,
    train_only,
    evaluate_only,
    rag_only,
    report_only,


rule all:
    default_target: True
    input:
        PLAN.data_targets(),
        PLAN.annotation_targets(),
        PLAN.training_targets(),
        PLAN.evaluation_targets(),
        PLAN.rag_targets(),
        PLAN.report_targets(),


rule report_only:
    input:
        PLAN.report_targets(),


rule rag_only:
    input:
        PLAN.rag_targets(),


rule evaluate_only:
    input:
        PLAN.evaluation_targets(),


rule train_only:
    input:
        PLAN.training_targets(),


rule annotate_only:
    input:
        PLAN.annotation_targets(),


rule data_only:
    input:
        PLAN.data_targets(),
