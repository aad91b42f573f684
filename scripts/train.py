"""Training stage: label sets on the annotation pool, and retriever training.

python scripts/train.py labels --pool shard-0.parquet ... --kind utilsel --merged merged.parquet --out X
python scripts/train.py train --init BACKBONE --labels X.parquet --pool shard-0.parquet ... --settings JSON \
    --checkpoint-dir CKPT --processes 8 --out MODEL_DIR

`train` with --processes N > 1 starts itself again under torchrun (N processes, one per GPU; gloo on CPU).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
import polars as pl

from utilanno import logs, tables
from utilanno.atomic import atomic_path
from utilanno.cli import StageGroup
from utilanno.errors import InputFormatError
from utilanno.gpus import claim as claim_gpus
from utilanno.train import labels

log = logs.setup("train")


@click.group(cls=StageGroup)
def cli():
    """Label sets and dense-retriever training."""


def read_pools(files: list[str]) -> pl.DataFrame:
    """qid, human positives and the pool's docids (what the annotator saw) from the pool shards."""
    frames = [tables.read_parquet(f, columns=["qid", "positives", "passages"]) for f in files]
    return pl.concat(frames).select(
        "qid", "positives", pool=pl.col("passages").list.eval(pl.element().struct.field("docid"))
    )


@cli.command("labels")
@click.option(
    "--pool", "pool_files", required=True, multiple=True, type=click.Path(exists=True, dir_okay=False)
)
@click.option("--kind", required=True, help="human, relsel, utilsel, utilrank@K or union.")
@click.option(
    "--merged", type=click.Path(exists=True, dir_okay=False), help="Merged annotation table (LLM sets)."
)
@click.option(
    "--human-positive",
    type=click.Choice(["random", "exclusion", "inclusion"]),
    default="random",
    show_default=True,
)
@click.option("--human-fraction", default=0.0, show_default=True, help="Human positives added ('union').")
@click.option("--subset", default=1.0, show_default=True, help="Keep a seeded fraction of the queries.")
@click.option("--seed", default=42, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def labels_cmd(pool_files, kind, merged, human_positive, human_fraction, subset, seed, out):
    """Write one label set (qid, docid, label) over the annotation pool."""
    base, k = labels.parse_kind(kind)
    pools = read_pools(list(pool_files))
    llm = None
    if base != "human":
        if merged is None:
            raise click.UsageError(f"{kind} labels need --merged (the annotation table)")
        llm = labels.llm_positives("utilsel" if base == "union" else base, tables.read_parquet(merged), k)
    try:
        table = labels.build(pools, base, llm, human_positive, human_fraction, seed)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    if subset < 1.0:
        keep = labels.subset(pools["qid"].to_list(), subset, seed)
        table = table.filter(pl.col("qid").is_in(sorted(keep)))
    with atomic_path(out) as tmp:
        table.write_parquet(tmp)
    per_query = table.group_by("qid").agg(pl.col("label").sum())
    log.info(
        "%s: %d pool queries -> %d queries, %d rows, %.3f positives per query, %d queries without a positive",
        kind,
        pools.height,
        per_query.height,
        table.height,
        per_query["label"].mean() if per_query.height else 0.0,
        (per_query["label"] == 0).sum(),
    )


def _torchrun(nproc: int) -> None:
    """Start this very command again under torchrun with `nproc` processes (it then runs the training)."""
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    os.execv(sys.executable, args + [str(Path(__file__).resolve())] + sys.argv[1:])


@cli.command("train")
@click.option("--init", "init_model", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--labels", "labels_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--pool", "pool_files", required=True, multiple=True, type=click.Path(exists=True, dir_okay=False)
)
@click.option(
    "--settings", "settings_json", required=True, help="Training settings as JSON (train.Settings)."
)
@click.option("--checkpoint-dir", required=True, type=click.Path(file_okay=False))
@click.option(
    "--processes", "nproc", default=1, show_default=True, help="Processes (GPUs) of the job; > 1: torchrun."
)
@click.option("--gpus", default=0, show_default=True, help="GPUs of the job (claimed on a local machine).")
@click.option("--threads", default=None, type=int, help="torch CPU threads per process.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
def train_cmd(init_model, labels_file, pool_files, settings_json, checkpoint_dir, nproc, gpus, threads, out):
    """Train a retriever on one label set; resumes from --checkpoint-dir after a kill."""
    claim_gpus(gpus)
    if nproc > 1 and "LOCAL_RANK" not in os.environ:
        _torchrun(nproc)
    import torch

    from utilanno.train import trainer as train

    if threads:
        torch.set_num_threads(threads)
    try:
        settings = train.Settings(**json.loads(settings_json))
    except (TypeError, ValueError) as err:
        raise click.ClickException(f"--settings: {err}") from None
    try:
        train.train(init_model, labels_file, list(pool_files), out, checkpoint_dir, settings)
    except (InputFormatError, ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None


if __name__ == "__main__":
    cli()
