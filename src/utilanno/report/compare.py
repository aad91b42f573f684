"""Ours beside the paper's (issue 14, the report's cells): for one retrieval table entry of
paper_numbers.yaml, every printed cell with our value, the paper's, the difference and both sets of
significance marks.

Our values come from the evaluation stage's `results.tsv` (fractions; the paper prints %, so ours are x 100)
and its `significance.tsv`. Our marks are written as the paper writes them: "+" / "−" when the paired t-test
against the Human experiment of the same backbone finds the system better / worse, "†" when the test against
the REPLUG baseline finds a difference. A paper row no experiment reproduces stays in the table as "not
run", with the reason `paper.map_experiments` gives; a configured row without a result yet says so.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from utilanno.report.paper import PaperNumbers, RowMatch

COLUMNS = {
    "row": pl.String,
    "label": pl.String,
    "dataset": pl.String,
    "measure": pl.String,
    "loss": pl.String,
    "system": pl.String,
    "ours": pl.Float64,
    "our_mark": pl.String,
    "paper": pl.Float64,
    "paper_mark": pl.String,
    "diff": pl.Float64,
    "status": pl.String,
}


def our_results(results_tsv: str | Path, significance_tsv: str | Path | None = None) -> pl.DataFrame:
    """(system, dataset, measure) -> value in % and our mark in the paper's notation."""
    values = pl.read_csv(results_tsv, separator="\t", schema_overrides={"value": pl.Float64})
    values = values.select("system", "dataset", "measure", (pl.col("value") * 100).alias("ours"))
    if significance_tsv is None or not Path(significance_tsv).exists():
        return values.with_columns(our_mark=pl.lit(""))
    sig = pl.read_csv(significance_tsv, separator="\t", schema_overrides={"mark": pl.String})
    sig = sig.with_columns(pl.col("mark").fill_null(""))

    def marks(against: str, plus: str, minus: str) -> pl.DataFrame:
        part = sig.filter(pl.col("against") == against)
        sign = pl.when(pl.col("mark") == "+").then(pl.lit(plus))
        sign = sign.when(pl.col("mark") == "-").then(pl.lit(minus)).otherwise(pl.lit(""))
        return part.select("system", "dataset", "measure", sign.alias(against))

    keys = ["system", "dataset", "measure"]
    out = values.join(marks("human", "+", "−"), on=keys, how="left")
    out = out.join(marks("replug", "†", "†"), on=keys, how="left")
    mark = pl.concat_str(pl.col("human").fill_null(""), pl.col("replug").fill_null(""))
    return out.with_columns(our_mark=mark).drop("human", "replug")


def side_by_side(
    paper: PaperNumbers, entry: str, matches: list[RowMatch], ours: pl.DataFrame
) -> pl.DataFrame:
    """One row per printed cell of `entry` (COLUMNS), in the paper's row and column order."""
    if entry not in paper.entries:
        raise KeyError(f"no table entry {entry!r} in {paper.path} (entries: {', '.join(paper.entries)})")
    if paper.entries[entry].kind != "retrieval":
        raise ValueError(
            f"{entry}: a {paper.entries[entry].kind} table; only retrieval tables are compared here"
        )
    found = {(m.row, m.loss): m for m in matches if m.entry == entry}
    lookup = {(s, d, m): (v, k) for s, d, m, v, k in ours.select(
        "system", "dataset", "measure", "ours", "our_mark").iter_rows()}  # fmt: skip
    rows = []
    for cell in (c for c in paper.cells if c.entry == entry):
        match = found.get((cell.row, cell.loss))
        system = match.experiments[0] if match and match.experiments else None
        value, mark, status = None, None, "ok"
        if system is None:
            status = f"not run: {match.reason if match else 'no mapping'}"
        elif (system, cell.dataset, cell.measure) in lookup:
            value, mark = lookup[(system, cell.dataset, cell.measure)]
        else:
            status = f"no result: {system} has no {cell.measure} on {cell.dataset} in results.tsv"
        diff = value - cell.value if value is not None and cell.value is not None else None
        rows.append(
            {
                "row": cell.row,
                "label": paper.row_labels.get(cell.row, cell.row),
                "dataset": cell.dataset,
                "measure": cell.measure,
                "loss": cell.loss,
                "system": system,
                "ours": value,
                "our_mark": mark,
                "paper": cell.value,
                "paper_mark": cell.mark,
                "diff": diff,
                "status": status,
            }
        )
    return pl.DataFrame(rows, schema=COLUMNS)


def cell_text(r: dict) -> str:
    """'ours / paper (diff)' with each side's marks, e.g. '35.1−† / 35.3−† (−0.2)'."""
    paper = "—" if r["paper"] is None else f"{r['paper']:.1f}{r['paper_mark'] or ''}"
    if r["status"].startswith("not run"):
        return f"not run / {paper}"
    if r["ours"] is None:
        return f"no result / {paper}"
    ours = f"{r['ours']:.1f}{r['our_mark'] or ''}"
    if r["diff"] is None:
        return f"{ours} / {paper}"
    return f"{ours} / {paper} ({r['diff']:+.1f})".replace("-", "−")


def markdown(table: pl.DataFrame, caption: str) -> str:
    """The paper's layout: its rows down, its columns across, a cell per printed value; the reasons of rows
    that are not run listed under the table."""
    keys = table.select("dataset", "measure", "loss").iter_rows()
    columns = list(dict.fromkeys(f"{d} {m}" + (f" ({loss})" if loss else "") for d, m, loss in keys))
    lines = [f"**{caption}** (ours / paper (difference), in %)", "", "| | " + " | ".join(columns) + " |"]
    lines.append("|---|" + "---:|" * len(columns))
    reasons: dict[str, str] = {}
    for label in dict.fromkeys(table["label"]):
        mine = table.filter(pl.col("label") == label)
        cells = {}
        for r in mine.iter_rows(named=True):
            cells[f"{r['dataset']} {r['measure']}" + (f" ({r['loss']})" if r["loss"] else "")] = cell_text(r)
            if r["status"] != "ok":
                reasons[label] = r["status"]
        lines.append(f"| {label} | " + " | ".join(cells.get(c, "") for c in columns) + " |")
    if reasons:
        lines += ["", *(f"- {label}: {why}" for label, why in reasons.items())]
    return "\n".join(lines) + "\n"
