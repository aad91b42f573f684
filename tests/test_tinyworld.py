"""The tiny synthetic world: reproducible bytes, official formats every converter reads, a lexical signal."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import tarfile
import zipfile
from pathlib import Path

import polars as pl
import pytest

from utilanno.data import convert, gold_answers, train_pool
from utilanno.testing import tinyworld

BEIR = ["scifact", "nq", "hotpotqa", "cqadupstack"]
SIZES = {
    "topics": 24,
    "passages": 1200,
    "train_queries": 64,
    "dev_queries": 40,
    "dl_queries": 8,
    "negatives": 30,
}


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "raw"
    tinyworld.generate(root, seed=0, beir=BEIR, **SIZES)
    return root


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("normalized")


# ---------------------------------------------------------------------------------------------------------
# Reproducibility and the file list


def test_same_seed_gives_identical_bytes(world, tmp_path):
    again = tmp_path / "again"
    tinyworld.generate(again, seed=0, beir=BEIR, **SIZES)
    first, second = digests(world), digests(again)
    assert sorted(first) == sorted(tinyworld.files(BEIR))
    assert first == second


def test_different_seed_gives_different_files(world, tmp_path):
    other = tmp_path / "other"
    tinyworld.generate(other, seed=1, beir=BEIR, **SIZES)
    first, second = digests(world), digests(other)
    assert sorted(first) == sorted(second)
    same = [name for name in first if first[name] == second[name]]
    assert same == []


def test_every_listed_file_is_produced(tmp_path):
    for beir in (BEIR, ["scifact"], []):
        root = tmp_path / f"w{len(beir)}"
        written = tinyworld.generate(root, seed=3, beir=beir, passages=300, train_queries=10, dev_queries=10)
        listed = tinyworld.files(beir)
        assert sorted(str(p.relative_to(root)) for p in written) == sorted(listed)
        assert sorted(digests(root)) == sorted(listed)  # nothing else (no temporary files) is left
        assert all((root / f).stat().st_size > 0 for f in listed)
    assert "nq/NQ-open.dev.jsonl" not in tinyworld.files(["scifact"])
    assert "hotpotqa/hotpot_dev_distractor_v1.json" in tinyworld.files(["hotpotqa"])


def test_too_many_queries_for_the_passages(tmp_path):
    with pytest.raises(ValueError, match="need at least as many passages"):
        tinyworld.generate(tmp_path, passages=50, train_queries=40, dev_queries=10, dl_queries=8)


def test_hash_name_is_stable():
    assert tinyworld.hash_name("scifact") == sum((i + 1) * ord(c) for i, c in enumerate("scifact")) % 9973
    assert tinyworld.hash_name("cqadupstack/gis") != tinyworld.hash_name("cqadupstack/stats")


# ---------------------------------------------------------------------------------------------------------
# Every file is readable by its converter, with consistent counts


def qids(path: Path) -> set[str]:
    return set(pl.read_parquet(path)["qid"])


def test_msmarco_files_convert(world, out):
    cq = world / "msmarco/collectionandqueries.tar.gz"
    c = convert.convert_corpus(cq, "collection.tsv", "msmarco-tsv", out / "corpus.parquet")
    assert (c.lines_in, c.rows_out, c.notes) == (SIZES["passages"], SIZES["passages"], [])
    corpus_ids = set(pl.read_parquet(out / "corpus.parquet")["docid"])

    q = convert.convert_queries(cq, "queries.dev.small.tsv", "msmarco-tsv", out / "q-dev.parquet")
    assert q.rows_out == SIZES["dev_queries"]
    r = convert.convert_qrels(cq, "qrels.dev.small.tsv", "trec-qrels", out / "qrels-dev.trec")
    assert r.rows_out == SIZES["dev_queries"]
    qrels = convert.read_qrels(out / "qrels-dev.trec")
    assert set(qrels["qid"]) == qids(out / "q-dev.parquet")
    assert set(qrels["docid"]) <= corpus_ids
    assert (qrels["rel"] == 1).all()

    qa = world / "msmarco/queries.tar.gz"
    t = convert.convert_queries(qa, "queries.train.tsv", "msmarco-tsv", out / "q-train.parquet")
    assert t.rows_out == SIZES["train_queries"]
    full = convert.convert_queries(qa, "queries.dev.tsv", "msmarco-tsv", out / "q-devfull.parquet")
    assert full.rows_out > SIZES["dev_queries"]
    assert qids(out / "q-dev.parquet") < qids(out / "q-devfull.parquet")
    convert.convert_queries(qa, "queries.eval.tsv", "msmarco-tsv", out / "q-eval.parquet")

    tr = convert.convert_qrels(
        world / "msmarco/qrels.train.tsv", None, "trec-qrels", out / "qrels-train.trec"
    )
    assert tr.rows_out == SIZES["train_queries"]
    assert set(convert.read_qrels(out / "qrels-train.trec")["qid"]) == qids(out / "q-train.parquet")
    restricted = convert.convert_queries(
        qa,
        "queries.dev.tsv",
        "msmarco-tsv",
        out / "q-dev-judged.parquet",
        restrict_qrels=out / "qrels-dev.trec",
    )
    assert restricted.rows_out == SIZES["dev_queries"]


def test_train_pool_converts(world, out):
    counts = train_pool.convert_pool(
        world / "msmarco/train-tevatron.jsonl", None, "tevatron", out / "train-pool.parquet"
    )
    n, k = SIZES["train_queries"], SIZES["negatives"]
    assert counts == convert.Counts(lines_in=n, rows_out=n, notes=[f"{n} positives, {n * k} negatives"])
    pool = pl.read_parquet(out / "train-pool.parquet")
    assert (pool["positives"].list.len() == 1).all()
    assert (pool["negatives"].list.len() == k).all()
    train_qrels = convert.read_qrels(world / "msmarco/qrels.train.tsv")
    assert dict(zip(train_qrels["qid"], train_qrels["docid"], strict=True)) == {
        qid: pos[0] for qid, pos in zip(pool["qid"], pool["positives"], strict=True)
    }


def test_qna_answers_convert(world, out):
    qa = world / "msmarco/queries.tar.gz"
    convert.convert_queries(qa, "queries.dev.tsv", "msmarco-tsv", out / "q-qna.parquet")
    counts = gold_answers.convert_answers(
        world / "msmarco/dev_v2.1.json.gz",
        None,
        "msmarco-qna",
        out / "q-qna.parquet",
        out / "answers-dev.parquet",
    )
    n = pl.read_parquet(out / "q-qna.parquet").height
    assert counts.lines_in == n
    assert 0 < counts.rows_out < n
    answers = pl.read_parquet(out / "answers-dev.parquet")
    assert not any(gold_answers.NO_ANSWER in a for a in answers["answers"].to_list())
    assert counts.notes == [f"{n - counts.rows_out} of {n} queries have no answer and are left out"]


@pytest.mark.parametrize("year", [2019, 2020])
def test_trec_dl_files_convert(world, out, year):
    qrels = out / f"dl{year}.trec"
    r = convert.convert_qrels(world / f"trec/{year}qrels-pass.txt", None, "trec-qrels", qrels)
    judged = convert.read_qrels(qrels)
    assert judged["qid"].n_unique() == SIZES["dl_queries"]
    assert r.rows_out == SIZES["dl_queries"] * 7
    assert set(judged["rel"]) == {0, 1, 2, 3}
    src = world / f"trec/msmarco-test{year}-queries.tsv.gz"
    every = convert.convert_queries(src, None, "msmarco-tsv", out / f"dl{year}-all.parquet")
    only = convert.convert_queries(src, None, "msmarco-tsv", out / f"dl{year}.parquet", restrict_qrels=qrels)
    assert every.rows_out > only.rows_out == SIZES["dl_queries"]
    assert set(judged["qid"]) == qids(out / f"dl{year}.parquet")


def beir_folders(name: str) -> list[str]:
    return [f"cqadupstack/{f}" for f in tinyworld.CQA_FORUMS] if name == "cqadupstack" else [name]


@pytest.mark.parametrize("name", BEIR)
def test_beir_files_convert(world, out, name):
    archive = world / f"beir/{name}.zip"
    with zipfile.ZipFile(archive) as zf:
        members = set(zf.namelist())
    for folder in beir_folders(name):
        d = out / "beir" / folder
        c = convert.convert_corpus(archive, f"{folder}/corpus.jsonl", "beir-corpus", d / "corpus.parquet")
        assert c.lines_in == c.rows_out > 0
        corpus_ids = set(pl.read_parquet(d / "corpus.parquet")["docid"])
        splits = ["test"] + (["train"] if f"{folder}/qrels/train.tsv" in members else [])
        assert (name == "cqadupstack") == (splits == ["test"])
        for split in splits:
            r = convert.convert_qrels(
                archive, f"{folder}/qrels/{split}.tsv", "beir-qrels", d / f"qrels-{split}.trec"
            )
            assert r.lines_in == r.rows_out + 1  # the header
            q = convert.convert_queries(
                archive,
                f"{folder}/queries.jsonl",
                "beir-queries",
                d / f"queries-{split}.parquet",
                restrict_qrels=d / f"qrels-{split}.trec",
            )
            qrels = convert.read_qrels(d / f"qrels-{split}.trec")
            assert set(qrels["qid"]) == qids(d / f"queries-{split}.parquet")
            assert set(qrels["docid"]) <= corpus_ids
            assert q.lines_in > q.rows_out  # queries.jsonl holds every split


def test_nq_open_answers_cover_some_test_queries(world, out):
    d = out / "nq-answers"
    archive = world / "beir/nq.zip"
    convert.convert_qrels(archive, "nq/qrels/test.tsv", "beir-qrels", d / "qrels-test.trec")
    convert.convert_queries(
        archive,
        "nq/queries.jsonl",
        "beir-queries",
        d / "queries-test.parquet",
        restrict_qrels=d / "qrels-test.trec",
    )
    counts = gold_answers.convert_answers(
        world / "nq/NQ-open.dev.jsonl",
        None,
        "nq-open",
        d / "queries-test.parquet",
        d / "answers-test.parquet",
    )
    n = pl.read_parquet(d / "queries-test.parquet").height
    assert 0 < counts.rows_out < n
    assert counts.notes == [f"{n - counts.rows_out} of {n} queries have no answer and are left out"]
    assert counts.lines_in > counts.rows_out  # NQ-open also holds questions that are not in BEIR-NQ


def test_hotpotqa_answers_join(world, out):
    d = out / "hp-answers"
    archive = world / "beir/hotpotqa.zip"
    convert.convert_qrels(archive, "hotpotqa/qrels/test.tsv", "beir-qrels", d / "qrels-test.trec")
    convert.convert_queries(
        archive,
        "hotpotqa/queries.jsonl",
        "beir-queries",
        d / "queries-test.parquet",
        restrict_qrels=d / "qrels-test.trec",
    )
    counts = gold_answers.convert_answers(
        world / "hotpotqa/hotpot_dev_distractor_v1.json",
        None,
        "hotpotqa",
        d / "queries-test.parquet",
        d / "answers-test.parquet",
    )
    n = pl.read_parquet(d / "queries-test.parquet").height
    assert counts.rows_out == n  # every test query of the tiny HotpotQA has its answer
    answers = pl.read_parquet(d / "answers-test.parquet")
    assert (answers["answers"].list.len() == 1).all()


# ---------------------------------------------------------------------------------------------------------
# Lexical signal: a query shares more words with its positive than with hard negatives


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def collection(world: Path) -> dict[str, str]:
    with tarfile.open(world / "msmarco/collectionandqueries.tar.gz") as tf:
        raw = tf.extractfile("collection.tsv").read().decode()
    return dict(line.split("\t", 1) for line in raw.splitlines())


def wins(query: str, positive: str, negatives: list[str]) -> bool:
    q = words(query)
    pos = len(q & words(positive))
    avg = sum(len(q & words(n)) for n in negatives) / len(negatives)
    return pos > avg


def test_lexical_signal_dev(world):
    texts = collection(world)
    # The generator's latent topics give each passage's hard negatives: the other passages of its topic.
    latent = tinyworld.World(0, SIZES["topics"], SIZES["passages"])
    topic = {p.pid: p.topic for p in latent.passages}
    assert all(texts[p.pid] == p.text for p in latent.passages)
    by_topic: dict[int, list[str]] = {}
    for pid, t in topic.items():
        by_topic.setdefault(t, []).append(pid)
    with tarfile.open(world / "msmarco/collectionandqueries.tar.gz") as tf:
        queries = dict(
            line.split("\t") for line in tf.extractfile("queries.dev.small.tsv").read().decode().splitlines()
        )
    pos = {}
    with tarfile.open(world / "msmarco/collectionandqueries.tar.gz") as tf:
        for line in tf.extractfile("qrels.dev.small.tsv").read().decode().splitlines():
            qid, _, pid, _ = line.split("\t")
            pos[qid] = pid
    assert len(queries) == SIZES["dev_queries"] == len(pos)
    results = [
        wins(text, texts[pos[qid]], [texts[n] for n in by_topic[topic[pos[qid]]] if n != pos[qid]])
        for qid, text in queries.items()
    ]
    assert sum(results) >= 0.9 * len(results)


def test_lexical_signal_train_pool(world):
    texts = collection(world)
    results = []
    for line in (world / "msmarco/train-tevatron.jsonl").read_text().splitlines():
        ex = json.loads(line)
        pos = ex["positive_passages"][0]
        assert texts[pos["docid"]] == pos["text"]
        results.append(wins(ex["query"], pos["text"], [n["text"] for n in ex["negative_passages"]]))
    assert sum(results) >= 0.9 * len(results)


@pytest.mark.parametrize("year", [2019, 2020])
def test_lexical_signal_trec_dl(world, year):
    texts = collection(world)
    queries = dict(
        line.split("\t")
        for line in gzip.decompress((world / f"trec/msmarco-test{year}-queries.tsv.gz").read_bytes())
        .decode()
        .splitlines()
    )
    qrels = convert.read_qrels(world / f"trec/{year}qrels-pass.txt")
    results = []
    for (qid,), group in qrels.group_by("qid"):
        best = group.filter(pl.col("rel") == 3)["docid"].to_list()
        zero = group.filter(pl.col("rel") == 0)["docid"].to_list()
        assert len(best) == 1 and zero
        results.append(wins(queries[qid], texts[best[0]], [texts[d] for d in zero]))
    assert sum(results) >= 0.9 * len(results)
