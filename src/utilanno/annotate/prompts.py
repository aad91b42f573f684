"""Prompt files (`prompts/*.yaml`) -> chat message lists.

A prompt file has `opening` messages, optional `passage` turns repeated per passage ({i}, {passage}), and
`closing` messages; placeholders are {num}, {query}, {answer}, {passages}. Values are substituted once, so
braces inside passages or queries are kept as they are.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from utilanno.errors import InputFormatError

OUTPUTS = ("selection", "ranking", "answer")


@dataclass(frozen=True)
class Prompt:
    path: str
    output: str
    opening: tuple[dict, ...]
    passage: tuple[dict, ...]
    closing: tuple[dict, ...]
    truncate: bool = True

    def render(
        self, query: str, passages: list[str], answer: str = "", passage_words: int | None = None
    ) -> list[dict]:
        """The message list for one query over `passages` (each `title text`)."""
        if self.truncate and passage_words:
            passages = [truncate_words(p, passage_words) for p in passages]
        fields = {"num": len(passages), "query": query, "answer": answer, "passages": "\n".join(passages)}
        messages = [_fill(m, fields) for m in self.opening]
        for i, text in enumerate(passages, start=1):
            messages += [_fill(m, {**fields, "i": i, "passage": text}) for m in self.passage]
        messages += [_fill(m, fields) for m in self.closing]
        return messages


def _fill(message: dict, fields: dict) -> dict:
    return {"role": message["role"], "content": message["content"].format_map(fields)}


def truncate_words(text: str, n: int) -> str:
    """First `n` whitespace tokens (the released code's passage cut for selection and ranking prompts)."""
    words = text.split()
    return text if len(words) <= n else " ".join(words[:n])


def format_passage(title: str, text: str) -> str:
    """`title + " " + text`, stripped, as the released code shows a passage to the LLM."""
    return f"{title or ''} {text}".strip()


def load(path: str | Path) -> Prompt:
    """Read and check a prompt file; errors name the file and the offending key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        raise InputFormatError(
            str(path), None if line is None else line + 1, f"not valid YAML: {err}"
        ) from None
    if not isinstance(data, dict):
        raise InputFormatError(str(path), None, "expected a mapping with opening/passage/closing messages")
    unknown = set(data) - {"output", "opening", "passage", "closing", "truncate"}
    if unknown:
        raise InputFormatError(str(path), None, f"unknown keys {sorted(unknown)}")
    if not isinstance(data.get("truncate", True), bool):
        raise InputFormatError(str(path), None, f"'truncate' must be true or false, got {data['truncate']!r}")
    if data.get("output") not in OUTPUTS:
        raise InputFormatError(
            str(path), None, f"'output' must be one of {OUTPUTS}, got {data.get('output')!r}"
        )
    parts = {}
    for key in ("opening", "passage", "closing"):
        msgs = data.get(key) or []
        if not isinstance(msgs, list):
            raise InputFormatError(str(path), None, f"'{key}' must be a list of messages")
        for k, m in enumerate(msgs):
            if (
                not isinstance(m, dict)
                or m.get("role") not in ("system", "user", "assistant")
                or not isinstance(m.get("content"), str)
            ):
                raise InputFormatError(
                    str(path), None, f"'{key}[{k}]' must be {{role: system|user|assistant, content: str}}"
                )
        parts[key] = tuple(msgs)
    if not parts["opening"] and not parts["closing"]:
        raise InputFormatError(str(path), None, "no messages")
    prompt = Prompt(
        str(path),
        data["output"],
        parts["opening"],
        parts["passage"],
        parts["closing"],
        bool(data.get("truncate", True)),
    )
    try:  # a placeholder typo fails here, not after hours of GPU time
        prompt.render("q", ["p1", "p2"], "a")
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as err:
        raise InputFormatError(
            str(path), None, f"bad placeholder {err}; known: num, query, answer, passages, i, passage"
        ) from None
    return prompt


def messages_hash(messages: list[dict]) -> str:
    """A short stable id of the exact prompt sent (kept beside every output)."""
    blob = json.dumps(messages, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
