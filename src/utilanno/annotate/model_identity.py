"""What identifies an LLM's outputs: engine settings plus the content of a local model folder.

A resumed shard keeps the records of an earlier attempt only when the model is the same one: the same path
is not enough (weights can be replaced under it). A local folder is identified by a digest of its files
(config, tokenizer, weights). Hashing tens of GB of weights for every shard job would cost minutes, so each
file's digest is cached by (path, size, mtime): a file is read again only when it changed. A hub id or a
remote endpoint has no local content to hash; its name stands for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from utilanno.atomic import atomic_text

log = logging.getLogger(__name__)

CACHE_ENV = "UTILANNO_CACHE"  # folder of the digest cache; default ~/.cache/utilanno
_CHUNK = 1 << 24


def cache_file() -> Path:
    root = (
        os.environ.get(CACHE_ENV)
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "utilanno"
    )
    return Path(root) / "file-digests.json"


def _load_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def file_digest(path: Path, cache: dict) -> str:
    """sha256 of a file, from `cache` when its size and mtime are those recorded."""
    st = path.stat()
    key = str(path.resolve())
    stamp = [st.st_size, st.st_mtime_ns]
    hit = cache.get(key)
    if isinstance(hit, dict) and hit.get("stamp") == stamp:
        return hit["sha256"]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    cache[key] = {"stamp": stamp, "sha256": h.hexdigest()}
    return cache[key]["sha256"]


def folder_digest(folder: str | Path) -> str:
    """One digest of every file in a model folder (names and contents), cached per file."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))
    if not files:
        raise FileNotFoundError(f"model folder {folder} holds no files")
    where = cache_file()
    cache = _load_cache(where)
    before = json.dumps(cache, sort_keys=True)
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(folder)).encode() + b"\0" + file_digest(p, cache).encode() + b"\n")
    if json.dumps(cache, sort_keys=True) != before:
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
            fresh = {**_load_cache(where), **cache}  # another job may have added entries meanwhile
            with atomic_text(where) as fh:
                json.dump(fresh, fh, sort_keys=True)
        except OSError as err:  # a read-only home: the digest is still right, only not cached
            log.warning("cannot write the digest cache %s: %s", where, err)
    return h.hexdigest()[:32]


def engine_id(llm: dict) -> str:
    """The identity of an `llms:` entry's outputs: engine, model, dtype, the chat template's extra variables
    (when there are any: an entry without them keeps the identity it always had) and the model folder's
    content."""
    model = llm.get("model", "")
    ident = {k: llm.get(k) for k in ("engine", "model", "dtype")}
    if llm.get("chat_template_kwargs"):  # e.g. Qwen3's enable_thinking changes every prompt
        ident["chat_template_kwargs"] = llm["chat_template_kwargs"]
    if llm.get("engine", "vllm") != "openai" and model and Path(model).is_dir():
        ident["content"] = folder_digest(model)
    return json.dumps(ident, sort_keys=True)
