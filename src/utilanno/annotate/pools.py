"""Candidate pools for annotation: the human positive plus hard negatives, in a seeded per-query order,
split into relevance windows, assigned to shards by a stable hash of the query id (PAPER-SPEC A.2, B.1)."""

from __future__ import annotations

import hashlib
import logging
import random
from pathlib import Path

import polars as pl

from utilanno import tables
from utilanno.atomic import atomic_path
from utilanno.errors import InputFormatError

log = logging.getLogger(__name__)

POOL_PASSAGE = pl.Struct({"docid": pl.String, "title": pl.String, "text": pl.String})


def shard_of(qid: str, shards: int) -> int:
    """Stable across runs, machines and Python versions (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(qid.encode(), digest_size=8).digest(), "big") % shards


ORDERS = ("shuffle", "positive_first")


def order_pool(qid: str, positive: str | None, negatives: list[str], order: str, seed: int) -> list[str]:
    """The pool in prompt order. `shuffle`: all passages in a seeded per-query order; `positive_first`: the
    human positive first, then the negatives in a seeded order (the released notebook's reading, with
    `anchored_windows`). A mined pool has no human positive (None): its candidates in a seeded order."""
    if order not in ORDERS:
        raise ValueError(f"unknown pool order {order!r} (expected one of {ORDERS})")
    if positive is None and order == "positive_first":
        raise ValueError("positive_first needs a human positive; a mined pool has none (use shuffle)")
    rng = random.Random(f"{seed}:{qid}")
    negatives = list(negatives)
    rng.shuffle(negatives)
    if order == "positive_first":
        return [positive, *negatives]
    pool = [positive, *negatives] if positive is not None else negatives
    rng.shuffle(pool)
    return pool


def windows(n: int, size: int, overlap: int) -> list[list[int]]:
    """Consecutive windows of `size` positions that share `overlap` positions with the previous one.

    31 passages, size 16, overlap 1: [0..15] and [15..30]; a shared position keeps the first window's label.
    """
    if overlap >= size:
        raise ValueError(f"overlap {overlap} must be smaller than the window size {size}")
    if n <= size:
        return [list(range(n))]
    out, start = [], 0
    while True:
        out.append(list(range(start, min(start + size, n))))
        if start + size >= n:
            return out
        start += size - overlap


def anchored_windows(n: int, size: int) -> list[list[int]]:
    """Windows of `size` that all start with position 0, the others in consecutive runs of size - 1.

    31 passages, size 16: [0, 1..15] and [0, 16..30]: the human positive is passage [1] of every window and
    keeps window 1's label, the reading of the released notebook (`first_ids + last_ids[1:]` with index 0 as
    the human positive; PAPER-SPEC B.1, I.9).
    """
    if size < 2:
        raise ValueError(
            f"an anchored window needs room for the anchor and one more passage, got size {size}"
        )
    if n <= size:
        return [list(range(n))]
    return [[0, *range(start, min(start + size - 1, n))] for start in range(1, n, size - 1)]


def pool_windows(n: int, size: int, overlap: int, order: str) -> list[list[int]]:
    """The relevance windows of a pool: anchored on the positive for `positive_first`, else consecutive."""
    return anchored_windows(n, size) if order == "positive_first" else windows(n, size, overlap)


def build(
    pool_input: str | Path,
    corpus: str | Path,
    outs: list[str | Path],
    negatives: int,
    window: int,
    overlap: int,
    order: str,
    seed: int,
    mined: bool = False,
) -> dict:
    """train-pool.parquet + corpus.parquet -> one Parquet file per shard (len(outs) shards).

    Columns: qid, query, positive (the human positive shown to the LLM), positives (all human positives),
    passages (list of docid/title/text in prompt order), windows (list of lists of pool positions).

    `mined`: the pool file comes from candidate mining (`annotate.mining`): no human positive (positive null,
    positives empty), every mined candidate shown (mining already kept `candidates` per query); a query
    mining found nothing for is dropped here and counted.
    """
    src = tables.read_parquet(pool_input)
    shards = len(outs)
    rows, short, empty = [], 0, 0
    for qid, query, positives, negs in src.select("qid", "query", "positives", "negatives").iter_rows():
        if mined and positives:
            raise InputFormatError(str(pool_input), None, f"query {qid!r}: a mined pool has human positives")
        if not mined and not positives:
            raise InputFormatError(str(pool_input), None, f"query {qid!r} has no human positive")
        if mined and not negs:
            empty += 1
            continue
        if not mined and len(negs) < negatives:
            short += 1
        positive = positives[0] if positives else None
        pool = order_pool(qid, positive, negs if mined else negs[:negatives], order, seed)
        rows.append(
            (
                qid,
                query,
                positive,
                positives,
                pool,
                pool_windows(len(pool), window, overlap, order),
                shard_of(qid, shards),
            )
        )
    table = pl.DataFrame(
        rows,
        schema={
            "qid": pl.String,
            "query": pl.String,
            "positive": pl.String,
            "positives": pl.List(pl.String),
            "pool": pl.List(pl.String),
            "windows": pl.List(pl.List(pl.Int32)),
            "shard": pl.Int32,
        },
        orient="row",
    )
    if short:
        log.warning(
            "%d of %d queries have fewer than %d negatives; their pools are smaller",
            short,
            len(rows),
            negatives,
        )
    sizes = []
    for k, out in enumerate(outs):
        part = table.filter(pl.col("shard") == k).drop("shard")
        needed = part["pool"].explode().unique()
        texts = (
            tables.scan_parquet(corpus)
            .filter(pl.col("docid").is_in(needed.implode()))
            .select("docid", "title", "text")
            .collect()
        )
        missing = needed.filter(~needed.is_in(texts["docid"].implode()))
        if missing.len():
            raise InputFormatError(
                str(pool_input),
                None,
                f"{missing.len()} pool passages are not in {corpus}, e.g. {missing.sort().head(3).to_list()}",
            )
        lookup = dict(zip(texts["docid"], zip(texts["title"], texts["text"], strict=True), strict=True))
        passages = [
            [{"docid": d, "title": lookup[d][0], "text": lookup[d][1]} for d in pool] for pool in part["pool"]
        ]
        part = part.with_columns(pl.Series("passages", passages, dtype=pl.List(POOL_PASSAGE))).drop("pool")
        with atomic_path(out) as tmp:
            part.write_parquet(tmp)
        sizes.append(part.height)
        log.info("shard %d: %d queries, %d distinct passages -> %s", k, part.height, needed.len(), out)
    if empty:
        log.warning("%d of %d mined queries have no candidate and are not annotated", empty, src.height)
    stats = {"queries_in": src.height, "queries_out": sum(sizes), "shard_sizes": sizes, "short_pools": short}
    stats |= {"empty_pools": empty} if mined else {}
    log.info("pools: %s", stats)
    return stats
