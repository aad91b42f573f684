"""Annotation through Snakemake on the tiny config: every step's outputs and statistics, a prompt edit
reruns exactly what it touches, and a shard job killed mid-way reruns to the same output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import polars as pl
import pytest
from conftest import ENV, REPO, SNAKEMAKE, job_counts, snakemake, step_job_counts

pytestmark = pytest.mark.slow
STEPS = ("relsel", "pseudo_answer", "utilsel", "utilrank")


def test_every_step_has_outputs_and_statistics(tiny_work):
    ann = tiny_work / "results-tiny" / "annotate" / "msmarco" / "tiny-qwen2"
    for step in STEPS:
        shards = sorted((ann / step).glob("shard-*.jsonl"))
        assert len(shards) == 2 and not list((ann / step).glob("*.partial"))
        stats = json.loads((ann / step / "stats.json").read_text())
        assert stats["queries"] == 64
        assert stats["prompt_tokens"] > 0 and stats["wall_seconds"] > 0
        table = pl.read_parquet(ann / step / "merged.parquet")
        assert table.height == 64 and table["qid"].n_unique() == 64
    relsel = json.loads((ann / "relsel" / "stats.json").read_text())
    assert relsel["statuses"] == {"parsed": 128}  # two windows per query; structured output always parses
    assert 0 <= relsel["recall"] <= 1 and relsel["avg_positives"] > 0
    answers = json.loads((ann / "pseudo_answer" / "stats.json").read_text())
    assert answers["answered"] + answers["no_passages"] == 64 and answers["answered"] > 0
    rank = json.loads((ann / "utilrank" / "stats.json").read_text())
    assert set(rank["topk"]) == {"10", "50"}
    assert rank["topk"]["10"]["avg_positives"] <= rank["topk"]["50"]["avg_positives"]


@pytest.mark.parametrize(
    "step, expected",
    [
        ("utilsel", {"utilsel": 3, "merge_annotations": 2}),
        ("utilrank", {"utilrank": 2, "merge_annotations": 1}),
        ("pseudo_answer", {"pseudo_answer": 3, "utilsel": 3, "utilrank": 2, "merge_annotations": 5}),
        ("relsel", {"relsel": 3, "pseudo_answer": 3, "utilsel": 3, "utilrank": 2, "merge_annotations": 7}),
    ],
    # annotation jobs by step (one rule, `annotate`, runs every step); merges in total. Both runs read the
    # same prompt files: MS MARCO's 2 shards and the own corpus's 1 (which has no UtilRank)
)
def test_editing_a_prompt_reruns_exactly_its_step_and_dependants(tiny_copy, step, expected):
    where = ["--configfile", str(tiny_copy / "tiny.yaml"), "--directory", str(tiny_copy)]
    before = snakemake("-n", "annotate_only", *where)
    assert "Nothing to be done" in before.stdout + before.stderr
    prompt = tiny_copy / "prompts" / f"{step}.yaml"
    prompt.write_text(prompt.read_text().replace("passages", "passages ", 1))
    after = snakemake("-n", "annotate_only", *where)
    out = after.stdout + after.stderr
    counts = job_counts(out)
    counts.pop("annotate_only")
    by_step = step_job_counts(out)
    annotation = {k.split(":")[1]: v for k, v in by_step.items() if k.startswith("annotate:")}
    merges = {k.split(":")[1] for k in by_step if k.startswith("merge_annotations:")}
    assert {**annotation, "merge_annotations": counts.get("merge_annotations", 0)} == expected
    assert set(counts) == {"annotate", "merge_annotations"}
    assert merges == set(annotation)  # each rerun step is merged again, nothing else


def test_a_killed_shard_job_reruns_to_the_uninterrupted_output(tiny_copy):
    """SIGKILL the whole Snakemake process group once the shard has checkpointed a batch; rerun."""
    target = "results-tiny/annotate/msmarco/tiny-qwen2/relsel/shard-0.jsonl"
    uninterrupted = (tiny_copy / target).read_bytes()
    (tiny_copy / target).unlink()
    partial = tiny_copy / (target + ".partial")
    where = ["--configfile", str(tiny_copy / "tiny.yaml"), "--directory", str(tiny_copy)]
    args = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), target, *where, "--cores", "1"]
    proc = subprocess.Popen(
        args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.time() + 600
        while time.time() < deadline:  # header + one batch of 8 queries checkpointed
            if partial.exists() and len(partial.read_bytes().splitlines()) >= 9:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the shard never checkpointed a batch")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (tiny_copy / target).exists(), "a killed job must not leave a finished-looking output"
    done_before = len(partial.read_bytes().splitlines()) - 1
    assert 8 <= done_before < 32
    snakemake("--unlock", *where)
    snakemake(target, *where, "--cores", "1", "--rerun-incomplete")
    assert (tiny_copy / target).read_bytes() == uninterrupted
    assert not partial.exists()
    log = (tiny_copy / "results-tiny/logs/relsel/msmarco/tiny-qwen2/shard-0.log").read_text()
    assert "resuming after" in log
