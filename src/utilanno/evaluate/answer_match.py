"""Top-k answer accuracy of a retriever on open-domain QA (DPR's retrieval evaluation; PAPER-SPEC H.9, EMNLP
Table 9: Top20/40/60/80/100 on NQ).

A query counts at k when one of its k best passages "has an answer", decided as facebookresearch/DPR does with
`match_type="string"` (`dpr/data/qa_validation.py`: `has_answer`, `_normalize`, `calculate_matches`;
`dense_retriever.py`: `validate`; `dpr/utils/tokenizers.py`: `SimpleTokenizer`, `Tokens.words`):

- passage text and every gold answer are put in Unicode NFD form;
- both are tokenised by DPR's SimpleTokenizer regex: a token is a maximal run of letters, digits and
  combining marks (`[\\p{L}\\p{N}\\p{M}]+`) or any other single character that is neither a separator nor a
  control/format character (`[^\\p{Z}\\p{C}]`, so punctuation is a token of its own and whitespace none);
- tokens are lower-cased (`str.lower`, uncased);
- an answer matches when its token sequence occurs as a contiguous run of the passage's tokens. So "art"
  does not match "party", and "New York" does not match "York, New".

Consequences of that code, kept here: NFD makes precomposed and decomposed accents equal, but it does not
remove them. The combining mark is a `\\p{M}` character and stays inside its word token, so "Beyoncé" matches
"Beyonce\\u0301" but not "Beyonce". An answer with no tokens (empty, or only whitespace) matches every
passage, including an empty one, as in DPR (the data stage keeps no empty answers). Only the passage body is
searched, not its title (DPR's `validate` matches `doc[0]`, the text).

Judged-query semantics as `metrics.evaluate` (trec_eval -c): every query in the answers table counts, also
one without any answer string (it scores 0, as DPR divides by the number of questions); a query missing from
the run scores 0; run queries without answers are ignored.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Mapping, Sequence

import polars as pl
import regex

from utilanno.evaluate.metrics import PER_QUERY_SCHEMA
from utilanno.evaluate.runfiles import rank

log = logging.getLogger(__name__)

DEFAULT_KS = (20, 40, 60, 80, 100)
# DPR SimpleTokenizer: ALPHA_NUM | NON_WS, with DPR's flags
_TOKEN = regex.compile(
    r"([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])", flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE
)
_PROGRESS_EVERY = 10_000


def parse_measure(name: str) -> int | None:
    """k of a top-k accuracy measure name (`Top20` -> 20), None for any other name."""
    m = regex.fullmatch(r"Top([1-9][0-9]*)", name)
    return int(m.group(1)) if m else None


def evaluate_file(run: pl.DataFrame, answers_file, corpus_file, measures: Sequence[str]) -> pl.DataFrame:
    """Per-query top-k accuracy of a run against an answers table (qid, answers) and the corpus (docid, text):
    only the passages within the deepest cut-off are read from the corpus."""
    from utilanno import tables

    ks = [parse_measure(m) for m in measures]
    if None in ks:
        raise ValueError(f"not top-k accuracy measures: {[m for m in measures if parse_measure(m) is None]}")
    golds = tables.read_parquet(answers_file, columns=["qid", "answers"])
    ranked = ranked_docids(run.filter(pl.col("qid").is_in(golds["qid"].implode())), max(ks))
    wanted = pl.Series("docid", sorted({d for docs in ranked.values() for d in docs}), dtype=pl.String)
    texts = (
        tables.scan_parquet(corpus_file)
        .select("docid", "text")
        .filter(pl.col("docid").is_in(wanted.implode()))
        .collect()
    )
    answers = {q: a or [] for q, a in golds.iter_rows()}
    return topk_accuracy(ranked, dict(texts.iter_rows()), answers, ks)


def measure_name(k: int) -> str:
    """`Top20` for k = 20: EMNLP Table 9's column name. Not an ir_measures name (those are `Name@k`), so it
    cannot be mistaken for a qrels-based measure such as `Success@20`."""
    return f"Top{k}"


def answer_tokens(text: str) -> list[str]:
    """DPR's tokens of a passage or an answer: NFD, SimpleTokenizer, lower case."""
    return [m.group().lower() for m in _TOKEN.finditer(unicodedata.normalize("NFD", text))]


def _contains(tokens: Sequence[str], sub: Sequence[str]) -> bool:
    n = len(sub)
    return any(tokens[i : i + n] == sub for i in range(len(tokens) - n + 1))


def has_answer(answers: Sequence[str], text: str) -> bool:
    """True when some answer's tokens occur contiguously in the passage's tokens (DPR, match type string)."""
    tokens = answer_tokens(text)
    return any(_contains(tokens, answer_tokens(a)) for a in answers)


def _check_ks(ks: Sequence[int]) -> list[int]:
    if isinstance(ks, int):
        raise TypeError(f"ks must be a list of cut-offs, got the number {ks}")
    ks = list(ks)
    if not ks:
        raise ValueError("no cut-offs k to compute")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"cut-off k must be a positive integer, got {k!r}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"cut-offs listed twice: {ks}")
    return ks


def ranked_docids(run: pl.DataFrame, depth: int | None = None) -> dict[str, list[str]]:
    """A run table (qid, docid, score) -> {qid: docids best first}, ranked by (-score, docid) as
    `runfiles.rank` (the order `metrics.evaluate` scores), at most `depth` per query."""
    ranked: dict[str, list[str]] = {}
    for qid, docid in rank(run, depth).select("qid", "docid").iter_rows():
        ranked.setdefault(qid, []).append(docid)
    return ranked


def first_answer_rank(
    docids: Sequence[str], passages: Mapping[str, str], answers: Sequence[str], depth: int
) -> int | None:
    """1-based rank of the first of the `depth` best passages that has an answer, None if none has.

    A docid missing from `passages` is an error (DPR logs it and counts no answer): a run and a corpus that do
    not belong together would otherwise just lower the score.
    """
    wanted = [answer_tokens(a) for a in answers]
    if not wanted:
        return None
    for position, docid in enumerate(list(docids)[:depth], start=1):
        try:
            text = passages[docid]
        except KeyError:
            raise KeyError(f"passage {docid!r} of the run is not in the passage texts") from None
        tokens = answer_tokens(text)
        if any(_contains(tokens, a) for a in wanted):
            return position
    return None


def topk_accuracy(
    ranked: Mapping[str, Sequence[str]],
    passages: Mapping[str, str],
    answers: Mapping[str, Sequence[str]],
    ks: Sequence[int] = DEFAULT_KS,
) -> pl.DataFrame:
    """Per-query top-k answer accuracy (qid, measure, value), value 1.0 or 0.0, shaped as `metrics.evaluate`.

    `ranked`: {qid: docids best first} (`ranked_docids` makes it from a run table); `passages`: {docid:
    passage text} for at least every docid within the deepest cut-off; `answers`: {qid: gold answer strings},
    which defines the queries scored. Measures are named by `measure_name(k)` and come out in the order of
    `ks`, then by qid. The mean of a measure over queries is DPR's top-k accuracy.
    """
    ks = _check_ks(ks)
    depth = max(ks)
    firsts: list[tuple[str, int | None]] = []
    hits = 0
    for qid, golds in answers.items():
        first = first_answer_rank(ranked.get(qid, ()), passages, golds, depth)
        firsts.append((qid, first))
        hits += first is not None
        if len(firsts) % _PROGRESS_EVERY == 0:
            log.info(
                "answer match: %d of %d queries, %d answered in the top %d",
                len(firsts),
                len(answers),
                hits,
                depth,
            )
    log.info("answer match: %d queries, %d answered in the top %d", len(firsts), hits, depth)
    rows = [
        (m, qid, measure_name(k), float(first is not None and first <= k))
        for m, k in enumerate(ks)
        for qid, first in firsts
    ]
    table = pl.DataFrame(rows, schema={"_m": pl.Int64, **PER_QUERY_SCHEMA}, orient="row")
    return table.sort("_m", "qid").select(list(PER_QUERY_SCHEMA))
