"""Parsing LLM outputs into passage ids; never fails, whatever the model wrote.

Ids are the prompt's 1-based `[n]` identifiers mapped to 0-based positions. `[0]` and out-of-range ids are
dropped (the released notebook's `[0]` quirk marked the last passage), duplicates are removed (the first
occurrence wins for rankings), and reasoning (`<think>...</think>`) is stripped first so that ids inside it
are not counted. Each output is classified: `parsed`, `empty` or `unparseable`; the raw text is kept by the
caller beside the ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ID = re.compile(r"\[([0-9]{1,6})\]")  # ASCII digits only
_EXPLICIT_NONE = re.compile(r"\[\s*\]")


@dataclass
class Parsed:
    status: str  # parsed | empty | unparseable
    ids: list[int] = field(default_factory=list)  # 0-based


def strip_reasoning(text: str) -> str:
    """The answer part of an output: after the last `</think>`, up to any `<think>` that is never closed."""
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    return text.split("<think>", 1)[0]


def _ids(text: str, n: int) -> list[int]:
    out, seen = [], set()
    for match in _ID.finditer(text):
        k = int(match.group(1)) - 1
        if 0 <= k < n and k not in seen:
            seen.add(k)
            out.append(k)
    return out


def _classify(text: str, ids: list[int]) -> str:
    if ids:
        return "parsed"
    if not text.strip():
        return "empty"
    # An explicit empty selection ("My selection:[]") is a valid answer that selects nothing.
    return "parsed" if _EXPLICIT_NONE.search(text) and not _ID.search(text) else "unparseable"


def parse_selection(raw: str, n: int) -> Parsed:
    """Selected passages of a `My selection:[[i],[j],...]` answer, sorted ascending."""
    text = strip_reasoning(raw)
    ids = _ids(text, n)
    return Parsed(_classify(text, ids), sorted(ids))


def parse_ranking(raw: str, n: int) -> Parsed:
    """Passages in ranked order from `[i] > [j] > ...`; unmentioned passages are not appended."""
    text = strip_reasoning(raw)
    ids = _ids(text, n)
    return Parsed(_classify(text, ids), ids)


def parse_answer(raw: str) -> Parsed:
    """A free-text answer: the stripped text after any reasoning."""
    text = strip_reasoning(raw).strip()
    return Parsed("parsed" if text else "empty")


def answer_text(raw: str) -> str:
    return strip_reasoning(raw).strip()


def topk_cut(ranked: list, n_input: int, k_percent: int) -> list:
    """UtilRank positives: the top floor(k% x inputs) of the ranking, at least one (PAPER-SPEC B.4)."""
    if not ranked:
        return []
    count = max(1, (k_percent * n_input) // 100)
    return ranked[:count]


_ANSWER_CUE = re.compile(r"answer\s*:", re.IGNORECASE)


def rag_answer(raw: str) -> Parsed:
    """Status of a RAG answer; the text itself is `rag_answer_text`."""
    return Parsed("parsed" if rag_answer_text(raw) else "empty")


def rag_answer_text(raw: str) -> str:
    """The answer in a generator's output: after any reasoning, the text after the last `Answer:` cue when
    the model repeats the prompt's cue (the sister repo splits on "Answer:"), stripped of whitespace."""
    text = strip_reasoning(raw)
    cues = list(_ANSWER_CUE.finditer(text))
    if cues:
        text = text[cues[-1].end() :]
    return text.strip()
