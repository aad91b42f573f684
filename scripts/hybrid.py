"""Hybrid Test stage (PAPER-SPEC B.9): the pool of the trained retrievers, the LLM judge, the gold qrels.

python scripts/hybrid.py pool --run R1 --run R2 --queries queries-dev.parquet --answers answers-dev.parquet \
    --qrels qrels-dev.trec --corpus corpus.parquet --out shard-0.parquet --out shard-1.parquet --stats S
python scripts/hybrid.py judge --pool shard-0.parquet --prompt prompts/utilsel.yaml --llm JSON --out X.jsonl
python scripts/hybrid.py gold --pool ... --judged ... --qrels-out qrels-test.trec --queries-out Q --stats S
python scripts/hybrid.py restrict --run runs/X/msmarco.trec --queries queries-test.parquet --out R
"""

from __future__ import annotations

import json

import click

from utilanno import logs, tables
from utilanno.cli import StageGroup
from utilanno.errors import InputFormatError
from utilanno.evaluate import hybrid
from utilanno.gpus import claim as claim_gpus

log = logs.setup("hybrid")
FILE = click.Path(exists=True, dir_okay=False)
OUT = click.Path(dir_okay=False)


@click.group(cls=StageGroup)
def cli():
    """The Hybrid Test: an LLM-judged test collection over the trained retrievers' top passages."""


@cli.command("pool")
@click.option("--run", "runs", required=True, multiple=True, type=FILE, help="A pooled retriever's dev run.")
@click.option("--queries", required=True, type=FILE)
@click.option("--answers", required=True, type=FILE, help="QA answers of the dev queries.")
@click.option("--qrels", required=True, type=FILE, help="Human judgments of the dev queries.")
@click.option("--corpus", required=True, type=FILE)
@click.option("--out", "outs", required=True, multiple=True, type=OUT, help="One per shard, in order.")
@click.option("--stats", "stats_out", required=True, type=OUT)
@click.option("--queries-n", default=200, show_default=True, type=click.IntRange(min=1))
@click.option("--depth", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--window", default=16, show_default=True, type=click.IntRange(min=2))
@click.option("--overlap", default=1, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=42, show_default=True)
def pool_cmd(runs, queries, answers, qrels, corpus, outs, stats_out, queries_n, depth, window, overlap, seed):
    """Sample the queries and pool the runs' top passages into judge shards."""
    try:
        hybrid.build(
            list(runs),
            queries,
            answers,
            qrels,
            corpus,
            list(outs),
            queries_n,
            depth,
            window,
            overlap,
            seed,
            stats_out,
        )
    except (InputFormatError, ValueError) as err:
        raise click.ClickException(str(err)) from None


@cli.command("judge")
@click.option("--pool", "pool_file", required=True, type=FILE)
@click.option("--prompt", "prompt_file", required=True, type=FILE)
@click.option("--llm", "llm_json", required=True, help="The llms.<name> config entry of the judge, as JSON.")
@click.option("--passage-words", default=300, show_default=True)
@click.option("--gpus", default=None, type=int, help="GPUs of this job (vLLM tensor parallel size).")
@click.option("--threads", default=1, show_default=True)
@click.option("--batch-queries", default=64, show_default=True)
@click.option("--out", required=True, type=OUT)
def judge_cmd(pool_file, prompt_file, llm_json, passage_words, gpus, threads, batch_queries, out):
    """Judge one hybrid pool shard window by window with the reference answer (resumable)."""
    claim_gpus(gpus or 0)
    from utilanno.annotate import engines, prompts
    from utilanno.annotate import steps as annotate
    from utilanno.annotate.model_identity import engine_id as model_engine_id
    from utilanno.evaluate.hybrid_judge import judge_tasks

    llm = json.loads(llm_json)
    try:
        prompt = prompts.load(prompt_file)
    except InputFormatError as err:
        raise click.ClickException(str(err)) from None
    rows = tables.read_parquet(pool_file)
    try:
        tasks = judge_tasks(rows, prompt, passage_words, where=str(prompt_file))
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    sampling = engines.Sampling.from_config(llm.get("sampling", {}))
    guide = "selection" if llm.get("structured_output") else None
    with engines.create(llm, gpus=gpus, threads=threads) as engine:
        annotate.run_shard("hybrid", tasks, engine, model_engine_id(llm), sampling, guide, out, batch_queries)


@cli.command("gold")
@click.option("--pool", "pools", required=True, multiple=True, type=FILE)
@click.option("--judged", required=True, multiple=True, type=FILE)
@click.option("--qrels-out", required=True, type=OUT)
@click.option("--queries-out", required=True, type=OUT)
@click.option("--stats", "stats_out", required=True, type=OUT)
@click.option("--price-input", type=float, help="Judge price per million prompt tokens.")
@click.option("--price-output", type=float, help="Judge price per million completion tokens.")
def gold_cmd(pools, judged, qrels_out, queries_out, stats_out, price_input, price_output):
    """Human positives ∪ judged positives -> the hybrid qrels and queries, with statistics."""
    prices = None
    if price_input is not None or price_output is not None:
        prices = {"input": price_input or 0.0, "output": price_output or 0.0}
    try:
        hybrid.gold(list(pools), list(judged), qrels_out, queries_out, stats_out, prices)
    except (InputFormatError, ValueError) as err:
        raise click.ClickException(str(err)) from None


@cli.command("restrict")
@click.option("--run", "run_file", required=True, type=FILE)
@click.option("--queries", required=True, type=FILE)
@click.option("--out", required=True, type=OUT)
def restrict_cmd(run_file, queries, out):
    """A system's dev run restricted to the hybrid queries (the same ranking, no second search)."""
    try:
        n = hybrid.restrict_run(run_file, queries, out)
    except (InputFormatError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    log.info("%s: %d lines", out, n)


if __name__ == "__main__":  # vLLM spawns worker processes that import this file: keep work under the guard
    cli()
