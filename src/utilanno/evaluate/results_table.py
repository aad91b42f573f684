"""The results table of the evaluation stage (long format) and the paper's significance marks.

Per-query metric files live at `<metrics>/<system>.parquet` (dataset, qid, measure, value); a row with a
null qid is a corpus-level value (RAG's BLEU). The table has one row per system, dataset (or group: the mean
of its members' means, as CQADupStack of its forums and the BEIR average of its 14 datasets) and measure.
Significance: a two-sided paired t-test of each system against its baselines (the human-label experiment
of the same backbone, and REPLUG at the same human fraction; PAPER-SPEC F), per dataset and measure.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from utilanno import tables
from utilanno.evaluate.metrics import group_mean, paired_ttest, summarize

TABLE = {
    "system": pl.String,
    "dataset": pl.String,
    "measure": pl.String,
    "value": pl.Float64,
    "n_queries": pl.Int64,
}
SIGNIFICANCE = {
    "system": pl.String,
    "dataset": pl.String,
    "measure": pl.String,
    "against": pl.String,
    "baseline": pl.String,
    "value": pl.Float64,
    "baseline_value": pl.Float64,
    "t": pl.Float64,
    "p": pl.Float64,
    "mark": pl.String,
}


def build(spec: dict) -> tuple[pl.DataFrame, pl.DataFrame]:
    """spec: metrics (folder), systems, datasets {system: member datasets}, groups {system: {name: members}},
    baselines {system: {role: baseline system}}, alpha. A system is tested against a baseline on the
    datasets both were evaluated on."""
    folder = Path(spec["metrics"])
    per_query: dict[tuple[str, str], pl.DataFrame] = {}
    rows = []
    for system in spec["systems"]:
        path = folder / f"{system}.parquet"
        if not path.exists():
            raise ValueError(f"missing metrics file {path}")
        table = tables.read_parquet(path)
        for dataset in spec["datasets"][system]:
            mine = table.filter(pl.col("dataset") == dataset).drop("dataset")
            if mine.is_empty():
                raise ValueError(f"{path}: no metrics for dataset {dataset!r}")
            pq = per_query[system, dataset] = mine.filter(pl.col("qid").is_not_null())
            # corpus-level values (qid null, e.g. BLEU) are reported as they are and never tested
            whole = mine.filter(pl.col("qid").is_null()).select(
                "measure", pl.col("value").cast(pl.Float64), n_queries=pl.lit(pq["qid"].n_unique(), pl.Int64)
            )
            rows.append(
                pl.concat([summarize(pq), whole]).with_columns(system=pl.lit(system), dataset=pl.lit(dataset))
            )
    table = pl.concat(rows).select(list(TABLE)) if rows else pl.DataFrame(schema=TABLE)
    groups = []
    for system in spec["systems"]:
        mine = table.filter(pl.col("system") == system)
        # inner groups come first, and each group's row joins `mine`, so an outer group averages its
        # members' means: the BEIR average counts CQADupStack once, as the mean of its forums
        groups_of = spec.get("groups", {}).get(system, {})
        for name, members in _inner_first(groups_of):
            # the measures every member reports (NQ's top-k accuracy does not enter the BEIR average)
            have = [set(mine.filter(pl.col("dataset") == m)["measure"]) for m in members]
            shared = set.intersection(*have) if have else set()
            if not shared:
                raise ValueError(f"group {name!r} of {system}: its members {members} share no measure")
            rows_in = mine.filter(pl.col("measure").is_in(list(shared)))
            g = group_mean(rows_in, members).select("measure", "value", "n_queries")
            row = g.with_columns(system=pl.lit(system), dataset=pl.lit(name)).select(list(TABLE))
            mine = pl.concat([mine, row])
            groups.append(row)
    if groups:
        table = pl.concat([table, *groups])
    sig = []
    for system, roles in spec.get("baselines", {}).items():
        for role, baseline in roles.items():
            if baseline is None or baseline == system:
                continue
            for dataset in [d for d in spec["datasets"][system] if d in spec["datasets"][baseline]]:
                a, b = per_query[system, dataset], per_query[baseline, dataset]
                for measure in a["measure"].unique(maintain_order=True):
                    t = paired_ttest(a, b, measure, spec.get("alpha", 0.05))
                    sig.append(
                        (system, dataset, measure, role, baseline, t.mean_a, t.mean_b, t.t, t.p, t.mark)
                    )
    return table, pl.DataFrame(sig, schema=SIGNIFICANCE, orient="row")


def _inner_first(groups: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """Groups ordered so that a group comes after the groups it contains, whatever the spec's key order
    (the rule writes its JSON with sorted keys)."""
    out: dict[str, list[str]] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ValueError(f"groups contain each other: {' -> '.join((*path, name))}")
        if name in groups and name not in out:
            for member in groups[name]:
                visit(member, (*path, name))
            out[name] = groups[name]

    for name in groups:
        visit(name, ())
    return list(out.items())
