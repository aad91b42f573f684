"""Local GPU jobs never share a device: each claims its own, released when it ends however it ends."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from utilanno import gpus

HOLDER = """
import os, sys, time
from utilanno import gpus
got = gpus.claim(int(sys.argv[1]), poll=0.05)
print(os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def env(tmp_path):
    e = {
        k: v for k, v in os.environ.items() if k not in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES", gpus.CLAIMED)
    }
    return {**e, "UTILANNO_GPUS": "3,5,7", "UTILANNO_GPU_LOCKS": str(tmp_path / "locks")}


def _start(env, n, hold):
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(n), str(hold)], env=env, stdout=subprocess.PIPE, text=True
    )


def test_concurrent_jobs_get_disjoint_devices_and_a_latecomer_waits(env):
    a, b = _start(env, 2, 30), None
    try:
        first = a.stdout.readline().strip().split(",")
        b = _start(env, 1, 30)
        second = b.stdout.readline().strip().split(",")
        assert len(first) == 2 and len(second) == 1 and not set(first) & set(second)
        assert set(first) | set(second) == {"3", "5", "7"}
        c = _start(env, 1, 0)  # every device is held: it waits
        time.sleep(1.0)
        assert c.poll() is None
        a.kill()  # SIGKILL: the kernel drops a's locks
        a.wait()
        third = c.stdout.readline().strip()
        c.wait(timeout=30)
        assert third in first
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_a_child_of_a_claiming_job_uses_its_parents_devices(env):
    code = (
        "import os, subprocess, sys; from utilanno import gpus; gpus.claim(1, poll=0.05); "
        f"subprocess.run([sys.executable, '-c', {HOLDER!r}, '1', '0'], check=True)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"  # the child claimed nothing more (it would wait forever on 3)


def test_slurm_jobs_and_cpu_jobs_claim_nothing(env, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpus.claim(0) is None
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert gpus.claim(1) is None and "CUDA_VISIBLE_DEVICES" not in os.environ


def test_asking_for_more_devices_than_shared_is_an_error(env, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match="needs 4 GPUs, this machine shares 3: 3,5,7"):
        gpus.claim(4)


def test_no_gpus_on_the_machine_means_nothing_to_claim(env, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("UTILANNO_GPUS", "")
    assert gpus.claim(1) is None


@pytest.mark.parametrize(
    "script, function",
    [
        ("annotate.py", "step_cmd"),
        ("annotate.py", "replug_cmd"),
        ("evaluate.py", "encode_corpus_cmd"),
        ("evaluate.py", "search_cmd"),
        ("evaluate.py", "mine_dense_cmd"),
        ("rag.py", "generate_cmd"),
        ("train.py", "train_cmd"),
    ],
)
def test_every_gpu_command_claims_its_devices_first(script, function):
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).parents[1] / "scripts" / script).read_text())
    fn = next(f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == function)
    first = (
        fn.body[1]
        if isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant)
        else fn.body[0]
    )
    assert isinstance(first, ast.Expr) and getattr(first.value.func, "id", None) == "claim_gpus", ast.dump(
        first
    )
