"""The evaluation stage on the tiny config: runs and metrics for every experiment and dataset, BM25, the
results table with groups and significance tests."""

from __future__ import annotations

import json

import polars as pl
import pytest

from utilanno import config, plan
from utilanno.evaluate import runfiles as runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tiny_work):
    cfg = config.load(tiny_work / "tiny.yaml")
    return tiny_work / "results-tiny", plan.Plan(cfg), cfg


def test_every_system_has_a_run_and_metrics_on_every_dataset(tiny):
    results, p, cfg = tiny
    datasets = p.eval_datasets()
    assert len(datasets) == 10 and "beir-cqadupstack-gis" in datasets
    # the Hybrid Test's set after the configured ones, then the own corpus (an experiment's `evaluate:` only)
    assert datasets[-2:] == ["msmarco-hybrid-tiny-bert", "own"]
    assert p.systems() == [*sorted(cfg["experiments"]), "bm25"]  # by name: reordering changes nothing
    in_domain = ["msmarco", "dl19", "dl20", "msmarco-hybrid-tiny-bert"]
    assert p.eval_datasets("tiny-utilrank") == p.eval_datasets("tiny-utilsel-cl50") == in_domain
    for system in p.systems():
        per_query = pl.read_parquet(results / "metrics" / f"{system}.parquet")
        assert set(per_query["dataset"]) == set(p.eval_datasets(system))
        for dataset in p.eval_datasets(system):
            run = runs.read_run(results / "runs" / system / f"{dataset}.trec")
            queries = pl.read_parquet(results / "data" / dataset / f"queries-{p.eval_split(dataset)}.parquet")
            assert set(run["qid"]) <= set(queries["qid"])
            assert run.group_by("qid").len()["len"].max() <= cfg["evaluation"]["depth"]
            tags = {line.split()[5] for line in (results / "runs" / system / f"{dataset}.trec").open()}
            assert tags == {system}
            mine = per_query.filter(pl.col("dataset") == dataset)
            assert set(mine["measure"]) == set(p.measures(dataset))


def test_results_table_has_groups_and_significance_marks(tiny):
    results, p, cfg = tiny
    table = pl.read_csv(results / "metrics/results.tsv", separator="\t")
    datasets = p.eval_datasets() + ["cqadupstack", "beir"]
    for system in p.systems():  # BM25 too: every system evaluated on BEIR has the BEIR average row
        mine = set(table.filter(pl.col("system") == system)["dataset"])
        if system in ("tiny-utilrank", "tiny-utilsel-cl50", "tiny-own-relsel"):  # their own `evaluate:` lists
            assert mine == set(p.eval_datasets(system))
        elif system == "bm25":  # every evaluated dataset
            assert mine == set(datasets)
        else:  # evaluation.datasets and the Hybrid Test's set
            assert mine == set(datasets) - {"own"}
    bm25 = table.filter((pl.col("system") == "bm25") & (pl.col("measure") == "nDCG@10"))
    value = dict(zip(bm25["dataset"], bm25["value"], strict=True))
    forums = [v for d, v in value.items() if d.startswith("beir-cqadupstack")]
    assert value["cqadupstack"] == pytest.approx(sum(forums) / len(forums), abs=1e-6)
    beir = [value[d] for d in cfg["evaluation"]["groups"]["beir"]]
    assert len(beir) == 4 and value["beir"] == pytest.approx(sum(beir) / 4, abs=1e-6)
    sig = pl.read_csv(
        results / "metrics/significance.tsv", separator="\t", schema_overrides={"mark": pl.String}
    )
    # the own corpus's experiment has no baseline on its dataset (no human or REPLUG run there): no test
    assert set(sig["system"]) == set(cfg["experiments"]) - {"tiny-human", "tiny-own-relsel"}
    assert set(sig["baseline"]) == {"tiny-human", "tiny-replug"}
    assert sig["p"].is_between(0, 1).all()


def test_bm25_finds_the_tiny_world_passages(tiny):
    """Tiny-world queries share their key words with one passage: lexical BM25 must rank it near the top."""
    results, _, _ = tiny
    table = pl.read_csv(results / "metrics/results.tsv", separator="\t")
    rr = table.filter(
        (pl.col("system") == "bm25") & (pl.col("dataset") == "msmarco") & (pl.col("measure") == "RR@10")
    )
    assert rr["value"][0] > 0.8


def test_no_embedding_outlives_its_last_reader(tiny):
    """evaluation.keep_embeddings is false: search read them, Snakemake deleted them (temp())."""
    results, p, cfg = tiny
    assert cfg["evaluation"]["keep_embeddings"] is False
    assert (results / "runs").is_dir()
    left = sorted(str(f.relative_to(results)) for f in (results / "index").rglob("*") if f.is_file())
    assert left == [], left


def test_hybrid_test_judges_the_pool_and_scores_every_system(tiny):
    """The tiny judge labels the union of the pooled retrievers' top passages; gold = human ∪ judged; every
    system (BM25 too) is scored on the hybrid set with its measures and tested against its baselines."""
    results, p, cfg = tiny
    (hybrid_set,) = p.hybrid_sets()
    stats = json.loads((results / "data" / hybrid_set / "hybrid-stats.json").read_text())
    assert stats["queries"] == cfg["hybrid"]["queries"] and sum(stats["window_status"].values()) > 0
    gold = pl.read_csv(
        results / "data" / hybrid_set / "qrels-test.trec",
        separator=" ",
        has_header=False,
        new_columns=["qid", "q0", "docid", "rel"],
        schema_overrides={"qid": pl.String, "docid": pl.String},
    )
    dev = pl.read_csv(
        results / "data/msmarco/qrels-dev.trec",
        separator=" ",
        has_header=False,
        new_columns=["qid", "q0", "docid", "rel"],
        schema_overrides={"qid": pl.String, "docid": pl.String},
    )
    human = dev.filter(pl.col("qid").is_in(gold["qid"].unique().implode()) & (pl.col("rel") > 0))
    assert human.join(gold, on=["qid", "docid"], how="anti").is_empty()  # every human positive is gold
    table = pl.read_csv(results / "metrics/results.tsv", separator="\t")
    mine = table.filter(pl.col("dataset") == hybrid_set)
    assert set(mine["system"]) == set(p.systems()) - {"tiny-own-relsel"}  # evaluated on its own corpus only
    assert set(mine["measure"]) == set(cfg["hybrid"]["measures"])
    sig = pl.read_csv(
        results / "metrics/significance.tsv", separator="\t", schema_overrides={"mark": pl.String}
    )
    assert hybrid_set in set(sig["dataset"])


def test_an_api_key_in_the_environment_reaches_no_log_or_output(tiny):
    """The tiny run had OPENAI_API_KEY set (conftest.API_KEY_CANARY): no file it wrote contains it."""
    from conftest import API_KEY_CANARY

    results, _, _ = tiny
    leaks = [
        str(f)
        for f in results.rglob("*")
        if f.is_file() and f.stat().st_size < 200_000_000 and API_KEY_CANARY.encode() in f.read_bytes()
    ]
    assert not leaks, leaks
