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
        # inner first, as Plan.eval_groups orders them
        "groups": {"bm25": {"cqa": ["f1", "f2"], "beir": ["cqa", "big"]}},
    }
    table, _ = results.build(spec)
    got = {d: (v, n) for d, v, n in table.select("dataset", "value", "n_queries").iter_rows()}
    assert got["cqa"] == (pytest.approx(0.3), 3)
    assert got["beir"] == (pytest.approx(0.6), 13)  # not 0.75 (datasets flattened) nor 0.7769 (queries)
    assert table["dataset"].to_list() == ["f1", "f2", "big", "cqa", "beir"]
