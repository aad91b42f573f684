"""Report stage: the paper's tables with ours beside them, figures and the annotation's cost.

python scripts/report.py build --spec JSON
    JSON: {"out": folder, "config": {...}, "metrics": [results.tsv, significance.tsv] | null,
           "rag": [results.tsv, significance.tsv] | null, "stats": {"<annotator>/<step>": stats.json},
           "trainings": {job: retriever folder}, "label_sets": {name: parquet}, "benchmarks": folder}
"""

from __future__ import annotations

import json

import click

from utilanno import logs
from utilanno.cli import StageGroup

log = logs.setup("report")


@click.group(cls=StageGroup)
def cli():
    """The report: results/report/index.md and index.html, cells.tsv, cost.tsv, stages.tsv, figures/."""


@cli.command("build")
@click.option(
    "--spec", required=True, help="What to read and where to write (JSON; see the module's docstring)."
)
def build_cmd(spec):
    """Write the report from a finished run."""
    from utilanno.report.build import build  # matplotlib is imported only here

    try:
        spec = json.loads(spec)
    except ValueError as err:
        raise click.BadParameter(f"not JSON: {err}", param_hint="--spec") from None
    counts = build(spec)
    log.info(
        "%d paper cells, %d filled by this run; %d benchmark files; %d figures -> %s",
        counts["cells"],
        counts["cells_filled"],
        counts["benchmarks"],
        counts["figures"],
        spec["out"],
    )


if __name__ == "__main__":
    cli()
