"""Gold answers for RAG -> answers-{split}.parquet (qid, answers): MS MARCO QnA (by query id), NQ-open (by
question text), HotpotQA (by _id), DPR's qa and biencoder files (by the position ids of `dpr`)."""

import json
import logging
import re
import string

import polars as pl

from utilanno import tables
from utilanno.data.convert import Counts, json_rows, require

from ..atomic import atomic_path
from ..errors import InputFormatError
from . import dpr
from .lineblocks import iter_line_blocks
from .rawfiles import display_name, open_raw

log = logging.getLogger(__name__)

NO_ANSWER = "No Answer Present."


def normalize_question(text: str) -> str:
    """Key for joining questions across releases: lower case, no punctuation, single spaces."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return re.sub(r"\s+", " ", text).strip()


def _load_json(path, member, name):
    with open_raw(path, member) as fh:
        raw = fh.read()
    try:
        return json.loads(raw)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise InputFormatError(name, line, f"not valid UTF-8 ({err.reason})") from None
    except json.JSONDecodeError as err:
        raise InputFormatError(name, err.lineno, f"invalid JSON: {err.msg} at column {err.colno}") from None


def _answers_msmarco_qna(path, member, name, queries: pl.DataFrame, counts: Counts) -> dict[str, list[str]]:
    data = _load_json(path, member, name)
    if not isinstance(data, dict) or "query_id" not in data or "answers" not in data:
        raise InputFormatError(
            name, None, "expected the QnA v2.1 layout: an object with 'query_id' and 'answers' columns"
        )
    out: dict[str, list[str]] = {}
    for row, qid in data["query_id"].items():
        answers = data["answers"].get(row)
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise InputFormatError(name, None, f"row {row}: 'answers' must be a list of strings")
        counts.lines_in += 1
        kept = [a.strip() for a in answers if a.strip() and a.strip() != NO_ANSWER]
        if kept:
            out[str(qid)] = kept
    return out


def _answers_nq_open(path, member, name, queries: pl.DataFrame, counts: Counts) -> dict[str, list[str]]:
    by_text: dict[str, list[str]] = {}
    with open_raw(path, member) as fh:
        for block in iter_line_blocks(fh, name):
            rows = json_rows(block, name, {"question": pl.String, "answer": pl.List(pl.String)})
            require(rows, name, ["question"])
            for line, q, answers in rows.select("line", "question", "answer").iter_rows():
                if not answers:
                    raise InputFormatError(name, int(line), "'answer' must be a non-empty list of strings")
                counts.lines_in += 1
                known = by_text.setdefault(normalize_question(q), [])
                known += [a for a in dict.fromkeys(answers) if a not in known]
    out = {}
    for qid, text in queries.select("qid", "text").iter_rows():
        hit = by_text.get(normalize_question(text))
        if hit:
            out[qid] = hit
    return out


def _answers_hotpotqa(path, member, name, queries: pl.DataFrame, counts: Counts) -> dict[str, list[str]]:
    data = _load_json(path, member, name)
    if not isinstance(data, list):
        raise InputFormatError(name, None, "expected a JSON list of HotpotQA examples")
    out = {}
    for i, ex in enumerate(data):
        if (
            not isinstance(ex, dict)
            or not isinstance(ex.get("_id"), str)
            or not isinstance(ex.get("answer"), str)
        ):
            raise InputFormatError(
                name, None, f"example {i}: expected an object with string '_id' and 'answer'"
            )
        counts.lines_in += 1
        if ex["answer"].strip():
            out[ex["_id"]] = [ex["answer"].strip()]
    return out


def _answers_dpr_qa(path, member, name, queries: pl.DataFrame, counts: Counts) -> dict[str, list[str]]:
    """DPR's qa file (nq-test.qa.csv), by the qids its queries table got from the same file (line - 1)."""
    rows, counts.lines_in, _ = dpr.read_qa(path, member)
    return dict(rows.select("qid", "answers").iter_rows())


def _answers_dpr_biencoder(path, member, name, queries: pl.DataFrame, counts: Counts) -> dict[str, list[str]]:
    """DPR's biencoder file, by the qids its queries table got from the same file (element index)."""
    read = dpr.read_biencoder(path, member)
    counts.lines_in = read.elements
    for line, answers in read.rows.select("line", "answers").iter_rows():
        if not answers:
            raise InputFormatError(name, int(line), "'answers' must be a non-empty list of strings")
    return dict(read.rows.select("qid", "answers").iter_rows())


ANSWER_FORMATS = {
    "msmarco-qna": _answers_msmarco_qna,
    "nq-open": _answers_nq_open,
    "hotpotqa": _answers_hotpotqa,
    "dpr-qa": _answers_dpr_qa,
    "dpr-biencoder": _answers_dpr_biencoder,
}


def convert_answers(path, member, fmt: str, queries_path, out) -> Counts:
    """Gold answers for the queries in `queries_path` -> answers-{split}.parquet (qid, answers).

    Queries without an answer in the source are counted and left out (RAG evaluates only answerable ones).
    """
    if fmt not in ANSWER_FORMATS:
        raise ValueError(f"unknown answers format {fmt!r} (expected one of {sorted(ANSWER_FORMATS)})")
    name = display_name(path, member)
    queries = tables.read_parquet(queries_path)
    counts = Counts()
    found = ANSWER_FORMATS[fmt](path, member, name, queries, counts)
    rows = (
        queries.select("qid")
        .filter(pl.col("qid").is_in(list(found)))
        .with_columns(pl.col("qid").replace_strict(found, return_dtype=pl.List(pl.String)).alias("answers"))
        if found
        else pl.DataFrame(schema={"qid": pl.String, "answers": pl.List(pl.String)})
    )
    with atomic_path(out) as tmp:
        rows.write_parquet(tmp)
    counts.rows_out = rows.height
    counts.notes.append(
        f"{queries.height - rows.height} of {queries.height} queries have no answer and are left out"
    )
    log.info("%s -> %s: %s", name, out, counts)
    return counts
