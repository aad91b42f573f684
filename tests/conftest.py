"""Shared fixtures: Snakemake runs of the tiny config in a scratch folder (one full run per session)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "config" / "tiny.yaml"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# Jobs call `python`: the interpreter running the tests must come first on PATH (as `make` arranges).
# A secret in the environment of every run: no log or output file may contain it (test_evaluate_workflow).
API_KEY_CANARY = "sk-canary-7f3d9e1b2c4a"
ENV = {
    **os.environ,
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    "HF_HUB_OFFLINE": "1",
    "OPENAI_API_KEY": API_KEY_CANARY,
}


def snakemake(*args, cwd=REPO, check=True, timeout=1800) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), *args],
        cwd=cwd,
        text=True,
        capture_output=True,
        timeout=timeout,
        env=ENV,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run: rule -> number of jobs."""
    lines = output.splitlines()
    start = lines.index("Job stats:") + 3  # header, rule line
    counts = {}
    for line in lines[start:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def step_job_counts(output: str) -> dict[str, int]:
    """Jobs of a dry run per rule, and per `rule:step` for rules with a {step} wildcard (one rule runs
    every annotation step)."""
    counts: dict[str, int] = {}
    for block in re.split(r"^(?:local)?rule (?=\S+:$)", output, flags=re.M)[1:]:
        rule = block.split(":", 1)[0]
        step = re.search(r"^\s+wildcards:.*\bstep=([^,\s]+)", block, flags=re.M)
        key = f"{rule}:{step.group(1)}" if step else rule
        counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.fixture(scope="session")
def tiny_work(tmp_path_factory) -> Path:
    """A finished run of the tiny config, with its prompt files copied into the work folder, so tests can
    edit prompts without touching the repository. Tests that change things work on a copy (`tiny_copy`)."""
    reuse = os.environ.get("UTILANNO_TINY_WORK")  # a finished tiny work folder, for iterating on tests
    if reuse:
        return Path(reuse)
    work = tmp_path_factory.mktemp("tiny")
    conf = yaml.safe_load(TINY.read_text())
    (work / "prompts").mkdir()
    for step in ("relsel", "pseudo_answer", "utilsel", "utilrank"):
        shutil.copy2(REPO / "prompts" / f"{step}.yaml", work / "prompts" / f"{step}.yaml")
        for run in conf["annotation"].values():  # every run reads the work's copy
            run.setdefault("prompts", {})[step] = f"prompts/{step}.yaml"
    shutil.copy2(REPO / "prompts" / "replug.yaml", work / "prompts" / "replug.yaml")
    shutil.copy2(REPO / "prompts" / "hybrid.yaml", work / "prompts" / "hybrid.yaml")
    for name in ("rag-words", "rag-sentences"):  # rag.datasets.*.prompt are relative: the work copies win
        shutil.copy2(REPO / "prompts" / f"{name}.yaml", work / "prompts" / f"{name}.yaml")
    conf.setdefault("replug", {})["prompt"] = "prompts/replug.yaml"
    (work / "tiny.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))
    snakemake(  # one hour: a timeout only stops a hang; the run takes about 20 minutes on 2 idle cores
        "--configfile",
        str(work / "tiny.yaml"),
        "--directory",
        str(work),
        "--cores",
        "2",
        "--profile",
        str(REPO / "profiles" / "local"),
        timeout=3600,
    )
    return work


@pytest.fixture
def tiny_copy(tiny_work, tmp_path) -> Path:
    """A private copy of the finished tiny run (times preserved, so Snakemake sees it as up to date)."""
    dst = tmp_path / "work"
    shutil.copytree(tiny_work, dst, symlinks=True)
    return dst
