"""The results table: dataset means, group means (CQADupStack), and t-tests against the baselines."""

from __future__ import annotations

import polars as pl
import pytest

from utilanno.evaluate import results_table as results


def write(folder, system, rows):
    pl.DataFrame(rows, schema=["dataset", "qid", "measure", "value"], orient="row").write_parquet(
        folder / f"{system}.parquet"
    )


def test_table_groups_and_significance(tmp_path):
    human = [("a", str(q), "nDCG@10", 0.5) for q in range(6)] + [
        ("b", "1", "nDCG@10", 0.2),
        ("b", "2", "nDCG@10", 0.4),
    ]
    better = [("a", str(q), "nDCG@10", 0.9 + 0.01 * q) for q in range(6)] + [
        ("b", "1", "nDCG@10", 0.2),
        ("b", "2", "nDCG@10", 0.4),
    ]
    write(tmp_path, "human", human)
    write(tmp_path, "llm", better)
    spec = {
        "metrics": str(tmp_path),
        "systems": ["human", "llm"],
        "datasets": {"human": ["a", "b"], "llm": ["a", "b"]},
        "groups": {"human": {"ab": ["a", "b"]}, "llm": {"ab": ["a", "b"]}},
        "baselines": {"human": {"human": "human"}, "llm": {"human": "human", "replug": None}},
        "alpha": 0.05,
    }
    table, sig = results.build(spec)
    got = {(s, d): v for s, d, v in table.select("system", "dataset", "value").iter_rows()}
    assert got["human", "a"] == pytest.approx(0.5) and got["human", "b"] == pytest.approx(0.3)
    assert got["human", "ab"] == pytest.approx(0.4)  # mean of the members' means, not of all queries
    assert got["llm", "a"] == pytest.approx(0.925)
    assert sig.height == 2 and set(sig["against"]) == {"human"}
    marks = dict(zip(sig["dataset"], sig["mark"], strict=True))
    assert marks == {"a": "+", "b": ""}


def test_missing_metrics_are_errors(tmp_path):
    write(tmp_path, "x", [("a", "1", "nDCG@10", 0.5)])
    spec = {"metrics": str(tmp_path), "systems": ["x"], "datasets": {"x": ["a", "zzz"], "y": ["a"]}}
    with pytest.raises(ValueError, match="no metrics for dataset 'zzz'"):
        results.build(spec)
    with pytest.raises(ValueError, match="missing metrics file"):
        results.build({**spec, "systems": ["y"]})


def test_systems_evaluated_on_fewer_datasets_are_tested_where_both_were(tmp_path):
    write(tmp_path, "human", [("a", "1", "RR@10", 0.5), ("a", "2", "RR@10", 0.5), ("b", "1", "RR@10", 1.0)])
    write(tmp_path, "ablation", [("a", "1", "RR@10", 0.4), ("a", "2", "RR@10", 0.6)])
    spec = {
        "metrics": str(tmp_path),
        "systems": ["human", "ablation"],
        "datasets": {"human": ["a", "b"], "ablation": ["a"]},
        "baselines": {"ablation": {"human": "human"}},
    }
    table, sig = results.build(spec)
    assert table.filter(pl.col("system") == "ablation")["dataset"].to_list() == ["a"]
    assert sig["dataset"].to_list() == ["a"] and sig["p"][0] == pytest.approx(1.0)


def test_nested_groups_average_member_means(tmp_path):
    """BEIR's average counts CQADupStack once, as the mean of its forums: ((0.2 + 0.4) / 2 + 0.9) / 2."""
    rows = [("f1", "1", "nDCG@10", 0.2), ("f2", "1", "nDCG@10", 0.3), ("f2", "2", "nDCG@10", 0.5)]
    rows += [("big", str(q), "nDCG@10", 0.9) for q in range(10)]
    write(tmp_path, "bm25", rows)
    spec = {
        "metrics": str(tmp_path),
        "systems": ["bm25"],
        "datasets": {"bm25": ["f1", "f2", "big"]},
        # outer first, as the rule's JSON (sorted keys) hands them over: the table orders them itself
        "groups": {"bm25": {"beir": ["cqa", "big"], "cqa": ["f1", "f2"]}},
    }
    table, _ = results.build(spec)
    got = {d: (v, n) for d, v, n in table.select("dataset", "value", "n_queries").iter_rows()}
    assert got["cqa"] == (pytest.approx(0.3), 3)
    assert got["beir"] == (pytest.approx(0.6), 13)  # not 0.75 (datasets flattened) nor 0.7769 (queries)
    assert table["dataset"].to_list() == ["f1", "f2", "big", "cqa", "beir"]
    spec["groups"]["bm25"]["cqa"] = ["f1", "beir"]
    with pytest.raises(ValueError, match="groups contain each other: beir -> cqa -> beir"):
        results.build(spec)


def test_corpus_level_values_are_reported_as_they_are_and_never_tested(tmp_path):
    """A null qid is a corpus-level value (RAG's BLEU): it is the dataset's value, counted over the dataset's
    queries, and it takes no part in the means of per-query measures nor in the t-tests."""
    write(tmp_path, "a", [("d", "1", "RR@10", 1.0), ("d", "2", "RR@10", 0.5), ("d", None, "BLEU", 0.25)])
    write(tmp_path, "b", [("d", "1", "RR@10", 0.5), ("d", "2", "RR@10", 0.5), ("d", None, "BLEU", 0.5)])
    spec = {
        "metrics": str(tmp_path),
        "systems": ["a", "b"],
        "datasets": {"a": ["d"], "b": ["d"]},
        "baselines": {"a": {"human": "b"}},
    }
    table, sig = results.build(spec)
    assert table.schema == results.TABLE
    assert table.rows() == [
        ("a", "d", "RR@10", 0.75, 2),
        ("a", "d", "BLEU", 0.25, 2),
        ("b", "d", "RR@10", 0.5, 2),
        ("b", "d", "BLEU", 0.5, 2),
    ]
    assert sig["measure"].to_list() == ["RR@10"]


def test_significance_rows_hold_both_means_and_scipys_t_and_p(tmp_path):
    from scipy import stats

    a = [0.9, 0.7, 0.8, 0.6, 0.75]
    b = [0.5, 0.65, 0.6, 0.55, 0.7]
    write(tmp_path, "llm", [("d", str(q), m, v) for m in ("nDCG@10", "RR@10") for q, v in enumerate(a)])
    write(tmp_path, "human", [("d", str(q), m, v) for m in ("nDCG@10", "RR@10") for q, v in enumerate(b)])
    spec = {
        "metrics": str(tmp_path),
        "systems": ["llm", "human"],
        "datasets": {"llm": ["d"], "human": ["d"]},
        "baselines": {"llm": {"human": "human"}},
    }
    _, sig = results.build(spec)
    ref = stats.ttest_rel(a, b)
    assert 0.05 < ref.pvalue < 0.1  # not significant at the default alpha 0.05, significant at 0.1
    assert sig.schema == results.SIGNIFICANCE
    expected = (
        "llm",
        "d",
        "nDCG@10",
        "human",
        "human",
        sum(a) / 5,
        sum(b) / 5,
        ref.statistic,
        ref.pvalue,
        "",
    )
    assert sig.rows()[0] == pytest.approx(expected)
    assert sig["measure"].to_list() == ["nDCG@10", "RR@10"]
    _, loose = results.build({**spec, "alpha": 0.1})
    assert loose["mark"].to_list() == ["+", "+"]


def test_groups_average_the_measures_their_members_share(tmp_path):
    rows = [("nq", "1", "nDCG@10", 0.4), ("nq", "1", "Top20", 1.0), ("fiqa", "1", "nDCG@10", 0.2)]
    write(tmp_path, "s", rows)
    spec = {
        "metrics": str(tmp_path),
        "systems": ["s"],
        "datasets": {"s": ["nq", "fiqa"]},
        "groups": {"s": {"beir": ["nq", "fiqa"]}},
    }
    table, sig = results.build(spec)
    assert table.filter(pl.col("dataset") == "beir").rows() == [
        ("s", "beir", "nDCG@10", pytest.approx(0.3), 2)
    ]
    assert sig.is_empty() and sig.schema == results.SIGNIFICANCE
    write(tmp_path, "s", [("nq", "1", "Top20", 1.0), ("fiqa", "1", "nDCG@10", 0.2)])
    with pytest.raises(ValueError, match=r"group 'beir' of s: its members \['nq', 'fiqa'\] share no measure"):
        results.build(spec)


def test_no_systems_give_empty_tables_with_their_schemas(tmp_path):
    table, sig = results.build({"metrics": str(tmp_path), "systems": [], "datasets": {}})
    assert table.is_empty() and table.schema == results.TABLE
    assert sig.is_empty() and sig.schema == results.SIGNIFICANCE


MANY = ["nDCG@10", "RR@10", "R@1000", "P@5", "AP", "R@100", "nDCG@3", "RR@100", "P@1", "Top20"]


def test_significance_keeps_the_measure_order_and_skips_missing_baselines_in_any_position(tmp_path):
    """Ten measures, in no sorted order: the t-tests come out in the metrics file's measure order (ten rows
    of ten columns, too). A role without a baseline, or with the system itself, is skipped, wherever it sits
    among the roles."""
    a = [0.9, 0.7, 0.8, 0.6, 0.75]
    b = [0.5, 0.65, 0.6, 0.55, 0.7]
    write(tmp_path, "llm", [("d", str(q), m, v) for m in MANY for q, v in enumerate(a)])
    write(tmp_path, "human", [("d", str(q), m, v) for m in MANY for q, v in enumerate(b)])
    spec = {
        "metrics": str(tmp_path),
        "systems": ["llm", "human"],
        "datasets": {"llm": ["d"], "human": ["d"]},
        "baselines": {"llm": {"replug": None, "self": "llm", "human": "human"}, "human": {"human": "human"}},
    }
    table, sig = results.build(spec)
    assert sig.height == 10 and sig["measure"].to_list() == MANY
    assert set(sig["against"]) == {"human"} and set(sig["system"]) == {"llm"}
    assert table.filter(pl.col("system") == "llm")["measure"].to_list() == MANY


def test_groups_of_three_report_only_what_all_three_share(tmp_path):
    rows = [("x", "1", "nDCG@10", 0.3), ("x", "1", "Top20", 1.0), ("y", "1", "nDCG@10", 0.6)]
    rows += [("y", "1", "Top20", 0.0), ("z", "1", "nDCG@10", 0.9)]
    write(tmp_path, "s", rows)
    spec = {
        "metrics": str(tmp_path),
        "systems": ["s"],
        "datasets": {"s": ["x", "y", "z"]},
        "groups": {"s": {"g": ["x", "y", "z"]}},
    }
    table, _ = results.build(spec)
    assert table.filter(pl.col("dataset") == "g").rows() == [("s", "g", "nDCG@10", pytest.approx(0.6), 3)]
    with pytest.raises(ValueError, match=r"group 'e' of s: its members \[\] share no measure"):
        results.build({**spec, "groups": {"s": {"e": []}}})
