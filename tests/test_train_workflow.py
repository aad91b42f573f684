"""The training stage in the workflow: label sets and every experiment of the tiny config, and which jobs a
prompt edit reruns downstream."""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import job_counts, snakemake, step_job_counts

from utilanno import config, plan

pytestmark = pytest.mark.slow


def test_every_tiny_experiment_trains_a_model_transformers_loads(tiny_work):
    from transformers import AutoModel

    results = tiny_work / "results-tiny"
    cfg = config.load(tiny_work / "tiny.yaml")
    jobs = plan.Plan(cfg).trainings()
    assert set(cfg["experiments"]) < set(jobs)  # the curriculum adds its stage 1
    for name, job in jobs.items():
        folder = results / "retrievers" / name
        AutoModel.from_pretrained(folder)
        summary = json.loads((folder / "training.json").read_text())
        assert summary["settings"]["loss"] == job["settings"]["loss"]
        assert summary["steps"] == len((folder / "train-log.jsonl").read_text().splitlines())
        assert summary["counts"]["queries_used"] > 0
    stage2 = json.loads((results / "retrievers/tiny-utilsel-cl50/training.json").read_text())
    assert stage2["init_model"].endswith("retrievers/tiny-utilsel-cl50-stage1")
    assert stage2["settings"]["loss"] == "singlelh" and stage2["counts"]["queries_used"] == 32
    human = pl.read_parquet(results / "labels/msmarco/human.parquet")
    assert human.group_by("qid").agg(pl.col("label").sum())["label"].to_list() == [1] * 64
    assert human.height == 64 * 31
    half = pl.read_parquet(results / "labels/msmarco/human-50pct.parquet")
    assert half["qid"].n_unique() == 32 and set(half["qid"]) < set(human["qid"])
    replug = pl.read_parquet(results / "annotate/msmarco/tiny-qwen2/replug/merged.parquet")
    assert replug.height == 55 * 31 and replug["utility"].max() < 0  # log-likelihoods of the gold answers


@pytest.mark.parametrize(
    "edited, expected",
    [
        ("utilsel", {"utilsel": 2, "merge_annotations": 1, "labels": 1, "train": 3}),
        ("replug", {"replug": 2, "merge_replug": 1, "train": 1}),
        (
            "relsel",  # the own corpus's run too: its 1 shard, RelSel merge, labels and training
            {
                "relsel": 3,
                "pseudo_answer": 2,
                "utilsel": 2,
                "utilrank": 2,
                "merge_annotations": 3,
                "labels": 3,
                "train": 5,
            },
        ),
    ],
)
def test_editing_a_prompt_retrains_exactly_the_experiments_it_feeds(tiny_copy, edited, expected):
    """Training needs only the UtilSel/UtilRank merges: RelSel's and the pseudo answers' merged tables (for
    statistics) are not its inputs, hence two merges after a RelSel edit."""
    where = ["--configfile", str(tiny_copy / "tiny.yaml"), "--directory", str(tiny_copy)]
    before = snakemake("-n", "train_only", *where)
    assert "Nothing to be done" in before.stdout + before.stderr
    prompt = tiny_copy / "prompts" / f"{edited}.yaml"
    prompt.write_text(prompt.read_text().replace("passage", "passage ", 1))
    after = snakemake("-n", "train_only", *where)
    out = after.stdout + after.stderr
    counts = job_counts(out)
    counts.pop("train_only")
    counts.pop("annotate", None)  # one rule runs every annotation step: count its jobs per step
    counts |= {k.split(":")[1]: v for k, v in step_job_counts(out).items() if k.startswith("annotate:")}
    assert counts == expected
