"""Annotation stage: pools, one LLM step on one shard, merging shards with statistics.

python scripts/annotate.py mine --run bm25.trec [--run dense.trec] --queries queries-train.parquet \
    --candidates 31 [--qrels qrels-train.trec] --out train-pool.parquet --stats stats.json
python scripts/annotate.py pool --input train-pool.parquet --corpus corpus.parquet --out shard-0.parquet ...
    [--mined]
python scripts/annotate.py step relsel --pool shard-0 --prompt prompts/relsel.yaml --llm JSON --out X
python scripts/annotate.py merge relsel --shard ... --pool ... --out merged.parquet --stats stats.json
python scripts/annotate.py replug --pool shard-0 --answers answers-train.parquet --prompt P --llm JSON ...
python scripts/annotate.py replug-merge --shard ... --pool ... --length sum --out merged.parquet --stats S
"""

from __future__ import annotations

import json

import click

from utilanno import logs, tables
from utilanno.annotate import STEPS, engines, pools, prompts, replug
from utilanno.annotate import steps as annotate
from utilanno.annotate.model_identity import engine_id as model_engine_id
from utilanno.atomic import atomic_text
from utilanno.cli import StageGroup
from utilanno.errors import InputFormatError
from utilanno.gpus import claim as claim_gpus

log = logs.setup("annotate")


@click.group(cls=StageGroup)
def cli():
    """LLM annotation of candidate pools (RelSel -> pseudo answer -> UtilSel | UtilRank)."""


@cli.command("mine")
@click.option("--run", "runs", required=True, multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--queries", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--qrels", type=click.Path(exists=True, dir_okay=False), help="Only to report the pools' recall."
)
@click.option("--candidates", default=31, show_default=True, type=click.IntRange(min=1))
@click.option("--fusion", type=click.Choice(["rrf", "union"]), default="rrf", show_default=True)
@click.option("--rrf-k", default=60, show_default=True, type=click.IntRange(min=0))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--stats", "stats_out", required=True, type=click.Path(dir_okay=False))
def mine_cmd(runs, queries, qrels, candidates, fusion, rrf_k, out, stats_out):
    """Fuse retrievers' runs into candidate pools with no human positive (a dataset without a pool file)."""
    from utilanno.annotate import mining

    stats = mining.mine(list(runs), queries, out, candidates, fusion, rrf_k, qrels)
    with atomic_text(stats_out) as fh:
        json.dump(stats, fh, indent=2)


@cli.command("pool")
@click.option("--input", "pool_input", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--corpus", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out",
    "outs",
    required=True,
    multiple=True,
    type=click.Path(dir_okay=False),
    help="One per shard, in shard order.",
)
@click.option("--negatives", default=30, show_default=True)
@click.option("--window", default=16, show_default=True)
@click.option("--overlap", default=1, show_default=True)
@click.option(
    "--order", type=click.Choice(["shuffle", "positive_first"]), default="shuffle", show_default=True
)
@click.option("--seed", default=42, show_default=True)
@click.option(
    "--mined", is_flag=True, help="The input is a mined pool (no human positive; every candidate shown)."
)
def pool_cmd(pool_input, corpus, outs, negatives, window, overlap, order, seed, mined):
    """Build the candidate pools and windows, one file per shard."""
    try:
        pools.build(pool_input, corpus, list(outs), negatives, window, overlap, order, seed, mined)
    except InputFormatError as err:
        raise click.ClickException(str(err)) from None


@cli.command("step")
@click.argument("step", type=click.Choice(STEPS))
@click.option("--pool", "pool_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--prompt", "prompt_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--llm", "llm_json", required=True, help="The llms.<name> config entry as JSON.")
@click.option("--relsel", type=click.Path(exists=True, dir_okay=False), help="RelSel shard (later steps).")
@click.option(
    "--answers", type=click.Path(exists=True, dir_okay=False), help="Pseudo-answer shard (utility steps)."
)
@click.option("--passage-words", default=300, show_default=True)
@click.option("--gpus", default=None, type=int, help="GPUs of this job (vLLM tensor parallel size).")
@click.option("--threads", default=1, show_default=True, help="CPU threads for the transformers engine.")
@click.option(
    "--batch-queries", default=64, show_default=True, help="Queries per engine call and per checkpoint."
)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def step_cmd(
    step, pool_file, prompt_file, llm_json, relsel, answers, passage_words, gpus, threads, batch_queries, out
):
    """Run one annotation step over one pool shard (resumable)."""
    claim_gpus(gpus or 0)
    llm = json.loads(llm_json)
    try:
        prompt = prompts.load(prompt_file)
    except InputFormatError as err:
        raise click.ClickException(str(err)) from None
    expected = {
        "relsel": "selection",
        "pseudo_answer": "answer",
        "utilsel": "selection",
        "utilrank": "ranking",
    }[step]
    if prompt.output != expected:
        raise click.ClickException(
            f"{prompt_file}: output is {prompt.output!r}, step {step} needs {expected!r}"
        )
    rows = tables.read_parquet(pool_file)
    if step == "relsel":
        tasks = annotate.relsel_tasks(rows, prompt, passage_words)
    else:
        if relsel is None:
            raise click.UsageError(f"{step} needs --relsel")
        selected = annotate.read_records(relsel)
        if step == "pseudo_answer":
            tasks = annotate.pseudo_answer_tasks(rows, prompt, passage_words, selected)
        else:
            if answers is None:
                raise click.UsageError(f"{step} needs --answers")
            tasks = annotate.utility_tasks(
                rows, prompt, passage_words, selected, annotate.read_records(answers)
            )
    sampling = engines.Sampling.from_config(llm.get("sampling", {}))
    guide = prompt.output if llm.get("structured_output") and prompt.output != "answer" else None
    engine_id = model_engine_id(llm)  # the model folder's content too, not only its path
    with engines.create(llm, gpus=gpus, threads=threads) as engine:
        annotate.run_shard(step, tasks, engine, engine_id, sampling, guide, out, batch_queries)


@cli.command("merge")
@click.argument("step", type=click.Choice(STEPS))
@click.option("--shard", "shards", required=True, multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--pool", "pool_files", required=True, multiple=True, type=click.Path(exists=True, dir_okay=False)
)
@click.option("--benchmark", "benchmarks", multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--gpus", default=0, show_default=True, help="GPUs per shard job (GPU seconds = wall x GPUs).")
@click.option("--topk", multiple=True, type=int, help="UtilRank cut-offs in percent.")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--stats", "stats_out", required=True, type=click.Path(dir_okay=False))
def merge_cmd(step, shards, pool_files, benchmarks, gpus, topk, out, stats_out):
    """Merge a step's shards into one table and write its statistics (JSON and log)."""
    stats = annotate.merge(step, list(shards), list(pool_files), out, list(topk), list(benchmarks), gpus)
    with atomic_text(stats_out) as fh:
        json.dump(stats, fh, indent=2)
        fh.write("\n")


@cli.command("replug")
@click.option("--pool", "pool_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--answers", "answers_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--prompt", "prompt_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--llm", "llm_json", required=True, help="The llms.<name> config entry as JSON.")
@click.option("--answer", type=click.Choice(replug.ANSWER_CHOICES), default="first", show_default=True)
@click.option("--passage-words", default=300, show_default=True)
@click.option("--gpus", default=None, type=int, help="GPUs of this job (vLLM tensor parallel size).")
@click.option("--threads", default=1, show_default=True, help="CPU threads for the transformers engine.")
@click.option(
    "--batch-queries", default=64, show_default=True, help="Queries per engine call and checkpoint."
)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def replug_cmd(
    pool_file, answers_file, prompt_file, llm_json, answer, passage_words, gpus, threads, batch_queries, out
):
    """REPLUG utilities of one pool shard: log P(gold answer | query, passage) per passage (resumable)."""
    claim_gpus(gpus or 0)
    try:
        replug.score_shard(
            pool_file,
            answers_file,
            prompt_file,
            json.loads(llm_json),
            out,
            passage_words=passage_words,
            answer=answer,
            gpus=gpus,
            threads=threads,
            batch_queries=batch_queries,
        )
    except (InputFormatError, ValueError, NotImplementedError) as err:
        raise click.ClickException(str(err)) from None


@cli.command("replug-merge")
@click.option("--shard", "shards", required=True, multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--pool", "pool_files", multiple=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--length", type=click.Choice(replug.LENGTHS), default="sum", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--stats", "stats_out", required=True, type=click.Path(dir_okay=False))
def replug_merge_cmd(shards, pool_files, length, out, stats_out):
    """Merge REPLUG shards into the utility table (qid, docid, logprob, n_tokens, utility, prompt_hash)."""
    try:
        stats = replug.merge(list(shards), out, length, list(pool_files) or None)
    except (InputFormatError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    with atomic_text(stats_out) as fh:
        json.dump(stats, fh, indent=2)
        fh.write("\n")


if __name__ == "__main__":  # vLLM spawns worker processes that import this file: keep work under the guard
    cli()
