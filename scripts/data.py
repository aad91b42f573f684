"""Data stage: download/verify raw sources, generate the tiny world, convert raw tables to normalized ones.

python scripts/data.py download --url URL --dest FILE [--md5 X] [--sha256 Y]
python scripts/data.py corpus --raw FILE [--member M] --format F --out corpus.parquet
python scripts/data.py queries|qrels|answers|pool ...
python scripts/data.py tiny-world --out DIR [--seed N ...]
"""

from __future__ import annotations

import functools

import click

from utilanno import logs
from utilanno.cli import StageGroup
from utilanno.data import convert, download, gold_answers, train_pool
from utilanno.errors import InputFormatError
from utilanno.testing import tinyworld

log = logs.setup("data")


def _fail_cleanly(fn):
    """Input errors end the command with their file:line message, not a traceback."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (InputFormatError, download.ChecksumError, download.DownloadError, FileNotFoundError) as err:
            log.error("%s", err)
            raise click.ClickException(str(err)) from None

    return run


@click.group(cls=StageGroup)
def cli():
    """Data stage of the utility-annotation workflow."""


raw_options = [
    click.option(
        "--raw", "raw", required=True, type=click.Path(dir_okay=False), help="Raw file (or archive)."
    ),
    click.option("--member", default=None, help="File inside the archive."),
]


def with_raw(fn):
    for opt in reversed(raw_options):
        fn = opt(fn)
    return fn


@cli.command("download")
@click.option("--url", default=None, help="http(s):// or file:// URL.")
@click.option(
    "--path", "local", default=None, type=click.Path(dir_okay=False), help="Local file instead of a URL."
)
@click.option("--dest", required=True, type=click.Path(dir_okay=False))
@click.option("--md5", default=None)
@click.option("--sha256", default=None)
@click.option("--retries", default=5, show_default=True)
@click.option(
    "--manifest",
    default=None,
    type=click.Path(dir_okay=False),
    help="JSON of size and sha256 per source without a checksum: recorded on first download, then verified.",
)
@_fail_cleanly
def download_cmd(url, local, dest, md5, sha256, retries, manifest):
    """Fetch one source resumably and verify its checksum(s) (or its manifest entry)."""
    if (url is None) == (local is None):
        raise click.UsageError("give exactly one of --url or --path")
    download.fetch(
        url, local, dest, md5=md5 or None, sha256=sha256 or None, retries=retries, manifest=manifest
    )


@cli.command("corpus")
@with_raw
@click.option("--format", "fmt", required=True, type=click.Choice(convert.CORPUS_FORMATS))
@click.option("--titles", help="Member of the same source with pid<TAB>title lines, joined by pid.")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@_fail_cleanly
def corpus_cmd(raw, member, fmt, titles, out):
    """Raw corpus -> corpus.parquet (docid, title, text)."""
    convert.convert_corpus(raw, member, fmt, out, titles)


@cli.command("queries")
@with_raw
@click.option("--format", "fmt", required=True, type=click.Choice(convert.QUERY_FORMATS))
@click.option(
    "--judged-by", default=None, type=click.Path(dir_okay=False), help="Keep only queries in these qrels."
)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@_fail_cleanly
def queries_cmd(raw, member, fmt, judged_by, out):
    """Raw queries -> queries-{split}.parquet (qid, text)."""
    convert.convert_queries(raw, member, fmt, out, restrict_qrels=judged_by)


@cli.command("qrels")
@with_raw
@click.option("--format", "fmt", required=True, type=click.Choice(["trec-qrels", "beir-qrels"]))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@_fail_cleanly
def qrels_cmd(raw, member, fmt, out):
    """Raw judgments -> qrels-{split}.trec (qid 0 docid rel)."""
    convert.convert_qrels(raw, member, fmt, out)


@cli.command("answers")
@with_raw
@click.option("--format", "fmt", required=True, type=click.Choice(sorted(gold_answers.ANSWER_FORMATS)))
@click.option("--queries", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@_fail_cleanly
def answers_cmd(raw, member, fmt, queries, out):
    """Gold answers for a split's queries -> answers-{split}.parquet (qid, answers)."""
    gold_answers.convert_answers(raw, member, fmt, queries, out)


@cli.command("pool")
@with_raw
@click.option("--format", "fmt", required=True, type=click.Choice(sorted(train_pool.POOL_FORMATS)))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@_fail_cleanly
def pool_cmd(raw, member, fmt, out):
    """Training file (Tevatron JSONL or DPR biencoder JSON) -> train-pool.parquet (qid, query, positives,
    negatives)."""
    train_pool.convert_pool(raw, member, fmt, out)


@cli.command("tiny-world")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True)
@click.option("--topics", default=24, show_default=True)
@click.option("--passages", default=1200, show_default=True)
@click.option("--train-queries", default=64, show_default=True)
@click.option("--dev-queries", default=40, show_default=True)
@click.option("--dl-queries", default=8, show_default=True)
@click.option("--negatives", default=30, show_default=True)
@click.option("--beir", default="scifact,nq,hotpotqa,cqadupstack", show_default=True, help="Comma-separated.")
def tiny_world_cmd(out, seed, topics, passages, train_queries, dev_queries, dl_queries, negatives, beir):
    """Write the deterministic synthetic tiny world in the official raw formats."""
    written = tinyworld.generate(
        out,
        seed=seed,
        topics=topics,
        passages=passages,
        train_queries=train_queries,
        dev_queries=dev_queries,
        dl_queries=dl_queries,
        negatives=negatives,
        beir=[b for b in beir.split(",") if b],
    )
    log.info("tiny world: %d files under %s", len(written), out)


if __name__ == "__main__":
    cli()
