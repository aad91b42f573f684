"""RAG stage: answers from a retriever's top passages, one shard at a time; QA metrics per system.

python scripts/rag.py generate --queries Q --answers A --run R --corpus C --prompt P --llm JSON
    --shard 0 --shards 2 --top-k 5 --max-tokens 512 --out shard-0.jsonl
python scripts/rag.py score --dataset NAME METRICS QUERIES ANSWERS QRELS --shard S ... [--bertscore-model M]
    --answers-out answers.parquet --out metrics.parquet
(The results table is `scripts/evaluate.py table` over the RAG metrics folder.)
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from utilanno import logs
from utilanno.cli import StageGroup
from utilanno.errors import InputFormatError
from utilanno.gpus import claim as claim_gpus

log = logs.setup("rag")
FILE = click.Path(exists=True, dir_okay=False)


@click.group(cls=StageGroup)
def cli():
    """Retrieval-augmented answers and their QA metrics (PAPER-SPEC G)."""


@cli.command("generate")
@click.option("--queries", required=True, type=FILE, help="queries-<split>.parquet (qid, text).")
@click.option("--answers", required=True, type=FILE, help="answers-<split>.parquet (qid, answers).")
@click.option("--run", "run_file", required=True, type=FILE, help="The retriever's TREC run of the split.")
@click.option("--corpus", required=True, type=FILE, help="corpus.parquet the run's docids come from.")
@click.option("--prompt", "prompt_file", required=True, type=FILE)
@click.option("--llm", "llm_json", required=True, help="The llms.<name> config entry as JSON.")
@click.option("--shard", required=True, type=int)
@click.option("--shards", required=True, type=int)
@click.option("--top-k", required=True, type=click.IntRange(min=1), help="Passages given to the generator.")
@click.option("--max-tokens", default=512, show_default=True, type=click.IntRange(min=1))
@click.option("--gpus", default=None, type=int, help="GPUs of this job (vLLM tensor parallel size).")
@click.option("--threads", default=1, show_default=True, help="CPU threads for the transformers engine.")
@click.option(
    "--batch-queries", default=64, show_default=True, help="Queries per engine call and checkpoint."
)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def generate_cmd(
    queries,
    answers,
    run_file,
    corpus,
    prompt_file,
    llm_json,
    shard,
    shards,
    top_k,
    max_tokens,
    gpus,
    threads,
    batch_queries,
    out,
):
    """Answer one shard of a dataset's answerable queries, greedily (resumable)."""
    claim_gpus(gpus or 0)
    from utilanno.annotate import prompts
    from utilanno.rag import generate as rag

    try:
        prompt = prompts.load(prompt_file)
        rag.generate_shard(
            queries,
            answers,
            run_file,
            corpus,
            prompt,
            json.loads(llm_json),
            out,
            shard,
            shards,
            top_k,
            max_tokens,
            gpus=gpus,
            threads=threads,
            batch_queries=batch_queries,
        )
    except (InputFormatError, ValueError) as err:
        raise click.ClickException(str(err)) from None


@cli.command("score")
@click.option(
    "--dataset",
    "datasets",
    required=True,
    multiple=True,
    type=(str, click.Choice(["em_f1", "rouge_bleu"]), click.Choice(["msmarco", "squad"]), FILE, FILE, FILE),
    help="NAME METRICS TOKENIZATION QUERIES ANSWERS QRELS, once per dataset.",
)
@click.option(
    "--shard", "shards", required=True, multiple=True, type=FILE, help=".../<dataset>/shard-K.jsonl"
)
@click.option(
    "--bertscore-model", default=None, help="BERTScore model for rouge_bleu datasets (else skipped)."
)
@click.option("--bertscore-layer", default=None, type=int)
@click.option("--bertscore-model-type", default=None, help="bert-score's name of the model (default layer).")
@click.option("--bertscore-idf", is_flag=True)
@click.option("--bertscore-rescale-with-baseline", is_flag=True)
@click.option("--bertscore-lang", default="en", show_default=True)
@click.option("--bertscore-baseline-path", default=None, type=FILE)
@click.option("--threads", default=None, type=int)
@click.option("--answers-out", required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def score_cmd(
    datasets,
    shards,
    bertscore_model,
    bertscore_layer,
    bertscore_model_type,
    bertscore_idf,
    bertscore_rescale_with_baseline,
    bertscore_lang,
    bertscore_baseline_path,
    threads,
    answers_out,
    out,
):
    """Merge one system's answer shards and score them (per query; BLEU per corpus)."""
    from utilanno.rag import generate as rag

    spec = {}
    for name, kind, tokens, queries, answers, qrels in datasets:
        mine = [s for s in shards if Path(s).parent.name == name]
        if not mine:
            raise click.UsageError(f"no --shard file under a folder named {name!r}")
        spec[name] = {"metrics": kind, "tokenization": tokens, "queries": queries, "answers": answers}
        spec[name] |= {"qrels": qrels, "shards": mine}
    stray = set(shards) - {s for d in spec.values() for s in d["shards"]}
    if stray:
        raise click.UsageError(f"shard files of no --dataset: {sorted(stray)}")
    scorer = None
    if bertscore_model:
        from utilanno.rag.bertscore import BertScorer

        if threads:
            import torch

            torch.set_num_threads(threads)
        try:
            scorer = BertScorer(
                bertscore_model,
                bertscore_layer,
                model_type=bertscore_model_type,
                idf=bertscore_idf,
                rescale_with_baseline=bertscore_rescale_with_baseline,
                lang=bertscore_lang,
                baseline_path=bertscore_baseline_path,
            )
        except (ValueError, FileNotFoundError) as err:
            raise click.ClickException(str(err)) from None
    else:
        log.info("BERTScore skipped: no --bertscore-model (rag.bertscore_model is null)")
    try:
        rag.score(spec, answers_out, out, scorer)
    except (InputFormatError, ValueError) as err:
        raise click.ClickException(str(err)) from None


if __name__ == "__main__":  # vLLM spawns worker processes that import this file: keep work under the guard
    cli()
