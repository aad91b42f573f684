"""The Hybrid Test's judge (PAPER-SPEC B.9): its prompts over a hybrid pool shard. A module of its own: it
reaches the annotation engines, which only the judge's LLM job installs (the pool, gold and restrict commands
run in the eval environment)."""

from __future__ import annotations

import json

import polars as pl


def judge_tasks(rows: pl.DataFrame, prompt, passage_words: int, where: str = "prompt") -> list:
    """The judge's windows: the UtilSel prompt with each query's reference answer (PAPER-SPEC B.9). The
    prompt must select passages and take an {answer}; anything else is not the paper's judge."""
    from utilanno.annotate import steps

    closing = json.dumps([m["content"] for m in prompt.closing])
    if prompt.output != "selection" or "{answer}" not in closing:
        raise ValueError(
            f"{where}: the judge needs a selection prompt with an {{answer}} placeholder (the UtilSel prompt)"
        )
    answers = dict(zip(rows["qid"], rows["answer"], strict=True))
    return steps.selection_tasks(rows, prompt, passage_words, answers)
