"""The workflow as Snakemake sees it: lint, dry runs of both configs under both profiles, the tiny run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import REPO, TINY, snakemake


@pytest.mark.parametrize("configfile", [None, TINY], ids=["paper", "tiny"])
def test_lint_reports_nothing(configfile):
    args = ["--lint"] + (["--configfile", str(TINY)] if configfile else [])
    proc = snakemake(*args)
    assert "Lints for" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "tool",
    [
        ["ruff", "check", "src", "scripts", "tests", "benchmarks"],
        ["ruff", "format", "--check", "src", "scripts", "tests", "benchmarks"],
        ["snakefmt", "--check", "Snakefile", "rules"],
    ],
    ids=["ruff", "ruff-format", "snakefmt"],
)
def test_code_style(tool):
    """What `make lint` checks besides `snakemake --lint` (above), so that CI checks it too."""
    exe = str(Path(sys.executable).with_name(tool[0]))
    proc = subprocess.run([exe, *tool[1:]], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("profile", ["local", "slurm"])
@pytest.mark.parametrize("configfile", [None, TINY], ids=["paper", "tiny"])
def test_dry_run_succeeds_under_each_profile(profile, configfile, capsys, tmp_path):
    # an empty working directory: the whole DAG, whatever a local run left in the checkout
    args = ["-n", "--profile", str(REPO / "profiles" / profile), "--directory", str(tmp_path)]
    args += ["--configfile", str(configfile or REPO / "config.yaml")]
    start = time.perf_counter()
    proc = snakemake(*args)
    elapsed = time.perf_counter() - start
    assert "Job stats:" in proc.stdout + proc.stderr
    with capsys.disabled():  # the figure the issue asks for (under 10 s), recorded, not asserted
        print(f"\n  dry run {'paper' if configfile is None else 'tiny'} / {profile}: {elapsed:.1f} s")


def test_paper_dry_run_shows_the_protocol(tmp_path):
    """The paper grid's commands carry the titled MS MARCO corpus, BEIR's evaluation lengths and passage text,
    its self-hit rule, and MS MARCO's training lengths (PAPER-SPEC F; docs/fidelity.md)."""
    targets = [
        "results/runs/retromae-human/beir-arguana.trec",
        "results/runs/retromae-human/msmarco.trec",
        "results/runs/bm25/beir-quora.trec",
    ]  # a few outputs, not `all`: printing 3,000 commands takes minutes on a loaded machine
    proc = snakemake(
        "-n", "-p", *targets, "--directory", str(tmp_path), "--configfile", str(REPO / "config.yaml")
    )
    lines = [x for x in (proc.stdout + proc.stderr).splitlines() if "python " in x]

    def command(*needles):
        found = [x for x in lines if all(n in x for n in needles)]
        assert found, f"no command with {needles}"
        return found[0]

    assert "--titles marco/para.title.txt" in command(" corpus ", "data/msmarco/corpus.parquet")
    beir = command("encode-corpus", "beir-arguana/corpus.parquet")
    assert "--max-len 512 --passage-text space" in beir
    msmarco = command("encode-corpus", "data/msmarco/corpus.parquet")
    assert "--max-len" not in msmarco and "--passage-text sep" in msmarco  # the retriever's training length
    assert "--drop-self-hits --query-max-len 512" in command(
        "evaluate.py search", "runs/retromae-human/beir-arguana"
    )
    dev = command("evaluate.py search", "runs/retromae-human/msmarco.trec")
    assert "--query-max-len" not in dev and "--drop-self-hits" not in dev
    assert "--drop-self-hits" in command("bm25-search", "runs/bm25/beir-quora.trec")


def test_paper_dry_run_has_a_hybrid_pool_per_backbone(tmp_path):
    """Two pools (RetroMAE, Contriever) x hybrid.shards judge jobs; each experiment of a backbone gets its
    hybrid run, BM25 one per pool."""
    from conftest import job_counts

    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    proc = snakemake("-n", "--directory", str(tmp_path), "--configfile", str(REPO / "config.yaml"))
    counts = job_counts(proc.stdout + proc.stderr)
    shards = paper["hybrid"]["shards"]
    assert counts["hybrid_pool"] == 2 and counts["hybrid_gold"] == 2 and counts["hybrid_judge"] == 2 * shards
    evaluated = [e for e, x in paper["experiments"].items() if "msmarco" in x.get("evaluate", ["msmarco"])]
    assert counts["hybrid_run"] == len(evaluated) + 2


def test_bad_config_fails_before_any_job(tmp_path):
    bad = yaml.safe_load(TINY.read_text())
    bad["training"]["learning_rate"] = "fast"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    proc = snakemake("-n", "--configfile", str(path), check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "config key 'training.learning_rate': expected a number, got str 'fast'" in out
    assert "Job stats" not in out


@pytest.fixture
def tiny_run(tiny_work):
    return tiny_work / "results-tiny"


@pytest.mark.slow
def test_tiny_world_converts_end_to_end(tiny_run):
    data = tiny_run / "data"
    corpus = pl.read_parquet(data / "msmarco" / "corpus.parquet")
    assert corpus.columns == ["docid", "title", "text"] and corpus.height == 1200
    pool = pl.read_parquet(data / "msmarco" / "train-pool.parquet")
    assert pool.height == 64 and pool["negatives"].list.len().to_list() == [30] * 64
    assert set(pool["negatives"].explode()) <= set(corpus["docid"])
    dl19 = pl.read_parquet(data / "dl19" / "queries-test.parquet")
    assert dl19.height == 8  # judged queries only
    qrels = (data / "dl19" / "qrels-test.trec").read_text().splitlines()
    assert {line.split()[3] for line in qrels} == {"0", "1", "2", "3"}  # graded
    for name in ("beir-scifact", "beir-nq", "beir-hotpotqa", "beir-cqadupstack-android"):
        assert pl.read_parquet(data / name / "queries-test.parquet").height == 24
    assert 0 < pl.read_parquet(data / "beir-nq" / "answers-test.parquet").height < 24
    assert pl.read_parquet(data / "beir-hotpotqa" / "answers-test.parquet").height == 24
    answers = pl.read_parquet(data / "msmarco" / "answers-dev.parquet")
    assert 0 < answers.height < 40 and "No Answer Present." not in answers["answers"].explode().to_list()
    log = (tiny_run / "logs" / "corpus" / "msmarco.log").read_text()
    assert "1200 lines in, 1200 rows out" in log


@pytest.mark.slow
def test_tiny_rerun_has_nothing_to_do(tiny_run):
    proc = snakemake(
        "-n", "--configfile", str(tiny_run.parent / "tiny.yaml"), "--directory", str(tiny_run.parent)
    )
    assert "Nothing to be done" in proc.stdout + proc.stderr


def _reordered(node, reverse: bool):
    """The same config with every mapping's keys in sorted (or reverse sorted) order; lists untouched."""
    if isinstance(node, dict):
        return {k: _reordered(node[k], reverse) for k in sorted(node, reverse=reverse)}
    if isinstance(node, list):
        return [_reordered(v, reverse) for v in node]
    return node


@pytest.mark.slow
@pytest.mark.parametrize("reverse", [False, True], ids=["sorted", "reverse-sorted"])
def test_a_reordered_config_reruns_nothing(tiny_run, reverse):
    """Snakemake compares params as text: every param built from a config mapping must not depend on the
    order of its keys."""
    work = tiny_run.parent
    conf = yaml.safe_load((work / "tiny.yaml").read_text())
    (work / f"reordered-{reverse}.yaml").write_text(
        yaml.safe_dump(_reordered(conf, reverse), sort_keys=False)
    )
    proc = snakemake("-n", "--configfile", str(work / f"reordered-{reverse}.yaml"), "--directory", str(work))
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]


@pytest.mark.slow
def test_a_corrupt_download_is_refused(tiny_run, tmp_path):
    """A configured checksum that does not match stops the download rule; nothing under the final name."""
    conf = yaml.safe_load((tiny_run.parent / "tiny.yaml").read_text())
    conf["sources"]["beir-scifact"]["md5"] = "0" * 32
    path = tmp_path / "tiny-md5.yaml"
    path.write_text(yaml.safe_dump(conf))
    work = tmp_path / "w"
    shutil.copytree(tiny_run.parent, work, ignore=shutil.ignore_patterns(".snakemake"))
    shutil.rmtree(work / "results-tiny" / "downloads" / "beir-scifact")
    shutil.rmtree(work / "results-tiny" / "logs")
    proc = snakemake(
        "--configfile",
        str(path),
        "--directory",
        str(work),
        "--cores",
        "1",
        "results-tiny/downloads/beir-scifact/scifact.zip",
        check=False,
    )
    assert proc.returncode != 0
    log = (work / "results-tiny" / "logs" / "download" / "beir-scifact" / "scifact.zip.log").read_text()
    assert "md5 mismatch: expected 00000000000000000000000000000000" in log
    assert not (work / "results-tiny" / "downloads" / "beir-scifact" / "scifact.zip").exists()
