"""Training pool input -> train-pool.parquet (qid, query, positives, negatives): the Tevatron / RepLLaMA JSONL
with human positives and hard negatives (`tevatron`), or DPR's biencoder JSON array (`dpr-biencoder`:
positives from `positive_ctxs`, negatives from the BM25 `hard_negative_ctxs`, qids the questions' 0-based
positions; see `dpr`)."""

import logging

import polars as pl

from utilanno.data.convert import ANY_ID, Counts, duplicates, json_rows, read_blocks, require

from ..atomic import atomic_path
from ..errors import InputFormatError
from . import dpr
from .lineblocks import check_ids

log = logging.getLogger(__name__)

_PASSAGES = pl.List(pl.Struct({"docid": pl.String, "title": pl.String, "text": pl.String}))
TEVATRON_SCHEMA = {
    "query_id": pl.String,
    "query": pl.String,
    "positive_passages": _PASSAGES,
    "negative_passages": _PASSAGES,
}


def _parse_tevatron(block: pl.DataFrame, name: str) -> pl.DataFrame:
    rows = json_rows(block, name, TEVATRON_SCHEMA)
    require(rows, name, ["query_id", "query"])
    for col in ("positive_passages", "negative_passages"):
        missing = rows[col].is_null()
        if missing.any():
            raise InputFormatError(
                name, int(rows["line"][missing.arg_true()[0]]), f"missing list field {col!r}"
            )
        ids = rows.select("line", pl.col(col).list.eval(pl.element().struct.field("docid")).alias("ids"))
        flat = ids.explode("ids").drop_nulls("ids")
        n_null = ids["ids"].list.eval(pl.element().is_null()).list.any()
        if n_null.any():
            i = n_null.arg_true()[0]
            raise InputFormatError(name, int(ids["line"][i]), f"a passage in {col!r} has no string 'docid'")
        check_ids(flat.rename({"ids": "docid"}), "docid", name, ANY_ID, "an id without spaces")
    no_pos = rows["positive_passages"].list.len() == 0
    if no_pos.any():
        raise InputFormatError(name, int(rows["line"][no_pos.arg_true()[0]]), "query has no positive passage")
    check_ids(rows.rename({"query_id": "qid"}), "qid", name, ANY_ID, "an id without spaces")
    return rows.select(
        "line",
        pl.col("query_id").alias("qid"),
        "query",
        pl.col("positive_passages").list.eval(pl.element().struct.field("docid")).alias("positives"),
        pl.col("negative_passages").list.eval(pl.element().struct.field("docid")).alias("negatives"),
    )


def _read_tevatron(path, member, counts: Counts) -> tuple[pl.DataFrame | None, str]:
    rows, counts.lines_in, name = read_blocks(path, member, _parse_tevatron)
    return rows, name


def _read_dpr_biencoder(path, member, counts: Counts) -> tuple[pl.DataFrame | None, str]:
    read = dpr.read_biencoder(path, member)
    counts.lines_in = read.elements
    if read.random_negatives:
        counts.notes.append(f"{read.random_negatives} random negatives (negative_ctxs) not used")
    rows = read.rows.select("line", "qid", pl.col("text").alias("query"), "positives", "negatives")
    return (rows if rows.height else None), read.name


POOL_FORMATS = {"tevatron": _read_tevatron, "dpr-biencoder": _read_dpr_biencoder}


def convert_pool(path, member, fmt: str, out) -> Counts:
    """A training file (`tevatron` JSONL or `dpr-biencoder` JSON array) -> train-pool.parquet (qid, query,
    positives, negatives), docids only. A query without a positive is an error in both formats.

    A negative that is also a positive of the same query is removed from the negatives and counted.
    """
    if fmt not in POOL_FORMATS:
        raise ValueError(f"unknown pool format {fmt!r} (expected one of {sorted(POOL_FORMATS)})")
    counts = Counts()
    rows, name = POOL_FORMATS[fmt](path, member, counts)
    if rows is None:
        raise InputFormatError(name, None, "no training queries")
    h = pl.struct(pl.col("query"), pl.col("positives"), pl.col("negatives")).hash()
    drop = duplicates(rows.select("qid", "line", h=h), "qid", name)
    if drop.len():
        counts.notes.append(f"{drop.len()} identical duplicate queries removed")
        rows = rows.filter(~pl.col("line").is_in(drop.implode()))
    # Keep the file's order of negatives; drop repeats and negatives that are positives of the same query.
    positives, negatives, clashes, repeats, pos_repeats = [], [], 0, 0, 0
    for pos, neg in zip(rows["positives"].to_list(), rows["negatives"].to_list(), strict=True):
        unique_pos = list(dict.fromkeys(pos))
        unique = list(dict.fromkeys(neg))
        keep = [d for d in unique if d not in set(unique_pos)]
        pos_repeats += len(pos) - len(unique_pos)
        repeats += len(neg) - len(unique)
        clashes += len(unique) - len(keep)
        positives.append(unique_pos)
        negatives.append(keep)
    if pos_repeats:
        counts.notes.append(f"{pos_repeats} repeated positives removed")
    if repeats:
        counts.notes.append(f"{repeats} repeated negatives removed")
    if clashes:
        counts.notes.append(f"{clashes} negatives that were also positives of their query removed")
    dedup = rows.with_columns(
        pl.Series("positives", positives, dtype=pl.List(pl.String)),
        pl.Series("negatives", negatives, dtype=pl.List(pl.String)),
    )
    out_rows = dedup.select("qid", "query", "positives", "negatives")
    with atomic_path(out) as tmp:
        out_rows.write_parquet(tmp)
    counts.rows_out = out_rows.height
    n_pos, n_neg = out_rows["positives"].list.len().sum(), out_rows["negatives"].list.len().sum()
    counts.notes.append(f"{n_pos} positives, {n_neg} negatives")
    log.info("%s -> %s: %s", name, out, counts)
    return counts
