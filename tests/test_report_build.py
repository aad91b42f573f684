"""The report from hand-made results (utilanno.report.build): cells, differences and marks of retrieval, RAG
and annotation tables, rows not run, our experiments without a paper row, the cost in Table 17's way, the
figures, and both renderings. Every expected number is worked out by hand from the inputs below."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import polars as pl
import pytest

from utilanno import config
from utilanno.errors import InputFormatError
from utilanno.plan import Plan
from utilanno.report import build, compare, paper, rows

REPO = Path(__file__).resolve().parents[1]
SIG_HEADER = "system\tdataset\tmeasure\tagainst\tbaseline\tvalue\tbaseline_value\tt\tp\tmark\n"


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A paper-grid config with a few hand-made outputs, and the report built from them."""
    tmp = tmp_path_factory.mktemp("report")
    cfg = config.load(REPO / "config.yaml")
    cfg["experiments"]["retromae-utilsel-mine"] = {
        **cfg["experiments"]["retromae-utilsel"],
        "human_fraction": 0.5,
    }
    cfg = config.validate(cfg)
    metrics = [
        write(
            tmp / "metrics/results.tsv",
            "system\tdataset\tmeasure\tvalue\tn_queries\n"
            "retromae-human\tmsmarco\tRR@10\t0.371\t6980\n"
            "retromae-utilsel\tmsmarco\tRR@10\t0.353\t6980\n"
            "retromae-utilsel-mine\tmsmarco\tRR@10\t0.36\t6980\n",
        ),
        write(
            tmp / "metrics/significance.tsv",
            SIG_HEADER
            + "retromae-utilsel\tmsmarco\tRR@10\thuman\tretromae-human\t0.353\t0.371\t-3.1\t0.002\t-\n"
            "retromae-utilsel\tmsmarco\tRR@10\treplug\tretromae-replug\t0.353\t0.338\t2.5\t0.01\t+\n",
        ),
    ]
    rag = [
        write(
            tmp / "rag/results.tsv",
            "system\tdataset\tmeasure\tvalue\tn_queries\n"
            "retromae-human/llama31-8b\tmsmarco\tRecall\t0.25\t100\n"
            "retromae-human/llama31-8b\tmsmarco\tROUGE-L\t0.351\t100\n"
            "retromae-utilsel/llama31-8b\tmsmarco\tRecall\t0.2\t100\n"
            "retromae-utilsel/llama31-8b\tmsmarco\tROUGE-L\t0.36\t100\n",
        ),
        write(
            tmp / "rag/significance.tsv",
            SIG_HEADER + "retromae-utilsel/llama31-8b\tmsmarco\tROUGE-L\thuman\t"
            "retromae-human/llama31-8b\t0.36\t0.351\t2\t0.04\t+\n",
        ),
    ]
    stats = {
        "msmarco/qwen25-32b-int8/relsel": {
            "queries": 100,
            "precision": 0.15,
            "recall": 0.93,
            "avg_positives": 6.1,
        },
        "msmarco/qwen25-32b-int8/pseudo_answer": {"queries": 100},
        "msmarco/qwen25-32b-int8/utilsel": {
            "queries": 100,
            "precision": 0.3,
            "recall": 0.8,
            "avg_positives": 2.5,
        },
        "msmarco/qwen25-32b-int8/utilrank": {
            "queries": 100,
            "topk": {"10": {"precision": 0.7, "recall": 0.72, "avg_positives": 1.0}},
        },
    }
    stats = {k: write(tmp / f"annotate/{k}/stats.json", json.dumps(v)) for k, v in stats.items()}
    log = "".join(json.dumps({"step": s, "epoch": 0, "loss": 3.0 / s, "lr": 1e-5}) + "\n" for s in (1, 2, 3))
    write(tmp / "retrievers/retromae-human/train-log.jsonl", log)
    labels = tmp / "labels/human.parquet"
    labels.parent.mkdir()
    pl.DataFrame(
        {"qid": ["1", "1", "2", "3"], "docid": ["a", "b", "c", "d"], "label": [1, 0, 1, 0]}
    ).with_columns(pl.col("label").cast(pl.Int8)).write_parquet(labels)
    bench = tmp / "benchmarks"
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for step, seconds in (("relsel", 1800), ("pseudo_answer", 900), ("utilsel", 900), ("utilrank", 450)):
        write(
            bench / f"{step}/msmarco/qwen25-32b-int8/shard-0.tsv",
            header + f"{seconds}\t0\t1\t1\t1\t1\t0\t0\t1\t10\n",
        )
    write(bench / "train/retromae-human.tsv", header + "360\t0\t1\t1\t1\t1\t0\t0\t1\t20\n")
    write(bench / "train/a-removed-experiment.tsv", header + "99999\t0\t1\t1\t1\t1\t0\t0\t1\t20\n")
    spec = {
        "out": str(tmp / "report"),
        "config": cfg,
        "metrics": metrics,
        "rag": rag,
        "stats": stats,
        "trainings": {"retromae-human": str(tmp / "retrievers/retromae-human")},
        "label_sets": {"human": str(labels)},
        "benchmarks": str(bench),
    }
    counts = build.build(spec)
    return spec, counts, tmp / "report"


def cell(cells: pl.DataFrame, entry: str, row: str, dataset: str, measure: str, **more) -> dict:
    hit = cells.filter(
        (pl.col("entry") == entry)
        & (pl.col("row") == row)
        & (pl.col("dataset") == dataset)
        & (pl.col("measure") == measure)
    )
    for key, value in more.items():
        hit = hit.filter(pl.col(key) == value)
    assert hit.height == 1, hit
    return hit.row(0, named=True)


def cells_of(out: Path) -> pl.DataFrame:
    return pl.read_csv(out / "cells.tsv", separator="\t", infer_schema_length=None)


def test_every_output_is_written(made):
    _, counts, out = made
    for name in Plan.REPORT_FILES:
        assert (out / name).stat().st_size > 0, name
    for name in Plan.REPORT_FIGURES:
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (out / "figures" / f"{name}.svg").read_bytes()
    numbers = paper.load()
    printed = sum(1 for c in numbers.cells if c.table != "17")
    assert counts["cells"] == printed == cells_of(out).height  # every printed cell, none dropped
    # the removed experiment's benchmark is left out; the 4 annotation files and the training's are read
    assert counts["benchmarks"] == 5


def test_retrieval_cells_differences_and_marks(made):
    cells = cells_of(made[2])
    human = cell(cells, "t2-retromae", "human", "msmarco", "RR@10")
    assert (human["ours"], human["paper"]) == (pytest.approx(37.1), 38.6)
    assert human["diff"] == pytest.approx(-1.5)
    util = cell(cells, "t2-retromae", "utilsel", "msmarco", "RR@10")
    assert (util["our_mark"], util["paper_mark"]) == ("−†", "−†")
    assert util["diff"] == pytest.approx(0.0, abs=1e-9)
    contriever = cell(cells, "t2-contriever", "human", "msmarco", "RR@10")
    assert contriever["status"] == "no result: contriever-human has no RR@10 on msmarco"


def test_rag_cells_take_the_generators_column_and_the_retrievers_recall(made):
    cells = cells_of(made[2])
    rouge = cell(cells, "t4-msmarco-qa", "utilsel", "msmarco", "ROUGE-L", generator="llama31-8b")
    assert (rouge["ours"], rouge["our_mark"], rouge["paper"]) == (pytest.approx(36.0), "+", 34.7)
    assert rouge["diff"] == pytest.approx(36.0 - 34.7)
    recall = cell(cells, "t4-msmarco-qa", "human", "msmarco", "Recall")
    assert (recall["ours"], recall["paper"]) == (pytest.approx(25.0), 24.7)
    qwen = cell(cells, "t4-msmarco-qa", "human", "msmarco", "ROUGE-L", generator="qwen25-32b-int8")
    assert qwen["ours"] is None and qwen["status"].startswith("no result")  # configured, not run yet
    spec = made[0]
    numbers = paper.load()
    matches = rows.map_experiments(spec["config"], numbers)
    ours = compare.our_results(*spec["rag"])
    only_llama = compare.side_by_side(numbers, "t4-msmarco-qa", matches, ours, {"llama31-8b"})
    qwen = only_llama.filter((pl.col("row") == "human") & (pl.col("generator") == "qwen25-32b-int8")).row(
        0, named=True
    )
    assert qwen["status"] == "not run: generator 'qwen25-32b-int8' is not in rag.generators"


def test_annotation_statistics_of_table_1_and_16(made):
    cells = cells_of(made[2])
    precision = cell(cells, "t1-annotation", "qwen25-32b-int8", "msmarco", "relsel/precision")
    assert (precision["ours"], precision["paper"]) == (pytest.approx(15.0), 15.1)
    positives = cell(cells, "t1-annotation", "qwen25-32b-int8", "msmarco", "utilrank@10/avg_positives")
    assert (positives["ours"], positives["paper"]) == (pytest.approx(1.0), 1.0)
    llama = cell(cells, "t1-annotation", "llama31-8b", "msmarco", "relsel/recall")
    assert llama["ours"] is None and llama["status"].startswith("no result")
    # Table 16: the label set's positives per query, the same in both loss columns' row
    util = cell(cells, "t16-utilrank-threshold", "utilsel", "msmarco", "avg_positives")
    assert (util["ours"], util["paper"]) == (pytest.approx(2.5), 2.9)


def test_rows_not_run_stay_with_their_reason(made):
    cells = cells_of(made[2])
    v2 = cells.filter(pl.col("entry") == "t2-retromae-v2-replug-human")
    assert v2.height == 10 and v2["ours"].null_count() == 10
    assert set(v2["status"]) == {f"not run: {rows.NOT_CONFIGURED['replug-human']}"}
    text = (made[2] / "index.md").read_text()
    assert "| REPLUG (Human) | not run / 34.5 | not run / 80.6 |" in text


def test_an_experiment_without_a_paper_row_is_shown(made):
    text = (made[2] / "index.md").read_text()
    assert "## Our experiments without a paper row" in text
    assert "| retromae-utilsel-mine | 36.0 |" in text


def test_cost_in_table_17s_way(made):
    spec, _, out = made
    table = pl.read_csv(out / "cost.tsv", separator="\t")
    assert set(table["run"]) == {"msmarco", "nq"}  # per annotating run (nq-dpr has no annotator)
    cost = {r["item"]: r for r in table.filter(pl.col("run") == "msmarco").iter_rows(named=True)}
    assert cost["utilsel"]["usd_per_1k"] == pytest.approx(3.2 / 100 * 1000)
    human = 0.09 * 31
    assert cost["human"]["usd"] == pytest.approx(human * 100)
    assert cost["human"]["usd_paper_scale"] == pytest.approx(1369909.53)  # the paper's $1,369,910
    # UtilSel: relsel + pseudo answer + utilsel, 3600 s on the annotator's 4 GPUs = 4 GPU-hours at $0.8
    assert cost["utilsel"]["gpu_h"] == pytest.approx(4.0)
    assert cost["utilsel"]["usd"] == pytest.approx(3.2)
    assert cost["utilsel"]["usd_paper_scale"] == pytest.approx(3.2 / 100 * 491007)
    assert cost["utilrank"]["gpu_h"] == pytest.approx((1800 + 900 + 450) * 4 / 3600)
    assert cost["utilsel-cl20"]["usd"] == pytest.approx(0.2 * human * 100 + 3.2)
    stages = {r["stage"]: r for r in pl.read_csv(out / "stages.tsv", separator="\t").iter_rows(named=True)}
    assert stages["annotate"]["gpu_h"] == pytest.approx((1800 + 900 + 900 + 450) * 4 / 3600)
    assert stages["train"]["gpu_h"] == pytest.approx(360 * 8 / 3600)  # training.gpus: 8
    assert stages["train"]["cpu_h"] == pytest.approx(20 / 3600, rel=1e-4)  # 6 decimals in the file


def test_html_holds_the_tables_and_figures(made):
    page = (made[2] / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<td>37.1 / 38.6 (−1.5)</td>" in page
    assert "<td>35.3−† / 35.3−† (+0.0)</td>" in page
    for name in Plan.REPORT_FIGURES:  # inlined: the page is whole on its own
        svg = (made[2] / "figures" / f"{name}.svg").read_bytes()
        assert (
            f'<figure id="{name}"><img src="data:image/svg+xml;base64,{base64.b64encode(svg).decode()}"'
            in page
        )
    assert (
        "![Training loss per training job](figures/training-loss.svg)" in (made[2] / "index.md").read_text()
    )


def test_a_rebuild_is_byte_identical(made, tmp_path):
    spec, _, out = made
    build.build({**spec, "out": str(tmp_path)})
    for path in sorted(out.rglob("*")):
        if path.is_file():
            assert (tmp_path / path.relative_to(out)).read_bytes() == path.read_bytes(), path


def test_a_damaged_training_log_is_named(made, tmp_path):
    spec, _, _ = made
    folder = tmp_path / "retromae-human"
    write(folder / "train-log.jsonl", '{"step": 1, "loss": 2.0}\n{"step": 2\n')
    with pytest.raises(InputFormatError, match=r"train-log.jsonl:2"):
        build.build({**spec, "out": str(tmp_path / "out"), "trainings": {"retromae-human": str(folder)}})


def test_a_config_without_rag_still_reports(made, tmp_path):
    """A stage the config does not run hands the report no tables (None): its cells say so, nothing fails;
    a curriculum's stage-1 benchmark counts as training."""
    spec = made[0]
    bench = tmp_path / "benchmarks"
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    write(bench / "train/retromae-utilsel-cl20-stage1.tsv", header + "450\t0\t1\t1\t1\t1\t0\t0\t1\t20\n")
    counts = build.build({**spec, "out": str(tmp_path / "out"), "rag": None, "benchmarks": str(bench)})
    assert counts["benchmarks"] == 1
    cells = cells_of(tmp_path / "out")
    rouge = cell(cells, "t4-msmarco-qa", "utilsel", "msmarco", "ROUGE-L", generator="llama31-8b")
    assert rouge["ours"] is None and rouge["status"].startswith("no result")
    assert cell(cells, "t2-retromae", "human", "msmarco", "RR@10")["ours"] == pytest.approx(37.1)
    stages = pl.read_csv(tmp_path / "out" / "stages.tsv", separator="\t")
    assert stages.row(0, named=True)["gpu_h"] == pytest.approx(450 * 8 / 3600, rel=1e-4)


def test_a_mined_runs_human_cost_counts_its_candidates():
    """Human judgements of a mined run cover its candidates (10 here), not the paper's 31; the paper-scale
    column keeps the paper's 31 passages x 491,007 queries."""
    from utilanno.report import cost

    config = {
        "annotation": {"own": {"annotator": "m"}, "msmarco": {"annotator": "m"}},
        "llms": {"m": {"gpus": 1}},
        "report": {
            "gpu_price_per_hour": 0.8,
            "human_price_per_judgement": 0.09,
            "human_passages_per_query": 31,
        },
        "mined_pool_sizes": {"own": 10},
    }
    stats = {("own", "m", "relsel"): {"queries": 24}, ("msmarco", "m", "relsel"): {"queries": 64}}
    bench = pl.DataFrame(schema=cost.BENCHMARKS)
    rows = {
        (r["run"], r["item"]): r
        for r in cost.annotation_cost(config, bench, stats, 491007).iter_rows(named=True)
    }
    assert rows[("own", "human")]["usd"] == pytest.approx(0.09 * 10 * 24)
    assert rows[("own", "human")]["usd_per_1k"] == pytest.approx(0.09 * 10 * 1000)
    assert rows[("msmarco", "human")]["usd"] == pytest.approx(0.09 * 31 * 64)
    assert rows[("own", "human")]["usd_paper_scale"] == pytest.approx(0.09 * 31 * 491007)
    assert "10 passages" in rows[("own", "human")]["method"]
