"""Candidate mining (utilanno.annotate.mining): fusion against hand computations and a brute-force reference,
mined pools with no id twice and exactly `candidates` ids where the runs allow, empty and short pools kept and
counted, the pool's recall of the qrels."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utilanno.annotate import mining
from utilanno.evaluate import runfiles


def run(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"qid": pl.String, "docid": pl.String, "rank": pl.Int64}, orient="row")


A = run([("q1", "a", 1), ("q1", "b", 2), ("q1", "c", 3), ("q2", "x", 1)])
B = run([("q1", "b", 1), ("q1", "d", 2), ("q1", "a", 3), ("q2", "y", 1)])


def ranked(table: pl.DataFrame, qid: str) -> list[str]:
    return table.filter(pl.col("qid") == qid).sort("rank")["docid"].to_list()


def test_rrf_by_hand():
    # b: 1/61 + 1/62 = 0.032522; a: 1/61 + 1/63 = 0.032266; d: 1/62 = 0.016129; c: 1/63 = 0.015873
    fused = mining.fuse([A, B], candidates=3, fusion="rrf", k=60)
    assert ranked(fused, "q1") == ["b", "a", "d"]
    assert fused.filter(pl.col("qid") == "q1")["rank"].to_list() == [1, 2, 3]
    # q2: x and y tie at 1/61; the docid decides, whatever the run order
    assert ranked(fused, "q2") == ["x", "y"]
    assert ranked(mining.fuse([B, A], candidates=3), "q2") == ["x", "y"]
    # k = 0: b = 1 + 1/2, a = 1 + 1/3, d = 1/2, c = 1/3
    assert ranked(mining.fuse([A, B], candidates=4, k=0), "q1") == ["b", "a", "d", "c"]


def test_union_by_hand():
    # rank 1: a (run 1), b (run 2); rank 2: b again, d; rank 3: c, a again
    assert ranked(mining.fuse([A, B], candidates=10, fusion="union"), "q1") == ["a", "b", "d", "c"]
    assert ranked(mining.fuse([B, A], candidates=10, fusion="union"), "q1") == ["b", "a", "d", "c"]
    assert ranked(mining.fuse([A, B], candidates=2, fusion="union"), "q1") == ["a", "b"]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown fusion 'max'"):
        mining.fuse([A], 3, fusion="max")
    with pytest.raises(ValueError, match="candidates must be at least 1"):
        mining.fuse([A], 0)


def brute_rrf(runs: list[list[tuple[str, str, int]]], candidates: int, k: int) -> dict[str, list[str]]:
    score: dict[tuple[str, str], float] = {}
    for rows in runs:
        for qid, docid, rank in rows:
            score[(qid, docid)] = score.get((qid, docid), 0.0) + 1.0 / (k + rank)
    out: dict[str, list[str]] = {}
    for qid in sorted({q for q, _ in score}):
        docs = sorted((d for q, d in score if q == qid), key=lambda d: (-score[(qid, d)], d))
        out[qid] = docs[:candidates]
    return out


@st.composite
def runs_strategy(draw):
    runs = []
    for _ in range(draw(st.integers(1, 3))):
        rows = []
        for qid in ("q1", "q2", "q3"):
            docs = draw(st.lists(st.sampled_from("abcdefghij"), unique=True, max_size=8))
            rows += [(qid, d, r) for r, d in enumerate(docs, 1)]
        runs.append(rows)
    return runs


@settings(max_examples=60, deadline=None)
@given(runs=runs_strategy(), candidates=st.integers(1, 12), k=st.integers(0, 100))
def test_rrf_equals_a_brute_force_reference(runs, candidates, k):
    fused = mining.fuse([run(r) for r in runs], candidates, "rrf", k)
    want = brute_rrf(runs, candidates, k)
    assert {q: ranked(fused, q) for q in want} == want
    assert set(fused["qid"]) == set(want)


@settings(max_examples=60, deadline=None)
@given(runs=runs_strategy(), candidates=st.integers(1, 12), fusion=st.sampled_from(mining.FUSIONS))
def test_fused_lists_have_no_id_twice_and_as_many_as_found(runs, candidates, fusion):
    fused = mining.fuse([run(r) for r in runs], candidates, fusion)
    for qid in ("q1", "q2", "q3"):
        got = ranked(fused, qid)
        found = {d for rows in runs for q, d, _ in rows if q == qid}
        assert len(got) == len(set(got)) == min(candidates, len(found))
        assert set(got) <= found


def write_run(path: Path, table: pl.DataFrame) -> str:
    runfiles.write_run(path, table.with_columns(score=-pl.col("rank").cast(pl.Float64)), tag="t")
    return str(path)


def test_mined_pools_keep_every_query_and_report_recall(tmp_path):
    queries = tmp_path / "queries.parquet"
    pl.DataFrame({"qid": ["q1", "q2", "q3"], "text": ["one", "two", "three"]}).write_parquet(queries)
    qrels = tmp_path / "qrels.trec"
    qrels.write_text("q1 0 a 1\nq1 0 z 2\nq2 0 x 0\nq3 0 c 1\n")
    runs = [write_run(tmp_path / "a.trec", A), write_run(tmp_path / "b.trec", B)]
    out = tmp_path / "train-pool.parquet"
    stats = mining.mine(runs, queries, out, candidates=3, qrels=qrels)
    pool = pl.read_parquet(out)
    assert pool.columns == ["qid", "query", "positives", "negatives"]
    assert pool["qid"].to_list() == ["q1", "q2", "q3"]  # the queries' order; q3 found nothing and stays
    assert pool["negatives"].to_list() == [["b", "a", "d"], ["x", "y"], []]
    assert pool["positives"].to_list() == [[], [], []]  # no human positive: the LLM decides
    assert pool["query"].to_list() == ["one", "two", "three"]
    assert (stats["queries"], stats["short_pools"], stats["empty_pools"]) == (3, 2, 1)
    # judged positives (rel > 0): q1 a and z, q3 c; the pools hold q1's a only
    assert stats["qrels_positives"] == 3 and stats["queries_with_qrels"] == 2
    assert stats["pool_recall"] == pytest.approx(1 / 3, abs=1e-4)


def test_a_damaged_run_is_named(tmp_path):
    queries = tmp_path / "queries.parquet"
    pl.DataFrame({"qid": ["q1"], "text": ["one"]}).write_parquet(queries)
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 a 1 1.0 t\nq1 Q0 b\n")
    with pytest.raises(Exception, match=r"bad.trec:2"):
        mining.mine([bad], queries, tmp_path / "out.parquet", candidates=3)
    assert not (tmp_path / "out.parquet").exists()
