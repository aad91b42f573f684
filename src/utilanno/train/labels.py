"""Label sets on the shared pool (PAPER-SPEC C) and the sampling of a query's training group (C.1).

A label set is a long table (qid, docid, label): 1 for a positive, 0 for a pool passage that is not one.
Every set sits on the same pool and differs only in which passages are positive.
"""

from __future__ import annotations

import math
import random
import re

import polars as pl

from utilanno.annotate.parsing import topk_cut

KINDS = ("human", "relsel", "utilsel", "utilrank", "union")
LABELS = {"qid": pl.String, "docid": pl.String, "label": pl.Int8}


def subset(qids: list[str], fraction: float, seed: int) -> set[str]:
    """A seeded random fraction of the queries (the curriculum's human-labelled subset)."""
    ordered = sorted(qids)
    k = round(fraction * len(ordered))
    return set(random.Random(f"subset:{seed}").sample(ordered, k))


def parse_kind(labels: str) -> tuple[str, int | None]:
    """`utilrank@20` -> ("utilrank", 20); other names -> (name, None)."""
    m = re.fullmatch(r"utilrank@(\d+)", labels)
    return ("utilrank", int(m.group(1))) if m else (labels, None)


def llm_positives(kind: str, merged: pl.DataFrame, k: int | None = None) -> dict[str, list[str]]:
    """LLM positives per query from a merged annotation table (relsel / utilsel selected, utilrank top k%)."""
    if kind in ("relsel", "utilsel"):
        return dict(zip(merged["qid"], merged["selected"].to_list(), strict=True))
    if kind == "utilrank":
        return {
            qid: topk_cut(ranking, len(docids), k)
            for qid, ranking, docids in merged.select("qid", "ranking", "docids").iter_rows()
        }
    raise ValueError(f"no LLM positives for {kind!r}")


def build(
    pools: pl.DataFrame,
    kind: str,
    llm: dict[str, list[str]] | None = None,
    human_positive: str = "random",
    human_fraction: float = 0.0,
    seed: int = 42,
) -> pl.DataFrame:
    """One label set. `pools` has qid, positives (human) and pool (docids shown to the annotator).

    human_positive (LLM sets; PAPER-SPEC H.7): `random` leaves the labels as annotated, `exclusion` drops the
    human positive from the query's passages, `inclusion` makes it a positive. `union` adds the human
    positives of a seeded `human_fraction` of the queries to their LLM positives (one-stage Positive Union).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown label set {kind!r} (expected one of {KINDS})")
    if kind != "human" and llm is None:
        raise ValueError(f"{kind} labels need the LLM positives")
    with_human = subset(pools["qid"].to_list(), human_fraction, seed) if kind == "union" else set()
    rows = []
    for qid, human, pool in pools.select("qid", "positives", "pool").iter_rows():
        if kind == "human":
            positives = list(dict.fromkeys(human))
        else:
            positives = list(llm.get(qid, []))
            if qid in with_human:
                positives = list(dict.fromkeys(positives + human))
        passages = list(dict.fromkeys(pool + positives))
        if kind != "human" and human_positive == "exclusion":
            passages = [d for d in passages if d not in human]
            positives = [d for d in positives if d not in human]
        elif kind != "human" and human_positive == "inclusion":
            positives = list(dict.fromkeys(positives + human))
            passages = list(dict.fromkeys(passages + human))
        pos = set(positives)
        rows += [(qid, d, 1) for d in positives] + [(qid, d, 0) for d in passages if d not in pos]
    return pl.DataFrame(rows, schema=LABELS, orient="row")


def sample_group(
    positives: list[str],
    negatives: list[str],
    size: int,
    strategy: str,
    rng: random.Random,
    avg_positives: float | None = None,
) -> tuple[list[str], list[int]] | None:
    """A query's group of `size` passages and their labels, or None when the query has no positive.

    - human (also Rand1LH): one positive drawn at random, the rest negatives;
    - first (First1LH, App. C): the query's first positive in label-set order (a human set: the pool file's
      first positive, as DPR trains on positive_ctxs[0]; an LLM set: the LLM's first selected), the rest
      negatives;
    - pos_one: one positive, the rest drawn from the other positives and the negatives (any positive drawn
      keeps its label 1, as the released code's teacher scores do);
    - pos_all: every positive (at most size - 1, so that at least one negative remains), the rest negatives;
    - pos_avg: round(avg_positives) positives (at least one), the rest negatives.
    Negatives are drawn without replacement while there are enough, with replacement otherwise.
    """
    if not positives:
        return None
    if not negatives:
        raise ValueError("a group needs at least one negative")
    if strategy == "human":
        chosen = [rng.choice(positives)]
    elif strategy == "first":
        chosen = [positives[0]]
    elif strategy == "pos_one":
        first = rng.choice(positives)
        others = [d for d in positives if d != first] + negatives
        rest = _draw(others, size - 1, rng)
        docs = [first] + rest
        return docs, [int(d in set(positives)) for d in docs]
    elif strategy == "pos_all":
        chosen = positives if len(positives) < size else rng.sample(positives, size - 1)
    elif strategy == "pos_avg":
        if avg_positives is None:
            raise ValueError("pos_avg needs the average number of positives")
        n = min(len(positives), size - 1, max(1, math.floor(avg_positives + 0.5)))
        chosen = rng.sample(positives, n)
    else:
        raise ValueError(f"unknown sampling {strategy!r}")
    docs = list(chosen) + _draw(negatives, size - len(chosen), rng)
    return docs, [1] * len(chosen) + [0] * (size - len(chosen))


def _draw(pool: list[str], n: int, rng: random.Random) -> list[str]:
    return rng.sample(pool, n) if len(pool) >= n else [rng.choice(pool) for _ in range(n)]
