"""A model's identity is its content, not its path; file digests are cached by size and mtime."""

from __future__ import annotations

import json
import os

import pytest

from utilanno.annotate import model_identity as mi


@pytest.fixture
def model(tmp_path, monkeypatch):
    monkeypatch.setenv("UTILANNO_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text('{"hidden": 64}')
    (d / "tokenizer.json").write_text('{"vocab": {}}')
    (d / "model.safetensors").write_bytes(b"\x00" * 1000)
    (d / "sub" / "extra.bin").write_bytes(b"x")
    return d


def test_same_content_same_id_and_any_changed_file_changes_it(model):
    llm = {"engine": "vllm", "model": str(model), "dtype": "auto"}
    first = mi.engine_id(llm)
    assert mi.engine_id(dict(llm)) == first
    for name, data in [
        ("model.safetensors", b"\x01" * 1000),
        ("tokenizer.json", b"{}"),
        ("sub/extra.bin", b"y"),
    ]:
        before = mi.engine_id(llm)
        (model / name).write_bytes(data)
        assert mi.engine_id(llm) != before, name
    (model / "new.json").write_text("{}")  # an added file counts too
    assert mi.engine_id(llm) != before


def test_ids_name_engine_model_and_dtype(model):
    a = json.loads(mi.engine_id({"engine": "vllm", "model": str(model), "dtype": "auto"}))
    assert a["engine"] == "vllm" and a["model"] == str(model) and len(a["content"]) == 32
    assert mi.engine_id({"engine": "vllm", "model": str(model), "dtype": "bfloat16"}) != mi.engine_id(
        {"engine": "vllm", "model": str(model), "dtype": "auto"}
    )
    hub = json.loads(mi.engine_id({"engine": "vllm", "model": "Qwen/Qwen2.5-32B-Instruct"}))
    assert "content" not in hub  # no local folder: the name stands for it
    remote = json.loads(mi.engine_id({"engine": "openai", "model": str(model)}))
    assert "content" not in remote  # a server's model is not this folder


def test_digests_are_cached_by_size_and_mtime(model):
    weights = model / "model.safetensors"
    llm = {"model": str(model)}
    first = mi.engine_id(llm)
    cache = json.loads(mi.cache_file().read_text())
    assert str(weights.resolve()) in cache
    st = weights.stat()
    weights.write_bytes(b"\x02" * 1000)  # new content, then the old size and mtime restored
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert mi.engine_id(llm) == first  # read from the cache, not the file
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert mi.engine_id(llm) != first  # a new mtime: hashed again


def test_an_unwritable_cache_still_gives_the_right_id(model, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("UTILANNO_CACHE", str(blocker / "cache"))  # a folder under a file: not creatable
    assert mi.engine_id({"model": str(model)}) == mi.engine_id({"model": str(model)})


def test_an_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no files"):
        mi.folder_digest(tmp_path / "empty")
