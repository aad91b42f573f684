"""DPR's raw files (Karpukhin et al. 2020, facebookresearch/DPR), the NQ data of the paper's App. C:

  dpr-passages   psgs_w100.tsv(.gz): header `id<TAB>text<TAB>title`, then one passage a line (21,015,324).
  dpr-qa         nq-test.qa.csv: `question<TAB>answers`, answers a Python list literal, no header, no ids.
  dpr-biencoder  biencoder-nq-train.json(.gz): ONE JSON array (several GB) of objects with `question`,
                 `answers`, `positive_ctxs`, `hard_negative_ctxs` and `negative_ctxs`, each context an object
                 with `passage_id` (an id of psgs_w100), `title` and `text`.

DPR reads both TSV files with Python's `csv.reader(delimiter="\\t")`, so a field that starts with a double
quote is a quoted CSV field (`"Aaron Aaron ( or ; ""Ahärôn"") is ..."`): we unquote such fields the same
way and refuse, naming the line, a field that opens a quote it does not close as CSV does.

Ids. Neither question file carries ids, so a question's id is its 0-based position in the file: the line
number minus one in a qa file (the first question is "0"), the element index in a biencoder array. These are
the ids Pyserini gives nq-test.qa.csv (castorini/pyserini `scripts/dpr/convert_qas_csv_to_topic_json.py`)
and ir_datasets gives the biencoder files (allenai/ir_datasets `ir_datasets/datasets/dpr_w100.py`). They are
stable as long as the file is: the same file always gives the same ids, and the queries, answers and pool
tables of one file agree.

This module depends on nothing but the readers and errors, so that `convert`, `train_pool` and
`gold_answers` can all use it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import polars as pl

from utilanno.errors import InputFormatError

from .jsonarray import iter_json_array
from .lineblocks import check_ids, iter_tsv_blocks
from .rawfiles import display_name, open_raw

PASSAGE_HEADER = ["id", "text", "title"]
_ID = r"\S+"  # as convert.ANY_ID: ids end up in whitespace-separated TREC files
_ID_RE = re.compile(_ID)


# ---------------------------------------------------------------------------------------------------------
# TSV fields with CSV quoting


def unquote(rows: pl.DataFrame, name: str, columns: list[str]) -> pl.DataFrame:
    """CSV unquoting as `csv.reader` does it for well-formed fields: a field that starts with `"` must end
    with `"` and double every `"` inside; it loses the outer quotes and each `""` becomes `"`. Any other
    field is taken as written (a quote inside an unquoted field is literal)."""
    for col in columns:
        c = pl.col(col)
        quoted = c.str.starts_with('"')
        inner = c.str.slice(1, (c.str.len_chars() - 2).clip(lower_bound=0))
        closed = (c.str.len_chars() >= 2) & c.str.ends_with('"')
        lone_quote = inner.str.replace_all('""', "", literal=True).str.contains('"', literal=True)
        bad = rows.select(quoted & ~(closed & ~lone_quote))[col]
        if bad.any():
            i = bad.arg_true()[0]
            shown = rows[col][i] if len(rows[col][i]) <= 60 else rows[col][i][:57] + "..."
            raise InputFormatError(
                name,
                int(rows["line"][i]),
                f"field {col!r} opens a CSV quote it does not close (a quoted field ends with '\"' and"
                f" doubles every '\"' inside): {shown!r}",
            )
        rows = rows.with_columns(
            pl.when(quoted).then(inner.str.replace_all('""', '"', literal=True)).otherwise(c).alias(col)
        )
    return rows


def _refuse_empty(rows: pl.DataFrame, name: str, col: str, what: str) -> None:
    empty = rows[col].str.strip_chars() == ""
    if empty.any():
        raise InputFormatError(name, int(rows["line"][empty.arg_true()[0]]), f"empty {what}")


# ---------------------------------------------------------------------------------------------------------
# dpr-passages: psgs_w100.tsv


def parse_passages(block: pl.DataFrame, name: str) -> pl.DataFrame:
    """One block of `iter_tsv_blocks(..., ["docid", "text", "title"])` -> (line, docid, title, text).

    The block holding line 1 must start with the header `id<TAB>text<TAB>title`, which is dropped."""
    if block.height and block["line"][0] == 1:
        header = [block[c][0] for c in ("docid", "text", "title")]
        if header != PASSAGE_HEADER:
            found = "\t".join(header)
            raise InputFormatError(name, 1, f"expected the header 'id<TAB>text<TAB>title', found {found!r}")
        block = block.slice(1)
    check_ids(block, "docid", name, _ID, "an id without spaces")
    rows = unquote(block, name, ["text", "title"])
    _refuse_empty(rows, name, "text", "passage text")
    return rows.select("line", "docid", "title", "text")


# ---------------------------------------------------------------------------------------------------------
# dpr-qa: nq-test.qa.csv


def read_qa(path, member) -> tuple[pl.DataFrame, int, str]:
    """A qa file -> (rows: line, qid, text, answers; lines read; display name). qid = line - 1.

    Every line is one question: an empty question, a line without exactly two tab-separated fields, or an
    answers field that is not a Python list literal of strings (at least one) is an error naming the line."""
    name = display_name(path, member)
    parts, n = [], 0
    with open_raw(path, member) as fh:
        for block in iter_tsv_blocks(fh, name, ["text", "answers"]):
            n += block.height
            rows = unquote(block, name, ["text", "answers"])
            _refuse_empty(rows, name, "text", "question")
            answers = [
                _answer_list(raw, name, int(line)) for line, raw in rows.select("line", "answers").iter_rows()
            ]
            parts.append(
                rows.select(
                    "line",
                    (pl.col("line") - 1).cast(pl.String).alias("qid"),
                    "text",
                    pl.Series("answers", answers, dtype=pl.List(pl.String)),
                )
            )
    rows = pl.concat(parts) if parts else _empty_qa()
    return rows, n, name


def _answer_list(raw: str, name: str, line: int) -> list[str]:
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        shown = raw if len(raw) <= 60 else raw[:57] + "..."
        raise InputFormatError(
            name,
            line,
            f"answers must be a non-empty Python list of strings, e.g. ['a', 'b'], found {shown!r}",
        )
    return value


def _empty_qa() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"line": pl.UInt64, "qid": pl.String, "text": pl.String, "answers": pl.List(pl.String)}
    )


# ---------------------------------------------------------------------------------------------------------
# dpr-biencoder: biencoder-nq-train.json


@dataclass
class Biencoder:
    """A biencoder file read once: one row per question (line, qid, text, answers, positives, negatives).

    `answers` is null where the element has no `answers` field; `random_negatives` counts the passages of
    `negative_ctxs`, which no table uses (DPR samples them as random negatives; the pool's negatives are the
    BM25 `hard_negative_ctxs`)."""

    rows: pl.DataFrame
    elements: int
    name: str
    random_negatives: int


def read_biencoder(path, member) -> Biencoder:
    """Stream the array element by element (never the whole file in memory) and check each element:
    an object with a non-empty string `question`, lists `positive_ctxs` (at least one) and
    `hard_negative_ctxs` of objects with a `passage_id` (string or integer, no spaces), and, where present,
    `answers` as a list of strings. The first element that is not is an error naming the line it starts on."""
    name = display_name(path, member)
    cols: dict[str, list] = {k: [] for k in ("line", "qid", "text", "answers", "positives", "negatives")}
    random_negatives = 0
    with open_raw(path, member) as fh:
        for index, (line, element) in enumerate(iter_json_array(fh, name)):
            if not isinstance(element, dict):
                raise InputFormatError(name, line, f"expected a JSON object, found {type(element).__name__}")
            question = element.get("question")
            if not isinstance(question, str):
                raise InputFormatError(name, line, "missing or non-string field 'question'")
            if not question.strip():
                raise InputFormatError(name, line, "empty question")
            answers = element.get("answers")
            if answers is not None and (
                not isinstance(answers, list) or not all(isinstance(a, str) for a in answers)
            ):
                raise InputFormatError(name, line, "field 'answers' must be a list of strings")
            positives = _passage_ids(element, "positive_ctxs", name, line)
            if not positives:
                raise InputFormatError(
                    name, line, "question has no positive passage ('positive_ctxs' is empty)"
                )
            negatives = _passage_ids(element, "hard_negative_ctxs", name, line)
            random_ctxs = element.get("negative_ctxs")
            random_negatives += len(random_ctxs) if isinstance(random_ctxs, list) else 0
            for key, value in zip(
                cols, (line, str(index), question, answers, positives, negatives), strict=True
            ):
                cols[key].append(value)
    rows = pl.DataFrame(
        cols,
        schema={
            "line": pl.UInt64,
            "qid": pl.String,
            "text": pl.String,
            "answers": pl.List(pl.String),
            "positives": pl.List(pl.String),
            "negatives": pl.List(pl.String),
        },
    )
    return Biencoder(rows, len(cols["line"]), name, random_negatives)


def _passage_ids(element: dict, key: str, name: str, line: int) -> list[str]:
    ctxs = element.get(key)
    if not isinstance(ctxs, list):
        raise InputFormatError(name, line, f"missing list field {key!r}")
    ids = []
    for ctx in ctxs:
        pid = ctx.get("passage_id") if isinstance(ctx, dict) else None
        if isinstance(pid, int) and not isinstance(pid, bool):
            pid = str(pid)
        if not isinstance(pid, str):
            raise InputFormatError(name, line, f"a passage in {key!r} has no string or integer 'passage_id'")
        if not _ID_RE.fullmatch(pid):
            raise InputFormatError(name, line, f"bad docid {pid!r} in {key!r}: expected an id without spaces")
        ids.append(pid)
    return ids
