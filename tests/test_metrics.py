"""Metrics against pytrec_eval and by hand, trec_eval -c semantics, means, paired t-tests (PAPER-SPEC F)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import pytrec_eval
from scipy import stats

from utilanno.evaluate import metrics
from utilanno.evaluate import runfiles as runs

# ir_measures name -> (pytrec_eval measure, relevance_level, cutoff applied to the run first or None)
EQUIVALENT = {
    "RR@10": ("recip_rank", 1, 10),
    "nDCG@10": ("ndcg_cut_10", 1, None),
    "R@1000": ("recall_1000", 1, None),
    "R@5": ("recall_5", 1, None),
    "AP(rel=2)": ("map", 2, None),
    "R(rel=2)@1000": ("recall_1000", 2, None),
    "P@5": ("P_5", 1, None),
}


def random_case(seed: int, tied: bool):
    """Graded qrels (0-3) on 40 queries, a run that misses some of them, ranks unjudged documents, has
    queries that are not judged, and (when `tied`) many equal scores."""
    rng = np.random.default_rng(seed)
    qrels, run = [], []
    for q in range(40):
        qid = f"q{q}"
        judged = rng.choice(60, size=rng.integers(1, 12), replace=False)
        qrels += [(qid, f"d{d}", int(rng.integers(0, 4))) for d in judged]
        if q % 5 == 4:
            continue  # judged but not retrieved: counts 0
        docs = rng.choice(60, size=rng.integers(5, 40), replace=False)
        scores = rng.integers(0, 6, len(docs)) if tied else rng.permutation(len(docs)) + rng.random()
        run += [(qid, f"d{d}", float(s)) for d, s in zip(docs, scores, strict=True)]
    run += [("unjudged", "d1", 1.0), ("unjudged", "d2", 0.5)]
    return (
        pl.DataFrame(qrels, schema={"qid": pl.String, "docid": pl.String, "rel": pl.Int32}, orient="row"),
        pl.DataFrame(run, schema={"qid": pl.String, "docid": pl.String, "score": pl.Float64}, orient="row"),
    )


def pytrec_with_c(qrels: pl.DataFrame, run: dict, name: str) -> dict[str, float]:
    """pytrec_eval directly, with trec_eval -c done by hand: every qrels query, 0 when unretrieved."""
    measure, level, cutoff = EQUIVALENT[name]
    qd: dict[str, dict[str, int]] = {}
    for qid, docid, rel in qrels.iter_rows():
        qd.setdefault(qid, {})[docid] = rel
    if cutoff is not None:
        run = {q: dict(sorted(docs.items(), key=lambda kv: -kv[1])[:cutoff]) for q, docs in run.items()}
    got = pytrec_eval.RelevanceEvaluator(qd, {measure}, relevance_level=level).evaluate(run)
    return {qid: got[qid][measure] if qid in got else 0.0 for qid in qd}


def as_dict(per_query: pl.DataFrame, name: str) -> dict[str, float]:
    rows = per_query.filter(pl.col("measure") == name)
    return dict(zip(rows["qid"], rows["value"], strict=True))


def run_in_our_order(run: pl.DataFrame) -> dict:
    """The run with strictly decreasing scores in (-score, docid) order: what trec_eval must see to rank
    ties the way the run file does."""
    out: dict[str, dict[str, float]] = {}
    for qid, docid, rank, _ in runs.rank(run).iter_rows():
        out.setdefault(qid, {})[docid] = -float(rank)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_pytrec_eval_with_missing_queries_and_ties(seed):
    qrels, run = random_case(seed, tied=True)
    assert runs.rank(run).group_by("qid", "score").len()["len"].max() > 1  # the case really has ties
    ours = metrics.evaluate(qrels, run, list(EQUIVALENT))
    assert ours.height == len(EQUIVALENT) * qrels["qid"].n_unique()
    reference = run_in_our_order(run)
    for name in EQUIVALENT:
        expected = pytrec_with_c(qrels, reference, name)
        got = as_dict(ours, name)
        assert got.keys() == expected.keys()
        for qid, value in expected.items():
            assert got[qid] == pytest.approx(value, abs=1e-12), (name, qid)
        assert any(v > 0 for v in got.values())


def test_equals_pytrec_eval_on_raw_scores_without_ties():
    qrels, run = random_case(7, tied=False)
    raw: dict[str, dict[str, float]] = {}
    for qid, docid, score in run.iter_rows():
        raw.setdefault(qid, {})[docid] = score
    ours = metrics.evaluate(qrels, run, list(EQUIVALENT))
    for name in EQUIVALENT:
        assert as_dict(ours, name) == pytest.approx(pytrec_with_c(qrels, raw, name), abs=1e-12)


def test_ties_are_scored_in_run_file_order_not_trec_eval_order():
    qrels = pl.DataFrame({"qid": ["q"], "docid": ["a"], "rel": [1]}, schema_overrides={"rel": pl.Int32})
    run = pl.DataFrame({"qid": ["q", "q"], "docid": ["a", "b"], "score": [1.0, 1.0]})
    # trec_eval breaks the tie by docid descending (b first); the run file ranks a first.
    raw = pytrec_eval.RelevanceEvaluator({"q": {"a": 1}}, {"recip_rank"}).evaluate(
        {"q": {"a": 1.0, "b": 1.0}}
    )
    assert raw["q"]["recip_rank"] == 0.5
    assert metrics.evaluate(qrels, run, ["RR@10", "RR"])["value"].to_list() == [1.0, 1.0]


def test_hand_computed_two_queries_and_a_missing_one():
    qrels = pl.DataFrame(
        {
            "qid": ["q1", "q1", "q2", "q2", "q3"],
            "docid": ["d1", "d2", "e1", "e2", "f1"],
            "rel": [1, 0, 3, 1, 1],
        },
        schema_overrides={"rel": pl.Int32},
    )
    run = pl.DataFrame(
        {
            "qid": ["q1", "q1", "q1", "q2", "q2", "q2"],
            "docid": ["d2", "d1", "d3", "e2", "e9", "e1"],
            "score": [3.0, 2.0, 1.0, 0.9, 0.8, 0.7],
        }
    )
    names = ["RR@10", "nDCG@10", "R@1000", "AP(rel=2)", "R(rel=2)@1000"]
    got = metrics.evaluate(qrels, run, names)
    assert got["measure"].to_list() == [m for m in names for _ in range(3)]
    assert got["qid"].to_list() == ["q1", "q2", "q3"] * len(names)
    ndcg_q2 = (1 / math.log2(2) + 3 / math.log2(4)) / (3 / math.log2(2) + 1 / math.log2(3))  # gain = grade
    expected = {
        "RR@10": [0.5, 1.0, 0.0],
        "nDCG@10": [(1 / math.log2(3)) / 1.0, ndcg_q2, 0.0],
        "R@1000": [1.0, 1.0, 0.0],
        "AP(rel=2)": [0.0, 1 / 3, 0.0],  # q1 has no grade-2 document: 0, still counted
        "R(rel=2)@1000": [0.0, 1.0, 0.0],
    }
    for name, values in expected.items():
        assert got.filter(pl.col("measure") == name)["value"].to_list() == pytest.approx(values, abs=1e-12)
    summary = metrics.summarize(got)
    assert summary["measure"].to_list() == names
    assert summary["n_queries"].to_list() == [3] * len(names)
    assert summary["value"].to_list()[0] == pytest.approx(0.5)  # (0.5 + 1 + 0) / 3: q3 counts
    assert summary["value"].to_list()[1] == pytest.approx((1 / math.log2(3) + ndcg_q2) / 3)


def test_empty_run_scores_zero_everywhere():
    qrels, run = random_case(0, tied=True)
    got = metrics.evaluate(qrels, run.head(0), ["nDCG@10", "RR@10"])
    assert got.height == 2 * qrels["qid"].n_unique() and (got["value"] == 0).all()


def test_measure_names_are_checked():
    qrels, run = random_case(0, tied=True)
    with pytest.raises(ValueError, match="unknown measure 'ndcg@10'"):
        metrics.evaluate(qrels, run, ["ndcg@10"])
    with pytest.raises(ValueError, match=r"'AP' is the same as 'AP\(rel=1\)'"):
        metrics.evaluate(qrels, run, ["AP(rel=1)", "AP"])
    with pytest.raises(TypeError, match="^measures must be a list of names, got the string 'nDCG@10'$"):
        metrics.evaluate(qrels, run, "nDCG@10")
    dup = pl.concat([qrels.head(1), qrels.head(1)])
    with pytest.raises(ValueError, match="more than once"):
        metrics.evaluate(dup, run, ["nDCG@10"])


def test_group_mean_is_the_mean_of_member_means():
    summaries = pl.DataFrame(
        {
            "dataset": ["cqa-android", "cqa-android", "cqa-gis", "cqa-gis", "nfcorpus"],
            "measure": ["nDCG@10", "R@100", "nDCG@10", "R@100", "nDCG@10"],
            "value": [0.2, 0.5, 0.4, 0.7, 0.9],
            "n_queries": [100, 100, 300, 300, 50],
        }
    )
    got = metrics.group_mean(summaries, ["cqa-android", "cqa-gis"])
    assert got.rows() == [("nDCG@10", pytest.approx(0.3), 2, 400), ("R@100", pytest.approx(0.6), 2, 400)]
    with pytest.raises(ValueError, match=r"without results: \['cqa-tex'\]"):
        metrics.group_mean(summaries, ["cqa-android", "cqa-tex"])
    with pytest.raises(ValueError, match=r"'R@100' missing for group members \['nfcorpus'\]"):
        metrics.group_mean(summaries, ["cqa-android", "nfcorpus"])


def per_query(values: list[float], measure: str = "nDCG@10") -> pl.DataFrame:
    return pl.DataFrame({"qid": [f"q{i}" for i in range(len(values))], "measure": measure, "value": values})


def test_paired_ttest_matches_scipy_and_marks_the_direction():
    a = [0.9, 0.8, 0.7, 1.0, 0.6, 0.95, 0.85, 0.75]
    b = [0.5, 0.6, 0.4, 0.7, 0.5, 0.6, 0.65, 0.55]
    got = metrics.paired_ttest(per_query(a), per_query(b)[::-1], "nDCG@10")  # row order does not matter
    ref = stats.ttest_rel(a, b)
    assert got.t == pytest.approx(ref.statistic) and got.p == pytest.approx(ref.pvalue)
    assert got.mean_a == pytest.approx(np.mean(a)) and got.mean_b == pytest.approx(np.mean(b))
    assert got.mark == "+" and got.n == 8
    assert metrics.paired_ttest(per_query(b), per_query(a), "nDCG@10").mark == "-"
    noisy = [0.1, 0.9, 0.2, 0.8]
    close = metrics.paired_ttest(per_query(noisy), per_query([0.2, 0.7, 0.3, 0.9]), "nDCG@10")
    assert close.p == pytest.approx(stats.ttest_rel(noisy, [0.2, 0.7, 0.3, 0.9]).pvalue) and close.p > 0.05
    assert close.mark == ""


def test_paired_ttest_degenerate_cases():
    same = metrics.paired_ttest(per_query([0.5, 0.2, 0.0]), per_query([0.5, 0.2, 0.0]), "nDCG@10")
    assert (same.t, same.p, same.mark) == (0.0, 1.0, "")
    shifted = metrics.paired_ttest(per_query([0.75, 0.5, 0.25]), per_query([0.5, 0.25, 0.0]), "nDCG@10")
    assert shifted.p == 0.0 and shifted.t > 0 and shifted.mark == "+"
    one = metrics.paired_ttest(per_query([1.0]), per_query([0.0]), "nDCG@10")
    assert (one.p, one.mark) == (1.0, "")
    with pytest.raises(ValueError, match="1 only in A"):
        metrics.paired_ttest(per_query([0.5, 0.2]), per_query([0.5]), "nDCG@10")
    with pytest.raises(ValueError, match="no values for measure 'RR@10'"):
        metrics.paired_ttest(per_query([0.5]), per_query([0.5]), "RR@10")


def test_paired_ttest_two_queries_and_a_constant_negative_shift():
    # n = 2 is the smallest sample with a t statistic: t = mean(d) / (sd(d) / sqrt(2)) on d = (0.3, 0.1),
    # mean 0.2, sd sqrt(0.02) -> t = 0.2 / 0.1 = 2.0; two-sided p on 1 degree of freedom: 1 - 2 atan(2) / pi
    got = metrics.paired_ttest(per_query([0.8, 0.6]), per_query([0.5, 0.5]), "nDCG@10")
    assert got.t == pytest.approx(2.0) and got.p == pytest.approx(1 - 2 * math.atan(2.0) / math.pi)
    assert got.n == 2 and got.mark == "" and (got.mean_a, got.mean_b) == (pytest.approx(0.7), 0.5)
    down = metrics.paired_ttest(per_query([0.25, 0.5, 0.0]), per_query([0.5, 0.75, 0.25]), "nDCG@10")
    assert (down.t, down.p, down.mark) == (-math.inf, 0.0, "-")


def test_paired_ttest_significance_is_p_strictly_below_alpha():
    a = [0.9, 0.8, 0.7, 1.0, 0.6, 0.95, 0.85, 0.75]
    b = [0.5, 0.6, 0.4, 0.7, 0.5, 0.6, 0.65, 0.55]
    p = stats.ttest_rel(a, b).pvalue
    assert metrics.paired_ttest(per_query(a), per_query(b), "nDCG@10", alpha=p).mark == ""
    assert metrics.paired_ttest(per_query(a), per_query(b), "nDCG@10", alpha=p * 1.0001).mark == "+"
    # the default alpha is 0.05: p = 0.045 is significant, p = 0.14 is not
    just = [0.6, 0.7, 0.55, 0.75, 0.65, 0.5, 0.7, 0.6]
    assert 0.04 < stats.ttest_rel(just, b).pvalue < 0.05
    assert metrics.paired_ttest(per_query(just), per_query(b), "nDCG@10").mark == "+"
    loose = [0.6, 0.6, 0.4, 0.8, 0.5, 0.65, 0.6, 0.6]
    assert 0.1 < stats.ttest_rel(loose, b).pvalue < 0.2
    assert metrics.paired_ttest(per_query(loose), per_query(b), "nDCG@10").mark == ""


def test_paired_ttest_rejects_duplicate_queries():
    dup = pl.DataFrame({"qid": ["q0", "q0"], "measure": "nDCG@10", "value": [0.1, 0.2]})
    with pytest.raises(ValueError, match="system A has several values per query for 'nDCG@10'"):
        metrics.paired_ttest(dup, per_query([0.5]), "nDCG@10")
    with pytest.raises(ValueError, match="system B has several values per query"):
        metrics.paired_ttest(per_query([0.5]), dup, "nDCG@10")
    with pytest.raises(ValueError, match=r"system B has no values for measure 'RR@10' \(has \['nDCG@10'\]\)"):
        metrics.paired_ttest(per_query([0.5], "RR@10"), per_query([0.5]), "RR@10")
    with pytest.raises(ValueError, match=r"0 only in A \(e.g. \[\]\), 1 only in B \(e.g. \['q1'\]\)"):
        metrics.paired_ttest(per_query([0.5]), per_query([0.5, 0.2]), "nDCG@10")


def test_qrels_and_measure_lists_are_checked():
    qrels, run = random_case(0, tied=True)
    with pytest.raises(ValueError, match=r"missing \['rel'\]"):
        metrics.evaluate(qrels.drop("rel"), run, ["nDCG@10"])
    with pytest.raises(ValueError, match="^qrels are empty: no judged queries to evaluate$"):
        metrics.evaluate(qrels.head(0), run, ["nDCG@10"])
    with pytest.raises(ValueError, match="^no measures to compute$"):
        metrics.evaluate(qrels, run, [])
    with pytest.raises(ValueError, match=r"judge doc 'd1' for query 'q1' more than once"):
        dup = pl.DataFrame({"qid": ["q0", "q1", "q1"], "docid": ["d0", "d1", "d1"], "rel": [1, 1, 0]})
        metrics.evaluate(dup, run, ["nDCG@10"])
    assert metrics.parse_measures(("nDCG@10", "RR@10")).keys() == {"nDCG@10", "RR@10"}


def test_group_mean_rejects_partial_or_doubled_members():
    summaries = pl.DataFrame(
        {
            "dataset": ["a", "b", "b"],
            "measure": ["m", "m", "m"],
            "value": [0.1, 0.2, 0.4],
            "n_queries": [1, 2, 2],
        }
    )
    with pytest.raises(ValueError, match="^a group needs at least one member dataset$"):
        metrics.group_mean(summaries, [])
    with pytest.raises(ValueError, match=r"listed twice: \['a'\]"):
        metrics.group_mean(summaries, ["a", "b", "a"])
    with pytest.raises(ValueError, match="^a member dataset reports one measure more than once$"):
        metrics.group_mean(summaries, ["a", "b"])
    one = metrics.group_mean(summaries.head(1), ["a"])
    assert one.rows() == [("m", 0.1, 1, 1)]


TEN = ["nDCG@10", "RR@10", "R@1000", "P@5", "AP", "R@100", "nDCG@3", "RR@100", "P@1", "Judged@10"]


def test_group_mean_keeps_the_measure_order():
    summaries = pl.DataFrame(
        {
            "dataset": [d for d in ("a", "b") for _ in TEN],
            "measure": TEN * 2,
            "value": [0.1 * k for k in range(10)] + [0.1 * k + 0.2 for k in range(10)],
            "n_queries": [3] * 10 + [5] * 10,
        }
    )
    got = metrics.group_mean(summaries, ["a", "b"])
    assert got["measure"].to_list() == TEN
    assert got["value"].to_list() == pytest.approx([0.1 * k + 0.1 for k in range(10)])
    assert got["n_queries"].to_list() == [8] * 10 and got["n_datasets"].to_list() == [2] * 10


def test_paired_ttest_errors_list_what_there_is():
    ten = pl.DataFrame({"qid": "q0", "measure": TEN, "value": 0.5})
    with pytest.raises(
        ValueError, match="^system A has no values for measure 'Top20' \\(has (.*)\\)$"
    ) as info:
        metrics.paired_ttest(ten, ten, "Top20")
    assert str(info.value).endswith(f"(has {TEN})")
    five = per_query([0.1] * 5)
    with pytest.raises(ValueError) as info:
        metrics.paired_ttest(five, per_query([0.1]), "nDCG@10")
    assert "4 only in A (e.g. ['q1', 'q2', 'q3']), 0 only in B (e.g. [])" in str(info.value)
    with pytest.raises(ValueError) as info:
        metrics.paired_ttest(per_query([0.1]), five, "nDCG@10")
    assert "0 only in A (e.g. []), 4 only in B (e.g. ['q1', 'q2', 'q3'])" in str(info.value)


def test_paired_ttest_differences_spanning_exactly_one():
    # d = (1, 0): mean 1/2, sd sqrt(1/2), t = (1/2) / (sqrt(1/2) / sqrt(2)) = 1; p = 1 - 2 atan(1) / pi = 1/2
    got = metrics.paired_ttest(per_query([1.0, 0.0]), per_query([0.0, 0.0]), "nDCG@10")
    assert (got.t, got.p, got.mark) == (pytest.approx(1.0), pytest.approx(0.5), "")


def test_rows_sorted_by_measure_then_qid_whatever_the_qrels_order():
    qrels = pl.DataFrame(
        {"qid": ["q2", "q10", "q1"], "docid": ["b", "c", "a"], "rel": [1, 1, 1]},
        schema_overrides={"rel": pl.Int32},
    )
    run = pl.DataFrame({"qid": ["q1", "q2", "q2"], "docid": ["a", "x", "b"], "score": [1.0, 2.0, 1.0]})
    # one measure, three judged queries: a table of three rows and three columns
    got = metrics.evaluate(qrels, run, ["RR@10"])
    assert got.rows() == [("q1", "RR@10", 1.0), ("q10", "RR@10", 0.0), ("q2", "RR@10", 0.5)]
    assert got.schema == metrics.PER_QUERY_SCHEMA
    two = metrics.evaluate(qrels, run, ["R@5", "RR@10"])
    assert (
        two["qid"].to_list() == ["q1", "q10", "q2"] * 2
        and two["measure"].to_list() == ["R@5"] * 3 + ["RR@10"] * 3
    )


def test_a_judged_query_the_provider_leaves_out_scores_zero(monkeypatch):
    """trec_eval -c does not depend on the provider: one that reports only the queries of the run (as
    pytrec_eval itself does) still gives every judged query a row, 0."""
    real = metrics.ir_measures.iter_calc
    monkeypatch.setattr(
        metrics.ir_measures,
        "iter_calc",
        lambda measures, qrels, run: (m for m in real(measures, qrels, run) if m.query_id in run),
    )
    qrels = pl.DataFrame(
        {"qid": ["q1", "q2", "q3"], "docid": ["a", "b", "c"], "rel": [1, 1, 1]},
        schema_overrides={"rel": pl.Int32},
    )
    run = pl.DataFrame({"qid": ["q1", "q2"], "docid": ["a", "x"], "score": [1.0, 1.0]})
    got = metrics.evaluate(qrels, run, ["RR@10", "R@5"])
    assert got.rows() == [
        ("q1", "RR@10", 1.0),
        ("q2", "RR@10", 0.0),
        ("q3", "RR@10", 0.0),
        ("q1", "R@5", 1.0),
        ("q2", "R@5", 0.0),
        ("q3", "R@5", 0.0),
    ]


def test_a_doubled_judgement_is_named_by_its_first_row():
    qrels = pl.DataFrame({"qid": ["q1"] * 4, "docid": ["a", "b", "a", "b"], "rel": [1, 0, 1, 0]})
    run = pl.DataFrame({"qid": ["q1"], "docid": ["a"], "score": [1.0]})
    with pytest.raises(ValueError, match="^qrels judge doc 'a' for query 'q1' more than once$"):
        metrics.evaluate(qrels, run, ["RR@10"])
