"""Retrieval metrics (ir_measures over pytrec_eval), dataset and group means, paired significance tests.

Judged-query semantics are trec_eval `-c`: every query id in the qrels counts, including one whose judgments
are all non-relevant (it scores 0 everywhere, as in trec_eval, which divides by the number of qrels
queries); a judged query missing from the run scores 0; a run query without judgments is ignored. So a
retriever that fails to return anything for a query is penalized instead of quietly evaluated on fewer
queries, and two systems on one dataset are always averaged over the same queries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import ir_measures
import numpy as np
import polars as pl
from scipy import stats

from utilanno.evaluate.runfiles import rank

PER_QUERY_SCHEMA = {"qid": pl.String, "measure": pl.String, "value": pl.Float64}


def parse_measures(names: Sequence[str]) -> dict[str, ir_measures.Measure]:
    """ir_measures names (`RR@10`, `nDCG@10`, `R(rel=2)@1000`) -> measure objects, keyed by the name as given.

    Unknown names and two names for one measure (e.g. `AP` and `AP(rel=1)`) are errors.
    """
    if isinstance(names, str):
        raise TypeError(f"measures must be a list of names, got the string {names!r}")
    parsed: dict[str, ir_measures.Measure] = {}
    for name in names:
        try:
            measure = ir_measures.parse_measure(name)
        except (NameError, ValueError, SyntaxError) as err:
            raise ValueError(
                f"unknown measure {name!r}: expected an ir_measures name such as 'RR@10', 'nDCG@10', "
                f"'R(rel=2)@1000' ({err})"
            ) from None
        same = [other for other, m in parsed.items() if m == measure]
        if same:
            raise ValueError(f"measure {name!r} is the same as {same[0]!r}: list each measure once")
        parsed[name] = measure
    if not parsed:
        raise ValueError("no measures to compute")
    return parsed


def evaluate(qrels: pl.DataFrame, run: pl.DataFrame, measures: Sequence[str]) -> pl.DataFrame:
    """Per-query values (qid, measure, value) for every query in `qrels` and every measure, named as given.

    `qrels` is (qid, docid, rel) as `convert.read_qrels` returns it; `run` is (qid, docid, score) as
    `runs.read_run` or `runs.from_topk` returns it. The run is ranked by (-score, docid), the order
    `runs.write_run` writes, and scored in that order: every ir_measures provider sees the same strict
    ranking (trec_eval alone would break score ties by docid descending, MS MARCO's script ascending).
    Rows come out by measure (in the order given), then qid.
    """
    parsed = parse_measures(measures)
    qrels_dict = _qrels_dict(qrels)
    judged = pl.Series("qid", list(qrels_dict), dtype=pl.String)
    ranked = rank(run).filter(pl.col("qid").is_in(judged.implode()))
    grouped = ranked.group_by("qid").agg("docid", (-pl.col("rank").cast(pl.Float64)).alias("score"))
    run_dict = {qid: dict(zip(docids, scores, strict=True)) for qid, docids, scores in grouped.iter_rows()}
    name_of = {measure: name for name, measure in parsed.items()}
    computed = [
        (m.query_id, name_of[m.measure], float(m.value))
        for m in ir_measures.iter_calc(list(parsed.values()), qrels_dict, run_dict)
        if m.query_id in qrels_dict
    ]
    values = pl.DataFrame(computed, schema=PER_QUERY_SCHEMA, orient="row")
    order = pl.DataFrame({"measure": list(parsed), "_m": range(len(parsed))})
    grid = order.join(judged.to_frame(), how="cross")  # trec_eval -c: every judged query, every measure
    return (
        grid.join(values, on=["measure", "qid"], how="left")
        .with_columns(pl.col("value").fill_null(0.0))
        .sort("_m", "qid")
        .select(list(PER_QUERY_SCHEMA))
    )


def _qrels_dict(qrels: pl.DataFrame) -> dict[str, dict[str, int]]:
    missing = [c for c in ("qid", "docid", "rel") if c not in qrels.columns]
    if missing:
        raise ValueError(f"qrels need columns qid, docid, rel; missing {missing}")
    if qrels.is_empty():
        raise ValueError("qrels are empty: no judged queries to evaluate")
    dup = qrels.select("qid", "docid").is_duplicated()
    if dup.any():
        i = dup.arg_true()[0]
        raise ValueError(
            f"qrels judge doc {qrels['docid'][i]!r} for query {qrels['qid'][i]!r} more than once"
        )
    grouped = qrels.group_by("qid", maintain_order=True).agg("docid", pl.col("rel").cast(pl.Int64))
    return {qid: dict(zip(docids, rels, strict=True)) for qid, docids, rels in grouped.iter_rows()}


def summarize(per_query: pl.DataFrame) -> pl.DataFrame:
    """(qid, measure, value) -> (measure, value, n_queries): means over queries, measures in input order."""
    return per_query.group_by("measure", maintain_order=True).agg(
        pl.col("value").mean().cast(pl.Float64), pl.len().cast(pl.Int64).alias("n_queries")
    )


def group_mean(summaries: pl.DataFrame, members: Sequence[str]) -> pl.DataFrame:
    """Mean of member datasets' means, per measure -> (measure, value, n_datasets, n_queries).

    `summaries` is (dataset, measure, value, n_queries), e.g. `summarize` outputs with a dataset column.
    Each member weighs the same whatever its query count: BEIR reports CQADupStack as the plain average of
    its 12 subforums, and the BEIR average as the plain average over datasets. A member or measure missing
    for some member is an error, so a partial group never passes for a whole one.
    """
    members = list(members)
    if not members:
        raise ValueError("a group needs at least one member dataset")
    if len(set(members)) != len(members):
        raise ValueError(
            f"group members listed twice: {sorted({m for m in members if members.count(m) > 1})}"
        )
    rows = summaries.filter(pl.col("dataset").is_in(members))
    absent = [m for m in members if m not in set(rows["dataset"])]
    if absent:
        raise ValueError(f"group members without results: {absent}")
    per_measure = rows.group_by("measure", maintain_order=True).agg(
        pl.col("dataset").n_unique().alias("n_datasets"),
        pl.col("value").mean().cast(pl.Float64),
        pl.col("n_queries").sum().cast(pl.Int64),
    )
    partial = per_measure.filter(pl.col("n_datasets") != len(members))
    if not partial.is_empty():
        measure = partial["measure"][0]
        have = set(rows.filter(pl.col("measure") == measure)["dataset"])
        raise ValueError(
            f"measure {measure!r} missing for group members {[m for m in members if m not in have]}"
        )
    if rows.select("dataset", "measure").is_duplicated().any():
        raise ValueError("a member dataset reports one measure more than once")
    return per_measure.select("measure", "value", "n_datasets", "n_queries")


class TTest(NamedTuple):
    """A two-sided paired t-test of system A against system B on one measure."""

    mean_a: float
    mean_b: float
    t: float
    p: float
    mark: str  # "+" A significantly better, "-" significantly worse, "" no significant difference
    n: int


def paired_ttest(
    per_query_a: pl.DataFrame, per_query_b: pl.DataFrame, measure: str, alpha: float = 0.05
) -> TTest:
    """Two-sided paired t-test of A against B over their queries, as the paper marks systems against Human.

    Both tables are `evaluate` outputs for one dataset, so they hold the same judged queries; different
    query sets are an error (pairing over an intersection would hide a broken evaluation). Degenerate
    cases, where scipy gives NaN: identical values (or fewer than two queries) give t = 0, p = 1;
    a constant non-zero difference gives t = +-inf, p = 0.
    """
    a = _measure_values(per_query_a, measure, "A")
    b = _measure_values(per_query_b, measure, "B")
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ValueError(
            f"paired t-test on {measure!r} needs the same queries on both sides: {len(only_a)} only in A "
            f"(e.g. {only_a[:3]}), {len(only_b)} only in B (e.g. {only_b[:3]})"
        )
    qids = sorted(a)
    va = np.array([a[q] for q in qids], dtype=np.float64)
    vb = np.array([b[q] for q in qids], dtype=np.float64)
    n = len(qids)
    mean_a, mean_b = (float(va.mean()), float(vb.mean())) if n else (0.0, 0.0)
    diff = va - vb
    if n < 2 or not diff.any():
        t, p = 0.0, 1.0
    elif np.ptp(diff) == 0:
        t, p = math.copysign(math.inf, diff[0]), 0.0
    else:
        result = stats.ttest_rel(va, vb)
        t, p = float(result.statistic), float(result.pvalue)
    mark = ("+" if mean_a > mean_b else "-") if p < alpha and mean_a != mean_b else ""
    return TTest(mean_a, mean_b, t, p, mark, n)


def _measure_values(per_query: pl.DataFrame, measure: str, side: str) -> dict[str, float]:
    rows = per_query.filter(pl.col("measure") == measure)
    if rows.is_empty():
        have = per_query["measure"].unique(maintain_order=True).to_list()
        raise ValueError(f"system {side} has no values for measure {measure!r} (has {have})")
    if rows["qid"].is_duplicated().any():
        raise ValueError(f"system {side} has several values per query for {measure!r}")
    return dict(zip(rows["qid"], rows["value"], strict=True))
