"""Converters from the official raw formats to the normalized tables every later stage reads.

Normalized tables (one folder per dataset):
  corpus.parquet            docid, title, text
  queries-{split}.parquet   qid, text
  qrels-{split}.trec        `qid 0 docid rel`, sorted by (qid, docid)
  answers-{split}.parquet   qid, answers (list of str)
  train-pool.parquet        qid, query, positives (list of docid), negatives (list of docid)

Every converter streams its input, fails on the first malformed line with file, line and reason, and returns
counts in and out; rows are never dropped silently (identical duplicates are removed and counted, conflicting
duplicates are an error).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from polars.io.plugins import register_io_source

from ..atomic import atomic_path, atomic_text
from ..errors import InputFormatError
from . import dpr
from .lineblocks import check_ids, iter_line_blocks, iter_tsv_blocks, split_fields, split_whitespace
from .rawfiles import display_name, open_raw

log = logging.getLogger(__name__)

# Ids end up in whitespace-separated TREC files, so no id may contain whitespace.
ANY_ID = r"\S+"
DIGITS = r"\d+"


@dataclass
class Counts:
    """What a converter read and wrote; logged and returned to the caller."""

    lines_in: int = 0
    rows_out: int = 0
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        extra = "; " + "; ".join(self.notes) if self.notes else ""
        return f"{self.lines_in} lines in, {self.rows_out} rows out{extra}"


# ---------------------------------------------------------------------------------------------------------
# Parsers: one raw block (line, raw) -> typed rows, raising InputFormatError on the first bad line.


def _check_msmarco_ids(rows: pl.DataFrame, name: str, key: str, id_pattern: str) -> pl.DataFrame:
    check_ids(
        rows, key, name, id_pattern, "an id of digits" if id_pattern == DIGITS else "an id without spaces"
    )
    return rows


_JSON_TYPES = {pl.String: (str, "a string"), pl.List: (list, "a list"), pl.Struct: (dict, "an object")}


def json_rows(block: pl.DataFrame, name: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Decode JSON lines into `schema` columns, falling back to per-line parsing to name a bad line."""
    blank = block["raw"].str.strip_chars() == ""
    if blank.any():
        raise InputFormatError(
            name, int(block["line"][blank.arg_true()[0]]), "empty line, expected a JSON object"
        )
    try:
        decoded = block["raw"].str.json_decode(pl.Struct(schema))
    except Exception:  # polars names no line: find it ourselves
        for line, raw in zip(block["line"], block["raw"], strict=True):
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as err:
                raise InputFormatError(
                    name, int(line), f"invalid JSON: {err.msg} at column {err.colno}"
                ) from None
            if not isinstance(obj, dict):
                found = type(obj).__name__
                raise InputFormatError(name, int(line), f"expected a JSON object, found {found}") from None
            for field, dtype in schema.items():
                value, want = obj.get(field), _JSON_TYPES[dtype if isinstance(dtype, type) else type(dtype)]
                if value is not None and not isinstance(value, want[0]):
                    found = type(value).__name__
                    raise InputFormatError(
                        name, int(line), f"field {field!r} must be {want[1]}, found {found}"
                    ) from None
        raise
    return block.select("line", decoded.alias("j")).unnest("j")


def require(rows: pl.DataFrame, name: str, columns: list[str]) -> None:
    for col in columns:
        missing = rows[col].is_null()
        if missing.any():
            i = missing.arg_true()[0]
            raise InputFormatError(name, int(rows["line"][i]), f"missing or non-string field {col!r}")


def _parse_beir_corpus(block: pl.DataFrame, name: str) -> pl.DataFrame:
    rows = json_rows(block, name, {"_id": pl.String, "title": pl.String, "text": pl.String})
    require(rows, name, ["_id", "text"])
    rows = rows.rename({"_id": "docid"}).with_columns(pl.col("title").fill_null(""))
    check_ids(rows, "docid", name, ANY_ID, "an id without spaces")
    return rows


def _parse_beir_queries(block: pl.DataFrame, name: str) -> pl.DataFrame:
    rows = json_rows(block, name, {"_id": pl.String, "text": pl.String})
    require(rows, name, ["_id", "text"])
    rows = rows.rename({"_id": "qid"})
    check_ids(rows, "qid", name, ANY_ID, "an id without spaces")
    return rows


# ---------------------------------------------------------------------------------------------------------
# Duplicate handling shared by all converters.


def duplicates(keys: pl.DataFrame, key: str, name: str) -> pl.Series:
    """Given (key, line, h) rows, raise on a key seen with different content; return lines to drop.

    The error names the first line whose content differs from the key's first occurrence.
    """
    dup = keys.filter(pl.col(key).is_duplicated())
    if dup.is_empty():
        return pl.Series("line", [], dtype=pl.UInt64)
    first = dup.sort("line").group_by(key, maintain_order=True).first()
    later = dup.join(first, on=key, suffix="_first").filter(pl.col("line") != pl.col("line_first"))
    conflict = later.filter(pl.col("h") != pl.col("h_first")).sort("line")
    if not conflict.is_empty():
        row = conflict.row(0, named=True)
        raise InputFormatError(
            name,
            int(row["line"]),
            f"duplicate {key} {row[key]!r} with different content (first at line {row['line_first']})",
        )
    return later["line"]


# ---------------------------------------------------------------------------------------------------------
# Corpus: streamed to Parquet, bounded memory.

CORPUS_SCHEMA = {"docid": pl.String, "title": pl.String, "text": pl.String}
CORPUS_FORMATS = ["msmarco-tsv", "beir-corpus", "dpr-passages"]
QUERY_FORMATS = ["msmarco-tsv", "beir-queries", "dpr-qa", "dpr-biencoder"]


def convert_corpus(
    path: str | Path, member: str | None, fmt: str, out: str | Path, titles: str | None = None
) -> Counts:
    """Raw corpus (`msmarco-tsv`: pid<TAB>text, `beir-corpus`: JSONL, or `dpr-passages`: DPR's psgs_w100.tsv,
    id<TAB>text<TAB>title under that header, titles kept in the title column) -> corpus.parquet.

    `titles`: a member of the same source with pid<TAB>title lines (RocketQA's `marco/para.title.txt`, the
    titled MS MARCO passages that RetroMAE's and the authors' trainers read), joined by pid; titles are kept
    as written (RocketQA's "-" for none included), and a pid without one gets "".
    """
    name = display_name(path, member)
    counts, finish = Counts(), None
    if titles is not None:
        if fmt != "msmarco-tsv":
            raise ValueError(f"titles are joined to an msmarco-tsv corpus only, not {fmt!r}")
        finish = _join_titles(_read_titles(path, titles), display_name(path, titles), counts)
    if fmt == "msmarco-tsv":

        def parse(block: pl.DataFrame) -> pl.DataFrame:
            return _check_msmarco_ids(block, name, "docid", DIGITS).with_columns(title=pl.lit(""))

        reader = _tsv_reader(["docid", "text"])
    elif fmt == "beir-corpus":

        def parse(block: pl.DataFrame) -> pl.DataFrame:
            return _parse_beir_corpus(block, name)

        reader = iter_line_blocks
    elif fmt == "dpr-passages":

        def parse(block: pl.DataFrame) -> pl.DataFrame:
            return dpr.parse_passages(block, name)

        reader = _tsv_reader(["docid", "text", "title"])
    else:
        raise ValueError(f"unknown corpus format {fmt!r} (expected one of {CORPUS_FORMATS})")
    return _stream_to_parquet(path, member, name, parse, "docid", CORPUS_SCHEMA, out, reader, finish, counts)


def _read_titles(path, member) -> pl.DataFrame:
    name = display_name(path, member)
    blocks = []
    with open_raw(path, member) as fh:
        for block in iter_tsv_blocks(fh, name, ["docid", "title"]):
            blocks.append(_check_msmarco_ids(block, name, "docid", DIGITS))
    if not blocks:
        raise InputFormatError(name, None, "no rows: the file is empty")
    titles = pl.concat(blocks)
    drop = duplicates(titles.select("docid", "line", h=pl.col("title").hash(_SEED)), "docid", name)
    return titles.filter(~pl.col("line").is_in(drop.implode())).select("docid", "title")


def _join_titles(titles: pl.DataFrame, name: str, counts: Counts):
    """A `finish` step for `_stream_to_parquet`: the written corpus joined with its titles, in place."""

    def finish(tmp: Path) -> None:
        titled = tmp.with_name(tmp.name + ".titled")  # the same temporary prefix: clear_stale removes it
        corpus = pl.scan_parquet(tmp).drop("title")
        joined = corpus.join(titles.lazy(), on="docid", how="left", maintain_order="left")
        joined.with_columns(pl.col("title").fill_null("")).select(list(CORPUS_SCHEMA)).sink_parquet(
            titled, compression="lz4"
        )
        n_titled = titles.join(corpus.select("docid").collect(), on="docid", how="semi").height
        os.replace(titled, tmp)
        counts.notes.append(
            f"{n_titled} passages titled from {name}, {titles.height - n_titled} titles of other pids ignored"
        )

    return finish


def _tsv_reader(names: list[str]):
    return lambda fh, name: iter_tsv_blocks(fh, name, names)


def _stream_to_parquet(
    path, member, name, parse, key, schema, out, reader=iter_line_blocks, finish=None, counts=None
) -> Counts:
    """Parse blocks straight into a Parquet file (lz4: several times faster to write than zstd, and the table
    is an intermediate). Duplicate keys are found from 64-bit key hashes kept per row; only when hashes
    repeat are the candidates' contents read back and compared. `finish(tmp)` rewrites the file in place
    before it is published."""
    counts = counts if counts is not None else Counts()
    seen: list[pl.DataFrame] = []  # per row: key hash and line
    failure: list[BaseException] = []

    def blocks(with_columns=None, predicate=None, n_rows=None, batch_size=None) -> Iterator[pl.DataFrame]:
        try:
            with open_raw(path, member) as fh:
                for block in reader(fh, name):
                    rows = parse(block)
                    counts.lines_in += block.height
                    seen.append(rows.select(pl.col(key).hash(_SEED).alias("k"), "line"))
                    yield rows.select(list(schema))
        except BaseException as err:  # polars wraps exceptions from sources; keep ours intact
            failure.append(err)
            raise

    with atomic_path(out) as tmp:
        try:
            register_io_source(blocks, schema=schema).sink_parquet(tmp, compression="lz4")
        except Exception:
            if failure:
                raise failure[0] from None
            raise
        rows = pl.concat(seen) if seen else pl.DataFrame(schema={"k": pl.UInt64, "line": pl.UInt64})
        if rows.is_empty():
            raise InputFormatError(name, None, "no rows: the file is empty")
        counts.rows_out = rows.height
        if rows["k"].n_unique() < rows.height:
            content = [c for c in schema if c != key]
            repeated = rows.filter(pl.col("k").is_duplicated())
            candidates = (
                pl.scan_parquet(tmp)
                .with_row_index("idx")
                .filter(pl.col(key).hash(_SEED).is_in(repeated["k"].unique().implode()))
                .select(key, "idx", h=pl.struct(content).hash(_SEED))
                .collect()
            )
            line_of = rows["line"]
            keys = candidates.with_columns(line=line_of.gather(candidates["idx"])).select(key, "line", "h")
            drop = duplicates(keys, key, name)
            if drop.len():
                counts.rows_out -= drop.len()
                counts.notes.append(f"{drop.len()} identical duplicate {key}s removed (first kept)")
                _drop_rows(tmp, rows, drop)
        if finish is not None:
            finish(tmp)
    log.info("%s -> %s: %s", name, out, counts)
    return counts


_SEED = 20251129  # any fixed seed: hashes are compared within one run only


def _drop_rows(parquet: Path, keys: pl.DataFrame, drop_lines: pl.Series) -> None:
    """Rewrite `parquet` without the rows that came from `drop_lines` (rows are in line order)."""
    drop_idx = keys.with_row_index("idx").filter(pl.col("line").is_in(drop_lines.implode()))["idx"]
    rewritten = parquet.with_name(parquet.name + ".dedup")
    pl.scan_parquet(parquet).with_row_index("idx").filter(~pl.col("idx").is_in(drop_idx.implode())).drop(
        "idx"
    ).sink_parquet(rewritten, compression="lz4")
    rewritten.replace(parquet)


# ---------------------------------------------------------------------------------------------------------
# Small tables: queries, qrels, answers, pools (at most a few hundred MB; read whole).


def read_blocks(
    path, member, parse: Callable[[pl.DataFrame, str], pl.DataFrame], reader=iter_line_blocks
) -> tuple[pl.DataFrame, int, str]:
    name = display_name(path, member)
    parts, n = [], 0
    with open_raw(path, member) as fh:
        for block in reader(fh, name):
            n += block.height
            parts.append(parse(block, name))
    return (pl.concat(parts) if parts else None), n, name


def convert_queries(path, member, fmt: str, out, restrict_qrels: str | Path | None = None) -> Counts:
    """Raw queries (`msmarco-tsv`, `beir-queries`, or DPR's `dpr-qa` / `dpr-biencoder` question files, whose
    ids are the questions' 0-based positions: see `dpr`) -> queries-{split}.parquet (qid, text).

    With `restrict_qrels`, keep only queries judged in that qrels file (BEIR's queries.jsonl holds every
    split); the count of queries left out is logged, and a judged query missing from the file is an error.
    """
    if fmt == "dpr-qa":
        rows, n, name = dpr.read_qa(path, member)
    elif fmt == "dpr-biencoder":
        read = dpr.read_biencoder(path, member)
        rows, n, name = read.rows, read.elements, read.name
    else:
        if fmt == "msmarco-tsv":
            parse = lambda b, n: _check_msmarco_ids(b, n, "qid", ANY_ID)  # noqa: E731 (TREC DL ids are digits too)
            reader = _tsv_reader(["qid", "text"])
        elif fmt == "beir-queries":
            parse, reader = _parse_beir_queries, iter_line_blocks
        else:
            raise ValueError(f"unknown queries format {fmt!r} (expected one of {QUERY_FORMATS})")
        rows, n, name = read_blocks(path, member, parse, reader)
    if rows is not None and rows.is_empty():  # the DPR readers return an empty table, not None
        rows = None
    counts = Counts(lines_in=n)
    if rows is None:
        raise InputFormatError(name, None, "no queries")
    drop = duplicates(rows.select("qid", "line", h=pl.col("text").hash()), "qid", name)
    if drop.len():
        counts.notes.append(f"{drop.len()} identical duplicate qids removed (first kept)")
        rows = rows.filter(~pl.col("line").is_in(drop.implode()))
    if restrict_qrels is not None:
        judged = read_qrels(restrict_qrels)["qid"].unique()
        missing = judged.filter(~judged.is_in(rows["qid"].implode()))
        if missing.len():
            raise InputFormatError(
                name,
                None,
                f"{missing.len()} queries judged in {restrict_qrels} are missing, e.g. {missing.sort()[0]!r}",
            )
        before = rows.height
        rows = rows.filter(pl.col("qid").is_in(judged.implode()))
        counts.notes.append(
            f"{before - rows.height} queries without judgments in {Path(restrict_qrels).name} left out"
        )
    rows = rows.select("qid", "text")
    with atomic_path(out) as tmp:
        rows.write_parquet(tmp)
    counts.rows_out = rows.height
    log.info("%s -> %s: %s", name, out, counts)
    return counts


def _parse_trec_qrels(block: pl.DataFrame, name: str) -> pl.DataFrame:
    rows = split_whitespace(block, name, ["qid", "iter", "docid", "rel"])
    return _typed_qrels(rows, name)


def _parse_beir_qrels(block: pl.DataFrame, name: str) -> pl.DataFrame:
    if block["line"][0] == 1:
        header = block["raw"][0].strip().split("\t")
        if header != ["query-id", "corpus-id", "score"]:
            raise InputFormatError(
                name, 1, f"expected the header 'query-id<TAB>corpus-id<TAB>score', found {block['raw'][0]!r}"
            )
        block = block.slice(1)
    rows = split_fields(block, name, ["qid", "docid", "rel"])
    return _typed_qrels(rows, name)


def _typed_qrels(rows: pl.DataFrame, name: str) -> pl.DataFrame:
    check_ids(rows, "qid", name, ANY_ID, "an id without spaces")
    check_ids(rows, "docid", name, ANY_ID, "an id without spaces")
    check_ids(rows, "rel", name, r"-?\d+", "an integer relevance grade")
    return rows.select("line", "qid", "docid", pl.col("rel").cast(pl.Int32))


def convert_qrels(path, member, fmt: str, out) -> Counts:
    """Raw qrels (`trec-qrels`: qid iter docid rel, whitespace; `beir-qrels`: TSV, header) -> TREC qrels."""
    parsers = {"trec-qrels": _parse_trec_qrels, "beir-qrels": _parse_beir_qrels}
    if fmt not in parsers:
        raise ValueError(f"unknown qrels format {fmt!r} (expected one of {sorted(parsers)})")
    rows, n, name = read_blocks(path, member, parsers[fmt])
    counts = Counts(lines_in=n)
    if rows is None or rows.is_empty():
        raise InputFormatError(name, None, "no judgments")
    keyed = rows.with_columns(pair=pl.concat_str("qid", pl.lit(" "), "docid"), h=pl.col("rel").hash())
    drop = duplicates(keyed.select("pair", "line", "h"), "pair", name)
    if drop.len():
        counts.notes.append(f"{drop.len()} identical duplicate judgments removed")
        rows = rows.filter(~pl.col("line").is_in(drop.implode()))
    rows = rows.sort("qid", "docid")
    write_qrels(rows, out)
    counts.rows_out = rows.height
    counts.notes.append(f"{rows['qid'].n_unique()} queries, {(rows['rel'] > 0).sum()} positive judgments")
    log.info("%s -> %s: %s", name, out, counts)
    return counts


def write_qrels(rows: pl.DataFrame, out) -> None:
    with atomic_text(out) as fh:
        for qid, docid, rel in rows.select("qid", "docid", "rel").iter_rows():
            fh.write(f"{qid} 0 {docid} {rel}\n")


def read_qrels(path: str | Path) -> pl.DataFrame:
    """Read a normalized (or any TREC) qrels file: qid, docid, rel."""
    rows, _, _ = read_blocks(path, None, _parse_trec_qrels)
    if rows is None:
        return pl.DataFrame(schema={"qid": pl.String, "docid": pl.String, "rel": pl.Int32})
    return rows.select("qid", "docid", "rel")
