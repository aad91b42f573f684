"""Training queries (PAPER-SPEC C, E): query and passage texts from the annotation pool shards, and each
query's positives and negatives (or, for REPLUG, its candidates' utilities) from a label table."""

from __future__ import annotations

import math
from dataclasses import dataclass

from utilanno import tables


@dataclass
class Query:
    qid: str
    text: str
    positives: list[str]
    negatives: list[str]
    utility: dict[str, float] | None = None  # REPLUG soft labels; positives = [its top-utility passage]


def load_pool_texts(pool_files: list) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Query texts and passage (title, text) from the annotation pool shards, which carry every passage a
    label set can mention."""
    queries: dict[str, str] = {}
    passages: dict[str, tuple[str, str]] = {}
    for f in pool_files:
        for qid, query, ps in tables.read_parquet(f, columns=["qid", "query", "passages"]).iter_rows():
            queries[qid] = query
            for p in ps:
                passages[p["docid"]] = (p["title"], p["text"])
    return queries, passages


def load_queries(labels_file, queries: dict[str, str], soft: bool) -> tuple[list[Query], dict]:
    """Training queries from a label table: (qid, docid, label) or, for REPLUG, (qid, docid, utility).

    REPLUG: a utility is a log-likelihood, finite or -inf (probability 0); NaN or +inf is an error. A query
    needs a passage with a finite utility (else `no_positive`) and another candidate (else `no_negative`).
    Its positive (the contrastive target, first in its group) is its top-utility passage, the first in table
    order among equal ones; the other candidates are its negatives.
    """
    table = tables.read_parquet(labels_file)
    need = {"qid", "docid", "utility" if soft else "label"}
    if missing := need - set(table.columns):
        raise ValueError(f"{labels_file}: missing columns {sorted(missing)} (have {table.columns})")
    out: list[Query] = []
    counts = {"label_rows": table.height, "queries_in": 0, "no_positive": 0, "no_negative": 0, "no_text": 0}
    for (qid,), rows in table.group_by("qid", maintain_order=True):
        counts["queries_in"] += 1
        if qid not in queries:
            counts["no_text"] += 1
            continue
        docids = rows["docid"].to_list()
        if soft:
            values = [math.nan if u is None else float(u) for u in rows["utility"].to_list()]
            if any(math.isnan(u) or u == math.inf for u in values):
                raise ValueError(f"{labels_file}: query {qid!r} has a missing, NaN or +inf utility")
            util = dict(zip(docids, values, strict=True))
            if all(u == -math.inf for u in values):
                counts["no_positive"] += 1
            elif len(util) < 2:
                counts["no_negative"] += 1
            else:
                top = max(util, key=util.__getitem__)  # the first of equal maxima, in table order
                out.append(Query(qid, queries[qid], [top], [d for d in util if d != top], util))
            continue
        labels = rows["label"].to_list()
        pos = [d for d, y in zip(docids, labels, strict=True) if y > 0]
        neg = [d for d, y in zip(docids, labels, strict=True) if y <= 0]
        if not pos:
            counts["no_positive"] += 1
        elif not neg:
            counts["no_negative"] += 1
        else:
            out.append(Query(qid, queries[qid], pos, neg))
    counts["queries_used"] = len(out)
    if counts["no_text"]:
        raise ValueError(f"{labels_file}: {counts['no_text']} queries are not in the pool shards given")
    return out, counts
