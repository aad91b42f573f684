"""The annotation steps (PAPER-SPEC B): RelSel over windows -> pseudo answer from the RelSel passages ->
UtilSel | UtilRank over the RelSel passages given the pseudo answer.

A shard job turns pool rows into tasks (one per query, one or more conversations each), sends fixed
batches of tasks to an engine, and appends each finished batch to `<out>.partial`. A rerun after any kill
keeps the complete batches and continues with the same batches, so its output equals an uninterrupted run;
the output appears under its final name only when the shard is complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from utilanno import tables
from utilanno.annotate import parsing
from utilanno.annotate.engines import Engine, Sampling, guide_pattern
from utilanno.annotate.prompts import Prompt, format_passage, messages_hash
from utilanno.atomic import atomic_path, atomic_text
from utilanno.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class Task:
    qid: str
    conversations: list[list[dict]]
    finish: Callable[[list], dict]  # generations -> the record (without the common fields)
    docids: list[list[str]] = field(default_factory=list)  # passages shown, per conversation

    def guides(self, kind: str) -> list[str | None]:
        """Output patterns per conversation for structured output (ids limited to the passages shown)."""
        if kind == "answer":
            return [None] * len(self.conversations)
        return [guide_pattern(kind, len(docs)) for docs in self.docids]


def _passages(row: dict) -> dict[str, str]:
    return {p["docid"]: format_passage(p["title"], p["text"]) for p in row["passages"]}


def relsel_tasks(pools: pl.DataFrame, prompt: Prompt, passage_words: int) -> list[Task]:
    return selection_tasks(pools, prompt, passage_words)


def selection_tasks(
    pools: pl.DataFrame, prompt: Prompt, passage_words: int, answers: dict[str, str] | None = None
) -> list[Task]:
    """A selection prompt per relevance window of each pool (RelSel; with `answers`, the Hybrid Test's
    UtilSel judge given each query's reference answer). A passage in two windows keeps the first's label."""
    tasks = []
    for row in pools.iter_rows(named=True):
        order = [p["docid"] for p in row["passages"]]
        texts = _passages(row)
        shown = [[order[i] for i in w] for w in row["windows"]]
        answer = answers[row["qid"]] if answers is not None else ""
        convs = [
            prompt.render(row["query"], [texts[d] for d in docs], answer=answer, passage_words=passage_words)
            for docs in shown
        ]

        def finish(gens, shown=shown, order=order, convs=convs):
            labels: dict[str, bool] = {}
            windows = []
            for docs, gen, conv in zip(shown, gens, convs, strict=True):
                parsed = parsing.parse_selection(gen.text, len(docs))
                for k, d in enumerate(docs):
                    labels.setdefault(d, k in parsed.ids)  # a shared passage keeps the first window's label
                windows.append(
                    {
                        "docids": docs,
                        "prompt_hash": messages_hash(conv),
                        "raw": gen.text,
                        "status": parsed.status,
                        "ids": parsed.ids,
                    }
                )
            return {"windows": windows, "selected": [d for d in order if labels.get(d)]}

        tasks.append(Task(row["qid"], convs, finish, shown))
    return tasks


def _selected(relsel: dict[str, dict], qid: str) -> list[str]:
    if qid not in relsel:
        raise KeyError(f"query {qid} has no RelSel record: the RelSel shard does not match this pool shard")
    return relsel[qid]["selected"]


def pseudo_answer_tasks(pools: pl.DataFrame, prompt: Prompt, passage_words: int, relsel: dict) -> list[Task]:
    tasks = []
    for row in pools.iter_rows(named=True):
        docs = _selected(relsel, row["qid"])
        texts = _passages(row)
        if not docs:
            tasks.append(
                Task(
                    row["qid"],
                    [],
                    lambda gens, docs=docs: {
                        "docids": docs,
                        "status": "no_passages",
                        "raw": None,
                        "answer": None,
                    },
                )
            )
            continue
        conv = prompt.render(row["query"], [texts[d] for d in docs], passage_words=passage_words)

        def finish(gens, docs=docs, conv=conv):
            text = gens[0].text
            return {
                "docids": docs,
                "prompt_hash": messages_hash(conv),
                "raw": text,
                "status": parsing.parse_answer(text).status,
                "answer": parsing.answer_text(text),
            }

        tasks.append(Task(row["qid"], [conv], finish, [docs]))
    return tasks


def utility_tasks(
    pools: pl.DataFrame, prompt: Prompt, passage_words: int, relsel: dict, answers: dict
) -> list[Task]:
    """UtilSel or UtilRank (by the prompt's output kind) over the RelSel passages in pool order."""
    ranking = prompt.output == "ranking"
    tasks = []
    for row in pools.iter_rows(named=True):
        docs = _selected(relsel, row["qid"])
        texts = _passages(row)
        if not docs:
            empty = {"docids": [], "status": "no_passages", "raw": None, "ids": []}
            empty["ranking" if ranking else "selected"] = []
            tasks.append(Task(row["qid"], [], lambda gens, empty=empty: dict(empty)))
            continue
        answer = answers[row["qid"]].get("answer") or ""
        conv = prompt.render(
            row["query"], [texts[d] for d in docs], answer=answer, passage_words=passage_words
        )

        def finish(gens, docs=docs, conv=conv):
            text = gens[0].text
            parsed = (parsing.parse_ranking if ranking else parsing.parse_selection)(text, len(docs))
            rec = {
                "docids": docs,
                "prompt_hash": messages_hash(conv),
                "raw": text,
                "status": parsed.status,
                "ids": parsed.ids,
            }
            rec["ranking" if ranking else "selected"] = [docs[i] for i in parsed.ids]
            return rec

        tasks.append(Task(row["qid"], [conv], finish, [docs]))
    return tasks


def read_records(path: str | Path) -> dict[str, dict]:
    """A step's shard (one JSON record per query), by query id; a damaged line is named."""
    return tables.read_jsonl(path)


def fingerprint(step: str, tasks: list[Task], engine_id: str, sampling: Sampling, batch: int) -> str:
    """Identity of a shard's work: a partial file from other inputs or settings is never resumed."""
    h = hashlib.sha256(json.dumps([step, engine_id, sampling.__dict__, batch]).encode())
    for t in tasks:
        h.update(t.qid.encode())
        for conv in t.conversations:
            h.update(messages_hash(conv).encode())
    return h.hexdigest()[:24]


def _resume(partial: Path, fp: str, batches: list[list[Task]]) -> tuple[list[dict], int]:
    """Records of the complete leading batches of a previous attempt, and how many batches they are."""
    if not partial.exists():
        return [], 0
    lines = partial.read_bytes().split(b"\n")
    try:
        header = json.loads(lines[0])
    except (json.JSONDecodeError, IndexError):
        header = {}
    if header.get("fingerprint") != fp:
        log.info("%s: from other inputs or settings; starting over", partial)
        return [], 0
    recs = {}
    for raw in lines[1:]:
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError:
            break  # the line a kill cut short, and anything after it
        recs[rec["qid"]] = rec
    kept, n = [], 0
    for batch in batches:
        if not all(t.qid in recs for t in batch):
            break
        kept += [recs[t.qid] for t in batch]
        n += 1
    return kept, n


def run_shard(
    step: str,
    tasks: list[Task],
    engine: Engine,
    engine_id: str,
    sampling: Sampling,
    guide_kind: str | None,
    out: str | Path,
    batch_queries: int = 64,
) -> dict:
    """Run `tasks` through `engine`, resumably; write one JSONL record per query to `out`.

    `guide_kind` (selection, ranking or None) turns on structured output for the prompts' answer shape.
    """
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    batches = [tasks[i : i + batch_queries] for i in range(0, len(tasks), batch_queries)]
    fp = fingerprint(step, tasks, f"{engine_id} guide={guide_kind}", sampling, batch_queries)
    records, done = _resume(partial, fp, batches)
    if done:
        log.info(
            "%s: resuming after %d of %d batches (%d queries done)", out, done, len(batches), len(records)
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(partial) as tmp, open(tmp, "wb") as fh:  # the header and the complete batches only
        fh.write(json.dumps({"fingerprint": fp}).encode() + b"\n")
        fh.writelines(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)
    totals = {
        "prompt_tokens": sum(r["prompt_tokens"] for r in records),
        "completion_tokens": sum(r["completion_tokens"] for r in records),
    }
    start = time.perf_counter()
    bar = Progress(f"{step} {out}", len(tasks), "queries", initial=len(records), logger=log)
    with open(partial, "ab") as fh:
        for batch in batches[done:]:
            convs = [c for t in batch for c in t.conversations]
            guides = [g for t in batch for g in t.guides(guide_kind)] if guide_kind else None
            gens = engine.chat(convs, sampling, guides) if convs else []
            pos, lines = 0, []
            for t in batch:
                mine = gens[pos : pos + len(t.conversations)]
                pos += len(t.conversations)
                rec = {
                    "qid": t.qid,
                    "step": step,
                    **t.finish(mine),
                    "prompt_tokens": sum(g.prompt_tokens for g in mine),
                    "completion_tokens": sum(g.completion_tokens for g in mine),
                }
                records.append(rec)
                lines.append(json.dumps(rec, ensure_ascii=False).encode() + b"\n")
                totals["prompt_tokens"] += rec["prompt_tokens"]
                totals["completion_tokens"] += rec["completion_tokens"]
            # flush, no fsync: a killed process loses nothing flushed; after a machine crash a torn tail is
            # dropped by _resume, which only keeps whole batches
            fh.writelines(lines)
            fh.flush()
            elapsed = time.perf_counter() - start
            bar.update(
                len(batch),
                **{"generated tokens/s": f"{totals['completion_tokens'] / max(elapsed, 1e-9):.0f}"},
            )
    elapsed = time.perf_counter() - start
    with atomic_text(out) as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    partial.unlink()
    new = len(tasks) - sum(len(b) for b in batches[:done])
    summary = {
        "queries": len(tasks),
        "queries_run": new,
        "resumed_batches": done,
        "seconds": round(elapsed, 2),
        "queries_per_s": round(new / elapsed, 3) if elapsed else None,
        **totals,
    }
    log.info("%s %s: %s", step, out, summary)
    return summary


# ---------------------------------------------------------------------------------------------------------
# Merging shards and the statistics of the paper's Table 1.


_STR, _STRS = pl.String, pl.List(pl.String)
_COMMON = {"qid": _STR, "step": _STR}
_TOKENS = {"prompt_tokens": pl.Int64, "completion_tokens": pl.Int64}
_LLM = {"docids": _STRS, "prompt_hash": _STR, "raw": _STR, "status": _STR}
# Fixed per step, so that a merged table's types never depend on what the model happened to output.
MERGED_SCHEMA = {
    "relsel": {**_COMMON, "selected": _STRS, "window_status": _STRS, "raw": _STRS, **_TOKENS},
    "pseudo_answer": {**_COMMON, **_LLM, "answer": _STR, **_TOKENS},
    "utilsel": {**_COMMON, **_LLM, "ids": pl.List(pl.Int64), "selected": _STRS, **_TOKENS},
    "utilrank": {**_COMMON, **_LLM, "ids": pl.List(pl.Int64), "ranking": _STRS, **_TOKENS},
}


def merge(
    step: str,
    shard_files: list,
    pool_files: list,
    out: str | Path,
    topk: list[int],
    benchmarks: list | None = None,
    gpus: int = 0,
) -> dict:
    """Shard JSONLs -> one Parquet table per step, plus statistics against the human positive.

    Precision and recall are micro-averaged as in the paper's Table 1: hits / LLM positives and hits / human
    positives in the pool; average positives per query counts queries with none.
    """
    records = [r for f in shard_files for r in read_records(f).values()]
    human = {}
    for f in pool_files:
        for qid, pos in tables.read_parquet(f, columns=["qid", "positive"]).iter_rows():
            human[qid] = pos
    missing = set(human) - {r["qid"] for r in records}
    if missing:
        raise ValueError(f"{step}: {len(missing)} pool queries have no record, e.g. {sorted(missing)[:3]}")
    statuses: dict[str, int] = {}
    for r in records:
        for st in [w["status"] for w in r["windows"]] if step == "relsel" else [r["status"]]:
            statuses[st] = statuses.get(st, 0) + 1
    stats = {
        "step": step,
        "queries": len(records),
        "statuses": statuses,
        "prompt_tokens": sum(r["prompt_tokens"] for r in records),
        "completion_tokens": sum(r["completion_tokens"] for r in records),
    }
    if step in ("relsel", "utilsel"):
        stats.update(_label_stats([r["selected"] for r in records], [human[r["qid"]] for r in records]))
    elif step == "utilrank":
        stats["topk"] = {}
        for k in topk:
            cut = [parsing.topk_cut(r["ranking"], len(r["docids"]), k) for r in records]
            stats["topk"][str(k)] = _label_stats(cut, [human[r["qid"]] for r in records])
    else:
        answers = [r["answer"] for r in records if r.get("answer")]
        stats["answered"] = len(answers)
        stats["no_passages"] = sum(r["status"] == "no_passages" for r in records)
        stats["mean_answer_words"] = round(sum(len(a.split()) for a in answers) / max(1, len(answers)), 2)
    if benchmarks:
        wall = sum(float(pl.read_csv(b, separator="\t")["s"].sum()) for b in benchmarks)
        stats["wall_seconds"] = round(wall, 2)
        stats["gpu_seconds"] = round(wall * gpus, 2)
    rows = records
    if step == "relsel":
        rows = [
            {
                **r,
                "window_status": [w["status"] for w in r["windows"]],
                "raw": [w["raw"] for w in r["windows"]],
            }
            for r in records
        ]
    schema = MERGED_SCHEMA[step]
    table = pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema)
    with atomic_path(out) as tmp:
        table.sort("qid").write_parquet(tmp)
    log.info("%s: %s", step, json.dumps(stats))
    return stats


def _label_stats(selected: list[list[str]], human: list[str | None]) -> dict:
    """Precision and recall over the queries with a human positive (a mined pool has none: both null)."""
    judged = [(s, h) for s, h in zip(selected, human, strict=True) if h is not None]
    n_sel = sum(len(s) for s, _ in judged)
    hits = sum(h in s for s, h in judged)
    return {
        "precision": round(hits / n_sel, 4) if n_sel else None,
        "recall": round(hits / len(judged), 4) if judged else None,
        "avg_positives": round(sum(len(s) for s in selected) / len(selected), 3) if selected else None,
        "queries_without_positive": sum(not s for s in selected),
        "queries_with_human_positive": len(judged),
    }
