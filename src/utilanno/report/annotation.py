"""Our annotation statistics in the report's terms (`compare.OURS`): Table 1's precision, recall and
positives per query per annotator and step, and Table 16's positives per query of each experiment's label set.

The statistics come from each step's `stats.json` (human positives as the ground truth, as Table 1 counts
them): precision and recall are fractions there and % in the paper; positives per query stay as they are.
UtilRank's figures are per top-k threshold (`utilrank@10` is Table 1's UtilRank column).
"""

from __future__ import annotations

import polars as pl

from utilanno.config_annotation import run_name
from utilanno.report.compare import OURS, paper_dataset

PERCENT = ("precision", "recall")
FIGURES = ("precision", "recall", "avg_positives")


def _figures(stats: dict) -> dict[str, float]:
    return {k: stats[k] * 100 if k in PERCENT else stats[k] for k in FIGURES if stats.get(k) is not None}


def step_figures(step: str, stats: dict) -> dict[str, float]:
    """{'<set>/<figure>': value in the paper's units} of one step's stats.json (UtilRank: a set per top-k)."""
    if step == "utilrank":
        return {
            f"utilrank@{k}/{name}": v
            for k, per in stats.get("topk", {}).items()
            for name, v in _figures(per).items()
        }
    return {f"{step}/{name}": v for name, v in _figures(stats).items()}


def annotation_frame(config: dict, stats: dict[tuple[str, str, str], dict]) -> pl.DataFrame:
    """Rows of `OURS`: system = our annotator, dataset = the run's dataset (paper name), measure =
    `<set>/<figure>`; and, per experiment with LLM labels, system = the experiment, measure = `avg_positives`
    of its label set. `stats`: (run, annotator, step) -> that step's stats.json."""
    named = (config.get("report") or {}).get("stand_ins") or {}
    runs = config["annotation"]
    rows = []
    figures: dict[tuple[str, str], dict[str, float]] = {}
    for (run, annotator, step), s in sorted(stats.items()):
        mine = step_figures(step, s)
        figures.setdefault((run, annotator), {}).update(mine)
        dataset = paper_dataset(runs[run]["dataset"], named)
        rows += [(annotator, None, dataset, measure, value, "") for measure, value in mine.items()]
    for name, exp in sorted(config.get("experiments", {}).items()):
        run = run_name(config, exp)
        if run not in runs:
            continue
        annotator = exp.get("annotator") or runs[run]["annotator"]
        value = figures.get((run, annotator), {}).get(f"{exp['labels']}/avg_positives")
        if value is not None:
            dataset = paper_dataset(runs[run]["dataset"], named)
            rows.append((name, None, dataset, "avg_positives", value, ""))
    return pl.DataFrame(rows, schema=OURS, orient="row")
