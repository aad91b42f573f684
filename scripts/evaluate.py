"""Evaluation stage: corpus/query encoding, dense search, BM25, metrics, and the results table.

python scripts/evaluate.py encode-corpus --model M --corpus C --shard 0 --shards 8 --out X.npy --ids X.ids
python scripts/evaluate.py search --model M --queries Q --shard X.npy X.ids ... --queries-out Q.npy Q.ids
    --depth 1000 --tag T --out R
python scripts/evaluate.py mine-dense --model M --corpus C --queries Q --depth 100 --tag T --out R
python scripts/evaluate.py bm25-index --corpus corpus.parquet --out INDEX_DIR
python scripts/evaluate.py bm25-search --index INDEX_DIR --queries queries.parquet --depth 1000 --out run.trec
python scripts/evaluate.py metrics --eval DATASET RUN QRELS 0 ... --spec JSON --out X.parquet
python scripts/evaluate.py table --spec JSON --out results.tsv --significance significance.tsv
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from utilanno import logs
from utilanno.atomic import atomic_path
from utilanno.cli import StageGroup
from utilanno.errors import InputFormatError
from utilanno.gpus import claim as claim_gpus

log = logs.setup("evaluate")
FILE = click.Path(exists=True, dir_okay=False)


@click.group(cls=StageGroup)
def cli():
    """Encoding, search, BM25 and metrics."""


def _fail(err: Exception):
    raise click.ClickException(str(err)) from None


@cli.command("encode-corpus")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--corpus", required=True, type=FILE)
@click.option("--shard", required=True, type=int)
@click.option("--shards", required=True, type=int)
@click.option("--batch-size", default=256, show_default=True)
@click.option("--gpus", default=0, show_default=True)
@click.option("--threads", default=None, type=int)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--ids", "ids_out", required=True, type=click.Path(dir_okay=False))
@click.option("--max-len", type=click.IntRange(min=1), help="Passage tokens [default: the training length].")
@click.option("--passage-text", type=click.Choice(["sep", "space"]), default="sep", show_default=True)
def encode_corpus_cmd(
    model, corpus, shard, shards, batch_size, gpus, threads, out, ids_out, max_len, passage_text
):
    """Encode one corpus shard (float16 .npy + ids)."""
    claim_gpus(gpus or 0)
    from utilanno.evaluate import dense as index

    _threads(threads)
    try:
        index.encode_corpus(
            model, corpus, shard, shards, out, ids_out, batch_size, gpus, max_len, passage_text
        )
    except (ValueError, FileNotFoundError) as err:
        _fail(err)


@cli.command("search")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--queries", required=True, type=FILE, help="Queries table (qid, text).")
@click.option(
    "--shard", "shards", required=True, multiple=True, nargs=2, type=FILE, help="NPY IDS of a shard."
)
@click.option("--depth", default=1000, show_default=True)
@click.option("--index-factory", default="Flat", show_default=True)
@click.option("--batch-size", default=256, show_default=True)
@click.option("--gpus", default=0, show_default=True)
@click.option("--threads", default=None, type=int)
@click.option("--tag", required=True, help="Run tag (the experiment name).")
@click.option("--drop-self-hits", is_flag=True, help="BEIR: a hit whose id is the query's does not count.")
@click.option(
    "--query-max-len", type=click.IntRange(min=1), help="Query tokens [default: the training length]."
)
@click.option(
    "--queries-out", required=True, nargs=2, type=click.Path(dir_okay=False), help="NPY IDS to write."
)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def search_cmd(
    model,
    queries,
    shards,
    depth,
    index_factory,
    batch_size,
    gpus,
    threads,
    tag,
    drop_self_hits,
    query_max_len,
    queries_out,
    out,
):
    """Encode the queries, then top-depth passages per query over all corpus shards -> TREC run."""
    claim_gpus(gpus or 0)
    from utilanno.evaluate import dense as index
    from utilanno.evaluate import runfiles as runs

    _threads(threads)
    try:
        index.encode_queries(model, queries, queries_out[0], queries_out[1], batch_size, gpus, query_max_len)
        table = index.search(
            list(shards), queries_out[0], queries_out[1], depth, index_factory, drop_self_hits=drop_self_hits
        )
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        _fail(err)
    n = runs.write_run(out, table, tag, depth)
    log.info("%s: %d lines", out, n)


def _threads(n):
    if n:
        import torch

        torch.set_num_threads(n)


@cli.command("mine-dense")
@click.option("--model", required=True, help="Retriever folder (trained here), model folder or hub id.")
@click.option("--pooling", type=click.Choice(["cls", "mean"]), help="[default: the model's own, else cls]")
@click.option("--corpus", required=True, type=FILE)
@click.option("--queries", required=True, type=FILE, help="Queries table (qid, text) to mine candidates for.")
@click.option("--depth", default=100, show_default=True)
@click.option("--passage-max-len", type=click.IntRange(min=1), help="[default: the training length]")
@click.option("--query-max-len", type=click.IntRange(min=1), help="[default: the training length]")
@click.option("--passage-text", type=click.Choice(["sep", "space"]), default="sep", show_default=True)
@click.option("--drop-self-hits", is_flag=True, help="BEIR: a hit whose id is the query's does not count.")
@click.option("--batch-size", default=256, show_default=True)
@click.option("--gpus", default=0, show_default=True)
@click.option("--threads", default=None, type=int)
@click.option("--tag", required=True, help="Run tag (the retriever's name).")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def mine_dense_cmd(
    model,
    pooling,
    corpus,
    queries,
    depth,
    passage_max_len,
    query_max_len,
    passage_text,
    drop_self_hits,
    batch_size,
    gpus,
    threads,
    tag,
    out,
):
    """Candidate mining with a dense retriever: encode the whole corpus and the queries, exact search ->
    TREC run of the top `depth` per query (the embeddings are scratch, removed after the search)."""
    claim_gpus(gpus or 0)
    import shutil
    import tempfile

    from utilanno.evaluate import dense as index
    from utilanno.evaluate import runfiles as runs

    _threads(threads)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".mine-dense-", dir=Path(out).parent))
    try:
        table = index.dense_run(
            model, corpus, queries, depth, work, pooling, batch_size, gpus, passage_max_len, query_max_len,
            passage_text, drop_self_hits,
        )  # fmt: skip
    except (ValueError, RuntimeError, OSError) as err:
        _fail(err)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = runs.write_run(out, table, tag, depth)
    log.info("%s: %d lines", out, n)


@cli.command("bm25-index")
@click.option("--corpus", required=True, type=FILE)
@click.option("--threads", default=1, show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False))
def bm25_index_cmd(corpus, threads, out):
    """Lucene index of a corpus (Anserini, English analyzer)."""
    from utilanno.evaluate import bm25

    try:
        bm25.index(corpus, out, threads)
    except (bm25.BM25Unavailable, ValueError, InputFormatError) as err:
        _fail(err)


@cli.command("bm25-search")
@click.option("--index", "index_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--queries", required=True, type=FILE)
@click.option("--depth", default=1000, show_default=True)
@click.option("--threads", default=1, show_default=True)
@click.option("--drop-self-hits", is_flag=True, help="BEIR: a hit whose id is the query's does not count.")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def bm25_search_cmd(index_dir, queries, depth, threads, drop_self_hits, out):
    """BM25 (k1 0.9, b 0.4) run of the queries."""
    from utilanno.evaluate import bm25
    from utilanno.evaluate import runfiles as runs

    try:
        table = bm25.search(index_dir, queries, depth, threads=threads, drop_self_hits=drop_self_hits)
    except (bm25.BM25Unavailable, ValueError, InputFormatError) as err:
        _fail(err)
    runs.write_run(out, table, "bm25", depth)


@cli.command("metrics")
@click.option(
    "--eval",
    "evals",
    required=True,
    multiple=True,
    nargs=4,
    help="DATASET RUN QRELS BEIR(0/1); QRELS '-': none (answer measures only).",
)
@click.option(
    "--answers",
    "answer_files",
    multiple=True,
    nargs=3,
    help="DATASET ANSWERS CORPUS: gold answers for the dataset's top-k accuracy measures (Top20, ...).",
)
@click.option("--spec", "spec_json", required=True, help="JSON: measures per dataset.")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def metrics_cmd(evals, answer_files, spec_json, out):
    """Per-query metric values of one system on its datasets (trec_eval -c: a judged query missing from the
    run scores 0). BEIR runs drop hits whose docid is the query id, as BEIR's evaluator does. Top-k answer
    accuracy (DPR's has_answer) is scored against the gold answers of --answers."""
    import polars as pl

    from utilanno.data import convert
    from utilanno.evaluate import answer_match, metrics
    from utilanno.evaluate import runfiles as runs

    measures = json.loads(spec_json)
    answers = {d: (a, c) for d, a, c in answer_files}
    frames = []
    for dataset, run_file, qrels, beir in evals:
        top_k = [m for m in measures[dataset] if answer_match.parse_measure(m)]
        ir = [m for m in measures[dataset] if m not in top_k]
        try:
            run = runs.read_run(run_file)
            if beir == "1":
                run = runs.drop_self_hits(run)
            if ir and qrels == "-":
                raise ValueError(f"{', '.join(ir)} need qrels, and dataset {dataset!r} has none")
            parts = [metrics.evaluate(convert.read_qrels(qrels), run, ir)] if ir else []
            if top_k:
                if dataset not in answers:
                    raise ValueError(f"{', '.join(top_k)} need --answers for dataset {dataset!r}")
                parts.append(answer_match.evaluate_file(run, *answers[dataset], top_k))
            per_query = pl.concat(parts)
        except (ValueError, InputFormatError, KeyError) as err:
            _fail(f"{run_file}: {err}")
        summary = metrics.summarize(per_query)
        log.info("%s: %s", run_file, json.dumps(dict(summary.select("measure", "value").iter_rows())))
        frames.append(
            per_query.with_columns(dataset=pl.lit(dataset)).select("dataset", "qid", "measure", "value")
        )
    with atomic_path(out) as tmp:
        pl.concat(frames).write_parquet(tmp)


@cli.command("table")
@click.option(
    "--spec", "spec_json", required=True, help="JSON: metrics folder, systems, datasets, groups, baselines."
)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--significance", "sig_out", required=True, type=click.Path(dir_okay=False))
def table_cmd(spec_json, out, sig_out):
    """The long results table (system, dataset, measure, value, n_queries) and the paired t-tests."""
    from utilanno.evaluate import results_table as results

    spec = json.loads(spec_json)
    try:
        table, sig = results.build(spec)
    except ValueError as err:
        _fail(err)
    for frame, path in ((table, out), (sig, sig_out)):
        with atomic_path(path) as tmp:
            frame.write_csv(tmp, separator="\t", float_precision=6)
    log.info("%d result rows, %d significance rows", table.height, sig.height)


if __name__ == "__main__":
    cli()
