"""Candidate pools (PAPER-SPEC A.2, B.1): stable shards, seeded per-query order, windows, pool files."""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest

from utilanno.annotate import pools
from utilanno.annotate.pools import order_pool, shard_of, windows
from utilanno.errors import InputFormatError

# ---------------------------------------------------------------------------------------------------------
# shard_of


@pytest.mark.parametrize(
    ("qid", "expected"),
    [
        ("100000", [0, 2, 0, 4, 444]),
        ("1185869", [1, 0, 6, 7, 223]),
        ("q1", [0, 2, 3, 8, 696]),
        ("q2", [0, 1, 3, 10, 394]),
        ("abc", [1, 1, 2, 9, 721]),
        ("", [0, 0, 0, 4, 876]),
    ],
)
def test_shard_of_pinned(qid, expected):
    """Pinned once: a change would silently move queries between shards of a running annotation."""
    assert [shard_of(qid, n) for n in (2, 3, 7, 16, 1000)] == expected


def test_shard_of_range_and_balance():
    ids = [str(i) for i in range(10_000)]
    for n in (1, 2, 7, 16):
        counts = Counter(shard_of(q, n) for q in ids)
        assert set(counts) == set(range(n))
        expected = len(ids) / n
        assert max(abs(c - expected) for c in counts.values()) < 0.1 * expected + 30
    assert all(shard_of(q, 1) == 0 for q in ids[:100])
    assert [shard_of(q, 5) for q in ids[:200]] == [shard_of(q, 5) for q in ids[:200]]


# ---------------------------------------------------------------------------------------------------------
# order_pool

NEGS = [f"n{i}" for i in range(30)]


@pytest.mark.parametrize("order", ["shuffle", "positive_first"])
def test_order_pool_deterministic_and_keeps_the_multiset(order):
    a = order_pool("q1", "p", NEGS, order, seed=0)
    assert a == order_pool("q1", "p", list(NEGS), order, seed=0)
    assert Counter(a) == Counter(["p", *NEGS])
    assert a != order_pool("q2", "p", NEGS, order, seed=0)
    assert a != order_pool("q1", "p", NEGS, order, seed=1)
    assert NEGS == [f"n{i}" for i in range(30)]  # the input is not shuffled in place


def test_order_pool_positive_first():
    for qid in ("q1", "q2", "q3"):
        pool = order_pool(qid, "p", NEGS, "positive_first", seed=0)
        assert pool[0] == "p"
        assert sorted(pool[1:]) == sorted(NEGS)
        assert pool[1:] != NEGS  # the negatives are in a seeded order


def test_order_pool_shuffle_moves_the_positive():
    positions = {order_pool(f"q{i}", "p", NEGS, "shuffle", seed=0).index("p") for i in range(50)}
    assert len(positions) > 5


def test_order_pool_different_across_qids():
    orders = {tuple(order_pool(f"q{i}", "p", NEGS, "shuffle", seed=7)) for i in range(20)}
    assert len(orders) == 20


# ---------------------------------------------------------------------------------------------------------
# windows


def test_windows_examples():
    assert windows(31, 16, 1) == [list(range(0, 16)), list(range(15, 31))]
    assert windows(10, 16, 1) == [list(range(10))]
    assert windows(16, 16, 1) == [list(range(16))]
    assert windows(0, 16, 1) == [[]]
    assert windows(5, 2, 0) == [[0, 1], [2, 3], [4]]


def test_windows_forty():
    ws = windows(40, 16, 1)
    assert len(ws) == 3
    assert ws[0] == list(range(0, 16)) and ws[1] == list(range(15, 31)) and ws[2] == list(range(30, 40))
    assert sorted({p for w in ws for p in w}) == list(range(40))


@pytest.mark.parametrize(
    ("n", "size", "overlap"),
    [(n, s, o) for n in (1, 15, 16, 17, 31, 32, 46, 100) for s, o in ((16, 1), (16, 0), (8, 3), (2, 1))],
)
def test_windows_cover_everything_with_the_overlap(n, size, overlap):
    ws = windows(n, size, overlap)
    assert sorted({p for w in ws for p in w}) == list(range(n))
    assert all(1 <= len(w) <= size for w in ws)
    assert all(w == list(range(w[0], w[0] + len(w))) for w in ws)
    for a, b in zip(ws, ws[1:], strict=False):
        assert a[-overlap:] == b[:overlap] if overlap else a[-1] + 1 == b[0]


@pytest.mark.parametrize(("size", "overlap"), [(16, 16), (16, 17), (1, 1)])
def test_windows_overlap_must_be_smaller(size, overlap):
    with pytest.raises(ValueError):
        windows(31, size, overlap)


# ---------------------------------------------------------------------------------------------------------
# build


def _corpus(tmp_path, docids):
    path = tmp_path / "corpus.parquet"
    pl.DataFrame(
        {
            "docid": docids,
            "title": [f"T {d}" for d in docids],
            "text": [f"text of {d} with {{braces}}" for d in docids],
        }
    ).write_parquet(path)
    return path


def _train_pool(tmp_path, n_queries=12, n_negs=6, short=()):
    rows = []
    for i in range(n_queries):
        qid = f"{1000 + i}"
        negs = [f"d{i}_n{j}" for j in range(2 if qid in short else n_negs)]
        rows.append(
            {"qid": qid, "query": f"query {i}?", "positives": [f"d{i}_p0", f"d{i}_p1"], "negatives": negs}
        )
    path = tmp_path / "train-pool.parquet"
    pl.DataFrame(
        rows,
        schema={
            "qid": pl.String,
            "query": pl.String,
            "positives": pl.List(pl.String),
            "negatives": pl.List(pl.String),
        },
    ).write_parquet(path)
    return path, rows


@pytest.mark.parametrize("order", ["positive_first", "shuffle"])
def test_build(tmp_path, order):
    pool_path, rows = _train_pool(tmp_path, short={"1003"})
    docids = sorted({d for r in rows for d in [*r["positives"], *r["negatives"]]} | {"unused"})
    corpus = _corpus(tmp_path, docids)
    outs = [tmp_path / "out" / f"shard-{k}.parquet" for k in range(3)]
    stats = pools.build(pool_path, corpus, outs, negatives=4, window=3, overlap=1, order=order, seed=5)
    assert stats["queries_in"] == 12 and stats["queries_out"] == 12 and stats["short_pools"] == 1
    assert len(stats["shard_sizes"]) == 3 and sum(stats["shard_sizes"]) == 12

    seen = []
    by_qid = {r["qid"]: r for r in rows}
    for k, out in enumerate(outs):
        part = pl.read_parquet(out)
        assert set(part.columns) == {"qid", "query", "positive", "positives", "passages", "windows"}
        assert part.height == stats["shard_sizes"][k]
        for rec in part.iter_rows(named=True):
            seen.append(rec["qid"])
            src = by_qid[rec["qid"]]
            assert shard_of(rec["qid"], 3) == k
            assert rec["query"] == src["query"]
            assert rec["positive"] == src["positives"][0]
            assert rec["positives"] == src["positives"]
            negs = src["negatives"][:4]
            expected = order_pool(rec["qid"], src["positives"][0], negs, order, 5)
            assert [p["docid"] for p in rec["passages"]] == expected
            assert src["positives"][1] not in [p["docid"] for p in rec["passages"]]
            for p in rec["passages"]:
                assert p["title"] == f"T {p['docid']}"
                assert p["text"] == f"text of {p['docid']} with {{braces}}"
            if order == "shuffle":
                assert rec["windows"] == windows(len(expected), 3, 1)
            else:  # the positive leads every window: 5 passages in windows of 3 -> [0,1,2], [0,3,4]
                assert rec["windows"] == ([[0, 1, 2]] if len(expected) == 3 else [[0, 1, 2], [0, 3, 4]])
            assert len(expected) == (3 if rec["qid"] == "1003" else 5)
    assert sorted(seen) == sorted(by_qid)  # every query once


def test_build_more_shards_than_queries(tmp_path):
    pool_path, rows = _train_pool(tmp_path, n_queries=2)
    corpus = _corpus(tmp_path, sorted({d for r in rows for d in [*r["positives"], *r["negatives"]]}))
    outs = [tmp_path / f"s{k}.parquet" for k in range(8)]
    stats = pools.build(pool_path, corpus, outs, negatives=30, window=16, overlap=1, order="shuffle", seed=0)
    assert stats["queries_out"] == 2 and stats["short_pools"] == 2
    heights = [pl.read_parquet(o).height for o in outs]
    assert sum(heights) == 2 and heights.count(0) >= 6
    empty = pl.read_parquet(outs[heights.index(0)])
    assert set(empty.columns) == {"qid", "query", "positive", "positives", "passages", "windows"}


def test_build_missing_docid(tmp_path):
    pool_path, rows = _train_pool(tmp_path, n_queries=4)
    docids = sorted({d for r in rows for d in [*r["positives"], *r["negatives"]]} - {"d2_n1"})
    corpus = _corpus(tmp_path, docids)
    outs = [tmp_path / "x" / "s0.parquet"]
    with pytest.raises(InputFormatError) as info:
        pools.build(pool_path, corpus, outs, negatives=4, window=16, overlap=1, order="shuffle", seed=0)
    assert "d2_n1" in str(info.value)
    assert not outs[0].exists()


def test_build_is_deterministic(tmp_path):
    pool_path, rows = _train_pool(tmp_path, n_queries=6)
    corpus = _corpus(tmp_path, sorted({d for r in rows for d in [*r["positives"], *r["negatives"]]}))
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pools.build(pool_path, corpus, [a], negatives=5, window=4, overlap=1, order="shuffle", seed=3)
    pools.build(pool_path, corpus, [b], negatives=5, window=4, overlap=1, order="shuffle", seed=3)
    assert pl.read_parquet(a).equals(pl.read_parquet(b))


def test_anchored_windows_show_the_positive_first_in_every_window():
    """The notebook's reading (PAPER-SPEC B.1): 31 passages -> [pos, negs 1-15], [pos, negs 16-30]."""
    w = pools.anchored_windows(31, 16)
    assert w == [[0, *range(1, 16)], [0, *range(16, 31)]]
    assert pools.anchored_windows(16, 16) == [list(range(16))]
    assert pools.anchored_windows(17, 16) == [list(range(16)), [0, 16]]
    assert pools.anchored_windows(7, 3) == [[0, 1, 2], [0, 3, 4], [0, 5, 6]]
    assert pools.anchored_windows(2, 2) == [[0, 1]]
    with pytest.raises(ValueError, match="size 1"):
        pools.anchored_windows(5, 1)


@pytest.mark.parametrize("n, size", [(31, 16), (40, 16), (3, 2), (100, 7), (1, 16)])
def test_anchored_windows_cover_each_position_once_besides_the_anchor(n, size):
    w = pools.anchored_windows(n, size)
    assert all(win[0] == 0 and len(win) <= size for win in w)
    rest = [p for win in w for p in win[1:]]
    assert rest == list(range(1, n))  # every other passage once, in pool order


def test_pool_windows_pick_by_order_and_unknown_orders_fail():
    assert pools.pool_windows(31, 16, 1, "shuffle") == [list(range(16)), list(range(15, 31))]
    assert pools.pool_windows(31, 16, 1, "positive_first") == pools.anchored_windows(31, 16)
    with pytest.raises(ValueError, match="unknown pool order 'random'"):
        order_pool("q", "p", NEGS, "random", seed=0)


def test_order_pool_pinned():
    """Pinned once: a change would reorder every pool, and with it what each window shows the LLM."""
    negs = ["a", "b", "c", "d", "e"]
    assert order_pool("q1", "p", negs, "shuffle", 0) == ["c", "e", "a", "p", "b", "d"]
    assert order_pool("q1", "p", negs, "positive_first", 0) == ["p", "d", "e", "c", "a", "b"]
    assert order_pool("q1", "p", negs, "shuffle", 1) == ["b", "a", "d", "c", "p", "e"]
    assert order_pool("1185869", "p", negs, "shuffle", 42) == ["a", "e", "p", "d", "b", "c"]
    assert order_pool("q1", "p", [], "shuffle", 0) == ["p"] == order_pool("q1", "p", [], "positive_first", 0)


def test_unknown_pool_order_names_the_known_ones():
    with pytest.raises(
        ValueError, match=r"unknown pool order 'x' \(expected one of \('shuffle', 'positive_first'\)\)"
    ):
        order_pool("q", "p", NEGS, "x", seed=0)
    with pytest.raises(ValueError, match="overlap 16 must be smaller than the window size 16"):
        windows(31, 16, 16)
    assert windows(17, 16, 15) == [list(range(16)), [1, *range(2, 17)]]  # the largest overlap allowed


def test_build_needs_a_human_positive(tmp_path):
    pool_path = tmp_path / "train-pool.parquet"
    pl.DataFrame(
        {"qid": ["7"], "query": ["q"], "positives": [[]], "negatives": [["d1"]]},
        schema={
            "qid": pl.String,
            "query": pl.String,
            "positives": pl.List(pl.String),
            "negatives": pl.List(pl.String),
        },
    ).write_parquet(pool_path)
    corpus = _corpus(tmp_path, ["d1"])
    with pytest.raises(InputFormatError) as info:
        pools.build(
            pool_path,
            corpus,
            [tmp_path / "s.parquet"],
            negatives=4,
            window=3,
            overlap=1,
            order="shuffle",
            seed=0,
        )
    assert str(info.value) == f"{pool_path}: query '7' has no human positive"


def test_build_names_up_to_three_missing_passages_sorted(tmp_path):
    pool_path, rows = _train_pool(tmp_path, n_queries=2)
    docids = sorted(
        {d for r in rows for d in [*r["positives"], *r["negatives"]]} - {"d1_n3", "d0_n2", "d1_n0", "d0_n1"}
    )
    corpus = _corpus(tmp_path, docids)
    with pytest.raises(InputFormatError) as info:
        pools.build(
            pool_path,
            corpus,
            [tmp_path / "s.parquet"],
            negatives=4,
            window=16,
            overlap=1,
            order="shuffle",
            seed=0,
        )
    assert str(info.value) == (
        f"{pool_path}: 4 pool passages are not in {corpus}, e.g. ['d0_n1', 'd0_n2', 'd1_n0']"
    )


def test_build_stats_count_only_short_pools(tmp_path):
    # seven queries: a table of seven rows and seven columns is still read row by row
    pool_path, rows = _train_pool(tmp_path, n_queries=7, n_negs=4)
    corpus = _corpus(tmp_path, sorted({d for r in rows for d in [*r["positives"], *r["negatives"]]}))
    outs = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    stats = pools.build(pool_path, corpus, outs, negatives=4, window=16, overlap=1, order="shuffle", seed=0)
    heights = [pl.read_parquet(o).height for o in outs]
    assert stats == {"queries_in": 7, "queries_out": 7, "shard_sizes": heights, "short_pools": 0}
    got = pl.concat([pl.read_parquet(o) for o in outs]).sort("qid")
    assert got["qid"].to_list() == [r["qid"] for r in rows]
    assert got["positive"].to_list() == [r["positives"][0] for r in rows]
    assert heights == [sum(shard_of(r["qid"], 2) == k for r in rows) for k in range(2)]
    stats = pools.build(pool_path, corpus, outs, negatives=5, window=16, overlap=1, order="shuffle", seed=0)
    assert stats["short_pools"] == 7


def test_an_untitled_corpus_keeps_the_pool_schema(tmp_path):
    """MS MARCO without titles: every title is null, and the pool's passages keep their String title column
    (an inferred type would be Null and the annotation steps' readers would see another schema)."""
    pool_path, rows = _train_pool(tmp_path, n_queries=3)
    docids = sorted({d for r in rows for d in [*r["positives"], *r["negatives"]]})
    corpus = tmp_path / "untitled.parquet"
    pl.DataFrame(
        {"docid": docids, "title": [None] * len(docids), "text": [f"text of {d}" for d in docids]},
        schema={"docid": pl.String, "title": pl.String, "text": pl.String},
    ).write_parquet(corpus)
    out = tmp_path / "s.parquet"
    pools.build(pool_path, corpus, [out], negatives=4, window=3, overlap=1, order="shuffle", seed=0)
    table = pl.read_parquet(out)
    assert table.schema["passages"] == pl.List(pools.POOL_PASSAGE)
    assert table["passages"].list.eval(pl.element().struct.field("title")).explode().null_count() == 3 * 5


def test_a_mined_pool_shows_every_candidate_without_a_human_positive(tmp_path):
    """Mining (annotate.mining) writes no positive; the pool stage shows all candidates in a seeded order,
    drops a query mining found nothing for (counted), and refuses a mined file with human positives."""
    pool_path = tmp_path / "train-pool.parquet"
    schema = {
        "qid": pl.String,
        "query": pl.String,
        "positives": pl.List(pl.String),
        "negatives": pl.List(pl.String),
    }
    cands = [f"d{i}" for i in range(40)]
    pl.DataFrame(
        {"qid": ["1", "2"], "query": ["q one", "q two"], "positives": [[], []], "negatives": [cands, []]},
        schema=schema,
    ).write_parquet(pool_path)
    corpus = _corpus(tmp_path, cands)
    out = tmp_path / "s.parquet"
    stats = pools.build(
        pool_path, corpus, [out], negatives=30, window=16, overlap=1, order="shuffle", seed=3, mined=True
    )
    assert (stats["queries_in"], stats["queries_out"], stats["empty_pools"]) == (2, 1, 1)
    rec = pl.read_parquet(out).row(0, named=True)
    assert rec["positive"] is None and rec["positives"] == []
    shown = [p["docid"] for p in rec["passages"]]
    assert shown == order_pool("1", None, cands, "shuffle", 3) and sorted(shown) == sorted(cands)  # all 40
    assert rec["windows"] == windows(40, 16, 1)
    with pytest.raises(ValueError, match="positive_first needs a human positive"):
        pools.build(
            pool_path,
            corpus,
            [out],
            negatives=30,
            window=16,
            overlap=1,
            order="positive_first",
            seed=3,
            mined=True,
        )
    human = tmp_path / "human-pool.parquet"
    pl.DataFrame(
        {"qid": ["1"], "query": ["q"], "positives": [["d0"]], "negatives": [["d1"]]}, schema=schema
    ).write_parquet(human)
    with pytest.raises(InputFormatError, match="a mined pool has human positives"):
        pools.build(
            human, corpus, [out], negatives=30, window=16, overlap=1, order="shuffle", seed=3, mined=True
        )
