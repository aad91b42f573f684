"""Label sets on the shared pool and group sampling (PAPER-SPEC C, C.1)."""

from __future__ import annotations

import random

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utilanno.train import labels

POOLS = pl.DataFrame(
    {
        "qid": ["q1", "q2"],
        "positives": [["h1"], ["h2", "x2"]],
        "pool": [["h1", "a", "b", "c"], ["d", "h2", "e", "f"]],
    }
)
LLM = {"q1": ["a", "b"], "q2": []}


def as_sets(table: pl.DataFrame) -> dict[str, tuple[set, set]]:
    out = {}
    for qid in table["qid"].unique().sort():
        rows = table.filter(pl.col("qid") == qid)
        out[qid] = (
            set(rows.filter(pl.col("label") == 1)["docid"]),
            set(rows.filter(pl.col("label") == 0)["docid"]),
        )
    return out


def test_human_labels_keep_every_human_positive():
    got = as_sets(labels.build(POOLS, "human"))
    assert got["q1"] == ({"h1"}, {"a", "b", "c"})
    assert got["q2"] == ({"h2", "x2"}, {"d", "e", "f"})  # x2 is not in the pool but is a positive


def test_llm_labels_and_pool_inclusion_variants():
    assert as_sets(labels.build(POOLS, "utilsel", LLM))["q1"] == ({"a", "b"}, {"h1", "c"})
    assert as_sets(labels.build(POOLS, "utilsel", LLM))["q2"] == (set(), {"d", "h2", "e", "f"})
    assert as_sets(labels.build(POOLS, "utilsel", LLM, human_positive="exclusion"))["q1"] == (
        {"a", "b"},
        {"c"},
    )
    inc = as_sets(labels.build(POOLS, "utilsel", LLM, human_positive="inclusion"))
    assert inc["q1"] == ({"a", "b", "h1"}, {"c"}) and inc["q2"] == ({"h2", "x2"}, {"d", "e", "f"})


def test_union_adds_human_positives_for_a_seeded_fraction():
    table = labels.build(POOLS, "union", LLM, human_fraction=0.5, seed=7)
    chosen = labels.subset(["q1", "q2"], 0.5, 7)
    assert len(chosen) == 1
    got = as_sets(table)
    for qid in ("q1", "q2"):
        human = set(POOLS.filter(pl.col("qid") == qid)["positives"][0])
        assert (human <= got[qid][0]) == (qid in chosen)


def test_subset_is_seeded_and_sized():
    qids = [f"q{i}" for i in range(100)]
    assert labels.subset(qids, 0.2, 1) == labels.subset(list(reversed(qids)), 0.2, 1)
    assert len(labels.subset(qids, 0.2, 1)) == 20 and labels.subset(qids, 0.2, 1) != labels.subset(
        qids, 0.2, 2
    )
    assert labels.subset(qids, 1.0, 1) == set(qids) and labels.subset(qids, 0.0, 1) == set()


def test_utilrank_cut_and_kind_parsing():
    merged = pl.DataFrame({"qid": ["q"], "ranking": [["c", "a"]], "docids": [["a", "b", "c", "d", "e", "f"]]})
    assert labels.llm_positives("utilrank", merged, 10) == {"q": ["c"]}  # floor(0.6) -> at least one
    assert labels.llm_positives("utilrank", merged, 50) == {"q": ["c", "a"]}  # 3 asked, 2 ranked
    assert labels.parse_kind("utilrank@20") == ("utilrank", 20) and labels.parse_kind("utilsel") == (
        "utilsel",
        None,
    )


ids = st.lists(st.text("abcdefgh", min_size=1, max_size=3), min_size=1, max_size=20, unique=True)


@settings(max_examples=200, deadline=None)
@given(
    pos=ids,
    neg=ids,
    size=st.integers(2, 16),
    strategy=st.sampled_from(["human", "pos_one", "pos_all", "pos_avg"]),
    seed=st.integers(0, 1000),
    avg=st.floats(0, 10),
)
def test_groups_have_the_size_and_labels_of_their_strategy(pos, neg, size, strategy, seed, avg):
    neg = [d for d in neg if d not in pos] or ["zz-negative"]
    docs, labs = labels.sample_group(pos, neg, size, strategy, random.Random(seed), avg)
    assert len(docs) == len(labs) == size
    assert labs == [int(d in pos) for d in docs]  # a label says whether the passage is a positive
    assert 1 <= sum(labs) <= size - 1 or strategy == "pos_one"  # at least one negative left (pos_one aside)
    if strategy == "human":
        assert sum(labs) == 1 and labs[0] == 1
    if strategy == "pos_all":
        assert sum(labs) == min(len(pos), size - 1)
    if strategy == "pos_avg":
        assert sum(labs) == min(len(pos), size - 1, max(1, int(avg + 0.5)))
    assert labels.sample_group(pos, neg, size, strategy, random.Random(seed), avg) == (docs, labs)


def test_no_positive_means_no_group():
    assert labels.sample_group([], ["a"], 4, "pos_all", random.Random(0)) is None
    with pytest.raises(ValueError, match="unknown sampling"):
        labels.sample_group(["p"], ["a"], 4, "pos_many", random.Random(0))
