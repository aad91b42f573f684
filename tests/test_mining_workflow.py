"""Candidate mining in the workflow (issue 16): an annotation run with pool_source 'mine' gets BM25 candidates
over its dataset's queries (`datasets.<name>.mine`), fused into pools with no human positive, which the pool
stage shards for annotation; a config with a mined run plans mining -> pools -> LLM steps -> training."""

from __future__ import annotations

import json

import polars as pl
import pytest
import yaml
from conftest import TINY, job_counts, snakemake, step_job_counts

from utilanno import capacity

pytestmark = pytest.mark.slow
MINE = {"split": "test", "candidates": 12, "depth": 20}


def test_an_own_corpus_config_plans_mining_annotation_and_training(tmp_path, monkeypatch):
    """No human label anywhere: the tiny BEIR SciFact set mined and annotated, two LLM-label experiments; the
    capacity planner counts the same jobs."""
    conf = yaml.safe_load(TINY.read_text())
    conf["datasets"]["beir-scifact"]["mine"] = MINE
    own = {**conf["annotation"]["msmarco"], "dataset": "beir-scifact", "pool_source": "mine"}
    conf["annotation"] = {"own": own}
    conf["experiments"] = {
        k: v for k, v in conf["experiments"].items() if k in ("tiny-utilsel", "tiny-utilrank")
    }
    conf["experiments"]["tiny-utilrank"].pop("evaluate")
    conf["rag"] = {}
    conf["hybrid"] = {}
    conf["report"]["stand_ins"].pop("msmarco-top3")  # no RAG set here
    conf["evaluation"]["datasets"] = ["beir-scifact"]
    conf["evaluation"]["groups"] = {}
    conf["evaluation"]["measures"] = {}
    conf["evaluation"]["encode_shards"] = {}
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(conf, sort_keys=False))
    proc = snakemake("-n", "--configfile", str(path), "--directory", str(tmp_path))
    counts = job_counts(proc.stdout)
    by_step = step_job_counts(proc.stdout)
    assert counts["mine_bm25"] == 1 and counts["mine"] == 1 and counts["pool"] == 1
    # the pool stage reads the mined file (MS MARCO's pool file is still converted: it is a configured table)
    assert (
        "input: results-tiny/mine/beir-scifact/train-pool.parquet, results-tiny/data/beir-scifact/corpus"
        in (proc.stdout)
    )
    assert "output: results-tiny/pool/own\n" in proc.stdout
    shards = own["shards"]
    assert {by_step[f"annotate:{s}"] for s in ("relsel", "pseudo_answer", "utilsel", "utilrank")} == {shards}
    assert counts["train"] == 2 and counts["labels"] == 2
    assert "wildcards: dataset=beir-scifact" in proc.stdout
    monkeypatch.chdir(tmp_path)  # sizes from the tiny world's parameters
    planned = capacity.estimate(capacity.load_config(path)).job_counts()
    assert planned == {k: v for k, v in counts.items() if k != "all"}


def test_mined_pools_feed_the_pool_stage(tiny_copy):
    """On the finished tiny run: mine the SciFact test queries and shard the pools (3 jobs, BM25's index
    already built), every query kept, no id twice, `candidates` ids where BM25 found enough."""
    conf = yaml.safe_load((tiny_copy / "tiny.yaml").read_text())
    conf["datasets"]["beir-scifact"]["mine"] = MINE
    conf["annotation"]["scifact"] = {
        "dataset": "beir-scifact",
        "pool_source": "mine",
        "annotator": None,
        "shards": 2,
    }
    for exp in conf["experiments"].values():  # two runs now: each experiment names its own
        exp["annotation"] = "msmarco"
    (tiny_copy / "tiny.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))
    where = ["--configfile", str(tiny_copy / "tiny.yaml"), "--directory", str(tiny_copy), "--cores", "1"]
    target = "results-tiny/pool/scifact"
    dry = snakemake("-n", target, *where)
    assert job_counts(dry.stdout) == {"mine_bm25": 1, "mine": 1, "pool": 1}
    snakemake(target, *where)
    results = tiny_copy / "results-tiny"
    mined = pl.read_parquet(results / "mine" / "beir-scifact" / "train-pool.parquet")
    queries = pl.read_parquet(results / "data" / "beir-scifact" / "queries-test.parquet")
    assert mined["qid"].to_list() == queries["qid"].to_list()
    assert mined["positives"].list.len().max() == 0
    sizes = mined["negatives"].list.len()
    assert (mined["negatives"].list.n_unique() == sizes).all()  # no id twice
    corpus = pl.read_parquet(results / "data" / "beir-scifact" / "corpus.parquet")
    assert sizes.max() == MINE["candidates"] <= corpus.height
    stats = json.loads((results / "mine" / "beir-scifact" / "stats.json").read_text())
    assert stats["queries"] == queries.height and stats["short_pools"] == int(
        (sizes < MINE["candidates"]).sum()
    )
    assert 0 <= stats["pool_recall"] <= 1 and stats["qrels_positives"] > 0  # qrels: reported, never used
    shards = [pl.read_parquet(results / "pool" / "scifact" / f"shard-{k}.parquet") for k in range(2)]
    pools = pl.concat(shards)
    assert sorted(pools["qid"]) == sorted(mined.filter(sizes > 0)["qid"])
    assert pools["positive"].null_count() == pools.height
    for rec in pools.iter_rows(named=True):
        shown = [p["docid"] for p in rec["passages"]]
        want = mined.filter(pl.col("qid") == rec["qid"])["negatives"].item().to_list()
        assert sorted(shown) == sorted(want) and all(p["text"] for p in rec["passages"])
    log = (results / "logs" / "mine" / "beir-scifact.log").read_text()
    assert "mined pools:" in log
