"""Overhead of our annotation step over a bare engine loop, on the same prompts, in one run.

    .venv/bin/python benchmarks/annotate_overhead.py [--engine transformers|vllm] [--queries 48] [--rounds 3]

"bare": engine.chat over the pre-rendered RelSel conversations, in the same batches. "ours": the whole step
as a shard job runs it: pool rows -> tasks (prompt rendering) -> engine -> parsing -> checkpointed JSONL
(fsync per batch) -> atomic publish. Both use one engine instance (model loading is excluded from both).
Rounds alternate bare/ours; medians are compared. Results are appended to benchmarks/annotate_overhead.md.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]


def world(d: Path, queries: int) -> tuple[Path, Path]:
    import polars as pl

    from utilanno.annotate import pools
    from utilanno.data import convert, train_pool
    from utilanno.testing import tinymodels, tinyworld

    tinyworld.generate(
        d / "tw", passages=max(400, queries * 4), train_queries=queries, dev_queries=4, dl_queries=2, beir=[]
    )
    convert.convert_corpus(
        d / "tw/msmarco/collectionandqueries.tar.gz", "collection.tsv", "msmarco-tsv", d / "corpus.parquet"
    )
    train_pool.convert_pool(d / "tw/msmarco/train-tevatron.jsonl", None, "tevatron", d / "pool-input.parquet")
    pools.build(
        d / "pool-input.parquet", d / "corpus.parquet", [d / "shard.parquet"], 30, 16, 1, "shuffle", 42
    )
    model = tinymodels.build_tiny_qwen2(d / "tiny-qwen2")
    assert pl.read_parquet(d / "shard.parquet").height == queries
    return d / "shard.parquet", model


@click.command()
@click.option("--engine", "engine_name", type=click.Choice(["transformers", "vllm"]), default="transformers")
@click.option("--queries", default=48, show_default=True)
@click.option("--batch-queries", default=8, show_default=True)
@click.option("--rounds", default=3, show_default=True)
@click.option("--record/--no-record", default=True, help="Append the figures to annotate_overhead.md.")
def main(engine_name, queries, batch_queries, rounds, record):
    import polars as pl
    import torch

    from utilanno.annotate import engines, prompts
    from utilanno.annotate import steps as annotate

    torch.set_num_threads(1)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        shard, model = world(d, queries)
        llm = {
            "engine": engine_name,
            "model": str(model),
            "dtype": "float32",
            "max_model_len": 4096,
            "batch_size": 2 * batch_queries,
            "enforce_eager": True,
            "gpus": 0,
        }
        engine = engines.create(llm, gpus=0, threads=1)
        sampling = engines.Sampling(max_tokens=40)
        prompt = prompts.load(REPO / "prompts/relsel.yaml")
        rows = pl.read_parquet(shard)
        rendered = annotate.relsel_tasks(rows, prompt, 300)
        batches = [rendered[i : i + batch_queries] for i in range(0, len(rendered), batch_queries)]

        def bare():
            for batch in batches:
                convs = [c for t in batch for c in t.conversations]
                guides = [g for t in batch for g in t.guides("selection")]
                engine.chat(convs, sampling, guides)

        def ours(k):
            tasks = annotate.relsel_tasks(pl.read_parquet(shard), prompt, 300)
            annotate.run_shard(
                "relsel", tasks, engine, "bench", sampling, "selection", d / f"out-{k}.jsonl", batch_queries
            )

        bare()  # warm-up (first calls allocate)
        times = {"bare": [], "ours": []}
        for k in range(rounds):
            for name, fn in (("bare", bare), ("ours", lambda k=k: ours(k))):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        engine.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    overhead = (med["ours"] - med["bare"]) / med["bare"]
    lines = [
        f"## {datetime.datetime.now():%Y-%m-%d %H:%M} ({engine_name})",
        "",
        f"- command: `.venv/bin/python benchmarks/annotate_overhead.py --engine {engine_name} --queries {queries}"
        f" --batch-queries {batch_queries} --rounds {rounds}`",
        f"- machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}; tiny Qwen2, 1 thread",
        f"- work: {queries} queries x 2 RelSel windows of 16 passages, structured output, 40 new tokens",
        f"- bare s: {', '.join(f'{t:.2f}' for t in times['bare'])} (median {med['bare']:.2f})",
        f"- ours s: {', '.join(f'{t:.2f}' for t in times['ours'])} (median {med['ours']:.2f})",
        f"- overhead: **{100 * overhead:+.1f}%** of the bare time (target < 10%)",
        "",
    ]
    print("\n".join(lines))
    if record:
        path = REPO / "benchmarks" / "annotate_overhead.md"
        if not path.exists():
            path.write_text(
                "# Benchmark: annotation step overhead over a bare engine loop\n\n"
                "Target: our step's wall time within 10% of the bare engine calls on the same prompts.\n\n"
            )
        with open(path, "a") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":  # vLLM spawns workers
    main()
