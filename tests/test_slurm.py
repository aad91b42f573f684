"""The tiny workflow through a real single-node SLURM cluster on this machine (profiles/slurm-ci).

Brings up Debian's Slurm (installed if missing) with a fake GPU, runs the tiny config with the annotator
asking for a GPU, checks the job records, then cancels a running annotation job and shows that a rerun
completes with outputs identical to the undisturbed run. Every daemon is stopped by PID afterwards.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import signal
import subprocess
import time

import polars as pl
import pytest
import slurm_cluster
from conftest import ENV, REPO, SNAKEMAKE, snakemake

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(slurm_cluster.available() is not None, reason=str(slurm_cluster.available())),
]
PROFILE = str(REPO / "profiles" / "slurm-ci")
GPU_RULES = {"annotate", "replug"}
STEPS = ("relsel", "pseudo_answer", "utilsel", "utilrank")
# Annotation, REPLUG scoring and one curriculum training (stage 1, then the rest) through SLURM. The other
# trainings and the evaluation jobs are submitted the same way and are left out to keep the test within
# minutes (each SLURM job costs ~10 s of Snakemake start-up and scheduling here).
TARGETS = [
    "annotate_only",
    "results-tiny/annotate/msmarco/tiny-qwen2/replug/merged.parquet",
    "results-tiny/retrievers/tiny-utilsel-cl50",
]
RERUN = ["annotate_only"]  # the cancel test compares annotation outputs only


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with slurm_cluster.LocalSlurm(tmp_path_factory.mktemp("slurm")) as c:
        yield c
    # nothing may outlive the test: no daemon of ours, no job
    leftover = subprocess.run(["pgrep", "-x", "slurmctld|slurmd|munged"], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", f"daemons left running: {leftover.stdout}"


def where(work):
    return [
        "--profile",
        PROFILE,
        "--configfile",
        str(work / "tiny.yaml"),
        str(REPO / "tests/config/slurm-gpu.yaml"),
        "--directory",
        str(work),
    ]


@pytest.fixture(scope="module")
def slurm_run(cluster, tiny_work, tmp_path_factory):
    """The tiny workflow up to trained retrievers through SLURM, from nothing but tiny_work's config and
    prompts."""
    work = tmp_path_factory.mktemp("slurm-work")
    shutil.copy2(tiny_work / "tiny.yaml", work / "tiny.yaml")
    shutil.copytree(tiny_work / "prompts", work / "prompts")
    snakemake(*TARGETS, *where(work), timeout=2400)
    return work


def same(a, b) -> bool:
    """Equal content: tables compared as tables (Parquet bytes depend on writer settings), text as bytes."""
    if a.suffix == ".parquet":
        return pl.read_parquet(a).equals(pl.read_parquet(b))
    return filecmp.cmp(a, b, shallow=False)


def by_rule(jobs):
    out = {}
    for job in jobs:
        comment = job.get("Comment", "")
        if comment.startswith("rule_"):
            out.setdefault(comment[5:].split("_wildcards_")[0], []).append(job)
    return out


def test_tiny_workflow_runs_through_slurm_with_gpu_jobs_on_the_gpu_partition(cluster, slurm_run, tiny_work):
    rules = by_rule(cluster.jobs())
    assert GPU_RULES <= set(rules), f"no SLURM jobs for {GPU_RULES - set(rules)}"
    for name in GPU_RULES:
        for job in rules[name]:
            assert job["Partition"] == "gpu"
            assert "gpu:1" in job.get("TresPerJob", ""), job  # sbatch --gpus=1
            assert job["JobState"] == "COMPLETED"
    steps = {s for job in rules["annotate"] for s in STEPS if f"_{s}_" in job["Comment"]}
    assert steps == set(STEPS), job["Comment"]  # every annotation step went to the GPU partition
    for name in ("corpus", "pool", "merge_annotations", "labels", "train"):
        assert all(j["Partition"] == "debug" and "gpu" not in j.get("TresPerJob", "") for j in rules[name])
    assert "queries" not in rules and "download" not in rules  # light rules stay local
    # the same results as the local run of the same config
    for sub in (
        "data/msmarco/corpus.parquet",
        "annotate/msmarco/tiny-qwen2/utilsel/shard-0.jsonl",
        "annotate/msmarco/tiny-qwen2/utilrank/merged.parquet",
        "annotate/msmarco/tiny-qwen2/replug/merged.parquet",
        "labels/msmarco/tiny-qwen2/utilsel.parquet",
        "retrievers/tiny-utilsel-cl50/model.safetensors",
    ):
        assert same(slurm_run / "results-tiny" / sub, tiny_work / "results-tiny" / sub), sub


def test_a_cancelled_job_reruns_to_the_undisturbed_outputs(cluster, slurm_run, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(slurm_run, work, symlinks=True, ignore=shutil.ignore_patterns(".snakemake"))
    shard = work / "results-tiny/annotate/msmarco/tiny-qwen2/relsel/shard-0.jsonl"
    for lost in (shard, shard.with_name("merged.parquet"), shard.with_name("stats.json")):
        lost.unlink()  # so relsel shard 0, its merge and the later steps of shard 0 run again
    partial = shard.with_name(shard.name + ".partial")
    proc = subprocess.Popen(
        [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), *RERUN, *where(work), "--retries", "0"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        end = time.time() + 900
        while not (partial.exists() and len(partial.read_bytes().splitlines()) >= 9):  # one batch done
            if proc.poll() is not None or time.time() > end:
                pytest.fail(f"the relsel job never checkpointed a batch:\n{proc.communicate()[0][-5000:]}")
            time.sleep(0.2)
        running = [
            j
            for j in cluster.jobs()
            if j.get("Comment", "").startswith("rule_annotate_")
            and "_relsel_" in j["Comment"]
            and j["JobState"] == "RUNNING"
        ]
        assert len(running) == 1
        subprocess.run(["scancel", running[0]["JobId"]], check=True)
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    assert proc.returncode != 0, output[-3000:]
    assert not shard.exists() and partial.exists()
    snakemake(*RERUN, *where(work), timeout=1800)  # the rerun
    for path in sorted((slurm_run / "results-tiny/annotate").rglob("*")):
        if path.is_file() and path.suffix in (".jsonl", ".parquet"):
            rel = path.relative_to(slurm_run)
            assert same(path, work / rel), f"{rel} differs after the rerun"
    assert "resuming after" in (work / "results-tiny/logs/relsel/msmarco/tiny-qwen2/shard-0.log").read_text()
