"""REPLUG utility labels (PAPER-SPEC B.5, C.3): f_u(q, d, a) = log P_LLM(a | q, d), the log-likelihood of a
query's gold answer given the query and one pool passage, for every passage of the pool (pointwise).

Two stages, as for the other annotation steps:

* `score_shard`: one pool shard -> a JSONL shard, one record per query (the answer scored, and per passage in
  pool order: docid, prompt hash, summed answer log-probability, answer token count). It runs through
  `annotate.run_shard`, so it is resumable after any kill in the same way and publishes atomically. Queries
  without a gold answer are not scored: their record says `status: no_answer`, and they are counted.
* `merge`: JSONL shards -> one Parquet table (qid, docid, logprob, n_tokens, utility, prompt_hash), where
  `utility` is the summed log-probability (`length: sum`) or its mean per answer token (`length: mean`).
  The paper does not say which (NOT FOUND), so it is a setting; changing it needs no LLM rerun.

The scores come from `Engine.answer_logprobs` (transformers or vLLM; see engines.py for the tokenization and
for why only the answer's own tokens are scored).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from utilanno import tables
from utilanno.annotate import engines
from utilanno.annotate.engines import Engine, Generation, Sampling
from utilanno.annotate.model_identity import engine_id as model_engine_id
from utilanno.annotate.prompts import Prompt, format_passage, messages_hash
from utilanno.annotate.prompts import load as load_prompt
from utilanno.annotate.steps import Task, read_records, run_shard
from utilanno.data.gold_answers import NO_ANSWER
from utilanno.errors import InputFormatError

log = logging.getLogger(__name__)

STEP = "replug"
LENGTHS = ("sum", "mean")
ANSWER_CHOICES = ("first", "shortest", "longest")

TABLE_SCHEMA = {
    "qid": pl.String,
    "docid": pl.String,
    "logprob": pl.Float64,
    "n_tokens": pl.Int64,
    "utility": pl.Float64,
    "prompt_hash": pl.String,
}


def pick_answer(answers: list[str] | None, choice: str = "first") -> str | None:
    """The gold answer to score among a query's answers (stripped; empty ones and MS MARCO's "No Answer
    Present." ignored), or None when there is none. Ties of `shortest`/`longest` go to the earlier answer."""
    if choice not in ANSWER_CHOICES:
        raise ValueError(f"unknown answer choice {choice!r} (expected one of {ANSWER_CHOICES})")
    kept = [a.strip() for a in answers or [] if isinstance(a, str) and a.strip() and a.strip() != NO_ANSWER]
    if not kept:
        return None
    if choice == "shortest":
        return min(kept, key=len)
    if choice == "longest":
        return max(kept, key=len)
    return kept[0]


def read_answers(path: str | Path) -> dict[str, list[str]]:
    """An answers table (qid, answers: list of strings), as gold_answers.convert_answers writes it."""
    table = tables.read_parquet(path)
    missing = [c for c in ("qid", "answers") if c not in table.columns]
    if missing:
        raise InputFormatError(str(path), None, f"missing columns {missing}; expected qid and answers")
    if table.schema["answers"] != pl.List(pl.String):
        raise InputFormatError(
            str(path), None, f"'answers' must be a list of strings, got {table.schema['answers']}"
        )
    qids = table["qid"].cast(pl.String)
    if qids.is_duplicated().any():
        raise InputFormatError(str(path), None, f"query {qids.filter(qids.is_duplicated())[0]!r} repeats")
    return dict(zip(qids.to_list(), table["answers"].to_list(), strict=True))


def check_prompt(prompt: Prompt) -> None:
    """A REPLUG prompt asks for an answer and must not show it (it is scored after the prompt)."""
    if prompt.output != "answer":
        raise InputFormatError(
            prompt.path, None, f"output is {prompt.output!r}, REPLUG scoring needs 'answer'"
        )
    if prompt.render("q", ["p"], answer="\x00gold\x00") != prompt.render("q", ["p"]):
        raise InputFormatError(
            prompt.path, None, "the prompt shows {answer}: the gold answer is what is scored after the prompt"
        )


def conversation(prompt: Prompt, query: str, passage: str, answer: str, passage_words: int | None) -> list:
    """The messages for one (query, passage) pair, followed by the gold answer as the assistant's reply."""
    return [
        *prompt.render(query, [passage], passage_words=passage_words),
        {"role": "assistant", "content": answer},
    ]


def replug_tasks(
    pools: pl.DataFrame,
    answers: dict[str, list[str]],
    prompt: Prompt,
    passage_words: int | None = 300,
    answer: str = "first",
) -> tuple[list[Task], int]:
    """One task per pool query, one conversation per pool passage; and how many queries have no answer."""
    check_prompt(prompt)
    tasks, no_answer = [], 0
    for row in pools.iter_rows(named=True):
        gold = pick_answer(answers.get(row["qid"]), answer)
        if gold is None:
            no_answer += 1
            tasks.append(Task(row["qid"], [], lambda gens: _record("no_answer", None, [], [], [])))
            continue
        docs = [p["docid"] for p in row["passages"]]
        convs = [
            conversation(prompt, row["query"], format_passage(p["title"], p["text"]), gold, passage_words)
            for p in row["passages"]
        ]

        def finish(gens, gold=gold, docs=docs, convs=convs):
            return _record("scored", gold, docs, [messages_hash(c[:-1]) for c in convs], gens)

        tasks.append(Task(row["qid"], convs, finish))
    return tasks, no_answer


def _record(status, answer, docids, hashes, gens) -> dict:
    return {
        "status": status,
        "answer": answer,
        "docids": docids,
        "prompt_hashes": hashes,  # of the messages before the answer, per passage
        "logprobs": [g.logprob for g in gens],
        "n_tokens": [g.n_tokens for g in gens],
    }


@dataclass
class Scored(Generation):
    logprob: float = 0.0
    n_tokens: int = 0


class AnswerScorer(Engine):
    """`run_shard`'s engine for REPLUG: each conversation ends with the assistant answer to score; `chat`
    returns its log-probability (nothing is generated). In the records, `prompt_tokens` counts the prompts
    read and `completion_tokens` the answer tokens scored."""

    name = "replug"

    def __init__(self, engine: Engine):
        self.engine = engine

    def chat(self, conversations, sampling=None, guides=None):
        if any(not c or c[-1].get("role") != "assistant" for c in conversations):
            raise ValueError("every conversation to score must end with the assistant's answer")
        scores = self.engine.answer_logprobs(
            [c[:-1] for c in conversations], [c[-1]["content"] for c in conversations]
        )
        return [Scored("", s.prompt_tokens, s.n_tokens, s.logprob, s.n_tokens) for s in scores]


def score(
    tasks: list[Task], engine: Engine, engine_id: str, out: str | Path, batch_queries: int = 64
) -> dict:
    """Score `tasks` through `engine`, resumably; one JSONL record per query in `out`."""
    return run_shard(STEP, tasks, AnswerScorer(engine), engine_id, Sampling(), None, out, batch_queries)


def score_shard(
    pool_file: str | Path,
    answers_file: str | Path,
    prompt_file: str | Path,
    llm: dict,
    out: str | Path,
    *,
    passage_words: int | None = 300,
    answer: str = "first",
    gpus: int | None = None,
    threads: int | None = 1,
    batch_queries: int = 64,
    engine: Engine | None = None,
) -> dict:
    """The shard job: pool shard + answers table + prompt file -> `out` (JSONL, resumable, atomic).

    `llm` is an `llms.<name>` config entry (engine transformers or vllm); `engine` replaces the one it
    would build (tests). Returns run_shard's summary plus `no_answer`, the queries left unscored.
    """
    prompt = load_prompt(prompt_file)
    check_prompt(prompt)
    if answer not in ANSWER_CHOICES:
        raise ValueError(f"unknown answer choice {answer!r} (expected one of {ANSWER_CHOICES})")
    kind = llm.get("engine", "vllm")
    if engine is None and kind == "openai":
        raise NotImplementedError(engines.OPENAI_NO_SCORES)
    pools = tables.read_parquet(pool_file)
    tasks, no_answer = replug_tasks(pools, read_answers(answers_file), prompt, passage_words, answer)
    if no_answer:
        log.warning("%s: %d of %d queries have no gold answer: not scored", pool_file, no_answer, len(tasks))
    # the settings that change scores; the prompt, passages and answers are in run_shard's fingerprint
    engine_id = model_engine_id(llm)  # the model folder's content too, not only its path
    if engine is None:  # ours to close; a given engine stays its owner's
        with engines.create(llm, gpus=gpus, threads=threads) as engine:
            summary = score(tasks, engine, engine_id, out, batch_queries)
    else:
        summary = score(tasks, engine, engine_id, out, batch_queries)
    summary["no_answer"] = no_answer
    log.info("%s %s: %d queries scored, %d without an answer", STEP, out, len(tasks) - no_answer, no_answer)
    return summary


def utility(logprob: float, n_tokens: int, length: str = "sum") -> float:
    """f_u from an answer's summed log-probability: the sum, or the mean per answer token."""
    if length == "sum":
        return logprob
    if length == "mean":
        if n_tokens <= 0:
            raise ValueError("a mean log-probability needs at least one answer token")
        return logprob / n_tokens
    raise ValueError(f"unknown length normalisation {length!r} (expected one of {LENGTHS})")


def table(records: list[dict], length: str = "sum") -> pl.DataFrame:
    """One row per scored (qid, docid) pair, queries in qid order, passages in pool order."""
    if length not in LENGTHS:
        raise ValueError(f"unknown length normalisation {length!r} (expected one of {LENGTHS})")
    rows = [
        {
            "qid": r["qid"],
            "docid": d,
            "logprob": lp,
            "n_tokens": n,
            "utility": utility(lp, n, length),
            "prompt_hash": h,
        }
        for r in records
        for d, lp, n, h in zip(r["docids"], r["logprobs"], r["n_tokens"], r["prompt_hashes"], strict=True)
    ]
    return pl.DataFrame(rows, schema=TABLE_SCHEMA).sort("qid", maintain_order=True)


def merge(
    shard_files: list[str | Path],
    out: str | Path,
    length: str = "sum",
    pool_files: list[str | Path] | None = None,
) -> dict:
    """JSONL shards -> the REPLUG table (Parquet, atomic); returns statistics.

    With `pool_files`, every pool query must have a record (a shard from other pools fails here).
    """
    from utilanno.atomic import atomic_path

    if length not in LENGTHS:
        raise ValueError(f"unknown length normalisation {length!r} (expected one of {LENGTHS})")
    records: dict[str, dict] = {}
    for f in shard_files:
        for qid, rec in read_records(f).items():
            if rec.get("step") != STEP:
                raise InputFormatError(
                    str(f), None, f"query {qid!r}: a {rec.get('step')!r} record, not {STEP}"
                )
            if qid in records:
                raise InputFormatError(str(f), None, f"query {qid!r} is in more than one shard")
            records[qid] = rec
    if pool_files:
        pooled = {q for f in pool_files for q in tables.read_parquet(f, columns=["qid"])["qid"].to_list()}
        missing = pooled - set(records)
        if missing:
            raise ValueError(
                f"{STEP}: {len(missing)} pool queries have no record, e.g. {sorted(missing)[:3]}"
            )
    ordered = [records[q] for q in sorted(records)]
    result = table(ordered, length)
    scored = [r for r in ordered if r["status"] == "scored"]
    n_tokens = [r["n_tokens"][0] for r in scored if r["n_tokens"]]
    stats = {
        "step": STEP,
        "length": length,
        "queries": len(ordered),
        "scored": len(scored),
        "no_answer": sum(r["status"] == "no_answer" for r in ordered),
        "pairs": result.height,
        "mean_answer_tokens": round(sum(n_tokens) / len(n_tokens), 2) if n_tokens else None,
        "prompt_tokens": sum(r["prompt_tokens"] for r in ordered),
        "completion_tokens": sum(r["completion_tokens"] for r in ordered),
    }
    with atomic_path(out) as tmp:
        result.write_parquet(tmp)
    log.info("%s: %s", STEP, json.dumps(stats))
    return stats
