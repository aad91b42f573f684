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
    strategy=st.sampled_from(["human", "first", "pos_one", "pos_all", "pos_avg"]),
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
    if strategy == "first":  # First1LH: always the first positive, whatever the seed
        assert sum(labs) == 1 and docs[0] == pos[0]
    if strategy == "pos_all":
        assert sum(labs) == min(len(pos), size - 1)
    if strategy == "pos_avg":
        assert sum(labs) == min(len(pos), size - 1, max(1, int(avg + 0.5)))
    assert labels.sample_group(pos, neg, size, strategy, random.Random(seed), avg) == (docs, labs)


def test_no_positive_means_no_group():
    assert labels.sample_group([], ["a"], 4, "pos_all", random.Random(0)) is None
    with pytest.raises(ValueError, match="unknown sampling"):
        labels.sample_group(["p"], ["a"], 4, "pos_many", random.Random(0))


def test_subset_pinned_and_rounded_half_to_even():
    """Pinned once: a change would move queries between the human and the LLM part of a curriculum. The size
    is round(fraction x queries), Python's round half to even: 2.5 -> 2, 3.5 -> 4."""
    q10 = [f"q{i}" for i in range(10)]
    assert labels.subset(q10, 0.3, 1) == {"q4", "q6", "q9"}
    assert labels.subset(q10, 0.25, 1) == {"q4", "q6"}
    assert labels.subset(q10, 0.35, 1) == {"q2", "q4", "q6", "q9"}
    assert labels.subset(q10[:5], 0.5, 3) == {"q0", "q3"}
    assert labels.subset(q10[:5], 0.7, 3) == {"q0", "q2", "q3", "q4"}
    assert labels.subset([], 0.5, 3) == set()


def test_llm_positives_of_selections_and_unknown_kinds():
    merged = pl.DataFrame({"qid": ["q1", "q2"], "selected": [["b", "a"], []]})
    for kind in ("relsel", "utilsel"):
        assert labels.llm_positives(kind, merged) == {"q1": ["b", "a"], "q2": []}
    with pytest.raises(ValueError, match="no LLM positives for 'human'"):
        labels.llm_positives("human", merged)
    ranked = pl.DataFrame({"qid": ["q"], "ranking": [["c", "a", "b"]], "docids": [["a", "b", "c"] * 10]})
    assert labels.llm_positives("utilrank", ranked, 10) == {"q": ["c", "a", "b"]}  # 10% of 30 = 3
    assert labels.llm_positives("utilrank", ranked, 5) == {"q": ["c"]}  # floor(1.5) = 1
    assert labels.parse_kind("utilrank@5") == ("utilrank", 5)
    assert labels.parse_kind("utilrank@") == ("utilrank@", None)
    assert labels.parse_kind("xutilrank@20") == ("xutilrank@20", None)
    assert labels.parse_kind("utilrank@20x") == ("utilrank@20x", None)


def test_build_checks_its_arguments():
    with pytest.raises(ValueError, match="unknown label set 'gold'"):
        labels.build(POOLS, "gold", LLM)
    with pytest.raises(ValueError, match="utilsel labels need the LLM positives"):
        labels.build(POOLS, "utilsel")
    human = labels.build(POOLS, "human")  # the human set needs no LLM positives
    assert human.schema == {"qid": pl.String, "docid": pl.String, "label": pl.Int8}
    # rows: a query's positives first (in their order), then its other passages in pool order
    assert human.rows() == [
        ("q1", "h1", 1),
        ("q1", "a", 0),
        ("q1", "b", 0),
        ("q1", "c", 0),
        ("q2", "h2", 1),
        ("q2", "x2", 1),
        ("q2", "d", 0),
        ("q2", "e", 0),
        ("q2", "f", 0),
    ]


def test_llm_positives_outside_the_pool_are_passages_too_and_the_human_variants_apply_to_them():
    llm = {"q1": ["z", "a"], "q2": ["h2"]}
    got = labels.build(POOLS, "relsel", llm)
    assert got.filter(pl.col("qid") == "q1").rows() == [
        ("q1", "z", 1),
        ("q1", "a", 1),
        ("q1", "h1", 0),
        ("q1", "b", 0),
        ("q1", "c", 0),
    ]
    assert as_sets(got)["q2"] == ({"h2"}, {"d", "e", "f"})
    # exclusion drops every human positive, also one the LLM selected; inclusion adds the ones not in the pool
    assert as_sets(labels.build(POOLS, "relsel", llm, human_positive="exclusion"))["q2"] == (
        set(),
        {"d", "e", "f"},
    )
    inc = labels.build(POOLS, "relsel", llm, human_positive="inclusion")
    assert inc.filter(pl.col("qid") == "q2").rows() == [
        ("q2", "h2", 1),
        ("q2", "x2", 1),
        ("q2", "d", 0),
        ("q2", "e", 0),
        ("q2", "f", 0),
    ]
    # the human set ignores the variants: its positives are the human ones
    assert labels.build(POOLS, "human", human_positive="exclusion").equals(labels.build(POOLS, "human"))


def test_union_with_every_query_and_with_none():
    everyone = as_sets(labels.build(POOLS, "union", LLM, human_fraction=1.0, seed=7))
    assert everyone["q1"] == ({"a", "b", "h1"}, {"c"}) and everyone["q2"] == ({"h2", "x2"}, {"d", "e", "f"})
    nobody = as_sets(labels.build(POOLS, "union", LLM, human_fraction=0.0, seed=7))
    assert nobody["q1"] == ({"a", "b"}, {"h1", "c"}) and nobody["q2"] == (set(), {"d", "h2", "e", "f"})
    # only `union` adds human positives: another kind with a fraction is unchanged
    assert labels.build(POOLS, "utilsel", LLM, human_fraction=1.0).equals(labels.build(POOLS, "utilsel", LLM))
    # the subset is seeded by `seed`: q1 for seed 7, q2 for seed 1
    assert labels.subset(["q1", "q2"], 0.5, 7) == {"q1"} and labels.subset(["q1", "q2"], 0.5, 1) == {"q2"}
    seeded = as_sets(labels.build(POOLS, "union", LLM, human_fraction=0.5, seed=1))
    assert seeded["q1"] == ({"a", "b"}, {"h1", "c"}) and seeded["q2"] == ({"h2", "x2"}, {"d", "e", "f"})
    assert as_sets(labels.build(POOLS, "union", LLM, human_fraction=0.5))["q1"][0] == (
        {"a", "b", "h1"} if labels.subset(["q1", "q2"], 0.5, 42) == {"q1"} else {"a", "b"}
    )


def test_group_errors():
    with pytest.raises(ValueError, match="^a group needs at least one negative$"):
        labels.sample_group(["p"], [], 4, "pos_all", random.Random(0))
    with pytest.raises(ValueError, match="^pos_avg needs the average number of positives$"):
        labels.sample_group(["p"], ["n"], 4, "pos_avg", random.Random(0))


def test_negatives_are_drawn_without_replacement_while_there_are_enough():
    negs = [f"n{i}" for i in range(7)]
    for seed in range(20):
        docs, labs = labels.sample_group(["p"], negs, 8, "human", random.Random(seed))
        assert sorted(docs[1:]) == negs  # exactly enough: every negative once
        docs, labs = labels.sample_group(["p1", "p2"], negs, 9, "pos_one", random.Random(seed))
        assert sorted(docs) == sorted(["p1", "p2", *negs]) and docs[0] in ("p1", "p2")
        assert labs == [int(d in ("p1", "p2")) for d in docs]
    # too few: drawn with replacement, from the negatives only
    docs, labs = labels.sample_group(["p"], ["n0", "n1"], 6, "human", random.Random(3))
    assert docs[0] == "p" and set(docs[1:]) <= {"n0", "n1"} and labs == [1, 0, 0, 0, 0, 0]


def test_positive_counts_at_the_group_size_boundaries():
    pos = [f"p{i}" for i in range(4)]
    negs = [f"n{i}" for i in range(10)]
    rng = random.Random(0)
    # pos_all: every positive while they leave room for a negative, else size - 1 of them
    assert labels.sample_group(pos, negs, 5, "pos_all", rng)[1] == [1, 1, 1, 1, 0]
    assert labels.sample_group(pos, negs, 4, "pos_all", rng)[1] == [1, 1, 1, 0]
    assert labels.sample_group(pos, negs, 3, "pos_all", rng)[1] == [1, 1, 0]
    docs, _ = labels.sample_group(pos, negs, 8, "pos_all", rng)
    assert docs[:4] == pos  # all of them, in their order
    # pos_avg: floor(avg + 0.5) (half up, not Python's half to even), at least 1, at most size - 1 and |P|
    for avg, n in [(0.0, 1), (1.49, 1), (1.5, 2), (2.5, 3), (3.5, 4), (9.0, 4)]:
        assert sum(labels.sample_group(pos, negs, 8, "pos_avg", rng, avg)[1]) == n, avg
    assert sum(labels.sample_group(pos, negs, 3, "pos_avg", rng, 9.0)[1]) == 2
    # human: a single positive, the rest negatives
    assert labels.sample_group(pos, negs, 3, "human", rng)[1] == [1, 0, 0]


def test_defaults_missing_queries_and_square_tables():
    # the defaults: LLM labels as annotated (human_positive "random") and, for union, no human positives added
    assert labels.build(POOLS, "union", LLM).equals(labels.build(POOLS, "utilsel", LLM))
    assert labels.build(POOLS, "utilsel", LLM).equals(labels.build(POOLS, "utilsel", LLM, "random", 0.0, 42))
    # a query the LLM positives do not mention has none
    assert as_sets(labels.build(POOLS, "utilsel", {"q1": ["a"]}))["q2"] == (set(), {"d", "h2", "e", "f"})
    # three rows of three columns: still one row per passage
    one = pl.DataFrame({"qid": ["q"], "positives": [["a"]], "pool": [["a", "b", "c"]]})
    assert labels.build(one, "human").rows() == [("q", "a", 1), ("q", "b", 0), ("q", "c", 0)]
    assert labels.build(one, "relsel", {"q": ["c"]}).rows() == [("q", "c", 1), ("q", "a", 0), ("q", "b", 0)]
