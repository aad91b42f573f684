"""Ours beside the paper's: for one table entry of paper_numbers.yaml, every printed cell with our value, the
paper's, the difference and both sets of significance marks.

Our values are one long frame (`OURS`: system, generator, dataset, measure, ours, our_mark) in the paper's
units and names: retrieval and QA results x 100 (the paper prints %), RAG systems `<experiment>/<generator>`
split in two, and every name put through `report.stand_ins`. Our marks are written as the paper writes them:
"+" / "−" when the paired t-test against the Human experiment of the same backbone finds the system better /
worse, "†" when the test against the REPLUG baseline finds a difference. A paper row no experiment reproduces
stays in the table as "not run", with the reason `rows.map_experiments` gives; a configured row without a
result yet says so.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from utilanno.report.paper import PaperNumbers
from utilanno.report.rows import RowMatch

OURS = {
    "system": pl.String,
    "generator": pl.String,
    "dataset": pl.String,
    "measure": pl.String,
    "ours": pl.Float64,
    "our_mark": pl.String,
}
COLUMNS = {
    "row": pl.String,
    "label": pl.String,
    "dataset": pl.String,
    "measure": pl.String,
    "generator": pl.String,
    "loss": pl.String,
    "system": pl.String,
    "ours": pl.Float64,
    "our_mark": pl.String,
    "paper": pl.Float64,
    "paper_mark": pl.String,
    "diff": pl.Float64,
    "status": pl.String,
}


def paper_dataset(name: str, stand_ins: dict[str, str]) -> str:
    """Our dataset name in the paper's: a stand-in, and the Hybrid Test's `<dataset>-hybrid-<pool>` with both
    parts put through the stand-ins."""
    if name in stand_ins:
        return stand_ins[name]
    base, sep, pool = name.partition("-hybrid-")
    if sep:
        return f"{stand_ins.get(base, base)}-hybrid-{stand_ins.get(pool, pool)}"
    return name


def our_results(
    results_tsv: str | Path,
    significance_tsv: str | Path | None = None,
    stand_ins: dict[str, str] | None = None,
) -> pl.DataFrame:
    """`results.tsv` (and its `significance.tsv`) of the evaluation or RAG stage -> `OURS`, in %."""
    named = stand_ins or {}
    values = pl.read_csv(
        results_tsv, separator="\t", schema_overrides={"value": pl.Float64, "system": pl.String}
    )
    values = values.select("system", "dataset", "measure", (pl.col("value") * 100).alias("ours"))
    if significance_tsv is not None and Path(significance_tsv).exists():
        sig = pl.read_csv(significance_tsv, separator="\t", schema_overrides={"mark": pl.String})
        sig = sig.with_columns(pl.col("mark").fill_null(""))

        def marks(against: str, plus: str, minus: str) -> pl.DataFrame:
            part = sig.filter(pl.col("against") == against)
            sign = pl.when(pl.col("mark") == "+").then(pl.lit(plus))
            sign = sign.when(pl.col("mark") == "-").then(pl.lit(minus)).otherwise(pl.lit(""))
            return part.select("system", "dataset", "measure", sign.alias(against))

        keys = ["system", "dataset", "measure"]
        values = values.join(marks("human", "+", "−"), on=keys, how="left")
        values = values.join(marks("replug", "†", "†"), on=keys, how="left")
        mark = pl.concat_str(pl.col("human").fill_null(""), pl.col("replug").fill_null(""))
        values = values.with_columns(our_mark=mark).drop("human", "replug")
    else:
        values = values.with_columns(our_mark=pl.lit(""))
    parts = values["system"].str.split_exact("/", 1)
    generator = parts.struct.field("field_1")
    return pl.DataFrame(
        {
            "system": parts.struct.field("field_0"),
            "generator": [None if g is None else named.get(g, g) for g in generator],
            "dataset": [paper_dataset(d, named) for d in values["dataset"]],
            "measure": values["measure"],
            "ours": values["ours"],
            "our_mark": values["our_mark"],
        },
        schema=OURS,
    )


def _match_for(found: dict, row: str, loss: str | None) -> RowMatch | None:
    """The row's match; a cell without a loss in a table with loss columns (Table 16's positives per query)
    takes the row's first match that has experiments (the label set is the same)."""
    if (row, loss) in found:
        return found[(row, loss)]
    same = [m for (r, _), m in found.items() if r == row]
    return next((m for m in same if m.experiments), same[0] if same else None)


def side_by_side(
    paper: PaperNumbers,
    entry: str,
    matches: list[RowMatch],
    ours: pl.DataFrame,
    generators: set[str] | None = None,
) -> pl.DataFrame:
    """One row per printed cell of `entry` (COLUMNS), in the paper's row and column order. `ours` is `OURS`
    (retrieval and RAG results, annotation statistics: whatever the entry's cells name); `generators` the
    RAG generators the config runs, in the paper's names (None: those `ours` has results of)."""
    if entry not in paper.entries:
        raise KeyError(f"no table entry {entry!r} in {paper.path} (entries: {', '.join(paper.entries)})")
    kind = paper.entries[entry].kind
    if kind == "cost":
        raise ValueError(f"{entry}: a cost table; see utilanno.report.cost")
    found = {(m.row, m.loss): m for m in matches if m.entry == entry}
    lookup: dict[tuple, tuple[float, str]] = {}
    answered: dict[tuple, str] = {}  # (system, dataset, measure) -> a generator that has it (RAG's Recall)
    for s, g, d, m, v, k in ours.select(*OURS).iter_rows():
        lookup[(s, g, d, m)] = (v, k)
        if g is not None:
            answered.setdefault((s, d, m), g)
    our_generators = generators if generators is not None else {g for g in ours["generator"] if g is not None}
    rows = []
    for cell in (c for c in paper.cells if c.entry == entry):
        match = _match_for(found, cell.row, cell.loss)
        system = match.experiments[0] if match and match.experiments else None
        generator = cell.generator
        value, mark, status = None, None, "ok"
        if system is None:
            status = f"not run: {match.reason if match else 'no mapping'}"
        elif kind == "rag" and generator is not None and generator not in our_generators:
            status = f"not run: generator {generator!r} is not in rag.generators"
        else:
            if kind == "rag" and generator is None:  # the retriever's Recall: the same for every generator
                generator = answered.get((system, cell.dataset, cell.measure))
            hit = lookup.get((system, generator, cell.dataset, cell.measure))
            if hit is not None:
                value, mark = hit
            else:
                status = f"no result: {system} has no {cell.measure} on {cell.dataset}"
        diff = value - cell.value if value is not None and cell.value is not None else None
        rows.append(
            {
                "row": cell.row,
                "label": paper.row_labels.get(cell.row, cell.row),
                "dataset": cell.dataset,
                "measure": cell.measure,
                "generator": cell.generator,
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


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.1f}"


def cell_text(r: dict) -> str:
    """'ours / paper (diff)' with each side's marks, e.g. '35.1−† / 35.3−† (−0.2)'."""
    paper = "—" if r["paper"] is None else f"{_number(r['paper'])}{r['paper_mark'] or ''}"
    if r["status"].startswith("not run"):
        return f"not run / {paper}"
    if r["ours"] is None:
        return f"no result / {paper}"
    ours = f"{_number(r['ours'])}{r['our_mark'] or ''}"
    if r["diff"] is None:
        return f"{ours} / {paper}"
    return f"{ours} / {paper} ({r['diff']:+.1f})".replace("-", "−")


def column_name(r: dict) -> str:
    name = f"{r['dataset']} {r['measure']}"
    if r.get("generator"):
        name += f" [{r['generator']}]"
    if r.get("loss"):
        name += f" ({r['loss']})"
    return name


def grid(table: pl.DataFrame) -> tuple[list[str], list[tuple[str, list[str]]], dict[str, str]]:
    """The paper's layout: (columns, [(row label, cell texts)], {row label: why it is not filled})."""
    records = list(table.iter_rows(named=True))
    columns = list(dict.fromkeys(column_name(r) for r in records))
    rows, reasons = [], {}
    for label in dict.fromkeys(r["label"] for r in records):
        cells = {}
        for r in (r for r in records if r["label"] == label):
            cells[column_name(r)] = cell_text(r)
            if r["status"] != "ok":
                reasons.setdefault(label, r["status"])
        rows.append((label, [cells.get(c, "") for c in columns]))
    return columns, rows, reasons


def markdown(table: pl.DataFrame, caption: str) -> str:
    """The paper's rows down, its columns across, a cell per printed value; the reasons of rows that are not
    filled listed under the table."""
    columns, rows, reasons = grid(table)
    lines = [f"**{caption}** (ours / paper (difference))", "", "| | " + " | ".join(columns) + " |"]
    lines.append("|---|" + "---:|" * len(columns))
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    if reasons:
        lines += ["", *(f"- {label}: {why}" for label, why in reasons.items())]
    return "\n".join(lines) + "\n"
