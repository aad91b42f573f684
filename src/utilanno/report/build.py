"""The report stage: the paper's tables with ours beside them, figures and cost, from a finished run.

`build(spec)` reads what the workflow wrote (the evaluation and RAG stages' results and significance tables,
every annotation step's stats.json, every training job's train-log.jsonl, the label sets and Snakemake's
benchmark files) and writes into `spec["out"]`:

    index.md, index.html   the report (tables in the paper's order and layout, figures, cost)
    cells.tsv              every printed paper cell with ours, the difference, marks and status
    stages.tsv, cost.tsv   hours per stage; Table 17's rows for our run and at the paper's scale
    figures/*.png, *.svg   training loss, positives per query, ours vs paper, hours per stage

A table the config does not run is still printed, its cells "not run" with the reason; nothing is dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from utilanno.errors import InputFormatError
from utilanno.report import annotation, compare, cost, figures, paper, render, rows

TABLE_ORDER = ("1", "2", "3", "12", "4", "13", "5", "6", "7", "8", "16", "9", "17")


def _frames(spec: dict, named: dict[str, str]) -> pl.DataFrame:
    """All our numbers as `compare.OURS`: retrieval and RAG results, annotation statistics."""
    parts = [pl.DataFrame(schema=compare.OURS)]
    for tables in (spec.get("metrics"), spec.get("rag")):  # [results.tsv, significance.tsv], or None: not run
        if tables:
            parts.append(compare.our_results(*tables, named))
    return pl.concat(parts)


def _training_logs(trainings: dict[str, str]) -> dict[str, pl.DataFrame]:
    logs = {}
    for name, folder in sorted(trainings.items()):
        path = Path(folder) / "train-log.jsonl"
        records = []
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                try:
                    record = json.loads(line)
                    records.append((int(record["step"]), float(record["loss"])))
                except (ValueError, KeyError, TypeError) as err:
                    raise InputFormatError(
                        str(path), number, f"expected a JSON object with step and loss: {err}"
                    ) from None
        logs[name] = pl.DataFrame(records, schema={"step": pl.Int64, "loss": pl.Float64}, orient="row")
    return logs


def _positives(label_sets: dict[str, str]) -> pl.DataFrame:
    lines = []
    for name, path in sorted(label_sets.items()):
        try:
            labels = pl.read_parquet(path, columns=["qid", "label"])
        except Exception as err:  # polars raises several kinds for a damaged file
            raise InputFormatError(str(path), None, f"cannot read the label set: {err}") from None
        per = labels.group_by("qid").agg(pl.col("label").gt(0).sum().alias("n"))
        lines.append((name, per.height, float(per["n"].mean() or 0.0), float((per["n"] == 0).mean() or 0.0)))
    schema = {
        "label_set": pl.String,
        "queries": pl.Int64,
        "mean_positives": pl.Float64,
        "no_positive": pl.Float64,
    }
    return pl.DataFrame(lines, schema=schema, orient="row")


def _table_block(numbers: paper.PaperNumbers, name: str, cells: pl.DataFrame, named: dict) -> render.Table:
    entry = numbers.entries[name]
    columns, lines, reasons = compare.grid(cells)
    notes = [f"{label}: {why}" for label, why in reasons.items()]
    flagged = cells.filter(pl.col("status") == "ok").height
    notes.append(f"{flagged} of {cells.height} cells filled; cells read 'ours / paper (ours − paper)'.")
    if named:
        notes.append(
            "Stand-ins (ours for the paper's): " + ", ".join(f"{k} for {v}" for k, v in sorted(named.items()))
        )
    return render.Table(f"Table {entry.table}: {entry.caption} [{entry.source}]", columns, lines, notes)


def _unmatched(config: dict, matches: list[rows.RowMatch], ours: pl.DataFrame) -> list:
    """Our experiments that reproduce no paper row, with their results (nothing of ours vanishes)."""
    used = {e for m in matches for e in m.experiments}
    rest = [n for n in sorted(config.get("experiments", {})) if n not in used]
    if not rest:
        return []
    blocks: list = [("h", 2, "Our experiments without a paper row")]
    mine = ours.filter(pl.col("system").is_in(rest) & pl.col("measure").ne("avg_positives"))
    if not mine.height:
        return [*blocks, ("p", "No results yet for: " + ", ".join(rest) + ".")]
    mine = mine.with_columns(column=pl.concat_str("dataset", pl.lit(" "), "measure"))
    columns = list(dict.fromkeys(mine["column"]))
    lines = []
    for name in rest:
        got = {
            c: f"{v:.1f}{k}"
            for c, v, k in mine.filter(pl.col("system") == name)
            .select("column", "ours", "our_mark")
            .iter_rows()
        }
        lines.append((name, [got.get(c, "") for c in columns]))
    return [*blocks, render.Table("Ours only (in %)", columns, lines, corner="experiment")]


def _cost_blocks(
    numbers: paper.PaperNumbers, stages: pl.DataFrame, costs: pl.DataFrame, paper_queries: int
) -> list:
    lines = [
        (s, [str(j), f"{w:.3f}", f"{c:.3f}", f"{g:.3f}"])
        for s, j, w, c, g in stages.select("stage", "jobs", "wall_h", "cpu_h", "gpu_h").iter_rows()
    ]
    blocks: list = [
        ("h", 2, "Cost (Table 17's method)"),
        render.Table(
            "Hours per stage, from Snakemake's benchmark files (summed over jobs)",
            ["jobs", "wall h", "CPU h", "GPU-h"],
            lines,
            corner="stage",
        ),
    ]
    printed = {(c.row, c.measure): c.value for c in numbers.cells if c.table == "17"}
    paper_usd = {
        "human": printed.get(("human", "total_usd")),
        "replug-gpu": printed.get(("replug", "gpu_usd")),
        "utilsel": printed.get(("utilsel", "total_usd")),
        "utilsel-cl20": printed.get(("utilsel-cl20", "total_usd")),
    }

    def usd(v) -> str:
        return "—" if v is None else f"${v:,.2f}"

    several = costs["run"].n_unique() > 1
    cost_rows = [
        (f"{r['run']}: {r['item']}" if several else r["item"],
         [f"{r['queries']:,}", f"{r['gpu_h']:.4f}", usd(r["usd"]), usd(r["usd_per_1k"]),
          usd(r["usd_paper_scale"]), usd(paper_usd.get(r["item"])), r["method"]])
        for r in costs.iter_rows(named=True)
    ]  # fmt: skip
    blocks.append(
        render.Table(
            f"Annotation cost: our run, ours per query at the paper's {paper_queries:,} queries, the paper's",
            ["queries", "GPU-h", "ours (USD)", "per 1k queries", "ours at paper scale", "paper (USD)", "how"],
            cost_rows,
            notes=[
                "A run on CPUs only holds no GPU-hours: its LLM labels cost nothing here and say nothing of "
                "a GPU's cost."
            ],
            corner="item",
        )
    )
    return blocks


def build(spec: dict) -> dict[str, int]:
    """Write the report (see the module's docstring); returns counts for the log."""
    config = spec["config"]
    named = rows.stand_ins(config)
    out = Path(spec["out"])
    (out / "figures").mkdir(parents=True, exist_ok=True)
    numbers = paper.load(spec.get("paper_numbers") or paper.PAPER_NUMBERS)
    matches = rows.map_experiments(config, numbers)
    stats = cost.load_stats({tuple(k.split("/", 2)): v for k, v in spec.get("stats", {}).items()})
    ours = pl.concat([_frames(spec, named), annotation.annotation_frame(config, stats)])

    blocks: list = [
        ("h", 1, "Utility-focused LLM annotation: the paper's tables beside ours"),
        ("p", "Each cell reads 'ours / paper (difference)', in the paper's units (% for retrieval and QA). "
              "Marks as the paper prints them: − / + worse / better than Human (paired t-test), † different "
              "from REPLUG; ours come from this run's significance tables. A row the config does not run "
              "says 'not run' and why; a configured row without a result says 'no result'."),
    ]  # fmt: skip
    generators = {named.get(g, g) for g in (config.get("rag") or {}).get("generators", [])}
    all_cells = []
    for table in TABLE_ORDER:
        names = [n for n, e in numbers.entries.items() if e.table == table and e.kind != "cost"]
        if not names:
            continue
        blocks.append(("h", 2, f"Table {table}"))
        for name in names:
            cells = compare.side_by_side(numbers, name, matches, ours, generators)
            all_cells.append(cells.with_columns(entry=pl.lit(name), table=pl.lit(table)))
            blocks.append(_table_block(numbers, name, cells, named))
    cells = pl.concat(all_cells)
    blocks += _unmatched(config, matches, ours)

    bench = cost.benchmarks(spec["benchmarks"], config)
    stages = cost.per_stage(bench)
    paper_queries = int(next(c.value for c in numbers.cells if c.table == "17" and c.measure == "queries"))
    costs = cost.annotation_cost(config, bench, stats, paper_queries)
    blocks += _cost_blocks(numbers, stages, costs, paper_queries)

    folder = out / "figures"
    logs, positives = _training_logs(spec.get("trainings", {})), _positives(spec.get("label_sets", {}))
    drawn = [
        (figures.training_loss(logs, folder), "Training loss per training job"),
        (figures.positives_per_query(positives, folder), "Positives per query per label set"),
        (figures.ours_vs_paper(cells, folder), "Ours against the paper, per table (filled cells)"),
        (figures.hours_per_stage(stages, folder), "Wall hours and GPU-hours per stage"),
    ]  # fmt: skip
    blocks.append(("h", 2, "Figures"))
    blocks += [render.Figure(stem, caption) for stem, caption in drawn]

    cells.drop("label").write_csv(out / "cells.tsv", separator="\t")
    stages.write_csv(out / "stages.tsv", separator="\t", float_precision=6)
    costs.write_csv(out / "cost.tsv", separator="\t", float_precision=6)
    (out / "index.md").write_text(render.markdown(blocks), encoding="utf-8")
    (out / "index.html").write_text(
        render.html_page(blocks, "Utility-focused LLM annotation: report", folder), encoding="utf-8"
    )
    return {
        "cells": cells.height,
        "cells_filled": cells.filter(pl.col("status") == "ok").height,
        "benchmarks": bench.height,
        "figures": len(drawn),
    }
