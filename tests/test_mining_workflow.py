"""Candidate mining in the workflow (issue 16): an annotation run with pool_source 'mine' gets BM25 candidates
over its dataset's queries (`datasets.<name>.mine`), fused into pools with no human positive, which the pool
stage shards for annotation; a config with a mined run plans mining -> pools -> LLM steps -> training."""

from __future__ import annotations

import json

import polars as pl
import pytest
import yaml
from conftest import REPO, TINY, job_counts, snakemake, step_job_counts

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
        k: {**v, "annotation": "own"}
        for k, v in conf["experiments"].items()
        if k in ("tiny-utilsel", "tiny-utilrank")
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


def test_the_paper_grid_plans_app_c(tmp_path):
    """The paper grid's NQ run (App. C, Table 9): BM25 and the MS MARCO UtilSel RetroMAE mine the NQ training
    questions, Qwen3-32B in thinking mode annotates them in 16 shards (no UtilRank), and three RetroMAE_wiki
    experiments train with the App. C recipe, the human one on DPR's own positives without annotation."""
    targets = [
        f"results/runs/{e}/nq.trec" for e in ("nq-human-first1lh", "nq-utilsel-first1lh", "nq-utilsel")
    ]
    config = ["--directory", str(tmp_path), "--configfile", str(REPO / "config.yaml")]
    proc = snakemake("-n", "-p", *targets, *config)
    out = proc.stdout + proc.stderr
    counts = job_counts(out)
    assert counts["mine_bm25"] == counts["mine_dense"] == counts["mine"] == 1
    nq_jobs = {
        s: out.count(f"wildcards: run=nq, annotator=qwen3-32b-thinking, step={s}, k=")
        for s in ("relsel", "pseudo_answer", "utilsel", "utilrank")
    }
    assert nq_jobs == {"relsel": 16, "pseudo_answer": 16, "utilsel": 16, "utilrank": 0}
    assert (
        counts["pool"] == 3
    )  # nq (mined), nq-dpr (DPR's pool file), msmarco (for the dense miner's training)
    # the dense miner is the MS MARCO UtilSel retriever, trained before mining
    assert "evaluate.py mine-dense --model results/retrievers/retromae-utilsel" in out
    assert "--run results/mine/nq/bm25.trec --run results/mine/nq/dense-retromae-utilsel.trec" in out
    nq = [x for x in out.splitlines() if "train.py train" in x and "retrievers/nq-" in x]
    assert len(nq) == 3
    for line in nq:  # App. C's recipe (PAPER-SPEC B.10)
        for setting in (
            '"learning_rate": 1e-05',
            '"epochs": 40',
            '"group_size": 8',
            '"passage_max_len": 156',
        ):
            assert setting in line, line
    human = next(x for x in nq if "retrievers/nq-human-first1lh" in x)
    assert "labels/nq-dpr/human.parquet" in human and '"sampling": "first"' in human
    step = next(x for x in out.splitlines() if "annotate.py step relsel" in x and "pool/nq/" in x)
    assert '"enable_thinking": true' in step and '"temperature": 0.6' in step and "Qwen/Qwen3-32B" in step


def test_the_tiny_own_corpus_runs_end_to_end(tiny_work):
    """The tiny config's own corpus (no training label anywhere): BM25 and the tiny BERT backbone mine
    every training query, fused into exactly `candidates` distinct ids; the LLM annotates them; a retriever
    trained on those labels is evaluated on the test queries (qrels and answers serve only there)."""
    results = tiny_work / "results-tiny"
    conf = yaml.safe_load((tiny_work / "tiny.yaml").read_text())
    mine = conf["datasets"]["own"]["mine"]
    pools = pl.read_parquet(results / "mine" / "own" / "train-pool.parquet")
    queries = pl.read_parquet(results / "data" / "own" / "queries-train.parquet")
    assert sorted(pools["qid"]) == sorted(queries["qid"])
    assert (pools["negatives"].list.len() == mine["candidates"]).all()  # 160 passages allow it
    assert (pools["negatives"].list.n_unique() == mine["candidates"]).all()  # no id twice
    assert pools["positives"].list.len().max() == 0
    stats = json.loads((results / "mine" / "own" / "stats.json").read_text())
    assert (
        stats["runs"]
        == [
            "results-tiny/mine/own/bm25.trec",
            "results-tiny/mine/own/dense-tiny-bert.trec",
        ]
        and "pool_recall" not in stats
    )  # no training qrels: nothing to report
    for step in ("relsel", "pseudo_answer", "utilsel"):
        s = json.loads((results / "annotate" / "own" / "tiny-qwen2" / step / "stats.json").read_text())
        assert s["queries"] == queries.height
        if step != "pseudo_answer":  # selections: precision and recall need a human positive, none here
            assert s["queries_with_human_positive"] == 0 and s["precision"] is None and s["recall"] is None
    assert not (results / "annotate" / "own" / "tiny-qwen2" / "utilrank").exists()  # not in the run's steps
    labels = pl.read_parquet(results / "labels" / "own" / "tiny-qwen2" / "relsel.parquet")
    assert set(labels["qid"]) <= set(queries["qid"])
    table = pl.read_csv(results / "metrics" / "results.tsv", separator="\t")
    own = table.filter((pl.col("system") == "tiny-own-relsel") & (pl.col("dataset") == "own"))
    assert sorted(own["measure"]) == sorted(conf["evaluation"]["measures"]["own"])
    assert (own["n_queries"] == 12).all()
    assert "| tiny-own-relsel |" in (results / "report" / "index.md").read_text()


def test_the_readme_own_corpus_example_validates_and_plans(tmp_path):
    """docs/examples/own-corpus.yaml, the README walkthrough's config: valid, and planned as mining (BM25 and
    one dense retriever) -> pools -> three LLM steps in 8 shards -> one training, no human label anywhere."""
    sizes = tmp_path / "sizes.yaml"
    sizes.write_text("datasets:\n  mycorpus: {passages: 100000, queries: {train: 1000, test: 200}}\n")
    config = capacity.load_config(REPO / "docs" / "examples" / "own-corpus.yaml")
    est = capacity.estimate(config, sizes=capacity.load_sizes([sizes]))
    jobs = est.job_counts()
    assert jobs["mine_bm25"] == jobs["mine_dense"] == jobs["mine"] == jobs["pool"] == jobs["train"] == 1
    assert jobs["annotate"] == 3 * 8 and jobs["merge_annotations"] == 3
    assert "train_pool" not in jobs and "replug" not in jobs
