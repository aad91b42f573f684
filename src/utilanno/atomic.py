"""Publish outputs atomically: write to a temporary name beside the target, then rename.

A crash leaves only `.tmp-*` files, never a file under the final name that looks finished.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `target` if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{target.name}.", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; published files get the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_text(target: str | os.PathLike, encoding: str = "utf-8") -> Iterator:
    """Open a text file for writing that appears under `target` only once closed without error."""
    with atomic_path(target) as tmp, open(tmp, "w", encoding=encoding, newline="\n") as fh:
        yield fh


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder beside `target`; on success it replaces `target` by a rename.

    A crash leaves only `.tmp-*` folders, never a partial folder under the final name.
    """
    import shutil

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}.", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; published folders get the usual mode
    try:
        yield tmp
        if target.exists():  # a rename cannot replace a non-empty folder: move the old one aside first
            old = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}.old.", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
