"""RAG generation shards (transformers engine, tiny Qwen2) and scoring; BERTScore: tests/test_bertscore.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import polars as pl
import pytest

from utilanno.annotate import parsing, prompts
from utilanno.annotate.pools import shard_of
from utilanno.annotate.prompts import format_passage, messages_hash
from utilanno.errors import InputFormatError
from utilanno.evaluate import runfiles as runs
from utilanno.rag import generate as rag
from utilanno.testing import tinymodels

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
PROMPT = prompts.load(REPO / "prompts/rag-words.yaml")
LLM = {"engine": "transformers", "dtype": "float32", "batch_size": 4, "sampling": {"seed": 0}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Eight passages, six queries (five with gold answers), a run, qrels and a tiny Qwen2."""
    d = tmp_path_factory.mktemp("rag")
    pl.DataFrame(
        {
            "docid": [f"d{i}" for i in range(8)],
            "title": ["Quokka", "", "Fig", "Owl", "Tea", "Moss", "Kelp", "Wren"],
            "text": [f"passage {i} says the answer is {w}" for i, w in enumerate("abcdefgh")],
        }
    ).write_parquet(d / "corpus.parquet")
    qids = [f"q{i}" for i in range(6)]
    pl.DataFrame({"qid": qids, "text": [f"what does passage {i} say?" for i in range(6)]}).write_parquet(
        d / "queries.parquet"
    )
    pl.DataFrame(
        {"qid": qids[:5], "answers": [[f"answer {i}", f"alt {i}"] for i in range(5)]},
        schema={"qid": pl.String, "answers": pl.List(pl.String)},
    ).write_parquet(d / "answers.parquet")
    # q_i ranks d_i first, then d_{i+1}, ...; q3 ties d3/d4 (docid breaks the tie); q4 retrieved nothing
    rows = [(q, f"d{(i + j) % 8}", 10.0 - j) for i, q in enumerate(qids) if q != "q4" for j in range(4)]
    rows.append(("q3", "d2", 10.0))  # tie with d3 at the top: d2 < d3 wins
    table = pl.DataFrame(rows, schema=["qid", "docid", "score"], orient="row")
    runs.write_run(d / "run.trec", table, tag="test")
    (d / "qrels.trec").write_text("q0 0 d1 1\nq1 0 d1 1\nq2 0 d7 2\nq3 0 d5 0\n")
    tinymodels.build_tiny_qwen2(d / "qwen")
    return d


def generate(d, out, shard=0, shards=1, top_k=2, **kw):
    return rag.generate_shard(
        d / "queries.parquet",
        d / "answers.parquet",
        d / "run.trec",
        d / "corpus.parquet",
        kw.pop("prompt", PROMPT),
        {**LLM, "model": str(d / "qwen")},
        out,
        shard,
        shards,
        top_k,
        max_tokens=6,
        threads=1,
        batch_queries=2,
        **kw,
    )


def records(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_shards_answer_every_answerable_query_once_from_the_top_k(data, tmp_path):
    outs = [tmp_path / f"shard-{k}.jsonl" for k in range(2)]
    for k, out in enumerate(outs):
        generate(data, out, shard=k, shards=2)
    recs = [r for out in outs for r in records(out)]
    assert sorted(r["qid"] for r in recs) == ["q0", "q1", "q2", "q3", "q4"]  # q5 has no gold answer
    for k, out in enumerate(outs):
        assert all(shard_of(r["qid"], 2) == k for r in records(out))
    by_qid = {r["qid"]: r for r in recs}
    assert by_qid["q0"]["docids"] == ["d0", "d1"]
    assert by_qid["q3"]["docids"] == ["d2", "d3"]  # tie at 10.0 broken by docid
    assert by_qid["q4"]["docids"] == []  # nothing retrieved: answered without passages
    corpus = {
        r["docid"]: format_passage(r["title"], r["text"])
        for r in pl.read_parquet(data / "corpus.parquet").iter_rows(named=True)
    }
    conv = PROMPT.render("what does passage 0 say?", [corpus["d0"], corpus["d1"]])
    assert by_qid["q0"]["prompt_hash"] == messages_hash(conv)
    assert corpus["d0"] + "\n" + corpus["d1"] in conv[-1]["content"]
    for r in recs:
        assert r["query"] and r["raw"] is not None and r["status"] in ("parsed", "empty")
        assert r["answer"] == parsing.rag_answer_text(r["raw"])
        assert r["completion_tokens"] <= 6


def test_generation_is_deterministic_and_a_rerun_of_a_finished_shard_is_identical(data, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    generate(data, a, top_k=1)
    generate(data, b, top_k=1)
    assert a.read_bytes() == b.read_bytes()


def test_a_killed_shard_resumes_and_ends_identical(data, tmp_path, monkeypatch):
    from utilanno.annotate import engines

    whole = tmp_path / "whole.jsonl"
    generate(data, whole)
    real_create = engines.create

    def dying(*args, **kwargs):  # the engine dies on its second call: one batch of two queries is on disk
        engine, calls = real_create(*args, **kwargs), []
        chat = engine.chat

        def chat_once(*a, **kw):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("simulated kill")
            return chat(*a, **kw)

        engine.chat = chat_once
        return engine

    out = tmp_path / "shard.jsonl"
    monkeypatch.setattr(engines, "create", dying)
    with pytest.raises(RuntimeError, match="simulated kill"):
        generate(data, out)
    assert not out.exists() and len(out.with_name("shard.jsonl.partial").read_text().splitlines()) == 3
    monkeypatch.setattr(engines, "create", real_create)
    summary = generate(data, out)
    assert summary["resumed_batches"] == 1 and summary["queries_run"] == 3
    assert out.read_bytes() == whole.read_bytes()
    assert not out.with_name("shard.jsonl.partial").exists()


def test_bad_inputs_fail_with_the_file_and_the_reason(data, tmp_path):
    with pytest.raises(InputFormatError, match="RAG needs 'answer'"):
        generate(data, tmp_path / "x.jsonl", prompt=prompts.load(REPO / "prompts/relsel.yaml"))
    with pytest.raises(ValueError, match="shard 2 is not in 0..1"):
        generate(data, tmp_path / "x.jsonl", shard=2, shards=2)
    bad = tmp_path / "answers.parquet"
    pl.DataFrame({"qid": ["nope"], "answers": [["x"]]}).write_parquet(bad)
    with pytest.raises(ValueError, match=r"answers.parquet: 1 answered qids are not queries"):
        rag.answerable(data / "queries.parquet", bad)
    small = tmp_path / "corpus.parquet"
    pl.read_parquet(data / "corpus.parquet").head(3).write_parquet(small)
    with pytest.raises(ValueError, match="retrieved docids are not in the corpus"):
        rag.passage_texts(small, {"d0", "d7"})
    assert not (tmp_path / "x.jsonl").exists()


# --- scoring ------------------------------------------------------------------------------------------------


def write_shard(path, answers: dict[str, tuple[str, list[str]]]):
    with open(path, "w", encoding="utf-8") as fh:
        for qid, (answer, docs) in answers.items():
            rec = {"qid": qid, "step": "rag", "query": "q", "docids": docs, "prompt_hash": "h", "raw": answer}
            rec |= {"status": "parsed", "answer": answer, "prompt_tokens": 1, "completion_tokens": 1}
            fh.write(json.dumps(rec) + "\n")


def test_score_per_query_and_corpus_values(data, tmp_path):
    (tmp_path / "f").mkdir()
    write_shard(
        tmp_path / "f/shard-0.jsonl",
        {"q0": ("Answer 0", ["d1"]), "q1": ("the alt 1!", ["d0"]), "q2": ("answer two", ["d0", "d7"])},
    )
    write_shard(tmp_path / "f/shard-1.jsonl", {"q3": ("nothing", ["d5"]), "q4": ("", [])})
    spec = {
        "files": {
            "metrics": "em_f1",
            "queries": data / "queries.parquet",
            "answers": data / "answers.parquet",
            "qrels": data / "qrels.trec",
            "shards": [tmp_path / "f/shard-0.jsonl", tmp_path / "f/shard-1.jsonl"],
        }
    }
    summary = rag.score(spec, tmp_path / "answers.parquet", tmp_path / "metrics.parquet")
    m = pl.read_parquet(tmp_path / "metrics.parquet")
    value = {(q, k): v for _, q, k, v in m.iter_rows()}
    assert value["q0", "EM"] == 1.0 and value["q1", "EM"] == 1.0 and value["q2", "EM"] == 0.0
    assert value["q2", "F1"] == pytest.approx(2 * 0.5 * 0.5 / 1.0)  # "answer two" vs "answer 2"
    assert value["q4", "F1"] == 0.0
    # Recall: a qrels-positive (rel > 0) among the passages given; q3's d5 is judged 0
    assert [value[q, "Recall"] for q in ("q0", "q1", "q2", "q3", "q4")] == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert summary["files"]["queries"] == 5 and summary["files"]["EM"] == pytest.approx(0.4)
    answers = pl.read_parquet(tmp_path / "answers.parquet")
    assert answers.columns == list(rag.ANSWERS_SCHEMA)
    assert answers.filter(pl.col("qid") == "q0")["gold"].to_list() == [["answer 0", "alt 0"]]

    spec["files"]["metrics"] = "rouge_bleu"
    rag.score(spec, tmp_path / "answers.parquet", tmp_path / "metrics.parquet")
    m = pl.read_parquet(tmp_path / "metrics.parquet")
    corpus = m.filter(pl.col("qid").is_null())
    assert corpus["measure"].to_list() == ["BLEU-3", "BLEU-4"]
    assert set(m.filter(pl.col("qid").is_not_null())["measure"]) == {"ROUGE-L", "Recall"}


def test_score_rejects_missing_and_foreign_queries(data, tmp_path):
    (tmp_path / "f").mkdir()
    write_shard(tmp_path / "f/shard-0.jsonl", {"q0": ("a", []), "q1": ("b", []), "zz": ("c", [])})
    spec = {
        "f": {
            "metrics": "em_f1",
            "queries": data / "queries.parquet",
            "answers": data / "answers.parquet",
            "qrels": data / "qrels.trec",
            "shards": [tmp_path / "f/shard-0.jsonl"],
        }
    }
    with pytest.raises(ValueError, match=r"3 missing \(e.g. \['q2', 'q3', 'q4'\]\), 1 unknown"):
        rag.score(spec, tmp_path / "a.parquet", tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()


def test_rouge_bleu_sets_score_with_their_tokenization():
    """MS MARCO QA the official way (spaCy tokens, lower case) unless a set asks for SQuAD normalisation;
    the two disagree on an answer with punctuation and articles."""
    from utilanno.rag import qa_metrics

    answers = pl.DataFrame(
        {
            "qid": ["1", "2"],
            "answer": ["The U.S. dollar, isn't it?", "a cat"],
            "gold": [["The US dollar is it"], ["the cat sat"]],
            "docids": [["d1"], ["d2"]],
        }
    )
    by = {}
    for scheme in ("msmarco", "squad"):
        t = rag.score_dataset("m", answers, "rouge_bleu", {}, tokenization=scheme)
        by[scheme] = {(q, m): v for _, q, m, v in t.iter_rows()}
        for qid, pred, gold in zip(answers["qid"], answers["answer"], answers["gold"], strict=True):
            assert by[scheme][qid, "ROUGE-L"] == pytest.approx(qa_metrics.rouge_l(pred, gold, scheme=scheme))
        want = qa_metrics.corpus_bleu(
            answers["answer"].to_list(), answers["gold"].to_list(), 3, scheme=scheme
        )
        assert by[scheme][None, "BLEU-3"] == pytest.approx(want)
    assert by["msmarco"]["1", "ROUGE-L"] != pytest.approx(by["squad"]["1", "ROUGE-L"])
