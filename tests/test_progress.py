"""Progress lines of long jobs (utilanno.progress): fixed interval, done/total, rate, ETA, a last line; and a
real encoding job whose stderr is a file logs them."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from utilanno import progress
from utilanno.data import convert
from utilanno.testing import tinymodels, tinyworld

REPO = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress.time, "monotonic", c)
    return c


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.progress"]


def test_a_line_per_interval_and_one_at_the_end(clock, caplog):
    caplog.set_level(logging.INFO, logger="test.progress")
    bar = progress.Progress("encode x", 100, "texts", logger=logging.getLogger("test.progress"), interval=60)
    for _ in range(9):  # 10 texts every 20 s: a line at 60 s and 120 s, none between
        clock.now += 20
        bar.update(10, loss="0.5")
    clock.now += 20
    bar.update(10)
    got = lines(caplog)
    assert got == [
        "encode x: 30/100 texts (30.0%), 0.5 texts/s, elapsed 0:01:00, ETA 0:02:20, loss 0.5",
        "encode x: 60/100 texts (60.0%), 0.5 texts/s, elapsed 0:02:00, ETA 0:01:20, loss 0.5",
        "encode x: 90/100 texts (90.0%), 0.5 texts/s, elapsed 0:03:00, ETA 0:00:20, loss 0.5",
        "encode x: 100/100 texts (100.0%), 0.5 texts/s, elapsed 0:03:20, ETA 0:00:00",
    ]


def test_a_resumed_job_counts_its_rate_from_what_it_did(clock, caplog):
    caplog.set_level(logging.INFO, logger="test.progress")
    bar = progress.Progress("relsel s", 40, "queries", initial=30, logger=logging.getLogger("test.progress"))
    clock.now += 3725  # 1 h 2 min 5 s for the 10 queries left
    bar.update(10)
    assert lines(caplog) == [
        "relsel s: 40/40 queries (100.0%), 0.00268 queries/s, elapsed 1:02:05, ETA 0:00:00"
    ]


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(progress.INTERVAL_ENV, raising=False)
    assert progress.interval_from_env() == 60.0
    monkeypatch.setenv(progress.INTERVAL_ENV, "0")
    assert progress.interval_from_env() == 0.0
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(progress.INTERVAL_ENV, bad)
        with pytest.raises(
            ValueError, match=f"{progress.INTERVAL_ENV}='{bad}': expected a number of seconds"
        ):
            progress.interval_from_env()


def test_an_encoding_job_with_stderr_in_a_file_logs_progress_lines(tmp_path):
    tinyworld.generate(tmp_path / "tw", passages=300, train_queries=4, dev_queries=2, dl_queries=2, beir=[])
    corpus = tmp_path / "corpus.parquet"
    convert.convert_corpus(
        tmp_path / "tw/msmarco/collectionandqueries.tar.gz", "collection.tsv", "msmarco-tsv", corpus
    )
    model = tinymodels.build_tiny_bert(tmp_path / "bert")
    log = tmp_path / "encode.log"
    env = {**os.environ, progress.INTERVAL_ENV: "0", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "scripts/evaluate.py"), "encode-corpus", "--model", str(model)]
    cmd += ["--corpus", str(corpus), "--shard", "0", "--shards", "1", "--batch-size", "64", "--max-len", "32"]
    cmd += ["--out", str(tmp_path / "emb.npy"), "--ids", str(tmp_path / "ids.txt")]
    with log.open("w") as fh:  # as Snakemake runs it: `> {log} 2>&1`, no terminal
        proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=600)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    found = re.findall(
        r"(\d+)/300 texts \([\d.]+%\), [\d.e+-]+ texts/s, elapsed \d:\d\d:\d\d, ETA \d:\d\d:\d\d", text
    )
    assert [int(n) for n in found] == [64, 128, 192, 256, 300], text[-3000:]
    assert "\r" not in text  # plain lines, no terminal bar
