"""The report's cells from hand-made results: ours beside the paper's, the difference, both marks, and rows
the config does not run (utilanno.report.compare)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from utilanno import config
from utilanno.report import compare, paper, rows

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def numbers():
    return paper.load()


@pytest.fixture(scope="module")
def matches(numbers):
    return rows.map_experiments(config.load(REPO / "config.yaml"), numbers)


@pytest.fixture
def ours(tmp_path):
    results = tmp_path / "results.tsv"
    results.write_text(
        "system\tdataset\tmeasure\tvalue\tn_queries\n"
        "retromae-human\tmsmarco\tRR@10\t0.371\t6980\n"
        "retromae-human\tmsmarco\tR@1000\t0.985\t6980\n"
        "retromae-utilsel\tmsmarco\tRR@10\t0.353\t6980\n"
        "retromae-utilsel\tmsmarco\tR@1000\t0.9812\t6980\n"
        "retromae-utilsel\tdl19\tnDCG@10\t0.6904\t43\n"
    )
    sig = tmp_path / "significance.tsv"
    sig.write_text(
        "system\tdataset\tmeasure\tagainst\tbaseline\tvalue\tbaseline_value\tt\tp\tmark\n"
        "retromae-utilsel\tmsmarco\tRR@10\thuman\tretromae-human\t0.353\t0.371\t-3.1\t0.002\t-\n"
        "retromae-utilsel\tmsmarco\tRR@10\treplug\tretromae-replug\t0.353\t0.338\t2.5\t0.01\t+\n"
        'retromae-utilsel\tmsmarco\tR@1000\thuman\tretromae-human\t0.9812\t0.985\t-1.0\t0.3\t""\n'
        "retromae-utilsel\tdl19\tnDCG@10\thuman\tretromae-human\t0.6904\t0.68\t2.2\t0.03\t+\n"
    )
    return compare.our_results(results, sig)


def cell(table: pl.DataFrame, row: str, dataset: str, measure: str) -> dict:
    hit = table.filter(
        (pl.col("row") == row) & (pl.col("dataset") == dataset) & (pl.col("measure") == measure)
    )
    assert hit.height == 1
    return hit.row(0, named=True)


def test_our_marks_are_written_as_the_papers(ours):
    got = {(s, d, m): (round(v, 6), k) for s, g, d, m, v, k in ours.iter_rows() if g is None}
    assert got[("retromae-utilsel", "msmarco", "RR@10")] == (
        35.3,
        "−†",
    )  # worse than Human, differs from REPLUG
    assert got[("retromae-utilsel", "msmarco", "R@1000")] == (98.12, "")
    assert got[("retromae-utilsel", "dl19", "nDCG@10")] == (69.04, "+")
    assert got[("retromae-human", "msmarco", "RR@10")] == (37.1, "")


def test_cells_differences_and_marks_of_table_2(numbers, matches, ours):
    table = compare.side_by_side(numbers, "t2-retromae", matches, ours)
    assert table.height == 10 * 6  # every printed cell: 10 rows x 6 columns, none dropped
    human = cell(table, "human", "msmarco", "RR@10")
    assert human["system"] == "retromae-human" and human["paper"] == 38.6
    assert human["diff"] == pytest.approx(37.1 - 38.6)
    assert compare.cell_text(human) == "37.1 / 38.6 (−1.5)"
    util = cell(table, "utilsel", "msmarco", "RR@10")
    assert (util["our_mark"], util["paper_mark"]) == ("−†", "−†")
    assert compare.cell_text(util) == "35.3−† / 35.3−† (+0.0)"
    assert compare.cell_text(cell(table, "utilsel", "msmarco", "R@1000")) == "98.1 / 97.7−† (+0.4)"
    replug = cell(table, "replug", "msmarco", "RR@10")  # configured, not evaluated yet
    assert replug["system"] == "retromae-replug" and replug["ours"] is None
    assert replug["status"] == "no result: retromae-replug has no RR@10 on msmarco"
    assert compare.cell_text(replug) == "no result / 33.8−"


def test_a_row_the_config_does_not_run_stays_and_says_why(numbers, matches, ours):
    table = compare.side_by_side(numbers, "t2-retromae-v2-replug-human", matches, ours)
    assert table.height == 10 and table["ours"].null_count() == 10
    assert set(table["status"]) == {f"not run: {rows.NOT_CONFIGURED['replug-human']}"}
    text = compare.markdown(table, "Table 2 (v2), REPLUG (Human)")
    assert "| REPLUG (Human) | not run / 34.5 | not run / 80.6 |" in text
    assert f"- REPLUG (Human): not run: {rows.NOT_CONFIGURED['replug-human']}" in text


def test_markdown_keeps_the_papers_layout(numbers, matches, ours):
    text = compare.markdown(compare.side_by_side(numbers, "t2-retromae", matches, ours), "Table 2, RetroMAE")
    lines = text.splitlines()
    assert lines[2] == (
        "| | msmarco RR@10 | msmarco R@1000 | dl19 nDCG@10 | dl20 nDCG@10 | msmarco-hybrid-retromae RR@10 "
        "| msmarco-hybrid-retromae nDCG@10 |"
    )
    assert lines[4].startswith("| Human | 37.1 / 38.6 (−1.5) | 98.5 / 98.6 (−0.1) | no result / 68.2 |")
    assert [line.split(" | ")[0] for line in lines[4:14]] == [
        "| " + numbers.row_labels[r] for r in numbers.entries["t2-retromae"].rows
    ]


def test_cost_tables_and_unknown_entries_are_refused(numbers, matches, ours):
    with pytest.raises(KeyError, match="no table entry 't99'"):
        compare.side_by_side(numbers, "t99", matches, ours)
    with pytest.raises(ValueError, match="a cost table"):
        compare.side_by_side(numbers, "t17-cost", matches, ours)
