"""The report stage on the tiny run: every configured table present, filled where the tiny grid runs it
(through its stand-ins) and "not run" with the reason elsewhere, our numbers equal to the results tables',
and `snakemake --report` embedding the page and its figures."""

from __future__ import annotations

import base64
import json
import re

import polars as pl
import pytest
from conftest import snakemake

from utilanno import config
from utilanno.plan import Plan
from utilanno.report import build, paper

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tiny_work):
    cfg = config.load(tiny_work / "tiny.yaml")
    results = tiny_work / "results-tiny"
    cells = pl.read_csv(results / "report" / "cells.tsv", separator="\t", infer_schema_length=None)
    return results, cfg, cells


def one(cells: pl.DataFrame, entry: str, row: str, dataset: str, measure: str, generator=None) -> dict:
    hit = cells.filter(
        (pl.col("entry") == entry)
        & (pl.col("row") == row)
        & (pl.col("dataset") == dataset)
        & (pl.col("measure") == measure)
        & (pl.col("generator").is_null() if generator is None else pl.col("generator") == generator)
    )
    assert hit.height == 1, hit
    return hit.row(0, named=True)


def test_every_table_is_printed_whole(tiny):
    results, _, cells = tiny
    numbers = paper.load()
    assert cells.height == sum(1 for c in numbers.cells if c.table != "17")
    text = (results / "report" / "index.md").read_text()
    for table in build.TABLE_ORDER:
        assert f"## Table {table}\n" in text or (table == "17" and "## Cost (Table 17's method)" in text)
    for name in Plan.REPORT_FIGURES:
        assert (results / "report" / "figures" / f"{name}.png").stat().st_size > 1000


def test_cells_are_filled_through_the_stand_ins(tiny):
    results, _, cells = tiny
    table = pl.read_csv(results / "metrics" / "results.tsv", separator="\t")
    ours = {(s, d, m): v * 100 for s, d, m, v, _ in table.iter_rows()}
    # Table 2 (tiny-bert for RetroMAE): MS MARCO, DL and the Hybrid Test set of the tiny-bert pool
    for row, system in (("human", "tiny-human"), ("utilsel", "tiny-utilsel"), ("replug", "tiny-replug")):
        for dataset, ours_name, measure in (
            ("msmarco", "msmarco", "RR@10"),
            ("dl19", "dl19", "nDCG@10"),
            ("msmarco-hybrid-retromae", "msmarco-hybrid-tiny-bert", "RR@10"),
        ):
            c = one(cells, "t2-retromae", row, dataset, measure)
            assert (c["status"], c["system"]) == ("ok", system)
            assert c["ours"] == pytest.approx(ours[(system, ours_name, measure)], abs=1e-4)
            assert c["diff"] == pytest.approx(c["ours"] - c["paper"], abs=1e-9)
    # the BEIR average (Table 3) and a paper measure the tiny grid does not compute
    assert one(cells, "t3-retromae", "utilsel", "beir", "nDCG@10")["ours"] == pytest.approx(
        ours[("tiny-utilsel", "beir", "nDCG@10")], abs=1e-4
    )
    assert one(cells, "t2-retromae", "human", "msmarco", "R@1000")["status"] == (
        "no result: tiny-human has no R@1000 on msmarco"
    )
    # Table 1 (tiny-qwen2 for Qwen-2.5-32B-Int8): the annotation's own statistics, in %
    stats = json.loads(
        (results / "annotate" / "msmarco" / "tiny-qwen2" / "relsel" / "stats.json").read_text()
    )
    c = one(cells, "t1-annotation", "qwen25-32b-int8", "msmarco", "relsel/precision")
    assert c["ours"] == pytest.approx(stats["precision"] * 100)
    # RAG: the tiny generator fills the Qwen columns; Llama's say why not; Table 13's top 5 is our top 3
    rag = pl.read_csv(results / "rag" / "results.tsv", separator="\t")
    rag_ours = {(s, d, m): v * 100 for s, d, m, v, _ in rag.iter_rows()}
    c = one(cells, "t4-msmarco-qa", "utilsel", "msmarco", "ROUGE-L", "qwen25-32b-int8")
    assert c["ours"] == pytest.approx(rag_ours[("tiny-utilsel/tiny-qwen2", "msmarco", "ROUGE-L")], abs=1e-4)
    c = one(cells, "t4-msmarco-qa", "utilsel", "msmarco", "ROUGE-L", "llama31-8b")
    assert c["status"] == "not run: generator 'llama31-8b' is not in rag.generators"
    c = one(cells, "t13-msmarco-qa-top5", "human", "msmarco-top5", "Recall")
    assert c["ours"] == pytest.approx(rag_ours[("tiny-human/tiny-qwen2", "msmarco-top3", "Recall")], abs=1e-4)
    c = one(cells, "t5-nq-hotpotqa", "human", "beir-nq", "EM", "qwen25-32b-int8")
    assert c["ours"] == pytest.approx(rag_ours[("tiny-human/tiny-qwen2", "beir-nq", "EM")], abs=1e-4)


def test_rows_the_tiny_grid_does_not_run_say_why(tiny):
    results, _, cells = tiny
    contriever = cells.filter(pl.col("entry") == "t2-contriever")
    assert contriever["ours"].null_count() == contriever.height
    assert set(contriever["status"]) == {
        "not run: backbone 'contriever' is not in config backbones (nor a report.stand_ins target)"
    }
    cl20 = one(cells, "t2-retromae", "utilsel-cl20", "msmarco", "RR@10")
    assert cl20["status"].startswith("not run: no experiment in the config has these settings")
    text = (results / "report" / "index.md").read_text()
    assert "## Our experiments without a paper row" in text and "| tiny-utilsel-cl50 |" in text
    assert "Stand-ins (ours for the paper's): msmarco-top3 for msmarco-top5, tiny-bert for retromae" in text


def test_snakemake_report_embeds_the_page_and_the_figures(tiny_work, tmp_path):
    out = tmp_path / "report.html"
    snakemake(
        "--configfile", str(tiny_work / "tiny.yaml"), "--directory", str(tiny_work), "--report", str(out)
    )
    page = out.read_text(encoding="utf-8")
    found = re.search(r'<script id="results">\s*var results = (\{.*?\});\s*</script>', page, re.S)
    assert found, "no results block in the Snakemake report"
    files = json.loads(found.group(1))

    def content(name: str) -> bytes:
        key = next(k for k in files if k.endswith(f"report/{name}"))
        return base64.b64decode(files[key]["data_uri"].split(";base64,", 1)[1])

    index = content("index.html").decode("utf-8")
    assert (tiny_work / "results-tiny" / "report" / "index.html").read_text(encoding="utf-8") == index
    assert "<caption>Table 2: In-domain retrieval, RetroMAE backbone" in index
    # categories per stage: the annotation's statistics, the evaluation's and RAG's tables, the report
    found = re.search(r'<script id="categories">\s*var categories = (\{.*?\});\s*</script>', page, re.S)
    categories = json.loads(found.group(1))
    assert set(categories) == {"Annotate", "Evaluate", "RAG", "Report"}
    stats = [f for files in categories["Annotate"].values() for f in files]
    assert sorted("/".join(f.split("/")[-4:-1]) for f in stats) == sorted(
        [f"msmarco/tiny-qwen2/{s}" for s in ("relsel", "pseudo_answer", "utilsel", "utilrank")]
        + [f"own/tiny-qwen2/{s}" for s in ("relsel", "pseudo_answer", "utilsel")]  # the own corpus's run
    )
    assert set(categories["Report"]) == {"Tables", "Figures"}
    for name in Plan.REPORT_FIGURES:
        assert content(f"figures/{name}.png").startswith(b"\x89PNG\r\n\x1a\n")
        assert b"<svg" in content(f"figures/{name}.svg")
        key = next(k for k in files if k.endswith(f"figures/{name}.png"))
        assert files[key]["caption"].strip(), name  # from report/<name>.rst
