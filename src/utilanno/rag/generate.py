"""RAG evaluation (PAPER-SPEC G): a generator answers each answerable query from a retriever's top-k passages;
the answers are scored against the gold answers.

Generation runs per (retriever experiment, generator, dataset, shard) through the annotation engines and
`annotate.run_shard`, so it is batched, checkpointed and resumable exactly like annotation. Queries go to
shards by the same blake2b hash of the qid as pools. One record per query keeps the query, the passages
given (docids, in rank order), the prompt hash, the raw output and the extracted answer.

Scoring (`score`) reads every shard of one (experiment, generator) and writes the merged answers and the
per-query metrics (dataset, qid, measure, value). Corpus-level measures (BLEU) have a null qid: they are
reported as they are and never enter a paired test.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import polars as pl

from utilanno import tables
from utilanno.annotate import engines, parsing
from utilanno.annotate import steps as annotate
from utilanno.annotate.model_identity import engine_id as model_engine_id
from utilanno.annotate.pools import shard_of
from utilanno.annotate.prompts import Prompt, format_passage, messages_hash
from utilanno.atomic import atomic_path
from utilanno.errors import InputFormatError
from utilanno.evaluate.runfiles import rank, read_run
from utilanno.rag import qa_metrics

log = logging.getLogger(__name__)

KINDS = ("em_f1", "rouge_bleu")
MEASURES = {"em_f1": ("EM", "F1", "Recall"), "rouge_bleu": ("ROUGE-L", "Recall")}
CORPUS_MEASURES = {"em_f1": (), "rouge_bleu": ("BLEU-3", "BLEU-4")}
BERTSCORE = "BERTScore"


def answerable(queries_file, answers_file) -> tuple[pl.DataFrame, int]:
    """(qid, query, answers) of the split's queries that have gold answers, by qid; and the split's size."""
    queries = tables.read_parquet(queries_file, columns=["qid", "text"]).rename({"text": "query"})
    answers = tables.read_parquet(answers_file, columns=["qid", "answers"])
    unknown = answers.join(queries, on="qid", how="anti")
    if unknown.height:
        raise ValueError(
            f"{answers_file}: {unknown.height} answered qids are not queries of {queries_file}, "
            f"e.g. {unknown['qid'].head(3).to_list()}"
        )
    return queries.join(answers, on="qid", how="inner").sort("qid"), queries.height


def top_passages(run_file, qids: list[str], k: int) -> dict[str, list[str]]:
    """The top-k docids per query, by (-score, docid) as the run is ranked; [] for a query with no hits."""
    table = read_run(run_file).filter(pl.col("qid").is_in(qids))
    ranked = rank(table.select("qid", "docid", "score"), depth=k)
    top = {q: list(d) for q, d in ranked.group_by("qid", maintain_order=True).agg("docid").iter_rows()}
    return {q: top.get(q, []) for q in qids}


def passage_texts(corpus_file, docids: set[str]) -> dict[str, str]:
    """`title text` of the given docids; only those rows are kept (an 8.8M-passage corpus is never held)."""
    rows = (
        tables.scan_parquet(corpus_file)
        .select("docid", "title", "text")
        .filter(pl.col("docid").is_in(list(docids)))
        .collect()
    )
    missing = docids - set(rows["docid"])
    if missing:
        raise ValueError(
            f"{corpus_file}: {len(missing)} retrieved docids are not in the corpus, "
            f"e.g. {sorted(missing)[:3]} (is the run from another dataset's index?)"
        )
    return {d: format_passage(t, x) for d, t, x in rows.iter_rows()}


def tasks(queries: pl.DataFrame, top: dict[str, list[str]], texts: dict[str, str], prompt: Prompt):
    out = []
    for qid, query in queries.select("qid", "query").iter_rows():
        docs = top[qid]
        conv = prompt.render(query, [texts[d] for d in docs])

        def finish(gens, query=query, docs=docs, conv=conv):
            raw = gens[0].text
            return {
                "query": query,
                "docids": docs,
                "prompt_hash": messages_hash(conv),
                "raw": raw,
                "status": parsing.rag_answer(raw).status,
                "answer": parsing.rag_answer_text(raw),
            }

        out.append(annotate.Task(qid, [conv], finish, [docs]))
    return out


def generate_shard(
    queries_file,
    answers_file,
    run_file,
    corpus_file,
    prompt: Prompt,
    llm: dict,
    out,
    shard: int,
    shards: int,
    top_k: int,
    max_tokens: int,
    gpus: int | None = None,
    threads: int | None = None,
    batch_queries: int = 64,
) -> dict:
    """Answer one shard of a dataset's answerable queries from `run_file`'s top-k passages (resumable)."""
    if prompt.output != "answer":
        raise InputFormatError(prompt.path, None, f"output is {prompt.output!r}; RAG needs 'answer'")
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
    queries, n_split = answerable(queries_file, answers_file)
    mine = queries.filter(pl.Series([shard_of(q, shards) == shard for q in queries["qid"]], dtype=pl.Boolean))
    top = top_passages(run_file, mine["qid"].to_list(), top_k)
    no_hits = sum(not d for d in top.values())
    texts = passage_texts(corpus_file, {d for docs in top.values() for d in docs})
    log.info(
        "%s: %d queries, %d with gold answers, %d in shard %d/%d (%d without retrieved passages), top %d",
        queries_file,
        n_split,
        queries.height,
        mine.height,
        shard,
        shards,
        no_hits,
        top_k,
    )
    sampling = engines.Sampling(
        temperature=0.0, max_tokens=max_tokens, seed=llm.get("sampling", {}).get("seed", 0)
    )
    engine_id = model_engine_id(llm)  # the model folder's content too, not only its path
    work = tasks(mine, top, texts, prompt)
    with engines.create(llm, gpus=gpus, threads=threads) as engine:
        return annotate.run_shard("rag", work, engine, engine_id, sampling, None, out, batch_queries)


# ---------------------------------------------------------------------------------------------------------
# Scoring


ANSWERS_SCHEMA = {
    "dataset": pl.String,
    "qid": pl.String,
    "query": pl.String,
    "docids": pl.List(pl.String),
    "prompt_hash": pl.String,
    "raw": pl.String,
    "status": pl.String,
    "answer": pl.String,
    "gold": pl.List(pl.String),
    "prompt_tokens": pl.Int64,
    "completion_tokens": pl.Int64,
}
METRICS_SCHEMA = {"dataset": pl.String, "qid": pl.String, "measure": pl.String, "value": pl.Float64}


def read_shards(files: list, dataset: str) -> pl.DataFrame:
    recs = []
    for f in files:
        recs += annotate.read_records(f).values()
    qids = [r["qid"] for r in recs]
    if len(set(qids)) != len(qids):
        raise ValueError(f"{dataset}: a query is answered in two shards ({files})")
    cols = [c for c in ANSWERS_SCHEMA if c not in ("dataset", "gold")]
    return pl.DataFrame(
        [{c: r.get(c) for c in cols} for r in recs], schema={c: ANSWERS_SCHEMA[c] for c in cols}
    )


def qrels_positives(qrels_file) -> dict[str, set[str]]:
    from utilanno.data.convert import read_qrels

    table = read_qrels(qrels_file)
    pos = table.filter(pl.col("rel") > 0).group_by("qid").agg("docid")
    return {q: set(d) for q, d in pos.iter_rows()}


def score_dataset(
    dataset: str,
    answers: pl.DataFrame,
    kind: str,
    positives: dict[str, set[str]],
    bertscorer=None,
    tokenization: str = "msmarco",
) -> pl.DataFrame:
    """Per-query (and corpus-level, qid null) values of one dataset's answers (with a `gold` column).
    ROUGE-L and BLEU compare `tokenization` tokens (qa_metrics.tokenize); EM and F1 SQuAD-normalised ones."""
    if kind not in KINDS:
        raise ValueError(f"unknown RAG metrics {kind!r} (expected one of {KINDS})")
    rows = []
    preds, golds = answers["answer"].to_list(), answers["gold"].to_list()
    for qid, pred, gold, docs in zip(answers["qid"], preds, golds, answers["docids"], strict=True):
        values = {"Recall": qa_metrics.hit(docs, positives.get(qid, set()))}
        if kind == "em_f1":
            values["EM"] = qa_metrics.exact_match(pred, gold)
            values["F1"] = qa_metrics.token_f1(pred, gold)
        else:
            values["ROUGE-L"] = qa_metrics.rouge_l(pred, gold, scheme=tokenization)
        rows += [(dataset, qid, m, values[m]) for m in MEASURES[kind]]
    if kind == "rouge_bleu":
        rows += [
            (dataset, None, f"BLEU-{n}", qa_metrics.corpus_bleu(preds, golds, n, scheme=tokenization))
            for n in (3, 4)
        ]
        if bertscorer is not None:
            f1 = bertscorer(preds, golds)
            rows += [(dataset, q, BERTSCORE, v) for q, v in zip(answers["qid"], f1, strict=True)]
    return pl.DataFrame(rows, schema=METRICS_SCHEMA, orient="row")


def score(datasets: dict[str, dict], answers_out, metrics_out, bertscorer=None) -> dict:
    """datasets: {name: {shards, queries, answers, qrels, metrics}} of one (experiment, generator).

    Every answerable query must have exactly one record: a missing or foreign qid is an error, so a partial
    set of shards never passes for a whole one.
    """
    merged, metrics, summary = [], [], {}
    for name, d in datasets.items():
        expected, _ = answerable(d["queries"], d["answers"])
        got = read_shards(d["shards"], name)
        missing = expected.join(got, on="qid", how="anti")
        extra = got.join(expected, on="qid", how="anti")
        if missing.height or extra.height:
            raise ValueError(
                f"{name}: shards {d['shards']} do not match the answerable queries: {missing.height} missing "
                f"(e.g. {missing['qid'].head(3).to_list()}), {extra.height} unknown "
                f"(e.g. {extra['qid'].head(3).to_list()})"
            )
        table = got.join(expected.select("qid", pl.col("answers").alias("gold")), on="qid").sort("qid")
        table = table.with_columns(dataset=pl.lit(name)).select(list(ANSWERS_SCHEMA))
        merged.append(table)
        use_bert = bertscorer if d["metrics"] == "rouge_bleu" else None
        values = score_dataset(
            name, table, d["metrics"], qrels_positives(d["qrels"]), use_bert, d.get("tokenization", "msmarco")
        )
        metrics.append(values)
        summary[name] = {
            "queries": table.height,
            "statuses": dict(table.group_by("status").len().sort("status").iter_rows()),
            **{
                m: round(v, 4)
                for m, v in values.group_by("measure", maintain_order=True)
                .agg(pl.col("value").mean())
                .iter_rows()
            },
        }
        if d["metrics"] == "rouge_bleu" and bertscorer is None:
            summary[name]["note"] = "BERTScore skipped: rag.bertscore_model is not configured"
        log.info("%s: %s", name, json.dumps(summary[name]))
    for path, frames, schema in (
        (answers_out, merged, ANSWERS_SCHEMA),
        (metrics_out, metrics, METRICS_SCHEMA),
    ):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            (pl.concat(frames) if frames else pl.DataFrame(schema=schema)).write_parquet(tmp)
    return summary
