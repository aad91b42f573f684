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
    with pytest.raises(TypeError):
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
