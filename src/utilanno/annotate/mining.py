"""Candidate mining for a dataset without a pool (issue 16; the paper's App. C, PAPER-SPEC B.10): fuse the
of one or more retrievers over the dataset's queries into the top `candidates` passages per query, written in
the train-pool format the pool stage reads (qid, query, positives, negatives) with no human positive.

Fusion:
- `rrf` (the default): reciprocal rank fusion, score(d) = sum over runs of 1 / (k + rank), rank from 1,
  k = 60 (Cormack et al., SIGIR 2009); ties broken by docid, so the result does not depend on run order.
- `union`: the App. C reading (PAPER-SPEC B.10 lists BM25, a UtilSel retriever and LLM-QL as candidate
  sources; how they were combined and how many candidates were kept is NOT FOUND): each run's passages in
  turn, round robin by rank, the first occurrence kept, until `candidates`.

Qrels, where the dataset has them, are used only to report how many of their positives the pool holds.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from utilanno import tables
from utilanno.atomic import atomic_path
from utilanno.data.convert import read_qrels
from utilanno.evaluate import runfiles

log = logging.getLogger(__name__)

FUSIONS = ("rrf", "union")
RUN = {"qid": pl.String, "docid": pl.String, "rank": pl.Int64}


def rrf(runs: list[pl.DataFrame], candidates: int, k: int = 60) -> pl.DataFrame:
    """Reciprocal rank fusion of runs (qid, docid, rank from 1) -> (qid, docid, rank) top `candidates`."""
    if k < 0:
        raise ValueError(f"rrf k must be >= 0, got {k}")
    scored = pl.concat([r.select(*RUN).cast(RUN) for r in runs]) if runs else pl.DataFrame(schema=RUN)
    fused = scored.group_by("qid", "docid").agg(score=(1.0 / (k + pl.col("rank"))).sum())
    fused = fused.sort(["qid", "score", "docid"], descending=[False, True, False])
    fused = fused.with_columns(rank=pl.int_range(1, pl.len() + 1).over("qid"))
    return fused.filter(pl.col("rank") <= candidates).select("qid", "docid", pl.col("rank").cast(pl.Int64))


def union(runs: list[pl.DataFrame], candidates: int) -> pl.DataFrame:
    """Round robin over runs by rank (run order decides within a rank), first occurrence kept."""
    scored = (
        pl.concat([r.select(*RUN).cast(RUN).with_columns(run=pl.lit(i)) for i, r in enumerate(runs)])
        if runs
        else pl.DataFrame(schema={**RUN, "run": pl.Int32})
    )
    merged = scored.sort(["qid", "rank", "run"]).unique(["qid", "docid"], keep="first", maintain_order=True)
    merged = merged.with_columns(rank=pl.int_range(1, pl.len() + 1).over("qid"))
    return merged.filter(pl.col("rank") <= candidates).select("qid", "docid", pl.col("rank").cast(pl.Int64))


def fuse(runs: list[pl.DataFrame], candidates: int, fusion: str = "rrf", k: int = 60) -> pl.DataFrame:
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r} (expected one of {FUSIONS})")
    if candidates < 1:
        raise ValueError(f"candidates must be at least 1, got {candidates}")
    return rrf(runs, candidates, k) if fusion == "rrf" else union(runs, candidates)


def mine(
    run_files: list[str | Path],
    queries: str | Path,
    out: str | Path,
    candidates: int,
    fusion: str = "rrf",
    k: int = 60,
    qrels: str | Path | None = None,
) -> dict:
    """Runs over `queries` -> train-pool.parquet: every query kept (with what was found, maybe nothing), its
    fused candidates as `negatives` in fused order, no human positive. Returns the counts for the log."""
    runs = [runfiles.read_run(f) for f in run_files]
    fused = fuse(runs, candidates, fusion, k)
    qs = tables.read_parquet(queries, columns=["qid", "text"])
    lists = fused.group_by("qid", maintain_order=True).agg(pl.col("docid").sort_by("rank").alias("negatives"))
    pool = qs.join(lists, on="qid", how="left").select(
        "qid",
        pl.col("text").alias("query"),
        positives=pl.lit([], dtype=pl.List(pl.String)),
        negatives=pl.col("negatives").fill_null(pl.lit([], dtype=pl.List(pl.String))),
    )
    unknown = fused.filter(~pl.col("qid").is_in(qs["qid"].implode()))["qid"].unique()
    sizes = pool["negatives"].list.len()
    stats = {
        "queries": pool.height,
        "candidates": candidates,
        "fusion": fusion,
        "runs": [str(f) for f in run_files],
        "short_pools": int((sizes < candidates).sum()),
        "empty_pools": int((sizes == 0).sum()),
        "mean_pool_size": round(float(sizes.mean() or 0.0), 3),
        "run_queries_not_in_queries": unknown.len(),
    }
    if qrels is not None:
        stats |= pool_recall(pool, read_qrels(qrels).filter(pl.col("rel") > 0))
    with atomic_path(out) as tmp:
        pool.write_parquet(tmp)
    log.info("mined pools: %s", stats)
    return stats


def pool_recall(pool: pl.DataFrame, positives: pl.DataFrame) -> dict:
    """Judged positives the pools hold, over the queries with at least one (reported, never used to train)."""
    judged = positives.select("qid", "docid").filter(pl.col("qid").is_in(pool["qid"].implode()))
    held = pool.select("qid", docid=pl.col("negatives")).explode("docid").join(judged, on=["qid", "docid"])
    n_judged = judged.height
    return {
        "queries_with_qrels": judged["qid"].n_unique(),
        "qrels_positives": n_judged,
        "pool_recall": round(held.height / n_judged, 4) if n_judged else None,
    }
