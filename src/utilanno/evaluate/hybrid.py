"""The Hybrid Test (PAPER-SPEC B.9; EMNLP §4.3): an LLM-judged test collection over what the trained
retrievers return, for the Hybrid columns of Tables 2, 6 and 7.

- Queries: a seeded sample of MS MARCO dev queries that have a QA answer (sampled from the sorted qids, so
  the sample depends on the seed and the query set only, never on file order).
- Pool per backbone: the union of the top `depth` of its pooled retrievers' dev runs, in a seeded per-query
  order (our choice: the paper does not say how the union is ordered; a fixed order by retriever would
  show one retriever's passages first, and LLM judges favour early positions), in relevance windows as the
  annotation pools have them. The pool shards have the annotation pools' columns plus `answer`.
- Judge: the UtilSel prompt with the first QA ground-truth answer as the reference answer, window by window
  (`annotate.steps.selection_tasks`); a passage shared by two windows keeps the first window's label.
- Gold: human positives (dev qrels, rel > 0) of the sampled queries, and the judged positives, as TREC qrels.
  A window whose output does not parse adds no positive; its status is counted.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from pathlib import Path

import polars as pl

from utilanno import tables
from utilanno.annotate.pools import POOL_PASSAGE, shard_of, windows
from utilanno.atomic import atomic_path, atomic_text
from utilanno.errors import InputFormatError
from utilanno.evaluate import runfiles

log = logging.getLogger(__name__)

POOL_SCHEMA = {
    "qid": pl.String,
    "query": pl.String,
    "answer": pl.String,
    "positive": pl.String,
    "positives": pl.List(pl.String),
    "passages": pl.List(POOL_PASSAGE),
    "windows": pl.List(pl.List(pl.Int32)),
}


def sample_queries(queries_file, answers_file, n: int, seed: int) -> tuple[pl.DataFrame, dict]:
    """(qid, query, answer) of `n` seeded queries with a non-empty QA answer, sorted by qid; and counts."""
    queries = tables.read_parquet(queries_file, columns=["qid", "text"])
    answers = tables.read_parquet(answers_file, columns=["qid", "answers"])
    first = answers.select(
        "qid", pl.col("answers").list.eval(pl.element().filter(pl.element().str.strip_chars() != ""))
    )
    first = first.filter(pl.col("answers").list.len() > 0).select(
        "qid", answer=pl.col("answers").list.first()
    )
    usable = queries.join(first, on="qid", how="inner").sort("qid")
    counts = {"dev_queries": queries.height, "with_answer": usable.height}
    counts["skipped_without_answer"] = queries.height - usable.height
    if usable.is_empty():
        raise InputFormatError(str(answers_file), None, f"no query of {queries_file} has a QA answer")
    if n > usable.height:
        log.warning("hybrid: %d queries asked for, only %d dev queries have an answer", n, usable.height)
    picked = sorted(random.Random(seed).sample(range(usable.height), min(n, usable.height)))
    sample = usable[picked].select("qid", pl.col("text").alias("query"), "answer")
    counts["sampled"] = sample.height
    log.info("hybrid queries: %s", json.dumps(counts))
    return sample, counts


def union_pools(runs: list, qids: list[str], depth: int) -> dict[str, list[str]]:
    """Per query, the union of the top `depth` of every run (ranked by (-score, docid)), sorted by docid."""
    wanted = pl.Series("qid", qids, dtype=pl.String).implode()
    pools: dict[str, set[str]] = {q: set() for q in qids}
    for run_file in runs:
        top = runfiles.rank(runfiles.read_run(run_file).filter(pl.col("qid").is_in(wanted)), depth)
        for qid, docids in top.group_by("qid").agg("docid").iter_rows():
            pools[qid].update(docids)
    return {q: sorted(d) for q, d in pools.items()}


def build(
    runs: list,
    queries_file,
    answers_file,
    qrels_file,
    corpus_file,
    outs: list,
    n_queries: int,
    depth: int,
    window: int,
    overlap: int,
    seed: int,
    stats_out=None,
) -> dict:
    """The hybrid pool: `len(outs)` shards of (POOL_SCHEMA) rows, by the stable hash of the qid."""
    from utilanno.data.convert import read_qrels

    sample, counts = sample_queries(queries_file, answers_file, n_queries, seed)
    qids = sample["qid"].to_list()
    pools = union_pools(runs, qids, depth)
    qrels = read_qrels(qrels_file).filter(
        (pl.col("rel") > 0) & pl.col("qid").is_in(pl.Series(qids).implode())
    )
    human = {q: sorted(d) for q, d in qrels.group_by("qid").agg("docid").iter_rows()}
    needed = pl.Series("docid", sorted({d for docs in pools.values() for d in docs}), dtype=pl.String)
    texts = (
        tables.scan_parquet(corpus_file)
        .select("docid", "title", "text")
        .filter(pl.col("docid").is_in(needed.implode()))
        .collect()
    )
    lookup = {d: (t, x) for d, t, x in texts.iter_rows()}
    if missing := [d for d in needed if d not in lookup]:
        raise InputFormatError(
            str(corpus_file), None, f"{len(missing)} run passages not in the corpus, e.g. {missing[:3]}"
        )
    rows, sizes = [], []
    for qid, query, answer in sample.iter_rows():
        order = list(pools[qid])
        random.Random(f"{seed}:hybrid:{qid}").shuffle(order)
        sizes.append(len(order))
        positives = human.get(qid, [])
        rows.append(
            {
                "qid": qid,
                "query": query,
                "answer": answer,
                "positive": positives[0] if positives else None,
                "positives": positives,
                "passages": [{"docid": d, "title": lookup[d][0], "text": lookup[d][1]} for d in order],
                "windows": windows(len(order), window, overlap) if order else [],
                "_shard": shard_of(qid, len(outs)),
            }
        )
    table = pl.DataFrame(rows, schema={**POOL_SCHEMA, "_shard": pl.Int32})
    for k, out in enumerate(outs):
        with atomic_path(out) as tmp:
            table.filter(pl.col("_shard") == k).drop("_shard").write_parquet(tmp)
    stats = {
        **counts,
        "runs": [str(r) for r in runs],
        "depth": depth,
        "pool_passages": sum(sizes),
        "pool_min": min(sizes, default=0),
        "pool_max": max(sizes, default=0),
        "pool_mean": round(sum(sizes) / len(sizes), 3) if sizes else 0.0,
        "queries_without_human_positive": sum(1 for q in qids if not human.get(q)),
        "shard_sizes": [int((table["_shard"] == k).sum()) for k in range(len(outs))],
    }
    log.info("hybrid pool: %s", json.dumps(stats))
    if stats_out:
        with atomic_text(stats_out) as fh:
            json.dump(stats, fh, indent=2)
    return stats


def gold(
    pool_files: list, judged_files: list, qrels_out, queries_out, stats_out, prices: dict | None = None
) -> dict:
    """Human positives ∪ judged positives of the sampled queries -> TREC qrels (rel 1) and the queries table;
    statistics as the annotation steps report them (positives per query, overlap with the human positives,
    statuses, tokens, and cost when the judge has prices)."""
    pools = pl.concat([tables.read_parquet(f) for f in pool_files])
    judged: dict[str, dict] = {}
    for f in judged_files:
        judged.update(tables.read_jsonl(f))
    if missing := sorted(set(pools["qid"]) - set(judged)):
        raise ValueError(
            f"{len(missing)} hybrid queries have no judgment in {judged_files}, e.g. {missing[:3]}"
        )
    statuses: Counter = Counter()
    lines, n_llm, n_human, n_both, n_gold = [], 0, 0, 0, 0
    tokens = {"prompt_tokens": 0, "completion_tokens": 0}
    for qid, positives in pools.select("qid", "positives").sort("qid").iter_rows():
        rec = judged[qid]
        statuses.update(w["status"] for w in rec["windows"])
        for key in tokens:
            tokens[key] += rec[key]
        llm, human = set(rec["selected"]), set(positives)
        n_llm, n_human, n_both = n_llm + len(llm), n_human + len(human), n_both + len(llm & human)
        for docid in sorted(llm | human):
            lines.append(f"{qid} 0 {docid} 1\n")
        n_gold += len(llm | human)
    with atomic_text(qrels_out) as fh:
        fh.writelines(lines)
    with atomic_path(queries_out) as tmp:
        pools.select("qid", pl.col("query").alias("text")).sort("qid").write_parquet(tmp)
    n = pools.height
    stats = {
        "queries": n,
        "judged_positives_per_query": round(n_llm / n, 3) if n else 0.0,
        "human_positives_per_query": round(n_human / n, 3) if n else 0.0,
        "gold_positives_per_query": round(n_gold / n, 3) if n else 0.0,
        "human_positives_judged_positive": round(n_both / n_human, 4) if n_human else None,
        "window_status": dict(sorted(statuses.items())),
        **tokens,
    }
    if prices:
        stats["cost"] = round(
            tokens["prompt_tokens"] / 1e6 * prices.get("input", 0.0)
            + tokens["completion_tokens"] / 1e6 * prices.get("output", 0.0),
            4,
        )
    log.info("hybrid gold: %s", json.dumps(stats))
    with atomic_text(stats_out) as fh:
        json.dump(stats, fh, indent=2)
    return stats


def restrict_run(run_file, queries_file, out, tag: str | None = None) -> int:
    """A system's MS MARCO dev run restricted to the hybrid queries: the same model, corpus and queries give
    the same ranking, so the hybrid run needs no search of its own."""
    qids = tables.read_parquet(queries_file, columns=["qid"])["qid"]
    run = runfiles.read_run(run_file)
    mine = run.filter(pl.col("qid").is_in(qids.implode()))
    tag = tag or Path(run_file).parent.name
    return runfiles.write_run(out, mine, tag)
