"""The RAG stage on the tiny config: answers and QA metrics for every retriever experiment and generator,
the results table with corpus-level BLEU and paired tests, and prompt edits that rerun only what they feed."""

from __future__ import annotations

import polars as pl
import pytest
from conftest import job_counts, snakemake

from utilanno import config, plan, rag

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tiny_work):
    cfg = config.load(tiny_work / "tiny.yaml")
    return tiny_work / "results-tiny", plan.Plan(cfg), cfg


def test_every_system_answers_every_answerable_query(tiny):
    results, p, cfg = tiny
    systems = p.rag_systems()
    assert systems == ["tiny-human/tiny-qwen2", "tiny-utilsel/tiny-qwen2"]
    for system in systems:
        answers = pl.read_parquet(results / "rag" / system / "answers.parquet")
        assert answers.columns == list(rag.ANSWERS_SCHEMA)
        metrics = pl.read_parquet(p.rag_metrics_file(system))
        for dataset, opts in cfg["rag"]["datasets"].items():
            expected, _ = rag.answerable(*p.rag_tables(dataset)[:2])
            mine = answers.filter(pl.col("dataset") == dataset)
            assert sorted(mine["qid"]) == sorted(expected["qid"]) and mine.height > 0
            assert (mine["docids"].list.len() <= opts["top_k"]).all()
            assert mine["prompt_hash"].str.len_chars().eq(16).all()
            assert mine["status"].is_in(["parsed", "empty"]).all()
            per_query = metrics.filter((pl.col("dataset") == dataset) & pl.col("qid").is_not_null())
            want = set(rag.MEASURES[opts["metrics"]])
            if opts["metrics"] == "rouge_bleu":
                want.add(rag.BERTSCORE)  # the tiny config scores BERTScore with the tiny BERT
                corpus = metrics.filter((pl.col("dataset") == dataset) & pl.col("qid").is_null())
                assert corpus["measure"].to_list() == ["BLEU-3", "BLEU-4"]
            assert set(per_query["measure"]) == want
            assert per_query.group_by("measure").len()["len"].to_list() == [mine.height] * len(want)
            assert per_query["value"].is_between(0, 1 + 1e-6).all()
        shards = [f for d in cfg["rag"]["datasets"] for f in p.rag_shards(*system.split("/"), d)]
        assert len(shards) == 4  # MS MARCO in two shards
        assert all((results.parent / f).exists() for f in shards)


def test_results_table_and_paired_tests(tiny):
    results, p, cfg = tiny
    table = pl.read_csv(results / "rag/results.tsv", separator="\t")
    assert set(table["system"]) == set(p.rag_systems())
    assert set(table["dataset"]) == set(cfg["rag"]["datasets"])
    bleu = table.filter(pl.col("measure") == "BLEU-4")
    assert set(bleu["dataset"]) == {"msmarco"}
    sig = pl.read_csv(results / "rag/significance.tsv", separator="\t", schema_overrides={"mark": pl.String})
    assert set(sig["system"]) == {"tiny-utilsel/tiny-qwen2"}
    assert set(sig["baseline"]) == {"tiny-human/tiny-qwen2"}
    assert "BLEU-4" not in set(sig["measure"])  # corpus-level: no paired test
    assert {"EM", "F1", "Recall", "ROUGE-L", "BERTScore"} <= set(sig["measure"])


def test_editing_the_factoid_prompt_reruns_only_nq_and_hotpotqa_answers(tiny_copy):
    where = ["--configfile", str(tiny_copy / "tiny.yaml"), "--directory", str(tiny_copy)]
    before = snakemake("-n", "rag_only", *where)
    assert "Nothing to be done" in before.stdout + before.stderr
    prompt = tiny_copy / "prompts" / "rag-words.yaml"
    prompt.write_text(prompt.read_text().replace("few words", "few  words", 1))
    after = snakemake("-n", "rag_only", *where)
    out = after.stdout + after.stderr
    counts = job_counts(out)
    counts.pop("rag_only")
    # 2 experiments x (NQ, HotpotQA) x 1 shard; MS MARCO uses the sentence prompt and is not rerun
    assert counts == {"rag_generate": 4, "rag_metrics": 2, "rag_table": 1}
    made = [line for line in out.splitlines() if line.strip().startswith("output:")]
    assert not [line for line in made if "/msmarco/shard-" in line]
    assert len([line for line in made if "/beir-nq/shard-0.jsonl" in line]) == 2
