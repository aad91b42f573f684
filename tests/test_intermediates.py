"""Damaged intermediates are named by their readers; a writer killed mid-write leaves nothing behind."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from utilanno import atomic, tables
from utilanno.errors import InputFormatError
from utilanno.evaluate.dense import load_embeddings, save_embeddings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def table(tmp_path) -> Path:
    path = tmp_path / "shard-0.parquet"
    pl.DataFrame({"qid": [str(i) for i in range(2000)], "positive": ["d"] * 2000}).write_parquet(path)
    return path


def test_a_truncated_parquet_is_named(table):
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    for read in (tables.read_parquet, tables.scan_parquet):
        with pytest.raises(InputFormatError, match=f"^{table}: not a readable Parquet table") as err:
            read(table)
        assert "delete it" in str(err.value)


def test_a_file_that_is_not_parquet_is_named(tmp_path):
    path = tmp_path / "merged.parquet"
    path.write_text("qid\tdocid\n")
    with pytest.raises(InputFormatError, match=f"^{path}: not a readable Parquet table"):
        tables.read_parquet(path)


def test_missing_columns_are_named_with_what_the_file_has(table):
    with pytest.raises(
        InputFormatError, match=r"missing column\(s\) \['passages'\] \(has \['positive', 'qid'\]\)"
    ):
        tables.read_parquet(table, columns=["qid", "passages"])
    assert tables.read_parquet(table, columns=["qid"]).columns == ["qid"]


def test_a_missing_file_stays_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        tables.read_parquet(tmp_path / "nope.parquet")


def test_a_damaged_jsonl_shard_is_named_with_its_line(tmp_path):
    path = tmp_path / "shard-0.jsonl"
    path.write_text('{"qid": "1", "raw": "x"}\n{"qid": "2", "ra')
    with pytest.raises(InputFormatError, match=f"^{path}:2: not a JSON record"):
        tables.read_jsonl(path)
    path.write_text('{"qid": "1"}\n["not", "a", "record"]\n')
    with pytest.raises(InputFormatError, match=f"^{path}:2: record without 'qid'"):
        tables.read_jsonl(path)


def test_truncated_embeddings_are_named(tmp_path):
    import numpy as np

    npy, ids = tmp_path / "corpus-0.npy", tmp_path / "corpus-0.ids"
    save_embeddings(np.ones((50, 8), dtype=np.float32), [str(i) for i in range(50)], npy, ids)
    npy.write_bytes(npy.read_bytes()[:300])
    with pytest.raises(InputFormatError, match=f"^{npy}: not a readable embeddings file"):
        load_embeddings(npy, ids)


def test_a_stage_command_reports_a_damaged_input_in_one_line(table, tmp_path):
    """The labels command on a truncated pool shard: exit 1 and the file's name, no traceback."""
    table.write_bytes(table.read_bytes()[:100])
    spec = importlib.util.spec_from_file_location("train_cli", REPO / "scripts" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["labels", "--pool", str(table), "--kind", "human", "--out", str(tmp_path / "l.parquet")]
    result = CliRunner().invoke(module.cli, args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: {table}: not a readable Parquet table"), result.output
    assert not (tmp_path / "l.parquet").exists()


KILLED_WRITER = """
import sys, time
from utilanno.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half of a table")
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_writer_killed_mid_write_leaves_nothing_after_the_next_write(tmp_path):
    target = tmp_path / "corpus.parquet"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-corpus.parquet.") and not target.exists()
    with atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert [p.name for p in tmp_path.iterdir()] == ["corpus.parquet"]


def test_a_live_writer_keeps_its_temporary_file(tmp_path):
    target = tmp_path / "table.parquet"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert atomic.clear_stale(target) == []
        assert len([p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]) == 1
    finally:
        proc.kill()
        proc.wait()
    time.sleep(0.01)
    assert len(atomic.clear_stale(target)) == 1  # once it is gone, its file goes too


def test_a_killed_folder_writer_is_cleared_too(tmp_path):
    target = tmp_path / "retriever"
    stale = tmp_path / f".tmp-retriever.{os.uname().nodename}.999999999.abc"
    (stale / "sub").mkdir(parents=True)
    (tmp_path / ".tmp-retriever.otherhost.1.abc").mkdir()  # another host's writer: not ours to judge
    with atomic.atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-retriever.otherhost.1.abc", "retriever"]
